"""Input checks for layer authors: the validators cytorch's own layers use, public.

A layer (built-in or a plugin's) checks what it is given before any kernel runs, and its error
names the layer, says what was expected and shows the numbers.  These functions do that the way
the built-in layers do, so a plugin's messages read like cytorch's own:

>>> import numpy as np
>>> from cytorch import Layer, ShapeError
>>> from cytorch.checks import as_input
>>> class Double(Layer):
...     def forward(self, x, training=False):
...         x = as_input(self, x, rank=4)        # dtype, contiguity, NaN, rank, build
...         return 2 * x
>>> try:
...     Double(name="d").forward(np.ones((2, 3)))
... except ShapeError as error:
...     print(error)
Double 'd' expects 4-D input (N, H, W, C) channels-last, got shape (2, 3)

What is here:

* layer input and gradient: ``as_input``, ``as_grad``, ``describe``;
* arrays: ``as_float_array``, ``as_batch``, ``common_dtype``, ``require_finite``;
* scalars: ``is_int``, ``check_int``, ``check_bool``;
* window arithmetic (conv-like and pooling-like layers): ``as_pair``, ``resolve_padding``,
  ``window_output_shape``, ``output_size``, ``unseen``.

Everything here is also what ``cytorch.functional`` and ``cytorch.reference`` use (the private
``cytorch._checks`` below them holds the rest: each kernel family's own checks).
"""
import numpy as np

from ._checks import (as_batch, as_float_array, as_pair, check_int, common_dtype, is_int,
                      output_size, require_finite, resolve_padding, unseen, window_output_shape)
from .errors import ShapeError

__all__ = ["as_input", "as_grad", "describe", "as_float_array", "as_batch", "common_dtype",
           "require_finite", "is_int", "check_int", "check_bool", "as_pair", "resolve_padding",
           "window_output_shape", "output_size", "unseen"]

_LAYOUTS = {4: "(N, H, W, C) channels-last", 2: "(N, features)"}


def describe(layer):
    """How messages name a layer: its class and its name.

    Parameters
    ----------
    layer : cytorch.Layer

    Returns
    -------
    str
        e.g. ``"Conv2D 'conv2d_1'"``.
    """
    return f"{type(layer).__name__} '{layer.name}'"


def check_bool(value, name):
    """``value`` if it is a bool (Python's or NumPy's), else TypeError naming ``name``.

    A string such as ``"no"`` is truthy; accepting it would silently mean True.

    Parameters
    ----------
    value : object
    name : str
        The argument's name, for the message.

    Returns
    -------
    bool
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def as_input(layer, x, rank=None, check_finite=True, hint=""):
    """A layer's input, checked and converted: what a ``forward`` starts with.

    Converts ``x`` to a C-contiguous array of ``layer.dtype`` (a no-op when it is one already),
    rejects complex, object and string data, NaN and inf (when ``check_finite``), a wrong rank
    and an empty batch; builds the layer for ``x.shape[1:]`` on first use; once a layer with
    parameters is built, checks the trailing axis (channels or features) they were made for.
    Every message names the layer.

    Parameters
    ----------
    layer : cytorch.Layer
        The layer being called (its ``dtype``, ``built``, ``build``, ``params``, ``input_shape``
        are used).
    x : array_like
        The batch, batch axis first: ``(N, H, W, C)`` for images, ``(N, features)`` for vectors.
    rank : int, optional
        The number of axes ``x`` must have, counting the batch axis (4 for images).
    check_finite : bool, default True
        Scan for NaN/inf.  Pass the ``check_finite`` of the call's ``CallContext``: a model
        checks its input once and then runs the layers with False.
    hint : str, optional
        Appended to the rank error, e.g. ``"; add a channel axis for grayscale images"``.

    Returns
    -------
    numpy.ndarray
        ``x`` as a C-contiguous array of the layer's dtype; the caller's array when it already
        is one (never modified).

    Raises
    ------
    cytorch.ShapeError
        Wrong rank, empty batch, or channels the built layer was not made for.
    TypeError, ValueError
        Non-real data; NaN or inf.
    """
    # Inside fit/predict, batches arrive checked, C-contiguous and in the layer's dtype: then
    # there is nothing to convert or scan, and the call is skipped (it runs once per batch).
    if check_finite or type(x) is not np.ndarray or x.dtype != layer.dtype \
            or not x.flags.c_contiguous:
        x = as_float_array(x, f"the input of {describe(layer)}", dtype=layer.dtype,
                           check_finite=check_finite)
    if rank is not None and x.ndim != rank:
        raise ShapeError(f"{describe(layer)} expects {rank}-D input "
                         f"{_LAYOUTS.get(rank, '')}, got shape {x.shape}{hint}")
    if x.ndim == 0 or x.size == 0:   # checked before build: no layer is built for a 0 axis
        raise ShapeError(f"{describe(layer)} got an empty batch: shape {x.shape} (every axis "
                         f"must be at least 1)")
    if not layer.built:
        layer.build(x.shape[1:])
    elif (layer.params or getattr(layer, "state", None)) and layer.n_inputs == 1 \
            and x.shape[-1] != layer.input_shape[-1]:
        what = "channels" if x.ndim == 4 else "features"
        raise ShapeError(f"{describe(layer)} was built for {layer.input_shape[-1]} {what} "
                         f"(input shape {layer.input_shape}), got {x.shape[-1]} "
                         f"(batch shape {x.shape})")
    return x


def as_grad(layer, dout, shape, check_finite=True):
    """The gradient a layer's ``backward`` receives, checked and converted.

    Parameters
    ----------
    layer : cytorch.Layer
    dout : array_like
        ``dL/dy``, shaped like the forward output.
    shape : tuple of int
        The forward output's shape (batch axis included).
    check_finite : bool, default True
        Scan for NaN/inf (pass the call context's ``check_finite``).

    Returns
    -------
    numpy.ndarray
        ``dout`` as a C-contiguous array of the layer's dtype.

    Raises
    ------
    cytorch.ShapeError
        ``dout`` does not have ``shape``.
    """
    # Inside fit the gradients come from the layers above, already of the layer's dtype and
    # contiguous, and check_finite is off: then there is nothing to do (once per batch)
    if check_finite or type(dout) is not np.ndarray or dout.dtype != layer.dtype \
            or not dout.flags.c_contiguous:
        dout = as_float_array(dout, f"the gradient passed to {describe(layer)}.backward",
                              dtype=layer.dtype, check_finite=check_finite)
    if dout.shape != shape:
        raise ShapeError(f"{describe(layer)}: the gradient passed to backward must have the "
                         f"forward output's shape {shape}, got {dout.shape}")
    return dout
