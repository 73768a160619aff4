/* cytorch/_kernels/_winograd.h -- the tile transforms of Winograd's F(2x2, 3x3) and F(4x4, 3x3)
 * (``_winograd.pyx``; the NumPy twin, which explains the method, is
 * ``cytorch.reference.conv2d_winograd_forward``).
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
 *   cy_wino_product  M = V @ U, dU += V^T dM     the 16 tile products of a group (below)
 *
 * and cy_wino4_input, _output, _output_adjoint: the same on F(4x4, 3x3)'s 6x6 tiles (36 runs,
 * 4x4 output cells; below), whose 36 tile products per group are cy_wino_product's too.
 *
 * B^T and A^T hold only 0 and +-1: every transform is additions and subtractions in a fixed
 * order, without a multiplication to fuse, so every variant below gives the same bits (the
 * products: see their comment).  F(4x4, 3x3)'s multiply by 2, 4 and 8 only: exact, so a fused
 * multiply-add (GCC forms them in the avx2 and avx512 variants) rounds as the separate
 * operations do, and every variant gives the same bits there too.
 *
 * Instruction sets (see ``_isa.h``): each transform is compiled three times, for AVX-512F,
 * AVX2 + FMA (x86-64-v3) and the build's baseline (SSE2 on x86-64), and the module picks one
 * when it is imported (``cy_wino_select``).  The loops over c are plain C that GCC vectorises
 * (``#pragma GCC ivdep``: the 16 input and 16 output runs never overlap, which GCC could not
 * prove by itself with so many pointers).  Checked with ``objdump -d`` on the module built by
 * GCC 12.2 (-O3): the avx512 variants add and subtract zmm registers, the avx2 variants ymm
 * registers and the default variants xmm registers (``tests/test_isa.py`` repeats the check
 * when objdump is installed).  F(4x4, 3x3)'s transforms hold 36 temporaries per lane, more
 * than the 16 or 32 vector registers: they spill to the stack (L1), and still cost little
 * beside the tile products (VGG-ish layer, avx2: 6.0 ms forward against F(2x2, 3x3)'s 8.4).
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

/* ---- F(4x4, 3x3): 6x6 tiles -----------------------------------------------------------------
 * The same three transforms for 4x4 output tiles (the twin's WINOGRAD4_BT, _G, _AT: points 0,
 * +-1, +-2 and infinity).  Their matrices hold 2, 4, 5 and 8; each 1-D transform below
 * multiplies only by powers of two (5 d = 4 d + d), which are exact, so a fused multiply-add
 * that GCC may form rounds exactly as the separate multiply and add: every variant gives the
 * same bits here too (as long as no 4 d or 8 d overflows).  Each is written as a 1-D
 * transform on the columns of the tile (in temporaries) and then the same on their rows. */

/* v = B^T d for one column of 6:  v0 = 4 d0 - 5 d2 + d4,  v1 = -4 d1 - 4 d2 + d3 + d4,
 * v2 = 4 d1 - 4 d2 - d3 + d4,  v3 = -2 d1 - d2 + 2 d3 + d4,  v4 = 2 d1 - d2 - 2 d3 + d4,
 * v5 = 4 d1 - 5 d3 + d5 (with the shared parts q, r, s, u computed once) */
#define CY_W4_BT(T, d0, d1, d2, d3, d4, d5, v0, v1, v2, v3, v4, v5)                           \
    do {                                                                                     \
        T q_ = (d4) - 4 * (d2), r_ = (d3) - 4 * (d1);                                        \
        T s_ = (d4) - (d2), u_ = 2 * ((d3) - (d1));                                          \
        v0 = (4 * (d0) + q_) - (d2);                                                         \
        v1 = q_ + r_;                                                                        \
        v2 = q_ - r_;                                                                        \
        v3 = s_ + u_;                                                                        \
        v4 = s_ - u_;                                                                        \
        v5 = (4 * (d1) + ((d5) - 4 * (d3))) - (d3);                                          \
    } while (0)

/* y = A^T m for one column of 6:  y0 = m0 + m1 + m2 + m3 + m4,  y1 = m1 - m2 + 2 (m3 - m4),
 * y2 = m1 + m2 + 4 (m3 + m4),  y3 = m1 - m2 + 8 (m3 - m4) + m5 */
