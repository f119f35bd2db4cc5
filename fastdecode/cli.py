"""The ``fastdecode`` command: info, decode, demo, evaluate, report.

This module parses the arguments and dispatches to the runners in :mod:`fastdecode._app`; it
reports their errors in one line and turns them, interrupts and SIGTERM into exit statuses.
"""

import argparse
import contextlib
import signal
import sys
import threading

from . import UNPOOL_METHODS, __version__

MODEL_HELP = "a MatConvNet (.mat) or ONNX file, or a shipped model's name"
SIZE_HELP = "H,W: the input size, for an ONNX model whose file leaves it open"
DESCRIPTION = ("Filter decoding with substitution (Rafegas & Vanrell): decode the filters of a "
               "trained CNN into image space and measure how well they predict its responses.")


def _cmd_info(args):
    from ._app import run_info
    return run_info(args.model, size=args.size)


def _cmd_decode(args):
    from ._app import run_decode
    return run_decode(model=args.model, layer=args.layer, filters=args.filters,
                      unpool=args.unpool, out=args.out, save=args.save,
                      threshold=args.threshold, n_threads=args.threads, size=args.size)


def _cmd_demo(args):
    from ._app import run_demo
    return run_demo(model=args.model, data=args.data, out=args.out, n_threads=args.threads,
                    limit=args.limit, start=args.start, bias=args.bias,
                    progress=not args.no_progress)


def _cmd_evaluate(args):
    from ._app import run_evaluate
    return run_evaluate(model=args.model, data=args.data, out=args.out, unpool=args.unpool,
                        n_threads=args.threads, limit=args.limit, start=args.start,
                        bias=args.bias, progress=not args.no_progress, mean=args.mean,
                        std=args.std, size=args.size, scheduler=args.scheduler,
                        workers=args.workers)


def _cmd_report(args):
    from .atlas._command import run_report
    return run_report(model=args.model, out=args.out, data=args.data, images=args.images,
                      limit=args.limit, layers=args.layers, unpool=args.unpool, mean=args.mean,
                      std=args.std, size=args.size, top_k=args.top_k, title=args.title,
                      n_threads=args.threads, progress=not args.no_progress,
                      scheduler=args.scheduler, workers=args.workers,
                      on_error=args.on_error)


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
    """The argument parser of the ``fastdecode`` command and its subcommands.

    Returns
    -------
    argparse.ArgumentParser
        A parser whose parsed arguments carry the subcommand's function as ``func``; usage
        errors exit with status 2 and one line on stderr.
    """
    p = _Parser(prog="fastdecode", description=DESCRIPTION)
    p.add_argument("--version", action="version", version="fastdecode %s" % __version__)
    sub = p.add_subparsers(dest="command", required=True)
    for add in (_add_info, _add_decode, _add_demo, _add_evaluate, _add_report):
        add(sub)
    return p


def _add_info(sub):
    s = sub.add_parser("info", help="print a network's layers, strides and decoded sizes")
    s.add_argument("model", help=MODEL_HELP)
    s.add_argument("--size", help=SIZE_HELP)
    s.set_defaults(func=_cmd_info)


def _add_decode(sub):
    s = sub.add_parser("decode", help="decode the filters of one layer")
    s.add_argument("model", help=MODEL_HELP)
    s.add_argument("--layer", required=True,
                   help="layer name (e.g. layer5) or index: a conv layer, or in a graph any "
                        "layer whose output is a map or a vector")
    s.add_argument("--filters", help="filter indices, e.g. 0,3,10-19 (default: all)")
    s.add_argument("--unpool", default="nearest",
                   choices=UNPOOL_METHODS)
    s.add_argument("--out", help="PNG grid of the decoded filters")
    s.add_argument("--save", help=".npy file of the decoded filters (F, C, H, W)")
    s.add_argument("--threshold", type=float, default=None,
                   help="also draw the filters keeping only values of at least this fraction of "
                        "each filter's max |value| (e.g. 0.5)")
    s.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    s.add_argument("--size", help=SIZE_HELP)
    s.set_defaults(func=_cmd_decode)


def _add_demo(sub):
    s = sub.add_parser("demo", help="the paper end to end on a shipped model")
    s.add_argument("--model", default="lenet-fashion",
                   help="a shipped model's name or a .mat file (default: lenet-fashion)")
    s.add_argument("--data", help="directory of IDX test files, t10k-images-idx3-ubyte[.gz] and "
                                  "t10k-labels-idx1-ubyte[.gz] (default: the shipped "
                                  "Fashion-MNIST sample)")
    s.add_argument("--out", default="fastdecode-demo", help="output directory for the figures")
    _add_run_options(s)
    s.set_defaults(func=_cmd_demo)


