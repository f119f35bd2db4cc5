"""The network model: layers and a sequential Network with a forward pass and its geometry."""

import copy

import numpy as np

from . import ops
from ._engine.grid import window_grid
from ._engine.maps import pool_into, relu_into
from ._validation import (all_finite, as_int, as_pad, as_pair, check_bytes, float_array,
                          printable, resolve_threads)

__all__ = ["Layer", "Conv", "Pool", "ReLU", "BatchNorm", "Dropout", "LRN", "Softmax", "Network"]


_printable = printable


class Layer:
    """Base class. ``name`` is set by :class:`Network` when left as None."""

    type = "layer"
    #: What the layer does when decoding (see :mod:`fastdecode._engine.chain`): None, decoding
    #: cannot pass it.
    decode_role = None

    def __init__(self, name=None):
        if name is not None and not isinstance(name, str):
            raise TypeError("layer name must be a string, got %r" % (name,))
        self.name = name

    # Geometry: how a layer maps (rows, cols) and what it does to the cumulative stride.
    kernel = (1, 1)      # effective window (rows, cols)
    stride_ = (1, 1)
    pad_ = (0, 0, 0, 0)

    def output_size(self, size):
        """(rows, cols) of the output for an input of ``size``."""
        return window_grid(size, self.kernel, self.stride_, self.pad_)

    @property
    def stride(self):
        """(rows, cols) stride of the layer itself."""
        return self.stride_

    @property
    def pad(self):
        """(top, bottom, left, right) zero padding of the layer itself."""
        return self.pad_

    def output_channels(self, channels):
        return channels

    def forward(self, x, n_threads):
        raise NotImplementedError

    def _params(self):
        return ()

    def astype(self, dtype):
        return self

    def __repr__(self):
        extra = self._params()
        inner = ", ".join(extra + ("name=%r" % _printable(self.name),))
        return "%s(%s)" % (type(self).__name__, inner)

    def describe(self):
        """One line for listings."""
        return "%s" % (self.type,)


