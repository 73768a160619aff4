/* cytorch/_kernels/_pool2x2.h -- the whole-row pass of 2x2 max/min pooling, stride 2 (the fast
 * path of ``_pool.pyx``, twin ``cytorch.reference.max_pool2d_2x2``):
 *
 *     best[s], code[s] = the extreme of a[s], a[s + C], b[s], b[s + C] and its code 0, 1, W,
 *                        W + 1 (a later candidate wins only when strictly better), for s < n
 *
 * where a and b are input rows 2i and 2i + 1.  ``_pool.pyx`` then keeps every other block of C
 * values (the offsets s = 2jC + c where window j starts).  Per value: 4 loads, 3 compares,
 * 6 selects; compute-bound, so it pays to use the widest vectors.
 *
 * The selects are written with GCC/Clang vector extensions: a vector comparison gives a mask
 * of all-ones/all-zeros integers, and ``(mask & new) | (~mask & old)`` on the integer view of
 * the numbers is the select.  Written this way the compiler emits compare + blend/and-or
 * instructions directly; it needs no permission to if-convert a branch (which GCC refuses
 * while a floating-point compare may trap, i.e. without -fno-trapping-math).  A NaN compares
 * false, so it never takes over a window; a NaN in the first cell stays (as in the twin).
 *
 * Instruction sets (``_isa.h``): avx512 (64-byte zmm vectors, masks in k registers), avx2
 * (32-byte ymm, compare + blend), default (the build's baseline: SSE2 cmpps + and/andnot/or).
 * Checked with ``objdump -d`` on the module built by GCC 12.2 (-O3): cy_extreme_2x2_avx512_f
 * compares zmm registers into mask registers (vcmpltps ..., %zmm, %k1),
 * cy_extreme_2x2_avx2_f ymm registers (vcmpltps + vpblendvb), cy_extreme_2x2_default_f xmm
 * registers (cmpltps); the vector loops do not branch on the data (only the scalar tail of
 * fewer than one vector does).  ``tests/test_isa.py`` repeats the compare check.
 */
#ifndef CYTORCH_POOL2X2_H
#define CYTORCH_POOL2X2_H

#include <Python.h>
#include "_isa.h"

/* Every variant of one vector kernel: MAKER(name, T, integer of T's width, vector bytes,
 * target attribute) for float and double, in the default (SSE2, 16 bytes) variant and, on
 * x86-64, the AVX2 (32) and AVX-512 (64) ones.  The generic-vector branches below use it. */
