# cython: language_level=3
"""conv2d forward and backward by im2col + GEMM (the compiled twin of
``cytorch.reference.conv2d_forward`` / ``conv2d_backward``).  Stride-1 layers run the
direct path of ``_direct.pyx`` (the thinnest), Winograd (``_winograd.pyx``, 3x3) or the
blocked path (``_blocked.pyx``, LeNet's two layers) instead when their rules say so
(``cytorch.functional`` picks).  Wide strided layers such as AlexNet's first take this
module's implicit-GEMM path (forward and dW by the micro-kernels of ``_strided.h``, reading
the image itself; see "the implicit-GEMM path" below and ``uses_strided_path`` for the rule).

Layout contract, shared with the NumPy twin:

* ``x``: ``(N, H, W, C)`` channels-last, C-contiguous; ``w``: ``(kh, kw, C, K)``; ``b``: ``(K,)``;
* one im2col row per output position, ordered ``(kh, kw, C)`` like ``w.reshape(kh*kw*C, K)``,
  so ``cols @ W`` is already the ``(N, H_out, W_out, K)`` output: no transpose anywhere;
* padding arrives resolved; only ``pad_top`` and ``pad_left`` are needed here, because a window
  row or column outside ``[0, H) x [0, W)`` simply reads as zero (bottom/right padding is
  implied by the output shape);
* ``H_out = floor((H + P_top + P_bottom - kh) / sh) + 1``, same for W, where a kernel dilated by
  ``dil_h`` spans ``kh = (kh - 1) * dil_h + 1`` rows (tap ``a`` reads row ``a * dil_h``).

How the work is split.  The batch is cut into a few work units of whole images (up to
``UNITS_PER_THREAD`` per thread, ``_parallel.pxd``); OpenMP threads take units dynamically and walk each in small
groups: im2col of the group into the thread's own column buffer (sized to stay in L2 cache),
then a single-threaded GEMM on it.  BLAS is held to one thread meanwhile.  Measured on the
2-core Intel Xeon (AVX-512, a virtual machine) this was written on, the alternative -- im2col parallel over images, then one
big GEMM on OpenBLAS's own threads -- was 2-6x slower: OpenMP's idle threads spin-wait for a
while after each parallel region and steal the cores OpenBLAS's threads need, and thin GEMMs
(K = 6 filters) parallelise poorly anyway.  When one thread would run alone (a single image),
BLAS gets the cores instead.

Memory: the column buffers hold at most ``GROUP_BUDGET`` elements per thread (but at least one
image, or one band of an image), never more than one batch's im2col matrix.  An image whose
im2col matrix exceeds ``BAND_BUDGET`` is walked in bands of output rows: unfold a band, GEMM,
(in backward) fold it back, then the next.  In backward each buffer first holds ``cols`` for
``dW += cols^T @ dout``, then ``dcols = dout @ W^T`` for col2im.

Bands, measured on the AMD EPYC (Zen 5, 2 cores, 1 MiB of L2 each, busy virtual machine) of
issue 13, AlexNet's first layer (8x227x227x3 -> 96, 11x11 stride 4: 4.4 MiB of columns per
image), OpenBLAS's Haswell kernels, forward + backward, time with bands of 2 MiB / with whole
images: 0.91-0.99 on one thread, 0.85-0.97 in CPU time on two (the two threads' 4.4 MiB
buffers competed for L3 and memory).  Bands of 0.5 MiB were 1.05 on one thread when the
machine was quieter: every band's GEMMs pack the weights again.  Each unit sums its own
``dW`` and ``db``; the partial sums are added in unit order at the end, so the result does not
depend on which thread ran what (bit-identical runs, no atomics).

The fused epilogue (``_epilogue.pxd``): with an ``activation``, forward applies it to each
group's output right after the GEMM that wrote it (the output starts from the bias), and
backward computes ``dz = dout * f'(y)`` group by group into a small per-thread buffer in the
pass that sums db, before both GEMMs read it: no pass over a full-size array outside the
kernel, in either direction.

``cytorch.functional`` validates every argument; the entry points here re-check that the shapes
agree (cheap) so that no call can read or write out of bounds.
"""
import os
from contextlib import nullcontext

from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.string cimport memcpy, memset

import numpy as np

from .._config import single_threaded_blas
from . import EPILOGUES, isa_functions
from ._blas cimport gemm
from ._epilogue cimport (ACT_LINEAR, apply_activation, cy_isa_best, cy_mathfn_select,
                         derivative_db)
from ._guards cimport check_conv_shapes, check_like
from ._parallel cimport sum_unit_db, sum_unit_parts, unit_count, unit_start, unit_threads

cdef extern from "_strided.h" nogil:
    ctypedef struct cy_str_kernels_f:
        void (*fwd)(float *dst, Py_ssize_t ldd, const float *xr, const Py_ssize_t *off,
                    const float *w, const float *init, Py_ssize_t nt, int pb,
                    int kb) noexcept nogil
        void (*dw)(float *acc, Py_ssize_t lda, const float *x, Py_ssize_t xrow,
                   Py_ssize_t xpix, const float *d, Py_ssize_t rows, Py_ssize_t Wo, int tb,
                   int kb) noexcept nogil
    ctypedef struct cy_str_kernels_d:
        void (*fwd)(double *dst, Py_ssize_t ldd, const double *xr, const Py_ssize_t *off,
                    const double *w, const double *init, Py_ssize_t nt, int pb,
                    int kb) noexcept nogil
        void (*dw)(double *acc, Py_ssize_t lda, const double *x, Py_ssize_t xrow,
                   Py_ssize_t xpix, const double *d, Py_ssize_t rows, Py_ssize_t Wo, int tb,
                   int kb) noexcept nogil
    cy_str_kernels_f cy_str_f
    cy_str_kernels_d cy_str_d
    int cy_str_bytes, cy_str_acc
    int cy_str_select(int isa)

# -- which instruction set the fused epilogue and the strided path run (_kernels/__init__.py) ---
# (The GEMMs are OpenBLAS's, which picks its own kernels; the im2col loops are plain C.)
def _select_variant(int index):
    """Switch the epilogue's element functions and the strided path's micro-kernels to
    variant ``index``; the index they then run."""
    cy_str_select(index)
    return cy_mathfn_select(index)


