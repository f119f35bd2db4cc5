"""Hypothesis strategies for random networks, as layer specs of reference.py."""

import numpy as np
from hypothesis import strategies as st


def _out(size, kernel, stride, pad):
    return ((size[0] + pad[0] + pad[1] - kernel[0]) // stride[0] + 1,
            (size[1] + pad[2] + pad[3] - kernel[1]) // stride[1] + 1)


@st.composite
def network_specs(draw, *, linear=False, max_blocks=3, dtype=np.float64, overlapping_pools=True,
                  winograd_kernels=False):
    """(specs, input_channels, (H, W)) of a random chain that fits images of (H, W).

    Blocks of a conv (groups, dilation, strides, biases, padding) followed by up to two of pool,
    relu, bnorm, lrn, dropout. ``linear``: only conv, average pooling, bnorm and dropout, with
    zero padding at the first layer only (padding higher up breaks exactness at the borders).
    ``overlapping_pools=False``: pooling windows equal to their stride.
    ``winograd_kernels``: every conv 3x3 at stride 1 or 6x6 at stride 2, undilated (the kernels
    a Winograd substitution takes).
    """
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    C0 = draw(st.integers(1, 3))
    image = (draw(st.integers(10, 22)), draw(st.integers(10, 22)))
    size, depth, specs = image, C0, []
    extras = ["pool", "bnorm", "dropout"] if linear else ["pool", "relu", "bnorm", "lrn",
                                                           "dropout"]
    for _ in range(draw(st.integers(1, max_blocks))):
        h, w = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        dilate = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        if winograd_kernels:
            s = draw(st.sampled_from([1, 1, 2]))
            h, w, dilate, stride = 3 * s, 3 * s, (1, 1), (s, s)
        pad = (0, 0, 0, 0)
        if not specs or not linear:
            pad = tuple(draw(st.integers(0, 1)) for _ in range(4))
        groups = draw(st.sampled_from([g for g in range(1, depth + 1) if depth % g == 0]))
        K = groups * draw(st.integers(1, 3))
        kernel = ((h - 1) * dilate[0] + 1, (w - 1) * dilate[1] + 1)
        if size[0] + pad[0] + pad[1] < kernel[0] or size[1] + pad[2] + pad[3] < kernel[1]:
            break
        fan_in = depth // groups * h * w
        weights = (rng.standard_normal((K, depth // groups, h, w)) / np.sqrt(fan_in)).astype(dtype)
        bias = rng.standard_normal(K).astype(dtype) if draw(st.booleans()) else None
        specs.append({"type": "conv", "w": weights, "b": bias, "stride": stride, "pad": pad,
                      "dilate": dilate})
        size, depth = _out(size, kernel, stride, pad), K
        for kind in draw(st.lists(st.sampled_from(extras), max_size=2)):
            if kind == "pool":
                p = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
                s = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if overlapping_pools else p
                method = "avg" if linear else draw(st.sampled_from(["max", "avg"]))
                ppad = (0, 0, 0, 0)
                if not linear:
                    ppad = tuple(draw(st.integers(0, q - 1)) for q in (p[0], p[0], p[1], p[1]))
                if size[0] + ppad[0] + ppad[1] < p[0] or size[1] + ppad[2] + ppad[3] < p[1]:
                    continue
                specs.append({"type": "pool", "method": method, "size": p, "stride": s,
                              "pad": ppad})
                size = _out(size, p, s, ppad)
            elif kind == "relu":
                specs.append({"type": "relu", "leak": draw(st.sampled_from([0.0, 0.1]))})
            elif kind == "bnorm":
                specs.append({"type": "bnorm",
                              "gain": rng.uniform(0.5, 2.0, depth).astype(dtype),
                              "bias": rng.standard_normal(depth).astype(dtype),
                              "mean": rng.standard_normal(depth).astype(dtype),
                              "sigma": rng.uniform(0.5, 2.0, depth).astype(dtype)})
            elif kind == "lrn":
                specs.append({"type": "lrn", "depth": draw(st.integers(1, 5)), "kappa": 2.0,
                              "alpha": 1e-2, "beta": 0.75})
            else:
                specs.append({"type": "dropout"})
    return specs, C0, image


def conv_indices(specs):
    return [i for i, s in enumerate(specs) if s["type"] == "conv"]
