"""Weight initializers, seeded through a ``numpy.random.Generator`` (layers pass ``self.rng``).

Fans follow Keras's conventions:

* a dense kernel ``(in, out)`` has ``fan_in = in``, ``fan_out = out``;
* a conv kernel ``(kh, kw, C, K)`` has ``fan_in = kh*kw*C`` (inputs seen by one output unit)
  and ``fan_out = kh*kw*K``;
* a vector ``(n,)`` has ``fan_in = fan_out = n``.

The scales keep the variance of activations (Glorot: also of gradients) roughly constant from
layer to layer::

    glorot_uniform  U(-a, a),  a = sqrt(6 / (fan_in + fan_out))     (Glorot & Bengio, 2010)
    glorot_normal   truncated normal, std = sqrt(2 / (fan_in + fan_out))
    he_uniform      U(-a, a),  a = sqrt(6 / fan_in)                  (He et al., 2015)
    he_normal       truncated normal, std = sqrt(2 / fan_in)

The normal variants draw from a normal truncated at two standard deviations, rescaled (as
Keras does) so that the *truncated* distribution has the stated std.  He suits ReLU layers,
Glorot tanh/sigmoid/linear ones.

>>> import numpy as np
>>> from cytorch import initializers
>>> w = initializers.get("he_uniform")((5, 5, 1, 6), np.random.default_rng(0))
>>> w.shape, w.dtype, bool(np.abs(w).max() <= np.sqrt(6 / 25))
((5, 5, 1, 6), dtype('float32'), True)
"""
import difflib

import numpy as np

from .random import make_rng

__all__ = ["compute_fans", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
           "zeros", "ones", "get", "names"]

# std of a standard normal truncated to [-2, 2]: dividing by it restores the wanted std
_TRUNCATED_STD = 0.87962566103423978


def compute_fans(shape):
    """``(fan_in, fan_out)`` of a weight of ``shape`` (see the module docstring).

    >>> compute_fans((5, 5, 3, 10)), compute_fans((400, 100))
    ((75, 250), (400, 100))
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return receptive * shape[-2], receptive * shape[-1]


def _uniform(shape, limit, rng, dtype):
    return make_rng(rng).uniform(-limit, limit, size=shape).astype(dtype, copy=False)


def _truncated_normal(shape, std, rng, dtype):
    """Normal(0, std) truncated at +-2 std (redrawing the tails), then rescaled."""
    rng = make_rng(rng)
    z = rng.standard_normal(size=shape)
    bad = np.abs(z) > 2
    while bad.any():
        z[bad] = rng.standard_normal(size=int(bad.sum()))
        bad = np.abs(z) > 2
    return (z * (std / _TRUNCATED_STD)).astype(dtype, copy=False)


def glorot_uniform(shape, rng=None, dtype="float32"):
    """U(-a, a) with a = sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = compute_fans(shape)
    return _uniform(shape, np.sqrt(6.0 / (fan_in + fan_out)), rng, dtype)


def glorot_normal(shape, rng=None, dtype="float32"):
    """Truncated normal with std sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = compute_fans(shape)
    return _truncated_normal(shape, np.sqrt(2.0 / (fan_in + fan_out)), rng, dtype)


def he_uniform(shape, rng=None, dtype="float32"):
    """U(-a, a) with a = sqrt(6 / fan_in)."""
    fan_in, _ = compute_fans(shape)
    return _uniform(shape, np.sqrt(6.0 / fan_in), rng, dtype)


def he_normal(shape, rng=None, dtype="float32"):
    """Truncated normal with std sqrt(2 / fan_in)."""
    fan_in, _ = compute_fans(shape)
    return _truncated_normal(shape, np.sqrt(2.0 / fan_in), rng, dtype)


def zeros(shape, rng=None, dtype="float32"):
    return np.zeros(shape, dtype=dtype)


def ones(shape, rng=None, dtype="float32"):
    return np.ones(shape, dtype=dtype)


_INITIALIZERS = {f.__name__: f for f in (glorot_uniform, glorot_normal, he_uniform, he_normal,
                                        zeros, ones)}


def names():
    """The known initializer names, sorted."""
    return sorted(_INITIALIZERS)


def get(name):
    """The initializer ``f(shape, rng=None, dtype="float32") -> ndarray`` called ``name``.

    >>> get("glorot_uniform").__name__
    'glorot_uniform'
    >>> get("he_unifrom")
    Traceback (most recent call last):
    ...
    KeyError: "unknown initializer 'he_unifrom'; known: glorot_normal, glorot_uniform, he_normal, he_uniform, ones, zeros (did you mean 'he_uniform'?)"
    """
    if not isinstance(name, str):
        raise TypeError(f"initializer must be a name such as 'glorot_uniform', got "
                        f"{type(name).__name__}: {name!r}")
    try:
        return _INITIALIZERS[name.lower()]
    except KeyError:
        close = difflib.get_close_matches(name.lower(), _INITIALIZERS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise KeyError(f"unknown initializer {name!r}; known: {', '.join(names())}{hint}") \
            from None
