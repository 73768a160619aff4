"""``DepthwiseConv2D`` and ``SeparableConv2D``: the convolutions of the MobileNet lesson.

A standard ``Conv2D`` with a ``kh x kw`` window mixes space and channels at once:
``kh*kw*C*K`` weights and as many multiply-adds per output position.  A *separable*
convolution splits that in two: a depthwise step filters each channel on its own in space
(``kh*kw*C*dm`` weights), then a pointwise 1x1 convolution mixes the channels
(``C*dm*K``).  For 3x3 windows and K = 64 that is about 8x fewer multiply-adds.
"""
from .. import functional as F
from .. import initializers
from .._checks import as_pair, check_int, resolve_padding, window_output_shape
from .._shapes import dilated_extent
from ..errors import ShapeError
from ._common import (ActivationMixin, as_grad, as_input, cached, check_bool, check_seed,
                      describe, sample_shape, to_list)
from .base import Layer
from .context import DEFAULT

__all__ = ["DepthwiseConv2D", "SeparableConv2D"]


class _Depthwise(ActivationMixin, Layer):
    """What the two layers share: the window, the depthwise step and the activation."""

    _depthwise_key = "kernel"

    def _init_window(self, kernel_size, strides, padding, depth_multiplier, dilation_rate,
                     activation, use_bias, depthwise_initializer, bias_initializer, seed):
        self.kernel_size = as_pair(kernel_size, "kernel_size")
        self.strides = as_pair(strides, "strides")
        # Keras 3's depthwise layers (unlike its Conv2D) take a stride > 1 with a dilation > 1:
        # their docstring calls the pair incompatible, but only the TensorFlow backend refuses
        # it; the torch and JAX backends compute it, and so does cytorch, with their numbers
        self.dilation_rate = as_pair(dilation_rate, "dilation_rate")
        extent = dilated_extent(self.kernel_size, self.dilation_rate)
        resolve_padding(padding, *extent, *extent, *self.strides)  # check
        self.padding = padding.lower() if isinstance(padding, str) else padding
        self.depth_multiplier = check_int(depth_multiplier, "depth_multiplier", 1)
        self._init_activation(activation)
        self.use_bias = check_bool(use_bias, "use_bias")
        self.depthwise_initializer = initializers.get(depthwise_initializer).__name__
        self.bias_initializer = initializers.get(bias_initializer).__name__
        self.seed = check_seed(seed)

    def _spatial(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 3:
            raise ShapeError(f"{describe(self)} expects samples of shape (H, W, C), got "
                             f"{input_shape}")
        H, W, C = sample_shape(self, input_shape)
        extent = dilated_extent(self.kernel_size, self.dilation_rate)
        H_out, W_out, _ = window_output_shape(H, W, *extent, *self.strides, self.padding,
                                              what=describe(self))
        return H_out, W_out, C

    def _build_depthwise(self, C):
        kh, kw = self.kernel_size
        self.params[self._depthwise_key] = initializers.get(self.depthwise_initializer)(
            (kh, kw, C, self.depth_multiplier), self.rng, self.dtype)

    def _window_config(self):
        return {"kernel_size": list(self.kernel_size), "strides": list(self.strides),
                "padding": to_list(self.padding), "depth_multiplier": self.depth_multiplier,
                "dilation_rate": list(self.dilation_rate), "activation": self.activation,
                "use_bias": self.use_bias, "depthwise_initializer": self.depthwise_initializer,
                "bias_initializer": self.bias_initializer, "seed": self.seed}


class DepthwiseConv2D(_Depthwise):
    """Depthwise convolution: each input channel is convolved with its own
    ``depth_multiplier`` filters; channels never mix.

    ``x (N, H, W, C)`` and ``kernel (kh, kw, C, dm)`` give ``y (N, H_out, W_out, C * dm)``,
    output channel ``c * dm + m`` being channel c filtered by ``kernel[:, :, c, m]`` (Keras's
    order), plus ``bias (C * dm,)``; ``H_out`` as for ``Conv2D`` (with a ``dilation_rate``
    ``(dh, dw)`` the window's taps are ``dh`` rows and ``dw`` columns apart: a 3x3 window
    with dilation 2 covers 5x5 input cells with 9 weights).  ``kh*kw*C*dm + C*dm``
    parameters: a 3x3 depthwise layer on 32 channels has 320, a 3x3 ``Conv2D(32)`` 9,248.
    Runs the compiled depthwise kernel (``cytorch.functional``; every channel in one pass, the
    channels in the vector lanes), with a NumPy twin in ``cytorch.reference``.

    Parameters
    ----------
    kernel_size, strides, padding : as ``Conv2D``
    depth_multiplier : int, default 1
    dilation_rate : int or (int, int), default 1
        As ``Conv2D``'s (Keras's argument): the window's extent ``(k - 1) * d + 1`` takes k's
        place in the output size and the padding.  Unlike ``Conv2D``, strides > 1 may be
        combined with a dilation > 1, as Keras 3's layer computes it.
    activation, use_bias : as ``Conv2D``
    depthwise_initializer, bias_initializer : str, default "glorot_uniform", "zeros"
    seed : int, optional

    >>> import numpy as np
    >>> layer = DepthwiseConv2D(3, depth_multiplier=2, padding="same", seed=0)
    >>> layer.forward(np.zeros((1, 8, 8, 4))).shape, layer.count_params()
    ((1, 8, 8, 8), 80)
    >>> DepthwiseConv2D(3, dilation_rate=2, seed=0).forward(np.zeros((1, 8, 8, 4))).shape
    (1, 4, 4, 4)
    """

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier=1,
                 dilation_rate=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", bias_initializer="zeros", seed=None,
                 **kwargs):
        super().__init__(**kwargs)
        self._init_window(kernel_size, strides, padding, depth_multiplier, dilation_rate,
                          activation, use_bias, depthwise_initializer, bias_initializer, seed)

    def compute_output_shape(self, input_shape):
        H_out, W_out, C = self._spatial(input_shape)
        return (H_out, W_out, C * self.depth_multiplier)

    def build(self, input_shape):
        _, _, C = self._spatial(input_shape)
        self._build_depthwise(C)
        if self.use_bias:
            self.params["bias"] = initializers.get(self.bias_initializer)(
                (C * self.depth_multiplier,), self.rng, self.dtype)
        super().build(input_shape)

    def forward(self, x, training=False, ctx=DEFAULT):
        x = as_input(self, x, rank=4, check_finite=ctx.check_finite)
        # the kernel applies the activation as it writes the output when it can (as Conv2D)
        fused = self._kernel_activation(ctx, F.CONV2D_ACTIVATIONS)
        z, cache = F.depthwise_conv2d_forward(x, self.params["kernel"], self.params.get("bias"),
                                              self.strides, self.padding, self.dilation_rate,
                                              activation=fused, check_finite=False)
        act, y = (None, z) if fused is not None else self._activate(z, inplace=True, ctx=ctx)
        self._cache = (cache, act, y)
        return y

    def backward(self, dout, ctx=DEFAULT):
        cache, act, y = cached(self)
        dz = as_grad(self, dout, y.shape, ctx.check_finite)
        if act is not None:   # else the kernel applies the derivative (the cache knows f)
            dz = act.backward(dz, y)
        dx, dw, db = F.depthwise_conv2d_backward(dz, cache, check_finite=False)
        self.grads["kernel"] = dw
        if self.use_bias:
            self.grads["bias"] = db
        return dx

    def get_config(self):
        return {**self._window_config(), **super().get_config()}


