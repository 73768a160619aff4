/* cytorch/_kernels/_blocked.h -- the register-blocked micro-kernels of conv2d's blocked path
 * (``_blocked.pyx``), for stride-1 layers like LeNet's second (K = 16 filters over C * kh * kw =
 * 150 taps), where OpenBLAS's GEMM spends more time packing a 16-column matrix than multiplying.
 *
 * Each micro-kernel keeps a small tile of outputs in vector registers while it runs through the
 * whole sum, then stores the tile once: a small GEMM whose operands are read straight out of the
 * (padded) image, with no im2col matrix.  One operand is read as vectors, the other one number at
 * a time and broadcast to every lane (``vector * scalar``; AVX-512 folds the broadcast into the
 * FMA's memory operand).  The three products of a conv layer:
 *
 *   fwd:  acc[p][k] = init[k] + sum_t  xr[off[t] + p] * w[t, k]
 *         p: pb neighbouring output pixels of one row, or of ra = 2 rows when they are short
 *         and one vector holds the filters (broadcast), k: kb vectors of filters, t = (a, b,
 *         c) the taps, xr the image stored row-planar (row, channel, column)
 *   fwdp: acc[k][j] = init[k] + sum_t  w[t, k] * xr[off[t] + j ...]      (the same sums)
 *         the output pixels in the lanes when a row is whole vectors and the filters are not
 *         (keras_mnist c2: 8 x 8 pixels, 20 filters on avx2): k: 4 filters broadcast, j: 1..3
 *         vectors of pixels (of a row, or rows one vector wide), stored transposed in
 *         registers to each pixel's 4 numbers
 *   dwp:  acc[k][t] += sum over output pixels of d[oh, ow, k] * x[oh, ow; t]      (the same)
 *         the taps in the lanes where the filters are not whole vectors (keras_mnist c2: the
 *         50 taps (b, c) of a kernel row, neighbours in the NHWC image, in 7 vectors): k: 4
 *         filters broadcast from d, t: 1..3 vectors of taps; dW kept as (kh, K, taps)
 *   dw:   acc[t][k] += sum over output pixels (oh, ow) of x[oh, ow; t] * d[oh, ow, k]
 *         t: tb neighbouring taps (b, c) of one kernel row, or of ra <= 3 neighbouring rows
 *         when a row is short (one channel: kw taps), broadcast from the NHWC image; k: kb
 *         vectors of filters; dwr when K is kb whole vectors and 16 bytes (keras_mnist c2's
 *         20 filters): groups of G = VB / 16 taps share one vector for those last filters
 *   dx:   acc[t][j] = sum_k  w[t, k] * d[k, j],  then  dxb[off[t] + j] += acc[t][j]
 *         t: tb taps (broadcast weights), j: jb vectors of output pixels of dout stored planar
 *         (filter, pixel: Ho * Wo lanes, rows Wo wide); dxb holds one plane of dx per kernel
 *         column b and channel c, rows Wo wide too, where tap (a, b, c) of every output pixel
 *         is one contiguous run (col2im in one add per tap and tile); gather then adds the kw
 *         planes of a channel, each shifted b columns, into the padded dx
 *
 * Every lane adds its terms one after the other in one chain (no even/odd split), in the same
 * order in every variant: the AVX2 and AVX-512 variants, which both fuse each multiply-add,
 * compute the same bits; the default variant (SSE2 on x86-64, no FMA) rounds each product
 * first.  Enough independent accumulators (>= 8) hide the FMA latency.
 *
 * Instruction sets (``_isa.h``) and register blocking: ACC accumulators, the rest of the
 * register file for one row of weights (fwd, dw: kb <= 2 vectors) or JB vectors of pixels (dx)
 * and one broadcast:
 *
 *     variant   vectors       registers   ACC   fwd pb x kb    dw ra*tb x kb  dx tb x JB
 *     avx512    64-byte zmm   32          24    24x1, 12x2     24x1, 12x2     6 x 2..4
 *     avx2      32-byte ymm   16          12    12x1, 6x2      12x1, 6x2      6 x 2, 4 x 3
 *     default   16-byte xmm   16          12    12x1, 6x2      12x1, 6x2      6 x 2
 *     (fwdp, dwp on avx2 and default: 4 filters x 3 vectors, + 3 vectors and a broadcast)
 *
 * (the forward tiles of one vector of filters hold two rows of up to ACC / 2 pixels each when
 * the rows are that short: LeNet c2 on avx512, 2 x 10; the dx tiles of avx512 are 2, 3 or 4
 * vectors wide, of avx2 2 or 3 (with 4 taps), mixed to cover the pixels in whole vectors:
 * LeNet c2's 100 pixels in 4 + 3 vectors on avx512, 3 + 3 + 3 + 2 + 2 on avx2; the default
 * variant pads them to an even number)
 *
 * The tile sizes are compile-time constants (a switch over every size up to the limit, each
 * case fully unrolled), so the accumulators are registers, not an array on the stack.
 * Checked with ``objdump -d`` on the module built by GCC 12.2 (-O3): every innermost loop of
 * cy_blk_avx512_* multiplies-adds with vfmadd...ps/pd on zmm registers (the AVX-512 forward and
 * dW tiles with the broadcast folded in: vfmadd231ps (%r..){1to16}), of cy_blk_avx2_* with
 * vfmadd on ymm registers, of cy_blk_default_* with mulps + addps on xmm, and none reads or
 * writes the stack (the stack references are in the outer pixel-row loops of dW and in the
 * prologues: 712 in the 66 avx512 float32 dW tiles).  ``tests/test_isa.py`` repeats the check.
 * (fwdp and dwp likewise, on the Zen 3 session's build, but for the default variant's 4 x 3
 * forward tile: without FMA each product takes a register of its own, and one sum goes
 * through the stack.)
 */
#ifndef CYTORCH_BLOCKED_H
#define CYTORCH_BLOCKED_H

#include <Python.h>
#include <stdint.h>
#include "_isa.h"

#if defined(__GNUC__)
#define CY_BLK_INLINE static inline __attribute__((always_inline))
#define CY_BLK_UNROLL _Pragma("GCC unroll 32")
#else
#define CY_BLK_INLINE static __forceinline
#define CY_BLK_UNROLL
#endif
#ifndef CY_TARGET_AVX2
#define CY_TARGET_AVX2
#define CY_TARGET_AVX512
#endif

/* the cases 1..n of a switch over a tile size, each calling M(NAME, size) */
#define CY_BLK_CASES2(M, NAME) case 1: M(NAME, 1); break; case 2: M(NAME, 2); break;
#define CY_BLK_CASES3(M, NAME) CY_BLK_CASES2(M, NAME) case 3: M(NAME, 3); break;
#define CY_BLK_CASES4(M, NAME) CY_BLK_CASES3(M, NAME) case 4: M(NAME, 4); break;
#define CY_BLK_CASES6(M, NAME) CY_BLK_CASES4(M, NAME) case 5: M(NAME, 5); break;              \
    case 6: M(NAME, 6); break;
#define CY_BLK_CASES8(M, NAME) CY_BLK_CASES6(M, NAME) case 7: M(NAME, 7); break;              \
    case 8: M(NAME, 8); break;
#define CY_BLK_CASES12(M, NAME) CY_BLK_CASES6(M, NAME) case 7: M(NAME, 7); break;            \
    case 8: M(NAME, 8); break; case 9: M(NAME, 9); break; case 10: M(NAME, 10); break;      \
    case 11: M(NAME, 11); break; case 12: M(NAME, 12); break;
#define CY_BLK_CASES24(M, NAME) CY_BLK_CASES12(M, NAME) case 13: M(NAME, 13); break;         \
    case 14: M(NAME, 14); break; case 15: M(NAME, 15); break; case 16: M(NAME, 16); break;  \
    case 17: M(NAME, 17); break; case 18: M(NAME, 18); break; case 19: M(NAME, 19); break;  \
    case 20: M(NAME, 20); break; case 21: M(NAME, 21); break; case 22: M(NAME, 22); break;  \
    case 23: M(NAME, 23); break; case 24: M(NAME, 24); break;

#define CY_BLK_FWD(NAME, n, kb, ra)                                                          \
    NAME##_fwd_tile(dst, ldd, rsd, xr, rsx, off, w, ldw, init, nt, n, kb, ra, 0, 1)
#define CY_BLK_FWD1(NAME, n) CY_BLK_FWD(NAME, n, 1, 1)
#define CY_BLK_FWD2(NAME, n) CY_BLK_FWD(NAME, n, 2, 1)
#define CY_BLK_FWD1R2(NAME, n) CY_BLK_FWD(NAME, n, 1, 2)
#define CY_BLK_DW(NAME, n, kb, ra)                                                           \
    NAME##_dw_tile(acc_io, lda, x, xrow, xpix, d, ldd, Ho, Wo, n, kb, ra, rs)
