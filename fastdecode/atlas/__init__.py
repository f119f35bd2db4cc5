"""The atlas: every decoded filter of a network as a browsable, self-contained set of HTML pages.

``report(net, out)`` writes ``out/index.html`` (the model, its layers and, with images, Table 1)
and a page per decoded conv layer with a tile for every filter (decoded and thresholded); a click
on a tile shows the filter large, its Eq. 3 error and its top images by the network's response
and by the decoded filter's correlation (Figure 4c/d of Rafegas & Vanrell for every filter).
The pages open from ``file://`` with no server and no network.
"""

import datetime
import os
import shutil
import sys
from importlib import resources

import numpy as np

import fastdecode as fd

from .. import _io
from ..ops import unpool_method
from .._validation import resolve_threads
from .. import _streaming as _stream
from . import _analysis, _images, _lazy, _pages, _twin
from ._inputs import ImageReadError, Photos, load_photos, normalisation

__all__ = ["report", "load_photos", "Photos", "ImageReadError", "normalisation", "MARKER"]

#: File written into every atlas; an existing folder holding it is an earlier atlas and may
#: be replaced.
MARKER = ".fastdecode-atlas"

#: Largest side in pixels of a filter's cell in the sheets (larger filters are shrunk), and of a
#: top image or patch.
FILTER_CELL = 128
TOP_CELL = 96
#: Largest side of a filter's cell in the sheets the tiles show (larger filters also get a sheet
#: of FILTER_CELL cells, loaded only when the detail view shows one of them).
TILE_CELL = 72



def _shown(net, i):
    """Whether layer i can have a page: a conv layer, or the output of a block of a graph (an
    add or a concatenation)."""
    layer = net.layers[i]
    return layer.name in net.conv_layers or (not net.is_chain and layer.type in ("add", "concat"))


def _layer_names(net, layers):
    """Names of the layers to show, bottom to top, from names (or aliases) or indices: conv
    layers, and on graphs block outputs (add and concat layers); ValueError for anything else,
    naming the conv layers."""
    convs = net.conv_layers
    if not convs:
        raise ValueError("the network has no conv layers to decode")
    if layers is None:
        return list(convs)
    if isinstance(layers, (str, int, np.integer)):
        layers = [layers]
    idx = []
    for layer in layers:
        try:
            i = net.index(layer)
        except (KeyError, IndexError, TypeError):
            raise ValueError("unknown layer %r; the conv layers are %s"
                             % (layer, ", ".join(convs))) from None
        if not _shown(net, i):
            raise ValueError("layer %r is a %s layer, not a conv layer%s; the conv layers are %s"
                             % (net.layers[i].name, net.layers[i].type,
                                "" if net.is_chain else " or a block's output (add, concat)",
                                ", ".join(convs)))
        idx.append(i)
    if not idx:
        raise ValueError("layers is empty: name at least one conv layer (%s)" % ", ".join(convs))
    return [net.layers[i].name for i in sorted(set(idx))]


def _check_lazy_images(net, images, display, limit, top_layer):
    """A dask array of images cut to ``limit`` and checked from its metadata (each chunk's
    values when it is read), and its display pictures: a lazy uint8 array, pictures in memory
    or None."""
    from .. import _dask
    x = images
    if x.ndim == 3 and net.input_channels == 1:
        x = x[:, None]
    if limit is not None:
        x = x[:int(limit)]
    x = _dask.check_images(net, x, top_layer)
    N = int(x.shape[0])
    if display is None:
        return x, None
    if _dask.is_dask_array(display):
        display = display[:int(limit)] if limit is not None else display
        _lazy.display_shape(display, N, x.shape[2:])
        return x, display
    shown = _images.to_uint8_images(display)
    shown = shown[:int(limit)] if limit is not None else shown
    if len(shown) != N or shown.shape[1:3] != tuple(x.shape[2:]):
        raise ValueError("display images %s do not match the images %s (N, H, W)"
                         % (shown.shape, tuple(x.shape)))
    return x, shown


