"""The atlas's pass over a ``dask.array.Array`` of images: one task per chunk, merged.

Each task runs the in-memory pass (:mod:`._analysis`) over its chunk of images, in batches:
the network's responses at the shown layers, and the decoded filters' correlations (the linear
twin's responses where it applies, else the images correlated with the decoded filters,
given to the tasks). It returns mergeable results only: the Eq. 3 sums and, per filter, its
top-k images by the network and by the decoded filter with their best positions. They are
merged in chunk order (top images by score, ties to the lower image index), so the atlas
equals the one made from the images in memory. The pictures shown are fetched afterwards for
the top images alone.
"""

import numpy as np

from .. import _dask
from .._validation import format_bytes
from ..evaluation import decoded_response
from . import _analysis, _images, _twin

#: Bytes of decoded filters the tasks may be given (layers the twin does not cover: "bilinear"
#: and "bicubic" unpooling, or layers the twin cannot run).
DIRECT_BYTES = 2 * 2**30


def check_direct(net, indices):
    """Refuse, before any work, decoded filters too large to hand to the tasks."""
    need = sum(net.channels(i) * int(np.prod(net.decoded_shape(i))) * net.dtype.itemsize
               for i in indices)
    if need > DIRECT_BYTES:
        raise MemoryError(
            "a pass over a dask array correlates the images with the decoded filters of %d "
            "layer(s) the linear twin does not cover, %s in all, more than the %s the tasks "
            "may be given: use unpool='nearest' or 'adjoint', or fewer layers"
            % (len(indices), format_bytes(need), format_bytes(DIRECT_BYTES)))


def atlas_pass(net, indices, images, unpool, tw, direct, top_k, n_threads):
    """{layer index: LayerResult} of the layers ``indices`` over the dask array ``images``
    (checked, in ``net.dtype``); ``tw``: the twin's plan (or None), ``direct``: {layer index:
    decoded filters} of the layers the twin does not cover."""
    shared = (net, list(indices), unpool, tw, direct, int(top_k), _dask.task_threads(n_threads))
    tasks = _dask.chunk_tasks(images, _chunk, shared)
    parts = _dask.compute(*tasks)
    return {i: _analysis.merged_result(net, i, [p[i] for p in parts], top_k) for i in indices}


def _chunk(images, start, shared):
    """{layer index: candidates} of one chunk of images (a task)."""
    net, indices, unpool, tw, direct, top_k, threads = shared
    x, there = _dask.present_images(images, "images %d-%d" % (start, start + len(images) - 1))
    if not there.all():   # missing images (unreadable files) are left out
        x = x[there]
    x = x.astype(net.dtype, copy=False)
    where = start + np.flatnonzero(there)
    if len(x) == 0:
        return {i: _nothing(net, i, len(there), x.shape[1:]) for i in indices}
    stats = {i: _analysis.LayerStats(net, i, len(x)) for i in indices}
    bs = _analysis.batch_size(net, indices, x.shape[1:], tw)
    for s in range(0, len(x), bs):
        xb = x[s:s + bs]
        R = _analysis.forward_at(net, xb, set(indices), threads)
        D = {} if tw is None else _twin.responses(net, tw, xb, unpool, threads)
        for i in indices:
            Di = D[i] if i in D else decoded_response(net, xb, i, direct[i], None, threads)
            stats[i].add(s, R[i], Di, threads)
        del R, D
    return {i: _with_missing(stats[i].candidates(where, top_k), there) for i in indices}


def _with_missing(candidates, there):
    acc, *rest = candidates
    return (acc.with_missing(there) if not there.all() else acc, *rest)


def _nothing(net, i, n, image_shape):
    """The candidates of a chunk whose ``n`` images are all missing."""
    from ..evaluation import _ErrorAccumulator
    K = net.channels(i)
    grid = net.output_shape((1,) + tuple(image_shape), upto=i)[2:]
    acc = _ErrorAccumulator(0, K)
    acc.positions = int(np.prod(grid))
    none = (np.zeros((0, K)), np.zeros((0, K), np.int64), np.zeros((0, K), np.int64))
    return acc.with_missing(np.zeros(n, bool)), none, none, tuple(grid)


class Pictures:
    """The pictures of some images of a dask array, by image index, with the shape of the
    whole array ((N, H, W) or (N, H, W, 3)), as the pages read them."""

    def __init__(self, pictures, shape):
        self._pictures = pictures
        self.shape = tuple(shape)
        self.ndim = len(self.shape)

    def __getitem__(self, i):
        return self._pictures[int(i)]


def display_shape(display, n, hw):
    """The (N, H, W[, 3]) shape of a lazy array of display pictures, checked from its metadata:
    uint8, laid out as :func:`._images.to_uint8_images` takes."""
    if display.dtype != np.uint8:
        raise TypeError("a dask array of display images must hold uint8 pixels (their scaling "
                        "is not known before they are read), got dtype %s" % display.dtype)
    one = _images.to_uint8_images(np.zeros((1,) + tuple(int(s) for s in display.shape[1:]),
                                           np.uint8))
    shape = (int(display.shape[0]),) + one.shape[1:]
    if shape[0] != n or shape[1:3] != tuple(hw):
        raise ValueError("display images %s do not match the images (N=%d, H, W=%s)"
                         % (tuple(display.shape), n, tuple(hw)))
    return shape


def pictures(images, display, used):
    """:class:`Pictures` of the images ``used`` (indices), read from ``display`` (a lazy uint8
    array) or made from the network's input ``images`` (each stretched by its own range)."""
    used = np.unique(np.asarray(sorted(used), dtype=np.int64))
    if display is not None:
        shape = display_shape(display, images.shape[0], images.shape[2:])
        rows = _images.to_uint8_images(np.asarray(_dask.compute(display[used])[0]))
    else:
        rows = _images.rescaled_for_display(np.asarray(_dask.compute(images[used])[0]))
        shape = (int(images.shape[0]),) + rows.shape[1:]
    return Pictures({int(i): rows[j] for j, i in enumerate(used)}, shape)
