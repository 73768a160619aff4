# The fused epilogue of the conv kernels (``_conv.pyx``, ``_direct.pyx``): the activation
# applied while a block of output is still in cache (the bias is already in it: each kernel
# starts its sums from b), and the activation's derivative applied in the pass of backward that
# first reads dout, which also sums db.  Twins: ``cytorch.reference.conv2d_forward`` and
# ``conv2d_backward`` with ``activation=`` ("conv, then + bias, then f").
#
# Inline functions only (as ``_parallel.pxd``): each module compiles its own copy, and the
# loops are plain C that GCC vectorises for the build's baseline (SSE2 on x86-64); an epilogue
# touches every output number once, in cache, so it is cheap next to the convolution itself.
#
# Every derivative is written through the output y = f(z), so backward needs no copy of z:
#
#     linear   y = z                 dz = dout
#     relu     y = max(z, 0)         dz = dout * [y > 0]
#
# The operations are those of ``cytorch.activations`` in the same order, so the fused and the
# unfused paths give the same bits: ``relu`` is ``0 if z <= 0 else z`` (NaN stays NaN and -0.0
# becomes +0.0, like ``np.maximum(z, 0)``), and its derivative multiplies dout by 1 or 0 (like
# ``dout * (y > 0)``: -0.0 where dout < 0, NaN where dout is inf).
from cython cimport floating

# The activation codes: the index of each name in ``cytorch._kernels.EPILOGUES``.
cdef enum:
    ACT_LINEAR = 0
    ACT_RELU = 1


cdef inline void apply_activation(floating *dst, const floating *src, Py_ssize_t n,
                                  int act) noexcept nogil:
    """dst[i] = f(src[i]) for i < n; dst may be src (in place)."""
    cdef Py_ssize_t i
    cdef floating v
    if act == ACT_RELU:
        for i in range(n):
            v = src[i]
            dst[i] = 0 if v <= 0 else v
    elif dst != src:
        for i in range(n):
            dst[i] = src[i]


cdef inline void derivative_db(floating *dz, const floating *dout, const floating *y,
                               Py_ssize_t rows, Py_ssize_t K, int act,
                               double *db) noexcept nogil:
    """dz (rows, K) = dout * f'(y), then db[k] += the column sums of dz (in double), while the
    block is in cache.  With ``act`` linear dz is not written (the caller reads dout itself).

    Two loops, not one: the elementwise one vectorises over the whole contiguous block, which
    a loop that also adds each value into db[k] does not (measured on LeNet's layers, one
    thread: the single loop cost 3-4x the NumPy pass it replaced)."""
    cdef Py_ssize_t r, k, i, n = rows * K
    cdef const floating *src = dout
    if act == ACT_RELU:
        for i in range(n):
            dz[i] = dout[i] * <floating>(y[i] > <floating>0)
        src = dz
    for r in range(rows):
        for k in range(K):
            db[k] += src[r * K + k]
