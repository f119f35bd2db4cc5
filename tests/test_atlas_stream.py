"""The atlas at scale: decoded filters streamed layer by layer, the decoded filters'
correlations from the linear twin, graph networks, and tiles shrunk by area."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import fastdecode as fd
from fastdecode import _streaming as _stream
from fastdecode.atlas import _images, _twin, report
from fastdecode.evaluation import decoded_response, rescale_per_image

pytest.importorskip("PIL")
from PIL import Image  # noqa: E402
pytest.importorskip("tqdm")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_atlas import page_of, read_page, tiny_lenet  # noqa: E402


def graph_net(seed=0, size=32):
    """A graph with what MobileNet- and ResNet-like networks hold: strided and padded convs,
    batch normalisation, a depthwise conv, a residual add, a squeeze-and-excitation gate, max
    and average pools, a concatenation of branches of different receptive fields, and a global
    pool and a linear classifier on top."""
    rng = np.random.default_rng(seed)
    r = lambda *s: (0.3 * rng.standard_normal(s)).astype(np.float32)  # noqa: E731
    layers = [
        fd.Conv(r(6, 3, 3, 3), r(6), stride=2, pad=1, name="c1"),
        fd.BatchNorm(1 + r(6), r(6), r(6), 1 + np.abs(r(6)), name="bn1"),
        fd.ReLU6(name="r1"),
        fd.Conv(r(6, 1, 3, 3), None, pad=1, name="dw"),
        fd.Conv(r(6, 6, 1, 1), None, name="pw"),
        fd.GlobalPool("avg", inputs="pw", name="sq"),
        fd.Conv(r(6, 6, 1, 1), r(6), name="ex"),
        fd.Gate(inputs=("pw", "ex"), hold=0.5 + np.abs(r(6)), name="se"),
        fd.Add(inputs=("r1", "se"), name="add"),
        fd.Pool("max", size=3, stride=2, pad=1, name="mp"),
        fd.Conv(r(4, 6, 3, 3), None, pad=(0, 2, 1, 1), name="ca"),
        fd.Conv(r(5, 6, 1, 1), None, inputs="mp", name="cb"),
        fd.Concat(inputs=("ca", "cb"), name="cat"),
        fd.Pool("avg", size=2, name="ap"),
        fd.Conv(r(7, 9, 3, 3), r(7), stride=2, pad=1, name="top"),
        fd.GlobalPool("avg", name="gp"),
        fd.Linear(r(5, 7), r(5), name="fc")]
    return fd.Network(layers, input_shape=(3, size, size), aliases={"block1": "add"})


def eq3_per_filter(R, D):
    """Eq. 3 per filter, the slow way: each image's maps rescaled to [0, 1] by their own
    extremes, the squared difference averaged over images and positions."""
    Rr, _ = rescale_per_image(R)
    Dr, _ = rescale_per_image(D)
    return ((Rr - Dr) ** 2).mean(axis=(0, 2, 3))


@pytest.mark.parametrize("unpool", ["nearest", "adjoint"])
def test_twin_gives_the_correlation_with_the_decoded_filters(unpool):
    """One pass of the linear twin on the padded image equals correlating the image with each
    layer's decoded filters at its cumulative stride and padding, at every unit (border units
    included), for every layer the twin reaches."""
    net = graph_net().astype(np.float64)
    x = np.random.default_rng(1).standard_normal((3, 3, 32, 32))
    keep = [net.index(n) for n in net.conv_layers + ["add", "cat"]]
    tw = _twin.plan(net, keep, unpool, x.shape[1:])
    reached = sorted(tw.grids)
    # "ex" reads the global pool: the twin cannot reach it
    assert net.index("ex") not in reached and len(reached) == len(keep) - 1
    D = _twin.responses(net, tw, x, unpool, 2)
    for i in reached:
        want = decoded_response(net, x, i, fd.decode(net, i, unpool=unpool), None, 2)
        assert D[i].shape == want.shape
        np.testing.assert_allclose(D[i], want, rtol=1e-9, atol=1e-9 * np.abs(want).max())


def test_twin_does_not_apply_to_resampling_unpoolings():
    net = graph_net()
    assert _twin.plan(net, [net.index("top")], "bilinear", (3, 32, 32)) is None


@pytest.mark.parametrize("make", [tiny_lenet, graph_net])
def test_streamed_chunks_are_the_decoded_filters(make, monkeypatch):
    """Chunk by chunk, with every large tensor in a memory-mapped file, the stream hands out
    each layer's decoded filters as decode gives them."""
    monkeypatch.setattr(_stream, "SPILL_BYTES", 0)
    net = make()
    idx = [net.index(n) for n in net.conv_layers]
    got = {}

    def on_chunk(i, start, filters):
        got.setdefault(i, []).append((start, np.array(filters)))

    _stream.stream(net, idx, "nearest", 2, on_chunk, chunk_bytes=600)
    assert sorted(got) == idx
    for i in idx:
        parts = got[i]
        assert [s for s, _ in parts] == list(np.cumsum([0] + [len(p) for _, p in parts])[:-1])
        assert len(parts) > 1 or net.channels(i) == 1 or len(parts[0][1]) == net.channels(i)
        np.testing.assert_allclose(np.concatenate([p for _, p in parts]), fd.decode(net, i),
                                   rtol=1e-4, atol=1e-5)


