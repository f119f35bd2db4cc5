"""decode_all(lazy=True): decoded filters as dask arrays chunked over filters, equal to decode's
on the threaded scheduler and on a local cluster of two worker processes (127.0.0.1 only)."""

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

import fastdecode as fd  # noqa: E402
from fastdecode import models  # noqa: E402


def _graph(seed=3):
    """A residual block, a concatenation and an upsampling (the top layer has phases)."""
    rng = np.random.default_rng(seed)
    r = rng.standard_normal
    return fd.Network([
        fd.Conv(r((5, 2, 3, 3)), r(5), pad=1, name="c1"),
        fd.ReLU(name="r1"),
        fd.Conv(r((5, 5, 3, 3)), r(5), pad=1, name="c2"),
        fd.Add(inputs=("c2", "r1"), name="sum"),
        fd.Pool("max", size=2, name="p"),
        fd.Conv(r((3, 5, 1, 1)), name="a", inputs="p"),
        fd.Conv(r((4, 5, 3, 3)), pad=1, name="b", inputs="p"),
        fd.Concat(inputs=("a", "b"), name="cat"),
        fd.Upsample(2, "bilinear", name="up"),
        fd.Conv(r((6, 7, 3, 3)), name="top")])


def _check(lazy, net, names, unpool):
    assert list(lazy) == names
    for name in names:
        got = lazy[name]
        assert isinstance(got, da.Array) and got.dtype == net.dtype
        want = fd.decode(net, name, unpool=unpool)
        assert got.shape == want.shape
        np.testing.assert_allclose(got.compute(), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("unpool", ["nearest", "bicubic"])
def test_lazy_decode_all_of_a_chain_equals_decode(unpool):
    net = models.load("lenet-mnist").astype(np.float64)
    with dask.config.set(scheduler="threads", num_workers=2):
        lazy = fd.decode_all(net, unpool=unpool, lazy=True, chunks=7)
        assert lazy["layer5"].chunks[0] == (7,) * 71 + (3,)
        _check(lazy, net, net.conv_layers, unpool)
        one = fd.decode_all(net, layers="layer3", lazy=True, chunks=50)
        assert one["layer3"].numblocks[0] == 1
        np.testing.assert_array_equal(one["layer3"].compute(),
                                      fd.decode(net, "layer3", filters=np.arange(50)))


def test_lazy_decode_all_of_a_graph_equals_decode():
    net = _graph()
    names = ["c1", "c2", "sum", "cat", "top"]
    with dask.config.set(scheduler="threads", num_workers=2):
        lazy = fd.decode_all(net, layers=names[::-1], lazy=True, chunks=2)
        _check(lazy, net, names, "nearest")
        default = fd.decode_all(net, lazy=True)
        assert list(default) == net.conv_layers


def test_lazy_decode_all_on_a_local_cluster():
    distributed = pytest.importorskip("distributed")
    net = models.load("lenet-mnist")
    want = fd.decode_all(net)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None)
    try:
        with distributed.Client(cluster) as client:
            with distributed.get_task_stream(client) as stream:
                lazy = fd.decode_all(net, lazy=True, chunks=25)
                got = dask.compute(lazy)[0]
            workers = {t["worker"] for t in stream.data}
            assert workers == set(cluster.scheduler_info["workers"]) and len(workers) == 2
    finally:
        cluster.close()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4,
                                   atol=1e-5 * np.abs(want[name]).max())


def test_lazy_decode_all_refuses_what_it_cannot_do(tmp_path):
    net = models.load("lenet-mnist")
    with pytest.raises(ValueError, match="give one of them"):
        fd.decode_all(net, lazy=True, out=tmp_path)
    with pytest.raises(ValueError, match="give lazy=True too"):
        fd.decode_all(net, chunks=4)
    with pytest.raises(ValueError, match="chunks"):
        fd.decode_all(net, lazy=True, chunks=0)
    with pytest.raises(ValueError, match="'layer2' is a pool layer"):
        fd.decode_all(net, layers="layer2", lazy=True)
    with pytest.raises(ValueError, match="unpool"):
        fd.decode_all(net, lazy=True, unpool="lanczos")
