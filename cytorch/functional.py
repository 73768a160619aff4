"""The front door to the kernels: validate, allocate, then call the compiled kernel or its twin.

Every function here checks its arguments in Python (rank, channels, dtype, finiteness, shape
arithmetic) before any compiled code runs, and never modifies what it is given.  Layers and
users call these functions; nobody imports ``cytorch._kernels`` directly.

Forward/backward come in pairs::

    out, cache = conv2d_forward(x, w, b, strides=1, padding="valid")
    dx, dw, db = conv2d_backward(dout, cache)

``cytorch.backend("reference")`` makes the same calls run the NumPy twins of
``cytorch.reference`` (same names, same signatures).
"""
import numbers

import numpy as np

from . import reference
from ._config import get_backend, get_num_threads
from .errors import ShapeError

_FLOATS = (np.float32, np.float64)


# -- validation shared by every kernel family ---------------------------------------------------
def as_float_array(a, name, dtype=None, check_finite=True):
    """``a`` as a C-contiguous float32/float64 array (a copy only when needed).

    Integer and bool input becomes float32 (``dtype`` overrides); complex, object and string
    input is rejected; NaN or inf raise ValueError naming ``name`` when ``check_finite``.
    """
    arr = np.asarray(a)
    if arr.dtype.kind in "cOSUVMm":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if dtype is None:
        dtype = arr.dtype if arr.dtype in _FLOATS else np.float32
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if check_finite and not np.isfinite(arr).all():
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s); "
                         f"clean or impute the data first")
    return arr


def as_batch(x, name="x", rank=4, dtype=None, check_finite=True):
    """Validate a batch: ``rank`` dims (4 means ``(N, H, W, C)``), N >= 1, no empty axis."""
    arr = as_float_array(x, name, dtype=dtype, check_finite=check_finite)
    if arr.ndim != rank:
        layout = {4: "(N, H, W, C) channels-last", 2: "(N, C)"}.get(rank, f"{rank}-D")
        hint = ""
        if rank == 4 and arr.ndim == 3:
            hint = "; add a channel axis with x[..., None] for grayscale images"
        raise ShapeError(f"{name} must be a {rank}-D array {layout}, got shape "
                         f"{arr.shape}{hint}")
    if arr.size == 0:
        raise ShapeError(f"{name} must not be empty, got shape {arr.shape}")
    return arr


def common_dtype(*arrays):
    """float64 if any array is float64, else float32."""
    return np.float64 if any(a is not None and a.dtype == np.float64 for a in arrays) \
        else np.float32


def _use_reference():
    return get_backend() == "reference"


# ===============================================================================================
# conv2d  (section owned by the conv kernel work)
# ===============================================================================================


# ===============================================================================================
# pooling and dropout  (section owned by the pooling/dropout kernel work)
# ===============================================================================================
