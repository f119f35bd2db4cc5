"""MAT v7.3 (HDF5) files, read lazily through h5py for :func:`fastdecode._matfile.read_mat`:
every dataset's shape charged to the budget before it is read, references followed once."""

import numpy as np

from ._matfile_v5 import chars_to_text
from ._matfile import (MatConvNetError, Opaque, StructArray, _CHAR_COST, _ELEMENT_WORK,
                       _FIELD_COST, _H5_VISIT_WORK, _KINDS, _MAX_DEPTH, _MAX_DIMS, _MAX_ELEMENTS,
                       _RECORD_COST, _REF_COST, _ROW_COST, _SLOT_COST, _VALUE_COST, _check_expected,
                       _clip_where, _count, _dims, _guarded, _show)


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


def read_hdf5(path, names, budget, skip_fields, expect=None):
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
            return chars_to_text(data.T)
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
