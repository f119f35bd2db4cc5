"""What the atlas shows of each layer over images: Eq. 3 per filter, the scores, the top images
and, for units that see part of the image, where in each top image they respond most.

One pass over the images in batches: the network's responses R at every shown layer, and the
decoded filters' correlations D (from the linear twin, :mod:`._twin`, when it applies; else
from the decoded filters, layer by layer, while they are streamed). Each layer keeps running
sums: Eq. 3 (the per-image rescaling takes each image's whole map, every filter at once), each
filter's best score per image and the position of that best score.
"""

from collections import namedtuple

import numpy as np

import fastdecode as fd

from .._graph import ancestors, use_counts
from .._scores import FilterScores
from ..evaluation import _ErrorAccumulator, decoded_response
from . import _twin

LayerResult = namedtuple("LayerResult", [
    "name", "index", "shape", "error", "tops", "network_scores", "decoded_scores",
    "network_pos", "decoded_pos"])
LayerResult.__doc__ = """One conv layer of the atlas over images.

shape: (C0, h, w) of its decoded filters; error: ReconstructionError; tops: TopImages;
network_scores, decoded_scores: (K, k) the score of each top image (the unit's best response,
the decoded filter's best correlation); network_pos, decoded_pos: (K, k, 2) int top-left corner
(row, col) in image pixels of each top image's receptive field at its best position (may lie
outside the image, in the padding), or None when a unit sees the whole image.
"""

#: Bytes of responses (R, D and the twin's maps) one batch of images may hold.
BATCH_BYTES = 256 * 2**20


def sees_part(net, layer, image_shape):
    """Whether a unit of ``layer`` sees only part of an image (C, H, W): the layer's output has
    more than one position."""
    return net.output_shape((1,) + tuple(image_shape), upto=layer)[2:] != (1, 1)


def _corner(net, layer, flat, width):
    """Top-left corners (..., 2) of the receptive fields at flat output positions."""
    (sy, sx), (pt, _, pl, _) = net.stride(layer), net.padding(layer)
    r, c = np.divmod(np.asarray(flat, dtype=np.int64), width)
    return np.stack([r * sy - pt, c * sx - pl], axis=-1)


class LayerStats:
    """Running results of one layer over batches of images."""

    def __init__(self, net, i, n_images):
        self.net, self.index = net, i
        self.name = net.layers[i].name
        self.K = net.channels(i)
        self.acc = _ErrorAccumulator(n_images, self.K)
        self.scores = [np.empty((n_images, self.K)) for _ in range(2)]
        self.where = [np.empty((n_images, self.K), np.int64) for _ in range(2)]

    def add(self, start, R, D, threads):
        """R and D (n, K, Ho, Wo) of images start .. start + n."""
        self.grid = R.shape[2:]
        D = np.ascontiguousarray(D, dtype=R.dtype)
        self.acc.add(start, np.ascontiguousarray(R), D, threads)
        for j, M in enumerate((R, D)):
            flat = M.reshape(M.shape[0], M.shape[1], -1)
            best = flat.argmax(axis=-1)
            self.where[j][start:start + len(M)] = best
            self.scores[j][start:start + len(M)] = np.take_along_axis(
                flat, best[..., None], axis=-1)[..., 0]

    def result(self, top_k):
        net = self.net
        scores = FilterScores(self.scores[0], self.scores[1], self.name)
        tops = fd.top_images(scores, min(top_k, len(self.scores[0])))
        f = np.arange(self.K)[:, None]
        npos = dpos = None
        if tuple(self.grid) != (1, 1):
            npos = _corner(net, self.index, self.where[0][tops.network, f], self.grid[1])
            dpos = _corner(net, self.index, self.where[1][tops.decoded, f], self.grid[1])
        return LayerResult(self.name, self.index, net.decoded_shape(self.index),
                           self.acc.result(), tops, scores.network[tops.network, f],
                           scores.decoded[tops.decoded, f], npos, dpos)

    def candidates(self, images, top_k):
        """The mergeable part of a chunk of images, ``images`` (n,) their indices in the whole
        set (increasing): the Eq. 3 sums, and per filter the chunk's ``top_k`` best images by
        the network and by the decoded filter: (values (k', K), image indices (k', K), flat
        best positions (k', K)), best first, ties to the lower index (see
        :func:`merged_result`)."""
        images = np.asarray(images, dtype=np.int64)
        out = []
        for j in range(2):
            S = self.scores[j]
            order = np.argsort(-S, axis=0, kind="stable")[:top_k]
            out.append((np.take_along_axis(S, order, axis=0), images[order],
                        np.take_along_axis(self.where[j], order, axis=0)))
        return self.acc, out[0], out[1], tuple(self.grid)


