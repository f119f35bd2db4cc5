"""Layers of a :class:`fastdecode.Network`: what each computes and what it does when decoding.

Every layer runs through one method, :meth:`Layer.run`, on an input the network has already
checked; the public :meth:`Layer.forward` checks its input, then runs. A layer also tells the
network and the decoding engine, through attributes, what they need to know: its geometry
(``kernel``, ``stride``, ``pad``), whether it writes into a given output array
(``writes_into``, ``in_place``), whether its output is a new array (``new_output``) and what it
does when decoding (``decode_role``). A new layer type plugs in by subclassing :class:`Layer`
and setting these; neither the network nor the engine needs to change.
"""

import numpy as np

from . import ops
from ._engine.grid import ceil_mode_pad, window_grid
from ._engine.maps import pool_into, relu_into
from ._validation import (all_finite, as_flag, as_int, as_pad, as_pair, float_array, printable,
                          resolve_threads)

def as_inputs(inputs, name=None):
    """``inputs=`` as a tuple of names, or None (the previous layer)."""
    if inputs is None:
        return None
    try:
        names = (inputs,) if isinstance(inputs, str) else tuple(inputs)
    except TypeError:
        names = ()
    if not names or not all(isinstance(n, str) and n for n in names):
        raise TypeError("layer %r: inputs must be a layer name or a non-empty tuple of names, "
                        "got %r" % (printable(name), inputs))
    return names


__all__ = ["Layer", "Conv", "Pool", "ReLU", "BatchNorm", "Dropout", "LRN", "Softmax"]


