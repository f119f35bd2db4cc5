# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Substitution kernels (transposed convolutions): phase-wise shifted GEMMs over padded planes,
and GEMM + col2im with the GEMM's rows over the maps' pixels or over the weights' entries.

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


def substitute_phased(
        const floating[:, :, ::1] xp,      # IN
        const floating[:, :, :, ::1] wp,   # IN
        floating[:, :, ::1] out,           # OUT
        intp H,
        intp W,
        intp P,
        intp off_in,
        intp Ho,
        intp Wo,
        intp Po,
        intp off_out,
        intp kh,
        intp kw,
        intp sy,
        intp sx,
        intp rb,
        intp cb,
        floating[:, ::1] scratch,          # work buffer, one row per thread
        int n_threads,
):
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


def substitute_gemm_maps(
        const floating[:, :, ::1] dl,   # IN
        const floating[:, ::1] w,       # IN
        floating[:, :, :, ::1] out,     # IN/OUT: added to
        intp H,
        intp W,
        intp kh,
        intp kw,
        intp sy,
        intp sx,
        intp fb,
        intp cb,
        intp rb,
        floating[:, ::1] scratch,       # work buffer, one row per thread
        int n_threads,
        bint planar=False,
        bint zero=False,
):
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


def substitute_gemm_weights(
        const floating[:, :, ::1] dl,   # IN
        const floating[:, ::1] wt,      # IN
        floating[:, :, :, ::1] out,     # IN/OUT: added to
        intp h,
        intp wd,
        intp KH,
        intp KW,
        intp sy,
        intp sx,
        intp fb,
        intp cb,
        intp rb,
        floating[:, ::1] scratch,       # work buffer, one row per thread
        int n_threads,
):
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
