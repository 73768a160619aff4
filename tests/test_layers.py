"""The built-in layers: conformance (check_layer), shape errors, configs, parameter counts."""
import json
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import cytorch
from cytorch import ShapeError, layers as L
from cytorch.layers import CallContext
from cytorch._shapes import resolve_padding
from cytorch.testing import check_layer

# (layer factory, input shape); every built-in in several configurations
CASES = {
    "conv2d-relu": (lambda: L.Conv2D(3, 3, activation="relu", seed=0), (5, 5, 2)),
    "conv2d-nonsquare-stride-same": (
        lambda: L.Conv2D(2, (3, 2), strides=(2, 1), padding="same", activation="tanh", seed=0),
        (6, 5, 2)),
    "conv2d-full-nobias": (lambda: L.Conv2D(2, (2, 3), padding="full", use_bias=False,
                                            kernel_initializer="he_normal", seed=0), (3, 4, 2)),
    "conv2d-asym-padding-sigmoid": (
        lambda: L.Conv2D(2, 2, strides=2, padding=((1, 0), (0, 1)), activation="sigmoid",
                         seed=0), (4, 5, 1)),
    "conv2d-softmax": (lambda: L.Conv2D(3, 1, activation="softmax", seed=0), (3, 3, 2)),
    "dense-linear": (lambda: L.Dense(4, seed=0), (6,)),
    "dense-relu-he": (lambda: L.Dense(5, activation="relu", kernel_initializer="he_uniform",
                                      seed=1), (7,)),
    "dense-softmax": (lambda: L.Dense(3, activation="softmax", seed=0), (4,)),
    "dense-tanh-nobias": (lambda: L.Dense(3, activation="tanh", use_bias=False, seed=0), (4,)),
    "flatten": (lambda: L.Flatten(), (3, 2, 2)),
    "activation-relu": (lambda: L.Activation("relu"), (3, 3, 2)),
    "activation-tanh": (lambda: L.Activation("tanh"), (5,)),
    "activation-sigmoid": (lambda: L.Activation("sigmoid"), (2, 2, 3)),
    "activation-softmax": (lambda: L.Activation("softmax"), (6,)),
    "activation-linear": (lambda: L.Activation("linear"), (4,)),
    "dropout": (lambda: L.Dropout(0.4, seed=3), (4, 4, 2)),
    "dropout-dense-input": (lambda: L.Dropout(0.5), (8,)),
    "max-pool": (lambda: L.MaxPooling2D(2), (4, 4, 2)),
    "max-pool-overlap-same": (lambda: L.MaxPool2D(3, strides=2, padding="same"), (5, 4, 2)),
    "avg-pool-padding": (lambda: L.AveragePooling2D((2, 3), strides=(1, 2), padding=1),
                         (4, 5, 2)),
    "avg-pool-alias": (lambda: L.AvgPool2D(2), (4, 4, 1)),
    "min-pool-same": (lambda: L.MinPooling2D(2, padding="same"), (5, 5, 2)),
    "global-max": (lambda: L.GlobalMaxPooling2D(), (3, 4, 2)),
    "global-avg": (lambda: L.GlobalAveragePooling2D(), (3, 4, 2)),
    "global-min": (lambda: L.GlobalMinPooling2D(), (3, 4, 2)),
    "global-avg-keepdims": (lambda: L.GlobalAveragePooling2D(keepdims=True), (3, 2, 2)),
    "global-max-keepdims": (lambda: L.GlobalMaxPooling2D(keepdims=True), (2, 3, 3)),
    "add": (lambda: L.Add(), [(3, 3, 2), (3, 3, 2)]),
    "add-three": (lambda: L.Add(), [(4,), (4,), (4,)]),
    "concatenate-channels": (lambda: L.Concatenate(), [(3, 3, 2), (3, 3, 1)]),
    "concatenate-axis1": (lambda: L.Concatenate(axis=1), [(2, 3, 1), (1, 3, 1)]),
    "input": (lambda: L.Input((3, 2)), (3, 2)),
    "batch-normalization": (lambda: L.BatchNormalization(), (3, 3, 2)),
    "leaky-relu-layer": (lambda: L.LeakyReLU(), (3, 3, 2)),
    "leaky-relu-layer-slope": (lambda: L.LeakyReLU(negative_slope=1.5), (5,)),
    "elu-layer": (lambda: L.ELU(), (3, 3, 2)),
    "elu-layer-alpha": (lambda: L.ELU(alpha=0.5), (5,)),
    "activation-leaky-relu": (lambda: L.Activation("leaky_relu"), (3, 3, 2)),
    "activation-elu": (lambda: L.Activation("elu"), (6,)),
    "activation-gelu": (lambda: L.Activation("gelu"), (3, 3, 2)),
    "activation-silu": (lambda: L.Activation("silu"), (6,)),
    "activation-swish": (lambda: L.Activation("swish"), (6,)),
    "activation-softplus": (lambda: L.Activation("softplus"), (3, 2, 2)),
    "conv2d-gelu": (lambda: L.Conv2D(3, 3, activation="gelu", seed=0), (5, 5, 2)),
    "conv2d-silu": (lambda: L.Conv2D(2, 2, activation="silu", seed=0), (4, 4, 2)),
    "conv2d-elu": (lambda: L.Conv2D(2, 2, activation="elu", seed=0), (4, 4, 2)),
    "dense-gelu": (lambda: L.Dense(4, activation="gelu", seed=0), (6,)),
    "dense-leaky-relu": (lambda: L.Dense(4, activation="leaky_relu", seed=0), (6,)),
    "dense-softplus": (lambda: L.Dense(4, activation="softplus", seed=0), (6,)),
    "zero-padding": (lambda: L.ZeroPadding2D(), (2, 2, 1)),
    "zero-padding-asym": (lambda: L.ZeroPadding2D(((1, 0), (2, 1))), (3, 3, 2)),
    "reshape": (lambda: L.Reshape((3, -1)), (3, 2, 2)),
    "reshape-to-image": (lambda: L.Reshape((2, 2, 3)), (12,)),
    "up-sampling-nearest": (lambda: L.UpSampling2D((2, 3)), (2, 3, 2)),
    "up-sampling-bilinear": (lambda: L.UpSampling2D(2, interpolation="bilinear"), (3, 2, 2)),
    "spatial-dropout": (lambda: L.SpatialDropout2D(0.5, seed=1), (3, 3, 4)),
    "depthwise-same-dm2": (lambda: L.DepthwiseConv2D(3, depth_multiplier=2, padding="same",
                                                     seed=0), (4, 5, 3)),
    "depthwise-nonsquare-stride-relu": (
        lambda: L.DepthwiseConv2D((2, 3), strides=(2, 1), activation="relu", seed=0), (5, 5, 2)),
    "separable-same-tanh": (lambda: L.SeparableConv2D(4, 3, depth_multiplier=2, padding="same",
                                                      activation="tanh", seed=0), (4, 4, 3)),
    "separable-stride-nobias": (lambda: L.SeparableConv2D(2, (3, 2), strides=2, use_bias=False,
                                                          seed=0), (5, 5, 2)),
    "depthwise-dilated-same-dm2": (
        lambda: L.DepthwiseConv2D(3, dilation_rate=(2, 1), depth_multiplier=2, padding="same",
                                  seed=0), (6, 5, 3)),
    "depthwise-dilated-stride": (
        lambda: L.DepthwiseConv2D((2, 3), strides=(2, 1), dilation_rate=2, seed=0), (7, 7, 2)),
    "separable-dilated-tanh": (lambda: L.SeparableConv2D(3, 3, dilation_rate=2, padding="same",
                                                         activation="tanh", seed=0), (6, 6, 2)),
    "multiply-three": (lambda: L.Multiply(), [(3, 3, 2)] * 3),
    "subtract": (lambda: L.Subtract(), [(4,), (4,)]),
    "average": (lambda: L.Average(), [(2, 2, 2)] * 2),
    "maximum-three": (lambda: L.Maximum(), [(5,)] * 3),
}


