# cython: language_level=3
"""conv2d forward and backward by im2col + GEMM (the compiled twin of ``cytorch.reference``),
and by a direct path for thin stride-1 layers such as LeNet's first (see "the direct path").

Layout contract, shared with the NumPy twin:

* ``x``: ``(N, H, W, C)`` channels-last, C-contiguous; ``w``: ``(kh, kw, C, K)``; ``b``: ``(K,)``;
* one im2col row per output position, ordered ``(kh, kw, C)`` like ``w.reshape(kh*kw*C, K)``,
  so ``cols @ W`` is already the ``(N, H_out, W_out, K)`` output: no transpose anywhere;
* padding arrives resolved; only ``pad_top`` and ``pad_left`` are needed here, because a window
  row or column outside ``[0, H) x [0, W)`` simply reads as zero (bottom/right padding is
  implied by the output shape);
* ``H_out = floor((H + P_top + P_bottom - kh) / sh) + 1``, same for W.

How the work is split.  The batch is cut into a few work units of whole images (up to
``UNITS_PER_THREAD`` per thread); OpenMP threads take units dynamically and walk each in small
groups: im2col of the group into the thread's own column buffer (sized to stay in L2 cache),
then a single-threaded GEMM on it.  BLAS is held to one thread meanwhile.  Measured on the
2-core machine this was written on, the alternative -- im2col parallel over images, then one
big GEMM on OpenBLAS's own threads -- was 2-6x slower: OpenMP's idle threads spin-wait for a
while after each parallel region and steal the cores OpenBLAS's threads need, and thin GEMMs
(K = 6 filters) parallelise poorly anyway.  When one thread would run alone (a single image),
BLAS gets the cores instead.

The direct path splits the batch into the same work units; it needs no BLAS.

Memory: the column buffers hold at most ``GROUP_BUDGET`` elements per thread (but at least one
image), never more than one batch's im2col matrix.  In backward each buffer first holds ``cols``
for ``dW += cols^T @ dout``, then ``dcols = dout @ W^T`` for col2im.  Each unit sums its own
``dW`` and ``db``; the partial sums are added in unit order at the end, so the result does not
depend on which thread ran what (bit-identical runs, no atomics).

``cytorch.functional`` validates every argument; the entry points here re-check that the shapes
agree (cheap) so that no call can read or write out of bounds.
"""
from contextlib import nullcontext

from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.string cimport memcpy, memset

import numpy as np

from .._config import single_threaded_blas
from ._blas cimport gemm
from ._lanes cimport lanes_dot

# Elements of one thread's column buffer (128 KiB in float32): groups of images this small keep
# the GEMM operands in L2 cache.  A single image larger than this gets a buffer of its own size.
cdef Py_ssize_t GROUP_BUDGET = 1 << 15
# Work units per thread: a thread that finishes early (or whose core another process took)
# picks up the next unit instead of waiting at the barrier.
cdef Py_ssize_t UNITS_PER_THREAD = 4


cdef struct Geom:
    Py_ssize_t H, W, C, kh, kw, sh, sw, pt, pl, H_out, W_out, K
    Py_ssize_t P   # output positions per image, H_out * W_out (im2col rows)
    Py_ssize_t R   # im2col row length, kh * kw * C


cdef inline void _interior(const Geom *g, Py_ssize_t *ow_lo, Py_ssize_t *ow_hi) noexcept nogil:
    """Output columns ow_lo <= ow < ow_hi whose windows lie inside the image horizontally:
    ``ow * sw - pl >= 0`` and ``ow * sw - pl + kw <= W``."""
    cdef Py_ssize_t lo = (g.pl + g.sw - 1) // g.sw, hi = 0
    if g.W - g.kw + g.pl >= 0:
        hi = (g.W - g.kw + g.pl) // g.sw + 1
    lo = min(lo, g.W_out)
    ow_lo[0] = lo
    ow_hi[0] = min(max(hi, lo), g.W_out)


