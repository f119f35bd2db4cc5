"""Layer-recursive decoding: every conv layer decoded from the one below by one substitution.

With a box unpooling (``nearest`` or ``adjoint``) every step of the decoding chain is
shift-equivariant, so the decoded filters of conv layer L follow from those of the conv layer
below by one strided substitution at image scale::

    D_L = substitute(W_L, E, stride=S_in(L))

where E starts as the identity on the image channels and, walking up the network, becomes D of
each conv layer, is summed over each pooling window at the cumulative stride of the pool's input
(times 1/(ph*pw) for ``adjoint``) and scaled per channel by each scaling layer. Layers are read
by their ``decode_role`` (see :mod:`.chain`).
"""

import numpy as np

from .chain import chain_layers
from .resample import box_sum
from .substitution import substitute_into


def check_decodable(net, upto):
    """Raise the chain's error for a layer below ``upto`` that decoding cannot pass."""
    chain_layers(net.layers[:upto])


def walk(net, upto, unpool, threads, *, keep=None, top_filters=None):
    """Decode conv layers bottom to top through layer ``upto`` (an index), recursively.

    unpool: a box :class:`.resample.UnpoolMethod`. keep: indices of conv layers whose decoded
    filters (all of them) are returned; the top conv layer ``upto`` is decoded only for
    ``top_filters`` (indices, default all) when given.
    Returns {layer index: decoded filters (F, C0, h, w) in the network's dtype}.
    """
    dtype = net.dtype
    C0 = net.input_channels
    E = np.eye(C0, dtype=dtype).reshape(C0, C0, 1, 1)
    identity = True  # E is still the identity: the next conv layer decodes to its own weights
    S = (1, 1)
    out = {}
    for i, layer in enumerate(net.layers[:upto + 1]):
        role = layer.decode_role
        if role == "substitute":
            W = layer.dense_weights(dtype)
            if i == upto and top_filters is not None:
                W = np.ascontiguousarray(W[top_filters])
            if identity:
                D = W if W is not layer.weights else W.copy()
            else:
                D = np.zeros((W.shape[0], C0, (W.shape[2] - 1) * S[0] + E.shape[2],
                              (W.shape[3] - 1) * S[1] + E.shape[3]), dtype=dtype)
                substitute_into(W, E, D, S[0], S[1], threads)
            if i == upto or (keep is not None and i in keep):
                out[i] = D
            E, identity = D, False
            S = (S[0] * layer.stride[0], S[1] * layer.stride[1])
        elif role == "unpool":
            identity = False
            E = box_sum(E, layer.kernel, S, unpool.box_scale(layer.kernel), threads)
            S = (S[0] * layer.stride[0], S[1] * layer.stride[1])
        elif role == "scale":
            a, _ = layer.scale_shift(dtype)
            E, identity = E * a[:, None, None, None], False
    return out
