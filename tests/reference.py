"""Slow, obviously-right references for the compiled core, in float64 numpy/scipy.

Written from the definitions (MatConvNet's vl_nnconv/vl_nnpool, the substitution loop of the
method, MATLAB's imresize ``contributions``), not from fastdecode's implementation. Every
function takes plain arrays and returns float64.
"""

import math

import numpy as np
from scipy.signal import convolve2d, correlate2d


def _pair(v):
    return (v, v) if np.ndim(v) == 0 else tuple(v)


def _pad4(p):
    if np.ndim(p) == 0:
        return (p, p, p, p)
    p = tuple(p)
    return (p[0], p[0], p[1], p[1]) if len(p) == 2 else p


# --- convolution ---------------------------------------------------------------------------

def correlate(x, w, stride=1, pad=0):
    """out[n, k, i, j] = sum_{c,u,v} w[k, c, u, v] * xpad[n, c, sy*i + u, sx*j + v].

    scipy's valid correlation of the zero-padded image, subsampled at the stride.
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    sy, sx = _pair(stride)
    pt, pb, pl, pr = _pad4(pad)
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    N, C = x.shape[:2]
    K = w.shape[0]
    out = []
    for n in range(N):
        maps = []
        for k in range(K):
            full = sum(correlate2d(xp[n, c], w[k, c], mode="valid") for c in range(C))
            maps.append(full[::sy, ::sx])
        out.append(maps)
    return np.array(out, dtype=np.float64)


def substitute(df, w, stride=1):
    """The literal loop out[k, c, s*y + u, s*x + v] += df[k, j, y, x] * w[j, c, u, v]."""
    df = np.asarray(df, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    sy, sx = _pair(stride)
    K, J, H, W = df.shape
    _, C, h, ww = w.shape
    out = np.zeros((K, C, (H - 1) * sy + h, (W - 1) * sx + ww))
    for k in range(K):
        for j in range(J):
            for y in range(H):
                for x in range(W):
                    out[k, :, sy * y:sy * y + h, sx * x:sx * x + ww] += df[k, j, y, x] * w[j]
    return out


def winograd_rounding_bound(df, w, m, stride=(1, 1)):
    """Substitution at ``stride`` by Winograd's F(m x m, r x r), phase by phase (w's kernel is
    stride * r), on absolute values: the transforms, maps and weights all taken positive. Its
    rounding errors are bounded by a small multiple of eps times this (it can exceed the direct
    sum on absolute values: the transforms add and subtract values of neighbouring pixels)."""
    from numpy.lib.stride_tricks import sliding_window_view

    from fastdecode._engine.winograd import WINOGRAD_TRANSFORMS
    df = np.abs(np.asarray(df, dtype=np.float64))
    w = np.abs(np.asarray(w, dtype=np.float64))
    F, J, H, W = df.shape
    sy, sx = stride
    C, r = w.shape[1], w.shape[2] // sy
    BT, G, AT = (np.abs(t) for t in WINOGRAD_TRANSFORMS[(m, r)])
    a = m + r - 1
    Hq, Wq = H + r - 1, W + r - 1
    nty, ntx = -(-Hq // m), -(-Wq // m)
    padded = np.zeros((F, J, (nty - 1) * m + a, (ntx - 1) * m + a))
    padded[:, :, r - 1:r - 1 + H, r - 1:r - 1 + W] = df
    tiles = sliding_window_view(padded, (a, a), axis=(2, 3))[:, :, ::m, ::m]
    V = np.einsum("ia,fjyxab,kb->fyxikj", BT, tiles, BT)
    out = np.zeros((F, C, sy * Hq, sx * Wq))
    for py in range(sy):
        for px in range(sx):
            g = w[:, :, py::sy, px::sx][:, :, ::-1, ::-1]
            U = np.einsum("ia,jcab,kb->ikjc", G, g, G)
            Y = np.einsum("oi,fyxikc,qk->fcyoxq", AT, np.einsum("fyxikj,ikjc->fyxikc", V, U), AT)
            out[:, :, py::sy, px::sx] = Y.reshape(F, C, nty * m, ntx * m)[:, :, :Hq, :Wq]
    return out


def substitute_full_convolution(df, w):
    """Stride 1 substitution as the method states it: a full convolution summed over j."""
    df = np.asarray(df, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    K, J = df.shape[:2]
    C = w.shape[1]
    return np.array([[sum(convolve2d(df[k, j], w[j, c], mode="full") for j in range(J))
                      for c in range(C)] for k in range(K)])


def dilate_filters(w, dilate):
    """Filters with dilate-1 zeros inserted between taps (MatConvNet ``dilate``)."""
    dy, dx = _pair(dilate)
    K, C, h, ww = w.shape
    out = np.zeros((K, C, (h - 1) * dy + 1, (ww - 1) * dx + 1))
    for u in range(h):
        for v in range(ww):
            out[:, :, u * dy, v * dx] = w[:, :, u, v]
    return out


def group_filters(w, depth):
    """Filters (K, C, h, w) spread over ``depth`` = G*C input channels: filter k of group
    g = k // (K/G) sees channels g*C ... g*C + C - 1 and zeros elsewhere."""
    K, C = w.shape[:2]
    G = depth // C
    out = np.zeros((K, depth) + w.shape[2:])
    for k in range(K):
        g = k // (K // G)
        out[k, g * C:(g + 1) * C] = w[k]
    return out


