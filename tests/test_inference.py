"""Inference: the forward passes that no backward follows (``predict``, ``evaluate``).

Max and min pooling with ``need_backward=False`` record no winners, and with
``activation="relu"`` apply the ReLU that the graph pass ``relu_after_pooling`` moved after
them; 2x2 windows then run their own row kernel (``_pool2x2.h``, ``cy_extreme_row_*``).  Here:
that kernel and the general path against the twins on random shapes, the fused ReLU's gradient
by finite differences, refusals, and the models' inference contexts giving the same bits as
before.
"""
import threading

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

import cytorch
from cytorch import functional as F
from cytorch import layers as L
from cytorch import models, reference
from cytorch._gradcheck import numerical_gradient, relative_error
from cytorch._shapes import resolve_padding

DTYPES = st.sampled_from([np.float32, np.float64])


def assert_same_bits(got, want, what=""):
    """Equal values and dtypes, and the same sign on every zero (relu gives +0)."""
    assert got.dtype == want.dtype and got.shape == want.shape, what
    np.testing.assert_array_equal(got, want, err_msg=what)
    assert (np.signbit(got) == np.signbit(want)).all(), f"{what}: the sign of a zero differs"


def values(rng, shape, dtype):
    """Small integers (ties: the first winner matters) with -0.0 and +0.0 among them."""
    x = rng.integers(-3, 4, shape).astype(dtype)
    x[rng.random(shape) < 0.1] = -0.0
    return x


@pytest.mark.parametrize("kind", ["max", "min"])
@settings(max_examples=60, deadline=None)
@given(N=st.integers(1, 3), H=st.integers(2, 11), W=st.integers(2, 13), C=st.integers(1, 40),
       dtype=DTYPES, relu=st.booleans(), threads=st.integers(1, 3), seed=st.integers(0, 2 ** 16))
@example(N=2, H=24, W=24, C=10, dtype=np.float32, relu=True, threads=2, seed=0)  # keras_mnist
@example(N=2, H=8, W=8, C=20, dtype=np.float32, relu=True, threads=1, seed=0)
def test_pool2x2_without_winners_matches_its_twin(kind, N, H, W, C, dtype, relu, threads, seed):
    # C from 1 to 40: the scalar loop (C < 4 floats, < 2 doubles), every vector width and the
    # overlapping last vector of a window (C = 10: two ymm at 0 and 2; C = 20: zmm at 0 and 4)
    rng = np.random.default_rng(seed)
    x = values(rng, (N, H, W, C), dtype)
    activation = "relu" if relu else None
    cytorch.set_num_threads(threads)
    try:
        out, cache = getattr(F, f"{kind}_pool2d_forward")(x, 2, activation=activation,
                                                          need_backward=False)
        trained, _ = getattr(F, f"{kind}_pool2d_forward")(x, 2, activation=activation)
    finally:
        cytorch.set_num_threads(None)
    want, want_cache = getattr(reference, f"{kind}_pool2d_2x2_forward")(
        x, activation=activation, need_backward=False)
    assert_same_bits(out, want)
    assert_same_bits(out, trained)          # what the training path gives, to the bit
    assert cache["argidx"] is None and want_cache["argidx"] is None
    if relu:
        plain = getattr(reference, f"{kind}_pool2d_2x2_forward")(x)[0]
        assert_same_bits(out, reference.activation_forward("relu", plain))


@pytest.mark.parametrize("kind", ["max", "min"])
@settings(max_examples=60, deadline=None)
@given(N=st.integers(1, 2), H=st.integers(1, 9), W=st.integers(1, 9), C=st.integers(1, 5),
       ph=st.integers(1, 4), pw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3),
       padding=st.sampled_from(["valid", "same"]), dtype=DTYPES, relu=st.booleans(),
       seed=st.integers(0, 2 ** 16))
