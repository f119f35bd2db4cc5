# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Resampling kernels: separable taps along rows and columns (imresize, box unpooling), box
upsampling, and box sums of decoded filters. Sums in double, rounded once; parallel over
planes.
"""

from cython cimport floating
from cython.parallel cimport prange

from fastdecode._engine._common cimport intp


def resample_rows(
        const floating[:, :, ::1] a,   # IN
        const intp[:, ::1] index,      # IN
        const double[:, ::1] weight,   # IN
        floating[:, :, ::1] out,       # OUT
        int n_threads,
):
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


def resample_cols(
        const floating[:, :, ::1] a,   # IN
        const intp[:, ::1] index,      # IN
        const double[:, ::1] weight,   # IN
        floating[:, :, ::1] out,       # OUT
        int n_threads,
):
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


def upsample_box(
        const floating[:, :, ::1] a,   # IN
        floating[:, :, ::1] out,       # OUT
        intp fy,
        intp fx,
        double wy,
        double wx,
        int n_threads,
):
    """out[p, fy*y + s, fx*x + t] = (wx * (wy * a[p, y, x])), each product rounded to floating.

    a (P, H, W); out (P, H*fy, W*fx). Nearest (wy = wx = 1) or adjoint (1/fy, 1/fx) unpooling
    with window == stride, rounded exactly as the separable resampling rounds it.
    """
    cdef intp P = a.shape[0], H = a.shape[1], W = a.shape[2]
    cdef intp p, y, x, s, t, r
    cdef floating val
    with nogil:
        for p in prange(P, num_threads=n_threads, schedule="static"):
            for y in range(H):
                r = fy * y
                for x in range(W):
                    val = <floating>(wx * <double>(<floating>(wy * a[p, y, x])))
                    for t in range(fx):
                        out[p, r, fx * x + t] = val
                for s in range(1, fy):
                    for x in range(W * fx):
                        out[p, r + s, x] = out[p, r, x]


def box_sum(
        const floating[:, :, :, ::1] w,   # IN
        floating[:, :, :, ::1] out,       # OUT
        intp ph,
        intp pw,
        intp dy,
        intp dx,
        double scale,
        int n_threads,
):
    """out[j, c, U, V] = scale * sum of w[j, c, U - dy*t, V - dx*t2] over t < ph, t2 < pw.

    w (J, C, kh, kw); out (J, C, dy*(ph-1) + kh, dx*(pw-1) + kw): w substituted into a ph x pw
    box of ``scale`` at stride (dy, dx) (a box unpooling merged with the substitution below it,
    or decoded maps summed over a pooling window). Sums in double, rounded once. Parallel over j.
    """
    cdef intp J = w.shape[0], C = w.shape[1], kh = w.shape[2], kw = w.shape[3]
    cdef intp KH = out.shape[2], KW = out.shape[3]
    cdef intp j, c, U, V, t, t2, u, v
    cdef double acc
    with nogil:
        for j in prange(J, num_threads=n_threads, schedule="static"):
            for c in range(C):
                for U in range(KH):
                    for V in range(KW):
                        acc = 0
                        for t in range(ph):
                            u = U - dy * t
                            if u < 0 or u >= kh:
                                continue
                            for t2 in range(pw):
                                v = V - dx * t2
                                if 0 <= v < kw:
                                    acc = acc + w[j, c, u, v]
                        out[j, c, U, V] = <floating>(scale * acc)