def _check_images(net, images, display, labels, image_names, limit, top_layer):
    """The images, display pictures, labels and names cut to ``limit`` and checked; a dask
    array of images stays lazy (its pictures too, or None: made for the top images alone)."""
    from .._dask import is_dask_array
    limit = None if limit is None else int(limit)
    if is_dask_array(images):
        x, shown = _check_lazy_images(net, images, display, limit, top_layer)
        return (x, shown) + _check_annotations(labels, image_names, limit, int(x.shape[0]))
    if is_dask_array(display):
        raise TypeError("display_images is a dask array but images is not: give both lazy, "
                        "or the display images in memory")
    x = np.asarray(images)
    if x.dtype == object or x.dtype.kind not in "biuf":
        raise TypeError("images must be a real numeric array (N, C, H, W), got dtype %s"
                        % x.dtype)
    if x.ndim == 3 and net.input_channels == 1:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError("images must be (N, C, H, W) as the network takes them, got shape %s"
                         % (x.shape,))
    if x.shape[0] == 0:
        raise ValueError("images is empty: shape %s" % (x.shape,))
    if x.shape[1] != net.input_channels:
        raise ValueError("images have %d channels but the network takes %d: convert them (for "
                         "photos, load_photos does it)" % (x.shape[1], net.input_channels))
    if limit is not None:
        x = x[:limit]
    x = np.ascontiguousarray(x, dtype=net.dtype)
    if not np.isfinite(x).all():
        raise ValueError("images contain non-finite values (NaN or inf)")
    net.check_input((1,) + x.shape[1:], upto=top_layer, name="images")
    N = len(x)
    if display is None:
        shown = _images.rescaled_for_display(x)
    else:
        shown = _images.to_uint8_images(display)
        if limit is not None:
            shown = shown[:limit]
        if len(shown) != N or shown.shape[1:3] != x.shape[2:]:
            raise ValueError("display images %s do not match the images %s (N, H, W)"
                             % (shown.shape, x.shape))
    return (x, shown) + _check_annotations(labels, image_names, limit, N)


def _check_annotations(labels, image_names, limit, N):
    """(labels, image_names) cut to ``limit`` and checked to have one entry per image."""
    if labels is not None:
        labels = list(labels)[:N] if limit is not None else list(labels)
        if len(labels) != N:
            raise ValueError("labels has %d entries for %d images" % (len(labels), N))
    if image_names is not None:
        image_names = [str(n) for n in image_names]
        image_names = image_names[:N] if limit is not None else image_names
        if len(image_names) != N:
            raise ValueError("image_names has %d entries for %d images"
                             % (len(image_names), N))
    return labels, image_names


def _label_text(label, class_names):
    if class_names is not None:
        try:
            return str(class_names[int(label)])
        except (ValueError, TypeError, IndexError):
            pass
    if isinstance(label, (np.integer, np.floating)):
        label = label.item()
    return str(label)


def _geometry_text(pair):
    return "%dx%d" % tuple(pair)


def _net_rows(net):
    rows = []
    for i, layer in enumerate(net.layers):
        conv = _shown(net, i)
        rows.append({"index": i, "name": layer.name, "describe": layer.describe(),
                     "inputs": "" if net.is_chain else ", ".join(
                         "input" if n is None else str(n) for n in net.inputs(i)),
                     "channels": net.channels(i), "stride": _geometry_text(net.stride(i)),
                     "padding": ",".join(map(str, net.padding(i))),
                     "receptive": _geometry_text(net.receptive_field(i)),
                     "decoded": ("%d x %s" % (net.channels(i), "x".join(
                         map(str, net.decoded_shape(i))))) if conv else ""})
    return rows


