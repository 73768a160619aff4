# cython: language_level=3
"""Max, min and average pooling, windowed and global (the compiled twin of ``cytorch.reference``).

Layout contract, shared with the NumPy twin:

* ``x``: ``(N, H, W, C)`` channels-last, C-contiguous; outputs ``(N, H_out, W_out, C)``;
* window ``(ph, pw)``, strides ``(sh, sw)``, padding resolved by ``cytorch.functional``: only
  ``pad_top`` and ``pad_left`` are needed here (bottom/right padding is implied by the output
  shape), and every window holds at least one real cell (each pad is smaller than the window);
* window ``(i, j)`` covers input rows ``i*sh - pt .. i*sh - pt + ph - 1`` clipped to ``[0, H)``,
  columns likewise: padded cells are simply never visited, so they never win a max or a min
  and an average divides by the number of real cells;
* max/min write ``argidx[n, i, j, c] = ih * W + iw`` (int32) of the winner, the first cell in
  row-major order on ties (a later cell must be strictly better to take over).

Why the loops look like this: with channels last, one image row ``x[n, h, :, :]`` is W * C
contiguous values, and a window is separable (rows first, then columns; see the note above
``_extreme_row``), so the bulk of the work is one long contiguous loop per window row that the
compiler vectorises whatever C is.  Selections are written as unconditional selects, not
branches, so random data costs no mispredictions.  Max and min are one implementation with a
``take_min`` flag; the flag is loop-invariant, so loop unswitching gives two branch-free loops.
The most common geometry, 2x2 windows with stride 2 and no padding, has its own row kernels
(``*_2x2``, see the note above them; twins ``cytorch.reference.max_pool2d_2x2`` and friends),
whose max/min pass is C in ``_pool2x2.h``.  Average pooling multiplies by ``1 / count`` (one
division per window, not per value), so its last bit may differ from the twin's
``sum / count``.

Threads: forward splits the ``N * H_out`` output rows between OpenMP threads (outputs are
disjoint), each thread with its own scratch row.  Backward adds into dx; output rows touch
disjoint input rows when ``sh >= ph``, so then it splits rows too, and otherwise whole images
(windows of one image overlap).  Calls on fewer than ``MIN_PARALLEL_WORK`` values
(``_parallel.pxd``) run on one thread.

``cytorch.functional`` validates every argument; the entry points here re-check the shapes
(cheap) so that no call can read or write out of bounds, and backward ignores winner indices
outside the image instead of trusting them.
"""
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.string cimport memcpy, memset

import numpy as np

from . import isa_functions
from ._parallel cimport threads_for

# The whole-row pass of ``_extreme_row_2x2`` for C < 16 is C code in ``_pool2x2.h``, compiled
# for AVX-512, AVX2 and the build's baseline; the module picks the variant when it is imported
# (``isa()``).  It is compute-bound (per value 4 loads, 3 compares, 6 selects), and with the
# baseline SSE2 alone (4 floats a vector) it took ~150 us for a 64x28x28x6 batch.
cdef extern from "_pool2x2.h" nogil:
    int cy_isa_best()
    int cy_pool2x2_select(int isa)
    void cy_extreme_2x2_f(const float *a, const float *b, float *best, int *code,
                          Py_ssize_t n, Py_ssize_t C, int W, int take_min) noexcept
    void cy_extreme_2x2_d(const double *a, const double *b, double *best, int *code,
                          Py_ssize_t n, Py_ssize_t C, int W, int take_min) noexcept
    # inference (no winner codes): window j of a row, channels in vectors, optional ReLU
    void cy_extreme_row_f(const float *a, const float *b, float *out, Py_ssize_t W_out,
                          Py_ssize_t C, int take_min, int relu) noexcept
    void cy_extreme_row_d(const double *a, const double *b, double *out, Py_ssize_t W_out,
                          Py_ssize_t C, int take_min, int relu) noexcept
    # global pooling of one image: the sums (in double) and the extremes of its C channels
    # (the sums and extremes return how many channels held NaN or inf, or overflowed)
    int cy_global_sum_f(const float *x, Py_ssize_t HW, Py_ssize_t C, double *sum) noexcept
    int cy_global_sum_d(const double *x, Py_ssize_t HW, Py_ssize_t C, double *sum) noexcept
    int cy_global_extreme_f(const float *x, Py_ssize_t HW, Py_ssize_t C, float *best,
                            int *code, int take_min) noexcept
    int cy_global_extreme_d(const double *x, Py_ssize_t HW, Py_ssize_t C, double *best,
                            int *code, int take_min) noexcept
    # dx[k, c] = dx[0, c] for the cells k = 1 .. HW - 1 of one image; returns the number of
    # NaN and inf in dx[0, :]
    int cy_global_fill_f(float *dx, Py_ssize_t HW, Py_ssize_t C) noexcept
    int cy_global_fill_d(double *dx, Py_ssize_t HW, Py_ssize_t C) noexcept


