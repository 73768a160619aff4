"""Keras 3's fit/evaluate/compile conventions, checked without Keras: validation_split,
metrics vs weighted_metrics, the metric names, class_weight, initial_epoch, return_dict.
(tests/test_keras_fit.py compares the same things with Keras itself where it is installed.)"""
import numpy as np
import pytest

from cytorch import Sequential, ShapeError, callbacks, metrics
from cytorch import layers as L
from cytorch import optimizers


def data(n=40, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 2, 2, 1)).astype(np.float32), rng.integers(0, classes, n)


def model(units=3, activation="softmax", seed=0):
    return Sequential([L.Input((2, 2, 1)), L.Flatten(), L.Dense(units, activation=activation)],
                      seed=seed)


def weights_of(m):
    return [p.copy() for layer in m.layers for p in layer.params.values()]


class Sizes(callbacks.Callback):
    """The number of training samples fit saw (from the batches' sizes)."""

    def on_train_begin(self, logs=None):
        self.samples = self.params["samples"]


# -- validation_split --------------------------------------------------------------------------
@pytest.mark.parametrize("n, split, n_train", [(10, 0.25, 7), (1437, 0.1, 1293), (10, 0.3, 7),
                                               (3, 0.5, 1)])
def test_validation_split_trains_on_the_first_floor_n_times_1_minus_split(n, split, n_train):
    X, y = data(n)
    m = model().compile(optimizer="sgd", metrics=["accuracy"])
    sizes = Sizes()
    history = m.fit(X, y, batch_size=64, epochs=1, verbose=0, validation_split=split,
                    shuffle=False, callbacks=[sizes])
    assert sizes.samples == n_train
    loss, acc = m.evaluate(X[n_train:], y[n_train:])
    assert history.history["val_loss"] == [pytest.approx(loss, rel=1e-12)]
    assert history.history["val_accuracy"] == [acc]
    # the first n_train samples were trained on: the same step as fitting them alone
    again = model().compile(optimizer="sgd")
    again.fit(X[:n_train], y[:n_train], batch_size=64, verbose=0, shuffle=False)
    for a, b in zip(weights_of(m), weights_of(again)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n, split, match", [
    (2, 0.6, r"validation_split=0.6 of 2 samples leaves floor\(2 \* \(1 - 0.6\)\) = 0 for "
             r"training and 2 for validation; both need at least 1"),
    (10, 1e-17, r"= 10 for training and 0 for validation"),
])
def test_a_validation_split_leaving_nothing_on_one_side_is_refused(n, split, match):
    X, y = data(n)
    with pytest.raises(ValueError, match=match):
        model().compile().fit(X, y, validation_split=split, verbose=0)


# -- metrics and weighted_metrics ----------------------------------------------------------------
def test_metrics_ignore_sample_weight_and_weighted_metrics_use_it():
    X, y = data(30)
    w = np.linspace(0.1, 3.0, 30)
    m = model().compile(optimizer="sgd", metrics=["accuracy"], weighted_metrics=["accuracy"])
    hits = (m.predict(X).argmax(axis=1) == y).astype(float)
    logs = m.evaluate(X, y, sample_weight=w, return_dict=True)
    assert list(logs) == ["loss", "accuracy", "weighted_accuracy"]
    assert logs["accuracy"] == pytest.approx(hits.mean(), rel=1e-12)
    assert logs["weighted_accuracy"] == pytest.approx(w @ hits / w.sum(), rel=1e-12)
    assert logs["accuracy"] != logs["weighted_accuracy"]
    # without weights the two agree; the loss is the same whatever the metrics
    plain = m.evaluate(X, y, return_dict=True)
    assert plain["accuracy"] == plain["weighted_accuracy"]
    bare = model().compile(optimizer="sgd")
    assert bare.evaluate(X, y, sample_weight=w) == logs["loss"]


def test_fit_logs_every_metric_under_its_keras_name():
    X, y = data(30)
    m = model(6).compile(optimizer="sgd", metrics=["acc", "sparse_categorical_accuracy",
                                                   "sparse_top_k_categorical_accuracy"],
                         weighted_metrics=["acc"])
    history = m.fit(X, y, epochs=2, verbose=0, validation_split=0.2,
                    sample_weight=np.linspace(0.5, 2, 30))
    names = ["acc", "sparse_categorical_accuracy", "sparse_top_k_categorical_accuracy",
             "weighted_acc"]
    assert list(history.history) == ["loss", *names, "val_loss", *[f"val_{k}" for k in names]]
    assert history.history["acc"] == history.history["sparse_categorical_accuracy"]
    assert m.metrics == ["acc", "sparse_categorical_accuracy",
                         "sparse_top_k_categorical_accuracy"]
    assert m.weighted_metrics == ["acc"]


