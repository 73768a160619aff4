"""The embedded digits data set, and a small CNN learning it (the CI-sized accuracy target)."""
import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from cytorch import Sequential
from cytorch.datasets import load_digits


@pytest.mark.parametrize("size", [8, 16, 28, 32])
def test_load_digits_shapes_and_range(size):
    X, y = load_digits(size)
    assert X.shape == (1797, size, size, 1) and X.dtype == np.float32
    assert y.shape == (1797,) and y.dtype.kind == "i" and set(np.unique(y)) == set(range(10))
    assert X.min() == 0.0 and X.max() == 1.0


def test_load_digits_matches_scikit_learn_and_centres_big_sizes():
    from sklearn.datasets import load_digits as sk_load
    X, _ = load_digits(8)
    np.testing.assert_allclose(X[..., 0], sk_load().images / 16, rtol=1e-6)
    X28, _ = load_digits(28)
    assert not X28[:, :4].any() and not X28[:, -4:].any()        # MNIST-like blank margin
    assert load_digits(28, centered=False)[0][:, :4].any()
    bunch = load_digits(16, return_X_y=False)
    assert bunch.data.shape == (1797, 16, 16, 1) and bunch.images.shape == (1797, 16, 16)
    assert "digits" in bunch.DESCR
    with pytest.raises(ValueError, match=r"size must be one of \(8, 16, 28, 32\), got 12"):
        load_digits(12)


def test_small_cnn_learns_digits():
    """Stratified 80/20 split, Adam 1e-3, batch 32: >= 0.97 test accuracy after 10 epochs
    (the benchmark's small CNN; benchmarks/bench_accuracy.py runs the full 15-epoch target)."""
    X, y = load_digits(8)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)
    model = Sequential.from_spec([
        ("conv2d", {"filters": 32, "kernel_size": 3, "padding": "same", "activation": "relu"}),
        ("conv2d", {"filters": 64, "kernel_size": 3, "padding": "same", "activation": "relu"}),
        ("max_pool2d", {"pool_size": 2}),
        ("flatten", {}),
        ("dense", {"units": 128, "activation": "relu"}),
        ("dense", {"units": 10, "activation": "softmax"}),
    ], input_shape=(8, 8, 1), seed=0)
    model.compile(optimizer="adam", metrics=["accuracy"])
    history = model.fit(X_tr, y_tr, batch_size=32, epochs=10, verbose=0, seed=0)
    loss, accuracy = model.evaluate(X_te, y_te)
    assert history.history["loss"][-1] < 0.2 * history.history["loss"][0]
    assert accuracy >= 0.97, accuracy
