"""MatConvNet networks: load every layout MATLAB writes, save the simplenn layout back.

Layouts that load (MAT v5/v7 through a guarded reader, MAT v7.3 through h5py):

- ``cnn_train`` checkpoints: a variable ``net`` (beside ``state``, ``stats``, ``info``) whose
  ``layers`` is a cell array of structs;
- model-zoo files saved with ``save -struct``: top-level ``layers`` and ``meta``;
- older simplenn files: ``filters``/``biases`` instead of ``weights``, ``normalization`` and
  ``classes`` beside ``layers`` instead of under ``meta``;
- DagNN files (``net.saveobj()``): struct arrays ``layers`` and ``params``, when the graph is a
  chain.

MatConvNet filters ``[H W C K]`` (first axis the image row) become ``(K, C, H, W)`` by
``transpose(3, 2, 0, 1)``: no spatial transposition. Loss layers at the end of the network are
dropped and listed in ``net.meta["losses"]``.

``net.meta`` mirrors MatConvNet's ``meta`` as Python values: structs become dicts, cell arrays
lists, char arrays str, numeric scalars int (when integral) or float, numeric vectors tuples, other
arrays numpy arrays in MATLAB's shape, empty arrays None; function handles and objects are
dropped. Three fields are given our orientation: ``meta["inputSize"]`` a tuple of ints
(H, W, C[, N]) as MATLAB stores it, ``meta["normalization"]["averageImage"]`` a float array
(C, H, W) or (C, 1, 1) for a per-channel mean, ``meta["classes"]["name"]`` and
``["description"]`` lists of str. ``save_matconvnet`` writes them back in MATLAB's orientation.
"""

import numbers

import numpy as np

from . import _matvalues as mv
from ._matfile import (DEFAULT_FILE_MEMORY_LIMIT, MatConvNetError, Opaque, StructArray,
                       read_mat_budget)
from ._validation import printable
from ._matconvnet_save import save_matconvnet
from .graph_layers import Add, Concat, GlobalPool
from .network import LRN, BatchNorm, Conv, Dropout, Network, Pool, ReLU, Softmax

__all__ = ["load_matconvnet", "save_matconvnet", "format_info", "MatConvNetError"]

#: Longest message about a file (names and values from the file are clipped to fit).
_MESSAGE_LIMIT = 1000
#: Variables a network file may hold; others (state, stats, info, ...) are skipped unread.
_NETWORK_VARIABLES = ("net", "layers", "meta", "params", "vars", "normalization", "classes")
#: Layer fields never used and possibly large: training momentum, a loss layer's last labels.
_UNUSED_FIELDS = ("momentum", "class")
_SIMPLENN_LOSSES = ("softmaxloss", "loss", "pdist", "custom")
_DAGNN_LOSSES = ("dagnn.Loss", "dagnn.PDist")
_DAGNN_MERGES = ("dagnn.Sum", "dagnn.Concat")


# --- loading ------------------------------------------------------------------------------------

def load_matconvnet(path, *, memory_limit=DEFAULT_FILE_MEMORY_LIMIT):
    """A network from a MatConvNet ``.mat`` file (simplenn, or DagNN: a chain, or a graph whose
    ``dagnn.Sum`` layers become :class:`~fastdecode.Add` and ``dagnn.Concat`` layers (along
    channels) :class:`~fastdecode.Concat`; a ``dagnn.Pooling`` whose window is its whole,
    unpadded input for images of the file's ``inputSize`` becomes a
    :class:`~fastdecode.GlobalPool`, and the network takes that ``input_shape``).

    Parameters
    ----------
    path : str or os.PathLike
        The file: MAT v5/v7 (read with a guarded reader) or v7.3 (read with h5py).
    memory_limit : int, optional
        Bytes the file's arrays may take once read (default 2 GiB), with the copies the loader
        makes of them (filters stored as integers, converted to float); a file that declares
        more is refused before the memory is spent. Float filters are reordered to
        (K, C, H, W) in the memory they were read into: the network costs what the file's
        arrays cost.

    Returns
    -------
    fastdecode.Network
        The network, its loss layers dropped and listed in ``net.meta["losses"]``.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    MatConvNetError
        A ValueError naming the file, the layer and the problem, for a file that is not a
        readable network.

    Examples
    --------
    >>> from importlib import resources
    >>> import fastdecode as fd
    >>> shipped = resources.files("fastdecode.models") / "lenet-mnist.mat"
    >>> with resources.as_file(shipped) as path:
    ...     net = fd.load_matconvnet(path)
    >>> net.conv_layers
    ['layer1', 'layer3', 'layer5', 'layer7']
    >>> net.meta["losses"]
    [{'name': 'layer8', 'type': 'softmaxloss'}]
    >>> net.meta["normalization"]["averageImage"].shape
    (1, 28, 28)
    """
    # a variable that cannot hold a network is refused from its header, before its data is read
    variables, budget = read_mat_budget(
        path, _NETWORK_VARIABLES, memory_limit=memory_limit, skip_fields=_UNUSED_FIELDS,
        expect={"net": ("1x1 struct", "object"), "layers": ("cell", "struct")})
    return _Loader(str(path), budget).network(variables)


