"""``decode_all(lazy=True)``: decoded filters as dask arrays, one task per chunk of filters.

Each chunk is ``decode(net, layer, filters=chunk)``, so the chunks of a layer are independent
and can run on any worker of a cluster; the network goes into the task graph once (one key,
sent to each worker once). Dask is imported only here.
"""

import numpy as np

from ._streaming import CHUNK_BYTES, chunk_size
from ._validation import as_int


def lazy_decode(net, indices, unpool, n_threads, memory_limit, chunks):
    """{layer name: dask array (K, C0, h, w) chunked over filters} for the layer ``indices``."""
    from ._dask import require, task_threads
    dask, da = require("decode_all(lazy=True)")
    if chunks is not None:
        chunks = as_int("chunks", chunks, minimum=1)
    threads = task_threads(n_threads)
    shared = dask.delayed(net, traverse=False)
    out = {}
    for i in indices:
        K, shape = net.channels(i), net.decoded_shape(i)
        step = chunks if chunks is not None else chunk_size(net, i, CHUNK_BYTES)
        blocks = []
        for start in range(0, K, step):
            stop = min(K, start + step)
            task = dask.delayed(_decode_chunk, pure=False)(shared, i, start, stop, unpool.name,
                                                          threads, memory_limit)
            blocks.append(da.from_delayed(task, (stop - start,) + shape, dtype=net.dtype))
        out[net.layers[i].name] = da.concatenate(blocks, axis=0)
    return out


def _decode_chunk(net, i, start, stop, unpool, threads, memory_limit):
    """Filters start..stop-1 of layer i, decoded (one task)."""
    from .decoding import decode
    return decode(net, i, filters=np.arange(start, stop), unpool=unpool, n_threads=threads,
                  memory_limit=memory_limit)
