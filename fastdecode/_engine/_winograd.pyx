# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Winograd substitution kernels: F(m x m, r x r) tiles phase by phase, and the transform of the
weights.

GEMM (scipy's BLAS, called single-threaded from each OpenMP thread). The work is cut into tasks
whose outputs are disjoint and whose sizes depend on the shapes only, never on the thread count;
each task runs its GEMMs and adds in a fixed order, so the results are bitwise identical for any
number of threads. Scratch buffers come from the caller, one row per thread
(threadid() < n_threads <= rows), so that no allocation happens here.
"""

from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.string cimport memset

from fastdecode._engine._common cimport intp, _gemm


cdef inline void _combine(floating *dst, intp n, const floating **src, const floating *coef,
                          intp terms) noexcept nogil:
    """dst[q] = sum over t < terms of coef[t] * src[t][q], q < n, added in the order of t (one
    pass for up to four terms)."""
    cdef intp q, t
    cdef const floating *s0
    cdef const floating *s1
    cdef const floating *s2
    cdef const floating *s3
    cdef floating c0, c1, c2, c3
    if terms == 0:
        memset(dst, 0, n * sizeof(floating))
        return
    s0, c0 = src[0], coef[0]
    if terms == 1:
        for q in range(n):
            dst[q] = c0 * s0[q]
        return
    s1, c1 = src[1], coef[1]
    if terms == 2:
        for q in range(n):
            dst[q] = c0 * s0[q] + c1 * s1[q]
        return
    s2, c2 = src[2], coef[2]
    if terms == 3:
        for q in range(n):
            dst[q] = c0 * s0[q] + c1 * s1[q] + c2 * s2[q]
        return
    s3, c3 = src[3], coef[3]
    for q in range(n):
        dst[q] = c0 * s0[q] + c1 * s1[q] + c2 * s2[q] + c3 * s3[q]
    for t in range(4, terms):
        s0, c0 = src[t], coef[t]
        for q in range(n):
            dst[q] = dst[q] + c0 * s0[q]


cdef void _winograd_in(const floating *x, intp H, intp W, intp P, intp y0, intp x0, intp n,
                       intp m, intp a, const floating *bt, floating *col, floating *v,
                       intp ldv) noexcept nogil:
    """n tiles of one tile row, transformed: tile q's a x a input d from (y0, x0 + m*q) of the
    plane x (pixel (y, x) at x[y*P + x], zero outside H x W) gives
    v[(i*a + k)*ldv + q] = (BT d BT^T)[i, k]. For each i, the column transform over the row's
    span, split into its m column phases, then the row transform tile by tile; every loop runs
    over contiguous vectors and skips BT's zeros. col: (span + m*L) elements."""
    cdef intp span = m * (n - 1) + a, L = (span + m - 1) // m
    cdef intp i, k, b, q, y, s0, s1, terms
    cdef floating *ph = col + span
    cdef const floating *src[8]
    cdef floating coef[8]
    s0 = max(0, -x0)
    s1 = max(s0, min(span, W - x0))
    for i in range(a):
        terms = 0
        for k in range(a):
            y = y0 + k
            if bt[i * a + k] != 0 and 0 <= y < H:
                src[terms] = x + y * P + x0 + s0
                coef[terms] = bt[i * a + k]
                terms = terms + 1
        memset(col, 0, s0 * sizeof(floating))
        _combine(col + s0, s1 - s0, src, coef, terms)
        memset(col + s1, 0, (span - s1) * sizeof(floating))
        for b in range(m):     # phase b: ph[b*L + q] = col[m*q + b]
            for q in range((span - b + m - 1) // m):
                ph[b * L + q] = col[m * q + b]
        for k in range(a):
            terms = 0
            for b in range(a):
                if bt[k * a + b] != 0:
                    src[terms] = ph + (b % m) * L + b // m
                    coef[terms] = bt[k * a + b]
                    terms = terms + 1
            _combine(v + (i * a + k) * ldv, n, src, coef, terms)


cdef void _winograd_out(const floating *mm, intp ldm, intp n, intp m, intp a,
                        const floating *at, floating *tmp, floating *y, intp Po, intp step,
                        intp rows, intp cols) noexcept nogil:
    """n output tiles of one tile row, M[i, k] of tile q at mm[(i*a + k)*ldm + q]: AT M AT^T
    written to y[o*Po + (m*q + qq)*step] for q < n, o < rows and m*q + qq < cols (cols: the
    columns left in the output row from the first tile). tmp: (m*a + 1)*n elements."""
    cdef intp o, k, i, qq, q, nq, terms
    cdef floating *dst
    cdef floating *acc = tmp + m * a * n
    cdef const floating *src[8]
    cdef floating coef[8]
    for o in range(rows):
        for k in range(a):
            terms = 0
            for i in range(a):
                if at[o * a + i] != 0:
                    src[terms] = mm + (i * a + k) * ldm
                    coef[terms] = at[o * a + i]
                    terms = terms + 1
            _combine(tmp + (o * a + k) * n, n, src, coef, terms)
        for qq in range(m):
            nq = min(n, (cols - qq + m - 1) // m)
            if nq <= 0:
                continue
            terms = 0
            for k in range(a):
                if at[qq * a + k] != 0:
                    src[terms] = tmp + (o * a + k) * n
                    coef[terms] = at[qq * a + k]
                    terms = terms + 1
            _combine(acc, nq, src, coef, terms)
            dst = y + o * Po + qq * step
            for q in range(nq):
                dst[m * step * q] = acc[q]


def substitute_winograd(
        const floating[:, :, ::1] xp,     # IN
        const floating[:, :, :, ::1] u,   # IN
        floating[:, :, ::1] out,          # OUT
        intp H,
        intp W,
        intp P,
        intp off_in,
        intp Ho,
        intp Wo,
        intp Po,
        intp off_out,
        intp sy,
        intp sx,
        const floating[:, ::1] bt,        # IN
        const floating[:, ::1] at,        # IN
        intp tb,
        intp cb,
        floating[:, ::1] scratch,         # work buffer, one row per thread
        int n_threads,
):
    """Substitution of an (sy*r) x (sx*r) kernel at stride (sy, sx) by Winograd's minimal
    filtering F(m x m, r x r), phase by phase.

    Output pixel (sy*Y + py, sx*X + px) collects the taps (py + sy*i, px + sx*k), i, k < r, from
    input pixel (Y - i, X - k): for each phase a stride-1 substitution of an r x r kernel, the
    correlation of the maps, padded by r - 1, with the flipped kernel. Its output tile
    (ty, tx) (m x m phase pixels from (m*ty, m*tx)) is AT [U (.) V] AT^T summed over the input
    channels, V = BT d BT^T for the a x a input tile d from (m*ty - r + 1, m*tx - r + 1)
    (a = m + r - 1): for each of the a*a positions the sum over channels is one GEMM. V is the
    same for every phase.

    xp (F, J, S_in): pixel (y, x) of map (f, j) at xp[f, j, off_in + y*P + x] (H x W).
    u (sy*sx, a*a, C, J): u[py*sx + px, p, c, j] = (G g G^T)[p] for the flipped r x r kernel g of
    phase (py, px) of w[j, c].
    out (F, C, S_out): written in full, pixel (y, x) of the (Ho, Wo) planes
    ((Ho, Wo) = (sy*(H + r - 1), sx*(W + r - 1))) at out[f, c, off_out + y*Po + x], zeros
    elsewhere.
    bt (a, a), at (m, a): the transforms. scratch (>= n_threads,
    >= a*a*tb*(J + cb) + (m*a + 1)*ntx + a*(m*ntx + a)).
    Tasks: tb consecutive tiles of the (F, nty, ntx) tile grid, all phases and C channels in
    blocks of cb; each output pixel is computed by one task in a fixed order, whatever the thread
    count.
    """
    cdef intp F = xp.shape[0], J = xp.shape[1], nph = u.shape[0]
    cdef intp C = out.shape[1], S_out = out.shape[2]
    cdef intp a = bt.shape[0], m = at.shape[0], r = a - m + 1
    cdef intp Hq = H + r - 1, Wq = W + r - 1
    cdef intp nty = (Hq + m - 1) // m, ntx = (Wq + m - 1) // m
    cdef intp ntiles = F * nty * ntx, ntasks = (ntiles + tb - 1) // tb, aa = a * a
    cdef intp t, t0, nt, tl, tile, f, ty, tx, j, c, c0, cn, p, plane, yy, n, ph, py, px
    cdef floating *V
    cdef floating *M
    cdef floating *R
    cdef char *tn = b"N"
    with nogil:
        if Po > Wo or off_out > 0 or S_out > off_out + Ho * Po:
            for plane in prange(F * C, num_threads=n_threads, schedule="static"):
                f = plane // C
                c = plane % C
                memset(&out[f, c, 0], 0, off_out * sizeof(floating))
                if Po > Wo:
                    for yy in range(Ho):
                        memset(&out[f, c, off_out + yy * Po + Wo], 0, (Po - Wo) * sizeof(floating))
                memset(&out[f, c, off_out + Ho * Po], 0,
                       (S_out - off_out - Ho * Po) * sizeof(floating))
        for t in prange(ntasks, num_threads=n_threads, schedule="dynamic"):
            V = &scratch[threadid(), 0]
            M = V + aa * tb * J
            R = M + aa * tb * cb
            t0 = t * tb
            nt = min(tb, ntiles - t0)
            for j in range(J):
                tl = 0
                while tl < nt:   # runs of tiles in one tile row
                    tile = t0 + tl
                    f = tile // (nty * ntx)
                    ty = (tile // ntx) % nty
                    tx = tile % ntx
                    n = min(ntx - tx, nt - tl)
                    _winograd_in(&xp[f, j, off_in], H, W, P, m * ty - r + 1, m * tx - r + 1, n,
                                 m, a, &bt[0, 0], R, V + j * tb + tl, J * tb)
                    tl = tl + n
            for ph in range(nph):
                py = ph // sx
                px = ph % sx
                c0 = 0
                while c0 < C:
                    cn = min(cb, C - c0)
                    for p in range(aa):
                        _gemm(tn, tn, <int>nt, <int>cn, <int>J, V + p * J * tb, <int>tb,
                              &u[ph, p, c0, 0], <int>J, M + p * cb * tb, <int>tb)
                    for c in range(cn):
                        tl = 0
                        while tl < nt:
                            tile = t0 + tl
                            f = tile // (nty * ntx)
                            ty = (tile // ntx) % nty
                            tx = tile % ntx
                            n = min(ntx - tx, nt - tl)
                            _winograd_out(M + c * tb + tl, cb * tb, n, m, a, &at[0, 0], R,
                                          &out[f, c0 + c, off_out + (sy * m * ty + py) * Po
                                               + sx * m * tx + px],
                                          sy * Po, sx, min(m, Hq - m * ty), Wq - m * tx)
                            tl = tl + n
                    c0 = c0 + cn


def winograd_weights(
        const floating[:, :, :, ::1] w,   # IN
        const double[:, ::1] G,           # IN
        floating[:, :, ::1] out,          # OUT
        int n_threads,
):
    """out[i*a + k, c, j] = (G g G^T)[i, k] for the flipped kernel g[u, v] = w[j, c, r-1-u, r-1-v].

    w (J, C, r, r); G (a, r); out (a*a, C, J). Sums in double, rounded once. Parallel over c.
    """
    cdef intp J = w.shape[0], C = w.shape[1], r = w.shape[2], a = G.shape[0]
    cdef intp c, j
    with nogil:
        for c in prange(C, num_threads=n_threads, schedule="static"):
            for j in range(J):
                _winograd_kernel(&w[j, c, 0, 0], &G[0, 0], r, a, &out[0, c, j], C * J)


cdef void _winograd_kernel(const floating *g, const double *G, intp r, intp a, floating *out,
                           intp ld) noexcept nogil:
    """out[(i*a + k)*ld] = (G f G^T)[i, k], f the r x r kernel g flipped, in double."""
    cdef double t[64]
    cdef double s
    cdef intp i, k, u, v
    for i in range(a):
        for v in range(r):
            s = 0
            for u in range(r):
                s = s + G[i * r + u] * g[(r - 1 - u) * r + (r - 1 - v)]
            t[i * r + v] = s
    for i in range(a):
        for k in range(a):
            s = 0
            for v in range(r):
                s = s + t[i * r + v] * G[k * r + v]
            out[(i * a + k) * ld] = <floating>s
