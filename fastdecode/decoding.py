"""Filter decoding with substitution: conv-layer filters mapped down to image space."""

import os
import urllib.parse
from collections import namedtuple

import numpy as np

from ._engine import chain, cost, graph, recursion, workspace
from ._validation import (as_int, as_memory_limit, as_pair, check_bytes, check_finite_result,
                          format_bytes, printable, resolve_threads)
from .network import Conv, Network
from ._graph import above_upsampling
from ._io import fresh_name
from .ops import unpool_method

__all__ = ["decode", "decode_all", "decoded_bias", "decode_with_bias", "DecodedFilters"]

DecodedFilters = namedtuple("DecodedFilters", ["filters", "bias"])
DecodedFilters.__doc__ = """Decoded filters (F, C0, h, w) and decoded biases (F,)."""


def check_network(net):
    """Refuse anything but a :class:`fastdecode.Network` with a TypeError."""
    if not isinstance(net, Network):
        raise TypeError("net must be a fastdecode.Network, got %s" % type(net).__name__)


def _filter_indices(net, idx, filters):
    K = net.channels(idx)
    if filters is None:
        return np.arange(K)
    sel = np.asarray(filters)
    if sel.ndim == 0:
        sel = sel[None]
    if sel.ndim != 1 or sel.size == 0:
        raise ValueError("filters must be a non-empty 1-D list of filter indices, got %r"
                         % (filters,))
    if sel.dtype == bool:
        if sel.size != K:
            raise ValueError("a boolean filters mask must have %d entries, got %d" % (K, sel.size))
        return np.flatnonzero(sel)
    sel = np.array([as_int("filters", f) for f in sel], dtype=np.intp)
    bad = sel[(sel < -K) | (sel >= K)]
    if bad.size:
        raise IndexError("filter index %d out of range: layer %r has %d filters"
                         % (bad[0], printable(net.layers[idx].name), K))
    return sel % K


def decode_with_bias(net, layer, *, filters=None, unpool="nearest", n_threads=None,
                     memory_limit=None, phase=None):
    """Decoded filters and decoded biases of a conv layer.

    The decoded bias of filter k is ``b_L[k]`` plus, for every conv (or bnorm) layer l below,
    the sum over its channels j of ``b_l[j]`` times the sum of k's partially decoded map at
    l's output, channel j (times the box of a merged unpooling). For a linear network decoded
    with ``unpool="adjoint"``,
    ``correlate(x, filters, stride=net.stride(L), pad=net.padding(L)) + bias`` equals
    ``net.forward(x, upto=L)`` to rounding error when no layer above the first conv pads (zero
    padding higher up makes it exact away from the borders only).

    Parameters
    ----------
    net : Network
        The network.
    layer : str or int
        A conv or linear layer (any decodable layer of a graph), by name or 0-based index
        (negative counts from the end).
    filters : array_like of int or bool, optional
        Indices (negative allowed) or a boolean mask of the filters to decode; default all.
    unpool : str, optional
        How pooling layers are undone, one of :data:`fastdecode.UNPOOL_METHODS`: "nearest"
        (the default), "bilinear" or "bicubic" (MATLAB ``imresize`` enlargements) or "adjoint"
        (the exact adjoint of average pooling). Only "adjoint" makes the decoded filters of a
        linear network (convs and average pools) its exact composite filters.
    n_threads : int, optional
        Threads to use; default all that OpenMP may use. Results are bitwise the same for any
        count.
    memory_limit : float, optional
        Bytes the output and the intermediate maps may take (default 4 GiB); the filters are
        decoded in chunks that fit, and a MemoryError names the bytes needed otherwise
        (besides, the kernels' work buffers take up to tens of MiB per thread, and Winograd's
        transformed weights up to 4 times a layer's weights).
    phase : int or (int, int), optional
        Above an upsampling, the phase (rows, cols) of the units decoded, each below
        :meth:`Network.phases <fastdecode.Network.phases>` of the layer: the units
        ``q * phases + phase`` share one decoded filter. Default (0, 0), the only phase
        elsewhere.

    Returns
    -------
    DecodedFilters
        ``filters`` (F, C0, h, w) as :func:`decode` returns them, ``bias`` (F,), both in the
        network's dtype.

    Raises
    ------
    TypeError
        When ``net`` is not a :class:`Network`.
    ValueError
        For a layer that is not a conv layer, a layer below it that decoding cannot pass
        (e.g. softmax), an unknown unpool method, or a result that overflows the dtype.
    MemoryError
        When one filter's maps do not fit ``memory_limit``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastdecode as fd
    >>> rng = np.random.default_rng(0)
    >>> net = fd.Network([fd.Conv(rng.standard_normal((4, 1, 3, 3)), rng.standard_normal(4)),
    ...                   fd.Pool("avg", size=2),
    ...                   fd.Conv(rng.standard_normal((6, 4, 3, 3)), rng.standard_normal(6))])
    >>> dec = fd.decode_with_bias(net, "layer3", unpool="adjoint")
    >>> dec.filters.shape, dec.bias.shape
    ((6, 1, 8, 8), (6,))
    >>> x = rng.standard_normal((2, 1, 12, 12))
    >>> y = fd.correlate(x, dec.filters, stride=net.stride("layer3"))
    >>> np.allclose(y + dec.bias[:, None, None], net.forward(x))
    True
    """
    return _decode(net, layer, filters, unpool, n_threads, memory_limit, want_bias=True,
                   phase=phase)


