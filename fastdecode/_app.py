"""The runners of the ``fastdecode`` commands: ``info``, ``decode``, ``demo`` and ``evaluate``.

Each takes the command's options as arguments, prints its results, writes its files whole or not
at all (:mod:`fastdecode._io`) and returns the exit status; errors are raised, for
:func:`fastdecode.cli.main` to report. ``demo`` and ``evaluate`` run the paper's evaluation
(:mod:`fastdecode._pipeline`) on a model (:func:`load_model`) and data (:func:`load_data`).
"""

import os
import re
import time

import numpy as np

from ._io import OutputDirectory, atomic_paths, check_output_dir, check_output_file
from ._pipeline import (METHODS, Dataset, evaluate, header_lines, prepare, print_evaluation,
                        save_evaluation_figures, save_layer_figures, write_results)
from ._validation import printable

__all__ = ["load_model", "load_data", "parse_filters", "parse_numbers", "parse_size", "run_info", "run_decode", "run_demo",
           "run_evaluate"]


def _say(text=""):
    print(text, flush=True)


# --- inputs -------------------------------------------------------------------------------------

def load_model(spec, *, size=None, size_needed=True):
    """A network from a model file (MatConvNet or ONNX, told apart by content) or a shipped
    model's name.

    Parameters
    ----------
    spec : str or os.PathLike
        A path to a MatConvNet or ONNX file, or a name from :func:`fastdecode.models.available`.
    size : (int, int), optional
        (H, W) of the images, for an ONNX model (the ``--size`` option).
    size_needed : bool, optional
        Refuse ``size`` for a model other than an ONNX file (True, the default), or ignore it
        there (False: the atlas also crops photos to it).

    Returns
    -------
    fastdecode.Network
        The network.

    Raises
    ------
    IsADirectoryError
        When ``spec`` is a directory.
    ValueError
        When ``spec`` is not a regular file (a device or a pipe), or not a readable network.
    FileNotFoundError
        When ``spec`` looks like a path (ends in ``.mat`` or ``.onnx``, or holds a separator)
        but is missing.
    KeyError
        When ``spec`` is neither a file nor a shipped model's name.
    """
    from . import models
    from .loading import load, model_format
    spec = os.fspath(spec)
    if os.path.isdir(spec):
        raise IsADirectoryError("the model %s is a directory, not a model file" % spec)
    if os.path.isfile(spec):
        if size is None:
            return load(spec)
        if model_format(spec) == "onnx":
            return load(spec, input_shape=(None,) + tuple(size))
        if size_needed:
            raise ValueError("--size sets the input size of an ONNX model; %s is a MatConvNet "
                             "file, whose size is its own" % spec)
        return load(spec)
    if os.path.exists(spec):  # a device or a pipe, which could block a reader
        raise ValueError("the model %s is not a regular file" % spec)
    if spec.endswith((".mat", ".onnx")) or os.sep in spec:
        raise FileNotFoundError("model file not found: %s" % spec)
    if spec not in models.available():
        raise KeyError("no shipped model named %r and no such file; shipped models: %s"
                       % (spec, ", ".join(models.available())))
    if size is not None and size_needed:
        raise ValueError("--size sets the input size of an ONNX model; %s is a shipped "
                         "model, whose size is its own" % spec)
    return models.load(spec)


def parse_numbers(flag, text, kind=float):
    """'0.48,0.46,0.41' -> [0.48, 0.46, 0.41] (None for None); ValueError naming the flag
    otherwise."""
    if text is None:
        return None
    try:
        values = [kind(v) for v in str(text).replace(" ", "").split(",") if v != ""]
    except ValueError:
        values = []
    if not values:
        raise ValueError("%s takes comma-separated numbers such as 0.5,0.5,0.5; got %r"
                         % (flag, text))
    return values