def test_every_metric_name_computes_its_formula():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((25, 2, 2, 1)).astype(np.float32)
    y = rng.integers(0, 7, 25)
    onehot = np.eye(7, dtype=np.float32)[y]
    w = rng.uniform(0.2, 2.0, 25)

    def mean(v, weighted):
        return w @ v / w.sum() if weighted else v.mean()

    sparse = model(7).compile(optimizer="sgd", weighted_metrics=[
        "accuracy", "sparse_categorical_accuracy", "sparse_top_k_categorical_accuracy"])
    p = sparse.predict(X)
    top5 = (p >= np.sort(p, axis=1)[:, [-5]]).astype(float)[np.arange(25), y]
    logs = sparse.evaluate(X, y, sample_weight=w, return_dict=True)
    assert logs["accuracy"] == logs["sparse_categorical_accuracy"] == \
        pytest.approx(mean((p.argmax(1) == y).astype(float), True), rel=1e-12)
    assert logs["sparse_top_k_categorical_accuracy"] == pytest.approx(mean(top5, True))

    dense = model(7).compile(optimizer="sgd", loss="categorical_crossentropy", metrics=[
        "accuracy", "categorical_accuracy", "top_k_categorical_accuracy", "mse",
        "mean_squared_error", "mae", "mean_absolute_error"])
    p = dense.predict(X).astype(np.float64)
    logs = dense.evaluate(X, onehot, sample_weight=w, return_dict=True)
    assert logs["accuracy"] == logs["categorical_accuracy"] == \
        pytest.approx(mean((p.argmax(1) == y).astype(float), False))
    top5 = (p >= np.sort(p, axis=1)[:, [-5]]).astype(float)[np.arange(25), y]
    assert logs["top_k_categorical_accuracy"] == pytest.approx(mean(top5, False))
    assert logs["mse"] == logs["mean_squared_error"] == \
        pytest.approx(((p - onehot) ** 2).mean(), rel=1e-6)
    assert logs["mae"] == logs["mean_absolute_error"] == \
        pytest.approx(np.abs(p - onehot).mean(), rel=1e-6)

    binary = model(1, "sigmoid").compile(optimizer="sgd", loss="binary_crossentropy",
                                         metrics=["accuracy", "binary_accuracy", "mse"])
    yb = (y % 2).astype(np.float32)
    p = binary.predict(X)[:, 0]
    logs = binary.evaluate(X, yb, return_dict=True)
    assert logs["accuracy"] == logs["binary_accuracy"] == \
        pytest.approx(((p > 0.5) == yb).mean())
    assert logs["mse"] == pytest.approx(((p - yb) ** 2).mean(), rel=1e-6)


def test_metrics_during_fit_see_probabilities_not_the_fused_logits():
    # the fused softmax hands the loss logits; mse on them would not be mse on p
    rng = np.random.default_rng(2)
    X = rng.standard_normal((16, 2, 2, 1)).astype(np.float32)
    onehot = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 16)]
    m = model().compile(optimizer=optimizers.SGD(1e-30), loss="categorical_crossentropy",
                        metrics=["mse"])
    history = m.fit(X, onehot, batch_size=16, verbose=0)   # a step too small to move
    assert history.history["mse"][0] == pytest.approx(m.evaluate(X, onehot)[1], rel=1e-12)
    assert history.history["mse"][0] == pytest.approx(
        ((m.predict(X) - onehot) ** 2).mean(), rel=1e-6)


@pytest.mark.parametrize("names, weighted, expected", [
    (["acc", "accuracy", "acc"], [], ["acc", "accuracy", "acc_1"]),
    (["acc"], ["acc", "mse", "acc"], ["acc", "weighted_acc", "mse", "weighted_acc_1"]),
    ([], ["accuracy"], ["accuracy"]),
])
def test_log_names_follow_keras_for_repeats(names, weighted, expected):
    assert [log for log, _, _ in metrics.compile_specs(names, weighted)] == expected


@pytest.mark.parametrize("loss, name, y, match", [
    ("sparse_categorical_crossentropy", "mse", lambda y: y,
     r"metric 'mse' needs targets of the outputs' shape \(20, 3\), got targets of shape "
     r"\(20,\)"),
    ("sparse_categorical_crossentropy", "categorical_accuracy", lambda y: y,
     r"use 'sparse_categorical_accuracy' for integer labels"),
    ("categorical_crossentropy", "sparse_categorical_accuracy", lambda y: np.eye(3)[y],
     r"needs integer labels of shape \(20,\) for outputs of shape \(20, 3\), got targets of "
     r"shape \(20, 3\); use 'categorical_accuracy' for one-hot targets"),
])
def test_a_metric_the_targets_do_not_fit_is_named(loss, name, y, match):
    X, labels = data(20)
    m = model().compile(loss=loss, metrics=[name])
    with pytest.raises(ShapeError, match=match):
        m.evaluate(X, y(labels))