def test_any_pooling_without_winners_matches_its_twin(kind, N, H, W, C, ph, pw, sh, sw,
                                                      padding, dtype, relu, seed):
    # the general row path with a scratch row for the winners nobody keeps
    pads = resolve_padding(padding, H, W, ph, pw, sh, sw)
    if H + pads[0] + pads[1] < ph or W + pads[2] + pads[3] < pw:
        return
    rng = np.random.default_rng(seed)
    x = values(rng, (N, H, W, C), dtype)
    activation = "relu" if relu else None
    args = ((ph, pw), (sh, sw), padding)
    out, cache = getattr(F, f"{kind}_pool2d_forward")(x, *args, activation=activation,
                                                      need_backward=False)
    want, _ = getattr(reference, f"{kind}_pool2d_forward")(x, *args, activation=activation,
                                                           need_backward=False)
    assert cache["argidx"] is None
    assert_same_bits(out, want)
    with cytorch.backend("reference"):
        twin, _ = getattr(F, f"{kind}_pool2d_forward")(x, *args, activation=activation,
                                                       need_backward=False)
    assert_same_bits(twin, want)


@pytest.mark.parametrize("kind", ["max", "min"])
@pytest.mark.parametrize("pool, strides", [(2, None), (3, 2)])
def test_pooling_with_relu_gradient(kind, pool, strides):
    # relu(pool(x)): backward multiplies dout by [out > 0], then routes it; compiled == twin
    # and both == finite differences (float64; values far from the kinks and from ties)
    rng = np.random.default_rng(0)
    x = rng.permutation(np.linspace(-3, 3, 2 * 7 * 6 * 3)).reshape(2, 7, 6, 3)
    x += -2 if kind == "max" else 2         # some windows pool to <= 0, others to > 0
    forward = getattr(F, f"{kind}_pool2d_forward")
    backward = getattr(F, f"{kind}_pool2d_backward")
    out, cache = forward(x, pool, strides, activation="relu")
    dout = rng.standard_normal(out.shape)
    dx = backward(dout, cache)
    with cytorch.backend("reference"):
        twin_out, twin_cache = forward(x, pool, strides, activation="relu")
        twin_dx = backward(dout, twin_cache)
    np.testing.assert_array_equal(out, twin_out)
    np.testing.assert_array_equal(dx, twin_dx)
    assert (out == 0).any() and (out > 0).any()    # both sides of the kink are exercised

    def f(v):
        return forward(v, pool, strides, activation="relu")[0]
    assert relative_error(dx, numerical_gradient(f, x, dout)) < 1e-8


@pytest.mark.parametrize("backend", ["compiled", "reference"])
@pytest.mark.parametrize("kind", ["max", "min"])
def test_backward_refuses_a_cache_without_winners(backend, kind):
    with cytorch.backend(backend):
        out, cache = getattr(F, f"{kind}_pool2d_forward")(np.ones((1, 4, 4, 1)), 2,
                                                          need_backward=False)
        with pytest.raises(ValueError, match=rf"{kind}_pool2d_backward needs the winners of "
                                             rf"each window.*need_backward=False"):
            getattr(F, f"{kind}_pool2d_backward")(np.ones(out.shape), cache)


@pytest.mark.parametrize("backend", ["compiled", "reference"])
def test_pooling_refuses_another_activation(backend):
    with cytorch.backend(backend), pytest.raises(
            ValueError, match=r"max_pool2d: activation must be None, 'linear' or 'relu' .*"
                              r"got 'tanh'"):
        F.max_pool2d_forward(np.ones((1, 4, 4, 1)), 2, activation="tanh")
    out, cache = F.max_pool2d_forward(-np.ones((1, 4, 4, 1)), 2, activation="linear")
    assert (out == -1).all() and cache["activation"] is None


