"""Timing, GEMM reference rates, peak memory and the alternative implementations compared.

Everything here measures; nothing asserts. Times are the best of several repeats (the machines
these run on are shared), and every rate is put beside a BLAS GEMM of equal FLOPs measured in the
same process, with the same dtype and thread count.
"""

import os
import platform
import time
import tracemalloc

import numpy as np
from scipy import signal
from scipy.linalg import blas

import fastdecode as fd
from fastdecode._engine import chain, cost, resample

ALL_THREADS = os.cpu_count() or 1
THREADS = sorted({1, ALL_THREADS})
DTYPES = [np.float32, np.float64]


def best_of(fn, repeat=3, min_time=0.0):
    """(best seconds, last result) of calling fn() ``repeat`` times (more while under min_time)."""
    best, result, total, n = np.inf, None, 0.0, 0
    while n < repeat or total < min_time:
        t0 = time.perf_counter()
        result = fn()
        dt = time.perf_counter() - t0
        best, total, n = min(best, dt), total + dt, n + 1
        if n >= 50:
            break
    return best, result


def best_of_interleaved(fns, repeat=3, min_time=0.0, pause=0.3):
    """Best seconds of each of ``fns``, called in turn ``repeat`` times (more while the first
    has run under min_time), so that all of them meet the same moments of a shared machine.

    ``pause`` seconds pass before each call: thread pools (OpenBLAS, OpenMP runtimes) spin for
    a while after their last job and would otherwise take cores from the next contender. The
    order rotates from round to round, so that no contender always runs right after the same
    other one: a call right after PyTorch's float64 substitution measured 20-60% slower,
    whatever it was, even after the pause.
    """
    best = [np.inf] * len(fns)
    total, n = 0.0, 0
    order = list(range(len(fns)))
    while n < repeat or total < min_time:
        k = n % len(fns)
        for i in order[k:] + order[:k]:
            fn = fns[i]
            if len(fns) > 1 and pause:
                time.sleep(pause)
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            best[i] = min(best[i], dt)
            if i == 0:
                total += dt
        n += 1
        if n >= 20:
            break
    return best


def blas_info():
    """The BLAS libraries loaded (threadpoolctl), e.g. 'openblas 0.3.30 SkylakeX'."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    seen = []
    for lib in threadpool_info():
        if lib.get("user_api") == "blas":
            seen.append("%s %s %s" % (lib.get("internal_api"), lib.get("version"),
                                      lib.get("architecture")))
    return "; ".join(sorted(set(seen))) or "unknown"


def machine():
    """One line: CPU model, cores, BLAS kernel and the OpenBLAS variables set."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    env = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS")}
    return "%s, %d cores; BLAS: %s; OPENBLAS env: %s" % (cpu, os.cpu_count(), blas_info(),
                                                          env or "none")


_gemm_cache = {}


def gemm_rate(dtype, threads, flops=None, repeat=3, fresh=False):
    """FLOP/s of scipy's BLAS GEMM (square, n^3 * 2 = flops, n in [512, 4096]) on ``threads``.

    Cached per (dtype, threads, n) unless ``fresh``: on a shared machine, measure it next to the
    case it is compared with.
    """
    dtype = np.dtype(dtype)
    n = 2048 if flops is None else int(np.clip(round((flops / 2) ** (1 / 3)), 512, 4096))
    key = (dtype.str, threads, n)
    if fresh or key not in _gemm_cache:
        rng = np.random.default_rng(0)
        a = np.asfortranarray(rng.standard_normal((n, n)).astype(dtype))
        b = np.asfortranarray(rng.standard_normal((n, n)).astype(dtype))
        gemm = blas.sgemm if dtype == np.float32 else blas.dgemm
        with _blas_threads(threads):
            gemm(1.0, a, b)
            t, _ = best_of(lambda: gemm(1.0, a, b), repeat)
        _gemm_cache[key] = 2.0 * n ** 3 / t
        time.sleep(0.3)  # let BLAS's threads stop spinning before the next measurement
    return _gemm_cache[key]


