"""The layers after LeNet (issue 11): depthwise conv against its twin and finite differences,
the moving-value layers, merges, saving and loading a model with every one of them, and their
argument checks.  (check_layer runs on each in test_layers.py; Keras in test_keras_layers.py.)
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import cytorch
from cytorch import Model, functional as F, layers as L, reference as R
from cytorch._gradcheck import numerical_gradient, relative_error
from cytorch.errors import ShapeError
from cytorch.layers.reshaping import interpolation_matrix


@st.composite
def depthwise_cases(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    padding = draw(st.sampled_from(["valid", "same", "full", 1, ((1, 0), (0, 2))]))
    H, W = draw(st.integers(kh, 7)), draw(st.integers(kw, 7))
    return (draw(st.integers(1, 3)), H, W, draw(st.integers(1, 4))), (kh, kw), \
        draw(st.integers(1, 3)), (sh, sw), padding


@settings(max_examples=40, deadline=None)
@given(case=depthwise_cases(), bias=st.booleans(), seed=st.integers(0, 2**16),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_depthwise_kernel_matches_its_twin(case, bias, seed, dtype):
    shape, (kh, kw), dm, strides, padding = case
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape).astype(dtype)
    w = rng.normal(size=(kh, kw, shape[3], dm)).astype(dtype)
    b = rng.normal(size=shape[3] * dm).astype(dtype) if bias else None
    out, cache = F.depthwise_conv2d_forward(x, w, b, strides, padding)
    out_r, cache_r = R.depthwise_conv2d_forward(x, w, b, strides, padding)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    assert out.dtype == dtype and relative_error(out, out_r) < tol
    dout = rng.normal(size=out.shape).astype(dtype)
    got, want = F.depthwise_conv2d_backward(dout, cache), R.depthwise_conv2d_backward(dout,
                                                                                      cache_r)
    for name, g, r in zip(("dx", "dw", "db"), got, want):
        if r is None:
            assert g is None
            continue
        assert g.dtype == dtype and relative_error(g, r) < 5 * tol, name


def test_depthwise_is_a_conv_per_channel():
    # the definition, written with conv2d: channel c with its own dm filters
    rng = np.random.default_rng(1)
    x, w = rng.normal(size=(2, 6, 5, 3)), rng.normal(size=(3, 2, 3, 2))
    out, _ = F.depthwise_conv2d_forward(x, w, strides=(1, 2), padding="same")
    for c in range(3):
        ref, _ = F.conv2d_forward(x[..., c:c + 1], w[:, :, c:c + 1, :], strides=(1, 2),
                                  padding="same")
        np.testing.assert_allclose(out[..., 2 * c:2 * c + 2], ref, rtol=1e-12)


@pytest.mark.parametrize("backend", ["compiled", "reference"])
def test_depthwise_gradients_by_finite_differences(backend):
    rng = np.random.default_rng(2)
    x, w, b = rng.normal(size=(2, 5, 4, 2)), rng.normal(size=(3, 2, 2, 2)), rng.normal(size=4)
    with cytorch.backend(backend):
        out, cache = F.depthwise_conv2d_forward(x, w, b, 2, "same")
        dout = rng.normal(size=out.shape)
        dx, dw, db = F.depthwise_conv2d_backward(dout, cache)

        def f(x=x, w=w, b=b):
            return F.depthwise_conv2d_forward(x, w, b, 2, "same")[0]
        assert relative_error(dx, numerical_gradient(lambda v: f(x=v), x, dout)) < 1e-8
        assert relative_error(dw, numerical_gradient(lambda v: f(w=v), w, dout)) < 1e-8
        assert relative_error(db, numerical_gradient(lambda v: f(b=v), b, dout)) < 1e-8


def test_separable_is_depthwise_then_pointwise_and_counts_its_work():
    layer = L.SeparableConv2D(8, 3, depth_multiplier=2, padding="same", seed=0, dtype="float64")
    x = np.random.default_rng(3).normal(size=(2, 6, 6, 3))
    y = layer.forward(x)
    z, _ = F.depthwise_conv2d_forward(x, layer.params["depthwise_kernel"], padding="same")
    np.testing.assert_allclose(y, z @ layer.params["pointwise_kernel"][0, 0]
                               + layer.params["bias"], rtol=1e-12)
    assert layer.count_params() == 3 * 3 * 3 * 2 + 6 * 8 + 8
    assert layer.count_macs() == 6 * 6 * 6 * (9 + 8)


def test_interpolation_matrices_keep_constants_and_nearest_repeats():
    for n, f in [(1, 3), (3, 2), (5, 4)]:
        R_b = interpolation_matrix(n, f, "bilinear")
        np.testing.assert_allclose(R_b.sum(axis=1), 1)          # rows are convex weights
        assert (R_b >= 0).all()
        np.testing.assert_array_equal(interpolation_matrix(n, f, "nearest") @ np.arange(n),
                                      np.repeat(np.arange(n), f))


def test_nearest_upsampling_backward_sums_blocks():
    layer = L.UpSampling2D((2, 3), dtype="float64")
    x = np.random.default_rng(4).normal(size=(1, 2, 2, 1))
    layer.forward(x)
    dx = layer.backward(np.ones((1, 4, 6, 1)))
    np.testing.assert_array_equal(dx, np.full((1, 2, 2, 1), 6.0))


def test_spatial_dropout_drops_whole_maps_and_is_seeded():
    x = np.ones((8, 5, 5, 16), dtype=np.float32)
    a = L.SpatialDropout2D(0.25, seed=3).forward(x, training=True)
    b = L.SpatialDropout2D(0.25, seed=3).forward(x, training=True)
    np.testing.assert_array_equal(a, b)
    per_map = a[:, 0, 0, :]
    assert (a == per_map[:, None, None, :]).all()            # constant over H and W
    assert set(np.unique(per_map)) == {0, np.float32(1 / 0.75)}
    assert 0.1 < (per_map == 0).mean() < 0.4
    layer = L.SpatialDropout2D(0.25)
    assert layer.forward(x) is not None and (layer.forward(x) == 1).all()   # inference


def test_merges_compute_and_route_gradients():
    a, b, c = (np.array([[1.0, -2.0, 3.0]]), np.array([[4.0, 5.0, -6.0]]),
               np.array([[0.5, 7.0, 2.0]]))
    m = L.Maximum(dtype="float64")
    np.testing.assert_array_equal(m.forward([a, b, c]), [[4, 7, 3]])
    ga, gb, gc = m.backward(np.ones((1, 3)))
    np.testing.assert_array_equal(np.stack([ga, gb, gc])[:, 0], [[0, 0, 1], [1, 0, 0], [0, 1, 0]])
    tie = L.Maximum(dtype="float64")
    tie.forward([a, a])
    g1, g2 = tie.backward(np.ones((1, 3)))
    assert (g1 == 1).all() and (g2 == 0).all()                # ties: the first input
    mul = L.Multiply(dtype="float64")
    np.testing.assert_array_equal(mul.forward([a, b, c]), a * b * c)
    np.testing.assert_array_equal(mul.backward(np.ones((1, 3)))[1], a * c)
    np.testing.assert_array_equal(L.Subtract(dtype="float64").forward([a, b]), a - b)
    np.testing.assert_allclose(L.Average(dtype="float64").forward([a, b, c]), (a + b + c) / 3)


def _every_new_layer_model():
    i = L.Input((8, 8, 2), name="in")
    x = L.ZeroPadding2D(1, name="pad")(i)                                   # 10x10x2
    x = L.DepthwiseConv2D(3, depth_multiplier=2, activation="relu", seed=0, name="dw")(x)
    x = L.BatchNormalization(name="bn")(x)                                  # 8x8x4
    x = L.SpatialDropout2D(0.2, seed=0, name="sd")(x)
    y1 = L.SeparableConv2D(4, 3, padding="same", activation="gelu", seed=1, name="sep")(x)
    y2 = L.LeakyReLU(name="lr")(x)
    y3 = L.ELU(name="elu")(x)
    x = L.Maximum(name="max")([L.Multiply(name="mul")([y1, y2]), L.Subtract(name="sub")([y3, y1])])
    x = L.Average(name="avg")([x, y3])
    x = L.UpSampling2D(interpolation="bilinear", name="up")(L.MaxPooling2D(4, name="mp")(x))
    x = L.Reshape((4 * 4, 4), name="rs")(x)
    out = L.Dense(3, activation="softmax", seed=2, name="out")(L.Flatten(name="fl")(x))
    return Model(i, out, seed=0)


def test_a_model_with_every_new_layer_trains_saves_and_loads(tmp_path):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(40, 8, 8, 2)).astype(np.float32)
    y = rng.integers(0, 3, size=40)
    model = _every_new_layer_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(X, y, batch_size=8, epochs=2, verbose=0, seed=0)
    text = model.summary(print_fn=None)
    assert "Non-trainable params: 8" in text                      # the BN's moving statistics
    path = model.save(tmp_path / "every.npz")
    loaded = cytorch.load_model(path)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert [type(layer).__name__ for layer in loaded.layers] == \
        [type(layer).__name__ for layer in model.layers]


@pytest.mark.parametrize("make, error, match", [
    (lambda: L.ZeroPadding2D(-1), ValueError, r"padding must be an int >= 0.*got -1"),
    (lambda: L.ZeroPadding2D((1, 2, 3)), ValueError, r"padding must be .*got \(1, 2, 3\)"),
    (lambda: L.ZeroPadding2D(1.5), ValueError, r"padding must be .*got 1\.5"),
    (lambda: L.Reshape((2, -1, -1)), ValueError, r"target_shape must be a non-empty tuple of "
                                                 r"positive ints, with at most one -1"),
    (lambda: L.Reshape(()), ValueError, r"target_shape must be"),
    (lambda: L.Reshape(5), ValueError, r"target_shape must be .*got 5"),
    (lambda: L.Reshape((5, 0)), ValueError, r"target_shape must be .*got \(5, 0\)"),
    (lambda: L.Reshape((5, 7), name="r").build((4, 4, 2)), ShapeError,
     r"Reshape 'r' cannot reshape samples of shape \(4, 4, 2\) \(32 values\) to \(5, 7\) "
     r"\(35 values\)"),
    (lambda: L.Reshape((5, -1), name="r").build((4, 4, 2)), ShapeError,
     r"Reshape 'r' cannot reshape .* \(32 values\) to \(5, -1\): 32 is not a multiple of 5"),
    (lambda: L.UpSampling2D(0), ValueError, r"size must be a positive int or a pair of "
                                            r"positive ints, got 0"),
    (lambda: L.UpSampling2D((2, 2.0)), ValueError, r"size must be .*got \(2, 2\.0\)"),
    (lambda: L.UpSampling2D(interpolation="bicubic"), ValueError,
     r"interpolation must be 'nearest' or 'bilinear', got 'bicubic'"),
    (lambda: L.SpatialDropout2D(1.0), ValueError, r"rate must be a float in \[0, 1\), got 1\.0"),
    (lambda: L.SpatialDropout2D(0.5, seed="s"), ValueError, r"seed must be"),
    (lambda: L.DepthwiseConv2D(3, depth_multiplier=0), ValueError,
     r"depth_multiplier must be a positive int, got 0"),
    (lambda: L.DepthwiseConv2D(-3), ValueError, r"kernel_size must be positive, got -3"),
    (lambda: L.DepthwiseConv2D(3, padding="half"), ValueError, r"padding must be"),
    (lambda: L.DepthwiseConv2D(3, activation="rleu"), KeyError, r"unknown activation 'rleu'"),
    (lambda: L.DepthwiseConv2D(3, name="d").build((2, 2, 1)), ShapeError,
     r"DepthwiseConv2D 'd' needs at least 3x3 input"),
    (lambda: L.DepthwiseConv2D(3, name="d").build((5, 5)), ShapeError,
     r"DepthwiseConv2D 'd' expects samples of shape \(H, W, C\), got \(5, 5\)"),
    (lambda: L.SeparableConv2D(0, 3), ValueError, r"filters must be a positive int, got 0"),
    (lambda: L.SeparableConv2D(4, 3, pointwise_initializer="glorot"), KeyError,
     r"unknown initializer 'glorot'"),
    (lambda: L.SeparableConv2D(4, 3, use_bias=1), TypeError, r"use_bias must be a bool"),
    (lambda: L.Subtract(name="s").build([(3,), (3,), (3,)]), ShapeError,
     r"Subtract 's' subtracts exactly 2 inputs, got 3"),
    (lambda: L.Multiply(name="m").build([(3,), (4,)]), ShapeError,
     r"Multiply 'm' combines inputs of one shape, got \(3,\), \(4,\)"),
    (lambda: L.Maximum(name="m").build([(3,)]), ShapeError,
     r"Maximum 'm' merges a list of at least 2 inputs"),
])
def test_arguments_are_checked(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("call, error, match", [
    (lambda: F.depthwise_conv2d_forward(np.ones((1, 4, 4, 2)), np.ones((3, 3, 3, 1))),
     ShapeError, r"w has 3 channels \(w.shape\[2\]\), x has 2 \(x.shape\[3\]\)"),
    (lambda: F.depthwise_conv2d_forward(np.ones((1, 4, 4, 2)), np.ones((3, 3, 2))),
     ShapeError, r"w must be a 4-D array \(kh, kw, C, depth_multiplier\)"),
    (lambda: F.depthwise_conv2d_forward(np.ones((1, 4, 4, 2)), np.ones((3, 3, 2, 2)),
                                        np.ones(2)),
     ShapeError, r"b must have shape \(C \* depth_multiplier,\) = \(4,\), got shape \(2,\)"),
    (lambda: F.depthwise_conv2d_forward(np.ones((1, 2, 2, 2)), np.ones((3, 3, 2, 1))),
     ShapeError, r"depthwise_conv2d needs at least 3x3 input"),
    (lambda: F.depthwise_conv2d_forward(np.ones((4, 4, 2)), np.ones((3, 3, 2, 1))),
     ShapeError, r"x must be a 4-D array"),
    (lambda: F.depthwise_conv2d_backward(np.ones((1, 2, 2, 2)),
                                         F.conv2d_forward(np.ones((1, 4, 4, 2)),
                                                          np.ones((3, 3, 2, 2)))[1]),
     ValueError, r"depthwise_conv2d_backward needs the cache returned by "
                 r"depthwise_conv2d_forward"),
    (lambda: F.depthwise_conv2d_backward(np.ones((1, 3, 3, 2)),
                                         F.depthwise_conv2d_forward(np.ones((1, 4, 4, 2)),
                                                                    np.ones((3, 3, 2, 1)))[1]),
     ShapeError, r"dout must have the forward output's shape \(1, 2, 2, 2\), got \(1, 3, 3, 2\)"),
])
@pytest.mark.parametrize("backend", ["compiled", "reference"])
def test_the_depthwise_front_door_and_twin_check_their_arguments(call, error, match, backend):
    with cytorch.backend(backend):
        with pytest.raises(error, match=match):
            call()


@pytest.mark.parametrize("obj", [L.ZeroPadding2D, L.Reshape, L.UpSampling2D, L.SpatialDropout2D,
                                 L.DepthwiseConv2D, L.SeparableConv2D, interpolation_matrix,
                                 R.depthwise_conv2d_forward, F.depthwise_conv2d_forward])
def test_docstring_examples(obj):
    import doctest
    import sys
    module = sys.modules[obj.__module__]
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for t in doctest.DocTestFinder().find(obj, globs=dict(vars(module))):
        runner.run(t)
    assert runner.failures == 0 and runner.tries > 0
