# cython: language_level=3
"""Batch normalization, per channel (the compiled twin of ``cytorch.reference``).

Layout contract, shared with the NumPy twin: ``x`` arrives as an ``(M, C)`` C-contiguous view
of the channels-last batch, ``M = N * H * W`` rows (``N`` for a ``(N, C)`` batch), channel
``c`` is column ``c``.  The statistics of channel ``c`` are taken over its ``M`` values:

    mean[c] = sum_r x[r, c] / M,        var[c] = sum_r (x[r, c] - mean[c])**2 / M

(the *biased* variance, as Keras uses for normalising and for the moving average; two passes,
so no cancellation of ``E[x^2] - E[x]^2``).  Sums are accumulated in double whatever the dtype.

Forward is then ``out = (x - mean) * a + b`` with ``a = gamma / sqrt(var + eps)`` and
``b = beta``, per channel (``a``, ``b`` and the mean come in from ``cytorch.functional``).
Backward, with ``xhat = (x - mean) * inv_std``,

    dbeta = sum_r dout,     dgamma = sum_r dout * xhat,
    dx = gamma * inv_std * (dout - dbeta / M - xhat * dgamma / M)     (batch statistics)
    dx = gamma * inv_std * dout                                          (given statistics)

which the entry point writes as ``dx = A * dout + B * (x - mean) + D`` per channel.

Determinism: the rows are cut into blocks of a fixed number of values (``BLOCK_VALUES``); each
block sums its rows into its own row of a ``(blocks, C)`` table, and the blocks are added in
order at the end.  The result therefore does not depend on the number of threads.  Threads
take blocks (``prange`` over blocks); calls on fewer than ``MIN_PARALLEL_WORK`` values
(``_parallel.pxd``) run on one thread.

``cytorch.functional`` validates every argument; the entry points re-check the shapes so that
nothing is read or written out of bounds.
"""
from cython cimport floating
from cython.parallel cimport prange

import numpy as np

from ._parallel cimport threads_for

# Values per block of rows: small enough to balance threads, large enough that the final
# serial sum over blocks costs nothing next to the pass.
cdef Py_ssize_t BLOCK_VALUES = 1 << 12


cdef inline Py_ssize_t _block_rows(Py_ssize_t C) noexcept nogil:
    return BLOCK_VALUES // C if BLOCK_VALUES > C else 1


cdef void _sum_block(const floating *x, const double *center, double *acc, Py_ssize_t r0,
                     Py_ssize_t r1, Py_ssize_t C, bint squares) noexcept nogil:
    """acc[c] = sum over rows r0..r1-1 of x[r, c] (or of (x[r, c] - center[c])**2)."""
    cdef Py_ssize_t r, c
    cdef const floating *row
    cdef double d
    for c in range(C):
        acc[c] = 0
    for r in range(r0, r1):
        row = x + r * C
        if squares:
            for c in range(C):
                d = <double>row[c] - center[c]
                acc[c] += d * d
        else:
            for c in range(C):
                acc[c] += row[c]


cdef void _grad_sums_block(const floating *dout, const floating *x, const floating *mean,
                           double *acc, Py_ssize_t r0, Py_ssize_t r1,
                           Py_ssize_t C) noexcept nogil:
    """acc[c] = sum dout[r, c], acc[C + c] = sum dout[r, c] * (x[r, c] - mean[c])."""
    cdef Py_ssize_t r, c
    cdef const floating *drow
    cdef const floating *xrow
    for c in range(2 * C):
        acc[c] = 0
    for r in range(r0, r1):
        drow = dout + r * C
        xrow = x + r * C
        for c in range(C):
            acc[c] += drow[c]
            acc[C + c] += <double>drow[c] * (xrow[c] - mean[c])


cdef void _affine_block(const floating *x, const floating *mean, const floating *a,
                        const floating *b, floating *out, Py_ssize_t r0, Py_ssize_t r1,
                        Py_ssize_t C) noexcept nogil:
    """out[r, c] = (x[r, c] - mean[c]) * a[c] + b[c]."""
    cdef Py_ssize_t r, c
    for r in range(r0, r1):
        for c in range(C):
            out[r * C + c] = (x[r * C + c] - mean[c]) * a[c] + b[c]


cdef void _dx_block(const floating *dout, const floating *x, const floating *mean,
                    const floating *A, const floating *B, const floating *D, floating *dx,
                    Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t C) noexcept nogil:
    """dx[r, c] = A[c] * dout[r, c] + (B[c] * (x[r, c] - mean[c]) + D[c])."""
    cdef Py_ssize_t r, c, i
    for r in range(r0, r1):
        for c in range(C):
            i = r * C + c
            dx[i] = A[c] * dout[i] + (B[c] * (x[i] - mean[c]) + D[c])


cdef void _reduce(const floating *x, const double *center, double *part, Py_ssize_t M,
                  Py_ssize_t C, bint squares, int num_threads) noexcept nogil:
    """part[b, :] = the sums of block b (see ``_sum_block``), every block."""
    cdef Py_ssize_t rows = _block_rows(C)
    cdef Py_ssize_t nb = (M + rows - 1) // rows, blk
    for blk in prange(nb, schedule="static", num_threads=num_threads):
        _sum_block(x, center, part + blk * C, blk * rows, min(M, (blk + 1) * rows), C, squares)