#define CY_W4_AT(T, m0, m1, m2, m3, m4, m5, y0, y1, y2, y3)                                    \
    do {                                                                                     \
        T a_ = (m1) + (m2), b_ = (m1) - (m2), c_ = (m3) + (m4), e_ = (m3) - (m4);            \
        y0 = ((m0) + a_) + c_;                                                               \
        y1 = b_ + 2 * e_;                                                                    \
        y2 = a_ + 4 * c_;                                                                    \
        y3 = (b_ + 8 * e_) + (m5);                                                           \
    } while (0)

/* r = A y for one column of 4 (the adjoint of CY_W4_AT):  r0 = y0,  r1 = y0 + y1 + y2 + y3,
 * r2 = y0 - y1 + y2 - y3,  r3 = y0 + 2 y1 + 4 y2 + 8 y3,  r4 = y0 - 2 y1 + 4 y2 - 8 y3,
 * r5 = y3 */
#define CY_W4_A(T, y0, y1, y2, y3, r0, r1, r2, r3, r4, r5)                                     \
    do {                                                                                     \
        T e_ = (y0) + (y2), o_ = (y1) + (y3);                                                \
        T f_ = (y0) + 4 * (y2), p_ = 2 * (y1) + 8 * (y3);                                    \
        r0 = (y0);                                                                           \
        r1 = e_ + o_;                                                                        \
        r2 = e_ - o_;                                                                        \
        r3 = f_ + p_;                                                                        \
        r4 = f_ - p_;                                                                        \
        r5 = (y3);                                                                           \
    } while (0)

/* V[(6i + j) * vs + c] = (B^T d B)[i][j] for c < C, d[i][j] = p[6i + j][c].  Straight-line 
 * code over 36 named pointers and temporaries (with arrays and loops over the cells GCC    
 * left the loop over c scalar). */                                                         
