"""The Network: its layers (a chain or a graph), their geometry and the forward pass.

The layer classes live in :mod:`fastdecode.layers` and are re-exported here.
"""

import copy

import numpy as np

from . import _graph
from ._validation import as_int, check_bytes, float_array, printable, resolve_threads
from .layers import LRN, BatchNorm, Conv, Dropout, Layer, Pool, ReLU, Softmax

__all__ = ["Layer", "Conv", "Pool", "ReLU", "BatchNorm", "Dropout", "LRN", "Softmax", "Network"]


class Network:
    """A chain or a graph of layers, addressed by name or 0-based index, with its forward pass
    and geometry.

    Each layer reads the layer before it unless its ``inputs=`` names others (``"input"`` for
    the images); inputs name earlier layers, so the list order is a topological order. A
    network whose every layer reads the previous one is a chain.

    Parameters
    ----------
    layers : iterable of Layer
        The layers, in an order where each comes after the layers it reads. The network keeps
        copies: naming and group resolution never touch the caller's layer objects.
    meta : dict, optional
        What a file carried beside the layers (input size, classes, normalisation).
    input_channels : int, optional
        Channels of the images; default ``input_shape``'s C, else the depth of the first conv
        layer's filters (required for a network without either).
    input_shape : (int, int, int), optional
        (C, H, W) of the images; required for networks with global pooling or linear layers
        (their window is the whole map).
    aliases : dict of str to str, optional
        Further names for layers' outputs, ``{alias: layer name}``: an importer names the
        output of a whole block (``"layer2.1"``) by the block's last layer. An alias is
        accepted wherever a layer name is.

    Attributes
    ----------
    layers : list of Layer
        The network's own copies of the layers; unnamed layers get MatConvNet's default names
        ``layer1``, ``layer2``, ... (1-based).
    meta : dict
        A copy of ``meta``.
    dtype : numpy.dtype
        float64 if any conv layer's weights are float64, else float32; every parameter is
        converted to it.
    input_channels : int
        Channels of the images.
    aliases : dict of str to str
        A copy of ``aliases``.

    Raises
    ------
    TypeError
        For an item that is not a :class:`~fastdecode.layers.Layer`.
    ValueError
        For no layers, shared names, parameters holding NaN or inf, a layer that does not
        fit the depth of its input, an input name that is not an earlier layer, merged inputs
        of mismatched shapes, a global or linear layer without ``input_shape``, or an alias
        that is a layer's name or names no layer.

    Examples
    --------
    >>> import numpy as np
    >>> import fastdecode as fd
    >>> rng = np.random.default_rng(0)
    >>> net = fd.Network([fd.Conv(rng.standard_normal((4, 1, 3, 3)), np.zeros(4)), fd.ReLU(),
    ...                   fd.Pool("max", size=2), fd.Conv(rng.standard_normal((6, 4, 3, 3)))])
    >>> net.conv_layers
    ['layer1', 'layer4']
    >>> net.forward(np.ones((2, 1, 12, 12))).shape
    (2, 6, 3, 3)
    >>> net.stride("layer4"), net.receptive_field("layer4"), net.decoded_shape("layer4")
    ((2, 2), (8, 8), (1, 8, 8))

    A residual block with a projection shortcut at stride 2, its branches added:

    >>> block = fd.Network([
    ...     fd.Conv(rng.standard_normal((4, 1, 3, 3)), stride=2, pad=1, name="conv"),
    ...     fd.ReLU(name="relu"),
    ...     fd.Conv(rng.standard_normal((4, 1, 1, 1)), stride=2, name="proj", inputs="input"),
    ...     fd.Add(inputs=("relu", "proj"), name="sum")], input_shape=(1, 8, 8))
    >>> block.forward(np.ones((2, 1, 8, 8)), upto="sum").shape
    (2, 4, 4, 4)
    >>> block.stride("sum"), block.padding("sum"), block.receptive_field("sum")
    ((2, 2), (1, 1, 1, 1), (3, 3))
    """

    def __init__(self, layers, *, meta=None, input_channels=None, input_shape=None,
                 aliases=None):
        layers = list(layers)
        if not layers:
            raise ValueError("a Network needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError("layer %d is a %s, not a fastdecode Layer"
                                % (i, type(layer).__name__))
            layer.check_finite()
        dtypes = [l.weights.dtype for l in layers if isinstance(l, Conv)]
        dtype = np.dtype(np.float64) if np.dtype(np.float64) in dtypes else np.dtype(np.float32)
        # Copies, so that naming and group resolution never touch the caller's layer objects.
        self.layers = [l.astype(dtype) if l.dtype is not None and l.dtype != dtype
                       else copy.copy(l) for l in layers]
        self.dtype = dtype
        self.meta = dict(meta or {})
        seen = {}
        for i, layer in enumerate(self.layers):
            if layer.name is None or layer.name == "":
                layer.name = "layer%d" % (i + 1)
            if layer.name in seen:
                raise ValueError("layers %d and %d share the name %r" % (seen[layer.name], i,
                                                                         printable(layer.name)))
            if layer.name == "input":
                raise ValueError("layer %d: the name 'input' is reserved for the images" % i)
            seen[layer.name] = i
        self._index = seen
        self.aliases = _check_aliases(aliases, seen)
        if input_shape is not None:
            input_shape = tuple(as_int("input_shape", v, minimum=1) for v in input_shape)
            if len(input_shape) != 3:
                raise ValueError("input_shape must be (C, H, W), got %r" % (input_shape,))
            if input_channels is not None and input_channels != input_shape[0]:
                raise ValueError("input_channels %r and input_shape %r disagree"
                                 % (input_channels, input_shape))
            input_channels = input_shape[0]
        self.input_shape = input_shape
        first = next((l for l in self.layers if isinstance(l, Conv)), None)
        if input_channels is None:
            if first is None:
                raise ValueError("input_channels must be given for a network without conv layers")
            input_channels = first.weights.shape[1]
        self.input_channels = as_int("input_channels", input_channels, minimum=1)
        # inputs, shapes (C, H, W) at each layer's output (H, W None without input_shape),
        # channels, vector outputs, consumers
        _graph.build(self, input_shape)

    # --- addressing ---------------------------------------------------------------------------
    def index(self, layer):
        """0-based index of a layer.

        Parameters
        ----------
        layer : str, int or Layer
            A name, an index (negative counts from the end) or one of :attr:`layers`.

        Returns
        -------
        int

        Raises
        ------
        KeyError
            For an unknown name or a layer object not in the network.
        IndexError
            For an index out of range.
        TypeError
            For anything else.
        """
        if isinstance(layer, Layer):
            for i, l in enumerate(self.layers):
                if l is layer:
                    return i
            raise KeyError("that layer object is not in this network")
        if isinstance(layer, str):
            if layer in self._index:
                return self._index[layer]
            if layer in self.aliases:
                return self._index[self.aliases[layer]]
            raise KeyError("no layer named %r; layers are: %s"
                           % (layer, ", ".join(printable(l.name) for l in self.layers)))
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

    def inputs(self, layer):
        """Names of the layers that ``layer`` (name, index or object) reads (``"input"`` for
        the images)."""
        return _graph.names_of(self.layers, self._inputs[self.index(layer)])

    @property
    def conv_layers(self):
        """Names of the conv layers, bottom to top."""
        return [l.name for l in self.layers if isinstance(l, Conv)]

    def conv_index(self, layer):
        """Index of a conv layer (by name, index or object), with a ValueError naming the layer
        when it is not one."""
        i = self.index(layer)
        if not isinstance(self.layers[i], Conv):
            raise ValueError("layer %r is a %s layer; only conv layers can be decoded (conv layers: %s)"
                             % (printable(self.layers[i].name), self.layers[i].type,
                                ", ".join(map(printable, self.conv_layers))))
        return i

    def decodable_index(self, layer):
        """Index of a layer that :func:`~fastdecode.decode` can start from: a conv or linear
        layer of a chain; any layer of a graph whose output is a map or a vector and that
        decoding can pass (ValueError naming the layer otherwise)."""
        i = self.index(layer)
        if self.is_chain:
            if not any(l.type == "linear" for l in self.layers):
                return self.conv_index(i)
            if not isinstance(self.layers[i], Conv) and self.layers[i].type != "linear":
                raise ValueError(
                    "layer %r is a %s layer; only conv and linear layers of a chain can be "
                    "decoded (conv and linear layers: %s)"
                    % (printable(self.layers[i].name), self.layers[i].type,
                       ", ".join(printable(l.name) for l in self.layers
                                 if isinstance(l, Conv) or l.type == "linear")))
            return i
        l = self.layers[i]
        if (l.type not in ("add", "concat", "gate", "linear", "upsample")
                and getattr(l, "decode_role", None) is None):
            raise ValueError("layer %r is a %s layer, which decoding cannot start from"
                             % (printable(l.name), l.type))
        return i

    def channels(self, layer):
        """Channels at the output of ``layer`` (name, index or object)."""
        return self._channels[self.index(layer)]

    # --- geometry -----------------------------------------------------------------------------
    def _geometry(self, upto):
        """(stride, pad, receptive field) in image pixels at the output of layer ``upto``."""
        if not self.is_chain or self._upsampled:
            return _graph.geometry(self, upto)[:3]
        S = [1, 1]
        P = [0, 0, 0, 0]
        R = [1, 1]
        for layer in self.layers[:upto + 1]:
            kh, kw = layer.kernel
            sy, sx = layer.stride
            pt, pb, pl, pr = layer.pad
            R = [R[0] + (kh - 1) * S[0], R[1] + (kw - 1) * S[1]]
            P = [P[0] + pt * S[0], P[1] + pb * S[0], P[2] + pl * S[1], P[3] + pr * S[1]]
            S = [S[0] * sy, S[1] * sx]
        return tuple(S), tuple(P), tuple(R)

    def phases(self, layer):
        """The number of phases (rows, cols) of ``layer``'s units: (1, 1) unless it is above
        an upsampling.

        Above an upsampling by f, the units of the upsampled map read windows placed
        differently according to their position modulo f (their phase): a unit ``u = q * p
        + r`` of a layer of ``p`` phases has the decoded filter of phase r, placed at
        ``q * stride - padding``. :func:`~fastdecode.decode` decodes one phase at a time
        (``phase=``); all phases share one box, :meth:`receptive_field` at
        :meth:`padding`, and :meth:`stride` is the stride in image pixels from a unit to
        the next of the same phase, so that ``correlate(images, decode(net, layer,
        phase=(ry, rx)), stride=net.stride(layer), pad=net.padding(layer))`` estimates
        ``net.forward(images, upto=layer)[:, :, ry::py, rx::px]`` (on its first rows and
        columns, when some phases have fewer units).

        Returns
        -------
        (int, int)

        Raises
        ------
        ValueError
            Where the geometry is not defined (see :meth:`stride`).

        Examples
        --------
        >>> import numpy as np
        >>> import fastdecode as fd
        >>> net = fd.Network([fd.Conv(np.ones((1, 1, 3, 3)), stride=2, name="down"),
        ...                   fd.Upsample(2, name="up"),
        ...                   fd.Conv(np.ones((1, 1, 3, 3)), pad=1, name="top")])
        >>> net.phases("top"), net.stride("top"), net.padding("top"), net.receptive_field("top")
        ((2, 2), (2, 2), (2, 2, 2, 2), (7, 7))
        """
        i = self.index(layer)
        if self.is_chain and not self._upsampled:
            return (1, 1)
        return _graph.geometry(self, i)[3]

    def stride(self, layer):
        """Cumulative stride (rows, cols) in image pixels at the output of ``layer``: the stride
        at which its decoded filters are correlated with the images (above an upsampling,
        from a unit to the next of the same phase: see :meth:`phases`)."""
        return self._geometry(self.index(layer))[0]

    def padding(self, layer):
        """Cumulative zero padding (top, bottom, left, right) in image pixels at ``layer``.

        ``correlate(images, decode(net, layer), stride=net.stride(layer), pad=net.padding(layer))``
        has the shape of ``net.forward(images, upto=layer)``.
        """
        return self._geometry(self.index(layer))[1]

    def receptive_field(self, layer):
        """Receptive field (rows, cols) in image pixels of a unit of ``layer``: the size of its
        decoded filters."""
        return self._geometry(self.index(layer))[2]

    def decoded_shape(self, layer):
        """Shape (C0, h, w) of one decoded filter of a conv layer (of any decodable layer of a
        graph): the input channels and :meth:`receptive_field`."""
        i = self.decodable_index(layer)
        return (self.input_channels,) + self._geometry(i)[2]

    def output_shape(self, input_shape, upto=None):
        """Shape of :meth:`forward`'s result for images of ``input_shape`` (N, C, H, W), after
        layer ``upto`` (default: the last)."""
        N, C, H, W = input_shape
        last = len(self.layers) - 1 if upto is None else self.index(upto)
        if not self.is_chain:
            sizes = {_graph.IMAGE: (C, H, W)}
            for i in _graph.ancestors(self._inputs, last):
                sizes[i] = _graph.propagate(self, self.layers[i], i,
                                            [sizes[s] for s in self._inputs[i]], attach=False)
            return (N,) + sizes[last]
        size = (H, W)
        for layer in self.layers[:last + 1]:
            size = layer.output_size(size)
        return (N, self._channels[last]) + size

    # --- forward ------------------------------------------------------------------------------
    def check_input(self, shape, *, upto=None, memory_limit=None, name="x"):
        """Refuse images of ``shape`` (N, C, H, W) that ``forward(upto=upto)`` cannot take.

        Parameters
        ----------
        shape : tuple of int
            (N, C, H, W).
        upto : str or int, optional
            The last layer to run, default the last.
        memory_limit : float, optional
            Bytes any one layer's output may take (default 4 GiB).
        name : str, optional
            The images' name in messages.

        Raises
        ------
        ValueError
            For a channel mismatch, an empty shape or images too small for a layer.
        MemoryError
            When one layer's output would exceed ``memory_limit``.
        """
        last = len(self.layers) - 1 if upto is None else self.index(upto)
        N, C, H, W = shape
        if C != self.input_channels:
            raise ValueError("images have %d channels but the network expects %d (%s %s)"
                             % (C, self.input_channels, name, tuple(shape)))
        if min(shape) == 0:
            raise ValueError("%s is empty, shape %s" % (name, tuple(shape)))
        if not self.is_chain:
            _graph.check_sizes(self, shape, last, memory_limit, name)
            return
        size = (H, W)
        for i, layer in enumerate(self.layers[:last + 1]):
            new = layer.output_size(size)
            if new[0] < 1 or new[1] < 1:
                raise ValueError("images of %dx%d are too small for layer %r (%s): its input would "
                                 "be %dx%d" % (H, W, printable(layer.name), layer.describe(),
                                               size[0], size[1]))
            check_bytes("forward output of layer %r" % printable(layer.name),
                        (N, self._channels[i]) + new, self.dtype, memory_limit)
            size = new

    def forward(self, x, *, upto=None, n_threads=None, memory_limit=None):
        """Response after layer ``upto`` to images x.

        Parameters
        ----------
        x : array_like
            Images (N, C, H, W), converted to the network's dtype; never modified.
        upto : str or int, optional
            The last layer to run (name or index), default the last.
        n_threads : int, optional
            Threads to use; default all that OpenMP may use. Results are bitwise the same for
            any count.
        memory_limit : float, optional
            Bytes any one layer's output may take (default 4 GiB), checked for every layer
            before any is computed.

        Returns
        -------
        numpy.ndarray
            (N, K, Ho, Wo) in the network's dtype, or (N, K) for a vector (the output of a
            linear layer, or of elementwise layers and merges of vectors).

        Raises
        ------
        ValueError
            For images holding NaN or inf, of the wrong depth or too small, or a layer output
            that overflows the dtype (the error names the layer).
        MemoryError
            When one layer's output would exceed ``memory_limit``.
        """
        given = x
        x = float_array("x", x, ndim=4, dtype=self.dtype)
        # whether x is an array of this pass's own (a converted copy, or a new layer output)
        own = not (isinstance(given, np.ndarray) and np.may_share_memory(x, given))
        del given
        threads = resolve_threads(n_threads)
        last = len(self.layers) - 1 if upto is None else self.index(upto)
        self.check_input(x.shape, upto=last, memory_limit=memory_limit, name="x")
        if not self.is_chain:
            y = _graph.forward(self, x, own, last, threads, memory_limit)
            return _graph.vector_shape(y) if self._vector[last] else y
        for i in range(last + 1):
            layer = self.layers[i]
            # a layer that works in place (ReLU) does so on an array of the pass's own
            in_place = (layer.in_place and own and x.flags.c_contiguous and x.flags.writeable)
            y = self.forward_layer(i, x, threads, memory_limit=memory_limit,
                                   out=x if in_place else None)
            own = own if y is x else layer.new_output
            x = y
        return _graph.vector_shape(x) if self._vector[last] else x

    def writes_into(self, i):
        """Whether :meth:`forward_layer` writes layer ``i``'s output into a given ``out``
        (the layer's ``writes_into``: ungrouped conv, pool and ReLU layers)."""
        return self.layers[i].writes_into

    def forward_layer(self, i, x, n_threads, memory_limit=None, out=None):
        """Layer ``i`` alone applied to x, already checked (:meth:`check_input`): its values are
        not checked again, its output is checked for overflow (ValueError naming the layer).

        out: where the layer writes its output when :meth:`writes_into` says it can
        (C-contiguous, of the output's shape and dtype, not sharing x's memory, e.g. from a
        ``Workspace``, or x itself for a layer that works in place); ignored otherwise.
        """
        layer = self.layers[i]
        y, finite = layer.run(x, n_threads, out=out if layer.writes_into else None,
                              memory_limit=memory_limit)
        if not finite:
            raise layer.overflow_error(self.dtype)
        return y

    def astype(self, dtype):
        """A copy of the network with its parameters in ``dtype`` (float32 or float64)."""
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError("dtype must be float32 or float64, got %s" % dtype)
        net = Network([l.astype(dtype) for l in self.layers], meta=self.meta,
                      input_channels=self.input_channels, input_shape=self.input_shape,
                      aliases=self.aliases)
        net.dtype = dtype
        return net

    def summary(self):
        """A table of the layers with their output channels, cumulative stride and receptive
        field, one line per layer (a str)."""
        names = [printable(layer.name) for layer in self.layers]
        described = [layer.describe() for layer in self.layers]
        wn = max([20] + [len(n) for n in names])  # columns as wide as their longest entry
        wd = max([40] + [len(d) for d in described])
        if not self.is_chain or self._upsampled:
            return self._graph_summary(names, described, wn, wd)
        rows = ["%-3s %-*s %-*s %8s %8s %10s" % ("#", wn, "name", wd, "layer", "channels",
                                                 "stride", "receptive")]
        for i, layer in enumerate(self.layers):
            S, P, R = self._geometry(i)
            rows.append("%-3d %-*s %-*s %8d %8s %10s" % (
                i, wn, names[i], wd, described[i], self._channels[i], "%dx%d" % S, "%dx%d" % R))
        return "\n".join(rows)

    def _graph_summary(self, names, described, wn, wd):
        inputs = [_graph.summary_inputs(self, i) for i in range(len(self.layers))]
        wi = max([12] + [len(t) for t in inputs])
        rows = ["%-3s %-*s %-*s %-*s %8s %8s %10s" % ("#", wn, "name", wi, "inputs", wd, "layer",
                                                      "channels", "stride", "receptive")]
        for i in range(len(self.layers)):
            try:
                S, P, R = self._geometry(i)
                s, r = "%dx%d" % S, "%dx%d" % R
            except (ValueError, TypeError):  # above an upsampling, or no input_shape
                s, r = "-", "-"
            rows.append("%-3d %-*s %-*s %-*s %8d %8s %10s" % (
                i, wn, names[i], wi, inputs[i], wd, described[i], self._channels[i], s, r))
        return "\n".join(rows)


def _check_aliases(aliases, names):
    """A checked copy of ``aliases`` ({alias: layer name}) for layers named ``names``."""
    if aliases is None:
        return {}
    if not isinstance(aliases, dict):
        raise TypeError("aliases must be a dict {alias: layer name}, got %s"
                        % type(aliases).__name__)
    checked = {}
    for alias, target in aliases.items():
        if not isinstance(alias, str) or not isinstance(target, str) or not alias:
            raise TypeError("aliases must map non-empty names (str) to layer names (str), got "
                            "%r: %r" % (alias, target))
        if alias == "input" or alias in names:
            raise ValueError("alias %r is already the name of %s" % (
                printable(alias), "the images" if alias == "input" else "a layer"))
        if target not in names:
            raise ValueError("alias %r names %r, which is not a layer of the network"
                             % (printable(alias), printable(target)))
        checked[alias] = target
    return checked
