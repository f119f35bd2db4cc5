"""Dataset passes over dask arrays: the same results as the in-memory passes, on Dask's threaded
scheduler and on a local cluster of two worker processes (127.0.0.1 only); lazy IDX files; the
command line's --scheduler and --workers; bad input refused before any task runs."""

import gzip
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

import fastdecode as fd  # noqa: E402
from fastdecode import _dask, cli, datasets, models  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dask_helpers import exploding as _exploding  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


# --- fixtures -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster():
    """Two worker processes, one thread each, on the loopback address, no dashboard."""
    c = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                 host="127.0.0.1", dashboard_address=None,
                                        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def mnist(shared_data):
    """The MNIST test set (images preprocessed for lenet-mnist) and the network."""
    net = models.load("lenet-mnist")
    ds = datasets.load_directory(shared_data / "mnist", split="test")
    return net, models.preprocess(net, ds.images), ds.labels.astype(np.int64)


def threaded():
    return dask.config.set(scheduler="threads", num_workers=2)


# --- the threaded scheduler: exactly the in-memory pass ----------------------------------------

def test_eq3_over_a_dask_array_is_the_in_memory_pass(mnist):
    net, x, _ = mnist
    x = x[:1500]
    ref = fd.reconstruction_error(net, x, "layer5", batch_size=250, n_threads=1,
                                  progress=False)
    # chunks of the batch size: every image is computed as in memory
    with threaded():
        got = fd.reconstruction_error(net, da.from_array(x, chunks=(250, 1, 28, 28)), "layer5",
                                      batch_size=250)
    np.testing.assert_allclose(got.per_image, ref.per_image, rtol=1e-6)
    np.testing.assert_allclose([got.mean, got.std], [ref.mean, ref.std], rtol=1e-7)
    assert got.n_constant == ref.n_constant
    np.testing.assert_allclose(got.per_filter, ref.per_filter, rtol=1e-7)
    # chunks unlike the batches (and split over the other axes too): the same to rounding
    with threaded():
        odd = fd.reconstruction_error(net, da.from_array(x, chunks=(333, 1, 14, 28)), "layer5")
    np.testing.assert_allclose(odd.per_image, ref.per_image, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(odd.mean, ref.mean, rtol=1e-7)


def test_table1_over_a_dask_array(mnist):
    net, x, _ = mnist
    x = x[:600]
    ref = fd.table1(net, x, methods=("nearest", "bicubic"), bias=True, batch_size=200, n_threads=1,
                    progress=False)
    with threaded():
        got = fd.table1(net, da.from_array(x, chunks=200), methods=("nearest", "bicubic"),
                        bias=True, batch_size=200)
    assert list(got) == list(ref)
    for key in ref:
        np.testing.assert_allclose(got[key].per_image, ref[key].per_image, rtol=1e-6)
        np.testing.assert_allclose(got[key].per_filter, ref[key].per_filter, rtol=1e-7)


def test_scores_and_everything_from_them_over_a_dask_array(mnist):
    net, x, labels = mnist
    x, labels = x[:1200], labels[:1200]
    ref = fd.filter_scores(net, x, "layer5", batch_size=300, n_threads=1,
                          progress=False)
    lazy = fd.filter_scores(net, da.from_array(x, chunks=300), "layer5", batch_size=300)
    assert _dask.is_lazy_scores(lazy) and lazy.layer == "layer5"
    with threaded():
        np.testing.assert_allclose(lazy.network.compute(), ref.network, rtol=1e-6)
        np.testing.assert_allclose(lazy.decoded.compute(), ref.decoded, rtol=1e-6)
        for k in (1, 9, 301):
            got, want = fd.top_images(lazy, k), fd.top_images(ref, k)
            for a, b in zip(got, want):
                np.testing.assert_array_equal(a, b)
        for a, b in zip(fd.max_activation_matrix(lazy), fd.max_activation_matrix(ref)):
            np.testing.assert_array_equal(a, b)
        top = fd.filter_scores(net, da.from_array(x, chunks=500))
        acc, want = fd.classifier_accuracy(top, labels), fd.classifier_accuracy(
            fd.filter_scores(net, x, progress=False), labels)
    assert (acc.decoded, acc.network) == (want.decoded, want.network)
    np.testing.assert_array_equal(acc.decoded_predictions, want.decoded_predictions)


def test_top_k_merge_breaks_ties_by_the_lower_image_index():
    """Scores with many ties, chunked unevenly: the merged candidates equal a stable sort."""
    rng = np.random.default_rng(0)
    N, K = 997, 6
    network = rng.integers(0, 4, (N, K)).astype(np.float64)   # ties everywhere
    decoded = rng.integers(0, 50, (N, K)).astype(np.float64)
    decoded[::7] = 49.0                                          # the maximum, tied many times
    ref = fd.evaluation.FilterScores(network, decoded, "x")
    with threaded():
        for chunks in (7, 97, N):
            lazy = fd.evaluation.FilterScores(da.from_array(network, chunks=(chunks, 2)),
                                              da.from_array(decoded, chunks=(chunks, 3)), "x")
            for k in (1, 5, 64):
                for a, b in zip(fd.top_images(lazy, k), fd.top_images(ref, k)):
                    np.testing.assert_array_equal(a, b)
            for a, b in zip(fd.max_activation_matrix(lazy), fd.max_activation_matrix(ref)):
                np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="k=998"):
        fd.top_images(lazy, N + 1)


