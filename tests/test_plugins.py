"""Plugins seen from the outside, through real installed metadata.

* The locally-connected plugin, installed next to cytorch (the README's set-up command does
  that), is discovered with its distribution name.
* Throwaway pure-Python plugins are written to a temporary folder, ``pip install``-ed into a
  fresh virtual environment, and probed by a subprocess running that environment's Python:
  discovered and trained; a plugin that raises on import is skipped with a warning naming it;
  one that claims ``conv2d`` is an error naming both distributions; uninstalling removes it;
  ``cytorch layers`` lists what was found, with versions and load errors.

The venv tests are marked ``slow`` (each runs pip, ~5 s; deselect with ``-m "not slow"``).  They
need no network: the throwaway venv sees this environment's site-packages (see ``Venv`` in
``conftest.py``), so
cytorch, numpy, pip and setuptools come from here, and ``pip install --no-index --no-deps
--no-build-isolation`` builds with the setuptools already there (the ``test`` extra brings it:
a fresh venv on Python >= 3.12 has none).
"""
import importlib.util
import json
import textwrap

import pytest

import cytorch

slow = pytest.mark.slow

SHIFT_LAYER = '''
import numpy as np
from cytorch import Layer


class Shift(Layer):
    """y = x + beta, one learnable offset per channel."""

    def build(self, input_shape):
        self.params["beta"] = np.zeros(input_shape[-1], dtype=self.dtype)
        super().build(input_shape)

    def forward(self, x, training=False):
        return x + self.params["beta"]

    def backward(self, dout):
        self.grads["beta"] = dout.reshape(-1, dout.shape[-1]).sum(axis=0)
        return dout
'''

# name -> (distribution, module source, entry points)
PLUGINS = {
    "good": ("cytorch-throwaway-good", SHIFT_LAYER, {"throwaway_shift": "Shift"}),
    "broken": ("cytorch-throwaway-broken",
               'raise RuntimeError("this plugin is broken on purpose")\n',
               {"throwaway_broken": "Anything"}),
    "conflict": ("cytorch-throwaway-conflict", SHIFT_LAYER, {"conv2d": "Shift"}),
}

# Runs inside the venv: what discovery found, which warnings it gave, and whether a model
# made from the layer names in argv trains for one epoch.  Prints one JSON object.
PROBE = textwrap.dedent('''
    import json, sys, warnings
    import numpy as np
    import cytorch
    from cytorch import registry

    report = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        entries = registry.discover()
    report["warnings"] = [str(w.message) for w in caught]
    report["entries"] = {f"{e.distribution}[{e.name}]": {"version": e.version, "ok": e.ok,
                          "error": e.error} for e in entries}
    for name in ["conv2d"] + sys.argv[1:]:
        try:
            report[name] = registry.get(name).__module__
        except Exception as exc:
            report[name] = f"{type(exc).__name__}: {exc}"
    try:
        model = cytorch.Sequential.from_spec(
            [(name, {}) for name in sys.argv[1:]] + [("flatten", {}), ("dense", {"units": 2})],
            input_shape=(4, 4, 1), seed=0)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        X = np.random.default_rng(0).standard_normal((16, 4, 4, 1)).astype(np.float32)
        history = model.fit(X, np.arange(16) % 2, epochs=1, verbose=0)
        report["trained"] = [type(layer).__name__ for layer in model.layers]
        report["loss"] = history.history["loss"][-1]
    except Exception as exc:
        report["trained"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(report))
''')


def test_locally_connected_plugin_is_discovered_with_its_distribution():
    pytest.importorskip("cytorch_locally_connected")
    cytorch.layers.refresh()
    cls, distribution = cytorch.layers.available()["locally_connected2d"]
    assert (cls.__name__, distribution) == ("LocallyConnected2D", "cytorch-locally-connected")
    entry = next(e for e in cytorch.layers.discover() if e.name == "locally_connected2d")
    assert entry.ok and entry.version == "0.1.0"


