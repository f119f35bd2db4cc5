"""Elementwise activation layers besides :class:`~fastdecode.ReLU`.

Each computes its function exactly in the forward pass (as PyTorch defines it) and is passed
through when decoding (``decode_role = "identity"``), as the method passes ReLU through.
"""

import numpy as np
from scipy.special import erf, expit

from ._validation import float_array, printable
from .layers import Layer

__all__ = ["LeakyReLU", "Clip", "ReLU6", "PReLU", "Sigmoid", "Tanh", "SiLU", "HardSwish",
           "HardSigmoid", "GELU"]


class _Elementwise(Layer):
    """An elementwise activation: ``y = f(x)``, passed through when decoding."""

    decode_role = "identity"
    new_output = True

    def __init__(self, *, name=None, inputs=None):
        super().__init__(name, inputs=inputs)

    def function(self, x):
        """f(x), of x's dtype."""
        raise NotImplementedError

    def run(self, x, threads, *, out=None, memory_limit=None):
        y = np.asarray(self.function(x), dtype=x.dtype)
        return y, True

    def describe(self):
        return self.type


class LeakyReLU(_Elementwise):
    """Leaky ReLU: ``x`` where x > 0, ``slope * x`` elsewhere (``torch.nn.LeakyReLU``).

    Parameters
    ----------
    slope : float, optional
        The slope for negative values (finite).
    name : str, optional
        The layer's name.
    inputs : str, optional
        The layer it reads (see :class:`~fastdecode.Layer`); default the previous one.
    """

    type = "leakyrelu"

    def __init__(self, slope=0.01, *, name=None, inputs=None):
        super().__init__(name=name, inputs=inputs)
        self.slope = float(slope)
        if not np.isfinite(self.slope):
            raise ValueError("leaky relu layer %r: slope must be finite, got %r"
                             % (printable(name), slope))

    def function(self, x):
        return np.where(x > 0, x, x * x.dtype.type(self.slope))

    def _params(self):
        return ("slope=%g" % self.slope,)

    def describe(self):
        return "leakyrelu %g" % self.slope


class Clip(_Elementwise):
    """Clipping to ``[low, high]`` (``torch.clamp``; :class:`ReLU6` is ``Clip(0, 6)``).

    Parameters
    ----------
    low, high : float
        The bounds, finite, ``low < high``.
    name : str, optional
        The layer's name.
    inputs : str, optional
        The layer it reads (see :class:`~fastdecode.Layer`); default the previous one.
    """

    type = "clip"

    def __init__(self, low, high, *, name=None, inputs=None):
        super().__init__(name=name, inputs=inputs)
        self.low, self.high = float(low), float(high)
        if not (np.isfinite(self.low) and np.isfinite(self.high) and self.low < self.high):
            raise ValueError("clip layer %r: needs finite low < high, got %r, %r"
                             % (printable(name), low, high))

    def function(self, x):
        return np.clip(x, x.dtype.type(self.low), x.dtype.type(self.high))

    def _params(self):
        return ("low=%g, high=%g" % (self.low, self.high),)

    def describe(self):
        return "clip [%g, %g]" % (self.low, self.high)


class ReLU6(Clip):
    """``min(max(x, 0), 6)`` (``torch.nn.ReLU6``), a :class:`Clip` to [0, 6].

    Parameters
    ----------
    name : str, optional
        The layer's name.
    inputs : str, optional
        The layer it reads (see :class:`~fastdecode.Layer`); default the previous one.
    """

    type = "relu6"

    def __init__(self, *, name=None, inputs=None):
        super().__init__(0.0, 6.0, name=name, inputs=inputs)

    def _params(self):
        return ()

    def describe(self):
        return "relu6"