#define CY_NO_TARGET_POOL
#if CY_ISA_X86
#define CY_POOL_X86_VARIANTS(MAKER, STEM)                                                    \
    MAKER(STEM##_avx2_f, float, int, 32, CY_TARGET_AVX2)                                     \
    MAKER(STEM##_avx2_d, double, long long, 32, CY_TARGET_AVX2)                              \
    MAKER(STEM##_avx512_f, float, int, 64, CY_TARGET_AVX512)                                 \
    MAKER(STEM##_avx512_d, double, long long, 64, CY_TARGET_AVX512)
#else
#define CY_POOL_X86_VARIANTS(MAKER, STEM)
#endif
#define CY_POOL_VARIANTS(MAKER, STEM)                                                        \
    MAKER(STEM##_default_f, float, int, 16, CY_NO_TARGET_POOL)                               \
    MAKER(STEM##_default_d, double, long long, 16, CY_NO_TARGET_POOL)                        \
    CY_POOL_X86_VARIANTS(MAKER, STEM)

/* One pass for one comparison BETTER (< for min, > for max) in variant NAME. */
#define CY_EXTREME_2X2_VLOOP(NAME, T, BETTER)                                                \
    for (; s + V <= n; s += V) {                                                             \
        NAME##_v v = *(const NAME##_v *)(a + s), u;                                          \
        NAME##_m k = {0}, m;                                                                 \
        u = *(const NAME##_v *)(a + s + C);                                                  \
        m = u BETTER v;                                                                      \
        v = (NAME##_v)(((NAME##_m)u & m) | ((NAME##_m)v & ~m));                              \
        k = (m & 1) | (k & ~m);                                                              \
        u = *(const NAME##_v *)(b + s);                                                      \
        m = u BETTER v;                                                                      \
        v = (NAME##_v)(((NAME##_m)u & m) | ((NAME##_m)v & ~m));                              \
        k = (m & W) | (k & ~m);                                                              \
        u = *(const NAME##_v *)(b + s + C);                                                  \
        m = u BETTER v;                                                                      \
        v = (NAME##_v)(((NAME##_m)u & m) | ((NAME##_m)v & ~m));                              \
        k = (m & (W + 1)) | (k & ~m);                                                        \
        *(NAME##_v *)(best + s) = v;                                                         \
        for (i = 0; i < V; i++)     /* the codes as int (a narrowing store for double) */     \
            code[s + i] = (int)k[i];                                                         \
    }

/* The scalar form: the last n % V offsets, and the whole loop for compilers without vector
   extensions. */
#define CY_EXTREME_2X2_SLOOP(T, BETTER)                                                      \
    for (; s < n; s++) {                                                                     \
        T v = a[s], u;                                                                       \
        int k = 0;                                                                           \
        u = a[s + C]; if (u BETTER v) { v = u; k = 1; }                                      \
        u = b[s]; if (u BETTER v) { v = u; k = W; }                                          \
        u = b[s + C]; if (u BETTER v) { v = u; k = W + 1; }                                  \
        best[s] = v;                                                                         \
        code[s] = k;                                                                         \
    }

#if defined(__GNUC__)
/* TI: the integer type of T's width (a comparison of T vectors gives TI vectors). */
#define CY_EXTREME_2X2(NAME, T, TI, VB, TARGET)                                              \
typedef T NAME##_v __attribute__((vector_size(VB), aligned(sizeof(T)), may_alias));          \
typedef TI NAME##_m __attribute__((vector_size(VB)));                                        \
static TARGET void NAME(const T *a, const T *b, T *best, int *code, Py_ssize_t n,           \
                        Py_ssize_t C, int W, int take_min)                                   \
{                                                                                            \
    enum { V = VB / sizeof(T) };                                                             \
    Py_ssize_t s = 0;                                                                        \
    int i;                                                                                   \
    if (take_min) {                                                                          \
        CY_EXTREME_2X2_VLOOP(NAME, T, <)                                                     \
        CY_EXTREME_2X2_SLOOP(T, <)                                                           \
    } else {                                                                                 \
        CY_EXTREME_2X2_VLOOP(NAME, T, >)                                                     \
        CY_EXTREME_2X2_SLOOP(T, >)                                                           \
    }                                                                                        \
}
CY_POOL_VARIANTS(CY_EXTREME_2X2, cy_extreme_2x2)

#else

#define CY_EXTREME_2X2_PLAIN(NAME, T)                                                        \
static void NAME(const T *a, const T *b, T *best, int *code, Py_ssize_t n, Py_ssize_t C,     \
                 int W, int take_min)                                                        \
{                                                                                            \
    Py_ssize_t s = 0;                                                                        \
    if (take_min) { CY_EXTREME_2X2_SLOOP(T, <) }                                             \
    else { CY_EXTREME_2X2_SLOOP(T, >) }                                                      \
}
CY_EXTREME_2X2_PLAIN(cy_extreme_2x2_default_f, float)
CY_EXTREME_2X2_PLAIN(cy_extreme_2x2_default_d, double)

#endif

/* Inference: 2x2 max/min pooling of one output row with no winner codes (predict and evaluate
 * run no backward pass), ReLU applied to the result when asked (``relu``):
 *
 *     out[jC + c] = f(extreme of a[2jC + c], a[2jC + C + c], b[2jC + c], b[2jC + C + c])
 *
 * for j < W_out, c < C, where f(v) = v <= 0 ? +0 : v (NaN stays NaN; ``cy_relu`` of
 * ``_mathfn.h``) or the identity.  The four blocks of C channels of window j are loaded
 * straight into vectors of channels: no pass over the offsets where no window starts and no
 * compaction, which the training pass above needs for its codes (for C = 10 that compaction,
 * one scalar copy per output value, was most of its time).  When C is not a multiple of the
 * vector, the last vector of a window starts at C - N and computes some channels of the one
 * before again (the same values); when C is narrower than the vector, a narrower vector
 * serves (ymm or xmm for C = 10), and below 4 floats (2 doubles) the scalar loop.  The
 * comparisons are those of the training pass, in the same order, so the values are the same
 * bits; every load stays inside the 2 W_out cells of rows a and b.
 *
 * Instruction sets as above; ``objdump -d`` of the module built by GCC 12.2 (-O3) shows
 * cy_extreme_row_avx512_f comparing zmm, ymm and xmm registers into mask registers
 * (vcmpltps ..., %k1) and cy_extreme_row_avx2_f comparing ymm and xmm registers (vcmpltps);
 * ``tests/test_isa.py`` repeats the check.
 */
#define CY_SELECT(VT, MT, m, u, v) ((VT)(((MT)(u) & (m)) | ((MT)(v) & ~(m))))

/* The scalar form of a whole row. */
#define CY_EXTREME_ROW_S(T, BETTER)                                                          \
    for (j = 0; j < W_out; j++) {                                                            \
        const T *pa = a + 2 * j * C, *pb = b + 2 * j * C;                                    \
        for (c = 0; c < C; c++) {                                                            \
            T v = pa[c], u;                                                                  \
            u = pa[C + c]; if (u BETTER v) v = u;                                            \
            u = pb[c]; if (u BETTER v) v = u;                                                \
            u = pb[C + c]; if (u BETTER v) v = u;                                            \
            if (relu && v <= 0) v = 0;                                                       \
            out[j * C + c] = v;                                                              \
        }                                                                                    \
    }

#if defined(__GNUC__)
/* Every window of the row in vectors VT of N numbers (C >= N): c = 0, N, 2N, ..., C - N. */
#define CY_EXTREME_ROW_V(VT, MT, N, BETTER)                                                  \
    for (j = 0; j < W_out; j++) {                                                            \
        const VT zero = {0};                                                                 \
        for (c = 0;; c += N) {                                                               \
            const T_ *pa, *pb;                                                               \
            VT v, u;                                                                         \
            MT m;                                                                            \
            if (c + N > C)                                                                   \
                c = C - N;                                                                   \
            pa = a + 2 * j * C + c;                                                          \
            pb = b + 2 * j * C + c;                                                          \
            v = *(const VT *)pa;                                                             \
            u = *(const VT *)(pa + C); m = u BETTER v; v = CY_SELECT(VT, MT, m, u, v);       \
            u = *(const VT *)pb;       m = u BETTER v; v = CY_SELECT(VT, MT, m, u, v);       \
            u = *(const VT *)(pb + C); m = u BETTER v; v = CY_SELECT(VT, MT, m, u, v);       \
            if (relu) {                                                                      \
                m = v <= zero;                                                               \
                v = (VT)((MT)v & ~m);   /* the bits of +0 where v <= 0 */                    \
            }                                                                                \
            *(VT *)(out + j * C + c) = v;                                                    \
            if (c + N >= C)                                                                  \
                break;                                                                       \
        }                                                                                    \
    }

/* The widest of the vectors of VB, VB / 2 and VB / 4 bytes (at least 16) that C fills. */
#define CY_EXTREME_ROW_ANY(NAME, BETTER)                                                     \
    if (C >= N1) { CY_EXTREME_ROW_V(NAME##_v1, NAME##_m1, N1, BETTER) }                      \
    else if (C >= N2) { CY_EXTREME_ROW_V(NAME##_v2, NAME##_m2, N2, BETTER) }                 \
    else if (C >= N4) { CY_EXTREME_ROW_V(NAME##_v4, NAME##_m4, N4, BETTER) }                 \
    else { CY_EXTREME_ROW_S(T_, BETTER) }

#define CY_VB16(VB) ((VB) >= 16 ? (VB) : 16)
#define CY_EXTREME_ROW(NAME, T, TI, VB, TARGET)                                              \
typedef T NAME##_v1 __attribute__((vector_size(VB), aligned(sizeof(T)), may_alias));         \
typedef TI NAME##_m1 __attribute__((vector_size(VB)));                                       \
typedef T NAME##_v2 __attribute__((vector_size(CY_VB16(VB / 2)), aligned(sizeof(T)),         \
                                   may_alias));                                              \
typedef TI NAME##_m2 __attribute__((vector_size(CY_VB16(VB / 2))));                          \
typedef T NAME##_v4 __attribute__((vector_size(CY_VB16(VB / 4)), aligned(sizeof(T)),         \
                                   may_alias));                                              \
typedef TI NAME##_m4 __attribute__((vector_size(CY_VB16(VB / 4))));                          \
static TARGET void NAME(const T *a, const T *b, T *out, Py_ssize_t W_out, Py_ssize_t C,     \
                        int take_min, int relu)                                              \
{                                                                                            \
    typedef T T_;                                                                            \
    enum { N1 = VB / sizeof(T), N2 = CY_VB16(VB / 2) / sizeof(T),                            \
           N4 = CY_VB16(VB / 4) / sizeof(T) };                                               \
    Py_ssize_t j, c;                                                                         \
    if (take_min) {                                                                          \
        CY_EXTREME_ROW_ANY(NAME, <)                                                          \
    } else {                                                                                 \
        CY_EXTREME_ROW_ANY(NAME, >)                                                          \
    }                                                                                        \
}
CY_POOL_VARIANTS(CY_EXTREME_ROW, cy_extreme_row)

#else

#define CY_EXTREME_ROW_PLAIN(NAME, T)                                                        \
static void NAME(const T *a, const T *b, T *out, Py_ssize_t W_out, Py_ssize_t C,            \
                 int take_min, int relu)                                                     \
{                                                                                            \
    Py_ssize_t j, c;                                                                         \
    if (take_min) { CY_EXTREME_ROW_S(T, <) }                                                 \
    else { CY_EXTREME_ROW_S(T, >) }                                                          \
}
CY_EXTREME_ROW_PLAIN(cy_extreme_row_default_f, float)
CY_EXTREME_ROW_PLAIN(cy_extreme_row_default_d, double)

#endif

/* Global pooling of one image x (HW cells of C channels, channels-last), every variant:
 *
 *     cy_global_sum:      sum[c] = x[0, c] + x[1, c] + ... + x[HW - 1, c]   (in double);
 *                         returns the number of sums that are NaN or +-inf
 *     cy_global_extreme:  best[c], code[c] = the extreme of x[:, c] and the first cell that
 *                         holds it (a later cell wins only when strictly better); returns
 *                         the number of channels whose values (summed in a spare register)
 *                         add up to NaN or +-inf: 0 vouches that x holds no NaN or inf
 *     cy_global_fill:     dx[k, c] = dx[0, c] for every cell k (the backward of the mean);
 *                         returns the number of NaN and +-inf in dx[0, :]
 *
 * The extremes and sums walk the cells in order with a block of channels in registers (a
 * vector of V channels; the sum two vectors of V / 2 doubles), so every channel sees its
 * cells in the same order in every variant, and the results are the same bits; the last
 * channels run the scalar form, which does the same per channel.  (The first version kept
 * its accumulators in memory and stored them back after every cell: 57 us for a 32x8x8x64
 * batch, slower than PyTorch.  Four vectors of sums in flight instead of two changed
 * nothing measurable: that batch is 512 KiB, and reading it is the cost.)
 *
 * Why a sum checks for NaN and inf: NaN + anything is NaN and inf + anything is inf or NaN,
 * so a channel whose sum is finite held finite values; a sum of finite values that overflows
 * is a false alarm, which the caller's scan of x then clears.  The extremes keep such a sum
 * in a spare register: one add per value, where a separate scan of x (np.isfinite) took as
 * long as the pooling itself.
 */
#define CY_GLOBAL_SUM_SLOOP(T)                                                               \
    for (; c < C; c++) {                                                                     \
        double a = 0;                                                                        \
        for (k = 0; k < HW; k++)                                                             \
            a += x[k * C + c];                                                               \
        sum[c] = a;                                                                          \
    }
#define CY_GLOBAL_EXTREME_SLOOP(T, BETTER)                                                   \
    for (; c < C; c++) {                                                                     \
        T v = x[c], z = x[c];                                                                \
        int code_c = 0;                                                                      \
        for (k = 1; k < HW; k++) {                                                           \
            z += x[k * C + c];                                                               \
            if (x[k * C + c] BETTER v) { v = x[k * C + c]; code_c = (int)k; }                \
        }                                                                                    \
        best[c] = v;                                                                         \
        code[c] = code_c;                                                                    \
        nonfinite += !(z - z == 0);     /* z - z is NaN exactly when z is NaN or +-inf */     \
    }
/* the number of sums that are NaN or +-inf (s - s is NaN exactly for those) */
#define CY_GLOBAL_COUNT_NONFINITE                                                            \
    {                                                                                        \
        int nonfinite = 0;                                                                   \
        for (c = 0; c < C; c++)                                                              \
            nonfinite += !(sum[c] - sum[c] == 0);                                            \
        return nonfinite;                                                                    \
    }
#define CY_GLOBAL_FILL(T, VLOOP)                                                             \
    int nonfinite = 0;                                                                       \
    for (k = 1; k < HW; k++) {                                                               \
        T *d = dx + k * C;                                                                   \
        Py_ssize_t c = 0;                                                                    \
        VLOOP                                                                                \
        for (; c < C; c++)                                                                   \
            d[c] = dx[c];                                                                    \
    }                                                                                        \
    for (k = 0; k < C; k++)                                                                  \
        nonfinite += !(dx[k] - dx[k] == 0);                                                  \
    return nonfinite;

#if defined(__GNUC__)
/* V numbers of T a vector (VB bytes); D: vectors of V / 2 doubles for the sum */
#define CY_GLOBAL_EXTREME_VLOOP(NAME, BETTER)                                                \
    for (; c + V <= C; c += V) {                                                             \
        NAME##_gv v = *(const NAME##_gv *)(x + c), u, z = v;                                 \
        NAME##_gm kk = {0}, m;                                                               \
        for (k = 1; k < HW; k++) {                                                           \
            u = *(const NAME##_gv *)(x + k * C + c);                                         \
            z += u;                                                                          \
            m = u BETTER v;                                                                  \
            v = (NAME##_gv)(((NAME##_gm)u & m) | ((NAME##_gm)v & ~m));                       \
            kk = (m & (NAME##_gi)k) | (kk & ~m);                                             \
        }                                                                                    \
        *(NAME##_gv *)(best + c) = v;                                                        \
        z -= z;                                                                              \
        for (i = 0; i < V; i++) {                                                            \
            code[c + i] = (int)kk[i];                                                        \
            nonfinite += !(z[i] == 0);                                                       \
        }                                                                                    \
    }
#define CY_GLOBAL(NAME, T, TI, VB, TARGET)                                                   \
typedef T NAME##_gv __attribute__((vector_size(VB), aligned(sizeof(T)), may_alias));         \
typedef TI NAME##_gm __attribute__((vector_size(VB)));                                       \
typedef TI NAME##_gi;                                                                        \
typedef double NAME##_gd __attribute__((vector_size(VB), aligned(sizeof(T)), may_alias));    \
static TARGET int NAME##_sum(const T *x, Py_ssize_t HW, Py_ssize_t C, double *sum)           \
{                                                                                            \
    enum { D = VB / sizeof(double) };                                                        \
    Py_ssize_t c = 0, k;                                                                     \
    int i;                                                                                   \
    for (; c + 2 * D <= C; c += 2 * D) {                                                     \
        NAME##_gd a0 = {0}, a1 = {0}, t0, t1;                                                \
        for (k = 0; k < HW; k++) {                                                           \
            const T *p = x + k * C + c;                                                      \
            for (i = 0; i < D; i++) { t0[i] = p[i]; t1[i] = p[D + i]; }                      \
            a0 += t0;                                                                        \
            a1 += t1;                                                                        \
        }                                                                                    \
        *(NAME##_gd *)(sum + c) = a0;                                                        \
        *(NAME##_gd *)(sum + c + D) = a1;                                                    \
    }                                                                                        \
    CY_GLOBAL_SUM_SLOOP(T)                                                                   \
    CY_GLOBAL_COUNT_NONFINITE                                                                \
}                                                                                            \
static TARGET int NAME##_extreme(const T *x, Py_ssize_t HW, Py_ssize_t C, T *best,           \
                                 int *code, int take_min)                                    \
{                                                                                            \
    enum { V = VB / sizeof(T) };                                                             \
    Py_ssize_t c = 0, k;                                                                     \
    int i, nonfinite = 0;                                                                    \
    if (take_min) {                                                                          \
        CY_GLOBAL_EXTREME_VLOOP(NAME, <)                                                     \
        CY_GLOBAL_EXTREME_SLOOP(T, <)                                                        \
    } else {                                                                                 \
        CY_GLOBAL_EXTREME_VLOOP(NAME, >)                                                     \
        CY_GLOBAL_EXTREME_SLOOP(T, >)                                                        \
    }                                                                                        \
    return nonfinite;                                                                        \
}                                                                                            \
static TARGET int NAME##_fill(T *dx, Py_ssize_t HW, Py_ssize_t C)                            \
{                                                                                            \
    enum { V = VB / sizeof(T) };                                                             \
    Py_ssize_t k;                                                                            \
    CY_GLOBAL_FILL(T, for (; c + V <= C; c += V)                                             \
                          *(NAME##_gv *)(d + c) = *(const NAME##_gv *)(dx + c);)             \
}
CY_POOL_VARIANTS(CY_GLOBAL, cy_global)

#else

#define CY_GLOBAL_PLAIN(NAME, T)                                                             \
static int NAME##_sum(const T *x, Py_ssize_t HW, Py_ssize_t C, double *sum)                  \
{                                                                                            \
    Py_ssize_t c = 0, k;                                                                     \
    CY_GLOBAL_SUM_SLOOP(T)                                                                   \
    CY_GLOBAL_COUNT_NONFINITE                                                                \
}                                                                                            \
static int NAME##_extreme(const T *x, Py_ssize_t HW, Py_ssize_t C, T *best, int *code,       \
                          int take_min)                                                      \
{                                                                                            \
    Py_ssize_t c = 0, k;                                                                     \
    int nonfinite = 0;                                                                       \
    if (take_min) { CY_GLOBAL_EXTREME_SLOOP(T, <) }                                          \
    else { CY_GLOBAL_EXTREME_SLOOP(T, >) }                                                   \
    return nonfinite;                                                                        \
}                                                                                            \
static int NAME##_fill(T *dx, Py_ssize_t HW, Py_ssize_t C)                                   \
{                                                                                            \
    Py_ssize_t k;                                                                            \
    CY_GLOBAL_FILL(T, )                                                                      \
}
CY_GLOBAL_PLAIN(cy_global_default_f, float)
CY_GLOBAL_PLAIN(cy_global_default_d, double)

#endif

typedef int (*cy_global_sum_f_t)(const float *, Py_ssize_t, Py_ssize_t, double *);
typedef int (*cy_global_sum_d_t)(const double *, Py_ssize_t, Py_ssize_t, double *);
typedef int (*cy_global_extreme_f_t)(const float *, Py_ssize_t, Py_ssize_t, float *, int *,
                                     int);
typedef int (*cy_global_extreme_d_t)(const double *, Py_ssize_t, Py_ssize_t, double *, int *,
                                     int);
typedef int (*cy_global_fill_f_t)(float *, Py_ssize_t, Py_ssize_t);
typedef int (*cy_global_fill_d_t)(double *, Py_ssize_t, Py_ssize_t);
static cy_global_sum_f_t cy_global_sum_f = cy_global_default_f_sum;
static cy_global_sum_d_t cy_global_sum_d = cy_global_default_d_sum;
static cy_global_extreme_f_t cy_global_extreme_f = cy_global_default_f_extreme;
static cy_global_extreme_d_t cy_global_extreme_d = cy_global_default_d_extreme;
static cy_global_fill_f_t cy_global_fill_f = cy_global_default_f_fill;
static cy_global_fill_d_t cy_global_fill_d = cy_global_default_d_fill;

#define CY_GLOBAL_USE(VARIANT)                                                               \
    do {                                                                                     \
        cy_global_sum_f = VARIANT##_f_sum; cy_global_sum_d = VARIANT##_d_sum;                \
        cy_global_extreme_f = VARIANT##_f_extreme;                                           \
        cy_global_extreme_d = VARIANT##_d_extreme;                                           \
        cy_global_fill_f = VARIANT##_f_fill; cy_global_fill_d = VARIANT##_d_fill;           \
    } while (0)

typedef void (*cy_extreme_2x2_f_t)(const float *, const float *, float *, int *, Py_ssize_t,
                                   Py_ssize_t, int, int);
typedef void (*cy_extreme_2x2_d_t)(const double *, const double *, double *, int *,
                                   Py_ssize_t, Py_ssize_t, int, int);
static cy_extreme_2x2_f_t cy_extreme_2x2_f = cy_extreme_2x2_default_f;
static cy_extreme_2x2_d_t cy_extreme_2x2_d = cy_extreme_2x2_default_d;
typedef void (*cy_extreme_row_f_t)(const float *, const float *, float *, Py_ssize_t,
                                   Py_ssize_t, int, int);
typedef void (*cy_extreme_row_d_t)(const double *, const double *, double *, Py_ssize_t,
                                   Py_ssize_t, int, int);
static cy_extreme_row_f_t cy_extreme_row_f = cy_extreme_row_default_f;
static cy_extreme_row_d_t cy_extreme_row_d = cy_extreme_row_default_d;

/* Use variant ``isa`` (a CY_ISA_* value this CPU supports: the caller checks); returns it. */
static int cy_pool2x2_select(int isa)
{
    cy_extreme_2x2_f = cy_extreme_2x2_default_f;
    cy_extreme_2x2_d = cy_extreme_2x2_default_d;
    cy_extreme_row_f = cy_extreme_row_default_f;
    cy_extreme_row_d = cy_extreme_row_default_d;
    CY_GLOBAL_USE(cy_global_default);
#if CY_ISA_X86 && defined(__GNUC__)
    if (isa == CY_ISA_AVX512) {
        cy_extreme_2x2_f = cy_extreme_2x2_avx512_f;
        cy_extreme_2x2_d = cy_extreme_2x2_avx512_d;
        cy_extreme_row_f = cy_extreme_row_avx512_f;
        cy_extreme_row_d = cy_extreme_row_avx512_d;
        CY_GLOBAL_USE(cy_global_avx512);
        return isa;
    }
    if (isa == CY_ISA_AVX2) {
        cy_extreme_2x2_f = cy_extreme_2x2_avx2_f;
        cy_extreme_2x2_d = cy_extreme_2x2_avx2_d;
        cy_extreme_row_f = cy_extreme_row_avx2_f;
        cy_extreme_row_d = cy_extreme_row_avx2_d;
        CY_GLOBAL_USE(cy_global_avx2);
        return isa;
    }
#endif
    (void)isa;
    return CY_ISA_DEFAULT;
}

#endif
