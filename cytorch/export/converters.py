"""The ONNX converters of cytorch's built-in layers, one function per layer.

Each is registered in the ``cytorch.onnx`` entry-point group under its layer's name (cytorch's
``pyproject.toml``, exactly as a plugin registers its own) and has the signature of every
converter (see ``cytorch.export.graph``)::

    converter(layer, inputs, graph) -> output

Images travel channels-last, as cytorch computes them; the converters that need ONNX's
channels-first ``Conv``/``MaxPool``/``Resize`` ask ``graph.channels_first`` for a twin, and
elementwise or per-channel layers (activations, batch normalization, padding, the merges) stay
in whichever layout their input already has.  The formulas are cytorch's, in cytorch's order of
operations, so ONNX Runtime gives the same float32 numbers up to rounding.
"""
import numpy as np

from .._shapes import resolve_padding
from ..errors import ExportError
from ..reference import batch_norm_coefficients

__all__ = ["activation", "input_layer", "dense", "flatten", "activation_layer", "identity",
           "conv2d", "max_pool2d", "avg_pool2d", "min_pool2d", "global_max_pool2d",
           "global_avg_pool2d", "global_min_pool2d", "add", "multiply", "subtract", "average",
           "maximum", "concatenate", "batch_normalization", "leaky_relu", "elu",
           "zero_padding2d", "reshape", "up_sampling2d", "depthwise_conv2d",
           "separable_conv2d"]

_SQRT_HALF = float(np.sqrt(0.5))


# -- activations ------------------------------------------------------------------------------
def activation(graph, x, name, channel_axis=-1):
    """``name`` (a name of ``cytorch.activations.names()``) applied to ``x``; softmax
    normalises over ``channel_axis``.  Keras's string defaults: leaky_relu slope 0.2, elu
    alpha 1, exact (erf) gelu."""
    from .. import activations
    name = activations.get(name).name    # "swish" -> "silu"; None -> "linear"
    simple = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid", "softplus": "Softplus"}
    if name == "linear":
        return x
    if name in simple:
        return graph.node(simple[name], [x])
    if name == "softmax":
        return graph.node("Softmax", [x], axis=channel_axis)
    if name == "leaky_relu":
        return graph.node("LeakyRelu", [x], alpha=0.2)
    if name == "elu":
        return graph.node("Elu", [x], alpha=1.0)
    if name == "gelu":   # 0.5 * x * (1 + erf(x / sqrt(2))), in cytorch's order
        erf = graph.node("Erf", [graph.node("Mul", [x, graph.constant(_SQRT_HALF, "sqrt_half")])])
        one_plus = graph.node("Add", [erf, graph.constant(1.0, "one")])
        return graph.node("Mul", [graph.node("Mul", [x, graph.constant(0.5, "half")]), one_plus])
    if name == "silu":   # x * sigmoid(x)
        return graph.node("Mul", [x, graph.node("Sigmoid", [x])])
    raise ExportError(f"no ONNX form for the activation {name!r}")


def _activate(layer, graph, y, channel_axis):
    return activation(graph, y, layer.activation, channel_axis)


# -- core ---------------------------------------------------------------------------------------
def input_layer(layer, inputs, graph):
    """``Input``: the identity (a model's inputs become the graph's inputs)."""
    return inputs[0]


def identity(layer, inputs, graph):
    """``Dropout``, ``SpatialDropout2D``: the identity at inference, so no node at all."""
    return inputs[0]


def dense(layer, inputs, graph):
    """``Dense``: ``Gemm(x, kernel, bias)`` (``MatMul`` without a bias), then the activation."""
    kernel = graph.constant(layer.params["kernel"], "kernel")
    if layer.use_bias:
        z = graph.node("Gemm", [inputs[0], kernel, graph.constant(layer.params["bias"], "bias")])
    else:
        z = graph.node("MatMul", [inputs[0], kernel])
    return _activate(layer, graph, z, -1)


