# cython: language_level=3
"""Depthwise conv2d forward and backward (the NumPy twins:
``cytorch.reference.depthwise_conv2d_forward`` / ``_backward``).

Layout contract, shared with the twins:

* ``x``: ``(N, H, W, C)`` channels-last, C-contiguous; ``w``: ``(kh, kw, C, dm)``, dm the depth
  multiplier; ``b``: ``(C * dm,)``; ``out``: ``(N, H_out, W_out, C * dm)``;
* ``out[n, i, j, c*dm + m] = b[c*dm + m]
  + sum_{a, b} x[n, i*sh + a*dh - pt, j*sw + b*dw - pl, c] * w[a, b, c, m]``
  (a window cell outside the image reads as zero; padding arrives resolved, top and left; the
  bottom/right padding is implied by the output shape);
* dx is the adjoint (every window cell adds dout times its weight back where it was read
  from), ``dw[a, b, c, m]`` sums x times dout over the batch and the output pixels, ``db``
  sums dout.

How.  Output channel ``j = c*dm + m`` depends on input channel c only, so the channels go in
the vector lanes: each image is copied once, zero-padded, with every input channel repeated
dm times (``xe[row, col, j] = x[row - pt, col - pl, j // dm]``; a plain padded copy when
dm = 1), and a window tap is then a whole vector, for any stride and dilation.  The inner loops
(``_depthwise.h``) hold up to 8 output pixels (forward) or 9 taps (dW, dx) in vector
registers; dx adds every output pixel's contribution into a padded copy (the same loop for
every stride), and the dm lanes of each channel are summed at the end.  Compared with running
a one-channel conv2d per channel (what ``cytorch.functional`` did before), no channel is
copied out of the batch, and every vector lane works.

Threads: the batch is cut into work units of whole images (``_conv._units``); dW and db are
summed per unit and the units added in unit order, so the result does not depend on which
thread ran what.  ``cytorch.functional`` validates every argument; the entry points re-check
that the shapes agree (cheap) so that no call can read or write out of bounds.
"""
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.string cimport memset

import numpy as np

from . import ISA_NAMES, isa_index, requested_isa, variants_up_to
from ._conv import _units

cdef extern from "_depthwise.h" nogil:
    ctypedef struct cy_dw_kernels_f:
        void (*fwd)(float *out, Py_ssize_t ldo, const float *x, Py_ssize_t xs,
                    const Py_ssize_t *off, const float *w, Py_ssize_t ldw, const float *init,
                    Py_ssize_t nt, int pb) noexcept nogil
        void (*dw)(float *acc, Py_ssize_t lda, const float *x, Py_ssize_t xr, Py_ssize_t xs,
                   const Py_ssize_t *off, const float *d, Py_ssize_t ldd, Py_ssize_t ni,
                   Py_ssize_t nq, int tb) noexcept nogil
        void (*dx)(float *dx, Py_ssize_t xr, Py_ssize_t xs, const Py_ssize_t *off,
                   const float *d, Py_ssize_t ldd, const float *w, Py_ssize_t ldw,
                   Py_ssize_t ni, Py_ssize_t nq, int tb) noexcept nogil
    ctypedef struct cy_dw_kernels_d:
        void (*fwd)(double *out, Py_ssize_t ldo, const double *x, Py_ssize_t xs,
                    const Py_ssize_t *off, const double *w, Py_ssize_t ldw,
                    const double *init, Py_ssize_t nt, int pb) noexcept nogil
        void (*dw)(double *acc, Py_ssize_t lda, const double *x, Py_ssize_t xr,
                   Py_ssize_t xs, const Py_ssize_t *off, const double *d, Py_ssize_t ldd,
                   Py_ssize_t ni, Py_ssize_t nq, int tb) noexcept nogil
        void (*dx)(double *dx, Py_ssize_t xr, Py_ssize_t xs, const Py_ssize_t *off,
                   const double *d, Py_ssize_t ldd, const double *w, Py_ssize_t ldw,
                   Py_ssize_t ni, Py_ssize_t nq, int tb) noexcept nogil
    cy_dw_kernels_f cy_dw_f
    cy_dw_kernels_d cy_dw_d
    int cy_dw_bytes
    int cy_isa_best()
    int cy_dw_select(int isa)


