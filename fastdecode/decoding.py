"""Filter decoding with substitution: conv-layer filters mapped down to image space."""

from collections import namedtuple

import numpy as np

from . import _api, _recursive
from ._validation import (as_int, as_memory_limit, check_bytes, check_finite_result, format_bytes,
                          resolve_threads)
from .network import LRN, BatchNorm, Conv, Dropout, Network, Pool, ReLU, _printable

__all__ = ["decode", "decode_all", "decoded_bias", "decode_with_bias", "DecodedFilters"]

#: Layers the decoding walks through unchanged.
PASS_THROUGH = (ReLU, Dropout, LRN)

DecodedFilters = namedtuple("DecodedFilters", ["filters", "bias"])
DecodedFilters.__doc__ = """Decoded filters (F, C0, h, w) and decoded biases (F,)."""


def _check_network(net):
    if not isinstance(net, Network):
        raise TypeError("net must be a fastdecode.Network, got %s" % type(net).__name__)


def _check_unpool(unpool):
    if unpool not in _api.UNPOOL_METHODS:
        raise ValueError("unknown unpool method %r; choose one of %s"
                         % (unpool, ", ".join(_api.UNPOOL_METHODS)))


def _filter_indices(net, idx, filters):
    K = net.layers[idx].num_filters
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
                         % (bad[0], _printable(net.layers[idx].name), K))
    return sel % K


def _chain_steps(net, idx):
    """Layers below ``idx`` that change the decoded map, top to bottom, with an error for others."""
    steps = []
    for layer in reversed(net.layers[:idx]):
        if isinstance(layer, (Conv, Pool, BatchNorm)):
            steps.append(layer)
        elif not isinstance(layer, PASS_THROUGH):
            raise ValueError("cannot decode through layer %r of type %s"
                             % (_printable(layer.name), layer.type))
    return steps


def _weighted_channel_sums(D, weights):
    """sum_j weights[j] * sum_{pixels} D[f, j, ...] for each f, in float64 (D (F, C, ...)).

    Row by row (no matrix product), so a filter's value has the same bits whichever filters are
    decoded with it.
    """
    F, C = D.shape[:2]
    sums = D.reshape(F, C, -1).sum(axis=2, dtype=np.float64)
    return (sums * np.asarray(weights, np.float64)).sum(axis=1)


class _Step:
    """One step of a decoding chain with the per-filter shapes (C, H, W) it reads and writes.

    kind "substitute" (weights (J, C, kh, kw) at ``stride``; ``bias_layer`` the conv layer whose
    bias the decoded bias collects, times ``box_sum`` when a box unpooling is merged in),
    "unpool" (a Pool layer) or "bnorm". ``needs``: the padded layout (P, off) the step reads, or
    None for dense maps; ``writes``: the layout it writes (substitutions by phased GEMMs or by
    Winograd's method can write the padded maps that the next step reads); ``path``: the form of
    a substitution (see :func:`fastdecode._api.substitution_path`).
    """

    def __init__(self, kind, layer, shape_in, shape_out):
        self.kind, self.layer, self.shape_in, self.shape_out = kind, layer, shape_in, shape_out
        self.kernel, self.stride, self.bias_layer, self.box = None, (1, 1), None, None
        self.box_sum = 1.0
        self.path, self.needs, self.writes = None, None, None
        self._weights, self._prepared = None, None

    def weights(self, dtype, threads):
        """The dense weights (J, C, kh, kw), with the merged box unpooling if any (made once)."""
        if self._weights is None:
            w = self.layer.dense_weights(dtype)
            if self.box is not None:  # the box substituted, then w at the conv's stride
                size, scale = self.box
                w = _recursive.box_sum(w, size, self.layer.stride_, scale, threads)
            self._weights = np.ascontiguousarray(w)
        return self._weights

    def prepared_weights(self, dtype, threads):
        """The weights in the layout of the step's substitution form (made once)."""
        if self._prepared is None:
            self._prepared = _api.prepared_weights(self.path, self.weights(dtype, threads),
                                                   self.stride, threads)
        return self._prepared


