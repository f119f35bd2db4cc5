"""The paper end to end: models and data in, Table 1, Figure 1, self-consistency and figures out.

``run_demo`` and ``run_evaluate`` back the ``fastdecode demo`` and ``fastdecode evaluate``
commands; they print their results and return an exit status.
"""

import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections import namedtuple

import numpy as np

from . import evaluation as ev
from .decoding import decode
from ._validation import printable as _printable

__all__ = ["load_model", "load_data", "Dataset", "run_demo", "run_evaluate", "class_names"]

METHODS = ("nearest", "bilinear", "bicubic")

#: Filters shown per layer in the Figure 4 grids; layers with more show every n-th filter.
GRID_MAX_FILTERS = 50

#: Images per filter in the top-images figures (Figure 4c/d), and filters shown per layer.
TOP_K = 8
TOP_FILTERS = 10

Dataset = namedtuple("Dataset", ["images", "labels", "source", "first"])
Dataset.__doc__ = """Raw images uint8 (N, H, W), labels (N,) or None, a description of where they
came from and the 0-based index of the first image in that source."""


def load_model(spec):
    """A Network from a MatConvNet ``.mat`` path or a shipped model's name."""
    from . import models
    spec = os.fspath(spec)
    if os.path.isdir(spec):
        raise IsADirectoryError("the model %s is a directory, not a MatConvNet .mat file" % spec)
    if os.path.isfile(spec):
        from .matconvnet import load_matconvnet
        return load_matconvnet(spec)
    if os.path.exists(spec):  # a device or a pipe, which could block a reader
        raise ValueError("the model %s is not a regular file" % spec)
    if spec.endswith(".mat") or os.sep in spec:
        raise FileNotFoundError("model file not found: %s" % spec)
    if spec not in models.available():
        raise KeyError("no shipped model named %r and no such file; shipped models: %s"
                       % (spec, ", ".join(models.available())))
    return models.load(spec)


def load_data(data=None, *, start=0, limit=None):
    """Test images and labels from an IDX directory, or the shipped Fashion-MNIST sample.

    start, limit: keep images ``start`` .. ``start + limit - 1`` (0-based).
    """
    from . import datasets
    if data is None:
        ds = datasets.fashion_sample()
        source = "the shipped Fashion-MNIST sample (first 1,000 test images)"
    else:
        ds = datasets.load_directory(data, split="test")
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


def class_names(net, n, model_name=None):
    """Class names for the n outputs: the model's meta classes, else the known data set's."""
    from . import datasets
    classes = net.meta.get("classes") if isinstance(net.meta, dict) else None
    names = classes.get("description", classes.get("name")) if isinstance(classes, dict) \
        else classes
    if names is not None:
        try:
            names = [str(x) for x in np.ravel(np.asarray(names, dtype=object))]
        except Exception:
            names = None
    if names is not None and len(names) == n:
        return names
    if model_name == "lenet-fashion" and n == len(datasets.FASHION_CLASSES):
        return list(datasets.FASHION_CLASSES)
    return [str(i) for i in range(n)]


def _preprocess(net, images):
    """Images as the network expects them; a network without a mean image gets raw pixels."""
    from . import models
    try:
        return models.preprocess(net, images), True
    except KeyError:
        x = np.asarray(images, dtype=net.dtype)
        return (x[:, None] if x.ndim == 3 else x), False


def _say(text=""):
    print(text, flush=True)


def _ordinal(n):
    return "%d%s" % (n, "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(
        n % 10, "th"))