def _merge_candidates(parts, k):
    values = np.concatenate([p[0] for p in parts])
    index = np.concatenate([p[1] for p in parts])
    where = np.concatenate([p[2] for p in parts])
    order = np.lexsort((index, -values), axis=0)[:k]   # value descending, then lower index
    return tuple(np.take_along_axis(a, order, axis=0) for a in (values, index, where))


def merged_result(net, i, parts, top_k):
    """The LayerResult of layer i from the :meth:`LayerStats.candidates` of consecutive chunks
    of images, in order: the result :meth:`LayerStats.result` gives over all of them."""
    from .._scores import _tops
    from ..evaluation import _ErrorAccumulator as Acc
    acc = Acc.merged([p[0] for p in parts])
    k = min(top_k, int(np.count_nonzero(~np.isnan(acc.per_image))))   # images there
    (nv, ni, nw), (dv, di, dw) = (_merge_candidates([p[j] for p in parts], k) for j in (1, 2))
    tops = _tops(np.ascontiguousarray(ni.T), np.ascontiguousarray(di.T))
    grid = parts[0][3]
    npos = dpos = None
    if tuple(grid) != (1, 1):
        npos = _corner(net, i, nw.T, grid[1])
        dpos = _corner(net, i, dw.T, grid[1])
    return LayerResult(net.layers[i].name, i, net.decoded_shape(i), acc.result(), tops,
                       np.ascontiguousarray(nv.T), np.ascontiguousarray(dv.T), npos, dpos)


def forward_at(net, x, keep, threads):
    """{layer index: response} of the network to checked images x at the layers ``keep``,
    one pass, each tensor freed once no later layer reads it."""
    order = sorted(set().union(*(ancestors(net._inputs, k) for k in keep)))
    uses = use_counts(net._inputs, order)
    tensors, out = {-1: x}, {}
    for i in order:
        layer = net.layers[i]
        srcs = net._inputs[i]
        if getattr(layer, "multi_input", False):
            y, finite = layer.run([tensors[s] for s in srcs], threads)
            if not finite:
                raise layer.overflow_error(net.dtype)
        else:
            y = net.forward_layer(i, tensors[srcs[0]], threads)
        for s in set(srcs):
            uses[s] -= list(srcs).count(s)
            if uses[s] == 0:
                del tensors[s]
        tensors[i] = y
        if i in keep:
            out[i] = y
        if uses[i] == 0:
            del tensors[i]
    return out


def batch_size(net, indices, image_shape, tw):
    one = (1,) + tuple(image_shape)
    per = sum(int(np.prod(net.output_shape(one, upto=i))) for i in indices)
    per = per * net.dtype.itemsize * 3 + (0 if tw is None else 4 * tw.bytes)
    return max(1, int(BATCH_BYTES // max(1, per)))


def twin_pass(net, indices, x, unpool, threads, tw, bar=None):
    """{index: LayerStats} of every layer in ``indices`` over the images x by one pass of the
    network and of its linear twin ``tw``."""
    stats = {i: LayerStats(net, i, len(x)) for i in indices}
    bs = batch_size(net, indices, x.shape[1:], tw)
    for start in range(0, len(x), bs):
        xb = x[start:start + bs]
        R = forward_at(net, xb, set(indices), threads)
        D = _twin.responses(net, tw, xb, unpool, threads)
        for i in indices:
            stats[i].add(start, R[i], D[i], threads)
        del R, D
        if bar is not None:
            bar.update(len(xb))
    return stats


class DirectLayer:
    """A layer's D built chunk by chunk from its decoded filters (when the twin does not
    apply): (N, K, Ho, Wo) for all images, then R and the statistics."""

    def __init__(self, net, i, x):
        self.net, self.i, self.x = net, i, x
        grid = net.output_shape((1,) + x.shape[1:], upto=i)[2:]
        self.D = np.empty((len(x), net.channels(i)) + grid, dtype=net.dtype)

    def add_filters(self, start, filters, threads):
        bs = batch_size(self.net, [self.i], self.x.shape[1:], None)
        for s in range(0, len(self.x), bs):
            self.D[s:s + bs, start:start + len(filters)] = decoded_response(
                self.net, self.x[s:s + bs], self.i, np.ascontiguousarray(filters), None,
                threads)

    def stats(self, threads):
        st = LayerStats(self.net, self.i, len(self.x))
        bs = batch_size(self.net, [self.i], self.x.shape[1:], None)
        for s in range(0, len(self.x), bs):
            R = self.net.forward(self.x[s:s + bs], upto=self.i, n_threads=threads)
            st.add(s, R, self.D[s:s + bs], threads)
        self.D = None
        return st
