"""Layers that move values without learning anything: ``ZeroPadding2D``, ``Reshape`` and
``UpSampling2D`` (Keras's names, arguments and numbers; channels-last)."""
import numpy as np

from .._checks import is_int
from ..errors import ShapeError
from ._common import as_grad, as_input, cached, describe, sample_shape, to_list
from .base import Layer
from .context import DEFAULT

__all__ = ["ZeroPadding2D", "Reshape", "UpSampling2D"]


def _image_shape(layer, input_shape):
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise ShapeError(f"{describe(layer)} expects samples of shape (H, W, C), got {shape}")
    return sample_shape(layer, shape)


def _positive_pair(value, name):
    """An int or a pair of ints, each >= 1, as a pair."""
    pair = (value, value) if is_int(value) else value
    if not isinstance(pair, (tuple, list)) or len(pair) != 2 \
            or not all(is_int(v) and v >= 1 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair of positive ints, "
                         f"got {value!r}")
    return tuple(int(v) for v in pair)


class ZeroPadding2D(Layer):
    """Add rows and columns of zeros around each image: ``(N, H, W, C) ->
    (N, top + H + bottom, left + W + right, C)``.  Backward crops the gradient back.

    Parameters
    ----------
    padding : int, (int, int) or ((top, bottom), (left, right)), default (1, 1)
        As in Keras: an int pads every side, ``(ph, pw)`` pads ``ph`` rows above and below and
        ``pw`` columns left and right.

    >>> import numpy as np
    >>> ZeroPadding2D(((1, 0), (0, 2))).forward(np.ones((1, 2, 2, 1)))[0, :, :, 0]
    array([[0., 0., 0., 0.],
           [1., 1., 0., 0.],
           [1., 1., 0., 0.]], dtype=float32)
    """

    def __init__(self, padding=(1, 1), **kwargs):
        super().__init__(**kwargs)
        p = padding
        if is_int(p):
            p = ((p, p), (p, p))
        elif isinstance(p, (tuple, list)) and len(p) == 2 and all(is_int(v) for v in p):
            p = ((p[0], p[0]), (p[1], p[1]))
        if not (isinstance(p, (tuple, list)) and len(p) == 2
                and all(isinstance(q, (tuple, list)) and len(q) == 2 for q in p)
                and all(is_int(v) and v >= 0 for q in p for v in q)):
            raise ValueError(f"padding must be an int >= 0, a pair (rows, columns) or "
                             f"((top, bottom), (left, right)) of ints >= 0, got {padding!r}")
        self.padding = tuple(tuple(int(v) for v in q) for q in p)

    def compute_output_shape(self, input_shape):
        H, W, C = _image_shape(self, input_shape)
        (t, b), (left, r) = self.padding
        return (t + H + b, left + W + r, C)

    def forward(self, x, training=False, ctx=DEFAULT):
        x = as_input(self, x, rank=4, check_finite=ctx.check_finite)
        out = np.pad(x, ((0, 0), *self.padding, (0, 0)))
        self._cache = (x.shape, out.shape)
        return out

    def backward(self, dout, ctx=DEFAULT):
        x_shape, y_shape = cached(self)
        dout = as_grad(self, dout, y_shape, ctx.check_finite)
        (t, _), (left, _) = self.padding
        return np.ascontiguousarray(dout[:, t:t + x_shape[1], left:left + x_shape[2], :])

    def get_config(self):
        return {"padding": to_list(self.padding), **super().get_config()}


