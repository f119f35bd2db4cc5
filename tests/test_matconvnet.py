"""MatConvNet files: every layout MATLAB writes, the round trip, hostile files (the real
networks are in test_matconvnet_real.py).

Crafted networks are written as MATLAB lays them out (tests/matlab_layouts.py) and their forward
pass is compared with a reference computed on the MATLAB-layout arrays themselves (filters
[H W C K], images [H W C]) with scipy.signal.correlate2d, so a wrong orientation cannot pass.
"""

import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from scipy.signal import correlate2d

import fastdecode as fd
from fastdecode import cli
from fastdecode.matconvnet import MatConvNetError, format_info

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matlab_layouts as ml  # noqa: E402

try:  # h5py is optional: without it, v7.3 files are refused and their tests skipped
    import h5py
except ImportError:
    h5py = None
needs_h5py = pytest.mark.skipif(h5py is None, reason="h5py is not installed")
V73 = pytest.param("v73", marks=needs_h5py)


# --- a reference forward pass in MATLAB's layout --------------------------------------------------

def ref_conv(x, filters, bias, stride=(1, 1), pad=(0, 0, 0, 0), dilate=(1, 1)):
    """vl_nnconv on one image x [H W D] with filters [h w C K] (C dividing D: groups)."""
    f = filters.reshape(filters.shape + (1,) * (4 - filters.ndim)).astype(np.float64)
    h, w, C, K = f.shape
    if dilate != (1, 1):
        d = np.zeros(((h - 1) * dilate[0] + 1, (w - 1) * dilate[1] + 1, C, K))
        d[::dilate[0], ::dilate[1]] = f
        f = d
    t, b, l, r = pad
    xp = np.pad(x.astype(np.float64), ((t, b), (l, r), (0, 0)))
    per = K // (x.shape[2] // C)
    out = []
    for k in range(K):
        g = k // per
        acc = sum(correlate2d(xp[:, :, g * C + j], f[:, :, j, k], mode="valid") for j in range(C))
        out.append(acc[::stride[0], ::stride[1]] + (0 if bias is None else np.ravel(bias)[k]))
    return np.stack(out, axis=2)


def ref_pool(x, method, size, stride, pad):
    """vl_nnpool on x [H W D]: windows clipped at the padded border."""
    H, W, D = x.shape
    t, b, l, r = pad
    Ho = (H + t + b - size[0]) // stride[0] + 1
    Wo = (W + l + r - size[1]) // stride[1] + 1
    out = np.zeros((Ho, Wo, D))
    for i in range(Ho):
        for j in range(Wo):
            r0, c0 = i * stride[0] - t, j * stride[1] - l
            win = x[max(r0, 0):min(r0 + size[0], H), max(c0, 0):min(c0 + size[1], W)]
            out[i, j] = win.max(axis=(0, 1)) if method == "max" else win.mean(axis=(0, 1))
    return out


