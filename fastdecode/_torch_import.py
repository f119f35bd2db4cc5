"""PyTorch modules as fastdecode networks: :func:`from_torch`.

The module is traced with ``torch.fx`` (``symbolic_trace``'s tracer) rather than exported to
ONNX and read back, for three reasons: it needs no ``onnx`` package; the graph keeps the
module's own qualified names (``features.3.conv.1.0``), so that the layers and the outputs of
whole blocks are addressed by the names the user knows; and the parameters are the module's
own tensors, copied exactly (no folding or rounding by an exporter; BatchNorm stays a layer).
The traced graph is run once on an input of the fixed size (zeros, or the user's example) to
learn the shape of every tensor, which resolves adaptive pooling, flattening before a linear
layer and ``padding="same"``; everything that does not depend on the images (parameters,
shapes, constant arithmetic) is taken at the value it had in that run. The converters, one per
covered module type, function and tensor method, live in :mod:`fastdecode._torch_ops`.

torch is imported only when :func:`from_torch` is called.
"""

import numpy as np

from ._torch_ops import Builder, METHODS, Value, functions, modules
from ._validation import as_int
from .network import Network

__all__ = ["from_torch"]

_SHAPE_ATTRS = ("shape", "ndim", "dtype", "device", "is_cuda")
_SHAPE_METHODS = ("size", "dim", "numel", "ndimension")


def _import_torch():
    try:
        import torch
        import torch.fx  # noqa: F401
    except ImportError as exc:
        raise ImportError('from_torch needs PyTorch: pip install "fastdecode[torch]"') from exc
    return torch


def from_torch(module, input_shape, *, example=None):
    """A :class:`~fastdecode.Network` computing what a PyTorch module computes.

    The module is traced with ``torch.fx`` for a fixed input size and every operation becomes
    a layer of the library's own (:class:`~fastdecode.Conv`, :class:`~fastdecode.BatchNorm`,
    :class:`~fastdecode.Pool`, :class:`~fastdecode.Add`, :class:`~fastdecode.Linear`, the
    activations, ...), so decoding, evaluation and the atlas work on the result unchanged.
    See :doc:`pytorch` for the operations covered.

    Parameters
    ----------
    module : torch.nn.Module
        The model, in eval mode (``module.eval()``). It is only read: its parameters are
        copied.
    input_shape : (int, int, int)
        (C, H, W) of the images the network takes.
    example : torch.Tensor or array_like, optional
        An input (N, C, H, W), converted to the module's dtype, run through the module once
        to learn every tensor's shape (default: zeros of shape (1, C, H, W)).

    Returns
    -------
    Network
        With ``input_shape`` set, float64 when the module's parameters are float64, else
        float32. A layer made by a module call is named by the module's qualified name
        (``"features.3.conv.1.0"``), other operations by their ``torch.fx`` node names
        (``"add"``, ``"flatten"``, ``"adaptive_avg_pool2d"``); the output of every submodule
        is addressable by the submodule's name through ``net.aliases`` (``"features.5"``, a
        whole block). ``net.meta["outputs"]`` lists the layers giving the module's outputs, in
        the order ``forward`` returns them; ``net.forward(x)`` gives the first of them.

    Raises
    ------
    TypeError
        When ``module`` is not a ``torch.nn.Module``.
    ValueError
        For a bad ``input_shape`` or ``example``, a module in training mode, a module that
        ``torch.fx`` cannot trace or that fails on the input, and an operation that has no
        fastdecode equivalent (the error names the ``torch.fx`` node and its target).
    ImportError
        When PyTorch is not installed.

    Examples
    --------
    >>> import numpy as np, torch
    >>> import fastdecode as fd
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Sequential(
    ...     torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
    ...     torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 10)).eval()
    >>> net = fd.from_torch(model, (3, 8, 8))
    >>> [layer.name for layer in net.layers]
    ['0', '1', '2', '3', '5']
    >>> x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    >>> expected = model(torch.from_numpy(x)).detach().numpy()
    >>> np.allclose(net.forward(x), expected, atol=1e-5)
    True
    >>> fd.decode(net, "0").shape
    (8, 3, 3, 3)
    """
    torch = _import_torch()
    if not isinstance(module, torch.nn.Module):
        raise TypeError("from_torch needs a torch.nn.Module, got %s" % type(module).__name__)
    input_shape = _check_input_shape(input_shape)
    training = [name or "the module" for name, m in module.named_modules() if m.training]
    if training:
        raise ValueError("from_torch: %s is in training mode (batch normalisation would use "
                         "the batch's statistics, dropout would drop): call module.eval() "
                         "first" % ", ".join(repr(n) for n in training[:3]))
    dtype = _module_dtype(torch, module)
    example = _example(torch, example, input_shape, dtype)
    gm, blocks = _trace(torch, module)
    first, dependent = _dependent(gm)
    _check_leaf_modules(torch, gm)
    shapes, consts = _run(torch, gm, example, dependent, module)
    b = Builder(torch, example.shape[0], dtype)
    outputs = _convert(torch, gm, b, first, dependent, shapes, consts, input_shape)
    return _network(b, gm, blocks, outputs, input_shape, dtype, module)


