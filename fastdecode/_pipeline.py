"""The paper's evaluation of one model on one data set, and how it is reported.

:func:`evaluate` computes Table 1, Figure 1, the top images and self-consistency and returns an
:class:`Evaluation`; :func:`print_evaluation` prints it, :func:`write_results` writes
``results.txt`` and ``results.json`` (:func:`results_json`), :func:`save_evaluation_figures` and
:func:`save_layer_figures` draw the figures, each into a :class:`fastdecode._io.OutputDirectory`.
The runners of ``fastdecode demo`` and ``evaluate`` (:mod:`fastdecode._app`) chain them.
"""

import json
import time
from collections import namedtuple
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from . import _dask
from . import evaluation as ev
from . import paper
from ._scores import score_results
from .decoding import decode
from ._validation import printable

__all__ = ["METHODS", "Dataset", "Evaluation", "class_names", "prepare", "evaluate",
           "header_lines", "result_lines", "print_evaluation", "results_json", "write_results",
           "save_evaluation_figures", "save_layer_figures"]

#: Unpooling methods of Table 1 by default; the first one is used for the figures.
METHODS = ("nearest", "bilinear", "bicubic")

#: Filters shown per layer in the Figure 4 grids; layers with more show every n-th filter.
GRID_MAX_FILTERS = 50

#: Images per filter in the top-images figures (Figure 4c/d), and filters shown per layer.
TOP_K = 8
TOP_FILTERS = 10

Dataset = namedtuple("Dataset", ["images", "labels", "source", "first"])
Dataset.__doc__ = """The images of a run.

Attributes
----------
images : numpy.ndarray
    Raw images, uint8 (N, H, W).
labels : numpy.ndarray or None
    (N,) labels, or None.
source : str
    Where the images came from, for the texts.
first : int
    The 0-based index of the first image in that source.
"""


# --- inputs -------------------------------------------------------------------------------------

def class_names(net, n, model_name=None):
    """Names for the ``n`` outputs of a network's top layer.

    Parameters
    ----------
    net : fastdecode.Network
        The network; its ``meta['classes']`` (``description``, else ``name``) is used when it
        holds ``n`` names.
    n : int
        The number of outputs.
    model_name : str, optional
        The model's name: ``"lenet-fashion"`` falls back on
        :data:`fastdecode.datasets.FASHION_CLASSES`.

    Returns
    -------
    list of str
        ``n`` names; the indices ``"0"``, ``"1"``, ... when nothing better is known.
    """
    from . import datasets
    classes = net.meta.get("classes") if isinstance(net.meta, dict) else None
    names = classes.get("description", classes.get("name")) if isinstance(classes, dict) \
        else classes
    if names is not None:
        try:
            names = [str(x) for x in np.ravel(np.asarray(names, dtype=object))]
        except Exception:
            names = None
    if names is not None and len(names) == n:
        return names
    if model_name == "lenet-fashion" and n == len(datasets.FASHION_CLASSES):
        return list(datasets.FASHION_CLASSES)
    return [str(i) for i in range(n)]


def prepare(net, data, *, mean=None, std=None):
    """A data set's images as the network expects them.

    Parameters
    ----------
    net : fastdecode.Network
        The network.
    data : Dataset
        Raw images (N, H, W) or (N, C, H, W), pixels in 0..255.
    mean, std : sequence of float, optional
        One value or one per channel: pixels are scaled to [0, 1], then ``(x - mean) / std``
        (the missing one from the model, as :func:`fastdecode.atlas._inputs.normalisation`).
        Grey images are repeated into a 3-channel network's channels.

    Returns
    -------
    images : numpy.ndarray
        (N, C, H, W) in ``net.dtype``: the normalised images, else
        :func:`fastdecode.models.preprocess`, or the raw pixels for a network without a mean
        image.
    has_mean : bool
        False when the raw pixels were used.
    """
    if _dask.is_dask_array(data.images):
        return _prepare_lazy(net, data.images, mean, std)
    from . import models
    if mean is not None or std is not None:
        from .atlas._inputs import normalisation
        raw = np.asarray(data.images)
        raw = raw[:, None] if raw.ndim == 3 else raw
        if raw.shape[1] == 1 and net.input_channels == 3:
            raw = np.repeat(raw, 3, axis=1)
        m, s = normalisation(net, raw.shape[2:], mean, std)
        return ((raw.astype(np.float64) / 255.0 - m[None]) / s[None]).astype(net.dtype), True
    try:
        return models.preprocess(net, data.images), True
    except KeyError:
        x = np.asarray(data.images, dtype=net.dtype)
        return (x[:, None] if x.ndim == 3 else x), False


