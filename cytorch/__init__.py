"""cytorch: learn how CNNs really work, then use them from scikit-learn.

Compiled Cython kernels (conv2d, pooling, dropout) each have a readable NumPy twin in
``cytorch.reference``; ``cytorch.backend("reference")`` switches every layer to the twins.

>>> import cytorch
>>> from cytorch import layers as L
>>> model = cytorch.Sequential([L.Input((8, 8, 1)), L.Conv2D(4, 3), L.Flatten(), L.Dense(10)])
"""
from ._config import backend, get_backend, get_num_threads, set_num_threads, single_threaded_blas
from .errors import NotBuiltError, ShapeError
from .random import set_seed

# Fail loudly at import, with the build command, when the compiled kernels are missing: cytorch
# never falls back to slow Python silently.
from ._kernels import check_built as _check_built
_check_built()

__version__ = "0.1.0"

# Public names resolved on first use, so that ``import cytorch`` stays quick and the modules
# can be read one at a time.
_LAZY = {
    "functional": ("cytorch.functional", None),
    "reference": ("cytorch.reference", None),
    "layers": ("cytorch.layers", None),
    "Layer": ("cytorch.layers.base", "Layer"),
    "Sequential": ("cytorch.graph", "Sequential"),
    "Model": ("cytorch.graph", "Model"),
    "load_model": ("cytorch.saving", "load_model"),
    "losses": ("cytorch.losses", None),
    "metrics": ("cytorch.metrics", None),
    "optimizers": ("cytorch.optimizers", None),
    "callbacks": ("cytorch.callbacks", None),
    "initializers": ("cytorch.initializers", None),
    "activations": ("cytorch.activations", None),
    "registry": ("cytorch.registry", None),
    "models": ("cytorch.models", None),
    "datasets": ("cytorch.datasets", None),
    "testing": ("cytorch.testing", None),
    "checks": ("cytorch.checks", None),
    "viz": ("cytorch.viz", None),
    "explain": ("cytorch.explain", None),
    "course": ("cytorch.course", None),
    "export": ("cytorch.export", None),
    "CNNClassifier": ("cytorch.estimator", "CNNClassifier"),
    "show_build": ("cytorch.info", "show_build"),
}


def __getattr__(name):
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'cytorch' has no attribute {name!r}") from None
    import importlib
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["backend", "get_backend", "get_num_threads", "set_num_threads",
           "single_threaded_blas", "ShapeError", "NotBuiltError", "set_seed", *_LAZY]
