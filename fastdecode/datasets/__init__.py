"""Image data sets in the IDX format of MNIST and Fashion-MNIST, and a shipped Fashion-MNIST sample.

IDX files (gzipped or not) hold a big-endian header: a magic number ``0x0000TTDD`` (TT the element
type, 0x08 for uint8; DD the number of dimensions), one 32-bit size per dimension, then the data.
Images are ``uint8 (N, rows, cols)``, labels ``uint8 (N,)``.

The sample shipped with the package is the first 1,000 images of Fashion-MNIST's test set
(``t10k``) with their labels (Fashion-MNIST, Zalando Research, MIT licence).
"""

import gzip
import math
import numbers
import os
import struct
import zlib
from collections import namedtuple
from importlib import resources

import numpy as np

from .._io import open_regular

__all__ = ["IDX", "IDXError", "load_idx", "load_directory", "fashion_sample",
           "FASHION_CLASSES", "MNIST_CLASSES", "MAX_IDX_BYTES"]

#: Class names of Fashion-MNIST, by label.
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

#: Class names of MNIST, by label: the digits.
MNIST_CLASSES = tuple("0123456789")

#: Largest data section, in bytes, that ``load_idx`` accepts by default (MNIST's training
#: images take 47 MB).
MAX_IDX_BYTES = 2**30

IDX = namedtuple("IDX", ["images", "labels"])
IDX.__doc__ = """Images and labels read from IDX files.

Attributes
----------
images : numpy.ndarray
    uint8 (N, rows, cols).
labels : numpy.ndarray or None
    uint8 (N,), or None when no label file was read.
"""

_UINT8 = 0x08
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
#: Most bytes one byte of a deflate stream can inflate to (the format's limit is 1032:1): a gzip
#: file declaring more data than this many times its size is truncated or corrupt.
_MAX_GZIP_RATIO = 1032

#: Standard file names of the two splits, as the MNIST and Fashion-MNIST distributions name them.
_SPLITS = {"test": "t10k", "train": "train"}

_SAMPLE_IMAGES = "fashion-mnist-t10k-1000-images-idx3-ubyte.gz"
_SAMPLE_LABELS = "fashion-mnist-t10k-1000-labels-idx1-ubyte.gz"


class IDXError(ValueError):
    """An IDX file that cannot be read: not an IDX file of the kind asked for, truncated,
    corrupted (gzip), declaring more data than it holds or than ``max_bytes``, not a regular
    file, or image and label counts that differ. The message names the file."""


def _open(path, what):
    """(binary stream, whether gzipped, file size) on the regular file ``path``; the stream
    decompresses when the file starts with gzip's magic bytes."""
    f = open_regular(path, "IDX file of %s" % what, IDXError)
    try:
        size = os.fstat(f.fileno()).st_size
        head = f.read(2)
        f.seek(0)
        if head == _GZIP_MAGIC:
            return gzip.GzipFile(fileobj=f, mode="rb"), True, size, f
        return f, False, size, f
    except BaseException:
        f.close()
        raise


def _read_exactly(stream, n, path, what):
    """``n`` bytes from ``stream`` (a small piece: the header); IDXError when truncated."""
    data = stream.read(n)
    if len(data) < n:
        raise IDXError("%s: truncated IDX file: the header declares %d bytes of %s but the "
                       "file holds only %d" % (path, n, what, len(data)))
    return data


def _read_into(stream, out, path, what):
    """Fill the uint8 array ``out`` from ``stream`` chunk by chunk; IDXError when it ends first."""
    view = memoryview(out).cast("B")
    done = 0
    while done < len(view):
        n = stream.readinto(view[done:done + _CHUNK])
        if not n:
            raise IDXError("%s: truncated IDX file: the header declares %d bytes of %s but the "
                           "file holds only %d" % (path, len(view), what, done))
        done += n


def _read_idx(path, ndim, what, max_bytes):
    """The array of an IDX file of uint8 elements with ``ndim`` dimensions."""
    path = os.fspath(path)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, numbers.Integral) \
            or max_bytes < 0:
        raise ValueError("max_bytes must be a non-negative integer, got %r" % (max_bytes,))
    if os.path.isdir(path):
        raise IsADirectoryError("%s is a directory, not an IDX file of %s (load_directory reads "
                                "a directory)" % (path, what))
    expected = (_UINT8 << 8) | ndim
    stream, packed, size, raw = _open(path, what)
    try:
        with raw, stream:
            header = stream.read(4)
            if len(header) < 4:
                raise IDXError("%s: truncated IDX file: %d bytes, shorter than the 4-byte magic "
                               "number" % (path, len(header)))
            magic, = struct.unpack(">I", header)
            if magic != expected:
                raise IDXError(
                    "%s: not an IDX file of %s: magic number %d (0x%08x), expected %d (0x%08x: "
                    "uint8 elements, %d dimension%s)" % (path, what, magic, magic, expected,
                                                         expected, ndim, "s" if ndim > 1 else ""))
            sizes = struct.unpack(">%dI" % ndim, _read_exactly(stream, 4 * ndim, path,
                                                                "dimension sizes"))
            shown = " x ".join(map(str, sizes))
            if any(s == 0 for s in sizes[1:]):
                raise IDXError("%s: IDX header declares an empty image size %s"
                               % (path, "x".join(map(str, sizes[1:]))))
            nbytes = math.prod(sizes)
            if nbytes > max_bytes:
                raise IDXError("%s: IDX header declares %s = %d bytes of %s, more than the "
                               "limit of %d bytes (max_bytes)"
                               % (path, shown, nbytes, what, max_bytes))
            header_bytes = 4 + 4 * ndim
            if not packed and nbytes > size - header_bytes:
                raise IDXError("%s: truncated IDX file: the header declares %s = %d bytes of %s "
                               "but the file holds only %d after its %d-byte header"
                               % (path, shown, nbytes, what, size - header_bytes, header_bytes))
            if packed and nbytes + header_bytes > _MAX_GZIP_RATIO * size:
                raise IDXError("%s: truncated or corrupt IDX file: the header declares %s = %d "
                               "bytes of %s, more than a gzip file of %d bytes can hold"
                               % (path, shown, nbytes, what, size))
            out = np.empty(nbytes, dtype=np.uint8)  # pages are touched only as data arrives
            _read_into(stream, out, path, what)
            out = out.reshape(sizes)
            if stream.read(1):
                raise IDXError("%s: IDX file has data beyond the %d bytes its header declares "
                               "(%s)" % (path, nbytes, shown))
    except (EOFError, OSError, zlib.error) as exc:
        if isinstance(exc, (FileNotFoundError, IsADirectoryError, PermissionError)) \
                and not isinstance(exc, gzip.BadGzipFile):
            raise
        raise IDXError("%s: unreadable IDX file (%s: %s)" % (path, type(exc).__name__, exc)) \
            from None
    return out


