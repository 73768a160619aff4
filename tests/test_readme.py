"""Every ```python block of README.md runs, in order, in one namespace (as a reader would paste
them into one session), from a scratch directory.

A block right after ``<!-- requires: module -->`` runs only when that module can be imported
(the dask snippet: dask is an optional extra); ``<!-- skip-test -->`` skips a block outright.
"""
import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"(?:<!--\s*(?P<marker>[^>]*?)\s*-->\s*\n)?```(?P<lang>\w*)\n(?P<code>.*?)^```",
                   re.S | re.M)


def blocks(lang):
    """``[(line, marker, code)]`` of the README's fenced blocks in ``lang``."""
    text = README.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start("code")) + 1, m.group("marker") or "", m.group("code"))
            for m in FENCE.finditer(text) if m.group("lang") == lang]


PYTHON = blocks("python")


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """The shared namespace, run from a scratch directory (the tour saves a model)."""
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("readme"))
    import cytorch
    backend = cytorch.get_backend()
    state = {"namespace": {"__name__": "__readme__"}, "failed": None}
    try:
        yield state
    finally:
        os.chdir(cwd)
        cytorch.backend(backend)


def test_the_readme_has_python_examples():
    assert len(PYTHON) >= 5


@pytest.mark.parametrize("line, marker, code", PYTHON, ids=[f"line{b[0]}" for b in PYTHON])
def test_python_block_runs(session, line, marker, code):
    if marker == "skip-test":
        pytest.skip("marked <!-- skip-test --> in the README")
    if marker.startswith("requires:"):
        module = marker.split(":", 1)[1].strip()
        if importlib.util.find_spec(module.split(".")[0]) is None:
            pytest.skip(f"needs {module}, not installed")
    if session["failed"] is not None:
        pytest.skip(f"the block at line {session['failed']} failed; later blocks build on it")
    try:
        exec(compile(code, f"README.md:{line}", "exec"), session["namespace"])
    except BaseException:
        session["failed"] = line
        raise


@pytest.mark.skipif(shutil.which("bash") is None, reason=".ci/run is a bash script")
def test_the_ci_runs_the_readme_commands_verbatim():
    # .ci/run reads the two set-up commands from the README (the first two bash blocks) and
    # runs them as they are; --commands prints what it read and stops
    commands = [code.strip() for _, _, code in blocks("bash")][:2]
    assert "cytorch train" in commands[0]
    assert "pytest" in commands[1]
    ci = subprocess.run(["bash", str(ROOT / ".ci" / "run"), "--commands"], capture_output=True,
                        text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert ci.returncode == 0, ci.stderr
    assert ci.stdout.splitlines() == commands
