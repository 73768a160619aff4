"""ONNX export (``cytorch.export``): every exported model runs in onnxruntime and predicts what
cytorch predicts, within 1e-5 in float32.

Needs ``onnx`` and ``onnxruntime`` (both in the ``test`` extra, so CI runs this file); without
them it is skipped as a whole, except the test that ``cytorch.export`` imports without onnx.
"""
import importlib.metadata
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import cytorch
from cytorch import layers as L, models
from cytorch.errors import ExportError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from cytorch import export  # noqa: E402  (after the skips: the module imports without onnx)

TOLERANCE = 1e-5


def session(proto):
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def onnx_predict(model, x, **kwargs):
    """What onnxruntime computes with ``model`` exported in memory."""
    proto = export.to_onnx_model(model, **kwargs)
    return session(proto).run(None, {export.INPUT_NAME: x})[0]


def assert_same_predictions(model, x, relative=False, **kwargs):
    """Max |onnxruntime - cytorch| <= 1e-5; ``relative``: of values above 1, relative to
    them (outputs in the hundreds round at ~1e-5 in float32)."""
    want = model.predict(x)
    got = onnx_predict(model, x, **kwargs)
    assert got.shape == want.shape and got.dtype == np.float32
    scale = np.maximum(np.abs(want), 1) if relative else 1
    error = float((np.abs(got - want) / scale).max())
    assert error <= TOLERANCE, f"max |onnxruntime - cytorch| = {error:.3g}"
    return error


def randomize_state(model, seed=0):
    """Give batch normalization non-trivial weights and moving statistics, as training
    would (fresh ones are the identity map)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            for key, array in layer.weight_items():
                if key == "moving_variance":
                    array[...] = rng.uniform(0.2, 3.0, array.shape)
                else:
                    array[...] = rng.normal(0.0, 1.0, array.shape)
    return model


def images(shape, n=6, seed=0):
    return np.random.default_rng(seed).normal(0, 1, (n, *shape)).astype(np.float32)


# -- presets and the README's skip model --------------------------------------------------------
PRESETS = [("lenet5", {}), ("keras_mnist", {}), ("alexnet_small", {}),
           ("alexnet_small", {"batch_norm": True}), ("vgg_small", {}),
           ("vgg_small", {"batch_norm": True})]


@pytest.mark.parametrize("name, kwargs", PRESETS,
                         ids=[n + ("_bn" if k else "") for n, k in PRESETS])
def test_every_preset_runs_in_onnxruntime_with_cytorchs_predictions(name, kwargs):
    assert {n for n, _ in PRESETS} == set(models.available())   # a new preset joins the list
    model = randomize_state(getattr(models, name)(seed=0, **kwargs))
    assert_same_predictions(model, images(model.input_shape))


def readme_skip_model():
    """The functional skip connection of the README's "functional API" section."""
    inputs = L.Input((16, 16, 1))
    x = L.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    fx = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    fx = L.Conv2D(8, 3, padding="same")(fx)
    x = L.Activation("relu")(L.Add()([x, fx]))
    x = L.MaxPooling2D(2)(L.MaxPooling2D(2)(x))
    outputs = L.Dense(10, activation="softmax")(L.Flatten()(x))
    return cytorch.Model(inputs, outputs, seed=0)


def test_the_readme_skip_model_runs_with_cytorchs_predictions():
    model = readme_skip_model()
    assert_same_predictions(model, images((16, 16, 1), n=9))


def test_the_graph_transposes_once_in_and_once_before_flatten():
    proto = export.to_onnx_model(models.keras_mnist(seed=0))
    ops = [n.op_type for n in proto.graph.node]
    assert ops == ["Transpose", "Conv", "Relu", "MaxPool", "Conv", "Relu", "MaxPool",
                   "Transpose", "Flatten", "Gemm", "Relu", "Gemm", "Softmax"]
    proto = export.to_onnx_model(readme_skip_model())     # the Add stays channels-first
    assert [n.op_type for n in proto.graph.node].count("Transpose") == 2


def test_the_batch_size_is_free_and_the_names_are_documented():
    model = models.lenet5(seed=0)
    proto = export.to_onnx_model(model)
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert inp.name == "input" and out.name == "output"
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["batch", 32, 32, 1]
    run = session(proto)
    for n in (1, 7):
        x = images((32, 32, 1), n=n, seed=n)
        np.testing.assert_allclose(run.run(None, {"input": x})[0], model.predict(x),
                                   atol=TOLERANCE, rtol=0)


