"""pytest-benchmark setup: run with ``pytest benchmarks/`` (the default ``pytest`` collects tests/).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE pytest benchmarks/ [--full-vgg]

Every benchmark stores in ``extra_info`` its seconds (best round), GFLOP/s, the GFLOP/s of a BLAS
GEMM of equal FLOPs measured in the same run (same dtype, same threads) and the fraction of it.
--full-vgg adds the full-size VGG-16 runs (tens of seconds each).
"""

import os
import sys

import numpy as np
import pytest

pytest.importorskip("pytest_benchmark")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _util  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--full-vgg", action="store_true", default=False,
                     help="also run the full-size VGG-16 benchmarks (heavy)")


def pytest_report_header(config):
    return "fastdecode benchmarks on: %s" % _util.machine()


@pytest.fixture
def full_vgg(request):
    if not request.config.getoption("--full-vgg"):
        pytest.skip("full-size VGG-16 run: pass --full-vgg")


@pytest.fixture
def measure(benchmark):
    """measure(fn, flops, dtype, threads, rounds=3): benchmark fn and record rates in extra_info."""

    def run(fn, flops, dtype, threads, rounds=3, **info):
        result = benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=0)
        stats = getattr(benchmark, "stats", None)
        if stats is not None:
            best = stats.stats.min
            gemm = _util.gemm_rate(dtype, threads, flops)
            benchmark.extra_info.update(
                dtype=np.dtype(dtype).name, threads=threads, gflop=flops / 1e9, seconds=best,
                gflops=flops / best / 1e9, gemm_gflops=gemm / 1e9,
                gemm_fraction=flops / best / gemm, **info)
        return result

    return run
