"""The atlas over a dask array of images: the passes run on Dask, and only the images and scores
the pages show are brought into memory."""

import numpy as np

from .. import _dask
from .._scores import _tops
from . import _images


class Picked:
    """Some rows of a large array, indexed by their index in it (``picked[i]``, ``picked[i, f]``
    for a row i among ``index``); ``shape`` and ``ndim`` are those of the whole array."""

    def __init__(self, rows, index, n):
        self.rows, self.index = rows, np.asarray(index)
        self.shape = (int(n),) + tuple(rows.shape[1:])
        self.ndim = len(self.shape)

    def __len__(self):
        return self.shape[0]

    def _row(self, i):
        pos = int(np.searchsorted(self.index, i))
        if pos >= len(self.index) or self.index[pos] != i:
            raise IndexError("row %d was not brought into memory" % i)
        return pos

    @property
    def dtype(self):
        return self.rows.dtype

    def __getitem__(self, key):
        if isinstance(key, tuple):
            return self.rows[(self._row(int(key[0])),) + key[1:]]
        if isinstance(key, np.ndarray):
            return self.rows[[self._row(int(i)) for i in key.ravel()]].reshape(
                key.shape + self.rows.shape[1:])
        return self.rows[self._row(int(key))]


def check_images(net, images, display, labels, image_names, limit, top_layer):
    """:func:`fastdecode.atlas._check_images` for a dask array: checked from its metadata (each
    chunk's values when it is computed), cut to ``limit``; ``display`` None or a uint8 dask
    array or numpy array, returned as it is (rows are picked later)."""
    x = images
    if x.ndim == 3 and net.input_channels == 1:
        x = x[:, None]
    if limit is not None:
        x = x[:int(limit)]
    x = _dask.check_images(net, x, top_layer)
    N = len(x)
    if display is not None:
        if np.dtype(display.dtype) != np.uint8:
            raise TypeError("display_images for a dask array of images must be uint8 pictures, "
                            "got dtype %s" % display.dtype)
        if limit is not None:
            display = display[:int(limit)]
        if len(display) != N:
            raise ValueError("display images %s do not match the images %s (N, ...)"
                             % (display.shape, x.shape))
    if labels is not None:
        labels = list(labels)[:N] if limit is not None else list(labels)
        if len(labels) != N:
            raise ValueError("labels has %d entries for %d images" % (len(labels), N))
    if image_names is not None:
        image_names = [str(n) for n in image_names]
        image_names = image_names[:N] if limit is not None else image_names
        if len(image_names) != N:
            raise ValueError("image_names has %d entries for %d images"
                             % (len(image_names), N))
    return x, display, labels, image_names


def top_images(scores, k):
    """(TopImages, picked scores) of lazy scores in one pass: the k best images of each filter
    and the scores of those images (``picked.network[i, f]``), the rest never held."""
    dask, _ = _dask.require()
    (vn, tn), (vd, td) = _dask.compute(_dask.top_candidates(scores.network, k),
                                       _dask.top_candidates(scores.decoded, k))
    N, K = scores.network.shape
    picked = []
    for values, index in ((vn, tn), (vd, td)):
        rows = np.unique(index)
        S = np.full((len(rows), K), np.nan)
        S[np.searchsorted(rows, index), np.broadcast_to(np.arange(K), index.shape)] = values
        picked.append(Picked(S, rows, N))
    return (_tops(np.ascontiguousarray(tn.T), np.ascontiguousarray(td.T)),
            scores._replace(network=picked[0], decoded=picked[1]))


def pick(images, used):
    """``Picked`` rows ``used`` (sorted, unique) of a dask or numpy array, computed once."""
    used = np.asarray(used, dtype=np.int64)
    rows = images[used]
    if _dask.is_dask_array(rows):
        rows = _dask.compute(rows)[0]
    return Picked(np.asarray(rows), used, len(images))


def shown(x, display, used):
    """The pictures of the images ``used``: the display images' rows, else the network inputs
    stretched image by image (as :func:`_images.rescaled_for_display`, which works per image)."""
    if display is not None:
        p = pick(display, used)
        return Picked(_images.to_uint8_images(p.rows), p.index, p.shape[0])
    p = pick(x, used)
    return Picked(_images.rescaled_for_display(p.rows), p.index, p.shape[0])