class Reshape(Layer):
    """Give each sample another shape with the same number of values, in C order (Keras's
    channels-last ``Reshape``): ``(N, *input_shape) -> (N, *target_shape)``.

    One entry of ``target_shape`` may be -1: it becomes whatever makes the sizes agree.

    >>> import numpy as np
    >>> Reshape((4, -1)).forward(np.zeros((2, 2, 2, 3))).shape
    (2, 4, 3)
    """

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        shape = tuple(target_shape) if isinstance(target_shape, (tuple, list)) else None
        if not shape or not all(is_int(d) and (d >= 1 or d == -1) for d in shape) \
                or sum(d == -1 for d in shape) > 1:
            raise ValueError(f"target_shape must be a non-empty tuple of positive ints, with at "
                             f"most one -1 (no batch axis), got {target_shape!r}")
        self.target_shape = tuple(int(d) for d in shape)

    def compute_output_shape(self, input_shape):
        size = int(np.prod(sample_shape(self, input_shape), dtype=np.int64))
        known = int(np.prod([d for d in self.target_shape if d != -1], dtype=np.int64))
        if -1 in self.target_shape:
            if size % known:
                raise ShapeError(f"{describe(self)} cannot reshape samples of shape "
                                 f"{tuple(input_shape)} ({size} values) to "
                                 f"{self.target_shape}: {size} is not a multiple of {known}")
            return tuple(size // known if d == -1 else d for d in self.target_shape)
        if known != size:
            raise ShapeError(f"{describe(self)} cannot reshape samples of shape "
                             f"{tuple(input_shape)} ({size} values) to {self.target_shape} "
                             f"({known} values)")
        return self.target_shape

    def forward(self, x, training=False, ctx=DEFAULT):
        x = as_input(self, x, check_finite=ctx.check_finite)
        if x.shape[1:] != self.input_shape:
            raise ShapeError(f"{describe(self)} was built for samples of shape "
                             f"{self.input_shape}, got batch shape {x.shape}")
        out = x.reshape((x.shape[0],) + self.output_shape)
        self._cache = (x.shape, out.shape)
        return out

    def backward(self, dout, ctx=DEFAULT):
        x_shape, y_shape = cached(self)
        return as_grad(self, dout, y_shape, ctx.check_finite).reshape(x_shape)

    def get_config(self):
        return {"target_shape": list(self.target_shape), **super().get_config()}


def interpolation_matrix(n, factor, interpolation):
    """The ``(n * factor, n)`` matrix ``R`` that upsamples one axis: ``out = R @ in``.

    * ``"nearest"``: output row i copies input row ``i // factor``;
    * ``"bilinear"`` (Keras 3's ``ops.image.resize``, half-pixel centres): output row i sits at
      input coordinate ``s = (i + 0.5) / factor - 0.5`` (clamped to >= 0) and mixes rows
      ``floor(s)`` and ``floor(s) + 1`` (clamped to the last row) with weights
      ``1 - frac(s)`` and ``frac(s)``.

    >>> interpolation_matrix(2, 2, "bilinear")
    array([[1.  , 0.  ],
           [0.75, 0.25],
           [0.25, 0.75],
           [0.  , 1.  ]])
    """
    rows = np.arange(n * factor)
    R = np.zeros((n * factor, n))
    if interpolation == "nearest":
        R[rows, rows // factor] = 1
        return R
    s = np.maximum((rows + 0.5) / factor - 0.5, 0)
    i0 = np.minimum(np.floor(s).astype(np.int64), n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    w1 = s - i0
    np.add.at(R, (rows, i0), 1 - w1)
    np.add.at(R, (rows, i1), w1)
    return R


class UpSampling2D(Layer):
    """Enlarge each image by integer factors: ``(N, H, W, C) -> (N, H * fh, W * fw, C)``.

    * ``interpolation="nearest"``: every value is repeated into an ``fh x fw`` block; backward
      sums each block of the gradient.
    * ``"bilinear"``: as Keras 3 (``ops.image.resize``, half-pixel centres, edges clamped).
      Upsampling is linear and separable, ``y[n, :, :, c] = Rh @ x[n, :, :, c] @ Rw.T`` with
      the matrices of ``interpolation_matrix``, so backward is ``Rh.T @ dout @ Rw``.

    Parameters
    ----------
    size : int or (int, int), default (2, 2)
    interpolation : {"nearest", "bilinear"}, default "nearest"

    >>> import numpy as np
    >>> x = np.array([[1.0, 2.0]]).reshape(1, 1, 2, 1)
    >>> UpSampling2D((1, 2)).forward(x)[0, :, :, 0]
    array([[1., 1., 2., 2.]], dtype=float32)
    >>> UpSampling2D((1, 2), interpolation="bilinear").forward(x)[0, :, :, 0]
    array([[1.  , 1.25, 1.75, 2.  ]], dtype=float32)
    """

    def __init__(self, size=(2, 2), interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        self.size = _positive_pair(size, "size")
        if interpolation not in ("nearest", "bilinear"):
            raise ValueError(f"interpolation must be 'nearest' or 'bilinear', got "
                             f"{interpolation!r}")
        self.interpolation = interpolation

    def compute_output_shape(self, input_shape):
        H, W, C = _image_shape(self, input_shape)
        return (H * self.size[0], W * self.size[1], C)

    def forward(self, x, training=False, ctx=DEFAULT):
        x = as_input(self, x, rank=4, check_finite=ctx.check_finite)
        fh, fw = self.size
        if self.interpolation == "nearest":
            out = np.repeat(np.repeat(x, fh, axis=1), fw, axis=2)
            self._cache = (x.shape, out.shape, None)
            return out
        Rh = interpolation_matrix(x.shape[1], fh, "bilinear").astype(x.dtype)
        Rw = interpolation_matrix(x.shape[2], fw, "bilinear").astype(x.dtype)
        out = np.einsum("ih,nhwc,jw->nijc", Rh, x, Rw, optimize=True)
        self._cache = (x.shape, out.shape, (Rh, Rw))
        return np.ascontiguousarray(out)

    def backward(self, dout, ctx=DEFAULT):
        x_shape, y_shape, matrices = cached(self)
        dout = as_grad(self, dout, y_shape, ctx.check_finite)
        N, H, W, C = x_shape
        if matrices is None:
            fh, fw = self.size
            return dout.reshape(N, H, fh, W, fw, C).sum(axis=(2, 4))
        Rh, Rw = matrices
        return np.ascontiguousarray(np.einsum("ih,nijc,jw->nhwc", Rh, dout, Rw, optimize=True))

    def get_config(self):
        return {"size": list(self.size), "interpolation": self.interpolation,
                **super().get_config()}
