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
from ._shapes import as_pair, window_output_shape
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
def _conv_args(x, w, b, strides, padding, check_finite):
    """Validate conv2d inputs; return ``x, w, b`` (one dtype), ``(sh, sw)``, pads, out shape."""
    x = as_batch(x, "x", check_finite=check_finite)
    w = as_float_array(w, "w", check_finite=check_finite)
    if w.ndim != 4:
        raise ShapeError(f"w must be a 4-D array (kh, kw, C, K), got shape {w.shape}")
    if w.size == 0:
        raise ShapeError(f"w must not be empty, got shape {w.shape}")
    N, H, W, C = x.shape
    kh, kw, C_w, K = w.shape
    if C_w != C:
        raise ShapeError(f"w expects {C_w} input channels (w.shape[2]), "
                         f"x has {C} (x.shape[3])")
    if b is not None:
        b = as_float_array(b, "b", check_finite=check_finite)
        if b.shape != (K,):
            raise ShapeError(f"b must have shape (K,) = ({K},) to match w's {K} filters "
                             f"(w.shape[3]), got shape {b.shape}")
    dtype = common_dtype(x, w, b)
    x, w = x.astype(dtype, copy=False), w.astype(dtype, copy=False)
    b = None if b is None else b.astype(dtype, copy=False)
    sh, sw = as_pair(strides, "strides")
    H_out, W_out, pads = window_output_shape(H, W, kh, kw, sh, sw, padding, what="conv2d")
    return x, w, b, (sh, sw), pads, (N, H_out, W_out, K)


def conv2d_forward(x, w, b=None, strides=1, padding="valid", check_finite=True):
    """2-D convolution of a channels-last batch: ``out[n, i, j, k] = b[k] + sum x_pad * w``.

    Parameters
    ----------
    x : array ``(N, H, W, C)``; float32 or float64 (other real input becomes float32).
    w : array ``(kh, kw, C, K)``: K filters of size ``kh x kw x C``.
    b : array ``(K,)`` or None.
    strides : int or ``(sh, sw)``.
    padding : ``"valid"``, ``"same"``, ``"full"``, an int, ``(ph, pw)`` or
        ``((top, bottom), (left, right))``.
    check_finite : raise ValueError on NaN/inf in the inputs (skip the scan with False).

    Returns
    -------
    out : ``(N, H_out, W_out, K)`` with ``H_out = floor((H + P_top + P_bottom - kh) / sh) + 1``,
        in float64 when x or w is float64, else float32.
    cache : what ``conv2d_backward`` needs (the validated x and w, strides, padding).

    >>> import numpy as np
    >>> out, cache = conv2d_forward(np.ones((2, 7, 7, 1)), np.ones((3, 3, 1, 4)), strides=2)
    >>> out.shape
    (2, 3, 3, 4)
    """
    x, w, b, (sh, sw), pads, out_shape = _conv_args(x, w, b, strides, padding, check_finite)
    if _use_reference():
        pt, pb, pl, pr = pads
        return reference.conv2d_forward(x, w, b, (sh, sw), ((pt, pb), (pl, pr)))
    from ._kernels import load
    out = np.empty(out_shape, dtype=x.dtype)
    bias = b if b is not None else np.zeros(w.shape[3], dtype=x.dtype)
    load("_conv").conv2d_forward(x, w, bias, out, sh, sw, pads[0], pads[2],
                                 get_num_threads())
    cache = {"x": x, "w": w, "has_bias": b is not None, "strides": (sh, sw), "pads": pads}
    return out, cache


def conv2d_backward(dout, cache):
    """Gradients of ``conv2d_forward``: ``(dx, dw, db)`` for ``dout = dL/dout``.

    ``dout`` has the forward output's shape ``(N, H_out, W_out, K)``; with

    ``dw = cols^T @ dout``, ``dx = col2im(dout @ W^T)``, ``db = dout.sum((0, 1, 2))``, where
    ``cols = im2col(x)`` and ``W = w.reshape(kh*kw*C, K)``.  ``db`` is None when the forward
    pass had no bias.  Returned arrays have x's dtype.
    """
    x, w = cache["x"], cache["w"]
    (sh, sw), pads = cache["strides"], cache["pads"]
    pt, pb, pl, pr = pads
    N, H, W, C = x.shape
    kh, kw, _, K = w.shape
    expected = (N, (H + pt + pb - kh) // sh + 1, (W + pl + pr - kw) // sw + 1, K)
    dout = as_float_array(dout, "dout", dtype=x.dtype)
    if dout.shape != expected:
        raise ShapeError(f"dout must have the forward output's shape {expected}, "
                         f"got {dout.shape}")
    if _use_reference():
        return reference.conv2d_backward(dout, cache)
    from ._kernels import load
    dx = np.zeros_like(x)
    dw = np.empty_like(w)
    db = np.empty(K, dtype=x.dtype)
    load("_conv").conv2d_backward(dout, x, w, dx, dw, db, sh, sw, pt, pl, get_num_threads())
    return dx, dw, (db if cache["has_bias"] else None)


# ===============================================================================================
# pooling and dropout  (section owned by the pooling/dropout kernel work)
# ===============================================================================================
