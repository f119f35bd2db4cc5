"""MATLAB values and plain Python values, both ways, as MatConvNet files hold them.

Reading (see :mod:`fastdecode.matconvnet` for the mapping): :func:`from_matlab` turns a value of
the MAT reader into dicts, lists, str, numbers, tuples and arrays; :func:`text`, :func:`strings`,
:func:`cell_items`, :func:`numeric`, :func:`ints` and :func:`scalar` read one field of a layer and
raise ValueError when it is not what MatConvNet writes there. Writing: :func:`to_matlab`,
:func:`row` and :func:`cell` build what ``scipy.io.savemat`` writes as the matching MATLAB value.
"""

import numbers

import numpy as np

from ._matfile import Opaque, StructArray
from ._validation import printable

DROP = object()


def from_matlab(v):
    """A MATLAB value as a plain Python value (see :mod:`fastdecode.matconvnet`); DROP for opaque
    ones (objects, function handles)."""
    if isinstance(v, Opaque):
        return DROP
    if isinstance(v, StructArray):
        recs = [{k: x for k, x in ((k, from_matlab(x)) for k, x in r.items()) if x is not DROP}
                for r in v.records]
        if v.shape == (1, 1):
            return recs[0]
        return recs if recs else {}
    if isinstance(v, (str, list)):
        return v
    if isinstance(v, np.ndarray):
        if v.dtype == object:
            return [x for x in (from_matlab(x) for x in v.ravel(order="F")) if x is not DROP]
        if v.size == 0:
            return None
        if v.dtype.kind == "b":
            items = [bool(x) for x in v.ravel(order="F")]
        elif v.dtype.kind in "iuf":
            items = [number(x) for x in v.ravel(order="F")]
        else:
            return v
        if v.size == 1:
            return items[0]
        if v.ndim == 2 and min(v.shape) == 1:
            return tuple(items)
        return v.copy()
    return v


def number(x):
    """A numpy scalar as int when integral (and exact in a double), else as its Python value."""
    x = x.item()
    if isinstance(x, float) and x.is_integer() and abs(x) < 2**53:
        return int(x)
    return x


def text(v):
    """A char value as str ('' for absent or non-text)."""
    if isinstance(v, str):
        return v
    if isinstance(v, list) and len(v) == 1 and isinstance(v[0], str):
        return v[0]
    if isinstance(v, np.ndarray) and v.dtype == object and v.size == 1:
        return text(v.flat[0])
    return ""


def strings(v):
    """A cell array of strings (or one string) as a list of str."""
    if v is None:
        return []
    if isinstance(v, str):
        return [v] if v else []
    items = v.ravel(order="F") if isinstance(v, np.ndarray) and v.dtype == object else v
    if isinstance(items, (list, np.ndarray)) and (not isinstance(items, np.ndarray)
                                                   or items.dtype == object):
        out = []
        for i, x in enumerate(items):
            if not _is_text(x):
                raise ValueError("expected a cell array of strings, item %d is %s"
                                 % (i + 1, describe(x)))
            out.append(text(x))
        return out
    raise ValueError("expected a cell array of strings, got %s" % describe(v))


def _is_text(v):
    """Whether ``text`` reads v as a string (empty arrays read as '')."""
    if isinstance(v, str):
        return True
    if isinstance(v, list):
        return len(v) == 1 and isinstance(v[0], str)
    if isinstance(v, np.ndarray):
        return v.size == 0 or (v.dtype == object and v.size == 1 and _is_text(v.flat[0]))
    return False


#: Longest name or type from a file shown in a message.
NAME_LIMIT = 120


def shown(text):
    """A name or type from the file, for a message: control characters escaped, length bounded."""
    text = printable(text[:4 * NAME_LIMIT])
    return text if len(text) <= NAME_LIMIT else text[:NAME_LIMIT - 3] + "..."


def names(values, limit=8):
    """Names from the file, for a message: "('a', 'b', ...)"."""
    listed = ", ".join("'%s'" % shown(n) for n in values[:limit])
    return "(%s%s)" % (listed, ", ... (%d in all)" % len(values) if len(values) > limit else "")


def describe(v):
    """What a MATLAB value is, for messages: 'a 1x3 double array', 'a struct', ..."""
    if isinstance(v, np.ndarray):
        if v.dtype == object:
            return "a %s cell array" % mshape(v)
        return "a %s %s array" % (mshape(v), v.dtype)
    return "a %s" % type(v).__name__


def string_list(v):
    """Class names and the like as a list of str (numbers written as text)."""
    if v is None:
        return []
    if isinstance(v, str):
        return [v]
    if isinstance(v, (list, tuple)):
        return [x if isinstance(x, str) else str(x) for x in v]
    if isinstance(v, np.ndarray):
        return [str(number(x)) for x in v.ravel(order="F")]
    return [str(v)]


