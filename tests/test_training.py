"""Training: losses (finite differences), optimizers, fit/evaluate/predict, callbacks, Ctrl-C."""
import os
import re

import numpy as np
import pytest

from cytorch import Model, Sequential, ShapeError, callbacks, losses, optimizers
from cytorch import layers as L
from cytorch._gradcheck import numerical_gradient, relative_error


def blobs(n=120, seed=0):
    """Three separable clusters of 2x2x1 'images'."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = np.array([[1.0, -1.0, 0.5, 0.0], [-1.0, 1.0, 0.0, 0.5], [0.0, 0.0, -1.0, -1.0]])
    X = centres[y] + 0.3 * rng.standard_normal((n, 4))
    return X.reshape(n, 2, 2, 1).astype(np.float32), y


def weights_of(model):
    """Copies of every parameter, in layer order (names differ between two built models)."""
    return [p.copy() for layer in model.layers for p in layer.params.values()]


def small_model(seed=0, dtype="float32"):
    return Sequential([L.Input((2, 2, 1)), L.Flatten(dtype=dtype),
                       L.Dense(8, activation="tanh", dtype=dtype),
                       L.Dense(3, activation="softmax", dtype=dtype)], seed=seed)


# -- losses ------------------------------------------------------------------------------------
LOSS_CASES = [
    ("sparse_categorical_crossentropy", False), ("sparse_categorical_crossentropy", True),
    ("categorical_crossentropy", False), ("categorical_crossentropy", True),
    ("binary_crossentropy", False), ("binary_crossentropy", True),
    ("mse", False), ("mae", False),
]


@pytest.mark.parametrize("name, logits", LOSS_CASES)
@pytest.mark.parametrize("weighted", [False, True])
def test_loss_gradient_matches_finite_differences(name, logits, weighted):
    rng = np.random.default_rng(1)
    N, K = 5, 4
    loss = losses.get(name)
    if name == "sparse_categorical_crossentropy":
        y = rng.integers(0, K, N)
    elif name == "categorical_crossentropy":
        y = np.eye(K)[rng.integers(0, K, N)]
    else:
        y = rng.random((N, K)).round() if name == "binary_crossentropy" else rng.random((N, K))
    if logits:
        p = rng.standard_normal((N, K)) * 2
    elif name in ("sparse_categorical_crossentropy", "categorical_crossentropy"):
        p = losses.softmax(rng.standard_normal((N, K)))
    else:
        p = rng.uniform(0.1, 0.9, (N, K))
    w = rng.uniform(0.5, 2.0, N) if weighted else None
    value, grad = loss.gradient(y, p, w, from_logits=logits)
    numeric = numerical_gradient(
        lambda q: np.array(loss(y, q, w, from_logits=logits)), p, np.array(1.0))
    assert grad.shape == p.shape
    assert relative_error(grad, numeric) < 1e-6
    assert value == pytest.approx(loss(y, p, w, from_logits=logits))


def test_fused_cross_entropy_is_stable_and_matches_the_unfused_value():
    loss = losses.get("sparse_categorical_crossentropy")
    z = np.array([[1000.0, 0.0, -1000.0], [0.0, 0.5, 1.0]])
    y = np.array([2, 1])
    value, dz = loss.gradient(y, z, from_logits=True)
    assert np.isfinite(value) and np.isfinite(dz).all()
    assert value == pytest.approx((2000 + (np.log(np.exp(-0.5) + 1 + np.exp(0.5)))) / 2)
    # the fused gradient is (p - onehot) / N
    np.testing.assert_allclose(dz, (losses.softmax(z) - np.eye(3)[y]) / 2, atol=1e-12)
    p = losses.softmax(z[1:])
    assert loss(y[1:], z[1:], from_logits=True) == pytest.approx(loss(y[1:], p))


def test_sample_weight_is_the_keras_mean():
    loss = losses.get("mse")
    y, p = np.zeros((2, 1)), np.array([[1.0], [2.0]])
    assert loss(y, p, np.array([1.0, 0.0])) == pytest.approx(0.5)   # (1*1 + 0*4) / 2
    assert loss(y, p, np.array([2.0, 2.0])) == pytest.approx(5.0)


def test_losses_and_optimizers_by_name():
    assert isinstance(losses.get("MSE"), losses.MeanSquaredError)
    with pytest.raises(KeyError, match="did you mean 'mse'"):
        losses.get("mse2")
    assert optimizers.get("adam") is optimizers.Adam
    with pytest.raises(KeyError, match="did you mean 'sgd'"):
        optimizers.get("sdg")
    with pytest.raises(ValueError, match="learning_rate must be a positive float, got -1"):
        optimizers.SGD(learning_rate=-1)


def test_sparse_labels_out_of_range_are_named():
    model = small_model().compile(loss="sparse_categorical_crossentropy")
    X, _ = blobs(10)
    with pytest.raises(ValueError, match=r"labels from 0 to 5.*outputs 3 classes"):
        model.fit(X, np.arange(10) % 6, verbose=0)


# -- optimizers --------------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", [
    optimizers.SGD(0.1), optimizers.SGD(0.05, momentum=0.9),
    optimizers.SGD(0.05, momentum=0.9, nesterov=True), optimizers.RMSprop(0.01),
    optimizers.Adagrad(0.1), optimizers.Adam(0.01), optimizers.Adam(0.01, weight_decay=1e-3)])
def test_each_optimizer_reduces_the_loss(optimizer):
    X, y = blobs()
    model = small_model(seed=1).compile(optimizer=optimizer, metrics=["accuracy"])
    before = model.evaluate(X, y)[0]
    history = model.fit(X, y, batch_size=16, epochs=8, verbose=0, seed=0)
    after, accuracy = model.evaluate(X, y)
    assert after < 0.6 * before, (before, history.history["loss"])
    assert accuracy > 0.9


def test_sgd_step_is_exactly_lr_times_gradient():
    model = small_model(seed=0, dtype="float64")
    model.compile(optimizer=optimizers.SGD(0.5), loss="mse")
    X, _ = blobs(4)
    target = np.zeros((4, 3))
    before = [p.copy() for layer in model.layers for p in layer.params.values()]
    model.train_on_batch(X, target)
    grads = [g for layer in model.layers for g in layer.grads.values()]
    after = [p for layer in model.layers for p in layer.params.values()]
    for b, g, a in zip(before, grads, after):
        np.testing.assert_allclose(a, b - 0.5 * g, rtol=1e-12, atol=1e-15)


def test_weight_decay_is_decoupled_as_in_keras():
    # θ <- θ - lr λ θ before the update, whatever the gradient: with a zero gradient Adam moves
    # the weights by exactly that (an L2 term in the gradient would feed Adam's moments)
    for opt in (optimizers.SGD(0.1, weight_decay=0.5), optimizers.Adam(0.1, weight_decay=0.5),
                optimizers.AdamW(0.1, weight_decay=0.5)):
        layer = L.Dense(2, dtype="float64", seed=0)
        layer.build((3,))
        w0 = layer.params["kernel"].copy()
        layer.grads["kernel"][...] = 0
        layer.grads["bias"][...] = 0
        opt.apply_gradients([layer])
        np.testing.assert_allclose(layer.params["kernel"], w0 * (1 - 0.1 * 0.5), rtol=1e-12)


# -- fit, evaluate, predict --------------------------------------------------------------------
def test_same_seed_gives_bit_identical_training():
    X, y = blobs()
    results = []
    for _ in range(2):
        model = Sequential([L.Input((2, 2, 1)), L.Flatten(), L.Dense(8, activation="relu"),
                            L.Dropout(0.3), L.Dense(3, activation="softmax")], seed=3)
        model.compile(optimizer="adam")
        model.fit(X, y, batch_size=10, epochs=2, verbose=0, seed=5)
        results.append(model.get_weights())
    assert len(results[0]) == 4
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_predict_is_batched_and_returns_probabilities():
    X, y = blobs(50)
    model = small_model().compile(optimizer="adam")
    model.fit(X, y, epochs=1, verbose=0)
    full = model.predict(X, batch_size=1000)
    np.testing.assert_allclose(model.predict(X, batch_size=7), full, rtol=1e-6)
    np.testing.assert_allclose(full.sum(axis=1), 1, rtol=1e-5)
    assert full.dtype == np.float32


def test_input_dtypes_are_converted():
    X, y = blobs(30)
    model = small_model().compile(optimizer="adam")
    as_uint8 = (np.clip(X, 0, 2) * 100).astype(np.uint8)
    model.fit(as_uint8, y, verbose=0)
    out = model.predict(as_uint8.astype(np.int64))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, model.predict(as_uint8.astype(np.float64)), rtol=1e-6)


def test_validation_split_and_data_are_logged():
    X, y = blobs()
    model = small_model().compile(optimizer="adam", metrics=["accuracy"])
    history = model.fit(X, y, epochs=2, validation_split=0.25, verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(history.history["val_loss"]) == 2
    history = model.fit(X, y, epochs=1, validation_data=(X[:10], y[:10]), verbose=0)
    loss, acc = model.evaluate(X[:10], y[:10])
    assert history.history["val_loss"][0] == pytest.approx(loss)
    assert history.history["val_accuracy"][0] == pytest.approx(acc)


def test_evaluate_without_metrics_returns_the_loss():
    X, y = blobs(20)
    model = small_model().compile(optimizer="sgd")
    assert isinstance(model.evaluate(X, y), float)


@pytest.mark.parametrize("bad, match, error", [
    (lambda X: X[..., 0], r"x must be a 4-D array .* add a channel axis", ShapeError),
    (lambda X: np.repeat(X, 3, axis=-1), r"x has 3 channels .* expects 1", ShapeError),
    (lambda X: np.where(np.arange(len(X))[:, None, None, None] == 3, np.nan, X),
     r"x contains 4 NaN", ValueError),
    (lambda X: X[:0], "x must not be empty", ShapeError),
    (lambda X: X.astype(complex), "x must hold real numbers", TypeError),
])
def test_bad_input_is_named(bad, match, error):
    X, y = blobs(20)
    model = small_model().compile(optimizer="adam")
    with pytest.raises(error, match=match):
        model.fit(bad(X), y[:len(bad(X))] if len(bad(X)) else y[:0], verbose=0)


def test_x_and_y_lengths_must_match():
    X, y = blobs(20)
    model = small_model().compile(optimizer="adam")
    with pytest.raises(ValueError, match="x has 20 samples but y has 19"):
        model.fit(X, y[:19], verbose=0)
    with pytest.raises(RuntimeError, match="compile"):
        small_model().fit(X, y)


def test_kernels_skip_their_nan_scan_inside_fit_only(monkeypatch):
    # fit checked x once: its layers run with check_finite=False in their contexts; a layer
    # called on its own (here from a callback, during fit) still scans its input
    from cytorch import checks   # where the layers' as_input lives
    X, y = blobs(20)
    model = small_model().compile(optimizer="adam")
    scans = []
    as_float_array = checks.as_float_array

    def spy(x, name, dtype=None, check_finite=True):
        scans.append(check_finite)
        return as_float_array(x, name, dtype=dtype, check_finite=check_finite)
    monkeypatch.setattr(checks, "as_float_array", spy)
    bad = X[:2].reshape(2, -1).copy()
    bad[0, 0] = np.nan

    def direct_call(batch, logs):
        with pytest.raises(ValueError, match="contains 1 NaN"):
            model.layers[1].forward(bad)
    model.fit(X, y, verbose=0, callbacks=[callbacks.LambdaCallback(on_batch_end=direct_call)])
    assert scans == [True]  # the direct calls only
    assert not any(c.check_finite for c in model._contexts(logits=True, training=True))


HOOKS = ["on_train_begin", "on_epoch_begin", "on_batch_begin", "on_batch_end", "on_epoch_end",
         "on_train_end"]


class _Probe(callbacks.Callback):
    """Calls predict and evaluate from every hook and keeps them with the weights they saw."""

    def __init__(self, X, y):
        self.X, self.y, self.seen = X, y, []

    def _probe(self, hook):
        self.seen.append((hook, self.model.get_weights(), self.model.predict(self.X),
                          self.model.evaluate(self.X, self.y)))

    def on_train_begin(self, logs=None): self._probe("on_train_begin")
    def on_epoch_begin(self, epoch, logs=None): self._probe("on_epoch_begin")
    def on_batch_begin(self, batch, logs=None): self._probe("on_batch_begin")
    def on_batch_end(self, batch, logs=None): self._probe("on_batch_end")
    def on_epoch_end(self, epoch, logs=None): self._probe("on_epoch_end")
    def on_train_end(self, logs=None): self._probe("on_train_end")


def _every_mode_model(seed=0):
    """Conv + ReLU read only by a max pool (the relu_after_pooling pass), dropout, and a
    softmax output fused with the loss: every mode a training step passes to its layers."""
    return Sequential([L.Input((6, 6, 1)), L.Conv2D(3, 3, activation="relu"),
                       L.MaxPooling2D(2), L.Flatten(), L.Dropout(0.2),
                       L.Dense(3, activation="softmax")], seed=seed)


@pytest.mark.parametrize("metrics", [None, ["accuracy"]])
def test_predict_and_evaluate_in_every_callback_hook_give_what_they_give_after_fit(metrics):
    # the training loop's modes (logits for the fused loss, no NaN scans, ReLU after pooling,
    # no dx for the first layer) are arguments of its own calls: a nested call cannot see them
    rng = np.random.default_rng(0)
    X = rng.standard_normal((24, 6, 6, 1)).astype(np.float32)
    y = rng.integers(0, 3, 24)
    model = _every_mode_model().compile(optimizer="adam", metrics=metrics)
    probe = _Probe(X[:7], y[:7])
    model.fit(X, y, batch_size=8, epochs=2, verbose=0, seed=1, callbacks=[probe],
              validation_data=(X[:5], y[:5]))
    for hook, weights, predicted, evaluated in probe.seen:
        model.set_weights(weights)
        np.testing.assert_array_equal(predicted, model.predict(X[:7]), err_msg=hook)
        assert evaluated == model.evaluate(X[:7], y[:7]), hook
        np.testing.assert_allclose(predicted.sum(axis=1), 1, rtol=1e-5, err_msg=hook)
    assert sorted({hook for hook, *_ in probe.seen}) == sorted(HOOKS)
    assert len(probe.seen) == 1 + 2 * (1 + 3 + 3 + 1) + 1
    # and the calls in the callbacks did not change the training by a bit
    plain = _every_mode_model().compile(optimizer="adam", metrics=metrics)
    plain.fit(X, y, batch_size=8, epochs=2, verbose=0, seed=1, validation_data=(X[:5], y[:5]))
    model.set_weights(probe.seen[-1][1])
    for a, b in zip(weights_of(plain), weights_of(model), strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_loss_skips_its_checks_inside_fit_and_evaluate(monkeypatch):
    """``loss.gradient`` scans y_pred, y_true and the weights for NaN; the loop calls
    ``loss._gradient`` on data ``fit`` checked once, so no batch pays for a scan."""
    X, y = blobs(20)
    model = small_model().compile(optimizer="adam", metrics=["accuracy"])

    def scan(*args, **kwargs):
        raise AssertionError("the loss checked a batch")

    monkeypatch.setattr(losses, "as_float_array", scan)
    monkeypatch.setattr(losses, "_check_finite", scan)
    model.fit(X, y, batch_size=4, epochs=2, verbose=0, validation_split=0.25,
              sample_weight=np.linspace(0.5, 1.5, 20))
    model.evaluate(X, y)
    with pytest.raises(AssertionError, match="checked a batch"):
        model.loss(y, model.predict(X))


class _PlainScale(L.Layer):
    """The README's plugin example: the documented ``forward(x, training=False)``, no ctx."""

    def build(self, input_shape):
        self.params["gamma"] = np.ones(input_shape[-1], dtype=self.dtype)
        super().build(input_shape)

    def forward(self, x, training=False):
        self._x = x
        return x * self.params["gamma"]

    def backward(self, dout):
        self.grads["gamma"] = (dout * self._x).reshape(-1, self._x.shape[-1]).sum(0)
        return dout * self.params["gamma"]


