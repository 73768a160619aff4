# cython: language_level=3
"""conv2d forward and backward by the direct path, for the thinnest stride-1 layers (a few
filters, e.g. 1 -> 4 channels; its NumPy twins: ``cytorch.reference.conv2d_shift_add_forward``
/ ``_backward``).

Layout contract, shared with the twins and with ``_conv.pyx`` (im2col + GEMM, every other
geometry):

* ``x``: ``(N, H, W, C)`` channels-last, C-contiguous; ``w``: ``(kh, kw, C, K)``; ``b``: ``(K,)``;
* stride 1, dilation 1; padding arrives resolved: ``pt`` and ``pl`` (top and left) are needed,
  bottom/right padding is implied by the output shape ``(N, H_out, W_out, K)``, and a window row
  or column outside the image reads as zero;
* ``out[n, i, j, k] = b[k] + sum_{a, b, c} x[n, i + a - pt, j + b - pl, c] * w[a, b, c, k]``:
  a sum over the kh * kw taps ``(a, b)`` of the input shifted by ``(a - pt, b - pl)`` times
  ``w[a, b]`` -- which is how the twin computes it, one NumPy slice per tap.

The inner loop is C with vector extensions in ``_lanes.h``, compiled for AVX-512, AVX2 + FMA
and the build's baseline; ``isa()`` says which variant this process runs (chosen at import:
the best the CPU has, or the one the private environment variable CYTORCH_ISA names).

With an ``activation`` (the fused epilogue, ``_epilogue.pxd``) forward applies it as it copies
each output row out of the lanes, and backward multiplies each image's dout by its derivative
(into a per-thread buffer, in the pass that sums db) before the dW and dx passes read it.

Threads: the batch is cut into work units of whole images (``_conv._units``, after the policy
in ``_parallel.pxd``); each thread expands one image at a time into its own buffer.  Partial
sums of dW and db are kept per unit and added in unit order, so the result does not depend on
which thread ran what.
``cytorch.functional`` validates every argument; the entry points re-check that the shapes
agree (cheap) so that no call can read or write out of bounds.
"""
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.string cimport memcpy, memset

import numpy as np

from . import isa_functions
from ._conv import _activation_code, _units
from ._guards cimport check_conv_shapes, check_like
from ._epilogue cimport ACT_LINEAR, apply_activation, cy_mathfn_select, derivative_db
from ._parallel cimport sum_unit_db

cdef extern from "_lanes.h" nogil:
    enum:
        CY_LANES_WRAP
    int cy_isa_best()
    int cy_lanes_select(int isa)
    void cy_lanes_dot_f(float *acc, const float *p, Py_ssize_t shift, const Py_ssize_t *off,
                        const float *q, Py_ssize_t qs, Py_ssize_t P, Py_ssize_t n,
                        Py_ssize_t L) noexcept
    void cy_lanes_dot_d(double *acc, const double *p, Py_ssize_t shift,
                        const Py_ssize_t *off, const double *q, Py_ssize_t qs, Py_ssize_t P,
                        Py_ssize_t n, Py_ssize_t L) noexcept
    void cy_spread_f(float *dst, const float *src, Py_ssize_t stride, Py_ssize_t n,
                     Py_ssize_t Ko) noexcept
    void cy_spread_d(double *dst, const double *src, Py_ssize_t stride, Py_ssize_t n,
                     Py_ssize_t Ko) noexcept


cdef inline void lanes_dot(floating *acc, const floating *p, Py_ssize_t shift,
                           const Py_ssize_t *off, const floating *q, Py_ssize_t qs,
                           Py_ssize_t P, Py_ssize_t n, Py_ssize_t L) noexcept nogil:
    """acc[j] += sum_{t < n} p[shift + off[t] + j] * q[t*qs + j % P] for j < L."""
    if floating is float:
        cy_lanes_dot_f(acc, p, shift, off, q, qs, P, n, L)
    else:
        cy_lanes_dot_d(acc, p, shift, off, q, qs, P, n, L)