cdef inline void _clip(Py_ssize_t ow, const Geom *g, Py_ssize_t *jlo,
                       Py_ssize_t *jhi) noexcept nogil:
    """Kernel columns jlo <= j < jhi of window ``ow`` that fall inside the image."""
    cdef Py_ssize_t iw0 = ow * g.sw - g.pl
    jlo[0] = 0 if iw0 >= 0 else -iw0
    jhi[0] = g.kw if iw0 + g.kw <= g.W else g.W - iw0


cdef inline void _im2col_clipped(const floating *xn, floating *seg, Py_ssize_t ih,
                                 Py_ssize_t ow, const Geom *g) noexcept nogil:
    """Segment of window ``ow`` on image row ``ih`` when the window sticks out left or right."""
    cdef Py_ssize_t C = g.C, t, jlo, jhi
    cdef const floating *src
    _clip(ow, g, &jlo, &jhi)
    if jlo >= jhi:
        memset(seg, 0, g.kw * C * sizeof(floating))
        return
    memset(seg, 0, jlo * C * sizeof(floating))
    src = xn + (ih * g.W + ow * g.sw - g.pl + jlo) * C
    for t in range((jhi - jlo) * C):
        seg[jlo * C + t] = src[t]
    memset(seg + jhi * C, 0, (g.kw - jhi) * C * sizeof(floating))


cdef inline void _col2im_clipped(const floating *seg, floating *dxn, Py_ssize_t ih,
                                 Py_ssize_t ow, const Geom *g) noexcept nogil:
    """Adjoint of ``_im2col_clipped``: add the in-image part of a segment back into dxn."""
    cdef Py_ssize_t C = g.C, t, jlo, jhi
    cdef floating *dst
    _clip(ow, g, &jlo, &jhi)
    if jlo >= jhi:
        return
    dst = dxn + (ih * g.W + ow * g.sw - g.pl + jlo) * C
    for t in range((jhi - jlo) * C):
        dst[t] += seg[jlo * C + t]


cdef void _im2col_image(const floating *xn, floating *cols, const Geom *g) noexcept nogil:
    """Unfold one image ``xn`` (H, W, C) into ``cols`` (H_out * W_out, kh * kw * C).

    For window row ``a`` the kw * C values ``x[ih, iw0:iw0 + kw, :]`` are contiguous in memory,
    so each window is kh copies of a contiguous span.  Loop over (oh, a) so that the row ``ih``
    is fixed and most windows (the interior ones) are a bare copy loop; windows cut by the
    zero padding are filled in separately.
    """
    cdef Py_ssize_t C = g.C, span = g.kw * g.C, R = g.R, step = g.sw * g.C
    cdef Py_ssize_t oh, ow, a, ih, t, ow_lo = 0, ow_hi = 0
    cdef const floating *src
    cdef floating *dst
    cdef floating *seg
    _interior(g, &ow_lo, &ow_hi)
    for oh in range(g.H_out):
        for a in range(g.kh):
            ih = oh * g.sh - g.pt + a
            dst = cols + oh * g.W_out * R + a * span  # segment a of row (oh, ow = 0)
            if ih < 0 or ih >= g.H:                   # the whole window row is padding
                for ow in range(g.W_out):
                    memset(dst + ow * R, 0, span * sizeof(floating))
                continue
            src = xn + (ih * g.W + ow_lo * g.sw - g.pl) * C
            for ow in range(ow_lo, ow_hi):
                seg = dst + ow * R
                for t in range(span):
                    seg[t] = src[t]
                src += step
            for ow in range(ow_lo):              # windows cut by the padding, left
                _im2col_clipped(xn, dst + ow * R, ih, ow, g)
            for ow in range(ow_hi, g.W_out):     # and right
                _im2col_clipped(xn, dst + ow * R, ih, ow, g)


