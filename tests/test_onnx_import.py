"""load_onnx on real models against onnxruntime: open-nsfw (a tf2onnx ResNet-50 with NHWC
input), the nine reference topologies the onnx package ships, and the decoding oracle of a
linearised graph."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import fastdecode as fd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from onnx_helpers import close, interior, linearised, run  # noqa: E402

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
TOPOLOGIES = ["bvlc_alexnet", "zfnet512", "vgg19", "squeezenet", "inception_v1",
              "inception_v2", "resnet50", "shufflenet", "densenet121"]


@pytest.fixture(scope="module")
def nsfw_path(shared_data):
    path = shared_data / "onnx" / "open-nsfw-resnet50.onnx"
    if not path.is_file():
        pytest.skip("open-nsfw-resnet50.onnx not in the shared data")
    return str(path)


@pytest.fixture(scope="module")
def nsfw(nsfw_path):
    return fd.load_onnx(nsfw_path)


def nhwc(x):
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def test_open_nsfw_equals_onnxruntime(nsfw, nsfw_path):
    assert nsfw.meta["layout"] == "NHWC" and nsfw.meta["input"] == "input:0"
    assert nsfw.meta["producer"].startswith("tf2onnx") and nsfw.meta["opset"] == 9
    assert nsfw.input_shape == (3, 224, 224)
    assert nsfw.meta["outputs"] == {"outputs": "predictions"}
    assert nsfw.aliases == {"outputs": "predictions"}
    assert sum(l.type == "add" for l in nsfw.layers) == 16   # the residual additions
    pool = nsfw["max_pooling2d/MaxPool"]
    assert pool.pad == (0, 1, 0, 1)                          # ONNX pads (0, 0, 1, 1)
    assert nsfw["fc_nsfw/BiasAdd"].type == "linear"          # MatMul + Add: one layer
    rng = np.random.default_rng(0)
    x = rng.uniform(-120, 130, (2, 3, 224, 224)).astype(np.float32)
    ref = run(nsfw_path, nhwc(x), outputs=["fc_nsfw/BiasAdd:0", "outputs"])
    assert close(nsfw.forward(x, upto="fc_nsfw/BiasAdd"), ref[0])
    assert close(nsfw.forward(x), ref[1])


def test_open_nsfw_truncated(nsfw_path, tmp_path):
    data = open(nsfw_path, "rb").read()
    for n in (len(data) // 2, len(data) - 1, 100):
        path = tmp_path / "cut.onnx"
        path.write_bytes(data[:n])
        with pytest.raises(fd.OnnxError, match="cut.onnx"):
            fd.load_onnx(path)


def test_open_nsfw_first_layer_decodes_to_its_filters(nsfw):
    first = nsfw.conv_layers[0]
    D = fd.decode(nsfw, first)
    assert D.shape == (64, 3, 7, 7)
    np.testing.assert_array_equal(D, nsfw[first].weights)
    assert np.all(np.abs(D).reshape(64, -1).max(axis=1) > 0)


def test_decoding_oracle_on_the_linearised_graph(nsfw, nsfw_path):
    # the first residual addition of open-nsfw: conv 7x7/2, max pool 3x3/2 and a bottleneck
    layer, tensor = "Add", "Add:0"
    m = linearised(onnx.load(nsfw_path))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 3, 64, 64)).astype(np.float32)
    net = nsfw
    dec = fd.decode_with_bias(net, layer, unpool="adjoint")
    S, P = net.stride(layer), net.padding(layer)
    y = fd.correlate(x.astype(np.float64), dec.filters.astype(np.float64), stride=S, pad=P)
    y = y + dec.bias[None, :, None, None]
    # onnxruntime runs the linear twin on a 224x224 image holding x in its top-left corner
    big = np.zeros((1, 3, 224, 224), np.float32)
    big[:, :, :64, :64] = x
    ref = run(m, nhwc(big), outputs=[tensor])[0][:, :, :y.shape[2], :y.shape[3]]
    rows, cols = interior(dec.filters.shape[2:], y.shape[2:], S, P, (64, 64))
    assert len(rows) >= 16
    assert close(y[0][:, rows, cols], ref[0][:, rows, cols], rtol=1e-4)
    # ReLU and max pooling make the real network differ from its twin
    real = nsfw.forward(big, upto=layer)[0][:, rows, cols]
    assert not close(real, ref[0][:, rows, cols], rtol=1e-2)


def randomised(m, seed=0):
    """A copy of ModelProto ``m`` whose ConstantOfShape-filled weights are random
    initializers: the reference topologies ship constant weights, under which a wrong
    channel order or group would go unseen."""
    rng = np.random.default_rng(seed)
    m = onnx.ModelProto.FromString(m.SerializeToString())
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    keep = []
    for node in m.graph.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in inits:
            shape = tuple(int(s) for s in inits[node.input[0]])
            if len(shape) == 1:   # biases, scales, means, variances: positive, near 1
                value = rng.uniform(0.5, 1.5, shape)
            else:
                value = rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))
            m.graph.initializer.append(onnx.numpy_helper.from_array(
                value.astype(np.float32), node.output[0]))
        else:
            keep.append(node)
    del m.graph.node[:]
    m.graph.node.extend(keep)
    return m


@pytest.mark.parametrize("name", TOPOLOGIES)
def test_reference_topologies_equal_onnxruntime(name, tmp_path):
    path = os.path.join(LIGHT, "light_%s.onnx" % name)
    if not os.path.isfile(path):
        pytest.skip("%s not shipped with this onnx" % path)
    shipped = fd.load_onnx(path)
    assert shipped.input_shape == (3, 224, 224) and shipped.meta["layout"] == "NCHW"
    m = onnx.load(path)
    last = m.graph.node[-1]
    output = m.graph.output[0].name
    if name in ("bvlc_alexnet", "zfnet512", "vgg19", "resnet50", "inception_v2"):
        # as shipped: constant weights make huge, equal logits, whose softmax only rounding
        # decides; the logits are compared (VGG-19's first block only, to keep it quick)
        net, variant = shipped, m
        tensors = ["r4"] if name == "vgg19" else [last.input[0]]
    else:
        variant = randomised(m)
        file = tmp_path / "random.onnx"
        onnx.save(variant, str(file))
        net = fd.load_onnx(file)
        assert [l.type for l in net.layers] == [l.type for l in shipped.layers]
        tensors = [output] + ([last.input[0]] if last.op_type == "Softmax" else [])
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    refs = run(variant, x, outputs=tensors)
    by_tensor = {n.output[0]: n.name or n.output[0] for n in m.graph.node}
    for tensor, ref in zip(tensors, refs):
        layer = net.meta["outputs"][tensor] if tensor == output else by_tensor[tensor]
        assert close(net.forward(x, upto=layer), ref, rtol=1e-4), (name, tensor)


def test_reference_topologies_fold_what_they_compute():
    nets = {n: fd.load_onnx(os.path.join(LIGHT, "light_%s.onnx" % n))
            for n in ("densenet121", "shufflenet", "bvlc_alexnet")}
    # caffe2's Scale written as Mul + Add by per-channel constants: one bnorm layer each
    dense = nets["densenet121"]
    assert sum(l.type == "bnorm" for l in dense.layers) == 2 * 121
    assert not any(l.type == "concat" and len(l.inputs) < 2 for l in dense.layers)
    # the channel shuffles (Reshape, Transpose, Reshape) become permutation convs
    shuffles = [l for l in nets["shufflenet"].layers
                if l.type == "conv" and l.weights.shape[2:] == (1, 1)
                and np.all(l.weights.sum(axis=1) == 1) and np.all(l.weights.sum(axis=0) == 1)]
    assert len(shuffles) == 16
    alex = nets["bvlc_alexnet"]
    assert [l.type for l in alex.layers].count("linear") == 3
    assert alex["n4"].groups == 2 and alex["n2"].type == "lrn"
