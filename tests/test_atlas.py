"""The atlas (``fastdecode.atlas.report`` and ``fastdecode report``) without a browser: the
folder's contents, links that stay inside it, one tile per filter with its Eq. 3 error, the top
images of ``fd.top_images``, the staging folder, refusals and the command line."""

import gzip
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
import warnings
from html.parser import HTMLParser

import numpy as np
import pytest

import fastdecode as fd
from fastdecode import datasets, models
from fastdecode.atlas import MARKER, load_photos, report
from fastdecode.cli import main

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402


def tiny_lenet(seed=0):
    """MatConvNet's MNIST LeNet with fewer filters: 28x28 grey input, a mean image."""
    rng = np.random.default_rng(seed)
    r = lambda *s: (0.1 * rng.standard_normal(s)).astype(np.float32)  # noqa: E731
    mean = rng.uniform(20, 60, (1, 28, 28)).astype(np.float32)
    return fd.Network(
        [fd.Conv(r(4, 1, 5, 5), r(4)), fd.Pool("max", size=2),
         fd.Conv(r(6, 4, 5, 5), r(6)), fd.Pool("max", size=2),
         fd.Conv(r(8, 6, 4, 4), r(8)), fd.ReLU(), fd.Conv(r(10, 8, 1, 1), r(10))],
        meta={"normalization": {"averageImage": mean}, "inputSize": (28, 28, 1),
              "classes": {"description": ["c%d" % i for i in range(10)]}})


def tiny_rgb(seed=1):
    """An RGB network with padding, so that patches reach into it; 20x20 input."""
    rng = np.random.default_rng(seed)
    r = lambda *s: (0.2 * rng.standard_normal(s)).astype(np.float32)  # noqa: E731
    return fd.Network(
        [fd.Conv(r(5, 3, 3, 3), r(5), pad=1), fd.ReLU(), fd.Pool("max", size=2),
         fd.Conv(r(7, 5, 3, 3), r(7), pad=1), fd.ReLU(), fd.Conv(r(3, 7, 3, 3), r(3),
                                                                  stride=2)],
        meta={"normalization": {"averageImage": np.array([120.0, 110.0, 100.0],
                                                          np.float32).reshape(3, 1, 1)},
              "inputSize": (20, 20, 3)})


def grey_images(n=24, seed=2):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)


@pytest.fixture(scope="module")
def grey(tmp_path_factory):
    """An atlas of the tiny LeNet over 24 images, with what it was made from."""
    net = tiny_lenet()
    raw = grey_images()
    labels = np.arange(len(raw)) % 10
    x = models.preprocess(net, raw)
    out = tmp_path_factory.mktemp("atlas") / "grey"
    path = report(net, out, images=x, labels=labels, display_images=raw, top_k=5,
                  class_names=["c%d" % i for i in range(10)], progress=False)
    return {"net": net, "x": x, "raw": raw, "out": str(out), "path": path}