def report(net, out, *, images=None, labels=None, layers=None, unpool="nearest", top_k=9,
           threshold=0.5, limit=None, display_images=None, image_names=None, class_names=None,
           title=None, n_threads=None, progress=True):
    """Write the atlas of ``net``'s decoded filters into the folder ``out``.

    A page per conv layer with a tile for every decoded filter (and its thresholded version),
    and, when images are given, each filter's Eq. 3 error, the layer's Table 1 row and each
    filter's top images by the network's response and by the decoded filter's correlation.
    The folder opens from disk (``file://``) with no server and no network.

    Parameters
    ----------
    net : Network
        The network.
    out : str or os.PathLike
        A new or empty folder, or an earlier atlas (recognised by its marker file, replaced);
        anything else is refused. The folder appears complete or not at all: the pages are
        written into a staging folder beside it and renamed into place at the end.
    images : array_like or dask.array.Array, optional
        (N, C, H, W) images preprocessed as the network expects (e.g.
        :func:`fastdecode.models.preprocess`, or :func:`load_photos`). A dask array chunked
        over images is passed one task per chunk on the active Dask scheduler and gives the
        atlas of the images in memory (see :doc:`/atlas`); its pictures are read for the top
        images alone.
    labels : array_like, optional
        (N,) label per image, shown under the top images (``class_names[label]`` when class
        names are given).
    layers : sequence of str or int, optional
        Conv layer names or indices; on graph networks also block outputs (add and concat
        layers) by name, alias or index (default: every conv layer).
    unpool : str, optional
        One of :data:`fastdecode.UNPOOL_METHODS` (default "nearest").
    top_k : int, optional
        Top images per filter.
    threshold : float, optional
        Fraction of each filter's largest magnitude kept in the thresholded filters.
    limit : int, optional
        Use at most the first ``limit`` images.
    display_images : array_like, optional
        The pictures shown for the images, uint8 (N, H, W[, 3]) or floats in 0..255 or 0..1
        (default: each image stretched by its own minimum and maximum); with a dask array of
        images, also a uint8 dask array.
    image_names : sequence of str, optional
        (N,) names of the images (e.g. file names).
    class_names : sequence of str, optional
        Names of the classes, also written on the tiles of the top conv layer when it has one
        filter per class.
    title : str, optional
        Title of the pages (default "fastdecode atlas").
    n_threads : int, optional
        Threads (default: all cores).
    progress : bool, optional
        Show a progress bar on stderr.

    Returns
    -------
    str
        The absolute path of the atlas folder.

    Raises
    ------
    ValueError, TypeError
        For bad arguments, before any work starts (no folder is left behind).
    FileExistsError
        When ``out`` exists and is neither empty nor an earlier atlas.

    Examples
    --------
    >>> import os, tempfile
    >>> import fastdecode as fd
    >>> from fastdecode import datasets, models
    >>> net = models.load("lenet-mnist")
    >>> x = models.preprocess(net, datasets.fashion_sample().images[:50])
    >>> out = fd.report(net, os.path.join(tempfile.mkdtemp(), "atlas"), images=x,
    ...                 layers=["layer3"], progress=False)
    >>> sorted(n for n in os.listdir(out) if n.endswith(".html"))[:1]
    ['index.html']
    """
    t0 = datetime.datetime.now(datetime.timezone.utc)
    if not isinstance(net, fd.Network):
        raise TypeError("net must be a fastdecode Network, got %s" % type(net).__name__)
    unpool = unpool_method(unpool).name
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ValueError("top_k must be a whole number, at least 1, got %r" % (top_k,))
    threshold = float(threshold)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError("threshold must be a fraction in [0, 1], got %g" % threshold)
    if limit is not None and (isinstance(limit, bool) or int(limit) != limit or limit < 1):
        raise ValueError("limit must be a whole number of images, at least 1, got %r"
                         % (limit,))
    if class_names is not None:
        if isinstance(class_names, str):
            raise TypeError("class_names must be a sequence of names, not one string")
        class_names = [str(c) for c in class_names]
    names = _layer_names(net, layers)
    if images is not None:
        x, shown, labels, image_names = _check_images(
            net, images, display_images, labels, image_names, limit, names[-1])
    elif limit is not None or labels is not None or display_images is not None:
        raise ValueError("limit, labels and display_images need images")
    else:
        x = shown = None
    from .._dask import is_dask_array
    lazy = is_dask_array(x)
    _io.check_replaceable_dir(out, MARKER, "atlas")
    title = str(title) if title else "fastdecode atlas"

    from tqdm.auto import tqdm
    threads = resolve_threads(n_threads)
    indices = [net.index(n) for n in names]
    n_filters = sum(net.channels(i) for i in indices)
    bar = tqdm(total=n_filters + (0 if x is None else len(x)), desc="atlas", unit="item",
               file=sys.stderr, disable=not progress)
    try:
        with _io.staged_directory(out, MARKER, {"generator": "fastdecode atlas",
                                                "version": fd.__version__,
                                                "layers": names}, "atlas") as stage:
            img_dir = os.path.join(stage, "img")
            os.makedirs(img_dir)
            os.makedirs(os.path.join(stage, "assets"))
            stats, direct, kept = {}, {}, {}
            if x is not None:
                tw = _twin.plan(net, indices, unpool, tuple(int(v) for v in x.shape[1:]))
                near = [] if tw is None else sorted(tw.grids)
                direct = {i: None for i in indices if i not in near}
                if lazy:   # the pass runs after decoding, the direct layers' filters kept
                    _lazy.check_direct(net, list(direct))
                    kept = {i: np.empty((net.channels(i),) + net.decoded_shape(i), net.dtype)
                            for i in direct}
                    direct = {}
                elif near:
                    bar.set_postfix_str("images")
                    stats = _analysis.twin_pass(net, near, x, unpool, threads, tw, bar)
                else:
                    bar.update(len(x))
            info = {}
            building = {}

            def on_chunk(i, start, filters):
                K = net.channels(i)
                if start == 0:
                    bar.set_postfix_str(net.layers[i].name)
                    cell = _images.cell_size(filters.shape[2:], FILTER_CELL)
                    small = _images.cell_size(filters.shape[2:], TILE_CELL)
                    building[i] = {"cell": cell, "small": small, "dec": [], "thr": [],
                                   "sdec": [], "sthr": [], "shape": filters.shape[1:]}
                    if i in direct:
                        direct[i] = _analysis.DirectLayer(net, i, x)
                b = building[i]
                # fd.threshold_filters without its checks and copies: these are decoded
                mag = np.abs(filters)
                peak = mag.reshape(len(mag), -1).max(axis=1)[:, None, None, None]
                thresholded = np.multiply(filters, mag >= threshold * peak, out=mag)
                for cell, kd, kt in ((b["cell"], "dec", "thr"), (b["small"], "sdec", "sthr")):
                    if kd == "sdec" and b["small"] == b["cell"]:
                        break
                    dec, peaks = _images.filter_cells(filters, cell)
                    thr, _ = _images.filter_cells(thresholded, cell, peaks if filters.shape[1]
                                                  in (1, 3) else None)
                    b[kd].extend(dec)
                    b[kt].extend(thr)
                if i in direct:
                    direct[i].add_filters(start, filters, threads)
                if i in kept:
                    kept[i][start:start + len(filters)] = filters
                bar.update(len(filters))
                if start + len(filters) == K:
                    specs = []
                    for stem, cell, cells in (("filters", b["cell"], b["dec"] + b["thr"]),
                                              ("tiles", b["small"], b["sdec"] + b["sthr"])):
                        if cells:  # shrunk colour filters in JPEG, exact ones in PNG
                            jpeg = b["shape"][0] == 3 and cell != b["shape"][1:]
                            sheets = _images.Sheets("L%02d-%s" % (i, stem), cell, jpeg=jpeg)
                            for c in cells:
                                sheets.add(c)
                            sheets.write(img_dir)
                            specs.append(sheets.spec("img/"))
                    info[i] = {"large": specs[0], "tiles": specs[-1], "icon": b["dec"][0]}
                    del building[i]
                    if i in direct:
                        stats[i] = direct.pop(i).stats(threads)

            _stream.stream(net, indices, unpool, threads, on_chunk, spill_dir=stage)
            if lazy:
                bar.set_postfix_str("images on dask")
                done = _lazy.atlas_pass(net, indices, x, unpool, tw if near else None, kept,
                                        int(top_k), n_threads)
                bar.update(len(x))
                if not isinstance(shown, np.ndarray):
                    used = set()
                    for r in done.values():
                        used.update(r.tops.network.ravel().tolist())
                        used.update(r.tops.decoded.ravel().tolist())
                    shown = _lazy.pictures(x, shown, used)
            results = []
            for i in indices:
                if x is None:
                    res = None
                else:
                    res = done[i] if lazy else stats.pop(i).result(int(top_k))
                results.append({"name": net.layers[i].name, "index": i, "K": net.channels(i),
                                "shape": net.decoded_shape(i), "tiles": info[i]["tiles"],
                                "large": info[i]["large"],
                                "res": res})
            bar.set_postfix_str("pages")
            ctx = _context(net, results, x, shown, labels, image_names, class_names,
                           title=title, unpool=unpool, threshold=threshold, t0=t0)
            for lay, r in zip(ctx["layers"], results):
                _write_layer(stage, ctx, lay, r, x, shown, labels, image_names, class_names)
            if ctx.get("image_sheet") is not None:
                ctx["image_sheet"].write(img_dir)
            _write(os.path.join(stage, "index.html"), _pages.index_page(ctx))
            _copy_assets(stage, info[indices[-1]]["icon"])
    finally:
        bar.close()
    return os.path.abspath(out)