def _grid_selection(k, most=GRID_MAX_FILTERS):
    """Every n-th of k filters, n the smallest step that keeps at most ``most``."""
    step = -(-k // most)
    return np.arange(0, k, step)


class _Outputs:
    """The --out directory, all or nothing: files are written to a hidden staging directory
    inside it and moved into place together by :meth:`commit`; :meth:`discard` removes them and
    any directory made for them, so a run that fails leaves nothing behind."""

    def __init__(self, out):
        self.out = None if out is None else os.fspath(out)
        self.written = []   # final paths, in the order written
        self._stage = None
        self._made = []     # directories created for --out, deepest first

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if kind is None:
            try:
                self.commit()
            except BaseException:
                self.discard()
                raise
        else:
            self.discard()

    def path(self, name):
        """Where to write the file ``name`` (made a safe file name), or None without --out."""
        if self.out is None:
            return None
        if self._stage is None:
            if os.path.exists(self.out) and not os.path.isdir(self.out):
                raise NotADirectoryError("--out is not a directory: %s" % self.out)
            missing, d = [], os.path.abspath(self.out)
            while not os.path.exists(d):
                missing.append(d)
                d = os.path.dirname(d)
            os.makedirs(self.out, exist_ok=True)
            self._made = missing
            self._stage = tempfile.mkdtemp(prefix=".fastdecode-", dir=self.out)
        name = _safe_file_name(name)
        stem, ext = os.path.splitext(name)
        n = 1
        while os.path.join(self.out, name) in self.written:  # names that became the same
            n += 1
            name = "%s-%d%s" % (stem, n, ext)
        self.written.append(os.path.join(self.out, name))
        return os.path.join(self._stage, name)

    def text(self, name, text):
        path = self.path(name)
        if path is not None:
            with open(path, "w") as f:
                f.write(text)

    def commit(self):
        if self._stage is None:
            return
        for path in self.written:
            os.replace(os.path.join(self._stage, os.path.basename(path)), path)
        os.rmdir(self._stage)
        self._stage = None

    def discard(self):
        if self._stage is not None:
            shutil.rmtree(self._stage, ignore_errors=True)
            self._stage = None
        for d in self._made:
            with contextlib.suppress(OSError):
                os.rmdir(d)
        self.written = []


def _safe_file_name(name):
    """A file name from a layer's name: characters other than letters, digits, '.', '_' and '-'
    (slashes, control characters from real files) become '_'."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def _check_out(out):
    """Refuse an --out that cannot become a directory, before any work is done."""
    if out is None:
        return
    out = os.fspath(out)
    if not out:
        raise ValueError("--out must name a directory, got an empty string")
    if os.path.exists(out) and not os.path.isdir(out):
        raise NotADirectoryError("--out is not a directory: %s" % out)
    ancestor = os.path.dirname(os.path.abspath(out))  # created with --out when missing
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise NotADirectoryError("--out %s lies under a file: %s" % (out, ancestor))


def _evaluate(net, name, ds, *, methods, bias, n_threads, progress, outputs):
    """Table 1, Figure 1 (matrix and classifier), top images and self-consistency; figures."""
    from . import plotting
    x, has_mean = _preprocess(net, ds.images)
    top = ev.top_conv_layer(net)
    K = net[top].num_filters
    names = class_names(net, K, name)
    results = {"model": name, "data": ds.source, "images": int(len(x)),
               "first_image": int(ds.first) + 1, "bias": bool(bias)}
    lines = [
        "model %s: %s" % (name, ", ".join(
            "%s (%d filters, %dx%d)" % ((_printable(l), net[l].num_filters)
                                        + net.receptive_field(l)) for l in net.conv_layers)),
        "data: %d images from %s (images %d-%d)%s" % (
            len(x), ds.source, ds.first + 1, ds.first + len(x),
            "" if has_mean else "; the model has no mean image, raw pixels used")]
    _say("\n".join(lines))

    if len(net.conv_layers) > 1:
        t0 = time.time()
        table = ev.table1(net, x, methods=methods, bias=bias, n_threads=n_threads,
                          progress=progress)
        text = ev.format_table1(net, table, title=(
            "Table 1: Eq. 3 reconstruction error%s, mean +- std over %d images (%.1f s)"
            % (" (decoded bias included)" if bias else "", len(x), time.time() - t0)))
        lines.append(text)
        _say()
        _say(text)
        results["table1"] = {"%s/%s" % k: {"mean": r.mean, "std": r.std,
                                           "paper": ev.paper_reference(net, k[0])}
                             for k, r in table.items()}
    figure_method = methods[0]
    dec = {top: decode(net, top, unpool=figure_method, n_threads=n_threads)}
    scores = ev.filter_scores(net, x, top, unpool=figure_method, bias=bias, decoded=dec[top],
                              n_threads=n_threads, progress=progress)
    matrix = ev.max_activation_matrix(scores)
    _say()
    if ds.labels is not None and np.asarray(ds.labels).max() < K:
        acc = ev.classifier_accuracy(scores, np.asarray(ds.labels, dtype=np.int64))
        text = ("Figure 1, classifier: accuracy over %d images of the %d decoded filters of %s "
                "alone (%s unpooling%s) %.4f; the network's own %.4f"
                % (len(x), K, _printable(top), figure_method, ", plus decoded bias" if bias else "",
                   acc.decoded, acc.network))
        results["classifier"] = {"decoded": acc.decoded, "network": acc.network,
                                 "unpool": figure_method}
        accuracy = ("\naccuracy as a classifier: decoded filters alone %.3f, network %.3f"
                    % (acc.decoded, acc.network))
    else:
        text = "Figure 1, classifier: skipped (no labels, or labels beyond the %d filters)" % K
        accuracy = ""
    lines.append(text)
    _say(text)
    agree = float(np.mean(matrix.network_images == matrix.decoded_images))
    text = ("Figure 1, maximum activations: the network and the decoded filters pick the same "
            "top image for %d of %d filters" % (round(agree * K), K))
    lines.append(text)
    _say(text)
    k = min(TOP_K, len(x))
    tops = ev.top_images(scores, k)
    text = ("Top %d images per filter of %s (Fig. 4c/d): mean overlap of the network's and the "
            "decoded filter's lists %.3f (per filter: %s)"
            % (k, _printable(top), tops.overlap.mean(), " ".join("%.2f" % o for o in tops.overlap)))
    lines.append(text)
    _say(text)
    results["top_images"] = {top: {"k": k, "overlap": tops.overlap.tolist()}}
    mid = net.conv_layers[-2] if len(net.conv_layers) > 1 else None
    if mid is not None:  # the layer below the top one, as the paper's Figure 4c/d
        dec[mid] = decode(net, mid, unpool=figure_method, n_threads=n_threads)
        mid_tops = ev.top_images(ev.filter_scores(
            net, x, mid, unpool=figure_method, bias=bias, decoded=dec[mid], n_threads=n_threads,
            progress=progress), k)
        text = ("Top %d images per filter of %s: mean overlap over its %d filters %.3f"
                % (k, _printable(mid), len(mid_tops.overlap), mid_tops.overlap.mean()))
        lines.append(text)
        _say(text)
        results["top_images"][mid] = {"k": k, "overlap": mid_tops.overlap.tolist()}
    sc = ev.self_consistency(net, top, decoded=dec[top], n_threads=n_threads)
    text = ("Self-consistency (supp. section 6): %d of %d decoded filters of %s, fed as input, "
            "excite their own unit most (%.2f)" % (round(sc.fraction * K), K, _printable(top),
                                              sc.fraction))
    lines.append(text)
    _say(text)
    results["self_consistency"] = {"fraction": sc.fraction, "winners": sc.winners.tolist()}
    outputs.text("results.txt", "\n".join(lines[:2]) + "\n\n" + "\n\n".join(lines[2:]) + "\n")
    outputs.text("results.json", json.dumps(results, indent=2) + "\n")

    if outputs.out is not None:
        title = "%s, %s unpooling" % (name, figure_method)
        shown = ds.images  # raw pixels for display
        path = outputs.path("fig1_max_activations.png")
        plotting.save_activation_matrix(
            {"network responses": (matrix.network, shown[matrix.network_images]),
             "decoded-filter correlations": (matrix.decoded, shown[matrix.decoded_images])},
            dec[top], path, class_names=names,
            title="Figure 1: maximum activations of %s over %d images (%s)%s"
                  % (_printable(top), len(x), title, accuracy))
        path = outputs.path("fig4cd_top_images_%s.png" % top)
        plotting.save_top_images(shown, tops.network, tops.decoded, dec[top], path, labels=names,
                                 title="Top %d images per filter of %s (%s)"
                                       % (k, _printable(top), title))
        if mid is not None:
            sel = _grid_selection(len(mid_tops.overlap), TOP_FILTERS)
            path = outputs.path("fig4cd_top_images_%s.png" % mid)
            plotting.save_top_images(
                shown, mid_tops.network, mid_tops.decoded, dec[mid], path, filters=sel,
                title="Top %d images of %d of the %d filters of %s (%s)"
                      % (k, len(sel), len(mid_tops.overlap), _printable(mid), title))
        return results


def _figures_per_layer(net, name, ds, *, method, n_threads, outputs):
    """Figure 4 grids (raw and thresholded) for every conv layer, and Figure 3 for one image."""
    from . import plotting
    x, _ = _preprocess(net, ds.images[:1])
    layers = []
    for l in net.conv_layers:
        D = decode(net, l, unpool=method, n_threads=n_threads)
        sel = _grid_selection(D.shape[0])
        what = ("all %d filters" % D.shape[0] if len(sel) == D.shape[0]
                else "every %s filter of %d" % (_ordinal(sel[1] - sel[0]), D.shape[0]))
        path = outputs.path("fig4_%s.png" % l)
        plotting.save_filter_grid(
            D[sel], path, threshold=plotting.THRESHOLD, labels=sel,
            title="Figure 4: decoded filters of %s (%s, %dx%d)\n%s, %s unpooling"
                  % (_printable(l), what, D.shape[2], D.shape[3], name, method))
        R = net.forward(x, upto=l, n_threads=n_threads)[0]
        Dr = ev._decoded_response(net, x, l, D, None, n_threads)[0]
        layers.append((_printable(l), R, Dr))
    path = outputs.path("fig3_responses.png")
    plotting.save_response_figure(
        ds.images[0], layers, path,
        title="Figure 3: network responses R and decoded-filter correlations D, %s, image %d "
              "of %d (%s unpooling)" % (name, ds.first + 1, ds.first + len(ds.images), method))


def _finish(outputs, t0):
    if outputs.written:
        _say()
        _say("wrote %s" % ", ".join(outputs.written))
    _say("done in %.1f s" % (time.time() - t0))


def _run(*, model, data, out, methods, figures, n_threads, limit, start, bias, progress):
    """Load the model and data, evaluate, write the figures (all or nothing), print a summary."""
    t0 = time.time()
    methods = (methods,) if isinstance(methods, str) else tuple(dict.fromkeys(methods))
    _check_out(out)
    net = load_model(model)
    ds = load_data(data, start=start, limit=limit)
    with _Outputs(out) as outputs:
        _evaluate(net, model, ds, methods=methods, bias=bias, n_threads=n_threads,
                  progress=progress, outputs=outputs)
        if figures:
            _figures_per_layer(net, model, ds, method=methods[0], n_threads=n_threads,
                               outputs=outputs)
    _finish(outputs, t0)
    return 0


def run_demo(*, model="lenet-fashion", data=None, out="fastdecode-demo", n_threads=None,
             limit=None, start=0, bias=False, progress=True):
    """``fastdecode demo``: decode every conv layer, write the figures, print Table 1."""
    return _run(model=model, data=data, out=out, methods=METHODS, figures=True,
                n_threads=n_threads, limit=limit, start=start, bias=bias, progress=progress)


def run_evaluate(*, model, data, out=None, unpool=METHODS, n_threads=None, limit=None, start=0,
                 bias=False, progress=True):
    """``fastdecode evaluate``: Table 1, Figure 1 and self-consistency on a data set."""
    return _run(model=model, data=data, out=out, methods=unpool, figures=False,
                n_threads=n_threads, limit=limit, start=start, bias=bias, progress=progress)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_demo())
