"""IDX files from strangers: non-regular files, lying headers, corrupt gzip streams and mutated
files are loaded or refused with IDXError naming the file, without allocating what the file does
not hold."""

import gzip
import os
import struct
import threading
import tracemalloc
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from fastdecode import datasets
from fastdecode.datasets import IDXError, load_directory, load_idx

CASES = settings(max_examples=300, deadline=None, derandomize=True,
                 suppress_health_check=list(HealthCheck))


def idx_bytes(array, magic=None):
    array = np.asarray(array, dtype=np.uint8)
    if magic is None:
        magic = 0x0800 | array.ndim
    return (struct.pack(">I", magic) + b"".join(struct.pack(">I", s) for s in array.shape)
            + array.tobytes())


def test_devices_are_refused_as_not_regular():
    with pytest.raises(IDXError, match="/dev/zero: not a regular file"):
        load_idx("/dev/zero")
    with pytest.raises(IDXError, match="not a regular file"):
        load_idx(os.devnull)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "images-fifo"
    os.mkfifo(fifo)
    outcome = []

    def load():
        try:
            load_idx(fifo)
        except BaseException as exc:  # reported below
            outcome.append(exc)
    t = threading.Thread(target=load, daemon=True)
    t.start()
    t.join(20)
    assert not t.is_alive(), "load_idx blocked on a FIFO"
    assert isinstance(outcome[0], IDXError) and "images-fifo" in str(outcome[0])


def test_missing_and_directory_paths_keep_their_os_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_idx(tmp_path / "nowhere")
    with pytest.raises(IsADirectoryError):
        load_idx(tmp_path)