def ref_lrn(x, n, kappa, alpha, beta):
    D = x.shape[2]
    out = np.empty_like(x, dtype=np.float64)
    for k in range(D):
        lo, hi = max(0, k - (n - 1) // 2), min(D - 1, k + n - 1 - (n - 1) // 2)
        out[:, :, k] = x[:, :, k] * (kappa + alpha * (x[:, :, lo:hi + 1] ** 2).sum(axis=2)) ** -beta
    return out


# --- the crafted network --------------------------------------------------------------------------

RNG = np.random.default_rng(7)
C0 = 4
F1 = RNG.standard_normal((3, 2, 2, 6)).astype(np.float32)   # [h w C K]: 2 groups on 4 channels
B1 = RNG.standard_normal((1, 6)).astype(np.float32)
F2 = RNG.standard_normal((2, 2, 6)).astype(np.float32)      # one filter: MATLAB stores it 3-D
B2 = RNG.standard_normal((1, 1)).astype(np.float32)
GAIN = RNG.uniform(0.5, 2, 6).astype(np.float32)
BETA = RNG.standard_normal(6).astype(np.float32)
MU = RNG.standard_normal(6).astype(np.float32)
SIGMA = RNG.uniform(0.5, 2, 6).astype(np.float32)
LRN_PARAM = (3.0, 2.0, 0.1, 0.75)
AVERAGE = RNG.uniform(0, 255, (9, 8, C0)).astype(np.float32)  # [H W C]
IMAGE = RNG.standard_normal((9, 8, C0)).astype(np.float32)    # non-square, [H W C]
CLASSES = ["cat", "dog\tlong"]


def reference(x, *, pool_method="max", with_bnorm=True, dilate=(2, 2)):
    y = ref_conv(x, F1, B1, stride=(2, 1), pad=(1, 0, 2, 1))
    y = np.maximum(y, 0) + 0.1 * np.minimum(y, 0)
    y = ref_pool(y, pool_method, (2, 3), (1, 2), (0, 1, 0, 1))
    if with_bnorm:
        y = GAIN * (y - MU) / SIGMA + BETA
        y = ref_lrn(y, 3, 2.0, 0.1, 0.75)
    return ref_conv(y, F2, B2, dilate=dilate)


def simplenn_layers(hyper=np.float64, unnamed_loss=True):
    return [ml.conv("conv1", F1, B1, stride=[2, 1], pad=[1, 0, 2, 1], hyper=hyper),
            ml.relu("relu1", 0.1),
            ml.pool("pool1", "max", [2, 3], stride=[1, 2], pad=[0, 1, 0, 1]),
            ml.bnorm("bn1", GAIN, BETA, MU, SIGMA),
            {"name": "norm1", "type": "lrn", "param": np.array([LRN_PARAM])},
            ml.conv("conv2", F2, B2, dilate=2, hyper=hyper),
            {"name": "drop", "type": "dropout", "rate": 0.5},
            ml.softmaxloss(None if unnamed_loss else "loss", [1, 2, 2])]


def meta():
    return {"inputSize": np.array([[9.0, 8.0, C0]]),
            "normalization": {"averageImage": AVERAGE, "interpolation": "bilinear",
                              "border": np.array([[2.0, 3.0]]), "keepAspect": True},
            "classes": {"name": ml.cell(*CLASSES), "description": ml.cell("a cat", "a dog")}}


def dagnn_variables():
    def conv_block(size, pad=(0, 0, 0, 0), stride=(1, 1), dilate=(1, 1)):
        return {"size": np.array([size], float), "hasBias": True, "pad": np.array([pad], float),
                "stride": np.array([stride], float), "dilate": np.array([dilate], float),
                "opts": ml.cell()}
    blocks = [
        ("conv1", "dagnn.Conv", ["input"], ["x1"], ["conv1_f", "conv1_b"],
         conv_block([3, 2, 2, 6], (1, 0, 2, 1), (2, 1))),
        ("relu1", "dagnn.ReLU", ["x1"], ["x2"], [], {"leak": 0.1, "useShortCircuit": True}),
        ("pool1", "dagnn.Pooling", ["x2"], ["x3"], [],
         {"method": "max", "poolSize": np.array([[2.0, 3.0]]), "pad": np.array([[0.0, 1, 0, 1]]),
          "stride": np.array([[1.0, 2.0]])}),
        ("bn1", "dagnn.BatchNorm", ["x3"], ["x4"], ["bn1_g", "bn1_b", "bn1_m"],
         {"numChannels": 6.0, "epsilon": 1e-5}),
        ("norm1", "dagnn.LRN", ["x4"], ["x5"], [], {"param": np.array([LRN_PARAM])}),
        ("conv2", "dagnn.Conv", ["x5"], ["x6"], ["conv2_f", "conv2_b"],
         conv_block([2, 2, 6, 1], dilate=(2, 2))),
        ("drop", "dagnn.DropOut", ["x6"], ["prediction"], [], {"rate": 0.5}),
        ("objective", "dagnn.Loss", ["prediction", "label"], ["objective"], [],
         {"loss": "softmaxlog"}),
    ]
    params = [("conv1_f", F1), ("conv1_b", B1.reshape(-1, 1)),
              ("bn1_g", GAIN.reshape(-1, 1)), ("bn1_b", BETA.reshape(-1, 1)),
              ("bn1_m", np.stack([MU, SIGMA], axis=1)),
              ("conv2_f", F2), ("conv2_b", B2)]
    return ml.dagnn(blocks, params, meta=meta())


LAYOUTS = {
    "cnn_train": lambda: ml.cnn_train_variables(ml.simplenn(simplenn_layers(), meta())),
    "cnn_train_uint8": lambda: ml.cnn_train_variables(
        ml.simplenn(simplenn_layers(hyper=np.uint8), meta())),
    "model_zoo": lambda: {"layers": ml.cell(*simplenn_layers(unnamed_loss=False)),
                          "meta": meta()},
    "dagnn": dagnn_variables,                              # save -struct of net.saveobj()
    "dagnn_net": lambda: {"net": dagnn_variables(), "info": {"epoch": 3.0}},
}


def write(tmp_path, variables, fmt, name="net.mat"):
    path = tmp_path / name
    if fmt == "v73":
        ml.write_v73(path, variables, subsystem=True)
    else:
        ml.write_v5(path, variables, compress=(fmt == "v7"))
    return path


def forward_matlab(net, x):
    """net.forward on one [H W C] image, answered as [H W K]."""
    return net.forward(x.transpose(2, 0, 1)[None].astype(np.float64))[0].transpose(1, 2, 0)


@pytest.mark.parametrize("fmt", ["v6", "v7", V73])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_layouts_load_with_matlab_orientation(tmp_path, layout, fmt):
    path = write(tmp_path, LAYOUTS[layout](), fmt)
    net = fd.load_matconvnet(path)
    assert [l.name for l in net] == ["conv1", "relu1", "pool1", "bn1", "norm1", "conv2", "drop"]
    assert [l.type for l in net] == ["conv", "relu", "pool", "bnorm", "lrn", "conv", "dropout"]
    assert net["conv1"].weights.shape == (6, 2, 3, 2) and net["conv1"].groups == 2
    assert net["conv2"].weights.shape == (1, 6, 2, 2) and net["conv2"].dilate == (2, 2)
    assert net["pool1"].pad == (0, 1, 0, 1) and net["pool1"].stride == (1, 2)
    got = forward_matlab(net, IMAGE)
    want = reference(IMAGE)
    assert got.shape == want.shape == (2, 3, 1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    losses = net.meta["losses"]
    assert len(losses) == 1 and losses[0]["type"] in ("softmaxloss", "dagnn.Loss")


@pytest.mark.parametrize("fmt", ["v7", V73])
def test_meta_in_our_orientation(tmp_path, fmt):
    net = fd.load_matconvnet(write(tmp_path, LAYOUTS["cnn_train"](), fmt))
    m = net.meta
    assert m["inputSize"] == (9, 8, C0)
    avg = m["normalization"]["averageImage"]
    assert avg.shape == (C0, 9, 8) and avg.dtype == np.float32
    np.testing.assert_array_equal(avg[2], AVERAGE[:, :, 2])
    assert m["normalization"]["interpolation"] == "bilinear"
    assert m["normalization"]["border"] == (2, 3) and m["normalization"]["keepAspect"] is True
    assert m["classes"]["name"] == CLASSES and m["classes"]["description"] == ["a cat", "a dog"]
    assert m["losses"] == [{"name": "layer8", "type": "softmaxloss"}]


@pytest.mark.parametrize("fmt", ["v6", V73])
def test_legacy_layout(tmp_path, fmt):
    """beta16 files: filters/biases fields, Kx1 biases, normalization and classes at the top."""
    b1 = B1.reshape(-1, 1)
    layers = [ml.conv("conv1", F1, b1, stride=[2, 1], pad=[1, 0, 2, 1], legacy=True),
              ml.relu("relu1", 0.1),
              ml.pool("pool1", "avg", [2, 3], stride=[1, 2], pad=[0, 1, 0, 1]),
              ml.conv("conv2", F2, B2, legacy=True)]
    for layer in layers:  # no dilation before beta17
        layer.pop("dilate", None)
    variables = {"layers": ml.cell(*layers),
                 "normalization": {"averageImage": np.array([[120.0, 110.0, 100.0, 90.0]]),
                                   "imageSize": np.array([[9.0, 8.0, C0]])},
                 "classes": {"name": ml.cell(*CLASSES)}}
    net = fd.load_matconvnet(write(tmp_path, variables, fmt))
    got = forward_matlab(net, IMAGE)
    np.testing.assert_allclose(got, reference(IMAGE, pool_method="avg", with_bnorm=False,
                                              dilate=(1, 1)),
                               rtol=1e-5, atol=1e-5)
    avg = net.meta["normalization"]["averageImage"]  # a per-channel mean stored 1xC
    assert avg.shape == (C0, 1, 1) and avg.ravel().tolist() == [120, 110, 100, 90]
    assert net.meta["classes"]["name"] == CLASSES and net.meta["losses"] == []


def test_per_channel_mean_stored_1x1xC(tmp_path):
    m = meta()
    m["normalization"]["averageImage"] = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 4)
    net = fd.load_matconvnet(write(tmp_path, {"layers": ml.cell(*simplenn_layers()),
                                              "meta": m}, "v7"))
    avg = net.meta["normalization"]["averageImage"]
    assert avg.shape == (4, 1, 1) and avg.ravel().tolist() == [1, 2, 3, 4]


B3 = np.array([0.5, -1.0, 2.0], np.float32)


@pytest.mark.parametrize("bias", [np.zeros((0, 0), np.float32), B3.reshape(1, 3), B3.reshape(3, 1)],
                         ids=["empty", "1xK", "Kx1"])
@pytest.mark.parametrize("fmt", ["v7", V73])
def test_bias_layouts_and_unnamed_layers(tmp_path, bias, fmt):
    f1 = F1[:, :, :, :3]
    layers = [ml.conv(None, f1, bias), {"type": "relu"}, ml.conv("\x01odd\nname", F2[:, :, :3], B2)]
    net = fd.load_matconvnet(write(tmp_path, ml.simplenn(layers), fmt))
    assert [l.name for l in net] == ["layer1", "layer2", "\x01odd\nname"]
    assert (net["layer1"].bias is None) == (bias.size == 0)
    x = IMAGE[:, :, :2]
    want = ref_conv(np.maximum(ref_conv(x, f1, bias if bias.size else None), 0), F2[:, :, :3], B2)
    np.testing.assert_allclose(forward_matlab(net, x), want, rtol=1e-5, atol=1e-5)
    text = format_info(net, title="odd")
    assert "\\x01odd\\nname" in text and "\x01" not in text


@pytest.mark.parametrize("fmt", ["v7", V73])
def test_training_state_is_not_kept(tmp_path, fmt):
    """momentum and the loss layer's labels are passed over: they do not count in the budget."""
    layers = simplenn_layers()
    layers[0]["momentum"] = ml.cell(np.zeros((64, 64, 16, 16), np.float32), B1)  # 4 MiB
    layers[-1]["class"] = np.zeros((1, 2**20), np.float32)                         # 4 MiB
    path = write(tmp_path, ml.cnn_train_variables(ml.simplenn(layers, meta())), fmt)
    net = fd.load_matconvnet(path, memory_limit=2**20)
    np.testing.assert_allclose(forward_matlab(net, IMAGE), reference(IMAGE), rtol=1e-5, atol=1e-5)
    with pytest.raises(MatConvNetError, match="memory limit"):
        fd.load_matconvnet(path, memory_limit=2**10)


# --- saving ---------------------------------------------------------------------------------------

def assert_same_network(a, b):
    assert len(a) == len(b) and a.input_channels == b.input_channels
    for la, lb in zip(a, b):
        assert type(la) is type(lb) and la.name == lb.name
        for attr in ("weights", "bias", "gain", "mean", "sigma"):
            va, vb = getattr(la, attr, None), getattr(lb, attr, None)
            if isinstance(va, np.ndarray):
                assert va.dtype == vb.dtype and va.shape == vb.shape
                assert va.tobytes() == vb.tobytes()
            elif not isinstance(la, fd.BatchNorm):  # a BatchNorm's bias is an array above
                assert va is None and vb is None
        for attr in ("stride", "pad", "kernel", "dilate", "method", "leak", "rate", "depth",
                     "kappa", "alpha", "beta", "groups"):
            assert getattr(la, attr, None) == getattr(lb, attr, None)


def assert_same_meta(a, b):
    assert set(a) == set(b)
    for k in a:
        if isinstance(a[k], dict):
            assert_same_meta(a[k], b[k])
        elif isinstance(a[k], np.ndarray):
            assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
            np.testing.assert_array_equal(a[k], b[k])
        else:
            assert a[k] == b[k]


@needs_h5py
@pytest.mark.parametrize("layout", ["cnn_train", "dagnn"])
def test_round_trip_is_exact(tmp_path, layout):
    net = fd.load_matconvnet(write(tmp_path, LAYOUTS[layout](), "v73"))
    out = tmp_path / "saved.mat"
    fd.save_matconvnet(net, out)
    again = fd.load_matconvnet(out)
    assert_same_network(net, again)
    assert_same_meta(net.meta, again.meta)
    x = IMAGE.transpose(2, 0, 1)[None]
    np.testing.assert_array_equal(net.forward(x), again.forward(x))
    fd.save_matconvnet(again, tmp_path / "twice.mat")
    assert_same_meta(fd.load_matconvnet(tmp_path / "twice.mat").meta, net.meta)


def test_saved_file_is_simplenn_in_matlab_layout(tmp_path):
    net = fd.load_matconvnet(write(tmp_path, LAYOUTS["cnn_train"](), "v7"))
    net.meta["normalization"]["imageSize"] = [9, 8, 4]
    out = tmp_path / "saved.mat"
    fd.save_matconvnet(net, out)
    m = scipy.io.loadmat(out)  # read independently, as MATLAB would see it
    assert set(k for k in m if not k.startswith("__")) == {"net"}
    layers = m["net"]["layers"][0, 0]
    assert layers.dtype == object and layers.shape == (1, 7)
    conv1 = layers[0, 0][0, 0]
    assert conv1["type"][0] == "conv" and conv1["name"][0] == "conv1"
    w, b = conv1["weights"][0, 0], conv1["weights"][0, 1]
    assert w.dtype == np.float32 and w.shape == (3, 2, 2, 6)
    np.testing.assert_array_equal(w, F1)
    assert b.dtype == np.float32 and b.shape == (1, 6)
    assert conv1["stride"].dtype == np.float64 and conv1["stride"].tolist() == [[2.0, 1.0]]
    assert conv1["pad"].tolist() == [[1.0, 0.0, 2.0, 1.0]]
    pool1 = layers[0, 2][0, 0]
    assert pool1["method"][0] == "max" and pool1["pool"].tolist() == [[2.0, 3.0]]
    bn = layers[0, 3][0, 0]["weights"]
    assert bn[0, 2].shape == (6, 2)
    np.testing.assert_array_equal(bn[0, 2], np.stack([MU, SIGMA], axis=1))
    meta_m = m["net"]["meta"][0, 0]
    np.testing.assert_array_equal(meta_m["normalization"][0, 0]["averageImage"][0, 0], AVERAGE)
    assert meta_m["inputSize"][0, 0].tolist() == [[9.0, 8.0, 4.0]]
    image_size = meta_m["normalization"][0, 0]["imageSize"][0, 0]  # a list of numbers: a row
    assert image_size.dtype == np.float64 and image_size.tolist() == [[9.0, 8.0, 4.0]]
    assert meta_m["classes"][0, 0]["name"][0, 0].dtype == object  # a cell array of strings


def test_save_is_all_or_nothing(tmp_path):
    net = fd.load_matconvnet(write(tmp_path, LAYOUTS["cnn_train"](), "v7"))
    out = tmp_path / "out.mat"
    out.write_bytes(b"previous")
    net.meta["unwritable"] = object()
    with pytest.raises(TypeError, match="unwritable"):
        fd.save_matconvnet(net, out)
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.mat", "out.mat"]


# --- bad files ------------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        fd.load_matconvnet(tmp_path / "absent.mat")


def test_not_a_mat_file(tmp_path):
    path = tmp_path / "text.mat"
    path.write_text("hello, this is not a MAT file\n" * 10)
    with pytest.raises(MatConvNetError, match="not a MAT file") as info:
        fd.load_matconvnet(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("fmt", ["v6", "v7", V73])
def test_truncated_files(tmp_path, fmt):
    whole = write(tmp_path, LAYOUTS["cnn_train"](), fmt).read_bytes()
    for cut in (100, len(whole) // 3, len(whole) - 5):
        path = tmp_path / ("cut%d.mat" % cut)
        path.write_bytes(whole[:cut])
        with pytest.raises(ValueError) as info:
            fd.load_matconvnet(path)
        assert str(path) in str(info.value)


@pytest.mark.parametrize("fmt", ["v6", "v7", V73])
def test_corrupted_bytes_give_value_errors(tmp_path, fmt):
    """Random byte changes anywhere past the header: the file loads or a ValueError says why."""
    whole = bytearray(write(tmp_path, LAYOUTS["dagnn"](), fmt).read_bytes())
    rng = np.random.default_rng(3)
    start = 512 if fmt == "v73" else 128
    for trial in range(60):
        data = bytearray(whole)
        for i in rng.integers(start, len(data), size=rng.integers(1, 4)):
            data[i] = rng.integers(0, 256)
        path = tmp_path / "corrupt.mat"
        path.write_bytes(bytes(data))
        try:
            fd.load_matconvnet(path)
        except ValueError as exc:
            assert str(path) in str(exc)


def test_no_network_inside(tmp_path):
    path = tmp_path / "data.mat"
    scipy.io.savemat(path, {"images": np.zeros((2, 2))})
    with pytest.raises(MatConvNetError, match="no MatConvNet network"):
        fd.load_matconvnet(path)


@needs_h5py
def test_net_saved_as_dagnn_object_is_explained(tmp_path):
    path = tmp_path / "obj.mat"
    ml.write_v73(path, {"net": ml.Object("dagnn.DagNN")})
    with pytest.raises(MatConvNetError, match="saveobj"):
        fd.load_matconvnet(path)


def bad_network(tmp_path, change):
    layers = simplenn_layers()
    change(layers)
    return write(tmp_path, ml.simplenn(layers), "v7")


@pytest.mark.parametrize("change, message", [
    (lambda L: L.__setitem__(5, ml.conv("conv2", F2[:, :, :4], B2)),
     "layer 6 of 8 'conv2' \\(conv\\): filters 2x2x4x1 \\(depth 4\\) do not fit the 6 channels"),
    (lambda L: L.__setitem__(3, ml.bnorm("bn1", GAIN[:5], BETA[:5], MU[:5], SIGMA[:5])),
     "'bn1' \\(bnorm\\): 5 channels, but the output of layer 3 of 8 'pool1' has 6"),
    (lambda L: L[0]["weights"].__setitem__((0, 0), np.where(F1 > 1.5, np.nan, F1)),
     "conv1.*non-finite"),
    (lambda L: L.insert(2, {"name": "up", "type": "convt"}), "'up'.*convt"),
    (lambda L: L.insert(2, ml.softmaxloss("early", [1])), "'early'.*loss"),
    (lambda L: L[3]["weights"].__setitem__((0, 2), np.zeros((6, 3), np.float32)), "bn1.*moments"),
    (lambda L: L[0]["weights"].__setitem__((0, 1), np.zeros((1, 5), np.float32)), "conv1.*bias"),
])
def test_bad_layers_are_named(tmp_path, change, message):
    path = bad_network(tmp_path, change)
    with pytest.raises(MatConvNetError, match=message) as info:
        fd.load_matconvnet(path)
    assert str(path) in str(info.value)


def test_dagnn_declared_size_must_match(tmp_path):
    variables = dagnn_variables()
    variables["layers"].records[0]["block"]["size"] = np.array([[3.0, 2.0, 2.0, 5.0]])
    with pytest.raises(MatConvNetError, match="conv1.*declares size 3x2x2x5.*3x2x2x6"):
        fd.load_matconvnet(write(tmp_path, variables, "v7"))


@needs_h5py
@pytest.mark.parametrize("merge", ["dagnn.Sum", "dagnn.Concat"])
def test_dagnn_merges_load_as_a_graph(tmp_path, merge):
    variables = dagnn_variables()
    recs = variables["layers"].records
    recs.insert(5, {"name": "merge", "type": merge, "inputs": ml.cell("x5", "x4"),
                    "outputs": ml.cell("x5m"), "params": ml.cell(),
                    "block": {"dim": 3.0} if merge == "dagnn.Concat" else ml.Empty("struct")})
    if merge == "dagnn.Sum":
        recs[6]["inputs"] = ml.cell("x5m")   # conv2 reads the sum
    net = fd.load_matconvnet(write(tmp_path, variables, "v73"))
    assert not net.is_chain and net.inputs("merge") == ("norm1", "bn1")
    assert net["merge"].type == ("add" if merge == "dagnn.Sum" else "concat")
    x = np.random.default_rng(0).standard_normal((2, net.input_channels, 9, 12)).astype(np.float32)
    a, b = net.forward(x, upto="norm1"), net.forward(x, upto="bn1")
    want = a + b if merge == "dagnn.Sum" else np.concatenate([a, b], axis=1)
    np.testing.assert_allclose(net.forward(x, upto="merge"), want, rtol=1e-6)
    assert fd.decode(net, "merge").shape[0] == want.shape[1]
    with pytest.raises(TypeError, match="graph"):
        fd.save_matconvnet(net, tmp_path / "out.mat")


@pytest.mark.parametrize("method", ["avg", "max"])
def test_dagnn_pooling_over_the_whole_map_loads_as_global_pooling(tmp_path, method):
    """A dagnn.Pooling whose window is its whole input at the file's inputSize (a ResNet's
    final pooling) becomes a GlobalPool, the network takes that input size, and a conv on
    the pooled vector decodes; windows smaller than their input stay pools."""
    base = fd.load_matconvnet(write(tmp_path, dagnn_variables(), "v7", name="base.mat"))
    _, K, h, w = base.output_shape((1, C0, 9, 8), upto="conv2")
    assert (h, w) != (1, 1)
    variables = dagnn_variables()
    recs = variables["layers"].records
    fc = np.random.default_rng(1).standard_normal((1, 1, K, 3))
    recs[-1:-1] = [
        {"name": "gap", "type": "dagnn.Pooling", "inputs": ml.cell("prediction"),
         "outputs": ml.cell("pooled"), "params": ml.cell(),
         "block": {"method": method, "poolSize": np.array([[float(h), float(w)]]),
                   "pad": np.array([[0.0, 0, 0, 0]]), "stride": np.array([[1.0, 1.0]])}},
        {"name": "fc", "type": "dagnn.Conv", "inputs": ml.cell("pooled"),
         "outputs": ml.cell("scores"), "params": ml.cell("fc_f"),
         "block": {"size": np.array([[1.0, 1, K, 3]]), "hasBias": False,
                   "pad": np.array([[0.0, 0, 0, 0]]), "stride": np.array([[1.0, 1]]),
                   "dilate": np.array([[1.0, 1]]), "opts": ml.cell()}}]
    recs[-1]["inputs"] = ml.cell("scores", "label")
    variables["params"].records.append({"name": "fc_f", "value": fc, "learningRate": 1.0,
                                        "weightDecay": 1.0})
    net = fd.load_matconvnet(write(tmp_path, variables, "v7"))
    assert net["gap"].type == "globalpool" and net["gap"].method == method
    assert net["pool1"].type == "pool" and net.input_shape == (C0, 9, 8)
    x = np.random.default_rng(0).standard_normal((2, C0, 9, 8))
    y = net.forward(x, upto="drop")
    want = y.mean(axis=(2, 3)) if method == "avg" else y.max(axis=(2, 3))
    np.testing.assert_allclose(net.forward(x, upto="gap")[:, :, 0, 0], want, rtol=1e-5)
    np.testing.assert_allclose(net.forward(x)[:, :, 0, 0],
                               want @ fc.reshape(K, 3).astype(np.float32), rtol=1e-4,
                               atol=1e-5)
    D = fd.decode(net, "fc")
    assert D.shape == (3, C0) + net.receptive_field("fc") and np.all(np.isfinite(D))
    assert net.receptive_field("fc")[0] >= 9 and net.receptive_field("fc")[1] >= 8


def test_dagnn_branch_loads(tmp_path):
    variables = dagnn_variables()
    recs = variables["layers"].records
    recs.insert(2, {"name": "side", "type": "dagnn.ReLU", "inputs": ml.cell("x1"),
                    "outputs": ml.cell("side"), "params": ml.cell(), "block": {"leak": 0.0}})
    net = fd.load_matconvnet(write(tmp_path, variables, "v7"))
    assert net.inputs("side") == ("conv1",) and net.inputs("relu1") == ("conv1",)
    x = np.random.default_rng(0).standard_normal((1, net.input_channels, 9, 12)).astype(np.float32)
    np.testing.assert_array_equal(net.forward(x, upto="side"),
                                  np.maximum(net.forward(x, upto="conv1"), 0))


@pytest.mark.parametrize("change, message", [
    (lambda r: r.insert(2, {"name": "crop1", "type": "dagnn.Crop", "inputs": ml.cell("x1"),
                            "outputs": ml.cell("xc"), "params": ml.cell(),
                            "block": ml.Empty("struct")}),
     r"'crop1' \(dagnn.Crop\).*not supported"),
    (lambda r: r[5].__setitem__("inputs", ml.cell("x5", "other")), "2 inputs.*'input', 'other'"),
    (lambda r: r[1].__setitem__("inputs", ml.cell("x2")), "cycle"),
])
def test_bad_dagnn_graphs_are_named(tmp_path, change, message):
    variables = dagnn_variables()
    change(variables["layers"].records)
    with pytest.raises(MatConvNetError, match=message):
        fd.load_matconvnet(write(tmp_path, variables, "v7"))


@needs_h5py
def test_missing_h5py_says_how_to_install(tmp_path, monkeypatch):
    path = write(tmp_path, LAYOUTS["cnn_train"](), "v73")
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match="pip install"):
        fd.load_matconvnet(path)


# --- decompression bombs --------------------------------------------------------------------------

def peak_while(fn):
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_v5_bomb_is_refused_before_allocation(tmp_path):
    path = tmp_path / "bomb.mat"
    ml.write_v5_bomb(path, [1024, 1024, 768])  # declares 3 GiB of single
    assert path.stat().st_size < 100_000

    def load():
        with pytest.raises(MatConvNetError, match="1024x1024x768.*3.0 GiB.*memory limit"):
            fd.load_matconvnet(path)
    assert peak_while(load) < 50 * 2**20


def test_v5_array_expanding_a_thousandfold_obeys_the_budget(tmp_path):
    path = tmp_path / "zeros.mat"
    ml.write_v5_bomb(path, [1, 1, 1024, 4096], zeros=2**40)  # 16 MiB of zeros, all present
    assert path.stat().st_size < 50_000

    def load():
        with pytest.raises(MatConvNetError, match="16.0 MiB.*memory limit of 4.0 MiB"):
            fd.load_matconvnet(path, memory_limit=4 * 2**20)
    assert peak_while(load) < 8 * 2**20
    net = fd.load_matconvnet(path)  # within the default budget the same file loads
    assert net[0].weights.shape == (4096, 1024, 1, 1) and not net[0].weights.any()


def test_v5_cell_count_bomb(tmp_path):
    path = tmp_path / "cells.mat"
    ml.write_v5_cell_bomb(path, 10**9)

    def load():
        # the loader expects a struct: a cell of any size is refused from its header, unread
        with pytest.raises(MatConvNetError, match="1x1000000000 cell, not a 1x1 struct"):
            fd.load_matconvnet(path)
    assert peak_while(load) < 10 * 2**20


@needs_h5py
def test_hdf5_bomb_is_refused_before_allocation(tmp_path):
    path = tmp_path / "bomb73.mat"
    ml.write_v73_bomb(path, (2, 64, 4096, 4096))  # HDF5 order: MATLAB 4096x4096x64x2, 8 GiB
    assert path.stat().st_size < 100_000

    def load():
        with pytest.raises(MatConvNetError, match="4096x4096x64x2.*8.0 GiB"):
            fd.load_matconvnet(path)
    assert peak_while(load) < 50 * 2**20


@needs_h5py
def test_hdf5_reference_cycle_is_refused(tmp_path):
    path = tmp_path / "cycle.mat"
    ml.write_v73(path, LAYOUTS["cnn_train"]())
    with h5py.File(path, "r+") as f:  # make a cell hold a reference to itself
        loop = f["#refs#"].create_dataset("loop", shape=(1, 1), dtype=h5py.ref_dtype)
        loop.attrs["MATLAB_class"] = np.bytes_("cell")
        loop[0, 0] = loop.ref
        del f["net/meta"]
        f["net"]["meta"] = loop
    with pytest.raises(MatConvNetError, match="nested more than"):
        fd.load_matconvnet(path)


def test_info_command_refuses_a_bomb_in_one_line(tmp_path, capsys):
    path = tmp_path / "bomb.mat"
    ml.write_v5_bomb(path, [1024, 1024, 768])
    assert cli.main(["info", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "memory limit" in err and str(path) in err


# --- the input depth -------------------------------------------------------------------------------

def _nets_whose_filters_do_not_tell_the_input_depth():
    w = np.random.default_rng(7).standard_normal((4, 3, 3, 3)).astype(np.float32)
    return {"grouped first conv": fd.Network([fd.Conv(w), fd.ReLU()], input_channels=6),
            "no conv layer": fd.Network([fd.Pool("avg", size=2), fd.ReLU()], input_channels=5)}


@pytest.mark.parametrize("case", ["grouped first conv", "no conv layer"])
def test_round_trip_keeps_the_input_depth_the_filters_do_not_tell(tmp_path, case):
    net = _nets_whose_filters_do_not_tell_the_input_depth()[case]
    fd.save_matconvnet(net, tmp_path / "n.mat")
    again = fd.load_matconvnet(tmp_path / "n.mat")
    assert_same_network(net, again)
    x = np.random.default_rng(8).standard_normal((2, net.input_channels, 9, 9))
    np.testing.assert_array_equal(net.forward(x), again.forward(x))
    H, W, C = again.meta["inputSize"]  # the smallest input the network takes
    assert C == net.input_channels and again.output_shape((1, C, H, W))[2:] == (1, 1)


def test_given_input_size_is_kept_on_save(tmp_path):
    w = np.ones((4, 3, 3, 3), np.float32)
    net = fd.Network([fd.Conv(w)], input_channels=6, meta={"inputSize": (32, 30, 6)})
    fd.save_matconvnet(net, tmp_path / "n.mat")
    again = fd.load_matconvnet(tmp_path / "n.mat")
    assert again.meta["inputSize"] == (32, 30, 6) and again.layers[0].groups == 2
    plain = fd.Network([fd.Conv(w)])
    fd.save_matconvnet(plain, tmp_path / "p.mat")
    assert "inputSize" not in fd.load_matconvnet(tmp_path / "p.mat").meta
