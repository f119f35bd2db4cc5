"""The public primitives: correlation, substitution, unpooling, pooling and ReLU.

Each function validates and converts its inputs (shapes, dtypes, NaN and inf, memory), then
calls the engine (:mod:`fastdecode._engine`), which trusts them. Results are bitwise the same for
any ``n_threads``.
"""

import numpy as np

from ._engine import resample
from ._engine.correlation import correlate_into
from ._engine.grid import ceil_mode_pad, window_grid
from ._engine.maps import check_out, pool_into, relu_into
from ._engine.substitution import substitute_into
from ._validation import (all_finite, as_flag, as_pad, as_pair, check_bytes, float_array,
                          overflow_error, resolve_threads, result_dtype)

__all__ = ["correlate", "substitute", "unpool", "pool", "relu", "UNPOOL_METHODS"]

#: Names of the unpooling methods, for ``unpool=`` arguments: MATLAB ``imresize`` enlargements
#: ("nearest", "bilinear", "bicubic") and the adjoint of average pooling ("adjoint").
UNPOOL_METHODS = tuple(resample.METHODS)


def unpool_method(method):
    """The :class:`fastdecode._engine.resample.UnpoolMethod` record of an unpooling method
    name (or record), with the one error message for an unknown method.

    Raises
    ------
    ValueError
        When ``method`` is not one of :data:`UNPOOL_METHODS`.
    """
    if isinstance(method, resample.UnpoolMethod):
        return method
    found = resample.METHODS.get(method) if isinstance(method, str) else None
    if found is None:
        raise ValueError("unknown unpool method %r; choose one of %s"
                         % (method, ", ".join(UNPOOL_METHODS)))
    return found


def correlate(x, filters, *, stride=1, pad=0, n_threads=None, memory_limit=None):
    """Valid correlation of images with filters (MatConvNet ``vl_nnconv``, no flip).

    Parameters
    ----------
    x : array_like
        Images (N, C, H, W) or one image (C, H, W).
    filters : array_like
        Filters (K, C, h, w).
    stride : int or (int, int), optional
        Step between windows, (rows, cols).
    pad : int, (int, int) or (int, int, int, int), optional
        Zero padding: all sides, (rows, cols) or (top, bottom, left, right).
    n_threads : int, optional
        Threads to use; default all that OpenMP may use.
    memory_limit : float, optional
        Bytes the output may take (default 4 GiB).

    Returns
    -------
    numpy.ndarray
        (N, K, Ho, Wo), or (K, Ho, Wo) for one image, with
        ``Ho = (H + top + bottom - h) // sy + 1`` (and likewise Wo), in float64 if either input
        is float64, else float32.

    Raises
    ------
    ValueError
        For inputs holding NaN or inf (checked before any computation), mismatched channels,
        windows larger than the padded image, or a result that overflows its dtype.
    MemoryError
        When the output would exceed ``memory_limit``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastdecode as fd
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> fd.correlate(x, np.ones((1, 1, 2, 2)), stride=2)[0, 0]
    array([[10., 18.],
           [42., 50.]])
    """
    out, finite = correlate_finite(x, filters, stride=stride, pad=pad, n_threads=n_threads,
                                   memory_limit=memory_limit)
    if not finite:
        raise overflow_error("the correlation of x %s with filters %s"
                             % (np.shape(x), np.shape(filters)), out.dtype)
    return out


