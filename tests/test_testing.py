"""check_layer passes correct layers and fails, with a clear message, on each kind of bug."""
import numpy as np
import pytest

from cytorch import Layer
from cytorch.testing import check_layer


class Scale(Layer):
    """A correct plugin-style layer: learnable per-channel scale and shift."""

    def __init__(self, init=1.0, **kwargs):
        super().__init__(**kwargs)
        self.init = init

    def build(self, input_shape):
        C = input_shape[-1]
        self.params["gamma"] = (self.init + 0.1 * np.arange(C)).astype(self.dtype)
        self.params["beta"] = np.full(C, 0.5, dtype=self.dtype)
        super().build(input_shape)

    def forward(self, x, training=False):
        x = np.asarray(x, dtype=self.dtype)
        self._cache = x
        return x * self.params["gamma"] + self.params["beta"]

    def backward(self, dout):
        x = self._cache
        C = x.shape[-1]
        self.grads["gamma"] = (dout * x).reshape(-1, C).sum(0)
        self.grads["beta"] = dout.reshape(-1, C).sum(0)
        return dout * self.params["gamma"]

    def get_config(self):
        return {"init": self.init, **super().get_config()}


class WrongInputGrad(Scale):
    def backward(self, dout):
        return super().backward(dout) * 1.01  # 1% off


class WrongParamGrad(Scale):
    def backward(self, dout):
        dx = super().backward(dout)
        self.grads["gamma"] = self.grads["gamma"][::-1].copy()
        return dx


class MutatesInput(Scale):
    def forward(self, x, training=False):
        y = super().forward(x, training)
        x *= 1.5  # the caller's array!
        return y


class MutatesDout(Scale):
    def backward(self, dout):
        C = self._cache.shape[-1]
        self.grads["gamma"] = (dout * self._cache).reshape(-1, C).sum(0)
        self.grads["beta"] = dout.reshape(-1, C).sum(0)
        dout *= self.params["gamma"]
        return dout


class ForgetsConfig(Scale):
    def get_config(self):
        return Layer.get_config(self)  # drops "init": from_config builds a different layer


class ArrayInConfig(Scale):
    def get_config(self):
        return {"init": np.float32(self.init) * np.ones(1), **Layer.get_config(self)}


class BatchMean(Layer):
    """Subtracts the batch mean: differentiable, but sample i depends on the others."""

    def forward(self, x, training=False):
        self._cache = x.shape[0]
        return x - x.mean(axis=0, keepdims=True)

    def backward(self, dout):
        return dout - dout.mean(axis=0, keepdims=True)


class LiesAboutShape(Scale):
    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (input_shape[-1] + 1,)


class AlwaysFloat64(Scale):
    def forward(self, x, training=False):
        return super().forward(x, training).astype(np.float64)


class Noise(Layer):
    """Adds noise in training drawn from self.rng: check_layer fixes the draw per call."""

    def forward(self, x, training=False):
        self._cache = x.shape
        if not training:
            return np.asarray(x, dtype=self.dtype)
        return (x + self.rng.standard_normal(x.shape) ** 2).astype(self.dtype)

    def backward(self, dout):
        return np.asarray(dout, dtype=self.dtype)


class GlobalNoise(Noise):
    def forward(self, x, training=False):
        self._cache = x.shape
        return x * np.random.uniform(0.5, 1.5, size=x.shape) if training else x


class Multiply(Layer):
    """A correct two-input layer: elementwise product."""

    n_inputs = None

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def forward(self, xs, training=False):
        a, b = (np.asarray(x, dtype=self.dtype) for x in xs)
        self._cache = (a, b)
        return a * b

    def backward(self, dout):
        a, b = self._cache
        return [dout * b, dout * a]


class MultiplyWrong(Multiply):
    def backward(self, dout):
        a, b = self._cache
        return [dout * b, dout * b]


def test_correct_layers_pass():
    errors = check_layer(Scale(), (3, 2))
    assert set(errors) >= {"input", "parameter 'gamma'", "parameter 'beta'"}
    assert max(errors.values()) < 1e-7
    check_layer(Scale(init=2.0), (4,), batch_size=5, seed=3)
    check_layer(Multiply(), [(2, 3), (2, 3)])
    check_layer(Noise(), (4,))


def test_wrong_input_gradient_fails_with_the_size_of_the_error():
    with pytest.raises(AssertionError, match=r"check_layer\(WrongInputGrad '.*', "
                                             r"input_shape=\(3, 2\)\): gradient check failed: "
                                             r"backward disagrees with finite differences for "
                                             r"the input: relative error 0.00498 > rtol 1e-05; "
                                             r"worst entry"):
        check_layer(WrongInputGrad(), (3, 2))


def test_wrong_parameter_gradient_names_the_parameter():
    with pytest.raises(AssertionError, match=r"finite differences for the parameter 'gamma': "
                                             r"relative error"):
        check_layer(WrongParamGrad(), (3, 2))


def test_wrong_gradient_of_second_input():
    with pytest.raises(AssertionError, match="for the input 1: relative error"):
        check_layer(MultiplyWrong(), [(2,), (2,)])


