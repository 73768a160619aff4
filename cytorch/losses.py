"""Loss functions: a value to report and the gradient that starts backpropagation.

Each loss maps targets ``y`` and predictions ``p`` (batch axis first) to a per-sample loss
``l_i`` and reduces it the way Keras does::

    L = sum_i(w_i * l_i) / N          (w_i = 1 without sample_weight)

i.e. the *mean over the batch* of the weighted losses, not ``sum(w l) / sum(w)``: a batch keeps
the scale the learning rate was tuned for when the weights average 1, and a batch whose weights
are all 0 contributes 0 instead of 0/0.  ``loss.gradient(y, p)`` returns ``(L, dL/dp)``.

Cross-entropy on probabilities, as Keras computes it
----------------------------------------------------
``from_logits=False`` (the default) reads ``p`` as probabilities.  Like Keras, the
cross-entropies first divide each row by its sum (``q = p / sum_k p_k``; a row that does not
sum to 1 is renormalised: ``p = [0.2, 0.2, 0.1]``, ``y = 0`` gives ``-log 0.4 = 0.916``), then
clip ``q`` to ``[1e-7, 1 - 1e-7]``; the gradient is zero where the clip is active.  Binary
cross-entropy clips ``p`` without renormalising.  ``from_logits=True`` reads ``y_pred`` as
logits ``z``: ``log softmax(z) = z - logsumexp(z)`` with the max subtracted first, stable and
never clipped -- the Keras idiom ``Dense(10)`` + ``SparseCategoricalCrossentropy(
from_logits=True)``.

Fused with the output layer
---------------------------
For ``p = softmax(z)`` and one-hot ``y``, ``dL/dz_i = (p_i - y_i) / N``: no division by a tiny
``p``, no overflow.  The training loop therefore asks an output layer with
``activation="softmax"`` (or ``"sigmoid"`` for binary cross-entropy) to return its logits ``z``
(``return_logits`` in its ``CallContext``) and calls the loss with ``from_logits=True``.  The
value then differs from Keras's in one way: it is not capped at ``-log(1e-7) = 16.1`` (see the
README's "Differences from Keras").

>>> import numpy as np
>>> loss = get("sparse_categorical_crossentropy")
>>> z = np.array([[2.0, 0.0, 0.0]]); y = np.array([0])
>>> value, dz = loss.gradient(y, z, from_logits=True)
>>> round(value, 4), np.round(dz, 4).tolist()
(0.2395, [[-0.213, 0.1065, 0.1065]])
"""
import numpy as np

from .errors import ShapeError
from .functional import as_float_array

import warnings

__all__ = ["Loss", "SparseCategoricalCrossentropy", "CategoricalCrossentropy",
           "BinaryCrossentropy", "MeanSquaredError", "MeanAbsoluteError", "get",
           "check_output_activation"]

EPSILON = 1e-7  # Keras's clip for probabilities


def log_softmax(z):
    """``z - logsumexp(z)`` along the last axis, stable for any finite ``z``."""
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    e /= e.sum(axis=-1, keepdims=True)
    return e


