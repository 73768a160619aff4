"""Merge layers: ``Add``, ``Multiply``, ``Subtract``, ``Average``, ``Maximum`` and
``Concatenate`` join several branches of a functional ``Model``.

They take a list of inputs (``n_inputs = None``): ``build`` and ``compute_output_shape`` get a
list of sample shapes, ``forward`` a list of batches, and ``backward`` returns a list of
gradients, one per input::

    i = Input((8, 8, 1))
    x = Conv2D(4, 3, padding="same")(i)
    y = Add()([x, Conv2D(4, 1)(i)])          # a residual (skip) connection
"""
import numpy as np

from .._checks import is_int
from ..errors import ShapeError
from ._common import as_grad, as_input, cached, describe
from .base import Layer
from .context import DEFAULT

__all__ = ["Add", "Concatenate", "Multiply", "Subtract", "Average", "Maximum"]


class _Merge(Layer):
    n_inputs = None

    def _check_shapes(self, input_shapes):
        if not isinstance(input_shapes, (list, tuple)) or len(input_shapes) < 2 \
                or not all(isinstance(s, (list, tuple)) for s in input_shapes):
            raise ShapeError(f"{describe(self)} merges a list of at least 2 inputs, got "
                             f"{input_shapes!r}")
        return [tuple(int(d) for d in s) for s in input_shapes]

    def build(self, input_shape):
        super().build([tuple(s) for s in self._check_shapes(input_shape)])

    def _inputs(self, xs, ctx):
        if not isinstance(xs, (list, tuple)) or len(xs) < 2:
            raise TypeError(f"{describe(self)}.forward expects a list of at least 2 batches, "
                            f"got {type(xs).__name__}")
        if not self.built:
            self.build([np.shape(x)[1:] for x in xs])
        if len(xs) != len(self.input_shape):
            raise ShapeError(f"{describe(self)} was built for {len(self.input_shape)} inputs, "
                             f"got {len(xs)}")
        xs = [as_input(self, x, check_finite=ctx.check_finite) for x in xs]
        for k, (x, shape) in enumerate(zip(xs, self.input_shape)):
            if x.shape[1:] != shape or x.shape[0] != xs[0].shape[0]:
                raise ShapeError(f"{describe(self)}: input {k} has shape {x.shape}, expected "
                                 f"({xs[0].shape[0]}, {', '.join(map(str, shape))})")
        return xs


class Add(_Merge):
    """Elementwise sum of inputs of one shape; backward hands ``dout`` to every input
    (d(a + b)/da = d(a + b)/db = 1)."""

    def compute_output_shape(self, input_shape):
        shapes = self._check_shapes(input_shape)
        if any(s != shapes[0] for s in shapes):
            raise ShapeError(f"{describe(self)} adds inputs of one shape, got "
                             f"{', '.join(map(str, shapes))}")
        return shapes[0]

    def forward(self, xs, training=False, ctx=DEFAULT):
        xs = self._inputs(xs, ctx)
        out = xs[0] + xs[1]
        for x in xs[2:]:
            out += x
        self._cache = (len(xs), out.shape)
        return out

    def backward(self, dout, ctx=DEFAULT):
        n, shape = cached(self)
        dout = as_grad(self, dout, shape, ctx.check_finite)
        # the same array for every input: callers add gradients into fresh arrays
        return [dout] * n


class Concatenate(_Merge):
    """Join inputs along ``axis`` (default -1: the channels of ``(N, H, W, C)`` maps or the
    features of ``(N, F)`` vectors); all other axes must agree.  Backward splits ``dout``
    back into the inputs' pieces.

    ``axis`` counts the batch axis, as in Keras: for 4-D batches -1 and 3 are the channels;
    the batch axis (0) cannot be concatenated.
    """

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if not is_int(axis):
            raise TypeError(f"axis must be an int, got {axis!r}")
        self.axis = int(axis)

    def _sample_axis(self, rank):
        """The axis within one sample's shape (``rank`` = its number of axes)."""
        axis = self.axis + rank + 1 if self.axis < 0 else self.axis
        if not 1 <= axis <= rank:
            raise ShapeError(f"{describe(self)}: axis={self.axis} is not a non-batch axis of "
                             f"{rank + 1}-D batches (use 1..{rank} or -{rank}..-1)")
        return axis - 1

    def compute_output_shape(self, input_shape):
        shapes = self._check_shapes(input_shape)
        rank = len(shapes[0])
        if any(len(s) != rank for s in shapes):
            raise ShapeError(f"{describe(self)} joins inputs of one rank, got "
                             f"{', '.join(map(str, shapes))}")
        a = self._sample_axis(rank)
        rest = [s[:a] + s[a + 1:] for s in shapes]
        if any(r != rest[0] for r in rest):
            raise ShapeError(f"{describe(self)} joins along axis {self.axis}; the other axes "
                             f"must agree, got {', '.join(map(str, shapes))}")
        return shapes[0][:a] + (sum(s[a] for s in shapes),) + shapes[0][a + 1:]

    def forward(self, xs, training=False, ctx=DEFAULT):
        xs = self._inputs(xs, ctx)
        axis = self._sample_axis(xs[0].ndim - 1) + 1
        out = np.concatenate(xs, axis=axis)
        self._cache = (axis, np.cumsum([x.shape[axis] for x in xs[:-1]]), out.shape)
        return out

    def backward(self, dout, ctx=DEFAULT):
        axis, splits, shape = cached(self)
        return np.split(as_grad(self, dout, shape, ctx.check_finite), splits, axis=axis)

    def get_config(self):
        return {"axis": self.axis, **super().get_config()}