def _plane_elements(shape, layout):
    C, H, W = shape
    return C * (H * W if layout is None else layout[1] + H * layout[0])


class _ChainPlan:
    """The steps decoding conv layer ``idx`` walks through, top to bottom, with merged box
    unpoolings, the kernel and the memory layout of each step, and the memory it needs.

    The steps convert (and merge) their weights when first used, once for all chunks of filters.
    """

    def __init__(self, net, idx, unpool):
        self.net, self.idx, self.unpool, self.dtype = net, idx, unpool, net.dtype
        layers = _chain_steps(net, idx)
        top = net.layers[idx]
        shape = (top.weights.shape[1] * top.groups,) + tuple(top.kernel)
        self.top_shape = shape
        self.steps = []
        i = 0
        while i < len(layers):
            layer = layers[i]
            below = layers[i + 1] if i + 1 < len(layers) else None
            if isinstance(layer, Conv) or (isinstance(layer, Pool) and isinstance(below, Conv)
                                           and unpool in _recursive.RECURSIVE_METHODS):
                conv = layer if isinstance(layer, Conv) else below
                C, (kh, kw) = shape[0], conv.kernel
                C_out = conv.weights.shape[1] * conv.groups
                stride, box, box_sum = conv.stride_, None, 1.0
                if isinstance(layer, Pool):  # unpool then substitute: one substitution
                    (fy, fx), (ph, pw) = layer.stride_, layer.kernel
                    scale = _recursive.box_scale(unpool, layer.kernel)
                    kh, kw = stride[0] * (ph - 1) + kh, stride[1] * (pw - 1) + kw
                    stride = (fy * stride[0], fx * stride[1])
                    box, box_sum = (layer.kernel, scale), ph * pw * scale
                    i += 1
                _, H, W = shape
                step = _Step("substitute", conv, shape,
                             (C_out, (H - 1) * stride[0] + kh, (W - 1) * stride[1] + kw))
                step.kernel, step.stride, step.box, step.box_sum = (kh, kw), stride, box, box_sum
                step.bias_layer = conv if conv.bias is not None else None
                step.path = _api.substitution_path(C, H, W, C_out, kh, kw, *stride,
                                                   net.dtype.itemsize)
                step.needs = _api.input_layout(step.path, W, kw, stride[1])
            elif isinstance(layer, Pool):
                (fy, fx), (ph, pw) = layer.stride_, layer.kernel
                C, H, W = shape
                step = _Step("unpool", layer, shape, (C, (H - 1) * fy + ph, (W - 1) * fx + pw))
            else:
                step = _Step("bnorm", layer, shape, shape)
            self.steps.append(step)
            shape = step.shape_out
            i += 1
        # a phased or Winograd substitution writes the layout the next step reads (bnorm passes
        # it on)
        needed = None
        for step in reversed(self.steps):
            if step.kind == "bnorm":
                step.needs = needed
            elif step.path in ("phased", "winograd"):
                step.writes = needed
            needed = step.needs
        self.out_shape = shape
        # per filter: the largest map, and what a step holds besides its input and output
        largest, extra = 0, 0
        for step in self.steps:
            n_in = _plane_elements(step.shape_in, step.needs)
            n_out = _plane_elements(step.shape_out,
                                    step.writes if step.kind != "bnorm" else step.needs)
            largest = max(largest, n_in, n_out)
            if step.kind == "unpool":
                extra = max(extra, n_out)   # the resampling's intermediate rows
            elif step.path == "col2im":
                extra = max(extra, n_in)    # col2im reads a transposed copy of its input
        self.max_elements = largest
        self.bytes_per_filter = (2 * largest + extra) * net.dtype.itemsize

    def flops(self, n_filters, winograd_weight=1.0):
        """FLOPs of decoding ``n_filters`` filters by these steps, as they compute them
        (multiply-adds count 2, the unpooling taps 2 each; Winograd substitutions count the
        products of their transformed tiles, times ``winograd_weight``)."""
        total = 0.0
        for step in self.steps:
            C, H, W = step.shape_in
            if step.kind == "substitute":
                weight = winograd_weight if step.path == "winograd" else 1.0
                total += weight * _api.substitution_flops(
                    1, C, H, W, step.shape_out[0], *step.kernel, *step.stride,
                    self.dtype.itemsize, step.path)
            elif step.kind == "unpool":
                (ph, pw), (Ho, Wo) = step.layer.kernel, step.shape_out[1:]
                total += 2.0 * C * (Ho * W * ph + Ho * Wo * pw)
        return total * n_filters


