"""``LocallyConnected2D``: a convolution without weight sharing."""
import numpy as np
from cytorch import Layer, activations, initializers
from cytorch.checks import (as_grad, as_input, as_pair, check_int, describe, resolve_padding,
                            window_output_shape)
from cytorch.errors import ShapeError
from cytorch.layers import CallContext

from . import functional as F

__all__ = ["LocallyConnected2D"]

_LINEAR = activations.get("linear")
_DEFAULT = CallContext()


class LocallyConnected2D(Layer):
    """Slide a window over the image like ``Conv2D``, but give every position its own filters.

    With weight sharing, a filter bank slid over the image is a convolution; without it, it is
    a locally connected layer.  Each output position ``(i, j)`` sees the same window a
    ``Conv2D`` would see, but multiplies it by its own ``(kh*kw*C, K)`` matrix::

        y[n, i, j, :] = activation(cols[n, i, j, :] @ kernel[i, j] + bias[i, j])

    with ``cols[n, i, j]`` the ``kh x kw x C`` window under ``(i, j)`` flattened in
    ``(kh, kw, C)`` order and, per spatial axis, ``H_out = floor((H + P_top + P_bottom - kh)
    / sh) + 1``.

    Shapes: ``x (N, H, W, C)``, ``kernel (H_out, W_out, kh*kw*C, K)``, ``bias (H_out, W_out,
    K)``, ``y (N, H_out, W_out, K)``.  Because the weights belong to positions, the layer only
    accepts the ``H x W`` it was built for.

    The price of not sharing is the lecture's point.  On a 32x32x3 image, 30 filters 5x5 with
    "same" padding give 32*32 = 1024 positions, each with 5*5*3*30 weights and 30 biases::

        Conv2D(30, 5, padding="same")             5*5*3*30 + 30          =     2,280 params
        LocallyConnected2D(30, 5, padding="same") 1024 * (5*5*3*30 + 30) = 2,334,720 params

    Parameters
    ----------
    filters : int
        Number of filters K per position (output channels).
    kernel_size : int or (int, int)
        Window ``(kh, kw)``; non-square windows are fine.
    strides : int or (int, int), default 1
    padding : "valid", "same", "full", int, (int, int) or ((top, bottom), (left, right))
        As for ``Conv2D`` (see ``cytorch.checks.resolve_padding``).
    activation : {"relu", "tanh", "sigmoid", "softmax", "linear"} or None
    use_bias : bool, default True
    kernel_initializer, bias_initializer : str
        Names from ``cytorch.initializers``.  Each position's filters are drawn like a
        ``Conv2D`` kernel ``(kh, kw, C, K)``, with fans ``kh*kw*C`` and ``kh*kw*K``, so at
        initialisation every position looks like a freshly made convolution.  (Keras counts
        all positions into the fans instead, which shrinks the weights as the image grows.)
    seed : int, optional
        Seeds the layer's generator (initial weights).
    name, dtype, trainable :
        As for every ``cytorch.Layer``.

    Like the built-in layers, forward and backward take the ``CallContext`` a model passes
    (``ctx``): ``check_finite=False`` when the model has checked its input already, and
    ``return_logits`` on an output layer whose loss applies a fused softmax (forward then
    returns the pre-activation and backward skips the activation's derivative).

    >>> import numpy as np
    >>> layer = LocallyConnected2D(30, 5, padding="same", seed=0)
    >>> layer.forward(np.zeros((1, 32, 32, 3))).shape, f"{layer.count_params():,}"
    ((1, 32, 32, 30), '2,334,720')
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 seed=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = check_int(filters, "filters", 1)
        self.kernel_size = as_pair(kernel_size, "kernel_size")
        self.strides = as_pair(strides, "strides")
        resolve_padding(padding, *self.kernel_size, *self.kernel_size, *self.strides)  # check
        self.padding = padding.lower() if isinstance(padding, str) else padding
        self._activation = activations.get(activation)
        self.activation = self._activation.name
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer).__name__
        self.bias_initializer = initializers.get(bias_initializer).__name__
        self.seed = seed

    #: the modes of the CallContext this layer acts on (besides check_finite)
    context_modes = frozenset({"return_logits"})

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 3:
            hint = "; add a channel axis for grayscale images" if len(input_shape) == 2 else ""
            raise ShapeError(f"{describe(self)} expects samples of shape (H, W, C), got "
                             f"{input_shape}{hint}")
        H, W, _ = input_shape
        H_out, W_out, _ = window_output_shape(H, W, *self.kernel_size, *self.strides,
                                              self.padding, what=describe(self))
        return (H_out, W_out, self.filters)

    def build(self, input_shape):
        H_out, W_out, K = self.compute_output_shape(input_shape)
        kh, kw = self.kernel_size
        C = int(input_shape[-1])
        init = initializers.get(self.kernel_initializer)
        kernel = np.empty((H_out, W_out, kh * kw * C, K), dtype=self.dtype)
        for i in range(H_out):             # one conv-like kernel per position (see above)
            for j in range(W_out):
                kernel[i, j] = init((kh, kw, C, K), self.rng, self.dtype).reshape(-1, K)
        self.params["kernel"] = kernel
        if self.use_bias:
            self.params["bias"] = initializers.get(self.bias_initializer)(
                (H_out, W_out, K), self.rng, self.dtype)
        super().build(input_shape)

    def _as_input(self, x, check_finite):
        """``x`` as a batch of the layer's dtype and of exactly the built (H, W, C)."""
        x = as_input(self, x, rank=4, check_finite=check_finite)   # dtype, NaN, rank, build
        if x.shape[1:] != self.input_shape:
            raise ShapeError(f"{describe(self)} was built for inputs of shape "
                             f"{self.input_shape}, got {x.shape[1:]} (batch shape {x.shape}); "
                             f"its weights belong to output positions, so unlike Conv2D it "
                             f"cannot take another image size")
        return x

    def forward(self, x, training=False, ctx=_DEFAULT):
        x = self._as_input(x, ctx.check_finite)
        z, lc_cache = F.locally_connected2d_forward(
            x, self.params["kernel"], self.params.get("bias"), self.kernel_size, self.strides,
            self.padding, check_finite=ctx.check_finite)
        act = _LINEAR if ctx.return_logits else self._activation
        y = act.forward(z, out=z)          # z is a fresh array from the kernel: reuse it
        self._cache = (lc_cache, act, y)
        return y

    def backward(self, dout, ctx=_DEFAULT):
        if self._cache is None:
            raise RuntimeError(f"{describe(self)}: call forward(x, training=True) before "
                               f"backward")
        lc_cache, act, y = self._cache
        dout = as_grad(self, dout, y.shape, check_finite=False)   # the kernel checks it
        dx, dw, db = F.locally_connected2d_backward(act.backward(dout, y), lc_cache)
        self.grads["kernel"] = dw
        if self.use_bias:
            self.grads["bias"] = db
        return dx

    def get_config(self):
        return {"filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": _to_list(self.padding),
                "activation": self.activation, "use_bias": self.use_bias,
                "kernel_initializer": self.kernel_initializer,
                "bias_initializer": self.bias_initializer, "seed": self.seed,
                **super().get_config()}


def _to_list(value):
    """Tuples become lists, recursively, so the config survives a JSON round trip."""
    if isinstance(value, (tuple, list)):
        return [_to_list(v) for v in value]
    return value
