"""Concurrent calls from several Python threads: the bits of one call alone, and BLAS's thread
counts left as they were (the user's included)."""

import threading

import numpy as np
import pytest

import fastdecode as fd
from fastdecode import datasets, models

threadpoolctl = pytest.importorskip("threadpoolctl")


def _counts():
    """Thread count of every BLAS library loaded, by path."""
    return {lib["filepath"]: lib["num_threads"] for lib in threadpoolctl.threadpool_info()
            if lib.get("user_api") == "blas"}


def _kernel_blas():
    """The threadpoolctl controllers of the BLAS the kernels call."""
    from fastdecode._engine import blas
    return [lib for lib, _ in blas._find_libraries()]


@pytest.fixture(scope="module")
def lenet():
    net = models.load("lenet-mnist")
    x = models.preprocess(net, datasets.fashion_sample().images[:200])
    return net, x


@pytest.fixture(scope="module")
def wide():
    """float64 shapes whose GEMMs OpenBLAS splits by its thread count (MNK well above its
    single-thread threshold): bits would change if BLAS ran threaded inside a kernel."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 48, 30, 30))
    filters = rng.standard_normal((64, 48, 3, 3))
    maps = rng.standard_normal((6, 64, 14, 14))
    return x, filters, maps


def _work(lenet, wide):
    net, x = lenet
    xw, fw, mw = wide
    err = fd.reconstruction_error(net, x, "layer5", progress=False, n_threads=2)
    D = fd.decode(net, "layer3", n_threads=2)
    everything = fd.decode_all(net, n_threads=2)
    y = fd.correlate(x, D, stride=net.stride("layer3"), pad=net.padding("layer3"), n_threads=2)
    r = net.forward(x, n_threads=2)
    yw = fd.correlate(xw, fw, pad=1, n_threads=2)
    sw = fd.substitute(mw, fw, stride=2, n_threads=2)
    return [err.per_image, D, y, r, yw, sw] + [everything[k] for k in sorted(everything)]


def _run_concurrently(fn, n):
    results, errors = [None] * n, []
    barrier = threading.Barrier(n)

    def target(i):
        try:
            barrier.wait()
            results[i] = fn()
        except BaseException as exc:  # reported below, in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


@pytest.mark.parametrize("user_limit", [None, 3])
def test_four_threads_give_the_bits_of_one_and_leave_blas_as_it_was(lenet, wide, user_limit):
    limits = (threadpoolctl.threadpool_limits(user_limit, user_api="blas")
              if user_limit is not None else None)
    try:
        before = _counts()
        if user_limit is not None:
            assert set(before.values()) == {user_limit}
        alone = _work(lenet, wide)
        assert _counts() == before
        for _ in range(2):
            for got in _run_concurrently(lambda: _work(lenet, wide), 4):
                assert len(got) == len(alone)
                for a, b in zip(alone, got):
                    a, b = np.asarray(a), np.asarray(b)
                    assert a.dtype == b.dtype and np.array_equal(a, b)
            assert _counts() == before
    finally:
        if limits is not None:
            limits.restore_original_limits()


def test_results_do_not_depend_on_the_blas_thread_count(wide):
    xw, fw, mw = wide
    runs = []
    for n in (1, 3):
        with threadpoolctl.threadpool_limits(n, user_api="blas"):
            runs.append((fd.correlate(xw, fw, pad=1, n_threads=2),
                         fd.substitute(mw, fw, stride=2, n_threads=2)))
    for a, b in zip(*runs):
        assert np.array_equal(a, b)


def _hold(entered, release):
    from fastdecode._engine import blas
    with blas.single_threaded():
        entered.set()
        assert release.wait(30)


def test_one_threads_exit_does_not_release_the_hold_of_another():
    """A enters, B enters, A leaves: B's kernel still runs on one BLAS thread; B leaves: the
    count the process had is back (with a per-call limit, A restored it under B, and B then
    left it at one thread for good)."""
    libs = _kernel_blas()
    if not libs:
        pytest.skip("no BLAS library found by threadpoolctl")
    with threadpoolctl.threadpool_limits(3, user_api="blas"):
        before = _counts()
        a_in, a_go, b_in, b_go = (threading.Event() for _ in range(4))
        a = threading.Thread(target=_hold, args=(a_in, a_go))
        b = threading.Thread(target=_hold, args=(b_in, b_go))
        a.start()
        try:
            assert a_in.wait(30)
            b.start()
            assert b_in.wait(30)
            assert {lib.get_num_threads() for lib in libs} == {1}
            a_go.set()
            a.join()
            assert {lib.get_num_threads() for lib in libs} == {1}   # B still inside
        finally:
            a_go.set()
            b_go.set()
            a.join()
            if b.is_alive() or b.ident is not None:
                b.join()
        assert _counts() == before


def test_the_hold_touches_only_the_blas_the_kernels_call():
    libs = _kernel_blas()
    others = [lib for lib in threadpoolctl.ThreadpoolController().lib_controllers
              if lib.user_api == "blas"
              and lib.filepath not in {mine.filepath for mine in libs}]
    if not libs or not others:
        pytest.skip("numpy and scipy share one BLAS library here")
    from fastdecode._engine import blas
    with threadpoolctl.threadpool_limits(3, user_api="blas"):
        with blas.single_threaded():
            assert {lib.get_num_threads() for lib in libs} == {1}
            assert {lib.get_num_threads() for lib in others} == {3}
        assert {lib.get_num_threads() for lib in libs} == {3}


def test_the_hold_is_released_when_a_kernel_raises():
    from fastdecode._engine import blas
    before = _counts()
    with pytest.raises(RuntimeError):
        with blas.single_threaded():
            raise RuntimeError("kernel failed")
    assert _counts() == before
    assert blas._holders == 0


def test_kernels_set_no_thread_count_with_their_own_blas(lenet, wide, monkeypatch):
    """With fastdecode's own OpenBLAS (set to one thread when loaded), a kernel changes no thread
    count: not its own library's, not numpy's or scipy's, not even while it runs."""
    from fastdecode._engine import blas
    blas.kernel_library()
    if not blas._own:
        pytest.skip("scipy-openblas32 is not installed: the kernels use scipy's BLAS")
    assert blas._own[2]() == 1
    calls = []
    monkeypatch.setattr(blas, "_libraries", tuple(
        (lib, lambda n, calls=calls: calls.append(n)) for lib, _ in blas._find_libraries()))
    before = _counts()
    assert before[blas._own[0]] == 1
    scipy_blas = blas._gemm_library()
    if scipy_blas is not None:
        assert scipy_blas != blas._own[0]      # a library of its own, not scipy's
    with blas.single_threaded():
        assert _counts() == before
    _work(lenet, wide)
    assert calls == [] and _counts() == before


