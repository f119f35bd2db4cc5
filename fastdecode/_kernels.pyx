# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled kernels: correlation, substitution, separable resampling, pooling, ReLU.

Private module. Callers (``fastdecode._api`` and friends) validate shapes, dtypes and values and
allocate the outputs; the kernels trust them. Every output element is written by exactly one
thread in a fixed order of operations, so results are bitwise identical for any thread count.
"""

from cython cimport floating
from cython.parallel cimport prange, threadid

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
    Callers guarantee that every window meets the plane. Windows are read row by row (sums in
    double); whole 2x2 windows, the common case, without loops. Parallel over planes.
    """
    cdef intp P = x.shape[0], H = x.shape[1], W = x.shape[2]
    cdef intp Ho = out.shape[1], Wo = out.shape[2]
    cdef intp p, i, j, y, xx, y0, y1, x0, x1
    cdef floating best, m0, m1
    cdef double acc
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
                    if y1 - y0 == 2 and x1 - x0 == 2:
                        a = &x[p, y0, x0]
                        if average:
                            out[p, i, j] = <floating>(
                                (((<double>a[0] + a[1]) + a[W]) + a[W + 1]) / 4)
                        else:
                            m0 = a[0] if a[0] >= a[1] else a[1]
                            m1 = a[W] if a[W] >= a[W + 1] else a[W + 1]
                            out[p, i, j] = m0 if m0 >= m1 else m1
                    elif average:
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


# --- BLAS-based kernels ------------------------------------------------------------------------
#
# GEMM (scipy's BLAS, called single-threaded from each OpenMP thread) around im2col / col2im.
# The work is cut into tasks whose outputs are disjoint and whose sizes depend on the shapes only,
# never on the thread count; each task runs its GEMMs and scatter-adds in a fixed order, so the
# results are bitwise identical for any number of threads. Scratch buffers come from the caller,
# one row per thread (threadid() < n_threads <= rows), so that no allocation happens here.

from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy, memset
from scipy.linalg.cython_blas cimport sgemm, dgemm


cdef inline bint _nonfinite(floating v) noexcept nogil:
    """Whether v is NaN or inf: its exponent bits all set (integer logic on a copy of its bits)."""
    cdef uint32_t b32
    cdef uint64_t b64
    if floating is float:
        memcpy(&b32, &v, 4)
        return (b32 & 0x7f800000u) == 0x7f800000u
    else:
        memcpy(&b64, &v, 8)
        return (b64 & 0x7ff0000000000000u) == 0x7ff0000000000000u


cdef inline bint _add_and_check(floating *v, intp n, const floating *bias,
                                bint per_value) noexcept nogil:
    """v[q] += bias[q] (per_value) or bias[0] for q < n (nothing when bias is NULL); whether
    any v[q] is then NaN or inf."""
    cdef intp q
    cdef floating b
    cdef bint hit = False
    if bias != NULL and per_value:
        for q in range(n):
            v[q] = v[q] + bias[q]
    elif bias != NULL:
        b = bias[0]
        for q in range(n):
            v[q] = v[q] + b
    for q in range(n):
        hit = hit | _nonfinite(v[q])
    return hit


cdef inline void _gemm(char *ta, char *tb, int m, int n, int k, const floating *a, int lda,
                       const floating *b, int ldb, floating *c, int ldc,
                       bint accumulate=False) noexcept nogil:
    """c = op(a) @ op(b), column-major; c += op(a) @ op(b) with ``accumulate``."""
    cdef float one_s = 1.0, beta_s = 1.0 if accumulate else 0.0
    cdef double one_d = 1.0, beta_d = 1.0 if accumulate else 0.0
    if floating is float:
        sgemm(ta, tb, &m, &n, &k, &one_s, <float *>a, &lda, <float *>b, &ldb, &beta_s,
              <float *>c, &ldc)
    else:
        dgemm(ta, tb, &m, &n, &k, &one_d, <double *>a, &lda, <double *>b, &ldb, &beta_d,
              <double *>c, &ldc)


