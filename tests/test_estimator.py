"""CNNClassifier: scikit-learn's own estimator checks, then what users do with it."""
import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits, make_blobs
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from cytorch.estimator import CNNClassifier, auto_spec

# short fits stop at max_iter on purpose here; test_keras_semantics checks the warning itself
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# Every check, with the defaults and no excuse.  The one that needs care is
# check_sample_weight_equivalence_on_dense_data: fitting with integer weights must equal fitting
# on the rows repeated (weight 0: removed).  It holds because nothing random tells the two fits
# apart: the "auto" net has no dropout (alpha, an L2 penalty independent of the data, is its
# regulariser), batch_size="auto" is min(200, n), so the check's 15 weighted and 27 repeated
# rows each train as one full batch whose loss is sum(w_i l_i) / sum(w) (CNNClassifier's Notes),
# and early_stopping is off.  Shuffling a full batch only reorders a sum.  scikit-learn runs
# the same check on its MLPClassifier (solver="lbfgs") and MLPRegressor (solver="sgd",
# batch_size="auto") for the same reason: full batches on this data.
@parametrize_with_checks([CNNClassifier(random_state=0)])
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:600] / 16.0, y[:600]


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=120, centers=3, n_features=4, random_state=0)
    return X, y


# -- architecture ------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 4, 1), (2, 2, 1), (3, 5, 2), (8, 8, 1),
                                   (28, 28, 1), (96, 96, 3)])
def test_auto_spec_builds_for_any_input(shape):
    from cytorch.graph import Sequential
    spec = auto_spec(shape) + [("dense", {"units": 3, "activation": "softmax"})]
    model = Sequential.from_spec(spec, input_shape=shape, seed=0)
    out = model.predict(np.zeros((2,) + shape, dtype=np.float32), batch_size=2)
    assert out.shape == (2, 3)


def test_auto_spec_pools_only_big_maps():
    names = [name for name, _ in auto_spec((8, 8, 1))]
    assert names.count("max_pool2d") == 2
    assert "max_pool2d" not in [name for name, _ in auto_spec((2, 2, 1))]
    assert "global_avg_pool2d" in [name for name, _ in auto_spec((96, 96, 3))]


# -- scikit-learn tooling ----------------------------------------------------------------------
def test_pipeline_on_digits():
    X, y = load_digits(return_X_y=True)
    pipe = Pipeline([("scale", MinMaxScaler()),
                     ("cnn", CNNClassifier(input_shape=(8, 8, 1), max_iter=10,
                                           random_state=0))])
    pipe.fit(X[:1200], y[:1200])
    # the last third of the digits is written by other people than the first two thirds:
    # harder than a shuffled split (SVC(gamma=0.001) scores 0.963 here)
    assert pipe.score(X[1200:], y[1200:]) > 0.9


def test_grid_search_two_params(digits):
    X, y = digits
    grid = GridSearchCV(CNNClassifier(max_iter=5, random_state=0),
                        {"learning_rate": [3e-3, 1e-2], "batch_size": [16, 32]}, cv=2, n_jobs=2)
    grid.fit(X, y)
    assert set(grid.best_params_) == {"learning_rate", "batch_size"}
    assert len(grid.cv_results_["mean_test_score"]) == 4
    assert grid.best_score_ > 0.8


def test_cross_val_score(digits):
    X, y = digits
    scores = cross_val_score(CNNClassifier(learning_rate=3e-3, max_iter=10, random_state=0), X, y,
                             cv=3)
    assert scores.shape == (3,) and scores.min() > 0.7  # 400 training images, 10 epochs


# -- labels, shapes, probabilities -------------------------------------------------------------
def test_string_labels_round_trip(blobs):
    X, y = blobs
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = CNNClassifier(random_state=0).fit(X, names)
    assert clf.classes_.tolist() == ["setosa", "versicolor", "virginica"]
    pred = clf.predict(X)
    assert pred.dtype == names.dtype and set(pred) <= set(names)
    assert np.mean(pred == names) > 0.9


