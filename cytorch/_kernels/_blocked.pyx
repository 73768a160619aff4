# cython: language_level=3
"""conv2d forward and backward by the blocked path: register-blocked small GEMMs read straight
out of the padded image, for stride-1 layers with a few tens of filters such as LeNet's second
(its NumPy twins: ``cytorch.reference.conv2d_shift_add_forward`` / ``_backward``, which add the
same products tap by tap).

Layout contract, shared with the twins, ``_direct.pyx`` and ``_conv.pyx``:

* ``x``: ``(N, H, W, C)`` channels-last, C-contiguous; ``w``: ``(kh, kw, C, K)``; ``b``: ``(K,)``;
* stride 1, dilation 1; padding arrives resolved: ``pt`` and ``pl`` (top and left), the
  bottom/right padding is implied by the output shape ``(N, H_out, W_out, K)``, and a window
  row or column outside the image reads as zero;
* ``out[n, i, j, k] = b[k] + sum_{a, b, c} x[n, i + a - pt, j + b - pl, c] * w[a, b, c, k]``.

Why another path.  im2col + GEMM (``_conv.pyx``) copies every window into a column matrix, then
hands OpenBLAS a GEMM with n = K = 16 columns, which it packs and runs at a fraction of its
speed; the direct path (``_direct.pyx``) repeats every pixel K times across the vector lanes,
which pays only for a handful of filters.  Here each product of the layer is a small GEMM whose
operands are read where they lie (the micro-kernels of ``_blocked.h``):

    forward   out[p, k]  = b[k] + sum_t x_t[p] * w[t, k]           t = (a, b, c) the taps
    dW        dw[t, k]  += sum_p x_t[p] * dout[p, k]               p the output pixels
    dx        dx_t[p]   += sum_k dout[p, k] * w[t, k]              added where tap t read x_t[p]

``x_t[p]`` is pixel p of the image shifted by tap t, read from a zero-padded copy of the image
(one per thread and image, so no window needs a bounds check).  Forward and dW hold a tile of
(pixels or taps) x (one or two vectors of filters) in registers; dx a tile of (up to 6 taps) x
(vectors of output pixels), whose sums over the K filters are added straight into planes of dx:
with dout stored planar (the Ho * Wo pixels of a filter in a row), tap (a, b, c) of every
output pixel lands in one contiguous run of the plane of kernel column b and channel c (rows
Wo wide), so col2im is one vector add per tap and tile; the kw planes of a channel, shifted b
columns each, are added into dx at the end.  (Rows as wide as the padded image, Wo + kw - 1,
would need one plane per channel but spend a lane on every column past Wo: LeNet c2's dx ran
40 % more multiply-adds that way.)  K is padded with zero filters to whole vectors.

With an ``activation`` (the fused epilogue, ``_epilogue.pxd``) forward applies it to each
image's output right after its tiles, while it is in cache, and backward computes ``dz = dout
* f'(y)`` of each image into a per-thread buffer in the pass that sums db, before dW reads it
(dx, a task of its own, computes it again: a pass over the image's outputs).

Threads: one parallel region per call, its tasks handed out one at a time (OpenMP's dynamic
schedule).  Forward's tasks are the images.  Backward's are the U work units of whole images of
dW and db (``unit_count``, the policy of ``_parallel.pxd``), then dx image by image:
dW and db are summed per unit and the units added in unit order, so the result does not depend
on which thread ran what, and the small dx tasks at the end even out the threads' finishing
times (a thread that wakes late, or is slowed by another process, takes fewer of them).
``cytorch.functional`` validates every argument; the entry points re-check that the shapes
agree (cheap) so that no call can read or write out of bounds.
"""
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport free

cdef extern from "stdlib.h" nogil:
    int posix_memalign(void **memptr, size_t alignment, size_t size)
from libc.string cimport memcpy, memset

import numpy as np

from . import isa_functions
from ._conv import _activation_code
from ._guards cimport check_conv_shapes, check_like
from ._parallel cimport sum_unit_db, sum_unit_parts, unit_count, unit_start, unit_threads
from ._epilogue cimport ACT_LINEAR, apply_activation, cy_mathfn_select, derivative_db

cdef extern from "_blocked.h" nogil:
    ctypedef struct cy_blk_kernels_f:
        void (*fwd)(float *dst, Py_ssize_t ldd, Py_ssize_t rsd, const float *xr,
                    Py_ssize_t rsx, const Py_ssize_t *off, const float *w, Py_ssize_t ldw,
                    const float *init, Py_ssize_t nt, int pb, int kb, int ra) noexcept nogil
        void (*dw)(float *acc, Py_ssize_t lda, const float *x, Py_ssize_t xrow, Py_ssize_t xpix,
                const float *d, Py_ssize_t ldd, Py_ssize_t Ho, Py_ssize_t Wo, int tb,
                int kb, int ra, Py_ssize_t rs) noexcept nogil
        void (*dx)(float *dst, const Py_ssize_t *off, const float *wt, Py_ssize_t ldw,
                   const float *src, Py_ssize_t lds, Py_ssize_t nk, int tb,
                   int jb) noexcept nogil
        void (*gather)(float *dxt, Py_ssize_t ldt, const float *planes, Py_ssize_t planeb,
                       const void *keep, Py_ssize_t C, Py_ssize_t Hp, Py_ssize_t Wo,
                       Py_ssize_t kw) noexcept nogil
        void (*transpose)(float *dst, Py_ssize_t ldd, const float *src, Py_ssize_t lds,
                          Py_ssize_t R, Py_ssize_t S, Py_ssize_t avail) noexcept nogil
        void (*fwdr)(float *dst, Py_ssize_t ldd, Py_ssize_t rsd, const float *xr,
                     Py_ssize_t rsx, const Py_ssize_t *off, const float *w, Py_ssize_t ldw,
                     const float *init, Py_ssize_t nt, int ng, int kb, int ra,
                     int G) noexcept nogil
        void (*dwr)(float *acc, Py_ssize_t lda, const float *x, Py_ssize_t xrow,
                    Py_ssize_t xpix, const float *d, Py_ssize_t ldd, Py_ssize_t Ho,
                    Py_ssize_t Wo, int nq, int kb) noexcept nogil
        void (*fwdp)(float *dst, Py_ssize_t ldd, const float *xr, Py_ssize_t js,
                     const Py_ssize_t *off, const float *w, Py_ssize_t ldw, const float *init,
                     Py_ssize_t nt, int F, int J) noexcept nogil
        void (*dwp)(float *acc, Py_ssize_t lda, Py_ssize_t ja, const float *x, Py_ssize_t js,
                    Py_ssize_t xrow, Py_ssize_t xpix, const float *d, Py_ssize_t ldd,
                    Py_ssize_t Ho, Py_ssize_t Wo, int F, int J) noexcept nogil
    ctypedef struct cy_blk_kernels_d:
        void (*fwd)(double *dst, Py_ssize_t ldd, Py_ssize_t rsd, const double *xr,
                    Py_ssize_t rsx, const Py_ssize_t *off, const double *w, Py_ssize_t ldw,
                    const double *init, Py_ssize_t nt, int pb, int kb, int ra) noexcept nogil
        void (*dw)(double *acc, Py_ssize_t lda, const double *x, Py_ssize_t xrow,
                Py_ssize_t xpix, const double *d, Py_ssize_t ldd, Py_ssize_t Ho,
                Py_ssize_t Wo, int tb, int kb, int ra, Py_ssize_t rs) noexcept nogil
        void (*dx)(double *dst, const Py_ssize_t *off, const double *wt, Py_ssize_t ldw,
                   const double *src, Py_ssize_t lds, Py_ssize_t nk, int tb,
                   int jb) noexcept nogil
        void (*gather)(double *dxt, Py_ssize_t ldt, const double *planes, Py_ssize_t planeb,
                       const void *keep, Py_ssize_t C, Py_ssize_t Hp, Py_ssize_t Wo,
                       Py_ssize_t kw) noexcept nogil
        void (*transpose)(double *dst, Py_ssize_t ldd, const double *src, Py_ssize_t lds,
                          Py_ssize_t R, Py_ssize_t S, Py_ssize_t avail) noexcept nogil
        void (*fwdr)(double *dst, Py_ssize_t ldd, Py_ssize_t rsd, const double *xr,
                     Py_ssize_t rsx, const Py_ssize_t *off, const double *w, Py_ssize_t ldw,
                     const double *init, Py_ssize_t nt, int ng, int kb, int ra,
                     int G) noexcept nogil
        void (*dwr)(double *acc, Py_ssize_t lda, const double *x, Py_ssize_t xrow,
                    Py_ssize_t xpix, const double *d, Py_ssize_t ldd, Py_ssize_t Ho,
                    Py_ssize_t Wo, int nq, int kb) noexcept nogil
        void (*fwdp)(double *dst, Py_ssize_t ldd, const double *xr, Py_ssize_t js,
                     const Py_ssize_t *off, const double *w, Py_ssize_t ldw, const double *init,
                     Py_ssize_t nt, int F, int J) noexcept nogil
        void (*dwp)(double *acc, Py_ssize_t lda, Py_ssize_t ja, const double *x, Py_ssize_t js,
                    Py_ssize_t xrow, Py_ssize_t xpix, const double *d, Py_ssize_t ldd,
                    Py_ssize_t Ho, Py_ssize_t Wo, int F, int J) noexcept nogil
    cy_blk_kernels_f cy_blk_f
    cy_blk_kernels_d cy_blk_d
    int cy_blk_lanes, cy_blk_acc, cy_blk_jb
    int cy_isa_best()
    int cy_blk_select(int isa)


