"""Operations on whole maps: pooling, ReLU, and a tiled transpose of the last two axes."""

import numpy as np

from . import _maps, workspace
from .grid import copy_team, window_grid


def check_out(out, shape, dtype, *inputs):
    """Refuse an ``out`` array of the wrong shape, dtype or layout, or one that shares memory
    with an input (the kernels would read what they already wrote)."""
    if out.shape != tuple(shape) or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError("out must be a C-contiguous %s array of shape %s, got %s %s"
                         % (np.dtype(dtype).name, tuple(shape), out.dtype.name, out.shape))
    if any(np.may_share_memory(out, a) for a in inputs):
        raise ValueError("out must not share memory with the inputs")


def pool_into(x, out, method, size, stride, pad, threads, counted=None):
    """out = the "max" or "avg" pooling of x (N, C, H, W), C-contiguous, of windows ``size`` at
    ``stride`` with ``pad`` (top, bottom, left, right); out (N, C, Ho, Wo) of x's dtype (see
    :func:`fastdecode._engine.grid.window_grid`). Windows are clipped to x; "avg" divides by the
    clipped area, or, with ``counted`` (bottom, right), by the area of the window clipped to
    H + bottom rows and W + right columns (the declared padding counted, any further grid
    padding such as a ceil-mode overhang not). Returns out."""
    N, C, H, W = x.shape
    check_out(out, (N, C) + window_grid((H, W), size, stride, pad), x.dtype, x)
    threads = max(1, min(threads, N * C))   # memory-bound: every thread helps
    hc, wc = (0, 0) if counted is None else (H + counted[0], W + counted[1])
    _maps.pool2d(np.ascontiguousarray(x).reshape(N * C, H, W),
                 out.reshape((N * C,) + out.shape[2:]), size[0], size[1], stride[0], stride[1],
                 pad[0], pad[2], method == "avg", threads, hc, wc)
    return out


def relu_into(x, out, leak, threads):
    """out = x where x > 0, leak * x elsewhere, for out of x's shape and dtype, C-contiguous,
    either x itself (in place) or not sharing its memory. Returns out."""
    if out is not x:
        check_out(out, x.shape, x.dtype, x)
    elif not x.flags.c_contiguous:
        raise ValueError("relu in place needs a C-contiguous array")
    _maps.relu(np.ascontiguousarray(x).reshape(-1), out.reshape(-1), leak, threads)
    return out


def transpose_last2(a, threads, name="transpose"):
    """a (F, J, P) C-contiguous as an (F, P, J) C-contiguous array (a tiled, parallel copy)
    from the current workspace under ``name``."""
    out = workspace.current().get(name, (a.shape[0], a.shape[2], a.shape[1]), a.dtype)
    if a.size:
        _maps.transpose_last2(a, out, copy_team(threads, a.size))
    return out
