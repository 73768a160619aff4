/* cytorch/_kernels/_mathfn.h -- exp, expm1, tanh, sigmoid and the activations built on them,
 * as element functions the compiler vectorises, in float32 and float64 (module ``_activation``;
 * NumPy twins: the formulas of ``cytorch.activations``, whose docstrings show this reduction).
 *
 * Element functions (static, always inlined, so they take the instruction set of the loop they
 * are inlined into; no branches, no calls, no tables: only +, *, /, compares, selects and
 * integer operations on the bits, which GCC vectorises):
 *
 *     cy_exp_d   cy_expm1_d   cy_tanh_d   cy_sigmoid_d   cy_silu_d   cy_softplus_d
 *     cy_elu_d(x, alpha)      cy_leaky_relu_d(x, slope)   cy_relu_d
 *     and the same with _f for float (float in, float out).
 *
 * How exp is computed (Cody and Waite's range reduction, then a polynomial):
 *
 *     x = n ln2 + r,  n = round(x / ln2),  |r| <= ln2 / 2      (ln2 in two parts, hi + lo, so
 *     exp(x) = 2^n exp(r)                                        n * ln2_hi is exact)
 *     exp(r) = 1 + r + r^2/2! + ... + r^13/13!                  Taylor; the first omitted term
 *                                                               is < 0.35^14/14! = 4e-18
 *     2^n    = two powers of two built from their exponent bits (two, so that results in the
 *              subnormal range are rounded once, by the last multiplication)
 *
 * expm1(x) = exp(x) - 1 keeps the reduction but never forms 1 + q: with q = exp(r) - 1 (the
 * same series without its 1) and s = 2^(n-1), expm1(x) = 2 (s q + (s - 1/2)); for n = 0 this is
 * q itself, so small x keep all their digits.  Then
 *
 *     tanh(x)    = sign(x) e / (e + 2),  e = expm1(2|x|)   (no cancellation near 0, where
 *                                                          1 - 2/(exp(2x) + 1) would lose
 *                                                          every digit; |x| clipped at 20,
 *                                                          where tanh is 1 in float64)
 *     sigmoid(x) = (x >= 0 ? 1 : e) / (1 + e),  e = exp(-|x|)  (never exp of a large number)
 *     softplus(x) = max(x, 0) + log1p(exp(-|x|))  (log1p on [0, 1]: the atanh series
 *                                                  log(1 + f) = 2 atanh(f / (2 + f)) after
 *                                                  taking out a factor 2 above sqrt(2))
 *
 * float32 exp, tanh and sigmoid, the hot ones, are computed in float (16 lanes per zmm):
 * Cephes' expf and tanhf polynomials (below), within 1.3 ulp of tanh and 2.4 ulp of sigmoid
 * (7.7e-8 and 8.9e-8 absolute) over the whole float32 range.  The others (expm1, elu,
 * softplus, silu) go through float64: the float is widened, the float64 function runs with
 * shorter series (exp to r^8/8!, truncation < 6e-10 relative; float's half ulp is 6e-8) and
 * the result is rounded once, so they are correctly rounded but for rare double-rounding
 * ties, and subnormal inputs and outputs need no special case (they are normal doubles).
 *
 * NaN propagates (every clip is a select on ``x > c``, false for NaN), -0.0 stays -0.0 where
 * f(-0) = -0 (tanh, expm1, elu, silu; relu gives +0.0 as np.maximum(x, 0) does), +-inf give
 * the limits.
 *
 * Row functions: ``cy_act_forward_f/_d(code, x, y, n, alpha)`` (y = f(x), y may be x),
 * ``cy_act_backward_f/_d(code, dout, y, dx, n, alpha)`` (dx = dout * f'(y), the derivative
 * written through the output y; for CY_ACT_SILU, whose derivative needs the input, pass x as
 * ``y``), and the layer epilogues ``cy_bias_act_forward_f/_d(code, z, bias, rows, cols,
 * alpha)`` (z := f(z + bias), bias per column) and ``cy_bias_act_backward_f/_d(code, dout, y,
 * dz, rows, cols, alpha, db)`` (dz = dout * f'(y) and db += its column sums, in float64) and
 * ``cy_col_sums_f/_d(src, rows, cols, db)`` (the column sums alone), for a rows x cols
 * output such as Dense's (N, units) or a channels-last conv's (N*H*W, K), are compiled in
 * three variants (``_isa.h``: avx512, avx2 = x86-64-v3, default) and
 * picked by ``cy_mathfn_select(isa)``, which each module including this header calls at import.
 * A module with its own loops (the conv epilogues) can instead call the element functions
 * inside its own ``CY_TARGET_*`` functions.
 *
 * Checked with ``objdump -d`` on the module built by GCC 12.2 -O3: cy_act_forward_avx512_f/_d
 * compute on zmm registers (vfmadd, vdivps/vdivpd %zmm), the avx2 variants on ymm, and
 * cy_act_forward_default_f on xmm (SSE2 mulps/divps, no FMA); ``tests/test_isa.py`` repeats
 * the check.  The default variant's float64 loops stay scalar: GCC 12 finds no SSE2 form for
 * the 64-bit selects ("relevant stmt not supported: _ ? 1 : 0"), and x86-64 CPUs without
 * AVX2 are rare.  The avx2 and avx512 variants contract the same multiply-adds into FMAs and
 * give the same bits; the default variant rounds products first and may differ in the last
 * bit.  cy_col_sums_avx512_f/_d widen and add zmm vectors (vcvtps2pd, vaddpd %zmm), the avx2
 * variants ymm, the default xmm (also in ``tests/test_isa.py``).
 */
