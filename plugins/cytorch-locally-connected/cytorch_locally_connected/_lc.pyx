# cython: language_level=3
"""Compiled locally-connected 2-D kernel: forward, and backward (dx, dw, db).

Layout contract, identical to the NumPy twin ``cytorch_locally_connected.reference``:

* ``x``   (N, H, W, C) channels-last, C-contiguous;
* ``w``   (H_out, W_out, P, K) with P = kh * kw * C, window rows ordered (kh, kw, C);
* ``b``   (H_out, W_out, K);
* ``out`` (N, H_out, W_out, K);  H_out = floor((H + P_top + P_bottom - kh) / sh) + 1.

Every output position (i, j) is one small GEMM, ``out[:, i, j, :] = cols_ij @ w[i, j] + b[i, j]``,
where ``cols_ij`` (N, P) is the window under (i, j) for every image.  With channels-last data the
slice ``out[:, i, j, :]`` is an (N, K) matrix whose rows are ``H_out * W_out * K`` elements
apart, which BLAS takes as its leading dimension: results land in place, no transpose.

Parallel work (OpenMP, ``num_threads``):

* forward, dw and db: ``prange`` over output positions.  Each position owns its slice of
  ``out``, ``dw`` and ``db``, so threads never write the same element;
* dx: windows of neighbouring positions overlap, so two positions may add into the same dx
  element; ``prange`` runs over blocks of images instead, and each image belongs to one thread.

Scheduling is dynamic: every iteration is one GEMM (microseconds), so handing them out one at
a time costs nothing measurable, and on a busy machine a thread that the OS has parked does not
hold back half of the work as it would with a static split.

Scratch (one ``nb x P`` window buffer per thread, ``nb`` images at a time) is allocated by the
Python caller, so a failed allocation is a MemoryError in Python rather than a crash here.
Arguments are validated by ``cytorch_locally_connected.functional``; the entry points below
re-check that the shapes agree (a last guard), and nothing in the nogil code raises.
"""
from cython cimport floating
from cython.parallel cimport prange, parallel, threadid
from libc.string cimport memcpy, memset
from scipy.linalg.cython_blas cimport dgemm, sgemm

import numpy as np


cdef inline void gemm(char transa, char transb, int M, int N, int K, floating alpha,
                      const floating* A, int lda, const floating* B, int ldb,
                      floating beta, floating* C, int ldc) noexcept nogil:
    """Row-major C := alpha*op(A)@op(B) + beta*C, with op(A) (M x K), op(B) (K x N), C (M x N).

    BLAS is column-major, and a row-major matrix read column-major is its transpose, so we ask
    BLAS for C^T = op(B)^T @ op(A)^T: the operands swap places, the transposes stay put.
    """
    if floating is float:
        sgemm(&transb, &transa, &N, &M, &K, &alpha, <float*>B, &ldb, <float*>A, &lda,
              &beta, C, &ldc)
    else:
        dgemm(&transb, &transa, &N, &M, &K, &alpha, <double*>B, &ldb, <double*>A, &lda,
              &beta, C, &ldc)


cdef inline void window_columns(Py_ssize_t j, Py_ssize_t W, int kw, int sw, int pl,
                                Py_ssize_t* c_lo, Py_ssize_t* c_hi) noexcept nogil:
    """Window columns c in [c_lo, c_hi) of position column j fall inside the input."""
    cdef Py_ssize_t x0 = j * sw - pl          # input column under window column 0
    c_lo[0] = -x0 if x0 < 0 else 0
    c_hi[0] = W - x0 if W - x0 < kw else kw
    if c_hi[0] < c_lo[0]:
        c_hi[0] = c_lo[0]


