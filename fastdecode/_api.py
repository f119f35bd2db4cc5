"""Validated wrappers around the compiled kernels: correlation, substitution, unpooling, pooling."""

import contextlib
import math
import threading
from collections import namedtuple

import numpy as np

from ._engine import _correlation, _eq3, _maps, _resample, _substitution, _winograd
from ._validation import (all_finite, as_int, as_pad, as_pair, check_bytes, float_array,
                          overflow_error, resolve_threads, result_dtype)

UNPOOL_METHODS = ("nearest", "bilinear", "bicubic", "adjoint")


def correlate(x, filters, *, stride=1, pad=0, n_threads=None, memory_limit=None):
    """Valid correlation of images with filters, MatConvNet ``vl_nnconv`` semantics (no flip).

    x: images (N, C, H, W) or one image (C, H, W); filters (K, C, h, w).
    stride: int or (sy, sx); pad: int, (rows, cols) or (top, bottom, left, right), zeros.
    Returns (N, K, Ho, Wo) (or (K, Ho, Wo) for one image) with
    Ho = floor((H + top + bottom - h) / sy) + 1, in float64 if either input is float64,
    else float32. A result that overflows its dtype raises ValueError instead of holding inf.
    """
    out, finite = correlate_finite(x, filters, stride=stride, pad=pad, n_threads=n_threads,
                                   memory_limit=memory_limit)
    if not finite:
        raise overflow_error("the correlation of x %s with filters %s"
                             % (np.shape(x), np.shape(filters)), out.dtype)
    return out


def correlate_finite(x, filters, *, stride=1, pad=0, n_threads=None, memory_limit=None,
                     out=None, finite_inputs=False, bias=None):
    """(:func:`correlate` plus ``bias[k]`` on filter k, whether that result is all finite): the
    bias is added and the result checked inside the kernel, block by block (callers raise).

    out: an array to write the result into (C-contiguous, of the result's shape and dtype, for
    (N, C, H, W) images, not sharing the inputs' memory); a new one otherwise.
    finite_inputs: x and filters are known to be finite (a network's checked layer outputs and
    weights): their values are not checked again. Otherwise non-finite x or filters raise
    ValueError before any computation. bias: K values, or None."""
    x = float_array("x", x, ndim=(3, 4), finite=not finite_inputs)
    single = x.ndim == 3
    if single:
        x = x[None]
    filters = float_array("filters", filters, ndim=4, finite=not finite_inputs)
    sy, sx = as_pair("stride", stride, minimum=1)
    pt, pb, pl, pr = as_pad("pad", pad)
    threads = resolve_threads(n_threads)
    N, C, H, W = x.shape
    K, Cf, h, w = filters.shape
    if C != Cf:
        raise ValueError("x has %d channels but filters expect %d (x %s, filters %s)"
                         % (C, Cf, x.shape, filters.shape))
    if min(filters.shape) == 0 or min(x.shape) == 0:
        raise ValueError("empty input: x %s, filters %s" % (x.shape, filters.shape))
    Hp, Wp = H + pt + pb, W + pl + pr
    if Hp < h or Wp < w:
        raise ValueError("padded image %dx%d is smaller than the filters %dx%d (x %s, pad %s)"
                         % (Hp, Wp, h, w, x.shape, (pt, pb, pl, pr)))
    Ho, Wo = window_grid((H, W), (h, w), (sy, sx), (pt, pb, pl, pr))
    dtype = result_dtype(x, filters)
    check_bytes("correlate output", (N, K, Ho, Wo), dtype, memory_limit)
    # The kernels read the padding as zeros: no padded copy.
    x = np.ascontiguousarray(x, dtype=dtype)
    filters = np.ascontiguousarray(filters, dtype=dtype)
    if bias is not None:
        bias = np.ascontiguousarray(bias, dtype=dtype)   # its length: correlate_into
    if out is None:
        out = np.empty((N, K, Ho, Wo), dtype=dtype)
    else:
        _check_out(out, (N, K, Ho, Wo), dtype, x, filters)
    finite = correlate_into(x, filters, out, sy, sx, threads, bias, pt, pl)
    return (out[0] if single else out), finite


def substitute(df, weights, *, stride=1, n_threads=None, memory_limit=None):
    """Substitute filters at every pixel of decoded maps (a transposed convolution).

    ``out[k, c, s*y + u, s*x + v] += df[k, j, y, x] * weights[j, c, u, v]``.
    df: maps (K, J, H, W) or one map (J, H, W); weights (J, C, h, w); stride int or (sy, sx).
    Returns (K, C, (H-1)*sy + h, (W-1)*sx + w) (or without the K axis for one map).
    Non-finite df or weights raise ValueError before any computation; a result that overflows
    its dtype raises ValueError.
    """
    df = float_array("df", df, ndim=(3, 4))
    single = df.ndim == 3
    if single:
        df = df[None]
    weights = float_array("weights", weights, ndim=4)
    sy, sx = as_pair("stride", stride, minimum=1)
    threads = resolve_threads(n_threads)
    K, J, H, W = df.shape
    Jw, C, h, w = weights.shape
    if J != Jw:
        raise ValueError("df has %d channels but weights have %d filters (df %s, weights %s)"
                         % (J, Jw, df.shape, weights.shape))
    if min(df.shape) == 0 or min(weights.shape) == 0:
        raise ValueError("empty input: df %s, weights %s" % (df.shape, weights.shape))
    dtype = result_dtype(df, weights)
    shape = (K, C, (H - 1) * sy + h, (W - 1) * sx + w)
    check_bytes("substitute output", shape, dtype, memory_limit)
    out = np.empty(shape, dtype=dtype)
    substitute_into(df.astype(dtype, copy=False), weights.astype(dtype, copy=False), out, sy, sx,
                    threads, zero=True)
    if not all_finite(out):
        raise overflow_error("the substitution of weights %s into df %s"
                             % (weights.shape, df.shape), dtype)
    return out[0] if single else out


# --- GEMM-based kernels: block sizes, BLAS threads, reference paths ---------------------------

#: Elements of the per-thread GEMM result buffer the blocked kernels aim at (2 MiB in float32).
GEMM_BLOCK_ELEMENTS = 1 << 19
#: GEMM width (columns) the blocked kernels aim at.
GEMM_WIDTH = 512

