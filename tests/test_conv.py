"""conv2d: the compiled kernel against its NumPy twin, finite differences, the course's worked
examples, bad input, and (when installed) PyTorch."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import cytorch
from cytorch import functional as F
from cytorch import reference
from cytorch._gradcheck import numerical_gradient, relative_error, rounding_error
from cytorch.errors import ShapeError

TOL = {np.float32: 2e-5, np.float64: 1e-12}


def run(x, w, b=None, strides=1, padding="valid", dout=None, backend="compiled", dilation=1):
    """Forward and backward on one backend: out, dx, dw, db (dout random unless given)."""
    with cytorch.backend(backend):
        out, cache = F.conv2d_forward(x, w, b, strides, padding, dilation)
        if dout is None:
            dout = np.random.default_rng(1).standard_normal(out.shape).astype(out.dtype)
        dx, dw, db = F.conv2d_backward(dout, cache)
    return out, dx, dw, db


def random_conv_operands(N, H, W, C, K, kh, kw, strides, padding, dtype, seed, dilation=1):
    """``x`` (N, H, W, C), ``w`` (kh, kw, C, K) in ``dtype`` and the generator that drew them
    (for whatever else a test draws), or None when the padded image is smaller than the
    (dilated) kernel: no output, which test_too_small_input_shows_the_formula covers."""
    from cytorch._shapes import as_pair, dilated_extent, resolve_padding
    (sh, sw), (dh, dw) = as_pair(strides, "strides"), as_pair(dilation, "dilation_rate")
    eh, ew = dilated_extent((kh, kw), (dh, dw))
    pt, pb, pl, pr = resolve_padding(padding, H, W, eh, ew, sh, sw)
    if H + pt + pb < eh or W + pl + pr < ew:
        return None
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((N, H, W, C)).astype(dtype),
            rng.standard_normal((kh, kw, C, K)).astype(dtype), rng)


def assert_twins_agree(x, w, b, strides, padding, dtype, dilation=1):
    """The compiled conv2d (forward and backward) against its twin (tests/test_dilation.py
    uses it too)."""
    got = run(x, w, b, strides, padding, dilation=dilation)
    want = run(x, w, b, strides, padding, backend="reference", dilation=dilation)
    # the same sums over |terms|, in float64: the size rounding errors are proportional to
    # (db = sum(dout) can cancel to almost nothing)
    dout = np.abs(np.random.default_rng(1).standard_normal(got[0].shape))
    scale = run(np.abs(x).astype(np.float64), np.abs(w).astype(np.float64),
                None if b is None else np.abs(b).astype(np.float64), strides, padding,
                dout=dout, backend="reference", dilation=dilation)
    for name, g, r, s in zip(("out", "dx", "dw", "db"), got, want, scale):
        if r is None:
            assert g is None, name
            continue
        assert g.dtype == dtype and g.shape == r.shape, name
        assert rounding_error(g, r, s) < TOL[dtype], name


# -- compiled vs twin ---------------------------------------------------------------------------
PADDINGS = st.one_of(st.sampled_from(["valid", "same", "full"]), st.integers(0, 2),
                     st.tuples(st.integers(0, 2), st.integers(0, 2)),
                     st.tuples(st.tuples(st.integers(0, 2), st.integers(0, 2)),
                               st.tuples(st.integers(0, 2), st.integers(0, 2))))


@settings(max_examples=60, deadline=None)
@given(N=st.integers(1, 3), H=st.integers(1, 9), W=st.integers(1, 9), C=st.integers(1, 4),
       K=st.integers(1, 12), kh=st.integers(1, 4), kw=st.integers(1, 4),
       sh=st.integers(1, 3), sw=st.integers(1, 3), padding=PADDINGS, bias=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2 ** 16))
def test_compiled_matches_twin(N, H, W, C, K, kh, kw, sh, sw, padding, bias, dtype, seed):
    drawn = random_conv_operands(N, H, W, C, K, kh, kw, (sh, sw), padding, dtype, seed)
    if drawn is None:
        return
    x, w, rng = drawn
    b = rng.standard_normal(K).astype(dtype) if bias else None
    assert_twins_agree(x, w, b, (sh, sw), padding, dtype)


@settings(max_examples=30, deadline=None)
@given(N=st.integers(1, 3), H=st.integers(1, 12), W=st.integers(1, 12), C=st.integers(1, 3),
       K=st.integers(1, 5), kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3),
       sw=st.integers(2, 3), dilation=st.integers(1, 2), padding=PADDINGS,
       budget=st.integers(1, 400), threads=st.sampled_from([1, 2]),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2 ** 16))
def test_images_walked_in_bands_match_twin(N, H, W, C, K, kh, kw, sh, sw, dilation, padding,
                                           budget, threads, dtype, seed):
    # an image whose im2col matrix exceeds the band budget runs in bands of output rows
    # (AlexNet's first layer); a tiny budget sends these small shapes (sw >= 2: the im2col +
    # GEMM path) through bands of one row and up, dilated ones too
    drawn = random_conv_operands(N, H, W, C, K, kh, kw, (sh, sw), padding, dtype, seed,
                                 dilation)
    if drawn is None:
        return
    x, w, rng = drawn
    conv = cytorch._kernels.load("_conv")
    old = conv._set_band_budget(budget)
    cytorch.set_num_threads(threads)
    try:
        assert_twins_agree(x, w, rng.standard_normal(K).astype(dtype), (sh, sw), padding, dtype,
                           dilation=dilation)
    finally:
        cytorch.set_num_threads(None)
        conv._set_band_budget(old)


def test_bands_sum_in_a_fixed_order():
    # dW sums band after band, partial sums per work unit: bit-identical runs, any thread count
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 23, 19, 3)).astype(np.float32)
    w = rng.standard_normal((5, 5, 3, 7)).astype(np.float32)
    conv = cytorch._kernels.load("_conv")
    old = conv._set_band_budget(3 * 75 * 8)
    try:
        for threads in (1, 2):
            cytorch.set_num_threads(threads)
            first = run(x, w, np.ones(7, np.float32), 2)
            for a, b in zip(first, run(x, w, np.ones(7, np.float32), 2)):
                np.testing.assert_array_equal(a, b)
    finally:
        cytorch.set_num_threads(None)
        conv._set_band_budget(old)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("N", [1, 2, 5])
def test_thread_counts_and_image_groups_agree(threads, N):
    # 40x40x8 with a 3x3 kernel needs a column buffer larger than one group's budget, so each
    # thread walks several groups; N < threads leaves threads without images.
    rng = np.random.default_rng(N)
    x = rng.standard_normal((N, 40, 40, 8)).astype(np.float32)
    w = rng.standard_normal((3, 3, 8, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    cytorch.set_num_threads(threads)
    try:
        assert_twins_agree(x, w, b, 1, "same", np.float32)
    finally:
        cytorch.set_num_threads(None)


def test_many_small_images_share_a_group():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((37, 6, 5, 2))
    w = rng.standard_normal((2, 3, 2, 3))
    assert_twins_agree(x, w, np.ones(3), (1, 2), "same", np.float64)


# -- finite differences (float64) ---------------------------------------------------------------
GRAD_CASES = [  # shape, kernel (kh, kw, C, K), strides, padding
    ((2, 5, 6, 2), (3, 2, 2, 3), 1, "valid"),
    ((1, 6, 5, 3), (2, 3, 3, 2), (2, 1), "same"),    # odd total padding: asymmetric split
    ((2, 4, 4, 1), (3, 3, 1, 2), 2, "full"),
    ((1, 5, 7, 2), (1, 4, 2, 2), (1, 3), ((2, 0), (1, 2))),
]


@pytest.mark.parametrize("backend", ["compiled", "reference"])
@pytest.mark.parametrize("shape, wshape, strides, padding", GRAD_CASES)
def test_gradients_match_finite_differences(backend, shape, wshape, strides, padding):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape)
    w = rng.standard_normal(wshape)
    b = rng.standard_normal(wshape[3])
    with cytorch.backend(backend):
        out, cache = F.conv2d_forward(x, w, b, strides, padding)
        dout = rng.standard_normal(out.shape)
        dx, dw, db = F.conv2d_backward(dout, cache)

        def f_x(x_):
            return F.conv2d_forward(x_, w, b, strides, padding)[0]

        def f_w(w_):
            return F.conv2d_forward(x, w_, b, strides, padding)[0]

        def f_b(b_):
            return F.conv2d_forward(x, w, b_, strides, padding)[0]

        assert relative_error(dx, numerical_gradient(f_x, x, dout)) < 1e-7
        assert relative_error(dw, numerical_gradient(f_w, w, dout)) < 1e-7
        assert relative_error(db, numerical_gradient(f_b, b, dout)) < 1e-7


def test_no_bias_gives_no_bias_gradient():
    x, w = np.ones((1, 4, 4, 1)), np.ones((2, 2, 1, 3))
    for backend in ("compiled", "reference"):
        out, dx, dw, db = run(x, w, None, backend=backend)
        assert db is None
        np.testing.assert_array_equal(out, 4.0)


# -- the course's worked examples ---------------------------------------------------------------
@pytest.mark.parametrize("backend", ["compiled", "reference"])
def test_course_binary_image_example(backend):
    image = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1],
                      [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]])
    kernel = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]])
    with cytorch.backend(backend):
        out, _ = F.conv2d_forward(image[None, :, :, None], kernel[:, :, None, None])
    assert out.dtype == np.float32  # integers become float32
    np.testing.assert_array_equal(out[0, :, :, 0], [[4, 3, 4], [2, 4, 3], [2, 3, 4]])
    np.testing.assert_array_equal(
        reference.conv2d_naive(image[None, :, :, None], kernel[:, :, None, None])[0, :, :, 0],
        out[0, :, :, 0])


@pytest.mark.parametrize("strides, padding, size", [(1, "valid", 5), (2, "valid", 3),
                                                    (1, 1, 7), (1, "same", 7)])
def test_course_7x7_input_3x3_filter(strides, padding, size):
    x = np.random.default_rng(0).standard_normal((2, 7, 7, 3))
    w = np.random.default_rng(1).standard_normal((3, 3, 3, 4))
    out, _ = F.conv2d_forward(x, w, None, strides, padding)
    assert out.shape == (2, size, size, 4)
    np.testing.assert_allclose(out, reference.conv2d_naive(x, w, None, strides, padding),
                               rtol=1e-12, atol=1e-12)


def test_course_alexnet_first_layer_shape():
    # 227x227x3, 96 filters of 11x11, stride 4: (227 - 11)/4 + 1 = 55
    x = np.random.default_rng(0).standard_normal((1, 227, 227, 3)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((11, 11, 3, 96)).astype(np.float32)
    out, _ = F.conv2d_forward(x, w, np.zeros(96, np.float32), strides=4)
    assert out.shape == (1, 55, 55, 96)
    assert w.size == 34_848  # the course's count of unique weights


# -- dtypes, input handling ---------------------------------------------------------------------
def test_dtypes_combine():
    x32 = np.ones((1, 3, 3, 1), np.float32)
    w64 = np.ones((2, 2, 1, 1), np.float64)
    assert F.conv2d_forward(x32, w64)[0].dtype == np.float64
    assert F.conv2d_forward(x32, w64.astype(np.float32))[0].dtype == np.float32
    out, cache = F.conv2d_forward(x32, w64, np.zeros(1, np.float32))
    dx, dw, db = F.conv2d_backward(np.ones(out.shape, np.float32), cache)
    assert dx.dtype == dw.dtype == db.dtype == np.float64


def test_inputs_are_not_modified_and_readonly_noncontiguous_are_accepted():
    rng = np.random.default_rng(3)
    big = rng.standard_normal((2, 10, 12, 6))
    x = big[:, ::2, 1::2, ::2]                       # non-contiguous (2, 5, 6, 3)
    w = np.asfortranarray(rng.standard_normal((3, 2, 3, 4)))
    b = rng.standard_normal(4)
    for a in (big, w, b):
        a.flags.writeable = False
    copies = [a.copy() for a in (x, w, b)]
    out, dx, dw, db = run(x, w, b, (1, 2), "same")
    ref = run(np.ascontiguousarray(x), np.ascontiguousarray(w), b, (1, 2), "same",
              backend="reference")
    for got, want in zip((out, dx, dw, db), ref):
        assert relative_error(got, want) < 1e-12
    for a, c in zip((x, w, b), copies):
        np.testing.assert_array_equal(a, c)


def test_dout_is_not_modified():
    x = np.random.default_rng(0).standard_normal((2, 5, 5, 2))
    w = np.random.default_rng(1).standard_normal((3, 3, 2, 2))
    out, cache = F.conv2d_forward(x, w, np.zeros(2))
    dout = np.random.default_rng(2).standard_normal(out.shape)
    keep = dout.copy()
    F.conv2d_backward(dout, cache)
    np.testing.assert_array_equal(dout, keep)


# -- bad input ----------------------------------------------------------------------------------
X = np.ones((2, 6, 6, 3))
W = np.ones((3, 3, 3, 4))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"x": np.ones((6, 6, 3))}, ShapeError, r"x must be a 4-D array \(N, H, W, C\).*\(6, 6, 3\)"),
    ({"x": np.ones((6, 6))}, ShapeError, r"x must be a 4-D array"),
    ({"w": np.ones((3, 3, 3))}, ShapeError, r"w must be a 4-D array \(kh, kw, C, K\)"),
    ({"w": np.ones((3, 3, 1, 4))}, ShapeError,
     r"w expects 1 input channels \(w.shape\[2\]\), x has 3 \(x.shape\[3\]\)"),
    ({"b": np.ones(3)}, ShapeError, r"b must have shape \(K,\) = \(4,\).*got shape \(3,\)"),
    ({"x": np.full((2, 6, 6, 3), np.nan)}, ValueError, r"x contains 216 NaN or infinite"),
    ({"w": np.where(np.eye(3)[:, :, None, None] > 0, np.inf, W)}, ValueError,
     r"w contains 36 NaN or infinite"),
    ({"x": np.ones((0, 6, 6, 3))}, ShapeError, r"x must not be empty, got shape \(0, 6, 6, 3\)"),
    ({"padding": "sme"}, ValueError, r"padding must be 'valid', 'same', 'full'.*'sme'"),
    ({"padding": -1}, ValueError, r"padding must be >= 0, got -1"),
    ({"strides": 0}, ValueError, r"strides must be positive, got 0"),
    ({"strides": (1, 2, 3)}, ValueError, r"strides must be an int or a pair of ints"),
    ({"x": np.ones((1, 2, 2, 3))}, ShapeError,
     r"needs at least 3x3 input.*got 2x2: floor\(\(2 - 3\)/1\) \+ 1 = 0 rows"),
    ({"x": np.ones((1, 4, 4, 3), complex)}, TypeError, r"x must hold real numbers.*complex"),
])
@pytest.mark.parametrize("backend", ["compiled", "reference"])
def test_bad_input_is_rejected_before_the_kernel(backend, kwargs, error, match):
    args = {"x": X, "w": W, "b": None, "strides": 1, "padding": "valid", **kwargs}
    with cytorch.backend(backend), pytest.raises(error, match=match):
        F.conv2d_forward(**args)


def test_nan_check_can_be_skipped():
    x = X.copy()
    x[0, 0, 0, 0] = np.nan
    out, _ = F.conv2d_forward(x, W, check_finite=False)
    assert np.isnan(out[0, 0, 0]).all() and np.isfinite(out[1]).all()


def test_dout_of_the_wrong_shape_is_rejected():
    out, cache = F.conv2d_forward(X, W)
    with pytest.raises(ShapeError, match=r"dout must have the forward output's shape "
                                         r"\(2, 4, 4, 4\), got \(2, 4, 4, 3\)"):
        F.conv2d_backward(np.ones((2, 4, 4, 3)), cache)


def test_kernel_entry_points_refuse_inconsistent_shapes():
    # the last guard before unchecked loops, for anyone calling the private module directly
    conv = cytorch._kernels.load("_conv")
    x, w, b = np.ones((1, 5, 5, 2)), np.ones((3, 3, 2, 4)), np.ones(4)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        conv.conv2d_forward(x, np.ones((3, 3, 3, 4)), b, np.empty((1, 3, 3, 4)), 1, 1, 0, 0, 1)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        conv.conv2d_forward(x, w, b, np.empty((2, 3, 3, 4)), 1, 1, 0, 0, 1)
    with pytest.raises(ValueError, match="bad geometry"):
        conv.conv2d_forward(x, w, b, np.empty((1, 3, 3, 4)), 0, 1, 0, 0, 1)
    with pytest.raises(ValueError, match="dx .* must have the shape of x"):
        conv.conv2d_backward(np.ones((1, 3, 3, 4)), x, w, np.empty((1, 5, 4, 2)),
                             np.empty_like(w), np.empty(4), 1, 1, 0, 0, 1)


# -- PyTorch, when installed --------------------------------------------------------------------
@pytest.mark.parametrize("shape, wshape, strides, padding", [
    ((2, 9, 8, 3), (3, 3, 3, 5), 1, "valid"),
    ((2, 9, 8, 3), (4, 2, 3, 5), (1, 2), "same"),   # pads (1, 2) rows and (0, 0)/(0, 1) cols
    ((1, 11, 11, 2), (5, 5, 2, 3), 3, "full"),
    ((3, 7, 10, 4), (2, 3, 4, 2), (2, 1), ((0, 2), (1, 0))),
])
def test_matches_torch(shape, wshape, strides, padding):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as TF
    from cytorch._shapes import as_pair, resolve_padding
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal(shape), rng.standard_normal(wshape)
    b = rng.standard_normal(wshape[3])
    out, dx, dw, db = run(x, w, b, strides, padding)
    sh, sw = as_pair(strides, "strides")
    pt, pb, pl, pr = resolve_padding(padding, shape[1], shape[2], wshape[0], wshape[1], sh, sw)
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    wt = torch.tensor(w.transpose(3, 2, 0, 1), requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    yt = TF.conv2d(TF.pad(xt, (pl, pr, pt, pb)), wt, bt, stride=(sh, sw))
    dout = np.random.default_rng(1).standard_normal(out.shape)  # the one run() used
    yt.backward(torch.tensor(dout.transpose(0, 3, 1, 2)))
    assert relative_error(out, yt.detach().numpy().transpose(0, 2, 3, 1)) < 1e-12
    assert relative_error(dx, xt.grad.numpy().transpose(0, 2, 3, 1)) < 1e-12
    assert relative_error(dw, wt.grad.numpy().transpose(2, 3, 1, 0)) < 1e-12
    assert relative_error(db, bt.grad.numpy()) < 1e-12


def test_repeated_runs_are_bit_identical():
    # partial dW/db sums are per work unit and added in order, whichever thread ran what
    rng = np.random.default_rng(11)
    x = rng.standard_normal((13, 12, 12, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 8)).astype(np.float32)
    first = run(x, w, np.zeros(8, np.float32))
    for _ in range(3):
        for a, b in zip(first, run(x, w, np.zeros(8, np.float32))):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("C", [1, 2, 3, 4])
@pytest.mark.parametrize("strides", [1, (1, 2), (2, 1), 3])
@pytest.mark.parametrize("padding", ["valid", "same", ((0, 1), (2, 1))])
def test_col2im_paths_for_thin_and_wide_channels(C, strides, padding):
    # col2im adds spans, gathers (1-3 channels, stride 1) or walks positions (thin, strided);
    # 9 filters keep these shapes on the im2col + GEMM path
    rng = np.random.default_rng(C)
    x = rng.standard_normal((2, 9, 11, C))
    w = rng.standard_normal((3, 4, C, 9))
    out, _ = F.conv2d_forward(x, w, None, strides, padding)
    assert not direct_path(x, w, out, strides)
    assert_twins_agree(x, w, None, strides, padding, np.float64)


# -- the direct path (thin layers, stride 1) ------------------------------------------------------
def direct_path(x, w, out, strides):
    from cytorch._shapes import as_pair
    return cytorch._kernels.load("_direct").uses_direct_path(
        x.shape, w.shape, out.shape, as_pair(strides, "strides"), out.dtype)


@pytest.mark.parametrize("C, K, strides, dtype, direct", [
    (1, 4, 1, np.float32, True), (3, 4, 1, np.float32, True), (9, 2, 1, np.float32, True),
    (1, 6, 1, np.float32, False), (1, 5, 1, np.float32, False), (5, 4, 1, np.float32, False),
    (1, 4, (1, 2), np.float32, False), (1, 4, (2, 1), np.float32, False),
    (1, 2, 1, np.float64, True), (4, 2, 1, np.float64, True), (1, 3, 1, np.float64, False),
    (5, 2, 1, np.float64, False)])
def test_direct_path_rule(C, K, strides, dtype, direct):
    # the thinnest layers (at most 16 bytes of filters per pixel, C * K at most 18 numbers in
    # float32, 9 in float64) run the direct path; more filters (LeNet's first layer, 1 -> 6,
    # runs the blocked path), more channels or a stride do not
    x, w = np.ones((1, 8, 8, C), dtype), np.ones((3, 3, C, K), dtype)
    out, _ = F.conv2d_forward(x, w, None, strides)
    assert direct_path(x, w, out, strides) == direct
    if not direct and strides == 1:
        assert F._conv_fast_path(x, w, out, (1, 1), (1, 1)) != "_direct"


def test_thin_layer_the_blocked_path_turns_down_runs_the_direct_path():
    # 400x400 images, 11x11 kernels, 5 filters: more than the blocked path's memory budget,
    # within the direct path's (the shapes only: nothing is computed on them)
    x, w = np.empty((1, 400, 400, 1), np.float32), np.empty((11, 11, 1, 5), np.float32)
    out = np.empty((1, 390, 390, 5), np.float32)
    blocked = cytorch._kernels.load("_blocked")
    assert not blocked.uses_blocked_path(x.shape, w.shape, out.shape, (1, 1), x.dtype)
    assert not direct_path(x, w, out, 1)
    assert F._conv_fast_path(x, w, out, (1, 1), (1, 1)) == "_direct"
    # (tests/test_fast_paths.py holds the direct path to its twin on every shape it fits)


# -- backward runs the path its forward pass ran ---------------------------------------------------
PATH_SHAPES = {   # (x, w, strides): one conv of each compiled path
    "_direct": ((2, 9, 9, 1), (3, 3, 1, 4), 1), "_blocked": ((2, 14, 14, 6), (5, 5, 6, 16), 1),
    "_winograd": ((2, 20, 20, 32), (3, 3, 32, 32), 1), "_conv": ((2, 9, 9, 3), (3, 3, 3, 8), 2)}


def test_the_forward_cache_names_the_path_and_backward_runs_it(monkeypatch):
    # each forward keeps the module it ran in its cache; backward asks no rule again, and the
    # path of one forward never leaks into another's backward (shapes changed in between)
    rng = np.random.default_rng(0)
    runs = []
    for name in F._CONV_PATHS:
        module = cytorch._kernels.load(name)
        for fn in ("conv2d_forward", "conv2d_backward"):
            real = getattr(module, fn)
            monkeypatch.setattr(module, fn,
                                lambda *a, _real=real, _key=(name, fn), **k:
                                (runs.append(_key), _real(*a, **k))[1])
    caches, shapes = {}, {}
    for name, (x_shape, w_shape, s) in PATH_SHAPES.items():
        x = rng.standard_normal(x_shape).astype(np.float32)
        w = rng.standard_normal(w_shape).astype(np.float32)
        out, caches[name] = F.conv2d_forward(x, w, np.zeros(w_shape[3], np.float32), s, "same")
        shapes[name] = out.shape
        assert caches[name]["path"] == name
        assert F._conv_path(x, w, out, caches[name]["strides"], (1, 1)) == name
    asked = []
    monkeypatch.setattr(F, "_conv_fast_path", lambda *a: asked.append(a))
    runs.clear()
    for name in reversed(list(PATH_SHAPES)):
        F.conv2d_backward(np.ones(shapes[name], np.float32), caches[name])
    assert runs == [(name, "conv2d_backward") for name in reversed(list(PATH_SHAPES))]
    assert asked == []


@pytest.mark.parametrize("path", [None, "_pool", "unknown", 3])
def test_a_cache_without_a_known_path_asks_the_rules(path):
    # the twin's cache has path None; a hand-made one may hold anything: the rules decide, and
    # the gradients are those of the forward's own cache
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 14, 14, 6)).astype(np.float32)
    w = rng.standard_normal((5, 5, 6, 16)).astype(np.float32)
    out, cache = F.conv2d_forward(x, w, np.ones(16, np.float32))
    dout = rng.standard_normal(out.shape).astype(np.float32)
    want = F.conv2d_backward(dout, cache)
    with cytorch.backend("reference"):
        assert F.conv2d_forward(x, w, np.ones(16, np.float32))[1]["path"] is None
    got = F.conv2d_backward(dout, {**cache, "path": path})
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)


@settings(max_examples=60, deadline=None)
@given(N=st.integers(1, 3), H=st.integers(1, 12), W=st.integers(1, 12), C=st.integers(1, 3),
       K=st.integers(1, 8), kh=st.integers(1, 6), kw=st.integers(1, 6), padding=PADDINGS,
       bias=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2 ** 16))
def test_direct_path_matches_twin(N, H, W, C, K, kh, kw, padding, bias, dtype, seed):
    # output rows whose lane count is not a whole number of vectors, kernels taller or wider
    # than the image, padding larger than the kernel (dx then crops instead of padding)
    drawn = random_conv_operands(N, H, W, C, K, kh, kw, 1, padding, dtype, seed)
    if drawn is None:
        return
    x, w, rng = drawn
    b = rng.standard_normal(K).astype(dtype) if bias else None
    out, _ = F.conv2d_forward(x, w, b, 1, padding)
    if C * K <= (18 if dtype == np.float32 else 9) and K <= (4 if dtype == np.float32 else 2):
        assert direct_path(x, w, out, 1)
    assert_twins_agree(x, w, b, 1, padding, dtype)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_direct_path_threads_agree(threads):
    rng = np.random.default_rng(threads)
    x = rng.standard_normal((7, 28, 28, 1)).astype(np.float32)
    w = rng.standard_normal((5, 5, 1, 6)).astype(np.float32)
    cytorch.set_num_threads(threads)
    try:
        assert_twins_agree(x, w, np.ones(6, np.float32), 1, "valid", np.float32)
    finally:
        cytorch.set_num_threads(None)


# -- skipping dx ----------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["compiled", "reference"])
@pytest.mark.parametrize("wshape, strides", [((5, 5, 1, 6), 1), ((3, 3, 2, 16), 1),
                                             ((3, 2, 1, 4), 2)])
def test_need_dx_false_skips_dx_only(backend, wshape, strides):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 12, 12, wshape[2]))
    w = rng.standard_normal(wshape)
    with cytorch.backend(backend):
        out, cache = F.conv2d_forward(x, w, np.zeros(wshape[3]), strides)
        dout = rng.standard_normal(out.shape)
        dx, dw, db = F.conv2d_backward(dout, cache)
        none, dw2, db2 = F.conv2d_backward(dout, cache, need_dx=False)
    assert none is None and dx.shape == x.shape
    np.testing.assert_array_equal(dw2, dw)
    np.testing.assert_array_equal(db2, db)


def test_first_conv_layer_of_a_model_skips_dx(monkeypatch):
    # the model input needs no gradient: the first Conv2D is asked for none, the second is
    from cytorch import layers as L
    from cytorch.graph import Sequential
    calls = []
    backward = F.conv2d_backward

    def spy(dout, cache, need_dx=True, **kwargs):
        calls.append(need_dx)
        return backward(dout, cache, need_dx=need_dx, **kwargs)
    monkeypatch.setattr(F, "conv2d_backward", spy)
    model = Sequential([L.Conv2D(2, 3), L.Conv2D(3, 3)])
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 1)).astype(np.float32)
    model._ensure_built(x)
    contexts = model._contexts(training=True)
    model._forward([x], training=True, contexts=contexts)
    model._backward(np.ones((2, 4, 4, 3), np.float32), contexts)
    assert calls == [True, False]
    assert [c.input_grad for c in contexts] == [False, True]
    # nothing was set on the layer: called on its own, it returns dx
    assert model.layers[0].backward(np.ones((2, 6, 6, 2), np.float32)).shape == x.shape
    assert model.layers[0].grads["kernel"].shape == (3, 3, 1, 2)


@pytest.mark.parametrize("fn", [reference.im2col, reference.conv2d_forward, reference.conv2d_naive,
                                F.conv2d_forward, F.conv2d_backward])
def test_docstring_examples(fn):
    import doctest
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    tests = doctest.DocTestFinder().find(fn, globs=dict(fn.__globals__))
    assert tests and tests[0].examples, f"{fn.__name__} has no example"
    for test in tests:
        runner.run(test)
    assert runner.failures == 0