def correlate_finite(x, filters, *, stride=1, pad=0, n_threads=None, memory_limit=None,
                     out=None, finite_inputs=False, bias=None):
    """:func:`correlate` plus ``bias[k]`` on filter k, and whether that result is all finite.

    The bias is added and the result checked inside the kernel, block by block; callers raise.

    Parameters
    ----------
    x, filters, stride, pad, n_threads, memory_limit
        As for :func:`correlate`.
    out : numpy.ndarray, optional
        An array to write the result into (C-contiguous, of the result's shape and dtype, for
        (N, C, H, W) images, not sharing the inputs' memory); a new one otherwise.
    finite_inputs : bool, optional
        x and filters are known to be finite (a network's checked layer outputs and weights):
        their values are not checked again. Otherwise NaN or inf in them raises ValueError
        before any computation.
    bias : array_like, optional
        K values added to the filters' responses.

    Returns
    -------
    (numpy.ndarray, bool)
        The result and whether it is all finite.
    """
    x = float_array("x", x, ndim=(3, 4), finite=not finite_inputs)
    single = x.ndim == 3
    if single:
        x = x[None]
    filters = float_array("filters", filters, ndim=4, finite=not finite_inputs)
    sy, sx = as_pair("stride", stride, minimum=1)
    pt, pb, pl, pr = as_pad("pad", pad)
    threads = resolve_threads(n_threads)
    N, C, H, W = x.shape
    K, Cf, h, w = filters.shape
    if C != Cf:
        raise ValueError("x has %d channels but filters expect %d (x %s, filters %s)"
                         % (C, Cf, x.shape, filters.shape))
    if min(filters.shape) == 0 or min(x.shape) == 0:
        raise ValueError("empty input: x %s, filters %s" % (x.shape, filters.shape))
    Hp, Wp = H + pt + pb, W + pl + pr
    if Hp < h or Wp < w:
        raise ValueError("padded image %dx%d is smaller than the filters %dx%d (x %s, pad %s)"
                         % (Hp, Wp, h, w, x.shape, (pt, pb, pl, pr)))
    Ho, Wo = window_grid((H, W), (h, w), (sy, sx), (pt, pb, pl, pr))
    dtype = result_dtype(x, filters)
    check_bytes("correlate output", (N, K, Ho, Wo), dtype, memory_limit)
    # The kernels read the padding as zeros: no padded copy.
    x = np.ascontiguousarray(x, dtype=dtype)
    filters = np.ascontiguousarray(filters, dtype=dtype)
    if bias is not None:
        bias = np.ascontiguousarray(bias, dtype=dtype)   # its length: correlate_into
    if out is None:
        out = np.empty((N, K, Ho, Wo), dtype=dtype)
    else:
        check_out(out, (N, K, Ho, Wo), dtype, x, filters)
    finite = correlate_into(x, filters, out, sy, sx, threads, bias, pt, pl)
    return (out[0] if single else out), finite


def substitute(df, weights, *, stride=1, n_threads=None, memory_limit=None):
    """Substitute filters at every pixel of decoded maps (a transposed convolution).

    ``out[k, c, sy*y + u, sx*x + v] += df[k, j, y, x] * weights[j, c, u, v]``: the adjoint of
    :func:`correlate`. The form of the computation (Winograd, shifted GEMMs or GEMM + col2im)
    follows the shapes; all agree to rounding.

    Parameters
    ----------
    df : array_like
        Maps (K, J, H, W) or one map (J, H, W).
    weights : array_like
        Weights (J, C, h, w).
    stride : int or (int, int), optional
        Step between substituted filters, (rows, cols).
    n_threads : int, optional
        Threads to use; default all that OpenMP may use.
    memory_limit : float, optional
        Bytes the output may take (default 4 GiB).

    Returns
    -------
    numpy.ndarray
        (K, C, (H-1)*sy + h, (W-1)*sx + w), or without the K axis for one map, in float64 if
        either input is float64, else float32.

    Raises
    ------
    ValueError
        For inputs holding NaN or inf (checked before any computation), mismatched channels,
        or a result that overflows its dtype.
    MemoryError
        When the output would exceed ``memory_limit``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastdecode as fd
    >>> df = np.zeros((1, 1, 2, 2))
    >>> df[0, 0, 1, 1] = 1.0
    >>> fd.substitute(df, np.ones((1, 1, 2, 2)), stride=2)[0, 0]
    array([[0., 0., 0., 0.],
           [0., 0., 0., 0.],
           [0., 0., 1., 1.],
           [0., 0., 1., 1.]])
    """
    df = float_array("df", df, ndim=(3, 4))
    single = df.ndim == 3
    if single:
        df = df[None]
    weights = float_array("weights", weights, ndim=4)
    sy, sx = as_pair("stride", stride, minimum=1)
    threads = resolve_threads(n_threads)
    K, J, H, W = df.shape
    Jw, C, h, w = weights.shape
    if J != Jw:
        raise ValueError("df has %d channels but weights have %d filters (df %s, weights %s)"
                         % (J, Jw, df.shape, weights.shape))
    if min(df.shape) == 0 or min(weights.shape) == 0:
        raise ValueError("empty input: df %s, weights %s" % (df.shape, weights.shape))
    dtype = result_dtype(df, weights)
    shape = (K, C, (H - 1) * sy + h, (W - 1) * sx + w)
    check_bytes("substitute output", shape, dtype, memory_limit)
    out = np.empty(shape, dtype=dtype)
    substitute_into(df.astype(dtype, copy=False), weights.astype(dtype, copy=False), out, sy, sx,
                    threads, zero=True)
    if not all_finite(out):
        raise overflow_error("the substitution of weights %s into df %s"
                             % (weights.shape, df.shape), dtype)
    return out[0] if single else out


