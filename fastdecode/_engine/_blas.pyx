# cython: language_level=3
"""The GEMMs the kernels call, bound once, when this module is imported.

``fastdecode._engine.blas`` chooses the library: fastdecode's own copy of OpenBLAS (the
``scipy-openblas32`` package, loaded privately and set to one thread once), else the BLAS of
``scipy.linalg.cython_blas``. Every kernel module cimports :func:`sgemm` and :func:`dgemm` from
here, so the binding is made before any kernel can run.
"""

from scipy.linalg.cython_blas cimport sgemm as _scipy_sgemm, dgemm as _scipy_dgemm

ctypedef void (*_sgemm_t)(char *, char *, int *, int *, int *, float *, float *, int *, float *,
                          int *, float *, float *, int *) noexcept nogil
ctypedef void (*_dgemm_t)(char *, char *, int *, int *, int *, double *, double *, int *,
                          double *, int *, double *, double *, int *) noexcept nogil

cdef _sgemm_t _s = NULL
cdef _dgemm_t _d = NULL


cdef void sgemm(char *transa, char *transb, int *m, int *n, int *k, float *alpha, float *a,
                int *lda, float *b, int *ldb, float *beta, float *c, int *ldc) noexcept nogil:
    _s(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)


cdef void dgemm(char *transa, char *transb, int *m, int *n, int *k, double *alpha, double *a,
                int *lda, double *b, int *ldb, double *beta, double *c, int *ldc) noexcept nogil:
    _d(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)


cdef void _scipy_s(char *transa, char *transb, int *m, int *n, int *k, float *alpha, float *a,
                   int *lda, float *b, int *ldb, float *beta, float *c, int *ldc) noexcept nogil:
    _scipy_sgemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)


cdef void _scipy_d(char *transa, char *transb, int *m, int *n, int *k, double *alpha,
                   double *a, int *lda, double *b, int *ldb, double *beta, double *c,
                   int *ldc) noexcept nogil:
    _scipy_dgemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)


def _bind():
    global _s, _d
    from fastdecode._engine import blas
    addresses = blas.gemm_addresses()
    if addresses is None:
        _s, _d = _scipy_s, _scipy_d
    else:
        _s, _d = <_sgemm_t><size_t>addresses[0], <_dgemm_t><size_t>addresses[1]


_bind()