def load_idx(images_path, labels_path=None, *, max_bytes=MAX_IDX_BYTES):
    """Images and labels from MNIST-format IDX files, gzipped or not (detected by content).

    Parameters
    ----------
    images_path : str or os.PathLike
        An image file (magic number 2051: uint8, 3 dimensions).
    labels_path : str or os.PathLike, optional
        The matching label file (magic number 2049: uint8, 1 dimension).
    max_bytes : int, optional
        Refuse a file whose header declares more data than this many bytes.

    Returns
    -------
    IDX
        ``(images uint8 (N, rows, cols), labels uint8 (N,) or None)``.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
        When a file is missing, is a directory (:func:`load_directory` reads one) or cannot be
        read.
    IDXError
        A ValueError naming the file, for a FIFO or device, a wrong magic number, a truncated,
        corrupt (gzip) or oversized file (beyond ``max_bytes``, or beyond what the file can
        hold), or image and label counts that differ; nothing is allocated for data the file
        does not hold.

    Examples
    --------
    >>> from importlib import resources
    >>> from fastdecode.datasets import FASHION_CLASSES, load_idx
    >>> root = resources.files("fastdecode.datasets")
    >>> with resources.as_file(root / "fashion-mnist-t10k-1000-images-idx3-ubyte.gz") as images:
    ...     with resources.as_file(root / "fashion-mnist-t10k-1000-labels-idx1-ubyte.gz") as labels:
    ...         data = load_idx(images, labels)
    >>> data.images.shape, data.images.dtype, data.labels.shape
    ((1000, 28, 28), dtype('uint8'), (1000,))
    >>> FASHION_CLASSES[data.labels[0]]
    'Ankle boot'
    """
    images = _read_idx(images_path, 3, "images", max_bytes)
    if labels_path is None:
        return IDX(images, None)
    labels = _read_idx(labels_path, 1, "labels", max_bytes)
    if labels.shape[0] != images.shape[0]:
        raise IDXError("%s holds %d labels but %s holds %d images"
                         % (os.fspath(labels_path), labels.shape[0], os.fspath(images_path),
                            images.shape[0]))
    return IDX(images, labels)


def _find(directory, stem):
    for name in (stem, stem + ".gz"):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def load_directory(directory, split="test", *, max_bytes=MAX_IDX_BYTES):
    """Images and labels of one split from a directory laid out like MNIST's distribution.

    Parameters
    ----------
    directory : str or os.PathLike
        The directory holding the IDX files.
    split : {"test", "train"}, optional
        "test" reads ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, "train" reads
        ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte``, each gzipped (``.gz``) or
        not.
    max_bytes : int, optional
        Refuse a file whose header declares more data than this many bytes.

    Returns
    -------
    IDX
        ``(images uint8 (N, rows, cols), labels uint8 (N,))``.

    Raises
    ------
    ValueError
        For an unknown split; :class:`IDXError` (a ValueError) for an unreadable file (see
        :func:`load_idx`).
    NotADirectoryError
        When ``directory`` is a file.
    FileNotFoundError
        When the directory, or one of the split's two files, is missing.
    """
    if split not in _SPLITS:
        raise ValueError("split must be one of %s, got %r" % (", ".join(map(repr, _SPLITS)), split))
    directory = os.fspath(directory)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise NotADirectoryError("the data directory %s is a file; give the directory that holds "
                                 "the IDX files (load_idx reads one file)" % directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError("data directory not found: %s" % directory)
    prefix = _SPLITS[split]
    stems = ["%s-images-idx3-ubyte" % prefix, "%s-labels-idx1-ubyte" % prefix]
    found = [_find(directory, stem) for stem in stems]
    if None in found:
        missing = [stem for stem, path in zip(stems, found) if path is None]
        raise FileNotFoundError(
            "no %s split in %s: looked for %s (each optionally gzipped, .gz) and did not find %s"
            % (split, directory, " and ".join(stems), ", ".join(missing)))
    return load_idx(found[0], found[1], max_bytes=max_bytes)


def fashion_sample():
    """The shipped sample: the first 1,000 Fashion-MNIST test images and their labels.

    Returns
    -------
    IDX
        ``(images uint8 (1000, 28, 28), labels uint8 (1000,))``; the class names are in
        ``FASHION_CLASSES``.
    """
    root = resources.files(__name__)
    with resources.as_file(root / _SAMPLE_IMAGES) as images, \
            resources.as_file(root / _SAMPLE_LABELS) as labels:
        return load_idx(images, labels)
