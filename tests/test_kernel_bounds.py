"""Out-of-bounds safety of the compiled kernels, called directly on extreme but legal shapes.

Every array a kernel touches lives in the middle of a larger buffer:

* the guards around an *input* hold NaN, so a read past its ends turns up as NaN in the
  results, which are compared with the NumPy twins;
* the guards around an *output* hold a sentinel, so a write past its ends changes it.  The
  float sentinel is -0.0: even a stray ``+= 0`` (which leaves every number right) turns it
  into +0.0, and the sign bit shows it.

The shapes are the corners of the geometry: 1x1 images, a window as large as the padded
input, strides larger than the window, padding much larger than the image (windows entirely
in the padding), odd ``"same"`` splits, N = 1 and C = 1.  A build with
``CYTORCH_DEBUG_CYTHON=1`` (or with AddressSanitizer) runs the same file; this one runs on the
normal build, where the guards are the only check.
"""
import contextlib
import math

import numpy as np
import pytest
from hypothesis import assume, example, given, settings, strategies as st

from cytorch import reference
from cytorch._kernels import EPILOGUES, ISA_MODULES, load
from cytorch._shapes import resolve_padding

GUARD = 32                        # elements of guard on each side of every array
SENTINEL = {"f": -0.0, "i": -7, "u": 77}
SETTINGS = settings(max_examples=120, deadline=None, derandomize=True)


class Guarded:
    """An array of ``shape`` in the middle of a buffer whose guards hold ``fill``."""

    def __init__(self, shape, dtype, fill, values=None):
        self.size = math.prod(shape)
        self.fill = fill
        self.buffer = np.full(self.size + 2 * GUARD, fill, dtype=dtype)
        self.array = self.buffer[GUARD:GUARD + self.size].reshape(shape)
        if values is not None:
            self.array[...] = values

    def assert_guards_intact(self, what):
        guards = np.concatenate([self.buffer[:GUARD], self.buffer[GUARD + self.size:]])
        if np.isnan(self.fill):
            same = np.isnan(guards)
        else:   # equal and of the same sign: -0.0 == +0.0 in IEEE arithmetic
            same = (guards == self.fill) & (np.signbit(guards) == np.signbit(self.fill))
        assert same.all(), f"{what}: written out of bounds"


def guarded_input(values):
    """``values`` with NaN guards (reading past an end poisons the result)."""
    return Guarded(values.shape, values.dtype, np.nan, values).array


def guarded_output(shape, dtype):
    return Guarded(shape, dtype, SENTINEL[np.dtype(dtype).kind])


def assert_close(got, want, what):
    assert got.shape == want.shape, what
    assert np.isfinite(got).all(), f"{what}: read out of bounds (NaN from a guard)"
    tol = 1e-12 if got.dtype == np.float64 else 1e-4
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=what)


# -- geometries ---------------------------------------------------------------------------------
PADDINGS = st.one_of(
    st.sampled_from(["valid", "same", "full"]),
    st.integers(0, 9),                                              # up to 9x a 1x1 image
    st.tuples(st.tuples(st.integers(0, 9), st.integers(0, 9)),
              st.tuples(st.integers(0, 9), st.integers(0, 9))))


@st.composite
def geometries(draw, window_inside_padding=False, stride_one=False, window=None):
    """``(x_shape, (kh, kw), (sh, sw), pads)`` with an output of at least 1x1.

    ``window_inside_padding``: every pad smaller than the window, as pooling requires;
    ``stride_one``: strides (1, 1), as conv2d's direct path requires; ``window``: this
    ``(kh, kw)`` only (Winograd's 3x3)."""
    N, H, W, C = (draw(st.integers(1, 3)), draw(st.integers(1, 7)), draw(st.integers(1, 7)),
                  draw(st.integers(1, 4)))
    kh, kw = window or (draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    stride = st.just(1) if stride_one else st.one_of(st.just(1), st.integers(1, 12))
    sh, sw = draw(stride), draw(stride)
    pads = resolve_padding(draw(PADDINGS), H, W, kh, kw, sh, sw)
    pt, pb, pl, pr = pads
    assume(H + pt + pb >= kh and W + pl + pr >= kw)
    if window_inside_padding:
        assume(max(pt, pb) < kh and max(pl, pr) < kw)
    return (N, H, W, C), (kh, kw), (sh, sw), pads


def out_hw(x_shape, window, strides, pads):
    (_, H, W, _), (kh, kw), (sh, sw), (pt, pb, pl, pr) = x_shape, window, strides, pads
    return (H + pt + pb - kh) // sh + 1, (W + pl + pr - kw) // sw + 1


# Explicit corners, as (x_shape, window, strides, pads).
CORNERS = [
    ((1, 1, 1, 1), (1, 1), (1, 1), (0, 0, 0, 0)),       # the smallest legal call
    ((1, 5, 4, 2), (5, 4), (1, 1), (0, 0, 0, 0)),       # window == input: one output
    ((2, 7, 7, 1), (2, 2), (5, 6), (0, 0, 0, 0)),       # stride > window: cells skipped
    ((1, 1, 1, 3), (1, 1), (1, 1), (9, 9, 9, 9)),       # 19x19 output, 1 real cell
    ((1, 2, 3, 1), (3, 3), (1, 1), (8, 0, 0, 8)),       # one-sided huge padding
    ((3, 6, 5, 2), (4, 3), (3, 2), (1, 2, 0, 1)),       # odd "same"-like split
    ((1, 3, 3, 1), (3, 3), (12, 12), (2, 2, 2, 2)),     # windows entirely in the padding
]
POOL_CORNERS = [c for c in CORNERS if max(c[3][:2]) < c[1][0] and max(c[3][2:]) < c[1][1]]


def with_corners(corners, **other_arguments):
    """Decorate a hypothesis test with every corner as an explicit example."""
    def decorate(test):
        for corner in corners:
            test = example(geometry=corner, **other_arguments)(test)
        return test
    return decorate


# -- conv2d -------------------------------------------------------------------------------------
# ``_conv`` is im2col + GEMM for any geometry (the direct path, ``_direct``, is tested below),
# with each fused activation: backward then also reads y, the forward output (NaN-guarded).
def twin_backward(dout, cache, y, backward=reference.conv2d_backward):
    """The twin's gradients (float64) through the activation at the kernel's own y (a value
    within rounding of relu's kink then takes the same side in both)."""
    if cache["activation"] != "linear":
        cache = {**cache, "y": y.astype(np.float64)}
    return backward(dout.astype(np.float64), cache)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2])
@SETTINGS
@given(geometry=geometries(), K=st.sampled_from([1, 2, 3, 4, 8, 9]), need_dx=st.booleans(),
       activation=st.sampled_from(EPILOGUES))