class Layer:
    """Base class of the layers.

    Parameters
    ----------
    name : str, optional
        The layer's name; a :class:`~fastdecode.Network` names unnamed layers ``layer1``,
        ``layer2``, ... by position.
    inputs : str or tuple of str, optional
        The layer(s) it reads, by name: ``"input"`` names the images; default the layer before
        it in the network (the images for the first). Names must be of earlier layers, so a
        network is acyclic by construction.

    Attributes
    ----------
    kernel : (int, int)
        The effective window (rows, cols), (1, 1) for pointwise layers.
    stride : (int, int)
        The layer's own stride (rows, cols).
    pad : (int, int, int, int)
        The layer's own zero padding (top, bottom, left, right).
    decode_role : str or None
        What the layer does when decoding: "substitute" (a conv layer), "unpool" (a pooling
        layer), "scale" (a per-channel affine map, with ``scale_shift``), "identity" (passed
        through) or None (decoding cannot pass it).
    writes_into : bool
        Whether :meth:`run` writes its output into a given ``out`` array.
    in_place : bool
        Whether ``out`` may be the input itself.
    new_output : bool
        Whether :meth:`run` returns an array of its own (False when it may return its input
        or share its memory).
    """

    type = "layer"
    kernel = (1, 1)
    stride = (1, 1)
    pad = (0, 0, 0, 0)
    decode_role = None
    writes_into = False
    in_place = False
    new_output = False

    #: The dtype of the layer's parameters, or None when it has none (the network converts
    #: layers whose dtype is not its own with :meth:`astype`).
    dtype = None

    #: Whether :meth:`run` takes a list of inputs (Add, Concat, Gate) rather than one array.
    multi_input = False

    def __init__(self, name=None, *, inputs=None):
        if name is not None and not isinstance(name, str):
            raise TypeError("layer name must be a string, got %r" % (name,))
        self.name = name
        self.inputs = as_inputs(inputs, name)

    def output_size(self, size):
        """(rows, cols) of the output for an input of ``size`` (rows, cols)."""
        return window_grid(size, self.kernel, self.stride, self.pad)

    def output_channels(self, channels):
        """Channels of the output for an input of ``channels``."""
        return channels

    def attach(self, channels):
        """Fit the layer to an input depth of ``channels`` (called by the network, on its own
        copy of the layer); returns the output channels. Raises ValueError when the layer cannot
        take that input."""
        return self.output_channels(channels)

    def check_finite(self):
        """Raise ValueError when a parameter array holds NaN or inf."""
        for attr in ("weights", "bias", "gain", "mean", "sigma"):
            a = getattr(self, attr, None)
            if isinstance(a, np.ndarray) and not all_finite(a):
                raise ValueError("layer %r (%s): %s contains non-finite values"
                                 % (printable(self.name), self.type, attr))

    def check_size(self, shape):
        """Raise ValueError when images of ``shape`` (N, C, H, W) give an empty output."""
        rows, cols = self.output_size(shape[2:])
        if rows < 1 or cols < 1:
            raise ValueError("input %dx%d (padded %s) is smaller than the window %s of layer %r"
                             % (shape[2], shape[3], self.pad, self.kernel, printable(self.name)))

    def forward(self, x, n_threads=None, *, memory_limit=None):
        """The layer's output for images x.

        Parameters
        ----------
        x : array_like
            Images (N, C, H, W); integer input becomes float64.
        n_threads : int, optional
            Threads to use; default all that OpenMP may use.
        memory_limit : float, optional
            Bytes the output may take (default 4 GiB; conv layers).

        Returns
        -------
        numpy.ndarray
            (N, K, Ho, Wo).

        Raises
        ------
        ValueError
            For x or parameters holding NaN or inf, images too small for the layer, or an
            output that overflows its dtype.
        """
        x = float_array("x", x, ndim=4)
        self.check_finite()
        self.check_size(x.shape)
        y, finite = self.run(x, resolve_threads(n_threads), memory_limit=memory_limit)
        if not finite:
            raise self.overflow_error(x.dtype)
        return y

    def run(self, x, threads, *, out=None, memory_limit=None):
        """(output, whether it is all finite) for x already checked: finite, (N, C, H, W),
        C-contiguous, of the network's dtype, large enough.

        out: where to write the output when ``writes_into`` (C-contiguous, of the output's
        shape and dtype, not sharing x's memory, or x itself when ``in_place``); ignored
        otherwise. Subclasses implement it; a subclass that overrides :meth:`forward`
        instead (``forward(x, n_threads)``, as layers of one's own were written before
        :meth:`run` existed) runs through it, its output taken as finite.
        """
        if type(self).forward is not Layer.forward:
            return self.forward(x, threads), True
        raise NotImplementedError("%s implements neither run() nor forward()"
                                  % type(self).__name__)

    def overflow_error(self, dtype):
        """The ValueError for an output that overflowed ``dtype``."""
        return ValueError("the output of layer %r (%s) overflows %s: scale the images down or "
                          "use float64 (net.astype(np.float64))"
                          % (printable(self.name), self.describe(), np.dtype(dtype).name))

    def astype(self, dtype):
        """The layer with parameters in ``dtype`` (itself when it has none)."""
        return self

    def _params(self):
        return ()

    def __repr__(self):
        extra = self._params()
        inputs = getattr(self, "inputs", None)
        extra = extra + (("inputs=%r" % (inputs if len(inputs) > 1 else inputs[0],),)
                         if inputs else ())
        inner = ", ".join(extra + ("name=%r" % printable(self.name),))
        return "%s(%s)" % (type(self).__name__, inner)

    def describe(self):
        """One line for listings."""
        return "%s" % (self.type,)


