"""Every script in examples/ runs (in its quick setting) and prints what it promises."""
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import cytorch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name, *args, cwd=None, timeout=300, warnings="ignore", stderr=False):
    """The example's stdout (and stderr with ``stderr=True``), run with ``PYTHONWARNINGS``
    set to ``warnings``."""
    result = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True,
                            text=True, timeout=timeout, cwd=cwd,
                            env={**os.environ, "PYTHONWARNINGS": warnings})
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
    return (result.stdout, result.stderr) if stderr else result.stdout


def test_conv_by_hand_prints_the_worked_examples():
    out = run_example("conv_by_hand.py")
    # the 5x5 image with the X filter, then the 6x6 image with the vertical-edge filter
    assert re.search(r"output 3x3 .*\n\s+4\s+3\s+4\n\s+2\s+4\s+3\n\s+2\s+3\s+4\n", out)
    assert re.search(r"output 4x4 .*\n\s+2\s+-17\s+", out)
    assert "7x7 input, 3x3 filter, stride 1: (7 - 3)/1 + 1 = 5 -> output 5x5" in out
    assert "stride 2: (7 - 3)/2 + 1 = 3 -> output 3x3" in out
    assert "stride 3: (7 - 3)/3 + 1 = 2.333 -> output 2x2" in out and "never seen" in out
    assert "WARNING: conv2d" in out
    assert "never sees the last 1 of 7 input rows" in re.sub(r"\s+", " ", out)
    assert "output 7x7" in out and "ShapeError: " in out
    for count in ("760", "280", "910", "34,944", "105,705,600"):
        assert count in out
    assert re.search(r"max pooling .*\n\s+6\s+8\n\s+3\s+4\n", out)
    assert re.search(r"avg pooling .*\n\s+3\.25\s+5\.25\n\s+2\s+2\n", out)
    assert re.search(r"min pooling .*\n\s+1\s+2\n\s+1\s+0\n", out)


def test_lenet5_digits_trains_evaluates_and_saves(tmp_path):
    path = tmp_path / "lenet5.npz"
    out = run_example("lenet5_digits.py", "--quick", "--save", str(path))
    assert "1437 training and 360 test digits, (32, 32, 1) each" in out
    assert "Total params: 61,706" in out
    accuracy = float(re.search(r"test accuracy ([0-9.]+) \(\d+/360\)", out).group(1))
    assert accuracy > 0.5  # one epoch; the full run reaches about 0.97
    matrix = re.findall(r"^\s+\d: ((?:\s+\d+){10})$", out, re.M)
    assert len(matrix) == 10
    assert sum(int(n) for row in matrix for n in row.split()) == 360
    assert path.exists() and "cytorch.load_model gives the same predictions" in out


def test_sklearn_pipeline_searches_and_scores():
    # every fit stops by its own rule (the docs gallery printed a dozen ConvergenceWarnings
    # when they all stopped at max_iter=15); warnings are shown, in the search's workers too
    out, err = run_example("sklearn_pipeline.py", "--quick", warnings="default", stderr=True)
    assert "ConvergenceWarning" not in err, err
    assert "cross_val_score (3 folds)" in out
    assert len(re.findall(r"^  layers=(SMALL|WIDER) +learning_rate=", out, re.M)) == 4
    score = float(re.search(r"test accuracy of the best pipeline: ([0-9.]+)", out).group(1))
    assert 0.3 < score <= 1.0
    assert "precision" in out and "recall" in out


def test_local_vs_conv_compares_parameters_and_accuracy():
    try:
        cytorch.layers.get("locally_connected2d")
    except (KeyError, ValueError):
        pytest.skip("the cytorch-locally-connected plugin is not installed")
    out = run_example("local_vs_conv.py", "--quick")
    conv = re.search(r"^Conv2D \(shared\)\s+160\s+8,010\s+([0-9.]+)\s+([0-9.]+)", out, re.M)
    local = re.search(r"^LocallyConnected2D\s+31,360\s+39,210\s+([0-9.]+)\s+([0-9.]+)", out,
                      re.M)
    assert conv and local, out
    assert float(conv.group(2)) > 0.3 and float(local.group(2)) > 0.3
    assert "196x the parameters" in out


@pytest.mark.parametrize("folder", [None, "pictures"])
def test_visualize_writes_three_pngs(tmp_path, folder):
    pytest.importorskip("matplotlib")
    args = [str(tmp_path / folder)] if folder else []  # default: ./cytorch-pictures
    out = run_example("visualize.py", *args, "--quick", cwd=tmp_path)
    assert re.search(r"digit #1796 is an 8, predicted \d", out)  # not "a 8"
    for name in ("filters.png", "activations.png", "curves.png"):
        path = tmp_path / (folder or "cytorch-pictures") / name
        width, height = map(int, re.search(rf"wrote {re.escape(str(path))} \((\d+)x(\d+) "
                                           rf"pixels\)", out).groups())
        with open(path, "rb") as f:
            head = f.read(24)
        assert head[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", head[16:24]) == (width, height)
