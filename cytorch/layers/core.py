"""The core layers: ``Input``, ``Dense``, ``Flatten``, ``Activation`` and ``Dropout``.

Every built-in layer computes in its own ``dtype`` (float32 by default): forward converts its
input to that dtype (a no-op when a model already did), so a layer set to float64 is float64
from end to end, which is what gradient checks need.
"""
import numbers

import numpy as np

from .. import functional as F
from .. import initializers
from .._checks import check_int
from ..errors import ShapeError
from ._common import (ActivationMixin, as_grad, as_input, cached, check_bool, check_seed,
                      describe, sample_shape)
from .base import Layer
from .context import DEFAULT

# Dense applies these in the pass that writes its output (and their derivative in the pass
# that reads dout); softmax (fused with the loss or applied on the logits) and the
# activations whose derivative needs the input (gelu, silu) run after it.
_FUSED = F.FUSED_ACTIVATIONS

__all__ = ["Input", "Dense", "Flatten", "Activation", "Dropout"]


class Input(Layer):
    """The entry of a network: carries the shape of one sample (no batch axis).

    In the functional API an ``Input`` is the source node layers are called on::

        i = Input((28, 28, 1))
        y = Conv2D(6, 5)(i)          # y.shape == (24, 24, 6)

    In a ``Sequential`` it may come first to fix the input shape.  As a layer it is the
    identity, checking that batches have shape ``(N, *shape)``.

    Parameters
    ----------
    shape : tuple of int
        Shape of one sample, e.g. ``(28, 28, 1)`` for grayscale 28x28 images.
    """

    def __init__(self, shape, name=None, **kwargs):
        if isinstance(shape, numbers.Integral):
            shape = (shape,)
        try:
            shape = tuple(check_int(s, "every axis of shape", 1) for s in shape)
        except TypeError:
            raise TypeError(f"shape must be a tuple of positive ints such as (28, 28, 1), "
                            f"got {shape!r}") from None
        if not shape:
            raise ValueError("shape must have at least one axis, e.g. (28, 28, 1)")
        super().__init__(name=name, **kwargs)
        self.shape = shape

    def build(self, input_shape=None):
        super().build(self.shape if input_shape is None else input_shape)

    def compute_output_shape(self, input_shape):
        if tuple(input_shape) != self.shape:
            raise ShapeError(f"{describe(self)} has shape {self.shape}, got samples of shape "
                             f"{tuple(input_shape)}")
        return self.shape

    def forward(self, x, training=False, ctx=DEFAULT):
        x = as_input(self, x, check_finite=ctx.check_finite)
        if x.shape[1:] != self.shape:
            raise ShapeError(f"{describe(self)} expects batches of shape (N, "
                             f"{', '.join(map(str, self.shape))}), got {x.shape}")
        self._cache = x.shape
        return x

    def backward(self, dout, ctx=DEFAULT):
        return as_grad(self, dout, cached(self), ctx.check_finite)

    def get_config(self):
        return {"shape": list(self.shape), **super().get_config()}


