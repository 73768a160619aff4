"""Finding layers by name through the ``cytorch.layers`` entry-point group.

cytorch's own ``pyproject.toml`` registers its built-in layers exactly as a third-party plugin
registers its own::

    [project.entry-points."cytorch.layers"]
    conv2d = "cytorch.layers.conv:Conv2D"

Discovery happens once, on first use, in two steps (``refresh()`` starts over):

1. *found*: every entry point of the group is read from the installed distributions' metadata
   (cheap: nothing is imported);
2. *loaded*: each is imported, in name order.  A plugin whose import fails, or whose object is
   not a ``cytorch.Layer`` subclass, is skipped with a ``PluginWarning`` naming it as
   ``distribution[name]`` and giving the original error; everything else keeps working.

A name claimed by two distributions is ambiguous: looking it up raises ``RegistryError`` naming
both (other names still work).  An unknown name raises ``KeyError`` listing the known names and
the closest match.

>>> from cytorch import registry
>>> registry.get("conv2d").__name__
'Conv2D'
>>> cls, distribution = registry.available()["max_pool2d"]
>>> cls.__name__, distribution
('MaxPooling2D', 'cytorch-edu')
"""
import difflib
import importlib.metadata
import warnings
from dataclasses import dataclass
from typing import Optional

__all__ = ["GROUP", "RegistryError", "PluginWarning", "LayerEntry", "Registry", "discover",
           "available", "get", "name_of", "refresh"]

GROUP = "cytorch.layers"
UNKNOWN_DISTRIBUTION = "<unknown distribution>"


class RegistryError(ValueError):
    """A layer name is claimed by two distributions, or its plugin failed to load."""


class PluginWarning(RuntimeWarning):
    """A plugin was skipped because it could not be loaded."""


@dataclass(frozen=True)
class LayerEntry:
    """One entry point of the group, after loading: what ``cytorch layers`` prints.

    ``cls`` is the loaded class, or None when loading failed (then ``error`` says why);
    ``conflict`` names the other distributions that claim the same name.
    """

    name: str
    value: str                       # "module:attr", as written in the entry point
    distribution: str
    version: Optional[str]
    cls: Optional[type] = None
    error: Optional[str] = None
    conflict: tuple = ()

    @property
    def label(self):
        """``distribution[name]``, the way messages name a plugin."""
        return f"{self.distribution}[{self.name}]"

    @property
    def ok(self):
        return self.cls is not None and not self.conflict


def _entry_points():
    """The group's entry points from the installed metadata (tests replace this function)."""
    return importlib.metadata.entry_points(group=GROUP)


def _distribution_of(ep):
    """(name, version) of the distribution declaring ``ep``; ``ep.dist`` is None for entry
    points made by hand."""
    dist = getattr(ep, "dist", None)
    if dist is None:
        return UNKNOWN_DISTRIBUTION, None
    try:
        return dist.metadata["Name"] or UNKNOWN_DISTRIBUTION, dist.version
    except Exception:  # metadata that cannot be read must not break discovery
        return getattr(dist, "name", None) or UNKNOWN_DISTRIBUTION, None


def _check_layer_class(ep, obj):
    """None if ``obj``, loaded from ``ep``, is a ``cytorch.Layer`` subclass, else why not."""
    from .layers.base import Layer
    if not (isinstance(obj, type) and issubclass(obj, Layer)):
        what = obj.__name__ if isinstance(obj, type) else type(obj).__name__
        return (f"{ep.value} is not a cytorch.Layer subclass (got "
                f"{'class ' if isinstance(obj, type) else 'a '}{what}); "
                f"entry points of {GROUP!r} must name Layer subclasses")
    return None


def _load(ep, check):
    """(object, None) or (None, error message) for one entry point; ``check(ep, obj)`` says
    what is wrong with the object loaded, or None."""
    try:
        obj = ep.load()
    except Exception as exc:  # any import-time failure of a third-party module
        return None, f"{type(exc).__name__}: {exc}"
    error = check(ep, obj)
    return (None, error) if error is not None else (obj, None)