def test_layers_with_the_plain_forward_signature_work_in_fit_and_in_callbacks():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((24, 6, 6, 1)).astype(np.float32)
    y = rng.integers(0, 3, 24)
    model = Sequential([L.Input((6, 6, 1)), _PlainScale(), L.Conv2D(2, 3, activation="relu"),
                        L.MaxPooling2D(2), L.Flatten(), _PlainScale(),
                        L.Dense(3, activation="softmax")], seed=0)
    model.compile(optimizer="adam")
    probe = _Probe(X[:5], y[:5])
    model.fit(X, y, batch_size=8, verbose=0, callbacks=[probe])
    for hook, weights, predicted, evaluated in probe.seen:
        model.set_weights(weights)
        np.testing.assert_array_equal(predicted, model.predict(X[:5]), err_msg=hook)
        assert evaluated == model.evaluate(X[:5], y[:5]), hook
    assert not np.array_equal(model.layers[0].params["gamma"], 1)  # it trained


def _relu_pool_model(pool, dtype):
    i = L.Input((9, 9, 2))
    c = L.Conv2D(3, 2, activation="relu", dtype=dtype)(i)       # read by the pool only
    p = pool(c)
    skip = L.Conv2D(3, 2, activation="relu", dtype=dtype)(i)    # read by a pool and a Flatten
    q = L.MaxPooling2D(2, dtype=dtype)(skip)
    a = L.Activation("relu", dtype=dtype)(L.Conv2D(3, 2, dtype=dtype)(i))
    r = L.MinPooling2D(2, dtype=dtype)(a)                        # Activation layer -> min pool
    t = L.AveragePooling2D(2, dtype=dtype)(L.Conv2D(3, 2, activation="relu", dtype=dtype)(i))
    flat = L.Concatenate()([L.Flatten()(x) for x in (p, q, r, t)] + [L.Flatten()(skip)])
    return Model(i, L.Dense(4, activation="softmax", dtype=dtype)(flat), seed=1).compile()