def flatten(layer, inputs, graph):
    """``Flatten``: ONNX ``Flatten(axis=1)`` of the channels-last value, so the features come
    in cytorch's (and Keras's) order ``(h, w, c)`` and the next ``Dense`` kernel fits as it is."""
    return graph.node("Flatten", [inputs[0]], axis=1)


def activation_layer(layer, inputs, graph):
    """``Activation``: elementwise, in the layout its input has."""
    return graph.per_channel(inputs[0], lambda x, axis: _activate(layer, graph, x, axis))


def reshape(layer, inputs, graph):
    """``Reshape``: the channels-last value to ``(batch, *target_shape)``."""
    shape = graph.constant(np.array((-1,) + tuple(layer.output_shape)), "shape")
    return graph.node("Reshape", [inputs[0], shape])


# -- convolutions -------------------------------------------------------------------------------
def _pads(layer, kh, kw):
    """ONNX's ``pads`` ``[top, left, bottom, right]`` for the layer's input size (cytorch's
    "same" split is TensorFlow's, so it is written out, never ONNX's ``auto_pad``)."""
    H, W = layer.input_shape[:2]
    pt, pb, pl, pr = resolve_padding(layer.padding, H, W, kh, kw, *layer.strides)
    return [pt, pl, pb, pr]


def conv2d(layer, inputs, graph):
    """``Conv2D``: ONNX ``Conv`` on the channels-first twin; kernel ``(kh, kw, C, K)`` becomes
    ONNX's ``(K, C, kh, kw)``; explicit pads, strides and dilations; then the activation."""
    (kh, kw), (dh, dw) = layer.kernel_size, layer.dilation_rate
    kernel = graph.constant(layer.params["kernel"].transpose(3, 2, 0, 1), "kernel")
    args = [graph.channels_first(inputs[0]), kernel]
    if layer.use_bias:
        args.append(graph.constant(layer.params["bias"], "bias"))
    z = graph.node("Conv", args, kernel_shape=[kh, kw], strides=list(layer.strides),
                   dilations=[dh, dw], pads=_pads(layer, (kh - 1) * dh + 1, (kw - 1) * dw + 1))
    return graph.channels_last(_activate(layer, graph, z, 1))


def _depthwise(layer, graph, x, key):
    """The depthwise step: a grouped ``Conv`` (one group per input channel); kernel
    ``(kh, kw, C, dm)`` becomes ``(C * dm, 1, kh, kw)``, output channel ``c * dm + m`` as in
    cytorch and Keras; explicit pads, strides and dilations."""
    (kh, kw), (dh, dw) = layer.kernel_size, layer.dilation_rate
    w = layer.params[key]
    C, dm = w.shape[2], w.shape[3]
    kernel = graph.constant(w.transpose(2, 3, 0, 1).reshape(C * dm, 1, kh, kw), "depthwise")
    args = [graph.channels_first(x), kernel]
    if key == "kernel" and layer.use_bias:   # DepthwiseConv2D's own bias
        args.append(graph.constant(layer.params["bias"], "bias"))
    return graph.node("Conv", args, group=C, kernel_shape=[kh, kw],
                      strides=list(layer.strides), dilations=[dh, dw],
                      pads=_pads(layer, (kh - 1) * dh + 1, (kw - 1) * dw + 1))


def depthwise_conv2d(layer, inputs, graph):
    """``DepthwiseConv2D``: a ``Conv`` with ``group = C``, then the activation."""
    z = _depthwise(layer, graph, inputs[0], "kernel")
    return graph.channels_last(_activate(layer, graph, z, 1))


def separable_conv2d(layer, inputs, graph):
    """``SeparableConv2D``: the depthwise ``Conv`` (no bias), a 1x1 ``Conv`` with the
    pointwise kernel and the bias, then the activation."""
    z1 = _depthwise(layer, graph, inputs[0], "depthwise_kernel")
    args = [z1, graph.constant(layer.params["pointwise_kernel"].transpose(3, 2, 0, 1),
                               "pointwise")]
    if layer.use_bias:
        args.append(graph.constant(layer.params["bias"], "bias"))
    z = graph.node("Conv", args, kernel_shape=[1, 1])
    return graph.channels_last(_activate(layer, graph, z, 1))


