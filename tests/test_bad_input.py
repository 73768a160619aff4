"""Bad input at every public entry point (DESIGN.md section 8), table by table.

The contract: wrong rank, wrong channels, NaN/inf, empty or mismatched arrays, wrong dtypes,
impossible geometry and unknown names raise before any compiled code runs, with a message that
names the argument and gives the numbers; awkward but valid input (integers, lists,
non-contiguous and read-only arrays) works; nothing a user passes in is modified.

Each table row is ``(id, bad input, exception, message pattern)``; the patterns include the
argument's name and the numbers.  Tests of a single entry point's happy path live with that
entry point (test_conv.py, test_pool.py, ...); the compiled kernels' out-of-bounds safety is
in test_kernel_bounds.py.
"""
import importlib.metadata
import json
import re
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

import cytorch
from cytorch import Model, Sequential, callbacks, datasets, losses, optimizers, registry, viz
from cytorch import functional as F
from cytorch import layers as L
from cytorch import reference as R
from cytorch.cli import main as cli_main
from cytorch.errors import ShapeError

try:
    from cytorch_locally_connected import LocallyConnected2D
    from cytorch_locally_connected import functional as LC
except ImportError:  # the plugin is not installed: its rows are left out
    LC = LocallyConnected2D = None

RNG = np.random.default_rng(0)
X = RNG.standard_normal((2, 5, 5, 3))                 # the good batch every table starts from
W = RNG.standard_normal((3, 3, 3, 4))                 # conv2d: 3x3, 3 -> 4 channels
B = RNG.standard_normal(4)
LW = RNG.standard_normal((3, 3, 27, 4))               # locally connected: 3x3 positions on 5x5
LB = RNG.standard_normal((3, 3, 4))


def poke(a, value, at=0):
    """A float copy of ``a`` with ``value`` at flat index ``at``."""
    a = np.array(a, dtype=float)
    a.reshape(-1)[at] = value
    return a


def shape_re(shape):
    """A regex matching ``shape`` printed as a tuple."""
    return re.escape(str(tuple(shape)))


