"""The MAT reader against crafted files: every allocation charged at its cost before it is made,
the work bounded, one error type. Files that could take gigabytes are loaded in a child process
limited in address space and time (hostile_mat.run_isolated)."""

import os
import stat
import struct
import sys

import numpy as np
import pytest

from fastdecode._matfile import MatConvNetError, StructArray, read_mat

sys.path.insert(0, os.path.dirname(__file__))
import hostile_mat as H  # noqa: E402

MiB, GiB = 2**20, 2**30

try:
    import h5py
except ImportError:  # pragma: no cover
    h5py = None
needs_h5py = pytest.mark.skipif(h5py is None, reason="h5py is not installed")


def refused_fast(result, *, peak=64 * MiB, match=None):
    """A refusal within the child's time limit (a slower run comes back as a "timeout") and
    within ``peak`` bytes of memory."""
    assert result["outcome"] == "MatConvNetError", result
    assert result["peak"] < peak, result
    if match is not None:
        assert match in result["message"], result


# --- objects charged at their cost ---------------------------------------------------------------

BOMBS = {
    # a few hundred bytes to 1.5 MB each; each would take gigabytes as Python objects
    "struct_records": (H.struct_records, 2**24),
    "empty_cells": (H.empty_cells, 2**24),
    "scalar_cells": (H.scalar_cells, 2**23),
    "utf8_chars": (H.utf8_chars, 2**27),
}


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bombs")
    return {name: build(root / (name + ".mat"), n) for name, (build, n) in BOMBS.items()}


@pytest.mark.parametrize("name", sorted(BOMBS))
@pytest.mark.parametrize("memory_limit", [None, 256 * MiB])
def test_object_bombs_are_refused_before_allocation(bombs, name, memory_limit):
    assert bombs[name].stat().st_size < 2 * MiB
    refused_fast(H.run_isolated(bombs[name], memory_limit), match="memory limit")


@pytest.mark.parametrize("build,n", [(H.struct_records, 250_000), (H.empty_cells, 50_000),
                                     (H.scalar_cells, 30_000), (H.utf8_chars, 6_000_000)])
def test_objects_within_the_budget_load_within_what_was_charged(tmp_path, build, n):
    path = build(tmp_path / "f.mat", n)
    r = H.run_isolated(path, 256 * MiB, timeout=30)
    assert r["outcome"] == "loaded", r
    assert r["charged"] > 8 * MiB  # the objects' cost, not 8 bytes each
    assert r["peak"] <= r["charged"] + 16 * MiB, r


def test_record_count_is_read_back(tmp_path):
    value = read_mat(H.struct_records(tmp_path / "r.mat", 1000))["net"]
    assert isinstance(value, StructArray) and value.shape == (1000, 1) and value.size == 1000
    cells = read_mat(H.empty_cells(tmp_path / "c.mat", 10))["net"]
    assert cells.shape == (10, 1) and all(c.shape == (0, 0) for c in cells.ravel())


# --- arrays: no second copy, class checked before the data -------------------------------------

def test_numeric_array_peak_is_what_was_charged(tmp_path):
    path = H.double_matrix(tmp_path / "d.mat", 25_000, 1000)  # 200 MB of zeros in 200 KB
    r = H.run_isolated(path, 256 * MiB)
    assert r["outcome"] == "loaded", r
    assert 200e6 <= r["charged"] < 210e6
    assert r["peak"] <= r["charged"] + 16 * MiB, r


def test_expected_class_is_checked_before_the_data_is_read(tmp_path):
    path = H.double_matrix(tmp_path / "d.mat", 25_000, 1000)
    r = H.run_isolated(path, 256 * MiB, expect={"net": "1x1 struct"}, timeout=10)
    refused_fast(r, peak=16 * MiB, match="25000x1000 double, not a 1x1 struct")
    assert r["worked"] < 1 * MiB  # nothing inflated beyond the header


def test_expect_forms(tmp_path):
    path = H.double_matrix(tmp_path / "d.mat", 2, 3)
    assert read_mat(path, expect={"net": "double"})["net"].shape == (2, 3)
    assert read_mat(path, expect={"net": ("struct", "numeric")})["net"].shape == (2, 3)
    assert read_mat(path, expect={"other": "struct"})["net"].shape == (2, 3)
    seen = []
    read_mat(path, expect={"net": lambda cls, dims: seen.append((cls, dims))})
    assert seen == [("double", (2, 3))]
    with pytest.raises(MatConvNetError, match="2x3 double, not a cell or a 1x1 struct"):
        read_mat(path, expect={"net": ("cell", "1x1 struct")})
    with pytest.raises(MatConvNetError, match="too small"):
        read_mat(path, expect={"net": lambda cls, dims: "too small"})
    with pytest.raises(ValueError, match="unknown kind"):
        read_mat(path, expect={"net": "structure"})


