"""The paper's Table 1 values and the text that prints results beside them."""

import sys
from pathlib import Path

import numpy as np
import pytest

import fastdecode as fd
from fastdecode import evaluation as ev
from fastdecode import paper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_evaluation import images, linear_net, small_lenet  # noqa: E402


def test_format_table1_sets_the_results_beside_the_paper():
    net = small_lenet()
    x = images(5)
    table = fd.table1(net, x, methods=("nearest", "bilinear"), batch_size=2, progress=False)
    text = paper.format_table1(net, table)
    assert "L3 0.002" in text and "L5 0.012" in text and "L7 0.078" in text
    assert "%.4f" % table[("layer5", "bilinear")].mean in text
    lines = text.split("\n")
    assert lines[0] == "Table 1: Eq. 3 reconstruction error, mean +- std over 5 images"
    assert lines[1].split() == ["layer", "paper", "nearest", "bilinear"]
    assert [line.split()[0] for line in lines[2:]] == ["layer3", "layer5", "layer7"]
    assert paper.format_table1(net, table, title="mine").split("\n")[0] == "mine"


def test_format_table1_without_paper_values_shows_a_dash():
    net = linear_net()
    table = fd.table1(net, images(3, size=10), methods="nearest", progress=False)
    row = paper.format_table1(net, table).split("\n")[2].split()
    assert row[:2] == ["layer3", "-"]


def test_format_table1_refuses_empty_results():
    with pytest.raises(ValueError, match="results is empty"):
        paper.format_table1(small_lenet(), {})


def test_paper_reference_only_for_lenet_shapes():
    assert paper.paper_reference(small_lenet(), "layer3") == 0.002
    assert paper.paper_reference(small_lenet(), 6) == 0.078
    assert paper.paper_reference(small_lenet(), "layer1") is None
    assert paper.paper_reference(linear_net(), "layer3") is None
    assert [v for _, v in paper.PAPER_TABLE1] == [0.002, 0.012, 0.078]


def test_the_paper_names_stay_importable_from_evaluation():
    assert ev.format_table1 is paper.format_table1
    assert ev.paper_reference is paper.paper_reference
    assert ev.PAPER_TABLE1 is paper.PAPER_TABLE1
    assert np.isclose(ev.paper_reference(small_lenet(), "layer5"), 0.012)
