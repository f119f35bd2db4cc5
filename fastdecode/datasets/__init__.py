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


def _idx_header(path, ndim, what):
    """(sizes, data offset, gzipped) of an IDX file of uint8 elements, from its header; the data
    size is checked against the file's size (uncompressed) or gzip's recorded size."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError("%s is a directory, not an IDX file of %s (load_directory reads "
                              "a directory)" % (path, what))
    expected = (_UINT8 << 8) | ndim
    stream, gz, size, raw = _open(path, what)  # FIFOs and devices refused, not waited on
    try:
        with raw, stream:
            header = stream.read(4 + 4 * ndim)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise IDXError("%s: unreadable IDX file (%s: %s)" % (path, type(exc).__name__, exc)) \
            from None
    if len(header) < 4 + 4 * ndim:
        raise IDXError("%s: truncated IDX file: %d bytes, shorter than its %d-byte header"
                       % (path, len(header), 4 + 4 * ndim))
    magic, = struct.unpack(">I", header[:4])
    if magic != expected:
        raise IDXError("%s: not an IDX file of %s: magic number %d (0x%08x), expected %d "
                       "(0x%08x: uint8 elements, %d dimension%s)"
                       % (path, what, magic, magic, expected, expected, ndim,
                          "s" if ndim > 1 else ""))
    sizes = struct.unpack(">%dI" % ndim, header[4:])
    if any(s == 0 for s in sizes[1:]):
        raise IDXError("%s: IDX header declares an empty image size %s"
                       % (path, "x".join(map(str, sizes[1:]))))
    offset = len(header)
    total = offset + math.prod(sizes)
    if gz:  # gzip's trailer records the uncompressed size modulo 2**32 (of its last member)
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() >= 18:
                f.seek(-4, os.SEEK_END)
                isize, = struct.unpack("<I", f.read(4))
                if isize != total % 2**32:
                    raise IDXError("%s: the IDX header declares %s = %d bytes of %s but the "
                                   "gzip stream holds %d (modulo 2**32)"
                                   % (path, " x ".join(map(str, sizes)), total - offset, what,
                                      isize - offset))
    elif size != total:
        raise IDXError("%s: the IDX header declares %s = %d bytes of %s but the file holds %d"
                       % (path, " x ".join(map(str, sizes)), total - offset, what,
                        size - offset))
    return sizes, offset, gz


class _IDXRows:
    """Rows of an IDX file's data read on demand: what ``dask.array.from_array`` slices.

    A slice of images is one seek and one read: from the file's offset in an uncompressed file;
    in a gzipped file the stream is decompressed from its start up to the slice's end (gzip
    streams cannot be entered in the middle)."""

    dtype = np.dtype(np.uint8)

    def __init__(self, path, sizes, offset, gz):
        self.path, self.shape, self.offset, self.gz = path, tuple(sizes), offset, gz
        self.ndim = len(self.shape)
        self.row = math.prod(self.shape[1:])

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        start, stop, step = key[0].indices(self.shape[0]) if isinstance(key[0], slice) \
            else (int(key[0]), int(key[0]) + 1, 1)
        stop = max(start, stop)
        n = (stop - start) * self.row
        try:
            with (gzip.open(self.path, "rb") if self.gz else open(self.path, "rb")) as f:
                f.seek(self.offset + start * self.row)
                data = f.read(n)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise IDXError("%s: unreadable IDX file at images %d-%d (%s: %s)"
                           % (self.path, start, stop - 1, type(exc).__name__, exc)) from None
        if len(data) != n:
            raise IDXError("%s: truncated IDX file: images %d-%d need bytes %d-%d of its data, "
                           "the file ends before" % (self.path, start, stop - 1,
                                                     start * self.row, stop * self.row - 1))
        rows = np.frombuffer(data, np.uint8).reshape((stop - start,) + self.shape[1:])
        rows = rows[::step] if step != 1 else rows
        rest = key[1:]
        out = rows[(slice(None),) + rest] if rest else rows
        if not isinstance(key[0], slice):
            out = out[0]
        return out.copy()


#: Bytes of uint8 images per chunk of ``load_idx(lazy=True)`` by default.
LAZY_CHUNK_BYTES = 8 * 2**20


def _lazy_idx(path, chunks):
    from .._dask import require
    dask, da = require("load_idx(lazy=True)")
    path = os.path.abspath(os.fspath(path))
    sizes, offset, gz = _idx_header(path, 3, "images")
    rows = _IDXRows(path, sizes, offset, gz)
    if chunks is None:
        chunks = max(1, LAZY_CHUNK_BYTES // rows.row)
    elif isinstance(chunks, bool) or not isinstance(chunks, (int, np.integer)) or chunks < 1:
        raise ValueError("chunks must be a whole number of images, at least 1, got %r"
                         % (chunks,))
    st = os.stat(path)
    name = "idx-%s" % dask.base.tokenize(path, st.st_size, st.st_mtime_ns, int(chunks))
    return da.from_array(rows, chunks=(int(chunks),) + tuple(sizes[1:]), name=name, lock=False,
                         asarray=False, fancy=False, meta=np.empty((0, 0, 0), np.uint8))


def load_idx(images_path, labels_path=None, *, max_bytes=MAX_IDX_BYTES, lazy=False,
             chunks=None):
    """Images and labels from MNIST-format IDX files, gzipped or not (detected by content).

    With ``lazy=True`` the images are a ``dask.array.Array`` whose chunks are read from the
    file when computed, so that a pass over them (:func:`fastdecode.reconstruction_error`,
    :func:`fastdecode.filter_scores`, ...) never holds more than the chunks in flight. In an
    uncompressed file a chunk is one seek and one read. A gzip stream cannot be entered in the
    middle: each chunk decompresses the file from its start up to its own end, so a pass over
    ``n`` chunks decompresses about ``n / 2`` times the file; decompress large files once
    (``gunzip``) to read each byte once.

    Parameters
    ----------
    images_path : str or os.PathLike
        An image file (magic number 2051: uint8, 3 dimensions).
    labels_path : str or os.PathLike, optional
        The matching label file (magic number 2049: uint8, 1 dimension).
    max_bytes : int, optional
        Refuse a file whose header declares more data than this many bytes (the labels only,
        when ``lazy``).
    lazy : bool, optional
        Return the images as a dask array read on demand (needs
        ``pip install "fastdecode[distributed]"``); the labels are read at once.
    chunks : int, optional
        Images per chunk of the lazy array (default: about 8 MiB of pixels).

    Returns
    -------
    IDX
        ``(images uint8 (N, rows, cols), labels uint8 (N,) or None)``; with ``lazy``, images is
        a ``dask.array.Array``.

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
    ImportError
        With ``lazy``, when dask is not installed (a gzipped file whose stream breaks off is
        then reported, as an IDXError, when the chunk is read).

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
    if lazy:
        images = _lazy_idx(images_path, chunks)
    elif chunks is not None:
        raise ValueError("chunks sets the chunks of a lazy array: give lazy=True too")
    else:
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


def load_directory(directory, split="test", *, max_bytes=MAX_IDX_BYTES, lazy=False,
                   chunks=None):
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
    lazy : bool, optional
        The images as a dask array read on demand (see :func:`load_idx`).
    chunks : int, optional
        Images per chunk of the lazy array.

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
    return load_idx(found[0], found[1], max_bytes=max_bytes, lazy=lazy, chunks=chunks)


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
