"""Write the Fashion-MNIST sample shipped in fastdecode/datasets: the first N test images.

    python scripts/make_fashion_sample.py [--source /usr/share/datasets/fashion-mnist] [--count 1000]

The source is Debian's dataset-fashion-mnist package (MIT licence). The gzip streams are written
with a zero timestamp and no file name, so the output is byte-for-byte reproducible.
"""

import argparse
import gzip
import os
import struct
import sys

import numpy as np

from fastdecode._io import atomic_path
from fastdecode.datasets import _SAMPLE_IMAGES, _SAMPLE_LABELS, load_directory

DATASETS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "fastdecode",
                            "datasets")


def write_idx_gz(path, array):
    """Write a uint8 array as a gzipped IDX file (magic 0x0800 | ndim, big-endian sizes)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(">%dI" % array.ndim, *array.shape)
    with atomic_path(path, suffix=".gz") as tmp:
        with open(tmp, "wb") as raw, \
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as f:
            f.write(header + array.tobytes())
        os.chmod(tmp, 0o644)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--out", default=DATASETS_DIR)
    args = parser.parse_args(argv)
    test = load_directory(args.source, "test")
    images, labels = test.images[:args.count], test.labels[:args.count]
    write_idx_gz(os.path.join(args.out, _SAMPLE_IMAGES), images)
    write_idx_gz(os.path.join(args.out, _SAMPLE_LABELS), labels)
    print("wrote %d images (label counts %s) to %s"
          % (len(images), np.bincount(labels, minlength=10).tolist(), os.path.normpath(args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
