"""The ONNX importer's converters: one method per op type, each turning a node into the
library's layers (or into a form the next node folds), exactly where the layers allow it.

The graph's state (tensors, layers, names) is :class:`fastdecode._onnx_graph.Walker`'s;
shapes and axis conventions follow the ONNX operator specifications for opsets 9 and later.
"""

import numpy as np

from ._onnx_graph import Act, Virtual
from ._onnx_import import OnnxError
from ._onnx_layout import LayoutOps
from ._validation import printable
from .activations import (GELU, Clip, HardSigmoid, HardSwish, LeakyReLU, PReLU, ReLU6, SiLU,
                          Sigmoid, Tanh)
from .graph_layers import Add, Concat, Gate, GlobalPool, Linear
from .layers import LRN, BatchNorm, Conv, Dropout, Pool, ReLU, Softmax


def _same_pad(size, k, s, mode):
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    small = total // 2
    return (small, total - small) if mode == "SAME_UPPER" else (total - small, small)


class Converter(LayoutOps):
    """Walks one graph and builds its :class:`~fastdecode.Network`."""

    # --- helpers --------------------------------------------------------------------------------
    def make(self, cls, *args, **kwargs):
        """A layer, its constructor's ValueError named by the node."""
        try:
            return cls(*args, **kwargs)
        except (ValueError, TypeError) as exc:
            raise self.fail(str(exc)) from None

    def unary(self, cls, *args, nonneg=False, expr_tag=None, **kwargs):
        x = self.act(self.node.input[0])
        layer = self.make(cls, *args, name=self.layer_name(), inputs=x.layer, **kwargs)
        return self.emit(layer, x, nonneg=nonneg,
                         expr=None if expr_tag is None else (expr_tag, x.layer))

    def per_channel(self, c, x, what):
        """Constant ``c`` as (C,) values along the channels of Act ``x`` (numpy broadcasting),
        or None when it is not per channel."""
        c = self.float_array(c, what)
        rank = 2 if x.vector else 4
        if c.ndim > rank:
            return None
        shape = (1,) * (rank - c.ndim) + c.shape
        if shape[0] != 1 or any(d != 1 for d in shape[2:]) or shape[1] not in (1, x.shape[0]):
            return None
        return np.broadcast_to(c.reshape(-1), (x.shape[0],)).copy()

    def two(self):
        """The node's two inputs as values."""
        if len(self.node.input) != 2:
            raise self.fail("needs exactly two inputs, got %d" % len(self.node.input))
        return self.value(self.node.input[0]), self.value(self.node.input[1])

    def single_use(self, tensor):
        return self.uses.get(tensor, 0) == 1

    # --- the network ----------------------------------------------------------------------------
    def network(self, input_shape):
        """The network, or OnnxError; an attribute or input of a type or size the converters
        do not expect (a corrupted file) is an OnnxError naming the node too."""
        try:
            return self._network(input_shape)
        except (TypeError, IndexError, AttributeError, KeyError, ValueError, ZeroDivisionError,
                OverflowError) as exc:
            if isinstance(exc, OnnxError):
                raise
            raise self.fail("malformed: %s (%s)" % (exc, type(exc).__name__)) from None

    def _network(self, input_shape):
        from .network import Network
        self.inputs(input_shape)
        self.walk()
        outputs, aliases = {}, {}
        acts = []
        for o in self.graph.output:
            self.node = None
            v = self.env.get(o.name)
            if isinstance(v, Virtual) and v.kind == "pad":
                v = self.materialise_pad(o.name, v)
            if not isinstance(v, Act) or v.layer == "input":
                what = ("a constant" if isinstance(v, np.ndarray) else "the graph input"
                        if isinstance(v, Act) else "not produced by any node" if v is None
                        else self._virtual_message(v, o.name))
                raise self.fail("graph output %r is %s; only outputs computed from the images "
                                "are supported" % (printable(o.name), what))
            outputs[o.name] = v.layer
            acts.append(v)
        layers = self.live_layers(acts)
        names = {l.name for l in layers}
        for o, layer in outputs.items():
            if o != layer and o not in names and o != "input":
                aliases[o] = layer
        meta = dict(self.meta, outputs=outputs)
        try:
            return Network(layers, meta=meta, input_shape=self.input_chw, aliases=aliases)
        except (ValueError, TypeError) as exc:
            raise self.fail("the network cannot be built: %s" % exc) from None

    def inputs(self, input_shape):
        g = self.graph
        if len(g.sparse_initializer):
            raise self.fail("sparse initializers are not supported")
        for t in g.initializer:
            self.env[t.name] = self.tensors.array(t, "initializer %r" % printable(t.name))
        images = [i for i in g.input if i.name not in self.env]
        if len(images) != 1:
            raise self.fail("the graph has %d inputs besides its initializers (%s); one input, "
                            "the images, is supported"
                            % (len(images), ", ".join(repr(printable(i.name)) for i in images)))
        vi = images[0]
        name = vi.name
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type") or tt.elem_type not in (1, 10, 11):
            raise self.fail("graph input %r is not a float tensor" % printable(name))
        if tt.elem_type == 11:
            self.float_dtype = np.dtype(np.float64)
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        if not tt.HasField("shape") or len(dims) != 4:
            raise self.fail("graph input %r has rank %s; images (N, C, H, W) or (N, H, W, C) of "
                            "rank 4 are supported" % (printable(name),
                                                     len(dims) if tt.HasField("shape") else "?"))
        readers = [n for n in g.node if name in n.input]
        nhwc = bool(readers) and all(
            n.op_type == "Transpose" and list(self.attributes(n).get("perm", [])) == [0, 3, 1, 2]
            for n in readers)
        static = (dims[3], dims[1], dims[2]) if nhwc else tuple(dims[1:])
        if input_shape is not None:
            for axis, (given, fixed) in enumerate(zip(input_shape, static)):
                if fixed is not None and given is not None and fixed != given:
                    raise self.fail("input_shape %s does not fit graph input %r of fixed size "
                                    "(C, H, W) = %s" % (tuple(input_shape), printable(name),
                                                        tuple("?" if s is None else s
                                                              for s in static)))
            static = tuple(f if g is None else g for g, f in zip(input_shape, static))
        if None in static:
            raise self.fail("graph input %r has a dynamic size (C, H, W) = %s; pass "
                            "input_shape=(C, H, W) to fix it"
                            % (printable(name), tuple("?" if s is None else s for s in static)))
        else:
            chw = static
        self.input_chw = chw
        images = Act("input", chw, batch=dims[0] or 1)
        self.env[name] = Virtual("nhwc", images) if nhwc else images
        producer = (self.model.producer_name + " " + self.model.producer_version).strip()
        self.meta = {"format": "onnx", "input": name, "layout": "NHWC" if nhwc else "NCHW",
                     "opset": self.opset, "producer": producer,
                     "ir_version": int(self.model.ir_version)}
        if g.name:
            self.meta["graph"] = g.name

    # --- convolution and pooling ----------------------------------------------------------------
    def padded_source(self):
        """(Act, extra zero padding (t, b, l, r), Virtual or None) of the node's first input."""
        v = self.value(self.node.input[0])
        if isinstance(v, Virtual) and v.kind == "pad":
            return v.src, v.info, v
        return self.act(self.node.input[0]), (0, 0, 0, 0), None

    def window(self, a, kernel, size, dilations=(1, 1)):
        """(stride, pad (t, b, l, r)) of a conv or pool node for an input of ``size``."""
        strides = tuple(a.get("strides", (1, 1)))
        if len(strides) != 2 or min(strides) < 1:
            raise self.fail("strides %s: two positive strides are supported" % (strides,))
        eff = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
        mode = a.get("auto_pad", "NOTSET")
        if mode in ("SAME_UPPER", "SAME_LOWER"):
            (t, b), (l, r) = (_same_pad(size[i], eff[i], strides[i], mode) for i in (0, 1))
            return strides, (t, b, l, r)
        if mode == "VALID":
            return strides, (0, 0, 0, 0)
        if mode not in ("NOTSET", ""):
            raise self.fail("auto_pad %r is not supported" % mode)
        p = tuple(a.get("pads", (0, 0, 0, 0)))
        if len(p) != 4 or min(p) < 0:
            raise self.fail("pads %s: four non-negative pads are supported" % (p,))
        return strides, (p[0], p[2], p[1], p[3])

    def op_Conv(self, node, a):
        x, extra, _ = self.padded_source()
        w = self.float_array(self.const(node.input[1], "weights"), "weights")
        if w.ndim != 4:
            raise self.fail("weights of shape %s: 2-D convolutions (4-D weights) are supported"
                            % (w.shape,))
        b = None
        if len(node.input) > 2 and node.input[2]:
            b = self.float_array(self.const(node.input[2], "bias"), "bias")
        group = a.get("group", 1)
        C = x.shape[0]
        if w.shape[1] * group != C or w.shape[0] % group:
            raise self.fail("weights %s with group %d do not fit an input of %d channels"
                            % (w.shape, group, C))
        dil = tuple(a.get("dilations", (1, 1)))
        if "kernel_shape" in a and tuple(a["kernel_shape"]) != w.shape[2:]:
            raise self.fail("kernel_shape %s differs from the weights' %s"
                            % (a["kernel_shape"], w.shape[2:]))
        size = (x.shape[1] + extra[0] + extra[1], x.shape[2] + extra[2] + extra[3])
        stride, pad = self.window(a, w.shape[2:], size, dil)
        pad = tuple(p + e for p, e in zip(pad, extra))
        self.emit(self.make(Conv, w, b, stride=stride, pad=pad, dilate=dil,
                            name=self.layer_name(), inputs=x.layer), x)

    def pool(self, method, a):
        node = self.node
        if len(node.output) > 1 and self.uses.get(node.output[1]):
            raise self.fail("its Indices output is used, which is not supported")
        x, extra, virtual = self.padded_source()
        kernel = tuple(a.get("kernel_shape", ()))
        if len(kernel) != 2:
            raise self.fail("kernel_shape %s: 2-D pooling is supported" % (kernel,))
        if tuple(a.get("dilations", (1, 1))) != (1, 1):
            raise self.fail("dilated pooling (dilations %s) is not supported"
                            % (a["dilations"],))
        ceil = bool(a.get("ceil_mode", 0))
        include = bool(a.get("count_include_pad", 0)) and method == "avg"
        size = (x.shape[1] + extra[0] + extra[1], x.shape[2] + extra[2] + extra[3])
        stride, pad = self.window(a, kernel, size)
        if any(extra):
            total = tuple(p + e for p, e in zip(pad, extra))
            # (in ceil mode a window may start in explicit padding, not in a pool's own)
            fits = max(total[:2]) < kernel[0] and max(total[2:]) < kernel[1] and not ceil
            if method == "max" and x.nonneg and fits:
                pad = total   # zeros never exceed a non-negative window's maximum
            elif method == "avg" and fits and (include or not any(pad)):
                pad, include = total, True   # the explicit zeros count in every window
            else:
                x = self.materialise_pad(node.input[0], virtual)
        kwargs = dict(ceil_mode=ceil, count_include_pad=include and any(pad))
        layer = self.make(Pool, method, size=kernel, stride=stride, pad=pad,
                          name=self.layer_name(), inputs=x.layer, **kwargs)
        self.emit(layer, x, nonneg=x.nonneg)

    def op_MaxPool(self, node, a):
        self.pool("max", a)   # storage_order only matters to the Indices output

    def op_AveragePool(self, node, a):
        self.pool("avg", a)

    def global_pool(self, method, vector=False):
        x = self.act(self.node.input[0])
        if x.vector:
            raise self.fail("global pooling of a vector is not supported")
        layer = self.make(GlobalPool, method, name=self.layer_name(), inputs=x.layer)
        self.emit(layer, x, nonneg=x.nonneg, vector=vector)

    def op_GlobalAveragePool(self, node, a):
        self.global_pool("avg")

    def op_GlobalMaxPool(self, node, a):
        self.global_pool("max")

    def reduce(self, method, a):
        x = self.act(self.node.input[0])
        axes = a.get("axes")
        if self.opset >= 18 and len(self.node.input) > 1 and self.node.input[1]:
            axes = [int(v) for v in self.const(self.node.input[1], "axes").ravel()]
        if x.vector or axes is None or sorted(v % 4 for v in axes) != [2, 3]:
            raise self.fail("reduces axes %s; only the spatial axes (2, 3) of a map are "
                            "supported (a global pooling)" % (axes,))
        self.global_pool(method, vector=not a.get("keepdims", 1))

    def op_ReduceMean(self, node, a):
        self.reduce("avg", a)

    def op_ReduceMax(self, node, a):
        self.reduce("max", a)

    # --- normalisation --------------------------------------------------------------------------
    def op_BatchNormalization(self, node, a):
        if a.get("training_mode", 0) or any(self.uses.get(t) for t in node.output[1:] if t):
            raise self.fail("training mode (running statistics as outputs) is not supported")
        x = self.act(node.input[0])
        if len(node.input) != 5:
            raise self.fail("needs 5 inputs (X, scale, B, mean, var)")
        scale, bias, mean, var = (self.float_array(self.const(t, w), w) for t, w in
                                  zip(node.input[1:], ("scale", "B", "mean", "var")))
        if any(p.size != x.shape[0] for p in (scale, bias, mean, var)):
            raise self.fail("parameters of sizes %s do not fit %d channels"
                            % ([p.size for p in (scale, bias, mean, var)], x.shape[0]))
        if np.any(var < 0):
            raise self.fail("var holds negative values")
        eps = var.dtype.type(a.get("epsilon", 1e-5))
        sigma = np.sqrt(var + eps)
        self.emit(self.make(BatchNorm, scale, bias, mean, sigma, name=self.layer_name(),
                            inputs=x.layer), x)

    def op_LRN(self, node, a):
        size = a.get("size")
        if size is None:
            raise self.fail("LRN needs its size attribute")
        self.unary(LRN, depth=size, kappa=a.get("bias", 1.0),
                   alpha=a.get("alpha", 1e-4) / size, beta=a.get("beta", 0.75))

    # --- activations ----------------------------------------------------------------------------
    def op_Relu(self, node, a):
        self.unary(ReLU, nonneg=True)

    def op_LeakyRelu(self, node, a):
        self.unary(LeakyReLU, a.get("alpha", 0.01))

    def op_Sigmoid(self, node, a):
        self.unary(Sigmoid, nonneg=True, expr_tag="sigmoid")

    def op_Tanh(self, node, a):
        self.unary(Tanh)

    def op_HardSwish(self, node, a):
        self.unary(HardSwish)

    def op_Gelu(self, node, a):
        if a.get("approximate", "none") != "none":
            raise self.fail("approximate=%r is not supported (the exact erf form only)"
                            % a["approximate"])
        self.unary(GELU)

    def op_PRelu(self, node, a):
        x = self.act(node.input[0])
        slopes = self.per_channel(self.const(node.input[1], "slope"), x, "slope")
        if slopes is None:
            raise self.fail("slope of shape %s is not one value per channel"
                            % (self.value(node.input[1]).shape,))
        self.emit(self.make(PReLU, slopes, name=self.layer_name(), inputs=x.layer), x)

    def op_HardSigmoid(self, node, a):
        alpha, beta = a.get("alpha", 0.2), a.get("beta", 0.5)
        if abs(alpha - 1 / 6) < 1e-6 and beta == 0.5:
            self.unary(HardSigmoid, nonneg=True, expr_tag="hardsigmoid")
            return
        x = self.act(node.input[0])   # max(0, min(1, alpha * x + beta)): an affine map, clipped
        C = x.shape[0]
        dt = self.float_dtype
        base = node.name or node.output[0]
        affine = self.make(BatchNorm, np.full(C, alpha, dt), np.full(C, beta, dt),
                           np.zeros(C, dt), np.ones(C, dt),
                           name=self.fresh(base + ":affine"), inputs=x.layer)
        y = self.emit(affine, x, bind=False)
        self.emit(self.make(Clip, 0.0, 1.0, name=self.layer_name(), inputs=y.layer), y,
                  nonneg=True)

    def op_Clip(self, node, a):
        x = self.act(node.input[0])
        if self.opset < 11:
            lo, hi = a.get("min", -np.inf), a.get("max", np.inf)
        else:
            bounds = [self.const(t, w, required=False) if i < len(node.input) else None
                      for i, (t, w) in enumerate(zip(list(node.input[1:3]) + ["", ""],
                                                     ("min", "max")))]
            lo = -np.inf if bounds[0] is None else float(np.asarray(bounds[0]).ravel()[0])
            hi = np.inf if bounds[1] is None else float(np.asarray(bounds[1]).ravel()[0])
        name = self.layer_name()
        if lo == 0 and hi == 6:
            layer = self.make(ReLU6, name=name, inputs=x.layer)
        elif lo == 0 and hi == np.inf:
            layer = self.make(ReLU, name=name, inputs=x.layer)
        elif np.isfinite(lo) and np.isfinite(hi):
            layer = self.make(Clip, lo, hi, name=name, inputs=x.layer)
        else:
            raise self.fail("Clip to [%g, %g]: one-sided bounds other than [0, inf) are not "
                            "supported" % (lo, hi))
        expr = None
        if lo == 0 and hi == 6 and x.expr and x.expr[0] == "add3":
            expr = ("relu6_shift3", x.expr[1])
        self.emit(layer, x, nonneg=lo >= 0, expr=expr)

    def op_Softmax(self, node, a):
        x = self.act(node.input[0])
        rank = 2 if x.vector else 4
        axis = a.get("axis", 1 if self.opset < 13 else -1) % rank
        whole = x.vector or x.shape[1:] == (1, 1)
        if not (axis == 1 and (self.opset >= 13 or whole)):
            raise self.fail("softmax over axis %d of a rank-%d tensor: only over the channels "
                            "is supported" % (axis, rank))
        self.unary(Softmax, nonneg=True)

    # --- elementwise arithmetic -----------------------------------------------------------------
    def affine(self, x, gain, bias, tensor_in):
        """A BatchNorm layer computing ``x * gain + bias`` per channel (exact: mean 0, sigma
        1), or a linear layer's bias."""
        C = x.shape[0]
        dt = self.float_dtype
        if gain is not None and bias is not None:
            g, b = gain, bias
        elif gain is not None:
            g, b = gain, np.zeros(C, dt)
        else:
            g, b = np.ones(C, dt), bias
        src, expr = x, None
        if gain is None and x.expr and self.single_use(tensor_in):
            if x.expr[0] == "mul":
                src, g = x.expr[1], x.expr[2]   # Mul then Add: one BatchNorm
            elif x.expr[0] == "linear" and x.expr[3] is None:
                w = x.expr[2]
                layer = self.make(Linear, w, b, name=self.layer_name(), inputs=x.expr[1].layer)
                self.emit(layer, x.expr[1], vector=True, expr=("linear", x.expr[1], w, b))
                return
        if gain is None and np.all(bias == 3):
            expr = ("add3", x.layer)
        elif bias is None:
            expr = ("mul", x, g)
        layer = self.make(BatchNorm, g, b, np.zeros(C, g.dtype), np.ones(C, g.dtype),
                          name=self.layer_name(), inputs=src.layer)
        self.emit(layer, src, expr=expr, vector=src.vector)

    def arithmetic(self, op):
        node = self.node
        u, v = self.two()
        if isinstance(u, np.ndarray) and isinstance(v, np.ndarray):
            raise self.fail("constant inputs")  # folded before reaching here
        if isinstance(u, np.ndarray) or isinstance(v, np.ndarray):
            const_first = isinstance(u, np.ndarray)
            c, t = (u, node.input[1]) if const_first else (v, node.input[0])
            x = self.value(t)
            if isinstance(x, Virtual) and x.kind == "product" and np.size(c) == 1:
                k = float(np.asarray(c).ravel()[0])
                if (op == "Div" and not const_first and k == 6) or \
                        (op == "Mul" and abs(k - 1 / 6) < 1e-7):
                    src = x.src
                    self.emit(self.make(HardSwish, name=self.layer_name(), inputs=src.layer), src)
                    return
            x = self.act(t)
            if (op == "Div" and np.size(c) == 1 and float(np.asarray(c).ravel()[0]) == 6
                    and not const_first and x.expr and x.expr[0] == "relu6_shift3"):
                src = self.env_act(x.expr[1], x)
                self.emit(self.make(HardSigmoid, name=self.layer_name(), inputs=src.layer), src,
                          nonneg=True, expr=("hardsigmoid", src.layer))
                return
            vals = self.per_channel(c, x, "constant")
            if vals is None:
                raise self.fail("%s by a constant of shape %s: only one value, or one per "
                                "channel, is supported" % (op, np.shape(c)))
            if op == "Add":
                return self.affine(x, None, vals, t)
            if op == "Sub":
                return (self.affine(x, -np.ones_like(vals), vals, t) if const_first
                        else self.affine(x, None, -vals, t))
            if op == "Mul":
                return self.affine(x, vals, None, t)
            if op == "Div" and not const_first:
                if np.any(vals == 0):
                    raise self.fail("division by zero")
                return self.affine(x, (1 / vals).astype(vals.dtype), None, t)
            raise self.fail("a constant divided by a computed tensor is not supported")
        return self.product(op, node.input[0], node.input[1])

    def env_act(self, layer_name, like):
        return Act(layer_name, self.shapes[layer_name] if layer_name != "input"
                   else self.input_chw, batch=like.batch)

    def product(self, op, ta, tb):
        if op == "Add":
            a, b = self.act(ta), self.act(tb)
            self.emit(self.make(Add, inputs=(a.layer, b.layer), name=self.layer_name()), a, b,
                      nonneg=a.nonneg and b.nonneg)
            return
        if op != "Mul":
            raise self.fail("%s of two computed tensors is not supported" % op)
        a, b = self.act(ta), self.act(tb)
        for x, g in ((a, b), (b, a)):
            if g.expr and g.expr[1] == x.layer and g.expr[0] in ("sigmoid", "hardsigmoid",
                                                                 "relu6_shift3"):
                if g.expr[0] == "relu6_shift3":
                    self.bind(Virtual("product", x))
                    return
                cls = SiLU if g.expr[0] == "sigmoid" else HardSwish
                self.emit(self.make(cls, name=self.layer_name(), inputs=x.layer), x)
                return
        for x, g in ((a, b), (b, a)):
            if g.shape[1:] == (1, 1) and g.shape[0] == x.shape[0] and not g.vector and \
                    (x.shape[1:] != (1, 1) or (g.expr and g.expr[0] in ("sigmoid",
                                                                        "hardsigmoid"))):
                self.emit(self.make(Gate, inputs=(x.layer, g.layer), name=self.layer_name()),
                          x, g)
                return
        raise self.fail("the product of two computed tensors of shapes %s and %s is supported "
                        "only as x * Sigmoid(x), x * HardSigmoid(x), x * Clip(x + 3, 0, 6) / 6 "
                        "or a per-channel gate (N, C, 1, 1)" % (a.full_shape, b.full_shape))

    def op_Add(self, node, a):
        self.arithmetic("Add")

    def op_Sub(self, node, a):
        self.arithmetic("Sub")

    def op_Mul(self, node, a):
        self.arithmetic("Mul")

    def op_Div(self, node, a):
        self.arithmetic("Div")

    def op_Sum(self, node, a):
        xs = [self.act(t) for t in node.input]
        if len(xs) == 1:
            self.bind(xs[0])
            return
        self.emit(self.make(Add, inputs=tuple(x.layer for x in xs), name=self.layer_name()),
                  *xs, nonneg=all(x.nonneg for x in xs))

    def op_Concat(self, node, a):
        xs = [self.act(t) for t in node.input if t]
        rank = 2 if xs[0].vector else 4
        if any(x.vector != xs[0].vector for x in xs) or a.get("axis", 1) % rank != 1:
            raise self.fail("concatenation along axis %s: only along the channels is supported"
                            % a.get("axis"))
        self.emit(self.make(Concat, inputs=tuple(x.layer for x in xs), name=self.layer_name()),
                  *xs, nonneg=all(x.nonneg for x in xs))

    # --- linear layers --------------------------------------------------------------------------
    def flat_source(self, tensor):
        """The Act a linear layer reads for tensor ``tensor`` (a vector, or a flattened map)."""
        v = self.value(tensor)
        if isinstance(v, Virtual) and v.kind == "flat":
            return v.src
        x = self.act(tensor)
        if not x.vector:
            raise self.fail("reads a map %s; a matrix product is supported on vectors (flatten "
                            "the map first)" % (x.full_shape,))
        return x

    def linear(self, x, w, b):
        D = int(np.prod(x.shape))
        if w.shape[1] != D:
            raise self.fail("weights %s do not fit an input of %d values (C, H, W = %s)"
                            % (w.shape, D, x.shape))
        layer = self.make(Linear, w, b, name=self.layer_name(), inputs=x.layer)
        self.emit(layer, x, vector=True, expr=("linear", x, w, b))

    def op_Gemm(self, node, a):
        if a.get("transA", 0):
            raise self.fail("transA=1 is not supported")
        x = self.flat_source(node.input[0])
        B = self.float_array(self.const(node.input[1], "B"), "B")
        if B.ndim != 2:
            raise self.fail("B of shape %s is not a matrix" % (B.shape,))
        w = B if a.get("transB", 0) else B.T
        alpha, beta = a.get("alpha", 1.0), a.get("beta", 1.0)
        if alpha != 1:
            w = w * w.dtype.type(alpha)
        b = None
        if len(node.input) > 2 and node.input[2]:
            c = self.float_array(self.const(node.input[2], "C"), "C")
            if c.size not in (1, w.shape[0]) or (c.ndim == 2 and c.shape[0] != 1):
                raise self.fail("C of shape %s does not broadcast to (1, %d)"
                                % (c.shape, w.shape[0]))
            b = np.broadcast_to(c.reshape(-1), (w.shape[0],)) * c.dtype.type(beta)
        self.linear(x, np.ascontiguousarray(w), b)

    def op_MatMul(self, node, a):
        x = self.flat_source(node.input[0])
        B = self.float_array(self.const(node.input[1], "B"), "B")
        if B.ndim != 2:
            raise self.fail("B of shape %s is not a matrix" % (B.shape,))
        self.linear(x, np.ascontiguousarray(B.T), None)

    # --- the rest -------------------------------------------------------------------------------
    def op_Identity(self, node, a):
        v = self.value(node.input[0])
        self.bind(v if isinstance(v, Virtual) else self.act(node.input[0]))

    def op_Dropout(self, node, a):
        if len(node.output) > 1 and self.uses.get(node.output[1]):
            raise self.fail("its mask output is used, which is not supported")
        if len(node.input) > 2 and node.input[2]:
            mode = self.const(node.input[2], "training_mode")
            if np.any(mode):
                raise self.fail("training_mode=True is not supported")
        rate = a.get("ratio", 0.5)
        if len(node.input) > 1 and node.input[1]:
            rate = float(np.asarray(self.const(node.input[1], "ratio")).ravel()[0])
        x = self.act(node.input[0])
        self.emit(self.make(Dropout, rate, name=self.layer_name(), inputs=x.layer), x,
                  nonneg=x.nonneg, expr=x.expr)
