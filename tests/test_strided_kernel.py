"""conv2d's implicit-GEMM path for strided layers (``_conv.pyx`` with ``_strided.h``): forward
and dW by register-blocked micro-kernels that read the image itself, no im2col matrix.

Every test forces the path (``_set_strided_mode("always")``) where it is not about the rule,
so small random shapes run it, and compares with the NumPy twin (``reference.conv2d_forward``
/ ``conv2d_backward``).  The guard-page bounds test of the path is in
``test_kernel_bounds.py``.  (The name matches ``test_*kernel*.py``: the AddressSanitizer stage,
``.ci/asan.sh``, runs this file.)
"""
import contextlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from test_conv import random_conv_operands

import cytorch
from cytorch import functional as F, reference
from cytorch._gradcheck import numerical_gradient, relative_error
from cytorch._kernels import EPILOGUES, ISA_MODULES, load
from cytorch._shapes import resolve_padding

conv = load("_conv")
VARIANTS = conv.isa_variants()


@contextlib.contextmanager
def strided(mode="always", variant="best"):
    """Run ``_conv`` with the strided path in ``mode`` and the vector kernels in ``variant``."""
    old = conv._set_strided_mode(mode)
    for name in ISA_MODULES:
        load(name)._select_isa(variant)
    try:
        yield
    finally:
        conv._set_strided_mode(old)
        for name in ISA_MODULES:
            load(name)._select_isa("best")


