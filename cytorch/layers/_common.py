"""Small helpers shared by the built-in layers and the ``activation=`` argument.

The input checks (``as_input``, ``as_grad``, ``describe``, ``check_bool``) are public, in
``cytorch.checks``, so that plugins check their input exactly as the built-ins do.
"""
import numbers

import numpy as np

from .. import activations, random
from .._checks import is_int
from ..checks import as_grad, as_input, check_bool, describe  # noqa: F401  (the layers' helpers)
from ..errors import ShapeError
from .context import DEFAULT

_LINEAR = activations.get("linear")
_RELU = activations.get("relu")


def to_list(value):
    """Tuples become lists, recursively, so a config survives a JSON round trip unchanged."""
    if isinstance(value, (tuple, list)):
        return [to_list(v) for v in value]
    return value


def check_seed(seed):
    """A layer's ``seed=``, checked by ``cytorch.random.check_seed`` in the constructor (not at
    the first forward pass); a NumPy int becomes an int, so the config stays JSON-able."""
    seed = random.check_seed(seed)
    return int(seed) if isinstance(seed, numbers.Integral) else seed


def sample_shape(layer, input_shape):
    """The shape of one sample (no batch axis) as a tuple of ints, checked: every axis >= 1,
    so no layer builds empty weights."""
    shape = tuple(input_shape)
    if not all(is_int(d) and d >= 1 for d in shape):
        raise ShapeError(f"{describe(layer)} needs a sample shape of positive ints (no batch "
                         f"axis), got {shape}")
    return tuple(int(d) for d in shape)


def cached(layer):
    """The layer's forward cache; a clear error when backward comes before any forward."""
    if layer._cache is None:
        raise RuntimeError(f"{describe(layer)}: call forward(x, training=True) before backward")
    return layer._cache


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

    def _call_activation(self, ctx):
        """The activation this call applies: the layer's, or linear under
        ``ctx.return_logits`` (or ``ctx.defer_relu`` for a ReLU)."""
        act = _LINEAR if ctx.return_logits else self._activation
        if act is _RELU and ctx.defer_relu:
            act = _LINEAR
        return act

    def _kernel_activation(self, ctx, names):
        """The name of the activation this call applies when a kernel can apply it itself
        (it is one of ``names``, with the parameters of its name), else None: the layer then
        calls ``_activate`` on the kernel's output."""
        act = self._call_activation(ctx)
        known = activations.get(act.name)  # the registry's function of that name
        return act.name if act.name in names and act is known else None

    def _activate(self, z, inplace, ctx=DEFAULT):
        """Apply the activation (or not, under ``ctx.return_logits`` or ``ctx.defer_relu``);
        returns (function, y), the function being what backward differentiates.

        ``inplace``: ``z`` is a temporary the layer owns and may be overwritten."""
        act = self._call_activation(ctx)
        if act.from_input:   # gelu, silu: backward reads z itself, so z must survive
            return act.bind(z), act.forward(z)
        return act, act.forward(z, out=z if inplace else None)
