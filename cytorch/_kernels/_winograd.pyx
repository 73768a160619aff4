# cython: language_level=3
"""conv2d forward and backward by Winograd's F(2x2, 3x3) or F(4x4, 3x3) (m = 2 or 4 below), for
3x3 stride-1 layers with enough channels such as VGG's (its NumPy twins, which explain the
method step by step and the trade-off between the two tiles:
``cytorch.reference.conv2d_winograd_forward`` / ``_backward``; Lavin and Gray, CVPR 2016).
``winograd_tile`` holds the measured rule that picks m.

Layout contract, shared with the twins and with ``_conv.pyx``:

* ``x``: ``(N, H, W, C)`` channels-last, C-contiguous; ``w``: ``(3, 3, C, K)``; ``b``: ``(K,)``;
* stride 1, dilation 1; padding arrives resolved as top and left (``pt``, ``pl``); the output
  shape ``(N, H_out, W_out, K)`` implies the rest, and a cell outside the image reads as zero;
* output tile ``(ti, tj)`` is outputs ``m*ti .. m*ti + m - 1`` by ``m*tj .. m*tj + m - 1``;
  its (m + 2) x (m + 2) input patch starts at input row ``m*ti - pt`` and column ``m*tj - pl``.

Per group of tiles (a thread's share of its tile rows, sized to stay in cache):

    V[i, j] (tiles, C) = (B^T d B)[i, j]     input transform, C++-free C in ``_winograd.h``
    M[i, j] (tiles, K) = V[i, j] @ U[i, j]   (m + 2)^2 tile products (16 or 36), U = G g G^T
    out tile           = A^T M A + b         output transform (``_winograd.h``)

The tile products are a register-blocked kernel of their own, not BLAS: each is only (a few
hundred tiles) x C @ C x K, and OpenBLAS packed both operands of each again and zeroed M
before adding (VGG-ish layer, 32x32x32x32 -> 64 float32, forward + backward, one thread, AMD
EPYC Zen 5, avx2 with OpenBLAS's Haswell kernels: 27.1-28.6 ms with sgemm, 21.4-21.8 ms with
the kernel of ``_winograd.h``).  U, M and dU keep their rows padded to 64 bytes (zeros), so
the kernel runs whole vectors only.

Backward: dx is the same computation on dout with the kernel turned around (``w[::-1, ::-1]``
with C and K swapped, padding ``2 - pt`` and ``2 - pl``); dW is its adjoint, ``dW = G^T dU G``
with ``dU[i, j] = sum over tiles V[i, j]^T @ (A dY A^T)[i, j]`` (16 or 36 products per group,
added into a partial sum per work unit); db sums dout.  Each work unit runs a chunk of images at a
time through all three (dz = dout * f'(y) with db, then dU, then dx), so dz exists for one
chunk per thread, in cache, never for the whole batch: on the VGG-ish layer (32x32x32x32 -> 64,
float32, relu, one thread; AMD EPYC Zen 5) that took backward's peak NumPy memory from 14.3 to
6.4 MiB and its time down 4-10 % (avx512 and avx2; without an activation 0-3 %), against a
first pass over the whole batch's dz and then a second one for dx.  Partial sums are added
in unit order, so the result does not depend on which thread ran what.

F(4x4, 3x3) runs the same loops on 6x6 tiles: 36 products per 16 outputs instead of 64, and
less transform work per output too (VGG-ish layer above, relu, one thread, AMD EPYC Zen 3,
avx2, process CPU time, best of 15: forward 6.0 ms against F(2x2, 3x3)'s 8.4, forward +
backward 18.1 against 25.9), at 6-7 times F(2x2, 3x3)'s float32 rounding error (5.5e-7 to
8.5e-7 relative on that layer; ``tests/test_winograd.py``).

The transforms and products are compiled for AVX-512, AVX2 + FMA and the build's baseline
(``_winograd.h``, ``_isa.h``); ``isa()`` says which variant this process runs (avx2 and avx512
give the same bits; the baseline, without FMA, rounds each product of the tile products).
``cytorch.functional`` validates every argument; the entry points re-check that the shapes
agree, and every cell a transform or product reads or writes is either inside its array or a
scratch run of the right length, so no call can read or write out of bounds.
"""
import os
import threading

from cython cimport floating
from cython.parallel cimport prange, threadid

import numpy as np

from . import isa_functions
from ._blocked import uses_blocked_path
from ._conv import _activation_code, _check_like, _check_shapes, _units
from ._epilogue cimport ACT_LINEAR, apply_activation, cy_mathfn_select, derivative_db

cdef extern from "_winograd.h" nogil:
    int cy_isa_best()
    int cy_wino_select(int isa)
    void cy_wino_input_f(const float *const *p, float *V, Py_ssize_t vs,
                         Py_ssize_t C) noexcept
    void cy_wino_input_d(const double *const *p, double *V, Py_ssize_t vs,
                         Py_ssize_t C) noexcept
    void cy_wino_output_f(const float *M, Py_ssize_t ms, const float *bias, float *const *y,
                          Py_ssize_t K) noexcept
    void cy_wino_output_d(const double *M, Py_ssize_t ms, const double *bias,
                          double *const *y, Py_ssize_t K) noexcept
    void cy_wino_output_adjoint_f(const float *const *y, float *dM, Py_ssize_t ms,
                                  Py_ssize_t K) noexcept
    void cy_wino_output_adjoint_d(const double *const *y, double *dM, Py_ssize_t ms,
                                  Py_ssize_t K) noexcept
    void cy_wino_product_f(const float *A, Py_ssize_t ar, Py_ssize_t a_s, const float *B,
                           Py_ssize_t ldb, float *C, Py_ssize_t ldc, Py_ssize_t S,
                           Py_ssize_t rows, Py_ssize_t cols, int beta) noexcept
    void cy_wino_product_d(const double *A, Py_ssize_t ar, Py_ssize_t a_s, const double *B,
                           Py_ssize_t ldb, double *C, Py_ssize_t ldc, Py_ssize_t S,
                           Py_ssize_t rows, Py_ssize_t cols, int beta) noexcept
    # F(4x4, 3x3): the same signatures on 6x6 tiles
    void cy_wino4_input_f(const float *const *p, float *V, Py_ssize_t vs,
                          Py_ssize_t C) noexcept
    void cy_wino4_input_d(const double *const *p, double *V, Py_ssize_t vs,
                          Py_ssize_t C) noexcept
    void cy_wino4_output_f(const float *M, Py_ssize_t ms, const float *bias, float *const *y,
                           Py_ssize_t K) noexcept
    void cy_wino4_output_d(const double *M, Py_ssize_t ms, const double *bias,
                           double *const *y, Py_ssize_t K) noexcept
    void cy_wino4_output_adjoint_f(const float *const *y, float *dM, Py_ssize_t ms,
                                   Py_ssize_t K) noexcept
    void cy_wino4_output_adjoint_d(const double *const *y, double *dM, Py_ssize_t ms,
                                   Py_ssize_t K) noexcept


