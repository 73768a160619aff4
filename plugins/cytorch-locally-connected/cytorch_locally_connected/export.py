"""The ONNX converter of ``LocallyConnected2D``, registered in the ``cytorch.onnx`` entry-point
group (``pyproject.toml``), so ``cytorch.export.to_onnx`` exports models that use the layer.

ONNX has no locally connected operator, but the layer is two standard steps, the same two as
its NumPy twin (``reference.py``):

1. **unfold**: the ``kh x kw x C`` window under every output position, flattened in
   ``(kh, kw, C)`` order, as ``P = kh*kw*C`` channels.  A ``Conv`` with an *identity kernel*
   does it: ``P`` filters, filter ``p = (a*kw + b)*C + c`` holding a single 1 at tap
   ``(a, b)`` of channel ``c``.  Each output is then one input value times 1 plus zeros, which
   is exact in floating point; the layer's strides and padding (zeros, as cytorch pads) are the
   ``Conv``'s own.  Result ``(N, P, H_out, W_out)``.
2. **one matrix per position**: with the ``L = H_out*W_out`` positions as the batch of a
   ``MatMul``, ``(L, N, P) @ kernel (L, P, K) -> (L, N, K)``, then back to
   ``(N, H_out, W_out, K)``, plus the bias ``(H_out, W_out, K)`` and the activation.

(The identity ``Conv`` spends ``P*P`` multiply-adds per position on copying; ``kh*kw``
``Slice`` nodes joined by a ``Concat`` would copy for free but draw a much larger graph in
Netron.  For the image sizes this layer is used on, one node wins.)
"""
import numpy as np
from cytorch.checks import resolve_padding

__all__ = ["locally_connected2d_to_onnx"]


def identity_kernel(kh, kw, C):
    """The ``(kh*kw*C, C, kh, kw)`` ONNX ``Conv`` weights whose output channel
    ``p = (a*kw + b)*C + c`` copies input channel ``c`` at window tap ``(a, b)``.

    >>> identity_kernel(1, 2, 1)[:, 0]        # two taps of one channel: left, then right
    array([[[1., 0.]],
    <BLANKLINE>
           [[0., 1.]]], dtype=float32)
    """
    P = kh * kw * C
    kernel = np.zeros((P, C, kh, kw), dtype=np.float32)
    for a in range(kh):
        for b in range(kw):
            for c in range(C):
                kernel[(a * kw + b) * C + c, c, a, b] = 1
    return kernel


def locally_connected2d_to_onnx(layer, inputs, graph):
    """``LocallyConnected2D`` as ONNX nodes: an identity-kernel ``Conv`` that unfolds the
    windows, a ``MatMul`` batched over positions, the bias and the activation (see the module
    docstring).  ``converter(layer, inputs, graph) -> output``, as every converter."""
    H, W, C = layer.input_shape
    H_out, W_out, K = layer.output_shape
    kh, kw = layer.kernel_size
    P, L = kh * kw * C, H_out * W_out
    pt, pb, pl, pr = resolve_padding(layer.padding, H, W, kh, kw, *layer.strides)
    cols = graph.node("Conv", [graph.channels_first(inputs[0]),
                               graph.constant(identity_kernel(kh, kw, C), "unfold")],
                      hint="unfold", kernel_shape=[kh, kw], strides=list(layer.strides),
                      pads=[pt, pl, pb, pr])                                 # (N, P, Ho, Wo)
    cols = graph.node("Reshape", [cols, graph.constant(np.array([-1, P, L]), "shape")])
    cols = graph.node("Transpose", [cols], perm=[2, 0, 1])                   # (L, N, P)
    kernel = graph.constant(layer.params["kernel"].reshape(L, P, K), "kernel")
    z = graph.node("Transpose", [graph.node("MatMul", [cols, kernel])], perm=[1, 0, 2])
    z = graph.node("Reshape", [z, graph.constant(np.array([-1, H_out, W_out, K]), "shape")])
    if layer.use_bias:
        z = graph.node("Add", [z, graph.constant(layer.params["bias"], "bias")])
    return graph.activation(z, layer.activation)