def parse_size(text):
    """(H, W) from the ``--size`` text ``"H,W"``, or None for None."""
    size = parse_numbers("--size", text, int)
    if size is None:
        return None
    if len(size) != 2 or min(size) < 1:
        raise ValueError("--size takes H,W (two positive whole numbers), got %r" % (text,))
    return tuple(size)


def load_data(data=None, *, start=0, limit=None, chunks=None):
    """Test images and labels from an IDX directory, or the shipped Fashion-MNIST sample.

    Parameters
    ----------
    data : str or os.PathLike, optional
        A directory holding ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (each
        optionally gzipped); None for :func:`fastdecode.datasets.fashion_sample`.
    start : int, optional
        The 0-based index of the first image kept.
    limit : int, optional
        Keep at most this many images (default: all from ``start`` on).
    chunks : int, optional
        Read the images lazily, as a dask array of chunks of this many images (see
        :func:`fastdecode.datasets.load_idx`).

    Returns
    -------
    Dataset
        The images kept, their labels, where they came from and ``start``.

    Raises
    ------
    ValueError
        When ``start`` lies outside the images or ``limit`` is below 1.
    """
    from . import datasets
    if data is None:
        ds = datasets.fashion_sample()
        source = "the shipped Fashion-MNIST sample (first 1,000 test images)"
        if chunks is not None:
            from ._dask import require
            ds = ds._replace(images=require()[1].from_array(ds.images, chunks=(chunks, -1, -1)))
    else:
        ds = datasets.load_directory(data, split="test", lazy=chunks is not None,
                                     chunks=chunks)
        source = "the test images in %s" % os.fspath(data)
    n = len(ds.images)
    start = int(start or 0)
    if start < 0 or start >= n:
        raise ValueError("--start %d is outside the %d images of %s" % (start, n, source))
    stop = n if limit is None else start + int(limit)
    if limit is not None and limit < 1:
        raise ValueError("--limit must be at least 1, got %d" % limit)
    images = ds.images[start:stop]
    labels = None if ds.labels is None else ds.labels[start:stop]
    return Dataset(images, labels, source, start)


def parse_filters(text, count, layer):
    """The filter indices of ``decode --filters``: ``'0,3,5-9'`` is [0, 3, 5, 6, 7, 8, 9].

    Parameters
    ----------
    text : str
        Indices and inclusive ranges, separated by commas.
    count : int
        The number of filters of the layer.
    layer : str
        The layer's name, for the messages.

    Returns
    -------
    list of int
        The indices, in the order given.

    Raises
    ------
    ValueError
        When ``text`` is not a list of indices and ranges, or names no filter.
    IndexError
        For an index beyond the ``count`` filters (checked before a range is expanded).
    """
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if m is None or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise ValueError("--filters takes indices and ranges such as 0,3,10-19; got %r"
                             % text)
        lo = int(m.group(1))
        hi = int(m.group(2) or lo)
        if hi >= count:
            raise IndexError("filter index %d out of range: layer %r has %d filters"
                             % (hi, printable(layer), count))
        out.extend(range(lo, hi + 1))
    if not out:
        raise ValueError("--filters names no filter: %r" % text)
    return out


# --- info and decode ----------------------------------------------------------------------------

def run_info(model, size=None):
    """``fastdecode info``: print a network's layers, strides and decoded sizes.

    Parameters
    ----------
    model : str
        A shipped model's name or a MatConvNet or ONNX file.
    size : str, optional
        The ``--size`` text "H,W", for ONNX files that leave the input size open.

    Returns
    -------
    int
        0.
    """
    from .matconvnet import format_info
    print(format_info(load_model(model, size=parse_size(size)), title=model))
    return 0


