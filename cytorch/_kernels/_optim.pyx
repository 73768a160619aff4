# cython: language_level=3
"""The optimizer step, compiled: one pass over each parameter, no temporary arrays (the
compiled twin of the ``_update`` methods of ``cytorch/optimizers.py``).

Layout contract, shared with the twin: a parameter, its gradient and its slots (the
optimizer's per-parameter buffers, in ``Optimizer.slots()`` order) are C-contiguous, writable
arrays of one dtype (float32 or float64) and one size, any shape: the step is elementwise.
The step, per element, in Keras's order (the formulas are in ``cytorch/optimizers.py``'s
docstring)::

    g <- g + l2 p                                    (l2 > 0: cytorch's coupled L2 penalty)
    g <- g * clip_arg   or   clip(g, -clip_arg, clip_arg)    (clip = 1 or 2; norms: see below)
    p <- p - decay p                                 (decay = lr * weight_decay > 0)
    the update rule of SGD, RMSprop, Adagrad or Adam

The rewritten gradient is stored back into ``g``, as the twin does.  A clipping norm needs every
value of a gradient (or of all of them) before the first update, so ``cytorch/optimizers.py``
computes it first with the twin's own ``np.dot`` and passes the scale; with an L2 penalty it
first adds the penalty with ``add_scaled`` here.

The loops are C (``_optim.h``, body ``_optim_step.h``), compiled for AVX-512, AVX2 + FMA and
the build's baseline; the module picks the variant when imported (``isa()``).  Every operation
rounds to the dtype in the twin's order, so the variants and the twin agree to the bit.
Parameters of at least ``MIN_PARALLEL_WORK`` values (``_parallel.pxd``) are split between
threads in chunks; elements are independent, so the result does not depend on the split.

``cytorch.optimizers`` decides which arrays are fit for the kernel; the entry points here check
every array (type, dtype, contiguity, writability, size) and the slots the options need, so
nothing is read or written out of bounds whatever they are given.

Why the arrays are checked with NumPy's C API rather than taken as typed memoryviews, as in the
other kernel modules: the step runs once per parameter per batch, mostly on small arrays
(LeNet's biases have 6 to 120 values), so the call itself is most of its cost.  Five fused-type
memoryview arguments cost 2.9 us a call, five checks of ``PyArray_DATA`` 0.5 us (measured on the
AMD EPYC Zen 5 of issue 13), and the arrays need no flattening.
"""
cimport numpy as cnp
from cython.parallel cimport prange

from . import isa_functions
from ._parallel cimport MIN_PARALLEL_WORK as _MIN_PARALLEL_WORK, threads_for

cnp.import_array()

cdef extern from "_optim.h" nogil:
    int cy_isa_best()
    int cy_optim_select(int isa)
    enum:
        CY_OPTIM_SGD
        CY_OPTIM_RMSPROP
        CY_OPTIM_ADAGRAD
        CY_OPTIM_ADAM
        CY_CLIP_NONE
        CY_CLIP_SCALE
        CY_CLIP_VALUE
    ctypedef struct cy_optim_args:
        int kind, flag1, flag2
        double l2
        int clip
        double clip_arg
        double decay
        double c[5]
    void cy_optim_step_f(const cy_optim_args *a, float *p, float *g, float *s0, float *s1,
                         float *s2, Py_ssize_t start, Py_ssize_t stop) noexcept
    void cy_optim_step_d(const cy_optim_args *a, double *p, double *g, double *s0,
                         double *s1, double *s2, Py_ssize_t start, Py_ssize_t stop) noexcept

# The clipping modes, for ``cytorch.optimizers``.
CLIP_NONE, CLIP_SCALE, CLIP_VALUE = CY_CLIP_NONE, CY_CLIP_SCALE, CY_CLIP_VALUE
# Parameters smaller than this run on one thread (``_parallel.pxd``): the caller need not ask
# how many threads there are (``cytorch.get_num_threads()`` costs some microseconds).
MIN_PARALLEL_WORK = _MIN_PARALLEL_WORK

