/* cytorch/_kernels/_strided.h -- the register-blocked micro-kernels of conv2d's implicit-GEMM
 * path for strided layers (``_conv.pyx``), such as AlexNet's first (96 filters of 11x11x3,
 * stride 4): forward and dW without an im2col matrix.
 *
 * A micro-kernel keeps a tile of sums in vector registers while it runs through the whole
 * reduction, then stores the tile once; one operand is read as vectors, the other one number at
 * a time and broadcast to every lane (``vector * scalar``; AVX-512 folds the broadcast into the
 * FMA's memory operand):
 *
 *   fwd:  acc[p][k] = init[k] + sum_t  xr[off[t] + p] * w[t, k]
 *         p: pb neighbouring output pixels of one output row, k: kb vectors of filters, t =
 *         (a, b, c) the R = kh * kw * C taps in the order of ``w.reshape(R, K)``, xr the
 *         (padded) image stored phase-planar: row, channel, column phase s = column % stride,
 *         column // stride.  Then the tap (a, b, c) of neighbouring output pixels is
 *         neighbouring numbers, xr[off[t] + p], whatever the stride (off[] holds the phase)
 *   dw:   acc[j][k] += sum over the output pixels (oh, ow) of a chunk of
 *                      x[oh * xrow + ow * xpix + j] * d[oh, ow, k]
 *         j: tb neighbouring taps of one kernel row, which are neighbouring numbers of the
 *         channels-last image (a kernel row spans kw * C contiguous numbers), k: kb vectors of
 *         filters; d a panel of dout, kb vectors per pixel, packed contiguous
 *
 * Every lane adds its terms one after the other in one chain, in the same order in every
 * variant (the taps in order; the pixels row by row, chunk by chunk): the AVX2 and AVX-512
 * variants, which both fuse each multiply-add, compute the same bits; the default variant (SSE2
 * on x86-64, no FMA) rounds each product first.
 *
 * Instruction sets (``_isa.h``) and register blocking: ACC accumulators, the rest of the
 * register file for one row of weights (fwd) or of dout (dw), kb <= 2 vectors, and a broadcast:
 *
 *     variant   vectors       registers   ACC   fwd pb x kb    dw tb x kb
 *     avx512    64-byte zmm   32          24    24x1, 12x2     24x1, 12x2
 *     avx2      32-byte ymm   16          12    12x1, 6x2      12x1, 6x2
 *     default   16-byte xmm   16          12    12x1, 6x2      12x1, 6x2
 *
 * The tile sizes are compile-time constants (a switch over every size up to the limit, each
 * case fully unrolled), so the accumulators are registers, not an array on the stack.
 */
#ifndef CYTORCH_STRIDED_H
#define CYTORCH_STRIDED_H

#include <Python.h>
#include "_isa.h"

#if defined(__GNUC__)
#define CY_STR_INLINE static inline __attribute__((always_inline))
#define CY_STR_UNROLL _Pragma("GCC unroll 32")
#else
#define CY_STR_INLINE static __forceinline
#define CY_STR_UNROLL
#endif
#ifndef CY_TARGET_AVX2
#define CY_TARGET_AVX2
#define CY_TARGET_AVX512
#endif

/* the cases 1..n of a switch over a tile size, each calling M(NAME, size) */
#define CY_STR_CASES6(M, NAME) case 1: M(NAME, 1); break; case 2: M(NAME, 2); break;         \
    case 3: M(NAME, 3); break; case 4: M(NAME, 4); break; case 5: M(NAME, 5); break;        \
    case 6: M(NAME, 6); break;
#define CY_STR_CASES12(M, NAME) CY_STR_CASES6(M, NAME) case 7: M(NAME, 7); break;            \
    case 8: M(NAME, 8); break; case 9: M(NAME, 9); break; case 10: M(NAME, 10); break;      \
    case 11: M(NAME, 11); break; case 12: M(NAME, 12); break;
#define CY_STR_CASES24(M, NAME) CY_STR_CASES12(M, NAME) case 13: M(NAME, 13); break;         \
    case 14: M(NAME, 14); break; case 15: M(NAME, 15); break; case 16: M(NAME, 16); break;  \
    case 17: M(NAME, 17); break; case 18: M(NAME, 18); break; case 19: M(NAME, 19); break;  \
    case 20: M(NAME, 20); break; case 21: M(NAME, 21); break; case 22: M(NAME, 22); break;  \
    case 23: M(NAME, 23); break; case 24: M(NAME, 24); break;

#define CY_STR_FWD1(NAME, n) NAME##_fwd_tile(dst, ldd, xr, off, w, init, nt, n, 1)
#define CY_STR_FWD2(NAME, n) NAME##_fwd_tile(dst, ldd, xr, off, w, init, nt, n, 2)
#define CY_STR_DW1(NAME, n) NAME##_dw_tile(acc_io, lda, x, xrow, xpix, d, rows, Wo, n, 1)
#define CY_STR_DW2(NAME, n) NAME##_dw_tile(acc_io, lda, x, xrow, xpix, d, rows, Wo, n, 2)

