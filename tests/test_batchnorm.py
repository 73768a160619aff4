"""BatchNormalization: the kernel against its twin, gradients by finite differences, the moving
statistics (state: saved, loaded, counted, never optimized) and the defined edge cases."""
import doctest
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import cytorch
from cytorch import Sequential, functional as F, layers as L, reference as R
from cytorch._gradcheck import numerical_gradient, relative_error, rounding_error
from cytorch._kernels import load
from cytorch.errors import ShapeError
from cytorch.layers import CallContext
from cytorch.testing import check_layer


def _args(rng, shape, dtype, given_stats):
    C = shape[-1]
    x = (rng.normal(size=shape) * rng.uniform(0.5, 3) + rng.normal()).astype(dtype)
    gamma = rng.normal(size=C).astype(dtype)
    beta = rng.normal(size=C).astype(dtype)
    if not given_stats:
        return x, gamma, beta, None, None
    return x, gamma, beta, rng.normal(size=C).astype(dtype), \
        rng.uniform(0.1, 3, size=C).astype(dtype)


@st.composite
def bn_shapes(draw):
    C = draw(st.integers(1, 9))
    if draw(st.booleans()):
        return (draw(st.integers(1, 7)), C)
    return (draw(st.integers(1, 4)), draw(st.integers(1, 6)), draw(st.integers(1, 6)), C)


@settings(max_examples=40, deadline=None)
@given(shape=bn_shapes(), given_stats=st.booleans(), seed=st.integers(0, 2**16),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_kernel_matches_the_twin(shape, given_stats, seed, dtype):
    rng = np.random.default_rng(seed)
    x, gamma, beta, mean, var = _args(rng, shape, dtype, given_stats)
    out, cache = F.batch_norm_forward(x, gamma, beta, mean, var, epsilon=1e-3)
    out_r, cache_r = R.batch_norm_forward(x, gamma, beta, mean, var, epsilon=1e-3)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert out.dtype == dtype and out.shape == x.shape
    assert relative_error(out, out_r) < tol
    for key in ("mean", "var", "inv_std"):
        assert cache[key].dtype == dtype
        np.testing.assert_allclose(cache[key], cache_r[key], rtol=tol, atol=tol)
    dout = rng.normal(size=shape).astype(dtype)
    # Each gradient against the size of the terms it sums (rounding is proportional to that,
    # not to the result): with two samples per channel xhat = +-1 and dx cancels to ~0.
    C = shape[-1]
    d = np.abs(dout.astype(np.float64)).reshape(-1, C)
    xhat = np.abs((x.astype(np.float64).reshape(-1, C) - cache_r["mean"]) * cache_r["inv_std"])
    g = np.ones(C) if gamma is None else np.abs(gamma.astype(np.float64))
    scales = (g * cache_r["inv_std"] * (d + d.mean(0) + xhat * (d * xhat).mean(0)),
              (d * xhat).sum(0), d.sum(0))
    for got, want, scale in zip(F.batch_norm_backward(dout, cache),
                                R.batch_norm_backward(dout, cache_r), scales):
        assert got.dtype == dtype
        assert rounding_error(got, want, scale) < 10 * tol


@pytest.mark.parametrize("given_stats", [False, True], ids=["batch stats", "moving stats"])
@pytest.mark.parametrize("backend", ["compiled", "reference"])
@pytest.mark.parametrize("shape", [(3, 2, 3, 2), (5, 3), (2, 1, 1, 4)])
def test_gradients_by_finite_differences(shape, given_stats, backend):
    rng = np.random.default_rng(1)
    x, gamma, beta, mean, var = _args(rng, shape, np.float64, given_stats)
    dout = rng.normal(size=shape)
    with cytorch.backend(backend):
        def f(x=x, gamma=gamma, beta=beta):
            return F.batch_norm_forward(x, gamma, beta, mean, var)[0]
        _, cache = F.batch_norm_forward(x, gamma, beta, mean, var)
        dx, dgamma, dbeta = F.batch_norm_backward(dout, cache)
        assert relative_error(dx, numerical_gradient(lambda v: f(x=v), x, dout)) < 1e-7
        assert relative_error(dgamma, numerical_gradient(lambda v: f(gamma=v), gamma, dout)) < 1e-7
        assert relative_error(dbeta, numerical_gradient(lambda v: f(beta=v), beta, dout)) < 1e-7


def test_statistics_are_biased_two_pass_and_exact_for_large_offsets():
    # E[x^2] - E[x]^2 would lose every digit here (float32 variance of 1e4 + N(0, 1) values)
    rng = np.random.default_rng(2)
    x = (1e4 + rng.normal(size=(64, 5, 5, 3))).astype(np.float32)
    _, cache = F.batch_norm_forward(x)
    x64 = x.astype(np.float64).reshape(-1, 3)
    np.testing.assert_allclose(cache["mean"], x64.mean(0), rtol=1e-7)
    np.testing.assert_allclose(cache["var"], x64.var(0), rtol=1e-5)   # ddof=0: biased


def test_the_result_does_not_depend_on_the_number_of_threads():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(64, 16, 16, 6)).astype(np.float32)   # 98,304 values: threads kick in
    dout = rng.normal(size=x.shape).astype(np.float32)
    results = []
    for n in (1, 2, 3):
        cytorch.set_num_threads(n)
        try:
            out, cache = F.batch_norm_forward(x, np.ones(6), np.zeros(6))
            results.append((out, cache["mean"], cache["var"], *F.batch_norm_backward(dout, cache)))
        finally:
            cytorch.set_num_threads(None)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_the_kernel_refuses_mismatched_shapes():
    K = load("_batchnorm")
    x = np.ones((4, 3))
    with pytest.raises(ValueError, match="must have x's 3 channels"):
        K.batch_norm_stats(x, np.empty(2), np.empty(3), 1)
    with pytest.raises(ValueError, match="must agree"):
        K.batch_norm_apply(x, np.zeros(3), np.ones(3), np.zeros(2), np.empty((4, 3)), 1)
    with pytest.raises(ValueError, match="must agree"):
        K.batch_norm_backward(x, x, np.zeros(3), np.ones(3), np.ones(3), np.empty((3, 3)),
                              np.empty(3), np.empty(3), True, 1)


