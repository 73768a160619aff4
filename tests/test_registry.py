"""The entry-point registry, with real metadata for the built-ins and in-memory distributions
(subclasses of ``importlib.metadata.Distribution``) for fake plugins."""
import importlib.metadata
import sys
import types
import warnings

import numpy as np
import pytest

import cytorch
from cytorch import layers as L, registry
from cytorch.registry import GROUP, PluginWarning, Registry, RegistryError

BUILTINS = {
    "input": "Input", "dense": "Dense", "flatten": "Flatten", "activation": "Activation",
    "dropout": "Dropout", "conv2d": "Conv2D", "max_pool2d": "MaxPooling2D",
    "avg_pool2d": "AveragePooling2D", "min_pool2d": "MinPooling2D",
    "global_max_pool2d": "GlobalMaxPooling2D", "global_avg_pool2d": "GlobalAveragePooling2D",
    "global_min_pool2d": "GlobalMinPooling2D", "add": "Add", "concatenate": "Concatenate",
    "batch_normalization": "BatchNormalization", "leaky_relu": "LeakyReLU", "elu": "ELU",
    "zero_padding2d": "ZeroPadding2D", "reshape": "Reshape", "up_sampling2d": "UpSampling2D",
    "spatial_dropout2d": "SpatialDropout2D", "depthwise_conv2d": "DepthwiseConv2D",
    "separable_conv2d": "SeparableConv2D", "multiply": "Multiply", "subtract": "Subtract",
    "average": "Average", "maximum": "Maximum",
}


class FakeDistribution(importlib.metadata.Distribution):
    """An installed distribution that lives in memory: METADATA and entry_points.txt."""

    def __init__(self, name, entry_points, version="1.0"):
        lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
        self._files = {"METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
                       "entry_points.txt": f"[{GROUP}]\n{lines}\n"}

    def read_text(self, filename):
        return self._files.get(filename)

    def locate_file(self, path):
        raise FileNotFoundError(path)


def fake_registry(*distributions, counter=None):
    def entry_points():
        if counter is not None:
            counter.append(1)
        return [ep for d in distributions for ep in d.entry_points if ep.group == GROUP]
    return Registry(entry_points=entry_points)


@pytest.fixture
def plugin_module(monkeypatch):
    """A plugin module ``fake_cytorch_plugin`` with one good layer and one impostor."""
    module = types.ModuleType("fake_cytorch_plugin")

    class Scale(cytorch.Layer):
        def forward(self, x, training=False):
            return 2 * x

        def backward(self, dout):
            return 2 * dout

    module.Scale = Scale
    module.NotALayer = dict
    module.make_layer = lambda: Scale()
    monkeypatch.setitem(sys.modules, "fake_cytorch_plugin", module)
    return module


CYTORCH = FakeDistribution("cytorch-edu", {"dense": "cytorch.layers.core:Dense",
                                           "conv2d": "cytorch.layers.conv:Conv2D"}, "0.1.0")


def test_builtins_are_discovered_from_cytorchs_own_metadata():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)  # an installed plugin may be mid-build
        entries = {e.name: e for e in Registry().discover()}
        found = L.available()
    for name, cls_name in BUILTINS.items():
        entry = entries[name]
        assert entry.distribution == "cytorch-edu" and entry.version == cytorch.__version__
        assert entry.cls is getattr(L, cls_name) and entry.error is None
        assert entry.label == f"cytorch-edu[{name}]"
        assert found[name] == (getattr(L, cls_name), "cytorch-edu")
    assert list(found) == sorted(found)
    assert L.get("conv2d") is L.Conv2D and L.get("max_pool2d") is L.MaxPool2D
    assert L.name_of(L.AvgPool2D) == "avg_pool2d"


def test_unknown_name_lists_known_names_and_the_closest():
    reg = fake_registry(CYTORCH)
    with pytest.raises(KeyError, match=r"no layer named 'conv2' in entry-point group "
                                       r"'cytorch.layers' \(did you mean 'conv2d'\?\); known: "
                                       r"conv2d, dense"):
        reg.get("conv2")
    with pytest.raises(KeyError, match=r"no layer named 'lstm' .*'cytorch.layers'; known: "
                                       r"conv2d, dense"):
        reg.get("lstm")


def test_class_names_are_accepted_too():
    reg = fake_registry(CYTORCH)
    assert reg.get("Conv2D") is L.Conv2D and reg.get("dense") is L.Dense


def test_plugin_layer_is_found_and_loaded(plugin_module):
    reg = fake_registry(CYTORCH, FakeDistribution(
        "cytorch-scale", {"scale": "fake_cytorch_plugin:Scale"}, "2.3"))
    assert reg.available() == {"conv2d": (L.Conv2D, "cytorch-edu"),
                               "dense": (L.Dense, "cytorch-edu"),
                               "scale": (plugin_module.Scale, "cytorch-scale")}
    scale = [e for e in reg.discover() if e.name == "scale"][0]
    assert (scale.distribution, scale.version, scale.value) == \
        ("cytorch-scale", "2.3", "fake_cytorch_plugin:Scale")


