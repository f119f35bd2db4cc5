"""The atlas over a dask array of images: the pages of the in-memory atlas (top images and
their positions, every number to rounding) on the threaded scheduler and on a local cluster of
two worker processes (127.0.0.1 only); ``fastdecode report --workers``; bad input refused
before any task runs."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
pytest.importorskip("PIL")

import fastdecode as fd  # noqa: E402
from fastdecode import models  # noqa: E402
from fastdecode.atlas import report  # noqa: E402
from fastdecode.cli import main  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dask_helpers import exploding as _exploding  # noqa: E402
from test_atlas import (grey_images, layer_pages, read_page, tiny_lenet, tiny_rgb,  # noqa: E402
                        write_idx)


def small_graph(seed=4):
    """An RGB graph with padding (patches reach into it): a residual block, a concatenation."""
    rng = np.random.default_rng(seed)
    r = lambda *s: (0.3 * rng.standard_normal(s)).astype(np.float32)  # noqa: E731
    return fd.Network([
        fd.Conv(r(4, 3, 3, 3), r(4), pad=1, name="c1"), fd.ReLU(name="r1"),
        fd.Conv(r(4, 4, 3, 3), r(4), pad=1, name="c2"),
        fd.Add(inputs=("c2", "r1"), name="sum"),
        fd.Pool("max", size=2, name="p"),
        fd.Conv(r(3, 4, 1, 1), name="a", inputs="p"),
        fd.Conv(r(2, 4, 3, 3), pad=1, name="b", inputs="p"),
        fd.Concat(inputs=("a", "b"), name="cat")], input_shape=(3, 16, 16))


def pages(out):
    """{page: its atlas data} of an atlas folder, and the bytes of its image sheets."""
    data = {name: json.loads(read_page(os.path.join(out, name)).json["atlas-data"])
            for name in layer_pages(out)}
    sheets = {}
    for name in sorted(os.listdir(os.path.join(out, "img"))):
        with open(os.path.join(out, "img", name), "rb") as f:
            sheets[name] = f.read()
    return data, sheets


def same(a, b, where="data"):
    """a equals b, numbers to float32 rounding, everything else exactly."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            same(a[k], b[k], "%s.%s" % (where, k))
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for j, (u, v) in enumerate(zip(a, b)):
            same(u, v, "%s[%d]" % (where, j))
    elif isinstance(a, float):
        assert b == pytest.approx(a, rel=2e-4, abs=1e-7), where
    else:
        assert a == b, where


def assert_same_atlas(mem, lazy):
    (dm, sm), (dl, sl) = pages(mem), pages(lazy)
    same(dm, dl)
    assert sm.keys() == sl.keys()
    for name in sm:   # the filter tiles, the top images and patches: the same pictures
        assert sm[name] == sl[name], name


def tied(images, repeats):
    """The images repeated: every score tied ``repeats`` times, across chunk borders."""
    return np.concatenate([images] * repeats)


@pytest.mark.parametrize("display", ["none", "numpy", "dask"])
def test_lenet_atlas_over_a_dask_array_is_the_in_memory_one(tmp_path, display):
    net = tiny_lenet()
    raw = tied(grey_images(11), 3)            # 33 images, chunks of 8: ties across borders
    x = models.preprocess(net, raw)
    labels = np.arange(len(raw)) % 10
    shown = {"none": (None, None), "numpy": (raw, raw),
             "dask": (raw, da.from_array(raw, chunks=5))}[display]
    common = dict(labels=labels, top_k=5, class_names=["c%d" % i for i in range(10)],
                  image_names=["im%d" % i for i in range(len(raw))], progress=False)
    report(net, tmp_path / "mem", images=x, display_images=shown[0], **common)
    with dask.config.set(scheduler="threads", num_workers=2):
        report(net, tmp_path / "lazy", images=da.from_array(x, chunks=8),
               display_images=shown[1], **common)
    assert_same_atlas(tmp_path / "mem", tmp_path / "lazy")


