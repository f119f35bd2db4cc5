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

from ._validation import format_bytes

__all__ = ["MatConvNetError", "StructArray", "Opaque", "read_mat", "DEFAULT_FILE_MEMORY_LIMIT"]

#: Default budget, in bytes, for everything read from one file.
DEFAULT_FILE_MEMORY_LIMIT = 2 * 2**30

_MAX_DEPTH = 64          # nesting of cells and structs
_CHUNK = 1 << 20         # bytes decompressed or read per step when skipping


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


class _Budget:
    """Bytes the reader may still allocate; ``charge`` refuses an allocation beyond it."""

    def __init__(self, path, limit):
        self.path = path
        self.limit = int(limit)
        self.used = 0

    def charge(self, nbytes, what, shape=None):
        if self.used + nbytes > self.limit:
            where = "" if shape is None else " (MATLAB shape %s)" % "x".join(map(str, shape))
            raise MatConvNetError(
                "%s: %s%s needs %s, beyond the memory limit of %s (%s already read); the file is "
                "refused before that memory is spent. Pass a larger memory_limit if the file is "
                "trusted." % (self.path, what, where, format_bytes(nbytes),
                              format_bytes(self.limit), format_bytes(self.used)))
        self.used += nbytes


def read_mat(path, names=None, *, memory_limit=None, skip_fields=()):
    """Read the variables of a MAT file as ``{name: value}``.

    ``names``: a collection of variable names to read (others are skipped without being
    decompressed); None reads all. ``memory_limit``: bytes the values may take (default 2 GiB).
    ``skip_fields``: struct fields, at any depth, passed over without being kept (e.g. momentum).
    Raises FileNotFoundError for a missing path and MatConvNetError (a ValueError) for anything
    that is not a readable MAT file.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError("MAT file not found: %s" % path)
    if os.path.isdir(path):
        raise MatConvNetError("%s: is a directory, not a MAT file" % path)
    limit = DEFAULT_FILE_MEMORY_LIMIT if memory_limit is None else memory_limit
    if isinstance(limit, bool) or not isinstance(limit, numbers.Real) or not limit > 0 \
            or not np.isfinite(limit):
        raise ValueError("memory_limit must be a positive number of bytes, got %r"
                         % (memory_limit,))
    budget = _Budget(path, int(limit))
    with open(path, "rb") as f:
        header = f.read(128)
    kind = _sniff(path, header)
    if kind == "hdf5":
        return _read_hdf5(path, names, budget, frozenset(skip_fields))
    return _V5Reader(path, budget, frozenset(skip_fields)).read(names)


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
        raise MatConvNetError("%s: not a MAT file (bad endian indicator %r)" % (path, endian))
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


class _FileStream:
    """Bytes of an uncompressed region of the file, refusing reads past its end."""

    def __init__(self, f, end, path):
        self.f, self.end, self.path = f, end, path

    def tell(self):
        return self.f.tell()

    def read(self, n, what):
        if self.f.tell() + n > self.end:
            raise MatConvNetError("%s: truncated file: %s needs %d bytes, %d remain"
                                  % (self.path, what, n, self.end - self.f.tell()))
        buf = bytearray(n)
        got = self.f.readinto(buf)
        if got != n:
            raise MatConvNetError("%s: truncated file while reading %s" % (self.path, what))
        return buf

    def skip(self, n, what):
        if self.f.tell() + n > self.end:
            raise MatConvNetError("%s: truncated file: %s needs %d bytes, %d remain"
                                  % (self.path, what, n, self.end - self.f.tell()))
        self.f.seek(n, os.SEEK_CUR)


class _ZlibStream:
    """The decompressed bytes of one compressed element, produced only as they are read."""

    def __init__(self, f, nbytes, path):
        self.f, self.left, self.path = f, nbytes, path
        self.z = zlib.decompressobj()
        self.buf = b""
        self.pos = 0  # decompressed bytes consumed

    def tell(self):
        return self.pos

    def _more(self, want):
        """Decompress at most ``want`` more bytes into self.buf; False at the stream's end."""
        src = self.z.unconsumed_tail
        if not src:
            if self.left <= 0:
                return False
            src = self.f.read(min(self.left, _CHUNK))
            if not src:
                raise MatConvNetError("%s: truncated file inside a compressed element" % self.path)
            self.left -= len(src)
        try:
            out = self.z.decompress(src, max(want, 1))
        except zlib.error as exc:
            raise MatConvNetError("%s: corrupt compressed data (%s)" % (self.path, exc)) from None
        self.buf += out
        return bool(out) or bool(self.z.unconsumed_tail) or self.left > 0

    def read(self, n, what):
        out = bytearray(n)
        view = memoryview(out)
        filled = 0
        while filled < n:
            if not self.buf and not self._more(min(n - filled, _CHUNK)):
                raise MatConvNetError("%s: truncated data: %s needs %d bytes, the compressed "
                                      "element ends after %d" % (self.path, what, n, filled))
            take = min(len(self.buf), n - filled)
            view[filled:filled + take] = self.buf[:take]
            self.buf = self.buf[take:]
            filled += take
        self.pos += n
        return out

    def skip(self, n, what):
        left = n
        while left:
            if not self.buf and not self._more(min(left, _CHUNK)):
                raise MatConvNetError("%s: truncated data while skipping %s" % (self.path, what))
            take = min(len(self.buf), left)
            self.buf = self.buf[take:]
            left -= take
        self.pos += n