def frozen(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


def strided(a):
    """The values of ``a`` in a non-contiguous view."""
    return np.repeat(np.asarray(a), 2, axis=-1)[..., ::2]


def assert_untouched(arrays, call):
    """Run ``call()``; fail if any of ``arrays`` changed.  Returns what ``call`` returned."""
    before = [np.array(a, copy=True) for a in arrays]
    result = call()
    for k, (a, b) in enumerate(zip(arrays, before)):
        np.testing.assert_array_equal(np.asarray(a), b, err_msg=f"argument {k} was modified")
    return result


# ===============================================================================================
# 1. The kernels' front doors: cytorch.functional, cytorch.reference, the plugin
# ===============================================================================================
@dataclass
class Entry:
    """One forward/backward pair.  ``forward(x, **geometry)`` returns ``(out, cache)``;
    ``what`` is how messages name it; ``rank4``: x must be (N, H, W, C); ``windowed``: takes a
    window (``window``, ``strides``, ``padding``)."""

    name: str
    what: str
    forward: Callable
    backward: Callable
    rank4: bool = True
    windowed: bool = False


def _conv(module):
    def forward(x, window=3, strides=1, padding="valid"):
        w = W if window == 3 else np.ones((window, window, 3, 4))
        return module.conv2d_forward(x, w, B, strides, padding)
    return forward


def _lc(x, window=3, strides=1, padding="valid"):
    return LC.locally_connected2d_forward(x, LW, LB, window, strides, padding)


def _pool(module, kind):
    forward = getattr(module, f"{kind}_pool2d_forward")
    return lambda x, window=2, strides=None, padding="valid": forward(x, window, strides, padding)


ENTRIES = []
for _module in (F, R):
    _prefix = _module.__name__.split(".")[-1]
    ENTRIES.append(Entry(f"{_prefix}.conv2d", "conv2d", _conv(_module), _module.conv2d_backward,
                         windowed=True))
    ENTRIES += [Entry(f"{_prefix}.{kind}_pool2d", f"{kind}_pool2d", _pool(_module, kind),
                      getattr(_module, f"{kind}_pool2d_backward"), windowed=True)
                for kind in ("max", "avg", "min")]
    ENTRIES += [Entry(f"{_prefix}.global_{kind}_pool2d", f"global_{kind}_pool2d",
                      getattr(_module, f"global_{kind}_pool2d_forward"),
                      getattr(_module, f"global_{kind}_pool2d_backward"))
                for kind in ("max", "avg", "min")]
    ENTRIES.append(Entry(f"{_prefix}.dropout", "dropout",
                         lambda x, m=_module: m.dropout_forward(x, 0.5, seed=3),
                         _module.dropout_backward, rank4=False))
if LC is not None:
    ENTRIES.append(Entry("locally_connected2d", "locally_connected2d", _lc,
                         LC.locally_connected2d_backward, windowed=True))
WINDOWED = [e for e in ENTRIES if e.windowed]


def entries(selected):
    return pytest.mark.parametrize("entry", selected, ids=[e.name for e in selected])


BAD_X = [
    ("NaN", lambda x: poke(x, np.nan), ValueError, r"x contains 1 NaN or infinite value"),
    ("inf", lambda x: poke(x, np.inf), ValueError, r"x contains 1 NaN or infinite value"),
    ("-inf everywhere", lambda x: np.full(x.shape, -np.inf), ValueError,
     r"x contains 150 NaN or infinite value"),
    ("N=0", lambda x: x[:0], ShapeError, r"x must not be empty, got shape \(0, 5, 5, 3\)"),
    ("H=0", lambda x: x[:, :0], ShapeError, r"x must not be empty, got shape \(2, 0, 5, 3\)"),
    ("C=0", lambda x: x[..., :0], ShapeError, r"x must not be empty, got shape \(2, 5, 5, 0\)"),
    ("complex", lambda x: x.astype(complex), TypeError,
     r"x must hold real numbers, got dtype complex128"),
    ("object", lambda x: x.astype(object), TypeError,
     r"x must hold real numbers, got dtype object"),
    ("str", lambda x: x.astype(str), TypeError, r"x must hold real numbers, got dtype <U"),
    ("None", lambda x: None, TypeError, r"x must hold real numbers, got dtype object"),
]
BAD_RANK = [
    ("rank 3", lambda x: x[0], ShapeError,
     r"x must be a 4-D array \(N, H, W, C\) channels-last, got shape \(5, 5, 3\); add a channel "
     r"axis"),
    ("rank 5", lambda x: x[None], ShapeError,
     r"x must be a 4-D array \(N, H, W, C\) channels-last, got shape \(1, 2, 5, 5, 3\)"),
    ("rank 2", lambda x: x[:, 0, 0], ShapeError,
     r"x must be a 4-D array \(N, H, W, C\) channels-last, got shape \(2, 3\)"),
]


def rows(table):
    return pytest.mark.parametrize("bad, error, match", [row[1:] for row in table],
                                   ids=[row[0] for row in table])


@entries(ENTRIES)
@rows(BAD_X)
def test_forward_rejects_bad_x(entry, bad, error, match):
    with pytest.raises(error, match=match):
        entry.forward(bad(X))


@entries([e for e in ENTRIES if e.rank4])
@rows(BAD_RANK)
def test_forward_rejects_wrong_rank(entry, bad, error, match):
    with pytest.raises(error, match=match):
        entry.forward(bad(X))


BAD_GEOMETRY = [   # arguments of a windowed forward on the 5x5 x
    ("stride 0", {"strides": 0}, ValueError, r"strides must be positive, got 0"),
    ("stride -2", {"strides": -2}, ValueError, r"strides must be positive, got -2"),
    ("stride (1, 0)", {"strides": (1, 0)}, ValueError, r"strides must be positive, got \(1, 0\)"),
    ("stride 1.5", {"strides": 1.5}, TypeError, r"strides must be an int or a pair of ints, "
                                                r"got 1\.5"),
    ("stride '22'", {"strides": "22"}, ValueError, r"strides must be an int or a pair of ints, "
                                                   r"got '22'"),
    ("stride 3 values", {"strides": (1, 2, 3)}, ValueError,
     r"strides must be an int or a pair of ints, got \(1, 2, 3\)"),
    ("stride 2**40", {"strides": 2 ** 40}, ValueError,
     r"strides must be at most 2\*\*31 - 1 = 2147483647, got 1099511627776"),
    # pairs of plain ints take a fast path in as_pair: its edges must still be refused
    ("stride (2**31, 1)", {"strides": (2 ** 31, 1)}, ValueError,
     r"strides must be at most 2\*\*31 - 1 = 2147483647, got \(2147483648, 1\)"),
    ("stride (True, 1)", {"strides": (True, 1)}, ValueError,
     r"strides must be an int or a pair of ints, got \(True, 1\)"),
    ("stride (-1, 1)", {"strides": (-1, 1)}, ValueError, r"strides must be positive"),
    ("padding typo", {"padding": "smae"}, ValueError,
     r"padding must be 'valid', 'same', 'full', an int or a pair, got 'smae'"),
    ("padding -1", {"padding": -1}, ValueError, r"padding must be >= 0, got -1"),
    ("padding ((0, -1), (0, 0))", {"padding": ((0, -1), (0, 0))}, ValueError,
     r"padding must be >= 0, got \(\(0, -1\), \(0, 0\)\)"),
    ("padding 1.5", {"padding": 1.5}, TypeError, r"padding must be .* of ints, got 1\.5"),
    ("padding True", {"padding": True}, TypeError, r"padding must be .* of ints, got True"),
    ("padding (1.5, 1)", {"padding": (1.5, 1)}, ValueError,
     r"padding must be .* of ints, got \(1\.5, 1\)"),
    ("padding ((1.5, 1), (1, 1))", {"padding": ((1.5, 1), (1, 1))}, ValueError,
     r"padding must be .* of ints, got \(\(1\.5, 1\), \(1, 1\)\)"),
    ("padding 3 values", {"padding": (1, 1, 1)}, ValueError,
     r"padding must be .* of ints, got \(1, 1, 1\)"),
    ("padding 2**40", {"padding": 2 ** 40}, ValueError,
     r"padding must be at most 2\*\*31 - 1 = 2147483647, got 1099511627776"),
]


@entries(WINDOWED)
@rows(BAD_GEOMETRY)
def test_windowed_forward_rejects_bad_geometry(entry, bad, error, match):
    with pytest.raises(error, match=match):
        entry.forward(X, **bad)


@entries(WINDOWED)
@pytest.mark.parametrize("window, padding, formula", [
    (7, "valid", r"floor\(\(5 - 7\)/1\) \+ 1 = -1 rows"),
    (9, 1, r"floor\(\(5 \+ 2 - 9\)/1\) \+ 1 = -1 rows"),
])
def test_window_larger_than_the_padded_input(entry, window, padding, formula):
    with pytest.raises(ShapeError, match=rf"{entry.what} needs at least {window}x{window} input "
                                         rf"\(after padding\), got 5x5: {formula}"):
        entry.forward(X, window=window, strides=1, padding=padding)


@entries([e for e in WINDOWED if e.what != "conv2d"])   # conv2d's window is w's shape
@pytest.mark.parametrize("window, match", [
    (0, r"(pool_size|kernel_size) must be positive, got 0"),
    (-2, r"(pool_size|kernel_size) must be positive, got -2"),
    ((2, 0), r"(pool_size|kernel_size) must be positive, got \(2, 0\)"),
    ("33", r"(pool_size|kernel_size) must be an int or a pair of ints, got '33'"),
])
def test_bad_window_size(entry, window, match):
    with pytest.raises(ValueError, match=match):
        entry.forward(X, window=window)


@entries([e for e in WINDOWED if "pool" in e.what])
def test_pool_padding_must_leave_a_real_cell_in_every_window(entry):
    with pytest.raises(ValueError, match=rf"{entry.what}: padding must be smaller than pool_size "
                                         rf"on every side.*\(2, 2, 0, 0\) for pool_size \(2, 2\)"):
        entry.forward(X, window=2, padding=(2, 0))


def _weights_rows():
    """(id, call, error, match) for the weights of conv2d and the plugin."""
    rows_ = [
        ("conv2d: channels", lambda: F.conv2d_forward(X[..., :2], W, B), ShapeError,
         r"w expects 3 input channels \(w.shape\[2\]\), x has 2 \(x.shape\[3\]\)"),
        ("conv2d: w NaN", lambda: F.conv2d_forward(X, poke(W, np.nan), B), ValueError,
         r"w contains 1 NaN or infinite"),
        ("conv2d: b inf", lambda: F.conv2d_forward(X, W, poke(B, np.inf)), ValueError,
         r"b contains 1 NaN or infinite"),
        ("conv2d: w complex", lambda: F.conv2d_forward(X, W.astype(complex), B), TypeError,
         r"w must hold real numbers, got dtype complex128"),
        ("conv2d: w rank 3", lambda: F.conv2d_forward(X, W[0], B), ShapeError,
         r"w must be a 4-D array \(kh, kw, C, K\), got shape \(3, 3, 4\)"),
        ("conv2d: K=0", lambda: F.conv2d_forward(X, W[..., :0], B[:0]), ShapeError,
         r"w must not be empty, got shape \(3, 3, 3, 0\)"),
        ("conv2d: b shape", lambda: F.conv2d_forward(X, W, B[:3]), ShapeError,
         r"b must have shape \(K,\) = \(4,\) to match w's 4 filters \(w.shape\[3\]\), got shape "
         r"\(3,\)"),
    ]
    if LC is not None:
        lc = LC.locally_connected2d_forward
        rows_ += [
            ("lc: channels", lambda: lc(X[..., :2], LW, LB, 3), ShapeError,
             r"w must have shape \(H_out, W_out, kh\*kw\*C, K\) = \(3, 3, 18, K\) for x of shape "
             r"\(2, 5, 5, 2\).*got \(3, 3, 27, 4\)"),
            ("lc: w NaN", lambda: lc(X, poke(LW, np.nan), LB, 3), ValueError,
             r"w contains 1 NaN or infinite"),
            ("lc: b inf", lambda: lc(X, LW, poke(LB, -np.inf), 3), ValueError,
             r"b contains 1 NaN or infinite"),
            ("lc: w object", lambda: lc(X, LW.astype(object), LB, 3), TypeError,
             r"w must hold real numbers, got dtype object"),
            ("lc: K=0", lambda: lc(X, LW[..., :0], None, 3), ShapeError,
             r"w must have at least one filter \(last axis\), got shape \(3, 3, 27, 0\)"),
            ("lc: b shape", lambda: lc(X, LW, LB[:2], 3), ShapeError,
             r"b must have shape \(H_out, W_out, K\) = \(3, 3, 4\), got \(2, 3, 4\)"),
        ]
    return rows_


@rows(_weights_rows())
def test_weights_are_checked(bad, error, match):
    with pytest.raises(error, match=match):
        bad()


@pytest.mark.parametrize("call, error, match", [
    (lambda: R.conv2d_forward(X[..., :2], W, B), ShapeError, r"w expects 3 input channels"),
    (lambda: R.conv2d_forward(X, W, B[:2]), ShapeError, r"b must have shape \(K,\) = \(4,\)"),
    (lambda: R.conv2d_naive(X[..., :2], W, B), ShapeError, r"w expects 3 input channels"),
    (lambda: R.conv2d_naive(poke(X, np.nan), W, B), ValueError, r"x contains 1 NaN"),
    (lambda: R.im2col(X[0], 3, 3), ShapeError, r"x must be a 4-D array"),
    (lambda: R.im2col(X, 3, 0), ValueError, r"\(kh, kw\) must be positive, got \(3, 0\)"),
    (lambda: R.col2im(np.ones((9, 27)), (2, 5, 5, 3), 3, 3), ShapeError,
     r"cols must have shape \(N \* H_out \* W_out, kh \* kw \* C\) = \(18, 27\) for x_shape "
     r"\(2, 5, 5, 3\), got \(9, 27\)"),
    (lambda: R.col2im(np.ones((18, 27)), (5, 5, 3), 3, 3), ShapeError,
     r"x_shape must be 4 positive ints \(N, H, W, C\), got \(5, 5, 3\)"),
], ids=["forward: channels", "forward: b shape", "naive: channels", "naive: NaN",
        "im2col: rank", "im2col: kw 0", "col2im: cols shape", "col2im: x_shape"])
def test_conv2d_twins_and_their_helpers_check_their_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_conv2d_on_the_reference_backend_scans_x_once():
    # functional has checked x (or was told not to): the twin it calls must not scan it again,
    # or a NaN activation inside fit would raise on the reference backend only
    x = poke(X, np.nan)
    with cytorch.backend("reference"):
        out, cache = F.conv2d_forward(x, W, B, check_finite=False)
        dx, dw, db = F.conv2d_backward(np.ones(out.shape), cache, need_dx=False)
    assert np.isnan(out).sum() == 4 and dx is None and np.isnan(dw).any()   # out[0, 0, 0, :]


BAD_DOUT = [   # dout from the good forward output ``out``
    ("batch + 1", lambda out: np.ones((len(out) + 1,) + out.shape[1:]), ShapeError, None),
    ("one axis short", lambda out: np.ones(out.shape[:-1] + (out.shape[-1] - 1,)), ShapeError,
     None),
    ("NaN", lambda out: poke(np.ones(out.shape), np.nan), ValueError,
     r"dout contains 1 NaN or infinite"),
    ("complex", lambda out: np.ones(out.shape, complex), TypeError,
     r"dout must hold real numbers, got dtype complex128"),
    ("str", lambda out: np.full(out.shape, "1"), TypeError, r"dout must hold real numbers, got "
                                                          r"dtype <U1"),
]


@entries(ENTRIES)
@rows(BAD_DOUT)
def test_backward_rejects_bad_dout(entry, bad, error, match):
    out, cache = entry.forward(X)
    dout = bad(out)
    if match is None:   # a shape mismatch: the message gives both shapes
        match = rf"dout must have the .*shape .*{shape_re(out.shape)}, got {shape_re(dout.shape)}"
    with pytest.raises(error, match=match):
        entry.backward(dout, cache)


@entries(ENTRIES)
@pytest.mark.parametrize("cache", [None, {}, "cache"], ids=["None", "empty dict", "str"])
def test_backward_needs_its_own_cache(entry, cache):
    with pytest.raises(ValueError, match=rf"{entry.what}_backward needs the cache returned by "
                                         rf"{entry.what}_forward"):
        entry.backward(np.ones((2, 3)), cache)


@pytest.mark.parametrize("kind, other", [("max", "min"), ("min", "avg"), ("avg", "max")])
def test_a_pooling_cache_of_another_kind_is_refused(kind, other):
    _, cache = getattr(F, f"{other}_pool2d_forward")(X)
    with pytest.raises(ValueError, match=rf"{kind}_pool2d_backward needs the cache returned by "
                                         rf"{kind}_pool2d_forward, got a cache of '{other}'"):
        getattr(F, f"{kind}_pool2d_backward")(np.ones((2, 2, 2, 3)), cache)


def test_dropout_checks_dout_after_an_inference_pass_too():
    _, cache = F.dropout_forward(X, 0.5, seed=0, training=False)
    with pytest.raises(ShapeError, match=r"dout must have the dropout input's shape "
                                         r"\(2, 5, 5, 3\), got \(3, 5, 5, 3\)"):
        F.dropout_backward(np.ones((3, 5, 5, 3)), cache)


@pytest.mark.parametrize("module", [F, R], ids=["functional", "reference"])
@pytest.mark.parametrize("rate, seed, match", [
    (1.0, 0, r"rate must be a float in \[0, 1\), got 1\.0"),
    (-0.1, 0, r"rate must be a float in \[0, 1\), got -0\.1"),
    (float("nan"), 0, r"rate must be a float in \[0, 1\), got nan"),
    ("0.5", 0, r"rate must be a float in \[0, 1\), got '0\.5'"),
    (0.5, -1, r"seed must be an int in \[0, 2\*\*63\), got -1"),
    (0.5, 2 ** 63, r"seed must be an int in \[0, 2\*\*63\), got 9223372036854775808"),
    (0.5, 1.0, r"seed must be an int in \[0, 2\*\*63\), got 1\.0"),
])
def test_dropout_rate_and_seed(module, rate, seed, match):
    with pytest.raises(ValueError, match=match):
        module.dropout_forward(X, rate, seed)


# Awkward but valid input: it works, gives what a clean float array gives, and is left alone.
LAYOUTS = [   # (id, make the awkward x from X, the clean array it stands for)
    ("int64", lambda x: x.round().astype(np.int64), lambda x: x.round().astype(np.float32)),
    ("uint8", lambda x: np.abs(x * 9).astype(np.uint8),
     lambda x: np.abs(x * 9).astype(np.uint8).astype(np.float32)),
    ("bool", lambda x: x > 0, lambda x: (x > 0).astype(np.float32)),
    ("float16", lambda x: x.astype(np.float16), lambda x: x.astype(np.float16).astype(np.float32)),
    ("nested list", lambda x: x.tolist(), lambda x: x),
    ("non-contiguous", strided, lambda x: x),
    ("Fortran order", np.asfortranarray, lambda x: x),
    ("read-only", frozen, lambda x: x),
    ("read-only float32", lambda x: frozen(x.astype(np.float32)), lambda x: x.astype(np.float32)),
]


@entries(ENTRIES)
@pytest.mark.parametrize("awkward, clean", [row[1:] for row in LAYOUTS],
                         ids=[row[0] for row in LAYOUTS])
def test_awkward_input_works_and_is_left_alone(entry, awkward, clean):
    x = awkward(X)
    out, cache = assert_untouched([x], lambda: entry.forward(x))
    want_out, want_cache = entry.forward(clean(X))
    np.testing.assert_array_equal(out, want_out)
    assert out.dtype == want_out.dtype
    assert not np.shares_memory(out, np.asarray(x))
    dout = awkward(np.random.default_rng(1).standard_normal(out.shape))
    grads = assert_untouched([dout], lambda: entry.backward(dout, cache))
    want = entry.backward(clean(np.random.default_rng(1).standard_normal(out.shape)), want_cache)
    for got, expected in zip(*(g if isinstance(g, tuple) else (g,) for g in (grads, want))):
        if expected is not None:
            np.testing.assert_allclose(got, expected, rtol=1e-6)
            assert not np.shares_memory(got, np.asarray(dout))


# ===============================================================================================
# 2. Layers
# ===============================================================================================
def _layers():
    """name -> (a fresh layer, a good input).  Layers with weights are built by the first
    forward, so each test gets fresh ones."""
    made = {
        "Conv2D": (lambda: L.Conv2D(4, 3, name="c", seed=0), X),
        "MaxPooling2D": (lambda: L.MaxPooling2D(2, name="c"), X),
        "AveragePooling2D": (lambda: L.AveragePooling2D(2, padding="same", name="c"), X),
        "MinPooling2D": (lambda: L.MinPooling2D((2, 3), strides=1, name="c"), X),
        "GlobalMaxPooling2D": (lambda: L.GlobalMaxPooling2D(name="c"), X),
        "GlobalAveragePooling2D": (lambda: L.GlobalAveragePooling2D(keepdims=True, name="c"), X),
        "GlobalMinPooling2D": (lambda: L.GlobalMinPooling2D(name="c"), X),
        "Dropout": (lambda: L.Dropout(0.5, name="c", seed=0), X),
        "Flatten": (lambda: L.Flatten(name="c"), X),
        "Activation": (lambda: L.Activation("tanh", name="c"), X),
        "Input": (lambda: L.Input((5, 5, 3), name="c"), X),
        "Dense": (lambda: L.Dense(3, activation="softmax", name="c", seed=0), X.reshape(2, -1)),
        "BatchNormalization": (lambda: L.BatchNormalization(name="c"), X),
        "LeakyReLU": (lambda: L.LeakyReLU(name="c"), X),
        "ELU": (lambda: L.ELU(0.5, name="c"), X.reshape(2, -1)),
        "ZeroPadding2D": (lambda: L.ZeroPadding2D(((1, 0), (2, 1)), name="c"), X),
        "Reshape": (lambda: L.Reshape((25, -1), name="c"), X),
        "UpSampling2D": (lambda: L.UpSampling2D(interpolation="bilinear", name="c"), X),
        "SpatialDropout2D": (lambda: L.SpatialDropout2D(0.5, seed=0, name="c"), X),
        "DepthwiseConv2D": (lambda: L.DepthwiseConv2D(3, depth_multiplier=2, name="c", seed=0),
                            X),
        "SeparableConv2D": (lambda: L.SeparableConv2D(4, 3, name="c", seed=0), X),
    }
    if LocallyConnected2D is not None:
        made["LocallyConnected2D"] = (lambda: LocallyConnected2D(4, 3, name="c", seed=0), X)
    return made


LAYERS = _layers()
IMAGE_LAYERS = ["Conv2D", "MaxPooling2D", "AveragePooling2D", "MinPooling2D",
                "GlobalMaxPooling2D", "GlobalAveragePooling2D", "GlobalMinPooling2D",
                "ZeroPadding2D", "UpSampling2D", "SpatialDropout2D", "DepthwiseConv2D",
                "SeparableConv2D"] + \
    (["LocallyConnected2D"] if LocallyConnected2D is not None else [])


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("bad, error, match", [
    (lambda x: poke(x, np.nan), ValueError, r"the input of {} contains 1 NaN or infinite"),
    (lambda x: poke(x, -np.inf, at=-1), ValueError, r"the input of {} contains 1 NaN or infinite"),
    (lambda x: x.astype(complex), TypeError,
     r"the input of {} must hold real numbers, got dtype complex128"),
    (lambda x: x.astype(str), TypeError, r"the input of {} must hold real numbers, got dtype <U"),
    (lambda x: x[:0], ShapeError, r"{} got an empty batch: shape \(0, "),
], ids=["NaN", "-inf", "complex", "str", "N=0"])
@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
def test_layer_forward_rejects_bad_x(name, bad, error, match, training):
    make, x = LAYERS[name]
    layer = make()
    with pytest.raises(error, match=match.format(re.escape(f"{name} 'c'"))):
        layer.forward(bad(x), training=training)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layers_reject_an_empty_axis_before_building(name):
    make, x = LAYERS[name]
    layer = make()
    empty = x[..., :0]
    with pytest.raises(ShapeError, match=rf"{name} 'c' got an empty batch: "
                                         rf"shape {shape_re(empty.shape)}"):
        layer.forward(empty, training=True)
    assert not layer.built   # no (.., 0, K) kernel left behind


@pytest.mark.parametrize("name", IMAGE_LAYERS)
def test_image_layers_need_4d_input(name):
    layer = LAYERS[name][0]()
    with pytest.raises(ShapeError, match=rf"{name} 'c' expects 4-D input \(N, H, W, C\) "
                                         rf"channels-last, got shape \(5, 5, 3\)"):
        layer.forward(X[0])


@pytest.mark.parametrize("name, other, match", [
    ("Conv2D", X[..., :2], r"Conv2D 'c' was built for 3 channels \(input shape \(5, 5, 3\)\), "
                           r"got 2 \(batch shape \(2, 5, 5, 2\)\)"),
    ("Dense", X.reshape(2, -1)[:, :7], r"Dense 'c' was built for 75 features \(input shape "
                                       r"\(75,\)\), got 7 \(batch shape \(2, 7\)\)"),
    ("Input", X[:, :4], r"Input 'c' expects batches of shape \(N, 5, 5, 3\), got "
                        r"\(2, 4, 5, 3\)"),
    ("DepthwiseConv2D", X[..., :2], r"DepthwiseConv2D 'c' was built for 3 channels"),
    ("SeparableConv2D", X[..., :1], r"SeparableConv2D 'c' was built for 3 channels"),
    ("BatchNormalization", X[..., :2], r"BatchNormalization 'c' was built for 3 channels"),
    ("Reshape", X[:, :4], r"Reshape 'c' was built for samples of shape \(5, 5, 3\), got batch "
                          r"shape \(2, 4, 5, 3\)"),
    ("LocallyConnected2D", X[:, :, :4], r"LocallyConnected2D 'c' was built for inputs of shape "
                                        r"\(5, 5, 3\), got \(5, 4, 3\)"),
])
def test_a_built_layer_refuses_another_input_shape(name, other, match):
    if name not in LAYERS:
        pytest.skip("the locally-connected plugin is not installed")
    make, x = LAYERS[name]
    layer = make()
    layer.forward(x)
    with pytest.raises(ShapeError, match=match):
        layer.forward(other)


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("bad", [lambda y: np.ones((len(y) + 1,) + y.shape[1:]),
                                 lambda y: np.ones(y.shape[1:])], ids=["batch + 1", "no batch"])
def test_layer_backward_rejects_a_gradient_of_another_shape(name, bad):
    make, x = LAYERS[name]
    layer = make()
    y = layer.forward(x, training=True)
    dout = bad(y)
    with pytest.raises(ShapeError, match=rf"{name} 'c': the gradient passed to backward must "
                                         rf"have the forward output's shape {shape_re(y.shape)}, "
                                         rf"got {shape_re(dout.shape)}"):
        layer.backward(dout)


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("bad, error, match", [
    (lambda y: poke(np.ones(y.shape), np.nan), ValueError, r"contains 1 NaN or infinite"),
    (lambda y: np.ones(y.shape, complex), TypeError, r"must hold real numbers, got dtype "
                                                     r"complex128"),
    (lambda y: np.full(y.shape, "a"), TypeError, r"must hold real numbers, got dtype <U1"),
    (lambda y: np.ones(y.shape, object), TypeError, r"must hold real numbers, got dtype object"),
], ids=["NaN", "complex", "str", "object"])
def test_layer_backward_checks_the_gradient_values(name, bad, error, match):
    make, x = LAYERS[name]
    layer = make()
    y = layer.forward(x, training=True)
    who = rf"the gradient passed to {name} 'c'\.backward"
    if name == "LocallyConnected2D":   # the plugin leaves the NaN scan to its kernel's front door
        who = rf"({who}|dout)"
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # complex must not lose its imaginary part with a warning
        with pytest.raises(error, match=rf"{who} {match}"):
            layer.backward(bad(y))


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("layout", [frozen, strided, lambda a: a.astype(np.float32)],
                         ids=["read-only", "non-contiguous", "float32"])
@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
def test_layers_leave_their_input_and_gradient_alone(name, layout, training):
    make, x = LAYERS[name]
    layer = make()
    x = layout(x)
    y = assert_untouched([x], lambda: layer.forward(x, training=training))
    want = make().forward(np.ascontiguousarray(x), training=training)
    np.testing.assert_allclose(y, want, rtol=1e-6)
    dout = layout(np.random.default_rng(2).standard_normal(y.shape))
    dx = assert_untouched([x, dout], lambda: layer.backward(dout))
    assert dx.shape == np.shape(x)


@pytest.mark.parametrize("make, error, match", [
    (lambda: L.Conv2D(2.5, 3), ValueError, r"filters must be a positive int, got 2\.5"),
    (lambda: L.Conv2D(2, -3), ValueError, r"kernel_size must be positive, got -3"),
    (lambda: L.Conv2D(2, "33"), ValueError, r"kernel_size must be an int or a pair of ints, "
                                            r"got '33'"),
    (lambda: L.Conv2D(2, 3, strides=0), ValueError, r"strides must be positive, got 0"),
    (lambda: L.Conv2D(2, 3, padding=(1.5, 1)), ValueError, r"padding must be .* of ints, got "
                                                           r"\(1\.5, 1\)"),
    (lambda: L.Conv2D(2, 3, kernel_initializer="glorot"), KeyError,
     r"unknown initializer 'glorot'.*did you mean"),
    (lambda: L.MaxPooling2D(2, strides=-1), ValueError, r"strides must be positive, got -1"),
    (lambda: L.MaxPooling2D(2, padding="half"), ValueError,
     r"padding must be 'valid', 'same', 'full', an int or a pair, got 'half'"),
    (lambda: L.Dense(0), ValueError, r"units must be a positive int, got 0"),
    (lambda: L.Dense(2.0), ValueError, r"units must be a positive int, got 2\.0"),
    (lambda: L.Dense(2, dtype="int32"), ValueError, r"dtype must be float32 or float64, got "
                                                    r"'int32'"),
    (lambda: L.Dense(2, name=""), ValueError, r"name must be a non-empty str, got ''"),
    (lambda: L.Dropout(float("nan")), ValueError, r"rate must be a float in \[0, 1\), got nan"),
    (lambda: L.Activation("mish"), KeyError, r"unknown activation 'mish'"),
    (lambda: L.LeakyReLU(-0.1), ValueError, r"negative_slope must be a float >= 0 \(Keras's "
                                            r"default 0\.3\), got -0\.1"),
    (lambda: L.LeakyReLU(None), ValueError, r"negative_slope must be a float >= 0.*got None"),
    (lambda: L.ELU(alpha="1"), ValueError, r"alpha must be a float >= 0 \(Keras's default "
                                           r"1\.0\), got '1'"),
    (lambda: L.Input((0, 3)), ValueError, r"every axis of shape must be a positive int, got 0"),
    (lambda: L.Input(()), ValueError, r"shape must have at least one axis"),
    (lambda: L.Concatenate(axis="a"), TypeError, r"axis must be an int, got 'a'"),
    (lambda: L.Conv2D(2, 3, input_shape="abc"), TypeError, r"input_shape must be a tuple of ints"),
    (lambda: L.Conv2D(2, 3).build((5, 5)), ShapeError, r"expects samples of shape \(H, W, C\), "
                                                       r"got \(5, 5\)"),
    (lambda: L.Conv2D(2, 3).build((2, 2, 1)), ShapeError,
     r"needs at least 3x3 input \(after padding\), got 2x2: floor\(\(2 - 3\)/1\) \+ 1 = 0 rows"),
    (lambda: L.Conv2D(2, 3, name="c").build((5, 5, 0)), ShapeError,
     r"Conv2D 'c' needs a sample shape of positive ints \(no batch axis\), got \(5, 5, 0\)"),
    (lambda: L.Dense(2, name="c").build((0,)), ShapeError,
     r"Dense 'c' needs a sample shape of positive ints \(no batch axis\), got \(0,\)"),
    (lambda: L.Dropout(0.5, seed="a"), ValueError,
     r"seed must be a non-negative int, a numpy.random.Generator or None, got 'a'"),
    (lambda: L.Conv2D(2, 3, seed=1.5), ValueError, r"seed must be a non-negative int.*got 1\.5"),
    (lambda: L.Dense(2, seed=-1), ValueError, r"seed must be a non-negative int.*got -1"),
    (lambda: L.GlobalMaxPooling2D(keepdims="no"), TypeError, r"keepdims must be a bool, got 'no'"),
    (lambda: L.Dense(2, use_bias="no"), TypeError, r"use_bias must be a bool, got 'no'"),
    (lambda: L.Flatten(trainable=None), TypeError, r"trainable must be a bool, got None"),
])
def test_layer_arguments_are_checked(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("xs, error, match", [
    (lambda: [X, X[:1]], ShapeError, r"Add 'm': input 1 has shape \(1, 5, 5, 3\), expected "
                                     r"\(2, 5, 5, 3\)"),
    (lambda: [X, poke(X, np.nan)], ValueError, r"the input of Add 'm' contains 1 NaN"),
    (lambda: [X, X.astype(complex)], TypeError, r"the input of Add 'm' must hold real numbers"),
    (lambda: X, TypeError, r"Add 'm'.forward expects a list of at least 2 batches, got ndarray"),
    (lambda: [X, X[:, :4]], ShapeError, r"Add 'm' adds inputs of one shape, got \(5, 5, 3\), "
                                        r"\(4, 5, 3\)"),
])
def test_merge_layers_check_every_input(xs, error, match):
    with pytest.raises(error, match=match):
        L.Add(name="m").forward(xs())


# ===============================================================================================
# 3. Models: compile, fit, evaluate, predict, train_on_batch, summary, save/load
# ===============================================================================================
XM = RNG.standard_normal((8, 5, 5, 3)).astype(np.float32)
YM = np.arange(8) % 3


def small_model(**compile_args):
    model = Sequential([L.Input((5, 5, 3)), L.Conv2D(2, 3, activation="relu"),
                        L.MaxPooling2D(2, padding="same"), L.Dropout(0.2), L.Flatten(),
                        L.Dense(3, activation="softmax")], seed=0)
    return model.compile(**{"optimizer": "sgd", "metrics": ["accuracy"], **compile_args})


METHODS = {
    "fit": lambda m, x, y, **kw: m.fit(x, y, verbose=0, **kw),
    "evaluate": lambda m, x, y, **kw: m.evaluate(x, y, **kw),
    "train_on_batch": lambda m, x, y, **kw: m.train_on_batch(x, y, **kw),
    "predict": lambda m, x, y, **kw: m.predict(x),
}

BAD_MODEL_X = [
    ("NaN", lambda x: np.where(np.arange(8)[:, None, None, None] == 3, np.nan, x), ValueError,
     r"x contains 75 NaN or infinite"),
    ("inf", lambda x: poke(x, np.inf, at=-1), ValueError, r"x contains 1 NaN or infinite"),
    ("complex", lambda x: x.astype(complex), TypeError,
     r"x must hold real numbers, got dtype complex128"),
    ("str", lambda x: x.astype(str), TypeError, r"x must hold real numbers, got dtype <U"),
    ("N=0", lambda x: x[:0], ShapeError, r"x must not be empty, got shape \(0, 5, 5, 3\)"),
    ("rank 3", lambda x: x[..., 0], ShapeError,
     r"x must be a 4-D array \(N, H, W, C\) channels-last with samples of shape \(5, 5, 3\), "
     r"got shape \(8, 5, 5\)"),
    ("1 channel", lambda x: x[..., :1], ShapeError,
     r"x has 1 channels \(shape \(8, 5, 5, 1\)\), but the model expects 3"),
    ("channels first", lambda x: x.transpose(0, 3, 1, 2), ShapeError,
     r"x looks channels-first \(8, 3, 5, 5\)"),
    ("4x5 images", lambda x: x[:, :4], ShapeError,
     r"x must have samples of shape \(5, 5, 3\) \(the model's input shape\), got shape "
     r"\(8, 4, 5, 3\)"),
    ("ragged list", lambda x: [x[0], x[1, :4]], ValueError,
     r"x must be an array of numbers with equal-length rows, got a ragged sequence"),
]


@pytest.mark.parametrize("method", sorted(METHODS))
@rows(BAD_MODEL_X)
def test_model_methods_reject_bad_x(method, bad, error, match):
    x = bad(XM)
    with pytest.raises(error, match=match):
        METHODS[method](small_model(), x, YM[:len(x)])


@pytest.mark.parametrize("method", ["fit", "evaluate", "train_on_batch"])
@pytest.mark.parametrize("y, kwargs, error, match", [
    (YM[:5], {}, ValueError, r"x has 8 samples but y has 5: they must match"),
    (np.int64(1), {}, ValueError, r"x has 8 samples but y has a scalar"),
    (poke(YM, np.nan), {}, ValueError, r"y contains 1 NaN or infinite"),
    (YM + 5, {}, ValueError, r"y holds labels from 5 to 7, but the model outputs 3 classes: "
                             r"labels must be in \[0, 2\]"),
    (YM + 0.5, {}, ValueError, r"y must hold integer class labels for "
                               r"sparse_categorical_crossentropy, got non-integer values"),
    (np.eye(3)[YM], {}, ShapeError, r"y must be integer labels of shape \(8,\) for "
                                    r"sparse_categorical_crossentropy, got shape \(8, 3\)"),
    (YM.astype(str), {}, TypeError, r"y must hold integer class labels .*got dtype <U"),
    (YM, {"sample_weight": np.ones(3)}, ValueError,
     r"sample_weight must have shape \(8,\), one weight per sample, got shape \(3,\)"),
    (YM, {"sample_weight": poke(np.ones(8), np.nan)}, ValueError,
     r"sample_weight must be finite and >= 0"),
    (YM, {"sample_weight": -np.ones(8)}, ValueError, r"sample_weight must be finite and >= 0, "
                                                     r"got 0 NaN or infinite and 8 negative"),
    (YM, {"sample_weight": np.ones(8, complex)}, TypeError,
     r"sample_weight must hold real numbers, got dtype complex128"),
    (YM, {"sample_weight": np.full(8, "a")}, TypeError,
     r"sample_weight must hold real numbers, got dtype <U1"),
], ids=["y short", "y scalar", "y NaN", "labels too big", "labels not integers", "one-hot y",
        "str y", "sample_weight short", "sample_weight NaN", "sample_weight negative",
        "sample_weight complex", "sample_weight str"])
def test_model_methods_reject_bad_targets(method, y, kwargs, error, match):
    with pytest.raises(error, match=match):
        METHODS[method](small_model(), XM, y, **kwargs)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"batch_size": 0}, ValueError, r"batch_size must be a positive int, got 0"),
    ({"batch_size": 2.5}, ValueError, r"batch_size must be a positive int, got 2\.5"),
    ({"epochs": -1}, ValueError, r"epochs must be an int >= 0, got -1"),
    ({"validation_split": 1.0}, ValueError, r"validation_split must be in \[0, 1\), got 1\.0"),
    ({"validation_split": 0.9}, ValueError,   # Keras: floor(8 * 0.1) = 0 left to train on
     r"validation_split=0\.9 of 8 samples leaves floor\(8 \* \(1 - 0\.9\)\) = 0 for "
     r"training and 8 for validation; both need at least 1"),
    ({"validation_data": (XM,)}, ValueError,
     r"validation_data must be a tuple \(x_val, y_val\) or \(x_val, y_val, sample_weight_val\)"),
    ({"validation_data": (poke(XM, np.nan), YM)}, ValueError,
     r"x_val contains 1 NaN or infinite"),
    ({"validation_data": (XM[:, :4], YM)}, ShapeError,
     r"x_val must have samples of shape \(5, 5, 3\).*got shape \(8, 4, 5, 3\)"),
    ({"validation_data": (XM, YM[:3])}, ValueError,
     r"x_val has 8 samples but y_val has 3: they must match"),
    ({"validation_split": "0.2"}, ValueError, r"validation_split must be in \[0, 1\), got '0\.2'"),
    ({"callbacks": object()}, TypeError,
     r"callbacks must be a list of cytorch.callbacks.Callback instances, got object"),
    ({"callbacks": [object()]}, TypeError,
     r"callbacks\[0\] must be a cytorch.callbacks.Callback \(subclass it or use "
     r"LambdaCallback\), got object"),
    ({"seed": "x"}, ValueError,
     r"seed must be a non-negative int, a numpy.random.Generator or None, got 'x'"),
    ({"validation_data": (XM, YM, np.ones(2))}, ValueError,
     r"sample_weight_val must have shape \(8,\), one weight per sample, got shape \(2,\)"),
])
def test_fit_arguments_are_checked(kwargs, error, match):
    with pytest.raises(error, match=match):
        small_model().fit(XM, YM, verbose=0, **kwargs)


