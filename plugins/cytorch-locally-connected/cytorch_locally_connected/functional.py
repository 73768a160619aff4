"""Front door to the locally-connected kernel: validate, then run the compiled kernel or its twin.

Same pattern as ``cytorch.functional``: every argument is checked in Python (rank, channels,
dtype, finiteness, shape arithmetic) before compiled code runs; inputs are never modified.
``cytorch.backend("reference")`` makes these calls run the NumPy twin in
``cytorch_locally_connected.reference``::

    out, cache = locally_connected2d_forward(x, w, b, kernel_size=3, strides=1, padding="same")
    dx, dw, db = locally_connected2d_backward(dout, cache)

Shapes: ``x (N, H, W, C)``, ``w (H_out, W_out, kh*kw*C, K)``, ``b (H_out, W_out, K)`` or None,
``out (N, H_out, W_out, K)`` with ``H_out = floor((H + P_top + P_bottom - kh) / sh) + 1``.
"""
import numpy as np

from cytorch import get_backend, get_num_threads, single_threaded_blas
from cytorch.checks import as_batch, as_float_array, as_pair, common_dtype, window_output_shape
from cytorch.errors import NotBuiltError, ShapeError

from . import reference

_INT_MAX = 2**31 - 1   # BLAS takes matrix sizes and leading dimensions as 32-bit ints
_GRAIN = 1 << 20       # multiply-adds worth waking one more thread for (~0.1 ms of work)

BUILD_HINT = ("build it with `python -m pip install -e ./plugins/cytorch-locally-connected "
              "--no-build-isolation` (or `python setup.py build_ext --inplace` in that folder), "
              "or run the NumPy twin with cytorch.backend('reference')")


def _kernel():
    """The compiled module; a missing build is an error that says how to build it."""
    try:
        from . import _lc
    except ImportError as exc:
        raise NotBuiltError(f"the compiled kernel cytorch_locally_connected._lc is not "
                            f"built ({exc}); {BUILD_HINT}") from exc
    return _lc