def _context(net, results, x, shown, labels, image_names, class_names, *, title, unpool,
             threshold, t0):
    n = 0 if x is None else len(x)
    def one(r):
        return "%s (%d filters, %s)" % (r["name"], r["K"], _geometry_text(r["shape"][1:]))

    if len(results) <= 8:
        convs = ", ".join(one(r) for r in results)
    else:   # a deep network: its span, not every layer (the table below lists them)
        convs = "%d filters in all, from %s to %s" % (sum(r["K"] for r in results),
                                                      one(results[0]), one(results[-1]))
    lead = ("%d decoded layer%s: %s. Input: %d channel%s%s; %s unpooling." % (
        len(results), "" if len(results) == 1 else "s", _pages.esc(convs), net.input_channels,
        "" if net.input_channels == 1 else "s",
        (", %dx%d pixels" % x.shape[2:]) if x is not None else "", _pages.esc(unpool)))
    if n:
        lead += " Eq. 3 errors and top images over %d image%s." % (n, "" if n == 1 else "s")
    else:
        lead += " No images were given: the pages show the decoded filters only."
    ctx = {"title": title, "version": fd.__version__, "unpool": unpool, "threshold": threshold,
           "n_images": n, "lead": lead, "summary": net.summary(),
           "net_rows": _net_rows(net), "layers": [],
           "made": "Written %s." % t0.strftime("%Y-%m-%d %H:%M UTC"),
           "table1_note": ("Eq. 3 of the paper: for each image the network's responses R and "
                           "the decoded filters' correlations D at the layer are rescaled to "
                           "[0, 1] and their mean squared difference taken; mean &plusmn; std "
                           "over %d images, %s unpooling." % (n, _pages.esc(unpool))),
           "image_sheet": None}
    whole = [r["res"] for r in results if r["res"] is not None and r["res"].network_pos is None]
    if whole:  # one sheet of the images that are some filter's top image, shared by the pages
        used = np.unique(np.concatenate([np.concatenate([r.tops.network.ravel(),
                                                         r.tops.decoded.ravel()])
                                         for r in whole]))
        sheet = _images.Sheets("images", _images.cell_size(shown.shape[1:3], TOP_CELL),
                               jpeg=shown.ndim == 4)
        ctx["image_cells"] = {int(i): sheet.add(shown[i]) for i in used}
        ctx["image_sheet"] = sheet
    first = net.conv_layers[0]
    for r in results:
        K, shape, res = r["K"], r["shape"], r["res"]
        stem = "L%02d" % r["index"]
        spec = r["tiles"]
        layer = net[r["name"]]
        rf = net.receptive_field(r["name"])
        lay = {"name": r["name"], "index": r["index"], "K": K,
               "page": _pages.page_name(r["index"], r["name"]),
               "describe": layer.describe(), "tiles": spec, "large": r["large"],
               "tile_scale": _pages.scale_for(spec["cell"], _pages.TILE_PX),
               "preview_scale": _pages.scale_for(spec["cell"], 40), "n_preview": 24,
               "large_scale": _pages.scale_for(r["large"]["cell"], _pages.LARGE_PX),
               "shape_text": "decoded %s, receptive field %s" % (
                   "x".join(map(str, shape)), _geometry_text(rf)),
               "facts": " &middot; ".join([
                   "%d filters" % K, "receptive field %s pixels" % _geometry_text(rf),
                   "cumulative stride %s" % _geometry_text(net.stride(r["name"])),
                   "padding %s (top, bottom, left, right)" % ",".join(
                       map(str, net.padding(r["name"]))),
                   "decoded filters %s" % "x".join(map(str, shape))])}
        if r["name"] == first:
            w = layer.weights
            wsheet = _images.Sheets(stem + "-weights", _images.cell_size(w.shape[2:],
                                                                         FILTER_CELL))
            for f in range(K):
                wsheet.add(_images.filter_pixels(w[f]))
            lay["weights_sheets"] = wsheet
            lay["weights"] = wsheet.spec("img/")
            lay["weights_scale"] = _pages.scale_for(lay["weights"]["cell"], _pages.LARGE_PX)
        if (class_names is not None and r["name"] == net.conv_layers[-1]
                and len(class_names) == K):  # the top layer's units are the classes
            lay["classes"] = [str(c) for c in class_names]
        if res is not None:
            pf = res.error.per_filter
            lay["errors"] = [float(e) for e in pf]
            lay["table1"] = {"mean": res.error.mean, "std": res.error.std,
                             "best": int(np.argmin(pf)), "best_error": float(pf.min()),
                             "worst": int(np.argmax(pf)), "worst_error": float(pf.max())}
        ctx["layers"].append(lay)
    return ctx


