# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Correlation kernels: im2col + GEMM, in blocks of output pixels or straight into the output
planes, with the bias added and the result checked for NaN/inf block by block.

GEMM (scipy's BLAS, called single-threaded from each OpenMP thread). The work is cut into tasks
whose outputs are disjoint and whose sizes depend on the shapes only, never on the thread count;
each task runs its GEMMs and adds in a fixed order, so the results are bitwise identical for any
number of threads. Scratch buffers come from the caller, one row per thread
(threadid() < n_threads <= rows), so that no allocation happens here.
"""

from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.string cimport memset

from fastdecode._engine._common cimport intp, _add_and_check, _gemm, _nonfinite


def correlate_gemm(
        const floating[:, :, :, ::1] x,     # IN
        const floating[:, ::1] w,           # IN
        const floating[::1] bias,           # IN
        floating[:, :, :, ::1] out,         # OUT
        intp kh,
        intp kw,
        intp sy,
        intp sx,
        intp pt,
        intp pl,
        intp nb,
        intp kb,
        intp pr,
        floating[:, ::1] patches_scratch,   # work buffer, one row per thread
        floating[:, ::1] prod_scratch,      # work buffer, one row per thread
        int n_threads,
):
    """Valid correlation as im2col + GEMM, plus bias[k] on filter k (bias of K values, or none
    when empty); returns the number of tasks whose output holds a NaN or an inf.

    x (N, C, H, W), unpadded: window (i, j) starts at row sy*i - pt, column sx*j - pl, and
    reads zeros outside the image; w (K, C*kh*kw); out (N, K, Ho, Wo);
    patches_scratch (>= n_threads, >= pr*C*kh*kw), prod_scratch (>= n_threads, >= pr*kb).
    Tasks: blocks of nb images x kb filters (disjoint outputs); inside a task, chunks of pr output
    pixels (n, i, j): patches[(n, i, j), (c, u, v)] gathered from x, then
    out[n, k, i, j] = sum_{c,u,v} patches * w[k, c, u, v] by one GEMM. When the filters cover
    the whole image (one output pixel) and one task holds all filters, the GEMM reads x and
    writes out directly. The bias and the check follow each GEMM, on its block still in cache.
    """
    cdef intp N = x.shape[0], C = x.shape[1]
    cdef intp K = w.shape[0], CKK = w.shape[1], KK = kh * kw
    cdef intp Ho = out.shape[2], Wo = out.shape[3], P = Ho * Wo
    cdef intp nnb = (N + nb - 1) // nb, nkb = (K + kb - 1) // kb
    cdef intp H = x.shape[2], W = x.shape[3]
    cdef intp t, n0, n1, k0, k1, n, i, j, c, u, v, k, p, m, r, r0, r1, total, bad = 0
    cdef intp row, col0
    cdef bint has_bias = bias.shape[0] > 0, hit
    cdef bint whole = H == kh and W == kw and pt == 0 and pl == 0
    cdef floating val
    cdef floating *patches
    cdef floating *prod
    cdef floating *dst
    cdef const floating *src
    cdef char *tn = b"N"
    cdef char *tt = b"T"
    with nogil:
        for t in prange(nnb * nkb, num_threads=n_threads, schedule="dynamic"):
            hit = False
            patches = &patches_scratch[threadid(), 0]
            prod = &prod_scratch[threadid(), 0]
            n0 = (t // nkb) * nb
            n1 = min(n0 + nb, N)
            k0 = (t % nkb) * kb
            k1 = min(k0 + kb, K)
            m = k1 - k0
            total = (n1 - n0) * P
            if P == 1 and m == K and whole:
                # every image is one patch and out[n0:n1] is one (K x images) column-major
                # block: a single GEMM, no copies
                _gemm(tt, tn, <int>K, <int>total, <int>CKK, &w[0, 0], <int>CKK, &x[n0, 0, 0, 0],
                      <int>CKK, &out[n0, 0, 0, 0], <int>K)
                for n in range(n0, n1):
                    hit = hit | _add_and_check(&out[n, 0, 0, 0], K,
                                               &bias[0] if has_bias else NULL, True)
                if hit:
                    bad += 1
                continue
            r0 = 0
            while r0 < total:
                r1 = min(r0 + pr, total)
                # im2col: one column of CKK values per output pixel (column-major CKK x rows)
                for r in range(r0, r1):
                    n = n0 + r // P
                    i = (r % P) // Wo
                    j = r % Wo
                    dst = patches + (r - r0) * CKK
                    col0 = sx * j - pl
                    for c in range(C):
                        for u in range(kh):
                            row = sy * i + u - pt
                            if row < 0 or row >= H:
                                for v in range(kw):
                                    dst[(c * kh + u) * kw + v] = 0
                                continue
                            src = &x[n, c, row, 0]
                            if col0 >= 0 and col0 + kw <= W:   # the usual case: inside
                                for v in range(kw):
                                    dst[(c * kh + u) * kw + v] = src[col0 + v]
                                continue
                            for v in range(kw):
                                dst[(c * kh + u) * kw + v] = (
                                    src[col0 + v] if 0 <= col0 + v < W else 0)
                # prod (m x rows, column-major) = w[k0:k1] (m x CKK) @ patches (CKK x rows)
                _gemm(tt, tn, <int>m, <int>(r1 - r0), <int>CKK, &w[k0, 0], <int>CKK, patches,
                      <int>CKK, prod, <int>m)
                for r in range(r0, r1):
                    n = n0 + r // P
                    p = r % P
                    src = prod + (r - r0) * m
                    for k in range(m):
                        val = src[k] + bias[k0 + k] if has_bias else src[k]
                        hit = hit | _nonfinite(val)
                        out[n, k0 + k, p // Wo, p % Wo] = val
                r0 = r1
            if hit:
                bad += 1
    return bad


def correlate_gemm_planes(
        const floating[:, :, :, ::1] x,     # IN
        const floating[:, ::1] w,           # IN
        const floating[::1] bias,           # IN
        floating[:, :, :, ::1] out,         # OUT
        intp kh,
        intp kw,
        intp sy,
        intp sx,
        intp pt,
        intp pl,
        intp kb,
        intp rb,
        floating[:, ::1] patches_scratch,   # work buffer, one row per thread
        int n_threads,
):
    """Valid correlation as im2col + GEMM written straight into the output planes, plus bias[k]
    on filter k (none when bias is empty); returns the number of tasks whose output holds a
    NaN or an inf (bias and check on each GEMM's block, still in cache).

    x (N, C, H, W), unpadded: window (i, j) starts at row sy*i - pt, column sx*j - pl, and
    reads zeros outside the image; w (K, C*kh*kw); out (N, K, Ho, Wo);
    patches_scratch (>= n_threads, >= rb*Wo*C*kh*kw).
    Tasks: (image, block of kb filters, block of rb output rows), disjoint outputs. The patches
    are gathered column by column (one (c, u, v) at a time, runs of Wo pixels), and one GEMM
    writes out[n, k0:k1, i0:i1, :] (column-major, leading dimension Ho*Wo). Suits large images.
    """
    cdef intp N = x.shape[0], C = x.shape[1]
    cdef intp K = w.shape[0], CKK = w.shape[1], KK = kh * kw
    cdef intp Ho = out.shape[2], Wo = out.shape[3], P = Ho * Wo
    cdef intp nkb = (K + kb - 1) // kb, nrb = (Ho + rb - 1) // rb
    cdef intp H = x.shape[2], W = x.shape[3]
    cdef intp t, n, k0, k1, i0, i1, i, j, col, c, u, v, rows, k, bad = 0
    cdef intp row, jlo, jhi
    cdef bint has_bias = bias.shape[0] > 0, hit
    cdef floating *patches
    cdef floating *dst
    cdef const floating *src
    cdef char *tn = b"N"
    with nogil:
        for t in prange(N * nkb * nrb, num_threads=n_threads, schedule="dynamic"):
            patches = &patches_scratch[threadid(), 0]
            n = t // (nkb * nrb)
            k0 = ((t // nrb) % nkb) * kb
            k1 = min(k0 + kb, K)
            i0 = (t % nrb) * rb
            i1 = min(i0 + rb, Ho)
            rows = (i1 - i0) * Wo
            for col in range(CKK):
                c = col // KK
                u = (col % KK) // kw
                v = col % kw
                # output columns j whose input column sx*j + v - pl lies inside the image
                jlo = 0 if v >= pl else (pl - v + sx - 1) // sx
                jhi = (W - 1 - v + pl) // sx + 1 if W - 1 - v + pl >= 0 else 0
                jhi = min(jhi, Wo)
                jlo = min(jlo, jhi)
                dst = patches + col * rows
                if (sx == 1 and jlo == 0 and jhi == Wo and sy * i0 + u - pt >= 0
                        and sy * (i1 - 1) + u - pt < H):
                    # the usual case: every window inside the image, runs of Wo values
                    src = &x[n, c, sy * i0 + u - pt, v - pl]
                    for i in range(i1 - i0):
                        for j in range(Wo):
                            dst[j] = src[j]
                        dst = dst + Wo
                        src = src + sy * W
                    continue
                for i in range(i0, i1):
                    dst = patches + col * rows + (i - i0) * Wo
                    row = sy * i + u - pt
                    if row < 0 or row >= H:
                        memset(dst, 0, Wo * sizeof(floating))
                        continue
                    if jlo > 0:   # (calls skipped: runs are short, often no padding)
                        memset(dst, 0, jlo * sizeof(floating))
                    if jhi < Wo:
                        memset(dst + jhi, 0, (Wo - jhi) * sizeof(floating))
                    if jhi == jlo:
                        continue
                    src = &x[n, c, row, sx * jlo + v - pl]   # the first column read
                    if sx == 1:
                        for j in range(jhi - jlo):
                            dst[jlo + j] = src[j]
                    else:
                        for j in range(jhi - jlo):
                            dst[jlo + j] = src[sx * j]
            _gemm(tn, tn, <int>rows, <int>(k1 - k0), <int>CKK, patches, <int>rows, &w[k0, 0],
                  <int>CKK, &out[n, k0, i0, 0], <int>P)
            hit = False
            for k in range(k0, k1):
                hit = hit | _add_and_check(&out[n, k, i0, 0], rows,
                                           &bias[k] if has_bias else NULL, False)
            if hit:
                bad += 1
    return bad