def run_kernel(x, w, b, strides, pads, dout_seed=1, threads=1, activation="linear",
               need_dx=True):
    """``_conv``'s forward and backward: [out, dx, dw, db] (dx None without need_dx)."""
    N, H, W, C = x.shape
    kh, kw, _, K = w.shape
    (sh, sw), (pt, pb, pl, pr) = strides, pads
    out = np.empty((N, (H + pt + pb - kh) // sh + 1, (W + pl + pr - kw) // sw + 1, K), x.dtype)
    conv.conv2d_forward(x, w, b, out, sh, sw, pt, pl, threads, 1, 1, activation)
    dout = np.random.default_rng(dout_seed).standard_normal(out.shape).astype(x.dtype)
    dx = np.empty_like(x) if need_dx else None
    dw, db = np.empty_like(w), np.empty_like(b)
    conv.conv2d_backward(dout, x, w, dx, dw, db, sh, sw, pt, pl, threads, 1, 1, activation,
                         out)
    return [out, dx, dw, db], dout


@settings(max_examples=60, deadline=None, derandomize=True)
@given(N=st.integers(1, 3), H=st.integers(1, 14), W=st.integers(1, 14), C=st.integers(1, 5),
       K=st.sampled_from([1, 3, 7, 8, 9, 16, 17, 24, 33, 40]), kh=st.integers(1, 6),
       kw=st.integers(1, 6), sh=st.integers(1, 5), sw=st.integers(1, 5),
       padding=st.sampled_from(["valid", "same", "full", ((2, 0), (1, 3))]),
       dtype=st.sampled_from([np.float32, np.float64]), threads=st.integers(1, 2),
       activation=st.sampled_from(EPILOGUES), need_dx=st.booleans(), seed=st.integers(0, 99))
def test_strided_path_matches_twin(N, H, W, C, K, kh, kw, sh, sw, padding, dtype, threads,
                                   activation, need_dx, seed):
    drawn = random_conv_operands(N, H, W, C, K, kh, kw, (sh, sw), padding, dtype, seed)
    if drawn is None:
        return
    x, w, rng = drawn
    b = rng.standard_normal(K).astype(dtype)
    pads = resolve_padding(padding, H, W, kh, kw, sh, sw)
    with strided():
        (out, dx, dw, db), dout = run_kernel(x, w, b, (sh, sw), pads, seed, threads,
                                             activation, need_dx)
    want, cache = reference.conv2d_forward(x.astype(np.float64), w.astype(np.float64),
                                           b.astype(np.float64), (sh, sw),
                                           (pads[:2], pads[2:]), activation=activation)
    if activation != "linear":   # the derivative through the kernel's own y (relu's kink)
        cache = {**cache, "y": out.astype(np.float64)}
    want_dx, want_dw, want_db = reference.conv2d_backward(dout.astype(np.float64), cache)
    tol = 1e-4 if dtype == np.float32 else 1e-11
    for got, ref, what in [(out, want, "out"), (dw, want_dw, "dw"), (db, want_db, "db")] \
            + [(dx, want_dx, "dx")] * need_dx:
        np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * max(1, np.abs(ref).max()),
                                   err_msg=what)


@pytest.mark.parametrize("shape, wshape, strides, padding", [
    ((2, 9, 11, 3), (3, 3, 3, 17), 2, "same"),           # a filter tail in every variant
    ((2, 12, 13, 2), (5, 4, 2, 9), (3, 2), "valid"),
    ((1, 7, 6, 1), (2, 3, 1, 20), (2, 3), ((2, 0), (1, 2))),
])
def test_strided_path_gradients_match_finite_differences(shape, wshape, strides, padding):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape)
    w = rng.standard_normal(wshape)
    b = rng.standard_normal(wshape[3])
    with strided():
        out, cache = F.conv2d_forward(x, w, b, strides, padding)
        dout = rng.standard_normal(out.shape)
        dx, dw, db = F.conv2d_backward(dout, cache)
        assert relative_error(dx, numerical_gradient(
            lambda x_: F.conv2d_forward(x_, w, b, strides, padding)[0], x, dout)) < 1e-7
        assert relative_error(dw, numerical_gradient(
            lambda w_: F.conv2d_forward(x, w_, b, strides, padding)[0], w, dout)) < 1e-7
        assert relative_error(db, numerical_gradient(
            lambda b_: F.conv2d_forward(x, w, b_, strides, padding)[0], b, dout)) < 1e-7


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2])
def test_every_variant_computes_the_same(dtype, threads):
    # every lane sums its taps (forward) and its pixels (dW) one after the other in the same
    # order in every variant: avx2 and avx512 (both FMA) give the same bits; the default
    # variant rounds each product first.  The shape has filter panels with tails in each.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 23, 21, 3)).astype(dtype)
    w = rng.standard_normal((5, 5, 3, 37)).astype(dtype)
    b = rng.standard_normal(37).astype(dtype)
    pads = resolve_padding("same", 23, 21, 5, 5, 3, 2)
    results = {}
    for variant in VARIANTS:
        with strided(variant=variant):
            results[variant] = run_kernel(x, w, b, (3, 2), pads, threads=threads,
                                          activation="relu")[0]
    best = results[VARIANTS[0]]
    for variant, got in results.items():
        for g, r in zip(got, best):
            if variant in ("avx2", "avx512"):
                np.testing.assert_array_equal(g, r, err_msg=variant)
            else:
                tol = 1e-5 if dtype == np.float32 else 1e-13
                np.testing.assert_allclose(g, r, rtol=tol, atol=tol * max(1, np.abs(r).max()),
                                           err_msg=variant)


@pytest.mark.parametrize("threads", [1, 2])
def test_repeated_runs_are_bit_identical(threads):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 31, 29, 3)).astype(np.float32)
    w = rng.standard_normal((7, 7, 3, 24)).astype(np.float32)
    b = rng.standard_normal(24).astype(np.float32)
    pads = resolve_padding("same", 31, 29, 7, 7, 2, 2)
    with strided():
        first = run_kernel(x, w, b, (2, 2), pads, threads=threads)[0]
        for _ in range(3):
            again = run_kernel(x, w, b, (2, 2), pads, threads=threads)[0]
            for g, r in zip(again, first):
                np.testing.assert_array_equal(g, r)


