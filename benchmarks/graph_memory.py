"""Peak resident memory of decode_all(out=directory) on MobileNetV2 (random weights, 224x224),
each case in a child process (resource.getrusage's ru_maxrss):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/graph_memory.py DIR [LIMIT]

``first``: decode_all(out=DIR/first, layers=the first conv layers) by the reverse sweep, layer by
layer in chunks of filters within LIMIT bytes (default 2e9); ``last``: the first chunk of the
last conv layer (1280 filters of 3x491x491, the largest working maps of the network) exactly
as decode_all(out=) computes and writes it. Each layer's file is written chunk by chunk and
nothing is kept between chunks, so the peak of the whole network's run is the largest chunk's:
these two bound it from the smallest layers to the largest. The directory is deleted after.
"""

import json
import os
import resource
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def child(case, directory, limit, first):
    import numpy as np

    sys.path.insert(0, HERE)
    import fastdecode as fd
    import graph_models
    from fastdecode._engine import graph
    net = graph_models.mobilenet_v2()
    t0 = time.perf_counter()
    if case == "first":
        names = net.conv_layers[:first]
        out = fd.decode_all(net, layers=names, out=os.path.join(directory, "first"),
                            memory_limit=limit, n_threads=2)
        written = sum(a.nbytes for a in out.values())
        filters = sum(a.shape[0] for a in out.values())
        del out
    else:
        name = net.conv_layers[-1]
        i = net.index(name)
        per_filter = int(np.prod(net.decoded_shape(i))) * net.dtype.itemsize
        work = graph.per_filter_elements(net, i) * net.dtype.itemsize
        chunk = max(1, min(net.channels(i), int(limit // (per_filter + work))))
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "last.raw"), "wb") as f:
            part = fd.decode(net, name, filters=np.arange(chunk), memory_limit=limit,
                             n_threads=2)
            f.write(memoryview(np.ascontiguousarray(part)).cast("B"))
        written, filters = part.nbytes, chunk
        names = [name]
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"case": case, "layers": names[-1], "n_layers": len(names),
                      "filters": int(filters), "written_bytes": int(written),
                      "seconds": seconds, "peak_rss_bytes": rss, "limit": limit}))


def main():
    directory = sys.argv[1]
    limit = float(sys.argv[2]) if len(sys.argv) > 2 else 2e9
    first = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    try:
        for case in ("first", "last"):
            r = subprocess.run([sys.executable, __file__, "--child", case, directory,
                                str(limit), str(first)], capture_output=True, text=True)
            sys.stdout.write(r.stdout)
            if r.returncode:
                sys.stderr.write(r.stderr)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
