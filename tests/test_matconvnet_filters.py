"""Filters [H W C K] become (K, C, H, W) without a second copy of the network: reordered in the
memory the reader made, or copied (integer classes) with the copy charged against the budget."""

import sys
from pathlib import Path

import numpy as np
import pytest

import fastdecode as fd
from fastdecode import MatConvNetError, _matvalues

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matlab_layouts as ml  # noqa: E402

MiB = 2**20
try:  # h5py is optional: without it, v7.3 files are refused and their tests skipped
    import h5py
except ImportError:
    h5py = None
V73 = pytest.param("v73", marks=pytest.mark.skipif(h5py is None, reason="h5py is not installed"))


def _write(path, variables, fmt):
    if fmt == "v73":
        ml.write_v73(path, variables)
    else:
        ml.write_v5(path, variables, compress=(fmt == "v7"))
    return path


def _filters(dtype, shape=(3, 5, 4, 7), seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -100), min(info.max, 100), shape).astype(dtype)


def _one_conv(f):
    return ml.simplenn([ml.conv("conv1", f, np.zeros((1, f.shape[3]), np.float32))])


@pytest.mark.parametrize("fmt", ["v6", "v7", V73])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.uint8])
def test_filters_reordered_exactly(tmp_path, monkeypatch, fmt, dtype):
    # a small block, so that the in-place reordering runs over several blocks of planes
    monkeypatch.setattr(_matvalues, "IN_PLACE_BLOCK", 2 * 3 * 5)
    f = _filters(dtype)
    net = fd.load_matconvnet(_write(tmp_path / "n.mat", {"net": _one_conv(f)}, fmt))
    w = net["conv1"].weights
    assert w.flags.c_contiguous and w.shape == (7, 4, 3, 5)
    assert w.dtype == (np.float64 if dtype == np.float64 else np.float32)
    np.testing.assert_array_equal(w, f.transpose(3, 2, 0, 1).astype(w.dtype))


def test_filters_of_one_column_or_row(tmp_path):
    for shape in [(1, 5, 2, 3), (4, 1, 2, 3), (1, 1, 6, 2)]:
        f = _filters(np.float32, shape)
        net = fd.load_matconvnet(_write(tmp_path / "n.mat", {"net": _one_conv(f)}, "v7"))
        np.testing.assert_array_equal(net["conv1"].weights, f.transpose(3, 2, 0, 1))


def test_big_endian_filters_reordered_in_place(tmp_path):
    pytest.importorskip("h5py")
    f = _filters(np.float32, (3, 2, 2, 2))
    path = _write(tmp_path / "n.mat", {"net": _one_conv(f.astype(">f4"))}, "v73")
    w = fd.load_matconvnet(path)["conv1"].weights
    assert w.dtype == np.float32 and w.dtype.isnative
    np.testing.assert_array_equal(w, f.transpose(3, 2, 0, 1))


@pytest.mark.parametrize("fmt", ["v7", V73])
def test_layers_sharing_a_parameter_share_its_filters(tmp_path, fmt):
    f = _filters(np.float32, (3, 2, 4, 4))
    block = {"size": np.array([[3.0, 2, 4, 4]]), "hasBias": False, "pad": np.array([[1.0, 1, 0, 1]]),
             "stride": np.array([[1.0, 1]]), "dilate": np.array([[1.0, 1]]), "opts": ml.cell()}
    blocks = [("conv1", "dagnn.Conv", ["input"], ["x1"], ["w"], block),
              ("conv2", "dagnn.Conv", ["x1"], ["x2"], ["w"], block)]
    variables = ml.dagnn(blocks, [("w", f)])
    net = fd.load_matconvnet(_write(tmp_path / "n.mat", variables, fmt))
    want = f.transpose(3, 2, 0, 1)
    np.testing.assert_array_equal(net["conv1"].weights, want)
    np.testing.assert_array_equal(net["conv2"].weights, want)


def test_converted_filters_are_charged(tmp_path):
    # 576 kB of int8 filters read, 2.3 MB of float32 filters made from them
    f = _filters(np.int8, (3, 3, 64, 1000))
    path = _write(tmp_path / "n.mat", {"net": _one_conv(f)}, "v7")
    with pytest.raises(MatConvNetError, match="memory limit") as info:
        fd.load_matconvnet(path, memory_limit=2 * MiB)
    assert str(path) in str(info.value) and "conv1" in str(info.value)
    net = fd.load_matconvnet(path, memory_limit=4 * MiB)
    np.testing.assert_array_equal(net["conv1"].weights, f.transpose(3, 2, 0, 1))
