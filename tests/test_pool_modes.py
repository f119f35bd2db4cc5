"""Pooling with PyTorch's and ONNX's options: ceil_mode and count_include_pad.

Oracles: torch.nn.functional's max_pool2d and avg_pool2d (symmetric pads), onnxruntime's MaxPool
and AveragePool (asymmetric pads), and the autograd gradient of the linear twin for decoding.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastdecode as fd

torch = pytest.importorskip("torch")
F = torch.nn.functional

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def torch_pool(x, method, size, stride, pad, ceil_mode, count_include_pad):
    """PyTorch's pooling of x (numpy) with symmetric pads (rows, cols), or None when refused."""
    t = torch.from_numpy(x)
    try:
        if method == "max":
            y = F.max_pool2d(t, size, stride, pad, ceil_mode=ceil_mode)
        else:
            y = F.avg_pool2d(t, size, stride, pad, ceil_mode=ceil_mode,
                             count_include_pad=count_include_pad)
    except RuntimeError:
        return None
    return y.numpy()


@st.composite
def torch_cases(draw):
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sy, sx = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    H, W = draw(st.integers(1, 13)), draw(st.integers(1, 13))
    method = draw(st.sampled_from(["max", "avg"]))
    ceil_mode = draw(st.booleans())
    cip = method == "avg" and draw(st.booleans())
    N, C = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    return (N, C, H, W), method, (kh, kw), (sy, sx), (ph, pw), ceil_mode, cip, seed


@SETTINGS
@given(torch_cases())
def test_forward_equals_torch(case):
    """Pool.forward equals PyTorch's pooling (max bitwise, avg to rounding) with the same
    output size, refuses what PyTorch refuses, and gives the same bits for 1 and 2 threads."""
    shape, method, size, stride, (ph, pw), ceil_mode, cip, seed = case
    x = np.random.default_rng(seed).standard_normal(shape)
    pool = fd.Pool(method, size=size, stride=stride, pad=(ph, ph, pw, pw), ceil_mode=ceil_mode,
                   count_include_pad=cip)
    want = torch_pool(x, method, size, stride, (ph, pw), ceil_mode, cip)
    if want is None:
        with pytest.raises(ValueError, match="smaller than the pooling window"):
            pool.forward(x)
        return
    got = pool.forward(x, n_threads=1)
    assert got.shape == want.shape == shape[:2] + pool.output_size(shape[2:])
    if method == "max":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(pool.forward(x, n_threads=2), got)
    ops = fd.pool(x, method, size=size, stride=stride, pad=(ph, ph, pw, pw),
                  ceil_mode=ceil_mode, count_include_pad=cip)
    np.testing.assert_array_equal(ops, got)