@pytest.fixture
def one_thread():
    """check_layer makes hundreds of calls on tiny arrays: threads would only add overhead."""
    cytorch.set_num_threads(1)
    yield
    cytorch.set_num_threads(None)


@pytest.mark.parametrize("backend", ["compiled", "reference"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_builtin_layers_pass_check_layer(case, backend, one_thread):
    make, shape = CASES[case]
    with cytorch.backend(backend):
        errors = check_layer(make(), shape)
    assert all(e < 1e-5 for e in errors.values()), errors


@st.composite
def window_configs(draw):
    """A window layer's geometry and an input it fits: (kernel, strides, padding, shape)."""
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    strides = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.sampled_from(["valid", "same", "full", 1, (0, 1), ((1, 0), (0, 2))]))
    pads = resolve_padding(padding, 5, 5, *kernel, *strides)
    H = draw(st.integers(max(kernel[0] - pads[0] - pads[1], 1), 5))
    W = draw(st.integers(max(kernel[1] - pads[2] - pads[3], 1), 5))
    return kernel, strides, padding, (H, W, draw(st.integers(1, 3)))


@settings(max_examples=12, deadline=None)
@given(config=window_configs(), filters=st.integers(1, 3),
       activation=st.sampled_from(["linear", "tanh", "relu"]), use_bias=st.booleans())
def test_conv2d_random_geometry_passes_check_layer(config, filters, activation, use_bias):
    kernel, strides, padding, shape = config
    layer = L.Conv2D(filters, kernel, strides=strides, padding=padding, activation=activation,
                     use_bias=use_bias, seed=0)
    cytorch.set_num_threads(1)
    try:
        check_layer(layer, shape)
    finally:
        cytorch.set_num_threads(None)


@settings(max_examples=12, deadline=None)
@given(config=window_configs(), kind=st.sampled_from([L.MaxPooling2D, L.AveragePooling2D,
                                                      L.MinPooling2D]))
def test_pooling_random_geometry_passes_check_layer(config, kind):
    pool, strides, padding, shape = config
    pt, pb, pl, pr = resolve_padding(padding, shape[0], shape[1], *pool, *strides)
    if max(pt, pb) >= pool[0] or max(pl, pr) >= pool[1]:
        # a window made of padding only would have nothing to pool
        with pytest.raises(ValueError, match=r"must be smaller than pool_size"):
            kind(pool, strides=strides, padding=padding)
        return
    cytorch.set_num_threads(1)
    try:
        check_layer(kind(pool, strides=strides, padding=padding), shape)
    finally:
        cytorch.set_num_threads(None)


# -- shape errors -------------------------------------------------------------------------------
def test_conv_output_smaller_than_one_names_layer_and_formula():
    conv = L.Conv2D(6, 5, name="c3")
    with pytest.raises(ShapeError, match=r"Conv2D 'c3' needs at least 5x5 input .*got 2x2: "
                                         r"floor\(\(2 - 5\)/1\) \+ 1 = -2 rows"):
        conv.compute_output_shape((2, 2, 16))


def test_fourth_pool_on_a_one_by_one_map_raises():
    pool = L.MaxPooling2D(2, name="pool4")
    assert pool.compute_output_shape((2, 2, 8)) == (1, 1, 8)
    with pytest.raises(ShapeError, match=r"MaxPooling2D 'pool4' needs at least 2x2 input.*"
                                         r"floor\(\(1 - 2\)/2\) \+ 1 = 0"):
        pool.compute_output_shape((1, 1, 8))


def test_padding_makes_small_input_fit():
    assert L.Conv2D(1, 5, padding=2).compute_output_shape((2, 2, 1)) == (2, 2, 1)
    assert L.Conv2D(1, 3, padding="full").compute_output_shape((1, 1, 1)) == (3, 3, 1)


@pytest.mark.parametrize("layer", [L.Conv2D(2, 3), L.MaxPooling2D(), L.GlobalAveragePooling2D()])
def test_image_layers_reject_non_image_samples(layer):
    with pytest.raises(ShapeError, match=r"expects samples of shape \(H, W, C\), got \(28, 28\)"):
        layer.compute_output_shape((28, 28))


def test_dense_rejects_images_and_suggests_flatten():
    with pytest.raises(ShapeError, match=r"Dense 'd' expects 2-D input \(N, features\).*"
                                         r"\(4, 4, 20\).*Flatten\(\)"):
        L.Dense(10, name="d").compute_output_shape((4, 4, 20))
    dense = L.Dense(10)
    dense.build((320,))
    with pytest.raises(ShapeError, match=r"expects 2-D input .*got shape \(2, 4, 4, 20\).*"
                                         r"Flatten\(\)"):
        dense.forward(np.zeros((2, 4, 4, 20)))


def test_wrong_channel_count_at_forward():
    conv = L.Conv2D(4, 3, name="conv")
    conv.build((8, 8, 3))
    with pytest.raises(ShapeError, match=r"Conv2D 'conv' was built for 3 channels .*got 4 "
                                         r"\(batch shape \(2, 8, 8, 4\)\)"):
        conv.forward(np.zeros((2, 8, 8, 4)))
    dense = L.Dense(2, name="fc")
    dense.build((5,))
    with pytest.raises(ShapeError, match=r"Dense 'fc' was built for 5 features .*got 6"):
        dense.forward(np.zeros((1, 6)))


def test_conv_rejects_3d_batch():
    with pytest.raises(ShapeError, match=r"expects 4-D input \(N, H, W, C\) channels-last, got "
                                         r"shape \(2, 8, 8\)"):
        L.Conv2D(2, 3).forward(np.zeros((2, 8, 8)))


def test_merge_shape_errors():
    with pytest.raises(ShapeError, match=r"Add 'a' adds inputs of one shape, got \(3, 3, 2\), "
                                         r"\(3, 3, 1\)"):
        L.Add(name="a").compute_output_shape([(3, 3, 2), (3, 3, 1)])
    with pytest.raises(ShapeError, match=r"joins along axis -1; the other axes must agree"):
        L.Concatenate().compute_output_shape([(3, 3, 2), (4, 3, 1)])
    with pytest.raises(ShapeError, match=r"axis=0 is not a non-batch axis"):
        L.Concatenate(axis=0).compute_output_shape([(3,), (4,)])
    assert L.Concatenate().compute_output_shape([(3, 3, 2), (3, 3, 5)]) == (3, 3, 7)
    with pytest.raises(ShapeError, match="list of at least 2 inputs"):
        L.Add().compute_output_shape([(3,)])


def test_input_layer_checks_shape():
    i = L.Input((28, 28, 1), name="img")
    assert i.compute_output_shape((28, 28, 1)) == (28, 28, 1)
    with pytest.raises(ShapeError, match=r"Input 'img' has shape \(28, 28, 1\), got samples of "
                                         r"shape \(28, 28, 3\)"):
        i.compute_output_shape((28, 28, 3))
    with pytest.raises(ValueError, match="every axis of shape must be a positive int"):
        L.Input((28, 0, 1))


# -- parameter counts: the seeds' nets -----------------------------------------------------------
@pytest.mark.parametrize("layer, input_shape, params, output_shape", [
    (lambda: L.Conv2D(10, 5, padding=2), (32, 32, 3), 760, (32, 32, 10)),
    (lambda: L.Conv2D(10, 5), (28, 28, 1), 260, (24, 24, 10)),
    (lambda: L.MaxPooling2D(2), (24, 24, 10), 0, (12, 12, 10)),
    (lambda: L.Conv2D(20, 5), (12, 12, 10), 5020, (8, 8, 20)),
    (lambda: L.Flatten(), (4, 4, 20), 0, (320,)),
    (lambda: L.Dense(100), (320,), 32100, (100,)),
    (lambda: L.Dense(10), (100,), 1010, (10,)),
    (lambda: L.Conv2D(6, 5, use_bias=False), (32, 32, 1), 150, (28, 28, 6)),
])
def test_parameter_counts(layer, input_shape, params, output_shape):
    layer = layer()
    layer.build(input_shape)
    assert layer.count_params() == params
    assert layer.output_shape == output_shape
    assert set(layer.grads) == set(layer.params)
    for k, p in layer.params.items():
        assert p.dtype == np.float32 and layer.grads[k].shape == p.shape


def test_conv_kernel_layout_and_initial_values():
    conv = L.Conv2D(4, (3, 2), seed=0)
    conv.build((6, 6, 5))
    kernel, bias = conv.params["kernel"], conv.params["bias"]
    assert kernel.shape == (3, 2, 5, 4) and bias.shape == (4,)
    limit = np.sqrt(6 / (3 * 2 * 5 + 3 * 2 * 4))  # Glorot with Keras's conv fans
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.8 * limit
    assert not bias.any()
    again = L.Conv2D(4, (3, 2), seed=0)
    again.build((6, 6, 5))
    np.testing.assert_array_equal(again.params["kernel"], kernel)


# -- configs --------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", sorted(CASES))
def test_config_round_trips_through_json(case):
    layer = CASES[case][0]()
    config = json.loads(json.dumps(layer.get_config()))
    clone = type(layer).from_config(config)
    assert json.loads(json.dumps(clone.get_config())) == config
    assert clone.name == layer.name


def test_config_contents_follow_keras():
    conv = L.Conv2D(8, (3, 1), strides=(2, 1), padding=(1, 0), activation="relu",
                    name="c", dtype="float64")
    assert conv.get_config() == {
        "filters": 8, "kernel_size": [3, 1], "strides": [2, 1], "padding": [1, 0],
        "dilation_rate": [1, 1], "activation": "relu", "use_bias": True, "kernel_initializer": "glorot_uniform",
        "bias_initializer": "zeros", "seed": None, "name": "c", "dtype": "float64"}
    assert L.MaxPooling2D(3).get_config()["strides"] == [3, 3]
    assert L.Dense(4).get_config()["activation"] == "linear"


def test_default_names_are_keras_style():
    names = [L.Conv2D(1, 1).name, L.MaxPooling2D().name, L.GlobalAveragePooling2D().name,
             L.Dense(1).name]
    stems = [n.rsplit("_", 1)[0] if n[-1].isdigit() and "_" in n else n for n in names]
    assert stems == ["conv2d", "max_pooling2d", "global_average_pooling2d", "dense"]


@pytest.mark.parametrize("make, match", [
    (lambda: L.Conv2D(0, 3), "filters must be a positive int, got 0"),
    (lambda: L.Conv2D(2, (3, 3, 3)), "kernel_size must be an int or a pair"),
    (lambda: L.Conv2D(2, 3, padding="sam"), "padding must be 'valid', 'same', 'full'"),
    (lambda: L.Conv2D(2, 3, activation="rellu"), "did you mean 'relu'"),
    (lambda: L.Dense(3, kernel_initializer="glorot"), "unknown initializer 'glorot'"),
    (lambda: L.Dropout(1.0), r"rate must be a float in \[0, 1\), got 1.0"),
    (lambda: L.MaxPooling2D(0), "pool_size must be positive"),
    (lambda: L.AveragePooling2D(2, padding=2), r"padding 2 must be smaller than pool_size "
                                               r"\(2, 2\) on every side"),
])
def test_constructor_arguments_are_validated(make, match):
    with pytest.raises((ValueError, TypeError, KeyError), match=match):
        make()


# -- behaviour ------------------------------------------------------------------------------------
def test_return_logits_skips_the_activation():
    dense = L.Dense(3, activation="softmax", seed=0)
    x = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    probs = dense.forward(x)
    logits = dense.forward(x, ctx=CallContext(return_logits=True))
    np.testing.assert_allclose(logits, x @ dense.params["kernel"] + dense.params["bias"],
                               rtol=1e-6)
    e = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(probs, e / e.sum(1, keepdims=True), rtol=1e-5)
    dout = np.ones_like(logits)
    np.testing.assert_allclose(dense.backward(dout), dout @ dense.params["kernel"].T, rtol=1e-6)
    np.testing.assert_allclose(dense.forward(x), probs)  # the mode was this call's only
    conv = L.Conv2D(2, 1, activation="relu", seed=0)
    y = conv.forward(np.random.default_rng(1).normal(size=(1, 4, 4, 1)),
                     ctx=CallContext(return_logits=True))
    assert (y < 0).any()  # relu skipped: negative logits stay


def test_dropout_is_identity_at_inference_and_inverted_in_training():
    drop = L.Dropout(0.25, seed=0)
    x = np.ones((50, 400), dtype=np.float32)
    assert drop.forward(x) is x or np.array_equal(drop.forward(x), x)
    y = drop.forward(x, training=True)
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / 0.75)
    assert abs(kept.mean() - 0.75) < 0.01
    dx = drop.backward(np.full_like(y, 2.0))
    np.testing.assert_allclose(dx, np.where(kept, 2 / 0.75, 0))
    # a fresh mask every call, the same sequence of masks for the same seed
    assert not np.array_equal(drop.forward(x, training=True) != 0, kept)
    again = L.Dropout(0.25, seed=0)
    np.testing.assert_array_equal(again.forward(x, training=True), y)


