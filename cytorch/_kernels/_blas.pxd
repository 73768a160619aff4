# Row-major GEMM over scipy's BLAS (``scipy.linalg.cython_blas``), shared by the kernels.
#
# BLAS is column-major.  A row-major m x n matrix C is, read column-major, the n x m matrix C^T,
# so the row-major product C = op(A) @ op(B) is computed as the column-major product
# C^T = op(B)^T @ op(A)^T: the same call with A and B (and m and n) swapped, no copy.
# (The trick of scikit-learn's sklearn/utils/_cython_blas.pyx.)
from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, sgemm


cdef inline void gemm(char transa, char transb, int m, int n, int k,
                      floating alpha, const floating *A, int lda,
                      const floating *B, int ldb,
                      floating beta, floating *C, int ldc) noexcept nogil:
    """C := alpha*op(A)@op(B) + beta*C, row-major (C is m x n; trans: ord('n') or ord('t'))."""
    if floating is float:
        sgemm(&transb, &transa, &n, &m, &k, &alpha, <float *>B, &ldb, <float *>A, &lda,
              &beta, C, &ldc)
    else:
        dgemm(&transb, &transa, &n, &m, &k, &alpha, <double *>B, &ldb, <double *>A, &lda,
              &beta, C, &ldc)