cdef void _col2im_image(const floating *cols, floating *dxn, const Geom *g) noexcept nogil:
    """The adjoint of ``_im2col_image``: ``dxn`` (H, W, C) = the rows of ``cols`` added back
    where they were read from (overlapping windows sum); what fell into the padding is dropped."""
    cdef Py_ssize_t C = g.C, span = g.kw * g.C, R = g.R, step = g.sw * g.C
    cdef Py_ssize_t oh, ow, a, ih, t, n, q, c, j, jlo, jhi, ow_lo = 0, ow_hi = 0
    cdef const floating *src
    cdef const floating *seg
    cdef floating *dst
    cdef floating acc
    _interior(g, &ow_lo, &ow_hi)
    memset(dxn, 0, g.H * g.W * C * sizeof(floating))
    for oh in range(g.H_out):
        for a in range(g.kh):
            ih = oh * g.sh - g.pt + a
            if ih < 0 or ih >= g.H:
                continue
            src = cols + oh * g.W_out * R + a * span
            dst = dxn + (ih * g.W + ow_lo * g.sw - g.pl) * C
            if step >= 4:
                # windows at least a vector apart: add span by span
                for ow in range(ow_lo, ow_hi):
                    seg = src + ow * R
                    for t in range(span):
                        dst[t] += seg[t]
                    dst += step
            elif g.sw == 1 and ow_hi > ow_lo:   # (n = 0 would still touch kw - 1 columns)
                # windows 1-3 elements apart (one to three channels, stride 1): adding span by
                # span, each vector load overlaps the store just made and stalls (measured 2x
                # slower).  Gather instead: input column q of the interior collects kernel
                # column j of window q - j, summed in a register, stored once.
                n = ow_hi - ow_lo
                for q in range(n + g.kw - 1):
                    jlo = q - n + 1 if q >= n else 0
                    jhi = q + 1 if q < g.kw else g.kw
                    for c in range(C):
                        acc = 0
                        for j in range(jlo, jhi):
                            acc = acc + src[(ow_lo + q - j) * R + j * C + c]
                        dst[q * C + c] += acc
            else:
                # thin channels with stride > 1: position t of every window at a time
                for t in range(span):
                    for ow in range(ow_hi - ow_lo):
                        dst[ow * step + t] += src[(ow_lo + ow) * R + t]
            for ow in range(ow_lo):
                _col2im_clipped(src + ow * R, dxn, ih, ow, g)
            for ow in range(ow_hi, g.W_out):
                _col2im_clipped(src + ow * R, dxn, ih, ow, g)


cdef void _forward_images(const floating *x, const floating *w, const floating *b,
                          floating *out, floating *cols, Py_ssize_t n_lo, Py_ssize_t n_hi,
                          Py_ssize_t group, const Geom *g) noexcept nogil:
    """out[n] = im2col(x[n]) @ W + b for images n_lo <= n < n_hi, ``group`` images per GEMM."""
    cdef Py_ssize_t n = n_lo, nb, i, r, k, K = g.K
    cdef Py_ssize_t x_step = g.H * g.W * g.C, out_step = g.P * K
    cdef floating *outp
    while n < n_hi:
        nb = min(group, n_hi - n)
        for i in range(nb):
            _im2col_image(x + (n + i) * x_step, cols + i * g.P * g.R, g)
        outp = out + n * out_step
        for r in range(nb * g.P):   # start from the bias, then GEMM adds cols @ W (beta = 1)
            for k in range(K):
                outp[r * K + k] = b[k]
        gemm(ord('n'), ord('n'), <int>(nb * g.P), <int>K, <int>g.R, <floating>1.0,
             cols, <int>g.R, w, <int>K, <floating>1.0, outp, <int>K)
        n += nb