def test_two_classes_give_two_probability_columns(blobs):
    X, y = blobs
    mask = y < 2
    labels = np.where(y[mask] == 0, "no", "yes")
    clf = CNNClassifier(max_iter=5, random_state=0).fit(X[mask], labels)
    proba = clf.predict_proba(X[mask])
    assert proba.shape == (mask.sum(), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(1)], clf.predict(X[mask]))
    np.testing.assert_allclose(clf.predict_log_proba(X[mask]), np.log(proba))


@pytest.mark.parametrize("form", ["2d", "3d", "4d"])
def test_image_forms_agree(digits, form):
    X, y = digits
    X = X[:200]
    X_form = {"2d": X, "3d": X.reshape(-1, 8, 8), "4d": X.reshape(-1, 8, 8, 1)}[form]
    clf = CNNClassifier(max_iter=2, random_state=0).fit(X_form, y[:200])
    assert clf.input_shape_ == (8, 8, 1) and clf.n_features_in_ == 64
    reference = CNNClassifier(max_iter=2, random_state=0).fit(X, y[:200])
    np.testing.assert_array_equal(clf.predict_proba(X_form), reference.predict_proba(X))


def test_input_shape_is_inferred_or_taken():
    rng = np.random.default_rng(0)
    y = np.arange(20) % 2
    assert CNNClassifier(max_iter=1).fit(rng.random((20, 9)), y).input_shape_ == (3, 3, 1)
    assert CNNClassifier(max_iter=1).fit(rng.random((20, 6)), y).input_shape_ == (1, 6, 1)
    clf = CNNClassifier(input_shape=(2, 3), max_iter=1).fit(rng.random((20, 6)), y)
    assert clf.input_shape_ == (2, 3, 1)
    clf = CNNClassifier(input_shape=(2, 1, 3), max_iter=1).fit(rng.random((20, 6)), y)
    assert clf.input_shape_ == (2, 1, 3)


def test_dtype_follows_X(blobs):
    X, y = blobs
    clf32 = CNNClassifier(max_iter=1, random_state=0).fit(X.astype(np.float32), y)
    assert clf32.predict_proba(X).dtype == np.float32
    clf64 = CNNClassifier(max_iter=1, random_state=0).fit(X, y)
    assert clf64.predict_proba(X).dtype == np.float64


# -- randomness, persistence, parameters -------------------------------------------------------
def test_same_random_state_same_model(blobs):
    X, y = blobs
    a = CNNClassifier(max_iter=3, random_state=7).fit(X, y)
    b = CNNClassifier(max_iter=3, random_state=7).fit(X, y)
    c = CNNClassifier(max_iter=3, random_state=8).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.loss_curve_ == b.loss_curve_
    assert not np.array_equal(a.predict_proba(X), c.predict_proba(X))
    # fit is idempotent: refitting the same estimator gives the same model again
    np.testing.assert_array_equal(a.fit(X, y).predict_proba(X), b.predict_proba(X))


def test_pickle_is_small_and_predicts_identically(digits):
    X, y = digits
    clf = CNNClassifier(max_iter=2, random_state=0).fit(X, y)
    blob = pickle.dumps(clf)
    restored = pickle.loads(blob)
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
    weight_bytes = sum(p.nbytes for layer in clf.model_.layers for p in layer.params.values())
    # the weights and little else: no cached batches, no gradients, no optimizer moments
    assert len(blob) < 1.1 * weight_bytes + 20_000
    # an unpickled estimator trains on (with a fresh optimizer)
    restored.partial_fit(X, y)
    assert restored.n_iter_ == clf.n_iter_ + 1


