"""What a trained network looks at: layer outputs, input gradients, saliency maps, Grad-CAM.

Everything here is numbers (NumPy arrays); ``cytorch.viz`` draws them.  Gradients come from the
layers' own ``backward``: the same chain rule that trains the network, run from a *class score*
instead of the loss.

* The **class score** ``S_c`` is the output for class ``c`` before the final softmax or sigmoid
  (the logit), as in Simonyan et al. (2014) and Selvaraju et al. (2017): the probability
  saturates near 1 and its gradient fades, the logit's does not.
* ``input_gradient``: ``dS_c/dx``, one number per input pixel and channel.
* ``saliency``: ``max_channels |dS_c/dx|``: the pixels whose change moves the score most
  (Simonyan, Vedaldi and Zisserman, "Deep Inside Convolutional Networks", 2014).
* ``grad_cam``: weight each channel ``k`` of a convolution's output ``A`` by the mean of
  ``dS_c/dA_k`` over the map, sum, keep the positive part:
  ``relu(sum_k alpha_k A_k)`` with ``alpha_k = mean_ij dS_c/dA_kij`` (Selvaraju et al.,
  "Grad-CAM", 2017), then resample it to the input size.

>>> import numpy as np, cytorch
>>> from cytorch import layers as L, explain
>>> model = cytorch.Sequential([L.Conv2D(2, 3, activation="relu"), L.Flatten(),
...                             L.Dense(3, activation="softmax")], input_shape=(5, 5, 1), seed=0)
>>> x = np.ones((1, 5, 5, 1))
>>> explain.input_gradient(model, x, class_index=2).shape
(1, 5, 5, 1)
"""
import numbers

import numpy as np

from .errors import ShapeError

__all__ = ["layer_outputs", "class_scores", "input_gradient", "layer_gradient", "saliency",
           "grad_cam"]

# The final squashing functions that the class score is taken before.
_SQUASHING = ("softmax", "sigmoid")


# -- the graph walk -----------------------------------------------------------------------------
def _check_model(model):
    from .graph import Model
    if not isinstance(model, Model):
        raise TypeError(f"model must be a cytorch Model or Sequential, got "
                        f"{type(model).__name__}")


def _built(model, x):
    """Build a Sequential that has no input shape yet from the first batch, as fit does."""
    _check_model(model)
    model._ensure_built(x)


def _graph(model, x):
    """``x`` checked against the model's single input, and the model's nodes in the order they
    run, as ``[(layer, input_ids, output_id)]`` plus the input's and the output's id.

    This is the one place that reads the model's node list (the graph builder has no public
    walk yet); everything else goes through each layer's public forward/backward."""
    from .functional import as_float_array
    _built(model, x)
    if len(model._inputs) != 1:
        raise ValueError(f"model '{model.name}' has {len(model._inputs)} inputs; only "
                         f"single-input models are supported here")
    x = as_float_array(x, "x", dtype=model.dtype)
    expected = tuple(model._inputs[0].shape)
    if x.ndim == len(expected):
        raise ShapeError(f"x must be a batch (N, {', '.join(map(str, expected))}); for one "
                         f"sample use x[None], got shape {x.shape}")
    if x.size == 0:
        raise ShapeError(f"x must not be empty, got shape {x.shape}")
    if x.shape[1:] != expected:
        raise ValueError(f"x must have shape (N, {', '.join(map(str, expected))}) for model "
                         f"'{model.name}', got {x.shape}")
    steps = [(node.layer, [n.id for n in node.inputs], node.id) for node in model._order]
    return x, steps, model._inputs[0].id, model._outputs[0].id


def _run(layer, inputs):
    return layer.forward(inputs[0] if layer.n_inputs == 1 else inputs, False)


def layer_outputs(model, x):
    """Run one batch through ``model`` and return ``[(layer, output), ...]`` for every layer,
    in the order they run (inference mode: dropout is the identity).

    ``x`` is a batch ``(N, *model.input_shape)``; only single-input models are supported.
    """
    x, steps, source, _ = _graph(model, x)
    values = {source: x}
    result = []
    for layer, inputs, out_id in steps:
        out = _run(layer, [values[i] for i in inputs])
        layer._cache = None  # nothing will be differentiated
        values[out_id] = out
        result.append((layer, out))
    return result


