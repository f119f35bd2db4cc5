"""BLAS thread control: the kernels call BLAS from their own OpenMP threads, one BLAS thread each.

The kernels call scipy's BLAS (``scipy.linalg.cython_blas``) inside their parallel loops, and
want it on one thread: a threaded GEMM called from several OpenMP threads contends with them, and
OpenBLAS splits a threaded GEMM into blocks that depend on its thread count, which changes the
last bits of some sums (measured with OpenBLAS 0.3.30 on SkylakeX: 78 of 420 GEMM shapes, m, n
and k from 7 x 1 x 3 to 2048 x 512 x 1200, gave other bits at 2 or 4 threads than at 1).

A pthreads OpenBLAS has one thread count for the whole process (its "thread-local" setting is a
global too), so holding it at one thread is process-wide state. It is held, under a lock, from
the moment the first kernel of any Python thread starts until the last one running finishes:
calls from several Python threads share one hold (none restores the count while another's
kernel runs), and the count the process had (a user's ``threadpool_limits`` included) is
restored exactly when the last one leaves. Only the BLAS library scipy's ``cython_blas`` calls is
held: numpy's own BLAS (another library in numpy's and scipy's wheels) keeps its count. The count
is set through OpenBLAS's own function: threadpoolctl lets only the first Python thread that set
a limit change it, and silently ignores the others (a kernel in a worker thread would then run a
threaded BLAS, with other bits than in the main thread).
"""

import contextlib
import ctypes
import os
import threading

_lock = threading.Lock()
_libraries = None   # (controller, setter) of the BLAS the kernels call; () if none
_holders = 0        # kernels running under the hold, over all Python threads
_saved = ()         # (controller, setter, thread count before the hold) per library


def _gemm_library():
    """Real path of the shared library holding the GEMM that ``scipy.linalg.cython_blas`` calls,
    or None when it cannot be told (the BLAS linked statically, no dladdr)."""
    try:
        from scipy.linalg import cython_blas
        handle = ctypes.CDLL(cython_blas.__file__)
        libc = ctypes.CDLL(None)
        dladdr = libc.dladdr
    except (ImportError, OSError, AttributeError):
        return None

    class _DlInfo(ctypes.Structure):
        _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                    ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]

    dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    own = os.path.realpath(cython_blas.__file__)
    for name in ("scipy_dgemm_", "dgemm_", "scipy_dgemm", "dgemm", "dgemm_64_"):
        try:
            address = ctypes.cast(getattr(handle, name), ctypes.c_void_p).value
        except AttributeError:
            continue
        info = _DlInfo()
        if address and dladdr(address, ctypes.byref(info)) and info.dli_fname:
            path = os.path.realpath(os.fsdecode(info.dli_fname))
            if path != own:
                return path
    return None


def _openblas_setter(lib):
    """OpenBLAS's own ``openblas_set_num_threads`` in the library of controller ``lib``, or None.

    threadpoolctl (3.8) lets only one Python thread, the first to set a limit, change a pthreads
    OpenBLAS's count, and silently ignores the others; the hold, made under its own lock, sets it
    from whichever thread takes it first.
    """
    dynlib = getattr(lib, "dynlib", None)
    if dynlib is None or getattr(lib, "internal_api", None) != "openblas":
        return None
    for prefix in ("", "scipy_"):
        for suffix in ("", "64_", "_64"):
            try:
                func = getattr(dynlib, prefix + "openblas_set_num_threads" + suffix)
            except AttributeError:
                continue
            func.argtypes, func.restype = [ctypes.c_int], None
            return func
    return None


def _find_libraries():
    """(controller, set thread count) of the BLAS the kernels call (of every BLAS library when
    that one cannot be told apart); () without threadpoolctl."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return ()
    path = _gemm_library()              # loads scipy's BLAS first, if not yet loaded
    blas = [lib for lib in ThreadpoolController().lib_controllers
            if getattr(lib, "user_api", None) == "blas"]
    if path is not None:
        mine = [lib for lib in blas if os.path.realpath(lib.filepath) == path]
        blas = mine or blas
    return tuple((lib, _openblas_setter(lib) or lib.set_num_threads) for lib in blas)


def _enter():
    global _libraries, _holders, _saved
    with _lock:
        if _libraries is None:
            _libraries = _find_libraries()
        if _holders == 0:
            saved = []
            for lib, set_threads in _libraries:
                n = lib.get_num_threads()
                if n is not None and n != 1:
                    set_threads(1)
                    saved.append((lib, set_threads, n))
            _saved = tuple(saved)
        _holders += 1


def _leave():
    global _holders, _saved
    with _lock:
        _holders -= 1
        if _holders == 0:
            for lib, set_threads, n in _saved:
                if lib.get_num_threads() == 1:     # a count set meanwhile is the user's: kept
                    set_threads(n)
            _saved = ()


@contextlib.contextmanager
def single_threaded():
    """Context in which the BLAS the kernels call runs on one thread (OpenMP threads then call
    it side by side); safe to enter from several Python threads at once (see the module).

    Uses threadpoolctl (a dependency); without it BLAS keeps its own threads, which is slower
    (concurrent calls contend) and can change the last bits of a sum.
    """
    _enter()
    try:
        yield
    finally:
        _leave()
