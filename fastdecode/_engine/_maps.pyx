# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Kernels on whole maps: pooling, ReLU, a tiled transpose and the padded-plane layout.
Parallel over planes or blocks; each output element written by one thread.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memset

from fastdecode._engine._common cimport intp


def pool2d(
        const floating[:, :, ::1] x,   # IN
        floating[:, :, ::1] out,       # OUT
        intp ph,
        intp pw,
        intp sy,
        intp sx,
        intp pt,
        intp pl,
        bint average,
        int n_threads,
        intp hc=0,
        intp wc=0,
):
    """Max or average pooling of planes x (P, H, W) into out (P, Ho, Wo), MatConvNet style.

    Window (i, j) covers rows sy*i - pt ... + ph - 1 and columns sx*j - pl ... + pw - 1, clipped to
    the plane: max pooling ignores the padding, average pooling divides by the clipped area, or,
    when hc > 0, by the area of the window clipped to rows < hc and columns < wc (the padded
    extent H + bottom, W + right: PyTorch's count_include_pad). Callers guarantee that every
    window meets the plane. Windows are read row by row (sums in double); whole 2x2 windows, the
    common case, without loops. Parallel over planes.
    """
    cdef intp P = x.shape[0], H = x.shape[1], W = x.shape[2]
    cdef intp Ho = out.shape[1], Wo = out.shape[2]
    cdef intp p, i, j, y, xx, y0, y1, x0, x1
    cdef floating best, m0, m1
    cdef double acc, area
    cdef const floating *a
    cdef const floating *b
    cdef floating *o
    cdef bint halve = (ph == 2 and pw == 2 and sy == 2 and sx == 2 and pt == 0 and pl == 0
                       and 2 * Ho <= H and 2 * Wo <= W)
    with nogil:
        for p in prange(P, num_threads=n_threads, schedule="static"):
            if halve:   # whole 2x2 windows at stride 2 from the corner: one loop per row
                for i in range(Ho):
                    a = &x[p, 2 * i, 0]
                    b = a + W
                    o = &out[p, i, 0]
                    if average:
                        for j in range(Wo):
                            o[j] = <floating>((((<double>a[2 * j] + a[2 * j + 1]) + b[2 * j])
                                               + b[2 * j + 1]) / 4)
                    else:
                        for j in range(Wo):
                            m0 = a[2 * j] if a[2 * j] >= a[2 * j + 1] else a[2 * j + 1]
                            m1 = b[2 * j] if b[2 * j] >= b[2 * j + 1] else b[2 * j + 1]
                            o[j] = m0 if m0 >= m1 else m1
                continue
            for i in range(Ho):
                y0 = max(sy * i - pt, 0)
                y1 = min(sy * i - pt + ph, H)
                for j in range(Wo):
                    x0 = max(sx * j - pl, 0)
                    x1 = min(sx * j - pl + pw, W)
                    if hc > 0:
                        area = <double>((min(sy * i - pt + ph, hc) - (sy * i - pt))
                                        * (min(sx * j - pl + pw, wc) - (sx * j - pl)))
                    else:
                        area = <double>((y1 - y0) * (x1 - x0))
                    if y1 - y0 == 2 and x1 - x0 == 2:
                        a = &x[p, y0, x0]
                        if average:
                            out[p, i, j] = <floating>(
                                (((<double>a[0] + a[1]) + a[W]) + a[W + 1]) / area)
                        else:
                            m0 = a[0] if a[0] >= a[1] else a[1]
                            m1 = a[W] if a[W] >= a[W + 1] else a[W + 1]
                            out[p, i, j] = m0 if m0 >= m1 else m1
                    elif average:
                        acc = 0
                        for y in range(y0, y1):
                            for xx in range(x0, x1):
                                acc = acc + x[p, y, xx]
                        out[p, i, j] = <floating>(acc / area)
                    else:
                        best = x[p, y0, x0]
                        for y in range(y0, y1):
                            for xx in range(x0, x1):
                                if x[p, y, xx] > best:
                                    best = x[p, y, xx]
                        out[p, i, j] = best


def relu(
        const floating[::1] x,   # IN
        floating[::1] out,       # OUT
        double leak,
        int n_threads,
):
    """out = x where x > 0, leak * x elsewhere (flat arrays; out may be x itself). Parallel
    over blocks of 2^16 values, each a branch-free loop the compiler vectorises."""
    cdef intp n = x.shape[0], block = 1 << 16, nb = (n + block - 1) // block, b, i, i1
    cdef floating lk = <floating>leak
    cdef const floating *src
    cdef floating *dst
    cdef floating v, scaled
    with nogil:
        for b in prange(nb, num_threads=n_threads, schedule="static"):
            src = &x[0] + b * block
            dst = &out[0] + b * block
            i1 = min(block, n - b * block)
            for i in range(i1):
                v = src[i]
                scaled = lk * v   # computed always, so that only a select remains
                dst[i] = v if v > 0 else scaled


def transpose_last2(
        const floating[:, :, ::1] a,   # IN
        floating[:, :, ::1] out,       # OUT
        int n_threads,
):
    """out[f, p, j] = a[f, j, p]: a (F, J, P) to out (F, P, J), in 32 x 32 tiles."""
    cdef intp F = a.shape[0], J = a.shape[1], P = a.shape[2]
    cdef intp T = 32, npb = (P + T - 1) // T
    cdef intp t, f, p0, p1, j0, j1, p, j
    with nogil:
        for t in prange(F * npb, num_threads=n_threads, schedule="static"):
            f = t // npb
            p0 = (t % npb) * T
            p1 = min(p0 + T, P)
            j0 = 0
            while j0 < J:
                j1 = min(j0 + T, J)
                for p in range(p0, p1):
                    for j in range(j0, j1):
                        out[f, p, j] = a[f, j, p]
                j0 = j1



def pad_planes(
        const floating[:, :, ::1] a,   # IN
        floating[:, ::1] out,          # OUT
        intp P,
        intp off,
        int n_threads,
):
    """out[p, off + y*P + x] = a[p, y, x], every other element of out zero.

    a (N, H, W); out (N, S) with P >= W and S >= off + H*P: the padded planes that
    substitute_phased reads. Parallel over planes.
    """
    cdef intp N = a.shape[0], H = a.shape[1], W = a.shape[2], S = out.shape[1]
    cdef intp p, y, x
    cdef floating *dst
    with nogil:
        for p in prange(N, num_threads=n_threads, schedule="static"):
            memset(&out[p, 0], 0, off * sizeof(floating))
            for y in range(H):
                dst = &out[p, off + y * P]
                for x in range(W):
                    dst[x] = a[p, y, x]
                memset(dst + W, 0, (P - W) * sizeof(floating))
            memset(&out[p, off + H * P], 0, (S - off - H * P) * sizeof(floating))