cdef void _backward_images(const floating *dout, const floating *x, const floating *w,
                           floating *dx, floating *dw_part, double *db_part, floating *cols,
                           Py_ssize_t n_lo, Py_ssize_t n_hi, Py_ssize_t group,
                           const Geom *g) noexcept nogil:
    """For images n_lo <= n < n_hi (one work unit): dx[n] = col2im(dout[n] @ W^T), and the
    unit's partial sums dw_part = sum cols^T @ dout[n] and db_part = sum of dout[n] rows."""
    cdef Py_ssize_t n = n_lo, nb, i, r, k, K = g.K
    cdef Py_ssize_t x_step = g.H * g.W * g.C, out_step = g.P * K
    cdef const floating *doutp
    cdef floating beta = 0
    while n < n_hi:
        nb = min(group, n_hi - n)
        doutp = dout + n * out_step
        for i in range(nb):
            _im2col_image(x + (n + i) * x_step, cols + i * g.P * g.R, g)
        # dW (R x K) += cols^T (R x rows) @ dout (rows x K)
        gemm(ord('t'), ord('n'), <int>g.R, <int>K, <int>(nb * g.P), <floating>1.0,
             cols, <int>g.R, doutp, <int>K, beta, dw_part, <int>K)
        beta = 1
        if dx != NULL:
            # dcols (rows x R) = dout (rows x K) @ W^T (K x R), into the same buffer
            gemm(ord('n'), ord('t'), <int>(nb * g.P), <int>g.R, <int>K, <floating>1.0,
                 doutp, <int>K, w, <int>K, <floating>0.0, cols, <int>g.R)
            for i in range(nb):
                _col2im_image(cols + i * g.P * g.R, dx + (n + i) * x_step, g)
        for r in range(nb * g.P):
            for k in range(K):
                db_part[k] += doutp[r * K + k]
        n += nb


# -- the direct path: lanes over (ow, k) ----------------------------------------------------------
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
# product of two contiguous runs, which ``lanes_dot`` (``_lanes.pxd``) adds up in vector
# registers: no column matrix, no GEMM packing, and an image's working set stays in cache.  The
# price: lanes ow >= Wo (the kw - 1 padding columns of each row) are computed and thrown away.
#
# dx is computed the same way: it is the stride-1 correlation of dout with the kernel turned
# around (``w2[a', b', k, c] = w[kh-1-a', kw-1-b', c, k]``), padded by kh-1-pt on top and
# kw-1-pl on the left.  dW[a, b, c, k] is the same products summed over the output instead of
# over the taps: lanes_dot over output rows, one tap at a time.  Stride 1 only: with a stride
# the taps are no longer contiguous runs.  ``_use_lanes`` says when this path runs.

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
    Py_ssize_t qs      # stored length of a tiled weight row (see _lanes.pxd)


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
    # a weight row repeats every lcm(Ko, V) lanes: store one period (plus the 3 vectors a block
    # of 4 may read past it) instead of the whole row, so the weights stay in L1 cache
    g.P = Ko * V // _gcd(Ko, V)
    if g.P == V:              # one vector of weights serves every block (lanes_dot knows)
        g.qs = V
    elif g.P + 3 * V < g.Lv:
        g.qs = g.P + 3 * V
    else:
        g.P = g.qs = g.Lv
    return g


cdef void _expand(const floating *xn, floating *xe, const Lanes *g) noexcept nogil:
    """Spread one image ``xn`` (Hi, Wi, Ci) over the lanes: ``xe[c, ip, s * Ko + k] =
    xn[ip - pt, s - pl, c]`` for every k < Ko, zero in the padding and the slack."""
    cdef Py_ssize_t c, i, iw, k, Ko = g.Ko, Ci = g.Ci
    cdef Py_ssize_t i_lo = max(0, -g.pt), i_hi = min(g.Hi, g.Hp - g.pt)
    cdef Py_ssize_t iw_lo = max(0, -g.pl), iw_hi = min(g.Wi, g.Wp - g.pl)
    cdef const floating *src
    cdef floating *dst
    cdef floating v
    memset(xe, 0, Ci * g.plane * sizeof(floating))
    for i in range(i_lo, i_hi):
        for c in range(Ci):
            src = xn + i * g.Wi * Ci + c
            dst = xe + c * g.plane + (i + g.pt) * g.row
            if Ko == 1:                # dx of a one-channel input: a plain (strided) copy
                for iw in range(iw_lo, iw_hi):
                    dst[iw + g.pl] = src[iw * Ci]
                continue
            for iw in range(iw_lo, iw_hi):
                v = src[iw * Ci]
                for k in range(Ko):
                    dst[(iw + g.pl) * Ko + k] = v


