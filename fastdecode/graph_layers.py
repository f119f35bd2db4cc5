"""Layers of graph networks: merges (Add, Concat, Gate), global pooling, linear heads and
upsampling.

A layer that reads several tensors sets ``multi_input = True``: its :meth:`run` takes a list
of arrays (in the order of its ``inputs``) and :meth:`merge_shape` checks their shapes.
"""

import numpy as np

from . import ops
from ._engine.maps import pool_into
from ._validation import all_finite, as_pair, float_array, printable, resolve_threads
from .layers import Layer

__all__ = ["Add", "Concat", "GlobalPool", "Linear", "Upsample", "Gate"]


def _shape_text(shape):
    return "x".join("?" if s is None else "%d" % s for s in shape)


class _Merge(Layer):
    """A layer of several inputs."""

    multi_input = True
    new_output = True
    min_inputs = 2

    def __init__(self, *, inputs, name=None):
        super().__init__(name, inputs=inputs)
        if self.inputs is None or len(self.inputs) < self.min_inputs:
            raise ValueError("%s layer %r needs inputs= naming at least %d layers, got %r"
                             % (self.type, printable(name), self.min_inputs, inputs))

    def _refuse(self, what, shapes, names):
        return ValueError("%s layer %r: %s; its inputs %s have shapes (C, H, W) %s"
                          % (self.type, printable(self.name), what,
                             ", ".join(map(repr, names)),
                             ", ".join(_shape_text(s) for s in shapes)))

    def forward(self, xs, n_threads=None):
        """The layer's output for a list of input arrays (N, C, H, W), in ``inputs`` order.

        Returns
        -------
        numpy.ndarray
        """
        xs = [float_array("x", x, ndim=4) for x in xs]
        dtype = np.result_type(*xs)
        xs = [np.ascontiguousarray(x, dtype=dtype) for x in xs]
        if not all(all_finite(x) for x in xs):
            raise ValueError("%s layer %r: an input holds NaN or inf"
                             % (self.type, printable(self.name)))
        names = self.inputs or tuple("input %d" % i for i in range(len(xs)))
        self.merge_shape([x.shape[1:] for x in xs], names)
        y, finite = self.run(xs, resolve_threads(n_threads))
        if not finite:
            raise self.overflow_error(dtype)
        return y

    def describe(self):
        return "%s of %s" % (self.type, ", ".join(self.inputs))


class Add(_Merge):
    """Elementwise sum of two or more equally shaped inputs (DagNN ``Sum``, residual shortcuts).

    Decoding passes the decoded map at its output unchanged to each input.

    Parameters
    ----------
    inputs : tuple of str
        The layers added, by name (``"input"`` for the images).
    name : str, optional
        The layer's name.

    Examples
    --------
    >>> import numpy as np
    >>> import fastdecode as fd
    >>> rng = np.random.default_rng(0)
    >>> net = fd.Network([fd.Conv(rng.standard_normal((2, 2, 3, 3)), pad=1, name="conv"),
    ...                   fd.Add(inputs=("conv", "input"), name="sum")])
    >>> x = rng.standard_normal((1, 2, 5, 5))
    >>> np.allclose(net.forward(x), net.forward(x, upto="conv") + x)
    True
    """

    type = "add"

    def merge_shape(self, shapes, names):
        """The output (C, H, W) for inputs of ``shapes`` (H, W may be None: unknown)."""
        first = tuple(shapes[0])
        for s in shapes[1:]:
            if any(a is not None and b is not None and a != b for a, b in zip(first, s)):
                raise self._refuse("the inputs must have equal shapes", shapes, names)
        return tuple(next((s[d] for s in shapes if s[d] is not None), None) for d in range(3))

    def run(self, xs, threads, *, out=None, memory_limit=None):
        y = xs[0] + xs[1]
        for x in xs[2:]:
            y += x
        return y, all_finite(y)


