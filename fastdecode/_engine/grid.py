"""Shapes and task grids: output sizes of windowed operations, balanced blocks, thread teams."""

from . import tuning


def ceil_div(a, b):
    """a / b rounded up, for non-negative integers."""
    return -(-a // b)


def balanced(n, block):
    """A block size near ``block`` (at most) that cuts n into equal blocks: 64 by 57 -> 32."""
    block = max(1, min(n, block))
    return ceil_div(n, ceil_div(n, block))


def team(threads, tasks, flops):
    """Threads worth starting for ``tasks`` independent tasks of ``flops`` in total.

    Results do not depend on it (the tasks are fixed by the shapes), only the speed does.
    """
    if flops < tuning.PARALLEL_MIN_FLOPS:
        return 1
    return max(1, min(threads, tasks))


def copy_team(threads, size):
    """Threads for a copy or transform of ``size`` elements (one below
    ``tuning.PARALLEL_COPY_ELEMENTS``)."""
    return threads if size >= tuning.PARALLEL_COPY_ELEMENTS else 1


def window_grid(size, kernel, stride, pad):
    """(rows, cols) of the windows of ``kernel`` at ``stride`` over an image of ``size`` padded
    by (top, bottom, left, right): the output size of a correlation or a pooling."""
    (h, w), (kh, kw), (sy, sx), (pt, pb, pl, pr) = size, kernel, stride, pad
    return (h + pt + pb - kh) // sy + 1, (w + pl + pr - kw) // sx + 1


def ceil_mode_pad(kernel, stride, pad):
    """The padding (top, bottom, left, right) whose floor-mode :func:`window_grid` is the
    ceil-mode grid of PyTorch's pooling over ``pad`` (each side smaller than the window).

    PyTorch counts ``ceil((H + pt + pb - k) / s) + 1`` windows, less the last one when it would
    start at or past ``H + pt`` (inside the bottom padding). Both bounds are floors of
    ``(H + pt + e - k) / s`` (e = pb + s - 1 and e = k - 1), so their minimum is the floor grid
    of a bottom pad ``min(pb + s - 1, k - 1)``, for every H; likewise on the right.
    """
    (kh, kw), (sy, sx), (pt, pb, pl, pr) = kernel, stride, pad
    return pt, min(pb + sy - 1, kh - 1), pl, min(pr + sx - 1, kw - 1)
