"""The ``fastdecode`` command: info, decode, demo, evaluate."""

import argparse
import sys

import numpy as np

from . import UNPOOL_METHODS, __version__
from .experiments import load_model
from ._validation import printable as _printable

DESCRIPTION = ("Filter decoding with substitution (Rafegas & Vanrell): decode the filters of a "
               "trained CNN into image space and measure how well they predict its responses.")


def _cmd_info(args):
    from .matconvnet import format_info
    print(format_info(load_model(args.model), title=args.model))
    return 0


def _parse_filters(text, count, layer):
    """'0,3,5-9' -> [0, 3, 5, 6, 7, 8, 9]; IndexError for an index beyond the ``count`` filters
    of ``layer`` (checked before a range is expanded)."""
    import re
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if m is None or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise ValueError("--filters takes indices and ranges such as 0,3,10-19; got %r"
                             % text)
        lo = int(m.group(1))
        hi = int(m.group(2) or lo)
        if hi >= count:
            raise IndexError("filter index %d out of range: layer %r has %d filters"
                             % (hi, _printable(layer), count))
        out.extend(range(lo, hi + 1))
    if not out:
        raise ValueError("--filters names no filter: %r" % text)
    return out


def _cmd_decode(args):
    import contextlib
    import os
    from ._io import atomic_path
    from .decoding import decode
    for flag, path in (("--save", args.save), ("--out", args.out)):
        if path == "":
            raise ValueError("%s must name a file, got an empty string" % flag)
    outputs = [p for p in (args.save, args.out) if p]
    for path in outputs:  # refuse before any work, so that nothing is left half done
        if os.path.isdir(path):
            raise IsADirectoryError("output path is a directory: %s" % path)
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise FileNotFoundError("output directory does not exist: %s" % parent)
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise ValueError("--threshold must be a fraction in [0, 1], got %g" % args.threshold)
    net = load_model(args.model)
    conv = net.layers[net.conv_index(args.layer)]
    filters = (None if args.filters is None
               else _parse_filters(args.filters, conv.num_filters, conv.name))
    D = decode(net, args.layer, filters=filters, unpool=args.unpool, n_threads=args.threads)
    name = _printable(net[args.layer].name)  # control characters from real files escaped
    print("decoded %d filters of layer %s: shape %s, %s" % (D.shape[0], name, D.shape, D.dtype))
    with contextlib.ExitStack() as stack:  # both files appear together, or neither
        if args.save:
            tmp = stack.enter_context(atomic_path(args.save, suffix=".npy"))
            np.save(tmp, D)
        if args.out:
            from .plotting import save_filter_grid
            tmp = stack.enter_context(atomic_path(args.out, suffix=".png"))
            labels = (np.arange(D.shape[0]) if filters is None
                      else np.arange(net[args.layer].num_filters)[filters])
            save_filter_grid(D, tmp, threshold=args.threshold,
                             labels=labels if len(labels) <= 200 else None,
                             title="%s, layer %s (%s unpooling)" % (args.model, name, args.unpool))
    for path in outputs:
        print("wrote %s" % path)
    return 0


def _cmd_demo(args):
    from .experiments import run_demo
    return run_demo(model=args.model, data=args.data, out=args.out, n_threads=args.threads,
                    limit=args.limit, start=args.start, bias=args.bias,
                    progress=not args.no_progress)


def _cmd_evaluate(args):
    from .experiments import run_evaluate
    return run_evaluate(model=args.model, data=args.data, out=args.out, unpool=args.unpool,
                        n_threads=args.threads, limit=args.limit, start=args.start,
                        bias=args.bias, progress=not args.no_progress)


def _add_run_options(s):
    s.add_argument("--start", type=int, default=0,
                   help="skip this many images first (e.g. --start 8000 --limit 2000 for MNIST "
                        "test images 8,001-10,000)")
    s.add_argument("--limit", type=int, default=None, help="use at most this many images")
    s.add_argument("--bias", action="store_true",
                   help="add the decoded biases to the decoded filters' correlations")
    s.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    s.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")


