"""The graph of a :class:`fastdecode.Network`: which tensors each layer reads, the shapes and
geometry they carry, and the forward pass over the graph.

Tensor ``-1`` is the images; tensor ``i`` the output of layer ``i``. Every layer reads tensors
of layers before it, so the list order is a topological order.
"""

import math
from collections import namedtuple

import numpy as np

from ._validation import check_bytes, printable

IMAGE = -1


def resolve_inputs(layers):
    """For each layer, the tuple of tensor indices it reads; ValueError for an unknown or a
    later name, or a wrong count of inputs."""
    index = {}
    resolved = []
    for i, layer in enumerate(layers):
        names = getattr(layer, "inputs", None)
        multi = getattr(layer, "multi_input", False)
        if names is None:
            if multi:
                raise ValueError("%s layer %r needs inputs=" % (layer.type, printable(layer.name)))
            resolved.append((i - 1,))
        else:
            if not multi and len(names) != 1:
                raise ValueError("layer %r (%s) reads one input, got inputs=%r"
                                 % (printable(layer.name), layer.type, names))
            srcs = []
            for n in names:
                if n == "input":
                    srcs.append(IMAGE)
                elif n in index:
                    srcs.append(index[n])
                else:
                    later = any(l.name == n for l in layers[i + 1:])
                    raise ValueError(
                        "layer %r reads %r, which is %s; inputs must name earlier layers or "
                        "'input' (earlier layers: %s)"
                        % (printable(layer.name), printable(n),
                           "a later layer" if later else "not a layer of the network",
                           ", ".join(printable(l.name) for l in layers[:i]) or "none"))
            resolved.append(tuple(srcs))
        index[layer.name] = i
    return resolved


def is_chain(layers, inputs):
    """Whether every layer reads the one before it (the images for the first)."""
    return all(srcs == (i - 1,) and not getattr(l, "multi_input", False)
               for i, (l, srcs) in enumerate(zip(layers, inputs)))


def ancestors(inputs, last):
    """Sorted indices of the layers that ``last`` depends on, itself included."""
    need = {last}
    for i in range(last, -1, -1):
        if i in need:
            need.update(s for s in inputs[i] if s != IMAGE)
    return sorted(need)


def use_counts(inputs, order):
    """{tensor: how many times the layers ``order`` read it}, the image (IMAGE) and every layer
    of ``order`` included (0 when none of them reads it): a walk that decrements a tensor's count
    at each read frees it when the count reaches 0."""
    uses = dict.fromkeys([IMAGE] + list(order), 0)
    for i in order:
        for s in inputs[i]:
            uses[s] += 1
    return uses


def names_of(layers, srcs):
    return tuple("input" if s == IMAGE else layers[s].name for s in srcs)


def propagate(net, layer, i, in_shapes, attach):
    """Layer i's output (C, H, W) (H, W None when unknown) for inputs of ``in_shapes``;
    ``attach``: fit the layer (channels, groups, size-bound windows) at construction."""
    srcs = net._inputs[i]
    if getattr(layer, "multi_input", False):
        return tuple(layer.merge_shape(in_shapes, names_of(net.layers, srcs)))
    C, H, W = in_shapes[0]
    if attach:
        C_out = layer.attach(C)
        if getattr(layer, "needs_size", False):
            if H is None:
                raise ValueError("layer %r (%s) works on the whole input map: pass "
                                 "Network(..., input_shape=(C, H, W))"
                                 % (printable(layer.name), layer.type))
            layer.fit((C, H, W))
    else:
        C_out = net._shapes[i][0]
    if H is None:
        return (C_out, None, None)
    return (C_out,) + tuple(layer.output_size((H, W)))


def build(net, input_shape):
    """Resolve ``net``'s inputs, shapes and vector outputs (at construction)."""
    net._inputs = resolve_inputs(net.layers)
    net.is_chain = is_chain(net.layers, net._inputs)
    net._upsampled = any(l.type == "upsample" for l in net.layers)
    image = (net.input_channels,) + (tuple(input_shape[1:]) if input_shape else (None, None))
    shapes, vector = [], []
    for i, layer in enumerate(net.layers):
        ins = [image if s == IMAGE else shapes[s] for s in net._inputs[i]]
        shape = propagate(net, layer, i, ins, attach=True)
        shapes.append(shape)
        net._shapes = shapes  # propagate reads the shapes so far
        role = getattr(layer, "decode_role", None)
        if layer.type == "linear":
            vector.append(True)
        elif (role in ("identity", "scale") or getattr(layer, "multi_input", False)
              or layer.type == "softmax"):   # shape-preserving: a vector stays a vector
            vector.append(all(s != IMAGE and vector[s] for s in net._inputs[i]))
        else:
            vector.append(False)
    net._shapes = shapes
    net._channels = [s[0] for s in shapes]
    net._vector = vector
    consumers = [[] for _ in net.layers]
    for i, srcs in enumerate(net._inputs):
        for s in srcs:
            if s != IMAGE:
                consumers[s].append(i)
    net._consumers = consumers