#define CY_BLK_DW11(NAME, n) CY_BLK_DW(NAME, n, 1, 1)
#define CY_BLK_DW12(NAME, n) CY_BLK_DW(NAME, n, 1, 2)
#define CY_BLK_DW13(NAME, n) CY_BLK_DW(NAME, n, 1, 3)
#define CY_BLK_DW21(NAME, n) CY_BLK_DW(NAME, n, 2, 1)
#define CY_BLK_DW22(NAME, n) CY_BLK_DW(NAME, n, 2, 2)
#define CY_BLK_DW23(NAME, n) CY_BLK_DW(NAME, n, 2, 3)
/* dW's switch over ra (3, 2 or 1 kernel rows) then tb, with the tile sizes of each */
#define CY_BLK_DW_BY_RA(NAME, KB, CASES3, CASES2, CASES1)                                    \
    if (ra == 3) {                                                                           \
        switch (tb) { CASES3(CY_BLK_DW##KB##3, NAME) }                                       \
    } else if (ra == 2) {                                                                    \
        switch (tb) { CASES2(CY_BLK_DW##KB##2, NAME) }                                       \
    } else {                                                                                 \
        switch (tb) { CASES1(CY_BLK_DW##KB##1, NAME) }                                       \
    }
#define CY_BLK_FWDR(NAME, ng, kb, ra, g)                                                     \
    NAME##_fwd_tile(dst, ldd, rsd, xr, rsx, off, w, ldw, init, nt, (ng) * (g), kb, ra, ng, g)
#define CY_BLK_FWDR_NG(NAME, kb, ra, g)                                                      \
    switch (ng) { case 1: CY_BLK_FWDR(NAME, 1, kb, ra, g); break;                            \
                  case 2: CY_BLK_FWDR(NAME, 2, kb, ra, g); break;                            \
                  case 3: CY_BLK_FWDR(NAME, 3, kb, ra, g); break;                            \
                  case 4: CY_BLK_FWDR(NAME, 4, kb, ra, g); break; }
#define CY_BLK_FWDP(NAME, F, J)                                                              \
    case J * 4 + F: NAME##_fwdp_tile(dst, ldd, xr, js, off, w, ldw, init, nt, F, J); break;
#define CY_BLK_FWDP_J(NAME, J)                                                               \
    CY_BLK_FWDP(NAME, 1, J) CY_BLK_FWDP(NAME, 2, J) CY_BLK_FWDP(NAME, 3, J)                  \
    CY_BLK_FWDP(NAME, 4, J)
#define CY_BLK_FWDP_CASES(NAME)                                                              \
    CY_BLK_FWDP_J(NAME, 1) CY_BLK_FWDP_J(NAME, 2) CY_BLK_FWDP_J(NAME, 3)
#define CY_BLK_DWP(NAME, F, J)                                                               \
    case J * 4 + F:                                                                          \
        NAME##_dwp_tile(acc_io, lda, ja, x, js, xrow, xpix, d, ldd, Ho, Wo, F, J); break;
#define CY_BLK_DWP_J(NAME, J)                                                                \
    CY_BLK_DWP(NAME, 1, J) CY_BLK_DWP(NAME, 2, J) CY_BLK_DWP(NAME, 3, J)                     \
    CY_BLK_DWP(NAME, 4, J)
#define CY_BLK_DWP_CASES(NAME)                                                               \
    CY_BLK_DWP_J(NAME, 1) CY_BLK_DWP_J(NAME, 2) CY_BLK_DWP_J(NAME, 3)
#define CY_BLK_DWR1(NAME, n) NAME##_dwr_tile(acc_io, lda, x, xrow, xpix, d, ldd, Ho, Wo, n, 1)
#define CY_BLK_DWR2(NAME, n) NAME##_dwr_tile(acc_io, lda, x, xrow, xpix, d, ldd, Ho, Wo, n, 2)
#define CY_BLK_DX2(NAME, n) NAME##_dx_tile(dst, off, wt, ldw, src, lds, nk, n, 2)
#define CY_BLK_DX3(NAME, n) NAME##_dx_tile(dst, off, wt, ldw, src, lds, nk, n, 3)
#define CY_BLK_DX4(NAME, n) NAME##_dx_tile(dst, off, wt, ldw, src, lds, nk, n, 4)

#if defined(__GNUC__)
/* vectors of VB bytes: GCC/Clang vector extensions; "v * s" broadcasts the scalar s */
#define CY_BLK_VEC(NAME, T, IT, VB)                                                          \
typedef T NAME##_v __attribute__((vector_size(VB), aligned(sizeof(T)), may_alias));          \
typedef IT NAME##_iv __attribute__((vector_size(VB), aligned(sizeof(T)), may_alias));
#define CY_BLK_ZERO(NAME) ((NAME##_v){0})
/* the vector at p, lanes whose mask k is 0 set to +0.0 (bitwise: and with all ones or none) */
#define CY_BLK_MASKED_FN(NAME, T, IT, TARGET)                                                \
CY_BLK_INLINE TARGET NAME##_v NAME##_masked(const T *p, const IT *k)                          \
{ return (NAME##_v)(*(const NAME##_iv *)p & *(const NAME##_iv *)k); }
#else
/* other compilers: a struct of lanes and loops (same order of summation per lane) */
#define CY_BLK_VEC(NAME, T, IT, VB)                                                          \
typedef struct { T e[VB / sizeof(T)]; } NAME##_v;
#define CY_BLK_ZERO(NAME) (NAME##_zero())
#define CY_BLK_MASKED_FN(NAME, T, IT, TARGET)                                                \
static NAME##_v NAME##_masked(const T *p, const IT *k) { NAME##_v v; int i;                  \
    for (i = 0; i < NAME##_V; i++) v.e[i] = k[i] ? p[i] : 0; return v; }
#endif

/* One variant: NAME, element type T (IT: the integer type of its size), vector bytes VB,
   accumulators ACC, CASES_ACC, CASES_HALF, CASES_3RD, CASES_4TH and CASES_6TH the switch cases
   up to ACC, ACC / 2, ACC / 3, ACC / 4 and ACC / 6 (CASES_DX3: of the 3-vector dx tiles), JB
   the most pixel vectors per dx tile (2, 3 or 4), SPREAD the shuffles of fwdr's and dwr's
   groups, REPEAT dwr's repeat of a 16-byte remainder, STORE4 fwdp's store of 4 filters. */
#define CY_BLOCKED(NAME, T, IT, VB, ACC, CASES_ACC, CASES_HALF, CASES_3RD, CASES_4TH,        \
                   CASES_6TH, CASES_DX3, JB, SPREAD, REPEAT, STORE4, TARGET)                 \
CY_BLK_VEC(NAME, T, IT, VB)                                                                  \
enum { NAME##_V = VB / sizeof(T) };                                                          \
                                                                                             \
/* acc += v * s, lane by lane (one FMA where the variant has it) */                          \
CY_BLK_INLINE TARGET void NAME##_fma(NAME##_v *acc, NAME##_v v, T s)                         \
{                                                                                            \
    CY_BLK_FMA_BODY(NAME)                                                                    \
}                                                                                            \
CY_BLK_INLINE TARGET NAME##_v NAME##_load(const T *p) { return *(const NAME##_v *)p; }       \
CY_BLK_INLINE TARGET void NAME##_store(T *p, NAME##_v v) { *(NAME##_v *)p = v; }             \
CY_BLK_ZERO_FN(NAME, T, TARGET)                                                              \
CY_BLK_ADD_FN(NAME, T, TARGET)                                                               \
CY_BLK_MASKED_FN(NAME, T, IT, TARGET)                                                        \
CY_BLK_SPREAD_FN(NAME, T, SPREAD, TARGET)                                                    \
CY_BLK_REPEAT_FN(NAME, T, REPEAT, TARGET)                                                    \
CY_BLK_STORE4_FN(NAME, T, STORE4, TARGET)                                                    \
                                                                                             \
/* The forward tile: pb pixels of ra rows, kb whole vectors of filters each, and (fwdr) ng   \
   groups of g of those pixels whose remainder of V / g filters shares a vector (below) */   \
CY_BLK_INLINE TARGET void                                                                    \
NAME##_fwd_tile(T *dst, Py_ssize_t ldd, Py_ssize_t rsd, const T *xr, Py_ssize_t rsx,         \
                const Py_ssize_t *off, const T *w, Py_ssize_t ldw, const T *init,            \
                Py_ssize_t nt, const int pb, const int kb, const int ra, const int ng,       \
                const int g)                                                                 \
{                                                                                            \
    NAME##_v acc[ACC], accr[ACC];                                                            \
    const int rm = NAME##_V / g;                                                             \
    Py_ssize_t t;                                                                            \
    int r, p, k, q, i, l;                                                                    \
    if (ra * (pb * kb + ng) > ACC || NAME##_V % g)                                           \
        return;                  /* (no such call: the tile sizes above ACC compile away) */ \
    CY_BLK_UNROLL for (r = 0; r < ra; r++) {                                                 \
        CY_BLK_UNROLL for (p = 0; p < pb; p++)                                               \
            CY_BLK_UNROLL for (k = 0; k < kb; k++)                                           \
                acc[(r * pb + p) * kb + k] = NAME##_load(init + k * NAME##_V);               \
        CY_BLK_UNROLL for (q = 0; q < ng; q++)                                               \
            accr[r * ng + q] = NAME##_load(init + kb * NAME##_V);                            \
    }                                                                                        \
    for (t = 0; t < nt; t++) {                                                               \
        const T *xo = xr + off[t], *x1 = xo + rsx;                                           \
        NAME##_v w0 = NAME##_load(w + t * ldw);                                              \
        NAME##_v w1 = kb > 1 ? NAME##_load(w + t * ldw + NAME##_V) : w0;                     \
        NAME##_v wr = ng > 0 ? NAME##_load(w + t * ldw + kb * NAME##_V) : w0;                \
        CY_BLK_UNROLL for (r = 0; r < ra; r++) {                                             \
            const T *xp = r == 0 ? xo : x1;                                                  \
            CY_BLK_UNROLL for (p = 0; p < pb; p++) {                                         \
                NAME##_fma(&acc[(r * pb + p) * kb], w0, xp[p]);                              \
                if (kb > 1)                                                                  \
                    NAME##_fma(&acc[(r * pb + p) * kb + 1], w1, xp[p]);                      \
            }                                                                                \
            /* (a whole vector read, V - g numbers past a group: the caller leaves room) */  \
            CY_BLK_UNROLL for (q = 0; q < ng; q++)                                           \
                NAME##_fmav(&accr[r * ng + q], wr, NAME##_spread(xp + q * g, g));            \
        }                                                                                    \
    }                                                                                        \
    CY_BLK_UNROLL for (r = 0; r < ra; r++) {                                                 \
        CY_BLK_UNROLL for (p = 0; p < pb; p++)                                               \
            CY_BLK_UNROLL for (k = 0; k < kb; k++)                                           \
                NAME##_store(dst + r * rsd + p * ldd + k * NAME##_V,                         \
                             acc[(r * pb + p) * kb + k]);                                    \
        CY_BLK_UNROLL for (q = 0; q < ng; q++)                                               \
            CY_BLK_UNROLL for (i = 0; i < g; i++)                                            \
                CY_BLK_UNROLL for (l = 0; l < rm; l++)                                       \
                    dst[r * rsd + (q * g + i) * ldd + kb * NAME##_V + l] =                   \
                        CY_BLK_LANE(accr[r * ng + q], i * rm + l);                           \
    }                                                                                        \
}                                                                                            \
                                                                                             \
/* dst (ra <= 2 rows, rsd apart, of pb pixels ldd apart) = init + sum over the nt taps, row r \
   reading rsx further on in xr; 1 <= pb <= ACC / kb, kb in {1, 2}; ra = 2 only with kb = 1  \
   and pb <= ACC / 2 */                                                                      \
static TARGET void NAME##_fwd(T *dst, Py_ssize_t ldd, Py_ssize_t rsd, const T *xr,           \
                              Py_ssize_t rsx, const Py_ssize_t *off, const T *w,             \
                              Py_ssize_t ldw, const T *init, Py_ssize_t nt, int pb, int kb,  \
                              int ra)                                                        \
{                                                                                            \
    if (kb == 2) {                                                                           \
        switch (pb) { CASES_HALF(CY_BLK_FWD2, NAME) }                                        \
    } else if (ra == 2) {                                                                    \
        switch (pb) { CASES_HALF(CY_BLK_FWD1R2, NAME) }                                      \
    } else {                                                                                 \
        switch (pb) { CASES_ACC(CY_BLK_FWD1, NAME) }                                         \
    }                                                                                        \
}                                                                                            \
                                                                                             \
/* dst (ra rows, rsd apart, of ng g pixels ldd apart; K = kb V + V / g filters each) = init  \
   + the sum over the nt taps, w and init rows of (kb + 1) V numbers, the last vector the    \
   remainder's repeated; 1 <= ng <= 4, kb and ra in {1, 2}, g in {2, 4} */                  \
static TARGET void NAME##_fwdr(T *dst, Py_ssize_t ldd, Py_ssize_t rsd, const T *xr,          \
                               Py_ssize_t rsx, const Py_ssize_t *off, const T *w,            \
                               Py_ssize_t ldw, const T *init, Py_ssize_t nt, int ng, int kb, \
                               int ra, int g)                                                \
{                                                                                            \
    if (g == 2) {                                                                            \
        if (kb == 1) { if (ra == 1) { CY_BLK_FWDR_NG(NAME, 1, 1, 2) }                        \
                       else { CY_BLK_FWDR_NG(NAME, 1, 2, 2) } }                              \
        else { if (ra == 1) { CY_BLK_FWDR_NG(NAME, 2, 1, 2) }                                \
               else { CY_BLK_FWDR_NG(NAME, 2, 2, 2) } }                                      \
    } else {                                                                                 \
        if (kb == 1) { if (ra == 1) { CY_BLK_FWDR_NG(NAME, 1, 1, 4) }                        \
                       else { CY_BLK_FWDR_NG(NAME, 1, 2, 4) } }                              \
        else { if (ra == 1) { CY_BLK_FWDR_NG(NAME, 2, 1, 4) }                                \
               else { CY_BLK_FWDR_NG(NAME, 2, 2, 4) } }                                      \
    }                                                                                        \
}                                                                                            \
                                                                                             \
/* The forward tile with the output pixels in the lanes (fwdp): J vectors of V neighbouring  \
   pixels (vector j js numbers on from vector 0 in xr) x F <= 4 filters, each filter's number\
   of tap t broadcast from w: acc[f][j] = init[f] + sum_t w[t, f] * xr[off[t] + j js ...].   \
   The sums of a filter are apart from its neighbours', so each pixel's F numbers are stored \
   lane by lane, at dst + (j V + l) ldd (out's own layout).  F J + J + 1 <= 16 registers */  \
CY_BLK_INLINE TARGET void                                                                    \
NAME##_fwdp_tile(T *dst, Py_ssize_t ldd, const T *xr, Py_ssize_t js, const Py_ssize_t *off,  \
                 const T *w, Py_ssize_t ldw, const T *init, Py_ssize_t nt, const int F,      \
                 const int J)                                                                \
{                                                                                            \
    NAME##_v acc[ACC], xv[4];                                                                \
    Py_ssize_t t;                                                                            \
    int f, j, l;                                                                             \
    if (F * J > ACC || J > 4)                                                                \
        return;                  /* (no such call: the tile sizes above ACC compile away) */ \
    CY_BLK_UNROLL for (f = 0; f < F; f++)                                                    \
        CY_BLK_UNROLL for (j = 0; j < J; j++)                                                \
            acc[f * J + j] = NAME##_splat(init[f]);                                          \
    for (t = 0; t < nt; t++) {                                                               \
        const T *xo = xr + off[t], *wt = w + t * ldw;                                        \
        CY_BLK_UNROLL for (j = 0; j < J; j++)                                                \
            xv[j] = NAME##_load(xo + j * js);                                                \
        CY_BLK_UNROLL for (f = 0; f < F; f++)                                                \
            CY_BLK_UNROLL for (j = 0; j < J; j++)                                            \
                NAME##_fma(&acc[f * J + j], xv[j], wt[f]);                                   \
    }                                                                                        \
    CY_BLK_UNROLL for (j = 0; j < J; j++) {                                                  \
        if (F == 4) {                                                                        \
            NAME##_v a4[4];                                                                  \
            CY_BLK_UNROLL for (f = 0; f < 4; f++)                                            \
                a4[f] = acc[f * J + j];                                                      \
            NAME##_store4(dst + j * NAME##_V * ldd, ldd, a4);                                \
        } else                                                                               \
            CY_BLK_UNROLL for (l = 0; l < NAME##_V; l++)                                     \
                CY_BLK_UNROLL for (f = 0; f < F; f++)                                        \
                    dst[(j * NAME##_V + l) * ldd + f] = CY_BLK_LANE(acc[f * J + j], l);      \
    }                                                                                        \
}                                                                                            \
                                                                                             \
/* dst (J V pixels, ldd apart, of F filters) = init + the sum over the nt taps: 1 <= F <= 4, \
   1 <= J <= 3 */                                                                            \
static TARGET void NAME##_fwdp(T *dst, Py_ssize_t ldd, const T *xr, Py_ssize_t js,           \
                               const Py_ssize_t *off, const T *w, Py_ssize_t ldw,            \
                               const T *init, Py_ssize_t nt, int F, int J)                   \
{                                                                                            \
    switch (J * 4 + F) { CY_BLK_FWDP_CASES(NAME) }                                           \
}                                                                                            \
                                                                                             \
CY_BLK_INLINE TARGET void                                                                    \
NAME##_dw_tile(T *acc_io, Py_ssize_t lda, const T *x, Py_ssize_t xrow, Py_ssize_t xpix,      \
               const T *d, Py_ssize_t ldd, Py_ssize_t Ho, Py_ssize_t Wo, const int tb,       \
               const int kb, const int ra, Py_ssize_t rs)                                    \
{                                                                                            \
    NAME##_v acc[ACC];                                                                       \
    Py_ssize_t oh, ow;                                                                       \
    int r, t, k;                                                                             \
    CY_BLK_UNROLL for (r = 0; r < ra; r++)                                                   \
        CY_BLK_UNROLL for (t = 0; t < tb; t++)                                               \
            CY_BLK_UNROLL for (k = 0; k < kb; k++)                                           \
                acc[(r * tb + t) * kb + k] =                                                 \
                    NAME##_load(acc_io + (r * rs + t) * lda + k * NAME##_V);                 \
    for (oh = 0; oh < Ho; oh++) {                                                            \
        const T *xp = x + oh * xrow;                                                         \
        const T *dp = d + oh * Wo * ldd;                                                     \
        for (ow = 0; ow < Wo; ow++, xp += xpix, dp += ldd) {                                 \
            NAME##_v d0 = NAME##_load(dp);                                                   \
            NAME##_v d1 = kb > 1 ? NAME##_load(dp + NAME##_V) : d0;                          \
            /* a pointer per kernel row and the taps at fixed displacements from it (an      \
               index per tap ran out of registers) */                                        \
            const T *x1 = xp + xrow, *x2 = x1 + xrow;                                        \
            CY_BLK_UNROLL for (r = 0; r < ra; r++) {                                         \
                const T *xr = r == 0 ? xp : r == 1 ? x1 : x2;                                \
                CY_BLK_UNROLL for (t = 0; t < tb; t++) {                                     \
                    NAME##_fma(&acc[(r * tb + t) * kb], d0, xr[t]);                          \
                    if (kb > 1)                                                              \
                        NAME##_fma(&acc[(r * tb + t) * kb + 1], d1, xr[t]);                  \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
    CY_BLK_UNROLL for (r = 0; r < ra; r++)                                                   \
        CY_BLK_UNROLL for (t = 0; t < tb; t++)                                               \
            CY_BLK_UNROLL for (k = 0; k < kb; k++)                                           \
                NAME##_store(acc_io + (r * rs + t) * lda + k * NAME##_V,                     \
                             acc[(r * tb + t) * kb + k]);                                    \
}                                                                                            \
                                                                                             \
/* acc_io (ra groups of tb rows of lda, rs rows apart) += the products over every output      \
   pixel, the taps of group r read xrow further on in x (the next kernel row); 1 <= ra <= 3,  \
   1 <= ra * tb <= ACC / kb */                                                               \
static TARGET void NAME##_dw(T *acc_io, Py_ssize_t lda, const T *x, Py_ssize_t xrow,          \
                             Py_ssize_t xpix, const T *d, Py_ssize_t ldd, Py_ssize_t Ho,     \
                             Py_ssize_t Wo, int tb, int kb, int ra, Py_ssize_t rs)           \
{                                                                                            \
    if (kb == 2) {                                                                           \
        CY_BLK_DW_BY_RA(NAME, 2, CASES_6TH, CASES_4TH, CASES_HALF)                           \
    } else {                                                                                 \
        CY_BLK_DW_BY_RA(NAME, 1, CASES_3RD, CASES_HALF, CASES_ACC)                           \
    }                                                                                        \
}                                                                                            \
                                                                                             \
/* dW of a layer whose K filters are kb whole vectors and a remainder of 16 bytes (RM = V / G \
   filters, G = VB / 16 taps: keras_mnist c2's 20 = 2 x 8 + 4 on avx2, 16 + 4 on avx512):    \
   nq groups of G neighbouring taps, each tap's kb vectors of filters in kb accumulators, and \
   the remainders of a group's G taps sharing one: lanes (tap i, filter kb V + l) at i RM +  \
   l, multiplied by the G taps' numbers each spread over RM lanes and by the pixel's          \
   remainder repeated G times (reads a whole vector of x at each group and of d at kb V: the  \
   caller leaves room).  That vector is kept as it is, in the last vector of the group's     \
   first row of acc_io (the caller sorts the lanes out at the end).  Every sum still adds the \
   pixels in order with the same multiply-add: the bits of the dw tiles, without their zero   \
   filters (12 of avx512's 32 lanes for K = 20) */                                            \
CY_BLK_INLINE TARGET void                                                                    \
NAME##_dwr_tile(T *acc_io, Py_ssize_t lda, const T *x, Py_ssize_t xrow, Py_ssize_t xpix,     \
                const T *d, Py_ssize_t ldd, Py_ssize_t Ho, Py_ssize_t Wo, const int nq,      \
                const int kb)                                                                \
{                                                                                            \
    enum { G = VB / 16 };                                                                    \
    NAME##_v acc[ACC], accr[ACC];                                                            \
    Py_ssize_t oh, ow;                                                                       \
    int t, k, q;                                                                             \
    if (G < 2 || nq * (G * kb + 1) > ACC)                                                    \
        return;                  /* (no such call: the tile sizes above ACC compile away) */ \
    CY_BLK_UNROLL for (t = 0; t < nq * G; t++)                                               \
        CY_BLK_UNROLL for (k = 0; k < kb; k++)                                               \
            acc[t * kb + k] = NAME##_load(acc_io + t * lda + k * NAME##_V);                  \
    CY_BLK_UNROLL for (q = 0; q < nq; q++)                                                   \
        accr[q] = NAME##_load(acc_io + q * G * lda + kb * NAME##_V);                         \
    for (oh = 0; oh < Ho; oh++) {                                                            \
        const T *xp = x + oh * xrow;                                                         \
        const T *dp = d + oh * Wo * ldd;                                                     \
        for (ow = 0; ow < Wo; ow++, xp += xpix, dp += ldd) {                                 \
            NAME##_v d0 = NAME##_load(dp);                                                   \
            NAME##_v d1 = kb > 1 ? NAME##_load(dp + NAME##_V) : d0;                          \
            NAME##_v dr = NAME##_repeat(dp + kb * NAME##_V);                                 \
            CY_BLK_UNROLL for (t = 0; t < nq * G; t++) {                                     \
                NAME##_fma(&acc[t * kb], d0, xp[t]);                                         \
                if (kb > 1)                                                                  \
                    NAME##_fma(&acc[t * kb + 1], d1, xp[t]);                                 \
            }                                                                                \
            CY_BLK_UNROLL for (q = 0; q < nq; q++)                                           \
                NAME##_fmav(&accr[q], dr, NAME##_spread(xp + q * G, G));                     \
        }                                                                                    \
    }                                                                                        \
    CY_BLK_UNROLL for (t = 0; t < nq * G; t++)                                               \
        CY_BLK_UNROLL for (k = 0; k < kb; k++)                                               \
            NAME##_store(acc_io + t * lda + k * NAME##_V, acc[t * kb + k]);                  \
    CY_BLK_UNROLL for (q = 0; q < nq; q++)                                                   \
        NAME##_store(acc_io + q * G * lda + kb * NAME##_V, accr[q]);                         \
}                                                                                            \
                                                                                             \
/* acc_io (nq G rows of lda) += the products over every output pixel, K = kb V + RM filters \
   (the remainders in the grouped lanes above);                                              \
   1 <= nq <= 4, kb in {1, 2}, nq (G kb + 1) <= ACC */                                       \
static TARGET void NAME##_dwr(T *acc_io, Py_ssize_t lda, const T *x, Py_ssize_t xrow,         \
                              Py_ssize_t xpix, const T *d, Py_ssize_t ldd, Py_ssize_t Ho,    \
                              Py_ssize_t Wo, int nq, int kb)                                 \
{                                                                                            \
    if (kb == 2) {                                                                           \
        switch (nq) { CY_BLK_CASES4(CY_BLK_DWR2, NAME) }                                     \
    } else {                                                                                 \
        switch (nq) { CY_BLK_CASES4(CY_BLK_DWR1, NAME) }                                     \
    }                                                                                        \
}                                                                                            \
                                                                                             \
/* The dW tile with the taps in the lanes (dwp): J vectors of V neighbouring taps (b, c) of a \
   kernel row (vector j js numbers on in x; or J kernel rows, js = xrow, when a row's taps fit\
   one vector) x F <= 4 filters, each pixel's number of filter f broadcast from d:            \
   acc[f][j] (at acc_io + f lda + j ja) += sum over the output pixels of d[p, f] x[p; taps], \
   pixel after pixel: the bits of the dw tiles.  F J + J + 1 <= 16 registers */               \
CY_BLK_INLINE TARGET void                                                                    \
NAME##_dwp_tile(T *acc_io, Py_ssize_t lda, Py_ssize_t ja, const T *x, Py_ssize_t js,         \
                Py_ssize_t xrow, Py_ssize_t xpix, const T *d, Py_ssize_t ldd, Py_ssize_t Ho, \
                Py_ssize_t Wo, const int F, const int J)                                     \
{                                                                                            \
    NAME##_v acc[ACC], xv[4];                                                                \
    Py_ssize_t oh, ow;                                                                       \
    int f, j;                                                                                \
    if (F * J > ACC || J > 4)                                                                \
        return;                  /* (no such call: the tile sizes above ACC compile away) */ \
    CY_BLK_UNROLL for (f = 0; f < F; f++)                                                    \
        CY_BLK_UNROLL for (j = 0; j < J; j++)                                                \
            acc[f * J + j] = NAME##_load(acc_io + f * lda + j * ja);                         \
    for (oh = 0; oh < Ho; oh++) {                                                            \
        const T *xp = x + oh * xrow;                                                         \
        const T *dp = d + oh * Wo * ldd;                                                     \
        for (ow = 0; ow < Wo; ow++, xp += xpix, dp += ldd) {                                 \
            CY_BLK_UNROLL for (j = 0; j < J; j++)                                            \
                xv[j] = NAME##_load(xp + j * js);                                            \
            CY_BLK_UNROLL for (f = 0; f < F; f++)                                            \
                CY_BLK_UNROLL for (j = 0; j < J; j++)                                        \
                    NAME##_fma(&acc[f * J + j], xv[j], dp[f]);                               \
        }                                                                                    \
    }                                                                                        \
    CY_BLK_UNROLL for (f = 0; f < F; f++)                                                    \
        CY_BLK_UNROLL for (j = 0; j < J; j++)                                                \
            NAME##_store(acc_io + f * lda + j * ja, acc[f * J + j]);                         \
}                                                                                            \
                                                                                             \
/* acc_io += the dW of F filters x J vectors of taps over every output pixel: 1 <= F <= 4,   \
   1 <= J <= 3 */                                                                            \
static TARGET void NAME##_dwp(T *acc_io, Py_ssize_t lda, Py_ssize_t ja, const T *x,          \
                              Py_ssize_t js, Py_ssize_t xrow, Py_ssize_t xpix, const T *d,   \
                              Py_ssize_t ldd, Py_ssize_t Ho, Py_ssize_t Wo, int F, int J)    \
{                                                                                            \
    switch (J * 4 + F) { CY_BLK_DWP_CASES(NAME) }                                            \
}                                                                                            \
                                                                                             \
CY_BLK_INLINE TARGET void                                                                    \
NAME##_dx_tile(T *dst, const Py_ssize_t *off, const T *wt, Py_ssize_t ldw, const T *src,     \
               Py_ssize_t lds, Py_ssize_t nk, const int tb, const int jb)                    \
{                                                                                            \
    NAME##_v acc[6 * JB], v[JB];                                                             \
    Py_ssize_t k;                                                                            \
    int t, j;                                                                                \
    CY_BLK_UNROLL for (t = 0; t < tb * jb; t++)                                              \
        acc[t] = CY_BLK_ZERO(NAME);                                                          \
    for (k = 0; k < nk; k++) {                                                               \
        const T *s = src + k * lds;                                                          \
        const T *w = wt + k * ldw;                                                           \
        CY_BLK_UNROLL for (j = 0; j < jb; j++)                                               \
            v[j] = NAME##_load(s + j * NAME##_V);                                            \
        CY_BLK_UNROLL for (t = 0; t < tb; t++)                                               \
            CY_BLK_UNROLL for (j = 0; j < jb; j++)                                           \
                NAME##_fma(&acc[t * jb + j], v[j], w[t]);                                    \
    }                                                                                        \
    CY_BLK_UNROLL for (t = 0; t < tb; t++) {                                                 \
        T *d = dst + off[t];                                                                 \
        CY_BLK_UNROLL for (j = 0; j < jb; j++)                                               \
            NAME##_store(d + j * NAME##_V,                                                   \
                         NAME##_add(NAME##_load(d + j * NAME##_V), acc[t * jb + j]));        \
    }                                                                                        \
}                                                                                            \
                                                                                             \
/* dst[off[t] + (jb vectors)] += sum over the nk filters of src[k] * wt[k, t], t < tb <= 6,  \
   2 <= jb <= JB (a variant compiles only the widths up to its JB) */                        \
static TARGET void NAME##_dx(T *dst, const Py_ssize_t *off, const T *wt, Py_ssize_t ldw,     \
                             const T *src, Py_ssize_t lds, Py_ssize_t nk, int tb, int jb)    \
{                                                                                            \
    if (JB >= 4 && jb == 4) {                                                                \
        switch (tb) { CY_BLK_CASES6(CY_BLK_DX4, NAME) }                                      \
    } else if (JB >= 3 && jb == 3) {                                                         \
        switch (tb) { CASES_DX3(CY_BLK_DX3, NAME) }                                          \
    } else {                                                                                 \
        switch (tb) { CY_BLK_CASES6(CY_BLK_DX2, NAME) }                                      \
    }                                                                                        \
}                                                                                            \
                                                                                             \
/* dxt (C * Hp rows of ldt numbers, ldt whole vectors) = the kw column-shifted planes of dx   \
   (planeb numbers apart, plane (b, c) the b-th of channel c, rows Wo wide) added in order   \
   b = 0, 1, ...: dxt[c, i, s] = sum_b plane(b, c)[i * Wo + s - b] where keep[b, s] (that is, \
   b <= s < b + Wo), + 0 elsewhere.  Reads up to kw - 1 numbers before a plane's row and up  \
   to ldt - Wo past it (the caller leaves room) */                                           \
static TARGET void NAME##_gather(T *dxt, Py_ssize_t ldt, const T *planes, Py_ssize_t planeb,  \
                                 const IT *keep, Py_ssize_t C, Py_ssize_t Hp, Py_ssize_t Wo, \
                                 Py_ssize_t kw)                                              \
{                                                                                            \
    Py_ssize_t c, i, j, b;                                                                   \
    for (c = 0; c < C; c++)                                                                  \
        for (i = 0; i < Hp; i++)                                                             \
            for (j = 0; j < ldt; j += NAME##_V) {                                            \
                const T *src = planes + c * planeb + i * Wo + j;                             \
                NAME##_v sum = CY_BLK_ZERO(NAME);                                            \
                for (b = 0; b < kw; b++)                                                     \
                    sum = NAME##_add(sum, NAME##_masked(src + b * (C * planeb - 1),          \
                                                        keep + b * ldt + j));                \
                NAME##_store(dxt + (c * Hp + i) * ldt + j, sum);                             \
            }                                                                                \
}

