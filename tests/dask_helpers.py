"""Helpers of the tests of passes over dask arrays (import after importorskip("dask"))."""

import dask
import dask.array as da


def exploding(shape, dtype):
    """A dask array whose only chunk raises when computed: any task run shows."""
    def boom():
        raise RuntimeError("a task ran")
    return da.from_delayed(dask.delayed(boom)(), shape=shape, dtype=dtype)