def _write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _write_layer(stage, ctx, lay, r, x, shown, labels, image_names, class_names):
    img_dir = os.path.join(stage, "img")
    res = r["res"]
    if "weights_sheets" in lay:
        lay.pop("weights_sheets").write(img_dir)
    data = {"layer": lay["name"], "K": lay["K"], "threshold": ctx["threshold"],
            "tiles": lay["large"], "large_scale": lay["large_scale"],
            "weights": lay.get("weights"), "weights_scale": lay.get("weights_scale"),
            "errors": lay.get("errors"), "n_images": ctx["n_images"],
            "classes": lay.get("classes"),
            "unpool": ctx["unpool"], "rf": list(r["shape"][1:]), "filters": None,
            "tops": None, "patches": False, "images": {}}
    if res is not None:
        tops = res.tops
        k = tops.network.shape[1]
        patches = res.network_pos is not None
        if patches:
            sheet = _images.Sheets("L%02d-patches" % res.index,
                                   _images.cell_size(r["shape"][1:], TOP_CELL),
                                   jpeg=shown.ndim == 4)
            cells = {}
        else:
            sheet = ctx["image_sheet"]
            data["tops"] = sheet.spec("img/")
        h, w = r["shape"][1:]
        filters = []
        used = set()
        for f in range(lay["K"]):
            entry = {"o": float(tops.overlap[f])}
            for key, top, S, pos in (("n", tops.network, res.network_scores, res.network_pos),
                                     ("d", tops.decoded, res.decoded_scores, res.decoded_pos)):
                items = []
                for r in range(k):
                    i = int(top[f, r])
                    used.add(i)
                    item = [i, float(S[f, r])]
                    if patches:
                        y0, x0 = (int(v) for v in pos[f, r])
                        key3 = (i, y0, x0)
                        if key3 not in cells:
                            cells[key3] = sheet.add(_images.crop(shown[i], y0, x0, h, w))
                        item += [cells[key3], y0, x0]
                    else:
                        item.append(ctx["image_cells"][i])
                    items.append(item)
                entry[key] = items
            filters.append(entry)
        if patches:
            sheet.write(img_dir)
            data["tops"] = sheet.spec("img/")
        data["filters"] = filters
        data["patches"] = patches
        data["k"] = k
        data["scores"] = {"network": "max response of the unit over positions",
                          "decoded": "max correlation of the decoded filter over positions"}
        for i in sorted(used):
            info = {}
            if labels is not None:
                info["label"] = _label_text(labels[i], class_names)
            if image_names is not None:
                info["name"] = image_names[i]
            data["images"][str(i)] = info
        lay["tops"] = data["tops"]
        lay["top_scale"] = _pages.scale_for(data["tops"]["cell"], _pages.TOP_PX)
        data["top_scale"] = lay["top_scale"]
    lay["data"] = data
    _write(os.path.join(stage, lay["page"]), _pages.layer_page(ctx, lay))


def _copy_assets(stage, icon):
    """The stylesheet and script, and a favicon from ``icon`` (a tile's pixels)."""
    assets = os.path.join(stage, "assets")
    root = resources.files(__name__) / "static"
    for name in ("atlas.css", "atlas.js"):
        with resources.as_file(root / name) as src:
            shutil.copyfile(src, os.path.join(assets, name))
    from PIL import Image
    Image.fromarray(icon).resize((16, 16), Image.Resampling.BILINEAR).save(
        os.path.join(assets, "icon.png"), format="PNG")
