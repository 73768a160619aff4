"""The fast paths against their own twins: conv2d's direct and blocked paths
(``_kernels/_direct.pyx``, ``_kernels/_blocked.pyx``) against
``reference.conv2d_shift_add_forward`` / ``_backward``, and 2x2 pooling (the row
kernels of ``_pool.pyx`` and ``_pool2x2.h``) against ``reference.*_pool2d_2x2_*``; the twins
against the general twins and finite differences."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import cytorch
from cytorch import functional as F
from cytorch import reference
from cytorch._gradcheck import numerical_gradient, relative_error, rounding_error
from cytorch._kernels import load
from cytorch._shapes import resolve_padding

TOL = {np.float32: 2e-5, np.float64: 1e-12}
PADDINGS = st.one_of(st.sampled_from(["valid", "same", "full"]), st.integers(0, 3),
                     st.tuples(st.tuples(st.integers(0, 3), st.integers(0, 3)),
                               st.tuples(st.integers(0, 3), st.integers(0, 3))))


# -- conv2d: the direct path --------------------------------------------------------------------
def direct(x, w, b, pads, dout, need_dx=True, threads=2, module="_direct"):
    """The compiled direct (or blocked) path called as functional calls it: out, dx, dw, db."""
    N, H, W, C = x.shape
    kh, kw, _, K = w.shape
    pt, pb, pl, pr = pads
    out = np.empty((N, H + pt + pb - kh + 1, W + pl + pr - kw + 1, K), x.dtype)
    kernel = load(module)
    kernel.conv2d_forward(x, w, b, out, pt, pl, threads)
    dx = np.empty_like(x) if need_dx else None
    dw, db = np.empty_like(w), np.empty(K, x.dtype)
    kernel.conv2d_backward(dout, x, w, dx, dw, db, pt, pl, threads)
    return out, dx, dw, db


@settings(max_examples=80, deadline=None)
@given(N=st.integers(1, 3), H=st.integers(1, 12), W=st.integers(1, 12), C=st.integers(1, 4),
       K=st.integers(1, 9), kh=st.integers(1, 6), kw=st.integers(1, 6), padding=PADDINGS,
       dtype=st.sampled_from([np.float32, np.float64]), need_dx=st.booleans(),
       seed=st.integers(0, 2 ** 16))
def test_direct_kernel_matches_its_twin(N, H, W, C, K, kh, kw, padding, dtype, need_dx, seed):
    # any stride-1 geometry, not only those the dispatch rule sends here: non-square kernels,
    # kernels larger than the image, padding larger than the kernel (dx then crops)
    check_against_the_twin("_direct", N, H, W, C, K, kh, kw, padding, dtype, need_dx, seed)


@settings(max_examples=80, deadline=None)
@given(N=st.integers(1, 3), H=st.integers(1, 12), W=st.integers(1, 30), C=st.integers(1, 9),
       K=st.integers(1, 40), kh=st.integers(1, 6), kw=st.integers(1, 6), padding=PADDINGS,
       dtype=st.sampled_from([np.float32, np.float64]), need_dx=st.booleans(),
       seed=st.integers(0, 2 ** 16), threads=st.integers(1, 3))
def test_blocked_kernel_matches_its_twin(N, H, W, C, K, kh, kw, padding, dtype, need_dx, seed,
                                         threads):
    # rows wider than a tile (W up to 30: several pixel tiles per row), filters over several
    # vectors and not a whole number of them (K up to 40), more channels than a dx tile (C > 6),
    # kernel rows longer than a dW tile (kw * C > 24)
    check_against_the_twin("_blocked", N, H, W, C, K, kh, kw, padding, dtype, need_dx, seed,
                           threads)


def check_against_the_twin(module, N, H, W, C, K, kh, kw, padding, dtype, need_dx, seed,
                           threads=2):
    pads = resolve_padding(padding, H, W, kh, kw, 1, 1)
    pt, pb, pl, pr = pads
    if H + pt + pb < kh or W + pl + pr < kw:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, H, W, C)).astype(dtype)
    w = rng.standard_normal((kh, kw, C, K)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    want_out, cache = reference.conv2d_shift_add_forward(x, w, b, ((pt, pb), (pl, pr)))
    dout = rng.standard_normal(want_out.shape).astype(dtype)
    want = (want_out,) + reference.conv2d_shift_add_backward(dout, cache, need_dx)
    got = direct(x, w, b, pads, dout, need_dx, threads, module)
    # the same sums over |terms|, in float64: the size rounding errors are proportional to
    # (dw and db are sums over the batch that can cancel to almost nothing)
    a64 = [np.abs(v).astype(np.float64) for v in (x, w, b, dout)]
    scale_out, scale_cache = reference.conv2d_shift_add_forward(*a64[:3], ((pt, pb), (pl, pr)))
    scale = (scale_out,) + reference.conv2d_shift_add_backward(a64[3], scale_cache, need_dx)
    for name, g, r, s in zip(("out", "dx", "dw", "db"), got, want, scale):
        if r is None:
            assert g is None
            continue
        assert g.dtype == dtype and g.shape == r.shape, name
        assert rounding_error(g, r, s) < TOL[dtype], name


@settings(max_examples=40, deadline=None)
@given(N=st.integers(1, 2), H=st.integers(1, 8), W=st.integers(1, 8), C=st.integers(1, 3),
       K=st.integers(1, 4), kh=st.integers(1, 4), kw=st.integers(1, 4), padding=PADDINGS,
       bias=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_shift_add_twin_matches_the_im2col_twin(N, H, W, C, K, kh, kw, padding, bias, seed):
    pt, pb, pl, pr = resolve_padding(padding, H, W, kh, kw, 1, 1)
    if H + pt + pb < kh or W + pl + pr < kw:
        return
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal((N, H, W, C)), rng.standard_normal((kh, kw, C, K))
    b = rng.standard_normal(K) if bias else None
    out, cache = reference.conv2d_shift_add_forward(x, w, b, padding)
    want_out, want_cache = reference.conv2d_forward(x, w, b, 1, padding)
    assert relative_error(out, want_out) < 1e-13
    dout = rng.standard_normal(out.shape)
    for g, r in zip(reference.conv2d_shift_add_backward(dout, cache),
                    reference.conv2d_backward(dout, want_cache)):
        assert (g is None and r is None) or relative_error(g, r) < 1e-13


def test_direct_path_finite_differences():
    # a thin layer (3 -> 2 channels) on the direct path in float64 (K <= 2, C * K <= 9)
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((2, 7, 6, 3)), rng.standard_normal((3, 2, 3, 2)), np.ones(2)
    out, cache = F.conv2d_forward(x, w, b, 1, ((1, 0), (0, 1)))
    assert load("_direct").uses_direct_path(x.shape, w.shape, out.shape, (1, 1), x.dtype)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = F.conv2d_backward(dout, cache)
    f = lambda **kw: F.conv2d_forward(**{"x": x, "w": w, "b": b, **kw},
                                      padding=((1, 0), (0, 1)))[0]
    assert relative_error(dx, numerical_gradient(lambda v: f(x=v), x, dout)) < 1e-8
    assert relative_error(dw, numerical_gradient(lambda v: f(w=v), w, dout)) < 1e-8
    assert relative_error(db, numerical_gradient(lambda v: f(b=v), b, dout)) < 1e-8


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("H, C, K", [(28, 1, 6), (14, 6, 16)])
def test_blocked_path_runs_lenet_c1_and_c2(dtype, H, C, K):
    # LeNet's two layers (1 -> 6 and 6 -> 16 channels, 5x5) run the blocked path in every
    # variant, but not with a stride
    x, w = np.ones((2, H, H, C), dtype), np.ones((5, 5, C, K), dtype)
    out, _ = F.conv2d_forward(x, w)
    assert F._conv_fast_path(x, w, out, (1, 1), (1, 1)) == "_blocked"
    assert (out == 25 * C).all()
    assert F._conv_fast_path(x, w, out[:, :(H - 5) // 2 + 1, :(H - 5) // 2 + 1], (2, 2),
                             (1, 1)) is None


@pytest.mark.parametrize("H, W, want", [(14, 14, [4, 3]), (12, 12, [4]), (9, 13, [3]),
                                         (6, 40, [3, 2]), (13, 20, [4, 3, 2]), (5, 5, [2])])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocked_dx_tiles_of_every_width(H, W, want, dtype):
    # the dx tiles cover the output pixels (the lanes) in whole vectors, 2 to 4 of them a
    # tile on avx512 (LeNet c2's 100 pixels in 7 vectors: 4 + 3), 2 or 3 on avx2 (13: one 3
    # and five 2), 2 on the default variant (an even number of vectors); each tiling against
    # the twin, in every variant this CPU runs
    blocked = load("_blocked")
    lanes = (H - 4) * (W - 4)               # 5x5 kernel, "valid"
    try:
        for variant in blocked.isa_variants():
            blocked._select_isa(variant)
            widths = blocked._dx_tile_widths(lanes, np.dtype(dtype).itemsize)
            V = {"avx512": 64, "avx2": 32, "default": 16}[variant] // np.dtype(dtype).itemsize
            assert sum(widths) * V >= lanes > (sum(widths) - 2) * V
            if variant == "avx512" and dtype == np.float32:
                assert widths == want
            elif variant == "avx2":
                assert set(widths) <= {2, 3} and widths.count(3) <= 1
                assert lanes > (sum(widths) - 1) * V or widths == [2]
            elif variant == "default":
                assert set(widths) == {2}
            for threads in (1, 2):
                check_against_the_twin("_blocked", 2, H, W, 6, 16, 5, 5, "valid", dtype, True,
                                       seed=H, threads=threads)
    finally:
        blocked._select_isa("best")


def test_blocked_path_finite_differences():
    # channels over two dx tiles (7 > 6), filters over a vector and a half, odd padding
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((2, 6, 7, 7)), rng.standard_normal((3, 2, 7, 12)), np.ones(12)
    pad = ((1, 0), (0, 1))
    out, cache = F.conv2d_forward(x, w, b, 1, pad)
    assert F._conv_fast_path(x, w, out, (1, 1), (1, 1)) == "_blocked"
    dout = rng.standard_normal(out.shape)
    dx, dw, db = F.conv2d_backward(dout, cache)
    f = lambda **kw: F.conv2d_forward(**{"x": x, "w": w, "b": b, **kw}, padding=pad)[0]
    assert relative_error(dx, numerical_gradient(lambda v: f(x=v), x, dout)) < 1e-8
    assert relative_error(dw, numerical_gradient(lambda v: f(w=v), w, dout)) < 1e-8
    assert relative_error(db, numerical_gradient(lambda v: f(b=v), b, dout)) < 1e-8


def test_shift_add_docstring_and_stride_check():
    import doctest
    runner = doctest.DocTestRunner()
    for test in doctest.DocTestFinder().find(reference.conv2d_shift_add_forward,
                                             globs={"np": np, **vars(reference)}):
        runner.run(test)
    assert runner.failures == 0
    _, cache = reference.conv2d_forward(np.ones((1, 5, 5, 1)), np.ones((2, 2, 1, 1)), None, 2)
    with pytest.raises(ValueError, match=r"needs a stride-1, undilated cache, got strides "
                                         r"\(2, 2\), dilation \(1, 1\)"):
        reference.conv2d_shift_add_backward(np.ones((1, 2, 2, 1)), cache)


# -- 2x2 pooling ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["max", "min", "avg"])
@settings(max_examples=40, deadline=None)
@given(N=st.integers(1, 3), H=st.integers(2, 11), W=st.integers(2, 11), C=st.integers(1, 20),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2 ** 16))
def test_pool2x2_fast_path_matches_its_twin(kind, N, H, W, C, dtype, seed):
    # odd H and W leave a row or column no window covers; C from 1 to 20 crosses both row
    # kernels (C < 16 and C >= 16) and leaves tails shorter than a vector; small integers tie
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, (N, H, W, C)).astype(dtype)
    out, cache = getattr(F, f"{kind}_pool2d_forward")(x, 2)
    want, want_cache = getattr(reference, f"{kind}_pool2d_2x2_forward")(x)
    np.testing.assert_array_equal(out, want)
    assert out.dtype == dtype
    if kind != "avg":
        np.testing.assert_array_equal(cache["argidx"], want_cache["argidx"])
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx = getattr(F, f"{kind}_pool2d_backward")(dout, cache)
    np.testing.assert_array_equal(dx, getattr(reference, f"{kind}_pool2d_2x2_backward")(
        dout, want_cache))


@pytest.mark.parametrize("kind", ["max", "min", "avg"])
@settings(max_examples=30, deadline=None)
@given(N=st.integers(1, 2), H=st.integers(2, 9), W=st.integers(2, 9), C=st.integers(1, 4),
       seed=st.integers(0, 2 ** 16))
def test_pool2x2_twin_matches_the_general_twin(kind, N, H, W, C, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, (N, H, W, C)).astype(np.float64)
    out, cache = getattr(reference, f"{kind}_pool2d_2x2_forward")(x)
    want, want_cache = getattr(reference, f"{kind}_pool2d_forward")(x, 2)
    np.testing.assert_allclose(out, want, rtol=1e-15)
    if kind != "avg":
        np.testing.assert_array_equal(cache["argidx"], want_cache["argidx"])
    dout = rng.standard_normal(out.shape)
    np.testing.assert_allclose(getattr(reference, f"{kind}_pool2d_2x2_backward")(dout, cache),
                               getattr(reference, f"{kind}_pool2d_backward")(dout, want_cache),
                               rtol=1e-15)


def test_pool2x2_twin_refuses_another_geometry():
    _, cache = reference.max_pool2d_forward(np.ones((1, 6, 6, 1)), 3)
    with pytest.raises(ValueError, match=r"needs the cache of a 2x2 stride-2 unpadded pooling"):
        reference.max_pool2d_2x2_backward(np.ones((1, 2, 2, 1)), cache)


@pytest.mark.parametrize("kind", ["max", "min", "avg"])
def test_pool2x2_checks_x_for_nan_before_the_kernel(kind):
    # the 2x2 kernels no longer look for NaN themselves: functional scans x first
    x = np.zeros((2, 4, 4, 3), np.float32)
    x[1, 3, 2, 1] = np.nan
    with pytest.raises(ValueError, match=r"x contains 1 NaN or infinite value"):
        getattr(F, f"{kind}_pool2d_forward")(x, 2)
    out, _ = getattr(F, f"{kind}_pool2d_forward")(x, 2, check_finite=False)
    assert np.isnan(out[1, 1, 1, 1]) == (kind == "avg")   # a NaN never wins a max or a min
