"""The converters of :func:`fastdecode.from_torch`: one per ``torch.nn`` module type, function
and tensor method it covers, each turning one ``torch.fx`` node into fastdecode layers.

A converter gets the :class:`Builder` (which names and appends layers and knows the node being
converted and the shape PyTorch gave its result) and the node's arguments, where every traced
tensor is a :class:`Value` (the layer whose output it is) and everything that does not depend
on the input images is its concrete value (numbers, shapes, parameter tensors). It returns the
node's :class:`Value`. This module never imports torch: the builder hands it over.
"""

import inspect
import operator

import numpy as np

from .activations import (GELU, Clip, HardSigmoid, HardSwish, LeakyReLU, PReLU, ReLU6, SiLU,
                          Sigmoid, Tanh)
from .graph_layers import Add, Concat, Gate, GlobalPool, Linear, Upsample
from .layers import LRN, BatchNorm, Conv, Dropout, Pool, ReLU, Softmax


class Value:
    """A traced tensor: the output of layer ``layer`` (``"input"`` for the images), a map of
    ``shape`` (C, H, W); ``flat``: seen flattened as (N, C * H * W); ``pad``: zero padding
    (top, bottom, left, right) still to apply (``F.pad``), folded into the conv that reads it."""

    __slots__ = ("layer", "shape", "flat", "pad")

    def __init__(self, layer, shape, flat=False, pad=None):
        self.layer, self.shape, self.flat, self.pad = layer, tuple(shape), flat, pad

    def torch_shape(self, batch):
        """The shape PyTorch gives this tensor for a batch of ``batch``."""
        return (batch, int(np.prod(self.shape))) if self.flat else (batch,) + self.shape


class Builder:
    """The layers made so far, and the node being converted."""

    def __init__(self, torch, batch, dtype):
        self.torch, self.batch, self.dtype = torch, batch, dtype
        self.layers, self.names, self.expected = [], {"input"}, {}
        self.env, self.first = {}, {}
        self.node = self.shape = self.module = None

    # --- messages -------------------------------------------------------------------------
    def describe_target(self):
        n = self.node
        if n.op == "call_module":
            return "module %r (%s.%s)" % (n.target, type(self.module).__module__,
                                         type(self.module).__name__)
        if n.op == "output":
            return "the module's output"
        if n.op == "call_method":
            return "tensor method .%s()" % n.target
        return "function %s" % getattr(n.target, "__qualname__", getattr(n.target, "__name__",
                                                                         repr(n.target)))

    def error(self, what):
        """The ValueError for the node being converted."""
        return ValueError("from_torch: node %r, %s: %s" % (self.node.name, self.describe_target(),
                                                            what))

    # --- values ---------------------------------------------------------------------------
    def tensor(self, x, what="input"):
        """x as a traced tensor without pending padding."""
        if not isinstance(x, Value):
            raise self.error("its %s must be a tensor computed from the images, got %s"
                             % (what, type(x).__name__))
        if x.pad is not None:
            raise self.error("zero padding (F.pad, nn.ZeroPad2d) is supported only before a "
                             "convolution")
        return x

    def map(self, x, what="input"):
        """x as a traced (N, C, H, W) map."""
        x = self.tensor(x, what)
        if x.flat:
            raise self.error("its %s must be a 4-D map (N, C, H, W), got a flattened tensor "
                             "(N, %d)" % (what, np.prod(x.shape)))
        return x

    def channels(self, x):
        """The channels of x for a per-channel operation (a flattened x must be (N, C))."""
        if x.flat and x.shape[1:] != (1, 1):
            raise self.error("a per-channel operation on a flattened map of (C, H, W) = %s is "
                             "not supported" % (x.shape,))
        return x.shape[0]

    def array(self, t):
        """A parameter tensor as a numpy array of its own (never sharing the module's memory)."""
        a = t.detach().cpu()
        if a.dtype not in (self.torch.float32, self.torch.float64):
            a = a.to(self.torch.float32)
        return a.numpy().copy()

    # --- layers ---------------------------------------------------------------------------
    def emit(self, make, inputs, like=None):
        """Append the layer ``make(name=..., inputs=...)`` reading the values ``inputs``; returns
        its output Value (shaped as PyTorch's result; flattened as ``like`` when 2-D)."""
        node = self.node
        base = node.target if node.op == "call_module" else node.name
        name, k = base, 1
        while name in self.names:
            name, k = "%s_%d" % (base, k), k + 1
        self.names.add(name)
        names = tuple(x.layer for x in inputs)
        layer = make(name=name, inputs=names if len(names) > 1 or _multi(make) else names[0])
        self.layers.append(layer)
        s = self.shape
        if s is not None and len(s) == 4:
            out = Value(name, s[1:])
        elif s is not None and len(s) == 2 and like is not None and like.flat:
            out = Value(name, like.shape, flat=True)
        elif s is not None and len(s) == 2:
            out = Value(name, (s[1], 1, 1), flat=True)
        else:
            raise self.error("its result has shape %s; only 4-D maps (N, C, H, W) and vectors "
                             "(N, K) are supported" % (s,))
        if out.torch_shape(self.batch) != tuple(s):
            raise self.error("its result has shape %s, not the %s of its input"
                             % (tuple(s), like.torch_shape(self.batch) if like else "?"))
        self.expected[name] = out.shape
        return out

    def unary(self, make, x, inplace=False, per_channel=False):
        """An elementwise layer on x (kept flattened when x is)."""
        x = self.tensor(x)
        if per_channel:
            self.channels(x)
        out = self.emit(make, (x,), like=x)
        if inplace:
            self.rebind(x.layer, out.layer)
        return out

    def rebind(self, old, new):
        """After an in-place operation: every traced tensor that was layer ``old``'s output is
        now layer ``new``'s."""
        for node, v in self.env.items():
            if isinstance(v, Value) and v.layer == old:
                self.env[node] = Value(new, v.shape, v.flat, v.pad)