class Concat(_Merge):
    """Concatenation along channels of inputs of equal height and width (DagNN ``Concat``).

    Decoding splits the decoded map at its output by channel, each part to its input.

    Parameters
    ----------
    inputs : tuple of str
        The layers concatenated, in order, by name (``"input"`` for the images).
    name : str, optional
        The layer's name.

    Examples
    --------
    >>> import numpy as np
    >>> import fastdecode as fd
    >>> rng = np.random.default_rng(0)
    >>> net = fd.Network([fd.Conv(rng.standard_normal((2, 1, 1, 1)), name="a"),
    ...                   fd.Conv(rng.standard_normal((3, 1, 3, 3)), pad=1, name="b",
    ...                           inputs="input"),
    ...                   fd.Concat(inputs=("a", "b"), name="cat")])
    >>> net.forward(np.ones((1, 1, 6, 6))).shape
    (1, 5, 6, 6)
    """

    type = "concat"
    min_inputs = 1

    def merge_shape(self, shapes, names):
        """The output (C, H, W) for inputs of ``shapes`` (H, W may be None: unknown)."""
        for d in (1, 2):
            known = {s[d] for s in shapes if s[d] is not None}
            if len(known) > 1:
                raise self._refuse("the inputs must have equal heights and widths", shapes, names)
        return (sum(s[0] for s in shapes),) + tuple(
            next((s[d] for s in shapes if s[d] is not None), None) for d in (1, 2))

    def run(self, xs, threads, *, out=None, memory_limit=None):
        return np.concatenate(xs, axis=1), True


class Gate(_Merge):
    """A per-channel gate ``x * g`` (squeeze-and-excitation), g (N, C, 1, 1) computed from x.

    The forward pass is exact. Decoding holds the gate constant at ``hold`` (1 by default, or
    e.g. its mean over images of one's choice): the decoded map at its output is multiplied
    by ``hold`` per channel and passed to x; nothing flows down the gate's own path.

    Parameters
    ----------
    inputs : (str, str)
        The names of x (N, C, H, W) and of the gate g (N, C, 1, 1).
    hold : float or array_like, optional
        The gate's value when decoding: one value, or one per channel (e.g. its mean over
        images x, ``net.forward(x, upto=gate_name).mean(axis=0).ravel()``).
    name : str, optional
        The layer's name.
    """

    type = "gate"

    def __init__(self, *, inputs, hold=1.0, name=None):
        super().__init__(inputs=inputs, name=name)
        if len(self.inputs) != 2:
            raise ValueError("gate layer %r needs inputs=(x, gate), got %r"
                             % (printable(name), inputs))
        self.hold = float_array("hold", hold).ravel()

    def merge_shape(self, shapes, names):
        """The output (C, H, W) for x and g of ``shapes``."""
        (c, h, w), g = shapes
        if g[0] != c or (g[1] is not None and g[1:] != (1, 1)):
            raise self._refuse("the gate must be (C, 1, 1) with the C of x", shapes, names)
        if self.hold.size not in (1, c):
            raise ValueError("gate layer %r: hold has %d values for %d channels"
                             % (printable(self.name), self.hold.size, c))
        return (c, h, w)

    def run(self, xs, threads, *, out=None, memory_limit=None):
        x, g = xs
        y = x * g
        return y, all_finite(y)


