"""The decoding chain: a conv layer's filters walked down to image space step by step.

A :class:`ChainPlan` lists the steps below the layer, top to bottom, as the layers describe
them by their ``decode_role``:

- "substitute" (a conv layer: ``dense_weights(dtype)``, ``stride``, ``kernel``, ``bias``,
  ``weights``, ``groups``): its weights substituted at its stride;
- "unpool" (a pooling layer: ``kernel``, ``stride``): the maps unpooled by the chain's
  :class:`.resample.UnpoolMethod`; a box unpooling merges with the substitution below it;
- "scale" (a per-channel affine map: ``scale_shift(dtype)``): the maps scaled per channel;
- "identity": passed through (activations, dropout, normalisations treated as identities).

Any other role (None) stops the decoding with an error naming the layer. A new layer type
plugs in by declaring one of these roles.
"""

import numpy as np

from .._validation import printable
from .layout import dense, pad_maps
from .resample import box_sum, unpool_into
from . import substitution
from .substitution import input_layout, prepared_weights, substitute_col2im, substitute_padded

#: What a layer does when decoding, by its ``decode_role`` (see the module's docstring).
ROLES = ("substitute", "unpool", "scale", "identity")


def chain_layers(layers):
    """Layers (bottom to top) that change the decoded map, top to bottom, with an error for a
    layer decoding cannot pass."""
    steps = []
    for layer in reversed(layers):
        role = getattr(layer, "decode_role", None)
        if role not in ROLES:
            raise ValueError("cannot decode through layer %r of type %s"
                             % (printable(layer.name), layer.type))
        if role != "identity":
            steps.append(layer)
    return steps


def weighted_channel_sums(D, weights):
    """sum_j weights[j] * sum_{pixels} D[f, j, ...] for each f, in float64 (D (F, C, ...)).

    Row by row (no matrix product), so a filter's value has the same bits whichever filters are
    decoded with it.
    """
    F, C = D.shape[:2]
    sums = D.reshape(F, C, -1).sum(axis=2, dtype=np.float64)
    return (sums * np.asarray(weights, np.float64)).sum(axis=1)


class Step:
    """One step of a decoding chain with the per-filter shapes (C, H, W) it reads and writes.

    kind "substitute" (weights (J, C, kh, kw) at ``stride``; ``bias_layer`` the conv layer whose
    bias the decoded bias collects, times ``box_sum`` when a box unpooling is merged in),
    "unpool" (a pooling layer) or "scale". ``needs``: the padded layout (P, off) the step reads,
    or None for dense maps; ``writes``: the layout it writes (substitutions by phased GEMMs or
    by Winograd's method can write the padded maps that the next step reads); ``path``: the form
    of a substitution (see :func:`.substitution.substitution_path`).
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
                w = box_sum(w, size, self.layer.stride, scale, threads)
            self._weights = np.ascontiguousarray(w)
        return self._weights

    def prepared_weights(self, dtype, threads):
        """The weights in the layout of the step's substitution form (made once)."""
        if self._prepared is None:
            self._prepared = prepared_weights(self.path, self.weights(dtype, threads),
                                              self.stride, threads)
        return self._prepared


def _plane_elements(shape, layout):
    C, H, W = shape
    return C * (H * W if layout is None else layout[1] + H * layout[0])


def _conv_channels(conv):
    """Input channels of a conv layer's dense weights (groups expanded)."""
    return conv.weights.shape[1] * conv.groups


class ChainPlan:
    """The steps decoding conv layer ``idx`` of ``net`` walks through, top to bottom, with merged
    box unpoolings, the kernel and the memory layout of each step, and the memory it needs.

    unpool: a :class:`.resample.UnpoolMethod`. The steps convert (and merge) their weights when
    first used, once for all chunks of filters.
    """

    def __init__(self, net, idx, unpool):
        self.net, self.idx, self.unpool, self.dtype = net, idx, unpool, net.dtype
        layers = chain_layers(net.layers[:idx])
        top = net.layers[idx]
        shape = (_conv_channels(top),) + tuple(top.kernel)
        self.top_shape = shape
        self.steps = []
        i = 0
        while i < len(layers):
            layer = layers[i]
            role = layer.decode_role
            below = layers[i + 1] if i + 1 < len(layers) else None
            merge = (role == "unpool" and unpool.box and below is not None
                     and below.decode_role == "substitute")
            if role == "substitute" or merge:
                conv = below if merge else layer
                C, (kh, kw) = shape[0], conv.kernel
                C_out = _conv_channels(conv)
                stride, box, box_sum_ = conv.stride, None, 1.0
                if merge:  # unpool then substitute: one substitution
                    (fy, fx), (ph, pw) = layer.stride, layer.kernel
                    scale = unpool.box_scale(layer.kernel)
                    kh, kw = stride[0] * (ph - 1) + kh, stride[1] * (pw - 1) + kw
                    stride = (fy * stride[0], fx * stride[1])
                    box, box_sum_ = (layer.kernel, scale), ph * pw * scale
                    i += 1
                _, H, W = shape
                step = Step("substitute", conv, shape,
                            (C_out, (H - 1) * stride[0] + kh, (W - 1) * stride[1] + kw))
                step.kernel, step.stride, step.box, step.box_sum = (kh, kw), stride, box, box_sum_
                step.bias_layer = conv if conv.bias is not None else None
                step.path = substitution.substitution_path(C, H, W, C_out, kh, kw, *stride,
                                              net.dtype.itemsize)
                step.needs = input_layout(step.path, W, kw, stride[1])
            elif role == "unpool":
                (fy, fx), (ph, pw) = layer.stride, layer.kernel
                C, H, W = shape
                step = Step("unpool", layer, shape, (C, (H - 1) * fy + ph, (W - 1) * fx + pw))
            else:
                step = Step("scale", layer, shape, shape)
            self.steps.append(step)
            shape = step.shape_out
            i += 1
        # a phased or Winograd substitution writes the layout the next step reads (a scaling
        # passes it on)
        needed = None
        for step in reversed(self.steps):
            if step.kind == "scale":
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
                                    step.writes if step.kind != "scale" else step.needs)
            largest = max(largest, n_in, n_out)
            if step.kind == "unpool":
                extra = max(extra, n_out)   # the resampling's intermediate rows
            elif step.path == "col2im":
                extra = max(extra, n_in)    # col2im reads a transposed copy of its input
        self.max_elements = largest
        self.bytes_per_filter = (2 * largest + extra) * net.dtype.itemsize


