"""Metrics: what ``fit`` and ``evaluate`` report besides the loss, by their Keras names.

``model.compile(metrics=[...], weighted_metrics=[...])`` takes the names a Keras user types::

    accuracy / acc                      picked from the shapes, as Keras does: binary_accuracy
                                        for one output unit, sparse_categorical_accuracy for
                                        integer labels, categorical_accuracy for one-hot targets
    sparse_categorical_accuracy         y (N,) integer labels:  [y == argmax(p)]
    categorical_accuracy                y (N, K) one-hot:       [argmax(y) == argmax(p)]
    binary_accuracy                     y in {0, 1}:            [y == (p > 0.5)]
    sparse_top_k_categorical_accuracy   [p[y] >= the 5th largest p] (ties count as hits)
    top_k_categorical_accuracy          the same with y one-hot
    mse / mean_squared_error            mean over the output axis of (y - p)**2
    mae / mean_absolute_error           mean over the output axis of |y - p|

Each metric maps a batch to one value per sample (averaged over any axes after the batch axis)
and keeps a running mean over the epoch, Keras's ``MeanMetricWrapper``::

    metric = sum_i v_i / N                       (metrics=[...]: unweighted)
    metric = sum_i w_i v_i / sum_i w_i           (weighted_metrics=[...], w = sample_weight)

As in Keras, ``metrics`` ignore ``sample_weight`` (and ``class_weight``) and only
``weighted_metrics`` use it.  A metric is logged under the name it was given (``"acc"`` logs
``acc``, ``val_acc``); a weighted metric whose name is taken by an unweighted one is logged as
``weighted_<name>``; further repeats get ``_1``, ``_2``, ... .  Metrics see probabilities: when
the training loop fuses the output softmax into the loss, it applies the softmax for them.

>>> import numpy as np
>>> y = np.array([0, 2, 1]); p = np.array([[.8, .1, .1], [.2, .5, .3], [.1, .6, .3]])
>>> sparse_categorical_accuracy(y, p).tolist()
[1.0, 0.0, 1.0]
>>> m = Metric("acc", sparse_categorical_accuracy)
>>> m.update(y, p, sample_weight=None); m.update(y[:1], p[:1], sample_weight=None)
>>> m.result()
0.75
"""
import numpy as np

from .errors import ShapeError

__all__ = ["sparse_categorical_accuracy", "categorical_accuracy", "binary_accuracy",
           "sparse_top_k_categorical_accuracy", "top_k_categorical_accuracy",
           "mean_squared_error", "mean_absolute_error", "Metric", "names", "compile_specs",
           "build"]


# -- per-sample values (each returns an array with the batch axis first) -------------------------
def sparse_categorical_accuracy(y_true, y_pred):
    """1.0 where the integer label ``y_true`` is the arg-max of ``y_pred``'s last axis."""
    return (np.asarray(y_true) == np.argmax(y_pred, axis=-1)).astype(np.float64)


def categorical_accuracy(y_true, y_pred):
    """1.0 where the arg-max of the one-hot ``y_true`` is that of ``y_pred``."""
    return (np.argmax(y_true, axis=-1) == np.argmax(y_pred, axis=-1)).astype(np.float64)


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """1.0 where ``y_true`` equals ``y_pred > threshold`` (as 0/1), entry by entry."""
    return (np.asarray(y_true) == (np.asarray(y_pred) > threshold)).astype(np.float64)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5):
    """1.0 where the label's score is among the ``k`` largest: ``p[y] >= `` the k-th largest
    score (a tie with it counts, as in Keras); always 1.0 when there are at most ``k``
    classes."""
    p = np.asarray(y_pred).reshape(-1, np.shape(y_pred)[-1])
    y = np.asarray(y_true).reshape(-1).astype(np.intp)
    if k >= p.shape[1]:
        hits = np.ones(len(y))
    else:
        kth = np.partition(p, -k, axis=1)[:, -k]
        hits = (p[np.arange(len(y)), y] >= kth).astype(np.float64)
    return hits.reshape(np.shape(y_true))


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    """``sparse_top_k_categorical_accuracy`` of the arg-max of the one-hot ``y_true``."""
    return sparse_top_k_categorical_accuracy(np.argmax(y_true, axis=-1), y_pred, k)


def mean_squared_error(y_true, y_pred):
    """Mean over the last axis of ``(y_true - y_pred)**2``."""
    diff = np.asarray(y_pred, dtype=np.float64) - y_true
    return np.mean(diff * diff, axis=-1)


def mean_absolute_error(y_true, y_pred):
    """Mean over the last axis of ``|y_true - y_pred|``."""
    return np.mean(np.abs(np.asarray(y_pred, dtype=np.float64) - y_true), axis=-1)


# name -> (function, what y_true must look like: "labels" (N, ...) one axis fewer than the
# output, "like output" the output's shape, or None for either)
_FUNCTIONS = {
    "sparse_categorical_accuracy": (sparse_categorical_accuracy, "labels"),
    "categorical_accuracy": (categorical_accuracy, "like output"),
    "binary_accuracy": (binary_accuracy, "like output"),
    "sparse_top_k_categorical_accuracy": (sparse_top_k_categorical_accuracy, "labels"),
    "top_k_categorical_accuracy": (top_k_categorical_accuracy, "like output"),
    "mse": (mean_squared_error, "like output"),
    "mean_squared_error": (mean_squared_error, "like output"),
    "mae": (mean_absolute_error, "like output"),
    "mean_absolute_error": (mean_absolute_error, "like output"),
}
_ACCURACY = ("accuracy", "acc")


