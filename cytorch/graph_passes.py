"""Graph passes: rewrites of how a model runs its graph that change none of its numbers.

A pass reads a model's graph (its nodes in topological order and its output nodes) and returns
``{node id: {CallContext mode: value}}``: the modes some layers get in each run of the graph by
``fit``, ``evaluate`` and ``predict``, on top of the run's own (no NaN scans, logits for a fused
loss).  Nothing is set on the layers, so a layer called on its own computes what it computes
on its own.  A model applies the passes named in its ``graph_passes`` attribute (all of these
by default); ``model.graph_passes = ()`` runs the plain graph, for stepping through or
comparing.

relu_after_pooling
    A ReLU whose output only a max or min pooling layer reads (conv -> relu -> max-pool, as in
    Keras-MNIST) is applied after the pooling: the layer skips it (``defer_relu``) and the
    pooling layer applies ReLU to its output and ReLU's derivative to its gradient
    (``apply_relu``), on a map 4x smaller for 2x2 windows.  ReLU is monotone, so it commutes
    with max and min: ``max(relu(z)) = relu(max(z))``, and the mask ``[y > 0]`` at a window's
    winner is ``[out > 0]``.  Same outputs, same gradients, bit for bit (the tests train with
    and without it).  Only ReLU: a derivative other than 0 or 1 (tanh's ``1 - y**2``) would
    round differently where windows overlap.

conv_max_pool (inference only: ``predict``, ``evaluate``)
    A ``Conv2D`` whose output only a ``MaxPooling2D`` with 2x2 windows, stride 2 and no
    padding reads returns that pooling itself (``fuse_max_pool``), and the pooling layer passes
    it on (``pooled_by_input``): ``cytorch.functional.conv2d_max_pool2d_forward`` pools each
    image's conv output while it is in the CPU's cache, so the full map is never written to
    memory and read back.  Only where the conv runs the blocked path, which has the fused kernel
    (``conv2d_max_pool2d_fused``: keras_mnist's two convs); same numbers, bit for bit.  A
    training step keeps the two layers: backward needs the conv's output.  A pass marked
    ``inference_only`` runs only for calls that no backward follows.
"""
import collections

from ._shapes import resolve_padding
from .functional import CONV2D_ACTIVATIONS, conv2d_max_pool2d_fused
from .layers.context import honours

__all__ = ["relu_after_pooling", "conv_max_pool", "PASSES", "get"]


def relu_after_pooling(nodes, outputs):
    """``{layer node: {"defer_relu": True}, pool node: {"apply_relu": True}}`` for every max or
    min pooling layer whose input is the ReLU output of a layer that nothing else reads.

    Both layers must act on these modes (``cytorch.layers.context.honours``), the layer's ``activation`` must be ``"relu"``, and the layer's output
    must not be a model output."""
    readers = collections.Counter(inp.id for node in nodes for inp in node.inputs)
    output_ids = {node.id for node in outputs}
    changes = {}
    for node in nodes:
        if not honours(node.layer, "apply_relu") or len(node.inputs) != 1:
            continue
        (source,) = node.inputs
        layer = source.layer
        if (not source.is_source and honours(layer, "defer_relu")
                and getattr(layer, "activation", None) == "relu"
                and readers[source.id] == 1 and source.id not in output_ids):
            changes[source.id] = {"defer_relu": True}
            changes[node.id] = {"apply_relu": True}
    return changes


def conv_max_pool(nodes, outputs):
    """``{conv node: {"fuse_max_pool": True}, pool node: {"pooled_by_input": True}}`` for every
    2x2, stride-2, unpadded max pooling layer whose input is the output of a conv that nothing
    else reads, when the conv runs the blocked path (``conv2d_max_pool2d_fused``) with an
    activation the kernel applies itself.  Inference only: backward needs the conv's output."""
    readers = collections.Counter(inp.id for node in nodes for inp in node.inputs)
    output_ids = {node.id for node in outputs}
    changes = {}
    for node in nodes:
        pool = node.layer
        if not honours(pool, "pooled_by_input") or len(node.inputs) != 1:
            continue
        (source,) = node.inputs
        conv = source.layer
        if (source.is_source or not honours(conv, "fuse_max_pool") or readers[source.id] != 1
                or source.id in output_ids or len(source.inputs) != 1):
            continue
        H, W = source.shape[:2]
        if (tuple(pool.pool_size) != (2, 2) or tuple(pool.strides) != (2, 2)
                or resolve_padding(pool.padding, H, W, 2, 2, 2, 2) != (0, 0, 0, 0)
                or getattr(conv, "activation", None) not in CONV2D_ACTIVATIONS):
            continue
        x_shape = (1,) + tuple(source.inputs[0].shape)
        if conv2d_max_pool2d_fused(x_shape, conv.params["kernel"].shape, conv.strides,
                                   conv.padding, conv.dilation_rate, conv.dtype):
            changes[source.id] = {"fuse_max_pool": True}
            changes[node.id] = {"pooled_by_input": True}
    return changes


conv_max_pool.inference_only = True

#: the passes a model can apply, by name, in the order it applies them
PASSES = {"relu_after_pooling": relu_after_pooling, "conv_max_pool": conv_max_pool}


def get(name):
    """The pass called ``name``; KeyError listing the known ones."""
    try:
        return PASSES[name]
    except KeyError:
        raise KeyError(f"unknown graph pass {name!r}; known passes: {sorted(PASSES)}") from None
