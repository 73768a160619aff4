"""The bottom layer: every check the kernels' front door and their NumPy twins share.

``cytorch.functional`` (the front door) and ``cytorch.reference`` (the twins) both start each
call here, so a direct call of a twin with bad input fails as clearly as a call through the
front door, and neither has to import the other.  This module imports NumPy and cytorch's own
bottom modules only (``_shapes``, ``errors``, and ``_kernels`` for the compiled NaN/inf scan of
``require_finite``); nothing above it (layers, graph, training) is
ever imported here.  ``tests/test_import_contract.py`` checks that.

What is here, by kind:

* scalars: ``is_int`` / ``check_int`` (the one integer policy: a bool is not an int);
* arrays: ``require_finite``, ``as_array``, ``as_float_array``, ``as_batch``, ``common_dtype``,
  ``check_sample_weight``;
* window arithmetic, from ``cytorch._shapes``: ``as_pair``, ``resolve_padding``,
  ``window_output_shape``, ``output_size``, ``unseen``;
* per kernel family, the argument checks of forward (``conv_args``, ``pool_args``,
  ``global_args``, ``dropout_args``), the ``dout`` checks of backward (``conv_dout``, ...) and
  the builders of the cache dicts that pass from forward to backward (``conv_cache``, ...).
  The compiled path and the twin build the very same cache, so a forward pass on one backend
  can be followed by backward on the other.

The public part, for layer authors, is ``cytorch.checks``.
"""
import numbers

import numpy as np

from ._kernels import load
from ._shapes import (LIMIT, as_pair, is_int, output_size, resolve_padding, unseen,
                      window_output_shape)
from .errors import ShapeError

__all__ = ["ShapeError", "LIMIT", "is_int", "check_int", "require_finite", "as_array",
           "as_float_array", "as_batch", "common_dtype", "check_sample_weight", "as_pair",
           "resolve_padding", "window_output_shape", "output_size", "unseen", "conv_args",
           "conv_dout", "conv_cache", "pool_args", "pool_dout", "pool_cache", "global_args",
           "global_dout", "global_cache", "dropout_args", "dropout_dout", "dropout_cache",
           "check_cache", "check_winner_index_range", "batch_norm_args", "batch_norm_cache",
           "batch_norm_dout", "check_batch_stats", "depthwise_args", "depthwise_cache",
           "depthwise_dout", "CONV_ACTIVATIONS", "conv_activation", "pool_activation"]

_FLOATS = (np.float32, np.float64)
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))   # native byte order
_FINITE_CHUNK = 1 << 22  # values scanned for NaN at a time: the temporary stays at 4 MB


# -- scalars ------------------------------------------------------------------------------------
def _bound(n):
    """How a bound reads in a message: ``2**63`` rather than 9223372036854775808."""
    if n >= 2 ** 16 and n & (n - 1) == 0:
        return f"2**{n.bit_length() - 1}"
    return str(n)


def check_int(value, name, minimum=None, below=None):
    """``value`` as an int, or ValueError naming ``name``, the expected range and ``value``.

    ``minimum`` and ``below`` bound it as ``minimum <= value < below``; the message says
    "a positive int" for ``minimum=1``, "an int >= m" or "an int in [m, b)" otherwise.
    """
    if not is_int(value) or (minimum is not None and value < minimum) \
            or (below is not None and value >= below):
        if below is not None:
            expected = f"an int in [{minimum}, {_bound(below)})"
        elif minimum == 1:
            expected = "a positive int"
        elif minimum is not None:
            expected = f"an int >= {minimum}"
        else:
            expected = "an int"
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return int(value)