def check_sizes(net, shape, last, memory_limit, name):
    """Refuse images of ``shape`` that the layers up to ``last`` cannot take (graph)."""
    N, C, H, W = shape
    sizes = {IMAGE: (C, H, W)}
    for i in ancestors(net._inputs, last):
        layer = net.layers[i]
        ins = [sizes[s] for s in net._inputs[i]]
        if not getattr(layer, "multi_input", False):
            h, w = ins[0][1:]
            if layer.type == "linear":
                layer.check_size((N,) + ins[0])
            new = layer.output_size((h, w))
            if new[0] < 1 or new[1] < 1:
                raise ValueError("images of %dx%d are too small for layer %r (%s): its input "
                                 "would be %dx%d" % (H, W, printable(layer.name),
                                                     layer.describe(), h, w))
        out = propagate(net, layer, i, ins, attach=False)
        check_bytes("forward output of layer %r" % printable(layer.name), (N,) + out,
                    net.dtype, memory_limit)
        sizes[i] = out


def forward(net, x, own, last, threads, memory_limit):
    """The output of layer ``last`` for checked images x, keeping only the tensors still
    needed (each freed when its last consumer has run); ``own``: whether x is the pass's own
    array (layers that work in place may then overwrite it)."""
    order = ancestors(net._inputs, last)
    uses = use_counts(net._inputs, order)
    tensors, owned = {IMAGE: x}, {IMAGE: own}
    del x
    for i in order:
        layer = net.layers[i]
        srcs = net._inputs[i]
        for s in srcs:
            uses[s] -= 1
        if getattr(layer, "multi_input", False):
            y, finite = layer.run([tensors[s] for s in srcs], threads, memory_limit=memory_limit)
            if not finite:
                raise layer.overflow_error(net.dtype)
            mine = True
        else:
            s = srcs[0]
            xin = tensors[s]
            last_use = uses[s] == 0
            in_place = (layer.in_place and owned[s] and last_use and xin.flags.c_contiguous
                        and xin.flags.writeable)
            y = net.forward_layer(i, xin, threads, memory_limit=memory_limit,
                                  out=xin if in_place else None)
            mine = (owned[s] and last_use) if y is xin else layer.new_output
            del xin
        for s in set(srcs):
            if uses[s] == 0:
                del tensors[s]
        tensors[i], owned[i] = y, mine
        del y
    return tensors[last]


