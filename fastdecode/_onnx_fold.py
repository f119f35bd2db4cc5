"""Constant folding for the ONNX importer: the value of a node whose inputs are all known.

Weights reach a network through initializers, ``Constant`` nodes and small constant
subgraphs (shapes computed with ``Shape``/``Gather``/``Concat`` for a ``Reshape``, tensors
filled by ``ConstantOfShape``, ``Unsqueeze`` of a bias, ...). :func:`fold` computes such a
node with numpy, charging every output's size to the reader's memory budget before it is
made. Ops outside :data:`FOLDABLE` are refused by the caller.
"""

import numpy as np

__all__ = ["FOLDABLE", "fold", "FoldError"]


class FoldError(Exception):
    """A constant node that cannot be folded (the caller names the node)."""


_UNARY = {
    "Neg": np.negative, "Abs": np.abs, "Sqrt": np.sqrt, "Reciprocal": np.reciprocal,
    "Floor": np.floor, "Ceil": np.ceil, "Exp": np.exp, "Log": np.log, "Relu": None,
    "Sigmoid": None, "Tanh": np.tanh, "Not": np.logical_not, "Sign": np.sign,
    "Round": np.round,
}
_BINARY = {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": None, "Pow": np.power,
    "Equal": np.equal, "Less": np.less, "Greater": np.greater, "And": np.logical_and,
    "Or": np.logical_or, "Mod": None, "LessOrEqual": np.less_equal,
    "GreaterOrEqual": np.greater_equal,
}
_STRUCTURAL = ("Constant", "ConstantOfShape", "Shape", "Size", "Gather", "Unsqueeze", "Squeeze",
               "Concat", "Reshape", "Cast", "Identity", "Transpose", "Slice", "Flatten",
               "Expand", "Range", "Where", "Min", "Max", "ReduceProd", "ReduceSum", "Tile",
               "Dropout", "CastLike")

#: Op types that :func:`fold` computes.
FOLDABLE = frozenset(_UNARY) | frozenset(_BINARY) | frozenset(_STRUCTURAL)

# ONNX TensorProto data types -> numpy dtypes (little-endian)
DTYPES = {1: "<f4", 2: "u1", 3: "i1", 4: "<u2", 5: "<i2", 6: "<i4", 7: "<i8", 9: "?",
          10: "<f2", 11: "<f8", 12: "<u4", 13: "<u8"}


def _ints(value, what):
    a = np.asarray(value)
    if a.dtype.kind not in "iu" or a.ndim > 1:
        raise FoldError("%s must be a 1-D integer tensor, got %s %s" % (what, a.dtype, a.shape))
    return [int(v) for v in a.ravel()]


def _axes(axes, rank, what="axes"):
    out = []
    for a in axes:
        if not -rank <= a < rank:
            raise FoldError("%s %d out of range for rank %d" % (what, a, rank))
        out.append(a % rank)
    return out


def _charge(budget, shape, dtype, what):
    n = 1
    for d in shape:
        if d < 0:
            raise FoldError("negative dimension %d in %s" % (d, what))
        n *= int(d)
    budget.charge(n * np.dtype(dtype).itemsize, what)


def _int_div(a, b):
    if np.any(b == 0):
        raise FoldError("integer division by zero")
    q = np.abs(a) // np.abs(b)
    return (q * np.sign(a) * np.sign(b)).astype(np.result_type(a, b))