# -- arrays -------------------------------------------------------------------------------------
def require_finite(a, name):
    """Raise ValueError naming ``name`` when the array ``a`` holds NaN or inf.

    A contiguous float32 or float64 array is scanned by compiled code (``_kernels/_arrays.pyx``:
    one pass over the bits, no temporary, 2-5x faster than ``np.isfinite``); any other is
    scanned by NumPy ``2**22`` values at a time, so checking a big image set does not build a
    boolean array of its full size.  Integer and bool arrays cannot hold NaN: not scanned.
    """
    if a.dtype.kind not in "fc":
        return
    finite = load("_arrays").scan_finite(a)     # None: an array it does not read
    if finite is None:
        finite = all(np.isfinite(part).all() for part in _chunks(a))
    if finite:
        return
    good = sum(np.count_nonzero(np.isfinite(part)) for part in _chunks(a))
    raise ValueError(f"{name} contains {a.size - good} NaN or infinite value(s); "
                     f"clean or impute the data first")


def _chunks(a):
    """``a``'s values ``2**22`` at a time (the whole of a small array, as it is)."""
    if a.size <= _FINITE_CHUNK:
        yield a
        return
    flat = a.reshape(-1)
    for s in range(0, flat.size, _FINITE_CHUNK):
        yield flat[s:s + _FINITE_CHUNK]


def as_array(a, name):
    """``np.asarray(a)``, with NumPy's message for a ragged sequence replaced by one naming
    ``name``."""
    try:
        return np.asarray(a)
    except ValueError as exc:
        raise ValueError(f"{name} must be an array of numbers with equal-length rows, got a "
                         f"ragged sequence ({exc})") from None


def as_float_array(a, name, dtype=None, check_finite=True):
    """``a`` as a C-contiguous float32/float64 array (a copy only when needed).

    Integer and bool input becomes float32 (``dtype`` overrides); complex, object and string
    input is rejected; NaN or inf raise ValueError naming ``name`` when ``check_finite``.
    """
    if type(a) is np.ndarray and a.dtype in _FLOAT_DTYPES and a.flags.c_contiguous \
            and (dtype is None or a.dtype == dtype):
        arr = a     # as the kernels take it already (what every layer passes): no conversion
    else:
        arr = np.asarray(a)
        if arr.dtype.kind in "cOSUVMm":
            raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
        if dtype is None:
            dtype = arr.dtype if arr.dtype in _FLOATS else np.float32
        arr = np.ascontiguousarray(arr, dtype=dtype)
    if check_finite:
        require_finite(arr, name)
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
    """float64 if any array is float64, else float32 (None entries are skipped)."""
    return np.float64 if any(a is not None and a.dtype == np.float64 for a in arrays) \
        else np.float32


def check_sample_weight(sample_weight, n, name="sample_weight"):
    """``sample_weight`` as a new float64 array of shape ``(n,)``, finite and >= 0.

    None stays None.  The result is always a copy, so a caller may scale it in place.
    """
    if sample_weight is None:
        return None
    w = as_array(sample_weight, name)
    if w.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {w.dtype}")
    if w.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), one weight per sample, "
                         f"got shape {w.shape}")
    w = np.array(w, dtype=np.float64)
    n_bad = n - int(np.count_nonzero(np.isfinite(w)))
    n_neg = int(np.count_nonzero(w < 0))
    if n_bad or n_neg:
        raise ValueError(f"{name} must be finite and >= 0, got {n_bad} NaN or infinite "
                         f"and {n_neg} negative value(s) of {n}")
    return w


# -- caches -------------------------------------------------------------------------------------
def check_cache(cache, kind, what):
    """A pooling cache must come from the forward pass of the same ``kind``."""
    if not isinstance(cache, dict) or cache.get("kind") != kind:
        got = cache.get("kind") if isinstance(cache, dict) else type(cache).__name__
        raise ValueError(f"{what}_backward needs the cache returned by {what}_forward, "
                         f"got a cache of {got!r}")


