"""load_onnx op by op, on small graphs written with onnx.helper, against onnxruntime: the
attributes each op takes, the subgraphs that become one layer, and the forms refused."""

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import helper, numpy_helper  # noqa: E402

import fastdecode as fd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from onnx_helpers import close, model, run, save  # noqa: E402

RNG = np.random.default_rng(0)


def const(shape, positive=False):
    a = RNG.standard_normal(shape).astype(np.float32)
    return np.abs(a) + 0.5 if positive else a


def check(tmp_path, nodes, shape, inits=(), opset=13, x=None, types=None, nhwc=False):
    """Import the graph (input "x" of ``shape``, output "y"), compare with onnxruntime on
    two images, and return the network."""
    m = model(nodes, [("x", list(shape))], [("y", None)], inits, opset=opset)
    net = fd.load_onnx(save(m, tmp_path / "m.onnx"))
    if x is None:
        full = (2,) + tuple(net.input_shape)
        x = RNG.standard_normal(full).astype(np.float32) * 2
    feed = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if nhwc else x
    ref = np.concatenate([run(m, feed[i:i + 1])[0] for i in range(len(x))])
    assert close(net.forward(x), ref), [l.describe() for l in net.layers]
    if types is not None:
        assert [l.type for l in net.layers] == types
    return net


N = helper.make_node


@pytest.mark.parametrize("attrs, size", [
    (dict(pads=[1, 0, 2, 3], strides=[2, 1]), (9, 10)),
    (dict(auto_pad="SAME_UPPER", strides=[2, 2]), (9, 10)),
    (dict(auto_pad="SAME_LOWER", strides=[2, 2]), (9, 10)),
    (dict(pads=[2, 1, 2, 3], strides=[1, 2], dilations=[2, 1]), (9, 10)),
    (dict(auto_pad="VALID", strides=[1, 2]), (9, 10)),
    (dict(group=2, pads=[1, 1, 1, 1]), (8, 8)),
])
def test_conv(tmp_path, attrs, size):
    groups = attrs.get("group", 1)
    w, b = const((6, 4 // groups, 3, 3)), const(6)
    net = check(tmp_path, [N("Conv", ["x", "w", "b"], ["y"], **attrs)], (1, 4) + size,
                {"w": w, "b": b}, types=["conv"])
    layer = net.layers[0]
    assert layer.groups == groups
    if attrs.get("pads") == [1, 0, 2, 3]:
        assert layer.pad == (1, 2, 0, 3) and layer.stride == (2, 1)


@pytest.mark.parametrize("op, attrs", [
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1])),
    ("MaxPool", dict(kernel_shape=[3, 2], strides=[2, 1], auto_pad="SAME_UPPER")),
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                         count_include_pad=1)),
    ("AveragePool", dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)),
    ("GlobalAveragePool", {}),
    ("GlobalMaxPool", {}),
])
def test_pools(tmp_path, op, attrs):
    check(tmp_path, [N(op, ["x"], ["y"], **attrs)], (1, 3, 9, 8), opset=12)


def test_reduce_mean_as_global_pool(tmp_path):
    net = check(tmp_path, [N("ReduceMean", ["x"], ["m"], axes=[2, 3], keepdims=0),
                           N("Gemm", ["m", "w"], ["y"], transB=1)],
                (1, 3, 5, 6), {"w": const((4, 3))}, types=["globalpool", "linear"])
    assert net["y"].weights.shape == (4, 3)


@pytest.mark.parametrize("source", ["relu", "conv"])
@pytest.mark.parametrize("consumer", ["Conv", "MaxPool", "AveragePool", "ceil"])
def test_pad_folded_where_exact(tmp_path, source, consumer):
    first = N("Relu", ["x"], ["a"]) if source == "relu" else N("Conv", ["x", "w0"], ["a"])
    pads = np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)
    nodes = [first, N("Pad", ["a", "pads"], ["p"], mode="constant")]
    inits = {"pads": pads, "w0": const((3, 3, 1, 1))}
    if consumer == "Conv":
        nodes.append(N("Conv", ["p", "w"], ["y"], pads=[1, 0, 0, 1]))
        inits["w"] = const((4, 3, 3, 3))
    elif consumer == "ceil":   # a window may start in the explicit padding: not folded
        nodes.append(N("MaxPool", ["p"], ["y"], kernel_shape=[2, 2], strides=[2, 2],
                       ceil_mode=1))
    else:
        nodes.append(N(consumer, ["p"], ["y"], kernel_shape=[3, 3], strides=[2, 2]))
    net = check(tmp_path, nodes, (1, 3, 8, 9), inits)
    types = [l.type for l in net.layers]
    folded = consumer == "Conv" or (consumer == "MaxPool" and source == "relu") or \
        consumer == "AveragePool"
    assert len(types) == (2 if folded else 3), types   # else an identity conv pads
    if consumer == "Conv":
        assert net.layers[-1].pad == (2, 2, 2, 2)