def fold(node, attrs, inputs, opset, budget, what):
    """The outputs (list of numpy arrays) of ``node`` for constant ``inputs`` (numpy arrays,
    None for an absent optional input); ``attrs``: its attributes as Python values."""
    op = node.op_type
    if op in _UNARY:
        x = inputs[0]
        if op == "Relu":
            return [np.maximum(x, 0).astype(x.dtype)]
        if op == "Sigmoid":
            return [(1 / (1 + np.exp(-x))).astype(x.dtype)]
        with np.errstate(all="ignore"):
            return [np.asarray(_UNARY[op](x)).astype(x.dtype if op != "Not" else bool)]
    if op in _BINARY:
        a, b = inputs[0], inputs[1]
        try:
            shape = np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise FoldError("shapes %s and %s do not broadcast" % (a.shape, b.shape)) from None
        _charge(budget, shape, np.result_type(a, b), what)
        with np.errstate(all="ignore"):
            if op == "Div":
                if a.dtype.kind in "iu" and b.dtype.kind in "iu":
                    return [_int_div(a, b)]
                return [np.divide(a, b).astype(a.dtype)]
            if op == "Mod":
                if np.any(b == 0):
                    raise FoldError("modulo by zero")
                return [(np.fmod(a, b) if attrs.get("fmod", 0) else np.mod(a, b))]
            out = _BINARY[op](a, b)
        return [out if out.dtype == bool else out.astype(a.dtype)]
    return [_STRUCT[op](node, attrs, inputs, opset, budget, what)] if op != "Dropout" else \
        [inputs[0]]


def _constant(node, attrs, inputs, opset, budget, what):
    from onnx import numpy_helper
    if "value" in attrs:
        t = attrs["value"]
        if t.data_location == 1:
            raise FoldError("a Constant node holds external data")
        if t.data_type not in DTYPES:
            raise FoldError("Constant of data type %d is not supported" % t.data_type)
        _charge(budget, t.dims, DTYPES[t.data_type], what)
        return numpy_helper.to_array(t)
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in attrs:
            return np.asarray(attrs[key], dtype=dtype)
    raise FoldError("a Constant node without a numeric value (%s)" % ", ".join(attrs) or "none")


def _constant_of_shape(node, attrs, inputs, opset, budget, what):
    from onnx import numpy_helper
    shape = _ints(inputs[0], "the shape")
    value = np.zeros(1, np.float32)
    if "value" in attrs:
        value = numpy_helper.to_array(attrs["value"]).ravel()
        if value.size != 1:
            raise FoldError("ConstantOfShape value must hold one element")
    _charge(budget, shape, value.dtype, what)
    return np.full(shape, value[0], dtype=value.dtype)


def _shape(node, attrs, inputs, opset, budget, what):
    return shape_slice(inputs[0].shape, attrs)


def shape_slice(shape, attrs):
    """The ``Shape`` op's output for a tensor of ``shape`` (its start/end attributes)."""
    r = len(shape)
    start = attrs.get("start", 0)
    end = attrs.get("end", r)
    start = max(0, min(r, start + r if start < 0 else start))
    end = max(0, min(r, end + r if end < 0 else end))
    return np.asarray(shape[start:end], dtype=np.int64)


def _gather(node, attrs, inputs, opset, budget, what):
    data, idx = inputs
    axis = _axes([attrs.get("axis", 0)], data.ndim)[0]
    idx = np.asarray(idx)
    if idx.dtype.kind not in "iu":
        raise FoldError("Gather indices must be integers")
    n = data.shape[axis]
    if np.any(idx < -n) or np.any(idx >= n):
        raise FoldError("Gather index out of range")
    _charge(budget, data.shape[:axis] + idx.shape + data.shape[axis + 1:], data.dtype, what)
    return np.take(data, np.where(idx < 0, idx + n, idx), axis=axis)


def _axes_of(attrs, inputs, opset, version):
    if opset >= version:
        return None if len(inputs) < 2 or inputs[1] is None else _ints(inputs[1], "axes")
    return attrs.get("axes")


def _unsqueeze(node, attrs, inputs, opset, budget, what):
    x = inputs[0]
    axes = _axes_of(attrs, inputs, opset, 13)
    if axes is None:
        raise FoldError("Unsqueeze without axes")
    rank = x.ndim + len(axes)
    shape = list(x.shape)
    for a in sorted(_axes(axes, rank)):
        shape.insert(a, 1)
    return x.reshape(shape)


