"""``cytorch new-plugin NAME``: write a ready layer-plugin distribution from the template.

The template ships inside cytorch as package data (``cytorch/plugin_template/``), so the
command works wherever cytorch is installed, not only in a checkout.  In the manner of
Django's ``startapp``, its files end in ``-tpl`` (neither Python, pytest nor setuptools take
them for code) and hold ``{{placeholders}}``, rendered in file contents and file paths alike:

==================  ================  ==============================================
placeholder         ``gain``          where it is used
==================  ================  ==============================================
``distribution``    ``cytorch-gain``  ``pip install``, the metadata, ``cytorch layers``
``package``         ``cytorch_gain``  ``import cytorch_gain``
``entry_point``     ``gain``          ``from_spec([("gain", {})])``, saved models
``class_name``      ``Gain``          the layer class
``module``          ``gain``          ``cytorch_gain/gain.py``, ``tests/test_gain.py``
==================  ================  ==============================================

>>> names = plugin_names("my-gain")
>>> names.distribution, names.package, names.entry_point, names.class_name
('cytorch-my-gain', 'cytorch_my_gain', 'my_gain', 'MyGain')
"""
import importlib.resources
import importlib.util
import keyword
import os
import re
import secrets
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["PluginNames", "plugin_names", "new_plugin", "template_files"]

TEMPLATE = "plugin_template"
SUFFIX = "-tpl"
PREFIX = "cytorch-"
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_NAME = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")


@dataclass(frozen=True)
class PluginNames:
    """Every name a plugin has, derived from one (see the module docstring)."""

    distribution: str
    package: str
    entry_point: str
    class_name: str

    @property
    def module(self):
        """The layer's module (file) inside the package: the entry-point name."""
        return self.entry_point

    def placeholders(self):
        return {**asdict(self), "module": self.module}


def plugin_names(name, class_name=None):
    """The names of the plugin ``name`` (``"gain"``, ``"my-gain"`` or ``"cytorch-gain"``).

    ``class_name`` defaults to the words of ``name`` in CamelCase (``my-gain`` -> ``MyGain``).
    Raises ``ValueError`` naming the argument when a name cannot be used."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a string such as 'gain', got {type(name).__name__}")
    base = name[len(PREFIX):] if name.replace("_", "-").startswith(PREFIX) else name
    if not _NAME.fullmatch(base):
        raise ValueError(f"name must be lowercase letters and digits, words separated by '-' "
                         f"or '_', starting with a letter (e.g. 'gain', 'my-gain'), got "
                         f"{name!r}")
    words = re.split(r"[-_]", base)
    entry_point = "_".join(words)
    if keyword.iskeyword(entry_point):
        raise ValueError(f"name {name!r} gives the module name {entry_point!r}, a Python "
                         f"keyword that cannot be imported; choose another name")
    if class_name is None:
        class_name = "".join(w[:1].upper() + w[1:] for w in words)
    elif not isinstance(class_name, str) or not class_name.isidentifier() \
            or keyword.iskeyword(class_name) or not class_name.isascii():
        raise ValueError(f"class_name must be a Python identifier such as 'Gain', got "
                         f"{class_name!r}")
    return PluginNames(distribution=PREFIX + "-".join(words),
                       package="cytorch_" + entry_point, entry_point=entry_point,
                       class_name=class_name)


def template_files():
    """``[(relative path, text)]`` of the template, placeholders not yet rendered."""
    root = importlib.resources.files("cytorch") / TEMPLATE
    files = []

    def walk(folder, parts):
        for item in sorted(folder.iterdir(), key=lambda t: t.name):
            if item.is_dir():
                walk(item, parts + [item.name])
            elif item.name.endswith(SUFFIX):
                files.append(("/".join(parts + [item.name[:-len(SUFFIX)]]),
                              item.read_text(encoding="utf-8")))

    walk(root, [])
    if not files:
        raise FileNotFoundError(f"the plugin template is missing from this installation of "
                                f"cytorch (looked in {root}); reinstall cytorch")
    return files


def _render(text, values, where):
    def substitute(match):
        try:
            return values[match.group(1)]
        except KeyError:
            raise ValueError(f"template {where}: unknown placeholder {match.group(0)} (known: "
                             f"{', '.join(sorted(values))})") from None
    return _PLACEHOLDER.sub(substitute, text)


def _check_free(names):
    """Refuse names that are already taken where the plugin would be installed."""
    from . import registry
    for entry in registry.discover():
        if entry.name == names.entry_point:
            raise ValueError(f"the layer name {names.entry_point!r} is already registered by "
                             f"{entry.distribution}; choose another name (`cytorch layers` "
                             f"lists the names taken)")
    spec = importlib.util.find_spec(names.package)
    if spec is not None:
        where = spec.origin or (list(spec.submodule_search_locations or []) or ["?"])[0]
        raise ValueError(f"a module named {names.package!r} is already importable (from "
                         f"{where}); choose another name")


def new_plugin(name, directory=".", class_name=None):
    """Write the plugin distribution ``name`` into ``directory/<distribution>`` and return its
    path.

    Every name in the template -- distribution, package, module, entry point, class, test
    file, README, conftest -- becomes the plugin's (``plugin_names``).  Nothing is written if
    the folder exists, if an installed layer already has the entry-point name, or if a module
    with the package's name is importable.  The files appear all at once: they are written
    into a temporary folder beside the destination, which is then renamed.

    >>> # path = new_plugin("gain")   # ./cytorch-gain, with the layer Gain registered as "gain"
    """
    names = plugin_names(name, class_name)
    parent = Path(os.fspath(directory))
    if not parent.is_dir():
        raise FileNotFoundError(f"directory {str(parent)!r} does not exist")
    target = parent / names.distribution
    if target.exists():
        raise FileExistsError(f"{str(target)!r} already exists; remove it or choose another "
                              f"name or directory")
    _check_free(names)
    values = names.placeholders()
    # mkdir (not mkdtemp, which makes 0o700 folders) so the folder gets the umask's mode
    staging = parent / f".{names.distribution}.{secrets.token_hex(4)}.tmp"
    staging.mkdir()
    try:
        for relative, text in template_files():
            path = staging / _render(relative, values, relative)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(_render(text, values, relative), encoding="utf-8")
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
