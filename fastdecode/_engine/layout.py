"""Padded planes: the layout in which substitutions read and write maps without copies.

Maps (F, C, H, W) stored as padded planes buf (F, C, S): pixel (y, x) at buf[f, c, off + y*P + x]
and zeros everywhere else. A phase-wise substitution reads them with whole rows per GEMM (the
zeros catch the rows' wrap-around) and both it and a Winograd substitution can write their result
straight into the padded planes that the next substitution reads: a chain of substitutions then
makes no copies between steps.
"""

from collections import namedtuple

from . import _maps, workspace
from .grid import ceil_div, copy_team

PaddedMaps = namedtuple("PaddedMaps", ["buf", "H", "W", "P", "off"])
PaddedMaps.__doc__ = """Maps (F, C, H, W) as padded planes buf (F, C, S): pixel (y, x) at
buf[f, c, off + y*P + x], zero elsewhere; dense when P == W and off == 0."""


def dense(maps):
    """Dense maps (F, C, H, W) as PaddedMaps without a copy."""
    F, C, H, W = maps.shape
    return PaddedMaps(maps.reshape(F, C, H * W), H, W, W, 0)


def phased_layout(W, kw, sx):
    """(P, off): least row pitch and leading zeros of padded maps of width W that a substitution
    of kernel width kw at column stride sx reads: the row wrap-around must land on zeros."""
    taps = ceil_div(kw, sx)
    return W + taps - 1, taps - 1


def pad_maps(df, P, off, threads, out=None):
    """Maps df (F, J, H, W), C-contiguous, as PaddedMaps of pitch P and offset off.

    out: optional C-contiguous array of at least F*J*(off + H*P) elements of df's dtype to use;
    an array of the current workspace otherwise.
    """
    F, J, H, W = df.shape
    S = off + H * P
    buf = (workspace.current().get("padded", (F, J, S), df.dtype) if out is None
           else out.reshape(-1)[:F * J * S].reshape(F, J, S))
    _maps.pad_planes(df.reshape(F * J, H, W), buf.reshape(F * J, S), P, off,
                     copy_team(threads, buf.size))
    return PaddedMaps(buf, H, W, P, off)