def _select_variant(int index):
    """Switch the 2x2 row pass to variant ``index``; the index it then runs."""
    return cy_pool2x2_select(index)


isa_variants, _select_isa, isa = isa_functions("the 2x2 row pass", cy_isa_best(), _select_variant)


# -- helpers --------------------------------------------------------------------------------------
cdef inline Py_ssize_t _imax(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a > b else b


cdef inline Py_ssize_t _imin(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a < b else b


cdef inline bint _beats(floating v, floating best, bint take_min) noexcept nogil:
    """Strictly better: on a tie the earlier cell keeps the window (and NaN never wins)."""
    return v < best if take_min else v > best


# -- windowed pooling: one output row (n, i) at a time ------------------------------------------
#
# Pooling a 2-D window is separable: reduce the window's rows first, column by column, into a
# scratch row ``r`` of W * C values, then reduce ``r`` along each window's columns.  The first
# pass is one long contiguous loop over W * C values (vectorised whatever C is: for C = 6 a
# per-cell loop over c would be too short to vectorise); the second touches a row that is 1/ph
# of the window rows' size, already in L1.
#
# Max/min need care to keep "the first winner in row-major order": the row pass keeps, per
# column, the first row that reaches the best value; the column pass then breaks ties between
# columns by the smaller flat index ``ih * W + iw``, which is exactly row-major order.

cdef void _extreme_row(const floating *xn, floating *orow, int *irow,
                       floating *best, int *brow,
                       Py_ssize_t H, Py_ssize_t W, Py_ssize_t C,
                       Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t sh, Py_ssize_t sw,
                       Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t W_out, Py_ssize_t i,
                       bint take_min) noexcept nogil:
    """Max (or min) of every window of output row ``i`` of image ``xn`` (H, W, C), and the
    winners' ``ih * W + iw``; ``best``/``brow`` are scratch rows of W * C values."""
    cdef Py_ssize_t WC = W * C, h0 = i * sh - pt, w0, j, ih, iw, c, t
    cdef Py_ssize_t hlo = _imax(h0, 0), hhi = _imin(h0 + ph, H), wlo, whi
    cdef const floating *row
    cdef floating *o
    cdef int *ix
    cdef int k, r
    cdef floating v
    cdef bint better
    # rows: best[w, c] = extreme of x[hlo:hhi, w, c], brow[w, c] = the first row reaching it
    row = xn + hlo * WC
    for t in range(WC):
        best[t] = row[t]
        brow[t] = <int>hlo
    for ih in range(hlo + 1, hhi):
        row = xn + ih * WC
        r = <int>ih
        for t in range(WC):
            v = row[t]
            better = _beats(v, best[t], take_min)
            # unconditional selects (no branch) vectorise
            best[t] = v if better else best[t]
            brow[t] = r if better else brow[t]
    # columns: the best column of each window, ties to the smaller flat index
    for j in range(W_out):
        w0 = j * sw - pl
        wlo = _imax(w0, 0)
        whi = _imin(w0 + pw, W)
        o = orow + j * C
        ix = irow + j * C
        for c in range(C):
            o[c] = best[wlo * C + c]
            ix[c] = brow[wlo * C + c] * <int>W + <int>wlo
        for iw in range(wlo + 1, whi):
            for c in range(C):
                v = best[iw * C + c]
                k = brow[iw * C + c] * <int>W + <int>iw
                better = _beats(v, o[c], take_min) | ((v == o[c]) & (k < ix[c]))
                o[c] = v if better else o[c]
                ix[c] = k if better else ix[c]


cdef void _avg_row(const floating *xn, floating *orow, floating *rsum,
                   Py_ssize_t H, Py_ssize_t W, Py_ssize_t C,
                   Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t sh, Py_ssize_t sw,
                   Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t W_out, Py_ssize_t i) noexcept nogil:
    """Mean of the real cells of every window of output row ``i`` of image ``xn``; ``rsum`` is
    a scratch row of W * C values."""
    cdef Py_ssize_t WC = W * C, h0 = i * sh - pt, w0, j, ih, iw, c, t
    cdef Py_ssize_t hlo = _imax(h0, 0), hhi = _imin(h0 + ph, H), wlo, whi
    cdef const floating *row = xn + hlo * WC
    cdef floating *o
    cdef floating inv, acc
    for t in range(WC):                 # rsum[w, c] = sum of x[hlo:hhi, w, c]
        rsum[t] = row[t]
    for ih in range(hlo + 1, hhi):
        row = xn + ih * WC
        for t in range(WC):
            rsum[t] += row[t]
    for j in range(W_out):
        w0 = j * sw - pl
        wlo = _imax(w0, 0)
        whi = _imin(w0 + pw, W)
        o = orow + j * C
        inv = <floating>1 / <floating>((hhi - hlo) * (whi - wlo))   # 1 / real cells
        # c outermost, the sum in a register: measured 2x faster than a c-innermost loop for
        # C = 6 on an Intel Xeon with AVX-512 (for max/min the opposite held: there the selects
        # vectorise over c)
        for c in range(C):
            acc = rsum[wlo * C + c]
            for iw in range(wlo + 1, whi):
                acc = acc + rsum[iw * C + c]
            o[c] = acc * inv


# -- the common case: 2x2 windows, stride 2, no padding ------------------------------------------
#
# Output row i reads input rows a = 2i and b = 2i + 1, and window j the cells w = 2j and 2j + 1,
# so the four candidates of output value (j, c) sit at offsets s, s + C of rows a and b, where
# s = 2jC + c.  The general path above spends most of its time in the column pass, a short loop
# over c (C = 6, say) that the compiler cannot vectorise.  Here, when C is small, every offset s
# of the row is reduced, needed or not: ``s`` and ``s + C`` are both contiguous runs, so this is
# one long vectorised loop, doing about twice the necessary comparisons but at vector speed.  A
# second, cheap pass keeps the wanted half (blocks of C values, every other block).  When C is
# large the c loop itself is long enough to vectorise, and the values go straight to the output.
#
# Max/min compare the four candidates in row-major order, a later one winning only when
# strictly better: that is the first winner on ties, as in the general path.  ``code`` is the
# winner's offset from the window's first cell: 0, 1, W or W + 1.

cdef inline void _extreme_2x2_pass(const floating *a, const floating *b, floating *best,
                                   int *code, Py_ssize_t n, Py_ssize_t C, int W,
                                   bint take_min) noexcept nogil:
    """best[s], code[s] = extreme of a[s], a[s + C], b[s], b[s + C] and its code (0, 1, W,
    W + 1) for s < n, in the variant of ``_pool2x2.h`` this process runs."""
    if floating is float:
        cy_extreme_2x2_f(a, b, best, code, n, C, W, take_min)
    else:
        cy_extreme_2x2_d(a, b, best, code, n, C, W, take_min)


cdef void _extreme_row_2x2(const floating *xn, floating *orow, int *irow,
                           floating *best, int *code,
                           Py_ssize_t W, Py_ssize_t C, Py_ssize_t W_out, Py_ssize_t i,
                           bint take_min) noexcept nogil:
    """``_extreme_row`` for 2x2 windows, stride 2, no padding (rows 2i, 2i + 1 exist, and
    columns up to 2 * W_out - 1); ``best``/``code`` are scratch rows of W * C values."""
    cdef Py_ssize_t WC = W * C, j, c, s, t
    cdef const floating *a = xn + 2 * i * WC
    cdef const floating *b = a + WC
    cdef int base = <int>(2 * i * W)     # flat index of the first cell of window 0
    cdef int Wi = <int>W
    if C >= 16:
        # long channel runs: one pass per window, straight into the output row
        for j in range(W_out):
            _extreme_2x2_pass(a + 2 * j * C, b + 2 * j * C, orow + j * C, irow + j * C, C, C,
                              Wi, take_min)
            for c in range(C):
                irow[j * C + c] += base + <int>(2 * j)
        return
    # every offset s < (2 W_out - 1) C, so that s + C stays inside the 2 W_out cells read
    _extreme_2x2_pass(a, b, best, code, (2 * W_out - 1) * C, C, Wi, take_min)
    # keep s = 2jC + c: every other block of C values
    for j in range(W_out):
        for c in range(C):
            t = j * C + c
            s = 2 * j * C + c
            orow[t] = best[s]
            irow[t] = base + <int>(2 * j) + code[s]


cdef void _extreme_row_2x2_values(const floating *xn, floating *orow, Py_ssize_t W,
                                  Py_ssize_t C, Py_ssize_t W_out, Py_ssize_t i, bint take_min,
                                  bint relu) noexcept nogil:
    """``_extreme_row_2x2`` without the winners (inference), ReLU applied with ``relu``: the
    C of ``_pool2x2.h`` reads each window's channels straight into vectors."""
    cdef const floating *a = xn + 2 * i * W * C
    if floating is float:
        cy_extreme_row_f(a, a + W * C, orow, W_out, C, take_min, relu)
    else:
        cy_extreme_row_d(a, a + W * C, orow, W_out, C, take_min, relu)


cdef inline void _relu_row(floating *o, Py_ssize_t n) noexcept nogil:
    """o = relu(o) as ``cytorch.activations.relu``: +0 where o <= 0 (-0 too), NaN stays."""
    cdef Py_ssize_t t
    for t in range(n):
        o[t] = 0 if o[t] <= 0 else o[t]


cdef void _avg_row_2x2(const floating *xn, floating *orow, floating *rsum,
                       Py_ssize_t W, Py_ssize_t C, Py_ssize_t W_out,
                       Py_ssize_t i) noexcept nogil:
    """``_avg_row`` for 2x2 windows, stride 2, no padding, built like ``_extreme_row_2x2``;
    the sum is taken in the same order as ``_avg_row`` (rows first), so the results agree to the
    last bit."""
    cdef Py_ssize_t WC = W * C, j, c, s
    cdef const floating *a = xn + 2 * i * WC
    cdef const floating *b = a + WC
    cdef floating q = <floating>0.25
    if C >= 16:
        for j in range(W_out):
            for c in range(C):
                s = 2 * j * C + c
                orow[j * C + c] = ((a[s] + b[s]) + (a[s + C] + b[s + C])) * q
        return
    for s in range((2 * W_out - 1) * C):
        rsum[s] = ((a[s] + b[s]) + (a[s + C] + b[s + C])) * q
    for j in range(W_out):
        for c in range(C):
            orow[j * C + c] = rsum[2 * j * C + c]


cdef void _backward_row_2x2(const floating *drow, const int *irow, floating *dxn,
                            Py_ssize_t H, Py_ssize_t W, Py_ssize_t C, Py_ssize_t H_out,
                            Py_ssize_t W_out, Py_ssize_t i, bint route) noexcept nogil:
    """Backward of output row ``i`` for 2x2 windows, stride 2, no padding, written straight into
    dx rows 2i and 2i + 1 (no zeroing pass, no read-modify-write: the windows tile them).

    ``route`` (max/min): ``dout`` goes to the cell whose code ``irow - (2iW + 2j)`` is 0, 1, W or
    W + 1 and the other three get 0 (a winner outside the window matches none and is ignored).
    Otherwise (average) each of the four cells gets ``dout / 4``.  Cells no window covers (the
    last column of an odd W; the last row of an odd H, owned by the last output row) get 0."""
    cdef Py_ssize_t WC = W * C, j, c, s, t
    cdef floating *a = dxn + 2 * i * WC
    cdef floating *b = a + WC
    cdef floating d, z = 0, q = <floating>0.25
    cdef int k, Wi = <int>W
    for j in range(W_out):
        for c in range(C):
            t = j * C + c
            s = 2 * j * C + c
            if route:
                d = drow[t]
                k = irow[t] - <int>(2 * i * W + 2 * j)
                a[s] = d if k == 0 else z
                a[s + C] = d if k == 1 else z
                b[s] = d if k == Wi else z
                b[s + C] = d if k == Wi + 1 else z
            else:   # row b is the same: copied below
                d = drow[t] * q
                a[s] = d
                a[s + C] = d
    if not route:
        # one vectorised copy instead of two more scalar stores per value (for C = 6 this
        # loop is scalar: 102 -> 65 us on 64x28x28x6)
        memcpy(b, a, 2 * W_out * C * sizeof(floating))
    if 2 * W_out < W:
        memset(a + 2 * W_out * C, 0, (W - 2 * W_out) * C * sizeof(floating))
        memset(b + 2 * W_out * C, 0, (W - 2 * W_out) * C * sizeof(floating))
    if i == H_out - 1 and 2 * H_out < H:
        memset(b + WC, 0, (H - 2 * H_out) * WC * sizeof(floating))


cdef void _zero_band(floating *dxn, Py_ssize_t i, Py_ssize_t H_out, Py_ssize_t sh,
                     Py_ssize_t pt, Py_ssize_t H, Py_ssize_t WC) noexcept nogil:
    """Zero the dx rows output row ``i`` owns when windows do not overlap (``sh >= ph``):
    from its window's first row up to the next window's, the first and last rows stretched to
    the image's edges.  The bands of all output rows tile ``[0, H)`` and each holds its
    window, so backward can write every cell of dx without a separate zeroing pass."""
    cdef Py_ssize_t start = 0 if i == 0 else _imin(_imax(i * sh - pt, 0), H)
    cdef Py_ssize_t stop = H if i == H_out - 1 else _imin(_imax((i + 1) * sh - pt, 0), H)
    if stop > start:
        memset(dxn + start * WC, 0, (stop - start) * WC * sizeof(floating))


cdef void _route_row(const floating *drow, const int *irow, floating *dxn,
                     Py_ssize_t HW, Py_ssize_t C, Py_ssize_t W_out) noexcept nogil:
    """Add each ``dout`` value of one output row to its window's winner in ``dxn``."""
    cdef Py_ssize_t j, c, t
    cdef int k
    for j in range(W_out):
        for c in range(C):
            t = j * C + c
            k = irow[t]
            if <size_t>k < <size_t>HW:   # a winner outside the image is ignored, not followed
                dxn[k * C + c] += drow[t]


cdef void _spread_row(const floating *drow, floating *dxn, floating *share,
                      Py_ssize_t H, Py_ssize_t W, Py_ssize_t C,
                      Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t sh, Py_ssize_t sw,
                      Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t W_out, Py_ssize_t i) noexcept nogil:
    """Give every real cell of each window of output row ``i`` its share ``dout / count``:
    the separable pass run backwards (columns into the scratch row ``share``, then rows)."""
    cdef Py_ssize_t WC = W * C, h0 = i * sh - pt, w0, j, ih, iw, c, t
    cdef Py_ssize_t hlo = _imax(h0, 0), hhi = _imin(h0 + ph, H), wlo, whi
    cdef const floating *d
    cdef floating *row
    cdef floating inv
    for t in range(WC):
        share[t] = 0
    for j in range(W_out):
        w0 = j * sw - pl
        wlo = _imax(w0, 0)
        whi = _imin(w0 + pw, W)
        d = drow + j * C
        inv = <floating>1 / <floating>((hhi - hlo) * (whi - wlo))
        for iw in range(wlo, whi):
            for c in range(C):
                share[iw * C + c] += d[c] * inv
    for ih in range(hlo, hhi):
        row = dxn + ih * WC
        for t in range(WC):
            row[t] += share[t]


# -- argument checks (Python level, before any loop) --------------------------------------------
def _check_nonempty(*arrays):
    """Every array has at least one element (the kernels take the address of element 0)."""
    for a in arrays:
        if any(d < 1 for d in a.shape[:a.ndim]):
            raise ValueError(f"empty array of shape {tuple(a.shape)[:a.ndim]}")


def _check_window(tuple x_shape, tuple out_shape, Py_ssize_t ph, Py_ssize_t pw,
                  Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl):
    """Raise ValueError unless every window of ``out_shape`` has a real cell of ``x_shape``."""
    N, H, W, C = x_shape[:4]
    N_o, H_out, W_out, C_o = out_shape[:4]
    if N_o != N or C_o != C:
        raise ValueError(f"output shape {out_shape[:4]} does not match input {x_shape[:4]}")
    if min(ph, pw, sh, sw) < 1 or not (0 <= pt < ph and 0 <= pl < pw):
        raise ValueError(f"bad window: pool ({ph}, {pw}), strides ({sh}, {sw}), "
                         f"pads ({pt}, {pl})")
    if min(H_out, W_out) < 1 or (H_out - 1) * sh - pt >= H or (W_out - 1) * sw - pl >= W:
        raise ValueError(f"output {H_out}x{W_out} has windows outside the {H}x{W} input")
    if H * W >= 2 ** 31:
        raise ValueError(f"H * W = {H * W} does not fit the int32 winner indices")


cdef inline bint _is_2x2(Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t sh, Py_ssize_t sw,
                         Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t H, Py_ssize_t W,
                         Py_ssize_t H_out, Py_ssize_t W_out) noexcept:
    """The ``*_2x2`` row kernels apply: 2x2 windows, stride 2, no padding, every window whole
    (so rows up to 2 * H_out - 1 and columns up to 2 * W_out - 1 exist)."""
    return (ph == 2 and pw == 2 and sh == 2 and sw == 2 and pt == 0 and pl == 0
            and 2 * H_out <= H and 2 * W_out <= W)


# -- entry points: windowed pooling ---------------------------------------------------------------
def _scratch(int num_threads, Py_ssize_t size, dtype):
    """One scratch row of ``size`` values per thread (threads index it by ``threadid()``)."""
    return np.empty((num_threads, max(size, 1)), dtype=dtype)


def extreme_pool2d_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] out,
                           int[:, :, :, ::1] argidx,
                           Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t sh, Py_ssize_t sw,
                           Py_ssize_t pt, Py_ssize_t pl, bint take_min, int num_threads,
                           bint relu=False):
    """out[n, i, j, c] = max (min with ``take_min``) of window (i, j); argidx = its ih*W + iw.

    ``argidx`` None (inference, no backward follows): the winners are not recorded.
    ``relu``: out = relu(extreme), which is the extreme of relu(x) (ReLU is monotone)."""
    _check_nonempty(x, out)
    _check_window(tuple(x.shape), tuple(out.shape), ph, pw, sh, sw, pt, pl)
    cdef bint values_only = argidx is None
    if not values_only and tuple(argidx.shape) != tuple(out.shape):
        raise ValueError(f"argidx shape {tuple(argidx.shape)[:4]} != out shape "
                         f"{tuple(out.shape)[:4]}")
    cdef Py_ssize_t N = x.shape[0], H = x.shape[1], W = x.shape[2], C = x.shape[3]
    cdef Py_ssize_t H_out = out.shape[1], W_out = out.shape[2], r, tid
    cdef const floating *xp = &x[0, 0, 0, 0]
    cdef floating *op = &out[0, 0, 0, 0]
    num_threads = threads_for(num_threads, x.size)
    cdef bint is_2x2 = _is_2x2(ph, pw, sh, sw, pt, pl, H, W, H_out, W_out)
    if values_only and is_2x2:
        for r in prange(N * H_out, schedule="static", nogil=True, num_threads=num_threads):
            _extreme_row_2x2_values(xp + (r // H_out) * H * W * C, op + r * W_out * C,
                                    W, C, W_out, r % H_out, take_min, relu)
        return
    cdef floating[:, ::1] best = _scratch(num_threads, W * C,
                                          np.float32 if floating is float else np.float64)
    cdef int[:, ::1] brow = _scratch(num_threads, W * C, np.int32)
    # without argidx the winners go to a scratch row per thread, overwritten row after row
    cdef int[:, ::1] scratch_idx = _scratch(num_threads if values_only else 1, W_out * C,
                                            np.int32)
    cdef int *ip = &scratch_idx[0, 0] if values_only else &argidx[0, 0, 0, 0]
    if is_2x2:
        for r in prange(N * H_out, schedule="static", nogil=True, num_threads=num_threads):
            tid = threadid()
            _extreme_row_2x2(xp + (r // H_out) * H * W * C, op + r * W_out * C,
                             ip + r * W_out * C, &best[tid, 0],
                             &brow[tid, 0], W, C, W_out, r % H_out, take_min)
            if relu:
                _relu_row(op + r * W_out * C, W_out * C)
        return
    for r in prange(N * H_out, schedule="static", nogil=True, num_threads=num_threads):
        tid = threadid()
        _extreme_row(xp + (r // H_out) * H * W * C, op + r * W_out * C,
                     ip + (tid if values_only else r) * W_out * C,
                     &best[tid, 0], &brow[tid, 0],
                     H, W, C, ph, pw, sh, sw, pt, pl, W_out, r % H_out, take_min)
        if relu:
            _relu_row(op + r * W_out * C, W_out * C)


def extreme_pool2d_backward(const floating[:, :, :, ::1] dout, const int[:, :, :, ::1] argidx,
                            floating[:, :, :, ::1] dx, Py_ssize_t ph, Py_ssize_t pw,
                            Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, int num_threads,
                            Py_ssize_t pl=-1):
    """dx = dout routed to the winners recorded in argidx (every cell of dx is written).

    The general path needs no left pad (the winners' indices are absolute); pass ``pl`` to let
    2x2 stride-2 windows take the fast path, which must know that the windows start at column 0
    (the default -1, unknown, never does)."""
    if tuple(argidx.shape) != tuple(dout.shape) or dout.shape[0] != dx.shape[0] \
            or dout.shape[3] != dx.shape[3]:
        raise ValueError(f"dout {tuple(dout.shape)[:4]}, argidx {tuple(argidx.shape)[:4]} "
                         f"and dx {tuple(dx.shape)[:4]} do not agree")
    # the banded path below relies on a real window: with sh = 0, say, every output row would
    # claim (and zero) the same band of dx
    if min(ph, pw, sh, sw) < 1 or not 0 <= pt < ph:
        raise ValueError(f"bad window: pool ({ph}, {pw}), strides ({sh}, {sw}), pad top {pt}")
    _check_nonempty(dout, argidx, dx)
    cdef Py_ssize_t N = dx.shape[0], H = dx.shape[1], W = dx.shape[2], C = dx.shape[3]
    cdef Py_ssize_t H_out = dout.shape[1], W_out = dout.shape[2], r, n, HWC = H * W * C
    cdef const floating *dp = &dout[0, 0, 0, 0]
    cdef const int *ip = &argidx[0, 0, 0, 0]
    cdef floating *dxp = &dx[0, 0, 0, 0]
    num_threads = threads_for(num_threads, dx.size)
    # for C < 16 the four selects per value do not vectorise, and zeroing a band with memset
    # then adding one value per window (below) was measured faster (81 vs 188 us, 64x28x28x6,
    # Intel Xeon with AVX-512)
    if C >= 16 and _is_2x2(ph, pw, sh, sw, pt, pl, H, W, H_out, W_out):
        for r in prange(N * H_out, schedule="static", nogil=True, num_threads=num_threads):
            _backward_row_2x2(dp + r * W_out * C, ip + r * W_out * C, dxp + (r // H_out) * HWC,
                              H, W, C, H_out, W_out, r % H_out, True)
        return
    if sh >= ph:   # rows of windows do not overlap: any two output rows write disjoint cells
        for r in prange(N * H_out, schedule="static", nogil=True, num_threads=num_threads):
            _zero_band(dxp + (r // H_out) * HWC, r % H_out, H_out, sh, pt, H, W * C)
            _route_row(dp + r * W_out * C, ip + r * W_out * C, dxp + (r // H_out) * HWC,
                       H * W, C, W_out)
    else:
        for n in prange(N, schedule="static", nogil=True, num_threads=num_threads):
            memset(dxp + n * HWC, 0, HWC * sizeof(floating))
            for r in range(n * H_out, (n + 1) * H_out):
                _route_row(dp + r * W_out * C, ip + r * W_out * C, dxp + n * HWC,
                           H * W, C, W_out)


def avg_pool2d_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] out,
                       Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t sh, Py_ssize_t sw,
                       Py_ssize_t pt, Py_ssize_t pl, int num_threads):
    """out[n, i, j, c] = mean of the real cells of window (i, j)."""
    _check_nonempty(x, out)
    _check_window(tuple(x.shape), tuple(out.shape), ph, pw, sh, sw, pt, pl)
    cdef Py_ssize_t N = x.shape[0], H = x.shape[1], W = x.shape[2], C = x.shape[3]
    cdef Py_ssize_t H_out = out.shape[1], W_out = out.shape[2], r
    cdef const floating *xp = &x[0, 0, 0, 0]
    cdef floating *op = &out[0, 0, 0, 0]
    num_threads = threads_for(num_threads, x.size)
    cdef floating[:, ::1] rsum = _scratch(num_threads, W * C,
                                          np.float32 if floating is float else np.float64)
    if _is_2x2(ph, pw, sh, sw, pt, pl, H, W, H_out, W_out):
        for r in prange(N * H_out, schedule="static", nogil=True, num_threads=num_threads):
            _avg_row_2x2(xp + (r // H_out) * H * W * C, op + r * W_out * C,
                         &rsum[threadid(), 0], W, C, W_out, r % H_out)
        return
    for r in prange(N * H_out, schedule="static", nogil=True, num_threads=num_threads):
        _avg_row(xp + (r // H_out) * H * W * C, op + r * W_out * C, &rsum[threadid(), 0],
                 H, W, C, ph, pw, sh, sw, pt, pl, W_out, r % H_out)


def avg_pool2d_backward(const floating[:, :, :, ::1] dout, floating[:, :, :, ::1] dx,
                        Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t sh, Py_ssize_t sw,
                        Py_ssize_t pt, Py_ssize_t pl, int num_threads):
    """dx = sum of dout[n, i, j, c] / count over the windows (i, j) holding each real cell
    (every cell of dx is written)."""
    _check_nonempty(dout, dx)
    _check_window(tuple(dx.shape), tuple(dout.shape), ph, pw, sh, sw, pt, pl)
    cdef Py_ssize_t N = dx.shape[0], H = dx.shape[1], W = dx.shape[2], C = dx.shape[3]
    cdef Py_ssize_t H_out = dout.shape[1], W_out = dout.shape[2], r, n, HWC = H * W * C
    cdef const floating *dp = &dout[0, 0, 0, 0]
    cdef floating *dxp = &dx[0, 0, 0, 0]
    num_threads = threads_for(num_threads, dx.size)
    if _is_2x2(ph, pw, sh, sw, pt, pl, H, W, H_out, W_out):
        for r in prange(N * H_out, schedule="static", nogil=True, num_threads=num_threads):
            _backward_row_2x2(dp + r * W_out * C, NULL, dxp + (r // H_out) * HWC,
                              H, W, C, H_out, W_out, r % H_out, False)
        return
    cdef floating[:, ::1] share = _scratch(num_threads, W * C,
                                           np.float32 if floating is float else np.float64)
    if sh >= ph:
        for r in prange(N * H_out, schedule="static", nogil=True, num_threads=num_threads):
            _zero_band(dxp + (r // H_out) * HWC, r % H_out, H_out, sh, pt, H, W * C)
            _spread_row(dp + r * W_out * C, dxp + (r // H_out) * HWC,
                        &share[threadid(), 0], H, W, C, ph, pw, sh, sw, pt, pl, W_out,
                        r % H_out)
    else:
        for n in prange(N, schedule="static", nogil=True, num_threads=num_threads):
            memset(dxp + n * HWC, 0, HWC * sizeof(floating))
            for r in range(n * H_out, (n + 1) * H_out):
                _spread_row(dp + r * W_out * C, dxp + n * HWC, &share[threadid(), 0],
                            H, W, C, ph, pw, sh, sw, pt, pl, W_out, r - n * H_out)


# -- entry points: global pooling, (N, H, W, C) -> (N, C) ----------------------------------------
#
# Each returns the number of channels (forward) or dout values (backward) in which it met NaN
# or inf, counted in the pass that reads them: the caller then scans the array for its error
# message, and skips the scan when the count is 0.  (A count can be a false alarm, a sum of
# finite values that overflowed, which that scan clears.)

def global_extreme_pool2d_forward(const floating[:, :, :, ::1] x, floating[:, ::1] out,
                                  int[:, ::1] argidx, bint take_min, int num_threads):
    """out[n, c] = max (min) of x[n, :, :, c]; argidx[n, c] = h * W + w of the first winner.
    Returns the number of channels that held NaN or inf (or overflowed when summed)."""
    _check_nonempty(x)
    cdef Py_ssize_t N = x.shape[0], HW = x.shape[1] * x.shape[2], C = x.shape[3]
    if tuple(out.shape)[:2] != (N, C) or tuple(argidx.shape)[:2] != (N, C):
        raise ValueError(f"out {tuple(out.shape)[:2]} and argidx {tuple(argidx.shape)[:2]} "
                         f"must be {(N, C)}")
    if HW >= 2 ** 31:
        raise ValueError(f"H * W = {HW} does not fit the int32 winner indices")
    cdef Py_ssize_t n
    cdef int nonfinite = 0
    num_threads = threads_for(num_threads, x.size)
    # (``_pool2x2.h``: a vector of channels at a time, every cell in order)
    for n in prange(N, schedule="static", nogil=True, num_threads=num_threads):
        if floating is float:
            nonfinite += cy_global_extreme_f(&x[n, 0, 0, 0], HW, C, &out[n, 0], &argidx[n, 0],
                                             take_min)
        else:
            nonfinite += cy_global_extreme_d(&x[n, 0, 0, 0], HW, C, &out[n, 0], &argidx[n, 0],
                                             take_min)
    return nonfinite


def global_extreme_pool2d_backward(const floating[:, ::1] dout, const int[:, ::1] argidx,
                                   floating[:, :, :, ::1] dx, int num_threads):
    """dx (zeroed by the caller)[n, winner of (n, c), c] = dout[n, c]."""
    _check_nonempty(dx)
    cdef Py_ssize_t N = dx.shape[0], HW = dx.shape[1] * dx.shape[2], C = dx.shape[3]
    if tuple(dout.shape)[:2] != (N, C) or tuple(argidx.shape)[:2] != (N, C):
        raise ValueError(f"dout {tuple(dout.shape)[:2]} and argidx "
                         f"{tuple(argidx.shape)[:2]} must be {(N, C)}")
    cdef Py_ssize_t n, c
    cdef int k
    cdef floating *dxn
    num_threads = threads_for(num_threads, N * C)
    for n in prange(N, schedule="static", nogil=True, num_threads=num_threads):
        dxn = &dx[n, 0, 0, 0]
        for c in range(C):
            k = argidx[n, c]
            if <size_t>k < <size_t>HW:
                dxn[k * C + c] = dout[n, c]


def global_avg_pool2d_forward(const floating[:, :, :, ::1] x, floating[:, ::1] out,
                              int num_threads):
    """out[n, c] = sum_{h, w} x[n, h, w, c] / (H * W), summed in double precision.  Returns
    the number of sums that are NaN or inf (x held NaN or inf, or a float64 sum overflowed)."""
    _check_nonempty(x)
    cdef Py_ssize_t N = x.shape[0], HW = x.shape[1] * x.shape[2], C = x.shape[3]
    if tuple(out.shape)[:2] != (N, C):
        raise ValueError(f"out {tuple(out.shape)[:2]} must be {(N, C)}")
    num_threads = threads_for(num_threads, x.size)
    # one row of C double accumulators per thread
    cdef double[:, ::1] acc = np.empty((num_threads, C), dtype=np.float64)
    cdef Py_ssize_t n, c
    cdef double *s
    cdef int nonfinite = 0
    # (``_pool2x2.h``: two vectors of channels at a time, every cell in order)
    for n in prange(N, schedule="static", nogil=True, num_threads=num_threads):
        s = &acc[threadid(), 0]
        if floating is float:
            nonfinite += cy_global_sum_f(&x[n, 0, 0, 0], HW, C, s)
        else:
            nonfinite += cy_global_sum_d(&x[n, 0, 0, 0], HW, C, s)
        for c in range(C):
            out[n, c] = <floating>(s[c] / HW)
    return nonfinite


def global_avg_pool2d_backward(const floating[:, ::1] dout, floating[:, :, :, ::1] dx,
                               int num_threads):
    """dx[n, h, w, c] = dout[n, c] / (H * W) for every cell (dx need not be zeroed).  Returns
    the number of dout values that are NaN or inf."""
    _check_nonempty(dx)
    cdef Py_ssize_t N = dx.shape[0], HW = dx.shape[1] * dx.shape[2], C = dx.shape[3]
    if tuple(dout.shape)[:2] != (N, C):
        raise ValueError(f"dout {tuple(dout.shape)[:2]} must be {(N, C)}")
    cdef Py_ssize_t n, c
    cdef floating *dxn
    cdef floating count = <floating>HW
    cdef int nonfinite = 0
    num_threads = threads_for(num_threads, dx.size)
    for n in prange(N, schedule="static", nogil=True, num_threads=num_threads):
        dxn = &dx[n, 0, 0, 0]
        for c in range(C):              # the first cell, then copies of it
            dxn[c] = dout[n, c] / count
        # (dout / count is NaN or inf exactly where dout is: count >= 1)
        if floating is float:
            nonfinite += cy_global_fill_f(dxn, HW, C)
        else:
            nonfinite += cy_global_fill_d(dxn, HW, C)
    return nonfinite