# -- conv2d -------------------------------------------------------------------------------------
def _conv_operands(x, w, b, check_finite, depthwise=False):
    """Check and convert the operands of conv2d (``w`` is ``(kh, kw, C, K)``, ``b`` is
    ``(K,)``) or, with ``depthwise``, of depthwise_conv2d (``w`` is
    ``(kh, kw, C, depth_multiplier)``, ``b`` is ``(C * depth_multiplier,)``): ``x`` a finite
    batch, ``w`` a non-empty 4-D kernel over x's channels; return ``x, w, b`` in one dtype."""
    x = as_batch(x, "x", check_finite=check_finite)
    w = as_float_array(w, "w", check_finite=check_finite)
    last = "depth_multiplier" if depthwise else "K"
    if w.ndim != 4:
        raise ShapeError(f"w must be a 4-D array (kh, kw, C, {last}), got shape {w.shape}")
    if w.size == 0:
        raise ShapeError(f"w must not be empty, got shape {w.shape}")
    C = x.shape[3]
    C_w, M = w.shape[2:]
    if C_w != C and depthwise:
        raise ShapeError(f"w has {C_w} channels (w.shape[2]), x has {C} (x.shape[3]): a "
                         f"depthwise kernel holds one filter bank per input channel")
    if C_w != C:
        raise ShapeError(f"w expects {C_w} input channels (w.shape[2]), "
                         f"x has {C} (x.shape[3])")
    if b is not None:
        b = as_float_array(b, "b", check_finite=check_finite)
        if depthwise and b.shape != (C * M,):
            raise ShapeError(f"b must have shape (C * depth_multiplier,) = ({C * M},), got "
                             f"shape {b.shape}")
        if not depthwise and b.shape != (M,):
            raise ShapeError(f"b must have shape (K,) = ({M},) to match w's {M} filters "
                             f"(w.shape[3]), got shape {b.shape}")
    if w.dtype == x.dtype and (b is None or b.dtype == x.dtype):
        return x, w, b
    dtype = common_dtype(x, w, b)
    x, w = x.astype(dtype, copy=False), w.astype(dtype, copy=False)
    return x, w, None if b is None else b.astype(dtype, copy=False)


def conv_args(x, w, b, strides, padding, check_finite, dilation_rate=1):
    """Validate conv2d inputs; return ``x, w, b`` (one dtype), ``(sh, sw)``, pads, out shape.

    ``pads`` is ``(top, bottom, left, right)``; the out shape ``(N, H_out, W_out, K)``.  A
    kernel dilated by ``(dh, dw)`` spans ``(kh - 1) * dh + 1`` rows (columns likewise): the
    output size and "same"/"full" padding follow from that extent, as in Keras.
    """
    x, w, b = _conv_operands(x, w, b, check_finite)
    N, H, W, C = x.shape
    kh, kw, _, K = w.shape
    sh, sw = as_pair(strides, "strides")
    dh, dw = as_pair(dilation_rate, "dilation_rate")
    H_out, W_out, pads = window_output_shape(H, W, (kh - 1) * dh + 1, (kw - 1) * dw + 1,
                                             sh, sw, padding, what="conv2d")
    return x, w, b, (sh, sw), pads, (N, H_out, W_out, K)


_CONV_CACHE_KEYS = {"x", "w", "strides", "pads", "has_bias"}

# The activations conv2d applies to its output itself (``activation=``): in the compiled
# kernels, in the pass that writes the output (``cytorch._kernels.EPILOGUES``, the same names).
CONV_ACTIVATIONS = ("linear", "relu", "tanh", "sigmoid", "elu", "leaky_relu", "softplus")


def conv_activation(activation):
    """conv2d's ``activation=`` as a name of ``CONV_ACTIVATIONS`` (None means "linear")."""
    if activation is None:
        return "linear"
    if isinstance(activation, str) and activation.lower() in CONV_ACTIVATIONS:
        return activation.lower()
    raise ValueError(f"activation must be None or one of {', '.join(CONV_ACTIVATIONS)} (the "
                     f"activations conv2d applies itself, with the parameters of Keras's "
                     f"strings; apply any other to its output), got {activation!r}")