def _multi(make):
    return getattr(make, "multi", False)


def _merge(cls, **params):
    def make(**kw):
        return cls(**params, **kw)
    make.multi = True
    return make


def _layer(cls, *args, **params):
    return lambda **kw: cls(*args, **params, **kw)


def _bind(sig, args, kwargs, b):
    """args and kwargs bound to the parameters of the function ``sig`` (defaults applied)."""
    try:
        bound = inspect.signature(sig).bind(*args, **kwargs)
    except TypeError as exc:
        raise b.error("unexpected arguments (%s)" % exc) from None
    bound.apply_defaults()
    return bound.arguments


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _truthy(b, value, what):
    if not isinstance(value, (bool, int)):
        raise b.error("%s must be known when tracing, got %r" % (what, value))
    return bool(value)


# --- convolutions and linear layers --------------------------------------------------------

def conv(b, x, weights, bias, stride, padding, dilation, groups):
    """A Conv for ``F.conv2d``'s arguments, folding the pending padding of x."""
    x = x if isinstance(x, Value) and x.pad is not None else b.tensor(x)
    if x.flat:
        raise b.error("a convolution needs a 4-D map, got a flattened tensor")
    w = b.array(weights)
    if w.ndim != 4:
        raise b.error("only 2-D convolutions are supported (weights %s)" % (w.shape,))
    kh, kw = w.shape[2:]
    dilation = _pair(dilation)
    if isinstance(padding, str):
        if padding == "valid":
            pad = (0, 0, 0, 0)
        elif padding == "same":
            th, tw = dilation[0] * (kh - 1), dilation[1] * (kw - 1)
            pad = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
        else:
            raise b.error("padding %r is not supported" % (padding,))
    else:
        ph, pw = _pair(padding)
        pad = (ph, ph, pw, pw)
    if x.pad is not None:
        pad = tuple(p + q for p, q in zip(pad, x.pad))
    if groups < 1 or w.shape[1] * groups != x.shape[0]:
        raise b.error("weights %s with groups=%d do not fit an input of %d channels"
                      % (w.shape, groups, x.shape[0]))
    bias = None if bias is None else b.array(bias)
    return b.emit(_layer(Conv, w, bias, stride=_pair(stride), pad=pad, dilate=dilation), (x,))


def conv_module(b, m, x):
    if m.padding_mode != "zeros":
        raise b.error("padding_mode=%r is not supported (only zero padding)" % (m.padding_mode,))
    return conv(b, x, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups)


