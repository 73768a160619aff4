"""The front door to the kernels: validate, allocate, then call the compiled kernel or its twin.

Every function here checks its arguments in Python (rank, channels, dtype, finiteness, shape
arithmetic) before any compiled code runs, and never modifies what it is given.  Layers and
users call these functions; nobody imports ``cytorch._kernels`` directly.

Forward/backward come in pairs::

    out, cache = conv2d_forward(x, w, b, strides=1, padding="valid")
    dx, dw, db = conv2d_backward(dout, cache)

``cytorch.backend("reference")`` makes the same calls run the NumPy twins of
``cytorch.reference`` (same names, same signatures).

Every forward and backward takes ``check_finite=True``: NaN or inf in its arrays (``dout`` for
a backward) raise ValueError.  A caller that has scanned them already passes False, so a
training step scans each array once.

The ones that make large arrays (conv2d, windowed pooling, dropout) also take
``workspace=None``: an object whose ``get(name, shape, dtype)`` returns the array to write
into (``_alloc``), so that a layer in ``fit`` writes each batch into the arrays of the one
before instead of allocating new ones.  Without it every call returns arrays of its own.
"""
import collections

import numpy as np

from . import _checks as checks
from . import _kernels
from . import reference
from ._checks import as_batch, as_float_array, common_dtype  # noqa: F401  (public here too)
from ._config import get_backend, get_num_threads

# Every kernel family follows the same four steps:
#
#   1. validate (``cytorch._checks``: rank, channels, dtype, NaN/inf, shape arithmetic);
#   2. pick the backend: under ``cytorch.backend("reference")`` hand the validated arguments
#      to the twin of the same name (with ``check_finite=False``: they have been scanned);
#   3. allocate the outputs and call the compiled kernel;
#   4. build the cache with the builder the twin uses too (``checks.conv_cache``, ...), so
#      forward on one backend can be followed by backward on the other.


def _use_reference():
    return get_backend() == "reference"


def _kernel(name):
    """The compiled module ``cytorch._kernels.<name>`` (a NotBuiltError when it is missing)."""
    return _kernels.load(name)


def _alloc(workspace, name, shape, dtype):
    """A new array, or the ``workspace``'s buffer ``name`` of that shape and dtype.

    ``workspace`` (the ``workspace=`` argument of the forward and backward functions that
    produce large arrays) is an object whose ``get(name, shape, dtype)`` returns a
    C-contiguous, writable array of ``shape`` and ``dtype``: a layer passes its own
    (``Layer._buffers``, a ``cytorch.layers.base.Workspace``) during ``fit``, so that each
    batch writes into the arrays of the one before instead of allocating new ones.  The result then lives only until the
    workspace hands the same buffer out again; it must not alias any input of the call."""
    if workspace is None:
        return np.empty(shape, dtype=dtype)
    buf = workspace.get(name, shape, dtype)
    if not isinstance(buf, np.ndarray) or buf.shape != tuple(shape) or buf.dtype != dtype \
            or not buf.flags.c_contiguous or not buf.flags.writeable:
        raise ValueError(f"workspace.get({name!r}, {tuple(shape)}, {np.dtype(dtype)}) must "
                         f"return a C-contiguous, writable array of that shape and dtype, got "
                         f"{type(buf).__name__} {getattr(buf, 'shape', '')} "
                         f"{getattr(buf, 'dtype', '')}")
    return buf


def _pad_pairs(pads):
    """``(top, bottom, left, right)`` as the ``((top, bottom), (left, right))`` twins take."""
    return (pads[0], pads[1]), (pads[2], pads[3])


# ===============================================================================================
# conv2d  (section owned by the conv kernel work)
# ===============================================================================================
def _conv_direct(x, w, out, strides, dilation):
    """Does this conv2d run the direct path (``_kernels/_direct.pyx``, twin
    ``reference.conv2d_shift_add_forward``) before any other?  The measured rule lives beside
    the kernel: thin stride-1, undilated layers of at most 4 filters (2 in float64)."""
    return _kernel("_direct").uses_direct_path(x.shape, w.shape, out.shape, strides, x.dtype,
                                               dilation)


def _conv_winograd(x, w, out, strides, dilation):
    """Does this conv2d run Winograd's F(2x2, 3x3) or F(4x4, 3x3) (``_kernels/_winograd.pyx``,
    twin ``reference.conv2d_winograd_forward``)?  3x3, stride 1, undilated, with the channel
    counts and outputs per filter the measured rule beside the kernel names (asked after the
    direct path's rule; it asks the blocked path's); the kernel's ``winograd_tile`` then picks
    the tile from the shapes, by its own measured rule."""
    return _kernel("_winograd").uses_winograd_path(x.shape, w.shape, out.shape, strides,
                                                   x.dtype, dilation)


def _conv_fast_path(x, w, out, strides, dilation):
    """The compiled module of the stride-1 fast path this conv2d runs, or None for im2col +
    GEMM (``_conv``): ``"_direct"`` (the thinnest layers, a few filters), ``"_winograd"``
    (3x3 layers with many channels) or ``"_blocked"`` (register-blocked small GEMMs, such as
    LeNet's two layers), asked in this order; each measured rule lives beside its kernel.  A
    thin layer on an image too large for the blocked path's budget goes back to the direct
    path when that one fits it."""
    if _conv_direct(x, w, out, strides, dilation):
        return "_direct"
    if _conv_winograd(x, w, out, strides, dilation):
        return "_winograd"
    args = (x.shape, w.shape, out.shape, strides, x.dtype, dilation)
    if _kernel("_blocked").uses_blocked_path(*args):
        return "_blocked"
    if _kernel("_direct").fits_direct_path(*args):
        return "_direct"
    return None


# the compiled modules that run conv2d: the fast paths (the same arguments) and im2col + GEMM
_CONV_PATHS = ("_direct", "_winograd", "_blocked", "_conv")


def _conv_path(x, w, out, strides, dilation):
    """The compiled module this conv2d runs: ``_conv_fast_path``'s, or "_conv"."""
    return _conv_fast_path(x, w, out, strides, dilation) or "_conv"