def conv_cache(x, w, b, strides, pads, dilation=(1, 1), activation="linear", y=None,
               path=None):
    """What conv2d backward needs: the validated x and w, the geometry, whether b exists, and
    the activation with its output ``y`` (what its derivative reads; None for "linear").
    (``im2col(x)`` is not kept: backward recomputes it, so the cache costs no memory.)
    ``path``: the compiled module the forward pass ran (``cytorch.functional``), which backward
    then runs without asking the rules again; None from the twin (backward asks them)."""
    return {"x": x, "w": w, "has_bias": b is not None, "strides": strides, "pads": pads,
            "dilation": tuple(dilation), "activation": activation,
            "y": None if activation == "linear" else y, "path": path}


def conv_dout(dout, cache, check_finite=True):
    """Validate the ``dout`` and ``cache`` of a conv2d backward; return dout as a contiguous
    array of the forward pass's dtype."""
    if not isinstance(cache, dict) or not _CONV_CACHE_KEYS <= cache.keys():
        got = f"a dict with keys {sorted(map(str, cache))}" if isinstance(cache, dict) \
            else f"{type(cache).__name__} {cache!r:.40}"
        raise ValueError(f"conv2d_backward needs the cache returned by conv2d_forward (a dict "
                         f"with keys {sorted(_CONV_CACHE_KEYS)}), got {got}")
    x, w = cache["x"], cache["w"]
    (sh, sw), (pt, pb, pl, pr) = cache["strides"], cache["pads"]
    dh, dw = cache.get("dilation", (1, 1))
    N, H, W, C = x.shape
    kh, kw, _, K = w.shape
    kh, kw = (kh - 1) * dh + 1, (kw - 1) * dw + 1    # the dilated kernel's extent
    expected = (N, (H + pt + pb - kh) // sh + 1, (W + pl + pr - kw) // sw + 1, K)
    dout = as_float_array(dout, "dout", dtype=x.dtype, check_finite=check_finite)
    if dout.shape != expected:
        raise ShapeError(f"dout must have the forward output's shape {expected}, "
                         f"got {dout.shape}")
    activation = cache.get("activation", "linear")
    y = cache.get("y")
    if activation != "linear" and (not isinstance(y, np.ndarray) or y.shape != expected
                                   or y.dtype != x.dtype or not y.flags.c_contiguous):
        raise ValueError(f"conv2d_backward: the cache's activation {activation!r} needs its "
                         f"forward output y, a C-contiguous {x.dtype} array of shape "
                         f"{expected}; got {type(y).__name__} "
                         f"{getattr(y, 'shape', '')}")
    return dout


# -- pooling ------------------------------------------------------------------------------------
# Pooling keeps no copy of x: backward needs only the geometry and, for max/min, the flat index
# ``ih * W + iw`` (int32) of each window's winner.

def check_winner_index_range(H, W, what):
    """Max/min pooling records each winner as ``ih * W + iw`` in an int32."""
    if H * W >= 2 ** 31:
        raise ValueError(f"{what}: H * W must be < 2**31 (int32 winner indices), "
                         f"got {H} * {W} = {H * W}")


def pool_args(x, pool_size, strides, padding, check_finite, what):
    """Validate a pooling call; return x, ``(ph, pw)``, ``(sh, sw)``, pads, output shape.

    ``strides=None`` means the window (non-overlapping windows).
    """
    x = as_batch(x, "x", check_finite=check_finite)
    N, H, W, C = x.shape
    ph, pw = as_pair(pool_size, "pool_size")
    sh, sw = (ph, pw) if strides is None else as_pair(strides, "strides")
    H_out, W_out, pads = window_output_shape(H, W, ph, pw, sh, sw, padding, what=what)
    pt, pb, pl, pr = pads
    if max(pt, pb) >= ph or max(pl, pr) >= pw:
        # then some window could lie entirely in the padding and have nothing to pool
        raise ValueError(f"{what}: padding must be smaller than pool_size on every side, so "
                         f"that each window holds a real cell; got padding (top, bottom, left, "
                         f"right) = {pads} for pool_size {(ph, pw)}")
    check_winner_index_range(H, W, what)
    return x, (ph, pw), (sh, sw), pads, (N, H_out, W_out, C)


def pool_activation(activation, what):
    """The activation a max/min pooling call applies to its output: None or "relu".

    Only ReLU: it is monotone, so pooling then ReLU equals ReLU then pooling (the graph pass
    ``relu_after_pooling`` moves a conv's ReLU here, onto 4x fewer values)."""
    if activation is None or activation == "linear":
        return None
    if activation == "relu":
        return "relu"
    raise ValueError(f"{what}: activation must be None, 'linear' or 'relu' (the one that "
                     f"commutes with pooling), got {activation!r}")


def pool_cache(kind, x, pool, strides, pads, argidx=None, activation=None, y=None):
    """What every windowed pooling backward needs: the geometry, x's shape and dtype, and
    (max/min) the flat index of each window's winner, None after a forward that was told no
    backward follows (``need_backward=False``).  x itself is not kept; with an activation
    (relu) the output ``y``, whose ``y > 0`` is the activation's derivative."""
    return {"kind": kind, "x_shape": x.shape, "dtype": x.dtype, "pool_size": pool,
            "strides": strides, "pads": pads, "argidx": argidx, "activation": activation,
            "y": y}


def pool_dout(kind, dout, cache, check_finite=True):
    """Validate the ``dout`` and ``cache`` of a windowed pooling backward; return dout as a
    contiguous array of the forward pass's dtype."""
    what = f"{kind}_pool2d"
    check_cache(cache, kind, what)
    if kind != "avg" and cache["argidx"] is None:
        raise ValueError(f"{what}_backward needs the winners of each window, and this cache "
                         f"comes from {what}_forward(..., need_backward=False), which does "
                         f"not record them: run forward with need_backward=True")
    N, H, W, C = cache["x_shape"]
    (ph, pw), (sh, sw) = cache["pool_size"], cache["strides"]
    pt, pb, pl, pr = cache["pads"]
    expected = (N, (H + pt + pb - ph) // sh + 1, (W + pl + pr - pw) // sw + 1, C)
    dout = as_float_array(dout, "dout", dtype=cache["dtype"], check_finite=check_finite)
    if dout.shape != expected:
        raise ShapeError(f"dout must have the {what} output's shape {expected}, "
                         f"got {dout.shape}")
    return dout


def global_args(kind, x, check_finite):
    """Validate a global pooling call; return x."""
    x = as_batch(x, "x", check_finite=check_finite)
    N, H, W, C = x.shape
    check_winner_index_range(H, W, f"global_{kind}_pool2d")
    return x


def global_cache(kind, x, argidx=None):
    """What global pooling backward needs: x's shape and dtype and (max/min) each winner's
    flat index ``h * W + w``, shape ``(N, C)``."""
    return {"kind": "global_" + kind, "x_shape": x.shape, "dtype": x.dtype, "argidx": argidx}


def global_dout(kind, dout, cache, check_finite=True):
    """Validate the ``dout`` and ``cache`` of a global pooling backward; return dout as a
    contiguous array of the forward pass's dtype."""
    what = f"global_{kind}_pool2d"
    check_cache(cache, "global_" + kind, what)
    N, H, W, C = cache["x_shape"]
    dout = as_float_array(dout, "dout", dtype=cache["dtype"], check_finite=check_finite)
    if dout.shape != (N, C):
        raise ShapeError(f"dout must have the {what} output's shape {(N, C)}, "
                         f"got {dout.shape}")
    return dout


# -- dropout ------------------------------------------------------------------------------------
def dropout_args(x, rate, seed, check_finite):
    """Validate a dropout call; return x, rate (a float), seed (an int)."""
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate < 1:
        raise ValueError(f"rate must be a float in [0, 1), got {rate!r}")
    seed = check_int(seed, "seed", 0, 2 ** 63)
    x = as_float_array(x, "x", check_finite=check_finite)
    if x.size == 0:
        raise ShapeError(f"x must not be empty, got shape {x.shape}")
    return x, float(rate), seed


def dropout_cache(x, mask, scale):
    """What dropout backward needs: the uint8 keep-mask (None when not training), the scale
    ``1 / (1 - rate)``, x's dtype and shape."""
    return {"mask": mask, "scale": scale, "dtype": x.dtype, "shape": x.shape}


def dropout_dout(dout, cache, check_finite=True):
    """Validate the ``dout`` and ``cache`` of a dropout backward; return dout as a contiguous
    array of the forward pass's dtype."""
    if not isinstance(cache, dict) or not {"mask", "shape", "dtype"} <= cache.keys():
        raise ValueError("dropout_backward needs the cache returned by dropout_forward")
    dout = as_float_array(dout, "dout", dtype=cache["dtype"], check_finite=check_finite)
    if dout.shape != cache["shape"]:
        raise ShapeError(f"dout must have the dropout input's shape {cache['shape']}, "
                         f"got {dout.shape}")
    return dout


# -- batch normalization ------------------------------------------------------------------------
def _channel_vector(a, name, C, dtype, check_finite):
    """``a`` as a ``(C,)`` array of ``dtype``, or None."""
    if a is None:
        return None
    a = as_float_array(a, name, dtype=dtype, check_finite=check_finite)
    if a.shape != (C,):
        raise ShapeError(f"{name} must have shape (C,) = ({C},), one value per channel of x "
                         f"(x.shape[-1]), got shape {a.shape}")
    return a


def batch_norm_args(x, gamma, beta, mean, variance, epsilon, check_finite):
    """Validate a batch_norm_forward call; return x, gamma, beta, mean,
    variance (``(C,)`` arrays of x's dtype, or None) and epsilon as a float."""
    x = as_float_array(x, "x", check_finite=check_finite)
    if x.ndim < 2:
        raise ShapeError(f"x must have a batch axis and a channel axis, (N, H, W, C) or (N, C), "
                         f"got shape {x.shape}")
    if x.size == 0:
        raise ShapeError(f"x must not be empty, got shape {x.shape}")
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) \
            or not epsilon > 0 or not np.isfinite(epsilon):
        raise ValueError(f"epsilon must be a positive float (it keeps 1 / sqrt(variance + "
                         f"epsilon) finite), got {epsilon!r}")
    if (mean is None) != (variance is None):
        raise ValueError("give both mean and variance (normalise with them) or neither (use "
                         "the batch's statistics)")
    C = x.shape[-1]
    gamma, beta, mean, variance = (
        _channel_vector(a, name, C, x.dtype, check_finite)
        for a, name in ((gamma, "gamma"), (beta, "beta"), (mean, "mean"),
                        (variance, "variance")))
    if variance is not None and not (variance.astype(np.float64) + epsilon > 0).all():
        bad = np.flatnonzero(~(variance.astype(np.float64) + epsilon > 0))
        raise ValueError(f"variance + epsilon must be > 0 for every channel; channel(s) "
                         f"{bad[:5].tolist()} have variance {variance[bad[:5]].tolist()}")
    return x, gamma, beta, mean, variance, float(epsilon)


def check_batch_stats(mean, var):
    """The batch statistics must be finite: a NaN or inf in them (from NaN/inf in x, or values
    whose squares overflow) would otherwise be folded into the moving averages for good."""
    bad = np.flatnonzero(~(np.isfinite(mean) & np.isfinite(var)))
    if bad.size:
        raise ValueError(f"the batch statistics of channel(s) {bad[:5].tolist()} are not "
                         f"finite (mean {mean[bad[:5]].tolist()}, variance "
                         f"{var[bad[:5]].tolist()}): x holds NaN or inf, or values too large "
                         f"to square")


def batch_norm_cache(x, gamma, beta, mean, var, inv_std, batch_stats):
    """What batch_norm backward needs: the validated x, gamma (or None), whether beta exists,
    the per-channel statistics used (``mean``, ``var``, ``inv_std = 1 / sqrt(var + eps)``, in
    x's dtype) and whether they were the batch's own (``batch_stats``: then they depend on x)."""
    return {"kind": "batch_norm", "x": x, "gamma": gamma, "has_beta": beta is not None,
            "mean": mean, "var": var, "inv_std": inv_std, "batch_stats": batch_stats}


def batch_norm_dout(dout, cache, check_finite=True):
    """Validate the ``dout`` and ``cache`` of a batch_norm backward; return dout as a
    contiguous array of the forward pass's dtype."""
    if not isinstance(cache, dict) or cache.get("kind") != "batch_norm":
        raise ValueError("batch_norm_backward needs the cache returned by batch_norm_forward")
    x = cache["x"]
    dout = as_float_array(dout, "dout", dtype=x.dtype, check_finite=check_finite)
    if dout.shape != x.shape:
        raise ShapeError(f"dout must have the forward output's shape {x.shape}, "
                         f"got {dout.shape}")
    return dout


# -- depthwise conv2d ---------------------------------------------------------------------------
def depthwise_args(x, w, b, strides, padding, check_finite, dilation_rate=1):
    """Validate a depthwise_conv2d call; return ``x, w, b`` (one dtype), ``(sh, sw)``, pads
    ``(top, bottom, left, right)`` and the output shape ``(N, H_out, W_out, C * dm)``.  A
    kernel dilated by ``(dh, dw)`` spans ``(kh - 1) * dh + 1`` rows, as in conv2d."""
    x, w, b = _conv_operands(x, w, b, check_finite, depthwise=True)
    N, H, W, C = x.shape
    kh, kw, _, dm = w.shape
    sh, sw = as_pair(strides, "strides")
    dh, dw = as_pair(dilation_rate, "dilation_rate")
    H_out, W_out, pads = window_output_shape(H, W, (kh - 1) * dh + 1, (kw - 1) * dw + 1,
                                             sh, sw, padding, what="depthwise_conv2d")
    return x, w, b, (sh, sw), pads, (N, H_out, W_out, C * dm)


def depthwise_cache(x, w, b, strides, pads, dilation=(1, 1), activation="linear", y=None):
    """What depthwise_conv2d backward needs (as conv2d's, under its own kind: with the
    activation and its output ``y``, what its derivative reads; None for "linear")."""
    return {"kind": "depthwise_conv2d", "x": x, "w": w, "has_bias": b is not None,
            "strides": strides, "pads": pads, "dilation": tuple(dilation),
            "activation": activation, "y": None if activation == "linear" else y}


def depthwise_dout(dout, cache, check_finite=True):
    """Validate the ``dout`` and ``cache`` of a depthwise_conv2d backward; return dout as a
    contiguous array of the forward pass's dtype."""
    check_cache(cache, "depthwise_conv2d", "depthwise_conv2d")
    x, w = cache["x"], cache["w"]
    (sh, sw), (pt, pb, pl, pr) = cache["strides"], cache["pads"]
    dh, dw = cache.get("dilation", (1, 1))
    N, H, W, C = x.shape
    kh, kw, _, dm = w.shape
    kh, kw = (kh - 1) * dh + 1, (kw - 1) * dw + 1    # the dilated kernel's extent
    expected = (N, (H + pt + pb - kh) // sh + 1, (W + pl + pr - kw) // sw + 1, C * dm)
    dout = as_float_array(dout, "dout", dtype=x.dtype, check_finite=check_finite)
    if dout.shape != expected:
        raise ShapeError(f"dout must have the forward output's shape {expected}, "
                         f"got {dout.shape}")
    return dout
