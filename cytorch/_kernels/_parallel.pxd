# The one thread policy of the kernel modules (``_conv``, ``_direct``, ``_pool``, ``_dropout``,
# ``_batchnorm``): how many OpenMP threads a call gets, and how a batch is cut into work units.
# Inline functions only, so a module ``cimport``s them with no import between extension modules at
# run time (as ``_blas.pxd`` does for GEMM).
from cython cimport floating

# Below this many values touched, one thread does the whole call: starting a team costs more
# than it saves.  The right size depends on how idle OpenMP threads wait (see
# ``cytorch/_kernels/__init__.py``).  Measured on an Intel Xeon with AVX-512 (2 cores of a
# virtual machine, 2026-11-29), max pooling 2x2 of 64x28x28x6 (301,056 values), forward +
# backward: 490 us on 2 threads against 350 us on one when idle threads slept at once
# (OMP_WAIT_POLICY=PASSIVE), but 210-225 us on 2 threads against 315 us on one with cytorch's
# short spin.  The same 2**16 serves dropout (one multiply per value, memory-bound) and global
# pooling; neither was measured separately.
cdef enum:
    MIN_PARALLEL_WORK = 1 << 16

# Work units per thread for the conv kernels, which split a batch into units of whole images:
# a thread that finishes early (or whose core another process took) picks up the next unit
# instead of waiting at the barrier.
cdef enum:
    UNITS_PER_THREAD = 4


cdef inline int threads_for(int num_threads, Py_ssize_t work) noexcept nogil:
    """OpenMP threads for a call that touches ``work`` values (at least one)."""
    return (num_threads if num_threads > 1 else 1) if work >= MIN_PARALLEL_WORK else 1


cdef inline Py_ssize_t unit_threads(Py_ssize_t N, int num_threads) noexcept nogil:
    """Threads for N images split into units of whole images: never more than the images."""
    cdef Py_ssize_t T = num_threads if num_threads < N else N
    return T if T > 1 else 1


cdef inline Py_ssize_t unit_count(Py_ssize_t N, Py_ssize_t T) noexcept nogil:
    """Work units for N images on T threads: one when one thread runs, else up to
    ``UNITS_PER_THREAD`` per thread.  Unit u holds images ``N*u//U <= n < N*(u+1)//U``
    (``unit_start``), at least one each."""
    cdef Py_ssize_t U = UNITS_PER_THREAD * T
    if T == 1:
        return 1
    return U if U < N else N


cdef inline Py_ssize_t unit_start(Py_ssize_t N, Py_ssize_t U, Py_ssize_t u) noexcept nogil:
    """The first image of unit u (``unit_start(N, U, U) == N``)."""
    return N * u // U


cdef inline void sum_unit_parts(const floating *parts, Py_ssize_t U, Py_ssize_t part_len,
                                Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t ld,
                                floating *out) noexcept nogil:
    """The units' partial sums of a (rows, cols) gradient, added in unit order.

    Unit u's part is row-major with leading dimension ``ld >= cols`` (padding columns are
    skipped) at ``parts + u * part_len``; ``out[r * cols + c]`` is the sum over u = 0 .. U - 1
    of ``parts[u * part_len + r * ld + c]``.  A fixed order, not one sum per thread, is what
    makes dW the same bits whichever thread ran which unit.  Each number of out starts at 0
    and gets the units' parts one unit after the other, a row of parts at a time: the loop over
    a row vectorises (with the units innermost, the blocked path summed keras_mnist c2's 8
    parts of 6,000 numbers in 28 us on 2 threads)."""
    cdef Py_ssize_t r, c, u
    cdef floating *o
    cdef const floating *p
    for c in range(rows * cols):
        out[c] = 0
    for u in range(U):
        for r in range(rows):
            o = out + r * cols
            p = parts + u * part_len + r * ld
            for c in range(cols):
                o[c] = o[c] + p[c]


cdef inline void sum_unit_db(const double *db_part, Py_ssize_t U, Py_ssize_t K,
                             floating *db) noexcept nogil:
    """db[k] = the units' float64 partial sums ``db_part[u * K + k]`` added in unit order."""
    cdef Py_ssize_t k, u
    cdef double acc
    for k in range(K):
        acc = 0
        for u in range(U):
            acc = acc + db_part[u * K + k]
        db[k] = <floating>acc