cdef void _tap_offsets(Py_ssize_t *off, const Lanes *g) noexcept nogil:
    """off[t]: where the run of tap t = (a, b, c) starts in xe."""
    cdef Py_ssize_t a, b, c, t = 0
    for a in range(g.kh):
        for b in range(g.kw):
            for c in range(g.Ci):
                off[t] = c * g.plane + a * g.row + b * g.Ko
                t += 1


cdef void _lanes_image(const floating *xe, const floating *wt, const floating *init,
                       floating *outn, floating *acc, const Py_ssize_t *off,
                       const Lanes *g) noexcept nogil:
    """outn (Ho, Wo * Ko) = init + the correlation of one expanded image ``xe`` with ``wt``."""
    cdef Py_ssize_t o
    memcpy(acc, init, g.Lv * sizeof(floating))
    lanes_dot(acc, xe, 0, off, wt, g.qs, g.P, g.T, g.Lv)
    for o in range(g.Ho):     # keep lanes ow < Wo of each row
        memcpy(outn + o * g.Wo * g.Ko, acc + o * g.row, g.Wo * g.Ko * sizeof(floating))


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
                         Py_ssize_t n_lo, Py_ssize_t n_hi, const Lanes *g) noexcept nogil:
    cdef Py_ssize_t n
    for n in range(n_lo, n_hi):
        _expand(x + n * g.Hi * g.Wi * g.Ci, xe, g)
        _lanes_image(xe, wt, btile, out + n * g.Ho * g.Wo * g.Ko, acc, off, g)


cdef void _backward_lanes(const floating *dout, const floating *x, const floating *wt2,
                          const floating *zeros, floating *dx, floating *dwl, double *db_part,
                          floating *xe, floating *d, floating *acc, const Py_ssize_t *rowoff,
                          const Py_ssize_t *off2, Py_ssize_t n_lo, Py_ssize_t n_hi,
                          const Lanes *g, const Lanes *gx) noexcept nogil:
    """One work unit: dx[n] for its images (unless dx is NULL), and its partial sums of the
    dW lanes and of db."""
    cdef Py_ssize_t n, o, j, k, per_row = g.Wo * g.Ko
    cdef const floating *doutn
    for n in range(n_lo, n_hi):
        doutn = dout + n * g.Ho * per_row
        for o in range(g.Ho):          # d: rows padded to Lr lanes (the slack stays zero)
            memcpy(d + o * g.Lr, doutn + o * per_row, per_row * sizeof(floating))
        for j in range(g.Ho * g.Wo):
            for k in range(g.Ko):
                db_part[k] += doutn[j * g.Ko + k]
        _expand(x + n * g.Hi * g.Wi * g.Ci, xe, g)
        _lanes_dw(xe, d, dwl, rowoff, g)
        if dx != NULL:
            _expand(doutn, xe, gx)
            _lanes_image(xe, wt2, zeros, dx + n * gx.Ho * gx.Wo * gx.Ko, acc, off2, gx)


# -- Python entry points -------------------------------------------------------------------------
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


cdef Geom _geom(Py_ssize_t[:] x_shape, Py_ssize_t[:] w_shape, Py_ssize_t H_out,
                Py_ssize_t W_out, int sh, int sw, int pt, int pl):
    cdef Geom g
    g.H, g.W, g.C = x_shape[1], x_shape[2], x_shape[3]
    g.kh, g.kw, g.K = w_shape[0], w_shape[1], w_shape[3]
    g.sh, g.sw, g.pt, g.pl = sh, sw, pt, pl
    g.H_out, g.W_out = H_out, W_out
    g.P, g.R = H_out * W_out, g.kh * g.kw * g.C
    return g


def _units(Py_ssize_t N, int num_threads):
    """``(T, U, starts)``: T threads share U work units of whole images; unit u is images
    ``starts[u] <= n < starts[u + 1]`` (one unit when one thread runs)."""
    cdef Py_ssize_t T = max(1, min(num_threads, N)), u
    cdef Py_ssize_t U = 1 if T == 1 else min(N, UNITS_PER_THREAD * T)
    starts = np.empty(U + 1, dtype=np.intp)
    cdef Py_ssize_t[::1] s = starts
    for u in range(U + 1):
        s[u] = N * u // U
    return T, U, starts


