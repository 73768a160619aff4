"""``CallContext``: the modes of one call of a layer, passed down as an argument.

A model runs its layers in several ways: for a prediction (graph passes such as
``conv_max_pool``, which only inference can use), for an evaluation (the output layer
returning logits to a loss that fuses its softmax), for a training step (no gradient for the
model input, graph passes such as ``relu_after_pooling``).  Those modes are the caller's, for
that call: the graph hands each layer an immutable context, ``forward(x, training, ctx=...)``
and ``backward(dout, ctx=...)``, instead of setting attributes on the layer and restoring them
afterwards -- a ``predict`` made from a callback in the middle of ``fit`` would see those.
"""
import dataclasses
import functools
import inspect

__all__ = ["CallContext", "DEFAULT", "honours", "takes_context"]


@dataclasses.dataclass(frozen=True)
class CallContext:
    """How one call of a layer runs: modes the caller decides and passes down as an argument.

    A model makes one (immutable) context per layer and per kind of call (inference,
    evaluation, training step) and passes it as ``forward(x, training, ctx=...)`` and
    ``backward(dout, ctx=...)`` to the layers whose methods take ``ctx``; layers written with
    the plain ``forward(x, training=False)`` are called that way and run with the defaults.
    Nothing is set on a layer, so a call made from inside another (``predict`` in a callback
    during ``fit``) runs with its own modes.  Called directly, a layer uses ``DEFAULT``.

    Attributes
    ----------
    check_finite : bool, default True
        Scan the input (and, in backward, ``dout``) for NaN/inf.  A model checks its input
        once and turns this off, so no batch is scanned twice.
    return_logits : bool, default False
        Skip the activation and return the pre-activation ``z``; backward then skips the
        activation's derivative.  A model asks this of its output layer when the loss fuses
        softmax (sigmoid) with cross-entropy: ``dL/dz = (softmax(z) - y) / N``.
    defer_relu : bool, default False
        Skip a ReLU activation: the pooling layer that alone reads this layer's output applies
        it instead (the graph pass ``relu_after_pooling`` of ``cytorch.graph_passes``).
    apply_relu : bool, default False
        (max and min pooling) apply ReLU to the pooled output and its derivative to the
        gradient: the other half of ``relu_after_pooling``.
    input_grad : bool, default True
        Whether backward must return dL/dx; False for a layer that reads only model inputs,
        whose gradient nobody uses (``Conv2D`` then skips computing it and returns None).
    reuse_buffers : bool, default False
        The layer may write what it returns (its output, dL/dx) into buffers it keeps and
        hands out again at its next call of the same shape (``Layer._buffers``): a training
        step of ``fit``, whose arrays nobody keeps past the step, and ``predict``, which
        copies each batch's output into its result.  Never for a call whose result a user
        receives (``predict_on_batch``, a layer called on its own).
    inference : bool, default False
        No backward pass follows this forward (``predict``, ``evaluate``): the layer may skip
        what only backward reads and keep no cache.  Max and min pooling then record no
        winners and apply a ``relu_after_pooling`` ReLU inside their kernel (no mask).
    fuse_max_pool : bool, default False
        (``Conv2D``, inference only) return the 2x2 max pooling of the output, conv and
        pooling in one call (``cytorch.functional.conv2d_max_pool2d_forward``): the
        ``MaxPooling2D`` that alone reads the output passes the result on (the graph pass
        ``conv_max_pool`` of ``cytorch.graph_passes``).  The layer's own activation applies,
        a deferred ReLU included: the fused call puts it after the pooling itself.
    pooled_by_input : bool, default False
        (``MaxPooling2D``) return the input as it is: the layer before pooled it already (the
        other half of ``conv_max_pool``).

    >>> CallContext(return_logits=True).check_finite
    True
    """

    check_finite: bool = True
    return_logits: bool = False
    defer_relu: bool = False
    apply_relu: bool = False
    input_grad: bool = True
    reuse_buffers: bool = False
    inference: bool = False
    fuse_max_pool: bool = False
    pooled_by_input: bool = False

    def replace(self, **changes):
        """A copy with ``changes`` (the context itself never changes)."""
        return dataclasses.replace(self, **changes)


#: the context of a layer called on its own: check the input, apply the activation, compute dx
DEFAULT = CallContext()


@functools.lru_cache(maxsize=None)
def takes_context(method):
    """Whether a layer method (a function) accepts a ``ctx`` argument."""
    try:
        return "ctx" in inspect.signature(method).parameters
    except (TypeError, ValueError):  # a builtin or C method without a signature
        return False


def honours(layer, mode):
    """Whether ``layer`` acts on the ``CallContext`` mode ``mode``: it lists it in its
    ``context_modes`` and both its forward and its backward take ``ctx``."""
    cls = type(layer)
    return mode in layer.context_modes and takes_context(cls.forward) \
        and takes_context(cls.backward)