#: the activations ``conv2d_forward`` applies itself, in the pass that writes its output
CONV2D_ACTIVATIONS = checks.CONV_ACTIVATIONS


def conv2d_forward(x, w, b=None, strides=1, padding="valid", dilation_rate=1, activation=None,
                   check_finite=True, workspace=None):
    """2-D convolution of a channels-last batch: ``out[n, i, j, k] = f(b[k] + sum x_pad * w)``.

    Parameters
    ----------
    x : array ``(N, H, W, C)``; float32 or float64 (other real input becomes float32).
    w : array ``(kh, kw, C, K)``: K filters of size ``kh x kw x C``.
    b : array ``(K,)`` or None.
    strides : int or ``(sh, sw)``.
    padding : ``"valid"``, ``"same"``, ``"full"``, an int, ``(ph, pw)`` or
        ``((top, bottom), (left, right))``.
    dilation_rate : int or ``(dh, dw)``: tap ``(a, b)`` of the kernel reads the input
        ``a * dh`` rows and ``b * dw`` columns from the window's corner (atrous convolution),
        so a kernel spans ``(kh - 1) * dh + 1`` rows with the same ``kh * kw`` weights.
    activation : None (or "linear") or a name of ``CONV2D_ACTIVATIONS``: f, applied by the
        kernel as it writes each block of the output, while it is in cache ("conv, then + bias,
        then f" without a second pass over the output); backward then applies its derivative
        in its first pass over dout.  Every path (direct, Winograd, blocked, im2col + GEMM)
        fuses it.  The numbers of ``cytorch.activations`` applied to the output afterwards (to
        the last bit, which tanh's derivative and float64 sigmoid and softplus can round
        differently at the end of a block).
    check_finite : raise ValueError on NaN/inf in the inputs (skip the scan with False).

    Returns
    -------
    out : ``(N, H_out, W_out, K)`` with
        ``H_out = floor((H + P_top + P_bottom - ((kh - 1) * dh + 1)) / sh) + 1``,
        in float64 when x or w is float64, else float32.
    cache : what ``conv2d_backward`` needs (the validated x and w, strides, padding,
        dilation; with an activation, ``out`` itself, which its derivative reads: change out
        in place and the gradients change with it).

    >>> import numpy as np
    >>> out, cache = conv2d_forward(np.ones((2, 7, 7, 1)), np.ones((3, 3, 1, 4)), strides=2)
    >>> out.shape
    (2, 3, 3, 4)
    >>> conv2d_forward(np.ones((2, 7, 7, 1)), np.ones((3, 3, 1, 4)), dilation_rate=2)[0].shape
    (2, 3, 3, 4)
    >>> conv2d_forward(np.ones((1, 3, 3, 1)), -np.ones((3, 3, 1, 2)), activation="relu")[0]
    array([[[[0., 0.]]]])
    """
    x, w, b, (sh, sw), pads, out_shape = checks.conv_args(x, w, b, strides, padding,
                                                          check_finite, dilation_rate)
    activation = checks.conv_activation(activation)
    dh, dw = checks.as_pair(dilation_rate, "dilation_rate")
    if _use_reference():
        return reference.conv2d_forward(x, w, b, (sh, sw), _pad_pairs(pads), (dh, dw),
                                        activation, check_finite=False)
    out = _alloc(workspace, "conv2d_out", out_shape, x.dtype)
    bias = b if b is not None else np.zeros(w.shape[3], dtype=x.dtype)
    path = _conv_path(x, w, out, (sh, sw), (dh, dw))
    if path == "_conv":
        _kernel("_conv").conv2d_forward(x, w, bias, out, sh, sw, pads[0], pads[2],
                                        get_num_threads(), dh, dw, activation)
    else:   # a stride-1 fast path: _direct, _winograd or _blocked, the same arguments
        _kernel(path).conv2d_forward(x, w, bias, out, pads[0], pads[2], get_num_threads(),
                                     activation)
    return out, checks.conv_cache(x, w, b, (sh, sw), pads, (dh, dw), activation, out, path)


def conv2d_backward(dout, cache, need_dx=True, check_finite=True, workspace=None):
    """Gradients of ``conv2d_forward``: ``(dx, dw, db)`` for ``dout = dL/dout``.

    ``dout`` has the forward output's shape ``(N, H_out, W_out, K)``.  With
    ``dz = dout * f'(z)`` (the forward pass's activation f; dout itself without one),
    ``cols = im2col(x)`` and ``W = w.reshape(kh*kw*C, K)``::

        dw = cols^T @ dz          dx = col2im(dz @ W^T)          db = dz.sum((0, 1, 2))

    The kernels compute dz in the same pass that sums db, one block at a time, never as a
    separate array of dout's size (the Winograd path, whose dx pass reads dz again, makes it a
    few images at a time and runs dW and dx on them while they are in cache).

    ``db`` is None when the forward pass had no bias; ``dx`` is None with ``need_dx=False``
    (the first layer of a network never needs it; measured on LeNet's layers, skipping it takes
    conv2d_backward down to 0.44-0.59 of its time).  ``check_finite=False`` skips the NaN/inf
    scan of ``dout`` (a layer that checked it already passes False).
    Returned arrays have x's dtype.

    >>> import numpy as np
    >>> out, cache = conv2d_forward(np.ones((2, 5, 5, 3)), np.ones((3, 3, 3, 4)), np.zeros(4))
    >>> dx, dw, db = conv2d_backward(np.ones(out.shape), cache)
    >>> dx.shape, dw.shape, db
    ((2, 5, 5, 3), (3, 3, 3, 4), array([18., 18., 18., 18.]))
    """
    dout = checks.conv_dout(dout, cache, check_finite)
    if _use_reference():
        return reference.conv2d_backward(dout, cache, need_dx, check_finite=False)
    x, w = cache["x"], cache["w"]
    (sh, sw), (pt, pb, pl, pr) = cache["strides"], cache["pads"]
    dilation = cache.get("dilation", (1, 1))
    K = w.shape[3]
    # the kernel writes every value
    dx = _alloc(workspace, "conv2d_dx", x.shape, x.dtype) if need_dx else None
    dw = np.empty_like(w)
    db = np.empty(K, dtype=x.dtype)
    activation, y = cache.get("activation", "linear"), cache.get("y")
    # the module the forward pass ran (dout has its output's shape and dtype: the rules would
    # say the same again); a cache from the twin, or an older one, has none: ask the rules
    path = cache.get("path")
    if path not in _CONV_PATHS:
        path = _conv_path(x, w, dout, (sh, sw), dilation)
    if path == "_conv":
        _kernel("_conv").conv2d_backward(dout, x, w, dx, dw, db, sh, sw, pt, pl,
                                         get_num_threads(), *dilation, activation, y)
    else:
        _kernel(path).conv2d_backward(dout, x, w, dx, dw, db, pt, pl, get_num_threads(),
                                      activation, y)
    return dx, dw, (db if cache["has_bias"] else None)


