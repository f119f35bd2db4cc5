"""Winograd substitution: exact Cook-Toom transforms, tile choice, transformed weights, tiles.

A stride-1 substitution of an r x r kernel is the correlation of the maps, padded by r - 1, with
the flipped kernel; Winograd's minimal filtering F(m x m, r x r) computes an m x m output tile
from an a x a input tile (a = m + r - 1) with a*a products instead of m*m*r*r: for 3x3 kernels
2.25x fewer with m = 2, 4x fewer with m = 4 (less the tiles' overhang at the borders). A kernel
of (sy*r) x (sx*r) at stride (sy, sx) splits into sy*sx phases, each a stride-1 substitution of
an r x r kernel. (For r = 2, as in a 2x2 box unpooling merged with a 3x3 conv, 4x4 at stride 2,
the transforms cost more than the products saved: measured on VGG-16's layers.)
"""

import math
from fractions import Fraction

import numpy as np

from . import _winograd, blas, tuning, workspace
from .grid import balanced, ceil_div, copy_team, team
from .layout import PaddedMaps


def cook_toom(m, r, points):
    """(BT, G, AT) of F(m, r) from the evaluation points ``points`` and infinity, exact
    (fractions): y = AT [(G g) * (BT d)] is the correlation y[o] = sum_u d[o + u] g[u], o < m.

    The transpose of the linear convolution by evaluation and interpolation (Toom-Cook), with
    BT's rows scaled to integers and G's rows scaled back (Lavin & Gray, 2016).
    """
    a = m + r - 1
    pts = [Fraction(p) for p in points]
    if len(pts) != a - 1 or len(set(pts)) != a - 1:
        raise ValueError("F(%d, %d) needs %d distinct points" % (m, r, a - 1))

    def vandermonde(n):
        return [[p ** i for i in range(n)] for p in pts] + [[Fraction(0)] * (n - 1) + [Fraction(1)]]
    V = vandermonde(a)
    inv = [row[:] + [Fraction(int(i == j)) for j in range(a)] for i, row in enumerate(V)]
    for c in range(a):   # Gauss-Jordan, exact
        pivot = next(i for i in range(c, a) if inv[i][c] != 0)
        inv[c], inv[pivot] = inv[pivot], inv[c]
        inv[c] = [x / inv[c][c] for x in inv[c]]
        for i in range(a):
            if i != c and inv[i][c] != 0:
                f = inv[i][c]
                inv[i] = [x - f * y for x, y in zip(inv[i], inv[c])]
    BT = [[inv[j][a + i] for j in range(a)] for i in range(a)]
    G = vandermonde(r)
    for i in range(a):
        scale = math.lcm(*(x.denominator for x in BT[i]))
        BT[i] = [x * scale for x in BT[i]]
        G[i] = [x / scale for x in G[i]]
    AT = [[row[i] for row in vandermonde(m)] for i in range(m)]
    return BT, G, AT


#: Evaluation points of the F(m, r) in use: 0, +-1 (+-2) and infinity keep the transforms' rounding
#: errors small (Lavin & Gray, 2016).
WINOGRAD_POINTS = {(2, 3): (0, 1, -1), (4, 3): (0, 1, -1, 2, -2)}
#: (BT, G, AT) as float64 arrays by (m, r). The kernels hold a tile's rows in arrays of 8 and
#: a transformed kernel in 64 values: m + r - 1 <= 8 and (m + r - 1) * r <= 64.
WINOGRAD_TRANSFORMS = {key: tuple(np.array(t, dtype=np.float64) for t in cook_toom(*key, pts))
                       for key, pts in WINOGRAD_POINTS.items()}
assert all(m + r - 1 <= 8 and (m + r - 1) * r <= 64 for m, r in WINOGRAD_TRANSFORMS)


def winograd_tile(kernel, stride, itemsize):
    """(m, r): the output tile and phase kernel of a Winograd substitution of this kernel at this
    stride in this itemsize, or None when it has no Winograd form (the kernel must be r times
    the stride in both directions, r in ``tuning.WINOGRAD_TILE``)."""
    (kh, kw), (sy, sx) = kernel, stride
    r = kh // sy
    if kh != sy * r or kw != sx * r or (itemsize, r) not in tuning.WINOGRAD_TILE:
        return None
    return tuning.WINOGRAD_TILE[(itemsize, r)], r


def winograd_tiles(H, W, m, r):
    """Output tiles of F(m, r) per map of H x W pixels (the output overhangs the map by r - 1)."""
    return ceil_div(H + r - 1, m) * ceil_div(W + r - 1, m)


