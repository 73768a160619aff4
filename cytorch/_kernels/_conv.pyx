# cython: language_level=3
"""conv2d forward and backward by im2col + GEMM (the compiled twin of ``cytorch.reference``).

Layout contract, shared with the NumPy twin:

* ``x``: ``(N, H, W, C)`` channels-last, C-contiguous; ``w``: ``(kh, kw, C, K)``; ``b``: ``(K,)``;
* one im2col row per output position, ordered ``(kh, kw, C)`` like ``w.reshape(kh*kw*C, K)``,
  so ``cols @ W`` is already the ``(N, H_out, W_out, K)`` output: no transpose anywhere;
* padding arrives resolved; only ``pad_top`` and ``pad_left`` are needed here, because a window
  row or column outside ``[0, H) x [0, W)`` simply reads as zero (bottom/right padding is
  implied by the output shape);
* ``H_out = floor((H + P_top + P_bottom - kh) / sh) + 1``, same for W.

How the work is split on a small multicore machine: im2col and col2im are memory-bound loops,
parallel over the images of a chunk with OpenMP; each chunk then makes one large GEMM that
OpenBLAS runs on its own threads.  The two never run at the same time, so they do not
oversubscribe the cores.  The column buffer is bounded (``COL_BUDGET`` elements, at least one
image) and reused: in backward it first holds ``cols`` for ``dW = cols^T @ dout`` and then
``dcols = dout @ W^T`` for col2im.

``cytorch.functional`` validates every argument; the entry points here only re-check that the
shapes agree (cheap) so that no call can read or write out of bounds.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memset

import numpy as np

from ._blas cimport gemm

# Elements of the im2col buffer (64 MiB in float32, 128 MiB in float64); at least one image.
# Bigger chunks mean fewer, larger GEMMs, which OpenBLAS runs faster.
cdef Py_ssize_t COL_BUDGET = 1 << 24


cdef inline void _copy(floating *dst, const floating *src, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t t
    for t in range(n):
        dst[t] = src[t]


cdef inline void _add(floating *dst, const floating *src, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t t
    for t in range(n):
        dst[t] += src[t]


cdef void _im2col_image(const floating *xn, floating *cols,
                        Py_ssize_t H, Py_ssize_t W, Py_ssize_t C,
                        Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                        Py_ssize_t pt, Py_ssize_t pl,
                        Py_ssize_t H_out, Py_ssize_t W_out) noexcept nogil:
    """Unfold one image ``xn`` (H, W, C) into ``cols`` (H_out * W_out, kh * kw * C).

    For one window row ``a`` the kw * C values ``x[ih, iw0:iw0 + kw, :]`` are contiguous in
    memory, so each window is kh copies of a contiguous span, clipped to the image (the
    clipped part, the zero padding, is written as zeros).
    """
    cdef Py_ssize_t R = kh * kw * C, span = kw * C
    cdef Py_ssize_t oh, ow, a, ih, iw0, jlo, jhi
    cdef floating *dst
    for oh in range(H_out):
        for ow in range(W_out):
            iw0 = ow * sw - pl
            jlo = 0 if iw0 >= 0 else -iw0          # first kernel column inside the image
            jhi = kw if iw0 + kw <= W else W - iw0  # one past the last
            for a in range(kh):
                dst = cols + (oh * W_out + ow) * R + a * span
                ih = oh * sh - pt + a
                if ih < 0 or ih >= H or jlo >= jhi:
                    memset(dst, 0, span * sizeof(floating))
                    continue
                if jlo > 0:
                    memset(dst, 0, jlo * C * sizeof(floating))
                _copy(dst + jlo * C, xn + (ih * W + iw0 + jlo) * C, (jhi - jlo) * C)
                if jhi < kw:
                    memset(dst + jhi * C, 0, (kw - jhi) * C * sizeof(floating))


cdef void _col2im_image(const floating *cols, floating *dxn,
                        Py_ssize_t H, Py_ssize_t W, Py_ssize_t C,
                        Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                        Py_ssize_t pt, Py_ssize_t pl,
                        Py_ssize_t H_out, Py_ssize_t W_out) noexcept nogil:
    """The adjoint of ``_im2col_image``: ``dxn`` (H, W, C) = sum of the rows of ``cols`` put
    back where they were read from; what fell into the padding is dropped."""
    cdef Py_ssize_t R = kh * kw * C, span = kw * C
    cdef Py_ssize_t oh, ow, a, ih, iw0, jlo, jhi
    memset(dxn, 0, H * W * C * sizeof(floating))
    for oh in range(H_out):
        for ow in range(W_out):
            iw0 = ow * sw - pl
            jlo = 0 if iw0 >= 0 else -iw0
            jhi = kw if iw0 + kw <= W else W - iw0
            if jlo >= jhi:
                continue
            for a in range(kh):
                ih = oh * sh - pt + a
                if 0 <= ih < H:
                    _add(dxn + (ih * W + iw0 + jlo) * C,
                         cols + (oh * W_out + ow) * R + a * span + jlo * C, (jhi - jlo) * C)


def _check_shapes(x, w, b, out, int sh, int sw, int pt, int pl):
    """Raise ValueError unless the arrays agree (the last guard before code without checks)."""
    N, H, W, C = x.shape[:4]
    kh, kw, C_w, K = w.shape[:4]
    if C_w != C or b.shape[0] != K or out.shape[0] != N or out.shape[3] != K:
        raise ValueError(f"conv2d kernel: inconsistent shapes x {tuple(x.shape[:4])}, "
                         f"w {tuple(w.shape[:4])}, b {tuple(b.shape[:1])}, "
                         f"out {tuple(out.shape[:4])}")
    if sh < 1 or sw < 1 or pt < 0 or pl < 0 or min(N, H, W, C, kh, kw, K) < 1 \
            or out.shape[1] < 1 or out.shape[2] < 1:
        raise ValueError(f"conv2d kernel: bad geometry strides ({sh}, {sw}), pads ({pt}, {pl}), "
                         f"x {tuple(x.shape[:4])}, w {tuple(w.shape[:4])}, "
                         f"out {tuple(out.shape[:4])}")


def _check_like(a, b, name_a, name_b):
    if tuple(a.shape[:4]) != tuple(b.shape[:4]):
        raise ValueError(f"conv2d kernel: {name_a} {tuple(a.shape[:4])} must have the shape "
                         f"of {name_b} {tuple(b.shape[:4])}")


cdef Py_ssize_t _chunk(Py_ssize_t N, Py_ssize_t rows_per_image, Py_ssize_t R):
    """Images per chunk so that the column buffer stays within COL_BUDGET (at least 1)."""
    return max(1, min(N, COL_BUDGET // (rows_per_image * R)))


def conv2d_forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                   const floating[::1] b, floating[:, :, :, ::1] out,
                   int sh, int sw, int pt, int pl, int num_threads):
    """Fill ``out`` (N, H_out, W_out, K) with ``im2col(x) @ w.reshape(-1, K) + b``.

    ``pt``/``pl`` are the top/left zero padding; ``num_threads`` the OpenMP team size.
    """
    _check_shapes(x, w, b, out, sh, sw, pt, pl)
    cdef Py_ssize_t N = x.shape[0], H = x.shape[1], W = x.shape[2], C = x.shape[3]
    cdef Py_ssize_t kh = w.shape[0], kw = w.shape[1], K = w.shape[3]
    cdef Py_ssize_t H_out = out.shape[1], W_out = out.shape[2]
    cdef Py_ssize_t P = H_out * W_out, R = kh * kw * C
    cdef Py_ssize_t chunk = _chunk(N, P, R), n0, nb, i, r, k
    cdef floating[:, ::1] cols = np.empty((chunk * P, R),
                                          dtype=np.float32 if floating is float else np.float64)
    cdef floating *outp
    cdef floating one = 1
    with nogil:
        n0 = 0
        while n0 < N:
            nb = min(chunk, N - n0)
            for i in prange(nb, schedule="static", num_threads=num_threads):
                _im2col_image(&x[n0 + i, 0, 0, 0], &cols[i * P, 0], H, W, C, kh, kw, sh, sw,
                              pt, pl, H_out, W_out)
            # out rows start as the bias, then GEMM adds cols @ W to them (beta = 1)
            outp = &out[n0, 0, 0, 0]
            for r in range(nb * P):
                for k in range(K):
                    outp[r * K + k] = b[k]
            gemm(ord('n'), ord('n'), <int>(nb * P), <int>K, <int>R, one, &cols[0, 0], <int>R,
                 &w[0, 0, 0, 0], <int>K, one, outp, <int>K)
            n0 += nb


def conv2d_backward(const floating[:, :, :, ::1] dout, const floating[:, :, :, ::1] x,
                    const floating[:, :, :, ::1] w, floating[:, :, :, ::1] dx,
                    floating[:, :, :, ::1] dw, floating[::1] db,
                    int sh, int sw, int pt, int pl, int num_threads):
    """Fill ``dx`` (like x), ``dw`` (like w) and ``db`` (K,) from ``dout`` (N, H_out, W_out, K).

    Per chunk of images: ``dW += cols^T @ dout``; ``dcols = dout @ W^T``; ``dx = col2im(dcols)``;
    and ``db = dout`` summed over all rows (in double precision).
    """
    _check_shapes(x, w, db, dout, sh, sw, pt, pl)
    _check_like(dx, x, "dx", "x")
    _check_like(dw, w, "dw", "w")
    cdef Py_ssize_t N = x.shape[0], H = x.shape[1], W = x.shape[2], C = x.shape[3]
    cdef Py_ssize_t kh = w.shape[0], kw = w.shape[1], K = w.shape[3]
    cdef Py_ssize_t H_out = dout.shape[1], W_out = dout.shape[2]
    cdef Py_ssize_t P = H_out * W_out, R = kh * kw * C
    cdef Py_ssize_t chunk = _chunk(N, P, R), n0, nb, i, r, k
    cdef floating[:, ::1] cols = np.empty((chunk * P, R),
                                          dtype=np.float32 if floating is float else np.float64)
    cdef double[::1] db_acc = np.zeros(K, dtype=np.float64)
    cdef const floating *doutp
    cdef floating one = 1, zero = 0
    with nogil:
        doutp = &dout[0, 0, 0, 0]
        for r in range(N * P):
            for k in range(K):
                db_acc[k] += doutp[r * K + k]
        for k in range(K):
            db[k] = <floating>db_acc[k]
        n0 = 0
        while n0 < N:
            nb = min(chunk, N - n0)
            doutp = &dout[n0, 0, 0, 0]
            for i in prange(nb, schedule="static", num_threads=num_threads):
                _im2col_image(&x[n0 + i, 0, 0, 0], &cols[i * P, 0], H, W, C, kh, kw, sh, sw,
                              pt, pl, H_out, W_out)
            # dW (R x K) = cols^T (R x rows) @ dout (rows x K), accumulated over chunks
            gemm(ord('t'), ord('n'), <int>R, <int>K, <int>(nb * P), one, &cols[0, 0], <int>R,
                 doutp, <int>K, zero if n0 == 0 else one, &dw[0, 0, 0, 0], <int>K)
            # dcols (rows x R) = dout (rows x K) @ W^T (K x R), into the same buffer
            gemm(ord('n'), ord('t'), <int>(nb * P), <int>R, <int>K, one, doutp, <int>K,
                 &w[0, 0, 0, 0], <int>K, zero, &cols[0, 0], <int>R)
            for i in prange(nb, schedule="static", num_threads=num_threads):
                _col2im_image(&cols[i * P, 0], &dx[n0 + i, 0, 0, 0], H, W, C, kh, kw, sh, sw,
                              pt, pl, H_out, W_out)
            n0 += nb
