/* OpenMP queries with a serial fallback when the extension is built without OpenMP. */
#ifndef FASTDECODE_OPENMP_HELPERS_H
#define FASTDECODE_OPENMP_HELPERS_H
#ifdef _OPENMP
#include <omp.h>
#define FD_OPENMP_ENABLED 1
#else
#define FD_OPENMP_ENABLED 0
static int omp_get_max_threads(void) { return 1; }
#endif
#endif
