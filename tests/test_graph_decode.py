"""Decoding graph networks: the exactness property, the autograd oracle of the linear twin,
random small graphs, thread counts."""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastdecode as fd

torch = pytest.importorskip("torch")
F = torch.nn.functional

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def rnd(rng, *shape):
    return rng.standard_normal(shape)


def twin(net, x, upto):
    """The linear twin of ``net`` in torch: activations are identities, every pooling a sum
    pooling over its window (global pooling a global sum), gates held at their ``hold``."""
    T = {-1: x}
    last = net.index(upto)
    for i, layer in enumerate(net.layers[:last + 1]):
        ins = [T[s] for s in net._inputs[i]]
        a = ins[0]
        kind, role = layer.type, layer.decode_role
        if kind == "add":
            y = sum(ins[1:], ins[0])
        elif kind == "concat":
            y = torch.cat(ins, 1)
        elif kind == "gate":
            y = a * torch.from_numpy(layer.hold)[None, :, None, None] if layer.hold.size > 1 \
                else a * float(layer.hold[0])
        elif kind == "conv":
            pt, pb, pl, pr = layer.pad
            y = F.conv2d(F.pad(a, (pl, pr, pt, pb)), torch.from_numpy(layer.dense_weights()),
                         stride=layer.stride)
        elif kind == "linear":
            y = F.linear(torch.flatten(a, 1), torch.from_numpy(layer.weights))[:, :, None, None]
        elif kind == "upsample":
            kw = {"align_corners": False} if layer.method == "bilinear" else {}
            y = F.interpolate(a, scale_factor=layer.factor, mode=layer.method, **kw)
        elif kind == "globalpool":
            y = a.sum((2, 3), keepdim=True)
        elif kind == "pool":
            pt, pb, pl, pr = layer.pad
            kh, kw = layer.kernel
            y = F.avg_pool2d(F.pad(a, (pl, pr, pt, pb)), layer.kernel, layer.stride) * (kh * kw)
        elif role == "scale":
            s, _ = layer.scale_shift()
            y = a * torch.from_numpy(s)[None, :, None, None]
        elif role == "identity":
            y = a
        else:
            raise AssertionError(kind)
        T[i] = y
    return T[last]


