"""Time the atlas of LeNet (MNIST) over the 10,000 MNIST test images: in process, on Dask's
threaded scheduler and on a 2-process local cluster (127.0.0.1), chunks of 2,500 images.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/atlas_dask.py [MNIST_DIR]

MNIST_DIR defaults to ../shared/data/mnist beside the project. The images are held by the
client (``dask.array.from_array``), so the cluster rows include sending them to the workers.
"""

import os
import sys
import tempfile
import time


def main(data):
    import dask
    import dask.array as da
    import distributed

    import fastdecode as fd
    from fastdecode import datasets, models

    net = models.load("lenet-mnist")
    ds = datasets.load_directory(data, split="test")
    x = models.preprocess(net, ds.images)
    folder = tempfile.mkdtemp()

    def run(tag, images):
        t0 = time.perf_counter()
        fd.report(net, os.path.join(folder, tag), images=images, labels=ds.labels,
                  progress=False)
        return time.perf_counter() - t0

    rows = [("in process", run("mem", x))]
    with dask.config.set(scheduler="threads", num_workers=2):
        rows.append(("Dask threads", run("threads", da.from_array(x, chunks=2500))))
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None,
                                       scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
    try:
        with distributed.Client(cluster):
            for n in (1, 2):
                rows.append(("2-process cluster, run %d" % n,
                             run("cluster%d" % n, da.from_array(x, chunks=2500))))
    finally:
        cluster.close()
    rows.append(("in process, again", run("mem2", x)))
    base = rows[0][1]
    print("atlas of lenet-mnist over %d images" % len(x))
    for name, seconds in rows:
        print("%-28s %6.2f s  x%.2f" % (name, seconds, seconds / base))


if __name__ == "__main__":
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "..", "shared", "data",
                                                             "mnist"))
