"""Input checks shared by the public API. Every public function calls these before compiled code."""

import numbers
import operator
import os
import sys

import numpy as np

from . import _openmp
from ._engine import _checks, tuning

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

#: Default budget, in bytes, for one array a function allocates (outputs and intermediates).
DEFAULT_MEMORY_LIMIT = 4 * 2**30


def as_int(name, value, *, minimum=None):
    """An integral value (int, numpy integer, or a float with an integral value) as a Python int."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError("%s must be an integer, got a boolean %r" % (name, value))
    if isinstance(value, numbers.Integral):
        out = operator.index(value)
    elif isinstance(value, numbers.Real) and np.isfinite(value) and float(value).is_integer():
        out = int(value)
    else:
        raise ValueError("%s must be an integer, got %r" % (name, value))
    if minimum is not None and out < minimum:
        raise ValueError("%s must be >= %d, got %d" % (name, minimum, out))
    if abs(out) > sys.maxsize:  # compiled code takes C integers
        raise ValueError("%s must be at most %d, got %d" % (name, sys.maxsize, out))
    return out


def as_pair(name, value, *, minimum=None):
    """An int or a pair of ints (rows, columns) as a tuple of two ints."""
    if np.ndim(value) == 0:
        v = as_int(name, value, minimum=minimum)
        return (v, v)
    values = list(np.asarray(value, dtype=object).ravel())
    if len(values) == 1:
        v = as_int(name, values[0], minimum=minimum)
        return (v, v)
    if len(values) != 2:
        raise ValueError("%s must be an int or a pair (rows, columns), got %r" % (name, value))
    return tuple(as_int(name, v, minimum=minimum) for v in values)


def as_pad(name, value):
    """An int, a pair (rows, cols) or a 4-tuple (top, bottom, left, right) as 4 non-negative ints."""
    if np.ndim(value) == 0:
        v = as_int(name, value, minimum=0)
        return (v, v, v, v)
    values = list(np.asarray(value, dtype=object).ravel())
    if len(values) == 1:
        v = as_int(name, values[0], minimum=0)
        return (v, v, v, v)
    if len(values) == 2:
        a, b = (as_int(name, v, minimum=0) for v in values)
        return (a, a, b, b)
    if len(values) != 4:
        raise ValueError("%s must be an int or (top, bottom, left, right), got %r" % (name, value))
    return tuple(as_int(name, v, minimum=0) for v in values)


def as_flag(name, value):
    """True or False (also numpy bools and the ints 0 and 1, as ONNX attributes are)."""
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, (int, np.integer))
                                                and value in (0, 1)):
        return bool(value)
    raise TypeError("%s must be True or False, got %r" % (name, value))


def printable(name):
    """A layer name with control characters escaped, for messages ("<unnamed>" for None)."""
    if name is None:
        return "<unnamed>"
    return name.encode("unicode_escape").decode("ascii") if not name.isprintable() else name


def _available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_threads(n_threads):
    """None means every core OpenMP may use; otherwise a positive int.

    Counts beyond the cores (and OpenMP's own maximum) are capped there: results are the same
    for any thread count, and asking OpenMP for thousands of threads would abort the process.
    """
    most = max(1, _openmp.max_threads(), _available_cores())
    if n_threads is None:
        return max(1, _openmp.max_threads())
    return min(as_int("n_threads", n_threads, minimum=1), most)



#: The exponent field of float32 and float64: all its bits set mark NaN and inf.
_EXPONENT_BITS = {np.dtype(np.float32): (np.uint32, 0x7F800000),
                  np.dtype(np.float64): (np.uint64, 0x7FF0000000000000)}


def all_finite(arr):
    """Whether an array holds no NaN and no inf. Large contiguous float32/float64 arrays take
    one parallel pass over their bit patterns (default thread count, no temporary); any other
    array numpy's isfinite."""
    bits = _EXPONENT_BITS.get(arr.dtype) if type(arr) is np.ndarray else None
    if (bits is not None and arr.size >= tuning.PARALLEL_CHECK_ELEMENTS
            and (arr.flags.c_contiguous or arr.flags.f_contiguous)):
        view, exponent = bits
        flat = arr.ravel(order="K").view(view)
        block = 1 << 16
        threads = min(resolve_threads(None), -(-flat.size // block))
        return _checks.count_nonfinite_blocks(flat, view(exponent), block, threads) == 0
    return bool(np.isfinite(arr).all())


def float_array(name, a, *, ndim=None, dtype=None, finite=True):
    """A C-contiguous float32/float64 array; integer and bool inputs become float64 (or ``dtype``)."""
    if isinstance(a, np.ndarray):
        arr = a
    else:
        try:
            arr = np.asarray(a)
        except Exception as exc:
            raise TypeError("%s must be an array of numbers: %s" % (name, exc)) from None
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise TypeError("%s must be a real numeric array, got dtype %s" % (name, arr.dtype))
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            want = " or ".join("%d-D" % d for d in allowed)
            raise ValueError("%s must be %s, got shape %s" % (name, want, arr.shape))
    if dtype is None:
        native = arr.dtype.newbyteorder("=")  # big-endian data (from a file) keeps its precision
        dtype = native if native in FLOAT_DTYPES else np.dtype(np.float64)
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if finite:
        require_finite(name, arr)
    return arr


def require_finite(name, arr):
    """Refuse an input array holding NaN or inf, saying how many values."""
    if arr.dtype.kind == "f" and not all_finite(arr):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError("%s contains %d non-finite values (NaN or inf)" % (name, bad))


def result_dtype(*arrays):
    """float64 if any array is float64, else float32."""
    return np.result_type(*[a.dtype for a in arrays], np.float32)


def as_memory_limit(memory_limit):
    """A byte budget: None means DEFAULT_MEMORY_LIMIT; otherwise a positive number (inf allowed)."""
    if memory_limit is None:
        return DEFAULT_MEMORY_LIMIT
    if isinstance(memory_limit, (bool, np.bool_)) or not isinstance(memory_limit, numbers.Real) \
            or not memory_limit > 0:
        raise ValueError("memory_limit must be a positive number of bytes (or None for %s), got %r"
                         % (format_bytes(DEFAULT_MEMORY_LIMIT), memory_limit))
    return memory_limit


def check_bytes(what, shape, dtype, memory_limit):
    """Refuse an allocation of ``shape`` beyond ``memory_limit`` bytes, saying how much it needs."""
    n = 1
    for s in shape:
        n *= int(s)
    nbytes = n * np.dtype(dtype).itemsize
    limit = as_memory_limit(memory_limit)
    if nbytes > limit:
        raise MemoryError(
            "%s would need %s (shape %s, %s), above the memory limit of %s; pass a larger "
            "memory_limit or fewer images/filters" % (what, format_bytes(nbytes), tuple(shape),
                                                      np.dtype(dtype).name, format_bytes(limit)))
    return nbytes


def format_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1024.0


def check_finite_result(what, arr):
    """Refuse a result that overflowed its dtype (finite inputs, inf or NaN out)."""
    if not all_finite(arr):
        raise overflow_error(what, arr.dtype)
    return arr


def overflow_error(what, dtype):
    """The ValueError for a result ``what`` that overflowed ``dtype``."""
    return ValueError("%s overflows %s (finite inputs, non-finite result); use float64 inputs "
                      "or smaller values" % (what, dtype))
