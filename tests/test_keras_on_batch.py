"""``train_on_batch``, ``test_on_batch`` and ``predict_on_batch`` against Keras 3 itself (torch
backend) on identical weights: the returned float, list or dict, class_weight and sample_weight,
a sequence of calls (Keras resets its metrics at every call).  Keras is an optional test oracle:
without it every test here skips (tests/test_on_batch.py checks the same without it)."""
import numpy as np
import pytest

from conftest import keras_on_torch
from cytorch import Sequential, optimizers
from cytorch import layers as L

keras, _ = keras_on_torch()

RTOL = 1e-5


def pair(metrics=None, weighted_metrics=None, units=3, activation="softmax",
         loss="sparse_categorical_crossentropy"):
    ours = Sequential([L.Input((4,)), L.Dense(units, activation=activation)], seed=0)
    ours.compile(optimizer=optimizers.SGD(0.3), loss=loss, metrics=metrics,
                 weighted_metrics=weighted_metrics)
    theirs = keras.Sequential([keras.Input((4,)), keras.layers.Dense(units,
                                                                     activation=activation)])
    theirs.layers[0].set_weights([p.copy() for p in ours.layers[0].params.values()])
    theirs.compile(optimizer=keras.optimizers.SGD(0.3), loss=loss, metrics=metrics,
                   weighted_metrics=weighted_metrics)
    return ours, theirs


def data(n, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 4)).astype(np.float32), rng.integers(0, classes, n)


def same_weights(ours, theirs):
    for a, b in zip(ours.layers[0].params.values(), theirs.layers[0].get_weights()):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-7)


@pytest.mark.parametrize("metrics, weighted_metrics", [
    (None, None), (["accuracy"], None), (["acc"], ["sparse_categorical_accuracy"]),
])
def test_a_sequence_of_calls_returns_what_keras_returns(metrics, weighted_metrics):
    X, y = data(30)
    ours, theirs = pair(metrics, weighted_metrics)
    w = np.random.default_rng(1).uniform(0.2, 2.0, 30).astype(np.float32)
    cw = {0: 0.5, 2: 3.0}
    for k, (batch, kwargs) in enumerate([(slice(0, 8), {}), (slice(8, 18), {}),
                                         (slice(18, 30), {"class_weight": cw}),
                                         (slice(0, 10), {"sample_weight": w[:10]})]):
        if "sample_weight" in kwargs or "class_weight" in kwargs:
            a = ours.train_on_batch(X[batch], y[batch], return_dict=True, **kwargs)
            b = theirs.train_on_batch(X[batch], y[batch], return_dict=True, **kwargs)
            assert set(a) == set(b)
            for key in b:
                np.testing.assert_allclose(a[key], b[key], rtol=RTOL, err_msg=f"{k} {key}")
        else:
            a, b = (ours.train_on_batch(X[batch], y[batch]),
                    theirs.train_on_batch(X[batch], y[batch]))
            assert type(a) is type(b)            # a float, or a list
            np.testing.assert_allclose(a, b, rtol=RTOL)
        same_weights(ours, theirs)
    a = ours.test_on_batch(X[5:20], y[5:20], sample_weight=w[5:20], return_dict=True)
    b = theirs.test_on_batch(X[5:20], y[5:20], sample_weight=w[5:20], return_dict=True)
    assert set(a) == set(b)
    for key in b:
        np.testing.assert_allclose(a[key], b[key], rtol=RTOL, err_msg=key)
    np.testing.assert_allclose(ours.test_on_batch(X, y), theirs.test_on_batch(X, y), rtol=RTOL)
    np.testing.assert_allclose(ours.predict_on_batch(X), theirs.predict_on_batch(X),
                               rtol=RTOL, atol=1e-7)


def test_binary_class_weight_as_keras():
    X, labels = data(16, 2, seed=2)
    y = labels.astype(np.float32)
    ours, theirs = pair(["binary_accuracy"], units=1, activation="sigmoid",
                        loss="binary_crossentropy")
    for _ in range(3):
        np.testing.assert_allclose(ours.train_on_batch(X, y, class_weight={1: 3.0}),
                                   theirs.train_on_batch(X, y, class_weight={1: 3.0}),
                                   rtol=RTOL)
    same_weights(ours, theirs)


def test_class_weight_with_sample_weight_is_refused_by_both():
    X, y = data(6)
    ours, theirs = pair()
    for m in (ours, theirs):
        with pytest.raises(ValueError, match="class_weight"):
            m.train_on_batch(X, y, class_weight={0: 2.0}, sample_weight=np.ones(6))
