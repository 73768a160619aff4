"""NumPy twin of the locally-connected kernel: read this first, then ``_lc.pyx``.

A locally-connected layer is a convolution *without weight sharing*: the window slides over the
input exactly as in ``Conv2D``, but every output position ``(i, j)`` has its own filters.

Shapes (channels-last, the same letters as the course and ``cytorch.reference``)::

    x    (N, H, W, C)                  input batch
    w    (H_out, W_out, P, K)          P = kh * kw * C: one (P, K) matrix per output position
    b    (H_out, W_out, K)             one bias per output position and filter (or None)
    cols (N, H_out, W_out, P)          the window under each position, rows ordered (kh, kw, C)
    out  (N, H_out, W_out, K)

    H_out = floor((H + P_top + P_bottom - kh) / sh) + 1      (likewise W_out)

Forward, one small matrix product per output position::

    out[:, i, j, :] = cols[:, i, j, :] @ w[i, j] + b[i, j]

Backward, with ``dout = dL/dout`` of shape ``(N, H_out, W_out, K)``::

    db[i, j]  = sum_n dout[n, i, j, :]                              (H_out, W_out, K)
    dw[i, j]  = cols[:, i, j, :].T @ dout[:, i, j, :]               (H_out, W_out, P, K)
    dcols[:, i, j, :] = dout[:, i, j, :] @ w[i, j].T                (N, H_out, W_out, P)
    dx = col2im(dcols): each window's gradient is added back where the window was read

A convolution is the special case ``w[i, j] == w[0, 0]`` for every position: then these are
exactly the ``conv2d`` formulas (``dw`` of the shared kernel is the sum of the ``dw[i, j]``).

>>> import numpy as np
>>> x = np.arange(2 * 4 * 4 * 1, dtype=np.float64).reshape(2, 4, 4, 1)
>>> w = np.ones((3, 3, 2 * 2 * 1, 5))          # 2x2 windows on a 4x4 input: 3x3 positions
>>> out, cache = locally_connected2d_forward(x, w, None, kernel_size=2)
>>> out.shape
(2, 3, 3, 5)
>>> float(out[0, 0, 0, 0]), float(x[0, :2, :2, 0].sum())   # all-ones filters add the window
(10.0, 10.0)
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cytorch.checks import as_pair, resolve_padding, window_output_shape


def _windows(x, kernel_size, strides, padding):
    """Pad ``x`` and return ``(cols, pads)``: the window under every output position.

    ``cols`` has shape ``(N, H_out, W_out, kh * kw * C)`` with rows ordered ``(kh, kw, C)``,
    the order in which ``w[i, j]`` lists its inputs.
    """
    N, H, W, C = x.shape
    kh, kw = as_pair(kernel_size, "kernel_size")
    sh, sw = as_pair(strides, "strides")
    H_out, W_out, pads = window_output_shape(H, W, kh, kw, sh, sw, padding)
    pt, pb, pl, pr = pads
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    # sliding_window_view gives every stride-1 window as (N, i, j, C, kh, kw); keep every
    # sh-th row and sw-th column of windows, then put the window axes before the channels.
    win = sliding_window_view(xp, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]
    win = win[:, :H_out, :W_out]
    cols = win.transpose(0, 1, 2, 4, 5, 3).reshape(N, H_out, W_out, kh * kw * C)
    return cols, pads


def locally_connected2d_forward(x, w, b, kernel_size, strides=1, padding="valid"):
    """Forward pass: ``out[n, i, j, :] = cols[n, i, j, :] @ w[i, j] + b[i, j]``.

    Parameters
    ----------
    x : ndarray (N, H, W, C)
    w : ndarray (H_out, W_out, kh * kw * C, K)
    b : ndarray (H_out, W_out, K) or None
    kernel_size, strides : int or pair
    padding : "valid", "same", "full", an int or a pair (see ``cytorch.checks.resolve_padding``)

    Returns
    -------
    out : ndarray (N, H_out, W_out, K), the dtype of ``x`` and ``w`` combined
    cache : dict, everything ``locally_connected2d_backward`` needs
    """
    cols, pads = _windows(x, kernel_size, strides, padding)
    # One (N, P) @ (P, K) product per position, done as a batched matmul over (i, j):
    # (H_out, W_out, N, P) @ (H_out, W_out, P, K) -> (H_out, W_out, N, K).
    out = np.matmul(cols.transpose(1, 2, 0, 3), w).transpose(2, 0, 1, 3)
    if b is not None:
        out = out + b
    out = np.ascontiguousarray(out, dtype=np.result_type(x, w))
    cache = {"cols": cols, "w": w, "x_shape": x.shape, "pads": pads,
             "kernel_size": as_pair(kernel_size, "kernel_size"),
             "strides": as_pair(strides, "strides"), "has_bias": b is not None}
    return out, cache


def locally_connected2d_backward(dout, cache):
    """Backward pass: ``(dx, dw, db)`` from ``dout`` of shape ``(N, H_out, W_out, K)``.

    ``db`` is None when the forward pass had no bias.  See the module docstring for the
    formulas.
    """
    cols, w = cache["cols"], cache["w"]
    N, H, W, C = cache["x_shape"]
    kh, kw = cache["kernel_size"]
    sh, sw = cache["strides"]
    pt, pb, pl, pr = cache["pads"]
    H_out, W_out = dout.shape[1:3]
    dtype = np.result_type(cols, w)

    dout_ij = dout.transpose(1, 2, 0, 3)                       # (H_out, W_out, N, K)
    db = dout.sum(axis=0).astype(dtype) if cache["has_bias"] else None
    dw = np.matmul(cols.transpose(1, 2, 3, 0), dout_ij).astype(dtype)   # (.., P, N) @ (.., N, K)
    dcols = np.matmul(dout_ij, w.transpose(0, 1, 3, 2))        # (H_out, W_out, N, P)
    dcols = dcols.transpose(2, 0, 1, 3).reshape(N, H_out, W_out, kh, kw, C)

    # col2im (after Chainer's utils/conv.py): window offset (a, c) of position (i, j) was
    # read from padded row a + i*sh, column c + j*sw; add its gradient back there.
    dxp = np.zeros((N, H + pt + pb, W + pl + pr, C), dtype=dtype)
    for a in range(kh):
        for c in range(kw):
            dxp[:, a:a + sh * H_out:sh, c:c + sw * W_out:sw, :] += dcols[:, :, :, a, c, :]
    dx = np.ascontiguousarray(dxp[:, pt:pt + H, pl:pl + W, :])
    return dx, dw, db