def _plan(Py_ssize_t N, Py_ssize_t P, Py_ssize_t R, int num_threads, dtype):
    """Split N images into work units for T threads; see the module docstring.

    Returns ``(T, U, group, starts, buf, cols, blas)``: unit u is images
    ``starts[u] <= n < starts[u + 1]``, walked in groups of ``group`` images; the thread running
    it uses ``cols[tid * buf:(tid + 1) * buf]`` (``T * buf`` never exceeds the batch's im2col
    matrix); ``blas`` holds BLAS to one thread unless one thread runs alone.
    """
    T, U, starts = _units(N, num_threads)
    cdef Py_ssize_t group = max(1, min((N + U - 1) // U, GROUP_BUDGET // (P * R)))
    cols = np.empty(T * group * P * R, dtype=dtype)
    blas = nullcontext() if (T == 1 and num_threads > 1) else single_threaded_blas()
    return T, U, group, starts, group * P * R, cols, blas


# When the direct path runs.  Measured on the 2-core AVX-512 machine this was written on, one
# thread, forward + backward, direct path time / im2col + GEMM time (N = 32 or 64):
#   float32: C=1 K=4 k5 0.35   C=1 K=6 k5 (LeNet c1) 0.52   C=1 K=6 k3 0.54   C=1 K=8 k5 0.70
#            C=3 K=6 k5 0.86   C=2 K=8 k3 0.87   C=4 K=4 k3 0.97   |   C=3 K=8 k3 1.14
#            C=1 K=16 k5 1.15   C=6 K=6 k3 1.26   C=6 K=16 k5 (LeNet c2) 3.7
#   float64: C=1 K=4 k5 0.50   C=1 K=6 k5 0.93   |   C=4 K=4 k3 1.02   C=2 K=8 k3 1.16
#            C=3 K=6 k5 1.40
# Two loads per multiply-add cap the direct path near half the machine's peak, while GEMM
# gains with every filter; a vector holds half as many doubles, so the float64 limit is half
# the float32 one.  The rule: stride 1, at most 8 filters, C * K at most 18 (float32) or 9
# (float64), and an expanded image (C * K numbers per padded pixel) no larger than
# LANES_BUDGET numbers, so that it stays in cache.
cdef Py_ssize_t LANES_MAX_K = 8
cdef Py_ssize_t LANES_MAX_CK = 18     # for float32: 16 numbers per vector
cdef Py_ssize_t LANES_BUDGET = 1 << 20


cdef bint _use_lanes(const Geom *g, Py_ssize_t V) noexcept nogil:
    """Does conv2d with geometry g run the direct path, with V numbers per vector?"""
    return (g.sh == 1 and g.sw == 1 and g.K <= LANES_MAX_K
            and g.C * g.K * 16 <= LANES_MAX_CK * V
            and (g.H_out + g.kh - 1) * (g.W_out + g.kw - 1) * g.C * g.K <= LANES_BUDGET)


def uses_direct_path(x_shape, w_shape, out_shape, strides, dtype):
    """True when conv2d with these shapes and dtype runs the direct path (tests, benchmarks)."""
    cdef Geom g
    g.C, g.kh, g.kw, g.K = x_shape[3], w_shape[0], w_shape[1], w_shape[3]
    g.H_out, g.W_out = out_shape[1], out_shape[2]
    g.sh, g.sw = strides
    return _use_lanes(&g, 64 // np.dtype(dtype).itemsize)


cdef _forward_lanes_all(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                        const floating[::1] b, floating[:, :, :, ::1] out, const Geom *g,
                        int num_threads):
    """conv2d_forward by the direct path (see "the direct path" above)."""
    dtype = np.float32 if floating is float else np.float64
    cdef Py_ssize_t N = x.shape[0], K = g.K, T, U, t, j, u
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
        for t in range(lg.T):              # wt[t, j] = w[a, b, c, j % K], tap t = (a, b, c)
            for j in range(lg.qs):
                wt[t, j] = wp[t * K + j % K]
        for j in range(lg.Lv):
            btile[j] = b[j % K]
        _tap_offsets(&off[0], &lg)
        for u in prange(U, schedule="dynamic", num_threads=T):
            _forward_lanes(&x[0, 0, 0, 0], &wt[0, 0], &btile[0], &out[0, 0, 0, 0],
                           &xe[threadid(), 0], &acc[threadid(), 0], &off[0], starts[u],
                           starts[u + 1], &lg)


cdef _backward_lanes_all(const floating[:, :, :, ::1] dout, const floating[:, :, :, ::1] x,
                         const floating[:, :, :, ::1] w, floating[:, :, :, ::1] dx,
                         floating[:, :, :, ::1] dw, floating[::1] db, const Geom *g,
                         int num_threads):
    """conv2d_backward by the direct path.  dx is the stride-1 correlation of dout with the
    kernel turned around, ``w2[a', b', k, c] = w[kh-1-a', kw-1-b', c, k]``, padded by
    ``kh-1-pt`` on top and ``kw-1-pl`` on the left (negative: cropped)."""
    dtype = np.float32 if floating is float else np.float64
    cdef bint need_dx = dx is not None
    cdef Py_ssize_t N = x.shape[0], K = g.K, C = g.C, V = 64 // sizeof(floating)
    cdef Py_ssize_t T, U, t, j, u, a, b, k, ow
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
    cdef floating[:, ::1] acc = np.empty((T, gx.Lv), dtype=dtype)
    # one partial sum of the dW lanes and of db per unit (not per thread), added in unit order:
    # the result does not depend on which thread ran which unit
    cdef floating[:, ::1] dwl = np.zeros((U, lg.T * lg.Lr), dtype=dtype)
    cdef double[:, ::1] db_part = np.zeros((U, K), dtype=np.float64)
    cdef const floating *wp = &w[0, 0, 0, 0]
    cdef floating *dxp = &dx[0, 0, 0, 0] if need_dx else NULL
    cdef floating *dwp = &dw[0, 0, 0, 0]
    cdef floating s
    cdef double ds
    with nogil:
        if need_dx:
            for a in range(g.kh):          # tap (a, b, k) of w2 reads w[kh-1-a, kw-1-b, c, k]
                for b in range(g.kw):
                    for k in range(K):
                        t = (a * g.kw + b) * K + k
                        for j in range(gx.qs):
                            wt2[t, j] = wp[(((g.kh - 1 - a) * g.kw + g.kw - 1 - b) * C
                                            + j % C) * K + k]
            _tap_offsets(&off2[0], &gx)
        for u in prange(U, schedule="dynamic", num_threads=T):
            _backward_lanes(&dout[0, 0, 0, 0], &x[0, 0, 0, 0], &wt2[0, 0], &zeros[0], dxp,
                            &dwl[u, 0], &db_part[u, 0], &xe[threadid(), 0], &d[threadid(), 0],
                            &acc[threadid(), 0], &rowoff[0], &off2[0], starts[u], starts[u + 1],
                            &lg, &gx)
        # dW[t, k]: lanes ow * K + k of tap t, summed over the units and the output columns
        for t in range(lg.T):
            for k in range(K):
                s = 0
                for u in range(U):
                    for ow in range(lg.Wo):
                        s = s + dwl[u, t * lg.Lr + ow * K + k]
                dwp[t * K + k] = s
        for k in range(K):
            ds = 0
            for u in range(U):
                ds = ds + db_part[u, k]
            db[k] = <floating>ds


def conv2d_forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                   const floating[::1] b, floating[:, :, :, ::1] out,
                   int sh, int sw, int pt, int pl, int num_threads):
    """Fill ``out`` (N, H_out, W_out, K) with ``im2col(x) @ w.reshape(-1, K) + b``.

    ``pt``/``pl`` are the top/left zero padding; ``num_threads`` the OpenMP team size.
    """
    _check_shapes(x, w, b, out, sh, sw, pt, pl)
    cdef Geom g = _geom(x.shape, w.shape, out.shape[1], out.shape[2], sh, sw, pt, pl)
    if _use_lanes(&g, 64 // sizeof(floating)):
        _forward_lanes_all(x, w, b, out, &g, num_threads)
        return
    cdef Py_ssize_t N = x.shape[0], T, U, group, buf, u
    cdef Py_ssize_t[::1] starts
    cdef floating[::1] cols
    dtype = np.float32 if floating is float else np.float64
    T, U, group, starts, buf, cols, blas = _plan(N, g.P, g.R, num_threads, dtype)
    cdef const floating *xp = &x[0, 0, 0, 0]
    cdef const floating *wp = &w[0, 0, 0, 0]
    cdef const floating *bp = &b[0]
    cdef floating *outp = &out[0, 0, 0, 0]
    cdef floating *colsp = &cols[0]
    with blas:
        with nogil:
            for u in prange(U, schedule="dynamic", num_threads=T):
                _forward_images(xp, wp, bp, outp, colsp + threadid() * buf, starts[u],
                                starts[u + 1], group, &g)


def conv2d_backward(const floating[:, :, :, ::1] dout, const floating[:, :, :, ::1] x,
                    const floating[:, :, :, ::1] w, floating[:, :, :, ::1] dx,
                    floating[:, :, :, ::1] dw, floating[::1] db,
                    int sh, int sw, int pt, int pl, int num_threads):
    """Fill ``dx`` (like x), ``dw`` (like w) and ``db`` (K,) from ``dout`` (N, H_out, W_out, K).

    ``dW = cols^T @ dout``, ``dx = col2im(dout @ W^T)``, ``db`` = dout summed over N, H_out,
    W_out (accumulated in double precision).  ``dx=None`` skips dx (a network's first layer
    never needs it).
    """
    _check_shapes(x, w, db, dout, sh, sw, pt, pl)
    if dx is not None:
        _check_like(dx, x, "dx", "x")
    _check_like(dw, w, "dw", "w")
    cdef Geom g = _geom(x.shape, w.shape, dout.shape[1], dout.shape[2], sh, sw, pt, pl)
    if _use_lanes(&g, 64 // sizeof(floating)):
        _backward_lanes_all(dout, x, w, dx, dw, db, &g, num_threads)
        return
    cdef Py_ssize_t N = x.shape[0], T, U, group, buf, u, i, k
    cdef Py_ssize_t[::1] starts
    cdef floating[::1] cols
    dtype = np.float32 if floating is float else np.float64
    T, U, group, starts, buf, cols, blas = _plan(N, g.P, g.R, num_threads, dtype)
    # one partial dW and db per unit (not per thread), summed in unit order: the result does
    # not depend on which thread ran which unit
    cdef floating[:, ::1] dw_part = np.empty((U, g.R * g.K), dtype=dtype)
    cdef double[:, ::1] db_part = np.zeros((U, g.K), dtype=np.float64)
    cdef const floating *doutp = &dout[0, 0, 0, 0]
    cdef const floating *xp = &x[0, 0, 0, 0]
    cdef const floating *wp = &w[0, 0, 0, 0]
    cdef floating *dxp = &dx[0, 0, 0, 0] if dx is not None else NULL
    cdef floating *dwp = &dw[0, 0, 0, 0]
    cdef floating *colsp = &cols[0]
    cdef floating acc
    cdef double dacc
    with blas:
        with nogil:
            for u in prange(U, schedule="dynamic", num_threads=T):
                _backward_images(doutp, xp, wp, dxp, &dw_part[u, 0], &db_part[u, 0],
                                 colsp + threadid() * buf, starts[u], starts[u + 1], group, &g)
            # every unit has at least one image, so every partial sum is initialised
            for i in range(g.R * g.K):
                acc = 0
                for u in range(U):
                    acc = acc + dw_part[u, i]
                dwp[i] = acc
            for k in range(g.K):
                dacc = 0
                for u in range(U):
                    dacc = dacc + db_part[u, k]
                db[k] = <floating>dacc
