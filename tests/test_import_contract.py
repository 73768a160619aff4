"""The layering of cytorch's bottom modules, checked by reading their import statements.

From the bottom up:

    errors, _shapes, _config      (no cytorch imports but each other)
    _kernels                      compiled kernels; may use errors and _config
    _checks                       validators, per-family checks, cache builders (_kernels for
                                  the compiled NaN/inf scan)
    reference                     the NumPy twins: NumPy and _checks, nothing else
    functional                    the front door: _checks, reference, _kernels, _config
    checks                        public: _checks's validators and the layers' input checks

None of them imports anything above (layers, graph, training, estimator, ...), not even inside
a function, so each can be read and tested on its own.  (import-linter's "layers" contract
says the same; this test needs no dependency.)
"""
import ast
import pathlib
import re
import subprocess
import sys

import pytest

import cytorch

PACKAGE = pathlib.Path(cytorch.__file__).parent

# module -> the cytorch modules it may import (a trailing ".*" allows a whole package)
ALLOWED = {
    "cytorch.errors": set(),
    "cytorch._shapes": {"cytorch.errors"},
    "cytorch._config": set(),
    "cytorch._kernels": {"cytorch._kernels.*", "cytorch.errors", "cytorch._config"},
    # _kernels for the compiled all-finite scan (_kernels/_arrays.pyx): it sits below _checks
    "cytorch._checks": {"cytorch._shapes", "cytorch.errors", "cytorch._kernels"},
    "cytorch.reference": {"cytorch._checks"},
    "cytorch.functional": {"cytorch._checks", "cytorch.reference", "cytorch._kernels",
                           "cytorch._kernels.*", "cytorch._config"},
    # the public face of _checks for layer authors: light, so a plugin importing it pulls in
    # nothing else
    "cytorch.checks": {"cytorch._checks", "cytorch.errors"},
}
# third-party modules the twins may use: they are read by students next to the kernels
REFERENCE_THIRD_PARTY = {"numpy"}


def _sources(module):
    """``(path, text, package)`` of every source file of ``module`` (all files of a package);
    ``package`` is what the file's relative imports start from."""
    path = PACKAGE.joinpath(*module.split(".")[1:])
    if path.is_dir():
        return [(p, p.read_text(), module) for p in sorted(path.iterdir())
                if p.suffix in (".py", ".pyx", ".pxd")]
    path = path.with_suffix(".py")
    return [(path, path.read_text(), module.rpartition(".")[0])]


def _resolve(name, level, package):
    """The absolute name of ``from <level dots><name> import ...`` in a file of ``package``."""
    if not level:
        return name
    parts = package.split(".")
    base = parts[:len(parts) - (level - 1)]
    return ".".join(base + ([name] if name else []))


_CYTHON_IMPORT = re.compile(r"^[ \t]*(?:from[ \t]+(\.*)([\w.]*)[ \t]+c?import[ \t]|"
                            r"c?import[ \t]+([\w.]+))", re.MULTILINE)


def _imports(text, package, cython=False):
    """Every module an import statement of the file names, wherever it stands (inside a
    function too); ``from . import reference`` names ``cytorch`` and ``cytorch.reference``."""
    if cython:   # .pyx / .pxd are no Python: read the import lines
        return [_resolve(name, len(dots), package) if not plain else plain
                for dots, name, plain in _CYTHON_IMPORT.findall(text)]
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module or "", node.level, package)
            found.append(base)
            if node.module is None:   # ``from . import x``: x is a module
                found += [f"{base}.{alias.name}" for alias in node.names]
    return found


def _allowed(target, allowed):
    return any(target == a or (a.endswith(".*") and target.startswith(a[:-1]))
               for a in allowed)


@pytest.mark.parametrize("module", sorted(ALLOWED))
def test_bottom_modules_import_nothing_above_them(module):
    allowed = ALLOWED[module] | {module, module + ".*"}
    wrong = []
    for path, text, package in _sources(module):
        for target in _imports(text, package, cython=path.suffix != ".py"):
            # ``from . import x`` also names the package ``cytorch`` itself: harmless, since
            # its __init__ imports only the bottom (_config, errors, random, _kernels)
            if target.partition(".")[0] == "cytorch" and target != "cytorch" \
                    and not _allowed(target, allowed):
                wrong.append((path.name, target))
    assert not wrong, (f"{module} may import only {sorted(ALLOWED[module]) or 'no cytorch module'}"
                       f" (see this test's docstring), but imports {wrong}")


def test_the_twins_import_only_numpy_and_the_checks():
    path, text, package = _sources("cytorch.reference")[0]
    outside = {t.partition(".")[0] for t in _imports(text, package)} - {"cytorch"}
    assert outside <= REFERENCE_THIRD_PARTY, f"cytorch.reference imports {sorted(outside)}"


def test_the_contract_reads_lazy_and_relative_imports():
    source = ("def f():\n    from .layers import base\n    import cytorch.training\n"
              "from . import graph\nfrom ..errors import ShapeError\n")
    found = set(_imports(source, "cytorch"))
    assert {"cytorch.layers", "cytorch.training", "cytorch.graph"} <= found
    assert _resolve("errors", 2, "cytorch._kernels") == "cytorch.errors"
    assert _imports("from .._config import x\nfrom ._blas cimport gemm\n", "cytorch._kernels",
                    cython=True) == ["cytorch._config", "cytorch._kernels._blas"]


def test_importing_the_twins_loads_nothing_above_them():
    code = ("import sys, cytorch.reference, cytorch._checks\n"
            "above = ['cytorch.functional', 'cytorch.layers', 'cytorch.graph', "
            "'cytorch.training', 'cytorch.estimator']\n"
            "print([m for m in above if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