def _check_input_shape(input_shape):
    try:
        values = tuple(input_shape)
    except TypeError:
        values = ()
    if len(values) != 3:
        raise ValueError("from_torch: input_shape must be (C, H, W), got %r" % (input_shape,))
    return tuple(as_int("from_torch: input_shape", v, minimum=1) for v in values)


def _module_dtype(torch, module):
    for t in list(module.parameters()) + list(module.buffers()):
        if t.is_floating_point():
            return torch.float64 if t.dtype == torch.float64 else t.dtype
    return torch.float32


def _example(torch, example, input_shape, dtype):
    if example is None:
        return torch.zeros((1,) + input_shape, dtype=dtype)
    try:
        example = torch.as_tensor(example)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError("from_torch: example must be a tensor (N, C, H, W): %s" % exc) from None
    if example.ndim != 4 or tuple(example.shape[1:]) != input_shape or example.shape[0] < 1:
        raise ValueError("from_torch: example has shape %s; input_shape %s needs (N, %d, %d, %d)"
                         % ((tuple(example.shape), input_shape) + input_shape))
    return example.to(dtype)


def _trace(torch, module):
    """The GraphModule and, for each submodule called once, the node giving its output."""
    blocks = {}

    class Tracer(torch.fx.Tracer):
        def call_module(self, m, forward, args, kwargs):
            out = super().call_module(m, forward, args, kwargs)
            try:
                name = self.path_of_module(m)
            except NameError:
                return out
            if isinstance(out, torch.fx.Proxy):
                blocks.setdefault(name, []).append(out.node)
            return out

    tracer = Tracer()
    try:
        graph = tracer.trace(module)
        gm = torch.fx.GraphModule(tracer.root, graph)
    except Exception as exc:  # torch.fx raises many kinds; each becomes one clear error
        raise ValueError(
            "from_torch: torch.fx cannot trace %s: %s: %s. torch.fx records the operations on "
            "a symbolic input, so control flow or Python values that depend on the input's "
            "values cannot be traced; rewrite that code without them, or export the model to "
            "ONNX (torch.onnx.export) and read it with fastdecode.load_onnx"
            % (type(module).__name__, type(exc).__name__, exc)) from None
    return gm, {k: v[0] for k, v in blocks.items() if len(set(v)) == 1}


_ADVICE = ("fastdecode converts the torch.nn modules Conv2d, BatchNorm2d, MaxPool2d, AvgPool2d, "
           "Adaptive*Pool2d, Linear, Flatten, Dropout, Identity, Upsample, ZeroPad2d, "
           "LocalResponseNorm and the activations, and their functional forms (see the documentation's PyTorch page). "
           "Replace the operation, or export the model to ONNX (torch.onnx.export) and read it "
           "with fastdecode.load_onnx where its ONNX operators are covered")


