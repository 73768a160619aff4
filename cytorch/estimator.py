"""``CNNClassifier``: a convolutional network that behaves like any scikit-learn classifier.

It speaks scikit-learn's language (``fit``/``predict``/``predict_proba``, ``classes_``,
``n_features_in_``, ``random_state``) and borrows ``MLPClassifier``'s vocabulary wherever the
idea is the same: ``max_iter`` counts epochs, ``alpha`` is the L2 penalty, ``early_stopping``
holds out ``validation_fraction`` of the data and stops after ``n_iter_no_change`` epochs
without an improvement of at least ``tol``; ``loss_curve_``, ``validation_scores_`` and
``n_iter_`` record what happened.

Images arrive in any of three forms::

    (n, h, w)          grey images
    (n, h, w, c)       channels-last images
    (n, features)      flat rows, reshaped to ``input_shape`` (given, or inferred:
                       a square count s*s becomes (s, s, 1), any other count (1, features, 1))

so the estimator drops into a ``Pipeline`` after a scaler that only knows 2-D arrays.

The network computes in the dtype of X, as ``MLPClassifier`` does: float32 X trains in
float32 (about twice as fast), anything else in float64 (integers included), where results
are reproducible to the last bit whatever the batch a sample is predicted in.

>>> from sklearn.datasets import load_digits
>>> from cytorch import CNNClassifier
>>> X, y = load_digits(return_X_y=True)
>>> clf = CNNClassifier(input_shape=(8, 8, 1), max_iter=2, random_state=0).fit(X / 16, y)
>>> clf.predict_proba(X[:3] / 16).shape
(3, 10)
"""
import copy
import math
import numbers
import sys
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ._checks import check_sample_weight, is_int
from ._config import single_threaded_blas
from .callbacks import Callback
from .errors import ShapeError

__all__ = ["CNNClassifier", "auto_spec"]

_MAX_SEED = 2**31 - 1


def auto_spec(input_shape):
    """The ``layers="auto"`` network for images of ``input_shape`` ``(h, w, c)``.

    Conv blocks of ``Conv2D(f, 3, padding="same", activation="relu")`` with ``f = 16, 32, ...``
    keep the map size, so any input works down to 1x1 (the kernel shrinks to the map along an
    axis shorter than 3).  An axis is max-pooled by 2 only while it is at least 4 long, so a
    pooled map keeps 2 cells; a third and fourth block are added while the map is still at
    least 8x8.  The features are then flattened (small maps, where *where* a feature fires
    matters, as for tabular rows seen as ``(1, features, 1)``) or globally averaged (big maps,
    to keep the head small), and a ``Dense(128, relu)`` head follows.  The output layer is
    added by ``CNNClassifier`` from the number of classes.

    There is no dropout: the estimator's regulariser is ``alpha`` (L2), which, unlike dropout's
    random masks, treats a sample of weight 2 exactly like two copies of it (see the Notes of
    ``CNNClassifier``).  Dropout is one spec entry away: the recommended setting there adds
    it, with twice the filters, for 0.2 to 0.3 points on the digits at twice the CPU time.

    >>> [name for name, _ in auto_spec((8, 8, 1))]
    ['conv2d', 'max_pool2d', 'conv2d', 'max_pool2d', 'flatten', 'dense']
    >>> [name for name, _ in auto_spec((1, 4, 1))]
    ['conv2d', 'max_pool2d', 'conv2d', 'flatten', 'dense']
    """
    h, w, _ = input_shape
    spec, filters, blocks = [], 16, 0
    while blocks < 2 or (blocks < 4 and h >= 8 and w >= 8):
        kernel = (min(3, h), min(3, w))
        spec.append(("conv2d", {"filters": filters, "kernel_size": kernel, "padding": "same",
                                "activation": "relu"}))
        pool = (2 if h >= 4 else 1, 2 if w >= 4 else 1)
        if pool != (1, 1):
            spec.append(("max_pool2d", {"pool_size": pool}))
            h, w = h // pool[0], w // pool[1]
        blocks += 1
        filters *= 2
    filters //= 2
    spec.append(("flatten", {}) if h * w * filters <= 4096 else ("global_avg_pool2d", {}))
    spec.append(("dense", {"units": 128, "activation": "relu"}))
    return spec