# --- pooling and pointwise -----------------------------------------------------------------

def pool(x, method, size, stride=None, pad=0):
    """vl_nnpool: output floor((H + pt + pb - p) / s) + 1; windows clipped to the image, max
    over what remains, average divided by the clipped area."""
    x = np.asarray(x, dtype=np.float64)
    ph, pw = _pair(size)
    sy, sx = (ph, pw) if stride is None else _pair(stride)
    pt, pb, pl, pr = _pad4(pad)
    N, C, H, W = x.shape
    Ho = (H + pt + pb - ph) // sy + 1
    Wo = (W + pl + pr - pw) // sx + 1
    out = np.zeros((N, C, Ho, Wo))
    for i in range(Ho):
        for j in range(Wo):
            y0, x0 = i * sy - pt, j * sx - pl
            rows = [r for r in range(y0, y0 + ph) if 0 <= r < H]
            cols = [c for c in range(x0, x0 + pw) if 0 <= c < W]
            win = x[:, :, rows][:, :, :, cols]
            if method == "max":
                out[:, :, i, j] = win.max(axis=(2, 3))
            else:
                out[:, :, i, j] = win.sum(axis=(2, 3)) / (len(rows) * len(cols))
    return out


def relu(x, leak=0.0):
    x = np.asarray(x, dtype=np.float64)
    return np.where(x > 0, x, leak * x)


