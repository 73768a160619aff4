"""The layers of issue 11 against Keras 3 on identical weights: outputs (1e-5 relative), input
gradients, and BatchNormalization's moving statistics after a few training steps.

Keras 3 (with the torch backend) is an optional test oracle: without it every test here skips.
"""
import os

import numpy as np
import pytest

from cytorch import layers as L
from cytorch._gradcheck import relative_error

os.environ.setdefault("KERAS_BACKEND", "torch")
try:
    import keras
    import torch
except Exception as exc:   # not installed, or a backend that cannot load here
    pytest.skip(f"Keras 3 with the torch backend is not available ({exc})",
                allow_module_level=True)
if keras.backend.backend() != "torch":
    pytest.skip(f"these comparisons use Keras's torch backend, not "
                f"{keras.backend.backend()!r}", allow_module_level=True)

RTOL = 1e-5


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