def substitute_phased(const floating[:, :, ::1] xp, const floating[:, :, :, ::1] wp,
                      floating[:, :, ::1] out, intp H, intp W, intp P, intp off_in,
                      intp Ho, intp Wo, intp Po, intp off_out, intp kh, intp kw, intp sy,
                      intp sx, intp rb, intp cb, floating[:, ::1] scratch, int n_threads):
    """Substitution as accumulated GEMMs on shifted views of padded planes, all phases at once.

    out[c, sy*y + u, sx*x + v] += in[j, y, x] * w[j, c, u, v]. Output pixel (sy*Y + py, sx*X + px)
    collects the taps u = py + sy*a, v = px + sx*b from input pixel (Y - a, X - b): for each
    phase (py, px) a stride-1 substitution with a sub-kernel, in which each tap (a, b) reads the
    input at a fixed offset (a, b) from the output, the same for every phase. With rows of a
    common pitch P, each offset is then one GEMM over whole rows (zero columns catch the rows'
    wrap-around; rows outside the input are skipped) whose columns are the channels of every
    phase, accumulated in a scratch block, and the block is stored interleaved.

    xp (F, J, S_in): input pixel (y, x) of map (f, j) at xp[f, j, off_in + y*P + x], the other
    elements of the first off_in + H*P zero; with nb = ceil(kw / sx) offsets per row,
    P >= W + nb - 1 and off_in >= nb - 1.
    wp (na*nb, C, sy*sx, J): wp[a*nb + b, c, py*sx + px, j] = w[j, c, py + sy*a, px + sx*b], zero
    past the kernel (na = ceil(kh / sy)).
    out (F, C, S_out): written in full, output pixel (y, x) of the (Ho, Wo) planes at
    out[f, c, off_out + y*Po + x] (Ho = (H-1)*sy + kh, Wo = (W-1)*sx + kw, Po >= Wo), zero
    elsewhere: the padded input of a next substitution, or dense planes (Po = Wo, off_out = 0).
    scratch (>= n_threads, >= sy*sx*cb*rb*P).
    Tasks: (map, block of rb phase rows, block of cb channels), disjoint outputs; each adds its
    offsets in a fixed order, so results do not depend on the thread count.
    """
    cdef intp F = xp.shape[0], J = xp.shape[1], S_in = xp.shape[2]
    cdef intp C = out.shape[1], S_out = out.shape[2]
    cdef intp nph = sy * sx, na = (kh + sy - 1) // sy, nb = (kw + sx - 1) // sx
    cdef intp Hp = (Ho + sy - 1) // sy
    cdef intp nrb = (Hp + rb - 1) // rb, ncb = (C + cb - 1) // cb
    cdef intp t, f, y0, y1, c0, c1, c, ph, py, px, a, b, ya, yb, y, x, r, nx, ld
    cdef floating *sc
    cdef floating *src
    cdef floating *dst
    cdef char *tn = b"N"
    with nogil:
        for t in prange(F * nrb * ncb, num_threads=n_threads, schedule="dynamic"):
            sc = &scratch[threadid(), 0]
            f = t // (nrb * ncb)
            y0 = ((t // ncb) % nrb) * rb
            y1 = min(y0 + rb, Hp)
            c0 = (t % ncb) * cb
            c1 = min(c0 + cb, C)
            ld = (y1 - y0) * P
            # zeros around the output rows of this task
            for c in range(c0, c1):
                if y0 == 0 and off_out > 0:
                    memset(&out[f, c, 0], 0, off_out * sizeof(floating))
                if Po > Wo:
                    for r in range(sy * y0, min(sy * y1, Ho)):
                        memset(&out[f, c, off_out + r * Po + Wo], 0, (Po - Wo) * sizeof(floating))
                if y1 == Hp and S_out > off_out + Ho * Po:
                    memset(&out[f, c, off_out + Ho * Po], 0,
                           (S_out - off_out - Ho * Po) * sizeof(floating))
            memset(sc, 0, (c1 - c0) * nph * ld * sizeof(floating))
            for a in range(na):
                ya = max(y0, a)
                yb = min(y1, a + H)
                if ya >= yb:
                    continue
                for b in range(nb):
                    _gemm(tn, tn, <int>((yb - ya) * P), <int>((c1 - c0) * nph), <int>J,
                          &xp[f, 0, 0] + off_in + (ya - a) * P - b, <int>S_in,
                          &wp[a * nb + b, c0, 0, 0], <int>J, sc + (ya - y0) * P, <int>ld, True)
            for c in range(c0, c1):
                for ph in range(nph):
                    py = ph // sx
                    px = ph % sx
                    if py >= Ho or px >= Wo:
                        continue
                    nx = (Wo - px + sx - 1) // sx
                    for y in range(y0, y1):
                        r = sy * y + py
                        if r >= Ho:
                            break
                        src = sc + ((c - c0) * nph + ph) * ld + (y - y0) * P
                        dst = &out[f, c, off_out + r * Po + px]
                        if sx == 1:
                            for x in range(nx):
                                dst[x] = src[x]
                        else:
                            for x in range(nx):
                                dst[sx * x] = src[x]


def substitute_gemm_maps(const floating[:, :, ::1] dl, const floating[:, ::1] w,
                         floating[:, :, :, ::1] out, intp H, intp W, intp kh, intp kw,
                         intp sy, intp sx, intp fb, intp cb, intp rb, floating[:, ::1] scratch,
                         int n_threads, bint planar=False, bint zero=False):
    """Substitution as GEMM + col2im, the GEMM's rows running over the maps' pixels.

    dl (F, H*W, J): the maps df (F, J, H, W) channels last, so that a block of GEMM rows is
    contiguous; or, with ``planar`` (only when fb == 1, so that no block of rows spans two
    maps), df itself as (F, J, H*W), read by the GEMM without a transposed copy;
    w (J, C*kh*kw); out (F, C, (H-1)*sy + kh, (W-1)*sx + kw), zero on entry;
    scratch (>= n_threads, >= rb*W*cb*kh*kw).
    Tasks: blocks of fb maps x cb channels (disjoint outputs); inside a task, GEMMs over blocks of
    rb map rows (f, y): cols[(f, y, x), (c, u, v)] = sum_j df[f, j, y, x] * w[j, c, u, v], then
    out[f, c, sy*y + u, sx*x + v] += cols. Suits maps larger than the weights.
    With ``zero``, out need not be zero on entry: each task clears its own planes first (in
    parallel, and just before it adds to them).
    """
    cdef intp F = dl.shape[0], HW = H * W, J = w.shape[0]
    cdef intp C = out.shape[1], plane = out.shape[2] * out.shape[3]
    cdef intp KK = kh * kw, CKK = C * KK
    cdef intp nfb = (F + fb - 1) // fb, ncb = (C + cb - 1) // cb
    cdef intp t, f0, f1, c0, c1, q0, q1, q, r, f, y, x, c, u, v, m, n, qrows
    cdef floating *cols
    cdef floating *src
    cdef floating *dst
    cdef char *tt = b"T"
    cdef char *tn = b"N"
    with nogil:
        for t in prange(nfb * ncb, num_threads=n_threads, schedule="dynamic"):
            cols = &scratch[threadid(), 0]
            f0 = (t // ncb) * fb
            f1 = min(f0 + fb, F)
            c0 = (t % ncb) * cb
            c1 = min(c0 + cb, C)
            n = (c1 - c0) * KK
            qrows = (f1 - f0) * H
            if zero:
                for f in range(f0, f1):
                    memset(&out[f, c0, 0, 0], 0, (c1 - c0) * plane * sizeof(floating))
            q0 = 0
            while q0 < qrows:
                q1 = min(q0 + rb, qrows)
                m = (q1 - q0) * W
                if planar:
                    _gemm(tn, tt, <int>m, <int>n, <int>J, &dl[f0, 0, 0] + q0 * W, <int>HW,
                          &w[0, 0] + c0 * KK, <int>CKK, cols, <int>m)
                else:
                    _gemm(tt, tt, <int>m, <int>n, <int>J, &dl[f0, 0, 0] + q0 * W * J, <int>J,
                          &w[0, 0] + c0 * KK, <int>CKK, cols, <int>m)
                for r in range(n):
                    c = c0 + r // KK
                    u = (r % KK) // kw
                    v = r % kw
                    for q in range(q0, q1):
                        f = f0 + q // H
                        y = q % H
                        src = cols + r * m + (q - q0) * W
                        dst = &out[f, c, sy * y + u, v]
                        if sx == 1:
                            for x in range(W):
                                dst[x] += src[x]
                        else:
                            for x in range(W):
                                dst[sx * x] += src[x]
                q0 = q1


def substitute_gemm_weights(const floating[:, :, ::1] dl, const floating[:, ::1] wt,
                            floating[:, :, :, ::1] out, intp h, intp wd, intp KH, intp KW,
                            intp sy, intp sx, intp fb, intp cb, intp rb,
                            floating[:, ::1] scratch, int n_threads):
    """Substitution as GEMM + col2im, the GEMM's rows running over the weights' entries.

    dl (F, h*wd, J): the maps df (F, J, h, wd) channels last; wt (C*KH*KW, J): the weights
    (J, C, KH, KW) transposed, so that a block of GEMM rows is contiguous;
    out (F, C, (h-1)*sy + KH, (wd-1)*sx + KW), zero on entry;
    scratch (>= n_threads, >= rb*KW*fb*h*wd).
    Tasks: blocks of fb maps x cb channels (disjoint outputs); inside a task, GEMMs over blocks of
    rb weight rows (c, u): cols[(c, u, v), (f, y, x)] = sum_j w[j, c, u, v] * df[f, j, y, x], then
    out[f, c, sy*y + u, sx*x + v] += cols (rows of KW contiguous values). Suits weights larger
    than the maps, e.g. a layer's weights substituted onto the decoded filters below.
    """
    cdef intp F = dl.shape[0], hw = dl.shape[1], J = dl.shape[2]
    cdef intp C = out.shape[1]
    cdef intp KK = KH * KW
    cdef intp nfb = (F + fb - 1) // fb, ncb = (C + cb - 1) // cb
    cdef intp t, f0, f1, c0, c1, q0, q1, q, p, f, y, x, c, u, v, m, n, qend
    cdef floating *cols
    cdef floating *src
    cdef floating *dst
    cdef char *tn = b"N"
    cdef char *tt = b"T"
    with nogil:
        for t in prange(nfb * ncb, num_threads=n_threads, schedule="dynamic"):
            cols = &scratch[threadid(), 0]
            f0 = (t // ncb) * fb
            f1 = min(f0 + fb, F)
            c0 = (t % ncb) * cb
            c1 = min(c0 + cb, C)
            n = (f1 - f0) * hw
            q0 = c0 * KH
            qend = c1 * KH
            while q0 < qend:
                q1 = min(q0 + rb, qend)
                m = (q1 - q0) * KW
                _gemm(tt, tn, <int>m, <int>n, <int>J, &wt[0, 0] + q0 * KW * J, <int>J,
                      &dl[f0, 0, 0], <int>J, cols, <int>m)
                for p in range(n):
                    f = f0 + p // hw
                    y = (p % hw) // wd
                    x = p % wd
                    for q in range(q0, q1):
                        c = q // KH
                        u = q % KH
                        src = cols + p * m + (q - q0) * KW
                        dst = &out[f, c, sy * y + u, sx * x]
                        for v in range(KW):
                            dst[v] += src[v]
                q0 = q1


def correlate_gemm(const floating[:, :, :, ::1] x, const floating[:, ::1] w,
                   const floating[::1] bias, floating[:, :, :, ::1] out, intp kh, intp kw,
                   intp sy, intp sx, intp pt, intp pl, intp nb, intp kb, intp pr,
                   floating[:, ::1] patches_scratch, floating[:, ::1] prod_scratch,
                   int n_threads):
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


def correlate_gemm_planes(const floating[:, :, :, ::1] x, const floating[:, ::1] w,
                          const floating[::1] bias, floating[:, :, :, ::1] out, intp kh, intp kw,
                          intp sy, intp sx, intp pt, intp pl, intp kb, intp rb,
                          floating[:, ::1] patches_scratch, int n_threads):
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


def upsample_box(const floating[:, :, ::1] a, floating[:, :, ::1] out, intp fy, intp fx,
                 double wy, double wx, int n_threads):
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


def transpose_last2(const floating[:, :, ::1] a, floating[:, :, ::1] out, int n_threads):
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



def pad_planes(const floating[:, :, ::1] a, floating[:, ::1] out, intp P, intp off,
               int n_threads):
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


def box_sum(const floating[:, :, :, ::1] w, floating[:, :, :, ::1] out, intp ph, intp pw,
            intp dy, intp dx, double scale, int n_threads):
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


# --- Winograd substitution ------------------------------------------------------------------

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


def substitute_winograd(const floating[:, :, ::1] xp, const floating[:, :, :, ::1] u,
                        floating[:, :, ::1] out, intp H, intp W, intp P, intp off_in,
                        intp Ho, intp Wo, intp Po, intp off_out, intp sy, intp sx,
                        const floating[:, ::1] bt, const floating[:, ::1] at, intp tb, intp cb,
                        floating[:, ::1] scratch, int n_threads):
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


def winograd_weights(const floating[:, :, :, ::1] w, const double[:, ::1] G,
                     floating[:, :, ::1] out, int n_threads):
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


ctypedef fused float_bits:
    uint32_t
    uint64_t


def count_nonfinite_blocks(const float_bits[::1] bits, float_bits exponent, intp block,
                           int n_threads):
    """Number of blocks of ``block`` elements that hold a NaN or an inf (0: all finite).

    bits: a float32 (uint32) or float64 (uint64) array's bit patterns; exponent: the exponent
    field's mask (0x7f800000 or 0x7ff0000000000000). A value is NaN or inf exactly when its
    exponent bits are all set: integer logic, which no floating-point optimisation can change.
    Parallel over blocks.
    """
    cdef intp n = bits.shape[0], nb = (n + block - 1) // block, b, i, i1, bad = 0
    cdef float_bits hit
    with nogil:
        for b in prange(nb, num_threads=n_threads, schedule="static"):
            i1 = min(n, (b + 1) * block)
            hit = 0
            for i in range(b * block, i1):
                hit = hit | ((bits[i] & exponent) == exponent)
            if hit:
                bad += 1
    return bad


def eq3_sums(const floating[:, ::1] R, const floating[:, ::1] D, intp K, double[::1] per_image,
             double[:, ::1] per_filter, unsigned char[:, ::1] constant, int n_threads):
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
