"""cytorch.explain: input gradients agree with central finite differences of the class score
(float64), through a softmax head, a separate Activation, a skip connection and dropout;
Grad-CAM follows its formula; bad arguments are named."""
import numpy as np
import pytest

import cytorch
from cytorch import Model, explain
from cytorch import layers as L


def sequential(head="dense_softmax"):
    stack = [L.Conv2D(3, 3, activation="tanh", dtype="float64"),
             L.MaxPooling2D(2, dtype="float64"), L.Dropout(0.5, dtype="float64"),
             L.Conv2D(4, (2, 3), padding="same", activation="relu", dtype="float64"),
             L.Flatten(dtype="float64")]
    if head == "dense_softmax":
        stack.append(L.Dense(5, activation="softmax", dtype="float64"))
    else:  # a linear Dense and a separate softmax layer
        stack += [L.Dense(5, dtype="float64"), L.Activation("softmax", dtype="float64")]
    return cytorch.Sequential(stack, input_shape=(9, 8, 2), seed=3)


def skip_model():
    i = L.Input((6, 6, 1))
    a = L.Conv2D(2, 3, padding="same", activation="tanh", dtype="float64")(i)
    b = L.Conv2D(2, 1, dtype="float64")(i)
    x = L.Flatten(dtype="float64")(L.Add(dtype="float64")([a, b]))
    return Model(i, L.Dense(4, activation="softmax", dtype="float64")(x), seed=1)


def batchnorm_model():
    """Batch normalization in inference mode (moving statistics moved off 0 and 1)."""
    model = cytorch.Sequential([L.Conv2D(3, 3, dtype="float64"),
                                L.BatchNormalization(dtype="float64"),
                                L.Activation("relu", dtype="float64"), L.Flatten(dtype="float64"),
                                L.Dense(4, activation="softmax", dtype="float64")],
                               input_shape=(6, 6, 1), seed=2)
    bn = model.layers[1]
    bn.state["moving_mean"][...] = [0.1, -0.2, 0.3]
    bn.state["moving_variance"][...] = [0.5, 2.0, 1.5]
    return model


def finite_difference(model, x, classes, eps=1e-6):
    grad = np.zeros_like(x)
    rows = np.arange(len(x))
    for index in np.ndindex(x.shape[1:]):
        plus, minus = x.copy(), x.copy()
        plus[(slice(None), *index)] += eps
        minus[(slice(None), *index)] -= eps
        diff = explain.class_scores(model, plus)[rows, classes] \
            - explain.class_scores(model, minus)[rows, classes]
        grad[(slice(None), *index)] = diff / (2 * eps)
    return grad


@pytest.mark.parametrize("make", [sequential, lambda: sequential("activation_layer"),
                                  skip_model, batchnorm_model],
                         ids=["softmax_dense", "activation", "skip", "batchnorm"])
def test_input_gradient_matches_finite_differences(make):
    model = make()
    x = np.random.default_rng(0).normal(size=(3, *model.input_shape))
    before = x.copy()
    classes = np.array([1, 0, 3])[:len(x)]
    grad = explain.input_gradient(model, x, classes)
    assert grad.shape == x.shape and grad.dtype == np.float64
    np.testing.assert_allclose(grad, finite_difference(model, x, classes), rtol=1e-5,
                               atol=1e-8)
    np.testing.assert_array_equal(x, before)  # the input is not modified


def test_class_scores_are_the_logits_of_the_softmax_output():
    model = sequential()
    x = np.random.default_rng(1).normal(size=(4, 9, 8, 2))
    scores = explain.class_scores(model, x)
    probabilities = model.predict(x)
    softmax = np.exp(scores - scores.max(1, keepdims=True))
    np.testing.assert_allclose(softmax / softmax.sum(1, keepdims=True), probabilities,
                               rtol=1e-10)


def test_default_class_is_the_prediction_and_saliency_is_max_abs_over_channels():
    model = sequential()
    x = np.random.default_rng(2).normal(size=(2, 9, 8, 2))
    predicted = model.predict(x).argmax(1)
    np.testing.assert_array_equal(explain.input_gradient(model, x),
                                  explain.input_gradient(model, x, predicted))
    sal = explain.saliency(model, x, 4)
    np.testing.assert_array_equal(sal, np.abs(explain.input_gradient(model, x, 4)).max(-1))
    assert sal.shape == (2, 9, 8)


def test_layer_gradient_and_grad_cam_follow_the_formula():
    model = sequential()
    conv = model.layers[3]
    x = np.random.default_rng(3).normal(size=(2, 9, 8, 2))
    A, dA = explain.layer_gradient(model, x, conv.name, class_index=2)
    assert A.shape == dA.shape == (2, 3, 3, 4)
    # dS/dA by finite differences on the tail of the network (conv output -> score)
    tail = cytorch.Sequential([L.Flatten(dtype="float64"),
                               L.Dense(5, activation="softmax", dtype="float64")],
                              input_shape=(3, 3, 4))
    tail.set_weights({f"{tail.layers[1].name}/{k}": v
                      for k, v in model.layers[-1].params.items()})
    np.testing.assert_allclose(dA, finite_difference(tail, A, np.array([2, 2])), rtol=1e-5,
                               atol=1e-8)
    cam = explain.grad_cam(model, x, 2)  # default layer: the last conv, i.e. the same one
    alpha = dA.mean(axis=(1, 2))
    raw = np.maximum((A * alpha[:, None, None, :]).sum(-1), 0)
    assert cam.shape == (2, 9, 8) and cam.min() >= 0
    for n in range(2):
        if raw[n].max() > 0:
            assert cam[n].max() == pytest.approx(1.0)
        else:
            assert not cam[n].any()


def test_bad_arguments_are_named():
    model = sequential()
    x = np.zeros((1, 9, 8, 2))
    with pytest.raises(ValueError, match=r"class_index must be in \[0, 5\) .* got 7"):
        explain.input_gradient(model, x, 7)
    with pytest.raises(ValueError, match="class_index must be None .* or 1 ints"):
        explain.input_gradient(model, x, [1, 2])
    with pytest.raises(cytorch.ShapeError, match=r"for one sample use x\[None\]"):
        explain.input_gradient(model, x[0])
    with pytest.raises(TypeError, match="model must be a cytorch Model"):
        explain.saliency("model", x)
    with pytest.raises(KeyError, match="no layer named 'nope'"):
        explain.grad_cam(model, x, layer="nope")
    dense = cytorch.Sequential([L.Flatten(), L.Dense(3)], input_shape=(4, 4, 1))
    with pytest.raises(ValueError, match="has no convolution"):
        explain.grad_cam(dense, np.zeros((1, 4, 4, 1)))