#ifndef CYTORCH_MATHFN_H
#define CYTORCH_MATHFN_H

#include <Python.h>
#include <stdint.h>
#include "_isa.h"

#if defined(__GNUC__)
#  define CY_MF static inline __attribute__((always_inline))
#else
#  define CY_MF static inline
#endif

/* The activation codes of the row functions (``_activation.pyx`` maps names to them). */
enum {
    CY_ACT_LINEAR = 0, CY_ACT_RELU = 1, CY_ACT_TANH = 2, CY_ACT_SIGMOID = 3, CY_ACT_ELU = 4,
    CY_ACT_LEAKY_RELU = 5, CY_ACT_SOFTPLUS = 6, CY_ACT_SILU = 7, CY_ACT_EXP = 8,
    CY_ACT_EXPM1 = 9
};

#define CY_LOG2E   1.4426950408889634       /* 1 / ln 2 */
#define CY_LN2_HI  6.93147180369123816490e-01   /* ln 2 rounded to 32 bits: n * CY_LN2_HI is */
#define CY_LN2_LO  1.90821492927058770002e-10   /* exact for |n| < 2^21 (fdlibm's split)    */
#define CY_ROUND   6755399441055744.0       /* 1.5 * 2^52: t + CY_ROUND - CY_ROUND rounds t to
                                               an integer, which lands in the low bits */
#define CY_SQRT2   1.4142135623730951

typedef union { double d; uint64_t u; } cy_bits64;
typedef union { float f; uint32_t u; } cy_bits32;

/* c ? a : b with both a and b computed: an and/or of the bits under a mask of c.  GCC does
   not if-convert a ternary whose arm may trap (a multiply, a division) unless told
   -fno-trapping-math, and then leaves the loop scalar ("control flow in loop"); a select on
   the bits has no arm to skip, so the loop vectorises (compare + blend or and/andnot/or). */
CY_MF double cy_sel_d(int c, double a, double b)
{
    cy_bits64 A, B;
    uint64_t m = -(uint64_t)(c != 0);
    A.d = a;
    B.d = b;
    A.u = (A.u & m) | (B.u & ~m);
    return A.d;
}

CY_MF float cy_sel_f(int c, float a, float b)
{
    cy_bits32 A, B;
    uint32_t m = -(uint32_t)(c != 0);
    A.f = a;
    B.f = b;
    A.u = (A.u & m) | (B.u & ~m);
    return A.f;
}

/* 2^k for an integer-valued k in [-1022, 1023], from its exponent bits. */
CY_MF double cy_pow2_d(double k)
{
    cy_bits64 b, r;
    r.d = CY_ROUND;
    b.d = k + CY_ROUND;                       /* exact: k becomes the low bits */
    b.u = (b.u - r.u + 1023u) << 52;          /* modulo 2^64, so negative k works */
    return b.d;
}

/* x = n ln2 + r; returns n (an integer-valued double), r through the pointer. */
CY_MF double cy_reduce_ln2_d(double x, double *r)
{
    double n = (x * CY_LOG2E + CY_ROUND) - CY_ROUND;
    *r = (x - n * CY_LN2_HI) - n * CY_LN2_LO;
    return n;
}

