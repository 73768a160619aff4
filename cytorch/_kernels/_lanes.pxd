# The one inner loop of conv2d's direct path (see ``_conv.pyx``), in C so that it can use the
# CPU's widest vectors:
#
#     acc[j] += sum_{t < n} p[shift + off[t] + j] * q[t * qs + j % P]        for 0 <= j < L
#
# Every term is a product of two contiguous runs of L numbers ("lanes"), so the sum is pure
# vector arithmetic with no shuffles, whatever the channel counts are.  L and P must be whole
# numbers of 64-byte vectors (16 floats or 8 doubles); callers pad their rows to that.  q's rows
# may be periodic (tiled weights): then a row stores one period P and, unless P is a single
# vector, 3 more vectors of wrap-around (qs >= P + 3 vectors), so that 4 consecutive vectors
# can be read from any vector offset below P.  P >= L means no period.
#
# How it is fast.  The lanes are walked in blocks of four vectors kept in registers while all n
# terms are added (even and odd terms into separate sums: 8 independent chains of fused
# multiply-adds hide their latency), then stored once.  When q repeats every vector, each term
# loads its weight vector once instead of four times.  The arithmetic is written with GCC/Clang
# vector extensions; on x86-64 ``target_clones`` compiles the function three times (AVX-512,
# AVX2, baseline SSE2) and the dynamic loader picks the best one the CPU has when the module is
# imported.  So one build runs on every x86-64 CPU, and the default ``-O3`` build (which may
# only assume SSE2) still gets AVX-512 where it exists.  Elsewhere GCC/Clang compile the same
# code for the target's default vectors, and other compilers (MSVC) a plain loop: same result.
#
# Declared as float and double variants; ``lanes_dot`` picks one for the fused type.
from cython cimport floating