# -- which instruction set (see _kernels/__init__.py) -------------------------------------------
def _select_variant(int index):
    """Switch the micro-kernels to variant ``index``; the index it then runs."""
    cy_mathfn_select(index)          # the fused epilogue's element functions (_epilogue.pxd)
    cy_pool2x2_select(index)         # conv2d_max_pool2d_forward's pooling (_pool2x2.h)
    return cy_blk_select(index)


isa_variants, _select_isa, isa = isa_functions("the micro-kernels", cy_isa_best(), _select_variant)


# -- the geometry of one call --------------------------------------------------------------------
cdef struct Plan:
    Py_ssize_t H, W, C, K, kh, kw, pt, pl, Ho, Wo
    Py_ssize_t V          # numbers per vector of the variant in use
    Py_ssize_t Kp         # K rounded up to whole vectors (zero filters in the padding)
    Py_ssize_t Hp, Wp     # the padded image: Ho + kh - 1 rows of Wp = Wo + kw - 1 pixels
    Py_ssize_t T          # taps kh * kw * C
    # dx: dout planar, Lr lanes per filter (its Ho * Wo pixels, zero past them up to whole
    # vectors, an even number of them unless the variant has 3-vector tiles); dx summed into
    # kw * C column-shifted planes of ``planeb`` numbers (rows Wo wide), one per (b, c), then
    # added into the padded dx stored planar with rows of Wq (Wp in whole vectors)
    Py_ssize_t Lr, planeb, Wq
    # forward: K = KB whole vectors + V / G filters, G in {2, 4} pixels sharing the last
    # vector (``fwdr`` of _blocked.h), KB in {1, 2}; G = 0: one vector of filters a pixel
    Py_ssize_t G, KB
    # forward with the output pixels in the lanes (``fwdp`` of _blocked.h): 1 when Wo is
    # whole vectors, so that a row's pixels, or one row, fill vectors of their own
    Py_ssize_t PL
    # dW: K = KB whole vectors + 16 bytes of filters: DG = V * itemsize / 16 neighbouring
    # taps share one vector for the remainder (``dwr`` of _blocked.h); 0: vectors of filters
    Py_ssize_t DG
    # dW with the taps in the lanes (``dwp`` of _blocked.h): DT = 1, dW summed as (kh, K,
    # spanv) with the kw * C taps of a kernel row in spanv = whole vectors (at least one)
    Py_ssize_t DT, spanv


