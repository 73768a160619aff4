"""Keras 3's ``train_on_batch``, ``test_on_batch`` and ``predict_on_batch``, checked without
Keras: what they return (a float, ``[loss, *metrics]`` or a dict), that the metrics start afresh
at every call, and that they agree with ``fit``, ``evaluate`` and ``predict`` on one batch.
(tests/test_keras_on_batch.py compares them with Keras itself where it is installed.)"""
import numpy as np
import pytest

from cytorch import Sequential
from cytorch import layers as L
from cytorch import optimizers


def data(n=12, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3, 3, 1)).astype(np.float32), rng.integers(0, classes, n)


def model(metrics=None, weighted_metrics=None, units=3, activation="softmax",
          loss="sparse_categorical_crossentropy"):
    m = Sequential([L.Input((3, 3, 1)), L.Conv2D(2, 2, activation="tanh"), L.Flatten(),
                    L.Dense(units, activation=activation)], seed=0)
    return m.compile(optimizer=optimizers.SGD(0.5), loss=loss, metrics=metrics,
                     weighted_metrics=weighted_metrics)


def weights_of(m):
    return [p.copy() for layer in m.layers for p in layer.params.values()]


def test_without_metrics_the_loss_is_a_float():
    X, y = data()
    loss = model().train_on_batch(X, y)
    assert type(loss) is float
    assert type(model().test_on_batch(X, y)) is float
    assert model().train_on_batch(X, y, return_dict=True).keys() == {"loss"}


def test_train_on_batch_is_one_step_of_fit_on_the_whole_batch():
    X, y = data()
    a, b = model(["accuracy"]), model(["accuracy"])
    before = a.evaluate(X, y)
    got = a.train_on_batch(X, y)
    history = b.fit(X, y, batch_size=len(X), epochs=1, shuffle=False, verbose=0)
    for wa, wb in zip(weights_of(a), weights_of(b)):
        np.testing.assert_array_equal(wa, wb)
    # measured in the step's forward pass: the weights from before the step
    assert got == pytest.approx(before, rel=1e-6)
    assert got == pytest.approx([history.history["loss"][0], history.history["accuracy"][0]],
                                rel=1e-12)


def test_metrics_start_afresh_at_every_call():
    X, y = data(24)
    m = model(["accuracy"], ["accuracy"])
    m.fit(X, y, epochs=1, batch_size=5, verbose=0)          # leaves nothing behind either
    for batch in (slice(0, 8), slice(8, 20), slice(20, 24)):
        w = np.linspace(0.5, 2.0, len(y[batch]))
        expected = m.evaluate(X[batch], y[batch], sample_weight=w, return_dict=True)
        got = m.train_on_batch(X[batch], y[batch], sample_weight=w, return_dict=True)
        assert list(got) == ["loss", "accuracy", "weighted_accuracy"]
        for key in expected:
            assert got[key] == pytest.approx(expected[key], rel=1e-6), key
        assert m.test_on_batch(X[batch], y[batch], sample_weight=w) == pytest.approx(
            list(m.evaluate(X[batch], y[batch], sample_weight=w, return_dict=True).values()),
            rel=1e-12)


def test_test_on_batch_is_evaluate_and_trains_nothing():
    X, y = data()
    m = model(["accuracy", "sparse_top_k_categorical_accuracy"])
    before = weights_of(m)
    got = m.test_on_batch(X, y, return_dict=True)
    assert got == pytest.approx(m.evaluate(X, y, return_dict=True), rel=1e-12)
    assert len(m.test_on_batch(X, y)) == 3
    for a, b in zip(before, weights_of(m)):
        np.testing.assert_array_equal(a, b)


def test_class_weight_is_the_sample_weight_it_stands_for():
    X, y = data()
    class_weight = {0: 0.5, 2: 3.0}                     # class 1 unlisted: weight 1
    a, b = model(weighted_metrics=["accuracy"]), model(weighted_metrics=["accuracy"])
    got = a.train_on_batch(X, y, class_weight=class_weight)
    want = b.train_on_batch(X, y, sample_weight=[class_weight.get(c, 1.0) for c in y])
    assert got == want
    for wa, wb in zip(weights_of(a), weights_of(b)):
        np.testing.assert_array_equal(wa, wb)


def test_class_weight_of_a_single_sigmoid_unit_names_classes_0_and_1():
    X, y = data(classes=2)
    m = model(units=1, activation="sigmoid", loss="binary_crossentropy")
    m.train_on_batch(X, y.astype(np.float32), class_weight={0: 1.0, 1: 4.0})
    with pytest.raises(ValueError, match=r"its output has 2 classes, keys must be in \[0, 1\]"):
        m.train_on_batch(X, y.astype(np.float32), class_weight={2: 1.0})


def test_predict_on_batch_is_predict_and_never_a_view_of_x():
    X, _ = data()
    m = model()
    np.testing.assert_array_equal(m.predict_on_batch(X), m.predict(X))
    reshape_only = Sequential([L.Input((3, 3, 1)), L.Flatten()])
    out = reshape_only.predict_on_batch(X)
    np.testing.assert_array_equal(out, X.reshape(len(X), -1))
    assert not np.shares_memory(out, X)


@pytest.mark.parametrize("call, error, match", [
    (lambda m, X, y: m.train_on_batch(X, y, class_weight={0: 2.0}, sample_weight=np.ones(12)),
     ValueError, "class_weight and sample_weight cannot be given together"),
    (lambda m, X, y: m.train_on_batch(X, y, class_weight={3: 2.0, 7: 1.0}), ValueError,
     r"class_weight has key\(s\) 3, 7 for classes the model does not output: its output has "
     r"3 classes, keys must be in \[0, 2\]"),
    (lambda m, X, y: m.fit(X, y, class_weight={-1: 2.0}, verbose=0), ValueError,
     r"class_weight has key\(s\) -1 for classes the model does not output"),
    (lambda m, X, y: m.train_on_batch(X, y, class_weight={"cat": 2.0}), TypeError,
     "class_weight keys must be class indices"),
    (lambda m, X, y: m.train_on_batch(X, y, class_weight={0: -1.0}), ValueError,
     r"class_weight\[0\] must be a finite number >= 0"),
    (lambda m, X, y: m.train_on_batch(X), ValueError, "y is required"),
    (lambda m, X, y: m.test_on_batch(X), ValueError, "y is required"),
    (lambda m, X, y: m.test_on_batch(X, y[:5]), ValueError,
     "x has 12 samples but y has 5: they must match"),
    (lambda m, X, y: m.test_on_batch(X, y, sample_weight=np.ones(3)), ValueError,
     r"sample_weight must have shape \(12,\)"),
    (lambda m, X, y: m.predict_on_batch(X[..., 0]), ValueError, "x must be a 4-D array"),
])
def test_bad_input_is_named(call, error, match):
    X, y = data()
    m = model()
    before = weights_of(m)
    with pytest.raises(error, match=match):
        call(m, X, y)
    for a, b in zip(before, weights_of(m)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("method", ["train_on_batch", "test_on_batch"])
def test_an_uncompiled_model_says_compile_first(method):
    X, y = data()
    m = Sequential([L.Input((3, 3, 1)), L.Flatten(), L.Dense(3, activation="softmax")])
    with pytest.raises(RuntimeError, match=rf"call model.compile\(.*\) before {method}\(\)"):
        getattr(m, method)(X, y)