def test_float64_layers_compute_in_float64_and_ints_are_converted():
    conv = L.Conv2D(2, 3, dtype="float64", seed=0)
    assert conv.forward(np.ones((1, 4, 4, 1), dtype=np.float32)).dtype == np.float64
    assert conv.params["kernel"].dtype == np.float64
    assert L.Dense(2, seed=0).forward(np.ones((2, 3), dtype=np.int64)).dtype == np.float32
    flat = L.Flatten()
    assert flat.forward(np.ones((2, 2, 2, 1), dtype=np.uint8)).dtype == np.float32


def test_nan_input_is_rejected_unless_the_model_checked_it():
    x = np.ones((2, 4, 4, 1))
    x[0, 1, 1, 0] = np.nan
    for layer in (L.Conv2D(2, 3, seed=0), L.Dense(2, seed=0), L.MaxPooling2D()):
        xin = x if not isinstance(layer, L.Dense) else x.reshape(2, -1)
        with pytest.raises(ValueError, match=rf"the input of {type(layer).__name__} "
                                             rf"'{layer.name}' contains 1 NaN or infinite"):
            layer.forward(xin)
        # the model validated its input already: no second scan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            assert layer.forward(xin, ctx=CallContext(check_finite=False)).shape[0] == 2


def test_a_checked_batch_is_used_as_is_and_anything_else_converted():
    # inside fit the layers get checked float32 C-contiguous batches: they must not copy them;
    # other input is still converted, and scanned for NaN while check_finite is on
    dense = L.Dense(2, seed=0)
    checked = CallContext(check_finite=False)
    x = np.ones((4, 3), dtype=np.float32)
    dense.forward(x, training=True, ctx=checked)
    assert dense._cache[0] is x
    strided = np.ones((4, 6), dtype=np.float32)[:, ::2]
    dense.forward(strided, training=True, ctx=checked)
    assert dense._cache[0].flags.c_contiguous and dense._cache[0] is not strided
    dense.forward(np.ones((4, 3)), training=True, ctx=checked)  # float64 -> float32
    assert dense._cache[0].dtype == np.float32
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"the input of Dense .* contains 1 NaN"):
        dense.forward(x)