def test_conv_network_weights_peak(tmp_path):
    # 3x3x512x10923 single: 201 MB of filters, loaded by the reader with a 256 MiB budget
    path = H.conv_network(tmp_path / "conv.mat", 3, 3, 512, 10923)
    r = H.run_isolated(path, 256 * MiB)
    assert r["outcome"] == "loaded", r
    assert r["peak"] <= r["charged"] + 16 * MiB, r
    # the loader reorders the filters to (K, C, H, W) in the reader's array: no second copy
    whole = H.run_isolated(path, 256 * MiB, loader=True)
    assert whole["outcome"] == "loaded", whole
    assert whole["peak"] <= whole["charged"] + 32 * MiB, whole


# --- work bounded ---------------------------------------------------------------------------------

def test_skipped_fields_count_against_the_work_limit(tmp_path):
    # 13 momentum fields of 200 MB of zeros each: 2.6 GB to inflate from a 2.6 MB file
    path = H.conv_network(tmp_path / "m.mat", 3, 3, 1, 1, momentum=13,
                          momentum_dims=(1000, 1000, 50))
    assert path.stat().st_size < 4 * MiB
    r = H.run_isolated(path, 256 * MiB, loader=True, timeout=30)
    refused_fast(r, match="work limit")
    assert "momentum" in r["message"]


def test_within_the_work_limit_skipped_fields_load(tmp_path):
    path = H.conv_network(tmp_path / "m.mat", 3, 3, 1, 2, momentum=2, momentum_dims=(1000, 1000))
    r = H.run_isolated(path, 256 * MiB, loader=True)
    assert r["outcome"] == "loaded", r


def test_unwanted_variables_are_not_inflated(tmp_path):
    net = H.struct_([], "net")
    state = H.matrix(H.MX_DOUBLE, [125_000, 1000], "state",
                     [H.tag(H.MI_DOUBLE, 8 * 125 * 10**6), H.Zeros(8 * 125 * 10**6)])
    path = H.write(tmp_path / "s.mat", state, net)
    r = H.run_isolated(path, 64 * MiB, names=["net"], timeout=20)
    assert r["outcome"] == "loaded", r
    assert r["worked"] < 1 * MiB  # the 1 GB 'state' was passed over, not inflated
    assert list(read_mat(path, ["net"], memory_limit=64 * MiB)) == ["net"]


def test_repeated_variable_is_refused(tmp_path):
    path = H.repeated(tmp_path / "r.mat", "net", 5)
    with pytest.raises(MatConvNetError, match="'net' appears twice"):
        read_mat(path)


# --- v7.3 -------------------------------------------------------------------------------------------

@needs_h5py
@pytest.mark.parametrize("cls,dims,match", [
    ("cell", [2**28, 1], "marked empty"),
    ("double", [2**28, 1], "marked empty"),
    ("struct", [16384, 16384], "memory limit"),
    ("cell", [0, 2**62, 2**62], "corrupt dimensions"),
])
def test_v73_empty_markers(tmp_path, cls, dims, match):
    path = H.v73_empty(tmp_path / "e.mat", cls, dims)
    refused_fast(H.run_isolated(path, None), match=match)


@needs_h5py
def test_v73_empty_struct_with_a_few_records(tmp_path):
    value = read_mat(H.v73_empty(tmp_path / "e.mat", "struct", [3, 1]))["net"]
    assert value.shape == (3, 1) and value.records == [{}, {}, {}]
    assert read_mat(H.v73_empty(tmp_path / "c.mat", "cell", [0, 5]))["net"].shape == (0, 5)


@needs_h5py
@pytest.mark.parametrize("cls,empty,dtype", [("char", False, "u2"), ("uint16", False, "u2"),
                                             ("double", True, "u8"), ("cell", False, "u2")])
