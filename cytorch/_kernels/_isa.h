/* cytorch/_kernels/_isa.h -- which vector instruction set a kernel variant may use.
 *
 * The hot loops in ``_lanes.h`` (conv2d's direct path) and ``_pool2x2.h`` (2x2 pooling) are
 * compiled three times on x86-64, each copy for one instruction set, and the module picks one
 * when it is imported (``cy_isa_best``, or the variant the private environment variable
 * CYTORCH_ISA names; see ``cytorch/_kernels/__init__.py``):
 *
 *     CY_ISA_AVX512   AVX-512F          64-byte zmm vectors, 32 registers
 *     CY_ISA_AVX2     x86-64-v3         AVX2 + FMA: 32-byte ymm vectors, 16 registers
 *     CY_ISA_DEFAULT  the build's own   SSE2 on x86-64 (16-byte xmm, 16 registers, no FMA)
 *
 * So one build (the default ``-O3`` assumes only SSE2) runs on every x86-64 CPU and still uses
 * the widest vectors the CPU has.  Each variant is a function with GCC/Clang's ``target``
 * attribute, not ``target_clones``: the clones of one function must share one body, but the
 * variants need different register blocking, and a module that selects its variant itself can
 * say which one runs and be told to run another (for the tests).  Note that ``target("avx2")``
 * alone does not enable FMA: that is why the AVX2 variant targets ``arch=x86-64-v3``.
 *
 * Elsewhere (other CPUs, other compilers) CY_ISA_X86 is 0 and only the default variant exists.
 */
#ifndef CYTORCH_ISA_H
#define CYTORCH_ISA_H

enum { CY_ISA_DEFAULT = 0, CY_ISA_AVX2 = 1, CY_ISA_AVX512 = 2 };

#if defined(__GNUC__) && defined(__x86_64__) && defined(__has_attribute)
#  if __has_attribute(target)
#    define CY_ISA_X86 1
#  endif
#endif
#ifndef CY_ISA_X86
#  define CY_ISA_X86 0
#endif

#if CY_ISA_X86
#  define CY_TARGET_AVX512 __attribute__((target("avx512f")))
#  if defined(__clang__) || __GNUC__ < 11
     /* the same instructions for this code; older GCC does not know the x86-64-v3 level */
#    define CY_TARGET_AVX2 __attribute__((target("avx2,fma")))
#  else
#    define CY_TARGET_AVX2 __attribute__((target("arch=x86-64-v3")))
#  endif
#endif

/* The best variant this CPU (and its operating system: the AVX-512 registers must be saved on
   a context switch, which __builtin_cpu_supports checks too) can run. */
static int cy_isa_best(void)
{
#if CY_ISA_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return CY_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return CY_ISA_AVX2;
#endif
    return CY_ISA_DEFAULT;
}

#endif
