# cython: language_level=3
"""Build facts the kernels share: is OpenMP compiled in, and how many threads may it use.

The GEMM wrapper itself lives in ``_blas.pxd`` as an inline function, so kernel modules
``cimport`` it without any import between extension modules at run time.
"""

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define CYTORCH_OPENMP 1
    #define cytorch_omp_max_threads() omp_get_max_threads()
    #else
    #define CYTORCH_OPENMP 0
    #define cytorch_omp_max_threads() 1
    #endif
    """
    int CYTORCH_OPENMP
    int cytorch_omp_max_threads() nogil


def openmp_enabled():
    """True when the kernels were compiled with OpenMP (``setup.py`` found ``-fopenmp``)."""
    return bool(CYTORCH_OPENMP)


def openmp_max_threads():
    """``omp_get_max_threads()``: OpenMP's default team size (1 without OpenMP)."""
    return cytorch_omp_max_threads()
