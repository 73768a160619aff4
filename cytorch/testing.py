"""The conformance kit every layer, built-in or plugin, must pass: ``check_layer``.

A plugin's own test suite needs one line per configuration::

    from cytorch.testing import check_layer

    def test_my_layer():
        check_layer(MyLayer(8, 3), input_shape=(6, 6, 2))

``check_layer`` runs these checks, in this order, and raises ``AssertionError`` naming the
first that fails and by how much:

1. **parameter dtypes** -- every parameter (and ``state`` array) has the layer's dtype (``np.full(C, 1.5)`` is
   float64 in a float32 layer: say ``dtype=self.dtype``);
2. **config** -- ``get_config()`` is JSON-serialisable and ``type(layer).from_config`` of its
   JSON round trip rebuilds a layer with the same config and the same parameter shapes, which,
   given the same weights, computes the same output (relative error in the 2-norm at most
   1e-6);
3. **shapes** -- ``build`` and ``forward`` agree with ``compute_output_shape``; backward
   returns one gradient per input and per parameter, each shaped like what it differentiates;
4. **gradients** -- in float64, ``backward(dout)`` for a random ``dout`` matches central finite
   differences of ``L = sum(forward(x) * dout)`` for every input and every parameter (relative
   error in the 2-norm at most ``rtol``).  The weights are the layer's own plus 5% noise, so
   no parameter sits at a special value such as a zero bias;
5. **no mutation** -- forward and backward leave their arguments untouched;
6. **batch independence** -- in inference mode, sample i's output does not depend on the other
   samples of the batch (a sub-batch gives the same rows);
7. **dtypes** -- a float32 copy runs, returns float32, and agrees with float64 to
   ``float32_rtol``.

Inputs are a random permutation of ``+-2k/size`` for ``k = 1..size`` (signs alternating before
the shuffle): all entries are distinct, at least ``2 / size`` apart and at least that far from 0,
so no finite-difference step (1e-6) crosses a kink of ReLU or flips the winner of a max/min
window.  (A layer that computes before its kink, e.g. conv + ReLU, could still land a
pre-activation within 1e-6 of 0; with random weights that is a one-in-a-million event.)  Layers with randomness (dropout) must draw it
from ``self.rng``: before every forward in training mode ``check_layer`` gives the layer a fresh
generator seeded with ``seed``, so the finite differences see one fixed mask.  A layer's
``state`` (BatchNormalization's moving statistics) is copied with its weights into every copy
the checks make; training-mode calls may update it, and the float32 copy starts from the state
the float64 copy has reached.

For a compiled kernel, compare it with its NumPy twin in both dtypes; in float32 measure the
difference with ``rounding_error(got, want, scale)``, where ``scale`` is the twin run in
float64 on the absolute values of every input (and of ``dout``): rounding is proportional to
the sum of ``|terms|``, and a result that cancels to almost nothing (``db = sum(dout)``) makes
``relative_error`` report ordinary float32 rounding as a failure::

    got, want = kernel(x, w), twin(x, w)
    scale = twin(np.abs(x).astype(np.float64), np.abs(w).astype(np.float64))
    assert rounding_error(got, want, scale) < 2e-5   # float32; 1e-12 in float64
"""
import json

import numpy as np

from ._gradcheck import numerical_gradient, relative_error, rounding_error
from .layers.base import Layer

__all__ = ["check_layer", "numerical_gradient", "relative_error", "rounding_error"]

_CONFIG_RTOL = 1e-6  # the same layer with the same weights: rounding differences at most