cdef inline void gather(const floating[:, :, :, ::1] x, floating* cols,
                        Py_ssize_t n0, Py_ssize_t m, Py_ssize_t i, Py_ssize_t j,
                        int kh, int kw, int sh, int sw, int pt, int pl) noexcept nogil:
    """im2col for one position: cols[r, (a*kw + c)*C + ch] = x[n0 + r, i*sh - pt + a,
    j*sw - pl + c, ch] for r < m, zero where the window hangs over the padding."""
    cdef Py_ssize_t H = x.shape[1], W = x.shape[2], C = x.shape[3]
    cdef Py_ssize_t P = kh * kw * C, r, a, y, t, c_lo, c_hi
    cdef Py_ssize_t x0 = j * sw - pl
    cdef floating* row
    cdef const floating* src
    window_columns(j, W, kw, sw, pl, &c_lo, &c_hi)
    for r in range(m):
        for a in range(kh):
            row = cols + r * P + a * kw * C            # window row a: kw * C values
            y = i * sh - pt + a
            if y < 0 or y >= H or c_hi == c_lo:
                memset(row, 0, kw * C * sizeof(floating))
                continue
            # columns [c_lo, c_hi) of this window row are one contiguous run of the input;
            # runs are short (kw * C values), where a plain loop beats a memcpy call
            for t in range(c_lo * C):
                row[t] = <floating>0
            row = row + c_lo * C
            src = &x[n0 + r, y, x0 + c_lo, 0]
            for t in range((c_hi - c_lo) * C):
                row[t] = src[t]
            row = row + (c_hi - c_lo) * C
            for t in range((kw - c_hi) * C):
                row[t] = <floating>0


cdef inline void scatter_add(floating[:, :, :, ::1] dx, const floating* dcols,
                             Py_ssize_t n0, Py_ssize_t m, Py_ssize_t i, Py_ssize_t j,
                             int kh, int kw, int sh, int sw, int pt, int pl) noexcept nogil:
    """col2im for one position, the adjoint of ``gather``: add dcols back where the window
    was read; values that came from padding have nowhere to go and are dropped."""
    cdef Py_ssize_t H = dx.shape[1], W = dx.shape[2], C = dx.shape[3]
    cdef Py_ssize_t P = kh * kw * C, r, a, y, t, c_lo, c_hi
    cdef Py_ssize_t x0 = j * sw - pl
    cdef const floating* src
    cdef floating* dst
    window_columns(j, W, kw, sw, pl, &c_lo, &c_hi)
    if c_hi == c_lo:
        return
    for r in range(m):
        for a in range(kh):
            y = i * sh - pt + a
            if y < 0 or y >= H:
                continue
            src = dcols + r * P + (a * kw + c_lo) * C
            dst = &dx[n0 + r, y, x0 + c_lo, 0]
            for t in range((c_hi - c_lo) * C):
                dst[t] += src[t]


cdef void forward_core(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                       const floating[:, :, ::1] b, bint has_bias, floating[:, :, :, ::1] out,
                       floating[:, ::1] scratch, int kh, int kw, int sh, int sw, int pt, int pl,
                       int nb, int num_threads) noexcept nogil:
    cdef Py_ssize_t N = x.shape[0], H_out = w.shape[0], W_out = w.shape[1]
    cdef int P = <int>w.shape[2], K = <int>w.shape[3]
    cdef int ld_out = <int>(H_out * W_out * K)      # row step of the (N, K) slice out[:, i, j]
    cdef Py_ssize_t pos, i, j, n0, r, m
    cdef floating beta
    cdef floating* cols
    with parallel(num_threads=num_threads):
        for pos in prange(H_out * W_out, schedule="dynamic"):
            i = pos // W_out
            j = pos % W_out
            cols = &scratch[threadid(), 0]
            n0 = 0
            while n0 < N:
                m = N - n0 if N - n0 < nb else nb
                gather(x, cols, n0, m, i, j, kh, kw, sh, sw, pt, pl)
                beta = <floating>0
                if has_bias:             # seed the output with the bias, then GEMM adds to it
                    for r in range(m):
                        memcpy(&out[n0 + r, i, j, 0], &b[i, j, 0], K * sizeof(floating))
                    beta = <floating>1
                gemm(ord('n'), ord('n'), <int>m, K, P, <floating>1, cols, P, &w[i, j, 0, 0], K,
                     beta, &out[n0, i, j, 0], ld_out)
                n0 = n0 + nb


