"""ONNX models as networks: the guarded reading of the file and its tensors, and
:func:`load_onnx`.

The file is read whole (after checking that it is a regular file within the memory budget)
and parsed with the ``onnx`` package without its external data; every tensor's declared size
is charged to the budget before its array is made, and external data is read here, only from
files inside the model's folder. The graph is then walked node by node by
:class:`fastdecode._onnx_ops.Converter`.
"""

import errno
import os
import stat

import numpy as np

from ._matfile import file_memory_limit
from ._onnx_fold import DTYPES
from ._validation import format_bytes

__all__ = ["load_onnx", "OnnxError", "looks_like_onnx"]

_INSTALL = 'pip install "fastdecode[onnx]"'
_EXTERNAL = 1   # TensorProto.EXTERNAL


class OnnxError(ValueError):
    """An ONNX file that cannot be read as a network: the message names the file, the node (its
    name, op type and opset) and the problem."""


def _onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ImportError("reading ONNX files needs the onnx package: %s" % _INSTALL) from exc
    return onnx


class Budget:
    """Bytes the arrays made from one file may take; refuses beyond, before the memory is
    spent."""

    def __init__(self, path, limit):
        self.path = path
        self.limit = int(limit)
        self.used = 0

    def charge(self, nbytes, what):
        if self.used + nbytes > self.limit:
            raise OnnxError(
                "%s: %s needs %s, beyond the memory limit of %s (%s already read); the file is "
                "refused before that memory is spent. Pass a larger memory_limit if the file is "
                "trusted." % (self.path, what, format_bytes(nbytes), format_bytes(self.limit),
                              format_bytes(self.used)))
        self.used += nbytes


def _fail(path, message):
    error = OnnxError("%s: %s" % (path, message))
    error.__suppress_context__ = True
    return error