@pytest.fixture(scope="module")
def plugin_dirs(tmp_path_factory):
    """Each throwaway plugin as a project folder: pyproject.toml and one module."""
    root = tmp_path_factory.mktemp("plugins")
    dirs = {}
    for key, (distribution, source, entry_points) in PLUGINS.items():
        module = distribution.replace("-", "_")
        folder = root / distribution
        folder.mkdir()
        (folder / f"{module}.py").write_text(source)
        eps = "\n".join(f'{name} = "{module}:{attr}"' for name, attr in entry_points.items())
        (folder / "pyproject.toml").write_text(textwrap.dedent(f'''
            [build-system]
            requires = ["setuptools>=61"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{distribution}"
            version = "1.2.3"
            dependencies = ["cytorch-edu"]

            [project.entry-points."cytorch.layers"]
            ''') + eps + f'\n\n[tool.setuptools]\npy-modules = ["{module}"]\n')
        dirs[key] = str(folder)
    return dirs


def probe(venv, *layer_names):
    """Run PROBE in ``venv`` with these layer names: its JSON report."""
    return json.loads(venv.run("-c", PROBE, *layer_names).strip().splitlines()[-1])


def install(venv, plugin_dirs, *keys):
    venv.pip("install", "--no-index", "--no-deps", "--no-build-isolation",
             *(plugin_dirs[k] for k in keys))


def uninstall(venv, *keys):
    venv.pip("uninstall", "-y", *(PLUGINS[k][0] for k in keys))


@slow
def test_installed_plugin_is_discovered_trains_and_disappears_when_uninstalled(
        venv, plugin_dirs):
    install(venv, plugin_dirs, "good")
    try:
        report = probe(venv, "throwaway_shift")
    finally:
        uninstall(venv, "good")
    entry = report["entries"]["cytorch-throwaway-good[throwaway_shift]"]
    assert entry == {"version": "1.2.3", "ok": True, "error": None}
    assert report["throwaway_shift"] == "cytorch_throwaway_good"
    assert report["trained"] == ["Shift", "Flatten", "Dense"] and report["loss"] > 0
    assert report["warnings"] == []
    # the built-ins and the locally-connected plugin are still there
    assert report["entries"]["cytorch-edu[conv2d]"]["ok"]
    if importlib.util.find_spec("cytorch_locally_connected") is not None:
        assert report["entries"]["cytorch-locally-connected[locally_connected2d]"]["ok"]

    gone = probe(venv, )
    assert not any("throwaway" in label for label in gone["entries"])
    # and the environment that ran pytest never saw it
    cytorch.layers.refresh()
    assert "throwaway_shift" not in cytorch.layers.available()


@slow
def test_plugin_failing_on_import_is_skipped_with_a_warning(venv, plugin_dirs):
    install(venv, plugin_dirs, "broken", "good")
    try:
        report = probe(venv, "throwaway_shift")
        listing = venv.run("-m", "cytorch.cli", "layers")     # what `cytorch layers` prints
    finally:
        uninstall(venv, "broken", "good")
    [warning] = report["warnings"]
    assert "cytorch-throwaway-broken[throwaway_broken]" in warning
    assert "RuntimeError: this plugin is broken on purpose" in warning
    assert report["entries"]["cytorch-throwaway-broken[throwaway_broken]"]["ok"] is False
    # everything else keeps working: other plugins train, the built-ins load
    assert report["trained"] == ["Shift", "Flatten", "Dense"]
    assert report["conv2d"] == "cytorch.layers.conv"
    rows = [line.split() for line in listing.splitlines()]
    assert ["throwaway_shift", "Shift", "cytorch-throwaway-good", "1.2.3", "no"] in rows
    assert ("cytorch-throwaway-broken[throwaway_broken] 1.2.3 (cytorch_throwaway_broken:"
            "Anything): RuntimeError: this plugin is broken on purpose") in listing


@slow
def test_plugin_claiming_a_taken_name_is_an_error_naming_both(venv, plugin_dirs):
    install(venv, plugin_dirs, "conflict")
    try:
        report = probe(venv, )
    finally:
        uninstall(venv, "conflict")
    assert report["conv2d"].startswith("RegistryError: layer name 'conv2d' is claimed by two "
                                       "distributions")
    assert "cytorch-edu[conv2d]" in report["conv2d"]
    assert "cytorch-throwaway-conflict[conv2d]" in report["conv2d"]
    # names nobody disputes still work: a model without conv2d trains
    assert report["trained"] == ["Flatten", "Dense"]