class Page(HTMLParser):
    """Elements of a page as (tag, attrs) and the text of its <style> and JSON scripts."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.elements, self.styles, self.json = [], [], {}
        self._in = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.elements.append((tag, attrs))
        if tag == "style":
            self._in = ("style", None)
        elif tag == "script" and attrs.get("type") == "application/json":
            self._in = ("json", attrs.get("id"))

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        if self._in and self._in[0] == "style":
            self.styles.append(data)
        elif self._in and self._in[0] == "json":
            self.json[self._in[1]] = self.json.get(self._in[1], "") + data

    def with_class(self, cls):
        return [a for t, a in self.elements if cls in (a.get("class") or "").split()]


def read_page(path):
    with open(path, encoding="utf-8") as f:
        return Page(f.read())


def layer_pages(out):
    return sorted(n for n in os.listdir(out) if n.startswith("layer-") and n.endswith(".html"))


def page_of(out, net, layer):
    i = net.index(layer)
    return os.path.join(out, next(n for n in layer_pages(out) if n.startswith("layer-%02d-" % i)))


# --- contents and links ----------------------------------------------------------------------

def test_folder_contents(grey):
    out, net = grey["out"], grey["net"]
    assert grey["path"] == os.path.abspath(out)
    names = set(os.listdir(out))
    assert {"index.html", "assets", "img", MARKER} <= names
    assert len(layer_pages(out)) == len(net.conv_layers)
    assert set(os.listdir(os.path.join(out, "assets"))) == {"atlas.css", "atlas.js", "icon.png"}
    sprites = os.listdir(os.path.join(out, "img"))
    assert all(s.endswith(".png") for s in sprites)  # grey images: no JPEG blur
    # a few sheets per layer, not a file per filter
    assert len(sprites) <= 3 * len(net.conv_layers) + 1
    with open(os.path.join(out, MARKER)) as f:
        assert json.load(f)["layers"] == net.conv_layers
    # nothing left beside the folder
    assert os.listdir(os.path.dirname(out)) == [os.path.basename(out)]


URL = re.compile(r"url\(\s*['\"]?([^'\")]+)['\"]?\s*\)")


def _targets(out):
    """(page, reference) for every src, href and CSS url() of the atlas."""
    refs = []
    for name in os.listdir(out):
        if name.endswith(".html"):
            page = read_page(os.path.join(out, name))
            for tag, attrs in page.elements:
                for key in ("src", "href"):
                    if attrs.get(key) is not None:
                        refs.append((name, attrs[key]))
                refs += [(name, u) for u in URL.findall(attrs.get("style") or "")]
            for css in page.styles:
                refs += [(name, u) for u in URL.findall(css)]
    with open(os.path.join(out, "assets", "atlas.css")) as f:
        refs += [("assets/atlas.css", u) for u in URL.findall(f.read())]
    return refs


def test_every_reference_resolves_inside_the_folder(grey):
    out = os.path.realpath(grey["out"])
    refs = _targets(out)
    assert len(refs) > 20
    for page, ref in refs:
        assert not re.match(r"^[a-z][a-z0-9+.-]*:", ref, re.I), (page, ref)  # no scheme
        assert not ref.startswith("//"), (page, ref)
        target = ref.split("#")[0]
        if not target:  # a link within the page
            continue
        base = os.path.dirname(os.path.join(out, page))
        path = os.path.realpath(os.path.join(base, target))
        assert path.startswith(out + os.sep), (page, ref)
        assert os.path.isfile(path), (page, ref)


def test_index_has_model_layers_and_table1(grey):
    out, net = grey["out"], grey["net"]
    with open(os.path.join(out, "index.html"), encoding="utf-8") as f:
        text = f.read()
    page = Page(text)
    assert "layer7" in text and "conv 5x5x1x4" in text
    links = {a["href"] for t, a in page.elements if t == "a" and "href" in a}
    for name in layer_pages(out):
        assert name in links
    rows = text.split('<table class="table1">')[1].split("</table>")[0]
    for layer in net.conv_layers:
        e = fd.reconstruction_error(net, grey["x"], layer, progress=False)
        assert ">%s</a>" % layer in rows
        assert ("%.4f" % e.mean if e.mean >= 1e-3 else "%.2e" % e.mean) in rows


# --- tiles -------------------------------------------------------------------------------------

def test_a_tile_per_filter_with_its_error(grey):
    out, net, x = grey["out"], grey["net"], grey["x"]
    for layer in net.conv_layers:
        page = read_page(page_of(out, net, layer))
        tiles = page.with_class("filter")
        K = net[layer].num_filters
        assert len(tiles) == K
        assert [t["data-layer"] for t in tiles] == [layer] * K
        assert [int(t["data-filter"]) for t in tiles] == list(range(K))
        got = np.array([float(t["data-error"]) for t in tiles])
        # the atlas correlates through the linear twin: the same D, to rounding
        want = fd.reconstruction_error(net, x, layer, progress=False).per_filter
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-12)


def test_top_images_are_those_of_top_images(grey):
    out, net, x = grey["out"], grey["net"], grey["x"]
    for layer in net.conv_layers:
        data = json.loads(read_page(page_of(out, net, layer)).json["atlas-data"])
        tops = fd.top_images(fd.filter_scores(net, x, layer, progress=False), 5)
        got_n = np.array([[it[0] for it in f["n"]] for f in data["filters"]])
        got_d = np.array([[it[0] for it in f["d"]] for f in data["filters"]])
        np.testing.assert_array_equal(got_n, tops.network)
        np.testing.assert_array_equal(got_d, tops.decoded)
        np.testing.assert_allclose([f["o"] for f in data["filters"]], tops.overlap)
        assert data["images"][str(tops.network[0, 0])]["label"] == "c%d" % (
            tops.network[0, 0] % 10)


def test_patches_are_the_receptive_field_at_the_best_position(tmp_path):
    """For units that see part of the image, the patch corner is where the unit (and the decoded
    filter) respond most: the crop's correlation with the decoded filter is its score."""
    net = tiny_rgb()
    rng = np.random.default_rng(3)
    raw = rng.integers(0, 256, (12, 20, 20, 3)).astype(np.uint8)
    x = models.preprocess(net, np.moveaxis(raw, -1, 1))
    report(net, tmp_path / "a", images=x, display_images=raw, top_k=4, progress=False)
    for layer in net.conv_layers:
        data = json.loads(read_page(page_of(str(tmp_path / "a"), net, layer)).json["atlas-data"])
        assert data["patches"]
        D = fd.decode(net, layer)
        h, w = D.shape[2:]
        scores = fd.filter_scores(net, x, layer, progress=False)
        R = net.forward(x, upto=layer)
        (sy, sx), (pt, _, pl, _) = net.stride(layer), net.padding(layer)
        padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (h, h), (w, w)))
        for f, entry in enumerate(data["filters"]):
            for img, score, _, y0, x0 in entry["d"]:
                crop = padded[img, :, y0 + h:y0 + 2 * h, x0 + w:x0 + 2 * w]
                np.testing.assert_allclose((crop * D[f]).sum(), scores.decoded[img, f],
                                           rtol=1e-4, atol=1e-4)
            for img, score, _, y0, x0 in entry["n"]:
                r, c = (y0 + pt) // sy, (x0 + pl) // sx
                assert R[img, f, r, c] == R[img, f].max() == scores.network[img, f]