# -- models -------------------------------------------------------------------------------------
def training_path_forward(model, x, batch_size):
    """The model's outputs through the contexts of before (no inference mode): pooling records
    its winners and a ReLU mask, as for a training step."""
    with model._running():
        return np.concatenate([
            model._forward(model._take([x], slice(s, s + batch_size)), training=False,
                           contexts=model._contexts())
            for s in range(0, len(x), batch_size)])


def pooling_net(seed, dtype="float32"):
    """Min and overlapping max pooling after ReLU convs."""
    return cytorch.Sequential([
        L.Input((13, 11, 2)), L.Conv2D(5, 3, activation="relu", dtype=dtype),
        L.MinPooling2D(2, dtype=dtype),
        L.Conv2D(17, 2, activation="relu", padding="same", dtype=dtype),
        L.MaxPooling2D(3, strides=2, dtype=dtype), L.Flatten(dtype=dtype),
        L.Dense(4, activation="softmax", dtype=dtype)], seed=seed)


@pytest.mark.parametrize("make, shape, dtype", [
    (lambda: models.keras_mnist(seed=0), (300, 28, 28, 1), np.uint8),
    (lambda: pooling_net(1), (37, 13, 11, 2), np.float32),
    (lambda: pooling_net(2, "float64"), (37, 13, 11, 2), np.float64)])
def test_predict_gives_the_bits_of_the_training_path(make, shape, dtype):
    model = make()
    rng = np.random.default_rng(0)
    x = (rng.integers(0, 256, shape) if dtype == np.uint8 else rng.standard_normal(shape))
    x = x.astype(dtype)
    for batch_size in (256, 7):
        got = model.predict(x, batch_size=batch_size)
        assert_same_bits(got, training_path_forward(model, x, batch_size), f"{batch_size}")
    assert_same_bits(model.predict_on_batch(x[:5]), got[:5])
    assert all(layer._cache is None for layer in model.layers)


def test_predict_and_evaluate_pool_without_winners(monkeypatch):
    # the kernels are asked for no winners and for the ReLU the convs deferred to them
    calls = []
    forward = F.max_pool2d_forward

    def spy(*args, **kwargs):
        calls.append((kwargs.get("need_backward", True), kwargs.get("activation")))
        return forward(*args, **kwargs)
    monkeypatch.setattr(F, "max_pool2d_forward", spy)
    model = models.keras_mnist(seed=0).compile(loss="sparse_categorical_crossentropy")
    # (without conv_max_pool, which has the convs pool themselves: tests/test_fused_pool.py)
    model.graph_passes = ("relu_after_pooling",)
    x = np.random.default_rng(0).integers(0, 256, (20, 28, 28, 1)).astype(np.uint8)
    y = np.arange(20) % 10
    model.predict(x)
    model.evaluate(x, y, verbose=0)
    assert calls == [(False, "relu")] * 4
    calls.clear()
    model.fit(x, y, epochs=1, batch_size=20, verbose=0)
    assert calls == [(True, "relu")] * 2          # training records winners, ReLU fused
    model.layers[1].forward(model.layers[0].forward(x.astype(np.float32)))
    assert calls[-1] == (True, None)              # so does a layer called on its own
    model.layers[1].backward(np.ones((20, 12, 12, 10), np.float32))


# -- predict on several threads -------------------------------------------------------------------
@pytest.mark.parametrize("n, batch_size", [(1, 256), (300, 256), (700, 64), (129, 16)])
def test_predict_on_two_threads_gives_the_bits_of_one(n, batch_size):
    # whole batches run side by side, each with one-thread kernels: the same numbers
    model = models.keras_mnist(seed=3)
    x = np.random.default_rng(n).integers(0, 256, (n, 28, 28, 1)).astype(np.uint8)
    results = []
    for threads in (1, 2, 3):
        cytorch.set_num_threads(threads)
        try:
            results.append(model.predict(x, batch_size=batch_size))
        finally:
            cytorch.set_num_threads(None)
    for got in results[1:]:
        assert_same_bits(got, results[0])
    assert_same_bits(results[0], training_path_forward(model, x, batch_size))
    assert all(getattr(layer, "_workspace", None) is None for layer in model.layers)