#define CY_WINO4_INPUT(NAME, T, TARGET)                                                     \
static TARGET void NAME(const T *const *p, T *V, Py_ssize_t vs, Py_ssize_t C)               \
{                                                                                           \
    const T *d00 = p[0], *d01 = p[1], *d02 = p[2], *d03 = p[3], *d04 = p[4], *d05 = p[5];   \
    const T *d10 = p[6], *d11 = p[7], *d12 = p[8], *d13 = p[9], *d14 = p[10], *d15 = p[11]; \
    const T *d20 = p[12], *d21 = p[13], *d22 = p[14], *d23 = p[15], *d24 = p[16], *d25 = p[17];\
    const T *d30 = p[18], *d31 = p[19], *d32 = p[20], *d33 = p[21], *d34 = p[22], *d35 = p[23];\
    const T *d40 = p[24], *d41 = p[25], *d42 = p[26], *d43 = p[27], *d44 = p[28], *d45 = p[29];\
    const T *d50 = p[30], *d51 = p[31], *d52 = p[32], *d53 = p[33], *d54 = p[34], *d55 = p[35];\
    Py_ssize_t c;                                                                           \
    CY_WINO_IVDEP                                                                           \
    for (c = 0; c < C; c++) {                                                               \
        T t00, t01, t02, t03, t04, t05;                                                     \
        T t10, t11, t12, t13, t14, t15;                                                     \
        T t20, t21, t22, t23, t24, t25;                                                     \
        T t30, t31, t32, t33, t34, t35;                                                     \
        T t40, t41, t42, t43, t44, t45;                                                     \
        T t50, t51, t52, t53, t54, t55;                                                     \
        CY_W4_BT(T, d00[c], d10[c], d20[c], d30[c], d40[c], d50[c],                         \
                 t00, t10, t20, t30, t40, t50);                                             \
        CY_W4_BT(T, d01[c], d11[c], d21[c], d31[c], d41[c], d51[c],                         \
                 t01, t11, t21, t31, t41, t51);                                             \
        CY_W4_BT(T, d02[c], d12[c], d22[c], d32[c], d42[c], d52[c],                         \
                 t02, t12, t22, t32, t42, t52);                                             \
        CY_W4_BT(T, d03[c], d13[c], d23[c], d33[c], d43[c], d53[c],                         \
                 t03, t13, t23, t33, t43, t53);                                             \
        CY_W4_BT(T, d04[c], d14[c], d24[c], d34[c], d44[c], d54[c],                         \
                 t04, t14, t24, t34, t44, t54);                                             \
        CY_W4_BT(T, d05[c], d15[c], d25[c], d35[c], d45[c], d55[c],                         \
                 t05, t15, t25, t35, t45, t55);                                             \
        CY_W4_BT(T, t00, t01, t02, t03, t04, t05,                                           \
                 V[0 * vs + c], V[1 * vs + c], V[2 * vs + c],                               \
                 V[3 * vs + c], V[4 * vs + c], V[5 * vs + c]);                              \
        CY_W4_BT(T, t10, t11, t12, t13, t14, t15,                                           \
                 V[6 * vs + c], V[7 * vs + c], V[8 * vs + c],                               \
                 V[9 * vs + c], V[10 * vs + c], V[11 * vs + c]);                            \
        CY_W4_BT(T, t20, t21, t22, t23, t24, t25,                                           \
                 V[12 * vs + c], V[13 * vs + c], V[14 * vs + c],                            \
                 V[15 * vs + c], V[16 * vs + c], V[17 * vs + c]);                           \
        CY_W4_BT(T, t30, t31, t32, t33, t34, t35,                                           \
                 V[18 * vs + c], V[19 * vs + c], V[20 * vs + c],                            \
                 V[21 * vs + c], V[22 * vs + c], V[23 * vs + c]);                           \
        CY_W4_BT(T, t40, t41, t42, t43, t44, t45,                                           \
                 V[24 * vs + c], V[25 * vs + c], V[26 * vs + c],                            \
                 V[27 * vs + c], V[28 * vs + c], V[29 * vs + c]);                           \
        CY_W4_BT(T, t50, t51, t52, t53, t54, t55,                                           \
                 V[30 * vs + c], V[31 * vs + c], V[32 * vs + c],                            \
                 V[33 * vs + c], V[34 * vs + c], V[35 * vs + c]);                           \
    }                                                                                       \
}                                                                                           

/* y[4p + q][k] = (A^T M A)[p][q] + bias[k] for k < K, M[i][j] = Mt[(6i + j) * ms + k]. */
#define CY_WINO4_OUTPUT(NAME, T, TARGET)                                                      \
static TARGET void NAME(const T *Mt, Py_ssize_t ms, const T *bias, T *const *y,              \
                        Py_ssize_t K)                                                        \
{                                                                                            \
    Py_ssize_t k;                                                                            \
    CY_WINO_IVDEP                                                                            \
    for (k = 0; k < K; k++) {                                                                \
        T s[4][6], o0, o1, o2, o3;                                                           \
        int i, j;                                                                            \
        for (j = 0; j < 6; j++) /* s = A^T M: column j of M -> column j of s */              \
            CY_W4_AT(T, Mt[j * ms + k], Mt[(6 + j) * ms + k], Mt[(12 + j) * ms + k],          \
                     Mt[(18 + j) * ms + k], Mt[(24 + j) * ms + k], Mt[(30 + j) * ms + k],    \
                     s[0][j], s[1][j], s[2][j], s[3][j]);                                    \
        for (i = 0; i < 4; i++) { /* Y = s A: row i of s -> row i of Y, + bias */            \
            CY_W4_AT(T, s[i][0], s[i][1], s[i][2], s[i][3], s[i][4], s[i][5],                \
                     o0, o1, o2, o3);                                                        \
            y[4 * i][k] = o0 + bias[k];                                                      \
            y[4 * i + 1][k] = o1 + bias[k];                                                  \
            y[4 * i + 2][k] = o2 + bias[k];                                                  \
            y[4 * i + 3][k] = o3 + bias[k];                                                  \
        }                                                                                    \
    }                                                                                        \
}

