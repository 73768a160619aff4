"""The compiled depthwise kernel (``_kernels/_depthwise.pyx``) against its twins: the depthwise
twin ``reference.depthwise_conv2d_*`` for what the layers use, and a one-channel conv2d twin
per channel for the dilations only the kernel takes; in every instruction-set variant, both
dtypes, with each activation of the fused epilogue (``_epilogue.pxd``).  (Through
``cytorch.functional`` the kernel is also tested in test_new_layers.py, test_layers.py and the
Keras comparisons; bounds in test_kernel_bounds.py.)"""
import numpy as np
import pytest
from conftest import POSITION_DEPENDENT, assert_same
from hypothesis import given, settings, strategies as st
from test_conv import random_conv_operands

import cytorch
from cytorch import activations, functional as F, layers as L, reference as R
from cytorch._gradcheck import numerical_gradient, relative_error, rounding_error
from cytorch._kernels import EPILOGUES, load
from cytorch._shapes import resolve_padding

TOL = {np.float32: 2e-5, np.float64: 1e-12}
VARIANTS = load("_depthwise").isa_variants()


def twin(x, w, b, strides, pads, dilation, dout):
    """out, dx, dw, db by the one-channel conv2d twin, channel by channel."""
    dm = w.shape[3]
    padding = (pads[:2], pads[2:])
    outs, dxs, dws = [], [], []
    for c in range(x.shape[3]):
        out, cache = R.conv2d_forward(x[..., c:c + 1], w[:, :, c:c + 1, :], None, strides,
                                      padding, dilation)
        dx, dw, _ = R.conv2d_backward(dout[..., c * dm:(c + 1) * dm], cache)
        outs.append(out)
        dxs.append(dx)
        dws.append(dw)
    out = np.concatenate(outs, axis=3) + b
    return out, np.concatenate(dxs, axis=3), np.concatenate(dws, axis=2), \
        dout.reshape(-1, dout.shape[3]).sum(axis=0)


def kernel(x, w, b, strides, pads, dilation, dout, threads, need_dx=True, activation="linear"):
    D = load("_depthwise")
    out = np.empty(dout.shape, x.dtype)
    D.depthwise_conv2d_forward(x, w, b, out, *strides, pads[0], pads[2], threads, *dilation,
                               activation)
    dx = np.empty_like(x) if need_dx else None
    dw, db = np.empty_like(w), np.empty(b.shape, x.dtype)
    D.depthwise_conv2d_backward(dout, x, w, dx, dw, db, *strides, pads[0], pads[2], threads,
                                *dilation, activation, out)
    return out, dx, dw, db


@pytest.fixture
def restore_isa():
    yield
    load("_depthwise")._select_isa("best")


@pytest.mark.parametrize("variant", VARIANTS)
@settings(max_examples=40, deadline=None)
@given(N=st.integers(1, 3), H=st.integers(1, 11), W=st.integers(1, 11),
       C=st.one_of(st.integers(1, 9), st.sampled_from([16, 24, 32])),
       dm=st.integers(1, 5), kh=st.integers(1, 5), kw=st.integers(1, 5),
       sh=st.integers(1, 3), sw=st.integers(1, 3), dh=st.integers(1, 2), dw=st.integers(1, 2),
       padding=st.sampled_from(["valid", "same", "full", 2, ((0, 3), (1, 0))]),
       dtype=st.sampled_from([np.float32, np.float64]), need_dx=st.booleans(),
       threads=st.integers(1, 3), activation=st.sampled_from(EPILOGUES),
       seed=st.integers(0, 2 ** 16))
