"""Preset networks from the course, returned as uncompiled ``Sequential`` models.

>>> from cytorch import models
>>> models.lenet5().count_params(), models.keras_mnist().count_params()
(61706, 38390)
>>> models.alexnet_small().count_params(), models.vgg_small(batch_norm=True).count_params()
(176602, 204954)

Each preset is also available by name through ``get(name)``, which the command line and
``CNNClassifier(layers="lenet5")`` use; what ``get`` returns is callable like the function and
iterates over the preset's ``(layer_name, kwargs)`` spec.
"""
import difflib

from .graph import Sequential

__all__ = ["lenet5", "keras_mnist", "alexnet_small", "vgg_small", "get", "available",
           "Preset"]


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


def _conv_block(filters, kernel_size, batch_norm, **kwargs):
    """A conv + ReLU, or with ``batch_norm`` conv (no bias: beta takes its place) + BN + ReLU.

    The presets' BatchNormalization uses ``momentum=0.9``, not Keras's default 0.99: on a
    small data set (45 steps per epoch on the digits) moving averages with 0.99 still remember
    the initial statistics after several epochs (0.99**180 = 0.16), and inference, which uses
    them, lags far behind training (measured: 0.13 test accuracy against 0.94 with batch
    statistics after 4 epochs of ``alexnet_small(batch_norm=True)``)."""
    if not batch_norm:
        return [("conv2d", {"filters": filters, "kernel_size": kernel_size, "padding": "same",
                            "activation": "relu", **kwargs})]
    return [("conv2d", {"filters": filters, "kernel_size": kernel_size, "padding": "same",
                        "use_bias": False, **kwargs}),
            ("batch_normalization", {"momentum": 0.9}),
            ("activation", {"activation": "relu"})]


def alexnet_small_spec(num_classes=10, batch_norm=False):
    """AlexNet's ideas (Krizhevsky, Sutskever & Hinton, 2012) scaled to 32x32x1: a large
    strided first filter, then "same" 3x3 convolutions, overlapping 3x3 max pooling with stride
    2, and two dropout-regularised dense layers; 5 conv + 3 dense weight layers, like AlexNet.

    32x32x1 -> conv 24@5x5 /2 -> 16x16x24 -> pool 3/2 -> 7x7x24 -> conv 48@3x3 -> pool 3/2 ->
    3x3x48 -> conv 64@3x3 -> conv 64@3x3 -> conv 48@3x3 -> 3x3x48 -> dense 128 -> dropout 0.5
    -> dense 128 -> dropout 0.5 -> dense num_classes softmax.  (AlexNet's third pooling would
    leave a 1x1 map here: the 8x8 digits upsampled to 32x32 have little to spare.)

    176,602 parameters for 10 classes (624 + 10,416 + 27,712 + 36,928 + 27,696 + 55,424 +
    16,512 + 1,290); with ``batch_norm=True`` (conv without bias, then BatchNormalization,
    then ReLU) 177,346, of which 496 are the non-trainable moving statistics.
    """
    spec = _conv_block(24, 5, batch_norm, strides=2)
    spec += [("max_pool2d", {"pool_size": 3, "strides": 2})]
    spec += _conv_block(48, 3, batch_norm)
    spec += [("max_pool2d", {"pool_size": 3, "strides": 2})]
    spec += _conv_block(64, 3, batch_norm) + _conv_block(64, 3, batch_norm)
    spec += _conv_block(48, 3, batch_norm)
    spec += [("flatten", {}),
             ("dense", {"units": 128, "activation": "relu"}),
             ("dropout", {"rate": 0.5}),
             ("dense", {"units": 128, "activation": "relu"}),
             ("dropout", {"rate": 0.5}),
             ("dense", {"units": num_classes, "activation": "softmax"})]
    return spec


def vgg_small_spec(num_classes=10, batch_norm=False):
    """VGG's idea (Simonyan & Zisserman, 2014), small: only 3x3 convolutions, stacked two per
    stage (two 3x3 layers see 5x5 with fewer weights than one 5x5), the filters doubling as
    2x2 max pooling halves the map, then a dropout-regularised dense layer.

    32x32x1 -> [conv 16, conv 16, pool] -> 16x16x16 -> [conv 32, conv 32, pool] -> 8x8x32 ->
    [conv 64, conv 64, pool] -> 4x4x64 -> dense 128 -> dropout 0.5 -> dense num_classes softmax.

    204,282 parameters for 10 classes (160 + 2,320 + 4,640 + 9,248 + 18,496 + 36,928 +
    131,200 + 1,290); with ``batch_norm=True`` 204,954, of which 448 are the non-trainable
    moving statistics.
    """
    spec = []
    for filters in (16, 32, 64):
        spec += _conv_block(filters, 3, batch_norm) + _conv_block(filters, 3, batch_norm)
        spec += [("max_pool2d", {"pool_size": 2})]
    spec += [("flatten", {}),
             ("dense", {"units": 128, "activation": "relu"}),
             ("dropout", {"rate": 0.5}),
             ("dense", {"units": num_classes, "activation": "softmax"})]
    return spec


def alexnet_small(input_shape=(32, 32, 1), num_classes=10, seed=None, batch_norm=False,
                  name="alexnet_small"):
    """AlexNet's ideas at 32x32x1 (see ``alexnet_small_spec``): 176,602 parameters, or
    177,346 with ``batch_norm=True`` (496 of them non-trainable)."""
    return Sequential.from_spec(alexnet_small_spec(num_classes, batch_norm),
                                input_shape=input_shape, seed=seed, name=name)


def vgg_small(input_shape=(32, 32, 1), num_classes=10, seed=None, batch_norm=False,
              name="vgg_small"):
    """VGG's stacked 3x3 convolutions at 32x32x1 (see ``vgg_small_spec``): 204,282
    parameters, or 204,954 with ``batch_norm=True`` (448 of them non-trainable)."""
    return Sequential.from_spec(vgg_small_spec(num_classes, batch_norm),
                                input_shape=input_shape, seed=seed, name=name)


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
    "alexnet_small": Preset("alexnet_small", alexnet_small, alexnet_small_spec, (32, 32, 1)),
    "vgg_small": Preset("vgg_small", vgg_small, vgg_small_spec, (32, 32, 1)),
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
