"""conv2d's fused epilogue: the activation applied by the kernels as they write the output, and
its derivative applied in backward's first pass over dout (``_kernels/_epilogue.pxd``).

Checked on every compiled path (im2col + GEMM in ``_conv``, the direct path in ``_direct``,
the blocked path in ``_blocked``, Winograd's F(2x2, 3x3) in ``_winograd``)
against the twins ``reference.conv2d_forward`` / ``conv2d_shift_add_forward`` with
``activation=`` ("conv, then + bias, then f"), against the unfused computation (the activation
of ``cytorch.activations`` applied to the linear output: the same bits), by finite differences,
and through the ``Conv2D`` layer and the ``relu_after_pooling`` graph pass."""
import numpy as np
import pytest
from conftest import POSITION_DEPENDENT, assert_same
from hypothesis import given, settings, strategies as st

import cytorch
from cytorch import activations, functional as F, layers as L, reference
from cytorch._gradcheck import numerical_gradient, relative_error, rounding_error
from cytorch._kernels import EPILOGUES, load
from cytorch._shapes import resolve_padding

TOL = {np.float32: 2e-5, np.float64: 1e-12}
FUSED = [a for a in F.CONV2D_ACTIVATIONS if a != "linear"]
MODULES = ["_conv", "_direct", "_blocked", "_winograd"]
PADDINGS = st.one_of(st.sampled_from(["valid", "same", "full"]), st.integers(0, 2),
                     st.tuples(st.tuples(st.integers(0, 2), st.integers(0, 2)),
                               st.tuples(st.integers(0, 2), st.integers(0, 2))))


def test_front_door_and_kernels_know_the_same_activations():
    assert F.CONV2D_ACTIVATIONS == EPILOGUES
    assert EPILOGUES[0] == "linear" and set(EPILOGUES) <= set(activations.names())
    # the epilogue's codes are the element functions' (_mathfn.h) codes
    assert all(load("_activation").CODES[name] == code for code, name in enumerate(EPILOGUES))


def kernel_call(module, x, w, b, strides, pads, dout, activation, threads, dilation=(1, 1)):
    """The compiled kernel ``module`` called directly: out, dx, dw, db."""
    N, H, W, C = x.shape
    kh, kw, _, K = w.shape
    (sh, sw), (pt, pb, pl, pr), (dh, dw_) = strides, pads, dilation
    H_out = (H + pt + pb - (kh - 1) * dh - 1) // sh + 1
    W_out = (W + pl + pr - (kw - 1) * dw_ - 1) // sw + 1
    out = np.empty((N, H_out, W_out, K), x.dtype)
    dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty(K, x.dtype)
    kernel = load(module)
    if module != "_conv":           # stride 1, no dilation: the same arguments
        kernel.conv2d_forward(x, w, b, out, pt, pl, threads, activation)
        kernel.conv2d_backward(dout, x, w, dx, dw, db, pt, pl, threads, activation, out)
    else:
        kernel.conv2d_forward(x, w, b, out, sh, sw, pt, pl, threads, dh, dw_, activation)
        kernel.conv2d_backward(dout, x, w, dx, dw, db, sh, sw, pt, pl, threads, dh, dw_,
                               activation, out)
    return out, dx, dw, db


# -- against the twin, on random shapes ---------------------------------------------------------
@settings(max_examples=120, deadline=None)
@given(module=st.sampled_from(MODULES), N=st.integers(1, 3), H=st.integers(1, 9),
       W=st.integers(1, 9), C=st.integers(1, 4), K=st.integers(1, 12), kh=st.integers(1, 4),
       kw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3),
       dilation=st.sampled_from([(1, 1), (1, 1), (2, 1)]), padding=PADDINGS,
       activation=st.sampled_from(EPILOGUES), dtype=st.sampled_from([np.float32, np.float64]),
       threads=st.integers(1, 2), seed=st.integers(0, 2 ** 16))