def test_depthwise_kernel_matches_its_twins(variant, N, H, W, C, dm, kh, kw, sh, sw, dh, dw,
                                            padding, dtype, need_dx, threads, activation, seed):
    # C * dm from 1 to 45 lanes (and 16 to 160): less than a vector, whole vectors and a tail;
    # dm = 1 with whole vectors of channels reads x and writes dx in place, the others work on
    # a copy; 5x5 windows are three tiles of taps (9 + 9 + 7); strides and dilations move whole
    # vectors; padding clips windows on every side (or leaves some entirely outside); each
    # activation of the fused epilogue
    drawn = random_conv_operands(N, H, W, C, dm, kh, kw, (sh, sw), padding, dtype, seed,
                                 (dh, dw))
    if drawn is None:
        return
    x, w, rng = drawn
    b = rng.standard_normal(C * dm).astype(dtype)
    ext_h, ext_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    pads = resolve_padding(padding, H, W, ext_h, ext_w, sh, sw)
    H_out = (H + pads[0] + pads[1] - ext_h) // sh + 1
    W_out = (W + pads[2] + pads[3] - ext_w) // sw + 1
    dout = rng.standard_normal((N, H_out, W_out, C * dm)).astype(dtype)
    load("_depthwise")._select_isa(variant)
    try:
        got = kernel(x, w, b, (sh, sw), pads, (dh, dw), dout, threads, need_dx, activation)
    finally:
        load("_depthwise")._select_isa("best")
    f64 = [v.astype(np.float64) for v in (x, w, b, dout)]
    # the twin's backward runs from the kernel's own y: a value within rounding of a kink
    # (relu at 0) then takes the same side in both
    y = got[0].astype(np.float64)
    dz = R.conv2d_activation_backward(f64[3], y, activation)
    want = twin(*f64[:3], (sh, sw), pads, (dh, dw), dz)
    want = (R.conv2d_activate(want[0], activation),) + want[1:]
    # the linear computation on |terms| bounds the rounding (|f'| <= 1)
    scale = twin(*[np.abs(v) for v in f64[:3]], (sh, sw), pads, (dh, dw), np.abs(f64[3]))
    if (dh, dw) == (1, 1):     # the layers' twin agrees with the per-channel one
        out_r, cache = R.depthwise_conv2d_forward(*f64[:3], (sh, sw), (pads[:2], pads[2:]),
                                                  activation=activation)
        np.testing.assert_allclose(out_r, want[0], rtol=1e-12, atol=1e-12)
        if activation != "linear":
            cache["y"] = y
        for r, s in zip(R.depthwise_conv2d_backward(f64[3], cache), want[1:]):
            np.testing.assert_allclose(r, s, rtol=1e-12, atol=1e-12)
    for name, g, r, s in zip(("out", "dx", "dw", "db"), got, want, scale):
        if g is None:
            assert name == "dx" and not need_dx
            continue
        assert g.dtype == dtype and g.shape == r.shape, name
        assert rounding_error(g, r, s) < TOL[dtype], name


def test_depthwise_variants_agree(restore_isa):
    # AVX2 and AVX-512 both fuse each multiply-add and add every lane's terms in one order
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 13, 11, 7)).astype(np.float32)
    w = rng.standard_normal((5, 3, 7, 3)).astype(np.float32)
    b = rng.standard_normal(21).astype(np.float32)
    dout = rng.standard_normal((3, 7, 11, 21)).astype(np.float32)
    results = {}
    for variant in VARIANTS:
        load("_depthwise")._select_isa(variant)
        results[variant] = kernel(x, w, b, (2, 1), (1, 2, 1, 1), (1, 1), dout, 2)
    for variant, got in results.items():
        for g, r in zip(got, results[VARIANTS[0]]):
            if variant in ("avx2", "avx512"):
                np.testing.assert_array_equal(g, r, err_msg=variant)
            else:
                np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5 * np.abs(r).max())


def test_depthwise_kernel_finite_differences():
    # float64 through the front door: depth multiplier 3, stride (2, 1), asymmetric padding
    rng = np.random.default_rng(4)
    x, w, b = rng.normal(size=(2, 7, 6, 5)), rng.normal(size=(3, 4, 5, 3)), rng.normal(size=15)
    pad = ((1, 0), (2, 1))
    out, cache = F.depthwise_conv2d_forward(x, w, b, (2, 1), pad)
    dout = rng.normal(size=out.shape)
    dx, dw, db = F.depthwise_conv2d_backward(dout, cache)

    def f(x=x, w=w, b=b):
        return F.depthwise_conv2d_forward(x, w, b, (2, 1), pad)[0]
    assert relative_error(dx, numerical_gradient(lambda v: f(x=v), x, dout)) < 1e-8
    assert relative_error(dw, numerical_gradient(lambda v: f(w=v), w, dout)) < 1e-8
    assert relative_error(db, numerical_gradient(lambda v: f(b=v), b, dout)) < 1e-8


@pytest.mark.parametrize("activation", ["linear", "tanh"])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_depthwise_runs_are_bit_identical(threads, activation):
    # per-unit partial sums of dW and db, added in unit order: the same bits on every run of
    # a thread count, whichever thread ran which unit; and the same numbers to rounding across
    # thread counts (with the fused epilogue too)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((9, 8, 8, 6)).astype(np.float32)
    w = rng.standard_normal((3, 3, 6, 2)).astype(np.float32)
    b = np.zeros(12, np.float32)
    dout = rng.standard_normal((9, 8, 8, 12)).astype(np.float32)
    args = (x, w, b, (1, 1), (1, 1, 1, 1), (1, 1), dout)
    first = kernel(*args, threads, activation=activation)
    for _ in range(3):
        for g, r in zip(kernel(*args, threads, activation=activation), first):
            np.testing.assert_array_equal(g, r)
    for g, r in zip(kernel(*args, 1, activation=activation), first):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5 * np.abs(r).max())