def sigmoid(z):
    """1 / (1 + exp(-z)) without overflow for large |z|."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


class Loss:
    """Base class: subclasses define ``per_sample(y, p, from_logits) -> (l, dl/dp)``.

    ``fused_activation`` names the output activation the loss can absorb (``"softmax"``,
    ``"sigmoid"``) so the training loop may hand it logits; ``None`` for regression losses and
    for a cross-entropy made with ``from_logits=True`` (its input is logits already).
    ``from_logits`` is False for every loss that does not take it.
    """

    name = None
    from_logits = False
    probability_activations = ()   # output activations that make probabilities for this loss

    @property
    def fused_activation(self):
        return None

    def __call__(self, y_true, y_pred, sample_weight=None, from_logits=None):
        """The loss value ``sum(w_i * l_i) / N``."""
        return self.gradient(y_true, y_pred, sample_weight, from_logits)[0]

    def get_config(self):
        """JSON-able keyword arguments that recreate the loss (what ``model.save`` stores)."""
        return {}

    def gradient(self, y_true, y_pred, sample_weight=None, from_logits=None):
        """``(L, dL/dy_pred)``; ``dL/dy_pred`` has ``y_pred``'s shape and dtype (float32 for
        integer ``y_pred``).

        ``from_logits=True`` reads ``y_pred`` as logits for this call (the training loop's fused
        path); by default the loss's own ``from_logits`` decides.

        Checks every array first: real numbers, no NaN or inf, matching shapes.  The training
        loop, whose data ``fit`` checked once, calls ``_gradient`` and skips the scans."""
        p = as_float_array(y_pred, "y_pred")
        y = np.asarray(y_true)
        if y.dtype.kind == "f":
            _check_finite(y, "y_true")
        w = None
        if sample_weight is not None:
            w = np.asarray(sample_weight)
            if w.dtype.kind not in "biuf":
                raise TypeError(f"sample_weight must hold real numbers, got dtype {w.dtype}")
            if w.dtype.kind == "f":
                _check_finite(w, "sample_weight")
        return self._gradient(y, p, w, from_logits)

    def _gradient(self, y_true, p, sample_weight, from_logits):
        """``gradient`` without the NaN scans and dtype checks, for arrays already checked."""
        if p.ndim < 1 or len(p) == 0:
            raise ShapeError(f"y_pred must be a non-empty batch, got shape {p.shape}")
        y = self.check_targets(y_true, p)
        losses, dp = self.per_sample(y, p, bool(from_logits) or self.from_logits)
        N = len(p)
        if sample_weight is None:
            value = float(losses.sum()) / N
            dp *= p.dtype.type(1.0 / N)
        else:
            w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
            if len(w) != N:
                raise ShapeError(f"sample_weight must have one weight per sample ({N}), "
                                 f"got shape {np.shape(sample_weight)}")
            value = float(w @ losses) / N
            dp *= (w / N).astype(p.dtype).reshape((N,) + (1,) * (p.ndim - 1))
        return value, dp

    def check_targets(self, y, p):
        y = np.asarray(y)
        if y.shape != p.shape:
            if y.ndim == 1 and p.ndim == 2 and p.shape[1] == 1:
                y = y[:, None]
            else:
                raise ShapeError(f"y must have the shape of the model output {p.shape} for "
                                 f"{self.name}, got {y.shape}")
        if y.dtype.kind not in "biuf":
            raise TypeError(f"y must hold numbers for {self.name}, got dtype {y.dtype}")
        return y.astype(p.dtype, copy=False)

    def per_sample(self, y, p, from_logits):
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class _CrossEntropy(Loss):
    """``from_logits`` and ``label_smoothing``, as Keras's cross-entropies take them."""

    def __init__(self, from_logits=False, label_smoothing=0.0):
        if not isinstance(from_logits, (bool, np.bool_)):
            raise TypeError(f"from_logits must be a bool, got {from_logits!r}")
        self.from_logits = bool(from_logits)
        if isinstance(label_smoothing, bool) or not isinstance(
                label_smoothing, (int, float, np.integer, np.floating)) \
                or not 0 <= label_smoothing <= 1:
            raise ValueError(f"label_smoothing must be a float in [0, 1], got "
                             f"{label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)

    @property
    def fused_activation(self):
        return None if self.from_logits else self.probability_activations[0]

    def get_config(self):
        return {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing}


def _check_finite(a, name):
    bad = int(a.size - np.count_nonzero(np.isfinite(a)))
    if bad:
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s); "
                         f"clean or impute the data first")


def _where_divide(a, b, where):
    """``a / b`` where ``where`` holds, 0 elsewhere (no warning for what is not computed)."""
    a, b = np.broadcast_arrays(a, b)
    out = np.zeros(np.broadcast_shapes(a.shape, np.shape(where)), dtype=np.result_type(a, b))
    return np.divide(a, b, out=out, where=where)


def _mean_rest(a):
    """Mean over every axis but the batch axis."""
    return a.reshape(len(a), -1).mean(axis=1)


