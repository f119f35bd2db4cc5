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
    """Names of the shipped models."""
    return sorted(_FILES)


def load(name):
    """A shipped model as a :class:`fastdecode.Network` (a fresh copy on every call)."""
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

    ``images`` are uint8 or float pixel values in 0..255, (N, H, W) for one channel or
    (N, C, H, W); the network's ``meta['normalization']['averageImage']`` (C, H, W) is subtracted
    (a per-channel mean (C, 1, 1) from every pixel).
    Returns a float array (N, C, H, W) in ``net.dtype``.
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
