"""The runners of the commands and the paper's evaluation piece by piece: loading, computing,
text, JSON, results files."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import fastdecode as fd
from fastdecode import _app, _io, _pipeline, datasets, paper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_cli import tiny_lenet  # noqa: E402


def test_load_data_start_and_limit_on_the_shipped_sample():
    sample = datasets.fashion_sample()
    ds = _app.load_data(None, start=10, limit=5)
    np.testing.assert_array_equal(ds.images, sample.images[10:15])
    np.testing.assert_array_equal(ds.labels, sample.labels[10:15])
    assert ds.first == 10 and "Fashion-MNIST" in ds.source
    assert len(_app.load_data(None, start=995, limit=50).images) == 5
    with pytest.raises(ValueError, match="--limit"):
        _app.load_data(None, limit=0)


def test_class_names_from_meta_or_the_data_set():
    net = tiny_lenet()
    assert _pipeline.class_names(net, 10) == ["c%d" % i for i in range(10)]
    net.meta.pop("classes")
    assert _pipeline.class_names(net, 10) == [str(i) for i in range(10)]
    assert _pipeline.class_names(net, 10, "lenet-fashion") == list(datasets.FASHION_CLASSES)



def tiny_data(n=12, seed=3, labels=True):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
    return _pipeline.Dataset(images, rng.integers(0, 10, n).astype(np.uint8) if labels else None,
                        "random images", 4)


def test_evaluate_computes_what_the_library_computes():
    net, data = tiny_lenet(), tiny_data()
    e = _pipeline.evaluate(net, "tiny", data, methods=("bilinear", "nearest"), progress=False)
    x = fd.models.preprocess(net, data.images)
    table = fd.table1(net, x, methods=("bilinear", "nearest"), progress=False)
    assert list(e.table) == list(table)
    for key, r in table.items():
        np.testing.assert_allclose(e.table[key].per_image, r.per_image, rtol=1e-12)
    scores = fd.filter_scores(net, x, unpool="bilinear", progress=False)
    acc = fd.classifier_accuracy(scores, data.labels.astype(int))
    assert (e.accuracy.decoded, e.accuracy.network) == (acc.decoded, acc.network)
    np.testing.assert_array_equal(e.tops["layer7"].network, fd.top_images(scores, 8).network)
    assert e.top == "layer7" and e.mid == "layer5" and e.method == "bilinear"
    assert list(e.decoded) == ["layer7", "layer5"] and e.has_mean and e.n_images == 12
    sc = fd.self_consistency(net, unpool="bilinear")
    np.testing.assert_array_equal(e.consistency.winners, sc.winners)


def test_results_as_text_and_json():
    net, data = tiny_lenet(), tiny_data(labels=False)
    e = _pipeline.evaluate(net, "tiny", data, methods="nearest", bias=True, progress=False)
    lines = _pipeline.result_lines(e)
    assert lines[0].startswith("Table 1: Eq. 3 reconstruction error (decoded bias included)")
    assert "L5 0.012" in lines[0]
    assert lines[1].startswith("Figure 1, classifier: skipped")
    assert [line.split(" ")[0] for line in lines[2:]] == ["Figure", "Top", "Top",
                                                          "Self-consistency"]
    out = _pipeline.results_json(e)
    assert list(out) == ["model", "data", "images", "first_image", "bias", "table1",
                         "top_images", "self_consistency"]
    assert out["first_image"] == 5 and out["bias"] is True and out["images"] == 12
    assert out["table1"]["layer7/nearest"]["paper"] == paper.paper_reference(net, "layer7")
    assert list(out["top_images"]) == ["layer7", "layer5"]
    assert out["top_images"]["layer5"]["k"] == 8
    json.dumps(out)
    header = _pipeline.header_lines(net, "tiny", data, 12, False)
    assert header[0].startswith("model tiny: layer1 (4 filters, 5x5)")
    assert header[1] == ("data: 12 images from random images (images 5-16); the model has no "
                         "mean image, raw pixels used")


def test_a_single_conv_layer_has_no_table_and_no_layer_below():
    net = fd.Network([fd.Conv(np.ones((3, 1, 28, 28), np.float32))])
    e = _pipeline.evaluate(net, "one", tiny_data(labels=False), progress=False)
    assert e.table is None and e.mid is None and e.accuracy is None
    assert not e.has_mean
    assert len(_pipeline.result_lines(e)) == 4 and "table1" not in _pipeline.results_json(e)


def test_write_results_writes_the_printed_text(tmp_path, capsys):
    net, data = tiny_lenet(), tiny_data()
    e = _pipeline.evaluate(net, "tiny", data, methods="nearest", progress=False)
    with _io.OutputDirectory(tmp_path / "out") as outputs:
        _pipeline.write_results(e, outputs)
    _pipeline.print_evaluation(e)
    printed = capsys.readouterr().out
    text = (tmp_path / "out" / "results.txt").read_text()
    for line in _pipeline.result_lines(e):
        assert line in printed and line in text
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == json.loads(
        json.dumps(_pipeline.results_json(e)))
    with _io.OutputDirectory(None) as nothing:  # no output directory: nothing written
        _pipeline.write_results(e, nothing)
        _pipeline.save_evaluation_figures(e, nothing)
    assert nothing.written == []


def test_parse_filters():
    assert _app.parse_filters("0,3, 5-7,", 10, "conv") == [0, 3, 5, 6, 7]
    with pytest.raises(IndexError, match="filter index 12 out of range: layer 'conv' has 10"):
        _app.parse_filters("1,2-12", 10, "conv")
    for text in ("a-b", "3-1", "1;2"):
        with pytest.raises(ValueError, match="--filters takes indices"):
            _app.parse_filters(text, 10, "conv")
    with pytest.raises(ValueError, match="names no filter"):
        _app.parse_filters(" , ", 10, "conv")