class Conv(Layer):
    """Convolution (MatConvNet ``vl_nnconv``: a correlation) with weights and biases.

    Parameters
    ----------
    weights : array_like
        (K, C, h, w): K filters of C channels.
    bias : array_like, optional
        K values, or None (or empty) for none.
    stride : int or (int, int), optional
        (rows, cols).
    pad : int, (int, int) or (int, int, int, int), optional
        Zero padding: all sides, (rows, cols) or (top, bottom, left, right).
    dilate : int or (int, int), optional
        Spacing of the filters' taps.
    name : str, optional
        The layer's name.
    inputs : str, optional
        The layer it reads (see :class:`Layer`); default the previous one.

    Notes
    -----
    Groups follow MatConvNet: when C divides the input depth D, the D channels form D // C
    consecutive groups, each seen by K // groups consecutive filters (resolved by the network).
    """

    type = "conv"
    decode_role = "substitute"
    new_output = True

    def __init__(self, weights, bias=None, *, stride=1, pad=0, dilate=1, name=None,
                 inputs=None):
        super().__init__(name, inputs=inputs)
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
        self.stride = as_pair("stride", stride, minimum=1)
        self.pad = as_pad("pad", pad)
        self.dilate = as_pair("dilate", dilate, minimum=1)
        self.groups = 1  # set by Network from the input depth
        kh, kw = w.shape[2:]
        self.kernel = ((kh - 1) * self.dilate[0] + 1, (kw - 1) * self.dilate[1] + 1)

    @property
    def dtype(self):
        """The weights' dtype."""
        return self.weights.dtype

    @property
    def num_filters(self):
        """K, the number of filters."""
        return self.weights.shape[0]

    @property
    def writes_into(self):
        """Ungrouped convs write into a given output."""
        return self.groups == 1

    def output_channels(self, channels):
        return self.weights.shape[0]

    def attach(self, channels):
        """Resolve the groups for an input of ``channels``; returns K."""
        C, K = self.weights.shape[1], self.weights.shape[0]
        if channels == C:
            self.groups = 1
        elif channels % C == 0 and K % (channels // C) == 0:
            self.groups = channels // C
        else:
            raise ValueError("conv layer %r: filters %s (depth %d) do not fit an input of %d "
                             "channels" % (printable(self.name), self.weights.shape, C, channels))
        return K

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
        """Weights (K, D, kh_eff, kw_eff) over all D input channels, dilation and groups
        expanded."""
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

    def check_size(self, shape):
        pass   # the correlation names the shapes it refuses

    def run(self, x, threads, *, out=None, memory_limit=None):
        """The response to x, biases included, checked for overflow inside the kernel."""
        w = self.dilated_weights(x.dtype)
        g, C = self.groups, w.shape[1]
        per = w.shape[0] // g
        b = self.bias
        parts = [ops.correlate_finite(x[:, i * C:(i + 1) * C], w[i * per:(i + 1) * per],
                                      stride=self.stride, pad=self.pad, n_threads=threads,
                                      memory_limit=memory_limit, out=out if g == 1 else None,
                                      finite_inputs=True,
                                      bias=None if b is None else b[i * per:(i + 1) * per])
                 for i in range(g)]
        y = parts[0][0] if g == 1 else np.concatenate([p[0] for p in parts], axis=1)
        return y, all(p[1] for p in parts)

    def astype(self, dtype):
        new = Conv(self.weights.astype(dtype),
                   None if self.bias is None else self.bias.astype(dtype),
                   stride=self.stride, pad=self.pad, dilate=self.dilate, name=self.name,
                   inputs=self.inputs)
        new.groups = self.groups
        return new

    def _params(self):
        out = ("weights=%s" % (self.weights.shape,),)
        if self.stride != (1, 1):
            out += ("stride=%s" % (self.stride,),)
        if any(self.pad):
            out += ("pad=%s" % (self.pad,),)
        if self.dilate != (1, 1):
            out += ("dilate=%s" % (self.dilate,),)
        return out

    def describe(self):
        K, C, h, w = self.weights.shape
        s = "conv %dx%dx%dx%d" % (h, w, C, K)
        if self.groups > 1:
            s += " groups %d" % self.groups
        if self.stride != (1, 1):
            s += " stride %s" % (self.stride,)
        if any(self.pad):
            s += " pad %s" % (self.pad,)
        if self.dilate != (1, 1):
            s += " dilate %s" % (self.dilate,)
        return s


class Pool(Layer):
    """Max or average pooling (MatConvNet ``vl_nnpool``; PyTorch's and ONNX's pooling with
    ``ceil_mode`` and ``count_include_pad``).

    Parameters
    ----------
    method : {"max", "avg"}, optional
        Maximum or mean over each window.
    size : int or (int, int), optional
        The window (rows, cols).
    stride : int or (int, int), optional
        Step between windows, default ``size``.
    pad : int, (int, int) or (int, int, int, int), optional
        Padding (top, bottom, left, right), smaller than the window.
    ceil_mode : bool, optional
        Count the windows as PyTorch's ``ceil_mode=True``: ``ceil((H + top + bottom - size) /
        stride) + 1`` rows, less the last when it would start in the bottom padding; the
        windows that run past the bottom (right) padding are clipped. Default False:
        ``floor(...) + 1``, as MatConvNet.
    count_include_pad : bool, optional
        Average pooling only: divide by the window clipped to the padded input (the declared
        padding counts as zeros, a ceil-mode overhang does not), as PyTorch and ONNX. Default
        False: divide by the window clipped to the input, as MatConvNet. Max pooling always
        ignores the padding.
    name : str, optional
        The layer's name.
    inputs : str, optional
        The layer it reads (see :class:`Layer`); default the previous one.

    Attributes
    ----------
    pad : (int, int, int, int)
        The padding of the windows' grid: ``declared_pad`` plus, in ceil mode, the overhang
        ``min(stride - 1, size - 1 - pad)`` at the bottom and right (see :meth:`output_size`).
        The network's geometry (:meth:`Network.padding`) adds it up like a conv's padding.
    declared_pad : (int, int, int, int)
        The padding as given.

    Notes
    -----
    Decoding unpools every window the same way whatever the options: "nearest" substitutes a
    box of ones over the window, "adjoint" a box of ``1 / (rows * cols)``. Windows that touch
    no padding and no overhang divide by the whole window in every mode, so the adjoint is the
    exact adjoint of the average pooling on the units whose windows lie inside the input.

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> pool = fd.Pool("avg", size=3, stride=2, pad=1, ceil_mode=True, count_include_pad=True)
    >>> pool.output_size((6, 6)), pool.pad
    ((4, 4), (1, 2, 1, 2))
    >>> pool.forward(np.ones((1, 1, 6, 6)))[0, 0, -1]
    array([0.33333333, 0.5       , 0.5       , 0.25      ])
    """

    type = "pool"
    decode_role = "unpool"
    writes_into = True
    new_output = True

    def __init__(self, method="max", *, size=2, stride=None, pad=0, ceil_mode=False,
                 count_include_pad=False, name=None, inputs=None):
        super().__init__(name, inputs=inputs)
        if method not in ("max", "avg"):
            raise ValueError("pool method must be 'max' or 'avg', got %r" % (method,))
        ceil_mode = as_flag("pool layer %r: ceil_mode" % (printable(name),), ceil_mode)
        count_include_pad = as_flag("pool layer %r: count_include_pad" % (printable(name),),
                                    count_include_pad)
        if count_include_pad and method != "avg":
            raise ValueError("pool layer %r: count_include_pad applies to average pooling only, "
                             "not %r" % (printable(name), method))
        self.method = method
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad
        self.kernel = as_pair("size", size, minimum=1)
        self.stride = self.kernel if stride is None else as_pair("stride", stride, minimum=1)
        self.declared_pad = self.pad = as_pad("pad", pad)
        if max(self.pad[:2]) >= self.kernel[0] or max(self.pad[2:]) >= self.kernel[1]:
            raise ValueError("pool layer %r: pad %s must be smaller than the window %s"
                             % (printable(name), self.pad, self.kernel))
        if self.ceil_mode:
            self.pad = ceil_mode_pad(self.kernel, self.stride, self.declared_pad)

    @property
    def size(self):
        """The window (rows, cols)."""
        return self.kernel

    def output_size(self, size):
        """(rows, cols) of the output for an input of ``size`` (rows, cols): ``(H + top +
        bottom - size) // stride + 1`` over :attr:`pad` (in ceil mode, PyTorch's count over
        the declared padding)."""
        return window_grid(size, self.kernel, self.stride, self.pad)

    def check_size(self, shape):
        H, W = shape[2:]
        (ph, pw), (pt, pb, pl, pr) = self.kernel, self.pad
        if H + pt + pb < ph or W + pl + pr < pw:
            raise ValueError("input %dx%d (padded %s) is smaller than the pooling window %s"
                             % (H, W, self.pad, self.kernel))

    def run(self, x, threads, *, out=None, memory_limit=None):
        if out is None:
            out = np.empty(x.shape[:2] + self.output_size(x.shape[2:]), dtype=x.dtype)
        counted = (self.declared_pad[1], self.declared_pad[3]) if self.count_include_pad else None
        return pool_into(x, out, self.method, self.kernel, self.stride, self.pad, threads,
                         counted), True

    def _params(self):
        return ("%r" % self.method, "size=%s" % (self.kernel,), "stride=%s" % (self.stride,)) + (
            ("pad=%s" % (self.declared_pad,),) if any(self.declared_pad) else ()) + (
            ("ceil_mode=True",) if self.ceil_mode else ()) + (
            ("count_include_pad=True",) if self.count_include_pad else ())

    def describe(self):
        s = "pool %s %dx%d stride %s" % (self.method, self.kernel[0], self.kernel[1],
                                          self.stride)
        return s + (" pad %s" % (self.declared_pad,) if any(self.declared_pad) else "") + (
            " ceil" if self.ceil_mode else "") + (
            " count-pad" if self.count_include_pad else "")


class ReLU(Layer):
    """Rectified linear unit, leaky when ``leak`` > 0; passed through when decoding.

    Parameters
    ----------
    name : str, optional
        The layer's name.
    inputs : str, optional
        The layer it reads (see :class:`Layer`); default the previous one.
    leak : float, optional
        Slope for negative values (finite).
    """

    type = "relu"
    decode_role = "identity"
    writes_into = True
    in_place = True
    new_output = True

    def __init__(self, name=None, *, leak=0.0, inputs=None):
        super().__init__(name, inputs=inputs)
        leak = float(leak)
        if not np.isfinite(leak):
            raise ValueError("relu leak must be finite, got %r" % leak)
        self.leak = leak

    def run(self, x, threads, *, out=None, memory_limit=None):
        if out is None:
            out = np.empty(x.shape, dtype=x.dtype)
        return relu_into(x, out, self.leak, threads), True

    def _params(self):
        return ("leak=%g" % self.leak,) if self.leak else ()

    def describe(self):
        return "relu" + (" leak %g" % self.leak if self.leak else "")


class BatchNorm(Layer):
    """Test-time batch normalisation: ``y = gain * (x - mean) / sigma + bias`` per channel.

    MatConvNet stores ``moments`` = [mean, sigma] (K, 2), sigma already including epsilon.
    Decoding treats it as the per-channel affine map it is.

    Parameters
    ----------
    gain, bias, mean, sigma : array_like
        One value per channel each; sigma without zeros.
    name : str, optional
        The layer's name.
    inputs : str, optional
        The layer it reads (see :class:`Layer`); default the previous one.
    """

    type = "bnorm"
    decode_role = "scale"
    new_output = True

    def __init__(self, gain, bias, mean, sigma, *, name=None, inputs=None):
        super().__init__(name, inputs=inputs)
        g = float_array("gain", gain).ravel()
        arrays = [float_array(n, a, dtype=g.dtype).ravel()
                  for n, a in (("bias", bias), ("mean", mean), ("sigma", sigma))]
        for n, a in zip(("bias", "mean", "sigma"), arrays):
            if a.size != g.size:
                raise ValueError("bnorm layer %r: %s has %d values, gain has %d"
                                 % (printable(name), n, a.size, g.size))
        if np.any(arrays[2] == 0):
            raise ValueError("bnorm layer %r: sigma has zeros" % (printable(name),))
        self.gain, self.bias, self.mean, self.sigma = [g] + arrays

    @property
    def dtype(self):
        """The parameters' dtype."""
        return self.gain.dtype

    @property
    def num_channels(self):
        """The number of channels."""
        return self.gain.size

    def attach(self, channels):
        if self.num_channels != channels:
            raise ValueError("bnorm layer %r has %d channels but its input has %d"
                             % (printable(self.name), self.num_channels, channels))
        return channels

    def scale_shift(self, dtype=None):
        """(a, c) with y = a * x + c per channel."""
        a = self.gain / self.sigma
        c = self.bias - a * self.mean
        if dtype is not None:
            a, c = a.astype(dtype), c.astype(dtype)
        return a, c

    def run(self, x, threads, *, out=None, memory_limit=None):
        a, c = self.scale_shift(x.dtype)
        y = x * a[None, :, None, None] + c[None, :, None, None]
        return y, all_finite(y)

    def astype(self, dtype):
        return BatchNorm(self.gain.astype(dtype), self.bias.astype(dtype),
                         self.mean.astype(dtype), self.sigma.astype(dtype), name=self.name,
                         inputs=self.inputs)

    def _params(self):
        return ("channels=%d" % self.gain.size,)

    def describe(self):
        return "bnorm %d" % self.gain.size


class Dropout(Layer):
    """Dropout: the identity at test time (its input passed on).

    Parameters
    ----------
    rate : float, optional
        The training-time dropout rate (kept for files that carry it).
    name : str, optional
        The layer's name.
    inputs : str, optional
        The layer it reads (see :class:`Layer`); default the previous one.
    """

    type = "dropout"
    decode_role = "identity"

    def __init__(self, rate=0.5, *, name=None, inputs=None):
        super().__init__(name, inputs=inputs)
        self.rate = float(rate)

    def run(self, x, threads, *, out=None, memory_limit=None):
        return x, True


class LRN(Layer):
    """Cross-channel local response normalisation (MatConvNet ``vl_nnnormalize``).

    ``y = x * (kappa + alpha * sum_{window of depth N} x^2) ** -beta``, the window around
    channel k running from k - floor((N-1)/2) to k + ceil((N-1)/2). Passed through when
    decoding.

    Parameters
    ----------
    depth : int, optional
        N, the channels in a window.
    kappa, alpha, beta : float, optional
        The normalisation's constants (finite).
    name : str, optional
        The layer's name.
    inputs : str, optional
        The layer it reads (see :class:`Layer`); default the previous one.
    """

    type = "lrn"
    decode_role = "identity"
    new_output = True

    def __init__(self, depth=5, kappa=1.0, alpha=1e-4, beta=0.75, *, name=None, inputs=None):
        super().__init__(name, inputs=inputs)
        self.depth = as_int("depth", depth, minimum=1)
        self.kappa, self.alpha, self.beta = float(kappa), float(alpha), float(beta)
        for what, value in (("kappa", self.kappa), ("alpha", self.alpha), ("beta", self.beta)):
            if not np.isfinite(value):
                raise ValueError("lrn layer %r: %s must be finite, got %r"
                                 % (printable(name), what, value))

    def run(self, x, threads, *, out=None, memory_limit=None):
        sq = x.astype(np.float64) ** 2
        C = x.shape[1]
        lo_off, hi_off = (self.depth - 1) // 2, self.depth - 1 - (self.depth - 1) // 2
        csum = np.concatenate([np.zeros_like(sq[:, :1]), np.cumsum(sq, axis=1)], axis=1)
        k = np.arange(C)
        lo = np.clip(k - lo_off, 0, C)
        hi = np.clip(k + hi_off + 1, 0, C)
        window = csum[:, hi] - csum[:, lo]
        return (x * (self.kappa + self.alpha * window) ** (-self.beta)).astype(x.dtype), True

    def _params(self):
        return ("depth=%d, kappa=%g, alpha=%g, beta=%g"
                % (self.depth, self.kappa, self.alpha, self.beta),)


class Softmax(Layer):
    """Softmax over channels. Decoding cannot pass it.

    Parameters
    ----------
    name : str, optional
        The layer's name.
    inputs : str, optional
        The layer it reads (see :class:`Layer`); default the previous one.
    """

    type = "softmax"
    new_output = True

    def run(self, x, threads, *, out=None, memory_limit=None):
        z = x - x.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True), True
