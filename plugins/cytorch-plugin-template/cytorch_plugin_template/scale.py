"""``Scale``: multiply every channel by its own learnable factor.

The smallest layer that has everything a cytorch layer needs -- a parameter, a gradient, a
config -- and nothing else.  For channels-last input ``x`` of shape ``(N, ..., C)``::

    y[..., c]    = gamma[c] * x[..., c]
    dx[..., c]   = gamma[c] * dout[..., c]
    dgamma[c]    = sum over every axis but the last of dout[..., c] * x[..., c]

>>> import numpy as np
>>> layer = Scale(init=2.0)
>>> layer.build((4, 4, 3))
>>> layer.forward(np.ones((1, 4, 4, 3))).sum()     # 48 ones, each doubled
np.float64(96.0)
"""
import numbers

import numpy as np
from cytorch import Layer, ShapeError


class Scale(Layer):
    """Per-channel learnable scale, ``y = gamma * x`` with ``gamma`` of shape ``(C,)``.

    Parameters
    ----------
    init : float
        Starting value of every ``gamma[c]`` (1.0 leaves the input unchanged).
    name, dtype, trainable :
        As for every ``cytorch.Layer``.
    """

    def __init__(self, init=1.0, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(init, numbers.Real) or not np.isfinite(init):
            raise ValueError(f"init must be a finite number, got {init!r}")
        self.init = float(init)

    def build(self, input_shape):
        # create the parameters first, then let the base class record the shapes
        self.params["gamma"] = np.full(input_shape[-1], self.init, dtype=self.dtype)
        super().build(input_shape)

    def forward(self, x, training=False):
        x = np.asarray(x)
        if x.shape[1:] != self.input_shape:
            raise ShapeError(f"{type(self).__name__} '{self.name}' was built for samples of "
                             f"shape {self.input_shape}, got a batch of shape {x.shape}")
        self._cache = x                     # backward needs x for dgamma
        return x * self.params["gamma"]

    def backward(self, dout):
        x = self._cache
        C = x.shape[-1]
        self.grads["gamma"][...] = (dout * x).reshape(-1, C).sum(axis=0)
        return dout * self.params["gamma"]

    def get_config(self):
        return {**super().get_config(), "init": self.init}
