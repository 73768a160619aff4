"""``cytorch new-plugin NAME``: a ready plugin distribution from the template (package data).

* every name of the template becomes the plugin's, in file names and contents alike;
* the generated tests pass as written, before installing (fast) and after ``pip install -e``
  into a throwaway venv (slow), where ``cytorch layers`` then lists the layer;
* names that cannot work (taken layer names, importable packages, keywords, an existing
  folder) are refused before anything is written.
"""
import ast
import re
import subprocess
import sys

import pytest

import cytorch
from cytorch import plugin_kit
from cytorch.cli import main

try:
    import tomllib
except ModuleNotFoundError:     # Python 3.10: tomli comes with the test extra
    import tomli as tomllib

EXPECTED_FILES = ["README.md", "cytorch_my_gain/__init__.py", "cytorch_my_gain/export.py",
                  "cytorch_my_gain/my_gain.py", "pyproject.toml", "tests/conftest.py",
                  "tests/test_my_gain.py", "tests/test_my_gain_onnx.py"]


def have_onnxruntime(python=sys.executable, env=None):
    """Whether ``python`` imports onnx and onnxruntime: the generated ONNX test runs, or its
    file is skipped."""
    return subprocess.run([python, "-c", "import onnx, onnxruntime"], capture_output=True,
                          env=env, timeout=120).returncode == 0


def assert_generated_tests_passed(out, onnx_runs):
    """The generated tests' summary: 4 tests, plus the 2 of the ONNX file or its skip."""
    summary = "6 passed" if onnx_runs else "4 passed, 1 skipped"
    assert re.search(rf"^{summary} in ", out, re.M), out


