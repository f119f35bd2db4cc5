"""Running Eq. 3 sums of one (layer, decoded filters) pair over batches or chunks of images,
mergeable in image order; images missing from a lazy pass (all NaN) are NaN in ``per_image``
and left out of the statistics."""

from collections import namedtuple

import numpy as np

from . import _dask
from ._engine import eq3
ReconstructionError = namedtuple(
    "ReconstructionError", ["mean", "std", "per_image", "per_filter", "n_constant"])
ReconstructionError.__doc__ = """Eq. 3 reconstruction error of one layer.

Attributes
----------
mean, std : float
    Mean and standard deviation over images of the per-image error.
per_image : numpy.ndarray
    (N,) mean squared difference of the rescaled R and D of each image.
per_filter : numpy.ndarray
    (K,) the same squared difference averaged over images and positions of one filter (under
    the per-image rescaling); large values point at badly decoded filters. Its mean equals
    ``mean``.
n_constant : tuple of int
    (images whose R was constant, images whose D was constant); such maps are rescaled to
    zeros.
"""


class ErrorAccumulator:
    """Running Eq. 3 sums for one (layer, decoded filters) pair."""

    def __init__(self, n_images, n_filters):
        self.per_image = np.empty(n_images)
        self.filter_sum = np.zeros(n_filters)
        self.positions = 0
        self.constant = [0, 0]

    def add(self, start, R, D, n_threads):
        """Add the images of one batch: R, D (n, K, H, W) of one dtype, C-contiguous."""
        per_image, per_filter, constant = eq3.eq3_sums(R, D, n_threads)
        self.per_image[start:start + len(R)] = per_image
        self.filter_sum += per_filter.sum(axis=0)
        self.positions = R.shape[2] * R.shape[3]
        self.constant[0] += int(constant[:, 0].sum())
        self.constant[1] += int(constant[:, 1].sum())

    @classmethod
    def merged(cls, parts):
        """One accumulator of the images of ``parts`` (accumulators of consecutive chunks)."""
        out = cls(0, len(parts[0].filter_sum))
        out.per_image = np.concatenate([p.per_image for p in parts])
        for p in parts:
            out.filter_sum += p.filter_sum
            out.constant = [a + b for a, b in zip(out.constant, p.constant)]
        out.positions = max(p.positions for p in parts)
        return out

    def with_missing(self, there):
        """This accumulator of the images there, placed among missing ones: ``per_image`` NaN
        at the images where ``there`` (bool (n,)) is False."""
        full = np.full(len(there), np.nan)
        full[there] = self.per_image
        self.per_image = full
        return self

    def result(self):
        missing = np.isnan(self.per_image)
        if not missing.any():
            n = len(self.per_image)
            return ReconstructionError(float(self.per_image.mean()), float(self.per_image.std()),
                                       self.per_image, self.filter_sum / (n * self.positions),
                                       tuple(self.constant))
        n = len(self.per_image) - int(missing.sum())
        if n == 0:
            raise ValueError("all %d images are missing (unreadable files): no Eq. 3 error"
                             % len(self.per_image))
        _dask.warn_missing(int(missing.sum()), len(self.per_image))
        there = self.per_image[~missing]
        return ReconstructionError(float(there.mean()), float(there.std()), self.per_image,
                                   self.filter_sum / (n * self.positions), tuple(self.constant))
