"""Substitution (a transposed convolution) in three forms, chosen from the shapes alone:
Winograd (see :mod:`.winograd`), phase-wise shifted GEMMs over padded planes, or GEMM + col2im.
All agree to rounding; each is bitwise the same for any thread count."""

import numpy as np

from . import _substitution, blas, tuning, workspace
from .grid import balanced, ceil_div, team
from .layout import PaddedMaps, dense, pad_maps, phased_layout
from .maps import transpose_last2
from .winograd import (substitute_winograd, winograd_flops, winograd_suits, winograd_tile,
                       winograd_weights)


def substitution_path(J, H, W, C, kh, kw, sy, sx, itemsize):
    """The form a substitution of weights (J, C, kh, kw) at stride (sy, sx) into maps (J, H, W)
    takes, from the shapes alone: "winograd" (3x3 kernels at stride 1, 6x6 at stride 2 and the
    like, maps large enough, see :func:`.winograd.winograd_suits`), "phased" (shifted GEMMs over
    padded planes, see :func:`phased_suits`) or "col2im" (GEMM + col2im)."""
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
        return winograd_flops(F, J, H, W, C, kh, kw, sy, sx, itemsize)
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
    maps = dense(df) if layout is None else pad_maps(df, *layout, threads)
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


# --- GEMM + col2im ------------------------------------------------------------------------------

def substitute_blocks(F, J, H, W, C, kh, kw):
    """(layout, fb, cb, rb) for :func:`substitute_col2im`, from the shapes alone.

    layout "maps" runs the GEMM rows over the maps' pixels (maps larger than the weights),
    "weights" over the weights' entries. fb maps x cb channels make one task (disjoint outputs);
    rb rows (of W or kw values) make one GEMM. Never depends on the thread count.
    """
    if H * W >= kh * kw:
        cb = balanced(C, ceil_div(tuning.GEMM_WIDTH, kh * kw))
        rb = max(1, tuning.GEMM_BLOCK_ELEMENTS // (W * cb * kh * kw))
        fb = max(1, min(F, ceil_div(rb, H)))
        ncb = ceil_div(C, cb)
        fb = max(1, min(fb, F * ncb // 8))  # enough tasks to share out when there are many maps
        rb = min(rb, fb * H)
        return "maps", fb, cb, rb
    # A task is one channel of the (large) weights for fb maps: wide GEMMs, yet at least 8
    # tasks when the maps and channels allow it.
    fb = balanced(F, min(ceil_div(tuning.GEMM_WIDTH, H * W), ceil_div(F * C, 8)))
    rb = max(1, min(kh, 2 * tuning.GEMM_BLOCK_ELEMENTS // (kw * fb * H * W)))
    return "weights", fb, 1, rb


def substitute_col2im(df, weights, out, sy, sx, threads, zero=False):
    """:func:`substitute_into` by GEMM + col2im (the layout from :func:`substitute_blocks`)."""
    F, J, H, W = df.shape
    _, C, kh, kw = weights.shape
    layout, fb, cb, rb = substitute_blocks(F, J, H, W, C, kh, kw)
    w2 = weights.reshape(J, C * kh * kw)
    flops = 2.0 * F * J * H * W * C * kh * kw
    threads = team(threads, ceil_div(F, fb) * ceil_div(C, cb), flops)
    ws = workspace.current()
    if layout == "maps":
        # One map per task: the GEMM reads the maps in place. Several: channels last, so that
        # a block of GEMM rows spanning maps is one contiguous piece.
        planar = fb == 1
        dl = df.reshape(F, J, H * W) if planar else transpose_last2(df.reshape(F, J, H * W),
                                                                     threads, "maps")
        work = ws.rows("cols", threads, rb * W * min(cb, C) * kh * kw, out.dtype)
        with blas.single_threaded():
            _substitution.substitute_gemm_maps(dl, w2, out, H, W, kh, kw, sy, sx, fb, cb, rb,
                                               work, threads, planar, zero)
        return out
    if zero:
        out.fill(0)
    # Channels last, so that every block of GEMM columns is one contiguous piece.
    dl = transpose_last2(df.reshape(F, J, H * W), threads, "maps")
    wt = transpose_last2(w2[None], threads, "weights")[0]
    work = ws.rows("cols", threads, rb * kw * min(fb, F) * H * W, out.dtype)
    with blas.single_threaded():
        _substitution.substitute_gemm_weights(dl, wt, out, H, W, kh, kw, sy, sx, fb, cb, rb,
                                              work, threads)
    return out


# --- phase-wise shifted GEMMs over padded planes --------------------------------------------

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
    na, nb = ceil_div(kh, sy), ceil_div(kw, sx)
    padded = np.zeros((J, C, na * sy, nb * sx), dtype=weights.dtype)
    padded[:, :, :kh, :kw] = weights
    taps = padded.reshape(J, C, na, sy, nb, sx)            # [j, c, a, py, b, px]
    return np.ascontiguousarray(taps.transpose(2, 4, 1, 3, 5, 0)).reshape(na * nb, C, sy * sx, J)


def phased_blocks(F, Hp, P, C, itemsize, phases=1):
    """(rb, cb): phase rows and channels per task of substitute_phased, from the shapes alone.

    A task's GEMMs run over about ``tuning.PHASED_GEMM_ROWS[itemsize]`` rows (rb rows of pitch
    P) and at most ``tuning.PHASED_MAX_CHANNELS`` columns (cb channels of each of the
    ``phases`` phases); rows are split further when there are too few tasks to share out.
    """
    cb = balanced(C, max(1, tuning.PHASED_MAX_CHANNELS // phases))
    rb = max(1, min(Hp, tuning.PHASED_GEMM_ROWS[itemsize] // P))
    per_block = F * ceil_div(C, cb)                 # tasks per block of rows
    if per_block * ceil_div(Hp, rb) < tuning.PHASED_MIN_TASKS:
        rb = min(rb, balanced(Hp, max(1, Hp * per_block // tuning.PHASED_MIN_TASKS)))
    return rb, cb


def substitute_phased(maps, wp, kernel, out, Po, off_out, sy, sx, threads):
    """Substitution of weights wp (na*nb, C, sy*sx, J) (see :func:`phased_weights`), kernel
    (kh, kw), at stride (sy, sx), at every pixel of the PaddedMaps ``maps`` (pitch and offset at
    least :func:`.layout.phased_layout`).

    Writes all of out (F, C, S_out): output pixel (y, x) of the ((H-1)*sy + kh, (W-1)*sx + kw)
    planes at out[f, c, off_out + y*Po + x], zeros elsewhere (Po = Wo and off_out = 0 give dense
    planes). Returns the output as PaddedMaps.
    """
    buf, H, W, P, off = maps
    kh, kw = kernel
    F, J = buf.shape[:2]
    C = wp.shape[1]
    Ho, Wo = (H - 1) * sy + kh, (W - 1) * sx + kw
    rb, cb = phased_blocks(F, ceil_div(Ho, sy), P, C, buf.dtype.itemsize, sy * sx)
    threads = team(threads, F * ceil_div(ceil_div(Ho, sy), rb) * ceil_div(C, cb),
                   2.0 * F * J * H * P * C * kh * kw)
    work = workspace.current().rows("phased", threads, sy * sx * cb * rb * P, buf.dtype)
    with blas.single_threaded():
        _substitution.substitute_phased(buf, wp, out, H, W, P, off, Ho, Wo, Po, off_out, kh, kw,
                                        sy, sx, rb, cb, work, threads)
    return PaddedMaps(out, Ho, Wo, Po, off_out)