/* dM[(6i + j) * ms + k] = (A dY A^T)[i][j] for k < K, dY[p][q] = y[4p + q][k]. */
#define CY_WINO4_OUTPUT_ADJOINT(NAME, T, TARGET)                                              \
static TARGET void NAME(const T *const *y, T *dM, Py_ssize_t ms, Py_ssize_t K)               \
{                                                                                            \
    Py_ssize_t k;                                                                            \
    CY_WINO_IVDEP                                                                            \
    for (k = 0; k < K; k++) {                                                                \
        T r[6][4];                                                                           \
        int i, q;                                                                            \
        for (q = 0; q < 4; q++) /* r = A dY: column q of dY -> column q of r */              \
            CY_W4_A(T, y[q][k], y[4 + q][k], y[8 + q][k], y[12 + q][k],                      \
                    r[0][q], r[1][q], r[2][q], r[3][q], r[4][q], r[5][q]);                   \
        for (i = 0; i < 6; i++) /* dM = r A^T: row i of r -> row i of dM */                  \
            CY_W4_A(T, r[i][0], r[i][1], r[i][2], r[i][3],                                   \
                    dM[(6 * i) * ms + k], dM[(6 * i + 1) * ms + k], dM[(6 * i + 2) * ms + k],\
                    dM[(6 * i + 3) * ms + k], dM[(6 * i + 4) * ms + k],                      \
                    dM[(6 * i + 5) * ms + k]);                                               \
    }                                                                                        \
}

/* ---- the tile products ------------------------------------------------------------------
 * C = A @ B for one of the 16 positions, straight out of the scratch the transforms wrote, with
 * no packing (OpenBLAS packed both operands of each of the 16 GEMMs per group again, and zeroed
 * C before adding: on the VGG-ish layer, 32x32x32x32 -> 64, avx2, those copies took a quarter
 * of backward's time, and each GEMM was only (a few hundred) x 32 @ 32 x 64):
 *
 *     C[r][k] = (beta ? C[r][k] : 0) + (sum over s < S of A[r * ar + s * as] * B[s * ldb + k])
 *
 * for r < rows and k < cols (a multiple of the vector length: the callers pad B and C's rows
 * to 64 bytes).  Forward and dx: A = V (tiles x C: ar = C, as = 1), B = U; dW: A = V read
 * transposed (ar = 1, as = C), B = dM, C = dU, summed over the tiles.  A tile of MR rows by 2
 * vectors of C (1 at an odd last vector) stays in registers for the whole sum (the column
 * block of B, S x 2 vectors, stays in L1 while the row blocks run past it); each lane adds its
 * S terms in one chain, in order, from zero, and then adds C when beta (dW: a sum per group of
 * tiles, the groups added in order -- one chain over a unit's thousands of tiles had 3x the
 * float32 error, 4.8e-7 against 1.6e-7 on the VGG-ish dW); the AVX2 and AVX-512 variants,
 * which fuse each multiply-add, compute the same bits; the default variant (SSE2 on x86-64, no
 * FMA) rounds each product first.  Register blocking, MR x 2 vectors of accumulators, plus 2
 * vectors of B and one broadcast (measured on the VGG-ish layer, avx512: 6 x 4 and 8 x 3 no
 * faster than 12 x 2):
 *
 *     variant   vectors       registers   MR x 2
 *     avx512    64-byte zmm   32          12 x 2   (24 accumulators)
 *     avx2      32-byte ymm   16           6 x 2   (12)
 *     default   16-byte xmm   16           6 x 2   (12)
 *
 * Checked with ``objdump -d`` (GCC 12.2, -O3): the inner loops of cy_wino_product_avx512_*
 * are vfmadd231p[sd] on zmm with the broadcast folded in, of _avx2_* on ymm, of _default_*
 * mulp[sd] + addp[sd] on xmm, and none spills a vector register (the avx512 loops compare
 * their end with the stack: 12 rows of A take 12 general registers; ``tests/test_isa.py``
 * repeats the check).
 */
