"""Helpers of the ONNX tests: small graphs written with ``onnx.helper``, and onnxruntime as
the oracle (with any intermediate tensors as extra outputs).

Import this module only after ``pytest.importorskip("onnx")`` and ``("onnxruntime")``.
"""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def model(nodes, inputs, outputs, initializers=(), opset=13, ir_version=8):
    """A ModelProto of ``nodes``; ``inputs``/``outputs``: (name, shape) with None for a
    dynamic dimension; ``initializers``: {name: array}."""
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
        [numpy_helper.from_array(np.asarray(v), name=k) for k, v in dict(initializers).items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir_version
    return m


def save(m, path):
    onnx.save(m, str(path))
    return str(path)


def run(m, x, outputs=None):
    """onnxruntime's outputs of model ``m`` (a ModelProto or a path) for input ``x``, with
    the tensors named in ``outputs`` as the graph's outputs instead (default: its own)."""
    if not isinstance(m, onnx.ModelProto):
        m = onnx.load(str(m))
    if outputs is not None:
        m = onnx.ModelProto.FromString(m.SerializeToString())
        del m.graph.output[:]
        for name in outputs:
            m.graph.output.append(helper.make_empty_tensor_value_info(name))
        need = set(outputs)   # only the nodes these outputs need
        keep = []
        for node in reversed(m.graph.node):
            if need.intersection(node.output):
                keep.append(node)
                need.update(node.input)
        del m.graph.node[:]
        m.graph.node.extend(reversed(keep))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(m.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(x)})


def close(y, ref, rtol=1e-5):
    """Whether y equals ref to float32 rounding, relative to ref's largest value."""
    ref = np.asarray(ref).reshape(np.shape(y))
    scale = max(np.abs(ref).max(), 1e-30)
    return np.abs(y - ref).max() <= rtol * scale


def linearised(m):
    """A copy of ModelProto ``m`` with every Relu and Clip an Identity and every MaxPool an
    average pool counting its padding: the linear twin that decoding with the adjoint
    inverts."""
    m = onnx.ModelProto.FromString(m.SerializeToString())
    for node in m.graph.node:
        if node.op_type in ("Relu", "Clip"):
            node.op_type = "Identity"
            del node.input[1:]
            del node.attribute[:]
        elif node.op_type == "MaxPool":
            node.op_type = "AveragePool"
            node.attribute.append(helper.make_attribute("count_include_pad", 1))
    return m


def interior(filter_size, out_size, stride, pad, image_size):
    """(rows, cols) of the output units whose decoded filter lies inside the image."""
    (h, w), (S, P) = filter_size, (stride, pad)
    units = [(i, j) for i in range(out_size[0]) for j in range(out_size[1])
             if i * S[0] - P[0] >= 0 and j * S[1] - P[2] >= 0
             and i * S[0] - P[0] + h <= image_size[0] and j * S[1] - P[2] + w <= image_size[1]]
    return tuple(np.array(v, dtype=np.intp) for v in zip(*units)) if units else ((), ())
