"""Preset networks from the course, returned as uncompiled ``Sequential`` models.

>>> from cytorch import models
>>> models.lenet5().count_params(), models.keras_mnist().count_params()
(61706, 38390)

Each preset is also available by name through ``get(name)``, which the command line and
``CNNClassifier(layers="lenet5")`` use; what ``get`` returns is callable like the function and
iterates over the preset's ``(layer_name, kwargs)`` spec.
"""
import difflib

from .graph import Sequential

__all__ = ["lenet5", "keras_mnist", "get", "available", "Preset"]


def lenet5_spec(num_classes=10):
    """LeNet-5 (LeCun et al., 1998) with Keras layer names.

    C1 6@5x5 tanh -> S2 2x2 average pool -> C3 16@5x5 tanh -> S4 2x2 average pool ->
    C5 120 tanh (a dense layer on the 5x5x16 map: the same 48,120 weights as a 5x5 conv) ->
    F6 84 tanh -> output softmax.  On 32x32x1 that is
    156 + 2,416 + 48,120 + 10,164 + 850 = 61,706 parameters.  (The paper's S-layers also had a
    trainable scale and bias, its C3 a sparse connection table and its output RBF units; this is
    the version every course and framework teaches.)
    """
    return [
        ("conv2d", {"filters": 6, "kernel_size": 5, "activation": "tanh"}),
        ("avg_pool2d", {"pool_size": 2}),
        ("conv2d", {"filters": 16, "kernel_size": 5, "activation": "tanh"}),
        ("avg_pool2d", {"pool_size": 2}),
        ("flatten", {}),
        ("dense", {"units": 120, "activation": "tanh"}),
        ("dense", {"units": 84, "activation": "tanh"}),
        ("dense", {"units": num_classes, "activation": "softmax"}),
    ]


def keras_mnist_spec(num_classes=10):
    """The course's Keras MNIST net: Conv2D(10, 5) relu -> MaxPool 2 -> Conv2D(20, 5) relu ->
    MaxPool 2 -> Flatten -> Dense(100) relu -> Dense(10) softmax.  On 28x28x1:
    260 + 5,020 + 32,100 + 1,010 = 38,390 parameters (24x24x10, 12x12x10, 8x8x20, 4x4x20, 320).
    """
    return [
        ("conv2d", {"filters": 10, "kernel_size": 5, "activation": "relu"}),
        ("max_pool2d", {"pool_size": 2}),
        ("conv2d", {"filters": 20, "kernel_size": 5, "activation": "relu"}),
        ("max_pool2d", {"pool_size": 2}),
        ("flatten", {}),
        ("dense", {"units": 100, "activation": "relu"}),
        ("dense", {"units": num_classes, "activation": "softmax"}),
    ]


def lenet5(input_shape=(32, 32, 1), num_classes=10, seed=None, name="lenet5"):
    """Classic LeNet-5 for 32x32 grey images (see ``lenet5_spec``); 61,706 parameters."""
    return Sequential.from_spec(lenet5_spec(num_classes), input_shape=input_shape, seed=seed,
                                name=name)


def keras_mnist(input_shape=(28, 28, 1), num_classes=10, seed=None, name="keras_mnist"):
    """The course's 38,390-parameter MNIST net for 28x28 grey images (``keras_mnist_spec``)."""
    return Sequential.from_spec(keras_mnist_spec(num_classes), input_shape=input_shape,
                                seed=seed, name=name)


class Preset:
    """A named preset: ``preset(input_shape=None, num_classes=10, seed=None)`` builds it,
    ``list(preset)`` is its spec, ``preset.input_shape`` the shape it was designed for."""

    def __init__(self, name, build, spec, input_shape):
        self.name = name
        self._build = build
        self._spec = spec
        self.input_shape = input_shape
        self.__doc__ = build.__doc__

    def spec(self, num_classes=10):
        return self._spec(num_classes)

    def __iter__(self):
        return iter(self._spec())

    def __call__(self, input_shape=None, num_classes=10, seed=None):
        return self._build(input_shape or self.input_shape, num_classes, seed)

    def __repr__(self):
        return f"<preset {self.name} for {self.input_shape}>"


_PRESETS = {
    "lenet5": Preset("lenet5", lenet5, lenet5_spec, (32, 32, 1)),
    "keras_mnist": Preset("keras_mnist", keras_mnist, keras_mnist_spec, (28, 28, 1)),
}


def available():
    """The preset names."""
    return sorted(_PRESETS)


def get(name):
    """The preset called ``name`` (see ``Preset``); unknown names raise KeyError with the
    known ones and the closest match."""
    try:
        return _PRESETS[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), _PRESETS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"unknown preset {name!r}; known presets: {available()}{hint}") from None