# Values per parallel task: a multiple of the C code's block (256), large enough to amortise
# the hand-out.
cdef Py_ssize_t CHUNK = 1 << 14


def _select_variant(int index):
    """Switch the step to variant ``index``; the index it then runs."""
    return cy_optim_select(index)


isa_variants, _select_isa, isa = isa_functions("the step", cy_isa_best(), _select_variant)


cdef char _NOTHING


cdef void *_data(object a, int typenum, Py_ssize_t n, str name) except NULL:
    """The data of ``a``, after checking that it is a C-contiguous, writable array of
    ``typenum`` with ``n`` values; ValueError naming it otherwise."""
    if not cnp.PyArray_Check(a) or cnp.PyArray_TYPE(<cnp.ndarray>a) != typenum \
            or not cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>a) \
            or not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>a) \
            or cnp.PyArray_SIZE(<cnp.ndarray>a) != n:
        want = "float32" if typenum == cnp.NPY_FLOAT32 else "float64"
        got = (f"{a.dtype} array of size {a.size} (C-contiguous: {a.flags.c_contiguous}, "
               f"writable: {a.flags.writeable})" if cnp.PyArray_Check(a)
               else type(a).__name__)
        raise ValueError(f"{name} must be a C-contiguous, writable {want} array of size {n} "
                         f"(the parameter's), got {got}")
    # a size-0 array's data may be NULL, which means an error here: any other address will
    # do, nothing is read
    return cnp.PyArray_DATA(<cnp.ndarray>a) if n else <void *>&_NOTHING


cdef _step(cy_optim_args *a, object param, object grad, object s0, object s1, object s2,
           bint need0, bint need1, bint need2, tuple prologue, int num_threads):
    """Check the arrays (the slots the options need), fill in the prologue
    ``(l2, clip, clip_arg, decay)`` and run the step."""
    if not cnp.PyArray_Check(param):
        raise ValueError(f"param must be a numpy array, got {type(param).__name__}")
    cdef int typenum = cnp.PyArray_TYPE(<cnp.ndarray>param)
    if typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64:
        raise ValueError(f"param must be float32 or float64, got {param.dtype}")
    cdef Py_ssize_t n = cnp.PyArray_SIZE(<cnp.ndarray>param), t
    cdef void *pp = _data(param, typenum, n, "param")
    cdef void *gp = _data(grad, typenum, n, "grad")
    cdef void *p0 = _data(s0, typenum, n, "slot 0") if need0 else NULL
    cdef void *p1 = _data(s1, typenum, n, "slot 1") if need1 else NULL
    cdef void *p2 = _data(s2, typenum, n, "slot 2") if need2 else NULL
    a.l2, a.clip, a.clip_arg, a.decay = prologue
    if a.clip not in (CY_CLIP_NONE, CY_CLIP_SCALE, CY_CLIP_VALUE):
        raise ValueError(f"clip must be {CY_CLIP_NONE}, {CY_CLIP_SCALE} or {CY_CLIP_VALUE}, "
                         f"got {a.clip}")
    if n == 0:
        return
    num_threads = threads_for(num_threads, n)
    if num_threads == 1:       # no parallel region for a small parameter: it costs microseconds
        with nogil:
            _run(a, typenum, pp, gp, p0, p1, p2, 0, n)
        return
    for t in prange((n + CHUNK - 1) // CHUNK, schedule="static", nogil=True,
                    num_threads=num_threads):
        _run(a, typenum, pp, gp, p0, p1, p2, t * CHUNK, min(n, (t + 1) * CHUNK))


