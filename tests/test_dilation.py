"""Dilated convolution (``Conv2D(dilation_rate=...)``): the compiled im2col path against its twin
and the definition, finite differences, Keras's output-size rule, PyTorch where installed, the
layer's summary, config and save/load."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import cytorch
from cytorch import functional as F
from cytorch import layers as L
from cytorch import reference
from cytorch._gradcheck import numerical_gradient, relative_error
from cytorch._kernels import load
from cytorch.graph import Sequential
from test_conv import assert_twins_agree, random_conv_operands, run

PADDINGS = st.one_of(st.sampled_from(["valid", "same", "full"]), st.integers(0, 3),
                     st.tuples(st.tuples(st.integers(0, 3), st.integers(0, 3)),
                               st.tuples(st.integers(0, 3), st.integers(0, 3))))


@settings(max_examples=80, deadline=None)
@given(N=st.integers(1, 3), H=st.integers(1, 12), W=st.integers(1, 12), C=st.integers(1, 4),
       K=st.integers(1, 9), kh=st.integers(1, 4), kw=st.integers(1, 4),
       dh=st.integers(1, 4), dw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3),
       padding=PADDINGS, bias=st.booleans(), threads=st.integers(1, 2),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2 ** 16))
def test_dilated_conv_matches_the_twin(N, H, W, C, K, kh, kw, dh, dw, sh, sw, padding, bias,
                                       threads, dtype, seed):
    # non-square kernels, a different dilation per axis, strides too (the functional API
    # allows both; the Keras layer does not)
    drawn = random_conv_operands(N, H, W, C, K, kh, kw, (sh, sw), padding, dtype, seed,
                                 (dh, dw))
    if drawn is None:
        return
    x, w, rng = drawn
    b = rng.standard_normal(K).astype(dtype) if bias else None
    cytorch.set_num_threads(threads)
    try:
        assert_twins_agree(x, w, b, (sh, sw), padding, dtype, dilation=(dh, dw))
    finally:
        cytorch.set_num_threads(None)


@pytest.mark.parametrize("dilation", [(2, 3), (3, 1), 2])
@pytest.mark.parametrize("strides, padding", [(1, "valid"), (1, "same"), ((2, 1), "full"),
                                              (1, ((2, 0), (1, 3)))])
def test_twin_matches_the_definition(dilation, strides, padding):
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((2, 11, 9, 2)), rng.standard_normal((3, 2, 2, 3)), np.ones(3)
    out, _ = reference.conv2d_forward(x, w, b, strides, padding, dilation)
    np.testing.assert_allclose(out, reference.conv2d_naive(x, w, b, strides, padding, dilation),
                               rtol=1e-12, atol=1e-12)


def test_dilation_1_is_the_plain_convolution_and_2_spreads_the_taps():
    x = np.arange(49.0).reshape(1, 7, 7, 1)
    w = np.zeros((3, 3, 1, 1))
    w[0, 0] = w[2, 2] = 1               # top-left + bottom-right tap
    out, _ = F.conv2d_forward(x, w, dilation_rate=2)
    # a 5x5 extent: x[i, j] + x[i + 4, j + 4] = 2 * x[i, j] + 32
    np.testing.assert_array_equal(out[0, :, :, 0], 2 * x[0, :3, :3, 0] + 32)
    plain, _ = F.conv2d_forward(x, w, dilation_rate=1)
    np.testing.assert_array_equal(plain[0, :, :, 0], 2 * x[0, :5, :5, 0] + 16)


def test_dilated_conv_finite_differences():
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((2, 9, 8, 2)), rng.standard_normal((3, 2, 2, 3)), np.ones(3)
    kw = dict(strides=1, padding="same", dilation_rate=(2, 3))
    out, cache = F.conv2d_forward(x, w, b, **kw)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = F.conv2d_backward(dout, cache)
    assert relative_error(dx, numerical_gradient(
        lambda v: F.conv2d_forward(v, w, b, **kw)[0], x, dout)) < 1e-8
    assert relative_error(dw, numerical_gradient(
        lambda v: F.conv2d_forward(x, v, b, **kw)[0], w, dout)) < 1e-8
    assert relative_error(db, numerical_gradient(
        lambda v: F.conv2d_forward(x, w, v, **kw)[0], b, dout)) < 1e-8


def test_dilated_conv_runs_the_im2col_kernel_not_the_direct_path():
    # a thin shape that runs the direct path undilated
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 12, 12, 1)), rng.standard_normal((3, 3, 1, 2))
    rule = load("_direct").uses_direct_path
    assert rule(x.shape, w.shape, (2, 10, 10, 2), (1, 1), np.float64)
    assert not rule(x.shape, w.shape, (2, 8, 8, 2), (1, 1), np.float64, (2, 2))
    got = run(x, w, None, 1, "valid", dilation=2)
    want = run(x, w, None, 1, "valid", backend="reference", dilation=2)
    for g, r in zip(got, want):
        assert (g is None and r is None) or relative_error(g, r) < 1e-12


def test_torch_agrees_on_a_dilated_convolution():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((2, 13, 12, 3)), rng.standard_normal((3, 2, 3, 4)), \
        rng.standard_normal(4)
    out, cache = F.conv2d_forward(x, w, b, (2, 1), ((2, 2), (1, 1)), (2, 3))
    dout = rng.standard_normal(out.shape)
    dx, dw, db = F.conv2d_backward(dout, cache)
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    wt = torch.tensor(w.transpose(3, 2, 0, 1), requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    ot = torch.nn.functional.conv2d(xt, wt, bt, stride=(2, 1), padding=(2, 1), dilation=(2, 3))
    ot.backward(torch.tensor(dout.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(out, ot.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-10)
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-10)
    np.testing.assert_allclose(dw, wt.grad.numpy().transpose(2, 3, 1, 0), rtol=1e-10)
    np.testing.assert_allclose(db, bt.grad.numpy(), rtol=1e-10)


# -- the layer -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel, dilation, padding, in_shape, out_shape", [
    (3, 2, "valid", (10, 10, 1), (6, 6, 4)),        # extent 5: 10 - 5 + 1
    (3, 2, "same", (10, 10, 1), (10, 10, 4)),
    ((3, 2), (2, 3), "valid", (9, 8, 2), (5, 5, 4)),  # extents 5 x 4
    ((3, 2), (2, 3), "same", (9, 8, 2), (9, 8, 4)),
    (5, 4, "valid", (17, 20, 1), (1, 4, 4)),        # extent 17
])
def test_layer_output_size_follows_keras(kernel, dilation, padding, in_shape, out_shape):
    layer = L.Conv2D(4, kernel, padding=padding, dilation_rate=dilation, seed=0)
    assert layer.compute_output_shape(in_shape) == out_shape
    x = np.random.default_rng(0).standard_normal((2, *in_shape)).astype(np.float32)
    assert layer.forward(x).shape == (2, *out_shape)


def test_layer_too_small_input_names_the_dilated_extent():
    with pytest.raises(cytorch.ShapeError, match=r"needs at least 5x5 input"):
        L.Conv2D(1, 3, dilation_rate=2).compute_output_shape((4, 4, 1))


@pytest.mark.parametrize("bad, match", [
    (dict(strides=2, dilation_rate=2), r"strides > 1 cannot be combined with dilation_rate > 1"),
    (dict(dilation_rate=0), r"dilation_rate must be positive, got 0"),
    (dict(dilation_rate=(1, 2, 3)), r"dilation_rate must be an int or a pair of ints"),
])
def test_layer_rejects_bad_dilation(bad, match):
    with pytest.raises(ValueError, match=match):
        L.Conv2D(2, 3, **bad)


def test_layer_summary_config_and_save_load(tmp_path):
    model = Sequential([L.Input((16, 16, 1)), L.Conv2D(2, 3, dilation_rate=2, seed=0),
                        L.Conv2D(3, (3, 2), dilation_rate=(4, 1), padding="same", seed=1)])
    text = model.summary(print_fn=None)
    rows = [line for line in text.splitlines() if line.startswith(" ") and "(None" in line]
    # receptive field: 1 + 2 * 2 = 5, then 5 + 2 * 4 = 13 rows and 5 + 1 * 1 = 6 columns
    assert rows[0].rstrip().endswith("5x5") and rows[1].rstrip().endswith("13x6")
    assert "(None, 12, 12, 2)" in text and "(None, 12, 12, 3)" in text
    config = model.layers[1].get_config()
    assert config["dilation_rate"] == [4, 1]
    assert L.Conv2D(**{k: v for k, v in config.items() if k != "name"}).dilation_rate == (4, 1)
    x = np.random.default_rng(0).standard_normal((3, 16, 16, 1)).astype(np.float32)
    path = tmp_path / "dilated.npz"
    model.save(path)
    loaded = cytorch.load_model(path)
    assert loaded.layers[1].dilation_rate == (4, 1)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_layer_passes_the_plugin_conformance_checks():
    from cytorch.testing import check_layer
    check_layer(L.Conv2D(2, (2, 3), dilation_rate=(2, 1), padding="same", seed=0), (7, 6, 2))
