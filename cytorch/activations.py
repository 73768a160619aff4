"""Activation functions, each a forward/backward pair written through its *output*.

Every derivative used here can be expressed with the output ``y = f(x)`` alone, so a layer only
keeps ``y`` for backward (no second copy of the pre-activation)::

    relu     y = max(x, 0)                     dx = dout * [y > 0]
    tanh     y = tanh(x)                       dx = dout * (1 - y**2)
    sigmoid  y = 1 / (1 + exp(-x))             dx = dout * y * (1 - y)
    softmax  y_k = exp(x_k) / sum_j exp(x_j)   dx = y * (dout - sum_k(dout_k * y_k))
    linear   y = x                             dx = dout
    leaky_relu  y = x if x > 0 else 0.2 x      dx = dout * (1 if y > 0 else 0.2)
    elu      y = x if x > 0 else exp(x) - 1    dx = dout * (1 if y > 0 else y + 1)
    softplus y = log(1 + exp(x))               dx = dout * (1 - exp(-y))

and two whose derivative needs the input x (a layer keeps x for them)::

    gelu     y = x * Phi(x)  (exact, erf)      dx = dout * (Phi(x) + x * phi(x))
    silu     y = x * sigmoid(x)  ("swish")     dx = dout * s * (1 + x * (1 - s)),  s = sigmoid(x)

The parameters are Keras 3's defaults for the strings: ``"leaky_relu"`` has slope 0.2 (the
``LeakyReLU`` layer's default is 0.3), ``"elu"`` alpha 1, ``"gelu"`` is the exact erf form.

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
import functools
from typing import Callable, NamedTuple

import numpy as np

from . import functional as F

__all__ = ["ActivationFunction", "relu", "relu_backward", "tanh", "tanh_backward", "sigmoid",
           "sigmoid_backward", "softmax", "softmax_backward", "linear", "linear_backward",
           "leaky_relu", "leaky_relu_backward", "elu", "elu_backward", "softplus",
           "softplus_backward", "gelu", "gelu_backward", "silu", "silu_backward",
           "leaky_relu_function", "elu_function", "get", "names"]


# Each forward takes ``out=`` so a layer may overwrite a temporary it owns (the pre-activation
# it just computed) instead of allocating a second array of the same size.
#
# The elementwise ones run through ``cytorch.functional.activation_forward/_backward``: compiled
# (``_kernels/_mathfn.h``: vectorised exp/tanh/sigmoid, one pass per call) on the compiled
# backend, the NumPy formulas of ``cytorch.reference.activation_forward`` (the twins, which
# also explain how the compiled exp is computed) under ``cytorch.backend("reference")``.  The
# arrays are the layers' own, scanned already: no second NaN scan here.

def _forward(name, x, out, alpha=None):
    return F.activation_forward(name, x, out=out, alpha=alpha, check_finite=False)


def _backward(name, dout, y, alpha=None):
    return F.activation_backward(name, dout, y, alpha=alpha, check_finite=False)


def relu(x, out=None):
    """max(x, 0), elementwise."""
    return _forward("relu", x, out)


def relu_backward(dout, y):
    """dout where the unit was active (y > 0), else 0; the kink at 0 gets gradient 0."""
    return _backward("relu", dout, y)


def tanh(x, out=None):
    """tanh(x); compiled as ``e / (e + 2)``, ``e = expm1(2|x|)`` (float64) or Cephes' tanhf
    (float32: within 1e-7 of the float64 value), see ``reference.activation_forward``."""
    return _forward("tanh", x, out)


def tanh_backward(dout, y):
    """d tanh(x)/dx = 1 - tanh(x)**2, so dx = dout * (1 - y*y).

    One pass, no temporaries (compiled) or one new array (the twin): on a conv layer's output
    (LeNet-5's first one is 1.2 MB per batch of 64) three temporaries would double the time.
    The compiled pass may fuse ``1 - y*y`` into one multiply-add (AVX2/AVX-512), which rounds
    once instead of twice: the last bit can differ from the twin's."""
    return _backward("tanh", dout, y)


def sigmoid(x, out=None):
    """``1 / (1 + exp(-x))`` computed as ``exp(min(x, 0)) / (1 + exp(-|x|))``: no exp of a
    large positive number, so no overflow warning and no lost precision for large ``|x|``."""
    return _forward("sigmoid", x, out)


def sigmoid_backward(dout, y):
    """d sigmoid(x)/dx = y (1 - y)."""
    return _backward("sigmoid", dout, y)


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


# -- Keras 3's other activations ----------------------------------------------------------------
# Their parameters are Keras 3's defaults for the *strings*: "leaky_relu" has slope 0.2 (the
# LeakyReLU *layer* defaults to 0.3), "elu" alpha 1, "gelu" the exact erf form
# (``approximate=False``).  leaky_relu, elu and softplus differentiate through their output like
# the functions above; gelu and silu are not invertible, so their derivative needs the input
# (``from_input=True``: a layer keeps x instead of y).

def leaky_relu(x, negative_slope=0.2, out=None):
    """x where x > 0, else ``negative_slope * x`` (Keras's string "leaky_relu": slope 0.2)."""
    return _forward("leaky_relu", x, out, negative_slope)


def leaky_relu_backward(dout, y, negative_slope=0.2):
    """dout where the unit is positive, else ``negative_slope * dout``; for a slope >= 0 the
    sign of y is the sign of x, so y suffices."""
    return _backward("leaky_relu", dout, y, negative_slope)


def elu(x, alpha=1.0, out=None):
    """x where x > 0, else ``alpha * (exp(x) - 1)`` (``expm1`` keeps small ``|x|`` exact; only
    the non-positive part is exponentiated, so a large x cannot overflow)."""
    return _forward("elu", x, out, alpha)


def elu_backward(dout, y, alpha=1.0):
    """d elu/dx = 1 for x > 0, else ``alpha * exp(x) = y + alpha`` (for alpha >= 0, y > 0
    exactly where x > 0)."""
    return _backward("elu", dout, y, alpha)


def softplus(x, out=None):
    """log(1 + exp(x)), computed as ``logaddexp(0, x)`` (compiled: ``max(x, 0) +
    log1p(exp(-|x|))``): no overflow for large x, no lost digits for very negative x."""
    return _forward("softplus", x, out)


def softplus_backward(dout, y):
    """d softplus/dx = sigmoid(x) = 1 - exp(-y), written ``-expm1(-y)`` to stay exact when y
    is tiny (very negative x)."""
    return _backward("softplus", dout, y)


_SQRT_HALF = np.sqrt(0.5)
_INV_SQRT_2PI = 1 / np.sqrt(2 * np.pi)


def gelu(x, out=None):
    """The exact GELU, ``x * Phi(x) = 0.5 * x * (1 + erf(x / sqrt(2)))`` (Keras 3's default,
    ``approximate=False``; Phi is the standard normal CDF)."""
    from scipy.special import erf
    y = 0.5 * x * (1 + erf(x * x.dtype.type(_SQRT_HALF)))
    if out is None:
        return y.astype(x.dtype, copy=False)
    np.copyto(out, y)
    return out


def gelu_backward(dout, x):
    """d gelu/dx = Phi(x) + x * phi(x), phi the standard normal density (needs x, not y)."""
    from scipy.special import erf
    t = x.dtype.type
    cdf = t(0.5) * (1 + erf(x * t(_SQRT_HALF)))
    return dout * (cdf + x * t(_INV_SQRT_2PI) * np.exp(t(-0.5) * x * x))


def silu(x, out=None):
    """SiLU (Keras's "silu", also "swish"): ``x * sigmoid(x)``."""
    return _forward("silu", x, out)


def silu_backward(dout, x):
    """d silu/dx = s + x * s * (1 - s) = s * (1 + x * (1 - s)), s = sigmoid(x) (needs x)."""
    return _backward("silu", dout, x)


class ActivationFunction(NamedTuple):
    """A named pair ``forward(x, out=None) -> y`` and ``backward(dout, y) -> dx``.

    With ``from_input=True`` (gelu, silu) backward is ``backward(dout, x)``: the derivative
    needs the input.  ``bind(x)`` then gives the function a layer calls as usual,
    ``backward(dout, y)``, with that x remembered.
    """

    name: str
    forward: Callable
    backward: Callable
    from_input: bool = False

    def bind(self, x):
        """This function with its backward reading ``x`` (for ``from_input`` functions; the
        others need nothing and are returned as they are)."""
        if not self.from_input:
            return self
        return ActivationFunction(self.name, self.forward,
                                  functools.partial(_backward_from_input, self.backward, x))

    def __repr__(self):
        return f"<activation {self.name!r}>"


def _backward_from_input(backward, x, dout, y):
    return backward(dout, x)


def leaky_relu_function(negative_slope):
    """``leaky_relu`` with another slope (the ``LeakyReLU`` layer's; >= 0)."""
    return ActivationFunction("leaky_relu",
                              functools.partial(leaky_relu, negative_slope=negative_slope),
                              functools.partial(leaky_relu_backward,
                                                negative_slope=negative_slope))


def elu_function(alpha):
    """``elu`` with another ``alpha`` (the ``ELU`` layer's; >= 0)."""
    return ActivationFunction("elu", functools.partial(elu, alpha=alpha),
                              functools.partial(elu_backward, alpha=alpha))


_ACTIVATIONS = {
    "relu": ActivationFunction("relu", relu, relu_backward),
    "tanh": ActivationFunction("tanh", tanh, tanh_backward),
    "sigmoid": ActivationFunction("sigmoid", sigmoid, sigmoid_backward),
    "softmax": ActivationFunction("softmax", softmax, softmax_backward),
    "linear": ActivationFunction("linear", linear, linear_backward),
    "leaky_relu": ActivationFunction("leaky_relu", leaky_relu, leaky_relu_backward),
    "elu": ActivationFunction("elu", elu, elu_backward),
    "softplus": ActivationFunction("softplus", softplus, softplus_backward),
    "gelu": ActivationFunction("gelu", gelu, gelu_backward, from_input=True),
    "silu": ActivationFunction("silu", silu, silu_backward, from_input=True),
}
_ALIASES = {"swish": "silu"}   # Keras 3: swish is silu


def names():
    """The known activation names, sorted (aliases included)."""
    return sorted([*_ACTIVATIONS, *_ALIASES])


def get(name):
    """The ``ActivationFunction`` called ``name`` (``None`` means ``"linear"``, as in Keras).

    >>> get("relu").name
    'relu'
    >>> get("rleu")
    Traceback (most recent call last):
    ...
    KeyError: "unknown activation 'rleu'; known: elu, gelu, leaky_relu, linear, relu, sigmoid, silu, softmax, softplus, swish, tanh (did you mean 'relu'?)"
    """
    if name is None:
        return _ACTIVATIONS["linear"]
    if isinstance(name, ActivationFunction):
        return name
    if not isinstance(name, str):
        raise TypeError(f"activation must be a name such as 'relu' or None, got "
                        f"{type(name).__name__}: {name!r}")
    try:
        key = name.lower()
        return _ACTIVATIONS[_ALIASES.get(key, key)]
    except KeyError:
        close = difflib.get_close_matches(name.lower(), names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise KeyError(f"unknown activation {name!r}; known: {', '.join(names())}{hint}") \
            from None