# -- which instruction set (see _kernels/__init__.py) -------------------------------------------
def isa_variants():
    """The variants of the inner loops this CPU can run, best first."""
    return variants_up_to(cy_isa_best())


def _select_isa(name):
    """Run variant ``name`` ("avx512", "avx2", "default" or "best") from now on and return
    it.  Private: for the tests and CYTORCH_ISA."""
    global _isa
    _isa = ISA_NAMES[cy_dw_select(isa_index(name, cy_isa_best()))]
    return _isa


def isa():
    """The variant of the inner loops this process runs: "avx512", "avx2" or "default"."""
    return _isa


_select_isa(requested_isa())


cdef enum:
    PIXELS = 8      # output pixels per forward tile
    TAPS = 9        # taps per dW / dx tile


cdef struct Geom:
    Py_ssize_t H, W, C, dm, kh, kw, sh, sw, dh, dw, pt, pl, Ho, Wo
    Py_ssize_t L, Lp   # lanes C * dm, and rounded up to whole vectors
    Py_ssize_t V       # numbers per vector of the variant in use
    Py_ssize_t Hp, Wp  # the padded extent the windows read: (Ho - 1) * sh + (kh - 1) * dh + 1
    Py_ssize_t T       # taps kh * kw


cdef Geom _geom(Py_ssize_t[:] x_shape, Py_ssize_t[:] w_shape, Py_ssize_t Ho, Py_ssize_t Wo,
                int sh, int sw, int pt, int pl, int dh, int dw, Py_ssize_t itemsize):
    cdef Geom g
    g.H, g.W, g.C = x_shape[1], x_shape[2], x_shape[3]
    g.kh, g.kw, g.dm = w_shape[0], w_shape[1], w_shape[3]
    g.sh, g.sw, g.dh, g.dw, g.pt, g.pl, g.Ho, g.Wo = sh, sw, dh, dw, pt, pl, Ho, Wo
    g.V = cy_dw_bytes // itemsize
    g.L = g.C * g.dm
    g.Lp = (g.L + g.V - 1) // g.V * g.V
    g.Hp = (Ho - 1) * sh + (g.kh - 1) * dh + 1
    g.Wp = (Wo - 1) * sw + (g.kw - 1) * dw + 1
    g.T = g.kh * g.kw
    return g


cdef void _expand(const floating *xn, floating *xe, const Geom *g) noexcept nogil:
    """``xe[i, s, c*dm + m] = xn[i - pt, s - pl, c]`` over the padded extent (zero outside the
    image and in the lanes past C * dm)."""
    cdef Py_ssize_t i, s, c, m, C = g.C, dm = g.dm
    cdef Py_ssize_t i_hi = min(g.H, g.Hp - g.pt), s_hi = min(g.W, g.Wp - g.pl)
    cdef const floating *src
    cdef floating *dst
    memset(xe, 0, g.Hp * g.Wp * g.Lp * sizeof(floating))
    for i in range(i_hi):
        for s in range(s_hi):
            src = xn + (i * g.W + s) * C
            dst = xe + ((i + g.pt) * g.Wp + s + g.pl) * g.Lp
            if dm == 1:
                for c in range(C):
                    dst[c] = src[c]
            else:
                for c in range(C):
                    for m in range(dm):
                        dst[c * dm + m] = src[c]


