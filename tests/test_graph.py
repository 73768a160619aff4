"""The graph builder: Sequential, functional DAGs, shape inference, seeding and summary()."""
import re

import numpy as np
import pytest

import cytorch
from cytorch import Model, Sequential, ShapeError
from cytorch import layers as L
from cytorch._gradcheck import numerical_gradient, relative_error
from cytorch._summary import receptive_fields


def keras_mnist_layers():
    return [L.Input((28, 28, 1)), L.Conv2D(10, 5, activation="relu"), L.MaxPooling2D(2),
            L.Conv2D(20, 5, activation="relu"), L.MaxPooling2D(2), L.Flatten(),
            L.Dense(100, activation="relu"), L.Dense(10, activation="softmax")]


# -- summary numbers from the course -----------------------------------------------------------
def test_keras_mnist_parameter_counts_and_shapes():
    model = Sequential(keras_mnist_layers())
    assert [layer.count_params() for layer in model.layers] == \
        [260, 0, 5020, 0, 0, 32100, 1010]
    assert [layer.output_shape for layer in model.layers] == \
        [(24, 24, 10), (12, 12, 10), (8, 8, 20), (4, 4, 20), (320,), (100,), (10,)]
    assert model.count_params() == 38390
    text = model.summary(print_fn=None)
    for expected in ("Total params: 38,390", "Trainable params: 38,390",
                     "Non-trainable params: 0", "(None, 24, 24, 10)", "(None, 320)"):
        assert expected in text
    assert "WARNING" not in text


def test_summary_mult_adds_and_receptive_fields():
    model = Sequential(keras_mnist_layers())
    rows = {line.split()[0]: line for line in model.summary(print_fn=None).splitlines()
            if line.startswith(" ") and "(None" in line}
    conv1, pool1, conv2, pool2 = model.layers[:4]
    # 24*24 positions * 10 filters * 5*5*1 weights
    assert "144,000" in rows[conv1.name]
    # 8*8*20 * 5*5*10 = 320,000; dense 320*100 = 32,000
    assert "320,000" in rows[conv2.name] and "32,000" in rows[model.layers[5].name]
    # r: 5 -> 5+1 = 6 (jump 2) -> 6+4*2 = 14 -> 14+1*2 = 16
    assert rows[conv1.name].rstrip().endswith("5x5")
    assert rows[pool1.name].rstrip().endswith("6x6")
    assert rows[conv2.name].rstrip().endswith("14x14")
    assert rows[pool2.name].rstrip().endswith("16x16")
    assert rows[model.layers[4].name].rstrip().endswith("all")


def test_classic_lenet5_has_61706_parameters():
    model = cytorch.models.lenet5()
    assert model.count_params() == 61706
    assert model.output_shape == (10,)
    assert "Total params: 61,706" in model.summary(print_fn=None)


def test_conv_with_padding_2_keeps_32x32():
    model = Sequential([L.Input((32, 32, 3)), L.Conv2D(10, 5, padding=2)])
    assert model.count_params() == 760
    assert model.output_shape == (32, 32, 10)


def test_summary_warns_where_a_stride_leaves_pixels_unseen(capsys):
    # floor((8 - 3)/2) + 1 = 3 windows cover rows 0..6: row 7 is never seen
    model = Sequential([L.Input((8, 8, 1)), L.Conv2D(2, 3, strides=2, name="strided"),
                        L.Conv2D(2, 2, strides=(1, 3), name="wide")])
    assert model.summary() is None  # printed, as in Keras
    text = capsys.readouterr().out
    assert text.strip() == model.summary(print_fn=None)
    # each warning is one sentence, wrapped with an indent to fit 80 columns
    warnings = re.sub(r"\n {4}", " ", text).splitlines()
    warnings = [line for line in warnings if line.startswith("WARNING")]
    assert len(warnings) == 2
    assert "strided" in warnings[0] and "last 1 of 8 input rows" in warnings[0] \
        and "last 1 of 8 input columns" in warnings[0]
    # 'wide' sees 3x3 maps with a (2, 2) window: all rows, columns 0..1 of 3 (stride 3)
    assert "wide" in warnings[1] and "columns" in warnings[1] and "rows" not in warnings[1]


def test_summary_of_unbuilt_sequential_says_so():
    model = Sequential([L.Dense(3)])
    assert "not built" in model.summary(print_fn=None)


# -- shape inference and errors ----------------------------------------------------------------
def test_fourth_pool_raises_shape_error_naming_the_layer():
    pools = [L.MaxPooling2D(2, name=f"pool{k}") for k in range(4)]
    with pytest.raises(ShapeError, match=r"pool3.*floor\(\(1 - 2\)/2\) \+ 1 = 0"):
        Sequential([L.Input((8, 8, 1))] + pools)  # 8 -> 4 -> 2 -> 1 -> ?
    # the functional form fails as soon as the layer is called
    x = L.Input((4, 4, 1))
    x = L.MaxPooling2D(2)(L.MaxPooling2D(2)(x))
    with pytest.raises(ShapeError, match="MaxPooling2D 'late'"):
        L.MaxPooling2D(2, name="late")(x)


def test_duplicate_layer_names_are_rejected():
    with pytest.raises(ValueError, match="two layers are named 'twin'"):
        Sequential([L.Input((4,)), L.Dense(3, name="twin"), L.Dense(2, name="twin")])
    i = L.Input((4,))
    d = L.Dense(4)
    with pytest.raises(ValueError, match=f"'{d.name}' appears twice"):
        Model(i, d(d(i)))


