"""How well decoded filters predict the network: Eq. 3, Table 1, Figure 1, top images, and
self-consistency.

Every function takes images already preprocessed as the network expects, ``(N, C, H, W)``
(``fastdecode.models.preprocess`` for the shipped models). Passes over a dataset run in batches,
so memory stays bounded (each batch writes into the arrays of the one before), and show a tqdm
progress bar on stderr unless ``progress=False``.
"""

from collections import namedtuple

import numpy as np

from . import ops
from ._engine import eq3, workspace
from ._engine.grid import window_grid
from ._validation import as_int, float_array, overflow_error, resolve_threads
from .decoding import check_network as _check_network, decode_with_bias
from .ops import unpool_method as _check_unpool
from ._validation import printable as _printable

__all__ = [
    "ReconstructionError", "reconstruction_error", "table1", "format_table1", "PAPER_TABLE1",
    "FilterScores", "filter_scores", "ActivationMatrix", "max_activation_matrix",
    "ClassifierAccuracy", "classifier_accuracy", "TopImages", "top_images",
    "SelfConsistency", "self_consistency", "threshold_filters",
]

#: Table 1 of the paper (nearest unpooling, MNIST LeNet): Eq. 3 error at L3, L5 and L7.
PAPER_TABLE1 = (("L3", 0.002), ("L5", 0.012), ("L7", 0.078))

#: Bytes of responses one batch may hold (R and D of every layer evaluated in the pass).
BATCH_BYTES = 64 * 2**20


ReconstructionError = namedtuple(
    "ReconstructionError", ["mean", "std", "per_image", "per_filter", "n_constant"])
ReconstructionError.__doc__ = """Eq. 3 reconstruction error of one conv layer.

mean, std: over images of the per-image error.
per_image: (N,) mean squared difference of the normalised R and D of each image.
per_filter: (K,) the same squared difference averaged over images and positions of one filter
    (under the per-image normalisation); large values point at badly decoded filters. Its mean
    equals ``mean``.
n_constant: (images whose R was constant, images whose D was constant); such a map is mapped to
    zeros by the normalisation.
"""

FilterScores = namedtuple("FilterScores", ["network", "decoded", "layer"])
FilterScores.__doc__ = """Per-image score of every filter of a layer: its maximum over positions.

network: (N, K) from ``net.forward(images, upto=layer)``; decoded: (N, K) from the correlation of
the images with the decoded filters (plus the decoded bias when requested); layer: its name.
"""

ActivationMatrix = namedtuple("ActivationMatrix", ["network", "decoded", "network_images",
                                                   "decoded_images"])
ActivationMatrix.__doc__ = """Figure 1: the maximum activations of a layer's filters over a dataset.

network_images: (K,) index of the image that maximises filter j's network score;
network: (K, K) with ``network[i, j]`` the network score of filter i on image network_images[j]
(so the diagonal holds each filter's maximum). decoded_images and decoded: the same for the
decoded filters' scores.
"""

ClassifierAccuracy = namedtuple("ClassifierAccuracy", ["decoded", "network", "decoded_predictions",
                                                       "network_predictions"])
ClassifierAccuracy.__doc__ = """Accuracy (fraction in [0, 1]) of the top layer's decoded filters
used alone as a classifier (class k scores the image's correlation with decoded filter k) next to
the network's own accuracy (argmax of the top layer's responses), with the (N,) predictions."""

TopImages = namedtuple("TopImages", ["network", "decoded", "overlap"])
TopImages.__doc__ = """The k highest-scoring images of each filter, best first.

network, decoded: (K, k) image indices by the network's and by the decoded filter's score;
overlap: (K,) fraction of the k images the two lists share."""

SelfConsistency = namedtuple("SelfConsistency", ["fraction", "winners", "responses"])
SelfConsistency.__doc__ = """Each decoded filter fed to the network as the input image.

responses: (K, K), ``responses[i, j]`` the score of unit j (maximum over positions) for the
decoded filter i as input; winners: (K,) the unit responding most strongly to decoded filter i;
fraction: the fraction of filters i with ``winners[i] == i``."""


# --- helpers -----------------------------------------------------------------------------------

