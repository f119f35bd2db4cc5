"""The decoded filters' correlations with images at many layers in one pass, without the
decoded filters: the linear twin run on a padded canvas.

With a box unpooling ("nearest" or "adjoint"), correlating an image with the decoded filter of
channel k at layer L, at L's cumulative stride and padding, gives the response of channel k of
the network's linear twin (activations the identity, batch normalisation its scale, pools sum
pools times the unpooling's box value, convolutions without bias, a gate its held value) when
the twin has no padding of its own: all the padding is moved to the image. Each unit of that
twin sees exactly its receptive window, so every unit is an interior one and the correlation
identity is exact everywhere. One pass of the twin over an image padded by the largest
cumulative padding yields every layer's correlations D at once: unit y of layer L is the twin's
unit ``y + d_L`` where ``d_L`` follows from the canvas padding through each layer's stride and
padding. It costs a forward pass over a larger canvas, where correlating with decoded filters
of a deep layer (hundreds of pixels wide) costs thousands.

:func:`plan` says whether the twin applies (box unpooling; conv, pool, batch normalisation,
elementwise activation, add, concatenation and gate layers; the grids aligned) and
:func:`responses` runs it.
"""

from collections import namedtuple

import numpy as np

from .. import ops
from .._graph import use_counts

IMAGE = -1

#: Layer types the twin runs (besides those with decode_role "identity" or "scale").
_TYPES = ("conv", "pool", "add", "concat", "gate")

Plan = namedtuple("Plan", ["order", "sources", "pad", "shift", "sizes", "grids", "bytes"])
Plan.__doc__ = """How to run the twin: layers in order, each one's twin inputs, the canvas padding
(top, bottom, left, right), per tensor the twin index (rows, cols) of the network's unit (0, 0),
the twin tensors' (C, H, W), the shown layers' grids (Ho, Wo), and the bytes of the largest
twin tensor of one image."""


def _sources(net, i):
    layer = net.layers[i]
    srcs = list(net._inputs[i])
    return srcs[:1] if layer.type == "gate" else srcs


def _supported(layer):
    return layer.type in _TYPES or layer.decode_role in ("identity", "scale")


def _needs(net, keep):
    """The layers the twin runs to reach the layers ``keep``."""
    need = set(keep)
    for i in range(max(keep), -1, -1):
        if i in need:
            need.update(s for s in _sources(net, i) if s != IMAGE)
    return need


def plan(net, keep, unpool, image_shape):
    """A :class:`Plan` giving the decoded filters' correlations at those of the layers ``keep``
    (indices of decodable layers) that the twin reaches (``Plan.grids`` names them), for images
    of ``image_shape`` (C, H, W); None when it reaches none of them."""
    if unpool not in ("nearest", "adjoint"):
        return None
    keep = [k for k in keep if all(_supported(net.layers[j]) for j in _needs(net, [k]))]
    if not keep:
        return None
    order = sorted(_needs(net, keep))
    one = (1,) + tuple(image_shape)
    grids = {i: net.output_shape(one, upto=i)[2:] for i in keep}
    top = max(net.padding(i)[0] for i in keep)
    left = max(net.padding(i)[2] for i in keep)
    bottom = max(net.padding(i)[1] for i in keep)
    right = max(net.padding(i)[3] for i in keep)
    stride = max(max(net.stride(i)) for i in keep)
    for extra in range(stride):  # a larger canvas may align grids that a smaller one cannot
        p = (top + extra, bottom + stride, left + extra, right + stride)
        found = _walk_shapes(net, order, keep, grids, p, image_shape)
        if found is not None:
            shift, sizes = found
            biggest = max(int(np.prod(s)) for s in sizes.values()) * net.dtype.itemsize
            return Plan(order, {i: _sources(net, i) for i in order}, p, shift, sizes, grids,
                        biggest)
    return None


