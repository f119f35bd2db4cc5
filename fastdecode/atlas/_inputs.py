"""Images for the atlas: a folder of photos read with Pillow, and the model's normalisation."""

import os
import warnings
from collections import namedtuple

import numpy as np

__all__ = ["Photos", "load_photos", "input_size", "normalisation", "ImageReadError"]

#: File name endings read from an image folder.
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png")

#: What ``load_photos`` does with a file it cannot read.
ON_ERROR = ("skip", "raise")

#: Bytes of pictures and network input per chunk of ``load_photos(lazy=True)`` by default.
PHOTO_CHUNK_BYTES = 64 * 2**20


class ImageReadError(OSError):
    """A photo that could not be read (a corrupt, truncated or unsupported file), named with its
    index in the folder's sorted list of photos."""

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


def _failure(path, index, exc):
    """The one-line reason a photo could not be read."""
    return "image %d (%s) cannot be read: %s" % (index, path, " ".join(str(exc).split())
                                                 or type(exc).__name__)


def load_photos(folder, net, *, size=None, mean=None, std=None, limit=None, lazy=False,
                chunks=None, on_error="skip"):
    """JPEG and PNG photos of a folder (sorted by name) as the network's input.

    Each is converted to the network's channels (RGB for 3, grey for 1; transparency over
    white), resized on its shorter side and centre-cropped to ``size`` (H, W; default the
    model's input size), scaled to [0, 1], then ``(x - mean) / std`` per channel (defaults: see
    :func:`normalisation`).

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
        Read at most this many images (with ``lazy``, the first ``limit`` files).
    lazy : bool, optional
        Return dask arrays read chunk by chunk when computed: the folder is only listed here
        (no file is opened), and a pass over the images holds the chunks in flight, never the
        folder (needs dask: ``pip install "fastdecode[distributed]"``).
    chunks : int, optional
        With ``lazy``, photos per chunk (default: about 64 MiB of pictures and input).
    on_error : {"skip", "raise"}, optional
        A file that cannot be read: "skip" (the default) warns naming it; "raise" raises
        :class:`ImageReadError` naming it, which stops a lazy pass when the chunk is read. In
        memory a skipped file is left out of the arrays. A lazy array's shape is fixed before
        the files are read, so there a skipped file keeps its place: its image is all NaN
        (its picture black), and the passes over dask arrays (Eq. 3, the scores, the top
        images, Figure 1, the classifier and the atlas) leave such missing images out of every
        statistic, saying how many.

    Returns
    -------
    Photos
        ``images`` (N, C, H, W) for the network, ``display`` uint8 pictures, ``names`` (the
        file names); with ``lazy``, images and display are ``dask.array.Array``.

    Raises
    ------
    ImageReadError
        With ``on_error="raise"``, for the first file that cannot be read.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from PIL import Image
    >>> from fastdecode import models
    >>> from fastdecode.atlas import load_photos
    >>> folder = tempfile.mkdtemp()
    >>> for i in range(3):
    ...     Image.fromarray(np.full((40, 30), 80 * i, np.uint8)).save(
    ...         os.path.join(folder, "p%d.png" % i))
    >>> net = models.load("lenet-mnist")
    >>> photos = load_photos(folder, net)
    >>> photos.images.shape, photos.names
    ((3, 1, 28, 28), ['p0.png', 'p1.png', 'p2.png'])
    """
    if net.input_channels not in (1, 3):
        raise ValueError("the network takes %d-channel images; photos can be read for 1 (grey) "
                         "or 3 (RGB) channels only" % net.input_channels)
    if limit is not None and int(limit) < 1:
        raise ValueError("limit must be at least 1, got %d" % int(limit))
    if on_error not in ON_ERROR:
        raise ValueError("on_error must be one of %s, got %r" % (", ".join(ON_ERROR), on_error))
    if chunks is not None and not lazy:
        raise ValueError("chunks sets the chunks of lazy arrays: give lazy=True too")
    size = _check_size(net, size)
    m, s = normalisation(net, size, mean, std)
    files = photo_files(folder)
    mode = "RGB" if net.input_channels == 3 else "L"
    if lazy:
        files = files if limit is None else files[:int(limit)]
        return _lazy_photos(files, mode, size, m, s, net.dtype, chunks, on_error)
    pictures, names = [], []
    for index, path in enumerate(files):
        if limit is not None and len(pictures) >= int(limit):
            break
        try:
            pictures.append(_read(path, mode, size))
        except Exception as exc:  # Pillow raises many kinds for broken files
            if on_error == "raise":
                raise ImageReadError(_failure(path, index, exc)) from None
            warnings.warn("skipped unreadable image %s (%s)" % (path, " ".join(
                str(exc).split()) or type(exc).__name__), stacklevel=2)
            continue
        names.append(os.path.basename(path))
    if not pictures:
        raise ValueError("none of the %d JPEG/PNG files in %s could be read" % (len(files),
                                                                                 folder))
    display = np.stack(pictures)
    return Photos(_network_input(display, m, s, net.dtype), display, names)


def _network_input(display, m, s, dtype):
    """Pictures uint8 (n, H, W[, 3]) as the network's input (n, C, H, W)."""
    x = display.astype(np.float64) / 255.0
    x = x[:, None] if x.ndim == 3 else np.moveaxis(x, -1, 1)
    return ((x - m[None]) / s[None]).astype(dtype)


def _lazy_photos(files, mode, size, m, s, dtype, chunks, on_error):
    from .._dask import require
    from .._validation import as_int
    dask, da = require("load_photos(lazy=True)")
    H, W = size
    C = 3 if mode == "RGB" else 1
    if chunks is None:
        per = H * W * C * (1 + np.dtype(dtype).itemsize)
        chunks = max(1, int(PHOTO_CHUNK_BYTES // per))
    else:
        chunks = as_int("chunks", chunks, minimum=1)
    tail = (H, W, 3) if C == 3 else (H, W)
    pictures, images = [], []
    for start in range(0, len(files), chunks):
        part = tuple(files[start:start + chunks])
        read = dask.delayed(_read_chunk, pure=True)(part, start, mode, tuple(size), on_error)
        pictures.append(da.from_delayed(dask.delayed(_pictures_of, pure=True)(read),
                                        (len(part),) + tail, dtype=np.uint8))
        images.append(da.from_delayed(
            dask.delayed(_input_of, pure=True)(read, m, s, np.dtype(dtype)),
            (len(part), C, H, W), dtype=dtype))
    names = [os.path.basename(p) for p in files]
    return Photos(da.concatenate(images), da.concatenate(pictures), names)


def _read_chunk(paths, start, mode, size, on_error):
    """(pictures uint8 (n, H, W[, 3]), failed bool (n,)) of the files ``paths`` (a task)."""
    H, W = size
    out = np.zeros((len(paths), H, W, 3) if mode == "RGB" else (len(paths), H, W), np.uint8)
    failed = np.zeros(len(paths), bool)
    for j, path in enumerate(paths):
        try:
            out[j] = _read(path, mode, size)
        except Exception as exc:  # Pillow raises many kinds for broken files
            if on_error == "raise":
                raise ImageReadError(_failure(path, start + j, exc)) from None
            warnings.warn("skipped unreadable image %s (%s): its image is missing (NaN)"
                          % (path, " ".join(str(exc).split()) or type(exc).__name__))
            failed[j] = True
    return out, failed


def _pictures_of(read):
    return read[0]


def _input_of(read, m, s, dtype):
    pictures, failed = read
    x = _network_input(pictures, m, s, dtype)
    x[failed] = np.nan
    return x


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