def test_from_spec_resolves_registry_names_and_rejects_unknown():
    model = Sequential.from_spec([("conv2d", {"filters": 6, "kernel_size": 5}),
                                  ("avg_pool2d", {}), ("flatten", {}), ("dense", {"units": 10})],
                                 input_shape=(32, 32, 1))
    assert [type(layer).__name__ for layer in model.layers] == \
        ["Conv2D", "AveragePooling2D", "Flatten", "Dense"]
    assert model.output_shape == (10,)
    with pytest.raises(KeyError, match="conv2"):
        Sequential.from_spec([("convolution_2d", {"filters": 3, "kernel_size": 3})],
                             input_shape=(8, 8, 1))


def test_sequential_builds_lazily_from_the_first_batch():
    model = Sequential([L.Flatten(), L.Dense(3)], seed=0)
    assert not model.built and model.output_shape is None
    out = model.predict(np.ones((5, 2, 2, 1), dtype=np.float32))
    assert out.shape == (5, 3) and model.input_shape == (2, 2, 1)
    model.add(L.Dense(2))
    assert model.predict(np.ones((1, 2, 2, 1))).shape == (1, 2)


def test_merge_layers_reject_single_input_and_sequential():
    with pytest.raises(ValueError, match="list of at least 2"):
        L.Add()(L.Input((3,)))
    with pytest.raises(ValueError, match="cannot sit in a Sequential"):
        Sequential([L.Input((3,)), L.Add()])


# -- seeding -----------------------------------------------------------------------------------
def test_same_seed_gives_bit_identical_weights():
    a, b = (Sequential(keras_mnist_layers()[1:], input_shape=(28, 28, 1), seed=7)
            for _ in range(2))
    c = Sequential(keras_mnist_layers()[1:], input_shape=(28, 28, 1), seed=8)
    for la, lb, lc in zip(a.layers, b.layers, c.layers):
        for k in la.params:
            np.testing.assert_array_equal(la.params[k], lb.params[k])
            if k == "kernel":
                assert not np.array_equal(la.params[k], lc.params[k])


def test_layer_with_its_own_seed_keeps_it():
    def make(model_seed):
        return Sequential([L.Input((3,)), L.Dense(4, seed=123), L.Dense(2)], seed=model_seed)
    a, b = make(1), make(2)
    np.testing.assert_array_equal(a.layers[0].params["kernel"], b.layers[0].params["kernel"])
    assert not np.array_equal(a.layers[1].params["kernel"], b.layers[1].params["kernel"])


# -- functional DAGs ---------------------------------------------------------------------------
def skip_model(dtype="float64", seed=0):
    i = L.Input((5, 5, 2))
    a = L.Conv2D(3, 3, padding="same", dtype=dtype, name="conv")(i)
    b = L.Activation("tanh", dtype=dtype, name="tanh")(a)
    c = L.Add(dtype=dtype, name="add")([a, b])      # 'conv' feeds two layers: grads must sum
    d = L.Concatenate(dtype=dtype, name="cat")([c, L.Conv2D(2, 1, dtype=dtype, name="proj")(i)])
    out = L.Dense(3, dtype=dtype, name="head")(L.Flatten(dtype=dtype, name="flat")(d))
    return Model(i, out, seed=seed)


def test_dag_with_skip_connections_runs_and_orders_topologically():
    model = skip_model()
    names = [layer.name for layer in model.layers]
    assert names.index("conv") < names.index("tanh") < names.index("add") < names.index("cat")
    assert names.index("proj") < names.index("cat") < names.index("flat") < names.index("head")
    assert model.get_layer("cat").output_shape == (5, 5, 5)
    assert model.predict(np.zeros((4, 5, 5, 2))).shape == (4, 3)
    text = model.summary(print_fn=None)
    assert re.search(r"Connected\n.*\bto\n", text)  # the header, on two lines here
    assert re.search(r" cat \(Concatenate\) .* add\n +proj\n", text)  # inputs one per line
    assert max(len(line) for line in text.splitlines()) <= 80


def test_gradients_sum_at_a_node_with_two_consumers():
    """Finite differences through the whole DAG, float64, for every parameter."""
    model = skip_model()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 5, 2))
    dout = rng.standard_normal((2, 3))
    with cytorch.backend("reference"):  # about the graph, not the kernels: keep it quick
        check_model_gradients(model, x, dout)


def check_model_gradients(model, x, dout):
    model._forward([x], training=True)
    model._backward(dout)
    for layer in model.layers:
        for name, param in layer.params.items():
            analytic = layer.grads[name].copy()

            def f(value, param=param):
                saved = param.copy()
                param[...] = value
                out = model._forward([x], training=False)
                param[...] = saved
                return out

            numeric = numerical_gradient(f, param, dout)
            assert relative_error(analytic, numeric) < 1e-6, (layer.name, name)


def test_model_checks_its_inputs_are_connected():
    i, j = L.Input((3,)), L.Input((3,))
    y = L.Dense(2)(i)
    with pytest.raises(ValueError, match="not connected"):
        Model([i, j], y)
    with pytest.raises(ValueError, match="not in inputs"):
        Model(j, L.Add()([y, L.Dense(2)(j)]))


def test_receptive_field_through_a_merge_takes_the_larger_branch():
    i = L.Input((16, 16, 1))
    a = L.Conv2D(1, 5)(L.Conv2D(1, 3, padding="same")(i))      # 12x12 maps, 7x7 fields
    b = L.Conv2D(1, 1)(L.Conv2D(1, 5)(i))                        # 12x12 maps, 5x5 fields
    model = Model(i, L.Add()([a, b]))
    fields = receptive_fields(model)
    assert fields[model._outputs[0].id] == (7, 7, 1, 1)
