"""The ``cytorch`` command: every subcommand through ``main([...])``, user mistakes as one line
on stderr with status 2, and the installed console script."""
import importlib.metadata
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import cytorch
from cytorch import registry
from cytorch import cli
from cytorch.cli import main


def run(capsys, *argv):
    """(status, stdout, stderr) of ``cytorch *argv``."""
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(status, err, pattern):
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("cytorch: error: ")
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in err


# -- help and usage -----------------------------------------------------------------------------
def test_help_lists_every_subcommand(capsys):
    status, out, _ = run(capsys, "--help")
    assert status == 0
    for command in ("train", "layers", "summary", "info"):
        assert command in out


def test_version(capsys):
    status, out, _ = run(capsys, "--version")
    assert status == 0 and out.strip() == f"cytorch {cytorch.__version__}"


@pytest.mark.parametrize("argv, pattern", [
    ([], "missing COMMAND: one of train, layers, summary, info"),
    (["fly"], "invalid choice: 'fly'"),
    (["train", "--size", "7"], r"argument --size: invalid choice: 7 \(choose from 8, 16, 28, 32\)"),
    (["train", "--epochs", "0"], "argument --epochs: expected a positive integer, got 0"),
    (["train", "--learning-rate", "-1"], "argument --learning-rate: expected a positive number"),
    (["summary"], "the following arguments are required: MODEL"),
    (["summary", "lenet5", "--input-shape", "32", "32"], "--input-shape: expected 3 arguments"),
])
def test_bad_command_lines_are_one_line_with_status_2(capsys, argv, pattern):
    status, _, err = run(capsys, *argv)
    assert_one_line_error(status, err, pattern)


# -- summary ------------------------------------------------------------------------------------
def test_summary_of_a_preset(capsys):
    status, out, err = run(capsys, "summary", "lenet5")
    assert status == 0 and err == ""
    assert 'Model: "lenet5"' in out
    assert "Total params: 61,706" in out
    assert "(None, 28, 28, 6)" in out


def test_summary_for_another_input_shape(capsys):
    # on 28x28: 24x24x6 -> 12x12x6 -> 8x8x16 -> 4x4x16 = 256 inputs to the 120-unit layer
    status, out, _ = run(capsys, "summary", "lenet5", "--input-shape", "28", "28", "1")
    assert status == 0
    assert "(None, 24, 24, 6)" in out
    assert f"Total params: {156 + 2416 + 257 * 120 + 10164 + 850:,}" in out


def test_summary_of_the_keras_mnist_preset(capsys):
    status, out, _ = run(capsys, "summary", "keras_mnist")
    assert status == 0 and "Total params: 38,390" in out


def test_summary_of_the_auto_net_as_train_builds_it(capsys):
    status, out, _ = run(capsys, "summary", "auto")
    assert status == 0 and 'Model: "auto"' in out and "(None, 16, 16, 16)" in out
    model = cli._make_model("auto", (16, 16, 1), 0)
    assert f"Total params: {model.count_params():,}" in out
    status, out, _ = run(capsys, "summary", "auto", "--input-shape", "8", "8", "1")
    assert status == 0 and "(None, 8, 8, 16)" in out


def test_summary_fits_in_80_columns(capsys):
    for name in ("lenet5", "keras_mnist", "auto"):
        status, out, _ = run(capsys, "summary", name)
        assert status == 0
        assert max(len(line) for line in out.splitlines()) <= 80, out


@pytest.mark.parametrize("argv, help_of", [
    (("train", "--epochz"), "cytorch train --help"),
    (("summary", "lenet5", "--bogus"), "cytorch summary --help"),
    (("layers", "--all"), "cytorch layers --help"),
    (("--bogus",), "cytorch --help"),
])
def test_an_unknown_option_points_to_the_help_of_its_subcommand(capsys, argv, help_of):
    status, _, err = run(capsys, *argv)
    assert_one_line_error(status, err, rf"unrecognized arguments: {re.escape(argv[-1])}.* "
                                       rf"\(see '{re.escape(help_of)}'\)")


def test_unknown_model_is_one_line_with_a_suggestion(capsys):
    status, _, err = run(capsys, "summary", "lenet")
    assert_one_line_error(status, err, r"unknown preset 'lenet'.*did you mean 'lenet5'")


def test_a_shape_that_does_not_fit_is_one_line(capsys):
    status, _, err = run(capsys, "summary", "lenet5", "--input-shape", "8", "8", "1")
    assert_one_line_error(status, err, r"Conv2D '.*' needs at least 5x5 input .* got 2x2")