class Axis(namedtuple("Axis", "p T boxes c e")):
    """The geometry of a tensor along one axis. Unit ``u = q * p + r`` (phase r) reads the
    image pixels ``[boxes[r][0] + q * T, boxes[r][1] + q * T)`` (the bounding box of the
    pixels it depends on, padding included); above an upsampling by f, units of different
    phases read differently placed windows, so ``p`` (the period, in units) is f times the
    input's and ``T`` (image pixels per period) stays. For images of n pixels the tensor has
    ``p * floor((n + c) / T) + e`` units."""

    def span(self, a, b):
        """(top, bottom) of the pixels read by units a..b (absolute indices, a <= b)."""
        p, T, boxes = self.p, self.T, self.boxes
        top = min(boxes[m % p][0] + (m // p) * T for m in range(a, min(b, a + p - 1) + 1))
        bottom = max(boxes[m % p][1] + (m // p) * T for m in range(max(a, b - p + 1), b + 1))
        return top, bottom

    def stride_pad_field(self):
        """(stride, (pad before, pad after), field) of the correlation of the images with the
        union box of the phases, at the stride T: it gives the units of phase 0."""
        top = min(b[0] for b in self.boxes)
        field = max(b[1] for b in self.boxes) - top
        before = -top
        after = self.c + (-(-self.e // self.p) - 1) * self.T - before + field
        return self.T, (before, after), field


IMAGE_AXIS = Axis(1, 1, ((0, 1),), 0, 0)


def upsample_taps(r, f, method):
    """[(input unit offset, weight)] read by output unit r (0 <= r < f) of an upsampling by
    f, away from the map's edges; output unit ``q * f + r`` reads input units
    ``q + offset``. Zero weights are left out."""
    if method == "nearest":
        return [(0, 1.0)]
    num = 2 * r + 1 - f      # source position (r + 0.5) / f - 0.5 = num / (2 f)
    i0, frac = num // (2 * f), (num % (2 * f)) / (2.0 * f)
    return [(o, w) for o, w in ((i0, 1.0 - frac), (i0 + 1, frac)) if w != 0.0]


def _stride_text(ax_rows, ax_cols):
    def one(ax):
        return "%d" % ax.T if ax.p == 1 else "%d/%d" % (ax.T, ax.p)
    return "%sx%s" % (one(ax_rows), one(ax_cols))


def _window_axis(net, i, ax, k, s, pt, pb, size_bound):
    layer = net.layers[i]
    if size_bound:      # the window is the whole map: one unit
        n = (k - ax.e) // ax.p
        return Axis(1, ax.T, (ax.span(0, k - 1),), ax.c, 1 - n)
    if ax.p == 1:
        p, T, c, e = 1, ax.T * s, ax.c + (ax.e + pt + pb - k) * ax.T, 1
    elif ax.p % s == 0:
        p, T, c, e = ax.p // s, ax.T, ax.c, (ax.e + pt + pb - k) // s + 1
    else:
        raise ValueError("layer %r (%s): its stride %d does not divide the period %d of its "
                         "input above an upsampling (units of %d phases read differently "
                         "placed windows); decoding it is not supported"
                         % (printable(layer.name), layer.describe(), s, ax.p, ax.p))
    boxes = tuple(ax.span(r * s - pt, r * s - pt + k - 1) for r in range(p))
    return Axis(p, T, boxes, c, e)


def _upsample_axis(ax, f, method):
    boxes = []
    for r in range(ax.p * f):
        ms = [r // f + o for o, _ in upsample_taps(r % f, f, method)]
        boxes.append(ax.span(min(ms), max(ms)))
    return Axis(ax.p * f, ax.T, tuple(boxes), ax.c, ax.e * f)


def _merge_axis(net, i, axes):
    layer = net.layers[i]
    first = axes[0]
    p = 1
    for a in axes:
        p = p * a.p // math.gcd(p, a.p)
    form = next((a for a in axes if a.p == p), None)
    if form is None:
        raise ValueError("%s layer %r: its inputs %s have periods %s above upsamplings, none "
                         "a multiple of the others; decoding it is not supported"
                         % (layer.type, printable(layer.name),
                            ", ".join(names_of(net.layers, net._inputs[i])),
                            ", ".join("%d" % a.p for a in axes)))
    boxes = []
    for r in range(p):
        spans = [a.span(r, r) for a in axes]
        boxes.append((min(s[0] for s in spans), max(s[1] for s in spans)))
    return Axis(p, first.T * p // first.p, tuple(boxes), form.c, form.e)


def axes(net, upto):
    """{tensor: (rows Axis, cols Axis)} for ``upto`` and the tensors it depends on; a
    ValueError where branches disagree on the stride, or for a strided layer above an
    upsampling whose stride does not divide the period."""
    geo = {IMAGE: (IMAGE_AXIS, IMAGE_AXIS)}
    for i in ancestors(net._inputs, upto):
        layer = net.layers[i]
        ins = [geo[s] for s in net._inputs[i]]
        if layer.type == "upsample":
            geo[i] = tuple(_upsample_axis(ins[0][d], layer.factor[d], layer.method)
                           for d in (0, 1))
        elif getattr(layer, "multi_input", False):
            if layer.type == "gate":
                ins = ins[:1]   # the gate is held constant: only x's path
            if any(a.T * ins[0][d].p != ins[0][d].T * a.p for g in ins
                   for d, a in enumerate(g)):
                raise ValueError("%s layer %r: its inputs %s have different strides %s"
                                 % (layer.type, printable(layer.name),
                                    ", ".join(names_of(net.layers, net._inputs[i])),
                                    ", ".join(_stride_text(*g) for g in ins)))
            geo[i] = tuple(_merge_axis(net, i, [g[d] for g in ins]) for d in (0, 1))
        else:
            bound = getattr(layer, "needs_size", False)
            geo[i] = tuple(_window_axis(net, i, ins[0][d], layer.kernel[d], layer.stride[d],
                                        layer.pad[2 * d], layer.pad[2 * d + 1], bound)
                           for d in (0, 1))
    return geo


def geometry(net, upto):
    """(stride, pad, receptive field, phases) in image pixels at the output of layer
    ``upto``: the union box of its branches (and of its phases above an upsampling), each
    at its own offset."""
    rows, cols = axes(net, upto)[upto]
    (Sy, (pt, pb), Ry), (Sx, (pl, pr), Rx) = rows.stride_pad_field(), cols.stride_pad_field()
    return (Sy, Sx), (pt, pb, pl, pr), (Ry, Rx), (rows.p, cols.p)


def above_upsampling(net, i):
    """Whether layer i is an upsampling or reads one, directly or not."""
    return any(net.layers[j].type == "upsample" for j in ancestors(net._inputs, i))


def summary_inputs(net, i):
    """The names layer i reads, for :meth:`Network.summary`."""
    return ",".join(names_of(net.layers, net._inputs[i]))


def vector_shape(y):
    """(N, K) for a (N, K, 1, 1) vector output."""
    return np.reshape(y, y.shape[:2])