def _check_leaf_modules(torch, gm):
    """Refuse a call of a torch.nn module that has no converter, before running anything."""
    table = modules(torch)
    for node in gm.graph.nodes:
        if node.op == "call_module":
            m = gm.get_submodule(node.target)
            if type(m) not in table:
                raise ValueError("from_torch: node %r calls module %r (%s.%s), which has no "
                                 "fastdecode equivalent. %s" % (
                                     node.name, node.target, type(m).__module__,
                                     type(m).__name__, _ADVICE))


def _dependent(gm):
    """The images' placeholder and the set of nodes whose value depends on the images."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if not placeholders:
        raise ValueError("from_torch: the module's forward takes no input")
    for n in placeholders[1:]:
        if not n.args:
            raise ValueError("from_torch: the module's forward takes more than one input (%r "
                             "has no default); only modules of one image input are supported"
                             % n.name)
    dependent = {placeholders[0]}
    for n in gm.graph.nodes:
        if any(i in dependent for i in n.all_input_nodes):
            dependent.add(n)
    return placeholders[0], dependent


def _run(torch, gm, example, dependent, module):
    """Run the traced graph once: the shape of every tensor, the value of everything that
    does not depend on the images and of every non-tensor (shapes, sizes).

    The nodes that depend on the images run on PyTorch's "meta" device (shapes without
    arithmetic) when that works, for speed; else on the real example."""
    try:
        return _run_with(torch, gm, example.to("meta"), dependent, meta=True)
    except Exception:  # noqa: BLE001  an operation without a meta kernel: run for real
        pass
    try:
        return _run_with(torch, gm, example, dependent, meta=False)
    except Exception as exc:  # the module's own failure, as one clear error
        raise ValueError("from_torch: %s fails on an input of shape %s: %s: %s"
                         % (type(module).__name__, tuple(example.shape), type(exc).__name__,
                            exc)) from None


def _run_with(torch, gm, example, dependent, meta):
    shapes, consts = {}, {}
    nn = torch.nn
    preserving = {nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU, nn.PReLU,
                  nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.GELU, nn.Sigmoid, nn.Tanh,
                  nn.Dropout, nn.Dropout2d, nn.Identity, nn.LocalResponseNorm}

    def to_meta(a):
        return torch.fx.node.map_aggregate(
            a, lambda t: t.to("meta") if isinstance(t, torch.Tensor) else t)

    class Run(torch.fx.Interpreter):
        def run_node(self, n):
            self.meta_node = meta and n in dependent
            result = super().run_node(n)
            if isinstance(result, torch.Tensor):
                shapes[n] = tuple(result.shape)
                if n not in dependent:
                    consts[n] = result.detach()
            else:
                consts[n] = result
            return result

        def call_module(self, target, args, kwargs):
            if not self.meta_node:
                return super().call_module(target, args, kwargs)
            m = self.fetch_attr(target)
            if type(m) in preserving and len(args) == 1 and not kwargs:
                return torch.empty_like(to_meta(args[0]))   # an elementwise module
            state = {k: v.to("meta") for k, v in list(m.named_parameters())
                     + list(m.named_buffers())}
            return torch.func.functional_call(m, state, to_meta(args), to_meta(kwargs))

        def call_function(self, target, args, kwargs):
            if self.meta_node:
                args, kwargs = to_meta(args), to_meta(kwargs)
            return super().call_function(target, args, kwargs)

        def call_method(self, target, args, kwargs):
            if self.meta_node:
                args, kwargs = to_meta(args), to_meta(kwargs)
            return super().call_method(target, args, kwargs)

    with torch.no_grad():
        Run(gm).run(example)
    return shapes, consts


def _is_shape_query(node, shapes):
    """Whether the non-tensor node only reads its tensor inputs' shapes."""
    if node.op == "call_method" and node.target in _SHAPE_METHODS:
        return True
    if node.op == "call_function" and node.target is getattr and len(node.args) > 1:
        return node.args[1] in _SHAPE_ATTRS
    if node.op == "call_function" and node.target is len:
        return True
    return not any(i in shapes for i in node.all_input_nodes)