class _Loader:
    def __init__(self, path, budget=None):
        self.path = path
        self.budget = budget  # the reader's, charged for the copies made here (None: uncharged)
        self.wheres = []  # "layer i of n 'name' (type)" of each loaded layer, for messages
        self.graph = False  # whether the layers form a graph (a DagNN that is not a chain)
        self.filters = {}  # id(MATLAB array) -> (it, its filters as (K, C, H, W))

    def fail(self, message):
        if len(message) > _MESSAGE_LIMIT:  # names and values from the file can be long
            half = _MESSAGE_LIMIT // 2
            message = message[:half] + " ... " + message[-half:]
        error = MatConvNetError("%s: %s" % (self.path, message))
        error.__suppress_context__ = True  # the message says it all
        raise error

    # -- the layout --------------------------------------------------------------------------
    def network(self, variables):
        root = self._root(variables)
        layers_value = root.get("layers")
        dagnn = isinstance(layers_value, StructArray) and "inputs" in layers_value.fields
        if dagnn:
            layers, losses = self._dagnn(layers_value, root.get("params"))
        else:
            layers, losses = self._simplenn(layers_value)
        first = next((l for l in layers if isinstance(l, Conv)), None)
        channels = None if first is None else first.weights.shape[1]
        size = mv.from_matlab(_find_value(root, "inputSize"))
        if size is None:  # older files: normalization.imageSize
            size = mv.from_matlab((_find(root, "normalization") or {}).get("imageSize"))
        if isinstance(size, tuple) and len(size) >= 3 and isinstance(size[2], int) \
                and size[2] > 0 and (channels is None or size[2] % channels == 0):
            channels = size[2]  # a grouped first conv (its filters see part of the input), or none
        if channels is not None and not self.graph:
            self._check_channels(layers, channels)
        meta = self._meta(root, layers, losses, channels)
        input_shape = None
        if dagnn and channels is not None and isinstance(size, tuple) and len(size) >= 3 \
                and all(isinstance(v, int) and v > 0 for v in size[:3]) and size[2] == channels:
            layers, input_shape = _global_pools(layers, (channels,) + tuple(size[:2]))
        try:
            return Network(layers, meta=meta, input_channels=channels, input_shape=input_shape)
        except (ValueError, TypeError) as exc:
            self.fail(str(exc))

    def _check_channels(self, layers, channels):
        """Channel counts must chain: say which layer breaks the chain, in MATLAB's terms."""
        c, source = channels, "the input"
        for layer, where in zip(layers, self.wheres):
            if isinstance(layer, Conv):
                K, C, h, w = layer.weights.shape
                if c % C or K % (c // C):
                    self.fail("%s: filters %dx%dx%dx%d (depth %d) do not fit the %d channels of "
                              "%s" % (where, h, w, C, K, C, c, source))
                c = K
            elif isinstance(layer, BatchNorm) and layer.num_channels != c:
                self.fail("%s: %d channels, but %s has %d" % (where, layer.num_channels, source, c))
            source = "the output of %s" % where.rsplit(" (", 1)[0]

    def _root(self, variables):
        """The struct holding ``layers``: the variable ``net``, or the file's top level."""
        net = variables.get("net")
        if net is not None:
            if isinstance(net, Opaque):
                self.fail("the variable 'net' is a MATLAB object (%s), not a struct; save DagNN "
                          "networks with net = net.saveobj() first" % net.kind)
            rec = net.scalar() if isinstance(net, StructArray) else None
            if rec is None:
                self.fail("the variable 'net' is not a 1x1 struct")
            if "layers" not in rec:
                self.fail("the variable 'net' has no 'layers' field (fields: %s)"
                          % ", ".join(rec) if rec else "the variable 'net' is an empty struct")
            return rec
        if "layers" in variables:
            return variables
        self.fail("no MatConvNet network in the file: no variable 'net' and no top-level "
                  "'layers'")

    def where(self, index, count, name, type_):
        label = "<unnamed>" if name is None else "'%s'" % mv.shown(name)
        return "layer %d of %d %s (%s)" % (index + 1, count, label, mv.shown(type_))

    def _layer(self, where, build, *args):
        """``build(*args)``, its errors reported as those of the layer at ``where``."""
        try:
            layer = build(*args)
        except MatConvNetError:
            raise
        except (ValueError, TypeError, KeyError) as exc:
            self.fail("%s: %s" % (where, exc.args[0] if exc.args else exc))
        self.wheres.append(where)
        return layer

    # -- simplenn ----------------------------------------------------------------------------
    def _simplenn_records(self, value):
        """The layer structs of a simplenn 'layers' (a cell array or a struct array), as dicts."""
        if isinstance(value, np.ndarray) and value.dtype == object:
            items = list(value.ravel(order="F"))
        elif isinstance(value, StructArray):
            items = [StructArray((1, 1), value.fields, [r]) for r in value.records]
        else:
            self.fail("'layers' is neither a cell array of structs nor a struct array")
        records = []
        for i, item in enumerate(items):
            rec = item.scalar() if isinstance(item, StructArray) else None
            if rec is None:
                self.fail("layer %d of %d is not a struct (%s)" % (i + 1, len(items),
                                                                    type(item).__name__))
            records.append(rec)
        if not records:
            self.fail("'layers' is empty")
        return records

    def _simplenn(self, value):
        records = self._simplenn_records(value)
        count = len(records)
        names = [mv.text(r.get("name")) or None for r in records]
        types = [mv.text(r.get("type")) for r in records]
        for i, t in enumerate(types):
            if not t:
                self.fail("%s has no 'type' field" % self.where(i, count, names[i], "?"))
        end = count
        while end > 0 and types[end - 1] in _SIMPLENN_LOSSES:
            end -= 1
        losses = [{"name": names[i] if names[i] else "layer%d" % (i + 1), "type": types[i]}
                  for i in range(end, count)]
        layers = []
        for i in range(end):
            where = self.where(i, count, names[i], types[i])
            if types[i] in _SIMPLENN_LOSSES:
                self.fail("%s is a loss layer followed by other layers; only losses at the end "
                          "of the network are dropped" % where)
            layers.append(self._layer(where, self._simplenn_layer, records[i], names[i],
                                      types[i]))
        if not layers:
            self.fail("the network has only loss layers")
        return layers, losses

    def _simplenn_layer(self, rec, name, type_):
        if type_ == "conv":
            if "weights" in rec and mv.cell_items(rec["weights"]):
                params = mv.cell_items(rec["weights"])
            elif "filters" in rec:
                params = [rec["filters"], rec.get("biases")]
            else:
                raise ValueError("no 'weights' (or 'filters') field")
            return self._conv(params[0], params[1] if len(params) > 1 else None, name,
                              stride=rec.get("stride", 1), pad=rec.get("pad", 0),
                              dilate=rec.get("dilate", 1))
        if type_ == "pool":
            return Pool(mv.text(rec.get("method")) or "max", size=mv.ints("pool", rec.get("pool")),
                        stride=mv.ints("stride", rec.get("stride", 1)),
                        pad=mv.ints("pad", rec.get("pad", 0)), name=name)
        if type_ == "relu":
            return ReLU(name, leak=mv.scalar("leak", rec.get("leak"), 0.0))
        if type_ == "bnorm":
            params = mv.cell_items(rec.get("weights"))
            if len(params) != 3:
                raise ValueError("'weights' must hold {gain, bias, moments}, got %d arrays"
                                 % len(params))
            return self._bnorm(*params, name=name)
        if type_ == "dropout":
            return Dropout(mv.scalar("rate", rec.get("rate"), 0.5), name=name)
        if type_ in ("lrn", "normalize"):
            return self._lrn(rec.get("param"), name)
        if type_ == "softmax":
            return Softmax(name)
        raise ValueError("layer type '%s' is not supported (supported: conv, pool, relu, bnorm, "
                         "dropout, lrn, softmax, and losses at the end)" % mv.shown(type_))

    def _conv(self, weights, bias, name, *, stride, pad, dilate, declared=None):
        # any real class; converted to float with the reordering (_filters), in one copy at most
        w = weights if isinstance(weights, np.ndarray) and weights.dtype.kind in "biuf" \
            else mv.numeric("filters", weights)
        if w.ndim > 4 or w.size == 0:
            raise ValueError("filters must be a non-empty [H W C K] array, got MATLAB shape %s"
                             % mv.mshape(w))
        w4 = w.reshape(w.shape + (1,) * (4 - w.ndim))  # MATLAB drops trailing singletons
        if declared is not None and tuple(declared) != w4.shape:
            raise ValueError("the block declares size %s but the filters are %s"
                             % (mv.mshape(declared), mv.mshape(w4)))
        b = None if bias is None else mv.numeric("bias", bias)
        if b is not None and b.size and (b.ndim != 2 or min(b.shape) != 1):
            raise ValueError("bias must be 1xK or Kx1, got MATLAB shape %s" % mv.mshape(b))
        if b is not None and b.size and b.size != w4.shape[3]:
            raise ValueError("bias has %d values but the filters %s have %d outputs"
                             % (b.size, mv.mshape(w4), w4.shape[3]))
        return Conv(self._filters(weights, w4, name),
                    None if b is None or b.size == 0 else b.ravel(order="F"),
                    stride=mv.ints("stride", stride), pad=mv.ints("pad", pad),
                    dilate=mv.ints("dilate", dilate), name=name)

    def _filters(self, weights, w4, name):
        """MATLAB's filters w4 [H W C K] (a view of ``weights``, the value read) as a
        C-contiguous float (K, C, H, W) array: in the memory of the array the reader made (the
        loader's alone) when it is float, else a copy charged against the memory limit. Layers
        that share one value (the same object) share its filters, made once."""
        known = self.filters.get(id(weights))
        if known is not None and known[0] is weights:
            return known[1]
        native = w4.dtype.newbyteorder("=")
        if native in (np.float32, np.float64) and w4.flags.f_contiguous and w4.flags.writeable:
            if w4.dtype != native:
                w4 = w4.byteswap(inplace=True).view(native)
            out = mv.filters_in_place(w4)
        else:
            dtype = native if native in (np.float32, np.float64) else \
                np.dtype(np.float32 if w4.dtype.itemsize <= 2 else np.float64)
            if self.budget is not None:
                self.budget.charge(w4.size * dtype.itemsize, "layer %s's filters as (K, C, H, W)"
                                   % printable(name), w4.shape)
            out = np.ascontiguousarray(w4.transpose(3, 2, 0, 1), dtype=dtype)
        self.filters[id(weights)] = (weights, out)
        return out

    @staticmethod
    def _bnorm(gain, bias, moments, *, name):
        g, b, m = (mv.numeric(n, a)
                   for n, a in (("gain", gain), ("bias", bias), ("moments", moments)))
        K = g.size
        if m.shape != (K, 2):
            raise ValueError("moments must be Kx2 [mean sigma] with K = %d, got MATLAB shape %s"
                             % (K, mv.mshape(m)))
        return BatchNorm(g.ravel(), b.ravel(), m[:, 0], m[:, 1], name=name)

    @staticmethod
    def _lrn(param, name):
        p = mv.numeric("param", param).ravel(order="F") if param is not None else None
        if p is None or p.size != 4:
            raise ValueError("'param' must be [N kappa alpha beta]")
        return LRN(p[0], p[1], p[2], p[3], name=name)

    # -- DagNN -------------------------------------------------------------------------------
    def _dagnn(self, layers, params):
        values = self._dagnn_params(params)
        nodes = []
        for i, rec in enumerate(layers.records):
            try:
                nodes.append(_dagnn_node(rec))
            except ValueError as exc:
                self.fail("%s: %s" % (self.where(i, len(layers.records),
                                                 mv.text(rec.get("name")) or None,
                                                 mv.text(rec.get("type")) or "?"), exc))
        if not nodes:
            self.fail("the DagNN has no layers")
        feeding = {v for n in nodes for v in n["inputs"]}
        # Losses: sink layers of a loss type (their outputs feed nothing).
        losses = [n for n in nodes if n["type"] in _DAGNN_LOSSES
                  and not any(v in feeding for v in n["outputs"])]
        body = [n for n in nodes if not any(n is l for l in losses)]
        ordered = self._graph_order(body)
        self.graph = not _is_chain(ordered)
        out = []
        for n in ordered:
            i = next(k for k, m in enumerate(nodes) if m is n)
            where = self.where(i, len(nodes), n["name"], n["type"])
            layer = self._layer(where, self._dagnn_layer, n, values)
            if self.graph and not layer.multi_input:
                layer.inputs = n["reads"]
            out.append(layer)
        return out, [{"name": n["name"], "type": n["type"]} for n in losses]

    def _graph_order(self, body):
        """The layers of ``body`` in an order where each follows those it reads (the file's
        order where it allows), each with ``reads``: the names of the layers it reads
        ("input" for the network's input)."""
        producer = {}
        for n in body:
            if len(n["outputs"]) != 1:
                self.fail("layer %r has %d outputs; DagNN layers load with one output each"
                          % (n["name"], len(n["outputs"])))
            if n["outputs"][0] in producer:
                self.fail("variable %r is the output of layers %r and %r"
                          % (n["outputs"][0], producer[n["outputs"][0]]["name"], n["name"]))
            producer[n["outputs"][0]] = n
        inputs = sorted({v for n in body for v in n["inputs"] if v not in producer})
        if len(inputs) != 1:
            self.fail("the DagNN has %d inputs (%s); networks of one input load"
                      % (len(inputs), ", ".join(map(repr, inputs))))
        for n in body:
            if not n["inputs"]:
                self.fail("layer %r reads no variable" % n["name"])
            n["reads"] = tuple("input" if v not in producer else producer[v]["name"]
                               for v in n["inputs"])
        ordered, done, pending = [], set(), list(body)
        while pending:
            ready = [n for n in pending if all(r == "input" or r in done for r in n["reads"])]
            if not ready:
                self.fail("the DagNN has a cycle through layer %r" % pending[0]["name"])
            for n in ready:
                ordered.append(n)
                done.add(n["name"])
            pending = [n for n in pending if n["name"] not in done]
        return ordered

    def _dagnn_params(self, params):
        """{parameter name: value} of a DagNN's 'params' struct array."""
        if not isinstance(params, StructArray) or not {"name", "value"} <= set(params.fields):
            self.fail("DagNN 'layers' without a 'params' struct array of name and value")
        return {mv.text(rec["name"]): rec["value"] for rec in params.records}

    def _dagnn_layer(self, node, values):
        block, name, type_ = node["block"], node["name"], node["type"]
        if type_ not in _DAGNN_MERGES and len(node["inputs"]) != 1:
            raise ValueError("a %s layer reads one input, got %d %s"
                             % (mv.shown(type_), len(node["inputs"]), mv.names(node["inputs"])))
        if type_ == "dagnn.Conv":
            return self._dagnn_conv(node, values)
        if type_ == "dagnn.Pooling":
            return Pool(mv.text(block.get("method")) or "max",
                        size=mv.ints("poolSize", block.get("poolSize", 1)),
                        stride=mv.ints("stride", block.get("stride", 1)),
                        pad=mv.ints("pad", block.get("pad", 0)), name=name)
        if type_ == "dagnn.ReLU":
            return ReLU(name, leak=mv.scalar("leak", block.get("leak"), 0.0))
        if type_ == "dagnn.BatchNorm":
            return self._dagnn_bnorm(node, values)
        if type_ == "dagnn.DropOut":
            return Dropout(mv.scalar("rate", block.get("rate"), 0.5), name=name)
        if type_ == "dagnn.LRN":
            return self._lrn(block.get("param"), name)
        if type_ == "dagnn.SoftMax":
            return Softmax(name)
        if type_ == "dagnn.Sum":
            return Add(inputs=node["reads"], name=name)
        if type_ == "dagnn.Concat":
            dim = mv.scalar("dim", block.get("dim"), 3.0)
            if dim != 3:
                raise ValueError("concatenation along dimension %g; only channels (3) load"
                                 % dim)
            return Concat(inputs=node["reads"], name=name)
        if len(node["inputs"]) != 1:
            raise ValueError("a %s layer reads one input, got %d %s"
                             % (mv.shown(type_), len(node["inputs"]), mv.names(node["inputs"])))
        raise ValueError("layer type '%s' is not supported (supported: dagnn.Conv, dagnn.Pooling, "
                         "dagnn.ReLU, dagnn.BatchNorm, dagnn.DropOut, dagnn.LRN, dagnn.SoftMax, "
                         "dagnn.Sum, dagnn.Concat, and losses at the end)" % mv.shown(type_))

    def _dagnn_conv(self, node, values):
        block = node["block"]
        has_bias = bool(mv.scalar("hasBias", block.get("hasBias"), 1.0))
        declared = block.get("size")
        declared = None if declared is None else tuple(mv.ints("size", declared))
        if declared is not None and len(declared) != 4:
            raise ValueError("the block's size must be [H W C K], got %s" % (declared,))
        weights = _dagnn_param(node, values, 0)
        bias = (_dagnn_param(node, values, 1) if has_bias and len(node["params"]) > 1
                else None)
        return self._conv(weights, bias, node["name"],
                          stride=block.get("stride", 1), pad=block.get("pad", 0),
                          dilate=block.get("dilate", 1), declared=declared)

    def _dagnn_bnorm(self, node, values):
        layer = self._bnorm(*(_dagnn_param(node, values, k) for k in range(3)),
                            name=node["name"])
        declared = node["block"].get("numChannels")
        if declared is not None and mv.scalar("numChannels", declared, 0) != layer.num_channels:
            raise ValueError("the block declares %g channels but gain has %d"
                             % (mv.scalar("numChannels", declared, 0), layer.num_channels))
        return layer

    # -- meta --------------------------------------------------------------------------------
    def _meta(self, root, layers, losses, channels):
        raw = root.get("meta")
        meta = mv.from_matlab(raw) if raw is not None else {}
        if not isinstance(meta, dict):
            meta = {}
        for key in ("normalization", "classes"):  # older files keep them beside 'layers'
            if key in root and key not in meta:
                value = mv.from_matlab(root[key])
                if value is not None:
                    meta[key] = value
        if "inputSize" in meta:
            size = meta["inputSize"]
            values = size if isinstance(size, tuple) else (size,)
            if all(isinstance(v, numbers.Real) and float(v).is_integer() for v in values):
                meta["inputSize"] = tuple(int(v) for v in values)
            else:
                self.fail("meta.inputSize must be integers, got %r" % (size,))
        norm = meta.get("normalization")
        if isinstance(norm, dict) and "averageImage" in norm:
            raw_norm = _find(root, "normalization")
            avg = raw_norm.get("averageImage") if raw_norm else None
            norm["averageImage"] = self._average_image(avg, channels)
        classes = meta.get("classes")
        if isinstance(classes, dict):
            for key in ("name", "description"):
                if key in classes:
                    classes[key] = mv.string_list(classes[key])
        previous = meta.get("losses")
        meta["losses"] = (list(previous) if isinstance(previous, list) else []) + losses
        return meta

    def _average_image(self, avg, channels):
        if avg is None or (isinstance(avg, np.ndarray) and avg.size == 0):
            return None
        if not isinstance(avg, np.ndarray) or avg.dtype.kind not in "biuf":
            self.fail("meta.normalization.averageImage is not a numeric array")
        a = avg if avg.dtype.kind == "f" else avg.astype(np.float64)
        while a.ndim > 3 and a.shape[-1] == 1:
            a = a[..., 0]
        if a.ndim == 3:
            out = a.transpose(2, 0, 1)
        elif a.ndim == 2 and min(a.shape) == 1 and a.size == channels and a.size > 1:
            out = a.reshape(-1, 1, 1)  # a per-channel mean stored as a vector
        elif a.ndim == 2:
            out = a[None]
        else:
            self.fail("meta.normalization.averageImage has MATLAB shape %s" % mv.mshape(a))
        return np.ascontiguousarray(out)


def _global_pools(layers, input_shape):
    """(layers, input_shape): the DagNN pooling layers whose window is their whole input
    (unpadded) for images of the file's input size ``input_shape`` (C, H, W) become
    :class:`GlobalPool` layers, and the network takes that input size; (layers, None)
    unchanged when there is none, or the input size does not fit the network."""
    try:
        trial = Network(layers, input_shape=input_shape)
    except (ValueError, TypeError):
        return layers, None
    out, changed = list(layers), False
    for i, layer in enumerate(trial.layers):
        if layer.type != "pool" or any(layer.pad):
            continue
        (src,) = trial._inputs[i]
        size = input_shape[1:] if src < 0 else trial._shapes[src][1:]
        if tuple(size) == tuple(layer.kernel):
            out[i] = GlobalPool(layer.method, name=layer.name, inputs=layer.inputs)
            changed = True
    return (out, input_shape) if changed else (layers, None)


def _is_chain(ordered):
    """Whether every layer reads the one before it (the input for the first)."""
    return all(n["reads"] == ((ordered[i - 1]["name"],) if i else ("input",))
               and n["type"] not in _DAGNN_MERGES for i, n in enumerate(ordered))


def _dagnn_node(rec):
    """One DagNN layer struct as a dict of str and lists of str, its block a dict."""
    block = rec.get("block")
    return {"name": mv.text(rec.get("name")), "type": mv.text(rec.get("type")),
            "inputs": mv.strings(rec.get("inputs")), "outputs": mv.strings(rec.get("outputs")),
            "params": mv.strings(rec.get("params")),
            "block": (block.scalar() if isinstance(block, StructArray) else None) or {}}


def _dagnn_param(node, values, k):
    """The value of the k-th parameter a DagNN layer lists (ValueError when it has none)."""
    names = node["params"]
    if k >= len(names):
        raise ValueError("expects %d parameters, lists %d" % (k + 1, len(names)))
    if names[k] not in values:
        raise ValueError("parameter %r is not in the file's params" % names[k])
    return values[names[k]]


def _find_value(root, key):
    """The raw MATLAB value ``root.meta.key`` (None when absent)."""
    meta = root.get("meta")
    rec = meta.scalar() if isinstance(meta, StructArray) else None
    return rec.get(key) if rec else None


def _find(root, key):
    """The raw MATLAB struct (dict) ``root.meta.key`` or ``root.key``."""
    meta = root.get("meta")
    rec = meta.scalar() if isinstance(meta, StructArray) else None
    value = rec.get(key) if rec else None
    if value is None:
        value = root.get(key)
    return value.scalar() if isinstance(value, StructArray) else None


# --- saving -------------------------------------------------------------------------------------

def format_info(net, title=None):
    """A text report of a network, as ``fastdecode info`` prints it.

    The report lists the network's layers, and for each conv layer the receptive field,
    cumulative stride and decoded filter size, in image pixels. Control characters in names are
    printed escaped.

    Parameters
    ----------
    net : fastdecode.Network
        The network.
    title : str, optional
        A first line, e.g. the file's name.

    Returns
    -------
    str
        The report, without a final newline.

    Raises
    ------
    TypeError
        When ``net`` is not a network.
    """
    if not isinstance(net, Network):
        raise TypeError("net must be a fastdecode.Network, got %s" % type(net).__name__)
    lines = []
    if title is not None:
        lines.append(printable(str(title)))
    lines.append("%d layers, %d input channel%s, %s" % (
        len(net), net.input_channels, "" if net.input_channels == 1 else "s", net.dtype.name))
    meta = net.meta or {}
    if meta.get("inputSize"):
        lines.append("input size (H, W, C): %s" % "x".join(str(v) for v in meta["inputSize"]))
    classes = meta.get("classes")
    if isinstance(classes, dict) and classes.get("name"):
        names = classes["name"]
        shown = ", ".join(printable(str(n)) for n in names[:5])
        lines.append("%d classes: %s%s" % (len(names), shown, ", ..." if len(names) > 5 else ""))
    norm = meta.get("normalization")
    if isinstance(norm, dict) and isinstance(norm.get("averageImage"), np.ndarray):
        lines.append("average image (C, H, W): %s" % (norm["averageImage"].shape,))
    losses = meta.get("losses") or []
    if losses:
        lines.append("dropped loss layers: %s" % ", ".join(
            "%s (%s)" % (printable(str(l.get("name"))), printable(str(l.get("type"))))
            for l in losses))
    lines.append("")
    lines.append(net.summary())
    lines.append("")
    lines.append("conv layers, in image pixels (rows x cols):")
    width = max([20] + [len(printable(n)) for n in net.conv_layers])
    lines.append("%-*s %-18s %10s %8s %16s" % (width, "name", "filters HxWxCxK", "receptive",
                                               "stride", "decoded (C,H,W)"))
    for name in net.conv_layers:
        K, C, h, w = net[name].weights.shape
        lines.append("%-*s %-18s %10s %8s %16s" % (
            width, printable(name), "%dx%dx%dx%d" % (h, w, C, K),
            "%dx%d" % net.receptive_field(name), "%dx%d" % net.stride(name),
            "x".join(map(str, net.decoded_shape(name)))))
    return "\n".join(lines)