#if defined(__GNUC__)
/* vectors of VB bytes: GCC/Clang vector extensions; "v * s" broadcasts the scalar s */
#define CY_STR_VEC(NAME, T, VB)                                                              \
typedef T NAME##_v __attribute__((vector_size(VB), aligned(sizeof(T)), may_alias));
#define CY_STR_FMA_BODY(NAME) *acc += v * s;
#else
/* other compilers: a struct of lanes and loops (same order of summation per lane) */
#define CY_STR_VEC(NAME, T, VB) typedef struct { T e[VB / sizeof(T)]; } NAME##_v;
#define CY_STR_FMA_BODY(NAME)                                                                \
    int i;                                                                                   \
    for (i = 0; i < NAME##_V; i++)                                                           \
        acc->e[i] += v.e[i] * s;
#endif

/* One variant: NAME, element type T, vector bytes VB, accumulators ACC, CASES_ACC and
   CASES_HALF the switch cases up to ACC and ACC / 2. */
#define CY_STRIDED(NAME, T, VB, ACC, CASES_ACC, CASES_HALF, TARGET)                          \
CY_STR_VEC(NAME, T, VB)                                                                      \
enum { NAME##_V = VB / sizeof(T) };                                                          \
                                                                                             \
CY_STR_INLINE TARGET void NAME##_fma(NAME##_v *acc, NAME##_v v, T s)                         \
{                                                                                            \
    CY_STR_FMA_BODY(NAME)                                                                    \
}                                                                                            \
CY_STR_INLINE TARGET NAME##_v NAME##_load(const T *p) { return *(const NAME##_v *)p; }       \
CY_STR_INLINE TARGET void NAME##_store(T *p, NAME##_v v) { *(NAME##_v *)p = v; }             \
                                                                                             \
CY_STR_INLINE TARGET void                                                                    \
NAME##_fwd_tile(T *dst, Py_ssize_t ldd, const T *xr, const Py_ssize_t *off, const T *w,      \
                const T *init, Py_ssize_t nt, const int pb, const int kb)                    \
{                                                                                            \
    NAME##_v acc[ACC];                                                                       \
    Py_ssize_t t;                                                                            \
    int p, k;                                                                                \
    CY_STR_UNROLL for (p = 0; p < pb; p++)                                                   \
        CY_STR_UNROLL for (k = 0; k < kb; k++)                                               \
            acc[p * kb + k] = NAME##_load(init + k * NAME##_V);                              \
    for (t = 0; t < nt; t++) {                                                               \
        const T *xp = xr + off[t];                                                           \
        NAME##_v w0 = NAME##_load(w + t * kb * NAME##_V);                                    \
        NAME##_v w1 = kb > 1 ? NAME##_load(w + (t * kb + 1) * NAME##_V) : w0;                \
        CY_STR_UNROLL for (p = 0; p < pb; p++) {                                             \
            NAME##_fma(&acc[p * kb], w0, xp[p]);                                             \
            if (kb > 1)                                                                      \
                NAME##_fma(&acc[p * kb + 1], w1, xp[p]);                                     \
        }                                                                                    \
    }                                                                                        \
    CY_STR_UNROLL for (p = 0; p < pb; p++)                                                   \
        CY_STR_UNROLL for (k = 0; k < kb; k++)                                               \
            NAME##_store(dst + p * ldd + k * NAME##_V, acc[p * kb + k]);                     \
}                                                                                            \
                                                                                             \
/* dst[p * ldd + (kb vectors)] = init + sum over the nt taps t of xr[off[t] + p] * w[t] (w: a \
   panel of nt rows of kb vectors), for pixels p < pb; 1 <= pb <= ACC / kb, kb in {1, 2} */   \
static TARGET void NAME##_fwd(T *dst, Py_ssize_t ldd, const T *xr, const Py_ssize_t *off,    \
                              const T *w, const T *init, Py_ssize_t nt, int pb, int kb)      \
{                                                                                            \
    if (kb == 2) {                                                                           \
        switch (pb) { CASES_HALF(CY_STR_FWD2, NAME) }                                        \
    } else {                                                                                 \
        switch (pb) { CASES_ACC(CY_STR_FWD1, NAME) }                                         \
    }                                                                                        \
}                                                                                            \
                                                                                             \
