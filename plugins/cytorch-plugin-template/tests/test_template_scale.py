"""Tests of the template plugin: the layer passes cytorch's conformance kit, and the entry point
in pyproject.toml makes cytorch find it by name.  Copy, rename, keep both kinds of test."""
import numpy as np
import pytest

import cytorch
from cytorch.testing import check_layer
from cytorch_plugin_template import Scale

PROJECT = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("input_shape", [(4, 5, 3), (6,)])
def test_check_layer(input_shape):
    # one line per configuration: shapes, gradients (finite differences), config round trip,
    # no input mutation, batch independence, float32 vs float64
    check_layer(Scale(init=1.5), input_shape)


def test_scale_multiplies_each_channel():
    layer = Scale(init=2.0)
    layer.build((2, 2, 3))
    layer.params["gamma"][:] = [1.0, 2.0, 3.0]
    y = layer.forward(np.ones((1, 2, 2, 3), dtype=np.float32))
    assert y[0, 0, 0].tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(cytorch.ShapeError, match=r"was built for samples of shape \(2, 2, 3\), "
                                                 r"got a batch of shape \(1, 2, 2, 4\)"):
        layer.forward(np.ones((1, 2, 2, 4)))
    with pytest.raises(ValueError, match="init must be a finite number"):
        Scale(init=float("nan"))


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """Pretend the template is installed: the metadata pip would write, on sys.path.

    The entry point is read from this project's pyproject.toml, so the test checks the real
    declaration.  Installing for real is exercised by cytorch's tests/test_plugins.py."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    dist_info = tmp_path / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\n"
                                        f"Version: {project['version']}\n")
    lines = [f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items())
             for group, entries in project["entry-points"].items()]
    (dist_info / "entry_points.txt").write_text("\n".join(lines))
    monkeypatch.syspath_prepend(str(tmp_path))
    cytorch.layers.refresh()            # discovery is cached: look again
    yield project["name"]
    monkeypatch.undo()
    cytorch.layers.refresh()


def test_discovered_through_its_entry_point(installed, tmp_path):
    cls, distribution = cytorch.layers.available()["scale"]
    assert cls is Scale and distribution == installed

    # found by name, the layer works in specs, training and saved models like a built-in one
    model = cytorch.Sequential.from_spec(
        [("scale", {"init": 0.5}), ("flatten", {}), ("dense", {"units": 2})],
        input_shape=(3, 3, 2), seed=0)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).standard_normal((8, 3, 3, 2)).astype(np.float32)
    model.fit(x, np.arange(8) % 2, epochs=1, verbose=0)
    model.save(tmp_path / "scaled.npz")
    loaded = cytorch.load_model(tmp_path / "scaled.npz")
    assert isinstance(loaded.layers[0], Scale)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
