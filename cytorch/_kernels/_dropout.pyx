# cython: language_level=3
"""Inverted dropout, forward and backward (the compiled twin of ``cytorch.reference``).

Layout contract, shared with the NumPy twin: the arrays arrive flattened in C order (dropout
does not care about shape), and unit ``i`` is kept when

    (splitmix64(seed)[i] >> 11) >= threshold,    threshold = floor(rate * 2**53),

that is when the top 53 bits of the i-th output of the splitmix64 stream started at ``seed``
are not below ``rate * 2**53``.  splitmix64 (Steele, Lea & Flood, 2014) is counter-based: its
i-th output is ``mix(seed + (i + 1) * GAMMA)``, a function of ``(seed, i)`` alone.  So the
threads can split the units any way they like and the mask is still bit-for-bit the one the
NumPy twin computes with vectorised uint64 arithmetic.  Kept units are multiplied by
``scale = 1 / (1 - rate)``; the uint8 mask is stored for backward.

Calls on fewer than ``MIN_PARALLEL_WORK`` units (``_parallel.pxd``) run on one thread.
``cytorch.functional`` validates rate, seed and the arrays; the entry points only check that
the lengths agree, so nothing is read or written out of bounds.
"""
from cython cimport floating
from cython.parallel cimport prange

from libc.stdint cimport uint8_t, uint64_t

from ._parallel cimport threads_for

cdef uint64_t GAMMA = 0x9E3779B97F4A7C15ULL   # 2**64 / golden ratio: the stream's increment

cdef inline uint64_t _splitmix64(uint64_t seed, uint64_t i) noexcept nogil:
    """Output ``i`` (from 0) of splitmix64 seeded with ``seed``; arithmetic modulo 2**64."""
    cdef uint64_t z = seed + (i + 1) * GAMMA
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


# Units per parallel task: enough to amortise the hand-out, small enough to balance threads.
cdef Py_ssize_t CHUNK = 1 << 14


cdef void _draw_mask(uint8_t *mask, Py_ssize_t start, Py_ssize_t stop, uint64_t seed,
                     uint64_t threshold) noexcept nogil:
    """mask[i] = keep unit i, for ``start <= i < stop``."""
    cdef Py_ssize_t i
    for i in range(start, stop):
        mask[i] = (_splitmix64(seed, <uint64_t>i) >> 11) >= threshold


cdef void _apply_mask(const floating *src, const uint8_t *mask, floating *dst,
                      Py_ssize_t start, Py_ssize_t stop, floating scale) noexcept nogil:
    """dst[i] = (src[i] * mask[i]) * scale (forward on x, backward on dout).

    Multiplying by the 0/1 mask, in a loop of its own, compiles to branch-free vector code;
    a branch on a random mask would be mispredicted half of the time.  The mask comes first,
    so a dropped unit is exactly 0 and a kept one exactly ``src[i] * scale``."""
    cdef Py_ssize_t i
    for i in range(start, stop):
        dst[i] = (src[i] * <floating>mask[i]) * scale


def dropout_forward(const floating[::1] x, floating[::1] out, uint8_t[::1] mask,
                    uint64_t seed, uint64_t threshold, double scale, int num_threads):
    """mask[i] = (splitmix64(seed)[i] >> 11) >= threshold; out[i] = (x[i] * mask[i]) * scale."""
    cdef Py_ssize_t n = x.shape[0], t
    if out.shape[0] != n or mask.shape[0] != n:
        raise ValueError(f"x ({n}), out ({out.shape[0]}) and mask ({mask.shape[0]}) "
                         f"must have the same length")
    if n == 0:
        return
    cdef const floating *xp = &x[0]
    cdef floating *op = &out[0]
    cdef uint8_t *mp = &mask[0]
    num_threads = threads_for(num_threads, n)
    for t in prange((n + CHUNK - 1) // CHUNK, schedule="static", nogil=True,
                    num_threads=num_threads):
        _draw_mask(mp, t * CHUNK, min(n, (t + 1) * CHUNK), seed, threshold)
        _apply_mask(xp, mp, op, t * CHUNK, min(n, (t + 1) * CHUNK), <floating>scale)


def dropout_backward(const floating[::1] dout, const uint8_t[::1] mask, floating[::1] dx,
                     double scale, int num_threads):
    """dx[i] = (dout[i] * mask[i]) * scale."""
    cdef Py_ssize_t n = dout.shape[0], t
    if mask.shape[0] != n or dx.shape[0] != n:
        raise ValueError(f"dout ({n}), mask ({mask.shape[0]}) and dx ({dx.shape[0]}) "
                         f"must have the same length")
    if n == 0:
        return
    cdef const floating *dp = &dout[0]
    cdef const uint8_t *mp = &mask[0]
    cdef floating *dxp = &dx[0]
    num_threads = threads_for(num_threads, n)
    for t in prange((n + CHUNK - 1) // CHUNK, schedule="static", nogil=True,
                    num_threads=num_threads):
        _apply_mask(dp, mp, dxp, t * CHUNK, min(n, (t + 1) * CHUNK), <floating>scale)
