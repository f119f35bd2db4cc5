"""BLAS thread control: the kernels call BLAS from their own OpenMP threads, one BLAS thread each."""

import contextlib

_controller = None


def single_threaded():
    """Context in which BLAS runs on one thread (OpenMP threads then call it side by side).

    Uses threadpoolctl (a dependency); without it BLAS keeps its own threads, which is slower
    (concurrent calls contend) and can change the last bits of a sum (OpenBLAS picks other
    blocks for a threaded GEMM).
    """
    global _controller
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _controller = False
        else:
            _controller = ThreadpoolController().select(user_api="blas")
    if _controller is False:
        return contextlib.nullcontext()
    return _controller.limit(limits=1)