cdef inline void _run(const cy_optim_args *a, int typenum, void *p, void *g, void *s0,
                      void *s1, void *s2, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    if typenum == cnp.NPY_FLOAT32:
        cy_optim_step_f(a, <float *>p, <float *>g, <float *>s0, <float *>s1, <float *>s2,
                        start, stop)
    else:
        cy_optim_step_d(a, <double *>p, <double *>g, <double *>s0, <double *>s1,
                        <double *>s2, start, stop)


# The entry points.  A slot the options do not need may be None; it is neither checked nor read.
def sgd(param, grad, velocity, double lr, double momentum, bint nesterov, tuple prologue,
        int num_threads):
    """SGD: ``v <- m v - lr g; p <- p + v`` (nesterov: ``p <- p - lr g + m v``); with
    ``momentum == 0`` plainly ``p <- p - lr g``."""
    cdef cy_optim_args a
    a.kind, a.flag1, a.flag2 = CY_OPTIM_SGD, momentum != 0, nesterov
    a.c[0], a.c[1] = lr, momentum
    _step(&a, param, grad, velocity, None, None, momentum != 0, False, False, prologue,
          num_threads)


def rmsprop(param, grad, velocity, momentum_slot, average_gradient, double rho, double eps,
            double lr, double momentum, bint centered, tuple prologue, int num_threads):
    """RMSprop, ε inside the root: ``s <- ρ s + (1 - ρ) g²; p <- p - lr g / sqrt(s + ε)``,
    centered and momentum as in the twin."""
    cdef cy_optim_args a
    a.kind, a.flag1, a.flag2 = CY_OPTIM_RMSPROP, momentum != 0, centered
    a.c[0], a.c[1], a.c[2], a.c[3], a.c[4] = rho, 1 - rho, eps, lr, momentum
    _step(&a, param, grad, velocity, momentum_slot, average_gradient, True, momentum != 0,
          centered, prologue, num_threads)


def adagrad(param, grad, accumulator, double eps, double lr, tuple prologue, int num_threads):
    """Adagrad: ``a <- a + g²; p <- p - lr g / sqrt(a + ε)``."""
    cdef cy_optim_args a
    a.kind, a.flag1, a.flag2 = CY_OPTIM_ADAGRAD, False, False
    a.c[0], a.c[1] = eps, lr
    _step(&a, param, grad, accumulator, None, None, True, False, False, prologue, num_threads)


def adam(param, grad, m, v, v_hat, double beta_1, double beta_2, double eps, double step,
         bint amsgrad, tuple prologue, int num_threads):
    """Adam: ``m <- m + (g - m)(1 - β1); v <- v + (g² - v)(1 - β2);
    p <- p - step m / (sqrt(v) + ε)`` with ``step = lr sqrt(1 - β2^t) / (1 - β1^t)``;
    amsgrad divides by ``v̂ <- max(v̂, v)``."""
    cdef cy_optim_args a
    a.kind, a.flag1, a.flag2 = CY_OPTIM_ADAM, amsgrad, False
    a.c[0], a.c[1], a.c[2], a.c[3] = 1 - beta_1, 1 - beta_2, eps, step
    _step(&a, param, grad, m, v, v_hat, True, True, amsgrad, prologue, num_threads)


def add_scaled(grad, param, double c):
    """``grad <- grad + c param`` in the dtype (c rounded to it first): the L2 penalty's
    gradient, added before a clipping norm is taken."""
    if not cnp.PyArray_Check(param) or cnp.PyArray_TYPE(<cnp.ndarray>param) not in (
            cnp.NPY_FLOAT32, cnp.NPY_FLOAT64):
        raise ValueError("param must be a float32 or float64 array")
    cdef int typenum = cnp.PyArray_TYPE(<cnp.ndarray>param)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(<cnp.ndarray>param), i
    cdef void *gp = _data(grad, typenum, n, "grad")
    cdef void *pp = _data(param, typenum, n, "param")
    cdef float cf = <float>c
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            for i in range(n):
                (<float *>gp)[i] = (<float *>gp)[i] + cf * (<float *>pp)[i]
        else:
            for i in range(n):
                (<double *>gp)[i] = (<double *>gp)[i] + c * (<double *>pp)[i]