def conv_transpose_module(b, m, x):
    stride, out_pad, dil = _pair(m.stride), _pair(m.output_padding), _pair(m.dilation)
    if stride != (1, 1) or out_pad != (0, 0) or m.groups != 1 or m.padding_mode != "zeros":
        raise b.error("only a transposed convolution of stride 1, groups 1 and no output "
                      "padding is supported (it is then a convolution); this one has stride "
                      "%s, groups %d, output_padding %s" % (stride, m.groups, out_pad))
    kh, kw = m.weight.shape[2:]
    ph, pw = _pair(m.padding)
    pad = (dil[0] * (kh - 1) - ph, dil[1] * (kw - 1) - pw)
    if min(pad) < 0:
        raise b.error("padding %s larger than the kernel is not supported" % ((ph, pw),))
    weights = m.weight.detach().transpose(0, 1).flip(2, 3)
    return conv(b, x, weights, m.bias, 1, pad, dil, 1)


def linear(b, x, weights, bias):
    x = b.tensor(x)
    w = b.array(weights)
    if not x.flat:
        raise b.error("a linear layer on a 4-D map acts on its last dimension; flatten the "
                      "map first (torch.flatten(x, 1))")
    if w.ndim != 2 or w.shape[1] != np.prod(x.shape):
        raise b.error("weights %s do not fit an input of %d features"
                      % (w.shape, np.prod(x.shape)))
    return b.emit(_layer(Linear, w, None if bias is None else b.array(bias)), (x,))


def batch_norm(b, x, mean, var, weight, bias, eps):
    x = b.tensor(x)
    C = b.channels(x)
    if mean is None or var is None:
        raise b.error("batch normalisation without running statistics uses the batch's own "
                      "statistics; it is not supported")
    mean, var = b.array(mean).astype(np.float64), b.array(var).astype(np.float64)
    if mean.size != C:
        raise b.error("%d running means for %d channels" % (mean.size, C))
    gain = np.ones(C) if weight is None else b.array(weight)
    shift = np.zeros(C) if bias is None else b.array(bias)
    sigma = np.sqrt(var + float(eps))
    return b.emit(_layer(BatchNorm, gain, shift, mean, sigma), (x,), like=x)


def batch_norm_module(b, m, x):
    if not m.track_running_stats or m.running_mean is None:
        return batch_norm(b, x, None, None, None, None, 0)
    return batch_norm(b, x, m.running_mean, m.running_var, m.weight, m.bias, m.eps)


# --- pooling ------------------------------------------------------------------------------

def pool(b, x, method, kernel_size, stride, padding, dilation, ceil_mode, count_include_pad):
    x = b.map(x)
    if _pair(dilation) != (1, 1):
        raise b.error("pooling with dilation %s is not supported" % (dilation,))
    kernel = _pair(kernel_size)
    stride = kernel if stride is None or stride == [] or stride == () else _pair(stride)
    ph, pw = _pair(padding)
    cip = method == "avg" and bool(count_include_pad)
    return b.emit(_layer(Pool, method, size=kernel, stride=stride, pad=(ph, ph, pw, pw),
                         ceil_mode=bool(ceil_mode), count_include_pad=cip), (x,))


def max_pool_module(b, m, x):
    if m.return_indices:
        raise b.error("return_indices=True is not supported")
    return pool(b, x, "max", m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, False)


def avg_pool_module(b, m, x):
    if m.divisor_override:
        raise b.error("divisor_override is not supported")
    return pool(b, x, "avg", m.kernel_size, m.stride, m.padding, 1, m.ceil_mode,
                m.count_include_pad)