def _to_layout(maps, layout, work, threads):
    """PaddedMaps ``maps`` in ``layout`` ((P, off), or None: dense), padded into ``work`` if
    they are dense (a phased or Winograd substitution writes the layout its next step reads
    itself)."""
    buf, H, W, P, off = maps
    if layout is None or (P, off) == layout:
        assert layout is not None or (P == W and off == 0), "padded maps where dense are read"
        return maps
    assert P == W and off == 0, "padded maps in another layout than the next step reads"
    F, C = buf.shape[:2]
    P, off = layout
    return _api.pad_maps(buf.reshape(F, C, H, W), P, off, threads,
                         out=work.take((F, C, off + H * P)))


class _PingPong:
    """Two work arrays that the steps of a chain write into in turn (an output never overlaps
    the input it is computed from), reused across steps and chunks: the large maps are
    allocated, and their pages first touched, once per decoding instead of once per step.
    """

    def __init__(self, size, dtype):
        self.size, self.dtype, self.buffers, self.next = size, dtype, [None, None], 0

    def take(self, shape):
        n = int(np.prod(shape))
        i, self.next = self.next, 1 - self.next
        if self.buffers[i] is None or self.buffers[i].size < n:
            self.buffers[i] = np.empty(max(n, self.size), dtype=self.dtype)
        return self.buffers[i][:n].reshape(shape)


def _decode_chunk(plan, sel, threads, want_bias, work=None):
    """Decoded filters ``sel`` by the chain (maybe a view of ``work``: copy before reusing it)."""
    if work is None:
        work = _PingPong(0, plan.dtype)
    conv = plan.net.layers[plan.idx]
    D = np.ascontiguousarray(conv.dense_weights(plan.dtype)[sel])
    F = len(sel)
    bias = np.zeros(F, dtype=np.float64)
    if want_bias and conv.bias is not None:
        bias += conv.bias[sel]
    C, H, W = plan.top_shape
    maps = _api.PaddedMaps(D.reshape(F, C, H * W), H, W, W, 0)
    for step in plan.steps:
        maps = _to_layout(maps, step.needs, work, threads)
        C, H, W = step.shape_out
        if step.kind == "substitute":
            if want_bias and step.bias_layer is not None:
                bias += step.box_sum * _weighted_channel_sums(maps.buf, step.bias_layer.bias)
            (sy, sx), kernel = step.stride, step.kernel
            if step.path != "col2im":
                P, off = step.writes if step.writes is not None else (W, 0)
                maps = _api.substitute_padded(step.path, maps,
                                              step.prepared_weights(plan.dtype, threads), kernel,
                                              (sy, sx), work.take((F, C, off + H * P)), P, off,
                                              threads)
            else:
                J, Hi, Wi = step.shape_in
                out = work.take((F, C, H, W))
                _api.substitute_col2im(maps.buf.reshape(F, J, Hi, Wi),
                                       step.weights(plan.dtype, threads), out, sy, sx, threads,
                                       zero=True)
                maps = _api.PaddedMaps(out.reshape(F, C, H * W), H, W, W, 0)
        elif step.kind == "unpool":
            (fy, fx), (ph, pw) = step.layer.stride_, step.layer.kernel
            Ci, Hi, Wi = step.shape_in
            out = work.take((F, C, H, W))
            _api.unpool_checked(maps.buf.reshape(F, Ci, Hi, Wi), fy, fx, ph, pw, plan.unpool,
                                threads, out=out)
            maps = _api.PaddedMaps(out.reshape(F, C, H * W), H, W, W, 0)
        else:
            a, c = step.layer.scale_shift(np.float64)
            if want_bias:
                bias += _weighted_channel_sums(maps.buf, c)
            out = work.take(maps.buf.shape)
            np.multiply(maps.buf, a.astype(plan.dtype)[None, :, None], out=out)
            maps = maps._replace(buf=out)
    maps = _to_layout(maps, None, work, threads)
    C, H, W = plan.out_shape
    return maps.buf.reshape(F, C, H, W), bias.astype(plan.dtype)


