# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The parallel NaN/inf scan of an array's bit patterns.
"""

from cython.parallel cimport prange
from libc.stdint cimport uint32_t, uint64_t

from fastdecode._engine._common cimport intp


ctypedef fused float_bits:
    uint32_t
    uint64_t


def count_nonfinite_blocks(
        const float_bits[::1] bits,   # IN
        float_bits exponent,
        intp block,
        int n_threads,
):
    """Number of blocks of ``block`` elements that hold a NaN or an inf (0: all finite).

    bits: a float32 (uint32) or float64 (uint64) array's bit patterns; exponent: the exponent
    field's mask (0x7f800000 or 0x7ff0000000000000). A value is NaN or inf exactly when its
    exponent bits are all set: integer logic, which no floating-point optimisation can change.
    Parallel over blocks.
    """
    cdef intp n = bits.shape[0], nb = (n + block - 1) // block, b, i, i1, bad = 0
    cdef float_bits hit
    with nogil:
        for b in prange(nb, num_threads=n_threads, schedule="static"):
            i1 = min(n, (b + 1) * block)
            hit = 0
            for i in range(b * block, i1):
                hit = hit | ((bits[i] & exponent) == exponent)
            if hit:
                bad += 1
    return bad