CY_STR_INLINE TARGET void                                                                    \
NAME##_dw_tile(T *acc_io, Py_ssize_t lda, const T *x, Py_ssize_t xrow, Py_ssize_t xpix,      \
               const T *d, Py_ssize_t rows, Py_ssize_t Wo, const int tb, const int kb)       \
{                                                                                            \
    NAME##_v acc[ACC];                                                                       \
    Py_ssize_t oh, ow;                                                                       \
    int j, k;                                                                                \
    CY_STR_UNROLL for (j = 0; j < tb; j++)                                                   \
        CY_STR_UNROLL for (k = 0; k < kb; k++)                                               \
            acc[j * kb + k] = NAME##_load(acc_io + j * lda + k * NAME##_V);                  \
    for (oh = 0; oh < rows; oh++) {                                                          \
        const T *xp = x + oh * xrow;                                                         \
        for (ow = 0; ow < Wo; ow++, xp += xpix, d += kb * NAME##_V) {                        \
            NAME##_v d0 = NAME##_load(d);                                                    \
            NAME##_v d1 = kb > 1 ? NAME##_load(d + NAME##_V) : d0;                           \
            CY_STR_UNROLL for (j = 0; j < tb; j++) {                                         \
                NAME##_fma(&acc[j * kb], d0, xp[j]);                                         \
                if (kb > 1)                                                                  \
                    NAME##_fma(&acc[j * kb + 1], d1, xp[j]);                                 \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
    CY_STR_UNROLL for (j = 0; j < tb; j++)                                                   \
        CY_STR_UNROLL for (k = 0; k < kb; k++)                                               \
            NAME##_store(acc_io + j * lda + k * NAME##_V, acc[j * kb + k]);                  \
}                                                                                            \
                                                                                             \
/* acc_io (tb rows of lda, kb vectors each) += sum over rows x Wo output pixels of            \
   x[oh * xrow + ow * xpix + j] * d[pixel] (d: kb vectors per pixel, contiguous), j < tb;     \
   1 <= tb <= ACC / kb, kb in {1, 2} */                                                      \
static TARGET void NAME##_dw(T *acc_io, Py_ssize_t lda, const T *x, Py_ssize_t xrow,          \
                             Py_ssize_t xpix, const T *d, Py_ssize_t rows, Py_ssize_t Wo,    \
                             int tb, int kb)                                                 \
{                                                                                            \
    if (kb == 2) {                                                                           \
        switch (tb) { CASES_HALF(CY_STR_DW2, NAME) }                                         \
    } else {                                                                                 \
        switch (tb) { CASES_ACC(CY_STR_DW1, NAME) }                                          \
    }                                                                                        \
}

#define CY_NO_TARGET_STR
#define CY_STR_ACC12(NAME, T, VB, TARGET)                                                    \
    CY_STRIDED(NAME, T, VB, 12, CY_STR_CASES12, CY_STR_CASES6, TARGET)
#define CY_STR_ACC24(NAME, T, VB, TARGET)                                                    \
    CY_STRIDED(NAME, T, VB, 24, CY_STR_CASES24, CY_STR_CASES12, TARGET)
CY_STR_ACC12(cy_str_default_f, float, 16, CY_NO_TARGET_STR)
CY_STR_ACC12(cy_str_default_d, double, 16, CY_NO_TARGET_STR)
#if CY_ISA_X86
CY_STR_ACC12(cy_str_avx2_f, float, 32, CY_TARGET_AVX2)
CY_STR_ACC12(cy_str_avx2_d, double, 32, CY_TARGET_AVX2)
CY_STR_ACC24(cy_str_avx512_f, float, 64, CY_TARGET_AVX512)
CY_STR_ACC24(cy_str_avx512_d, double, 64, CY_TARGET_AVX512)
#endif

/* The variant in use (cy_str_select): its two kernels per element type, its vector bytes and
   accumulators. */
#define CY_STR_TABLE(T, S)                                                                   \
typedef struct {                                                                             \
    void (*fwd)(T *, Py_ssize_t, const T *, const Py_ssize_t *, const T *, const T *,        \
                Py_ssize_t, int, int);                                                       \
    void (*dw)(T *, Py_ssize_t, const T *, Py_ssize_t, Py_ssize_t, const T *, Py_ssize_t,    \
               Py_ssize_t, int, int);                                                        \
} cy_str_kernels_##S;                                                                        \
static cy_str_kernels_##S cy_str_##S = {cy_str_default_##S##_fwd, cy_str_default_##S##_dw};
CY_STR_TABLE(float, f)
CY_STR_TABLE(double, d)

static int cy_str_bytes = 16, cy_str_acc = 12;

#define CY_STR_USE(VARIANT, VB, ACC)                                                         \
    do {                                                                                     \
        cy_str_f.fwd = VARIANT##_f_fwd; cy_str_f.dw = VARIANT##_f_dw;                        \
        cy_str_d.fwd = VARIANT##_d_fwd; cy_str_d.dw = VARIANT##_d_dw;                        \
        cy_str_bytes = VB; cy_str_acc = ACC;                                                 \
    } while (0)

/* Use variant ``isa`` (a CY_ISA_* value this CPU supports: the caller checks); returns it. */
static int cy_str_select(int isa)
{
#if CY_ISA_X86
    if (isa == CY_ISA_AVX512) {
        CY_STR_USE(cy_str_avx512, 64, 24);
        return isa;
    }
    if (isa == CY_ISA_AVX2) {
        CY_STR_USE(cy_str_avx2, 32, 12);
        return isa;
    }
#endif
    (void)isa;
    CY_STR_USE(cy_str_default, 16, 12);
    return CY_ISA_DEFAULT;
}

#endif
