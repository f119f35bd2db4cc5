"""The Sphinx site builds without a warning from the installed package's docstrings."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import fastdecode

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("numpydoc")
    if not (DOCS / "conf.py").is_file():
        pytest.skip("no docs/ beside the tests")
    # the package the tests import (installed or built in place), not an unbuilt source tree
    package_parent = str(Path(fastdecode.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=package_parent)
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (tmp_path / "html" / "api.html").is_file()
    api = (tmp_path / "html" / "api.html").read_text(encoding="utf-8")
    for name in ("fastdecode.decode", "fastdecode.Network", "fastdecode.correlate",
                 "fastdecode.reconstruction_error", "fastdecode.load_matconvnet"):
        assert 'id="%s"' % name in api, name
