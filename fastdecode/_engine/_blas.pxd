"""The GEMMs the kernels call: fastdecode's own OpenBLAS, or scipy's (see ``blas.py``)."""

cdef void sgemm(char *transa, char *transb, int *m, int *n, int *k, float *alpha, float *a,
                int *lda, float *b, int *ldb, float *beta, float *c, int *ldc) noexcept nogil
cdef void dgemm(char *transa, char *transb, int *m, int *n, int *k, double *alpha, double *a,
                int *lda, double *b, int *ldb, double *beta, double *c, int *ldc) noexcept nogil