# -- pooling ------------------------------------------------------------------------------------
def _pool(layer, graph, x, op, **extra):
    ph, pw = layer.pool_size
    return graph.node(op, [x], kernel_shape=[ph, pw], strides=list(layer.strides),
                      pads=_pads(layer, ph, pw), **extra)


def max_pool2d(layer, inputs, graph):
    """``MaxPooling2D``: ``MaxPool`` (padding never wins: ONNX pads max pooling with -inf)."""
    return graph.channels_last(_pool(layer, graph, graph.channels_first(inputs[0]), "MaxPool"))


def avg_pool2d(layer, inputs, graph):
    """``AveragePooling2D``: ``AveragePool`` with ``count_include_pad=0``: the mean of the real
    cells of each window, as cytorch computes it."""
    y = _pool(layer, graph, graph.channels_first(inputs[0]), "AveragePool", count_include_pad=0)
    return graph.channels_last(y)


def min_pool2d(layer, inputs, graph):
    """``MinPooling2D`` (ONNX has no MinPool): ``min(x) = -max(-x)``, exactly."""
    negated = graph.node("Neg", [graph.channels_first(inputs[0])])
    return graph.channels_last(graph.node("Neg", [_pool(layer, graph, negated, "MaxPool")]))


def _global(layer, graph, x, op, negate=False):
    x = graph.channels_first(x)
    if negate:
        x = graph.node("Neg", [x])
    y = graph.node(op, [x])                                  # (N, C, 1, 1)
    if negate:
        y = graph.node("Neg", [y])
    if layer.keepdims:
        return graph.channels_last(y)                        # (N, 1, 1, C)
    return graph.node("Flatten", [y], axis=1)                # (N, C)


def global_max_pool2d(layer, inputs, graph):
    """``GlobalMaxPooling2D``: ``GlobalMaxPool``, then ``(N, C)`` (or ``(N, 1, 1, C)``)."""
    return _global(layer, graph, inputs[0], "GlobalMaxPool")


def global_avg_pool2d(layer, inputs, graph):
    """``GlobalAveragePooling2D``: ``GlobalAveragePool``, then ``(N, C)``."""
    return _global(layer, graph, inputs[0], "GlobalAveragePool")


def global_min_pool2d(layer, inputs, graph):
    """``GlobalMinPooling2D``: ``-GlobalMaxPool(-x)``."""
    return _global(layer, graph, inputs[0], "GlobalMaxPool", negate=True)


# -- merges -------------------------------------------------------------------------------------
def _merge(graph, inputs, compute):
    """``compute(values, channel_axis)`` on the channels-first twins when every input has one
    (the merge of two conv branches stays channels-first), else on the channels-last values."""
    if all(graph.has_channels_first(x) for x in inputs):
        return graph.channels_last(compute([graph.channels_first(x) for x in inputs], 1))
    return compute(list(inputs), -1)


def _chain(graph, op, values):
    """``((x0 op x1) op x2) ...``: the order in which cytorch accumulates."""
    out = values[0]
    for x in values[1:]:
        out = graph.node(op, [out, x])
    return out


def add(layer, inputs, graph):
    """``Add``: ``Add`` nodes, left to right."""
    return _merge(graph, inputs, lambda xs, axis: _chain(graph, "Add", xs))


def multiply(layer, inputs, graph):
    """``Multiply``: ``Mul`` nodes, left to right."""
    return _merge(graph, inputs, lambda xs, axis: _chain(graph, "Mul", xs))


def subtract(layer, inputs, graph):
    """``Subtract``: ``Sub(x0, x1)``."""
    return _merge(graph, inputs, lambda xs, axis: graph.node("Sub", xs))


def average(layer, inputs, graph):
    """``Average``: the sum left to right, divided by the number of inputs."""
    n = graph.constant(float(len(inputs)), "count")
    return _merge(graph, inputs, lambda xs, axis: graph.node("Div", [_chain(graph, "Add", xs), n]))


