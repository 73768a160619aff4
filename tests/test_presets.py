"""The presets after LeNet: alexnet_small and vgg_small (parameter counts as documented, the
BatchNormalization variants' non-trainable statistics, shapes, and a training step)."""
import numpy as np
import pytest

from cytorch import models


@pytest.mark.parametrize("build, batch_norm, total, frozen", [
    (models.alexnet_small, False, 176_602, 0),
    (models.alexnet_small, True, 177_346, 496),
    (models.vgg_small, False, 204_282, 0),
    (models.vgg_small, True, 204_954, 448),
])
def test_parameter_counts_match_the_docstrings(build, batch_norm, total, frozen):
    model = build(batch_norm=batch_norm, seed=0)
    assert model.count_params() == total
    assert sum(v.size for layer in model.layers for v in layer.state.values()) == frozen
    assert f"{total:,}" in build.__doc__
    text = model.summary(print_fn=None)
    assert f"Non-trainable params: {frozen:,}" in text
    assert model.input_shape == (32, 32, 1) and model.output_shape == (10,)


@pytest.mark.parametrize("name", ["alexnet_small", "vgg_small"])
def test_presets_are_registered_and_train(name):
    preset = models.get(name)
    assert preset.input_shape == (32, 32, 1)
    model = preset(num_classes=3, seed=0)
    assert model.output_shape == (3,)
    rng = np.random.default_rng(0)
    X = rng.random((8, 32, 32, 1), dtype=np.float32)
    y = rng.integers(0, 3, size=8)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    history = model.fit(X, y, batch_size=4, epochs=2, verbose=0, seed=0)
    assert np.isfinite(history.history["loss"]).all()
    assert np.allclose(model.predict(X).sum(axis=1), 1, atol=1e-5)
