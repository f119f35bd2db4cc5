"""Opening a model by its content: MatConvNet (MAT v5, v7.3) or ONNX."""

import os
import shutil
from importlib import resources

import numpy as np
import pytest

import fastdecode as fd

LENET = resources.files("fastdecode.models") / "lenet-mnist.mat"


def test_matconvnet_file_loads_whatever_its_name(tmp_path):
    renamed = tmp_path / "model.bin"
    shutil.copyfile(LENET, renamed)
    net = fd.load(renamed)
    ref = fd.load_matconvnet(LENET)
    assert fd.model_format(renamed) == "matconvnet"
    assert net.conv_layers == ref.conv_layers
    for a, b in zip(net.layers, ref.layers):
        if isinstance(a, fd.Conv):
            np.testing.assert_array_equal(a.weights, b.weights)


def test_matconvnet_v73_is_recognised(shared_data):
    path = shared_data / "matconvnet" / "dncnn-sigma25-simplenn-v73.mat"
    if not path.is_file():
        pytest.skip("no v7.3 fixture")
    pytest.importorskip("h5py")
    assert fd.model_format(path) == "matconvnet"
    assert fd.load(path).conv_layers == fd.load_matconvnet(path).conv_layers


def test_input_shape_is_refused_for_matconvnet_files():
    with pytest.raises(ValueError, match="input_shape applies to ONNX models"):
        fd.load(LENET, input_shape=(1, 28, 28))


def test_memory_limit_is_passed_on():
    with pytest.raises(fd.MatConvNetError):
        fd.load(LENET, memory_limit=1000)


@pytest.mark.parametrize("content", [b"\x00\x01garbage", b"PK\x03\x04 a zip file",
                                     b"\x89PNG\r\n\x1a\n...."])
def test_other_files_are_refused_naming_them(tmp_path, content):
    path = tmp_path / "thing.onnx"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not a MatConvNet \\(MAT\\) or ONNX model file"):
        fd.load(path)


def test_file_system_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        fd.load(tmp_path / "missing.onnx")
    with pytest.raises(IsADirectoryError):
        fd.load(tmp_path)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        fd.load(empty)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        fd.load(fifo)