def test_patches_reaching_into_the_padding_are_tinted():
    from fastdecode.atlas import _images
    img = np.arange(16, dtype=np.uint8).reshape(4, 4)
    np.testing.assert_array_equal(_images.crop(img, 1, 1, 2, 2), img[1:3, 1:3])
    c = _images.crop(img, -1, 2, 3, 3)
    assert c.shape == (3, 3, 3)
    assert (c[0] == _images.PADDING_RGB).all() and (c[:, 2] == _images.PADDING_RGB).all()
    np.testing.assert_array_equal(c[1:, :2, 0], img[:2, 2:])


@pytest.mark.parametrize("side", [None, 60])
def test_tiles_show_their_own_filter_from_the_sheets(tmp_path, monkeypatch, side):
    """Each tile's class (sheet) and background position pick out its filter's pixels, also
    when a layer's cells are split over several sheets."""
    from fastdecode.atlas import _images, _pages
    if side is not None:
        monkeypatch.setattr(_images, "SHEET_SIDE", side)
    net = tiny_lenet()
    out = tmp_path / "sheets"
    report(net, out, progress=False)
    decoded = fd.decode_all(net)
    counts = []
    for layer in net.conv_layers:
        page = read_page(page_of(str(out), net, layer))
        D = decoded[layer]
        thr = fd.threshold_filters(D, 0.5)
        h, w = D.shape[2:]
        scale = _pages.scale_for((w, h), _pages.TILE_PX)
        pics = [a for a in page.with_class("pic")
                if "background-position" in (a.get("style") or "")]
        assert len(pics) == 2 * len(D)
        sheets = set()
        for n, attrs in enumerate(pics):
            f, thresholded = n // 2, n % 2
            sheet = int(attrs["class"].split()[1][1:])
            sheets.add(sheet)
            x, y = (abs(float(v[:-2])) / scale for v in
                    attrs["style"].split(":")[1].split())
            with Image.open(out / "img" / ("L%02d-filters-%d.png" % (net.index(layer), sheet))
                            ) as im:
                px = np.asarray(im)[int(y):int(y) + h, int(x):int(x) + w]
            want = _images.filter_pixels((thr if thresholded else D)[f],
                                         np.abs(D[f]).max())
            np.testing.assert_array_equal(px, want)
        counts.append(len(sheets))
    assert (max(counts) > 1) == (side is not None)


def test_without_images_every_filter_is_shown(tmp_path):
    net = tiny_lenet()
    out = tmp_path / "plain"
    report(net, out, progress=False)
    for layer in net.conv_layers:
        page = read_page(page_of(str(out), net, layer))
        tiles = page.with_class("filter")
        assert len(tiles) == net[layer].num_filters
        assert all("data-error" not in t for t in tiles)
        data = json.loads(page.json["atlas-data"])
        assert data["filters"] is None and data["errors"] is None
    with open(out / "index.html") as f:
        assert "Table 1" not in f.read()


