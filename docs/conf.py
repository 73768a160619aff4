"""Sphinx configuration of cytorch's documentation site.

Build it (warnings are errors, as in CI) from the repository root with::

    python -m pip install -e ".[docs]"
    python -m sphinx -W --keep-going -b html docs docs/_build/html

or ``bash .ci/docs.sh PYTHON``, which also checks the built site's links and looks at a page
in a headless browser.  The API reference is generated from the docstrings (numpydoc), the
gallery from ``examples/`` (sphinx-gallery: each script is run, its output and pictures
captured, and offered as a notebook to download).
"""
import os
import sys
import tempfile
from pathlib import Path

import cytorch

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS))  # the gallery's picture scraper

project = "cytorch"
author = "the cytorch authors"
copyright = "cytorch authors, BSD-3-Clause"
release = version = cytorch.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "auto_examples/*.json", "auto_examples/*.md5"]
templates_path = ["_templates"]

# -- API reference: autosummary pages, numpydoc docstrings -----------------------------------------
#: the sections of the API reference: every public module named in ``cytorch.__all__``, in the
#: order a student meets them, each with the names of its ``__all__`` (or, without one, its
#: public functions): api.rst is written from these at every build, so a name added to an
#: ``__all__`` is documented without editing anything here
API_SECTIONS = [
    ("cytorch", "The top level: models, layers' base class, the backend switch, seeds, threads."),
    ("cytorch.layers", "Layers (Keras names and arguments) and the layer registry."),
    ("cytorch.losses", "Losses."),
    ("cytorch.metrics", "Metrics that ``fit`` and ``evaluate`` report, by their Keras names."),
    ("cytorch.optimizers", "Optimizers (Keras 3 formulas and defaults)."),
    ("cytorch.callbacks", "Callbacks that ``fit`` runs, and the progress line."),
    ("cytorch.initializers", "Weight initializers."),
    ("cytorch.activations", "Activation functions and their derivatives."),
    ("cytorch.models", "Preset networks."),
    ("cytorch.datasets", "Data sets: nothing is downloaded."),
    ("cytorch.functional", "The kernels' front door: validate, allocate, call the compiled "
                           "kernel (or its twin)."),
    ("cytorch.reference", "The NumPy twin of every compiled kernel, written to be read."),
    ("cytorch.testing", "The conformance checks every layer passes."),
    ("cytorch.checks", "The input checks layers use, for plugin authors."),
    ("cytorch.registry", "Layer discovery through the ``cytorch.layers`` entry-point group."),
    ("cytorch.export", "ONNX export (needs the ``onnx`` extra): ``to_onnx`` and the converters' "
                       "API for plugins."),
    ("cytorch.viz", "Pictures (needs matplotlib)."),
    ("cytorch.explain", "What a trained network looks at: gradients, saliency, Grad-CAM."),
    ("cytorch.course", "The notebooks' exercises."),
]


def public_names(module):
    """The names a module documents: its ``__all__`` less the submodules listed there, or,
    without ``__all__``, the public functions and classes it defines."""
    import inspect
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, v in vars(module).items() if not n.startswith("_")
                 and (inspect.isfunction(v) or inspect.isclass(v))
                 and v.__module__ == module.__name__]
    return [n for n in names if not inspect.ismodule(getattr(module, n))]


def write_api_page():
    import importlib
    import shutil
    # autosummary writes a page per name into generated/: start afresh, so a name taken out
    # of an __all__ leaves no orphan page behind (an error under -W)
    shutil.rmtree(DOCS / "generated", ignore_errors=True)
    lines = [".. This page is written by conf.py at every build: do not edit it.", "",
             "API reference", "=============", "",
             "Every public name of cytorch, generated from its docstring.", ""]
    documented = {}  # id(object) -> the name it is documented under (once: aliases link)
    for name, intro in API_SECTIONS:
        module = importlib.import_module(name)
        lines += [f"``{name}``", "-" * (len(name) + 4), "", intro, "",
                  f".. automodule:: {name}", "   :no-members:", "",
                  f".. currentmodule:: {name}", "", ".. autosummary::", "   :toctree: generated",
                  "   :nosignatures:", ""]
        aliases = []
        for n in public_names(module):
            obj = getattr(module, n)
            key = id(obj) if callable(obj) else (name, n)
            if key in documented:
                aliases.append(f"``{n}`` (:obj:`{documented[key]}`)")
            else:
                documented[key] = f"{name}.{n}"
                lines.append(f"   {n}")
        lines.append("")
        if aliases:
            lines += [f"Also here, documented above: {', '.join(aliases)}.", ""]
    text = "\n".join(lines)
    path = DOCS / "api.rst"
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


write_api_page()
autosummary_generate = True
autosummary_ignore_module_all = False  # a module's public names are its __all__
autodoc_default_options = {"members": False}
numpydoc_show_class_members = False     # the class template lists them, once
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
# numpydoc's own docstring checks, as scikit-learn runs them: a section it cannot parse, a
# parameter documented twice, a misspelt section name... are warnings, and -W makes them errors
numpydoc_validation_checks = {"GL06", "GL07", "GL09", "GL10", "PR06", "RT02", "YD01"}

intersphinx_mapping = {}
# sphinx-gallery's configuration holds functions (the per-example arguments, the scraper):
# Sphinx cannot pickle it to decide whether to rebuild, and says so; it then rebuilds all
suppress_warnings = ["config.cache"]  # no network in CI: links to Python/NumPy stay plain text

# -- Markdown pages (the plugin guide, README sections) --------------------------------------------
myst_heading_anchors = 3

# -- The gallery of examples/ ----------------------------------------------------------------------
#: where examples/visualize.py writes its PNGs during the build; gallery_pictures scrapes them
PICTURES = tempfile.mkdtemp(prefix="cytorch-gallery-")


def _argv(gallery_conf, script_vars):
    """The command-line arguments each example runs with in the gallery."""
    name = os.path.basename(script_vars["src_file"])
    return [os.path.join(PICTURES, name[:-3])] if name == "visualize.py" else []


from gallery_pictures import PngScraper  # noqa: E402

sphinx_gallery_conf = {
    "examples_dirs": str(DOCS.parent / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r".*\.py",          # run every example, not only plot_*.py
    "reset_argv": _argv,
    "image_scrapers": ("matplotlib", PngScraper(PICTURES)),
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "show_memory": False,
    "plot_gallery": "True",
}

# -- HTML -------------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"cytorch {version}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_prev_next": False,
}
html_static_path = []
html_show_sourcelink = False
