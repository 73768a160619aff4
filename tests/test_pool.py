"""Pooling (max, avg, min; windowed and global): the compiled kernels against their NumPy twins
and against the definition, finite differences, the course's example, ties, padding, bad input,
and (when installed) PyTorch."""
import importlib.machinery

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

import cytorch
from cytorch import functional as F
from cytorch._gradcheck import numerical_gradient, relative_error
from cytorch._kernels import load
from cytorch._shapes import resolve_padding
from cytorch.errors import ShapeError

KINDS = ("max", "avg", "min")
TOL = {np.float32: 1e-6, np.float64: 1e-13}
COURSE = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], dtype=float)


def pool(kind, x, *args, dout=None, backend="compiled", **kwargs):
    """Forward and backward of one windowed pool on one backend: out, cache, dx."""
    forward = getattr(F, f"{kind}_pool2d_forward")
    backward = getattr(F, f"{kind}_pool2d_backward")
    with cytorch.backend(backend):
        out, cache = forward(x, *args, **kwargs)
        if dout is None:
            dout = np.random.default_rng(1).standard_normal(out.shape).astype(out.dtype)
        dx = backward(dout, cache)
    return out, cache, dx


def global_pool(kind, x, dout=None, backend="compiled"):
    forward = getattr(F, f"global_{kind}_pool2d_forward")
    backward = getattr(F, f"global_{kind}_pool2d_backward")
    with cytorch.backend(backend):
        out, cache = forward(x)
        if dout is None:
            dout = np.random.default_rng(1).standard_normal(out.shape).astype(out.dtype)
        dx = backward(dout, cache)
    return out, cache, dx


def naive_pool(kind, x, ph, pw, sh, sw, pads):
    """The definition, one output number at a time: reduce the real cells of each window;
    max/min take the first winner in row-major order.  Returns out and the winners' ih*W+iw."""
    N, H, W, C = x.shape
    pt, pb, pl, pr = pads
    H_out, W_out = (H + pt + pb - ph) // sh + 1, (W + pl + pr - pw) // sw + 1
    out = np.zeros((N, H_out, W_out, C))
    where = np.full((N, H_out, W_out, C), -1)
    for n in range(N):
        for i in range(H_out):
            for j in range(W_out):
                cells = [(ih, iw) for ih in range(i * sh - pt, i * sh - pt + ph)
                         for iw in range(j * sw - pl, j * sw - pl + pw)
                         if 0 <= ih < H and 0 <= iw < W]
                for c in range(C):
                    values = [x[n, ih, iw, c] for ih, iw in cells]
                    if kind == "avg":
                        out[n, i, j, c] = np.mean(values)
                        continue
                    k = int(np.argmax(values) if kind == "max" else np.argmin(values))
                    out[n, i, j, c] = values[k]
                    where[n, i, j, c] = cells[k][0] * W + cells[k][1]
    return out, where


# -- compiled vs twin vs definition ---------------------------------------------------------------
def small_pads(ph, pw):
    """Paddings whose every side is smaller than the window (what pooling accepts)."""
    m = min(ph, pw) - 1
    return st.one_of(
        st.sampled_from(["valid", "same", "full"]), st.integers(0, m),
        st.tuples(st.integers(0, ph - 1), st.integers(0, pw - 1)),
        st.tuples(st.tuples(st.integers(0, ph - 1), st.integers(0, ph - 1)),
                  st.tuples(st.integers(0, pw - 1), st.integers(0, pw - 1))))


@st.composite
def pool_cases(draw):
    ph, pw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    strides = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = draw(small_pads(ph, pw))
    N, H, W, C = (draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 9)),
                  draw(st.integers(1, 5)))
    sh, sw = (ph, pw) if strides is None else strides
    pads = resolve_padding(padding, H, W, ph, pw, sh, sw)
    assume(H + pads[0] + pads[1] >= ph and W + pads[2] + pads[3] >= pw)
    return (N, H, W, C), (ph, pw), strides, padding, pads


@settings(max_examples=80, deadline=None)
@given(case=pool_cases(), kind=st.sampled_from(KINDS),
       dtype=st.sampled_from([np.float32, np.float64]), ties=st.booleans(),
       seed=st.integers(0, 2 ** 16))