cdef extern from *:
    """
    #if defined(__GNUC__) && defined(__x86_64__) && defined(__has_attribute)
    #  if __has_attribute(target_clones)
    #    define CY_LANES_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
    #  endif
    #endif
    #ifndef CY_LANES_CLONES
    #  define CY_LANES_CLONES
    #endif

    #if defined(__GNUC__)
    /* A 64-byte vector of T that may sit at any T-aligned address (unaligned loads/stores). */
    #define CY_LANES_DOT(NAME, T)                                                            \
    typedef T NAME##_vec __attribute__((vector_size(64), aligned(sizeof(T)), may_alias));    \
    CY_LANES_CLONES static void NAME(T *acc, const T *p, Py_ssize_t shift,                   \
                                     const Py_ssize_t *off, const T *q, Py_ssize_t qs,       \
                                     Py_ssize_t P, Py_ssize_t n, Py_ssize_t L)               \
    {                                                                                        \
        const Py_ssize_t V = 64 / sizeof(T);                                                 \
        const NAME##_vec zero = {0};                                                         \
        Py_ssize_t j = 0, t;                                                                 \
        for (; j + 4 * V <= L; j += 4 * V) {                                                 \
            /* 4 vectors, even and odd terms apart: 8 independent sums hide the latency */   \
            const T *pj = p + shift + j, *qj = q + j % P;                                    \
            NAME##_vec *a = (NAME##_vec *)(acc + j);                                         \
            NAME##_vec a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];                           \
            NAME##_vec b0 = zero, b1 = zero, b2 = zero, b3 = zero;                           \
            if (P == V) {         /* q repeats every vector: load it once per term */        \
                for (t = 0; t + 1 < n; t += 2) {                                             \
                    const NAME##_vec *u = (const NAME##_vec *)(pj + off[t]);                 \
                    const NAME##_vec *v = (const NAME##_vec *)(pj + off[t + 1]);             \
                    NAME##_vec w = *(const NAME##_vec *)(q + t * qs);                        \
                    NAME##_vec z = *(const NAME##_vec *)(q + (t + 1) * qs);                  \
                    a0 += u[0] * w; a1 += u[1] * w; a2 += u[2] * w; a3 += u[3] * w;          \
                    b0 += v[0] * z; b1 += v[1] * z; b2 += v[2] * z; b3 += v[3] * z;          \
                }                                                                            \
            } else                                                                           \
            for (t = 0; t + 1 < n; t += 2) {                                                 \
                const NAME##_vec *u = (const NAME##_vec *)(pj + off[t]);                     \
                const NAME##_vec *w = (const NAME##_vec *)(qj + t * qs);                     \
                const NAME##_vec *v = (const NAME##_vec *)(pj + off[t + 1]);                 \
                const NAME##_vec *z = (const NAME##_vec *)(qj + (t + 1) * qs);               \
                a0 += u[0] * w[0]; a1 += u[1] * w[1]; a2 += u[2] * w[2]; a3 += u[3] * w[3];  \
                b0 += v[0] * z[0]; b1 += v[1] * z[1]; b2 += v[2] * z[2]; b3 += v[3] * z[3];  \
            }                                                                                \
            if (t < n) {          /* an odd number of terms: the last one */                 \
                const NAME##_vec *u = (const NAME##_vec *)(pj + off[t]);                     \
                const NAME##_vec *w = (const NAME##_vec *)(qj + t * qs);                     \
                const Py_ssize_t s = P == V ? 0 : 1;                                         \
                a0 += u[0] * w[0]; a1 += u[1] * w[s];                                        \
                a2 += u[2] * w[2 * s]; a3 += u[3] * w[3 * s];                                \
            }                                                                                \
            a[0] = a0 + b0; a[1] = a1 + b1; a[2] = a2 + b2; a[3] = a3 + b3;                  \
        }                                                                                    \
        for (; j < L; j += V) {   /* the last 1-3 vectors: one at a time, 4 sums over t */   \
            const T *pj = p + shift + j, *qj = q + j % P;                                    \
            NAME##_vec s0 = *(NAME##_vec *)(acc + j), s1 = zero, s2 = zero, s3 = zero;       \
            for (t = 0; t + 3 < n; t += 4) {                                                 \
                s0 += *(const NAME##_vec *)(pj + off[t]) * *(const NAME##_vec *)(qj + t * qs);\
                s1 += *(const NAME##_vec *)(pj + off[t + 1])                                 \
                      * *(const NAME##_vec *)(qj + (t + 1) * qs);                            \
                s2 += *(const NAME##_vec *)(pj + off[t + 2])                                 \
                      * *(const NAME##_vec *)(qj + (t + 2) * qs);                            \
                s3 += *(const NAME##_vec *)(pj + off[t + 3])                                 \
                      * *(const NAME##_vec *)(qj + (t + 3) * qs);                            \
            }                                                                                \
            for (; t < n; t++)                                                               \
                s0 += *(const NAME##_vec *)(pj + off[t]) * *(const NAME##_vec *)(qj + t * qs);\
            *(NAME##_vec *)(acc + j) = (s0 + s1) + (s2 + s3);                                \
        }                                                                                    \
    }
    #else
    #define CY_LANES_DOT(NAME, T)                                                            \
    static void NAME(T *acc, const T *p, Py_ssize_t shift, const Py_ssize_t *off,            \
                     const T *q, Py_ssize_t qs, Py_ssize_t P, Py_ssize_t n, Py_ssize_t L)    \
    {                                                                                        \
        Py_ssize_t j, t;                                                                     \
        for (t = 0; t < n; t++) {                                                            \
            const T *pt = p + shift + off[t], *qt = q + t * qs;                              \
            for (j = 0; j < L; j++)                                                          \
                acc[j] += pt[j] * qt[j % P];                                                 \
        }                                                                                    \
    }
    #endif

    CY_LANES_DOT(cy_lanes_dot_f, float)
    CY_LANES_DOT(cy_lanes_dot_d, double)
    """
    void cy_lanes_dot_f(float *acc, const float *p, Py_ssize_t shift, const Py_ssize_t *off,
                        const float *q, Py_ssize_t qs, Py_ssize_t P, Py_ssize_t n,
                        Py_ssize_t L) noexcept nogil
    void cy_lanes_dot_d(double *acc, const double *p, Py_ssize_t shift, const Py_ssize_t *off,
                        const double *q, Py_ssize_t qs, Py_ssize_t P, Py_ssize_t n,
                        Py_ssize_t L) noexcept nogil


cdef inline void lanes_dot(floating *acc, const floating *p, Py_ssize_t shift,
                           const Py_ssize_t *off, const floating *q, Py_ssize_t qs,
                           Py_ssize_t P, Py_ssize_t n, Py_ssize_t L) noexcept nogil:
    """acc[j] += sum_{t < n} p[shift + off[t] + j] * q[t*qs + j % P] for j < L."""
    if floating is float:
        cy_lanes_dot_f(acc, p, shift, off, q, qs, P, n, L)
    else:
        cy_lanes_dot_d(acc, p, shift, off, q, qs, P, n, L)

