"""The walk of an ONNX graph for the importer: what each tensor is (a constant, a layer's
output, or a form only some ops read), the layers made so far and their names, and the
network at the end.

:class:`Walker` holds the state; :class:`fastdecode._onnx_ops.Converter` adds one method per
op type.
"""

import numpy as np

from ._onnx_fold import FOLDABLE, FoldError, fold
from ._onnx_import import OnnxError
from ._validation import printable


class Act:
    """A tensor the network computes: the output of layer ``layer`` ("input" for the images),
    of shape (C, H, W); ``vector``: rank 2 (N, C) in the graph (H = W = 1). ``nonneg``: its
    values are never negative. ``expr``: what it computes, for the subgraph patterns."""

    __slots__ = ("layer", "shape", "vector", "nonneg", "expr", "batch")

    def __init__(self, layer, shape, vector=False, nonneg=False, expr=None, batch=1):
        self.layer, self.shape, self.vector = layer, tuple(shape), vector
        self.nonneg, self.expr, self.batch = nonneg, expr, batch

    def like(self, vector):
        """The same tensor seen as a vector (N, C) or as a map (N, C, 1, 1)."""
        return Act(self.layer, self.shape, vector, self.nonneg, self.expr, self.batch)

    @property
    def full_shape(self):
        """The tensor's shape in the graph, of the graph input's batch (1 when dynamic)."""
        return (self.batch, self.shape[0]) if self.vector else (self.batch,) + self.shape


class Virtual:
    """A tensor that only some ops can read: ``kind`` "nhwc" (the NHWC images), "flat" (a map
    flattened to a vector, read by Gemm/MatMul), "pad" (zero padding, folded into the next
    conv or pool), "split" (channels reshaped to (groups, C / groups), for a channel shuffle),
    "product" (``x * relu6(x + 3)``, waiting for its ``/ 6``), "vec" (the values of a 1x1 map in
    another shape, such as (N, 1, 1, C))."""

    __slots__ = ("kind", "src", "info", "full_shape")

    def __init__(self, kind, src, info=None, full_shape=None):
        self.kind, self.src, self.info, self.full_shape = kind, src, info, full_shape


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