class _Checker:
    def __init__(self, layer, input_shape, batch_size, seed, rtol, float32_rtol):
        if not isinstance(layer, Layer):
            raise TypeError(f"check_layer expects a cytorch.Layer, got {type(layer).__name__}")
        if batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 to check batch independence, "
                             f"got {batch_size}")
        self.layer = layer
        self.label = f"{type(layer).__name__} '{layer.name}'"
        self.multi = _is_multi(input_shape)
        self.input_shape = [tuple(int(d) for d in s) for s in input_shape] if self.multi \
            else tuple(int(d) for d in input_shape)
        self.shapes = self.input_shape if self.multi else [self.input_shape]
        self.batch_size = batch_size
        self.seed = seed
        self.rtol = rtol
        self.float32_rtol = float32_rtol
        self.errors = {}

    def fail(self, check, message):
        raise AssertionError(f"check_layer({self.label}, input_shape={self.input_shape}): "
                             f"{check} check failed: {message}")

    # -- helpers ------------------------------------------------------------------------------
    def inputs(self, dtype=np.float64):
        """Distinct, well-separated values (see the module docstring), one array per input."""
        rng = np.random.default_rng(self.seed)
        sizes = [self.batch_size * int(np.prod(s, dtype=np.int64)) for s in self.shapes]
        total = sum(sizes)
        values = np.arange(1, total + 1) * (2.0 / total)  # distinct magnitudes in (0, 2]
        values[::2] *= -1
        values = rng.permutation(values)
        xs, start = [], 0
        for shape, size in zip(self.shapes, sizes):
            xs.append(values[start:start + size].reshape((self.batch_size,) + shape)
                      .astype(dtype))
            start += size
        return xs

    def call(self, layer, xs, training):
        if training:  # the same random draws (e.g. dropout mask) on every call
            layer.set_rng(np.random.default_rng(self.seed))
        return layer.forward(xs if self.multi else xs[0], training=training)

    def grads_of_inputs(self, layer, dout):
        dx = layer.backward(dout)
        if not self.multi:
            return [dx]
        if not isinstance(dx, (list, tuple)) or len(dx) != len(self.shapes):
            self.fail("shapes", f"backward must return a list of {len(self.shapes)} gradients "
                                f"(one per input), got {type(dx).__name__}")
        return list(dx)

    def clone(self, dtype, weights=None, state=None):
        """A layer rebuilt from the JSON round trip of the config, holding the same weights
        (or ``weights``, a dict shaped like ``params``) and the same ``state`` (or ``state``,
        e.g. the moving statistics another copy has reached)."""
        config = json.loads(json.dumps(self.layer.get_config()))
        try:
            twin = type(self.layer).from_config(config)
        except Exception as exc:
            self.fail("config", f"from_config(get_config()) raised {type(exc).__name__}: {exc}")
        twin.set_dtype(dtype)
        twin.build(self.input_shape)
        if sorted(twin.params) != sorted(self.layer.params):
            self.fail("config", f"the rebuilt layer has parameters {sorted(twin.params)}, the "
                                f"original {sorted(self.layer.params)}")
        for k, p in self.layer.params.items():
            if twin.params[k].shape != p.shape:
                self.fail("config", f"parameter {k!r} has shape {p.shape}, but "
                                    f"{twin.params[k].shape} after from_config(get_config())")
            twin.params[k] = (p if weights is None else weights[k]).astype(dtype)
        own_state = getattr(self.layer, "state", {})
        if sorted(twin.state) != sorted(own_state):
            self.fail("config", f"the rebuilt layer has state {sorted(twin.state)}, the "
                                f"original {sorted(own_state)}")
        for k, v in (own_state if state is None else state).items():
            if twin.state[k].shape != v.shape:
                self.fail("config", f"state {k!r} has shape {v.shape}, but "
                                    f"{twin.state[k].shape} after from_config(get_config())")
            twin.state[k] = np.array(v, dtype=dtype)
        return twin

    def nudged_weights(self):
        """The layer's parameters plus small noise: 5% of each one's spread, at least 0.005.

        Freshly initialised layers sit at special points (a zero bias puts ReLU's kink exactly
        under an output whose window holds only padding); moving off them keeps the kinks
        away from the finite differences without changing what kind of weights these are."""
        rng = np.random.default_rng(self.seed + 2)
        weights = {}
        for k, p in self.layer.params.items():
            p = np.asarray(p, dtype=np.float64)
            scale = 0.05 * max(float(p.std()) if p.size else 0.0, 0.1)
            weights[k] = p + scale * rng.standard_normal(p.shape)
        return weights

    # -- the checks ---------------------------------------------------------------------------
    def check_config(self):
        config = self.layer.get_config()
        try:
            text = json.dumps(config)
        except (TypeError, ValueError) as exc:
            self.fail("config", f"get_config() is not JSON-serialisable ({exc}): {config!r}")
        round_trip = json.loads(text)
        twin = self.clone(self.layer.dtype)
        again = json.loads(json.dumps(twin.get_config()))
        if again != round_trip:
            diff = sorted(k for k in set(again) | set(round_trip)
                          if again.get(k, "<missing>") != round_trip.get(k, "<missing>"))
            details = "; ".join(f"{k}: {round_trip.get(k, '<missing>')!r} became "
                                f"{again.get(k, '<missing>')!r}" for k in diff)
            self.fail("config", f"from_config(get_config()) gives a different config: "
                                f"{details}")
        y = self.call(self.layer, self.inputs(self.layer.dtype), False)
        y_twin = self.call(twin, self.inputs(self.layer.dtype), False)
        # measured as reported: the relative error in the 2-norm (an element-wise test would
        # fail on an output entry near 0 where the two differ by rounding only)
        if np.shape(y) != np.shape(y_twin) or not relative_error(y, y_twin) <= _CONFIG_RTOL:
            self.fail("config", f"the layer rebuilt from its config, with the same weights, "
                                f"computes a different output (relative error "
                                f"{_rel(y, y_twin)} > {_CONFIG_RTOL:.0e})")

    def check_parameter_dtypes(self):
        """Every parameter and state array has the layer's dtype (a layer computes in its dtype, and
        ``set_dtype`` and the optimizers rely on it)."""
        arrays = [("parameter", k, p) for k, p in self.layer.params.items()]
        arrays += [("state", k, v) for k, v in getattr(self.layer, "state", {}).items()]
        for what, k, p in arrays:
            dtype = np.asarray(p).dtype
            if dtype != self.layer.dtype:
                self.fail("dtype", f"{what} {k!r} is {dtype} but the layer's dtype is "
                                   f"{self.layer.dtype}: create it with dtype=self.dtype in "
                                   f"build (e.g. np.full(C, 1.5, dtype=self.dtype))")

    def check_shapes(self, layer):
        expected = tuple(layer.compute_output_shape(self.input_shape))
        if layer.output_shape is not None and tuple(layer.output_shape) != expected:
            self.fail("shapes", f"build() set output_shape {tuple(layer.output_shape)}, but "
                                f"compute_output_shape gives {expected}")
        y = self.call(layer, self.inputs(), True)
        if np.shape(y) != (self.batch_size,) + expected:
            self.fail("shapes", f"forward returned shape {np.shape(y)}, expected "
                                f"{(self.batch_size,) + expected} from compute_output_shape")
        if not np.all(np.isfinite(y)):
            self.fail("shapes", "forward returned NaN or inf for finite input")
        return expected

    def check_gradients(self, layer, out_shape):
        xs = self.inputs()
        dout = np.random.default_rng(self.seed + 1).standard_normal(
            (self.batch_size,) + out_shape)
        saved = [x.copy() for x in xs] + [dout.copy()]
        self.call(layer, xs, True)
        self.check_unchanged(xs, saved, "forward")
        dxs = self.grads_of_inputs(layer, dout)
        self.check_unchanged(xs + [dout], saved, "backward")
        grads = {k: np.array(layer.grads.get(k)) for k in layer.params}

        for k, (x, dx) in enumerate(zip(xs, dxs)):
            what = f"input {k}" if self.multi else "input"
            if np.shape(dx) != x.shape:
                self.fail("shapes", f"backward returned a gradient of shape {np.shape(dx)} for "
                                    f"the {what} of shape {x.shape}")

            def f(v, k=k):
                trial = list(xs)
                trial[k] = v
                return self.call(layer, trial, True)
            self.compare(what, dx, numerical_gradient(f, x, dout))

        for name, param in list(layer.params.items()):
            what = f"parameter {name!r}"
            if grads[name].shape != param.shape:
                self.fail("shapes", f"grads[{name!r}] has shape {grads[name].shape}, the "
                                    f"parameter {param.shape}")

            def f(v, name=name):
                layer.params[name] = v
                return self.call(layer, xs, True)
            numeric = numerical_gradient(f, param, dout)
            layer.params[name] = param
            self.compare(what, grads[name], numeric)

    def compare(self, what, analytic, numeric):
        err = relative_error(analytic, numeric)
        self.errors[what] = err
        if not err <= self.rtol:
            i = np.unravel_index(np.argmax(np.abs(analytic - numeric)), numeric.shape)
            self.fail("gradient", f"backward disagrees with finite differences for the {what}: "
                                  f"relative error {err:.3g} > rtol {self.rtol:.1g}; worst "
                                  f"entry {tuple(map(int, i))}: backward gives "
                                  f"{analytic[i]:.6g}, finite differences {numeric[i]:.6g}")

    def check_unchanged(self, arrays, saved, stage):
        names = [f"input {k}" if self.multi else "input" for k in range(len(self.shapes))]
        names.append("dout")
        for name, a, b in zip(names, arrays, saved):
            if not np.array_equal(a, b):
                self.fail("mutation", f"{stage} modified its argument ({name}): max change "
                                      f"{np.max(np.abs(a - b)):.3g}; copy before writing")

    def check_batch_independence(self, layer):
        xs = self.inputs()
        y = self.call(layer, xs, False)
        for part in (slice(0, 1), slice(1, None)):
            y_part = self.call(layer, [x[part] for x in xs], False)
            if not np.allclose(y_part, y[part], rtol=1e-9, atol=1e-12):
                self.fail("batch independence", f"samples {part.start}..{part.stop or ''} "
                                                f"give different outputs alone than in the "
                                                f"full batch (relative error "
                                                f"{_rel(y_part, y[part])}); each sample's "
                                                f"output must depend only on that sample")

    def check_dtypes(self, layer64):
        # the float64 copy's state (moving statistics) has moved during the training-mode
        # calls above: start the float32 copy from there
        layer32 = self.clone(np.float32, self.weights, getattr(layer64, "state", None))
        xs = self.inputs()
        for training in (False, True):
            y64 = self.call(layer64, xs, training)
            y32 = self.call(layer32, [x.astype(np.float32) for x in xs], training)
            mode = "training" if training else "inference"
            if np.asarray(y32).dtype != np.float32:
                self.fail("dtype", f"a float32 layer returned {np.asarray(y32).dtype} in "
                                   f"{mode} mode")
            err = relative_error(y32, y64)
            self.errors[f"float32 output ({mode})"] = err
            if not err <= self.float32_rtol:
                self.fail("dtype", f"float32 and float64 outputs differ in {mode} mode: "
                                   f"relative error {err:.3g} > {self.float32_rtol:.1g}")
        dout = np.random.default_rng(self.seed + 1).standard_normal(np.shape(y64))
        for g32, g64 in zip(self.grads_of_inputs(layer32, dout.astype(np.float32)),
                            self.grads_of_inputs(layer64, dout)):
            if np.asarray(g32).dtype != np.float32:
                self.fail("dtype", f"a float32 layer's backward returned "
                                   f"{np.asarray(g32).dtype}")
            err = relative_error(g32, g64)
            if not err <= self.float32_rtol:
                self.fail("dtype", f"float32 and float64 input gradients differ: relative "
                                   f"error {err:.3g} > {self.float32_rtol:.1g}")

    def run(self):
        if not self.layer.built:
            self.layer.build(self.input_shape)
        elif _shape_key(self.layer.input_shape) != _shape_key(self.input_shape):
            raise ValueError(f"{self.label} was built for input shape {self.layer.input_shape}, "
                             f"but check_layer got input_shape={self.input_shape}")
        self.check_parameter_dtypes()
        self.check_config()
        self.weights = self.nudged_weights()
        layer64 = self.clone(np.float64, self.weights)
        out_shape = self.check_shapes(layer64)
        self.check_gradients(layer64, out_shape)
        self.check_batch_independence(layer64)
        self.check_dtypes(layer64)
        return self.errors