# -- every built-in layer ------------------------------------------------------------------------
def every_layer_model():
    """One functional model using every built-in layer (and the layout corners: merges of
    channels-first and channels-last values, softmax over a conv map's channels, BN on
    vectors, concatenation along a spatial axis)."""
    i = L.Input((12, 10, 3))
    a = L.Conv2D(6, (3, 2), strides=(2, 1), padding="same", activation="gelu")(i)   # 6x10x6
    a = L.BatchNormalization()(a)
    a = L.LeakyReLU(0.1)(a)
    a = L.SpatialDropout2D(0.3)(a)
    b = L.Conv2D(6, 3, dilation_rate=(2, 1), padding=((1, 3), (1, 0)), use_bias=False)(i)
    b = L.ELU(0.5)(b)                                                               # 12x9x6
    b = L.MaxPooling2D(3, strides=(2, 1), padding="same")(b)                        # 6x9x6
    b = L.ZeroPadding2D(((0, 0), (0, 1)))(b)                                        # 6x10x6
    c = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="silu")(i)
    c = L.SeparableConv2D(6, (2, 3), strides=2, padding="same", activation="softplus")(c)
    c = L.UpSampling2D((1, 1))(c)                                                   # 6x5x6
    c = L.UpSampling2D((1, 2), interpolation="bilinear")(c)                         # 6x10x6
    d = L.AveragePooling2D(2, padding="same")(L.Conv2D(6, 3, padding="full")(i))    # 7x6x6
    d = L.MinPooling2D((2, 1), strides=(1, 2), padding=((0, 0), (0, 0)))(d)        # 6x3x6
    d = L.UpSampling2D((1, 3))(d)                                                   # 6x9x6
    d = L.ZeroPadding2D(((0, 0), (1, 0)))(d)                                        # 6x10x6
    d = L.Activation("softmax")(d)            # over a channels-first value's channels
    e = L.Reshape((6, 10, 6))(L.Dense(360, activation="elu")(L.Flatten()(i)))    # channels-last
    merged = [L.Add()([a, b, c]), L.Multiply()([a, d]), L.Subtract()([c, e]),
              L.Average()([b, d, e]), L.Maximum()([a, e])]
    x = L.Concatenate()(merged)                                                     # 6x10x30
    x = L.Concatenate(axis=1)([x, L.Conv2D(30, 1, activation="tanh")(x)])          # 12x10x30
    x = L.Conv2D(8, 3, activation="sigmoid")(x)                                     # 10x8x8
    g = [L.GlobalMaxPooling2D()(x), L.GlobalAveragePooling2D()(x),
         L.GlobalMinPooling2D()(x)]
    keep = L.Flatten()(L.GlobalAveragePooling2D(keepdims=True)(x))
    v = L.Concatenate()(g + [keep])                                                 # 32
    v = L.Dropout(0.5)(L.BatchNormalization()(L.Dense(16, activation="leaky_relu")(v)))
    v = L.Dense(12, activation="relu")(v)
    v = L.Activation("linear")(L.Reshape((3, 4))(v))
    v = L.Activation("softmax")(v)                  # over a rank-3 value's last axis
    return randomize_state(cytorch.Model(i, L.Flatten()(v), seed=1))


def test_a_model_with_every_built_in_layer_runs_with_cytorchs_predictions():
    model = every_layer_model()
    builtins = {cls for cls, dist in L.available().values() if dist == "cytorch-edu"}
    assert builtins - {type(layer) for layer in model.layers} == {L.Input}
    assert_same_predictions(model, images((12, 10, 3), n=5))


def test_every_built_in_layer_has_a_converter():
    names = {name for name, (_, dist) in L.available().items() if dist == "cytorch-edu"}
    found = export.available()
    assert names <= set(found)
    assert all(found[n][1] == "cytorch-edu" for n in names)


@pytest.mark.parametrize("activation", cytorch.activations.names())
@pytest.mark.parametrize("where", ["dense", "conv2d", "layer"])
def test_every_activation_over_a_wide_range(activation, where):
    # inputs up to +-60: softplus and sigmoid must neither overflow nor lose the tails
    x = (np.linspace(-60, 60, 4 * 5 * 5 * 3).reshape(4, 5, 5, 3)).astype(np.float32)
    if where == "dense":
        body = [L.Flatten(), L.Dense(7, activation=activation, kernel_initializer="ones")]
    elif where == "conv2d":
        body = [L.Conv2D(4, 1, activation=activation, kernel_initializer="ones")]
    else:
        body = [L.Activation(activation)]
    model = cytorch.Sequential([L.Input((5, 5, 3)), *body])
    assert_same_predictions(model, x / (20 if where == "dense" else 1), relative=True)