def _threads(macs):
    """How many OpenMP threads a call doing ``macs`` multiply-adds should use.

    Waking a thread team costs microseconds on an idle machine, but on a busy one every
    parallel region waits until the scheduler has run each of its threads: measured on a
    2-core machine at load 6, 20-80 ms for calls that take 1-2 ms on one thread.  So a call
    gets one thread per ``_GRAIN`` multiply-adds (at most ``cytorch.get_num_threads()``):
    small calls, which cannot gain much, cannot lose much either."""
    return int(max(1, min(get_num_threads(), macs // _GRAIN)))


def locally_connected2d_forward(x, w, b, kernel_size, strides=1, padding="valid",
                                check_finite=True):
    """Locally-connected 2-D forward pass: ``out[n, i, j] = cols[n, i, j] @ w[i, j] + b[i, j]``.

    Parameters
    ----------
    x : array (N, H, W, C)
    w : array (H_out, W_out, kh * kw * C, K), one filter bank per output position
    b : array (H_out, W_out, K) or None
    kernel_size, strides : int or pair (kh, kw), (sh, sw)
    padding : "valid", "same", "full", an int or a pair (see ``cytorch.checks.resolve_padding``)
    check_finite : bool, reject NaN and inf in ``x``, ``w`` and ``b``

    Returns
    -------
    out : ndarray (N, H_out, W_out, K) in the dtype of ``x`` and ``w`` combined
    cache : dict for ``locally_connected2d_backward``

    >>> import numpy as np
    >>> x = np.ones((2, 5, 5, 3), dtype=np.float32)
    >>> w = np.ones((5, 5, 3 * 3 * 3, 4), dtype=np.float32)
    >>> out, _ = locally_connected2d_forward(x, w, None, 3, padding="same")
    >>> out.shape, float(out[0, 2, 2, 0]), float(out[0, 0, 0, 0])   # corner windows see padding
    ((2, 5, 5, 4), 27.0, 12.0)
    """
    x = as_batch(x, "x", rank=4, check_finite=check_finite)
    w = as_float_array(w, "w", check_finite=check_finite)
    if b is not None:
        b = as_float_array(b, "b", check_finite=check_finite)
    dtype = common_dtype(x, w, b)
    x, w = x.astype(dtype, copy=False), w.astype(dtype, copy=False)
    b = None if b is None else b.astype(dtype, copy=False)

    N, H, W, C = x.shape
    kh, kw = as_pair(kernel_size, "kernel_size")
    sh, sw = as_pair(strides, "strides")
    H_out, W_out, pads = window_output_shape(H, W, kh, kw, sh, sw, padding,
                                             what="locally_connected2d")
    P = kh * kw * C
    if w.ndim != 4 or w.shape[:3] != (H_out, W_out, P):
        raise ShapeError(
            f"w must have shape (H_out, W_out, kh*kw*C, K) = ({H_out}, {W_out}, {P}, K) for x "
            f"of shape {x.shape} with a {kh}x{kw} kernel, strides ({sh}, {sw}) and padding "
            f"{padding!r}, got {w.shape}")
    K = w.shape[3]
    if K < 1:
        raise ShapeError(f"w must have at least one filter (last axis), got shape {w.shape}")
    if b is not None and b.shape != (H_out, W_out, K):
        raise ShapeError(f"b must have shape (H_out, W_out, K) = ({H_out}, {W_out}, {K}), "
                         f"got {b.shape}")
    if max(H_out * W_out * K, P * K, N, P) > _INT_MAX:
        raise ValueError(f"locally_connected2d: a matrix side exceeds the 32-bit BLAS limit "
                         f"({_INT_MAX}): N={N}, P={P}, H_out*W_out*K={H_out * W_out * K}")

    meta = {"kernel_size": (kh, kw), "strides": (sh, sw), "pads": pads,
            "x_shape": x.shape, "out_shape": (N, H_out, W_out, K), "dtype": np.dtype(dtype),
            "check_finite": check_finite}
    if get_backend() == "reference":
        out, twin_cache = reference.locally_connected2d_forward(x, w, b, (kh, kw), (sh, sw),
                                                                 (pads[:2], pads[2:]))
        return out, dict(meta, backend="reference", twin=twin_cache)
    pt, _, pl, _ = pads
    kernel = _kernel()
    macs = N * H_out * W_out * P * K
    with single_threaded_blas():   # the kernel's OpenMP threads each call GEMM
        out = kernel.forward(x, w, b, kh, kw, sh, sw, pt, pl, _threads(macs))
    return out, dict(meta, backend="compiled", x=x, w=w, has_bias=b is not None)


def locally_connected2d_backward(dout, cache):
    """Gradients ``(dx, dw, db)`` of the forward pass that made ``cache``.

    ``dout`` is dL/dout, shaped like ``out`` (N, H_out, W_out, K).  Formulas, per position::

        db[i, j] = sum_n dout[n, i, j]          dw[i, j] = cols[:, i, j].T @ dout[:, i, j]
        dx = col2im(dout[:, i, j] @ w[i, j].T over all (i, j))

    ``db`` is None when the forward pass had no bias.  The backward pass runs on the backend
    that ran the forward pass (their caches differ).
    """
    if not isinstance(cache, dict) or cache.get("backend") not in ("compiled", "reference"):
        raise ValueError(f"locally_connected2d_backward needs the cache returned by "
                         f"locally_connected2d_forward, got {type(cache).__name__}")
    dout = as_float_array(dout, "dout", dtype=cache["dtype"], check_finite=cache["check_finite"])
    if dout.shape != cache["out_shape"]:
        raise ShapeError(f"dout must have the forward output's shape (N, H_out, W_out, K) = "
                         f"{cache['out_shape']}, got {dout.shape}")
    if cache["backend"] == "reference":
        return reference.locally_connected2d_backward(dout, cache["twin"])
    kh, kw = cache["kernel_size"]
    sh, sw = cache["strides"]
    pt, _, pl, _ = cache["pads"]
    kernel = _kernel()
    macs = dout.size * cache["w"].shape[2]             # per GEMM: N * H_out * W_out * K * P
    with single_threaded_blas():   # the kernel's OpenMP threads each call GEMM
        return kernel.backward(dout, cache["x"], cache["w"], cache["has_bias"],
                               kh, kw, sh, sw, pt, pl, _threads(macs))
