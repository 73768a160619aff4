# cython: language_level=3
"""Elementwise activations and their derivatives, compiled (twins: ``cytorch.activations``).

Layout contract: the arrays arrive flattened in C order (an activation does not care about
shape); ``forward`` writes ``y[i] = f(x[i])`` (``y`` may be ``x``: in place), ``backward``
writes ``dx[i] = dout[i] * f'(...)`` where the derivative is read from the output ``y``
(``1 - y*y`` for tanh, ``y (1 - y)`` for sigmoid, ...) except for silu, whose derivative needs
the input: pass ``x`` in the place of ``y``.  The element functions are C in ``_mathfn.h``
(exp, expm1, tanh, sigmoid, log1p on [0, 1]; its comment teaches the range reduction), compiled
for AVX-512, AVX2 + FMA and the build's baseline; the module picks the variant when it is
imported (``isa()``, CYTORCH_ISA forces one).

``dense_forward`` / ``dense_backward``: a Dense layer straight through BLAS with the bias and
the activation fused into one pass over the output (forward), and the derivative and the bias
gradient into one pass over ``dout`` (backward).

Threads: the values are cut into chunks of ``CHUNK`` shared by OpenMP threads; calls on fewer
than ``MIN_PARALLEL_WORK`` values (``_parallel.pxd``) run on one thread.  Each value is
computed alone, so results do not depend on the number of threads.

``cytorch.functional`` validates the arrays; the entry points here check only that the lengths
agree (cheap), so nothing is read or written out of bounds.
"""
from cython cimport floating
from cython.parallel cimport prange

from ._blas cimport gemm
from ._parallel cimport threads_for

from . import ISA_NAMES, isa_index, requested_isa, variants_up_to

cdef extern from "_mathfn.h" nogil:
    int cy_isa_best()
    int cy_mathfn_select(int isa)
    void cy_act_forward_f(int code, const float *x, float *y, Py_ssize_t n,
                          float alpha) noexcept
    void cy_act_forward_d(int code, const double *x, double *y, Py_ssize_t n,
                          double alpha) noexcept
    void cy_act_backward_f(int code, const float *dout, const float *y, float *dx,
                           Py_ssize_t n, float alpha) noexcept
    void cy_act_backward_d(int code, const double *dout, const double *y, double *dx,
                           Py_ssize_t n, double alpha) noexcept
    enum:
        CY_ACT_LINEAR, CY_ACT_RELU, CY_ACT_TANH, CY_ACT_SIGMOID, CY_ACT_ELU,
        CY_ACT_LEAKY_RELU, CY_ACT_SOFTPLUS, CY_ACT_SILU, CY_ACT_EXP, CY_ACT_EXPM1

# name -> code of the row functions; ``alpha`` is elu's alpha or leaky_relu's slope.
CODES = {"linear": CY_ACT_LINEAR, "relu": CY_ACT_RELU, "tanh": CY_ACT_TANH,
         "sigmoid": CY_ACT_SIGMOID, "elu": CY_ACT_ELU, "leaky_relu": CY_ACT_LEAKY_RELU,
         "softplus": CY_ACT_SOFTPLUS, "silu": CY_ACT_SILU, "exp": CY_ACT_EXP,
         "expm1": CY_ACT_EXPM1}
# The functions whose derivative backward reads from the input (the others: from the output).
FROM_INPUT = frozenset({"silu"})
# exp and expm1 are element functions, not activations: forward only.
NO_BACKWARD = frozenset({"exp", "expm1"})


def isa_variants():
    """The variants of the element functions this CPU can run, best first."""
    return variants_up_to(cy_isa_best())


def _select_isa(name):
    """Run variant ``name`` ("avx512", "avx2", "default" or "best") from now on and return
    it.  Private: for the tests and CYTORCH_ISA."""
    global _isa
    _isa = ISA_NAMES[cy_mathfn_select(isa_index(name, cy_isa_best()))]
    return _isa


def isa():
    """The variant of the element functions this process runs: "avx512", "avx2" or
    "default"."""
    return _isa


_select_isa(requested_isa())


# Values per parallel task: enough to amortise the hand-out, small enough to balance threads
# (and a chunk of float64 stays in L1 + L2 between reading x and writing y).
cdef Py_ssize_t CHUNK = 1 << 13


cdef inline void _forward_chunk(int code, const floating *x, floating *y, Py_ssize_t n,
                                double alpha) noexcept nogil:
    if floating is float:
        cy_act_forward_f(code, x, y, n, <float>alpha)
    else:
        cy_act_forward_d(code, x, y, n, alpha)


cdef inline void _backward_chunk(int code, const floating *dout, const floating *y,
                                 floating *dx, Py_ssize_t n, double alpha) noexcept nogil:
    if floating is float:
        cy_act_backward_f(code, dout, y, dx, n, <float>alpha)
    else:
        cy_act_backward_d(code, dout, y, dx, n, alpha)


def _code(name, backward=False):
    try:
        code = CODES[name]
    except KeyError:
        raise ValueError(f"no compiled activation {name!r}; known: {sorted(CODES)}") from None
    if backward and name in NO_BACKWARD:
        raise ValueError(f"{name!r} has no backward here")
    return code


def forward(str name, const floating[::1] x, floating[::1] y, double alpha=0.0,
            int num_threads=1):
    """y[i] = f(x[i]) for the function ``name`` (a key of ``CODES``); y may be x."""
    cdef int code = _code(name)
    cdef Py_ssize_t n = x.shape[0], t
    if y.shape[0] != n:
        raise ValueError(f"x ({n}) and y ({y.shape[0]}) must have the same length")
    if n == 0:
        return
    cdef const floating *xp = &x[0]
    cdef floating *yp = &y[0]
    num_threads = threads_for(num_threads, n)
    for t in prange((n + CHUNK - 1) // CHUNK, schedule="static", nogil=True,
                    num_threads=num_threads):
        _forward_chunk(code, xp + t * CHUNK, yp + t * CHUNK, min(CHUNK, n - t * CHUNK), alpha)


def backward(str name, const floating[::1] dout, const floating[::1] y, floating[::1] dx,
             double alpha=0.0, int num_threads=1):
    """dx[i] = dout[i] * f'(x[i]), the derivative written through y[i] = f(x[i]) (silu: pass
    x as ``y``); dx may be dout."""
    cdef int code = _code(name, backward=True)
    cdef Py_ssize_t n = dout.shape[0], t
    if y.shape[0] != n or dx.shape[0] != n:
        raise ValueError(f"dout ({n}), y ({y.shape[0]}) and dx ({dx.shape[0]}) must have the "
                         f"same length")
    if n == 0:
        return
    cdef const floating *gp = &dout[0]
    cdef const floating *yp = &y[0]
    cdef floating *dp = &dx[0]
    num_threads = threads_for(num_threads, n)
    for t in prange((n + CHUNK - 1) // CHUNK, schedule="static", nogil=True,
                    num_threads=num_threads):
        _backward_chunk(code, gp + t * CHUNK, yp + t * CHUNK, dp + t * CHUNK,
                        min(CHUNK, n - t * CHUNK), alpha)
