"""The ``fastdecode`` command: info, decode, demo, evaluate."""

import argparse
import sys

import numpy as np

from . import __version__


def load_model(spec):
    """A Network from a ``.mat`` path or a shipped model's name."""
    import os
    if os.path.exists(spec) or spec.endswith(".mat"):
        from .matconvnet import load_matconvnet
        return load_matconvnet(spec)
    from . import models
    return models.load(spec)


def _cmd_info(args):
    from .matconvnet import format_info
    print(format_info(load_model(args.model), title=args.model))
    return 0


def _parse_filters(text):
    """'0,3,5-9' -> [0, 3, 5, 6, 7, 8, 9]."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part[1:]:
            lo, hi = part.split("-", 1)
            out.extend(range(int(lo), int(hi) + 1))
        else:
            out.append(int(part))
    if not out:
        raise ValueError("--filters names no filter: %r" % text)
    return out


def _cmd_decode(args):
    from ._io import atomic_path
    from .decoding import decode
    net = load_model(args.model)
    filters = None if args.filters is None else _parse_filters(args.filters)
    D = decode(net, args.layer, filters=filters, unpool=args.unpool, n_threads=args.threads)
    print("decoded %d filters of layer %s: shape %s, %s" % (D.shape[0], args.layer, D.shape, D.dtype))
    if args.save:
        with atomic_path(args.save, suffix=".npy") as tmp:
            np.save(tmp, D)
        print("wrote %s" % args.save)
    if args.out:
        from .plotting import save_filter_grid
        save_filter_grid(D, args.out, title="%s, layer %s (%s unpooling)"
                         % (args.model, args.layer, args.unpool))
        print("wrote %s" % args.out)
    return 0


def _cmd_demo(args):
    from .experiments import run_demo
    return run_demo(model=args.model, data=args.data, out=args.out, n_threads=args.threads,
                    limit=args.limit)


def _cmd_evaluate(args):
    from .experiments import run_evaluate
    return run_evaluate(model=args.model, data=args.data, out=args.out, unpool=args.unpool,
                        n_threads=args.threads, limit=args.limit)


def build_parser():
    p = argparse.ArgumentParser(prog="fastdecode", description=__doc__)
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
                   choices=["nearest", "bilinear", "bicubic", "adjoint"])
    s.add_argument("--out", help="PNG grid of the decoded filters")
    s.add_argument("--save", help=".npy file of the decoded filters (F, C, H, W)")
    s.add_argument("--threads", type=int, default=None)
    s.set_defaults(func=_cmd_decode)

    s = sub.add_parser("demo", help="the paper end to end on a shipped model")
    s.add_argument("--model", default="lenet-fashion")
    s.add_argument("--data", help="directory of IDX files (default: the shipped sample)")
    s.add_argument("--out", default="fastdecode-demo", help="output directory for the figures")
    s.add_argument("--limit", type=int, default=None, help="use at most this many images")
    s.add_argument("--threads", type=int, default=None)
    s.set_defaults(func=_cmd_demo)

    s = sub.add_parser("evaluate", help="Table 1, Figure 1 and self-consistency on a dataset")
    s.add_argument("model")
    s.add_argument("--data", required=True, help="directory of IDX files")
    s.add_argument("--unpool", nargs="+", default=["nearest", "bilinear", "bicubic"],
                   choices=["nearest", "bilinear", "bicubic", "adjoint"])
    s.add_argument("--out", default=None, help="output directory for the figures")
    s.add_argument("--limit", type=int, default=None, help="use at most this many images")
    s.add_argument("--threads", type=int, default=None)
    s.set_defaults(func=_cmd_evaluate)
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "layer", None) is not None and args.layer.lstrip("-").isdigit():
        args.layer = int(args.layer)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("fastdecode: interrupted", file=sys.stderr)
        return 130
    except (ValueError, KeyError, IndexError, TypeError, OSError, MemoryError,
            NotImplementedError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print("fastdecode: error: %s" % (msg,), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