# -- which instruction set (see _kernels/__init__.py) -------------------------------------------
def _select_variant(int index):
    """Switch the transforms to variant ``index``; the index it then runs."""
    cy_mathfn_select(index)          # the fused epilogue's element functions (_epilogue.pxd)
    return cy_wino_select(index)


isa_variants, _select_isa, isa = isa_functions("the transforms", cy_isa_best(), _select_variant)


# -- when the Winograd path runs -----------------------------------------------------------------
# Measured with ``benchmarks/bench_winograd_rule.py --one-thread`` on an AMD EPYC (Zen 5, family
# 26, 2 cores of a busy virtual machine, 2026-12-02), 32 images 16x16, "same", forward +
# backward on one thread, process CPU time: Winograd time / the time of the path taken
# otherwise (im2col + GEMM; for C, K <= 4 the direct rule comes first and both are the direct
# path).  Two set-ups: the avx512 transforms with OpenBLAS's own choice of kernels
# (SkylakeX, AVX-512), and the avx2 transforms with OpenBLAS held to its Haswell (AVX2)
# kernels, as on a CPU without AVX-512:
#     float32     avx512 + SkylakeX BLAS                 avx2 + Haswell BLAS
#     C \ K  4    8    16   32   64   128      4    8    16   32   64   128
#     4     1.00 1.41 1.40 1.21 1.77 1.22     1.00 1.21 1.27 1.33 2.27 1.61
#     8     1.13 1.26 0.80 0.86 0.75 1.33     0.83 1.12 0.92 0.94 1.03 1.43
#     16    0.90 0.70 0.91 0.49 0.59 0.82     0.64 0.68 0.93 0.74 0.82 0.90
#     32    0.62 0.53 0.43 0.62 0.49 0.63     0.57 0.57 0.57 0.79 0.70 0.73
#     64    0.80 0.30 0.35 0.46 0.53 0.53     0.76 0.52 0.55 0.53 0.66 0.64
#     128   0.32 0.45 0.35 0.39 0.46 0.71     0.53 0.70 0.56 0.57 0.58 0.67
#     float64 (avx512 + SkylakeX BLAS), C = 8: 0.64 1.00 0.67 0.80 0.77 0.97; C >= 16: <= 0.79
# The GEMMs of Winograd are (tiles x C) @ (C x K): with few input channels each is too thin to
# pay for the transforms, while im2col's GEMM has 9 C.  Rule: at least 16 input channels in
# float32, 8 in float64 (where GEMM is slower per number and the transforms matter less), the
# same with both instruction sets.
WINOGRAD_MIN_C = {4: 16, 8: 8}     # itemsize -> input channels

# And enough outputs per filter (N H_out W_out): part of Winograd's work is paid once per call,
# whatever the batch (the filter transforms of w for the forward pass and dx, dW's transform
# and partial sums: 16 or 36 positions x C x K each), so on a few images the path taken
# otherwise wins.  Measured with ``benchmarks/bench_winograd_rule.py --outputs`` on an AMD EPYC
# (Zen 3, family 25 model 1, avx2; 2 cores of a busy virtual machine, 2026-12-04), one thread,
# process CPU time, "same" 3x3 convs with relu, float32, the layers of vgg_small and
# alexnet_small at 1-32 images and shapes between; ms, Winograd by the tile of the rule below
# against the blocked path and im2col + GEMM (the path this rule hands a layer to is GEMM,
# unless the blocked path's own rule takes it, which on avx2 means K <= 32, C K <= 512):
#     layer (outputs)                forward                  forward + backward
#                                  Winograd blocked GEMM      Winograd blocked GEMM
#     1 x 7x7 64 -> 64 (49)          0.129  0.068  0.083       0.576  0.225  0.244
#     2 x 8x8 64 -> 64 (128)         0.167  0.130  0.168       0.691  0.432  0.508
#     4 x 7x7 64 -> 64 (196)         0.237  0.206  0.288       0.933  0.670  0.838
#     4 x 7x7 48 -> 64 (196)         0.188  0.157  0.221       0.720  0.551  0.660
#     1 x 15x15 24 -> 48 (225)       0.094  0.080  0.082       0.348  0.256  0.255
#     4 x 8x8 32 -> 64 (256)         0.144  0.138  0.170       0.550  0.419  0.523
#     4 x 8x8 64 -> 64 (256)         0.240  0.270  0.322       0.948  0.836  0.995
#     1 x 16x16 32 -> 32 (256)       0.090  0.069  0.086       0.322  0.242  0.272
#     5 x 8x8 64 -> 64 (320)         0.273  0.283  0.397       1.071  0.955  1.205
#     8 x 7x7 64 -> 64 (392)         0.298  0.378  0.558       1.122  1.199  1.593
#     8 x 8x8 64 -> 64 (512)         0.302  0.433  0.623       1.170  1.454  1.887
#     1 x 16x16 16 -> 32 (256)       0.065  0.042  0.052       0.214  0.137  0.160
#     2 x 16x16 16 -> 32 (512)       0.087  0.069  0.090       0.267  0.234  0.286
#     3 x 16x16 16 -> 32 (768)       0.088  0.096  0.126       0.299  0.333  0.408
#     3 x 16x16 32 -> 16 (768)       0.085  0.097  0.146       0.290  0.337  0.493
#     1 x 32x32 16 -> 16 (1024)      0.091  0.073  0.108       0.280  0.274  0.367
#     2 x 32x32 16 -> 16 (2048)      0.093  0.131  0.203       0.334  0.481  0.697
# Against GEMM, Winograd wins the forward pass from about 150 outputs and forward + backward
# from about 250-300 (at 256: within 5 % of GEMM's forward, forward + backward 0.95-1.18 of
# it): one rule serves training and predict.  Against the blocked path, which is lean on thin
# layers, from about 700.  float64 (GEMM slower per number) agrees: 2 x 8x8 32 -> 64 (128)
# Winograd 0.54 ms against GEMM 0.45, 4 x 8x8 32 -> 64 (256) 0.82 against 0.86 (C = 8 needs
# more: 4 x 8x8 8 -> 64 (256) 0.33 against 0.26).  Before the backward's per-call costs were
# cut (dW's transform along rows of k, ``_scratch`` kept between calls) Winograd's backward
# took 1.5-3 times as long on such batches.  Rule: Winograd from WINOGRAD_MIN_OUTPUTS outputs
# per filter, from WINOGRAD_MIN_OUTPUTS_BLOCKED when the blocked path would take the layer
# (whose rule depends on the variant; these numbers do not: AVX-512 was not measured).  The
# blocked path is the fastest of all on most layers below these (K = 64 too), where its rule,
# measured on 32 images, sends them to GEMM instead.
WINOGRAD_MIN_OUTPUTS = 256
WINOGRAD_MIN_OUTPUTS_BLOCKED = 768

