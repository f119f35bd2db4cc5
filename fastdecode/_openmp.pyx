"""OpenMP status of the compiled kernels."""

cdef extern from "_openmp_helpers.h":
    int FD_OPENMP_ENABLED
    int omp_get_max_threads() nogil


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(FD_OPENMP_ENABLED)


def max_threads():
    """Threads a parallel region uses by default (OMP_NUM_THREADS or the cores available)."""
    return omp_get_max_threads()