def _score_layer(layer):
    """``layer`` without a final softmax/sigmoid: a linear twin sharing its parameter arrays
    (made from its config, so a plugin layer with an ``activation`` argument works too), or
    ``layer`` itself when it does not squash."""
    config = layer.get_config()
    if config.get("activation") not in _SQUASHING:
        return layer
    twin = type(layer).from_config({**config, "activation": "linear"})
    twin.build(layer.input_shape)
    for name, value in layer.params.items():
        twin.params[name] = value  # shared, read only: the twin's backward writes its grads
    return twin


def _check_classes(class_index, scores, model):
    """Per-sample class indices: None -> the predicted class, an int -> that class for all,
    a sequence -> one per sample."""
    N, K = scores.shape
    if class_index is None:
        return scores.argmax(axis=1)
    if isinstance(class_index, numbers.Integral) and not isinstance(class_index, bool):
        classes = np.full(N, int(class_index))
    else:
        classes = np.asarray(class_index)
        if classes.dtype.kind not in "iu" or classes.shape != (N,):
            raise ValueError(f"class_index must be None (the predicted class), an int or {N} "
                             f"ints (one per sample), got {class_index!r}")
    bad = classes[(classes < 0) | (classes >= K)]
    if bad.size:
        raise ValueError(f"class_index must be in [0, {K}) for model '{model.name}' with {K} "
                         f"outputs, got {int(bad[0])}")
    return classes.astype(np.intp)


def _gradients(model, x, class_index, keep=None):
    """Forward ``x``, then backward from the class score.

    Returns ``(scores, classes, dx, kept)``: the class scores ``(N, K)`` (logits when the model
    ends in softmax or sigmoid), the class differentiated per sample, ``dS/dx`` and, for the
    layer ``keep``, ``(output, dS/doutput)``.
    """
    x, steps, source, output = _graph(model, x)
    if len(model.output_shape) != 1:
        raise ShapeError(f"model '{model.name}' must output one score per class (N, K), "
                         f"its output shape is (N, {', '.join(map(str, model.output_shape))})")
    last = steps[-1][0]
    scorer = _score_layer(last)
    values = {source: x}
    for layer, inputs, out_id in steps:
        values[out_id] = _run(scorer if layer is last else layer, [values[i] for i in inputs])
    scores = values[output]
    classes = _check_classes(class_index, scores, model)
    dout = np.zeros_like(scores)
    dout[np.arange(len(scores)), classes] = 1
    grads = {output: dout}
    kept = None
    for layer, inputs, out_id in reversed(steps):
        g = grads.pop(out_id, None)
        if layer is keep:
            kept = (values[out_id], np.zeros_like(values[out_id]) if g is None else g)
        if g is None:  # this layer does not reach the output
            continue
        dx = (scorer if layer is last else layer).backward(g)
        layer._cache = None
        for i, d in zip(inputs, (dx,) if layer.n_inputs == 1 else dx):
            grads[i] = grads[i] + d if i in grads else d
    scorer._cache = None
    dx = grads.get(source, np.zeros_like(x))
    return scores, classes, dx, kept


def class_scores(model, x):
    """The class scores ``(N, K)``: the model's output before its final softmax or sigmoid."""
    x, steps, source, output = _graph(model, x)
    last = steps[-1][0]
    scorer = _score_layer(last)
    values = {source: x}
    for layer, inputs, out_id in steps:
        values[out_id] = _run(scorer if layer is last else layer, [values[i] for i in inputs])
        layer._cache = None
    scorer._cache = None
    return values[output]


def input_gradient(model, x, class_index=None):
    """The gradient of the class score with respect to the input, ``dS_c/dx``.

    Parameters
    ----------
    model : a Model or Sequential with one input and an output of one score per class
    x : array ``(N, H, W, C)``
        A batch (inference mode: dropout off); it is not modified.
    class_index : None, int or N ints
        The class ``c`` whose score is differentiated: None is each sample's predicted class.

    Returns
    -------
    ndarray of x's shape: ``dS_c/dx``.  Pixels with a large absolute value are those whose
    change moves the score most.
    """
    return _gradients(model, x, class_index)[2]