def test_dispatch_rule():
    rule = conv.uses_strided_path
    # AlexNet's first layer, a ResNet stem, 3x3 stride-2 downsampling with 8+ channels
    assert rule((8, 227, 227, 3), (11, 11, 3, 96), (8, 55, 55, 96), (4, 4))
    assert rule((4, 112, 112, 3), (7, 7, 3, 64), (4, 56, 56, 64), (2, 2))
    assert rule((16, 32, 32, 32), (3, 3, 32, 64), (16, 16, 16, 64), (2, 2))
    # not: stride 1, 1x1 windows, few taps or filters, dilation, one image on two threads
    assert not rule((8, 32, 32, 32), (3, 3, 32, 64), (8, 30, 30, 64), (1, 1))
    assert not rule((16, 28, 28, 64), (1, 1, 64, 128), (16, 14, 14, 128), (2, 2))
    assert not rule((32, 28, 28, 16), (3, 3, 16, 32), (32, 14, 14, 32), (2, 2))
    assert not rule((32, 28, 28, 8), (3, 3, 8, 16), (32, 14, 14, 16), (2, 2))
    assert not rule((16, 64, 64, 3), (4, 4, 3, 48), (16, 16, 16, 48), (4, 4))
    assert not rule((8, 227, 227, 3), (11, 11, 3, 96), (8, 55, 55, 96), (4, 4), (2, 2))
    assert not rule((1, 227, 227, 3), (11, 11, 3, 96), (1, 55, 55, 96), (4, 4), num_threads=2)
    assert rule((1, 227, 227, 3), (11, 11, 3, 96), (1, 55, 55, 96), (4, 4), num_threads=1)
    with strided("never"):
        assert not rule((8, 227, 227, 3), (11, 11, 3, 96), (8, 55, 55, 96), (4, 4))
    with strided("always"):
        assert rule((8, 32, 32, 32), (3, 3, 32, 64), (8, 30, 30, 64), (1, 1))
        assert not rule((8, 227, 227, 3), (11, 11, 3, 96), (8, 55, 55, 96), (4, 4), (2, 2))


def test_alexnet_first_layer_takes_the_path_and_matches_gemm():
    # the layer the path was written for (two images: the batch is cut by images), against
    # im2col + GEMM on the same data
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 227, 227, 3)).astype(np.float32)
    w = (rng.standard_normal((11, 11, 3, 96)) * 0.1).astype(np.float32)
    b = rng.standard_normal(96).astype(np.float32)
    out = F.conv2d_forward(x, w, b, 4, "valid")[0]
    assert F._conv_fast_path(x, w, out, (4, 4), (1, 1)) is None        # _conv's
    assert conv.uses_strided_path(x.shape, w.shape, out.shape, (4, 4),
                                  num_threads=cytorch.get_num_threads())
    pads = (0, 0, 0, 0)
    with strided("auto"):
        got = run_kernel(x, w, b, (4, 4), pads, threads=2)[0]
    with strided("never"):
        want = run_kernel(x, w, b, (4, 4), pads, threads=2)[0]
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=2e-4, atol=2e-4 * np.abs(r).max())


def test_alexnet_bands_are_of_equal_height():
    # 55 output rows of 55 * 363 values in bands of at most 2 MiB: 3 bands of 19, 19 and 17
    # rows (before, a ceiling written as -(-a // b) truncated under cdivision: 27, 27 and 1)
    T, U, group, band = conv._plan(8, 55, 55, 363, 1, np.float32)[:4]
    assert (group, band) == (1, 19)


def test_refuses_an_unknown_mode():
    with pytest.raises(ValueError, match="CYTORCH_STRIDED"):
        conv._set_strided_mode("sometimes")


@pytest.mark.parametrize("kernel", ["fwd", "dw"])
@pytest.mark.parametrize("variant, register, fma", [
    ("avx512_f", "zmm", True), ("avx2_f", "ymm", True), ("avx512_d", "zmm", True),
    ("avx2_d", "ymm", True), ("default_f", "xmm", False)])
def test_variants_use_their_instruction_set(kernel, variant, register, fma):
    # every innermost loop of the micro-kernels multiplies-adds on the variant's registers
    # (FMA where it has them) and keeps its accumulators there: no stack reference in the loop
    from test_isa import check_hot_loops
    check_hot_loops("_conv", f"cy_str_{variant}_{kernel}", register, fma)