def _relu_pool_pairs(model):
    """(layer, pool) names the relu_after_pooling pass pairs, from the training contexts."""
    contexts = dict(zip(model.layers, model._contexts(logits=True, training=True)))
    return sorted((node.inputs[0].layer.name, type(node.layer).__name__)
                  for node in model._order if contexts[node.layer].apply_relu
                  and contexts[node.inputs[0].layer].defer_relu)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("pool", [lambda d: L.MaxPooling2D(2, dtype=d),
                                  lambda d: L.MaxPooling2D(3, strides=2, dtype=d)],
                         ids=["2x2", "3x3-stride-2-overlapping"])
def test_relu_after_pooling_gives_the_same_outputs_and_gradients(dtype, pool):
    # In a training step, a ReLU read only by a max/min pooling layer is applied by that layer,
    # after pooling, with its derivative: the outputs and every gradient must stay what they were
    model = _relu_pool_model(lambda x: pool(dtype)(x), dtype)
    convs = [layer for layer in model.layers if isinstance(layer, L.Conv2D)]
    act = next(layer for layer in model.layers if isinstance(layer, L.Activation))
    assert _relu_pool_pairs(model) == sorted([(convs[0].name, "MaxPooling2D"),
                                              (act.name, "MinPooling2D")])
    rng = np.random.default_rng(0)
    x = [rng.standard_normal((6, 9, 9, 2)).astype(dtype)]
    y = rng.integers(0, 4, 6)
    x[0][0, :3, :3] = 0  # a patch where a whole window is <= 0 after the conv (bias 0)
    weights = model.get_weights()
    grads, outs = {}, {}
    for passes in [(), ("relu_after_pooling",)]:
        model.graph_passes = passes
        model.set_weights(weights)
        with model._running():
            _, outs[passes] = model._step(x, y, None, True,
                                          model._contexts(logits=True, training=True))
            grads[passes] = {(layer.name, k): g.copy() for layer in model.layers
                             for k, g in layer.grads.items()}
            # (the pooling kernel applied the ReLU: its cache says so, backward reads it)
            masks = [layer._cache[0].get("activation") == "relu" for layer in model.layers
                     if isinstance(layer, (L.MaxPooling2D, L.MinPooling2D))]
            assert any(masks) == bool(passes)
    plain, rewritten = grads[()], grads[("relu_after_pooling",)]
    np.testing.assert_array_equal(outs[()], outs[("relu_after_pooling",)])
    assert plain.keys() == rewritten.keys()
    for key, g in plain.items():
        np.testing.assert_array_equal(rewritten[key], g, err_msg=str(key))


