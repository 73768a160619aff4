"""The compiled locally-connected kernel against its NumPy twin and against finite differences."""
import importlib.machinery

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import cytorch
from cytorch.checks import as_pair, window_output_shape
from cytorch.errors import ShapeError
from cytorch.testing import numerical_gradient, relative_error, rounding_error
from cytorch_locally_connected import _lc, reference
from cytorch_locally_connected.functional import (locally_connected2d_backward,
                                                  locally_connected2d_forward)

TOL = {np.float32: 1e-5, np.float64: 1e-12}   # rounding_error, as in cytorch's tests/test_conv.py


def make_case(rng, N, H, W, C, K, kernel_size, strides, padding, dtype, bias=True):
    kh, kw = as_pair(kernel_size, "kernel_size")
    sh, sw = as_pair(strides, "strides")
    H_out, W_out, _ = window_output_shape(H, W, kh, kw, sh, sw, padding)
    x = rng.standard_normal((N, H, W, C)).astype(dtype)
    w = rng.standard_normal((H_out, W_out, kh * kw * C, K)).astype(dtype)
    b = rng.standard_normal((H_out, W_out, K)).astype(dtype) if bias else None
    dout = rng.standard_normal((N, H_out, W_out, K)).astype(dtype)
    return x, w, b, dout


def run(backend, x, w, b, dout, kernel_size, strides, padding):
    with cytorch.backend(backend):
        out, cache = locally_connected2d_forward(x, w, b, kernel_size, strides, padding)
        return (out, *locally_connected2d_backward(dout, cache))


def test_compiled_module_is_an_extension():
    assert _lc.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


paddings = st.one_of(st.sampled_from(["valid", "same", "full"]), st.integers(0, 2),
                     st.tuples(st.integers(0, 2), st.integers(0, 2)))


