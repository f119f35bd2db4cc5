"""Images for the atlas: a folder of photos read with Pillow, and the model's normalisation."""

import os
import warnings
from collections import namedtuple

import numpy as np

__all__ = ["Photos", "load_photos", "input_size", "normalisation"]

#: File name endings read from an image folder.
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png")

Photos = namedtuple("Photos", ["images", "display", "names"])
Photos.__doc__ = """Images read from a folder.

images: (N, C, H, W) in the network's dtype, normalised as the network expects;
display: uint8 (N, H, W) or (N, H, W, 3), the same crops as pictures; names: their file names."""


def _average_image(net):
    norm = net.meta.get("normalization") if isinstance(net.meta, dict) else None
    avg = norm.get("averageImage") if isinstance(norm, dict) else None
    if avg is None or np.size(avg) == 0:
        return None
    avg = np.asarray(avg, dtype=np.float64)
    if avg.ndim == 1 and avg.size == net.input_channels:  # a mean colour stored flat
        avg = avg[:, None, None]
    if avg.ndim != 3 or avg.shape[0] != net.input_channels:
        return None
    return avg


def input_size(net):
    """(H, W) the network was trained on, from its meta data (``inputSize``, the normalisation's
    ``imageSize`` or a full-size average image), or None."""
    meta = net.meta if isinstance(net.meta, dict) else {}
    norm = meta.get("normalization") if isinstance(meta.get("normalization"), dict) else {}
    for value in (meta.get("inputSize"), norm.get("imageSize")):
        if value is not None and np.size(value) >= 2:
            h, w = (int(v) for v in np.ravel(value)[:2])
            if h > 0 and w > 0:
                return (h, w)
    avg = _average_image(net)
    if avg is not None and avg.shape[1:] != (1, 1):
        return avg.shape[1:]
    return None


def normalisation(net, size, mean=None, std=None):
    """(mean, std) arrays that broadcast over (C, H, W) images scaled to [0, 1].

    mean, std: sequences of one value or one per channel. Defaults come from the model: its
    average image (MatConvNet's ``meta.normalization.averageImage``, in 0..255 pixels) becomes
    mean = average / 255 and std = 1 / 255, the same as subtracting it from 0..255 pixels; a
    model without one gets mean 0 and std 1.
    """
    C = net.input_channels

    def channels(name, values):
        v = np.asarray(values, dtype=np.float64).ravel()
        if v.size not in (1, C):
            raise ValueError("%s needs 1 or %d values (one per channel), got %d"
                             % (name, C, v.size))
        if not np.isfinite(v).all():
            raise ValueError("%s must be finite, got %s" % (name, v.tolist()))
        return np.broadcast_to(v, (C,)).reshape(C, 1, 1).copy()

    if mean is not None:
        m = channels("mean", mean)
    else:
        avg = _average_image(net)
        if avg is None:
            m = np.zeros((C, 1, 1))
        elif avg.shape[1:] == tuple(size) or avg.shape[1:] == (1, 1):
            m = avg / 255.0
        else:  # a mean image of another size: its mean colour
            m = avg.mean(axis=(1, 2), keepdims=True) / 255.0
    if std is not None:
        s = channels("std", std)
        if (s <= 0).any():
            raise ValueError("std must be positive, got %s" % s.ravel().tolist())
    else:
        s = np.full((C, 1, 1), 1.0 / 255.0 if _average_image(net) is not None else 1.0)
    return m, s


def photo_files(folder):
    """The JPEG and PNG files of a folder, sorted by name."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError("image folder not found: %s" % folder) if not os.path.exists(
            folder) else NotADirectoryError("not a folder of images: %s" % folder)
    names = sorted(n for n in os.listdir(folder)
                   if n.lower().endswith(PHOTO_EXTENSIONS)
                   and os.path.isfile(os.path.join(folder, n)))
    if not names:
        raise ValueError("no JPEG or PNG images (%s) in %s"
                         % (", ".join(PHOTO_EXTENSIONS), folder))
    return [os.path.join(folder, n) for n in names]


def _read(path, mode, size):
    """The picture at ``path`` in Pillow ``mode``, resized on its shorter side and centre-cropped
    to ``size`` (H, W); uint8 (H, W) or (H, W, 3)."""
    from PIL import Image
    with Image.open(path) as img:
        img.load()
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            img = img.convert("RGBA")
            flat = Image.new("RGBA", img.size, (255, 255, 255, 255))  # transparency over white
            img = Image.alpha_composite(flat, img)
        img = img.convert(mode)
    H, W = size
    w0, h0 = img.size
    scale = max(H / h0, W / w0)
    w1, h1 = max(W, int(round(w0 * scale))), max(H, int(round(h0 * scale)))
    img = img.resize((w1, h1), Image.Resampling.BICUBIC, reducing_gap=3.0)
    left, top = (w1 - W) // 2, (h1 - H) // 2
    return np.asarray(img.crop((left, top, left + W, top + H)))


def load_photos(folder, net, *, size=None, mean=None, std=None, limit=None):
    """JPEG and PNG photos of a folder (sorted by name) as the network's input.

    Each is converted to the network's channels (RGB for 3, grey for 1; transparency over
    white), resized on its shorter side and centre-cropped to ``size`` (H, W; default the
    model's input size), scaled to [0, 1], then ``(x - mean) / std`` per channel (defaults: see
    :func:`normalisation`). An unreadable file is skipped with a warning naming it.

    Parameters
    ----------
    folder : str or os.PathLike
        The folder of ``.jpg``, ``.jpeg`` and ``.png`` files.
    net : Network
        The network the images are for (its input channels and size).
    size : tuple of int, optional
        (H, W) the photos are cropped to (default: the model's input size).
    mean, std : sequence of float, optional
        Per-channel normalisation of pixels scaled to [0, 1] (default: from the model file).
    limit : int, optional
        Read at most this many images.

    Returns
    -------
    Photos
        ``images`` (N, C, H, W) for the network, ``display`` uint8 pictures, ``names``.
    """
    if net.input_channels not in (1, 3):
        raise ValueError("the network takes %d-channel images; photos can be read for 1 (grey) "
                         "or 3 (RGB) channels only" % net.input_channels)
    if limit is not None and int(limit) < 1:
        raise ValueError("limit must be at least 1, got %d" % int(limit))
    size = _check_size(net, size)
    m, s = normalisation(net, size, mean, std)
    files = photo_files(folder)
    mode = "RGB" if net.input_channels == 3 else "L"
    pictures, names = [], []
    for path in files:
        if limit is not None and len(pictures) >= int(limit):
            break
        try:
            pictures.append(_read(path, mode, size))
        except Exception as exc:  # Pillow raises many kinds for broken files
            warnings.warn("skipped unreadable image %s (%s)" % (path, " ".join(
                str(exc).split()) or type(exc).__name__), stacklevel=2)
            continue
        names.append(os.path.basename(path))
    if not pictures:
        raise ValueError("none of the %d JPEG/PNG files in %s could be read" % (len(files),
                                                                                 folder))
    display = np.stack(pictures)
    x = display.astype(np.float64) / 255.0
    x = x[:, None] if x.ndim == 3 else np.moveaxis(x, -1, 1)
    x = (x - m[None]) / s[None]
    return Photos(x.astype(net.dtype), display, names)


def _check_size(net, size):
    if size is None:
        size = input_size(net)
        if size is None:
            raise ValueError("the model does not say its input size: give one (--size H,W)")
    size = tuple(int(v) for v in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError("size must be two positive integers (H, W), got %s" % (size,))
    net.check_input((1, net.input_channels) + size)
    return size
