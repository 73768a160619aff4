"""Finite differences, the one helper behind every gradient test and ``check_layer``.

Instead of the full Jacobian we check the directional quantity backward really computes: for a
random upstream gradient ``dout`` (same shape as ``f(x)``), the scalar ``L(x) = sum(f(x) * dout)``
has gradient ``dL/dx``, which is what ``backward(dout)`` must return.  Central differences,

    dL/dx_i ~ (L(x + eps e_i) - L(x - eps e_i)) / (2 eps),

are accurate to O(eps^2); in float64 with eps = 1e-6 that leaves ~1e-8 relative error for smooth
maps.  Max/min pooling and ReLU are only piecewise smooth: test inputs should keep entries apart
(no near-ties, nothing close to 0 for ReLU) so no step of size eps crosses a kink.
"""
import numpy as np


def numerical_gradient(f, x, dout, eps=1e-6):
    """dL/dx for ``L(x) = sum(f(x) * dout)`` by central differences (``x`` is not modified).

    ``f`` maps an array shaped like ``x`` to an array shaped like ``dout``; use float64.
    """
    x = np.array(x, dtype=np.float64, copy=True)
    dout = np.asarray(dout, dtype=np.float64)
    grad = np.empty_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = np.sum(np.asarray(f(x), dtype=np.float64) * dout)
        flat[i] = old - eps
        minus = np.sum(np.asarray(f(x), dtype=np.float64) * dout)
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * eps)
    return grad


def relative_error(a, b, floor=1e-12):
    """||a - b|| / max(||a|| + ||b||, floor) in the 2-norm: 0 for equal arrays, ~1 for
    unrelated ones.  A norm-wise error is not fooled by entries that are ~0 in both."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), floor))


def rounding_error(got, want, scale):
    """``||got - want|| / ||scale||``: the error measured against the size of the terms.

    ``scale`` holds, for each value, the sum of the absolute values of the terms that produced
    it (the same computation on ``|inputs|``).  Floating-point rounding is proportional to that
    sum, not to the result: a gradient such as ``db = sum(dout)`` can cancel to almost nothing,
    and then ``relative_error`` reports float32's ordinary rounding as a large error."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise ValueError(f"shapes differ: {got.shape} vs {want.shape}")
    if got.size == 0:
        return 0.0
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(scale), 1e-300))