# -- the layer ----------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["compiled", "reference"])
@pytest.mark.parametrize("make, shape", [
    (lambda: L.BatchNormalization(), (4, 3, 2)),
    (lambda: L.BatchNormalization(momentum=0.5, epsilon=0.1), (5,)),
    (lambda: L.BatchNormalization(center=False), (3, 3, 2)),
    (lambda: L.BatchNormalization(scale=False, axis=3), (2, 3, 3)),
    (lambda: L.BatchNormalization(center=False, scale=False), (4,)),
], ids=["default", "dense", "no-beta", "no-gamma", "neither"])
def test_check_layer(make, shape, backend):
    with cytorch.backend(backend):
        errors = check_layer(make(), shape)
    assert all(e < 1e-5 for e in errors.values()), errors


def test_moving_statistics_follow_keras_update_and_inference_uses_them():
    rng = np.random.default_rng(4)
    bn = L.BatchNormalization(momentum=0.9, dtype="float64")
    mm, mv = np.zeros(3), np.ones(3)
    for _ in range(3):
        x = rng.normal(loc=2, scale=3, size=(8, 4, 4, 3))
        y = bn.forward(x, training=True)
        x2 = x.reshape(-1, 3)
        mean, var = x2.mean(0), x2.var(0)            # biased, as Keras
        np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-3), rtol=1e-10)
        mm, mv = mm * 0.9 + mean * 0.1, mv * 0.9 + var * 0.1
        np.testing.assert_allclose(bn.state["moving_mean"], mm, rtol=1e-12)
        np.testing.assert_allclose(bn.state["moving_variance"], mv, rtol=1e-12)
    x = rng.normal(size=(2, 4, 4, 3))
    np.testing.assert_allclose(bn.forward(x), (x - mm) / np.sqrt(mv + 1e-3), rtol=1e-10)
    np.testing.assert_allclose(bn.state["moving_mean"], mm, rtol=1e-12)   # inference: no update


def test_a_frozen_layer_runs_in_inference_mode_even_when_training():
    bn = L.BatchNormalization(trainable=False)
    x = np.random.default_rng(5).normal(3, 2, size=(6, 4)).astype(np.float32)
    np.testing.assert_allclose(bn.forward(x, training=True), x / np.sqrt(1 + 1e-3), rtol=1e-6)
    np.testing.assert_array_equal(bn.state["moving_mean"], 0)


