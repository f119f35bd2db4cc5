"""What the scores of a layer's filters over a dataset tell: Figure 1's maximum activations, the
decoded filters as a classifier, and each filter's top images (Figure 4c/d).

The functions take the :class:`FilterScores` of :func:`fastdecode.filter_scores`; they are
reached as ``fastdecode.evaluation.*`` and ``fastdecode.*``. Lazy scores (dask arrays, from a
pass over a dask array of images) are reduced chunk by chunk and merged
(:mod:`fastdecode._dask`), with the same results.
"""

from collections import namedtuple

import numpy as np

from . import _dask
from ._validation import as_int

__all__ = ["FilterScores", "ActivationMatrix", "max_activation_matrix", "ClassifierAccuracy",
           "classifier_accuracy", "TopImages", "top_images"]

FilterScores = namedtuple("FilterScores", ["network", "decoded", "layer"])
FilterScores.__doc__ = """Per-image score of every filter of a layer: its maximum over positions.

Attributes
----------
network : numpy.ndarray
    (N, K) scores from ``net.forward(images, upto=layer)``.
decoded : numpy.ndarray
    (N, K) scores from the correlation of the images with the decoded filters (plus the decoded
    bias when requested).
layer : str
    The layer's name.
"""

ActivationMatrix = namedtuple("ActivationMatrix", ["network", "decoded", "network_images",
                                                   "decoded_images"])
ActivationMatrix.__doc__ = """Figure 1: the maximum activations of a layer's filters over a dataset.

Attributes
----------
network : numpy.ndarray
    (K, K), ``network[i, j]`` the network score of filter i on image ``network_images[j]`` (so
    the diagonal holds each filter's maximum).
decoded : numpy.ndarray
    (K, K), the same for the decoded filters' scores and ``decoded_images``.
network_images : numpy.ndarray
    (K,) index of the image that maximises filter j's network score.
decoded_images : numpy.ndarray
    (K,) index of the image that maximises decoded filter j's score.
"""

ClassifierAccuracy = namedtuple("ClassifierAccuracy", ["decoded", "network", "decoded_predictions",
                                                       "network_predictions"])
ClassifierAccuracy.__doc__ = """The top layer's decoded filters used alone as a classifier.

Class k scores the image's correlation with decoded filter k; the network's own prediction is
the argmax of the top layer's responses.

Attributes
----------
decoded, network : float
    Accuracy (a fraction in [0, 1]) of the decoded filters and of the network.
decoded_predictions, network_predictions : numpy.ndarray
    (N,) the predicted classes.
"""

TopImages = namedtuple("TopImages", ["network", "decoded", "overlap"])
TopImages.__doc__ = """The k highest-scoring images of each filter, best first.

Attributes
----------
network, decoded : numpy.ndarray
    (K, k) image indices by the network's and by the decoded filter's score.
overlap : numpy.ndarray
    (K,) fraction of the k images the two lists share.
"""


def _as_scores(scores):
    if not isinstance(scores, FilterScores):
        raise TypeError("scores must be a FilterScores from filter_scores, got %s"
                        % type(scores).__name__)
    if _dask.is_lazy_scores(scores):
        shapes = (tuple(getattr(scores.network, "shape", ())),
                  tuple(getattr(scores.decoded, "shape", ())))
    else:
        shapes = (np.shape(scores.network), np.shape(scores.decoded))
    if len(shapes[0]) != 2 or shapes[0] != shapes[1] or min(shapes[0]) == 0:
        raise ValueError("scores.network and scores.decoded must be non-empty (N, K) arrays of "
                         "one shape, got %s and %s" % shapes)
    return scores


def max_activation_matrix(scores):
    """Figure 1's matrix: each filter's top image and every filter's score on it.

    Parameters
    ----------
    scores : FilterScores
        What :func:`filter_scores` returned.

    Returns
    -------
    ActivationMatrix
        The matrices and the images, for the network and for the decoded filters.

    Raises
    ------
    TypeError
        When ``scores`` is not a :class:`FilterScores`.
    ValueError
        When its arrays are empty or differ in shape.
    """
    s = _as_scores(scores)
    if _dask.is_lazy_scores(s):
        return _dask.compute(_lazy_matrix(s))[0]
    out = []
    for S in (s.network, s.decoded):
        best = S.argmax(axis=0)            # (K,) image maximising each filter
        out.append((S[best].T, best))      # [i, j]: filter i on filter j's best image
    return ActivationMatrix(out[0][0], out[1][0], out[0][1], out[1][1])


def _lazy_matrix(s):
    """Delayed ActivationMatrix of lazy scores (per-chunk best images, merged)."""
    dask, _ = _dask.require()
    return dask.delayed(_activation_matrix, pure=True)(_dask.best_images(s.network),
                                                       _dask.best_images(s.decoded))


def _activation_matrix(network, decoded):
    return ActivationMatrix(network[0], decoded[0], network[1], decoded[1])