/* exp(r) - 1 for |r| <= ln2/2 (+ a little): Taylor to r^13/13! (full) or r^8/8! (short),
   written r * (1 + r/2 + ...) so that r = -0.0 gives -0.0. */
CY_MF double cy_expm1_reduced_d(double r, int short_series)
{
    double p;
    if (short_series) {
        p = 1.0 / 40320;
        p = p * r + 1.0 / 5040;
    } else {
        p = 1.0 / 6227020800.0;
        p = p * r + 1.0 / 479001600.0;
        p = p * r + 1.0 / 39916800.0;
        p = p * r + 1.0 / 3628800.0;
        p = p * r + 1.0 / 362880.0;
        p = p * r + 1.0 / 40320;
        p = p * r + 1.0 / 5040;
    }
    p = p * r + 1.0 / 720;
    p = p * r + 1.0 / 120;
    p = p * r + 1.0 / 24;
    p = p * r + 1.0 / 6;
    p = p * r + 0.5;
    p = p * r + 1.0;
    return p * r;
}

CY_MF double cy_exp_impl(double x, int short_series)
{
    double r, n, h;
    /* beyond these exp is 0 or inf anyway; clipped, n stays in [-1076, 1024] */
    x = cy_sel_d(x < -746.0, -746.0, x);
    x = cy_sel_d(x > 710.0, 710.0, x);
    n = cy_reduce_ln2_d(x, &r);
    h = (n * 0.5 + CY_ROUND) - CY_ROUND;      /* 2^n = 2^h 2^(n-h), each factor normal */
    return ((1.0 + cy_expm1_reduced_d(r, short_series)) * cy_pow2_d(h)) * cy_pow2_d(n - h);
}

CY_MF double cy_expm1_impl(double x, int short_series)
{
    double r, n, s, y, xc;
    xc = cy_sel_d(x < -40.0, -40.0, x);               /* expm1(-40) is -1 in float64 */
    xc = cy_sel_d(xc > 710.0, 710.0, xc);
    n = cy_reduce_ln2_d(xc, &r);
    s = cy_pow2_d(n - 1.0);                   /* n - 1 in [-59, 1023] */
    y = 2.0 * (s * cy_expm1_reduced_d(r, short_series) + (s - 0.5));
    /* tiny |x| (and +-0): expm1(x) = x to the last bit */
    return cy_sel_d(__builtin_fabs(x) < 0x1p-54, x, y);
}

CY_MF double cy_tanh_impl(double x, int short_series)
{
    double a = __builtin_fabs(x), e;
    a = cy_sel_d(a > 20.0, 20.0, a);
    e = cy_expm1_impl(2.0 * a, short_series);
    return __builtin_copysign(e / (e + 2.0), x);
}

CY_MF double cy_sigmoid_impl(double x, int short_series)
{
    double e = cy_exp_impl(-__builtin_fabs(x), short_series);
    return cy_sel_d(x >= 0.0, 1.0, e) / (1.0 + e);
}

/* log(1 + u) for 0 <= u <= 1 only (softplus needs no more). */
CY_MF double cy_log1p_unit_d(double u, int short_series)
{
    double m = 1.0 + u;
    double c = (u - (m - 1.0)) / m;           /* what rounding 1 + u lost, to first order */
    int big = m > CY_SQRT2;
    double k = cy_sel_d(big, 1.0, 0.0);
    double f = cy_sel_d(big, 0.5 * m, m) - 1.0;     /* exact; in [sqrt(1/2) - 1, sqrt(2) - 1] */
    double s = f / (2.0 + f), z = s * s, p;   /* |s| <= 0.1716, z <= 0.0295 */
    if (short_series) {
        p = 1.0 / 9;
    } else {
        p = 1.0 / 19;
        p = p * z + 1.0 / 17;
        p = p * z + 1.0 / 15;
        p = p * z + 1.0 / 13;
        p = p * z + 1.0 / 11;
        p = p * z + 1.0 / 9;
    }
    p = p * z + 1.0 / 7;
    p = p * z + 1.0 / 5;
    p = p * z + 1.0 / 3;
    p = p * z + 1.0;
    return k * CY_LN2_HI + ((k * CY_LN2_LO + c) + 2.0 * s * p);
}

