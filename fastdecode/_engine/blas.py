"""The BLAS the kernels call, and its thread count: one thread, decided once.

The kernels call GEMM inside their own OpenMP loops and want it on one thread: a threaded GEMM
called from several OpenMP threads contends with them, and OpenBLAS splits a threaded GEMM into
blocks that depend on its thread count, which changes the last bits of some sums (measured with
OpenBLAS 0.3.30 on SkylakeX: 78 of 420 GEMM shapes, m, n and k from 7 x 1 x 3 to 2048 x 512 x
1200, gave other bits at 2 or 4 threads than at 1).

A pthreads OpenBLAS has one thread count for the whole process (its "thread-local" setting is
a global too), so the kernels have a BLAS of their own: the OpenBLAS of the ``scipy-openblas32``
package, a dependency, loaded here by its path (a library separate from numpy's and scipy's
copies, which auditwheel renames) and set to one thread once, when ``_blas`` binds its GEMMs.
No call changes any thread count then, and numpy's and scipy's BLAS keep theirs.

threadpoolctl sees that library too, so ``threadpool_limits(n)`` over every BLAS can raise its
count. A kernel that finds it above one holds it at one while it runs, under a lock shared by
all Python threads (none restores the count while another's kernel runs), and the last one out
restores what was set. A count changed while a kernel is already running reaches its remaining
GEMMs: only a concurrent change of every library's count can do that.

Without ``scipy-openblas32`` (a platform it has no wheel for), the kernels call the BLAS of
``scipy.linalg.cython_blas`` and hold that at one thread the same way, for every kernel: a
process-wide change while any kernel runs, restored by the last one out.
"""

import contextlib
import ctypes
import os
import threading

#: What ``FASTDECODE_BLAS`` may say: "own" (the default: scipy-openblas32 when installed) or
#: "scipy" (scipy's BLAS; for comparisons).
CHOICES = ("own", "scipy")

_lock = threading.Lock()
_own = None         # (path, ctypes library, get count, set count) of fastdecode's OpenBLAS
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


def _load_own():
    """(path, library, get count, set count) of scipy-openblas32's OpenBLAS set to one thread,
    or None when it is not installed, cannot be loaded or ``FASTDECODE_BLAS=scipy``."""
    choice = os.environ.get("FASTDECODE_BLAS", "own").strip().lower() or "own"
    if choice not in CHOICES:
        import warnings
        warnings.warn("FASTDECODE_BLAS must be one of %s, got %r: using %r"
                      % (", ".join(CHOICES), choice[:40], CHOICES[0]), RuntimeWarning)
    elif choice == "scipy":
        return None
    import importlib.util
    try:
        spec = importlib.util.find_spec("scipy_openblas32")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = os.path.join(list(spec.submodule_search_locations)[0], "lib")
    try:
        names = sorted(n for n in os.listdir(folder)
                       if n.startswith("libscipy_openblas")
                       and (n.endswith((".so", ".dylib", ".dll")) or ".so." in n))
        if not names:
            return None
        path = os.path.realpath(os.path.join(folder, names[0]))
        lib = ctypes.CDLL(path, mode=ctypes.RTLD_LOCAL)
        get, set_ = lib.scipy_openblas_get_num_threads, lib.scipy_openblas_set_num_threads
        lib.scipy_sgemm_, lib.scipy_dgemm_
    except (OSError, AttributeError):
        return None
    get.argtypes, get.restype = [], ctypes.c_int
    set_.argtypes, set_.restype = [ctypes.c_int], None
    set_(1)
    return path, lib, get, set_


def gemm_addresses():
    """(sgemm, dgemm) addresses of fastdecode's own OpenBLAS, set to one thread, or None for
    scipy's ``cython_blas``; called once, by ``_blas`` when it is imported."""
    global _own
    with _lock:
        if _own is None:
            _own = _load_own() or ()
        if not _own:
            return None
        lib = _own[1]
        return tuple(ctypes.cast(f, ctypes.c_void_p).value
                     for f in (lib.scipy_sgemm_, lib.scipy_dgemm_))


def kernel_library():
    """Real path of the BLAS library the kernels call, or None when it cannot be told."""
    from . import _blas  # noqa: F401  (binds the GEMMs, loading fastdecode's OpenBLAS)
    return _own[0] if _own else _gemm_library()


def describe():
    """One line naming the BLAS the kernels call, e.g. "OpenBLAS 0.3.34 (scipy-openblas32, own
    copy, 1 thread)" or "scipy's BLAS (libscipy_openblas-6cdc3b4a.so)"."""
    path = kernel_library()
    if _own:
        lib = _own[1]
        try:
            get_config = lib.scipy_openblas_get_config
            get_config.argtypes, get_config.restype = [], ctypes.c_char_p
            name = " ".join(get_config().decode("ascii", "replace").split()[:2])
            get_core = lib.scipy_openblas_get_corename
            get_core.argtypes, get_core.restype = [], ctypes.c_char_p
            name += " " + get_core().decode("ascii", "replace")
        except AttributeError:
            name = "OpenBLAS"
        return "%s (scipy-openblas32, own copy, %d thread%s)" % (
            name, _own[2](), "" if _own[2]() == 1 else "s")
    return "scipy's BLAS (%s)" % (os.path.basename(path) if path else "cython_blas")


def _find_libraries():
    """(controller, set thread count) of the BLAS the kernels call (of every BLAS library when
    that one cannot be told apart); () without threadpoolctl."""
    path = kernel_library()
    if _own:
        class _Own:                       # fastdecode's OpenBLAS, through its own functions
            filepath = path

            @staticmethod
            def get_num_threads():
                return _own[2]()
        return ((_Own(), _own[3]),)
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return ()
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