def _ceil_count(H, k, s, p):
    return -(-(H + 2 * p - k) // s) + 1


@pytest.mark.parametrize("H, k, s, p", [
    (3, 2, 2, 1),    # the ceil window would start in the bottom padding: dropped
    (3, 2, 3, 0),    # ... just past the input, unpadded
    (4, 2, 3, 1),    # stride larger than the window
    (7, 4, 3, 2),
    (8, 3, 3, 1),
])
@pytest.mark.parametrize("method, cip", [("max", False), ("avg", False), ("avg", True)])
def test_the_window_starting_in_the_padding_is_dropped(H, k, s, p, method, cip):
    """Where ceil would count a window that starts in the bottom padding, PyTorch drops it,
    and so does Pool, giving PyTorch's values."""
    x = np.random.default_rng(H * 100 + k * 10 + s).standard_normal((1, 2, H, H))
    pool = fd.Pool(method, size=k, stride=s, pad=p, ceil_mode=True, count_include_pad=cip)
    want = torch_pool(x, method, k, s, p, True, cip)
    assert want.shape[2] == _ceil_count(H, k, s, p) - 1   # the case is one PyTorch drops
    got = pool.forward(x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("H, k, s, p", [(5, 2, 2, 0), (4, 3, 2, 1), (3, 3, 3, 1), (5, 4, 3, 2)])
@pytest.mark.parametrize("method, cip", [("max", False), ("avg", False), ("avg", True)])
def test_ceil_mode_adds_the_clipped_last_window(H, k, s, p, method, cip):
    """Where ceil counts one window more than floor, that window runs past the bottom padding
    and is clipped (its overhang never counted in the average), as PyTorch."""
    x = np.random.default_rng(H * 100 + k * 10 + s).standard_normal((2, 1, H, H + 1))
    floor = fd.Pool(method, size=k, stride=s, pad=p, count_include_pad=cip).forward(x)
    got = fd.Pool(method, size=k, stride=s, pad=p, ceil_mode=True,
                  count_include_pad=cip).forward(x)
    assert got.shape[2] == floor.shape[2] + 1
    np.testing.assert_array_equal(got[:, :, :-1, :floor.shape[3]], floor)
    np.testing.assert_allclose(got, torch_pool(x, method, k, s, p, True, cip),
                               rtol=1e-13, atol=1e-15)


def test_default_is_matconvnet():
    """Without the options nothing changes: the floor count, max ignoring the padding,
    average dividing by the clipped area (PyTorch's count_include_pad=False)."""
    x = np.random.default_rng(3).standard_normal((1, 2, 7, 6))
    for method in ("max", "avg"):
        got = fd.Pool(method, size=3, stride=2, pad=1).forward(x)
        np.testing.assert_allclose(got, torch_pool(x, method, 3, 2, 1, False, False),
                                   rtol=1e-13, atol=1e-15)
        assert got.shape[2:] == ((7 + 2 - 3) // 2 + 1, (6 + 2 - 3) // 2 + 1)
    assert fd.Pool("avg", size=3, stride=2, pad=1).pad == (1, 1, 1, 1)


# --- onnxruntime: asymmetric pads ---------------------------------------------------------------

def ort_pool(x, method, size, stride, pad, ceil_mode, cip):
    """onnxruntime's MaxPool / AveragePool (opset 19) of x (float32), pad (t, b, l, r)."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    pt, pb, pl, pr = pad
    attrs = dict(kernel_shape=list(size), strides=list(stride), pads=[pt, pl, pb, pr],
                 ceil_mode=int(ceil_mode))
    if method == "avg":
        attrs["count_include_pad"] = int(cip)
    node = helper.make_node("AveragePool" if method == "avg" else "MaxPool", ["x"], ["y"],
                            **attrs)
    graph = helper.make_graph(
        [node], "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    options = ort.SessionOptions()
    options.log_severity_level = 4
    sess = ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_asymmetric_pads_equal_onnxruntime(data):
    """With asymmetric pads (ONNX's pads attribute), both options, float32: the values and
    output size of onnxruntime, wherever the padded input holds a window."""
    draw = data.draw
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sy, sx = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    pad = (draw(st.integers(0, kh - 1)), draw(st.integers(0, kh - 1)),
           draw(st.integers(0, kw - 1)), draw(st.integers(0, kw - 1)))
    H, W = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    method = draw(st.sampled_from(["max", "avg"]))
    ceil_mode = draw(st.booleans())
    cip = method == "avg" and draw(st.booleans())
    pool = fd.Pool(method, size=(kh, kw), stride=(sy, sx), pad=pad, ceil_mode=ceil_mode,
                   count_include_pad=cip)
    gp = pool.pad
    if H + gp[0] + gp[1] < kh or W + gp[2] + gp[3] < kw:
        return   # refused by Pool (onnxruntime clips windows larger than the padded input)
    x = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).standard_normal(
        (1, 2, H, W)).astype(np.float32)
    got = pool.forward(x)
    want = ort_pool(x, method, (kh, kw), (sy, sx), pad, ceil_mode, cip)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


# --- geometry and decoding ----------------------------------------------------------------------

def twin(net, x, upto):
    """The linear twin of a chain (or graph) of convs, pools and adds in torch: every pooling a
    sum over its window, as PyTorch counts the windows (ceil mode included)."""
    T = {-1: x}
    last = net.index(upto)
    for i, layer in enumerate(net.layers[:last + 1]):
        ins = [T[s] for s in net._inputs[i]]
        a = ins[0]
        if layer.type == "add":
            y = sum(ins[1:], ins[0])
        elif layer.type == "conv":
            pt, pb, pl, pr = layer.pad
            y = F.conv2d(F.pad(a, (pl, pr, pt, pb)), torch.from_numpy(layer.dense_weights()),
                         stride=layer.stride)
        elif layer.type == "pool":
            pt, pb, pl, pr = layer.declared_pad
            assert (pt, pl) == (pb, pr)   # PyTorch pads symmetrically
            y = F.avg_pool2d(a, layer.kernel, layer.stride, (pt, pl), ceil_mode=layer.ceil_mode,
                             divisor_override=1)
        else:
            assert layer.decode_role == "identity"
            y = a
        T[i] = y
    return T[last]


def _nets(rng):
    """Chains and a graph with ceil-mode and count_include_pad pools above padded convs."""
    c1 = lambda: fd.Conv(rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3),  # noqa
                         pad=1, name="c1")
    yield fd.Network([c1(), fd.Pool("avg", size=3, stride=2, pad=1, ceil_mode=True,
                                    count_include_pad=True, name="p1"),
                      fd.Conv(rng.standard_normal((4, 3, 2, 2)), pad=(0, 1, 1, 0), name="c2")])
    yield fd.Network([c1(), fd.ReLU(), fd.Pool("max", size=2, stride=2, pad=1, ceil_mode=True,
                                               name="p1"),
                      fd.Conv(rng.standard_normal((4, 3, 3, 3)), name="c2"),
                      fd.Pool("avg", size=3, stride=3, ceil_mode=True, name="p2"),
                      fd.Conv(rng.standard_normal((2, 4, 2, 2)), name="c3")])
    yield fd.Network([c1(), fd.Pool("avg", size=(2, 3), stride=(3, 2), pad=(1, 1), ceil_mode=True,
                                    count_include_pad=True, name="p1"),
                      fd.Conv(rng.standard_normal((4, 3, 2, 2)), name="c2"),
                      fd.Conv(rng.standard_normal((4, 3, 2, 2)), name="c3", inputs="p1"),
                      fd.Add(name="sum", inputs=("c2", "c3"))])


@pytest.mark.parametrize("which", [0, 1, 2])
def test_geometry_matches_the_forward_shape(which):
    """correlate(x, decode(net, L), stride=net.stride(L), pad=net.padding(L)) has the shape of
    net.forward(x, upto=L) for every input size, ceil-mode windows dropped or not."""
    net = list(_nets(np.random.default_rng(1)))[which]
    top = net.layers[-1].name
    D = fd.decode(net, top)
    R = net.receptive_field(top)[0]
    for H in range(R, R + 12):
        x = np.random.default_rng(H).standard_normal((1, 2, H, H + 3))
        want = net.forward(x, upto=top).shape
        got = fd.correlate(x, D, stride=net.stride(top), pad=net.padding(top)).shape
        assert got == want, H


@pytest.mark.parametrize("which", [0, 1, 2])
def test_nearest_decoding_is_the_gradient_of_the_linear_twin(which):
    """decode(net, L, unpool="nearest") equals the gradient of a centre unit of the linear twin,
    whose pools sum over PyTorch's (ceil-mode) windows."""
    net = list(_nets(np.random.default_rng(2)))[which]
    name = net.layers[-1].name
    S, P, R = net.stride(name), net.padding(name), net.receptive_field(name)
    H, W = 3 * R[0] + 5, 3 * R[1] + 4
    x = torch.zeros((1, 2, H, W), dtype=torch.float64, requires_grad=True)
    y = twin(net, x, name)
    u, v = y.shape[2] // 2, y.shape[3] // 2
    oy, ox = u * S[0] - P[0], v * S[1] - P[2]
    assert 0 <= oy and oy + R[0] <= H and 0 <= ox and ox + R[1] <= W   # a centre unit
    D = fd.decode(net, name, unpool="nearest")
    for k in range(D.shape[0]):
        g, = torch.autograd.grad(y[0, k, u, v], x, retain_graph=True)
        want = np.zeros((2, H, W))
        want[:, oy:oy + R[0], ox:ox + R[1]] = D[k]
        np.testing.assert_allclose(g[0].numpy(), want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("which", [0, 2])
def test_adjoint_decoding_is_exact_on_interior_units(which):
    """With unpool="adjoint" a linear network with ceil-mode, count_include_pad average pools
    is reproduced exactly on its interior units (decoded filter inside the image), whose pool
    windows touch no padding; the border units differ."""
    net = list(_nets(np.random.default_rng(4)))[which]
    name = net.layers[-1].name
    x = np.random.default_rng(5).standard_normal((2, 2, 23, 21))
    dec = fd.decode_with_bias(net, name, unpool="adjoint")
    S, P, R = net.stride(name), net.padding(name), net.receptive_field(name)
    y = fd.correlate(x, dec.filters, stride=S, pad=P) + dec.bias[:, None, None]
    want = net.forward(x, upto=name)
    assert y.shape == want.shape
    H, W = x.shape[2:]
    rows = [u for u in range(y.shape[2]) if 0 <= u * S[0] - P[0] and u * S[0] - P[0] + R[0] <= H]
    cols = [v for v in range(y.shape[3]) if 0 <= v * S[1] - P[2] and v * S[1] - P[2] + R[1] <= W]
    assert rows and cols and len(rows) < y.shape[2]
    inner = np.ix_(range(y.shape[0]), range(y.shape[1]), rows, cols)
    np.testing.assert_allclose(y[inner], want[inner], rtol=1e-9, atol=1e-9)
    assert not np.allclose(y, want)


# --- the layer's API ----------------------------------------------------------------------------

def test_options_are_described_and_copied():
    pool = fd.Pool("avg", size=3, stride=2, pad=(1, 0, 1, 1), ceil_mode=True,
                   count_include_pad=True, name="p")
    assert pool.declared_pad == (1, 0, 1, 1) and pool.pad == (1, 1, 1, 2)
    assert pool.ceil_mode is True and pool.count_include_pad is True
    assert "ceil_mode=True" in repr(pool) and "count_include_pad=True" in repr(pool)
    assert "pad=(1, 0, 1, 1)" in repr(pool)
    assert pool.describe() == "pool avg 3x3 stride (2, 2) pad (1, 0, 1, 1) ceil count-pad"
    plain = fd.Pool("max", size=2)
    assert "ceil" not in repr(plain) and "count" not in repr(plain)
    assert plain.describe() == "pool max 2x2 stride (2, 2)"
    net = fd.Network([fd.Conv(np.ones((2, 1, 3, 3)), name="c"), pool]).astype(np.float32)
    copy = net["p"]
    assert copy is not pool and (copy.ceil_mode, copy.count_include_pad) == (True, True)
    assert copy.declared_pad == pool.declared_pad and copy.pad == pool.pad
    assert "ceil count-pad" in net.summary()
    x = np.random.default_rng(0).standard_normal((1, 1, 9, 9)).astype(np.float32)
    assert net.forward(x).shape == net.output_shape(x.shape)


def test_flags_accept_onnx_integers():
    assert fd.Pool("avg", ceil_mode=1, count_include_pad=np.int64(0)).ceil_mode is True
    assert fd.Pool("avg", ceil_mode=np.bool_(False)).ceil_mode is False


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(method="max", count_include_pad=True), ValueError, "average pooling only"),
    (dict(method="avg", ceil_mode="yes"), TypeError, "ceil_mode must be True or False"),
    (dict(method="avg", count_include_pad=2), TypeError, "count_include_pad must be True"),
    (dict(method="avg", ceil_mode=None), TypeError, "ceil_mode"),
    (dict(method="avg", pad=-1, ceil_mode=True), ValueError, "pad"),
    (dict(method="avg", size=-2, ceil_mode=True), ValueError, "size"),
    (dict(method="avg", stride=0, ceil_mode=True), ValueError, "stride"),
    (dict(method="max", size=2, pad=(0, 2, 0, 0), ceil_mode=True), ValueError,
     "smaller than the window"),
])
def test_invalid_options_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        fd.Pool(name="p", **kwargs)
    with pytest.raises(error, match=match):
        fd.pool(np.ones((1, 1, 4, 4)), **kwargs)


def test_input_smaller_than_the_window_is_refused():
    """Ceil mode lets a stride reach past a small input, as PyTorch; what PyTorch refuses,
    Pool refuses."""
    x = np.ones((1, 1, 2, 2))
    assert fd.Pool("max", size=3, stride=3, ceil_mode=True).forward(x).shape == (1, 1, 1, 1)
    assert torch_pool(x, "max", 3, 3, 0, True, False).shape == (1, 1, 1, 1)
    assert torch_pool(x, "max", 3, 1, 0, True, False) is None
    with pytest.raises(ValueError, match="smaller than the pooling window"):
        fd.Pool("max", size=3, stride=1, ceil_mode=True).forward(x)
    with pytest.raises(ValueError, match="too small for layer 'layer1'"):
        fd.Network([fd.Pool("avg", size=3, stride=1, ceil_mode=True)],
                   input_channels=1).forward(x)


def test_matconvnet_files_hold_ceil_mode_without_count_include_pad(tmp_path):
    """vl_nnpool over the grid padding is the ceil-mode pool (clipped windows); a padded
    count_include_pad average has no MatConvNet form and is refused."""
    pytest.importorskip("scipy")
    rng = np.random.default_rng(6)
    conv = fd.Conv(rng.standard_normal((2, 1, 3, 3)), name="c")
    net = fd.Network([conv, fd.Pool("avg", size=3, stride=2, pad=1, ceil_mode=True,
                                    name="p")])
    fd.save_matconvnet(net, tmp_path / "a.mat")
    back = fd.load_matconvnet(tmp_path / "a.mat")
    x = rng.standard_normal((1, 1, 12, 11))
    np.testing.assert_array_equal(back.forward(x), net.forward(x))
    bad = fd.Network([conv, fd.Pool("avg", size=3, stride=2, pad=1, count_include_pad=True,
                                    name="p")])
    with pytest.raises(TypeError, match="'p'.*count_include_pad"):
        fd.save_matconvnet(bad, tmp_path / "b.mat")
