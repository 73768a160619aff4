"""Plugins, examples, docs and notebooks use only cytorch's public names.

They are what a layer author or a student copies from: a ``cytorch._*`` module or a private
``_name`` there is free to change under them, so none may appear.  (The plugins' own private
modules, e.g. ``cytorch_locally_connected._lc``, are theirs to use.)
"""
import ast
import doctest
import json
import pathlib
import re

import numpy as np
import pytest

import cytorch
import cytorch.checks

ROOT = pathlib.Path(__file__).resolve().parents[1]
FOLDERS = ("plugins", "examples", "docs", "notebooks")
SUFFIXES = {".py", ".pyx", ".pxd", ".md", ".rst", ".txt", ".toml", ".cfg", ".ipynb"}

# ``cytorch._x`` or ``cytorch.mod._x`` (dunders such as ``cytorch.__version__`` are public)
_PRIVATE_PATH = re.compile(r"\bcytorch(?:\.[A-Za-z]\w*)*\._(?!_)\w+")


def _files():
    for folder in FOLDERS:
        base = ROOT / folder
        if base.is_dir():
            yield from (p for p in sorted(base.rglob("*"))
                        if p.suffix in SUFFIXES and p.is_file()
                        and not any(part.startswith(".") or part in ("build", "__pycache__")
                                    or part.endswith(".egg-info") for part in p.parts))


def _python_sources(path):
    """The Python code of a file: the file itself, or a notebook's code cells."""
    if path.suffix == ".py":
        return [path.read_text()]
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        return ["\n".join(line for line in "".join(c["source"]).splitlines()
                          if not line.lstrip().startswith(("%", "!")))
                for c in cells if c["cell_type"] == "code"]
    return []


def private_names(path):
    """Every private cytorch name a file mentions: ``cytorch._x`` paths in any text, and in
    Python code ``from cytorch... import _x`` too."""
    text = path.read_text()
    found = set(_PRIVATE_PATH.findall(text))
    for source in _python_sources(path):
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue   # a notebook cell meant to fail; the text scan above still covers it
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                    and node.module.split(".")[0] == "cytorch":
                found |= {f"{node.module}.{a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")}
    return found


def test_plugins_examples_docs_and_notebooks_use_only_public_names():
    files = list(_files())
    assert len(files) > 10   # the folders are there and were read
    used = {str(p.relative_to(ROOT)): sorted(names) for p in files
            if (names := private_names(p))}
    assert not used, (f"private cytorch names in files users copy from (use cytorch.checks, "
                      f"cytorch.testing, cytorch.functional ... instead): {used}")


@pytest.mark.parametrize("line, names", [
    ("from cytorch._shapes import as_pair", {"cytorch._shapes"}),
    ("import cytorch._kernels._conv", {"cytorch._kernels"}),
    ("from cytorch.functional import (as_batch,\n    _conv_args)",
     {"cytorch.functional._conv_args"}),
    ("x = cytorch.functional._kernel('_conv')", {"cytorch.functional._kernel"}),
    ("See `cytorch._checks.conv_args`.", {"cytorch._checks"}),
    ("from cytorch_locally_connected import _lc\nprint(cytorch.__version__)", set()),
    ("from cytorch.checks import as_input, window_output_shape", set()),
])
def test_the_scan_finds_private_names_and_only_those(tmp_path, line, names):
    path = tmp_path / "example.py"
    path.write_text(line)
    assert private_names(path) == names


def test_the_public_checks_module_documents_what_it_exports():
    for name in cytorch.checks.__all__:
        doc = getattr(cytorch.checks, name).__doc__
        assert doc and len(doc.split()) >= 8, f"cytorch.checks.{name} needs a docstring"
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for test in doctest.DocTestFinder().find(cytorch.checks, globs={"np": np}):
        runner.run(test)
    assert runner.failures == 0