def test_every_refusal_is_one_documented_type(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    good = idx_bytes(images)
    files = {
        "short": good[:-1],
        "long": good + b"\0",
        "magic": idx_bytes(images, magic=0x0D03),
        "empty": b"",
        "gz-cut": gzip.compress(good)[:-9],
        "gz-junk": gzip.compress(good) + b"junk!",
        "gz-bad-deflate": gzip.compress(good)[:10] + b"\xff" * 20,
        "zero-width": struct.pack(">IIII", 0x0803, 5, 0, 4),
    }
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(IDXError) as info:
            load_idx(path)
        assert isinstance(info.value, ValueError) and str(path) in str(info.value), name
    labels = tmp_path / "labels"
    labels.write_bytes(idx_bytes(np.zeros(3, np.uint8)))
    (tmp_path / "images").write_bytes(good)
    with pytest.raises(IDXError, match="3 labels"):
        load_idx(tmp_path / "images", labels)


@pytest.mark.parametrize("gz", [False, True])
def test_declared_sizes_beyond_the_file_are_refused_before_allocation(tmp_path, gz):
    # 1 GB declared (within max_bytes), a few bytes held
    data = struct.pack(">IIII", 0x0803, 1000, 1000, 1000) + b"\1" * 64
    path = tmp_path / ("big.gz" if gz else "big")
    path.write_bytes(gzip.compress(data) if gz else data)
    tracemalloc.start()
    try:
        with pytest.raises(IDXError, match="big.*(truncated|more than a gzip file)"):
            load_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20


def test_huge_dimensions_against_max_bytes(tmp_path):
    path = tmp_path / "huge"
    path.write_bytes(struct.pack(">IIII", 0x0803, 2**32 - 1, 2**32 - 1, 2**32 - 1))
    with pytest.raises(IDXError, match="huge.*max_bytes"):
        load_idx(path)
    small = tmp_path / "small"
    small.write_bytes(idx_bytes(np.zeros((4, 8, 8), np.uint8)))
    with pytest.raises(IDXError, match="max_bytes"):
        load_idx(small, max_bytes=255)
    assert load_idx(small, max_bytes=256).images.shape == (4, 8, 8)
    with pytest.raises(ValueError, match="max_bytes"):
        load_idx(small, max_bytes=-1)


@pytest.mark.parametrize("gz", [False, True])
def test_data_is_read_once_into_the_result(tmp_path, gz):
    images = np.random.default_rng(0).integers(0, 256, (64, 128, 128), dtype=np.uint8)  # 1 MiB
    path = tmp_path / "images"
    data = idx_bytes(images)
    path.write_bytes(gzip.compress(data, 1) if gz else data)
    tracemalloc.start()
    try:
        got = load_idx(path).images
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(got, images)
    assert peak < images.nbytes + datasets._CHUNK + 2**19   # the result, one chunk, gzip's state


def test_directory_loading_reports_the_same_type(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\0\0\x08\x03" + b"\0" * 5)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(1, np.uint8)))
    with pytest.raises(IDXError, match="t10k-images-idx3-ubyte.*truncated"):
        load_directory(tmp_path)


# --- mutations --------------------------------------------------------------------------------

def _mutate(data, rng):
    """One structural or byte-level edit of an IDX file (raw bytes)."""
    data = bytearray(data)
    kind = rng.integers(0, 6)
    if kind == 0 and data:                       # flip bytes
        for _ in range(int(rng.integers(1, 4))):
            data[int(rng.integers(0, len(data)))] ^= int(rng.integers(1, 256))
    elif kind == 1:                              # truncate
        del data[int(rng.integers(0, len(data) + 1)):]
    elif kind == 2:                              # append or insert junk
        at = int(rng.integers(0, len(data) + 1))
        data[at:at] = rng.integers(0, 256, int(rng.integers(1, 32)), dtype=np.uint8).tobytes()
    elif kind == 3 and len(data) >= 8:           # rewrite one declared size
        which = int(rng.integers(1, max(2, min(4, len(data) // 4))))
        value = int(rng.choice([0, 1, 2**31, 2**32 - 1, int(rng.integers(0, 1 << 20))]))
        data[4 * which:4 * which + 4] = struct.pack(">I", value)
    elif kind == 4 and len(data) >= 4:           # another type or number of dimensions
        data[2] = int(rng.choice([0x08, 0x09, 0x0B, 0x0D, 0x0E, int(rng.integers(0, 256))]))
        data[3] = int(rng.integers(0, 256))
    else:                                        # delete a stretch
        a = int(rng.integers(0, len(data) + 1))
        del data[a:a + int(rng.integers(1, 16))]
    return bytes(data)


def _mutate_gzip(data, rng):
    """Edits of the compressed stream: the member's bytes, its CRC and length, or its end."""
    packed = bytearray(gzip.compress(_mutate(data, rng) if rng.integers(0, 2) else data))
    kind = rng.integers(0, 4)
    if kind == 0:
        packed[int(rng.integers(10, len(packed)))] ^= int(rng.integers(1, 256))
    elif kind == 1:
        del packed[int(rng.integers(2, len(packed))):]
    elif kind == 2:
        packed += gzip.compress(b"more") if rng.integers(0, 2) else b"\0" * 8
    return bytes(packed)


def _check(path, ndim):
    try:
        out = datasets._read_idx(path, ndim, "images" if ndim == 3 else "labels", 1 << 24)
    except IDXError as exc:
        assert str(path) in str(exc)
        return "refused"
    assert out.dtype == np.uint8 and out.ndim == ndim and out.flags.c_contiguous
    return "loaded"


@pytest.mark.parametrize("ndim", [3, 1])
def test_mutated_files_load_or_raise_idx_error(tmp_path, ndim):
    rng0 = np.random.default_rng(3)
    shape = (5, 4, 3) if ndim == 3 else (11,)
    seed_file = idx_bytes(rng0.integers(0, 256, shape, dtype=np.uint8))
    path = tmp_path / "case-idx"
    outcomes = {"loaded": 0, "refused": 0}

    @CASES
    @given(st.integers(0, 2**32 - 1), st.booleans())
    def case(seed, gz):
        rng = np.random.default_rng(seed)
        path.write_bytes(_mutate_gzip(seed_file, rng) if gz else _mutate(seed_file, rng))
        outcomes[_check(path, ndim)] += 1
    case()
    assert outcomes["refused"] > 0 and outcomes["loaded"] > 0, outcomes


def test_corrupt_deflate_data_is_an_idx_error(tmp_path):
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = raw.compress(idx_bytes(np.zeros((2, 2, 2), np.uint8))) + raw.flush()
    member = b"\x1f\x8b\x08\0\0\0\0\0\0\xff" + bytes(b ^ 0x55 for b in body) + b"\0" * 8
    path = tmp_path / "bad-deflate.gz"
    path.write_bytes(member)
    with pytest.raises(IDXError, match="bad-deflate.gz"):
        load_idx(path)