# CYTORCH_WINOGRAD (private, read at import; ``_set_mode`` for the tests): "auto" runs the
# measured rule, "always" every 3x3 stride-1 undilated conv, "never" none.
_MODES = ("auto", "always", "never")


def _set_mode(mode):
    """Choose when the Winograd path runs ("auto", "always" or "never"); returns the mode that
    was in force, so a test can put it back."""
    global _mode
    if mode not in _MODES:
        raise ValueError(f"CYTORCH_WINOGRAD={mode!r} is not one of {list(_MODES)}")
    old, _mode = _mode, mode
    return old


_mode = "auto"
_set_mode(os.environ.get("CYTORCH_WINOGRAD", "").strip().lower() or "auto")


def mode():
    """When the Winograd path runs: "auto" (the measured rule), "always" or "never"."""
    return _mode


def uses_winograd_path(x_shape, w_shape, out_shape, strides, dtype, dilation=(1, 1)):
    """True when ``cytorch.functional`` runs conv2d with these shapes (``(N, H, W, C)``,
    ``(3, 3, C, K)``, ``(N, H_out, W_out, K)``), strides, dilation and dtype on this path: the
    measured rules above (channels, then outputs per filter against the path taken otherwise,
    which is the blocked path's rule's to say)."""
    if _mode == "never" or tuple(w_shape[:2]) != (3, 3) or tuple(strides) != (1, 1) \
            or tuple(dilation) != (1, 1):
        return False
    if _mode == "always":
        return True
    if x_shape[3] < WINOGRAD_MIN_C.get(np.dtype(dtype).itemsize, 16):
        return False
    outputs = out_shape[0] * out_shape[1] * out_shape[2]
    if outputs >= WINOGRAD_MIN_OUTPUTS_BLOCKED:
        return True
    return outputs >= WINOGRAD_MIN_OUTPUTS and not uses_blocked_path(
        x_shape, w_shape, out_shape, strides, dtype, dilation)


# -- which tile: F(2x2, 3x3) or F(4x4, 3x3) ------------------------------------------------------
# Measured with ``benchmarks/bench_winograd_rule.py --tiles`` on an AMD EPYC (Zen 3, family 25
# model 1, AVX2 + FMA, no AVX-512: the avx2 variant; 2 cores of a busy virtual machine,
# 2026-12-04), forward + backward of "same" 3x3 convs on one thread, process CPU time, float32:
# F(4x4, 3x3)'s time over F(2x2, 3x3)'s for C, K in 8 ... 128 (5 x 5 cells, below 1 the big
# tile wins):
#     32 images 16x16: 0.54-0.82      8 images 32x32: 0.54-0.84    32 images 8x8: 0.65-1.08
#     2 images 32x32:  0.67-1.08      32 images 7x7:  0.72-0.97 (C, K in 16, 64, 128)
#     32 images 6x6:   1.02-1.46      32 images 5x5:  1.01-1.32     32 images 4x4: 0.82-1.35
#     1 image 32x32:   0.84-1.29      1 image 16x16:  0.95-1.50     4 images 8x8:  1.01-1.44
# The big tile does 36 multiplications per 16 outputs where the small one does 64, but a
# ragged edge costs it more (an output of 6 rows takes 2 tile rows, 8 rows: as many
# multiplications as F(2x2, 3x3)'s 3 tile rows), and its filter transforms (of w for the
# forward pass and dx, of dU for dW: per C x K, 36 positions against 16) are paid per call,
# whatever the batch: with few outputs per channel (4 images 8x8, 1 image 16x16) they cost
# more than the big tile saves.  That was before the backward's per-call costs were cut (dW's
# transform along rows of k, ``_scratch`` kept between calls); measured
# again after (same machine and command, 2026-12-04 evening, C, K in 16, 32, 64, 128):
#     4 images 8x8 (256 outputs per filter): 0.89-1.16   1 image 16x16 (256):  0.88-1.14
#     6 images 8x8 (384):                    0.82-1.02   8 images 8x8 (512):   0.74-1.11
#     2 images 16x16 (512):                  0.76-1.15   32 images 4x4 (512):  0.75-1.18
#     1 image 32x32 (1024):                  0.69-1.16   32 images 8x8 (2048): 0.62-0.82
# (32 images 8x8, 128 -> 128: F(4x4, 3x3) 0.72 of F(2x2, 3x3), where it had been 1.3: its
# backward faulted in 5 MiB of fresh scratch pages per call.)  Rule: F(4x4, 3x3) when its tile
# products are at most 0.6 of F(2x2, 3x3)'s (the ragged edge) and the batch has at least 384
# outputs per filter (N H_out W_out), else F(2x2, 3x3).  float64, before the cut (C, K in 8,
# 32, 128): 32 images 16x16 0.59-0.87, 8x8 0.63-0.93, 4x4 0.68-1.13, 1 image 32x32
# 0.74-1.10; after, 4 images 8x8 32 -> 64: 0.88, 4 images 7x7 64 -> 64: 0.89.
WINOGRAD4_MAX_PRODUCTS = 0.6
WINOGRAD4_MIN_OUTPUTS = 384

_TILES = ("auto", 2, 4)
_tile = "auto"


def _set_tile(tile):
    """Private, for the tests and benchmarks: run F(2x2, 3x3) (2), F(4x4, 3x3) (4) or the
    measured rule ("auto") from now on; returns the setting that was in force."""
    global _tile
    if tile not in _TILES:
        raise ValueError(f"Winograd tile {tile!r} is not one of {list(_TILES)}")
    old, _tile = _tile, tile
    return old