def _batches(n_images, batch_size, desc, progress):
    """Start indices of the batches, with a tqdm bar on stderr counting images."""
    import sys
    from tqdm.auto import tqdm
    bar = tqdm(total=n_images, desc=desc, unit="img", file=sys.stderr, disable=not progress,
               leave=False)
    try:
        for start in range(0, n_images, batch_size):
            yield start
            bar.update(min(batch_size, n_images - start))
    finally:
        bar.close()


def top_conv_layer(net):
    """Name of the network's top conv layer (ValueError when it has none)."""
    _check_network(net)
    if not net.conv_layers:
        raise ValueError("the network has no conv layers (layers: %s)"
                         % ", ".join("%s (%s)" % (_printable(l.name), l.type) for l in net))
    return net.conv_layers[-1]


def _check_images(net, images, upto):
    """Images (N, C, H, W) in the network's dtype that ``net.forward(upto=upto)`` can take.

    Sizes are checked for one image: passes run in batches, so N alone never exhausts memory.
    """
    images = float_array("images", images, ndim=4, dtype=net.dtype)
    if images.shape[0] == 0:
        raise ValueError("images is empty: shape %s" % (images.shape,))
    if images.shape[1] != net.input_channels:
        raise ValueError("images have %d channels but the network expects %d (images %s)"
                         % (images.shape[1], net.input_channels, images.shape))
    net.check_input((1,) + images.shape[1:], upto=upto, name="images")
    return images