def test_fused_kernels_match_the_twin(module, N, H, W, C, K, kh, kw, sh, sw, dilation, padding,
                                      activation, dtype, threads, seed):
    if module != "_conv":
        sh = sw = 1
        dilation = (1, 1)
    if module == "_winograd":
        kh = kw = 3
    elif dilation != (1, 1):
        sh = sw = 1
    ext = ((kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1)
    pads = resolve_padding(padding, H, W, *ext, sh, sw)
    pt, pb, pl, pr = pads
    if H + pt + pb < ext[0] or W + pl + pr < ext[1]:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, H, W, C)).astype(dtype)
    w = rng.standard_normal((kh, kw, C, K)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    pairs = ((pt, pb), (pl, pr))
    want_out, cache = reference.conv2d_forward(x, w, b, (sh, sw), pairs, dilation, activation)
    dout = rng.standard_normal(want_out.shape).astype(dtype)
    got = kernel_call(module, x, w, b, (sh, sw), pads, dout, activation, threads, dilation)
    # backward of the twin from the kernel's y: a value within rounding of a kink (relu at 0)
    # must take the same side in both
    cache["y"] = got[0] if activation != "linear" else None
    want = (want_out,) + reference.conv2d_backward(dout, cache)
    # the linear computation on |terms|, in float64, bounds the rounding (|f'| <= 1)
    a64 = [np.abs(v).astype(np.float64) for v in (x, w, b, dout)]
    s_out, s_cache = reference.conv2d_forward(*a64[:3], (sh, sw), pairs, dilation)
    scale = (s_out,) + reference.conv2d_backward(a64[3], s_cache)
    for name, g, r, s in zip(("out", "dx", "dw", "db"), got, want, scale):
        assert g.dtype == dtype and g.shape == r.shape, name
        assert rounding_error(g, r, s) < TOL[dtype], (name, activation)


@pytest.mark.parametrize("activation", EPILOGUES)
def test_shift_add_twin_applies_the_same_epilogue(activation):
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((2, 6, 7, 2)), rng.standard_normal((3, 2, 2, 3)), \
        rng.standard_normal(3)
    out, cache = reference.conv2d_shift_add_forward(x, w, b, "same", activation)
    want, want_cache = reference.conv2d_forward(x, w, b, 1, "same", activation=activation)
    np.testing.assert_allclose(out, want, rtol=1e-13, atol=1e-13)
    dout = rng.standard_normal(out.shape)
    for g, r in zip(reference.conv2d_shift_add_backward(dout, cache),
                    reference.conv2d_backward(dout, want_cache)):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-12)


# -- fused == unfused, bit for bit --------------------------------------------------------------
# (x shape, w shape, strides, padding): a thin layer (direct path), LeNet's two layers (the
# blocked path), a strided GEMM case, a "same" case with several image groups
# per thread (blocked in float32, Winograd in float64), a Winograd case (3x3, C >= 16)
CASES = [((9, 28, 28, 3), (5, 5, 3, 2), 1, "same"), ((9, 28, 28, 1), (5, 5, 1, 6), 1, "valid"),
         ((9, 14, 14, 6), (5, 5, 6, 16), 1, "valid"),
         ((5, 9, 9, 7), (3, 3, 7, 5), 2, "same"), ((3, 40, 40, 8), (3, 3, 8, 4), 1, "same"),
         ((2, 12, 12, 16), (3, 3, 16, 8), 1, "same")]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", FUSED)
@pytest.mark.parametrize("xs, ws, strides, padding", CASES)
def test_fused_equals_activation_applied_afterwards(xs, ws, strides, padding, activation, dtype,
                                                    threads):
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[3]).astype(dtype)
    act = activations.get(activation)
    exact = (activation, dtype) not in POSITION_DEPENDENT
    cytorch.set_num_threads(threads)
    try:
        z, plain = F.conv2d_forward(x, w, b, strides, padding)
        y, fused = F.conv2d_forward(x, w, b, strides, padding, activation=activation)
        assert_same(y, act.forward(z.copy()), exact, "out")
        dout = rng.standard_normal(y.shape).astype(dtype)
        want = F.conv2d_backward(act.backward(dout, y), plain)
        got = F.conv2d_backward(dout, fused)
        for name, g, r in zip(("dx", "dw", "db"), got, want):
            assert_same(g, r, exact, name)
        dx, dw, db = F.conv2d_backward(dout, fused, need_dx=False)
        assert dx is None
        np.testing.assert_array_equal(dw, got[1])
        np.testing.assert_array_equal(db, got[2])
    finally:
        cytorch.set_num_threads(None)


@pytest.mark.parametrize("activation", FUSED)
def test_special_values_as_cytorch_activations(activation):
    # a 1x1 kernel of 1 and a zero bias copy x (but -0.0, which 0 + -0.0 makes +0.0): every
    # special value reaches the epilogue as z
    z = np.array([0.0, -1.5, 2.5, np.nan, -np.inf, np.inf, 1e-40, -1e-40, -100.0, 100.0],
                 dtype=np.float32)
    x = np.tile(z, (1, 5, 1))[..., None]                 # (1, 5, 10, 1)
    want = activations.get(activation).forward(x.copy())
    # (not Winograd's: its transforms add neighbouring pixels, so an inf or NaN spreads over
    # its tile whatever the kernel)
    for module in ("_direct", "_conv", "_blocked"):
        out = np.empty((1, 5, 10, 1), np.float32)
        args = (0, 0, 1, activation) if module != "_conv" else (1, 1, 0, 0, 1, 1, 1,
                                                                  activation)
        load(module).conv2d_forward(x, np.ones((1, 1, 1, 1), np.float32),
                                    np.zeros(1, np.float32), out, *args)
        np.testing.assert_array_equal(out, want, err_msg=module)
        assert (np.signbit(out) == np.signbit(want)).all(), module


