"""Mutations of the real MatConvNet files: every case is read in-process with a 64 MiB budget and
must give a dict or a MatConvNetError, within a time bound a watchdog enforces."""

import os
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

sys.path.insert(0, os.path.dirname(__file__))
import matfuzz  # noqa: E402

CASES = settings(max_examples=100, deadline=None, derandomize=True,
                 suppress_health_check=list(HealthCheck))


def real_files(shared_data, suffix):
    root = shared_data / "matconvnet"
    files = sorted(p for p in root.glob("*.mat") if p.name.endswith(suffix))
    if not files:
        pytest.skip("no real files")
    return files


@pytest.mark.parametrize("suffix", ["v5.mat", "v5-legacy.mat"])
def test_v5_mutations(shared_data, tmp_path, suffix):
    files = real_files(shared_data, suffix)
    datas = [p.read_bytes() for p in files]

    @CASES
    @given(st.integers(0, 2**32 - 1))
    def case(seed):
        rng = np.random.default_rng(seed)
        data, _ = matfuzz.mutate_v5(datas[seed % len(datas)], rng)
        path = tmp_path / "case.mat"
        path.write_bytes(data)
        matfuzz.run_case(path)
    case()


def test_v73_mutations(shared_data, tmp_path):
    pytest.importorskip("h5py")
    files = real_files(shared_data, "v73.mat")

    @settings(max_examples=25, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.integers(0, 2**32 - 1))
    def case(seed):
        rng = np.random.default_rng(seed)
        path = tmp_path / "case.mat"
        matfuzz.mutate_v73(files[seed % len(files)], path, rng)
        matfuzz.run_case(path, seconds=20.0)
    case()
