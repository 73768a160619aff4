"""Dense straight through BLAS with the fused epilogue (``functional.dense_forward/_backward``,
kernel in ``_kernels/_activation.pyx``): against the twin on random shapes, float64 finite
differences, the layer's bookkeeping (softmax, gelu and silu stay outside the kernel)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import cytorch
from cytorch import functional as F, layers as L, reference
from cytorch._gradcheck import numerical_gradient, relative_error, rounding_error

FUSED = sorted(F.FUSED_ACTIVATIONS)


def pre_activation_or_output(name, x, w, b, y):
    """What backward reads: the output y, or for silu the pre-activation."""
    return x @ w + (0 if b is None else b) if name == "silu" else y


@settings(max_examples=120, deadline=None, derandomize=True)
@given(name=st.sampled_from(FUSED), dtype=st.sampled_from([np.float32, np.float64]),
       N=st.integers(1, 9), n_in=st.integers(1, 40), units=st.integers(1, 37),
       use_bias=st.booleans(), alpha=st.one_of(st.none(), st.floats(0, 1)),
       need_dx=st.booleans(), seed=st.integers(0, 2**16))
def test_dense_matches_its_twin(name, dtype, N, n_in, units, use_bias, alpha, need_dx, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, n_in)).astype(dtype)
    w = rng.standard_normal((n_in, units)).astype(dtype)
    b = rng.standard_normal(units).astype(dtype) if use_bias else None
    dout = rng.standard_normal((N, units)).astype(dtype)
    before = [a.copy() for a in (x, w, dout)]
    y = F.dense_forward(x, w, b, name, alpha)
    f64 = [a.astype(np.float64) if a is not None else None for a in (x, w, b, dout)]
    want_y = reference.dense_forward(*f64[:3], name, alpha)
    assert y.dtype == dtype and y.shape == (N, units)
    # measured against the size of the summed terms (the twin on |inputs|)
    scale = reference.dense_forward(*(np.abs(a) if a is not None else None
                                      for a in f64[:3]), "linear") + 1
    tol = 2e-6 if dtype == np.float32 else 1e-13
    assert (np.abs(y - want_y) <= tol * scale).all(), name
    arg = pre_activation_or_output(name, x, w, b, y)
    dx, dw, db = F.dense_backward(dout, x, w, arg, name, alpha, use_bias, need_dx)
    want = reference.dense_backward(f64[3], f64[0], f64[1], arg.astype(np.float64), name,
                                    alpha, use_bias, need_dx)
    dz = np.abs(reference.activation_backward(name, f64[3], arg.astype(np.float64), alpha)
                if name != "linear" else f64[3])
    scales = reference.dense_backward(dz, np.abs(f64[0]), np.abs(f64[1]), None, "linear")
    for what, got, exp, scale in zip(("dx", "dw", "db"), (dx, dw, db), want, scales):
        if exp is None:
            assert got is None, what
            continue
        assert got.dtype == dtype and got.shape == exp.shape, what
        assert rounding_error(got, exp, scale + 1e-30) <= tol, f"{name} {what}"
    for a, a0 in zip((x, w, dout), before):
        np.testing.assert_array_equal(a, a0)


@pytest.mark.parametrize("name", FUSED)
def test_dense_gradients_match_finite_differences(name):
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((4, 6)), rng.standard_normal((6, 5))
    b, dout = rng.standard_normal(5), rng.standard_normal((4, 5))
    y = F.dense_forward(x, w, b, name)
    dx, dw, db = F.dense_backward(dout, x, w, pre_activation_or_output(name, x, w, b, y), name)
    assert relative_error(dx, numerical_gradient(lambda v: F.dense_forward(v, w, b, name), x,
                                                 dout)) < 1e-7
    assert relative_error(dw, numerical_gradient(lambda v: F.dense_forward(x, v, b, name), w,
                                                 dout)) < 1e-7
    assert relative_error(db, numerical_gradient(lambda v: F.dense_forward(x, w, v, name), b,
                                                 dout)) < 1e-7


@pytest.mark.parametrize("backend", ["compiled", "reference"])
@pytest.mark.parametrize("activation", ["tanh", "softmax", "gelu", "silu", "elu", None])
def test_dense_layer_fused_or_not_gives_the_twin_numbers(activation, backend):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 9))
    layer = L.Dense(4, activation=activation, seed=0)
    layer.set_dtype("float64")
    with cytorch.backend(backend):
        y = layer.forward(x, training=True)
        dout = rng.standard_normal(y.shape)
        dx = layer.backward(dout)
    kernel, bias = layer.params["kernel"], layer.params["bias"]
    from cytorch import activations
    act = activations.get(activation)
    z = x @ kernel + bias
    np.testing.assert_allclose(y, act.forward(z.copy()), rtol=1e-13, atol=1e-15)
    dz = act.bind(z).backward(dout, act.forward(z.copy()))
    np.testing.assert_allclose(dx, dz @ kernel.T, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(layer.grads["kernel"], x.T @ dz, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(layer.grads["bias"], dz.sum(axis=0), rtol=1e-12, atol=1e-14)


def test_leaky_relu_and_elu_functions_keep_their_parameter():
    from cytorch import activations
    x = np.array([[-2.0, 1.0]])
    layer = L.Dense(2, use_bias=False, seed=0)
    layer.build((2,))
    layer.params["kernel"][...] = np.eye(2)
    layer._activation = activations.leaky_relu_function(0.5)
    np.testing.assert_allclose(layer.forward(x, training=True), [[-1.0, 1.0]])
    np.testing.assert_allclose(layer.backward(np.ones((1, 2))), [[0.5, 1.0]])


def test_dense_errors_name_the_argument():
    w = np.ones((3, 2))
    with pytest.raises(ValueError, match=r"x must be a 2-D array \(N, 3\) for w of shape"):
        F.dense_forward(np.ones((2, 4)), w)
    with pytest.raises(ValueError, match=r"b must have shape \(2,\)"):
        F.dense_forward(np.ones((2, 3)), w, np.ones(3))
    with pytest.raises(ValueError, match="activation must be one of"):
        F.dense_forward(np.ones((2, 3)), w, activation="softmax")
    with pytest.raises(ValueError, match=r"dout must have shape \(2, 2\)"):
        F.dense_backward(np.ones((2, 3)), np.ones((2, 3)), w, np.ones((2, 2)), "tanh")
    with pytest.raises(ValueError, match="dout contains 1 NaN"):
        F.dense_backward(np.array([[np.nan, 0.0], [0, 0]]), np.ones((2, 3)), w,
                         np.ones((2, 2)), "tanh")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_backward_gives_the_same_bits_on_any_thread_count(dtype):
    # on two threads or more the products dw = x.T @ dz and dx = dz @ w.T run at the same time,
    # each a one-thread GEMM: the same calls, so the same numbers, as on one thread
    rng = np.random.default_rng(2)
    x = rng.standard_normal((64, 320)).astype(dtype)
    w = rng.standard_normal((320, 100)).astype(dtype)
    dout = rng.standard_normal((64, 100)).astype(dtype)
    y = F.dense_forward(x, w, np.zeros(100, dtype), "relu")
    results = []
    try:
        for threads in (1, 2, 3):
            cytorch.set_num_threads(threads)
            results.append(F.dense_backward(dout, x, w, y, "relu"))
    finally:
        cytorch.set_num_threads(None)
    want = reference.dense_backward(*(a.astype(np.float64) for a in (dout, x, w, y)), "relu")
    for got in results:
        for g, r, e in zip(got, results[0], want):
            np.testing.assert_array_equal(g, r)
            np.testing.assert_allclose(g, e, rtol=1e-4 if dtype == np.float32 else 1e-12,
                                       atol=1e-4 if dtype == np.float32 else 1e-12)
