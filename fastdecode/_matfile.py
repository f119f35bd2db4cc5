"""A guarded reader of MATLAB MAT files (v5/v6/v7 and v7.3/HDF5) into plain Python values.

MAT v5 files are parsed element by element (compressed elements are streamed through zlib), so
every array's declared size is checked against a memory budget *before* anything is allocated:
a small file that declares a huge array is refused, not expanded. v7.3 files are HDF5; h5py reads
them lazily and each dataset's shape is checked before it is read. Nothing is executed or unpickled:
function handles and MATLAB objects become :class:`Opaque` placeholders.

Values keep MATLAB's orientation:

- numeric and logical arrays: numpy arrays with MATLAB's shape (at least 2-D, Fortran order);
- char arrays: ``str`` (a row) or a list of ``str`` (the rows of a char matrix);
- cell arrays: numpy object arrays with MATLAB's shape;
- structs: :class:`StructArray` (``shape``, ``fields`` and ``records``, one dict per element in
  MATLAB's column-major order);
- function handles, objects, sparse matrices: :class:`Opaque`.
"""

import numbers
import os
import struct
import zlib

import numpy as np

from ._io import open_regular
from ._validation import format_bytes

__all__ = ["MatConvNetError", "StructArray", "Opaque", "read_mat", "DEFAULT_FILE_MEMORY_LIMIT"]

#: Default budget, in bytes, for everything read from one file.
DEFAULT_FILE_MEMORY_LIMIT = 2 * 2**30

_MAX_DEPTH = 64          # nesting of cells and structs
_MAX_DIMS = 32           # dimensions of one array (numpy's portable limit)
_MAX_ELEMENTS = 2**48    # elements of one array (MATLAB's own limit)
_CHUNK = 1 << 20         # bytes decompressed or read per step when skipping
_MIN_INFLATE = 1 << 16   # bytes decompressed at least per step when reading small elements

# What the Python objects made from a file cost, in bytes (upper bounds of tracemalloc's
# measurements on CPython 3.11, 64-bit): a numpy array with its shape, base and views (a 1x1
# array read from a file measures about 250 bytes, 625 when it still views a bytearray), one
# struct record's dict (72 bytes empty, 192 with up to 5 keys, 280 up to 10, 472 up to 20), a
# slot in a list or an object array, one character after decoding (4 bytes of code point, up to 4
# in the str, and a transient copy) and one str object, an h5py reference object.
_VALUE_COST = 640
_RECORD_COST = 208
_FIELD_COST = 24
_SLOT_COST = 16
_CHAR_COST = 24
_ROW_COST = 96
_REF_COST = 160
# Work, in bytes-equivalent, charged per element parsed: parsing one element in Python (10 to 40
# us, on a loaded machine) takes as long as inflating about 16 KiB.
_ELEMENT_WORK = 16 * 2**10
# h5py's work per HDF5 object visited (its attributes, its type, its shape): about 0.5 ms.
_H5_VISIT_WORK = 64 * 2**10
#: Bytes a reader may inflate, read or skip in all, per byte of memory budget (plus a floor).
WORK_PER_BUDGET_BYTE = 4
_WORK_FLOOR = 256 * 2**20


class MatConvNetError(ValueError):
    """A MAT file that cannot be read as a network: the message names the file and the problem."""


class StructArray:
    """A MATLAB struct array: ``shape``, ``fields`` (names in order) and ``records`` (dicts)."""

    def __init__(self, shape, fields, records):
        self.shape = tuple(shape)
        self.fields = list(fields)
        self.records = list(records)

    @property
    def size(self):
        return len(self.records)

    def scalar(self):
        """The only element of a 1x1 struct (None when the struct array is not 1x1)."""
        return self.records[0] if len(self.records) == 1 else None

    def __repr__(self):
        return "StructArray(shape=%s, fields=%s)" % (self.shape, self.fields)


class Opaque:
    """A value that is never interpreted: a function handle, an object, a sparse matrix."""

    def __init__(self, kind):
        self.kind = kind

    def __repr__(self):
        return "Opaque(%r)" % (self.kind,)


# --- messages -----------------------------------------------------------------------------------

