"""MAT v5/v6/v7 files, parsed element by element for :func:`fastdecode._matfile.read_mat`:
compressed elements streamed through zlib, every size charged to the budget before it is
allocated."""

import os
import struct
import zlib

import numpy as np

from ._matfile import (MatConvNetError, Opaque, StructArray, _CHAR_COST, _CHUNK, _ELEMENT_WORK,
                       _FIELD_COST, _MAX_DEPTH, _MAX_DIMS, _MAX_ELEMENTS, _MIN_INFLATE,
                       _RECORD_COST, _ROW_COST, _SLOT_COST, _VALUE_COST, _check_expected,
                       _clip_where, _count, _dims, _show)


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


class V5Reader:
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
        return chars_to_text(codes.reshape(dims, order="F"))

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


def chars_to_text(codes):
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