isa_variants, _select_isa, isa = isa_functions(
    "the epilogue's element functions and the strided path's micro-kernels", cy_isa_best(),
    _select_variant)


# Elements of one thread's column buffer (128 KiB in float32): groups of images this small keep
# the GEMM operands in L2 cache.  A single image larger than this gets a buffer of its own size,
# up to BAND_BUDGET elements (2 MiB in float32); an image larger still (AlexNet's first layer:
# 55 * 55 windows of 363 values, 4.4 MiB) is walked in bands of output rows that fit it.  Bands
# keep each thread's columns out of the shared L3 cache and off the memory bus, where two
# threads unfolding 4.4 MiB each got in each other's way; smaller bands than this cost more than
# they save (OpenBLAS packs the whole weight matrix again for every band's GEMMs).  Measured on
# the AMD EPYC (Zen 5) of issue 13 -- see the module docstring.
cdef Py_ssize_t GROUP_BUDGET = 1 << 15
cdef Py_ssize_t BAND_BUDGET = 1 << 19


cdef struct Geom:
    Py_ssize_t H, W, C, kh, kw, sh, sw, pt, pl, H_out, W_out, K
    Py_ssize_t dil_h, dil_w   # dilation: tap (a, b) reads input row a * dil_h, column b * dil_w
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


cdef void _im2col_image(const floating *xn, floating *cols, const Geom *g, Py_ssize_t oh_lo,
                        Py_ssize_t oh_hi) noexcept nogil:
    """Unfold output rows oh_lo <= oh < oh_hi of one image ``xn`` (H, W, C) into ``cols``
    ((oh_hi - oh_lo) * W_out, kh * kw * C): a band of the image's im2col matrix.

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
    for oh in range(oh_lo, oh_hi):
        for a in range(g.kh):
            ih = oh * g.sh - g.pt + a
            dst = cols + (oh - oh_lo) * g.W_out * R + a * span  # segment a of row (oh, 0)
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


cdef void _col2im_image(const floating *cols, floating *dxn, const Geom *g, Py_ssize_t oh_lo,
                        Py_ssize_t oh_hi) noexcept nogil:
    """The adjoint of ``_im2col_image``: add the band of ``cols`` (output rows oh_lo <= oh <
    oh_hi) back into ``dxn`` (H, W, C) where it was read from (overlapping windows sum); what
    fell into the padding is dropped."""
    cdef Py_ssize_t C = g.C, span = g.kw * g.C, R = g.R, step = g.sw * g.C
    cdef Py_ssize_t oh, ow, a, ih, t, n, q, c, j, jlo, jhi, ow_lo = 0, ow_hi = 0
    cdef const floating *src
    cdef const floating *seg
    cdef floating *dst
    cdef floating acc
    _interior(g, &ow_lo, &ow_hi)
    n = ow_hi - ow_lo
    for oh in range(oh_lo, oh_hi):
        for a in range(g.kh):
            ih = oh * g.sh - g.pt + a
            if ih < 0 or ih >= g.H:
                continue
            src = cols + (oh - oh_lo) * g.W_out * R + a * span
            dst = dxn + (ih * g.W + ow_lo * g.sw - g.pl) * C
            if step >= 4:
                # windows at least a vector apart: add span by span
                for ow in range(ow_lo, ow_hi):
                    seg = src + ow * R
                    for t in range(span):
                        dst[t] += seg[t]
                    dst += step
            elif g.sw == 1 and n > 0:   # (n = 0 would still touch kw - 1 columns)
                # windows 1-3 elements apart (one to three channels, stride 1): adding span by
                # span, each vector load overlaps the store just made and stalls (measured 2x
                # slower).  Gather instead: input column q of the interior collects kernel
                # column j of window q - j, summed in a register, stored once.
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
                    for ow in range(n):
                        dst[ow * step + t] += src[(ow_lo + ow) * R + t]
            for ow in range(ow_lo):
                _col2im_clipped(src + ow * R, dxn, ih, ow, g)
            for ow in range(ow_hi, g.W_out):
                _col2im_clipped(src + ow * R, dxn, ih, ow, g)


# -- dilated kernels ---------------------------------------------------------------------------
# With a dilation, tap (a, b) of window (oh, ow) reads input cell (oh * sh - pt + a * dil_h,
# ow * sw - pl + b * dil_w): the kw taps of a window row are no longer one contiguous span, so
# the window is copied C values (one tap) at a time.  Simple and obviously in bounds; dilated
# layers are rare enough that this unfold is not worth the interior/border split above.

cdef void _im2col_dilated(const floating *xn, floating *cols, const Geom *g, Py_ssize_t oh_lo,
                          Py_ssize_t oh_hi) noexcept nogil:
    """``_im2col_image`` for any dilation: cols[(oh, ow), (a, b, c)] = x[ih, iw, c] or 0."""
    cdef Py_ssize_t C = g.C, oh, ow, a, b, ih, iw
    cdef floating *dst = cols
    for oh in range(oh_lo, oh_hi):
        for ow in range(g.W_out):
            for a in range(g.kh):
                ih = oh * g.sh - g.pt + a * g.dil_h
                for b in range(g.kw):
                    iw = ow * g.sw - g.pl + b * g.dil_w
                    if 0 <= ih < g.H and 0 <= iw < g.W:
                        memcpy(dst, xn + (ih * g.W + iw) * C, C * sizeof(floating))
                    else:
                        memset(dst, 0, C * sizeof(floating))
                    dst += C


cdef void _col2im_dilated(const floating *cols, floating *dxn, const Geom *g, Py_ssize_t oh_lo,
                          Py_ssize_t oh_hi) noexcept nogil:
    """The adjoint of ``_im2col_dilated``: add every tap back where it was read from."""
    cdef Py_ssize_t C = g.C, oh, ow, a, b, ih, iw, c
    cdef const floating *src = cols
    cdef floating *dst
    for oh in range(oh_lo, oh_hi):
        for ow in range(g.W_out):
            for a in range(g.kh):
                ih = oh * g.sh - g.pt + a * g.dil_h
                for b in range(g.kw):
                    iw = ow * g.sw - g.pl + b * g.dil_w
                    if 0 <= ih < g.H and 0 <= iw < g.W:
                        dst = dxn + (ih * g.W + iw) * C
                        for c in range(C):
                            dst[c] += src[c]
                    src += C


cdef inline void _unfold(const floating *xn, floating *cols, const Geom *g, Py_ssize_t oh_lo,
                         Py_ssize_t oh_hi) noexcept nogil:
    """im2col of output rows oh_lo <= oh < oh_hi of one image, by the contiguous-span unfold
    when the kernel is not dilated."""
    if g.dil_h == 1 and g.dil_w == 1:
        _im2col_image(xn, cols, g, oh_lo, oh_hi)
    else:
        _im2col_dilated(xn, cols, g, oh_lo, oh_hi)


cdef inline void _fold(const floating *cols, floating *dxn, const Geom *g, Py_ssize_t oh_lo,
                       Py_ssize_t oh_hi) noexcept nogil:
    """col2im of output rows oh_lo <= oh < oh_hi of one image (the adjoint of ``_unfold``):
    adds into dxn, which the caller zeroes before the image's first band."""
    if g.dil_h == 1 and g.dil_w == 1:
        _col2im_image(cols, dxn, g, oh_lo, oh_hi)
    else:
        _col2im_dilated(cols, dxn, g, oh_lo, oh_hi)


