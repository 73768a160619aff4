"""Process-wide switches: which twin runs (compiled or NumPy reference) and how many threads.

>>> import cytorch
>>> with cytorch.backend("reference"):
...     cytorch.get_backend()
'reference'
>>> cytorch.get_backend()
'compiled'
"""
import os

_BACKENDS = ("compiled", "reference")
_state = {"backend": "compiled", "num_threads": None}


def get_backend():
    """The backend every layer and ``cytorch.functional`` call uses now."""
    return _state["backend"]


class backend:
    """Switch every kernel between the compiled modules and their NumPy twins.

    Works as a setter, ``cytorch.backend("reference")``, and as a context manager that
    restores the previous backend on exit, ``with cytorch.backend("reference"): ...``.
    """

    def __init__(self, name):
        if name not in _BACKENDS:
            raise ValueError(f"backend must be one of {_BACKENDS}, got {name!r}")
        self.previous = _state["backend"]
        self.name = name
        _state["backend"] = name

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _state["backend"] = self.previous
        return False

    def __repr__(self):
        return f"cytorch.backend({self.name!r})"


def get_num_threads():
    """Threads the compiled kernels may use: ``set_num_threads``, else CYTORCH_NUM_THREADS,
    else OMP_NUM_THREADS, else every core this process may run on."""
    n = _state["num_threads"]
    if n is not None:
        return n
    for var in ("CYTORCH_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_num_threads(n):
    """Set how many threads the compiled kernels use (``None`` restores the default)."""
    if n is not None:
        if int(n) != n or n < 1:
            raise ValueError(f"num_threads must be a positive int or None, got {n!r}")
        n = int(n)
    _state["num_threads"] = n