cdef void backward_params_core(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] dout,
                               floating[:, :, :, ::1] dw, floating[:, :, ::1] db, bint has_bias,
                               floating[:, ::1] scratch, int kh, int kw, int sh, int sw,
                               int pt, int pl, int nb, int num_threads) noexcept nogil:
    cdef Py_ssize_t N = x.shape[0], H_out = dw.shape[0], W_out = dw.shape[1]
    cdef int P = <int>dw.shape[2], K = <int>dw.shape[3]
    cdef int ld_out = <int>(H_out * W_out * K)
    cdef Py_ssize_t pos, i, j, n0, n, k, m
    cdef floating beta, acc
    cdef floating* cols
    with parallel(num_threads=num_threads):
        for pos in prange(H_out * W_out, schedule="dynamic"):
            i = pos // W_out
            j = pos % W_out
            cols = &scratch[threadid(), 0]
            if has_bias:                 # db[i, j] = sum over the batch of dout[:, i, j]
                for k in range(K):
                    acc = <floating>0
                    for n in range(N):
                        acc = acc + dout[n, i, j, k]
                    db[i, j, k] = acc
            n0 = 0
            while n0 < N:                # dw[i, j] = cols_ij^T @ dout[:, i, j], block by block
                m = N - n0 if N - n0 < nb else nb
                gather(x, cols, n0, m, i, j, kh, kw, sh, sw, pt, pl)
                beta = <floating>0 if n0 == 0 else <floating>1
                gemm(ord('t'), ord('n'), P, K, <int>m, <floating>1, cols, P, &dout[n0, i, j, 0],
                     ld_out, beta, &dw[i, j, 0, 0], K)
                n0 = n0 + nb


cdef void backward_input_core(const floating[:, :, :, ::1] dout, const floating[:, :, :, ::1] w,
                              floating[:, :, :, ::1] dx, floating[:, ::1] scratch,
                              int kh, int kw, int sh, int sw, int pt, int pl, int nb,
                              int num_threads) noexcept nogil:
    cdef Py_ssize_t N = dx.shape[0], H_out = w.shape[0], W_out = w.shape[1]
    cdef int P = <int>w.shape[2], K = <int>w.shape[3]
    cdef int ld_out = <int>(H_out * W_out * K)
    cdef Py_ssize_t blocks = (N + nb - 1) // nb
    cdef Py_ssize_t blk, n0, m, i, j
    cdef floating* dcols
    with parallel(num_threads=num_threads):
        for blk in prange(blocks, schedule="dynamic"):
            n0 = blk * nb
            m = N - n0 if N - n0 < nb else nb
            dcols = &scratch[threadid(), 0]
            for i in range(H_out):
                for j in range(W_out):
                    # dcols (m, P) = dout[n0:n0+m, i, j] (m, K) @ w[i, j]^T (K, P)
                    gemm(ord('n'), ord('t'), <int>m, P, K, <floating>1, &dout[n0, i, j, 0], ld_out,
                         &w[i, j, 0, 0], K, <floating>0, dcols, P)
                    scatter_add(dx, dcols, n0, m, i, j, kh, kw, sh, sw, pt, pl)


# -- thin Python entry points (arguments come validated from functional.py) -------------------

