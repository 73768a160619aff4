"""The layers of issue 11 against Keras 3 on identical weights: outputs (1e-5 relative), input
gradients, and BatchNormalization's moving statistics after a few training steps.

Keras 3 (with the torch backend) is an optional test oracle: without it every test here skips.
"""
import numpy as np
import pytest

from conftest import keras_on_torch
from cytorch import layers as L
from cytorch._gradcheck import relative_error

keras, torch = keras_on_torch()

RTOL = 1e-5
# Keras 3.15 on NumPy 2 warns about __array__'s copy keyword on every weight it hands out
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def keras_call(layer, x, training=False, dout=None):
    """Keras's output for ``x`` (a list for merges) and, with ``dout``, dL/dx by autograd."""
    xs = x if isinstance(x, list) else [x]
    ts = [torch.tensor(a, requires_grad=dout is not None) for a in xs]
    y = layer(ts if isinstance(x, list) else ts[0], training=training)
    if dout is None:
        return y.detach().numpy(), None
    (y * torch.tensor(dout)).sum().backward()
    grads = [t.grad.numpy() for t in ts]
    return y.detach().numpy(), grads if isinstance(x, list) else grads[0]


def close(a, b, rtol=RTOL):
    err = relative_error(a, b)
    assert err < rtol, f"relative error {err:.3g}"


@pytest.mark.parametrize("shape", [(8, 5, 5, 3), (16, 6)])
def test_batch_normalization_matches_keras_through_training_steps(shape):
    rng = np.random.default_rng(0)
    C = shape[-1]
    kbn = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-3)
    kbn.build(shape)
    bn = L.BatchNormalization(momentum=0.9, epsilon=1e-3)
    bn.build(shape[1:])
    weights = [rng.normal(size=C).astype(np.float32), rng.normal(size=C).astype(np.float32),
               rng.normal(size=C).astype(np.float32), rng.uniform(0.5, 2, C).astype(np.float32)]
    kbn.set_weights(weights)
    for (_, own), w in zip(bn.weight_items(), weights):
        own[...] = w
    assert [v.name for v in kbn.weights] == [k for k, _ in bn.weight_items()]
    x = rng.normal(1, 2, size=shape).astype(np.float32)
    close(bn.forward(x), keras_call(kbn, x)[0])                   # inference: moving statistics
    for step in range(4):                                           # training steps
        x = rng.normal(step - 1, 1 + step, size=shape).astype(np.float32)
        dout = rng.normal(size=shape).astype(np.float32)
        y_k, dx_k = keras_call(kbn, x, training=True, dout=dout)
        close(bn.forward(x, training=True), y_k)
        close(bn.backward(dout), dx_k)
    for (name, own), theirs in zip(bn.weight_items(), kbn.get_weights()):
        close(own, theirs)                                          # moving mean and variance
    x = rng.normal(size=shape).astype(np.float32)
    close(bn.forward(x), keras_call(kbn, x)[0])


def test_batch_normalization_of_one_sample_matches_keras():
    x = np.array([[1.0, -2.0, 7.0]], dtype=np.float32)
    kbn = keras.layers.BatchNormalization(momentum=0.5, beta_initializer="ones")
    bn = L.BatchNormalization(momentum=0.5, beta_initializer="ones")
    with pytest.warns(RuntimeWarning):
        y = bn.forward(x, training=True)
    np.testing.assert_allclose(y, keras_call(kbn, x, training=True)[0], atol=1e-6)
    for (_, own), theirs in zip(bn.weight_items(), kbn.get_weights()):
        np.testing.assert_allclose(own, theirs, atol=1e-6)


def test_batch_normalization_summary_counts_like_keras():
    from cytorch import Sequential
    model = Sequential([L.Dense(4, seed=0), L.BatchNormalization()], input_shape=(3,))
    kmodel = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4),
                               keras.layers.BatchNormalization()])
    trainable = sum(int(np.prod(v.shape)) for v in kmodel.trainable_weights)
    frozen = sum(int(np.prod(v.shape)) for v in kmodel.non_trainable_weights)
    text = model.summary(print_fn=None)
    assert f"Trainable params: {trainable}" in text and f"Non-trainable params: {frozen}" in text
    assert model.count_params() == kmodel.count_params()


@pytest.mark.parametrize("name", ["relu", "tanh", "sigmoid", "softmax", "leaky_relu", "elu",
                                  "gelu", "silu", "swish", "softplus"])
def test_activation_strings_match_keras(name):
    rng = np.random.default_rng(1)
    x = rng.normal(scale=3, size=(4, 3, 3, 5)).astype(np.float32)
    dout = rng.normal(size=x.shape).astype(np.float32)
    y_k, dx_k = keras_call(keras.layers.Activation(name), x, training=True, dout=dout)
    layer = L.Activation(name)
    close(layer.forward(x, training=True), y_k)
    close(layer.backward(dout), dx_k)
    # and fused into a Dense layer, on identical weights
    kd = keras.layers.Dense(6, activation=name)
    kd.build((None, 5))
    d = L.Dense(6, activation=name, seed=0)
    d.build((5,))
    kd.set_weights([d.params["kernel"], d.params["bias"] + 0.1])
    d.params["bias"] += 0.1
    v = x.reshape(-1, 5)
    dv = rng.normal(size=(v.shape[0], 6)).astype(np.float32)
    y_k, dx_k = keras_call(kd, v, training=True, dout=dv)
    close(d.forward(v, training=True), y_k)
    close(d.backward(dv), dx_k)