def test_layers_subset_and_first_layer_weights(tmp_path):
    net = tiny_lenet()
    x = models.preprocess(net, grey_images(8))
    out = tmp_path / "sub"
    report(net, out, images=x, layers=["layer3", 0], progress=False)
    assert len(layer_pages(str(out))) == 2
    first = json.loads(read_page(page_of(str(out), net, 0)).json["atlas-data"])
    assert first["weights"] is not None
    other = json.loads(read_page(page_of(str(out), net, "layer3")).json["atlas-data"])
    assert other["weights"] is None


def test_rgb_sprites_are_colour_and_photos_jpeg(tmp_path):
    net = tiny_rgb()
    rng = np.random.default_rng(6)
    raw = rng.integers(0, 256, (6, 20, 20, 3)).astype(np.uint8)
    x = models.preprocess(net, np.moveaxis(raw, -1, 1))
    report(net, tmp_path / "rgb", images=x, display_images=raw, progress=False)
    img = os.path.join(tmp_path, "rgb", "img")
    with Image.open(os.path.join(img, "L00-filters-0.png")) as im:
        assert im.mode == "RGB"
        assert im.size[0] * im.size[1] >= 2 * net["layer1"].num_filters * 9
    for name in os.listdir(img):  # filters exact in PNG; photo patches in JPEG
        assert name.endswith(".jpg" if "patches" in name else ".png"), name


# --- the output folder: staging, refusal, interrupt --------------------------------------------