class Conv(Layer):
    """Convolution (MatConvNet correlation) with weights (K, C, h, w) and bias (K,).

    ``pad`` is an int, (rows, cols) or (top, bottom, left, right); ``stride`` and ``dilate`` an int
    or (rows, cols). Groups follow MatConvNet: when C divides the input depth D, the D channels form
    D // C consecutive groups, each seen by K // groups consecutive filters.
    """

    type = "conv"
    decode_role = "substitute"

    def __init__(self, weights, bias=None, *, stride=1, pad=0, dilate=1, name=None):
        super().__init__(name)
        w = float_array("weights", weights)
        if w.ndim != 4:  # MATLAB drops trailing singletons; accept (K, C, h, w) only when 4-D
            raise ValueError("conv weights must be 4-D (K, C, h, w), got shape %s" % (w.shape,))
        if min(w.shape) == 0:
            raise ValueError("conv weights must be non-empty, got shape %s" % (w.shape,))
        self.weights = w
        K = w.shape[0]
        if bias is None or np.size(bias) == 0:
            self.bias = None
        else:
            b = float_array("bias", bias, dtype=w.dtype)
            if b.size != K:
                raise ValueError("bias has %d values but weights %s have %d filters"
                                 % (b.size, w.shape, K))
            self.bias = b.reshape(K)
        self.stride_ = as_pair("stride", stride, minimum=1)
        self.pad_ = as_pad("pad", pad)
        self.dilate = as_pair("dilate", dilate, minimum=1)
        self.groups = 1  # set by Network from the input depth
        kh, kw = w.shape[2:]
        self.kernel = ((kh - 1) * self.dilate[0] + 1, (kw - 1) * self.dilate[1] + 1)

    @property
    def num_filters(self):
        return self.weights.shape[0]

    def output_channels(self, channels):
        return self.weights.shape[0]

    def _resolve_groups(self, channels):
        C = self.weights.shape[1]
        K = self.weights.shape[0]
        if channels == C:
            return 1
        if channels % C == 0 and K % (channels // C) == 0:
            return channels // C
        raise ValueError("conv layer %r: filters %s (depth %d) do not fit an input of %d channels"
                         % (_printable(self.name), self.weights.shape, C, channels))

    def dilated_weights(self, dtype=None):
        """Weights (K, C, kh_eff, kw_eff) with dilation expanded (zeros between the taps)."""
        w = self.weights if dtype is None else self.weights.astype(dtype, copy=False)
        dy, dx = self.dilate
        if dy > 1 or dx > 1:
            d = np.zeros(w.shape[:2] + self.kernel, dtype=w.dtype)
            d[:, :, ::dy, ::dx] = w
            w = d
        return w

    def dense_weights(self, dtype=None):
        """Weights (K, D, kh_eff, kw_eff) over all D input channels, dilation and groups expanded."""
        w = self.dilated_weights(dtype)
        K, C = w.shape[:2]
        g = self.groups
        if g > 1:
            dense = np.zeros((K, C * g) + w.shape[2:], dtype=w.dtype)
            per = K // g
            for i in range(g):
                dense[i * per:(i + 1) * per, i * C:(i + 1) * C] = w[i * per:(i + 1) * per]
            w = dense
        return np.ascontiguousarray(w)

    def forward(self, x, n_threads, memory_limit=None):
        """Response (N, K, Ho, Wo) to images x (N, C, H, W), biases included (x checked)."""
        return self.respond(x, n_threads, memory_limit=memory_limit)[0]

    def respond(self, x, n_threads, memory_limit=None, out=None, checked=False):
        """(response to x, whether it is all finite): the bias is added and the result checked
        inside the correlation's kernel. out: where to write it (ungrouped convs; see
        ``ops.correlate_finite``); checked: x is known to be finite, not checked again."""
        w = self.dilated_weights(x.dtype)
        g, C = self.groups, w.shape[1]
        per = w.shape[0] // g
        b = self.bias
        parts = [ops.correlate_finite(x[:, i * C:(i + 1) * C], w[i * per:(i + 1) * per],
                                       stride=self.stride_, pad=self.pad_, n_threads=n_threads,
                                       memory_limit=memory_limit, out=out if g == 1 else None,
                                       finite_inputs=checked,
                                       bias=None if b is None else b[i * per:(i + 1) * per])
                 for i in range(g)]
        y = parts[0][0] if g == 1 else np.concatenate([p[0] for p in parts], axis=1)
        return y, all(p[1] for p in parts)

    def astype(self, dtype):
        new = Conv(self.weights.astype(dtype),
                   None if self.bias is None else self.bias.astype(dtype),
                   stride=self.stride_, pad=self.pad_, dilate=self.dilate, name=self.name)
        new.groups = self.groups
        return new

    def _params(self):
        out = ("weights=%s" % (self.weights.shape,),)
        if self.stride_ != (1, 1):
            out += ("stride=%s" % (self.stride_,),)
        if any(self.pad_):
            out += ("pad=%s" % (self.pad_,),)
        if self.dilate != (1, 1):
            out += ("dilate=%s" % (self.dilate,),)
        return out

    def describe(self):
        K, C, h, w = self.weights.shape
        s = "conv %dx%dx%dx%d" % (h, w, C, K)
        if self.groups > 1:
            s += " groups %d" % self.groups
        if self.stride_ != (1, 1):
            s += " stride %s" % (self.stride_,)
        if any(self.pad_):
            s += " pad %s" % (self.pad_,)
        if self.dilate != (1, 1):
            s += " dilate %s" % (self.dilate,)
        return s


class Pool(Layer):
    """Max or average pooling (MatConvNet ``vl_nnpool``); ``stride`` defaults to ``size``."""

    type = "pool"
    decode_role = "unpool"

    def __init__(self, method="max", *, size=2, stride=None, pad=0, name=None):
        super().__init__(name)
        if method not in ("max", "avg"):
            raise ValueError("pool method must be 'max' or 'avg', got %r" % (method,))
        self.method = method
        self.kernel = as_pair("size", size, minimum=1)
        self.stride_ = self.kernel if stride is None else as_pair("stride", stride, minimum=1)
        self.pad_ = as_pad("pad", pad)
        if max(self.pad_[:2]) >= self.kernel[0] or max(self.pad_[2:]) >= self.kernel[1]:
            raise ValueError("pool layer %r: pad %s must be smaller than the window %s"
                             % (_printable(name), self.pad_, self.kernel))

    @property
    def size(self):
        return self.kernel

    def forward(self, x, n_threads):
        return ops.pool(x, self.method, size=self.kernel, stride=self.stride_, pad=self.pad_,
                         n_threads=n_threads)

    def forward_into(self, x, n_threads, out):
        """forward of checked x (N, C, H, W) written into out (C-contiguous, not sharing x's
        memory)."""
        return pool_into(x, out, self.method, self.kernel, self.stride_, self.pad_,
                              n_threads)

    def _params(self):
        return ("%r" % self.method, "size=%s" % (self.kernel,), "stride=%s" % (self.stride_,)) + (
            ("pad=%s" % (self.pad_,),) if any(self.pad_) else ())

    def describe(self):
        s = "pool %s %dx%d stride %s" % (self.method, self.kernel[0], self.kernel[1],
                                          self.stride_)
        return s + (" pad %s" % (self.pad_,) if any(self.pad_) else "")


class ReLU(Layer):
    """Rectified linear unit (leaky when ``leak`` > 0). Passed through when decoding."""

    type = "relu"
    decode_role = "identity"

    def __init__(self, name=None, *, leak=0.0):
        super().__init__(name)
        leak = float(leak)
        if not np.isfinite(leak):
            raise ValueError("relu leak must be finite, got %r" % leak)
        self.leak = leak

    def forward(self, x, n_threads):
        return ops.relu(x, leak=self.leak, n_threads=n_threads)

    def forward_into(self, x, n_threads, out):
        """forward of checked x written into out (C-contiguous, not sharing x's memory)."""
        return relu_into(x, out, self.leak, n_threads)

    def _params(self):
        return ("leak=%g" % self.leak,) if self.leak else ()

    def describe(self):
        return "relu" + (" leak %g" % self.leak if self.leak else "")


class BatchNorm(Layer):
    """Test-time batch normalisation: y = gain * (x - mean) / sigma + bias, per channel.

    MatConvNet stores ``moments`` = [mean, sigma] (K, 2), sigma already including epsilon.
    Decoding treats it as the per-channel affine map it is.
    """

    type = "bnorm"
    decode_role = "scale"

    def __init__(self, gain, bias, mean, sigma, *, name=None):
        super().__init__(name)
        g = float_array("gain", gain).ravel()
        arrays = [float_array(n, a, dtype=g.dtype).ravel()
                  for n, a in (("bias", bias), ("mean", mean), ("sigma", sigma))]
        for n, a in zip(("bias", "mean", "sigma"), arrays):
            if a.size != g.size:
                raise ValueError("bnorm layer %r: %s has %d values, gain has %d"
                                 % (_printable(name), n, a.size, g.size))
        if np.any(arrays[2] == 0):
            raise ValueError("bnorm layer %r: sigma has zeros" % (_printable(name),))
        self.gain, self.bias, self.mean, self.sigma = [g] + arrays

    @property
    def num_channels(self):
        return self.gain.size

    def scale_shift(self, dtype=None):
        """(a, c) with y = a * x + c per channel."""
        a = self.gain / self.sigma
        c = self.bias - a * self.mean
        if dtype is not None:
            a, c = a.astype(dtype), c.astype(dtype)
        return a, c

    def forward(self, x, n_threads):
        a, c = self.scale_shift(x.dtype)
        return x * a[None, :, None, None] + c[None, :, None, None]

    def astype(self, dtype):
        return BatchNorm(self.gain.astype(dtype), self.bias.astype(dtype),
                         self.mean.astype(dtype), self.sigma.astype(dtype), name=self.name)

    def _params(self):
        return ("channels=%d" % self.gain.size,)

    def describe(self):
        return "bnorm %d" % self.gain.size


class Dropout(Layer):
    """Dropout: the identity at test time."""

    type = "dropout"
    decode_role = "identity"

    def __init__(self, rate=0.5, *, name=None):
        super().__init__(name)
        self.rate = float(rate)

    def forward(self, x, n_threads):
        return x


class LRN(Layer):
    """Cross-channel local response normalisation (MatConvNet ``vl_nnnormalize``).

    y = x * (kappa + alpha * sum_{window of depth N} x^2) ** -beta, the window around channel k
    running from k - floor((N-1)/2) to k + ceil((N-1)/2). Passed through when decoding.
    """

    type = "lrn"
    decode_role = "identity"

    def __init__(self, depth=5, kappa=1.0, alpha=1e-4, beta=0.75, *, name=None):
        super().__init__(name)
        self.depth = as_int("depth", depth, minimum=1)
        self.kappa, self.alpha, self.beta = float(kappa), float(alpha), float(beta)
        for what, value in (("kappa", self.kappa), ("alpha", self.alpha), ("beta", self.beta)):
            if not np.isfinite(value):
                raise ValueError("lrn layer %r: %s must be finite, got %r"
                                 % (_printable(name), what, value))

    def forward(self, x, n_threads):
        sq = x.astype(np.float64) ** 2
        C = x.shape[1]
        lo_off, hi_off = (self.depth - 1) // 2, self.depth - 1 - (self.depth - 1) // 2
        csum = np.concatenate([np.zeros_like(sq[:, :1]), np.cumsum(sq, axis=1)], axis=1)
        k = np.arange(C)
        lo = np.clip(k - lo_off, 0, C)
        hi = np.clip(k + hi_off + 1, 0, C)
        window = csum[:, hi] - csum[:, lo]
        return (x * (self.kappa + self.alpha * window) ** (-self.beta)).astype(x.dtype)

    def _params(self):
        return ("depth=%d, kappa=%g, alpha=%g, beta=%g"
                % (self.depth, self.kappa, self.alpha, self.beta),)


class Softmax(Layer):
    """Softmax over channels."""

    type = "softmax"

    def forward(self, x, n_threads):
        z = x - x.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)