def test_predict_workers_run_one_thread_kernels(monkeypatch):
    seen = []
    conv = F.conv2d_max_pool2d_forward      # keras_mnist's convs, each with its pooling

    def spy(*args, **kwargs):
        seen.append((threading.get_ident(), cytorch.get_num_threads()))
        return conv(*args, **kwargs)
    monkeypatch.setattr(F, "conv2d_max_pool2d_forward", spy)
    model = models.keras_mnist(seed=0)
    x = np.zeros((20 * 32, 28, 28, 1), np.float32)   # (workers take the next batch free)
    before = cytorch.get_num_threads()
    cytorch.set_num_threads(2)
    try:
        model.predict(x, batch_size=32)
    finally:
        cytorch.set_num_threads(None)
    main = threading.get_ident()
    assert seen[:2] == [(main, 2)] * 2       # the first batch, in this thread, two threads
    assert len({ident for ident, _ in seen[2:]}) == 2     # then this one and one more
    assert {threads for _, threads in seen[2:]} == {1}
    assert cytorch.get_num_threads() == before           # this thread's own count is back


def test_predict_workers_take_the_next_batch_free(monkeypatch):
    # a worker that is slowed (here: this thread, by a sleep) takes fewer batches
    import time
    main, seen = threading.get_ident(), []
    forward = F.conv2d_max_pool2d_forward

    def slow_here(*args, **kwargs):
        seen.append(threading.get_ident())
        if threading.get_ident() == main and len(seen) > 2:
            time.sleep(0.02)
        return forward(*args, **kwargs)
    monkeypatch.setattr(F, "conv2d_max_pool2d_forward", slow_here)
    model = models.keras_mnist(seed=0)
    x = np.random.default_rng(0).integers(0, 256, (21 * 16, 28, 28, 1)).astype(np.uint8)
    cytorch.set_num_threads(2)
    try:
        got = model.predict(x, batch_size=16)
    finally:
        cytorch.set_num_threads(None)
    # 21 batches, two convs each: the first here, then of 20 fewer than half here
    assert len(seen) == 2 * 21 and seen[2:].count(main) < 20
    model.graph_passes = ()
    assert_same_bits(got, model.predict(x, batch_size=16))


class Counting(L.Flatten):
    """A layer defined outside cytorch.layers: predict keeps one batch at a time for it."""


def test_predict_runs_a_plugin_layer_in_one_thread(monkeypatch):
    model = cytorch.Sequential([L.Input((6, 6, 1)), L.Conv2D(2, 3), Counting(),
                                L.Dense(3, activation="softmax")], seed=0)
    idents = []
    forward = Counting.forward

    def spy(self, *args, **kwargs):
        idents.append(threading.get_ident())
        return forward(self, *args, **kwargs)
    monkeypatch.setattr(Counting, "forward", spy)
    cytorch.set_num_threads(2)
    try:
        model.predict(np.zeros((50, 6, 6, 1)), batch_size=8)
    finally:
        cytorch.set_num_threads(None)
    assert set(idents) == {threading.get_ident()} and len(idents) == 7


def test_an_error_in_a_worker_reaches_the_caller(monkeypatch):
    model = models.keras_mnist(seed=0)
    calls = []
    forward = F.conv2d_max_pool2d_forward

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 7:
            raise RuntimeError("the seventh conv call fails")
        return forward(*args, **kwargs)
    monkeypatch.setattr(F, "conv2d_max_pool2d_forward", failing)
    cytorch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError, match="the seventh conv call fails"):
            model.predict(np.zeros((40 * 16, 28, 28, 1), np.float32), batch_size=16)
    finally:
        cytorch.set_num_threads(None)
    assert len(calls) < 2 * 40           # the other worker stopped after its batch
    assert all(getattr(layer, "_workspace", None) is None for layer in model.layers)
