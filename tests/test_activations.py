"""Activation functions (values, stability, derivatives) and weight initializers (scales, fans,
seeding)."""
import warnings

import numpy as np
import pytest

import cytorch
from cytorch import activations, initializers
from cytorch._gradcheck import numerical_gradient, relative_error

NAMES = ["relu", "tanh", "sigmoid", "softmax", "linear", "leaky_relu", "elu", "softplus", "gelu",
         "silu", "swish"]


@pytest.mark.parametrize("name", NAMES)
def test_backward_matches_finite_differences(name):
    act = activations.get(name)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 6))
    x[np.abs(x) < 1e-3] = 0.5  # keep away from relu's kink
    dout = rng.normal(size=x.shape)
    y = act.forward(x)
    analytic = act.bind(x).backward(dout, y)
    numeric = numerical_gradient(act.forward, x, dout)
    assert relative_error(analytic, numeric) < 1e-8


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved_and_out_argument(name, dtype):
    act = activations.get(name)
    x = np.linspace(-3, 3, 12, dtype=dtype).reshape(3, 4)
    y = act.forward(x)
    assert y.dtype == dtype and act.bind(x).backward(np.ones_like(y), y).dtype == dtype
    buf = x.copy()
    assert act.forward(buf, out=buf) is buf
    np.testing.assert_allclose(buf, y, rtol=1e-6)


def test_values():
    x = np.array([[-2.0, 0.0, 3.0]])
    np.testing.assert_array_equal(activations.relu(x), [[0, 0, 3]])
    np.testing.assert_allclose(activations.sigmoid(x), 1 / (1 + np.exp(-x)))
    np.testing.assert_allclose(activations.tanh(x), np.tanh(x))
    e = np.exp(x)
    np.testing.assert_allclose(activations.softmax(x), e / e.sum())
    assert activations.linear(x) is x