WINDOWS = [
    {"kernel_size": (3, 2), "strides": (2, 3), "padding": "same"},
    {"kernel_size": 4, "strides": 3, "padding": "valid"},
    {"kernel_size": (2, 3), "padding": "full"},
    {"kernel_size": 3, "padding": ((0, 2), (3, 1)), "strides": (1, 2)},
    {"kernel_size": 1, "use_bias": False},
]
DILATED = [
    {"kernel_size": 3, "dilation_rate": (2, 3), "padding": "same"},
    {"kernel_size": (2, 3), "dilation_rate": 2, "padding": ((1, 0), (2, 2))},
    {"kernel_size": (3, 2), "dilation_rate": (1, 4), "padding": "valid", "use_bias": False}]
CONVOLUTIONS = [(layer, kwargs) for layer in ("conv2d", "depthwise", "separable")
                for kwargs in WINDOWS + DILATED] + [   # Conv2D refuses a stride with a dilation
    (layer, {"kernel_size": 3, "strides": (2, 1), "dilation_rate": (2, 3), "padding": "same"})
    for layer in ("depthwise", "separable")]


@pytest.mark.parametrize("layer, kwargs", CONVOLUTIONS)
def test_convolutions_windows_strides_and_padding(layer, kwargs):
    if layer != "conv2d":
        made = (L.DepthwiseConv2D(depth_multiplier=3, **kwargs) if layer == "depthwise"
                else L.SeparableConv2D(5, depth_multiplier=2, **kwargs))
    else:
        made = L.Conv2D(5, **kwargs)
    model = cytorch.Sequential([L.Input((11, 9, 2)), made], seed=3)
    for p in model.layers[0].params.values():        # non-zero biases too
        p[...] = np.random.default_rng(4).normal(0, 1, p.shape)
    assert_same_predictions(model, images((11, 9, 2)))


@pytest.mark.parametrize("pool", [L.MaxPooling2D, L.AveragePooling2D, L.MinPooling2D])
@pytest.mark.parametrize("kwargs", [{"pool_size": 2}, {"pool_size": 3, "strides": 2},
                                    {"pool_size": (3, 2), "padding": "same"},
                                    {"pool_size": 3, "strides": (1, 2), "padding": "same"},
                                    {"pool_size": 3, "padding": ((1, 2), (0, 1))}])
def test_pooling_windows_strides_and_padding(pool, kwargs):
    model = cytorch.Sequential([L.Input((9, 8, 3)), pool(**kwargs)])
    assert_same_predictions(model, images((9, 8, 3)))


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
@pytest.mark.parametrize("size", [(2, 2), (3, 1), (1, 4)])
def test_upsampling_uses_keras_coordinates(interpolation, size):
    # bilinear: ONNX Resize with coordinate_transformation_mode="half_pixel" is Keras 3's
    # (and cytorch's) half-pixel convention; "asymmetric" or "align_corners" would not be
    model = cytorch.Sequential([L.Input((4, 5, 2)), L.UpSampling2D(size, interpolation)])
    assert_same_predictions(model, images((4, 5, 2)))


@pytest.mark.parametrize("axis", [1, 2, 3, -1, -3])
def test_concatenate_along_every_axis_in_both_layouts(axis):
    i = L.Input((4, 4, 2))
    convs = [L.Conv2D(2, 1)(i), L.Conv2D(2, 1)(i)]         # channels-first twins
    plain = [L.Reshape((4, 4, 2))(L.Flatten()(i)), i]      # channels-last only
    out = L.Concatenate(axis=axis)([L.Concatenate(axis=axis)(convs),
                                    L.Concatenate(axis=axis)(plain)])
    assert_same_predictions(cytorch.Model(i, out, seed=0), images((4, 4, 2)))


