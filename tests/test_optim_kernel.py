"""The compiled optimizer step (``_kernels/_optim.pyx``) against its twin, the NumPy ``_update``
methods of ``cytorch/optimizers.py``: the same bits for every optimizer and option set, both
dtypes, random shapes; every instruction-set variant; nothing read or written out of bounds."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import cytorch
from cytorch import optimizers as O
from cytorch._kernels import load

from test_kernel_bounds import Guarded

KERNEL = load("_optim")
VARIANTS = KERNEL.isa_variants()
BLOCK, CHUNK = 256, 1 << 14            # _optim.h's block, _optim.pyx's parallel chunk

OPTIMIZERS = {
    "sgd": lambda **kw: O.SGD(0.1, **kw),
    "sgd_momentum": lambda **kw: O.SGD(0.1, momentum=0.9, **kw),
    "sgd_nesterov": lambda **kw: O.SGD(0.05, momentum=0.5, nesterov=True, **kw),
    "rmsprop": lambda **kw: O.RMSprop(**kw),
    "rmsprop_momentum": lambda **kw: O.RMSprop(0.01, rho=0.8, momentum=0.5, **kw),
    "rmsprop_centered": lambda **kw: O.RMSprop(centered=True, epsilon=1e-3, **kw),
    "rmsprop_centered_momentum": lambda **kw: O.RMSprop(centered=True, momentum=0.9, **kw),
    "adagrad": lambda **kw: O.Adagrad(0.1, **kw),
    "adagrad_zero": lambda **kw: O.Adagrad(initial_accumulator_value=0.0, epsilon=0.01, **kw),
    "adam": lambda **kw: O.Adam(**kw),
    "adam_amsgrad": lambda **kw: O.Adam(0.01, beta_1=0.5, amsgrad=True, **kw),
    "adamw": lambda **kw: O.AdamW(**kw),
    "adamw_amsgrad": lambda **kw: O.AdamW(**{"weight_decay": 0.1, **kw}, amsgrad=True),
}
OPTIONS = [{}, {"weight_decay": 0.01}, {"clipnorm": 0.5}, {"clipvalue": 0.1},
           {"global_clipnorm": 0.3}, {"l2": 0.01}, {"l2": 0.02, "clipvalue": 0.05},
           {"l2": 0.01, "clipnorm": 0.5, "weight_decay": 0.1},
           {"l2": 0.1, "global_clipnorm": 1.0}, {"weight_decay": 0.2, "clipnorm": 1e3}]


class Params:
    """The least a layer needs to be optimized: a name, params, grads, trainable."""

    trainable = True

    def __init__(self, name, params):
        self.name = name
        self.params = params
        self.grads = {k: np.empty_like(v) for k, v in params.items()}


def train(make, shapes, dtype, steps, seed, backend, threads=1, special=False):
    """``steps`` steps of a fresh optimizer on parameters of ``shapes`` with seeded random
    gradients; returns the parameters, gradients and slots afterwards."""
    rng = np.random.default_rng(seed)
    layers = [Params(f"p{i}", {"w": rng.standard_normal(s).astype(dtype)})
              for i, s in enumerate(shapes)]
    opt = make()
    run(opt, layers, rng, steps, backend, threads, special)
    return results(opt, layers)


def run(opt, layers, rng, steps, backend, threads=1, special=False):
    with cytorch.backend(backend), np.errstate(all="ignore"):
        cytorch.set_num_threads(threads)
        try:
            for _ in range(steps):
                for layer in layers:
                    g = rng.standard_normal(layer.params["w"].shape) \
                        * 10.0 ** rng.integers(-6, 3)
                    if special and g.size:     # zeros of both signs, and the odd NaN and inf
                        flat = g.reshape(-1)
                        flat[rng.integers(0, g.size, 3)] = [0.0, -0.0, rng.choice(
                            [np.nan, np.inf, -np.inf, 1e30])]
                    layer.grads["w"][...] = g
                opt.apply_gradients(layers)
        finally:
            cytorch.set_num_threads(None)


def results(opt, layers):
    slots = opt.get_state()["slots"]
    return ([layer.params["w"] for layer in layers] + [layer.grads["w"] for layer in layers]
            + [slots[k] for k in sorted(slots)])


def assert_same_bits(got, want, what):
    """The same numbers to the bit, -0.0 and 0.0 told apart; any NaN equals any NaN (its sign
    and payload depend on which operand the CPU propagates, not on the arithmetic)."""
    assert len(got) == len(want), what
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape, what
        g, w = g.reshape(-1), w.reshape(-1)
        nan = np.isnan(w)
        np.testing.assert_array_equal(np.isnan(g), nan, err_msg=f"{what}: NaN")
        np.testing.assert_array_equal(g[~nan].view(np.uint8), w[~nan].view(np.uint8),
                                      err_msg=what)


SHAPES = st.lists(st.one_of(st.lists(st.integers(1, 7), min_size=0, max_size=4).map(tuple),
                            st.sampled_from([(BLOCK - 1,), (BLOCK + 1,), (3, BLOCK),
                                             (CHUNK + 5,), (2, CHUNK + 300)])),
                  min_size=1, max_size=3)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=25, deadline=None, derandomize=True)
@given(options=st.sampled_from(OPTIONS), shapes=SHAPES, steps=st.integers(1, 4),
       seed=st.integers(0, 2**32 - 1), threads=st.integers(1, 2), special=st.booleans())
def test_compiled_step_equals_the_twin(name, dtype, options, shapes, steps, seed, threads,
                                       special):
    make = lambda: OPTIMIZERS[name](**options)      # noqa: E731
    want = train(make, shapes, dtype, steps, seed, "reference")
    got = train(make, shapes, dtype, steps, seed, "compiled", threads, special=False)
    assert_same_bits(got, want, f"{name} {options} {shapes}")
    if special:
        want = train(make, shapes, dtype, steps, seed, "reference", special=True)
        got = train(make, shapes, dtype, steps, seed, "compiled", threads, special=True)
        assert_same_bits(got, want, f"{name} {options} {shapes} with 0, -0, NaN, inf")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_variant_gives_the_twins_bits(variant, dtype):
    shapes = [(5, 3), (BLOCK + 7,), (2, 2, 3)]
    try:
        assert KERNEL._select_isa(variant) == variant
        for name, make in OPTIMIZERS.items():
            for options in OPTIONS:
                opt = lambda: make(**options)      # noqa: E731
                assert_same_bits(train(opt, shapes, dtype, 3, 7, "compiled", special=True),
                                 train(opt, shapes, dtype, 3, 7, "reference", special=True),
                                 f"{variant} {name} {options}")
    finally:
        KERNEL._select_isa("best")


def test_a_model_trains_to_the_same_bits_with_either_step(monkeypatch):
    """keras_mnist, one epoch with compiled layers: the compiled step or the twin's, same
    weights to the bit."""
    from cytorch import models
    rng = np.random.default_rng(0)
    x = rng.random((40, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 40)
    weights = []
    for step_backend in ("compiled", "reference"):
        monkeypatch.setattr(O, "get_backend", lambda: step_backend)
        cytorch.set_seed(3)
        model = models.keras_mnist()
        model.compile(O.Adam(3e-3, clipnorm=1.0, weight_decay=1e-3),
                      "sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
        weights.append(model.get_weights())
    assert_same_bits(weights[0], weights[1], "keras_mnist")


def test_the_twin_takes_what_the_kernel_does_not():
    """A Fortran-ordered parameter, a gradient of another dtype: the NumPy step runs."""
    for params, grad_dtype in [({"w": np.asfortranarray(np.ones((3, 4)))}, None),
                               ({"w": np.ones(5, np.float32)}, np.float64),
                               ({"w": np.ones(5, np.float16)}, None)]:
        results = []
        for backend in ("compiled", "reference"):
            layer = Params("p", {k: v.copy(order="K") for k, v in params.items()})
            if grad_dtype is not None:
                layer.grads = {k: np.empty(v.shape, grad_dtype) for k, v in params.items()}
            layer.grads["w"][...] = 0.5
            with cytorch.backend(backend):
                O.Adam(0.1, weight_decay=0.1).apply_gradients([layer])
            results.append(layer.params["w"])
        np.testing.assert_array_equal(results[0], results[1])
        assert not np.array_equal(results[0], params["w"])   # it did take a step


def test_a_subclass_with_its_own_update_runs_it():
    """Subclasses of Optimizer (or of Adam) that write ``_update`` get it, not the kernel."""
    class Sign(O.Optimizer):
        def _update(self, key, param, grad, scratch, lr):
            param -= lr * np.sign(grad)

    class Adamish(O.Adam):
        def _update(self, key, param, grad, scratch, lr):
            param -= 2 * lr

    class Renamed(O.Adam):           # inherits both steps: the kernel is fine
        pass

    for opt, want in [(Sign(0.5), 1.0 - 0.5), (Adamish(0.25), 1.0 - 0.5)]:
        layer = Params("p", {"w": np.ones(3)})
        layer.grads["w"][...] = 3.0
        opt.apply_gradients([layer])
        np.testing.assert_array_equal(layer.params["w"], want)
    assert O._has_kernel(Renamed) and O._has_kernel(O.AdamW)
    assert not O._has_kernel(Sign) and not O._has_kernel(Adamish)


def test_loaded_slots_are_c_contiguous():
    """The kernel reads the slots flattened: ``set_state`` copies them in C order, whatever
    order the saved arrays had, so a flattened slot is a view and not a copy."""
    layer = Params("p", {"w": np.ones((3, 4))})
    opt = O.Adam()
    opt.set_state({"iterations": 2, "slots": {
        "p/w/momentum": np.asfortranarray(np.full((3, 4), 0.1)),
        "p/w/velocity": np.asfortranarray(np.full((3, 4), 0.2))}}, [layer])
    m, v = opt.state_buffers(("p", "w"), layer.params["w"])
    assert m.flags.c_contiguous and v.flags.c_contiguous
    layer.grads["w"][...] = 1.0
    opt.apply_gradients([layer])
    assert opt.get_state()["slots"]["p/w/momentum"][0, 0] == pytest.approx(0.1 + 0.9 * 0.1)


# -- the entry points on their own: bounds and refusals ----------------------------------------
CALLS = {   # name -> (number of slots, call(param, grad, slots, prologue))
    "sgd": (1, lambda p, g, s, pro: KERNEL.sgd(p, g, s[0], 0.1, 0.9, True, pro, 2)),
    "sgd_plain": (0, lambda p, g, s, pro: KERNEL.sgd(p, g, None, 0.1, 0.0, False, pro, 2)),
    "rmsprop": (3, lambda p, g, s, pro: KERNEL.rmsprop(p, g, s[0], s[1], s[2], 0.9, 1e-7, 0.01,
                                                       0.5, True, pro, 2)),
    "adagrad": (1, lambda p, g, s, pro: KERNEL.adagrad(p, g, s[0], 1e-7, 0.01, pro, 2)),
    "adam": (3, lambda p, g, s, pro: KERNEL.adam(p, g, s[0], s[1], s[2], 0.9, 0.999, 1e-7,
                                                 1e-3, True, pro, 2)),
}
PROLOGUES = [(0.0, KERNEL.CLIP_NONE, 0.0, 0.0), (0.01, KERNEL.CLIP_VALUE, 0.3, 1e-3),
             (0.0, KERNEL.CLIP_SCALE, 0.5, 0.0)]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize("n", [0, 1, 7, BLOCK - 1, BLOCK, BLOCK + 1, CHUNK + 1])
@pytest.mark.parametrize("fill", [np.nan, -0.0])
def test_the_kernel_stays_in_bounds(variant, dtype, name, n, fill):
    """Guards of NaN (a read past an end would spread it; a write shows as a non-NaN) or of
    -0.0 (any write past an end, even of +0.0, flips its sign) around every array; the
    results equal those of the same calls on unguarded copies."""
    count, call = CALLS[name]
    rng = np.random.default_rng(n)
    values = [rng.standard_normal(n) for _ in range(2)] + [rng.random(n) for _ in range(count)]
    arrays = [Guarded((n,), dtype, fill, v) for v in values]
    plain = [np.array(v, dtype=dtype) for v in values]
    try:
        KERNEL._select_isa(variant)
        for prologue in PROLOGUES:
            call(arrays[0].array, arrays[1].array, [a.array for a in arrays[2:]], prologue)
            call(plain[0], plain[1], plain[2:], prologue)
    finally:
        KERNEL._select_isa("best")
    for k, a in enumerate(arrays):
        a.assert_guards_intact(f"{name} array {k}")
    assert_same_bits([a.array for a in arrays], plain, f"{name}: read a guard")


NO_PROLOGUE = (0.0, 0, 0.0, 0.0)


def adam(p, g, m, v, v_hat=None, amsgrad=False):
    return lambda: KERNEL.adam(p, g, m, v, v_hat, 0.9, 0.999, 1e-7, 1e-3, amsgrad, NO_PROLOGUE,
                               1)


def read_only(a):
    a.flags.writeable = False
    return a


ONES = np.ones(4)


@pytest.mark.parametrize("call, message", [
    (adam(ONES.copy(), np.ones(3), np.ones(4), np.ones(4)),
     r"grad must be a C-contiguous, writable float64 array of size 4 \(the parameter's\), got "
     r"float64 array of size 3"),
    (adam(ONES.copy(), np.ones(4), np.ones(4), np.ones(5)),
     r"slot 1 must be .* of size 4 .*, got float64 array of size 5"),
    (adam(ONES.copy(), np.ones(4), np.ones(4), np.ones(4), amsgrad=True),
     r"slot 2 must be a C-contiguous, writable float64 array of size 4 .*, got NoneType"),
    (adam(ONES.copy(), np.ones(4, np.float32), np.ones(4), np.ones(4)),
     r"grad must be .* float64 array .*, got float32 array"),
    (adam(ONES.copy(), np.ones(8)[::2], np.ones(4), np.ones(4)),
     r"grad must be .*, got float64 array of size 4 \(C-contiguous: False, writable: True\)"),
    (adam(ONES.copy(), read_only(np.ones(4)), np.ones(4), np.ones(4)),
     r"grad must be .*, got float64 array of size 4 \(C-contiguous: True, writable: False\)"),
    (adam([1.0, 2.0], np.ones(2), np.ones(2), np.ones(2)),
     r"param must be a numpy array, got list"),
    (adam(np.ones(4, np.float16), np.ones(4), np.ones(4), np.ones(4)),
     r"param must be float32 or float64, got float16"),
    (lambda: KERNEL.sgd(np.ones(4), np.ones(4), None, 0.1, 0.9, False, NO_PROLOGUE, 1),
     r"slot 0 must be .*, got NoneType"),
    (lambda: KERNEL.rmsprop(np.ones(4), np.ones(4), np.ones(4), None, np.ones(3), 0.9, 1e-7,
                            0.1, 0.0, True, NO_PROLOGUE, 1),
     r"slot 2 must be .* of size 4 .*, got float64 array of size 3"),
    (lambda: KERNEL.adagrad(np.ones(4), np.ones(4), np.ones(4), 1e-7, 0.1, (0.0, 7, 0.0, 0.0),
                            1),
     r"clip must be 0, 1 or 2, got 7"),
    (lambda: KERNEL.add_scaled(np.ones(4), np.ones(2), 0.1),
     r"grad must be .* of size 2 .*, got float64 array of size 4"),
])
def test_the_kernel_refuses_inconsistent_arrays(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_refused_call_changes_nothing():
    p, g, m, v = np.ones(4), np.full(4, 0.5), np.zeros(4), np.zeros(4)
    with pytest.raises(ValueError):
        KERNEL.adam(p, g, m, v, np.zeros(3), 0.9, 0.999, 1e-7, 1e-3, True, NO_PROLOGUE, 1)
    assert (p == 1).all() and (g == 0.5).all() and (m == 0).all() and (v == 0).all()


def test_add_scaled_rounds_as_numpy():
    rng = np.random.default_rng(1)
    for dtype in (np.float32, np.float64):
        g, p = rng.standard_normal(1000).astype(dtype), rng.standard_normal(1000).astype(dtype)
        want = g + dtype(0.01) * p
        KERNEL.add_scaled(g, p, 0.01)
        assert_same_bits([g], [want], str(dtype))


@pytest.mark.parametrize("first, then", [("compiled", "reference"),
                                         ("reference", "compiled")])
def test_a_saved_state_resumes_to_the_same_bits_on_the_other_path(first, then):
    """Two steps on one path, the state saved and loaded into a new optimizer, two steps on
    the other path: the same bits as four steps straight through."""
    shapes = [(4, 3), (BLOCK + 3,)]
    make = lambda: O.RMSprop(0.01, momentum=0.5, centered=True, weight_decay=0.01)  # noqa: E731
    straight = train(make, shapes, np.float32, 4, 11, "compiled")
    rng = np.random.default_rng(11)
    layers = [Params(f"p{i}", {"w": rng.standard_normal(s).astype(np.float32)})
              for i, s in enumerate(shapes)]
    opt = make()
    run(opt, layers, rng, 2, first)
    resumed = make()
    resumed.set_state(opt.get_state(), layers)
    run(resumed, layers, rng, 2, then)
    assert resumed.iterations == 4
    assert_same_bits(results(resumed, layers), straight, f"{first} then {then}")