class _V5Reader:
    def __init__(self, path, budget, skip_fields):
        self.path = path
        self.budget = budget
        self.skip_fields = skip_fields

    def read(self, names):
        out = {}
        size = os.path.getsize(self.path)
        with open(self.path, "rb") as f:
            header = f.read(128)
            self.order = "<" if header[126:128] == b"IM" else ">"
            top = _FileStream(f, size, self.path)
            while f.tell() < size:
                start = f.tell()
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
                    stream = _ZlibStream(f, nbytes, self.path)
                    itype, inbytes, _ = self._tag(stream, "a compressed variable's tag")
                    if itype != _MI_MATRIX:
                        raise self._error("a compressed element at byte %d holds data of type "
                                          "%d, not a MATLAB array" % (start, itype))
                    name, value = self._matrix(stream, inbytes, 0, names, "variable")
                    f.seek(end)
                elif mtype == _MI_MATRIX:
                    name, value = self._matrix(top, nbytes, 0, names, "variable")
                    f.seek(end + (-nbytes % 8))
                else:
                    raise MatConvNetError("%s: unexpected element of type %d at byte %d"
                                          % (self.path, mtype, start))
                if value is not _SKIPPED:
                    out[name] = value
                if f.tell() > size:
                    break
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
                raise MatConvNetError("%s: corrupt small data element in %s" % (self.path, what))
            return first & 0xFFFF, nbytes, raw[4:4 + nbytes]
        return first, second, None

    def _element(self, stream, what, expect=None):
        """(type, bytes) of a whole small element such as array flags, dims or names."""
        mtype, nbytes, small = self._tag(stream, what)
        if expect is not None and mtype not in expect:
            raise self._error("corrupt file: %s has data type %d" % (what, mtype))
        if small is not None:
            return mtype, small
        if nbytes > 1 << 20:
            raise self._error("corrupt file: %s declares %d bytes" % (what, nbytes))
        data = bytes(stream.read(nbytes, what))
        stream.skip(-nbytes % 8, what)
        return mtype, data

    def _numbers(self, mtype, data, what):
        if mtype not in _MI_TYPES:
            raise self._error("corrupt file: %s has data type %d" % (what, mtype))
        dt = np.dtype(_MI_TYPES[mtype]).newbyteorder(self.order)
        if len(data) % dt.itemsize:
            raise MatConvNetError("%s: corrupt file: %s has %d bytes, not a whole number of %s"
                                  % (self.path, what, len(data), dt))
        return np.frombuffer(data, dtype=dt)

    def _matrix(self, stream, nbytes, depth, names, what):
        """Parse one miMATRIX element body of ``nbytes`` bytes; returns (name, value)."""
        if nbytes == 0:
            return "", np.zeros((0, 0))
        if depth > _MAX_DEPTH:
            raise MatConvNetError("%s: %s is nested more than %d levels deep"
                                  % (self.path, what, _MAX_DEPTH))
        start = stream.tell()
        end = start + nbytes
        mtype, flags = self._element(stream, what + " flags", expect=(6,))
        if len(flags) < 8:
            raise MatConvNetError("%s: corrupt array flags in %s" % (self.path, what))
        word = struct.unpack(self.order + "I", flags[:4])[0]
        cls = word & 0xFF
        is_complex, is_logical = bool(word & 0x800), bool(word & 0x200)
        if cls == 17:  # MCOS opaque object: no dims in the usual place; skip it whole
            stream.skip(end - stream.tell(), what)
            return "", Opaque(_MX_OPAQUE_KINDS[17])
        mtype, dims_raw = self._element(stream, what + " dimensions", expect=(5,))
        dims = tuple(int(d) for d in self._numbers(mtype, dims_raw, what + " dimensions"))
        if len(dims) < 2 or min(dims) < 0:
            raise MatConvNetError("%s: corrupt dimensions %s in %s" % (self.path, dims, what))
        mtype, name_raw = self._element(stream, what + " name", expect=(1, 2))
        name = name_raw.decode("latin-1")
        if depth == 0:
            what = name
            if names is not None and name not in names:
                return name, _SKIPPED  # the caller seeks past the whole element
        count = 1
        for d in dims:
            count *= d
        if cls in _MX_NUMERIC:
            value = self._numeric(stream, cls, dims, count, is_complex, is_logical, what)
        elif cls == _MX_CHAR:
            value = self._char(stream, dims, count, what)
        elif cls == _MX_CELL:
            if count * 8 > nbytes:
                raise MatConvNetError("%s: corrupt file: %s declares %d cells in %d bytes"
                                      % (self.path, what, count, nbytes))
            self.budget.charge(count * 8, what, dims)
            items = []
            for i in range(count):
                t, n, _ = self._tag(stream, what)
                if t != _MI_MATRIX:
                    raise MatConvNetError("%s: corrupt cell element in %s" % (self.path, what))
                items.append(self._matrix(stream, n, depth + 1, None, "%s{%d}" % (what, i + 1))[1])
            value = np.empty(count, dtype=object)
            value[:] = items
            value = value.reshape(dims, order="F")
        elif cls == _MX_STRUCT:
            value = self._struct(stream, dims, count, nbytes, depth, what)
        elif cls in _MX_OPAQUE_KINDS:
            value = Opaque(_MX_OPAQUE_KINDS[cls])
        else:
            raise MatConvNetError("%s: %s has unknown MATLAB class %d" % (self.path, what, cls))
        here = stream.tell()
        if here > end:
            raise MatConvNetError("%s: corrupt file: %s overruns its declared %d bytes"
                                  % (self.path, what, nbytes))
        stream.skip(end - here, what)
        return name, value

    def _data(self, stream, what, count, cls_dtype, dims):
        """Read one numeric data subelement, checking its size against the budget first."""
        mtype, nbytes, small = self._tag(stream, what)
        if mtype not in _MI_TYPES:
            raise self._error("corrupt file: %s has data type %d" % (what, mtype))
        if small is None:
            storage = np.dtype(_MI_TYPES[mtype]).itemsize
            if nbytes != count * storage:
                raise MatConvNetError("%s: corrupt file: %s declares MATLAB shape %s (%d values) "
                                      "but holds %d bytes of %s"
                                      % (self.path, what, "x".join(map(str, dims)), count, nbytes,
                                         np.dtype(_MI_TYPES[mtype])))
            # frombuffer views the bytes read; a conversion to the class's type copies them.
            stored = np.dtype(_MI_TYPES[mtype]).newbyteorder(self.order)
            converted = 0 if stored == cls_dtype else count * cls_dtype.itemsize
            self.budget.charge(nbytes + converted, what, dims)
            data = stream.read(nbytes, what)
            stream.skip(-nbytes % 8, what)
        else:
            data = small
        values = self._numbers(mtype, data, what)
        if values.size != count:
            raise MatConvNetError("%s: corrupt file: %s declares %d values and holds %d"
                                  % (self.path, what, count, values.size))
        return values

    def _numeric(self, stream, cls, dims, count, is_complex, is_logical, what):
        dt = np.dtype(_MX_NUMERIC[cls])
        real = self._data(stream, what, count, dt, dims).astype(dt, copy=False)
        if is_complex:
            imag = self._data(stream, what + " (imaginary part)", count, dt, dims)
            real = real + 1j * imag.astype(dt)
        if is_logical:
            real = real.astype(bool)
        return real.reshape(dims, order="F")

    def _char(self, stream, dims, count, what):
        mtype, nbytes, small = self._tag(stream, what)
        if small is None:
            self.budget.charge(2 * nbytes, what, dims)
            data = bytes(stream.read(nbytes, what))
            stream.skip(-nbytes % 8, what)
        else:
            data = small
        if mtype == 16:  # miUTF8: characters, not code units
            text = data.decode("utf-8", errors="replace")
            codes = [ord(c) for c in text]
        else:
            codes = self._numbers(mtype, data, what).tolist()
        if len(codes) != count:
            raise MatConvNetError("%s: corrupt file: char array %s declares %d characters and "
                                  "holds %d" % (self.path, what, count, len(codes)))
        return _chars_to_text(np.array(codes, dtype=np.int64).reshape(dims, order="F"))

    def _struct(self, stream, dims, count, nbytes, depth, what):
        mtype, raw = self._element(stream, what + " field name length", expect=(5,))
        (length,) = self._numbers(mtype, raw, what).tolist()[:1] or [0]
        if length < 1 or length > 4096:
            raise self._error("corrupt field name length %d in %s" % (length, what))
        mtype, raw = self._element(stream, what + " field names", expect=(1, 2))
        fields = [raw[i:i + length].split(b"\0", 1)[0].decode("latin-1")
                  for i in range(0, len(raw), length)]
        if count * len(fields) * 8 > nbytes:
            raise MatConvNetError("%s: corrupt file: %s declares %d elements of %d fields in %d "
                                  "bytes" % (self.path, what, count, len(fields), nbytes))
        self.budget.charge(count * (len(fields) + 1) * 8, what, dims)
        records = []
        for i in range(count):
            rec = {}
            for field in fields:
                t, n, _ = self._tag(stream, what)
                if t != _MI_MATRIX:
                    raise self._error("corrupt struct field %s.%s" % (what, field))
                sub = "%s(%d).%s" % (what, i + 1, field) if count > 1 else "%s.%s" % (what, field)
                if field in self.skip_fields:
                    stream.skip(n, sub)
                    continue
                rec[field] = self._matrix(stream, n, depth + 1, None, sub)[1]
            records.append(rec)
        return StructArray(dims, fields, records)