class Walker:
    """The state of the walk over one graph."""

    def __init__(self, path, model, tensors, budget, onnx):
        self.path, self.model, self.tensors, self.budget = path, model, tensors, budget
        self.node = None       # the node being converted, for messages
        self.onnx = onnx
        self.graph = model.graph
        self.opset = None
        for o in model.opset_import:
            if o.domain in ("", "ai.onnx"):
                self.opset = int(o.version)
        if self.opset is None:
            raise self.fail("the model imports no default (ai.onnx) opset")
        if self.opset < 9:
            raise self.fail("opset %d is older than 9, the oldest supported; convert the model "
                            "with onnx.version_converter" % self.opset)
        self.env = {}          # tensor name -> np.ndarray | Act | Virtual
        self.layers = []       # layers made, in topological order
        self.shapes = {}       # layer name -> (C, H, W)
        self.used = {"input"}  # names taken
        self.node = None       # the node being converted, for messages
        self.uses = {}         # tensor name -> number of reads (nodes and graph outputs)
        for n in self.graph.node:
            for t in n.input:
                if t:
                    self.uses[t] = self.uses.get(t, 0) + 1
        for o in self.graph.output:
            self.uses[o.name] = self.uses.get(o.name, 0) + 1
        self.float_dtype = np.dtype(np.float32)

    # --- messages -------------------------------------------------------------------------------
    def where(self, node=None):
        node = node or self.node
        if node is None:
            return ""
        return "node %r (%s, opset %d)" % (printable(node.name or node.output[0] if node.output
                                                     else node.name),
                                           node.op_type, self.opset)

    def fail(self, message, node=None):
        w = self.where(node)
        error = OnnxError("%s: %s%s" % (self.path, w + ": " if w else "", message))
        error.__suppress_context__ = True
        return error

    # --- tensors --------------------------------------------------------------------------------
    def value(self, name):
        """What tensor ``name`` is (None for an absent optional input)."""
        if not name:
            return None
        if name not in self.env:
            raise self.fail("reads tensor %r, which no earlier node, initializer or graph input "
                            "produces (nodes out of order, or a truncated file)" % printable(name))
        return self.env[name]

    def const(self, name, what, required=True):
        """Tensor ``name`` as a constant array (None when absent and not required)."""
        v = self.value(name)
        if v is None:
            if required:
                raise self.fail("needs its %s input" % what)
            return None
        if not isinstance(v, np.ndarray):
            raise self.fail("its %s (%r) is computed from the images; only constant %s is "
                            "supported" % (what, printable(name), what))
        return v

    def act(self, name):
        """Tensor ``name`` as an Act, materialising zero padding; OnnxError for a constant or a
        form this node cannot read."""
        v = self.value(name)
        if isinstance(v, Act):
            return v
        if isinstance(v, Virtual):
            if v.kind == "pad":
                return self.materialise_pad(name, v)
            raise self.fail(self._virtual_message(v, name))
        raise self.fail("input %r is %s; this op is supported on the images' path only"
                        % (printable(name), "absent" if v is None else "a constant"))

    def _virtual_message(self, v, name):
        return {
            "nhwc": "reads the NHWC graph input %r directly; an NHWC input is supported only "
                    "through a Transpose with perm (0, 3, 1, 2)" % printable(name),
            "flat": "reads %r, a map flattened to a vector, which only Gemm or MatMul (a linear "
                    "layer) can read" % printable(name),
            "split": "reads %r, channels reshaped into groups, which is supported only as a "
                     "channel shuffle (Reshape, Transpose (0, 2, 1, 3, 4), Reshape)"
                     % printable(name),
            "vec": "reads %r, the values of a 1x1 map in the shape %s, which only a reshape "
                   "back to (N, C) can read" % (printable(name), v.full_shape),
            "product": "reads %r = x * relu6(x + 3), which is supported only when divided by 6 "
                       "(hard swish)" % printable(name),
        }[v.kind]

    def materialise_pad(self, name, v):
        """Zero padding that no consumer folds: an identity depthwise conv with that padding."""
        from .layers import Conv
        src = v.src
        C = src.shape[0]
        w = np.ones((C, 1, 1, 1), dtype=self.float_dtype)
        act = self.emit(Conv(w, pad=v.info, name=self.fresh(name + ":pad"), inputs=src.layer),
                        src, nonneg=src.nonneg, bind=False)
        self.env[name] = act
        return act

    def float_array(self, a, what):
        a = np.asarray(a)
        if a.dtype.kind not in "fiub":
            raise self.fail("its %s has dtype %s, not a number" % (what, a.dtype))
        if a.dtype not in _FLOATS:
            a = a.astype(self.float_dtype)
        if not np.all(np.isfinite(a)):
            raise self.fail("its %s holds NaN or inf" % what)
        return a

    # --- layers ---------------------------------------------------------------------------------
    def fresh(self, base):
        base = base or "layer"
        name, k = base, 1
        while name in self.used:
            name = "%s_%d" % (base, k)
            k += 1
        self.used.add(name)
        return name

    def layer_name(self):
        node = self.node
        return self.fresh(node.name or (node.output[0] if node.output else node.op_type))

    def emit(self, layer, *ins, vector=None, nonneg=False, expr=None, bind=True):
        """Add ``layer`` (its inputs the Acts ``ins``); returns the Act of its output, bound to
        the node's first output unless ``bind`` is False."""
        shapes = [a.shape for a in ins]
        try:
            if getattr(layer, "multi_input", False):
                shape = tuple(layer.merge_shape(shapes, tuple(a.layer for a in ins)))
            else:
                C, H, W = shapes[0]
                C = layer.attach(C) if layer.type != "conv" else self._conv_channels(layer, C)
                if getattr(layer, "needs_size", False):
                    layer.fit((shapes[0][0], H, W))
                shape = (C,) + tuple(layer.output_size((H, W)))
        except ValueError as exc:
            raise self.fail(str(exc)) from None
        if min(shape) < 1:
            raise self.fail("its output would be empty (%s) for the input size" % (shape,))
        if vector is None:
            vector = all(a.vector for a in ins) and layer.type not in ("conv", "pool",
                                                                       "globalpool")
        self.layers.append(layer)
        self.shapes[layer.name] = shape
        act = Act(layer.name, shape, vector=vector, nonneg=nonneg, expr=expr, batch=ins[0].batch)
        if bind:
            self.env[self.node.output[0]] = act
        return act

    def _conv_channels(self, layer, C):
        K, Cw = layer.weights.shape[:2]
        if C % Cw or K % (C // Cw):
            raise ValueError("filters %s (depth %d) do not fit an input of %d channels"
                             % (layer.weights.shape, Cw, C))
        return K

    def bind(self, value, index=0):
        self.env[self.node.output[index]] = value
        return value

    # --- the walk -------------------------------------------------------------------------------
    def attributes(self, node):
        get = self.onnx.helper.get_attribute_value
        out = {}
        for a in node.attribute:
            if a.ref_attr_name:
                raise self.fail("attribute %r refers to a function's attribute" % a.name, node)
            v = get(a)
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            elif isinstance(v, list):
                v = [x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in v]
            out[a.name] = v
        return out

    def walk(self):
        for node in self.graph.node:
            self.node = node
            if node.domain not in ("", "ai.onnx"):
                raise self.fail("op domain %r is not supported (only the default ONNX domain)"
                                % node.domain)
            if not node.output or not node.output[0]:
                raise self.fail("the node has no output")
            attrs = self.attributes(node)
            ins = [self.value(t) for t in node.input]
            present = [v for v in ins if v is not None]
            if node.op_type in FOLDABLE and all(isinstance(v, np.ndarray) for v in present) \
                    and (present or node.op_type == "Constant"):
                self.fold(node, attrs, ins)
                continue
            handler = getattr(self, "op_" + node.op_type, None)
            if handler is None:
                raise self.fail("op %s is not supported; supported ops: %s"
                                % (node.op_type, ", ".join(sorted(self.supported()))))
            handler(node, attrs)
            for t in node.output[:1]:
                if t and t not in self.env:
                    raise self.fail("made no value for its output %r" % printable(t))
        self.node = None

    def supported(self):
        return [n[3:] for n in dir(self) if n.startswith("op_")]

    def fold(self, node, attrs, ins):
        what = "the constant %s computed by %s" % ("output", self.where(node))
        try:
            outs = fold(node, attrs, ins, self.opset, self.budget, what)
        except OnnxError:
            raise
        except (FoldError, ValueError, TypeError, IndexError, OverflowError) as exc:
            raise self.fail("cannot fold this constant node: %s" % exc) from None
        for t, v in zip(node.output, outs):
            if t:
                self.env[t] = np.asarray(v)

    # --- the network ----------------------------------------------------------------------------
    def live_layers(self, outputs):
        need = {a.layer for a in outputs}
        for layer in reversed(self.layers):
            if layer.name in need:
                need.update(layer.inputs or ())
        return [l for l in self.layers if l.name in need]