#if defined(__GNUC__)
#  define CY_WP_INLINE static inline __attribute__((always_inline))
#  define CY_WP_UNROLL _Pragma("GCC unroll 16")
#  define CY_WP_VEC(NAME, T, VB)                                                              \
typedef T NAME##_v __attribute__((vector_size(VB), aligned(sizeof(T)), may_alias));
#  define CY_WP_ZERO(NAME) ((NAME##_v){0})
#  define CY_WP_LOAD(NAME, p) (*(const NAME##_v *)(p))
#  define CY_WP_STORE(NAME, p, v) (*(NAME##_v *)(p) = (v))
#  define CY_WP_FMA(NAME, acc, b, a) ((acc) += (b) * (a))
#  define CY_WP_ADD(NAME, u, v) ((u) + (v))
#else
/* other compilers: a struct of lanes and loops (the same order of summation per lane) */
#  define CY_WP_INLINE static
#  define CY_WP_UNROLL
#  define CY_WP_VEC(NAME, T, VB)                                                              \
typedef struct { T e[VB / sizeof(T)]; } NAME##_v;                                            \
static NAME##_v NAME##_zero(void) { NAME##_v z; int i;                                       \
    for (i = 0; i < (int)(VB / sizeof(T)); i++) z.e[i] = 0; return z; }                     \
static NAME##_v NAME##_ld(const T *p) { NAME##_v z; int i;                                   \
    for (i = 0; i < (int)(VB / sizeof(T)); i++) z.e[i] = p[i]; return z; }                   \
static void NAME##_st(T *p, NAME##_v v) { int i;                                             \
    for (i = 0; i < (int)(VB / sizeof(T)); i++) p[i] = v.e[i]; }                             \
static void NAME##_fma(NAME##_v *acc, NAME##_v b, T a) { int i;                              \
    for (i = 0; i < (int)(VB / sizeof(T)); i++) acc->e[i] += b.e[i] * a; }                   \
static NAME##_v NAME##_add(NAME##_v u, NAME##_v v) { int i;                                  \
    for (i = 0; i < (int)(VB / sizeof(T)); i++) u.e[i] += v.e[i]; return u; }
#  define CY_WP_ZERO(NAME) (NAME##_zero())
#  define CY_WP_LOAD(NAME, p) (NAME##_ld(p))
#  define CY_WP_STORE(NAME, p, v) (NAME##_st((p), (v)))
#  define CY_WP_FMA(NAME, acc, b, a) (NAME##_fma(&(acc), (b), (a)))
#  define CY_WP_ADD(NAME, u, v) (NAME##_add((u), (v)))
#endif

/* the cases 1..n of a switch over the rows of a tile, each calling M(NAME, rows, nv) */
#define CY_WP_CASES6(M, NAME, nv)                                                             \
    case 1: M(NAME, 1, nv); break; case 2: M(NAME, 2, nv); break;                            \
    case 3: M(NAME, 3, nv); break; case 4: M(NAME, 4, nv); break;                            \
    case 5: M(NAME, 5, nv); break; case 6: M(NAME, 6, nv); break;
#define CY_WP_CASES12(M, NAME, nv) CY_WP_CASES6(M, NAME, nv)                                  \
    case 7: M(NAME, 7, nv); break; case 8: M(NAME, 8, nv); break;                            \
    case 9: M(NAME, 9, nv); break; case 10: M(NAME, 10, nv); break;                          \
    case 11: M(NAME, 11, nv); break; case 12: M(NAME, 12, nv); break;
#define CY_WP_TILE(NAME, mr, nv)                                                              \
    NAME##_tile(A + r0 * ar, ar, as, B + j0, ldb, C + r0 * ldc + j0, ldc, S, beta, mr, nv)