def gemm_callable(dtype, threads, flops):
    """(fn, gemm_flops): a square BLAS GEMM of about ``flops`` (n in [512, 4096]) on ``threads``,
    to time in turn with the case it is compared with."""
    dtype = np.dtype(dtype)
    n = int(np.clip(round((flops / 2) ** (1 / 3)), 512, 4096))
    rng = np.random.default_rng(0)
    a = np.asfortranarray(rng.standard_normal((n, n)).astype(dtype))
    b = np.asfortranarray(rng.standard_normal((n, n)).astype(dtype))
    gemm = blas.sgemm if dtype == np.float32 else blas.dgemm

    def fn():
        with _blas_threads(threads):
            gemm(1.0, a, b)

    return fn, 2.0 * n ** 3


class _blas_threads:
    def __init__(self, n):
        self.n = n

    def __enter__(self):
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            self.ctx = None
            return self
        self.ctx = threadpool_limits(self.n, user_api="blas")
        return self

    def __exit__(self, *exc):
        if self.ctx is not None:
            self.ctx.unregister()


def peak_memory(fn):
    """(peak bytes traced during fn(), result): numpy arrays and fastdecode's scratch included."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, result


# --- FLOP counts ------------------------------------------------------------------------------

def decode_flops(net, layer, n_filters=None):
    """FLOPs of decoding ``n_filters`` (default all) filters of a conv layer by the literal chain
    (unpool, then substitute; what the PyTorch baseline runs)."""
    i = net.conv_index(layer)
    n = net.layers[i].num_filters if n_filters is None else n_filters
    # a plan whose unpoolings merge with no conv layer, every substitution counted in full
    plan = chain.ChainPlan(net, i, resample.METHODS["bilinear"])
    return cost.chain_flops(plan, n, path="col2im")


def chain_flops(net, layer, n_filters=None, unpool="nearest"):
    """FLOPs fastdecode's chain does for ``n_filters`` filters (box unpoolings merged into the
    conv layer below, which saves work)."""
    i = net.conv_index(layer)
    n = net.layers[i].num_filters if n_filters is None else n_filters
    return cost.chain_flops(chain.ChainPlan(net, i, resample.METHODS[unpool]), n)


def recursive_flops(net, layer, n_filters=None):
    """FLOPs of decoding ``n_filters`` (default all) filters of a conv layer recursively."""
    i = net.conv_index(layer)
    n = net.layers[i].num_filters if n_filters is None else n_filters
    return cost.recursion_cost(net, i, n)[0]


def decode_all_flops(net):
    """FLOPs of decoding every filter of every conv layer recursively."""
    top = max(i for i, l in enumerate(net.layers) if isinstance(l, fd.Conv))
    return cost.recursion_cost(net, top, net.layers[top].num_filters)[0]


def substitute_flops(df_shape, w_shape):
    """FLOPs of a stride-1 substitution in the direct form (what PyTorch computes)."""
    F, J, H, W = df_shape
    _, C, h, w = w_shape
    return 2.0 * F * J * H * W * C * h * w


def substitute_work(df_shape, w_shape, dtype, stride=1):
    """FLOPs fastdecode computes for a substitution, and the form it takes."""
    from fastdecode._engine import substitution
    F, J, H, W = df_shape
    _, C, h, w = w_shape
    shapes = (J, H, W, C, h, w, stride, stride, np.dtype(dtype).itemsize)
    return substitution.substitution_flops(F, *shapes), substitution.substitution_path(*shapes)


def correlate_flops(x_shape, f_shape, out_hw):
    N = x_shape[0]
    K, C, h, w = f_shape
    return 2.0 * N * K * out_hw[0] * out_hw[1] * C * h * w


def eq3_flops(net, layer, images_shape):
    """FLOPs of the correlations of an Eq. 3 evaluation over images (N, C, H, W): the network's
    conv layers up to ``layer`` and the images' correlation with the layer's decoded filters
    (the pooling, ReLU and normalisation passes are not counted)."""
    idx = net.conv_index(layer)
    one = (1,) + tuple(images_shape[1:])
    total = 0.0
    for i in range(idx + 1):
        l = net.layers[i]
        if isinstance(l, fd.Conv):
            shape_in = net.output_shape(one, upto=i - 1) if i else one
            out = net.output_shape(one, upto=i)
            total += correlate_flops(shape_in, l.dense_weights().shape, out[2:])
    K = net.layers[idx].num_filters
    out = net.output_shape(one, upto=idx)
    total += correlate_flops(one, (K,) + net.decoded_shape(idx), out[2:])
    return images_shape[0] * total


# --- the alternatives -------------------------------------------------------------------------

def _steps(net, idx):
    return [l for l in reversed(net.layers[:idx]) if isinstance(l, (fd.Conv, fd.Pool))]


def literal_decode(net, layer, filters):
    """The paper's algorithm, literally: substitute the filter at every pixel, in Python.

    nearest unpooling; stride-1 convs and pools with size == stride only (LeNet, VGG).
    """
    idx = net.conv_index(layer)
    D = net.layers[idx].dense_weights()[filters].astype(np.float64)
    for l in _steps(net, idx):
        if isinstance(l, fd.Conv):
            W = l.dense_weights().astype(np.float64)
            F, J, H, Wd = D.shape
            _, C, h, w = W.shape
            out = np.zeros((F, C, H + h - 1, Wd + w - 1))
            for f in range(F):
                for j in range(J):
                    for y in range(H):
                        for x in range(Wd):
                            out[f, :, y:y + h, x:x + w] += D[f, j, y, x] * W[j]
            D = out
        else:
            D = D.repeat(l.stride[0], axis=2).repeat(l.stride[1], axis=3)
    return D


def scipy_decode(net, layer, filters):
    """The chain with scipy.signal: full convolutions (fftconvolve) summed over channels."""
    idx = net.conv_index(layer)
    D = net.layers[idx].dense_weights()[filters]
    for l in _steps(net, idx):
        if isinstance(l, fd.Conv):
            W = l.dense_weights()  # (J, C, h, w): full convolution of D[f, j] with W[j, c]
            D = np.stack([signal.fftconvolve(D[f][:, None], W, axes=(-2, -1)).sum(axis=0)
                          for f in range(D.shape[0])]).astype(D.dtype)
        else:
            D = D.repeat(l.stride[0], axis=2).repeat(l.stride[1], axis=3)
    return D


def scipy_correlate(x, filters):
    """Valid correlation with scipy.signal.correlate, one (image, filter) pair at a time."""
    N, K = x.shape[0], filters.shape[0]
    out = None
    for n in range(N):
        for k in range(K):
            r = signal.correlate(x[n], filters[k], mode="valid", method="direct")[0]
            if out is None:
                out = np.empty((N, K) + r.shape, dtype=x.dtype)
            out[n, k] = r
    return out


def torch_available():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def torch_decode(net, layer, filters, threads):
    """The chain in PyTorch: conv_transpose2d and interpolate(nearest), CPU, ``threads``."""
    import torch
    torch.set_num_threads(threads)
    idx = net.conv_index(layer)
    D = torch.from_numpy(np.ascontiguousarray(net.layers[idx].dense_weights()[filters]))
    with torch.no_grad():
        for l in _steps(net, idx):
            if isinstance(l, fd.Conv):
                D = torch.nn.functional.conv_transpose2d(
                    D, torch.from_numpy(l.dense_weights()), stride=l.stride)
            else:
                D = torch.nn.functional.interpolate(D, scale_factor=l.stride, mode="nearest")
    return D.numpy()


def torch_correlate(x, filters, threads):
    import torch
    torch.set_num_threads(threads)
    with torch.no_grad():
        return torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(filters)).numpy()


def eq3_gemms(net, layer, images_shape, dtype, threads, batch_size=1000):
    """A callable running, on ``threads``, the BLAS GEMMs that an Eq. 3 evaluation of
    ``images_shape`` amounts to (one per conv layer up to ``layer`` and one for the decoded
    correlation, batch by batch, on random patch matrices built beforehand: no im2col, no
    pooling), and their FLOPs: the pass's work at the speed BLAS reaches on those shapes."""
    idx = net.conv_index(layer)
    n = min(batch_size, images_shape[0])
    one = (1,) + tuple(images_shape[1:])
    shapes = []
    for i in range(idx + 1):
        l = net.layers[i]
        if isinstance(l, fd.Conv):
            shape_in = net.output_shape(one, upto=i - 1) if i else one
            out = net.output_shape(one, upto=i)
            K, C, h, w = l.dense_weights().shape
            shapes.append((n * out[2] * out[3], C * h * w, K))
    out = net.output_shape(one, upto=idx)
    shapes.append((n * out[2] * out[3], int(np.prod(net.decoded_shape(idx))),
                   net.layers[idx].num_filters))
    rng = np.random.default_rng(0)
    dtype = np.dtype(dtype)
    gemm = blas.sgemm if dtype == np.float32 else blas.dgemm
    mats = [(np.asfortranarray(rng.standard_normal((M, Kd)).astype(dtype)),
             np.asfortranarray(rng.standard_normal((Kd, N)).astype(dtype))) for M, Kd, N in shapes]
    batches = -(-images_shape[0] // n)

    def fn():
        with _blas_threads(threads):
            for _ in range(batches):
                for a, b in mats:
                    gemm(1.0, a, b)

    return fn, batches * sum(2.0 * M * Kd * N for M, Kd, N in shapes)


def torch_eq3(net, images, layer, decoded, threads, batch_size=1000):
    """Eq. 3 per image in PyTorch, in batches: the network's forward pass (conv2d, max/avg pooling,
    ReLU), the images' correlation with the decoded filters, each rescaled per image by its
    own range, and the mean squared difference. Networks of conv, unpadded pool and ReLU layers."""
    import torch
    F = torch.nn.functional
    torch.set_num_threads(threads)
    idx = net.conv_index(layer)
    S, (pt, pb, pl, pr) = net.stride(idx), net.padding(idx)
    D = torch.from_numpy(np.ascontiguousarray(decoded))
    x_all = torch.from_numpy(images)

    def rescaled(a):
        a = a.reshape(a.shape[0], -1).double()
        lo = a.min(1, keepdim=True).values
        return (a - lo) / (a.max(1, keepdim=True).values - lo)

    errors = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = y = x_all[start:start + batch_size]
            for l in net.layers[:idx + 1]:
                if isinstance(l, fd.Conv):
                    t, b, lft, r = l.pad
                    y = F.conv2d(F.pad(y, (lft, r, t, b)), torch.from_numpy(l.dense_weights()),
                                 None if l.bias is None else torch.from_numpy(l.bias),
                                 stride=l.stride)
                elif isinstance(l, fd.Pool) and not any(l.pad):
                    pool = F.max_pool2d if l.method == "max" else F.avg_pool2d
                    y = pool(y, l.kernel, l.stride)
                elif isinstance(l, fd.ReLU) and not l.leak:
                    y = F.relu(y)
                else:
                    raise ValueError("torch_eq3: layer %s is not supported" % l.describe())
            d = F.conv2d(F.pad(x, (pl, pr, pt, pb)), D, stride=S)
            errors.append(((rescaled(y) - rescaled(d)) ** 2).mean(1))
    return torch.cat(errors).numpy()


def torch_substitute(df, w, stride, threads):
    import torch
    torch.set_num_threads(threads)
    with torch.no_grad():
        return torch.nn.functional.conv_transpose2d(torch.from_numpy(df), torch.from_numpy(w),
                                                    stride=stride).numpy()