def _block(Py_ssize_t N, Py_ssize_t P, Py_ssize_t cap):
    """Images per GEMM so one thread's window buffer holds at most ``cap`` values."""
    return int(max(1, min(N, cap // max(P, 1))))


def _check(x_shape, w_shape, b_shape, dout_shape, int kh, int kw, int sh, int sw, int pt,
           int pl, int num_threads):
    """The last guard before code without bounds checks: raise ValueError unless the arrays
    and numbers agree.  ``functional.py`` has checked all of it already, with better messages;
    this only keeps a direct call with inconsistent arguments from reading out of bounds (the
    window itself is clipped to the input in ``gather``/``scatter_add``, whatever the padding)."""
    N, H, W, C = x_shape[:4]
    H_out, W_out, P, K = w_shape[:4]
    ok = (min(kh, kw, sh, sw, num_threads) >= 1 and min(pt, pl) >= 0 and P == kh * kw * C
          and min(N, H, W, C, H_out, W_out, K) >= 1)
    if b_shape is not None:
        ok = ok and tuple(b_shape[:3]) == (H_out, W_out, K)
    if dout_shape is not None:
        ok = ok and tuple(dout_shape[:4]) == (N, H_out, W_out, K)
    if not ok:
        raise ValueError(f"locally_connected2d kernel: inconsistent arguments x "
                         f"{tuple(x_shape[:4])}, w {tuple(w_shape[:4])}, b "
                         f"{None if b_shape is None else tuple(b_shape[:3])}, dout "
                         f"{None if dout_shape is None else tuple(dout_shape[:4])}, kernel "
                         f"{kh}x{kw}, strides {sh}x{sw}, padding top {pt} left {pl}, "
                         f"{num_threads} threads")


def forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w, b,
            int kh, int kw, int sh, int sw, int pt, int pl, int num_threads,
            Py_ssize_t cap=1 << 17):
    """out (N, H_out, W_out, K) = locally-connected x * w (+ b); see the module docstring."""
    cdef Py_ssize_t N = x.shape[0], P = w.shape[2]
    dtype = np.float32 if floating is float else np.float64
    cdef int nb = _block(N, P, cap)
    cdef bint has_bias = b is not None
    cdef const floating[:, :, ::1] b_view = b if has_bias else np.zeros((1, 1, 1), dtype)
    _check(x.shape, w.shape, b_view.shape if has_bias else None, None,
           kh, kw, sh, sw, pt, pl, num_threads)
    out = np.empty((N, w.shape[0], w.shape[1], w.shape[3]), dtype=dtype)
    scratch = np.empty((num_threads, nb * P), dtype=dtype)
    cdef floating[:, :, :, ::1] out_view = out
    cdef floating[:, ::1] scratch_view = scratch
    with nogil:
        forward_core(x, w, b_view, has_bias, out_view, scratch_view, kh, kw, sh, sw, pt, pl,
                     nb, num_threads)
    return out


def backward(const floating[:, :, :, ::1] dout, const floating[:, :, :, ::1] x,
             const floating[:, :, :, ::1] w, bint has_bias, int kh, int kw, int sh, int sw,
             int pt, int pl, int num_threads, Py_ssize_t cap=1 << 17):
    """(dx, dw, db) for dout (N, H_out, W_out, K); db is None when has_bias is False."""
    _check(x.shape, w.shape, None, dout.shape, kh, kw, sh, sw, pt, pl, num_threads)
    cdef Py_ssize_t N = x.shape[0], P = w.shape[2]
    dtype = np.float32 if floating is float else np.float64
    cdef int nb = _block(N, P, cap)
    # dx runs over blocks of images: make enough blocks that every thread gets one
    cdef int nb_dx = min(nb, max(1, (N + num_threads - 1) // num_threads))
    dx = np.zeros((x.shape[0], x.shape[1], x.shape[2], x.shape[3]), dtype=dtype)
    dw = np.empty((w.shape[0], w.shape[1], w.shape[2], w.shape[3]), dtype=dtype)
    db = np.empty((w.shape[0], w.shape[1], w.shape[3]), dtype=dtype) if has_bias \
        else np.zeros((1, 1, 1), dtype=dtype)
    scratch = np.empty((num_threads, nb * P), dtype=dtype)
    cdef floating[:, :, :, ::1] dx_view = dx
    cdef floating[:, :, :, ::1] dw_view = dw
    cdef floating[:, :, ::1] db_view = db
    cdef floating[:, ::1] scratch_view = scratch
    with nogil:
        backward_params_core(x, dout, dw_view, db_view, has_bias, scratch_view,
                             kh, kw, sh, sw, pt, pl, nb, num_threads)
        backward_input_core(dout, w, dx_view, scratch_view, kh, kw, sh, sw, pt, pl, nb_dx,
                            num_threads)
    return dx, dw, (db if has_bias else None)
