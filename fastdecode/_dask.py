"""Dataset passes over a ``dask.array.Array`` of images: per-chunk partial results, merged.

A pass over a dask array runs one task per chunk of images (the chunk is processed by the same
in-memory code, in batches) on whatever scheduler is active: Dask's threaded scheduler by
default, a ``dask.distributed.Client`` when one is active. The tasks return mergeable partial
results, combined here in chunk order:

- Eq. 3: each chunk's per-image errors (concatenated, so that the mean and standard deviation
  are those of the in-memory pass) and float64 per-filter sums (added).
- Scores: a lazy (N, K) array per chunk of images; from it, each filter's top-k candidates per
  chunk (value and image index), merged in a tree by (value descending, image index ascending):
  ties go to the lower image index, as :func:`numpy.argsort` with ``kind="stable"`` in the
  in-memory pass. Figure 1's best image per filter is the top-1 candidate carrying its row of
  scores; the classifier's predictions are an argmax per image.

Dask is imported only here, and only when a dask array is passed (or asked for):
``import fastdecode`` does not need it.
"""

import sys

import numpy as np

#: Candidates merged per task of the top-k and Figure 1 trees.
FAN_IN = 8

#: Seconds to wait for a scheduler at ``--scheduler ADDRESS`` before giving up.
CONNECT_TIMEOUT = 5

INSTALL = 'pip install "fastdecode[distributed]"'


def require(what="dask arrays"):
    """The ``dask`` and ``dask.array`` modules; ImportError saying how to install them."""
    try:
        import dask
        import dask.array as da
    except ImportError as exc:
        raise ImportError("%s need dask, which is not installed (%s): %s"
                          % (what, exc, INSTALL)) from None
    return dask, da


def is_dask_array(x):
    """Whether ``x`` is a ``dask.array.Array`` (False, without importing dask, when dask is not
    loaded: no dask array can exist then)."""
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(x, da.Array)


def is_lazy_scores(scores):
    """Whether a FilterScores holds dask arrays (from a pass over a dask array of images)."""
    return is_dask_array(scores.network) or is_dask_array(scores.decoded)


def task_threads(n_threads):
    """Threads of one task: the given number, else 1 (Dask runs the chunks in parallel)."""
    if n_threads is None:
        return 1
    from ._validation import resolve_threads
    return resolve_threads(n_threads)


# --- images ---------------------------------------------------------------------------------

def check_images(net, images, upto, name="images"):
    """A dask array of images (N, C, H, W) the network can take, one chunk per group of images
    (the other axes rechunked to one chunk) in ``net.dtype``; refused from its metadata alone,
    before any task runs. Each chunk's values are checked when it is computed."""
    dask, da = require()
    dtype = images.dtype
    if dtype == object or dtype.kind not in "biuf":
        raise TypeError("%s must be a dask array of real numbers (N, C, H, W), got dtype %s"
                        % (name, dtype))
    if images.ndim != 4:
        raise ValueError("%s must be a 4-D dask array (N, C, H, W), got shape %s"
                         % (name, images.shape))
    if any(np.isnan(s) for s in images.shape):
        raise ValueError("%s has unknown chunk sizes (shape %s): call compute_chunk_sizes() "
                         "first" % (name, images.shape))
    shape = tuple(int(s) for s in images.shape)
    if shape[0] == 0:
        raise ValueError("%s is empty: shape %s" % (name, shape))
    if shape[1] != net.input_channels:
        raise ValueError("%s have %d channels but the network expects %d (%s %s)"
                         % (name, shape[1], net.input_channels, name, shape))
    net.check_input((1,) + shape[1:], upto=upto, name=name)
    if any(len(c) != 1 for c in images.chunks[1:]):
        images = images.rechunk({1: -1, 2: -1, 3: -1})
    if images.dtype != net.dtype:
        images = images.astype(net.dtype)
    return images


def present_images(images, name="images"):
    """(float array of the chunk, bool (n,) of its images that are there): an image all NaN
    is missing (a file a lazy reader could not read, ``load_photos(on_error="skip")``); the
    images there must be finite."""
    from ._validation import float_array, require_finite
    x = float_array(name, images, ndim=4, finite=False)
    there = ~np.isnan(x.reshape(len(x), -1)).all(axis=1) if len(x) else np.ones(0, bool)
    require_finite(name, x if there.all() else x[there])
    return x, there


