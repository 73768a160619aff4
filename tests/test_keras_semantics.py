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


def test_keras_2_argument_names_get_a_teaching_message():
    with pytest.raises(TypeError, match=r"RMSprop\(\) takes learning_rate=, not lr= .*"
                                        r"RMSprop\(learning_rate=0.0001\)"):
        optimizers.RMSprop(lr=0.0001)                       # the course's Keras 2 recipe
    with pytest.raises(TypeError, match=r"SGD\(\) has no decay= .*LearningRateScheduler"):
        optimizers.SGD(0.1, decay=1e-6)
    import copy
    import pickle
    opt = optimizers.Adam(0.01)
    assert pickle.loads(pickle.dumps(opt)).learning_rate == copy.deepcopy(opt).learning_rate


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


# -- saves that resume exactly ------------------------------------------------------------------
def _data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 4)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)


def _model(optimizer):
    model = cytorch.Sequential([L.Input((4,)), L.Dense(8, activation="relu"),
                                L.Dense(3, activation="softmax")], seed=0)
    return model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                         metrics=["accuracy"])


@pytest.mark.parametrize("make", [
    lambda: optimizers.Adam(0.01), lambda: optimizers.AdamW(0.01, amsgrad=True),
    lambda: optimizers.SGD(0.05, momentum=0.9, nesterov=True),
    lambda: optimizers.RMSprop(0.01, momentum=0.5, centered=True),
    lambda: optimizers.Adagrad(0.1)])
def test_save_load_resumes_training_exactly(tmp_path, make):
    X, y = _data()
    straight = _model(make())
    straight.fit(X, y, epochs=4, batch_size=16, shuffle=False, verbose=0)
    first = _model(make())
    first.fit(X, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    first.save(tmp_path / "m.npz")
    resumed = cytorch.load_model(tmp_path / "m.npz")
    assert resumed.optimizer.iterations == first.optimizer.iterations == 8
    resumed.fit(X, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    for a, b in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_model_checkpoint_files_resume_with_their_learning_rate(tmp_path):
    X, y = _data()
    schedule = cytorch.callbacks.LearningRateScheduler(lambda epoch, lr: 0.02 / (1 + epoch))
    straight = _model(optimizers.Adam())
    straight.fit(X, y, epochs=3, batch_size=16, shuffle=False, verbose=0,
                 callbacks=[schedule])
    first = _model(optimizers.Adam())
    first.fit(X, y, epochs=2, batch_size=16, shuffle=False, verbose=0, callbacks=[
        schedule, cytorch.callbacks.ModelCheckpoint(str(tmp_path / "ckpt-{epoch}.npz"))])
    resumed = cytorch.load_model(tmp_path / "ckpt-2.npz")
    assert resumed.optimizer.learning_rate == pytest.approx(0.01)
    resumed.optimizer.learning_rate = 0.02 / 3          # what the schedule gives epoch 2
    resumed.fit(X, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    for a, b in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_saved_loss_keeps_from_logits(tmp_path):
    model = cytorch.Sequential([L.Input((4,)), L.Dense(3)])
    model.compile(loss=losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1))
    model.save(tmp_path / "m.npz")
    loss = cytorch.load_model(tmp_path / "m.npz").loss
    assert isinstance(loss, losses.CategoricalCrossentropy)
    assert (loss.from_logits, loss.label_smoothing) == (True, 0.1)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_saved_file_gets_the_mode_the_umask_gives(tmp_path, umask, mode):
    import os
    import stat
    model = _model(optimizers.Adam())
    old = os.umask(umask)
    try:
        model.save(tmp_path / "m.npz")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "m.npz").st_mode) == mode
    assert os.listdir(tmp_path) == ["m.npz"]               # no temporary left behind


# -- callbacks ----------------------------------------------------------------------------------
def test_learning_rate_scheduler_takes_epoch_and_lr():
    X, y = _data()
    seen = []

    def schedule(epoch, lr):
        seen.append((epoch, lr))
        return lr * 0.5
    model = _model(optimizers.SGD(0.08))
    history = model.fit(X, y, epochs=3, verbose=0,
                        callbacks=[cytorch.callbacks.LearningRateScheduler(schedule)])
    assert seen == [(0, 0.08), (1, 0.04), (2, 0.02)]
    assert history.history["learning_rate"] == [0.04, 0.02, 0.01]
    one_arg = cytorch.callbacks.LearningRateScheduler(lambda epoch: 0.1 * (epoch + 1))
    model.fit(X, y, epochs=2, verbose=0, callbacks=[one_arg])
    assert model.optimizer.learning_rate == pytest.approx(0.2)
    with pytest.raises(ValueError, match=r"schedule\(0, 0.2\) must return a positive float"):
        model.fit(X, y, verbose=0, callbacks=[
            cytorch.callbacks.LearningRateScheduler(lambda epoch, lr: None)])


def test_csv_logger_writes_keras_s_format(tmp_path):
    import csv
    X, y = _data()
    path = tmp_path / "log.csv"
    model = _model(optimizers.SGD(0.05))
    history = model.fit(X, y, epochs=2, verbose=0,
                        callbacks=[cytorch.callbacks.CSVLogger(path)])
    rows = list(csv.reader(open(path)))
    assert rows[0] == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    assert [r[0] for r in rows[1:]] == ["0", "1"] and rows[1][3:] == ["NA", "NA"]
    assert [float(r[2]) for r in rows[1:]] == history.history["loss"]
    model.fit(X, y, epochs=1, verbose=0, validation_data=(X, y),
              callbacks=[cytorch.callbacks.CSVLogger(path, append=True)])
    rows = list(csv.reader(open(path)))
    assert len(rows) == 4 and rows[0][0] == "epoch" and rows[3][0] == "0"


@pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")
def test_terminate_on_nan_stops_after_the_batch(capsys):
    X, y = _data()
    model = cytorch.Sequential([L.Input((4,)), L.Dense(3)], seed=0)
    model.compile(optimizer=optimizers.SGD(1e30), loss="mse")
    batches = []
    history = model.fit(X, np.ones((50, 3)) * 1e20, epochs=5, batch_size=10, verbose=0,
                        callbacks=[cytorch.callbacks.TerminateOnNaN(),
                                   cytorch.callbacks.LambdaCallback(
                                       on_batch_end=lambda b, logs: batches.append(b))])
    assert len(history.epoch) == 1 and len(batches) < 5
    assert not np.isfinite(history.history["loss"][0])
    assert "Invalid loss, terminating training" in capsys.readouterr().err
    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch"):
        model.fit(X, np.ones((50, 3)), verbose=0,
                  callbacks=[cytorch.callbacks.TerminateOnNaN(raise_error=True)])


# -- CNNClassifier ------------------------------------------------------------------------------
def test_cnn_classifier_warns_when_max_iter_stops_it_as_mlp_does():
    from sklearn.exceptions import ConvergenceWarning
    rng = np.random.default_rng(0)
    X = rng.random((40, 4, 4)).astype(np.float32)
    y = (X[:, 0, 0] > 0.5).astype(int)
    with pytest.warns(ConvergenceWarning, match=r"maximum iterations \(2\) reached"):
        cytorch.CNNClassifier(max_iter=2, random_state=0).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")     # the stopping rule ended it: no warning
        clf = cytorch.CNNClassifier(max_iter=20, tol=100.0, n_iter_no_change=1,
                                    random_state=0).fit(X, y)
        assert clf.n_iter_ == 3             # 1 improvement, then 2 epochs without
        clf.partial_fit(X, y)              # one epoch by definition: MLPClassifier is silent