# --- a local cluster of two processes ------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:Sending large graph")  # the images, sent from memory
def test_passes_on_a_local_cluster_equal_the_in_memory_ones(mnist, cluster):
    net, x, labels = mnist
    n, chunk = 3000, 500
    x, labels = x[:n], labels[:n]
    error = fd.reconstruction_error(net, x, "layer5", batch_size=chunk, n_threads=1,
                                 progress=False)
    scores = fd.filter_scores(net, x, "layer5", batch_size=chunk, n_threads=1,
                                 progress=False)
    tops = fd.top_images(scores, 9)
    top_scores = fd.filter_scores(net, x, batch_size=chunk, n_threads=1,
                                 progress=False)
    acc = fd.classifier_accuracy(top_scores, labels)
    xd = da.from_array(x, chunks=chunk)
    with distributed.Client(cluster) as client:
        with distributed.get_task_stream(client) as stream:
            got = fd.reconstruction_error(net, xd, "layer5", batch_size=chunk)
            lazy = fd.filter_scores(net, xd, "layer5", batch_size=chunk)
            got_tops = fd.top_images(lazy, 9)
            got_scores = lazy.network.compute()
            got_acc = fd.classifier_accuracy(fd.filter_scores(net, xd, batch_size=chunk),
                                             labels)
        workers = {t["worker"] for t in stream.data}
    assert workers == set(cluster.scheduler_info["workers"]) and len(workers) == 2
    np.testing.assert_allclose(got.per_image, error.per_image, rtol=1e-6)
    np.testing.assert_allclose([got.mean, got.std], [error.mean, error.std], rtol=1e-7)
    np.testing.assert_allclose(got.per_filter, error.per_filter, rtol=1e-7)
    np.testing.assert_allclose(got_scores, scores.network, rtol=1e-6)
    for a, b in zip(got_tops, tops):
        np.testing.assert_array_equal(a, b)
    assert (got_acc.decoded, got_acc.network) == (acc.decoded, acc.network)


def _results(path):
    return json.loads((path / "results.json").read_text())


def _assert_same_results(a, b):
    assert a.keys() == b.keys() and a["images"] == b["images"]
    for key in a["table1"]:
        for stat in ("mean", "std"):
            np.testing.assert_allclose(b["table1"][key][stat], a["table1"][key][stat],
                                       rtol=1e-8)
    assert a["classifier"] == b["classifier"]
    assert a["top_images"] == b["top_images"] and a["self_consistency"] == b["self_consistency"]


