"""Keras 3's semantics without Keras: the numbers worked out by hand from Keras's formulas
(tests/test_keras_parity.py checks them against Keras itself where it is installed)."""
import doctest
import math
import warnings

import numpy as np
import pytest

import cytorch
from cytorch import layers as L
from cytorch import losses, optimizers


def dense_with(kernel, grad, dtype="float64"):
    layer = L.Dense(kernel.shape[1], use_bias=False, dtype=dtype)
    layer.build(kernel.shape[:1])
    layer.set_weights([kernel])
    layer.grads["kernel"][...] = grad
    return layer


# -- optimizers ---------------------------------------------------------------------------------
def test_rmsprop_puts_epsilon_inside_the_root():
    # the case: lr 1e-3, g 1e-4; s = 0.1 g² = 1e-9, step = lr g / sqrt(s + 1e-7)
    layer = dense_with(np.ones((1, 1)), 1e-4)
    optimizers.RMSprop(1e-3).apply_gradients([layer])
    step = 1 - layer.params["kernel"][0, 0]
    assert step == pytest.approx(1e-3 * 1e-4 / math.sqrt(1e-9 + 1e-7), rel=1e-12)
    assert step == pytest.approx(3.15e-4, rel=2e-3)          # PyTorch's formula: 3.15e-3


def test_rmsprop_momentum_and_centered_follow_keras():
    rho, m, eps, lr = 0.9, 0.5, 1e-7, 0.01
    g = np.array([[0.3, -2.0]])
    layer = dense_with(np.zeros((1, 2)), g)
    opt = optimizers.RMSprop(lr, momentum=m, centered=True)
    s = a = v = np.zeros_like(g)
    theta = np.zeros_like(g)
    for _ in range(3):
        opt.apply_gradients([layer])
        s = rho * s + (1 - rho) * g ** 2
        a = rho * a + (1 - rho) * g
        v = m * v + lr * g / np.sqrt(s - a ** 2 + eps)
        theta = theta - v
    np.testing.assert_allclose(layer.params["kernel"], theta, rtol=1e-12)
    assert opt.slots() == ("velocity", "momentum", "average_gradient")


def test_adagrad_puts_epsilon_inside_the_root():
    layer = dense_with(np.zeros((1, 1)), 0.5)
    optimizers.Adagrad(0.1, initial_accumulator_value=0.0, epsilon=0.01).apply_gradients([layer])
    assert -layer.params["kernel"][0, 0] == pytest.approx(0.1 * 0.5 / math.sqrt(0.25 + 0.01))


def test_adamw_has_keras_defaults_and_decouples_the_decay():
    opt = optimizers.get("adamw")()
    assert (opt.learning_rate, opt.weight_decay, opt.beta_1, opt.beta_2, opt.epsilon,
            opt.amsgrad) == (0.001, 0.004, 0.9, 0.999, 1e-7, False)
    with pytest.raises(ValueError, match="weight_decay must be a float >= 0 for AdamW"):
        optimizers.AdamW(weight_decay=None)


def test_clipping_options():
    g = np.array([[3.0, 4.0]])                               # norm 5
    for opt, want in ((optimizers.SGD(1.0, clipnorm=1.0), [-0.6, -0.8]),
                      (optimizers.SGD(1.0, global_clipnorm=2.5), [-1.5, -2.0]),
                      (optimizers.SGD(1.0, clipvalue=3.5), [-3.0, -3.5])):
        layer = dense_with(np.zeros((1, 2)), g)
        opt.apply_gradients([layer])
        np.testing.assert_allclose(layer.params["kernel"][0], want)
    with pytest.raises(ValueError, match="only one of clipnorm, clipvalue and global_clipnorm"):
        optimizers.Adam(clipnorm=1.0, clipvalue=1.0)


def test_optimizer_state_round_trips():
    for opt in (optimizers.Adam(amsgrad=True), optimizers.RMSprop(momentum=0.9, centered=True),
                optimizers.Adagrad(), optimizers.SGD(momentum=0.5)):
        layer = dense_with(np.ones((2, 3)), 0.1, dtype="float32")
        opt.apply_gradients([layer])
        state = opt.get_state()
        assert state["iterations"] == 1 and len(state["slots"]) == len(opt.slots())
        again = type(opt)(**opt.get_config())
        again.set_state(state, [layer])
        for a, b in zip(again.get_state()["slots"].values(), state["slots"].values()):
            np.testing.assert_array_equal(a, b)
        with pytest.raises(ValueError, match="shape"):
            bad = {"iterations": 1, "slots": {k: np.zeros(4) for k in state["slots"]}}
            again.set_state(bad, [layer])