_SKIPPED = object()


def _chars_to_text(codes):
    """MATLAB char codes (MATLAB shape) -> str for a row or an empty array, list of rows else."""
    if codes.size == 0:
        return ""
    if codes.ndim > 2:
        codes = codes.reshape(codes.shape[0], -1, order="F")
    codes = np.where((codes < 0) | (codes > 0x10FFFF), 0xFFFD, codes)  # not a character
    rows = ["".join(map(chr, row)) for row in codes.tolist()]
    return rows[0] if len(rows) == 1 else rows


# --- MAT v7.3 (HDF5) ----------------------------------------------------------------------------

_H5_NUMERIC = {"double": "f8", "single": "f4", "int8": "i1", "uint8": "u1", "int16": "i2",
               "uint16": "u2", "int32": "i4", "uint32": "u4", "int64": "i8", "uint64": "u8",
               "logical": "?"}


def _import_h5py(path):
    try:
        import h5py
    except ImportError:
        raise ImportError(
            "%s is a MATLAB v7.3 (HDF5) file; reading it needs h5py. Install it with "
            "pip install 'fastdecode[hdf5]' (or pip install h5py), or save the file from MATLAB "
            "with save(..., '-v7')." % path) from None
    return h5py


def _read_hdf5(path, names, budget, skip_fields):
    h5py = _import_h5py(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise MatConvNetError("%s: not a readable MAT v7.3 (HDF5) file: %s" % (path, exc)) from None
    try:
        reader = _H5Reader(path, f, budget, h5py, skip_fields)
        out = {}
        for key in f.keys():
            if key.startswith("#"):  # '#refs#' (cell targets), '#subsystem#' (MCOS object data)
                continue
            if names is not None and key not in names:
                continue
            out[key] = reader.value(f[key], 0, "variable %r" % key)
        return out
    except MatConvNetError:
        raise
    except (OSError, KeyError, RuntimeError, ValueError, TypeError, AttributeError,
            IndexError) as exc:
        raise MatConvNetError("%s: corrupt MAT v7.3 (HDF5) file: %s" % (path, exc)) from None
    finally:
        f.close()


def _attr_str(obj, name):
    v = obj.attrs.get(name)
    if v is None:
        return None
    if isinstance(v, bytes):
        return v.decode("latin-1")
    if isinstance(v, np.ndarray) and v.dtype.kind == "S":
        return b"".join(v.ravel().tolist()).decode("latin-1")
    return str(v)


class _H5Reader:
    def __init__(self, path, f, budget, h5py, skip_fields):
        self.path, self.f, self.budget, self.h5py = path, f, budget, h5py
        self.skip_fields = skip_fields

    def _deref(self, ref, what):
        if not ref:
            raise MatConvNetError("%s: %s holds a null reference" % (self.path, what))
        try:
            return self.f[ref]
        except (KeyError, ValueError, OSError) as exc:
            raise MatConvNetError("%s: %s holds a broken reference (%s)" % (self.path, what, exc)) \
                from None

    def _refs(self, ds, what):
        """The object references of a cell or struct-field dataset, MATLAB shape."""
        self.budget.charge(ds.size * 8, what, ds.shape[::-1])
        return np.asarray(ds[()]).T

    def value(self, obj, depth, what):
        if depth > _MAX_DEPTH:
            raise MatConvNetError("%s: %s is nested more than %d levels deep (or refers to itself)"
                                  % (self.path, what, _MAX_DEPTH))
        cls = _attr_str(obj, "MATLAB_class")
        if isinstance(obj, self.h5py.Group):
            if cls not in (None, "struct"):
                return Opaque(cls)
            return self._struct_group(obj, depth, what)
        if not isinstance(obj, self.h5py.Dataset):  # a named datatype or another HDF5 object
            return Opaque(type(obj).__name__)
        if "MATLAB_object_decode" in obj.attrs or cls in ("function_handle",):
            return Opaque(cls or "object")
        if "MATLAB_sparse" in obj.attrs:
            return Opaque("sparse")
        if obj.attrs.get("MATLAB_empty", 0):
            return self._empty(obj, cls, what)
        if cls == "cell" or (cls is None and obj.dtype.kind == "O"):
            refs = self._refs(obj, what)
            items = [self.value(self._deref(r, what), depth + 1, "%s{%d}" % (what, i + 1))
                     for i, r in enumerate(refs.ravel(order="F"))]
            out = np.empty(len(items), dtype=object)
            out[:] = items
            return out.reshape(refs.shape, order="F")
        if cls == "char":
            self.budget.charge(obj.size * 8, what, obj.shape[::-1])
            return _chars_to_text(np.asarray(obj[()], dtype=np.int64).T)
        if cls in _H5_NUMERIC or (cls is None and obj.dtype.kind in "biuf"):
            dt = obj.dtype
            self.budget.charge(obj.size * dt.itemsize, what, obj.shape[::-1])
            data = np.asarray(obj[()])
            if data.dtype.names and {"real", "imag"} <= set(data.dtype.names):
                data = data["real"] + 1j * data["imag"]
            if cls == "logical":
                data = data.astype(bool)
            if data.ndim < 2:
                data = data.reshape((1,) * (2 - data.ndim) + data.shape)
            return data.T
        return Opaque(cls or str(obj.dtype))

    def _empty(self, obj, cls, what):
        dims = tuple(int(d) for d in np.asarray(obj[()]).ravel()[:8])
        count = int(np.prod(dims)) if dims else 0
        if cls == "char":
            return ""
        if cls == "cell":
            return np.empty(dims if len(dims) >= 2 else (0, 0), dtype=object)
        if cls == "struct":
            self.budget.charge(count * 8, what, dims)
            return StructArray(dims, [], [{} for _ in range(count)])
        if cls in _H5_NUMERIC:
            return np.zeros(dims if count == 0 and len(dims) >= 2 else (0, 0),
                            dtype=_H5_NUMERIC[cls])
        return np.zeros((0, 0))

    def _struct_group(self, group, depth, what):
        fields = group.attrs.get("MATLAB_fields")
        if fields is not None:
            names = [b"".join(np.asarray(n).ravel().tolist()).decode("latin-1") for n in fields]
        else:
            names = list(group.keys())
        names = [n for n in names if n in group and n not in self.skip_fields]
        # A struct array stores each field as a dataset of references with no MATLAB_class.
        array_fields = [n for n in names if isinstance(group[n], self.h5py.Dataset)
                        and group[n].dtype.kind == "O" and "MATLAB_class" not in group[n].attrs]
        if names and len(array_fields) == len(names):
            columns = {n: self._refs(group[n], "%s.%s" % (what, n)) for n in names}
            shape = columns[names[0]].shape
            if any(c.shape != shape for c in columns.values()):
                raise MatConvNetError("%s: %s is a struct array whose fields differ in shape"
                                      % (self.path, what))
            flat = {n: c.ravel(order="F") for n, c in columns.items()}
            records = []
            for i in range(len(flat[names[0]])):
                records.append({n: self.value(self._deref(flat[n][i], what), depth + 1,
                                              "%s(%d).%s" % (what, i + 1, n)) for n in names})
            return StructArray(shape, names, records)
        record = {n: self.value(group[n], depth + 1, "%s.%s" % (what, n)) for n in names}
        return StructArray((1, 1), names, [record])