def test_v73_unwritten_chunked_datasets(tmp_path, cls, empty, dtype):
    path = H.v73_unwritten(tmp_path / "u.mat", cls, 2**29, empty=empty, dtype=dtype)
    assert path.stat().st_size < 100_000
    refused_fast(H.run_isolated(path, 256 * MiB))


@needs_h5py
def test_v73_references_are_followed_once(tmp_path):
    path = H.v73_reference_chain(tmp_path / "chain.mat", 40)
    assert path.stat().st_size < 100_000
    r = H.run_isolated(path, 256 * MiB, timeout=10)   # hours before references were memoised
    assert r["outcome"] == "loaded", r
    value = read_mat(path)["net"]
    assert value.shape == (1, 2) and value[0, 0] is value[0, 1]


@needs_h5py
def test_v73_expect(tmp_path):
    path = H.v73_unwritten(tmp_path / "u.mat", "double", 2**29, dtype="f8")
    with pytest.raises(MatConvNetError, match="536870912 double, not a 1x1 struct"):
        read_mat(path, expect={"net": "1x1 struct"})


# --- one error type, bounded and escaped messages --------------------------------------------------

def test_char_codes_beyond_unicode_become_replacement_characters(tmp_path):
    path = H.chars_stored_as(tmp_path / "c.mat", H.MI_UINT64, [2**64 - 1, 65, 0xD800])
    assert read_mat(path)["net"] == "\ufffdA\ud800"
    path = H.chars_stored_as(tmp_path / "d.mat", H.MI_DOUBLE, [np.nan, np.inf, -5, 66.0])
    assert read_mat(path)["net"] == "\ufffd\ufffd\ufffdB"


@pytest.mark.parametrize("dims,match", [
    ([1] * 65, "dimensions declares"),
    ([0, 2**31 - 1, 2**31 - 1, 2**31 - 1], "more elements than MATLAB allows"),
    ([1] * 262_144, "dimensions declares"),
    ([2, -1], "corrupt dimensions"),
])
def test_bad_dimensions(tmp_path, dims, match):
    path = H.dims_array(tmp_path / "d.mat", dims)
    with pytest.raises(MatConvNetError, match=match) as info:
        read_mat(path)
    assert len(str(info.value)) < 600


def test_control_characters_are_escaped(tmp_path):
    path = H.named(tmp_path / "n.mat", b"ne\x1b[2Jt\n")
    with pytest.raises(MatConvNetError) as info:
        read_mat(path, expect={"ne\x1b[2Jt\n": "struct"})
    text = str(info.value)
    assert "\x1b" not in text and "\n" not in text and "ne\\x1b[2Jt\\n" in text


def test_messages_are_bounded(tmp_path):
    deep = H.matrix(H.MX_DOUBLE, [2, 2], "", [H.element(H.MI_DOUBLE, b"\0" * 8)])
    for i in range(60):
        deep = H.struct_(["f%d_" % i + "y" * 25], records=[[deep]])
    path = H.write(tmp_path / "deep.mat", H.struct_(["a"], "net", records=[[deep]]))
    with pytest.raises(MatConvNetError, match="declares MATLAB shape 2x2") as info:
        read_mat(path)
    assert len(str(info.value)) < 800 and "..." in str(info.value)


def test_file_system_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_mat(tmp_path / "absent.mat")
    with pytest.raises(IsADirectoryError):
        read_mat(tmp_path)
    fifo = tmp_path / "fifo.mat"
    os.mkfifo(fifo)
    refused_fast(H.run_isolated(fifo, None, timeout=20), match="not a regular file")
    if os.geteuid() != 0:
        path = H.named(tmp_path / "p.mat", b"net")
        path.chmod(0)
        try:
            with pytest.raises(PermissionError):
                read_mat(path)
        finally:
            path.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_truncations_and_corrupt_streams(tmp_path):
    path = H.conv_network(tmp_path / "c.mat", 3, 3, 2, 4)
    whole = path.read_bytes()
    for cut in range(0, len(whole), 7):
        part = tmp_path / "cut.mat"
        part.write_bytes(whole[:cut])
        try:
            read_mat(part, memory_limit=16 * MiB)
        except MatConvNetError:
            pass
    bad = bytearray(whole)
    bad[140:148] = b"\xff" * 8  # inside the zlib stream
    part.write_bytes(bytes(bad))
    with pytest.raises(MatConvNetError, match=str(part)):
        read_mat(part)
    assert struct.unpack("<I", whole[128:132])[0] == H.MI_COMPRESSED