def test_pad_refused(tmp_path):
    nodes = [N("Pad", ["x", "pads", "v"], ["y"], mode="constant")]
    m = model(nodes, [("x", [1, 3, 8, 8])], [("y", None)],
              {"pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),
               "v": np.array(1.0, np.float32)})
    with pytest.raises(fd.OnnxError, match="zeros only"):
        fd.load_onnx(save(m, tmp_path / "m.onnx"))
    nodes = [N("Pad", ["x", "pads"], ["y"], mode="reflect")]
    m = model(nodes, [("x", [1, 3, 8, 8])], [("y", None)],
              {"pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)})
    with pytest.raises(fd.OnnxError, match="reflect"):
        fd.load_onnx(save(m, tmp_path / "m.onnx"))


@pytest.mark.parametrize("opset", [9, 13])
def test_activations(tmp_path, opset):
    clip = (N("Clip", ["b"], ["c"], min=-1.0, max=2.5) if opset < 11
            else N("Clip", ["b", "lo", "hi"], ["c"]))
    relu6 = (N("Clip", ["e"], ["f"], min=0.0, max=6.0) if opset < 11
             else N("Clip", ["e", "zero", "six"], ["f"]))
    nodes = [N("LeakyRelu", ["x"], ["a"], alpha=0.2), N("Tanh", ["a"], ["b"]), clip,
             N("HardSigmoid", ["c"], ["d"]),
             N("HardSigmoid", ["d"], ["e"], alpha=1 / 6, beta=0.5), relu6,
             N("PRelu", ["f", "slope"], ["g"]), N("Sigmoid", ["g"], ["h"]),
             N("Relu", ["h"], ["i"])]
    # opset 9's softmax flattens (C, H, W): over the channels only for a 1x1 map
    nodes += ([N("GlobalAveragePool", ["i"], ["j"]), N("Softmax", ["j"], ["y"], axis=1)]
              if opset < 13 else [N("Softmax", ["i"], ["y"], axis=1)])
    inits = {"lo": np.array(-1, np.float32), "hi": np.array(2.5, np.float32),
             "zero": np.array(0, np.float32), "six": np.array(6, np.float32),
             "slope": const((3, 1, 1))}
    if opset < 11:
        inits = {"slope": inits["slope"]}
    net = check(tmp_path, nodes, (1, 3, 4, 5), inits, opset=opset)
    assert [l.name for l in net.layers][3:5] == ["d:affine", "d"]
    assert [l.type for l in net.layers] == [
        "leakyrelu", "tanh", "clip", "bnorm", "clip", "hardsigmoid", "relu6", "prelu",
        "sigmoid", "relu"] + (["globalpool"] if opset < 13 else []) + ["softmax"]
    nodes = [N("Softmax", ["x"], ["y"], axis=1, name="sm")]
    m = model(nodes, [("x", [1, 3, 4, 5])], [("y", None)], opset=opset)
    if opset < 13:
        with pytest.raises(fd.OnnxError, match=r"node 'sm' \(Softmax, opset 9\)"):
            fd.load_onnx(save(m, tmp_path / "sm.onnx"))


def test_hard_swish_and_silu_subgraphs(tmp_path):
    nodes = [N("Conv", ["x", "w"], ["a"]),
             N("Add", ["a", "three"], ["b"]), N("Clip", ["b", "zero", "six"], ["c"]),
             N("Mul", ["a", "c"], ["d"]), N("Div", ["d", "six"], ["e"]),       # hardswish
             N("Add", ["e", "three"], ["f"]), N("Relu6_", ["f"], ["g"]) if False else
             N("Clip", ["f", "zero", "six"], ["g"]),
             N("Div", ["g", "six"], ["h"]), N("Mul", ["e", "h"], ["i"]),       # hardswish
             N("HardSigmoid", ["i"], ["j"], alpha=1 / 6), N("Mul", ["j", "i"], ["k"]),
             N("Sigmoid", ["k"], ["l"]), N("Mul", ["k", "l"], ["y"])]          # silu
    inits = {"w": const((4, 3, 1, 1)), "three": np.array(3, np.float32),
             "zero": np.array(0, np.float32), "six": np.array(6, np.float32)}
    net = check(tmp_path, nodes, (1, 3, 5, 5), inits)
    assert [l.type for l in net.layers] == ["conv", "hardswish", "hardswish", "hardswish",
                                            "silu"]


def test_batchnorm_and_affine_constants(tmp_path):
    C = 5
    nodes = [N("BatchNormalization", ["x", "s", "b", "m", "v"], ["a"], epsilon=1e-3),
             N("Mul", ["a", "g"], ["c"]), N("Add", ["c", "h"], ["d"]),   # one bnorm
             N("Sub", ["d", "k"], ["e"]), N("Div", ["e", "q"], ["f"]),
             N("Mul", ["two", "f"], ["y"])]
    inits = {"s": const(C), "b": const(C), "m": const(C), "v": const(C, positive=True),
             "g": const((1, C, 1, 1)), "h": const((C, 1, 1)), "k": const((1, C, 1, 1)),
             "q": const((C, 1, 1), positive=True), "two": np.array(2.0, np.float32)}
    net = check(tmp_path, nodes, (1, C, 4, 4), inits)
    assert [l.type for l in net.layers] == ["bnorm"] * 5
    # a constant that is not per channel is refused
    nodes = [N("Add", ["x", "spatial"], ["y"], name="posbias")]
    m = model(nodes, [("x", [1, C, 4, 4])], [("y", None)], {"spatial": const((1, C, 4, 4))})
    with pytest.raises(fd.OnnxError, match=r"node 'posbias'.*one per channel"):
        fd.load_onnx(save(m, tmp_path / "m.onnx"))


@pytest.mark.parametrize("head", ["gemm", "gemm_t", "matmul"])
@pytest.mark.parametrize("flatten", ["Flatten", "Reshape"])
def test_linear_heads(tmp_path, head, flatten):
    D = 3 * 4 * 5
    first = (N("Flatten", ["x"], ["f"]) if flatten == "Flatten"
             else N("Reshape", ["x", "shape"], ["f"]))
    inits = {"shape": np.array([-1, D], np.int64), "b": const(7)}
    if head == "gemm":
        nodes = [first, N("Gemm", ["f", "w", "b"], ["y"], transB=1, alpha=0.5, beta=2.0)]
        inits["w"] = const((7, D))
    elif head == "gemm_t":
        nodes = [first, N("Gemm", ["f", "w", "b"], ["y"])]
        inits["w"] = const((D, 7))
    else:
        nodes = [first, N("MatMul", ["f", "w"], ["z"]), N("Add", ["z", "b"], ["y"])]
        inits["w"] = const((D, 7))
    net = check(tmp_path, nodes, (1, 3, 4, 5), inits, types=["linear"])
    assert net.layers[0].bias is not None


def test_merges_gate_and_names(tmp_path):
    C = 4
    nodes = [N("Conv", ["x", "w1"], ["a"], name="conv"),
             N("Conv", ["x", "w2"], ["b"], name="conv2"),
             N("Sum", ["a", "b", "a"], ["s"]),                        # no name: its output's
             N("GlobalAveragePool", ["s"], ["p"], name="squeeze"),
             N("Sigmoid", ["p"], ["g"], name="excite"),
             N("Mul", ["s", "g"], ["m"], name="gate"),
             N("Concat", ["m", "a"], ["c"], axis=1, name="cat"),
             N("Identity", ["c"], ["i"]),
             N("Dropout", ["i"], ["d"], name="drop"),
             N("LRN", ["d"], ["y"], size=3, alpha=1e-2, beta=0.75, bias=2.0, name="lrn")]
    inits = {"w1": const((C, 3, 3, 3)), "w2": const((C, 3, 3, 3))}
    net = check(tmp_path, nodes, (1, 3, 7, 7), inits)
    assert [l.name for l in net.layers] == ["conv", "conv2", "s", "squeeze", "excite",
                                            "gate", "cat", "drop", "lrn"]
    assert net["gate"].type == "gate" and net.inputs("gate") == ("s", "excite")
    assert net.inputs("s") == ("conv", "conv2", "conv")
    assert net.meta["outputs"] == {"y": "lrn"} and net.aliases == {"y": "lrn"}


def test_duplicate_names_are_made_unique(tmp_path):
    nodes = [N("Relu", ["x"], ["a"], name="r"), N("Relu", ["a"], ["b"], name="r"),
             N("Relu", ["b"], ["c"], name="input"), N("Relu", ["c"], ["r_1"])]
    m = model(nodes, [("x", [1, 3, 4, 4])], [("r_1", None)])
    net = fd.load_onnx(save(m, tmp_path / "m.onnx"))
    assert [l.name for l in net.layers] == ["r", "r_1", "input_1", "r_1_1"]
    assert net.meta["outputs"] == {"r_1": "r_1_1"} and net.aliases == {}


def test_channel_shuffle(tmp_path):
    g, m = 3, 2
    nodes = [N("Conv", ["x", "w"], ["a"]),
             N("Reshape", ["a", "s5"], ["b"]), N("Transpose", ["b"], ["c"], perm=[0, 2, 1, 3, 4]),
             N("Reshape", ["c", "s4"], ["y"], name="shuffle")]
    inits = {"w": const((g * m, 2, 1, 1)), "s5": np.array([1, g, m, 4, 5], np.int64),
             "s4": np.array([1, -1, 4, 5], np.int64)}
    net = check(tmp_path, nodes, (1, 2, 4, 5), inits, types=["conv", "conv"])
    assert net["shuffle"].weights.sum() == g * m


def test_nhwc_input_transposed(tmp_path):
    nodes = [N("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
             N("Conv", ["t", "w"], ["y"], pads=[1, 1, 1, 1])]
    x = RNG.standard_normal((2, 3, 6, 7)).astype(np.float32)
    net = check(tmp_path, nodes, ("N", 6, 7, 3), {"w": const((4, 3, 3, 3))}, x=x, nhwc=True)
    assert net.meta["layout"] == "NHWC" and net.input_shape == (3, 6, 7)


@pytest.mark.parametrize("mode, coord, nearest", [
    ("nearest", "asymmetric", "floor"),
    ("nearest", "half_pixel", "round_prefer_floor"),
    ("nearest", "pytorch_half_pixel", "round_prefer_ceil"),
    ("linear", "half_pixel", "round_prefer_floor"),
    ("linear", "pytorch_half_pixel", "round_prefer_floor"),
])
@pytest.mark.parametrize("how", ["scales", "sizes"])
def test_resize(tmp_path, mode, coord, nearest, how):
    ins = ["x", "", "scales"] if how == "scales" else ["x", "", "", "sizes"]
    nodes = [N("Resize", ins, ["y"], mode=mode, coordinate_transformation_mode=coord,
               nearest_mode=nearest)]
    inits = {"scales": np.array([1, 1, 2, 3], np.float32),
             "sizes": np.array([1, 2, 8, 15], np.int64)}
    net = check(tmp_path, nodes, (1, 2, 4, 5), inits, types=["upsample"])
    assert net.layers[0].factor == (2, 3)


def test_upsample_opset9_and_resize_refused(tmp_path):
    nodes = [N("Upsample", ["x", "scales"], ["y"], mode="nearest")]
    check(tmp_path, nodes, (1, 2, 4, 5), {"scales": np.array([1, 1, 2, 2], np.float32)},
          opset=9, types=["upsample"])
    for mode, coord in (("linear", "align_corners"), ("linear", "asymmetric"),
                        ("cubic", "half_pixel")):
        nodes = [N("Resize", ["x", "", "scales"], ["y"], mode=mode, name="rs",
                   coordinate_transformation_mode=coord)]
        m = model(nodes, [("x", [1, 2, 4, 5])], [("y", None)],
                  {"scales": np.array([1, 1, 2, 2], np.float32)})
        with pytest.raises(fd.OnnxError, match=r"node 'rs' \(Resize, opset 13\)"):
            fd.load_onnx(save(m, tmp_path / "m.onnx"))


def test_constant_subgraphs_fold(tmp_path):
    # a flatten written as Shape/Gather/Unsqueeze/Concat/Reshape, a bias from a Constant
    # node, weights from ConstantOfShape and Cast/Expand
    value = numpy_helper.from_array(np.array([0.25], np.float32))
    nodes = [N("Conv", ["x", "w"], ["a"]),
             N("Shape", ["a"], ["shp"]),
             N("Gather", ["shp", "zero"], ["n"], axis=0),
             N("Unsqueeze", ["n", "axes0"], ["n1"]),
             N("Concat", ["n1", "minus1"], ["target"], axis=0),
             N("Reshape", ["a", "target"], ["f"]),
             N("ConstantOfShape", ["wshape"], ["fw"], value=value),
             N("Constant", [], ["bias"], value=numpy_helper.from_array(const(6))),
             N("Gemm", ["f", "fw", "bias"], ["y"], transB=1)]
    inits = {"w": const((2, 3, 3, 3)), "zero": np.array(0, np.int64),
             "axes0": np.array([0], np.int64), "minus1": np.array([-1], np.int64),
             "wshape": np.array([6, 2 * 4 * 5], np.int64)}
    net = check(tmp_path, nodes, (1, 3, 6, 7), inits, types=["conv", "linear"])
    assert np.all(net.layers[1].weights == 0.25)


def test_gelu_opset20(tmp_path):
    nodes = [N("Gelu", ["x"], ["y"])]
    check(tmp_path, nodes, (1, 3, 4, 5), opset=20, types=["gelu"])
    nodes = [N("Gelu", ["x"], ["y"], approximate="tanh", name="g")]
    m = model(nodes, [("x", [1, 3, 4, 5])], [("y", None)], opset=20)
    with pytest.raises(fd.OnnxError, match=r"node 'g' \(Gelu, opset 20\).*tanh"):
        fd.load_onnx(save(m, tmp_path / "m.onnx"))
