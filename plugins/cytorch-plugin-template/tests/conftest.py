"""Make the plugin importable from this folder when it is not installed.

cytorch's own test run collects these tests without installing the template; a copy of the
template that you installed with ``pip install -e .`` imports the installed package instead.
"""
import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("cytorch_plugin_template") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