def adaptive_pool(b, x, method):
    """Adaptive pooling resolved for the traced size: global, or a pool of equal windows."""
    x = b.map(x)
    (H, W), (h, w) = x.shape[1:], b.shape[2:]
    if (h, w) == (H, W):
        return x
    if (h, w) == (1, 1):
        return b.emit(_layer(GlobalPool, method), (x,))
    if H % h or W % w:
        raise b.error("adaptive pooling from %dx%d to %dx%d has windows of unequal sizes; "
                      "only sizes that divide the input are supported" % (H, W, h, w))
    size = (H // h, W // w)
    return b.emit(_layer(Pool, method, size=size, stride=size), (x,))


def mean(b, x, dim=None, keepdim=False, dtype=None):
    x = b.map(x)
    dims = (dim,) if isinstance(dim, int) else tuple(dim or ())
    if sorted(d % 4 for d in dims) != [2, 3] or dtype is not None:
        raise b.error("only the mean over the spatial dimensions (dim=(2, 3)) is supported, "
                      "got dim=%r" % (dim,))
    return b.emit(_layer(GlobalPool, "avg"), (x,))


# --- merges, shapes, padding ----------------------------------------------------------------

def add(b, x, y, alpha=1):
    if not isinstance(x, Value) or not isinstance(y, Value):
        return affine(b, x, y, "add")
    x, y = b.tensor(x), b.tensor(y)
    if alpha != 1:
        raise b.error("alpha=%r is not supported" % (alpha,))
    if x.shape != y.shape or x.flat != y.flat:
        raise b.error("adding tensors of shapes %s and %s (broadcasting) is not supported"
                      % (x.torch_shape(b.batch), y.torch_shape(b.batch)))
    return b.emit(_merge(Add), (x, y), like=x)


def add_inplace(b, x, y, alpha=1):
    out = add(b, x, y, alpha)
    b.rebind(x.layer, out.layer)
    return out


def mul(b, x, y):
    if not isinstance(x, Value) or not isinstance(y, Value):
        return affine(b, x, y, "mul")
    x, y = b.map(x), b.map(y)
    if x.shape[1:] == (1, 1) and y.shape[1:] != (1, 1):
        x, y = y, x
    if y.shape != (x.shape[0], 1, 1):
        raise b.error("a product of tensors is supported only as a per-channel gate x * g, g "
                      "(N, C, 1, 1); got shapes %s and %s"
                      % (x.torch_shape(b.batch), y.torch_shape(b.batch)))
    return b.emit(_merge(Gate), (x, y), like=x)


def affine(b, x, y, op):
    """x op c (or c op x) for a constant c, one value or one per channel: a per-channel affine
    map, kept as a BatchNorm layer (mean 0, sigma 1)."""
    if isinstance(x, Value) == isinstance(y, Value):
        raise b.error("an operation between two tensors computed from the images is supported "
                      "only as an addition, a concatenation or a per-channel gate")
    v, c, first = (x, y, True) if isinstance(x, Value) else (y, x, False)
    v = b.tensor(v)
    C = b.channels(v)
    c = np.asarray(b.array(c) if isinstance(c, b.torch.Tensor) else c, dtype=np.float64)
    per_channel = [(C,), (1, C)] if v.flat else [(C, 1, 1), (1, C, 1, 1)]
    if c.size != 1 and c.shape not in per_channel:
        raise b.error("an operation with a constant of shape %s on a tensor of shape %s is "
                      "supported only for one value or one per channel"
                      % (c.shape, v.torch_shape(b.batch)))
    c = np.broadcast_to(c.ravel(), (C,)).astype(np.float64)
    one, zero = np.ones(C), np.zeros(C)
    if op == "add":
        scale, shift = one, c
    elif op == "sub":
        scale, shift = (one, -c) if first else (-one, c)
    elif op == "mul":
        scale, shift = c, zero
    elif op == "div" and first and np.all(c != 0):
        scale, shift = 1.0 / c, zero
    else:
        raise b.error("dividing by a traced tensor, or by zero, is not supported")
    return b.emit(_layer(BatchNorm, scale, shift, zero, one), (v,), like=v)


def cat(b, tensors, dim=0):
    xs = [b.tensor(t, "tensors") for t in tensors]
    flat = {x.flat for x in xs}
    if len(flat) > 1:
        raise b.error("a concatenation of maps and flattened tensors is not supported")
    ok = (dim in (1, -1) and all(x.shape[1:] == (1, 1) for x in xs)) if flat.pop() else (
        dim in (1, -3))
    if not ok:
        raise b.error("only a concatenation along the channels (dim=1) is supported, got "
                      "dim=%r for tensors of shapes %s" % (dim, ", ".join(
                          str(x.torch_shape(b.batch)) for x in xs)))
    return b.emit(_merge(Concat), xs, like=xs[0])


def reshape(b, x, *args, **kwargs):
    """Flatten, view, reshape, squeeze and the like: a flattened (N, C * H * W) view, or the
    map itself; anything else is refused."""
    x = b.tensor(x)
    s = tuple(b.shape)
    if s == (b.batch, int(np.prod(x.shape))):
        return Value(x.layer, x.shape, flat=True)
    if s == (b.batch,) + x.shape:
        return Value(x.layer, x.shape)
    raise b.error("reshaping %s to %s is not supported; only flattening to (N, C * H * W) is"
                  % (x.torch_shape(b.batch), s))


def identity(b, x, *args, **kwargs):
    return b.tensor(x)


def zero_pad(b, x, pad, mode="constant", value=None):
    x = x if isinstance(x, Value) and x.pad is not None else b.map(x)
    if mode != "constant" or value not in (None, 0, 0.0):
        raise b.error("only zero padding is supported, got mode %r, value %r" % (mode, value))
    pad = tuple(pad)
    if len(pad) not in (2, 4) or min(pad) < 0:
        raise b.error("padding %r is not supported (give (left, right[, top, bottom]) >= 0)"
                      % (pad,))
    l, r = pad[:2]
    t, bt = pad[2:] if len(pad) == 4 else (0, 0)
    old = x.pad or (0, 0, 0, 0)
    return Value(x.layer, x.shape, pad=(old[0] + t, old[1] + bt, old[2] + l, old[3] + r))


def zero_pad_module(b, m, x):
    return zero_pad(b, x, m.padding, "constant", getattr(m, "value", 0))


def upsample(b, x, size=None, scale_factor=None, mode="nearest", align_corners=None,
             recompute_scale_factor=None, antialias=False):
    x = b.map(x)
    (H, W), (h, w) = x.shape[1:], b.shape[2:]
    if mode not in ("nearest", "nearest-exact", "bilinear") or align_corners or antialias:
        raise b.error("only nearest and bilinear (align_corners=False) upsampling is "
                      "supported, got mode %r, align_corners %r" % (mode, align_corners))
    if h % H or w % W:
        raise b.error("only enlargement by integer factors is supported (%dx%d to %dx%d)"
                      % (H, W, h, w))
    factor = (h // H, w // W)
    if scale_factor is not None and not recompute_scale_factor and tuple(
            float(f) for f in _pair(scale_factor)) != tuple(map(float, factor)):
        raise b.error("scale_factor %r is not an integer" % (scale_factor,))
    if factor == (1, 1):
        return x
    return b.emit(_layer(Upsample, factor, "nearest" if mode != "bilinear" else "bilinear"),
                  (x,))


def upsample_module(b, m, x):
    return upsample(b, x, m.size, m.scale_factor, m.mode, m.align_corners,
                    getattr(m, "recompute_scale_factor", None))


def softmax(b, x, dim=None, _stacklevel=3, dtype=None):
    x = b.tensor(x)
    ndim = 2 if x.flat else 4
    if dim is None:
        dim = 1
    if dim % ndim != 1 or dtype is not None or (x.flat and x.shape[1:] != (1, 1)):
        raise b.error("only a softmax over the channels (dim=1) is supported, got dim=%r on "
                      "a tensor of shape %s" % (dim, x.torch_shape(b.batch)))
    return b.emit(_layer(Softmax), (x,), like=x)


def clamp(b, x, min=None, max=None, inplace=False):
    """clamp, hardtanh, relu6: ReLU (min 0), ReLU6 (0, 6) or a Clip."""
    if (min, max) == (0, 6) or (min, max) == (0.0, 6.0):
        return b.unary(_layer(ReLU6), x, inplace)
    if min is not None and float(min) == 0 and max is None:
        return b.unary(_layer(ReLU), x, inplace)
    if min is None or max is None or isinstance(min, Value) or isinstance(max, Value):
        raise b.error("clamping on one side other than at 0 is not supported")
    return b.unary(_layer(Clip, float(min), float(max)), x, inplace)


def _act(cls, *args):
    def convert(b, x, *rest, inplace=False, **kwargs):
        return b.unary(_layer(cls, *args), x, inplace)
    return convert


def _act_inplace(cls):
    def convert(b, x, *rest, **kwargs):
        return b.unary(_layer(cls), x, inplace=True)
    return convert


def leaky_relu(b, x, negative_slope=0.01, inplace=False):
    return b.unary(_layer(LeakyReLU, float(negative_slope)), x, inplace)


def prelu(b, x, weight):
    slopes = b.array(weight).ravel()
    return b.unary(_layer(PReLU, slopes), x, per_channel=slopes.size > 1)


def gelu(b, x, approximate="none"):
    if approximate != "none":
        raise b.error("only the exact GELU is supported, got approximate=%r" % (approximate,))
    return b.unary(_layer(GELU), x)


def local_response_norm(b, x, size, alpha=1e-4, beta=0.75, k=1.0):
    """PyTorch's LRN divides alpha by the window's size; its window is centred for odd sizes
    only (fastdecode's LRN puts the extra channel of an even window on the other side)."""
    x = b.map(x)
    if size % 2 == 0:
        raise b.error("local response normalisation over an even number of channels (%d) is "
                      "not supported" % size)
    return b.unary(_layer(LRN, size, float(k), float(alpha) / size, float(beta)), x)


def dropout(b, x, p=0.5, training=False, inplace=False):
    if _truthy(b, training, "training"):
        raise b.error("dropout in training mode; call module.eval() first")
    return b.unary(_layer(Dropout, float(p)), x)


# --- the tables -----------------------------------------------------------------------------

def _sig_max_pool(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                  return_indices=False):
    pass


def _sig_avg_pool(input, kernel_size, stride=None, padding=0, ceil_mode=False,
                  count_include_pad=True, divisor_override=None):
    pass


def _sig_conv(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    pass


def _sig_batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
                    momentum=0.1, eps=1e-5):
    pass


def _sig_flatten(input, start_dim=0, end_dim=-1):
    pass


def _max_pool_fn(b, *args, **kwargs):
    a = _bind(_sig_max_pool, args, kwargs, b)
    if a["return_indices"]:
        raise b.error("return_indices=True is not supported")
    return pool(b, a["input"], "max", a["kernel_size"], a["stride"], a["padding"],
                a["dilation"], a["ceil_mode"], False)


def _avg_pool_fn(b, *args, **kwargs):
    a = _bind(_sig_avg_pool, args, kwargs, b)
    if a["divisor_override"]:
        raise b.error("divisor_override is not supported")
    return pool(b, a["input"], "avg", a["kernel_size"], a["stride"], a["padding"], 1,
                a["ceil_mode"], a["count_include_pad"])


def _conv_fn(b, *args, **kwargs):
    a = _bind(_sig_conv, args, kwargs, b)
    return conv(b, a["input"], a["weight"], a["bias"], a["stride"], a["padding"],
                a["dilation"], a["groups"])


def _batch_norm_fn(b, *args, **kwargs):
    a = _bind(_sig_batch_norm, args, kwargs, b)
    if _truthy(b, a["training"], "training"):
        raise b.error("batch normalisation in training mode; call module.eval() first")
    return batch_norm(b, a["input"], a["running_mean"], a["running_var"], a["weight"],
                      a["bias"], a["eps"])


def _flatten_fn(b, *args, **kwargs):
    a = _bind(_sig_flatten, args, kwargs, b)
    return reshape(b, a["input"])


def functions(torch):
    """{function: converter(builder, *args, **kwargs)} for call_function nodes."""
    F = torch.nn.functional
    table = {
        operator.add: add, torch.add: add, operator.iadd: add_inplace,
        operator.mul: mul, torch.mul: mul, operator.imul: mul,
        operator.sub: lambda b, x, y: affine(b, x, y, "sub"),
        torch.sub: lambda b, x, y: affine(b, x, y, "sub"),
        operator.truediv: lambda b, x, y: affine(b, x, y, "div"),
        torch.div: lambda b, x, y: affine(b, x, y, "div"),
        torch.cat: cat, torch.concat: cat, torch.flatten: _flatten_fn, torch.reshape: reshape,
        torch.squeeze: reshape, torch.unsqueeze: reshape,
        F.relu: _act(ReLU), torch.relu: _act(ReLU), torch.relu_: _act_inplace(ReLU),
        F.relu_: _act_inplace(ReLU),
        F.relu6: lambda b, x, inplace=False: clamp(b, x, 0, 6, inplace),
        F.hardtanh: lambda b, x, min_val=-1.0, max_val=1.0, inplace=False: clamp(
            b, x, min_val, max_val, inplace),
        torch.clamp: clamp, torch.clip: clamp,
        F.leaky_relu: leaky_relu, F.prelu: prelu, F.gelu: gelu,
        F.hardswish: _act(HardSwish), F.hardsigmoid: _act(HardSigmoid), F.silu: _act(SiLU),
        torch.sigmoid: _act(Sigmoid), F.sigmoid: _act(Sigmoid), torch.tanh: _act(Tanh),
        F.tanh: _act(Tanh), F.softmax: softmax, torch.softmax: softmax,
        F.dropout: dropout, F.dropout2d: dropout, F.alpha_dropout: dropout,
        F.max_pool2d: _max_pool_fn, torch.max_pool2d: _max_pool_fn,
        F.avg_pool2d: _avg_pool_fn,
        F.adaptive_avg_pool2d: lambda b, x, output_size: adaptive_pool(b, x, "avg"),
        F.adaptive_max_pool2d: lambda b, x, output_size, return_indices=False: adaptive_pool(
            b, x, "max"),
        torch.mean: mean, F.interpolate: upsample, F.pad: zero_pad,
        F.conv2d: _conv_fn, F.linear: lambda b, x, weight, bias=None: linear(b, x, weight, bias),
        F.batch_norm: _batch_norm_fn, F.local_response_norm: local_response_norm,
    }
    return table


METHODS = {
    "add": add, "add_": add_inplace, "mul": mul,
    "relu": _act(ReLU), "relu_": _act_inplace(ReLU), "sigmoid": _act(Sigmoid),
    "sigmoid_": _act_inplace(Sigmoid), "tanh": _act(Tanh), "tanh_": _act_inplace(Tanh),
    "clamp": clamp, "clip": clamp,
    "clamp_": lambda b, x, min=None, max=None: clamp(b, x, min, max, inplace=True),
    "clamp_min": lambda b, x, min: clamp(b, x, min, None),
    "softmax": softmax, "mean": mean,
    "view": reshape, "reshape": reshape, "flatten": lambda b, *a, **k: _flatten_fn(b, *a, **k),
    "squeeze": reshape, "unsqueeze": reshape, "contiguous": identity, "clone": identity,
}


def modules(torch):
    """{module type: converter(builder, module, x)} for call_module nodes."""
    nn = torch.nn

    def act(cls, *attrs):
        return lambda b, m, x: b.unary(_layer(cls, *[getattr(m, a) for a in attrs]), x,
                                       getattr(m, "inplace", False))

    return {
        nn.Conv2d: conv_module, nn.ConvTranspose2d: conv_transpose_module,
        nn.Linear: lambda b, m, x: linear(b, x, m.weight, m.bias),
        nn.BatchNorm2d: batch_norm_module, nn.BatchNorm1d: batch_norm_module,
        nn.MaxPool2d: max_pool_module, nn.AvgPool2d: avg_pool_module,
        nn.AdaptiveAvgPool2d: lambda b, m, x: adaptive_pool(b, x, "avg"),
        nn.AdaptiveMaxPool2d: lambda b, m, x: adaptive_pool(b, x, "max"),
        nn.Dropout: lambda b, m, x: dropout(b, x, m.p), nn.Dropout2d: lambda b, m, x: dropout(
            b, x, m.p), nn.AlphaDropout: lambda b, m, x: dropout(b, x, m.p),
        nn.Identity: lambda b, m, x: identity(b, x),
        nn.Flatten: lambda b, m, x: reshape(b, x),
        nn.ReLU: act(ReLU), nn.ReLU6: act(ReLU6),
        nn.Hardtanh: lambda b, m, x: clamp(b, x, m.min_val, m.max_val, m.inplace),
        nn.LeakyReLU: lambda b, m, x: leaky_relu(b, x, m.negative_slope, m.inplace),
        nn.PReLU: lambda b, m, x: prelu(b, x, m.weight),
        nn.GELU: lambda b, m, x: gelu(b, x, m.approximate),
        nn.Hardswish: act(HardSwish), nn.Hardsigmoid: act(HardSigmoid), nn.SiLU: act(SiLU),
        nn.Sigmoid: act(Sigmoid), nn.Tanh: act(Tanh),
        nn.Softmax: lambda b, m, x: softmax(b, x, m.dim),
        nn.Upsample: upsample_module, nn.UpsamplingNearest2d: upsample_module,
        nn.UpsamplingBilinear2d: upsample_module,
        nn.ZeroPad2d: zero_pad_module, nn.ConstantPad2d: zero_pad_module,
        nn.LocalResponseNorm: lambda b, m, x: local_response_norm(b, x, m.size, m.alpha, m.beta,
                                                                  m.k),
    }