def _prepare_lazy(net, raw, mean, std):
    """:func:`prepare` of a dask array of raw images, chunk by chunk: the same function on every
    chunk, the channels and the normalisation found first on one blank image."""
    if raw.ndim not in (3, 4):
        raise ValueError("images must be (N, H, W) or (N, C, H, W), got shape %s" % (raw.shape,))
    blank, has_mean = prepare(net, Dataset(np.zeros((1,) + raw.shape[1:], raw.dtype), None,
                                           "", 0), mean=mean, std=std)
    raw = raw.rechunk({a: -1 for a in range(1, raw.ndim)})
    x = _dask.chunk_array(raw, _prepare_chunk, (net, mean, std), blank.shape[1:], blank.dtype)
    return x, has_mean


def _prepare_chunk(raw, start, shared):
    net, mean, std = shared
    return prepare(net, Dataset(raw, None, "", start), mean=mean, std=std)[0]


def _say(text=""):
    print(text, flush=True)


def _ordinal(n):
    return "%d%s" % (n, "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(
        n % 10, "th"))


def _grid_selection(k, most=GRID_MAX_FILTERS):
    """Every n-th of k filters, n the smallest step that keeps at most ``most``."""
    step = -(-k // most)
    return np.arange(0, k, step)


# --- computing ----------------------------------------------------------------------------------

@dataclass
class Evaluation:
    """What :func:`evaluate` computed for one model on one data set.

    Attributes
    ----------
    net : fastdecode.Network
        The network.
    model : str
        Its name.
    data : Dataset
        The data set.
    n_images : int
        The number of images.
    has_mean : bool
        False when the network has no mean image and the raw pixels were used.
    bias : bool
        Whether the decoded biases were added.
    method : str
        The unpooling method of everything but Table 1.
    top, mid : str
        The top conv layer and the one below it (None for a single conv layer).
    names : list of str
        A name per filter of the top layer.
    table : dict or None
        :func:`fastdecode.table1`'s results; None for a single conv layer.
    table_seconds : float
        The time Table 1 took.
    decoded : dict
        ``{layer: decoded filters}`` of ``top`` and ``mid``.
    matrix : fastdecode.evaluation.ActivationMatrix
        Figure 1 of the top layer.
    accuracy : fastdecode.evaluation.ClassifierAccuracy or None
        None without labels, or with labels beyond the top layer's filters.
    tops : dict
        ``{layer: TopImages}`` of ``top`` and ``mid``.
    consistency : fastdecode.evaluation.SelfConsistency
        Self-consistency of the top layer.
    """

    net: Any
    model: str
    data: Dataset
    n_images: int
    has_mean: bool
    bias: bool
    method: str
    top: str
    mid: Optional[str]
    names: list
    table: Optional[dict] = None
    table_seconds: float = 0.0
    decoded: dict = field(default_factory=dict)
    matrix: Any = None
    accuracy: Any = None
    tops: dict = field(default_factory=dict)
    consistency: Any = None


def evaluate(net, model, data, *, methods=METHODS, bias=False, n_threads=None, progress=True,
             prepared=None):
    """Table 1, Figure 1, the top images and self-consistency of a network on a data set.

    Parameters
    ----------
    net : fastdecode.Network
        The network.
    model : str
        Its name, for the texts and figures.
    data : Dataset
        Raw images and labels (:func:`load_data`).
    methods : str or sequence of str, optional
        Unpooling methods of Table 1; the first one is used for everything else.
    bias : bool, optional
        Add the decoded biases to the decoded filters' correlations.
    n_threads : int, optional
        Threads (default: all cores).
    progress : bool, optional
        Show progress bars on stderr.
    prepared : tuple, optional
        ``(images, has_mean)`` as :func:`prepare` returns them for ``data``, when the caller
        has them already.

    Returns
    -------
    Evaluation
        The results.
    """
    methods = (methods,) if isinstance(methods, str) else tuple(dict.fromkeys(methods))
    x, has_mean = prepare(net, data) if prepared is None else prepared
    top = ev.top_conv_layer(net)
    K = net[top].num_filters
    e = Evaluation(net, model, data, len(x), has_mean, bool(bias), methods[0], top,
                   net.conv_layers[-2] if len(net.conv_layers) > 1 else None,
                   class_names(net, K, model))
    if len(net.conv_layers) > 1:
        t0 = time.time()
        e.table = ev.table1(net, x, methods=methods, bias=bias, n_threads=n_threads,
                            progress=progress)
        e.table_seconds = time.time() - t0
    opts = dict(unpool=e.method, bias=bias, n_threads=n_threads, progress=progress)
    e.decoded[top] = decode(net, top, unpool=e.method, n_threads=n_threads)
    scores = ev.filter_scores(net, x, top, decoded=e.decoded[top], **opts)
    labels = None
    if data.labels is not None and np.asarray(data.labels).max() < K:
        labels = np.asarray(data.labels, dtype=np.int64)
    k = min(TOP_K, len(x))
    e.matrix, e.accuracy, e.tops[top] = score_results(scores, labels, k)  # one pass
    if e.mid is not None:  # the layer below the top one, as the paper's Figure 4c/d
        e.decoded[e.mid] = decode(net, e.mid, unpool=e.method, n_threads=n_threads)
        e.tops[e.mid] = ev.top_images(ev.filter_scores(
            net, x, e.mid, decoded=e.decoded[e.mid], **opts), k)
    e.consistency = ev.self_consistency(net, top, decoded=e.decoded[top], n_threads=n_threads)
    return e


# --- text and JSON ------------------------------------------------------------------------------

def header_lines(net, model, data, n_images, has_mean):
    """The two lines that open a run's output: the model's conv layers and the data used.

    Parameters
    ----------
    net : fastdecode.Network
        The network.
    model : str
        Its name.
    data : Dataset
        The data set.
    n_images : int
        The number of images used.
    has_mean : bool
        False when the raw pixels are used (see :func:`prepare`).

    Returns
    -------
    list of str
        Two lines.
    """
    return [
        "model %s: %s" % (model, ", ".join(
            "%s (%d filters, %dx%d)" % ((printable(l), net[l].num_filters)
                                        + net.receptive_field(l)) for l in net.conv_layers)),
        "data: %d images from %s (images %d-%d)%s" % (
            n_images, data.source, data.first + 1, data.first + n_images,
            "" if has_mean else "; the model has no mean image, raw pixels used")]


def _table_text(e):
    return paper.format_table1(e.net, e.table, title=(
        "Table 1: Eq. 3 reconstruction error%s, mean +- std over %d images (%.1f s)"
        % (" (decoded bias included)" if e.bias else "", e.n_images, e.table_seconds)))


def _classifier_text(e):
    K = len(e.names)
    if e.accuracy is None:
        return "Figure 1, classifier: skipped (no labels, or labels beyond the %d filters)" % K
    return ("Figure 1, classifier: accuracy over %d images of the %d decoded filters of %s "
            "alone (%s unpooling%s) %.4f; the network's own %.4f"
            % (e.n_images, K, printable(e.top), e.method, ", plus decoded bias" if e.bias else "",
               e.accuracy.decoded, e.accuracy.network))


def result_lines(e):
    """The results of an :class:`Evaluation` as text, one entry per result (Table 1 one entry).

    Parameters
    ----------
    e : Evaluation
        What :func:`evaluate` returned.

    Returns
    -------
    list of str
        Table 1 (when computed), the classifier, the maximum activations, the top images of the
        top layer and of the one below, and self-consistency.
    """
    K = len(e.names)
    agree = float(np.mean(e.matrix.network_images == e.matrix.decoded_images))
    tops = e.tops[e.top]
    k = tops.network.shape[1]
    lines = [] if e.table is None else [_table_text(e)]
    lines += [_classifier_text(e),
              "Figure 1, maximum activations: the network and the decoded filters pick the same "
              "top image for %d of %d filters" % (round(agree * K), K),
              "Top %d images per filter of %s (Fig. 4c/d): mean overlap of the network's and the "
              "decoded filter's lists %.3f (per filter: %s)"
              % (k, printable(e.top), tops.overlap.mean(),
                 " ".join("%.2f" % o for o in tops.overlap))]
    if e.mid is not None:
        mid = e.tops[e.mid]
        lines.append("Top %d images per filter of %s: mean overlap over its %d filters %.3f"
                     % (k, printable(e.mid), len(mid.overlap), mid.overlap.mean()))
    sc = e.consistency
    lines.append("Self-consistency (supp. section 6): %d of %d decoded filters of %s, fed as "
                 "input, excite their own unit most (%.2f)"
                 % (round(sc.fraction * K), K, printable(e.top), sc.fraction))
    return lines


def print_evaluation(e):
    """Print the results of an :class:`Evaluation`: Table 1 after a blank line, then the rest.

    Parameters
    ----------
    e : Evaluation
        What :func:`evaluate` returned.
    """
    lines = result_lines(e)
    if e.table is not None:
        _say()
        _say(lines.pop(0))
    _say()
    for line in lines:
        _say(line)


def results_json(e):
    """The results of an :class:`Evaluation` as a JSON-ready dict.

    Parameters
    ----------
    e : Evaluation
        What :func:`evaluate` returned.

    Returns
    -------
    dict
        ``model``, ``data``, ``images``, ``first_image`` (1-based), ``bias``, then ``table1``
        (``{"layer/method": {"mean", "std", "paper"}}``, when computed), ``classifier`` (when
        computed), ``top_images`` and ``self_consistency``.
    """
    out = {"model": e.model, "data": e.data.source, "images": int(e.n_images),
           "first_image": int(e.data.first) + 1, "bias": e.bias}
    if e.table is not None:
        out["table1"] = {"%s/%s" % k: {"mean": r.mean, "std": r.std,
                                       "paper": paper.paper_reference(e.net, k[0])}
                         for k, r in e.table.items()}
    if e.accuracy is not None:
        out["classifier"] = {"decoded": e.accuracy.decoded, "network": e.accuracy.network,
                             "unpool": e.method}
    out["top_images"] = {layer: {"k": int(t.network.shape[1]), "overlap": t.overlap.tolist()}
                         for layer, t in e.tops.items()}
    out["self_consistency"] = {"fraction": e.consistency.fraction,
                               "winners": e.consistency.winners.tolist()}
    return out


def write_results(e, outputs):
    """Write ``results.txt`` (the printed text) and ``results.json`` into ``outputs``.

    Parameters
    ----------
    e : Evaluation
        What :func:`evaluate` returned.
    outputs : fastdecode._io.OutputDirectory
        Where to write (nothing is written without an output directory).
    """
    header = header_lines(e.net, e.model, e.data, e.n_images, e.has_mean)
    outputs.text("results.txt", "\n".join(header) + "\n\n" + "\n\n".join(result_lines(e)) + "\n")
    outputs.text("results.json", json.dumps(results_json(e), indent=2) + "\n")


# --- figures ------------------------------------------------------------------------------------

def save_evaluation_figures(e, outputs):
    """Figure 1 and the top-images figures (Figure 4c/d) of an :class:`Evaluation`.

    Parameters
    ----------
    e : Evaluation
        What :func:`evaluate` returned.
    outputs : fastdecode._io.OutputDirectory
        Where to write; nothing is drawn without an output directory.
    """
    from . import plotting
    if outputs.out is None:
        return
    title = "%s, %s unpooling" % (e.model, e.method)
    shown, m, acc = e.data.images, e.matrix, e.accuracy  # raw pixels for display
    if _dask.is_dask_array(shown):  # read only the images shown, once, and index those
        used = np.unique(np.concatenate([a.ravel() for a in (
            m.network_images, m.decoded_images, *(t for v in e.tops.values() for t in v[:2]))]))
        shown = _dask.compute(shown[used])[0]
        m = m._replace(network_images=np.searchsorted(used, m.network_images),
                       decoded_images=np.searchsorted(used, m.decoded_images))
        tops = {l: t._replace(network=np.searchsorted(used, t.network),
                              decoded=np.searchsorted(used, t.decoded))
                for l, t in e.tops.items()}
    else:
        tops = e.tops
    plotting.save_activation_matrix(
        {"network responses": (m.network, shown[m.network_images]),
         "decoded-filter correlations": (m.decoded, shown[m.decoded_images])},
        e.decoded[e.top], outputs.path("fig1_max_activations.png"), class_names=e.names,
        title="Figure 1: maximum activations of %s over %d images (%s)%s"
              % (printable(e.top), e.n_images, title, "" if acc is None else
                 "\naccuracy as a classifier: decoded filters alone %.3f, network %.3f"
                 % (acc.decoded, acc.network)))
    top = tops[e.top]
    k = top.network.shape[1]
    plotting.save_top_images(shown, top.network, top.decoded, e.decoded[e.top],
                             outputs.path("fig4cd_top_images_%s.png" % e.top), labels=e.names,
                             title="Top %d images per filter of %s (%s)"
                                   % (k, printable(e.top), title))
    if e.mid is not None:
        mid = tops[e.mid]
        sel = _grid_selection(len(mid.overlap), TOP_FILTERS)
        plotting.save_top_images(
            shown, mid.network, mid.decoded, e.decoded[e.mid],
            outputs.path("fig4cd_top_images_%s.png" % e.mid), filters=sel,
            title="Top %d images of %d of the %d filters of %s (%s)"
                  % (k, len(sel), len(mid.overlap), printable(e.mid), title))


def save_layer_figures(net, model, data, *, method, n_threads, outputs):
    """Figure 4 grids (raw and thresholded) for every conv layer, and Figure 3 for one image.

    Parameters
    ----------
    net : fastdecode.Network
        The network.
    model : str
        Its name, for the titles.
    data : Dataset
        The images; Figure 3 shows the first one.
    method : str
        The unpooling method.
    n_threads : int or None
        Threads (default: all cores).
    outputs : fastdecode._io.OutputDirectory
        Where to write.
    """
    from . import plotting
    x, _ = prepare(net, data._replace(images=data.images[:1]))
    layers = []
    for l in net.conv_layers:
        D = decode(net, l, unpool=method, n_threads=n_threads)
        sel = _grid_selection(D.shape[0])
        what = ("all %d filters" % D.shape[0] if len(sel) == D.shape[0]
                else "every %s filter of %d" % (_ordinal(sel[1] - sel[0]), D.shape[0]))
        plotting.save_filter_grid(
            D[sel], outputs.path("fig4_%s.png" % l), threshold=plotting.THRESHOLD, labels=sel,
            title="Figure 4: decoded filters of %s (%s, %dx%d)\n%s, %s unpooling"
                  % (printable(l), what, D.shape[2], D.shape[3], model, method))
        R = net.forward(x, upto=l, n_threads=n_threads)[0]
        Dr = ev.decoded_response(net, x, l, D, None, n_threads)[0]
        layers.append((printable(l), R, Dr))
    plotting.save_response_figure(
        data.images[0], layers, outputs.path("fig3_responses.png"),
        title="Figure 3: network responses R and decoded-filter correlations D, %s, image %d "
              "of %d (%s unpooling)" % (model, data.first + 1, data.first + len(data.images),
                                        method))
