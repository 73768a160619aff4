"""Activation layers with a parameter: ``LeakyReLU`` and ``ELU`` (Keras's names and defaults).

The parameter-free activations are strings (``Activation("gelu")``, ``Dense(10,
activation="silu")``); these two layers exist, as in Keras, to set their parameter.  Mind
Keras's trap, kept here: the ``LeakyReLU`` layer's default slope is 0.3, the string
``"leaky_relu"`` uses 0.2.
"""
import numbers

from .. import activations
from ._common import as_grad, as_input, cached
from .base import Layer
from .context import DEFAULT

__all__ = ["LeakyReLU", "ELU"]


def _non_negative(value, name, default):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < \
            float("inf"):
        raise ValueError(f"{name} must be a float >= 0 (Keras's default {default}), "
                         f"got {value!r}")
    return float(value)


class _ParametricActivation(Layer):
    """An elementwise ``y = f(x)`` whose derivative is read from ``y``."""

    def _function(self):
        raise NotImplementedError

    def forward(self, x, training=False, ctx=DEFAULT):
        x = as_input(self, x, check_finite=ctx.check_finite)
        y = self._function().forward(x)   # a new array: x belongs to the caller
        self._cache = y
        return y

    def backward(self, dout, ctx=DEFAULT):
        y = cached(self)
        return self._function().backward(as_grad(self, dout, y.shape, ctx.check_finite), y)


class LeakyReLU(_ParametricActivation):
    """``y = x`` for ``x > 0``, else ``negative_slope * x``: a ReLU whose negative side keeps a
    small gradient, so a unit cannot die.

    ``dx = dout`` where ``x > 0``, else ``negative_slope * dout``.

    Parameters
    ----------
    negative_slope : float >= 0, default 0.3
        Keras 3's default for the layer (the string ``"leaky_relu"`` uses 0.2).

    >>> import numpy as np
    >>> LeakyReLU().forward(np.array([[-2.0, 0.0, 3.0]]))
    array([[-0.6,  0. ,  3. ]], dtype=float32)
    """

    def __init__(self, negative_slope=0.3, **kwargs):
        super().__init__(**kwargs)
        self.negative_slope = _non_negative(negative_slope, "negative_slope", 0.3)

    def _function(self):
        return activations.leaky_relu_function(self.negative_slope)

    def get_config(self):
        return {"negative_slope": self.negative_slope, **super().get_config()}


class ELU(_ParametricActivation):
    """Exponential linear unit: ``y = x`` for ``x > 0``, else ``alpha * (exp(x) - 1)``, which
    saturates at ``-alpha`` (Clevert et al., 2015).

    ``dx = dout`` where ``x > 0``, else ``dout * alpha * exp(x) = dout * (y + alpha)``.

    Parameters
    ----------
    alpha : float >= 0, default 1.0
        (Keras accepts a negative alpha too; it makes the function non-monotonic and its
        derivative no longer readable from y, so cytorch refuses it.)

    >>> import numpy as np
    >>> ELU().forward(np.array([[-1.0, 2.0]]))
    array([[-0.63212055,  2.        ]], dtype=float32)
    """

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = _non_negative(alpha, "alpha", 1.0)

    def _function(self):
        return activations.elu_function(self.alpha)

    def get_config(self):
        return {"alpha": self.alpha, **super().get_config()}