cdef void _forward_images(const floating *x, const floating *w, const floating *b,
                          floating *out, floating *cols, Py_ssize_t n_lo, Py_ssize_t n_hi,
                          Py_ssize_t group, Py_ssize_t band, int act,
                          const Geom *g) noexcept nogil:
    """out[n] = f(im2col(x[n]) @ W + b) for images n_lo <= n < n_hi, one GEMM per group of
    ``group`` whole images, or, when one image's im2col matrix is too large for the column
    buffer (``group`` is then 1), per band of ``band`` output rows of an image.

    The GEMM starts from the bias (beta = 1 on rows filled with b: OpenBLAS would otherwise
    zero C in a pass of its own, and a bias added afterwards would round differently where it
    splits a long R into blocks), and the activation f (``_epilogue.pxd``) runs on each group's
    output right after the GEMM that wrote it, while it is in cache."""
    cdef Py_ssize_t n = n_lo, nb, i, r, k, K = g.K, oh, oh_hi, rows
    cdef Py_ssize_t x_step = g.H * g.W * g.C, out_step = g.P * K
    cdef floating *outp
    while n < n_hi:
        nb = min(group, n_hi - n)
        oh = 0
        while oh < g.H_out:   # (one pass of whole images when group > 1: band == H_out)
            oh_hi = min(oh + band, g.H_out)
            rows = nb * (oh_hi - oh) * g.W_out
            for i in range(nb):
                _unfold(x + (n + i) * x_step, cols + i * g.P * g.R, g, oh, oh_hi)
            outp = out + n * out_step + oh * g.W_out * K
            for r in range(rows):
                for k in range(K):
                    outp[r * K + k] = b[k]
            gemm(ord('n'), ord('n'), <int>rows, <int>K, <int>g.R, <floating>1.0,
                 cols, <int>g.R, w, <int>K, <floating>1.0, outp, <int>K)
            apply_activation(outp, outp, rows * K, act)
            oh = oh_hi
        n += nb


cdef void _backward_images(const floating *dout, const floating *y, const floating *x,
                           const floating *w, floating *dx, floating *dw_part, double *db_part,
                           floating *cols, floating *dz, Py_ssize_t n_lo, Py_ssize_t n_hi,
                           Py_ssize_t group, Py_ssize_t band, int act,
                           const Geom *g) noexcept nogil:
    """For images n_lo <= n < n_hi (one work unit): dx[n] = col2im(dz[n] @ W^T), and the
    unit's partial sums dw_part = sum cols^T @ dz[n] and db_part = sum of dz[n] rows, where
    dz = dout * f'(y) is computed group by group (or band by band, as in ``_forward_images``)
    into the thread's buffer ``dz`` in the pass that sums db (with f linear, dz is dout itself
    and the buffer is not used)."""
    cdef Py_ssize_t n = n_lo, nb, i, K = g.K, oh, oh_hi, rows, off
    cdef Py_ssize_t x_step = g.H * g.W * g.C, out_step = g.P * K
    cdef const floating *dzp
    cdef floating beta = 0
    while n < n_hi:
        nb = min(group, n_hi - n)
        if dx != NULL:
            memset(dx + n * x_step, 0, nb * x_step * sizeof(floating))
        oh = 0
        while oh < g.H_out:
            oh_hi = min(oh + band, g.H_out)
            rows = nb * (oh_hi - oh) * g.W_out
            off = n * out_step + oh * g.W_out * K
            derivative_db(dz, dout + off, y + off if act != ACT_LINEAR else NULL, rows, K, act,
                          db_part)
            dzp = dz if act != ACT_LINEAR else dout + off
            for i in range(nb):
                _unfold(x + (n + i) * x_step, cols + i * g.P * g.R, g, oh, oh_hi)
            # dW (R x K) += cols^T (R x rows) @ dz (rows x K)
            gemm(ord('t'), ord('n'), <int>g.R, <int>K, <int>rows, <floating>1.0,
                 cols, <int>g.R, dzp, <int>K, beta, dw_part, <int>K)
            beta = 1
            if dx != NULL:
                # dcols (rows x R) = dz (rows x K) @ W^T (K x R), into the same buffer
                gemm(ord('n'), ord('t'), <int>rows, <int>g.R, <int>K, <floating>1.0,
                     dzp, <int>K, w, <int>K, <floating>0.0, cols, <int>g.R)
                for i in range(nb):
                    _fold(cols + i * g.P * g.R, dx + (n + i) * x_step, g, oh, oh_hi)
            oh = oh_hi
        n += nb


# -- the implicit-GEMM path of strided layers (``_strided.h``) -----------------------------------
# Forward and dW run register-blocked micro-kernels that read the image itself, not an im2col
# matrix (AlexNet's first layer: 3025 windows of 363 values, 4.4 MiB per image, written and read
# back once for forward and once for dW); dx stays dcols = dz @ W^T by OpenBLAS, folded back by
# col2im band by band as above.
#
#   forward  each image is first copied phase-planar (``_phase_planar``: row, channel, column
#            phase = column % sw, column // sw; zero padding included), where the same tap of
#            neighbouring output pixels is neighbouring numbers: a tile of pb pixels of one
#            output row x kb vectors of filters sums all R taps in registers, from the bias
#   dW       the taps (b, c) of one kernel row are kw * C neighbouring numbers of the
#            channels-last image: a tile of tb such taps x kb vectors of filters sums over a
#            chunk of output pixels (a few output rows: dz's panel and the image rows it reads
#            stay in L1), dz packed panel by panel (kb vectors per pixel, contiguous)
#
# Both sum every lane in one fixed order (taps in order; pixels row by row), so the AVX2 and
# AVX-512 variants give the same bits, and a unit's dW does not depend on its chunking.