cdef void _forward_image(const floating *xn, const floating *wp, const floating *bp,
                         const Py_ssize_t *off, floating *outn, floating *xe, floating *row,
                         const Geom *g) noexcept nogil:
    cdef Py_ssize_t oh, ow, j, p, k, pb, L = g.L, Lp = g.Lp
    cdef bint direct = L == Lp              # whole vectors go straight into out
    cdef floating *dst
    _expand(xn, xe, g)
    for oh in range(g.Ho):
        j = 0
        while j < Lp:
            ow = 0
            while ow < g.Wo:
                pb = min(<Py_ssize_t>PIXELS, g.Wo - ow)
                dst = outn + (oh * g.Wo + ow) * L + j if direct else row + ow * Lp + j
                if floating is float:
                    cy_dw_f.fwd(dst, L if direct else Lp,
                                xe + (oh * g.sh * g.Wp + ow * g.sw) * Lp + j, g.sw * Lp, off,
                                wp + j, Lp, bp + j, g.T, <int>pb)
                else:
                    cy_dw_d.fwd(dst, L if direct else Lp,
                                xe + (oh * g.sh * g.Wp + ow * g.sw) * Lp + j, g.sw * Lp, off,
                                wp + j, Lp, bp + j, g.T, <int>pb)
                ow += pb
            j += g.V
        if not direct:
            for ow in range(g.Wo):
                for k in range(L):
                    outn[(oh * g.Wo + ow) * L + k] = row[ow * Lp + k]


cdef void _backward_image(const floating *dn, const floating *xn, const floating *wp,
                          const Py_ssize_t *off, floating *dxn, floating *dwl, double *db_part,
                          floating *xe, floating *dpad, const Geom *g) noexcept nogil:
    """One image: its share of the dW lanes dwl (T, Lp) and of db, and dxn unless NULL."""
    cdef Py_ssize_t i, s, c, m, j, t, tb, k, L = g.L, Lp = g.Lp, P = g.Ho * g.Wo
    cdef Py_ssize_t xr = g.sh * g.Wp * Lp, xs = g.sw * Lp
    cdef const floating *d = dn
    cdef const floating *src
    cdef floating acc
    for i in range(P):
        for k in range(L):
            db_part[k] += dn[i * L + k]
    if L != Lp:                      # rows of whole vectors, zero lanes in the padding
        for i in range(P):
            for k in range(Lp):
                dpad[i * Lp + k] = dn[i * L + k] if k < L else 0
        d = dpad
    _expand(xn, xe, g)
    j = 0
    while j < Lp:
        t = 0
        while t < g.T:
            tb = min(<Py_ssize_t>TAPS, g.T - t)
            if floating is float:
                cy_dw_f.dw(dwl + t * Lp + j, Lp, xe + j, xr, xs, off + t, d + j, Lp, g.Ho,
                           g.Wo, <int>tb)
            else:
                cy_dw_d.dw(dwl + t * Lp + j, Lp, xe + j, xr, xs, off + t, d + j, Lp, g.Ho,
                           g.Wo, <int>tb)
            t += tb
        j += g.V
    if dxn == NULL:
        return
    # dx: every output pixel adds dout times the window's weights into the padded copy (xe is
    # reused for it), then the dm lanes of each channel are summed and the padding dropped
    memset(xe, 0, g.Hp * g.Wp * Lp * sizeof(floating))
    j = 0
    while j < Lp:
        t = 0
        while t < g.T:
            tb = min(<Py_ssize_t>TAPS, g.T - t)
            if floating is float:
                cy_dw_f.dx(xe + j, xr, xs, off + t, d + j, Lp, wp + t * Lp + j, Lp, g.Ho, g.Wo,
                           <int>tb)
            else:
                cy_dw_d.dx(xe + j, xr, xs, off + t, d + j, Lp, wp + t * Lp + j, Lp, g.Ho, g.Wo,
                           <int>tb)
            t += tb
        j += g.V
    memset(dxn, 0, g.H * g.W * g.C * sizeof(floating))
    for i in range(min(g.H, g.Hp - g.pt)):
        for s in range(min(g.W, g.Wp - g.pl)):
            src = xe + ((i + g.pt) * g.Wp + s + g.pl) * Lp
            for c in range(g.C):
                acc = 0
                for m in range(g.dm):
                    acc = acc + src[c * g.dm + m]
                dxn[(i * g.W + s) * g.C + c] = acc


