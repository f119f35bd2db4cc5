"""Output files written whole or not at all: single files, sets of files, an output folder."""

import os
from pathlib import Path

import pytest

from fastdecode import _io


def test_output_directory_moves_the_files_in_at_the_end(tmp_path):
    out = tmp_path / "a" / "b"
    with _io.OutputDirectory(out) as outputs:
        outputs.text("x.txt", "one")
        staged = outputs.path("x.txt")   # the same name twice: a second file
        with open(staged, "w") as f:
            f.write("two")
        outputs.text("n/a.txt", "three")  # made a safe file name
        assert not os.path.exists(out / "x.txt")
        assert len(os.listdir(out)) == 1 and os.listdir(out)[0].startswith(".fastdecode-")
    assert sorted(os.listdir(out)) == ["n_a.txt", "x-2.txt", "x.txt"]
    assert (out / "x-2.txt").read_text() == "two"
    assert outputs.written == [str(out / n) for n in ("x.txt", "x-2.txt", "n_a.txt")]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_output_directory_removes_everything_on_error(error, tmp_path):
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "old.txt").write_text("old")
    for out in (tmp_path / "new" / "deeper", tmp_path / "kept"):
        with pytest.raises(type(error)):
            with _io.OutputDirectory(out) as outputs:
                outputs.text("results.txt", "partial")
                raise error
    assert sorted(os.listdir(tmp_path)) == ["kept"]
    assert os.listdir(tmp_path / "kept") == ["old.txt"]


def test_output_checks(tmp_path):
    (tmp_path / "f").write_text("")
    _io.check_output_dir(tmp_path / "new" / "dir")
    with pytest.raises(ValueError, match="--out must name a directory"):
        _io.check_output_dir("")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        _io.check_output_dir(tmp_path / "f")
    with pytest.raises(NotADirectoryError, match="lies under a file"):
        _io.check_output_dir(tmp_path / "f" / "x")
    _io.check_output_file(tmp_path / "g.png", "--out")
    with pytest.raises(ValueError, match="--save must name a file"):
        _io.check_output_file("", "--save")
    with pytest.raises(IsADirectoryError):
        _io.check_output_file(tmp_path, "--out")
    with pytest.raises(FileNotFoundError):
        _io.check_output_file(tmp_path / "no" / "g.png", "--out")


def test_atomic_paths_appear_together_or_not_at_all(tmp_path):
    files = [(tmp_path / "a.npy", ".npy"), (tmp_path / "b.txt", None)]
    with pytest.raises(RuntimeError):
        with _io.atomic_paths(files) as tmps:
            for t in tmps:
                Path(t).write_text("x")
            raise RuntimeError("midway")
    assert os.listdir(tmp_path) == []
    with _io.atomic_paths(files) as tmps:
        assert [os.path.splitext(t)[1] for t in tmps] == [".npy", ".txt"]
        for t in tmps:
            Path(t).write_text("x")
    assert sorted(os.listdir(tmp_path)) == ["a.npy", "b.txt"]
