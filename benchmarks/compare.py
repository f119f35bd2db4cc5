"""Print one table comparing fastdecode with the alternatives, all measured in this run.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare.py [--quick] [--threads N]

Rows: LeNet and VGG-16 (random weights) decoding, a VGG-16-sized substitution layer, forward
correlation of 10,000 images with 500 decoded filters, Eq. 3 over 10,000 images. Columns:
seconds and GFLOP/s of fastdecode, the fraction of a BLAS GEMM of equal FLOPs measured in the
same run, PyTorch CPU (when installed), scipy.signal, and the literal per-pixel algorithm (timed
on a few filters and extrapolated linearly: marked "~"). Times are the best of several repeats.
--quick skips the full VGG-16 runs.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fastdecode as fd  # noqa: E402
from fastdecode._validation import format_bytes  # noqa: E402

import _util  # noqa: E402
import models  # noqa: E402


class Row:
    """One case. flops: the work fastdecode does (the GEMM of comparison has as many)."""

    def __init__(self, case, dtype, threads, flops):
        self.case, self.dtype, self.threads, self.flops = case, np.dtype(dtype).name, threads, flops
        self.fd = self.torch = self.scipy = self.literal = None
        self.extrapolated = set()
        self.note = ""

        self._gemm = None

    def time(self, fn, repeat, min_time=0.0, torch=None):
        """Time fastdecode, a GEMM of equal FLOPs and PyTorch's ``torch`` in turn: the load of a
        shared machine changes from minute to minute."""
        gemm, gemm_flops = _util.gemm_callable(self.dtype, self.threads, self.flops)
        gemm()
        fns = [fn, gemm] if torch is None else [fn, gemm, torch]
        times = _util.best_of_interleaved(fns, repeat, min_time)
        self.fd = times[0]
        self._gemm = gemm_flops / times[1]
        if torch is not None:
            self.torch = times[2]

    def gemm(self):
        return self._gemm


def _fmt_s(t, approx=False):
    if t is None:
        return "-"
    s = ("%.3g s" % t) if t < 100 else ("%.0f s" % t)
    return ("~" + s) if approx else s


def print_table(rows, out=sys.stdout):
    head = ("case", "dtype", "thr", "GFLOP", "fastdecode", "GFLOP/s", "of GEMM", "PyTorch",
            "vs torch", "scipy.signal", "literal")
    fmt = "| %-52s | %-7s | %3s | %8s | %10s | %7s | %7s | %9s | %8s | %12s | %9s |"
    print(fmt % head, file=out)
    print("|" + "|".join("-" * (w + 2) for w in (52, 7, 3, 8, 10, 7, 7, 9, 8, 12, 9)) + "|",
          file=out)
    for r in rows:
        rate = r.flops / r.fd if r.fd else None
        gemm = r.gemm()
        print(fmt % (
            r.case, r.dtype, r.threads, "%.3g" % (r.flops / 1e9), _fmt_s(r.fd),
            "%.0f" % (rate / 1e9) if rate else "-",
            "%.0f%%" % (100 * rate / gemm) if rate else "-",
            _fmt_s(r.torch, "torch" in r.extrapolated),
            "%.1fx" % (r.torch / r.fd) if (r.torch and r.fd) else "-",
            _fmt_s(r.scipy, "scipy" in r.extrapolated),
            _fmt_s(r.literal, "literal" in r.extrapolated)), file=out)
        if r.note:
            print("|   %s" % r.note, file=out)


def _substitute_note(df, w, quiet=False):
    """The form a substitution row takes, and the direct form's FLOPs when it differs."""
    work, path = _util.substitute_work(df.shape, w.shape, df.dtype)
    direct = _util.substitute_flops(df.shape, w.shape)
    if quiet or work == direct:
        return ""
    return "%s: %.3g GFLOP of products, the direct form %.3g" % (path, work / 1e9, direct / 1e9)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="skip the full VGG-16 runs")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="threads (default all)")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    T, R = args.threads, args.repeat
    have_torch = _util.torch_available()
    print("machine: %s" % _util.machine())
    for dt in (np.float32, np.float64):
        for t in sorted({1, T}):
            print("GEMM %s, %d thread(s): %.0f GFLOP/s" % (np.dtype(dt).name, t,
                                                         _util.gemm_rate(dt, t) / 1e9))
    if not have_torch:
        print("PyTorch is not installed: its column is skipped (pip install torch)")
    rows = []

    # --- LeNet ---------------------------------------------------------------------------------
    lenet = models.lenet(np.float32)
    all500 = np.arange(500)
    r = Row("LeNet layer5, all 500 filters -> 28x28 (decode)", np.float32, T,
            _util.recursive_flops(lenet, "layer5"))
    r.time(lambda: fd.decode(lenet, "layer5", n_threads=T), R, 0.5,
           (lambda: _util.torch_decode(lenet, "layer5", all500, T)) if have_torch else None)
    r.scipy = _util.best_of(lambda: _util.scipy_decode(lenet, "layer5", all500), 1)[0]
    r.literal = _util.best_of(lambda: _util.literal_decode(lenet, "layer5", [0, 1]), 1)[0] * 250
    r.extrapolated.add("literal")
    r.note = "literal: 2 filters timed, x250; the chain is %.2g GFLOP" % (
        _util.decode_flops(lenet, "layer5") / 1e9)
    rows.append(r)

    r = Row("LeNet, every filter of every conv layer (decode_all)", np.float32, T,
            _util.decode_all_flops(lenet))
    r.time(lambda: fd.decode_all(lenet, n_threads=T), R, 0.5,
           (lambda: [_util.torch_decode(lenet, n, np.arange(lenet[n].num_filters), T)
                     for n in lenet.conv_layers]) if have_torch else None)
    r.note = "torch: the chain for each layer (%.2g GFLOP)" % (
        sum(_util.decode_flops(lenet, n) for n in lenet.conv_layers) / 1e9)
    rows.append(r)

    # --- forward correlation: a GEMM --------------------------------------------------------
    rng = np.random.default_rng(0)
    for dt in (np.float32, np.float64):
        x = rng.standard_normal((10000, 1, 28, 28)).astype(dt)
        f = rng.standard_normal((500, 1, 28, 28)).astype(dt)
        r = Row("correlate 10,000 images 28x28 with 500 filters", dt, T,
                _util.correlate_flops(x.shape, f.shape, (1, 1)))
        r.time(lambda: fd.correlate(x, f, n_threads=T), R, 0,
               (lambda: _util.torch_correlate(x, f, T)) if have_torch else None)
        r.scipy = _util.best_of(lambda: _util.scipy_correlate(x[:20], f), 1)[0] * 500
        r.extrapolated.add("scipy")
        r.note = "scipy: 20 images timed, x500" if dt == np.float32 else ""
        rows.append(r)

    # --- Eq. 3 over a dataset: the network's forward pass and the decoded filters' correlation --
    for dt in (np.float32, np.float64):
        net = models.lenet(dt)
        x = rng.standard_normal((10000, 1, 28, 28)).astype(dt)
        D = fd.decode(net, "layer5", n_threads=T)
        r = Row("Eq. 3, LeNet layer5 over 10,000 images 28x28", dt, T,
                _util.eq3_flops(net, "layer5", x.shape))
        r.time(lambda: fd.reconstruction_error(net, x, "layer5", decoded=D, n_threads=T,
                                               progress=False), R, 0,
               (lambda: _util.torch_eq3(net, x, "layer5", D, T)) if have_torch else None)
        same, _ = _util.eq3_gemms(net, "layer5", x.shape, dt, T)
        t_same = _util.best_of(same, R)[0]
        r.note = ("%sthe same GEMMs in BLAS alone (batches of 1,000; no im2col, pooling or "
                  "rescaling): %.3g s, fastdecode at %.0f%% of that rate"
                  % ("reconstruction_error with the decoded filters given; FLOPs: the conv "
                     "layers and the decoded correlation (pooling, ReLU, normalisation not "
                     "counted); " if dt == np.float32 else "", t_same, 100 * t_same / r.fd))
        rows.append(r)

    # --- a VGG-16-sized substitution layer (conv4_x weights onto 32 maps 28x28) -------------
    for dt in (np.float32, np.float64):
        df = rng.standard_normal((32, 512, 28, 28)).astype(dt)
        w = (rng.standard_normal((512, 512, 3, 3)) / 48).astype(dt)
        for t in sorted({1, T}):
            r = Row("substitute: 32 maps 512x28x28, weights 512x512x3x3", dt, t,
                    _util.substitute_work(df.shape, w.shape, dt)[0])
            r.time(lambda: fd.substitute(df, w, n_threads=t), R, 0,
                   (lambda: _util.torch_substitute(df, w, 1, t)) if have_torch else None)
            r.note = _substitute_note(df, w, t == 1)
            rows.append(r)
    # a wide, shallower one (conv2_2 weights onto 16 maps 92x92)
    for dt in (np.float32, np.float64):
        df = rng.standard_normal((16, 128, 92, 92)).astype(dt)
        w = (rng.standard_normal((128, 128, 3, 3)) / 34).astype(dt)
        r = Row("substitute: 16 maps 128x92x92, weights 128x128x3x3", dt, T,
                _util.substitute_work(df.shape, w.shape, dt)[0])
        r.time(lambda: fd.substitute(df, w, n_threads=T), R, 0,
               (lambda: _util.torch_substitute(df, w, 1, T)) if have_torch else None)
        r.note = _substitute_note(df, w)
        rows.append(r)

    if not args.quick:
        vgg = models.vgg16(np.float32)
        # 16 conv5_3 filters by the chain (14.8 GFLOP each)
        for dt in (np.float32, np.float64):
            net = vgg if dt == np.float32 else vgg.astype(dt)
            r = Row("VGG-16 conv5_3, 16 filters -> 3x196x196 (decode: chain)", dt, T,
                    _util.chain_flops(net, "conv5_3", 16))
            sel = np.arange(16)
            r.time(lambda: fd.decode(net, "conv5_3", filters=sel, n_threads=T), R, 0,
                   (lambda: _util.torch_decode(net, "conv5_3", sel, T)) if have_torch else None)
            r.note = ("unpooling merged into the conv below, 3x3 steps by Winograd: %.3g GFLOP; "
                      "torch runs the literal "
                      "chain, %.3g GFLOP" % (r.flops / 1e9,
                                             _util.decode_flops(net, "conv5_3", 16) / 1e9))
            rows.append(r)
        # every filter of every VGG-16 conv layer vs torch's conv5_3 alone
        r = Row("VGG-16, all 4,224 filters of all 13 conv layers", np.float32, T,
                _util.decode_all_flops(vgg))
        r.time(lambda: fd.decode_all(vgg, n_threads=T), 2, 0,
               (lambda: _util.torch_decode(vgg, "conv5_3", np.arange(16), T))
               if have_torch else None)
        if have_torch:
            r.torch *= 32
            r.extrapolated.add("torch")
        r.note = "torch: conv5_3 ALONE by the chain (7.6 TFLOP), 16 filters timed, x32"
        rows.append(r)
        # peak memory of all 512 conv5_3 filters
        peak, _ = _util.peak_memory(lambda: fd.decode(vgg, "conv5_3", n_threads=T))
        out_bytes = 512 * 3 * 196 * 196 * 4
        print("VGG-16 conv5_3, all 512 filters (float32): peak traced memory %s, of which the "
              "result %s" % (format_bytes(peak), format_bytes(out_bytes)))
        t1, t2 = _util.best_of_interleaved([lambda: fd.decode(vgg, "conv4_3", n_threads=1),
                                            lambda: fd.decode(vgg, "conv4_3", n_threads=T)],
                                           max(R, 3))
        print("VGG-16 conv4_3, all 512 filters: 1 thread %.2f s, %d threads %.2f s (%.2fx)"
              % (t1, T, t2, t1 / t2))

    print()
    print_table(rows)
    print("\nmeasured %s UTC" % time.strftime("%Y-%m-%d %H:%M", time.gmtime()))


if __name__ == "__main__":
    main()
