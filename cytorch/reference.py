"""NumPy twins of every compiled kernel: same names, same signatures, same argument order.

Read these first.  They are written to be understood, then to be reasonably fast; the Cython
modules in ``cytorch/_kernels`` compute the same numbers (the tests compare them on random
shapes) and ``cytorch.backend("reference")`` runs these instead.

Layout contract, shared with the kernels:

* activations are channels-last, ``x`` has shape ``(N, H, W, C)``;
* conv kernels are ``(kh, kw, C, K)`` and biases ``(K,)``;
* im2col rows are ordered ``(kh, kw, C)``, so ``cols @ w.reshape(-1, K)`` is already
  ``(N, H_out, W_out, K)`` after a reshape;
* one spatial axis: ``H_out = floor((H + P_top + P_bottom - kh) / sh) + 1``.

Arguments arrive validated by ``cytorch.functional`` (contiguous float arrays, resolved padding).
"""
import numpy as np

from ._shapes import as_pair, window_output_shape


# ===============================================================================================
# conv2d  (section owned by the conv kernel work)
# ===============================================================================================
def _conv_geometry(x_shape, w_shape, strides, padding):
    """Unpack ``(sh, sw)``, ``(pt, pb, pl, pr)`` and ``(H_out, W_out)`` for an x and a w.

    ``padding`` is anything ``cytorch._shapes.resolve_padding`` accepts; ``cytorch.functional``
    passes it already resolved as ``((top, bottom), (left, right))``.
    """
    _, H, W, _ = x_shape
    kh, kw = w_shape[:2]
    sh, sw = as_pair(strides, "strides")
    H_out, W_out, pads = window_output_shape(H, W, kh, kw, sh, sw, padding, what="conv2d")
    return (sh, sw), pads, (H_out, W_out)


def im2col(x, kh, kw, strides=1, padding="valid"):
    """Unfold every ``kh x kw`` window of ``x`` into one row of a matrix.

    x: ``(N, H, W, C)``  ->  cols: ``(N * H_out * W_out, kh * kw * C)``

    Row ``(n, i, j)`` holds the window whose top-left corner is at padded position
    ``(i * sh, j * sw)``, flattened in ``(kh, kw, C)`` order: the same order as
    ``w.reshape(kh * kw * C, K)``, so one matrix product computes every output at once.
    Zero padding appears as zeros in the rows.

    Instead of looping over the ``N * H_out * W_out`` windows, loop over the ``kh * kw`` kernel
    offsets ``(a, b)``: offset ``(a, b)`` of every window is one strided slice of the padded
    input (the idea of Chainer's ``im2col``).

    >>> x = np.arange(16.0).reshape(1, 4, 4, 1)
    >>> im2col(x, 2, 2, strides=2)
    array([[ 0.,  1.,  4.,  5.],
           [ 2.,  3.,  6.,  7.],
           [ 8.,  9., 12., 13.],
           [10., 11., 14., 15.]])
    """
    N, H, W, C = x.shape
    (sh, sw), (pt, pb, pl, pr), (H_out, W_out) = _conv_geometry(
        x.shape, (kh, kw), strides, padding)
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    cols = np.empty((N, H_out, W_out, kh, kw, C), dtype=x.dtype)
    for a in range(kh):
        for b in range(kw):
            # rows a, a + sh, ..., a + (H_out - 1) * sh; same for columns
            cols[:, :, :, a, b, :] = xp[:, a:a + sh * H_out:sh, b:b + sw * W_out:sw, :]
    return cols.reshape(N * H_out * W_out, kh * kw * C)


def col2im(cols, x_shape, kh, kw, strides=1, padding="valid"):
    """The adjoint of ``im2col``: fold rows back into an ``(N, H, W, C)`` image, summing overlaps.

    cols: ``(N * H_out * W_out, kh * kw * C)``  ->  ``(N, H, W, C)``

    Where windows overlap (stride < kernel size) one input pixel appears in several rows; its
    gradient is the sum of all of them.  Values that landed in the zero padding are dropped.
    ``col2im(im2col(x))`` is therefore ``x`` times how many windows cover each pixel.
    """
    N, H, W, C = x_shape
    (sh, sw), (pt, pb, pl, pr), (H_out, W_out) = _conv_geometry(
        x_shape, (kh, kw), strides, padding)
    cols = cols.reshape(N, H_out, W_out, kh, kw, C)
    xp = np.zeros((N, H + pt + pb, W + pl + pr, C), dtype=cols.dtype)
    for a in range(kh):
        for b in range(kw):
            xp[:, a:a + sh * H_out:sh, b:b + sw * W_out:sw, :] += cols[:, :, :, a, b, :]
    return xp[:, pt:pt + H, pl:pl + W, :]