def unpool(a, factor, method="nearest", *, size=None, n_threads=None, memory_limit=None):
    """Undo a pooling layer of stride ``factor`` on maps.

    Parameters
    ----------
    a : array_like
        Maps (..., H, W).
    factor : int or (int, int)
        The pooling's stride (fy, fx).
    method : str, optional
        One of :data:`UNPOOL_METHODS`: "nearest", "bilinear" or "bicubic", MATLAB
        ``imresize(a, factor, method)`` enlargements; or "adjoint", the exact adjoint of average
        pooling of window ``size`` and stride ``factor`` (zeros inserted at the stride, then a
        box of the window size divided by its area).
    size : int or (int, int), optional
        The pooling window, default ``factor``. For "nearest" a window larger than the stride
        substitutes a box of ones at every input pixel (overlaps add); for "bilinear" and
        "bicubic" the enlarged map is centred in the windows' extent (zero-padded or cropped).
    n_threads : int, optional
        Threads to use; default all that OpenMP may use.
    memory_limit : float, optional
        Bytes the output may take (default 4 GiB).

    Returns
    -------
    numpy.ndarray
        (..., (H-1)*fy + size_y, (W-1)*fx + size_x), i.e. (..., H*fy, W*fx) when size equals
        factor, in a's dtype (float64 for integer input).

    Raises
    ------
    ValueError
        For an unknown method, maps with NaN or inf, or fewer than two non-empty dimensions.

    Examples
    --------
    >>> import numpy as np
    >>> import fastdecode as fd
    >>> fd.unpool(np.array([[0.0, 1.0, 2.0]]), (1, 2), "bilinear")
    array([[0.  , 0.25, 0.75, 1.25, 1.75, 2.  ]])
    >>> fd.unpool(np.array([[4.0]]), 2, "adjoint")
    array([[1., 1.],
           [1., 1.]])
    """
    method = unpool_method(method)
    a = float_array("a", a)
    if a.ndim < 2 or min(a.shape[-2:]) == 0:
        raise ValueError("a must have at least 2 non-empty dimensions (..., H, W), got %s"
                         % (a.shape,))
    fy, fx = as_pair("factor", factor, minimum=1)
    sz_y, sz_x = (fy, fx) if size is None else as_pair("size", size, minimum=1)
    threads = resolve_threads(n_threads)
    H, W = a.shape[-2:]
    Ho, Wo = (H - 1) * fy + sz_y, (W - 1) * fx + sz_x
    check_bytes("unpool output", a.shape[:-2] + (Ho, Wo), a.dtype, memory_limit)
    return resample.unpool_into(a, fy, fx, sz_y, sz_x, method, threads)


