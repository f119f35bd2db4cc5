"""Figures: layout helpers against references, PNG output, all-or-nothing writes."""

import os

import numpy as np
import pytest

import fastdecode as fd
from fastdecode import evaluation as ev
from fastdecode import plotting


def read_png(path):
    from matplotlib.image import imread
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    return imread(path)


def test_to_display_is_symmetric_per_filter():
    f = np.array([[[-2.0, 0.0], [1.0, 2.0]]])
    np.testing.assert_allclose(plotting._to_display(f), [[0.0, 0.5], [0.75, 1.0]])
    np.testing.assert_allclose(plotting._to_display(np.zeros((1, 2, 2))), 0.5)
    rgb = plotting._to_display(np.stack([f[0], -f[0], 0 * f[0]]))
    assert rgb.shape == (2, 2, 3)
    np.testing.assert_allclose(rgb[..., 1], 1 - rgb[..., 0])


def test_filter_mosaic_places_tiles_row_by_row_with_nan_gaps():
    tiles = np.arange(5 * 2 * 3, dtype=float).reshape(5, 2, 3)
    m = plotting.filter_mosaic(tiles, ncols=2)
    assert m.shape == (3 * 3 - 1, 2 * 4 - 1)
    for i in range(5):
        r, c = divmod(i, 2)
        np.testing.assert_array_equal(m[3 * r:3 * r + 2, 4 * c:4 * c + 3], tiles[i])
    assert np.isnan(m[2]).all() and np.isnan(m[:, 3]).all()
    assert np.isnan(m[6:, 4:]).all()  # the missing sixth tile


def test_save_filter_grid_raw_and_thresholded(tmp_path):
    D = np.random.default_rng(0).standard_normal((20, 1, 12, 12))
    raw = read_png(plotting.save_filter_grid(D, tmp_path / "raw.png", title="raw"))
    both = read_png(plotting.save_filter_grid(D, tmp_path / "both.png", threshold=0.5,
                                              labels=range(20)))
    assert both.shape[1] > 1.5 * raw.shape[1]  # a second panel beside the first
    few = read_png(plotting.save_filter_grid(D[:6], tmp_path / "few.png", threshold=0.5,
                                             title="two\nlines"))
    assert few.shape[0] > few.shape[1] / 4  # six filters in a row, thresholded row below
    rgb = read_png(plotting.save_filter_grid(np.abs(D[:, :1].repeat(3, axis=1)),
                                             tmp_path / "rgb.png"))
    assert rgb.ndim == 3
    assert sorted(os.listdir(tmp_path)) == ["both.png", "few.png", "raw.png", "rgb.png"]