def winograd_tile(x_shape, w_shape, out_shape, dtype):
    """The output tile size m of F(m x m, 3x3) the Winograd path runs for these shapes
    (``(N, H, W, C)``, ``(3, 3, C, K)``, ``(N, H_out, W_out, K)``): 2 or 4 (the measured rule
    above, or the tile ``_set_tile`` forces)."""
    if _tile != "auto":
        return _tile
    N, H_out, W_out = out_shape[0], out_shape[1], out_shape[2]
    products4 = 36 * (-(-H_out // 4)) * (-(-W_out // 4))
    products2 = 16 * (-(-H_out // 2)) * (-(-W_out // 2))
    if products4 <= WINOGRAD4_MAX_PRODUCTS * products2 \
            and N * H_out * W_out >= WINOGRAD4_MIN_OUTPUTS:
        return 4
    return 2


# -- the kernel ---------------------------------------------------------------------------------
# Numbers (V and M together) of one thread's group of tiles: 512 KiB in float32, half the L2
# cache of a Zen 5 core (about 85 tiles of the VGG-ish layer, 32 -> 64 channels).  Measured with
# the tile products of _winograd.h (VGG-ish fwd + bwd, one thread, AMD EPYC Zen 5, best of 25,
# ms): 1 << 16: 6.3 + 13.3 (avx2), 4.2 + 8.1 (avx512); 1 << 17: 6.6 + 12.8, 4.1 + 7.8;
# 1 << 18: 6.5 + 13.0, 4.2 + 8.2 -- flat within the noise; the smaller scratch decides.
cdef Py_ssize_t GROUP_BUDGET = 1 << 17
cdef Py_ssize_t DW_GROUP_BUDGET = 1 << 17


cdef struct Wino:
    # one stride-1 3x3 correlation of an image (H, W, Ci) -> (Ho, Wo, Ko); output (o, ow) reads
    # input row o + a - pt and column ow + b - pl for taps a, b < 3 (outside: zero)
    Py_ssize_t H, W, Ci, Ho, Wo, Ko, pt, pl
    Py_ssize_t m, a, P         # output tile m x m (2 or 4), input tile a x a (m + 2), P = a^2
    Py_ssize_t th, tw, tiles   # output tiles per image: ceil(Ho / m) x ceil(Wo / m)
    Py_ssize_t Kp              # Ko rounded up to 64 bytes: the rows of U, M and dU


cdef inline void input_transform(const floating **p, floating *V, Py_ssize_t vs,
                                 Py_ssize_t C, Py_ssize_t m) noexcept nogil:
    if m == 2:
        if floating is float:
            cy_wino_input_f(<const float *const *>p, V, vs, C)
        else:
            cy_wino_input_d(<const double *const *>p, V, vs, C)
    else:
        if floating is float:
            cy_wino4_input_f(<const float *const *>p, V, vs, C)
        else:
            cy_wino4_input_d(<const double *const *>p, V, vs, C)


cdef inline void output_transform(const floating *M, Py_ssize_t ms, const floating *bias,
                                  floating **y, Py_ssize_t K, Py_ssize_t m) noexcept nogil:
    if m == 2:
        if floating is float:
            cy_wino_output_f(M, ms, bias, <float *const *>y, K)
        else:
            cy_wino_output_d(M, ms, bias, <double *const *>y, K)
    else:
        if floating is float:
            cy_wino4_output_f(M, ms, bias, <float *const *>y, K)
        else:
            cy_wino4_output_d(M, ms, bias, <double *const *>y, K)


cdef inline void output_adjoint(const floating **y, floating *dM, Py_ssize_t ms,
                                Py_ssize_t K, Py_ssize_t m) noexcept nogil:
    if m == 2:
        if floating is float:
            cy_wino_output_adjoint_f(<const float *const *>y, dM, ms, K)
        else:
            cy_wino_output_adjoint_d(<const double *const *>y, dM, ms, K)
    else:
        if floating is float:
            cy_wino4_output_adjoint_f(<const float *const *>y, dM, ms, K)
        else:
            cy_wino4_output_adjoint_d(<const double *const *>y, dM, ms, K)


cdef inline void product(const floating *A, Py_ssize_t ar, Py_ssize_t a_s, const floating *B,
                         Py_ssize_t ldb, floating *C, Py_ssize_t ldc, Py_ssize_t S,
                         Py_ssize_t rows, Py_ssize_t cols, bint beta) noexcept nogil:
    """C[r, :cols] = beta C + sum over s < S of A[r * ar + s * a_s] * B[s, :cols] (_winograd.h)"""
    if floating is float:
        cy_wino_product_f(A, ar, a_s, B, ldb, C, ldc, S, rows, cols, beta)
    else:
        cy_wino_product_d(A, ar, a_s, B, ldb, C, ldc, S, rows, cols, beta)


cdef struct Cursor:
    # tile s of the batch as (image n, tile row ti, tile column tj), stepped one tile at a time
    # (two divisions per tile, and sixteen bounds tests, were as much work as transforming
    # the tile itself when C is 32)
    Py_ssize_t n, ti, tj


cdef inline void _cursor_at(Cursor *c, Py_ssize_t s, const Wino *g) noexcept nogil:
    c.n = s // g.tiles
    s = s - c.n * g.tiles
    c.ti = s // g.tw
    c.tj = s - c.ti * g.tw


cdef inline void _cursor_next(Cursor *c, const Wino *g) noexcept nogil:
    c.tj += 1
    if c.tj == g.tw:
        c.tj = 0
        c.ti += 1
        if c.ti == g.th:
            c.ti = 0
            c.n += 1


cdef void _transform_inputs(const floating *x, floating *V, const floating *zeros,
                            Py_ssize_t s_lo, Py_ssize_t nt, const Wino *g) noexcept nogil:
    """V (P, nt, Ci) for tiles s_lo <= s < s_lo + nt (numbered over the whole batch)."""
    cdef const floating *p[36]
    cdef const floating *base
    cdef Cursor cur
    cdef Py_ssize_t t, i, j, ih, iw, ih0, iw0, Ci = g.Ci, rs = g.W * g.Ci, m = g.m, a = g.a
    _cursor_at(&cur, s_lo, g)
    for t in range(nt):
        ih0 = m * cur.ti - g.pt
        iw0 = m * cur.tj - g.pl
        if 0 <= ih0 and ih0 + a <= g.H and 0 <= iw0 and iw0 + a <= g.W:   # inside the image
            base = x + ((cur.n * g.H + ih0) * g.W + iw0) * Ci
            for i in range(a):
                for j in range(a):
                    p[a * i + j] = base + i * rs + j * Ci
        else:
            for i in range(a):
                ih = ih0 + i
                for j in range(a):
                    iw = iw0 + j
                    if 0 <= ih < g.H and 0 <= iw < g.W:
                        p[a * i + j] = x + ((cur.n * g.H + ih) * g.W + iw) * Ci
                    else:             # padding, or past a ragged edge
                        p[a * i + j] = zeros
        input_transform(p, V + t * Ci, nt * Ci, Ci, m)
        _cursor_next(&cur, g)


cdef inline void _tile_outputs(floating *base, floating *sink, floating **y, const Cursor *c,
                               const Wino *g) noexcept nogil:
    """The m x m output cells of the cursor's tile in ``y`` (``sink`` for those past a ragged
    edge)."""
    cdef Py_ssize_t p, q, oh, ow, m = g.m
    for p in range(m):
        oh = m * c.ti + p
        for q in range(m):
            ow = m * c.tj + q
            if oh < g.Ho and ow < g.Wo:
                y[m * p + q] = base + ((c.n * g.Ho + oh) * g.Wo + ow) * g.Ko
            else:
                y[m * p + q] = sink


cdef inline Py_ssize_t _row_start(Py_ssize_t q, const Wino *g) noexcept nogil:
    """Where the output rows of tile row q (numbered over the whole batch) begin in out."""
    return ((q // g.th) * g.Ho + g.m * (q % g.th)) * g.Wo * g.Ko


cdef void _correlate_tiles(const floating *x, const floating *U, const floating *bias,
                           floating *out, floating *V, floating *M, floating *sink,
                           const floating *zeros, Py_ssize_t s_lo, Py_ssize_t s_hi,
                           Py_ssize_t group, const Wino *g, int act) noexcept nogil:
    """Output tiles s_lo <= s < s_hi (whole tile rows), ``group`` at a time: transform, P
    products, transform; then the activation f (``_epilogue.pxd``) on the output rows the group
    completed, while they are in cache.  (Tiles run row by row, so the rows completed so far
    are one run of out: one call per group rather than one per m x m cell of K numbers, which
    would be all loop tail and call.)"""
    cdef floating *y[16]
    cdef Cursor cur
    cdef Py_ssize_t s = s_lo, nt, t, xi, Ci = g.Ci, Ko = g.Ko, Kp = g.Kp
    cdef Py_ssize_t done, upto                   # tile rows activated so far, and now
    if s_lo >= s_hi:                             # (no tiles: nothing to write, no g.tw)
        return
    done = s_lo // g.tw
    while s < s_hi:
        nt = min(group, s_hi - s)
        _transform_inputs(x, V, zeros, s, nt, g)
        for xi in range(g.P):    # M[xi] (nt, Kp) = V[xi] (nt, Ci) @ U[xi] (Ci, Kp)
            product(V + xi * nt * Ci, Ci, 1, U + xi * Ci * Kp, Kp, M + xi * nt * Kp, Kp, Ci,
                    nt, Kp, False)
        _cursor_at(&cur, s, g)
        for t in range(nt):
            _tile_outputs(out, sink, y, &cur, g)
            output_transform(M + t * Kp, nt * Kp, bias, y, Ko, g.m)
            _cursor_next(&cur, g)
        s += nt
        upto = s // g.tw
        if act != ACT_LINEAR and upto > done:
            apply_activation(out + _row_start(done, g), out + _row_start(done, g),
                             _row_start(upto, g) - _row_start(done, g), act)
            done = upto


cdef void _dw_tiles(const floating *x, const floating *dout, floating *dU, floating *V,
                    floating *M, const floating *zeros, Py_ssize_t s_lo, Py_ssize_t s_hi,
                    Py_ssize_t group, bint beta, const Wino *g) noexcept nogil:
    """dU (P, Ci, Kp) = beta dU + the sum over tiles s_lo <= s < s_hi of V^T @ (A dY A^T) per
    position (beta False: the first group overwrites dU, True: adds its sum to it, so dU is a
    sum of per-group sums, in order)."""
    cdef floating *y[16]
    cdef Cursor cur
    cdef Py_ssize_t s = s_lo, nt, t, xi, k, Ci = g.Ci, Ko = g.Ko, Kp = g.Kp
    while s < s_hi:
        nt = min(group, s_hi - s)
        _transform_inputs(x, V, zeros, s, nt, g)
        _cursor_at(&cur, s, g)
        for t in range(nt):
            # dY past a ragged edge is zero: those outputs were thrown away
            _tile_outputs(<floating *>dout, <floating *>zeros, y, &cur, g)
            output_adjoint(<const floating **>y, M + t * Kp, nt * Kp, Ko, g.m)
            _cursor_next(&cur, g)
        if Kp > Ko:              # the padding columns: zeros (dU's are never read)
            for t in range(g.P * nt):
                for k in range(Ko, Kp):
                    M[t * Kp + k] = 0
        for xi in range(g.P):    # dU[xi] (Ci, Kp) += V[xi]^T (Ci, nt) @ dM[xi] (nt, Kp)
            product(V + xi * nt * Ci, 1, Ci, M + xi * nt * Kp, Kp, dU + xi * Ci * Kp, Kp, nt,
                    Ci, Kp, beta)
        beta = True
        s += nt


cdef void _backward_unit(const floating *x, const floating *dout, const floating *y,
                         const floating *U2, const floating *no_bias, floating *dx,
                         floating *dU, double *db_part, floating *dz, floating *V, floating *M,
                         floating *sink, const floating *zeros, Py_ssize_t n_lo,
                         Py_ssize_t n_hi, Py_ssize_t chunk, Py_ssize_t group,
                         Py_ssize_t group_dx, int act, const Wino *g,
                         const Wino *gx) noexcept nogil:
    """One work unit (images n_lo <= n < n_hi), ``chunk`` images at a time: dz = dout * f'(y)
    and db in one pass over the chunk's dout (``_epilogue.pxd``; dz is dout itself when f is
    linear), then the chunk's share of dU, then unless dx is NULL the chunk's dx, the
    correlation of dz with the kernel turned around (transform U2, geometry gx) -- while the
    chunk's dz is still in cache, and without a dz of the whole batch's size."""
    cdef Py_ssize_t n = n_lo, nc, per_image = g.Ho * g.Wo * g.Ko, x_image = g.H * g.W * g.Ci
    cdef const floating *d
    cdef bint beta = False
    while n < n_hi:
        nc = min(chunk, n_hi - n)
        derivative_db(dz, dout + n * per_image, y + n * per_image if y != NULL else NULL,
                      nc * g.Ho * g.Wo, g.Ko, act, db_part)
        d = dout + n * per_image
        if act != ACT_LINEAR:
            d = dz
        _dw_tiles(x + n * x_image, d, dU, V, M, zeros, 0, nc * g.tiles, group, beta, g)
        beta = True
        if dx != NULL:
            _correlate_tiles(d, U2, no_bias, dx + n * x_image, V, M, sink, zeros, 0,
                             nc * gx.tiles, group_dx, gx, ACT_LINEAR)
        n += nc


# G of F(2x2, 3x3) and of F(4x4, 3x3) (the twin's WINOGRAD_G and WINOGRAD4_G), C arrays (a
# module-level memoryview was read through the module's globals at every use: the final dW
# transform took 1.5 % of a VGG-ish step, run serially)
cdef double _G2[4][3]
cdef double _G4[6][3]
for _i, _row in enumerate([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]):
    for _j in range(3):
        _G2[_i][_j] = _row[_j]
# (float literals: Cython folds 1 / 6 as C integer division, 0, under cdivision)
for _i, _row in enumerate([[1.0 / 4, 0, 0], [-1.0 / 6, -1.0 / 6, -1.0 / 6],
                           [-1.0 / 6, 1.0 / 6, -1.0 / 6], [1.0 / 24, 1.0 / 12, 1.0 / 6],
                           [1.0 / 24, -1.0 / 12, 1.0 / 6], [0, 0, 1]]):
    for _j in range(3):
        _G4[_i][_j] = _row[_j]


cdef inline const double *_g_of(Py_ssize_t m) noexcept nogil:
    """G of F(m x m, 3x3), (m + 2) x 3, row-major."""
    return &_G2[0][0] if m == 2 else &_G4[0][0]


# The scratch of a call (the filter transforms U and U2, dW's partial sums dU, the groups' V
# and M) comes from buffers each thread keeps between calls, grown when a call needs more:
# fresh arrays of a few MiB every call went back to the system when freed (glibc trims the top
# of its heap), so the kernel faulted their pages in again on every call (AMD EPYC Zen 3, avx2,
# one thread, backward of 4 x 8 x 8 x 32 -> 64: 180-200 page faults and 0.4-0.8 ms of system
# time per call, more than the 0.2-0.4 ms of the computation; 32 x 8 x 8 x 128 -> 128 by
# F(4x4, 3x3): 1,400-2,700 faults, 4-5 ms).  A thread keeps at most one of each at the largest
# size it ran (a predict worker's go with its thread).
_kept = threading.local()


def _scratch(name, shape, dtype):
    """An uninitialised C-contiguous array ``shape`` of ``dtype`` for this call's ``name``,
    cut from this thread's buffer of that name (two scratch arrays of one call need two
    names)."""
    cdef Py_ssize_t count = 1, d
    for d in shape:
        count *= d
    nbytes = count * np.dtype(dtype).itemsize
    buffers = getattr(_kept, "buffers", None)
    if buffers is None:
        buffers = _kept.buffers = {}
    buf = buffers.get(name)
    if buf is None or buf.nbytes < nbytes:
        buf = buffers[name] = np.empty(max(nbytes, 64), dtype=np.uint8)
    return buf[:nbytes].view(dtype).reshape(shape)


def _padded(Py_ssize_t K, itemsize):
    """K rounded up to a whole number of 64-byte rows (the product's vectors never straddle a
    row's end: _winograd.h)."""
    cdef Py_ssize_t L = 64 // itemsize
    return (K + L - 1) // L * L


def _filter_transform(const floating[:, :, :, ::1] w, bint turn, Py_ssize_t m=2, name=None):
    """U (P, C, Kp) = G g G^T for every (c, k), G of F(m x m, 3x3) and P = (m + 2)^2, computed
    in double and rounded once (columns K <= k < Kp, Kp = ``_padded(K)``, zero); with ``turn``
    the kernel of dx instead: (P, K, Cp) from ``w[::-1, ::-1]`` with C and K swapped."""
    if turn:     # a copy of w turned around, so that both write U a row at a time
        return _filter_transform(
            np.ascontiguousarray(np.asarray(w)[::-1, ::-1].transpose(0, 1, 3, 2)), False, m,
            name)
    cdef Py_ssize_t C = w.shape[2], K = w.shape[3], c, k, i, j, b, n = m + 2
    cdef const double *G = _g_of(m)
    dtype = np.float32 if floating is float else np.float64
    cdef Py_ssize_t Kp = _padded(K, w.itemsize)
    if name is None:
        U = np.zeros((n * n, C, Kp), dtype=dtype)
    else:
        U = _scratch(name, (n * n, C, Kp), dtype)
        U[:, :, K:] = 0              # the loops below write every other number
    cdef floating[:, :, ::1] Uv = U
    # tmp = G g (n x 3) for one channel c and every k: the loops over k read rows of w and
    # write rows of U (per (c, k), with 36 scattered writes, F(4x4, 3x3)'s transform took
    # 2.7 ms for 128 x 128 channels, now 0.5); each number is summed in the same order
    cdef double[:, :, ::1] tmp = np.empty((n, 3, K), dtype=np.float64)
    cdef const floating *r0
    cdef const floating *r1
    cdef const floating *r2
    cdef double *t
    cdef floating *u
    cdef double s
    with nogil:
        for c in range(C):
            for i in range(n):
                for b in range(3):
                    r0, r1, r2 = &w[0, b, c, 0], &w[1, b, c, 0], &w[2, b, c, 0]
                    t = &tmp[i, b, 0]
                    for k in range(K):
                        s = 0
                        s = s + G[3 * i] * r0[k]
                        s = s + G[3 * i + 1] * r1[k]
                        s = s + G[3 * i + 2] * r2[k]
                        t[k] = s
            for i in range(n):               # U = tmp G^T (n x n)
                for j in range(n):
                    u = &Uv[n * i + j, c, 0]
                    for k in range(K):
                        s = 0
                        for b in range(3):
                            s = s + tmp[i, b, k] * G[3 * j + b]
                        u[k] = <floating>s
    return U


def _group(Py_ssize_t Ci, Py_ssize_t Ko, Py_ssize_t tiles_per_unit, Py_ssize_t budget,
           Py_ssize_t P=16):
    return max(1, min(tiles_per_unit, budget // (P * (Ci + Ko))))


cdef Wino _wino(Py_ssize_t H, Py_ssize_t W, Py_ssize_t Ci, Py_ssize_t Ho, Py_ssize_t Wo,
                Py_ssize_t Ko, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t itemsize, Py_ssize_t m):
    cdef Wino g
    g.H, g.W, g.Ci, g.Ho, g.Wo, g.Ko, g.pt, g.pl = H, W, Ci, Ho, Wo, Ko, pt, pl
    g.m, g.a, g.P = m, m + 2, (m + 2) * (m + 2)
    g.th, g.tw = (Ho + m - 1) // m, (Wo + m - 1) // m
    g.tiles = g.th * g.tw
    g.Kp = _padded(Ko, itemsize)
    return g


cdef _correlate(const floating[:, :, :, ::1] x, const floating[:, :, ::1] U,
                const floating[::1] bias, floating[:, :, :, ::1] out, Py_ssize_t pt,
                Py_ssize_t pl, int num_threads, int act, Py_ssize_t m):
    """out = f(the 3x3 correlation of x with the filter whose transform is U, plus bias), by
    F(m x m, 3x3)."""
    dtype = np.float32 if floating is float else np.float64
    cdef Wino g = _wino(x.shape[1], x.shape[2], x.shape[3], out.shape[1], out.shape[2],
                        out.shape[3], pt, pl, sizeof(floating), m)
    cdef Py_ssize_t R = x.shape[0] * g.th, T, U_, u, group, Ci = g.Ci, Ko = g.Ko
    cdef Py_ssize_t[::1] starts
    # work units of whole tile rows (R of them in the batch), so that one image has work for
    # every thread too; each output is computed the same way whichever unit holds its tile
    T, U_, starts = _units(R, num_threads)
    group = _group(Ci, Ko, (R + U_ - 1) // U_ * g.tw, GROUP_BUDGET, g.P)
    cdef floating[:, ::1] V = _scratch("V", (T, g.P * group * Ci), dtype)
    cdef floating[:, ::1] M = _scratch("M", (T, g.P * group * g.Kp), dtype)
    cdef floating[:, ::1] sink = _scratch("sink", (T, Ko), dtype)
    cdef floating[::1] zeros = np.zeros(Ci, dtype=dtype)
    with nogil:
        for u in prange(U_, schedule="dynamic", num_threads=T):
            _correlate_tiles(&x[0, 0, 0, 0], &U[0, 0, 0], &bias[0], &out[0, 0, 0, 0],
                             &V[threadid(), 0], &M[threadid(), 0], &sink[threadid(), 0],
                             &zeros[0], starts[u] * g.tw, starts[u + 1] * g.tw, group, &g, act)


def _check_3x3(w):
    if w.shape[0] != 3 or w.shape[1] != 3:
        raise ValueError(f"conv2d kernel: bad geometry for Winograd F(m x m, 3x3): w must be "
                         f"(3, 3, C, K), got {tuple(w.shape[:4])}")


def _tile_of(tile, x, w, out):
    """The output tile size m to run: ``tile`` (2 or 4), or the rule's when None."""
    if tile is None:
        return winograd_tile(tuple(x.shape[:4]), tuple(w.shape[:4]), tuple(out.shape[:4]),
                             np.float32 if x.itemsize == 4 else np.float64)
    if tile != 2 and tile != 4:
        raise ValueError(f"conv2d kernel: tile must be 2 (F(2x2, 3x3)), 4 (F(4x4, 3x3)) or "
                         f"None (the rule's), got {tile!r}")
    return tile


def conv2d_forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                   const floating[::1] b, floating[:, :, :, ::1] out, int pt, int pl,
                   int num_threads, activation="linear", tile=None):
    """Fill ``out`` (N, H_out, W_out, K) with f(the 3x3 stride-1 correlation of x and w, plus
    b).  ``pt``/``pl`` are the top/left zero padding; ``num_threads`` the OpenMP team size;
    ``activation`` f, a name of ``cytorch._kernels.EPILOGUES``; ``tile`` the output tile size
    m of F(m x m, 3x3), 2 or 4 (None: ``winograd_tile``'s choice).
    """
    _check_shapes(x, w, b, out, 1, 1, pt, pl)
    _check_3x3(w)
    cdef int act = _activation_code(activation)
    cdef Py_ssize_t m = _tile_of(tile, x, w, out)
    cdef floating[:, :, ::1] U = _filter_transform(w, False, m, "U")
    _correlate(x, U, b, out, pt, pl, num_threads, act, m)


def conv2d_backward(const floating[:, :, :, ::1] dout, const floating[:, :, :, ::1] x,
                    const floating[:, :, :, ::1] w, floating[:, :, :, ::1] dx,
                    floating[:, :, :, ::1] dw, floating[::1] db, int pt, int pl,
                    int num_threads, activation="linear", const floating[:, :, :, ::1] y=None,
                    tile=None):
    """Fill ``dx`` (like x; skipped when None), ``dw`` (like w) and ``db`` (K,) from
    ``dz = dout * f'(y)`` (N, H_out, W_out, K), ``y`` the forward output (read when the
    activation f is not linear); db is accumulated in double precision.

    Per work unit, a few images (a chunk) at a time: dz and db (one pass over dout,
    ``_epilogue.pxd``), the chunk's share of dU, and its dx, the correlation of dz with the
    kernel turned around, while dz is in cache.  ``tile``: as ``conv2d_forward``'s (the rule
    chooses from the forward pass's shapes, so both passes run the same tile)."""
    _check_shapes(x, w, db, dout, 1, 1, pt, pl)
    _check_3x3(w)
    cdef int act = _activation_code(activation, y, dout)
    if dx is not None:
        _check_like(dx, x, "dx", "x")
    _check_like(dw, w, "dw", "w")
    dtype = np.float32 if floating is float else np.float64
    cdef Py_ssize_t N = x.shape[0], C = x.shape[3], K = w.shape[3]
    cdef Py_ssize_t m = _tile_of(tile, x, w, dout)
    cdef Wino g = _wino(x.shape[1], x.shape[2], C, dout.shape[1], dout.shape[2], K, pt, pl,
                        sizeof(floating), m)
    # dx: dz correlated with the kernel turned around, padded by 2 - pt and 2 - pl
    cdef Wino gx = _wino(g.Ho, g.Wo, K, g.H, g.W, C, 2 - pt, 2 - pl, sizeof(floating), m)
    cdef Py_ssize_t P = g.P
    cdef Py_ssize_t T, U_, u, chunk, group, group_dx, i, j, a, b_, c, k
    cdef Py_ssize_t[::1] starts
    T, U_, starts = _units(N, num_threads)
    # a chunk: the fewest images whose tiles fill one group of dW's GEMMs (as thick as they
    # were when dz was a whole-batch array), at most a unit's images
    # dW's groups hold as many tiles as F(2x2, 3x3)'s whatever the tile (P = 16 here): each
    # group reads and writes the unit's dU sum (P x C x K) once, and with F(4x4, 3x3)'s P
    # in the budget (2.25 times fewer tiles) dW was bound by that traffic at 128 channels
    # (32 images 8x8x128 -> 128, one thread, AMD EPYC Zen 3: 10.0 ms, then 7.1)
    group = _group(C, K, (N + U_ - 1) // U_ * g.tiles, DW_GROUP_BUDGET, 16)
    chunk = min((group + g.tiles - 1) // g.tiles, (N + U_ - 1) // U_)
    group = _group(C, K, chunk * g.tiles, DW_GROUP_BUDGET, 16)
    group_dx = _group(K, C, chunk * gx.tiles, GROUP_BUDGET, P)
    cdef floating[:, ::1] V = _scratch("V", (T, P * max(group * C, group_dx * K)), dtype)
    cdef floating[:, ::1] M = _scratch("M", (T, P * max(group * g.Kp, group_dx * gx.Kp)),
                                       dtype)
    cdef floating[:, ::1] sink = _scratch("sink", (T, C), dtype)
    cdef floating[::1] zeros = np.zeros(max(C, K), dtype=dtype)
    # each thread's dz = dout * f'(y) for one chunk of images (not needed when f is linear)
    cdef floating[:, ::1] dz = _scratch(
        "dz", (T, chunk * g.Ho * g.Wo * K if act != ACT_LINEAR else 1), dtype)
    cdef const floating *yp = &y[0, 0, 0, 0] if act != ACT_LINEAR else NULL
    cdef floating *dxp = &dx[0, 0, 0, 0] if dx is not None else NULL
    cdef floating[:, :, ::1] U2 = _filter_transform(w, True, m, "U2") if dx is not None else \
        np.zeros((1, 1, 1), dtype=dtype)
    cdef floating[::1] no_bias = np.zeros(C, dtype=dtype)
    # one partial dU and db per unit (not per thread), added in unit order
    cdef floating[:, ::1] dU = _scratch("dU", (U_, P * C * g.Kp), dtype)
    cdef double[:, ::1] db_part = np.zeros((U_, K), dtype=np.float64)
    with nogil:
        for u in prange(U_, schedule="dynamic", num_threads=T):
            _backward_unit(&x[0, 0, 0, 0], &dout[0, 0, 0, 0], yp, &U2[0, 0, 0], &no_bias[0],
                           dxp, &dU[u, 0], &db_part[u, 0], &dz[threadid(), 0],
                           &V[threadid(), 0], &M[threadid(), 0], &sink[threadid(), 0],
                           &zeros[0], starts[u], starts[u + 1], chunk, group, group_dx, act,
                           &g, &gx)
    # dw = G^T (sum over units of dU, in unit order, in double) G, per (c, k), one input
    # channel c at a time: its P rows of the sum (tot, P x K, in cache), then the transform,
    # both along rows of k (loops that vectorise), each number summed in the same order as
    # when one (c, k) ran at a time.  That loop gathered its P numbers C K doubles apart from a
    # sum of the whole dU (P C K doubles, 4.5 MiB for F(4x4, 3x3) at 128 x 128 channels) and
    # ran one chain of dependent additions per (c, k): a cost per call that small batches
    # felt (AMD EPYC Zen 3, avx2, one thread, 1 x 8 x 8 x 128 -> 128, backward without dx,
    # best of 15: F(2x2, 3x3) 2.5 -> 2.0 ms, F(4x4, 3x3) 4.4 -> 1.3-1.7 ms)
    cdef double[:, ::1] tot = np.empty((P, max(K, 1)), dtype=np.float64)
    cdef double[:, ::1] gtk = np.empty((3 * (m + 2) + 1, max(K, 1)), dtype=np.float64)
    cdef const double *G = _g_of(m)
    cdef Py_ssize_t n = m + 2
    cdef double ga, gb, s
    cdef double *t_row
    cdef const double *d_tot
    cdef double *acc = &gtk[3 * n, 0]
    cdef const floating *d_row
    cdef floating *w_row
    with nogil:
        for c in range(C if K > 0 else 0):
            for i in range(P):
                t_row = &tot[i, 0]
                for k in range(K):
                    t_row[k] = 0
                for u in range(U_):
                    d_row = &dU[u, (i * C + c) * g.Kp]
                    for k in range(K):
                        t_row[k] = t_row[k] + d_row[k]
            if m == 2:       # the double sum (F(2x2, 3x3)'s bits since it was written so)
                for a in range(3):
                    for b_ in range(3):
                        for k in range(K):
                            acc[k] = 0
                        for i in range(n):
                            for j in range(n):
                                ga, gb = G[3 * i + a], G[3 * j + b_]
                                t_row = &tot[n * i + j, 0]
                                for k in range(K):
                                    acc[k] = acc[k] + ga * t_row[k] * gb
                        w_row = &dw[a, b_, c, 0]
                        for k in range(K):
                            w_row[k] = <floating>acc[k]
            else:            # G^T tot, then that times G: 162 multiply-adds instead of 648
                for a in range(3):
                    for j in range(n):
                        t_row = &gtk[n * a + j, 0]
                        for k in range(K):
                            t_row[k] = 0
                        for i in range(n):
                            ga = G[3 * i + a]
                            d_tot = &tot[n * i + j, 0]
                            for k in range(K):
                                t_row[k] = t_row[k] + ga * d_tot[k]
                for a in range(3):
                    for b_ in range(3):
                        for k in range(K):
                            acc[k] = 0
                        for j in range(n):
                            gb = G[3 * j + b_]
                            t_row = &gtk[n * a + j, 0]
                            for k in range(K):
                                acc[k] = acc[k] + t_row[k] * gb
                        w_row = &dw[a, b_, c, 0]
                        for k in range(K):
                            w_row[k] = <floating>acc[k]
        for k in range(K):
            s = 0
            for u in range(U_):
                s = s + db_part[u, k]
            db[k] = <floating>s


def _set_group_budget(Py_ssize_t budget, Py_ssize_t dw_budget):
    """Private, for tuning: the numbers of V and M one thread's group of tiles may hold."""
    global GROUP_BUDGET, DW_GROUP_BUDGET
    GROUP_BUDGET, DW_GROUP_BUDGET = budget, dw_budget
