"""What the atlas shows of one layer: decoded and thresholded filters, Eq. 3 per filter, top
images and, for units that see part of the image, where in each top image they respond most."""

from collections import namedtuple

import numpy as np

import fastdecode as fd

from .. import _dask
from . import _lazy

LayerResult = namedtuple("LayerResult", [
    "name", "index", "decoded", "thresholded", "error", "scores", "tops", "network_pos",
    "decoded_pos"])
LayerResult.__doc__ = """One conv layer of the atlas.

decoded, thresholded: (K, C0, h, w); error: ReconstructionError or None (no images);
scores: FilterScores or None; tops: TopImages or None; network_pos, decoded_pos: (K, k, 2) int
top-left corner (row, col) in image pixels of each top image's receptive field at its best
position (may lie outside the image, in the padding), or None when a unit sees the whole image.
"""

#: Bytes of network responses held at once while finding the top images' best positions.
POSITION_BYTES = 128 * 2**20


def sees_part(net, layer, image_shape):
    """Whether a unit of ``layer`` sees only part of an image (C, H, W): the layer's output has
    more than one position."""
    return net.output_shape((1,) + tuple(image_shape), upto=layer)[2:] != (1, 1)


def _corner(net, layer, flat, width):
    """Top-left corners (n, 2) of the receptive fields at flat output positions."""
    (sy, sx), (pt, _, pl, _) = net.stride(layer), net.padding(layer)
    r, c = np.divmod(np.asarray(flat, dtype=np.int64), width)
    return np.stack([r * sy - pt, c * sx - pl], axis=-1)


def network_positions(net, layer, images, tops, n_threads=None):
    """(K, k, 2) corners of the best position of filter f in its top images by the network."""
    K, k = tops.shape
    grid = net.output_shape((1,) + images.shape[1:], upto=layer)
    per_image = int(np.prod(grid[1:])) * images.dtype.itemsize
    batch = max(1, POSITION_BYTES // max(1, per_image))
    wanted = np.unique(tops)
    flat = np.zeros((K, k), np.int64)
    filt = np.broadcast_to(np.arange(K)[:, None], (K, k))
    for start in range(0, len(wanted), batch):
        ids = wanted[start:start + batch]
        R = net.forward(images[ids], upto=layer, n_threads=n_threads)
        R = R.reshape(R.shape[0], R.shape[1], -1)
        mask = np.isin(tops, ids)
        rows = np.searchsorted(ids, tops[mask])
        flat[mask] = R[rows, filt[mask]].argmax(axis=-1)
    return _corner(net, layer, flat, grid[3])


def decoded_positions(net, layer, images, decoded, tops):
    """(K, k, 2) corners of the best position of decoded filter f in its top images by the
    decoded filters' correlation (at the layer's cumulative stride and padding)."""
    K, k = tops.shape
    (sy, sx), (pt, pb, pl, pr) = net.stride(layer), net.padding(layer)
    h, w = decoded.shape[2:]
    grid = net.output_shape((1,) + images.shape[1:], upto=layer)
    flat = np.zeros((K, k), np.int64)
    for img in np.unique(tops):
        fs, rs = np.nonzero(tops == img)
        x = np.pad(np.asarray(images[img], dtype=np.float64),
                   ((0, 0), (pt, pb), (pl, pr)))
        win = np.lib.stride_tricks.sliding_window_view(x, (h, w), axis=(1, 2))
        win = win[:, ::sy, ::sx][:, :grid[2], :grid[3]]       # (C, Ho, Wo, h, w)
        resp = np.einsum("cyxhw,fchw->fyx", win, decoded[fs].astype(np.float64),
                         optimize=True)
        flat[fs, rs] = resp.reshape(len(fs), -1).argmax(axis=-1)
    return _corner(net, layer, flat, grid[3])


def analyse(net, layer, decoded, images, *, unpool, threshold, top_k, n_threads, progress):
    """A :class:`LayerResult` for conv layer ``layer`` with its decoded filters; images may be
    None."""
    name = net[layer].name
    thresholded = fd.threshold_filters(decoded, threshold)
    if images is None:
        return LayerResult(name, net.index(layer), decoded, thresholded, None, None, None,
                           None, None)
    error = fd.reconstruction_error(net, images, layer, unpool=unpool, decoded=decoded,
                                    n_threads=n_threads, progress=progress)
    scores = fd.filter_scores(net, images, layer, unpool=unpool, decoded=decoded,
                              n_threads=n_threads, progress=progress)
    if _dask.is_lazy_scores(scores):  # the top images and their scores only, in one pass
        tops, scores = _lazy.top_images(scores, min(top_k, len(images)))
        images = _lazy.pick(images, np.unique(np.concatenate([tops.network.ravel(),
                                                              tops.decoded.ravel()])))
    else:
        tops = fd.top_images(scores, min(top_k, len(images)))
    npos = dpos = None
    if sees_part(net, layer, images.shape[1:]):
        npos = network_positions(net, layer, images, tops.network, n_threads)
        dpos = decoded_positions(net, layer, images, decoded, tops.decoded)
    return LayerResult(name, net.index(layer), decoded, thresholded, error, scores, tops, npos,
                       dpos)
