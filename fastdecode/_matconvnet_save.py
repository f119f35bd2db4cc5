"""Writing a :class:`fastdecode.Network` as a MatConvNet simplenn ``.mat`` file (MAT v5), the
inverse of :func:`fastdecode.load_matconvnet` for chains."""

import numpy as np

from . import _matvalues as mv
from ._io import atomic_path
from ._validation import printable
from .network import LRN, BatchNorm, Conv, Dropout, Network, Pool, ReLU, Softmax

__all__ = ["save_matconvnet"]


def save_matconvnet(net, path):
    """Write a network as a MatConvNet simplenn file: a variable ``net`` with ``layers``, ``meta``.

    Filters are written ``[H W C K]`` and biases ``1xK`` in the network's dtype (single for float32
    networks), hyper-parameters as doubles, ``meta`` in MATLAB's orientation. The file is written
    whole or not at all.

    Parameters
    ----------
    net : fastdecode.Network
        The network.
    path : str or os.PathLike
        The ``.mat`` file to write (MAT v5).

    Raises
    ------
    TypeError
        When ``net`` is not a network, or holds a layer or a meta value MATLAB cannot represent.
    FileNotFoundError
        When the directory of ``path`` does not exist.

    Examples
    --------
    >>> import os, tempfile
    >>> import fastdecode as fd
    >>> from fastdecode import models
    >>> net = models.load("lenet-mnist")
    >>> path = os.path.join(tempfile.mkdtemp(), "lenet.mat")
    >>> fd.save_matconvnet(net, path)
    >>> fd.load_matconvnet(path).conv_layers == net.conv_layers
    True
    """
    import scipy.io

    if not isinstance(net, Network):
        raise TypeError("net must be a fastdecode.Network, got %s" % type(net).__name__)
    if not net.is_chain:
        raise TypeError("a simplenn file holds a chain of layers; this network is a graph "
                        "(saving graphs is not supported)")
    records = [_layer_to_matlab(layer) for layer in net.layers]
    cell = np.empty((1, len(records)), dtype=object)
    for i, r in enumerate(records):
        cell[0, i] = r
    meta = _meta_to_matlab(_with_input_channels(net))
    with atomic_path(path, suffix=".mat") as tmp:
        scipy.io.savemat(tmp, {"net": {"layers": cell, "meta": meta}}, appendmat=False,
                         format="5", long_field_names=True, do_compression=True, oned_as="row")


def _with_input_channels(net):
    """``net.meta``, with an ``inputSize`` [H W C] added when the filters alone do not tell the
    input depth (no conv layer, or a grouped first conv): (H, W) is the smallest input the whole
    network takes, its receptive field."""
    first = next((l for l in net.layers if isinstance(l, Conv)), None)
    if first is not None and first.weights.shape[1] == net.input_channels:
        return net.meta
    size = (net.meta or {}).get("inputSize")
    if isinstance(size, tuple) and len(size) >= 3 and size[2] == net.input_channels:
        return net.meta
    meta = dict(net.meta or {})
    meta["inputSize"] = net.receptive_field(len(net) - 1) + (net.input_channels,)
    return meta


def _layer_to_matlab(layer):
    rec = {"name": layer.name, "type": layer.type}
    if isinstance(layer, Conv):
        w = np.asarray(layer.weights).transpose(2, 3, 1, 0)  # (K, C, H, W) -> [H W C K]
        b = (np.zeros((0, 0), layer.weights.dtype) if layer.bias is None
             else layer.bias.reshape(1, -1))
        rec.update(weights=mv.cell([w, b]), stride=mv.row(layer.stride), pad=mv.row(layer.pad),
                   dilate=mv.row(layer.dilate), opts=np.empty((0, 0), dtype=object),
                   precious=False)
    elif isinstance(layer, Pool):
        # a ceil-mode pool is vl_nnpool over its grid padding (clipped windows either way);
        # vl_nnpool has no count_include_pad, which matters only over declared padding
        if layer.count_include_pad and any(layer.declared_pad):
            raise TypeError("layer %r averages with count_include_pad over a padding, which "
                            "MatConvNet's vl_nnpool cannot represent" % (printable(layer.name),))
        rec.update(method=layer.method, pool=mv.row(layer.kernel), stride=mv.row(layer.stride),
                   pad=mv.row(layer.pad), opts=np.empty((0, 0), dtype=object), precious=False)
    elif isinstance(layer, ReLU):
        rec.update(leak=float(layer.leak), precious=False)
    elif isinstance(layer, BatchNorm):
        moments = np.stack([layer.mean, layer.sigma], axis=1)
        rec.update(weights=mv.cell([layer.gain.reshape(-1, 1), layer.bias.reshape(-1, 1), moments]),
                   epsilon=1e-5, opts=np.empty((0, 0), dtype=object), precious=False)
    elif isinstance(layer, Dropout):
        rec.update(rate=float(layer.rate), precious=False)
    elif isinstance(layer, LRN):
        rec.update(param=mv.row([layer.depth, layer.kappa, layer.alpha, layer.beta]),
                   precious=False)
    elif isinstance(layer, Softmax):
        rec.update(precious=False)
    else:
        raise TypeError("layer %r is a %s, which MatConvNet cannot represent"
                        % (printable(layer.name), type(layer).__name__))
    return rec


def _meta_to_matlab(meta):
    meta = dict(meta or {})
    out = {}
    for key, value in meta.items():
        if key == "inputSize" and value is not None:
            out[key] = mv.row(value)
        elif key == "normalization" and isinstance(value, dict):
            norm = {}
            for k, v in value.items():
                if k == "averageImage" and isinstance(v, np.ndarray) and v.ndim == 3:
                    norm[k] = np.asarray(v).transpose(1, 2, 0)  # (C, H, W) -> [H W C]
                else:
                    norm[k] = mv.to_matlab(v, "meta.normalization." + k)
            out[key] = norm
        else:
            out[key] = mv.to_matlab(value, "meta." + key)
    return out


# --- info ---------------------------------------------------------------------------------------
