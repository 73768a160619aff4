"""A cytorch layer plugin: the class named by the entry point in ``pyproject.toml``."""
from .scale import Scale

__all__ = ["Scale"]
__version__ = "0.1.0"