def lrn(x, depth, kappa, alpha, beta):
    """vl_nnnormalize: y_k = x_k (kappa + alpha sum_{q in G(k)} x_q^2)^-beta with
    G(k) = [k - floor((N-1)/2), k + ceil((N-1)/2)] clipped to the channels."""
    x = np.asarray(x, dtype=np.float64)
    C = x.shape[1]
    out = np.empty_like(x)
    for k in range(C):
        lo = max(0, k - (depth - 1) // 2)
        hi = min(C - 1, k + math.ceil((depth - 1) / 2))
        s = (x[:, lo:hi + 1] ** 2).sum(axis=1)
        out[:, k] = x[:, k] * (kappa + alpha * s) ** (-beta)
    return out


def bnorm(x, gain, bias, mean, sigma):
    """Test-time batch normalisation, per channel: gain * (x - mean) / sigma + bias."""
    x = np.asarray(x, dtype=np.float64)
    g, b, m, s = (np.asarray(a, dtype=np.float64).ravel()[None, :, None, None]
                  for a in (gain, bias, mean, sigma))
    return g * (x - m) / s + b


# --- MATLAB imresize, enlarging -------------------------------------------------------------

def _triangle(t):
    if -1 <= t < 0:
        return t + 1
    if 0 <= t <= 1:
        return 1 - t
    return 0.0


def _cubic(t):
    a = abs(t)
    if a <= 1:
        return 1.5 * a ** 3 - 2.5 * a ** 2 + 1
    if a <= 2:
        return -0.5 * a ** 3 + 2.5 * a ** 2 - 4 * a + 2
    return 0.0


def _box(t):
    return 1.0 if -0.5 <= t < 0.5 else 0.0


KERNELS = {"nearest": (_box, 1.0), "bilinear": (_triangle, 2.0), "bicubic": (_cubic, 4.0)}


def imresize_matrix(in_length, scale, method):
    """Dense (out, in) matrix of MATLAB imresize's ``contributions`` for an integer scale > 1.

    x = 1..out (1-based); u = x/scale + 0.5*(1 - 1/scale); left = floor(u - width/2);
    P = ceil(width) + 2 taps left .. left + P - 1; weights kernel(u - index) divided by their sum;
    indices mirrored through aux = [1..n, n..1].
    """
    kernel, width = KERNELS[method]
    out_length = in_length * scale
    aux = list(range(1, in_length + 1)) + list(range(in_length, 0, -1))
    M = np.zeros((out_length, in_length))
    for x in range(1, out_length + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        P = math.ceil(width) + 2
        indices = [left + t for t in range(P)]
        weights = [kernel(u - i) for i in indices]
        total = sum(weights)
        for i, wt in zip(indices, weights):
            M[x - 1, aux[(i - 1) % len(aux)] - 1] += wt / total
    return M


def imresize(a, factor, method):
    """imresize(a, factor, method) on the last two axes: rows first, then columns."""
    fy, fx = _pair(factor)
    a = np.asarray(a, dtype=np.float64)
    R = imresize_matrix(a.shape[-2], fy, method)
    Cm = imresize_matrix(a.shape[-1], fx, method)
    return np.einsum("ri,...ij,cj->...rc", R, a, Cm)


def unpool_adjoint(y, stride, size):
    """Adjoint of average pooling (no padding): out[s*i + a, s*j + b] += y[i, j] / (ph*pw)."""
    sy, sx = _pair(stride)
    ph, pw = _pair(size)
    y = np.asarray(y, dtype=np.float64)
    H, W = y.shape[-2:]
    out = np.zeros(y.shape[:-2] + ((H - 1) * sy + ph, (W - 1) * sx + pw))
    for i in range(H):
        for j in range(W):
            out[..., sy * i:sy * i + ph, sx * j:sx * j + pw] += y[..., i, j, None, None] / (ph * pw)
    return out


def unpool_box(y, stride, size):
    """A box of ones of the window size substituted at the stride (nearest for size == stride)."""
    ph, pw = _pair(size)
    return unpool_adjoint(y, stride, size) * (ph * pw)


def unpool(y, stride, size, method):
    """Undo a pool layer of window ``size`` and ``stride`` on maps y (..., H, W)."""
    if method == "adjoint":
        return unpool_adjoint(y, stride, size)
    if method == "nearest":
        return unpool_box(y, stride, size)
    if _pair(stride) != _pair(size):
        raise NotImplementedError("imresize reference only for size == stride")
    return imresize(y, stride, method)


# --- networks ------------------------------------------------------------------------------
# A network here is a list of dicts, independent of fastdecode's classes:
#   {"type": "conv", "w": (K, C, h, w), "b": (K,) or None, "stride", "pad", "dilate"}
#   {"type": "pool", "method", "size", "stride", "pad"}
#   {"type": "relu", "leak"}, {"type": "bnorm", "gain", "bias", "mean", "sigma"},
#   {"type": "lrn", "depth", "kappa", "alpha", "beta"}, {"type": "dropout"}


def conv_dense(spec, depth):
    """A conv spec's filters over all ``depth`` input channels, dilation and groups expanded."""
    w = dilate_filters(np.asarray(spec["w"], dtype=np.float64), spec.get("dilate", 1))
    if w.shape[1] != depth:
        w = group_filters(w, depth)
    return w


def forward(specs, x, upto=None):
    """Reference forward pass of a list of layer specs on images x (N, C, H, W), float64."""
    x = np.asarray(x, dtype=np.float64)
    last = len(specs) - 1 if upto is None else upto
    for spec in specs[:last + 1]:
        t = spec["type"]
        if t == "conv":
            w = conv_dense(spec, x.shape[1])
            x = correlate(x, w, spec.get("stride", 1), spec.get("pad", 0))
            if spec.get("b") is not None:
                x = x + np.asarray(spec["b"], dtype=np.float64)[None, :, None, None]
        elif t == "pool":
            x = pool(x, spec["method"], spec["size"], spec.get("stride"), spec.get("pad", 0))
        elif t == "relu":
            x = relu(x, spec.get("leak", 0.0))
        elif t == "bnorm":
            x = bnorm(x, spec["gain"], spec["bias"], spec["mean"], spec["sigma"])
        elif t == "lrn":
            x = lrn(x, spec["depth"], spec["kappa"], spec["alpha"], spec["beta"])
        elif t == "dropout":
            pass
        else:
            raise ValueError(t)
    return x


def decode(specs, layer, input_channels, method, filters=None):
    """Reference decoding chain of conv layer ``layer``: every filter walked down alone.

    conv: the literal substitution loop at the layer's stride; pool: reference unpooling;
    bnorm: multiply by gain/sigma; relu, lrn, dropout: passed through. ``filters``: indices.
    """
    depth = input_channels
    depths = []
    for spec in specs:
        depths.append(depth)
        if spec["type"] == "conv":
            depth = spec["w"].shape[0]
    D = conv_dense(specs[layer], depths[layer])
    if filters is not None:
        D = D[filters]
    for i in range(layer - 1, -1, -1):
        spec = specs[i]
        t = spec["type"]
        if t == "conv":
            D = substitute(D, conv_dense(spec, depths[i]), spec.get("stride", 1))
        elif t == "pool":
            size = _pair(spec["size"])
            stride = size if spec.get("stride") is None else _pair(spec["stride"])
            D = unpool(D, stride, size, method)
        elif t == "bnorm":
            a = np.asarray(spec["gain"], np.float64).ravel() / np.asarray(spec["sigma"],
                                                                           np.float64).ravel()
            D = D * a[None, :, None, None]
    return D


def to_fastdecode(specs, input_channels):
    """The same network as fastdecode layers (for building the object under test)."""
    import fastdecode as fd
    layers = []
    for spec in specs:
        t = spec["type"]
        if t == "conv":
            layers.append(fd.Conv(spec["w"], spec.get("b"), stride=spec.get("stride", 1),
                                  pad=spec.get("pad", 0), dilate=spec.get("dilate", 1)))
        elif t == "pool":
            layers.append(fd.Pool(spec["method"], size=spec["size"], stride=spec.get("stride"),
                                  pad=spec.get("pad", 0)))
        elif t == "relu":
            layers.append(fd.ReLU(leak=spec.get("leak", 0.0)))
        elif t == "bnorm":
            layers.append(fd.BatchNorm(spec["gain"], spec["bias"], spec["mean"], spec["sigma"]))
        elif t == "lrn":
            layers.append(fd.LRN(spec["depth"], spec["kappa"], spec["alpha"], spec["beta"]))
        elif t == "dropout":
            layers.append(fd.Dropout())
    return fd.Network(layers, input_channels=input_channels)


def forced_substitution_path(path):
    """Context in which fastdecode substitutes by one path only: "winograd" (Winograd's minimal
    filtering, for kernels of 3 times the stride; the shifted GEMMs for the others, so that
    Winograd steps also write the padded maps a next step reads), "phased" (shifted GEMMs over
    padded planes), "col2im" (GEMM + col2im) or "auto" (its own choice by shape)."""
    import contextlib
    from unittest import mock

    from fastdecode._engine import substitution, winograd
    if path == "auto":
        return contextlib.nullcontext()

    def forced(J, H, W, C, kh, kw, sy, sx, itemsize):
        if path == "winograd" and winograd.winograd_tile((kh, kw), (sy, sx), itemsize) is None:
            return "phased"
        return path
    return mock.patch.object(substitution, "substitution_path", forced)