def classifier_accuracy(scores, labels):
    """Accuracy of the decoded filters used alone as a classifier, next to the network's.

    Parameters
    ----------
    scores : FilterScores
        Scores of the top conv layer (one filter per class), from :func:`filter_scores`.
    labels : array_like
        (N,) integer labels in 0..K-1.

    Returns
    -------
    ClassifierAccuracy
        The two accuracies and the two predictions.

    Raises
    ------
    ValueError
        When the labels do not match the scores in number or range.
    """
    s = _as_scores(scores)
    labels = _labels(s, labels)
    if _dask.is_lazy_scores(s):
        return _accuracy(labels, *_dask.compute(*_lazy_predictions(s)))
    return _accuracy(labels, s.decoded.argmax(axis=1), s.network.argmax(axis=1))


def _lazy_predictions(s):
    return _dask.predictions(s.decoded), _dask.predictions(s.network)


def _accuracy(labels, pd, pn):
    there = pn >= 0   # a lazy pass marks missing images -1 (see _dask.predictions)
    if not there.all():
        _dask.warn_missing(int((~there).sum()), len(there))
        return ClassifierAccuracy(float(np.mean(pd[there] == labels[there])),
                                  float(np.mean(pn[there] == labels[there])), pd, pn)
    return ClassifierAccuracy(float(np.mean(pd == labels)), float(np.mean(pn == labels)), pd, pn)


def _labels(s, labels):
    """Labels (N,) checked against the scores."""
    if _dask.is_dask_array(labels):
        labels = _dask.compute(labels)[0]
    labels = np.asarray(labels)
    N, K = s.network.shape
    if labels.shape != (N,):
        raise ValueError("labels must have shape (%d,) to match the scores, got %s"
                         % (N, labels.shape))
    if labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= K:
        raise ValueError("labels must be integers in 0..%d (layer %r has %d filters); got %s "
                         "values in %s..%s" % (K - 1, s.layer, K, labels.dtype, labels.min(),
                                                labels.max()))
    return labels


def top_images(scores, k=9):
    """Figure 4c/d: the k best images of each filter, by the network and by the decoded filter.

    Ties go to the lower image index.

    Parameters
    ----------
    scores : FilterScores
        What :func:`filter_scores` returned.
    k : int, optional
        Images per filter, at most the number of images scored.

    Returns
    -------
    TopImages
        ``(network (K, k), decoded (K, k), overlap (K,))``.

    Raises
    ------
    ValueError
        When ``k`` is below 1 or above the number of images.

    Examples
    --------
    >>> import fastdecode as fd
    >>> from fastdecode import datasets, models
    >>> net = models.load("lenet-fashion")
    >>> x = models.preprocess(net, datasets.fashion_sample().images[:100])
    >>> tops = fd.top_images(fd.filter_scores(net, x, progress=False), k=5)
    >>> tops.network.shape, tops.decoded.shape, tops.overlap.shape
    ((10, 5), (10, 5), (10,))
    >>> print("%.2f" % tops.overlap.mean())
    0.42
    """
    s = _as_scores(scores)
    k = _top_k(s, k)
    if _dask.is_lazy_scores(s):
        return _dask.compute(_lazy_tops(s, k))[0]
    # stable sort of the negated scores: ties go to the lower image index
    tn = np.argsort(-s.network, axis=0, kind="stable")[:k].T
    td = np.argsort(-s.decoded, axis=0, kind="stable")[:k].T
    return _tops(tn, td)


def _top_k(s, k):
    k = as_int("k", k, minimum=1)
    N = s.network.shape[0]
    if k > N:
        raise ValueError("k=%d is larger than the %d images scored" % (k, N))
    return k


def _tops(tn, td):
    k = tn.shape[1]
    overlap = np.array([len(np.intersect1d(a, b)) / k for a, b in zip(tn, td)])
    return TopImages(tn, td, overlap)


def _lazy_tops(s, k):
    """Delayed TopImages of lazy scores (per-chunk candidates, merged)."""
    dask, _ = _dask.require()
    return dask.delayed(_tops, pure=True)(_dask.top_indices(s.network, k),
                                          _dask.top_indices(s.decoded, k))


def score_results(scores, labels, k):
    """(ActivationMatrix, ClassifierAccuracy or None, TopImages) of one layer's scores, in one
    pass over the images when the scores are lazy (``labels`` None: no accuracy)."""
    s = _as_scores(scores)
    k = _top_k(s, k)
    if labels is not None:
        labels = _labels(s, labels)
    if not _dask.is_lazy_scores(s):
        return (max_activation_matrix(s),
                None if labels is None else classifier_accuracy(s, labels), top_images(s, k))
    preds = _lazy_predictions(s) if labels is not None else ()
    matrix, tops, *preds = _dask.compute(_lazy_matrix(s), _lazy_tops(s, k), *preds)
    return matrix, None if labels is None else _accuracy(labels, *preds), tops
