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

With an ``activation`` f (the fused epilogue of every conv path, ``_epilogue.pxd``) forward
applies f to each output row as soon as the row is written, while it is in cache, and backward
starts each image with ``dz = dout * f'(y)`` (``y`` the forward output) in the pass that sums
db; dW and dx then read dz.  Twins: ``reference.depthwise_conv2d_forward`` / ``_backward``
with ``activation=``.

How.  Output channel ``j = c*dm + m`` depends on input channel c only, so the channels go in
the vector lanes, and a window tap is then a whole vector, for any stride and dilation.  When
the lanes are the channels (dm = 1 and C a whole number of vectors) the loops read x and write
dx where they are; otherwise each image is first copied with every input channel repeated dm
times (``xe[row, col, c*dm + m] = x[row, col, c]``, zero lanes up to a whole vector).  Nothing
is ever padded: where a window overhangs the image, only the taps inside it are added (the tap
rectangle is clipped; a padded cell would add zero).  The output pixels whose whole window is
inside the image, the *interior*, run in tiles of 8 pixels (forward) or 9 taps (dW, dx;
``_depthwise.h``); the few along the edges run with their clipped windows (forward) or tap by
tap over the strips where that tap is inside (dW, dx).  At stride 1 dx is itself a forward
correlation (of dout with the flipped taps, ``_transposed``): each dx pixel gathers its terms
in registers; at stride 2 a gather split by phases was measured slower than the scatter
(``_gathers_dx``).  (A first version copied every image into a zero-padded buffer: at stride 2 the
copy cost more than the convolution.)  Compared
with running a one-channel conv2d per channel (what ``cytorch.functional`` did before), no
channel is copied out of the batch, and every vector lane works.

