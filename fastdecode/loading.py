"""Open a model file by what it holds, not by its name: MatConvNet (MAT v5, v7.3) or ONNX."""

import os

from ._io import open_regular
from ._onnx_import import looks_like_onnx

__all__ = ["load", "model_format"]

_HDF5 = b"\x89HDF\r\n\x1a\n"


def _head(path, n=1024):
    """The first ``n`` bytes of a regular file (FIFOs and devices refused without blocking)."""
    with open_regular(os.fspath(path), "model file", ValueError) as f:
        return f.read(n)


def model_format(path):
    """What a model file holds, judged by its first bytes.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    {"matconvnet", "onnx"}
        ``"matconvnet"`` for a MAT file (v5, v7 or v7.3), ``"onnx"`` for a file that starts as a
        serialised ONNX model does.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
        From the file system.
    ValueError
        For a file that is neither (its first bytes named), an empty file, or one that is not
        a regular file.

    Examples
    --------
    >>> from importlib import resources
    >>> import fastdecode as fd
    >>> fd.model_format(resources.files("fastdecode.models") / "lenet-mnist.mat")
    'matconvnet'
    """
    head = _head(path)
    if not head:
        raise ValueError("%s: the file is empty, not a model" % os.fspath(path))
    if head.startswith(b"MATLAB") or head.startswith(_HDF5) or head[512:520] == _HDF5:
        return "matconvnet"
    if looks_like_onnx(head):
        return "onnx"
    raise ValueError("%s: not a MatConvNet (MAT) or ONNX model file; it starts with %r"
                     % (os.fspath(path), head[:16]))


def load(path, *, input_shape=None, memory_limit=None):
    """A network from a model file, whatever its format: MatConvNet (MAT v5, v7 or v7.3) or
    ONNX, told apart by content (the file's name and extension do not matter).

    Parameters
    ----------
    path : str or os.PathLike
        The model file.
    input_shape : (int, int, int), optional
        (C, H, W) of the images, for an ONNX model whose file leaves the size open (see
        :func:`fastdecode.load_onnx`); MatConvNet files take their size from the file and
        refuse this argument.
    memory_limit : int, optional
        Bytes the file's arrays may take once read (default 2 GiB); a file that declares more
        is refused before the memory is spent.

    Returns
    -------
    fastdecode.Network
        The network.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
        From the file system.
    MatConvNetError, OnnxError
        (ValueErrors) for a file of either format that is not a readable network, naming the
        file and the problem.
    ValueError
        For a file of neither format.
    ImportError
        For an ONNX file when the ``onnx`` package is missing (``pip install
        "fastdecode[onnx]"``).

    Examples
    --------
    >>> from importlib import resources
    >>> import fastdecode as fd
    >>> net = fd.load(resources.files("fastdecode.models") / "lenet-mnist.mat")
    >>> net.conv_layers
    ['layer1', 'layer3', 'layer5', 'layer7']
    """
    kind = model_format(path)
    limit = {} if memory_limit is None else {"memory_limit": memory_limit}
    if kind == "onnx":
        from . import load_onnx
        return load_onnx(path, input_shape=input_shape, **limit)
    if input_shape is not None:
        raise ValueError("%s is a MatConvNet file, whose input size is the network's own: "
                         "input_shape applies to ONNX models" % os.fspath(path))
    from .matconvnet import load_matconvnet
    return load_matconvnet(path, **limit)