def files_of(folder):
    return sorted(str(p.relative_to(folder)).replace("\\", "/")
                  for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


@pytest.mark.parametrize("name, expected", [
    ("gain", ("cytorch-gain", "cytorch_gain", "gain", "Gain")),
    ("my-gain", ("cytorch-my-gain", "cytorch_my_gain", "my_gain", "MyGain")),
    ("my_gain2", ("cytorch-my-gain2", "cytorch_my_gain2", "my_gain2", "MyGain2")),
    ("cytorch-gain", ("cytorch-gain", "cytorch_gain", "gain", "Gain")),
    ("cytorch_gain", ("cytorch-gain", "cytorch_gain", "gain", "Gain")),
])
def test_every_name_derives_from_one(name, expected):
    names = plugin_kit.plugin_names(name)
    assert (names.distribution, names.package, names.entry_point, names.class_name) == expected
    assert plugin_kit.plugin_names(name, class_name="Amplifier").class_name == "Amplifier"


@pytest.mark.parametrize("name, class_name, message", [
    ("My Gain", None, "name must be lowercase letters and digits"),
    ("2gain", None, "starting with a letter"),
    ("gain-", None, "got 'gain-'"),
    ("cytorch-", None, "got 'cytorch-'"),
    ("class", None, "Python keyword"),
    ("gain", "not-an-identifier", "class_name must be a Python identifier"),
    ("gain", "class", "class_name must be a Python identifier"),
])
def test_unusable_names_are_refused(name, class_name, message):
    with pytest.raises(ValueError, match=message):
        plugin_kit.plugin_names(name, class_name)


def test_the_template_is_package_data_with_every_file():
    relative = sorted(path for path, _ in plugin_kit.template_files())
    assert relative == ["README.md", "pyproject.toml", "tests/conftest.py",
                        "tests/test_{{module}}.py", "tests/test_{{module}}_onnx.py",
                        "{{package}}/__init__.py", "{{package}}/export.py",
                        "{{package}}/{{module}}.py"]


def test_new_plugin_changes_every_name(tmp_path):
    path = plugin_kit.new_plugin("my-gain", tmp_path)
    assert path == tmp_path / "cytorch-my-gain"
    assert files_of(path) == EXPECTED_FILES
    assert [p.name for p in tmp_path.iterdir()] == ["cytorch-my-gain"]   # no staging left
    text = {name: (path / name).read_text(encoding="utf-8") for name in EXPECTED_FILES}
    for name, content in text.items():
        assert "{{" not in content and "}}" not in content, name
        for leftover in ("plugin_template", "plugin-template", "Scale", "scale"):
            assert leftover not in content, (name, leftover)
        if name.endswith(".py"):
            ast.parse(content, name)
    project = tomllib.loads(text["pyproject.toml"])
    assert project["project"]["name"] == "cytorch-my-gain"
    assert project["project"]["entry-points"] == {
        "cytorch.layers": {"my_gain": "cytorch_my_gain:MyGain"},
        "cytorch.onnx": {"my_gain": "cytorch_my_gain.export:my_gain_to_onnx"}}
    assert "def my_gain_to_onnx(layer, inputs, graph):" in text["cytorch_my_gain/export.py"]
    assert "from cytorch_my_gain.export import my_gain_to_onnx" in text[
        "tests/test_my_gain_onnx.py"]
    assert project["tool"]["setuptools"]["packages"] == ["cytorch_my_gain"]
    assert "class MyGain(Layer):" in text["cytorch_my_gain/my_gain.py"]
    assert "from .my_gain import MyGain" in text["cytorch_my_gain/__init__.py"]
    assert 'find_spec("cytorch_my_gain")' in text["tests/conftest.py"]
    assert "from cytorch_my_gain import MyGain" in text["tests/test_my_gain.py"]
    assert text["README.md"].startswith("# cytorch-my-gain\n")
    # the README explains the dependency on cytorch-edu, which is not on the package index
    assert "cytorch-edu comes first" in text["README.md"]
    assert "No matching distribution found for cytorch-edu" in text["README.md"]


def test_refused_names_write_nothing(tmp_path, monkeypatch):
    plugin_kit.new_plugin("gain", tmp_path)
    with pytest.raises(FileExistsError, match="cytorch-gain' already exists"):
        plugin_kit.new_plugin("gain", tmp_path)
    with pytest.raises(ValueError, match="'dense' is already registered by cytorch-edu"):
        plugin_kit.new_plugin("dense", tmp_path)
    (tmp_path / "elsewhere" / "cytorch_taken").mkdir(parents=True)
    (tmp_path / "elsewhere" / "cytorch_taken" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "elsewhere"))
    with pytest.raises(ValueError, match="a module named 'cytorch_taken' is already importable"):
        plugin_kit.new_plugin("taken", tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plugin_kit.new_plugin("other", tmp_path / "missing")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cytorch-gain", "elsewhere"]


def test_cli_new_plugin(tmp_path, capsys):
    assert main(["new-plugin", "my-gain", "--directory", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "the layer MyGain, entry point 'my_gain'" in out
    assert "cytorch-my-gain/cytorch_my_gain/my_gain.py" in out
    assert 'python -m pip install -e ".[test]"' in out
    assert files_of(tmp_path / "cytorch-my-gain") == EXPECTED_FILES

    assert main(["new-plugin", "my-gain", "--directory", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["new-plugin", "Gain"]) == 2
    assert "name must be lowercase" in capsys.readouterr().err
    assert main(["new-plugin", "gain", "--class-name", "1x"]) == 2
    assert "class_name must be a Python identifier" in capsys.readouterr().err


def test_python_dash_m_cytorch_new_plugin(tmp_path):
    result = subprocess.run([sys.executable, "-m", "cytorch", "new-plugin", "gain",
                             "--directory", str(tmp_path)], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cytorch-gain" / "cytorch_gain" / "gain.py").is_file()


def run_pytest(python, folder, env=None):
    result = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder)],
                            cwd=folder, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_generated_tests_pass_before_installing(tmp_path):
    # tests/conftest.py puts the folder on sys.path; the discovery test writes the metadata
    path = plugin_kit.new_plugin("my-gain", tmp_path, class_name="Amplifier")
    out = run_pytest(sys.executable, path)
    assert_generated_tests_passed(out, have_onnxruntime())


@pytest.mark.slow
def test_generated_plugin_installs_and_its_tests_pass(venv, tmp_path):
    # the command the plugin's README gives, offline: this environment has what it needs
    path = plugin_kit.new_plugin("my-gain", tmp_path)
    venv.pip("install", "--no-index", "--no-build-isolation", "-e", f"{path}[test]")
    try:
        out = run_pytest(venv.python, path, env=venv.env)
        listing = venv.run("-m", "cytorch", "layers")
        version = venv.run("-c", "import importlib.metadata as m; "
                                 "print(m.version('cytorch-my-gain'))")
    finally:
        venv.pip("uninstall", "-y", "cytorch-my-gain")
    assert_generated_tests_passed(out, have_onnxruntime(venv.python, venv.env))
    assert ["my_gain", "MyGain", "cytorch-my-gain", "0.1.0", "yes"] in [
        line.split() for line in listing.splitlines()]
    assert version.strip() == "0.1.0"
    # and the environment running these tests never saw it
    cytorch.layers.refresh()
    assert "my_gain" not in cytorch.layers.available()