@pytest.mark.parametrize("call", [
    lambda D, x, w, b, out: D.depthwise_conv2d_forward(x, w, b, out, 0, 1, 0, 0, 1),
    lambda D, x, w, b, out: D.depthwise_conv2d_forward(x, w, b, out, 1, 1, -1, 0, 1),
    lambda D, x, w, b, out: D.depthwise_conv2d_forward(x, w, b, out, 1, 1, 0, 0, 1, 0, 1),
    lambda D, x, w, b, out: D.depthwise_conv2d_forward(x, w, b[:1], out, 1, 1, 0, 0, 1),
    lambda D, x, w, b, out: D.depthwise_conv2d_forward(x[..., :1].copy(), w, b, out, 1, 1, 0, 0,
                                                       1),
    lambda D, x, w, b, out: D.depthwise_conv2d_backward(out, x, w, x[:, :1].copy(), w.copy(),
                                                        b.copy(),
                                                        1, 1, 0, 0, 1),
])
def test_depthwise_kernel_refuses_a_bad_geometry(call):
    x, w, b = np.ones((1, 4, 4, 2)), np.ones((2, 2, 2, 2)), np.zeros(4)
    with pytest.raises(ValueError, match=r"depthwise_conv2d kernel: (bad geometry|inconsistent "
                                         r"shapes|dx \(1, 1, 4, 2\) must have the shape)"):
        call(load("_depthwise"), x, w, b, np.empty((1, 3, 3, 4)))


# -- the fused epilogue -------------------------------------------------------------------------
FUSED = [a for a in EPILOGUES if a != "linear"]

# (x shape, w shape, strides, padding): the two benchmark layers (whole vectors of channels,
# read in place; stride 2 and "same"), a lane tail with dm = 3 (x copied), dilation
DW_CASES = [((4, 28, 28, 64), (3, 3, 64, 1), 2, "same", 1),
            ((3, 20, 19, 32), (3, 3, 32, 1), 1, "same", 1),
            ((5, 9, 11, 7), (3, 4, 7, 3), (2, 1), ((1, 0), (2, 1)), 1),
            ((2, 12, 12, 5), (3, 3, 5, 2), 1, "valid", 2)]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", FUSED)
@pytest.mark.parametrize("xs, ws, strides, padding, dilation", DW_CASES)
def test_fused_depthwise_equals_activation_applied_afterwards(xs, ws, strides, padding,
                                                              dilation, activation, dtype,
                                                              threads):
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[2] * ws[3]).astype(dtype)
    act = activations.get(activation)
    exact = (activation, dtype) not in POSITION_DEPENDENT
    cytorch.set_num_threads(threads)
    try:
        z, plain = F.depthwise_conv2d_forward(x, w, b, strides, padding, dilation)
        y, fused = F.depthwise_conv2d_forward(x, w, b, strides, padding, dilation,
                                              activation=activation)
        assert fused["activation"] == activation and fused["y"] is y
        assert_same(y, act.forward(z.copy()), exact, "out")
        dout = rng.standard_normal(y.shape).astype(dtype)
        want = F.depthwise_conv2d_backward(act.backward(dout, y), plain)
        got = F.depthwise_conv2d_backward(dout, fused)
        for name, g, r in zip(("dx", "dw", "db"), got, want):
            assert_same(g, r, exact, name)
    finally:
        cytorch.set_num_threads(None)


@pytest.mark.parametrize("backend", ["compiled", "reference"])
@pytest.mark.parametrize("activation", FUSED)
def test_fused_depthwise_gradients_match_finite_differences(backend, activation):
    # float64, dm = 2, stride (2, 1), asymmetric padding; every z away from 0 (the kinks of
    # relu and leaky_relu), so that no step of the differences crosses one
    rng = np.random.default_rng(6)
    x, w, b = rng.normal(size=(2, 7, 6, 3)), rng.normal(size=(3, 2, 3, 2)), rng.normal(size=6)
    pad = ((1, 0), (0, 1))

    def f(x=x, w=w, b=b):
        return F.depthwise_conv2d_forward(x, w, b, (2, 1), pad, activation=activation)[0]

    with cytorch.backend(backend):
        assert np.abs(F.depthwise_conv2d_forward(x, w, b, (2, 1), pad)[0]).min() > 1e-4
        out, cache = F.depthwise_conv2d_forward(x, w, b, (2, 1), pad, activation=activation)
        dout = rng.normal(size=out.shape)
        dx, dw, db = F.depthwise_conv2d_backward(dout, cache)
        assert relative_error(dx, numerical_gradient(lambda v: f(x=v), x, dout)) < 1e-7
        assert relative_error(dw, numerical_gradient(lambda v: f(w=v), w, dout)) < 1e-7
        assert relative_error(db, numerical_gradient(lambda v: f(b=v), b, dout)) < 1e-7


