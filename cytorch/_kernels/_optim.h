/* cytorch/_kernels/_optim.h -- the compiled optimizer step of ``_optim.pyx`` (twin: the
 * ``_update`` methods of ``cytorch/optimizers.py``).
 *
 * One function per instruction set and dtype, ``cy_optim_step_<variant>_<f|d>``, all with the
 * body in ``_optim_step.h``: plain C loops over contiguous arrays that the compiler vectorises
 * for the variant's instruction set (``_isa.h``: avx512, avx2 = x86-64-v3, default = the
 * build's SSE2).  The step is memory-bound (Adam reads four numbers and writes three per
 * parameter), but square roots and divisions are not cheap, and the widest vectors the CPU has
 * do the most of them per cycle.
 *
 * Rounding.  Each operation rounds to the array's dtype, in the twin's order, and
 * ``setup.py`` compiles this module with -ffp-contract=off (a fused multiply-add rounds once
 * where NumPy rounds twice) and -fno-math-errno (so that sqrt becomes the vector square-root
 * instruction, which rounds correctly as NumPy's does).  So every variant, and the twin, give
 * the same bits: ``tests/test_optim_kernel.py`` checks it.
 * Checked with ``objdump -d`` on the module built by GCC 12.2 (-O3): the avx512 variant of the
 * float step uses vsqrtps and vdivps on zmm registers, the avx2 variant on ymm registers, the
 * default variant sqrtps/divps on xmm registers, and none contains vfmadd
 * (``tests/test_isa.py`` repeats the check when objdump is installed).
 */
#ifndef CYTORCH_OPTIM_H
#define CYTORCH_OPTIM_H

#include <Python.h>
#include <math.h>
#include "_isa.h"

enum { CY_OPTIM_SGD = 0, CY_OPTIM_RMSPROP = 1, CY_OPTIM_ADAGRAD = 2, CY_OPTIM_ADAM = 3 };
enum { CY_CLIP_NONE = 0, CY_CLIP_SCALE = 1, CY_CLIP_VALUE = 2 };

/* Values per block: 256 floats are 1 KiB, so a block of the parameter, its gradient, three
   slots and the rewritten gradient all stay in the L1 cache while the step runs over them. */
#define CY_OPTIM_BLOCK 256

/* Everything one step needs besides the arrays, as doubles: the body rounds each to the
   array's dtype once.  flag1/flag2 and c[] mean, per kind:
       SGD      flag1 momentum > 0, flag2 nesterov;   c = lr, momentum
       RMSprop  flag1 momentum > 0, flag2 centered;   c = rho, 1 - rho, eps, lr, momentum
       Adagrad                                        c = eps, lr
       Adam     flag1 amsgrad;                        c = 1 - β1, 1 - β2, eps, step size */
typedef struct {
    int kind, flag1, flag2;
    double l2;          /* g <- g + l2 p before clipping (0: off) */
    int clip;           /* CY_CLIP_*: g <- g * clip_arg, or clipped to [-clip_arg, clip_arg] */
    double clip_arg;
    double decay;       /* p <- p - decay p before the update: lr * weight_decay (0: off) */
    double c[5];
} cy_optim_args;

typedef void (*cy_optim_f_t)(const cy_optim_args *, float *, float *, float *, float *,
                             float *, Py_ssize_t, Py_ssize_t);
typedef void (*cy_optim_d_t)(const cy_optim_args *, double *, double *, double *, double *,
                             double *, Py_ssize_t, Py_ssize_t);

#define CY_TARGET
#define CY_T float
#define CY_SQRT sqrtf
#define CY_FN cy_optim_step_default_f
#include "_optim_step.h"
#undef CY_T
#undef CY_SQRT
#undef CY_FN
#define CY_T double
#define CY_SQRT sqrt
#define CY_FN cy_optim_step_default_d
#include "_optim_step.h"
#undef CY_T
#undef CY_SQRT
#undef CY_FN
#undef CY_TARGET

#if CY_ISA_X86
#define CY_TARGET CY_TARGET_AVX2
#define CY_T float
#define CY_SQRT sqrtf
#define CY_FN cy_optim_step_avx2_f
#include "_optim_step.h"
#undef CY_T
#undef CY_SQRT
#undef CY_FN
#define CY_T double
#define CY_SQRT sqrt
#define CY_FN cy_optim_step_avx2_d
#include "_optim_step.h"
#undef CY_T
#undef CY_SQRT
#undef CY_FN
#undef CY_TARGET

#define CY_TARGET CY_TARGET_AVX512
#define CY_T float
#define CY_SQRT sqrtf
#define CY_FN cy_optim_step_avx512_f
#include "_optim_step.h"
#undef CY_T
#undef CY_SQRT
#undef CY_FN
#define CY_T double
#define CY_SQRT sqrt
#define CY_FN cy_optim_step_avx512_d
#include "_optim_step.h"
#undef CY_T
#undef CY_SQRT
#undef CY_FN
#undef CY_TARGET
#endif

static cy_optim_f_t cy_optim_step_f = cy_optim_step_default_f;
static cy_optim_d_t cy_optim_step_d = cy_optim_step_default_d;

/* Use variant ``isa`` (a CY_ISA_* value this CPU supports: the caller checks); returns it. */
static int cy_optim_select(int isa)
{
    cy_optim_step_f = cy_optim_step_default_f;
    cy_optim_step_d = cy_optim_step_default_d;
#if CY_ISA_X86
    if (isa == CY_ISA_AVX512) {
        cy_optim_step_f = cy_optim_step_avx512_f;
        cy_optim_step_d = cy_optim_step_avx512_d;
        return isa;
    }
    if (isa == CY_ISA_AVX2) {
        cy_optim_step_f = cy_optim_step_avx2_f;
        cy_optim_step_d = cy_optim_step_avx2_d;
        return isa;
    }
#endif
    (void)isa;
    return CY_ISA_DEFAULT;
}

#endif
