"""conv2d then 2x2 max pooling in one call, for inference (``conv2d_max_pool2d_forward``).

The blocked path's fused kernel (``_blocked.pyx``) pools each image's conv output while it is
in cache; its numbers must be those of the two calls it replaces, ``conv2d_forward`` then
``max_pool2d_forward``, to the bit (max and ReLU are exact): on random shapes in both dtypes
with odd sizes, padding, ties and signed zeros, every activation of the kernels, NaN and inf
as the unfused pooling treats them, every instruction-set variant.  Then the graph pass
``conv_max_pool``: which layers it pairs, that only inference uses it, and that ``predict``
and ``evaluate`` give the same bits with and without it (keras_mnist, LeNet-5, a DAG).
The guard-page bounds tests are in ``test_kernel_bounds.py``.
"""
import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

import cytorch
from cytorch import Model, functional as F, layers as L, models, reference
from cytorch._kernels import EPILOGUES, load
from cytorch.errors import ShapeError

VARIANTS = load("_blocked").isa_variants()


def assert_same_bits(got, want, what=""):
    """Equal values (NaN where NaN), dtypes, and the sign of every zero."""
    assert got.dtype == want.dtype and got.shape == want.shape, what
    np.testing.assert_array_equal(got, want, err_msg=what)
    assert (np.signbit(got) == np.signbit(want)).all(), f"{what}: the sign of a zero differs"


def unfused(x, w, b, padding, activation, threads=1):
    """What the two layers compute in ``predict`` without the pass: the conv (ReLU left to the
    pooling, as ``relu_after_pooling`` does, or fused in the conv), then 2x2 max pooling."""
    cytorch.set_num_threads(threads)
    try:
        z, _ = F.conv2d_forward(x, w, b, padding=padding, activation=activation,
                                check_finite=False)
        return F.max_pool2d_forward(z, 2, check_finite=False, need_backward=False)[0]
    finally:
        cytorch.set_num_threads(None)


def fused(x, w, b, padding, activation, threads=1):
    cytorch.set_num_threads(threads)
    try:
        return F.conv2d_max_pool2d_forward(x, w, b, padding=padding, activation=activation,
                                           check_finite=False)
    finally:
        cytorch.set_num_threads(None)


def operands(rng, x_shape, w_shape, dtype):
    """Small integers: exact sums, many ties, zeros of both signs (b = -0.0 where a window's
    products are all 0 keeps a -0.0 out of a linear conv)."""
    x = rng.integers(-2, 3, x_shape).astype(dtype)
    w = rng.integers(-1, 2, w_shape).astype(dtype)
    b = rng.integers(-1, 2, w_shape[3]).astype(dtype)
    b[b == 0] = -0.0
    return x, w, b


# -- the kernel against the two calls it replaces ------------------------------------------------
PADDINGS = st.one_of(st.just("valid"), st.just("same"), st.integers(0, 2))


@settings(max_examples=80, deadline=None)
@given(N=st.integers(1, 3), H=st.integers(2, 15), W=st.integers(2, 15), C=st.integers(1, 6),
       K=st.sampled_from([1, 3, 5, 8, 10, 16, 17, 20]), kh=st.integers(1, 5),
       kw=st.integers(1, 5), padding=PADDINGS, dtype=st.sampled_from([np.float32, np.float64]),
       activation=st.sampled_from(EPILOGUES), threads=st.integers(1, 2),
       seed=st.integers(0, 2 ** 16))
@example(N=2, H=28, W=28, C=1, K=10, kh=5, kw=5, padding="valid", dtype=np.float32,
         activation="relu", threads=2, seed=0)                        # keras_mnist c1
@example(N=2, H=12, W=12, C=10, K=20, kh=5, kw=5, padding="valid", dtype=np.float32,
         activation="relu", threads=1, seed=0)                        # keras_mnist c2
@example(N=1, H=8, W=7, C=2, K=10, kh=3, kw=2, padding="valid", dtype=np.float64,
         activation="linear", threads=1, seed=1)                      # 6x6 -> 3x3, odd W