@pytest.mark.parametrize("method", ["fit", "evaluate", "train_on_batch"])
def test_training_needs_compile(method):
    model = Sequential([L.Flatten(), L.Dense(3)], input_shape=(5, 5, 3))
    with pytest.raises(RuntimeError, match=rf"call model.compile\(optimizer=..., loss=...\) "
                                           rf"before {method}\(\)"):
        METHODS[method](model, XM, YM)


@pytest.mark.parametrize("kwargs, match", [
    ({"optimizer": "adamx"}, r"unknown optimizer 'adamx'.*did you mean 'adam'"),
    ({"optimizer": 3}, r"unknown optimizer 3; known optimizers: \['adagrad', 'adam', "),
    ({"loss": "crossentropy"}, r"unknown loss 'crossentropy'; known losses: "),
    ({"loss": None}, r"unknown loss None"),
    ({"metrics": ["auc"]}, r"unknown metric 'auc' in metrics; known metrics: \['acc', "
                           r"'accuracy', 'binary_accuracy', "),
    ({"metrics": "auc"}, r"unknown metric 'auc' in metrics; known metrics: "),
    ({"weighted_metrics": ["mse", 3]}, r"unknown metric 3 in weighted_metrics; known "),
])
def test_compile_names_unknown_names(kwargs, match):
    with pytest.raises(KeyError, match=match):
        small_model(**kwargs)