def test_flatten_backward_restores_the_input_shape():
    flat = L.Flatten()
    x = np.arange(2 * 4 * 3 * 5, dtype=np.float32).reshape(2, 4, 3, 5)
    y = flat.forward(x)
    assert y.shape == (2, 60)
    np.testing.assert_array_equal(flat.backward(y), x)
    with pytest.raises(ShapeError, match=r"forward output's shape \(2, 60\), got \(2, 59\)"):
        flat.backward(np.ones((2, 59)))


def test_backward_before_forward_is_a_clear_error():
    dense = L.Dense(2, name="fc")
    dense.build((3,))
    with pytest.raises(RuntimeError, match=r"Dense 'fc': call forward\(x, training=True\) "
                                           r"before backward"):
        dense.backward(np.ones((1, 2)))
    dense.forward(np.ones((4, 3)))
    with pytest.raises(ShapeError, match=r"forward output's shape \(4, 2\), got \(4, 3\)"):
        dense.backward(np.ones((4, 3)))


def test_layers_build_on_first_forward():
    conv = L.Conv2D(3, 3, seed=0)
    assert not conv.built
    assert conv.forward(np.zeros((1, 5, 5, 2))).shape == (1, 3, 3, 3)
    assert conv.built and conv.input_shape == (5, 5, 2) and conv.output_shape == (3, 3, 3)