def test_state_is_counted_saved_loaded_and_never_optimized(tmp_path):
    rng = np.random.default_rng(6)
    X = rng.normal(size=(64, 6, 6, 1)).astype(np.float32)
    y = (X.mean(axis=(1, 2, 3)) > 0).astype(int)
    def net(seed=None):
        return Sequential([L.Conv2D(4, 3, seed=seed, name="c"), L.BatchNormalization(name="bn"),
                           L.Activation("relu", name="a"), L.Flatten(name="f"),
                           L.Dense(2, seed=seed, name="d")], input_shape=(6, 6, 1))
    model = net(seed=0)
    text = model.summary(print_fn=None)
    # conv 40 + dense 130 + gamma/beta 8 trainable; moving mean/variance 8 non-trainable
    assert "Total params: 186" in text and "Trainable params: 178" in text
    assert "Non-trainable params: 8" in text
    bn = model.layers[1]
    assert [k for k, _ in bn.weight_items()] == ["gamma", "beta", "moving_mean",
                                                 "moving_variance"]
    assert sorted(bn.grads) == ["beta", "gamma"]
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.fit(X, y, batch_size=16, epochs=2, verbose=0)
    # moved by the layer's own update only: every batch pulls it 1% towards the batch mean
    assert 0 < np.abs(bn.state["moving_mean"]).max() < 1
    weights = model.get_weights()           # Keras's list: ..., gamma, beta, mean, variance, ...
    assert sum(w is not None and np.array_equal(w, bn.state["moving_variance"])
               for w in weights) == 1
    path = model.save(tmp_path / "m.npz")
    loaded = cytorch.load_model(path)
    lbn = loaded.layers[1]
    for k in ("gamma", "beta"):
        np.testing.assert_array_equal(lbn.params[k], bn.params[k])
    for k in ("moving_mean", "moving_variance"):
        np.testing.assert_array_equal(lbn.state[k], bn.state[k])
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    fresh = net()
    fresh.set_weights(weights)
    np.testing.assert_array_equal(fresh.layers[1].state["moving_variance"],
                                  bn.state["moving_variance"])


def test_set_dtype_casts_the_state():
    bn = L.BatchNormalization()
    bn.build((3,))
    bn.set_dtype("float64")
    assert all(v.dtype == np.float64 for _, v in bn.weight_items())


