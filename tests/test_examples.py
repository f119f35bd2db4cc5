"""The Examples sections of the docstrings run as written (they use the shipped models)."""

import doctest
import importlib
import tempfile
from importlib import resources

import pytest

MODULES = ["fastdecode.ops", "fastdecode.decoding", "fastdecode.network", "fastdecode.layers",
           "fastdecode._config", "fastdecode.evaluation", "fastdecode._scores", "fastdecode.plotting",
           "fastdecode.matconvnet", "fastdecode._matconvnet_save", "fastdecode.loading",
           "fastdecode.graph_layers",
           "fastdecode.datasets", "fastdecode.models", "fastdecode.paper", "fastdecode.atlas",
           "fastdecode._torch_import"]

#: Modules whose examples need an optional dependency.
NEEDS = {"fastdecode._torch_import": "torch"}


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    if name in NEEDS:
        pytest.importorskip(NEEDS[name])
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the examples' folders go there
    for model in ("lenet-mnist", "lenet-fashion"):
        if not (resources.files("fastdecode.models") / (model + ".mat")).is_file():
            pytest.skip("shipped model %s not built" % model)
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0
    if name != "fastdecode.paper":
        assert result.attempted > 0