def test_concatenate_splits_gradient_back():
    cat = L.Concatenate()
    a, b = np.ones((2, 3, 3, 2)), np.zeros((2, 3, 3, 1))
    y = cat.forward([a, b])
    assert y.shape == (2, 3, 3, 3)
    da, db = cat.backward(np.arange(y.size, dtype=np.float32).reshape(y.shape))
    assert da.shape == a.shape and db.shape == b.shape
    np.testing.assert_array_equal(db[..., 0], np.arange(2, y.size, 3).reshape(2, 3, 3))


def test_global_pools_reduce_whole_maps():
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(L.GlobalMaxPooling2D().forward(x), x.max(axis=(1, 2)))
    np.testing.assert_allclose(L.GlobalAveragePooling2D().forward(x), x.mean(axis=(1, 2)),
                               rtol=1e-6)
    np.testing.assert_allclose(L.GlobalMinPooling2D().forward(x), x.min(axis=(1, 2)))


def test_keras_input_shape_argument_as_in_the_course():
    model = cytorch.Sequential()
    model.add(L.Conv2D(10, (5, 5), activation="relu", input_shape=(28, 28, 1)))
    model.add(L.MaxPooling2D((2, 2)))
    model.add(L.Conv2D(20, (5, 5), activation="relu"))
    model.add(L.MaxPooling2D((2, 2)))
    model.add(L.Flatten())
    model.add(L.Dense(100, activation="relu"))
    model.add(L.Dense(10, activation="softmax"))
    assert [layer.count_params() for layer in model.layers] == [260, 0, 5020, 0, 0, 32100, 1010]
    assert model.count_params() == 38390
    conv = model.layers[0]
    assert conv.declared_input_shape == (28, 28, 1)
    assert type(conv).from_config(conv.get_config()).declared_input_shape == (28, 28, 1)
    with pytest.raises(ShapeError, match=r"Conv2D '.*' expects samples of shape \(H, W, C\), "
                                         r"got \(10,\)"):
        model.add(L.Conv2D(3, 3))
    assert model.count_params() == 38390  # the layer that did not fit was not kept
    with pytest.raises(TypeError, match="input_shape must be a tuple of ints"):
        L.Dense(3, input_shape="28x28")


def test_global_pool_keepdims_as_in_keras():
    pool = L.GlobalAveragePooling2D(keepdims=True)
    assert pool.compute_output_shape((5, 6, 3)) == (1, 1, 3)
    assert pool.forward(np.ones((2, 5, 6, 3))).shape == (2, 1, 1, 3)
    assert pool.backward(np.ones((2, 1, 1, 3))).shape == (2, 5, 6, 3)
    assert pool.get_config()["keepdims"] is True