def test_missing_model_file(capsys, tmp_path):
    status, _, err = run(capsys, "summary", str(tmp_path / "nope.npz"))
    assert_one_line_error(status, err, "no such model file: .*nope.npz")


# -- layers -------------------------------------------------------------------------------------
def test_layers_lists_every_entry_with_distribution_and_version(capsys):
    status, out, _ = run(capsys, "layers")
    assert status == 0
    version = importlib.metadata.version("cytorch-edu")
    for name, cls in (("conv2d", "Conv2D"), ("max_pool2d", "MaxPooling2D"),
                      ("dense", "Dense"), ("global_avg_pool2d", "GlobalAveragePooling2D")):
        assert re.search(rf"^\s+{name}\s+{cls}\s+cytorch-edu\s+{re.escape(version)}\s+yes$",
                         out, re.M), name
    n = len([e for e in registry.discover() if e.cls is not None])
    assert out.startswith(f"{n} layer(s) in entry-point group 'cytorch.layers':")
    assert "onnx: 'yes' if the 'cytorch.onnx' group has the layer's converter" in out
    assert re.search(r"^\s+name\s+class\s+distribution\s+version\s+onnx$", out, re.M)
    assert "failed to load" not in out


def test_layers_reports_a_broken_plugin_with_its_error(capsys, monkeypatch):
    real = registry._entry_points
    broken = importlib.metadata.EntryPoint(name="warp_drive", value="no_such_module:Warp",
                                           group=registry.GROUP)
    monkeypatch.setattr(registry, "_entry_points", lambda: list(real()) + [broken])
    registry.refresh()
    try:
        status, out, err = run(capsys, "layers")
    finally:
        monkeypatch.undo()
        registry.refresh()
    assert status == 0
    assert "1 plugin(s) failed to load:" in out
    assert re.search(r"\[warp_drive\].*no_such_module:Warp.*ModuleNotFoundError: "
                     r"No module named 'no_such_module'", out)
    assert re.search(r"^\s+conv2d\s+Conv2D", out, re.M)  # the rest still listed


def test_layers_flags_a_name_claimed_twice(capsys, monkeypatch):
    real = registry._entry_points
    twin = importlib.metadata.EntryPoint(name="conv2d", value="cytorch.layers.conv:Conv2D",
                                         group=registry.GROUP)
    monkeypatch.setattr(registry, "_entry_points", lambda: list(real()) + [twin])
    registry.refresh()
    try:
        status, out, _ = run(capsys, "layers")
    finally:
        monkeypatch.undo()
        registry.refresh()
    assert status == 0
    assert re.search(r"^\s+conv2d\s+Conv2D\s+cytorch-edu\s+\S+\s+yes\s+\(also claimed by "
                     r"<unknown distribution>\)$", out, re.M)


def test_layers_shows_which_layers_have_an_onnx_converter(capsys, monkeypatch):
    from cytorch import export
    real_layers, real_converters = registry._entry_points, export._entry_points
    group = registry.GROUP
    extra_layers = [importlib.metadata.EntryPoint(name=name, value="cytorch.layers.core:Flatten",
                                                  group=group)
                    for name in ("plain_flatten", "broken_flatten")]
    extra_converters = [importlib.metadata.EntryPoint(name=name, value=value, group=export.GROUP)
                        for name, value in (("broken_flatten", "no_such_module:convert"),
                                            ("flatten", "cytorch.export.converters:flatten"))]
    monkeypatch.setattr(registry, "_entry_points", lambda: list(real_layers()) + extra_layers)
    monkeypatch.setattr(export, "_entry_points", lambda: list(real_converters()) + extra_converters)
    registry.refresh()
    export.refresh()
    try:
        status, out, _ = run(capsys, "layers")
    finally:
        monkeypatch.undo()
        registry.refresh()
        export.refresh()
    assert status == 0
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:] if line.strip()}
    assert rows["conv2d"][-1] == "yes"
    assert rows["plain_flatten"][-1] == "no"           # a layer without a converter
    assert rows["broken_flatten"][-1] == "failed"       # a converter that cannot be imported
    assert rows["flatten"][-1] == "conflict"            # claimed by a second distribution


# -- info ---------------------------------------------------------------------------------------
def test_info_shows_the_compiled_modules(capsys):
    status, out, _ = run(capsys, "info")
    assert status == 0
    assert f"cytorch {cytorch.__version__}" in out
    for module in ("_conv", "_pool", "_dropout"):
        assert re.search(rf"{module}\s+loaded\s+\S+{module}\.\S+\.(so|pyd)", out), module
    assert "OpenMP" in out and "BLAS" in out