def build_parser():
    p = _Parser(prog="fastdecode", description=DESCRIPTION)
    p.add_argument("--version", action="version", version="fastdecode %s" % __version__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("info", help="print a network's layers, strides and decoded sizes")
    s.add_argument("model", help="a MatConvNet .mat file or a shipped model's name")
    s.set_defaults(func=_cmd_info)

    s = sub.add_parser("decode", help="decode the filters of one conv layer")
    s.add_argument("model", help="a MatConvNet .mat file or a shipped model's name")
    s.add_argument("--layer", required=True, help="conv layer name (e.g. layer5) or index")
    s.add_argument("--filters", help="filter indices, e.g. 0,3,10-19 (default: all)")
    s.add_argument("--unpool", default="nearest",
                   choices=UNPOOL_METHODS)
    s.add_argument("--out", help="PNG grid of the decoded filters")
    s.add_argument("--save", help=".npy file of the decoded filters (F, C, H, W)")
    s.add_argument("--threshold", type=float, default=None,
                   help="also draw the filters keeping only values of at least this fraction of "
                        "each filter's max |value| (e.g. 0.5)")
    s.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    s.set_defaults(func=_cmd_decode)

    s = sub.add_parser("demo", help="the paper end to end on a shipped model")
    s.add_argument("--model", default="lenet-fashion",
                   help="a shipped model's name or a .mat file (default: lenet-fashion)")
    s.add_argument("--data", help="directory of IDX test files, t10k-images-idx3-ubyte[.gz] and "
                                  "t10k-labels-idx1-ubyte[.gz] (default: the shipped "
                                  "Fashion-MNIST sample)")
    s.add_argument("--out", default="fastdecode-demo", help="output directory for the figures")
    _add_run_options(s)
    s.set_defaults(func=_cmd_demo)

    s = sub.add_parser("evaluate", help="Table 1, Figure 1 and self-consistency on a dataset")
    s.add_argument("model", help="a MatConvNet .mat file or a shipped model's name")
    s.add_argument("--data", required=True, help="directory of IDX test files")
    s.add_argument("--unpool", nargs="+", default=["nearest", "bilinear", "bicubic"],
                   choices=UNPOOL_METHODS,
                   help="unpooling methods of Table 1; the first one is used for Figure 1")
    s.add_argument("--out", default=None, help="output directory for results and figures")
    _add_run_options(s)
    s.set_defaults(func=_cmd_evaluate)
    return p


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line."""

    def error(self, message):
        self.exit(2, "%s: error: %s (see %s --help)\n" % (self.prog, message, self.prog))


def _one_line(exc):
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    text = " ".join(str(msg).split())
    if isinstance(exc, MemoryError) and not text:  # numpy's own MemoryError may say nothing
        return "out of memory"
    return text or type(exc).__name__


def main(argv=None):
    """Run the command line; returns the exit status (0 success, 2 bad input, 1 failure)."""
    import os
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "layer", None) is not None and args.layer.lstrip("-").isdigit():
        args.layer = int(args.layer)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("fastdecode: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a reader that quit (e.g. head): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except (ValueError, KeyError, IndexError, TypeError, OSError, MemoryError,
            NotImplementedError) as exc:
        if os.environ.get("FASTDECODE_DEBUG"):
            raise
        print("fastdecode: error: %s" % _one_line(exc), file=sys.stderr)
        return 2
    except Exception as exc:  # an unexpected failure: still one line; FASTDECODE_DEBUG=1 for more
        if os.environ.get("FASTDECODE_DEBUG"):
            raise
        print("fastdecode: error (%s): %s; set FASTDECODE_DEBUG=1 for the traceback"
              % (type(exc).__name__, _one_line(exc)), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