def test_an_earlier_atlas_is_replaced_and_other_folders_refused(tmp_path):
    net = tiny_lenet()
    out = tmp_path / "atlas"
    report(net, out, layers=["layer7"], progress=False)
    report(net, out, layers=["layer1", "layer3"], progress=False)
    assert len(layer_pages(str(out))) == 2
    assert sorted(os.listdir(tmp_path)) == ["atlas"]

    other = tmp_path / "photos"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not an earlier atlas"):
        report(net, other, progress=False)
    assert os.listdir(other) == ["keep.txt"]
    a_file = tmp_path / "file.html"
    a_file.write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        report(net, a_file, progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    report(net, empty, layers=[0], progress=False)
    assert os.path.isfile(empty / "index.html")


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_interrupted_work_leaves_nothing(tmp_path, monkeypatch, exc):
    from fastdecode.atlas import _images
    net = tiny_lenet()
    x = models.preprocess(net, grey_images(6))
    earlier = tmp_path / "earlier"
    report(net, earlier, layers=[0], progress=False)
    before = sorted(os.listdir(earlier))
    calls = []

    def fail(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise exc("stop")
        return real(*args, **kwargs)

    real = _images.filter_cells
    monkeypatch.setattr(_images, "filter_cells", fail)
    for out in (tmp_path / "new" / "deeper" / "atlas", earlier):
        calls.clear()
        with pytest.raises(exc):
            report(net, out, images=x, progress=False)
    assert sorted(os.listdir(tmp_path)) == ["earlier"]  # "new" made for it, removed
    assert sorted(os.listdir(earlier)) == before


@pytest.mark.parametrize("kwargs, message", [
    ({"limit": 0}, "limit must be"),
    ({"layers": ["nope"]}, "unknown layer 'nope'"),
    ({"layers": ["layer2"]}, "is a pool layer"),
    ({"layers": []}, "layers is empty"),
    ({"unpool": "linear"}, "unknown unpool method"),
    ({"top_k": 0}, "top_k must be"),
    ({"threshold": 2}, "threshold must be"),
    ({"images": np.zeros((0, 1, 28, 28), np.float32)}, "images is empty"),
    ({"images": np.zeros((3, 3, 28, 28), np.float32)}, "3 channels but the network takes 1"),
    ({"images": np.zeros((3, 1, 8, 8), np.float32)}, "too small"),
    ({"images": np.full((3, 1, 28, 28), np.nan, np.float32)}, "non-finite"),
    ({"images": np.zeros((3, 1, 28, 28), np.float32), "labels": [1]}, "labels has 1"),
    ({"images": np.zeros((3, 1, 28, 28), np.float32), "image_names": "abcd"},
     "image_names has 4"),
    ({"images": np.zeros((3, 1, 28, 28), np.float32), "display_images": np.zeros((3, 9, 9))},
     "do not match"),
    ({"labels": [1, 2]}, "need images"),
])
def test_bad_input_is_refused_before_any_output(tmp_path, kwargs, message):
    net = tiny_lenet()
    with pytest.raises(ValueError, match=message):
        report(net, tmp_path / "out", progress=False, **kwargs)
    assert os.listdir(tmp_path) == []


# --- photos ------------------------------------------------------------------------------------

def _photo_folder(path):
    path.mkdir()
    rng = np.random.default_rng(4)
    Image.fromarray(rng.integers(0, 256, (30, 40, 3)).astype(np.uint8)).save(path / "a.png")
    Image.fromarray(rng.integers(0, 256, (50, 24)).astype(np.uint8)).save(path / "b.jpg")
    Image.fromarray(rng.integers(0, 256, (20, 20, 4)).astype(np.uint8)).save(path / "c.png")
    (path / "d.jpeg").write_bytes(b"not a picture")
    (path / "notes.txt").write_text("ignored")
    return path


def test_photos_are_converted_cropped_and_normalised(tmp_path):
    folder = _photo_folder(tmp_path / "photos")
    for net, C in ((tiny_rgb(), 3), (tiny_lenet(), 1)):
        with pytest.warns(UserWarning, match=r"skipped unreadable image .*d\.jpeg"):
            p = load_photos(folder, net)
        H, W = net.meta["inputSize"][:2]
        assert p.images.shape == (3, C, H, W) and p.images.dtype == net.dtype
        assert p.names == ["a.png", "b.jpg", "c.png"]
        assert p.display.shape[:3] == (3, H, W)
        mean = np.asarray(net.meta["normalization"]["averageImage"], np.float64)
        shown = p.display.astype(np.float64)
        shown = shown[:, None] if C == 1 else np.moveaxis(shown, -1, 1)
        np.testing.assert_allclose(p.images, shown - mean[None], rtol=1e-5, atol=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = load_photos(folder, tiny_rgb(), size=(8, 12), mean=[0.5], std=[0.25, 0.5, 1],
                        limit=2)
    assert p.images.shape == (2, 3, 8, 12)
    np.testing.assert_allclose(p.images[:, 1], (p.display[..., 1] / 255.0 - 0.5) / 0.5,
                               rtol=1e-5, atol=1e-5)


def test_photo_folder_errors(tmp_path):
    net = tiny_rgb()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no JPEG or PNG images"):
        load_photos(tmp_path / "empty", net)
    with pytest.raises(FileNotFoundError):
        load_photos(tmp_path / "missing", net)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"nope")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="could be read"):
        load_photos(bad, net)
    with pytest.raises(ValueError, match="std must be positive"):
        load_photos(_photo_folder(tmp_path / "p"), net, std=[0])


# --- the command line --------------------------------------------------------------------------

def write_idx(directory, images, labels):
    os.makedirs(directory, exist_ok=True)
    with gzip.open(os.path.join(directory, "t10k-images-idx3-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">IIII", 2051, *images.shape) + images.tobytes())
    with open(os.path.join(directory, "t10k-labels-idx1-ubyte"), "wb") as f:
        f.write(struct.pack(">II", 2049, len(labels)) + labels.tobytes())


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    fd.save_matconvnet(tiny_lenet(), str(root / "tiny.mat"))
    fd.save_matconvnet(tiny_rgb(), str(root / "rgb.mat"))
    write_idx(root / "data", grey_images(30), (np.arange(30) % 10).astype(np.uint8))
    _photo_folder(root / "photos")
    return root


def run(argv, capsys):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_report_from_idx_data(cli_files, tmp_path, capsys):
    out = tmp_path / "atlas"
    code, stdout, err = run(["report", cli_files / "tiny.mat", "--data", cli_files / "data",
                             "--limit", 12, "--top-k", 4, "--no-progress", "--out", out], capsys)
    assert code == 0, err
    assert "wrote" in stdout and "12 images" in stdout
    net = fd.load_matconvnet(str(cli_files / "tiny.mat"))
    raw = datasets.load_directory(cli_files / "data").images[:12]
    x = models.preprocess(net, raw)
    page = read_page(page_of(str(out), net, "layer5"))
    want = fd.reconstruction_error(net, x, "layer5", decoded=fd.decode_all(net)["layer5"],
                                   progress=False).per_filter
    np.testing.assert_allclose([float(t["data-error"]) for t in page.with_class("filter")],
                               want, rtol=1e-5)
    data = json.loads(page.json["atlas-data"])
    assert all(v["label"] == "c%d" % (int(i) % 10) for i, v in data["images"].items())
    top = read_page(page_of(str(out), net, "layer7"))  # one filter per class: named tiles
    assert json.loads(top.json["atlas-data"])["classes"] == ["c%d" % i for i in range(10)]
    with open(page_of(str(out), net, "layer7"), encoding="utf-8") as f:
        assert '<span class="cls">c3</span>' in f.read()


def test_cli_report_from_photos(cli_files, tmp_path, capsys):
    out = tmp_path / "photos-atlas"
    code, stdout, err = run(["report", cli_files / "rgb.mat", "--images", cli_files / "photos",
                             "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25", "--size",
                             "16,16", "--layers", "layer1,layer4", "--no-progress", "--out",
                             out], capsys)
    assert code == 0, err
    assert "warning: skipped unreadable image" in err and "d.jpeg" in err
    assert len(layer_pages(str(out))) == 2
    data = json.loads(read_page(os.path.join(out, layer_pages(str(out))[0])).json["atlas-data"])
    assert {v["name"] for v in data["images"].values()} <= {"a.png", "b.jpg", "c.png"}


@pytest.mark.parametrize("args, message", [
    (["--data", "DATA", "--limit", "0"], "--limit must be at least 1"),
    (["--images", "EMPTY"], "no JPEG or PNG images"),
    (["--layers", "bogus"], "unknown layer 'bogus'"),
    (["--data", "DATA", "--size", "28,28"], "--size sets the input size of an ONNX model"),
    (["--images", "PHOTOS", "--mean", "a,b"], "--mean takes comma-separated numbers"),
    (["--images", "PHOTOS", "--std", "1,2"], "std needs 1 or 1 values"),
])
def test_cli_report_errors(cli_files, tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    subs = {"DATA": cli_files / "data", "EMPTY": tmp_path / "empty",
            "PHOTOS": cli_files / "photos"}
    argv = ["report", cli_files / "tiny.mat"] + [subs.get(a, a) for a in args] + [
        "--no-progress", "--out", tmp_path / "out"]
    code, stdout, err = run(argv, capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "out")


def test_cli_report_refuses_a_folder_that_is_not_an_atlas(cli_files, tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    code, _, err = run(["report", "lenet-mnist", "--out", tmp_path / "mine"], capsys)
    assert code == 2 and "not an earlier atlas" in err
    assert os.listdir(tmp_path / "mine") == ["notes.txt"]


def test_cli_report_shipped_model_without_images(tmp_path, capsys):
    code, stdout, err = run(["report", "lenet-mnist", "--layers", "layer1", "layer3",
                             "--no-progress", "--out", tmp_path / "a"], capsys)
    assert code == 0, err
    assert len(layer_pages(str(tmp_path / "a"))) == 2


def test_cli_report_killed_midway_leaves_nothing(cli_files, tmp_path):
    """SIGTERM while the atlas is being made: exit 143, no folder and no staging folder."""
    rng = np.random.default_rng(8)
    write_idx(tmp_path / "many", rng.integers(0, 256, (20000, 28, 28)).astype(np.uint8),
              (np.arange(20000) % 10).astype(np.uint8))
    out = tmp_path / "atlas"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(fd.__file__)))]
        + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    proc = subprocess.Popen([sys.executable, "-m", "fastdecode", "report", "lenet-mnist",
                             "--data", str(tmp_path / "many"), "--no-progress", "--threads", "1",
                             "--out", str(out)], env=env, stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, cwd=str(tmp_path))  # not the source tree
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None and not any(
            n.startswith(".atlas.staging-") for n in os.listdir(tmp_path)):
        time.sleep(0.02)
    if proc.poll() is not None:
        _, err = proc.communicate()
        assert proc.returncode == 0, err   # a run that failed is no reason to skip
        pytest.skip("the run ended before it could be stopped")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert sorted(os.listdir(tmp_path)) == ["many"]