def test_compiled_matches_twin(case, kind, dtype, ties, seed):
    shape, pool_size, strides, padding, _ = case
    rng = np.random.default_rng(seed)
    # integer values from a small range make ties common: the first-index rule must agree
    x = (rng.integers(-2, 3, shape) if ties else rng.standard_normal(shape)).astype(dtype)
    got = pool(kind, x, pool_size, strides, padding)
    want = pool(kind, x, pool_size, strides, padding, backend="reference")
    for g, r in ((got[0], want[0]), (got[2], want[2])):
        assert g.dtype == dtype and g.shape == r.shape
        assert relative_error(g, r) <= TOL[dtype]
    if kind != "avg":
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1]["argidx"], want[1]["argidx"])


@settings(max_examples=40, deadline=None)
@given(case=pool_cases(), kind=st.sampled_from(KINDS), seed=st.integers(0, 2 ** 16))
def test_twins_match_the_definition(case, kind, seed):
    shape, (ph, pw), strides, padding, pads = case
    sh, sw = (ph, pw) if strides is None else strides
    x = np.random.default_rng(seed).integers(-2, 3, shape).astype(np.float64)
    want, where = naive_pool(kind, x, ph, pw, sh, sw, pads)
    for backend in ("compiled", "reference"):
        out, cache, _ = pool(kind, x, (ph, pw), strides, padding, backend=backend)
        np.testing.assert_allclose(out, want, rtol=1e-14, atol=0)
        if kind != "avg":
            np.testing.assert_array_equal(cache["argidx"], where)