@pytest.mark.parametrize("make, kmake", [
    (lambda: L.LeakyReLU(), lambda: keras.layers.LeakyReLU()),
    (lambda: L.LeakyReLU(negative_slope=0.05), lambda: keras.layers.LeakyReLU(0.05)),
    (lambda: L.ELU(), lambda: keras.layers.ELU()),
    (lambda: L.ELU(alpha=0.4), lambda: keras.layers.ELU(alpha=0.4)),
], ids=["leaky_relu", "leaky_relu-0.05", "elu", "elu-0.4"])
def test_activation_layers_match_keras(make, kmake):
    rng = np.random.default_rng(2)
    x = rng.normal(scale=2, size=(3, 4, 4, 2)).astype(np.float32)
    dout = rng.normal(size=x.shape).astype(np.float32)
    y_k, dx_k = keras_call(kmake(), x, training=True, dout=dout)
    layer = make()
    close(layer.forward(x), y_k)
    close(layer.backward(dout), dx_k)


def _same_weights(layer, klayer, shape):
    """Build both for ``shape`` (no batch axis) and give Keras cytorch's weights, nudged off
    their initial values (a zero bias would hide a bias bug)."""
    layer.build(shape)
    klayer.build((None,) + tuple(shape))
    rng = np.random.default_rng(7)
    for k in layer.params:
        layer.params[k] += 0.1 * rng.standard_normal(layer.params[k].shape).astype(np.float32)
    klayer.set_weights([v for _, v in layer.weight_items()])
    assert [v.name for v in klayer.weights] == [k for k, _ in layer.weight_items()]


@pytest.mark.parametrize("make, kmake, shape", [
    (lambda: L.ZeroPadding2D(((1, 0), (2, 3))), lambda: keras.layers.ZeroPadding2D(((1, 0), (2, 3))),
     (4, 5, 2)),
    (lambda: L.ZeroPadding2D(2), lambda: keras.layers.ZeroPadding2D(2), (3, 3, 1)),
    (lambda: L.Reshape((10, -1)), lambda: keras.layers.Reshape((10, -1)), (4, 5, 2)),
    (lambda: L.UpSampling2D((2, 3)), lambda: keras.layers.UpSampling2D((2, 3)), (3, 4, 2)),
    (lambda: L.UpSampling2D(2, interpolation="bilinear"),
     lambda: keras.layers.UpSampling2D(2, interpolation="bilinear"), (3, 4, 2)),
    (lambda: L.UpSampling2D((3, 4), interpolation="bilinear"),
     lambda: keras.layers.UpSampling2D((3, 4), interpolation="bilinear"), (5, 2, 3)),
    (lambda: L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu", seed=0),
     lambda: keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same",
                                          activation="relu"), (7, 6, 3)),
    (lambda: L.DepthwiseConv2D((2, 3), strides=2, seed=0),
     lambda: keras.layers.DepthwiseConv2D((2, 3), strides=2), (7, 8, 2)),
    (lambda: L.SeparableConv2D(5, 3, depth_multiplier=2, padding="same", activation="gelu",
                               seed=0),
     lambda: keras.layers.SeparableConv2D(5, 3, depth_multiplier=2, padding="same",
                                          activation="gelu"), (6, 6, 3)),
    (lambda: L.SeparableConv2D(4, (3, 2), strides=(2, 1), use_bias=False, seed=0),
     lambda: keras.layers.SeparableConv2D(4, (3, 2), strides=(2, 1), use_bias=False),
     (7, 5, 2)),
], ids=["zero-padding", "zero-padding-int", "reshape", "up-nearest", "up-bilinear",
        "up-bilinear-3x4", "depthwise", "depthwise-stride", "separable", "separable-nobias"])
def test_layers_match_keras_on_identical_weights(make, kmake, shape):
    layer, klayer = make(), kmake()
    _same_weights(layer, klayer, shape)
    rng = np.random.default_rng(8)
    x = rng.normal(size=(3,) + shape).astype(np.float32)
    y = layer.forward(x, training=True)
    dout = rng.normal(size=y.shape).astype(np.float32)
    y_k, dx_k = keras_call(klayer, x, training=True, dout=dout)
    close(y, y_k)
    close(layer.backward(dout), dx_k)


def test_spatial_dropout_matches_keras_in_inference_and_drops_maps_like_it():
    x = np.random.default_rng(9).normal(size=(4, 3, 3, 8)).astype(np.float32)
    close(L.SpatialDropout2D(0.5).forward(x), keras_call(keras.layers.SpatialDropout2D(0.5), x)[0])
    y_k = keras_call(keras.layers.SpatialDropout2D(0.5, seed=1), x, training=True)[0]
    y = L.SpatialDropout2D(0.5, seed=1).forward(x, training=True)
    for out in (y, y_k):   # the random draws differ; the structure and the scale must not
        kept = out[:, 0, 0, :] != 0
        np.testing.assert_allclose(out[kept[:, None, None, :].repeat(3, 1).repeat(3, 2)],
                                   2 * x[kept[:, None, None, :].repeat(3, 1).repeat(3, 2)],
                                   rtol=1e-6)


@pytest.mark.parametrize("name", ["Multiply", "Subtract", "Average", "Maximum"])
def test_merges_match_keras(name):
    rng = np.random.default_rng(10)
    n = 2 if name == "Subtract" else 3
    xs = [rng.normal(size=(4, 3, 3, 2)).astype(np.float32) for _ in range(n)]
    layer = getattr(L, name)()
    y = layer.forward(xs, training=True)
    dout = rng.normal(size=y.shape).astype(np.float32)
    y_k, dxs_k = keras_call(getattr(keras.layers, name)(), xs, training=True, dout=dout)
    close(y, y_k)
    for dx, dx_k in zip(layer.backward(dout), dxs_k):
        close(dx, dx_k)