# ===============================================================================================
# conv2d then 2x2 max pooling, fused (inference)
# ===============================================================================================
class _Shaped(collections.namedtuple("_Shaped", "shape dtype")):
    """What the conv path rules read of an array (``_conv_fast_path``): its shape and dtype."""


def conv2d_max_pool2d_fused(x_shape, w_shape, strides=1, padding="valid", dilation_rate=1,
                            dtype=np.float32):
    """Whether ``conv2d_max_pool2d_forward`` runs these shapes (``x_shape`` ``(N, H, W, C)``,
    ``w_shape`` ``(kh, kw, C, K)``) in one fused kernel: the conv is on the blocked path
    (``_kernels/_blocked.pyx``: stride 1, undilated, up to a few tens of filters, by the rule
    measured beside it; keras_mnist's two layers) and its output is at least 2x2.  Otherwise
    the call runs the conv and then the pooling, as the two layers do."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        return False
    strides = checks.as_pair(strides, "strides")
    dh, dw = checks.as_pair(dilation_rate, "dilation_rate")
    H_c, W_c, _ = checks.window_output_shape(x_shape[1], x_shape[2], dh * (w_shape[0] - 1) + 1,
                                             dw * (w_shape[1] - 1) + 1, *strides, padding)
    return _fuses(_Shaped(tuple(x_shape), dtype), _Shaped(tuple(w_shape), dtype),
                  (x_shape[0], H_c, W_c, w_shape[3]), strides, (dh, dw))


def _fuses(x, w, conv_shape, strides, dilation):
    """conv2d_max_pool2d_fused for validated operands and the conv's output shape."""
    return (conv_shape[1] >= 2 and conv_shape[2] >= 2 and _conv_fast_path(
        x, w, _Shaped(conv_shape, x.dtype), strides, dilation) == "_blocked")


def conv2d_max_pool2d_forward(x, w, b=None, strides=1, padding="valid", dilation_rate=1,
                              activation=None, check_finite=True, workspace=None):
    """A conv with its activation, then 2x2 max pooling (stride 2), for inference.

    ``max_pool2d_forward(conv2d_forward(x, w, b, ..., activation)[0], 2)[0]``, the same
    numbers to the bit, in one call.  The conv writes each image's output into a small buffer
    (keras_mnist's first layer: 24x24x10 floats, 23 KB, which stays in the CPU's cache), and
    the max of every 2x2 window is taken from there at once: the full map (5.9 MB for a batch
    of 256 there) is never written to memory and read back.  With a ReLU the pooling comes
    first and ReLU runs on the 4x smaller result (``max(relu(z)) = relu(max(z))``: ReLU is
    monotone).  No backward follows (``predict``, ``evaluate``): backward would need the
    conv's output, so there is no cache and no ``conv2d_max_pool2d_backward``.

    Fused when the conv runs the blocked path (``conv2d_max_pool2d_fused``); any other conv
    runs ``conv2d_forward`` and then ``max_pool2d_forward``, with the same result.

    Parameters
    ----------
    x, w, b, strides, padding, dilation_rate, activation, check_finite
        As ``conv2d_forward``.
    workspace : as ``conv2d_forward``: where the output (and, unfused, the conv's) goes.

    Returns
    -------
    out : ``(N, H_c // 2, W_c // 2, K)``, where ``(H_c, W_c)`` is the conv's output size,
        ``H_c = floor((H + P_top + P_bottom - ((kh - 1) * dh + 1)) / sh) + 1``; an odd last
        row or column of the conv's output belongs to no window.

    >>> import numpy as np
    >>> x = np.arange(36.0).reshape(1, 6, 6, 1)
    >>> conv2d_max_pool2d_forward(x, np.ones((3, 3, 1, 2)), activation="relu").shape
    (1, 2, 2, 2)
    """
    x, w, b, (sh, sw), pads, (N, H_c, W_c, K) = checks.conv_args(x, w, b, strides, padding,
                                                                 check_finite, dilation_rate)
    activation = checks.conv_activation(activation)
    dh, dw = checks.as_pair(dilation_rate, "dilation_rate")
    H_out, W_out, _ = checks.window_output_shape(
        H_c, W_c, 2, 2, 2, 2, "valid",
        what="conv2d_max_pool2d_forward's 2x2 pooling of the conv output")
    if _use_reference():
        return reference.conv2d_max_pool2d_forward(x, w, b, (sh, sw), _pad_pairs(pads),
                                                   (dh, dw), activation, check_finite=False)
    if not _fuses(x, w, (N, H_c, W_c, K), (sh, sw), (dh, dw)):
        # (ReLU after the pooling, on the smaller map, as relu_after_pooling does)
        relu = activation == "relu"
        z, _ = conv2d_forward(x, w, b, (sh, sw), _pad_pairs(pads), (dh, dw),
                              None if relu else activation, check_finite=False,
                              workspace=workspace)
        return max_pool2d_forward(z, 2, check_finite=False, workspace=workspace,
                                  activation="relu" if relu else None, need_backward=False)[0]
    out = _alloc(workspace, "conv2d_max_pool2d_out", (N, H_out, W_out, K), x.dtype)
    bias = b if b is not None else np.zeros(K, dtype=x.dtype)
    _kernel("_blocked").conv2d_max_pool2d_forward(x, w, bias, out, H_c, W_c, pads[0], pads[2],
                                                  get_num_threads(), activation)
    return out


