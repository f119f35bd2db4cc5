"""Trained networks shipped with fastdecode, and the preprocessing they expect.

``lenet-mnist`` and ``lenet-fashion`` are MatConvNet's MNIST LeNet (conv 5x5x1x20, max pool 2,
conv 5x5x20x50, max pool 2, conv 4x4x50x500, ReLU, conv 1x1x500x10), trained on MNIST digits and on
Fashion-MNIST; MODEL_CARD.md beside this file says how. They are stored as MatConvNet ``.mat``
files and read with :func:`fastdecode.load_matconvnet`.
"""

from importlib import resources

import numpy as np

from .._validation import all_finite

__all__ = ["available", "load", "preprocess"]

_FILES = {
    "lenet-mnist": "lenet-mnist.mat",
    "lenet-fashion": "lenet-fashion.mat",
}


def available():
    """The names of the shipped models.

    Returns
    -------
    list of str
        The names :func:`load` takes, sorted.
    """
    return sorted(_FILES)


def load(name):
    """A shipped model, read from its MatConvNet file (a fresh copy on every call).

    Parameters
    ----------
    name : str
        One of :func:`available`: ``"lenet-mnist"`` or ``"lenet-fashion"``.

    Returns
    -------
    fastdecode.Network
        The network.

    Raises
    ------
    KeyError
        When no shipped model has that name.

    Examples
    --------
    >>> from fastdecode import datasets, models
    >>> models.available()
    ['lenet-fashion', 'lenet-mnist']
    >>> net = models.load("lenet-fashion")
    >>> net.conv_layers
    ['layer1', 'layer3', 'layer5', 'layer7']
    >>> x = models.preprocess(net, datasets.fashion_sample().images[:8])
    >>> x.shape, x.dtype
    ((8, 1, 28, 28), dtype('float32'))
    """
    if not isinstance(name, str) or name not in _FILES:
        raise KeyError("no shipped model named %r; available models: %s"
                       % (name, ", ".join(available())))
    from ..matconvnet import load_matconvnet
    with resources.as_file(resources.files(__name__) / _FILES[name]) as path:
        return load_matconvnet(path)


def _mean_image(net):
    """meta.normalization.averageImage as a float64 array (C, H, W)."""
    try:
        mean = net.meta["normalization"]["averageImage"]
    except (KeyError, TypeError):
        mean = None
    if mean is None:  # absent, or stored empty ([]) as MatConvNet files without a mean do
        raise KeyError("the network has no meta['normalization']['averageImage'] to subtract")
    mean = np.asarray(mean, dtype=np.float64)
    if mean.ndim != 3:
        raise ValueError("meta['normalization']['averageImage'] must be (C, H, W) or (C, 1, 1), "
                         "got shape %s"
                         % (mean.shape,))
    return mean


def preprocess(net, images):
    """Images as the network expects them: pixels 0..255 minus the training mean image.

    Parameters
    ----------
    net : fastdecode.Network
        A network whose ``meta['normalization']['averageImage']`` (C, H, W) is subtracted (a
        per-channel mean (C, 1, 1) from every pixel).
    images : array_like
        uint8 or float pixel values in 0..255, (N, H, W) for one channel or (N, C, H, W).

    Returns
    -------
    numpy.ndarray
        (N, C, H, W) in ``net.dtype``.

    Raises
    ------
    KeyError
        When the network has no mean image.
    TypeError
        When the images are not real numbers.
    ValueError
        When the images do not match the mean image, or hold NaN or infinity.
    """
    mean = _mean_image(net)
    x = np.asarray(images)
    if x.dtype == object or x.dtype.kind not in "biuf":
        raise TypeError("images must be a real numeric array, got dtype %s" % x.dtype)
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim != 4:
        raise ValueError("images must be (N, H, W) or (N, C, H, W), got shape %s" % (x.shape,))
    per_channel = mean.shape[1:] == (1, 1)   # a mean colour, as some MatConvNet files store it
    if x.shape[1] != mean.shape[0] or (not per_channel and x.shape[2:] != mean.shape[1:]):
        raise ValueError("images of shape %s do not match the network's mean image (C, H, W) = %s"
                         % (np.shape(images), mean.shape))
    x = x.astype(np.float64)
    if not all_finite(x):
        raise ValueError("images contain non-finite values (NaN or inf)")
    return (x - mean[None]).astype(net.dtype)
