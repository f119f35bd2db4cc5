"""Unpooling and box sums: the unpooling methods, MATLAB imresize taps, box weights, and the
separable resampling that applies them."""

from dataclasses import dataclass

import numpy as np

from . import _resample


@dataclass(frozen=True)
class UnpoolMethod:
    """An unpooling method, resolved once from its name (see :data:`METHODS`).

    name: "nearest", "bilinear", "bicubic" or "adjoint".
    box: whether it substitutes a box at every input pixel (nearest: ones, adjoint: ones divided
    by the window's area). A box unpooling is shift-equivariant: it merges with the substitution
    of the conv layer below it, and decoding may use the layer recursion. The others are
    MATLAB's imresize, which mirrors at the borders.
    """

    name: str
    box: bool

    def box_scale(self, size):
        """The value of the box substituted for a pooling window ``size`` (ph, pw): 1 for
        nearest, 1/(ph*pw) for adjoint."""
        return 1.0 / (size[0] * size[1]) if self.name == "adjoint" else 1.0

    def taps(self, n, factor, size):
        """Taps (index, weight), shape ((n-1)*factor + size, taps), of this unpooling along one
        axis of n samples, for a pooling window ``size`` at stride ``factor``."""
        if self.box:
            return box_weights(n, factor, size, self.box_scale((size, 1)))
        idx, wts = imresize_weights(n, factor, self.name)
        if size != factor:  # align the enlarged map with the pool windows' extent
            m = (n - 1) * factor + size
            before = (size - factor) // 2
            rows = np.arange(m) - before
            valid = (rows >= 0) & (rows < n * factor)
            safe = np.clip(rows, 0, n * factor - 1)
            idx = np.where(valid[:, None], idx[safe], 0)
            wts = np.where(valid[:, None], wts[safe], 0.0)
        return np.ascontiguousarray(idx, dtype=np.intp), np.ascontiguousarray(wts)

    def __str__(self):
        return self.name


#: The unpooling methods by name.
METHODS = {m.name: m for m in (UnpoolMethod("nearest", True), UnpoolMethod("bilinear", False),
                               UnpoolMethod("bicubic", False), UnpoolMethod("adjoint", True))}


def _imresize_kernel(method):
    if method == "bilinear":
        return 2.0, lambda t: np.clip(1.0 - np.abs(t), 0.0, None)

    def cubic(t):  # Keys, a = -0.5, as MATLAB's imresize
        a = np.abs(t)
        a2, a3 = a * a, a * a * a
        return ((1.5 * a3 - 2.5 * a2 + 1.0) * (a <= 1)
                + (-0.5 * a3 + 2.5 * a2 - 4.0 * a + 2.0) * ((a > 1) & (a <= 2)))
    return 4.0, cubic


def imresize_weights(n, factor, method):
    """Taps (index, weight), shape (n*factor, taps), of MATLAB's imresize enlarging n samples.

    Output u (1-based) samples input position u/factor + 0.5*(1 - 1/factor); out-of-range taps
    are mirrored; each output's weights are divided by their sum.
    """
    m = n * factor
    u = np.arange(1, m + 1, dtype=np.float64)
    pos = u / factor + 0.5 * (1.0 - 1.0 / factor)
    if method == "nearest":
        width = 1.0
        kernel = lambda t: ((t >= -0.5) & (t < 0.5)).astype(np.float64)  # noqa: E731
    else:
        width, kernel = _imresize_kernel(method)
    left = np.floor(pos - width / 2.0)
    taps = int(np.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    wts = kernel(pos[:, None] - idx)
    wts /= wts.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(n), np.arange(n - 1, -1, -1)])
    idx = mirror[np.mod(idx.astype(np.int64) - 1, 2 * n)]
    keep = np.any(wts != 0, axis=0)
    return np.ascontiguousarray(idx[:, keep], dtype=np.intp), np.ascontiguousarray(wts[:, keep])


def box_weights(n, stride, size, scale):
    """Taps (index, weight) of substituting a box of ``size`` ones times ``scale`` at ``stride``.

    Output r = stride*y + t (0 <= t < size) receives scale * a[y]; length (n-1)*stride + size.
    """
    m = (n - 1) * stride + size
    taps = -(-size // stride)
    r = np.arange(m)[:, None]
    y = r // stride - np.arange(taps)[None, :]
    valid = (y >= 0) & (y < n) & (r - stride * y < size)
    idx = np.where(valid, y, 0)
    wts = np.where(valid, scale, 0.0)
    return np.ascontiguousarray(idx, dtype=np.intp), np.ascontiguousarray(wts, dtype=np.float64)


def unpool_into(a, fy, fx, sz_y, sz_x, method, threads, out=None):
    """Unpooling of C-contiguous maps a (..., H, W) by the :class:`UnpoolMethod` ``method``
    for pooling windows (sz_y, sz_x) at stride (fy, fx): (..., (H-1)*fy + sz_y, (W-1)*fx + sz_x).

    out: optional C-contiguous array of the result's size and dtype to write into. A box
    unpooling whose window equals its stride is a plain upsampling (one pass, the same bits as
    the separable resampling); the rest resample rows, then columns (sums in double).
    """
    lead = a.shape[:-2]
    H, W = a.shape[-2:]
    Ho, Wo = (H - 1) * fy + sz_y, (W - 1) * fx + sz_x
    planes = a.reshape((-1, H, W))
    if out is not None:
        out = out.reshape((planes.shape[0], Ho, Wo))
    if method.box and (sz_y, sz_x) == (fy, fx):
        if out is None:
            out = np.empty((planes.shape[0], Ho, Wo), dtype=a.dtype)
        wy, wx = (1.0, 1.0) if method.name == "nearest" else (1.0 / fy, 1.0 / fx)
        _resample.upsample_box(planes, out, fy, fx, wy, wx, threads)
        return out.reshape(lead + (Ho, Wo))
    ridx, rw = method.taps(H, fy, sz_y)
    cidx, cw = method.taps(W, fx, sz_x)
    tmp = np.empty((planes.shape[0], Ho, W), dtype=a.dtype)
    _resample.resample_rows(planes, ridx, rw, tmp, threads)
    if out is None:
        out = np.empty((planes.shape[0], Ho, Wo), dtype=a.dtype)
    _resample.resample_cols(tmp, cidx, cw, out, threads)
    return out.reshape(lead + (Ho, Wo))


def box_sum(E, size, stride, scale=1.0, threads=1):
    """E (J, C, H, W) summed over a window of ``size`` (ph, pw) placed at ``stride`` (sy, sx).

    out[j, c, sy*u + y, sx*v + x] += scale * E[j, c, y, x] for 0 <= u < ph, 0 <= v < pw:
    the substitution of the identity as ph x pw boxes (summed in double, rounded once).
    Returns (J, C, (ph-1)*sy + H, (pw-1)*sx + W).
    """
    (ph, pw), (sy, sx) = size, stride
    E = np.ascontiguousarray(E)
    J, C, H, W = E.shape
    out = np.empty((J, C, (ph - 1) * sy + H, (pw - 1) * sx + W), dtype=E.dtype)
    _resample.box_sum(E, out, ph, pw, sy, sx, scale, threads)
    return out