@with_corners(CORNERS, K=4, need_dx=True, activation=EPILOGUES[-1])
def test_conv2d_stays_in_bounds(dtype, threads, geometry, K, need_dx, activation):
    check_conv2d_in_bounds(dtype, threads, geometry, K, need_dx, activation)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2])
@settings(max_examples=40, deadline=None, derandomize=True)
@given(geometry=geometries(), K=st.sampled_from([1, 3, 8]), need_dx=st.booleans(),
       activation=st.sampled_from(EPILOGUES), budget=st.integers(1, 200))
@with_corners(CORNERS, K=3, need_dx=True, activation=EPILOGUES[-1], budget=1)
def test_conv2d_in_bands_stays_in_bounds(dtype, threads, geometry, K, need_dx, activation,
                                         budget):
    # an image larger than the band budget is unfolded, multiplied and folded back a band of
    # output rows at a time (AlexNet's first layer); a tiny budget sends these small shapes
    # through bands of one row and up
    old = load("_conv")._set_band_budget(budget)
    try:
        check_conv2d_in_bounds(dtype, threads, geometry, K, need_dx, activation)
    finally:
        load("_conv")._set_band_budget(old)


def check_conv2d_in_bounds(dtype, threads, geometry, K, need_dx, activation):
    """``_conv``'s forward and backward on guarded arrays, against the twin."""
    x_shape, (kh, kw), (sh, sw), pads = geometry
    N, H, W, C = x_shape
    rng = np.random.default_rng(0)
    x = guarded_input(rng.standard_normal(x_shape).astype(dtype))
    w = guarded_input(rng.standard_normal((kh, kw, C, K)).astype(dtype))
    b = guarded_input(rng.standard_normal(K).astype(dtype))
    H_out, W_out = out_hw(x_shape, (kh, kw), (sh, sw), pads)
    padding = (pads[:2], pads[2:])
    want_out, cache = reference.conv2d_forward(x.astype(np.float64), w.astype(np.float64),
                                               b.astype(np.float64), (sh, sw), padding,
                                               activation=activation)
    dout = guarded_input(rng.standard_normal(want_out.shape).astype(dtype))

    conv = load("_conv")
    out = guarded_output((N, H_out, W_out, K), dtype)
    conv.conv2d_forward(x, w, b, out.array, sh, sw, pads[0], pads[2], threads, 1, 1,
                        activation)
    out.assert_guards_intact("conv2d_forward out")
    assert_close(out.array, want_out, "conv2d_forward")

    y = guarded_input(out.array.copy())
    want_dx, want_dw, want_db = twin_backward(dout, cache, y)
    dx, dw = guarded_output(x_shape, dtype), guarded_output(w.shape, dtype)
    db = guarded_output((K,), dtype)
    conv.conv2d_backward(dout, x, w, dx.array if need_dx else None, dw.array, db.array, sh, sw,
                         pads[0], pads[2], threads, 1, 1, activation, y)
    results = [("dw", dw, want_dw), ("db", db, want_db)] + [("dx", dx, want_dx)] * need_dx
    for name, got, want in results:
        got.assert_guards_intact(f"conv2d_backward {name}")
        assert_close(got.array, want, f"conv2d_backward {name}")


