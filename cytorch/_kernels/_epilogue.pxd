# The fused epilogue of the conv kernels (``_conv.pyx``, ``_direct.pyx``, ``_blocked.pyx``,
# ``_winograd.pyx``; each calls ``cy_mathfn_select`` in its ``_select_isa``): the activation
# applied while a block of output is still in cache (the bias is already in it: each kernel
# starts its sums from b), and the activation's derivative applied in the pass of backward that
# first reads dout, which also sums db.  Twins: ``cytorch.reference.conv2d_forward`` and
# ``conv2d_backward`` with ``activation=`` ("conv, then + bias, then f").
#
# The element functions are those of ``cytorch.activations`` on the compiled backend: the row
# functions of ``_mathfn.h`` (vectorised exp/tanh/sigmoid, branch-free selects), in the
# instruction-set variant the module selected with ``select_isa`` -- so a fused layer computes
# the same bits as the kernel's linear output followed by ``cytorch.activations``.  Every
# derivative is written through the output y = f(z), so backward keeps no copy of z:
#
#     linear   y = z                                   dz = dout
#     relu     y = max(z, 0)                           dz = dout * [y > 0]
#     tanh     y = tanh(z)                             dz = dout * (1 - y * y)
#     sigmoid  y = 1 / (1 + exp(-z))                   dz = dout * y * (1 - y)
#     elu      y = z if z > 0 else exp(z) - 1          dz = dout * (1 if y > 0 else y + 1)
#     leaky_relu  y = z if z > 0 else 0.2 z            dz = dout * (1 if y > 0 else 0.2)
#     softplus y = log(1 + exp(z))                     dz = dout * (1 - exp(-y))
#
# (Keras's strings: elu's alpha 1, leaky_relu's slope 0.2.)  gelu and silu need z itself for
# their derivative and stay outside the kernels.
from cython cimport floating
from libc.string cimport memcpy

cdef extern from "_mathfn.h" nogil:
    int cy_isa_best()
    int cy_mathfn_select(int isa)
    void cy_act_forward_f(int code, const float *x, float *y, Py_ssize_t n,
                          float alpha) noexcept
    void cy_act_forward_d(int code, const double *x, double *y, Py_ssize_t n,
                          double alpha) noexcept
    void cy_bias_act_backward_f(int code, const float *dout, const float *y, float *dz,
                                Py_ssize_t rows, Py_ssize_t cols, float alpha,
                                double *db) noexcept
    void cy_bias_act_backward_d(int code, const double *dout, const double *y, double *dz,
                                Py_ssize_t rows, Py_ssize_t cols, double alpha,
                                double *db) noexcept
    enum:
        CY_ACT_LINEAR, CY_ACT_RELU, CY_ACT_ELU, CY_ACT_LEAKY_RELU

# ``cytorch._kernels.EPILOGUES`` lists the names in the order of these codes.
cdef enum:
    ACT_LINEAR = CY_ACT_LINEAR
    ACT_RELU = CY_ACT_RELU


cdef inline double act_alpha(int act) noexcept nogil:
    """The parameter of the activation's Keras string: elu's alpha, leaky_relu's slope."""
    if act == CY_ACT_ELU:
        return 1.0
    if act == CY_ACT_LEAKY_RELU:
        return 0.2
    return 0.0


cdef inline void apply_activation(floating *dst, const floating *src, Py_ssize_t n,
                                  int act) noexcept nogil:
    """dst[i] = f(src[i]) for i < n; dst may be src (in place)."""
    if act == ACT_LINEAR:
        if dst != src:
            memcpy(dst, src, n * sizeof(floating))
    elif floating is float:
        cy_act_forward_f(act, src, dst, n, <float>act_alpha(act))
    else:
        cy_act_forward_d(act, src, dst, n, act_alpha(act))


cdef inline void derivative_db(floating *dz, const floating *dout, const floating *y,
                               Py_ssize_t rows, Py_ssize_t K, int act,
                               double *db) noexcept nogil:
    """dz (rows, K) = dout * f'(y), then db[k] += the column sums of dz (in double), while the
    block is in cache.  With ``act`` linear dz is not written (the caller reads dout itself).

    Both loops are ``_mathfn.h``'s (``cy_bias_act_backward``), in the module's variant, on
    blocks of about 2,048 values: the derivative over the block, then its column sums, a few
    rows at a time read as one row of whole vectors (``cy_col_sums``).  The plain double loop
    over r < rows, k < K this replaces was compiled for the build's baseline (SSE2), around an
    inner loop of K = 6 or 16 iterations; through Winograd's path it made a VGG-ish relu step
    26.6 ms against 18.9 ms with vector loops.  Measured on 2M float32 values
    (AMD EPYC Zen 5, avx512, CPU time): K = 6 with tanh' 0.92 -> 0.50 ms, K = 64 0.61 -> 0.55
    ms, db alone (linear) at K = 64 0.25 -> 0.12 ms; LeNet c1 forward + backward, one thread,
    0.87-0.94x of its time with every activation (avx2: 0.88-0.95x)."""
    if act == ACT_LINEAR:
        dz = NULL            # db of dout, in the blocks a fused activation would use
    if floating is float:
        cy_bias_act_backward_f(act, dout, y, dz, rows, K, <float>act_alpha(act), db)
    else:
        cy_bias_act_backward_d(act, dout, y, dz, rows, K, act_alpha(act), db)