class Registry:
    """The entry points of ``group``, found and loaded once (see the module docstring).

    ``entry_points`` is a callable returning entry points; by default this module's
    ``_entry_points`` (looked up at call time, so tests may monkeypatch it).  ``check(ep,
    obj)`` returns why a loaded object is unfit for the group, or None (by default: it must be
    a ``Layer`` subclass); ``cytorch.export`` reuses this class for its converter group.
    """

    def __init__(self, entry_points=None, group=GROUP, check=None):
        self._entry_points = entry_points
        self.group = group
        self._check = check or _check_layer_class
        self._entries = None

    def refresh(self):
        """Forget what was found, so the next use looks again (after installing a plugin)."""
        self._entries = None

    def discover(self):
        """Every entry point of the group as ``LayerEntry``, sorted by name then distribution.

        Loads them on the first call (warning about each plugin that fails) and caches the
        result; never raises for a broken or conflicting plugin: it records it."""
        if self._entries is None:
            self._entries = self._find_and_load()
        return list(self._entries)

    def _find_and_load(self):
        source = self._entry_points or _entry_points
        found = {}
        for ep in source():  # 1. found
            if getattr(ep, "group", self.group) != self.group:
                continue
            distribution, version = _distribution_of(ep)
            # the same distribution seen twice (e.g. on two sys.path entries) counts once
            found.setdefault((ep.name, distribution), (ep, version))
        claims = {}
        for name, distribution in found:
            claims.setdefault(name, []).append(distribution)
        entries = []
        for (name, distribution), (ep, version) in sorted(found.items()):  # 2. loaded
            label = f"{distribution}[{name}]"
            cls, error = _load(ep, self._check)
            if error is not None:
                warnings.warn(f"skipping {self.group} plugin {label} ({ep.value}): {error}",
                              PluginWarning, stacklevel=2)
            others = tuple(d for d in claims[name] if d != distribution)
            entries.append(LayerEntry(name, ep.value, distribution, version, cls, error,
                                      others))
        return entries

    def available(self):
        """``{name: (class, distribution)}`` of every loadable layer, sorted by name.

        Raises ``RegistryError`` if a name is claimed by two distributions."""
        result = {}
        for entry in self.discover():
            if entry.conflict:
                raise self._conflict_error(entry)
            if entry.cls is not None:
                result[entry.name] = (entry.cls, entry.distribution)
        return result

    def get(self, name):
        """The layer class registered as ``name``.

        A class name such as ``"Conv2D"`` is accepted too when exactly one entry's class has
        it.  Unknown names raise ``KeyError`` with the known names and the closest match;
        an ambiguous name or a plugin that failed to load raises ``RegistryError``."""
        if not isinstance(name, str):
            raise TypeError(f"layer name must be a str such as 'conv2d', got "
                            f"{type(name).__name__}: {name!r}")
        entries = self.discover()
        matches = [e for e in entries if e.name == name] or \
                  [e for e in entries if e.cls is not None and e.cls.__name__ == name]
        if not matches:
            known = sorted({e.name for e in entries})
            close = difflib.get_close_matches(name.lower(), known, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise KeyError(f"no layer named {name!r} in entry-point group {self.group!r}"
                           f"{hint}; known: {', '.join(known) or '(none)'}; a plugin's "
                           f"layer needs that plugin installed")
        entry = matches[0]
        if entry.conflict or len(matches) > 1:
            raise self._conflict_error(entry, matches)
        if entry.cls is None:
            raise RegistryError(f"layer {name!r} is provided by {entry.label}, which failed "
                                f"to load: {entry.error}")
        return entry.cls

    def name_of(self, cls):
        """The entry-point name under which ``cls`` is registered (what a saved model
        records), or None.  Raises ``RegistryError`` when every name of ``cls`` is claimed by
        two distributions (names other classes hold do not matter)."""
        contested = None
        for entry in self.discover():
            if entry.cls is cls:
                if not entry.conflict:
                    return entry.name
                contested = contested or entry
        if contested is not None:
            raise self._conflict_error(contested)
        return None

    def _conflict_error(self, entry, matches=None):
        if matches and len(matches) > 1 and not entry.conflict:
            labels = [m.label for m in matches]
            return RegistryError(f"layer class name {entry.cls.__name__!r} is ambiguous: "
                                 f"{' and '.join(labels)}; use the entry-point name")
        labels = [entry.label] + [f"{d}[{entry.name}]" for d in entry.conflict]
        return RegistryError(f"layer name {entry.name!r} is claimed by two distributions: "
                             f"{' and '.join(labels)}; uninstall one of them")


_default = Registry()


def discover():
    """Every entry point of ``cytorch.layers`` with its distribution, version, class or load
    error (see ``LayerEntry``); what ``cytorch layers`` prints."""
    return _default.discover()


def available():
    """``{name: (class, distribution)}`` of every installed layer, sorted by name."""
    return _default.available()


def get(name):
    """The layer class registered as ``name`` (e.g. ``"conv2d"``)."""
    return _default.get(name)


def name_of(cls):
    """The entry-point name of a layer class, or None if it is not registered (RegistryError
    if its name is claimed by two distributions)."""
    return _default.name_of(cls)


def refresh():
    """Look for entry points again on next use (e.g. after ``pip install`` of a plugin)."""
    _default.refresh()