def _batch_size(batch_size, n_images, bytes_per_image):
    if batch_size is not None:
        return as_int("batch_size", batch_size, minimum=1)
    return int(max(1, min(n_images, 1024, BATCH_BYTES // max(1, bytes_per_image))))


def _response_bytes(net, images, layers):
    one = (1,) + images.shape[1:]
    return sum(int(np.prod(net.output_shape(one, upto=l))) for l in layers) * 8


def _decoded(net, idx, unpool, bias, n_threads, decoded=None):
    """(filters (K, C0, h, w), decoded bias (K,) or None) of conv layer ``idx``.

    ``decoded``: filters given by the caller, checked to have the layer's decoded shape; the bias
    is then decoded with ``unpool`` when ``bias`` is true.
    """
    _check_unpool(unpool)
    if decoded is None:
        dec = decode_with_bias(net, idx, unpool=unpool, n_threads=n_threads)
        return dec.filters, (dec.bias if bias else None)
    filters = float_array("decoded", decoded, ndim=4, dtype=net.dtype)
    want = (net.layers[idx].num_filters,) + net.decoded_shape(idx)
    if filters.shape != want:
        raise ValueError("decoded filters of layer %r must have shape %s, got %s"
                         % (_printable(net.layers[idx].name), want, filters.shape))
    b = decode_with_bias(net, idx, unpool=unpool, n_threads=n_threads).bias if bias else None
    return filters, b


def _forward_batch(net, x, keep, n_threads, buffers):
    """{layer index: response} of ``net`` to the checked images x at the layers ``keep``.

    The conv, pool and ReLU layers write into ``buffers`` (a ``Workspace``
    reused across batches): a kept layer into its own array, the others into whichever of two
    work arrays does not hold their input (a layer such as dropout passes its input on). The
    responses are valid until the next batch.
    """
    responses = {}
    y = x
    for i in range(max(keep) + 1):
        out = None
        if net.writes_into(i):
            key = ("layer", i) if i in keep else next(
                k for k in (("work", 0), ("work", 1)) if not buffers.holds(k, y))
            size = net.layers[i].output_size(y.shape[2:])
            out = buffers.get(key, (len(y), net.layers[i].output_channels(y.shape[1])) + size,
                              y.dtype)
        y = net.forward_layer(i, y, n_threads, out=out)
        if i in keep:
            responses[i] = y
    return responses


def _decoded_response(net, images, layer, filters, bias, n_threads, buffers=None, key=None):
    """Correlation of the checked images with checked decoded filters at the layer's stride and
    padding, plus the decoded bias (into ``buffers.get(key, ...)`` when buffers are given:
    valid until the next batch)."""
    (sy, sx), (pt, pb, pl, pr) = net.stride(layer), net.padding(layer)
    n_threads = resolve_threads(n_threads)
    out = None
    if buffers is not None:
        grid = window_grid(images.shape[2:], filters.shape[2:], (sy, sx), (pt, pb, pl, pr))
        out = buffers.get(key, (len(images), len(filters)) + grid, images.dtype)
    D, finite = ops.correlate_finite(images, filters, stride=(sy, sx), pad=(pt, pb, pl, pr),
                                      n_threads=n_threads, out=out, finite_inputs=True, bias=bias)
    if not finite:
        raise overflow_error("the correlation of images %s with decoded filters %s%s"
                             % (images.shape, filters.shape,
                                "" if bias is None else " plus their bias"), D.dtype)
    return D


def _normalise(maps):
    """Each image's maps (N, K, H, W) rescaled to [0, 1] by their own min and max, in float64.

    A constant image (range 0) becomes all zeros; returns (normalised, constant mask (N,)).
    """
    m = maps.astype(np.float64)
    flat = m.reshape(m.shape[0], -1)
    lo = flat.min(axis=1)
    rng = flat.max(axis=1) - lo
    constant = rng == 0
    scale = np.where(constant, 0.0, 1.0 / np.where(constant, 1.0, rng))
    out = (m - lo[:, None, None, None]) * scale[:, None, None, None]
    return out, constant


class _ErrorAccumulator:
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

    def result(self):
        n = len(self.per_image)
        return ReconstructionError(float(self.per_image.mean()), float(self.per_image.std()),
                                   self.per_image, self.filter_sum / (n * self.positions),
                                   tuple(self.constant))


def _error_pass(net, images, jobs, *, batch_size, n_threads, progress, desc):
    """One pass over the images computing Eq. 3 for every job (layer, filters, bias).

    The network runs once per batch, layer by layer, and its output is kept at each job's layer.
    """
    threads = resolve_threads(n_threads)
    layers = sorted({net.index(j[0]) for j in jobs})
    per_image = _response_bytes(net, images, layers) * (1 + len(jobs))
    bs = _batch_size(batch_size, len(images), per_image)
    accs = [_ErrorAccumulator(len(images), f.shape[0]) for (_, f, _) in jobs]
    buffers = workspace.Workspace()
    for start in _batches(len(images), bs, desc, progress):
        x = images[start:start + bs]
        responses = _forward_batch(net, x, layers, threads, buffers)
        for acc, (layer, filters, bias) in zip(accs, jobs):
            D = _decoded_response(net, x, layer, filters, bias, threads, buffers, "decoded")
            acc.add(start, responses[net.index(layer)], D, threads)
    return [a.result() for a in accs]


# --- Eq. 3 and Table 1 -------------------------------------------------------------------------

def reconstruction_error(net, images, layer, *, unpool="nearest", bias=False, decoded=None,
                         batch_size=None, n_threads=None, progress=True):
    """Eq. 3: how well a conv layer's decoded filters predict its responses, over images.

    For each image, R = ``net.forward(image, upto=layer)`` (all filters and positions, biases
    included) and D = the image correlated with the layer's decoded filters at the cumulative
    stride and padding (``net.stride(layer)``, ``net.padding(layer)``), plus the decoded biases
    when ``bias`` is true. R and D are each rescaled to [0, 1] by their own minimum and maximum
    over all the image's values; the error is the mean squared difference. A constant R or D
    (range 0) is rescaled to zeros and counted in ``n_constant``.

    images: (N, C, H, W) preprocessed; layer: conv layer name or index.
    decoded: filters (K, C, h, w) from ``fastdecode.decode`` to use instead of decoding here.
    batch_size: images per batch (default: about 64 MiB of responses).
    Returns a :class:`ReconstructionError` ``(mean, std, per_image, per_filter, n_constant)``.
    """
    _check_network(net)
    idx = net.conv_index(layer)
    images = _check_images(net, images, idx)
    threads = resolve_threads(n_threads)
    filters, b = _decoded(net, idx, unpool, bias, threads, decoded)
    return _error_pass(net, images, [(idx, filters, b)], batch_size=batch_size, n_threads=threads,
                       progress=progress, desc="Eq. 3 %s" % _printable(net.layers[idx].name))[0]


def table1(net, images, *, layers=None, methods=("nearest", "bilinear", "bicubic"), bias=False,
           batch_size=None, n_threads=None, progress=True):
    """Table 1: Eq. 3 error of every conv layer above the first for every unpooling method.

    Decodes each layer once per method, then makes one pass over the images.
    Returns ``{(layer name, method): ReconstructionError}`` in layer-then-method order.
    """
    _check_network(net)
    threads = resolve_threads(n_threads)
    if layers is None:
        layers = net.conv_layers[1:]
        if not layers:
            raise ValueError("the network has %s conv layer; Table 1 needs conv layers above the "
                             "first" % ("a single" if net.conv_layers else "no"))
    elif isinstance(layers, (str, int, np.integer)):
        layers = [layers]
    names = list(dict.fromkeys(net.layers[net.conv_index(l)].name for l in layers))
    if not names:
        raise ValueError("layers is empty: name at least one conv layer")
    methods = [methods] if isinstance(methods, str) else list(dict.fromkeys(methods))
    if not methods:
        raise ValueError("methods is empty: name at least one unpooling method")
    for m in methods:
        _check_unpool(m)
    images = _check_images(net, images, max(net.index(n) for n in names))
    jobs, keys = [], []
    for name in names:
        for m in methods:
            filters, b = _decoded(net, net.index(name), m, bias, threads)
            jobs.append((net.index(name), filters, b))
            keys.append((name, m))
    results = _error_pass(net, images, jobs, batch_size=batch_size, n_threads=threads,
                          progress=progress, desc="Table 1")
    return dict(zip(keys, results))


def paper_reference(net, layer):
    """The paper's Table 1 value for ``layer`` of a LeNet-shaped net (4 conv layers), else None."""
    convs = net.conv_layers
    if len(convs) != 4:
        return None
    name = net.layers[net.conv_index(layer)].name
    pos = convs.index(name)
    return PAPER_TABLE1[pos - 1][1] if pos >= 1 else None


def format_table1(net, results, *, title=None):
    """Table 1 as text: one row per layer, mean +- std per method, and the paper's value."""
    if not results:
        raise ValueError("results is empty: pass what table1 returns")
    layers = list(dict.fromkeys(k[0] for k in results))
    methods = list(dict.fromkeys(k[1] for k in results))
    n = len(next(iter(results.values())).per_image)
    lines = [title or "Table 1: Eq. 3 reconstruction error, mean +- std over %d images" % n]
    lines.append("%-10s %-10s" % ("layer", "paper") + "".join(" %19s" % m for m in methods))
    for layer in layers:
        ref = paper_reference(net, layer)
        paper = ("%s %.3f" % (PAPER_TABLE1[net.conv_layers.index(layer) - 1][0], ref)
                 if ref is not None else "-")
        row = "%-10s %-10s" % (_printable(layer), paper)
        for m in methods:
            r = results[(layer, m)]
            row += " %19s" % ("%.4f +- %.4f" % (r.mean, r.std))
        lines.append(row)
    return "\n".join(lines)


# --- scores over a dataset: Figure 1, classifier, top images -----------------------------------

def filter_scores(net, images, layer=None, *, unpool="nearest", bias=False, decoded=None,
                  batch_size=None, n_threads=None, progress=True):
    """Scores (N, K) of every filter of a conv layer (default: the top one) for every image.

    A filter's score is its maximum over positions: of ``net.forward(images, upto=layer)`` for the
    network, of the correlation with the decoded filter (plus decoded bias if ``bias``) for the
    decoded filters. Returns :class:`FilterScores`.
    """
    _check_network(net)
    if layer is None:
        layer = top_conv_layer(net)
    idx = net.conv_index(layer)
    images = _check_images(net, images, idx)
    threads = resolve_threads(n_threads)
    filters, b = _decoded(net, idx, unpool, bias, threads, decoded)
    K = net.layers[idx].num_filters
    bs = _batch_size(batch_size, len(images), 3 * _response_bytes(net, images, [idx]))
    R = np.empty((len(images), K))
    D = np.empty((len(images), K))
    desc = "scores %s" % _printable(net.layers[idx].name)
    buffers = workspace.Workspace()
    for start in _batches(len(images), bs, desc, progress):
        x = images[start:start + bs]
        R[start:start + len(x)] = _forward_batch(net, x, [idx], threads, buffers)[idx].max(
            axis=(2, 3))
        D[start:start + len(x)] = _decoded_response(net, x, idx, filters, b, threads, buffers,
                                                    "decoded").max(axis=(2, 3))
    return FilterScores(R, D, net.layers[idx].name)


def _as_scores(scores):
    if not isinstance(scores, FilterScores):
        raise TypeError("scores must be a FilterScores from filter_scores, got %s"
                        % type(scores).__name__)
    shapes = (np.shape(scores.network), np.shape(scores.decoded))
    if len(shapes[0]) != 2 or shapes[0] != shapes[1] or min(shapes[0]) == 0:
        raise ValueError("scores.network and scores.decoded must be non-empty (N, K) arrays of "
                         "one shape, got %s and %s" % shapes)
    return scores


def max_activation_matrix(scores):
    """Figure 1's matrix from :func:`filter_scores`: each filter's top image and every filter's
    score on it, for the network and for the decoded filters. Returns :class:`ActivationMatrix`."""
    s = _as_scores(scores)
    out = []
    for S in (s.network, s.decoded):
        best = S.argmax(axis=0)            # (K,) image maximising each filter
        out.append((S[best].T, best))      # [i, j]: filter i on filter j's best image
    return ActivationMatrix(out[0][0], out[1][0], out[0][1], out[1][1])


def classifier_accuracy(scores, labels):
    """Accuracy of the decoded filters used alone as a classifier, next to the network's.

    scores: :class:`FilterScores` of the top conv layer (one filter per class); labels (N,) ints
    in 0..K-1. Returns :class:`ClassifierAccuracy`.
    """
    s = _as_scores(scores)
    labels = np.asarray(labels)
    N, K = s.network.shape
    if labels.shape != (N,):
        raise ValueError("labels must have shape (%d,) to match the scores, got %s"
                         % (N, labels.shape))
    if labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= K:
        raise ValueError("labels must be integers in 0..%d (layer %r has %d filters); got %s "
                         "values in %s..%s" % (K - 1, s.layer, K, labels.dtype, labels.min(),
                                                labels.max()))
    pd = s.decoded.argmax(axis=1)
    pn = s.network.argmax(axis=1)
    return ClassifierAccuracy(float(np.mean(pd == labels)), float(np.mean(pn == labels)), pd, pn)


def top_images(scores, k=9):
    """Figure 4c/d: the k images with the highest score per filter, by the network and by the
    decoded filter, and the fraction they share. Returns :class:`TopImages`."""
    s = _as_scores(scores)
    k = as_int("k", k, minimum=1)
    N = s.network.shape[0]
    if k > N:
        raise ValueError("k=%d is larger than the %d images scored" % (k, N))
    # stable sort of the negated scores: ties go to the lower image index
    tn = np.argsort(-s.network, axis=0, kind="stable")[:k].T
    td = np.argsort(-s.decoded, axis=0, kind="stable")[:k].T
    overlap = np.array([len(np.intersect1d(a, b)) / k for a, b in zip(tn, td)])
    return TopImages(tn, td, overlap)


# --- self-consistency ------------------------------------------------------------------------

def self_consistency(net, layer=None, *, unpool="nearest", decoded=None, n_threads=None):
    """Supplementary section 6: feed each decoded filter of a conv layer (default: the top one)
    to the network as the input image and check which of the layer's units responds most.

    The decoded filters (K, C, h, w) live in the network's preprocessed input space and are fed
    as they are (h, w being the layer's receptive field). Returns :class:`SelfConsistency`.
    """
    _check_network(net)
    if layer is None:
        layer = top_conv_layer(net)
    idx = net.conv_index(layer)
    threads = resolve_threads(n_threads)
    filters, _ = _decoded(net, idx, unpool, False, threads, decoded)
    responses = net.forward(filters, upto=idx, n_threads=threads).max(axis=(2, 3)).astype(
        np.float64)
    winners = responses.argmax(axis=1)
    K = responses.shape[0]
    return SelfConsistency(float(np.mean(winners == np.arange(K))), winners, responses)


# --- thresholding (figures) ------------------------------------------------------------------

def threshold_filters(filters, fraction=0.5):
    """Keep each filter's values whose magnitude is at least ``fraction`` of that filter's
    maximum magnitude (over channels and pixels); set the rest to zero. filters (K, C, h, w)."""
    f = float_array("filters", filters, ndim=4)
    fraction = float(fraction)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError("fraction must be in [0, 1], got %r" % fraction)
    peak = np.abs(f).max(axis=(1, 2, 3), keepdims=True)
    return np.where(np.abs(f) >= fraction * peak, f, 0).astype(f.dtype)