# ===============================================================================================
# pooling and dropout  (section owned by the pooling/dropout kernel work)
# ===============================================================================================
#
# Max and min pooling share one kernel; the caches are ``checks.pool_cache`` dicts, which the
# twins build too.

def _pool2d_forward(kind, x, pool_size, strides, padding, check_finite, workspace=None,
                    activation=None, need_backward=True):
    what = f"{kind}_pool2d"
    x, pool, strides, pads, out_shape = checks.pool_args(x, pool_size, strides, padding,
                                                         check_finite, what)
    extreme = kind != "avg"
    if extreme:
        activation = checks.pool_activation(activation, what)
    if _use_reference():
        if not extreme:
            return reference.avg_pool2d_forward(x, pool, strides, _pad_pairs(pads),
                                                check_finite=False)
        return getattr(reference, what + "_forward")(x, pool, strides, _pad_pairs(pads),
                                                     check_finite=False, activation=activation,
                                                     need_backward=need_backward)
    (ph, pw), (sh, sw), (pt, pb, pl, pr) = pool, strides, pads
    out = _alloc(workspace, "pool2d_out", out_shape, x.dtype)
    if not extreme:
        _kernel("_pool").avg_pool2d_forward(x, out, ph, pw, sh, sw, pt, pl, get_num_threads())
        return out, checks.pool_cache(kind, x, pool, strides, pads)
    # with need_backward=False (inference) the kernel records no winners
    argidx = _alloc(workspace, "pool2d_argidx", out_shape, np.int32) if need_backward else None
    _kernel("_pool").extreme_pool2d_forward(x, out, argidx, ph, pw, sh, sw, pt, pl,
                                            kind == "min", get_num_threads(),
                                            activation == "relu")
    return out, checks.pool_cache(kind, x, pool, strides, pads, argidx, activation,
                                  out if activation is not None else None)


def _pool2d_backward(kind, dout, cache, check_finite, workspace=None):
    what = f"{kind}_pool2d"
    dout = checks.pool_dout(kind, dout, cache, check_finite)
    if _use_reference():
        return getattr(reference, what + "_backward")(dout, cache, check_finite=False)
    N, H, W, C = cache["x_shape"]
    (ph, pw), (sh, sw) = cache["pool_size"], cache["strides"]
    pt, _, pl, _ = cache["pads"]
    if cache.get("activation") is not None:    # relu: dout * [y > 0]
        dout = activation_backward(cache["activation"], dout, cache["y"], check_finite=False)
    dx = _alloc(workspace, "pool2d_dx", (N, H, W, C), dout.dtype)  # the kernels write every cell
    if kind == "avg":
        _kernel("_pool").avg_pool2d_backward(dout, dx, ph, pw, sh, sw, pt, pl,
                                             get_num_threads())
    else:
        _kernel("_pool").extreme_pool2d_backward(dout, cache["argidx"], dx, ph, pw, sh, sw, pt,
                                                 get_num_threads(), pl=pl)
    return dx


def max_pool2d_forward(x, pool_size=2, strides=None, padding="valid", check_finite=True,
                       workspace=None, activation=None, need_backward=True):
    """Max pooling of a channels-last batch: the largest value of every window, per channel.

    Parameters
    ----------
    x : array ``(N, H, W, C)``; float32 or float64 (other real input becomes float32).
    pool_size : int or ``(ph, pw)``, the window.
    strides : int, ``(sh, sw)`` or None for the window (non-overlapping windows).
    padding : ``"valid"``, ``"same"``, ``"full"``, an int, ``(ph, pw)`` or
        ``((top, bottom), (left, right))``; every side smaller than the window.  Padded cells
        never win.
    check_finite : raise ValueError on NaN/inf in x (skip the scan with False).
    activation : None or "relu": return ``relu(out)``, which equals pooling ``relu(x)``
        (ReLU is monotone) on 4x fewer values for 2x2 windows; backward then multiplies
        dout by ``[out > 0]`` first.
    need_backward : False when no backward pass follows (inference: ``predict``,
        ``evaluate``): the kernel records no winners, which takes it less than half the time
        for 2x2 windows, and the cache cannot be given to ``max_pool2d_backward``.

    Returns
    -------
    out : ``(N, H_out, W_out, C)``, ``H_out = floor((H + P_top + P_bottom - ph) / sh) + 1``.
    cache : for ``max_pool2d_backward``: the geometry and the int32 flat index
        ``ih * W + iw`` of each window's winner (the first in row-major order on ties; None
        with ``need_backward=False``), the activation and (with one) out.

    >>> x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]])
    >>> out, cache = max_pool2d_forward(x[None, :, :, None], 2)
    >>> out[0, :, :, 0]
    array([[6., 8.],
           [3., 4.]], dtype=float32)
    """
    return _pool2d_forward("max", x, pool_size, strides, padding, check_finite, workspace,
                           activation, need_backward)


def max_pool2d_backward(dout, cache, check_finite=True, workspace=None):
    """Gradient of ``max_pool2d_forward``: dout ``(N, H_out, W_out, C)`` -> dx ``(N, H, W, C)``.

    ``dx[n, ih, iw, c]`` is the sum of ``dout[n, i, j, c]`` over the windows ``(i, j)`` whose
    winner is ``(ih, iw)`` (overlapping windows can share a winner); 0 for every other cell.
    """
    return _pool2d_backward("max", dout, cache, check_finite, workspace)


def min_pool2d_forward(x, pool_size=2, strides=None, padding="valid", check_finite=True,
                       workspace=None, activation=None, need_backward=True):
    """Min pooling: the smallest value of every window; arguments, shapes and cache as
    ``max_pool2d_forward`` (the two share one kernel).

    >>> x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]])
    >>> min_pool2d_forward(x[None, :, :, None], 2)[0][0, :, :, 0]
    array([[1., 2.],
           [1., 0.]], dtype=float32)
    """
    return _pool2d_forward("min", x, pool_size, strides, padding, check_finite, workspace,
                           activation, need_backward)


def min_pool2d_backward(dout, cache, check_finite=True, workspace=None):
    """Gradient of ``min_pool2d_forward``: dout goes to each window's smallest cell."""
    return _pool2d_backward("min", dout, cache, check_finite, workspace)