_CHILD = """
import sys
import numpy as np
import fastdecode as fd
from fastdecode._engine import blas
rng = np.random.default_rng(3)
x = rng.standard_normal((4, 48, 30, 30)).astype(sys.argv[2])
w = rng.standard_normal((64, 48, 3, 3)).astype(sys.argv[2])
m = rng.standard_normal((6, 64, 14, 14)).astype(sys.argv[2])
np.savez(sys.argv[1], y=fd.correlate(x, w, pad=1, n_threads=2),
         s=fd.substitute(m, w, stride=2, n_threads=2),
         d=fd.decode(fd.models.load("lenet-mnist"), "layer5", n_threads=2),
         lib=np.array(blas.describe()))
"""


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_scipys_blas_when_asked_gives_the_same_results(tmp_path, dtype):
    """FASTDECODE_BLAS=scipy: the kernels call scipy's BLAS (the fallback where scipy-openblas32
    has no wheel) and agree with the default to rounding."""
    import os
    import subprocess
    import sys
    import tempfile
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fd.__file__)))
    out = {}
    for choice in ("own", "scipy"):
        env["FASTDECODE_BLAS"] = choice
        path = str(tmp_path / (choice + ".npz"))
        subprocess.run([sys.executable, "-c", _CHILD, path, dtype], env=env, check=True,
                       cwd=tempfile.gettempdir(), timeout=300)
        with np.load(path) as f:
            out[choice] = {k: f[k] for k in f.files}
    assert str(out["scipy"]["lib"]).startswith("scipy's BLAS")
    rtol = 1e-4 if dtype == "float32" else 1e-12
    for key in ("y", "s", "d"):
        a, b = out["own"][key], out["scipy"][key]
        assert a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(a).max())