def test_unknown_metric_names_are_refused_at_compile():
    with pytest.raises(KeyError, match=r"unknown metric 'acuracy' in metrics; .* did you mean "
                                       r"'accuracy'\?"):
        model().compile(metrics=["acuracy"])
    with pytest.raises(KeyError, match="unknown metric 'f1' in weighted_metrics"):
        model().compile(weighted_metrics=["f1"])
    with pytest.raises(TypeError, match="metrics must be a list of metric names"):
        model().compile(metrics={"accuracy"})


def test_evaluate_returns_keras_forms():
    X, y = data(20)
    m = model().compile(metrics=["accuracy", "sparse_top_k_categorical_accuracy"])
    as_list = m.evaluate(X, y)
    as_dict = m.evaluate(X, y, return_dict=True)
    assert as_list == list(as_dict.values())
    assert list(as_dict) == ["loss", "accuracy", "sparse_top_k_categorical_accuracy"]
    bare = model().compile()
    assert isinstance(bare.evaluate(X, y), float)
    assert bare.evaluate(X, y, return_dict=True) == {"loss": bare.evaluate(X, y)}


# -- class_weight --------------------------------------------------------------------------------
def test_class_weight_trains_like_the_sample_weights_it_stands_for():
    X, y = data(40)
    class_weight = {0: 0.5, 2: 3.0}          # class 1 unlisted: weight 1
    results = []
    for kwargs in ({"class_weight": class_weight},
                   {"sample_weight": np.array([class_weight.get(c, 1.0) for c in y])}):
        m = model().compile(optimizer="adam", metrics=["accuracy"],
                            weighted_metrics=["accuracy"])
        history = m.fit(X, y, batch_size=8, epochs=2, verbose=0, seed=3, **kwargs)
        results.append((weights_of(m), history.history))
    (w1, h1), (w2, h2) = results
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)
    assert h1 == h2


def test_class_weight_weighs_the_training_samples_only():
    X, y = data(20)
    m = model().compile(optimizer=optimizers.SGD(1e-30))     # a step too small to move
    history = m.fit(X, y, batch_size=16, verbose=0, validation_split=0.25,
                    class_weight={0: 5.0, 1: 0.1})
    assert history.history["val_loss"][0] == pytest.approx(m.evaluate(X[15:], y[15:]),
                                                           rel=1e-12)


def test_class_weight_of_one_hot_targets_uses_the_arg_max():
    X, y = data(24)
    onehot = np.eye(3, dtype=np.float32)[y]
    a = model().compile(optimizer="sgd", loss="categorical_crossentropy")
    b = model().compile(optimizer="sgd", loss="categorical_crossentropy")
    a.fit(X, onehot, verbose=0, shuffle=False, class_weight={1: 2.0})
    b.fit(X, onehot, verbose=0, shuffle=False, sample_weight=np.where(y == 1, 2.0, 1.0))
    for p, q in zip(weights_of(a), weights_of(b)):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"class_weight": {0: 2.0}, "sample_weight": np.ones(10)}, ValueError,
     "class_weight and sample_weight cannot be given together"),
    ({"class_weight": [1.0, 2.0]}, TypeError, r"class_weight must be a dict \{class index"),
    ({"class_weight": {"cat": 2.0}}, TypeError, "class_weight keys must be class indices"),
    ({"class_weight": {0: -1.0}}, ValueError, r"class_weight\[0\] must be a finite number >= 0"),
    ({"class_weight": {0: float("nan")}}, ValueError, r"class_weight\[0\] must be a finite"),
])
def test_bad_class_weight_is_named(kwargs, error, match):
    X, y = data(10)
    with pytest.raises(error, match=match):
        model().compile().fit(X, y, verbose=0, **kwargs)


# -- initial_epoch -------------------------------------------------------------------------------
def test_initial_epoch_numbers_the_epochs_and_resumes_exactly():
    X, y = data(32)
    whole = model().compile(optimizer="adam", metrics=["accuracy"])
    history = whole.fit(X, y, batch_size=8, epochs=4, verbose=0, shuffle=False)
    parts = model().compile(optimizer="adam", metrics=["accuracy"])
    first = parts.fit(X, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    second = parts.fit(X, y, batch_size=8, epochs=4, initial_epoch=2, verbose=0, shuffle=False)
    assert (first.epoch, second.epoch) == ([0, 1], [2, 3])
    assert first.history["loss"] + second.history["loss"] == history.history["loss"]
    for a, b in zip(weights_of(whole), weights_of(parts)):
        np.testing.assert_array_equal(a, b)
    assert parts.fit(X, y, epochs=3, initial_epoch=4, verbose=0).epoch == []


def test_the_progress_line_counts_from_initial_epoch(capsys):
    X, y = data(16)
    model().compile().fit(X, y, epochs=3, initial_epoch=1, verbose=2)
    err = capsys.readouterr().err
    assert "Epoch 2/3" in err and "Epoch 3/3" in err and "Epoch 1/3" not in err


def test_initial_epoch_is_checked():
    X, y = data(8)
    with pytest.raises(ValueError, match="initial_epoch must be an int >= 0, got -1"):
        model().compile().fit(X, y, initial_epoch=-1, verbose=0)
