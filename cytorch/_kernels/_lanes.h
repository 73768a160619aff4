/* cytorch/_kernels/_lanes.h -- the one inner loop of conv2d's direct path (``_direct.pyx``):
 *
 *     acc[j] += sum_{t < n} p[shift + off[t] + j] * q[t * qs + j % P]        for 0 <= j < L
 *
 * Every term is an elementwise product of two contiguous runs of L numbers ("lanes"), so the
 * sum is pure vector arithmetic, with no shuffles, whatever the channel counts are.
 *
 * Layout contract with the caller (``_direct.pyx``):
 * - L and P are whole numbers of 64-byte blocks (16 floats, 8 doubles): callers pad rows;
 * - q's rows may be periodic (tiled weights): a row then stores one period P and, unless P is a
 *   single 64-byte block, CY_LANES_WRAP more blocks of wrap-around (qs >= P + CY_LANES_WRAP
 *   blocks), so that a run of registers can be read from any vector offset below P.  P >= L
 *   means no period;
 * - every lane is summed in the same order in every variant: acc[j] plus the even terms (one
 *   chain), plus the odd terms (a second chain).  The AVX2 and AVX-512 variants, which both
 *   fuse each multiply-add (FMA, one rounding), give the same bits; the default variant on
 *   x86-64 (SSE2, no FMA) rounds each product first and may differ in the last bits.
 *
 * Instruction sets (see ``_isa.h``) and register blocking.  A block of NB vector registers is
 * held in registers while all n terms are added, even and odd terms into separate sums: 2 * NB
 * independent chains of multiply-adds hide their latency, and each block is stored once.
 *
 *     variant   vectors      NB   accumulators      registers
 *     avx512    64-byte zmm   8   16                32 zmm
 *     avx2      32-byte ymm   6   12                16 ymm (+ 2-4 weights; p is read by the FMA)
 *     default   16-byte xmm   4    8                16 xmm
 *
 * The avx2 variant had NB = 4 at first: a term then loaded 4 input and 2-4 weight vectors for 4
 * multiply-adds, and AVX2's half-width vectors left it load-bound.  With NB = 6 (a periodic
 * weight row's 2 vectors now serve 6), AMD EPYC Zen 5, LeNet c1 (64x28x28x1 -> 6 k5) forward +
 * backward on one thread: 1.21 -> 1.10 ms; the dx pass, periodic, gained most.  The blocks
 * left at the end of a row halve (4, 2, 1 vectors), whatever NB is.
 *
 * Checked with ``objdump -d`` on the module built by GCC 12.2 (-O3): the avx512 variant of
 * cy_lanes_dot_f uses vfmadd...ps on zmm registers, the avx2 variant vfmadd...ps on ymm
 * registers, the default variant mulps + addps on xmm registers, and no variant reads or writes
 * its accumulators on the stack inside the term loop (the avx512 variant keeps the 2-4-1
 * vector tail blocks' sums on the stack between calls of the loop, not inside it).
 * ``tests/test_isa.py`` repeats the check when objdump is installed.
 */
#ifndef CYTORCH_LANES_H
#define CYTORCH_LANES_H

#include <Python.h>
#include "_isa.h"

/* Blocks of wrap-around a periodic weight row needs after its period: the widest variant reads
   NB = 8 registers of 64 bytes from any 64-byte offset below P. */
#define CY_LANES_WRAP 7

#if defined(__GNUC__)

/* One block of nb vectors (nb a constant after inlining: the loops over i unroll, the arrays
   become registers).  periodic: q repeats every 64 bytes, i.e. every R vectors, and each term
   loads its R weight vectors once. */
