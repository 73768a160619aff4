"""Small helpers shared by the built-in layers: input checks and the ``activation=`` argument."""
import numbers

import numpy as np

from .. import activations, random
from ..errors import ShapeError
from ..functional import as_float_array
from .context import DEFAULT

_LINEAR = activations.get("linear")
_RELU = activations.get("relu")


def describe(layer):
    """``Conv2D 'conv2d_1'``: how messages name a layer."""
    return f"{type(layer).__name__} '{layer.name}'"


def to_list(value):
    """Tuples become lists, recursively, so a config survives a JSON round trip unchanged."""
    if isinstance(value, (tuple, list)):
        return [to_list(v) for v in value]
    return value


def check_bool(value, name):
    """``value`` if it is a bool (Python's or NumPy's), else TypeError: ``"no"`` is not False."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def check_seed(seed):
    """A layer's ``seed=``, checked by ``cytorch.random.check_seed`` in the constructor (not at
    the first forward pass); a NumPy int becomes an int, so the config stays JSON-able."""
    seed = random.check_seed(seed)
    return int(seed) if isinstance(seed, numbers.Integral) else seed


def sample_shape(layer, input_shape):
    """The shape of one sample (no batch axis) as a tuple of ints, checked: every axis >= 1,
    so no layer builds empty weights."""
    shape = tuple(input_shape)
    if not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 1
               for d in shape):
        raise ShapeError(f"{describe(layer)} needs a sample shape of positive ints (no batch "
                         f"axis), got {shape}")
    return tuple(int(d) for d in shape)


def as_input(layer, x, rank=None, check_finite=True, hint=""):
    """``x`` as a C-contiguous array of the layer's dtype, built on first use, checked.

    Checks the rank (``rank`` counts the batch axis) and, once a layer with parameters is built,
    the trailing axis (channels or features) its parameters were made for.  ``check_finite``
    comes from the call's context (a model turns it off after checking its input once);
    checking here, before any kernel, lets the message name the layer.
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


_LAYOUTS = {4: "(N, H, W, C) channels-last", 2: "(N, features)"}


def cached(layer):
    """The layer's forward cache; a clear error when backward comes before any forward."""
    if layer._cache is None:
        raise RuntimeError(f"{describe(layer)}: call forward(x, training=True) before backward")
    return layer._cache


def as_grad(layer, dout, shape, check_finite=True):
    """``dout`` as a C-contiguous array of the layer's dtype and of the forward output's
    ``shape``, checked like an input (real numbers; no NaN/inf when ``check_finite``)."""
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


class ActivationMixin:
    """The ``activation=`` argument of Dense, Conv2D and Activation, and the context modes that
    concern it.

    Under ``ctx.return_logits`` forward returns the pre-activation values and backward skips
    the activation's derivative: a model asks this of its output layer when the loss applies a
    numerically stable softmax itself (fused softmax + cross-entropy: the gradient of the pair
    is just ``softmax(z) - onehot(y)``).  Under ``ctx.defer_relu`` a ReLU is skipped because
    the max or min pooling layer after it applies it, on its smaller map.
    """

    context_modes = frozenset({"return_logits", "defer_relu"})

    def _init_activation(self, activation):
        self._activation = activations.get(activation)
        self.activation = self._activation.name

    def _activate(self, z, inplace, ctx=DEFAULT):
        """Apply the activation (or not, under ``ctx.return_logits`` or ``ctx.defer_relu``);
        returns (function, y), the function being what backward differentiates.

        ``inplace``: ``z`` is a temporary the layer owns and may be overwritten."""
        act = _LINEAR if ctx.return_logits else self._activation
        if act is _RELU and ctx.defer_relu:
            act = _LINEAR
        if act.from_input:   # gelu, silu: backward reads z itself, so z must survive
            return act.bind(z), act.forward(z)
        return act, act.forward(z, out=z if inplace else None)