class PReLU(_Elementwise):
    """ReLU with a learnt slope per channel for negative values (``torch.nn.PReLU``).

    Parameters
    ----------
    slopes : array_like
        One slope per channel of the input, or one for all.
    name : str, optional
        The layer's name.
    inputs : str, optional
        The layer it reads (see :class:`~fastdecode.Layer`); default the previous one.
    """

    type = "prelu"

    def __init__(self, slopes, *, name=None, inputs=None):
        super().__init__(name=name, inputs=inputs)
        self.slopes = float_array("slopes", slopes).ravel()
        if self.slopes.size == 0:
            raise ValueError("prelu layer %r: slopes are empty" % (printable(name),))

    @property
    def dtype(self):
        """The slopes' dtype."""
        return self.slopes.dtype

    def attach(self, channels):
        if self.slopes.size not in (1, channels):
            raise ValueError("prelu layer %r has %d slopes but its input has %d channels"
                             % (printable(self.name), self.slopes.size, channels))
        return channels

    def function(self, x):
        a = self.slopes.astype(x.dtype)
        a = a[None, :, None, None] if a.size > 1 else a[0]
        return np.where(x > 0, x, x * a)

    def astype(self, dtype):
        return PReLU(self.slopes.astype(dtype), name=self.name, inputs=self.inputs)

    def check_finite(self):
        if not np.all(np.isfinite(self.slopes)):
            raise ValueError("layer %r (prelu): slopes contains non-finite values"
                             % printable(self.name))

    def _params(self):
        return ("channels=%d" % self.slopes.size,)


class Sigmoid(_Elementwise):
    """The logistic function ``1 / (1 + exp(-x))``.

    Parameters
    ----------
    name : str, optional
        The layer's name.
    inputs : str, optional
        The layer it reads (see :class:`~fastdecode.Layer`); default the previous one.
    """

    type = "sigmoid"

    def function(self, x):
        return expit(x)


class Tanh(_Elementwise):
    """The hyperbolic tangent.

    Parameters
    ----------
    name : str, optional
        The layer's name.
    inputs : str, optional
        The layer it reads (see :class:`~fastdecode.Layer`); default the previous one.
    """

    type = "tanh"

    def function(self, x):
        return np.tanh(x)


class SiLU(_Elementwise):
    """SiLU (swish): ``x * sigmoid(x)``.

    Parameters
    ----------
    name : str, optional
        The layer's name.
    inputs : str, optional
        The layer it reads (see :class:`~fastdecode.Layer`); default the previous one.
    """

    type = "silu"

    def function(self, x):
        return x * expit(x)


class HardSigmoid(_Elementwise):
    """``relu6(x + 3) / 6`` (``torch.nn.Hardsigmoid``).

    Parameters
    ----------
    name : str, optional
        The layer's name.
    inputs : str, optional
        The layer it reads (see :class:`~fastdecode.Layer`); default the previous one.
    """

    type = "hardsigmoid"

    def function(self, x):
        t = x.dtype.type
        return np.clip(x + t(3), t(0), t(6)) / t(6)


class HardSwish(_Elementwise):
    """``x * relu6(x + 3) / 6`` (``torch.nn.Hardswish``).

    Parameters
    ----------
    name : str, optional
        The layer's name.
    inputs : str, optional
        The layer it reads (see :class:`~fastdecode.Layer`); default the previous one.
    """

    type = "hardswish"

    def function(self, x):
        t = x.dtype.type
        return x * np.clip(x + t(3), t(0), t(6)) / t(6)


class GELU(_Elementwise):
    """GELU in its exact form ``x * (1 + erf(x / sqrt(2))) / 2`` (``torch.nn.GELU()``, not
    the tanh approximation).

    Parameters
    ----------
    name : str, optional
        The layer's name.
    inputs : str, optional
        The layer it reads (see :class:`~fastdecode.Layer`); default the previous one.
    """

    type = "gelu"

    def function(self, x):
        t = x.dtype.type
        return t(0.5) * x * (t(1) + erf(x / t(np.sqrt(2.0))))