def test_fused_gives_the_bits_of_conv_then_pooling(N, H, W, C, K, kh, kw, padding, dtype,
                                                   activation, threads, seed):
    rng = np.random.default_rng(seed)
    x, w, b = operands(rng, (N, H, W, C), (kh, kw, C, K), dtype)
    try:
        want = unfused(x, w, b, padding, activation)
    except ShapeError:     # the conv's output has fewer than 2 rows or columns
        with pytest.raises(ShapeError, match="needs at least"):
            fused(x, w, b, padding, activation)
        return
    assert_same_bits(fused(x, w, b, padding, activation, threads), want)
    # (the shapes the blocked path takes run the fused kernel; the others conv + pool)
    twin = reference.conv2d_max_pool2d_forward(x, w, b, padding=padding, activation=activation)
    np.testing.assert_allclose(want, twin, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ["linear", "relu", "tanh"])
def test_nan_and_inf_are_pooled_as_the_unfused_pooling_does(dtype, activation):
    # NaN in a window's first cell stays, elsewhere it never wins (``_pool2x2.h``); inf - inf
    # sums make NaN in the conv output itself
    rng = np.random.default_rng(0)
    x, w, b = operands(rng, (2, 13, 12, 2), (3, 3, 2, 6), dtype)
    x[0, 0, 0, 0], x[0, 5, 7, 1], x[1, 3, 3, 0], x[1, 8, 2, 1] = np.nan, np.inf, -np.inf, np.nan
    x[1, 9, 9, :] = [np.inf, -np.inf]
    assert F.conv2d_max_pool2d_fused(x.shape, w.shape, dtype=dtype)
    want = unfused(x, w, b, "valid", activation)
    assert np.isnan(want).any() and (np.isinf(want).any() or activation == "tanh")
    assert_same_bits(fused(x, w, b, "valid", activation), want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_variant_computes_the_same(dtype):
    rng = np.random.default_rng(3)
    x, w, b = operands(rng, (3, 15, 14, 3), (5, 4, 3, 10), dtype)
    x[0, 1, 1, 0] = np.nan
    blocked = load("_blocked")
    results = {}
    try:
        for variant in VARIANTS:
            blocked._select_isa(variant)
            results[variant] = [fused(x, w, b, "same", act) for act in ("linear", "relu")]
    finally:
        blocked._select_isa("best")
    for variant, got in results.items():
        for g, want in zip(got, results[VARIANTS[0]]):
            assert_same_bits(g, want, variant)


def test_which_shapes_run_fused():
    fuses = F.conv2d_max_pool2d_fused
    assert fuses((256, 28, 28, 1), (5, 5, 1, 10)) and fuses((256, 12, 12, 10), (5, 5, 10, 20))
    assert not fuses((1, 28, 28, 1), (5, 5, 1, 10), strides=2)        # im2col + GEMM
    assert not fuses((1, 28, 28, 1), (5, 5, 1, 10), dilation_rate=2)
    assert not fuses((1, 28, 28, 1), (5, 5, 1, 3))                    # the direct path
    assert not fuses((1, 5, 6, 1), (5, 5, 1, 10))                     # a 1x2 conv output
    assert not fuses((1, 28, 28, 1), (5, 5, 1, 10), dtype=np.float16)


def test_arguments_are_checked_and_not_modified():
    x = np.ones((2, 6, 6, 1), np.float32)
    w = np.ones((3, 3, 1, 4), np.float32)
    before = x.copy(), w.copy()
    out = F.conv2d_max_pool2d_forward(x, w, np.zeros(4, np.float32), activation="relu")
    assert out.shape == (2, 2, 2, 4) and (out == 9).all()
    assert_same_bits(x, before[0]) and assert_same_bits(w, before[1])
    with pytest.raises(ShapeError, match=r"2x2 pooling of the conv output needs at least 2x2 "
                                         r"input .*got 1x4"):
        F.conv2d_max_pool2d_forward(x[:, :3], w)
    with pytest.raises(ValueError, match="activation"):
        F.conv2d_max_pool2d_forward(x, w, activation="softmax")
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        F.conv2d_max_pool2d_forward(x, w)


def test_the_kernel_refuses_an_output_that_does_not_fit():
    kernel = load("_blocked").conv2d_max_pool2d_forward
    x, w, b = np.ones((2, 6, 6, 1)), np.ones((3, 3, 1, 4)), np.zeros(4)
    kernel(x, w, b, np.empty((2, 2, 2, 4)), 4, 5, 0, 0, 1)         # 4x5 -> 2x2
    for out_shape, H_out, W_out in [((2, 2, 2, 4), 4, 6), ((2, 2, 2, 4), 1, 4),
                                    ((2, 0, 2, 4), 1, 4), ((1, 2, 2, 4), 4, 4),
                                    ((2, 2, 2, 3), 4, 4)]:
        with pytest.raises(ValueError, match="kernel"):
            kernel(x, w, b, np.empty(out_shape), H_out, W_out, 0, 0, 1)


def test_the_reference_backend_runs_the_twin():
    rng = np.random.default_rng(0)
    x, w, b = operands(rng, (2, 9, 9, 1), (3, 3, 1, 10), np.float64)
    with cytorch.backend("reference"):
        got = F.conv2d_max_pool2d_forward(x, w, b, activation="relu")
    assert_same_bits(got, reference.conv2d_max_pool2d_forward(x, w, b, activation="relu"))
    np.testing.assert_allclose(got, fused(x, w, b, "valid", "relu"), rtol=1e-12)


# -- the graph pass ------------------------------------------------------------------------------
def keras_mnist64(seed):
    """keras_mnist's layers in float64."""
    d = "float64"
    return cytorch.Sequential([
        L.Input((28, 28, 1)), L.Conv2D(10, 5, activation="relu", dtype=d),
        L.MaxPooling2D(2, dtype=d),
        L.Conv2D(20, 5, activation="relu", dtype=d), L.MaxPooling2D(2, dtype=d),
        L.Flatten(dtype=d), L.Dense(100, activation="relu", dtype=d),
        L.Dense(10, activation="softmax", dtype=d)], seed=seed)


def fused_pairs(model, **kind):
    """(conv, pool) layer names the pass pairs in the contexts of one kind of call."""
    contexts = dict(zip(model.layers, model._contexts(**kind)))
    return [(node.inputs[0].layer.name, node.layer.name) for node in model._order
            if contexts[node.layer].pooled_by_input
            and contexts[node.inputs[0].layer].fuse_max_pool]


def test_the_pass_pairs_keras_mnist_for_inference_only():
    model = models.keras_mnist(seed=0)
    names = [layer.name for layer in model.layers]
    pairs = [(names[0], names[1]), (names[2], names[3])]
    assert fused_pairs(model, inference=True) == pairs
    assert fused_pairs(model, inference=True, logits=True, reuse_buffers=True) == pairs
    assert fused_pairs(model, training=True, logits=True) == []
    assert fused_pairs(model) == []
    model.graph_passes = ("relu_after_pooling",)
    assert fused_pairs(model, inference=True) == []
    # LeNet-5 has no max pooling; float64 keras_mnist's second conv is beyond the blocked
    # path's rule (K = 20 > 16 in float64): only the first is fused
    assert fused_pairs(models.lenet5(seed=0), inference=True) == []
    assert len(fused_pairs(keras_mnist64(0), inference=True)) == 1


def test_the_pass_leaves_what_it_cannot_fuse():
    i = L.Input((14, 14, 2))
    shared = L.Conv2D(8, 3, activation="relu")(i)            # read by a pool and by Flatten
    strided = L.Conv2D(8, 3, strides=2)(i)                      # im2col + GEMM
    gelu = L.Conv2D(8, 3, activation="gelu")(i)                 # no kernel applies gelu
    ok = L.Conv2D(8, 3, activation="tanh")(i)
    outs = [L.MaxPooling2D(2)(shared), L.Flatten()(shared), L.MaxPooling2D(2)(strided),
            L.MaxPooling2D(2)(gelu), L.MaxPooling2D(3, strides=2)(L.Conv2D(8, 3)(i)),
            L.MaxPooling2D(2, strides=1)(L.Conv2D(8, 3)(i)),
            L.MinPooling2D(2)(L.Conv2D(8, 3)(i)), L.AveragePooling2D(2)(L.Conv2D(8, 3)(i)),
            L.MaxPooling2D(2)(ok)]
    flat = L.Concatenate()([L.Flatten()(o) if len(o.shape) == 3 else o for o in outs])
    model = Model(i, L.Dense(3, activation="softmax")(flat), seed=0)
    assert fused_pairs(model, inference=True) == [(ok.layer.name, outs[-1].layer.name)]


def small_dag(dtype):
    """Two fused stages (linear and tanh convs, odd sizes) and one conv read twice."""
    i = L.Input((15, 13, 2))
    a = L.MaxPooling2D(2, dtype=dtype)(L.Conv2D(6, 3, padding="same", dtype=dtype)(i))
    b = L.Conv2D(5, 2, activation="tanh", dtype=dtype)(a)
    c = L.MaxPooling2D(2, dtype=dtype)(b)
    d = L.Conv2D(4, 2, activation="relu", dtype=dtype)(i)
    e = L.Concatenate()([L.Flatten()(c), L.Flatten()(L.MaxPooling2D(2)(d)), L.Flatten()(d)])
    return Model(i, L.Dense(3, activation="softmax", dtype=dtype)(e), seed=0)


@pytest.mark.parametrize("make, shape, dtype", [
    (lambda: models.keras_mnist(seed=0), (300, 28, 28, 1), np.uint8),
    (lambda: keras_mnist64(1), (40, 28, 28, 1), np.float64),
    (lambda: models.lenet5(seed=0), (40, 32, 32, 1), np.float32),
    (lambda: small_dag("float32"), (37, 15, 13, 2), np.float32),
    (lambda: small_dag("float64"), (37, 15, 13, 2), np.float64)])
@pytest.mark.parametrize("threads", [1, 2])
def test_predict_and_evaluate_give_the_same_bits_with_and_without_the_pass(make, shape, dtype,
                                                                          threads):
    model = make().compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = (rng.integers(0, 256, shape) if dtype == np.uint8 else rng.standard_normal(shape))
    x = x.astype(dtype)
    y = rng.integers(0, model.output_shape[-1], len(x))
    results = {}
    cytorch.set_num_threads(threads)
    try:
        for passes in [(), ("relu_after_pooling",), ("relu_after_pooling", "conv_max_pool"),
                       ("conv_max_pool",)]:
            model.graph_passes = passes
            results[passes] = (model.predict(x, batch_size=16),
                               model.predict_on_batch(x[:5]),
                               model.evaluate(x, y, batch_size=16))
    finally:
        cytorch.set_num_threads(None)
    (want, want_batch, want_eval), *others = results.values()
    for got, got_batch, got_eval in others:
        assert_same_bits(got, want)
        assert_same_bits(got_batch, want_batch)
        assert got_eval == want_eval
    assert all(layer._cache is None for layer in model.layers)
    assert all(getattr(layer, "_workspace", None) is None for layer in model.layers)


def test_predict_calls_the_fused_function_and_training_the_layers(monkeypatch):
    calls = []
    for name in ("conv2d_max_pool2d_forward", "conv2d_forward", "max_pool2d_forward"):
        def spy(*args, _f=getattr(F, name), _name=name, **kwargs):
            calls.append(_name)
            return _f(*args, **kwargs)
        monkeypatch.setattr(F, name, spy)
    model = models.keras_mnist(seed=0).compile(loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).integers(0, 256, (20, 28, 28, 1)).astype(np.uint8)
    y = np.arange(20) % 10
    model.predict(x)
    model.evaluate(x, y)
    assert calls == ["conv2d_max_pool2d_forward"] * 4
    calls.clear()
    model.fit(x, y, batch_size=20, epochs=1, verbose=0)
    assert calls == ["conv2d_forward", "max_pool2d_forward"] * 2


def test_a_layer_asked_to_fuse_an_activation_no_kernel_has():
    # the pass never asks this of a gelu conv; a caller that does gets the two steps' numbers
    layer = L.Conv2D(4, 3, activation="gelu", seed=0)
    x = np.random.default_rng(0).standard_normal((2, 9, 9, 1)).astype(np.float32)
    want = F.max_pool2d_forward(layer.forward(x), 2)[0]
    ctx = cytorch.layers.context.CallContext(fuse_max_pool=True, defer_relu=True)
    assert_same_bits(layer.forward(x, ctx=ctx), want)
    assert layer._cache is None