cdef _packed(const floating[:, :, :, ::1] w, const Geom *g, floating[:, ::1] wp,
             Py_ssize_t[::1] off):
    """wp (T, Lp): w as (kh * kw, C * dm) with zero lanes; off[t]: tap t = (a, b) from the
    window's corner in the padded copy."""
    cdef Py_ssize_t t, j
    cdef const floating *w0 = &w[0, 0, 0, 0]
    for t in range(g.T):
        for j in range(g.L):
            wp[t, j] = w0[t * g.L + j]
        off[t] = ((t // g.kw) * g.dh * g.Wp + (t % g.kw) * g.dw) * g.Lp


def _check(x, w, b, out, int sh, int sw, int pt, int pl, int dh, int dw):
    """Raise ValueError unless the arrays agree (the last guard before code without checks)."""
    N, H, W, C = x.shape[:4]
    kh, kw, C_w, dm = w.shape[:4]
    if C_w != C or b.shape[0] != C * dm or out.shape[0] != N or out.shape[3] != C * dm:
        raise ValueError(f"depthwise_conv2d kernel: inconsistent shapes x {tuple(x.shape[:4])}, "
                         f"w {tuple(w.shape[:4])}, b {tuple(b.shape[:1])}, "
                         f"out {tuple(out.shape[:4])}")
    if sh < 1 or sw < 1 or pt < 0 or pl < 0 or dh < 1 or dw < 1 \
            or min(N, H, W, C, kh, kw, dm) < 1 or out.shape[1] < 1 or out.shape[2] < 1:
        raise ValueError(f"depthwise_conv2d kernel: bad geometry strides ({sh}, {sw}), pads "
                         f"({pt}, {pl}), dilation ({dh}, {dw}), x {tuple(x.shape[:4])}, "
                         f"w {tuple(w.shape[:4])}, out {tuple(out.shape[:4])}")


def _check_like(a, b, name_a, name_b):
    if tuple(a.shape[:4]) != tuple(b.shape[:4]):
        raise ValueError(f"depthwise_conv2d kernel: {name_a} {tuple(a.shape[:4])} must have the "
                         f"shape of {name_b} {tuple(b.shape[:4])}")


def depthwise_conv2d_forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                             const floating[::1] b, floating[:, :, :, ::1] out, int sh, int sw,
                             int pt, int pl, int num_threads, int dh=1, int dw=1):
    """Fill ``out`` (N, H_out, W_out, C * dm) with the depthwise correlation of x and w, plus b.

    ``pt``/``pl`` are the top/left zero padding, ``dh``/``dw`` the dilation; ``num_threads``
    the OpenMP team size.
    """
    _check(x, w, b, out, sh, sw, pt, pl, dh, dw)
    dtype = np.float32 if floating is float else np.float64
    cdef Geom g = _geom(x.shape, w.shape, out.shape[1], out.shape[2], sh, sw, pt, pl, dh, dw,
                        sizeof(floating))
    cdef Py_ssize_t N = x.shape[0], T, U, u, n
    cdef Py_ssize_t[::1] starts
    T, U, starts = _units(N, num_threads)
    cdef floating[:, ::1] wp = np.zeros((g.T, g.Lp), dtype=dtype)
    cdef floating[::1] bp = np.zeros(g.Lp, dtype=dtype)
    cdef Py_ssize_t[::1] off = np.empty(g.T, dtype=np.intp)
    _packed(w, &g, wp, off)
    for n in range(g.L):
        bp[n] = b[n]
    cdef floating[:, ::1] xe = np.empty((T, g.Hp * g.Wp * g.Lp), dtype=dtype)
    cdef floating[:, ::1] row = np.empty((T, g.Wo * g.Lp), dtype=dtype)
    cdef Py_ssize_t x_step = g.H * g.W * g.C, out_step = g.Ho * g.Wo * g.L
    with nogil:
        for u in prange(U, schedule="dynamic", num_threads=T):
            for n in range(starts[u], starts[u + 1]):
                _forward_image(&x[0, 0, 0, 0] + n * x_step, &wp[0, 0], &bp[0], &off[0],
                               &out[0, 0, 0, 0] + n * out_step, &xe[threadid(), 0],
                               &row[threadid(), 0], &g)


def depthwise_conv2d_backward(const floating[:, :, :, ::1] dout, const floating[:, :, :, ::1] x,
                              const floating[:, :, :, ::1] w, floating[:, :, :, ::1] dx,
                              floating[:, :, :, ::1] dw_out, floating[::1] db, int sh, int sw,
                              int pt, int pl, int num_threads, int dh=1, int dw=1):
    """Fill ``dx`` (like x; skipped when None), ``dw_out`` (like w) and ``db`` (C * dm,) from
    ``dout`` (N, H_out, W_out, C * dm); db is accumulated in double precision."""
    _check(x, w, db, dout, sh, sw, pt, pl, dh, dw)
    if dx is not None:
        _check_like(dx, x, "dx", "x")
    _check_like(dw_out, w, "dw", "w")
    dtype = np.float32 if floating is float else np.float64
    cdef Geom g = _geom(x.shape, w.shape, dout.shape[1], dout.shape[2], sh, sw, pt, pl, dh, dw,
                        sizeof(floating))
    cdef Py_ssize_t N = x.shape[0], T, U, u, n, t, j, k
    cdef Py_ssize_t[::1] starts
    T, U, starts = _units(N, num_threads)
    cdef floating[:, ::1] wp = np.zeros((g.T, g.Lp), dtype=dtype)
    cdef Py_ssize_t[::1] off = np.empty(g.T, dtype=np.intp)
    _packed(w, &g, wp, off)
    cdef floating[:, ::1] xe = np.empty((T, g.Hp * g.Wp * g.Lp), dtype=dtype)
    cdef floating[:, ::1] dpad = np.empty((T, g.Ho * g.Wo * g.Lp if g.L != g.Lp else 1),
                                          dtype=dtype)
    # one partial sum of dW and db per unit (not per thread), added in unit order
    cdef floating[:, ::1] dwl = np.zeros((U, g.T * g.Lp), dtype=dtype)
    cdef double[:, ::1] db_part = np.zeros((U, g.L), dtype=np.float64)
    cdef Py_ssize_t x_step = g.H * g.W * g.C, d_step = g.Ho * g.Wo * g.L
    cdef floating *dxp = &dx[0, 0, 0, 0] if dx is not None else NULL
    cdef floating *dwp = &dw_out[0, 0, 0, 0]
    cdef floating acc
    cdef double dacc
    with nogil:
        for u in prange(U, schedule="dynamic", num_threads=T):
            for n in range(starts[u], starts[u + 1]):
                _backward_image(&dout[0, 0, 0, 0] + n * d_step, &x[0, 0, 0, 0] + n * x_step,
                                &wp[0, 0], &off[0], dxp + n * x_step if dxp != NULL else NULL,
                                &dwl[u, 0], &db_part[u, 0], &xe[threadid(), 0],
                                &dpad[threadid(), 0], &g)
        for t in range(g.T):
            for j in range(g.L):
                acc = 0
                for u in range(U):
                    acc = acc + dwl[u, t * g.Lp + j]
                dwp[t * g.L + j] = acc
        for k in range(g.L):
            dacc = 0
            for u in range(U):
                dacc = dacc + db_part[u, k]
            db[k] = <floating>dacc
