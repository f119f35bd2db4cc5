"""Coverage-guided fuzzing of the MAT reader and the MatConvNet loader (atheris, libFuzzer).

    pip install atheris
    python scripts/fuzz_matfile_atheris.py [-max_total_time=600] [CORPUS_DIR ...]

Each input is a MAT v5 element stream. The harness writes a file of a 128-byte MAT header and
the stream (the first input byte picks how: even, the stream as is; odd, the stream in one
compressed element, so that the fuzzer explores the parser behind zlib too) and loads it with
``load_matconvnet(path, memory_limit=64 MiB)``. Anything but a network or a MatConvNetError
naming the file is a finding: libFuzzer stops and writes the input as ``crash-*``; a case past
``-timeout`` seconds (10 by default here) is one too.

Without a corpus directory the seeds are small networks laid out as MATLAB writes them (simplenn,
DagNN, cnn_train checkpoints) and the decompressed streams of the real files in
``../shared/data/matconvnet`` when they are there; they are written to a temporary directory,
and the fuzzer's new inputs are kept there only for the run. Every 1,000 cases the counts (cases,
loaded, refused, worst time, peak resident memory) are printed on stderr and written to
``fuzz-matfile-stats.json`` (or to the file ``FUZZ_STATS`` names); libFuzzer's own last line
gives the total number of runs.

The fuzzing suite in ``tests/`` (hypothesis) runs in CI; this harness does not.
"""

import json
import os
import resource
import struct
import sys
import tempfile
import time
import zlib

import numpy as np  # noqa: F401  (imported before instrumentation, so not instrumented)
import scipy.io  # noqa: F401

import atheris

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, ".."))

with atheris.instrument_imports(include=["fastdecode"]):
    from fastdecode import MatConvNetError, load_matconvnet

MEMORY_LIMIT = 64 * 2**20
HEADER = (b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2018"
          .ljust(116, b" ") + b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM")
STATS = os.environ.get("FUZZ_STATS", "fuzz-matfile-stats.json")

_dir = tempfile.mkdtemp(prefix="fuzz-matfile-")
_path = os.path.join(_dir, "case.mat")
_stats = {"cases": 0, "loaded": 0, "refused": 0, "worst_seconds": 0.0, "peak_rss_bytes": 0,
          "started": time.time()}


def _report():
    _stats["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    _stats["elapsed_seconds"] = time.time() - _stats["started"]
    with open(STATS, "w") as f:
        json.dump(_stats, f, indent=1)
    sys.stderr.write("fuzz-matfile: %s\n" % json.dumps(_stats))


def TestOneInput(data):
    if not data:
        return
    body = data[1:]
    if data[0] & 1:
        z = zlib.compress(body, 1)
        body = struct.pack("<II", 15, len(z)) + z
    with open(_path, "wb") as f:
        f.write(HEADER + body)
    t = time.perf_counter()
    try:
        load_matconvnet(_path, memory_limit=MEMORY_LIMIT)
        _stats["loaded"] += 1
    except MatConvNetError as exc:
        if _path not in str(exc):
            raise AssertionError("the message does not name the file: %s" % exc) from None
        _stats["refused"] += 1
    dt = time.perf_counter() - t
    _stats["worst_seconds"] = max(_stats["worst_seconds"], dt)
    _stats["cases"] += 1
    if _stats["cases"] % 1000 == 0:
        _report()


def _streams(path):
    """The element stream of a v5 file, its compressed elements inflated."""
    data = open(path, "rb").read()
    out, pos = [], 128
    while pos + 8 <= len(data):
        mtype, n = struct.unpack("<II", data[pos:pos + 8])
        raw = data[pos:pos + 8 + n]
        out.append(zlib.decompress(raw[8:]) if mtype == 15 else raw + b"\0" * (-n % 8))
        pos += 8 + n + (0 if mtype == 15 else -n % 8)
    return b"".join(out)


def _seeds(directory):
    """Seed inputs in ``directory``: small MATLAB-made networks and the real files' streams."""
    import matlab_layouts as ml
    import test_matconvnet as tm
    made = []
    for name, make in sorted(tm.LAYOUTS.items()):
        path = os.path.join(directory, "seed-%s.mat" % name)
        ml.write_v5(path, make(), compress=False)
        made.append(path)
    real = os.path.join(HERE, "..", "..", "shared", "data", "matconvnet")
    if os.path.isdir(real):
        made += [os.path.join(real, f) for f in sorted(os.listdir(real))
                 if f.endswith(".mat") and not f.endswith("v73.mat")]
    for i, path in enumerate(made):
        stream = _streams(path)
        with open(os.path.join(directory, "seed%02d" % i), "wb") as f:
            f.write(b"\0" + stream)
        if path.startswith(directory):
            os.remove(path)


def main():
    argv = list(sys.argv)
    if not any(not a.startswith("-") for a in argv[1:]):
        corpus = os.path.join(_dir, "corpus")
        os.makedirs(corpus)
        _seeds(corpus)
        argv.append(corpus)
    if not any(a.startswith("-timeout=") for a in argv):
        argv.append("-timeout=10")
    if not any(a.startswith("-rss_limit_mb=") for a in argv):
        argv.append("-rss_limit_mb=1024")
    atheris.Setup(argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
