"""The layer recursion on graphs: the decoded filters of every tensor built from those of the
tensors it reads, bottom to top, for a box unpooling ("nearest" or "adjoint").

A tensor's decoded filters are (C, C0, h, w) with an offset (rows, cols) in image pixels of
their box's first pixel relative to the tensor's unit (0, 0), and the tensor's stride. The
images' are the identity. A conv substitutes its weights into its input's decoded filters at
the input's stride (:func:`.substitution.substitute_into`, the maps being the weights); an add
sums its inputs' decoded filters at their offsets; a concatenation stacks them; a pool sums its
input's shifted over its window (times the unpooling's box scale); a scaling or a gate scales
them per channel; activations pass them on. Each tensor's filters are freed once the last layer
reading them has run.
"""

import concurrent.futures

import numpy as np

from . import blas
from .substitution import substitute_into

IMAGE = -1


def _union(parts, dtype):
    """[(D (C, C0, h, w), offset)] placed on their union box: a list of arrays of one size."""
    top = min(o[0] for _, o in parts)
    left = min(o[1] for _, o in parts)
    bottom = max(o[0] + d.shape[2] for d, o in parts)
    right = max(o[1] + d.shape[3] for d, o in parts)
    out = []
    for d, (oy, ox) in parts:
        if d.shape[2:] == (bottom - top, right - left):
            out.append(d)
            continue
        a = np.zeros(d.shape[:2] + (bottom - top, right - left), dtype=dtype)
        a[:, :, oy - top:oy - top + d.shape[2], ox - left:ox - left + d.shape[3]] = d
        out.append(a)
    return out, (top, left)


#: Columns per thread below which :func:`gemm_columns` makes one call.
MIN_COLUMNS = 4096