class SparseCategoricalCrossentropy(_CrossEntropy):
    """``l_i = -log q_i[y_i]`` with integer labels ``y`` of shape ``(N,)``, ``p`` ``(N, K)``.

    ``q = p / sum_k p_k`` (rows renormalised, clipped to ``[1e-7, 1 - 1e-7]``), or
    ``q = softmax(p)`` with ``from_logits=True``.

    >>> loss = SparseCategoricalCrossentropy()
    >>> round(loss([0], [[0.2, 0.2, 0.1]]), 3)         # -log(0.2 / 0.5), as in Keras
    0.916
    >>> round(SparseCategoricalCrossentropy(from_logits=True)([0], [[2.0, 0.0, 0.0]]), 4)
    0.2395
    """

    name = "sparse_categorical_crossentropy"
    probability_activations = ("softmax",)

    def __init__(self, from_logits=False):
        super().__init__(from_logits)

    def get_config(self):
        return {"from_logits": self.from_logits}

    def check_targets(self, y, p):
        y = np.asarray(y)
        if p.ndim != 2:
            raise ShapeError(f"{self.name} needs a model output of shape (N, classes), "
                             f"got {p.shape}")
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.shape != (len(p),):
            raise ShapeError(f"y must be integer labels of shape ({len(p)},) for {self.name}, "
                             f"got shape {y.shape}")
        if y.dtype.kind == "f":
            if not np.all(np.isfinite(y)) or not np.array_equal(y, np.round(y)):
                raise ValueError(f"y must hold integer class labels for {self.name}, got "
                                 f"non-integer values such as {y[y != np.round(y)][:3]}")
        elif y.dtype.kind not in "biu":
            raise TypeError(f"y must hold integer class labels for {self.name}, got dtype "
                            f"{y.dtype}; encode string labels first (e.g. LabelEncoder)")
        y = y.astype(np.intp, copy=False)
        K = p.shape[1]
        if y.min() < 0 or y.max() >= K:
            raise ValueError(f"y holds labels from {y.min()} to {y.max()}, but the model "
                             f"outputs {K} classes: labels must be in [0, {K - 1}]")
        return y

    def per_sample(self, y, p, from_logits):
        rows = np.arange(len(p))
        if from_logits:
            logp = log_softmax(p)
            losses = -logp[rows, y].astype(np.float64)
            dp = np.exp(logp, out=logp)  # softmax, reusing the buffer
            dp[rows, y] -= 1
            return losses, dp
        S = p.sum(axis=1)
        py = p[rows, y]
        with np.errstate(invalid="ignore", divide="ignore"):   # a row summing to 0: NaN (Keras)
            q = py / S
        qc = np.clip(q, EPSILON, 1 - EPSILON)
        inside = qc == q               # the gradient is 0 where the clip is active (and for NaN)
        # l = -log(p_y / S): dl/dp_j = 1/S - [j = y] / p_y
        one = p.dtype.type(1)
        dp = np.repeat(_where_divide(one, S, inside)[:, None], p.shape[1], axis=1)
        dp[rows, y] -= _where_divide(one, py, inside)
        return -np.log(qc.astype(np.float64)), dp