def _show(text, limit=120):
    """Text from a file, fit for a one-line message: control characters escaped, length bounded."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text[:4 * limit]).decode("latin-1")
    text = str(text)[:4 * limit]
    out = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
    return out if len(out) <= limit else out[:limit - 3] + "..."


def _dims(dims, limit=8):
    """MATLAB dimensions as 'AxBxC', at most ``limit`` of them shown."""
    dims = [int(d) for d in dims[:limit + 1]] if not isinstance(dims, int) else [dims]
    if len(dims) <= limit:
        return "x".join(map(str, dims))
    return "x".join(map(str, dims[:limit])) + "x... (more than %d dimensions)" % limit


def _clip_where(what, limit=300):
    return what if len(what) <= limit else what[:limit // 2 - 2] + " ... " + what[-limit // 2:]


def _count(dims):
    n = 1
    for d in dims:
        n *= d
    return n


class _Budget:
    """Bytes the reader may still allocate (``charge``) and still inflate, read or skip (``work``);
    both refuse beyond their limit, before the memory or the time is spent."""

    def __init__(self, path, limit):
        self.path = path
        self.limit = int(limit)
        self.used = 0
        self.work_limit = WORK_PER_BUDGET_BYTE * self.limit + _WORK_FLOOR
        self.worked = 0

    def charge(self, nbytes, what, shape=None):
        if self.used + nbytes > self.limit:
            where = "" if shape is None else " (MATLAB shape %s)" % _dims(shape)
            raise MatConvNetError(
                "%s: %s%s needs %s, beyond the memory limit of %s (%s already read); the file is "
                "refused before that memory is spent. Pass a larger memory_limit if the file is "
                "trusted." % (self.path, _clip_where(what), where, format_bytes(nbytes),
                              format_bytes(self.limit), format_bytes(self.used)))
        self.used += nbytes

    def work(self, nbytes, what):
        self.worked += nbytes
        if self.worked > self.work_limit:
            raise MatConvNetError(
                "%s: reading %s goes beyond the work limit of %s inflated, read or skipped (%d "
                "times the memory limit of %s, plus %s); the file is refused. Pass a larger "
                "memory_limit if the file is trusted."
                % (self.path, _clip_where(what), format_bytes(self.work_limit),
                   WORK_PER_BUDGET_BYTE, format_bytes(self.limit), format_bytes(_WORK_FLOOR)))


# --- what the caller expects of the top-level variables -----------------------------------------

_NUMERIC_CLASSES = ("double", "single", "int8", "uint8", "int16", "uint16", "int32", "uint32",
                    "int64", "uint64")
_KINDS = ("struct", "cell", "char", "logical", "numeric", "object") + _NUMERIC_CLASSES


def _expectation(name, spec):
    """A function (class, dims) -> None or what was expected, from ``expect``'s value."""
    if callable(spec):
        return spec
    if isinstance(spec, str):
        spec = (spec,)
    wanted = []
    for s in spec:
        if not isinstance(s, str):
            raise TypeError("expect[%r] must be a class name, a tuple of them or a callable, got "
                            "%r" % (name, s))
        scalar = s.startswith("1x1 ")
        kind = s[4:] if scalar else s
        if kind not in _KINDS:
            raise ValueError("expect[%r]: unknown kind %r (one of %s, optionally prefixed by "
                             "'1x1 ')" % (name, kind, ", ".join(_KINDS)))
        wanted.append((scalar, kind))
    text = " or ".join(("a 1x1 " if sc else "an " if k[0] in "aeiou" else "a ") + k
                       for sc, k in wanted)

    def check(cls, dims):
        for scalar, kind in wanted:
            if scalar and tuple(dims) != (1, 1):
                continue
            if kind == cls or (kind == "numeric" and cls in _NUMERIC_CLASSES) \
                    or (kind == "object" and cls not in _KINDS):
                return None
        return text
    return check


def _check_expected(path, expect, name, cls, dims):
    check = expect.get(name) if expect else None
    if check is None:
        return
    wanted = check(cls, tuple(dims))
    if wanted:
        raise MatConvNetError("%s: the variable '%s' is a %s %s, not %s; it is refused unread"
                              % (path, _show(name), _dims(dims), _show(cls), wanted))