@settings(max_examples=40, deadline=None)
@given(N=st.integers(1, 4), H=st.integers(1, 7), W=st.integers(1, 7), C=st.integers(1, 3),
       K=st.integers(1, 4), kh=st.integers(1, 4), kw=st.integers(1, 4),
       sh=st.integers(1, 3), sw=st.integers(1, 3), padding=paddings,
       dtype=st.sampled_from([np.float32, np.float64]), bias=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_compiled_matches_twin(N, H, W, C, K, kh, kw, sh, sw, padding, dtype, bias, seed):
    rng = np.random.default_rng(seed)
    try:
        x, w, b, dout = make_case(rng, N, H, W, C, K, (kh, kw), (sh, sw), padding, dtype, bias)
    except ShapeError:
        return  # the window does not fit this input: covered by test_too_small_input
    compiled = run("compiled", x, w, b, dout, (kh, kw), (sh, sw), padding)
    twin = run("reference", x, w, b, dout, (kh, kw), (sh, sw), padding)
    # the same sums over |terms| in float64: the size rounding errors are proportional to
    # (db = sum(dout) over N images can cancel to almost nothing)
    scale = run("reference", *(None if a is None else np.abs(a).astype(np.float64)
                               for a in (x, w, b, dout)), (kh, kw), (sh, sw), padding)
    for name, got, want, size in zip(("out", "dx", "dw", "db"), compiled, twin, scale):
        if want is None:
            assert got is None, name
            continue
        assert got.dtype == dtype and got.shape == want.shape, name
        assert rounding_error(got, want, size) < TOL[dtype], name


@pytest.mark.parametrize("backend", ["compiled", "reference"])
@pytest.mark.parametrize("kernel_size, strides, padding", [
    ((3, 2), (2, 1), "same"), ((2, 3), (1, 2), "full"), (2, 1, ((1, 0), (0, 2))), (3, 2, 4)])
def test_gradients_match_finite_differences(backend, kernel_size, strides, padding):
    rng = np.random.default_rng(7)
    x, w, b, dout = make_case(rng, 2, 5, 4, 2, 3, kernel_size, strides, padding, np.float64)

    def f(x=x, w=w, b=b):
        with cytorch.backend(backend):
            return locally_connected2d_forward(x, w, b, kernel_size, strides, padding)[0]

    _, dx, dw, db = run(backend, x, w, b, dout, kernel_size, strides, padding)
    assert relative_error(dx, numerical_gradient(lambda v: f(x=v), x, dout)) < 1e-7
    assert relative_error(dw, numerical_gradient(lambda v: f(w=v), w, dout)) < 1e-7
    assert relative_error(db, numerical_gradient(lambda v: f(b=v), b, dout)) < 1e-7


def test_a_locally_connected_layer_with_equal_filters_is_a_convolution():
    # The lecture's point, as an identity: tie every position's filters together and the
    # layer computes a (cross-)correlation; its dw then sums to the shared kernel's gradient.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 5, 3))
    kernel = rng.standard_normal((3, 2, 3, 4))            # (kh, kw, C, K)
    w = np.broadcast_to(kernel.reshape(1, 1, -1, 4), (4, 4, 18, 4))
    out, cache = locally_connected2d_forward(x, w, None, (3, 2))
    conv = np.zeros((2, 4, 4, 4))
    for i in range(4):
        for j in range(4):
            conv[:, i, j] = np.einsum("nabc,abck->nk", x[:, i:i + 3, j:j + 2], kernel)
    assert relative_error(out, conv) < 1e-13


def test_batch_blocks_and_thread_counts_do_not_change_results():
    rng = np.random.default_rng(1)
    x, w, b, dout = make_case(rng, 7, 6, 6, 3, 4, 3, 1, "same", np.float64)
    args = (3, 3, 1, 1, 1, 1)
    base = _lc.forward(x, w, b, *args, 1)
    base_grads = _lc.backward(dout, x, w, True, *args, 1)
    for threads in (1, 2, 3):
        for cap in (27, 2 * 27, 10**6):           # 1 image, 2 images, all images per block
            assert relative_error(_lc.forward(x, w, b, *args, threads, cap=cap), base) < 1e-14
            for got, want in zip(_lc.backward(dout, x, w, True, *args, threads, cap=cap),
                                 base_grads):
                assert relative_error(got, want) < 1e-14


def test_kernel_entry_points_refuse_inconsistent_arguments():
    # functional.py never makes such calls; a direct call must not read out of bounds either
    x, w = np.zeros((2, 5, 5, 3)), np.zeros((3, 3, 27, 4))
    with pytest.raises(ValueError, match=r"inconsistent arguments x \(2, 5, 5, 3\), w "
                                         r"\(3, 3, 27, 4\).*kernel 2x3"):
        _lc.forward(x, w, None, 2, 3, 1, 1, 0, 0, 1)            # 2*3*3 != 27
    with pytest.raises(ValueError, match=r"b \(3, 3, 2\)"):
        _lc.forward(x, w, np.zeros((3, 3, 2)), 3, 3, 1, 1, 0, 0, 1)
    with pytest.raises(ValueError, match=r"dout \(2, 3, 3, 5\)"):
        _lc.backward(np.zeros((2, 3, 3, 5)), x, w, True, 3, 3, 1, 1, 0, 0, 1)
    with pytest.raises(ValueError, match="0 threads"):
        _lc.forward(x, w, None, 3, 3, 1, 1, 0, 0, 0)


def test_threads_follow_the_amount_of_work():
    from cytorch_locally_connected import functional
    cytorch.set_num_threads(4)
    try:
        assert functional._threads(1000) == 1                       # not worth waking a team
        assert functional._threads(3 * functional._GRAIN) == 3
        assert functional._threads(10**9) == 4                      # never more than asked
    finally:
        cytorch.set_num_threads(None)


def test_windows_entirely_in_the_padding_see_zeros():
    x = np.ones((1, 2, 2, 1))
    w = np.ones((4, 4, 1, 1))                      # 1x1 kernel, padding 1: a ring of zeros
    out, cache = locally_connected2d_forward(x, w, None, 1, padding=1)
    assert out[0, :, :, 0].tolist() == [[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
    dx, dw, db = locally_connected2d_backward(np.ones_like(out), cache)
    assert dx.tolist() == np.ones((1, 2, 2, 1)).tolist() and db is None


def test_dtypes_combine_and_inputs_are_left_alone():
    rng = np.random.default_rng(2)
    x = rng.integers(-3, 3, size=(2, 4, 4, 2))     # ints become float32
    w = rng.standard_normal((2, 2, 18, 3)).astype(np.float32)
    out, _ = locally_connected2d_forward(x, w, None, 3)
    assert out.dtype == np.float32
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    out, _ = locally_connected2d_forward(x64, w, None, 3)
    assert out.dtype == np.float64

    # read-only and non-contiguous arrays are accepted and not modified
    big = rng.standard_normal((2, 8, 4, 2))
    strided = big[:, ::2]
    strided.flags.writeable = False
    w64.flags.writeable = False
    before = strided.copy()
    out, cache = locally_connected2d_forward(strided, w64, None, 3)
    locally_connected2d_backward(np.ones_like(out), cache)
    assert np.array_equal(strided, before)
    want, _ = locally_connected2d_forward(np.ascontiguousarray(strided), w64, None, 3)
    assert np.array_equal(out, want)


def test_bad_arguments_are_reported_before_compiled_code_runs():
    x = np.zeros((2, 5, 5, 3))
    w = np.zeros((3, 3, 27, 4))
    with pytest.raises(ShapeError, match=r"x must be a 4-D array \(N, H, W, C\).*got shape "
                                         r"\(5, 5, 3\).*x\[\.\.\., None\]"):
        locally_connected2d_forward(x[0], w, None, 3)
    with pytest.raises(ShapeError, match=r"w must have shape \(H_out, W_out, kh\*kw\*C, K\) "
                                         r"= \(3, 3, 27, K\).*got \(3, 3, 18, 4\)"):
        locally_connected2d_forward(x, np.zeros((3, 3, 18, 4)), None, 3)
    with pytest.raises(ShapeError, match=r"= \(5, 5, 27, K\).*padding 'same', got \(3, 3"):
        locally_connected2d_forward(x, w, None, 3, padding="same")
    with pytest.raises(ShapeError, match=r"b must have shape \(H_out, W_out, K\) = "
                                         r"\(3, 3, 4\), got \(4,\)"):
        locally_connected2d_forward(x, w, np.zeros(4), 3)
    bad = x.copy()
    bad[0, 1, 1, 0] = np.nan
    with pytest.raises(ValueError, match="x contains 1 NaN or infinite"):
        locally_connected2d_forward(bad, w, None, 3)
    out, cache = locally_connected2d_forward(x, w, None, 3)
    with pytest.raises(ShapeError, match=r"dout must have the forward output's shape .* = "
                                         r"\(2, 3, 3, 4\), got \(2, 3, 3, 5\)"):
        locally_connected2d_backward(np.zeros((2, 3, 3, 5)), cache)


def test_too_small_input():
    with pytest.raises(ShapeError, match=r"locally_connected2d needs at least 5x5 input.*"
                                         r"floor\(\(3 - 5\)/1\) \+ 1 = -1"):
        locally_connected2d_forward(np.zeros((1, 3, 3, 1)), np.zeros((1, 1, 25, 1)), None, 5)


def test_docstring_examples_run():
    import doctest
    import cytorch_locally_connected
    from cytorch_locally_connected import functional, layer
    for module in (reference, functional, layer, cytorch_locally_connected):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