def test_compile_takes_one_metric_name_as_a_list_of_one():
    assert small_model(metrics="accuracy").metrics == ["accuracy"]
    with pytest.raises(TypeError, match=r"metrics must be a list of metric names such as "
                                        r"\['accuracy'\], got int: 3"):
        small_model(metrics=3)


@pytest.mark.parametrize("build, error, match", [
    (lambda: Sequential().add("dense"), TypeError, r"Sequential.add expects a Layer, got str"),
    (lambda: Sequential([L.Dense(2)]).add(L.Input((3,))), ValueError,
     r"an Input layer can only come first in a Sequential.*after 1 layer"),
    (lambda: Sequential().add(L.Add()), ValueError, r"merges several inputs and cannot sit in a "
                                                     r"Sequential"),
    (lambda: Sequential([L.Dense(2)]).build(), ValueError, r"needs an input shape"),
    (lambda: Sequential([L.Input((4, 4, 1))]).build((5, 5, 1)), ShapeError,
     r"has input shape \(4, 4, 1\), build\(\) got \(5, 5, 1\)"),
    (lambda: Sequential.from_spec([("conv3d", {})]), KeyError,
     r"no layer named 'conv3d'.*did you mean 'conv2d'"),
    (lambda: Sequential.from_spec(["conv2d"]), TypeError,
     r"spec item 0 must be a pair \(layer_name, kwargs\), got 'conv2d'"),
    (lambda: Sequential.from_spec([("dense", {"units": 3, "unitz": 3})]), TypeError,
     r"spec item 0 \('dense'\): .*unexpected keyword argument 'unitz'"),
    (lambda: Model("x", "y"), TypeError, r"inputs must be a graph node .*got str"),
    (lambda: Sequential([L.Dense(2, name="c")], input_shape=(0,)), ShapeError,
     r"Dense 'c' needs a sample shape of positive ints \(no batch axis\), got \(0,\)"),
    (lambda: Sequential([L.Conv2D(2, 3, name="c")]).build((5, 5, 0)), ShapeError,
     r"Conv2D 'c' needs a sample shape of positive ints \(no batch axis\), got \(5, 5, 0\)"),
])
def test_graph_building_mistakes_are_named(build, error, match):
    with pytest.raises(error, match=match):
        build()