def test_mutating_input_fails():
    with pytest.raises(AssertionError, match=r"mutation check failed: forward modified its "
                                             r"argument \(input\)"):
        check_layer(MutatesInput(), (3, 2))


def test_mutating_dout_fails():
    with pytest.raises(AssertionError, match=r"mutation check failed: backward modified its "
                                             r"argument \(dout\)"):
        check_layer(MutatesDout(), (3, 2))


def test_config_that_does_not_round_trip_fails():
    with pytest.raises(AssertionError, match=r"config check failed: the layer rebuilt from its "
                                             r"config, with the same weights, computes a "
                                             r"different output"):
        # weights are copied, so only a config-dependent forward shows the difference
        check_layer(_ConfigDependent(factor=3.0), (2,))
    with pytest.raises(AssertionError, match=r"config check failed: get_config\(\) is not "
                                             r"JSON-serialisable"):
        check_layer(ArrayInConfig(), (2,))


class _ConfigDependent(Scale):
    def __init__(self, factor=1.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def forward(self, x, training=False):
        return self.factor * super().forward(x, training)

    def backward(self, dout):
        return super().backward(self.factor * dout)

    # get_config inherited from Scale: "factor" is lost


def test_config_whose_rebuilt_config_differs_fails():
    class Renames(Scale):
        def get_config(self):
            return {"init": self.init + 1, **Layer.get_config(self)}
    with pytest.raises(AssertionError, match=r"from_config\(get_config\(\)\) gives a different "
                                             r"config: init: 2.0 became 3.0"):
        check_layer(Renames(), (2,))


def test_batch_dependence_fails():
    with pytest.raises(AssertionError, match=r"batch independence check failed: samples 0..1 "
                                             r"give different outputs alone"):
        check_layer(BatchMean(), (3,))


def test_wrong_compute_output_shape_fails():
    with pytest.raises(AssertionError, match=r"shapes check failed: build\(\) set output_shape "
                                             r"\(3, 3\), but compute_output_shape gives"
                                             r"|shapes check failed: forward returned shape"):
        check_layer(LiesAboutShape(), (3, 2))


def test_float32_layer_returning_float64_fails():
    with pytest.raises(AssertionError, match=r"dtype check failed: a float32 layer returned "
                                             r"float64"):
        check_layer(AlwaysFloat64(), (3,))


def test_randomness_outside_self_rng_breaks_the_gradient_check():
    with pytest.raises(AssertionError, match="gradient check failed"):
        check_layer(GlobalNoise(), (4,))


def test_check_layer_leaves_the_layer_unchanged():
    layer = Scale()
    layer.build((3,))
    before = {k: v.copy() for k, v in layer.params.items()}
    check_layer(layer, (3,))
    for k, v in before.items():
        np.testing.assert_array_equal(layer.params[k], v)
        assert layer.params[k].dtype == np.float32


def test_bad_arguments():
    with pytest.raises(TypeError, match="expects a cytorch.Layer, got int"):
        check_layer(3, (2,))
    with pytest.raises(ValueError, match="batch_size must be >= 2"):
        check_layer(Scale(), (2,), batch_size=1)


def test_layer_built_for_another_shape_is_reported():
    layer = Scale()
    layer.build((4,))
    with pytest.raises(ValueError, match=r"was built for input shape \(4,\), but check_layer "
                                         r"got input_shape=\(3,\)"):
        check_layer(layer, (3,))


class Float64Parameters(Scale):
    """The brief's layer: ``np.full(C, 1.5)`` without ``dtype=``, float64 in a float32 layer."""

    def build(self, input_shape):
        C = input_shape[-1]
        self.params["gamma"] = np.full(C, 1.5)
        self.params["beta"] = np.full(C, 0.5, dtype=self.dtype)
        Layer.build(self, input_shape)


def test_parameters_not_of_the_layer_dtype_are_named_as_such():
    # before: "config check failed: ... computes a different output (relative error 1.57e-08)"
    with pytest.raises(AssertionError, match=r"dtype check failed: parameter 'gamma' is "
                                             r"float64 but the layer's dtype is float32: create "
                                             r"it with dtype=self\.dtype") as info:
        check_layer(Float64Parameters(), (6, 6, 2))
    assert "different output" not in str(info.value)


class Offset(Layer):
    """``y = x - c``, with ``c`` in the config to 12 significant digits: the rebuilt layer
    differs from the original by rounding only (1e-12 relative), but where an input equals
    ``c`` the original gives exactly 0 and the rebuilt one 3e-13."""

    def __init__(self, c=1 / 3, **kwargs):
        super().__init__(**kwargs)
        self.c = c

    def forward(self, x, training=False):
        x = np.asarray(x, dtype=self.dtype)
        self._cache = x.shape
        return x - self.dtype.type(self.c)

    def backward(self, dout):
        return np.array(dout, dtype=self.dtype)

    def get_config(self):
        return {"c": float(f"{self.c:.12g}"), **super().get_config()}


def test_the_config_check_measures_what_its_message_reports():
    # inputs include 1/3 (2 * 2/12 with 12 values): an element-wise comparison without an
    # absolute tolerance called 0 vs 3e-13 "a different output (relative error 1e-13)"
    errors = check_layer(Offset(dtype="float64"), (4,))
    assert errors["input"] < 1e-8