def test_cli_on_a_cluster_gives_the_results_of_the_in_process_pass(shared_data, cluster,
                                                                  tmp_path, capsys):
    data = str(shared_data / "mnist")
    common = ["evaluate", "lenet-mnist", "--data", data, "--start", "100", "--limit", "300",
              "--unpool", "bilinear", "--no-progress"]
    assert cli.main(common + ["--out", str(tmp_path / "mem")]) == 0
    assert cli.main(common + ["--out", str(tmp_path / "sched"), "--scheduler",
                              cluster.scheduler_address]) == 0
    assert cli.main(common + ["--out", str(tmp_path / "local"), "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "dask: the scheduler at %s, 2 workers" % cluster.scheduler_address in out
    assert "dask: a local cluster at tcp://127.0.0.1:" in out
    mem = _results(tmp_path / "mem")
    _assert_same_results(mem, _results(tmp_path / "sched"))
    _assert_same_results(mem, _results(tmp_path / "local"))
    figures = sorted(p.name for p in (tmp_path / "mem").iterdir())
    assert sorted(p.name for p in (tmp_path / "local").iterdir()) == figures


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape, dtype, error, match", [
    ((10, 1, 28, 28), np.complex64, TypeError, "real numbers"),
    ((10, 1, 28, 28), object, TypeError, "real numbers"),
    ((10, 28, 28), np.float32, ValueError, "4-D"),
    ((10, 3, 28, 28), np.float32, ValueError, "3 channels"),
    ((0, 1, 28, 28), np.float32, ValueError, "empty"),
    ((10, 1, 4, 4), np.float32, ValueError, "images"),
])
def test_bad_dask_arrays_are_refused_before_any_task_runs(shape, dtype, error, match):
    net = models.load("lenet-mnist")
    x = _exploding(shape, dtype)
    for run in (lambda: fd.reconstruction_error(net, x, "layer5"),
                lambda: fd.filter_scores(net, x),
                lambda: fd.table1(net, x)):
        with pytest.raises(error, match=match):
            run()


def test_unknown_chunk_sizes_are_refused():
    net = models.load("lenet-mnist")
    x = da.zeros((10, 1, 28, 28), chunks=5, dtype=np.float32)
    x = x[x[:, 0, 0, 0] == 0]
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        fd.reconstruction_error(net, x, "layer5")


def test_a_chunk_with_non_finite_values_is_named():
    net = models.load("lenet-mnist")
    x = np.zeros((40, 1, 28, 28), np.float32)
    x[25, 0, 3, 3] = np.nan
    with threaded(), pytest.raises(ValueError, match="images 20-39 contains 1 non-finite"):
        fd.reconstruction_error(net, da.from_array(x, chunks=20), "layer5")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_scheduler_that_does_not_answer_is_a_clear_error(capsys):
    address = "tcp://127.0.0.1:%d" % _free_port()
    code = cli.main(["evaluate", "lenet-mnist", "--data", "nowhere", "--scheduler", address])
    err = capsys.readouterr().err
    # the data is checked after the connection: the scheduler's error comes first
    assert code == 2 and "no Dask scheduler answered at %s within %d s" % (
        address, _dask.CONNECT_TIMEOUT) in err


def test_scheduler_options_are_checked(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["evaluate", "lenet-mnist", "--data", "x", "--workers", "2", "--scheduler",
                  "tcp://127.0.0.1:1"])
    assert exc.value.code == 2 and "not allowed with" in capsys.readouterr().err
    assert cli.main(["evaluate", "lenet-mnist", "--data", "x", "--workers", "0"]) == 2
    assert "--workers must be" in capsys.readouterr().err


# --- lazy IDX files -----------------------------------------------------------------------------

def _sample_paths():
    from importlib import resources
    root = resources.files("fastdecode.datasets")
    return (root / "fashion-mnist-t10k-1000-images-idx3-ubyte.gz",
            root / "fashion-mnist-t10k-1000-labels-idx1-ubyte.gz")


