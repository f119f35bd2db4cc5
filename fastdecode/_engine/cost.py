"""The one cost model of decoding: FLOPs of the chain and of the layer recursion, from the same
per-step counts, and the choice between them.

A multiply-add counts 2 FLOPs; a substitution counts the products of the form it takes
(:func:`.substitution.substitution_flops`); an unpooling's separable taps and a box sum's terms
count 2 each.
"""

from . import tuning
from .substitution import substitution_flops


def unpool_flops(C, H, W, Ho, Wo, ph, pw):
    """FLOPs of unpooling C maps H x W to Ho x Wo by separable taps (ph per row, pw per column)."""
    return 2.0 * C * (Ho * W * ph + Ho * Wo * pw)


def box_sum_flops(F, C, H, W, ph, pw):
    """FLOPs of summing F x C maps H x W over ph x pw windows (:func:`.resample.box_sum`)."""
    return 2.0 * F * C * H * W * ph * pw


def chain_flops(plan, n_filters, winograd_weight=1.0, path=None):
    """FLOPs of decoding ``n_filters`` filters by the steps of a :class:`.chain.ChainPlan`, as
    they compute them (Winograd substitutions count the products of their transformed tiles,
    times ``winograd_weight``), or with every substitution in the form ``path`` when given
    ("col2im": the multiply-adds of the literal substitutions)."""
    total = 0.0
    for step in plan.steps:
        C, H, W = step.shape_in
        if step.kind == "substitute":
            form = step.path if path is None else path
            weight = winograd_weight if form == "winograd" else 1.0
            total += weight * substitution_flops(1, C, H, W, step.shape_out[0], *step.kernel,
                                                 *step.stride, plan.dtype.itemsize, form)
        elif step.kind == "unpool":
            (ph, pw), (Ho, Wo) = step.layer.kernel, step.shape_out[1:]
            total += unpool_flops(C, H, W, Ho, Wo, ph, pw)
    return total * n_filters


def recursion_cost(net, idx, n_filters):
    """(flops, peak bytes) of decoding ``n_filters`` filters of conv layer ``idx`` by the layer
    recursion (:func:`.recursion.walk`).

    Every conv layer below is decoded in full (all its filters), each substitution by GEMM +
    col2im; the peak counts, at the widest step, the decoded maps E of the layer below, its
    transposed copy the GEMM reads, and the new decoded filters, besides the final output.
    """
    itemsize = net.dtype.itemsize
    C0 = net.input_channels
    n_e, rh, rw = C0, 1, 1  # E: (n_e, C0, rh, rw)
    S = (1, 1)
    flops = 0.0
    peak = 0
    first = True
    for i, layer in enumerate(net.layers[:idx + 1]):
        role = getattr(layer, "decode_role", None)
        if role == "substitute":
            K, J = layer.weights.shape[0], layer.weights.shape[1] * layer.groups
            kh, kw = layer.kernel
            if i == idx:
                K = n_filters
            oh, ow = (kh - 1) * S[0] + rh, (kw - 1) * S[1] + rw
            if not first:   # W (K maps J x kh x kw) substituted with E (J, C0, rh, rw)
                flops += substitution_flops(K, J, kh, kw, C0, rh, rw, S[0], S[1], itemsize,
                                            "col2im")
            first = False
            peak = max(peak, (2 * n_e * C0 * rh * rw + K * C0 * oh * ow) * itemsize)
            n_e, rh, rw = K, oh, ow
            S = (S[0] * layer.stride[0], S[1] * layer.stride[1])
        elif role == "unpool":
            ph, pw = layer.kernel
            nh, nw = (ph - 1) * S[0] + rh, (pw - 1) * S[1] + rw
            flops += box_sum_flops(n_e, C0, rh, rw, ph, pw)
            peak = max(peak, (n_e * C0 * (rh * rw + nh * nw)) * itemsize)
            rh, rw = nh, nw
            S = (S[0] * layer.stride[0], S[1] * layer.stride[1])
    return flops, peak


def recursion_is_cheaper(plan, n_filters, limit):
    """Whether the layer recursion should decode ``n_filters`` filters of the plan's layer
    instead of the chain: its unpooling is a box, its working maps fit ``limit`` bytes and it
    costs fewer FLOPs (the chain's Winograd products weighing ``tuning.WINOGRAD_COST``)."""
    if not plan.unpool.box:
        return False
    flops, peak = recursion_cost(plan.net, plan.idx, n_filters)
    return peak <= limit and flops < chain_flops(plan, n_filters, tuning.WINOGRAD_COST)
