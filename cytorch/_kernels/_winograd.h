/* cytorch/_kernels/_winograd.h -- the tile transforms of Winograd's F(2x2, 3x3) (``_winograd.pyx``;
 * the NumPy twin, which explains the method, is ``cytorch.reference.conv2d_winograd_forward``).
 *
 * Each transform works on one tile and runs along the channels: the numbers of one pixel are
 * contiguous in a channels-last batch, so cell (i, j) of a tile is a run of C numbers and every
 * transform is the same few additions on 16 runs at once -- vector arithmetic over c with no
 * shuffles.  The caller passes one pointer per cell (a pixel of the image, or a run of zeros
 * for a cell in the padding or past a ragged edge), so the transforms never test a bound.
 *
 *   cy_wino_input    V[i][j] = (B^T d B)[i][j]   d: 4x4 cells of C numbers -> 16 runs of C
 *   cy_wino_output   Y = A^T M A (+ bias)        M: 16 runs of K -> 2x2 cells of K numbers
 *   cy_wino_output_adjoint  dM = A dY A^T        dY: 2x2 cells of K -> 16 runs of K
 *
 * B^T and A^T hold only 0 and +-1: every transform is additions and subtractions in a fixed
 * order, without a multiplication to fuse, so every variant below gives the same bits.
 *
 * Instruction sets (see ``_isa.h``): each transform is compiled three times, for AVX-512F,
 * AVX2 + FMA (x86-64-v3) and the build's baseline (SSE2 on x86-64), and the module picks one
 * when it is imported (``cy_wino_select``).  The loops over c are plain C that GCC vectorises
 * (``#pragma GCC ivdep``: the 16 input and 16 output runs never overlap, which GCC could not
 * prove by itself with so many pointers).  Checked with ``objdump -d`` on the module built by
 * GCC 12.2 (-O3): the avx512 variants add and subtract zmm registers, the avx2 variants ymm
 * registers and the default variants xmm registers (``tests/test_isa.py`` repeats the check
 * when objdump is installed).
 */
#ifndef CYTORCH_WINOGRAD_H
#define CYTORCH_WINOGRAD_H

#include <Python.h>
#include "_isa.h"

#if defined(__GNUC__) && !defined(__clang__)
#  define CY_WINO_IVDEP _Pragma("GCC ivdep")
#elif defined(__clang__)
#  define CY_WINO_IVDEP _Pragma("clang loop vectorize(enable)")
#else
#  define CY_WINO_IVDEP
#endif

/* V[(4i + j) * vs + c] = (B^T d B)[i][j] for c < C, d[i][j] = p[4i + j][c].
 * B^T d (rows):  t0 = d0 - d2,  t1 = d1 + d2,  t2 = d2 - d1,  t3 = d1 - d3;  then the same on
 * the columns of t. */
#define CY_WINO_INPUT(NAME, T, TARGET)                                                        \
static TARGET void NAME(const T *const *p, T *V, Py_ssize_t vs, Py_ssize_t C)                \
{                                                                                            \
    const T *d00 = p[0], *d01 = p[1], *d02 = p[2], *d03 = p[3];                              \
    const T *d10 = p[4], *d11 = p[5], *d12 = p[6], *d13 = p[7];                              \
    const T *d20 = p[8], *d21 = p[9], *d22 = p[10], *d23 = p[11];                            \
    const T *d30 = p[12], *d31 = p[13], *d32 = p[14], *d33 = p[15];                          \
    Py_ssize_t c;                                                                            \
    CY_WINO_IVDEP                                                                            \
    for (c = 0; c < C; c++) {                                                                \
        T t00 = d00[c] - d20[c], t01 = d01[c] - d21[c];                                      \
        T t02 = d02[c] - d22[c], t03 = d03[c] - d23[c];                                      \
        T t10 = d10[c] + d20[c], t11 = d11[c] + d21[c];                                      \
        T t12 = d12[c] + d22[c], t13 = d13[c] + d23[c];                                      \
        T t20 = d20[c] - d10[c], t21 = d21[c] - d11[c];                                      \
        T t22 = d22[c] - d12[c], t23 = d23[c] - d13[c];                                      \
        T t30 = d10[c] - d30[c], t31 = d11[c] - d31[c];                                      \
        T t32 = d12[c] - d32[c], t33 = d13[c] - d33[c];                                      \
        V[0 * vs + c] = t00 - t02;   V[1 * vs + c] = t01 + t02;                              \
        V[2 * vs + c] = t02 - t01;   V[3 * vs + c] = t01 - t03;                              \
        V[4 * vs + c] = t10 - t12;   V[5 * vs + c] = t11 + t12;                              \
        V[6 * vs + c] = t12 - t11;   V[7 * vs + c] = t11 - t13;                              \
        V[8 * vs + c] = t20 - t22;   V[9 * vs + c] = t21 + t22;                              \
        V[10 * vs + c] = t22 - t21;  V[11 * vs + c] = t21 - t23;                             \
        V[12 * vs + c] = t30 - t32;  V[13 * vs + c] = t31 + t32;                             \
        V[14 * vs + c] = t32 - t31;  V[15 * vs + c] = t31 - t33;                             \
    }                                                                                        \
}

