"""Pooling layers: windowed max / average / min, and their global (whole-map) versions.

Pooling has no parameters: it summarises each ``(ph, pw)`` window of every channel separately,
shrinking ``(N, H, W, C)`` to ``(N, H_out, W_out, C)`` with, per axis,

    H_out = floor((H + P_top + P_bottom - ph) / sh) + 1      (strides default to pool_size)

Backward routes ``dout`` to the winning cell of each window (max/min; ties go to the first
cell in row-major order) or spreads it evenly over the window (average; with padding only the
real cells count).  The global versions reduce the whole map: ``(N, H, W, C) -> (N, C)``.
"""
from .. import functional as F
from .._checks import as_pair, resolve_padding, window_output_shape
from ..errors import ShapeError
from ._common import as_grad, as_input, cached, check_bool, describe, sample_shape, to_list
from .base import Layer
from .context import DEFAULT

__all__ = ["MaxPooling2D", "MaxPool2D", "AveragePooling2D", "AvgPool2D", "MinPooling2D",
           "GlobalMaxPooling2D", "GlobalAveragePooling2D", "GlobalMinPooling2D"]


def _check_image_shape(layer, input_shape):
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ShapeError(f"{describe(layer)} expects samples of shape (H, W, C), got "
                         f"{input_shape}")
    return sample_shape(layer, input_shape)


class _Pooling2D(Layer):
    """Shared by the three windowed pools; subclasses name their pair of kernels."""

    context_modes = frozenset({"reuse_buffers"})
    _forward_kernel = None   # e.g. F.max_pool2d_forward, looked up at call time
    _backward_kernel = None

    #: True for max and min: each output is the value of one input cell, its winner, and
    #: backward sends the output's gradient there
    routes_to_winner = False

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", **kwargs):
        super().__init__(**kwargs)
        self.pool_size = as_pair(pool_size, "pool_size")
        self.strides = self.pool_size if strides is None else as_pair(strides, "strides")
        pt, pb, pl, pr = resolve_padding(padding, *self.pool_size, *self.pool_size,
                                         *self.strides)
        ph, pw = self.pool_size
        if max(pt, pb) >= ph or max(pl, pr) >= pw:  # only explicit padding can do this
            raise ValueError(f"padding {padding!r} must be smaller than pool_size "
                             f"{self.pool_size} on every side, so that every window holds a "
                             f"real cell; got (top, bottom, left, right) = {(pt, pb, pl, pr)}")
        self.padding = padding.lower() if isinstance(padding, str) else padding

    def compute_output_shape(self, input_shape):
        H, W, C = _check_image_shape(self, input_shape)
        H_out, W_out, _ = window_output_shape(H, W, *self.pool_size, *self.strides,
                                              self.padding, what=describe(self))
        return (H_out, W_out, C)

    def forward(self, x, training=False, ctx=DEFAULT):
        x = as_input(self, x, rank=4, check_finite=ctx.check_finite)
        if ctx.pooled_by_input:
            # the graph pass conv_max_pool (inference): the conv before this layer returned
            # its output pooled (and with a deferred ReLU applied), one pass instead of two
            self._cache = None
            return x
        if ctx.inference and self.routes_to_winner:
            # no backward follows (predict, evaluate): the kernel records no winners and
            # applies relu_after_pooling's ReLU itself; nothing is cached
            self._cache = None
            return getattr(F, self._forward_kernel)(
                x, pool_size=self.pool_size, strides=self.strides, padding=self.padding,
                check_finite=ctx.check_finite, workspace=self._buffers(ctx),
                activation="relu" if ctx.apply_relu else None, need_backward=False)[0]
        workspace = self._buffers(ctx)
        # relu_after_pooling (max and min only): max(relu(z)) = relu(max(z)), ReLU commutes
        # with max and min (it is monotone), so the kernel pools the pre-activations and
        # applies ReLU to the result as it writes it; backward then multiplies dout by
        # ReLU's derivative [out > 0] first.  That is the derivative at each window's winner:
        # masking dout on the pooled map gives the dx of routing first and masking the full
        # map after.  (A cell that wins no window gets 0 either way.  Where all of a window is
        # <= 0 its winner may differ from that of pooling relu(z), but its mask is 0.  Where
        # windows overlap, a sum of masked terms replaces a masked sum: with a mask of 0s and
        # 1s that is the same number, up to the sign of a zero.)
        kwargs = {"activation": "relu"} if ctx.apply_relu else {}
        out, cache = getattr(F, self._forward_kernel)(
            x, pool_size=self.pool_size, strides=self.strides, padding=self.padding,
            check_finite=ctx.check_finite, workspace=workspace, **kwargs)
        self._cache = (cache, out.shape)
        return out

    def backward(self, dout, ctx=DEFAULT):
        cache, shape = cached(self)
        dout = as_grad(self, dout, shape, ctx.check_finite)
        return getattr(F, self._backward_kernel)(dout, cache, check_finite=False,  # as_grad did
                                                 workspace=self._buffers(ctx))

    def get_config(self):
        return {"pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": to_list(self.padding), **super().get_config()}