class Dense(ActivationMixin, Layer):
    """Fully connected layer: ``y = activation(x @ kernel + bias)``.

    Shapes: ``x (N, in)``, ``kernel (in, units)``, ``bias (units,)``, ``y (N, units)``;
    ``in * units + units`` parameters (a 1600 -> 100 layer has 160,100).  Image batches must be
    flattened first (``Flatten()``).

    Gradients, with ``dz = dout * activation'``::

        dkernel = x.T @ dz        dbias = dz.sum(axis=0)        dx = dz @ kernel.T

    Compiled (``cytorch.functional.dense_forward``/``dense_backward``), the products run in
    BLAS, and bias + activation (relu, tanh, sigmoid, leaky_relu, elu, softplus) are applied in
    one pass over the output while it is in cache; backward computes dz and dbias (summed in
    float64) in one pass over dout.

    Parameters
    ----------
    units : int
        Number of output units.
    activation : str or None
        A name of ``cytorch.activations.names()``: "relu", "tanh", "sigmoid", "softmax",
        "linear", "leaky_relu" (slope 0.2), "elu", "gelu" (exact), "silu"/"swish", "softplus".
        Applied elementwise (softmax over the units).  ``None`` is linear.
    use_bias : bool
    kernel_initializer, bias_initializer : str
        Names from ``cytorch.initializers`` (fans as in Keras).
    seed : int, optional
        Seeds this layer's generator (the initial weights); by default the generator comes
        from ``cytorch.set_seed`` or the model's ``seed=``.

    A model calls the output layer with ``ctx.return_logits`` (see ``CallContext``) when the loss
    fuses the softmax: forward then returns the logits ``x @ kernel + bias`` and backward skips
    the activation's derivative.

    >>> import numpy as np
    >>> layer = Dense(3, activation="softmax", seed=0)
    >>> y = layer.forward(np.ones((2, 4)))
    >>> y.shape, layer.count_params(), np.allclose(y.sum(axis=1), 1)
    ((2, 3), 15, True)
    """

    def __init__(self, units, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", seed=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.units = check_int(units, "units", 1)
        self._init_activation(activation)
        self.use_bias = check_bool(use_bias, "use_bias")
        self.kernel_initializer = initializers.get(kernel_initializer).__name__
        self.bias_initializer = initializers.get(bias_initializer).__name__
        self.seed = check_seed(seed)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 1:
            raise ShapeError(f"{describe(self)} expects 2-D input (N, features), got samples of "
                             f"shape {input_shape}: put Flatten() before it")
        sample_shape(self, input_shape)
        return (self.units,)

    def build(self, input_shape):
        self.compute_output_shape(input_shape)
        n_in = int(input_shape[0])
        self.params["kernel"] = initializers.get(self.kernel_initializer)(
            (n_in, self.units), self.rng, self.dtype)
        if self.use_bias:
            self.params["bias"] = initializers.get(self.bias_initializer)(
                (self.units,), self.rng, self.dtype)
        super().build(input_shape)

    def forward(self, x, training=False, ctx=DEFAULT):
        x = as_input(self, x, rank=2, check_finite=ctx.check_finite,
                     hint=": put Flatten() before a Dense layer")
        act = self._call_activation(ctx)
        fused = act.name in _FUSED and not act.from_input
        # fused: the product in BLAS, bias and activation in one pass over its output
        y = F.dense_forward(x, self.params["kernel"], self.params.get("bias"),
                            act.name if fused else "linear", act.alpha, check_finite=False)
        if not fused:   # softmax, gelu, silu: NumPy on the pre-activation
            act, y = self._activate(y, inplace=True, ctx=ctx)
        self._cache = (x, act, y, fused)
        return y

    def backward(self, dout, ctx=DEFAULT):
        x, act, y, fused = cached(self)
        dout = as_grad(self, dout, y.shape, ctx.check_finite)
        if fused:       # dz = dout * f'(y) and db in one pass, then two GEMMs
            dx, dw, db = F.dense_backward(dout, x, self.params["kernel"], y, act.name,
                                          act.alpha, self.use_bias, check_finite=False)
        else:
            dx, dw, db = F.dense_backward(act.backward(dout, y), x, self.params["kernel"],
                                          None, "linear", use_bias=self.use_bias,
                                          check_finite=False)
        self.grads["kernel"] = dw
        if self.use_bias:
            self.grads["bias"] = db
        return dx

    def get_config(self):
        return {"units": self.units, "activation": self.activation, "use_bias": self.use_bias,
                "kernel_initializer": self.kernel_initializer,
                "bias_initializer": self.bias_initializer, "seed": self.seed,
                **super().get_config()}


class Flatten(Layer):
    """Reshape each sample to a vector: ``(N, H, W, C) -> (N, H*W*C)``, in C order (channels
    fastest), so it matches Keras's channels-last ``Flatten``.  Backward reshapes back.

    >>> import numpy as np
    >>> Flatten().forward(np.zeros((2, 4, 4, 20))).shape
    (2, 320)
    """

    def compute_output_shape(self, input_shape):
        return (int(np.prod(sample_shape(self, input_shape), dtype=np.int64)),)

    def forward(self, x, training=False, ctx=DEFAULT):
        x = as_input(self, x, check_finite=ctx.check_finite)
        y = x.reshape(x.shape[0], -1)
        self._cache = (x.shape, y.shape)  # backward reshapes without recomputing sizes
        return y

    def backward(self, dout, ctx=DEFAULT):
        x_shape, y_shape = cached(self)
        return as_grad(self, dout, y_shape, ctx.check_finite).reshape(x_shape)


class Activation(ActivationMixin, Layer):
    """Apply an activation function on its own: ``y = f(x)``, elementwise (softmax: over the
    last axis).  See ``cytorch.activations`` for the functions and their derivatives.

    Parameters
    ----------
    activation : str
        A name of ``cytorch.activations.names()`` ("relu", "gelu", ...).

    Called with ``ctx.return_logits`` (an output softmax whose loss fuses it, see
    ``CallContext``), forward is the identity and backward passes the gradient through.

    >>> import numpy as np
    >>> Activation("relu").forward(np.array([[-1.0, 2.0]])).tolist()
    [[0.0, 2.0]]
    """

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self._init_activation(activation)

    def forward(self, x, training=False, ctx=DEFAULT):
        x = as_input(self, x, check_finite=ctx.check_finite)
        # x belongs to the caller: never overwrite it
        act, y = self._activate(x, inplace=False, ctx=ctx)
        self._cache = (act, y)
        return y

    def backward(self, dout, ctx=DEFAULT):
        act, y = cached(self)
        dout = as_grad(self, dout, y.shape, ctx.check_finite)
        return act.backward(dout, y)

    def get_config(self):
        return {"activation": self.activation, **super().get_config()}


class Dropout(Layer):
    """Inverted dropout: in training, zero each activation with probability ``rate`` and scale
    the survivors by ``1 / (1 - rate)``, so the expected output equals the input and inference
    (``training=False``) is the plain identity.

    A fresh mask per forward: the kernel seed is drawn from the layer's generator, so the same
    ``seed=`` (or ``cytorch.set_seed``) gives the same masks.  Backward multiplies by the same
    mask and scale: ``dx = dout * mask / (1 - rate)``.

    Parameters
    ----------
    rate : float in [0, 1)
        Fraction of the units dropped (0.5 in AlexNet's dense layers).
    seed : int, optional
        Seeds the layer's generator.

    >>> import numpy as np
    >>> layer = Dropout(0.5, seed=0)
    >>> y = layer.forward(np.ones((1, 1000)), training=True)
    >>> sorted(set(y.ravel().tolist()))
    [0.0, 2.0]
    >>> bool((layer.forward(np.ones((1, 4))) == 1).all())   # inference: identity
    True
    """

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate < 1:
            raise ValueError(f"rate must be a float in [0, 1), got {rate!r}")
        self.rate = float(rate)
        self.seed = check_seed(seed)

    context_modes = frozenset({"reuse_buffers"})

    def forward(self, x, training=False, ctx=DEFAULT):
        x = as_input(self, x, check_finite=ctx.check_finite)
        if not training or self.rate == 0:
            self._cache = ("identity", x.shape)
            return x
        seed = int(self.rng.integers(2**63))
        out, cache = F.dropout_forward(x, self.rate, seed, training=True,
                                       check_finite=ctx.check_finite,
                                       workspace=self._buffers(ctx))
        self._cache = ("mask", x.shape, cache)
        return out

    def backward(self, dout, ctx=DEFAULT):
        kind, shape, *kernel_cache = cached(self)
        dout = as_grad(self, dout, shape, ctx.check_finite)
        if kind == "identity":
            return dout
        return F.dropout_backward(dout, kernel_cache[0], check_finite=False,  # as_grad did
                                  workspace=self._buffers(ctx))

    def get_config(self):
        return {"rate": self.rate, "seed": self.seed, **super().get_config()}