@settings(max_examples=30, deadline=None)
@given(N=st.integers(1, 3), H=st.integers(1, 9), W=st.integers(1, 9), C=st.integers(1, 40),
       kind=st.sampled_from(KINDS), dtype=st.sampled_from([np.float32, np.float64]),
       ties=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_global_compiled_matches_twin(N, H, W, C, kind, dtype, ties, seed):
    # C up to 40: whole vectors of channels (4 to 16 in a variant) and a scalar tail
    rng = np.random.default_rng(seed)
    shape = (N, H, W, C)
    x = (rng.integers(-2, 3, shape) if ties else rng.standard_normal(shape)).astype(dtype)
    got = global_pool(kind, x)
    want = global_pool(kind, x, backend="reference")
    assert got[0].shape == (N, C) and got[2].shape == shape
    for g, r in ((got[0], want[0]), (got[2], want[2])):
        assert g.dtype == dtype and relative_error(g, r) <= TOL[dtype]
    if kind != "avg":
        np.testing.assert_array_equal(got[1]["argidx"], want[1]["argidx"])
        reduce = np.max if kind == "max" else np.min
        np.testing.assert_array_equal(got[0], reduce(x, axis=(1, 2)))


# -- gradients by finite differences (float64) ----------------------------------------------------
def distinct(shape, seed):
    """Values k / size for k = 1, ..., size in random order: neighbours are 1/size apart, far
    more than the 1e-6 nudges, so a nudge never changes which cell wins a max or a min."""
    size = int(np.prod(shape))
    return (np.random.default_rng(seed).permutation(size) + 1.0).reshape(shape) / size


GRAD_CASES = [  # pool_size, strides, padding
    ((2, 2), None, "valid"),
    ((3, 2), (1, 2), "same"),        # overlapping rows, odd total padding
    ((3, 3), (2, 1), ((2, 1), (0, 2))),
    ((2, 3), (1, 1), "full"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("backend", ["compiled", "reference"])
@pytest.mark.parametrize("pool_size, strides, padding", GRAD_CASES)
def test_gradient_matches_finite_differences(kind, backend, pool_size, strides, padding):
    x = distinct((2, 5, 6, 2), seed=3)
    forward = getattr(F, f"{kind}_pool2d_forward")

    def f(z):
        with cytorch.backend(backend):
            return forward(z, pool_size, strides, padding)[0]

    dout = np.random.default_rng(4).standard_normal(f(x).shape)
    _, _, dx = pool(kind, x, pool_size, strides, padding, dout=dout, backend=backend)
    assert relative_error(dx, numerical_gradient(f, x, dout)) < 1e-8


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("backend", ["compiled", "reference"])
def test_global_gradient_matches_finite_differences(kind, backend):
    x = distinct((2, 4, 3, 3), seed=5)
    forward = getattr(F, f"global_{kind}_pool2d_forward")

    def f(z):
        with cytorch.backend(backend):
            return forward(z)[0]

    dout = np.random.default_rng(6).standard_normal((2, 3))
    _, _, dx = global_pool(kind, x, dout=dout, backend=backend)
    assert relative_error(dx, numerical_gradient(f, x, dout)) < 1e-8


# -- the course's example, ties and padding -------------------------------------------------------
@pytest.mark.parametrize("backend", ["compiled", "reference"])
@pytest.mark.parametrize("kind, want", [("max", [[6, 8], [3, 4]]),
                                        ("avg", [[3.25, 5.25], [2, 2]]),
                                        ("min", [[1, 2], [1, 0]])])
def test_course_example_2x2_stride_2(backend, kind, want):
    x = COURSE[None, :, :, None]
    out, cache, dx = pool(kind, x, 2, 2, dout=np.ones((1, 2, 2, 1)), backend=backend)
    np.testing.assert_array_equal(out[0, :, :, 0], want)
    assert out.dtype == np.float64
    if kind == "max":   # 6 at (1, 1), 8 at (1, 3), 3 at (2, 0), 4 at (3, 3)
        np.testing.assert_array_equal(dx[0, :, :, 0], [[0, 0, 0, 0], [0, 1, 0, 1],
                                                       [1, 0, 0, 0], [0, 0, 0, 1]])
    if kind == "min":   # ties: the first 1 of the window [[1, 1], [5, 6]] wins
        np.testing.assert_array_equal(dx[0, :, :, 0], [[1, 0, 1, 0], [0, 0, 0, 0],
                                                       [0, 0, 0, 1], [1, 0, 0, 0]])
    if kind == "avg":
        np.testing.assert_array_equal(dx, np.full((1, 4, 4, 1), 0.25))


@pytest.mark.parametrize("backend", ["compiled", "reference"])
@pytest.mark.parametrize("kind", ["max", "min"])
def test_ties_go_to_the_first_cell_in_row_major_order(backend, kind):
    # a constant map: every cell ties, so each window's top-left real cell must win, also in
    # overlapping windows (which then share a winner and add up their gradients)
    x = np.full((1, 4, 5, 2), 7.0)
    out, cache, dx = pool(kind, x, (2, 3), (1, 2), dout=np.ones((1, 3, 2, 2)),
                          backend=backend)
    W = 5
    want = np.array([[i * W + j * 2 for j in range(2)] for i in range(3)])
    np.testing.assert_array_equal(cache["argidx"][0, :, :, 0], want)
    expected = np.zeros((4, 5))
    expected[0:3, [0, 2]] = 1
    np.testing.assert_array_equal(dx[0, :, :, 1], expected)


@pytest.mark.parametrize("backend", ["compiled", "reference"])
def test_padding_never_wins_and_avg_counts_real_cells_only(backend):
    x = -np.arange(1.0, 10.0).reshape(1, 3, 3, 1)        # all negative: a padded 0 would win
    out, _, _ = pool("max", x, 2, 1, "same", backend=backend)    # pads (0, 1, 0, 1)
    np.testing.assert_array_equal(out[0, :, :, 0], [[-1, -2, -3], [-4, -5, -6], [-7, -8, -9]])
    ones = np.ones((2, 5, 7, 3))
    out, _, dx = pool("avg", ones, 3, 2, "same", dout=np.ones((2, 3, 4, 3)), backend=backend)
    np.testing.assert_array_equal(out, 1.0)                  # not diluted by padded zeros
    # each window passes its gradient 1 on, split over its real cells only
    np.testing.assert_allclose(dx.sum(), out.size)
    out, _, _ = pool("min", -x, (3, 2), 1, ((2, 2), (1, 1)), backend=backend)
    assert out.min() == 1.0 and out.shape == (1, 5, 4, 1)


def test_thread_count_does_not_change_results():
    # big enough (> 2**19 values) for the kernels to use several threads; (3, (1, 2)) takes
    # the general path, 2 the 2x2 one (for C >= 16 and, with y, C < 16)
    x = np.random.default_rng(7).integers(0, 4, (6, 34, 36, 72)).astype(np.float32)
    y = np.random.default_rng(8).integers(0, 4, (8, 100, 110, 6)).astype(np.float32)
    results = []
    for n in (1, 2, 3):
        cytorch.set_num_threads(n)
        try:
            results.append([pool(k, x, 3, (1, 2), "same")[::2] for k in KINDS]
                           + [pool(k, x, 2)[::2] for k in KINDS]
                           + [pool(k, y, 2)[::2] for k in KINDS]
                           + [global_pool(k, x)[::2] for k in KINDS])
        finally:
            cytorch.set_num_threads(None)
    for other in results[1:]:
        for (o1, d1), (o2, d2) in zip(results[0], other):
            np.testing.assert_array_equal(o1, o2)
            np.testing.assert_allclose(d1, d2, rtol=1e-6)


def test_forward_on_one_backend_backward_on_the_other():
    x = np.random.default_rng(8).standard_normal((2, 6, 6, 3))
    dout = np.ones((2, 3, 3, 3))
    for kind in KINDS:
        out, cache = getattr(F, f"{kind}_pool2d_forward")(x, 2)
        with cytorch.backend("reference"):
            dx = getattr(F, f"{kind}_pool2d_backward")(dout, cache)
        np.testing.assert_allclose(dx, pool(kind, x, 2, dout=dout)[2])


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("pool_size, strides, padding", [
    (2, 3, "valid"),           # gaps between windows, an unseen last row and column
    (3, (4, 1), ((1, 2), (0, 0))),
    (3, 1, "same"),            # overlapping windows
    ((2, 1), (2, 1), ((1, 1), (0, 0))),
])
def test_backward_kernels_write_every_cell_of_dx(kind, pool_size, strides, padding):
    # functional hands the kernels np.empty: whatever was in memory must not leak into dx
    x = np.random.default_rng(12).standard_normal((3, 8, 7, 2))
    out, cache, want = pool(kind, x, pool_size, strides, padding, backend="reference")
    dout = np.random.default_rng(1).standard_normal(out.shape)
    (ph, pw), (sh, sw), (pt, _, pl, _) = cache["pool_size"], cache["strides"], cache["pads"]
    dx = np.full_like(x, np.nan)
    if kind == "max":
        load("_pool").extreme_pool2d_backward(dout, cache["argidx"], dx, ph, pw, sh, sw, pt, 2)
    else:
        load("_pool").avg_pool2d_backward(dout, dx, ph, pw, sh, sw, pt, pl, 2)
    np.testing.assert_allclose(dx, want, rtol=1e-12, atol=1e-15)


# -- the 2x2 stride-2 fast path (``_extreme_row_2x2``, ``_avg_row_2x2``, ``_backward_row_2x2``) --
# The path is taken for 2x2 windows, stride 2, no top/left padding; it has a branch for C < 16
# (whole-row pass, then every other block kept) and one for C >= 16, and must zero the last row
# and column of an odd H or W.  The neighbours (stride 1: overlapping windows; a left pad) take
# the general path and are here to check the dispatch.
@pytest.mark.parametrize("shape", [(2, 4, 6, 1), (3, 6, 8, 6), (2, 7, 5, 6), (2, 5, 9, 16),
                                   (2, 6, 4, 19), (1, 2, 2, 33)])
@pytest.mark.parametrize("pool_size, strides, padding", [
    (2, None, "valid"), (2, 2, "same"), (2, 1, "valid"), (2, 2, ((0, 0), (1, 0)))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_2x2_fast_path_matches_twin(shape, pool_size, strides, padding, dtype, ties, kind):
    rng = np.random.default_rng(sum(shape))
    # values from {-1, 0, 1}: most windows hold a tie, which must go to the first cell
    x = (rng.integers(-1, 2, shape) if ties else rng.standard_normal(shape)).astype(dtype)
    got = pool(kind, x, pool_size, strides, padding)
    want = pool(kind, x, pool_size, strides, padding, backend="reference")
    assert got[0].dtype == got[2].dtype == dtype
    np.testing.assert_allclose(got[0], want[0], rtol=TOL[dtype], atol=TOL[dtype])
    # dx: overlapping windows add several shares into one cell, in another order than the twin
    np.testing.assert_allclose(got[2], want[2], rtol=TOL[dtype], atol=TOL[dtype])
    if kind != "avg":   # selection is exact
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1]["argidx"], want[1]["argidx"])


@pytest.mark.parametrize("shape", [(2, 5, 7, 6), (2, 5, 7, 16)])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_2x2_fast_path_backward_writes_every_cell(shape, kind):
    # odd H and W: the last row and column belong to no window and must come out 0, not NaN
    x = np.random.default_rng(3).standard_normal(shape)
    out, cache, want = pool(kind, x, 2, backend="reference")
    dout = np.random.default_rng(1).standard_normal(out.shape)
    dx = np.full_like(x, np.nan)
    if kind == "max":
        load("_pool").extreme_pool2d_backward(dout, cache["argidx"], dx, 2, 2, 2, 2, 0, 2, pl=0)
    else:
        load("_pool").avg_pool2d_backward(dout, dx, 2, 2, 2, 2, 0, 0, 2)
    np.testing.assert_allclose(dx, want, rtol=1e-12, atol=1e-15)
    assert not dx[:, -1].any() and not dx[:, :, -1].any()


@pytest.mark.parametrize("C", [16, 20])
def test_2x2_fast_path_ignores_winners_outside_their_window(C):
    # (max backward takes the fast path for C >= 16 only.)  A corrupt cache: winners elsewhere
    # in the image or outside it route nothing; the one good winner gets its gradient
    N, H, W = 2, 4, 6
    dout = np.ones((N, H // 2, W // 2, C))
    idx = np.full(dout.shape, 2 ** 31 - 1, dtype=np.int32)
    idx[:, :, 1] = -5
    idx[:, :, 2] = 0                       # cell (0, 0): inside the image, outside window (i, 2)
    idx[:, 0, 0] = 1                       # window (0, 0)'s second cell: the only valid winner
    dx = np.full((N, H, W, C), np.nan)
    load("_pool").extreme_pool2d_backward(dout, idx, dx, 2, 2, 2, 2, 0, 2, pl=0)
    want = np.zeros_like(dx)
    want[:, 0, 1] = 1
    np.testing.assert_array_equal(dx, want)


@pytest.mark.parametrize("shape", [(2, 4, 6, 3), (1, 4, 4, 16), (2, 5, 7, 6), (1, 3, 3, 17)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", KINDS)
def test_2x2_fast_path_finds_every_non_finite_value(shape, dtype, kind):
    # the 2x2 kernels check finiteness as they read x (functional then skips its own scan);
    # a NaN or inf anywhere, including the row and column an odd H or W leaves out of every
    # window, must still be refused
    forward = getattr(F, f"{kind}_pool2d_forward")
    for flat in range(int(np.prod(shape))):
        for bad in (np.nan, np.inf, -np.inf):
            x = np.ones(shape, dtype=dtype)
            x.flat[flat] = bad
            with pytest.raises(ValueError, match="x contains 1 NaN or infinite"):
                forward(x, 2)
            forward(x, 2, check_finite=False)   # asked not to check: no error


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_2x2_avg_overflow_is_not_taken_for_a_non_finite_input(dtype):
    # four huge finite values sum to inf: the kernel's alarm is false, functional's scan clears it
    x = np.full((1, 2, 2, 3), np.finfo(dtype).max, dtype=dtype)
    out, _ = F.avg_pool2d_forward(x, 2)
    assert np.isinf(out).all()


# -- dtypes, mutation, read-only input ------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_dtypes_and_inputs_are_left_alone(kind):
    xi = np.arange(32).reshape(1, 4, 4, 2)
    out, cache, dx = pool(kind, xi, 2)
    assert out.dtype == np.float32 and dx.dtype == np.float32
    x = np.random.default_rng(9).standard_normal((2, 5, 5, 2))
    x.setflags(write=False)                                     # read-only input is fine
    before = x.copy()
    dout = np.ones((2, 2, 2, 2))
    out, _, dx = pool(kind, x, 2, dout=dout)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(dout, 1.0)
    gout, _, _ = global_pool(kind, x)
    assert gout.dtype == np.float64
    np.testing.assert_array_equal(x, before)


def test_kernels_are_compiled_extension_modules():
    for name in ("_pool", "_dropout"):
        path = load(name).__file__
        assert path.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), path


# -- bad input ------------------------------------------------------------------------------------
def test_bad_input_errors_name_the_argument():
    x = np.ones((2, 4, 4, 3))
    with pytest.raises(ShapeError, match=r"x must be a 4-D array .*got shape \(4, 4, 3\)"):
        F.max_pool2d_forward(np.ones((4, 4, 3)))
    with pytest.raises(ShapeError, match=r"avg_pool2d needs at least 5x5 input.*got 4x4: "
                                         r"floor\(\(4 - 5\)/5\) \+ 1 = 0"):
        F.avg_pool2d_forward(x, 5)
    with pytest.raises(ValueError, match=r"padding must be smaller than pool_size.*"
                                         r"\(2, 2, 2, 2\) for pool_size \(2, 2\)"):
        F.min_pool2d_forward(x, 2, padding=2)
    with pytest.raises(ValueError, match="pool_size must be positive, got 0"):
        F.max_pool2d_forward(x, 0)
    with pytest.raises(ValueError, match=r"strides must be an int or a pair of ints"):
        F.max_pool2d_forward(x, 2, (1, 2, 3))
    bad = x.copy()
    bad[0, 1, 1, 1] = np.nan
    with pytest.raises(ValueError, match="x contains 1 NaN or infinite"):
        F.avg_pool2d_forward(bad)
    with pytest.raises(TypeError, match="x must hold real numbers"):
        F.global_max_pool2d_forward(x.astype(complex))
    with pytest.raises(ShapeError, match="x must not be empty"):
        F.global_avg_pool2d_forward(np.ones((0, 4, 4, 3)))


def test_backward_checks_dout_and_cache():
    x = np.ones((2, 4, 4, 3))
    _, cache = F.max_pool2d_forward(x, 2)
    with pytest.raises(ShapeError, match=r"dout must have the max_pool2d output's shape "
                                         r"\(2, 2, 2, 3\), got \(2, 2, 3, 3\)"):
        F.max_pool2d_backward(np.ones((2, 2, 3, 3)), cache)
    with pytest.raises(ValueError, match="avg_pool2d_backward needs the cache returned by "
                                         "avg_pool2d_forward, got a cache of 'max'"):
        F.avg_pool2d_backward(np.ones((2, 2, 2, 3)), cache)
    _, gcache = F.global_min_pool2d_forward(x)
    with pytest.raises(ShapeError, match=r"global_min_pool2d output's shape \(2, 3\)"):
        F.global_min_pool2d_backward(np.ones((3, 2)), gcache)


def test_kernel_entry_points_refuse_inconsistent_shapes():
    P = load("_pool")
    x = np.ones((2, 4, 4, 3))
    with pytest.raises(ValueError, match="does not match input"):
        P.avg_pool2d_forward(x, np.empty((2, 2, 2, 4)), 2, 2, 2, 2, 0, 0, 1)
    with pytest.raises(ValueError, match="windows outside"):      # a window past the input
        P.avg_pool2d_forward(x, np.empty((2, 5, 2, 3)), 2, 2, 1, 2, 0, 0, 1)
    with pytest.raises(ValueError, match="bad window"):
        P.extreme_pool2d_forward(x, np.empty((2, 2, 2, 3)), np.empty((2, 2, 2, 3), np.int32),
                                 2, 2, 2, 2, 2, 0, False, 1)
    with pytest.raises(ValueError, match="do not agree"):
        P.extreme_pool2d_backward(np.ones((2, 2, 2, 3)), np.zeros((2, 2, 1, 3), np.int32),
                                  np.zeros_like(x), 2, 2, 2, 2, 0, 1)
    with pytest.raises(ValueError, match="empty array"):
        P.global_avg_pool2d_forward(np.ones((2, 0, 4, 3)), np.empty((2, 3)), 1)
    # winner indices outside the image are skipped, never followed
    dx = np.full_like(x, 7.0)
    idx = np.array([-1, 16, 2 ** 31 - 1], np.int32)[None, None, None, :].repeat(2, 0)
    P.extreme_pool2d_backward(np.ones((2, 1, 1, 3)), idx, dx, 4, 4, 4, 4, 0, 1)
    assert not dx.any()


# -- global pooling checks NaN/inf in the pass that reads x ----------------------------------------
# The kernels count the channels (avg backward: the dout values) where they met NaN or inf;
# only then is the array scanned for the error message.  Every variant, every place a bad
# value can sit: a vector block or the scalar tail of channels, the first cell (where a max
# or min starts from it) or any other.
GLOBAL_VARIANTS = load("_pool").isa_variants()


@pytest.mark.parametrize("variant", GLOBAL_VARIANTS)
@pytest.mark.parametrize("kind", ["max", "avg", "min"])
@settings(max_examples=40, deadline=None)
@given(HW=st.sampled_from([(1, 1), (1, 5), (3, 4)]), C=st.integers(1, 40),
       dtype=st.sampled_from([np.float32, np.float64]),
       bad=st.sampled_from([np.nan, np.inf, -np.inf]), data=st.data())
def test_global_pooling_finds_nan_and_inf_as_it_reads(variant, kind, HW, C, dtype, bad, data):
    n, k, c = (data.draw(st.integers(0, 1)), data.draw(st.integers(0, HW[0] * HW[1] - 1)),
               data.draw(st.integers(0, C - 1)))
    x = np.random.default_rng(0).standard_normal((2, *HW, C)).astype(dtype)
    x.reshape(2, -1, C)[n, k, c] = bad
    P = load("_pool")
    P._select_isa(variant)
    try:
        with pytest.raises(ValueError, match=r"x contains 1 NaN or infinite value"):
            getattr(F, f"global_{kind}_pool2d_forward")(x)
        out, cache = getattr(F, f"global_{kind}_pool2d_forward")(x, check_finite=False)
        if kind == "avg":
            dout = np.ones(out.shape, dtype)
            dout[n, c] = bad
            with pytest.raises(ValueError, match=r"dout contains 1 NaN or infinite value"):
                F.global_avg_pool2d_backward(dout, cache)
            dx = F.global_avg_pool2d_backward(dout, cache, check_finite=False)
            assert np.isfinite(dx).sum() == dx.size - HW[0] * HW[1]
    finally:
        P._select_isa("best")


@pytest.mark.parametrize("kind", ["max", "avg", "min"])
def test_global_pooling_scans_x_only_for_an_error(kind, monkeypatch):
    # finite x: no separate scan (it took half the time of a 32x8x8x64 average pooling);
    # float64 values whose sums overflow: a false alarm, which the scan clears
    from cytorch import _checks
    scans = []
    require_finite = _checks.require_finite
    monkeypatch.setattr(_checks, "require_finite",
                        lambda a, name: scans.append(name) or require_finite(a, name))
    forward = getattr(F, f"global_{kind}_pool2d_forward")
    out, cache = forward(np.random.default_rng(0).standard_normal((2, 3, 4, 5)))
    assert scans == []
    if kind == "avg":
        F.global_avg_pool2d_backward(np.ones(out.shape), cache)
        assert scans == []
    huge = np.full((1, 2, 2, 3), np.finfo(np.float64).max)
    huge[..., 1] *= -1
    out, _ = forward(huge)
    assert scans == ["x"]
    want = {"max": huge[0, 0, 0], "min": huge[0, 0, 0], "avg": [np.inf, -np.inf, np.inf]}[kind]
    np.testing.assert_array_equal(out[0], want)
    with cytorch.backend("reference"), np.errstate(over="ignore"):
        np.testing.assert_array_equal(forward(huge)[0], out)


# -- PyTorch, when it is installed ------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("pool_size, strides, pad", [(2, 2, 0), ((3, 2), (2, 1), (1, 1)),
                                                     (3, 1, 1), ((2, 4), (1, 3), (0, 2))])
def test_matches_torch(kind, pool_size, strides, pad):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(10).standard_normal((3, 9, 10, 4))
    dout_shape = pool(kind, x, pool_size, strides, pad)[0].shape
    dout = np.random.default_rng(11).standard_normal(dout_shape)
    out, _, dx = pool(kind, x, pool_size, strides, pad, dout=dout)
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    if kind == "max":
        yt = torch.nn.functional.max_pool2d(xt, pool_size, strides, pad)
    else:
        yt = torch.nn.functional.avg_pool2d(xt, pool_size, strides, pad,
                                            count_include_pad=False)
    yt.backward(torch.tensor(dout.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(out, yt.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-12)
