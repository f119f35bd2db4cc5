"""A long fuzzing run of the MAT reader on mutations of real files.

    python scripts/fuzz_matfile.py [N] [DATA_DIR]

Each case is read in-process with a 64 MiB budget; prints counts of outcomes by mutation, the
worst time and the process's peak resident memory. Anything other than a dict or a
MatConvNetError (or a case past its time bound) is printed with its seed, to be replayed.
"""

import collections
import os
import resource
import sys
import tempfile
import time
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, ".."))
import matfuzz  # noqa: E402


def main(argv):
    n = int(argv[1]) if len(argv) > 1 else 2000
    root = argv[2] if len(argv) > 2 else os.path.join(HERE, "..", "..", "shared", "data",
                                                     "matconvnet")
    files = sorted(os.path.join(root, f) for f in os.listdir(root) if f.endswith(".mat"))
    v5 = [(f, open(f, "rb").read()) for f in files if not f.endswith("v73.mat")]
    v73 = [f for f in files if f.endswith("v73.mat")]
    counts = collections.Counter()
    worst = (0.0, None)
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "case.mat")
        for seed in range(n):
            rng = np.random.default_rng(seed)
            if seed % 5 == 4 and v73:
                label = "v73-" + matfuzz.mutate_v73(v73[seed % len(v73)], path, rng)
            else:
                name, data = v5[seed % len(v5)]
                data, label = matfuzz.mutate_v5(data, rng)
                with open(path, "wb") as f:
                    f.write(data)
            t = time.perf_counter()
            try:
                outcome = matfuzz.run_case(path, seconds=30.0)
            except Exception:  # anything else is a finding
                outcome = "BAD"
                bad += 1
                print("seed %d (%s):" % (seed, label))
                traceback.print_exc(limit=3)
            dt = time.perf_counter() - t
            if dt > worst[0]:
                worst = (dt, seed)
            counts[(label, outcome)] += 1
    for (label, outcome), c in sorted(counts.items()):
        print("%-20s %-8s %6d" % (label, outcome, c))
    print("cases %d, findings %d, worst time %.2f s (seed %s), peak RSS %.0f MiB"
          % (n, bad, worst[0], worst[1],
             resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
