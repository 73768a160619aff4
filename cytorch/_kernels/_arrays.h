/* cytorch/_kernels/_arrays.h -- the all-finite scans of ``_arrays.pyx`` (see its docstring).
 *
 * Integer AND, ADD and OR over the bits, no branch: the compiler vectorises the loop for any
 * x86-64 (SSE2, 16-byte vectors), and twice as wide for AVX2, which the ``target_clones``
 * attribute adds as a second copy that the loader picks on a CPU that has it (measured on an
 * AMD EPYC Zen 3: 75,264 float32 values in 12 us with SSE2, 4 us with AVX2).  The answer is
 * exact in either copy, so unlike the floating-point kernels (``_isa.h``) no variant needs to
 * be named or forced.
 */
#ifndef CYTORCH_ARRAYS_H
#define CYTORCH_ARRAYS_H

#include <stdint.h>

#if defined(__GNUC__) && defined(__x86_64__) && defined(__has_attribute)
#  if __has_attribute(target_clones)
#    define CY_ARRAYS_CLONES __attribute__((target_clones("avx2", "default")))
#  endif
#endif
#ifndef CY_ARRAYS_CLONES
#  define CY_ARRAYS_CLONES
#endif

/* cy_all_finite32 / cy_all_finite64: 1 when none of the floats whose bits are bits[0..n) is
   NaN or infinite.  (bits & EXP) + LSB, the exponent field plus one unit of its lowest bit,
   carries into the top bit only from an all-ones exponent (float32: 8 bits, float64: 11). */
#define CY_ALL_FINITE(NAME, T, EXP, LSB, TOP)                                                \
CY_ARRAYS_CLONES                                                                             \
static int NAME(const T *bits, Py_ssize_t n)                                                 \
{                                                                                            \
    T carries = 0;                                                                           \
    Py_ssize_t i;                                                                            \
    for (i = 0; i < n; i++)                                                                  \
        carries |= (bits[i] & EXP) + LSB;                                                    \
    return (carries >> TOP) == 0;                                                            \
}
CY_ALL_FINITE(cy_all_finite32, uint32_t, 0x7f800000u, 0x00800000u, 31)
CY_ALL_FINITE(cy_all_finite64, uint64_t, 0x7ff0000000000000ull, 0x0010000000000000ull, 63)

#endif