def by_chain(net, idx):
    """Whether layer idx decodes by the chain engine: a conv layer of a chain with no
    linear layer or upsampling below it (the reverse sweep decodes the others)."""
    return (net.is_chain and isinstance(net.layers[idx], Conv)
            and not any(l.type in ("linear", "upsample") for l in net.layers[:idx]))


def _check_phase(net, idx, phase):
    """``phase`` as (rows, cols) within layer idx's :meth:`~Network.phases`; (0, 0) for None."""
    if phase is None:
        return (0, 0)
    ph = as_pair("phase", phase, minimum=0)
    p = net.phases(idx)
    if ph[0] >= p[0] or ph[1] >= p[1]:
        raise ValueError("phase %r out of range: the units of layer %r have %dx%d phases"
                         % (ph, printable(net.layers[idx].name), p[0], p[1]))
    return ph


def _decode(net, layer, filters, unpool, n_threads, memory_limit, want_bias, phase=None):
    check_network(net)
    unpool = unpool_method(unpool)
    idx = net.decodable_index(layer)
    if not by_chain(net, idx):
        return _decode_graph(net, idx, filters, unpool, n_threads, memory_limit, want_bias,
                             _check_phase(net, idx, phase))
    _check_phase(net, idx, phase)
    sel = _filter_indices(net, idx, filters)
    threads = resolve_threads(n_threads)
    limit = as_memory_limit(memory_limit)
    with workspace.reuse() as ws:
        return _decode_planned(net, idx, sel, chain.ChainPlan(net, idx, unpool), threads, limit,
                               want_bias, ws)