#define CY_LANES_BLOCK(NAME, T, VB, NB, TARGET)                                              \
typedef T NAME##_vec __attribute__((vector_size(VB), aligned(sizeof(T)), may_alias));        \
static inline __attribute__((always_inline)) TARGET void                                     \
NAME##_block(T *acc, const T *pj, const Py_ssize_t *off, const T *qj, Py_ssize_t qs,         \
             int periodic, Py_ssize_t n, const int nb)                                      \
{                                                                                            \
    enum { R = 64 / VB };                                                                    \
    NAME##_vec *o = (NAME##_vec *)acc;                                                       \
    NAME##_vec a[NB], b[NB];                                                                 \
    Py_ssize_t t;                                                                            \
    int i;                                                                                   \
    for (i = 0; i < nb; i++) {                                                               \
        a[i] = o[i];                                                                         \
        b[i] = (NAME##_vec){0};                                                              \
    }                                                                                        \
    if (periodic) {                                                                          \
        for (t = 0; t + 1 < n; t += 2) {                                                     \
            const NAME##_vec *u = (const NAME##_vec *)(pj + off[t]);                         \
            const NAME##_vec *v = (const NAME##_vec *)(pj + off[t + 1]);                     \
            const NAME##_vec *w = (const NAME##_vec *)(qj + t * qs);                         \
            const NAME##_vec *z = (const NAME##_vec *)(qj + (t + 1) * qs);                   \
            for (i = 0; i < nb; i++) {                                                       \
                a[i] += u[i] * w[i % R];                                                     \
                b[i] += v[i] * z[i % R];                                                     \
            }                                                                                \
        }                                                                                    \
    } else {                                                                                 \
        for (t = 0; t + 1 < n; t += 2) {                                                     \
            const NAME##_vec *u = (const NAME##_vec *)(pj + off[t]);                         \
            const NAME##_vec *v = (const NAME##_vec *)(pj + off[t + 1]);                     \
            const NAME##_vec *w = (const NAME##_vec *)(qj + t * qs);                         \
            const NAME##_vec *z = (const NAME##_vec *)(qj + (t + 1) * qs);                   \
            for (i = 0; i < nb; i++) {                                                       \
                a[i] += u[i] * w[i];                                                         \
                b[i] += v[i] * z[i];                                                         \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
    if (t < n) {          /* an odd number of terms: the last one joins the even sum */      \
        const NAME##_vec *u = (const NAME##_vec *)(pj + off[t]);                             \
        const NAME##_vec *w = (const NAME##_vec *)(qj + t * qs);                             \
        for (i = 0; i < nb; i++)                                                             \
            a[i] += u[i] * w[periodic ? i % R : i];                                          \
    }                                                                                        \
    for (i = 0; i < nb; i++)                                                                 \
        o[i] = a[i] + b[i];                                                                  \
}

/* The whole row: blocks of NB vectors, then the 1 to NB - 1 vectors left in halving blocks. */
#define CY_LANES_DOT(NAME, T, VB, NB, TARGET)                                                \
CY_LANES_BLOCK(NAME, T, VB, NB, TARGET)                                                      \
static TARGET void NAME(T *acc, const T *p, Py_ssize_t shift, const Py_ssize_t *off,         \
                        const T *q, Py_ssize_t qs, Py_ssize_t P, Py_ssize_t n, Py_ssize_t L) \
{                                                                                            \
    const Py_ssize_t V = VB / sizeof(T);                                                     \
    const int periodic = P == 64 / (Py_ssize_t)sizeof(T);                                    \
    Py_ssize_t j = 0;                                                                        \
    for (; j + NB * V <= L; j += NB * V)                                                     \
        NAME##_block(acc + j, p + shift + j, off, q + j % P, qs, periodic, n, NB);           \
    if (NB > 4 && j + 4 * V <= L) {                                                         \
        NAME##_block(acc + j, p + shift + j, off, q + j % P, qs, periodic, n, 4);            \
        j += 4 * V;                                                                          \
    }                                                                                        \
    if (NB > 2 && j + 2 * V <= L) {                                                         \
        NAME##_block(acc + j, p + shift + j, off, q + j % P, qs, periodic, n, 2);            \
        j += 2 * V;                                                                          \
    }                                                                                        \
    if (j < L)                                                                               \
        NAME##_block(acc + j, p + shift + j, off, q + j % P, qs, periodic, n, 1);            \
}

#define CY_NO_TARGET
CY_LANES_DOT(cy_lanes_dot_default_f, float, 16, 4, CY_NO_TARGET)
CY_LANES_DOT(cy_lanes_dot_default_d, double, 16, 4, CY_NO_TARGET)
#if CY_ISA_X86
CY_LANES_DOT(cy_lanes_dot_avx2_f, float, 32, 6, CY_TARGET_AVX2)
CY_LANES_DOT(cy_lanes_dot_avx2_d, double, 32, 6, CY_TARGET_AVX2)
CY_LANES_DOT(cy_lanes_dot_avx512_f, float, 64, 8, CY_TARGET_AVX512)
CY_LANES_DOT(cy_lanes_dot_avx512_d, double, 64, 8, CY_TARGET_AVX512)
#endif

#else   /* not GCC or Clang (MSVC): the plain loop, same order of summation per lane */

#define CY_LANES_DOT_PLAIN(NAME, T)                                                          \
static void NAME(T *acc, const T *p, Py_ssize_t shift, const Py_ssize_t *off,               \
                 const T *q, Py_ssize_t qs, Py_ssize_t P, Py_ssize_t n, Py_ssize_t L)        \
{                                                                                            \
    Py_ssize_t j, t;                                                                         \
    for (j = 0; j < L; j++) {                                                                \
        T a = acc[j], b = 0;                                                                 \
        for (t = 0; t + 1 < n; t += 2) {                                                     \
            a += p[shift + off[t] + j] * q[t * qs + j % P];                                  \
            b += p[shift + off[t + 1] + j] * q[(t + 1) * qs + j % P];                        \
        }                                                                                    \
        if (t < n)                                                                           \
            a += p[shift + off[t] + j] * q[t * qs + j % P];                                  \
        acc[j] = a + b;                                                                      \
    }                                                                                        \
}
CY_LANES_DOT_PLAIN(cy_lanes_dot_default_f, float)
CY_LANES_DOT_PLAIN(cy_lanes_dot_default_d, double)

#endif

/* The direct path's image expansion (``_direct.pyx``'s ``_expand``), one row of one channel:
 *
 *     dst[s * Ko + k] = src[s * stride]        for s < n, k < Ko
 *
 * with Ko a constant for each Ko <= 8, so that the copies of a value are a few unrolled stores
 * (a loop of Ko stores per value was 14 % of LeNet c1's forward+backward). */
#define CY_SPREAD(NAME, T)                                                                   \
static inline __attribute__((always_inline)) void                                            \
NAME##_k(T *dst, const T *src, Py_ssize_t stride, Py_ssize_t n, const Py_ssize_t Ko)         \
{                                                                                            \
    Py_ssize_t s, k;                                                                         \
    for (s = 0; s < n; s++) {                                                                \
        const T v = src[s * stride];                                                         \
        for (k = 0; k < Ko; k++)                                                             \
            dst[s * Ko + k] = v;                                                             \
    }                                                                                        \
}                                                                                            \
static void NAME(T *dst, const T *src, Py_ssize_t stride, Py_ssize_t n, Py_ssize_t Ko)       \
{                                                                                            \
    switch (Ko) {                                                                            \
    case 1: NAME##_k(dst, src, stride, n, 1); break;                                         \
    case 2: NAME##_k(dst, src, stride, n, 2); break;                                         \
    case 3: NAME##_k(dst, src, stride, n, 3); break;                                         \
    case 4: NAME##_k(dst, src, stride, n, 4); break;                                         \
    case 5: NAME##_k(dst, src, stride, n, 5); break;                                         \
    case 6: NAME##_k(dst, src, stride, n, 6); break;                                         \
    case 7: NAME##_k(dst, src, stride, n, 7); break;                                         \
    case 8: NAME##_k(dst, src, stride, n, 8); break;                                         \
    default: NAME##_k(dst, src, stride, n, Ko);                                              \
    }                                                                                        \
}
CY_SPREAD(cy_spread_f, float)
CY_SPREAD(cy_spread_d, double)

/* The variant in use, set once when the module is imported (cy_lanes_select). */
typedef void (*cy_lanes_dot_f_t)(float *, const float *, Py_ssize_t, const Py_ssize_t *,
                                 const float *, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t);
typedef void (*cy_lanes_dot_d_t)(double *, const double *, Py_ssize_t, const Py_ssize_t *,
                                 const double *, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                                 Py_ssize_t);
static cy_lanes_dot_f_t cy_lanes_dot_f = cy_lanes_dot_default_f;
static cy_lanes_dot_d_t cy_lanes_dot_d = cy_lanes_dot_default_d;

/* Use variant ``isa`` (a CY_ISA_* value this CPU supports: the caller checks); returns it. */
static int cy_lanes_select(int isa)
{
    cy_lanes_dot_f = cy_lanes_dot_default_f;
    cy_lanes_dot_d = cy_lanes_dot_default_d;
#if CY_ISA_X86 && defined(__GNUC__)
    if (isa == CY_ISA_AVX512) {
        cy_lanes_dot_f = cy_lanes_dot_avx512_f;
        cy_lanes_dot_d = cy_lanes_dot_avx512_d;
        return isa;
    }
    if (isa == CY_ISA_AVX2) {
        cy_lanes_dot_f = cy_lanes_dot_avx2_f;
        cy_lanes_dot_d = cy_lanes_dot_avx2_d;
        return isa;
    }
#endif
    (void)isa;
    return CY_ISA_DEFAULT;
}

#endif
