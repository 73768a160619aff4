"""model.save / cytorch.load_model: one .npz, no pickles, plugin names resolved by entry point."""
import json
import zipfile

import numpy as np
import pytest

import cytorch
from cytorch import Model, Sequential, layers as L, optimizers


def trained_sequential():
    model = Sequential([L.Input((6, 6, 1)), L.Conv2D(3, 3, activation="relu"),
                        L.AveragePooling2D(2), L.Flatten(), L.Dense(4, activation="softmax")],
                       seed=0, name="seq")
    model.compile(optimizer=optimizers.SGD(0.05, momentum=0.9), metrics=["accuracy"])
    rng = np.random.default_rng(0)
    X, y = rng.random((32, 6, 6, 1), dtype=np.float32), rng.integers(0, 4, 32)
    model.fit(X, y, epochs=2, verbose=0)
    return model, X


def functional_with_skip():
    i = L.Input((5, 5, 2), name="image")
    a = L.Conv2D(4, 3, padding="same", activation="relu", name="c1")(i)
    b = L.Conv2D(4, 1, name="shortcut")(i)
    s = L.Add(name="sum")([a, b])
    c = L.Concatenate(name="cat")([s, L.Conv2D(2, 3, padding="same", name="c2")(s)])
    out = L.Dense(3, activation="softmax", name="out")(L.GlobalAveragePooling2D(name="gap")(c))
    return Model(i, out, seed=1, name="skippy")


def test_sequential_round_trip(tmp_path):
    model, X = trained_sequential()
    path = model.save(tmp_path / "seq.npz")
    loaded = cytorch.load_model(path)
    assert isinstance(loaded, Sequential) and loaded.name == "seq"
    assert [type(a) for a in loaded.layers] == [type(b) for b in model.layers]
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    # compiled again from the stored settings: training can go on
    assert isinstance(loaded.optimizer, optimizers.SGD) and loaded.optimizer.momentum == 0.9
    assert loaded.loss.name == model.loss.name and loaded.metrics == ["accuracy"]
    loaded.fit(X, np.zeros(len(X), dtype=int), verbose=0)


