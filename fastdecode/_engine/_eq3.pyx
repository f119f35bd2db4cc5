# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Eq. 3 of the evaluation: per-image rescaled maps compared, one task per image.
"""

from cython cimport floating
from cython.parallel cimport prange

from fastdecode._engine._common cimport intp


def eq3_sums(
        const floating[:, ::1] R,         # IN
        const floating[:, ::1] D,         # IN
        intp K,
        double[::1] per_image,            # OUT
        double[:, ::1] per_filter,        # OUT
        unsigned char[:, ::1] constant,   # OUT
        int n_threads,
):
    """Eq. 3's sums for images n of R and D (N, K*P), each image's K maps of P positions.

    Each image's R and D are rescaled to [0, 1] by their own minimum and maximum (in double,
    (v - lo) * (1 / range); a constant map, range 0, to zeros, flagged in constant[n, 0 or 1]);
    per_filter[n, k] = sum over p of the squared difference of the rescaled maps, and
    per_image[n] the mean over k and p. One task per image, sums in a fixed order.
    """
    cdef intp N = R.shape[0], KP = R.shape[1], P = KP // K, n, k, p, q
    cdef double loR, hiR, loD, hiD, sR, sD, v, d, s, total
    with nogil:
        for n in prange(N, num_threads=n_threads, schedule="static"):
            loR = hiR = R[n, 0]
            loD = hiD = D[n, 0]
            for q in range(KP):
                v = R[n, q]
                loR = v if v < loR else loR
                hiR = v if v > hiR else hiR
                v = D[n, q]
                loD = v if v < loD else loD
                hiD = v if v > hiD else hiD
            constant[n, 0] = hiR - loR == 0
            constant[n, 1] = hiD - loD == 0
            sR = 0.0 if hiR - loR == 0 else 1.0 / (hiR - loR)
            sD = 0.0 if hiD - loD == 0 else 1.0 / (hiD - loD)
            total = 0.0
            for k in range(K):
                s = 0.0
                for p in range(k * P, (k + 1) * P):
                    d = (R[n, p] - loR) * sR - (D[n, p] - loD) * sD
                    s = s + d * d
                per_filter[n, k] = s
                total = total + s
            per_image[n] = total / KP
