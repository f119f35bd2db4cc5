"""Eq. 3 of the evaluation: how well decoded correlations predict the responses, per image."""

import numpy as np

from . import _eq3


def eq3_sums(R, D, threads):
    """Eq. 3 for responses R and decoded correlations D (N, K, H, W) of one dtype, C-contiguous:
    (per_image (N,) mean squared difference of the per-image rescaled maps, per_filter (N, K)
    sums of squared differences over positions, constant (N, 2) bool: R, D constant)."""
    if R.shape != D.shape or R.dtype != D.dtype or R.ndim != 4:
        raise ValueError("R and D must be (N, K, H, W) arrays of one shape and dtype, got %s %s "
                         "and %s %s" % (R.dtype, R.shape, D.dtype, D.shape))
    R, D = np.ascontiguousarray(R), np.ascontiguousarray(D)
    N, K = R.shape[:2]
    per_image = np.empty(N)
    per_filter = np.empty((N, K))
    constant = np.empty((N, 2), dtype=np.uint8)
    _eq3.eq3_sums(R.reshape(N, -1), D.reshape(N, -1), K, per_image, per_filter, constant,
                  max(1, min(threads, N)))
    return per_image, per_filter, constant.astype(bool)