class GlobalPool(Layer):
    """Average or maximum over the whole map, giving (N, C, 1, 1).

    Its window is the whole input map, so a network holding one needs ``input_shape``.
    Decoding unpools it like a pool whose window is the whole map ("nearest": a box of ones,
    "adjoint": its average).

    Parameters
    ----------
    method : {"avg", "max"}, optional
        Mean or maximum.
    name : str, optional
        The layer's name.
    inputs : str, optional
        The layer it reads (see :class:`~fastdecode.Layer`); default the previous one.
    """

    type = "globalpool"
    decode_role = "unpool"
    new_output = True
    needs_size = True

    def __init__(self, method="avg", *, name=None, inputs=None):
        super().__init__(name, inputs=inputs)
        if method not in ("max", "avg"):
            raise ValueError("global pool method must be 'max' or 'avg', got %r" % (method,))
        self.method = method
        self.kernel = None   # the input's (H, W), set by the network

    def fit(self, shape):
        """Take the input map's (C, H, W) as the window."""
        self.kernel = tuple(shape[1:])

    @property
    def size(self):
        """The window (rows, cols): the input map."""
        return self.kernel

    def output_size(self, size):
        return (1, 1)

    def check_size(self, shape):
        pass

    def run(self, x, threads, *, out=None, memory_limit=None):
        out = np.empty(x.shape[:2] + (1, 1), dtype=x.dtype)
        return pool_into(x, out, self.method, x.shape[2:], (1, 1), (0, 0, 0, 0), threads), True

    def _params(self):
        return ("%r" % self.method,)

    def describe(self):
        return "globalpool %s" % self.method


class Linear(Layer):
    """A fully connected layer: its input flattened in C, H, W order (``torch.flatten`` of
    NCHW), times ``weights.T``, plus ``bias``; the output is a vector (N, K).

    It is the conv whose kernel is the whole input map, weights reshaped to (K, C, H, W), and
    decodes as one; a network holding one needs ``input_shape``.

    Parameters
    ----------
    weights : array_like
        (K, D), D = C * H * W of its input.
    bias : array_like, optional
        K values.
    name : str, optional
        The layer's name.
    inputs : str, optional
        The layer it reads (see :class:`~fastdecode.Layer`); default the previous one.
    """

    type = "linear"
    new_output = True
    needs_size = True

    def __init__(self, weights, bias=None, *, name=None, inputs=None):
        super().__init__(name, inputs=inputs)
        w = float_array("weights", weights)
        if w.ndim != 2 or min(w.shape) == 0:
            raise ValueError("linear layer %r: weights must be (K, D), got shape %s"
                             % (printable(name), w.shape))
        self.weights = w
        if bias is None or np.size(bias) == 0:
            self.bias = None
        else:
            b = float_array("bias", bias, dtype=w.dtype).ravel()
            if b.size != w.shape[0]:
                raise ValueError("linear layer %r: bias has %d values for %d outputs"
                                 % (printable(name), b.size, w.shape[0]))
            self.bias = b
        self.kernel = None   # the input's (H, W), set by the network
        self.input_map = None

    @property
    def dtype(self):
        """The weights' dtype."""
        return self.weights.dtype

    @property
    def num_filters(self):
        """K, the number of outputs."""
        return self.weights.shape[0]

    def output_channels(self, channels):
        return self.weights.shape[0]

    def _check_d(self, shape):
        D = int(np.prod(shape))
        if D != self.weights.shape[1]:
            raise ValueError("linear layer %r: weights %s need D = %d inputs, but its input "
                             "(C, H, W) = %s has %d" % (printable(self.name), self.weights.shape,
                                                        self.weights.shape[1], tuple(shape), D))

    def fit(self, shape):
        """Take the input map's (C, H, W): check D and set the kernel."""
        self._check_d(shape)
        self.input_map = tuple(shape)
        self.kernel = tuple(shape[1:])

    def output_size(self, size):
        return (1, 1)

    def check_size(self, shape):
        self._check_d(shape[1:])

    def conv_weights(self, shape=None):
        """The weights as the equivalent conv's (K, C, H, W)."""
        shape = self.input_map if shape is None else shape
        return self.weights.reshape((self.weights.shape[0],) + tuple(shape))

    def forward(self, x, n_threads=None, *, memory_limit=None):
        """The output (N, K) for x (N, D) or (N, C, H, W).

        Returns
        -------
        numpy.ndarray
        """
        x = float_array("x", x, ndim=(2, 4))
        if x.ndim == 2:
            x = x.reshape(x.shape + (1, 1))
        y = super().forward(x, n_threads, memory_limit=memory_limit)
        return y.reshape(y.shape[:2])

    def run(self, x, threads, *, out=None, memory_limit=None):
        self._check_d(x.shape[1:])
        w = self.conv_weights(x.shape[1:]).astype(x.dtype, copy=False)
        return ops.correlate_finite(x, np.ascontiguousarray(w), n_threads=threads,
                                    memory_limit=memory_limit, finite_inputs=True,
                                    bias=self.bias)

    def astype(self, dtype):
        new = Linear(self.weights.astype(dtype),
                     None if self.bias is None else self.bias.astype(dtype),
                     name=self.name, inputs=self.inputs)
        new.kernel, new.input_map = self.kernel, self.input_map
        return new

    def _params(self):
        return ("weights=%s" % (self.weights.shape,),)

    def describe(self):
        return "linear %dx%d" % self.weights.shape


