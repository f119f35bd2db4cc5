"""The Eq. 3 pass of LeNet's layer5 in-process, on Dask's threaded scheduler and on a local
cluster of worker processes; and a million lazily generated images in bounded memory.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/dask_passes.py \\
        [--sizes 10000 100000] [--workers 2] [--million [--images 1000000]]

The images are MNIST's test set (``../shared/data/mnist``, or ``--data DIR``) repeated to each
size and written once, uncompressed, to a temporary IDX file. The three ways read the same file:

- in-process: ``load_idx`` into memory, ``models.preprocess``, ``reconstruction_error`` (all
  threads, the default batches);
- dask threads: ``load_idx(lazy=True)``, the same preprocessing per chunk, the threaded
  scheduler with one worker thread per core and one kernel thread per task;
- local cluster: the same graph on ``--workers`` processes of one thread each (127.0.0.1).

Each is run once (the machine is shared; the numbers are single measurements) and printed as
seconds, images per second and the ratio to the in-process pass. Loading and preprocessing
are inside the Dask timings (they happen per chunk) and outside the in-process one.

``--million`` runs ``reconstruction_error`` over ``--images`` images generated chunk by chunk
(``dask.array.random``, float32, 10,000 per chunk) on the threaded scheduler in a child
process, and reports the child's peak resident memory beside that of the same run over 2% of
the images: bounded memory means the two peaks are alike, while the images alone would take
N x 784 x 4 bytes in memory.
"""

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

LAYER = "layer5"
CHUNK = 2500


def write_idx(path, images):
    n, h, w = images.shape
    with open(path, "wb") as f:
        f.write(np.array([0x0803, n, h, w], ">u4").tobytes())
        f.write(np.ascontiguousarray(images, np.uint8).tobytes())


def mnist_images(data):
    with gzip.open(os.path.join(data, "t10k-images-idx3-ubyte.gz")) as f:
        raw = f.read()
    return np.frombuffer(raw[16:], np.uint8).reshape(-1, 28, 28)


def in_process(net, path):
    import fastdecode as fd
    from fastdecode import datasets, models
    x = models.preprocess(net, datasets.load_idx(path).images)
    t0 = time.perf_counter()
    r = fd.reconstruction_error(net, x, LAYER, progress=False)
    return time.perf_counter() - t0, r


def lazy_images(net, path):
    from fastdecode import datasets, models
    raw = datasets.load_idx(path, lazy=True, chunks=CHUNK).images
    return raw.map_blocks(lambda b: models.preprocess(net, b), dtype=net.dtype, new_axis=1,
                          chunks=(raw.chunks[0], (1,), (28,), (28,)))


def on_dask(net, path):
    import fastdecode as fd
    x = lazy_images(net, path)
    t0 = time.perf_counter()
    r = fd.reconstruction_error(net, x, LAYER)
    return time.perf_counter() - t0, r


def compare(args):
    import dask
    from distributed import Client, LocalCluster
    from fastdecode import models
    net = models.load("lenet-mnist")
    base = mnist_images(args.data)
    threads = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None,
                               scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
        try:
            for n in args.sizes:
                path = os.path.join(tmp, "images-%d" % n)
                write_idx(path, np.resize(base, (n,) + base.shape[1:]))
                t_mem, r_mem = in_process(net, path)
                with dask.config.set(scheduler="threads", num_workers=threads):
                    t_thr, r_thr = on_dask(net, path)
                with Client(cluster):
                    t_clu, r_clu = on_dask(net, path)
                for name, t, r in (("in-process", t_mem, r_mem),
                                   ("dask threads (%d)" % threads, t_thr, r_thr),
                                   ("local cluster (%d processes)" % args.workers, t_clu,
                                    r_clu)):
                    rows.append({"images": n, "way": name, "seconds": t, "images/s": n / t,
                                 "ratio": t / t_mem, "mean": r.mean,
                                 "max |diff| per image": float(np.abs(
                                     r.per_image - r_mem.per_image).max())})
                    print("%7d  %-28s %7.2f s  %8.0f images/s  x%.2f  (Eq. 3 mean %.6f, "
                          "max |diff| per image %.1e)" % (n, name, t, n / t, t / t_mem, r.mean,
                                                          rows[-1]["max |diff| per image"]),
                          flush=True)
        finally:
            cluster.close()
    return rows


CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, %(root)r)
import dask, dask.array as da, numpy as np
import fastdecode as fd
from fastdecode import models
net = models.load("lenet-mnist")
n = %(n)d
rng = da.random.RandomState(0)
x = (rng.standard_normal((n, 1, 28, 28), chunks=(10000, 1, 28, 28)) * 80).astype(np.float32)
t0 = time.perf_counter()
with dask.config.set(scheduler="threads", num_workers=%(threads)d):
    r = fd.reconstruction_error(net, x, %(layer)r)
t = time.perf_counter() - t0
print(json.dumps({"images": n, "seconds": t, "mean": r.mean, "std": r.std,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def million(args):
    out = []
    for n in (max(10000, args.images // 50), args.images):
        code = CHILD % {"root": ROOT, "n": n, "threads": os.cpu_count() or 1, "layer": LAYER}
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True)
        r = json.loads(p.stdout.strip().splitlines()[-1])
        r["images_in_memory_mib"] = n * 784 * 4 / 2**20
        out.append(r)
        print("%8d images: %7.1f s, %6.0f images/s, peak RSS %6.0f MiB (the images alone "
              "would take %6.0f MiB); Eq. 3 mean %.6f" % (
                  n, r["seconds"], n / r["seconds"], r["peak_rss_mib"],
                  r["images_in_memory_mib"], r["mean"]), flush=True)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.path.join(os.path.dirname(ROOT), "shared", "data",
                                                   "mnist"))
    p.add_argument("--sizes", type=int, nargs="*", default=[10000, 100000])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--million", action="store_true")
    p.add_argument("--images", type=int, default=1000000)
    p.add_argument("--json", help="also write the measurements to this file")
    args = p.parse_args()
    print("python %s, %d cores, load average %s" % (sys.version.split()[0], os.cpu_count(),
                                                     " ".join("%.1f" % v for v in
                                                              os.getloadavg())), flush=True)
    results = {}
    if args.sizes:
        results["compare"] = compare(args)
    if args.million:
        results["million"] = million(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
