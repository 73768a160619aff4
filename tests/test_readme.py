"""Every ```python block of README.md runs, in order, in one namespace (as a reader would paste
them into one session), from a scratch directory, and prints what the README shows.

A block right after ``<!-- requires: module -->`` runs only when that module can be imported
(the dask snippet: dask is an optional extra); ``<!-- skip-test -->`` skips a block outright.
What a block prints on stdout must equal the ```text block after it marked
``<!-- output -->`` (whitespace runs compare equal; ``...`` stands for any text, as in
doctest); a block that prints needs one.
"""
import contextlib
import doctest
import importlib.util
import io
import os
import re
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


def python_blocks():
    """``[(line, marker, code, expected output or None)]`` of the README's python blocks."""
    text = README.read_text(encoding="utf-8")
    fences = list(FENCE.finditer(text))
    found = []
    for k, m in enumerate(fences):
        if m.group("lang") != "python":
            continue
        after = fences[k + 1] if k + 1 < len(fences) else None
        expected = None
        if after is not None and after.group("lang") == "text" \
                and (after.group("marker") or "") == "output":
            expected = after.group("code")
        found.append((text.count("\n", 0, m.start("code")) + 1, m.group("marker") or "",
                      m.group("code"), expected))
    return found


PYTHON = python_blocks()
CHECKER = doctest.OutputChecker()
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """The shared namespace, run from a scratch directory (the tour saves a model)."""
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("readme"))
    import cytorch
    from cytorch.layers import base
    backend = cytorch.get_backend()
    # automatic layer names count per process ('conv2d', 'conv2d_1', ...) and the summaries
    # shown in the README are those of a fresh session: start the counts afresh
    counters = dict(base._name_counters)
    base._name_counters.clear()
    state = {"namespace": {"__name__": "__readme__"}, "failed": None}
    try:
        yield state
    finally:
        os.chdir(cwd)
        cytorch.backend(backend)
        base._name_counters.clear()
        base._name_counters.update(counters)


def test_the_readme_has_python_examples():
    assert len(PYTHON) >= 5


@pytest.mark.parametrize("line, marker, code, expected", PYTHON,
                         ids=[f"line{b[0]}" for b in PYTHON])
def test_python_block_runs(session, line, marker, code, expected):
    if marker == "skip-test":
        pytest.skip("marked <!-- skip-test --> in the README")
    if marker.startswith("requires:"):
        module = marker.split(":", 1)[1].strip()
        if importlib.util.find_spec(module.split(".")[0]) is None:
            pytest.skip(f"needs {module}, not installed")
    if session["failed"] is not None:
        pytest.skip(f"the block at line {session['failed']} failed; later blocks build on it")
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(code, f"README.md:{line}", "exec"), session["namespace"])
    except BaseException:
        session["failed"] = line
        raise
    got = printed.getvalue()
    if expected is None:
        assert got == "", (f"the block at README.md:{line} prints, but no ```text block marked "
                           f"<!-- output --> follows it to show what:\n{got}")
    elif not CHECKER.check_output(expected, got, FLAGS):
        example = doctest.Example(code, expected)
        raise AssertionError(f"README.md:{line} prints something else than the README shows:\n"
                             + CHECKER.output_difference(example, got, FLAGS))


def test_every_output_block_belongs_to_a_python_block():
    text = README.read_text(encoding="utf-8")
    shown = sum(1 for m in FENCE.finditer(text) if (m.group("marker") or "") == "output")
    assert shown == sum(1 for block in PYTHON if block[3] is not None) >= 5


def test_the_ci_runs_the_readme_test_command_verbatim():
    commands = [code.strip() for _, _, code in blocks("bash")][:2]
    assert "cytorch train" in commands[0]
    assert "pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert commands[1] in ci.splitlines()