def _walk_shapes(net, order, keep, grids, pad, image_shape):
    """Per tensor its shift and twin shape on a canvas padded by ``pad``, or None when a grid
    does not align (a shift not whole) or a shown layer's grid does not fit."""
    C, H, W = image_shape
    shift = {IMAGE: (pad[0], pad[2])}
    sizes = {IMAGE: (C, H + pad[0] + pad[1], W + pad[2] + pad[3])}
    for i in order:
        layer = net.layers[i]
        srcs = _sources(net, i)
        if layer.type in ("add", "concat"):
            d = tuple(min(shift[s][a] for s in srcs) for a in (0, 1))
            n = tuple(min(sizes[s][1 + a] - (shift[s][a] - d[a]) for s in srcs) for a in (0, 1))
            c = (sum(sizes[s][0] for s in srcs) if layer.type == "concat"
                 else sizes[srcs[0]][0])
            shift[i], sizes[i] = d, (c,) + n
        elif layer.type in ("conv", "pool"):
            (d0, d1), (c, h, w) = shift[srcs[0]], sizes[srcs[0]]
            pt, _, pl, _ = layer.pad
            (sy, sx), (kh, kw) = layer.stride, layer.kernel
            if (d0 - pt) % sy or (d1 - pl) % sx or d0 < pt or d1 < pl or h < kh or w < kw:
                return None
            k = layer.weights.shape[0] if layer.type == "conv" else c
            shift[i] = ((d0 - pt) // sy, (d1 - pl) // sx)
            sizes[i] = (k, (h - kh) // sy + 1, (w - kw) // sx + 1)
        else:
            shift[i], sizes[i] = shift[srcs[0]], sizes[srcs[0]]
        if i in keep:
            (d0, d1), (ho, wo) = shift[i], grids[i]
            if d0 + ho > sizes[i][1] or d1 + wo > sizes[i][2]:
                return None
    return shift, sizes


def _conv(layer, x, threads):
    w = layer.dilated_weights(x.dtype)
    g, C = layer.groups, w.shape[1]
    per = w.shape[0] // g
    if g > 1 and C == 1:  # depthwise: a sum of shifted maps, not a correlation per channel
        return _depthwise(w, x if per == 1 else np.repeat(x, per, axis=1), layer.stride)
    parts = [ops.correlate_finite(x[:, j * C:(j + 1) * C], w[j * per:(j + 1) * per],
                                  stride=layer.stride, pad=0, n_threads=threads,
                                  finite_inputs=True)[0] for j in range(g)]
    return parts[0] if g == 1 else np.concatenate(parts, axis=1)


def _depthwise(w, x, stride):
    """Channel k of x (N, K, H, W) correlated with w[k, 0] (K, 1, kh, kw), valid, at
    ``stride``."""
    K, _, kh, kw = w.shape
    (sy, sx), (H, W) = stride, x.shape[2:]
    ho, wo = (H - kh) // sy + 1, (W - kw) // sx + 1
    y = np.zeros((x.shape[0], K, ho, wo), dtype=x.dtype)
    for u in range(kh):
        for v in range(kw):
            y += w[None, :, 0, u, v, None, None] * x[:, :, u:u + sy * (ho - 1) + 1:sy,
                                                    v:v + sx * (wo - 1) + 1:sx]
    return y


def _crop(x, shift, d, n):
    oy, ox = shift[0] - d[0], shift[1] - d[1]
    return x[:, :, oy:oy + n[0], ox:ox + n[1]]


def responses(net, tw, x, unpool, threads):
    """{layer index: D (N, K, Ho, Wo)} of the shown layers for checked images x (N, C, H, W):
    the correlations of x with the layers' decoded filters at their cumulative stride and
    padding, without decoded bias."""
    method = ops.unpool_method(unpool)
    pt, pb, pl, pr = tw.pad
    n, C, H, W = x.shape
    canvas = np.zeros((n, C, H + pt + pb, W + pl + pr), dtype=x.dtype)
    canvas[:, :, pt:pt + H, pl:pl + W] = x
    uses = use_counts(tw.sources, tw.order)
    tensors = {IMAGE: canvas}
    out = {}
    for i in tw.order:
        layer = net.layers[i]
        srcs = tw.sources[i]
        if layer.type in ("add", "concat"):
            d, size = tw.shift[i], tw.sizes[i][1:]
            parts = [_crop(tensors[s], tw.shift[s], d, size) for s in srcs]
            if layer.type == "add":
                y = parts[0].copy()
                for p in parts[1:]:
                    y += p
            else:
                y = np.concatenate(parts, axis=1)
        else:
            xin = tensors[srcs[0]]
            if layer.type == "conv":
                y = _conv(layer, xin, threads)
            elif layer.type == "pool":
                kh, kw = layer.kernel
                y = ops.pool(xin, "avg", size=layer.kernel, stride=layer.stride, pad=0,
                             n_threads=threads)
                y *= x.dtype.type(kh * kw * method.box_scale(layer.kernel))
            elif layer.type == "gate":
                h = layer.hold.astype(x.dtype)
                y = xin * (h[None, :, None, None] if h.size > 1 else h[0])
            elif layer.decode_role == "scale":
                a, _ = layer.scale_shift(x.dtype)
                y = xin * a[None, :, None, None]
            else:
                y = xin
        for s in set(srcs):
            uses[s] -= srcs.count(s)
            if uses[s] == 0:
                del tensors[s]
        tensors[i] = y
        if i in tw.grids:
            (d0, d1), (ho, wo) = tw.shift[i], tw.grids[i]
            out[i] = np.ascontiguousarray(y[:, :, d0:d0 + ho, d1:d1 + wo])
        if uses[i] == 0:
            del tensors[i]
    return out
