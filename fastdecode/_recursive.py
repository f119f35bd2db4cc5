"""Layer-recursive decoding and the cost model that chooses between it and the chain.

With ``nearest`` or ``adjoint`` unpooling every step of the decoding chain is shift-equivariant,
so the decoded filters of conv layer L follow from those of the conv layer below by one strided
substitution at image scale::

    D_L = substitute(W_L, E, stride=S_in(L))

where E starts as the identity on the image channels and, walking up the network, becomes D of
each conv layer, is summed over each pooling window at the cumulative stride of the pool's input
(times 1/(ph*pw) for ``adjoint``) and scaled per channel by each bnorm layer.
"""

import numpy as np

from . import _api
from ._engine import _resample
from .network import LRN, BatchNorm, Conv, Dropout, Pool, ReLU, _printable

#: Unpooling methods that substitute a box (nearest: ones, adjoint: ones / area): they are
#: shift-equivariant, so the recursion is exact, and they merge with the conv layer below.
RECURSIVE_METHODS = ("nearest", "adjoint")

PASS_THROUGH = (ReLU, Dropout, LRN)


def _check_decodable(net, upto):
    """Raise the chain's error for a layer below ``upto`` that decoding cannot pass."""
    for layer in net.layers[:upto]:
        if not isinstance(layer, (Conv, Pool, BatchNorm) + PASS_THROUGH):
            raise ValueError("cannot decode through layer %r of type %s"
                             % (_printable(layer.name), layer.type))


def box_scale(unpool, size):
    """The value of the box a box unpooling substitutes: 1 for nearest, 1/(ph*pw) for adjoint."""
    return 1.0 / (size[0] * size[1]) if unpool == "adjoint" else 1.0


def box_sum(E, size, stride, scale=1.0, threads=1):
    """E (J, C, H, W) summed over a window of ``size`` (ph, pw) placed at ``stride`` (sy, sx).

    out[j, c, sy*u + y, sx*v + x] += scale * E[j, c, y, x] for 0 <= u < ph, 0 <= v < pw:
    the substitution of the identity as ph x pw boxes (summed in double, rounded once).
    Returns (J, C, (ph-1)*sy + H, (pw-1)*sx + W).
    """
    (ph, pw), (sy, sx) = size, stride
    E = np.ascontiguousarray(E)
    J, C, H, W = E.shape
    out = np.empty((J, C, (ph - 1) * sy + H, (pw - 1) * sx + W), dtype=E.dtype)
    _resample.box_sum(E, out, ph, pw, sy, sx, scale, threads)
    return out


def walk(net, upto, unpool, threads, *, keep=None, top_filters=None):
    """Decode conv layers bottom to top through layer ``upto`` (an index), recursively.

    keep: indices of conv layers whose decoded filters (all of them) are returned; the top conv
    layer ``upto`` is decoded only for ``top_filters`` (indices, default all) when given.
    Returns {layer index: decoded filters (F, C0, h, w) in the network's dtype}.
    """
    dtype = net.dtype
    C0 = net.input_channels
    E = np.eye(C0, dtype=dtype).reshape(C0, C0, 1, 1)
    identity = True  # E is still the identity: the next conv layer decodes to its own weights
    S = (1, 1)
    out = {}
    for i, layer in enumerate(net.layers[:upto + 1]):
        if isinstance(layer, Conv):
            W = layer.dense_weights(dtype)
            if i == upto and top_filters is not None:
                W = np.ascontiguousarray(W[top_filters])
            if identity:
                D = W if W is not layer.weights else W.copy()
            else:
                D = np.zeros((W.shape[0], C0, (W.shape[2] - 1) * S[0] + E.shape[2],
                              (W.shape[3] - 1) * S[1] + E.shape[3]), dtype=dtype)
                _api.substitute_into(W, E, D, S[0], S[1], threads)
            if i == upto or (keep is not None and i in keep):
                out[i] = D
            E, identity = D, False
            S = (S[0] * layer.stride_[0], S[1] * layer.stride_[1])
        elif isinstance(layer, Pool):
            identity = False
            E = box_sum(E, layer.kernel, S, box_scale(unpool, layer.kernel), threads)
            S = (S[0] * layer.stride_[0], S[1] * layer.stride_[1])
        elif isinstance(layer, BatchNorm):
            a, _ = layer.scale_shift(dtype)
            E, identity = E * a[:, None, None, None], False
    return out


# --- costs ------------------------------------------------------------------------------------

def _conv_ops(layer):
    K, C, h, w = layer.weights.shape
    return K, C * layer.groups, layer.kernel


def chain_cost(net, idx, n_filters):
    """FLOPs of decoding ``n_filters`` filters of conv layer ``idx`` by the chain.

    flops counts the substitutions' multiply-adds as 2 each (dilation and groups expanded, as the
    dense weights are) and the unpooling taps as 2 each.
    """
    K, c, (h, w) = _conv_ops(net.layers[idx])
    flops = 0.0
    for layer in reversed(net.layers[:idx]):
        if isinstance(layer, Conv):
            _, c_out, (kh, kw) = _conv_ops(layer)
            flops += 2.0 * c * h * w * c_out * kh * kw
            h, w = (h - 1) * layer.stride_[0] + kh, (w - 1) * layer.stride_[1] + kw
            c = c_out
        elif isinstance(layer, Pool):
            h0 = h
            h, w = (h - 1) * layer.stride_[0] + layer.kernel[0], (w - 1) * layer.stride_[1] + \
                layer.kernel[1]
            flops += 2.0 * c * (h0 * w * layer.kernel[0] + h * w * layer.kernel[1])
    return flops * n_filters


def recursive_cost(net, idx, n_filters):
    """(flops, peak bytes) of decoding ``n_filters`` filters of conv ``idx`` layer-recursively.

    Every conv layer below is decoded in full (all its filters); the peak counts, at the widest
    step, the decoded maps E of the layer below, its transposed copy the GEMM reads, and the new
    decoded filters, besides the final output.
    """
    itemsize = net.dtype.itemsize
    C0 = net.input_channels
    n_e, rh, rw = C0, 1, 1  # E: (n_e, C0, rh, rw)
    S = (1, 1)
    flops = 0.0
    peak = 0
    first = True
    for i, layer in enumerate(net.layers[:idx + 1]):
        if isinstance(layer, Conv):
            K, J, (kh, kw) = _conv_ops(layer)
            if i == idx:
                K = n_filters
            oh, ow = (kh - 1) * S[0] + rh, (kw - 1) * S[1] + rw
            if not first:
                flops += 2.0 * K * J * kh * kw * C0 * rh * rw
            first = False
            step = (2 * n_e * C0 * rh * rw + K * C0 * oh * ow) * itemsize
            peak = max(peak, step)
            n_e, rh, rw = K, oh, ow
            S = (S[0] * layer.stride_[0], S[1] * layer.stride_[1])
        elif isinstance(layer, Pool):
            ph, pw = layer.kernel
            nh, nw = (ph - 1) * S[0] + rh, (pw - 1) * S[1] + rw
            flops += 2.0 * n_e * C0 * rh * rw * ph * pw
            peak = max(peak, (n_e * C0 * (rh * rw + nh * nw)) * itemsize)
            rh, rw = nh, nw
            S = (S[0] * layer.stride_[0], S[1] * layer.stride_[1])
    return flops, peak