/* y[2p + q][k] = (A^T M A)[p][q] + bias[k] for k < K, M[i][j] = Mt[(4i + j) * ms + k].
 * A^T M (rows):  s0 = m0 + m1 + m2,  s1 = m1 - m2 - m3;  then the same on the columns. */
#define CY_WINO_OUTPUT(NAME, T, TARGET)                                                       \
static TARGET void NAME(const T *Mt, Py_ssize_t ms, const T *bias, T *const *y,              \
                        Py_ssize_t K)                                                        \
{                                                                                            \
    T *y00 = y[0], *y01 = y[1], *y10 = y[2], *y11 = y[3];                                    \
    Py_ssize_t k;                                                                            \
    CY_WINO_IVDEP                                                                            \
    for (k = 0; k < K; k++) {                                                                \
        T s00 = Mt[0 * ms + k] + Mt[4 * ms + k] + Mt[8 * ms + k];                            \
        T s01 = Mt[1 * ms + k] + Mt[5 * ms + k] + Mt[9 * ms + k];                            \
        T s02 = Mt[2 * ms + k] + Mt[6 * ms + k] + Mt[10 * ms + k];                           \
        T s03 = Mt[3 * ms + k] + Mt[7 * ms + k] + Mt[11 * ms + k];                           \
        T s10 = Mt[4 * ms + k] - Mt[8 * ms + k] - Mt[12 * ms + k];                           \
        T s11 = Mt[5 * ms + k] - Mt[9 * ms + k] - Mt[13 * ms + k];                           \
        T s12 = Mt[6 * ms + k] - Mt[10 * ms + k] - Mt[14 * ms + k];                          \
        T s13 = Mt[7 * ms + k] - Mt[11 * ms + k] - Mt[15 * ms + k];                          \
        y00[k] = s00 + s01 + s02 + bias[k];                                                  \
        y01[k] = s01 - s02 - s03 + bias[k];                                                  \
        y10[k] = s10 + s11 + s12 + bias[k];                                                  \
        y11[k] = s11 - s12 - s13 + bias[k];                                                  \
    }                                                                                        \
}

/* dM[(4i + j) * ms + k] = (A dY A^T)[i][j] for k < K, dY[p][q] = y[2p + q][k]: the adjoint of
 * the output transform.  A dY (rows):  r0 = y0,  r1 = y0 + y1,  r2 = y0 - y1,  r3 = -y1;  then
 * the same on the columns of r. */
#define CY_WINO_OUTPUT_ADJOINT(NAME, T, TARGET)                                               \
static TARGET void NAME(const T *const *y, T *dM, Py_ssize_t ms, Py_ssize_t K)               \
{                                                                                            \
    const T *y00 = y[0], *y01 = y[1], *y10 = y[2], *y11 = y[3];                              \
    Py_ssize_t k;                                                                            \
    CY_WINO_IVDEP                                                                            \
    for (k = 0; k < K; k++) {                                                                \
        T r00 = y00[k], r01 = y01[k];                                                        \
        T r10 = y00[k] + y10[k], r11 = y01[k] + y11[k];                                      \
        T r20 = y00[k] - y10[k], r21 = y01[k] - y11[k];                                      \
        T r30 = -y10[k], r31 = -y11[k];                                                      \
        dM[0 * ms + k] = r00;   dM[1 * ms + k] = r00 + r01;                                  \
        dM[2 * ms + k] = r00 - r01;   dM[3 * ms + k] = -r01;                                 \
        dM[4 * ms + k] = r10;   dM[5 * ms + k] = r10 + r11;                                  \
        dM[6 * ms + k] = r10 - r11;   dM[7 * ms + k] = -r11;                                 \
        dM[8 * ms + k] = r20;   dM[9 * ms + k] = r20 + r21;                                  \
        dM[10 * ms + k] = r20 - r21;  dM[11 * ms + k] = -r21;                                \
        dM[12 * ms + k] = r30;  dM[13 * ms + k] = r30 + r31;                                 \
        dM[14 * ms + k] = r30 - r31;  dM[15 * ms + k] = -r31;                                \
    }                                                                                        \
}

