"""Shared fixtures: the installed (compiled) package and the real data beside the project."""

import os
from pathlib import Path

import pytest

try:
    import fastdecode._engine._correlation  # noqa: F401  the compiled core must be importable
except ImportError as exc:  # an unbuilt source tree shadows the installed package
    raise pytest.UsageError(
        "fastdecode's compiled kernels cannot be imported (%s). Install the package first: "
        "pip install '.[test]' and run pytest (not python -m pytest) from the project root." % exc)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FASTDECODE_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data():
    """The directory of real fixtures beside the project; skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("real fixtures not found at %s" % SHARED_DATA)
    return SHARED_DATA