def names():
    """Every metric name ``compile`` accepts."""
    return sorted([*_ACCURACY, *_FUNCTIONS])


class Metric:
    """A running mean of per-sample values (Keras's ``MeanMetricWrapper``).

    ``update(y_true, y_pred, sample_weight)`` adds a batch: ``fn`` gives values with the batch
    axis first, averaged here over the other axes to one per sample; a ``weighted`` metric
    weighs them by ``sample_weight`` (None: all 1), an unweighted one ignores it.
    ``result()`` is the mean so far (0.0 before any sample or when every weight is 0)."""

    def __init__(self, name, fn, weighted=False):
        self.name = name
        self.fn = fn
        self.weighted = weighted
        self.reset()

    def reset(self):
        self.total = 0.0
        self.count = 0.0

    def update(self, y_true, y_pred, sample_weight):
        values = np.asarray(self.fn(y_true, y_pred), dtype=np.float64)
        values = values.reshape(len(values), -1).mean(axis=1)
        if self.weighted and sample_weight is not None:
            w = np.asarray(sample_weight, dtype=np.float64)
            self.total += float(w @ values)
            self.count += float(w.sum())
        else:
            self.total += float(values.sum())
            self.count += len(values)

    def result(self):
        return self.total / self.count if self.count else 0.0

    def __repr__(self):
        kind = "weighted " if self.weighted else ""
        return f"<{kind}metric {self.name}: {self.result():.4g}>"


def compile_specs(metrics, weighted_metrics):
    """``[(log name, metric name, weighted), ...]`` for ``compile``'s two lists, checked, with
    Keras's log names: repeats of a name get ``_1``, ``_2``; a weighted metric whose name an
    unweighted one holds becomes ``weighted_<name>``."""
    specs, taken = [], {}
    for argument, weighted in (("metrics", False), ("weighted_metrics", True)):
        for name in _check_list(argument, metrics if not weighted else weighted_metrics):
            log_name = name
            if weighted and name in taken:
                log_name = f"weighted_{name}"
            if log_name in taken:
                taken[log_name] += 1
                log_name = f"{log_name}_{taken[log_name] - 1}"
            else:
                taken[log_name] = 1
            specs.append((log_name, name, weighted))
    return specs


def _check_list(argument, values):
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, (list, tuple)):
        raise TypeError(f"{argument} must be a list of metric names such as ['accuracy'], got "
                        f"{type(values).__name__}: {values!r}")
    known = names()
    for v in values:
        if not isinstance(v, str) or v not in known:
            import difflib
            close = difflib.get_close_matches(str(v), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise KeyError(f"unknown metric {v!r} in {argument}; known metrics: {known}{hint}")
    return list(values)


def build(specs, y_shape, out_shape):
    """The ``Metric`` objects for ``specs`` (from ``compile_specs``), for targets of shape
    ``y_shape`` and outputs of shape ``out_shape`` (both with the batch axis): ``accuracy``
    is resolved as Keras resolves it, and a metric the targets do not fit raises an error
    naming it."""
    y_shape, out_shape = tuple(y_shape), tuple(out_shape)
    metrics = []
    for log_name, name, weighted in specs:
        if name in _ACCURACY:
            if out_shape[-1] == 1:
                name = "binary_accuracy"
            elif len(y_shape) < len(out_shape) or y_shape[-1] == 1:
                name = "sparse_categorical_accuracy"
            else:
                name = "categorical_accuracy"
        fn, form = _FUNCTIONS[name]
        # the shape fn expects: labels without the class axis, or targets like the outputs
        want = out_shape[:-1] if form == "labels" else out_shape
        # (N, ..., 1) labels and (N, ...) targets of one-unit outputs are reshaped, as Keras
        # squeezes or expands y_true to the rank it needs
        fits = y_shape == want or (np.prod(y_shape[1:], dtype=np.int64)
                                   == np.prod(want[1:], dtype=np.int64)
                                   and (y_shape[:-1] == want or y_shape == want[:-1]))
        if not fits:
            hint = ""
            if form == "labels" and y_shape == out_shape:
                hint = f"; use {name.replace('sparse_', '')!r} for one-hot targets"
            elif name in ("categorical_accuracy", "top_k_categorical_accuracy") \
                    and y_shape == out_shape[:-1]:
                hint = f"; use {'sparse_' + name!r} for integer labels"
            what = f"integer labels of shape {want} for outputs of shape {out_shape}" \
                if form == "labels" else f"targets of the outputs' shape {out_shape}"
            raise ShapeError(f"metric {name!r} needs {what}, got targets of shape "
                             f"{y_shape}{hint}")
        if y_shape != want:
            fn = _reshaping(fn, want[1:])
        metrics.append(Metric(log_name, fn, weighted))
    return metrics


def _reshaping(fn, sample_shape):
    """``fn`` with ``y_true`` reshaped to ``(N, *sample_shape)`` first."""
    def reshaped(y_true, y_pred):
        y_true = np.asarray(y_true)
        return fn(y_true.reshape((len(y_true),) + sample_shape), y_pred)
    reshaped.__name__ = fn.__name__
    return reshaped