def test_broken_plugin_warns_with_its_name_and_error_and_is_skipped(tmp_path, monkeypatch):
    (tmp_path / "fake_broken_plugin.py").write_text(
        "raise ImportError('libfoo.so: cannot open shared object file')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = fake_registry(CYTORCH, FakeDistribution(
        "cytorch-broken", {"broken": "fake_broken_plugin:Broken"}, "0.3"))
    with pytest.warns(PluginWarning, match=r"skipping cytorch.layers plugin "
                                           r"cytorch-broken\[broken\] \(fake_broken_plugin:"
                                           r"Broken\): ImportError: libfoo.so: cannot open"):
        available = reg.available()
    assert sorted(available) == ["conv2d", "dense"]  # the rest still works
    assert reg.get("dense") is L.Dense
    [broken] = [e for e in reg.discover() if e.name == "broken"]
    assert broken.cls is None and "libfoo.so" in broken.error and not broken.ok
    with pytest.raises(RegistryError, match=r"'broken' is provided by cytorch-broken\[broken\], "
                                            r"which failed to load: ImportError: libfoo"):
        reg.get("broken")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reg.get("conv2d")  # loaded once: no second warning


def test_missing_module_is_reported_like_any_import_error():
    reg = fake_registry(FakeDistribution("ghost", {"ghost": "no_such_module_xyz:Ghost"}))
    with pytest.warns(PluginWarning, match=r"ghost\[ghost\].*ModuleNotFoundError: No module "
                                           r"named 'no_such_module_xyz'"):
        assert reg.available() == {}


def test_name_claimed_by_two_distributions_names_both(plugin_module):
    reg = fake_registry(CYTORCH, FakeDistribution(
        "cytorch-dense-plus", {"dense": "fake_cytorch_plugin:Scale"}))
    with pytest.raises(RegistryError, match=r"layer name 'dense' is claimed by two "
                                            r"distributions: cytorch-dense-plus\[dense\] and "
                                            r"cytorch-edu\[dense\]"):
        reg.get("dense")
    with pytest.raises(RegistryError, match="cytorch-edu"):
        reg.available()
    assert reg.get("conv2d") is L.Conv2D  # unambiguous names still resolve
    conflicts = {e.distribution: e.conflict for e in reg.discover() if e.name == "dense"}
    assert conflicts == {"cytorch-edu": ("cytorch-dense-plus",),
                         "cytorch-dense-plus": ("cytorch-edu",)}


def test_same_distribution_seen_twice_counts_once():
    reg = fake_registry(CYTORCH, CYTORCH)
    assert reg.get("dense") is L.Dense
    assert [e.name for e in reg.discover()] == ["conv2d", "dense"]


@pytest.mark.parametrize("value, what", [("fake_cytorch_plugin:NotALayer", "class dict"),
                                         ("fake_cytorch_plugin:make_layer", "a function")])
def test_object_that_is_not_a_layer_class_is_rejected(plugin_module, value, what):
    reg = fake_registry(CYTORCH, FakeDistribution("cytorch-bad", {"bad": value}))
    with pytest.warns(PluginWarning, match=rf"cytorch-bad\[bad\].*{value} is not a "
                                           rf"cytorch.Layer subclass \(got {what}\)"):
        assert "bad" not in reg.available()
    with pytest.raises(RegistryError, match="not a cytorch.Layer subclass"):
        reg.get("bad")


def test_discovery_is_lazy_cached_and_refreshable():
    calls = []
    reg = fake_registry(CYTORCH, counter=calls)
    assert calls == []  # nothing happens at construction
    reg.get("dense")
    reg.available()
    reg.discover()
    assert len(calls) == 1
    reg.refresh()
    reg.get("conv2d")
    assert len(calls) == 2


def test_entry_points_made_by_hand_have_an_unknown_distribution():
    ep = importlib.metadata.EntryPoint("dense", "cytorch.layers.core:Dense", GROUP)
    other = importlib.metadata.EntryPoint("x", "cytorch.layers.core:Dense", "another.group")
    reg = Registry(entry_points=lambda: [ep, other])
    [entry] = reg.discover()  # the other group is ignored
    assert entry.distribution == "<unknown distribution>" and entry.version is None
    assert reg.available() == {"dense": (L.Dense, "<unknown distribution>")}


def test_module_level_functions_use_the_monkeypatchable_entry_points(monkeypatch,
                                                                       plugin_module):
    dist = FakeDistribution("cytorch-scale", {"scale": "fake_cytorch_plugin:Scale"})
    monkeypatch.setattr(registry, "_entry_points", lambda: list(dist.entry_points))
    registry.refresh()
    try:
        assert L.get("scale") is plugin_module.Scale
        assert list(L.available()) == ["scale"]
        model = cytorch.Sequential.from_spec([("scale", {})], input_shape=(3,))
        np.testing.assert_allclose(model.predict(np.ones((2, 3), dtype=np.float32)), 2.0)
    finally:
        monkeypatch.undo()
        registry.refresh()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)
        assert L.get("dense") is L.Dense