def warn_missing(n_missing, n):
    """Say, once per pass, how many images a pass left out as missing."""
    if n_missing:
        import warnings
        warnings.warn("%d of the %d images are missing (unreadable files, all NaN) and were "
                      "left out of the results" % (n_missing, n), RuntimeWarning, stacklevel=3)


def chunk_starts(images):
    """Index of the first image of every chunk."""
    sizes = images.chunks[0]
    return [int(s) for s in np.concatenate([[0], np.cumsum(sizes)[:-1]])]


def chunk_tasks(images, fn, shared):
    """One delayed ``fn(chunk, start, shared)`` per chunk of images, in order.

    ``shared`` (the network, decoded filters, options) enters the graph once, not once per
    task."""
    dask, _ = require()
    blocks = images.to_delayed().ravel()
    shared = dask.delayed(shared, traverse=False)
    call = dask.delayed(_run_chunk, pure=True)
    return [call(fn, block, start, shared)
            for block, start in zip(blocks, chunk_starts(images))]


def _run_chunk(fn, block, start, shared):
    """``fn(block, start, shared)`` with BLAS on one thread: the tasks run side by side, and
    BLAS threads of concurrent calls would contend (see :mod:`fastdecode._engine.blas`)."""
    from ._engine import blas
    with blas.single_threaded():
        return fn(block, start, shared)


def chunk_array(images, fn, shared, tail, dtype):
    """The lazy array (N,) + ``tail`` of ``fn(chunk, start, shared)``, one block per chunk."""
    _, da = require()
    tasks = chunk_tasks(images, fn, shared)
    return da.concatenate([da.from_delayed(t, shape=(n,) + tuple(tail), dtype=dtype)
                           for t, n in zip(tasks, images.chunks[0])], axis=0)


def compute(*things):
    """Compute delayed objects and dask arrays together, on the active scheduler."""
    dask, _ = require()
    from ._engine import blas
    # BLAS on one thread for the whole computation, set and restored in this thread: the tasks
    # of the threaded scheduler call BLAS side by side, and its own threads would contend
    with blas.single_threaded():
        return dask.compute(*things)


# --- mergeable partial results over (N, K) scores -------------------------------------------

def _rows(S):
    """The blocks of a lazy (N, K) array as delayed numpy arrays, with their first index."""
    S = S.rechunk({1: -1})
    return list(S.to_delayed().ravel()), chunk_starts(S)


def _tree(parts, merge, *args):
    """Merge delayed partial results FAN_IN at a time until one remains."""
    dask, _ = require()
    merge = dask.delayed(merge, pure=True)
    while len(parts) > 1:
        parts = [merge(parts[i:i + FAN_IN], *args) for i in range(0, len(parts), FAN_IN)]
    return parts[0]


def _top_candidates(S, start, k):
    """(values (k', K), image indices (k', K)) of each filter's k best images in a block."""
    order = np.argsort(-S, axis=0, kind="stable")[:k]
    return np.take_along_axis(S, order, axis=0), order + start


def _merge_top(parts, k):
    values = np.concatenate([p[0] for p in parts])
    index = np.concatenate([p[1] for p in parts])
    order = np.lexsort((index, -values), axis=0)[:k]  # value descending, then lower index
    return np.take_along_axis(values, order, axis=0), np.take_along_axis(index, order, axis=0)


def top_candidates(S, k):
    """Delayed (values (k, K), image indices (k, K)): each filter's k best images, best first,
    ties to the lower index; ``S`` a lazy (N, K) array of scores."""
    dask, _ = require()
    blocks, starts = _rows(S)
    parts = [dask.delayed(_top_candidates, pure=True)(b, s, k) for b, s in zip(blocks, starts)]
    return _tree(parts, _merge_top, k)


def top_indices(S, k):
    """Delayed (K, k) image indices of :func:`top_candidates`."""
    dask, _ = require()
    return dask.delayed(_transposed_index, pure=True)(top_candidates(S, k))


def _transposed_index(merged):
    return np.ascontiguousarray(merged[1].T)


