"""Compiled kernels, one extension module per family (private: use ``cytorch.functional``).

cytorch never falls back to slow Python when a module is missing: ``load`` raises an
ImportError that says how to build the extensions.
"""
import importlib

MODULES = ("_conv", "_pool", "_dropout")

BUILD_HELP = (
    "cytorch's compiled kernels are not built (missing cytorch._kernels.{name}: {error}).\n"
    "Build them from the source checkout with one of:\n"
    "    pip install -e .                      # editable install, builds in place\n"
    "    python setup.py build_ext --inplace   # rebuild after editing a .pyx\n"
    "A C compiler (gcc or clang) and the Python headers are needed.")


def load(name):
    """Import ``cytorch._kernels.<name>`` or raise a NotBuiltError with the build command."""
    from ..errors import NotBuiltError
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ImportError as exc:
        raise NotBuiltError(BUILD_HELP.format(name=name, error=exc)) from exc


def check_built():
    """Import every kernel module (called when cytorch is imported)."""
    return {name: load(name) for name in MODULES}