def cell_items(v):
    """The items of a cell array, column-major (an empty list for an absent or empty cell)."""
    if isinstance(v, np.ndarray) and v.dtype == object:
        return list(v.ravel(order="F"))
    if v is None or (isinstance(v, np.ndarray) and v.size == 0):
        return []
    raise ValueError("expected a cell array, got %s" % type(v).__name__)


def numeric(what, v):
    """A real numeric array, as float (small integer classes as float32); ValueError otherwise."""
    if not isinstance(v, np.ndarray) or v.dtype.kind not in "biuf":
        raise ValueError("%s must be a real numeric array, got %s"
                         % (what, type(v).__name__ if not isinstance(v, np.ndarray) else v.dtype))
    if v.dtype.kind == "f":
        return v
    return v.astype(np.float32 if v.dtype.itemsize <= 2 else np.float64)


def ints(what, v):
    """A MATLAB hyper-parameter (scalar, pair or 4-vector, any numeric class) as ints."""
    if v is None:
        raise ValueError("%s is missing" % what)
    a = np.asarray(v)
    if a.dtype.kind not in "biuf" or a.size == 0:
        raise ValueError("%s must be numeric, got %r" % (what, v))
    values = a.ravel(order="F").tolist()
    for x in values:
        if not float(x).is_integer():
            raise ValueError("%s must be integers, got %s" % (what, listing(values)))
    values = [int(x) for x in values]
    return values[0] if len(values) == 1 else tuple(values)


def scalar(what, v, default):
    """A MATLAB number as float, ``default`` when absent or empty; ValueError otherwise."""
    if v is None or (isinstance(v, np.ndarray) and v.size == 0):
        return default
    a = np.asarray(v)
    if a.dtype.kind not in "biuf" or a.size != 1:
        raise ValueError("%s must be a number, got %r" % (what, v))
    return float(a.ravel()[0])


def mshape(a, limit=8):
    """A shape in MATLAB's notation, e.g. ``5x5x1x20`` (at most ``limit`` dimensions shown)."""
    shape = a.shape if hasattr(a, "shape") else tuple(a)
    shown = "x".join(str(int(s)) for s in shape[:limit])
    return shown if len(shape) <= limit else "%sx... (%d dimensions)" % (shown, len(shape))


def listing(values, limit=8):
    """A list of values for a message, at most ``limit`` of them shown."""
    values = list(values)
    if len(values) <= limit:
        return "[%s]" % ", ".join(map(str, values))
    return "[%s, ... (%d values)]" % (", ".join(map(str, values[:limit])), len(values))


def row(values):
    """Numbers as a 1xN double row vector."""
    return np.asarray(values, dtype=np.float64).reshape(1, -1)


def cell(items):
    """Values as a 1xN cell array."""
    out = np.empty((1, len(items)), dtype=object)
    for i, x in enumerate(items):
        out[0, i] = x
    return out


def to_matlab(v, where):
    """A Python value as what scipy.io.savemat writes as the matching MATLAB value."""
    if v is None:
        return np.zeros((0, 0))
    if isinstance(v, (bool, np.bool_)):
        return np.array([[bool(v)]])
    if isinstance(v, numbers.Real):
        return float(v)
    if isinstance(v, str):
        return v
    if isinstance(v, dict):
        return {str(k): to_matlab(x, "%s.%s" % (where, k)) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        # Sequences of numbers are MATLAB row vectors (they load back as tuples).
        if v and all(isinstance(x, (bool, np.bool_)) for x in v):
            return np.array([list(v)], dtype=bool)
        if v and all(isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_))
                     for x in v):
            return row(v)
        return cell([to_matlab(x, "%s{%d}" % (where, i + 1)) for i, x in enumerate(v)])
    if isinstance(v, np.ndarray):
        if v.dtype == object:
            return cell([to_matlab(x, where) for x in v.ravel()])
        return v
    raise TypeError("%s is a %s, which cannot be written to a MAT file"
                    % (where, type(v).__name__))


#: Elements transposed at a time when filters are reordered in place (the temporary's size).
IN_PLACE_BLOCK = 1 << 18


def filters_in_place(w4):
    """The F-contiguous MATLAB filters w4 [H W C K] as a C-contiguous (K, C, H, W) array in
    the same memory: each H x W plane, stored column by column, is transposed to rows, a block
    of planes at a time (the only extra memory)."""
    H, W, C, K = w4.shape
    flat = w4.reshape(-1, order="F")            # a view: w4 is F-contiguous
    if H > 1 and W > 1:
        planes = flat.reshape(K * C, W, H)      # [plane, column, row]
        step = max(1, IN_PLACE_BLOCK // (H * W))
        for start in range(0, K * C, step):
            block = planes[start:start + step]
            block.reshape(-1)[:] = block.transpose(0, 2, 1).reshape(-1)  # reshape copies
    return flat.reshape(K, C, H, W)