def test_the_installed_console_script_runs():
    script = shutil.which("cytorch")
    if script is None:
        pytest.skip("the 'cytorch' console script is not on PATH (package not installed)")
    result = subprocess.run([script, "info"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "_conv" in result.stdout


def test_python_dash_m_cytorch_reports_mistakes_with_status_2():
    result = subprocess.run([sys.executable, "-m", "cytorch", "summary", "lenet7"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        result.stderr.strip()]  # one line
    assert "unknown preset 'lenet7'" in result.stderr and result.stdout == ""


# -- train --------------------------------------------------------------------------------------
def test_train_small_then_summary_of_the_saved_model(capsys, tmp_path):
    path = tmp_path / "digits.npz"
    status, out, err = run(capsys, "train", "--model", "auto", "--size", "8", "--epochs", "2",
                           "--batch-size", "64", "--save", str(path))
    assert status == 0, err
    assert "Digits: 1437 training and 360 test images of 8x8x1" in out
    assert 'Model: "auto"' in out and "Total params:" in out
    # the progress bar (stderr) and the final accuracy (stdout)
    assert "Epoch 1/2" in err and "Epoch 2/2" in err and "loss:" in err
    accuracy = float(re.search(r"Test accuracy: ([0-9.]+) \((\d+)/360 digits\)", out).group(1))
    assert accuracy > 0.5
    assert path.exists() and f"Saved to {path} " in out

    model = cytorch.load_model(path)
    from cytorch.datasets import load_digits
    X, y = load_digits(size=8)
    assert 0.5 < np.mean(model.predict(X).argmax(axis=1) == y) <= 1.0

    status, out, _ = run(capsys, "summary", str(path))
    assert status == 0 and 'Model: "auto"' in out


def test_train_is_reproducible_with_a_seed(capsys):
    args = ("train", "--model", "auto", "--size", "8", "--epochs", "1", "--batch-size", "128",
            "--quiet", "--seed", "3")
    first = run(capsys, *args)
    second = run(capsys, *args)
    assert first[0] == second[0] == 0
    assert first[2] == "" == second[2]  # --quiet: no progress bar
    pick = re.compile(r"Test (loss|accuracy): .*")
    assert pick.findall(first[1]) and \
        [m.group(0) for m in pick.finditer(first[1])] == \
        [m.group(0) for m in pick.finditer(second[1])]


def test_train_on_the_numpy_twins_gives_the_same_model(capsys):
    args = ("train", "--model", "auto", "--size", "8", "--epochs", "1", "--batch-size", "128",
            "--quiet", "--seed", "3")
    compiled = run(capsys, *args)
    twins = run(capsys, *args, "--backend", "reference")
    assert compiled[0] == twins[0] == 0
    assert re.search(r"\(compiled kernels, \d+ thread\(s\)\)", compiled[1])
    # the twins are NumPy: OpenMP thread counts mean nothing to them
    assert "(reference kernels: the NumPy twins)" in twins[1] and "thread" not in twins[1]
    assert cytorch.get_backend() == "compiled"  # restored
    accuracy = re.compile(r"Test accuracy: ([0-9.]+)")
    assert abs(float(accuracy.search(compiled[1]).group(1))
               - float(accuracy.search(twins[1]).group(1))) <= 2 / 360


def test_train_with_a_size_too_small_for_the_model(capsys):
    status, _, err = run(capsys, "train", "--model", "lenet5", "--size", "8")
    assert_one_line_error(status, err, r"needs at least 5x5 input .* got 2x2")


def test_train_save_to_an_unwritable_place(capsys, tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "m.npz"
    status, _, err = run(capsys, "train", "--model", "auto", "--size", "8", "--epochs", "1",
                         "--quiet", "--save", str(target))
    assert_one_line_error(status, err, f"--save {target}: the directory .*dir does not exist")
    status, _, err = run(capsys, "train", "--save", str(tmp_path))
    assert_one_line_error(status, err, "is a directory; give a file name")


def test_train_plot_writes_curves_filters_and_confusion_matrix(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    folder = tmp_path / "pictures" / "new"  # created
    status, out, err = run(capsys, "train", "--model", "auto", "--size", "8", "--epochs", "2",
                           "--batch-size", "64", "--quiet", "--plot", str(folder))
    assert status == 0, err
    for name in ("curves.png", "filters.png", "confusion_matrix.png"):
        path = folder / name
        assert f"Wrote {path}" in out
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_plot_into_a_file_is_one_line(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    target = tmp_path / "file.png"
    target.write_bytes(b"")
    status, _, err = run(capsys, "train", "--plot", str(target))
    assert_one_line_error(status, err, r"--plot .*file\.png: is a file; give a folder")