Threads: the batch is cut into work units of whole images (``_conv._units``); dW and db are
summed per unit and the units added in unit order, so the result does not depend on which
thread ran what.  ``cytorch.functional`` validates every argument; the entry points re-check
that the shapes agree (cheap) so that no call can read or write out of bounds.
"""
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.string cimport memcpy, memset

import numpy as np

from . import isa_functions
from ._conv import _activation_code, _units
from ._epilogue cimport ACT_LINEAR, apply_activation, cy_mathfn_select, derivative_db
from ._parallel cimport sum_unit_db, sum_unit_parts

cdef extern from "_depthwise.h" nogil:
    ctypedef struct cy_dw_kernels_f:
        void (*fwd)(float *out, Py_ssize_t ldo, const float *x, Py_ssize_t xs, Py_ssize_t xa,
                    Py_ssize_t xb, Py_ssize_t na, Py_ssize_t nb, const float *w,
                    Py_ssize_t lwa, Py_ssize_t ldw, const float *init, int pb,
                    Py_ssize_t nv) noexcept nogil
        void (*dw)(float *acc, Py_ssize_t lda, const float *x, Py_ssize_t xr, Py_ssize_t xs,
                   const Py_ssize_t *off, const float *d, Py_ssize_t ldr, Py_ssize_t ldd,
                   Py_ssize_t ni, Py_ssize_t nq, int tb, Py_ssize_t nv) noexcept nogil
        void (*dx)(float *dx, Py_ssize_t xr, Py_ssize_t xs, const Py_ssize_t *off,
                   const float *d, Py_ssize_t ldr, Py_ssize_t ldd, const float *w,
                   Py_ssize_t ldw, Py_ssize_t ni, Py_ssize_t nq, int tb,
                   Py_ssize_t nv) noexcept nogil
    ctypedef struct cy_dw_kernels_d:
        void (*fwd)(double *out, Py_ssize_t ldo, const double *x, Py_ssize_t xs,
                    Py_ssize_t xa, Py_ssize_t xb, Py_ssize_t na, Py_ssize_t nb,
                    const double *w, Py_ssize_t lwa, Py_ssize_t ldw, const double *init,
                    int pb, Py_ssize_t nv) noexcept nogil
        void (*dw)(double *acc, Py_ssize_t lda, const double *x, Py_ssize_t xr,
                   Py_ssize_t xs, const Py_ssize_t *off, const double *d, Py_ssize_t ldr,
                   Py_ssize_t ldd, Py_ssize_t ni, Py_ssize_t nq, int tb,
                   Py_ssize_t nv) noexcept nogil
        void (*dx)(double *dx, Py_ssize_t xr, Py_ssize_t xs, const Py_ssize_t *off,
                   const double *d, Py_ssize_t ldr, Py_ssize_t ldd, const double *w,
                   Py_ssize_t ldw, Py_ssize_t ni, Py_ssize_t nq, int tb,
                   Py_ssize_t nv) noexcept nogil
    cy_dw_kernels_f cy_dw_f
    cy_dw_kernels_d cy_dw_d
    int cy_dw_bytes
    int cy_isa_best()
    int cy_dw_select(int isa)


# -- which instruction set (see _kernels/__init__.py) -------------------------------------------
def _select_variant(int index):
    """Switch the inner loops to variant ``index``; the index it then runs."""
    cy_mathfn_select(index)          # the fused epilogue's element functions (_epilogue.pxd)
    return cy_dw_select(index)


isa_variants, _select_isa, isa = isa_functions("the inner loops", cy_isa_best(), _select_variant)


cdef enum:
    PIXELS = 8      # output pixels per forward tile
    TAPS = 9        # taps per dW / dx tile


cdef struct Geom:
    Py_ssize_t H, W, C, dm, kh, kw, sh, sw, dh, dw, pt, pl, Ho, Wo
    Py_ssize_t L, Lp   # lanes C * dm, and rounded up to whole vectors
    Py_ssize_t V       # numbers per vector of the variant in use
    Py_ssize_t T       # taps kh * kw
    bint copy_x        # the lanes are not x's channels: work on a copy of each image (xe)
    Py_ssize_t oh0, oh1, ow0, ow1   # the interior: rows [oh0, oh1) x columns [ow0, ow1)


cdef struct Rect:
    Py_ssize_t r0, r1, c0, c1      # output rows [r0, r1) x columns [c0, c1)


cdef inline Py_ssize_t _ceil_div(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return (a + b - 1) // b       # a >= 0, b > 0


cdef inline void _taps(Py_ssize_t o, Py_ssize_t s, Py_ssize_t p, Py_ssize_t d, Py_ssize_t n,
                       Py_ssize_t k, Py_ssize_t *lo, Py_ssize_t *hi) noexcept nogil:
    """Along one axis: the taps [lo, hi) of output o's window that fall inside the image,
    ``0 <= o*s - p + tap*d < n`` (lo == hi: none)."""
    cdef Py_ssize_t start = o * s - p
    lo[0] = 0 if start >= 0 else min(_ceil_div(-start, d), k)
    hi[0] = 0 if start > n - 1 else min((n - 1 - start) // d + 1, k)
    hi[0] = max(hi[0], lo[0])


cdef inline void _outputs(Py_ssize_t tap, Py_ssize_t s, Py_ssize_t p, Py_ssize_t d,
                          Py_ssize_t n, Py_ssize_t O, Py_ssize_t *lo,
                          Py_ssize_t *hi) noexcept nogil:
    """Along one axis: the outputs [lo, hi) whose window has ``tap`` inside the image."""
    cdef Py_ssize_t e = tap * d - p              # where the tap of output 0 lies
    lo[0] = 0 if e >= 0 else min(_ceil_div(-e, s), O)
    hi[0] = 0 if e > n - 1 else min((n - 1 - e) // s + 1, O)
    hi[0] = max(hi[0], lo[0])


cdef Geom _geom(Py_ssize_t[:] x_shape, Py_ssize_t[:] w_shape, Py_ssize_t Ho, Py_ssize_t Wo,
                int sh, int sw, int pt, int pl, int dh, int dw, Py_ssize_t itemsize):
    cdef Geom g
    g.H, g.W, g.C = x_shape[1], x_shape[2], x_shape[3]
    g.kh, g.kw, g.dm = w_shape[0], w_shape[1], w_shape[3]
    g.sh, g.sw, g.dh, g.dw, g.pt, g.pl, g.Ho, g.Wo = sh, sw, dh, dw, pt, pl, Ho, Wo
    g.V = cy_dw_bytes // itemsize
    g.L = g.C * g.dm
    g.Lp = (g.L + g.V - 1) // g.V * g.V
    g.T = g.kh * g.kw
    g.copy_x = g.dm != 1 or g.L != g.Lp
    _interior(&g)
    return g


cdef void _interior(Geom *g) noexcept nogil:
    """Every tap is inside from the first output where tap 0 is to the last where the last
    tap is."""
    cdef Py_ssize_t unused
    _outputs(0, g.sh, g.pt, g.dh, g.H, g.Ho, &g.oh0, &unused)
    _outputs(g.kh - 1, g.sh, g.pt, g.dh, g.H, g.Ho, &unused, &g.oh1)
    _outputs(0, g.sw, g.pl, g.dw, g.W, g.Wo, &g.ow0, &unused)
    _outputs(g.kw - 1, g.sw, g.pl, g.dw, g.W, g.Wo, &unused, &g.ow1)
    g.oh1, g.ow1 = max(g.oh1, g.oh0), max(g.ow1, g.ow0)


cdef bint _gathers_dx(const Geom *g) noexcept nogil:
    """Whether dx is the correlation of dout with the flipped taps (``_transposed``): at
    stride 1 (and padding within the window's extent), each dx pixel then gathers its terms in
    registers instead of every dout pixel adding into dx in memory.

    At stride s > 1 dx scatters, measured: dx can gather there too, split into s_h x s_w
    phases (the dx pixels i = r + s*u of phase r are reached by the taps a with
    r + pt - a*dh divisible by s, a stride-1 correlation of dout with those taps flipped and
    dilation dh / gcd(dh, s)), but a 3x3 window leaves each phase 1, 2 or 4 taps, too few to
    pay for each tile's accumulator loads and stores.  Written and timed (2026-12-03, AMD EPYC
    Zen 5, one thread, float32, best of 15 thread CPU times; the dx share of backward, gather
    / scatter): 32x28x28x64 k3 s2 1.16-2.11 (avx512) 1.62 (avx2); 32x56x56x32 k3 s2 2.5
    (avx512) 1.9 (avx2); 32x28x28x64 k5 s2 0.67-1.08 (avx512) 0.97 (avx2); dm 3 k3 s2
    0.79-1.09.  The scatter keeps the 9 weight vectors in registers and loads each dout vector
    once for all of them."""
    return g.sh == 1 and g.sw == 1 and g.pt <= (g.kh - 1) * g.dh and g.pl <= (g.kw - 1) * g.dw


cdef Geom _transposed(const Geom *g) noexcept nogil:
    """At stride 1, ``dx[i] = sum_a dout[i + pt - a*dh] * w[a]``; with ``a' = kh - 1 - a`` that
    is ``sum_a' dout[i - pt' + a'*dh] * w[a']`` flipped, ``pt' = (kh - 1)*dh - pt``: the forward
    correlation of dout (Ho x Wo) with the flipped taps, out to H x W (columns likewise)."""
    cdef Geom t = g[0]
    t.H, t.W, t.Ho, t.Wo = g.Ho, g.Wo, g.H, g.W
    t.pt, t.pl = (g.kh - 1) * g.dh - g.pt, (g.kw - 1) * g.dw - g.pl
    t.copy_x = False
    _interior(&t)
    return t


cdef int _edge_strips(const Geom *g, Py_ssize_t a, Py_ssize_t b, Rect *rects) noexcept nogil:
    """The output pixels outside the interior whose window has tap (a, b) inside the image,
    as up to 4 rectangles (above, below, left and right of the interior); returns how many."""
    cdef Py_ssize_t r0, r1, c0, c1, n = 0, k
    _outputs(a, g.sh, g.pt, g.dh, g.H, g.Ho, &r0, &r1)
    _outputs(b, g.sw, g.pl, g.dw, g.W, g.Wo, &c0, &c1)
    rects[0] = Rect(r0, min(r1, g.oh0), c0, c1)
    rects[1] = Rect(max(r0, g.oh1), r1, c0, c1)
    rects[2] = Rect(max(r0, g.oh0), min(r1, g.oh1), c0, min(c1, g.ow0))
    rects[3] = Rect(max(r0, g.oh0), min(r1, g.oh1), max(c0, g.ow1), c1)
    for k in range(4):
        if rects[k].r0 < rects[k].r1 and rects[k].c0 < rects[k].c1:
            rects[n] = rects[k]
            n += 1
    return n


cdef void _expand(const floating *xn, floating *xe, const Geom *g) noexcept nogil:
    """``xe[i, s, c*dm + m] = xn[i, s, c]``, zero in the lanes past C * dm."""
    cdef Py_ssize_t p, c, m, k, C = g.C, dm = g.dm, Lp = g.Lp
    cdef const floating *src
    cdef floating *dst
    for p in range(g.H * g.W):
        src = xn + p * C
        dst = xe + p * Lp
        if dm == 1:                 # a lane tail only: a plain copy
            memcpy(dst, src, C * sizeof(floating))
        else:
            for c in range(C):
                for m in range(dm):
                    dst[c * dm + m] = src[c]
        for k in range(g.L, Lp):
            dst[k] = 0


cdef inline void _window_tile(const floating *src, const floating *wp, const floating *init,
                              floating *out, Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t pb,
                              Py_ssize_t a0, Py_ssize_t a1, Py_ssize_t b0, Py_ssize_t b1,
                              const Geom *g) noexcept nogil:
    """out (pb pixels, Lp apart, from output pixel (oh, ow)) = init + the taps [a0, a1) x
    [b0, b1) of their windows, every lane."""
    cdef Py_ssize_t Lp = g.Lp
    cdef const floating *xw = src             # (not read when no tap is inside)
    if a0 < a1 and b0 < b1:
        xw = src + ((oh * g.sh - g.pt + a0 * g.dh) * g.W + ow * g.sw - g.pl + b0 * g.dw) * Lp
    if floating is float:
        cy_dw_f.fwd(out, Lp, xw, g.sw * Lp, g.dh * g.W * Lp, g.dw * Lp, a1 - a0, b1 - b0,
                    wp + (a0 * g.kw + b0) * Lp, g.kw * Lp, Lp, init, <int>pb, Lp // g.V)
    else:
        cy_dw_d.fwd(out, Lp, xw, g.sw * Lp, g.dh * g.W * Lp, g.dw * Lp, a1 - a0, b1 - b0,
                    wp + (a0 * g.kw + b0) * Lp, g.kw * Lp, Lp, init, <int>pb, Lp // g.V)


cdef void _correlate(const floating *src, const floating *wp, const floating *init,
                     floating *dst, Py_ssize_t ldo, floating *row, int act,
                     const Geom *g) noexcept nogil:
    """dst (Ho x Wo pixels, ldo apart) = f(init + the correlation of src (H x W pixels of Lp
    lanes) with the taps wp), each window clipped to the image, f the activation ``act``
    (``_epilogue.pxd``) applied to each row of dst as soon as it is written.  With ldo < Lp (a
    lane tail) the vectors go through ``row`` and only L lanes reach dst."""
    cdef Py_ssize_t oh, ow, e, k, pb, a0, a1, b0, b1, L = g.L, Lp = g.Lp
    cdef Py_ssize_t inner = g.ow1 - g.ow0
    cdef bint whole = ldo == Lp             # whole vectors go straight into dst
    cdef floating *out
    for oh in range(g.Ho):
        _taps(oh, g.sh, g.pt, g.dh, g.H, g.kh, &a0, &a1)
        out = dst + oh * g.Wo * ldo if whole else row
        ow = g.ow0
        while ow < g.ow1:                   # the interior: tiles of 8, whole rows of taps
            pb = min(<Py_ssize_t>PIXELS, g.ow1 - ow)
            _window_tile(src, wp, init, out + ow * Lp, oh, ow, pb, a0, a1, 0, g.kw, g)
            ow += pb
        # then the edge pixels, each with its taps inside the image.  (Edges first made the
        # AVX2 variant 40 % slower on Zen 5, measured: a store to out[oh, 0] followed by loads
        # of x[oh, 0], whose addresses can agree in their low 12 bits.)
        for e in range(g.Wo - inner):
            ow = e if e < g.ow0 else e + inner
            _taps(ow, g.sw, g.pl, g.dw, g.W, g.kw, &b0, &b1)
            _window_tile(src, wp, init, out + ow * Lp, oh, ow, 1, a0, a1, b0, b1, g)
        if not whole:
            for ow in range(g.Wo):
                for k in range(L):
                    dst[(oh * g.Wo + ow) * ldo + k] = row[ow * Lp + k]
        if act != ACT_LINEAR:            # the row is still in cache
            apply_activation(dst + oh * g.Wo * ldo, dst + oh * g.Wo * ldo, g.Wo * ldo, act)


cdef void _forward_image(const floating *xn, const floating *wp, const floating *bp,
                         floating *outn, floating *xe, floating *row, int act,
                         const Geom *g) noexcept nogil:
    cdef const floating *src = xn
    if g.copy_x:
        _expand(xn, xe, g)
        src = xe
    _correlate(src, wp, bp, outn, g.L, row, act, g)


cdef void _dw_image(const floating *src, const floating *d, const Py_ssize_t *off,
                    floating *dwl, const Geom *g) noexcept nogil:
    """dwl (T, Lp) += one image's dW: the interior in tiles of taps, then each tap over its
    strips."""
    cdef Py_ssize_t t, tb, k, n, Lp = g.Lp, nv = g.Lp // g.V, zero = 0
    cdef Py_ssize_t xr = g.sh * g.W * Lp, xs = g.sw * Lp, ldr = g.Wo * Lp
    cdef const floating *xi = src + ((g.oh0 * g.sh - g.pt) * g.W + g.ow0 * g.sw - g.pl) * Lp
    cdef const floating *di = d + (g.oh0 * g.Wo + g.ow0) * Lp
    cdef Rect rects[4]
    if g.oh0 < g.oh1 and g.ow0 < g.ow1:
        t = 0
        while t < g.T:
            tb = min(<Py_ssize_t>TAPS, g.T - t)
            if floating is float:
                cy_dw_f.dw(dwl + t * Lp, Lp, xi, xr, xs, off + t, di, ldr, Lp,
                           g.oh1 - g.oh0, g.ow1 - g.ow0, <int>tb, nv)
            else:
                cy_dw_d.dw(dwl + t * Lp, Lp, xi, xr, xs, off + t, di, ldr, Lp,
                           g.oh1 - g.oh0, g.ow1 - g.ow0, <int>tb, nv)
            t += tb
    for t in range(g.T):
        n = _edge_strips(g, t // g.kw, t % g.kw, rects)
        for k in range(n):
            xi = src + ((rects[k].r0 * g.sh - g.pt + (t // g.kw) * g.dh) * g.W
                        + rects[k].c0 * g.sw - g.pl + (t % g.kw) * g.dw) * Lp
            di = d + (rects[k].r0 * g.Wo + rects[k].c0) * Lp
            if floating is float:
                cy_dw_f.dw(dwl + t * Lp, Lp, xi, xr, xs, &zero, di, ldr, Lp,
                           rects[k].r1 - rects[k].r0, rects[k].c1 - rects[k].c0, 1, nv)
            else:
                cy_dw_d.dw(dwl + t * Lp, Lp, xi, xr, xs, &zero, di, ldr, Lp,
                           rects[k].r1 - rects[k].r0, rects[k].c1 - rects[k].c0, 1, nv)


cdef void _dx_scatter(const floating *d, const floating *wp, const Py_ssize_t *off,
                      floating *dst, const Geom *g) noexcept nogil:
    """dst (like the image, zeroed) += every output pixel's dout times its window's weights,
    where the window read x: the interior in tiles of taps, then each tap over its strips."""
    cdef Py_ssize_t t, tb, k, n, Lp = g.Lp, nv = g.Lp // g.V, zero = 0
    cdef Py_ssize_t xr = g.sh * g.W * Lp, xs = g.sw * Lp, ldr = g.Wo * Lp
    cdef floating *xi = dst + ((g.oh0 * g.sh - g.pt) * g.W + g.ow0 * g.sw - g.pl) * Lp
    cdef const floating *di = d + (g.oh0 * g.Wo + g.ow0) * Lp
    cdef Rect rects[4]
    if g.oh0 < g.oh1 and g.ow0 < g.ow1:
        t = 0
        while t < g.T:
            tb = min(<Py_ssize_t>TAPS, g.T - t)
            if floating is float:
                cy_dw_f.dx(xi, xr, xs, off + t, di, ldr, Lp, wp + t * Lp, Lp,
                           g.oh1 - g.oh0, g.ow1 - g.ow0, <int>tb, nv)
            else:
                cy_dw_d.dx(xi, xr, xs, off + t, di, ldr, Lp, wp + t * Lp, Lp,
                           g.oh1 - g.oh0, g.ow1 - g.ow0, <int>tb, nv)
            t += tb
    for t in range(g.T):
        n = _edge_strips(g, t // g.kw, t % g.kw, rects)
        for k in range(n):
            xi = dst + ((rects[k].r0 * g.sh - g.pt + (t // g.kw) * g.dh) * g.W
                        + rects[k].c0 * g.sw - g.pl + (t % g.kw) * g.dw) * Lp
            di = d + (rects[k].r0 * g.Wo + rects[k].c0) * Lp
            if floating is float:
                cy_dw_f.dx(xi, xr, xs, &zero, di, ldr, Lp, wp + t * Lp, Lp,
                           rects[k].r1 - rects[k].r0, rects[k].c1 - rects[k].c0, 1, nv)
            else:
                cy_dw_d.dx(xi, xr, xs, &zero, di, ldr, Lp, wp + t * Lp, Lp,
                           rects[k].r1 - rects[k].r0, rects[k].c1 - rects[k].c0, 1, nv)


cdef void _backward_image(const floating *dn, const floating *yn, const floating *xn,
                          const floating *wp, const floating *wflip, const floating *zeros,
                          const Py_ssize_t *off, floating *dxn, floating *dwl, double *db_part,
                          floating *xe, floating *dz, floating *dpad, int act, const Geom *g,
                          const Geom *gt) noexcept nogil:
    """One image: its share of the dW lanes dwl (T, Lp) and of db, and dxn unless NULL (by
    gathering, the correlation of dz with the flipped taps wflip over the geometry gt, or,
    when gt is NULL, by scattering), from ``dz = dout * f'(y)`` (``yn`` the image's forward
    output; dout itself when f is linear), computed with db in the first pass over dout."""
    cdef Py_ssize_t i, c, m, k, L = g.L, Lp = g.Lp, P = g.Ho * g.Wo
    cdef const floating *d = dn
    cdef const floating *src = xn
    cdef floating *dst = dxn
    cdef floating acc
    derivative_db(dz, dn, yn, P, L, act, db_part)
    if act != ACT_LINEAR:
        d = dz
    if L != Lp:                      # rows of whole vectors, zero lanes in the padding
        for i in range(P):
            for k in range(Lp):
                dpad[i * Lp + k] = d[i * L + k] if k < L else 0
        d = dpad
    if g.copy_x:
        _expand(xn, xe, g)
        src = xe
    _dw_image(src, d, off, dwl, g)
    if dxn == NULL:
        return
    # dx into dx itself, or into xe (reused), whose dm lanes per channel are summed at the end
    if g.copy_x:
        dst = xe
    if gt != NULL:
        _correlate(d, wflip, zeros, dst, Lp, NULL, ACT_LINEAR, gt)
    else:
        memset(dst, 0, g.H * g.W * Lp * sizeof(floating))
        _dx_scatter(d, wp, off, dst, g)
    if g.copy_x:
        for i in range(g.H * g.W):
            for c in range(g.C):
                acc = 0
                for m in range(g.dm):
                    acc = acc + xe[i * Lp + c * g.dm + m]
                dxn[i * g.C + c] = acc


cdef _packed(const floating[:, :, :, ::1] w, const Geom *g, floating[:, ::1] wp,
             Py_ssize_t[::1] off):
    """wp (T, Lp): w as (kh * kw, C * dm) with zero lanes; off[t]: tap t = (a, b) from the
    window's corner in an image of Lp lanes per pixel."""
    cdef Py_ssize_t t, j
    cdef const floating *w0 = &w[0, 0, 0, 0]
    for t in range(g.T):
        for j in range(g.L):
            wp[t, j] = w0[t * g.L + j]
        off[t] = ((t // g.kw) * g.dh * g.W + (t % g.kw) * g.dw) * g.Lp


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
                             int pt, int pl, int num_threads, int dh=1, int dw=1,
                             activation="linear"):
    """Fill ``out`` (N, H_out, W_out, C * dm) with f(the depthwise correlation of x and w, plus
    b).

    ``pt``/``pl`` are the top/left zero padding, ``dh``/``dw`` the dilation; ``num_threads``
    the OpenMP team size; ``activation`` f, a name of ``cytorch._kernels.EPILOGUES``.
    """
    _check(x, w, b, out, sh, sw, pt, pl, dh, dw)
    cdef int act = _activation_code(activation)
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
    cdef floating[:, ::1] xe = np.empty((T, g.H * g.W * g.Lp if g.copy_x else 1), dtype=dtype)
    cdef floating[:, ::1] row = np.empty((T, g.Wo * g.Lp if g.L != g.Lp else 1), dtype=dtype)
    cdef Py_ssize_t x_step = g.H * g.W * g.C, out_step = g.Ho * g.Wo * g.L
    with nogil:
        for u in prange(U, schedule="dynamic", num_threads=T):
            for n in range(starts[u], starts[u + 1]):
                _forward_image(&x[0, 0, 0, 0] + n * x_step, &wp[0, 0], &bp[0],
                               &out[0, 0, 0, 0] + n * out_step, &xe[threadid(), 0],
                               &row[threadid(), 0], act, &g)


def depthwise_conv2d_backward(const floating[:, :, :, ::1] dout, const floating[:, :, :, ::1] x,
                              const floating[:, :, :, ::1] w, floating[:, :, :, ::1] dx,
                              floating[:, :, :, ::1] dw_out, floating[::1] db, int sh, int sw,
                              int pt, int pl, int num_threads, int dh=1, int dw=1,
                              activation="linear", const floating[:, :, :, ::1] y=None):
    """Fill ``dx`` (like x; skipped when None), ``dw_out`` (like w) and ``db`` (C * dm,) from
    ``dz = dout * f'(y)`` (N, H_out, W_out, C * dm), ``y`` the forward output (read when the
    activation f is not linear); db is accumulated in double precision."""
    _check(x, w, db, dout, sh, sw, pt, pl, dh, dw)
    cdef int act = _activation_code(activation, y, dout)
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
    cdef Geom gt = _transposed(&g)
    cdef const Geom *gtp = &gt if _gathers_dx(&g) else NULL
    cdef floating[:, ::1] wflip = np.ascontiguousarray(np.asarray(wp)[::-1])   # tap T-1-t
    cdef floating[::1] zeros = np.zeros(g.Lp, dtype=dtype)
    cdef floating[:, ::1] xe = np.empty((T, g.H * g.W * g.Lp if g.copy_x else 1), dtype=dtype)
    cdef floating[:, ::1] dpad = np.empty((T, g.Ho * g.Wo * g.Lp if g.L != g.Lp else 1),
                                          dtype=dtype)
    # each thread's dz = dout * f'(y) for one image (not needed when f is linear)
    cdef floating[:, ::1] dz = np.empty((T, g.Ho * g.Wo * g.L if act != ACT_LINEAR else 1),
                                        dtype=dtype)
    cdef const floating *yp = &y[0, 0, 0, 0] if act != ACT_LINEAR else NULL
    # one partial sum of dW and db per unit (not per thread), added in unit order
    cdef floating[:, ::1] dwl = np.zeros((U, g.T * g.Lp), dtype=dtype)
    cdef double[:, ::1] db_part = np.zeros((U, g.L), dtype=np.float64)
    cdef Py_ssize_t x_step = g.H * g.W * g.C, d_step = g.Ho * g.Wo * g.L
    cdef floating *dxp = &dx[0, 0, 0, 0] if dx is not None else NULL
    cdef floating *dwp = &dw_out[0, 0, 0, 0]
    with nogil:
        for u in prange(U, schedule="dynamic", num_threads=T):
            for n in range(starts[u], starts[u + 1]):
                _backward_image(&dout[0, 0, 0, 0] + n * d_step,
                                yp + n * d_step if yp != NULL else NULL,
                                &x[0, 0, 0, 0] + n * x_step, &wp[0, 0], &wflip[0, 0],
                                &zeros[0], &off[0], dxp + n * x_step if dxp != NULL else NULL,
                                &dwl[u, 0], &db_part[u, 0], &xe[threadid(), 0],
                                &dz[threadid(), 0], &dpad[threadid(), 0], act, &g, gtp)
        sum_unit_parts(&dwl[0, 0], U, g.T * g.Lp, g.T, g.L, g.Lp, dwp)
        sum_unit_db(&db_part[0, 0], U, g.L, &db[0])
