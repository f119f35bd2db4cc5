"""The command's start-up: an interrupt while the package is imported, or while the arguments
are parsed, exits with status 130 and one line, no traceback."""

import os
import subprocess
import sys
import tempfile
import textwrap

import pytest

import fastdecode
from fastdecode import cli

_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fastdecode.__file__)))


#: A child's code that makes importing the module named %r raise KeyboardInterrupt.
_INTERRUPT = """
import sys

class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == %r:
            raise KeyboardInterrupt
        return None

sys.meta_path.insert(0, Interrupt())
"""


def _run(args, first=()):
    """Run Python with ``args``, the package (after the folders ``first``) on its path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(list(first) + [_PACKAGE_PARENT,
                                                       env.get("PYTHONPATH", "")])
    env.pop("FASTDECODE_DEBUG", None)
    # run outside the project root, whose unbuilt fastdecode/ would shadow the installed one
    return subprocess.run([sys.executable] + list(args), capture_output=True, text=True,
                          timeout=120, env=env, cwd=tempfile.gettempdir())


def _run_child(code):
    return _run(["-c", textwrap.dedent(code)])


@pytest.mark.parametrize("module", ["scipy.linalg", "fastdecode.matconvnet", "fastdecode.cli"])
def test_interrupt_while_the_package_is_imported(module):
    # Ctrl-C lands while ``module`` is being imported by the entry point
    r = _run_child(_INTERRUPT % module + textwrap.dedent("""
        import _fastdecode_launcher
        assert "fastdecode" not in sys.modules
        sys.exit(_fastdecode_launcher.main(["info", "lenet-mnist"]))
    """))
    assert r.returncode == 130, r
    assert r.stderr == "fastdecode: interrupted\n", r.stderr
    assert r.stdout == ""


def test_the_launcher_runs_the_command(capsys):
    import _fastdecode_launcher
    assert _fastdecode_launcher.main(["info", "lenet-mnist"]) == 0
    assert "layer1" in capsys.readouterr().out


def test_the_console_script_is_the_launcher():
    tomllib = pytest.importorskip("tomllib")
    pyproject = os.path.join(_PACKAGE_PARENT, "pyproject.toml")
    if not os.path.exists(pyproject):
        pytest.skip("not a source checkout")
    with open(pyproject, "rb") as f:
        config = tomllib.load(f)
    assert config["project"]["scripts"]["fastdecode"] == "_fastdecode_launcher:main"
    assert "_fastdecode_launcher" in config["tool"]["setuptools"]["py-modules"]


def test_interrupt_while_the_arguments_are_parsed(monkeypatch, capsys):
    def interrupted():
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["info", "lenet-mnist"]) == 130
    assert capsys.readouterr().err == "fastdecode: interrupted\n"


def test_usage_errors_still_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["decode"])
    assert info.value.code == 2


@pytest.mark.parametrize("module", ["scipy.linalg", "fastdecode.matconvnet", "fastdecode.cli"])
def test_interrupt_while_python_m_fastdecode_starts(tmp_path, module):
    """``python -m fastdecode``: Python imports the package before its ``__main__`` runs; Ctrl-C
    landing in that import (or in ``__main__``'s own) exits 130 with one line."""
    (tmp_path / "sitecustomize.py").write_text(_INTERRUPT % module)
    r = _run(["-m", "fastdecode", "info", "lenet-mnist"], first=[str(tmp_path)])
    assert r.returncode == 130, r
    assert r.stderr == "fastdecode: interrupted\n", r.stderr
    assert r.stdout == ""


def test_python_m_fastdecode_runs_the_command():
    r = _run(["-m", "fastdecode", "info", "lenet-mnist"])
    assert r.returncode == 0, r
    assert "layer1" in r.stdout