def test_params_round_trip_with_spec_list(blobs):
    X, y = blobs
    spec = [("conv2d", {"filters": 4, "kernel_size": 1, "activation": "relu"}),
            ("flatten", {})]
    clf = CNNClassifier(layers=spec, max_iter=2, random_state=0)
    clone_ = clone(clf)
    assert clone_.get_params()["layers"] == spec
    clf.fit(X, y)
    assert spec == [("conv2d", {"filters": 4, "kernel_size": 1, "activation": "relu"}),
                    ("flatten", {})], "the user's spec list must not be modified"
    assert len(clf.model_.layers) >= 3
    other = CNNClassifier().set_params(**clf.get_params())
    assert other.get_params() == clf.get_params()


def test_preset_layers():
    from cytorch.datasets import load_digits as load_digits_images
    X, y = load_digits_images(size=32)
    clf = CNNClassifier(layers="lenet5", max_iter=1, random_state=0).fit(X[:64], y[:64])
    # LeNet-5 without its 10-way output, then the output layer for the 10 classes seen
    assert clf.model_.count_params() == 61706 and clf.input_shape_ == (32, 32, 1)
    X8, y8 = load_digits(return_X_y=True)
    with pytest.raises(ValueError, match=r"layers='keras_mnist' does not fit samples of "
                                         r"shape \(8, 8, 1\): .*needs at least 5x5"):
        CNNClassifier(layers="keras_mnist", max_iter=1).fit(X8[:50], y8[:50])


# -- training behaviour ------------------------------------------------------------------------
def test_partial_fit_learns_and_rejects_unseen_labels(blobs):
    X, y = blobs
    clf = CNNClassifier(random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    for _ in range(8):
        clf.partial_fit(X, y, classes=[0, 1, 2])
    assert clf.n_iter_ == 8 and len(clf.loss_curve_) == 8
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    with pytest.raises(ValueError, match=r"labels \[5\] not in classes \[0, 1, 2\]"):
        clf.partial_fit(X[:3], np.array([0, 5, 1]))


def test_early_stopping_keeps_best_epoch(digits):
    X, y = digits
    clf = CNNClassifier(early_stopping=True, n_iter_no_change=2, tol=0.5, max_iter=30,
                        random_state=0).fit(X, y)
    # tol=0.5 is unreachable after the first epoch: 1 + (n_iter_no_change + 1) epochs
    assert clf.n_iter_ == 4
    assert len(clf.validation_scores_) == 4
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.best_loss_ is None


def test_fitted_attributes(blobs):
    X, y = blobs
    clf = CNNClassifier(max_iter=3, random_state=0).fit(X, y)
    assert clf.n_iter_ == 3 and clf.t_ == 3 * len(X)
    assert clf.history_["loss"] == clf.loss_curve_ and len(clf.history_["accuracy"]) == 3
    assert clf.best_loss_ == min(clf.loss_curve_)
    assert clf.model_.output_shape == (3,) and clf.n_features_in_ == 4


def test_training_loss_plateau_stops(blobs):
    X, y = blobs
    clf = CNNClassifier(tol=10.0, n_iter_no_change=1, max_iter=50, random_state=0).fit(X, y)
    assert clf.n_iter_ == 3 and clf.best_loss_ == min(clf.loss_curve_)
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None


def test_warm_start_continues(blobs):
    X, y = blobs
    clf = CNNClassifier(max_iter=2, warm_start=True, random_state=0).fit(X, y)
    first = clf.model_
    clf.fit(X, y)
    assert clf.model_ is first and clf.n_iter_ == 4
    with pytest.raises(ValueError, match="same classes"):
        clf.fit(X[y < 2], y[y < 2])


def test_sample_weight_scale_does_not_matter(blobs):
    # Weights are rescaled to mean 1 before training, so multiplying them all by 3 changes
    # nothing beyond rounding, with mini-batches too.  Without the rescaling the loss would
    # triple and, with plain SGD, so would every step.
    X, y = blobs
    sw = np.random.default_rng(0).integers(1, 4, size=len(y)).astype(float)
    a, b = (CNNClassifier(optimizer="sgd", batch_size=16, max_iter=3, random_state=0)
            .fit(X, y, sample_weight=w) for w in (sw, 3 * sw))
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-9)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), rtol=1e-9, atol=1e-12)