def test_filter_cells_shrink_by_area():
    rng = np.random.default_rng(2)
    f = rng.standard_normal((3, 3, 8, 12)).astype(np.float32)
    same, peaks = _images.filter_cells(f, (8, 12))
    for k in range(3):
        np.testing.assert_array_equal(same[k], _images.filter_pixels(f[k]))
    small, _ = _images.filter_cells(f, (4, 6))   # 2x2 blocks averaged, the same peak
    mean = f.reshape(3, 3, 4, 2, 6, 2).mean(axis=(3, 5))
    want = np.clip(np.rint((0.5 + mean / (2 * peaks[:, None, None, None])) * 255), 0, 255)
    np.testing.assert_allclose(small, np.moveaxis(want, 1, -1), atol=1)
    grey, _ = _images.filter_cells(f[:, :2], (3, 5))   # not 3 channels: grey, any size
    assert grey.shape == (3, 3, 5) and grey.dtype == np.uint8


@pytest.fixture(scope="module")
def graph_atlas(tmp_path_factory):
    net = graph_net()
    x = np.random.default_rng(3).standard_normal((10, 3, 32, 32)).astype(np.float32)
    out = tmp_path_factory.mktemp("atlas") / "graph"
    report(net, out, images=x, layers=net.conv_layers + ["block1", "cat"], top_k=3,
           progress=False)
    return net, x, str(out)


def test_graph_atlas_shows_blocks_and_their_inputs(graph_atlas):
    net, x, out = graph_atlas
    index = open(os.path.join(out, "index.html"), encoding="utf-8").read()
    for name in ("add", "cat", "gp", "fc", "se"):
        assert ">%s<" % name in index
    assert '<td class="inputs">r1, se</td>' in index        # the add's inputs
    assert '<td class="inputs">ca, cb</td>' in index
    for name in net.conv_layers + ["add", "cat"]:
        page = read_page(page_of(out, net, name))
        tiles = page.with_class("filter")
        assert len(tiles) == net.channels(name)
        assert {t["data-layer"] for t in tiles} == {name}


def test_graph_atlas_errors_and_top_images_are_eq3_and_the_scores(graph_atlas):
    """Every shown layer's Eq. 3 per filter and top images, whether D came from the twin or
    (above the global pool) from the decoded filters, against the slow definitions."""
    net, x, out = graph_atlas
    for name in net.conv_layers + ["add", "cat"]:
        R = net.forward(x, upto=name).astype(np.float64)
        D = decoded_response(net, x.astype(np.float64), name,
                             fd.decode(net, name).astype(np.float64), None, 2)
        page = read_page(page_of(out, net, name))
        got = [float(t["data-error"]) for t in page.with_class("filter")]
        np.testing.assert_allclose(got, eq3_per_filter(R, D), rtol=1e-4, atol=1e-7)
        data = json.loads(page.json["atlas-data"])
        best_n = R.max(axis=(2, 3))
        best_d = D.max(axis=(2, 3))
        for f, entry in enumerate(data["filters"]):
            for key, S in (("n", best_n), ("d", best_d)):
                scores = [item[1] for item in entry[key]]
                np.testing.assert_allclose(scores, np.sort(S[:, f])[::-1][:3], rtol=1e-4,
                                           atol=1e-5)