def _add_evaluate(sub):
    s = sub.add_parser("evaluate", help="Table 1, Figure 1 and self-consistency on a dataset")
    s.add_argument("model", help=MODEL_HELP)
    s.add_argument("--data", required=True, help="directory of IDX test files")
    s.add_argument("--unpool", nargs="+", default=["nearest", "bilinear", "bicubic"],
                   choices=UNPOOL_METHODS,
                   help="unpooling methods of Table 1; the first one is used for Figure 1")
    s.add_argument("--out", default=None, help="output directory for results and figures")
    _add_normalisation(s, "H,W: the input size, for an ONNX model whose file leaves it open")
    _add_run_options(s)
    _add_dask_options(s)
    s.set_defaults(func=_cmd_evaluate)


def _add_dask_options(s):
    where = s.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="run the passes over the images on a running Dask scheduler, e.g. "
                            "tcp://10.0.0.5:8786 (needs fastdecode[distributed]); the images "
                            "are read chunk by chunk")
    where.add_argument("--workers", type=int, metavar="N",
                       help="run the passes on a local Dask cluster of N worker processes "
                            "(127.0.0.1 only, closed at the end; needs fastdecode[distributed])")


def _add_normalisation(s, size_help):
    s.add_argument("--mean", help="per-channel mean of pixels scaled to [0, 1], e.g. "
                                  "0.485,0.456,0.406 (default: from the model file)")
    s.add_argument("--std", help="per-channel std, e.g. 0.229,0.224,0.225")
    s.add_argument("--size", help=size_help)


def _add_report(sub):
    s = sub.add_parser("report", help="the atlas: HTML pages of every decoded filter, with "
                                      "Eq. 3 errors and top images when images are given")
    s.add_argument("model", help=MODEL_HELP)
    source = s.add_mutually_exclusive_group()
    source.add_argument("--data", help="directory of MNIST-format IDX test files")
    source.add_argument("--images", help="folder of JPEG/PNG photos")
    s.add_argument("--on-error", choices=("skip", "stop"), default="skip",
                   help="a photo that cannot be read: skip it, named in a warning (default), "
                        "or stop with an error naming it")
    s.add_argument("--limit", type=int, default=None, help="use at most this many images")
    s.add_argument("--layers", nargs="+",
                   help="conv layers (on graphs also add and concat layers) to show, by name, "
                        "alias or index (default: every conv layer)")
    s.add_argument("--unpool", default="nearest",
                   choices=UNPOOL_METHODS)
    _add_normalisation(s, "H,W the photos are cropped to (default: the model's), and the "
                          "input size of an ONNX model whose file leaves it open")
    s.add_argument("--top-k", type=int, default=9, help="top images per filter (default 9)")
    s.add_argument("--title", help="title of the pages")
    s.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    s.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    s.add_argument("--out", required=True, help="output folder (new, empty or an earlier "
                                                "atlas, which is replaced)")
    _add_dask_options(s)
    s.set_defaults(func=_cmd_report)


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line."""

    def error(self, message):
        self.exit(2, "%s: error: %s (see %s --help)\n" % (self.prog, message, self.prog))


class _Terminated(BaseException):
    """Raised by the SIGTERM handler, so that a run stops as it does on Ctrl-C."""


def _raise_terminated(signum, frame):
    raise _Terminated()


@contextlib.contextmanager
def _terminate_as_exception():
    """SIGTERM raises :class:`_Terminated` inside the block (in the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _one_line(exc):
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    text = " ".join(str(msg).split())
    if isinstance(exc, MemoryError) and not text:  # numpy's own MemoryError may say nothing
        return "out of memory"
    return text or type(exc).__name__


def main(argv=None):
    """Run the ``fastdecode`` command line.

    Errors are reported in one line on stderr (set the environment variable
    ``FASTDECODE_DEBUG=1`` to raise them with their traceback instead).

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0 on success, 2 for bad input (a usage error, a missing or unreadable
        file, an unknown layer, ...), 1 for an unexpected failure, 130 when interrupted
        (SIGINT), 143 when terminated (SIGTERM), 141 when the output pipe was closed.
    """
    import os
    try:
        with _terminate_as_exception():
            args = build_parser().parse_args(argv)
            if getattr(args, "layer", None) is not None and args.layer.lstrip("-").isdigit():
                args.layer = int(args.layer)
            return args.func(args)
    except _Terminated:  # SIGTERM: as an interrupt, files being written are removed
        print("fastdecode: terminated", file=sys.stderr)
        return 143
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