class _Elementwise(_Merge):
    """Merges of inputs of one shape, combined value by value."""

    def compute_output_shape(self, input_shape):
        shapes = self._check_shapes(input_shape)
        if any(s != shapes[0] for s in shapes):
            raise ShapeError(f"{describe(self)} combines inputs of one shape, got "
                             f"{', '.join(map(str, shapes))}")
        return shapes[0]


class Multiply(_Elementwise):
    """Elementwise product of inputs of one shape (e.g. a gate times a feature map).

    ``y = x_1 * x_2 * ... * x_n``; backward: ``dx_k = dout * prod_{j != k} x_j``.
    """

    def forward(self, xs, training=False, ctx=DEFAULT):
        xs = self._inputs(xs, ctx)
        out = xs[0] * xs[1]
        for x in xs[2:]:
            out *= x
        self._cache = (xs, out.shape)
        return out

    def backward(self, dout, ctx=DEFAULT):
        xs, shape = cached(self)
        dout = as_grad(self, dout, shape, ctx.check_finite)
        grads = []
        for k in range(len(xs)):   # products of the others (no division: an input may be 0)
            g = dout.copy()
            for j, x in enumerate(xs):
                if j != k:
                    g *= x
            grads.append(g)
        return grads


class Subtract(_Elementwise):
    """``y = x_1 - x_2`` for exactly two inputs of one shape (as Keras); backward gives
    ``dout`` to the first and ``-dout`` to the second."""

    def _check_shapes(self, input_shapes):
        shapes = super()._check_shapes(input_shapes)
        if len(shapes) != 2:
            raise ShapeError(f"{describe(self)} subtracts exactly 2 inputs, got {len(shapes)}")
        return shapes

    def forward(self, xs, training=False, ctx=DEFAULT):
        xs = self._inputs(xs, ctx)
        out = xs[0] - xs[1]
        self._cache = out.shape
        return out

    def backward(self, dout, ctx=DEFAULT):
        dout = as_grad(self, dout, cached(self), ctx.check_finite)
        return [dout, -dout]


class Average(_Elementwise):
    """Elementwise mean of the n inputs, ``y = sum_i(x_i) / n``; every input gets
    ``dout / n``."""

    def forward(self, xs, training=False, ctx=DEFAULT):
        xs = self._inputs(xs, ctx)
        out = xs[0] + xs[1]
        for x in xs[2:]:
            out += x
        out /= len(xs)
        self._cache = (len(xs), out.shape)
        return out

    def backward(self, dout, ctx=DEFAULT):
        n, shape = cached(self)
        g = as_grad(self, dout, shape, ctx.check_finite) / n
        return [g] * n   # one array for every input: callers add gradients into fresh arrays


class Maximum(_Elementwise):
    """Elementwise maximum of the inputs; the gradient goes to the input that holds the
    maximum (on ties, to the first of them, as max pooling's ties go to the first cell)."""

    def forward(self, xs, training=False, ctx=DEFAULT):
        xs = self._inputs(xs, ctx)
        winner = np.zeros(xs[0].shape, dtype=np.intp)
        out = xs[0].copy()
        for k, x in enumerate(xs[1:], start=1):
            better = x > out          # strictly: ties keep the earlier input
            out = np.where(better, x, out)
            winner[better] = k
        self._cache = (len(xs), winner)
        return out

    def backward(self, dout, ctx=DEFAULT):
        n, winner = cached(self)
        dout = as_grad(self, dout, winner.shape, ctx.check_finite)
        return [np.where(winner == k, dout, 0).astype(dout.dtype, copy=False)
                for k in range(n)]