def test_a_batch_of_one_in_training_mode_is_defined_and_warned():
    bn = L.BatchNormalization(momentum=0.5, beta_initializer="ones", name="bn1")
    x = np.array([[1.0, -2.0, 7.0]], dtype=np.float32)
    with pytest.warns(RuntimeWarning, match=r"BatchNormalization 'bn1' in training mode got one "
                                            r"value per channel \(batch shape \(1, 3\)\)"):
        y = bn.forward(x, training=True)
    np.testing.assert_array_equal(y, [[1, 1, 1]])                 # beta, as Keras
    np.testing.assert_allclose(bn.backward(np.ones((1, 3))), 0, atol=1e-6)
    np.testing.assert_allclose(bn.state["moving_variance"], 0.5)   # 1 * 0.5 + 0 * 0.5
    np.testing.assert_allclose(bn.state["moving_mean"], x[0] * 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bn.forward(np.ones((1, 2, 2, 3)), training=True)   # four values per channel: fine
        bn.forward(x)                                      # inference on one sample: fine


def test_non_finite_statistics_are_refused_and_leave_the_state_alone():
    bn = L.BatchNormalization(name="bn2", dtype="float64")
    x = np.ones((4, 3))
    x[:, 1] = [1e200, -1e200, 1e200, 3.0]                  # finite, but its square overflows
    with pytest.raises(ValueError, match=r"BatchNormalization 'bn2': the batch statistics of "
                                         r"channel\(s\) \[1\] are not finite"):
        with np.errstate(over="ignore"):
            bn.forward(x, training=True)
    np.testing.assert_array_equal(bn.state["moving_variance"], 1)
    bad = np.ones((4, 3))
    bad[2, 0] = np.nan
    checked = CallContext(check_finite=False)   # as inside fit, the model checked its input
    with pytest.raises(ValueError, match=r"channel\(s\) \[0\] are not finite \(mean \[nan\]"):
        bn.forward(bad, training=True, ctx=checked)
    np.testing.assert_array_equal(bn.state["moving_mean"], 0)


def test_a_negative_moving_variance_is_refused_at_inference():
    bn = L.BatchNormalization(name="bn3")
    bn.build((2,))
    bn.state["moving_variance"][:] = [1.0, -5.0]
    with pytest.raises(ValueError, match=r"BatchNormalization 'bn3': variance \+ epsilon must "
                                         r"be > 0 for every channel; channel\(s\) \[1\] have "
                                         r"variance \[-5\.0\]"):
        bn.forward(np.ones((2, 2)))


@pytest.mark.parametrize("make, error, match", [
    (lambda: L.BatchNormalization(momentum=1.5), ValueError,
     r"momentum must be a float in \[0, 1\].*got 1\.5"),
    (lambda: L.BatchNormalization(momentum=-0.1), ValueError, r"momentum .* got -0\.1"),
    (lambda: L.BatchNormalization(momentum="0.9"), ValueError, r"momentum .* got '0\.9'"),
    (lambda: L.BatchNormalization(momentum=float("nan")), ValueError, r"momentum .* got nan"),
    (lambda: L.BatchNormalization(epsilon=0), ValueError, r"epsilon must be a positive float"
                                                          r".* got 0"),
    (lambda: L.BatchNormalization(epsilon=-1e-3), ValueError, r"epsilon .* got -0\.001"),
    (lambda: L.BatchNormalization(epsilon=float("inf")), ValueError, r"epsilon .* got inf"),
    (lambda: L.BatchNormalization(epsilon=True), ValueError, r"epsilon .* got True"),
    (lambda: L.BatchNormalization(axis=1.0), TypeError, r"axis must be an int, got 1\.0"),
    (lambda: L.BatchNormalization(center="yes"), TypeError, r"center must be a bool"),
    (lambda: L.BatchNormalization(gamma_initializer="one"), KeyError,
     r"unknown initializer 'one'"),
    (lambda: L.BatchNormalization(axis=1, name="b").build((4, 4, 3)), ValueError,
     r"BatchNormalization 'b': axis=1, but cytorch is channels-last: only the last axis "
     r"\(-1, or 3 for 4-D batches\) can be normalised"),
    (lambda: L.BatchNormalization(name="b").forward(np.ones(3)), ShapeError,
     r"BatchNormalization 'b' expects \(N, H, W, C\) or \(N, C\) batches, got shape \(3,\)"),
])
def test_arguments_are_checked(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_a_built_layer_refuses_other_channels():
    bn = L.BatchNormalization(name="b", center=False, scale=False)   # state only, no params
    bn.forward(np.ones((2, 4, 4, 3)))
    with pytest.raises(ShapeError, match=r"BatchNormalization 'b' was built for 3 channels"):
        bn.forward(np.ones((2, 4, 4, 2)))


@pytest.mark.parametrize("call, error, match", [
    (lambda: F.batch_norm_forward(np.ones((2, 3)), np.ones(2)), ShapeError,
     r"gamma must have shape \(C,\) = \(3,\).*got shape \(2,\)"),
    (lambda: F.batch_norm_forward(np.ones((2, 3)), mean=np.zeros(3)), ValueError,
     r"give both mean and variance"),
    (lambda: F.batch_norm_forward(np.ones(3)), ShapeError, r"x must have a batch axis and a "
                                                           r"channel axis"),
    (lambda: F.batch_norm_forward(np.ones((0, 3))), ShapeError, r"x must not be empty"),
    (lambda: F.batch_norm_forward(np.ones((2, 3)), epsilon=0.0), ValueError,
     r"epsilon must be a positive float"),
    (lambda: F.batch_norm_forward(np.full((2, 3), np.nan)), ValueError,
     r"x contains 6 NaN or infinite"),
    (lambda: F.batch_norm_backward(np.ones((2, 3)), {"kind": "dropout"}), ValueError,
     r"batch_norm_backward needs the cache returned by batch_norm_forward"),
    (lambda: F.batch_norm_backward(np.ones((2, 2)), F.batch_norm_forward(np.ones((2, 3)))[1]),
     ShapeError, r"dout must have the forward output's shape \(2, 3\), got \(2, 2\)"),
])
@pytest.mark.parametrize("backend", ["compiled", "reference"])
def test_the_front_door_and_the_twin_check_their_arguments(call, error, match, backend):
    with cytorch.backend(backend):
        with pytest.raises(error, match=match):
            call()


@pytest.mark.parametrize("obj", [F.batch_norm_forward, F.batch_norm_backward,
                                 R.batch_norm_forward, L.BatchNormalization])
def test_docstring_examples(obj):
    tests = doctest.DocTestFinder().find(obj, globs={"np": np, **vars(__import__(obj.__module__,
                                                                                fromlist=["x"]))})
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for t in tests:
        runner.run(t)
    assert runner.failures == 0 and runner.tries > 0