CY_MF double cy_softplus_impl(double x, int short_series)
{
    double l = cy_log1p_unit_d(cy_exp_impl(-__builtin_fabs(x), short_series), short_series);
    return cy_sel_d(x > 0.0, x, 0.0) + l;
}

/* -- the element functions --------------------------------------------------------------- */
CY_MF double cy_exp_d(double x) { return cy_exp_impl(x, 0); }
CY_MF double cy_expm1_d(double x) { return cy_expm1_impl(x, 0); }
CY_MF double cy_tanh_d(double x) { return cy_tanh_impl(x, 0); }
CY_MF double cy_sigmoid_d(double x) { return cy_sigmoid_impl(x, 0); }
CY_MF double cy_silu_d(double x) { return x * cy_sigmoid_impl(x, 0); }
CY_MF double cy_softplus_d(double x) { return cy_softplus_impl(x, 0); }
CY_MF double cy_elu_d(double x, double alpha)
{ return cy_sel_d(x > 0.0, x, alpha * cy_expm1_impl(x, 0)); }
CY_MF double cy_leaky_relu_d(double x, double slope) { return cy_sel_d(x > 0.0, x, x * slope); }
/* relu as np.maximum(x, 0): NaN stays NaN, -0.0 becomes +0.0 */
CY_MF double cy_relu_d(double x) { return cy_sel_d(x <= 0.0, 0.0, x); }

/* float32 exp, tanh and sigmoid in float arithmetic (twice the lanes of a float64 evaluation):
   Cody-Waite reduction with ln2 = C1 + C2 (C1 has 9 bits, so n * C1 is exact) and the minimax
   polynomial of Cephes' expf (S. Moshier; relative error ~1 ulp), tanh by Cephes' tanhf: an odd
   minimax polynomial below |x| = 0.625 and 1 - 2 / (exp(2|x|) + 1) above, where tanh >= 0.55 so
   the subtraction loses nothing that matters (absolute error < 1e-7). */
#define CY_ROUND_F 12582912.0f                /* 1.5 * 2^23 */

CY_MF float cy_pow2_f(float k)                /* 2^k for an integer-valued k in [-126, 127] */
{
    cy_bits32 b, r;
    r.f = CY_ROUND_F;
    b.f = k + CY_ROUND_F;
    b.u = (b.u - r.u + 127u) << 23;
    return b.f;
}

CY_MF float cy_exp_f(float x)
{
    float n, r, p, h;
    x = cy_sel_f(x < -104.0f, -104.0f, x);    /* exp is 0 or inf in float beyond these */
    x = cy_sel_f(x > 89.0f, 89.0f, x);
    n = (x * 1.44269504088896341f + CY_ROUND_F) - CY_ROUND_F;
    r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
    p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    h = (n * 0.5f + CY_ROUND_F) - CY_ROUND_F; /* 2^n = 2^h 2^(n-h), each factor normal */
    return (p * cy_pow2_f(h)) * cy_pow2_f(n - h);
}

CY_MF float cy_tanh_f(float x)
{
    float a = __builtin_fabsf(x), z = a * a, p, t, n, r, e;
    cy_bits32 s, m;
    p = -5.70498872745e-3f;                   /* |x| <= 0.625: an odd polynomial */
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    p = p * z * a + a;
    /* |x| > 0.625: 1 - 2 / (exp(2|x|) + 1), tanh being 1 in float above |x| = 9.1; with 2|x|
       clipped to 40 (n <= 58) one power of two suffices and exp needs no other clip */
    t = cy_sel_f(a > 20.0f, 40.0f, a + a);
    n = (t * 1.44269504088896341f + CY_ROUND_F) - CY_ROUND_F;
    r = (t - n * 0.693359375f) - n * -2.12194440e-4f;
    e = 1.9875691500e-4f;
    e = e * r + 1.3981999507e-3f;
    e = e * r + 8.3334519073e-3f;
    e = e * r + 4.1665795894e-2f;
    e = e * r + 1.6666665459e-1f;
    e = e * r + 5.0000001201e-1f;
    e = e * (r * r) + r + 1.0f;
    m.f = CY_ROUND_F;
    s.f = n + CY_ROUND_F;
    s.u = (s.u - m.u + 127u) << 23;
    e = 1.0f - 2.0f / (e * s.f + 1.0f);
    return __builtin_copysignf(cy_sel_f(a > 0.625f, e, p), x);
}

