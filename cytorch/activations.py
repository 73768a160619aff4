"""Activation functions, each a forward/backward pair written through its *output*.

Every derivative used here can be expressed with the output ``y = f(x)`` alone, so a layer only
keeps ``y`` for backward (no second copy of the pre-activation)::

    relu     y = max(x, 0)                     dx = dout * [y > 0]
    tanh     y = tanh(x)                       dx = dout * (1 - y**2)
    sigmoid  y = 1 / (1 + exp(-x))             dx = dout * y * (1 - y)
    softmax  y_k = exp(x_k) / sum_j exp(x_j)   dx = y * (dout - sum_k(dout_k * y_k))
    linear   y = x                             dx = dout

``softmax`` normalises over the last axis (the classes of a ``Dense`` output, the channels of a
``Conv2D`` output).  ``sigmoid`` and ``softmax`` never overflow: sigmoid only exponentiates
``-|x|`` and softmax subtracts the row maximum first (``softmax(x) = softmax(x - c)``).

>>> import numpy as np
>>> from cytorch import activations
>>> act = activations.get("sigmoid")
>>> act.forward(np.array([-1000.0, 0.0, 1000.0]))
array([0. , 0.5, 1. ])
"""
import difflib
from typing import Callable, NamedTuple

import numpy as np

__all__ = ["ActivationFunction", "relu", "relu_backward", "tanh", "tanh_backward", "sigmoid",
           "sigmoid_backward", "softmax", "softmax_backward", "linear", "linear_backward",
           "get", "names"]


# Each forward takes ``out=`` so a layer may overwrite a temporary it owns (the pre-activation
# it just computed) instead of allocating a second array of the same size.

def relu(x, out=None):
    """max(x, 0), elementwise."""
    return np.maximum(x, 0, out=out)


def relu_backward(dout, y):
    """dout where the unit was active (y > 0), else 0; the kink at 0 gets gradient 0."""
    return dout * (y > 0)


def tanh(x, out=None):
    return np.tanh(x, out=out)


def tanh_backward(dout, y):
    """d tanh(x)/dx = 1 - tanh(x)**2, so dx = dout * (1 - y*y).

    Computed in place in one new array, not three temporaries: on a conv layer's output
    (LeNet-5's first one is 1.2 MB per batch of 64) that halves the time.  The operations,
    and so the rounding, are those of the one-line formula."""
    dx = np.multiply(y, y, dtype=np.result_type(dout, y))
    np.subtract(1, dx, out=dx)
    dx *= dout
    return dx


def sigmoid(x, out=None):
    """``1 / (1 + exp(-x))`` computed as ``exp(min(x, 0)) / (1 + exp(-|x|))``: no exp of a
    large positive number, so no overflow warning and no lost precision for large ``|x|``."""
    e = np.exp(-np.abs(x))
    return np.divide(np.where(x >= 0, 1, e), 1 + e, out=out)


def sigmoid_backward(dout, y):
    """d sigmoid(x)/dx = y (1 - y)."""
    return dout * y * (1 - y)


def softmax(x, out=None):
    """exp(x - max) / sum(exp(x - max)) over the last axis (rows sum to 1)."""
    out = np.subtract(x, x.max(axis=-1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= out.sum(axis=-1, keepdims=True)
    return out


def softmax_backward(dout, y):
    """Jacobian-vector product of softmax: dx_i = y_i (dout_i - sum_k dout_k y_k).

    (The Jacobian is diag(y) - y y^T; applying it to dout gives the line above without ever
    forming the C x C matrix.)"""
    return y * (dout - np.sum(dout * y, axis=-1, keepdims=True))


def linear(x, out=None):
    """The identity (returns ``x`` itself unless another ``out`` is given)."""
    if out is None or out is x:
        return x
    np.copyto(out, x)
    return out


def linear_backward(dout, y):
    return dout


class ActivationFunction(NamedTuple):
    """A named pair ``forward(x, out=None) -> y`` and ``backward(dout, y) -> dx``."""

    name: str
    forward: Callable
    backward: Callable

    def __repr__(self):
        return f"<activation {self.name!r}>"


_ACTIVATIONS = {
    "relu": ActivationFunction("relu", relu, relu_backward),
    "tanh": ActivationFunction("tanh", tanh, tanh_backward),
    "sigmoid": ActivationFunction("sigmoid", sigmoid, sigmoid_backward),
    "softmax": ActivationFunction("softmax", softmax, softmax_backward),
    "linear": ActivationFunction("linear", linear, linear_backward),
}


def names():
    """The known activation names, sorted."""
    return sorted(_ACTIVATIONS)


def get(name):
    """The ``ActivationFunction`` called ``name`` (``None`` means ``"linear"``, as in Keras).

    >>> get("relu").name
    'relu'
    >>> get("rleu")
    Traceback (most recent call last):
    ...
    KeyError: "unknown activation 'rleu'; known: linear, relu, sigmoid, softmax, tanh (did you mean 'relu'?)"
    """
    if name is None:
        return _ACTIVATIONS["linear"]
    if isinstance(name, ActivationFunction):
        return name
    if not isinstance(name, str):
        raise TypeError(f"activation must be a name such as 'relu' or None, got "
                        f"{type(name).__name__}: {name!r}")
    try:
        return _ACTIVATIONS[name.lower()]
    except KeyError:
        close = difflib.get_close_matches(name.lower(), _ACTIVATIONS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise KeyError(f"unknown activation {name!r}; known: {', '.join(names())}{hint}") \
            from None