def maximum(layer, inputs, graph):
    """``Maximum``: ``Max`` nodes, left to right."""
    return _merge(graph, inputs, lambda xs, axis: _chain(graph, "Max", xs))


def concatenate(layer, inputs, graph):
    """``Concatenate``: ``Concat`` along the layer's axis (moved to its channels-first place
    when the inputs are channels-first)."""
    rank = len(layer.input_shape[0]) + 1
    axis = layer.axis % rank
    if rank == 4:   # channels-last axis -> its position among (N, C, H, W)
        return _merge(graph, inputs, lambda xs, channel_axis: graph.node(
            "Concat", xs, axis=axis if channel_axis == -1 else (0, 2, 3, 1)[axis]))
    return graph.node("Concat", list(inputs), axis=axis)


# -- normalization and parametric activations ---------------------------------------------------
def batch_normalization(layer, inputs, graph):
    """``BatchNormalization`` at inference: ``(x - moving_mean) * a + b`` per channel, with
    ``a = gamma / sqrt(moving_variance + epsilon)`` and ``b = beta`` computed in float64 as
    cytorch does (``cytorch.reference.batch_norm_coefficients``)."""
    mean64 = layer.state["moving_mean"].astype(np.float64)
    var64 = layer.state["moving_variance"].astype(np.float64)
    mean, _, a, b = batch_norm_coefficients(layer.params.get("gamma"), layer.params.get("beta"),
                                            mean64, var64, layer.epsilon, np.float32)

    def compute(x, axis):
        centred = graph.node("Sub", [x, graph.channel_constant(mean, axis, "moving_mean")])
        scaled = graph.node("Mul", [centred, graph.channel_constant(a, axis, "scale")])
        return graph.node("Add", [scaled, graph.channel_constant(b, axis, "shift")])
    return graph.per_channel(inputs[0], compute)


def leaky_relu(layer, inputs, graph):
    """``LeakyReLU``: ``LeakyRelu(alpha=negative_slope)``."""
    return graph.per_channel(inputs[0], lambda x, axis: graph.node(
        "LeakyRelu", [x], alpha=float(layer.negative_slope)))


def elu(layer, inputs, graph):
    """``ELU``: ``Elu(alpha)``."""
    return graph.per_channel(inputs[0], lambda x, axis: graph.node(
        "Elu", [x], alpha=float(layer.alpha)))


# -- reshaping ----------------------------------------------------------------------------------
def zero_padding2d(layer, inputs, graph):
    """``ZeroPadding2D``: ``Pad`` (constant 0) of the rows and columns, in either layout."""
    (t, b), (left, r) = layer.padding

    def compute(x, axis):
        pads = [0, 0, t, left, 0, 0, b, r] if axis == 1 else [0, t, left, 0, 0, b, r, 0]
        return graph.node("Pad", [x, graph.constant(np.array(pads), "pads")])
    return graph.per_channel(inputs[0], compute)


def up_sampling2d(layer, inputs, graph):
    """``UpSampling2D``: ONNX ``Resize`` by ``(fh, fw)`` on the channels-first twin.

    * nearest: ``coordinate_transformation_mode="asymmetric"``, ``nearest_mode="floor"``:
      output row i reads input row ``floor(i / fh)``, cytorch's (and Keras's) repeat;
    * bilinear: ``mode="linear"``, ``coordinate_transformation_mode="half_pixel"``: output row
      i sits at ``(i + 0.5) / fh - 0.5``, clamped to the edges, as Keras 3's resize.
    """
    fh, fw = layer.size
    scales = graph.constant(np.array([1.0, 1.0, fh, fw]), "scales")
    x = graph.channels_first(inputs[0])
    if layer.interpolation == "nearest":
        y = graph.node("Resize", [x, "", scales], mode="nearest",
                       coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    else:
        y = graph.node("Resize", [x, "", scales], mode="linear",
                       coordinate_transformation_mode="half_pixel")
    return graph.channels_last(y)