class SeparableConv2D(_Depthwise):
    """Depthwise then pointwise convolution (Chollet, 2017; MobileNet's building block):

        z = depthwise(x, depthwise_kernel)                  (N, H_out, W_out, C * dm)
        y = activation(z @ pointwise_kernel + bias)         (N, H_out, W_out, filters)

    with ``depthwise_kernel (kh, kw, C, dm)``, ``pointwise_kernel (1, 1, C * dm, filters)``
    and ``bias (filters,)`` (Keras's names and shapes; the strides, padding and dilation belong
    to the depthwise step).  ``kh*kw*C*dm + C*dm*filters + filters`` parameters.

    Backward runs the two steps' gradients in reverse: the pointwise conv's (dz,
    dpointwise, dbias), then the depthwise conv's (dx, ddepthwise).

    Parameters
    ----------
    filters : int
    kernel_size, strides, padding, dilation_rate, depth_multiplier, activation, use_bias :
        as above (Keras's order: ``dilation_rate`` comes before ``depth_multiplier`` here)
    depthwise_initializer, pointwise_initializer, bias_initializer : str
    seed : int, optional

    >>> import numpy as np
    >>> layer = SeparableConv2D(16, 3, padding="same", seed=0)
    >>> layer.forward(np.zeros((1, 8, 8, 4))).shape, layer.count_params()
    ((1, 8, 8, 16), 116)
    """

    _depthwise_key = "depthwise_kernel"

    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation_rate=1,
                 depth_multiplier=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", seed=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = check_int(filters, "filters", 1)
        self._init_window(kernel_size, strides, padding, depth_multiplier, dilation_rate,
                          activation, use_bias, depthwise_initializer, bias_initializer, seed)
        self.pointwise_initializer = initializers.get(pointwise_initializer).__name__

    def compute_output_shape(self, input_shape):
        H_out, W_out, _ = self._spatial(input_shape)
        return (H_out, W_out, self.filters)

    def build(self, input_shape):
        _, _, C = self._spatial(input_shape)
        self._build_depthwise(C)
        self.params["pointwise_kernel"] = initializers.get(self.pointwise_initializer)(
            (1, 1, C * self.depth_multiplier, self.filters), self.rng, self.dtype)
        if self.use_bias:
            self.params["bias"] = initializers.get(self.bias_initializer)(
                (self.filters,), self.rng, self.dtype)
        super().build(input_shape)

    def count_macs(self):
        """Multiply-adds per sample: the depthwise step's plus the pointwise step's."""
        H_out, W_out, _ = self.output_shape
        kh, kw = self.kernel_size
        channels = self.input_shape[-1] * self.depth_multiplier
        return H_out * W_out * channels * (kh * kw + self.filters)

    def forward(self, x, training=False, ctx=DEFAULT):
        x = as_input(self, x, rank=4, check_finite=ctx.check_finite)
        z1, depthwise_cache = F.depthwise_conv2d_forward(
            x, self.params["depthwise_kernel"], None, self.strides, self.padding,
            self.dilation_rate, check_finite=False)
        # the activation follows the pointwise step: its conv2d kernel applies it when it can
        fused = self._kernel_activation(ctx, F.CONV2D_ACTIVATIONS)
        z, pointwise_cache = F.conv2d_forward(z1, self.params["pointwise_kernel"],
                                              self.params.get("bias"), activation=fused,
                                              check_finite=False)
        act, y = (None, z) if fused is not None else self._activate(z, inplace=True, ctx=ctx)
        self._cache = (depthwise_cache, pointwise_cache, act, y)
        return y

    def backward(self, dout, ctx=DEFAULT):
        depthwise_cache, pointwise_cache, act, y = cached(self)
        dz = as_grad(self, dout, y.shape, ctx.check_finite)
        if act is not None:   # else the kernel applies the derivative (the cache knows f)
            dz = act.backward(dz, y)
        dz1, dpw, db = F.conv2d_backward(dz, pointwise_cache, check_finite=False)
        dx, ddw, _ = F.depthwise_conv2d_backward(dz1, depthwise_cache, check_finite=False)
        self.grads["depthwise_kernel"] = ddw
        self.grads["pointwise_kernel"] = dpw
        if self.use_bias:
            self.grads["bias"] = db
        return dx

    def get_config(self):
        return {"filters": self.filters, **self._window_config(),
                "pointwise_initializer": self.pointwise_initializer, **super().get_config()}