def _regular_size(path, what, fd=None):
    """The size of a regular file (by path or open descriptor), refusing anything else."""
    mode = os.fstat(fd) if fd is not None else os.stat(path)
    if stat.S_ISDIR(mode.st_mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory, not %s" % what, path)
    if not stat.S_ISREG(mode.st_mode):
        raise _fail(path, "not a regular file (a FIFO, socket or device); %s is read only from "
                          "a regular file" % what)
    return mode.st_size


def read_bytes(path, limit, what="an ONNX file"):
    """The whole file, refusing what is not a regular file (without blocking on it) or larger
    than ``limit`` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
                     | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "ONNX file not found", path) from None
    with os.fdopen(fd, "rb") as f:
        size = _regular_size(path, what, f.fileno())
        if size == 0:
            raise _fail(path, "the file is empty, not an ONNX model")
        if size > limit:
            raise _fail(path, "the file is %s, beyond the memory limit of %s; it is refused "
                              "before it is read. Pass a larger memory_limit if the file is "
                              "trusted." % (format_bytes(size), format_bytes(limit)))
        data = f.read(size + 1)
    if len(data) != size:
        raise _fail(path, "the file changed size while it was read")
    return data


def looks_like_onnx(head):
    """Whether ``head``, a file's first bytes (at least 3), looks like an ONNX model: a
    protobuf ModelProto that starts with its IR version (field 1, a small varint) followed by
    another of its fields, as every exporter writes it. A hint for choosing a reader by
    content; :func:`load_onnx` still checks the whole file."""
    # field 2 producer_name, 3 producer_version, 4 domain, 5 model_version, 6 doc_string,
    # 7 graph, 8 opset_import, 14 metadata_props
    return (len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] <= 0x3f
            and head[2] in (0x12, 0x1a, 0x22, 0x28, 0x32, 0x3a, 0x42, 0x72))


def parse_model(path, data):
    """The ModelProto of ``data`` (the file's bytes), or OnnxError."""
    onnx = _onnx()
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError, or a RuntimeError from its C++ parser
        raise _fail(path, "not an ONNX model: the protobuf cannot be parsed (%s); the file "
                          "is truncated, corrupted or of another format" % (exc,)) from None
    if not model.HasField("graph") or model.ir_version <= 0 or not model.opset_import:
        raise _fail(path, "not an ONNX model: no graph, IR version or opset (a truncated file, "
                          "or another format that happens to parse)")
    g = model.graph
    names = [o.domain for o in model.opset_import]
    names += [v.name for v in list(g.input) + list(g.output)] + [t.name for t in g.initializer]
    for n in g.node:
        names += [n.name, n.op_type, n.domain] + list(n.input) + list(n.output)
    if not all(isinstance(v, str) for v in names):
        raise _fail(path, "names in the graph are not valid UTF-8 text (a corrupted file)")
    return model


class TensorReader:
    """Initializers and Constant values as numpy arrays, every size checked first."""

    def __init__(self, path, budget):
        self.path = path
        self.folder = os.path.dirname(os.path.abspath(path))
        self.budget = budget
        self._sizes = {}

    def array(self, t, where):
        """The numpy array of TensorProto ``t`` (``where``: how the messages name it)."""
        if t.data_type not in DTYPES:
            raise _fail(self.path, "%s has data type %d, which is not supported (numeric types "
                                   "only)" % (where, t.data_type))
        if len(t.dims) > 32 or any(d < 0 for d in t.dims):
            raise _fail(self.path, "%s declares an invalid shape %s" % (where, list(t.dims)))
        if t.HasField("segment"):
            raise _fail(self.path, "%s is segmented, which is not supported" % where)
        dtype = np.dtype(DTYPES[t.data_type])
        count = 1
        for d in t.dims:
            count *= int(d)
        nbytes = count * dtype.itemsize
        self.budget.charge(nbytes, "%s %s (%s)" % (where, tuple(t.dims), dtype.name))
        if t.data_location == _EXTERNAL:
            raw = self._external(t, nbytes, where)
        elif t.raw_data:
            raw = t.raw_data
            if len(raw) != nbytes:
                raise _fail(self.path, "%s declares %s %s (%d bytes) but holds %d bytes of raw "
                                       "data" % (where, tuple(t.dims), dtype.name, nbytes, len(raw)))
        else:
            return self._typed(t, count, dtype, where)
        return np.frombuffer(raw, dtype=dtype).reshape(tuple(t.dims)).astype(
            dtype.newbyteorder("="), copy=False)

    def _typed(self, t, count, dtype, where):
        from onnx import numpy_helper
        field = {1: "float_data", 11: "double_data", 7: "int64_data", 12: "uint64_data",
                 13: "uint64_data"}.get(t.data_type, "int32_data")
        have = len(getattr(t, field))
        if have != count:
            raise _fail(self.path, "%s declares %s (%d values) but holds %d in %s"
                        % (where, tuple(t.dims), count, have, field))
        try:
            return numpy_helper.to_array(t)
        except Exception as exc:
            raise _fail(self.path, "%s cannot be read: %s" % (where, exc)) from None

    def _external(self, t, nbytes, where):
        info = {e.key: e.value for e in t.external_data}
        location = info.get("location", "")
        if not location:
            raise _fail(self.path, "%s is external data without a location" % where)
        if "\x00" in location or os.path.isabs(location) or location.startswith(("/", "\\")) \
                or os.path.splitdrive(location)[0]:
            raise _fail(self.path, "%s: external data location %r is an absolute path; external "
                                   "data is read only from the model's folder %s"
                        % (where, location, self.folder))
        parts = location.replace("\\", "/").split("/")
        if ".." in parts:
            raise _fail(self.path, "%s: external data location %r leaves the model's folder %s; "
                                   "it is refused" % (where, location, self.folder))
        full = os.path.join(self.folder, *parts)
        real_folder = os.path.realpath(self.folder)
        real = os.path.realpath(full)
        if os.path.commonpath([real_folder, real]) != real_folder:
            raise _fail(self.path, "%s: external data location %r resolves to %s, outside the "
                                   "model's folder %s (a symbolic link out); it is refused"
                        % (where, location, real, real_folder))
        try:
            offset = int(info.get("offset", "0"))
            length = int(info["length"]) if "length" in info else None
        except ValueError:
            raise _fail(self.path, "%s: external data offset/length are not integers: %r"
                        % (where, info)) from None
        if offset < 0 or (length is not None and length != nbytes):
            raise _fail(self.path, "%s declares %d bytes but its external data says offset %d, "
                                   "length %s" % (where, nbytes, offset, length))
        try:
            fd = os.open(real, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
                         | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise _fail(self.path, "%s: external data file %r not found in %s"
                        % (where, location, self.folder)) from None
        with os.fdopen(fd, "rb") as f:
            size = _regular_size(real, "external data", f.fileno())
            if offset + nbytes > size:
                raise _fail(self.path, "%s: external data file %r holds %d bytes, too few for "
                                       "%d bytes at offset %d (truncated?)"
                            % (where, location, size, nbytes, offset))
            f.seek(offset)
            raw = f.read(nbytes)
        if len(raw) != nbytes:
            raise _fail(self.path, "%s: external data file %r changed while it was read"
                        % (where, location))
        return raw


def load_onnx(path, *, input_shape=None, memory_limit=None):
    """A network from an ONNX file, read with the ``onnx`` package alone.

    The graph is walked for a fixed input size: constant subgraphs (weights, shapes computed
    for a ``Reshape``, ``ConstantOfShape`` fills) are folded, and every node that computes on
    the images becomes one of the library's layers (:class:`~fastdecode.Conv`,
    :class:`~fastdecode.BatchNorm`, :class:`~fastdecode.Add`, :class:`~fastdecode.Linear`,
    ...); small subgraphs become the layer they compute (``x * Sigmoid(x)`` a
    :class:`~fastdecode.SiLU`, ``Mul`` + ``Add`` by per-channel constants a
    :class:`~fastdecode.BatchNorm`, ``Pad`` by zeros the next layer's padding). A graph whose
    input is NHWC, read by a ``Transpose`` to NCHW, gives a network of NCHW images. See
    :doc:`/onnx` for the ops covered.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.onnx`` file. External data (``.onnx.data``) is read from the file's folder only.
    input_shape : (int, int, int), optional
        (C, H, W) of the network's (NCHW) images: required when the file leaves a size
        dynamic, checked against the file otherwise. An entry None takes the file's own
        (``(None, 320, 320)`` fixes only the height and width).
    memory_limit : int, optional
        Bytes the file and the arrays made from it may take (default 2 GiB); a file or a tensor
        that declares more is refused before the memory is spent.

    Returns
    -------
    fastdecode.Network
        With ``input_shape`` set and ``meta`` holding ``"format"`` ("onnx"), ``"input"`` (the
        graph input's name), ``"layout"`` ("NCHW", or "NHWC" when a transpose was folded),
        ``"outputs"`` ({graph output: layer name}), ``"opset"``, ``"producer"`` and
        ``"ir_version"``. Each layer is named by its node's name (its output's name when the
        node has none); graph outputs of other names are aliases of their layers.

    Raises
    ------
    ImportError
        When the ``onnx`` package is missing (``pip install "fastdecode[onnx]"``).
    FileNotFoundError, IsADirectoryError
        From the file system.
    OnnxError
        A ValueError naming the file, the node (name, op type, opset) and the problem: not an
        ONNX model, an op or attribute not supported, a dynamic size without ``input_shape``,
        a tensor beyond ``memory_limit``, external data outside the model's folder.

    Examples
    --------
    >>> import fastdecode as fd
    >>> net = fd.load_onnx("resnet50.onnx")              # doctest: +SKIP
    >>> net.meta["layout"], net.input_shape              # doctest: +SKIP
    ('NHWC', (3, 224, 224))
    >>> D = fd.decode(net, net.conv_layers[0])           # doctest: +SKIP
    """
    onnx = _onnx()
    path = os.fspath(path)
    limit = file_memory_limit(memory_limit)
    if input_shape is not None:
        try:
            input_shape = tuple(None if v is None else int(v) for v in input_shape)
        except (TypeError, ValueError):
            raise TypeError("input_shape must be (C, H, W), got %r" % (input_shape,)) from None
        if len(input_shape) != 3 or min((v for v in input_shape if v is not None),
                                        default=1) < 1:
            raise ValueError("input_shape must be (C, H, W) of positive ints (None for the "
                             "file's own), got %r" % (input_shape,))
    budget = Budget(path, limit)
    data = read_bytes(path, budget.limit)
    budget.charge(len(data), "the file")
    model = parse_model(path, data)
    del data
    from ._onnx_ops import Converter
    return Converter(path, model, TensorReader(path, budget), budget, onnx).network(input_shape)
