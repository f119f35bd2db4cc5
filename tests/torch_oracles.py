"""Oracles for the networks made by ``fastdecode.from_torch``, computed by PyTorch from the
module itself: forward hooks for the outputs of named submodules, and the linear twin's
gradient (activations as identities, every pooling a sum pooling) for decoded filters.

Import this module only after ``pytest.importorskip("torch")``.
"""

import copy

import numpy as np
import torch
from torch import nn

import fastdecode as fd

ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU, nn.PReLU, nn.Hardswish,
               nn.Hardsigmoid, nn.SiLU, nn.GELU, nn.Sigmoid, nn.Tanh, nn.Dropout)


class SumPool(nn.Module):
    """A sum over each window of a pooling module (its linear twin)."""

    def __init__(self, pool):
        super().__init__()
        self.k = pool.kernel_size if isinstance(pool.kernel_size, tuple) else (
            pool.kernel_size, pool.kernel_size)
        self.s, self.p, self.ceil = pool.stride, pool.padding, pool.ceil_mode

    def forward(self, x):
        y = nn.functional.avg_pool2d(x, self.k, self.s, self.p, ceil_mode=self.ceil,
                                     count_include_pad=True, divisor_override=1)
        return y


def linear_twin(module):
    """A float64 copy of ``module`` with its activation modules replaced by identities and
    its pooling modules by sum pools (BatchNorm stays, in eval mode)."""
    twin = copy.deepcopy(module).double().eval()
    for name, m in list(twin.named_modules()):
        for child_name, child in list(m.named_children()):
            if isinstance(child, ACTIVATIONS):
                setattr(m, child_name, nn.Identity())
            elif isinstance(child, (nn.MaxPool2d, nn.AvgPool2d)):
                setattr(m, child_name, SumPool(child))
    return twin


def hooked_outputs(module, names, x):
    """{name: the output of submodule ``name``} for the input x (copies, taken as made)."""
    out, handles = {}, []
    for name in names:
        sub = module.get_submodule(name)
        handles.append(sub.register_forward_hook(
            lambda m, i, o, name=name: out.__setitem__(name, o.detach().clone())))
    try:
        module(x)
    finally:
        for h in handles:
            h.remove()
    return out


class _Stop(Exception):
    pass


def check_decoding_against_twin(module, net, layers, *, rtol=1e-9):
    """For each ``{name: filters}`` of ``layers``: fd.decode(net, name, unpool="nearest")
    equals the gradient, with respect to the image, of the linear twin's output at submodule
    ``name`` at its centre unit, placed at the unit's offset (zero elsewhere)."""
    twin = linear_twin(module)
    C, H, W = net.input_shape
    x = torch.zeros((1, C, H, W), dtype=torch.float64, requires_grad=True)
    captured, handles = {}, []

    def hook(name, o):
        captured[name] = o
        if len(captured) == len(layers):
            raise _Stop   # the layers above are not needed

    for name in layers:
        handles.append(twin.get_submodule(name).register_forward_hook(
            lambda m, i, o, name=name: hook(name, o)))
    try:
        twin(x)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    for name, filters in layers.items():
        S, P, R = net.stride(name), net.padding(name), net.receptive_field(name)
        D = fd.decode(net, name, filters=filters, unpool="nearest")
        y = captured[name]
        u, v = y.shape[2] // 2, y.shape[3] // 2
        oy, ox = u * S[0] - P[0], v * S[1] - P[2]
        assert 0 <= oy and oy + R[0] <= H and 0 <= ox and ox + R[1] <= W, "not interior"
        for i, k in enumerate(filters):
            g, = torch.autograd.grad(y[0, k, u, v], x, retain_graph=True)
            want = np.zeros((C, H, W))
            want[:, oy:oy + R[0], ox:ox + R[1]] = D[i]
            scale = np.abs(want).max()
            assert scale > 0
            np.testing.assert_allclose(g[0].numpy(), want, rtol=0, atol=rtol * scale,
                                       err_msg="%s filter %d" % (name, k))
