"""Same names, same numbers: cytorch against Keras 3 (torch backend) on identical weights.

Skipped unless ``keras`` and ``torch`` are installed (never a dependency; CI does not have them):
``pip install torch && KERAS_BACKEND=torch pip install keras``.  Agreement asked for:

* optimizers: after 1 and 5 steps, within 1e-3 of the update size (5e-3 for Adam/AdamW), for
  every optimizer and each of its options;
* losses: the value to 1e-5 relative, with and without ``from_logits``, and the gradient;
* layers: the output of each built-in layer on the same weights and input to 1e-5 relative.

Two traps of the oracle itself: torch 2.13's oneDNN returns wrong float32 weight gradients for
strided 1x1 convolutions in Keras's layout (the gradient test turns oneDNN off), and Keras's
torch backend computes float64 matmuls in float32 (everything here is float32).
"""
import numpy as np
import pytest

import cytorch
from conftest import keras_on_torch
from cytorch import layers as L
from cytorch import losses, optimizers

keras, torch = keras_on_torch()


# the oracle's own noise: Keras converting torch tensors for NumPy 2, torch's oneDNN switch
pytestmark = [pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:TF32 acceleration:UserWarning")]


def to_numpy(t):
    return keras.ops.convert_to_numpy(t)


def rel(a, b):
    """max |a - b| / max |b| (b the reference)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


# -- optimizers ---------------------------------------------------------------------------------
OPTIMIZER_CASES = [
    ("SGD", {}), ("SGD", {"momentum": 0.9}), ("SGD", {"momentum": 0.9, "nesterov": True}),
    ("SGD", {"learning_rate": 0.1, "weight_decay": 0.05}), ("SGD", {"clipnorm": 0.5}),
    ("SGD", {"clipvalue": 0.1}), ("SGD", {"global_clipnorm": 0.5}),
    ("RMSprop", {}), ("RMSprop", {"learning_rate": 1e-4}), ("RMSprop", {"rho": 0.5}),
    ("RMSprop", {"momentum": 0.9}), ("RMSprop", {"centered": True}),
    ("RMSprop", {"centered": True, "momentum": 0.5}), ("RMSprop", {"epsilon": 1e-3}),
    ("RMSprop", {"weight_decay": 0.1}),
    ("Adagrad", {}), ("Adagrad", {"learning_rate": 0.1, "initial_accumulator_value": 0.0}),
    ("Adagrad", {"epsilon": 1e-2}), ("Adagrad", {"weight_decay": 0.1}),
    ("Adam", {}), ("Adam", {"beta_1": 0.5, "beta_2": 0.9}), ("Adam", {"amsgrad": True}),
    ("Adam", {"epsilon": 1e-3}), ("Adam", {"learning_rate": 0.01, "weight_decay": 0.1}),
    ("Adam", {"clipnorm": 0.3}),
    ("AdamW", {}), ("AdamW", {"learning_rate": 0.01, "weight_decay": 0.2}),
    ("AdamW", {"amsgrad": True}),
]


def _case_id(case):
    name, kwargs = case
    return name + "".join(f"-{k}={v}" for k, v in kwargs.items())


@pytest.mark.parametrize("scale", [1.0, 1e-4], ids=["g~1", "g~1e-4"])
@pytest.mark.parametrize("steps", [1, 5])
@pytest.mark.parametrize("case", OPTIMIZER_CASES, ids=[_case_id(c) for c in OPTIMIZER_CASES])
def test_optimizer_steps_match_keras(case, steps, scale):
    name, kwargs = case
    rng = np.random.default_rng(0)
    kernel0 = rng.standard_normal((4, 3)).astype(np.float32)
    bias0 = rng.standard_normal(3).astype(np.float32)
    grads = [(scale * rng.standard_normal((4, 3))).astype(np.float32) for _ in range(steps)]
    bias_grads = [(scale * rng.standard_normal(3)).astype(np.float32) for _ in range(steps)]

    dense = L.Dense(3)
    dense.build((4,))
    dense.set_weights([kernel0, bias0])
    opt = getattr(optimizers, name)(**kwargs)
    kv, bv = keras.Variable(kernel0.copy()), keras.Variable(bias0.copy())
    kopt = getattr(keras.optimizers, name)(**kwargs)
    for g, gb in zip(grads, bias_grads):
        dense.grads["kernel"][...] = g
        dense.grads["bias"][...] = gb
        opt.apply_gradients([dense])
        kopt.apply_gradients([(torch.tensor(g), kv), (torch.tensor(gb), bv)])
    tol = 5e-3 if name.startswith("Adam") else 1e-3
    for got, want, start in ((dense.params["kernel"], to_numpy(kv), kernel0),
                             (dense.params["bias"], to_numpy(bv), bias0)):
        update = np.abs(want.astype(np.float64) - start).max()
        assert update > 0
        assert np.abs(got.astype(np.float64) - want).max() <= tol * update, \
            (got - start, want - start)
    assert opt.iterations == steps


@pytest.mark.parametrize("name", ["SGD", "RMSprop", "Adagrad", "Adam", "AdamW"])
def test_optimizer_defaults_match_keras(name):
    ours = getattr(optimizers, name)().get_config()
    theirs = getattr(keras.optimizers, name)().get_config()
    for key, value in ours.items():
        assert theirs[key] == pytest.approx(value) if isinstance(value, float) else \
            theirs[key] == value, key


# -- losses -------------------------------------------------------------------------------------
def _loss_inputs(name, from_logits, rng, N=6, K=4):
    z = rng.standard_normal((N, K)).astype(np.float32) * 2
    if name == "sparse_categorical_crossentropy":
        y = rng.integers(0, K, N)
    elif name == "categorical_crossentropy":
        y = np.eye(K, dtype=np.float32)[rng.integers(0, K, N)]
        y[0] = [0.5, 0.25, 0.25, 0.0]                     # soft targets too
    elif name == "binary_crossentropy":
        y = (rng.random((N, K)) > 0.5).astype(np.float32)
    else:
        y = rng.standard_normal((N, K)).astype(np.float32)
    if from_logits or name in ("mse", "mae"):
        p = z
    elif name == "binary_crossentropy":
        p = 1 / (1 + np.exp(-z))
    else:  # probabilities, some rows that do not sum to 1, one clipped value
        p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        p[1] *= 0.5
        p[2] = [0.2, 0.2, 0.1, 0.0]
    return y, p.astype(np.float32)


LOSS_CASES = [
    ("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy", {}),
    ("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy", {"from_logits": True}),
    ("categorical_crossentropy", "CategoricalCrossentropy", {}),
    ("categorical_crossentropy", "CategoricalCrossentropy", {"from_logits": True}),
    ("categorical_crossentropy", "CategoricalCrossentropy", {"label_smoothing": 0.1}),
    ("categorical_crossentropy", "CategoricalCrossentropy",
     {"from_logits": True, "label_smoothing": 0.2}),
    ("binary_crossentropy", "BinaryCrossentropy", {}),
    ("binary_crossentropy", "BinaryCrossentropy", {"from_logits": True}),
    ("binary_crossentropy", "BinaryCrossentropy", {"label_smoothing": 0.1}),
    ("mse", "MeanSquaredError", {}),
    ("mae", "MeanAbsoluteError", {}),
]


@pytest.mark.parametrize("weighted", [False, True], ids=["", "sample_weight"])
@pytest.mark.parametrize("name, cls, kwargs", LOSS_CASES,
                         ids=[_case_id(c[1:]) for c in LOSS_CASES])
def test_loss_value_and_gradient_match_keras(name, cls, kwargs, weighted):
    rng = np.random.default_rng(1)
    y, p = _loss_inputs(name, kwargs.get("from_logits", False), rng)
    w = rng.random(len(p)).astype(np.float32) * 2 if weighted else None
    ours = getattr(losses, cls)(**kwargs)
    value, grad = ours.gradient(y, p, w)
    pt = torch.tensor(p, requires_grad=True)
    theirs = getattr(keras.losses, cls)(**kwargs)
    kvalue = theirs(torch.tensor(y), pt, None if w is None else torch.tensor(w))
    kvalue.backward()
    assert value == pytest.approx(float(kvalue.detach()), rel=1e-5)
    assert rel(grad, pt.grad.numpy()) < 1e-5


def test_renormalised_cross_entropy_numbers_from_the_issue():
    p = np.array([[0.2, 0.2, 0.1]], np.float32)
    keras_value = float(keras.losses.SparseCategoricalCrossentropy()(np.array([0]), p))
    assert losses.SparseCategoricalCrossentropy()([0], p) == pytest.approx(keras_value, rel=1e-6)
    assert keras_value == pytest.approx(0.916, abs=1e-3)


def test_fused_softmax_cross_entropy_is_not_capped_as_keras_is():
    # the one documented difference (README, "Differences from Keras"): a logit gap of 40
    model = cytorch.Sequential([L.Input((2,)), L.Dense(2, activation="softmax",
                                                        use_bias=False)])
    model.set_weights([np.array([[20.0, -20.0], [0.0, 0.0]], np.float32)])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x, y = np.array([[1.0, 0.0]], np.float32), np.array([1])
    kmodel = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax",
                                                                   use_bias=False)])
    kmodel.set_weights(model.get_weights())
    kmodel.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    ours, theirs = model.evaluate(x, y), kmodel.evaluate(x, y, verbose=0)
    assert ours == pytest.approx(40 + np.log1p(np.exp(-40)), rel=1e-5)   # 40.0, uncapped
    assert theirs == pytest.approx(-np.log(1e-7), rel=1e-3)               # 16.1, capped


# -- layers -------------------------------------------------------------------------------------
def _layer_pairs():
    """(id, cytorch layer, keras layer, input shape without batch)."""
    pairs = []
    for k, (kernel, strides, padding) in enumerate([
            ((3, 3), 1, "valid"), ((3, 2), (2, 1), "same"), ((5, 5), 2, "same"),
            ((1, 1), 2, "valid"), ((4, 3), (3, 2), "same"), ((2, 2), 1, "same")]):
        pairs.append((f"Conv2D-{kernel}-{strides}-{padding}",
                      L.Conv2D(5, kernel, strides=strides, padding=padding, activation="relu"),
                      keras.layers.Conv2D(5, kernel, strides=strides, padding=padding,
                                          activation="relu"), (9, 8, 3)))
    # 3x3 stride 1 with >= 16 input channels and, in a batch of 3, enough outputs per filter:
    # the Winograd path (odd sizes: ragged tiles)
    for filters, padding, shape in [(16, "same", (17, 16, 16)), (6, "valid", (19, 18, 20))]:
        pairs.append((f"Conv2D-winograd-{filters}-{padding}",
                      L.Conv2D(filters, 3, padding=padding, activation="relu"),
                      keras.layers.Conv2D(filters, 3, padding=padding, activation="relu"),
                      shape))
    for k, (kernel, dilation, padding) in enumerate([
            ((3, 3), 2, "valid"), ((3, 2), (2, 3), "same"), ((2, 2), (1, 2), "same")]):
        pairs.append((f"Conv2D-{kernel}-dilation{dilation}-{padding}",
                      L.Conv2D(4, kernel, dilation_rate=dilation, padding=padding),
                      keras.layers.Conv2D(4, kernel, dilation_rate=dilation, padding=padding),
                      (9, 10, 3)))
    for cls in ("MaxPooling2D", "AveragePooling2D"):
        for pool, strides, padding in [(2, None, "valid"), ((3, 2), (2, 2), "same"),
                                       (3, 1, "same"), ((2, 3), (1, 2), "valid")]:
            pairs.append((f"{cls}-{pool}-{strides}-{padding}",
                          getattr(L, cls)(pool, strides=strides, padding=padding),
                          getattr(keras.layers, cls)(pool, strides=strides, padding=padding),
                          (7, 9, 2)))
    for cls in ("GlobalMaxPooling2D", "GlobalAveragePooling2D"):
        for keepdims in (False, True):
            pairs.append((f"{cls}-{keepdims}", getattr(L, cls)(keepdims=keepdims),
                          getattr(keras.layers, cls)(keepdims=keepdims), (5, 4, 3)))
    pairs.append(("Flatten", L.Flatten(), keras.layers.Flatten(), (3, 4, 2)))
    pairs.append(("Dropout", L.Dropout(0.5), keras.layers.Dropout(0.5), (6,)))
    for act in cytorch.activations.names():   # every activation cytorch has
        pairs.append((f"Dense-{act}", L.Dense(7, activation=act),
                      keras.layers.Dense(7, activation=act), (5,)))
        pairs.append((f"Activation-{act}", L.Activation(act), keras.layers.Activation(act),
                      (4, 3, 6)))
    pairs.append(("Dense-no-bias", L.Dense(4, use_bias=False),
                  keras.layers.Dense(4, use_bias=False), (6,)))
    return pairs


PAIRS = _layer_pairs()


@pytest.mark.parametrize("ours, theirs, shape", [p[1:] for p in PAIRS], ids=[p[0] for p in PAIRS])
def test_layer_outputs_match_keras(ours, theirs, shape):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((3,) + shape) * 3).astype(np.float32)
    ours.build(shape)
    theirs.build((None,) + shape)
    theirs.set_weights(ours.get_weights())          # Keras's order: kernel, bias
    want = to_numpy(theirs(x, training=False))
    got = ours.forward(x, training=False)
    if isinstance(ours, L.AveragePooling2D) and _uneven_same(ours, shape):
        # Keras's torch backend pads an uneven 'same' window by replicating the edge values
        # (keras/src/backend/torch/nn.py, _apply_same_padding, mode="replicate") and counts
        # them; its TensorFlow and JAX backends, like cytorch, average the real cells only
        assert rel(got, want) > 1e-3
        want = _real_cell_average(x, ours)
    assert got.shape == want.shape
    assert rel(got, want) < 1e-5
    # and back: the same list Keras gives
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_array_equal(a, b)


def _uneven_same(layer, shape):
    """Whether 'same' padding puts more on one side than the other on some axis."""
    if layer.padding != "same":
        return False
    for n, k, s in zip(shape[:2], layer.pool_size, layer.strides):
        total = max((-(-n // s) - 1) * s + k - n, 0)
        if total % 2:
            return True
    return False


def _real_cell_average(x, layer):
    """'same' average pooling over the real cells, as TensorFlow computes it: the sum over
    each zero-padded window divided by the number of real cells in it."""
    import torch.nn.functional as tf
    xt = torch.tensor(x).permute(0, 3, 1, 2)
    pads = []
    for n, k, s in zip(x.shape[1:3], layer.pool_size, layer.strides):
        total = max((-(-n // s) - 1) * s + k - n, 0)
        pads.append((total // 2, total - total // 2))
    flat = (pads[1][0], pads[1][1], pads[0][0], pads[0][1])
    sums = tf.avg_pool2d(tf.pad(xt, flat), layer.pool_size, layer.strides)
    counts = tf.avg_pool2d(tf.pad(torch.ones_like(xt), flat), layer.pool_size, layer.strides)
    return (sums / counts).permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("cls", ["Add", "Concatenate"])
def test_merge_layers_match_keras(cls):
    rng = np.random.default_rng(3)
    a, b = (rng.standard_normal((2, 3, 3, 4)).astype(np.float32) for _ in range(2))
    got = getattr(L, cls)().forward([a, b])
    want = to_numpy(getattr(keras.layers, cls)()([a, b]))
    assert rel(got, want) < 1e-6


@pytest.mark.parametrize("kernel, strides, padding", [
    ((1, 1), 2, "valid"), ((3, 3), 1, "same"), ((3, 2), (2, 1), "same"), ((2, 3), 2, "valid")])
def test_conv2d_gradients_match_keras(kernel, strides, padding):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 7, 6, 3)).astype(np.float32)
    ours = L.Conv2D(4, kernel, strides=strides, padding=padding)
    ours.build(x.shape[1:])
    theirs = keras.layers.Conv2D(4, kernel, strides=strides, padding=padding)
    theirs.build((None,) + x.shape[1:])
    theirs.set_weights(ours.get_weights())
    xt = torch.tensor(x, requires_grad=True)
    # oneDNN's float32 weight gradient is wrong for strided 1x1 convolutions (torch 2.13)
    with torch.backends.mkldnn.flags(enabled=False):
        out = theirs(xt)
        dout = rng.standard_normal(tuple(out.shape)).astype(np.float32)
        out.backward(torch.tensor(dout))
    y = ours.forward(x, training=True)
    dx = ours.backward(dout)
    assert rel(y, out.detach().numpy()) < 1e-5
    assert rel(dx, xt.grad.numpy()) < 1e-5
    assert rel(ours.grads["kernel"], theirs.kernel.value.grad.numpy()) < 1e-5
    assert rel(ours.grads["bias"], theirs.bias.value.grad.numpy()) < 1e-5