CY_MF float cy_sigmoid_f(float x)
{
    float e = cy_exp_f(-__builtin_fabsf(x));
    return cy_sel_f(x >= 0.0f, 1.0f, e) / (1.0f + e);
}

/* silu in float64: in float, sigmoid(x) is subnormal below x = -87 and x * sigmoid(x) would
   lose the digits that float64 keeps (measured 52 ulp at the bottom of the range) */
CY_MF float cy_silu_f(float x) { return (float)((double)x * cy_sigmoid_impl(x, 1)); }
CY_MF float cy_expm1_f(float x) { return (float)cy_expm1_impl(x, 1); }
CY_MF float cy_softplus_f(float x) { return (float)cy_softplus_impl(x, 1); }
CY_MF float cy_elu_f(float x, float alpha)
{ return cy_sel_f(x > 0.0f, x, (float)((double)alpha * cy_expm1_impl(x, 1))); }
CY_MF float cy_leaky_relu_f(float x, float slope) { return cy_sel_f(x > 0.0f, x, x * slope); }
CY_MF float cy_relu_f(float x) { return cy_sel_f(x <= 0.0f, 0.0f, x); }

/* -- derivatives through the output y (silu: through the input x) ------------------------
   The twins' formulas and operation order (cytorch.activations), in the array's own type. */