@pytest.mark.parametrize("module", ["_conv", "_direct", "_winograd", "_blocked"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@SETTINGS
@given(N=st.integers(1, 3), H=st.integers(1, 5), W=st.integers(1, 5), C=st.integers(1, 3),
       K=st.sampled_from([1, 2, 4, 9]), kh=st.integers(1, 5), kw=st.integers(1, 5),
       sh=st.one_of(st.just(1), st.integers(1, 6)), sw=st.one_of(st.just(1), st.integers(1, 6)),
       pt=st.integers(0, 7), pl=st.integers(0, 7), H_out=st.integers(1, 7),
       W_out=st.integers(1, 7), threads=st.integers(1, 2))
def test_conv2d_any_geometry_its_entry_points_accept(module, dtype, N, H, W, C, K, kh, kw, sh,
                                                     sw, pt, pl, H_out, W_out, threads):
    """The entry points check that the arrays agree, not that ``out`` has the size the
    padding implies: any output size and top/left padding must read zeros past the image
    (the same numbers as a twin padded far enough), never memory outside x.  The direct and
    blocked paths (``_direct``, ``_blocked``) are stride 1 only, Winograd (``_winograd``) 3x3
    stride 1 only."""
    if module != "_conv":
        sh = sw = 1
    if module == "_winograd":
        kh = kw = 3
    rng = np.random.default_rng(0)
    x = guarded_input(rng.standard_normal((N, H, W, C)).astype(dtype))
    w = guarded_input(rng.standard_normal((kh, kw, C, K)).astype(dtype))
    b = guarded_input(rng.standard_normal(K).astype(dtype))
    dout = guarded_input(rng.standard_normal((N, H_out, W_out, K)).astype(dtype))
    # the twin, padded at the bottom and right until its output covers H_out x W_out
    pb = max((H_out - 1) * sh + kh - H - pt, 0)
    pr = max((W_out - 1) * sw + kw - W - pl, 0)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    full, cache = reference.conv2d_forward(x64, w64, b.astype(np.float64), (sh, sw),
                                           ((pt, pb), (pl, pr)))
    dout_full = np.zeros(full.shape)
    dout_full[:, :H_out, :W_out] = dout
    want_dx, want_dw, want_db = reference.conv2d_backward(dout_full, cache)

    kernel = load(module)
    geometry = (sh, sw, pt, pl) if module == "_conv" else (pt, pl)
    out = guarded_output((N, H_out, W_out, K), dtype)
    kernel.conv2d_forward(x, w, b, out.array, *geometry, threads)
    out.assert_guards_intact("conv2d_forward out")
    assert_close(out.array, full[:, :H_out, :W_out], "conv2d_forward")
    dx, dw = guarded_output(x.shape, dtype), guarded_output(w.shape, dtype)
    db = guarded_output((K,), dtype)
    kernel.conv2d_backward(dout, x, w, dx.array, dw.array, db.array, *geometry, threads)
    for name, got, want in (("dx", dx, want_dx), ("dw", dw, want_dw), ("db", db, want_db)):
        got.assert_guards_intact(f"conv2d_backward {name}")
        assert_close(got.array, want, f"conv2d_backward {name}")


# Dilated kernels (``_conv``'s tap-by-tap unfold): windows that reach far past the image.
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@SETTINGS
@given(x_shape=st.tuples(st.integers(1, 3), st.integers(1, 7), st.integers(1, 7),
                         st.integers(1, 4)),
       kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       dilation=st.tuples(st.integers(1, 5), st.integers(1, 5)),
       strides=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       pads=st.tuples(st.integers(0, 9), st.integers(0, 9), st.integers(0, 9),
                      st.integers(0, 9)),
       K=st.sampled_from([1, 3, 9]), threads=st.integers(1, 2))
def test_dilated_conv2d_stays_in_bounds(dtype, x_shape, kernel, dilation, strides, pads, K,
                                        threads):
    (N, H, W, C), (kh, kw), (dh, dw), (sh, sw), (pt, pb, pl, pr) = \
        x_shape, kernel, dilation, strides, pads
    extent = ((kh - 1) * dh + 1, (kw - 1) * dw + 1)
    assume(H + pt + pb >= extent[0] and W + pl + pr >= extent[1])
    H_out, W_out = out_hw(x_shape, extent, strides, pads)
    rng = np.random.default_rng(0)
    x = guarded_input(rng.standard_normal(x_shape).astype(dtype))
    w = guarded_input(rng.standard_normal((kh, kw, C, K)).astype(dtype))
    b = guarded_input(rng.standard_normal(K).astype(dtype))
    want_out, cache = reference.conv2d_forward(x.astype(np.float64), w.astype(np.float64),
                                               b.astype(np.float64), strides,
                                               ((pt, pb), (pl, pr)), dilation)
    dout = guarded_input(rng.standard_normal(want_out.shape).astype(dtype))
    want = reference.conv2d_backward(dout.astype(np.float64), cache)
    conv = load("_conv")
    out = guarded_output((N, H_out, W_out, K), dtype)
    dx, dw_ = guarded_output(x_shape, dtype), guarded_output(w.shape, dtype)
    db = guarded_output((K,), dtype)
    conv.conv2d_forward(x, w, b, out.array, sh, sw, pt, pl, threads, dh, dw)
    conv.conv2d_backward(dout, x, w, dx.array, dw_.array, db.array, sh, sw, pt, pl, threads,
                         dh, dw)
    for name, got, r in (("out", out, want_out), ("dx", dx, want[0]), ("dw", dw_, want[1]),
                         ("db", db, want[2])):
        got.assert_guards_intact(f"dilated conv2d {name}")
        assert_close(got.array, r, f"dilated conv2d {name}")


@pytest.mark.parametrize("call", [
    lambda x, w, b, out: load("_conv").conv2d_forward(x, w, b, out, 1, 1, 0, 0, 1, 0, 1),
    lambda x, w, b, out: load("_conv").conv2d_forward(x, w, b, out, 1, 1, 0, 0, 1, 1, -2),
    lambda x, w, b, out: load("_direct").conv2d_forward(x, w, b, out, -1, 0, 1),
    lambda x, w, b, out: load("_direct").conv2d_forward(x, w, b[:1], out, 0, 0, 1),
    lambda x, w, b, out: load("_blocked").conv2d_forward(x, w, b, out, 0, -1, 1),
    lambda x, w, b, out: load("_blocked").conv2d_forward(x[:, :, :, :0], w, b, out, 0, 0, 1),
    lambda x, w, b, out: load("_winograd").conv2d_forward(x, w, b, out, 0, -1, 1),
    lambda x, w, b, out: load("_winograd").conv2d_forward(x, w, b, out, 0, 0, 1),  # 2x2 w
    lambda x, w, b, out: load("_winograd").conv2d_forward(x[..., :0], w, b, out, 0, 0, 1),
])
def test_conv2d_kernels_refuse_a_bad_geometry(call):
    x, w, b = np.ones((1, 4, 4, 1)), np.ones((2, 2, 1, 2)), np.zeros(2)
    with pytest.raises(ValueError, match=r"conv2d kernel: (bad geometry|inconsistent shapes)"):
        call(x, w, b, np.empty((1, 3, 3, 2)))


# The direct path (``_direct.pyx``, stride 1), in every instruction-set variant this CPU runs:
# the variants read and write different block sizes (16 numbers a block down to one vector).
ISA_VARIANTS = load("_direct").isa_variants()


@contextlib.contextmanager
def running(variant):
    """Run the vector kernels in instruction-set variant ``variant``, then the best again."""
    for module in ISA_MODULES:
        load(module)._select_isa(variant)
    try:
        yield
    finally:
        for module in ISA_MODULES:
            load(module)._select_isa("best")


# The implicit-GEMM path of strided layers (``_conv`` with ``_strided.h``), forced for every
# geometry, in every instruction-set variant: forward tiles of every pixel width, filter panels
# with tails (K around the vector widths: tiles stored into a scratch tile and copied), the
# phase-planar copy of an image whose windows reach far into the padding, dW read from x itself
# ("valid") or from its zero-padded copy, dx in bands.
@pytest.mark.parametrize("isa_variant", ISA_VARIANTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=60, deadline=None, derandomize=True)
@given(geometry=geometries(), K=st.sampled_from([1, 3, 8, 9, 16, 17, 33]),
       need_dx=st.booleans(), threads=st.integers(1, 2), activation=st.sampled_from(EPILOGUES),
       budget=st.sampled_from([1, 50, 1 << 19]))
@with_corners(CORNERS, K=17, need_dx=True, threads=2, activation="relu", budget=1)
@example(geometry=((2, 27, 31, 3), (11, 11), (4, 4), (0, 0, 0, 0)), K=33, need_dx=True,
         threads=2, activation="linear", budget=1 << 19)
def test_strided_conv2d_stays_in_bounds(isa_variant, dtype, geometry, K, need_dx, threads,
                                        activation, budget):
    conv = load("_conv")
    old_mode, old_budget = conv._set_strided_mode("always"), conv._set_band_budget(budget)
    try:
        with running(isa_variant):
            check_conv2d_in_bounds(dtype, threads, geometry, K, need_dx, activation)
    finally:
        conv._set_strided_mode(old_mode)
        conv._set_band_budget(old_budget)


def assert_stride_one_conv2d_in_bounds(module, isa_variant, dtype, geometry, K, need_dx,
                                       threads, activation, twin="shift_add"):
    """Forward + backward of a stride-1 fast path (``_direct`` and ``_blocked``, whose twins are
    ``reference.conv2d_shift_add_*``, or ``_winograd`` with ``twin="winograd"``) on guarded
    arrays, in ``isa_variant``: every guard intact, every result its twin's."""
    x_shape, (kh, kw), _, pads = geometry
    N, H, W, C = x_shape
    rng = np.random.default_rng(0)
    x = guarded_input(rng.standard_normal(x_shape).astype(dtype))
    w = guarded_input(rng.standard_normal((kh, kw, C, K)).astype(dtype))
    b = guarded_input(rng.standard_normal(K).astype(dtype))
    H_out, W_out = out_hw(x_shape, (kh, kw), (1, 1), pads)
    padding = (pads[:2], pads[2:])
    want_out, cache = getattr(reference, f"conv2d_{twin}_forward")(
        x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), padding, activation)
    dout = guarded_input(rng.standard_normal(want_out.shape).astype(dtype))
    kernel, name = load(module), module.lstrip("_")
    out = guarded_output((N, H_out, W_out, K), dtype)
    dx, dw = guarded_output(x_shape, dtype), guarded_output(w.shape, dtype)
    db = guarded_output((K,), dtype)
    with running(isa_variant):
        kernel.conv2d_forward(x, w, b, out.array, pads[0], pads[2], threads, activation)
        y = guarded_input(out.array.copy())
        kernel.conv2d_backward(dout, x, w, dx.array if need_dx else None, dw.array, db.array,
                               pads[0], pads[2], threads, activation, y)
    out.assert_guards_intact(f"{name} conv2d_forward out")
    assert_close(out.array, want_out, f"{name} conv2d_forward")
    want_dx, want_dw, want_db = twin_backward(dout, cache, y,
                                              getattr(reference, f"conv2d_{twin}_backward"))
    results = [("dw", dw, want_dw), ("db", db, want_db)] + [("dx", dx, want_dx)] * need_dx
    for what, got, want in results:
        got.assert_guards_intact(f"{name} conv2d_backward {what}")
        assert_close(got.array, want, f"{name} conv2d_backward {what}")


@pytest.mark.parametrize("isa_variant", ISA_VARIANTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@SETTINGS
@given(geometry=geometries(stride_one=True), K=st.sampled_from([1, 2, 3, 4, 6, 8, 9]),
       need_dx=st.booleans(), threads=st.integers(1, 2), activation=st.sampled_from(EPILOGUES))
@with_corners([c for c in CORNERS if c[2] == (1, 1)], K=6, need_dx=True, threads=2,
              activation=EPILOGUES[-1])
def test_direct_conv2d_stays_in_bounds(isa_variant, dtype, geometry, K, need_dx, threads,
                                       activation):
    assert_stride_one_conv2d_in_bounds("_direct", isa_variant, dtype, geometry, K, need_dx,
                                       threads, activation)


# The blocked path (``_blocked.pyx``, stride 1): tiles of every size, filters padded to whole
# vectors (K = 17, 33), more channels than a dx tile (geometries draw C up to 4; the example
# has 7).
@pytest.mark.parametrize("isa_variant", ISA_VARIANTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@SETTINGS
@given(geometry=geometries(stride_one=True),
       K=st.sampled_from([1, 5, 8, 10, 16, 17, 18, 20, 24, 33, 36, 40]), need_dx=st.booleans(),
       threads=st.integers(1, 2), activation=st.sampled_from(EPILOGUES))
@with_corners([c for c in CORNERS if c[2] == (1, 1)], K=17, need_dx=True, threads=2,
              activation=EPILOGUES[-1])
@example(geometry=((2, 5, 9, 7), (3, 4), (1, 1), (1, 0, 2, 1)), K=17, need_dx=True, threads=2,
         activation="tanh")
# avx512's dx tiles of 4 and 3 vectors (LeNet c2: 10 x 10 pixels in 7 vectors) and of 4 and
# 2 (8 x 12 pixels in 6); LeNet c2's forward in tiles of two whole rows (one vector of filters)
@example(geometry=((2, 14, 14, 6), (5, 5), (1, 1), (0, 0, 0, 0)), K=16, need_dx=True, threads=2,
         activation="linear")
@example(geometry=((1, 12, 16, 3), (5, 5), (1, 1), (0, 0, 0, 0)), K=16, need_dx=True, threads=1,
         activation="relu")
# two-row forward tiles with filters padded to a vector (K = 5): the last two rows, whose last
# vector would reach past the output, go through one-row tiles (avx512 and avx2: rows 6 wide)
@example(geometry=((2, 8, 8, 3), (3, 3), (1, 1), (0, 0, 0, 0)), K=5, need_dx=True, threads=1,
         activation="linear")
# keras_mnist's layers ("valid", so no padded copy of the image; K = 10 and 20 filters, so
# tiles store whole vectors across pixels and dW reads dout in place but for its last row),
# and outputs too small for that (1 pixel, 1 filter: every row is copied)
@example(geometry=((2, 9, 8, 1), (5, 5), (1, 1), (0, 0, 0, 0)), K=10, need_dx=False, threads=2,
         activation="linear")
@example(geometry=((2, 8, 9, 10), (5, 5), (1, 1), (0, 0, 0, 0)), K=20, need_dx=True, threads=1,
         activation="relu")
@example(geometry=((2, 5, 5, 1), (5, 5), (1, 1), (0, 0, 0, 0)), K=1, need_dx=True, threads=2,
         activation="linear")
@example(geometry=((1, 6, 5, 2), (5, 5), (1, 1), (0, 0, 0, 0)), K=3, need_dx=True, threads=1,
         activation="linear")
# channels in whole blocks of the layout copies' transposes (8 floats, 4 doubles) and past them
@example(geometry=((2, 7, 9, 10), (3, 3), (1, 1), (1, 1, 2, 0)), K=20, need_dx=True, threads=2,
         activation="linear")
# forward tiles whose last vector G pixels share (fwdr: K = 20, 36, 24, 18 over the variants),
# a vector read past each group's G numbers; rows of 7 (a tail of 1 or 3 pixels), of 4 (two-row
# tiles on avx512), one row
@example(geometry=((2, 9, 9, 3), (3, 3), (1, 1), (0, 0, 0, 0)), K=20, need_dx=False, threads=2,
         activation="linear")
@example(geometry=((1, 5, 6, 2), (3, 3), (1, 1), (0, 0, 0, 0)), K=36, need_dx=False, threads=1,
         activation="linear")
@example(geometry=((1, 3, 9, 1), (3, 3), (1, 1), (0, 0, 0, 0)), K=24, need_dx=True, threads=1,
         activation="relu")
@example(geometry=((2, 6, 10, 2), (3, 3), (1, 1), (1, 0, 1, 1)), K=18, need_dx=False, threads=2,
         activation="linear")
# forward tiles with the pixels in the lanes (fwdp: rows of whole vectors, on avx2 and the
# default variant): keras_mnist c2 (rows of one vector of floats: tiles of 3, 3 and 2 rows),
# c1 (one channel, no padding: the image read in place up to its last number), rows of 2 and
# 5 vectors with padding, fewer filters than a tile's 4
@example(geometry=((2, 12, 12, 10), (5, 5), (1, 1), (0, 0, 0, 0)), K=20, need_dx=False,
         threads=2, activation="relu")
@example(geometry=((2, 28, 28, 1), (5, 5), (1, 1), (0, 0, 0, 0)), K=10, need_dx=False,
         threads=1, activation="linear")
@example(geometry=((1, 4, 18, 2), (3, 3), (1, 1), (0, 0, 0, 0)), K=5, need_dx=False,
         threads=1, activation="linear")
@example(geometry=((1, 6, 40, 3), (5, 5), (1, 1), (2, 2, 2, 2)), K=3, need_dx=False,
         threads=1, activation="relu")
# dW with the taps in the lanes (dwp, avx2 and default): keras_mnist c2 (50 taps a kernel
# row in 7 vectors, the last reading 6 past the image: the next image's numbers, or the room
# of the padded copy after the last image), a padded image, 9 taps in 2 vectors (3 filters)
@example(geometry=((2, 12, 12, 10), (5, 5), (1, 1), (0, 0, 0, 0)), K=20, need_dx=True,
         threads=2, activation="relu")
@example(geometry=((3, 6, 7, 3), (3, 3), (1, 1), (1, 1, 0, 2)), K=5, need_dx=False,
         threads=1, activation="linear")
@example(geometry=((1, 6, 7, 3), (3, 3), (1, 1), (0, 0, 0, 0)), K=3, need_dx=False,
         threads=1, activation="linear")
def test_blocked_conv2d_stays_in_bounds(isa_variant, dtype, geometry, K, need_dx, threads,
                                        activation):
    assert_stride_one_conv2d_in_bounds("_blocked", isa_variant, dtype, geometry, K, need_dx,
                                       threads, activation)


# The blocked path's fused inference kernel (``conv2d_max_pool2d_forward``: each image's conv
# output in a per-thread scratch, then 2x2 max pooling straight into out): odd conv outputs (a
# last row or column no window covers), windows deep in the padding, filters padded to whole
# vectors, keras_mnist's two layers.  (A NaN read from a guard into a window's later cell may
# lose to its first: the conv's reads are those ``test_blocked_conv2d_stays_in_bounds`` checks.)
@pytest.mark.parametrize("isa_variant", ISA_VARIANTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@SETTINGS
@given(geometry=geometries(stride_one=True), K=st.sampled_from([1, 5, 8, 10, 17, 20, 33]),
       threads=st.integers(1, 2), activation=st.sampled_from(EPILOGUES))
@with_corners([c for c in CORNERS if c[2] == (1, 1)], K=10, threads=2, activation="relu")
@example(geometry=((2, 28, 28, 1), (5, 5), (1, 1), (0, 0, 0, 0)), K=10, threads=2,
         activation="relu")
@example(geometry=((3, 12, 12, 10), (5, 5), (1, 1), (0, 0, 0, 0)), K=20, threads=2,
         activation="relu")
@example(geometry=((1, 9, 8, 3), (3, 2), (1, 1), (1, 1, 0, 2)), K=17, threads=1,
         activation="linear")
def test_blocked_conv2d_max_pool2d_stays_in_bounds(isa_variant, dtype, geometry, K, threads,
                                                   activation):
    x_shape, (kh, kw), _, pads = geometry
    N, H, W, C = x_shape
    H_out, W_out = out_hw(x_shape, (kh, kw), (1, 1), pads)
    assume(H_out >= 2 and W_out >= 2)
    rng = np.random.default_rng(0)
    x = guarded_input(rng.standard_normal(x_shape).astype(dtype))
    w = guarded_input(rng.standard_normal((kh, kw, C, K)).astype(dtype))
    b = guarded_input(rng.standard_normal(K).astype(dtype))
    want = reference.conv2d_max_pool2d_forward(
        x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
        padding=(pads[:2], pads[2:]), activation=activation)
    out = guarded_output((N, H_out // 2, W_out // 2, K), dtype)
    with running(isa_variant):
        load("_blocked").conv2d_max_pool2d_forward(x, w, b, out.array, H_out, W_out, pads[0],
                                                   pads[2], threads, activation)
    out.assert_guards_intact("blocked conv2d_max_pool2d_forward out")
    assert_close(out.array, want, "blocked conv2d_max_pool2d_forward")


# Winograd (``_winograd.pyx``, 3x3 stride 1) in every instruction-set variant and both tiles
# (F(2x2, 3x3) and F(4x4, 3x3): 4x4 and 6x6 input tiles): tiles past the ragged bottom and
# right edges, padding larger than the kernel (dx then crops: negative padding for the
# turned-around kernel), channel counts around the vector widths.  (The twin runs F(2x2, 3x3)
# for both: in float64 the tiles agree far inside assert_close's 1e-12.)
@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("isa_variant", ISA_VARIANTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@SETTINGS
@given(geometry=geometries(stride_one=True, window=(3, 3)),
       C=st.sampled_from([1, 2, 5, 8, 17]), K=st.sampled_from([1, 3, 4, 9, 16, 19]),
       need_dx=st.booleans(), threads=st.integers(1, 2), activation=st.sampled_from(EPILOGUES))
@with_corners([c for c in CORNERS if c[1] == (3, 3) and c[2] == (1, 1)], C=1, K=6,
              need_dx=True, threads=2, activation="relu")
def test_winograd_conv2d_stays_in_bounds(tile, isa_variant, dtype, geometry, C, K, need_dx,
                                         threads, activation):
    x_shape, window, strides, pads = geometry
    old = load("_winograd")._set_tile(tile)
    try:
        assert_stride_one_conv2d_in_bounds("_winograd", isa_variant, dtype,
                                           (x_shape[:3] + (C,), window, strides, pads), K,
                                           need_dx, threads, activation, twin="winograd")
    finally:
        load("_winograd")._set_tile(old)


# The depthwise kernel (``_depthwise.pyx``) in every instruction-set variant: any stride,
# dilation and padding (windows entirely in the padding, windows clipped on every side), lanes
# C * dm from 1 to 36 around the vector widths, and C = 8, 16, 32 with dm = 1, where the loops
# read x and write dx in place (no copy: the channels are whole vectors), windows of more than
# 9 taps (several tap tiles); each fused activation (backward then reads y, NaN-guarded).
@pytest.mark.parametrize("isa_variant", ISA_VARIANTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@SETTINGS
@given(geometry=geometries(), dm=st.sampled_from([1, 2, 3, 9]),
       dilation=st.tuples(st.integers(1, 3), st.integers(1, 3)), need_dx=st.booleans(),
       threads=st.integers(1, 2), channels=st.sampled_from([None, None, 8, 16, 32]),
       activation=st.sampled_from(EPILOGUES))
@with_corners(CORNERS, dm=2, dilation=(1, 1), need_dx=True, threads=2, channels=None,
              activation=EPILOGUES[-1])
@with_corners(CORNERS, dm=1, dilation=(2, 1), need_dx=True, threads=2, channels=16,
              activation="tanh")
def test_depthwise_conv2d_stays_in_bounds(isa_variant, dtype, geometry, dm, dilation, need_dx,
                                          threads, channels, activation):
    x_shape, (kh, kw), (sh, sw), pads = geometry
    if channels is not None:
        x_shape, dm = x_shape[:3] + (channels,), 1
    (N, H, W, C), (dh, dw) = x_shape, dilation
    ext_h, ext_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    assume(H + pads[0] + pads[1] >= ext_h and W + pads[2] + pads[3] >= ext_w)
    H_out, W_out = out_hw(x_shape, (ext_h, ext_w), (sh, sw), pads)
    rng = np.random.default_rng(0)
    x = guarded_input(rng.standard_normal(x_shape).astype(dtype))
    w = guarded_input(rng.standard_normal((kh, kw, C, dm)).astype(dtype))
    b = guarded_input(rng.standard_normal(C * dm).astype(dtype))
    dout = guarded_input(rng.standard_normal((N, H_out, W_out, C * dm)).astype(dtype))
    outs, caches = [], []                      # the one-channel conv2d twin, per channel
    for c in range(C):
        o, cache = reference.conv2d_forward(x[..., c:c + 1].astype(np.float64),
                                            w[:, :, c:c + 1].astype(np.float64), None,
                                            (sh, sw), (pads[:2], pads[2:]), dilation)
        outs.append(o)
        caches.append(cache)
    want_out = reference.conv2d_activate(np.concatenate(outs, axis=3) + b, activation)
    D = load("_depthwise")
    out = guarded_output((N, H_out, W_out, C * dm), dtype)
    dx, dw_ = guarded_output(x_shape, dtype), guarded_output(w.shape, dtype)
    db = guarded_output((C * dm,), dtype)
    with running(isa_variant):
        D.depthwise_conv2d_forward(x, w, b, out.array, sh, sw, pads[0], pads[2], threads, dh, dw,
                                   activation)
        y = guarded_input(out.array.copy())          # what the derivative reads, guarded too
        D.depthwise_conv2d_backward(dout, x, w, dx.array if need_dx else None, dw_.array,
                                    db.array, sh, sw, pads[0], pads[2], threads, dh, dw,
                                    activation, y)
    out.assert_guards_intact("depthwise forward out")
    assert_close(out.array, want_out, "depthwise forward")
    # the twin's gradients from dz = dout * f'(y) at the kernel's own y (a value within
    # rounding of a kink then takes the same side in both)
    dz = reference.conv2d_activation_backward(dout.astype(np.float64), y.astype(np.float64),
                                              activation)
    grads = [reference.conv2d_backward(dz[..., c * dm:(c + 1) * dm], caches[c])
             for c in range(C)]
    want_dx = np.concatenate([g[0] for g in grads], axis=3)
    want_dw = np.concatenate([g[1] for g in grads], axis=2)
    want_db = dz.reshape(-1, C * dm).sum(axis=0)
    results = [("dw", dw_, want_dw), ("db", db, want_db)] + [("dx", dx, want_dx)] * need_dx
    for name, got, r in results:
        got.assert_guards_intact(f"depthwise backward {name}")
        assert_close(got.array, r, f"depthwise backward {name}")


# The 2x2 fast path of pooling (``_pool2x2.h`` for max/min): rows of every length around the
# vector widths, C below and above 16 (the two row kernels), odd H and W.  The guards of x
# hold a value that would win (max: +1e30, min: -1e30; avg: NaN), so a read past either end
# shows in the output.
@pytest.mark.parametrize("isa_variant", ISA_VARIANTS)
@pytest.mark.parametrize("kind", ["max", "min", "avg"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@SETTINGS
@given(N=st.integers(1, 2), H=st.integers(2, 7), W=st.integers(2, 19), C=st.integers(1, 20),
       threads=st.integers(1, 2))
def test_pool2x2_stays_in_bounds(isa_variant, kind, dtype, N, H, W, C, threads):
    rng = np.random.default_rng(0)
    values = rng.integers(-2, 3, (N, H, W, C)).astype(dtype)
    fill = {"max": 1e30, "min": -1e30, "avg": np.nan}[kind]
    x = Guarded(values.shape, dtype, fill, values).array
    H_out, W_out = H // 2, W // 2
    want_out, cache = getattr(reference, f"{kind}_pool2d_2x2_forward")(values)
    dout = guarded_input(rng.standard_normal(want_out.shape).astype(dtype))
    want_dx = getattr(reference, f"{kind}_pool2d_2x2_backward")(dout.copy(), cache)
    P = load("_pool")
    out, dx = guarded_output(want_out.shape, dtype), guarded_output(values.shape, dtype)
    argidx = guarded_output(want_out.shape, np.int32)
    with running(isa_variant):
        if kind == "avg":
            P.avg_pool2d_forward(x, out.array, 2, 2, 2, 2, 0, 0, threads)
            P.avg_pool2d_backward(dout, dx.array, 2, 2, 2, 2, 0, 0, threads)
        else:
            P.extreme_pool2d_forward(x, out.array, argidx.array, 2, 2, 2, 2, 0, 0,
                                     kind == "min", threads)
            P.extreme_pool2d_backward(dout, argidx.array, dx.array, 2, 2, 2, 2, 0, threads,
                                      pl=0)
    if kind != "avg":
        argidx.assert_guards_intact(f"{kind} 2x2 argidx")
        np.testing.assert_array_equal(argidx.array, cache["argidx"])
    out.assert_guards_intact(f"{kind} 2x2 out")
    dx.assert_guards_intact(f"{kind} 2x2 dx")
    np.testing.assert_array_equal(out.array, want_out)
    np.testing.assert_array_equal(dx.array, want_dx)


# Inference (``argidx`` None): the row kernel ``cy_extreme_row_*`` reads each window's channels
# in vectors whose last one overlaps the one before (C = 1 to 40: the scalar loop, every vector
# width, partial vectors).  With ReLU the values are positive, so that a guard read by min
# pooling (-1e30) is not hidden by the ReLU's 0.
@pytest.mark.parametrize("isa_variant", ISA_VARIANTS)
@pytest.mark.parametrize("kind", ["max", "min"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@SETTINGS
@given(N=st.integers(1, 2), H=st.integers(2, 7), W=st.integers(2, 19), C=st.integers(1, 40),
       relu=st.booleans(), threads=st.integers(1, 2))
def test_pool2x2_without_winners_stays_in_bounds(isa_variant, kind, dtype, N, H, W, C, relu,
                                                 threads):
    rng = np.random.default_rng(0)
    values = rng.integers(1 if relu else -2, 4, (N, H, W, C)).astype(dtype)
    x = Guarded(values.shape, dtype, {"max": 1e30, "min": -1e30}[kind], values).array
    want, _ = getattr(reference, f"{kind}_pool2d_2x2_forward")(
        values, activation="relu" if relu else None, need_backward=False)
    out = guarded_output(want.shape, dtype)
    with running(isa_variant):
        load("_pool").extreme_pool2d_forward(x, out.array, None, 2, 2, 2, 2, 0, 0,
                                             kind == "min", threads, relu)
    out.assert_guards_intact(f"{kind} 2x2 out without winners")
    np.testing.assert_array_equal(out.array, want)


@pytest.mark.parametrize("kind", ["max", "min"])
@SETTINGS
@given(geometry=geometries(window_inside_padding=True), relu=st.booleans(),
       threads=st.integers(1, 2))
@with_corners(POOL_CORNERS, relu=True, threads=2)
def test_pool2d_without_winners_stays_in_bounds(kind, geometry, relu, threads):
    # the general path: the winners go to a scratch row per thread
    x_shape, (ph, pw), (sh, sw), pads = geometry
    rng = np.random.default_rng(0)
    x = guarded_input(rng.integers(-2, 3, x_shape).astype(np.float64))
    want, _ = getattr(reference, f"{kind}_pool2d_forward")(
        x, (ph, pw), (sh, sw), (pads[:2], pads[2:]), activation="relu" if relu else None)
    out = guarded_output(want.shape, np.float64)
    load("_pool").extreme_pool2d_forward(x, out.array, None, ph, pw, sh, sw, pads[0], pads[2],
                                         kind == "min", threads, relu)
    out.assert_guards_intact(f"{kind}_pool2d_forward out without winners")
    assert_close(out.array, want, f"{kind}_pool2d_forward without winners")


# -- windowed pooling ---------------------------------------------------------------------------
# Found by AddressSanitizer: on the GEMM path, stride-1 columns and C <= 3, a row without an
# interior window (kw > W) still ran the gathering col2im loop over kw - 1 columns, adding 0
# just past the end of dx (first case) or just before its start (second), or into the
# neighbouring image, which another thread may be writing.
@pytest.mark.parametrize("x_shape, K, kernel, strides, pads", [
    ((3, 4, 2, 2), 2, (2, 4), (2, 1), (1, 2, 1, 2)),
    ((1, 2, 1, 1), 9, (2, 3), (2, 1), (0, 0, 2, 0)),
])
def test_conv2d_backward_rows_without_an_interior_window(x_shape, K, kernel, strides, pads):
    rng = np.random.default_rng(0)
    (N, H, W, C), (kh, kw), (sh, sw), (pt, pb, pl, pr) = x_shape, kernel, strides, pads
    H_out, W_out = (H + pt + pb - kh) // sh + 1, (W + pl + pr - kw) // sw + 1
    x = guarded_input(rng.standard_normal(x_shape))
    w = guarded_input(rng.standard_normal((kh, kw, C, K)))
    dout = guarded_input(rng.standard_normal((N, H_out, W_out, K)))
    dx = guarded_output(x_shape, np.float64)
    load("_conv").conv2d_backward(dout, x, w, dx.array, np.empty_like(w), np.empty(K),
                                  sh, sw, pt, pl, 1)
    dx.assert_guards_intact("conv2d_backward dx")
    _, cache = reference.conv2d_forward(x, w, np.zeros(K), (sh, sw), ((pt, pb), (pl, pr)))
    assert_close(dx.array, reference.conv2d_backward(dout, cache)[0], "conv2d_backward dx")


@pytest.mark.parametrize("kind", ["max", "min", "avg"])
@SETTINGS
@given(geometry=geometries(window_inside_padding=True))
@with_corners(POOL_CORNERS)
def test_pool2d_stays_in_bounds(kind, geometry):
    x_shape, (ph, pw), (sh, sw), pads = geometry
    N, H, W, C = x_shape
    rng = np.random.default_rng(0)
    # integers make ties, so "the first winner" is exercised too
    x = guarded_input(rng.integers(-2, 3, x_shape).astype(np.float64))
    twin = getattr(reference, f"{kind}_pool2d_forward")
    want_out, cache = twin(x, (ph, pw), (sh, sw), (pads[:2], pads[2:]))
    dout = guarded_input(rng.standard_normal(want_out.shape))
    want_dx = getattr(reference, f"{kind}_pool2d_backward")(dout, cache)

    P = load("_pool")
    out = guarded_output(want_out.shape, np.float64)
    dx = guarded_output(x_shape, np.float64)
    if kind == "avg":
        P.avg_pool2d_forward(x, out.array, ph, pw, sh, sw, pads[0], pads[2], 2)
        P.avg_pool2d_backward(dout, dx.array, ph, pw, sh, sw, pads[0], pads[2], 2)
    else:
        argidx = guarded_output(want_out.shape, np.int32)
        P.extreme_pool2d_forward(x, out.array, argidx.array, ph, pw, sh, sw, pads[0], pads[2],
                                 kind == "min", 2)
        argidx.assert_guards_intact(f"{kind}_pool2d_forward argidx")
        np.testing.assert_array_equal(argidx.array, cache["argidx"])
        P.extreme_pool2d_backward(dout, argidx.array, dx.array, ph, pw, sh, sw, pads[0], 2)
    out.assert_guards_intact(f"{kind}_pool2d_forward out")
    dx.assert_guards_intact(f"{kind}_pool2d_backward dx")
    assert_close(out.array, want_out, f"{kind}_pool2d_forward")
    assert_close(dx.array, want_dx, f"{kind}_pool2d_backward")


@pytest.mark.parametrize("ph, pw, sh, sw, pt", [(0, 2, 2, 2, 0), (2, 2, 0, 2, 0),
                                                (2, 2, 2, -1, 0), (2, 2, 2, 2, 2)])
def test_pool2d_backward_kernel_refuses_a_bad_window(ph, pw, sh, sw, pt):
    with pytest.raises(ValueError, match=rf"bad window: pool \({ph}, {pw}\), strides "
                                         rf"\({sh}, {sw}\), pad top {pt}"):
        load("_pool").extreme_pool2d_backward(np.ones((1, 2, 2, 1)),
                                              np.zeros((1, 2, 2, 1), np.int32),
                                              np.empty((1, 4, 4, 1)), ph, pw, sh, sw, pt, 1)


# -- global pooling -----------------------------------------------------------------------------
# (channels: vectors of 4 to 16 in the variants and the scalar tails, C = 17 and 33)
@pytest.mark.parametrize("isa_variant", ISA_VARIANTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["max", "min", "avg"])
@pytest.mark.parametrize("x_shape", [(1, 1, 1, 1), (1, 1, 7, 1), (3, 5, 1, 2), (2, 4, 3, 5),
                                     (2, 3, 2, 17), (1, 2, 5, 33)])
def test_global_pool2d_stays_in_bounds(isa_variant, dtype, kind, x_shape):
    rng = np.random.default_rng(0)
    x = guarded_input(rng.integers(-2, 3, x_shape).astype(dtype))
    want_out, cache = getattr(reference, f"global_{kind}_pool2d_forward")(x)
    dout = guarded_input(rng.standard_normal(want_out.shape).astype(dtype))
    want_dx = getattr(reference, f"global_{kind}_pool2d_backward")(dout, cache)

    P = load("_pool")
    out = guarded_output(want_out.shape, dtype)
    dx = Guarded(x_shape, dtype, SENTINEL["f"], 0.0)   # the extreme kernels add into zeros
    with running(isa_variant):
        if kind == "avg":
            P.global_avg_pool2d_forward(x, out.array, 2)
            P.global_avg_pool2d_backward(dout, dx.array, 2)
        else:
            argidx = guarded_output(want_out.shape, np.int32)
            P.global_extreme_pool2d_forward(x, out.array, argidx.array, kind == "min", 2)
            argidx.assert_guards_intact(f"global_{kind}_pool2d_forward argidx")
            P.global_extreme_pool2d_backward(dout, argidx.array, dx.array, 2)
    out.assert_guards_intact(f"global_{kind}_pool2d_forward out")
    dx.assert_guards_intact(f"global_{kind}_pool2d_backward dx")
    assert_close(out.array, want_out, f"global_{kind}_pool2d_forward")
    assert_close(dx.array, want_dx, f"global_{kind}_pool2d_backward")


# -- dropout ------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 3, (1 << 14) - 1, (1 << 14) + 1, (1 << 16) + 3])
def test_dropout_stays_in_bounds(n):
    """Lengths around the kernel's chunk (2**14 units) and its threading threshold (2**16)."""
    x = guarded_input(np.random.default_rng(0).standard_normal(n))
    rate, seed = 0.3, 5
    want_out, cache = reference.dropout_forward(x, rate, seed)
    want_dx = reference.dropout_backward(x, cache)

    D = load("_dropout")
    out, mask = guarded_output((n,), np.float64), guarded_output((n,), np.uint8)
    dx = guarded_output((n,), np.float64)
    D.dropout_forward(x, out.array, mask.array, seed, reference.dropout_threshold(rate),
                      cache["scale"], 2)
    D.dropout_backward(x, mask.array, dx.array, cache["scale"], 2)
    for name, got in (("out", out), ("mask", mask), ("dx", dx)):
        got.assert_guards_intact(f"dropout {name}")
    np.testing.assert_array_equal(mask.array, cache["mask"])
    assert_close(out.array, want_out, "dropout_forward")
    assert_close(dx.array, want_dx, "dropout_backward")


# -- the multi-threaded paths (pooling goes parallel from 2**16 values on) -----------------------
@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("window, strides, pads", [((2, 2), (2, 2), (0, 0, 0, 0)),
                                                   ((3, 3), (1, 1), (1, 1, 1, 1)),
                                                   ((3, 2), (4, 3), (2, 0, 1, 1))])
def test_threaded_pool2d_stays_in_bounds(kind, window, strides, pads):
    x_shape = (4, 64, 33, 8)           # 67,584 values: above the threading threshold
    x = guarded_input(np.random.default_rng(0).standard_normal(x_shape))
    want_out, cache = getattr(reference, f"{kind}_pool2d_forward")(x, window, strides,
                                                                   (pads[:2], pads[2:]))
    dout = guarded_input(np.random.default_rng(1).standard_normal(want_out.shape))
    want_dx = getattr(reference, f"{kind}_pool2d_backward")(dout, cache)
    P = load("_pool")
    out, dx = guarded_output(want_out.shape, np.float64), guarded_output(x_shape, np.float64)
    args = (*window, *strides, pads[0])
    if kind == "avg":
        P.avg_pool2d_forward(x, out.array, *args, pads[2], 2)
        P.avg_pool2d_backward(dout, dx.array, *args, pads[2], 2)
    else:
        argidx = guarded_output(want_out.shape, np.int32)
        P.extreme_pool2d_forward(x, out.array, argidx.array, *args, pads[2], False, 2)
        P.extreme_pool2d_backward(dout, argidx.array, dx.array, *args, 2)
        argidx.assert_guards_intact("argidx")
    out.assert_guards_intact("out")
    dx.assert_guards_intact("dx")
    assert_close(out.array, want_out, f"{kind}_pool2d_forward")
    assert_close(dx.array, want_dx, f"{kind}_pool2d_backward")


# -- elementwise activations (``_mathfn.h``) ------------------------------------------------------
# Lengths around every vector width (4, 8, 16 lanes, the 2x-unrolled loops) and the parallel
# chunk (8192 values), and one long enough for two threads.
@pytest.mark.parametrize("isa_variant", ISA_VARIANTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["relu", "tanh", "sigmoid", "leaky_relu", "elu", "softplus",
                                  "silu", "exp", "expm1"])
def test_activations_stay_in_bounds(isa_variant, dtype, name):
    A = load("_activation")
    rng = np.random.default_rng(0)
    for n in [0, 1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 65, 8191, 8193, (1 << 16) + 7]:
        values = rng.uniform(-5, 5, n).astype(dtype)
        x, dout = guarded_input(values), guarded_input(rng.standard_normal(n).astype(dtype))
        y, dx = guarded_output((n,), dtype), guarded_output((n,), dtype)
        with running(isa_variant):
            A.forward(name, x, y.array, 0.5, 2)
            if name not in A.NO_BACKWARD:
                A.backward(name, dout, x if name in A.FROM_INPUT else y.array, dx.array, 0.5, 2)
        y.assert_guards_intact(f"{name} forward y, n={n}")
        want = reference.activation_forward(name, values.astype(np.float64), alpha=0.5)
        assert_close(y.array, want, f"{name} forward, n={n}")
        if name not in A.NO_BACKWARD:
            dx.assert_guards_intact(f"{name} backward dx, n={n}")
            arg = values if name in A.FROM_INPUT else y.array
            want = reference.activation_backward(name, dout.astype(np.float64),
                                                 arg.astype(np.float64), alpha=0.5)
            assert_close(dx.array, want, f"{name} backward, n={n}")