def batch_norm_stats(const floating[:, ::1] x, double[::1] mean, double[::1] var,
                     int num_threads):
    """mean[c] = sum_r x[r, c] / M;  var[c] = sum_r (x[r, c] - mean[c])**2 / M (biased)."""
    cdef Py_ssize_t M = x.shape[0], C = x.shape[1], c
    if mean.shape[0] != C or var.shape[0] != C:
        raise ValueError(f"mean ({mean.shape[0]}) and var ({var.shape[0]}) must have "
                         f"x's {C} channels")
    if M == 0 or C == 0:
        raise ValueError(f"x must not be empty, got ({M}, {C})")
    cdef Py_ssize_t nb = (M + _block_rows(C) - 1) // _block_rows(C)
    cdef double[:, ::1] part = np.empty((nb, C), dtype=np.float64)
    cdef int T = threads_for(num_threads, M * C)
    with nogil:
        _reduce(&x[0, 0], &mean[0], &part[0, 0], M, C, False, T)
    np.sum(part, axis=0, out=np.asarray(mean))   # blocks added in order: no thread dependence
    for c in range(C):
        mean[c] /= M
    with nogil:
        _reduce(&x[0, 0], &mean[0], &part[0, 0], M, C, True, T)
    np.sum(part, axis=0, out=np.asarray(var))
    for c in range(C):
        var[c] /= M


def batch_norm_apply(const floating[:, ::1] x, const floating[::1] mean,
                     const floating[::1] a, const floating[::1] b, floating[:, ::1] out,
                     int num_threads):
    """out[r, c] = (x[r, c] - mean[c]) * a[c] + b[c]."""
    cdef Py_ssize_t M = x.shape[0], C = x.shape[1]
    if out.shape[0] != M or out.shape[1] != C or mean.shape[0] != C or a.shape[0] != C \
            or b.shape[0] != C:
        raise ValueError("x, out (M, C) and mean, a, b (C,) must agree")
    if M == 0 or C == 0:
        return
    cdef Py_ssize_t rows = _block_rows(C)
    cdef Py_ssize_t nb = (M + rows - 1) // rows, blk
    cdef int T = threads_for(num_threads, M * C)
    for blk in prange(nb, schedule="static", nogil=True, num_threads=T):
        _affine_block(&x[0, 0], &mean[0], &a[0], &b[0], &out[0, 0], blk * rows,
                      min(M, (blk + 1) * rows), C)


def batch_norm_backward(const floating[:, ::1] dout, const floating[:, ::1] x,
                        const floating[::1] mean, const floating[::1] inv_std,
                        const floating[::1] gamma, floating[:, ::1] dx, double[::1] dgamma,
                        double[::1] dbeta, bint batch_stats, int num_threads):
    """dbeta = sum dout; dgamma = sum dout * xhat; dx as in the module docstring.

    ``batch_stats``: the forward pass normalised with the batch's own statistics (training),
    so the mean and variance depend on x and dx has the two extra terms."""
    cdef Py_ssize_t M = x.shape[0], C = x.shape[1], c
    if dout.shape[0] != M or dout.shape[1] != C or dx.shape[0] != M or dx.shape[1] != C \
            or mean.shape[0] != C or inv_std.shape[0] != C or gamma.shape[0] != C \
            or dgamma.shape[0] != C or dbeta.shape[0] != C:
        raise ValueError("dout, x, dx (M, C) and mean, inv_std, gamma, dgamma, dbeta (C,) "
                         "must agree")
    if M == 0 or C == 0:
        raise ValueError(f"x must not be empty, got ({M}, {C})")
    cdef Py_ssize_t rows = _block_rows(C)
    cdef Py_ssize_t nb = (M + rows - 1) // rows, blk
    cdef double[:, ::1] part = np.empty((nb, 2 * C), dtype=np.float64)
    cdef int T = threads_for(num_threads, M * C)
    for blk in prange(nb, schedule="static", nogil=True, num_threads=T):
        _grad_sums_block(&dout[0, 0], &x[0, 0], &mean[0], &part[blk, 0], blk * rows,
                         min(M, (blk + 1) * rows), C)
    sums = np.asarray(part).sum(axis=0)
    cdef double[::1] s = sums
    dtype = np.float32 if floating is float else np.float64
    cdef floating[::1] A = np.empty(C, dtype=dtype)
    cdef floating[::1] B = np.empty(C, dtype=dtype)
    cdef floating[::1] D = np.empty(C, dtype=dtype)
    cdef double g_is
    for c in range(C):
        dbeta[c] = s[c]
        dgamma[c] = s[C + c] * inv_std[c]
        g_is = <double>gamma[c] * inv_std[c]
        A[c] = <floating>g_is
        if batch_stats:
            B[c] = <floating>(-g_is * inv_std[c] * dgamma[c] / M)
            D[c] = <floating>(-g_is * dbeta[c] / M)
        else:
            B[c] = 0
            D[c] = 0
    for blk in prange(nb, schedule="static", nogil=True, num_threads=T):
        _dx_block(&dout[0, 0], &x[0, 0], &mean[0], &A[0], &B[0], &D[0], &dx[0, 0],
                  blk * rows, min(M, (blk + 1) * rows), C)
