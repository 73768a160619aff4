/* cytorch/_kernels/_depthwise.h -- the inner loops of the depthwise convolution
 * (``_depthwise.pyx``; twins ``cytorch.reference.depthwise_conv2d_forward`` / ``_backward``).
 *
 * Channels-last with the channels in the vector lanes: lane j = c * dm + m of a pixel holds
 * input channel c (repeated depth_multiplier times), so that output channel j, its weights
 * w[a, b, c, m] and its bias are all lane j.  Every term is then a vector product of two whole
 * vectors, whatever the stride or dilation (those only move the pixel a vector is loaded from).
 * Vectors below are V lanes; each call walks nv vectors of lanes, one after the other.  The
 * image is never padded: the caller clips each window to the taps that fall inside the image (a
 * rectangle of taps, smaller only at the edges), so every pointer these loops form points into
 * the image.
 *
 *   fwd:  out[p] = init + sum_{a < na, b < nb} x[p * xs + a * xa + b * xb] * w[a * lwa + b * ldw]
 *         for p < pb pixels of a row (the window's taps, clipped at the edges)
 *   dw:   acc[t] += sum over the ni x nq pixels (i, q) of x[i * xr + q * xs + off[t]] * d[i, q]
 *   dx:   dx[i * xr + q * xs + off[t]] += d[i, q] * w[t]  for every pixel (i, q) (scatter:
 *         the same loop for any stride; at stride 1 the caller uses fwd instead, gathering)
 *
 * (``off[t]``: where tap t lies from the window's corner; ``xs`` the step between neighbouring
 * output pixels, stride * lanes; ``xr`` between output rows; d[i, q] = d + i * ldr + q * ldd.)
 * dw and dx run on the interior, where every tap of every window is inside the image, and once
 * per tap (tb = 1) on the strips along the edges where that tap is.
 *
 * Each lane adds its terms one after the other, in the same order in every variant: the AVX2
 * and AVX-512 variants (both FMA) compute the same bits, the default one (SSE2, no FMA) rounds
 * each product first.  Tiles: up to 8 pixels (fwd: 8 accumulators hide the FMA latency) or up
 * to 9 taps (dw: 9 accumulators; dx: 9 weight vectors in registers) at a time, constant sizes
 * (a switch) so that they stay in registers:
 *
 *     variant   vectors       registers   fwd             dw              dx
 *     avx512    64-byte zmm   32          8 acc + 1 w     9 acc + 1 d     9 w + 1 d + 1
 *     avx2      32-byte ymm   16          8 acc + 1 w     9 acc + 1 d     9 w + 1 d + 1
 *     default   16-byte xmm   16          8 acc + 1 w     9 acc + 1 d     9 w + 1 d + 1
 *
 * Depthwise convolution does two loads per multiply-add at best (it reuses nothing across
 * channels): it is bound by loads, not by the FMA units.
 * Checked with ``objdump -d`` (GCC 12.2, -O3): the innermost loops of cy_dw_avx512_* use
 * vfmadd...ps/pd on zmm registers, cy_dw_avx2_* on ymm, cy_dw_default_* mulps + addps on xmm,
 * and none touches the stack; ``tests/test_isa.py`` repeats the check.
 */
#ifndef CYTORCH_DEPTHWISE_H
#define CYTORCH_DEPTHWISE_H

#include <Python.h>
#include "_isa.h"

