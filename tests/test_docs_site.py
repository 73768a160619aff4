"""The documentation site's own machinery (the full build runs in CI: bash .ci/docs.sh PYTHON).

Here: the built-site link checker finds what it must, the API reference covers every public
module, and every example is fit for the sphinx-gallery (a title, no use of its docstring).
"""
import ast
import importlib.util
import inspect
import re
from pathlib import Path

import pytest

import cytorch

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def load_checker():
    spec = importlib.util.spec_from_file_location("check_site", DOCS / "check_site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_link_checker_finds_missing_pages_and_anchors(tmp_path):
    (tmp_path / "api").mkdir()
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "style.css").write_text("")
    (tmp_path / "_static" / "macros.html").write_text('<a href="{{ pathto(x) }}">')
    (tmp_path / "index.html").write_text(
        '<link href="_static/style.css?digest=1"><a href="api/a.html#fit">ok</a>'
        '<a href="api/a.html#nope">bad anchor</a><a href="gone.html">missing</a>'
        '<a href="https://example.org/x">external</a><a href="#top" id="top">self</a>'
        '<img src="api/">')
    (tmp_path / "api" / "a.html").write_text('<dt id="fit">fit</dt>')
    (tmp_path / "api" / "index.html").write_text('<a href="../index.html#top">up</a>')
    pages, problems = load_checker().check_links(str(tmp_path))
    assert pages == 3
    assert sorted(problems) == [
        "index.html: <a> 'api/a.html#nope': no id 'nope' on api/a.html",
        "index.html: <a> 'gone.html': no such file"]


def test_the_checker_fails_without_a_built_site(tmp_path, capsys):
    assert load_checker().main([str(tmp_path)]) == 1
    assert "no index.html" in capsys.readouterr().err


def api_sections():
    tree = ast.parse((DOCS / "conf.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == "API_SECTIONS":
            return [name for name, _ in ast.literal_eval(node.value)]
    raise AssertionError("docs/conf.py has no API_SECTIONS")


def test_the_api_reference_covers_every_public_module():
    sections = api_sections()
    modules = [f"cytorch.{name}" for name in cytorch.__all__
               if inspect.ismodule(getattr(cytorch, name))]
    assert sections[0] == "cytorch"
    assert sorted(set(modules) - set(sections)) == []


EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_is_ready_for_the_gallery(path):
    source = path.read_text(encoding="utf-8")
    docstring = ast.get_docstring(ast.parse(source), clean=False)
    # sphinx-gallery takes the title from an underlined first line ...
    assert re.match(r"\n(.+)\n(=+)\n", docstring), f"{path.name}: no rst title"
    title, underline = docstring.split("\n")[1:3]
    assert len(underline) == len(title)
    # ... and runs the code without the docstring, as __main__, then offers it as a notebook
    assert "__doc__" not in source and "cytorch._" not in source
    assert "sys.exit(" not in source  # SystemExit(0) is an error in the gallery and a notebook
    assert (ROOT / "examples" / "README.txt").exists()
