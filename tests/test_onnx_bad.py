"""load_onnx refuses what it cannot read with one clear exception naming the file, the node
and the problem: files that are not ONNX models, unsupported ops, dynamic sizes, tensors
beyond the memory budget, and external data that leaves the model's folder."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import fastdecode as fd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from onnx_helpers import model, save  # noqa: E402

RNG = np.random.default_rng(0)
W = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)


def conv_model(input_shape=(1, 3, 8, 8), extra=(), outputs="y"):
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"], name="relu")] + list(extra)
    return model(nodes, [("x", list(input_shape))], [(outputs, None)], {"w": W})


def test_good_model_loads(tmp_path):
    net = fd.load_onnx(save(conv_model(), tmp_path / "m.onnx"))
    assert [l.name for l in net.layers] == ["conv", "relu"]
    assert net.input_shape == (3, 8, 8)


def test_missing_onnx_package_names_the_extra(tmp_path, monkeypatch):
    path = save(conv_model(), tmp_path / "m.onnx")
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r'pip install "fastdecode\[onnx\]"'):
        fd.load_onnx(path)


@pytest.mark.parametrize("content, match", [
    (b"", "empty"),
    (b"this is a text file, not a model\n" * 10, "not an ONNX model"),
    (b"\x08\x07\x12\x04abcd" + b"\xff" * 64, "not an ONNX model"),
    (b"MATLAB 5.0 MAT-file" + bytes(200), "not an ONNX model"),
])
def test_not_an_onnx_file(tmp_path, content, match):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(fd.OnnxError, match=match) as info:
        fd.load_onnx(path)
    assert str(path) in str(info.value)


def test_truncated_and_corrupted(tmp_path):
    data = conv_model().SerializeToString()
    for n in range(1, len(data), max(1, len(data) // 40)):
        path = tmp_path / ("cut%d.onnx" % n)
        path.write_bytes(data[:n])
        with pytest.raises(fd.OnnxError) as info:
            fd.load_onnx(path)
        assert str(path) in str(info.value)
    N = helper.make_node
    nodes = [N("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
             N("Relu", ["c"], ["r"]), N("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             N("Mul", ["p", "g"], ["m"]), N("Add", ["m", "h"], ["a"]),
             N("Flatten", ["a"], ["f"]), N("Gemm", ["f", "fw", "fb"], ["y"], transB=1)]
    data = model(nodes, [("x", [1, 3, 8, 8])], [("y", None)], {
        "w": W, "g": np.ones((4, 1, 1), np.float32), "h": np.ones((4, 1, 1), np.float32),
        "fw": np.ones((5, 16), np.float32), "fb": np.ones(5, np.float32)}).SerializeToString()
    rng = np.random.default_rng(1)
    for k in range(300):   # corrupted bytes: names, attributes, shapes, types
        b = bytearray(data)
        for i in rng.integers(0, len(b), rng.integers(1, 4)):
            b[i] = rng.integers(0, 256)
        path = tmp_path / ("flip%d.onnx" % k)
        path.write_bytes(bytes(b))
        try:
            net = fd.load_onnx(path, memory_limit=2**24)
        except fd.OnnxError as exc:
            assert str(path) in str(exc)
        else:   # a flip in a weight's value still gives a network
            assert isinstance(net, fd.Network)


def test_file_system_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        fd.load_onnx(tmp_path / "absent.onnx")
    with pytest.raises(IsADirectoryError):
        fd.load_onnx(tmp_path)
    if os.path.exists("/dev/null"):
        with pytest.raises(fd.OnnxError, match="not a regular file"):
            fd.load_onnx("/dev/null")
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "fifo.onnx"
        os.mkfifo(fifo)
        with pytest.raises(fd.OnnxError, match="not a regular file"):
            fd.load_onnx(fifo)   # refused without blocking on the pipe


def test_unsupported_op_names_node_op_and_opset(tmp_path):
    m = conv_model(extra=[helper.make_node("Erf", ["y"], ["z"], name="the_erf")], outputs="z")
    with pytest.raises(fd.OnnxError, match=r"node 'the_erf' \(Erf, opset 13\).*not supported"):
        fd.load_onnx(save(m, tmp_path / "m.onnx"))
    nameless = conv_model(extra=[helper.make_node("Selu", ["y"], ["selu_out"])],
                          outputs="selu_out")
    with pytest.raises(fd.OnnxError, match=r"node 'selu_out' \(Selu, opset 13\)"):
        fd.load_onnx(save(nameless, tmp_path / "n.onnx"))


def test_unsupported_attribute(tmp_path):
    nodes = [helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[2, 2],
                              dilations=[2, 2])]
    m = model(nodes, [("x", [1, 3, 8, 8])], [("y", None)], opset=12)
    with pytest.raises(fd.OnnxError, match=r"node 'pool' \(MaxPool, opset 12\).*dilat"):
        fd.load_onnx(save(m, tmp_path / "m.onnx"))


def test_old_opset_and_foreign_domain(tmp_path):
    m = conv_model()
    m.opset_import[0].version = 8
    with pytest.raises(fd.OnnxError, match="opset 8"):
        fd.load_onnx(save(m, tmp_path / "old.onnx"))
    m = conv_model(extra=[helper.make_node("FusedThing", ["y"], ["z"], name="f",
                                           domain="com.example")], outputs="z")
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(fd.OnnxError, match=r"node 'f'.*domain 'com.example'"):
        fd.load_onnx(save(m, tmp_path / "dom.onnx"))


def test_dynamic_size_needs_input_shape(tmp_path):
    path = save(conv_model(input_shape=["N", 3, "H", "W"]), tmp_path / "dyn.onnx")
    with pytest.raises(fd.OnnxError, match=r"dynamic size.*\(3, '\?', '\?'\).*input_shape"):
        fd.load_onnx(path)
    net = fd.load_onnx(path, input_shape=(3, 10, 12))
    assert net.input_shape == (3, 10, 12)
    with pytest.raises(fd.OnnxError, match="does not fit"):
        fd.load_onnx(path, input_shape=(4, 10, 12))
    with pytest.raises(ValueError, match="input_shape"):
        fd.load_onnx(path, input_shape=(3, 10))


def test_tensor_beyond_the_budget_is_refused_before_allocation(tmp_path):
    # a weight that declares 400 GB and holds nothing: refused from its declaration
    huge = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[100000, 1000, 1000, 1])
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 1000, 8, 8])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, None)], [huge])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(fd.OnnxError, match=r"initializer 'w'.*beyond the memory limit"):
        fd.load_onnx(save(m, tmp_path / "huge.onnx"))
    # a real weight over a small budget
    path = save(conv_model(), tmp_path / "m.onnx")
    with pytest.raises(fd.OnnxError, match="memory limit"):
        fd.load_onnx(path, memory_limit=os.path.getsize(path) + 100)
    # a ConstantOfShape fill of 4 TB
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["w"], name="fill"),
             helper.make_node("Conv", ["x", "w"], ["y"], name="conv")]
    m = model(nodes, [("x", [1, 3, 8, 8])], [("y", None)],
              {"shape": np.array([10**6, 3, 1000, 1000], np.int64)})
    with pytest.raises(fd.OnnxError, match=r"node 'fill' \(ConstantOfShape.*memory limit"):
        fd.load_onnx(save(m, tmp_path / "fill.onnx"))
    # raw data of the wrong length
    m = conv_model()
    m.graph.initializer[0].raw_data = m.graph.initializer[0].raw_data[:-4]
    with pytest.raises(fd.OnnxError, match="holds 428 bytes"):
        fd.load_onnx(save(m, tmp_path / "short.onnx"))


def external_model(folder, location, data=W):
    """A conv model whose weights are external data at ``location`` (relative to
    ``folder``, where the model is saved)."""
    m = conv_model()
    t = m.graph.initializer[0]
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", str(data.nbytes))):
        e = t.external_data.add()
        e.key, e.value = k, v
    return save(m, folder / "model.onnx")


def test_external_data_in_the_folder_loads(tmp_path):
    (tmp_path / "weights.bin").write_bytes(W.tobytes())
    net = fd.load_onnx(external_model(tmp_path, "weights.bin"))
    np.testing.assert_array_equal(net["conv"].weights, W)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "w.bin").write_bytes(W.tobytes())
    net = fd.load_onnx(external_model(tmp_path, "sub/w.bin"))
    np.testing.assert_array_equal(net["conv"].weights, W)


def test_external_data_leaving_the_folder_is_refused(tmp_path):
    outside = tmp_path / "secret.bin"
    outside.write_bytes(W.tobytes())
    folder = tmp_path / "model"
    folder.mkdir()
    for location, match in (("../secret.bin", "leaves the model's folder"),
                            ("sub/../../secret.bin", "leaves the model's folder"),
                            (str(outside), "absolute path")):
        with pytest.raises(fd.OnnxError, match=match) as info:
            fd.load_onnx(external_model(folder, location))
        assert "initializer 'w'" in str(info.value)
    if hasattr(os, "symlink"):
        os.symlink(outside, folder / "link.bin")
        with pytest.raises(fd.OnnxError, match="symbolic link"):
            fd.load_onnx(external_model(folder, "link.bin"))
        os.symlink(tmp_path, folder / "up")
        with pytest.raises(fd.OnnxError, match="outside the model's folder"):
            fd.load_onnx(external_model(folder, "up/secret.bin"))


def test_external_data_missing_or_short(tmp_path):
    with pytest.raises(fd.OnnxError, match="not found"):
        fd.load_onnx(external_model(tmp_path, "absent.bin"))
    (tmp_path / "short.bin").write_bytes(W.tobytes()[:100])
    with pytest.raises(fd.OnnxError, match="too few"):
        fd.load_onnx(external_model(tmp_path, "short.bin"))
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe.bin")
        with pytest.raises(fd.OnnxError, match="not a regular file"):
            fd.load_onnx(external_model(tmp_path, "pipe.bin"))


def test_graph_problems(tmp_path):
    # a node reading a tensor nobody makes
    nodes = [helper.make_node("Relu", ["nowhere"], ["y"], name="r")]
    m = model(nodes, [("x", [1, 3, 8, 8])], [("y", None)])
    with pytest.raises(fd.OnnxError, match=r"node 'r'.*'nowhere'"):
        fd.load_onnx(save(m, tmp_path / "a.onnx"))
    # two image inputs
    nodes = [helper.make_node("Add", ["x", "x2"], ["y"], name="add")]
    m = model(nodes, [("x", [1, 3, 8, 8]), ("x2", [1, 3, 8, 8])], [("y", None)])
    with pytest.raises(fd.OnnxError, match="2 inputs"):
        fd.load_onnx(save(m, tmp_path / "b.onnx"))
    # weights that do not fit the input
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")]
    m = model(nodes, [("x", [1, 5, 8, 8])], [("y", None)], {"w": W})
    with pytest.raises(fd.OnnxError, match=r"node 'conv'.*do not fit an input of 5"):
        fd.load_onnx(save(m, tmp_path / "c.onnx"))
    # the product of two maps
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], name="conv"),
             helper.make_node("Mul", ["a", "a"], ["y"], name="square")]
    m = model(nodes, [("x", [1, 3, 8, 8])], [("y", None)], {"w": W})
    with pytest.raises(fd.OnnxError, match=r"node 'square' \(Mul.*product of two computed"):
        fd.load_onnx(save(m, tmp_path / "d.onnx"))
    # NaN weights
    bad = W.copy()
    bad[0, 0, 0, 0] = np.nan
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")]
    m = model(nodes, [("x", [1, 3, 8, 8])], [("y", None)], {"w": bad})
    with pytest.raises(fd.OnnxError, match=r"node 'conv'.*NaN"):
        fd.load_onnx(save(m, tmp_path / "e.onnx"))
    # an output that is a constant
    nodes = [helper.make_node("Constant", [], ["y"], name="k",
                              value=numpy_helper.from_array(np.ones(3, np.float32)))]
    m = model(nodes, [("x", [1, 3, 8, 8])], [("y", None)])
    with pytest.raises(fd.OnnxError, match="graph output 'y' is a constant"):
        fd.load_onnx(save(m, tmp_path / "f.onnx"))


def test_looks_like_onnx(tmp_path):
    from fastdecode._onnx_import import looks_like_onnx
    assert looks_like_onnx(conv_model().SerializeToString()[:8])
    for head in (b"", b"MATLAB 5.0", b"\x89HDF\r\n", b"\x08\x07", b"hello world"):
        assert not looks_like_onnx(head)