#define CY_WINO_VARIANT(ISA, TARGET)                                                          \
CY_WINO_INPUT(cy_wino_input_##ISA##_f, float, TARGET)                                        \
CY_WINO_INPUT(cy_wino_input_##ISA##_d, double, TARGET)                                       \
CY_WINO_OUTPUT(cy_wino_output_##ISA##_f, float, TARGET)                                      \
CY_WINO_OUTPUT(cy_wino_output_##ISA##_d, double, TARGET)                                     \
CY_WINO_OUTPUT_ADJOINT(cy_wino_output_adjoint_##ISA##_f, float, TARGET)                      \
CY_WINO_OUTPUT_ADJOINT(cy_wino_output_adjoint_##ISA##_d, double, TARGET)

#define CY_WINO_NO_TARGET
CY_WINO_VARIANT(default, CY_WINO_NO_TARGET)
#if CY_ISA_X86
CY_WINO_VARIANT(avx2, CY_TARGET_AVX2)
CY_WINO_VARIANT(avx512, CY_TARGET_AVX512)
#endif

/* The variant in use, set once when the module is imported (cy_wino_select). */
typedef void (*cy_wino_input_f_t)(const float *const *, float *, Py_ssize_t, Py_ssize_t);
typedef void (*cy_wino_input_d_t)(const double *const *, double *, Py_ssize_t, Py_ssize_t);
typedef void (*cy_wino_output_f_t)(const float *, Py_ssize_t, const float *, float *const *,
                                   Py_ssize_t);
typedef void (*cy_wino_output_d_t)(const double *, Py_ssize_t, const double *,
                                   double *const *, Py_ssize_t);
typedef void (*cy_wino_adjoint_f_t)(const float *const *, float *, Py_ssize_t, Py_ssize_t);
typedef void (*cy_wino_adjoint_d_t)(const double *const *, double *, Py_ssize_t, Py_ssize_t);

static cy_wino_input_f_t cy_wino_input_f = cy_wino_input_default_f;
static cy_wino_input_d_t cy_wino_input_d = cy_wino_input_default_d;
static cy_wino_output_f_t cy_wino_output_f = cy_wino_output_default_f;
static cy_wino_output_d_t cy_wino_output_d = cy_wino_output_default_d;
static cy_wino_adjoint_f_t cy_wino_output_adjoint_f = cy_wino_output_adjoint_default_f;
static cy_wino_adjoint_d_t cy_wino_output_adjoint_d = cy_wino_output_adjoint_default_d;

#define CY_WINO_USE(ISA)                                                                      \
    do {                                                                                     \
        cy_wino_input_f = cy_wino_input_##ISA##_f;                                           \
        cy_wino_input_d = cy_wino_input_##ISA##_d;                                           \
        cy_wino_output_f = cy_wino_output_##ISA##_f;                                         \
        cy_wino_output_d = cy_wino_output_##ISA##_d;                                         \
        cy_wino_output_adjoint_f = cy_wino_output_adjoint_##ISA##_f;                         \
        cy_wino_output_adjoint_d = cy_wino_output_adjoint_##ISA##_d;                         \
    } while (0)

/* Use variant ``isa`` (a CY_ISA_* value this CPU supports: the caller checks); returns it. */
static int cy_wino_select(int isa)
{
    CY_WINO_USE(default);
#if CY_ISA_X86
    if (isa == CY_ISA_AVX512) {
        CY_WINO_USE(avx512);
        return isa;
    }
    if (isa == CY_ISA_AVX2) {
        CY_WINO_USE(avx2);
        return isa;
    }
#endif
    (void)isa;
    return CY_ISA_DEFAULT;
}

#endif