def test_a_model_with_two_inputs():
    a, b = L.Input((6, 6, 1), name="left"), L.Input((6, 6, 1), name="right")
    y = L.Dense(3)(L.Flatten()(L.Concatenate()([L.Conv2D(2, 3)(a), L.Conv2D(2, 3)(b)])))
    model = cytorch.Model([a, b], y, seed=0)
    xa, xb = images((6, 6, 1), seed=1), images((6, 6, 1), seed=2)
    got = session(export.to_onnx_model(model)).run(None, {"left": xa, "right": xb})[0]
    np.testing.assert_allclose(got, model.predict([xa, xb]), atol=TOLERANCE, rtol=0)


def test_a_float64_model_is_written_in_float32():
    model = cytorch.Sequential([L.Input((5, 5, 1)), L.Conv2D(2, 3, dtype="float64"),
                                L.Flatten(dtype="float64"), L.Dense(3, dtype="float64")],
                               seed=0)
    x = images((5, 5, 1))
    got = onnx_predict(model, x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, model.predict(x), atol=TOLERANCE, rtol=0)


def test_a_model_that_only_drops_out_is_the_identity():
    model = cytorch.Sequential([L.Input((3, 3, 2)), L.Dropout(0.5)])
    proto = export.to_onnx_model(model)
    assert [n.op_type for n in proto.graph.node] == ["Identity"]
    assert_same_predictions(model, images((3, 3, 2)))


# -- the estimator -------------------------------------------------------------------------------
def test_a_fitted_cnnclassifier_exports_its_model_with_predict_probas_columns(tmp_path):
    X, y = cytorch.datasets.load_digits()
    clf = cytorch.CNNClassifier(max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # ConvergenceWarning after 2 iterations
        clf.fit(X[:200], y[:200])
    path = export.to_onnx(clf, tmp_path / "clf.onnx")
    got = ort.InferenceSession(str(path)).run(None, {"input": X[200:260]})[0]
    np.testing.assert_allclose(got, clf.predict_proba(X[200:260]), atol=TOLERANCE, rtol=0)
    assert (clf.classes_[got.argmax(axis=1)] == clf.predict(X[200:260])).all()


def test_a_cnnclassifier_fitted_on_flat_rows_takes_its_input_shape():
    X, y = cytorch.datasets.load_digits()
    X_flat = X.reshape(len(X), -1)                       # (n, 64): CNNClassifier makes 8x8x1
    clf = cytorch.CNNClassifier(max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X_flat[:100], y[:100])
    got = session(export.to_onnx_model(clf)).run(
        None, {"input": X_flat[100:130].reshape(-1, *clf.input_shape_)})[0]
    np.testing.assert_allclose(got, clf.predict_proba(X_flat[100:130]), atol=TOLERANCE, rtol=0)


def test_an_unfitted_cnnclassifier_says_so():
    with pytest.raises(ExportError, match=r"CNNClassifier is not fitted yet: call fit"):
        export.to_onnx_model(cytorch.CNNClassifier())


# -- files and bad input -------------------------------------------------------------------------
def test_to_onnx_writes_a_file_that_the_checker_and_onnxruntime_accept(tmp_path):
    model = models.keras_mnist(seed=0)
    path = tmp_path / "keras_mnist.onnx"
    assert export.to_onnx(model, path) == str(path)
    onnx.checker.check_model(str(path), full_check=True)
    loaded = onnx.load(str(path))
    assert loaded.opset_import[0].version == export.DEFAULT_OPSET == 17
    assert loaded.producer_name == "cytorch"
    x = images((28, 28, 1))
    got = ort.InferenceSession(str(path)).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, model.predict(x), atol=TOLERANCE, rtol=0)
    assert sorted(os.listdir(tmp_path)) == ["keras_mnist.onnx"]      # no temporary left
    mode = os.stat(path).st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_the_model_and_the_input_are_not_modified(tmp_path):
    model = randomize_state(models.vgg_small(seed=0, batch_norm=True))
    x = images((32, 32, 1))
    before_x, before_w = x.copy(), model.get_weights()
    before_config, before_p = model.get_config(), model.predict(x)
    export.to_onnx(model, tmp_path / "m.onnx")
    assert_same_predictions(model, x)
    np.testing.assert_array_equal(x, before_x)
    for a, b in zip(model.get_weights(), before_w):
        np.testing.assert_array_equal(a, b)
    assert model.get_config() == before_config
    np.testing.assert_array_equal(model.predict(x), before_p)