def _convert(torch, gm, b, first, dependent, shapes, consts, input_shape):
    """Convert every node; returns the output Values. ``b.first`` holds each node's Value as
    it was made (before any later in-place operation)."""
    funcs, mods = functions(torch), modules(torch)
    env = b.env
    b.first = {}
    outputs = None

    def value(n):
        return env[n]

    for node in gm.graph.nodes:
        b.node, b.shape, b.module = node, shapes.get(node), None
        if node is first:
            env[node] = Value("input", input_shape)
        elif node.op == "output":
            outputs = _outputs(b, torch.fx.node.map_arg(node.args[0], value))
            continue
        elif node not in dependent:
            env[node] = consts[node]
        elif node not in shapes:
            if node in consts and _is_shape_query(node, shapes):
                env[node] = consts[node]
            else:
                raise b.error("its result is not a tensor (%s) but depends on the images' "
                              "values; not supported" % type(consts.get(node)).__name__)
        else:
            args = torch.fx.node.map_arg(node.args, value)
            kwargs = torch.fx.node.map_arg(node.kwargs, value)
            if node.op == "call_module":
                b.module = gm.get_submodule(node.target)
                convert = mods.get(type(b.module))
                if convert is not None and (len(args) != 1 or kwargs):
                    raise b.error("called with %d arguments; one tensor expected"
                                  % (len(args) + len(kwargs)))
                call = (lambda: convert(b, b.module, args[0]))
            else:
                try:
                    convert = (funcs.get(node.target) if node.op == "call_function"
                               else METHODS.get(node.target))
                except TypeError:  # an unhashable target
                    convert = None
                call = (lambda: convert(b, *args, **kwargs))
            if convert is None:
                raise b.error("it has no fastdecode equivalent. " + _ADVICE)
            try:
                result = call()
            except ValueError as exc:
                if str(exc).startswith("from_torch:"):
                    raise
                raise b.error(str(exc)) from None
            except TypeError as exc:
                raise b.error("unexpected arguments (%s)" % exc) from None
            env[node] = result
        b.first[node] = env[node]
    return outputs


def _outputs(b, out):
    """The output Values, in the order forward returns them."""
    flat = []

    def walk(v):
        if isinstance(v, (tuple, list)):
            for item in v:
                walk(item)
        elif isinstance(v, dict):
            for item in v.values():
                walk(item)
        else:
            flat.append(v)

    walk(out)
    for i, v in enumerate(flat):
        if not isinstance(v, Value) or v.layer == "input" or v.pad is not None:
            raise b.error("output %d of the module is %s; only tensors computed by layers can "
                          "be outputs" % (i, "the input itself" if isinstance(v, Value)
                                          else type(v).__name__))
    return flat


def _network(b, gm, blocks, outputs, input_shape, dtype, module):
    if not b.layers:
        raise ValueError("from_torch: %s computes nothing that becomes a layer"
                         % type(module).__name__)
    layers = b.layers
    names = [v.layer for v in outputs]
    last = names[0]
    if layers[-1].name != last and not any(last in (l.inputs or ()) for l in layers):
        layers = [l for l in layers if l.name != last] + [l for l in layers if l.name == last]
    aliases = {}
    for qualified, node in blocks.items():
        v = b.first.get(node)
        if (qualified and isinstance(v, Value) and v.pad is None and v.layer != "input"
                and qualified not in b.names):
            aliases[qualified] = v.layer
    meta = {"outputs": names, "source": "torch", "module": type(module).__name__}
    try:
        net = Network(layers, input_shape=input_shape, aliases=aliases, meta=meta)
    except ValueError as exc:
        raise ValueError("from_torch: the converted network is refused: %s" % exc) from None
    if dtype == b.torch.float64 and net.dtype != np.float64:
        net = net.astype(np.float64)
    for i, layer in enumerate(net.layers):
        expected = b.expected[layer.name]
        if tuple(net._shapes[i]) != tuple(expected):
            raise ValueError("from_torch: layer %r (%s) gives (C, H, W) = %s where PyTorch "
                             "gives %s; this configuration is not supported"
                             % (layer.name, layer.describe(), net._shapes[i], expected))
    return net