cdef struct Strided:
    Py_ssize_t kb, PW, NP, Kpad  # vectors of filters per tile, filters per panel, panels, NP * PW
    Py_ssize_t pbmax, tbmax      # the widest forward (pixels) and dW (taps) tiles
    Py_ssize_t Hp, Wn            # padded image rows and columns the windows reach
    Py_ssize_t M, rowlen         # phase-planar: numbers per phase, per row (C * sw * M)
    Py_ssize_t span              # numbers per kernel row in channels-last order, kw * C
    Py_ssize_t chunk             # output rows per dW chunk
    Py_ssize_t xs_row            # numbers per row of the image dW reads (x or its padded copy)
    bint pad_copy                # dW reads a zero-padded copy (the windows leave the image)


cdef Strided _strided_plan(const Geom *g, Py_ssize_t itemsize):
    cdef Strided s
    cdef Py_ssize_t V = cy_str_bytes // itemsize
    s.kb = 2 if g.K > V else 1
    s.PW = s.kb * V
    s.NP = (g.K + s.PW - 1) // s.PW
    s.Kpad = s.NP * s.PW
    s.pbmax = s.tbmax = cy_str_acc // s.kb
    s.Hp = (g.H_out - 1) * g.sh + g.kh
    s.Wn = (g.W_out - 1) * g.sw + g.kw
    s.M = (s.Wn + g.sw - 1) // g.sw
    s.rowlen = g.C * g.sw * s.M
    s.span = g.kw * g.C
    # dz's chunk of a panel about 16 KiB: with the image rows it reads, in L1 cache
    s.chunk = max(1, (1 << 14) // (g.W_out * s.PW * itemsize))
    s.pad_copy = g.pt > 0 or g.pl > 0 or s.Hp > g.H or s.Wn > g.W
    s.xs_row = (s.Wn if s.pad_copy else g.W) * g.C
    return s


cdef inline void _str_fwd(floating *dst, Py_ssize_t ldd, const floating *xr,
                          const Py_ssize_t *off, const floating *w, const floating *init,
                          Py_ssize_t nt, int pb, int kb) noexcept nogil:
    if floating is float:
        cy_str_f.fwd(dst, ldd, xr, off, w, init, nt, pb, kb)
    else:
        cy_str_d.fwd(dst, ldd, xr, off, w, init, nt, pb, kb)


cdef inline void _str_dw(floating *acc, Py_ssize_t lda, const floating *x, Py_ssize_t xrow,
                         Py_ssize_t xpix, const floating *d, Py_ssize_t rows, Py_ssize_t Wo,
                         int tb, int kb) noexcept nogil:
    if floating is float:
        cy_str_f.dw(acc, lda, x, xrow, xpix, d, rows, Wo, tb, kb)
    else:
        cy_str_d.dw(acc, lda, x, xrow, xpix, d, rows, Wo, tb, kb)


cdef void _phase_planar(const floating *xn, floating *xr, const Geom *g,
                        const Strided *s) noexcept nogil:
    """xr[ih, c, ph, m] = x[ih - pt, m * sw + ph - pl, c], 0 outside the image, for the Hp
    rows the windows reach: output pixel ow's tap (a, b, c) is xr[oh * sh + a, c, b % sw,
    ow + b // sw], and ow + b // sw < M (``(ow + b // sw) * sw <= ow * sw + b < Wn``)."""
    cdef Py_ssize_t C = g.C, sw = g.sw, M = s.M, plane = sw * s.M, ih, iy, m, ph, c, ix
    cdef floating *row
    cdef const floating *src
    for ih in range(s.Hp):
        row = xr + ih * s.rowlen
        iy = ih - g.pt
        if iy < 0 or iy >= g.H:
            memset(row, 0, s.rowlen * sizeof(floating))
            continue
        src = xn + iy * g.W * C
        for m in range(M):
            for ph in range(sw):
                ix = m * sw + ph - g.pl
                if 0 <= ix < g.W:
                    for c in range(C):
                        row[c * plane + ph * M + m] = src[ix * C + c]
                else:
                    for c in range(C):
                        row[c * plane + ph * M + m] = 0


cdef void _padded_image(const floating *xn, floating *xp, const Geom *g,
                        const Strided *s) noexcept nogil:
    """xp (Hp, Wn, C) = x zero-padded: xp[i, j, c] = x[i - pt, j - pl, c], 0 outside."""
    cdef Py_ssize_t C = g.C, i, j, iy, ix
    cdef floating *row
    for i in range(s.Hp):
        row = xp + i * s.Wn * C
        iy = i - g.pt
        for j in range(s.Wn):
            ix = j - g.pl
            if 0 <= iy < g.H and 0 <= ix < g.W:
                memcpy(row + j * C, xn + (iy * g.W + ix) * C, C * sizeof(floating))
            else:
                memset(row + j * C, 0, C * sizeof(floating))


cdef void _strided_forward_images(const floating *x, const floating *wpk, const floating *bpad,
                                  floating *out, floating *xr, floating *tile,
                                  const Py_ssize_t *off, Py_ssize_t n_lo, Py_ssize_t n_hi,
                                  int act, const Geom *g, const Strided *s) noexcept nogil:
    """out[n] = f(conv(x[n], w) + b) for images n_lo <= n < n_hi: output row by row, filter
    panel by panel (the panel's R x PW weights stay in L1 cache across the row), in tiles of
    up to pbmax pixels (the row split into tiles of nearly equal width).  ``wpk`` holds the
    weights as NP panels (R, PW), zero beyond K, ``bpad`` the bias likewise; a panel that
    reaches past K is written to ``tile`` first, then its first K - k0 filters copied out."""
    cdef Py_ssize_t K = g.K, Wo = g.W_out, PW = s.PW, x_step = g.H * g.W * g.C
    cdef Py_ssize_t ntiles = (Wo + s.pbmax - 1) // s.pbmax, n, oh, p, i, q, r, k0, kv, ow0, ow1
    cdef floating *orow
    cdef const floating *xrow
    cdef const floating *wp
    for n in range(n_lo, n_hi):
        _phase_planar(x + n * x_step, xr, g, s)
        for oh in range(g.H_out):
            orow = out + (n * g.P + oh * Wo) * K
            xrow = xr + oh * g.sh * s.rowlen
            for p in range(s.NP):
                k0 = p * PW
                kv = min(PW, K - k0)
                wp = wpk + p * g.R * PW
                ow0 = 0
                for i in range(ntiles):
                    ow1 = Wo * (i + 1) // ntiles
                    if kv == PW:
                        _str_fwd(orow + ow0 * K + k0, K, xrow + ow0, off, wp, bpad + k0, g.R,
                                 <int>(ow1 - ow0), <int>s.kb)
                    else:
                        _str_fwd(tile, PW, xrow + ow0, off, wp, bpad + k0, g.R,
                                 <int>(ow1 - ow0), <int>s.kb)
                        for q in range(ow1 - ow0):
                            for r in range(kv):
                                orow[(ow0 + q) * K + k0 + r] = tile[q * PW + r]
                    ow0 = ow1
            apply_activation(orow, orow, Wo * K, act)


cdef void _strided_dw_band(const floating *xs, const floating *dzp, floating *dw_acc,
                           floating *dpk, Py_ssize_t oh_lo, Py_ssize_t oh_hi, const Geom *g,
                           const Strided *s) noexcept nogil:
    """dw_acc (R, Kpad) += the products of output rows oh_lo <= oh < oh_hi, whose dz is
    ``dzp`` ((oh_hi - oh_lo) * W_out, K), a chunk of ``s.chunk`` rows at a time: dz's chunk
    packed as NP panels (pixels, PW) into ``dpk``, then every (panel, kernel row, tap tile)."""
    cdef Py_ssize_t K = g.K, Wo = g.W_out, PW = s.PW, span = s.span
    cdef Py_ssize_t ntt = (span + s.tbmax - 1) // s.tbmax, oh = oh_lo, c_hi, npix, p, q, r, k0, kv, a, i
    cdef Py_ssize_t j0, j1
    cdef const floating *src
    cdef const floating *xa
    cdef floating *dst
    while oh < oh_hi:
        c_hi = min(oh + s.chunk, oh_hi)
        npix = (c_hi - oh) * Wo
        src = dzp + (oh - oh_lo) * Wo * K
        for p in range(s.NP):
            k0 = p * PW
            kv = min(PW, K - k0)
            dst = dpk + p * npix * PW
            for q in range(npix):
                for r in range(kv):
                    dst[q * PW + r] = src[q * K + k0 + r]
                for r in range(kv, PW):
                    dst[q * PW + r] = 0
        for p in range(s.NP):
            for a in range(g.kh):
                xa = xs + (oh * g.sh + a) * s.xs_row
                j0 = 0
                for i in range(ntt):
                    j1 = span * (i + 1) // ntt
                    _str_dw(dw_acc + (a * span + j0) * s.Kpad + p * PW, s.Kpad, xa + j0,
                            g.sh * s.xs_row, g.sw * g.C, dpk + p * npix * PW, c_hi - oh, Wo,
                            <int>(j1 - j0), <int>s.kb)
                    j0 = j1
        oh = c_hi


cdef void _strided_backward_images(const floating *dout, const floating *y, const floating *x,
                                   const floating *w, floating *dx, floating *dw_acc,
                                   double *db_part, floating *cols, floating *dz,
                                   floating *dpk, floating *xpad, Py_ssize_t n_lo,
                                   Py_ssize_t n_hi, Py_ssize_t band, int act, const Geom *g,
                                   const Strided *s) noexcept nogil:
    """For images n_lo <= n < n_hi (one work unit), band by band: dz = dout * f'(y) and db
    (``derivative_db``), dw_acc += the band's products (``_strided_dw_band``, from x or its
    zero-padded copy ``xpad``), and dx = col2im(dz @ W^T) through ``cols``."""
    cdef Py_ssize_t n, K = g.K, oh, oh_hi, rows, off, x_step = g.H * g.W * g.C
    cdef const floating *xs
    cdef const floating *dzp
    for n in range(n_lo, n_hi):
        if dx != NULL:
            memset(dx + n * x_step, 0, x_step * sizeof(floating))
        if s.pad_copy:
            _padded_image(x + n * x_step, xpad, g, s)
            xs = xpad
        else:
            xs = x + n * x_step
        oh = 0
        while oh < g.H_out:
            oh_hi = min(oh + band, g.H_out)
            rows = (oh_hi - oh) * g.W_out
            off = n * g.P * K + oh * g.W_out * K
            derivative_db(dz, dout + off, y + off if act != ACT_LINEAR else NULL, rows, K, act,
                          db_part)
            dzp = dz if act != ACT_LINEAR else dout + off
            _strided_dw_band(xs, dzp, dw_acc, dpk, oh, oh_hi, g, s)
            if dx != NULL:
                gemm(ord('n'), ord('t'), <int>rows, <int>g.R, <int>K, <floating>1.0,
                     dzp, <int>K, w, <int>K, <floating>0.0, cols, <int>g.R)
                _fold(cols, dx + n * x_step, g, oh, oh_hi)
            oh = oh_hi


def _pack_panels(w2, Py_ssize_t NP, Py_ssize_t PW):
    """(R, K) -> NP contiguous panels (R, PW), zero beyond K (a bias: R = 1)."""
    R, K = w2.shape
    wp = np.zeros((NP, R, PW), dtype=w2.dtype)
    for p in range(NP):
        k0 = p * PW
        wp[p, :, :min(PW, K - k0)] = w2[:, k0:k0 + PW]
    return wp


def _tap_offsets(Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t C, Py_ssize_t sw, Py_ssize_t M,
                 Py_ssize_t rowlen):
    """off[t] for the taps t = (a, b, c): where tap t of output pixel (oh, 0) is in the
    phase-planar image, relative to row oh * sh."""
    a, b, c = np.meshgrid(np.arange(kh), np.arange(kw), np.arange(C), indexing="ij")
    off = a * rowlen + c * (sw * M) + (b % sw) * M + b // sw
    return np.ascontiguousarray(off.reshape(-1), dtype=np.intp)


# CYTORCH_STRIDED (private, read at import; ``_set_strided_mode`` for the tests and
# benchmarks): "auto" takes the implicit-GEMM path where the rule of ``uses_strided_path``
# says, "always" for every undilated layer, "never" keeps im2col + GEMM everywhere.
_STRIDED_MODES = ("auto", "always", "never")
_strided_mode = "auto"


def _set_strided_mode(mode):
    """Set the strided path's mode (see above); return the previous one."""
    global _strided_mode
    if mode not in _STRIDED_MODES:
        raise ValueError(f"CYTORCH_STRIDED={mode!r} is not one of {list(_STRIDED_MODES)}")
    old, _strided_mode = _strided_mode, mode
    return old


_set_strided_mode(os.environ.get("CYTORCH_STRIDED", "").strip().lower() or "auto")


cdef bint _uses_strided(const Geom *g, Py_ssize_t N, int num_threads):
    """Does this call take the implicit-GEMM path?  Never for a dilated kernel, nor for a
    single image on several threads (im2col + GEMM then gives BLAS the cores).

    The rule of "auto": a strided layer with at least 48 filters and 128 taps per window
    (R = kh * kw * C), not 1x1.  Measured with ``benchmarks/bench_strided_rule.py`` on the
    AMD EPYC (Zen 5, 2 vCPUs, busy: load 4-5) of issue 13, one thread, CPU time, forward +
    backward with dx / without, strided over im2col + GEMM:

        layer                          avx2 (OpenBLAS Haswell)   avx512 (SkylakeX)
        AlexNet 8x227x227x3 -> 96 k11 s4     0.93-1.05 / 0.88    0.87 / 0.69
        ResNet stem 4x112x112x3 -> 64 k7 s2  0.91 / 0.91         0.83 / 0.81
        3x3 s2 16x32x32x32 -> 64             0.95 / 0.93         0.91 / 0.79
        3x3 s2 32x28x28x16 -> 32             0.92 / 0.91         0.87 / 1.22
        3x3 s2 32x28x28x8 -> 16              1.00 / 0.89         1.23 / 1.27
        3x3 s2 32x28x28x4 -> 16              1.19 / 1.14         1.33 / 1.30
        patchify 16x64x64x3 -> 48 k4 s4      1.05 / 0.95         1.11 / 1.11
        1x1 s2 16x28x28x64 -> 128            1.52 / 0.87         1.12 / 1.36

    Small images with few taps or filters lose: the per-image copies and the packing of dz
    cost more than the im2col matrix saves, and OpenBLAS multiplies several images at once;
    1x1 windows have no im2col to save (their unfold is a strided copy)."""
    if _strided_mode == "never" or g.dil_h != 1 or g.dil_w != 1:
        return False
    if N == 1 and num_threads > 1:
        return False
    if _strided_mode == "always":
        return True
    return (g.sh > 1 or g.sw > 1) and g.K >= 48 and g.kh * g.kw > 1 and g.R >= 128


def uses_strided_path(x_shape, w_shape, out_shape, strides, dilation=(1, 1),
                      int num_threads=1):
    """Would ``conv2d_forward``/``conv2d_backward`` take the implicit-GEMM path for these
    shapes?  (For the tests and benchmarks.)"""
    cdef Geom g
    g.H, g.W, g.C = x_shape[1], x_shape[2], x_shape[3]
    g.kh, g.kw, g.K = w_shape[0], w_shape[1], w_shape[3]
    g.sh, g.sw = strides
    g.dil_h, g.dil_w = dilation
    g.H_out, g.W_out = out_shape[1], out_shape[2]
    g.R = g.kh * g.kw * g.C
    return bool(_uses_strided(&g, x_shape[0], num_threads))


# -- Python entry points -------------------------------------------------------------------------
cdef inline void _dims4(shape, Py_ssize_t *dims):
    """The first 4 numbers of a Python ``shape`` into ``dims``."""
    dims[0], dims[1], dims[2], dims[3] = shape[:4]


def _check_shapes(x, w, b, out, int sh, int sw, int pt, int pl, int dil_h=1, int dil_w=1):
    """Raise ValueError unless the arrays agree (the last guard before code without checks;
    ``_guards.pxd``'s, for Python objects)."""
    cdef Py_ssize_t xs[4]
    cdef Py_ssize_t ws[4]
    cdef Py_ssize_t os[4]
    _dims4(x.shape, xs)
    _dims4(w.shape, ws)
    _dims4(out.shape, os)
    check_conv_shapes(xs, ws, b.shape[0], os, sh, sw, pt, pl, dil_h, dil_w)


def _check_like(a, b, name_a, name_b):
    """Raise ValueError unless the arrays ``a`` and ``b`` have one 4-D shape."""
    cdef Py_ssize_t sa[4]
    cdef Py_ssize_t sb[4]
    _dims4(a.shape, sa)
    _dims4(b.shape, sb)
    check_like(sa, sb, name_a, name_b)


def _activation_code(activation, y=None, dout=None):
    """The ``_epilogue.pxd`` code of ``activation`` (a name of ``EPILOGUES``); in backward, also
    check that the forward output ``y`` exists when the derivative reads it and has dout's
    shape."""
    if activation not in EPILOGUES:
        raise ValueError(f"conv2d kernel: activation must be one of {EPILOGUES}, "
                         f"got {activation!r}")
    code = EPILOGUES.index(activation)
    if dout is not None and code != ACT_LINEAR:
        if y is None:
            raise ValueError(f"conv2d kernel: the derivative of {activation!r} needs y, the "
                             f"forward output")
        _check_like(y, dout, "y", "dout")
    return code


cdef Geom _geom(Py_ssize_t[:] x_shape, Py_ssize_t[:] w_shape, Py_ssize_t H_out,
                Py_ssize_t W_out, int sh, int sw, int pt, int pl, int dil_h, int dil_w):
    cdef Geom g
    g.dil_h, g.dil_w = dil_h, dil_w
    g.H, g.W, g.C = x_shape[1], x_shape[2], x_shape[3]
    g.kh, g.kw, g.K = w_shape[0], w_shape[1], w_shape[3]
    g.sh, g.sw, g.pt, g.pl = sh, sw, pt, pl
    g.H_out, g.W_out = H_out, W_out
    g.P, g.R = H_out * W_out, g.kh * g.kw * g.C
    return g


def _units(Py_ssize_t N, int num_threads):
    """``(T, U, starts)``: T threads share U work units of whole images; unit u is images
    ``starts[u] <= n < starts[u + 1]`` (one unit when one thread runs)."""
    cdef Py_ssize_t T = unit_threads(N, num_threads), U = unit_count(N, T), u
    starts = np.empty(U + 1, dtype=np.intp)
    cdef Py_ssize_t[::1] s = starts
    for u in range(U + 1):
        s[u] = unit_start(N, U, u)
    return T, U, starts


def _plan(Py_ssize_t N, Py_ssize_t H_out, Py_ssize_t W_out, Py_ssize_t R, int num_threads,
          dtype, bint columns=True):
    """Split N images into work units for T threads; see the module docstring.

    Returns ``(T, U, group, band, starts, buf, cols, blas)``: unit u is images
    ``starts[u] <= n < starts[u + 1]``, walked in groups of ``group`` whole images, or, when
    one image's im2col matrix exceeds the budget (group 1), in bands of ``band`` output rows;
    the thread running it uses ``cols[tid * buf:(tid + 1) * buf]`` (``T * buf`` never exceeds
    the batch's im2col matrix); ``blas`` holds BLAS to one thread unless one thread runs alone
    (which then keeps whole images: BLAS's threads share each GEMM).  ``columns=False``: no
    column buffers (``cols`` has one element; the strided path allocates its own or none).
    """
    T, U, starts = _units(N, num_threads)
    cdef Py_ssize_t P = H_out * W_out
    cdef Py_ssize_t group = max(1, min((N + U - 1) // U, GROUP_BUDGET // (P * R)))
    cdef bint blas_threads = T == 1 and num_threads > 1
    cdef Py_ssize_t band = H_out, bands, rows_fit
    if P * R > BAND_BUDGET and not blas_threads:
        # the fewest bands that fit the budget, of equal height (no thin last band)
        # (ceilings written out: with cdivision, -(-a // b) on C integers truncates, which
        # gave AlexNet bands of 27, 27 and 1 rows instead of 3 x 19)
        rows_fit = max(1, BAND_BUDGET // (W_out * R))
        bands = (H_out + rows_fit - 1) // rows_fit
        band = (H_out + bands - 1) // bands
        group = 1
    cdef Py_ssize_t buf = group * P * R if band == H_out else band * W_out * R
    cols = np.empty(T * buf if columns else 1, dtype=dtype)
    blas = nullcontext() if blas_threads else single_threaded_blas()
    return T, U, group, band, starts, buf, cols, blas


def _set_band_budget(Py_ssize_t elements):
    """Walk an image whose im2col matrix has more than ``elements`` values in bands of output
    rows; return the previous budget.  Private: for the tests (small shapes then run in
    bands) and for tuning."""
    global BAND_BUDGET
    old = BAND_BUDGET
    BAND_BUDGET = max(1, elements)
    return old


def conv2d_forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                   const floating[::1] b, floating[:, :, :, ::1] out,
                   int sh, int sw, int pt, int pl, int num_threads, int dil_h=1,
                   int dil_w=1, activation="linear"):
    """Fill ``out`` (N, H_out, W_out, K) with ``f(im2col(x) @ w.reshape(-1, K) + b)``.

    ``pt``/``pl`` are the top/left zero padding; ``num_threads`` the OpenMP team size;
    ``dil_h``/``dil_w`` the dilation; ``activation`` f, a name of ``EPILOGUES``.
    """
    check_conv_shapes(x.shape, w.shape, b.shape[0], out.shape, sh, sw, pt, pl, dil_h, dil_w)
    cdef int act = _activation_code(activation)
    cdef Geom g = _geom(x.shape, w.shape, out.shape[1], out.shape[2], sh, sw, pt, pl, dil_h,
                        dil_w)
    cdef Py_ssize_t N = x.shape[0], T, U, group, band, buf, u
    cdef Py_ssize_t[::1] starts
    cdef floating[::1] cols
    dtype = np.float32 if floating is float else np.float64
    # (the strided path allocates no columns: fewer large allocations per call, which glibc
    # otherwise maps afresh and the kernel zeroes page by page: 2855 page faults per AlexNet
    # forward + backward on two threads before)
    cdef bint strided = _uses_strided(&g, N, num_threads)
    T, U, group, band, starts, buf, cols, blas = _plan(N, g.H_out, g.W_out, g.R, num_threads,
                                                       dtype, not strided)
    cdef const floating *xp = &x[0, 0, 0, 0]
    cdef const floating *wp = &w[0, 0, 0, 0]
    cdef const floating *bp = &b[0]
    cdef floating *outp = &out[0, 0, 0, 0]
    cdef floating *colsp = &cols[0]
    cdef Strided s
    cdef Py_ssize_t[::1] off
    cdef floating[::1] wpk, bpad, xr, tile
    cdef Py_ssize_t xr_buf, tile_buf
    if strided:
        s = _strided_plan(&g, sizeof(floating))
        wpk = _pack_panels(np.asarray(w).reshape(g.R, g.K), s.NP, s.PW).reshape(-1)
        bpad = _pack_panels(np.asarray(b).reshape(1, g.K), s.NP, s.PW).reshape(-1)
        off = _tap_offsets(g.kh, g.kw, g.C, g.sw, s.M, s.rowlen)
        xr_buf, tile_buf = s.Hp * s.rowlen, s.pbmax * s.PW
        xr = np.empty(T * xr_buf, dtype=dtype)
        tile = np.empty(T * tile_buf, dtype=dtype)
        # (no BLAS call here; BLAS is held to one thread all the same, as around every other
        # pass of this module, so that the two paths leave OpenBLAS in the same state)
        with blas:
            with nogil:
                for u in prange(U, schedule="dynamic", num_threads=T):
                    _strided_forward_images(xp, &wpk[0], &bpad[0], outp,
                                            &xr[0] + threadid() * xr_buf,
                                            &tile[0] + threadid() * tile_buf, &off[0],
                                            starts[u], starts[u + 1], act, &g, &s)
        return
    with blas:
        with nogil:
            for u in prange(U, schedule="dynamic", num_threads=T):
                _forward_images(xp, wp, bp, outp, colsp + threadid() * buf, starts[u],
                                starts[u + 1], group, band, act, &g)


def conv2d_backward(const floating[:, :, :, ::1] dout, const floating[:, :, :, ::1] x,
                    const floating[:, :, :, ::1] w, floating[:, :, :, ::1] dx,
                    floating[:, :, :, ::1] dw, floating[::1] db,
                    int sh, int sw, int pt, int pl, int num_threads, int dil_h=1,
                    int dil_w=1, activation="linear", const floating[:, :, :, ::1] y=None):
    """Fill ``dx`` (like x), ``dw`` (like w) and ``db`` (K,) from ``dout`` (N, H_out, W_out, K).

    With ``dz = dout * f'(y)`` (``y`` the forward output, read when the activation f is not
    linear): ``dW = cols^T @ dz``, ``dx = col2im(dz @ W^T)``, ``db`` = dz summed over N, H_out,
    W_out (accumulated in double precision).  ``dx=None`` skips dx (a network's first layer
    never needs it).
    """
    check_conv_shapes(x.shape, w.shape, db.shape[0], dout.shape, sh, sw, pt, pl, dil_h,
                      dil_w)
    cdef int act = _activation_code(activation)
    if act != ACT_LINEAR:       # its derivative reads y: y must exist, of dout's shape
        _activation_code(activation, y, dout)
    if dx is not None:
        check_like(dx.shape, x.shape, "dx", "x")
    check_like(dw.shape, w.shape, "dw", "w")
    cdef Geom g = _geom(x.shape, w.shape, dout.shape[1], dout.shape[2], sh, sw, pt, pl, dil_h,
                        dil_w)
    cdef Py_ssize_t N = x.shape[0], T, U, group, band, buf, u, i, k
    cdef Py_ssize_t[::1] starts
    cdef floating[::1] cols
    dtype = np.float32 if floating is float else np.float64
    cdef bint strided = _uses_strided(&g, N, num_threads)
    T, U, group, band, starts, buf, cols, blas = _plan(N, g.H_out, g.W_out, g.R, num_threads,
                                                       dtype, not strided)
    # each thread's dz for one group of images or one band (not needed when f is linear)
    cdef Py_ssize_t dz_buf = (group * g.P if band == g.H_out else band * g.W_out) * g.K \
        if act != ACT_LINEAR else 0
    cdef floating[::1] dz = np.empty(max(1, T * dz_buf), dtype=dtype)
    # one partial dW and db per unit (not per thread), summed in unit order: the result does
    # not depend on which thread ran which unit (the strided path has its own dW sums)
    cdef floating[:, ::1] dw_part
    cdef double[:, ::1] db_part = np.zeros((U, g.K), dtype=np.float64)
    cdef const floating *doutp = &dout[0, 0, 0, 0]
    cdef const floating *yp = &y[0, 0, 0, 0] if act != ACT_LINEAR else NULL
    cdef const floating *xp = &x[0, 0, 0, 0]
    cdef const floating *wp = &w[0, 0, 0, 0]
    cdef floating *dxp = &dx[0, 0, 0, 0] if dx is not None else NULL
    cdef floating *dwp = &dw[0, 0, 0, 0]
    cdef floating *colsp = &cols[0]
    cdef Strided s
    cdef floating[:, ::1] dw_acc
    cdef floating[::1] dpk, xpad
    cdef Py_ssize_t dpk_buf, xpad_buf, r, rows_fit
    if strided:
        s = _strided_plan(&g, sizeof(floating))
        # dx's bands of half the budget, 1 MiB of float32 columns: AlexNet's first layer in
        # bands of 11 rows (5 bands) took 0.69-0.83 of the CPU time of 19-row bands (2 MiB)
        # on two threads, the same on one (AMD EPYC Zen 5, 1 MiB of L2 per core; both
        # variants).  Here only dx's GEMM and col2im run by bands (dW has chunks of its own),
        # and the GEMM's packed W^T is small.  Never more rows than ``_plan``'s bands, whose
        # dz buffers are used; the columns only with dx.
        rows_fit = max(1, (BAND_BUDGET // 2) // (g.W_out * g.R))
        band = min(band, (g.H_out + (g.H_out + rows_fit - 1) // rows_fit - 1)
                   // ((g.H_out + rows_fit - 1) // rows_fit))
        buf = band * g.W_out * g.R if dx is not None else 0
        cols = np.empty(max(1, T * buf), dtype=dtype)
        colsp = &cols[0]
        dw_acc = np.zeros((U, g.R * s.Kpad), dtype=dtype)
        dpk_buf = s.NP * s.chunk * g.W_out * s.PW
        xpad_buf = s.Hp * s.Wn * g.C if s.pad_copy else 0
        dpk = np.empty(T * dpk_buf, dtype=dtype)
        xpad = np.empty(max(1, T * xpad_buf), dtype=dtype)
        with blas:
            with nogil:
                for u in prange(U, schedule="dynamic", num_threads=T):
                    _strided_backward_images(doutp, yp, xp, wp, dxp, &dw_acc[u, 0],
                                             &db_part[u, 0], colsp + threadid() * buf,
                                             &dz[0] + threadid() * dz_buf,
                                             &dpk[0] + threadid() * dpk_buf,
                                             &xpad[0] + threadid() * xpad_buf, starts[u],
                                             starts[u + 1], band, act, &g, &s)
                # the units' partial sums in unit order, as below
                sum_unit_parts(&dw_acc[0, 0], U, g.R * s.Kpad, g.R, g.K, s.Kpad, dwp)
                sum_unit_db(&db_part[0, 0], U, g.K, &db[0])
        return
    dw_part = np.empty((U, g.R * g.K), dtype=dtype)
    with blas:
        with nogil:
            for u in prange(U, schedule="dynamic", num_threads=T):
                _backward_images(doutp, yp, xp, wp, dxp, &dw_part[u, 0], &db_part[u, 0],
                                 colsp + threadid() * buf, &dz[0] + threadid() * dz_buf,
                                 starts[u], starts[u + 1], group, band, act, &g)
            # every unit has at least one image, so every partial sum is initialised
            sum_unit_parts(&dw_part[0, 0], U, g.R * g.K, 1, g.R * g.K, g.R * g.K, dwp)
            sum_unit_db(&db_part[0, 0], U, g.K, &db[0])