@pytest.mark.parametrize("call, error, match", [
    (lambda: L.Conv2D(2, 3, name="c")(X), TypeError,
     r"the input of Conv2D 'c' must be a graph node \(the result of calling a layer\) or an "
     r"Input layer, got ndarray"),
    (lambda: L.Conv2D(2, 3, name="c")(L.Input((5,))), ShapeError,
     r"Conv2D 'c' expects samples of shape \(H, W, C\), got \(5,\)"),
    (lambda: L.Conv2D(2, 3, name="c")(L.Input((2, 2, 1))), ShapeError,
     r"Conv2D 'c' needs at least 3x3 input \(after padding\), got 2x2"),
    (lambda: L.Dense(2, name="c")([L.Input((3,)), L.Input((3,))]), ValueError,
     r"Dense 'c' takes 1 input, got a list of 2"),
    (lambda: L.Add(name="c")(L.Input((3,))), ValueError,
     r"Add 'c' merges several inputs: call it on a list of at least 2 nodes"),
    (lambda: L.Add(name="c")([L.Input((3,)), L.Input((4,))]), ShapeError,
     r"Add 'c' adds inputs of one shape, got \(3,\), \(4,\)"),
])
def test_calling_a_layer_on_graph_nodes(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_a_layer_that_does_not_fit_is_not_kept():
    model = Sequential([L.Input((4, 4, 1)), L.Conv2D(2, 3)])
    with pytest.raises(ShapeError, match=r"Conv2D 'too_big' needs at least 3x3 input "
                                         r"\(after padding\), got 2x2"):
        model.add(L.Conv2D(2, 3, name="too_big"))
    assert [layer.name for layer in model.layers] == [model.layers[0].name]
    assert model.output_shape == (2, 2, 2)


@pytest.mark.parametrize("value, error, match", [
    (np.nan, ValueError, r"set_weights: 'd/kernel' contains 6 NaN or infinite"),
    (1j, TypeError, r"set_weights: 'd/kernel' must hold real numbers, got dtype complex128"),
    ("a", TypeError, r"set_weights: 'd/kernel' must hold real numbers, got dtype <U1"),
])
def test_set_weights_checks_the_values(value, error, match):
    model = Sequential([L.Dense(2, name="d")], input_shape=(3,))
    before = model.get_weights()                  # [kernel, bias], as in Keras
    bad_dict = {"d/kernel": np.full(before[0].shape, value), "d/bias": np.ones(2)}
    bad_list = [bad_dict["d/kernel"], np.ones(2)]
    for bad, target in ((bad_dict, model), (bad_list, model), (bad_list, model.layers[0])):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(error, match=match):
                target.set_weights(bad)
        for v, b in zip(model.get_weights(), before):  # nothing copied: kernel was bad
            np.testing.assert_array_equal(v, b)


def test_summary_print_fn_must_be_callable():
    model = Sequential([L.Dense(2)], input_shape=(3,))
    with pytest.raises(TypeError, match=r"print_fn must be callable or None, got 3"):
        model.summary(print_fn=3)


@pytest.mark.parametrize("layout", [lambda a: a, frozen, strided, lambda a: a.astype(np.float64),
                                    lambda a: a.tolist()],
                         ids=["float32", "read-only", "non-contiguous", "float64", "list"])
def test_training_leaves_the_data_alone(layout):
    """x is float32 and contiguous like the model: batches are views of it, the case where an
    in-place update would reach the caller's array."""
    x, y, w = layout(XM), layout(YM), layout(np.linspace(0.5, 1.5, 8))
    xv, yv = layout(XM[:4]), layout(YM[:4])
    model = small_model()
    arrays = [a for a in (x, y, w, xv, yv) if isinstance(a, np.ndarray)]
    assert_untouched(arrays, lambda: (
        model.fit(x, y, batch_size=3, epochs=2, verbose=0, sample_weight=w,
                  validation_data=(xv, yv), shuffle=False),
        model.fit(x, y, batch_size=3, verbose=0, validation_split=0.25),
        model.train_on_batch(x, y, sample_weight=w),
        model.evaluate(x, y, sample_weight=w, batch_size=3)))
    want = small_model().predict(XM)
    got = assert_untouched(arrays, lambda: small_model().predict(x, batch_size=3))
    np.testing.assert_allclose(got, want, rtol=1e-6)


# -- save and load: every way a file can be wrong ----------------------------------------------
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(path, arrays) of a saved small model."""
    path = small_model().save(tmp_path_factory.mktemp("saved") / "m.npz")
    with np.load(path) as data:
        return path, dict(data)


def _with_architecture(arrays, change):
    config = json.loads(arrays["__architecture__"].tobytes())
    config = change(config)
    return dict(arrays, __architecture__=np.frombuffer(json.dumps(config).encode(), np.uint8))


def _set(key, value):
    def change(config):
        config[key] = value
        return config
    return change


def _first_kernel(arrays, make):
    key = next(k for k in arrays if k.endswith("/kernel"))
    return dict(arrays, **{key: make(arrays[key])})


def _layer0(change):
    def apply(config):
        config["layers"][1] = change(config["layers"][1])
        return config
    return apply


CORRUPT = [   # (id, the arrays to write from the good ones, match)
    ("no architecture", lambda a: {k: v for k, v in a.items() if k != "__architecture__"},
     r"is not a cytorch model file: no '__architecture__' entry"),
    ("architecture not JSON", lambda a: dict(a, __architecture__=np.frombuffer(b"{no", np.uint8)),
     r"the '__architecture__' entry is not JSON text"),
    ("a JSON list", lambda a: _with_architecture(a, lambda c: [c]),
     r"not a cytorch model architecture: expected a JSON object, got list"),
    ("another format", lambda a: _with_architecture(a, _set("format", "keras")),
     r"not a cytorch model architecture: format='keras', expected 'cytorch.model'"),
    ("version 'x'", lambda a: _with_architecture(a, _set("version", "x")),
     r"version must be an int, got 'x'"),
    ("a newer version", lambda a: _with_architecture(a, _set("version", 99)),
     r"written by a newer cytorch \(format version 99, this one reads up to 1\)"),
    ("unknown class", lambda a: _with_architecture(a, _set("class_name", "Graph")),
     r"class_name must be 'Sequential' or 'Model', got 'Graph'"),
    ("no layers", lambda a: _with_architecture(a, _set("layers", [])),
     r"'layers' must be a non-empty list"),
    ("a layer without config", lambda a: _with_architecture(a, _layer0(lambda e: {
        "registered_name": "conv2d"})), r"layer 1 must be an object with a 'registered_name' "
                                        r"string and a 'config' object"),
    ("unknown layer", lambda a: _with_architecture(a, _layer0(lambda e: dict(
        e, registered_name="conv3d"))), r"uses layer 'conv3d' .* no installed package provides "
                                        r"'conv3d' in the 'cytorch.layers' entry-point group"),
    ("a config the layer rejects", lambda a: _with_architecture(a, _layer0(lambda e: dict(
        e, config=dict(e["config"], filters=-1)))),
     r"layer 1 of the architecture \(conv2d '.*'\) has a config its class Conv2D rejects: "
     r"filters must be a positive int, got -1"),
    ("NaN weights", lambda a: _first_kernel(a, lambda k: poke(k, np.nan)),
     r"'conv2d.*/kernel' contains 1 NaN or infinite value\(s\) of 54"),
    ("complex weights", lambda a: _first_kernel(a, lambda k: k.astype(complex)),
     r"'conv2d.*/kernel' must hold real numbers, got dtype complex128"),
    ("object weights", lambda a: _first_kernel(a, lambda k: k.astype(object)),
     r"'conv2d.*/kernel' is an object array; weights must be real numbers"),
    ("weights of another shape", lambda a: _first_kernel(a, lambda k: k[:1]),
     r"'conv2d.*/kernel' has shape \(1, 3, 3, 2\), the layer expects \(3, 3, 3, 2\)"),
    ("missing weights", lambda a: {k: v for k, v in a.items() if not k.endswith("/bias")},
     r"has no weights for 'conv2d.*/bias'"),
    ("extra weights", lambda a: dict(a, **{"ghost/kernel": np.ones(3)}),
     r"holds weights no layer uses: \['ghost/kernel'\]"),
]


@pytest.mark.parametrize("corrupt, match", [row[1:] for row in CORRUPT],
                         ids=[row[0] for row in CORRUPT])
def test_load_model_names_what_is_wrong_with_the_file(saved, tmp_path, corrupt, match):
    path, arrays = saved
    bad = tmp_path / "bad.npz"
    np.savez(bad, **corrupt(arrays))
    with pytest.raises(ValueError, match=match):
        cytorch.load_model(bad)


@pytest.mark.parametrize("content, match", [
    (b"hello", r"is not a cytorch model file: not a NumPy .npz archive"),
    (None, r"is not a cytorch model file: a single .npy array, not an .npz archive"),
])
def test_load_model_of_a_file_that_is_not_an_archive(tmp_path, content, match):
    path = tmp_path / "m.npz"
    if content is None:
        with open(path, "wb") as f:
            np.save(f, np.ones(3))
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        cytorch.load_model(path)


def test_save_names_a_missing_directory_and_an_unbuilt_model(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cannot save model '.*' to '.*nowhere.m\.npz': "
                                                r"the directory '.*nowhere' does not exist"):
        small_model().save(tmp_path / "nowhere" / "m.npz")
    with pytest.raises(ValueError, match=r"is not built yet: give it an input shape"):
        Sequential([L.Dense(2)]).save(tmp_path / "m.npz")


def test_a_name_claimed_twice_blocks_only_the_models_that_use_it(monkeypatch, tmp_path):
    """Another distribution claiming ``max_pool2d`` must not stop a model without pooling from
    being saved and loaded; a model with pooling fails naming both claimants."""
    real = list(registry._entry_points())
    impostor = importlib.metadata.EntryPoint("max_pool2d", "cytorch.layers.core:Dense",
                                             registry.GROUP)
    monkeypatch.setattr(registry, "_entry_points", lambda: real + [impostor])
    registry.refresh()
    try:
        model = Sequential([L.Input((5, 5, 3)), L.Conv2D(2, 3), L.AveragePooling2D(2),
                            L.Flatten(), L.Dense(3)], seed=0)
        path = model.save(tmp_path / "m.npz")
        np.testing.assert_array_equal(cytorch.load_model(path).predict(XM), model.predict(XM))
        with pytest.raises(registry.RegistryError, match=r"layer name 'max_pool2d' is claimed by "
                                                         r"two distributions: .*cytorch-edu"):
            small_model().save(tmp_path / "pooled.npz")
    finally:
        registry.refresh()   # rediscover without the impostor once monkeypatch restores it


# ===============================================================================================
# 4. Names, losses, optimizers, callbacks, data sets, the command line, pictures
# ===============================================================================================
@pytest.mark.parametrize("lookup, error, match", [
    (lambda: registry.get("conv3d"), KeyError,
     r"no layer named 'conv3d' in entry-point group 'cytorch.layers' \(did you mean 'conv2d'\?\)"
     r"; known: activation, add, "),
    (lambda: L.get("Conv3D"), KeyError, r"no layer named 'Conv3D'.*did you mean 'conv2d'"),
    (lambda: registry.get(3), TypeError, r"layer name must be a str such as 'conv2d', got int: 3"),
    (lambda: registry.get(None), TypeError, r"layer name must be a str .*got NoneType"),
    (lambda: losses.get("hinge"), KeyError, r"unknown loss 'hinge'; known losses: "),
    (lambda: losses.get("mse2"), KeyError, r"unknown loss 'mse2'.*did you mean 'mse'"),
    (lambda: optimizers.get("adamx"), KeyError, r"unknown optimizer 'adamx'.*did you mean 'adam"),
    (lambda: cytorch.models.get("lenet"), KeyError,
     r"unknown preset 'lenet'; known presets: \['alexnet_small', 'keras_mnist', 'lenet5', "
     r"'vgg_small'\]; did you mean 'lenet5'"),
    (lambda: cytorch.backend("fast"), ValueError,
     r"backend must be one of \('compiled', 'reference'\), got 'fast'"),
    (lambda: L.Dense(2, activation="softmx"), KeyError,
     r"unknown activation 'softmx'.*did you mean 'softmax'"),
])
def test_unknown_names_list_the_known_ones(lookup, error, match):
    with pytest.raises(error, match=match):
        lookup()


@pytest.mark.parametrize("call, error, match", [
    (lambda: losses.get("mse")(np.zeros((5, 3)), np.ones((4, 3))), ShapeError,
     r"y must have the shape of the model output \(4, 3\) for mse, got \(5, 3\)"),
    (lambda: losses.get("sparse_categorical_crossentropy")(np.zeros(5, int), np.ones((4, 3))),
     ShapeError, r"y must be integer labels of shape \(4,\) for "
                 r"sparse_categorical_crossentropy, got shape \(5,\)"),
    (lambda: losses.get("sparse_categorical_crossentropy")(-np.ones(4, int), np.ones((4, 3))),
     ValueError, r"y holds labels from -1 to -1, but the model outputs 3 classes"),
    (lambda: losses.get("mse")(np.zeros((0, 3)), np.zeros((0, 3))), ShapeError,
     r"y_pred must be a non-empty batch, got shape \(0, 3\)"),
    (lambda: losses.get("mse")(np.zeros((4, 3)), np.ones((4, 3)), np.ones(3)), ShapeError,
     r"sample_weight must have one weight per sample \(4\), got shape \(3,\)"),
    (lambda: losses.get("mae")(np.zeros((4, 3), complex), np.ones((4, 3))), TypeError,
     r"y must hold numbers for mae, got dtype complex128"),
    (lambda: losses.get("mse")(np.zeros((4, 3)), poke(np.ones((4, 3)), np.nan)), ValueError,
     r"y_pred contains 1 NaN or infinite"),
    (lambda: losses.get("mse")(poke(np.zeros((4, 3)), np.inf), np.ones((4, 3))), ValueError,
     r"y_true contains 1 NaN or infinite"),
    (lambda: losses.get("mse")(np.zeros((4, 3)), np.ones((4, 3)), poke(np.ones(4), np.nan)),
     ValueError, r"sample_weight contains 1 NaN or infinite"),
    (lambda: losses.get("mse")(np.zeros((4, 3)), np.ones((4, 3)), np.ones(4, complex)),
     TypeError, r"sample_weight must hold real numbers, got dtype complex128"),
    (lambda: losses.get("mse")(np.zeros((4, 3)), np.ones((4, 3), complex)), TypeError,
     r"y_pred must hold real numbers, got dtype complex128"),
    (lambda: losses.get("mse")(np.zeros((4, 3)), np.full((4, 3), "a")), TypeError,
     r"y_pred must hold real numbers, got dtype <U1"),
    (lambda: optimizers.SGD(learning_rate=-1), ValueError,
     r"learning_rate must be a positive float, got -1"),
    (lambda: optimizers.Adam(learning_rate=float("inf")), ValueError,
     r"learning_rate must be a positive float, got inf"),
    (lambda: optimizers.RMSprop(learning_rate="0.1"), ValueError,
     r"learning_rate must be a positive float, got '0\.1'"),
    (lambda: optimizers.SGD(momentum=1.0), ValueError, r"momentum must be in \[0, 1\), got 1\.0"),
    (lambda: optimizers.Adam(beta_2=float("nan")), ValueError, r"beta_2 must be in \[0, 1\), "
                                                                r"got nan"),
    (lambda: optimizers.Adagrad(weight_decay=-1), ValueError,
     r"weight_decay must be a float >= 0, got -1"),
    (lambda: optimizers.Adam(epsilon=-1), ValueError, r"epsilon must be a positive float, got -1"),
    (lambda: optimizers.RMSprop(rho=2), ValueError, r"rho must be in \[0, 1\), got 2"),
    (lambda: optimizers.Adagrad(initial_accumulator_value=-1), ValueError,
     r"initial_accumulator_value must be a float >= 0, got -1"),
    (lambda: callbacks.EarlyStopping(mode="up"), ValueError,
     r"mode must be 'auto', 'min' or 'max', got 'up'"),
    (lambda: callbacks.EarlyStopping(patience="x"), ValueError,
     r"patience must be an int >= 0, got 'x'"),
    (lambda: callbacks.EarlyStopping(patience=-1), ValueError,
     r"patience must be an int >= 0, got -1"),
    (lambda: callbacks.EarlyStopping(min_delta="x"), ValueError,
     r"min_delta must be a float \(not NaN or inf\), got 'x'"),
    (lambda: callbacks.EarlyStopping(monitor=3), TypeError,
     r"monitor must be a str such as 'val_loss', got int: 3"),
    (lambda: callbacks.ModelCheckpoint(None), TypeError,
     r"filepath must be a str or path-like such as 'model.npz', got NoneType: None"),
    (lambda: callbacks.ReduceLROnPlateau(factor=1), ValueError, r"factor must be in \(0, 1\), "
                                                                 r"got 1"),
    (lambda: callbacks.ReduceLROnPlateau(factor="x"), ValueError,
     r"factor must be in \(0, 1\), got 'x'"),
    (lambda: callbacks.ReduceLROnPlateau(min_lr=-1), ValueError,
     r"min_lr must be a float >= 0, got -1"),
    (lambda: callbacks.LambdaCallback(on_epoch_end=3), TypeError,
     r"on_epoch_end must be callable \(a function of epoch, logs\), got int: 3"),
    (lambda: datasets.load_digits(size=10), ValueError,
     r"size must be one of \(8, 16, 28, 32\), got 10"),
    (lambda: datasets.load_digits(size=8.0), ValueError, r"size must be one of .*got 8\.0"),
    (lambda: datasets.load_digits(size="8"), ValueError, r"size must be one of .*got '8'"),
    (lambda: datasets.load_digits(size=True), ValueError, r"size must be one of .*got True"),
    (lambda: cytorch.set_num_threads(0), ValueError,
     r"num_threads must be a positive int or None, got 0"),
    (lambda: cytorch.set_seed(-1), ValueError, r"seed must be a non-negative int or None, got -1"),
    (lambda: cytorch.set_seed("x"), ValueError,
     r"seed must be a non-negative int or None, got 'x'"),
])
def test_loss_optimizer_callback_and_data_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("argv, pattern", [
    (["train", "--learning-rate", "inf"], r"--learning-rate: expected a positive number, got inf"),
    (["train", "--learning-rate", "nan"], r"--learning-rate: expected a positive number, got nan"),
    (["train", "--seed", "-1"], r"--seed: expected an integer from 0 to 2\*\*32 - 1, got -1"),
    (["train", "--seed", str(2 ** 32)], r"--seed: expected an integer .*got 4294967296"),
    (["train", "--seed", "1.5"], r"--seed: expected an integer, got '1\.5'"),
    (["train", "--batch-size", "0"], r"--batch-size: expected a positive integer, got 0"),
    (["summary", "lenet5", "--input-shape", "8", "8", "1"],
     r"Conv2D '.*' needs at least 5x5 input \(after padding\), got 2x2"),
])
def test_command_line_mistakes_are_one_line_with_status_2(capsys, argv, pattern):
    status = cli_main(argv)
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert re.search(pattern, err), err


def test_command_line_summary_of_a_file_that_is_not_a_model(capsys, tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("not a model")
    assert cli_main(["summary", str(path)]) == 2
    assert re.search(rf"cytorch: error: '{re.escape(str(path))}' is not a cytorch model file: "
                     rf"not a NumPy .npz archive", capsys.readouterr().err)


@pytest.fixture(scope="module")
def drawn_model():
    pytest.importorskip("matplotlib")
    return Sequential([L.Input((5, 5, 3)), L.Conv2D(2, 3), L.Flatten(), L.Dense(3)], seed=0)


@pytest.mark.parametrize("draw, error, match", [
    (lambda m: viz.plot_history({"loss": "abc"}), ValueError,
     r"history\['loss'\] must be a list of per-epoch numbers, got 'abc'"),
    (lambda m: viz.plot_history({"loss": 3}), ValueError,
     r"history\['loss'\] must be a list of per-epoch numbers, got 3"),
    (lambda m: viz.plot_filters(m, max_filters=0), ValueError,
     r"max_filters must be a positive int, got 0"),
    (lambda m: viz.plot_filters(m, max_filters=-1), ValueError,
     r"max_filters must be a positive int, got -1"),
    (lambda m: viz.plot_filters("model"), TypeError,
     r"model must be a cytorch Model or Sequential, got str"),
    (lambda m: viz.plot_filters(m, layer="nope"), KeyError, r"no layer named 'nope' in model"),
    (lambda m: viz.plot_activations(m, X[0], max_maps="2"), ValueError,
     r"max_maps must be a positive int, got '2'"),
    (lambda m: viz.plot_activations(m, poke(X[0], np.nan)), ValueError,
     r"x contains 1 NaN or infinite"),
    (lambda m: viz.plot_activations(m, X[0].astype(complex)), TypeError,
     r"x must hold real numbers, got dtype complex128"),
    (lambda m: viz.plot_activations(m, X[0, :, :, :2]), ValueError,
     r"x must have shape \(N, 5, 5, 3\) for model '.*', got \(1, 5, 5, 2\)"),
    (lambda m: viz.layer_outputs(m, X[:0]), ShapeError, r"x must not be empty, got shape "
                                                        r"\(0, 5, 5, 3\)"),
])
def test_pictures_check_their_arguments(drawn_model, draw, error, match):
    with pytest.raises(error, match=match):
        draw(drawn_model)


def test_pictures_leave_the_image_alone(drawn_model):
    image = frozen(X[0])
    assert_untouched([image], lambda: viz.plot_activations(drawn_model, image))
    assert_untouched([image], lambda: viz.layer_outputs(drawn_model, strided(image[None])))


# ===============================================================================================
# 5. The scikit-learn estimator (its own checks: tests/test_estimator.py)
# ===============================================================================================
@pytest.mark.parametrize("layout", [frozen, strided], ids=["read-only", "non-contiguous"])
def test_estimator_leaves_its_data_alone(layout):
    X3, y = layout(RNG.random((24, 4, 4))), layout(np.arange(24) % 3)
    w = layout(np.linspace(0.5, 1.5, 24))
    est = cytorch.CNNClassifier(max_iter=2, random_state=0)
    assert_untouched([X3, y, w], lambda: (est.fit(X3, y, sample_weight=w), est.predict(X3),
                                          est.predict_proba(X3), est.score(X3, y),
                                          est.partial_fit(X3, y, sample_weight=w)))


@pytest.mark.filterwarnings("error")  # no ComplexWarning, no "All-NaN slice encountered"
@pytest.mark.parametrize("sample_weight, error, match", [
    (np.ones(24, complex), TypeError, r"sample_weight must hold real numbers, got dtype complex"),
    (1j, TypeError, r"sample_weight must hold real numbers, got dtype complex"),
    (np.full(24, np.nan), ValueError, r"sample_weight must be finite and >= 0, got 24 "
                                      r"NaN or infinite and 0 negative value\(s\) of 24"),
    (np.r_[-1.0, np.ones(23)], ValueError, r"got 0 NaN or infinite and 1 negative value"),
], ids=["complex", "complex scalar", "all NaN", "negative"])
def test_estimator_sample_weight(sample_weight, error, match):
    X3, y = RNG.random((24, 4, 4)), np.arange(24) % 3
    with pytest.raises(error, match=match):
        cytorch.CNNClassifier(max_iter=1).fit(X3, y, sample_weight=sample_weight)