def read_mat(path, names=None, *, memory_limit=None, skip_fields=(), expect=None):
    """Read the variables of a MAT file as ``{name: value}``.

    ``names``: a collection of variable names to read (others are skipped without being
    decompressed); None reads all. ``memory_limit``: bytes the values may take (default 2 GiB),
    charged at what the Python objects cost (arrays, dicts, strings, cells), before they are made;
    the bytes inflated, read or skipped are bounded too, to ``4 * memory_limit + 64 MiB``.
    ``skip_fields``: struct fields, at any depth, passed over without being kept (e.g. momentum).
    ``expect``: ``{name: kind}`` checked from a top-level variable's header before its data is
    read; a kind is a MATLAB class ('struct', 'cell', 'char', 'logical', 'double', ...),
    'numeric' or 'object' (anything read as :class:`Opaque`), optionally prefixed by '1x1 ', or a
    tuple of kinds, or a callable ``(class, dims) -> None or a description of what was expected``.
    Raises FileNotFoundError, IsADirectoryError or PermissionError from the file system and
    MatConvNetError (a ValueError) for anything that is not a readable MAT file, naming the file
    and where in it.
    """
    return read_mat_budget(path, names, memory_limit=memory_limit, skip_fields=skip_fields,
                           expect=expect)[0]


def file_memory_limit(memory_limit):
    """The bytes a model file may cost: ``memory_limit``, or the default for None; ValueError
    for anything but a positive finite number."""
    limit = DEFAULT_FILE_MEMORY_LIMIT if memory_limit is None else memory_limit
    if isinstance(limit, bool) or not isinstance(limit, numbers.Real) or not limit > 0 \
            or not np.isfinite(limit):
        raise ValueError("memory_limit must be a positive number of bytes, got %r"
                         % (memory_limit,))
    return limit


def read_mat_budget(path, names=None, *, memory_limit=None, skip_fields=(), expect=None):
    """:func:`read_mat`, and its budget: (values, budget), for a caller that makes further
    copies of the values and charges them (``budget.charge``) against the same limit."""
    path = os.fspath(path)
    limit = file_memory_limit(memory_limit)
    checks = {}
    if expect:
        checks = {k: _expectation(k, v) for k, v in dict(expect).items()}
    budget = _Budget(path, int(limit))
    f = _open_regular(path)
    try:
        header = f.read(128)
        kind = _sniff(path, header)
        if kind == "v5":
            from ._matfile_v5 import V5Reader
            reader = V5Reader(path, budget, frozenset(skip_fields), checks)
            return _guarded(path, reader, lambda: reader.read(f, names)), budget
    finally:
        f.close()
    from ._matfile_h5 import read_hdf5
    return read_hdf5(path, names, budget, frozenset(skip_fields), checks), budget


def _open_regular(path):
    """The file opened for reading, refusing what is not a regular file without blocking on it."""
    return open_regular(path, "MAT file", MatConvNetError)


#: What a corrupt file can make numpy, struct, zlib or h5py raise, turned into MatConvNetError.
_CORRUPT = (struct.error, zlib.error, ValueError, OverflowError, IndexError, KeyError, TypeError,
            UnicodeError, MemoryError, EOFError, RuntimeError, AttributeError)


def _guarded(path, reader, fn):
    try:
        return fn()
    except MatConvNetError:
        raise
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except _CORRUPT as exc:
        where = getattr(reader, "where", None)
        raise MatConvNetError("%s: corrupt file%s: %s" % (
            path, "" if not where else " in %s" % _clip_where(where),
            _show("%s: %s" % (type(exc).__name__, exc), 300))) from None


def _sniff(path, header):
    if len(header) < 128:
        raise MatConvNetError("%s: not a MAT file (%d bytes, shorter than the 128-byte MAT header)"
                              % (path, len(header)))
    text = header[:116]
    if text.startswith(b"\x89HDF"):
        return "hdf5"
    if not text.startswith(b"MATLAB"):
        raise MatConvNetError("%s: not a MAT file (no 'MATLAB ... MAT-file' header; MAT v4 files "
                              "are not supported either)" % path)
    endian = header[126:128]
    if endian not in (b"IM", b"MI"):
        raise MatConvNetError("%s: not a MAT file (bad endian indicator %s)"
                              % (path, _show(repr(bytes(endian)))))
    version = struct.unpack("<H" if endian == b"IM" else ">H", header[124:126])[0]
    if version == 0x0200:
        return "hdf5"
    if version != 0x0100:
        raise MatConvNetError("%s: unknown MAT file version 0x%04x" % (path, version))
    return "v5"


# --- MAT v5 -------------------------------------------------------------------------------------