def test_sample_weight_zero_means_ignored(blobs):
    # Samples of class 2 with weight 0 teach nothing: class 2 is then rarely predicted.
    X, y = blobs
    sw = np.where(y == 2, 0.0, 1.0)
    clf = CNNClassifier(max_iter=10, random_state=0).fit(X, y, sample_weight=sw)
    assert np.mean(clf.predict(X) == 2) < 0.2


def test_verbose_prints_progress(blobs, capsys):
    X, y = blobs
    CNNClassifier(max_iter=2, verbose=1, random_state=0).fit(X, y)
    out = capsys.readouterr()
    assert "loss" in out.out + out.err


# -- bad input ---------------------------------------------------------------------------------
def test_bad_input_messages(blobs):
    X, y = blobs
    clf = CNNClassifier(max_iter=1, random_state=0)
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        clf.fit(X_nan, y)
    X_inf = X.copy()
    X_inf[1, 1] = np.inf
    with pytest.raises(ValueError, match="Input X contains infinity"):
        clf.fit(X_inf, y)
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        clf.fit(X[:, 0], y)
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        clf.fit(X, y + 0.5)
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(120,\), one weight "
                                         r"per sample, got shape \(119,\)"):
        clf.fit(X, y, sample_weight=np.ones(119))
    with pytest.raises(ValueError, match="at least 2 classes"):
        clf.fit(X, np.zeros(len(X)))
    clf.fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features, but CNNClassifier is expecting 4"):
        clf.predict(X[:, :3])
    with pytest.raises(ValueError, match=r"images of shape \(4, 1, 1\), but CNNClassifier "
                                         r"was fitted on images of shape \(2, 2, 1\)"):
        clf.predict(X.reshape(-1, 4, 1))
    with pytest.raises(ValueError, match=r"input_shape=\(3, 3\) holds 9 values per sample, "
                                         r"but X has 4 features"):
        CNNClassifier(input_shape=(3, 3)).fit(X, y)


@pytest.mark.parametrize("param, value, message", [
    ("max_iter", 0, "max_iter must be an int >= 1, got 0"),
    ("learning_rate", -1.0, "learning_rate must be a float > 0"),
    ("validation_fraction", 1.0, r"validation_fraction must be a float in \(0, 1\)"),
    ("layers", "lenet", "layers='lenet': unknown preset.*did you mean 'lenet5'"),
    ("optimizer", "adamx", "optimizer='adamx': unknown optimizer"),
    ("input_shape", (0, 4), "input_shape must be None or a tuple"),
    ("batch_size", 2.5, 'batch_size must be an int >= 1 or "auto", got 2.5'),
    ("batch_size", "full", 'batch_size must be an int >= 1 or "auto", got \'full\''),
])
def test_bad_parameters_are_named(blobs, param, value, message):
    X, y = blobs
    with pytest.raises(ValueError, match=message):
        CNNClassifier(**{param: value}).fit(X, y)


# -- beyond one machine ------------------------------------------------------------------------
def test_grid_search_on_dask(digits):
    pytest.importorskip("distributed")
    import joblib
    from distributed import Client, LocalCluster

    X, y = digits
    X, y = X[:300], y[:300]
    # separate worker processes on loopback: the estimator travels pickled, as on a real cluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster):
        with joblib.parallel_backend("dask"):
            grid = GridSearchCV(CNNClassifier(max_iter=2, random_state=0),
                                {"learning_rate": [1e-3, 3e-3], "alpha": [0.0, 1e-4]}, cv=2)
            grid.fit(X, y)
    serial = GridSearchCV(CNNClassifier(max_iter=2, random_state=0),
                          {"learning_rate": [1e-3, 3e-3], "alpha": [0.0, 1e-4]}, cv=2).fit(X, y)
    np.testing.assert_array_equal(grid.cv_results_["mean_test_score"],
                                  serial.cv_results_["mean_test_score"])