def _check_finite_layer(layer):
    for attr in ("weights", "bias", "gain", "mean", "sigma"):
        a = getattr(layer, attr, None)
        if isinstance(a, np.ndarray) and not all_finite(a):
            raise ValueError("layer %r (%s): %s contains non-finite values"
                             % (_printable(layer.name), layer.type, attr))


class Network:
    """A chain of layers. Layers are addressed by name or 0-based index.

    Unnamed layers get MatConvNet's default names ``layer1``, ``layer2``, ... (1-based).
    ``meta`` holds what a file carried beside the layers (input size, classes, normalisation).
    All parameters share one dtype, float32 unless any is float64.
    """

    def __init__(self, layers, *, meta=None, input_channels=None):
        layers = list(layers)
        if not layers:
            raise ValueError("a Network needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError("layer %d is a %s, not a fastdecode Layer" % (i, type(layer).__name__))
            _check_finite_layer(layer)
        dtypes = [l.weights.dtype for l in layers if isinstance(l, Conv)]
        dtype = np.dtype(np.float64) if np.dtype(np.float64) in dtypes else np.dtype(np.float32)
        # Copies, so that naming and group resolution never touch the caller's layer objects.
        self.layers = [l.astype(dtype) if isinstance(l, (Conv, BatchNorm)) and _layer_dtype(l) != dtype
                       else copy.copy(l) for l in layers]
        self.dtype = dtype
        self.meta = dict(meta or {})
        seen = {}
        for i, layer in enumerate(self.layers):
            if layer.name is None or layer.name == "":
                layer.name = "layer%d" % (i + 1)
            if layer.name in seen:
                raise ValueError("layers %d and %d share the name %r" % (seen[layer.name], i,
                                                                         _printable(layer.name)))
            seen[layer.name] = i
        self._index = seen
        first = next((l for l in self.layers if isinstance(l, Conv)), None)
        if input_channels is None:
            if first is None:
                raise ValueError("input_channels must be given for a network without conv layers")
            input_channels = first.weights.shape[1]
        self.input_channels = as_int("input_channels", input_channels, minimum=1)
        self._channels = []  # channels at the output of each layer
        c = self.input_channels
        for layer in self.layers:
            if isinstance(layer, Conv):
                layer.groups = layer._resolve_groups(c)
            if isinstance(layer, BatchNorm) and layer.num_channels != c:
                raise ValueError("bnorm layer %r has %d channels but its input has %d"
                                 % (_printable(layer.name), layer.num_channels, c))
            c = layer.output_channels(c)
            self._channels.append(c)

    # --- addressing ---------------------------------------------------------------------------
    def index(self, layer):
        """0-based index of a layer given by name, index (negative counts from the end) or object."""
        if isinstance(layer, Layer):
            for i, l in enumerate(self.layers):
                if l is layer:
                    return i
            raise KeyError("that layer object is not in this network")
        if isinstance(layer, str):
            if layer in self._index:
                return self._index[layer]
            raise KeyError("no layer named %r; layers are: %s"
                           % (layer, ", ".join(_printable(l.name) for l in self.layers)))
        if isinstance(layer, (bool, np.bool_)) or not isinstance(layer, (int, np.integer)):
            raise TypeError("layer must be a name or an index, got %r" % (layer,))
        n = len(self.layers)
        i = int(layer)
        if not -n <= i < n:
            raise IndexError("layer index %d out of range for a network of %d layers" % (i, n))
        return i % n

    def __getitem__(self, layer):
        return self.layers[self.index(layer)]

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __repr__(self):
        return "Network([\n%s\n])" % ",\n".join("  " + repr(l) for l in self.layers)

    @property
    def conv_layers(self):
        """Names of the conv layers, bottom to top."""
        return [l.name for l in self.layers if isinstance(l, Conv)]

    def conv_index(self, layer):
        """Index of a conv layer, with an error naming the layer when it is not one."""
        i = self.index(layer)
        if not isinstance(self.layers[i], Conv):
            raise ValueError("layer %r is a %s layer; only conv layers can be decoded (conv layers: %s)"
                             % (_printable(self.layers[i].name), self.layers[i].type,
                                ", ".join(map(_printable, self.conv_layers))))
        return i

    def channels(self, layer):
        """Channels at the output of a layer."""
        return self._channels[self.index(layer)]

    # --- geometry -----------------------------------------------------------------------------
    def _geometry(self, upto):
        """(stride, pad, receptive field) in image pixels at the output of layer ``upto``."""
        S = [1, 1]
        P = [0, 0, 0, 0]
        R = [1, 1]
        for layer in self.layers[:upto + 1]:
            kh, kw = layer.kernel
            sy, sx = layer.stride_
            pt, pb, pl, pr = layer.pad_
            R = [R[0] + (kh - 1) * S[0], R[1] + (kw - 1) * S[1]]
            P = [P[0] + pt * S[0], P[1] + pb * S[0], P[2] + pl * S[1], P[3] + pr * S[1]]
            S = [S[0] * sy, S[1] * sx]
        return tuple(S), tuple(P), tuple(R)

    def stride(self, layer):
        """Cumulative stride (rows, cols) in image pixels at the output of ``layer``."""
        return self._geometry(self.index(layer))[0]

    def padding(self, layer):
        """Cumulative zero padding (top, bottom, left, right) in image pixels at ``layer``.

        ``correlate(images, decode(net, layer), stride=net.stride(layer), pad=net.padding(layer))``
        has the shape of ``net.forward(images, upto=layer)``.
        """
        return self._geometry(self.index(layer))[1]

    def receptive_field(self, layer):
        """Receptive field (rows, cols) in image pixels of a unit of ``layer``: the decoded size."""
        return self._geometry(self.index(layer))[2]

    def decoded_shape(self, layer):
        """Shape (C0, h, w) of one decoded filter of a conv layer."""
        i = self.conv_index(layer)
        return (self.input_channels,) + self._geometry(i)[2]

    def output_shape(self, input_shape, upto=None):
        """Shape of ``forward`` for images of ``input_shape`` (N, C, H, W)."""
        N, C, H, W = input_shape
        last = len(self.layers) - 1 if upto is None else self.index(upto)
        size = (H, W)
        for layer in self.layers[:last + 1]:
            size = layer.output_size(size)
        return (N, self._channels[last]) + size

    # --- forward ------------------------------------------------------------------------------
    def check_input(self, shape, *, upto=None, memory_limit=None, name="x"):
        """Refuse images of ``shape`` (N, C, H, W) that ``forward(upto=upto)`` cannot take.

        ValueError for a channel mismatch, an empty shape or images too small for a layer;
        MemoryError when one layer's output would exceed ``memory_limit`` bytes (default 4 GiB).
        """
        last = len(self.layers) - 1 if upto is None else self.index(upto)
        N, C, H, W = shape
        if C != self.input_channels:
            raise ValueError("images have %d channels but the network expects %d (%s %s)"
                             % (C, self.input_channels, name, tuple(shape)))
        if min(shape) == 0:
            raise ValueError("%s is empty, shape %s" % (name, tuple(shape)))
        size = (H, W)
        for i, layer in enumerate(self.layers[:last + 1]):
            new = layer.output_size(size)
            if new[0] < 1 or new[1] < 1:
                raise ValueError("images of %dx%d are too small for layer %r (%s): its input would "
                                 "be %dx%d" % (H, W, _printable(layer.name), layer.describe(),
                                               size[0], size[1]))
            check_bytes("forward output of layer %r" % _printable(layer.name),
                        (N, self._channels[i]) + new, self.dtype, memory_limit)
            size = new

    def forward(self, x, *, upto=None, n_threads=None, memory_limit=None):
        """Response after layer ``upto`` (default: the last) to images x (N, C, H, W).

        x is cast to the network's dtype. Returns (N, K, Ho, Wo).
        memory_limit: bytes any one layer's output may take (default 4 GiB), checked for every
        layer before any is computed.
        """
        given = x
        x = float_array("x", x, ndim=4, dtype=self.dtype)
        # whether x is an array of this pass's own (a converted copy, or a new layer output)
        own = not (isinstance(given, np.ndarray) and np.may_share_memory(x, given))
        del given
        threads = resolve_threads(n_threads)
        last = len(self.layers) - 1 if upto is None else self.index(upto)
        self.check_input(x.shape, upto=last, memory_limit=memory_limit, name="x")
        for i in range(last + 1):
            layer = self.layers[i]
            # a ReLU rectifies an array of the pass's own in place
            in_place = (type(layer) is ReLU and own and x.flags.c_contiguous
                        and x.flags.writeable)
            x = self.forward_layer(i, x, threads, memory_limit=memory_limit,
                                   out=x if in_place else None)
            own = type(layer) in _NEW_OUTPUT or (type(layer) is Dropout and own)
        return x

    def writes_into(self, i):
        """Whether :meth:`forward_layer` writes layer ``i``'s output into a given ``out``: an
        ungrouped conv, a pool or a ReLU layer."""
        layer = self.layers[i]
        return type(layer) in (Pool, ReLU) or (type(layer) is Conv and layer.groups == 1)

    def forward_layer(self, i, x, n_threads, memory_limit=None, out=None):
        """Layer ``i`` alone applied to x, already checked (:meth:`check_input`): its values are
        not checked again, its output is checked for overflow.

        out: where the layer writes its output when :meth:`writes_into` says it can
        (C-contiguous, of the output's shape and dtype, not sharing x's memory, e.g. from
        a ``Workspace``, or x itself for a ReLU); ignored otherwise.
        """
        layer = self.layers[i]
        if not self.writes_into(i):
            out = None
        elif out is None:
            out = np.empty((x.shape[0], self._channels[i]) + layer.output_size(x.shape[2:]),
                           dtype=x.dtype)
        finite = True
        # Inputs and weights are finite, so only sums and scalings can overflow.
        if type(layer) is Conv:
            x, finite = layer.respond(x, n_threads, memory_limit=memory_limit, out=out,
                                      checked=True)
        elif out is not None:
            x = layer.forward_into(x, n_threads, out)
        elif isinstance(layer, Conv):
            x = layer.forward(x, n_threads, memory_limit=memory_limit)
            finite = all_finite(x)
        else:
            x = layer.forward(x, n_threads)
            finite = not isinstance(layer, BatchNorm) or all_finite(x)
        if not finite:
            raise ValueError("the output of layer %r (%s) overflows %s: scale the images "
                             "down or use float64 (net.astype(np.float64))"
                             % (_printable(layer.name), layer.describe(), self.dtype.name))
        return x

    def astype(self, dtype):
        """A copy of the network with parameters in ``dtype`` (float32 or float64)."""
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError("dtype must be float32 or float64, got %s" % dtype)
        net = Network([l.astype(dtype) for l in self.layers], meta=self.meta,
                      input_channels=self.input_channels)
        net.dtype = dtype
        return net

    def summary(self):
        """A table of layers with output channels, cumulative stride and receptive field."""
        names = [_printable(layer.name) for layer in self.layers]
        described = [layer.describe() for layer in self.layers]
        wn = max([20] + [len(n) for n in names])  # columns as wide as their longest entry
        wd = max([40] + [len(d) for d in described])
        rows = ["%-3s %-*s %-*s %8s %8s %10s" % ("#", wn, "name", wd, "layer", "channels",
                                                 "stride", "receptive")]
        for i, layer in enumerate(self.layers):
            S, P, R = self._geometry(i)
            rows.append("%-3d %-*s %-*s %8d %8s %10s" % (
                i, wn, names[i], wd, described[i], self._channels[i], "%dx%d" % S, "%dx%d" % R))
        return "\n".join(rows)


#: Layers whose forward returns a new array (dropout returns its input).
_NEW_OUTPUT = (Conv, Pool, ReLU, BatchNorm, LRN, Softmax)


def _layer_dtype(layer):
    return layer.weights.dtype if isinstance(layer, Conv) else layer.gain.dtype