# -- losses -------------------------------------------------------------------------------------
def test_cross_entropy_renormalises_rows_as_keras():
    p = np.array([[0.2, 0.2, 0.1]])
    assert losses.SparseCategoricalCrossentropy()([0], p) == pytest.approx(-math.log(0.4))
    assert losses.CategoricalCrossentropy()([[1, 0, 0]], p) == pytest.approx(-math.log(0.4))
    # the gradient is that of -log(p_0 / sum p): 1/S - [j = 0] / p_0
    _, dp = losses.SparseCategoricalCrossentropy().gradient([0], p)
    np.testing.assert_allclose(dp, [[2 - 5, 2, 2]])
    _, dp = losses.CategoricalCrossentropy().gradient([[1.0, 0, 0]], p)
    np.testing.assert_allclose(dp, [[2 - 5, 2, 2]])


@pytest.mark.parametrize("cls", [losses.SparseCategoricalCrossentropy,
                                 losses.CategoricalCrossentropy, losses.BinaryCrossentropy])
def test_from_logits_is_a_constructor_argument(cls):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((4, 3))
    if cls is losses.SparseCategoricalCrossentropy:
        y, p = np.array([0, 2, 1, 1]), losses.softmax(z)
    elif cls is losses.CategoricalCrossentropy:
        y, p = np.eye(3)[[0, 2, 1, 1]], losses.softmax(z)
    else:
        y, p = (rng.random((4, 3)) > 0.5) * 1.0, losses.sigmoid(z)
    assert cls(from_logits=True)(y, z) == pytest.approx(cls()(y, p), rel=1e-9)
    assert cls(from_logits=True).fused_activation is None
    assert cls(from_logits=True).get_config()["from_logits"] is True
    with pytest.raises(TypeError, match="from_logits must be a bool"):
        cls(from_logits="yes")


def test_label_smoothing():
    y, z = np.array([[1.0, 0.0]]), np.array([[2.0, -1.0]])
    smooth = losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2)
    assert smooth(y, z) == pytest.approx(losses.CategoricalCrossentropy(from_logits=True)(
        [[0.9, 0.1]], z))


def test_loss_docstrings_run():
    for module in (losses, optimizers):
        for test in doctest.DocTestFinder().find(module, globs=dict(vars(module))):
            result = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS).run(test)
            assert result.failed == 0, test.name


def test_dense_logits_with_from_logits_trains_unfused_and_softmax_stays_fused():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    model = cytorch.Sequential([L.Input((4,)), L.Dense(16, activation="relu"), L.Dense(3)],
                               seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.compile(optimizer=optimizers.Adam(0.02),
                      loss=losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
    assert not model._fused()
    history = model.fit(X, y, epochs=30, batch_size=20, verbose=0, seed=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert history.history["accuracy"][-1] > 0.8
    soft = cytorch.Sequential([L.Input((4,)), L.Dense(3, activation="softmax")])
    soft.compile(loss="sparse_categorical_crossentropy")
    assert soft._fused()


@pytest.mark.parametrize("activation", [None, "relu", "tanh"])
def test_a_non_probability_output_with_a_probability_loss_warns(activation):
    model = cytorch.Sequential([L.Input((4,)), L.Dense(3, activation=activation, name="out")])
    with pytest.warns(UserWarning, match=r"output layer Dense 'out' has activation "
                                         r"'(linear|relu|tanh)', but the loss "
                                         r"SparseCategoricalCrossentropy\(from_logits=False\)"):
        model.compile(loss="sparse_categorical_crossentropy")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.compile(loss=losses.SparseCategoricalCrossentropy(from_logits=True))
        model.compile(loss="mse")


# -- weights ------------------------------------------------------------------------------------
def test_get_weights_is_keras_s_list():
    model = cytorch.models.lenet5(seed=0)
    weights = model.get_weights()
    assert isinstance(weights, list)
    assert [w.shape for w in weights] == [w.shape for layer in model.layers
                                          for w in layer.params.values()]
    assert [w.shape for w in weights[:2]] == [(5, 5, 1, 6), (6,)]   # kernel, bias
    conv = model.layers[0]
    assert [w.shape for w in conv.get_weights()] == [(5, 5, 1, 6), (6,)]
    assert model.layers[1].get_weights() == []
    other = cytorch.models.lenet5(seed=1)
    other.set_weights(weights)
    for a, b in zip(other.get_weights(), weights):
        np.testing.assert_array_equal(a, b)
    weights[0][...] = 0                                      # copies, not views
    assert np.abs(model.get_weights()[0]).sum() > 0
    with pytest.raises(ValueError, match=r"got a list of 1 arrays, the model has 10"):
        model.set_weights(weights[:1])
    with pytest.raises(ValueError, match=r"got a list of 1 arrays, the layer has 2 "
                                         r"\(kernel, bias\)"):
        conv.set_weights(weights[:1])
