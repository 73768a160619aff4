"""Buffer reuse in ``fit``: a steady-state training step allocates none of its large arrays
(convolution and pooling outputs, max-pooling winners, dL/dx, shuffled batches), and nothing a
user receives shares memory with a reused buffer.  Bytes, not times: ``tracemalloc`` counts
what NumPy allocates; ``benchmarks/profile_memory.py`` prints the numbers."""
import tracemalloc

import numpy as np
import pytest

import cytorch
from cytorch import callbacks, functional as F, layers as L
from cytorch.layers.base import Layer, Workspace


def small_net():
    """Conv + max pool (ReLU moved after it by the graph pass) + conv + average pool + dropout
    + Dense: every layer kind that reuses buffers, and the fused loss."""
    cytorch.set_seed(0)
    model = cytorch.Sequential([
        L.Input((20, 20, 1)), L.Conv2D(8, 3, activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(12, 3, activation="tanh"), L.AveragePooling2D(2), L.Flatten(),
        L.Dropout(0.25), L.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def data(n=300):
    rng = np.random.default_rng(0)
    return rng.random((n, 20, 20, 1), dtype=np.float32), rng.integers(0, 10, n)


class BatchMemory(callbacks.Callback):
    """Per batch: the most NumPy memory (tracemalloc) the step held above what was held when it
    began, and the bytes the layers' workspaces hold at its end."""

    def __init__(self):
        self.transient, self.held = [], []

    def on_batch_begin(self, batch, logs=None):
        self.base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()

    def on_batch_end(self, batch, logs=None):
        self.transient.append(tracemalloc.get_traced_memory()[1] - self.base)
        self.held.append(sum(layer._workspace.nbytes for layer in self.model.layers
                             if getattr(layer, "_workspace", None) is not None))


def measure(model, x, y, batch_size=64):
    probe = BatchMemory()
    cytorch.set_num_threads(1)        # kernel scratch depends on the thread count
    tracemalloc.start()
    try:
        model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, callbacks=[probe])
    finally:
        tracemalloc.stop()
        cytorch.set_num_threads(None)
    return probe


def test_a_steady_state_batch_allocates_no_large_array():
    x, y = data()
    probe = measure(small_net(), x, y)
    steady = probe.transient[1:-1]        # not the first batch, not the last, smaller one
    reused = probe.held[1]
    # without reuse a step of this net held 42 % of what the workspaces hold at its peak; with
    # them 12 %: the kernels' own scratch (per image and thread), Dense, the loss
    # (Zen 5, one thread)
    assert reused > 2_000_000
    assert max(steady) < 0.25 * reused, (steady, reused)
    assert probe.held[-1] > reused        # the last, smaller batch got buffers of its own


def test_without_reuse_the_same_step_allocates_its_arrays(monkeypatch):
    """The bound above fails without the workspaces (so it measures them)."""
    x, y = data()
    reused = measure(small_net(), x, y).held[1]
    monkeypatch.setattr(Layer, "_buffers", lambda self, ctx: None)
    monkeypatch.setattr(cytorch.training, "Workspace", _NoWorkspace)
    steady = measure(small_net(), x, y).transient[1:-1]
    assert min(steady) > 0.25 * reused


class _NoWorkspace:
    def get(self, name, shape, dtype):
        return np.empty(shape, dtype)


def test_training_with_reuse_gives_the_same_bits(monkeypatch):
    x, y = data(150)
    weights = []
    for reuse in (True, False):
        if not reuse:
            monkeypatch.setattr(Layer, "_buffers", lambda self, ctx: None)
        model = small_net()
        history = model.fit(x, y, batch_size=32, epochs=2, verbose=0, seed=1)
        weights.append((model.get_weights(), history.history))
    for a, b in zip(weights[0][0], weights[1][0]):
        np.testing.assert_array_equal(a, b)
    assert weights[0][1] == weights[1][1]


def test_the_same_buffers_serve_every_full_batch():
    x, y = data(100)
    model = small_net()
    seen = []

    class Addresses(callbacks.Callback):
        def on_batch_end(self, batch, logs=None):
            conv = self.model.layers[0]
            y_out = conv._cache[-1]          # the output the conv layer keeps for backward
            seen.append((y_out.shape[0], y_out.__array_interface__["data"][0]))

    model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[Addresses()])
    full = {address for n, address in seen if n == 32}
    last = {address for n, address in seen if n == 100 % 32}
    assert len(full) == 1 and len(last) == 1 and full != last


def test_nothing_a_user_receives_aliases_a_reused_buffer():
    x, y = data(96)
    model = small_net()
    received = {}

    class Grab(callbacks.Callback):
        def on_batch_end(self, batch, logs=None):
            if batch == 0:
                received["predict"] = self.model.predict(x[:32])
                received["forward"] = self.model.layers[0].forward(x[:32])
                received["pool"] = self.model.layers[1].forward(received["forward"])
                received["grads"] = {k: v for k, v in self.model.layers[0].grads.items()}
                received["weights"] = self.model.get_weights()

    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[Grab()])
    copies = {k: np.copy(v) for k, v in received.items() if isinstance(v, np.ndarray)}
    grads = {k: v.copy() for k, v in received["grads"].items()}
    weights = [w.copy() for w in received["weights"]]
    model.fit(x, y, batch_size=32, epochs=2, verbose=0)      # writes every buffer again
    for k, v in copies.items():
        np.testing.assert_array_equal(received[k], v, err_msg=k)
    for k, v in grads.items():
        np.testing.assert_array_equal(received["grads"][k], v, err_msg=k)
    for a, b in zip(received["weights"], weights):
        np.testing.assert_array_equal(a, b)
    assert all(isinstance(v, float) for values in history.history.values() for v in values)
    # once fit returns, the layers hold no buffers: predict's output is the caller's own
    assert all(getattr(layer, "_workspace", None) is None for layer in model.layers)
    first, second = model.predict(x[:32]), model.predict(x[:32])
    assert not np.shares_memory(first, second)