# -- which instruction set (see _kernels/__init__.py) -------------------------------------------
def _select_variant(int index):
    """Switch the inner loop to variant ``index``; the index it then runs."""
    cy_mathfn_select(index)          # the fused epilogue's element functions (_epilogue.pxd)
    return cy_lanes_select(index)


isa_variants, _select_isa, isa = isa_functions("the inner loop", cy_isa_best(), _select_variant)


cdef struct Geom:
    Py_ssize_t H, W, C, kh, kw, pt, pl, H_out, W_out, K


# -- lanes over (ow, k) ---------------------------------------------------------------------------
# For thin layers (a few filters over one or two channels) im2col + GEMM is mostly overhead:
# the column matrix is kh * kw times the image and makes a round trip through memory, and BLAS
# packs its operands for a GEMM with n = K = 6 columns.  The direct path computes the output of
# one image straight from the image instead, with the output's numbers as "lanes"
# j = (o * Wp + ow) * K + k:
#
#     out[j] = bias[k] + sum_{a, b, c} xe[c, j + a * Wp * K + b * K] * wt[(a, b, c), j % K]
#
# xe is the zero-padded image (Hp x Wp, Hp = Ho + kh - 1, Wp = Wo + kw - 1) with every pixel
# repeated K times, so that each tap (a, b, c) of the kernel is one shifted, contiguous run of
# xe, and wt[(a, b, c)] = w[a, b, c, :] tiled along the lanes.  Every term is then an elementwise
# product of two contiguous runs, which ``lanes_dot`` (``_lanes.h``) adds up in vector
# registers: no column matrix, no GEMM packing, and an image's working set stays in cache.  The
# price: lanes ow >= Wo (the kw - 1 padding columns of each row) are computed and thrown away.
#
# dx is computed the same way: it is the stride-1 correlation of dout with the kernel turned
# around (``w2[a', b', k, c] = w[kh-1-a', kw-1-b', c, k]``), padded by kh-1-pt on top and
# kw-1-pl on the left.  dW[a, b, c, k] is the same products summed over the output instead of
# over the taps: lanes_dot over output rows, one tap at a time.  Stride 1 only: with a stride
# the taps are no longer contiguous runs.  ``uses_direct_path`` says when this path runs.

cdef struct Lanes:
    # one stride-1 correlation: input (Hi, Wi, Ci) -> output (Ho, Wo, Ko), kernel kh x kw;
    # output (o, ow) reads input row o + a - pt and column ow + b - pl (outside: zero)
    Py_ssize_t Hi, Wi, Ci, Ho, Wo, Ko, kh, kw, pt, pl
    Py_ssize_t Hp, Wp  # padded input: Ho + kh - 1 rows of Wo + kw - 1 pixels
    Py_ssize_t T       # taps, kh * kw * Ci, ordered (a, b, c) like w
    Py_ssize_t row     # lanes of one padded row, Wp * Ko
    Py_ssize_t L       # lanes of the whole output, Ho * row
    Py_ssize_t Lv      # L rounded up to whole 64-byte vectors (what lanes_dot computes)
    Py_ssize_t Lr      # Wo * Ko (the lanes of one output row) rounded up the same way
    Py_ssize_t plane   # xe per input channel: Hp * row plus what the last vectors read past it
    Py_ssize_t P       # period of a tiled weight row: lcm(Ko, vector), or Lv if not shorter
    Py_ssize_t qs      # stored length of a tiled weight row (see _lanes.h)