def interpolation_matrix(n, factor, method, dtype=np.float64):
    """The (n * factor, n) matrix enlarging a line of n samples by ``factor``: "nearest"
    repeats, "bilinear" as PyTorch's ``interpolate(..., align_corners=False)``."""
    m = np.zeros((n * factor, n), dtype=np.float64)
    dst = np.arange(n * factor)
    if method == "nearest":
        m[dst, dst // factor] = 1.0
    else:
        src = np.maximum((dst + 0.5) / factor - 0.5, 0.0)
        i0 = np.minimum(np.floor(src).astype(np.intp), n - 1)
        i1 = np.minimum(i0 + 1, n - 1)
        lam = src - i0
        np.add.at(m, (dst, i0), 1.0 - lam)
        np.add.at(m, (dst, i1), lam)
    return m.astype(dtype)


class Upsample(Layer):
    """Enlargement of the map by an integer factor: "nearest" (each pixel repeated) or
    "bilinear" (PyTorch's ``interpolate(mode="bilinear", align_corners=False)``, edges
    clamped). Decoded through its exact transpose (away from the map's edges): above it,
    units of different phases (their index modulo the factor) have differently placed
    decoded filters, see :meth:`Network.phases <fastdecode.Network.phases>` and
    :func:`~fastdecode.decode`'s ``phase``.

    Parameters
    ----------
    factor : int or (int, int)
        The enlargement (rows, cols).
    method : {"nearest", "bilinear"}, optional
        The interpolation.
    name : str, optional
        The layer's name.
    inputs : str, optional
        The layer it reads (see :class:`~fastdecode.Layer`); default the previous one.
    """

    type = "upsample"
    new_output = True

    def __init__(self, factor, method="nearest", *, name=None, inputs=None):
        super().__init__(name, inputs=inputs)
        if method not in ("nearest", "bilinear"):
            raise ValueError("upsample method must be 'nearest' or 'bilinear', got %r"
                             % (method,))
        self.factor = as_pair("factor", factor, minimum=1)
        self.method = method

    def output_size(self, size):
        return (size[0] * self.factor[0], size[1] * self.factor[1])

    def check_size(self, shape):
        pass

    def matrices(self, size, dtype=np.float64):
        """The row and column interpolation matrices for an input of ``size`` (H, W)."""
        return (interpolation_matrix(size[0], self.factor[0], self.method, dtype),
                interpolation_matrix(size[1], self.factor[1], self.method, dtype))

    def run(self, x, threads, *, out=None, memory_limit=None):
        if self.method == "nearest":
            y = np.repeat(np.repeat(x, self.factor[0], axis=2), self.factor[1], axis=3)
            return np.ascontiguousarray(y), True
        mh, mw = self.matrices(x.shape[2:], x.dtype)
        y = np.einsum("ph,nchw,qw->ncpq", mh, x, mw, optimize=True)
        return np.ascontiguousarray(y, dtype=x.dtype), True

    def _params(self):
        return ("factor=%s" % (self.factor,), "%r" % self.method)

    def describe(self):
        return "upsample %s x%dx%d" % (self.method, self.factor[0], self.factor[1])