#if defined(__GNUC__)
#define CY_DW_INLINE static inline __attribute__((always_inline))
#define CY_DW_UNROLL _Pragma("GCC unroll 16")
#define CY_DW_VEC(NAME, T, VB)                                                               \
typedef T NAME##_v __attribute__((vector_size(VB), aligned(sizeof(T)), may_alias));
#define CY_DW_FMA(NAME, acc, u, v) ((acc) += (u) * (v))
#define CY_DW_ZEROF(NAME, T)
#else
#define CY_DW_INLINE static __forceinline
#define CY_DW_UNROLL
#define CY_DW_VEC(NAME, T, VB) typedef struct { T e[VB / sizeof(T)]; } NAME##_v;
#define CY_DW_FMA(NAME, acc, u, v) NAME##_fma(&(acc), (u), (v))
#define CY_DW_ZEROF(NAME, T)                                                                 \
static void NAME##_fma(NAME##_v *a, NAME##_v u, NAME##_v v)                                  \
{ int i; for (i = 0; i < NAME##_V; i++) a->e[i] += u.e[i] * v.e[i]; }
#endif
#ifndef CY_TARGET_AVX2
#define CY_TARGET_AVX2
#define CY_TARGET_AVX512
#endif

#define CY_DW_CASES8(M, NAME) case 1: M(NAME, 1); break; case 2: M(NAME, 2); break;          \
    case 3: M(NAME, 3); break; case 4: M(NAME, 4); break; case 5: M(NAME, 5); break;         \
    case 6: M(NAME, 6); break; case 7: M(NAME, 7); break; case 8: M(NAME, 8); break;
#define CY_DW_CASES9(M, NAME) CY_DW_CASES8(M, NAME) case 9: M(NAME, 9); break;

#define CY_DW_FWD(NAME, n) NAME##_fwd_tile(out, ldo, x, xs, xa, xb, na, nb, w, lwa, ldw, init, n)
#define CY_DW_DW(NAME, n) NAME##_dw_tile(acc_io, lda, x, xr, xs, off, d, ldr, ldd, ni, nq, n)
#define CY_DW_DX(NAME, n) NAME##_dx_tile(dx, xr, xs, off, d, ldr, ldd, w, ldw, ni, nq, n)

#define CY_DEPTHWISE(NAME, T, VB, TARGET)                                                    \
CY_DW_VEC(NAME, T, VB)                                                                       \
enum { NAME##_V = VB / sizeof(T) };                                                          \
CY_DW_ZEROF(NAME, T)                                                                         \
CY_DW_INLINE TARGET NAME##_v NAME##_load(const T *p) { return *(const NAME##_v *)p; }        \
CY_DW_INLINE TARGET void NAME##_store(T *p, NAME##_v v) { *(NAME##_v *)p = v; }              \
                                                                                             \
CY_DW_INLINE TARGET void                                                                     \
NAME##_fwd_tile(T *out, Py_ssize_t ldo, const T *x, Py_ssize_t xs, Py_ssize_t xa,            \
                Py_ssize_t xb, Py_ssize_t na, Py_ssize_t nb, const T *w, Py_ssize_t lwa,     \
                Py_ssize_t ldw, const T *init, const int pb)                                 \
{                                                                                            \
    NAME##_v acc[8];                                                                         \
    Py_ssize_t a, b;                                                                         \
    int p;                                                                                   \
    CY_DW_UNROLL for (p = 0; p < pb; p++)                                                    \
        acc[p] = NAME##_load(init);                                                          \
    for (a = 0; a < na; a++) {                                                               \
        const T *xt = x + a * xa;                                                            \
        const T *wa = w + a * lwa;                                                           \
        for (b = 0; b < nb; b++, xt += xb) {                                                 \
            NAME##_v wt = NAME##_load(wa + b * ldw);                                         \
            CY_DW_UNROLL for (p = 0; p < pb; p++)                                            \
                CY_DW_FMA(NAME, acc[p], NAME##_load(xt + p * xs), wt);                       \
        }                                                                                    \
    }                                                                                        \
    CY_DW_UNROLL for (p = 0; p < pb; p++)                                                    \
        NAME##_store(out + p * ldo, acc[p]);                                                 \
}                                                                                            \
                                                                                             \
/* out (pb pixels, ldo apart) = init + the na x nb taps; nv vectors; 1 <= pb <= 8 */         \
static TARGET void NAME##_fwd(T *out, Py_ssize_t ldo, const T *x, Py_ssize_t xs,             \
                              Py_ssize_t xa, Py_ssize_t xb, Py_ssize_t na, Py_ssize_t nb,    \
                              const T *w, Py_ssize_t lwa, Py_ssize_t ldw, const T *init,     \
                              int pb, Py_ssize_t nv)                                         \
{                                                                                            \
    for (; nv > 0; nv--, out += NAME##_V, x += NAME##_V, w += NAME##_V, init += NAME##_V)    \
        switch (pb) { CY_DW_CASES8(CY_DW_FWD, NAME) }                                        \
}                                                                                            \
                                                                                             \
CY_DW_INLINE TARGET void                                                                     \
NAME##_dw_tile(T *acc_io, Py_ssize_t lda, const T *x, Py_ssize_t xr, Py_ssize_t xs,          \
               const Py_ssize_t *off, const T *d, Py_ssize_t ldr, Py_ssize_t ldd,            \
               Py_ssize_t ni, Py_ssize_t nq, const int tb)                                   \
{                                                                                            \
    NAME##_v acc[9];                                                                         \
    Py_ssize_t i, q, o[9];                                                                   \
    int t;                                                                                   \
    CY_DW_UNROLL for (t = 0; t < tb; t++) {                                                  \
        acc[t] = NAME##_load(acc_io + t * lda);                                              \
        o[t] = off[t];                                                                       \
    }                                                                                        \
    for (i = 0; i < ni; i++) {                                                               \
        const T *xi = x + i * xr;                                                            \
        const T *di = d + i * ldr;                                                           \
        for (q = 0; q < nq; q++, xi += xs, di += ldd) {                                      \
            NAME##_v dv = NAME##_load(di);                                                   \
            CY_DW_UNROLL for (t = 0; t < tb; t++)                                            \
                CY_DW_FMA(NAME, acc[t], NAME##_load(xi + o[t]), dv);                         \
        }                                                                                    \
    }                                                                                        \
    CY_DW_UNROLL for (t = 0; t < tb; t++)                                                    \
        NAME##_store(acc_io + t * lda, acc[t]);                                              \
}                                                                                            \
                                                                                             \
/* acc_io (tb taps, lda apart) += the products over ni x nq output pixels; nv vectors */     \
static TARGET void NAME##_dw(T *acc_io, Py_ssize_t lda, const T *x, Py_ssize_t xr,           \
                             Py_ssize_t xs, const Py_ssize_t *off, const T *d,               \
                             Py_ssize_t ldr, Py_ssize_t ldd, Py_ssize_t ni, Py_ssize_t nq,   \
                             int tb, Py_ssize_t nv)                                          \
{                                                                                            \
    for (; nv > 0; nv--, acc_io += NAME##_V, x += NAME##_V, d += NAME##_V)                   \
        switch (tb) { CY_DW_CASES9(CY_DW_DW, NAME) }                                         \
}                                                                                            \
                                                                                             \
CY_DW_INLINE TARGET void                                                                     \
NAME##_dx_tile(T *dx, Py_ssize_t xr, Py_ssize_t xs, const Py_ssize_t *off, const T *d,       \
               Py_ssize_t ldr, Py_ssize_t ldd, const T *w, Py_ssize_t ldw, Py_ssize_t ni,    \
               Py_ssize_t nq, const int tb)                                                  \
{                                                                                            \
    NAME##_v wt[9];                                                                          \
    Py_ssize_t i, q, o[9];                                                                   \
    int t;                                                                                   \
    CY_DW_UNROLL for (t = 0; t < tb; t++) {                                                  \
        wt[t] = NAME##_load(w + t * ldw);                                                    \
        o[t] = off[t];                                                                       \
    }                                                                                        \
    for (i = 0; i < ni; i++) {                                                               \
        T *xi = dx + i * xr;                                                                 \
        const T *di = d + i * ldr;                                                           \
        for (q = 0; q < nq; q++, xi += xs, di += ldd) {                                      \
            NAME##_v dv = NAME##_load(di);                                                   \
            CY_DW_UNROLL for (t = 0; t < tb; t++) {                                          \
                NAME##_v a = NAME##_load(xi + o[t]);                                         \
                CY_DW_FMA(NAME, a, dv, wt[t]);                                               \
                NAME##_store(xi + o[t], a);                                                  \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
}                                                                                            \
                                                                                             \
/* dx += every pixel's dout times the tb taps' weights; nv vectors; tb <= 9 */               \
static TARGET void NAME##_dx(T *dx, Py_ssize_t xr, Py_ssize_t xs, const Py_ssize_t *off,     \
                             const T *d, Py_ssize_t ldr, Py_ssize_t ldd, const T *w,         \
                             Py_ssize_t ldw, Py_ssize_t ni, Py_ssize_t nq, int tb,           \
                             Py_ssize_t nv)                                                  \
{                                                                                            \
    for (; nv > 0; nv--, dx += NAME##_V, d += NAME##_V, w += NAME##_V)                       \
        switch (tb) { CY_DW_CASES9(CY_DW_DX, NAME) }                                         \
}

CY_DEPTHWISE(cy_dw_default_f, float, 16, )
CY_DEPTHWISE(cy_dw_default_d, double, 16, )
#if CY_ISA_X86
CY_DEPTHWISE(cy_dw_avx2_f, float, 32, CY_TARGET_AVX2)
CY_DEPTHWISE(cy_dw_avx2_d, double, 32, CY_TARGET_AVX2)
CY_DEPTHWISE(cy_dw_avx512_f, float, 64, CY_TARGET_AVX512)
CY_DEPTHWISE(cy_dw_avx512_d, double, 64, CY_TARGET_AVX512)
#endif

#define CY_DW_TABLE(T, S)                                                                    \
typedef struct {                                                                             \
    void (*fwd)(T *, Py_ssize_t, const T *, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,  \
                Py_ssize_t, const T *, Py_ssize_t, Py_ssize_t, const T *, int, Py_ssize_t);  \
    void (*dw)(T *, Py_ssize_t, const T *, Py_ssize_t, Py_ssize_t, const Py_ssize_t *,       \
               const T *, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, int, Py_ssize_t);  \
    void (*dx)(T *, Py_ssize_t, Py_ssize_t, const Py_ssize_t *, const T *, Py_ssize_t,       \
               Py_ssize_t, const T *, Py_ssize_t, Py_ssize_t, Py_ssize_t, int, Py_ssize_t);  \
} cy_dw_kernels_##S;                                                                         \
static cy_dw_kernels_##S cy_dw_##S = {cy_dw_default_##S##_fwd, cy_dw_default_##S##_dw,       \
                                      cy_dw_default_##S##_dx};

CY_DW_TABLE(float, f)
CY_DW_TABLE(double, d)

/* bytes per vector of the variant in use */
static int cy_dw_bytes = 16;

#define CY_DW_USE(VARIANT, VB)                                                               \
    do {                                                                                     \
        cy_dw_f.fwd = VARIANT##_f_fwd; cy_dw_f.dw = VARIANT##_f_dw;                          \
        cy_dw_f.dx = VARIANT##_f_dx;                                                         \
        cy_dw_d.fwd = VARIANT##_d_fwd; cy_dw_d.dw = VARIANT##_d_dw;                          \
        cy_dw_d.dx = VARIANT##_d_dx;                                                         \
        cy_dw_bytes = VB;                                                                    \
    } while (0)

/* Use variant ``isa`` (a CY_ISA_* value this CPU supports: the caller checks); returns it. */
static int cy_dw_select(int isa)
{
#if CY_ISA_X86
    if (isa == CY_ISA_AVX512) {
        CY_DW_USE(cy_dw_avx512, 64);
        return isa;
    }
    if (isa == CY_ISA_AVX2) {
        CY_DW_USE(cy_dw_avx2, 32);
        return isa;
    }
#endif
    (void)isa;
    CY_DW_USE(cy_dw_default, 16);
    return CY_ISA_DEFAULT;
}

#endif
