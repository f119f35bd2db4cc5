"""Messages about MatConvNet files: text from the file escaped (control characters, terminal
escape codes), lengths bounded, and every malformed layer a MatConvNetError naming the file."""

import sys
from pathlib import Path

import numpy as np
import pytest

import fastdecode as fd
from fastdecode import MatConvNetError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matlab_layouts as ml  # noqa: E402

ANSI = "\x1b[2J\x1b[31mred"
F = np.ones((3, 3, 1, 2), np.float32)


def _v5(tmp_path, variables, name="net.mat"):
    path = tmp_path / name
    ml.write_v5(path, variables)
    return path


def _refused(path, *needles):
    with pytest.raises(MatConvNetError) as info:
        fd.load_matconvnet(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert "\x1b" not in message and all(c.isprintable() for c in message), repr(message)
    assert len(message) < 1500, len(message)
    for needle in needles:
        assert needle in message, (needle, message)
    return message


def _dagnn(tmp_path, conv_type="dagnn.Conv", inputs=("input",), name="conv1"):
    block = {"size": np.array([[3.0, 3, 1, 2]]), "hasBias": False,
             "pad": np.array([[0.0, 0, 0, 0]]), "stride": np.array([[1.0, 1]]),
             "dilate": np.array([[1.0, 1]]), "opts": ml.cell()}
    variables = ml.dagnn([(name, conv_type, list(inputs), ["x1"], ["f"], block)], [("f", F)])
    return _v5(tmp_path, variables)


def test_simplenn_layer_type_is_escaped(tmp_path):
    layer = {"name": "conv1", "type": ANSI}
    path = _v5(tmp_path, {"net": ml.simplenn([layer])})
    _refused(path, "\\x1b[2J", "not supported")


def test_dagnn_layer_type_is_escaped(tmp_path):
    _refused(_dagnn(tmp_path, conv_type="dagnn." + ANSI), "\\x1b[31m", "not supported")


def test_names_and_types_are_bounded(tmp_path):
    layer = {"name": "n" * 100_000, "type": "t" * 100_000}
    message = _refused(_v5(tmp_path, {"net": ml.simplenn([layer])}), "...")
    assert "n" * 200 not in message


def test_long_value_lists_are_bounded(tmp_path):
    layer = ml.conv("conv1", F, np.zeros((1, 2), np.float32))
    layer["pad"] = np.full((1, 262_144), 0.5)
    _refused(_v5(tmp_path, {"net": ml.simplenn([layer])}), "pad must be integers",
             "262144 values")


@pytest.mark.parametrize("inputs", [
    np.array([[1.0, 2.0]]),                                 # a numeric array, not a cell
    ml.cell(np.array([[1.0]])),                             # a cell holding a number
    ml.cell("input", np.array([[7.0]])),                    # a name and a number
])
def test_dagnn_inputs_that_are_not_names(tmp_path, inputs):
    block = {"size": np.array([[3.0, 3, 1, 2]]), "hasBias": False}
    variables = ml.dagnn([("conv1", "dagnn.Conv", ["input"], ["x1"], ["f"], block)], [("f", F)])
    variables["layers"].records[0]["inputs"] = inputs
    path = _v5(tmp_path, variables)
    _refused(path, "'conv1'", "cell array of strings")


def test_dagnn_outputs_and_params_that_are_not_names(tmp_path):
    block = {"size": np.array([[3.0, 3, 1, 2]]), "hasBias": False}
    for field in ("outputs", "params"):
        variables = ml.dagnn([("conv1", "dagnn.Conv", ["input"], ["x1"], ["f"], block)],
                             [("f", F)])
        variables["layers"].records[0][field] = ml.cell(np.array([[3.0]]))
        _refused(_v5(tmp_path, variables, field + ".mat"), "'conv1'", "item 1 is a 1x1")


def test_many_dagnn_inputs_are_listed_briefly(tmp_path):
    many = ["v%d" % i for i in range(5000)]
    message = _refused(_dagnn(tmp_path, conv_type="dagnn.ReLU", inputs=many))
    assert "v4999" not in message or "..." in message


def test_a_good_dagnn_still_loads(tmp_path):
    net = fd.load_matconvnet(_dagnn(tmp_path))
    assert net.conv_layers == ["conv1"]