def _best_candidates(S, start):
    """(value (1, K), index (1, K), rows (1, K, K)) of each filter's best image in a block: the
    first maximum, as ``argmax``; ``rows[0, j]`` all scores of filter j's best image. Missing
    images (rows of NaN) score -inf."""
    missing = np.isnan(S)
    if missing.any():
        S = np.where(missing, -np.inf, S)
    best = S.argmax(axis=0)
    return S[best, np.arange(S.shape[1])][None], (best + start)[None], S[best][None]


def _merge_best(parts):
    values = np.concatenate([p[0] for p in parts])
    index = np.concatenate([p[1] for p in parts])
    rows = np.concatenate([p[2] for p in parts])
    pick = np.lexsort((index, -values), axis=0)[0]       # (K,) candidate of each filter
    cols = np.arange(values.shape[1])
    return values[pick, cols][None], index[pick, cols][None], rows[pick, cols][None]


def best_images(S):
    """Delayed (matrix (K, K), best (K,)): Figure 1 of a lazy (N, K) array of scores, as
    ``S[S.argmax(axis=0)].T`` and ``S.argmax(axis=0)``."""
    dask, _ = require()
    blocks, starts = _rows(S)
    parts = [dask.delayed(_best_candidates, pure=True)(b, s) for b, s in zip(blocks, starts)]
    return dask.delayed(_matrix, pure=True)(_tree(parts, _merge_best))


def _matrix(merged):
    return np.ascontiguousarray(merged[2][0].T), merged[1][0]


def predictions(S):
    """Lazy (N,) argmax over filters of each image's scores; -1 for a missing image (a row of
    NaN)."""
    return S.rechunk({1: -1}).map_blocks(_predict, drop_axis=1, dtype=np.int64)


def _predict(S):
    p = S.argmax(axis=1)
    p[np.isnan(S).all(axis=1)] = -1
    return p


# --- schedulers for the command line ----------------------------------------------------------

class Scheduler:
    """A ``dask.distributed.Client`` for the command line, as a context manager.

    ``address``: connect to a running scheduler (an OSError within ``CONNECT_TIMEOUT`` seconds
    when none answers). ``workers``: start a local cluster of that many worker processes, one
    thread each, listening on 127.0.0.1 only, without a dashboard; closed on exit. Neither: no
    client (the in-process pass)."""

    def __init__(self, address=None, workers=None):
        if address is not None and workers is not None:
            raise ValueError("--scheduler and --workers exclude each other: connect to a running "
                             "scheduler, or start a local cluster")
        if workers is not None and (isinstance(workers, bool) or int(workers) != workers
                                    or workers < 1):
            raise ValueError("--workers must be a whole number of processes, at least 1, got %r"
                             % (workers,))
        self.address = address
        self.workers = None if workers is None else int(workers)
        self.client = self.cluster = None

    @property
    def active(self):
        return self.address is not None or self.workers is not None

    def __enter__(self):
        if not self.active:
            return self
        require("--scheduler and --workers")
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise ImportError("--scheduler and --workers need dask.distributed, which is not "
                              "installed (%s): %s" % (exc, INSTALL)) from None
        if self.address is not None:
            try:
                self.client = Client(self.address, timeout=CONNECT_TIMEOUT,
                                     set_as_default=True)
            except (OSError, TimeoutError, ValueError) as exc:
                raise ConnectionError(
                    "no Dask scheduler answered at %s within %d s (%s)"
                    % (self.address, CONNECT_TIMEOUT, " ".join(str(exc).split())
                       or type(exc).__name__)) from None
        else:
            self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1,
                                        processes=True, host="127.0.0.1",
                                        dashboard_address=None,
                                        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
            try:
                self.client = Client(self.cluster, set_as_default=True)
            except BaseException:
                self.cluster.close()
                raise
        return self

    def threads(self):
        """The worker threads of the cluster (at least 1)."""
        info = self.client.scheduler_info(n_workers=-1) if self.client is not None else {}
        return max(1, sum(w.get("nthreads", 1) for w in info.get("workers", {}).values()))

    def describe(self):
        """The scheduler's address and workers, for the run's output."""
        info = self.client.scheduler_info(n_workers=-1)
        what = "a local cluster" if self.cluster is not None else "the scheduler"
        return "%s at %s, %d workers, %d threads" % (what, info.get("address", "?"),
                                                    len(info.get("workers", {})),
                                                    self.threads())

    def __exit__(self, *exc):
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        self.client = self.cluster = None
        return False
