"""The reverse sweep: decoding a layer of a graph network down to image space.

Channel k of layer L starts as a unit at L's output. The layers are walked in reverse
topological order (their list order, reversed), each mapping the decoded maps at its output,
(F, C, h, w) placed at an offset (rows, cols) in that tensor's pixels, to maps at its inputs
by its ``decode_role`` (see :mod:`.chain`) or its merge type:

- "substitute": the weights substituted at the stride (a conv layer; a linear layer as the conv
  whose kernel is its whole input map);
- "unpool": unpooled by the :class:`.resample.UnpoolMethod` (a global pool: a window that is the
  whole map);
- "scale": scaled per channel; "identity": passed through;
- add: the same maps to each input; concat: split by channels; gate: scaled by the held value,
  to x only;
- upsample: its transpose away from the map's edges (each output unit's interpolation
  weights, by its phase, sent back to the input units it reads).

Where a tensor feeds several layers, the maps coming back are summed on their union box, each
at its offset. The decoded biases collect, at each layer with a bias (or shift), the bias
times the sum of the decoded map at its output, per channel.
"""

import numpy as np

from .._validation import printable
from .chain import ROLES, weighted_channel_sums
from .resample import unpool_into
from .substitution import substitute_into

IMAGE = -1


def _refuse(net, layer, top):
    return ValueError("cannot decode layer %r through layer %r of type %s"
                      % (printable(net.layers[top].name), printable(layer.name), layer.type))


def check_decodable(net, top):
    """Raise ValueError naming the first layer on ``top``'s paths that decoding cannot pass."""
    from .._graph import ancestors
    for i in reversed(ancestors(net._inputs, top)):
        layer = net.layers[i]
        if layer.type in ("add", "concat", "gate", "linear", "upsample"):
            continue
        if getattr(layer, "decode_role", None) not in ROLES:
            raise _refuse(net, layer, top)


def _sum_at_offsets(parts, dtype):
    """Sum of [(maps (F, C, h, w), (oy, ox))] on their union box: (maps, offset)."""
    if len(parts) == 1:
        return parts[0]
    top = min(o[0] for _, o in parts)
    left = min(o[1] for _, o in parts)
    bottom = max(o[0] + m.shape[2] for m, o in parts)
    right = max(o[1] + m.shape[3] for m, o in parts)
    F, C = parts[0][0].shape[:2]
    out = np.zeros((F, C, bottom - top, right - left), dtype=dtype)
    for m, (oy, ox) in parts:
        out[:, :, oy - top:oy - top + m.shape[2], ox - left:ox - left + m.shape[3]] += m
    return out, (top, left)


def _substitute(maps, weights, stride, threads, groups=1):
    """The dense weights (J, C, kh, kw) substituted at every pixel of maps (F, J, H, W); group
    by group for a grouped conv (its dense weights are zero across groups)."""
    F, J, H, W = maps.shape
    _, C, kh, kw = weights.shape
    shape = ((H - 1) * stride[0] + kh, (W - 1) * stride[1] + kw)
    if groups == 1:
        out = np.empty((F, C) + shape, dtype=maps.dtype)
        return substitute_into(np.ascontiguousarray(maps), np.ascontiguousarray(weights), out,
                               stride[0], stride[1], threads, zero=True)
    out = np.empty((F, C) + shape, dtype=maps.dtype)
    Jg, Cg = J // groups, C // groups
    part = np.empty((F, Cg) + shape, dtype=maps.dtype)
    for g in range(groups):
        substitute_into(np.ascontiguousarray(maps[:, g * Jg:(g + 1) * Jg]),
                        np.ascontiguousarray(weights[g * Jg:(g + 1) * Jg, g * Cg:(g + 1) * Cg]),
                        part, stride[0], stride[1], threads, zero=True)
        out[:, g * Cg:(g + 1) * Cg] = part
    return out