def test_save_filter_grid_shows_the_filter_values(tmp_path):
    # one filter, left half +1 (white), right half -1 (black): the picture must say so
    f = np.ones((1, 1, 8, 8))
    f[..., 4:] = -1
    img = read_png(plotting.save_filter_grid(f, tmp_path / "one.png"))[..., :3].mean(axis=2)
    rows = img[img.shape[0] // 2]
    dark, light = np.flatnonzero(rows < 0.1), np.flatnonzero(rows > 0.9)
    assert dark.size > 50 and light.size > 50
    assert np.median(light) < np.median(dark)  # white on the left, black on the right


def test_save_filter_grid_validates(tmp_path):
    with pytest.raises(ValueError, match="4-D"):
        plotting.save_filter_grid(np.zeros((3, 5, 5)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="labels"):
        plotting.save_filter_grid(np.zeros((3, 1, 5, 5)), tmp_path / "x.png", labels=[1])
    with pytest.raises(FileNotFoundError):
        plotting.save_filter_grid(np.zeros((3, 1, 5, 5)), tmp_path / "no" / "x.png")
    assert os.listdir(tmp_path) == []


def test_a_failed_write_leaves_no_file(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def broken(self, fname, **kwargs):
        with open(fname, "wb") as f:
            f.write(b"\x89PNG half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        plotting.save_filter_grid(np.ones((2, 1, 5, 5)), tmp_path / "grid.png")
    assert os.listdir(tmp_path) == []


def lenet():
    rng = np.random.default_rng(1)
    r = lambda *s: rng.standard_normal(s)  # noqa: E731
    return fd.Network([fd.Conv(r(4, 1, 5, 5), r(4)), fd.Pool("max", size=2),
                       fd.Conv(r(6, 4, 5, 5), r(6)), fd.Pool("max", size=2),
                       fd.Conv(r(8, 6, 4, 4), r(8)), fd.ReLU(), fd.Conv(r(3, 8, 1, 1), r(3))])


def test_response_figure(tmp_path):
    net = lenet()
    x = np.random.default_rng(2).uniform(0, 255, (1, 1, 28, 28))
    layers = []
    for l in net.conv_layers:
        D = fd.decode(net, l)
        layers.append((l, net.forward(x, upto=l)[0],
                       fd.correlate(x, D, stride=net.stride(l), pad=net.padding(l))[0]))
    img = read_png(plotting.save_response_figure(x[0], layers, tmp_path / "fig3.png",
                                                 title="t"))
    assert img.shape[0] > 4 * 100  # one row per layer


def test_activation_matrix_and_top_images(tmp_path):
    net = lenet()
    raw = np.random.default_rng(3).integers(0, 256, (30, 28, 28)).astype(np.uint8)
    s = fd.filter_scores(net, raw[:, None].astype(float), progress=False)
    m = fd.max_activation_matrix(s)
    D = fd.decode(net, "layer7")
    path = plotting.save_activation_matrix(
        {"network": (m.network, raw[m.network_images]),
         "decoded": (m.decoded, raw[m.decoded_images])}, D, tmp_path / "fig1.png",
        class_names=["a", "b", "c"], title="Figure 1")
    read_png(path)
    with pytest.raises(ValueError, match="class_names"):
        plotting.save_activation_matrix({"n": (m.network, raw[:3])}, D, tmp_path / "bad.png",
                                        class_names=["a"])
    with pytest.raises(ValueError, match="must be"):
        plotting.save_activation_matrix({"n": (m.network[:2], raw[:3])}, D,
                                        tmp_path / "bad.png")
    t = fd.top_images(s, k=4)
    read_png(plotting.save_top_images(raw, t.network, t.decoded, D, tmp_path / "top.png",
                                      labels=["a", "b", "c"]))
    assert sorted(os.listdir(tmp_path)) == ["fig1.png", "top.png"]


def test_threshold_used_by_figures_matches_evaluation():
    D = np.random.default_rng(4).standard_normal((3, 1, 4, 4))
    kept = ev.threshold_filters(D, plotting.THRESHOLD)
    peak = np.abs(D).max(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_array_equal(kept != 0, np.abs(D) >= plotting.THRESHOLD * peak)


def test_response_figure_error_is_eq3(tmp_path, monkeypatch):
    """The error printed beside each layer of Figure 3 is Eq. 3 for that image."""
    net = lenet()
    x = np.random.default_rng(5).uniform(0, 255, (1, 1, 28, 28))
    titles = []
    from matplotlib.axes import Axes
    original = Axes.set_title
    monkeypatch.setattr(Axes, "set_title",
                        lambda self, label, *a, **k: (titles.append(label),
                                                      original(self, label, *a, **k))[1])
    layers = []
    for l in net.conv_layers:
        D = fd.decode(net, l)
        layers.append((l, net.forward(x, upto=l)[0],
                       fd.correlate(x, D, stride=net.stride(l), pad=net.padding(l))[0]))
    plotting.save_response_figure(x[0], layers, tmp_path / "fig3.png")
    shown = [t for t in titles if t.startswith("Eq. 3 error")]
    want = ["Eq. 3 error %.4f" % fd.reconstruction_error(net, x, l, progress=False).mean
            for l in net.conv_layers]
    assert shown == want