# -- finite differences (float64) through the fused backward -------------------------------------
GRAD_CASES = [((2, 5, 6, 3), (3, 2, 3, 2), 1, "valid"),       # direct path
              ((1, 6, 5, 3), (2, 3, 3, 2), (2, 1), "same"),    # GEMM, strided
              ((1, 5, 7, 2), (1, 4, 2, 2), (1, 3), ((2, 0), (1, 2)))]


@pytest.mark.parametrize("backend", ["compiled", "reference"])
@pytest.mark.parametrize("activation", FUSED)
@pytest.mark.parametrize("shape, wshape, strides, padding", GRAD_CASES)
def test_fused_gradients_match_finite_differences(backend, activation, shape, wshape, strides,
                                                  padding):
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal(shape), rng.standard_normal(wshape)
    b = rng.standard_normal(wshape[3])

    def f(x_, w_, b_):
        return F.conv2d_forward(x_, w_, b_, strides, padding, activation=activation)[0]

    with cytorch.backend(backend):
        out, cache = F.conv2d_forward(x, w, b, strides, padding, activation=activation)
        # every z away from 0 (relu's and leaky_relu's kink), so no step of the differences
        # crosses it
        assert np.abs(F.conv2d_forward(x, w, b, strides, padding)[0]).min() > 1e-4
        dout = rng.standard_normal(out.shape)
        dx, dw, db = F.conv2d_backward(dout, cache)
        assert relative_error(dx, numerical_gradient(lambda v: f(v, w, b), x, dout)) < 1e-7
        assert relative_error(dw, numerical_gradient(lambda v: f(x, v, b), w, dout)) < 1e-7
        assert relative_error(db, numerical_gradient(lambda v: f(x, w, v), b, dout)) < 1e-7


@pytest.mark.parametrize("activation", FUSED)
@pytest.mark.parametrize("module", MODULES)
def test_each_kernel_fused_gradients_match_finite_differences(module, activation):
    # every compiled path called directly, whatever the dispatch rules pick: stride 1, "same"
    # 3x3 (Winograd's shape), two threads (two work units)
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 5, 6, 3)), rng.standard_normal((3, 3, 3, 4))
    b = rng.standard_normal(4)
    pads, ones = (1, 1, 1, 1), (1, 1)

    def f(x_, w_, b_):
        out = kernel_call(module, x_, w_, b_, ones, pads, np.ones((2, 5, 6, 4)), activation,
                          2)[0]
        return out

    assert np.abs(kernel_call(module, x, w, b, ones, pads, np.ones((2, 5, 6, 4)), "linear",
                              2)[0]).min() > 1e-4     # away from the kinks
    dout = rng.standard_normal((2, 5, 6, 4))
    _, dx, dw, db = kernel_call(module, x, w, b, ones, pads, dout, activation, 2)
    assert relative_error(dx, numerical_gradient(lambda v: f(v, w, b), x, dout)) < 1e-7
    assert relative_error(dw, numerical_gradient(lambda v: f(x, v, b), w, dout)) < 1e-7
    assert relative_error(db, numerical_gradient(lambda v: f(x, w, v), b, dout)) < 1e-7


# -- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["compiled", "reference"])
def test_an_activation_conv2d_cannot_apply_is_refused(backend):
    with cytorch.backend(backend), pytest.raises(
            ValueError, match=r"activation must be None or one of linear, relu.*got 'gelu'"):
        F.conv2d_forward(np.ones((1, 3, 3, 1)), np.ones((2, 2, 1, 1)), activation="gelu")


def test_backward_needs_the_forward_output():
    out, cache = F.conv2d_forward(np.ones((1, 3, 3, 1)), np.ones((2, 2, 1, 1)),
                                  activation="relu")
    with pytest.raises(ValueError, match=r"activation 'relu' needs its forward output y"):
        F.conv2d_backward(np.ones(out.shape), {**cache, "y": None})
    with pytest.raises(ValueError, match=r"needs its forward output y.*\(1, 2, 2, 1\)"):
        F.conv2d_backward(np.ones(out.shape), {**cache, "y": out[:, :1]})