@pytest.mark.parametrize("backend", ["reference", "compiled"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanh_backward_rounds_as_the_formula_and_leaves_its_arguments(dtype, backend):
    # the twin works in place in one array; its result must still be the formula's, bit for
    # bit, and dout and y must stay untouched.  The compiled pass may round 1 - y*y once (one
    # fused multiply-add), so it is within a rounding of dout's size.
    rng = np.random.default_rng(3)
    y = np.tanh(rng.normal(size=(64, 7, 5, 6))).astype(dtype)
    dout = rng.normal(size=y.shape).astype(dtype)
    y0, dout0 = y.copy(), dout.copy()
    with cytorch.backend(backend):
        dx = activations.tanh_backward(dout, y)
    assert dx.dtype == dtype
    if backend == "reference":
        np.testing.assert_array_equal(dx, dout * (1 - y * y))
    else:
        assert (np.abs(dx - dout * (1 - y * y)) <= 2 * np.finfo(dtype).eps * np.abs(dout)).all()
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(dout, dout0)


def test_tanh_backward_promotes_mixed_dtypes():
    y = np.tanh(np.linspace(-2, 2, 9, dtype=np.float32))
    dout = np.linspace(1, 3, 9)  # float64
    dx = activations.tanh_backward(dout, y)
    y64 = y.astype(np.float64)
    assert dx.dtype == np.float64
    np.testing.assert_array_equal(dx, dout * (1 - y64 * y64))


def test_sigmoid_and_softmax_are_stable_for_huge_inputs():
    x = np.array([[-1e4, -50.0, 0.0, 50.0, 1e4]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings
        s = activations.sigmoid(x)
        p = activations.softmax(x)
        p64 = activations.softmax(np.array([[1000.0, 1000.0, -1000.0]]))
    np.testing.assert_allclose(s, [[0, 1.9287e-22, 0.5, 1, 1]], rtol=1e-4)
    assert np.isfinite(p).all() and p[0, -1] == 1
    np.testing.assert_allclose(p64, [[0.5, 0.5, 0]])


def test_softmax_over_last_axis_of_images():
    x = np.random.default_rng(0).normal(size=(2, 3, 3, 4))
    np.testing.assert_allclose(activations.softmax(x).sum(axis=-1), 1)


def test_get():
    assert activations.get(None).name == "linear"
    assert activations.get("ReLU") is activations.get("relu")
    with pytest.raises(KeyError, match=r"unknown activation 'sigmod'; known: elu, gelu, "
                                       r"leaky_relu, linear, relu, sigmoid, silu, softmax, "
                                       r"softplus, swish, tanh \(did you mean 'sigmoid'\?\)"):
        activations.get("sigmod")
    with pytest.raises(TypeError, match="activation must be a name"):
        activations.get(3)


def test_keras_numbers_and_the_slope_trap():
    x = np.array([-2.0, -0.5, 0.0, 1.5])
    np.testing.assert_allclose(activations.get("leaky_relu").forward(x), [-0.4, -0.1, 0, 1.5])
    np.testing.assert_allclose(activations.get("elu").forward(x), np.where(x > 0, x,
                                                                           np.expm1(x)))
    from scipy.stats import norm
    np.testing.assert_allclose(activations.get("gelu").forward(x), x * norm.cdf(x), rtol=1e-14)
    np.testing.assert_allclose(activations.get("silu").forward(x), x / (1 + np.exp(-x)))
    np.testing.assert_allclose(activations.get("softplus").forward(x), np.log1p(np.exp(x)))
    assert activations.get("swish") is activations.get("silu")
    from cytorch import layers as L
    np.testing.assert_allclose(L.LeakyReLU().forward(x[None]), [[-0.6, -0.15, 0, 1.5]],
                               rtol=1e-6)


def test_new_activations_are_stable_at_the_extremes():
    x = np.array([-1e4, -50.0, 0.0, 50.0, 1e4])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("leaky_relu", "elu", "softplus", "gelu", "silu"):
            act = activations.get(name)
            y = act.forward(x)
            dx = act.bind(x).backward(np.ones_like(x), y)
            assert np.isfinite(y).all() and np.isfinite(dx).all(), name
    np.testing.assert_allclose(activations.softplus(x), [0, 1.9287498479639178e-22, np.log(2),
                                                          50, 1e4], rtol=1e-12)
    np.testing.assert_allclose(activations.softplus_backward(1.0, activations.softplus(x)),
                               [0, 1.9287498479639178e-22, 0.5, 1, 1], rtol=1e-12)


# -- initializers ---------------------------------------------------------------------------------
def test_fans_follow_keras():
    assert initializers.compute_fans((5, 5, 3, 10)) == (75, 250)
    assert initializers.compute_fans((320, 100)) == (320, 100)
    assert initializers.compute_fans((7,)) == (7, 7)


@pytest.mark.parametrize("name, shape, expected_std", [
    ("glorot_uniform", (60, 40), np.sqrt(2 / 100)),
    ("glorot_normal", (60, 40), np.sqrt(2 / 100)),
    ("he_uniform", (3, 3, 20, 30), np.sqrt(2 / 180)),
    ("he_normal", (3, 3, 20, 30), np.sqrt(2 / 180)),
])
def test_scales(name, shape, expected_std):
    w = initializers.get(name)(shape, np.random.default_rng(0))
    assert w.shape == shape and w.dtype == np.float32
    assert abs(w.std() / expected_std - 1) < 0.05
    assert abs(w.mean()) < 0.1 * expected_std
    if name.endswith("uniform"):
        assert np.abs(w).max() <= np.sqrt(3) * expected_std
    else:  # truncated at two (pre-rescaling) standard deviations
        assert np.abs(w).max() <= 2 * expected_std / 0.8796 + 1e-6


def test_seeded_and_typed():
    a = initializers.he_normal((4, 5), np.random.default_rng(3), dtype="float64")
    b = initializers.he_normal((4, 5), np.random.default_rng(3), dtype="float64")
    assert a.dtype == np.float64
    np.testing.assert_array_equal(a, b)
    assert not initializers.zeros((3,)).any() and initializers.ones((2, 2)).all()


def test_get_initializer():
    assert initializers.get("He_Uniform") is initializers.he_uniform
    with pytest.raises(KeyError, match=r"unknown initializer 'xavier'; known: glorot_normal"):
        initializers.get("xavier")


def test_activation_layer_docstring_examples():
    import doctest

    from cytorch.layers import advanced_activations
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for obj in (advanced_activations.LeakyReLU, advanced_activations.ELU, activations):
        module = activations if obj is activations else advanced_activations
        for t in doctest.DocTestFinder().find(obj, globs=dict(vars(module))):
            runner.run(t)
    assert runner.failures == 0 and runner.tries >= 4