def _to_layout(maps, layout, ws, reserve, threads):
    """PaddedMaps ``maps`` in ``layout`` ((P, off), or None: dense), padded into the workspace
    ``ws`` if they are dense (a phased or Winograd substitution writes the layout its next step
    reads itself)."""
    buf, H, W, P, off = maps
    if layout is None or (P, off) == layout:
        assert layout is not None or (P == W and off == 0), "padded maps where dense are read"
        return maps
    assert P == W and off == 0, "padded maps in another layout than the next step reads"
    F, C = buf.shape[:2]
    P, off = layout
    return pad_maps(buf.reshape(F, C, H, W), P, off, threads,
                    out=ws.alternate("chain", (F, C, off + H * P), buf.dtype, reserve=reserve))


def decode_chunk(plan, sel, threads, want_bias, ws, reserve=0):
    """Decoded filters ``sel`` (F,) by the chain, and their decoded biases (F,) (zeros unless
    ``want_bias``). The steps write in turn into two arrays of the workspace ``ws`` (of at
    least ``reserve`` elements each): the result may be a view of one, valid until ``ws``
    hands it out again."""
    conv = plan.net.layers[plan.idx]
    D = np.ascontiguousarray(conv.dense_weights(plan.dtype)[sel])
    F = len(sel)
    bias = np.zeros(F, dtype=np.float64)
    if want_bias and conv.bias is not None:
        bias += conv.bias[sel]

    def take(shape):
        return ws.alternate("chain", shape, plan.dtype, reserve=reserve)
    C, H, W = plan.top_shape
    maps = dense(D.reshape(F, C, H, W))
    for step in plan.steps:
        maps = _to_layout(maps, step.needs, ws, reserve, threads)
        C, H, W = step.shape_out
        if step.kind == "substitute":
            if want_bias and step.bias_layer is not None:
                bias += step.box_sum * weighted_channel_sums(maps.buf, step.bias_layer.bias)
            (sy, sx), kernel = step.stride, step.kernel
            if step.path != "col2im":
                P, off = step.writes if step.writes is not None else (W, 0)
                maps = substitute_padded(step.path, maps,
                                         step.prepared_weights(plan.dtype, threads), kernel,
                                         (sy, sx), take((F, C, off + H * P)), P, off, threads)
            else:
                J, Hi, Wi = step.shape_in
                out = take((F, C, H, W))
                substitute_col2im(maps.buf.reshape(F, J, Hi, Wi),
                                  step.weights(plan.dtype, threads), out, sy, sx, threads,
                                  zero=True)
                maps = dense(out)
        elif step.kind == "unpool":
            (fy, fx), (ph, pw) = step.layer.stride, step.layer.kernel
            Ci, Hi, Wi = step.shape_in
            out = take((F, C, H, W))
            unpool_into(maps.buf.reshape(F, Ci, Hi, Wi), fy, fx, ph, pw, plan.unpool, threads,
                        out=out)
            maps = dense(out)
        else:
            a, c = step.layer.scale_shift(np.float64)
            if want_bias:
                bias += weighted_channel_sums(maps.buf, c)
            out = take(maps.buf.shape)
            np.multiply(maps.buf, a.astype(plan.dtype)[None, :, None], out=out)
            maps = maps._replace(buf=out)
    maps = _to_layout(maps, None, ws, reserve, threads)
    C, H, W = plan.out_shape
    return maps.buf.reshape(F, C, H, W), bias.astype(plan.dtype)