def avg_pool2d_forward(x, pool_size=2, strides=None, padding="valid", check_finite=True,
                       workspace=None):
    """Average pooling: the mean of the real (unpadded) cells of every window.

    Arguments and output shape as ``max_pool2d_forward``;
    ``out[n, i, j, c] = sum of the real cells of window (i, j) / their count``.

    >>> x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]])
    >>> avg_pool2d_forward(x[None, :, :, None], 2)[0][0, :, :, 0]
    array([[3.25, 5.25],
           [2.  , 2.  ]], dtype=float32)
    """
    return _pool2d_forward("avg", x, pool_size, strides, padding, check_finite, workspace)


def avg_pool2d_backward(dout, cache, check_finite=True, workspace=None):
    """Gradient of ``avg_pool2d_forward``: every real cell of window ``(i, j)`` receives
    ``dout[n, i, j, c] / count[i, j]``, summed over the windows that contain it."""
    return _pool2d_backward("avg", dout, cache, check_finite, workspace)


# Global pooling checks its input for NaN and inf in the pass that reads it: the kernels count
# the channels (dout values) in which they met one, and only then is the array scanned, for the
# error message (a float64 sum of finite values that overflowed is a false alarm the scan
# clears).  The separate scan took half the time of a 32x8x8x64 float32 average pooling.
def _global_forward(kind, x, check_finite):
    what = f"global_{kind}_pool2d"
    x = checks.global_args(kind, x, check_finite and _use_reference())
    if _use_reference():
        return getattr(reference, what + "_forward")(x, check_finite=False)
    N, H, W, C = x.shape
    out = np.empty((N, C), dtype=x.dtype)
    argidx = None if kind == "avg" else np.empty((N, C), dtype=np.int32)
    if kind == "avg":
        nonfinite = _kernel("_pool").global_avg_pool2d_forward(x, out, get_num_threads())
    else:
        nonfinite = _kernel("_pool").global_extreme_pool2d_forward(x, out, argidx,
                                                                   kind == "min",
                                                                   get_num_threads())
    if nonfinite and check_finite:
        checks.require_finite(x, "x")
    return out, checks.global_cache(kind, x, argidx)


def _global_backward(kind, dout, cache, check_finite):
    what = f"global_{kind}_pool2d"
    # (average pooling's kernel meets every dout value: it checks them)
    scan = check_finite and (kind != "avg" or _use_reference())
    dout = checks.global_dout(kind, dout, cache, scan)
    if _use_reference():
        return getattr(reference, what + "_backward")(dout, cache, check_finite=False)
    N, H, W, C = cache["x_shape"]
    if kind == "avg":
        dx = np.empty((N, H, W, C), dtype=dout.dtype)
        if _kernel("_pool").global_avg_pool2d_backward(dout, dx, get_num_threads()) \
                and check_finite:
            checks.require_finite(dout, "dout")
    else:
        dx = np.zeros((N, H, W, C), dtype=dout.dtype)
        _kernel("_pool").global_extreme_pool2d_backward(dout, cache["argidx"], dx,
                                                        get_num_threads())
    return dx


def global_max_pool2d_forward(x, check_finite=True):
    """The largest value of each channel's whole map: ``(N, H, W, C) -> (N, C)``.

    The cache holds ``argidx[n, c] = h * W + w`` of each winner (first on ties).

    >>> global_max_pool2d_forward(np.arange(8.0).reshape(1, 2, 2, 2))[0]
    array([[6., 7.]])
    """
    return _global_forward("max", x, check_finite)


def global_max_pool2d_backward(dout, cache, check_finite=True):
    """dout ``(N, C)`` -> dx ``(N, H, W, C)``: ``dout[n, c]`` at the winner, 0 elsewhere."""
    return _global_backward("max", dout, cache, check_finite)


def global_min_pool2d_forward(x, check_finite=True):
    """The smallest value of each channel's whole map: ``(N, H, W, C) -> (N, C)``.

    >>> global_min_pool2d_forward(np.arange(8.0).reshape(1, 2, 2, 2))[0]
    array([[0., 1.]])
    """
    return _global_forward("min", x, check_finite)


def global_min_pool2d_backward(dout, cache, check_finite=True):
    """dout ``(N, C)`` -> dx ``(N, H, W, C)``: ``dout[n, c]`` at the smallest cell."""
    return _global_backward("min", dout, cache, check_finite)


def global_avg_pool2d_forward(x, check_finite=True):
    """The mean of each channel's map, ``out[n, c] = sum_{h, w} x[n, h, w, c] / (H * W)``,
    summed in float64: ``(N, H, W, C) -> (N, C)``.

    >>> global_avg_pool2d_forward(np.arange(8.0).reshape(1, 2, 2, 2))[0]
    array([[3., 4.]])
    """
    return _global_forward("avg", x, check_finite)


def global_avg_pool2d_backward(dout, cache, check_finite=True):
    """dout ``(N, C)`` -> dx ``(N, H, W, C)`` with ``dx[n, h, w, c] = dout[n, c] / (H * W)``."""
    return _global_backward("avg", dout, cache, check_finite)


def dropout_forward(x, rate, seed, training=True, check_finite=True, workspace=None):
    """Inverted dropout: zero each unit with probability ``rate``, scale the rest by
    ``1 / (1 - rate)`` so that ``E[out] = x``.

    Parameters
    ----------
    x : non-empty array of any shape; float32 or float64 (other real input becomes float32).
    rate : float in [0, 1), the fraction dropped.
    seed : int in [0, 2**63).  The mask is a pure function of (seed, unit index): the same
        seed gives the same mask on either backend and any number of threads.
    training : False makes this the identity (``out`` is then a copy of x, never x itself).
    check_finite : raise ValueError on NaN/inf in x.

    Returns
    -------
    out : x's shape and dtype.
    cache : the uint8 keep-mask, the scale and x's shape, for ``dropout_backward``.

    >>> out, cache = dropout_forward(np.ones((2, 4)), 0.5, seed=0)
    >>> out
    array([[2., 0., 0., 2.],
           [0., 0., 0., 2.]])
    """
    x, rate, seed = checks.dropout_args(x, rate, seed, check_finite)
    if _use_reference() or not training:   # inference is a copy: the twin's one line
        return reference.dropout_forward(x, rate, seed, training=training, check_finite=False)
    out = _alloc(workspace, "dropout_out", x.shape, x.dtype)
    mask = _alloc(workspace, "dropout_mask", x.shape, np.uint8)
    scale = 1.0 / (1.0 - rate)
    _kernel("_dropout").dropout_forward(x.reshape(-1), out.reshape(-1), mask.reshape(-1), seed,
                                        reference.dropout_threshold(rate), scale,
                                        get_num_threads())
    return out, checks.dropout_cache(x, mask, scale)