def winograd_suits(J, H, W, C, kh, kw, sy, sx, itemsize):
    """Whether a Winograd substitution suits these shapes: enough channels, and its
    multiply-adds, with the tiles overhanging the output, at most ``tuning.WINOGRAD_MAX_WORK``
    of the direct ones."""
    mr = winograd_tile((kh, kw), (sy, sx), itemsize)
    if mr is None or min(J, C) < tuning.WINOGRAD_MIN_CHANNELS:
        return False
    (m, r), a = mr, mr[0] + mr[1] - 1
    products = sy * sx * winograd_tiles(H, W, m, r) * a * a
    return products <= tuning.WINOGRAD_MAX_WORK[itemsize] * H * W * kh * kw


def winograd_flops(F, J, H, W, C, kh, kw, sy, sx, itemsize):
    """FLOPs of the products of a Winograd substitution's transformed tiles."""
    m, r = winograd_tile((kh, kw), (sy, sx), itemsize)
    return 2.0 * F * J * C * sy * sx * winograd_tiles(H, W, m, r) * (m + r - 1) ** 2


def winograd_weights(weights, m, stride=(1, 1), threads=1):
    """Weights (J, C, sy*r, sx*r) as u (sy*sx, a*a, C, J), u[py*sx + px, p, c, j] = (G g G^T)[p]
    for the flipped kernel g of phase (py, px) (taps (py + sy*i, px + sx*k)) of weights[j, c]:
    the layout of substitute_winograd (summed in double, rounded once)."""
    J, C, kh, kw = weights.shape
    sy, sx = stride
    r = kh // sy
    if (kh, kw) != (sy * r, sx * r) or (m, r) not in WINOGRAD_TRANSFORMS:
        raise ValueError("no Winograd form F(%d, %d) for a %dx%d kernel at stride %s"
                         % (m, r, kh, kw, (sy, sx)))
    G = WINOGRAD_TRANSFORMS[(m, r)][1]
    u = np.empty((sy * sx, G.shape[0] ** 2, C, J), dtype=weights.dtype)
    for py in range(sy):
        for px in range(sx):
            phase = np.ascontiguousarray(weights[:, :, py::sy, px::sx])
            _winograd.winograd_weights(phase, G, u[py * sx + px], copy_team(threads, weights.size))
    return u


def winograd_blocks(n_tiles, J, C, a, itemsize):
    """(tb, cb): tiles per task and channels per GEMM of substitute_winograd, from the shapes
    alone: about ``tuning.WINOGRAD_TILES`` tiles (fewer when the work buffer would pass
    ``tuning.WINOGRAD_SCRATCH_BYTES``, or to make ``tuning.WINOGRAD_MIN_TASKS`` tasks), at
    least 16."""
    cb = balanced(C, tuning.WINOGRAD_CHANNELS)
    room = tuning.WINOGRAD_SCRATCH_BYTES // (a * a * (J + cb) * itemsize)
    tb = max(16, min(tuning.WINOGRAD_TILES, room, ceil_div(n_tiles, tuning.WINOGRAD_MIN_TASKS)))
    return balanced(n_tiles, tb), cb


def substitute_winograd(maps, u, m, stride, out, Po, off_out, threads):
    """Substitution at ``stride`` by Winograd's F(m x m, r x r), phase by phase, of weights u
    (sy*sx, a*a, C, J) (see :func:`winograd_weights`) at every pixel of the PaddedMaps ``maps``
    (any pitch and offset).

    Writes all of out (F, C, S_out): output pixel (y, x) of the (sy*(H + r - 1), sx*(W + r - 1))
    planes at out[f, c, off_out + y*Po + x], zeros elsewhere. Returns the output as PaddedMaps.
    """
    buf, H, W, P, off = maps
    F, J = buf.shape[:2]
    sy, sx = stride
    C = u.shape[2]
    a = int(round(u.shape[1] ** 0.5))
    r = a - m + 1
    BT, _, AT = WINOGRAD_TRANSFORMS[(m, r)]
    Ho, Wo = sy * (H + r - 1), sx * (W + r - 1)
    n_tiles = F * winograd_tiles(H, W, m, r)
    tb, cb = winograd_blocks(n_tiles, J, C, a, buf.dtype.itemsize)
    threads = team(threads, ceil_div(n_tiles, tb), 2.0 * sy * sx * n_tiles * a * a * J * C)
    ntx = ceil_div(W + r - 1, m)
    work = workspace.current().rows("winograd", threads, a * a * tb * (J + cb)
                                    + (m * a + 1) * ntx + a * (m * ntx + a), buf.dtype)
    with blas.single_threaded():
        _winograd.substitute_winograd(buf, u, out, H, W, P, off, Ho, Wo, Po, off_out, sy, sx,
                                      BT.astype(buf.dtype), AT.astype(buf.dtype), tb, cb, work,
                                      threads)
    return PaddedMaps(out, Ho, Wo, Po, off_out)