def _squeeze(node, attrs, inputs, opset, budget, what):
    x = inputs[0]
    axes = _axes_of(attrs, inputs, opset, 13)
    if axes is None:
        return np.squeeze(x)
    axes = _axes(axes, x.ndim)
    if any(x.shape[a] != 1 for a in axes):
        raise FoldError("Squeeze of a dimension that is not 1")
    return np.squeeze(x, axis=tuple(axes))


def _concat(node, attrs, inputs, opset, budget, what):
    xs = [x for x in inputs if x is not None]
    if not xs:
        raise FoldError("Concat without inputs")
    axis = _axes([attrs.get("axis", 0)], max(x.ndim for x in xs))[0]
    try:
        return np.concatenate(xs, axis=axis)
    except ValueError as exc:
        raise FoldError("Concat: %s" % exc) from None


def reshape_target(shape, target, allowzero=False):
    """The output shape of ``Reshape`` of a tensor of ``shape`` to ``target`` (with ONNX's 0 =
    copy the dimension, -1 = inferred), or FoldError."""
    out, infer = [], None
    for i, s in enumerate(target):
        if s == 0 and not allowzero:
            if i >= len(shape):
                raise FoldError("Reshape copies dimension %d of a rank-%d tensor" % (i, len(shape)))
            out.append(int(shape[i]))
        elif s == -1:
            if infer is not None:
                raise FoldError("Reshape target %s has two -1" % (list(target),))
            infer = i
            out.append(1)
        elif s < 0:
            raise FoldError("Reshape target %s has a negative size" % (list(target),))
        else:
            out.append(int(s))
    total = int(np.prod(shape, dtype=np.int64))
    known = int(np.prod(out, dtype=np.int64))
    if infer is not None:
        if known == 0 or total % known:
            raise FoldError("Reshape of %s to %s: sizes do not match" % (tuple(shape), list(target)))
        out[infer] = total // known
    elif known != total:
        raise FoldError("Reshape of %s to %s: sizes do not match" % (tuple(shape), list(target)))
    return tuple(out)


def _reshape(node, attrs, inputs, opset, budget, what):
    x = inputs[0]
    return x.reshape(reshape_target(x.shape, _ints(inputs[1], "the shape"),
                                    attrs.get("allowzero", 0)))


def _cast(node, attrs, inputs, opset, budget, what):
    to = attrs.get("to")
    if to not in DTYPES:
        raise FoldError("Cast to data type %r is not supported" % (to,))
    return inputs[0].astype(np.dtype(DTYPES[to]).newbyteorder("="))


def _cast_like(node, attrs, inputs, opset, budget, what):
    return inputs[0].astype(inputs[1].dtype)


def _transpose(node, attrs, inputs, opset, budget, what):
    x = inputs[0]
    perm = attrs.get("perm", list(range(x.ndim))[::-1])
    if sorted(perm) != list(range(x.ndim)):
        raise FoldError("Transpose perm %s does not fit rank %d" % (perm, x.ndim))
    return np.ascontiguousarray(np.transpose(x, perm))


def _slice(node, attrs, inputs, opset, budget, what):
    x = inputs[0]
    if opset < 10:
        starts, ends = attrs.get("starts"), attrs.get("ends")
        axes, steps = attrs.get("axes"), None
    else:
        starts, ends = _ints(inputs[1], "starts"), _ints(inputs[2], "ends")
        axes = _ints(inputs[3], "axes") if len(inputs) > 3 and inputs[3] is not None else None
        steps = _ints(inputs[4], "steps") if len(inputs) > 4 and inputs[4] is not None else None
    if starts is None or ends is None or len(starts) != len(ends):
        raise FoldError("Slice needs starts and ends of equal length")
    axes = list(range(len(starts))) if axes is None else _axes(axes, x.ndim)
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * x.ndim
    for a, s, e, st in zip(axes, starts, ends, steps):
        if st == 0:
            raise FoldError("Slice step 0")
        n = x.shape[a]
        s, e = max(min(s, 2 * n), -2 * n), max(min(e, 2 * n), -2 * n)  # INT64_MAX sentinels
        index[a] = slice(s, e, st)
    return x[tuple(index)]


