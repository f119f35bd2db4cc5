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
    for w in caught:
        print("fastdecode: warning: %s" % " ".join(str(w.message).split()), file=sys.stderr)


def run_report(**kwargs):
    """Load the model and the images, check everything, then write the atlas; returns 0.

    Keyword arguments as :func:`_run`. The command line stops it on SIGTERM as on Ctrl-C
    (:func:`fastdecode.cli.main`), and the staging folder is removed either way."""
    return _run(**kwargs)


def _run(*, model, out, data=None, images=None, limit=None, layers=None, unpool="nearest",
         mean=None, std=None, size=None, top_k=9, title=None, n_threads=None, progress=True):
    from .._app import load_data, load_model, parse_numbers, parse_size
    from .. import _io
    from . import MARKER, report
    from ._inputs import load_photos, normalisation

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
    kwargs = {}
    if images is not None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                photos = load_photos(images, net, size=size, mean=mean, std=std, limit=limit)
            finally:
                _say_warnings(caught)
        x = photos.images
        kwargs.update(display_images=photos.display, image_names=photos.names)
        source = "%d photos from %s" % (len(x), images)
    elif data is not None:
        ds = load_data(data, limit=limit)
        if net.input_channels not in (1, 3):
            raise ValueError("the network takes %d-channel images; IDX files hold grey ones"
                             % net.input_channels)
        raw = ds.images[:, None]                  # (N, 1, H, W) grey
        if net.input_channels == 3:               # grey to RGB
            raw = np.repeat(raw, 3, axis=1)
        if mean is not None or std is not None:
            m, s = normalisation(net, raw.shape[2:], mean, std)
            x = ((raw.astype(np.float64) / 255.0 - m[None]) / s[None]).astype(net.dtype)
        else:
            from .. import models
            try:
                x = models.preprocess(net, raw)
            except KeyError:  # no mean image: raw pixels, as the evaluate command does
                x = raw.astype(net.dtype)
        kwargs.update(display_images=raw)
        if ds.labels is not None:
            kwargs.update(labels=ds.labels)
        source = "%d images from %s" % (len(x), data)
    else:
        x = None
        source = "no images"
    kwargs.update(class_names=_class_names(net))
    name = os.path.basename(os.fspath(model))
    path = report(net, out, images=x, layers=layer_list, unpool=unpool, top_k=top_k,
                  title=title or "%s atlas" % name, n_threads=n_threads, progress=progress,
                  **kwargs)
    print("wrote %s (%s, %s unpooling) in %.1f s" % (os.path.join(path, "index.html"), source,
                                                      unpool, time.time() - t0))
    return 0
