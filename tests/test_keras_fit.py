"""fit/evaluate/compile conventions against Keras 3 itself (torch backend), on identical weights:
validation_split, metrics vs weighted_metrics and their names, class_weight, initial_epoch,
evaluate's list and dict.  Keras is an optional test oracle: without it every test here skips
(tests/test_fit_conventions.py checks the same conventions without it)."""
import numpy as np
import pytest

from conftest import keras_on_torch
from cytorch import Sequential, optimizers
from cytorch import layers as L

keras, _ = keras_on_torch()

RTOL = 1e-5


def pair(units, activation, loss, metrics=None, weighted_metrics=None, lr=0.1, seed=0):
    """The same Dense model in cytorch and in Keras (Keras gets cytorch's initial weights),
    compiled alike with plain SGD."""
    ours = Sequential([L.Input((4,)), L.Dense(units, activation=activation)], seed=seed)
    ours.compile(optimizer=optimizers.SGD(lr), loss=loss, metrics=metrics,
                 weighted_metrics=weighted_metrics)
    theirs = keras.Sequential([keras.Input((4,)), keras.layers.Dense(units,
                                                                     activation=activation)])
    theirs.layers[0].set_weights([p.copy() for p in ours.layers[0].params.values()])
    theirs.compile(optimizer=keras.optimizers.SGD(lr), loss=loss, metrics=metrics,
                   weighted_metrics=weighted_metrics)
    return ours, theirs


def same_weights(ours, theirs):
    for a, b in zip(ours.layers[0].params.values(), theirs.layers[0].get_weights()):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-7)


def same_logs(a, b):
    assert set(a) == set(b)
    for key in b:
        np.testing.assert_allclose(a[key], b[key], rtol=RTOL, err_msg=key)


def data(n, classes, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 4)).astype(np.float32), rng.integers(0, classes, n)


def test_validation_split_holds_out_what_keras_holds_out():
    X, y = data(10, 3)
    ours, theirs = pair(3, "softmax", "sparse_categorical_crossentropy", ["accuracy"])
    kwargs = dict(batch_size=10, epochs=2, validation_split=0.25, shuffle=False, verbose=0)
    h_ours, h_theirs = ours.fit(X, y, **kwargs), theirs.fit(X, y, **kwargs)
    same_weights(ours, theirs)        # trained on the same 7 samples
    assert h_ours.params["steps"] == h_theirs.params["steps"] == 1
    for key in h_theirs.history:
        np.testing.assert_allclose(h_ours.history[key], h_theirs.history[key], rtol=RTOL,
                                   err_msg=key)
    assert set(h_ours.history) == set(h_theirs.history)


@pytest.mark.parametrize("case", ["sparse", "sparse-distinct-names", "categorical", "binary"])
def test_metrics_and_weighted_metrics_match_keras(case):
    X, labels = data(40, 7, seed=1)
    w = np.random.default_rng(2).uniform(0.1, 3.0, 40).astype(np.float32)
    if case == "sparse-distinct-names":
        y, setup = labels, (7, "softmax", "sparse_categorical_crossentropy",
                            ["sparse_categorical_accuracy"],
                            ["acc", "sparse_top_k_categorical_accuracy"])
    elif case == "sparse":
        y, setup = labels, (7, "softmax", "sparse_categorical_crossentropy",
                            ["accuracy", "acc", "sparse_categorical_accuracy",
                             "sparse_top_k_categorical_accuracy"],
                            ["accuracy", "sparse_top_k_categorical_accuracy"])
    elif case == "categorical":
        y, setup = np.eye(7, dtype=np.float32)[labels], (
            7, "softmax", "categorical_crossentropy",
            ["accuracy", "categorical_accuracy", "top_k_categorical_accuracy", "mse", "mae"],
            ["categorical_accuracy", "mean_squared_error", "mean_absolute_error"])
    else:
        y, setup = (labels % 2).astype(np.float32), (
            1, "sigmoid", "binary_crossentropy", ["accuracy", "binary_accuracy", "mse"],
            ["acc", "mae"])
    ours, theirs = pair(*setup)
    # evaluate: the list in Keras's order, and the dict
    same_logs(ours.evaluate(X, y, sample_weight=w, return_dict=True),
              theirs.evaluate(X, y, sample_weight=w, return_dict=True, verbose=0))
    if not set(setup[3]) & set(setup[4]):
        # (where a weighted metric shares a name with an unweighted one, Keras's list repeats
        # the unweighted value and puts the weighted one last: a deliberate difference)
        np.testing.assert_allclose(ours.evaluate(X, y, sample_weight=w),
                                   theirs.evaluate(X, y, sample_weight=w, verbose=0),
                                   rtol=RTOL)
    # fit: the running metrics over an epoch of steps, and the validation ones
    kwargs = dict(batch_size=8, epochs=2, shuffle=False, verbose=0, sample_weight=w,
                  validation_data=(X[:15], y[:15], w[:15]))
    h_ours, h_theirs = ours.fit(X, y, **kwargs), theirs.fit(X, y, **kwargs)
    same_weights(ours, theirs)
    assert set(h_ours.history) == set(h_theirs.history)
    for key in h_theirs.history:
        np.testing.assert_allclose(h_ours.history[key], h_theirs.history[key], rtol=RTOL,
                                   err_msg=key)


def test_class_weight_trains_as_keras_does():
    X, y = data(30, 3, seed=3)
    ours, theirs = pair(3, "softmax", "sparse_categorical_crossentropy", ["accuracy"],
                        ["accuracy"])
    kwargs = dict(batch_size=6, epochs=2, shuffle=False, verbose=0,
                  class_weight={0: 0.25, 2: 4.0}, validation_split=0.2)
    h_ours, h_theirs = ours.fit(X, y, **kwargs), theirs.fit(X, y, **kwargs)
    same_weights(ours, theirs)
    for key in h_theirs.history:
        np.testing.assert_allclose(h_ours.history[key], h_theirs.history[key], rtol=RTOL,
                                   err_msg=key)
    with pytest.raises(ValueError):
        theirs.fit(X, y, class_weight={0: 2.0}, sample_weight=np.ones(30), verbose=0)
    with pytest.raises(ValueError, match="class_weight and sample_weight"):
        ours.fit(X, y, class_weight={0: 2.0}, sample_weight=np.ones(30), verbose=0)


def test_initial_epoch_as_in_keras():
    X, y = data(12, 3)
    ours, theirs = pair(3, "softmax", "sparse_categorical_crossentropy")
    kwargs = dict(epochs=5, initial_epoch=2, shuffle=False, verbose=0, batch_size=4)
    h_ours, h_theirs = ours.fit(X, y, **kwargs), theirs.fit(X, y, **kwargs)
    assert h_ours.epoch == h_theirs.epoch == [2, 3, 4]
    same_weights(ours, theirs)
    np.testing.assert_allclose(h_ours.history["loss"], h_theirs.history["loss"], rtol=RTOL)