def find_layer(model, layer):
    """``layer`` as a layer of ``model``: a Layer, its name or its index in ``model.layers``."""
    _check_model(model)
    layers = list(model.layers)
    if isinstance(layer, str):
        return model.get_layer(layer)
    if isinstance(layer, numbers.Integral) and not isinstance(layer, bool):
        try:
            return layers[layer]
        except IndexError:
            raise IndexError(f"layer index {layer} is out of range: model '{model.name}' has "
                             f"{len(layers)} layers") from None
    if any(layer is candidate for candidate in layers):
        return layer
    raise ValueError(f"layer must be a layer of model '{model.name}', its name or its index, "
                     f"got {layer!r}")


def last_conv(model):
    """The last layer with a kernel and an image output ``(H, W, C)`` (usually a Conv2D)."""
    _check_model(model)
    for candidate in reversed(list(model.layers)):
        shape = candidate.output_shape
        if shape is not None and len(shape) == 3 and "kernel" in candidate.params:
            return candidate
    raise ValueError(f"model '{model.name}' has no convolution (a layer with a kernel and an "
                     f"(H, W, C) output) for Grad-CAM")


def layer_gradient(model, x, layer, class_index=None):
    """A layer's output ``A`` and the gradient of the class score with respect to it.

    Returns ``(A, dS_c/dA)``, both of the layer's output shape with the batch axis first.
    ``layer`` is a Layer of the model, its name or its index.
    """
    _built(model, x)
    return _gradients(model, x, class_index, keep=find_layer(model, layer))[3]


def saliency(model, x, class_index=None):
    """Saliency maps ``(N, H, W)``: ``max over channels of |dS_c/dx|`` (Simonyan et al., 2014).

    ``class_index`` as in ``input_gradient``.
    """
    return np.abs(input_gradient(model, x, class_index)).max(axis=-1)


def grad_cam(model, x, class_index=None, layer=None):
    """Grad-CAM heat maps ``(N, H, W)`` at the input's size, each scaled to [0, 1].

    ``layer`` is the convolution to explain (default: the last layer with a kernel and an
    image output, usually the last Conv2D).  For its output ``A (N, h, w, K)`` and the class
    score ``S_c``::

        alpha_k = mean over (i, j) of dS_c/dA[i, j, k]      how much channel k matters
        cam     = relu(sum_k alpha_k A[:, :, k])            where the evidence for c is

    then ``cam`` is resampled to ``H x W`` (bilinear) and divided by its maximum (a map that is
    0 everywhere stays 0: no part of this layer speaks for class c).
    """
    _built(model, x)
    target = last_conv(model) if layer is None else find_layer(model, layer)
    if target.output_shape is None or len(target.output_shape) != 3:
        raise ValueError(f"{type(target).__name__} '{target.name}' has output shape "
                         f"{target.output_shape}; Grad-CAM needs an image output (H, W, C)")
    A, dA = _gradients(model, x, class_index, keep=target)[3]
    alpha = dA.mean(axis=(1, 2))                               # (N, K)
    cam = np.maximum(np.einsum("nhwk,nk->nhw", A, alpha), 0)   # (N, h, w)
    H, W = model.input_shape[:2]
    cam = _resize(cam.astype(np.float64), H, W)
    peak = cam.max(axis=(1, 2), keepdims=True)
    return np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0)


def _resize(maps, H, W):
    """Bilinear resampling of ``(N, h, w)`` maps to ``(N, H, W)``, pixel centres aligned."""
    N, h, w = maps.shape

    def axis(n_in, n_out):
        pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(pos).astype(np.intp)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, pos - lo

    r0, r1, fr = axis(h, H)
    c0, c1, fc = axis(w, W)
    rows = maps[:, r0] * (1 - fr)[None, :, None] + maps[:, r1] * fr[None, :, None]
    return rows[:, :, c0] * (1 - fc) + rows[:, :, c1] * fc