def dropout_backward(dout, cache, check_finite=True, workspace=None):
    """Gradient of ``dropout_forward``: ``dx = dout * mask / (1 - rate)`` (a copy of dout
    when the forward pass was not training).  ``check_finite=False`` skips the NaN/inf scan
    of ``dout``."""
    dout = checks.dropout_dout(dout, cache, check_finite)
    mask = cache["mask"]
    if _use_reference() or mask is None:   # not training: a copy, the twin's one line
        return reference.dropout_backward(dout, cache, check_finite=False)
    dx = _alloc(workspace, "dropout_dx", dout.shape, dout.dtype)
    _kernel("_dropout").dropout_backward(dout.reshape(-1), mask.reshape(-1), dx.reshape(-1),
                                         cache["scale"], get_num_threads())
    return dx


# ===============================================================================================
# batch normalization  (section owned by the layers work)
# ===============================================================================================
def batch_norm_forward(x, gamma=None, beta=None, mean=None, variance=None, epsilon=1e-3,
                       check_finite=True):
    """Batch normalization per channel (the last axis) of ``(N, H, W, C)`` or ``(N, C)``:

        out = (x - mean[c]) / sqrt(variance[c] + epsilon) * gamma[c] + beta[c]

    Parameters
    ----------
    x : array ``(N, ..., C)``; float32 or float64 (other real input becomes float32).
    gamma, beta : arrays ``(C,)`` or None (1 and 0).
    mean, variance : arrays ``(C,)`` (inference: the moving averages), or both None to use the
        batch's statistics over the ``M = N * H * W`` values of each channel (training), with
        the biased variance ``sum((x - mean)**2) / M`` as Keras.
    epsilon : float > 0.
    check_finite : raise ValueError on NaN/inf in the inputs.

    Returns
    -------
    out : x's shape and dtype.
    cache : for ``batch_norm_backward``; ``cache["mean"]`` and ``cache["var"]`` are the
        statistics used (the batch's, in training: what the moving averages are updated with).
        Non-finite batch statistics raise ValueError (x with NaN/inf, or overflow).

    >>> out, cache = batch_norm_forward(np.array([[1.0], [3.0]]), epsilon=1e-12)
    >>> out.ravel().round(6), cache["mean"], cache["var"]
    (array([-1.,  1.]), array([2.]), array([1.]))
    """
    x, gamma, beta, mean, variance, epsilon = checks.batch_norm_args(x, gamma, beta, mean,
                                                                     variance, epsilon,
                                                                     check_finite)
    if _use_reference():
        return reference.batch_norm_forward(x, gamma, beta, mean, variance, epsilon,
                                            check_finite=False)
    kernel = _kernel("_batchnorm")
    C = x.shape[-1]
    x2 = x.reshape(-1, C)
    batch_stats = mean is None
    if batch_stats:
        mean64, var64 = np.empty(C), np.empty(C)
        kernel.batch_norm_stats(x2, mean64, var64, get_num_threads())
        checks.check_batch_stats(mean64, var64)
    else:
        mean64, var64 = mean.astype(np.float64), variance.astype(np.float64)
    m, inv_std, a, b = reference.batch_norm_coefficients(gamma, beta, mean64, var64, epsilon,
                                                         x.dtype)
    out = np.empty_like(x)
    kernel.batch_norm_apply(x2, m, a, b, out.reshape(-1, C), get_num_threads())
    cache = checks.batch_norm_cache(x, gamma, beta, m, var64.astype(x.dtype), inv_std,
                                    batch_stats)
    return out, cache


def batch_norm_backward(dout, cache, check_finite=True):
    """Gradients of ``batch_norm_forward``: ``(dx, dgamma, dbeta)``.

    Per channel, over its ``M`` values, with ``xhat = (x - mean) / sqrt(var + eps)``::

        dbeta = sum(dout)        dgamma = sum(dout * xhat)
        dx = gamma / sqrt(var + eps) * (dout - dbeta / M - xhat * dgamma / M)

    (the last two terms only when the forward pass used the batch's statistics, which then
    depend on x).  ``dgamma``/``dbeta`` are None when the forward pass had no gamma/beta.
    ``check_finite=False`` skips the NaN/inf scan of ``dout``.

    >>> x = np.random.default_rng(0).normal(size=(8, 3))
    >>> out, cache = batch_norm_forward(x)
    >>> dx, dgamma, dbeta = batch_norm_backward(np.ones_like(x), cache)
    >>> bool(np.abs(dx).max() < 1e-12), dbeta          # a constant shift is normalised away
    (True, None)
    """
    dout = checks.batch_norm_dout(dout, cache, check_finite)
    if _use_reference():
        return reference.batch_norm_backward(dout, cache, check_finite=False)
    x, gamma = cache["x"], cache["gamma"]
    C = x.shape[-1]
    dx = np.empty_like(x)
    dgamma, dbeta = np.empty(C), np.empty(C)
    g = gamma if gamma is not None else np.ones(C, dtype=x.dtype)
    _kernel("_batchnorm").batch_norm_backward(dout.reshape(-1, C), x.reshape(-1, C),
                                           cache["mean"], cache["inv_std"], g,
                                           dx.reshape(-1, C), dgamma, dbeta,
                                           cache["batch_stats"], get_num_threads())
    return (dx, None if gamma is None else dgamma.astype(x.dtype),
            dbeta.astype(x.dtype) if cache["has_beta"] else None)