class CNNClassifier(ClassifierMixin, BaseEstimator):
    """Convolutional neural network classifier trained with mini-batch gradient descent.

    Parameters
    ----------
    layers : "auto", str or list of (name, kwargs), default="auto"
        The hidden network. ``"auto"`` builds a small conv net sized to the input (see
        :func:`auto_spec`); a preset name (``"lenet5"``, ``"keras_mnist"``) takes that
        network without its output layer; a list ``[("conv2d", {"filters": 8,
        "kernel_size": 3}), ("flatten", {}), ...]`` is passed to ``Sequential.from_spec``.
        The output layer ``Dense(n_classes, activation="softmax")`` is always appended.
    input_shape : tuple of int, optional
        ``(h, w)`` or ``(h, w, c)`` of one sample when X is 2-D ``(n, features)``; inferred
        when omitted (``(s, s, 1)`` for ``s*s`` features, else ``(1, features, 1)``).
    optimizer : {"adam", "sgd", "rmsprop", "adagrad"}, default="adam"
        Optimizer name; it gets ``learning_rate`` and ``l2=alpha``.
    learning_rate : float, default=1e-2
        Step size of the optimizer.
    batch_size : int or "auto", default="auto"
        Samples per gradient step; ``"auto"`` is ``min(200, n_samples)``, as in
        ``MLPClassifier``, so up to 200 samples train in full batches (see Notes).
    max_iter : int, default=50
        Maximum number of epochs (passes over the training data).
    alpha : float, default=1e-3
        Strength of the L2 penalty: ``alpha / 2 * ||w||^2`` is added to the loss (the
        optimizer's ``l2``, biases included).  The default net's only regulariser.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (stratified) and stop when its
        accuracy has not improved by ``tol`` for ``n_iter_no_change`` epochs; the weights of
        the best epoch are kept.
    validation_fraction : float, default=0.1
        Share of the training data held out when ``early_stopping`` is on.
    n_iter_no_change : int, default=5
        Training stops once more than this many epochs in a row did not improve by at least
        ``tol`` (the validation accuracy with ``early_stopping``, else the training loss).
    tol : float, default=1e-4
        The improvement that counts.
    random_state : int, RandomState instance or None, default=None
        Controls everything random: initial weights, shuffling, the validation split and
        the masks of any dropout layer.  An int gives bit-identical models on every ``fit``.
    verbose : int, default=0
        ``1`` draws a progress bar per epoch, ``2`` prints one line per epoch (on stderr).
    warm_start : bool, default=False
        Continue from the previous ``fit`` instead of starting afresh.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels, in the order of ``predict_proba``'s columns.
    n_features_in_ : int
        Number of values per sample (``h * w * c``).
    input_shape_ : tuple of int
        ``(h, w, c)`` of one sample as the network sees it.
    model_ : cytorch.Sequential
        The trained network (its last layer is the softmax output).
    history_ : dict of str to list
        Per-epoch metrics reported by the training loop (``loss``, ``accuracy``, ...).
    loss_curve_ : list of float
        Mean training loss of every epoch (over its mini-batches, as in MLPClassifier).
    best_loss_ : float or None
        Lowest training loss (``None`` with ``early_stopping``).
    validation_scores_ : list of float or None
        Validation accuracy after every epoch (``None`` without ``early_stopping``).
    best_validation_score_ : float or None
        Best validation accuracy (``None`` without ``early_stopping``).
    n_iter_ : int
        Epochs run by the last ``fit`` (or in total with ``partial_fit``/``warm_start``).
    t_ : int
        Training samples seen, counting repeats over epochs.

    Notes
    -----
    **Sample weights.**  The loss of a batch is ``sum(w_i l_i) / (batch size * mean(w))``,
    where ``mean(w)`` is taken over the whole training set once: a full batch therefore
    minimises ``sum(w_i l_i) / sum(w)``, exactly the mean loss over the data with every sample
    repeated ``w_i`` times (and a weight of 0 drops the sample).  Training with weights then
    equals training on repeated rows, to rounding, whenever nothing random tells the two
    apart: both the weighted rows and the repeated ones fit in one batch (with
    ``batch_size="auto"``: at most 200 rows each), no dropout (the default net has none) and
    no ``early_stopping`` (a repeated row's copies may land on both sides of the validation
    split, a weighted row on one).  With mini-batches the two agree in expectation only.

    **Accuracy.**  5-fold stratified CV on scikit-learn's ``load_digits`` (pixels / 16,
    ``input_shape=(8, 8, 1)``; ``benchmarks/bench_estimator.py``): the defaults reach
    0.986; the recommended setting for such small images, the "auto" net with twice the
    filters and dropout before the output layer, 0.988::

        conv = {"kernel_size": 3, "padding": "same", "activation": "relu"}
        CNNClassifier(input_shape=(8, 8, 1), layers=[
            ("conv2d", {"filters": 32, **conv}), ("max_pool2d", {"pool_size": 2}),
            ("conv2d", {"filters": 64, **conv}), ("max_pool2d", {"pool_size": 2}),
            ("flatten", {}), ("dense", {"units": 128, "activation": "relu"}),
            ("dropout", {"rate": 0.2})])
    """

    def __init__(self, layers="auto", input_shape=None, optimizer="adam", learning_rate=1e-2,
                 batch_size="auto", max_iter=50, alpha=1e-3, early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=5, tol=1e-4, random_state=None,
                 verbose=0, warm_start=False):
        self.layers = layers
        self.input_shape = input_shape
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.alpha = alpha
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start

    def __sklearn_tags__(self):
        # scikit-learn >= 1.6 tags (the dict-returning ``_more_tags`` is gone).  The defaults
        # already say what else is true: dense input only, no NaN, deterministic given an int
        # random_state, multi-class, y required.
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True  # (n, h, w) images; (n, h, w, c) as well
        return tags

    # -- training ---------------------------------------------------------------------------
    def fit(self, X, y, sample_weight=None):
        """Train for up to ``max_iter`` epochs.

        Parameters
        ----------
        X : array-like of shape (n, h, w), (n, h, w, c) or (n, features)
        y : array-like of shape (n,)
            Labels of any type (ints, strings, ...); at least two distinct ones.
        sample_weight : array-like of shape (n,), optional
            Non-negative weights; each sample's loss is scaled by its weight.

        Returns
        -------
        self

        Warns
        -----
        ConvergenceWarning
            When ``max_iter`` epochs ran without the stopping rule (``tol``,
            ``n_iter_no_change``) ending training, as ``MLPClassifier`` warns.
        """
        self._validate_params()
        fitted = self.warm_start and hasattr(self, "model_")
        X, y, sample_weight = self._validate_training_data(X, y, sample_weight, reset=not fitted)
        classes = np.unique(y)
        if fitted and not np.array_equal(classes, self.classes_):
            raise ValueError(
                "warm_start can only continue a fit whose y has the same classes: the previous "
                f"fit saw {self.classes_.tolist()}, this y has {classes.tolist()}")
        _require_two_classes(classes, y, sample_weight)
        if not fitted:
            self._rng = check_random_state(self.random_state)
            self._start(classes, X.dtype)
        y_enc = self._label_encoder.transform(y)

        X_val = y_val = sw_val = None
        if self.early_stopping:
            X, X_val, y_enc, y_val, sample_weight, sw_val = self._split_validation(
                X, y_enc, sample_weight)
        with single_threaded_blas():
            converged = self._train(X, y_enc, sample_weight, self.max_iter, X_val, y_val,
                                    sw_val)
        if not converged:   # as MLPClassifier: max_iter epochs ran, the stopping rule never met
            warnings.warn(f"CNNClassifier: maximum iterations ({self.max_iter}) reached and "
                          f"the optimization hasn't converged yet (no {self.n_iter_no_change}"
                          f" epochs in a row without an improvement of tol={self.tol}); "
                          f"raise max_iter or tol", ConvergenceWarning, stacklevel=2)
        return self

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Train for one epoch on (X, y), continuing from the current weights.

        ``classes`` (every label ``y`` may ever contain) is required on the first call, since
        the output layer needs to know how many units it has; labels not among them later
        raise ``ValueError``.  ``early_stopping`` does not apply: each call is one epoch.
        """
        first = not hasattr(self, "model_")
        if first:
            self._validate_params()
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit: "
                                 "every label y may contain, e.g. classes=np.unique(y_all)")
            classes = np.unique(np.asarray(classes))
            if len(classes) < 2:
                raise ValueError(f"classes must hold at least 2 labels, got {classes.tolist()}")
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"classes={np.unique(classes).tolist()} differs from classes_="
                             f"{self.classes_.tolist()} set by the first partial_fit call")
        X, y, sample_weight = self._validate_training_data(X, y, sample_weight, reset=first)
        unseen = np.setdiff1d(y, classes if first else self.classes_)
        if len(unseen):
            known = (classes if first else self.classes_).tolist()
            raise ValueError(f"y contains labels {unseen.tolist()} not in classes {known}; "
                             "partial_fit can only learn the classes given on its first call")
        if first:
            self._rng = check_random_state(self.random_state)
            self._start(classes, X.dtype)
        with single_threaded_blas():
            self._train(X, self._label_encoder.transform(y), sample_weight, 1,
                        stop_early=False)
        return self

    def _start(self, classes, dtype):
        """Fresh network, optimizer and bookkeeping for ``classes``."""
        from .graph import Sequential

        self.classes_ = classes
        self._label_encoder = LabelEncoder().fit(classes)
        spec = self._hidden_spec() + [("dense", {"units": len(classes),
                                                 "activation": "softmax"})]
        try:
            self.model_ = Sequential.from_spec(spec, input_shape=self.input_shape_,
                                               seed=int(self._rng.randint(_MAX_SEED)))
        except ShapeError as exc:
            raise ShapeError(f"layers={self.layers!r} does not fit samples of shape "
                             f"{self.input_shape_}: {exc}") from None
        if dtype != np.float32:
            for layer in self.model_.layers:
                layer.set_dtype(dtype)
        # accuracy weighted by sample_weight (Keras's weighted_metrics), as MLPClassifier
        # scores its early-stopping validation set
        self.model_.compile(optimizer=self._make_optimizer(),
                            loss="sparse_categorical_crossentropy", weighted_metrics=["accuracy"])
        self.history_ = {}
        self.loss_curve_ = []
        self.n_iter_ = 0
        self.t_ = 0
        self._no_improvement_count = 0
        self.best_loss_ = None if self.early_stopping else np.inf
        self.validation_scores_ = [] if self.early_stopping else None
        self.best_validation_score_ = -np.inf if self.early_stopping else None
        self._best_weights = None

    def _hidden_spec(self):
        if isinstance(self.layers, str) and self.layers == "auto":
            return auto_spec(self.input_shape_)
        if isinstance(self.layers, str):  # a preset, without its output layer
            from . import models
            return models.get(self.layers).spec()[:-1]
        # copies: the list the user passed stays untouched, also across fits
        return [(name, dict(kwargs)) for name, kwargs in self.layers]

    def _make_optimizer(self):
        from . import optimizers
        return optimizers.get(self.optimizer)(learning_rate=self.learning_rate, l2=self.alpha)

    def _split_validation(self, X, y, sample_weight):
        """Stratified hold-out of ``validation_fraction`` (plain when a class is too rare)."""
        counts = np.bincount(y)
        stratify = y if counts[counts > 0].min() >= 2 else None
        try:
            return train_test_split(X, y, sample_weight, test_size=self.validation_fraction,
                                    random_state=self._rng.randint(_MAX_SEED),
                                    stratify=stratify)
        except ValueError as exc:
            raise ValueError(
                f"early_stopping could not hold out validation_fraction="
                f"{self.validation_fraction} of {len(y)} samples: {exc}") from None

    def _train(self, X, y, sample_weight, epochs, X_val=None, y_val=None, sw_val=None,
               stop_early=True):
        """Up to ``epochs`` epochs in one ``model.fit``, so the progress bar counts them; the
        callback applies MLPClassifier's stopping rule after each one when ``stop_early``.

        Returns False when all ``epochs`` ran without the stopping rule ending them."""
        # Weights scaled to mean 1: the loop divides a batch's sum(w_i l_i) by its size, so a
        # full batch's loss is sum(w_i l_i) / sum(w), the mean over the data with sample i
        # repeated w_i times, and mini-batches keep the scale the learning rate was chosen for.
        sample_weight = sample_weight * (len(sample_weight) / sample_weight.sum())
        validation = None if X_val is None else (X_val, y_val, sw_val)
        history = self.model_.fit(
            X, y, batch_size=self._batch_size(len(y)), epochs=epochs, verbose=self.verbose,
            callbacks=[_StoppingRule(self, stop_early)], validation_data=validation,
            shuffle=True, sample_weight=sample_weight, seed=int(self._rng.randint(_MAX_SEED)))
        for key, values in history.history.items():
            self.history_.setdefault(key, []).extend(values)
        self.t_ += len(y) * len(history.epoch)
        if self._best_weights is not None:
            self.model_.set_weights(self._best_weights)
            self._best_weights = None
        return self.model_.stop_training or len(history.epoch) < epochs

    def _batch_size(self, n_samples):
        """``batch_size``, with ``"auto"`` resolved as MLPClassifier does: min(200, n)."""
        return min(200, n_samples) if self.batch_size == "auto" else self.batch_size

    def _update_no_improvement_count(self, logs):
        """MLPClassifier's rule: count epochs whose validation accuracy (``early_stopping``)
        or training loss did not improve by ``tol``; True once the count passes
        ``n_iter_no_change``.  With ``early_stopping`` the best epoch's weights are kept."""
        self.loss_curve_.append(float(logs["loss"]))
        self.n_iter_ += 1
        if "val_accuracy" in logs:
            score = float(logs["val_accuracy"])
            self.validation_scores_.append(score)
            improved = score >= self.best_validation_score_ + self.tol
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_weights = self.model_.get_weights()
        elif self.best_loss_ is not None:
            loss = self.loss_curve_[-1]
            improved = loss <= self.best_loss_ - self.tol
            self.best_loss_ = min(self.best_loss_, loss)
        else:  # partial_fit of an early-stopping estimator: nothing to compare
            return False
        self._no_improvement_count = 0 if improved else self._no_improvement_count + 1
        return self._no_improvement_count > self.n_iter_no_change

    # -- prediction -------------------------------------------------------------------------
    def predict_proba(self, X):
        """Class probabilities, shape ``(n, n_classes)``, columns in the order of ``classes_``."""
        check_is_fitted(self)
        X = self._validate_X(X)
        with single_threaded_blas():
            # the batch only bounds memory here: predictions do not depend on it
            return self.model_.predict(X, batch_size=max(self._batch_size(len(X)), 256))

    def predict_log_proba(self, X):
        """Natural log of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """The most probable class of each sample, as one of the original labels."""
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    # -- validation -------------------------------------------------------------------------
    def _validate_params(self):
        def check(name, ok, expected):
            if not ok:
                raise ValueError(f"{name} must be {expected}, got {getattr(self, name)!r}")

        def is_real(v):
            return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)

        layers = self.layers
        check("layers", isinstance(layers, str) or (
            isinstance(layers, (list, tuple)) and all(
                isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)
                and isinstance(item[1], dict) for item in layers)),
            '"auto", a preset name or a list of (layer_name, kwargs) pairs')
        check("optimizer", isinstance(self.optimizer, str), 'an optimizer name such as "adam"')
        from . import models, optimizers
        for name, lookup in (("layers", models.get), ("optimizer", optimizers.get)):
            value = getattr(self, name)
            if isinstance(value, str) and value != "auto":
                try:
                    lookup(value)
                except KeyError as exc:
                    raise ValueError(f"{name}={value!r}: {exc.args[0]}") from None
        check("learning_rate", is_real(self.learning_rate) and self.learning_rate > 0,
              "a float > 0")
        check("batch_size", self.batch_size == "auto" if isinstance(self.batch_size, str)
              else is_int(self.batch_size) and self.batch_size >= 1, 'an int >= 1 or "auto"')
        check("max_iter", is_int(self.max_iter) and self.max_iter >= 1, "an int >= 1")
        check("alpha", is_real(self.alpha) and self.alpha >= 0, "a float >= 0")
        check("validation_fraction",
              is_real(self.validation_fraction) and 0 < self.validation_fraction < 1,
              "a float in (0, 1)")
        check("n_iter_no_change", is_int(self.n_iter_no_change) and self.n_iter_no_change >= 1,
              "an int >= 1")
        check("tol", is_real(self.tol) and self.tol >= 0, "a float >= 0")
        check("verbose", is_int(self.verbose) or isinstance(self.verbose, bool), "an int")
        if self.input_shape is not None:
            shape = self.input_shape
            check("input_shape", isinstance(shape, (tuple, list)) and len(shape) in (2, 3)
                  and all(is_int(s) and s >= 1 for s in shape),
                  "None or a tuple (h, w) or (h, w, c) of positive ints")

    def _validate_training_data(self, X, y, sample_weight, reset):
        X, image_shape = _flatten_images(X)
        X, y = validate_data(self, X, y, reset=reset, dtype=(np.float64, np.float32))
        check_classification_targets(y)
        if reset:
            self.input_shape_ = self._resolve_input_shape(image_shape, X.shape[1])
        else:
            self._check_image_shape(image_shape)
        X = X.reshape((len(X),) + self.input_shape_)
        return X, y, _sample_weights(sample_weight, len(y))

    def _validate_X(self, X):
        """X for prediction: checked like the training X, reshaped to ``(n, h, w, c)``."""
        X, image_shape = _flatten_images(X)
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        self._check_image_shape(image_shape)
        return X.reshape((len(X),) + self.input_shape_)

    def _check_image_shape(self, image_shape):
        if image_shape is not None and image_shape != self.input_shape_:
            raise ValueError(f"X has images of shape {image_shape}, but {type(self).__name__} "
                             f"was fitted on images of shape {self.input_shape_}")

    def _resolve_input_shape(self, image_shape, n_features):
        given = self.input_shape
        if given is not None:
            given = tuple(int(s) for s in given) + ((1,) if len(given) == 2 else ())
            if image_shape is not None and given != image_shape:
                raise ValueError(f"input_shape={self.input_shape} does not match X, whose "
                                 f"samples have shape {image_shape}")
            if math.prod(given) != n_features:
                raise ValueError(
                    f"input_shape={self.input_shape} holds {math.prod(given)} values per "
                    f"sample, but X has {n_features} features")
            return given
        if image_shape is not None:
            return image_shape
        side = math.isqrt(n_features)
        return (side, side, 1) if side * side == n_features else (1, n_features, 1)

    def __getstate__(self):
        # A pickle carries the weights and nothing bulky besides: the layers drop their cached
        # batches and gradients themselves; here the optimizer is replaced by a fresh one of the
        # same configuration (Adam's two moment buffers would triple the size).  Training an
        # unpickled estimator further (warm_start, partial_fit) restarts the optimizer's state.
        state = self.__dict__.copy()
        state["_best_weights"] = None
        model = state.get("model_")
        if model is not None and getattr(model, "optimizer", None) is not None:
            model = copy.copy(model)
            model.optimizer = type(model.optimizer)(**model.optimizer.get_config())
            state["model_"] = model
        return state


class _StoppingRule(Callback):
    """Bookkeeping after every epoch (``loss_curve_``, ``validation_scores_``, ...) and, when
    ``stop_early``, the end of training once the estimator's stopping rule says so."""

    def __init__(self, estimator, stop_early):
        self.estimator = estimator
        self.stop_early = stop_early

    def on_epoch_end(self, epoch, logs=None):
        est = self.estimator
        if est._update_no_improvement_count(logs) and self.stop_early:
            self.model.stop_training = True
            if est.verbose:
                print(f"Stopped after epoch {est.n_iter_}: no improvement of at least "
                      f"tol={est.tol} for more than {est.n_iter_no_change} epochs",
                      file=sys.stderr)