@pytest.mark.parametrize("unpool", ["nearest", "bilinear"])
def test_graph_atlas_with_patches_over_a_dask_array(tmp_path, unpool):
    """A graph with padding: top patches at their positions; "bilinear" correlates the images
    with the decoded filters in the tasks (the linear twin covers box unpoolings only)."""
    net = small_graph()
    rng = np.random.default_rng(9)
    x = rng.standard_normal((18, 3, 16, 16)).astype(np.float32)
    layers = ["c1", "sum", "cat"]
    report(net, tmp_path / "mem", images=x, layers=layers, unpool=unpool, top_k=4,
           progress=False)
    with dask.config.set(scheduler="threads", num_workers=2):
        report(net, tmp_path / "lazy", images=da.from_array(x, chunks=5), layers=layers,
               unpool=unpool, top_k=4, limit=17, progress=False)
        report(net, tmp_path / "all", images=da.from_array(x, chunks=5), layers=layers,
               unpool=unpool, top_k=4, progress=False)
    assert_same_atlas(tmp_path / "mem", tmp_path / "all")
    data, _ = pages(tmp_path / "all")
    assert all(d["patches"] for d in data.values())
    limited, _ = pages(tmp_path / "lazy")
    assert all(d["n_images"] == 17 for d in limited.values())


def test_rgb_chain_over_a_dask_array(tmp_path):
    net = tiny_rgb()
    rng = np.random.default_rng(5)
    raw = rng.integers(0, 256, (20, 3, 20, 20)).astype(np.uint8)
    x = models.preprocess(net, raw)
    report(net, tmp_path / "mem", images=x, display_images=raw, top_k=3, progress=False)
    with dask.config.set(scheduler="threads", num_workers=2):
        report(net, tmp_path / "lazy", images=da.from_array(x, chunks=6),
               display_images=da.from_array(raw, chunks=7), top_k=3, progress=False)
    assert_same_atlas(tmp_path / "mem", tmp_path / "lazy")


def test_the_merge_of_chunks_breaks_ties_by_the_lower_image_index():
    """Chunks' candidates merged: score descending, then the lower image index, whatever the
    order of the chunks' scores; each keeps its own best position."""
    from fastdecode.atlas._analysis import _merge_candidates
    a = (np.array([[5.0, 1.0], [2.0, 1.0]]), np.array([[10, 11], [12, 13]]),
         np.array([[0, 1], [2, 3]]))
    b = (np.array([[5.0, 3.0], [2.0, 1.0]]), np.array([[3, 4], [5, 6]]),
         np.array([[7, 8], [9, 10]]))
    v, i, w = _merge_candidates([a, b], 3)
    np.testing.assert_array_equal(v, [[5, 3], [5, 1], [2, 1]])
    np.testing.assert_array_equal(i, [[3, 4], [10, 6], [5, 11]])
    np.testing.assert_array_equal(w, [[7, 8], [0, 10], [9, 1]])


def test_empty_chunks_and_chunks_over_other_axes(tmp_path):
    net = tiny_lenet()
    x = models.preprocess(net, grey_images(12))
    lazy = da.from_array(x, chunks=((5, 0, 4, 3), (1,), (14, 14), (28,)))
    assert 0 in lazy.chunks[0]
    report(net, tmp_path / "mem", images=x, top_k=3, progress=False)
    with dask.config.set(scheduler="threads", num_workers=2):
        report(net, tmp_path / "lazy", images=lazy, top_k=3, progress=False)
    assert_same_atlas(tmp_path / "mem", tmp_path / "lazy")