@pytest.mark.parametrize("opset", [13, 17, "newest"])
def test_supported_opsets_run(opset):
    opset = onnx.defs.onnx_opset_version() if opset == "newest" else opset
    model = every_layer_model()
    proto = export.to_onnx_model(model, opset=opset)
    assert proto.opset_import[0].version == opset
    if opset <= 21:   # onnxruntime releases trail onnx's newest operator set
        x = images((12, 10, 3))
        np.testing.assert_allclose(session(proto).run(None, {"input": x})[0], model.predict(x),
                                   atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("opset", [12, 0, -1, 10_000, 17.0, "17", True, None])
def test_a_bad_opset_is_refused_with_the_range(opset, tmp_path):
    with pytest.raises(ValueError, match=r"opset must be an int from 13 to \d+ .* default 17; "
                                         r"got " + repr(opset).replace(".", r"\.")):
        export.to_onnx(models.lenet5(), tmp_path / "m.onnx", opset=opset)
    assert os.listdir(tmp_path) == []


def test_an_unbuilt_model_says_so_and_writes_nothing(tmp_path):
    model = cytorch.Sequential([L.Conv2D(4, 3), L.Flatten(), L.Dense(2)])
    with pytest.raises(ExportError, match=r"model 'sequential\w*' is not built yet, so it has "
                                          r"no weights to export: give it an input shape"):
        export.to_onnx(model, tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []


def test_not_a_model_is_a_type_error():
    with pytest.raises(TypeError, match=r"model must be a cytorch Sequential or Model .* got "
                                        r"Conv2D"):
        export.to_onnx_model(L.Conv2D(2, 3))


def test_paths_that_cannot_be_written_say_why_and_leave_nothing(tmp_path):
    model = models.lenet5(seed=0)
    with pytest.raises(FileNotFoundError, match=r"the directory .*missing.* does not exist"):
        export.to_onnx(model, tmp_path / "missing" / "m.onnx")
    with pytest.raises(IsADirectoryError, match=r"it is a directory; give a file name"):
        export.to_onnx(model, tmp_path)
    with pytest.raises(TypeError, match=r"path must be a file name"):
        export.to_onnx(model, 3)
    assert os.listdir(tmp_path) == []


def test_a_read_only_directory_says_so(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    if os.access(folder, os.W_OK):     # root writes anywhere: pretend, as for a user
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if os.fspath(p) == str(
            folder) and mode & os.W_OK else real(p, mode, **kw))
    try:
        with pytest.raises(PermissionError, match=r"cannot write .*m.onnx.*: the directory "
                                                  r".*ro.* is not writable"):
            export.to_onnx(models.lenet5(seed=0), folder / "m.onnx")
        assert os.listdir(folder) == []
    finally:
        folder.chmod(0o700)


def test_a_file_in_place_of_the_directory_says_so(tmp_path):
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(NotADirectoryError, match=r"notes.txt.* is a file, not a directory"):
        export.to_onnx(models.lenet5(seed=0), tmp_path / "notes.txt" / "m.onnx")
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_a_failing_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"previous export")

    def broken_replace(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        export.to_onnx(models.lenet5(seed=0), path)
    assert os.listdir(tmp_path) == ["m.onnx"] and path.read_bytes() == b"previous export"


# -- converters: missing, given, broken ----------------------------------------------------------
class Scale(cytorch.Layer):
    """A layer defined in a script: registered nowhere."""

    def build(self, input_shape):
        self.params["gamma"] = np.linspace(0.5, 2, input_shape[-1]).astype(self.dtype)
        super().build(input_shape)

    def forward(self, x, training=False):
        return x * self.params["gamma"]


def scale_to_onnx(layer, inputs, graph):
    gamma = graph.constant(layer.params["gamma"], "gamma")
    return graph.node("Mul", [inputs[0], gamma])


def scale_model():
    return cytorch.Sequential([L.Input((4, 4, 3)), L.Conv2D(3, 1), Scale(name="scale"),
                               L.Flatten()], seed=0)


def test_an_unregistered_layer_names_itself_and_how_to_add_a_converter(tmp_path):
    with pytest.raises(ExportError, match=r"(?s)no ONNX converter for Scale 'scale': "
                                          r"test_onnx.Scale is not registered in the "
                                          r"'cytorch.layers' entry-point group.*converter\(layer"
                                          r", inputs, graph\).*pass it for this export: "
                                          r"to_onnx\(model, path, converters=\{Scale: "
                                          r"converter\}\); or publish the layer"):
        export.to_onnx(scale_model(), tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("key", [Scale, "Scale"])
def test_a_converter_given_for_one_export(key):
    model = scale_model()
    x = images((4, 4, 3))
    got = onnx_predict(model, x, converters={key: scale_to_onnx})
    np.testing.assert_allclose(got, model.predict(x), atol=TOLERANCE, rtol=0)


def test_a_converter_returning_no_value_name_is_named():
    with pytest.raises(ExportError, match=r"of Scale 'scale' returned None; it must return the "
                                          r"name of the value"):
        export.to_onnx_model(scale_model(), converters={Scale: lambda layer, i, g: None})


def test_a_converter_that_raises_is_named_with_the_layer():
    def broken(layer, inputs, graph):
        raise KeyError("gamma")
    with pytest.raises(ExportError, match=r"converter .*broken failed on Scale 'scale': "
                                          r"KeyError: 'gamma'"):
        export.to_onnx_model(scale_model(), converters={Scale: broken})


class FakeDistribution(importlib.metadata.Distribution):
    """A distribution in memory with entry points in the converter group."""

    def __init__(self, name, entry_points):
        lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
        self._files = {"METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
                       "entry_points.txt": f"[{export.GROUP}]\n{lines}\n"}

    def read_text(self, filename):
        return self._files.get(filename)

    def locate_file(self, path):
        raise FileNotFoundError(path)


@pytest.fixture
def converter_group(monkeypatch):
    """Replace the installed converters by in-memory distributions: ``use(*dists)``."""
    def use(*distributions):
        eps = [ep for d in distributions for ep in d.entry_points]
        monkeypatch.setattr(export, "_entry_points", lambda: eps)
        export.refresh()
    yield use
    monkeypatch.undo()
    export.refresh()


BUILT_INS = {name: ep.value for name, ep in
             ((ep.name, ep) for ep in importlib.metadata.entry_points(group="cytorch.onnx"))
             if ep.value.startswith("cytorch.")}


def test_a_registered_layer_without_converter_names_its_distribution(converter_group):
    converter_group(FakeDistribution("cytorch-edu", {k: v for k, v in BUILT_INS.items()
                                                     if k != "conv2d"}))
    with pytest.raises(ExportError, match=r"(?s)no ONNX converter for Conv2D 'conv2d\w*', the "
                                          r"layer 'conv2d' of the distribution cytorch-edu: "
                                          r"nothing in the 'cytorch.onnx' entry-point group is "
                                          r"registered as 'conv2d'.*conv2d = \"your_module:"):
        export.to_onnx_model(models.lenet5())


def test_a_broken_converter_plugin_warns_and_fails_only_when_used(converter_group):
    converter_group(FakeDistribution("cytorch-edu", BUILT_INS),
                    FakeDistribution("broken-plugin", {"scale": "no_such_module_xyz:convert",
                                                       "odd": "cytorch.export:GROUP"}))
    with pytest.warns(cytorch.registry.PluginWarning) as record:
        found = export.available()
    messages = " ".join(str(w.message) for w in record)
    assert "broken-plugin[scale]" in messages and "No module named 'no_such_module_xyz'" \
        in messages
    assert "cytorch.export:GROUP is not callable (got str)" in messages
    assert "scale" not in found and "conv2d" in found
    assert_same_predictions(models.lenet5(seed=0), images((32, 32, 1)))   # others still work


def test_a_converter_that_failed_to_load_is_named_when_its_layer_is_exported(converter_group):
    broken = dict(BUILT_INS, conv2d="no_such_module_xyz:convert")
    converter_group(FakeDistribution("cytorch-edu", broken))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cytorch.registry.PluginWarning)
        with pytest.raises(ExportError, match=r"the ONNX converter for Conv2D 'conv2d\w*' is "
                                              r"provided by cytorch-edu\[conv2d\], which failed "
                                              r"to load: ModuleNotFoundError"):
            export.to_onnx_model(models.lenet5())


def test_a_converter_claimed_twice_names_both(converter_group):
    converter_group(FakeDistribution("cytorch-edu", BUILT_INS),
                    FakeDistribution("dense-plus", {"dense": BUILT_INS["dense"]}))
    with pytest.raises(ExportError, match=r"the ONNX converter for Dense 'dense\w*' is claimed "
                                          r"by two distributions: cytorch-edu\[dense\] and "
                                          r"dense-plus\[dense\]"):
        export.to_onnx_model(models.lenet5())


# -- without onnx ------------------------------------------------------------------------------
def test_cytorch_export_imports_without_onnx_and_says_what_to_install():
    code = textwrap.dedent("""
        import sys
        sys.modules["onnx"] = None          # as if onnx were not installed
        import cytorch, cytorch.export
        from cytorch import models
        try:
            cytorch.export.to_onnx(models.lenet5(), "never.onnx")
        except ImportError as exc:
            print(exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(__file__)).stdout
    assert 'exporting to ONNX needs the onnx package: pip install "cytorch-edu[onnx]"' in out
    assert not os.path.exists(os.path.join(os.path.dirname(__file__), "never.onnx"))


# -- the command line: cytorch export MODEL.npz OUTPUT.onnx [--opset N] ---------------------------
def cli(capsys, *argv):
    from cytorch.cli import main
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def one_line_error(status, err, pattern):
    import re
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith("cytorch: error: "), err
    assert re.search(pattern, lines[0]), lines[0]


@pytest.fixture
def saved(tmp_path):
    model = randomize_state(models.alexnet_small(seed=0, batch_norm=True))
    return model, model.save(tmp_path / "alexnet.npz")


def test_cli_export_writes_what_onnxruntime_runs_like_the_saved_model(capsys, saved, tmp_path):
    model, npz = saved
    status, out, err = cli(capsys, "export", npz, tmp_path / "alexnet.onnx")
    assert status == 0 and err == ""
    assert out.startswith(f"Wrote {tmp_path / 'alexnet.onnx'}: ONNX opset 17, input 'input' "
                          f"(batch, 32, 32, 1) float32 channels-last, output 'output' (batch, "
                          f"10), {len(model.layers)} layers, 177,346 parameters.\n")
    assert "Netron" in out and "onnxruntime" in out
    x = images((32, 32, 1))
    got = ort.InferenceSession(str(tmp_path / "alexnet.onnx")).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, cytorch.load_model(npz).predict(x), atol=TOLERANCE, rtol=0)


def test_cli_export_with_an_opset(capsys, saved, tmp_path):
    _, npz = saved
    status, out, _ = cli(capsys, "export", npz, tmp_path / "m.onnx", "--opset", "13")
    assert status == 0 and "ONNX opset 13" in out
    assert onnx.load(str(tmp_path / "m.onnx")).opset_import[0].version == 13


@pytest.mark.parametrize("argv, pattern", [
    (["export"], "the following arguments are required: MODEL, OUTPUT"),
    (["export", "{npz}", "{dir}/m.onnx", "--opset", "12"], r"opset must be an int from 13 to "
                                                          r"\d+ .*got 12"),
    (["export", "{npz}", "{dir}/m.onnx", "--opset", "x"], r"argument --opset: expected a "
                                                         r"positive integer, got 'x'"),
    (["export", "{dir}/nope.npz", "{dir}/m.onnx"], r"no such model file: .*nope.npz"),
    (["export", "{npz}", "{npz}"], r"OUTPUT .*alexnet.npz is the model file itself"),
    (["export", "{npz}", "{dir}/missing/m.onnx"], r"cannot write .*the directory .*missing.* "
                                                 r"does not exist"),
    (["export", "{npz}", "{dir}"], r"it is a directory; give a file name"),
])
def test_cli_export_mistakes_are_one_line_and_write_nothing(capsys, saved, tmp_path, argv,
                                                            pattern):
    _, npz = saved
    argv = [a.format(npz=npz, dir=tmp_path) for a in argv]
    status, _, err = cli(capsys, *argv)
    one_line_error(status, err, pattern)
    assert sorted(os.listdir(tmp_path)) == ["alexnet.npz"]


def test_cli_export_without_onnx_says_what_to_install(capsys, saved, tmp_path, monkeypatch):
    _, npz = saved
    monkeypatch.setitem(sys.modules, "onnx", None)
    status, _, err = cli(capsys, "export", npz, tmp_path / "m.onnx")
    one_line_error(status, err, r'exporting to ONNX needs the onnx package: pip install '
                                r'"cytorch-edu\[onnx\]"')
    assert sorted(os.listdir(tmp_path)) == ["alexnet.npz"]


def test_cli_help_lists_export(capsys):
    status, out, _ = cli(capsys, "--help")
    assert status == 0 and "export" in out
    status, out, _ = cli(capsys, "export", "--help")
    assert status == 0 and "--opset" in out and "channels-last" in out
