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
    """AlexNet's ideas (Krizhevsky, Sutskever & Hinton, 2012) scaled to 32x32x1: a large first
    filter, then "same" 3x3 convolutions, overlapping 3x3 max pooling with stride 2 after the
    first, second and fifth convolution, and two dropout-regularised dense layers; 5 conv +
    3 dense weight layers, like AlexNet.

    32x32x1 -> conv 24@5x5 -> pool 3/2 -> 15x15x24 -> conv 48@3x3 -> pool 3/2 -> 7x7x48 ->
    conv 64@3x3 -> conv 64@3x3 -> conv 48@3x3 -> pool 3/2 -> 3x3x48 -> dense 128 ->
    dropout 0.5 -> dense 128 -> dropout 0.5 -> dense num_classes softmax.

    The first convolution has stride 1, not AlexNet's 4: an 8x8 digit upsampled into a 20x20
    box has no pixels to spare.  With a stride-2 first layer (and so no third pooling) the net
    fitted the training digits (99-100 %) but its final test accuracy over 6 seeds (20 epochs)
    was 0.971 +- 0.012 (worst 0.947); 0.978 with the cosine schedule of ``alexnet_small``, and
    no better with dropout 0.3 (0.975) or none (0.973), 2x2 pooling (0.976) or the digits
    stretched over the whole 32x32 (0.974): the 20-pixel digit covered only about 2x2 cells of
    the final 3x3 map.  Stride 1 costs about 4-5x the time per epoch (2-core Zen 5, loaded).

    176,602 parameters for 10 classes (624 + 10,416 + 27,712 + 36,928 + 27,696 + 55,424 +
    16,512 + 1,290); with ``batch_norm=True`` (conv without bias, then BatchNormalization,
    then ReLU) 177,346, of which 496 are the non-trainable moving statistics.
    """
    pool = [("max_pool2d", {"pool_size": 3, "strides": 2})]
    spec = _conv_block(24, 5, batch_norm) + pool
    spec += _conv_block(48, 3, batch_norm) + pool
    spec += _conv_block(64, 3, batch_norm) + _conv_block(64, 3, batch_norm)
    spec += _conv_block(48, 3, batch_norm) + pool
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
    177,346 with ``batch_norm=True`` (496 of them non-trainable).

    Recommended training: Adam at 1e-3, batch 32, 30 epochs (20 with ``batch_norm=True``),
    the learning rate decayed to 0 along half a cosine (``benchmarks/bench_accuracy.py``).
    With a constant rate the test accuracy swings by several points from one epoch to the next
    (the two dropout layers), so the last epoch is a lottery; the decay lets it settle.

    >>> import math
    >>> from cytorch import callbacks, models
    >>> model = models.alexnet_small(seed=0).compile(optimizer="adam", metrics=["accuracy"])
    >>> decay = callbacks.LearningRateScheduler(
    ...     lambda epoch: 1e-3 * 0.5 * (1 + math.cos(math.pi * epoch / 30)))
    >>> # model.fit(X, y, batch_size=32, epochs=30, callbacks=[decay])

    Measured on the 32x32 digits (``load_digits(32)``, stratified 80/20 split), final-epoch test
    accuracy over seeds 0-4, mean +- std (worst): 0.9850 +- 0.0038 (0.9806) after 30 epochs;
    0.9806 +- 0.0051 (0.9722) after 20 (seeds 0-5); PyTorch with the same net, initialisation
    and schedule 0.9839 +- 0.0051 (0.9778) after 30 epochs, 0.9761 +- 0.0029 (0.9722) after 20.
    With ``batch_norm=True``, 20 epochs: 0.9953 +- 0.0026 (0.9917, seeds 0-5); PyTorch
    0.9972 +- 0.0023 (0.9944, seeds 0-2).
    """
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
