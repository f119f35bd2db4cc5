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



def test_onnx_file_is_recognised_and_loaded(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["y"], ["z"], name="relu")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4, 8, 8])],
        [numpy_helper.from_array(w, "w")])
    path = tmp_path / "model.dat"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    assert fd.model_format(path) == "onnx"
    net = fd.load(path)
    np.testing.assert_array_equal(net["conv"].weights, w)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    ref = np.maximum(fd.correlate(x, w, pad=1), 0)
    np.testing.assert_allclose(net.forward(x), ref, rtol=1e-5, atol=1e-5)


def _dynamic_model(path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    w = np.random.default_rng(1).standard_normal((2, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv"),
         helper.make_node("GlobalAveragePool", ["y"], ["z"], name="gap")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 2, 1, 1])],
        [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def test_an_open_input_size_is_fixed_by_input_shape_or_size(tmp_path, capsys):
    from fastdecode.cli import main
    path = tmp_path / "dynamic.onnx"
    _dynamic_model(path)
    with pytest.raises(fd.OnnxError, match="dynamic size"):
        fd.load(path)
    net = fd.load(path, input_shape=(None, 12, 10))
    assert net.input_shape == (3, 12, 10)
    assert main(["info", str(path)]) == 2
    assert "dynamic size" in capsys.readouterr().err
    assert main(["info", str(path), "--size", "12,10"]) == 0
    assert "gap" in capsys.readouterr().out
    assert main(["decode", str(path), "--layer", "conv", "--size", "12,10", "--save",
                 str(tmp_path / "d.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "d.npy"), fd.decode(net, "conv"))


def test_import_fastdecode_needs_no_optional_dependency(tmp_path):
    """``import fastdecode`` (and fastdecode.load) imports neither onnx, torch nor dask."""
    import subprocess
    import sys
    parent = os.path.dirname(os.path.dirname(os.path.abspath(fd.__file__)))
    code = ("import sys, fastdecode, fastdecode.loading\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('onnx', 'torch', 'dask', 'onnxruntime')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=parent), cwd=str(tmp_path), timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