def check_against_twin(net, name, *, extra=2):
    """decode(net, name, unpool="nearest") equals the twin's gradient at an interior unit."""
    S, P, R = net.stride(name), net.padding(name), net.receptive_field(name)
    u = -(-P[0] // S[0])
    v = -(-P[2] // S[1])
    oy, ox = u * S[0] - P[0], v * S[1] - P[2]
    if net.input_shape is not None:
        H, W = net.input_shape[1:]
    else:
        H, W = oy + R[0] + extra * S[0], ox + R[1] + extra * S[1]
    D = fd.decode(net, name, unpool="nearest")
    x = torch.zeros((1, net.input_channels, H, W), dtype=torch.float64, requires_grad=True)
    y = twin(net, x, name)
    for k in range(D.shape[0]):
        g, = torch.autograd.grad(y[0, k, u, v], x, retain_graph=True)
        want = np.zeros((net.input_channels, max(H, oy + R[0]), max(W, ox + R[1])))
        want[:, oy:oy + R[0], ox:ox + R[1]] = D[k]
        np.testing.assert_allclose(g[0].numpy(), want[:, :H, :W], rtol=1e-10, atol=1e-10)
        assert not np.any(want[:, H:]) and not np.any(want[:, :, W:])


def check_exact(net, name, x, everywhere):
    """correlate(x, decode(adjoint)) + decoded bias equals forward at interior units (all)."""
    dec = fd.decode_with_bias(net, name, unpool="adjoint")
    S, P, R = net.stride(name), net.padding(name), net.receptive_field(name)
    y = fd.correlate(x, dec.filters, stride=S, pad=P) + dec.bias[:, None, None]
    want = net.forward(x, upto=name)
    if want.ndim == 2:
        want = want[:, :, None, None]
    assert y.shape == want.shape
    H, W = x.shape[2:]
    rows = [u for u in range(y.shape[2]) if 0 <= u * S[0] - P[0] and u * S[0] - P[0] + R[0] <= H]
    cols = [v for v in range(y.shape[3]) if 0 <= v * S[1] - P[2] and v * S[1] - P[2] + R[1] <= W]
    if everywhere:
        rows, cols = range(y.shape[2]), range(y.shape[3])
    assert rows and cols
    np.testing.assert_allclose(y[:, :, rows][:, :, :, cols], want[:, :, rows][:, :, :, cols],
                               rtol=1e-9, atol=1e-9)


def linear_residual(rng, bias=False):
    b = (lambda k: rnd(rng, k)) if bias else (lambda k: None)
    return fd.Network([
        fd.Conv(rnd(rng, 3, 2, 3, 3), b(3), stride=2, pad=1, name="c1"),
        fd.Conv(rnd(rng, 3, 3, 3, 3), b(3), pad=1, name="c2"),
        fd.Conv(rnd(rng, 3, 2, 1, 1), b(3), stride=2, name="proj", inputs="input"),
        fd.Add(inputs=("c2", "proj"), name="sum"),
        fd.Pool("avg", size=2, name="pool"),
        fd.Conv(rnd(rng, 2, 3, 1, 1), b(2), name="a", inputs="pool"),
        fd.Conv(rnd(rng, 2, 3, 3, 3), b(2), pad=1, name="b", inputs="pool"),
        fd.Concat(inputs=("a", "b"), name="cat"),
        fd.Conv(rnd(rng, 2, 4, 2, 2), b(2), name="top"),
    ])


NAMES = ["c1", "c2", "proj", "sum", "pool", "a", "b", "cat", "top"]


@pytest.mark.parametrize("name", NAMES)
def test_linear_graph_is_exact_on_interior_units(name):
    rng = np.random.default_rng(0)
    net = linear_residual(rng)
    x = rnd(rng, 2, 2, 30, 33)
    check_exact(net, name, x, everywhere=False)


def test_linear_graph_without_inner_padding_is_exact_everywhere_with_bias():
    rng = np.random.default_rng(1)
    net = fd.Network([
        fd.Conv(rnd(rng, 3, 2, 3, 3), rnd(rng, 3), stride=2, pad=1, name="c1"),
        fd.Conv(rnd(rng, 3, 2, 1, 1), rnd(rng, 3), stride=2, name="proj", inputs="input"),
        fd.Conv(rnd(rng, 3, 2, 5, 5), rnd(rng, 3), stride=2, pad=2, name="c5", inputs="input"),
        fd.Add(inputs=("c1", "proj", "c5"), name="sum"),
        fd.BatchNorm(rng.random(3) + 0.5, rnd(rng, 3), rnd(rng, 3), rng.random(3) + 0.5,
                     name="bn"),
        fd.Pool("avg", size=2, name="pool"),
        fd.Conv(rnd(rng, 2, 3, 2, 2), rnd(rng, 2), name="top"),
        fd.Concat(inputs=("top", "top"), name="cat"),
    ])
    x = rnd(rng, 2, 2, 21, 18)
    for name in ("sum", "bn", "pool", "top", "cat"):
        check_exact(net, name, x, everywhere=True)


def test_global_pool_and_linear_head_decode_exactly():
    rng = np.random.default_rng(2)
    net = fd.Network([
        fd.Conv(rnd(rng, 3, 1, 3, 3), rnd(rng, 3), name="c"),
        fd.Conv(rnd(rng, 3, 1, 1, 1), rnd(rng, 3), name="s", inputs="input"),
        fd.Pool("avg", size=2, stride=1, name="sp"),
        fd.Conv(rnd(rng, 3, 3, 2, 2), None, name="s2"),
        fd.Add(inputs=("c", "s2"), name="sum"),
        fd.GlobalPool("avg", name="gp"),
        fd.Linear(rnd(rng, 4, 3), rnd(rng, 4), name="fc"),
        fd.Linear(rnd(rng, 2, 3 * 6 * 7), rnd(rng, 2), name="fc_map", inputs="sum"),
    ], input_shape=(1, 8, 9))
    x = rnd(rng, 3, 1, 8, 9)
    for name in ("sum", "gp", "fc", "fc_map"):
        check_exact(net, name, x, everywhere=True)
        check_against_twin(net, name)
    assert fd.decode(net, "fc").shape == (4, 1, 8, 9)


@pytest.mark.parametrize("name", NAMES)
def test_decoding_is_the_gradient_of_the_linear_twin(name):
    rng = np.random.default_rng(3)
    net = linear_residual(rng, bias=True)
    check_against_twin(net, name)


def test_activations_pools_and_gate_decode_as_the_twin():
    rng = np.random.default_rng(4)
    net = fd.Network([
        fd.Conv(rnd(rng, 4, 2, 3, 3), rnd(rng, 4), pad=1, name="c"),
        fd.GELU(name="g1"),
        fd.Pool("max", size=3, stride=2, name="mp"),
        fd.Conv(rnd(rng, 4, 4, 1, 1), rnd(rng, 4), name="e"),
        fd.SiLU(name="act"),
        fd.Conv(rnd(rng, 4, 1, 3, 3), None, pad=1, name="d"),
        fd.GlobalPool("avg", name="sq", inputs="d"),
        fd.Sigmoid(name="sig"),
        fd.Gate(inputs=("d", "sig"), hold=[0.5, 1.0, 2.0, -1.0], name="gate"),
        fd.Add(inputs=("gate", "mp"), name="res"),
        fd.PReLU([0.1, 0.2, 0.3, 0.4], name="pr"),
    ], input_shape=(2, 15, 15))
    for name in ("g1", "mp", "act", "d", "gate", "res", "pr"):
        check_against_twin(net, name)
    with pytest.raises(ValueError, match="decoding cannot start from|cannot decode"):
        fd.decode(fd.Network(list(net.layers) + [fd.Softmax(name="sm")],
                             input_shape=(2, 15, 15)), "sm")


def test_decoding_a_graph_is_bitwise_the_same_for_1_and_2_threads():
    rng = np.random.default_rng(5)
    net = linear_residual(rng, bias=True)
    for name in ("sum", "cat", "top"):
        a = fd.decode_with_bias(net, name, n_threads=1)
        b = fd.decode_with_bias(net, name, n_threads=2)
        np.testing.assert_array_equal(a.filters, b.filters)
        np.testing.assert_array_equal(a.bias, b.bias)


def test_filters_selection_and_chunks_agree():
    rng = np.random.default_rng(6)
    net = linear_residual(rng)
    full = fd.decode(net, "cat")
    np.testing.assert_allclose(fd.decode(net, "cat", filters=[3, 0]), full[[3, 0]],
                               rtol=1e-12, atol=1e-12)
    small = fd.decode(net, "cat", memory_limit=full.nbytes + 80000)
    np.testing.assert_allclose(small, full, rtol=1e-12, atol=1e-12)
    with pytest.raises(MemoryError, match="per filter"):
        fd.decode(net, "cat", memory_limit=full.nbytes + 10)


# --- above upsamplings: one decoded filter per phase ---------------------------------------

def unet(rng, bias=True, methods=("bilinear", "nearest")):
    """A linear U-Net: down by 4 (an average pool, a strided conv), up by 2 twice, each
    upsampled map concatenated with the encoder's map of its size."""
    b = (lambda k: rnd(rng, k)) if bias else (lambda k: None)
    return fd.Network([
        fd.Conv(rnd(rng, 3, 1, 3, 3), b(3), pad=1, name="e1"),
        fd.Pool("avg", size=2, name="down1"),
        fd.Conv(rnd(rng, 2, 3, 3, 3), b(2), pad=1, name="e2"),
        fd.Conv(rnd(rng, 2, 2, 2, 2), b(2), stride=2, name="down2"),
        fd.Conv(rnd(rng, 2, 2, 3, 3), b(2), pad=1, name="mid"),
        fd.Upsample(2, methods[0], name="up2"),
        fd.Concat(inputs=("e2", "up2"), name="cat2"),
        fd.Conv(rnd(rng, 2, 4, 3, 3), b(2), pad=1, name="d2"),
        fd.Upsample(2, methods[1], name="up1"),
        fd.Concat(inputs=("e1", "up1"), name="cat1"),
        fd.Conv(rnd(rng, 2, 5, 3, 3), b(2), pad=1, name="top"),
    ])


def phase_units(net, name, H, W):
    """[(phase, q)]: per phase, the units q (rows, cols) of period index whose box lies
    inside an image of H x W, as ranges."""
    S, P, R = net.stride(name), net.padding(name), net.receptive_field(name)
    rows = [q for q in range(H) if q * S[0] - P[0] >= 0 and q * S[0] - P[0] + R[0] <= H]
    cols = [q for q in range(W) if q * S[1] - P[2] >= 0 and q * S[1] - P[2] + R[1] <= W]
    return rows, cols


UNET_LAYERS = ["up2", "cat2", "d2", "up1", "cat1", "top"]


def check_phases_against_twin(net, name, H, W, unit=None):
    """Every phase of layer ``name``: the decoded filter placed at q * stride - padding is the
    twin's gradient at unit q * phases + phase (q the middle unit whose box is inside an
    image of H x W); ``unit``: the channel to check (default all)."""
    S, P, R, p = (net.stride(name), net.padding(name), net.receptive_field(name),
                  net.phases(name))
    x = torch.zeros((1, net.input_channels, H, W), dtype=torch.float64, requires_grad=True)
    y = twin(net, x, name)
    rows, cols = phase_units(net, name, H, W)
    assert rows and cols
    qy, qx = rows[len(rows) // 2], cols[len(cols) // 2]
    oy, ox = qy * S[0] - P[0], qx * S[1] - P[2]
    for ry in range(p[0]):
        for rx in range(p[1]):
            D = fd.decode(net, name, phase=(ry, rx))
            for k in range(D.shape[0]) if unit is None else [unit]:
                g, = torch.autograd.grad(y[0, k, qy * p[0] + ry, qx * p[1] + rx], x,
                                         retain_graph=True)
                want = np.zeros((net.input_channels, H, W))
                want[:, oy:oy + R[0], ox:ox + R[1]] = D[k]
                np.testing.assert_allclose(g[0].numpy(), want, rtol=1e-10, atol=1e-12)


def check_phases_exact(net, name, x):
    """correlate(x, decode(phase=r, adjoint)) + decoded bias equals forward's units of phase r
    at the units whose box lies inside the image (biases included), for every phase r."""
    S, P, p = net.stride(name), net.padding(name), net.phases(name)
    full = net.forward(x, upto=name)
    rows, cols = phase_units(net, name, *x.shape[2:])
    assert rows and cols
    for ry in range(p[0]):
        for rx in range(p[1]):
            dec = fd.decode_with_bias(net, name, unpool="adjoint", phase=(ry, rx))
            y = fd.correlate(x, dec.filters, stride=S, pad=P) + dec.bias[:, None, None]
            want = full[:, :, ry::p[0], rx::p[1]]
            # the correlation gives phase 0's units; the other phases have as many or one fewer
            assert y.shape[2] - want.shape[2] in (0, 1)
            assert y.shape[3] - want.shape[3] in (0, 1)
            if (ry, rx) == (0, 0):
                assert y.shape == want.shape
            rr = [q for q in rows if q < want.shape[2]]
            cc = [q for q in cols if q < want.shape[3]]
            np.testing.assert_allclose(y[:, :, rr][:, :, :, cc], want[:, :, rr][:, :, :, cc],
                                       rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("methods", [("bilinear", "nearest"), ("nearest", "bilinear")])
def test_above_upsamplings_each_phase_is_the_gradient_of_the_linear_twin(methods):
    """Every phase of every layer above the upsamplings: the decoded filter placed at
    q * stride - padding is the gradient of the twin at unit q * phases + phase."""
    rng = np.random.default_rng(12)
    net = unet(rng, methods=methods)
    for name in UNET_LAYERS:
        check_phases_against_twin(net, name, 40, 36)
    assert net.phases("up2") == (2, 2) and net.phases("top") == (4, 4)
    assert net.stride("top") == (4, 4) and net.phases("mid") == (1, 1)


def test_above_upsamplings_each_phase_is_exact_on_interior_units():
    """correlate(x, decode(phase=r, adjoint)) + decoded bias equals forward's units of phase r
    at the units whose box lies inside the image (biases included)."""
    rng = np.random.default_rng(13)
    net = unet(rng)
    x = rnd(rng, 2, 1, 44, 40)
    for name in UNET_LAYERS:
        check_phases_exact(net, name, x)


def test_upsampled_images_and_strides_dividing_the_period():
    """An upsampling of the images (units of half a pixel), a stride-2 conv back to whole
    pixels, and a stride that does not divide the period is refused with the reason."""
    rng = np.random.default_rng(14)
    net = fd.Network([
        fd.Upsample((2, 3), "bilinear", name="up"),
        fd.Conv(rnd(rng, 2, 1, 3, 3), pad=1, name="c"),
        fd.Conv(rnd(rng, 2, 2, 4, 3), stride=(2, 3), name="back"),
        fd.Conv(rnd(rng, 2, 2, 3, 3), name="top"),
    ])
    assert net.is_chain
    assert net.phases("c") == (2, 3) and net.stride("c") == (1, 1)
    assert net.phases("back") == (1, 1) and net.phases("top") == (1, 1)
    for name in ("c", "back", "top"):
        check_phases_against_twin(net, name, 16, 15, unit=1)
    with pytest.raises(ValueError, match=r"phase \(2, 0\) out of range.*'c' have 2x3 phases"):
        fd.decode(net, "c", phase=(2, 0))
    odd = fd.Network([fd.Upsample(2, name="up"),
                      fd.Conv(rnd(rng, 1, 1, 3, 3), stride=3, name="s3")])
    assert odd.forward(np.ones((1, 1, 9, 9))).shape == (1, 1, 6, 6)
    with pytest.raises(ValueError, match=r"'s3'.*stride 3 does not divide the period 2"):
        fd.decode(odd, "s3")
    with pytest.raises(ValueError, match=r"out of range"):
        fd.decode(net, "top", phase=1)
    with pytest.raises(ValueError, match=r"'c' is above an upsampling.*2x3 phases"):
        fd.reconstruction_error(net, np.ones((1, 1, 16, 15)), "c", progress=False)


def test_decode_all_above_upsamplings_gives_phase_0_and_the_recursion_below():
    rng = np.random.default_rng(15)
    net = unet(rng)
    got = fd.decode_all(net)
    assert list(got) == net.conv_layers
    for name, D in got.items():
        np.testing.assert_allclose(D, fd.decode(net, name), rtol=1e-12, atol=1e-12)
    named = fd.decode_all(net, layers=["top", "mid", "up1"], unpool="adjoint", n_threads=1)
    assert list(named) == ["mid", "up1", "top"]
    two = fd.decode_all(net, layers=["top", "mid", "up1"], unpool="adjoint", n_threads=2)
    for name in named:
        np.testing.assert_array_equal(named[name], two[name])
    assert net.summary().splitlines()[-1].split()[-2:] == [
        "4x4", "%dx%d" % net.receptive_field("top")]


def test_depthwise_inverted_residuals_decode_group_by_group():
    """MobileNetV2-shaped blocks (1x1 expansion, depthwise 3x3, 1x1 projection, added):
    decode (the sweep) and decode_all (the recursion) substitute grouped convs group by group
    and agree with each other and with the twin's gradient."""
    rng = np.random.default_rng(17)
    net = fd.Network([
        fd.Conv(rnd(rng, 4, 2, 3, 3), stride=2, pad=1, name="stem"),
        fd.ReLU6(name="r0"),
        fd.Conv(rnd(rng, 8, 4, 1, 1), name="expand"),
        fd.BatchNorm(rng.random(8) + 0.5, rnd(rng, 8), rnd(rng, 8), rng.random(8) + 0.5,
                     name="bn"),
        fd.Conv(rnd(rng, 8, 1, 3, 3), pad=1, name="dw"),
        fd.Conv(rnd(rng, 4, 8, 1, 1), name="project"),
        fd.Add(inputs=("project", "r0"), name="res"),
        fd.Conv(rnd(rng, 8, 2, 3, 3), stride=2, pad=1, name="grouped"),   # 2 groups
    ], input_shape=(2, 21, 19))
    assert net["dw"].groups == 8 and net["grouped"].groups == 2
    got = fd.decode_all(net)
    for name in ("dw", "project", "res", "grouped"):
        check_against_twin(net, name)
    for name, D in got.items():
        np.testing.assert_allclose(D, fd.decode(net, name), rtol=1e-10, atol=1e-12)


def test_the_recursions_gemm_is_bitwise_the_same_for_1_and_2_threads():
    """The 1x1 steps of the graph recursion split a GEMM's columns among threads: the same
    sums for every column, whatever the thread count, and the product itself."""
    from fastdecode._engine.graph_recursion import MIN_COLUMNS, gemm_columns
    rng = np.random.default_rng(18)
    for dtype in (np.float32, np.float64):
        a = rng.standard_normal((37, 29)).astype(dtype)
        b = rng.standard_normal((29, 2 * MIN_COLUMNS + 77)).astype(dtype)
        one = gemm_columns(a, b, np.empty((37, b.shape[1]), dtype), 1)
        two = gemm_columns(a, b, np.empty((37, b.shape[1]), dtype), 2)
        np.testing.assert_array_equal(one, two)
        np.testing.assert_allclose(one, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)


# --- chains with linear heads -------------------------------------------------------------

def test_chains_ending_in_linear_layers_decode_as_the_twin_and_exactly():
    """A chain ending in global pooling and a linear layer, and one whose linear layer reads
    the map itself (flattened): the linear layers decode through the sweep, as the gradient
    of the twin and exactly; decode_all still decodes every conv layer by default."""
    rng = np.random.default_rng(16)
    gap = fd.Network([
        fd.Conv(rnd(rng, 3, 2, 3, 3), rnd(rng, 3), stride=2, name="c1"),
        fd.ReLU(name="r1"),
        fd.Pool("avg", size=2, name="p1"),
        fd.Conv(rnd(rng, 4, 3, 2, 2), rnd(rng, 4), name="c2"),
        fd.GlobalPool("avg", name="gap"),
        fd.Linear(rnd(rng, 5, 4), rnd(rng, 5), name="fc"),
    ], input_shape=(2, 15, 13))
    flat = fd.Network([
        fd.Conv(rnd(rng, 3, 2, 3, 3), rnd(rng, 3), name="c1"),
        fd.Pool("avg", size=2, name="p1"),
        fd.Linear(rnd(rng, 4, 3 * 4 * 3), rnd(rng, 4), name="fc"),
        fd.Linear(rnd(rng, 2, 4), rnd(rng, 2), name="fc2"),
    ], input_shape=(2, 10, 8))
    for net in (gap, flat):
        assert net.is_chain
        x = rnd(rng, 3, *net.input_shape)
        for name in [l.name for l in net.layers if l.type == "linear"]:
            check_against_twin(net, name)
        linear = fd.Network([l for l in net.layers if l.type != "relu"],
                            input_shape=net.input_shape)
        check_exact(linear, "fc", x, everywhere=True)
        got = fd.decode_all(net)
        assert list(got) == net.conv_layers
        for name, D in got.items():
            np.testing.assert_allclose(D, fd.decode(net, name), rtol=1e-12, atol=1e-12)
        named = fd.decode_all(net, layers=["fc", "c1"])
        assert list(named) == ["c1", "fc"]
        np.testing.assert_array_equal(named["fc"], fd.decode(net, "fc"))
    assert fd.decode(gap, "fc").shape == (5, 2, 13, 13)   # the last image row is not read
    with pytest.raises(ValueError, match=r"'r1' is a relu layer; only conv and linear layers "
                                         r"of a chain.*c1, c2, fc\)"):
        fd.decode(gap, "r1")
    with pytest.raises(ValueError, match=r"'p1' is a pool layer; only conv layers"):
        fd.decode(fd.Network(gap.layers[:4]), "p1")


# --- random small graphs -----------------------------------------------------------------

@st.composite
def small_graphs(draw):
    """A stem conv, then blocks: residual adds (a conv branch beside a 1x1 or identity
    shortcut) or concatenations of branches of different kernels, with average pools and
    upsamplings (nearest or bilinear, by 2: the layers above have phases)."""
    seed = draw(st.integers(0, 2 ** 31))
    rng = np.random.default_rng(seed)
    C0 = draw(st.integers(1, 2))
    k = draw(st.sampled_from([1, 2, 3]))
    layers = [fd.Conv(rnd(rng, 2, C0, k, k), rnd(rng, 2), stride=draw(st.integers(1, 2)),
                      pad=draw(st.integers(0, k - 1)), name="stem")]
    prev, C = "stem", 2
    for b in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["add", "concat"] + (["pool", "up"] if b else [])))
        if kind == "up":
            layers.append(fd.Upsample(2, draw(st.sampled_from(["nearest", "bilinear"])),
                                      name="u%d" % b, inputs=prev))
            prev = "u%d" % b
            continue
        if kind == "pool":
            layers.append(fd.Pool("avg", size=2, stride=draw(st.integers(1, 2)),
                                  name="p%d" % b, inputs=prev))
            prev = "p%d" % b
            continue
        s = draw(st.integers(1, 2))
        names = []
        n = draw(st.integers(2, 3))
        K = 2 if kind == "add" else None
        for j in range(n):
            kk = draw(st.sampled_from([1, 3, 5]))
            Kj = K or draw(st.integers(1, 2))
            nm = "b%d_%d" % (b, j)
            layers.append(fd.Conv(rnd(rng, Kj, C, kk, kk), rnd(rng, Kj), stride=s,
                                  pad=(kk - 1) // 2, name=nm, inputs=prev))
            names.append(nm)
            if kind == "concat":
                C_j = Kj
                names[-1] = (nm, C_j)
        if kind == "add":
            layers.append(fd.Add(inputs=tuple(names), name="m%d" % b))
            C = 2
        else:
            layers.append(fd.Concat(inputs=tuple(n_ for n_, _ in names), name="m%d" % b))
            C = sum(c for _, c in names)
        prev = "m%d" % b
    return fd.Network(layers)


@SETTINGS
@given(net=small_graphs())
def test_random_graphs_decode_as_the_twin_and_exactly(net):
    rng = np.random.default_rng(0)
    name = net.layers[-1].name
    S, R = net.stride(name), net.receptive_field(name)
    H = R[0] + 3 * S[0]
    W = R[1] + 2 * S[1]
    x = rnd(rng, 1, net.input_channels, H, W)
    if net.phases(name) == (1, 1):
        check_against_twin(net, name, extra=1)
        check_exact(net, name, x, everywhere=False)
    else:
        check_phases_against_twin(net, name, H, W)
        check_phases_exact(net, name, x)


# --- decode_all ------------------------------------------------------------------------------

def test_decode_all_of_a_graph_equals_decode_layer_by_layer():
    rng = np.random.default_rng(7)
    net = linear_residual(rng, bias=True)
    got = fd.decode_all(net)
    assert list(got) == net.conv_layers
    for name, D in got.items():
        np.testing.assert_allclose(D, fd.decode(net, name), rtol=1e-12, atol=1e-12)
    named = fd.decode_all(net, layers=["cat", "sum", "cat"], unpool="adjoint")
    assert list(named) == ["sum", "cat"]
    np.testing.assert_allclose(named["cat"], fd.decode(net, "cat", unpool="adjoint"),
                               rtol=1e-12, atol=1e-12)
    one = fd.decode_all(net, layers="top", n_threads=1)
    two = fd.decode_all(net, layers="top", n_threads=2)
    np.testing.assert_array_equal(one["top"], two["top"])


def test_decode_all_to_a_directory_is_memory_mapped(tmp_path):
    rng = np.random.default_rng(8)
    net = linear_residual(rng)
    want = fd.decode_all(net)
    got = fd.decode_all(net, out=tmp_path / "d", memory_limit=1e5)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == sorted(
        n + ".npy" for n in net.conv_layers)
    for name, D in got.items():
        assert isinstance(D, np.memmap) and not D.flags.writeable
        np.testing.assert_allclose(D, want[name], rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(np.load(tmp_path / "d" / (name + ".npy")), D)
    # a chain too, and odd names are percent-encoded
    chain = fd.Network([fd.Conv(rnd(rng, 3, 1, 3, 3), name="conv/1"), fd.ReLU(),
                        fd.Conv(rnd(rng, 2, 3, 3, 3), name="c2")])
    got = fd.decode_all(chain, out=str(tmp_path))
    assert (tmp_path / "conv%2F1.npy").is_file()
    np.testing.assert_array_equal(got["c2"], fd.decode(chain, "c2"))


def test_decode_all_to_a_directory_stopped_midway_leaves_only_finished_layers(tmp_path,
                                                                              monkeypatch):
    from fastdecode._engine import graph_recursion
    rng = np.random.default_rng(8)
    net = linear_residual(rng)
    walk = graph_recursion.walk

    def failing(net_, keep, unpool, threads, emit=None, alloc=None):
        def first_only(i, D, off):
            emit(i, D, off)
            raise KeyboardInterrupt
        return walk(net_, keep, unpool, threads, emit=first_only, alloc=alloc)
    monkeypatch.setattr(graph_recursion, "walk", failing)
    with pytest.raises(KeyboardInterrupt):
        fd.decode_all(net, out=tmp_path / "d", memory_limit=1e5)
    left = sorted(p.name for p in (tmp_path / "d").iterdir())
    assert left == [net.conv_layers[0] + ".npy"]   # no temporary files, no spill folder


def test_decode_all_to_a_directory_interrupted_while_spilling_leaves_nothing(tmp_path,
                                                                           monkeypatch):
    """An interrupt while a spill file is being made (after the file exists, before it is
    mapped) leaves no spill folder and no temporary file."""
    from fastdecode import _streaming
    rng = np.random.default_rng(8)
    net = linear_residual(rng)
    made = []

    def memmap(path, **kwargs):
        open(path, "wb").close()
        made.append(path)
        raise KeyboardInterrupt
    monkeypatch.setattr(_streaming.np, "memmap", memmap)
    with pytest.raises(KeyboardInterrupt):
        fd.decode_all(net, out=tmp_path / "d", memory_limit=1e4)
    assert made and not os.path.exists(os.path.dirname(made[0]))
    assert os.path.dirname(os.path.dirname(made[0])) == str(tmp_path / "d")
    left = [p.name for p in (tmp_path / "d").iterdir()]
    assert all(n[:-4] in net.conv_layers and n.endswith(".npy") for n in left), left


def test_decode_all_to_a_directory_keeps_the_peak_memory_bounded(tmp_path):
    """The results (25 MB) never sit in memory at once: the traced peak stays well below them
    (the limit, 3 MB, bounds the results' chunks and the decoded maps; the substitution
    kernels' own buffers come on top, as documented)."""
    import tracemalloc
    rng = np.random.default_rng(9)
    net = fd.Network([
        fd.Conv(rnd(rng, 8, 3, 5, 5), name="c0"),
        fd.Pool("avg", size=2, name="p0"),
        fd.Conv(rnd(rng, 8, 8, 5, 5), name="c1"),
        fd.Conv(rnd(rng, 8, 8, 3, 3), name="c1b", inputs="p0"),
        fd.Pool("avg", size=3, stride=1, name="p1b"),
        fd.Add(inputs=("c1", "p1b"), name="sum"),
        fd.Pool("avg", size=2, name="p1"),
        fd.Conv(rnd(rng, 1024, 8, 5, 5), name="c2")])
    total = sum(net.channels(n) * np.prod(net.decoded_shape(n)) * 8 for n in net.conv_layers)
    limit = 3e6
    assert total > 8 * limit
    tracemalloc.start()
    try:
        got = fd.decode_all(net, out=tmp_path, memory_limit=limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < total / 2
    np.testing.assert_allclose(got["c1"], fd.decode(net, "c1"), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("unpool", ["nearest", "adjoint", "bilinear", "bicubic"])
def test_the_sweep_agrees_with_the_chain_on_chains(unpool):
    """The graph sweep run on chains gives the chain engine's decoded filters and biases."""
    from fastdecode.decoding import _decode_graph
    from fastdecode.ops import unpool_method
    rng = np.random.default_rng(10)
    net = fd.Network([
        fd.Conv(rnd(rng, 4, 2, 3, 3), rnd(rng, 4), stride=2, pad=1),
        fd.BatchNorm(rng.random(4) + 0.5, rnd(rng, 4), rnd(rng, 4), rng.random(4) + 0.5),
        fd.LeakyReLU(0.2),
        fd.Pool("max", size=3, stride=2),
        fd.Conv(rnd(rng, 6, 2, 3, 3), rnd(rng, 6), dilate=2, pad=2),   # 2 groups
        fd.Pool("avg", size=2),
        fd.Conv(rnd(rng, 5, 6, 2, 2), rnd(rng, 5)),
        fd.GlobalPool("max"),
        fd.Conv(rnd(rng, 3, 5, 1, 1), rnd(rng, 3), name="top"),
    ], input_shape=(2, 64, 64))
    assert net.is_chain
    for name in ("layer5", "layer7", "top"):
        want = fd.decode_with_bias(net, name, unpool=unpool)
        got = _decode_graph(net, net.index(name), None, unpool_method(unpool), 2, None, True)
        np.testing.assert_allclose(got.filters, want.filters, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got.bias, want.bias, rtol=1e-10, atol=1e-12)


@SETTINGS
@given(net=small_graphs(), unpool=st.sampled_from(["nearest", "adjoint"]))
def test_the_graph_recursion_equals_the_sweep(net, unpool):
    got = fd.decode_all(net, unpool=unpool)
    assert list(got) == net.conv_layers
    for name, D in got.items():
        np.testing.assert_allclose(D, fd.decode(net, name, unpool=unpool), rtol=1e-10,
                                   atol=1e-10)


def test_the_graph_recursion_through_gates_heads_and_pools():
    rng = np.random.default_rng(11)
    net = fd.Network([
        fd.Conv(rnd(rng, 4, 2, 3, 3), rnd(rng, 4), pad=1, name="c"),
        fd.Pool("max", size=3, stride=2, name="mp"),
        fd.Conv(rnd(rng, 4, 4, 1, 1), rnd(rng, 4), name="e"),
        fd.GlobalPool("avg", name="sq", inputs="e"),
        fd.Sigmoid(name="sig"),
        fd.Gate(inputs=("e", "sig"), hold=[0.5, 1.0, 2.0, -1.0], name="gate"),
        fd.Concat(inputs=("gate", "mp"), name="cat"),
        fd.BatchNorm(rng.random(8) + 0.5, rnd(rng, 8), rnd(rng, 8), rng.random(8) + 0.5,
                     name="bn"),
        fd.GlobalPool("max", name="gp"),
        fd.Linear(rnd(rng, 3, 8), name="fc"),
    ], input_shape=(2, 15, 15))
    names = ["c", "e", "gate", "cat", "bn", "gp", "fc"]
    for unpool in ("nearest", "adjoint"):
        got = fd.decode_all(net, layers=names, unpool=unpool)
        for name in names:
            np.testing.assert_allclose(got[name], fd.decode(net, name, unpool=unpool),
                                       rtol=1e-10, atol=1e-12)
    one = fd.decode_all(net, layers=names, n_threads=1)
    two = fd.decode_all(net, layers=names, n_threads=2)
    for name in names:
        np.testing.assert_array_equal(one[name], two[name])
