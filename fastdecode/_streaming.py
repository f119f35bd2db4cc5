"""The decoded filters of chosen layers, a chunk of filters at a time, bottom to top, never
the whole network at once (the atlas, and ``decode_all(out=...)`` of graph networks).

With a box unpooling the layers come from the graph layer recursion (each tensor's decoded
filters from those of the tensors it reads, one substitution at image scale); each tensor is
freed once the last layer reading it has run, and tensors larger than ``SPILL_BYTES`` live in
memory-mapped temporary files (deleted when unmapped), so the memory held is bounded by a few
tensors' worth of pages the system may write out. Other unpoolings decode each layer's filters
in chunks with :func:`fastdecode.decode`.

Each chunk goes to ``on_chunk(index, start, filters)`` with filters (k, C0, h, w) the layer's
decoded filters ``start .. start + k`` in :func:`fastdecode.decode`'s full shape; the array is
reused afterwards, so the callback keeps what it needs, not the array.
"""

import os
import shutil
import tempfile

import numpy as np

from ._io import fresh_name

#: Bytes of decoded filters handed to the callback at once.
CHUNK_BYTES = 64 * 2**20
#: Tensors of the recursion larger than this live in memory-mapped temporary files.
SPILL_BYTES = 256 * 2**20


def chunk_size(net, i, chunk_bytes=CHUNK_BYTES):
    per = int(np.prod(net.decoded_shape(i))) * net.dtype.itemsize
    return max(1, int(chunk_bytes // per))


def stream(net, indices, unpool, threads, on_chunk, *, spill_dir=None,
           chunk_bytes=CHUNK_BYTES, spill_bytes=None):
    """Call ``on_chunk`` for every chunk of decoded filters of the layers ``indices`` (sorted
    decodable layer indices), layer by layer, bottom to top; tensors of the recursion larger
    than ``spill_bytes`` (default :data:`SPILL_BYTES`) in memory-mapped files in
    ``spill_dir``."""
    spill = SPILL_BYTES if spill_bytes is None else spill_bytes
    from .decoding import decode
    from .ops import unpool_method
    method = unpool_method(unpool)
    if not method.box:
        for i in indices:
            K = net.channels(i)
            step = chunk_size(net, i, chunk_bytes)
            for start in range(0, K, step):
                sel = np.arange(start, min(K, start + step))
                on_chunk(i, start, decode(net, i, filters=sel, unpool=unpool,
                                          n_threads=threads))
        return
    from ._engine import graph, graph_recursion
    for i in indices:
        graph.check_decodable(net, i)
    # named before it is made, so that an interrupt at any moment leaves nothing behind
    tmp = fresh_name(spill_dir if spill_dir is not None else tempfile.gettempdir(),
                     ".fastdecode-decoded-")

    def alloc(shape, dtype):
        if int(np.prod(shape)) * np.dtype(dtype).itemsize <= spill:
            return np.empty(shape, dtype=dtype)
        path = fresh_name(tmp, "", ".bin")
        try:
            return np.memmap(path, dtype=dtype, mode="w+", shape=shape)
        finally:
            if os.path.exists(path):
                os.remove(path)  # the mapping keeps the pages until the array is freed

    def emit(i, D, off):
        _, P, _ = net._geometry(i)
        shape = (net.channels(i),) + net.decoded_shape(i)
        y, x = off[0] + P[0], off[1] + P[2]
        whole = (y, x) == (0, 0) and D.shape == shape
        step = chunk_size(net, i, chunk_bytes)
        buf = None
        for start in range(0, shape[0], step):
            stop = min(shape[0], start + step)
            if whole:
                on_chunk(i, start, np.asarray(D[start:stop]))
                continue
            if buf is None or len(buf) != stop - start:
                buf = np.zeros((stop - start,) + shape[1:], dtype=net.dtype)
            buf[:, :, y:y + D.shape[2], x:x + D.shape[3]] = D[start:stop]
            on_chunk(i, start, buf)

    try:
        os.mkdir(tmp, 0o700)
        graph_recursion.walk(net, set(indices), method, threads, emit=emit, alloc=alloc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