def _flatten_images(X):
    """``(n, h, w[, c])`` images as ``(n, h*w*c)`` rows plus the sample shape ``(h, w, c)``;
    anything else is returned as is (scikit-learn's ``validate_data`` wants 2-D)."""
    if isinstance(X, (list, tuple)):
        X = np.asarray(X)
    if not isinstance(X, np.ndarray) or X.ndim not in (3, 4):
        return X, None
    image_shape = X.shape[1:] + ((1,) if X.ndim == 3 else ())
    return X.reshape(len(X), math.prod(image_shape)), image_shape


def _require_two_classes(classes, y, sample_weight):
    if len(classes) < 2:
        raise ValueError(f"y contains 1 class ({classes[0]!r}); a classifier needs at least "
                         "2 classes to learn")
    weighted = np.unique(y[sample_weight > 0])
    if len(weighted) < 2:
        raise ValueError(f"sample_weight is zero for every sample but those of 1 class "
                         f"({weighted[0]!r}); a classifier needs at least 2 classes with "
                         "positive weight")


def _sample_weights(sample_weight, n_samples):
    """``sample_weight`` as a float64 array of shape ``(n_samples,)``: finite, >= 0, not all 0.

    None weighs every sample 1 and a number weighs them all alike.  The array checks are
    ``cytorch``'s own (``Model.fit`` makes the same), not scikit-learn's private
    ``_check_sample_weight``; the result is a copy, so the caller's array is never scaled.
    """
    if sample_weight is None:
        return np.ones(n_samples)
    if isinstance(sample_weight, numbers.Real):
        sample_weight = np.full(n_samples, sample_weight, dtype=np.float64)
    sw = check_sample_weight(sample_weight, n_samples)
    if not sw.any():
        raise ValueError("sample_weight is zero for every sample: at least one weight must "
                         "be positive")
    return sw