def test_a_layer_called_on_its_own_returns_fresh_arrays():
    x, _ = data(8)
    conv, pool = L.Conv2D(4, 3), L.MaxPooling2D(2)
    conv.build(x.shape[1:])
    a, b = conv.forward(x), conv.forward(x)
    assert not np.shares_memory(a, b)
    p, q = pool.forward(a), pool.forward(a)
    assert not np.shares_memory(p, q) and not np.shares_memory(pool.backward(p), pool.backward(q))
    drop = L.Dropout(0.5, seed=0)
    d, e = drop.forward(a, training=True), drop.forward(a, training=True)
    assert not np.shares_memory(d, e) and not np.shares_memory(drop.backward(d), drop.backward(e))


def test_functional_writes_into_the_workspace_and_checks_it():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    ws = Workspace()
    out, cache = F.conv2d_forward(x, w, workspace=ws)
    assert out is ws.get("conv2d_out", out.shape, np.float32)
    np.testing.assert_array_equal(out, F.conv2d_forward(x, w)[0])
    dx, dw, _ = F.conv2d_backward(np.ones_like(out), cache, workspace=ws)
    assert dx is ws.get("conv2d_dx", x.shape, np.float32)
    pooled, pcache = F.max_pool2d_forward(x, 2, workspace=ws)
    assert pcache["argidx"] is ws.get("pool2d_argidx", pooled.shape, np.int32)
    dropped, dcache = F.dropout_forward(x, 0.5, 3, workspace=ws)
    assert dropped is ws.get("dropout_out", x.shape, np.float32)
    assert dcache["mask"] is ws.get("dropout_mask", x.shape, np.uint8)
    np.testing.assert_array_equal(dropped, F.dropout_forward(x, 0.5, 3)[0])
    assert F.dropout_backward(dropped, dcache, workspace=ws) is ws.get("dropout_dx", x.shape,
                                                                       np.float32)

    class Wrong:
        def get(self, name, shape, dtype):
            return np.empty(shape, np.float64)
    with pytest.raises(ValueError, match=r"workspace.get\('conv2d_out', \(2, 4, 4, 4\), "
                                         r"float32\) must return a C-contiguous, writable "
                                         r"array of that shape and dtype, got ndarray"):
        F.conv2d_forward(x, w, workspace=Wrong())


def test_a_pickled_layer_carries_no_buffers():
    import pickle
    layer = L.Conv2D(2, 3)
    layer._workspace = Workspace()
    layer._workspace.get("conv2d_out", (1000,), np.float32)
    assert pickle.loads(pickle.dumps(layer))._workspace is None


def predict_memory(model, x, batch_size):
    """Per batch of ``model.predict(x)``: the most NumPy memory it held above what was held
    when it began, and the bytes the layers' workspaces hold after it."""
    transient, held = [], []
    forward = model._forward

    def measured(*args, **kwargs):
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        out = forward(*args, **kwargs)
        transient.append(tracemalloc.get_traced_memory()[1] - base)
        held.append(sum(layer._workspace.nbytes for layer in model.layers
                        if getattr(layer, "_workspace", None) is not None))
        return out
    model._forward = measured
    cytorch.set_num_threads(1)
    tracemalloc.start()
    try:
        result = model.predict(x, batch_size=batch_size)
    finally:
        tracemalloc.stop()
        cytorch.set_num_threads(None)
        del model._forward
    return result, transient, held


# (conv_max_pool, by default: the first conv returns its output pooled and never holds it whole,
# so the workspaces hold about a third as much)
@pytest.mark.parametrize("passes, held_at_least", [
    (("relu_after_pooling",), 1_000_000), (("relu_after_pooling", "conv_max_pool"), 300_000)])
def test_predict_writes_every_batch_into_the_buffers_of_the_one_before(passes, held_at_least):
    # uint8 images: the converted batch is reused too; the output is the caller's own
    x = (data(300)[0] * 255).astype(np.uint8)
    model = small_net()
    model.graph_passes = passes
    want = np.concatenate([model.predict_on_batch(x[s:s + 64]) for s in range(0, 300, 64)])
    got, transient, held = predict_memory(model, x, 64)
    np.testing.assert_array_equal(got, want)
    steady = transient[1:-1]
    # (without reuse a steady batch held 70 % of what the workspaces hold, with it 4 %: Dense
    # and the kernels' scratch; Zen 5, one thread)
    assert held[1] > held_at_least and max(steady) < 0.2 * held[1], (steady, held[1])
    assert all(getattr(layer, "_workspace", None) is None for layer in model.layers)
    again = model.predict(x, batch_size=64)
    assert not np.shares_memory(got, again)
    np.testing.assert_array_equal(got, again)
