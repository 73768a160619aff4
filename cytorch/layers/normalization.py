"""``BatchNormalization``: normalise each channel with batch statistics while training, with
their moving averages at inference."""
import numbers
import warnings

import numpy as np

from .. import functional as F
from .. import initializers
from ..errors import ShapeError
from ._common import as_grad, as_input, cached, check_bool, describe, sample_shape
from .base import Layer
from .context import DEFAULT

__all__ = ["BatchNormalization"]


class BatchNormalization(Layer):
    """Normalise every channel (the last axis) to zero mean and unit variance, then scale and
    shift it with learned ``gamma`` and ``beta`` (Ioffe & Szegedy, 2015), as Keras 3 does.

    For ``x (N, H, W, C)`` (or ``(N, C)`` after a Dense layer) and each channel ``c``::

        y = gamma[c] * (x - mean[c]) / sqrt(var[c] + epsilon) + beta[c]

    * ``forward(x, training=True)``: ``mean`` and ``var`` are the batch's own, over the
      ``M = N * H * W`` values of the channel, with the *biased* variance
      ``sum((x - mean)**2) / M``; then the moving averages move towards them::

          moving_mean     = moving_mean * momentum     + mean * (1 - momentum)
          moving_variance = moving_variance * momentum + var  * (1 - momentum)

      (Keras uses the biased variance here too; PyTorch's running variance uses ``M - 1``.)
    * ``forward(x)`` (inference): ``mean = moving_mean`` and ``var = moving_variance``, a
      fixed per-channel affine map; each sample's output depends on that sample alone.

    ``gamma`` and ``beta`` (``params``) are trained; ``moving_mean`` and ``moving_variance``
    live in ``state``: saved and loaded with the model, counted as non-trainable parameters by
    ``summary()``, never touched by an optimizer.  ``get_weights()`` order: gamma, beta,
    moving_mean, moving_variance.  As in Keras 3, a layer with ``trainable=False`` runs in
    inference mode even when the model trains (the usual choice when fine-tuning).

    Gradients in training mode (the statistics depend on x), per channel, with
    ``xhat = (x - mean) / sqrt(var + eps)``::

        dbeta = sum(dout)     dgamma = sum(dout * xhat)
        dx = gamma / sqrt(var + eps) * (dout - dbeta / M - xhat * dgamma / M)

    Edge cases, defined:

    * **one value per channel** (a batch of one ``(1, C)`` vector, or a 1x1 map of one image)
      in training mode: each value is its own mean, so ``y = beta``, ``dx = 0``, and the moving
      variance decays towards 0, which is what Keras does (PyTorch raises).  cytorch computes
      the same and warns (``RuntimeWarning``), since it is rarely meant: give training
      batches of two or more samples (a last partial batch of one sample is the usual cause).
    * **non-finite statistics** (NaN/inf in the input while the model's checks are off, or
      values whose squares overflow): ``ValueError`` naming the layer and the channels; the
      moving averages are left as they were (Keras would store the NaN for good).

    Parameters
    ----------
    axis : int, default -1
        The channel axis; cytorch is channels-last, so only the last axis (-1, or its
        positive index) is accepted.
    momentum : float in [0, 1], default 0.99
        Weight of the old value in the moving averages.
    epsilon : float > 0, default 1e-3
        Added to the variance before the square root.
    center, scale : bool, default True
        Learn ``beta`` / ``gamma`` (when False they are 0 / 1 and not parameters).
    beta_initializer, gamma_initializer, moving_mean_initializer, moving_variance_initializer
        Names from ``cytorch.initializers``; Keras's defaults zeros, ones, zeros, ones.

    >>> import numpy as np
    >>> bn = BatchNormalization(momentum=0.5)
    >>> x = np.array([[1.0, 10.0], [3.0, 30.0]])
    >>> bn.forward(x, training=True).round(4)   # 1 / sqrt(1 + 0.001) = 0.9995
    array([[-0.9995, -1.    ],
           [ 0.9995,  1.    ]], dtype=float32)
    >>> bn.state["moving_mean"], bn.state["moving_variance"]
    (array([ 1., 10.], dtype=float32), array([ 1. , 50.5], dtype=float32))
    >>> bn.count_params(), bn.count_trainable_params()
    (8, 4)
    """

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 **kwargs):
        super().__init__(**kwargs)
        if not isinstance(axis, numbers.Integral) or isinstance(axis, bool):
            raise TypeError(f"axis must be an int, got {axis!r}")
        self.axis = int(axis)
        if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) \
                or not 0 <= momentum <= 1:
            raise ValueError(f"momentum must be a float in [0, 1] (the weight of the old "
                             f"moving average; Keras's default 0.99), got {momentum!r}")
        self.momentum = float(momentum)
        if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) \
                or not 0 < epsilon < float("inf"):
            raise ValueError(f"epsilon must be a positive float (it keeps "
                             f"1 / sqrt(variance + epsilon) finite; Keras's default 1e-3), "
                             f"got {epsilon!r}")
        self.epsilon = float(epsilon)
        self.center = check_bool(center, "center")
        self.scale = check_bool(scale, "scale")
        self.beta_initializer = initializers.get(beta_initializer).__name__
        self.gamma_initializer = initializers.get(gamma_initializer).__name__
        self.moving_mean_initializer = initializers.get(moving_mean_initializer).__name__
        self.moving_variance_initializer = \
            initializers.get(moving_variance_initializer).__name__

    def compute_output_shape(self, input_shape):
        shape = sample_shape(self, input_shape)
        if not shape:
            raise ShapeError(f"{describe(self)} needs samples with a channel axis, (H, W, C) "
                             f"or (C,), got {shape}")
        rank = len(shape) + 1   # with the batch axis, as Keras counts axis
        if self.axis not in (-1, rank - 1):
            raise ValueError(f"{describe(self)}: axis={self.axis}, but cytorch is "
                             f"channels-last: only the last axis (-1, or {rank - 1} for "
                             f"{rank}-D batches) can be normalised")
        return shape

    def build(self, input_shape):
        shape = self.compute_output_shape(input_shape)
        C = (shape[-1],)
        if self.scale:
            self.params["gamma"] = initializers.get(self.gamma_initializer)(C, self.rng,
                                                                            self.dtype)
        if self.center:
            self.params["beta"] = initializers.get(self.beta_initializer)(C, self.rng,
                                                                          self.dtype)
        self.state["moving_mean"] = initializers.get(self.moving_mean_initializer)(
            C, self.rng, self.dtype)
        self.state["moving_variance"] = initializers.get(self.moving_variance_initializer)(
            C, self.rng, self.dtype)
        super().build(input_shape)

    def forward(self, x, training=False, ctx=DEFAULT):
        if np.ndim(x) < 2:   # before as_input builds the layer for a shape without channels
            raise ShapeError(f"{describe(self)} expects (N, H, W, C) or (N, C) batches, got "
                             f"shape {np.shape(x)}")
        x = as_input(self, x, check_finite=ctx.check_finite)
        batch_stats = bool(training) and self.trainable
        gamma, beta = self.params.get("gamma"), self.params.get("beta")
        if batch_stats and x.size == x.shape[-1]:
            warnings.warn(f"{describe(self)} in training mode got one value per channel "
                          f"(batch shape {x.shape}): each value is its own mean, so the "
                          f"output is beta, the gradient to the input is 0 and the moving "
                          f"variance moves towards 0 (as in Keras); train on batches of at "
                          f"least 2 samples", RuntimeWarning, stacklevel=2)
        try:
            if batch_stats:
                out, cache = F.batch_norm_forward(x, gamma, beta, epsilon=self.epsilon,
                                                  check_finite=False)
            else:
                out, cache = F.batch_norm_forward(x, gamma, beta, self.state["moving_mean"],
                                                  self.state["moving_variance"],
                                                  self.epsilon, check_finite=False)
        except ValueError as exc:
            raise ValueError(f"{describe(self)}: {exc}") from None
        if batch_stats:   # Keras's update, in the layer's dtype
            m = self.momentum
            for key, stat in (("moving_mean", cache["mean"]), ("moving_variance", cache["var"])):
                self.state[key][...] = self.state[key] * m + stat * (1.0 - m)
        self._cache = cache
        return out

    def backward(self, dout, ctx=DEFAULT):
        cache = cached(self)
        dout = as_grad(self, dout, cache["x"].shape, ctx.check_finite)
        dx, dgamma, dbeta = F.batch_norm_backward(dout, cache, check_finite=False)  # as_grad did
        if self.scale:
            self.grads["gamma"] = dgamma
        if self.center:
            self.grads["beta"] = dbeta
        return dx

    def get_config(self):
        return {"axis": self.axis, "momentum": self.momentum, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale,
                "beta_initializer": self.beta_initializer,
                "gamma_initializer": self.gamma_initializer,
                "moving_mean_initializer": self.moving_mean_initializer,
                "moving_variance_initializer": self.moving_variance_initializer,
                **super().get_config()}