@pytest.mark.parametrize("module", MODULES)
def test_kernels_refuse_an_unknown_activation_or_a_missing_y(module):
    x, w, b = np.ones((1, 4, 4, 1)), np.ones((2, 2, 1, 2)), np.zeros(2)
    if module == "_winograd":   # 3x3, padding 1 keeps the 3x3 output
        x, w = np.ones((1, 3, 3, 1)), np.ones((3, 3, 1, 2))
    out, dout = np.empty((1, 3, 3, 2)), np.ones((1, 3, 3, 2))
    dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty(2)
    geometry = (0, 0) if module == "_direct" else (1, 1, 0, 0)
    if module in ("_blocked", "_winograd"):
        geometry = (1, 1) if module == "_winograd" else (0, 0)
    dilation = () if module != "_conv" else (1, 1)
    kernel = load(module)
    with pytest.raises(ValueError, match=r"activation must be one of \('linear', 'relu'"):
        kernel.conv2d_forward(x, w, b, out, *geometry, 1, *dilation, "tanhh")
    with pytest.raises(ValueError, match=r"derivative of 'relu' needs y"):
        kernel.conv2d_backward(dout, x, w, dx, dw, db, *geometry, 1, *dilation, "relu", None)
    with pytest.raises(ValueError, match=r"y \(1, 3, 2, 2\) must have the shape of dout"):
        kernel.conv2d_backward(dout, x, w, dx, dw, db, *geometry, 1, *dilation, "relu",
                               np.ones((1, 3, 2, 2)))


# -- the Conv2D layer ----------------------------------------------------------------------------
def test_conv2d_layer_fuses_relu_with_the_same_numbers():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 12, 12, 3)).astype(np.float32)
    fused = L.Conv2D(5, 3, activation="relu", seed=1)
    plain = L.Conv2D(5, 3, seed=1)
    y = fused.forward(x, training=True)
    z = plain.forward(x, training=True)
    assert fused._cache[1] is None and fused._cache[0]["activation"] == "relu"  # the kernel's
    np.testing.assert_array_equal(y, np.maximum(z, 0))
    dout = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_array_equal(fused.backward(dout), plain.backward(dout * (y > 0)))
    for name in ("kernel", "bias"):
        np.testing.assert_array_equal(fused.grads[name], plain.grads[name])


def test_a_custom_activation_of_a_fusable_name_is_not_fused():
    # leaky_relu_function(0.3) is named "leaky_relu" but is not the string's function; the
    # same goes for any ActivationFunction that merely shares a name with a fusable one
    relu_like = activations.ActivationFunction("relu", lambda z, out=None: z * 2,
                                               lambda dout, y: dout * 2)
    layer = L.Conv2D(2, 2, activation=relu_like, seed=0)
    x = np.ones((1, 3, 3, 1), np.float32)
    y = layer.forward(x, training=True)
    np.testing.assert_array_equal(y, 2 * L.Conv2D(2, 2, seed=0).forward(x))
    assert layer._cache[1] is relu_like


def test_deferred_relu_is_not_applied_by_the_conv():
    # relu_after_pooling: the conv leaves ReLU to the max pooling after it, on the smaller map
    cytorch.set_seed(0)
    model = cytorch.Sequential([L.Input((10, 10, 1)), L.Conv2D(4, 3, activation="relu"),
                                L.MaxPooling2D(2), L.Flatten(), L.Dense(3, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((8, 10, 10, 1)).astype(np.float32), rng.integers(0, 3, 8)
    seen = {}
    conv = model.layers[0]
    forward = conv.forward

    def spy(x, training=False, ctx=None):
        out = forward(x, training, ctx=ctx)
        seen[ctx.defer_relu] = out.min()
        return out

    conv.forward = spy
    model.fit(X, y, batch_size=8, epochs=1, verbose=0)
    assert seen[True] < 0                       # the training step: not applied
    seen.clear()
    model.predict(X, verbose=0)                 # predict runs the graph passes too
    assert seen[True] < 0 and False not in seen
    model.graph_passes = ()
    model.predict(X, verbose=0)
    assert seen[False] == 0                     # on its own: applied, fused in the kernel


def test_lenet5_runs_its_tanh_convolutions_fused():
    # LeNet-5's two tanh convs (both on the blocked path): the kernel
    # applies tanh, a training step and predict agree with the same layers unfused
    model = cytorch.models.lenet5(seed=0)
    model.compile("sgd", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, 32, 32, 1)).astype(np.float32)
    convs = [layer for layer in model.layers if isinstance(layer, L.Conv2D)]
    assert len(convs) == 2
    x = X
    for layer in model.layers:
        x = layer.forward(x, training=True)
        if isinstance(layer, L.Conv2D):
            conv_cache, act, y = layer._cache
            assert conv_cache["activation"] == "tanh" and act is None   # fused in the kernel
            unfused = L.Conv2D(layer.filters, 5, seed=0)
            unfused.build(conv_cache["x"].shape[1:])
            unfused.params = dict(layer.params)
            z = unfused.forward(conv_cache["x"], training=True)
            np.testing.assert_allclose(y, np.tanh(z), rtol=0, atol=3e-7)