def _decode_planned(net, idx, sel, plan, threads, limit, want_bias, ws):
    shape = (len(sel),) + net.decoded_shape(idx)
    out_bytes = check_bytes("decoded filters of layer %r" % printable(net.layers[idx].name),
                            shape, net.dtype, limit)
    per_filter = plan.bytes_per_filter
    room = limit - out_bytes
    if per_filter > room:
        raise MemoryError(
            "decoding layer %r needs %s per filter in intermediate maps besides %s of output, "
            "above the memory limit of %s; pass a larger memory_limit"
            % (printable(net.layers[idx].name), format_bytes(per_filter), format_bytes(out_bytes),
               format_bytes(limit)))
    if not want_bias:
        fast = _decode_recursive(plan, sel, threads, limit)
        if fast is not None:
            return DecodedFilters(_finite_decoded(net, idx, fast), None)
    chunk = max(1, len(sel) if room >= len(sel) * per_filter else int(room // per_filter))
    out = np.empty(shape, dtype=net.dtype)
    bias = np.empty(len(sel), dtype=net.dtype)
    reserve = min(chunk, len(sel)) * plan.max_elements
    for start in range(0, len(sel), chunk):
        part = sel[start:start + chunk]
        out[start:start + len(part)], bias[start:start + len(part)] = chain.decode_chunk(
            plan, part, threads, want_bias, ws, reserve)
    _finite_decoded(net, idx, bias)
    return DecodedFilters(_finite_decoded(net, idx, out), bias)


def _decode_graph(net, idx, filters, unpool, n_threads, memory_limit, want_bias, phase=(0, 0)):
    """Decoded channels of layer ``idx`` (at its units of ``phase``) by the reverse sweep, in
    chunks of channels that fit the memory limit, each placed in the layer's union box."""
    sel = _filter_indices(net, idx, filters)
    threads = resolve_threads(n_threads)
    limit = as_memory_limit(memory_limit)
    graph.check_decodable(net, idx)
    name = printable(net.layers[idx].name)
    shape = (len(sel),) + net.decoded_shape(idx)
    out_bytes = check_bytes("decoded filters of layer %r" % name, shape, net.dtype, limit)
    per_filter = graph.per_filter_elements(net, idx) * net.dtype.itemsize
    room = limit - out_bytes
    if per_filter > room:
        raise MemoryError(
            "decoding layer %r needs up to %s per filter in intermediate maps besides %s of "
            "output, above the memory limit of %s; pass a larger memory_limit"
            % (name, format_bytes(per_filter), format_bytes(out_bytes), format_bytes(limit)))
    chunk = max(1, min(len(sel), int(room // per_filter)))
    _, P, _ = net._geometry(idx)
    out = np.zeros(shape, dtype=net.dtype)
    bias = np.zeros(len(sel), dtype=net.dtype) if want_bias else None
    for start in range(0, len(sel), chunk):
        part = sel[start:start + chunk]
        maps, (oy, ox), b = graph.decode_chunk(net, idx, part, unpool, threads, want_bias,
                                               phase)
        y, x = oy + P[0], ox + P[2]
        h, w = maps.shape[2:]
        if y < 0 or x < 0 or y + h > shape[2] or x + w > shape[3]:
            raise AssertionError("decoded maps of layer %r at (%d, %d) of %dx%d outside the "
                                 "box %s" % (name, y, x, h, w, shape[2:]))
        out[start:start + len(part), :, y:y + h, x:x + w] = maps
        if want_bias:
            bias[start:start + len(part)] = b
    if want_bias:
        _finite_decoded(net, idx, bias)
    return DecodedFilters(_finite_decoded(net, idx, out), bias)


def _finite_decoded(net, idx, arr):
    return check_finite_result("decoding layer %r" % printable(net.layers[idx].name), arr)


def decode(net, layer, *, filters=None, unpool="nearest", n_threads=None, memory_limit=None,
           phase=None):
    """Decode the filters of a conv layer down to image space.

    Walking down from the layer: substitute each conv layer's filters (a transposed
    convolution at its stride), unpool at each pooling layer, pass ReLU, dropout and LRN
    through, and apply bnorm's per-channel scale. With "nearest" or "adjoint" unpooling, the
    layer recursion of :func:`decode_all` is used instead of the chain when its FLOP estimate
    is lower and it fits the memory limit (many filters of a layer); both agree to rounding.
    A filter decoded alone, in another selection or in other chunks agrees to rounding (the
    GEMMs' blocks, and so the order of their sums, follow the number of filters decoded
    together).

    For a graph network (any network that is not a chain), every layer whose output is a map
    or a vector can be decoded: channel k starts as a unit at the layer's output and a reverse
    sweep walks the layers in reverse order, each by its decode step (an add passes the maps
    to each input, a concatenation splits them by channel, a global pool unpools over the
    whole map, a linear layer substitutes as its equivalent conv, a gate scales by its held
    value); the maps coming back to a tensor read by several layers are summed at their
    offsets, and the result is placed in the layer's union box (``net.padding(layer)``,
    ``net.receptive_field(layer)``). With ``unpool="nearest"`` it is the gradient of the
    network's linear twin at a unit. An upsampling is decoded through its exact transpose
    (away from the map's edges); above it, units read windows placed according to their
    phase (:meth:`Network.phases <fastdecode.Network.phases>`), and ``phase=`` chooses the
    units decoded. A chain decodes the same way when it holds a linear layer or an
    upsampling, and its linear layers can be decoded too.

    Parameters
    ----------
    net : Network
        The network.
    layer : str or int
        A conv or linear layer (any decodable layer of a graph), by name or 0-based index
        (negative counts from the end).
    filters : array_like of int or bool, optional
        Indices (negative allowed) or a boolean mask of the filters to decode; default all.
    unpool : str, optional
        How pooling layers are undone, one of :data:`fastdecode.UNPOOL_METHODS`: "nearest"
        (the default), "bilinear" or "bicubic" (MATLAB ``imresize`` enlargements) or "adjoint"
        (the exact adjoint of average pooling). Only "adjoint" makes the decoded filters of a
        linear network (convs and average pools) its exact composite filters.
    n_threads : int, optional
        Threads to use; default all that OpenMP may use. Results are bitwise the same for any
        count.
    memory_limit : float, optional
        Bytes the output and the intermediate maps may take (default 4 GiB); the filters are
        decoded in chunks that fit, and a MemoryError names the bytes needed otherwise
        (besides, the kernels' work buffers take up to tens of MiB per thread, and Winograd's
        transformed weights up to 4 times a layer's weights).
    phase : int or (int, int), optional
        Above an upsampling, the phase (rows, cols) of the units decoded, each below
        :meth:`Network.phases <fastdecode.Network.phases>` of the layer: the units
        ``q * phases + phase`` share one decoded filter. Default (0, 0), the only phase
        elsewhere.

    Returns
    -------
    numpy.ndarray
        Decoded filters (F, C0, h, w) in the network's dtype, C0 the network's input channels
        and (h, w) = ``net.receptive_field(layer)``.

    Raises
    ------
    TypeError
        When ``net`` is not a :class:`Network`.
    ValueError
        For a layer that is not a conv layer, a layer below it that decoding cannot pass
        (e.g. softmax), an unknown unpool method, or a result that overflows the dtype.
    MemoryError
        When one filter's maps do not fit ``memory_limit``.

    See Also
    --------
    decode_with_bias, decode_all

    Examples
    --------
    >>> import numpy as np
    >>> import fastdecode as fd
    >>> rng = np.random.default_rng(0)
    >>> net = fd.Network([fd.Conv(rng.standard_normal((4, 1, 3, 3))), fd.ReLU(),
    ...                   fd.Pool("max", size=2), fd.Conv(rng.standard_normal((6, 4, 3, 3)))])
    >>> fd.decode(net, "layer4").shape
    (6, 1, 8, 8)
    >>> fd.decode(net, "layer4", filters=[0, 5], unpool="bilinear").shape
    (2, 1, 8, 8)
    """
    return _decode(net, layer, filters, unpool, n_threads, memory_limit, want_bias=False,
                   phase=phase).filters


def decoded_bias(net, layer, *, filters=None, unpool="nearest", n_threads=None,
                 memory_limit=None, phase=None):
    """Decoded biases (F,) of a conv layer: :func:`decode_with_bias`'s ``bias``, with the same
    parameters and defaults.

    Returns
    -------
    numpy.ndarray
        (F,) in the network's dtype.
    """
    return decode_with_bias(net, layer, filters=filters, unpool=unpool, n_threads=n_threads,
                            memory_limit=memory_limit, phase=phase).bias


# --- layer-recursive decoding ------------------------------------------------------------------

def _decode_recursive(plan, sel, threads, limit):
    """Decoded filters ``sel`` of the plan's conv layer by the layer recursion, or None.

    None when the recursion does not apply (bilinear, bicubic), would exceed ``limit`` bytes, or
    costs more FLOPs than the chain for these filters (few filters of a deep layer; the chain's
    Winograd products weigh WINOGRAD_COST).
    """
    net, idx = plan.net, plan.idx
    if not cost.recursion_is_cheaper(plan, len(sel), limit):
        return None
    top = None if len(sel) == net.layers[idx].num_filters and np.array_equal(
        sel, np.arange(len(sel))) else sel
    return recursion.walk(net, idx, plan.unpool, threads, top_filters=top)[idx]


def decode_all(net, *, layers=None, unpool="nearest", n_threads=None, memory_limit=None,
               out=None, lazy=False, chunks=None):
    """Decoded filters of every conv layer (or of the layers named), bottom to top.

    With a box unpooling ("nearest", the default, or "adjoint") the layers are decoded
    recursively, each from the one below by one substitution at image scale (far cheaper than
    one chain per layer); "bilinear" and "bicubic" are not shift-equivariant and use the chain
    of :func:`decode` for each layer. On a graph network with a box unpooling the recursion
    is generalised to graphs (an add sums its inputs' decoded filters at their offsets, a
    concatenation stacks them, a conv substitutes its weights into its input's) when the
    decoded filters of every tensor on the way fit the memory limit. Otherwise, for named
    layers of a chain, and with a directory ``out``, each layer is decoded by :func:`decode`
    (in chunks of filters within the memory limit). Either way the result equals
    :func:`decode`'s layer by layer, to rounding. Layers above an upsampling are decoded by
    :func:`decode` at their phase (0, 0).

    Parameters
    ----------
    net : Network
        The network.
    layers : iterable of str or int, optional
        The layers to decode (any layer :func:`decode` takes); default every conv layer.
    unpool : str, optional
        One of :data:`fastdecode.UNPOOL_METHODS`, as for :func:`decode`.
    n_threads : int, optional
        Threads to use; default all that OpenMP may use.
    memory_limit : float, optional
        Bytes the results and the working maps may take together (default 4 GiB); with
        ``out``, the bytes one chunk of filters and its working maps may take (the results
        are on disk).
    out : str or path-like, optional
        A directory (created if needed): each layer's result is written there as it is
        computed, chunk by chunk, to ``<layer>.npy`` (the name percent-encoded when it holds
        characters other than letters, digits, ``_``, ``-`` and ``.``; an existing file is
        replaced atomically, once complete) and returned memory-mapped read-only
        (``np.load(path, mmap_mode="r")``), so the peak memory stays bounded by
        ``memory_limit`` whatever the network.
    lazy : bool, optional
        Return ``dask.array.Array`` objects instead, chunked over filters: each chunk is one
        task, ``decode(net, layer, filters=chunk)``, run when computed (``.compute()``,
        ``dask.array.store``, ``to_zarr``...) on the active Dask scheduler, a
        ``dask.distributed.Client``'s cluster included. A chunk equals :func:`decode`'s
        filters to rounding (layers above an upsampling: phase (0, 0)); ``n_threads`` is per
        task (default 1) and ``memory_limit`` bounds each task. Needs dask
        (``pip install "fastdecode[distributed]"``).
    chunks : int, optional
        With ``lazy``, filters per chunk (default: about 64 MiB of decoded filters).

    Returns
    -------
    dict
        {layer name: decoded filters (K, C0, h, w)} for every conv layer (or those named),
        bottom to top.

    Raises
    ------
    ValueError
        For a network without conv layers, or a layer decoding cannot pass.
    MemoryError
        When the results and working maps exceed ``memory_limit`` (the error states the bytes
        needed).

    Examples
    --------
    >>> import numpy as np
    >>> import fastdecode as fd
    >>> rng = np.random.default_rng(0)
    >>> net = fd.Network([fd.Conv(rng.standard_normal((4, 1, 3, 3))), fd.ReLU(),
    ...                   fd.Pool("max", size=2), fd.Conv(rng.standard_normal((6, 4, 3, 3)))])
    >>> {name: d.shape for name, d in fd.decode_all(net).items()}
    {'layer1': (4, 1, 3, 3), 'layer4': (6, 1, 8, 8)}
    """
    check_network(net)
    unpool = unpool_method(unpool)
    limit = as_memory_limit(memory_limit)
    if lazy:
        if out is not None:
            raise ValueError("out= writes the decoded filters now and lazy=True returns dask "
                             "arrays to compute later: give one of them")
        from ._lazy_decode import lazy_decode
        return lazy_decode(net, _layer_indices(net, layers), unpool, n_threads, limit, chunks)
    if chunks is not None:
        raise ValueError("chunks sets the chunks of lazy arrays: give lazy=True too")
    threads = resolve_threads(n_threads)
    if layers is not None or out is not None or not net.is_chain:
        return _decode_layers(net, layers, unpool, threads, limit, out)
    conv_idx = [i for i, layer in enumerate(net.layers) if layer.decode_role == "substitute"]
    if not conv_idx:
        raise ValueError("the network has no conv layers to decode")
    top = conv_idx[-1]
    if not by_chain(net, top):   # a linear layer or an upsampling on the way
        return _decode_layers(net, layers, unpool, threads, limit, out)
    recursion.check_decodable(net, top)
    itemsize = net.dtype.itemsize
    results = sum(net.layers[i].num_filters * int(np.prod(net.decoded_shape(i))) * itemsize
                  for i in conv_idx)
    if not unpool.box:
        out = {}
        for i in conv_idx:
            remaining = limit - sum(a.nbytes for a in out.values())
            if remaining <= 0:
                raise MemoryError(
                    "decoding every conv layer needs %s for the results alone, above the memory "
                    "limit of %s; pass a larger memory_limit"
                    % (format_bytes(results), format_bytes(limit)))
            out[net.layers[i].name] = decode(net, i, unpool=unpool, n_threads=threads,
                                             memory_limit=remaining)
        return out
    _, peak = cost.recursion_cost(net, top, net.layers[top].num_filters)
    if results + peak > limit:
        raise MemoryError(
            "decoding every conv layer needs %s for the results and up to %s of working maps, "
            "above the memory limit of %s; pass a larger memory_limit or decode layers one at a "
            "time with decode()" % (format_bytes(results), format_bytes(peak), format_bytes(limit)))
    with workspace.reuse():
        decoded = recursion.walk(net, top, unpool, threads, keep=set(conv_idx))
    return {net.layers[i].name: _finite_decoded(net, i, decoded[i]) for i in conv_idx}


def _layer_indices(net, layers):
    """Sorted indices of the layers decode_all decodes: every conv layer, or those named."""
    if layers is None:
        idx = [i for i, layer in enumerate(net.layers) if isinstance(layer, Conv)]
        if not idx:
            raise ValueError("the network has no conv layers to decode")
        return idx
    if isinstance(layers, (str, int, np.integer)):
        layers = [layers]
    idx = sorted(set(net.decodable_index(l) for l in layers))
    if not idx:
        raise ValueError("layers names no layer")
    return idx


def _decode_layers(net, layers, unpool, threads, limit, out):
    """decode_all layer by layer through :func:`decode` (graphs, named layers, or ``out``)."""
    idx = _layer_indices(net, layers)
    if not net.is_chain:
        for i in idx:
            graph.check_decodable(net, i)
    if out is not None:
        if not net.is_chain and unpool.box and not any(above_upsampling(net, i) for i in idx):
            return _stream_to_files(net, idx, unpool, threads, limit, out)
        return {net.layers[i].name: _decode_to_file(net, i, unpool, threads, limit, out)
                for i in idx}
    results = {}
    plain = [i for i in idx if not above_upsampling(net, i)]
    if not net.is_chain and unpool.box and plain:
        # the recursion for the layers below any upsampling, the sweep for the others
        fast = _decode_graph_recursive(net, plain, unpool, threads, limit)
        if fast is not None:
            if len(plain) == len(idx):
                return fast
            results = fast
    for i in idx:
        if net.layers[i].name in results:
            continue
        remaining = limit - sum(a.nbytes for a in results.values())
        if remaining <= 0:
            raise MemoryError("decoding layers %s needs more than the memory limit of %s for "
                              "the results; pass a larger memory_limit or out= a directory"
                              % (", ".join(printable(net.layers[j].name) for j in idx),
                                 format_bytes(limit)))
        results[net.layers[i].name] = decode(net, i, unpool=unpool, n_threads=threads,
                                             memory_limit=remaining)
    return {net.layers[i].name: results[net.layers[i].name] for i in idx}


def _decode_to_file(net, i, unpool, threads, limit, out):
    """Layer i decoded chunk by chunk into ``out``/<layer>.npy; returned memory-mapped."""
    directory = os.fspath(out)
    os.makedirs(directory, exist_ok=True)
    name = net.layers[i].name
    path = os.path.join(directory, urllib.parse.quote(name, safe="") + ".npy")
    shape = (net.channels(i),) + net.decoded_shape(i)
    per_filter = int(np.prod(shape[1:])) * net.dtype.itemsize
    if by_chain(net, i):
        chunk = max(1, min(shape[0], int(limit // 3 // per_filter)))
    else:   # the sweep's working maps scale with the chunk too
        work = graph.per_filter_elements(net, i) * net.dtype.itemsize
        chunk = max(1, min(shape[0], int(limit // (per_filter + work))))
    tmp = fresh_name(directory, ".%s." % os.path.basename(path), ".tmp")  # named first
    try:
        # written through a file, not a memory map, so that the pages written do not stay
        # resident in the process
        with open(tmp, "xb") as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": np.lib.format.dtype_to_descr(net.dtype), "fortran_order": False,
                    "shape": shape})
            for start in range(0, shape[0], chunk):
                sel = np.arange(start, min(shape[0], start + chunk))
                part = decode(net, i, filters=sel, unpool=unpool, n_threads=threads,
                              memory_limit=limit)
                f.write(memoryview(np.ascontiguousarray(part, dtype=net.dtype)).cast("B"))
                del part
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return np.load(path, mmap_mode="r")


def _npy_path(out, name):
    return os.path.join(os.fspath(out), urllib.parse.quote(name, safe="") + ".npy")


def _stream_to_files(net, idx, unpool, threads, limit, out):
    """decode_all(out=) of a graph by the layer recursion, streamed (:mod:`._streaming`): each
    layer's decoded filters written to ``out``/<layer>.npy chunk by chunk as they are made,
    the recursion's tensors beyond an eighth of ``limit`` in memory-mapped temporary files
    beside them (pages the system writes out, not the process's own memory); the files are
    returned memory-mapped."""
    from ._streaming import CHUNK_BYTES, stream
    directory = os.fspath(out)
    os.makedirs(directory, exist_ok=True)
    files = {}   # layer index: (open file, temporary path)

    def on_chunk(i, start, filters):
        if start == 0:
            path = _npy_path(directory, net.layers[i].name)
            tmp = fresh_name(directory, ".%s." % os.path.basename(path), ".tmp")
            files[i] = (None, tmp)      # named before it exists: the cleanup below knows it
            f = open(tmp, "xb")
            files[i] = (f, tmp)
            np.lib.format.write_array_header_1_0(
                f, {"descr": np.lib.format.dtype_to_descr(net.dtype), "fortran_order": False,
                    "shape": (net.channels(i),) + net.decoded_shape(i)})
        f, tmp = files[i]
        f.write(memoryview(np.ascontiguousarray(filters, dtype=net.dtype)).cast("B"))
        if start + len(filters) == net.channels(i):
            f.close()
            os.replace(tmp, _npy_path(directory, net.layers[i].name))
            del files[i]

    try:
        stream(net, idx, unpool.name, threads, on_chunk, spill_dir=directory,
               chunk_bytes=max(1, min(CHUNK_BYTES, int(limit // 8))),
               spill_bytes=int(limit // 8))
    finally:
        for f, tmp in files.values():   # a layer left unfinished by an error or interrupt
            if f is not None:
                f.close()
            if os.path.exists(tmp):
                os.remove(tmp)
    return {net.layers[i].name: np.load(_npy_path(directory, net.layers[i].name),
                                        mmap_mode="r") for i in idx}


def _decode_graph_recursive(net, idx, unpool, threads, limit):
    """decode_all of layers ``idx`` of a graph by the layer recursion, or None when the
    decoded filters it holds at once (the results and the tensors still to be read) exceed
    ``limit``."""
    from ._engine import graph_recursion
    try:
        need = graph_recursion.peak_bytes(net, set(idx))
    except ValueError:
        return None
    if need > limit:
        return None
    with workspace.reuse():
        decoded = graph_recursion.walk(net, set(idx), unpool, threads)
    out = {}
    for i in idx:
        D, (oy, ox) = decoded[i]
        _, P, _ = net._geometry(i)
        shape = (net.channels(i),) + net.decoded_shape(i)
        y, x = oy + P[0], ox + P[2]
        if (y, x) == (0, 0) and D.shape == shape:
            full = D
        else:
            full = np.zeros(shape, dtype=net.dtype)
            full[:, :, y:y + D.shape[2], x:x + D.shape[3]] = D
        out[net.layers[i].name] = _finite_decoded(net, i, full)
    return out
