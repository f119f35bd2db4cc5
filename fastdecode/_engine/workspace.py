"""Reused work arrays: one mechanism for every buffer the engine and its callers reuse.

A :class:`Workspace` hands out uninitialised C-contiguous arrays by key, in the same memory for
the same key whenever they fit, so that a kernel writes where it wrote before instead of into
fresh pages. Three uses:

- the kernels' per-thread scratch and temporary copies take their arrays from :func:`current`,
  the calling Python thread's workspace: outside :func:`reuse` it keeps arrays up to
  ``tuning.SCRATCH_KEEP_BYTES`` between calls; inside, it keeps every array until the
  outermost :func:`reuse` exits (a decoding makes the same large copies at every step);
- a decoding chain's steps write in turn into two alternating arrays (:meth:`Workspace.alternate`);
- a pass over a dataset keeps its own :class:`Workspace` for the arrays of its batches.

Arrays are allocated with numpy, so that a failed allocation raises MemoryError before
compiled code runs.
"""

import contextlib
import threading

import numpy as np

from . import tuning


class Workspace:
    """Arrays reused by key (and dtype).

    keep_bytes: arrays larger than this are handed out but not kept (None: keep every array).
    """

    def __init__(self, keep_bytes=None):
        self.keep_bytes = keep_bytes
        self._arrays = {}
        self._turn = {}

    def __len__(self):
        return len(self._arrays)

    def holds(self, key, arr):
        """Whether an array kept under ``key`` (of any dtype) may share memory with ``arr``."""
        return any(k[0] == key and np.may_share_memory(buf, arr)
                   for k, buf in self._arrays.items())

    def get(self, key, shape, dtype, *, reserve=0):
        """An uninitialised C-contiguous array of ``shape`` and ``dtype``, in the memory kept
        under ``key`` when it fits (at least ``reserve`` elements are allocated when it does
        not, so that later, larger requests fit too)."""
        dtype = np.dtype(dtype)
        n = 1
        for s in shape:
            n *= int(s)
        key = (key, dtype.str)
        buf = self._arrays.get(key)
        if buf is None or buf.size < n:
            self._arrays.pop(key, None)
            buf = np.empty(max(n, reserve, 1), dtype=dtype)
            if self.keep_bytes is None or buf.nbytes <= self.keep_bytes:
                self._arrays[key] = buf
        return buf[:n].reshape(shape)

    def rows(self, key, threads, size, dtype):
        """A (threads, size) work array: one row per thread of a kernel's team."""
        return self.get(key, (threads, max(size, 1)), dtype)

    def alternate(self, key, shape, dtype, *, reserve=0):
        """:meth:`get` from two arrays under ``key`` in turn: an array is never the one handed
        out just before it (a step's output never overlaps the input it is computed from)."""
        turn = self._turn.get(key, 0)
        self._turn[key] = 1 - turn
        return self.get((key, turn), shape, dtype, reserve=reserve)

    def clear(self):
        """Release every array."""
        self._arrays.clear()
        self._turn.clear()


_local = threading.local()


def current():
    """The calling Python thread's workspace: the one of the outermost :func:`reuse` if any,
    else one that keeps arrays up to ``tuning.SCRATCH_KEEP_BYTES``."""
    active = getattr(_local, "active", None)
    if active is not None:
        return active
    default = getattr(_local, "default", None)
    if default is None or default.keep_bytes != tuning.SCRATCH_KEEP_BYTES:
        default = _local.default = Workspace(keep_bytes=tuning.SCRATCH_KEEP_BYTES)
    return default


@contextlib.contextmanager
def reuse():
    """Within this context :func:`current` keeps every array it hands out, whatever its size;
    they are released when the outermost context exits. Yields that workspace."""
    outermost = getattr(_local, "active", None) is None
    if outermost:
        _local.active = Workspace()
    try:
        yield _local.active
    finally:
        if outermost:
            _local.active.clear()
            _local.active = None
