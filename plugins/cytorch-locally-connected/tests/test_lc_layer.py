"""LocallyConnected2D as a cytorch layer: conformance, registration, models, saving, estimator."""
import json
import pickle
import warnings

import numpy as np
import pytest

import cytorch
from cytorch import layers as L
from cytorch.layers import CallContext
from cytorch.errors import ShapeError
from cytorch.testing import check_layer, numerical_gradient, relative_error
from cytorch_locally_connected import LocallyConnected2D


@pytest.mark.parametrize("backend", ["compiled", "reference"])
@pytest.mark.parametrize("kwargs, input_shape", [
    ({"filters": 2, "kernel_size": 3}, (4, 5, 2)),
    ({"filters": 3, "kernel_size": (3, 2), "strides": (2, 1), "padding": "same",
      "activation": "tanh"}, (5, 4, 1)),
    ({"filters": 2, "kernel_size": 2, "padding": ((1, 0), (0, 2)), "use_bias": False,
      "activation": "sigmoid"}, (3, 3, 2)),
])
def test_check_layer(backend, kwargs, input_shape):
    with cytorch.backend(backend):
        errors = check_layer(LocallyConnected2D(**kwargs, seed=0), input_shape)
    assert errors["parameter 'kernel'"] < 1e-7


def test_gradients_through_the_layer_with_relu():
    # check_layer's inputs are spread out; here an ordinary random batch, float64 end to end
    rng = np.random.default_rng(5)
    layer = LocallyConnected2D(3, (2, 3), strides=(1, 2), padding="same", activation="relu",
                               dtype="float64", seed=1)
    x = rng.standard_normal((2, 5, 6, 2))
    y = layer.forward(x, training=True)
    dout = rng.standard_normal(y.shape)
    dx = layer.backward(dout)
    assert relative_error(dx, numerical_gradient(lambda v: layer.forward(v), x, dout)) < 1e-6
    kernel = layer.params["kernel"]

    def f(v):
        layer.params["kernel"] = v
        return layer.forward(x)
    dw = numerical_gradient(f, kernel, dout)
    layer.params["kernel"] = kernel
    assert relative_error(layer.grads["kernel"], dw) < 1e-6


def test_parameter_count_is_the_lecture_example():
    # 32x32x3 input, 30 filters 5x5, "same": 1024 positions of 5*5*3*30 weights + 30 biases
    lc = LocallyConnected2D(30, 5, padding="same", seed=0)
    conv = L.Conv2D(30, 5, padding="same", seed=0)
    for layer in (lc, conv):
        layer.build((32, 32, 3))
    assert conv.count_params() == 5 * 5 * 3 * 30 + 30 == 2_280
    assert lc.count_params() == 32 * 32 * (75 * 30 + 30) == 2_334_720
    assert lc.params["kernel"].shape == (32, 32, 75, 30)
    assert lc.params["bias"].shape == (32, 32, 30)

    for name, count in (("locally_connected2d", "2,334,720"), ("conv2d", "2,280")):
        lines = []
        model = cytorch.Sequential.from_spec(
            [(name, {"filters": 30, "kernel_size": 5, "padding": "same"})],
            input_shape=(32, 32, 3), seed=0)
        model.summary(print_fn=lines.append)
        assert f"Total params: {count}" in "\n".join(lines)


def test_each_position_starts_like_a_fresh_convolution():
    layer = LocallyConnected2D(4, (3, 2), seed=0)
    layer.build((6, 6, 5))
    kernel = layer.params["kernel"]
    limit = np.sqrt(6 / (3 * 2 * 5 + 3 * 2 * 4))       # Conv2D's Glorot limit, per position
    assert np.abs(kernel).max() <= limit
    assert np.abs(kernel).max() > 0.9 * limit           # ...not Keras's much smaller one
    assert not np.array_equal(kernel[0, 0], kernel[0, 1])  # no sharing
    again = LocallyConnected2D(4, (3, 2), seed=0)
    again.build((6, 6, 5))
    assert np.array_equal(again.params["kernel"], kernel)


def test_registered_under_its_entry_point():
    cls, distribution = cytorch.layers.available()["locally_connected2d"]
    assert cls is LocallyConnected2D and distribution == "cytorch-locally-connected"
    assert cytorch.layers.get("locally_connected2d") is LocallyConnected2D


