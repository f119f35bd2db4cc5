"""How well decoded filters predict the network: Eq. 3, Table 1, Figure 1, top images, and
self-consistency.

Every function takes images already preprocessed as the network expects, ``(N, C, H, W)``
(``fastdecode.models.preprocess`` for the shipped models). Passes over a dataset run in batches,
so memory stays bounded (each batch writes into the arrays of the one before), and show a tqdm
progress bar on stderr unless ``progress=False``. A ``dask.array.Array`` of images is passed
chunk by chunk on the active Dask scheduler, each chunk in batches (:mod:`fastdecode._dask`).
"""

from collections import namedtuple

import numpy as np

from . import _dask, ops
from ._engine import workspace
from ._eq3_sums import ErrorAccumulator as _ErrorAccumulator, ReconstructionError
from ._engine.grid import window_grid
from ._scores import (ActivationMatrix, ClassifierAccuracy, FilterScores, TopImages,
                      classifier_accuracy, max_activation_matrix, top_images)
from ._validation import as_int, float_array, overflow_error, printable, resolve_threads
from .decoding import check_network, decode_with_bias
from .ops import unpool_method
from .paper import PAPER_TABLE1, format_table1, paper_reference  # noqa: F401  importable here too

__all__ = [
    "ReconstructionError", "reconstruction_error", "table1",
    "FilterScores", "filter_scores", "ActivationMatrix", "max_activation_matrix",
    "ClassifierAccuracy", "classifier_accuracy", "TopImages", "top_images",
    "SelfConsistency", "self_consistency", "threshold_filters",
]

#: Bytes of responses one batch may hold (R and D of every layer evaluated in the pass).
BATCH_BYTES = 64 * 2**20


SelfConsistency = namedtuple("SelfConsistency", ["fraction", "winners", "responses"])
SelfConsistency.__doc__ = """Each decoded filter fed to the network as the input image.

Attributes
----------
fraction : float
    The fraction of filters i with ``winners[i] == i``.
winners : numpy.ndarray
    (K,) the unit responding most strongly to decoded filter i.
responses : numpy.ndarray
    (K, K), ``responses[i, j]`` the score of unit j (maximum over positions) for the decoded
    filter i as input.
"""


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
    """The name of the network's top conv layer.

    Parameters
    ----------
    net : fastdecode.Network
        The network.

    Returns
    -------
    str
        The name of its last conv layer.

    Raises
    ------
    ValueError
        When the network has no conv layer.
    """
    check_network(net)
    if not net.conv_layers:
        raise ValueError("the network has no conv layers (layers: %s)"
                         % ", ".join("%s (%s)" % (printable(l.name), l.type) for l in net))
    return net.conv_layers[-1]


def measured_index(net, layer):
    """Index of a layer whose decoded filters the passes can measure: a conv layer, or any
    layer decoding can start from (:meth:`Network.decodable_index`) whose output is a map:
    in a graph a block's sum, a concatenation, a pooling or activation; a ValueError naming
    the layer otherwise (a linear layer's output is a vector)."""
    idx = net.decodable_index(layer)
    if net.layers[idx].type == "linear":
        raise ValueError("layer %r is a linear layer: its output is a vector, not a map, and "
                         "the passes compare maps; measure a layer below it"
                         % printable(net.layers[idx].name))
    return idx


def _check_images(net, images, upto):
    """Images (N, C, H, W) in the network's dtype that ``net.forward(upto=upto)`` can take.

    Sizes are checked for one image: passes run in batches, so N alone never exhausts memory.
    A dask array is checked from its metadata and stays lazy (see :mod:`fastdecode._dask`).
    """
    if _dask.is_dask_array(images):
        return _dask.check_images(net, images, upto)
    images = float_array("images", images, ndim=4, dtype=net.dtype)
    if images.shape[0] == 0:
        raise ValueError("images is empty: shape %s" % (images.shape,))
    if images.shape[1] != net.input_channels:
        raise ValueError("images have %d channels but the network expects %d (images %s)"
                         % (images.shape[1], net.input_channels, images.shape))
    net.check_input((1,) + images.shape[1:], upto=upto, name="images")
    if net.phases(upto) != (1, 1):
        raise ValueError("layer %r is above an upsampling (its units have %dx%d phases, each "
                         "with its own decoded filter): Eq. 3 compares one decoded filter per "
                         "channel with the layer's response and does not cover it"
                         % ((printable(net.layers[upto].name),) + net.phases(upto)))
    return images