/* fwdp's store of 4 filters' sums (a vector of pixels each) as the pixels' rows, lane by
   lane (the variants without a transpose of their own, other compilers) */
#define CY_BLK_STORE4_LANES(NAME, T, d, ldd, a)                                              \
    do {                                                                                     \
        int l_, f_;                                                                          \
        for (l_ = 0; l_ < NAME##_V; l_++)                                                    \
            for (f_ = 0; f_ < 4; f_++)                                                       \
                d[l_ * ldd + f_] = CY_BLK_LANE(a[f_], l_);                                   \
    } while (0)
#define CY_BLK_STORE4_FN(NAME, T, STORE4, TARGET)                                            \
CY_BLK_INLINE TARGET void NAME##_store4(T *d, Py_ssize_t ldd, const NAME##_v *a)             \
{ STORE4(NAME, T, d, ldd, a); }
#if defined(__GNUC__)
#define CY_BLK_FMA_BODY(NAME) *acc += v * s;
#define CY_BLK_LANE(v, i) ((v)[i])
/* fwdr: acc += a * b lane by lane; the first g numbers at x, each over V / g lanes */
#define CY_BLK_SPREAD_FN(NAME, T, SPREAD, TARGET)                                            \
CY_BLK_INLINE TARGET void NAME##_fmav(NAME##_v *acc, NAME##_v a, NAME##_v b)                 \
{ *acc += a * b; }                                                                           \
CY_BLK_INLINE TARGET NAME##_v NAME##_spread(const T *x, const int g)                         \
{ NAME##_v t = NAME##_load(x); return SPREAD(NAME##_iv, t, g); }
/* dwr: the first 16 bytes at x repeated over the vector */
#define CY_BLK_REPEAT_FN(NAME, T, REPEAT, TARGET)                                            \
CY_BLK_INLINE TARGET NAME##_v NAME##_repeat(const T *x)                                      \
{ NAME##_v t = NAME##_load(x); return REPEAT(NAME##_iv, t); }
/* every lane s (s - 0 is s, -0.0 and NaN included) */
#define CY_BLK_ZERO_FN(NAME, T, TARGET)                                                      \
CY_BLK_INLINE TARGET NAME##_v NAME##_splat(T s) { return s - CY_BLK_ZERO(NAME); }
#define CY_BLK_ADD_FN(NAME, T, TARGET)                                                       \
CY_BLK_INLINE TARGET NAME##_v NAME##_add(NAME##_v a, NAME##_v b) { return a + b; }
#else
#define CY_BLK_FMA_BODY(NAME)                                                                \
    int i;                                                                                   \
    for (i = 0; i < NAME##_V; i++)                                                           \
        acc->e[i] += v.e[i] * s;
#define CY_BLK_ZERO_FN(NAME, T, TARGET)                                                      \
static NAME##_v NAME##_zero(void) { NAME##_v z; int i;                                       \
    for (i = 0; i < NAME##_V; i++) z.e[i] = 0; return z; }                                   \
static NAME##_v NAME##_splat(T s) { NAME##_v z; int i;                                       \
    for (i = 0; i < NAME##_V; i++) z.e[i] = s; return z; }
#define CY_BLK_ADD_FN(NAME, T, TARGET)                                                       \
static NAME##_v NAME##_add(NAME##_v a, NAME##_v b) { int i;                                  \
    for (i = 0; i < NAME##_V; i++) a.e[i] += b.e[i]; return a; }
#define CY_BLK_LANE(v, i) ((v).e[i])
#define CY_BLK_SPREAD_FN(NAME, T, SPREAD, TARGET)                                            \
static void NAME##_fmav(NAME##_v *acc, NAME##_v a, NAME##_v b) { int i;                      \
    for (i = 0; i < NAME##_V; i++) acc->e[i] += a.e[i] * b.e[i]; }                           \
static NAME##_v NAME##_spread(const T *x, const int g) { NAME##_v v; int i;                  \
    for (i = 0; i < NAME##_V; i++) v.e[i] = x[i / (NAME##_V / g)]; return v; }
#define CY_BLK_REPEAT_FN(NAME, T, REPEAT, TARGET)                                            \
static NAME##_v NAME##_repeat(const T *x) { NAME##_v v; int i;                               \
    for (i = 0; i < NAME##_V; i++) v.e[i] = x[i % (16 / sizeof(T))]; return v; }
#endif

#if !defined(__GNUC__)
#define CY_BLK_STORE4_F8 CY_BLK_STORE4_LANES
#define CY_BLK_STORE4_D4 CY_BLK_STORE4_LANES
#define CY_BLK_STORE4_F4 CY_BLK_STORE4_LANES
#define CY_BLK_STORE4_D2 CY_BLK_STORE4_LANES
#endif

/* The layout copies of the blocked path (_blocked.pyx: the image stored row-planar, dout
   planar, dx back to channels-last) are transposes of small matrices: dst[r * ldd + s] =
   src[s * lds + r] for r < R, s < S.  They go in blocks of B x B numbers (B the numbers of a
   32-byte vector, of a 16-byte one in the default variant): B vector loads, the log2(B) rounds
   of interleaves below (what unpcklps / shufps / vperm2f128 do on AVX), B vector stores.  A
   block's loads read B numbers from column r even when fewer than B rows are left (R - r < B:
   LeNet c2's 6 channels) -- never past src + avail, else the block is copied number by number;
   the columns' last block starts at S - B (it stores some numbers a second time); and when
   S < B (fewer columns than a vector, rows of dst dense: ldd == S) each row of the block is
   stored as a whole vector, its tail landing on the next rows, which are stored after it, and
   the rows near the end whose tail would pass dst's last row number by number.  (Number by
   number every copy of LeNet c2's backward took three cycles a number: a sixth of its time on
   avx2.)  Moves only, so the same bits in every variant. */
#if defined(__GNUC__)
#  if defined(__has_builtin)
#    if __has_builtin(__builtin_shufflevector)
#      define CY_BLK_SHUF(IV, a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#    endif
#  endif
#  ifndef CY_BLK_SHUF
#    define CY_BLK_SHUF(IV, a, b, ...) __builtin_shuffle(a, b, (IV){__VA_ARGS__})
#  endif
/* rows m[0..B-1] of a B x B block become its columns, in place */
#define CY_BLK_TRANSPOSE_F8(V, IV, m)                                                        \
    do {                                                                                     \
        V t_[8], s_[8]; int q_;                                                              \
        for (q_ = 0; q_ < 8; q_ += 2) {                                                      \
            t_[q_] = CY_BLK_SHUF(IV, m[q_], m[q_ + 1], 0, 8, 1, 9, 4, 12, 5, 13);            \
            t_[q_ + 1] = CY_BLK_SHUF(IV, m[q_], m[q_ + 1], 2, 10, 3, 11, 6, 14, 7, 15);      \
        }                                                                                    \
        for (q_ = 0; q_ < 8; q_ += 4) {                                                      \
            s_[q_] = CY_BLK_SHUF(IV, t_[q_], t_[q_ + 2], 0, 1, 8, 9, 4, 5, 12, 13);          \
            s_[q_ + 1] = CY_BLK_SHUF(IV, t_[q_], t_[q_ + 2], 2, 3, 10, 11, 6, 7, 14, 15);    \
            s_[q_ + 2] = CY_BLK_SHUF(IV, t_[q_ + 1], t_[q_ + 3], 0, 1, 8, 9, 4, 5, 12, 13);  \
            s_[q_ + 3] = CY_BLK_SHUF(IV, t_[q_ + 1], t_[q_ + 3], 2, 3, 10, 11, 6, 7, 14, 15);\
        }                                                                                    \
        for (q_ = 0; q_ < 4; q_++) {                                                         \
            m[q_] = CY_BLK_SHUF(IV, s_[q_], s_[q_ + 4], 0, 1, 2, 3, 8, 9, 10, 11);           \
            m[q_ + 4] = CY_BLK_SHUF(IV, s_[q_], s_[q_ + 4], 4, 5, 6, 7, 12, 13, 14, 15);     \
        }                                                                                    \
    } while (0)
/* 4 x 4: the first round interleaves numbers l0.. and h0.. of two rows (doubles in 32 bytes:
   the 128-bit halves, unpcklpd; floats in 16 bytes: neighbours, unpcklps), the second takes
   halves; its 2nd and 3rd results are columns 2 and 1 when SWAP (doubles), else 1 and 2 */
#define CY_BLK_TRANSPOSE4(V, IV, m, l0, l1, l2, l3, h0, h1, h2, h3, SWAP)                    \
    do {                                                                                     \
        V t0_ = CY_BLK_SHUF(IV, m[0], m[1], l0, l1, l2, l3);                                 \
        V t1_ = CY_BLK_SHUF(IV, m[0], m[1], h0, h1, h2, h3);                                 \
        V t2_ = CY_BLK_SHUF(IV, m[2], m[3], l0, l1, l2, l3);                                 \
        V t3_ = CY_BLK_SHUF(IV, m[2], m[3], h0, h1, h2, h3);                                 \
        m[0] = CY_BLK_SHUF(IV, t0_, t2_, 0, 1, 4, 5);                                        \
        m[SWAP ? 2 : 1] = CY_BLK_SHUF(IV, t0_, t2_, 2, 3, 6, 7);                             \
        m[SWAP ? 1 : 2] = CY_BLK_SHUF(IV, t1_, t3_, 0, 1, 4, 5);                             \
        m[3] = CY_BLK_SHUF(IV, t1_, t3_, 2, 3, 6, 7);                                        \
    } while (0)
#define CY_BLK_TRANSPOSE_D4(V, IV, m) CY_BLK_TRANSPOSE4(V, IV, m, 0, 4, 2, 6, 1, 5, 3, 7, 1)
#define CY_BLK_TRANSPOSE_F4(V, IV, m) CY_BLK_TRANSPOSE4(V, IV, m, 0, 4, 1, 5, 2, 6, 3, 7, 0)
#define CY_BLK_TRANSPOSE_D2(V, IV, m)                                                        \
    do {                                                                                     \
        V t0_ = CY_BLK_SHUF(IV, m[0], m[1], 0, 2);                                           \
        m[1] = CY_BLK_SHUF(IV, m[0], m[1], 1, 3);                                            \
        m[0] = t0_;                                                                          \
    } while (0)

#define CY_BLK_TRANSPOSE_FN(NAME, T, IT, TB, BLOCK, TARGET)                                 \
typedef T NAME##_tv __attribute__((vector_size(TB), aligned(sizeof(T)), may_alias));         \
typedef IT NAME##_tiv __attribute__((vector_size(TB)));                                      \
static TARGET void NAME##_transpose(T *dst, Py_ssize_t ldd, const T *src, Py_ssize_t lds,    \
                                    Py_ssize_t R, Py_ssize_t S, Py_ssize_t avail)            \
{                                                                                            \
    enum { B = TB / sizeof(T) };                                                             \
    Py_ssize_t r, s0, s, nr, ns, q, e, last = (R - 1) * ldd + S;                             \
    for (r = 0; r < R; r += B) {                                                             \
        nr = R - r < B ? R - r : B;                                                          \
        for (s0 = 0; s0 < S; s0 += B) {                                                      \
            NAME##_tv m[B];                                                                  \
            s = S >= B && s0 + B > S ? S - B : s0;                                           \
            ns = S - s < B ? S - s : B;                                                      \
            if ((s + ns - 1) * lds + r + B > avail || (ns < B && ldd != S)) {                \
                for (q = 0; q < ns; q++)                                                     \
                    for (e = 0; e < nr; e++)                                                 \
                        dst[(r + e) * ldd + s + q] = src[(s + q) * lds + r + e];             \
                continue;                                                                    \
            }                                                                                \
            for (q = 0; q < B; q++)                                                          \
                m[q] = q < ns ? *(const NAME##_tv *)(src + (s + q) * lds + r) : (NAME##_tv){0};\
            BLOCK(NAME##_tv, NAME##_tiv, m);                                                 \
            for (e = 0; e < nr; e++) {                                                       \
                T *d = dst + (r + e) * ldd + s;                                              \
                if (ns == B || (r + e) * ldd + s + B <= last)                                \
                    *(NAME##_tv *)d = m[e];                                                  \
                else                                                                         \
                    for (q = 0; q < ns; q++)                                                 \
                        d[q] = src[(s + q) * lds + r + e];                                   \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
}
#else
/* other compilers: number by number */
#define CY_BLK_TRANSPOSE_FN(NAME, T, IT, TB, BLOCK, TARGET)                                 \
static void NAME##_transpose(T *dst, Py_ssize_t ldd, const T *src, Py_ssize_t lds,           \
                             Py_ssize_t R, Py_ssize_t S, Py_ssize_t avail)                   \
{                                                                                            \
    Py_ssize_t r, s;                                                                         \
    (void)avail;                                                                             \
    for (s = 0; s < S; s++)                                                                  \
        for (r = 0; r < R; r++)                                                              \
            dst[r * ldd + s] = src[s * lds + r];                                             \
}
#endif

/* The forward tiles of a layer whose K filters are kb whole vectors and a remainder of rm =
 * V / g filters (keras_mnist c2's 20: 2 x 8 + 4 on avx2, g = 2; 16 + 4 on avx512, g = 4): the
 * remainder of g neighbouring pixels shares one vector, lanes (pixel p0 + i, filter kb V + l)
 * at i rm + l, multiplied by the weights' last vector (the remainder's rm weights repeated g
 * times, ``_blocked.pyx`` lays them out so) and by the g pixels' numbers each spread over rm
 * lanes.  So no lane multiplies a zero filter (keras_mnist c2 ran 24 of its 32 avx512 lanes,
 * or 20 of 24 on avx2, on padding).  Each output still adds its taps one after the other to
 * its bias in tap order, with the same multiply-add: the bits of the one-vector-per-pixel
 * tiles.  pb = ng g pixels of ra <= 2 rows, ra (pb kb + ng) <= ACC accumulators. */
#if defined(__GNUC__)
/* the first g numbers of vector t, each spread over V / g lanes (one vpermps) */
#define CY_BLK_SPREAD16(IV, t, g) ((g) == 2 ?                                                \
    CY_BLK_SHUF(IV, t, t, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1) :                  \
    CY_BLK_SHUF(IV, t, t, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3))
#define CY_BLK_SPREAD8(IV, t, g) ((g) == 2 ? CY_BLK_SHUF(IV, t, t, 0, 0, 0, 0, 1, 1, 1, 1) :  \
                                             CY_BLK_SHUF(IV, t, t, 0, 0, 1, 1, 2, 2, 3, 3))
#define CY_BLK_SPREAD4(IV, t, g) ((g) == 2 ? CY_BLK_SHUF(IV, t, t, 0, 0, 1, 1) :             \
                                             CY_BLK_SHUF(IV, t, t, 0, 1, 2, 3))
#define CY_BLK_SPREAD2(IV, t, g) (t)
/* dwr (dW, K = kb V + 16 bytes of filters): the first 16 bytes of vector t repeated over it */
#define CY_BLK_REPEAT_F16(IV, t)                                                             \
    CY_BLK_SHUF(IV, t, t, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3)
#define CY_BLK_REPEAT_F8(IV, t) CY_BLK_SHUF(IV, t, t, 0, 1, 2, 3, 0, 1, 2, 3)
#define CY_BLK_REPEAT_D8(IV, t) CY_BLK_SHUF(IV, t, t, 0, 1, 0, 1, 0, 1, 0, 1)
#define CY_BLK_REPEAT_D4(IV, t) CY_BLK_SHUF(IV, t, t, 0, 1, 0, 1)
#define CY_BLK_REPEAT_ID(IV, t) (t)
/* fwdp: the sums a[0..3] of 4 filters (a vector of pixels each) stored as the pixels' rows
   of 4 numbers, ldd apart: a 4 x V transpose in registers (32-byte floats: 4 x 4 in each
   16-byte half, the halves stored apart; doubles: 4 x 4, or two 2 x 2 in 16 bytes) */
#define CY_BLK_STORE4_F8(NAME, T, d, ldd, a)                                                 \
    do {                                                                                     \
        typedef T h_ __attribute__((vector_size(16), aligned(sizeof(T)), may_alias));        \
        NAME##_v t_[4], u_; int q_;                                                          \
        t_[0] = CY_BLK_SHUF(NAME##_iv, a[0], a[1], 0, 8, 1, 9, 4, 12, 5, 13);                \
        t_[1] = CY_BLK_SHUF(NAME##_iv, a[0], a[1], 2, 10, 3, 11, 6, 14, 7, 15);              \
        t_[2] = CY_BLK_SHUF(NAME##_iv, a[2], a[3], 0, 8, 1, 9, 4, 12, 5, 13);                \
        t_[3] = CY_BLK_SHUF(NAME##_iv, a[2], a[3], 2, 10, 3, 11, 6, 14, 7, 15);              \
        for (q_ = 0; q_ < 4; q_++) {      /* pixels q_ and q_ + 4 */                         \
            NAME##_v l_ = t_[q_ / 2], r_ = t_[q_ / 2 + 2];                                   \
            u_ = q_ % 2 == 0 ? CY_BLK_SHUF(NAME##_iv, l_, r_, 0, 1, 8, 9, 4, 5, 12, 13) :    \
                               CY_BLK_SHUF(NAME##_iv, l_, r_, 2, 3, 10, 11, 6, 7, 14, 15);   \
            *(h_ *)(d + q_ * ldd) = (h_){u_[0], u_[1], u_[2], u_[3]};                        \
            *(h_ *)(d + (q_ + 4) * ldd) = (h_){u_[4], u_[5], u_[6], u_[7]};                  \
        }                                                                                    \
    } while (0)
#define CY_BLK_STORE4_SQUARE(NAME, T, d, ldd, a, BLOCK)                                      \
    do {                                                                                     \
        NAME##_v m_[4] = {a[0], a[1], a[2], a[3]}; int q_;                                   \
        BLOCK(NAME##_v, NAME##_iv, m_);                                                      \
        for (q_ = 0; q_ < 4; q_++)                                                           \
            NAME##_store(d + q_ * ldd, m_[q_]);                                              \
    } while (0)
#define CY_BLK_STORE4_D4(NAME, T, d, ldd, a)                                                 \
    CY_BLK_STORE4_SQUARE(NAME, T, d, ldd, a, CY_BLK_TRANSPOSE_D4)
#define CY_BLK_STORE4_F4(NAME, T, d, ldd, a)                                                 \
    CY_BLK_STORE4_SQUARE(NAME, T, d, ldd, a, CY_BLK_TRANSPOSE_F4)
#define CY_BLK_STORE4_D2(NAME, T, d, ldd, a)                                                 \
    do {                                                                                     \
        NAME##_v l_[2] = {a[0], a[1]}, h_[2] = {a[2], a[3]};                                 \
        CY_BLK_TRANSPOSE_D2(NAME##_v, NAME##_iv, l_);                                        \
        CY_BLK_TRANSPOSE_D2(NAME##_v, NAME##_iv, h_);                                        \
        NAME##_store(d, l_[0]); NAME##_store(d + 2, h_[0]);                                  \
        NAME##_store(d + ldd, l_[1]); NAME##_store(d + ldd + 2, h_[1]);                      \
    } while (0)
#endif

#define CY_NO_TARGET_BLK
/* the switch cases of 12 and of 24 accumulators: up to ACC, ACC / 2, / 3, / 4 and / 6 */
#define CY_BLK_ACC12(NAME, T, IT, VB, JB, SPREAD, REPEAT, STORE4, TARGET)                    \
    CY_BLOCKED(NAME, T, IT, VB, 12, CY_BLK_CASES12, CY_BLK_CASES6, CY_BLK_CASES4,             \
               CY_BLK_CASES3, CY_BLK_CASES2, CY_BLK_CASES4, JB, SPREAD, REPEAT, STORE4,      \
               TARGET)
#define CY_BLK_ACC24(NAME, T, IT, VB, JB, SPREAD, REPEAT, STORE4, TARGET)                    \
    CY_BLOCKED(NAME, T, IT, VB, 24, CY_BLK_CASES24, CY_BLK_CASES12, CY_BLK_CASES8,            \
               CY_BLK_CASES6, CY_BLK_CASES4, CY_BLK_CASES6, JB, SPREAD, REPEAT, STORE4,      \
               TARGET)
CY_BLK_ACC12(cy_blk_default_f, float, int32_t, 16, 2, CY_BLK_SPREAD4, CY_BLK_REPEAT_ID,
             CY_BLK_STORE4_F4, CY_NO_TARGET_BLK)
CY_BLK_ACC12(cy_blk_default_d, double, int64_t, 16, 2, CY_BLK_SPREAD2, CY_BLK_REPEAT_ID,
             CY_BLK_STORE4_D2, CY_NO_TARGET_BLK)
CY_BLK_TRANSPOSE_FN(cy_blk_default_f, float, int32_t, 16, CY_BLK_TRANSPOSE_F4,
                    CY_NO_TARGET_BLK)
CY_BLK_TRANSPOSE_FN(cy_blk_default_d, double, int64_t, 16, CY_BLK_TRANSPOSE_D2,
                    CY_NO_TARGET_BLK)
#if CY_ISA_X86
CY_BLK_ACC12(cy_blk_avx2_f, float, int32_t, 32, 3, CY_BLK_SPREAD8, CY_BLK_REPEAT_F8,
             CY_BLK_STORE4_F8, CY_TARGET_AVX2)
CY_BLK_ACC12(cy_blk_avx2_d, double, int64_t, 32, 3, CY_BLK_SPREAD4, CY_BLK_REPEAT_D4,
             CY_BLK_STORE4_D4, CY_TARGET_AVX2)
CY_BLK_ACC24(cy_blk_avx512_f, float, int32_t, 64, 4, CY_BLK_SPREAD16, CY_BLK_REPEAT_F16,
             CY_BLK_STORE4_LANES, CY_TARGET_AVX512)
CY_BLK_ACC24(cy_blk_avx512_d, double, int64_t, 64, 4, CY_BLK_SPREAD8, CY_BLK_REPEAT_D8,
             CY_BLK_STORE4_LANES, CY_TARGET_AVX512)
/* (the transposes of both use 32-byte vectors: blocks of 16 x 16 would rarely fill) */
CY_BLK_TRANSPOSE_FN(cy_blk_avx2_f, float, int32_t, 32, CY_BLK_TRANSPOSE_F8, CY_TARGET_AVX2)
CY_BLK_TRANSPOSE_FN(cy_blk_avx2_d, double, int64_t, 32, CY_BLK_TRANSPOSE_D4, CY_TARGET_AVX2)
CY_BLK_TRANSPOSE_FN(cy_blk_avx512_f, float, int32_t, 32, CY_BLK_TRANSPOSE_F8,
                    CY_TARGET_AVX512)
CY_BLK_TRANSPOSE_FN(cy_blk_avx512_d, double, int64_t, 32, CY_BLK_TRANSPOSE_D4,
                    CY_TARGET_AVX512)
#endif

/* The variant in use (cy_blk_select), as a table of its three kernels and its tile limits. */
#define CY_BLK_TABLE(T, IT, S)                                                               \
typedef struct {                                                                             \
    void (*fwd)(T *, Py_ssize_t, Py_ssize_t, const T *, Py_ssize_t, const Py_ssize_t *,      \
                const T *, Py_ssize_t, const T *, Py_ssize_t, int, int, int);                \
    void (*dw)(T *, Py_ssize_t, const T *, Py_ssize_t, Py_ssize_t, const T *, Py_ssize_t,    \
               Py_ssize_t, Py_ssize_t, int, int, int, Py_ssize_t);                           \
    void (*dx)(T *, const Py_ssize_t *, const T *, Py_ssize_t, const T *, Py_ssize_t,        \
               Py_ssize_t, int, int);                                                           \
    void (*gather)(T *, Py_ssize_t, const T *, Py_ssize_t, const IT *, Py_ssize_t,           \
                   Py_ssize_t, Py_ssize_t, Py_ssize_t);                                      \
    void (*transpose)(T *, Py_ssize_t, const T *, Py_ssize_t, Py_ssize_t, Py_ssize_t,        \
                      Py_ssize_t);                                                           \
    void (*fwdr)(T *, Py_ssize_t, Py_ssize_t, const T *, Py_ssize_t, const Py_ssize_t *,     \
                 const T *, Py_ssize_t, const T *, Py_ssize_t, int, int, int, int);          \
    void (*dwr)(T *, Py_ssize_t, const T *, Py_ssize_t, Py_ssize_t, const T *, Py_ssize_t,   \
                Py_ssize_t, Py_ssize_t, int, int);                                           \
    void (*fwdp)(T *, Py_ssize_t, const T *, Py_ssize_t, const Py_ssize_t *, const T *,      \
                 Py_ssize_t, const T *, Py_ssize_t, int, int);                               \
    void (*dwp)(T *, Py_ssize_t, Py_ssize_t, const T *, Py_ssize_t, Py_ssize_t, Py_ssize_t,  \
                const T *, Py_ssize_t, Py_ssize_t, Py_ssize_t, int, int);                    \
} cy_blk_kernels_##S;                                                                        \
static cy_blk_kernels_##S cy_blk_##S = {cy_blk_default_##S##_fwd, cy_blk_default_##S##_dw,  \
                                        cy_blk_default_##S##_dx,                             \
                                        cy_blk_default_##S##_gather,                         \
                                        cy_blk_default_##S##_transpose,                      \
                                        cy_blk_default_##S##_fwdr,                           \
                                        cy_blk_default_##S##_dwr,                            \
                                        cy_blk_default_##S##_fwdp,                           \
                                        cy_blk_default_##S##_dwp};
CY_BLK_TABLE(float, int32_t, f)
CY_BLK_TABLE(double, int64_t, d)

/* lanes per vector (floats), accumulators and the most pixel vectors per dx tile (JB) of the
   variant in use */
static int cy_blk_lanes = 4, cy_blk_acc = 12, cy_blk_jb = 2;

#define CY_BLK_USE(VARIANT, VB, ACC, JB)                                                     \
    do {                                                                                     \
        cy_blk_f.fwd = VARIANT##_f_fwd; cy_blk_f.dw = VARIANT##_f_dw;                        \
        cy_blk_f.dx = VARIANT##_f_dx; cy_blk_f.gather = VARIANT##_f_gather;                  \
        cy_blk_f.transpose = VARIANT##_f_transpose;                                          \
        cy_blk_f.fwdr = VARIANT##_f_fwdr; cy_blk_f.dwr = VARIANT##_f_dwr;                    \
        cy_blk_f.fwdp = VARIANT##_f_fwdp; cy_blk_d.fwdp = VARIANT##_d_fwdp;                  \
        cy_blk_f.dwp = VARIANT##_f_dwp; cy_blk_d.dwp = VARIANT##_d_dwp;                      \
        cy_blk_d.fwd = VARIANT##_d_fwd; cy_blk_d.dw = VARIANT##_d_dw;                        \
        cy_blk_d.dx = VARIANT##_d_dx; cy_blk_d.gather = VARIANT##_d_gather;                  \
        cy_blk_d.transpose = VARIANT##_d_transpose;                                          \
        cy_blk_d.fwdr = VARIANT##_d_fwdr; cy_blk_d.dwr = VARIANT##_d_dwr;                    \
        cy_blk_lanes = VB / 4; cy_blk_acc = ACC; cy_blk_jb = JB;                              \
    } while (0)

/* Use variant ``isa`` (a CY_ISA_* value this CPU supports: the caller checks); returns it. */
static int cy_blk_select(int isa)
{
#if CY_ISA_X86
    if (isa == CY_ISA_AVX512) {
        CY_BLK_USE(cy_blk_avx512, 64, 24, 4);
        return isa;
    }
    if (isa == CY_ISA_AVX2) {
        CY_BLK_USE(cy_blk_avx2, 32, 12, 3);
        return isa;
    }
#endif
    (void)isa;
    CY_BLK_USE(cy_blk_default, 16, 12, 2);
    return CY_ISA_DEFAULT;
}

#endif
