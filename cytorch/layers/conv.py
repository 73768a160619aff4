"""``Conv2D``: a bank of K learnable filters slid over a channels-last image."""
from .. import functional as F
from .. import initializers
from .._checks import as_pair, check_int, resolve_padding, window_output_shape
from .._shapes import dilated_extent
from ..errors import ShapeError
from ._common import (ActivationMixin, as_grad, as_input, cached, check_bool, check_seed,
                      describe, sample_shape, to_list)
from .base import Layer
from .context import DEFAULT

__all__ = ["Conv2D"]


class Conv2D(ActivationMixin, Layer):
    """2-D convolution (cross-correlation, as in every deep-learning library), channels-last.

    Each of the ``filters`` kernels spans the full input depth: ``x (N, H, W, C)`` and
    ``kernel (kh, kw, C, K)`` give ``y (N, H_out, W_out, K)`` with, per spatial axis,

        H_out = floor((H + P_top + P_bottom - kh) / sh) + 1

    and ``y[n, i, j, k] = activation(bias[k] + sum_{a,b,c} x_pad[n, i*sh + a, j*sw + b, c]
    * kernel[a, b, c, k])``.  The weights are shared across positions, so the layer has
    ``kh*kw*C*K + K`` parameters whatever the image size: ``Conv2D(10, 5, padding=2)`` on
    32x32x3 has 5*5*3*10 + 10 = 760 and keeps the 32x32 size.

    Parameters
    ----------
    filters : int
        Number of kernels K (output channels).
    kernel_size : int or (int, int)
        ``(kh, kw)``; non-square kernels are fine.
    strides : int or (int, int), default 1
    padding : "valid", "same", "full", int, (int, int) or ((top, bottom), (left, right))
        See ``cytorch.checks.resolve_padding``: "same" keeps ``ceil(H / sh)``, "full" pads
        ``kh - 1``.
    dilation_rate : int or (int, int), default 1
        ``(dh, dw)``: tap ``(a, b)`` reads the input ``a * dh`` rows and ``b * dw`` columns
        from the window's corner (atrous convolution), so a 3x3 kernel with dilation 2 sees a
        5x5 patch with 9 weights.  The kernel's extent ``(kh - 1) * dh + 1`` takes kh's place
        in the output size and the padding, as in Keras; like Keras, strides > 1 and a
        dilation > 1 cannot be combined.
    activation : str or None
        A name of ``cytorch.activations.names()``: "relu", "tanh", "sigmoid", "softmax",
        "linear", "leaky_relu" (slope 0.2), "elu", "gelu" (exact), "silu"/"swish", "softplus".
        Softmax normalises over the channels of each position.
    use_bias : bool, default True
    kernel_initializer, bias_initializer : str
        Names from ``cytorch.initializers``; the kernel's fans are ``kh*kw*C`` and ``kh*kw*K``.
    seed : int, optional
        Seeds the layer's generator (initial weights).

    Besides ``check_finite``, forward and backward act on four modes of the call's
    ``CallContext``: ``return_logits`` (return the pre-activation, for a loss that fuses the
    activation), ``defer_relu`` (leave a ReLU to the pooling layer after it),
    ``input_grad=False`` (a layer reading the model input: backward returns None instead of
    dL/dx and skips computing it) and, in ``predict`` and ``evaluate``, ``fuse_max_pool``
    (return the 2x2 max pooling of the output, computed in one pass with the conv).

    >>> import numpy as np
    >>> layer = Conv2D(10, 5, padding=2, activation="relu", seed=0)
    >>> layer.forward(np.zeros((1, 32, 32, 3))).shape, layer.count_params()
    ((1, 32, 32, 10), 760)
    """

    context_modes = ActivationMixin.context_modes | {"input_grad", "reuse_buffers",
                                                     "fuse_max_pool"}

    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation_rate=1,
                 activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", seed=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = check_int(filters, "filters", 1)
        self.kernel_size = as_pair(kernel_size, "kernel_size")
        self.strides = as_pair(strides, "strides")
        self.dilation_rate = as_pair(dilation_rate, "dilation_rate")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(f"strides > 1 cannot be combined with dilation_rate > 1 (as in "
                             f"Keras); got strides={self.strides} and "
                             f"dilation_rate={self.dilation_rate}")
        extent = dilated_extent(self.kernel_size, self.dilation_rate)
        resolve_padding(padding, *extent, *extent, *self.strides)  # check
        self.padding = padding.lower() if isinstance(padding, str) else padding
        self._init_activation(activation)
        self.use_bias = check_bool(use_bias, "use_bias")
        self.kernel_initializer = initializers.get(kernel_initializer).__name__
        self.bias_initializer = initializers.get(bias_initializer).__name__
        self.seed = check_seed(seed)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 3:
            hint = "; add a channel axis for grayscale images" if len(input_shape) == 2 else ""
            raise ShapeError(f"{describe(self)} expects samples of shape (H, W, C), got "
                             f"{input_shape}{hint}")
        H, W, _ = sample_shape(self, input_shape)
        extent = dilated_extent(self.kernel_size, self.dilation_rate)
        H_out, W_out, _ = window_output_shape(H, W, *extent, *self.strides, self.padding,
                                              what=describe(self))
        return (H_out, W_out, self.filters)

    def build(self, input_shape):
        self.compute_output_shape(input_shape)
        kh, kw = self.kernel_size
        C = int(input_shape[-1])
        self.params["kernel"] = initializers.get(self.kernel_initializer)(
            (kh, kw, C, self.filters), self.rng, self.dtype)
        if self.use_bias:
            self.params["bias"] = initializers.get(self.bias_initializer)(
                (self.filters,), self.rng, self.dtype)
        super().build(input_shape)

    def forward(self, x, training=False, ctx=DEFAULT):
        x = as_input(self, x, rank=4, check_finite=ctx.check_finite)
        if ctx.fuse_max_pool:
            return self._forward_max_pool(x, ctx)
        # the kernel applies the activation itself as it writes the output when it can
        # (F.CONV2D_ACTIVATIONS: relu, tanh, sigmoid, ...); gelu, silu, softmax and custom
        # functions run on the kernel's output afterwards
        fused = self._kernel_activation(ctx, F.CONV2D_ACTIVATIONS)
        z, conv_cache = F.conv2d_forward(x, self.params["kernel"], self.params.get("bias"),
                                         strides=self.strides, padding=self.padding,
                                         dilation_rate=self.dilation_rate, activation=fused,
                                         check_finite=ctx.check_finite,
                                         workspace=self._buffers(ctx))
        if fused is not None:
            act, y = None, z
        else:   # z is fresh from the kernel: reuse it
            act, y = self._activate(z, inplace=True, ctx=ctx)
        self._cache = (conv_cache, act, y)
        return y

    def _forward_max_pool(self, x, ctx):
        """The graph pass ``conv_max_pool`` (inference): the 2x2 max pooling of this layer's
        output, conv and pooling in one call; the ``MaxPooling2D`` after it passes the result
        on.  The layer's activation applies even when ``relu_after_pooling`` deferred it: the
        fused call puts a ReLU after the pooling itself.  Nothing is cached (no backward)."""
        self._cache = None
        fused = self._kernel_activation(ctx.replace(defer_relu=False), F.CONV2D_ACTIVATIONS)
        kernel, bias = self.params["kernel"], self.params.get("bias")
        if fused is not None:
            return F.conv2d_max_pool2d_forward(
                x, kernel, bias, strides=self.strides, padding=self.padding,
                dilation_rate=self.dilation_rate, activation=fused,
                check_finite=ctx.check_finite, workspace=self._buffers(ctx))
        # an activation no kernel applies (the pass does not ask for this, a caller might)
        z, _ = F.conv2d_forward(x, kernel, bias, strides=self.strides, padding=self.padding,
                                dilation_rate=self.dilation_rate, check_finite=ctx.check_finite)
        _, y = self._activate(z, inplace=True, ctx=ctx.replace(defer_relu=False))
        return F.max_pool2d_forward(y, 2, check_finite=False, need_backward=False)[0]

    def backward(self, dout, ctx=DEFAULT):
        conv_cache, act, y = cached(self)
        dz = as_grad(self, dout, y.shape, ctx.check_finite)
        if act is not None:   # else the kernel applies the derivative (the cache knows f)
            dz = act.backward(dz, y)
        dx, dw, db = F.conv2d_backward(dz, conv_cache, need_dx=ctx.input_grad,
                                       check_finite=False,   # as_grad checked dout
                                       workspace=self._buffers(ctx))
        self.grads["kernel"] = dw
        if self.use_bias:
            self.grads["bias"] = db
        return dx

    def get_config(self):
        return {"filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": to_list(self.padding),
                "dilation_rate": list(self.dilation_rate), "activation": self.activation, "use_bias": self.use_bias,
                "kernel_initializer": self.kernel_initializer,
                "bias_initializer": self.bias_initializer, "seed": self.seed,
                **super().get_config()}