#define CY_DERIVATIVES(T, S, EXPM1)                                                          \
CY_MF T cy_tanh_grad_##S(T dout, T y) { return (1 - y * y) * dout; }                         \
CY_MF T cy_sigmoid_grad_##S(T dout, T y) { return dout * y * (1 - y); }                      \
CY_MF T cy_relu_grad_##S(T dout, T y) { return cy_sel_##S(y > 0, dout, 0); }                 \
CY_MF T cy_elu_grad_##S(T dout, T y, T alpha) { return cy_sel_##S(y > 0, dout, dout * (y + alpha)); } \
CY_MF T cy_leaky_relu_grad_##S(T dout, T y, T slope) { return cy_sel_##S(y > 0, dout, dout * slope); } \
CY_MF T cy_softplus_grad_##S(T dout, T y) { return dout * -EXPM1(-y); }                      \
CY_MF T cy_silu_grad_##S(T dout, T x)                                                        \
{ T s = cy_sigmoid_##S(x); return dout * (s * (1 + x * (1 - s))); }
CY_DERIVATIVES(float, f, cy_expm1_f)
CY_DERIVATIVES(double, d, cy_expm1_d)

/* -- row functions, one per instruction set ------------------------------------------------ */
#define CY_ACT_LOOP(T, EXPR) for (i = 0; i < n; i++) { T v = x[i]; y[i] = (EXPR); } break;
#define CY_GRAD_LOOP(T, EXPR) for (i = 0; i < n; i++) { T g = dout[i], v = y[i]; dx[i] = (EXPR); } \
                              break;

#define CY_ACT_ROWS(NAME, T, S, TARGET)                                                      \
static TARGET void cy_act_forward_##NAME##_##S(int code, const T *x, T *y, Py_ssize_t n,     \
                                               T alpha)                                      \
{                                                                                            \
    Py_ssize_t i;                                                                            \
    switch (code) {                                                                          \
    case CY_ACT_RELU: CY_ACT_LOOP(T, cy_relu_##S(v))                                         \
    case CY_ACT_TANH: CY_ACT_LOOP(T, cy_tanh_##S(v))                                         \
    case CY_ACT_SIGMOID: CY_ACT_LOOP(T, cy_sigmoid_##S(v))                                   \
    case CY_ACT_ELU: CY_ACT_LOOP(T, cy_elu_##S(v, alpha))                                    \
    case CY_ACT_LEAKY_RELU: CY_ACT_LOOP(T, cy_leaky_relu_##S(v, alpha))                      \
    case CY_ACT_SOFTPLUS: CY_ACT_LOOP(T, cy_softplus_##S(v))                                 \
    case CY_ACT_SILU: CY_ACT_LOOP(T, cy_silu_##S(v))                                         \
    case CY_ACT_EXP: CY_ACT_LOOP(T, cy_exp_##S(v))                                           \
    case CY_ACT_EXPM1: CY_ACT_LOOP(T, cy_expm1_##S(v))                                       \
    default: CY_ACT_LOOP(T, v)                                                               \
    }                                                                                        \
}                                                                                            \
static TARGET void cy_act_backward_##NAME##_##S(int code, const T *dout, const T *y, T *dx,  \
                                                Py_ssize_t n, T alpha)                       \
{                                                                                            \
    Py_ssize_t i;                                                                            \
    switch (code) {                                                                          \
    case CY_ACT_RELU: CY_GRAD_LOOP(T, cy_relu_grad_##S(g, v))                                \
    case CY_ACT_TANH: CY_GRAD_LOOP(T, cy_tanh_grad_##S(g, v))                                \
    case CY_ACT_SIGMOID: CY_GRAD_LOOP(T, cy_sigmoid_grad_##S(g, v))                          \
    case CY_ACT_ELU: CY_GRAD_LOOP(T, cy_elu_grad_##S(g, v, alpha))                           \
    case CY_ACT_LEAKY_RELU: CY_GRAD_LOOP(T, cy_leaky_relu_grad_##S(g, v, alpha))             \
    case CY_ACT_SOFTPLUS: CY_GRAD_LOOP(T, cy_softplus_grad_##S(g, v))                        \
    case CY_ACT_SILU: CY_GRAD_LOOP(T, cy_silu_grad_##S(g, v))                                \
    default: CY_GRAD_LOOP(T, ((void)v, g))                                                   \
    }                                                                                        \
}

/* Column sums, the db of a layer: db[j] += sum over r of src[r * cols + j], in float64, for a
   rows x cols block (row-major).  A loop over j alone is as long as cols (16 filters: two
   vectors of doubles, 6: not even one), and a loop over r strides through memory, so the block
   is read as a matrix of wider rows instead: m = lcm(cols, 8) / cols of its rows at a time, m cols
   numbers (whole vectors of doubles in every variant), summed column by column into acc as
   vectors; the rows left over (fewer than m) go into the first columns of acc, and acc is
   folded into db.  (8 columns and more are wide enough already: m = 1, acc is db.)  Each
   db[j] is then the same sums in the same order in every variant and every position of the
   block -- the additions are of exact float64 values, lane by lane -- so db depends only on
   how the caller cuts the batch into blocks. */
#define CY_COLS_WIDE 8
#define CY_COLS_ACC (8 * CY_COLS_WIDE)     /* the widest acc: lcm(cols, 8) <= 8 * cols */
#define CY_COL_SUMS(NAME, T, S, TARGET)                                                      \
static TARGET void cy_col_sums_rows_##NAME##_##S(const T *restrict src, Py_ssize_t rows,    \
                                                 Py_ssize_t cols, double *restrict acc)      \
{                                                                                            \
    Py_ssize_t r, j;                                                                         \
    for (r = 0; r < rows; r++)                                                               \
        for (j = 0; j < cols; j++)                                                           \
            acc[j] += src[r * cols + j];                                                     \
}                                                                                            \
static TARGET void cy_col_sums_##NAME##_##S(const T *src, Py_ssize_t rows, Py_ssize_t cols,  \
                                            double *db)                                      \
{                                                                                            \
    double acc[CY_COLS_ACC];                                                                 \
    Py_ssize_t m = 1, wide, full, i, j;                                                      \
    if (cols >= CY_COLS_WIDE) {                                                              \
        cy_col_sums_rows_##NAME##_##S(src, rows, cols, db);                                  \
        return;                                                                              \
    }                                                                                        \
    while ((m * cols) % CY_COLS_WIDE)                                                        \
        m++;                                                                                 \
    wide = m * cols;                                                                         \
    full = rows / m;                                                                         \
    for (j = 0; j < wide; j++)                                                               \
        acc[j] = 0;                                                                          \
    cy_col_sums_rows_##NAME##_##S(src, full, wide, acc);                                     \
    cy_col_sums_rows_##NAME##_##S(src + full * wide, 1, (rows - full * m) * cols, acc);      \
    for (i = 0; i < m; i++)                                                                  \
        for (j = 0; j < cols; j++)                                                           \
            db[j] += acc[i * cols + j];                                                      \
}

/* The epilogues of a layer whose output is rows x cols, row-major, bias per column (Dense:
   N x units; a channels-last conv: N*H_out*W_out x K).  Blocks of about CY_EPILOGUE_BLOCK
   values, so that a block is still in L1 when the second loop over it runs:
     forward   z := f(z + bias)                 (bias may be NULL)
     backward  dz := dout * f'(y), db += the column sums of dz, in float64 (db may be NULL;
               the blocks are whole multiples of the column sums' m rows).  With CY_ACT_LINEAR
               dz may be NULL: then db sums dout itself, in the same blocks, so that a
               fused and an unfused layer get the same bits.
   For a small cols the bias loop is short and scalar; the activation loop, over the whole
   block, and the column sums are the vector ones. */
#define CY_EPILOGUE_BLOCK 2048
#define CY_EPILOGUES(NAME, T, S, TARGET)                                                     \
static TARGET void cy_bias_act_forward_##NAME##_##S(int code, T *z, const T *bias,          \
                                                   Py_ssize_t rows, Py_ssize_t cols, T alpha) \
{                                                                                            \
    Py_ssize_t rb = cols < CY_EPILOGUE_BLOCK ? CY_EPILOGUE_BLOCK / cols : 1, r0, r1, i, j;   \
    for (r0 = 0; r0 < rows; r0 = r1) {                                                       \
        r1 = r0 + rb < rows ? r0 + rb : rows;                                                \
        if (bias)                                                                            \
            for (i = r0; i < r1; i++)                                                        \
                for (j = 0; j < cols; j++)                                                   \
                    z[i * cols + j] += bias[j];                                              \
        if (code != CY_ACT_LINEAR)                                                           \
            cy_act_forward_##NAME##_##S(code, z + r0 * cols, z + r0 * cols,                  \
                                        (r1 - r0) * cols, alpha);                            \
    }                                                                                        \
}                                                                                            \
static TARGET void cy_bias_act_backward_##NAME##_##S(int code, const T *dout, const T *y,   \
                                                    T *dz, Py_ssize_t rows, Py_ssize_t cols, \
                                                    T alpha, double *db)                     \
{                                                                                            \
    Py_ssize_t rb = cols < CY_EPILOGUE_BLOCK ? CY_EPILOGUE_BLOCK / cols : 1, r0, r1;         \
    if (cols < CY_COLS_WIDE)        /* whole multiples of the column sums' m (which divides 8) */ \
        rb = (rb + CY_COLS_WIDE - 1) / CY_COLS_WIDE * CY_COLS_WIDE;                          \
    for (r0 = 0; r0 < rows; r0 = r1) {                                                       \
        r1 = r0 + rb < rows ? r0 + rb : rows;                                                \
        if (dz == NULL) {       /* CY_ACT_LINEAR: db of dout itself, in the same blocks */   \
            if (db)                                                                          \
                cy_col_sums_##NAME##_##S(dout + r0 * cols, r1 - r0, cols, db);               \
            continue;                                                                        \
        }                                                                                    \
        cy_act_backward_##NAME##_##S(code, dout + r0 * cols, y + r0 * cols, dz + r0 * cols,  \
                                     (r1 - r0) * cols, alpha);                               \
        if (db)                                                                              \
            cy_col_sums_##NAME##_##S(dz + r0 * cols, r1 - r0, cols, db);                     \
    }                                                                                        \
}

#define CY_NO_TARGET_MATHFN
CY_ACT_ROWS(default, float, f, CY_NO_TARGET_MATHFN)
CY_ACT_ROWS(default, double, d, CY_NO_TARGET_MATHFN)
#if CY_ISA_X86
CY_ACT_ROWS(avx2, float, f, CY_TARGET_AVX2)
CY_ACT_ROWS(avx2, double, d, CY_TARGET_AVX2)
CY_ACT_ROWS(avx512, float, f, CY_TARGET_AVX512)
CY_ACT_ROWS(avx512, double, d, CY_TARGET_AVX512)
#endif
CY_COL_SUMS(default, float, f, CY_NO_TARGET_MATHFN)
CY_COL_SUMS(default, double, d, CY_NO_TARGET_MATHFN)
#if CY_ISA_X86
CY_COL_SUMS(avx2, float, f, CY_TARGET_AVX2)
CY_COL_SUMS(avx2, double, d, CY_TARGET_AVX2)
CY_COL_SUMS(avx512, float, f, CY_TARGET_AVX512)
CY_COL_SUMS(avx512, double, d, CY_TARGET_AVX512)
#endif
CY_EPILOGUES(default, float, f, CY_NO_TARGET_MATHFN)
CY_EPILOGUES(default, double, d, CY_NO_TARGET_MATHFN)
#if CY_ISA_X86
CY_EPILOGUES(avx2, float, f, CY_TARGET_AVX2)
CY_EPILOGUES(avx2, double, d, CY_TARGET_AVX2)
CY_EPILOGUES(avx512, float, f, CY_TARGET_AVX512)
CY_EPILOGUES(avx512, double, d, CY_TARGET_AVX512)
#endif

typedef void (*cy_act_forward_f_t)(int, const float *, float *, Py_ssize_t, float);
typedef void (*cy_act_forward_d_t)(int, const double *, double *, Py_ssize_t, double);
typedef void (*cy_act_backward_f_t)(int, const float *, const float *, float *, Py_ssize_t,
                                    float);
typedef void (*cy_act_backward_d_t)(int, const double *, const double *, double *, Py_ssize_t,
                                    double);
typedef void (*cy_bias_act_forward_f_t)(int, float *, const float *, Py_ssize_t, Py_ssize_t,
                                        float);
typedef void (*cy_bias_act_forward_d_t)(int, double *, const double *, Py_ssize_t, Py_ssize_t,
                                        double);
typedef void (*cy_bias_act_backward_f_t)(int, const float *, const float *, float *,
                                         Py_ssize_t, Py_ssize_t, float, double *);
typedef void (*cy_bias_act_backward_d_t)(int, const double *, const double *, double *,
                                         Py_ssize_t, Py_ssize_t, double, double *);
typedef void (*cy_col_sums_f_t)(const float *, Py_ssize_t, Py_ssize_t, double *);
typedef void (*cy_col_sums_d_t)(const double *, Py_ssize_t, Py_ssize_t, double *);
static cy_col_sums_f_t cy_col_sums_f = cy_col_sums_default_f;
static cy_col_sums_d_t cy_col_sums_d = cy_col_sums_default_d;
static cy_bias_act_forward_f_t cy_bias_act_forward_f = cy_bias_act_forward_default_f;
static cy_bias_act_forward_d_t cy_bias_act_forward_d = cy_bias_act_forward_default_d;
static cy_bias_act_backward_f_t cy_bias_act_backward_f = cy_bias_act_backward_default_f;
static cy_bias_act_backward_d_t cy_bias_act_backward_d = cy_bias_act_backward_default_d;
static cy_act_forward_f_t cy_act_forward_f = cy_act_forward_default_f;
static cy_act_forward_d_t cy_act_forward_d = cy_act_forward_default_d;
static cy_act_backward_f_t cy_act_backward_f = cy_act_backward_default_f;
static cy_act_backward_d_t cy_act_backward_d = cy_act_backward_default_d;

/* Use variant ``isa`` (a CY_ISA_* value this CPU supports: the caller checks); returns it. */
static int cy_mathfn_select(int isa)
{
#define CY_MATHFN_USE(NAME)                                                                  \
    cy_act_forward_f = cy_act_forward_##NAME##_f;                                            \
    cy_act_forward_d = cy_act_forward_##NAME##_d;                                            \
    cy_act_backward_f = cy_act_backward_##NAME##_f;                                          \
    cy_act_backward_d = cy_act_backward_##NAME##_d;                                          \
    cy_col_sums_f = cy_col_sums_##NAME##_f;                                                  \
    cy_col_sums_d = cy_col_sums_##NAME##_d;                                                  \
    cy_bias_act_forward_f = cy_bias_act_forward_##NAME##_f;                                  \
    cy_bias_act_forward_d = cy_bias_act_forward_##NAME##_d;                                  \
    cy_bias_act_backward_f = cy_bias_act_backward_##NAME##_f;                                \
    cy_bias_act_backward_d = cy_bias_act_backward_##NAME##_d;
    CY_MATHFN_USE(default)
#if CY_ISA_X86
    if (isa == CY_ISA_AVX512) {
        CY_MATHFN_USE(avx512)
        return isa;
    }
    if (isa == CY_ISA_AVX2) {
        CY_MATHFN_USE(avx2)
        return isa;
    }
#endif
#undef CY_MATHFN_USE
    (void)isa;
    return CY_ISA_DEFAULT;
}

#endif