def _flatten(node, attrs, inputs, opset, budget, what):
    x = inputs[0]
    axis = attrs.get("axis", 1)
    axis = axis + x.ndim if axis < 0 else axis
    if not 0 <= axis <= x.ndim:
        raise FoldError("Flatten axis out of range")
    return x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)


def _expand(node, attrs, inputs, opset, budget, what):
    x = inputs[0]
    try:
        shape = np.broadcast_shapes(x.shape, tuple(_ints(inputs[1], "the shape")))
    except ValueError:
        raise FoldError("Expand shapes do not broadcast") from None
    _charge(budget, shape, x.dtype, what)
    return np.broadcast_to(x, shape).copy()


def _tile(node, attrs, inputs, opset, budget, what):
    x = inputs[0]
    reps = _ints(inputs[1], "repeats")
    if len(reps) != x.ndim or min(reps, default=0) < 0:
        raise FoldError("Tile repeats do not fit the input")
    _charge(budget, [d * r for d, r in zip(x.shape, reps)], x.dtype, what)
    return np.tile(x, reps)


def _range(node, attrs, inputs, opset, budget, what):
    start, limit, delta = (np.asarray(v).item() for v in inputs[:3])
    if delta == 0:
        raise FoldError("Range with delta 0")
    n = max(int(np.ceil((limit - start) / delta)), 0)
    _charge(budget, [n], np.asarray(inputs[0]).dtype, what)
    return (start + np.arange(n) * delta).astype(np.asarray(inputs[0]).dtype)


def _where(node, attrs, inputs, opset, budget, what):
    c, a, b = inputs
    try:
        shape = np.broadcast_shapes(c.shape, a.shape, b.shape)
    except ValueError:
        raise FoldError("Where shapes do not broadcast") from None
    _charge(budget, shape, a.dtype, what)
    return np.where(c, a, b)


def _minmax(node, attrs, inputs, opset, budget, what):
    f = np.minimum if node.op_type == "Min" else np.maximum
    out = inputs[0]
    for x in inputs[1:]:
        _charge(budget, np.broadcast_shapes(out.shape, x.shape), out.dtype, what)
        out = f(out, x)
    return out


def _reduce(node, attrs, inputs, opset, budget, what):
    x = inputs[0]
    axes = attrs.get("axes")
    if opset >= (18 if node.op_type == "ReduceProd" else 13):
        axes = _ints(inputs[1], "axes") if len(inputs) > 1 and inputs[1] is not None else None
    if axes is not None and len(axes) == 0 and attrs.get("noop_with_empty_axes", 0):
        return x
    axes = None if not axes else tuple(_axes(axes, x.ndim))
    f = np.prod if node.op_type == "ReduceProd" else np.sum
    return np.asarray(f(x, axis=axes, keepdims=bool(attrs.get("keepdims", 1)))).astype(x.dtype)


def _size(node, attrs, inputs, opset, budget, what):
    return np.asarray(inputs[0].size, dtype=np.int64)


def _identity(node, attrs, inputs, opset, budget, what):
    return inputs[0]


_STRUCT = {
    "Constant": _constant, "ConstantOfShape": _constant_of_shape, "Shape": _shape,
    "Size": _size, "Gather": _gather, "Unsqueeze": _unsqueeze, "Squeeze": _squeeze,
    "Concat": _concat, "Reshape": _reshape, "Cast": _cast, "CastLike": _cast_like,
    "Identity": _identity, "Transpose": _transpose, "Slice": _slice, "Flatten": _flatten,
    "Expand": _expand, "Range": _range, "Where": _where, "Min": _minmax, "Max": _minmax,
    "ReduceProd": _reduce, "ReduceSum": _reduce, "Tile": _tile,
}
