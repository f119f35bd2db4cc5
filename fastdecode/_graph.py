"""The graph of a :class:`fastdecode.Network`: which tensors each layer reads, the shapes and
geometry they carry, and the forward pass over the graph.

Tensor ``-1`` is the images; tensor ``i`` the output of layer ``i``. Every layer reads tensors
of layers before it, so the list order is a topological order.
"""

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
    uses = {IMAGE: 0}
    for i in order:
        uses[i] = 0
    for i in order:
        for s in net._inputs[i]:
            uses[s] += 1
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


def geometry(net, upto):
    """(stride, pad, receptive field) in image pixels at the output of layer ``upto``: the
    union box of its branches, each at its own offset; a ValueError where branches disagree
    on the stride or the geometry is not a correlation (above an upsampling)."""
    geo = {IMAGE: ((1, 1), (0, 0, 0, 0), (1, 1))}
    for i in ancestors(net._inputs, upto):
        layer = net.layers[i]
        ins = [geo[s] for s in net._inputs[i]]
        if layer.type == "upsample":
            raise ValueError("layer %r: the geometry above an upsampling (%s) is not a "
                             "correlation's; it is not supported yet"
                             % (printable(net.layers[upto].name), printable(layer.name)))
        if getattr(layer, "multi_input", False):
            if layer.type == "gate":
                ins = ins[:1]   # the gate is held constant: only x's path
            strides = {g[0] for g in ins}
            if len(strides) > 1:
                raise ValueError("%s layer %r: its inputs %s have different strides %s"
                                 % (layer.type, printable(layer.name),
                                    ", ".join(names_of(net.layers, net._inputs[i])),
                                    ", ".join("%dx%d" % g[0] for g in ins)))
            S = ins[0][0]
            top = min(-g[1][0] for g in ins)
            left = min(-g[1][2] for g in ins)
            bottom = max(-g[1][0] + g[2][0] for g in ins)
            right = max(-g[1][2] + g[2][1] for g in ins)
            R = (bottom - top, right - left)
            # bottom/right padding: that of the first branch, extended to the union box
            (_, (pt, pb, pl, pr), (rh, rw)) = ins[0]
            pb2 = pb + bottom - (-pt + rh)
            pr2 = pr + right - (-pl + rw)
            geo[i] = (S, (-top, pb2, -left, pr2), R)
            continue
        S, P, R = ins[0]
        kh, kw = layer.kernel
        sy, sx = layer.stride
        pt, pb, pl, pr = layer.pad
        R = (R[0] + (kh - 1) * S[0], R[1] + (kw - 1) * S[1])
        P = (P[0] + pt * S[0], P[1] + pb * S[0], P[2] + pl * S[1], P[3] + pr * S[1])
        geo[i] = ((S[0] * sy, S[1] * sx), P, R)
    return geo[upto]


def summary_inputs(net, i):
    """The names layer i reads, for :meth:`Network.summary`."""
    return ",".join(names_of(net.layers, net._inputs[i]))


def vector_shape(y):
    """(N, K) for a (N, K, 1, 1) vector output."""
    return np.reshape(y, y.shape[:2])