def decode_with_bias(net, layer, *, filters=None, unpool="nearest", n_threads=None,
                     memory_limit=None):
    """Decoded filters and decoded biases of a conv layer, as :class:`DecodedFilters`.

    The decoded bias of filter k is ``b_L[k]`` plus, for every conv (or bnorm) layer l below, the
    sum over its channels j of ``b_l[j]`` times the sum of k's partially decoded map at l's output,
    channel j. For a linear network decoded with ``unpool="adjoint"``,
    ``correlate(x, filters, stride=net.stride(L), pad=net.padding(L)) + bias`` equals
    ``net.forward(x, upto=L)`` to rounding error when no layer above the first conv pads
    (zero padding higher up makes it exact away from the borders only).
    """
    return _decode(net, layer, filters, unpool, n_threads, memory_limit, want_bias=True)


def _decode(net, layer, filters, unpool, n_threads, memory_limit, want_bias):
    _check_network(net)
    _check_unpool(unpool)
    idx = net.conv_index(layer)
    sel = _filter_indices(net, idx, filters)
    threads = resolve_threads(n_threads)
    limit = as_memory_limit(memory_limit)
    plan = _ChainPlan(net, idx, unpool)
    shape = (len(sel),) + net.decoded_shape(idx)
    out_bytes = check_bytes("decoded filters of layer %r" % _printable(net.layers[idx].name),
                            shape, net.dtype, limit)
    per_filter = plan.bytes_per_filter
    room = limit - out_bytes
    if per_filter > room:
        raise MemoryError(
            "decoding layer %r needs %s per filter in intermediate maps besides %s of output, "
            "above the memory limit of %s; pass a larger memory_limit"
            % (_printable(net.layers[idx].name), format_bytes(per_filter), format_bytes(out_bytes),
               format_bytes(limit)))
    if not want_bias:
        fast = _decode_recursive(plan, sel, threads, limit)
        if fast is not None:
            return DecodedFilters(_finite_decoded(net, idx, fast), None)
    chunk = max(1, len(sel) if room >= len(sel) * per_filter else int(room // per_filter))
    out = np.empty(shape, dtype=net.dtype)
    bias = np.empty(len(sel), dtype=net.dtype)
    work = _PingPong(min(chunk, len(sel)) * plan.max_elements, net.dtype)
    for start in range(0, len(sel), chunk):
        part = sel[start:start + chunk]
        out[start:start + len(part)], bias[start:start + len(part)] = _decode_chunk(
            plan, part, threads, want_bias, work)
    _finite_decoded(net, idx, bias)
    return DecodedFilters(_finite_decoded(net, idx, out), bias)


def _finite_decoded(net, idx, arr):
    return check_finite_result("decoding layer %r" % _printable(net.layers[idx].name), arr)


def decode(net, layer, *, filters=None, unpool="nearest", n_threads=None, memory_limit=None):
    """Decode the filters of conv layer ``layer`` (name or 0-based index) down to image space.

    Walking down from the layer: substitute each conv layer's filters (a transposed convolution
    at its stride), unpool at each pooling layer (``unpool`` is "nearest", "bilinear", "bicubic"
    or "adjoint"), pass ReLU, dropout and LRN through, and apply bnorm's per-channel scale.
    filters: indices (or a boolean mask) of the filters to decode, default all.
    memory_limit: bytes the output and the intermediate maps may take (default 4 GiB); the
    filters are decoded in chunks that fit, and a MemoryError names the bytes needed otherwise
    (besides, the kernels' work buffers take up to tens of MiB per thread, and Winograd's
    transformed weights up to 4 times a layer's weights).
    With "nearest" or "adjoint" unpooling, the layer recursion of :func:`decode_all` is used
    instead of the chain when its FLOP estimate is lower and it fits the memory limit (many
    filters of a layer); both agree to rounding.
    Results are bitwise the same for any ``n_threads``. A filter decoded alone, in another
    selection or in other chunks agrees to rounding (the GEMMs' blocks, and so the order of
    their sums, follow the number of filters decoded together).
    Returns (F, C0, h, w) in the network's dtype, (h, w) = ``net.receptive_field(layer)``.
    """
    with _api.reuse_buffers():
        return _decode(net, layer, filters, unpool, n_threads, memory_limit,
                       want_bias=False).filters


def decoded_bias(net, layer, *, filters=None, unpool="adjoint", n_threads=None,
                 memory_limit=None):
    """Decoded biases (F,) of a conv layer; see :func:`decode_with_bias`."""
    return decode_with_bias(net, layer, filters=filters, unpool=unpool, n_threads=n_threads,
                            memory_limit=memory_limit).bias


# --- layer-recursive decoding ------------------------------------------------------------------

def _decode_recursive(plan, sel, threads, limit):
    """Decoded filters ``sel`` of the plan's conv layer by the layer recursion, or None.

    None when the recursion does not apply (bilinear, bicubic), would exceed ``limit`` bytes, or
    costs more FLOPs than the chain for these filters (few filters of a deep layer; the chain's
    Winograd products weigh WINOGRAD_COST).
    """
    net, idx = plan.net, plan.idx
    if plan.unpool not in _recursive.RECURSIVE_METHODS:
        return None
    flops, peak = _recursive.recursive_cost(net, idx, len(sel))
    if peak > limit or flops >= plan.flops(len(sel), _api.WINOGRAD_COST):
        return None
    top = None if len(sel) == net.layers[idx].num_filters and np.array_equal(
        sel, np.arange(len(sel))) else sel
    return _recursive.walk(net, idx, plan.unpool, threads, top_filters=top)[idx]


def decode_all(net, *, unpool="nearest", n_threads=None, memory_limit=None):
    """Decoded filters of every conv layer, as a dict {layer name: (K, C0, h, w)}, bottom to top.

    With ``unpool`` "nearest" or "adjoint" the layers are decoded recursively, each from the one
    below by one substitution at image scale (far cheaper than one chain per layer); "bilinear"
    and "bicubic" are not shift-equivariant and use the chain of :func:`decode` for each layer.
    memory_limit: bytes the results and the working maps may take together (default 4 GiB);
    a MemoryError states the bytes needed beyond it.
    """
    _check_network(net)
    _check_unpool(unpool)
    threads = resolve_threads(n_threads)
    limit = as_memory_limit(memory_limit)
    conv_idx = [i for i, layer in enumerate(net.layers) if isinstance(layer, Conv)]
    if not conv_idx:
        raise ValueError("the network has no conv layers to decode")
    top = conv_idx[-1]
    _recursive._check_decodable(net, top)
    itemsize = net.dtype.itemsize
    results = sum(net.layers[i].num_filters * int(np.prod(net.decoded_shape(i))) * itemsize
                  for i in conv_idx)
    if unpool not in _recursive.RECURSIVE_METHODS:
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
    _, peak = _recursive.recursive_cost(net, top, net.layers[top].num_filters)
    if results + peak > limit:
        raise MemoryError(
            "decoding every conv layer needs %s for the results and up to %s of working maps, "
            "above the memory limit of %s; pass a larger memory_limit or decode layers one at a "
            "time with decode()" % (format_bytes(results), format_bytes(peak), format_bytes(limit)))
    with _api.reuse_buffers():
        decoded = _recursive.walk(net, top, unpool, threads, keep=set(conv_idx))
    return {net.layers[i].name: _finite_decoded(net, i, decoded[i]) for i in conv_idx}
