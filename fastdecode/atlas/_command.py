"""``fastdecode report``: the atlas from the command line."""

import os
import sys
import time
import warnings

import numpy as np


def _layers(specs):
    """--layers values, each a name or index, comma-separated or not."""
    if not specs:
        return None
    out = []
    for spec in specs:
        for part in spec.split(","):
            part = part.strip()
            if part:
                out.append(int(part) if part.lstrip("-").isdigit() else part)
    if not out:
        raise ValueError("--layers names no layer")
    return out


def _class_names(net):
    classes = net.meta.get("classes") if isinstance(net.meta, dict) else None
    if not isinstance(classes, dict):
        return None
    names = classes.get("description", classes.get("name"))
    if names is None:
        return None
    try:
        return [str(n) for n in np.ravel(np.asarray(names, dtype=object))]
    except Exception:
        return None


def _say_warnings(caught):
    """Each warning once (a pass's count of missing images comes once per layer)."""
    for text in dict.fromkeys(" ".join(str(w.message).split()) for w in caught):
        print("fastdecode: warning: %s" % text, file=sys.stderr)


def run_report(**kwargs):
    """Load the model and the images, check everything, then write the atlas; returns 0.

    Keyword arguments as :func:`_run`. The command line stops it on SIGTERM as on Ctrl-C
    (:func:`fastdecode.cli.main`), and the staging folder is removed either way."""
    return _run(**kwargs)


def _network_input(raw, net, mean, std):
    """IDX images (n, 1, H, W) uint8 as the network's input: repeated into 3 channels for an
    RGB network, then normalised by ``mean``/``std``, else the model's own preprocessing, else
    the raw pixels (as the evaluate command does)."""
    from ._inputs import normalisation
    if net.input_channels == 3:               # grey to RGB
        raw = np.repeat(raw, 3, axis=1)
    if mean is not None or std is not None:
        m, s = normalisation(net, raw.shape[2:], mean, std)
        return ((raw.astype(np.float64) / 255.0 - m[None]) / s[None]).astype(net.dtype)
    from .. import models
    try:
        return models.preprocess(net, raw)
    except KeyError:  # no mean image: raw pixels
        return raw.astype(net.dtype)


def _network_input_chunk(raw, start, shared):
    net, mean, std = shared
    return _network_input(np.asarray(raw), net, mean, std)


def _run(*, model, out, data=None, images=None, limit=None, layers=None, unpool="nearest",
         mean=None, std=None, size=None, top_k=9, title=None, n_threads=None, progress=True,
         scheduler=None, workers=None, on_error="skip"):
    from .._dask import Scheduler
    cluster = Scheduler(scheduler, workers)  # checks its arguments; connects on entry
    if cluster.active and data is None and images is None:
        raise ValueError("--scheduler and --workers run the atlas's pass over images: give "
                         "--data or --images")
    if on_error not in ("skip", "stop"):
        raise ValueError("--on-error must be skip or stop, got %r" % (on_error,))
    return _run_in(cluster, model=model, out=out, data=data, images=images, limit=limit,
                   layers=layers, unpool=unpool, mean=mean, std=std, size=size, top_k=top_k,
                   title=title, n_threads=n_threads, progress=progress,
                   on_error="raise" if on_error == "stop" else "skip")


def _photo_chunk(folder, limit, cluster):
    """Photos per chunk on a cluster: four chunks per worker thread, at most MAX_CHUNK."""
    from .._app import MAX_CHUNK
    from ._inputs import photo_files
    n = len(photo_files(folder))
    n = n if limit is None else min(n, int(limit))
    return min(MAX_CHUNK, max(1, -(-n // (4 * cluster.threads()))))


def _run_in(cluster, *, model, out, data, images, limit, layers, unpool, mean, std, size,
            top_k, title, n_threads, progress, on_error):
    from .._app import MAX_CHUNK, lazy_chunks, load_data, load_model, parse_numbers, parse_size
    from .. import _io
    from . import MARKER, report
    from ._inputs import load_photos

    t0 = time.time()
    if limit is not None and limit < 1:
        raise ValueError("--limit must be at least 1, got %d" % limit)
    if top_k < 1:
        raise ValueError("--top-k must be at least 1, got %d" % top_k)
    mean = parse_numbers("--mean", mean)
    std = parse_numbers("--std", std)
    size = parse_size(size)
    if images is None and data is None and (mean or std or limit):
        raise ValueError("--mean, --std and --limit need images (--data or --images)")
    _io.check_replaceable_dir(out, MARKER, "atlas")
    net = load_model(model, size=size, size_needed=images is None)
    layer_list = _layers(layers)
    if layer_list is not None:  # unknown layers refused before any image is read
        from . import _layer_names
        _layer_names(net, layer_list)
    with cluster:  # a local cluster starts (or a scheduler is reached) once all is checked
        kwargs = {}
        if images is not None:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    if cluster.active:   # read chunk by chunk on the cluster
                        chunk = _photo_chunk(images, limit, cluster)
                        photos = load_photos(images, net, size=size, mean=mean, std=std,
                                             limit=limit, lazy=True, chunks=chunk,
                                             on_error=on_error)
                        print("dask: %s, %d chunks of up to %d photos"
                              % (cluster.describe(), photos.images.numblocks[0], chunk))
                    else:
                        photos = load_photos(images, net, size=size, mean=mean, std=std,
                                             limit=limit, on_error=on_error)
                finally:
                    _say_warnings(caught)
            x = photos.images
            kwargs.update(display_images=photos.display, image_names=photos.names)
            source = "%d photos from %s" % (len(x), images)
        elif data is not None:
            if net.input_channels not in (1, 3):
                raise ValueError("the network takes %d-channel images; IDX files hold grey ones"
                                 % net.input_channels)
            ds = load_data(data, limit=limit, chunks=MAX_CHUNK if cluster.active else None)
            if cluster.active:   # read, preprocessed and passed chunk by chunk on the cluster
                from .. import _dask
                ds = lazy_chunks(ds, cluster)
                raw = ds.images[:, None]
                one = _network_input(np.zeros((1,) + raw.shape[1:], np.uint8), net, mean, std)
                x = _dask.chunk_array(raw, _network_input_chunk, (net, mean, std), one.shape[1:],
                                      one.dtype)
                if net.input_channels == 3:
                    raw = _dask.require()[1].repeat(raw, 3, axis=1)
            else:
                raw = ds.images[:, None]                  # (N, 1, H, W) grey
                x = _network_input(raw, net, mean, std)
                if net.input_channels == 3:
                    raw = np.repeat(raw, 3, axis=1)
            kwargs.update(display_images=raw)
            if ds.labels is not None:
                kwargs.update(labels=ds.labels)
            source = "%d images from %s" % (len(x), data)
        else:
            x = None
            source = "no images"
        kwargs.update(class_names=_class_names(net))
        name = os.path.basename(os.fspath(model))
        with warnings.catch_warnings(record=True) as caught:   # unreadable photos, counted
            warnings.simplefilter("always")
            try:
                path = report(net, out, images=x, layers=layer_list, unpool=unpool,
                              top_k=top_k, title=title or "%s atlas" % name,
                              n_threads=n_threads, progress=progress, **kwargs)
            finally:
                _say_warnings(caught)
    print("wrote %s (%s, %s unpooling) in %.1f s" % (os.path.join(path, "index.html"), source,
                                                      unpool, time.time() - t0))
    return 0
