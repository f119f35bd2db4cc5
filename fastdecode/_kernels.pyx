# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled kernels: correlation, substitution, separable resampling, pooling, ReLU.

Private module. Callers (``fastdecode._api`` and friends) validate shapes, dtypes and values and
allocate the outputs; the kernels trust them. Every output element is written by exactly one
thread in a fixed order of operations, so results are bitwise identical for any thread count.
"""

from cython cimport floating
from cython.parallel cimport prange

ctypedef Py_ssize_t intp


def correlate_valid(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                    floating[:, :, :, ::1] out, intp sy, intp sx, int n_threads):
    """out[n, k, i, j] += sum_{c,u,v} w[k, c, u, v] * x[n, c, sy*i + u, sx*j + v].

    x (N, C, H, W), already padded; w (K, C, h, w); out (N, K, Ho, Wo), zero on entry.
    Parallel over (image, filter) pairs.
    """
    cdef intp N = x.shape[0], C = x.shape[1]
    cdef intp K = w.shape[0], kh = w.shape[2], kw = w.shape[3]
    cdef intp Ho = out.shape[2], Wo = out.shape[3]
    cdef intp t, n, k, c, u, v, i, j, row
    cdef floating wt
    with nogil:
        for t in prange(N * K, num_threads=n_threads, schedule="static"):
            n = t // K
            k = t % K
            for c in range(C):
                for u in range(kh):
                    for v in range(kw):
                        wt = w[k, c, u, v]
                        if wt == 0:
                            continue
                        for i in range(Ho):
                            row = sy * i + u
                            if sx == 1:
                                for j in range(Wo):
                                    out[n, k, i, j] += wt * x[n, c, row, j + v]
                            else:
                                for j in range(Wo):
                                    out[n, k, i, j] += wt * x[n, c, row, sx * j + v]


def substitute_full(const floating[:, :, :, ::1] df, const floating[:, :, :, ::1] w,
                    floating[:, :, :, ::1] out, intp sy, intp sx, int n_threads):
    """out[m, c, sy*y + u, sx*x + v] += df[m, j, y, x] * w[j, c, u, v].

    df (M, J, H, W); w (J, C, h, w); out (M, C, (H-1)*sy + h, (W-1)*sx + w), zero on entry.
    A transposed convolution (the adjoint of correlate_valid). Parallel over (map, channel) pairs.
    """
    cdef intp M = df.shape[0], J = df.shape[1], H = df.shape[2], W = df.shape[3]
    cdef intp C = w.shape[1], kh = w.shape[2], kw = w.shape[3]
    cdef intp t, m, c, j, u, v, y, xx, row
    cdef floating wt
    with nogil:
        for t in prange(M * C, num_threads=n_threads, schedule="static"):
            m = t // C
            c = t % C
            for j in range(J):
                for u in range(kh):
                    for v in range(kw):
                        wt = w[j, c, u, v]
                        if wt == 0:
                            continue
                        for y in range(H):
                            row = sy * y + u
                            if sx == 1:
                                for xx in range(W):
                                    out[m, c, row, xx + v] += wt * df[m, j, y, xx]
                            else:
                                for xx in range(W):
                                    out[m, c, row, sx * xx + v] += wt * df[m, j, y, xx]


def resample_rows(const floating[:, :, ::1] a, const intp[:, ::1] index,
                  const double[:, ::1] weight, floating[:, :, ::1] out, int n_threads):
    """out[p, r, x] = sum_t weight[r, t] * a[p, index[r, t], x], accumulated in double.

    a (P, H, W); index, weight (R, taps); out (P, R, W). Parallel over planes.
    """
    cdef intp P = a.shape[0], W = a.shape[2]
    cdef intp R = index.shape[0], taps = index.shape[1]
    cdef intp p, r, t, x, src
    cdef double wt, acc
    with nogil:
        for p in prange(P, num_threads=n_threads, schedule="static"):
            for r in range(R):
                for x in range(W):
                    acc = 0
                    for t in range(taps):
                        wt = weight[r, t]
                        if wt != 0:
                            acc = acc + wt * a[p, index[r, t], x]
                    out[p, r, x] = <floating>acc


def resample_cols(const floating[:, :, ::1] a, const intp[:, ::1] index,
                  const double[:, ::1] weight, floating[:, :, ::1] out, int n_threads):
    """out[p, y, r] = sum_t weight[r, t] * a[p, y, index[r, t]], accumulated in double.

    a (P, H, W); index, weight (R, taps); out (P, H, R). Parallel over planes.
    """
    cdef intp P = a.shape[0], H = a.shape[1]
    cdef intp R = index.shape[0], taps = index.shape[1]
    cdef intp p, r, t, y
    cdef double wt, acc
    with nogil:
        for p in prange(P, num_threads=n_threads, schedule="static"):
            for y in range(H):
                for r in range(R):
                    acc = 0
                    for t in range(taps):
                        wt = weight[r, t]
                        if wt != 0:
                            acc = acc + wt * a[p, y, index[r, t]]
                    out[p, y, r] = <floating>acc


def pool2d(const floating[:, :, ::1] x, floating[:, :, ::1] out, intp ph, intp pw,
           intp sy, intp sx, intp pt, intp pl, bint average, int n_threads):
    """Max or average pooling of planes x (P, H, W) into out (P, Ho, Wo), MatConvNet style.

    Window (i, j) covers rows sy*i - pt ... + ph - 1 and columns sx*j - pl ... + pw - 1, clipped to
    the plane: max pooling ignores the padding, average pooling divides by the clipped area.
    Callers guarantee that every window meets the plane. Parallel over planes.
    """
    cdef intp P = x.shape[0], H = x.shape[1], W = x.shape[2]
    cdef intp Ho = out.shape[1], Wo = out.shape[2]
    cdef intp p, i, j, y, xx, y0, y1, x0, x1
    cdef floating best
    cdef double acc
    with nogil:
        for p in prange(P, num_threads=n_threads, schedule="static"):
            for i in range(Ho):
                y0 = sy * i - pt
                y1 = y0 + ph
                if y0 < 0:
                    y0 = 0
                if y1 > H:
                    y1 = H
                for j in range(Wo):
                    x0 = sx * j - pl
                    x1 = x0 + pw
                    if x0 < 0:
                        x0 = 0
                    if x1 > W:
                        x1 = W
                    if average:
                        acc = 0
                        for y in range(y0, y1):
                            for xx in range(x0, x1):
                                acc = acc + x[p, y, xx]
                        out[p, i, j] = <floating>(acc / ((y1 - y0) * (x1 - x0)))
                    else:
                        best = x[p, y0, x0]
                        for y in range(y0, y1):
                            for xx in range(x0, x1):
                                if x[p, y, xx] > best:
                                    best = x[p, y, xx]
                        out[p, i, j] = best


def relu(const floating[::1] x, floating[::1] out, double leak, int n_threads):
    """out = x where x > 0, leak * x elsewhere (flat arrays)."""
    cdef intp n = x.shape[0], i
    cdef floating lk = <floating>leak
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            if x[i] > 0:
                out[i] = x[i]
            else:
                out[i] = lk * x[i]
