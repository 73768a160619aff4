"""Dilated depthwise and separable convolution (``DepthwiseConv2D(dilation_rate=...)``,
``SeparableConv2D(dilation_rate=...)``): the compiled kernel through ``cytorch.functional``
against its twin on random shapes, both dtypes, every instruction-set variant; finite
differences; Keras 3 on identical weights (outputs, dL/dx and the weight gradients) where
``keras`` is installed; PyTorch where installed; the layers' output size, summary, config and
save/load.  (The kernel's own bounds tests: test_kernel_bounds.py; ONNX: test_onnx.py.)"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import cytorch
from cytorch import functional as F
from cytorch import layers as L
from cytorch import reference as R
from cytorch._gradcheck import numerical_gradient, relative_error, rounding_error
from cytorch._kernels import load
from cytorch.graph import Sequential

PADDINGS = st.one_of(st.sampled_from(["valid", "same", "full"]), st.integers(0, 3),
                     st.tuples(st.tuples(st.integers(0, 3), st.integers(0, 3)),
                               st.tuples(st.integers(0, 3), st.integers(0, 3))))
TOL = {np.float32: 2e-5, np.float64: 1e-12}


def fits(H, W, kh, kw, dh, dw, sh, sw, padding):
    """Whether the dilated window fits the padded input (else the call must raise)."""
    try:
        F.depthwise_conv2d_forward(np.zeros((1, H, W, 1)), np.zeros((kh, kw, 1, 1)), None,
                                   (sh, sw), padding, (dh, dw))
    except cytorch.ShapeError:
        return False
    return True


@settings(max_examples=60, deadline=None)
@given(N=st.integers(1, 3), H=st.integers(1, 12), W=st.integers(1, 12),
       C=st.one_of(st.integers(1, 5), st.sampled_from([8, 16, 32])), dm=st.integers(1, 3),
       kh=st.integers(1, 4), kw=st.integers(1, 4), dh=st.integers(1, 4), dw=st.integers(1, 4),
       sh=st.integers(1, 3), sw=st.integers(1, 3), padding=PADDINGS, bias=st.booleans(),
       threads=st.integers(1, 2), dtype=st.sampled_from([np.float32, np.float64]),
       variant=st.sampled_from(load("_depthwise").isa_variants()), seed=st.integers(0, 2 ** 16))
def test_dilated_depthwise_matches_the_twin(N, H, W, C, dm, kh, kw, dh, dw, sh, sw, padding,
                                            bias, threads, dtype, variant, seed):
    if not fits(H, W, kh, kw, dh, dw, sh, sw, padding):
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, H, W, C)).astype(dtype)
    w = rng.standard_normal((kh, kw, C, dm)).astype(dtype)
    b = rng.standard_normal(C * dm).astype(dtype) if bias else None
    cytorch.set_num_threads(threads)
    load("_depthwise")._select_isa(variant)
    try:
        out, cache = F.depthwise_conv2d_forward(x, w, b, (sh, sw), padding, (dh, dw))
        dout = rng.standard_normal(out.shape).astype(dtype)
        grads = F.depthwise_conv2d_backward(dout, cache)
    finally:
        load("_depthwise")._select_isa("best")
        cytorch.set_num_threads(None)
    f64 = [None if v is None else v.astype(np.float64) for v in (x, w, b, dout)]
    out_r, cache_r = R.depthwise_conv2d_forward(*f64[:3], (sh, sw), padding, (dh, dw))
    want = (out_r,) + R.depthwise_conv2d_backward(f64[3], cache_r)
    absolute = [None if v is None else np.abs(v) for v in f64]
    out_s, cache_s = R.depthwise_conv2d_forward(*absolute[:3], (sh, sw), padding, (dh, dw))
    scale = (out_s,) + R.depthwise_conv2d_backward(absolute[3], cache_s)
    for name, g, r, s in zip(("out", "dx", "dw", "db"), (out,) + grads, want, scale):
        if r is None:
            assert g is None and name == "db"
            continue
        assert g.dtype == dtype and g.shape == r.shape, name
        assert rounding_error(g, r, s) < TOL[dtype], name


def test_the_twin_follows_the_definition():
    # out[i, j, c*dm + m] = sum_{a, b} x_pad[i*sh + a*dh, j*sw + b*dw, c] * w[a, b, c, m]
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((1, 9, 8, 2)), rng.standard_normal((2, 3, 2, 2))
    (sh, sw), (dh, dw), (pt, pb, pl, pr) = (2, 1), (3, 2), (1, 0, 2, 1)
    out, _ = R.depthwise_conv2d_forward(x, w, None, (sh, sw), ((pt, pb), (pl, pr)), (dh, dw))
    xp = np.pad(x[0], ((pt, pb), (pl, pr), (0, 0)))
    want = np.zeros(out.shape[1:])
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            for c in range(2):
                for m in range(2):
                    want[i, j, c * 2 + m] = sum(
                        xp[i * sh + a * dh, j * sw + b * dw, c] * w[a, b, c, m]
                        for a in range(2) for b in range(3))
    np.testing.assert_allclose(out[0], want, rtol=1e-12, atol=1e-12)


def test_dilated_depthwise_finite_differences():
    # float64 through the front door: depth multiplier 2, stride and dilation together,
    # asymmetric padding, 16 channels (the kernel reads x and writes dx in place) and 3 (a copy)
    rng = np.random.default_rng(2)
    for C in (16, 3):
        x, w = rng.normal(size=(2, 9, 8, C)), rng.normal(size=(3, 2, C, 2))
        b, pad, s, d = rng.normal(size=2 * C), ((1, 2), (0, 1)), (2, 1), (2, 3)
        out, cache = F.depthwise_conv2d_forward(x, w, b, s, pad, d)
        dout = rng.normal(size=out.shape)
        dx, dw, db = F.depthwise_conv2d_backward(dout, cache)

        def f(x=x, w=w, b=b):
            return F.depthwise_conv2d_forward(x, w, b, s, pad, d)[0]
        assert relative_error(dx, numerical_gradient(lambda v: f(x=v), x, dout)) < 1e-8
        assert relative_error(dw, numerical_gradient(lambda v: f(w=v), w, dout)) < 1e-8
        assert relative_error(db, numerical_gradient(lambda v: f(b=v), b, dout)) < 1e-8


def test_dilated_depthwise_variants_agree():
    # AVX2 and AVX-512 fuse each multiply-add and add every lane's terms in one order: the same
    # bits; the default variant (SSE2, no FMA) to rounding
    rng = np.random.default_rng(3)
    results = {}
    for C, dm in ((16, 1), (5, 3)):
        x = rng.standard_normal((3, 13, 11, C)).astype(np.float32)
        w = rng.standard_normal((3, 3, C, dm)).astype(np.float32)
        b = rng.standard_normal(C * dm).astype(np.float32)
        for variant in load("_depthwise").isa_variants():
            load("_depthwise")._select_isa(variant)
            try:
                out, cache = F.depthwise_conv2d_forward(x, w, b, (2, 1), "same", (2, 3))
                dout = np.cos(np.arange(out.size, dtype=np.float32)).reshape(out.shape)
                results[C, variant] = (out,) + F.depthwise_conv2d_backward(dout, cache)
            finally:
                load("_depthwise")._select_isa("best")
        best = load("_depthwise").isa_variants()[0]
        for variant in load("_depthwise").isa_variants():
            for g, r in zip(results[C, variant], results[C, best]):
                if variant in ("avx2", "avx512"):
                    np.testing.assert_array_equal(g, r, err_msg=variant)
                else:
                    np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5 * np.abs(r).max())


def test_torch_agrees_on_a_dilated_strided_depthwise_convolution():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    C, dm = 3, 2
    x, w, b = rng.standard_normal((2, 13, 12, C)), rng.standard_normal((3, 2, C, dm)), \
        rng.standard_normal(C * dm)
    out, cache = F.depthwise_conv2d_forward(x, w, b, (2, 1), ((2, 2), (1, 1)), (2, 3))
    dout = rng.standard_normal(out.shape)
    dx, dw, db = F.depthwise_conv2d_backward(dout, cache)
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    wt = torch.tensor(w.transpose(2, 3, 0, 1).reshape(C * dm, 1, 3, 2), requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    ot = torch.nn.functional.conv2d(xt, wt, bt, stride=(2, 1), padding=(2, 1), dilation=(2, 3),
                                    groups=C)
    ot.backward(torch.tensor(dout.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(out, ot.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-10)
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-10)
    np.testing.assert_allclose(dw, wt.grad.numpy().reshape(C, dm, 3, 2).transpose(2, 3, 0, 1),
                               rtol=1e-10)
    np.testing.assert_allclose(db, bt.grad.numpy(), rtol=1e-10)


# -- the layers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel, strides, dilation, padding, in_shape, out_hw", [
    (3, 1, 2, "valid", (10, 10, 2), (6, 6)),          # extent 5: 10 - 5 + 1
    (3, 1, 2, "same", (10, 10, 2), (10, 10)),
    ((3, 2), 1, (2, 3), "valid", (9, 8, 2), (5, 5)),  # extents 5 x 4
    ((3, 2), 1, (2, 3), "same", (9, 8, 2), (9, 8)),   # extent 4: padding 1 + 2
    (3, 2, 2, "valid", (11, 10, 2), (4, 3)),          # floor((11 - 5) / 2) + 1, (10 - 5) // 2 + 1
    (3, (2, 3), 2, "same", (11, 10, 2), (6, 4)),      # ceil(11 / 2), ceil(10 / 3)
    (5, 1, 4, "valid", (17, 20, 2), (1, 4)),          # extent 17
])
def test_layers_output_size_follows_keras(kernel, strides, dilation, padding, in_shape, out_hw):
    layers = [L.DepthwiseConv2D(kernel, strides, padding, depth_multiplier=2,
                                dilation_rate=dilation, seed=0),
              L.SeparableConv2D(3, kernel, strides, padding, dilation_rate=dilation, seed=0)]
    x = np.random.default_rng(0).standard_normal((2, *in_shape)).astype(np.float32)
    for layer, channels in zip(layers, (2 * in_shape[2], 3)):
        assert layer.compute_output_shape(in_shape) == (*out_hw, channels)
        assert layer.forward(x).shape == (2, *out_hw, channels)


def test_layers_too_small_input_names_the_dilated_extent():
    for layer in (L.DepthwiseConv2D(3, dilation_rate=2), L.SeparableConv2D(2, 3, dilation_rate=2)):
        with pytest.raises(cytorch.ShapeError, match=r"needs at least 5x5 input"):
            layer.compute_output_shape((4, 4, 1))


@pytest.mark.parametrize("make", [lambda **kw: L.DepthwiseConv2D(3, **kw),
                                  lambda **kw: L.SeparableConv2D(2, 3, **kw)])
@pytest.mark.parametrize("bad, error, match", [
    (dict(dilation_rate=0), ValueError, r"dilation_rate must be positive, got 0"),
    (dict(dilation_rate=(1, 2, 3)), ValueError, r"dilation_rate must be an int or a pair of ints"),
    (dict(dilation_rate="2"), ValueError, r"dilation_rate must be an int or a pair of ints"),
    (dict(dilation_rate=2.5), TypeError, r"dilation_rate must be an int or a pair of ints"),
])
def test_layers_reject_a_bad_dilation(make, bad, error, match):
    with pytest.raises(error, match=match):
        make(**bad)


def test_keras_argument_order():
    # Keras 3: DepthwiseConv2D(kernel_size, strides, padding, depth_multiplier, data_format,
    # dilation_rate, ...) and SeparableConv2D(filters, kernel_size, strides, padding,
    # data_format, dilation_rate, depth_multiplier, ...); cytorch has no data_format (NHWC only)
    layer = L.DepthwiseConv2D(3, 1, "same", 2, 3)
    assert (layer.depth_multiplier, layer.dilation_rate) == (2, (3, 3))
    layer = L.SeparableConv2D(4, 3, 1, "same", 2, 3)
    assert (layer.dilation_rate, layer.depth_multiplier) == ((2, 2), 3)


def test_layers_summary_config_and_save_load(tmp_path):
    model = Sequential([
        L.Input((16, 16, 3)),
        L.DepthwiseConv2D(3, dilation_rate=2, depth_multiplier=2, seed=0),
        L.SeparableConv2D(4, (3, 2), dilation_rate=(4, 1), padding="same", seed=1),
        L.DepthwiseConv2D(3, strides=2, dilation_rate=(1, 2), padding="same", seed=2)])
    text = model.summary(print_fn=None)
    rows = [line for line in text.splitlines() if line.startswith(" ") and "(None" in line]
    # receptive field: 1 + 2 * 2 = 5, then 5 + 2 * 4 = 13 rows and 5 + 1 * 1 = 6 columns, then
    # 13 + 2 * 1 = 15 rows and 6 + 2 * 2 = 10 columns
    assert rows[0].rstrip().endswith("5x5") and rows[1].rstrip().endswith("13x6")
    assert rows[2].rstrip().endswith("15x10")
    for shape in ("(None, 12, 12, 6)", "(None, 12, 12, 4)", "(None, 6, 6, 4)"):
        assert shape in text
    for layer, dilation in zip(model.layers, ((2, 2), (4, 1), (1, 2))):
        config = layer.get_config()
        assert config["dilation_rate"] == list(dilation)
        clone = type(layer).from_config(config)
        assert clone.dilation_rate == dilation and clone.get_config() == config
    x = np.random.default_rng(0).standard_normal((3, 16, 16, 3)).astype(np.float32)
    path = tmp_path / "dilated_depthwise.npz"
    model.save(path)
    loaded = cytorch.load_model(path)
    assert [layer.dilation_rate for layer in loaded.layers] == [(2, 2), (4, 1), (1, 2)]
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


@pytest.mark.parametrize("backend", ["compiled", "reference"])
def test_layers_pass_the_plugin_conformance_checks(backend):
    from cytorch.testing import check_layer
    with cytorch.backend(backend):
        check_layer(L.DepthwiseConv2D((2, 3), strides=(1, 2), dilation_rate=(2, 1),
                                      depth_multiplier=2, padding="same", seed=0), (7, 6, 2))
        check_layer(L.SeparableConv2D(3, 3, dilation_rate=(1, 2), activation="tanh", seed=0),
                    (6, 7, 2))


# -- Keras 3 on identical weights (skips without keras and torch) -------------------------------
KERAS_CASES = [
    ("depthwise", dict(kernel_size=3, dilation_rate=2, depth_multiplier=2, padding="same",
                       activation="relu"), (9, 8, 3)),
    ("depthwise", dict(kernel_size=(2, 3), dilation_rate=(3, 1)), (8, 7, 2)),
    ("depthwise", dict(kernel_size=(3, 2), dilation_rate=(2, 3), padding="same"), (9, 10, 16)),
    ("depthwise", dict(kernel_size=3, strides=2, dilation_rate=2, padding="same"), (9, 10, 2)),
    ("depthwise", dict(kernel_size=2, strides=(1, 3), dilation_rate=(2, 2)), (8, 10, 3)),
    ("separable", dict(filters=5, kernel_size=3, dilation_rate=2, depth_multiplier=2,
                       padding="same", activation="gelu"), (8, 8, 3)),
    ("separable", dict(filters=4, kernel_size=(3, 2), dilation_rate=(1, 3), use_bias=False),
     (7, 9, 2)),
    ("separable", dict(filters=3, kernel_size=3, strides=(2, 1), dilation_rate=2,
                       padding="same"), (9, 9, 2)),
]


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
@pytest.mark.parametrize("kind, kwargs, shape", KERAS_CASES)
def test_dilated_layers_match_keras_on_identical_weights(kind, kwargs, shape):
    from conftest import keras_on_torch
    keras, torch = keras_on_torch()
    make, kmake = {"depthwise": (L.DepthwiseConv2D, keras.layers.DepthwiseConv2D),
                   "separable": (L.SeparableConv2D, keras.layers.SeparableConv2D)}[kind]
    layer, klayer = make(**kwargs, seed=0), kmake(**kwargs)
    layer.build(shape)
    klayer.build((None,) + shape)
    assert klayer.compute_output_shape((None,) + shape)[1:] == layer.output_shape
    rng = np.random.default_rng(7)
    for k in layer.params:                       # nudged off their initial values
        layer.params[k] += 0.1 * rng.standard_normal(layer.params[k].shape).astype(np.float32)
    names = [k for k, _ in layer.weight_items()]
    klayer.set_weights([v for _, v in layer.weight_items()])
    assert [v.name for v in klayer.weights] == names
    x = rng.normal(size=(3,) + shape).astype(np.float32)
    y = layer.forward(x, training=True)
    dout = rng.normal(size=y.shape).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    yt = klayer(xt, training=True)
    (yt * torch.tensor(dout)).sum().backward()
    assert relative_error(y, yt.detach().numpy()) < 1e-5
    assert relative_error(layer.backward(dout), xt.grad.numpy()) < 1e-5
    for name, variable in zip(names, klayer.weights):
        assert relative_error(layer.grads[name], variable.value.grad.numpy()) < 1e-5, name