def _upsample_transpose(offset, n, f, method, dtype):
    """The transpose of an upsampling by f along one axis, away from the map's edges, for
    maps of n units from absolute output unit ``offset``: (matrix (m, n), input offset)."""
    from .._graph import upsample_taps
    taps = [upsample_taps(r, f, method) for r in range(f)]
    entries = [(y, (offset + y) // f + o, w) for y in range(n)
               for o, w in taps[(offset + y) % f]]
    first = min(m for _, m, _ in entries)
    last = max(m for _, m, _ in entries)
    a = np.zeros((last - first + 1, n), dtype=dtype)
    for y, m, w in entries:
        a[m - first, y] += w
    return a, first


def _reverse(net, i, maps, offset, unpool, threads, bias):
    """Layer i's decode step: [(tensor, maps, offset)] at its inputs; adds to ``bias``."""
    layer = net.layers[i]
    srcs = net._inputs[i]
    dtype = net.dtype
    kind = layer.type
    if kind == "add":
        return [(s, maps, offset) for s in srcs]
    if kind == "concat":
        out, c = [], 0
        for s in srcs:
            n = net._channels[s] if s != IMAGE else net.input_channels
            out.append((s, np.ascontiguousarray(maps[:, c:c + n]), offset))
            c += n
        return out
    if kind == "gate":
        hold = layer.hold.astype(dtype)
        h = hold[None, :, None, None] if hold.size > 1 else hold[0]
        return [(srcs[0], maps * h, offset)]
    if kind == "upsample":
        ay, oy = _upsample_transpose(offset[0], maps.shape[2], layer.factor[0], layer.method,
                                     dtype)
        ax, ox = _upsample_transpose(offset[1], maps.shape[3], layer.factor[1], layer.method,
                                     dtype)
        return [(srcs[0], np.ascontiguousarray(np.matmul(ay, np.matmul(maps, ax.T))),
                 (oy, ox))]
    role = "substitute" if kind == "linear" else layer.decode_role
    src = srcs[0]
    if role == "identity":
        return [(src, maps, offset)]
    if role == "scale":
        a, c = layer.scale_shift(np.float64)
        if bias is not None:
            bias += weighted_channel_sums(maps, c)
        return [(src, maps * a.astype(dtype)[None, :, None, None], offset)]
    pt, _, pl, _ = layer.pad
    sy, sx = layer.stride
    new_offset = (offset[0] * sy - pt, offset[1] * sx - pl)
    if role == "substitute":
        if bias is not None and layer.bias is not None:
            bias += weighted_channel_sums(maps, layer.bias)
        w = (layer.conv_weights() if kind == "linear" else layer.dense_weights())
        w = w.astype(dtype, copy=False)
        return [(src, _substitute(maps, w, (sy, sx), threads, getattr(layer, "groups", 1)),
                 new_offset)]
    # unpool
    ph, pw = layer.kernel
    return [(src, unpool_into(np.ascontiguousarray(maps), sy, sx, ph, pw, unpool, threads),
             new_offset)]


def decode_chunk(net, top, sel, unpool, threads, want_bias, phase=(0, 0)):
    """Decoded maps of channels ``sel`` of layer ``top`` at its unit ``phase`` (rows, cols):
    (maps (F, C0, h, w) at the image, offset (rows, cols) of their first pixel, biases (F,)
    in float64 or None). Offsets are absolute unit indices of each tensor, so that an
    upsampling knows the phase of the units it transposes."""
    from .._graph import ancestors
    F = len(sel)
    C = net._channels[top]
    start = np.zeros((F, C, 1, 1), dtype=net.dtype)
    start[np.arange(F), sel, 0, 0] = 1
    pending = {top: [(start, tuple(phase))]}
    bias = np.zeros(F) if want_bias else None
    for i in reversed(ancestors(net._inputs, top)):
        parts = pending.pop(i, None)
        if parts is None:
            continue
        maps, offset = _sum_at_offsets(parts, net.dtype)
        del parts
        for s, m, o in _reverse(net, i, maps, offset, unpool, threads, bias):
            pending.setdefault(s, []).append((m, o))
        del maps
    if IMAGE not in pending:   # nothing reaches the images (a gate's path only)
        C0 = net.input_channels
        return np.zeros((F, C0, 1, 1), dtype=net.dtype), (0, 0), bias
    maps, offset = _sum_at_offsets(pending.pop(IMAGE), net.dtype)
    return maps, offset, bias


def per_filter_elements(net, top):
    """An estimate of the elements one filter's maps take during the sweep: every tensor's
    decoded map held at once (a map at layer i's output covers the units of layer i inside
    the top's box, at most (R_top - R_i) // S_i + 2 per side). The substitution kernels'
    own buffers come on top, as for chains."""
    from .._graph import IMAGE, axes
    geo = axes(net, top)
    R = [g.stride_pad_field()[2] for g in geo[top]]
    total = net.input_channels * R[0] * R[1]
    for i, g in geo.items():
        if i == IMAGE:
            continue
        n = 1
        for d in (0, 1):   # p units per T pixels above an upsampling
            T, _, Ri = g[d].stride_pad_field()
            n *= max(0, R[d] - Ri) * g[d].p // T + 2 * g[d].p
        total += net._channels[i] * n
    return total