class CategoricalCrossentropy(_CrossEntropy):
    """``l_i = -sum_k y_ik log q_ik`` with one-hot (or soft) targets ``y`` of shape ``(N, K)``.

    ``q = p / sum_k p_k`` (rows renormalised, clipped to ``[1e-7, 1 - 1e-7]``), or
    ``q = softmax(p)`` with ``from_logits=True``; ``label_smoothing=s`` trains against
    ``y (1 - s) + s / K``.
    """

    name = "categorical_crossentropy"
    probability_activations = ("softmax",)

    def per_sample(self, y, p, from_logits):
        if self.label_smoothing:
            y = y * (1 - self.label_smoothing) + self.label_smoothing / p.shape[-1]
        if from_logits:
            logp = log_softmax(p)
            losses = -(y * logp).sum(axis=-1, dtype=np.float64)
            dp = np.exp(logp, out=logp) * y.sum(axis=-1, keepdims=True) - y
            return losses, dp
        S = p.sum(axis=-1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            q = p / S
        qc = np.clip(q, EPSILON, 1 - EPSILON)
        inside = qc == q
        # l = -sum_k y_k log q_k, q = p / S: with g_k = dl/dq_k = -y_k / q_k (0 where clipped),
        # dl/dp_j = (g_j - sum_k g_k q_k) / S
        g = -_where_divide(y, qc, inside)
        dp = _where_divide(g - (g * q).sum(axis=-1, keepdims=True, where=inside), S,
                           np.isfinite(q))
        return -(y * np.log(qc)).sum(axis=-1, dtype=np.float64), dp.astype(p.dtype, copy=False)


class BinaryCrossentropy(_CrossEntropy):
    """``l_i = mean_k -(y log p + (1 - y) log(1 - p))`` for targets in [0, 1], ``p`` clipped to
    ``[1e-7, 1 - 1e-7]``.

    From logits ``z`` (``from_logits=True``) it is ``max(z, 0) - z y + log(1 + exp(-|z|))``
    with gradient ``sigmoid(z) - y``: stable for any ``z``.  ``label_smoothing=s`` trains
    against ``y (1 - s) + s / 2``."""

    name = "binary_crossentropy"
    probability_activations = ("sigmoid", "softmax")

    def per_sample(self, y, p, from_logits):
        if self.label_smoothing:
            y = y * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        M = p[0].size
        if from_logits:
            losses = np.maximum(p, 0) - p * y + np.log1p(np.exp(-np.abs(p)))
            return _mean_rest(losses.astype(np.float64)), (sigmoid(p) - y) / p.dtype.type(M)
        pc = np.clip(p, EPSILON, 1 - EPSILON)
        losses = -(y * np.log(pc) + (1 - y) * np.log(1 - pc))
        dp = np.where(pc == p, (pc - y) / (pc * (1 - pc)), 0) / M
        return _mean_rest(losses.astype(np.float64)), dp.astype(p.dtype)


class MeanSquaredError(Loss):
    """``l_i = mean_k (p_ik - y_ik)^2``; gradient ``2 (p - y) / M`` per sample of size M."""

    name = "mse"

    def per_sample(self, y, p, from_logits):
        diff = p - y
        M = p[0].size
        return _mean_rest(np.square(diff, dtype=np.float64)), diff * p.dtype.type(2.0 / M)


class MeanAbsoluteError(Loss):
    """``l_i = mean_k |p_ik - y_ik|``; gradient ``sign(p - y) / M`` (0 at a tie)."""

    name = "mae"

    def per_sample(self, y, p, from_logits):
        diff = p - y
        M = p[0].size
        return _mean_rest(np.abs(diff).astype(np.float64)), np.sign(diff) / p.dtype.type(M)


_LOSSES = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
}


def get(identifier):
    """A loss from its name (``"mse"``, ``"sparse_categorical_crossentropy"``, ...) or a
    ``Loss`` instance (returned as is)."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if isinstance(identifier, str) and identifier.lower() in _LOSSES:
        return _LOSSES[identifier.lower()]()
    import difflib
    close = difflib.get_close_matches(str(identifier), _LOSSES, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise KeyError(f"unknown loss {identifier!r}; known losses: {sorted(_LOSSES)}{hint}")


def _activation_name(layer):
    act = getattr(layer, "activation", None)
    if act is None:
        return None
    return act if isinstance(act, str) else \
        getattr(act, "name", None) or getattr(act, "__name__", None)


def check_output_activation(loss, layer):
    """Warn when ``loss`` reads probabilities (``from_logits=False``) but ``layer``, the
    model's output layer, has an activation that does not make them (``linear``, ``relu``, ...).

    A linear output with a probability loss is the classic mistake: Keras and cytorch would
    then clip the outputs to ``[1e-7, 1 - 1e-7]`` and train badly without a word.  Layers
    without an ``activation`` (pooling, Flatten, plugins) are not judged.  Returns whether it
    warned."""
    if layer is None or loss.from_logits or not loss.probability_activations:
        return False
    name = _activation_name(layer)
    if name is None or name in loss.probability_activations:
        return False
    wanted = " or ".join(repr(a) for a in loss.probability_activations)
    warnings.warn(
        f"the output layer {type(layer).__name__} '{layer.name}' has activation {name!r}, but "
        f"the loss {type(loss).__name__}(from_logits=False) expects probabilities (activation "
        f"{wanted}): give the layer activation={loss.probability_activations[0]!r}, or "
        f"compile with {type(loss).__name__}(from_logits=True) if its outputs are logits",
        UserWarning, stacklevel=3)
    return True
