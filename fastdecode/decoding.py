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


def _peak_bytes_per_filter(net, idx, steps):
    """Bytes one filter needs at the widest step of the chain (input and output maps)."""
    itemsize = net.dtype.itemsize
    conv = net.layers[idx]
    c = conv.weights.shape[1] * conv.groups
    h, w = conv.kernel
    peak = c * h * w
    for layer in steps:
        if isinstance(layer, Conv):
            c_out = layer.weights.shape[1] * layer.groups
            h = (h - 1) * layer.stride_[0] + layer.kernel[0]
            w = (w - 1) * layer.stride_[1] + layer.kernel[1]
            peak = max(peak, c * h * w + c_out * h * w)
            c = c_out
        elif isinstance(layer, Pool):
            h0, w0 = h, w
            h = (h - 1) * layer.stride_[0] + layer.kernel[0]
            w = (w - 1) * layer.stride_[1] + layer.kernel[1]
            peak = max(peak, c * h0 * w0 + 2 * c * h * w)
    return peak * itemsize


def _weighted_channel_sums(D, weights):
    """sum_j weights[j] * sum_{y,x} D[f, j, y, x] for each f, in float64.

    Row by row (no matrix product), so a filter's value has the same bits whichever filters are
    decoded with it.
    """
    return (D.sum(axis=(2, 3), dtype=np.float64) * np.asarray(weights, np.float64)).sum(axis=1)


def _chain_map_elements(net, idx, steps):
    """Elements of the largest map one filter's chain produces (the output of a step)."""
    conv = net.layers[idx]
    c = conv.weights.shape[1] * conv.groups
    h, w = conv.kernel
    largest = 0
    for layer in steps:
        if isinstance(layer, (Conv, Pool)):
            h = (h - 1) * layer.stride_[0] + layer.kernel[0]
            w = (w - 1) * layer.stride_[1] + layer.kernel[1]
            if isinstance(layer, Conv):
                c = layer.weights.shape[1] * layer.groups
            largest = max(largest, c * h * w)
    return largest


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


def _decode_chunk(net, idx, steps, sel, unpool, threads, want_bias, work=None):
    """Decoded filters ``sel`` by the chain (maybe a view of ``work``: copy before reusing it)."""
    if work is None:
        work = _PingPong(0, net.dtype)
    conv = net.layers[idx]
    D = conv.dense_weights()[sel]
    bias = np.zeros(len(sel), dtype=np.float64)
    if want_bias and conv.bias is not None:
        bias += conv.bias[sel]
    for layer in steps:
        if isinstance(layer, Conv):
            if want_bias and layer.bias is not None:
                bias += _weighted_channel_sums(D, layer.bias)
            # the network's arrays are checked once; the maps between steps need no checks
            w = np.ascontiguousarray(layer.dense_weights(), dtype=D.dtype)
            (sy, sx), (kh, kw) = layer.stride_, w.shape[2:]
            F, _, H, W = D.shape
            out = work.take((F, w.shape[1], (H - 1) * sy + kh, (W - 1) * sx + kw))
            D = _api.substitute_into(np.ascontiguousarray(D), w, out, sy, sx, threads, zero=True)
        elif isinstance(layer, Pool):
            (fy, fx), (ph, pw) = layer.stride_, layer.kernel
            F, C, H, W = D.shape
            out = work.take((F, C, (H - 1) * fy + ph, (W - 1) * fx + pw))
            D = _api.unpool_checked(np.ascontiguousarray(D), fy, fx, ph, pw, unpool, threads,
                                    out=out)
        elif isinstance(layer, BatchNorm):
            a, c = layer.scale_shift(np.float64)
            if want_bias:
                bias += _weighted_channel_sums(D, c)
            D = D * a.astype(D.dtype)[None, :, None, None]
    return np.ascontiguousarray(D, dtype=net.dtype), bias.astype(net.dtype)


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
    steps = _chain_steps(net, idx)
    shape = (len(sel),) + net.decoded_shape(idx)
    out_bytes = check_bytes("decoded filters of layer %r" % _printable(net.layers[idx].name),
                            shape, net.dtype, limit)
    # the chain's two work arrays each hold the largest map
    per_filter = max(_peak_bytes_per_filter(net, idx, steps),
                     2 * _chain_map_elements(net, idx, steps) * net.dtype.itemsize)
    room = limit - out_bytes
    if per_filter > room:
        raise MemoryError(
            "decoding layer %r needs %s per filter in intermediate maps besides %s of output, "
            "above the memory limit of %s; pass a larger memory_limit"
            % (_printable(net.layers[idx].name), format_bytes(per_filter), format_bytes(out_bytes),
               format_bytes(limit)))
    if not want_bias:
        fast = _decode_recursive(net, idx, sel, unpool, threads, limit)
        if fast is not None:
            return DecodedFilters(_finite_decoded(net, idx, fast), None)
    chunk = max(1, len(sel) if room >= len(sel) * per_filter else int(room // per_filter))
    out = np.empty(shape, dtype=net.dtype)
    bias = np.empty(len(sel), dtype=net.dtype)
    work = _PingPong(min(chunk, len(sel)) * _chain_map_elements(net, idx, steps), net.dtype)
    for start in range(0, len(sel), chunk):
        part = sel[start:start + chunk]
        out[start:start + len(part)], bias[start:start + len(part)] = _decode_chunk(
            net, idx, steps, part, unpool, threads, want_bias, work)
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
    filters are decoded in chunks that fit, and a MemoryError names the bytes needed otherwise.
    With "nearest" or "adjoint" unpooling, the layer recursion of :func:`decode_all` is used
    instead of the chain when its FLOP estimate is lower and it fits the memory limit (many
    filters of a layer); both agree to rounding.
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

def _decode_recursive(net, idx, sel, unpool, threads, limit):
    """Decoded filters ``sel`` of conv layer ``idx`` by the layer recursion, or None.

    None when the recursion does not apply (bilinear, bicubic), would exceed ``limit`` bytes, or
    costs more FLOPs than the chain for these filters (few filters of a deep layer).
    """
    if unpool not in _recursive.RECURSIVE_METHODS:
        return None
    flops, peak = _recursive.recursive_cost(net, idx, len(sel))
    if peak > limit or flops >= _recursive.chain_cost(net, idx, len(sel)):
        return None
    top = None if len(sel) == net.layers[idx].num_filters and np.array_equal(
        sel, np.arange(len(sel))) else sel
    return _recursive.walk(net, idx, unpool, threads, top_filters=top)[idx]


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
