"""Photo folders read lazily (dask arrays read chunk by chunk) and files that cannot be read:
skipped (in memory: left out; lazily: missing images, left out of every pass's statistics) or
raised, by name."""

import io
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

import fastdecode as fd  # noqa: E402
from fastdecode.atlas import ImageReadError, _inputs, load_photos, report  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_atlas import layer_pages, read_page, tiny_lenet, tiny_rgb  # noqa: E402


def _natural():
    """scikit-image's bundled photos (no download), or random pictures without it."""
    try:
        from skimage import data
        return [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]
    except ImportError:
        rng = np.random.default_rng(0)
        return [rng.integers(0, 256, (60 + 7 * i, 80, 3)).astype(np.uint8) for i in range(4)]


def good_folder(path, n=9):
    """n photos, PNG and JPEG, colour and grey, of several sizes."""
    path.mkdir()
    rng = np.random.default_rng(3)
    photos = _natural()
    for i in range(n):
        if i < len(photos):
            img = Image.fromarray(photos[i]).resize((64 + 8 * i, 48 + 4 * i))
        else:
            shape = (30 + i, 41) if i % 2 else (28, 36 + i, 3)
            img = Image.fromarray(rng.integers(0, 256, shape).astype(np.uint8))
        img.save(path / ("p%02d.%s" % (i, "jpg" if i % 3 == 0 else "png")))
    return path