cdef inline Py_ssize_t _gcd(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    while b:
        a, b = b, a % b
    return a


cdef inline Py_ssize_t _round_up(Py_ssize_t n, Py_ssize_t V) noexcept nogil:
    return (n + V - 1) // V * V


cdef Lanes _lanes_geom(Py_ssize_t Hi, Py_ssize_t Wi, Py_ssize_t Ci, Py_ssize_t Ho,
                       Py_ssize_t Wo, Py_ssize_t Ko, Py_ssize_t kh, Py_ssize_t kw,
                       Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t V) noexcept nogil:
    """The geometry of one correlation pass; V numbers per 64-byte vector."""
    cdef Lanes g
    g.Hi, g.Wi, g.Ci, g.Ho, g.Wo, g.Ko = Hi, Wi, Ci, Ho, Wo, Ko
    g.kh, g.kw, g.pt, g.pl = kh, kw, pt, pl
    g.Hp, g.Wp, g.T = Ho + kh - 1, Wo + kw - 1, kh * kw * Ci
    g.row = g.Wp * Ko
    g.L = Ho * g.row
    g.Lv, g.Lr = _round_up(g.L, V), _round_up(Wo * Ko, V)
    # the last tap reads up to (kh-1) * row + (kw-1) * Ko + Lv; dW reads whole vectors of rows
    g.plane = g.Hp * g.row + (kw - 1) * Ko + (g.Lv - g.L) + V
    # a weight row repeats every lcm(Ko, V) lanes: store one period (plus the CY_LANES_WRAP
    # vectors a block may read past it) instead of the whole row, so the weights stay in L1
    g.P = Ko * V // _gcd(Ko, V)
    if g.P == V:              # one vector of weights serves every block (lanes_dot knows)
        g.qs = V
    elif g.P + CY_LANES_WRAP * V < g.Lv:
        g.qs = g.P + CY_LANES_WRAP * V
    else:
        g.P = g.qs = g.Lv
    return g


cdef void _expand(const floating *xn, floating *xe, const Lanes *g) noexcept nogil:
    """Spread one image ``xn`` (Hi, Wi, Ci) over the lanes: ``xe[c, ip, s * Ko + k] =
    xn[ip - pt, s - pl, c]`` for every k < Ko, zero in the padding and the slack."""
    cdef Py_ssize_t c, i, Ko = g.Ko, Ci = g.Ci
    cdef Py_ssize_t i_lo = max(0, -g.pt), i_hi = min(g.Hi, g.Hp - g.pt)
    cdef Py_ssize_t iw_lo = max(0, -g.pl), iw_hi = min(g.Wi, g.Wp - g.pl)
    cdef const floating *src
    cdef floating *dst
    memset(xe, 0, Ci * g.plane * sizeof(floating))
    for i in range(i_lo, i_hi):
        for c in range(Ci):
            src = xn + i * g.Wi * Ci + c
            dst = xe + c * g.plane + (i + g.pt) * g.row
            if floating is float:      # dst[(iw + pl) * Ko + k] = src[iw * Ci] for every k
                cy_spread_f(dst + (iw_lo + g.pl) * Ko, src + iw_lo * Ci, Ci, iw_hi - iw_lo, Ko)
            else:
                cy_spread_d(dst + (iw_lo + g.pl) * Ko, src + iw_lo * Ci, Ci, iw_hi - iw_lo, Ko)


cdef void _tap_offsets(Py_ssize_t *off, const Lanes *g) noexcept nogil:
    """off[t]: where the run of tap t = (a, b, c) starts in xe."""
    cdef Py_ssize_t a, b, c, t = 0
    for a in range(g.kh):
        for b in range(g.kw):
            for c in range(g.Ci):
                off[t] = c * g.plane + a * g.row + b * g.Ko
                t += 1


cdef void _lanes_image(const floating *xe, const floating *wt, const floating *init,
                       floating *outn, floating *acc, const Py_ssize_t *off, int act,
                       const Lanes *g) noexcept nogil:
    """outn (Ho, Wo * Ko) = f(init + the correlation of one expanded image ``xe`` with
    ``wt``): the activation f (``_epilogue.pxd``) is applied as the rows are written out."""
    cdef Py_ssize_t o
    memcpy(acc, init, g.Lv * sizeof(floating))
    lanes_dot(acc, xe, 0, off, wt, g.qs, g.P, g.T, g.Lv)
    for o in range(g.Ho):     # keep lanes ow < Wo of each row
        apply_activation(outn + o * g.Wo * g.Ko, acc + o * g.row, g.Wo * g.Ko, act)


cdef void _lanes_dw(const floating *xe, const floating *d, floating *dwl,
                    const Py_ssize_t *rowoff, const Lanes *g) noexcept nogil:
    """dwl (T, Lr) += for each tap t = (a, b, c) the lane products of its shifted input rows
    with the output gradient rows ``d`` (Ho, Lr), summed over the output rows.  Lane
    ow * Ko + k of tap t, summed over ow, is later dW[a, b, c, k]."""
    cdef Py_ssize_t a, b, c, t
    for a in range(g.kh):
        for b in range(g.kw):
            for c in range(g.Ci):
                t = (a * g.kw + b) * g.Ci + c
                lanes_dot(dwl + t * g.Lr, xe, c * g.plane + a * g.row + b * g.Ko, rowoff, d,
                          g.Lr, g.Lr, g.Ho, g.Lr)


cdef void _forward_lanes(const floating *x, const floating *wt, const floating *btile,
                         floating *out, floating *xe, floating *acc, const Py_ssize_t *off,
                         Py_ssize_t n_lo, Py_ssize_t n_hi, int act,
                         const Lanes *g) noexcept nogil:
    cdef Py_ssize_t n
    for n in range(n_lo, n_hi):
        _expand(x + n * g.Hi * g.Wi * g.Ci, xe, g)
        _lanes_image(xe, wt, btile, out + n * g.Ho * g.Wo * g.Ko, acc, off, act, g)


cdef void _backward_lanes(const floating *dout, const floating *y, const floating *x,
                          const floating *wt2, const floating *zeros, floating *dx,
                          floating *dwl, double *db_part, floating *xe, floating *d,
                          floating *dz, floating *acc, const Py_ssize_t *rowoff,
                          const Py_ssize_t *off2, Py_ssize_t n_lo, Py_ssize_t n_hi, int act,
                          const Lanes *g, const Lanes *gx) noexcept nogil:
    """One work unit: dx[n] for its images (unless dx is NULL), and its partial sums of the
    dW lanes and of db, from dz = dout * f'(y) (computed into ``dz`` with db, in the first pass
    over each image's dout; dout itself when f is linear)."""
    cdef Py_ssize_t n, o, per_row = g.Wo * g.Ko, per_image = g.Ho * g.Wo * g.Ko
    cdef const floating *dzn
    for n in range(n_lo, n_hi):
        derivative_db(dz, dout + n * per_image, y + n * per_image if act != ACT_LINEAR else NULL,
                      g.Ho * g.Wo, g.Ko, act, db_part)
        dzn = dz if act != ACT_LINEAR else dout + n * per_image
        for o in range(g.Ho):          # d: rows padded to Lr lanes (the slack stays zero)
            memcpy(d + o * g.Lr, dzn + o * per_row, per_row * sizeof(floating))
        _expand(x + n * g.Hi * g.Wi * g.Ci, xe, g)
        _lanes_dw(xe, d, dwl, rowoff, g)
        if dx != NULL:
            _expand(dzn, xe, gx)
            _lanes_image(xe, wt2, zeros, dx + n * gx.Ho * gx.Wo * gx.Ko, acc, off2, ACT_LINEAR,
                         gx)



# When the direct path runs.  Measured on the 2-core Intel Xeon with AVX-512 this was written
# on, one thread, forward + backward, direct path time / im2col + GEMM time (N = 32 or 64):
#   float32: C=1 K=4 k5 0.35   C=1 K=6 k5 (LeNet c1) 0.52   C=1 K=6 k3 0.54   C=1 K=8 k5 0.70
#            C=3 K=6 k5 0.86   C=2 K=8 k3 0.87   C=4 K=4 k3 0.97   |   C=3 K=8 k3 1.14
#            C=1 K=16 k5 1.15   C=6 K=6 k3 1.26   C=6 K=16 k5 (LeNet c2) 3.7
#   float64: C=1 K=4 k5 0.50   C=1 K=6 k5 0.93   |   C=4 K=4 k3 1.02   C=2 K=8 k3 1.16
#            C=3 K=6 k5 1.40
# Two loads per multiply-add cap the direct path near half the machine's peak, while GEMM
# gains with every filter; a vector holds half as many doubles, so the float64 limit is half
# the float32 one.  The rule: stride 1, no dilation, at most 8 filters, C * K at most 18
# (float32) or 9 (float64), and an expanded image (C * K numbers per padded pixel) no larger
# than LANES_BUDGET numbers, so that it stays in cache.
#
# The rule does not depend on the instruction set.  Checked again on an AMD EPYC (Zen 5, 2
# cores of a busy virtual machine, 2026-12-02; OpenBLAS runs its Haswell AVX2 kernels there),
# N = 32, 28x28 images, same ratio, for the avx512 / avx2 variants of ``_lanes.h``:
#   float32: C=1 K=4 k5 0.38/0.51   C=1 K=6 k5 0.50/0.61   C=1 K=8 k5 0.65/0.84
#            C=3 K=6 k5 0.88/0.90   C=2 K=8 k3 0.95/1.02   C=4 K=4 k3 0.70/0.88   |
#            C=3 K=8 k3 1.09/1.15   C=1 K=16 k5 0.99/1.40   C=6 K=6 k3 0.93/0.97
#   float64: C=1 K=4 k5 0.48/0.66   C=1 K=6 k5 0.68/0.86   C=1 K=8 k5 0.88/1.13   |
#            C=4 K=4 k3 0.70/0.89   C=2 K=8 k3 1.07/1.35   C=3 K=6 k5 1.18/2.07
# The same rule is right or close to a tie everywhere except float64 C=1 K=8 on AVX2 (13 %
# slower than GEMM) and float64 C=4 K=4 (30 % faster than GEMM but left to it): too few cases
# to make the rule more complicated.
#
# Against the blocked path (``_blocked.pyx``), after its dx and dW tiles were reworked for
# keras_mnist's layers: ``benchmarks/bench_thin_rule.py``, same CPU, busy (load 6-7), 2026-12-03,
# N = 32, 28x28, one thread, process CPU time, blocked / direct with dx (without):
#   avx512 variant, float32 (before the 6-vector blocks below, which took LeNet c1 5 % off):
#     C=1 K=2 k5 1.43 (1.36)   C=1 K=4 k5 1.01 (0.93)   C=1 K=6 k5 valid (LeNet c1) 0.57 (0.51)
#     C=1 K=8 k5 0.57 (0.50)   C=1 K=10 k5 valid (keras_mnist c1) 0.31 (0.34)
#     C=2 K=2 k3 1.14 (0.72)   C=2 K=8 k3 0.48 (0.45)   C=3 K=6 k5 0.39 (0.47)
#     C=4 K=4 k3 0.77 (0.71)   C=3 K=3 k3 0.68 (0.74)
#   avx2 variant, float32, with the 6-vector blocks:
#     C=1 K=2 k5 1.60 (1.60)   C=1 K=4 k5 1.00 (1.02)   LeNet c1 0.62 (0.54)
#     C=1 K=8 k5 0.50 (0.46)   keras_mnist c1 0.49 (0.49)   C=2 K=2 k3 1.57 (1.44)
#     C=2 K=8 k3 0.63 (0.48)   C=3 K=6 k5 0.47 (0.48)   C=4 K=4 k3 0.95 (1.01)
#     C=3 K=3 k3 1.01 (0.92)
#   avx512, float64 (before them too): C=1 K=2 1.08 (0.95), C=1 K=4 0.64 (0.47),
#     LeNet c1 0.38 (0.29), every other shape 0.23-0.59.
# So the blocked path wins from about 6 numbers per pixel and loses below.  Its vectors hold
# filters, so what decides is K, not C * K: quiet machine, same CPU, 2026-12-03 (13:00),
# float32 / float64, with dx, avx512 variant (avx2 within 15 % of it):
#   K=1 (C=1..5)  2.0-2.7 / 1.5-1.8     K=2 (C=1, 2, k3 and k5)  1.5-1.7 / 1.2-1.4
#   K=3 C=1  1.06 / 0.77    K=4 C=1  1.04-1.10 / 0.67-0.73    K=4 C=4  1.09 / 0.59
#   C=3 K=3  0.94 / 0.71    K=5 C=1  0.76 / 0.44    LeNet c1 (K=6)  0.65 / 0.40
# The rule: the direct path for thin layers of at most 16 bytes of filters per pixel (K <= 4
# in float32, K <= 2 in float64; ties at K=3 and 4 in float32), stride 1, no dilation, and
# C * K at most 18 (float32) or 9 (float64); everything wider goes to the blocked path.  A
# layer the blocked path turns down (its memory budget, on images of several hundred pixels
# a side) still runs here when the older, wider rule (K <= 8) and LANES_BUDGET allow it:
# ``fits_direct_path``.  LeNet's first layer (1 -> 6) went to the blocked path on 2026-12-03.
cdef Py_ssize_t LANES_MAX_K_BYTES = 16
cdef Py_ssize_t LANES_MAX_K = 8
cdef Py_ssize_t LANES_MAX_CK = 18     # for float32: 16 numbers per vector
cdef Py_ssize_t LANES_BUDGET = 1 << 20


def fits_direct_path(x_shape, w_shape, out_shape, strides, dtype, dilation=(1, 1)):
    """True when this path can run conv2d with these shapes (``(N, H, W, C)``,
    ``(kh, kw, C, K)``, ``(N, H_out, W_out, K)``), strides, dilation and dtype, and is faster
    than im2col + GEMM: stride 1, no dilation, at most LANES_MAX_K filters, few numbers per
    pixel and an expanded image that stays in cache.  ``uses_direct_path`` says when it runs
    rather than the blocked path."""
    cdef Py_ssize_t C = x_shape[3], kh = w_shape[0], kw = w_shape[1], K = w_shape[3]
    cdef Py_ssize_t V = 64 // np.dtype(dtype).itemsize
    return (tuple(strides) == (1, 1) and tuple(dilation) == (1, 1) and K <= LANES_MAX_K
            and C * K * 16 <= LANES_MAX_CK * V
            and (out_shape[1] + kh - 1) * (out_shape[2] + kw - 1) * C * K <= LANES_BUDGET)


def uses_direct_path(x_shape, w_shape, out_shape, strides, dtype, dilation=(1, 1)):
    """True when ``cytorch.functional`` runs conv2d with these shapes, strides, dilation and
    dtype on this path before asking any other (``fits_direct_path``, and at most
    LANES_MAX_K_BYTES bytes of filters per pixel: K <= 4 in float32, K <= 2 in float64)."""
    return (w_shape[3] * np.dtype(dtype).itemsize <= LANES_MAX_K_BYTES
            and fits_direct_path(x_shape, w_shape, out_shape, strides, dtype, dilation))


cdef _forward_lanes_all(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                        const floating[::1] b, floating[:, :, :, ::1] out, const Geom *g,
                        int num_threads, int act):
    """conv2d_forward by the direct path (see "the direct path" above)."""
    dtype = np.float32 if floating is float else np.float64
    cdef Py_ssize_t N = x.shape[0], K = g.K, T, U, t, j, u, m
    cdef Lanes lg = _lanes_geom(g.H, g.W, g.C, g.H_out, g.W_out, K, g.kh, g.kw, g.pt, g.pl,
                                64 // sizeof(floating))
    cdef Py_ssize_t[::1] starts
    T, U, starts = _units(N, num_threads)
    cdef floating[:, ::1] wt = np.empty((lg.T, lg.qs), dtype=dtype)
    cdef floating[::1] btile = np.empty(lg.Lv, dtype=dtype)
    cdef Py_ssize_t[::1] off = np.empty(lg.T, dtype=np.intp)
    cdef floating[:, ::1] xe = np.empty((T, lg.Ci * lg.plane), dtype=dtype)
    cdef floating[:, ::1] acc = np.empty((T, lg.Lv), dtype=dtype)
    cdef const floating *wp = &w[0, 0, 0, 0]
    with nogil:
        # (on one thread, before the others start: m counts j % K without a division per value)
        for t in range(lg.T):              # wt[t, j] = w[a, b, c, j % K], tap t = (a, b, c)
            m = 0
            for j in range(lg.qs):
                wt[t, j] = wp[t * K + m]
                m = m + 1 if m + 1 < K else 0
        m = 0
        for j in range(lg.Lv):
            btile[j] = b[m]
            m = m + 1 if m + 1 < K else 0
        _tap_offsets(&off[0], &lg)
        for u in prange(U, schedule="dynamic", num_threads=T):
            _forward_lanes(&x[0, 0, 0, 0], &wt[0, 0], &btile[0], &out[0, 0, 0, 0],
                           &xe[threadid(), 0], &acc[threadid(), 0], &off[0], starts[u],
                           starts[u + 1], act, &lg)


cdef _backward_lanes_all(const floating[:, :, :, ::1] dout, const floating[:, :, :, ::1] x,
                         const floating[:, :, :, ::1] w, floating[:, :, :, ::1] dx,
                         floating[:, :, :, ::1] dw, floating[::1] db,
                         const floating[:, :, :, ::1] y, const Geom *g, int num_threads,
                         int act):
    """conv2d_backward by the direct path.  dx is the stride-1 correlation of dout with the
    kernel turned around, ``w2[a', b', k, c] = w[kh-1-a', kw-1-b', c, k]``, padded by
    ``kh-1-pt`` on top and ``kw-1-pl`` on the left (negative: cropped)."""
    dtype = np.float32 if floating is float else np.float64
    cdef bint need_dx = dx is not None
    cdef Py_ssize_t N = x.shape[0], K = g.K, C = g.C, V = 64 // sizeof(floating)
    cdef Py_ssize_t T, U, t, j, u, a, b, k, ow, m
    cdef Lanes lg = _lanes_geom(g.H, g.W, C, g.H_out, g.W_out, K, g.kh, g.kw, g.pt, g.pl, V)
    cdef Lanes gx = _lanes_geom(g.H_out, g.W_out, K, g.H, g.W, C, g.kh, g.kw,
                                g.kh - 1 - g.pt, g.kw - 1 - g.pl, V)
    cdef Py_ssize_t[::1] starts
    T, U, starts = _units(N, num_threads)
    cdef floating[:, ::1] wt2 = np.empty((gx.T, gx.qs), dtype=dtype)
    cdef floating[::1] zeros = np.zeros(gx.Lv, dtype=dtype)
    cdef Py_ssize_t[::1] off2 = np.empty(gx.T, dtype=np.intp)
    cdef Py_ssize_t[::1] rowoff = np.arange(lg.Ho, dtype=np.intp) * lg.row
    cdef floating[:, ::1] xe = np.empty(
        (T, max(lg.Ci * lg.plane, gx.Ci * gx.plane if need_dx else 0)), dtype=dtype)
    cdef floating[:, ::1] d = np.zeros((T, lg.Ho * lg.Lr), dtype=dtype)
    # each thread's dz = dout * f'(y) for one image (not needed when f is linear)
    cdef floating[:, ::1] dz = np.empty((T, lg.Ho * lg.Wo * K if act != ACT_LINEAR else 1),
                                        dtype=dtype)
    cdef const floating *yp = &y[0, 0, 0, 0] if act != ACT_LINEAR else NULL
    cdef floating[:, ::1] acc = np.empty((T, gx.Lv), dtype=dtype)
    # one partial sum of the dW lanes and of db per unit (not per thread), added in unit order:
    # the result does not depend on which thread ran which unit
    cdef floating[:, ::1] dwl = np.zeros((U, lg.T * lg.Lr), dtype=dtype)
    cdef double[:, ::1] db_part = np.zeros((U, K), dtype=np.float64)
    cdef const floating *wp = &w[0, 0, 0, 0]
    cdef floating *dxp = &dx[0, 0, 0, 0] if need_dx else NULL
    cdef floating *dwp = &dw[0, 0, 0, 0]
    with nogil:
        if need_dx:
            for a in range(g.kh):          # tap (a, b, k) of w2 reads w[kh-1-a, kw-1-b, c, k]
                for b in range(g.kw):
                    for k in range(K):
                        t = (a * g.kw + b) * K + k
                        m = 0                  # j % C
                        for j in range(gx.qs):
                            wt2[t, j] = wp[(((g.kh - 1 - a) * g.kw + g.kw - 1 - b) * C
                                            + m) * K + k]
                            m = m + 1 if m + 1 < C else 0
            _tap_offsets(&off2[0], &gx)
        for u in prange(U, schedule="dynamic", num_threads=T):
            _backward_lanes(&dout[0, 0, 0, 0], yp, &x[0, 0, 0, 0], &wt2[0, 0], &zeros[0], dxp,
                            &dwl[u, 0], &db_part[u, 0], &xe[threadid(), 0], &d[threadid(), 0],
                            &dz[threadid(), 0], &acc[threadid(), 0], &rowoff[0], &off2[0],
                            starts[u], starts[u + 1], act, &lg, &gx)
        # dW[t, k]: lanes ow * K + k of tap t, summed over the units and the output columns
        # (for each k in that order; the K sums side by side, reading the lanes in order)
        for t in range(lg.T):
            for k in range(K):
                dwp[t * K + k] = 0
            for u in range(U):
                for ow in range(lg.Wo):
                    for k in range(K):
                        dwp[t * K + k] += dwl[u, t * lg.Lr + ow * K + k]
        sum_unit_db(&db_part[0, 0], U, K, &db[0])


def conv2d_forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                   const floating[::1] b, floating[:, :, :, ::1] out, int pt, int pl,
                   int num_threads, activation="linear"):
    """Fill ``out`` (N, H_out, W_out, K) with f(the stride-1 correlation of x and w, plus b).

    ``pt``/``pl`` are the top/left zero padding; ``num_threads`` the OpenMP team size;
    ``activation`` f, a name of ``cytorch._kernels.EPILOGUES``.
    """
    check_conv_shapes(x.shape, w.shape, b.shape[0], out.shape, 1, 1, pt, pl)
    cdef int act = _activation_code(activation)
    cdef Geom g = _geom(x.shape, w.shape, out.shape[1], out.shape[2], pt, pl)
    _forward_lanes_all(x, w, b, out, &g, num_threads, act)


def conv2d_backward(const floating[:, :, :, ::1] dout, const floating[:, :, :, ::1] x,
                    const floating[:, :, :, ::1] w, floating[:, :, :, ::1] dx,
                    floating[:, :, :, ::1] dw, floating[::1] db, int pt, int pl,
                    int num_threads, activation="linear", const floating[:, :, :, ::1] y=None):
    """Fill ``dx`` (like x; skipped when None), ``dw`` (like w) and ``db`` (K,) from
    ``dz = dout * f'(y)`` (N, H_out, W_out, K), ``y`` the forward output (read when the
    activation f is not linear); db is accumulated in double precision."""
    check_conv_shapes(x.shape, w.shape, db.shape[0], dout.shape, 1, 1, pt, pl)
    cdef int act = _activation_code(activation)
    if act != ACT_LINEAR:       # its derivative reads y: y must exist, of dout's shape
        _activation_code(activation, y, dout)
    if dx is not None:
        check_like(dx.shape, x.shape, "dx", "x")
    check_like(dw.shape, w.shape, "dw", "w")
    cdef Geom g = _geom(x.shape, w.shape, dout.shape[1], dout.shape[2], pt, pl)
    _backward_lanes_all(dout, x, w, dx, dw, db, y, &g, num_threads, act)


cdef Geom _geom(Py_ssize_t[:] x_shape, Py_ssize_t[:] w_shape, Py_ssize_t H_out,
                Py_ssize_t W_out, int pt, int pl):
    cdef Geom g
    g.H, g.W, g.C = x_shape[1], x_shape[2], x_shape[3]
    g.kh, g.kw, g.K = w_shape[0], w_shape[1], w_shape[3]
    g.pt, g.pl, g.H_out, g.W_out = pt, pl, H_out, W_out
    return g