def conv2d_forward(x, w, b=None, strides=1, padding="valid", check_finite=True):
    """2-D convolution (cross-correlation, as in every deep-learning library) by im2col + GEMM.

    x: ``(N, H, W, C)``, w: ``(kh, kw, C, K)``, b: ``(K,)`` or None
    -> out: ``(N, H_out, W_out, K)`` with ``H_out = floor((H + P_top + P_bottom - kh) / sh) + 1``
    (same for W), and

        out[n, i, j, k] = b[k] + sum_{a, c, d} x_pad[n, i*sh + a, j*sw + c, d] * w[a, c, d, k]

    In matrix form: ``out = im2col(x) @ w.reshape(kh*kw*C, K) + b``.  ``check_finite`` is
    accepted for the shared signature; ``cytorch.functional`` does the checking.

    The course's worked example, a 5x5 binary image and an "X" filter:

    >>> x = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1],
    ...               [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]], dtype=float)[None, :, :, None]
    >>> w = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=float)[:, :, None, None]
    >>> out, _ = conv2d_forward(x, w)
    >>> out[0, :, :, 0]
    array([[4., 3., 4.],
           [2., 4., 3.],
           [2., 3., 4.]])
    """
    kh, kw, C, K = w.shape
    (sh, sw), pads, (H_out, W_out) = _conv_geometry(x.shape, w.shape, strides, padding)
    pt, pb, pl, pr = pads
    padding = ((pt, pb), (pl, pr))
    cols = im2col(x, kh, kw, (sh, sw), padding)
    out = cols @ w.reshape(kh * kw * C, K)
    if b is not None:
        out += b
    out = out.reshape(x.shape[0], H_out, W_out, K)
    cache = {"x": x, "w": w, "has_bias": b is not None, "strides": (sh, sw), "pads": pads}
    return out, cache


def conv2d_backward(dout, cache):
    """Gradients of ``conv2d_forward`` given ``dout = dL/dout`` of shape ``(N, H_out, W_out, K)``.

    With ``cols = im2col(x)`` and ``W = w.reshape(kh*kw*C, K)`` (and dout as ``(rows, K)``):

        dW = cols^T @ dout              -> reshaped to (kh, kw, C, K)
        dx = col2im(dout @ W^T)         -> (N, H, W, C)
        db = sum of dout over N, H_out, W_out   (None when the forward pass had no bias)

    ``cols`` is recomputed here rather than kept from the forward pass: the cache then holds
    only ``x`` and ``w``, which the caller keeps alive anyway, and is the same for both twins.
    """
    x, w = cache["x"], cache["w"]
    kh, kw, C, K = w.shape
    (pt, pb, pl, pr), strides = cache["pads"], cache["strides"]
    padding = ((pt, pb), (pl, pr))
    dout2 = dout.reshape(-1, K)
    cols = im2col(x, kh, kw, strides, padding)
    dw = (cols.T @ dout2).reshape(w.shape)
    dx = col2im(dout2 @ w.reshape(kh * kw * C, K).T, x.shape, kh, kw, strides, padding)
    db = dout2.sum(axis=0) if cache["has_bias"] else None
    return dx, dw, db


def conv2d_naive(x, w, b=None, strides=1, padding="valid"):
    """The convolution written as its definition, one output number at a time (slow; teaching).

    Same arguments and output as ``conv2d_forward`` (without the cache): for each image ``n``,
    output position ``(i, j)`` and filter ``k``, take the ``kh x kw x C`` window of the padded
    input under the filter and sum its elementwise product with ``w[:, :, :, k]``.

    >>> x = np.arange(49.0).reshape(1, 7, 7, 1)
    >>> w = np.ones((3, 3, 1, 1))
    >>> conv2d_naive(x, w).shape, conv2d_naive(x, w, strides=2).shape
    ((1, 5, 5, 1), (1, 3, 3, 1))
    >>> conv2d_naive(x, w, padding=1).shape
    (1, 7, 7, 1)
    """
    kh, kw, C, K = w.shape
    (sh, sw), (pt, pb, pl, pr), (H_out, W_out) = _conv_geometry(
        x.shape, w.shape, strides, padding)
    N = x.shape[0]
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    out = np.zeros((N, H_out, W_out, K), dtype=np.result_type(x, w))
    for n in range(N):
        for i in range(H_out):
            for j in range(W_out):
                window = xp[n, i * sh:i * sh + kh, j * sw:j * sw + kw, :]
                for k in range(K):
                    out[n, i, j, k] = np.sum(window * w[:, :, :, k])
    if b is not None:
        out += b
    return out


# ===============================================================================================
# pooling and dropout  (section owned by the pooling/dropout kernel work)
# ===============================================================================================