def run_decode(*, model, layer, filters=None, unpool="nearest", out=None, save=None,
               threshold=None, n_threads=None, size=None):
    """``fastdecode decode``: decode a layer's filters, save them as .npy and a PNG grid.

    Parameters
    ----------
    model : str
        A shipped model's name or a MatConvNet or ONNX file.
    layer : str or int
        The layer's name or index: a conv layer, or for a graph any layer decoding can start
        from (a block's output, a concatenation, a linear layer).
    filters : str, optional
        The ``--filters`` text (see :func:`parse_filters`; default: all filters).
    unpool : str, optional
        The unpooling method.
    out, save : str, optional
        The PNG grid and the .npy file to write; both appear, or neither.
    threshold : float, optional
        Also draw the thresholded filters (a fraction in [0, 1]).
    n_threads : int, optional
        Threads (default: all cores).
    size : str, optional
        The ``--size`` text "H,W", for ONNX files that leave the input size open.

    Returns
    -------
    int
        0.
    """
    from .decoding import decode
    files = [(path, flag, suffix) for path, flag, suffix in
             ((save, "--save", ".npy"), (out, "--out", ".png")) if path is not None]
    for path, flag, _ in files:  # refuse before any work, so that nothing is left half done
        check_output_file(path, flag)
    if threshold is not None and not 0 <= threshold <= 1:
        raise ValueError("--threshold must be a fraction in [0, 1], got %g" % threshold)
    net = load_model(model, size=parse_size(size))
    idx = net.decodable_index(layer)
    count, lname = net.channels(idx), net.layers[idx].name
    chosen = None if filters is None else parse_filters(filters, count, lname)
    D = decode(net, layer, filters=chosen, unpool=unpool, n_threads=n_threads)
    name = printable(net[layer].name)  # control characters from real files escaped
    print("decoded %d filters of layer %s: shape %s, %s" % (D.shape[0], name, D.shape, D.dtype))
    labels = np.arange(count) if chosen is None else np.array(chosen)
    title = "%s, layer %s (%s unpooling)" % (model, name, unpool)
    with atomic_paths([(path, suffix) for path, _, suffix in files]) as tmps:
        for tmp, (_, flag, _) in zip(tmps, files):  # both files appear together, or neither
            if flag == "--save":
                np.save(tmp, D)
            else:
                _save_grid(D, tmp, threshold, labels, title)
    for path, _, _ in files:
        print("wrote %s" % path)
    return 0


def _save_grid(D, path, threshold, labels, title):
    """The PNG grid of ``decode --out``: the decoded filters, labelled by their index."""
    from . import plotting
    plotting.save_filter_grid(D, path, threshold=threshold,
                              labels=labels if len(labels) <= 200 else None, title=title)


# --- runs ---------------------------------------------------------------------------------------

def _run(*, model, data, out, methods, figures, n_threads, limit, start, bias, progress,
         mean=None, std=None, size=None, scheduler=None, workers=None):
    """Load the model and data, evaluate, write the figures (all or nothing), print a summary."""
    from ._dask import Scheduler
    cluster = Scheduler(scheduler, workers)  # checks its arguments; connects on entry
    t0 = time.time()
    methods = (methods,) if isinstance(methods, str) else tuple(methods)
    size = parse_size(size)
    mean, std = parse_numbers("--mean", mean), parse_numbers("--std", std)
    if out is not None:
        check_output_dir(out)
    net = load_model(model, size=size)
    with cluster:
        ds = load_data(data, start=start, limit=limit,
                       chunks=MAX_CHUNK if cluster.active else None)
        if cluster.active:
            ds = lazy_chunks(ds, cluster)
        _evaluate_and_write(net, model, ds, out, methods, figures, n_threads, bias, progress,
                            mean, std)
    _say("done in %.1f s" % (time.time() - t0))
    return 0


#: Images per chunk of a pass on a Dask cluster: four chunks per worker thread, at most this
#: many images each.
MAX_CHUNK = 4096