def test_depthwise_backward_needs_the_forward_output():
    D = load("_depthwise")
    x, w, b = np.ones((1, 4, 4, 2)), np.ones((2, 2, 2, 1)), np.zeros(2)
    dout = np.ones((1, 3, 3, 2))
    with pytest.raises(ValueError, match="the derivative of 'tanh' needs y"):
        D.depthwise_conv2d_backward(dout, x, w, None, w.copy(), b.copy(), 1, 1, 0, 0, 1, 1, 1,
                                    "tanh", None)
    with pytest.raises(ValueError, match=r"y \(1, 2, 3, 2\) must have the shape of dout"):
        D.depthwise_conv2d_backward(dout, x, w, None, w.copy(), b.copy(), 1, 1, 0, 0, 1, 1, 1,
                                    "tanh", np.ones((1, 2, 3, 2)))
    with pytest.raises(ValueError, match="activation must be one of"):
        D.depthwise_conv2d_forward(x, w, b, np.empty((1, 3, 3, 2)), 1, 1, 0, 0, 1, 1, 1, "gelu")
    with pytest.raises(ValueError, match=r"activation must be None or one of linear.*'gelu'"):
        F.depthwise_conv2d_forward(x, w, b, activation="gelu")


@pytest.mark.parametrize("activation", ["tanh", "relu", "gelu"])
@pytest.mark.parametrize("make", [
    lambda a: L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, activation=a,
                                seed=0),
    lambda a: L.SeparableConv2D(5, 3, padding="same", activation=a, seed=0)])
def test_depthwise_layers_fuse_their_activation(make, activation):
    # the layer hands relu and tanh to the kernel (cache holds the activation), applies gelu
    # itself; either way its numbers are those of the linear layer followed by the activation
    # (float32, the layers' dtype: to the last bit or a few ulp, see POSITION_DEPENDENT)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 9, 8, 3))
    fused, linear = make(activation), make(None)
    y = fused.forward(x, training=True)
    linear.build(x.shape[1:])
    linear.params.update({k: v.copy() for k, v in fused.params.items()})
    z = linear.forward(x, training=True)
    act = activations.get(activation)
    assert y.dtype == np.float32
    assert relative_error(y, act.forward(z.copy())) < 1e-6
    conv_cache = fused._cache[0] if isinstance(fused, L.DepthwiseConv2D) else fused._cache[1]
    assert conv_cache["activation"] == (activation if activation != "gelu" else "linear")
    dout = rng.standard_normal(y.shape)
    dx = fused.backward(dout)
    want_dx = linear.backward(act.backward(dout, y) if not act.from_input
                              else act.bind(z).backward(dout, y))
    assert relative_error(dx, want_dx) < 1e-6
    for name in fused.grads:
        assert relative_error(fused.grads[name], linear.grads[name]) < 1e-6, name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_depthwise_variants_agree_with_every_activation(dtype, restore_isa):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 13, 11, 7)).astype(dtype)
    w = rng.standard_normal((5, 3, 7, 3)).astype(dtype)
    b = rng.standard_normal(21).astype(dtype)
    dout = rng.standard_normal((3, 7, 11, 21)).astype(dtype)
    results = {}
    for variant in VARIANTS:
        load("_depthwise")._select_isa(variant)
        for activation in FUSED:
            results[variant, activation] = kernel(x, w, b, (2, 1), (1, 2, 1, 1), (1, 1), dout,
                                                  2, activation=activation)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    for (variant, activation), got in results.items():
        for g, r in zip(got, results[VARIANTS[0], activation]):
            what = f"{variant} {activation}"
            if variant != "default" and (activation, dtype) not in POSITION_DEPENDENT:
                np.testing.assert_array_equal(g, r, err_msg=what)
            else:
                np.testing.assert_allclose(g, r, rtol=tol, atol=tol * max(1, np.abs(r).max()),
                                           err_msg=what)
