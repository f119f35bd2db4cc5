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

import errno
import numbers
import os
import stat
import struct
import zlib

import numpy as np

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
    path = os.fspath(path)
    limit = DEFAULT_FILE_MEMORY_LIMIT if memory_limit is None else memory_limit
    if isinstance(limit, bool) or not isinstance(limit, numbers.Real) or not limit > 0 \
            or not np.isfinite(limit):
        raise ValueError("memory_limit must be a positive number of bytes, got %r"
                         % (memory_limit,))
    checks = {}
    if expect:
        checks = {k: _expectation(k, v) for k, v in dict(expect).items()}
    budget = _Budget(path, int(limit))
    f = _open_regular(path)
    try:
        header = f.read(128)
        kind = _sniff(path, header)
        if kind == "v5":
            reader = _V5Reader(path, budget, frozenset(skip_fields), checks)
            return _guarded(path, reader, lambda: reader.read(f, names))
    finally:
        f.close()
    return _read_hdf5(path, names, budget, frozenset(skip_fields), checks)


def _open_regular(path):
    """The file opened for reading, refusing what is not a regular file without blocking on it."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "MAT file not found", path) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory, not a MAT file", path)
        if not stat.S_ISREG(mode):
            raise MatConvNetError("%s: not a regular file (a FIFO, socket or device); a MAT file "
                                  "is read only from a regular file" % path)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


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

_MI_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8",
             12: "i8", 13: "u8", 16: "u1", 17: "u2", 18: "u4"}
_MI_MATRIX, _MI_COMPRESSED = 14, 15
_MX_NUMERIC = {6: "f8", 7: "f4", 8: "i1", 9: "u1", 10: "i2", 11: "u2", 12: "i4", 13: "u4",
               14: "i8", 15: "u8"}
_MX_CELL, _MX_STRUCT, _MX_OBJECT, _MX_CHAR, _MX_SPARSE = 1, 2, 3, 4, 5
_MX_OPAQUE_KINDS = {3: "object", 5: "sparse", 16: "function handle", 17: "opaque object"}
_MX_NAMES = {1: "cell", 2: "struct", 3: "object", 4: "char", 5: "sparse", 6: "double",
             7: "single", 8: "int8", 9: "uint8", 10: "int16", 11: "uint16", 12: "int32",
             13: "uint32", 14: "int64", 15: "uint64", 16: "function_handle", 17: "opaque"}


class _FileStream:
    """Bytes of an uncompressed region of the file, refusing reads past its end."""

    def __init__(self, f, end, path, budget):
        self.f, self.end, self.path, self.budget = f, end, path, budget

    def tell(self):
        return self.f.tell()

    def _check(self, n, what):
        if self.f.tell() + n > self.end:
            raise MatConvNetError("%s: truncated file: %s needs %d bytes, %d remain"
                                  % (self.path, _clip_where(what), n, self.end - self.f.tell()))

    def read_into(self, view, what):
        n = len(view)
        self._check(n, what)
        self.budget.work(n, what)
        got = self.f.readinto(view)
        if got != n:
            raise MatConvNetError("%s: truncated file while reading %s"
                                  % (self.path, _clip_where(what)))

    def read(self, n, what):
        buf = bytearray(n)
        self.read_into(memoryview(buf), what)
        return buf

    def skip(self, n, what):
        self._check(n, what)
        self.f.seek(n, os.SEEK_CUR)


class _ZlibStream:
    """The decompressed bytes of one compressed element, produced only as they are read, never
    beyond ``cap`` bytes (the element's declared size, once its tag is read); every byte inflated
    is charged to the budget's work."""

    def __init__(self, f, nbytes, path, budget):
        self.f, self.left, self.path, self.budget = f, nbytes, path, budget
        self.z = zlib.decompressobj()
        self.buf = b""
        self.bpos = 0     # bytes of self.buf already consumed
        self.pos = 0      # decompressed bytes consumed
        self.made = 0     # decompressed bytes produced
        self.cap = 8      # the tag first; then the declared size of the element

    def tell(self):
        return self.pos

    def _more(self, want, what):
        """Decompress up to ``want`` more bytes into self.buf; False at the stream's end."""
        want = min(want, self.cap - self.made)
        if want <= 0:
            return False
        while True:
            src = self.z.unconsumed_tail
            if not src:
                if self.left <= 0 or self.z.eof:
                    return False
                src = self.f.read(min(self.left, _CHUNK))
                if not src:
                    raise MatConvNetError("%s: truncated file inside a compressed element"
                                          % self.path)
                self.left -= len(src)
            try:
                out = self.z.decompress(src, want)
            except zlib.error as exc:
                raise MatConvNetError("%s: corrupt compressed data in %s (%s)"
                                      % (self.path, _clip_where(what), exc)) from None
            if out:
                self.budget.work(len(out), what)
                self.made += len(out)
                self.buf, self.bpos = out, 0
                return True
            if self.z.eof:
                return False

    def _take(self, n):
        chunk = self.buf[self.bpos:self.bpos + n]
        self.bpos += len(chunk)
        return chunk

    def read_into(self, view, what):
        n = len(view)
        filled = 0
        while filled < n:
            if self.bpos >= len(self.buf) and \
                    not self._more(max(min(n - filled, _CHUNK), _MIN_INFLATE), what):
                raise MatConvNetError("%s: truncated data: %s needs %d bytes, the compressed "
                                      "element ends after %d"
                                      % (self.path, _clip_where(what), n, filled))
            chunk = self._take(n - filled)
            view[filled:filled + len(chunk)] = chunk
            filled += len(chunk)
        self.pos += n

    def read(self, n, what):
        end = self.bpos + n
        if end <= len(self.buf):  # the common case of a tag or a small element: one slice
            chunk = self.buf[self.bpos:end]
            self.bpos = end
            self.pos += n
            return chunk
        buf = bytearray(n)
        self.read_into(memoryview(buf), what)
        return buf

    def skip(self, n, what):
        if self.bpos + n <= len(self.buf):
            self.bpos += n
            self.pos += n
            return
        left = n
        while left:
            if self.bpos >= len(self.buf) and \
                    not self._more(max(min(left, _CHUNK), _MIN_INFLATE), what):
                raise MatConvNetError("%s: truncated data while skipping %s"
                                      % (self.path, _clip_where(what)))
            left -= len(self._take(left))
        self.pos += n


class _V5Reader:
    def __init__(self, path, budget, skip_fields, expect=None):
        self.path = path
        self.budget = budget
        self.skip_fields = skip_fields
        self.expect = expect or {}
        self.where = None

    def read(self, f, names):
        out = {}
        size = os.fstat(f.fileno()).st_size
        f.seek(0)
        header = f.read(128)
        self.order = "<" if header[126:128] == b"IM" else ">"
        top = _FileStream(f, size, self.path, self.budget)
        while f.tell() < size:
            start = f.tell()
            self.where = "the element at byte %d" % start
            if size - start < 8:
                raise MatConvNetError("%s: truncated file (%d stray bytes at the end)"
                                      % (self.path, size - start))
            mtype, nbytes, _ = self._tag(top, "a variable's tag")
            end = start + 8 + nbytes
            if end > size:
                raise MatConvNetError("%s: truncated file: a variable at byte %d declares %d "
                                      "bytes, the file has %d" % (self.path, start, nbytes,
                                                                  size - start - 8))
            if mtype == _MI_COMPRESSED:
                stream = _ZlibStream(f, nbytes, self.path, self.budget)
                itype, inbytes, _ = self._tag(stream, "a compressed variable's tag")
                if itype != _MI_MATRIX:
                    raise self._error("a compressed element at byte %d holds data of type "
                                      "%d, not a MATLAB array" % (start, itype))
                stream.cap = 8 + inbytes
                name, value = self._matrix(stream, inbytes, 0, names, "variable")
                f.seek(end)
            elif mtype == _MI_MATRIX:
                name, value = self._matrix(top, nbytes, 0, names, "variable")
                f.seek(min(end + (-nbytes % 8), size))
            else:
                raise MatConvNetError("%s: unexpected element of type %d at byte %d"
                                      % (self.path, mtype, start))
            if value is not _SKIPPED:
                if name and name in out:
                    raise self._error("the variable '%s' appears twice" % _show(name))
                out[name] = value
        return out

    def _error(self, message):
        return MatConvNetError("%s: %s" % (self.path, message))

    def _tag(self, stream, what):
        """(type, nbytes, small_data) of a data element tag."""
        raw = bytes(stream.read(8, what))
        first, second = struct.unpack(self.order + "II", raw)
        if first >> 16:  # small data element: type and size in 4 bytes, data in the other 4
            nbytes = first >> 16
            if nbytes > 4:
                raise MatConvNetError("%s: corrupt small data element in %s"
                                      % (self.path, _clip_where(what)))
            return first & 0xFFFF, nbytes, raw[4:4 + nbytes]
        return first, second, None

    def _element(self, stream, what, expect=None, most=1 << 20):
        """(type, bytes) of a whole small element such as array flags, dims or names."""
        mtype, nbytes, small = self._tag(stream, what)
        if expect is not None and mtype not in expect:
            raise self._error("corrupt file: %s has data type %d" % (_clip_where(what), mtype))
        if small is not None:
            return mtype, small
        if nbytes > most:
            raise self._error("corrupt file: %s declares %d bytes" % (_clip_where(what), nbytes))
        self.budget.charge(nbytes, what)
        data = bytes(stream.read(nbytes, what))
        stream.skip(-nbytes % 8, what)
        return mtype, data

    def _numbers(self, mtype, data, what):
        if mtype not in _MI_TYPES:
            raise self._error("corrupt file: %s has data type %d" % (_clip_where(what), mtype))
        dt = np.dtype(_MI_TYPES[mtype]).newbyteorder(self.order)
        if len(data) % dt.itemsize:
            raise MatConvNetError("%s: corrupt file: %s has %d bytes, not a whole number of %s"
                                  % (self.path, _clip_where(what), len(data), dt))
        return np.frombuffer(data, dtype=dt)

    def _matrix(self, stream, nbytes, depth, names, what, paid=False):
        """Parse one miMATRIX element body of ``nbytes`` bytes; returns (name, value). ``paid``:
        the value's object and work were charged with its cell or struct array."""
        self.where = what
        if not paid:
            self.budget.work(_ELEMENT_WORK, what)
            self.budget.charge(_VALUE_COST, what)
        if nbytes == 0:
            return "", np.zeros((0, 0))
        if depth > _MAX_DEPTH:
            raise MatConvNetError("%s: %s is nested more than %d levels deep"
                                  % (self.path, _clip_where(what), _MAX_DEPTH))
        start = stream.tell()
        end = start + nbytes
        mtype, flags = self._element(stream, what + " flags", expect=(6,), most=64)
        if len(flags) < 8:
            raise MatConvNetError("%s: corrupt array flags in %s" % (self.path, _clip_where(what)))
        word = struct.unpack(self.order + "I", flags[:4])[0]
        cls = word & 0xFF
        is_complex, is_logical = bool(word & 0x800), bool(word & 0x200)
        if cls == 17:  # MCOS opaque object: no dims in the usual place; skip it whole
            self._skip_to(stream, end, what)
            return "", Opaque(_MX_OPAQUE_KINDS[17])
        mtype, dims_raw = self._element(stream, what + " dimensions", expect=(5,),
                                        most=4 * _MAX_DIMS)
        dims = tuple(int(d) for d in self._numbers(mtype, dims_raw, what + " dimensions"))
        if len(dims) < 2 or min(dims) < 0:
            raise MatConvNetError("%s: corrupt dimensions %s in %s"
                                  % (self.path, _dims(dims), _clip_where(what)))
        count = _count(dims)
        if _count(max(d, 1) for d in dims) > _MAX_ELEMENTS:
            raise MatConvNetError("%s: corrupt dimensions %s in %s (more elements than MATLAB "
                                  "allows)" % (self.path, _dims(dims), _clip_where(what)))
        mtype, name_raw = self._element(stream, what + " name", expect=(1, 2), most=4096)
        name = name_raw.decode("latin-1")
        if depth == 0:
            what = "variable '%s'" % _show(name)
            self.where = what
            if names is not None and name not in names:
                return name, _SKIPPED  # the caller seeks past the whole element
            kind = "logical" if is_logical and cls in _MX_NUMERIC else \
                _MX_NAMES.get(cls, "class %d" % cls)
            _check_expected(self.path, self.expect, name, kind, dims)
        if cls in _MX_NUMERIC:
            value = self._numeric(stream, cls, dims, count, is_complex, is_logical, what)
        elif cls == _MX_CHAR:
            value = self._char(stream, dims, count, what)
        elif cls == _MX_CELL:
            if count * 8 > nbytes:
                raise MatConvNetError("%s: corrupt file: %s declares %d cells in %d bytes"
                                      % (self.path, _clip_where(what), count, nbytes))
            # Every cell holds a value: its object, its slots and its parsing are charged first.
            self.budget.charge(count * (2 * _SLOT_COST + _VALUE_COST), what, dims)
            self.budget.work(count * _ELEMENT_WORK, what)
            items = []
            for i in range(count):
                t, n, _ = self._tag(stream, what)
                if t != _MI_MATRIX:
                    raise MatConvNetError("%s: corrupt cell element in %s"
                                          % (self.path, _clip_where(what)))
                items.append(self._matrix(stream, n, depth + 1, None, "%s{%d}" % (what, i + 1),
                                          paid=True)[1])
            value = np.empty(count, dtype=object)
            value[:] = items
            value = value.reshape(dims, order="F")
        elif cls == _MX_STRUCT:
            value = self._struct(stream, dims, count, nbytes, depth, what)
        elif cls in _MX_OPAQUE_KINDS:
            value = Opaque(_MX_OPAQUE_KINDS[cls])
        else:
            raise MatConvNetError("%s: %s has unknown MATLAB class %d"
                                  % (self.path, _clip_where(what), cls))
        self._skip_to(stream, end, what)
        return name, value

    def _skip_to(self, stream, end, what):
        here = stream.tell()
        if here > end:
            raise MatConvNetError("%s: corrupt file: %s overruns its declared size"
                                  % (self.path, _clip_where(what)))
        stream.skip(end - here, what)

    def _data(self, stream, what, count, cls_dtype, dims, extra=0):
        """Read one numeric data subelement as a flat array of the class's type, checking its size
        against the budget first (with ``extra`` bytes the caller will add)."""
        mtype, nbytes, small = self._tag(stream, what)
        if mtype not in _MI_TYPES:
            raise self._error("corrupt file: %s has data type %d" % (_clip_where(what), mtype))
        stored = np.dtype(_MI_TYPES[mtype]).newbyteorder(self.order)
        if small is None:
            if nbytes != count * stored.itemsize:
                raise MatConvNetError("%s: corrupt file: %s declares MATLAB shape %s (%d values) "
                                      "but holds %d bytes of %s"
                                      % (self.path, _clip_where(what), _dims(dims), count, nbytes,
                                         np.dtype(_MI_TYPES[mtype])))
            # The bytes are read straight into the array; a conversion to the class's type copies.
            converted = 0 if stored == cls_dtype else count * cls_dtype.itemsize
            self.budget.charge(nbytes + converted + extra, what, dims)
            values = np.empty(count, dtype=stored)
            stream.read_into(memoryview(values).cast("B"), what)
            stream.skip(-nbytes % 8, what)
        else:
            values = self._numbers(mtype, small, what)
            if values.size != count:
                raise MatConvNetError("%s: corrupt file: %s declares %d values and holds %d"
                                      % (self.path, _clip_where(what), count, values.size))
            values = values.copy()
        return values.astype(cls_dtype, copy=False)

    def _numeric(self, stream, cls, dims, count, is_complex, is_logical, what):
        dt = np.dtype(_MX_NUMERIC[cls])
        extra = count * 16 if is_complex else (count if is_logical else 0)
        real = self._data(stream, what, count, dt, dims, extra)
        if is_complex:
            imag = self._data(stream, what + " (imaginary part)", count, dt, dims)
            value = np.empty(count, dtype=np.complex64 if dt == np.float32 else np.complex128)
            value.real = real
            value.imag = imag
            real = value
        if is_logical:
            real = real.astype(bool)
        return real.reshape(dims, order="F")

    def _char(self, stream, dims, count, what):
        mtype, nbytes, small = self._tag(stream, what)
        if mtype not in _MI_TYPES:
            raise self._error("corrupt file: %s has data type %d" % (_clip_where(what), mtype))
        rows = dims[0] if count else 0
        if small is None:
            size = np.dtype(_MI_TYPES[mtype]).itemsize
            if (nbytes < count or nbytes > 4 * count) if mtype == 16 else nbytes != count * size:
                raise MatConvNetError("%s: corrupt file: char array %s declares %d characters "
                                      "in %d bytes of data type %d"
                                      % (self.path, _clip_where(what), count, nbytes, mtype))
            self.budget.charge(nbytes + _CHAR_COST * count + _ROW_COST * rows, what, dims)
            data = stream.read(nbytes, what)
            stream.skip(-nbytes % 8, what)
        else:
            data = small
        if mtype == 16:  # miUTF8: characters, not code units
            text = bytes(data).decode("utf-8", errors="replace")
            if len(text) != count:
                raise MatConvNetError("%s: corrupt file: char array %s declares %d characters and "
                                      "holds %d" % (self.path, _clip_where(what), count, len(text)))
            codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
        else:
            codes = self._numbers(mtype, data, what)
        if len(codes) != count:
            raise MatConvNetError("%s: corrupt file: char array %s declares %d characters and "
                                  "holds %d" % (self.path, _clip_where(what), count, len(codes)))
        return _chars_to_text(codes.reshape(dims, order="F"))

    def _struct(self, stream, dims, count, nbytes, depth, what):
        mtype, raw = self._element(stream, what + " field name length", expect=(5,), most=64)
        (length,) = self._numbers(mtype, raw, what).tolist()[:1] or [0]
        if length < 1 or length > 4096:
            raise self._error("corrupt field name length %d in %s" % (length, _clip_where(what)))
        mtype, raw = self._element(stream, what + " field names", expect=(1, 2))
        fields = [raw[i:i + length].split(b"\0", 1)[0].decode("latin-1")
                  for i in range(0, len(raw), length)]
        if count * len(fields) * 8 > nbytes:
            raise MatConvNetError("%s: corrupt file: %s declares %d elements of %d fields in %d "
                                  "bytes" % (self.path, _clip_where(what), count, len(fields),
                                             nbytes))
        kept = [f for f in fields if f not in self.skip_fields]
        # Every record is a dict holding one value per kept field: charged before any is read.
        self.budget.charge(_SLOT_COST * len(fields) + count * (
            _RECORD_COST + _SLOT_COST + (_FIELD_COST + _VALUE_COST) * len(kept)), what, dims)
        self.budget.work(count * (_ELEMENT_WORK // 4 + _ELEMENT_WORK * len(fields)), what)
        shown = [_show(f, 64) for f in fields]
        records = []
        for i in range(count):
            rec = {}
            for field, label in zip(fields, shown):
                t, n, _ = self._tag(stream, what)
                if t != _MI_MATRIX:
                    raise self._error("corrupt struct field %s.%s" % (_clip_where(what), label))
                sub = "%s(%d).%s" % (what, i + 1, label) if count > 1 else "%s.%s" % (what, label)
                if field in self.skip_fields:
                    stream.skip(n, sub)
                    continue
                rec[field] = self._matrix(stream, n, depth + 1, None, sub, paid=True)[1]
            records.append(rec)
        return StructArray(dims, fields, records)


_SKIPPED = object()


def _chars_to_text(codes):
    """MATLAB char codes (MATLAB shape) -> str for a row or an empty array, list of rows else."""
    if codes.size == 0:
        return ""
    if codes.ndim > 2:
        codes = codes.reshape(codes.shape[0], -1, order="F")
    if codes.dtype.kind == "f":
        ok = np.isfinite(codes) & (codes > -1) & (codes < 0x110000)
    elif codes.dtype.kind == "u":
        ok = codes <= 0x10FFFF
    else:
        ok = (codes >= 0) & (codes <= 0x10FFFF)
    codes = np.where(ok, codes, 0xFFFD).astype("<u4")  # not a character: U+FFFD
    rows = [row.tobytes().decode("utf-32-le", "surrogatepass") for row in codes]
    return rows[0] if len(rows) == 1 else rows


# --- MAT v7.3 (HDF5) ----------------------------------------------------------------------------

_H5_NUMERIC = {"double": "f8", "single": "f4", "int8": "i1", "uint8": "u1", "int16": "i2",
               "uint16": "u2", "int32": "i4", "uint32": "u4", "int64": "i8", "uint64": "u8",
               "logical": "?"}
_MAX_ATTR_VALUES = 1 << 16   # values of one attribute (MATLAB_class, MATLAB_fields, ...)
_MAX_EMPTY_DIMS = 64         # values of a MATLAB_empty dataset (it stores the dimensions)


def _import_h5py(path):
    try:
        import h5py
    except ImportError:
        raise ImportError(
            "%s is a MATLAB v7.3 (HDF5) file; reading it needs h5py. Install it with "
            "pip install 'fastdecode[hdf5]' (or pip install h5py), or save the file from MATLAB "
            "with save(..., '-v7')." % path) from None
    return h5py


def _read_hdf5(path, names, budget, skip_fields, expect=None):
    h5py = _import_h5py(path)
    try:
        f = h5py.File(path, "r")
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (OSError, ValueError, RuntimeError, MemoryError) as exc:
        raise MatConvNetError("%s: not a readable MAT v7.3 (HDF5) file: %s"
                              % (path, _show(exc, 300))) from None
    reader = _H5Reader(path, f, budget, h5py, skip_fields)
    try:
        def read():
            out = {}
            keys = list(f.keys())
            budget.charge(len(keys) * _VALUE_COST // 4, "the file's variable names")
            for key in keys:
                if key.startswith("#"):  # '#refs#' (cell targets), '#subsystem#' (MCOS data)
                    continue
                if names is not None and key not in names:
                    continue
                what = "variable '%s'" % _show(key)
                reader.where = what
                obj = f[key]
                if expect and key in expect:
                    cls, dims = reader.header(obj, what)
                    _check_expected(path, expect, key, cls, dims)
                out[key] = reader.value(obj, 0, what)
            return out
        return _guarded(path, reader, read)
    except OSError as exc:  # h5py reports corrupt files as OSError
        if isinstance(exc, (FileNotFoundError, IsADirectoryError, PermissionError)):
            raise
        where = reader.where
        raise MatConvNetError("%s: corrupt MAT v7.3 (HDF5) file%s: %s" % (
            path, "" if not where else " in %s" % _clip_where(where), _show(exc, 300))) from None
    finally:
        try:
            f.close()
        except Exception:  # closing a file h5py could not read: nothing left to release
            pass


class _H5Reader:
    def __init__(self, path, f, budget, h5py, skip_fields):
        self.path, self.f, self.budget, self.h5py = path, f, budget, h5py
        self.skip_fields = skip_fields
        self.where = None
        self.done = {}       # object id -> value, for objects reached through references
        self.busy = set()    # object ids being read (a reference back to one is a cycle)

    def _attr(self, obj, name, what):
        """An attribute's value (None when absent), refusing one with too many values."""
        if name not in obj.attrs:
            return None
        aid = self.h5py.h5a.open(obj.id, name.encode())
        shape = aid.shape or ()
        if _count(shape) > _MAX_ATTR_VALUES:
            raise MatConvNetError("%s: %s has an attribute %s of %s values"
                                  % (self.path, _clip_where(what), name, _dims(shape)))
        return obj.attrs[name]

    def _attr_str(self, obj, name, what):
        v = self._attr(obj, name, what)
        if v is None:
            return None
        if isinstance(v, bytes):
            return v.decode("latin-1")
        if isinstance(v, np.ndarray) and v.dtype.kind == "S":
            return b"".join(v.ravel().tolist()).decode("latin-1")
        return str(v)

    def _flag(self, obj, name, what):
        v = self._attr(obj, name, what)
        return v is not None and bool(np.asarray(v).ravel()[:1].any())

    def _deref(self, ref, what):
        if not ref:
            raise MatConvNetError("%s: %s holds a null reference" % (self.path, _clip_where(what)))
        try:
            return self.f[ref]
        except (KeyError, ValueError, OSError, TypeError) as exc:
            raise MatConvNetError("%s: %s holds a broken reference (%s)"
                                  % (self.path, _clip_where(what), _show(exc))) from None

    def _shape(self, ds, what):
        shape = ds.shape
        if shape is None:
            raise MatConvNetError("%s: %s is an HDF5 dataset with no dataspace"
                                  % (self.path, _clip_where(what)))
        return tuple(shape)

    def _refs(self, ds, what):
        """The object references of a cell or struct-field dataset, MATLAB shape."""
        if self.h5py.check_ref_dtype(ds.dtype) is not self.h5py.Reference:
            raise MatConvNetError("%s: %s should hold object references, it holds %s"
                                  % (self.path, _clip_where(what), _show(ds.dtype)))
        shape = self._shape(ds, what)
        count = _count(shape)
        self.budget.charge(count * (8 + _REF_COST + _SLOT_COST), what, shape[::-1])
        self.budget.work(count * 8, what)
        refs = np.asarray(ds[()])
        if refs.ndim < 2:
            refs = refs.reshape((1,) * (2 - refs.ndim) + refs.shape)
        return refs.T

    def _follow(self, ref, depth, what):
        """The value a reference points to, read once however often it is referred to."""
        obj = self._deref(ref, what)
        key = obj.id
        if key in self.done:
            self.budget.work(_ELEMENT_WORK, what)
            return self.done[key]
        if key in self.busy:
            raise MatConvNetError("%s: %s is nested more than %d levels deep or refers to itself"
                                  % (self.path, _clip_where(what), _MAX_DEPTH))
        self.busy.add(key)
        try:
            value = self.value(obj, depth, what)
        finally:
            self.busy.discard(key)
        self.done[key] = value
        return value

    def header(self, obj, what):
        """(MATLAB class, MATLAB dims) of an object, from its attributes and shape alone."""
        cls = self._attr_str(obj, "MATLAB_class", what)
        if isinstance(obj, self.h5py.Group):
            if cls not in (None, "struct"):
                return "opaque", (1, 1)
            fields = [n for n in obj if isinstance(obj[n], self.h5py.Dataset)]
            if fields and len(fields) == len(obj) and "MATLAB_class" not in obj[fields[0]].attrs \
                    and self.h5py.check_ref_dtype(obj[fields[0]].dtype) is self.h5py.Reference:
                return "struct", self._mdims(self._shape(obj[fields[0]], what))
            return "struct", (1, 1)
        if not isinstance(obj, self.h5py.Dataset):
            return "opaque", (1, 1)
        if "MATLAB_object_decode" in obj.attrs or "MATLAB_sparse" in obj.attrs:
            return "opaque", (1, 1)
        if self._flag(obj, "MATLAB_empty", what):
            return cls or "double", self._empty_dims(obj, what)
        dims = self._mdims(self._shape(obj, what))
        if cls is None:
            cls = "cell" if obj.dtype.kind == "O" else \
                {"f8": "double", "f4": "single"}.get(obj.dtype.str[1:], "numeric")
        return (cls if cls in _KINDS else "opaque"), dims

    @staticmethod
    def _mdims(shape):
        dims = tuple(int(d) for d in shape[::-1])
        return (1,) * (2 - len(dims)) + dims if len(dims) < 2 else dims

    def _empty_dims(self, obj, what):
        shape = self._shape(obj, what)
        if _count(shape) > _MAX_EMPTY_DIMS or obj.dtype.kind not in "iu":
            raise MatConvNetError("%s: %s is marked empty but holds %s values of %s"
                                  % (self.path, _clip_where(what), _dims(shape),
                                     _show(obj.dtype)))
        dims = tuple(int(d) for d in np.asarray(obj[()]).ravel())
        if len(dims) < 2 or min(dims) < 0 or len(dims) > _MAX_DIMS \
                or _count(max(d, 1) for d in dims) > _MAX_ELEMENTS:
            raise MatConvNetError("%s: %s is marked empty with corrupt dimensions %s"
                                  % (self.path, _clip_where(what), _dims(dims)))
        return dims

    def value(self, obj, depth, what):
        self.where = what
        if depth > _MAX_DEPTH:
            raise MatConvNetError("%s: %s is nested more than %d levels deep (or refers to itself)"
                                  % (self.path, _clip_where(what), _MAX_DEPTH))
        self.budget.work(_H5_VISIT_WORK, what)
        self.budget.charge(_VALUE_COST, what)
        cls = self._attr_str(obj, "MATLAB_class", what)
        if isinstance(obj, self.h5py.Group):
            if cls not in (None, "struct"):
                return Opaque(_show(cls))
            return self._struct_group(obj, depth, what)
        if not isinstance(obj, self.h5py.Dataset):  # a named datatype or another HDF5 object
            return Opaque(type(obj).__name__)
        if "MATLAB_object_decode" in obj.attrs or cls in ("function_handle",):
            return Opaque(_show(cls or "object"))
        if "MATLAB_sparse" in obj.attrs:
            return Opaque("sparse")
        if self._flag(obj, "MATLAB_empty", what):
            return self._empty(obj, cls, what)
        shape = self._shape(obj, what)
        count = _count(shape)
        if len(shape) > _MAX_DIMS:
            raise MatConvNetError("%s: %s has %d dimensions" % (self.path, _clip_where(what),
                                                                 len(shape)))
        if cls == "cell" or (cls is None and obj.dtype.kind == "O"):
            refs = self._refs(obj, what)
            items = [self._follow(r, depth + 1, "%s{%d}" % (what, i + 1))
                     for i, r in enumerate(refs.ravel(order="F"))]
            out = np.empty(len(items), dtype=object)
            out[:] = items
            return out.reshape(refs.shape, order="F")
        if cls == "char":
            if obj.dtype.kind not in "iuf":
                raise MatConvNetError("%s: %s is a char array stored as %s"
                                      % (self.path, _clip_where(what), _show(obj.dtype)))
            rows = shape[-1] if count else 0
            self.budget.charge(count * (obj.dtype.itemsize + _CHAR_COST) + rows * _ROW_COST,
                               what, shape[::-1])
            self.budget.work(count * obj.dtype.itemsize, what)
            data = np.asarray(obj[()])
            if data.ndim < 2:
                data = data.reshape((1,) * (2 - data.ndim) + data.shape)
            return _chars_to_text(data.T)
        if cls in _H5_NUMERIC or (cls is None and obj.dtype.kind in "biuf"):
            dt = obj.dtype
            names = dt.names or ()
            complex_ = len(names) == 2 and {"real", "imag"} <= set(names)
            if names and not complex_ or dt.kind not in "biufcV":
                return Opaque(_show(cls or str(dt)))
            nbytes = count * dt.itemsize
            extra = 3 * count * 16 if complex_ else (count if cls == "logical" else 0)
            self.budget.charge(nbytes + extra, what, shape[::-1])
            self.budget.work(nbytes, what)
            data = np.asarray(obj[()])
            if complex_:
                data = data["real"] + 1j * data["imag"]
            if cls == "logical":
                data = data.astype(bool)
            if data.ndim < 2:
                data = data.reshape((1,) * (2 - data.ndim) + data.shape)
            return data.T
        return Opaque(_show(cls or str(obj.dtype)))

    def _empty(self, obj, cls, what):
        dims = self._empty_dims(obj, what)
        count = _count(dims)
        if cls == "char":
            return ""
        if cls == "struct":  # a struct array with no fields
            self.budget.charge(count * (_RECORD_COST + _SLOT_COST), what, dims)
            self.budget.work(count * _ELEMENT_WORK // 4, what)
            return StructArray(dims, [], [{} for _ in range(count)])
        if count:
            raise MatConvNetError("%s: %s is marked empty but its dimensions %s are not"
                                  % (self.path, _clip_where(what), _dims(dims)))
        if cls == "cell":
            return np.empty(dims, dtype=object)
        if cls in _H5_NUMERIC:
            return np.zeros(dims, dtype=_H5_NUMERIC[cls])
        return np.zeros((0, 0))

    def _struct_group(self, group, depth, what):
        keys = list(group.keys())
        self.budget.charge(len(keys) * (_VALUE_COST // 4), what)
        self.budget.work(len(keys) * _ELEMENT_WORK, what)  # listing and opening each member
        fields = self._attr(group, "MATLAB_fields", what)
        if fields is not None:
            names = [b"".join(np.asarray(n).ravel().tolist()).decode("latin-1") for n in fields]
        else:
            names = keys
        present = set(keys)
        names = [n for n in names if n in present and n not in self.skip_fields]
        shown = {n: _show(n, 64) for n in names}
        # A struct array stores each field as a dataset of references with no MATLAB_class.
        array_fields = [n for n in names if isinstance(group[n], self.h5py.Dataset)
                        and group[n].dtype.kind == "O" and "MATLAB_class" not in group[n].attrs]
        if names and len(array_fields) == len(names):
            columns = {n: self._refs(group[n], "%s.%s" % (what, shown[n])) for n in names}
            shape = columns[names[0]].shape
            if any(c.shape != shape for c in columns.values()):
                raise MatConvNetError("%s: %s is a struct array whose fields differ in shape"
                                      % (self.path, _clip_where(what)))
            count = _count(shape)
            self.budget.charge(count * (_RECORD_COST + _FIELD_COST * len(names) + _SLOT_COST),
                               what, shape)
            flat = {n: c.ravel(order="F") for n, c in columns.items()}
            records = []
            for i in range(count):
                records.append({n: self._follow(flat[n][i], depth + 1,
                                                "%s(%d).%s" % (what, i + 1, shown[n]))
                                for n in names})
            return StructArray(shape, names, records)
        self.budget.charge(_RECORD_COST + _FIELD_COST * len(names), what)
        record = {n: self.value(group[n], depth + 1, "%s.%s" % (what, shown[n])) for n in names}
        return StructArray((1, 1), names, [record])