#define CY_WINO_PRODUCT(NAME, T, VB, MR, CASES, TARGET)                                       \
CY_WP_VEC(NAME, T, VB)                                                                       \
enum { NAME##_VL = VB / sizeof(T) };                                                         \
                                                                                             \
/* one tile: mr rows (ldc apart) by nv vectors of C, compile-time sizes: registers */        \
CY_WP_INLINE TARGET void                                                                     \
NAME##_tile(const T *A, Py_ssize_t ar, Py_ssize_t as, const T *B, Py_ssize_t ldb, T *C,      \
            Py_ssize_t ldc, Py_ssize_t S, int beta, const int mr, const int nv)              \
{                                                                                            \
    NAME##_v acc[MR][2], b0, b1;                                                             \
    Py_ssize_t s;                                                                            \
    int r;                                                                                   \
    CY_WP_UNROLL for (r = 0; r < mr; r++) {                                                  \
        acc[r][0] = CY_WP_ZERO(NAME);                                                        \
        if (nv > 1)                                                                          \
            acc[r][1] = CY_WP_ZERO(NAME);                                                    \
    }                                                                                        \
    for (s = 0; s < S; s++) {                                                                \
        const T *a = A + s * as;                                                             \
        b0 = CY_WP_LOAD(NAME, B + s * ldb);                                                  \
        if (nv > 1)                                                                          \
            b1 = CY_WP_LOAD(NAME, B + s * ldb + NAME##_VL);                                  \
        CY_WP_UNROLL for (r = 0; r < mr; r++) {                                              \
            CY_WP_FMA(NAME, acc[r][0], b0, a[r * ar]);                                       \
            if (nv > 1)                                                                      \
                CY_WP_FMA(NAME, acc[r][1], b1, a[r * ar]);                                   \
        }                                                                                    \
    }                                                                                        \
    CY_WP_UNROLL for (r = 0; r < mr; r++) {                                                  \
        if (beta)                                                                            \
            acc[r][0] = CY_WP_ADD(NAME, CY_WP_LOAD(NAME, C + r * ldc), acc[r][0]);           \
        CY_WP_STORE(NAME, C + r * ldc, acc[r][0]);                                           \
        if (nv > 1) {                                                                        \
            if (beta)                                                                        \
                acc[r][1] = CY_WP_ADD(NAME, CY_WP_LOAD(NAME, C + r * ldc + NAME##_VL),       \
                                      acc[r][1]);                                            \
            CY_WP_STORE(NAME, C + r * ldc + NAME##_VL, acc[r][1]);                           \
        }                                                                                    \
    }                                                                                        \
}                                                                                            \
                                                                                             \
static TARGET void NAME(const T *A, Py_ssize_t ar, Py_ssize_t as, const T *B, Py_ssize_t ldb, \
                        T *C, Py_ssize_t ldc, Py_ssize_t S, Py_ssize_t rows, Py_ssize_t cols,\
                        int beta)                                                            \
{                                                                                            \
    Py_ssize_t j0, r0;                                                                       \
    for (j0 = 0; j0 < cols; j0 += 2 * NAME##_VL) {                                           \
        if (cols - j0 >= 2 * NAME##_VL) {                                                    \
            for (r0 = 0; r0 < rows; r0 += MR)                                                \
                switch (rows - r0 < MR ? rows - r0 : MR) { CASES(CY_WP_TILE, NAME, 2) }      \
        } else {                                                                             \
            for (r0 = 0; r0 < rows; r0 += MR)                                                \
                switch (rows - r0 < MR ? rows - r0 : MR) { CASES(CY_WP_TILE, NAME, 1) }      \
        }                                                                                    \
    }                                                                                        \
}

#define CY_WINO_VARIANT(ISA, TARGET, VB, MR, CASES)                                         \
CY_WINO_INPUT(cy_wino_input_##ISA##_f, float, TARGET)                                        \
CY_WINO_INPUT(cy_wino_input_##ISA##_d, double, TARGET)                                       \
CY_WINO_OUTPUT(cy_wino_output_##ISA##_f, float, TARGET)                                      \
CY_WINO_OUTPUT(cy_wino_output_##ISA##_d, double, TARGET)                                     \
CY_WINO_OUTPUT_ADJOINT(cy_wino_output_adjoint_##ISA##_f, float, TARGET)                      \
CY_WINO_OUTPUT_ADJOINT(cy_wino_output_adjoint_##ISA##_d, double, TARGET)                      \
CY_WINO_PRODUCT(cy_wino_product_##ISA##_f, float, VB, MR, CASES, TARGET)                     \
CY_WINO_PRODUCT(cy_wino_product_##ISA##_d, double, VB, MR, CASES, TARGET)                    \
CY_WINO4_INPUT(cy_wino4_input_##ISA##_f, float, TARGET)                                      \
CY_WINO4_INPUT(cy_wino4_input_##ISA##_d, double, TARGET)                                     \
CY_WINO4_OUTPUT(cy_wino4_output_##ISA##_f, float, TARGET)                                    \
CY_WINO4_OUTPUT(cy_wino4_output_##ISA##_d, double, TARGET)                                   \
CY_WINO4_OUTPUT_ADJOINT(cy_wino4_output_adjoint_##ISA##_f, float, TARGET)                    \
CY_WINO4_OUTPUT_ADJOINT(cy_wino4_output_adjoint_##ISA##_d, double, TARGET)

#define CY_WINO_NO_TARGET
CY_WINO_VARIANT(default, CY_WINO_NO_TARGET, 16, 6, CY_WP_CASES6)
#if CY_ISA_X86
CY_WINO_VARIANT(avx2, CY_TARGET_AVX2, 32, 6, CY_WP_CASES6)
CY_WINO_VARIANT(avx512, CY_TARGET_AVX512, 64, 12, CY_WP_CASES12)
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
typedef void (*cy_wino_product_f_t)(const float *, Py_ssize_t, Py_ssize_t, const float *,
                                    Py_ssize_t, float *, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                                    Py_ssize_t, int);
typedef void (*cy_wino_product_d_t)(const double *, Py_ssize_t, Py_ssize_t, const double *,
                                    Py_ssize_t, double *, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                                    Py_ssize_t, int);

static cy_wino_input_f_t cy_wino_input_f = cy_wino_input_default_f;
static cy_wino_input_d_t cy_wino_input_d = cy_wino_input_default_d;
static cy_wino_output_f_t cy_wino_output_f = cy_wino_output_default_f;
static cy_wino_output_d_t cy_wino_output_d = cy_wino_output_default_d;
static cy_wino_adjoint_f_t cy_wino_output_adjoint_f = cy_wino_output_adjoint_default_f;
static cy_wino_adjoint_d_t cy_wino_output_adjoint_d = cy_wino_output_adjoint_default_d;
static cy_wino_product_f_t cy_wino_product_f = cy_wino_product_default_f;
static cy_wino_product_d_t cy_wino_product_d = cy_wino_product_default_d;
static cy_wino_input_f_t cy_wino4_input_f = cy_wino4_input_default_f;
static cy_wino_input_d_t cy_wino4_input_d = cy_wino4_input_default_d;
static cy_wino_output_f_t cy_wino4_output_f = cy_wino4_output_default_f;
static cy_wino_output_d_t cy_wino4_output_d = cy_wino4_output_default_d;
static cy_wino_adjoint_f_t cy_wino4_output_adjoint_f = cy_wino4_output_adjoint_default_f;
static cy_wino_adjoint_d_t cy_wino4_output_adjoint_d = cy_wino4_output_adjoint_default_d;

#define CY_WINO_USE(ISA)                                                                      \
    do {                                                                                     \
        cy_wino_input_f = cy_wino_input_##ISA##_f;                                           \
        cy_wino_input_d = cy_wino_input_##ISA##_d;                                           \
        cy_wino_output_f = cy_wino_output_##ISA##_f;                                         \
        cy_wino_output_d = cy_wino_output_##ISA##_d;                                         \
        cy_wino_output_adjoint_f = cy_wino_output_adjoint_##ISA##_f;                         \
        cy_wino_output_adjoint_d = cy_wino_output_adjoint_##ISA##_d;                         \
        cy_wino_product_f = cy_wino_product_##ISA##_f;                                       \
        cy_wino_product_d = cy_wino_product_##ISA##_d;                                       \
        cy_wino4_input_f = cy_wino4_input_##ISA##_f;                                         \
        cy_wino4_input_d = cy_wino4_input_##ISA##_d;                                         \
        cy_wino4_output_f = cy_wino4_output_##ISA##_f;                                       \
        cy_wino4_output_d = cy_wino4_output_##ISA##_d;                                       \
        cy_wino4_output_adjoint_f = cy_wino4_output_adjoint_##ISA##_f;                       \
        cy_wino4_output_adjoint_d = cy_wino4_output_adjoint_##ISA##_d;                       \
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