def lazy_chunks(ds, cluster):
    """The lazy images of ``ds`` rechunked for the cluster (four chunks per worker thread, at
    most MAX_CHUNK images each), said on stdout."""
    n = len(ds.images)
    ds = ds._replace(images=ds.images.rechunk(
        {0: min(MAX_CHUNK, max(1, -(-n // (4 * cluster.threads()))))}))
    _say("dask: %s, %d chunks of up to %d images"
         % (cluster.describe(), ds.images.numblocks[0], ds.images.chunks[0][0]))
    return ds


def _evaluate_and_write(net, model, ds, out, methods, figures, n_threads, bias, progress, mean,
                        std):
    with OutputDirectory(out) as outputs:
        x, has_mean = prepare(net, ds, mean=mean, std=std)
        _say("\n".join(header_lines(net, model, ds, len(x), has_mean)))
        e = evaluate(net, model, ds, methods=methods, bias=bias, n_threads=n_threads,
                     progress=progress, prepared=(x, has_mean))
        print_evaluation(e)
        write_results(e, outputs)
        save_evaluation_figures(e, outputs)
        if figures:
            save_layer_figures(net, model, ds, method=methods[0], n_threads=n_threads,
                               outputs=outputs)
    if outputs.written:
        _say()
        _say("wrote %s" % ", ".join(outputs.written))


def run_demo(*, model="lenet-fashion", data=None, out="fastdecode-demo", n_threads=None,
             limit=None, start=0, bias=False, progress=True):
    """``fastdecode demo``: evaluate, print the results, write them and every figure.

    Parameters
    ----------
    model : str, optional
        A shipped model's name or a MatConvNet file.
    data : str, optional
        A directory of IDX test files (default: the shipped Fashion-MNIST sample).
    out : str, optional
        The output directory, filled all or nothing.
    n_threads : int, optional
        Threads (default: all cores).
    limit, start : int, optional
        Use at most ``limit`` images from the ``start``-th (0-based) on.
    bias : bool, optional
        Add the decoded biases to the decoded filters' correlations.
    progress : bool, optional
        Show progress bars on stderr.

    Returns
    -------
    int
        0; errors are raised, for the command line to report.
    """
    return _run(model=model, data=data, out=out, methods=METHODS, figures=True,
                n_threads=n_threads, limit=limit, start=start, bias=bias, progress=progress)


def run_evaluate(*, model, data, out=None, unpool=METHODS, n_threads=None, limit=None, start=0,
                 bias=False, progress=True, mean=None, std=None, size=None, scheduler=None,
                 workers=None):
    """``fastdecode evaluate``: Table 1, Figure 1 and self-consistency on a data set.

    Parameters
    ----------
    model : str
        A shipped model's name or a MatConvNet or ONNX file.
    data : str or None
        A directory of IDX test files (None: the shipped Fashion-MNIST sample).
    out : str, optional
        The output directory for the results and figures, filled all or nothing (default:
        none, the results are only printed).
    unpool : str or sequence of str, optional
        Unpooling methods of Table 1; the first one is used for the rest.
    n_threads : int, optional
        Threads (default: all cores).
    limit, start : int, optional
        Use at most ``limit`` images from the ``start``-th (0-based) on.
    bias : bool, optional
        Add the decoded biases to the decoded filters' correlations.
    progress : bool, optional
        Show progress bars on stderr.
    mean, std : str, optional
        The ``--mean`` and ``--std`` texts ("a,b,c", one value or one per channel): images are
        scaled to [0, 1], then ``(x - mean) / std``; default the model's own normalisation.
    size : str, optional
        The ``--size`` text "H,W", for ONNX files that leave the input size open.
    scheduler : str, optional
        The address of a running Dask scheduler (``--scheduler``) to run the passes over the
        images on; the images are then read chunk by chunk.
    workers : int, optional
        Start a local Dask cluster of this many worker processes on 127.0.0.1 (``--workers``)
        for the passes, closed at the end.
    n_threads : int, optional
        With ``scheduler`` or ``workers``: threads of each task (default 1).

    Returns
    -------
    int
        0; errors are raised, for the command line to report.
    """
    return _run(model=model, data=data, out=out, methods=unpool, figures=False,
                n_threads=n_threads, limit=limit, start=start, bias=bias, progress=progress,
                mean=mean, std=std, size=size, scheduler=scheduler, workers=workers)