def test_relu_after_pooling_changes_no_weight_after_an_epoch():
    # the declared graph pass: Keras-MNIST's two conv + max-pool stages, one epoch with and
    # one without it, bit-identical weights
    from cytorch import models
    rng = np.random.default_rng(0)
    x = rng.random((24, 16, 16, 1)).astype(np.float32) - 0.5
    y = rng.integers(0, 10, 24)
    weights = {}
    for passes in [(), ("relu_after_pooling",)]:
        model = models.keras_mnist(input_shape=(16, 16, 1), seed=0).compile()
        model.graph_passes = passes
        assert len(_relu_pool_pairs(model)) == 2 * len(passes)
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=0)
        weights[passes] = weights_of(model)
    plain, rewritten = weights.values()
    for a, b in zip(plain, rewritten, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predict_and_evaluate_apply_the_graph_passes_and_give_the_same_numbers(dtype):
    # predict and evaluate run the passes too (Keras-MNIST's ReLUs on the pooled maps): the
    # probabilities and the loss must be those of the plain graph, bit for bit
    model = _relu_pool_model(lambda x: L.MaxPooling2D(3, strides=2, dtype=dtype)(x), dtype)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((7, 9, 9, 2)).astype(dtype)
    x[0, :3, :3] = 0
    y = rng.integers(0, 4, 7)
    pools = [layer for layer in model.layers if isinstance(layer, (L.MaxPooling2D,
                                                                   L.MinPooling2D))]
    outs, losses = {}, {}
    for passes in [(), ("relu_after_pooling",)]:
        model.graph_passes = passes
        outs[passes] = model.predict(x, batch_size=3)
        losses[passes] = model.evaluate(x, y, batch_size=3)
        for logits in (False, True):   # the contexts of predict, of evaluate
            contexts = dict(zip(model.layers, model._contexts(logits=logits)))
            assert any(contexts[layer].apply_relu for layer in pools) == bool(passes)
    np.testing.assert_array_equal(outs[()], outs[("relu_after_pooling",)])
    assert losses[()] == losses[("relu_after_pooling",)]


def test_an_unknown_graph_pass_is_named():
    model = small_model().compile()
    model.graph_passes = ("relu_before_pooling",)
    with pytest.raises(KeyError, match="unknown graph pass 'relu_before_pooling'; known "
                                       "passes: \\['conv_max_pool', 'relu_after_pooling'\\]"):
        model.fit(*blobs(10), verbose=0)


def test_callbacks_see_every_layer_as_built_between_steps():
    # the training step runs conv + pool with the ReLU moved (the pools keep a ReLU mask); a
    # callback, between steps, calling a layer gets what the layer computes on its own
    from cytorch import models
    model = models.keras_mnist(input_shape=(16, 16, 1), seed=0).compile()
    conv, pool = model.layers[0], model.layers[1]
    assert _relu_pool_pairs(model)[0] == (conv.name, "MaxPooling2D")
    seen = []

    def look(batch, logs):
        seen.append((pool._cache is None, bool((conv.forward(x[:2]) >= 0).all()),
                     pool.forward(conv.forward(x[:2])).min() >= 0))
    rng = np.random.default_rng(0)
    x = rng.random((8, 16, 16, 1)) - 0.5
    model.fit(x, rng.integers(0, 10, 8), batch_size=4, verbose=0,
              callbacks=[callbacks.LambdaCallback(on_batch_end=look)])
    assert seen == [(False, True, True)] * 2


# -- callbacks ---------------------------------------------------------------------------------
def test_early_stopping_stops_and_restores_the_best_weights():
    X, y = blobs()
    model = small_model().compile(optimizer=optimizers.SGD(0.05), metrics=["accuracy"])
    snapshots = []
    record = callbacks.LambdaCallback(on_epoch_end=lambda e, logs: snapshots.append(
        (logs["loss"], model.get_weights())))
    # a monitor that only ever gets worse after epoch 0 ("max" of the loss)
    stop = callbacks.EarlyStopping(monitor="loss", mode="max", patience=2,
                                   restore_best_weights=True)
    history = model.fit(X, y, epochs=20, verbose=0, callbacks=[record, stop])
    assert len(history.epoch) == 4 and stop.stopped_epoch == 3
    best = snapshots[0][1]
    for value, saved in zip(model.get_weights(), best):
        np.testing.assert_array_equal(value, saved)


def test_reduce_lr_on_plateau_lowers_the_learning_rate():
    X, y = blobs(30)
    opt = optimizers.Adam(0.01)
    model = small_model().compile(optimizer=opt)
    cb = callbacks.ReduceLROnPlateau(monitor="loss", mode="max", factor=0.5, patience=1,
                                     min_lr=0.003)
    history = model.fit(X, y, epochs=5, verbose=0, callbacks=[cb])
    assert opt.learning_rate == pytest.approx(0.003)  # 0.01 -> 0.005 -> 0.003 (floor)
    assert history.history["learning_rate"][:3] == pytest.approx([0.01, 0.01, 0.005])


def test_model_checkpoint_writes_loadable_files(tmp_path):
    import cytorch
    X, y = blobs(30)
    model = small_model().compile(optimizer="adam")
    path = tmp_path / "ckpt-{epoch:02d}.npz"
    model.fit(X, y, epochs=2, verbose=0,
              callbacks=[callbacks.ModelCheckpoint(str(path), monitor="loss")])
    assert sorted(os.listdir(tmp_path)) == ["ckpt-01.npz", "ckpt-02.npz"]
    best = tmp_path / "best.npz"
    model.fit(X, y, epochs=2, verbose=0, callbacks=[
        callbacks.ModelCheckpoint(best, monitor="loss", save_best_only=True)])
    np.testing.assert_allclose(cytorch.load_model(best).predict(X), model.predict(X), rtol=1e-6)


def test_lambda_callback_hooks_run_in_order():
    X, y = blobs(30)
    events = []
    cb = callbacks.LambdaCallback(
        on_train_begin=lambda logs: events.append("begin"),
        on_epoch_begin=lambda e, logs: events.append(f"e{e}"),
        on_batch_end=lambda b, logs: events.append(f"b{b}"),
        on_epoch_end=lambda e, logs: events.append(f"end{e}"),
        on_train_end=lambda logs: events.append("done"))
    small_model().compile(optimizer="adam").fit(X, y, batch_size=16, epochs=2, verbose=0,
                                                callbacks=[cb])
    assert events == ["begin", "e0", "b0", "b1", "end0", "e1", "b0", "b1", "end1", "done"]


def test_ctrl_c_stops_after_the_batch_and_keeps_the_model(capsys):
    X, y = blobs()

    def interrupt(batch, logs):
        if batch == 3:
            raise KeyboardInterrupt

    model = small_model().compile(optimizer="adam")
    history = model.fit(X, y, batch_size=8, epochs=3, verbose=0,
                        callbacks=[callbacks.LambdaCallback(on_batch_end=interrupt)])
    assert isinstance(history, callbacks.History) and history.epoch == []
    assert "interrupted during epoch 1, after batch 4" in capsys.readouterr().err
    out = model.predict(X)
    np.testing.assert_allclose(out.sum(axis=1), 1, rtol=1e-5)  # probabilities, not logits
    model.fit(X, y, epochs=1, verbose=0)  # still trainable


def test_progress_bar_on_stderr(capsys):
    X, y = blobs(64)
    model = small_model().compile(optimizer="adam", metrics=["accuracy"])
    model.fit(X, y, batch_size=16, epochs=2, verbose=1, validation_split=0.25)
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err
    assert "Epoch 1/2" in err and "Epoch 2/2" in err
    assert "3/3 [==============================]" in err
    assert "loss: " in err and "accuracy: " in err and "val_accuracy: " in err
    model.fit(X, y, batch_size=16, epochs=2, verbose=2)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and re.match(r"Epoch 2/2 - \S+ \d+[mu]?s/step - loss", lines[1])


def test_history_plot_delegates_to_viz(monkeypatch):
    import sys
    import types
    calls = []
    fake = types.ModuleType("cytorch.viz")
    fake.plot_history = lambda history, **kw: calls.append((history, kw)) or "axes"
    monkeypatch.setitem(sys.modules, "cytorch.viz", fake)
    h = callbacks.History()
    assert h.plot(metric="loss") == "axes" and calls == [(h, {"metric": "loss"})]