def _batch_size(batch_size, n_images, bytes_per_image):
    if batch_size is not None:
        return as_int("batch_size", batch_size, minimum=1)
    return int(max(1, min(n_images, 1024, BATCH_BYTES // max(1, bytes_per_image))))


def _response_bytes(net, images, layers):
    one = (1,) + images.shape[1:]
    return sum(int(np.prod(net.output_shape(one, upto=l))) for l in layers) * 8


def _decoded(net, idx, unpool, bias, n_threads, decoded=None):
    """(filters (K, C0, h, w), decoded bias (K,) or None) of layer ``idx``.

    ``decoded``: filters given by the caller, checked to have the layer's decoded shape; the bias
    is then decoded with ``unpool`` when ``bias`` is true.
    """
    unpool_method(unpool)
    if decoded is None:
        dec = decode_with_bias(net, idx, unpool=unpool, n_threads=n_threads)
        return dec.filters, (dec.bias if bias else None)
    filters = float_array("decoded", decoded, ndim=4, dtype=net.dtype)
    want = (net.channels(idx),) + net.decoded_shape(idx)
    if filters.shape != want:
        raise ValueError("decoded filters of layer %r must have shape %s, got %s"
                         % (printable(net.layers[idx].name), want, filters.shape))
    b = decode_with_bias(net, idx, unpool=unpool, n_threads=n_threads).bias if bias else None
    return filters, b


def _forward_batch(net, x, keep, n_threads, buffers):
    """{layer index: response} of ``net`` to the checked images x at the layers ``keep``.

    The conv, pool and ReLU layers write into ``buffers`` (a ``Workspace``
    reused across batches): a kept layer into its own array, the others into whichever of two
    work arrays does not hold their input (a layer such as dropout passes its input on). The
    responses are valid until the next batch.
    """
    if not net.is_chain:  # a graph: each kept layer's output by the graph's own forward pass
        return {i: net.forward(x, upto=i, n_threads=n_threads) for i in keep}
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


def decoded_response(net, images, layer, filters, bias, n_threads, buffers=None, key=None):
    """The correlation D of images with a layer's decoded filters, as Eq. 3 compares it.

    The images are correlated with the filters at the layer's cumulative stride and padding
    (``net.stride(layer)``, ``net.padding(layer)``), and the decoded bias is added.

    Parameters
    ----------
    net : fastdecode.Network
        The network the filters were decoded from.
    images : numpy.ndarray
        (N, C, H, W) preprocessed images in ``net.dtype``, already checked (finite, C-contiguous).
    layer : str or int
        The layer's name or index.
    filters : numpy.ndarray
        (K, C, h, w) decoded filters of ``layer`` in ``net.dtype`` (see
        :func:`fastdecode.decode`).
    bias : numpy.ndarray or None
        (K,) decoded bias to add (see :func:`fastdecode.decoded_bias`), or None.
    n_threads : int or None
        Threads to use (None: all cores).
    buffers : optional
        Arrays reused across batches; with ``key``, D is written into ``buffers.get(key, ...)``
        and is valid until the next batch.
    key : hashable, optional
        The name of D's array in ``buffers``.

    Returns
    -------
    numpy.ndarray
        D, (N, K, Ho, Wo) in ``net.dtype``, the grid of the layer's responses.

    Raises
    ------
    ValueError
        When the correlation overflows the network's dtype.
    """
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


def rescale_per_image(maps):
    """Each image's maps rescaled to [0, 1] by their own minimum and maximum: Eq. 3's rescaling.

    Parameters
    ----------
    maps : numpy.ndarray
        (N, K, H, W) responses of N images.

    Returns
    -------
    rescaled : numpy.ndarray
        (N, K, H, W) float64; an image whose maps are constant (range 0) becomes all zeros.
    constant : numpy.ndarray
        (N,) bool, True for the images whose maps were constant.
    """
    m = maps.astype(np.float64)
    flat = m.reshape(m.shape[0], -1)
    lo = flat.min(axis=1)
    rng = flat.max(axis=1) - lo
    constant = rng == 0
    scale = np.where(constant, 0.0, 1.0 / np.where(constant, 1.0, rng))
    out = (m - lo[:, None, None, None]) * scale[:, None, None, None]
    return out, constant


def _error_pass(net, images, jobs, *, batch_size, n_threads, progress, desc):
    """One pass over the images computing Eq. 3 for every job (layer, filters, bias).

    The network runs once per batch, layer by layer, and its output is kept at each job's layer.
    A dask array of images is passed chunk by chunk (one task each), and the chunks' sums merged.
    """
    if _dask.is_dask_array(images):
        tasks = _dask.chunk_tasks(images, _error_chunk,
                                  (net, jobs, batch_size, _dask.task_threads(n_threads)))
        chunks = _dask.compute(*tasks)
        return [_ErrorAccumulator.merged([c[j] for c in chunks]).result()
                for j in range(len(jobs))]
    return [a.result() for a in _error_sums(net, images, jobs, batch_size=batch_size,
                                            n_threads=n_threads, progress=progress, desc=desc)]


def _error_chunk(images, start, shared):
    """The Eq. 3 accumulators of one chunk of images (a task of a pass over a dask array)."""
    net, jobs, batch_size, threads = shared
    x, there = _dask.present_images(images, "images %d-%d" % (start, start + len(images) - 1))
    if there.all():
        return _error_sums(net, x.astype(net.dtype, copy=False), jobs, batch_size=batch_size,
                           n_threads=threads, progress=False, desc=None)
    if not there.any():   # positions are those of one image of the layer
        accs = [_ErrorAccumulator(0, f.shape[0]) for (_, f, _) in jobs]
        for acc, (layer, _, _) in zip(accs, jobs):
            acc.positions = int(np.prod(net.output_shape((1,) + x.shape[1:], upto=layer)[2:]))
    else:
        accs = _error_sums(net, x[there].astype(net.dtype), jobs, batch_size=batch_size,
                           n_threads=threads, progress=False, desc=None)
    return [a.with_missing(there) for a in accs]


def _error_sums(net, images, jobs, *, batch_size, n_threads, progress, desc):
    """The Eq. 3 accumulators of every job over checked images in memory, batch by batch."""
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
            D = decoded_response(net, x, layer, filters, bias, threads, buffers, "decoded")
            acc.add(start, responses[net.index(layer)], D, threads)
    return accs


# --- Eq. 3 and Table 1 -------------------------------------------------------------------------

def reconstruction_error(net, images, layer, *, unpool="nearest", bias=False, decoded=None,
                         batch_size=None, n_threads=None, progress=True):
    """Eq. 3: how well a layer's decoded filters predict its responses, over images.

    For each image, R = ``net.forward(image, upto=layer)`` (all filters and positions, biases
    included) and D = the image correlated with the layer's decoded filters at the cumulative
    stride and padding (``net.stride(layer)``, ``net.padding(layer)``), plus the decoded biases
    when ``bias`` is true. R and D are each rescaled to [0, 1] by their own minimum and maximum
    over all the image's values; the error is the mean squared difference. A constant R or D
    (range 0) is rescaled to zeros and counted in ``n_constant``.

    Parameters
    ----------
    net : fastdecode.Network
        The network.
    images : array_like or dask.array.Array
        (N, C, H, W) images, preprocessed as the network expects them; a dask array is passed
        one task per chunk of images on the active Dask scheduler (see :doc:`/dask`).
    layer : str or int
        A conv layer's name or index; in a graph also any layer decoding starts from whose
        output is a map (a block's sum, a concatenation, a pooling).
    unpool : str, optional
        The unpooling method of the decoding.
    bias : bool, optional
        Add the decoded biases to D.
    decoded : array_like, optional
        Filters (K, C, h, w) from :func:`fastdecode.decode` to use instead of decoding here.
    batch_size : int, optional
        Images per batch (default: about 64 MiB of responses).
    n_threads : int, optional
        Threads (default: all cores; per task for a dask array, default 1).
    progress : bool, optional
        Show a progress bar on stderr (not for a dask array).

    Returns
    -------
    ReconstructionError
        ``(mean, std, per_image, per_filter, n_constant)``.

    Raises
    ------
    ValueError
        For images the network cannot take, decoded filters of the wrong shape, or values that
        overflow the network's dtype.

    Examples
    --------
    >>> import fastdecode as fd
    >>> from fastdecode import datasets, models
    >>> net = models.load("lenet-fashion")
    >>> x = models.preprocess(net, datasets.fashion_sample().images[:100])
    >>> r = fd.reconstruction_error(net, x, "layer3", progress=False)
    >>> r.per_image.shape, r.per_filter.shape
    ((100,), (50,))
    >>> print("%.3f" % r.mean)
    0.006
    """
    check_network(net)
    idx = measured_index(net, layer)
    images = _check_images(net, images, idx)
    threads = resolve_threads(n_threads)
    filters, b = _decoded(net, idx, unpool, bias, threads, decoded)
    return _error_pass(net, images, [(idx, filters, b)], batch_size=batch_size, n_threads=threads,
                       progress=progress, desc="Eq. 3 %s" % printable(net.layers[idx].name))[0]


def table1(net, images, *, layers=None, methods=("nearest", "bilinear", "bicubic"), bias=False,
           batch_size=None, n_threads=None, progress=True):
    """Table 1: Eq. 3 error of every conv layer above the first for every unpooling method.

    Decodes each layer once per method, then makes one pass over the images.

    Parameters
    ----------
    net : fastdecode.Network
        The network.
    images : array_like or dask.array.Array
        (N, C, H, W) images, preprocessed as the network expects them; a dask array is passed
        one task per chunk of images on the active Dask scheduler (see :doc:`/dask`).
    layers : str, int or sequence, optional
        The layers (default: every conv layer above the first); any layer
        :func:`reconstruction_error` takes.
    methods : str or sequence of str, optional
        The unpooling methods.
    bias : bool, optional
        Add the decoded biases to D (see :func:`reconstruction_error`).
    batch_size : int, optional
        Images per batch (default: about 64 MiB of responses).
    n_threads : int, optional
        Threads (default: all cores).
    progress : bool, optional
        Show a progress bar on stderr.

    Returns
    -------
    dict
        ``{(layer name, method): ReconstructionError}`` in layer-then-method order.

    Raises
    ------
    ValueError
        For a network with fewer than two conv layers (without ``layers``), empty ``layers``
        or ``methods``, an unknown method, or images the network cannot take.

    See Also
    --------
    fastdecode.paper.format_table1 : the results as text, beside the paper's values.

    Examples
    --------
    >>> import fastdecode as fd
    >>> from fastdecode import datasets, models
    >>> net = models.load("lenet-fashion")
    >>> x = models.preprocess(net, datasets.fashion_sample().images[:100])
    >>> table = fd.table1(net, x, methods=("nearest", "bilinear"), progress=False)
    >>> for (layer, method), r in table.items():
    ...     print(layer, method, "%.3f" % r.mean)
    layer3 nearest 0.006
    layer3 bilinear 0.006
    layer5 nearest 0.015
    layer5 bilinear 0.017
    layer7 nearest 0.063
    layer7 bilinear 0.064
    """
    check_network(net)
    threads = resolve_threads(n_threads)
    if layers is None:
        layers = net.conv_layers[1:]
        if not layers:
            raise ValueError("the network has %s conv layer; Table 1 needs conv layers above the "
                             "first" % ("a single" if net.conv_layers else "no"))
    elif isinstance(layers, (str, int, np.integer)):
        layers = [layers]
    names = list(dict.fromkeys(net.layers[measured_index(net, l)].name for l in layers))
    if not names:
        raise ValueError("layers is empty: name at least one layer")
    methods = [methods] if isinstance(methods, str) else list(dict.fromkeys(methods))
    if not methods:
        raise ValueError("methods is empty: name at least one unpooling method")
    for m in methods:
        unpool_method(m)
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


# --- scores over a dataset (Figure 1, the classifier and top images: see _scores) -------------

def filter_scores(net, images, layer=None, *, unpool="nearest", bias=False, decoded=None,
                  batch_size=None, n_threads=None, progress=True):
    """Scores of every filter of a layer for every image, by the network and decoded.

    A filter's score is its maximum over positions: of ``net.forward(images, upto=layer)`` for the
    network, of the correlation with the decoded filter (plus decoded bias if ``bias``) for the
    decoded filters.

    Parameters
    ----------
    net : fastdecode.Network
        The network.
    images : array_like or dask.array.Array
        (N, C, H, W) images, preprocessed as the network expects them; a dask array is passed
        one task per chunk of images on the active Dask scheduler (see :doc:`/dask`).
    layer : str or int, optional
        A conv layer's name or index (default: the top one); in a graph also any layer
        decoding starts from whose output is a map.
    unpool : str, optional
        The unpooling method of the decoding.
    bias : bool, optional
        Add the decoded biases to the decoded filters' correlations.
    decoded : array_like, optional
        Filters (K, C, h, w) from :func:`fastdecode.decode` to use instead of decoding here.
    batch_size : int, optional
        Images per batch.
    n_threads : int, optional
        Threads (default: all cores).
    progress : bool, optional
        Show a progress bar on stderr.

    Returns
    -------
    FilterScores
        ``(network (N, K), decoded (N, K), layer name)``; for a dask array of images, the two
        arrays are lazy dask arrays, one block per chunk of images, which
        :func:`top_images`, :func:`max_activation_matrix` and :func:`classifier_accuracy`
        reduce chunk by chunk (each call is one pass over the images: ``dask.persist`` the
        scores to keep them).

    Examples
    --------
    >>> import fastdecode as fd
    >>> from fastdecode import datasets, models
    >>> net = models.load("lenet-fashion")
    >>> sample = datasets.fashion_sample()
    >>> scores = fd.filter_scores(net, models.preprocess(net, sample.images[:100]),
    ...                           progress=False)
    >>> scores.layer, scores.network.shape, scores.decoded.shape
    ('layer7', (100, 10), (100, 10))
    >>> acc = fd.classifier_accuracy(scores, sample.labels[:100])
    >>> print("decoded %.2f, network %.2f" % (acc.decoded, acc.network))
    decoded 0.62, network 0.88
    """
    check_network(net)
    if layer is None:
        layer = top_conv_layer(net)
    idx = measured_index(net, layer)
    images = _check_images(net, images, idx)
    threads = resolve_threads(n_threads)
    filters, b = _decoded(net, idx, unpool, bias, threads, decoded)
    name = net.layers[idx].name
    if _dask.is_dask_array(images):
        K = net.channels(idx)
        S = _dask.chunk_array(images, _scores_chunk, (net, idx, filters, b, batch_size,
                                                      _dask.task_threads(n_threads)),
                              (2, K), np.float64)
        return FilterScores(S[:, 0], S[:, 1], name)
    R, D = _scores(net, images, idx, filters, b, batch_size, threads,
                   "scores %s" % printable(name), progress)
    return FilterScores(R, D, name)


def _scores_chunk(images, start, shared):
    """(n, 2, K): the network's and the decoded scores of one chunk of images (a task)."""
    net, idx, filters, b, batch_size, threads = shared
    x, there = _dask.present_images(images, "images %d-%d" % (start, start + len(images) - 1))
    out = np.full((len(x), 2, net.channels(idx)), np.nan)   # missing images: rows of NaN
    if there.any():
        xs = x.astype(net.dtype, copy=False) if there.all() else x[there].astype(net.dtype)
        out[there] = np.stack(_scores(net, xs, idx, filters, b, batch_size, threads, None,
                                      False), axis=1)
    return out


def _scores(net, images, idx, filters, b, batch_size, threads, desc, progress):
    """(network (N, K), decoded (N, K)) float64 scores of checked images in memory."""
    K = net.channels(idx)
    bs = _batch_size(batch_size, len(images), 3 * _response_bytes(net, images, [idx]))
    R = np.empty((len(images), K))
    D = np.empty((len(images), K))
    buffers = workspace.Workspace()
    for start in _batches(len(images), bs, desc, progress):
        x = images[start:start + bs]
        R[start:start + len(x)] = _forward_batch(net, x, [idx], threads, buffers)[idx].max(
            axis=(2, 3))
        D[start:start + len(x)] = decoded_response(net, x, idx, filters, b, threads, buffers,
                                                    "decoded").max(axis=(2, 3))
    return R, D


# --- self-consistency ------------------------------------------------------------------------

def self_consistency(net, layer=None, *, unpool="nearest", decoded=None, n_threads=None):
    """Supplementary section 6: which unit responds most to each decoded filter as input.

    Each decoded filter of a conv layer is fed to the network as the input image and the layer's
    units' responses compared. The decoded filters (K, C, h, w) live in the network's
    preprocessed input space and are fed as they are (h, w being the layer's receptive field).

    Parameters
    ----------
    net : fastdecode.Network
        The network.
    layer : str or int, optional
        A conv layer's name or index (default: the top one); in a graph also any layer
        decoding starts from whose output is a map.
    unpool : str, optional
        The unpooling method of the decoding.
    decoded : array_like, optional
        Filters (K, C, h, w) from :func:`fastdecode.decode` to use instead of decoding here.
    n_threads : int, optional
        Threads (default: all cores).

    Returns
    -------
    SelfConsistency
        ``(fraction, winners (K,), responses (K, K))``.
    """
    check_network(net)
    if layer is None:
        layer = top_conv_layer(net)
    idx = measured_index(net, layer)
    threads = resolve_threads(n_threads)
    filters, _ = _decoded(net, idx, unpool, False, threads, decoded)
    responses = net.forward(filters, upto=idx, n_threads=threads).max(axis=(2, 3)).astype(
        np.float64)
    winners = responses.argmax(axis=1)
    K = responses.shape[0]
    return SelfConsistency(float(np.mean(winners == np.arange(K))), winners, responses)


# --- thresholding (figures) ------------------------------------------------------------------

def threshold_filters(filters, fraction=0.5):
    """Each filter's values of at least ``fraction`` of its largest magnitude; the rest zero.

    Parameters
    ----------
    filters : array_like
        (K, C, h, w) filters.
    fraction : float, optional
        In [0, 1], of each filter's maximum magnitude over channels and pixels.

    Returns
    -------
    numpy.ndarray
        (K, C, h, w) in the filters' dtype.

    Raises
    ------
    ValueError
        When ``fraction`` lies outside [0, 1].
    """
    f = float_array("filters", filters, ndim=4)
    fraction = float(fraction)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError("fraction must be in [0, 1], got %r" % fraction)
    peak = np.abs(f).max(axis=(1, 2, 3), keepdims=True)
    return np.where(np.abs(f) >= fraction * peak, f, 0).astype(f.dtype)