@pytest.mark.parametrize("shape, dtype, error, match", [
    ((10, 1, 28, 28), np.complex64, TypeError, "real numbers"),
    ((10, 3, 28, 28), np.float32, ValueError, "3 channels"),
    ((10, 1, 4, 4), np.float32, ValueError, "images"),
    ((10, 2, 1, 28, 28), np.float32, ValueError, "4-D"),
])
def test_bad_dask_arrays_are_refused_before_any_task_runs(tmp_path, shape, dtype, error, match):
    with pytest.raises(error, match=match):
        report(tiny_lenet(), tmp_path / "atlas", images=_exploding(shape, dtype),
               progress=False)
    assert not (tmp_path / "atlas").exists()


def test_bad_lazy_display_images_are_refused(tmp_path):
    net = tiny_lenet()
    x = da.from_array(models.preprocess(net, grey_images(6)), chunks=3)
    with pytest.raises(TypeError, match="uint8"):
        report(net, tmp_path / "a", images=x, display_images=_exploding((6, 28, 28), np.float32),
               progress=False)
    with pytest.raises(ValueError, match="do not match"):
        report(net, tmp_path / "a", images=x, display_images=_exploding((6, 27, 28), np.uint8),
               progress=False)
    with pytest.raises(TypeError, match="give both lazy"):
        report(net, tmp_path / "a", images=np.zeros((6, 1, 28, 28), np.float32),
               display_images=_exploding((6, 28, 28), np.uint8), progress=False)
    assert not (tmp_path / "a").exists()


def test_a_chunk_with_non_finite_values_is_named(tmp_path):
    net = tiny_lenet()
    x = models.preprocess(net, grey_images(12))
    x[7, 0, 3, 3] = np.nan
    with pytest.raises(ValueError, match=r"images 6-11 contains 1 non-finite"):
        report(net, tmp_path / "a", images=da.from_array(x, chunks=6), progress=False)
    assert not (tmp_path / "a").exists()


# --- a local cluster, and the command line ------------------------------------------------------

def test_on_a_local_cluster_and_from_the_command_line(tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    net = tiny_lenet()
    raw = tied(grey_images(20), 2)
    x = models.preprocess(net, raw)
    report(net, tmp_path / "mem", images=x, top_k=4, progress=False)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None,
                                       scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
    try:
        with distributed.Client(cluster) as client:
            with distributed.get_task_stream(client) as stream:
                report(net, tmp_path / "cluster", images=da.from_array(x, chunks=5), top_k=4,
                       progress=False)
            workers = {t["worker"] for t in stream.data}
        assert workers == set(cluster.scheduler_info["workers"]) and len(workers) == 2
        assert_same_atlas(tmp_path / "mem", tmp_path / "cluster")

        fd.save_matconvnet(net, str(tmp_path / "tiny.mat"))
        write_idx(tmp_path / "data", raw, (np.arange(len(raw)) % 10).astype(np.uint8))
        common = ["report", str(tmp_path / "tiny.mat"), "--data", str(tmp_path / "data"),
                  "--top-k", "4", "--no-progress"]
        assert main(common + ["--out", str(tmp_path / "cli-mem")]) == 0
        assert main(common + ["--out", str(tmp_path / "cli-sched"), "--scheduler",
                              cluster.scheduler_address]) == 0
    finally:
        cluster.close()
    assert main(common + ["--out", str(tmp_path / "cli-local"), "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "dask: the scheduler at %s, 2 workers" % cluster.scheduler_address in out
    assert "dask: a local cluster at tcp://127.0.0.1:" in out
    assert_same_atlas(tmp_path / "cli-mem", tmp_path / "cli-sched")
    assert_same_atlas(tmp_path / "cli-mem", tmp_path / "cli-local")


def test_command_line_scheduler_options_need_idx_data(tmp_path, capsys):
    assert main(["report", "lenet-mnist", "--workers", "2", "--out", str(tmp_path / "a")]) == 2
    assert "give --data" in capsys.readouterr().err
    assert main(["report", "lenet-mnist", "--workers", "0", "--data", str(tmp_path),
                 "--out", str(tmp_path / "a")]) == 2
    assert "--workers must be" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