def test_functional_model_with_skip_round_trip(tmp_path):
    model = functional_with_skip()
    X = np.random.default_rng(2).random((7, 5, 5, 2))
    path = tmp_path / "skip.npz"
    model.save(path)
    loaded = cytorch.load_model(path)
    assert isinstance(loaded, Model) and loaded.name == "skippy"
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_file_is_plain_npz_without_pickles(tmp_path):
    model, _ = trained_sequential()
    path = model.save(tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as data:
        arch = json.loads(data["__architecture__"].tobytes().decode())
        assert data["__architecture__"].dtype == np.uint8
        kernel_key = f"{model.layers[0].name}/kernel"
        np.testing.assert_array_equal(data[kernel_key], model.layers[0].params["kernel"])
        assert all(data[k].dtype != object for k in data.files)
    assert [e["registered_name"] for e in arch["layers"]] == \
        ["input", "conv2d", "avg_pool2d", "flatten", "dense"]
    assert zipfile.is_zipfile(path)


def test_unknown_layer_names_the_layer_and_the_entry_point_group(tmp_path):
    model, _ = trained_sequential()
    path = model.save(tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    arch = json.loads(arrays["__architecture__"].tobytes().decode())
    arch["layers"][1]["registered_name"] = "fancy_conv2d"
    arrays["__architecture__"] = np.frombuffer(json.dumps(arch).encode(), np.uint8)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    with pytest.raises(ValueError, match=r"'fancy_conv2d'.*'cytorch\.layers' entry-point group"
                                         r".*install the plugin"):
        cytorch.load_model(bad)


def test_an_unregistered_layer_class_cannot_be_saved(tmp_path):
    class Scale(L.Activation):
        pass

    model = Sequential([L.Input((3,)), Scale("relu")])
    with pytest.raises(ValueError, match="not registered in the 'cytorch.layers' entry-point"):
        model.save(tmp_path / "x.npz")


def test_not_a_model_file(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, a=np.zeros(3))
    with pytest.raises(ValueError, match="not a cytorch model file"):
        cytorch.load_model(path)


def rewrite_architecture(path, out, edit):
    """Copy the model file ``path`` to ``out`` with ``edit(architecture)`` applied."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    arch = json.loads(arrays["__architecture__"].tobytes().decode())
    edit(arch)
    arrays["__architecture__"] = np.frombuffer(json.dumps(arch).encode(), np.uint8)
    np.savez(out, **arrays)
    return out


def test_each_layer_records_the_distribution_that_provides_it(tmp_path):
    model, _ = trained_sequential()
    path = model.save(tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as data:
        arch = json.loads(data["__architecture__"].tobytes().decode())
    assert [e["provided_by"] for e in arch["layers"]] == \
        [{"distribution": "cytorch-edu", "version": cytorch.__version__}] * 5


def test_a_missing_plugin_is_named_with_its_distribution(tmp_path):
    model, _ = trained_sequential()
    path = model.save(tmp_path / "m.npz")

    def plugin_layer(arch):   # as if layer 1 came from a plugin that is not installed here
        arch["layers"][1]["registered_name"] = "fancy_conv2d"
        arch["layers"][1]["provided_by"] = {"distribution": "cytorch-fancy", "version": "1.2.3"}

    bad = rewrite_architecture(path, tmp_path / "bad.npz", plugin_layer)
    with pytest.raises(ValueError, match=r"layer 'fancy_conv2d' \(Conv2D '.*', provided by "
                                         r"cytorch-fancy 1\.2\.3 when it was saved\), but no "
                                         r"installed package provides 'fancy_conv2d'.*"
                                         r"\(pip install cytorch-fancy\)"):
        cytorch.load_model(bad)


def test_files_without_the_distribution_still_load(tmp_path):
    model, X = trained_sequential()
    path = model.save(tmp_path / "m.npz")

    def old_format(arch):
        for entry in arch["layers"]:
            del entry["provided_by"]

    old = rewrite_architecture(path, tmp_path / "old.npz", old_format)
    np.testing.assert_array_equal(cytorch.load_model(old).predict(X), model.predict(X))

    def old_and_unknown(arch):
        old_format(arch)
        arch["layers"][1]["registered_name"] = "fancy_conv2d"

    bad = rewrite_architecture(path, tmp_path / "bad.npz", old_and_unknown)
    with pytest.raises(ValueError, match=r"'fancy_conv2d'.*\(pip install <its distribution>\)"):
        cytorch.load_model(bad)


@pytest.mark.parametrize("provided_by", [[], {"version": "1"}, {"distribution": 3},
                                         {"distribution": "x", "version": 1}])
def test_a_malformed_distribution_record_is_refused(tmp_path, provided_by):
    model, _ = trained_sequential()
    path = model.save(tmp_path / "m.npz")
    bad = rewrite_architecture(path, tmp_path / "bad.npz",
                               lambda arch: arch["layers"][2].update(provided_by=provided_by))
    with pytest.raises(ValueError, match="layer 2: 'provided_by' must be an object"):
        cytorch.load_model(bad)


def test_a_plugin_layer_names_its_distribution_when_the_plugin_is_gone(tmp_path, monkeypatch):
    pytest.importorskip("cytorch_locally_connected")
    from cytorch import registry
    cytorch.layers.refresh()
    model = Sequential([L.Input((6, 6, 1)), L.get("locally_connected2d")(2, 3), L.Flatten()],
                       seed=0)
    path = model.save(tmp_path / "lc.npz")
    with np.load(path, allow_pickle=False) as data:
        arch = json.loads(data["__architecture__"].tobytes().decode())
    assert arch["layers"][1]["provided_by"] == {"distribution": "cytorch-locally-connected",
                                                "version": "0.1.0"}
    # uninstalled, as far as discovery can tell
    everything = registry._entry_points
    monkeypatch.setattr(registry, "_entry_points", lambda: [
        ep for ep in everything() if ep.name != "locally_connected2d"])
    cytorch.layers.refresh()
    try:
        with pytest.raises(ValueError, match=r"provided by cytorch-locally-connected 0\.1\.0 "
                                             r"when it was saved.*\(pip install "
                                             r"cytorch-locally-connected\)"):
            cytorch.load_model(path)
    finally:
        monkeypatch.undo()
        cytorch.layers.refresh()
