"""LocallyConnected2D exported to ONNX through the plugin's own converter (the ``cytorch.onnx``
entry point in pyproject.toml): onnxruntime predicts what cytorch predicts, within 1e-5.
Skipped without onnx and onnxruntime."""
import numpy as np
import pytest

import cytorch
from cytorch import layers as L

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from cytorch import export  # noqa: E402
from cytorch_locally_connected import LocallyConnected2D  # noqa: E402
from cytorch_locally_connected.export import identity_kernel, locally_connected2d_to_onnx  # noqa: E402,E501


def onnx_predict(model, x):
    proto = export.to_onnx_model(model)
    session = ort.InferenceSession(proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def test_the_converter_is_registered_by_the_plugins_distribution():
    converter, distribution = export.available()["locally_connected2d"]
    assert converter is locally_connected2d_to_onnx
    assert distribution == "cytorch-locally-connected"


@pytest.mark.parametrize("kwargs, input_shape", [
    ({"filters": 4, "kernel_size": 3}, (6, 5, 2)),
    ({"filters": 3, "kernel_size": (3, 2), "strides": (2, 1), "padding": "same",
      "activation": "tanh"}, (7, 6, 3)),
    ({"filters": 2, "kernel_size": 2, "padding": ((1, 0), (0, 2)), "use_bias": False,
      "activation": "relu"}, (5, 5, 1)),
    ({"filters": 5, "kernel_size": (1, 3), "strides": (1, 3), "padding": "full",
      "activation": "softmax"}, (4, 7, 2)),
])
def test_onnxruntime_predicts_what_the_layer_computes(kwargs, input_shape):
    model = cytorch.Sequential([L.Input(input_shape), LocallyConnected2D(**kwargs, seed=0)])
    layer = model.layers[0]
    if layer.use_bias:   # biases are zeros when made: give them values
        layer.params["bias"][...] = np.random.default_rng(1).normal(0, 1, layer.params[
            "bias"].shape)
    x = np.random.default_rng(2).normal(0, 1, (5, *input_shape)).astype(np.float32)
    got = onnx_predict(model, x)
    assert np.abs(got - model.predict(x)).max() <= 1e-5


def test_a_model_around_the_layer_and_a_file(tmp_path):
    # the README's model: LocallyConnected2D between channels-first convolutions and Dense
    model = cytorch.Sequential.from_spec(
        [("conv2d", {"filters": 3, "kernel_size": 3, "activation": "relu"}),
         ("locally_connected2d", {"filters": 8, "kernel_size": 3, "activation": "relu"}),
         ("max_pool2d", {"pool_size": 2}), ("flatten", {}),
         ("dense", {"units": 10, "activation": "softmax"})], input_shape=(10, 10, 1), seed=0)
    path = export.to_onnx(model, tmp_path / "lc.onnx")
    onnx.checker.check_model(path, full_check=True)
    x = np.random.default_rng(3).random((4, 10, 10, 1), dtype=np.float32)
    got = ort.InferenceSession(path).run(None, {"input": x})[0]
    assert np.abs(got - model.predict(x)).max() <= 1e-5


def test_the_identity_kernel_unfolds_in_the_layers_kh_kw_c_order():
    kernel = identity_kernel(2, 3, 2)
    assert kernel.shape == (12, 2, 2, 3) and kernel.sum() == 12
    for a in range(2):
        for b in range(3):
            for c in range(2):
                assert kernel[(a * 3 + b) * 2 + c, c, a, b] == 1