def pool(x, method="max", *, size=2, stride=None, pad=0, ceil_mode=False,
         count_include_pad=False, n_threads=None):
    """Max or average pooling (MatConvNet ``vl_nnpool``; PyTorch's with its options).

    Parameters
    ----------
    x : array_like
        Images (N, C, H, W).
    method : {"max", "avg"}, optional
        Maximum or mean over each window.
    size : int or (int, int), optional
        The window (rows, cols).
    stride : int or (int, int), optional
        Step between windows, default ``size``.
    pad : int, (int, int) or (int, int, int, int), optional
        Padding, smaller than the window; windows are clipped at the padded borders (max
        ignores the padding, average divides by the clipped area).
    ceil_mode : bool, optional
        PyTorch's ``ceil_mode``: round the number of windows up (see :class:`~fastdecode.Pool`).
    count_include_pad : bool, optional
        Average only: divide by the window clipped to the padded input, as PyTorch.
    n_threads : int, optional
        Threads to use; default all that OpenMP may use.

    Returns
    -------
    numpy.ndarray
        (N, C, Ho, Wo) with ``Ho = (H + top + bottom - size) // stride + 1`` (rounded up in
        ceil mode), in x's dtype.

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> fd.pool(np.arange(9.0).reshape(1, 1, 3, 3), "max", size=2, ceil_mode=True)[0, 0]
    array([[4., 5.],
           [7., 8.]])
    """
    if method not in ("max", "avg"):
        raise ValueError("unknown pooling method %r; choose 'max' or 'avg'" % (method,))
    ceil_mode = as_flag("ceil_mode", ceil_mode)
    count_include_pad = as_flag("count_include_pad", count_include_pad)
    if count_include_pad and method != "avg":
        raise ValueError("count_include_pad applies to average pooling only, not %r" % (method,))
    x = float_array("x", x, ndim=4)
    ph, pw = as_pair("size", size, minimum=1)
    sy, sx = (ph, pw) if stride is None else as_pair("stride", stride, minimum=1)
    declared = as_pad("pad", pad)
    threads = resolve_threads(n_threads)
    if max(declared[:2]) >= ph or max(declared[2:]) >= pw:
        raise ValueError("pooling pad %s must be smaller than the window %s"
                         % (declared, (ph, pw)))
    pt, pb, pl, pr = ceil_mode_pad((ph, pw), (sy, sx), declared) if ceil_mode else declared
    N, C, H, W = x.shape
    if x.size == 0:
        raise ValueError("x must be non-empty, got shape %s" % (x.shape,))
    if H + pt + pb < ph or W + pl + pr < pw:
        raise ValueError("input %dx%d (padded %s) is smaller than the pooling window %s"
                         % (H, W, (pt, pb, pl, pr), (ph, pw)))
    out = np.empty((N, C) + window_grid((H, W), (ph, pw), (sy, sx), (pt, pb, pl, pr)),
                   dtype=x.dtype)
    return pool_into(x, out, method, (ph, pw), (sy, sx), (pt, pb, pl, pr), threads,
                     (declared[1], declared[3]) if count_include_pad else None)


def relu(x, *, leak=0.0, n_threads=None):
    """Rectified linear unit: x where x > 0, ``leak * x`` elsewhere.

    Parameters
    ----------
    x : array_like
        Any shape.
    leak : float, optional
        Slope for negative values (finite).
    n_threads : int, optional
        Threads to use; default all that OpenMP may use.

    Returns
    -------
    numpy.ndarray
        A new array of x's shape and dtype.
    """
    x = float_array("x", x)
    leak = float(leak)
    if not np.isfinite(leak):
        raise ValueError("leak must be finite, got %r" % leak)
    return relu_into(x, np.empty(x.shape, dtype=x.dtype), leak, resolve_threads(n_threads))