_blas_controller = None


def blas_single_threaded():
    """Context in which BLAS runs on one thread (OpenMP threads then call it side by side).

    Uses threadpoolctl (a dependency); without it BLAS keeps its own threads, which is slower
    (concurrent calls contend) and can change the last bits of a sum (OpenBLAS picks other
    blocks for a threaded GEMM).
    """
    global _blas_controller
    if _blas_controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _blas_controller = False
        else:
            _blas_controller = ThreadpoolController().select(user_api="blas")
    if _blas_controller is False:
        return contextlib.nullcontext()
    return _blas_controller.limit(limits=1)


def _ceil_div(a, b):
    return -(-a // b)


#: Below this many FLOPs a GEMM kernel runs on one thread: waking a team costs more than it saves.
PARALLEL_MIN_FLOPS = 2e7


def _team(threads, tasks, flops):
    """Threads worth starting for ``tasks`` independent tasks of ``flops`` in total.

    Results do not depend on it (the tasks are fixed by the shapes), only the speed does.
    """
    if flops < PARALLEL_MIN_FLOPS:
        return 1
    return max(1, min(threads, tasks))


_workspace = threading.local()
#: Largest work buffer kept between calls, per name and Python thread.
SCRATCH_KEEP_BYTES = 32 * 2**20


def scratch(name, dtype, threads, size):
    """A (threads, size) work buffer, kept per Python thread and reused across calls and chunks
    (up to SCRATCH_KEEP_BYTES; a larger one only within :func:`reuse_buffers`).

    Allocated with numpy, so that a failed allocation raises MemoryError before compiled code.
    """
    key = (name, np.dtype(dtype).str)
    cache = getattr(_workspace, "buffers", None)
    if cache is None:
        cache = _workspace.buffers = {}
    buf = cache.get(key)
    if buf is None or buf.shape[0] < threads or buf.shape[1] < size:
        cache.pop(key, None)
        rows = max(threads, 0 if buf is None else buf.shape[0])
        buf = np.empty((rows, max(size, 1)), dtype=dtype)
        if buf.nbytes <= SCRATCH_KEEP_BYTES or getattr(_workspace, "depth", 0) > 0:
            cache[key] = buf
    return buf


def _balanced(n, block):
    """A block size near ``block`` (at most) that cuts n into equal blocks: 64 by 57 -> 32."""
    block = max(1, min(n, block))
    return _ceil_div(n, _ceil_div(n, block))


def substitute_blocks(F, J, H, W, C, kh, kw):
    """(layout, fb, cb, rb) for :func:`substitute_into`, from the shapes alone.

    layout "maps" runs the GEMM rows over the maps' pixels (maps larger than the weights),
    "weights" over the weights' entries. fb maps x cb channels make one task (disjoint outputs);
    rb rows (of W or kw values) make one GEMM. Never depends on the thread count.
    """
    if H * W >= kh * kw:
        cb = _balanced(C, _ceil_div(GEMM_WIDTH, kh * kw))
        rb = max(1, GEMM_BLOCK_ELEMENTS // (W * cb * kh * kw))
        fb = max(1, min(F, _ceil_div(rb, H)))
        ncb = _ceil_div(C, cb)
        fb = max(1, min(fb, F * ncb // 8))  # enough tasks to share out when there are many maps
        rb = min(rb, fb * H)
        return "maps", fb, cb, rb
    # A task is one channel of the (large) weights for fb maps: wide GEMMs, yet at least 8
    # tasks when the maps and channels allow it.
    fb = _balanced(F, min(_ceil_div(GEMM_WIDTH, H * W), _ceil_div(F * C, 8)))
    rb = max(1, min(kh, 2 * GEMM_BLOCK_ELEMENTS // (kw * fb * H * W)))
    return "weights", fb, 1, rb


@contextlib.contextmanager
def reuse_buffers():
    """Within this context the large transient copies and work buffers of the GEMM kernels are
    kept and reused (a decoding chain makes one per step); they are released when the outermost
    context exits.
    """
    _workspace.depth = getattr(_workspace, "depth", 0) + 1
    try:
        yield
    finally:
        _workspace.depth -= 1
        if _workspace.depth == 0:
            _workspace.transient = None
            buffers = getattr(_workspace, "buffers", {})
            for key in [k for k, b in buffers.items() if b.nbytes > SCRATCH_KEEP_BYTES]:
                del buffers[key]


class Buffers:
    """Arrays reused by key: :meth:`get` returns an uninitialised C-contiguous array, in the same
    memory for the same key whenever it fits, so that a kernel writes where it wrote before
    instead of into fresh pages. A pass over a dataset keeps one for its batches;
    :func:`transient` one per Python thread inside :func:`reuse_buffers`."""

    def __init__(self):
        self._arrays = {}

    def __len__(self):
        return len(self._arrays)

    def holds(self, key, arr):
        """Whether the array kept under ``key`` may share memory with ``arr``."""
        buf = self._arrays.get(key)
        return buf is not None and np.may_share_memory(buf, arr)

    def get(self, key, shape, dtype):
        dtype = np.dtype(dtype)
        n = int(np.prod(shape))
        buf = self._arrays.get(key)
        if buf is None or buf.dtype != dtype or buf.size < n:
            self._arrays.pop(key, None)
            buf = self._arrays[key] = np.empty(n, dtype=dtype)
        return buf[:n].reshape(shape)


def transient(name, shape, dtype):
    """An uninitialised array for a kernel's temporary copy: reused inside :func:`reuse_buffers`."""
    if getattr(_workspace, "depth", 0) == 0:
        return np.empty(shape, dtype=dtype)
    cache = getattr(_workspace, "transient", None)
    if cache is None:
        cache = _workspace.transient = Buffers()
    return cache.get((name, np.dtype(dtype).str), shape, dtype)


def transpose_last2(a, threads, name="transpose"):
    """a (F, J, P) C-contiguous as an (F, P, J) C-contiguous array (a tiled, parallel copy)."""
    out = transient(name, (a.shape[0], a.shape[2], a.shape[1]), a.dtype)
    if a.size:
        _maps.transpose_last2(a, out, threads if a.size >= 1 << 16 else 1)
    return out


def substitution_path(J, H, W, C, kh, kw, sy, sx, itemsize):
    """The form a substitution of weights (J, C, kh, kw) at stride (sy, sx) into maps (J, H, W)
    takes, from the shapes alone: "winograd" (3x3 kernels at stride 1, 6x6 at stride 2 and the
    like, maps large enough, see :func:`winograd_suits`), "phased" (shifted GEMMs over padded
    planes, see :func:`phased_suits`) or "col2im" (GEMM + col2im). All agree to rounding."""
    if winograd_suits(J, H, W, C, kh, kw, sy, sx, itemsize):
        return "winograd"
    if phased_suits(J, H, W, C, kh, kw, sy, sx):
        return "phased"
    return "col2im"


def substitution_flops(F, J, H, W, C, kh, kw, sy, sx, itemsize, path=None):
    """FLOPs (a multiply-add counts 2) of substituting weights (J, C, kh, kw) into F maps
    (J, H, W) in the form ``path`` (default: :func:`substitution_path`'s choice): Winograd's the
    products of its transformed tiles, the others 2*F*J*H*W*C*kh*kw."""
    if path is None:
        path = substitution_path(J, H, W, C, kh, kw, sy, sx, itemsize)
    if path == "winograd":
        m, r = winograd_tile((kh, kw), (sy, sx), itemsize)
        return 2.0 * F * J * C * sy * sx * _winograd_tiles(H, W, m, r) * (m + r - 1) ** 2
    return 2.0 * F * J * H * W * C * kh * kw


def substitute_into(df, weights, out, sy, sx, threads, zero=False):
    """out += substitution of weights (J, C, kh, kw) at every pixel of df (F, J, H, W).

    out (F, C, (H-1)*sy + kh, (W-1)*sx + kw) in df's dtype. With ``zero`` out is cleared first
    (by the kernel's tasks, in parallel), so out = the substitution, in the form
    :func:`substitution_path` chooses; without it, by GEMM + col2im.
    Inputs must already be validated, C-contiguous and of out's dtype.
    """
    F, J, H, W = df.shape
    _, C, kh, kw = weights.shape
    path = substitution_path(J, H, W, C, kh, kw, sy, sx, df.dtype.itemsize) if zero else "col2im"
    if path == "col2im":
        return substitute_col2im(df, weights, out, sy, sx, threads, zero)
    layout = input_layout(path, W, kw, sx)
    maps = (PaddedMaps(df.reshape(F, J, H * W), H, W, W, 0) if layout is None
            else pad_maps(df, *layout, threads))
    substitute_padded(path, maps, prepared_weights(path, weights, (sy, sx), threads), (kh, kw),
                      (sy, sx), out.reshape(F, C, -1), out.shape[3], 0, threads)
    return out


def input_layout(path, W, kw, sx):
    """(P, off): the padded layout the substitution form ``path`` reads maps of width W in, or
    None when it reads dense maps (col2im) or any layout (Winograd)."""
    return phased_layout(W, kw, sx) if path == "phased" else None


def prepared_weights(path, weights, stride, threads):
    """Weights (J, C, kh, kw) in the layout the substitution form ``path`` reads (made once per
    decoding): transformed for "winograd", by offset and phase for "phased", as they are for
    "col2im"."""
    if path == "winograd":
        m, _ = winograd_tile(weights.shape[2:], stride, weights.dtype.itemsize)
        return winograd_weights(weights, m, stride, threads)
    if path == "phased":
        return phased_weights(weights, stride)
    return weights


def substitute_padded(path, maps, prepared, kernel, stride, out, Po, off_out, threads):
    """Substitution by "winograd" or "phased" of weights from :func:`prepared_weights` at every
    pixel of the PaddedMaps ``maps`` (in :func:`input_layout`), written in full into out
    (F, C, S_out) with pitch Po and offset off_out (zeros around). Returns it as PaddedMaps."""
    if path == "winograd":
        m, _ = winograd_tile(kernel, stride, maps.buf.dtype.itemsize)
        return substitute_winograd(maps, prepared, m, stride, out, Po, off_out, threads)
    return substitute_phased(maps, prepared, kernel, out, Po, off_out, *stride, threads)


def substitute_col2im(df, weights, out, sy, sx, threads, zero=False):
    """:func:`substitute_into` by GEMM + col2im (the layout from :func:`substitute_blocks`)."""
    F, J, H, W = df.shape
    _, C, kh, kw = weights.shape
    layout, fb, cb, rb = substitute_blocks(F, J, H, W, C, kh, kw)
    w2 = weights.reshape(J, C * kh * kw)
    flops = 2.0 * F * J * H * W * C * kh * kw
    threads = _team(threads, _ceil_div(F, fb) * _ceil_div(C, cb), flops)
    if layout == "maps":
        # One map per task: the GEMM reads the maps in place. Several: channels last, so that
        # a block of GEMM rows spanning maps is one contiguous piece.
        planar = fb == 1
        dl = df.reshape(F, J, H * W) if planar else transpose_last2(df.reshape(F, J, H * W),
                                                                     threads, "maps")
        work = scratch("cols", out.dtype, threads, rb * W * min(cb, C) * kh * kw)
        with blas_single_threaded():
            _substitution.substitute_gemm_maps(dl, w2, out, H, W, kh, kw, sy, sx, fb, cb, rb, work,
                                          threads, planar, zero)
        return out
    if zero:
        out.fill(0)
    # Channels last, so that every block of GEMM columns is one contiguous piece.
    dl = transpose_last2(df.reshape(F, J, H * W), threads, "maps")
    wt = transpose_last2(w2[None], threads, "weights")[0]
    work = scratch("cols", out.dtype, threads, rb * kw * min(fb, F) * H * W)
    with blas_single_threaded():
        _substitution.substitute_gemm_weights(dl, wt, out, H, W, kh, kw, sy, sx, fb, cb, rb, work,
                                         threads)
    return out


# --- phase-wise shifted GEMMs over padded planes --------------------------------------------
#
# Maps (F, C, H, W) stored as padded planes buf (F, C, S): pixel (y, x) at buf[f, c, off + y*P + x]
# and zeros everywhere else. A substitution reads them with whole rows per GEMM (see
# ``_substitution.substitute_phased``) and can write its result straight into the padded planes that
# the next substitution reads: a chain of substitutions then makes no copies between steps.

PaddedMaps = namedtuple("PaddedMaps", ["buf", "H", "W", "P", "off"])
PaddedMaps.__doc__ = """Maps (F, C, H, W) as padded planes buf (F, C, S): pixel (y, x) at
buf[f, c, off + y*P + x], zero elsewhere; dense when P == W and off == 0."""


def phased_layout(W, kw, sx):
    """(P, off): least row pitch and leading zeros of padded maps of width W that a substitution
    of kernel width kw at column stride sx reads: the row wrap-around must land on zeros."""
    taps = _ceil_div(kw, sx)
    return W + taps - 1, taps - 1


def phased_suits(J, H, W, C, kh, kw, sy, sx):
    """Whether the phase-wise shifted GEMMs suit these shapes better than GEMM + col2im.

    They compute (P - W) zero columns per row of width W and run GEMMs of H*P rows, C*sy*sx
    columns and J terms, each of which packs its weights: worth it for wide maps and outputs.
    col2im adds every product to the output once per J terms: it does well on deep, small maps.
    (Measured on VGG-16's layers; either way the results agree to rounding.)
    """
    P, _ = phased_layout(W, kw, sx)
    rows = H * P
    return C >= 32 and 7 * (P - W) <= W and rows >= 128 and (J <= 256 or rows >= 1024)


def phased_weights(weights, stride):
    """Weights (J, C, kh, kw) as wp (na*nb, C, sy*sx, J), the layout of substitute_phased:
    wp[a*nb + b, c, py*sx + px, j] = weights[j, c, py + sy*a, px + sx*b], zero past the kernel."""
    J, C, kh, kw = weights.shape
    sy, sx = stride
    na, nb = _ceil_div(kh, sy), _ceil_div(kw, sx)
    padded = np.zeros((J, C, na * sy, nb * sx), dtype=weights.dtype)
    padded[:, :, :kh, :kw] = weights
    taps = padded.reshape(J, C, na, sy, nb, sx)            # [j, c, a, py, b, px]
    return np.ascontiguousarray(taps.transpose(2, 4, 1, 3, 5, 0)).reshape(na * nb, C, sy * sx, J)


def pad_maps(df, P, off, threads, out=None):
    """Maps df (F, J, H, W), C-contiguous, as PaddedMaps of pitch P and offset off.

    out: optional C-contiguous array of at least F*J*(off + H*P) elements of df's dtype to use.
    """
    F, J, H, W = df.shape
    S = off + H * P
    buf = (transient("padded", (F, J, S), df.dtype) if out is None
           else out.reshape(-1)[:F * J * S].reshape(F, J, S))
    _maps.pad_planes(df.reshape(F * J, H, W), buf.reshape(F * J, S), P, off,
                        threads if buf.size >= 1 << 16 else 1)
    return PaddedMaps(buf, H, W, P, off)


def phased_blocks(F, Hp, P, C, itemsize, phases=1):
    """(rb, cb): phase rows and channels per task of substitute_phased, from the shapes alone.

    A task's GEMMs run over about PHASED_GEMM_ROWS[itemsize] rows (rb rows of pitch P) and at
    most PHASED_MAX_CHANNELS columns (cb channels of each of the ``phases`` phases); rows are
    split further when there are too few tasks to share out.
    """
    cb = _balanced(C, max(1, PHASED_MAX_CHANNELS // phases))
    rb = max(1, min(Hp, PHASED_GEMM_ROWS[itemsize] // P))
    per_block = F * _ceil_div(C, cb)                 # tasks per block of rows
    if per_block * _ceil_div(Hp, rb) < PHASED_MIN_TASKS:
        rb = min(rb, _balanced(Hp, max(1, Hp * per_block // PHASED_MIN_TASKS)))
    return rb, cb


#: GEMM rows per task of a phase-wise substitution, by itemsize: measured on VGG-16's layers
#: (fewer rows keep the GEMM's operands in cache, more rows pack the weights less often).
PHASED_GEMM_ROWS = {4: 512, 8: 1024}
#: Channels (GEMM columns) per task of a phase-wise substitution, at most.
PHASED_MAX_CHANNELS = 512
#: Tasks a phase-wise substitution aims at, at least, when its blocks allow it.
PHASED_MIN_TASKS = 8


def substitute_phased(maps, wp, kernel, out, Po, off_out, sy, sx, threads):
    """Substitution of weights wp (na*nb, C, sy*sx, J) (see :func:`phased_weights`), kernel
    (kh, kw), at stride (sy, sx), at every pixel of the PaddedMaps ``maps`` (pitch and offset at
    least :func:`phased_layout`).

    Writes all of out (F, C, S_out): output pixel (y, x) of the ((H-1)*sy + kh, (W-1)*sx + kw)
    planes at out[f, c, off_out + y*Po + x], zeros elsewhere (Po = Wo and off_out = 0 give dense
    planes). Returns the output as PaddedMaps.
    """
    buf, H, W, P, off = maps
    kh, kw = kernel
    F, J = buf.shape[:2]
    C = wp.shape[1]
    Ho, Wo = (H - 1) * sy + kh, (W - 1) * sx + kw
    rb, cb = phased_blocks(F, _ceil_div(Ho, sy), P, C, buf.dtype.itemsize, sy * sx)
    threads = _team(threads, F * _ceil_div(_ceil_div(Ho, sy), rb) * _ceil_div(C, cb),
                    2.0 * F * J * H * P * C * kh * kw)
    work = scratch("phased", buf.dtype, threads, sy * sx * cb * rb * P)
    with blas_single_threaded():
        _substitution.substitute_phased(buf, wp, out, H, W, P, off, Ho, Wo, Po, off_out, kh, kw, sy, sx,
                                   rb, cb, work, threads)
    return PaddedMaps(out, Ho, Wo, Po, off_out)


def correlate_blocks(N, K, P, CKK):
    """(nb, kb, pr) for :func:`correlate_into`, from the shapes alone.

    nb images x kb filters make one task (disjoint outputs); pr output pixels (rows of the
    im2col matrix, CKK values each) make one GEMM, so the scratch stays near
    2 * GEMM_BLOCK_ELEMENTS per thread however large the images.
    """
    kb = K if K <= GEMM_WIDTH else GEMM_WIDTH // 2
    pr = max(1, 2 * GEMM_BLOCK_ELEMENTS // CKK)
    nb = max(1, min(N, _ceil_div(pr, P)))
    if N >= 8:
        nb = min(nb, _ceil_div(N, 8))
    pr = min(pr, nb * P)
    return nb, kb, pr


#: Output pixels per image from which correlate_into writes GEMM results straight into planes.
PLANES_MIN_PIXELS = 64


def correlate_plane_blocks(K, Ho, Wo, CKK):
    """(kb, rb): filters and output rows per task of the plane-wise correlation (shapes only)."""
    kb = K if K <= GEMM_WIDTH else GEMM_WIDTH // 2
    rb = max(1, min(Ho, 2 * GEMM_BLOCK_ELEMENTS // (Wo * CKK)))
    wide = min(Ho, _ceil_div(GEMM_WIDTH // 2, Wo))  # at least ~256 GEMM rows when affordable
    if wide * Wo * CKK <= 4 * GEMM_BLOCK_ELEMENTS:
        rb = max(rb, wide)
    return kb, rb


def correlate_into(x, filters, out, sy, sx, threads, bias=None, pt=0, pl=0):
    """out = valid correlation of x (N, C, H, W) with filters (K, C, h, w), the windows starting
    at (sy*i - pt, sx*j - pl) with zeros outside x, plus bias (K,) when given; returns whether
    out is all finite.

    im2col + GEMM; inputs validated, C-contiguous, of out's dtype; out (N, K, Ho, Wo), its
    windows within the padded image.
    """
    if bias is None:
        bias = np.zeros(0, out.dtype)
    if bias.shape not in ((0,), (filters.shape[0],)):
        raise ValueError("bias must have one value per filter (%d) or none, got shape %s"
                         % (filters.shape[0], bias.shape))
    N = x.shape[0]
    K, C, h, w = filters.shape
    Ho, Wo = out.shape[2:]
    P = Ho * Wo
    CKK = C * h * w
    if P >= PLANES_MIN_PIXELS:
        kb, rb = correlate_plane_blocks(K, Ho, Wo, CKK)
        threads = _team(threads, N * _ceil_div(K, kb) * _ceil_div(Ho, rb), 2.0 * N * K * P * CKK)
        patches = scratch("patches", out.dtype, threads, rb * Wo * CKK)
        with blas_single_threaded():
            bad = _correlation.correlate_gemm_planes(x, filters.reshape(K, CKK), bias, out, h, w, sy,
                                                 sx, pt, pl, kb, rb, patches, threads)
        return bad == 0
    nb, kb, pr = correlate_blocks(N, K, P, C * h * w)
    threads = _team(threads, _ceil_div(N, nb) * _ceil_div(K, kb), 2.0 * N * K * P * C * h * w)
    patches = scratch("patches", out.dtype, threads, pr * C * h * w)
    prod = scratch("prod", out.dtype, threads, pr * min(kb, K))
    with blas_single_threaded():
        bad = _correlation.correlate_gemm(x, filters.reshape(K, C * h * w), bias, out, h, w, sy, sx,
                                      pt, pl, nb, kb, pr, patches, prod, threads)
    return bad == 0


# --- unpooling -------------------------------------------------------------------------------

def _imresize_kernel(method):
    if method == "bilinear":
        return 2.0, lambda t: np.clip(1.0 - np.abs(t), 0.0, None)

    def cubic(t):  # Keys, a = -0.5, as MATLAB's imresize
        a = np.abs(t)
        a2, a3 = a * a, a * a * a
        return ((1.5 * a3 - 2.5 * a2 + 1.0) * (a <= 1)
                + (-0.5 * a3 + 2.5 * a2 - 4.0 * a + 2.0) * ((a > 1) & (a <= 2)))
    return 4.0, cubic


def imresize_weights(n, factor, method):
    """Taps (index, weight), shape (n*factor, taps), of MATLAB's imresize enlarging n samples.

    Output u (1-based) samples input position u/factor + 0.5*(1 - 1/factor); out-of-range taps
    are mirrored; each output's weights are divided by their sum.
    """
    m = n * factor
    u = np.arange(1, m + 1, dtype=np.float64)
    pos = u / factor + 0.5 * (1.0 - 1.0 / factor)
    if method == "nearest":
        width = 1.0
        kernel = lambda t: ((t >= -0.5) & (t < 0.5)).astype(np.float64)  # noqa: E731
    else:
        width, kernel = _imresize_kernel(method)
    left = np.floor(pos - width / 2.0)
    taps = int(np.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    wts = kernel(pos[:, None] - idx)
    wts /= wts.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(n), np.arange(n - 1, -1, -1)])
    idx = mirror[np.mod(idx.astype(np.int64) - 1, 2 * n)]
    keep = np.any(wts != 0, axis=0)
    return np.ascontiguousarray(idx[:, keep], dtype=np.intp), np.ascontiguousarray(wts[:, keep])


def box_weights(n, stride, size, scale):
    """Taps (index, weight) of substituting a box of ``size`` ones times ``scale`` at ``stride``.

    Output r = stride*y + t (0 <= t < size) receives scale * a[y]; length (n-1)*stride + size.
    """
    m = (n - 1) * stride + size
    taps = -(-size // stride)
    r = np.arange(m)[:, None]
    y = r // stride - np.arange(taps)[None, :]
    valid = (y >= 0) & (y < n) & (r - stride * y < size)
    idx = np.where(valid, y, 0)
    wts = np.where(valid, scale, 0.0)
    return np.ascontiguousarray(idx, dtype=np.intp), np.ascontiguousarray(wts, dtype=np.float64)


def _unpool_taps(n, factor, size, method):
    if method == "nearest":
        return box_weights(n, factor, size, 1.0)
    if method == "adjoint":
        return box_weights(n, factor, size, 1.0 / size)
    idx, wts = imresize_weights(n, factor, method)
    if size != factor:  # align the enlarged map with the pool windows' extent
        m = (n - 1) * factor + size
        before = (size - factor) // 2
        rows = np.arange(m) - before
        valid = (rows >= 0) & (rows < n * factor)
        safe = np.clip(rows, 0, n * factor - 1)
        idx = np.where(valid[:, None], idx[safe], 0)
        wts = np.where(valid[:, None], wts[safe], 0.0)
    return np.ascontiguousarray(idx, dtype=np.intp), np.ascontiguousarray(wts)


def unpool(a, factor, method="nearest", *, size=None, n_threads=None, memory_limit=None):
    """Undo a pooling layer of stride ``factor`` (int or (fy, fx)) on maps a (..., H, W).

    method:
      - "nearest", "bilinear", "bicubic": MATLAB ``imresize(a, factor, method)`` enlargement;
      - "adjoint": the exact adjoint of average pooling of window ``size`` and stride ``factor``:
        zeros inserted at the stride, then a box of the window size divided by its area.
    size: the pooling window (int or pair), default ``factor``. For "nearest" a window larger than
    the stride substitutes a box of ones at every output (overlaps add); for "bilinear"/"bicubic"
    the enlarged map is centred in the window extent (zero-padded or cropped).
    Returns (..., (H-1)*fy + size_y, (W-1)*fx + size_x), i.e. (..., H*fy, W*fx) when size == factor.
    """
    if method not in UNPOOL_METHODS:
        raise ValueError("unknown unpool method %r; choose one of %s" % (method, UNPOOL_METHODS))
    a = float_array("a", a)
    if a.ndim < 2 or min(a.shape[-2:]) == 0:
        raise ValueError("a must have at least 2 non-empty dimensions (..., H, W), got %s"
                         % (a.shape,))
    fy, fx = as_pair("factor", factor, minimum=1)
    sz_y, sz_x = (fy, fx) if size is None else as_pair("size", size, minimum=1)
    threads = resolve_threads(n_threads)
    H, W = a.shape[-2:]
    Ho, Wo = (H - 1) * fy + sz_y, (W - 1) * fx + sz_x
    check_bytes("unpool output", a.shape[:-2] + (Ho, Wo), a.dtype, memory_limit)
    return unpool_checked(a, fy, fx, sz_y, sz_x, method, threads)


def unpool_checked(a, fy, fx, sz_y, sz_x, method, threads, out=None):
    """:func:`unpool` of validated, C-contiguous maps a (..., H, W), without the checks.

    out: optional C-contiguous array of the result's size and dtype to write into.
    """
    lead = a.shape[:-2]
    H, W = a.shape[-2:]
    Ho, Wo = (H - 1) * fy + sz_y, (W - 1) * fx + sz_x
    planes = a.reshape((-1, H, W))
    if out is not None:
        out = out.reshape((planes.shape[0], Ho, Wo))
    if method in ("nearest", "adjoint") and (sz_y, sz_x) == (fy, fx):
        if out is None:
            out = np.empty((planes.shape[0], Ho, Wo), dtype=a.dtype)
        wy, wx = (1.0, 1.0) if method == "nearest" else (1.0 / fy, 1.0 / fx)
        _resample.upsample_box(planes, out, fy, fx, wy, wx, threads)
        return out.reshape(lead + (Ho, Wo))
    ridx, rw = _unpool_taps(H, fy, sz_y, method)
    cidx, cw = _unpool_taps(W, fx, sz_x, method)
    tmp = np.empty((planes.shape[0], Ho, W), dtype=a.dtype)
    _resample.resample_rows(planes, ridx, rw, tmp, threads)
    if out is None:
        out = np.empty((planes.shape[0], Ho, Wo), dtype=a.dtype)
    _resample.resample_cols(tmp, cidx, cw, out, threads)
    return out.reshape(lead + (Ho, Wo))


# --- forward-pass kernels ----------------------------------------------------------------------

def pool(x, method="max", *, size=2, stride=None, pad=0, n_threads=None):
    """Max or average pooling of x (N, C, H, W), MatConvNet ``vl_nnpool`` semantics.

    Output Ho = floor((H + top + bottom - size) / stride) + 1; windows are clipped at the padded
    borders (max ignores padding, average divides by the clipped area).
    """
    if method not in ("max", "avg"):
        raise ValueError("unknown pooling method %r; choose 'max' or 'avg'" % (method,))
    x = float_array("x", x, ndim=4)
    ph, pw = as_pair("size", size, minimum=1)
    sy, sx = (ph, pw) if stride is None else as_pair("stride", stride, minimum=1)
    pt, pb, pl, pr = as_pad("pad", pad)
    threads = resolve_threads(n_threads)
    if max(pt, pb) >= ph or max(pl, pr) >= pw:
        raise ValueError("pooling pad %s must be smaller than the window %s"
                         % ((pt, pb, pl, pr), (ph, pw)))
    N, C, H, W = x.shape
    if x.size == 0:
        raise ValueError("x must be non-empty, got shape %s" % (x.shape,))
    if H + pt + pb < ph or W + pl + pr < pw:
        raise ValueError("input %dx%d (padded %s) is smaller than the pooling window %s"
                         % (H, W, (pt, pb, pl, pr), (ph, pw)))
    out = np.empty((N, C) + window_grid((H, W), (ph, pw), (sy, sx), (pt, pb, pl, pr)),
                   dtype=x.dtype)
    return pool_into(x, out, method, (ph, pw), (sy, sx), (pt, pb, pl, pr), threads)


def window_grid(size, kernel, stride, pad):
    """(rows, cols) of the windows of ``kernel`` at ``stride`` over an image of ``size`` padded
    by (top, bottom, left, right): the output size of a correlation or a pooling."""
    (h, w), (kh, kw), (sy, sx), (pt, pb, pl, pr) = size, kernel, stride, pad
    return (h + pt + pb - kh) // sy + 1, (w + pl + pr - kw) // sx + 1


def _check_out(out, shape, dtype, *inputs):
    """Refuse an ``out`` array of the wrong shape, dtype or layout, or one that shares memory
    with an input (the kernels would read what they already wrote)."""
    if out.shape != tuple(shape) or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError("out must be a C-contiguous %s array of shape %s, got %s %s"
                         % (np.dtype(dtype).name, tuple(shape), out.dtype.name, out.shape))
    if any(np.may_share_memory(out, a) for a in inputs):
        raise ValueError("out must not share memory with the inputs")


def pool_into(x, out, method, size, stride, pad, threads):
    """out = the pooling of x (N, C, H, W), C-contiguous, validated, as :func:`pool` sizes it
    (out (N, C, Ho, Wo) of x's dtype). Returns out."""
    N, C, H, W = x.shape
    _check_out(out, (N, C) + window_grid((H, W), size, stride, pad), x.dtype, x)
    threads = max(1, min(threads, N * C))   # memory-bound: every thread helps
    _maps.pool2d(np.ascontiguousarray(x).reshape(N * C, H, W),
                    out.reshape((N * C,) + out.shape[2:]), size[0], size[1], stride[0], stride[1],
                    pad[0], pad[2], method == "avg", threads)
    return out


def relu(x, *, leak=0.0, n_threads=None):
    """Rectified linear unit: x where x > 0, leak * x elsewhere."""
    x = float_array("x", x)
    leak = float(leak)
    if not np.isfinite(leak):
        raise ValueError("leak must be finite, got %r" % leak)
    return relu_into(x, np.empty(x.shape, dtype=x.dtype), leak, resolve_threads(n_threads))


def relu_into(x, out, leak, threads):
    """out = relu(x) for validated x, out of x's shape and dtype, C-contiguous, either x itself
    (in place) or not sharing its memory. Returns out."""
    if out is not x:
        _check_out(out, x.shape, x.dtype, x)
    elif not x.flags.c_contiguous:
        raise ValueError("relu in place needs a C-contiguous array")
    _maps.relu(np.ascontiguousarray(x).reshape(-1), out.reshape(-1), leak, threads)
    return out


def eq3_sums(R, D, threads):
    """Eq. 3 for responses R and decoded correlations D (N, K, H, W) of one dtype, C-contiguous:
    (per_image (N,) mean squared difference of the per-image rescaled maps, per_filter (N, K)
    sums of squared differences over positions, constant (N, 2) bool: R, D constant)."""
    if R.shape != D.shape or R.dtype != D.dtype or R.ndim != 4:
        raise ValueError("R and D must be (N, K, H, W) arrays of one shape and dtype, got %s %s "
                         "and %s %s" % (R.dtype, R.shape, D.dtype, D.shape))
    R, D = np.ascontiguousarray(R), np.ascontiguousarray(D)
    N, K = R.shape[:2]
    per_image = np.empty(N)
    per_filter = np.empty((N, K))
    constant = np.empty((N, 2), dtype=np.uint8)
    _eq3.eq3_sums(R.reshape(N, -1), D.reshape(N, -1), K, per_image, per_filter, constant,
                      max(1, min(threads, N)))
    return per_image, per_filter, constant.astype(bool)


# --- Winograd substitution ------------------------------------------------------------------
#
# A stride-1 substitution of an r x r kernel is the correlation of the maps, padded by r - 1, with
# the flipped kernel; Winograd's minimal filtering F(m x m, r x r) computes an m x m output tile
# from an a x a input tile (a = m + r - 1) with a*a products instead of m*m*r*r: for 3x3 kernels
# 2.25x fewer with m = 2, 4x fewer with m = 4 (less the tiles' overhang at the borders). A kernel
# of (sy*r) x (sx*r) at stride (sy, sx) splits into sy*sx phases, each a stride-1 substitution of
# an r x r kernel. (For r = 2, as in a 2x2 box unpooling merged with a 3x3 conv, 4x4 at stride 2,
# the transforms cost more than the products saved: measured on VGG-16's layers.)


def _cook_toom(m, r, points):
    """(BT, G, AT) of F(m, r) from the evaluation points ``points`` and infinity, exact
    (fractions): y = AT [(G g) * (BT d)] is the correlation y[o] = sum_u d[o + u] g[u], o < m.

    The transpose of the linear convolution by evaluation and interpolation (Toom-Cook), with
    BT's rows scaled to integers and G's rows scaled back (Lavin & Gray, 2016).
    """
    from fractions import Fraction
    a = m + r - 1
    pts = [Fraction(p) for p in points]
    if len(pts) != a - 1 or len(set(pts)) != a - 1:
        raise ValueError("F(%d, %d) needs %d distinct points" % (m, r, a - 1))

    def vandermonde(n):
        return [[p ** i for i in range(n)] for p in pts] + [[Fraction(0)] * (n - 1) + [Fraction(1)]]
    V = vandermonde(a)
    inv = [row[:] + [Fraction(int(i == j)) for j in range(a)] for i, row in enumerate(V)]
    for c in range(a):   # Gauss-Jordan, exact
        pivot = next(i for i in range(c, a) if inv[i][c] != 0)
        inv[c], inv[pivot] = inv[pivot], inv[c]
        inv[c] = [x / inv[c][c] for x in inv[c]]
        for i in range(a):
            if i != c and inv[i][c] != 0:
                f = inv[i][c]
                inv[i] = [x - f * y for x, y in zip(inv[i], inv[c])]
    BT = [[inv[j][a + i] for j in range(a)] for i in range(a)]
    G = vandermonde(r)
    for i in range(a):
        scale = math.lcm(*(x.denominator for x in BT[i]))
        BT[i] = [x * scale for x in BT[i]]
        G[i] = [x / scale for x in G[i]]
    AT = [[row[i] for row in vandermonde(m)] for i in range(m)]
    return BT, G, AT


#: Evaluation points of the F(m, r) in use: 0, +-1 (+-2) and infinity keep the transforms' rounding
#: errors small (Lavin & Gray, 2016).
WINOGRAD_POINTS = {(2, 3): (0, 1, -1), (4, 3): (0, 1, -1, 2, -2)}
#: (BT, G, AT) as float64 arrays by (m, r). The kernels hold a tile's rows in arrays of 8 and
#: a transformed kernel in 64 values: m + r - 1 <= 8 and (m + r - 1) * r <= 64.
WINOGRAD_TRANSFORMS = {key: tuple(np.array(t, dtype=np.float64) for t in _cook_toom(*key, pts))
                       for key, pts in WINOGRAD_POINTS.items()}
assert all(m + r - 1 <= 8 and (m + r - 1) * r <= 64 for m, r in WINOGRAD_TRANSFORMS)
#: Output tile m by (itemsize, r): in float32 the tiles whose points are 0, +-1 (rounding errors
#: within about twice those of the direct sums); in float64 4x4 tiles (errors about 1e-14 of the
#: output's range; in float32 they would reach 1e-5).
WINOGRAD_TILE = {(4, 3): 2, (8, 3): 4}
#: Winograd replaces the other forms when it does at most this fraction of their multiply-adds
#: (by itemsize) and the maps and the weights have at least WINOGRAD_MIN_CHANNELS channels: below
#: that, its transforms cost more than the products it saves (measured on VGG-16's layers).
WINOGRAD_MAX_WORK = {4: 0.6, 8: 0.35}
WINOGRAD_MIN_CHANNELS = 64
#: Weight of a Winograd product against a FLOP of the other forms when decode weighs the chain
#: against the layer recursion: the transforms run at memory speed and the GEMMs are smaller
#: (decoding VGG-16's conv5_3 in float32, both take the same time for about 52 filters; with
#: this weight decode changes to the recursion at 57, with the products counted once at 85).
WINOGRAD_COST = 2.0
#: Tasks a Winograd substitution aims at, at least, when its tiles allow it.
WINOGRAD_MIN_TASKS = 4
#: Tiles per task (the GEMMs' rows) aimed at, channels per GEMM at most, and the per-thread
#: work buffer (transformed maps and products) that bounds the tiles per task.
WINOGRAD_TILES = 256
WINOGRAD_CHANNELS = 512
WINOGRAD_SCRATCH_BYTES = 64 * 2**20


def winograd_tile(kernel, stride, itemsize):
    """(m, r): the output tile and phase kernel of a Winograd substitution of this kernel at this
    stride in this itemsize, or None when it has no Winograd form (the kernel must be r times
    the stride in both directions, r in WINOGRAD_TILE)."""
    (kh, kw), (sy, sx) = kernel, stride
    r = kh // sy
    if kh != sy * r or kw != sx * r or (itemsize, r) not in WINOGRAD_TILE:
        return None
    return WINOGRAD_TILE[(itemsize, r)], r


def _winograd_tiles(H, W, m, r):
    return _ceil_div(H + r - 1, m) * _ceil_div(W + r - 1, m)


def winograd_suits(J, H, W, C, kh, kw, sy, sx, itemsize):
    """Whether a Winograd substitution suits these shapes: enough channels, and its
    multiply-adds, with the tiles overhanging the output, at most WINOGRAD_MAX_WORK of the
    direct ones."""
    mr = winograd_tile((kh, kw), (sy, sx), itemsize)
    if mr is None or min(J, C) < WINOGRAD_MIN_CHANNELS:
        return False
    (m, r), a = mr, mr[0] + mr[1] - 1
    products = sy * sx * _winograd_tiles(H, W, m, r) * a * a
    return products <= WINOGRAD_MAX_WORK[itemsize] * H * W * kh * kw


def winograd_weights(weights, m, stride=(1, 1), threads=1):
    """Weights (J, C, sy*r, sx*r) as u (sy*sx, a*a, C, J), u[py*sx + px, p, c, j] = (G g G^T)[p]
    for the flipped kernel g of phase (py, px) (taps (py + sy*i, px + sx*k)) of weights[j, c]:
    the layout of substitute_winograd (summed in double, rounded once)."""
    J, C, kh, kw = weights.shape
    sy, sx = stride
    r = kh // sy
    if (kh, kw) != (sy * r, sx * r) or (m, r) not in WINOGRAD_TRANSFORMS:
        raise ValueError("no Winograd form F(%d, %d) for a %dx%d kernel at stride %s"
                         % (m, r, kh, kw, (sy, sx)))
    G = WINOGRAD_TRANSFORMS[(m, r)][1]
    u = np.empty((sy * sx, G.shape[0] ** 2, C, J), dtype=weights.dtype)
    for py in range(sy):
        for px in range(sx):
            phase = np.ascontiguousarray(weights[:, :, py::sy, px::sx])
            _winograd.winograd_weights(phase, G, u[py * sx + px],
                                      threads if weights.size >= 1 << 16 else 1)
    return u


def winograd_blocks(n_tiles, J, C, a, itemsize):
    """(tb, cb): tiles per task and channels per GEMM of substitute_winograd, from the shapes
    alone: about WINOGRAD_TILES tiles (fewer when the work buffer would pass
    WINOGRAD_SCRATCH_BYTES, or to make WINOGRAD_MIN_TASKS tasks), at least 16."""
    cb = _balanced(C, WINOGRAD_CHANNELS)
    room = WINOGRAD_SCRATCH_BYTES // (a * a * (J + cb) * itemsize)
    tb = max(16, min(WINOGRAD_TILES, room, _ceil_div(n_tiles, WINOGRAD_MIN_TASKS)))
    return _balanced(n_tiles, tb), cb


def substitute_winograd(maps, u, m, stride, out, Po, off_out, threads):
    """Substitution at ``stride`` by Winograd's F(m x m, r x r), phase by phase, of weights u
    (sy*sx, a*a, C, J) (see :func:`winograd_weights`) at every pixel of the PaddedMaps ``maps``
    (any pitch and offset).

    Writes all of out (F, C, S_out): output pixel (y, x) of the (sy*(H + r - 1), sx*(W + r - 1))
    planes at out[f, c, off_out + y*Po + x], zeros elsewhere. Returns the output as PaddedMaps.
    """
    buf, H, W, P, off = maps
    F, J = buf.shape[:2]
    sy, sx = stride
    C = u.shape[2]
    a = int(round(u.shape[1] ** 0.5))
    r = a - m + 1
    BT, _, AT = WINOGRAD_TRANSFORMS[(m, r)]
    Ho, Wo = sy * (H + r - 1), sx * (W + r - 1)
    n_tiles = F * _winograd_tiles(H, W, m, r)
    tb, cb = winograd_blocks(n_tiles, J, C, a, buf.dtype.itemsize)
    threads = _team(threads, _ceil_div(n_tiles, tb), 2.0 * sy * sx * n_tiles * a * a * J * C)
    ntx = _ceil_div(W + r - 1, m)
    work = scratch("winograd", buf.dtype, threads,
                   a * a * tb * (J + cb) + (m * a + 1) * ntx + a * (m * ntx + a))
    with blas_single_threaded():
        _winograd.substitute_winograd(buf, u, out, H, W, P, off, Ho, Wo, Po, off_out, sy, sx,
                                     BT.astype(buf.dtype), AT.astype(buf.dtype), tb, cb, work,
                                     threads)
    return PaddedMaps(out, Ho, Wo, Po, off_out)
