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
from libc.stdlib cimport calloc, free

from ._blas cimport gemm
from ._parallel cimport threads_for

import numpy as np

from . import isa_functions
from .._config import single_threaded_blas

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
    void cy_bias_act_forward_f(int code, float *z, const float *bias, Py_ssize_t rows,
                               Py_ssize_t cols, float alpha) noexcept
    void cy_bias_act_forward_d(int code, double *z, const double *bias, Py_ssize_t rows,
                               Py_ssize_t cols, double alpha) noexcept
    void cy_bias_act_backward_f(int code, const float *dout, const float *y, float *dz,
                                Py_ssize_t rows, Py_ssize_t cols, float alpha,
                                double *db) noexcept
    void cy_bias_act_backward_d(int code, const double *dout, const double *y, double *dz,
                                Py_ssize_t rows, Py_ssize_t cols, double alpha,
                                double *db) noexcept
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


def _select_variant(int index):
    """Switch the element functions to variant ``index``; the index it then runs."""
    return cy_mathfn_select(index)


isa_variants, _select_isa, isa = isa_functions("the element functions", cy_isa_best(),
                                               _select_variant)


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


# -- Dense: GEMM, then the fused epilogue --------------------------------------------------------
#
#     forward   out = x @ w  (GEMM)   then in one pass   out = f(out + b)
#     backward  dz = dout * f'(y) and db = sum_rows dz   in one pass, then
#               dw = x.T @ dz,  dx = dz @ w.T            (GEMM)
#
# The epilogue runs over blocks of the output right after the GEMM wrote them (for a
# mini-batch the whole output, 64 x 120 values, is still in L1/L2).  BLAS runs on one thread
# (``single_threaded_blas``): these products are too small to gain from threads.

def dense_forward(const floating[:, ::1] x, const floating[:, ::1] w, const floating[::1] b,
                  floating[:, ::1] out, str name, double alpha=0.0):
    """out (N, units) = f(x (N, n_in) @ w (n_in, units) + b (units,)); ``b`` may be None and
    ``name`` any key of ``CODES`` but exp/expm1 ("linear" for none)."""
    cdef int code = _code(name, backward=True)
    cdef int N = x.shape[0], n_in = x.shape[1], units = w.shape[1]
    if w.shape[0] != n_in or out.shape[0] != N or out.shape[1] != units or (
            b is not None and b.shape[0] != units):
        raise ValueError(f"dense_forward: x {tuple(x.shape)[:2]}, w {tuple(w.shape)[:2]}, "
                         f"out {tuple(out.shape)[:2]} and b do not fit")
    if N == 0 or units == 0:
        return
    cdef const floating *bp = &b[0] if b is not None else NULL
    cdef const floating *xp = &x[0, 0] if n_in > 0 else NULL
    cdef const floating *wp = &w[0, 0] if n_in > 0 else NULL
    cdef floating *op = &out[0, 0]
    cdef Py_ssize_t i
    with single_threaded_blas():
        with nogil:
            if n_in > 0:
                gemm(ord('n'), ord('n'), N, units, n_in, <floating>1, xp, n_in, wp, units,
                     <floating>0, op, units)
            else:                       # an empty sum: BLAS need not touch out for k = 0
                for i in range(N * units):
                    op[i] = 0
            if floating is float:
                cy_bias_act_forward_f(code, op, bp, N, units, <float>alpha)
            else:
                cy_bias_act_forward_d(code, op, bp, N, units, alpha)


cdef inline void _dense_dw(const floating[:, ::1] x, const floating *dz,
                           floating[:, ::1] dw) noexcept nogil:
    """dw = x.T @ dz (dz: N x units, C order)."""
    gemm(ord('t'), ord('n'), <int>x.shape[1], <int>dw.shape[1], <int>x.shape[0], <floating>1,
         &x[0, 0], <int>x.shape[1], dz, <int>dw.shape[1], <floating>0, &dw[0, 0],
         <int>dw.shape[1])


cdef inline void _dense_dx(const floating *dz, const floating[:, ::1] w,
                           floating[:, ::1] dx) noexcept nogil:
    """dx = dz @ w.T (dz: N x units, C order)."""
    gemm(ord('n'), ord('t'), <int>dx.shape[0], <int>dx.shape[1], <int>w.shape[1], <floating>1,
         dz, <int>w.shape[1], &w[0, 0], <int>w.shape[1], <floating>0, &dx[0, 0],
         <int>dx.shape[1])


def dense_backward(const floating[:, ::1] dout, const floating[:, ::1] x,
                   const floating[:, ::1] w, const floating[:, ::1] y, str name,
                   floating[:, ::1] dx, floating[:, ::1] dw, floating[::1] db,
                   double alpha=0.0, int num_threads=1):
    """dz = dout * f'(y) (silu: pass the pre-activation as y) and db = dz.sum(0) in one pass
    (db summed in float64; None: not wanted), then dw = x.T @ dz and dx = dz @ w.T (None: not
    wanted).  dout, x, w and y are only read.

    With ``num_threads`` >= 2 and both products wanted, they run at the same time, one on each
    of two OpenMP threads, each a one-thread GEMM (the BLAS policy of ``single_threaded_blas``):
    the same calls as on one thread, so the same bits.  (A mini-batch's products, 64 x 320 @
    320 x 100 in keras_mnist, are too small for a threaded BLAS to gain; two at once halve the
    step's Dense backward time on two cores.)"""
    cdef int code = _code(name, backward=True)
    cdef int N = x.shape[0], n_in = x.shape[1], units = w.shape[1]
    if (w.shape[0] != n_in or dout.shape[0] != N or dout.shape[1] != units
            or y.shape[0] != N or y.shape[1] != units or dw.shape[0] != n_in
            or dw.shape[1] != units or (db is not None and db.shape[0] != units)
            or (dx is not None and (dx.shape[0] != N or dx.shape[1] != n_in))):
        raise ValueError(f"dense_backward: dout {tuple(dout.shape)[:2]}, x "
                         f"{tuple(x.shape)[:2]}, w {tuple(w.shape)[:2]}, y "
                         f"{tuple(y.shape)[:2]} and the gradients do not fit")
    dz_array = np.empty((N, units), dtype=np.float32 if floating is float else np.float64)
    cdef floating[:, ::1] dz = dz_array
    cdef double *acc = NULL
    cdef Py_ssize_t j
    if db is not None:
        for j in range(units):
            db[j] = 0
    if N == 0 or units == 0:
        dw[:, :] = 0
        if dx is not None:
            dx[:, :] = 0
        return
    if db is not None:
        acc = <double *>calloc(units, sizeof(double))
        if acc == NULL:
            raise MemoryError()
    cdef floating *dzp = &dz[0, 0]
    try:
        with single_threaded_blas():
            with nogil:
                if floating is float:
                    cy_bias_act_backward_f(code, &dout[0, 0], &y[0, 0], dzp, N, units,
                                           <float>alpha, acc)
                else:
                    cy_bias_act_backward_d(code, &dout[0, 0], &y[0, 0], dzp, N, units, alpha,
                                           acc)
                if acc != NULL:
                    for j in range(units):
                        db[j] = <floating>acc[j]
                if n_in > 0 and dx is not None and num_threads > 1:
                    for j in prange(2, schedule="static", num_threads=2):
                        if j == 0:
                            _dense_dw(x, dzp, dw)
                        else:
                            _dense_dx(dzp, w, dx)
                elif n_in > 0:
                    _dense_dw(x, dzp, dw)
                    if dx is not None:
                        _dense_dx(dzp, w, dx)
    finally:
        free(acc)