def test_bad_block_names_are_refused(tmp_path):
    net = graph_net()
    with pytest.raises(ValueError, match="is a pool layer, not a conv layer or a block"):
        report(net, tmp_path / "a", layers=["mp"], progress=False)
    assert not os.path.exists(tmp_path / "a")


def test_resampling_unpooling_report_matches_eq3(tmp_path):
    """Bilinear decoding is not shift-equivariant: D then comes from the decoded filters,
    chunk by chunk."""
    net = tiny_lenet()
    x = np.random.default_rng(4).standard_normal((6, 1, 28, 28)).astype(np.float32)
    report(net, tmp_path / "b", images=x, unpool="bilinear", layers=["layer5"], top_k=2,
           progress=False)
    page = read_page(page_of(str(tmp_path / "b"), net, "layer5"))
    want = fd.reconstruction_error(net, x, "layer5", unpool="bilinear", progress=False)
    np.testing.assert_allclose([float(t["data-error"]) for t in page.with_class("filter")],
                               want.per_filter, rtol=1e-5, atol=1e-9)


@pytest.mark.skipif(not hasattr(fd, "from_torch"), reason="needs fastdecode.from_torch")
def test_mobilenet_v2_atlas_from_torch(tmp_path):
    """The lower blocks of torchvision's MobileNetV2 (random weights, 64x64): a page per conv
    layer with every tile, and Eq. 3 errors from the twin that match the slow definition."""
    torch = pytest.importorskip("torch")
    from torch_models import mobilenet_v2
    torch.manual_seed(0)
    net = fd.from_torch(mobilenet_v2(), input_shape=(3, 64, 64))
    assert len(net.conv_layers) == 52
    shown = net.conv_layers[:9]
    x = np.random.default_rng(5).standard_normal((3, 3, 64, 64)).astype(np.float32)
    out = report(net, tmp_path / "m", images=x, layers=shown, top_k=2, progress=False)
    assert len([n for n in os.listdir(out) if n.startswith("layer-")]) == len(shown)
    for name in shown:
        tiles = read_page(page_of(out, net, name)).with_class("filter")
        assert len(tiles) == net.channels(name)
    top = shown[-1]
    R = net.forward(x, upto=top).astype(np.float64)
    D = decoded_response(net, x.astype(np.float64), top,
                         fd.decode(net, top).astype(np.float64), None, 2)
    got = [float(t["data-error"]) for t in read_page(page_of(out, net, top)).with_class("filter")]
    np.testing.assert_allclose(got, eq3_per_filter(R, D), rtol=1e-3, atol=1e-6)


def test_large_filters_have_light_tiles_and_a_detail_sheet(tmp_path):
    """Filters wider than a tile show from a sheet of tile-sized cells; the detail view's
    larger cells are in their own sheet, which the page asks for only in the detail's rules."""
    from fastdecode.atlas import TILE_CELL
    rng = np.random.default_rng(6)
    net = fd.Network([fd.Conv(rng.standard_normal((3, 1, 90, 90)).astype(np.float32))],
                     input_shape=(1, 100, 100))
    out = tmp_path / "big"
    report(net, out, progress=False)
    page = open(page_of(str(out), net, "layer1"), encoding="utf-8").read()
    rules = dict(r.split("{", 1) for r in page.split("\n") if "background-image" in r)
    assert "img/L00-tiles-0.png" in rules[".tiles .pic.s0"]
    assert "img/L00-filters-0.png" in rules["#detail .big.tiles-sheet.s0"]
    D = fd.decode(net, "layer1")
    with Image.open(out / "img" / "L00-tiles-0.png") as im:
        sheet = np.asarray(im)
    cells, _ = _images.filter_cells(D, (TILE_CELL, TILE_CELL))
    for f in range(3):   # cells left to right, then the thresholded ones
        np.testing.assert_array_equal(sheet[:TILE_CELL, f * TILE_CELL:(f + 1) * TILE_CELL],
                                      cells[f])