def test_only_the_built_image_size_is_accepted():
    layer = LocallyConnected2D(2, 3, name="lc")
    layer.forward(np.zeros((1, 6, 6, 1)))
    with pytest.raises(ShapeError, match=r"LocallyConnected2D 'lc' was built for inputs of "
                                         r"shape \(6, 6, 1\), got \(7, 6, 1\).*cannot take "
                                         r"another image size"):
        layer.forward(np.zeros((1, 7, 6, 1)))
    with pytest.raises(ShapeError, match=r"LocallyConnected2D 'lc' expects 4-D input"):
        layer.forward(np.zeros((6, 6, 1)))
    with pytest.raises(ShapeError, match=r"LocallyConnected2D 'lc2' needs at least 5x5 input"):
        LocallyConnected2D(2, 5, name="lc2").build((3, 3, 1))
    with pytest.raises(ValueError, match="filters must be a positive int, got 0"):
        LocallyConnected2D(0, 3)
    with pytest.raises(ValueError, match="padding must be 'valid', 'same', 'full'"):
        LocallyConnected2D(2, 3, padding="half")
    with pytest.raises(KeyError, match="unknown initializer 'glorot'"):
        LocallyConnected2D(2, 3, kernel_initializer="glorot")
    bad = np.zeros((1, 6, 6, 1))
    bad[0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="the input of LocallyConnected2D 'lc' contains 1 NaN "
                                         "or infinite"):
        layer.forward(bad)


def test_return_logits_skips_the_activation():
    layer = LocallyConnected2D(3, 2, activation="softmax", seed=0)
    x = np.random.default_rng(0).standard_normal((2, 3, 3, 1))
    probabilities = layer.forward(x)
    np.testing.assert_allclose(probabilities.sum(-1), 1, rtol=1e-6)
    logits = layer.forward(x, ctx=CallContext(return_logits=True))
    np.testing.assert_allclose(np.exp(logits) / np.exp(logits).sum(-1, keepdims=True),
                               probabilities, rtol=1e-5)
    # a linear twin with the same weights: same logits, same gradients
    linear = LocallyConnected2D(3, 2, seed=0)
    assert np.array_equal(linear.forward(x), logits)
    dout = np.random.default_rng(1).standard_normal(logits.shape)
    assert np.array_equal(layer.backward(dout), linear.backward(dout))
    assert np.array_equal(layer.grads["kernel"], linear.grads["kernel"])


def _small_model(seed=0):
    return cytorch.Sequential.from_spec(
        [("locally_connected2d", {"filters": 4, "kernel_size": 3, "activation": "relu"}),
         ("flatten", {}), ("dense", {"units": 3, "activation": "softmax"})],
        input_shape=(6, 6, 1), seed=seed)


def test_trains_and_survives_save_and_load(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 6, 6, 1)).astype(np.float32)
    y = (X[:, :3].sum(axis=(1, 2, 3)) > 0).astype(int) + (X[:, 3:, 3:].mean(axis=(1, 2, 3)) > 0)
    model = _small_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(X, y, batch_size=16, epochs=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]

    path = tmp_path / "lc.npz"
    model.save(path)
    loaded = cytorch.load_model(path)
    assert isinstance(loaded.layers[0], LocallyConnected2D)
    assert loaded.layers[0].get_config() == json.loads(json.dumps(model.layers[0].get_config()))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    unpickled = pickle.loads(pickle.dumps(model))           # what joblib and sklearn do
    np.testing.assert_array_equal(unpickled.predict(X), model.predict(X))


def test_same_seed_same_model():
    a, b = _small_model(seed=3), _small_model(seed=3)
    for pa, pb in zip(a.get_weights(), b.get_weights()):
        assert np.array_equal(pa, pb)


def test_backends_agree_inside_a_model():
    model = _small_model()
    x = np.random.default_rng(1).standard_normal((5, 6, 6, 1)).astype(np.float32)
    compiled = model.predict(x)
    with cytorch.backend("reference"):
        reference = model.predict(x)
    np.testing.assert_allclose(compiled, reference, rtol=1e-5, atol=1e-7)


def test_in_cnn_classifier():
    """The layer trains inside CNNClassifier until the estimator's stopping rule says it has
    converged (about 30 epochs of 300 digits, a fraction of a second): no ConvergenceWarning."""
    CNNClassifier = pytest.importorskip("cytorch.estimator").CNNClassifier
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    X, y = load_digits(return_X_y=True)
    X, y = X[:300] / 16.0, y[:300]
    clf = CNNClassifier(layers=[("locally_connected2d", {"filters": 4, "kernel_size": 3,
                                                          "activation": "relu"}),
                                ("flatten", {})],
                        max_iter=200, batch_size=32, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf.fit(X, y)
    assert clf.n_iter_ < 200
    assert isinstance(clf.model_.layers[0], LocallyConnected2D)
    assert clf.model_.layers[0].params["kernel"].shape == (6, 6, 9, 4)
    assert clf.score(X, y) > 0.9