def test_lazy_idx_reads_the_same_images(tmp_path):
    images_gz, labels_gz = (str(p) for p in _sample_paths())
    eager = datasets.load_idx(images_gz, labels_gz)
    raw = tmp_path / "images-idx3-ubyte"
    raw.write_bytes(gzip.decompress(Path(images_gz).read_bytes()))
    for path in (images_gz, raw):
        lazy = datasets.load_idx(path, labels_gz, lazy=True, chunks=300)
        assert isinstance(lazy.images, da.Array) and lazy.images.chunks[0] == (300,) * 3 + (100,)
        np.testing.assert_array_equal(lazy.labels, eager.labels)
        with threaded():
            np.testing.assert_array_equal(lazy.images.compute(), eager.images)
            np.testing.assert_array_equal(lazy.images[290:610:3, 5].compute(),
                                          eager.images[290:610:3, 5])
    assert datasets.load_idx(raw, lazy=True).images.numblocks == (1, 1, 1)


def test_lazy_idx_refuses_bad_files(tmp_path):
    images_gz, _ = _sample_paths()
    data = gzip.decompress(Path(images_gz).read_bytes())
    short = tmp_path / "short"
    short.write_bytes(data[:-5])
    with pytest.raises(ValueError, match="short: the IDX header declares"):
        datasets.load_idx(short, lazy=True)
    cut = tmp_path / "cut.gz"
    cut.write_bytes(gzip.compress(data)[:-100])
    with pytest.raises(ValueError, match="cut.gz"):
        datasets.load_idx(cut, lazy=True).images.compute(scheduler="sync")
    with pytest.raises(ValueError, match="magic number"):
        datasets.load_idx(_sample_paths()[1], lazy=True)
    with pytest.raises(ValueError, match="lazy=True"):
        datasets.load_idx(images_gz, chunks=10)
    with pytest.raises(ValueError, match="chunks must be"):
        datasets.load_idx(images_gz, lazy=True, chunks=0)


def test_a_pass_over_a_lazy_file_is_the_pass_over_the_loaded_one(shared_data):
    net = models.load("lenet-mnist")
    lazy = datasets.load_directory(shared_data / "mnist", lazy=True, chunks=400).images[:1200]
    eager = datasets.load_directory(shared_data / "mnist").images[:1200]
    x = lazy.map_blocks(lambda b: models.preprocess(net, b), dtype=net.dtype,
                        chunks=(lazy.chunks[0], (1,), (28,), (28,)), new_axis=1)
    with threaded():
        got = fd.reconstruction_error(net, x, "layer3", batch_size=400)
    ref = fd.reconstruction_error(net, models.preprocess(net, eager), "layer3", batch_size=400, n_threads=1,
                                  progress=False)
    np.testing.assert_allclose(got.per_image, ref.per_image, rtol=1e-6)


# --- dask stays optional ---------------------------------------------------------------------

def _python(code):
    """Run ``code`` in a child importing the package under test, from outside the project
    root (whose unbuilt fastdecode/ would shadow the installed one)."""
    parent = os.path.dirname(os.path.dirname(os.path.abspath(fd.__file__)))
    env = dict(os.environ, PYTHONPATH=parent)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=tempfile.gettempdir(), timeout=120)


def test_import_fastdecode_does_not_import_dask():
    r = _python("import sys, fastdecode, fastdecode.evaluation, fastdecode.datasets, "
                "fastdecode.cli, fastdecode._app, fastdecode._pipeline\n"
                "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                "('dask', 'distributed')))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_without_dask_numpy_passes_work_and_lazy_asks_for_the_extra():
    r = _python(
        "import sys\n"
        "sys.modules['dask'] = None\n"
        "from fastdecode import datasets, models\n"
        "import fastdecode as fd\n"
        "net = models.load('lenet-mnist')\n"
        "s = datasets.fashion_sample()\n"
        "r = fd.reconstruction_error(net, models.preprocess(net, s.images[:20]), 'layer3',\n"
        "                            progress=False)\n"
        "print(r.per_image.shape)\n"
        "from importlib import resources\n"
        "root = resources.files('fastdecode.datasets')\n"
        "try:\n"
        "    datasets.load_idx(root / 'fashion-mnist-t10k-1000-images-idx3-ubyte.gz', lazy=True)\n"
        "except ImportError as exc:\n"
        "    print(exc)\n")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "(20,)"
    assert 'pip install "fastdecode[distributed]"' in lines[1] and "lazy=True" in lines[1]