cdef inline Py_ssize_t _cdiv(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return (a + b - 1) // b


cdef Plan _plan(const Py_ssize_t *x_shape, const Py_ssize_t *w_shape, Py_ssize_t Ho,
                Py_ssize_t Wo, int pt, int pl, Py_ssize_t itemsize) noexcept:
    cdef Plan g
    cdef Py_ssize_t rm
    g.H, g.W, g.C = x_shape[1], x_shape[2], x_shape[3]
    g.kh, g.kw, g.K = w_shape[0], w_shape[1], w_shape[3]
    g.pt, g.pl, g.Ho, g.Wo = pt, pl, Ho, Wo
    g.V = cy_blk_lanes * 4 // itemsize
    g.Kp = _cdiv(g.K, g.V) * g.V
    g.Hp, g.Wp, g.T = Ho + g.kh - 1, Wo + g.kw - 1, g.kh * g.kw * g.C
    g.Lr = _dx_vectors(Ho * Wo, g.V) * g.V
    # tap (a, b, c) of the lanes j < Lr writes plane (b, c) at a * Wo + j < (kh-1) * Wo + Lr
    g.planeb = (g.kh - 1) * Wo + g.Lr
    g.Wq = _cdiv(g.Wp, g.V) * g.V
    # fwdr when each pixel's broadcast number still feeds two whole vectors of filters (KB =
    # 2), or one of 16 lanes: this CPU loads about two vectors a cycle, and with KB = 1 every
    # multiply-add needs a load of its own (keras_mnist c1, K = 10 on avx2: no faster).  AMD
    # EPYC Zen 5, 1 thread, forward: keras_mnist c2 (K = 20) 0.93 (avx2) / 0.89 (avx512)
    g.KB, rm = g.K // g.V, g.K % g.V
    g.G = g.V // rm if rm > 0 and g.V % rm == 0 else 0
    if g.G not in (2, 4) or not (g.KB == 2 or g.KB == 1 and g.V == 16):
        g.G = 0
    # the pixels in the lanes when a row is whole vectors and the filters are not (keras_mnist
    # c2: 8 x 8 pixels, 20 filters; c1: 24 x 24, 10), on the variants with 16 registers (avx2,
    # and the default variant, which follows it unmeasured): every lane a sum, 12 of them in
    # 4 x 3 tiles, the loads 3 vectors and 4 broadcasts a tap.  AMD EPYC Zen 3, 1 thread,
    # keras_mnist c2's tiles: 6.3 us an image against fwdr's 10.0 (10 sums, 11 loads and 2
    # shuffles a tap: 61 % of the FMA peak).  (The avx512 tiles, tuned on Zen 5, stay.)
    g.PL = _pixel_lanes and cy_blk_acc == 12 and Wo % g.V == 0 and g.K % g.V != 0
    if g.PL:
        g.G = 0
    # dwr wherever the remainder is 16 bytes (keras_mnist c2's 20 filters: 2 x 8 + 4 on avx2,
    # 16 + 4 on avx512, where the vectors of filters ran 4 of 24 / 12 of 32 lanes on zeros)
    g.DG = 0
    if g.V * itemsize > 16 and rm * itemsize == 16 and g.KB in (1, 2):
        g.DG = g.V * itemsize // 16
    # dW with the taps in the lanes where the filters are not whole vectors and the taps (b, c)
    # of a kernel row, neighbours in the image, keep more lanes busy than the filters would
    # (keras_mnist c2: 50 in 7 vectors, 89 %, against 20 of 24), on the variants with 16
    # registers: every filter a broadcast, 4 filters x 3 vectors a tile.  AMD EPYC Zen 3, 1
    # thread, keras_mnist c2's tiles: 7.6 us an image against dwr's 9.6 (10 sums, 9 loads and
    # 3 shuffles a pixel), its dW 0.78x; c1 (5 taps in 8 lanes, 10 filters in 16) 1.12x
    g.spanv = _cdiv(g.kw * g.C, g.V) * g.V
    g.DT = (_tap_lanes and cy_blk_acc == 12 and g.K % g.V != 0
            and g.kw * g.C * g.Kp > g.K * g.spanv)
    if g.DT:
        g.DG = 0
    return g


cdef bint _pixel_lanes = True
cdef bint _tap_lanes = True


def _set_pixel_lanes(bint on):
    """Private, for the tests and benchmarks: let the forward tiles hold the pixels in the lanes
    where ``_plan``'s rule says so (True), or never; returns the setting that was in force."""
    global _pixel_lanes
    old, _pixel_lanes = _pixel_lanes, on
    return old


def _set_tap_lanes(bint on):
    """Private, for the tests and benchmarks: let the dW tiles hold the taps in the lanes where
    ``_plan``'s rule says so (True), or never; returns the setting that was in force."""
    global _tap_lanes
    old, _tap_lanes = _tap_lanes, on
    return old


cdef Py_ssize_t _dx_vectors(Py_ssize_t lanes, Py_ssize_t V) noexcept nogil:
    """The vectors of V numbers the dx tiles cover ``lanes`` with: tiles 2 .. cy_blk_jb
    vectors wide (``_dx_tile_width``), so whole vectors, and at least 2 of them, an even number
    unless the variant has 3-vector tiles (avx512, avx2): LeNet c2 has 10 x 10 output pixels,
    100 lanes, in 7 vectors on avx512 (tiles of 4 and 3), in 13 on avx2 (3, 2, 2, 2, 2, 2; 14
    in tiles of 2 before, 12 % more multiply-adds than lanes), on the default variant in 26."""
    cdef Py_ssize_t n = max(2, _cdiv(lanes, V))
    if cy_blk_jb < 3:
        n = _cdiv(n, 2) * 2
    return n


cdef inline int _dx_tile_width(Py_ssize_t rest) noexcept nogil:
    """The width of the next dx tile, ``rest`` >= 2 vectors still to cover: the widest the
    variant has (cy_blk_jb) that does not leave a single vector behind -- but where the widest
    tiles hold fewer taps (avx2: 4 x 3 vectors against 6 x 2, the same 12 sums, more tap
    tiles) only when an odd number is left (then one such tile)."""
    cdef Py_ssize_t jb = min(cy_blk_jb, rest)
    if rest - jb == 1:
        jb -= 1
    if jb == 3 and cy_blk_acc // 3 < 6 and rest % 2 == 0:
        jb = 2
    return <int>jb


def _dx_tile_widths(Py_ssize_t lanes, Py_ssize_t itemsize):
    """Private, for the tests: the widths (vectors) of the dx tiles over ``lanes`` lanes, last
    tile first, in the variant in use."""
    cdef Py_ssize_t rest = _dx_vectors(lanes, cy_blk_lanes * 4 // itemsize), jb
    widths = []
    while rest > 0:
        jb = _dx_tile_width(rest)
        widths.append(jb)
        rest -= jb
    return widths


def _transposed(const floating[::1] src, floating[::1] dst, Py_ssize_t ldd, Py_ssize_t lds,
                Py_ssize_t R, Py_ssize_t S):
    """Private, for the tests: ``dst[r * ldd + s] = src[s * lds + r]`` for r < R, s < S by the
    layout copies' transpose in the variant in use, which may read up to the end of ``src``
    but not past it, and writes nothing in dst but those numbers."""
    if not (R >= 1 and S >= 1 and lds >= R and ldd >= S and src.shape[0] >= (S - 1) * lds + R
            and dst.shape[0] >= (R - 1) * ldd + S):
        raise ValueError(f"_transposed: R={R} S={S} lds={lds} ldd={ldd} do not fit "
                         f"src ({src.shape[0]}) and dst ({dst.shape[0]})")
    _transpose(&dst[0], ldd, &src[0], lds, R, S, src.shape[0])


cdef inline void _blocks(Py_ssize_t n, Py_ssize_t most, Py_ssize_t *count,
                         Py_ssize_t *size) noexcept nogil:
    """Cut n into count blocks of at most ``most``, as even as can be (size = the largest)."""
    count[0] = _cdiv(n, most)
    size[0] = _cdiv(n, count[0])


cdef inline void _transpose(floating *dst, Py_ssize_t ldd, const floating *src,
                            Py_ssize_t lds, Py_ssize_t R, Py_ssize_t S,
                            Py_ssize_t avail) noexcept nogil:
    """``dst[r * ldd + s] = src[s * lds + r]`` for r < R, s < S, reading nothing at or past
    ``src + avail`` (``_blocked.h``: B x B blocks of vector moves)."""
    if floating is float:
        cy_blk_f.transpose(dst, ldd, src, lds, R, S, avail)
    else:
        cy_blk_d.transpose(dst, ldd, src, lds, R, S, avail)


cdef inline void _pad_rows(const floating *xn, floating *xq, const Plan *g) noexcept nogil:
    """Image ``xn`` (H, W, C) zero-padded and stored row-planar: ``xq[i, c, s] =
    xn[i - pt, s - pl, c]`` for i < Hp, s < Wp (a transpose (W, C) -> (C, W) per row)."""
    cdef Py_ssize_t i, C = g.C
    cdef Py_ssize_t i_lo = max(0, -g.pt), i_hi = min(g.H, g.Hp - g.pt)
    cdef Py_ssize_t s_hi = min(g.W, g.Wp - g.pl)
    if g.pt > 0 or g.pl > 0 or i_hi + g.pt < g.Hp or s_hi + g.pl < g.Wp:
        memset(xq, 0, g.Hp * C * g.Wp * sizeof(floating))
    if s_hi <= 0:
        return                              # (left padding past every window)
    for i in range(i_lo, i_hi):
        if C == 1:
            memcpy(xq + (i + g.pt) * g.Wp + g.pl, xn + i * g.W, s_hi * sizeof(floating))
        else:
            _transpose(xq + (i + g.pt) * C * g.Wp + g.pl, g.Wp, xn + i * g.W * C, C, C, s_hi,
                       (g.H - i) * g.W * C)


cdef inline void _pad_nhwc(const floating *xn, floating *xp, const Plan *g) noexcept nogil:
    """Image ``xn`` (H, W, C) zero-padded, channels-last: ``xp[i, s, c] = xn[i - pt, s - pl,
    c]`` for i < Hp, s < Wp, and V zeros after them (``dwr`` reads a vector past a tap)."""
    cdef Py_ssize_t i, C = g.C
    cdef Py_ssize_t i_hi = min(g.H, g.Hp - g.pt), n = min(g.W, g.Wp - g.pl) * C
    memset(xp, 0, (g.Hp * g.Wp * C + g.V) * sizeof(floating))
    if n <= 0:
        return
    for i in range(i_hi):
        memcpy(xp + ((i + g.pt) * g.Wp + g.pl) * C, xn + i * g.W * C, n * sizeof(floating))


cdef inline void _planar_dout(const floating *dn, floating *dq, const Plan *g) noexcept nogil:
    """dout of one image (Ho, Wo, K) stored planar: ``dq[k, p] = dn[p, k]`` for the P = Ho * Wo
    pixels p, zero for P <= p < Lr."""
    cdef Py_ssize_t k, K = g.K, P = g.Ho * g.Wo
    _transpose(dq, g.Lr, dn, K, K, P, P * K)
    for k in range(K):
        memset(dq + k * g.Lr + P, 0, (g.Lr - P) * sizeof(floating))


cdef inline void _gather_dx(const floating *dxb, floating *dxn, floating *dxt,
                            const void *keep, const Plan *g) noexcept nogil:
    """dx of one image (H, W, C) from the kw * C column-shifted planes: plane (b, c) holds,
    at ``i * Wo + ow``, the sum over the kernel rows a of what the taps (a, b, c) added to
    cell (i, ow + b) of the padded image's channel c.  ``gather`` (``_blocked.h``) adds the
    planes b = 0, 1, ... in order into ``dxt``, the padded dx stored planar (C, Hp, Wq), a
    vector of a row at a time, ``keep`` (kw, Wq) masking the lanes each plane does not reach;
    then dxt is stored channels-last.  Rows and columns of the image that lie past the padded
    image, which no window reaches, are zero."""
    cdef Py_ssize_t i, C = g.C
    cdef Py_ssize_t s_lo = g.pl, s_hi = min(g.W + g.pl, g.Wp)
    if floating is float:
        cy_blk_f.gather(dxt, g.Wq, dxb, g.planeb, keep, C, g.Hp, g.Wo, g.kw)
    else:
        cy_blk_d.gather(dxt, g.Wq, dxb, g.planeb, keep, C, g.Hp, g.Wo, g.kw)
    if g.Hp - g.pt < g.H or s_hi - s_lo < g.W:
        memset(dxn, 0, g.H * g.W * C * sizeof(floating))
    for i in range(g.pt, min(g.H + g.pt, g.Hp)):    # (W, C) <- (C, W) per row
        _transpose(dxn + (i - g.pt) * g.W * C, C, dxt + i * g.Wq + s_lo, g.Hp * g.Wq,
                   s_hi - s_lo, C, C * g.Hp * g.Wq - (i * g.Wq + s_lo))


# -- forward ---------------------------------------------------------------------------------------
cdef inline void _fwd_tile(floating *dst, Py_ssize_t ldd, const floating *xr,
                           const Py_ssize_t *off, const floating *w, Py_ssize_t ldw,
                           const floating *init, Py_ssize_t nt, int pb, int kb,
                           int ra=1, Py_ssize_t rsd=0, Py_ssize_t rsx=0) noexcept nogil:
    if floating is float:
        cy_blk_f.fwd(dst, ldd, rsd, xr, rsx, off, w, ldw, init, nt, pb, kb, ra)
    else:
        cy_blk_d.fwd(dst, ldd, rsd, xr, rsx, off, w, ldw, init, nt, pb, kb, ra)


cdef inline Py_ssize_t G_accumulators(const Plan *g) noexcept nogil:
    """The accumulators of one group of G pixels in a ``fwdr`` tile."""
    return g.G * g.KB + 1


cdef inline void _fwdr_tile(floating *dst, Py_ssize_t ldd, const floating *xr,
                            const Py_ssize_t *off, const floating *w, Py_ssize_t ldw,
                            const floating *init, Py_ssize_t nt, int ng, int kb, int ra, int G,
                            Py_ssize_t rsd=0, Py_ssize_t rsx=0) noexcept nogil:
    if floating is float:
        cy_blk_f.fwdr(dst, ldd, rsd, xr, rsx, off, w, ldw, init, nt, ng, kb, ra, G)
    else:
        cy_blk_d.fwdr(dst, ldd, rsd, xr, rsx, off, w, ldw, init, nt, ng, kb, ra, G)


cdef inline void _fwdp_tile(floating *dst, Py_ssize_t ldd, const floating *xr, Py_ssize_t js,
                            const Py_ssize_t *off, const floating *w, Py_ssize_t ldw,
                            const floating *init, Py_ssize_t nt, int F, int J) noexcept nogil:
    if floating is float:
        cy_blk_f.fwdp(dst, ldd, xr, js, off, w, ldw, init, nt, F, J)
    else:
        cy_blk_d.fwdp(dst, ldd, xr, js, off, w, ldw, init, nt, F, J)


cdef void _forward_pixels(const floating *xr, const floating *wk, const floating *bk,
                          const Py_ssize_t *off, floating *outn, const Plan *g) noexcept nogil:
    """outn (Ho, Wo, K) of one image when its rows are whole vectors (``g.PL``): tiles of jb
    <= 3 vectors of pixels -- of one row, or jb rows when a row is one vector -- x 4 filters
    (``fwdp``), each pixel's 4 sums stored in place, so nothing is copied.  When K is not a
    multiple of 4 the last tile takes the last 4 filters, some of them a second time (the same
    sums in the same order: the same bits; keras_mnist c1's 10 filters as 3 x 4, each tile at
    full speed, rather than a tile of 2 with half the sums in flight); K < 4: tiles of K."""
    cdef Py_ssize_t m = g.Wo // g.V, K = g.K, nf = _cdiv(g.K, 4), ln = g.C * g.Wp
    cdef Py_ssize_t rows = g.Ho if m > 1 else 1, n = m if m > 1 else g.Ho
    cdef Py_ssize_t js = g.V if m > 1 else ln, i, v, jb, nb, pb, p0, f, k0
    cdef const floating *xb
    _blocks(n, 3, &nb, &pb)
    for i in range(rows):
        v = 0
        while v < n:
            jb = min(pb, n - v)
            # vector v of row i (m > 1), or row v (m == 1): its first pixel, and x
            p0, xb = i * g.Wo + v * g.V, xr + i * ln + v * g.V
            if m == 1:
                p0, xb = v * g.Wo, xr + v * ln
            for f in range(nf):
                k0 = min(4 * f, K - 4) if K >= 4 else 0
                _fwdp_tile(outn + p0 * K + k0, K, xb, js, off, wk + k0, g.Kp, bk + k0, g.T,
                           <int>min(4, K), <int>jb)
            v += jb


cdef void _forward_image(const floating *xn, const floating *wk, const floating *bk,
                         const Py_ssize_t *off, floating *outn, floating *xq, floating *tile,
                         int act, const Plan *g) noexcept nogil:
    """outn (Ho, Wo, K) for one image: tiles of pb pixels of a row x kb vectors of filters;
    then the activation f (``_epilogue.pxd``) on the image, while it is in cache (in one call,
    as ``_direct.pyx`` does: the element functions may round the last bit differently at the
    end of a call, so calls over rows would differ from the unfused layer more often).

    When K is not a whole number of vectors (K = 10 or 20 filters in 16-float vectors), a tile
    still stores whole vectors straight into out, pixel after pixel: the numbers of the zero
    filters past pixel p's K land on the first filters of the pixels after it, which are
    written afterwards -- by the same pass (its tiles go left to right, row after row) or by
    pass 0 (each row runs the pass with the padding first).  Only a tile whose last vector
    would reach past the image's output goes through ``tile`` and is copied.  (Copying every
    tile was half of LeNet-like c1's forward: 64x28x28x1 -> 10 filters, avx512.)"""
    cdef Py_ssize_t oh, ow, p, k, kv, nb, pb, kb, i, j, nv = g.Kp // g.V, K = g.K
    cdef Py_ssize_t npass = _cdiv(nv, 2), end = g.Ho * g.Wo * K
    cdef Py_ssize_t groups = g.Wo // g.G if g.G else 0, per, ng, q
    cdef const floating *xr = xq
    if g.C == 1 and g.pt == 0 and g.pl == 0 and g.Wp == g.W and g.Hp <= g.H and groups == 0:
        xr = xn                             # one channel, no padding: xn is its own copy
    else:                                   # (fwdr reads a vector past its last group)
        _pad_rows(xn, xq, g)
    if g.PL:
        _forward_pixels(xr, wk, bk, off, outn, g)
        apply_activation(outn, outn, g.Ho * g.Wo * K, act)
        return
    oh = 0
    if groups > 0:
        # the remainder filters of G neighbouring pixels in one vector (``fwdr``): tiles of
        # ng groups of G pixels (of two whole rows when they fit), stores of exactly K
        # numbers a pixel; the last Wo % G pixels of a row go on to the tiles below, through
        # ``tile``
        per = G_accumulators(g)
        if groups <= 4 and 2 * groups * per <= cy_blk_acc:
            while oh + 2 <= g.Ho:
                _fwdr_tile(outn + oh * g.Wo * K, K, xr + oh * g.C * g.Wp, off, wk, g.Kp, bk,
                           g.T, <int>groups, <int>g.KB, 2, <int>g.G, g.Wo * K, g.C * g.Wp)
                oh += 2
        _blocks(groups, min(4, cy_blk_acc // per), &nb, &ng)
        for i in range(oh, g.Ho):
            q = 0
            while q < groups:
                ng = min(ng, groups - q)
                _fwdr_tile(outn + (i * g.Wo + q * g.G) * K, K, xr + i * g.C * g.Wp + q * g.G,
                           off, wk, g.Kp, bk, g.T, <int>ng, <int>g.KB, 1, <int>g.G)
                q += ng
        oh = g.Ho if groups * g.G == g.Wo else 0
        end = 0                             # (the rest of each row through ``tile``)
    if nv == 1 and 2 * g.Wo <= cy_blk_acc and groups == 0:
        # one vector of filters and short rows (LeNet c2 on avx512: 10 pixels): tiles of two
        # whole rows, twice the sums in flight (each adds its taps in the same order); the
        # rows whose last vector would reach past the output go on to the tiles below
        while oh + 2 <= g.Ho and ((oh + 2) * g.Wo - 1) * K + g.V <= end:
            _fwd_tile(outn + oh * g.Wo * K, K, xr + oh * g.C * g.Wp, off, wk, g.Kp, bk, g.T,
                      <int>g.Wo, 1, 2, g.Wo * K, g.C * g.Wp)
            oh += 2
    for oh in range(oh, g.Ho):
        for j in range(npass):
            i = (j + npass - 1) % npass     # the last pass (zero filters in it) first
            kv, kb = 2 * i, min(2, nv - 2 * i)
            _blocks(g.Wo - groups * g.G, cy_blk_acc // kb, &nb, &pb)
            ow = groups * g.G
            while ow < g.Wo:
                pb = min(pb, g.Wo - ow)
                if (oh * g.Wo + ow + pb - 1) * K + (kv + kb) * g.V <= end:
                    _fwd_tile(outn + (oh * g.Wo + ow) * K + kv * g.V, K,
                              xr + oh * g.C * g.Wp + ow, off, wk + kv * g.V, g.Kp,
                              bk + kv * g.V, g.T, <int>pb, <int>kb)
                else:
                    _fwd_tile(tile, g.Kp, xr + oh * g.C * g.Wp + ow, off, wk + kv * g.V,
                              g.Kp, bk + kv * g.V, g.T, <int>pb, <int>kb)
                    for p in range(pb):
                        for k in range(kv * g.V, min(K, (kv + kb) * g.V)):
                            outn[(oh * g.Wo + ow + p) * K + k] = tile[p * g.Kp + k - kv * g.V]
                ow += pb
    apply_activation(outn, outn, g.Ho * g.Wo * K, act)


# -- a call's scratch memory --------------------------------------------------------------------
# Every buffer a call needs besides its arguments (the packed filters, each thread's padded
# image, tiles and planes) is malloc'd at the start of the call and freed at its end, in a
# ``finally``: a NumPy array and a memoryview for each took 0.5-1 us apiece, a good part of
# the fixed cost of a call (the backward made 13 of them).  AMD EPYC Zen 3, one thread, LeNet
# c2 on one image (best of 3000 calls): forward 15.3 -> 10.7 us, backward 35 -> 21 us.
# Each buffer starts on a 64-byte cache line, and each thread's (or work unit's) region in it
# takes whole lines (``_whole_lines``): with malloc's 16-byte alignment, as NumPy's, the last
# line of one thread's region was the first of the next one's in some processes and not in
# others, by where the heap put the buffer.  Two threads then wrote one line (false sharing):
# LeNet c2 forward+backward on 2 threads took 750 or 800-935 us, process by process (AMD EPYC
# Zen 3, avx2, best of 100 calls); aligned, 690-705 us in every process.  Same bits: only
# addresses move, and the tiles load unaligned vectors anyway.
cdef void *_scratch(Py_ssize_t count, size_t size, bint zeroed=False) except NULL:
    """Room for ``count`` numbers of ``size`` bytes (at least one), zeroed or not; free() it.
    MemoryError when there is none."""
    cdef size_t nbytes = max(count, 1) * size
    cdef void *p = NULL
    if posix_memalign(&p, 64, nbytes) != 0:
        p = NULL
    elif zeroed:
        memset(p, 0, nbytes)
    if p == NULL:
        raise MemoryError(f"blocked conv2d: no memory for a scratch buffer of {count} x "
                          f"{size} bytes")
    return p


cdef inline Py_ssize_t _whole_lines(Py_ssize_t count, size_t size) noexcept nogil:
    """``count`` rounded up to whole 64-byte cache lines of numbers of ``size`` bytes: the
    stride of a per-thread (or per-unit) region, so that no two threads write one line."""
    cdef Py_ssize_t per = 64 // size
    return (count + per - 1) // per * per


cdef void _pack_filters(const floating *wf, const floating *b, floating *wk, floating *bk,
                        Py_ssize_t *off, const Plan *g) noexcept nogil:
    """``wk`` (T, Kp), ``bk`` (Kp,) and ``off`` (T,) as ``_forward_image`` reads them, wk and
    bk zeroed by the caller: the filters tap by tap (w's own order, ``wf`` C-contiguous: tap
    t's row at t * K) in rows of Kp, the remainder filters repeated G times for the fwdr tiles;
    the bias likewise; each tap's offset in the padded planar image."""
    cdef Py_ssize_t t, k, a, bb, c
    cdef Py_ssize_t kr = g.KB * g.V, rm = g.V // g.G if g.G else 0
    for t in range(g.T):                    # tap t = (a, b, c), w's own order
        for k in range(g.K):
            wk[t * g.Kp + k] = wf[t * g.K + k]
        for k in range(g.K, g.K + (g.G - 1) * rm):    # the remainder, G times (fwdr)
            wk[t * g.Kp + k] = wf[t * g.K + kr + (k - g.K) % rm]
        a, bb, c = t // (g.kw * g.C), (t // g.C) % g.kw, t % g.C
        off[t] = (a * g.C + c) * g.Wp + bb
    for k in range(g.K):
        bk[k] = b[k]
    for k in range(g.K, g.K + (g.G - 1) * rm):
        bk[k] = b[kr + (k - g.K) % rm]


cdef _forward_all(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                  const floating[::1] b, floating[:, :, :, ::1] out, const Plan *g,
                  int num_threads, int act, bint pool=False, int relu=0):
    """Every image's forward into ``out``; with ``pool``, each image's conv output goes to the
    thread's scratch and only its 2x2 max pooling to ``out`` (``_forward_pool_image``)."""
    cdef Py_ssize_t N = x.shape[0], n, tid
    cdef Py_ssize_t T = unit_threads(N, num_threads)
    # each thread's padded image, tile and (pooled) image of conv output
    cdef Py_ssize_t lq = _whole_lines(g.Hp * g.C * g.Wp + g.V, sizeof(floating))
    cdef Py_ssize_t lt = _whole_lines(cy_blk_acc * g.Kp, sizeof(floating))
    cdef Py_ssize_t ly = _whole_lines(g.Ho * g.Wo * g.K if pool else 1, sizeof(floating))
    cdef Py_ssize_t x_step = g.H * g.W * g.C
    cdef Py_ssize_t out_step = out.shape[1] * out.shape[2] * g.K
    cdef floating *wk = NULL
    cdef floating *bk = NULL
    cdef Py_ssize_t *off = NULL
    cdef floating *xq = NULL
    cdef floating *tile = NULL
    cdef floating *y = NULL
    try:
        wk = <floating *>_scratch(g.T * g.Kp, sizeof(floating), True)
        bk = <floating *>_scratch(g.Kp, sizeof(floating), True)
        off = <Py_ssize_t *>_scratch(g.T, sizeof(Py_ssize_t))
        xq = <floating *>_scratch(T * lq, sizeof(floating))
        tile = <floating *>_scratch(T * lt, sizeof(floating))
        y = <floating *>_scratch(T * ly, sizeof(floating))
        with nogil:
            _pack_filters(&w[0, 0, 0, 0], &b[0], wk, bk, off, g)
            # image by image (no sums across images: the units of the backward pass are for its
            # dW), so that the thread that starts late -- the other sleeps between calls and
            # takes tens of microseconds to wake -- or is slowed takes fewer images, and the two
            # finish within about an image of each other (units of 8 images: 45 us apart, median)
            for n in prange(N, schedule="dynamic", num_threads=T):
                tid = threadid()
                if pool:
                    _forward_pool_image(&x[0, 0, 0, 0] + n * x_step, wk, bk, off,
                                        &out[0, 0, 0, 0] + n * out_step, y + tid * ly,
                                        xq + tid * lq, tile + tid * lt, act, relu, g)
                else:
                    _forward_image(&x[0, 0, 0, 0] + n * x_step, wk, bk, off,
                                   &out[0, 0, 0, 0] + n * out_step, xq + tid * lq,
                                   tile + tid * lt, act, g)
    finally:
        free(wk)
        free(bk)
        free(off)
        free(xq)
        free(tile)
        free(y)


# -- backward --------------------------------------------------------------------------------------
cdef inline void _dw_tile(floating *acc, Py_ssize_t lda, const floating *x, Py_ssize_t xrow,
                          Py_ssize_t xpix, const floating *d, Py_ssize_t ldd, Py_ssize_t Ho,
                          Py_ssize_t Wo, int tb, int kb, int ra, Py_ssize_t rs) noexcept nogil:
    if floating is float:
        cy_blk_f.dw(acc, lda, x, xrow, xpix, d, ldd, Ho, Wo, tb, kb, ra, rs)
    else:
        cy_blk_d.dw(acc, lda, x, xrow, xpix, d, ldd, Ho, Wo, tb, kb, ra, rs)


cdef inline void _dwr_tile(floating *acc, Py_ssize_t lda, const floating *x, Py_ssize_t xrow,
                           Py_ssize_t xpix, const floating *d, Py_ssize_t ldd, Py_ssize_t Ho,
                           Py_ssize_t Wo, int nq, int kb) noexcept nogil:
    if floating is float:
        cy_blk_f.dwr(acc, lda, x, xrow, xpix, d, ldd, Ho, Wo, nq, kb)
    else:
        cy_blk_d.dwr(acc, lda, x, xrow, xpix, d, ldd, Ho, Wo, nq, kb)


cdef inline void _dx_tile(floating *dst, const Py_ssize_t *off, const floating *wt,
                          Py_ssize_t ldw, const floating *src, Py_ssize_t lds, Py_ssize_t nk,
                          int tb, int jb) noexcept nogil:
    if floating is float:
        cy_blk_f.dx(dst, off, wt, ldw, src, lds, nk, tb, jb)
    else:
        cy_blk_d.dx(dst, off, wt, ldw, src, lds, nk, tb, jb)


cdef inline void _dwp_tile(floating *acc, Py_ssize_t lda, Py_ssize_t ja, const floating *x,
                           Py_ssize_t js, Py_ssize_t xrow, Py_ssize_t xpix, const floating *d,
                           Py_ssize_t ldd, Py_ssize_t Ho, Py_ssize_t Wo, int F,
                           int J) noexcept nogil:
    if floating is float:
        cy_blk_f.dwp(acc, lda, ja, x, js, xrow, xpix, d, ldd, Ho, Wo, F, J)
    else:
        cy_blk_d.dwp(acc, lda, ja, x, js, xrow, xpix, d, ldd, Ho, Wo, F, J)


cdef void _dw_taps(const floating *xv, const floating *d, floating *dwl,
                   const Plan *g) noexcept nogil:
    """One image's share of dW with the taps in the lanes (``g.DT``): dwl (kh, K, spanv) +=
    the products over every output pixel, in tiles of jb <= 3 vectors of the taps (b, c) of a
    kernel row -- or of jb kernel rows when a row's taps fit one vector -- x up to 4 filters
    (``dwp``).  A tile's last vector reads up to spanv - kw * C numbers past its kernel row in
    the padded image xv (the caller leaves room after it)."""
    cdef Py_ssize_t m = g.spanv // g.V, K = g.K, xrow = g.Wp * g.C
    cdef Py_ssize_t rows = g.kh if m > 1 else 1, n = m if m > 1 else g.kh
    cdef Py_ssize_t js = g.V if m > 1 else xrow, ja = g.V if m > 1 else K * g.spanv
    cdef Py_ssize_t a, v, jb, k0, r
    for a in range(rows):
        v = 0
        while v < n:
            # 3 vectors, but never leaving a single one behind (2 + 2 rather than 3 + 1)
            jb = min(3, n - v)
            if n - v - jb == 1:
                jb -= 1
            r = a if m > 1 else v               # the tile's first kernel row, and tap
            for k0 in range(0, K, 4):
                _dwp_tile(dwl + (r * K + k0) * g.spanv + (v * g.V if m > 1 else 0), g.spanv,
                          ja, xv + r * xrow + (v * g.V if m > 1 else 0), js, xrow, g.C,
                          d + k0, K, g.Ho, g.Wo, <int>min(4, K - k0), <int>jb)
            v += jb


cdef void _dw_image(const floating *dn, const floating *yn, const floating *xn,
                    floating *dwl, double *db_part, floating *xp, floating *dpad,
                    floating *dzn, int act, Py_ssize_t x_after, Py_ssize_t d_after,
                    const Plan *g) noexcept nogil:
    """One image's share of the dW lanes dwl (T, Kp) and of db, from dz = dout * f'(y) (into
    dzn, unless f is linear: then dout itself); ``x_after`` and ``d_after``: how many numbers
    of the batch's x and dout follow the image's (which the tiles may read, not use)."""
    cdef Py_ssize_t a, j, nb, tb, tj, kb, ra, k, i, kv, q, nq, ng, j0 = 0
    cdef Py_ssize_t nv = g.Kp // g.V, span = g.kw * g.C, K = g.K, P = g.Ho * g.Wo
    derivative_db(dzn, dn, yn, P, K, act, db_part)         # (``_epilogue.pxd``)
    if act != ACT_LINEAR:
        dn = dzn
    if g.DT:
        # (the tiles' last vectors read up to V - 1 numbers past the image: the next image's,
        # if there are enough, else the padded copy's room)
        if g.pt == 0 and g.pl == 0 and g.Wp == g.W and g.Hp <= g.H and x_after >= g.V:
            _dw_taps(xn, dn, dwl, g)
        else:
            _pad_nhwc(xn, xp, g)
            _dw_taps(xp, dn, dwl, g)
        return
    # dW: tiles of tb taps (b, c) of kernel row a x kb vectors of filters, over every pixel.
    # The tiles read whole vectors of dz: with K not a whole number of vectors, pixel p's
    # vector also reads the first filters of the pixels after it (into lanes whose sums are
    # never read: dw takes k < K), and the last pixel's the first Kp - K numbers of the next
    # image's dout (or the room after dzn).  Where dout has no such numbers after the image
    # (the batch's last) only rows 0 .. Ho - 2 are read in place and the last row is copied
    # into rows of whole vectors (``dpad``); the tile's sums carry over from one call to the
    # next, in the same order.  (Copying every row was a quarter of LeNet-like c1's dW; the
    # last row in a call of its own, with every tile's sums loaded and stored again, a tenth
    # of keras_mnist c2's.)
    cdef const floating *d = dn
    cdef const floating *xv = xp
    cdef Py_ssize_t head = g.Ho, ldd = K, xrow = g.Wp * g.C
    if K != g.Kp and act == ACT_LINEAR and d_after < g.Kp - K:
        head = g.Ho - 1 if g.Kp - K <= g.Wo * K else 0
        for i in range(head * g.Wo, P):
            for k in range(g.Kp):
                dpad[i * g.Kp + k] = dn[i * K + k] if k < K else 0
    # (dwr reads a vector past a group of taps: past the image, in x the next image's
    # numbers, if there are enough, else in the padded copy, which has room)
    if g.pt == 0 and g.pl == 0 and g.Wp == g.W and g.Hp <= g.H and not (
            g.DG and x_after < g.V):
        xv = xn                         # no padding: the image is its own padded copy
    else:
        _pad_nhwc(xn, xp, g)
    if g.DG and span >= g.DG:
        # K = KB vectors + 16 bytes of filters: tiles of nq groups of DG taps (``dwr``), the
        # remainder of the DG taps in one vector; a kernel row's last span % DG taps (keras_mnist
        # c2 on avx512: 2 of 50) go on to the tiles below
        ng = span // g.DG
        _blocks(ng, min(4, cy_blk_acc // (g.DG * g.KB + 1)), &nb, &nq)
        for a in range(g.kh):
            q = 0
            while q < ng:
                tj, j = min(nq, ng - q), q * g.DG
                if head > 0:
                    _dwr_tile(dwl + (a * span + j) * g.Kp, g.Kp, xv + a * xrow + j, xrow, g.C,
                              d, ldd, head, g.Wo, <int>tj, <int>g.KB)
                if head < g.Ho:
                    _dwr_tile(dwl + (a * span + j) * g.Kp, g.Kp, xv + (a + head) * xrow + j,
                              xrow, g.C, dpad + head * g.Wo * g.Kp, g.Kp, g.Ho - head, g.Wo,
                              <int>tj, <int>g.KB)
                q += tj
        j0 = ng * g.DG
    if j0 == span:
        return
    kv = 0
    while kv < nv:
        kb = 2 if nv - kv >= 2 else 1
        if 2 * (span - j0) * kb <= cy_blk_acc:
            # short kernel rows (one channel: kw taps): a tile of ra whole rows (ra <= 3), so
            # that it keeps enough sums in flight to hide the latency of the multiply-adds
            # (keras_mnist's first layer on avx512: 15 and 10 sums instead of 5); each sum
            # still adds its pixels in order, so the bits are those of one-row tiles
            _blocks(g.kh, min(3, cy_blk_acc // ((span - j0) * kb)), &nb, &ra)
            tb = span - j0
        else:
            _blocks(span - j0, cy_blk_acc // kb, &nb, &tb)
            ra = 1
        a = 0
        while a < g.kh:
            ra = min(ra, g.kh - a)
            j = j0
            while j < span:
                # (the row's last tile may be narrower: tb itself stays for the next rows,
                # which shrank it to that last tile's width before, 2 taps x 2 vectors for
                # keras_mnist c2's rows of 50 taps on avx2, four sums in flight)
                tj = min(tb, span - j)
                if head > 0:
                    _dw_tile(dwl + (a * span + j) * g.Kp + kv * g.V, g.Kp,
                             xv + a * xrow + j, xrow, g.C, d + kv * g.V, ldd,
                             head, g.Wo, <int>tj, <int>kb, <int>ra, span)
                if head < g.Ho:
                    _dw_tile(dwl + (a * span + j) * g.Kp + kv * g.V, g.Kp,
                             xv + (a + head) * xrow + j, xrow, g.C,
                             dpad + head * g.Wo * g.Kp + kv * g.V, g.Kp,
                             g.Ho - head, g.Wo, <int>tj, <int>kb, <int>ra, span)
                j += tj
            a += ra
        kv += kb


cdef void _dx_image(const floating *dn, const floating *yn, const floating *wt,
                    const Py_ssize_t *offx, floating *dxn, floating *dq, floating *dxb,
                    floating *dxt, floating *dzn, const void *keep, int act,
                    const Plan *g) noexcept nogil:
    """dx of one image into dxn, from dz = dout * f'(y) (into dzn unless f is linear; db is
    ``_dw_image``'s)."""
    cdef Py_ssize_t j, jb, nb, tb, q, K = g.K
    if act != ACT_LINEAR:
        derivative_db(dzn, dn, yn, g.Ho * g.Wo, K, act, NULL)
        dn = dzn
    # dx: tiles of tb taps x jb vectors of output pixels: each tap's share of dout @ W^T,
    # added where the tap reads.  The pixels are the lanes, Ho * Wo of them in a row (no lane
    # for the columns past Wo, which the padded image's rows have: a third of LeNet c2's
    # lanes), so tap (a, b, c) of every pixel adds into one contiguous run of a plane whose
    # rows are Wo wide -- one plane per column shift b and channel c, summed at the end
    _planar_dout(dn, dq, g)
    memset(dxb, 0, (g.kw * g.C * g.planeb + g.kw - 1 + g.Wq) * sizeof(floating))
    # Every plane cell receives its taps' sums in tap order, in every variant, whatever the
    # width of its pixel tiles: tap tiles go in order, and in a tile the taps add in order --
    # but a later tap t2 (a2 > a1) of the same plane reads an earlier lane than t1 for the same
    # cell (off[t2] > off[t1]), in an earlier pixel tile when a tile boundary falls between the
    # two lanes.  So the pixel tiles go from the last to the first: t1's tile comes first then
    # too.  (In order, a one- or two-channel layer's dx differed in the last bit between
    # avx2's 16-lane and avx512's 48-lane tiles.)
    # (The pixel tiles outside, the tap tiles inside, so that a 3-vector tile can take fewer
    # taps: avx2's 16 registers hold 6 x 2 or 4 x 3 sums.  The order per cell is the same.)
    q = g.Lr
    while q > 0:
        jb = _dx_tile_width(q // g.V)
        q -= jb * g.V
        _blocks(g.T, min(6, cy_blk_acc // jb), &nb, &tb)
        j = 0
        while j < g.T:
            tb = min(tb, g.T - j)
            _dx_tile(dxb + g.kw - 1 + q, offx + j, wt + j, g.T, dq + q, g.Lr, K, <int>tb,
                     <int>jb)
            j += tb
    _gather_dx(dxb + g.kw - 1, dxn, dxt, keep, g)


cdef _backward_all(const floating[:, :, :, ::1] dout, const floating[:, :, :, ::1] x,
                   const floating[:, :, :, ::1] w, floating[:, :, :, ::1] dx,
                   floating[:, :, :, ::1] dw, floating[::1] db, const Plan *g,
                   int num_threads, int act, const floating[:, :, :, ::1] y):
    cdef bint need_dx = dx is not None
    cdef Py_ssize_t N = x.shape[0], K = g.K, C = g.C, t, k, a, bb, c, n, i, j, src, s
    cdef Py_ssize_t span = g.kw * C, kr = g.KB * g.V, rm = K - g.KB * g.V
    cdef Py_ssize_t tid
    cdef Py_ssize_t T = unit_threads(N, num_threads)
    cdef Py_ssize_t U = unit_count(N, T)
    # each thread's buffers (their lengths): the padded image; dout with K padded to Kp; dout
    # planar; the planes of dx, with room for gather's reads kw - 1 numbers before and Wq past
    # them; the padded dx planar; dz = dout * f'(y) of one image, when f is not linear (with
    # room for the vectors dW reads past the last pixel's K numbers), each in whole cache lines
    # (_whole_lines) from a 64-byte aligned start (_scratch)
    cdef size_t z = sizeof(floating)
    cdef Py_ssize_t lxp = _whole_lines(g.Hp * g.Wp * C + g.V, z)
    cdef Py_ssize_t ldpad = _whole_lines(g.Ho * g.Wo * g.Kp if K != g.Kp else 1, z)
    cdef Py_ssize_t ldq = _whole_lines(K * g.Lr if need_dx else 1, z)
    cdef Py_ssize_t ldxb = _whole_lines(g.kw * C * g.planeb + g.kw - 1 + g.Wq if need_dx else 1, z)
    cdef Py_ssize_t ldxt = _whole_lines(C * g.Hp * g.Wq if need_dx else 1, z)
    cdef Py_ssize_t ldz = _whole_lines(g.Ho * g.Wo * K + g.Kp if act != ACT_LINEAR else 1, z)
    # one partial sum of dW and db per unit (not per thread), added in unit order
    cdef Py_ssize_t part = _whole_lines(max(g.T * g.Kp, g.kh * K * g.spanv if g.DT else 0), z)
    cdef floating *wt = NULL        # W^T: (K, taps)
    cdef Py_ssize_t *offx = NULL
    cdef floating *xp = NULL
    cdef floating *dpad = NULL
    cdef floating *dq = NULL
    cdef floating *dxb = NULL
    cdef floating *dxt = NULL
    cdef floating *dz = NULL
    cdef floating *dwl = NULL
    cdef floating *dws = NULL       # the units' dW summed
    cdef double *db_part = NULL
    # keep[b, s]: plane b reaches column s of the padded dx (all bits set), or not: (kw, Wq)
    # integers as wide as a number
    cdef void *keep = NULL
    cdef Py_ssize_t x_step = g.H * g.W * C, d_step = g.Ho * g.Wo * K
    cdef floating *dxp = &dx[0, 0, 0, 0] if need_dx else NULL
    cdef const floating *yp = &y[0, 0, 0, 0] if act != ACT_LINEAR else NULL
    # (w and dw are C-contiguous: tap t = (a, b, c)'s row of K numbers at t * K)
    cdef const floating *wf = &w[0, 0, 0, 0]
    cdef floating *dwf = &dw[0, 0, 0, 0]
    try:
        wt = <floating *>_scratch(K * g.T, sizeof(floating))
        offx = <Py_ssize_t *>_scratch(g.T, sizeof(Py_ssize_t))
        xp = <floating *>_scratch(T * lxp, sizeof(floating))
        dpad = <floating *>_scratch(T * ldpad, sizeof(floating))
        dq = <floating *>_scratch(T * ldq, sizeof(floating))
        dxb = <floating *>_scratch(T * ldxb, sizeof(floating))
        dxt = <floating *>_scratch(T * ldxt, sizeof(floating))
        dz = <floating *>_scratch(T * ldz, sizeof(floating))
        dwl = <floating *>_scratch(U * part, sizeof(floating), True)
        dws = <floating *>_scratch(part if g.DG or g.DT else 1, sizeof(floating))
        db_part = <double *>_scratch(U * K, sizeof(double), True)
        keep = _scratch((g.kw if need_dx else 1) * g.Wq, sizeof(floating), True)
        with nogil:
            for bb in range(g.kw if need_dx else 0):
                for s in range(bb, bb + g.Wo):
                    if floating is float:
                        (<int32_t *>keep)[bb * g.Wq + s] = -1
                    else:
                        (<int64_t *>keep)[bb * g.Wq + s] = -1
            for t in range(g.T):       # tap t = (a, b, c) writes plane (b, c) from row a on
                a, bb, c = t // (g.kw * C), (t // C) % g.kw, t % C
                for k in range(K):
                    wt[k * g.T + t] = wf[t * K + k]
                offx[t] = (bb * C + c) * g.planeb + a * g.Wo
            # one pool of tasks: the U units' dW and db first, then dx image by image (no sums
            # across images), so that a thread that finishes its units early, or starts late,
            # evens out on the small dx tasks at the end instead of waiting for a unit of images
            for i in prange(U + (N if need_dx else 0), schedule="dynamic", num_threads=T):
                tid = threadid()
                if i < U:
                    for n in range(unit_start(N, U, i), unit_start(N, U, i + 1)):
                        _dw_image(&dout[0, 0, 0, 0] + n * d_step,
                                  yp + n * d_step if yp != NULL else NULL,
                                  &x[0, 0, 0, 0] + n * x_step, dwl + i * part, db_part + i * K,
                                  xp + tid * lxp, dpad + tid * ldpad, dz + tid * ldz, act,
                                  (N - 1 - n) * x_step, (N - 1 - n) * d_step, g)
                else:
                    n = i - U
                    _dx_image(&dout[0, 0, 0, 0] + n * d_step,
                              yp + n * d_step if yp != NULL else NULL, wt, offx,
                              dxp + n * x_step, dq + tid * ldq, dxb + tid * ldxb,
                              dxt + tid * ldxt, dz + tid * ldz, keep, act, g)
            # the units' partial sums in unit order (``_parallel.pxd``)
            if g.DT:
                # dwp summed dW as (kh, K, spanv): tap t = (a, s) of filter k at
                # (a K + k) spanv + s
                sum_unit_parts(dwl, U, part, 1, g.kh * K * g.spanv, part, dws)
                for t in range(g.T):
                    a, j = t // span, t % span
                    for k in range(K):
                        dwf[t * K + k] = dws[(a * K + k) * g.spanv + j]
            elif g.DG == 0 or span < g.DG:
                sum_unit_parts(dwl, U, part, g.T, K, g.Kp, dwf)
            else:
                # dwr kept the remainder of a group of DG taps (b, c) of a kernel row in the last
                # vector of its first row, tap i's filter KB V + l at lane i * rm + l
                sum_unit_parts(dwl, U, part, 1, g.T * g.Kp, g.T * g.Kp, dws)
                for t in range(g.T):
                    j = t % span
                    for k in range(K):
                        src = t * g.Kp + k
                        if k >= kr and j < span // g.DG * g.DG:
                            src = (t - j % g.DG) * g.Kp + kr + j % g.DG * rm + k - kr
                        dwf[t * K + k] = dws[src]
            sum_unit_db(db_part, U, K, &db[0])
    finally:
        free(wt)
        free(offx)
        free(xp)
        free(dpad)
        free(dq)
        free(dxb)
        free(dxt)
        free(dz)
        free(dwl)
        free(dws)
        free(db_part)
        free(keep)


# -- when this path runs ---------------------------------------------------------------------------
# Measured on an AMD EPYC (Zen 5, family 26; 2 cores of a busy virtual machine, 2026-12-02;
# OpenBLAS runs its Haswell AVX2 kernels there), one thread, N = 32 (16 for the last three),
# "same" padding, forward + backward, blocked path time / im2col + GEMM time, for the avx512 /
# avx2 variants:
#   float32: C=1 K=4 k5 28x28 0.43/0.48   C=1 K=6 k5 0.42/0.52   C=1 K=16 k5 0.87/1.06
#            C=3 K=8 k3 0.43/0.41   C=3 K=16 k3 0.33/0.59   C=6 K=16 k5 14x14 (LeNet c2) 0.33/0.54
#            C=16 K=16 k5 0.36/0.31   C=6 K=32 k3 0.45/0.71   C=16 K=32 k3 0.43/0.82
#            C=32 K=32 k3 0.17/1.19   C=6 K=64 k3 1.02/1.31   C=32 K=64 k3 0.43/1.50
#            C=32 K=64 k3 32x32 (VGG-ish) 0.51/0.93   C=64 K=64 k3 16x16 0.31/0.93
#            C=64 K=128 k3 0.49/0.94
#   float64: C=1 K=4 k5 0.37/0.40   C=1 K=6 k5 0.38/0.55   C=3 K=16 k3 0.30/0.53
#            C=6 K=16 k5 0.20/0.64   C=16 K=16 k5 0.09/1.21   C=6 K=32 k3 0.54/0.91
#            C=16 K=32 k3 0.14/1.12   C=32 K=64 k3 32x32 0.58/1.08   C=64 K=128 k3 0.46/1.09
# (the thin layers the direct path took first then: blocked / direct 1.27/1.17 for C=1 K=4 and
# 1.02/0.89 for LeNet c1 in float32; measured again on 2026-12-03 after this path's dx rework,
# ``benchmarks/bench_thin_rule.py``, the blocked path wins from K=5 (float32) / K=3 (float64),
# so LeNet c1 runs here now: see the direct path's rule in ``_direct.pyx``).  keras_mnist's
# first layer (C=1, K=10, 28x28 "valid", no dx) is this path's too: blocked /
# direct 0.34 (avx512) / 0.42-0.49 (avx2), blocked / im2col + GEMM 0.37 / 0.43-0.52.
# With 32 registers the avx512 tiles win up to 128 filters; with 16 (avx2, and the default
# variant, which follows it unmeasured) the tiles are half as large and GEMM catches up
# sooner, at half as many filters in float64
# (a vector holds half as many numbers).  The rule: stride 1, no dilation, and K <= 128
# (avx512) or K <= 32 and C * K <= 512 in float32, K <= 16 and C * K <= 96 in float64 (the
# other variants); the planar copies one thread keeps for dx (dout, and the kw * C planes of
# dx, about Hp * Wo numbers each) within BLOCKED_BUDGET numbers.
cdef Py_ssize_t BLOCKED_BUDGET = 1 << 21


def uses_blocked_path(x_shape, w_shape, out_shape, strides, dtype, dilation=(1, 1)):
    """True when ``cytorch.functional`` runs conv2d with these shapes (``(N, H, W, C)``,
    ``(kh, kw, C, K)``, ``(N, H_out, W_out, K)``), strides, dilation and dtype on this path
    (the direct path of ``_direct.pyx`` is asked first, and takes what this rule turns down
    when it fits: ``fits_direct_path``).  The rule depends on the variant in
    use (``isa()``)."""
    cdef Py_ssize_t C = x_shape[3], kh = w_shape[0], kw = w_shape[1], K = w_shape[3]
    if tuple(strides) != (1, 1) or tuple(dilation) != (1, 1):
        return False
    if (kw * C + K) * (out_shape[1] + kh - 1) * out_shape[2] > BLOCKED_BUDGET:
        return False
    if isa() == "avx512":
        return K <= 128
    if np.dtype(dtype) == np.float32:
        return K <= 32 and C * K <= 512
    return K <= 16 and C * K <= 96


# -- entry points ---------------------------------------------------------------------------------
def conv2d_forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                   const floating[::1] b, floating[:, :, :, ::1] out, int pt, int pl,
                   int num_threads, activation="linear"):
    """Fill ``out`` (N, H_out, W_out, K) with f(the stride-1 correlation of x and w, plus b).

    ``pt``/``pl`` are the top/left zero padding; ``num_threads`` the OpenMP team size;
    ``activation`` f, a name of ``cytorch._kernels.EPILOGUES``.
    """
    check_conv_shapes(x.shape, w.shape, b.shape[0], out.shape, 1, 1, pt, pl)
    cdef int act = _activation_code(activation)
    cdef Plan g = _plan(x.shape, w.shape, out.shape[1], out.shape[2], pt, pl, sizeof(floating))
    _forward_all(x, w, b, out, &g, num_threads, act)


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
    cdef Plan g = _plan(x.shape, w.shape, dout.shape[1], dout.shape[2], pt, pl,
                        sizeof(floating))
    _backward_all(dout, x, w, dx, dw, db, &g, num_threads, act, y)


# -- inference: conv2d, then 2x2 max pooling, image by image ---------------------------------------
# (``conv2d_max_pool2d_forward``; twin ``cytorch.reference.conv2d_max_pool2d_forward``)
#
# A forward pass that no backward follows (``predict``, ``evaluate``) needs the conv's output
# only for the max pooling after it.  Written out whole, keras_mnist's first layer fills
# 256 x 24 x 24 x 10 floats (5.9 MB) per batch, which the pooling then reads back from memory.
# Here each thread writes one image's output (24 x 24 x 10 floats, 23 KB, in L1/L2) into its
# own scratch and pools it at once with the row pass of 2x2 pooling without winners
# (``cy_extreme_row`` of ``_pool2x2.h``, the code ``_pool.pyx`` runs for inference, compiled
# here in the same variants); only the pooled map, 4x smaller, goes to memory.
#
# The numbers are those of ``conv2d_forward`` followed by ``_pool.extreme_pool2d_forward``, bit
# for bit: the same ``_forward_image`` on the same image, the same comparisons in the same
# order (NaN: in a window's first cell it stays, elsewhere it never wins).  A ReLU is applied
# after the pooling, on 4x fewer values: max and ReLU commute exactly (the graph pass
# ``relu_after_pooling`` relies on the same); another activation runs in ``_forward_image``'s
# epilogue, before the pooling, as in the unfused layer.  An odd last row or column of the
# conv's output belongs to no window: it is computed, and dropped.
from ._epilogue cimport ACT_RELU

cdef extern from "_pool2x2.h" nogil:
    int cy_pool2x2_select(int variant)
    void cy_extreme_row_f(const float *a, const float *b, float *out, Py_ssize_t W_out,
                          Py_ssize_t C, int take_min, int relu) noexcept
    void cy_extreme_row_d(const double *a, const double *b, double *out, Py_ssize_t W_out,
                          Py_ssize_t C, int take_min, int relu) noexcept


cdef void _forward_pool_image(const floating *xn, const floating *wk, const floating *bk,
                              const Py_ssize_t *off, floating *outn, floating *yn,
                              floating *xq, floating *tile, int act, int relu,
                              const Plan *g) noexcept nogil:
    """outn (Ho // 2, Wo // 2, K) for one image: the max of every 2x2 window (stride 2) of its
    conv output (Ho, Wo, K), which ``_forward_image`` writes into the scratch yn; with
    ``relu``, relu of that max."""
    cdef Py_ssize_t i, K = g.K, W_pool = g.Wo // 2, row = g.Wo * g.K
    _forward_image(xn, wk, bk, off, yn, xq, tile, act, g)
    for i in range(g.Ho // 2):      # rows 2i and 2i + 1 -> pooled row i
        if floating is float:
            cy_extreme_row_f(yn + 2 * i * row, yn + (2 * i + 1) * row, outn + i * W_pool * K,
                             W_pool, K, 0, relu)
        else:
            cy_extreme_row_d(yn + 2 * i * row, yn + (2 * i + 1) * row, outn + i * W_pool * K,
                             W_pool, K, 0, relu)


def conv2d_max_pool2d_forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                              const floating[::1] b, floating[:, :, :, ::1] out,
                              Py_ssize_t H_out, Py_ssize_t W_out, int pt, int pl,
                              int num_threads, activation="linear"):
    """Fill ``out`` (N, H_out // 2, W_out // 2, K) with the 2x2 max pooling (stride 2) of
    f(the stride-1 correlation of x and w, plus b), whose output (N, H_out, W_out, K) is never
    stored whole: ``conv2d_forward`` then ``_pool.extreme_pool2d_forward``, the same bits.

    ``pt``/``pl`` are the top/left zero padding (bottom/right implied by H_out, W_out);
    ``num_threads`` the OpenMP team size; ``activation`` f, a name of
    ``cytorch._kernels.EPILOGUES`` (relu is applied after the pooling: the same numbers).
    """
    check_conv_shapes(x.shape, w.shape, b.shape[0], out.shape, 1, 1, pt, pl)
    if H_out < 2 or W_out < 2 or out.shape[1] != H_out // 2 or out.shape[2] != W_out // 2:
        raise ValueError(f"conv2d_max_pool2d kernel: out {tuple(out.shape)[:4]} must be the "
                         f"2x2 pooling of a conv output of at least 2x2, here {H_out}x{W_out}")
    cdef int act = _activation_code(activation)
    cdef int relu = act == ACT_RELU
    cdef Plan g = _plan(x.shape, w.shape, H_out, W_out, pt, pl, sizeof(floating))
    _forward_all(x, w, b, out, &g, num_threads, ACT_LINEAR if relu else act, True, relu)