def with_bad_files(path):
    """A folder of good photos with a truncated JPEG and a text file named .jpg among them."""
    good_folder(path)
    buf = io.BytesIO()
    Image.fromarray(_natural()[0]).save(buf, format="JPEG")
    (path / "p03b.jpg").write_bytes(buf.getvalue()[:len(buf.getvalue()) // 2])
    (path / "p06b.jpg").write_bytes(b"not a picture at all")
    return path


BAD = ["p03b.jpg", "p06b.jpg"]


@pytest.mark.parametrize("net", [tiny_rgb(), tiny_lenet()], ids=["rgb", "grey"])
@pytest.mark.parametrize("chunks", [1, 4, None])
def test_lazy_photos_are_the_eager_ones(tmp_path, net, chunks):
    folder = good_folder(tmp_path / "photos")
    eager = load_photos(folder, net)
    lazy = load_photos(folder, net, lazy=True, chunks=chunks)
    assert isinstance(lazy.images, da.Array) and isinstance(lazy.display, da.Array)
    assert lazy.names == eager.names and len(eager.names) == 9
    if chunks is not None:
        assert lazy.images.chunks[0][0] == chunks
    assert lazy.images.dtype == eager.images.dtype and lazy.display.dtype == np.uint8
    np.testing.assert_array_equal(lazy.images.compute(), eager.images)
    np.testing.assert_array_equal(lazy.display.compute(), eager.display)
    limited = load_photos(folder, net, lazy=True, limit=4)
    np.testing.assert_array_equal(limited.images.compute(), eager.images[:4])


def test_listing_reads_no_file_and_a_chunk_reads_its_own(tmp_path, monkeypatch):
    folder = good_folder(tmp_path / "photos")
    read = []
    real = _inputs._read
    monkeypatch.setattr(_inputs, "_read", lambda path, *a: (read.append(path), real(path, *a))[1])
    lazy = load_photos(folder, tiny_rgb(), lazy=True, chunks=3)
    assert read == []
    with dask.config.set(scheduler="sync"):
        lazy.images[4].compute()
    assert [os.path.basename(p) for p in read] == ["p03.jpg", "p04.png", "p05.png"]


def test_bad_files_raise_by_name_or_are_skipped_in_memory(tmp_path):
    folder = with_bad_files(tmp_path / "photos")
    net = tiny_rgb()
    with pytest.raises(ImageReadError, match=r"image 4 \(.*p03b\.jpg\) cannot be read"):
        load_photos(folder, net, on_error="raise")
    with pytest.warns(UserWarning, match=r"skipped unreadable image .*p03b\.jpg"):
        eager = load_photos(folder, net)
    assert eager.names == ["p%02d.%s" % (i, "jpg" if i % 3 == 0 else "png") for i in range(9)]
    lazy = load_photos(folder, net, lazy=True, chunks=2, on_error="raise")
    assert len(lazy.names) == 11
    with dask.config.set(scheduler="sync"):
        lazy.images[:2].compute()                          # a chunk of good photos reads
        with pytest.raises(ImageReadError, match=r"image (4 \(.*p03b|8 \(.*p06b)\.jpg\)"):
            lazy.images.compute()
    with pytest.raises(ValueError, match="on_error must be one of skip, raise"):
        load_photos(folder, net, on_error="ignore")
    with pytest.raises(ValueError, match="give lazy=True too"):
        load_photos(folder, net, chunks=3)


@pytest.fixture(scope="module")
def skipped(tmp_path_factory):
    """The photos in memory (good ones) and lazily (all, the bad ones missing)."""
    folder = with_bad_files(tmp_path_factory.mktemp("bad") / "photos")
    net = tiny_rgb()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eager = load_photos(folder, net)
    lazy = load_photos(folder, net, lazy=True, chunks=3)
    good = np.array([i for i, n in enumerate(lazy.names) if n not in BAD])
    return net, eager, lazy, good


def test_skipped_files_are_missing_images_of_the_lazy_arrays(skipped):
    net, eager, lazy, good = skipped
    with pytest.warns(UserWarning, match=r"skipped unreadable image .*p06b\.jpg.*missing"):
        x = lazy.images.compute()
    bad = [lazy.names.index(n) for n in BAD]
    assert np.isnan(x[bad]).all() and not np.isnan(x[good]).any()
    np.testing.assert_array_equal(x[good], eager.images)
    assert not lazy.display[bad].compute().any()


def test_passes_leave_missing_images_out(skipped):
    net, eager, lazy, good = skipped
    labels = np.arange(len(lazy.names)) % 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # the reader's, per file
        with pytest.warns(RuntimeWarning, match="2 of the 11 images are missing"):
            got = fd.reconstruction_error(net, lazy.images, "layer6")
        want = fd.reconstruction_error(net, eager.images, "layer6", progress=False)
        assert np.isnan(got.per_image[[4, 8]]).all()
        np.testing.assert_allclose(got.per_image[good], want.per_image, rtol=1e-6)
        np.testing.assert_allclose([got.mean, got.std], [want.mean, want.std], rtol=1e-6)
        np.testing.assert_allclose(got.per_filter, want.per_filter, rtol=1e-6)
        scores = fd.filter_scores(net, lazy.images, "layer6")
        mem = fd.filter_scores(net, eager.images, "layer6", progress=False)
        tops, tops_mem = fd.top_images(scores, 3), fd.top_images(mem, 3)
        np.testing.assert_array_equal(tops.network, good[tops_mem.network])
        np.testing.assert_array_equal(tops.decoded, good[tops_mem.decoded])
        m, m_mem = fd.max_activation_matrix(scores), fd.max_activation_matrix(mem)
        np.testing.assert_allclose(m.network, m_mem.network, rtol=1e-6)
        np.testing.assert_array_equal(m.network_images, good[m_mem.network_images])
        with pytest.warns(RuntimeWarning, match="2 of the 11 images are missing"):
            acc = fd.classifier_accuracy(scores, labels)
        acc_mem = fd.classifier_accuracy(mem, labels[good])
        assert (acc.network, acc.decoded) == (acc_mem.network, acc_mem.decoded)


def test_the_atlas_of_lazy_photos_leaves_missing_images_out(skipped, tmp_path):
    net, eager, lazy, good = skipped
    report(net, tmp_path / "mem", images=eager.images, display_images=eager.display,
           image_names=eager.names, top_k=3, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report(net, tmp_path / "lazy", images=lazy.images, display_images=lazy.display,
               image_names=lazy.names, top_k=3, progress=False)
    for page in layer_pages(tmp_path / "mem"):
        a = json.loads(read_page(tmp_path / "mem" / page).json["atlas-data"])
        b = json.loads(read_page(tmp_path / "lazy" / page).json["atlas-data"])
        np.testing.assert_allclose(b["errors"], a["errors"], rtol=1e-5)
        for fa, fb in zip(a["filters"], b["filters"]):
            for key in ("n", "d"):
                assert ([a["images"][str(it[0])]["name"] for it in fa[key]]
                        == [b["images"][str(it[0])]["name"] for it in fb[key]])
                np.testing.assert_allclose([it[1] for it in fb[key]],
                                           [it[1] for it in fa[key]], rtol=1e-5)


def test_report_on_a_local_cluster_reads_photos_lazily_and_skips_or_stops(tmp_path, capsys):
    """``fastdecode report --images DIR --workers 2``: the photos read chunk by chunk on the
    cluster; unreadable ones skipped with a count (the atlas of the readable ones) or, with
    ``--on-error stop``, the run stopped naming the file, no folder left."""
    pytest.importorskip("distributed")
    from fastdecode.cli import main
    folder = with_bad_files(tmp_path / "photos")
    fd.save_matconvnet(tiny_rgb(), str(tmp_path / "rgb.mat"))
    common = ["report", str(tmp_path / "rgb.mat"), "--images", str(folder), "--top-k", "3",
              "--no-progress"]
    assert main(common + ["--out", str(tmp_path / "mem")]) == 0
    assert main(common + ["--out", str(tmp_path / "local"), "--workers", "2"]) == 0
    captured = capsys.readouterr()
    assert "dask: a local cluster at tcp://127.0.0.1:" in captured.out
    assert "2 of the 11 images are missing" in captured.err
    for page in layer_pages(tmp_path / "mem"):
        a = json.loads(read_page(tmp_path / "mem" / page).json["atlas-data"])
        b = json.loads(read_page(tmp_path / "local" / page).json["atlas-data"])
        np.testing.assert_allclose(b["errors"], a["errors"], rtol=1e-5)
        for fa, fb in zip(a["filters"], b["filters"]):
            assert ([a["images"][str(it[0])]["name"] for it in fa["n"]]
                    == [b["images"][str(it[0])]["name"] for it in fb["n"]])
    assert main(common + ["--out", str(tmp_path / "stop"), "--on-error", "stop"]) == 2
    assert "p03b.jpg) cannot be read" in capsys.readouterr().err
    assert main(common + ["--out", str(tmp_path / "stop"), "--on-error", "stop",
                          "--workers", "2"]) == 2
    assert "cannot be read" in capsys.readouterr().err
    assert not (tmp_path / "stop").exists()