def gemm_columns(a, b, out, threads):
    """out (M, N) = a (M, K) @ b (K, N), the columns split among ``threads`` threads, each a
    single-threaded BLAS GEMM writing its columns in place: every column is computed by the
    same sums whatever the thread count, so results are bitwise the same. Returns out."""
    n = b.shape[1]
    with blas.single_threaded():
        if threads <= 1 or n < 2 * MIN_COLUMNS:
            np.matmul(a, b, out=out)
            return out
        edges = [(n * t // threads) // 64 * 64 for t in range(threads)] + [n]

        def part(t):
            np.matmul(a, b[:, edges[t]:edges[t + 1]], out=out[:, edges[t]:edges[t + 1]])
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            list(pool.map(part, range(threads)))
    return out


def substitute_groups(w, D, out, S, groups, threads):
    """out = the weights w (K, J, kh, kw) substituted with the decoded filters D (J, C0, h, w)
    as maps: ``out[k] += w[k, j, u, v] D[j]`` at (S * u, S * v); group by group for a grouped
    conv (its dense weights are zero across groups), so a depthwise conv costs its own
    work."""
    K, J, kh, kw = w.shape
    if groups == 1 and kh == kw == 1:   # one GEMM: out[k] = sum_j w[k, j] D[j]
        gemm_columns(np.ascontiguousarray(w.reshape(K, J)), D.reshape(J, -1),
                     out.reshape(K, -1), threads)
        return out
    if groups == 1:
        return substitute_into(np.ascontiguousarray(w), D, out, S[0], S[1], threads, zero=True)
    Kg, Jg = K // groups, J // groups
    for g in range(groups):
        substitute_into(np.ascontiguousarray(w[g * Kg:(g + 1) * Kg, g * Jg:(g + 1) * Jg]),
                        D[g * Jg:(g + 1) * Jg], out[g * Kg:(g + 1) * Kg], S[0], S[1], threads,
                        zero=True)
    return out


def peak_bytes(net, keep):
    """The most bytes of decoded filters :func:`walk` holds at once for the layers ``keep``:
    each tensor's from its layer until the last layer reading it (the kept ones to the end);
    activations pass their input's on without a copy."""
    from .._graph import ancestors, use_counts
    needed = sorted(set().union(*(ancestors(net._inputs, k) for k in keep)))
    uses = use_counts(net._inputs, needed)
    size, live, peak = {}, 0, 0
    itemsize = net.dtype.itemsize
    for i in needed:
        layer = net.layers[i]
        shares = (not getattr(layer, "multi_input", False) and layer.type != "linear"
                  and layer.decode_role == "identity")
        R = net._geometry(i)[2]
        size[i] = 0 if shares else net.channels(i) * net.input_channels * R[0] * R[1] * itemsize
        live += size[i]
        peak = max(peak, live)
        for s in set(net._inputs[i]):
            if s == IMAGE:
                continue
            uses[s] -= net._inputs[i].count(s)
            if uses[s] == 0 and s not in keep:
                live -= size[s]
    return peak


def walk(net, keep, unpool, threads, emit=None, alloc=None):
    """{layer index: (decoded filters, offset)} for the layers in ``keep`` (sorted indices).

    emit: called as ``emit(i, D, offset)`` for each kept layer as soon as its decoded filters
    are made, instead of collecting them (the walk may then scale D in place once emit has
    returned); the walk returns {}. alloc: ``alloc(shape, dtype)`` for the large arrays
    (e.g. memory-mapped files), default ``np.empty``.
    """
    alloc = alloc or (lambda shape, dtype: np.empty(shape, dtype=dtype))
    from .._graph import ancestors, use_counts
    dtype = net.dtype
    needed = sorted(set().union(*(ancestors(net._inputs, k) for k in keep)))
    uses = use_counts(net._inputs, needed)
    C0 = net.input_channels
    eye = np.eye(C0, dtype=dtype).reshape(C0, C0, 1, 1)
    T = {IMAGE: (eye, (0, 0), (1, 1))}
    out = {}
    for i in needed:
        layer = net.layers[i]
        srcs = net._inputs[i]
        kind = layer.type
        ins = [T[s] for s in srcs]
        D, off, S = ins[0]
        if kind == "add":
            maps, off = _union([(d, o) for d, o, _ in ins], dtype)
            D = alloc(maps[0].shape, dtype)
            D[...] = maps[0]
            for m in maps[1:]:
                D += m
            del maps
        elif kind == "concat":
            maps, off = _union([(d, o) for d, o, _ in ins], dtype)
            D = alloc((sum(m.shape[0] for m in maps),) + maps[0].shape[1:], dtype)
            np.concatenate(maps, axis=0, out=D)
            del maps
        elif kind == "gate":
            h = layer.hold.astype(dtype)
            D = _scaled(D, h[:, None, None, None] if h.size > 1 else h[0], srcs[0], uses,
                        keep, emit, T)
        else:
            role = "substitute" if kind == "linear" else layer.decode_role
            if role == "scale":
                a, _ = layer.scale_shift(dtype)
                D = _scaled(D, a[:, None, None, None], srcs[0], uses, keep, emit, T)
            elif role in ("substitute", "unpool"):
                pt, _, pl, _ = layer.pad
                off = (off[0] - pt * S[0], off[1] - pl * S[1])
                if role == "substitute":
                    w = layer.conv_weights() if kind == "linear" else layer.dense_weights()
                    w = w.astype(dtype, copy=False)
                    K, J, kh, kw = w.shape
                    _, _, h, wd = D.shape
                    new = alloc((K, C0, (kh - 1) * S[0] + h, (kw - 1) * S[1] + wd), dtype)
                    D = substitute_groups(w, np.ascontiguousarray(D), new, S,
                                          getattr(layer, "groups", 1), threads)
                else:
                    ph, pw = layer.kernel
                    scale = dtype.type(unpool.box_scale(layer.kernel))
                    C, _, h, wd = D.shape
                    new = alloc((C, C0, (ph - 1) * S[0] + h, (pw - 1) * S[1] + wd), dtype)
                    new[...] = 0
                    for u in range(ph):
                        for v in range(pw):
                            new[:, :, u * S[0]:u * S[0] + h, v * S[1]:v * S[1] + wd] += D
                    if scale != 1:
                        new *= scale
                    D = new
                S = (S[0] * layer.stride[0], S[1] * layer.stride[1])
        for s in set(srcs):
            uses[s] -= len([x for x in srcs if x == s])
            if uses[s] == 0 and s != IMAGE:
                del T[s]
        T[i] = (D, off, S)
        if i in keep:
            if emit is None:
                out[i] = (D, off)
            else:
                emit(i, D, off)
        if uses.get(i, 0) == 0 and emit is not None:
            del T[i]
        del D, ins
    return out


def _scaled(D, a, src, uses, keep, emit, T):
    """D times a: in place when only this layer reads D and no other tensor is the same array
    (layers that pass their input on share it)."""
    alias = any(k != src and t[0] is D for k, t in T.items())
    if emit is not None and uses[src] == 1 and not alias:
        D *= a
        return D
    return D * a