# ===============================================================================================
# depthwise conv2d  (section owned by the layers work)
# ===============================================================================================
# The compiled kernel (``_kernels/_depthwise.pyx``) keeps the channels in the vector lanes, so a
# window tap is a whole vector whatever the stride or dilation; windows are clipped at the image's
# edges (no padded copy), and x is copied only when depth_multiplier > 1 or C is not a whole
# number of vectors.  (It replaced a loop that ran the one-channel conv2d kernel per channel:
# 30-100x slower on MobileNet-like layers.)

def depthwise_conv2d_forward(x, w, b=None, strides=1, padding="valid", dilation_rate=1,
                             activation=None, check_finite=True):
    """Depthwise 2-D convolution: each input channel convolved with its own filters.

    Parameters
    ----------
    x : array ``(N, H, W, C)``.
    w : array ``(kh, kw, C, dm)``: ``dm`` (depth_multiplier) filters per input channel.
    b : array ``(C * dm,)`` or None.
    strides, padding, dilation_rate : as ``conv2d_forward`` (a dilated kernel spans
        ``(kh - 1) * dh + 1`` rows; strides and dilation may be combined here).
    activation : None (or "linear") or a name of ``CONV2D_ACTIVATIONS``: f, applied by the
        kernel to each output row as it writes it, as ``conv2d_forward`` does; backward applies
        its derivative in its first pass over dout.
    check_finite : raise ValueError on NaN/inf in the inputs (skip the scan with False).

    Returns
    -------
    out : ``(N, H_out, W_out, C * dm)``; channel ``c * dm + m`` is f(input channel c convolved
        with ``w[:, :, c, m]``, plus its bias) (Keras's order).
    cache : for ``depthwise_conv2d_backward`` (with an activation it holds ``out``, which the
        derivative reads).

    >>> out, _ = depthwise_conv2d_forward(np.ones((1, 5, 5, 3)), np.ones((3, 3, 3, 2)))
    >>> out.shape
    (1, 3, 3, 6)
    >>> depthwise_conv2d_forward(np.ones((1, 5, 5, 3)), np.ones((3, 3, 3, 2)),
    ...                          dilation_rate=2)[0].shape
    (1, 1, 1, 6)
    >>> depthwise_conv2d_forward(np.ones((1, 3, 3, 1)), -np.ones((3, 3, 1, 1)),
    ...                          activation="relu")[0].ravel()
    array([0.])
    """
    x, w, b, (sh, sw), pads, out_shape = checks.depthwise_args(x, w, b, strides, padding,
                                                               check_finite, dilation_rate)
    activation = checks.conv_activation(activation)
    dh, dw = checks.as_pair(dilation_rate, "dilation_rate")
    if _use_reference():
        return reference.depthwise_conv2d_forward(x, w, b, (sh, sw), _pad_pairs(pads),
                                                  (dh, dw), activation, check_finite=False)
    out = np.empty(out_shape, dtype=x.dtype)
    bias = b if b is not None else np.zeros(out_shape[3], dtype=x.dtype)
    _kernel("_depthwise").depthwise_conv2d_forward(x, w, bias, out, sh, sw, pads[0], pads[2],
                                                   get_num_threads(), dh, dw, activation)
    return out, checks.depthwise_cache(x, w, b, (sh, sw), pads, (dh, dw), activation, out)


def depthwise_conv2d_backward(dout, cache, check_finite=True):
    """Gradients of ``depthwise_conv2d_forward``: ``(dx, dw, db)``; per input channel c, the
    conv2d gradients of its one-channel convolution, from ``dz = dout * f'(z)`` (the forward
    pass's activation f; dout itself without one), computed by the kernel in the pass that
    sums db (``db`` None without a bias; db is summed in double precision)."""
    dout = checks.depthwise_dout(dout, cache, check_finite)
    if _use_reference():
        return reference.depthwise_conv2d_backward(dout, cache, check_finite=False)
    x, w = cache["x"], cache["w"]
    (sh, sw), (pt, _, pl, _) = cache["strides"], cache["pads"]
    dilation = cache.get("dilation", (1, 1))
    dx, dw = np.empty_like(x), np.empty_like(w)     # the kernel writes every value
    db = np.empty(dout.shape[3], dtype=x.dtype)
    _kernel("_depthwise").depthwise_conv2d_backward(dout, x, w, dx, dw, db, sh, sw, pt, pl,
                                                    get_num_threads(), *dilation,
                                                    cache.get("activation", "linear"),
                                                    cache.get("y"))
    db = db if cache["has_bias"] else None
    return dx, dw, db


# ===============================================================================================
# elementwise activations  (compiled: _kernels/_activation.pyx, C in _kernels/_mathfn.h)
# ===============================================================================================
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _activation_name(name, backward=False):
    known = reference._ACTIVATION_BACKWARD if backward else reference._ACTIVATION_FORWARD
    if name not in known:
        raise ValueError(f"activation must be one of {', '.join(sorted(known))}, got {name!r}")


def _kernel_array(a):
    """Is ``a`` an array the kernel reads as it is (float32/64, C-contiguous)?"""
    return isinstance(a, np.ndarray) and a.dtype in _FLOAT_DTYPES and a.flags.c_contiguous


def activation_forward(name, x, out=None, alpha=None, check_finite=True):
    """``y = f(x)`` elementwise, for ``name`` in relu, tanh, sigmoid, leaky_relu, elu,
    softplus, silu, exp, expm1 (``alpha``: elu's alpha, default 1, or leaky_relu's slope,
    default 0.2).

    Parameters
    ----------
    x : array of any shape; float32 or float64 (other real input becomes float32).
    out : optional array of x's shape and dtype to write into (may be ``x`` itself).
    check_finite : raise ValueError on NaN/inf in x (the functions themselves propagate NaN
        and give the limits at +-inf).

    Returns ``y``, x's shape and dtype (``out`` when given).  Compiled, float32 is within
    2e-7 of the float64 value (tanh, sigmoid: ~1 ulp; exp: < 1 ulp relative), float64
    within a few ulp; twin: ``reference.activation_forward``.

    >>> activation_forward("sigmoid", np.array([-1000.0, 0.0, 1000.0]))
    array([0. , 0.5, 1. ])
    """
    _activation_name(name)
    if not _kernel_array(x):
        x = checks.as_float_array(x, "x", check_finite=False)
    if check_finite:
        checks.require_finite(x, "x")
    alpha = reference._activation_alpha(name, alpha)
    if _use_reference() or (out is not None and not (
            _kernel_array(out) and out.shape == x.shape and out.dtype == x.dtype)):
        return reference.activation_forward(name, x, out=out, alpha=alpha)
    y = np.empty_like(x) if out is None else out
    _kernel("_activation").forward(name, x.reshape(-1), y.reshape(-1), float(alpha),
                                   get_num_threads())
    return y