def _shape_key(shape):
    return tuple(_shape_key(s) if isinstance(s, (list, tuple)) else int(s) for s in shape)


def _is_multi(input_shape):
    items = list(input_shape)
    return bool(items) and all(isinstance(s, (list, tuple)) for s in items)


def _rel(a, b):
    try:
        return f"{relative_error(a, b):.3g}"
    except ValueError:
        return f"shapes {np.shape(a)} vs {np.shape(b)}"


def check_layer(layer, input_shape, batch_size=3, seed=0, rtol=1e-5, float32_rtol=1e-3):
    """Run the conformance checks of the module docstring on ``layer``; raise AssertionError
    naming the failed check and the size of the disagreement.

    Parameters
    ----------
    layer : cytorch.Layer
        The layer to check, built or not (it is built for ``input_shape`` if needed).  Its
        weights are not changed: the checks run on copies rebuilt from ``get_config``.
    input_shape : tuple of int, or list of tuples
        One sample's shape (no batch axis), e.g. ``(6, 6, 2)``; a list of shapes for a layer
        taking several inputs (``Add``, ``Concatenate``).  Keep it small: every input and
        parameter entry costs two forward passes.
    batch_size : int, default 3
        At least 2 (batch independence compares a batch with its parts).
    seed : int
        Seeds the inputs, the upstream gradient and the layer's generator in training mode.
    rtol : float, default 1e-5
        Largest accepted relative error ``||a - n|| / (||a|| + ||n||)`` between backward and
        finite differences (float64; correct layers typically reach 1e-8 or better).
    float32_rtol : float, default 1e-3
        Largest accepted relative error between the float32 and float64 copies.

    Returns
    -------
    dict
        The measured relative errors by what was checked (``"input"``,
        ``"parameter 'kernel'"``, ...), for the curious.

    >>> from cytorch import layers as L
    >>> errors = check_layer(L.Conv2D(2, (3, 2), padding="same", seed=0), (5, 4, 1))
    >>> errors["parameter 'kernel'"] < 1e-6
    True
    """
    return _Checker(layer, input_shape, batch_size, seed, rtol, float32_rtol).run()