class MaxPooling2D(_Pooling2D):
    """Max over each ``pool_size`` window: keeps the strongest response, adds no parameters.

    >>> import numpy as np
    >>> x = np.arange(16.0).reshape(1, 4, 4, 1)
    >>> MaxPooling2D(2).forward(x)[0, :, :, 0].tolist()
    [[5.0, 7.0], [13.0, 15.0]]
    """

    _forward_kernel = "max_pool2d_forward"
    _backward_kernel = "max_pool2d_backward"
    routes_to_winner = True
    context_modes = frozenset({"apply_relu", "reuse_buffers", "inference", "pooled_by_input"})


class AveragePooling2D(_Pooling2D):
    """Mean over each ``pool_size`` window (LeNet-5's subsampling); with padding the mean is
    over the real cells of the window only.

    >>> import numpy as np
    >>> x = np.arange(16.0).reshape(1, 4, 4, 1)
    >>> AveragePooling2D(2).forward(x)[0, :, :, 0].tolist()
    [[2.5, 4.5], [10.5, 12.5]]
    """

    _forward_kernel = "avg_pool2d_forward"
    _backward_kernel = "avg_pool2d_backward"


class MinPooling2D(_Pooling2D):
    """Min over each ``pool_size`` window (the mirror of max pooling; not in Keras).

    >>> import numpy as np
    >>> x = np.arange(16.0).reshape(1, 4, 4, 1)
    >>> MinPooling2D(2).forward(x)[0, :, :, 0].tolist()
    [[0.0, 2.0], [8.0, 10.0]]
    """

    _forward_kernel = "min_pool2d_forward"
    _backward_kernel = "min_pool2d_backward"
    routes_to_winner = True
    context_modes = frozenset({"apply_relu", "reuse_buffers", "inference"})


MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D


class _GlobalPooling2D(Layer):
    """Shared by the three global pools: ``(N, H, W, C) -> (N, C)``, or ``(N, 1, 1, C)`` with
    ``keepdims=True`` (as in Keras)."""

    _forward_kernel = None
    _backward_kernel = None

    def __init__(self, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.keepdims = check_bool(keepdims, "keepdims")

    def compute_output_shape(self, input_shape):
        C = _check_image_shape(self, input_shape)[2]
        return (1, 1, C) if self.keepdims else (C,)

    def forward(self, x, training=False, ctx=DEFAULT):
        x = as_input(self, x, rank=4, check_finite=ctx.check_finite)
        out, cache = getattr(F, self._forward_kernel)(x, check_finite=ctx.check_finite)
        if self.keepdims:
            out = out.reshape(out.shape[0], 1, 1, out.shape[1])
        self._cache = (cache, out.shape)
        return out

    def backward(self, dout, ctx=DEFAULT):
        cache, shape = cached(self)
        dout = as_grad(self, dout, shape, ctx.check_finite).reshape(shape[0], shape[-1])
        return getattr(F, self._backward_kernel)(dout, cache, check_finite=False)  # as_grad did

    def get_config(self):
        config = super().get_config()
        if self.keepdims:
            config["keepdims"] = True
        return config


class GlobalMaxPooling2D(_GlobalPooling2D):
    """Max over the whole map of each channel: ``(N, H, W, C) -> (N, C)``."""

    _forward_kernel = "global_max_pool2d_forward"
    _backward_kernel = "global_max_pool2d_backward"


class GlobalAveragePooling2D(_GlobalPooling2D):
    """Mean over the whole map of each channel: ``(N, H, W, C) -> (N, C)``; a parameter-free
    alternative to ``Flatten`` before the classifier."""

    _forward_kernel = "global_avg_pool2d_forward"
    _backward_kernel = "global_avg_pool2d_backward"


class GlobalMinPooling2D(_GlobalPooling2D):
    """Min over the whole map of each channel: ``(N, H, W, C) -> (N, C)``."""

    _forward_kernel = "global_min_pool2d_forward"
    _backward_kernel = "global_min_pool2d_backward"
