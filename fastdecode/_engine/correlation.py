"""Correlation (a conv layer's forward): im2col + GEMM in blocks fixed by the shapes."""

import numpy as np

from . import _correlation, blas, tuning, workspace
from .grid import ceil_div, team


def correlate_blocks(N, K, P, CKK):
    """(nb, kb, pr) for :func:`correlate_into`'s pixel-block form, from the shapes alone.

    nb images x kb filters make one task (disjoint outputs); pr output pixels (rows of the
    im2col matrix, CKK values each) make one GEMM, so the scratch stays near
    2 * GEMM_BLOCK_ELEMENTS per thread however large the images.
    """
    kb = K if K <= tuning.GEMM_WIDTH else tuning.GEMM_WIDTH // 2
    pr = max(1, 2 * tuning.GEMM_BLOCK_ELEMENTS // CKK)
    nb = max(1, min(N, ceil_div(pr, P)))
    if N >= 8:
        nb = min(nb, ceil_div(N, 8))
    pr = min(pr, nb * P)
    return nb, kb, pr


def correlate_plane_blocks(K, Ho, Wo, CKK):
    """(kb, rb): filters and output rows per task of the plane-wise correlation (shapes only)."""
    kb = K if K <= tuning.GEMM_WIDTH else tuning.GEMM_WIDTH // 2
    rb = max(1, min(Ho, 2 * tuning.GEMM_BLOCK_ELEMENTS // (Wo * CKK)))
    wide = min(Ho, ceil_div(tuning.GEMM_WIDTH // 2, Wo))  # at least ~256 GEMM rows if affordable
    if wide * Wo * CKK <= 4 * tuning.GEMM_BLOCK_ELEMENTS:
        rb = max(rb, wide)
    return kb, rb


def correlate_into(x, filters, out, sy, sx, threads, bias=None, pt=0, pl=0):
    """out = valid correlation of x (N, C, H, W) with filters (K, C, h, w), the windows starting
    at (sy*i - pt, sx*j - pl) with zeros outside x, plus bias (K,) when given; returns whether
    out is all finite (checked inside the kernel, block by block).

    im2col + GEMM; inputs validated, C-contiguous, of out's dtype; out (N, K, Ho, Wo), its
    windows within the padded image. From ``tuning.PLANES_MIN_PIXELS`` output pixels per image
    the GEMMs write straight into the output planes; below, blocks of pixels span images.
    """
    if bias is None:
        bias = np.zeros(0, out.dtype)
    if bias.shape not in ((0,), (filters.shape[0],)):
        raise ValueError("bias must have one value per filter (%d) or none, got shape %s"
                         % (filters.shape[0], bias.shape))
    N = x.shape[0]
    K, C, h, w = filters.shape
    Ho, Wo = out.shape[2:]
    P = Ho * Wo
    CKK = C * h * w
    ws = workspace.current()
    if P >= tuning.PLANES_MIN_PIXELS:
        kb, rb = correlate_plane_blocks(K, Ho, Wo, CKK)
        threads = team(threads, N * ceil_div(K, kb) * ceil_div(Ho, rb), 2.0 * N * K * P * CKK)
        patches = ws.rows("patches", threads, rb * Wo * CKK, out.dtype)
        with blas.single_threaded():
            bad = _correlation.correlate_gemm_planes(x, filters.reshape(K, CKK), bias, out, h, w,
                                                     sy, sx, pt, pl, kb, rb, patches, threads)
        return bad == 0
    nb, kb, pr = correlate_blocks(N, K, P, CKK)
    threads = team(threads, ceil_div(N, nb) * ceil_div(K, kb), 2.0 * N * K * P * CKK)
    patches = ws.rows("patches", threads, pr * CKK, out.dtype)
    prod = ws.rows("prod", threads, pr * min(kb, K), out.dtype)
    with blas.single_threaded():
        bad = _correlation.correlate_gemm(x, filters.reshape(K, CKK), bias, out, h, w, sy, sx,
                                          pt, pl, nb, kb, pr, patches, prod, threads)
    return bad == 0
