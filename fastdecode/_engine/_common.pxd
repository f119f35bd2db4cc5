# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Inline helpers shared by the compiled kernels: the index type, the NaN/inf test on a
value's bits, the bias-and-check pass over a block, and a GEMM on either float type.

Every kernel module cimports these; the kernels trust their callers (``fastdecode._engine``),
which validate shapes, dtypes and values and allocate the outputs. Every output element is
written by exactly one thread in a fixed order of operations, so results are bitwise identical
for any thread count.
"""

from cython cimport floating
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy
from fastdecode._engine._blas cimport sgemm, dgemm

ctypedef Py_ssize_t intp


cdef inline bint _nonfinite(floating v) noexcept nogil:
    """Whether v is NaN or inf: its exponent bits all set (integer logic on a copy of its bits)."""
    cdef uint32_t b32
    cdef uint64_t b64
    if floating is float:
        memcpy(&b32, &v, 4)
        return (b32 & 0x7f800000u) == 0x7f800000u
    else:
        memcpy(&b64, &v, 8)
        return (b64 & 0x7ff0000000000000u) == 0x7ff0000000000000u


cdef inline bint _add_and_check(floating *v, intp n, const floating *bias,
                                bint per_value) noexcept nogil:
    """v[q] += bias[q] (per_value) or bias[0] for q < n (nothing when bias is NULL); whether
    any v[q] is then NaN or inf."""
    cdef intp q
    cdef floating b
    cdef bint hit = False
    if bias != NULL and per_value:
        for q in range(n):
            v[q] = v[q] + bias[q]
    elif bias != NULL:
        b = bias[0]
        for q in range(n):
            v[q] = v[q] + b
    for q in range(n):
        hit = hit | _nonfinite(v[q])
    return hit


cdef inline void _gemm(char *ta, char *tb, int m, int n, int k, const floating *a, int lda,
                       const floating *b, int ldb, floating *c, int ldc,
                       bint accumulate=False) noexcept nogil:
    """c = op(a) @ op(b), column-major; c += op(a) @ op(b) with ``accumulate``."""
    cdef float one_s = 1.0, beta_s = 1.0 if accumulate else 0.0
    cdef double one_d = 1.0, beta_d = 1.0 if accumulate else 0.0
    if floating is float:
        sgemm(ta, tb, &m, &n, &k, &one_s, <float *>a, &lda, <float *>b, &ldb, &beta_s,
              <float *>c, &ldc)
    else:
        dgemm(ta, tb, &m, &n, &k, &one_d, <double *>a, &lda, <double *>b, &ldb, &beta_d,
              <double *>c, &ldc)