def activation_backward(name, dout, y, alpha=None, check_finite=True):
    """``dx = dout * f'(x)``, the derivative read from the output ``y = f(x)`` (for silu,
    whose derivative needs the input, pass x as ``y``).

    dout and y of one shape and dtype run compiled; anything else NumPy broadcasts and
    promotes (a scalar dout, mixed dtypes) runs the twin ``reference.activation_backward``.
    ``check_finite`` scans dout.

    >>> activation_backward("tanh", np.ones(2), np.array([0.0, 0.5]))
    array([1.  , 0.75])
    """
    _activation_name(name, backward=True)
    alpha = reference._activation_alpha(name, alpha)
    if check_finite:
        checks.require_finite(np.asarray(dout), "dout")
    if (_use_reference() or not (_kernel_array(dout) and _kernel_array(y))
            or dout.shape != y.shape or dout.dtype != y.dtype):
        return reference.activation_backward(name, dout, y, alpha=alpha)
    dx = np.empty_like(dout)
    _kernel("_activation").backward(name, dout.reshape(-1), y.reshape(-1), dx.reshape(-1),
                                    float(alpha), get_num_threads())
    return dx


# ===============================================================================================
# dense  (compiled: _kernels/_activation.pyx, GEMM through scipy's BLAS + the fused epilogue)
# ===============================================================================================
def _dense_arrays(x, w, b, check_finite):
    w = checks.as_float_array(w, "w", check_finite=check_finite)
    if w.ndim != 2:
        raise ValueError(f"w must be a 2-D array (n_in, units), got shape {w.shape}")
    x = checks.as_float_array(x, "x", dtype=w.dtype, check_finite=check_finite)
    if x.ndim != 2 or x.shape[1] != w.shape[0]:
        raise ValueError(f"x must be a 2-D array (N, {w.shape[0]}) for w of shape {w.shape}, "
                         f"got shape {x.shape}")
    if b is not None:
        b = checks.as_float_array(b, "b", dtype=w.dtype, check_finite=check_finite)
        if b.shape != (w.shape[1],):
            raise ValueError(f"b must have shape ({w.shape[1]},) for w of shape {w.shape}, "
                             f"got {b.shape}")
    return x, w, b


# The activations dense_forward/_backward apply in the fused epilogue (derivative from y).
FUSED_ACTIVATIONS = frozenset({"linear"}) | frozenset(reference._ACTIVATION_BACKWARD)


def _dense_activation(activation):
    if activation != "linear":
        _activation_name(activation, backward=True)


def dense_forward(x, w, b=None, activation="linear", alpha=None, check_finite=True):
    """A fully connected layer's forward pass, ``y = f(x @ w + b)``.

    x (N, n_in), w (n_in, units), b (units,) or None; y (N, units) in w's dtype.  Compiled,
    the product runs in BLAS and the bias and activation (relu, tanh, sigmoid, leaky_relu, elu,
    softplus, silu or "linear") in one pass over its output (``_kernels/_mathfn.h``); twin
    ``reference.dense_forward``.

    >>> dense_forward(np.ones((2, 3)), np.ones((3, 2)), np.array([0.0, -3.0]), "relu")
    array([[3., 0.],
           [3., 0.]])
    """
    _dense_activation(activation)
    x, w, b = _dense_arrays(x, w, b, check_finite)
    alpha = reference._activation_alpha(activation, alpha)
    if _use_reference():
        return reference.dense_forward(x, w, b, activation, alpha)
    y = np.empty((x.shape[0], w.shape[1]), dtype=w.dtype)
    _kernel("_activation").dense_forward(x, w, b, y, activation, float(alpha))
    return y


def dense_backward(dout, x, w, y, activation="linear", alpha=None, use_bias=True,
                   need_dx=True, check_finite=True):
    """Gradients of ``dense_forward``: ``dz = dout * f'(y)`` (the derivative read from the
    output y; for silu pass the pre-activation), then ``dw = x.T @ dz``, ``db = dz.sum(0)``,
    ``dx = dz @ w.T``.  Compiled, dz and db come out of one pass over dout (db summed in
    float64) and the products run in BLAS; twin ``reference.dense_backward``.

    Returns ``(dx, dw, db)``: db None when ``use_bias`` is False, dx None when ``need_dx``
    is False.  ``check_finite`` scans dout.
    """
    _dense_activation(activation)
    x, w, _ = _dense_arrays(x, w, None, check_finite=False)
    shape = (x.shape[0], w.shape[1])
    dout = checks.as_float_array(dout, "dout", dtype=w.dtype, check_finite=check_finite)
    if dout.shape != shape:
        raise ValueError(f"dout must have shape {shape} (the output's), got {dout.shape}")
    y = dout if activation == "linear" else checks.as_float_array(y, "y", dtype=w.dtype,
                                                                  check_finite=False)
    if y.shape != shape:
        raise ValueError(f"y must have shape {shape} (the output's), got {y.shape}")
    alpha = reference._activation_alpha(activation, alpha)
    if _use_reference():
        return reference.dense_backward(dout, x, w, y, activation, alpha, use_bias, need_dx)
    dx = np.empty_like(x) if need_dx else None
    dw = np.empty_like(w)
    db = np.empty(w.shape[1], dtype=w.dtype) if use_bias else None
    _kernel("_activation").dense_backward(dout, x, w, y, activation, dx, dw, db, float(alpha),
                                          get_num_threads())
    return dx, dw, db
