"""fastdecode: filter decoding with substitution (Rafegas & Vanrell) with a compiled core.

Decode what the filters of a trained convolutional network encode, in image space, and measure
how well the decoded filters predict the network's own responses.
"""

import sys as _sys

try:
    from ._version import __version__
    from .ops import UNPOOL_METHODS, correlate, pool, relu, substitute, unpool
    from ._config import show_config
    from .decoding import DecodedFilters, decode, decode_all, decode_with_bias, decoded_bias
    from .matconvnet import MatConvNetError, load_matconvnet, save_matconvnet
    from .loading import load, model_format
    from .evaluation import (ReconstructionError, classifier_accuracy, filter_scores,
                             max_activation_matrix, reconstruction_error, self_consistency, table1,
                             threshold_filters, top_images)
    from .layers import LRN, BatchNorm, Conv, Dropout, Layer, Pool, ReLU, Softmax
    from .network import Network
    from .activations import (GELU, Clip, HardSigmoid, HardSwish, LeakyReLU, PReLU, ReLU6, SiLU,
                              Sigmoid, Tanh)
    from .graph_layers import Add, Concat, Gate, GlobalPool, Linear, Upsample
    from ._onnx_import import OnnxError, load_onnx
    from ._torch_import import from_torch
except KeyboardInterrupt:
    # ``python -m fastdecode`` imports the package before its ``__main__`` runs, with
    # sys.argv[0] still "-m": an interrupt then ends the command as the console script's
    # launcher does, with one line and status 130, not a traceback.
    if _sys.argv[:1] == ["-m"]:
        try:
            _sys.stderr.write("fastdecode: interrupted\n")
            _sys.stderr.flush()
        except (OSError, ValueError):
            pass
        raise SystemExit(130) from None
    raise

__all__ = [
    "Conv", "Pool", "ReLU", "BatchNorm", "Dropout", "LRN", "Softmax", "Layer", "Network",
    "Add", "Concat", "Gate", "GlobalPool", "Linear", "Upsample",
    "LeakyReLU", "Clip", "ReLU6", "PReLU", "Sigmoid", "Tanh", "SiLU", "HardSwish", "HardSigmoid",
    "GELU",
    "decode", "decode_all", "decoded_bias", "decode_with_bias", "DecodedFilters",
    "correlate", "substitute", "unpool", "pool", "relu", "UNPOOL_METHODS", "show_config",
    "reconstruction_error", "ReconstructionError", "table1", "filter_scores",
    "max_activation_matrix", "classifier_accuracy", "top_images", "self_consistency",
    "threshold_filters",
    "load_matconvnet", "save_matconvnet", "MatConvNetError", "load_onnx", "OnnxError",
    "load", "model_format",
    "from_torch",
    "report",
]

#: Subpackages imported on first use, so that ``import fastdecode`` stays light.
_LAZY_SUBMODULES = ("models", "datasets", "atlas")


def __getattr__(name):
    import importlib
    if name in _LAZY_SUBMODULES:
        return importlib.import_module("." + name, __name__)
    if name == "report":  # the atlas (fastdecode.atlas.report), imported on first use
        return importlib.import_module(".atlas", __name__).report
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


def __dir__():
    return sorted(set(globals()) | set(_LAZY_SUBMODULES) | {"report"})
