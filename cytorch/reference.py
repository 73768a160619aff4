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

Every twin checks its arguments with the checks the front door uses (``cytorch._checks``),
so a direct call with bad input fails as clearly as a call through ``cytorch.functional``
(which passes ``check_finite=False``: it has scanned the arrays already).  This module needs
nothing else from cytorch: it can be read, and run, on its own.
"""
import numpy as np

from ._checks import (ShapeError, as_batch, as_float_array, as_pair, batch_norm_args,
                      batch_norm_cache, batch_norm_dout, check_batch_stats, conv_activation,
                      conv_args, conv_cache,
                      depthwise_args, depthwise_cache, depthwise_dout,
                      conv_dout, dropout_args, dropout_cache, dropout_dout, global_args,
                      global_cache, global_dout, pool_activation, pool_args, pool_cache, pool_dout,
                      window_output_shape)


# ===============================================================================================
# conv2d  (section owned by the conv kernel work)
# ===============================================================================================
def _conv_geometry(x_shape, w_shape, strides, padding, dilation=1):
    """Unpack ``(sh, sw)``, ``(pt, pb, pl, pr)``, ``(H_out, W_out)`` and ``(dh, dw)`` for an x
    and a w.  A kernel dilated by ``dh`` spans ``(kh - 1) * dh + 1`` rows.

    ``padding`` is anything ``cytorch._checks.resolve_padding`` accepts; ``cytorch.functional``
    passes it already resolved as ``((top, bottom), (left, right))``.
    """
    _, H, W, _ = x_shape
    kh, kw = w_shape[:2]
    sh, sw = as_pair(strides, "strides")
    dh, dw = as_pair(dilation, "dilation_rate")
    H_out, W_out, pads = window_output_shape(H, W, (kh - 1) * dh + 1, (kw - 1) * dw + 1,
                                             sh, sw, padding, what="conv2d")
    return (sh, sw), pads, (H_out, W_out), (dh, dw)


def im2col(x, kh, kw, strides=1, padding="valid", dilation_rate=1):
    """Unfold every ``kh x kw`` window of ``x`` into one row of a matrix.

    x: ``(N, H, W, C)``  ->  cols: ``(N * H_out * W_out, kh * kw * C)``

    Row ``(n, i, j)`` holds the window whose top-left corner is at padded position
    ``(i * sh, j * sw)``, flattened in ``(kh, kw, C)`` order: the same order as
    ``w.reshape(kh * kw * C, K)``, so one matrix product computes every output at once.
    Zero padding appears as zeros in the rows.  With a ``dilation_rate`` ``(dh, dw)`` the
    window's cell ``(a, b)`` is the input cell ``(i * sh + a * dh, j * sw + b * dw)``: the
    window spreads out, the row keeps its ``kh * kw * C`` numbers.

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
    x = as_batch(x, "x")
    kh, kw = as_pair((kh, kw), "(kh, kw)")
    return _im2col(x, kh, kw, strides, padding, dilation_rate)


def _im2col(x, kh, kw, strides, padding, dilation=1):
    """``im2col`` of a validated x (what the conv twins call)."""
    N, H, W, C = x.shape
    (sh, sw), (pt, pb, pl, pr), (H_out, W_out), (dh, dw) = _conv_geometry(
        x.shape, (kh, kw), strides, padding, dilation)
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    cols = np.empty((N, H_out, W_out, kh, kw, C), dtype=x.dtype)
    for a in range(kh):
        for b in range(kw):
            # rows a*dh, a*dh + sh, ..., a*dh + (H_out - 1) * sh; same for columns
            cols[:, :, :, a, b, :] = xp[:, a * dh:a * dh + sh * H_out:sh,
                                        b * dw:b * dw + sw * W_out:sw, :]
    return cols.reshape(N * H_out * W_out, kh * kw * C)


def col2im(cols, x_shape, kh, kw, strides=1, padding="valid", dilation_rate=1):
    """The adjoint of ``im2col``: fold rows back into an ``(N, H, W, C)`` image, summing overlaps.

    cols: ``(N * H_out * W_out, kh * kw * C)``  ->  ``(N, H, W, C)``

    Where windows overlap (stride < kernel size) one input pixel appears in several rows; its
    gradient is the sum of all of them.  Values that landed in the zero padding are dropped.
    ``col2im(im2col(x))`` is therefore ``x`` times how many windows cover each pixel.
    """
    cols = as_float_array(cols, "cols")
    try:
        x_shape = tuple(as_pair(d, "x_shape")[0] for d in x_shape)
    except TypeError:
        x_shape = ()
    if len(x_shape) != 4:
        raise ShapeError(f"x_shape must be 4 positive ints (N, H, W, C), got {x_shape!r}")
    kh, kw = as_pair((kh, kw), "(kh, kw)")
    N, H, W, C = x_shape
    _, _, (H_out, W_out), _ = _conv_geometry(x_shape, (kh, kw), strides, padding,
                                             dilation_rate)
    expected = (N * H_out * W_out, kh * kw * C)
    if cols.shape != expected:
        raise ShapeError(f"cols must have shape (N * H_out * W_out, kh * kw * C) = {expected} "
                         f"for x_shape {x_shape}, got {cols.shape}")
    return _col2im(cols, x_shape, kh, kw, strides, padding, dilation_rate)


def _col2im(cols, x_shape, kh, kw, strides, padding, dilation=1):
    """``col2im`` of validated cols (what the conv twins call)."""
    N, H, W, C = x_shape
    (sh, sw), (pt, pb, pl, pr), (H_out, W_out), (dh, dw) = _conv_geometry(
        x_shape, (kh, kw), strides, padding, dilation)
    cols = cols.reshape(N, H_out, W_out, kh, kw, C)
    xp = np.zeros((N, H + pt + pb, W + pl + pr, C), dtype=cols.dtype)
    for a in range(kh):
        for b in range(kw):
            xp[:, a * dh:a * dh + sh * H_out:sh,
               b * dw:b * dw + sw * W_out:sw, :] += cols[:, :, :, a, b, :]
    return xp[:, pt:pt + H, pl:pl + W, :]


# -- the epilogue: the activation of a conv's output ---------------------------------------------
# ``conv2d_forward(..., activation="relu")`` is "conv, then + bias, then f" in one call.  The
# compiled kernels apply f in the same pass that writes each block of output (while it is in
# cache) instead of in a second pass over the whole array, and their backward multiplies dout by
# f' in its first pass over dout (the one that sums db).  As in ``cytorch.activations``, f' is
# written through the output y = f(z), so the cache keeps y and no copy of z.

def conv2d_activate(z, activation):
    """f(z), computed in z's own memory (returns z): the last step of ``conv2d_forward``.
    f is ``activation_forward(activation, ...)`` (relu, tanh, sigmoid, elu, leaky_relu,
    softplus with the parameters of Keras's strings), or nothing for "linear"."""
    if activation != "linear":
        activation_forward(activation, z, out=z)
    return z


def conv2d_activation_backward(dout, y, activation):
    """``dz = dout * f'(z)`` from the forward output ``y = f(z)``: the first step of
    ``conv2d_backward`` (``activation_backward``: relu ``[y > 0]``, tanh ``1 - y**2``, sigmoid
    ``y (1 - y)``, ...; dout itself for "linear")."""
    if activation != "linear":
        return activation_backward(activation, dout, y)
    return dout


def conv2d_forward(x, w, b=None, strides=1, padding="valid", dilation_rate=1, activation=None,
                   check_finite=True):
    """2-D convolution (cross-correlation, as in every deep-learning library) by im2col + GEMM.

    x: ``(N, H, W, C)``, w: ``(kh, kw, C, K)``, b: ``(K,)`` or None
    -> out: ``(N, H_out, W_out, K)`` with ``H_out = floor((H + P_top + P_bottom - kh) / sh) + 1``
    (same for W), and

        out[n, i, j, k] = f(b[k] + sum_{a, c, d} x_pad[n, i*sh + a, j*sw + c, d] * w[a, c, d, k])

    With a ``dilation_rate`` ``(dh, dw)`` tap ``(a, c)`` reads ``x_pad[n, i*sh + a*dh,
    j*sw + c*dw, d]`` instead, and the kernel's extent ``(kh - 1) * dh + 1`` takes kh's place
    in the size formula (Keras's rule).

    In matrix form: ``out = f(im2col(x) @ w.reshape(kh*kw*C, K) + b)``: conv, then + bias, then
    the ``activation`` f (None or "linear": none; see ``conv2d_activate``).  ``check_finite``:
    raise ValueError on NaN/inf in x, w or b.

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
    x, w, b, (sh, sw), pads, (N, H_out, W_out, K) = conv_args(x, w, b, strides, padding,
                                                              check_finite, dilation_rate)
    activation = conv_activation(activation)
    dilation = as_pair(dilation_rate, "dilation_rate")
    kh, kw, C, K = w.shape
    pt, pb, pl, pr = pads
    padding = ((pt, pb), (pl, pr))
    cols = _im2col(x, kh, kw, (sh, sw), padding, dilation)
    out = cols @ w.reshape(kh * kw * C, K)
    if b is not None:
        out += b
    out = conv2d_activate(out, activation).reshape(N, H_out, W_out, K)
    return out, conv_cache(x, w, b, (sh, sw), pads, dilation, activation, out)


def conv2d_backward(dout, cache, need_dx=True, check_finite=True):
    """Gradients of ``conv2d_forward`` given ``dout = dL/dout`` of shape ``(N, H_out, W_out, K)``.

    First through the activation, ``dz = dout * f'(z)`` (``conv2d_activation_backward``; dout
    itself when there is none); then, with ``cols = im2col(x)`` and ``W = w.reshape(kh*kw*C, K)``
    (and dz as ``(rows, K)``):

        dW = cols^T @ dz                -> reshaped to (kh, kw, C, K)
        dx = col2im(dz @ W^T)           -> (N, H, W, C)   (None with ``need_dx=False``)
        db = sum of dz over N, H_out, W_out     (None when the forward pass had no bias)

    ``cols`` is recomputed here rather than kept from the forward pass: the cache then holds
    only ``x`` and ``w``, which the caller keeps alive anyway, and is the same for both twins.
    ``check_finite``: raise ValueError on NaN/inf in dout.
    """
    dout = conv_dout(dout, cache, check_finite)
    dout = conv2d_activation_backward(dout, cache.get("y"), cache.get("activation", "linear"))
    x, w = cache["x"], cache["w"]
    kh, kw, C, K = w.shape
    (pt, pb, pl, pr), strides = cache["pads"], cache["strides"]
    dilation = cache.get("dilation", (1, 1))
    padding = ((pt, pb), (pl, pr))
    dout2 = dout.reshape(-1, K)
    cols = _im2col(x, kh, kw, strides, padding, dilation)
    dw = (cols.T @ dout2).reshape(w.shape)
    dx = None
    if need_dx:
        dx = _col2im(dout2 @ w.reshape(kh * kw * C, K).T, x.shape, kh, kw, strides, padding,
                     dilation)
    db = dout2.sum(axis=0) if cache["has_bias"] else None
    return dx, dw, db


def conv2d_naive(x, w, b=None, strides=1, padding="valid", dilation_rate=1):
    """The convolution written as its definition, one output number at a time (slow; teaching).

    Same arguments and output as ``conv2d_forward`` (without the cache): for each image ``n``,
    output position ``(i, j)`` and filter ``k``, take the ``kh x kw x C`` window of the padded
    input under the filter and sum its elementwise product with ``w[:, :, :, k]``.  A dilated
    window takes every ``dh``-th row and ``dw``-th column of a ``(kh - 1) * dh + 1`` tall,
    ``(kw - 1) * dw + 1`` wide patch.

    >>> x = np.arange(49.0).reshape(1, 7, 7, 1)
    >>> w = np.ones((3, 3, 1, 1))
    >>> conv2d_naive(x, w).shape, conv2d_naive(x, w, strides=2).shape
    ((1, 5, 5, 1), (1, 3, 3, 1))
    >>> conv2d_naive(x, w, padding=1).shape
    (1, 7, 7, 1)
    """
    x, w, b, (sh, sw), (pt, pb, pl, pr), (N, H_out, W_out, K) = conv_args(
        x, w, b, strides, padding, True, dilation_rate)
    dh, dw = as_pair(dilation_rate, "dilation_rate")
    kh, kw = (w.shape[0] - 1) * dh + 1, (w.shape[1] - 1) * dw + 1   # the window's extent
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    out = np.zeros((N, H_out, W_out, K), dtype=x.dtype)
    for n in range(N):
        for i in range(H_out):
            for j in range(W_out):
                window = xp[n, i * sh:i * sh + kh:dh, j * sw:j * sw + kw:dw, :]
                for k in range(K):
                    out[n, i, j, k] = np.sum(window * w[:, :, :, k])
    if b is not None:
        out += b
    return out


def conv2d_shift_add_forward(x, w, b=None, padding="valid", activation=None, check_finite=True):
    """Stride-1 convolution as a sum of shifted images: the twin of the direct path
    (``cytorch/_kernels/_direct.pyx``, the thinnest layers) and of the blocked path
    (``_blocked.pyx``, LeNet's two layers).

    x: ``(N, H, W, C)``, w: ``(kh, kw, C, K)``, b: ``(K,)`` or None -> out, cache as
    ``conv2d_forward`` with ``strides=1``.  Tap ``(a, b)`` of the kernel sees the padded input
    shifted by ``a`` rows and ``b`` columns, one slice ``x_pad[:, a:a + H_out, b:b + W_out, :]``;
    each output pixel adds that slice's channels times the tap's ``C x K`` weights::

        out = b + sum_{a < kh, b < kw}  x_pad[:, a:a + H_out, b:b + W_out, :] @ w[a, b]

    No column matrix: kh * kw small products over the whole image instead of one big one.
    The compiled kernel adds the same terms, lane by lane in vector registers, and applies the
    ``activation`` (``conv2d_activate``) as it writes each output row.

    >>> x = np.arange(16.0).reshape(1, 4, 4, 1)
    >>> out, _ = conv2d_shift_add_forward(x, np.ones((2, 2, 1, 1)))
    >>> out[0, :, :, 0]
    array([[10., 14., 18.],
           [26., 30., 34.],
           [42., 46., 50.]])
    """
    x, w, b, _, pads, (N, H_out, W_out, K) = conv_args(x, w, b, 1, padding, check_finite)
    activation = conv_activation(activation)
    kh, kw = w.shape[:2]
    pt, pb, pl, pr = pads
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    out = np.zeros((N, H_out, W_out, K), dtype=x.dtype)
    for a in range(kh):
        for c in range(kw):
            out += xp[:, a:a + H_out, c:c + W_out, :] @ w[a, c]
    if b is not None:
        out += b
    out = conv2d_activate(out, activation)
    return out, conv_cache(x, w, b, (1, 1), pads, activation=activation, y=out)


def conv2d_shift_add_backward(dout, cache, need_dx=True, check_finite=True):
    """Gradients of ``conv2d_shift_add_forward`` (the direct path's backward), tap by tap.

    With ``S_ab = x_pad[:, a:a + H_out, b:b + W_out, :]``, the slice tap ``(a, b)`` saw::

        dw[a, b] = sum over (n, i, j) of  S_ab^T @ dout        (C x K: one product per tap)
        dx_pad[:, a:a + H_out, b:b + W_out, :] += dout @ w[a, b]^T     (then crop the padding)
        db = dout summed over (n, i, j)

    (dout there is ``dz``, the gradient through the activation, ``conv2d_activation_backward``).
    ``dx`` is None with ``need_dx=False``, ``db`` None when the forward pass had no bias;
    ``check_finite``: raise ValueError on NaN/inf in dout.  The compiled kernel computes dx as
    the correlation of dout with the kernel turned around; the sums are the same.
    """
    dout = conv_dout(dout, cache, check_finite)
    dout = conv2d_activation_backward(dout, cache.get("y"), cache.get("activation", "linear"))
    x, w = cache["x"], cache["w"]
    if tuple(cache["strides"]) != (1, 1) or tuple(cache.get("dilation", (1, 1))) != (1, 1):
        raise ValueError(f"conv2d_shift_add_backward needs a stride-1, undilated cache, got "
                         f"strides {cache['strides']}, dilation {cache.get('dilation', (1, 1))}")
    N, H, W, C = x.shape
    kh, kw, _, K = w.shape
    _, H_out, W_out, _ = dout.shape
    pt, pb, pl, pr = cache["pads"]
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    d2 = dout.reshape(-1, K)
    dw = np.empty_like(w)
    dxp = np.zeros_like(xp) if need_dx else None
    for a in range(kh):
        for c in range(kw):
            tap = xp[:, a:a + H_out, c:c + W_out, :]
            dw[a, c] = tap.reshape(-1, C).T @ d2
            if need_dx:
                dxp[:, a:a + H_out, c:c + W_out, :] += dout @ w[a, c].T
    dx = dxp[:, pt:pt + H, pl:pl + W, :] if need_dx else None
    db = d2.sum(axis=0) if cache["has_bias"] else None
    return dx, dw, db


# -- Winograd's minimal filtering, F(2x2, 3x3) and F(4x4, 3x3) -----------------------------------
# The twin of ``cytorch/_kernels/_winograd.pyx``, which 3x3 stride-1 layers with enough channels
# run (VGG's).  Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016),
# after Winograd (1980).  F(m, 3) computes m outputs of a 3-tap correlation from m + 2 inputs
# with m + 2 multiplications, ``y = A^T [(G g) * (B^T d)]`` (``*`` elementwise).
#
# The matrices of F(2, 3), for 2 outputs from 4 inputs (points 0, 1, -1 and infinity):
WINOGRAD_BT = np.array([[1, 0, -1, 0],
                        [0, 1, 1, 0],
                        [0, -1, 1, 0],
                        [0, 1, 0, -1]], dtype=np.float64)     # B^T: 4 inputs -> 4 "transformed"
WINOGRAD_G = np.array([[1, 0, 0],
                       [0.5, 0.5, 0.5],
                       [0.5, -0.5, 0.5],
                       [0, 0, 1]], dtype=np.float64)          # G: 3 filter taps -> 4
WINOGRAD_AT = np.array([[1, 1, 1, 0],
                        [0, 1, -1, -1]], dtype=np.float64)    # A^T: 4 products -> 2 outputs

# The matrices of F(4, 3), for 4 outputs from 6 inputs (points 0, 1, -1, 2, -2 and infinity;
# Lavin and Gray's, as ``winograd_matrices`` derives them): B^T and A^T hold 2, 4, 5, 8 and G
# 1/6 and 1/24, where F(2, 3)'s held 1 and 1/2 -- the price in rounding of 36 multiplications
# per 4x4 tile instead of 64 per four 2x2 tiles.
WINOGRAD4_BT = np.array([[4, 0, -5, 0, 1, 0],
                         [0, -4, -4, 1, 1, 0],
                         [0, 4, -4, -1, 1, 0],
                         [0, -2, -1, 2, 1, 0],
                         [0, 2, -1, -2, 1, 0],
                         [0, 4, 0, -5, 0, 1]], dtype=np.float64)   # B^T: 6 inputs -> 6
WINOGRAD4_G = np.array([[1 / 4, 0, 0],
                        [-1 / 6, -1 / 6, -1 / 6],
                        [-1 / 6, 1 / 6, -1 / 6],
                        [1 / 24, 1 / 12, 1 / 6],
                        [1 / 24, -1 / 12, 1 / 6],
                        [0, 0, 1]], dtype=np.float64)               # G: 3 taps -> 6
WINOGRAD4_AT = np.array([[1, 1, 1, 1, 1, 0],
                         [0, 1, -1, 2, -2, 0],
                         [0, 1, 1, 4, 4, 0],
                         [0, 1, -1, 8, -8, 1]], dtype=np.float64)   # A^T: 6 products -> 4

#: output tile size m -> (B^T, G, A^T) of F(m, 3)
WINOGRAD_MATRICES = {2: (WINOGRAD_BT, WINOGRAD_G, WINOGRAD_AT),
                     4: (WINOGRAD4_BT, WINOGRAD4_G, WINOGRAD4_AT)}


def winograd_matrices(points, r=3):
    """``(B^T, G, A^T)`` of F(m, r), ``m = len(points) + 2 - r``, by Toom-Cook: where the
    matrices come from, and why the points matter.

    A correlation of m outputs with an r-tap filter is the transpose of the linear convolution
    of an m-coefficient polynomial h with the filter's polynomial g, whose product has
    ``n = m + r - 1`` coefficients.  Toom-Cook computes that product from its values at n
    points: evaluate h and g there (``V_m h``, ``V_r g``: Vandermonde rows ``(1, p, p^2, ...)``;
    the point "infinity" takes a polynomial's leading coefficient, row ``(0, ..., 0, 1)``),
    multiply the n values pairwise -- the only n multiplications that depend on both -- and
    interpolate (``V_n^-1``).  Transposed, for the correlation ``y = A^T [(G g) * (B^T d)]``::

        A^T = V_m^T   (m x n)      G = V_r   (n x r)      B^T = V_n^-T   (n x n)

    Any scale of point j may move between column j of A^T, row j of G and row j of B^T (their
    product must stay 1): Lavin and Gray's matrices (``WINOGRAD_MATRICES``) move them so that
    B^T holds integers.  The entries are powers of the points (and the inverse of a Vandermonde
    matrix, divided by differences of points), so the points are chosen small: 0 and infinity
    cost nothing (a value is a single coefficient), 1 and -1 only additions, 2 and -2 factors
    of 2, 4 and 8 (exact in floating point) but also the 5 and 1/24 that come with them.
    F(6, 3) would need 1/2 and -1/2 or 3 and -3 next, and its float32 error grows again.

    >>> BT, G, AT = winograd_matrices([0, 1, -1])           # F(2, 3): 4 points with infinity
    >>> AT
    array([[ 1.,  1.,  1.,  0.],
           [ 0.,  1., -1.,  1.]])
    """
    pts = [float(p) for p in points]
    n = len(pts) + 1
    m = n + 1 - r

    def vandermonde(cols):                   # n rows: the finite points, then infinity
        rows = [[p ** i for i in range(cols)] for p in pts]
        return np.array(rows + [[0.0] * (cols - 1) + [1.0]])

    return np.linalg.inv(vandermonde(n)).T, vandermonde(r), vandermonde(m).T


def _place(x, top, left, rows, cols):
    """A zero canvas ``(N, rows, cols, C)`` with x's pixel ``(i, j)`` at ``(top + i, left + j)``;
    whatever falls outside the canvas is cut off (a negative top or left crops x)."""
    N, H, W, C = x.shape
    canvas = np.zeros((N, rows, cols, C), dtype=x.dtype)
    r0, c0, i0, j0 = max(top, 0), max(left, 0), max(-top, 0), max(-left, 0)
    h, w = min(H - i0, rows - r0), min(W - j0, cols - c0)
    if h > 0 and w > 0:
        canvas[:, r0:r0 + h, c0:c0 + w] = x[:, i0:i0 + h, j0:j0 + w]
    return canvas


def _winograd_input_tiles(x, pt, pl, th, tw, m=2):
    """``V[i, j, n, ti, tj, c] = (B^T d B)[i, j]`` for the (m + 2) x (m + 2) input tile ``d`` of
    output tile ``(ti, tj)``: rows ``m*ti - pt ... m*ti - pt + m + 1`` of the padded input (zero
    outside x)."""
    a = m + 2
    xp = _place(x, pt, pl, m * th + 2, m * tw + 2)
    # cell (i, j) of every tile at once is one strided slice: tiles start every m pixels and
    # are m + 2 wide, so neighbouring tiles overlap by 2 rows / columns
    d = np.stack([np.stack([xp[:, i:i + m * th:m, j:j + m * tw:m, :] for j in range(a)])
                  for i in range(a)])                       # (a, a, N, th, tw, C)
    BT = WINOGRAD_MATRICES[m][0].astype(x.dtype)
    return np.einsum("ia,abntuc,jb->ijntuc", BT, d, BT)


def _winograd_correlate(x, w, pt, pl, H_out, W_out, m=2):
    """``out[n, i, j, k] = sum_{a, b, c} x[n, i + a - pt, j + b - pl, c] * w[a, b, c, k]``
    (zero outside x) for a 3x3 ``w``, by F(m x m, 3x3); the output is ``(N, H_out, W_out, K)``."""
    N, C, K = x.shape[0], x.shape[3], w.shape[3]
    a = m + 2
    th, tw = -(-H_out // m), -(-W_out // m)             # output tiles: ceil(H_out / m), ...
    V = _winograd_input_tiles(x, pt, pl, th, tw, m).reshape(a * a, N * th * tw, C)
    _, G, AT = (v.astype(x.dtype) for v in WINOGRAD_MATRICES[m])
    U = np.einsum("ia,abck,jb->ijck", G, w, G).reshape(a * a, C, K)   # G g G^T per (c, k)
    M = V @ U                        # a^2 GEMMs: (tiles x C) @ (C x K), one per (i, j)
    Y = np.einsum("pi,ijntuk,qj->ntpuqk", AT, M.reshape(a, a, N, th, tw, K), AT)
    return Y.reshape(N, m * th, m * tw, K)[:, :H_out, :W_out]   # ragged edge: drop the extra


def conv2d_winograd_forward(x, w, b=None, padding="valid", activation=None, check_finite=True,
                            tile=2):
    """3x3 stride-1 convolution by Winograd's F(2x2, 3x3) (``tile=2``) or F(4x4, 3x3)
    (``tile=4``): the twin of the Winograd path (``cytorch/_kernels/_winograd.pyx``, whose
    measured rule picks the tile).  Arguments, output and cache as ``conv2d_shift_add_forward``;
    ``w`` must be ``(3, 3, C, K)``.  The compiled kernel applies the ``activation``
    (``conv2d_activate``) to each output tile as it writes it.

    **One dimension first.**  Two outputs of a 3-tap correlation, ``y0 = d0 g0 + d1 g1 + d2 g2``
    and ``y1 = d1 g0 + d2 g1 + d3 g2``, take 6 multiplications.  Winograd's F(2, 3) needs 4::

        m0 = (d0 - d2) g0      m1 = (d1 + d2) (g0 + g1 + g2) / 2
        m3 = (d1 - d3) g2      m2 = (d2 - d1) (g0 - g1 + g2) / 2
        y0 = m0 + m1 + m2      y1 = m1 - m2 - m3

    In matrices: ``y = A^T [(G g) * (B^T d)]`` with ``*`` elementwise and ``WINOGRAD_BT``,
    ``WINOGRAD_G``, ``WINOGRAD_AT`` above.  The filter's part ``G g`` is computed once per
    filter, so each pair of outputs costs 4 multiplications instead of 6.  F(4, 3) gives 4
    outputs from 6 inputs with 6 multiplications instead of 12 (``WINOGRAD4_*``; where the
    matrices come from, and why the points 0, +-1, +-2 and infinity: ``winograd_matrices``).

    **Two dimensions.**  Nesting F(m, 3) in rows and columns gives F(m x m, 3x3): an m x m
    block of outputs (a *tile*) from the (m + 2) x (m + 2) input patch ``d`` under it::

        Y = A^T [ (G g G^T) * (B^T d B) ] A     m = 2: 16 multiplications instead of 36
                                                m = 4: 36 multiplications instead of 144

    **Channels turn the products into GEMMs.**  A conv sums over C input channels for each of
    K filters.  The transforms are linear, so the sum over c moves inside, and for each of the
    ``(m + 2)^2`` positions ``(i, j)`` of a transformed tile the products of all tiles, channels
    and filters are one matrix product::

        V[i, j] = (B^T d B)[i, j]   for every tile and channel        (tiles, C)
        U[i, j] = (G g G^T)[i, j]   for every channel and filter      (C, K)
        M[i, j] = V[i, j] @ U[i, j]                                   (tiles, K)
        Y       = A^T M A           per tile and filter, then the tiles are laid side by side

    Counted in multiplications per output, against the direct sum's 9: F(2x2, 3x3) 16 / 4 = 4
    (2.25 times fewer), F(4x4, 3x3) 36 / 16 = 2.25 (4 times fewer).

    **The trade-off.**  The bigger tile saves multiplications in the GEMMs (which dominate
    when C and K are large) and also transforms less per output: an input tile of 36 cells
    serves 16 outputs where one of 16 served 4 (per output and channel about 9 additions
    instead of 16 in B^T d B, and V and M hold 2.25 numbers per output instead of 4).  But each
    transform is a longer expression (B^T d B is 6 rows of 6 terms, with the factors 4 and 5),
    the tiles overlap as much (2 rows) and waste more at a ragged edge (an H_out of 9 needs 3
    tile rows, 12 outputs, where F(2x2, 3x3) computes 10), and there are 36 GEMMs of a third
    as many rows each, which are thinner.  And it rounds more: see **Accuracy**.  Which one is
    faster is measured (``benchmarks/bench_winograd_rule.py``): the rule beside the kernel.

    **Tiles, overlap and ragged edges.**  Output tile ``(ti, tj)`` covers outputs
    ``m*ti ... m*ti + m - 1`` (rows) and needs padded-input rows ``m*ti ... m*ti + m + 1``:
    input patches start every m pixels and overlap by 2.  ``ceil(H_out / m) x ceil(W_out / m)``
    tiles cover the output; when m does not divide ``H_out`` the last tile row computes extra
    output rows from zeros, which are thrown away.  The "same" (or any) zero padding is just
    more zeros around x.

    **Accuracy.**  ``B^T`` and ``A^T`` of F(2, 3) hold only 0 and +-1 and ``G`` also +-1/2, so
    F(2x2, 3x3) rounds about as much as the direct sum: on the VGG-ish layer (32 images
    32x32x32, 64 filters, "same") float32 is 9e-8 from float64, norm-wise relative, like
    im2col's 1.3e-7.  F(4x4, 3x3)'s matrices hold 2, 4, 5, 8 and 1/6, 1/24: a row of B^T adds
    up to 10 in absolute value and one of A^T to 19 (F(2, 3)'s: 2 and 3), so the transformed
    numbers are sums of terms much larger than the result, which cancel after float32 has
    rounded each: measured the same way, forward 5.5e-7, dx 8.5e-7, dw 7.1e-7 against
    F(2x2, 3x3)'s 8.6e-8, 1.3e-7, 1.6e-7 -- 6-7 times more, still far below issue 13's bound
    of 1e-4 (``tests/test_winograd.py`` measures both).  (Tiles bigger still, F(6x6, 3x3),
    need points such as +-1/2 or +-3, and the error grows about exponentially with the tile:
    Barabasz, Anderson, Soodhalter and Gregg, "Error analysis and improving the accuracy of
    Winograd convolution for deep neural networks", ACM TOMS 2020.)

    >>> x = np.random.default_rng(0).standard_normal((2, 5, 7, 3))
    >>> w = np.random.default_rng(1).standard_normal((3, 3, 3, 4))
    >>> out, _ = conv2d_winograd_forward(x, w, padding="same")
    >>> bool(np.allclose(out, conv2d_forward(x, w, padding="same")[0]))
    True
    >>> out4, _ = conv2d_winograd_forward(x, w, padding="same", tile=4)
    >>> bool(np.allclose(out4, out))
    True
    """
    x, w, b, _, pads, (N, H_out, W_out, K) = conv_args(x, w, b, 1, padding, check_finite)
    activation = conv_activation(activation)
    if w.shape[:2] != (3, 3):
        raise ShapeError(f"conv2d_winograd_forward computes 3x3 kernels, got a "
                         f"{w.shape[0]}x{w.shape[1]} kernel (w of shape {w.shape})")
    if tile not in WINOGRAD_MATRICES:
        raise ValueError(f"conv2d_winograd_forward: tile must be 2 (F(2x2, 3x3)) or 4 "
                         f"(F(4x4, 3x3)), got {tile!r}")
    out = _winograd_correlate(x, w, pads[0], pads[2], H_out, W_out, tile)
    if b is not None:
        out = out + b
    out = conv2d_activate(np.ascontiguousarray(out), activation)
    cache = conv_cache(x, w, b, (1, 1), pads, activation=activation, y=out)
    cache["tile"] = tile
    return out, cache


def conv2d_winograd_backward(dout, cache, need_dx=True, check_finite=True):
    """Gradients of ``conv2d_winograd_forward``: ``(dx, dw, db)`` as ``conv2d_backward``, with
    the forward pass's tile size m (``cache["tile"]``, 2 when absent).

    * ``dx`` is itself a stride-1 3x3 correlation, of dout with the kernel turned around
      (``w[::-1, ::-1]`` with C and K swapped) and padded by ``2 - pad`` on the top and left,
      so it runs F(m x m, 3x3) too, on tiles of dout.
    * ``dw`` runs the forward computation backwards (its adjoint).  The forward pass is linear
      in the filter: ``g -> U = G g G^T -> M = V @ U -> Y = A^T M A``.  Going back through each
      step with dY (dout, cut into the same m x m tiles, zero past a ragged edge)::

          dM = A dY A^T                    per tile and filter ((m + 2)^2 from m x m)
          dU[i, j] = V[i, j]^T @ dM[i, j]  (m + 2)^2 GEMMs (C x tiles) @ (tiles x K)
          dw = G^T dU G                    per (c, k): (m + 2)^2 back to 3x3

      which is exactly the gradient of what the forward pass computed.  (Winograd's F(3x3,
      2x2), the other way to get dw, would need its own transforms and tiles; the adjoint
      reuses the forward pass's input transform.)
    * ``db`` sums dout over ``(n, i, j)``.

    (dout there is ``dz``, the gradient through the activation, ``conv2d_activation_backward``.)
    """
    dout = conv_dout(dout, cache, check_finite)
    dout = conv2d_activation_backward(dout, cache.get("y"), cache.get("activation", "linear"))
    x, w = cache["x"], cache["w"]
    if (tuple(cache["strides"]) != (1, 1) or tuple(cache.get("dilation", (1, 1))) != (1, 1)
            or w.shape[:2] != (3, 3)):
        raise ValueError(f"conv2d_winograd_backward needs the cache of a 3x3 stride-1 undilated "
                         f"conv, got w {w.shape}, strides {cache['strides']}, "
                         f"dilation {cache.get('dilation', (1, 1))}")
    m = cache.get("tile", 2)
    a = m + 2
    N, H, W, C = x.shape
    _, H_out, W_out, K = dout.shape
    pt, _, pl, _ = cache["pads"]
    dx = None
    if need_dx:
        w2 = np.ascontiguousarray(w[::-1, ::-1].transpose(0, 1, 3, 2))   # (3, 3, K, C)
        dx = np.ascontiguousarray(_winograd_correlate(dout, w2, 2 - pt, 2 - pl, H, W, m))
    th, tw = -(-H_out // m), -(-W_out // m)
    V = _winograd_input_tiles(x, pt, pl, th, tw, m).reshape(a * a, -1, C)
    dY = _place(dout, 0, 0, m * th, m * tw).reshape(N, th, m, tw, m, K)
    _, G, AT = (v.astype(x.dtype) for v in WINOGRAD_MATRICES[m])
    dM = np.einsum("pi,ntpuqk,qj->ijntuk", AT, dY, AT).reshape(a * a, -1, K)
    dU = (V.transpose(0, 2, 1) @ dM).reshape(a, a, C, K)
    dw = np.ascontiguousarray(np.einsum("ia,ijck,jb->abck", G, dU, G))
    db = dout.reshape(-1, K).sum(axis=0) if cache["has_bias"] else None
    return dx, dw, db


# ===============================================================================================
# pooling and dropout  (section owned by the pooling/dropout kernel work)
# ===============================================================================================
#
# Pooling summarises every (ph, pw) window of each channel separately; nothing mixes channels.
# Each twin loops over the ph * pw offsets (a, b) inside the window, never over the windows:
# offset (a, b) of every window at once is one strided slice of the padded input.  Padding is
# never a candidate: a padded cell cannot win a max or a min, and an average divides by the
# number of real cells of its window.  Max and min pooling also return, per output value, the
# flat index ``ih * W + iw`` of the winning cell (the first one in row-major order on ties), so
# backward can route the gradient without looking at x again.
#
# The pooling caches are plain dicts built by ``pool_cache``; the compiled path builds the
# very same dicts, so a forward pass on one backend can be followed by backward on the other.
#
# Each twin starts by checking its arguments with the front door's checks (rank, dtype, NaN,
# geometry; ``strides=None`` means "the window").  ``padding`` is anything
# ``cytorch._checks.resolve_padding`` accepts; the front door passes it already resolved.

def _window_offsets(x_shape, pool, strides, pads, out_hw):
    """Yield ``(rows, cols, real, flat)`` for each offset ``(a, b)`` of the window, row-major.

    * ``rows``, ``cols``: slices of the padded input; ``xp[:, rows, cols, :]`` is offset
      ``(a, b)`` of every window, shape ``(N, H_out, W_out, C)``;
    * ``real``: ``(H_out, W_out, 1)`` bool, True where that cell is inside the image;
    * ``flat``: ``(H_out, W_out, 1)`` int32, ``ih * W + iw`` of that cell (-1 in the padding).
    """
    _, H, W, _ = x_shape
    (ph, pw), (sh, sw), (pt, _, pl, _), (H_out, W_out) = pool, strides, pads, out_hw
    for a in range(ph):
        ih = np.arange(H_out) * sh - pt + a          # input row of offset a in each window
        for b in range(pw):
            iw = np.arange(W_out) * sw - pl + b
            real = ((ih >= 0) & (ih < H))[:, None] & ((iw >= 0) & (iw < W))[None, :]
            flat = np.where(real, ih[:, None] * W + iw[None, :], -1).astype(np.int32)
            rows = slice(a, a + sh * H_out, sh)
            cols = slice(b, b + sw * W_out, sw)
            yield rows, cols, real[:, :, None], flat[:, :, None]


def _extreme_pool2d_forward(x, pool_size, strides, padding, check_finite, kind,
                            activation=None, need_backward=True):
    """Max (``kind="max"``) or min (``kind="min"``) pooling: one implementation for both."""
    x, pool, strides, pads, (N, H_out, W_out, C) = pool_args(
        x, pool_size, strides, padding, check_finite, f"{kind}_pool2d")
    activation = pool_activation(activation, f"{kind}_pool2d")
    pt, pb, pl, pr = pads
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    out = np.zeros((N, H_out, W_out, C), dtype=x.dtype)
    argidx = np.zeros((N, H_out, W_out, C), dtype=np.int32)
    seen = np.zeros((H_out, W_out, 1), dtype=bool)   # has the window met a real cell yet?
    for rows, cols, real, flat in _window_offsets(x.shape, pool, strides, pads, (H_out, W_out)):
        v = xp[:, rows, cols, :]
        beats = v < out if kind == "min" else v > out   # strictly: ties keep the first cell
        take = real & (~seen | beats)
        out = np.where(take, v, out)
        argidx = np.where(take, flat, argidx)
        seen |= real
    return _pooled(kind, x, pool, strides, pads, out, argidx, activation, need_backward)


def _pooled(kind, x, pool, strides, pads, out, argidx, activation, need_backward):
    """``(out, cache)`` of max/min pooling: ReLU applied to ``out`` when asked (the max of
    relu(x) is relu of the max: ReLU is monotone), the winners dropped when no backward
    follows."""
    if activation is not None:
        out = activation_forward(activation, out)
    return out, pool_cache(kind, x, pool, strides, pads, argidx if need_backward else None,
                           activation, out if activation is not None else None)


def _pooling_activation_backward(dout, cache):
    """dout times the derivative of the pooling's activation (ReLU: ``[y > 0]``), if any."""
    if cache["activation"] is None:
        return dout
    return activation_backward(cache["activation"], dout, cache["y"])


def _extreme_pool2d_backward(dout, cache, check_finite, kind):
    """Route each ``dout`` value to its window's winner; overlapping windows add up."""
    dout = _pooling_activation_backward(pool_dout(kind, dout, cache, check_finite), cache)
    N, H, W, C = cache["x_shape"]
    pool, strides, pads = cache["pool_size"], cache["strides"], cache["pads"]
    pt, pb, pl, pr = pads
    argidx = cache["argidx"]
    dxp = np.zeros((N, H + pt + pb, W + pl + pr, C), dtype=dout.dtype)
    for rows, cols, real, flat in _window_offsets(cache["x_shape"], pool, strides, pads,
                                                  dout.shape[1:3]):
        dxp[:, rows, cols, :] += np.where(argidx == flat, dout, 0)
    return dxp[:, pt:pt + H, pl:pl + W, :]


def max_pool2d_forward(x, pool_size=2, strides=None, padding="valid", check_finite=True,
                       activation=None, need_backward=True):
    """Max pooling: the largest value of every ``(ph, pw)`` window, per channel.

    x: ``(N, H, W, C)`` -> out: ``(N, H_out, W_out, C)`` with
    ``H_out = floor((H + P_top + P_bottom - ph) / sh) + 1`` (same for W) and

        out[n, i, j, c] = max over real cells (ih, iw) of window (i, j) of x[n, ih, iw, c]

    where window (i, j) covers padded rows ``i*sh .. i*sh + ph - 1`` and columns
    ``j*sw .. j*sw + pw - 1``.  The cache holds ``argidx[n, i, j, c] = ih * W + iw`` of the
    winner (the first one, in row-major order, on ties).  ``check_finite``: raise ValueError on
    NaN/inf in x.  ``activation="relu"`` returns ``relu(out)`` (and backward multiplies dout
    by ``[out > 0]`` first); ``need_backward=False`` (inference) keeps no winners in the cache.

    The course's example, 2x2 windows with stride 2:

    >>> x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], dtype=float)
    >>> out, cache = max_pool2d_forward(x[None, :, :, None], 2)
    >>> out[0, :, :, 0]
    array([[6., 8.],
           [3., 4.]])
    """
    return _extreme_pool2d_forward(x, pool_size, strides, padding, check_finite, "max",
                                   activation, need_backward)


def max_pool2d_backward(dout, cache, check_finite=True):
    """Gradient of max pooling: ``dx[n, ih, iw, c] = sum of dout[n, i, j, c]`` over the windows
    ``(i, j)`` whose winner is ``(ih, iw)``; every other cell gets 0.

    dout: ``(N, H_out, W_out, C)`` -> dx: ``(N, H, W, C)``.  Only one cell per window receives
    gradient, because only one cell changes the output when nudged (ties: the first).
    """
    return _extreme_pool2d_backward(dout, cache, check_finite, "max")


def min_pool2d_forward(x, pool_size=2, strides=None, padding="valid", check_finite=True,
                       activation=None, need_backward=True):
    """Min pooling: the smallest value of every window (max pooling of ``-x``, negated).

    Same shapes, formula and cache as ``max_pool2d_forward`` with min in place of max.

    >>> x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], dtype=float)
    >>> min_pool2d_forward(x[None, :, :, None], 2)[0][0, :, :, 0]
    array([[1., 2.],
           [1., 0.]])
    """
    return _extreme_pool2d_forward(x, pool_size, strides, padding, check_finite, "min",
                                   activation, need_backward)


def min_pool2d_backward(dout, cache, check_finite=True):
    """Gradient of min pooling: ``dout`` goes to each window's smallest cell (ties: the first)."""
    return _extreme_pool2d_backward(dout, cache, check_finite, "min")


def avg_pool2d_forward(x, pool_size=2, strides=None, padding="valid", check_finite=True):
    """Average pooling: the mean of the real cells of every window.

    x: ``(N, H, W, C)`` -> out: ``(N, H_out, W_out, C)``, output size as for max pooling, and

        out[n, i, j, c] = (sum of x[n, ih, iw, c] over real cells of window (i, j)) / count[i, j]

    where ``count[i, j]`` is the number of real (unpadded) cells in window ``(i, j)``: padding
    does not drag border averages towards 0 (PyTorch's ``count_include_pad=False``).

    >>> x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], dtype=float)
    >>> avg_pool2d_forward(x[None, :, :, None], 2)[0][0, :, :, 0]
    array([[3.25, 5.25],
           [2.  , 2.  ]])
    """
    x, pool, strides, pads, (N, H_out, W_out, C) = pool_args(
        x, pool_size, strides, padding, check_finite, "avg_pool2d")
    pt, pb, pl, pr = pads
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    total = np.zeros((N, H_out, W_out, C), dtype=x.dtype)
    count = np.zeros((H_out, W_out, 1), dtype=x.dtype)
    for rows, cols, real, _ in _window_offsets(x.shape, pool, strides, pads, (H_out, W_out)):
        total += xp[:, rows, cols, :]   # padded cells hold 0 and add nothing
        count += real
    return total / count, pool_cache("avg", x, pool, strides, pads)


def avg_pool2d_backward(dout, cache, check_finite=True):
    """Gradient of average pooling: each real cell of window ``(i, j)`` receives
    ``dout[n, i, j, c] / count[i, j]``; cells in several windows add up their shares.

    dout: ``(N, H_out, W_out, C)`` -> dx: ``(N, H, W, C)``.
    """
    dout = pool_dout("avg", dout, cache, check_finite)
    N, H, W, C = cache["x_shape"]
    pool, strides, pads = cache["pool_size"], cache["strides"], cache["pads"]
    pt, pb, pl, pr = pads
    offsets = list(_window_offsets(cache["x_shape"], pool, strides, pads, dout.shape[1:3]))
    count = sum(real for _, _, real, _ in offsets).astype(dout.dtype)
    share = dout / count
    dxp = np.zeros((N, H + pt + pb, W + pl + pr, C), dtype=dout.dtype)
    for rows, cols, _, _ in offsets:
        dxp[:, rows, cols, :] += share   # what lands in the padding is cropped away
    return dxp[:, pt:pt + H, pl:pl + W, :]


# The fast path: 2x2 windows, stride 2, no padding (the pooling of LeNet and of most CNNs).
# The compiled kernels have their own row loops for it (``_pool.pyx``, ``_pool2x2.h``); these
# are their twins.  With no padding and no overlap, the windows are a reshape away: no loop.

def _windows_2x2(x):
    """The four cells of every 2x2 window: ``(N, H, W, C) -> (N, H//2, W//2, 4, C)``, in
    row-major order (top-left, top-right, bottom-left, bottom-right).  An odd last row or
    column belongs to no window and is left out."""
    N, H, W, C = x.shape
    H_out, W_out = H // 2, W // 2
    # v[n, i, a, j, b, c] = x[n, 2i + a, 2j + b, c]
    v = x[:, :2 * H_out, :2 * W_out].reshape(N, H_out, 2, W_out, 2, C)
    return v.transpose(0, 1, 3, 2, 4, 5).reshape(N, H_out, W_out, 4, C)


def _pool2d_2x2_forward(kind, x, check_finite, activation=None, need_backward=True):
    x, pool, strides, pads, (N, H_out, W_out, C) = pool_args(x, 2, 2, "valid", check_finite,
                                                              f"{kind}_pool2d")
    if kind != "avg":
        activation = pool_activation(activation, f"{kind}_pool2d")
    cells = _windows_2x2(x)
    if kind == "avg":
        # rows first, then columns, as the kernel adds them: the same bits
        out = ((cells[..., 0, :] + cells[..., 2, :]) + (cells[..., 1, :] + cells[..., 3, :])) \
            * x.dtype.type(0.25)
        return out, pool_cache("avg", x, pool, strides, pads)
    pick = np.argmin if kind == "min" else np.argmax   # the first winner on ties
    k = pick(cells, axis=3)                            # 0..3 = 2a + b within the window
    out = np.take_along_axis(cells, k[:, :, :, None, :], axis=3)[:, :, :, 0, :]
    i = np.arange(H_out)[:, None, None]
    j = np.arange(W_out)[None, :, None]
    argidx = (2 * i + k // 2) * x.shape[2] + 2 * j + k % 2       # ih * W + iw of the winner
    return _pooled(kind, x, pool, strides, pads, out, argidx.astype(np.int32), activation,
                   need_backward)


def _pool2d_2x2_backward(kind, dout, cache, check_finite):
    dout = pool_dout(kind, dout, cache, check_finite)
    if kind != "avg":
        dout = _pooling_activation_backward(dout, cache)
    if cache["pool_size"] != (2, 2) or cache["strides"] != (2, 2) or any(cache["pads"]):
        raise ValueError(f"{kind}_pool2d_2x2_backward needs the cache of a 2x2 stride-2 "
                         f"unpadded pooling, got pool_size {cache['pool_size']}, strides "
                         f"{cache['strides']}, pads {cache['pads']}")
    N, H, W, C = cache["x_shape"]
    _, H_out, W_out, _ = dout.shape
    if kind == "avg":
        cells = np.repeat(dout[:, :, :, None, :] * dout.dtype.type(0.25), 4, axis=3)
    else:
        # the winner's place in its window, back from ih * W + iw
        i = np.arange(H_out)[:, None, None]
        j = np.arange(W_out)[None, :, None]
        ih, iw = np.divmod(cache["argidx"], W)
        k = 2 * (ih - 2 * i) + (iw - 2 * j)
        cells = np.where(np.arange(4)[:, None] == k[:, :, :, None, :], dout[:, :, :, None, :],
                         dout.dtype.type(0))
    dx = np.zeros((N, H, W, C), dtype=dout.dtype)
    dx[:, :2 * H_out, :2 * W_out] = (cells.reshape(N, H_out, W_out, 2, 2, C)
                                     .transpose(0, 1, 3, 2, 4, 5)
                                     .reshape(N, 2 * H_out, 2 * W_out, C))
    return dx


def max_pool2d_2x2_forward(x, check_finite=True, activation=None, need_backward=True):
    """``max_pool2d_forward(x, 2)`` for 2x2 windows, stride 2, no padding, by a reshape: the
    twin of the compiled fast path.

    Each window's four cells ``x[2i:2i+2, 2j:2j+2]`` become one axis of length 4 (row-major),
    and the max is taken along it; ``argmax`` gives the first winner on ties, whose place
    ``k = 2a + b`` in the window is the cell ``(2i + a, 2j + b)``.  Same output and cache as
    ``max_pool2d_forward(x, 2)``, ``activation`` and ``need_backward`` too.  (With
    ``need_backward=False`` the compiled kernel does less: it reads each window's four blocks
    of C channels straight into vectors and never forms k; the values are the same.)

    >>> x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], dtype=float)
    >>> out, cache = max_pool2d_2x2_forward(x[None, :, :, None])
    >>> out[0, :, :, 0], cache["argidx"][0, :, :, 0]
    (array([[6., 8.],
           [3., 4.]]), array([[ 5,  7],
           [ 8, 15]], dtype=int32))
    """
    return _pool2d_2x2_forward("max", x, check_finite, activation, need_backward)


def max_pool2d_2x2_backward(dout, cache, check_finite=True):
    """``max_pool2d_backward`` for the 2x2 fast path: each window's four cells get ``dout`` at
    the winner and 0 elsewhere (cells no window covers: 0)."""
    return _pool2d_2x2_backward("max", dout, cache, check_finite)


def min_pool2d_2x2_forward(x, check_finite=True, activation=None, need_backward=True):
    """``min_pool2d_forward(x, 2)`` by a reshape, as ``max_pool2d_2x2_forward``."""
    return _pool2d_2x2_forward("min", x, check_finite, activation, need_backward)


def min_pool2d_2x2_backward(dout, cache, check_finite=True):
    """``min_pool2d_backward`` for the 2x2 fast path."""
    return _pool2d_2x2_backward("min", dout, cache, check_finite)


# Inference: a conv and the 2x2 max pooling after it in one call (predict and evaluate, through
# the graph pass ``conv_max_pool``).  The compiled kernel (``_blocked.pyx``) pools each image's
# conv output while it is in cache and never stores the whole map; the twin is the two steps.

def conv2d_max_pool2d_forward(x, w, b=None, strides=1, padding="valid", dilation_rate=1,
                              activation=None, check_finite=True):
    """A conv with its activation f, then the max of every 2x2 window (stride 2): for
    inference only (no cache: there is no backward).

    x ``(N, H, W, C)``, w ``(kh, kw, C, K)`` -> z = f(conv2d(x, w) + b) ``(N, H_c, W_c, K)`` as
    ``conv2d_forward`` -> out ``(N, H_c // 2, W_c // 2, K)`` with

        out[n, i, j, k] = max(z[n, 2i, 2j, k], z[n, 2i, 2j + 1, k],
                              z[n, 2i + 1, 2j, k], z[n, 2i + 1, 2j + 1, k])

    (an odd last row or column of z belongs to no window).  For f = ReLU the compiled kernel
    pools first and applies ReLU to the 4x smaller result: ReLU is monotone, so
    ``max(relu(z)) = relu(max(z))``, exactly.

    The course's example: the "X" filter on the 5x5 image gives a 3x3 map, whose one 2x2
    window holds 4, 3, 2, 4:

    >>> x = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1],
    ...               [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]], dtype=float)[None, :, :, None]
    >>> w = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=float)[:, :, None, None]
    >>> conv2d_max_pool2d_forward(x, w)[0, :, :, 0]
    array([[4.]])
    """
    z, _ = conv2d_forward(x, w, b, strides, padding, dilation_rate, activation, check_finite)
    window_output_shape(z.shape[1], z.shape[2], 2, 2, 2, 2, "valid",
                        what="conv2d_max_pool2d_forward's 2x2 pooling of the conv output")
    return max_pool2d_2x2_forward(z, check_finite=False, need_backward=False)[0]


def avg_pool2d_2x2_forward(x, check_finite=True):
    """``avg_pool2d_forward(x, 2)`` by a reshape: ``((top-left + bottom-left) + (top-right +
    bottom-right)) * 0.25``, the kernel's order of additions (so the same bits, where the
    general twin's ``sum / 4`` may differ in the last one)."""
    return _pool2d_2x2_forward("avg", x, check_finite)


def avg_pool2d_2x2_backward(dout, cache, check_finite=True):
    """``avg_pool2d_backward`` for the 2x2 fast path: each of a window's cells gets
    ``dout / 4``."""
    return _pool2d_2x2_backward("avg", dout, cache, check_finite)


# Global pooling: one window that is the whole map, (N, H, W, C) -> (N, C).

def _global_extreme_forward(x, check_finite, kind):
    x = global_args(kind, x, check_finite)
    N, H, W, C = x.shape
    flat = x.reshape(N, H * W, C)
    argidx = (np.argmin if kind == "min" else np.argmax)(flat, axis=1).astype(np.int32)
    out = np.take_along_axis(flat, argidx[:, None, :], axis=1)[:, 0, :]
    return out, global_cache(kind, x, argidx)


def _global_extreme_backward(dout, cache, check_finite, kind):
    dout = global_dout(kind, dout, cache, check_finite)
    N, H, W, C = cache["x_shape"]
    dx = np.zeros((N, H * W, C), dtype=dout.dtype)
    np.put_along_axis(dx, cache["argidx"][:, None, :], dout[:, None, :], axis=1)
    return dx.reshape(N, H, W, C)


def global_max_pool2d_forward(x, check_finite=True):
    """The largest value of each channel's whole map: ``out[n, c] = max_{h, w} x[n, h, w, c]``.

    x: ``(N, H, W, C)`` -> out: ``(N, C)``; the cache holds ``argidx[n, c] = h * W + w`` of
    the winner (the first in row-major order on ties, like ``np.argmax``).

    >>> x = np.arange(8.0).reshape(1, 2, 2, 2)
    >>> global_max_pool2d_forward(x)[0]
    array([[6., 7.]])
    """
    return _global_extreme_forward(x, check_finite, "max")


def global_max_pool2d_backward(dout, cache, check_finite=True):
    """``dx[n, h, w, c] = dout[n, c]`` at each channel's winner, 0 elsewhere.
    dout: ``(N, C)`` -> dx: ``(N, H, W, C)``."""
    return _global_extreme_backward(dout, cache, check_finite, "max")


def global_min_pool2d_forward(x, check_finite=True):
    """The smallest value of each channel's map: ``out[n, c] = min_{h, w} x[n, h, w, c]``.

    >>> x = np.arange(8.0).reshape(1, 2, 2, 2)
    >>> global_min_pool2d_forward(x)[0]
    array([[0., 1.]])
    """
    return _global_extreme_forward(x, check_finite, "min")


def global_min_pool2d_backward(dout, cache, check_finite=True):
    """``dx[n, h, w, c] = dout[n, c]`` at each channel's smallest cell, 0 elsewhere."""
    return _global_extreme_backward(dout, cache, check_finite, "min")


def global_avg_pool2d_forward(x, check_finite=True):
    """The mean of each channel's map: ``out[n, c] = sum_{h, w} x[n, h, w, c] / (H * W)``.

    The sum is accumulated in float64 even for float32 input (a 224x224 map adds 50,176
    numbers), then rounded to x's dtype.

    >>> x = np.arange(8.0).reshape(1, 2, 2, 2)
    >>> global_avg_pool2d_forward(x)[0]
    array([[3., 4.]])
    """
    x = global_args("avg", x, check_finite)
    N, H, W, C = x.shape
    out = (x.sum(axis=(1, 2), dtype=np.float64) / (H * W)).astype(x.dtype)
    return out, global_cache("avg", x)


def global_avg_pool2d_backward(dout, cache, check_finite=True):
    """Every cell gets an equal share: ``dx[n, h, w, c] = dout[n, c] / (H * W)``."""
    dout = global_dout("avg", dout, cache, check_finite)
    N, H, W, C = cache["x_shape"]
    share = dout / dout.dtype.type(H * W)
    return np.ascontiguousarray(np.broadcast_to(share[:, None, None, :], (N, H, W, C)))


# Dropout.  The mask comes from a counter-based generator: unit i of a call with seed s keeps
# its value when the i-th output of the splitmix64 stream started at s (Steele, Lea & Flood,
# "Fast splittable pseudorandom number generators", 2014) is large enough.  Each unit's random
# number depends only on (s, i), so the compiled kernel can compute them in any order on any
# number of threads and still produce this twin's mask bit for bit.

_SM_GAMMA = np.uint64(0x9E3779B97F4A7C15)   # 2**64 / golden ratio, the stream's increment
_SM_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_SM_MIX2 = np.uint64(0x94D049BB133111EB)


def splitmix64(seed, n):
    """The first ``n`` outputs of splitmix64 seeded with ``seed``, as a uint64 array.

    Output i (from 0) is ``mix(seed + (i + 1) * GAMMA)`` with all arithmetic modulo 2**64,
    where ``mix`` is two xor-shift-multiply rounds and a final xor-shift.

    >>> splitmix64(0, 2)
    array([16294208416658607535,  7960286522194355700], dtype=uint64)
    """
    z = np.uint64(seed) + np.arange(1, n + 1, dtype=np.uint64) * _SM_GAMMA
    z = (z ^ (z >> np.uint64(30))) * _SM_MIX1
    z = (z ^ (z >> np.uint64(27))) * _SM_MIX2
    return z ^ (z >> np.uint64(31))


def dropout_threshold(rate):
    """The integer cut of the keep test: unit i is dropped when ``u_i < floor(rate * 2**53)``,
    ``u_i`` being the top 53 bits of its random number (uniform on ``[0, 2**53)``), which
    happens with probability ``rate`` (to 2**-53).  Integers, so both twins agree exactly."""
    return int(rate * 2.0 ** 53)


def dropout_forward(x, rate, seed, training=True, check_finite=True):
    """Inverted dropout: drop each unit with probability ``rate``, scale the kept ones up.

    x: any shape -> out: x's shape and dtype, with

        out = x * mask / (1 - rate),   mask[i] = 1 if (splitmix64(seed)[i] >> 11) >= threshold

    (i counts the units in C order, threshold = ``dropout_threshold(rate)``; x must not be
    empty).  Scaling the
    survivors by ``1 / (1 - rate)`` keeps ``E[out] = x``, so at inference (``training=False``)
    the layer is the identity and nothing needs rescaling.  ``out`` is always a new array (an
    identity that returned ``x`` itself would let a later in-place update change the input).
    The cache holds the uint8 mask, the scale and x's shape.

    >>> out, cache = dropout_forward(np.ones(8), 0.5, seed=0)
    >>> out
    array([2., 0., 0., 2., 0., 0., 0., 2.])
    """
    x, rate, seed = dropout_args(x, rate, seed, check_finite)
    if not training:
        return x.copy(), dropout_cache(x, None, 1.0)
    u = splitmix64(seed, x.size) >> np.uint64(11)
    mask = (u >= np.uint64(dropout_threshold(rate))).astype(np.uint8).reshape(x.shape)
    scale = 1.0 / (1.0 - rate)
    # mask first: a dropped unit is exactly 0, a kept one exactly x * scale (the kernel's order)
    out = (x * mask) * x.dtype.type(scale)
    return out, dropout_cache(x, mask, scale)


def dropout_backward(dout, cache, check_finite=True):
    """``dx = dout * mask / (1 - rate)``: dropped units pass no gradient, kept ones the same
    scale as forward.  When the forward pass was not training, ``dx`` is a copy of ``dout``."""
    dout = dropout_dout(dout, cache, check_finite)
    mask = cache["mask"]
    if mask is None:
        return dout.copy()
    return (dout * mask) * dout.dtype.type(cache["scale"])


# ===============================================================================================
# batch normalization  (section owned by the layers work)
# ===============================================================================================
#
# Each channel is normalised over all its values in the batch: ``x`` is viewed as ``(M, C)``
# with ``M = N * H * W`` rows (``N`` for ``(N, C)`` vectors), one column per channel.  The
# statistics are summed in float64 whatever the dtype; the affine step runs in x's dtype.

def batch_norm_forward(x, gamma=None, beta=None, mean=None, variance=None, epsilon=1e-3,
                       check_finite=True):
    """Batch normalization of a channels-last batch, per channel ``c`` (the last axis):

        out = (x - mean[c]) / sqrt(variance[c] + epsilon) * gamma[c] + beta[c]

    x: ``(N, ..., C)`` (``(N, H, W, C)`` images or ``(N, C)`` vectors) -> out: same shape.

    * ``mean=None, variance=None`` (training): use the batch's own statistics over the
      ``M = N * H * W`` values of each channel, ``mean = sum(x) / M`` and the *biased*
      ``variance = sum((x - mean)**2) / M`` (Keras divides by M too; PyTorch's moving average
      uses ``M - 1``).  Every channel of the output then has mean ``beta`` and standard
      deviation ``gamma * sqrt(var / (var + eps))``.
    * given ``mean`` and ``variance`` (inference: the moving averages): a fixed affine map.

    ``gamma=None`` means 1 and ``beta=None`` means 0 (Keras's ``scale=False``/``center=False``).
    The cache holds the statistics used (``cache["mean"]``, ``cache["var"]``: with batch
    statistics, what a layer folds into its moving averages) and what backward needs.

    >>> x = np.array([[1.0], [3.0]])            # two samples, one channel: mean 2, variance 1
    >>> out, cache = batch_norm_forward(x, epsilon=1e-12)
    >>> out.ravel().round(6), cache["mean"], cache["var"]
    (array([-1.,  1.]), array([2.]), array([1.]))
    """
    x, gamma, beta, mean, variance, epsilon = batch_norm_args(x, gamma, beta, mean, variance,
                                                              epsilon, check_finite)
    C = x.shape[-1]
    x2 = x.reshape(-1, C)
    batch_stats = mean is None
    if batch_stats:
        mean64 = x2.sum(axis=0, dtype=np.float64) / x2.shape[0]
        var64 = ((x2 - mean64) ** 2).sum(axis=0) / x2.shape[0]
        check_batch_stats(mean64, var64)
    else:
        mean64, var64 = mean.astype(np.float64), variance.astype(np.float64)
    mean, inv_std, a, b = batch_norm_coefficients(gamma, beta, mean64, var64, epsilon,
                                                  x.dtype)
    cache = batch_norm_cache(x, gamma, beta, mean, var64.astype(x.dtype), inv_std, batch_stats)
    return (x - mean) * a + b, cache


def batch_norm_coefficients(gamma, beta, mean64, var64, epsilon, dtype):
    """Per-channel ``mean``, ``inv_std = 1 / sqrt(var + eps)``, ``a = gamma * inv_std`` and
    ``b = beta`` in ``dtype`` (computed in float64 from float64 statistics): the forward pass
    is then ``out = (x - mean) * a + b``.  Both twins use this."""
    C = mean64.shape[0]
    inv_std64 = 1.0 / np.sqrt(var64 + epsilon)
    g64 = np.ones(C) if gamma is None else gamma.astype(np.float64)
    b = np.zeros(C, dtype) if beta is None else beta.astype(dtype)
    return (mean64.astype(dtype), inv_std64.astype(dtype), (g64 * inv_std64).astype(dtype), b)


def batch_norm_backward(dout, cache, check_finite=True):
    """Gradients of ``batch_norm_forward``: ``(dx, dgamma, dbeta)`` for ``dout = dL/dout``.

    Per channel, with ``xhat = (x - mean) * inv_std``, ``inv_std = 1 / sqrt(var + eps)`` and
    the sums over the channel's ``M`` values::

        dbeta  = sum(dout)                 dgamma = sum(dout * xhat)
        dx = gamma * inv_std * (dout - dbeta / M - xhat * dgamma / M)    (batch statistics)
        dx = gamma * inv_std * dout                                       (given statistics)

    With batch statistics the mean and variance move with x: the two subtracted terms are
    their share (the gradient of a normalised channel is orthogonal to 1 and to xhat).
    ``dgamma``/``dbeta`` are None when the forward pass had no gamma/beta.
    """
    dout = batch_norm_dout(dout, cache, check_finite)
    x = cache["x"]
    C = x.shape[-1]
    x2, d2 = x.reshape(-1, C), dout.reshape(-1, C)
    M = x2.shape[0]
    mean, inv_std = cache["mean"], cache["inv_std"]
    gamma = cache["gamma"]
    dbeta64 = d2.sum(axis=0, dtype=np.float64)
    dgamma64 = (d2 * (x2 - mean)).sum(axis=0, dtype=np.float64) * inv_std
    g_is = (np.ones(C) if gamma is None else gamma.astype(np.float64)) * inv_std
    A = g_is.astype(x.dtype)
    if cache["batch_stats"]:
        B = (-g_is * inv_std * dgamma64 / M).astype(x.dtype)
        D = (-g_is * dbeta64 / M).astype(x.dtype)
        dx = A * d2 + (B * (x2 - mean) + D)
    else:
        dx = A * d2
    dgamma = None if gamma is None else dgamma64.astype(x.dtype)
    dbeta = dbeta64.astype(x.dtype) if cache["has_beta"] else None
    return dx.reshape(x.shape), dgamma, dbeta


# ===============================================================================================
# depthwise conv2d  (section owned by the layers work)
# ===============================================================================================
def depthwise_conv2d_forward(x, w, b=None, strides=1, padding="valid", dilation_rate=1,
                             activation=None, check_finite=True):
    """Depthwise 2-D convolution: every input channel is convolved with its own
    ``depth_multiplier`` filters, and channels never mix (MobileNet's first half of a
    separable convolution).

    x: ``(N, H, W, C)``, w: ``(kh, kw, C, dm)``, b: ``(C * dm,)`` or None
    -> out: ``(N, H_out, W_out, C * dm)``, output channel ``c * dm + m`` being

        out[n, i, j, c*dm + m] = b[c*dm + m]
                                 + sum_{a, d} x_pad[n, i*sh + a*dh, j*sw + d*dw, c] * w[a, d, c, m]

    (``(dh, dw)`` the ``dilation_rate``: a dilated 3x3 window spreads its 9 taps over
    ``(3 - 1) * dh + 1`` rows, and that extent takes kh's place in the output size.)

    With im2col's ``(kh, kw, C)`` rows viewed as ``(kh*kw, C)``, that is one small product per
    channel: ``out[r, c, m] = sum_k cols[r, k, c] * w[k, c, m]`` (an einsum).  A standard conv
    of the same window costs C times more multiply-adds.  Then + bias, then the ``activation``
    f, as ``conv2d_forward`` (``conv2d_activate``; None or "linear": none).

    >>> x = np.arange(8.0).reshape(1, 2, 2, 2)            # two channels
    >>> w = np.ones((2, 2, 2, 1)); w[..., 1, 0] = -1      # sum channel 0, minus-sum channel 1
    >>> depthwise_conv2d_forward(x, w)[0].ravel()
    array([ 12., -16.])
    >>> x = np.arange(25.0).reshape(1, 5, 5, 1)           # dilation 2: the 3x3 grid of even cells
    >>> depthwise_conv2d_forward(x, np.ones((3, 3, 1, 1)), dilation_rate=2)[0].ravel()
    array([108.])
    """
    x, w, b, strides, pads, (N, H_out, W_out, K) = depthwise_args(x, w, b, strides, padding,
                                                                 check_finite, dilation_rate)
    activation = conv_activation(activation)
    dilation = as_pair(dilation_rate, "dilation_rate")
    kh, kw, C, dm = w.shape
    padding = ((pads[0], pads[1]), (pads[2], pads[3]))
    cols = _im2col(x, kh, kw, strides, padding, dilation).reshape(-1, kh * kw, C)
    out = np.einsum("rkc,kcm->rcm", cols, w.reshape(kh * kw, C, dm)).reshape(N, H_out, W_out, K)
    if b is not None:
        out += b
    out = conv2d_activate(out, activation)
    return out, depthwise_cache(x, w, b, strides, pads, dilation, activation, out)


def depthwise_conv2d_backward(dout, cache, check_finite=True):
    """Gradients of ``depthwise_conv2d_forward``: ``(dx, dw, db)``.

    First through the activation, ``dout <- dout * f'(z)`` (``conv2d_activation_backward``);
    then per channel c, as for a conv with one input channel (``cols`` from im2col, viewed
    ``(rows, kh*kw, C)``, dilated like the forward pass)::

        dw[k, c, m] = sum_r cols[r, k, c] * dout[r, c, m]
        dx = col2im(dcols),  dcols[r, k, c] = sum_m dout[r, c, m] * w[k, c, m]
        db = dout summed over N, H_out, W_out   (None without a bias)
    """
    dout = depthwise_dout(dout, cache, check_finite)
    dout = conv2d_activation_backward(dout, cache.get("y"), cache.get("activation", "linear"))
    x, w = cache["x"], cache["w"]
    kh, kw, C, dm = w.shape
    pads, strides = cache["pads"], cache["strides"]
    dilation = cache.get("dilation", (1, 1))
    padding = ((pads[0], pads[1]), (pads[2], pads[3]))
    d3 = dout.reshape(-1, C, dm)
    cols = _im2col(x, kh, kw, strides, padding, dilation).reshape(-1, kh * kw, C)
    dw = np.einsum("rkc,rcm->kcm", cols, d3).reshape(w.shape)
    dcols = np.einsum("rcm,kcm->rkc", d3, w.reshape(kh * kw, C, dm))
    dx = _col2im(dcols.reshape(-1, kh * kw * C), x.shape, kh, kw, strides, padding, dilation)
    db = d3.reshape(-1, C * dm).sum(axis=0) if cache["has_bias"] else None
    return dx, dw, db


# ===============================================================================================
# elementwise activations  (twin of _kernels/_activation.pyx; its C is _kernels/_mathfn.h)
# ===============================================================================================
# Each derivative is written through the output y = f(x) (a layer keeps only y), except silu's,
# which needs x.  ``alpha`` is elu's alpha (default 1) or leaky_relu's slope (default 0.2, the
# Keras string's).  ``out=`` lets a layer overwrite a temporary it owns.

def _sigmoid(x, out=None):
    # exp(min(x, 0)) / (1 + exp(-|x|)): only exp of a number <= 0, so no overflow
    e = np.exp(-np.abs(x))
    return np.divide(np.where(x >= 0, 1, e), 1 + e, out=out)


def _into(y, x, out):
    """``y`` in x's dtype, written into ``out`` when one is given."""
    if out is None:
        return y.astype(x.dtype, copy=False)
    np.copyto(out, y)
    return out


_ACTIVATION_FORWARD = {
    "relu": lambda x, a, out: np.maximum(x, 0, out=out),
    "tanh": lambda x, a, out: np.tanh(x, out=out),
    "sigmoid": lambda x, a, out: _sigmoid(x, out),
    "leaky_relu": lambda x, a, out: _into(np.where(x > 0, x, x * a), x, out),
    # expm1 keeps small |x| exact; only the non-positive part is exponentiated
    "elu": lambda x, a, out: _into(np.where(x > 0, x, a * np.expm1(np.minimum(x, 0))), x, out),
    # log(1 + exp(x)) = logaddexp(0, x): no overflow for large x, no lost digits for small
    "softplus": lambda x, a, out: np.logaddexp(0, x, out=out),
    "silu": lambda x, a, out: np.multiply(x, _sigmoid(x), out=out),
    "exp": lambda x, a, out: np.exp(x, out=out),
    "expm1": lambda x, a, out: np.expm1(x, out=out),
}


def _tanh_backward(dout, y):
    # 1 - y*y in one new array (three temporaries would double the time on a conv output)
    dx = np.asarray(np.multiply(y, y, dtype=np.result_type(dout, y)))   # (0-d: an array)
    np.subtract(1, dx, out=dx)
    dx *= dout
    return dx


def _silu_backward(dout, x):
    s = _sigmoid(x)
    return dout * (s * (1 + x * (1 - s)))


_ACTIVATION_BACKWARD = {            # dx from dout and y (silu: and x)
    "relu": lambda dout, y, a: dout * (y > 0),
    "tanh": lambda dout, y, a: _tanh_backward(dout, y),
    "sigmoid": lambda dout, y, a: dout * y * (1 - y),
    "leaky_relu": lambda dout, y, a: dout * np.where(y > 0, 1, a).astype(y.dtype, copy=False),
    "elu": lambda dout, y, a: dout * np.where(y > 0, 1, y + a).astype(y.dtype, copy=False),
    # sigmoid(x) = 1 - exp(-y), written -expm1(-y) to stay exact when y is tiny
    "softplus": lambda dout, y, a: dout * -np.expm1(-y),
    "silu": lambda dout, x, a: _silu_backward(dout, x),
}
ACTIVATION_ALPHA = {"elu": 1.0, "leaky_relu": 0.2}     # Keras 3's defaults for the strings
# The functions whose backward reads the input x instead of the output y.
ACTIVATION_FROM_INPUT = frozenset({"silu"})


def _activation_alpha(name, alpha):
    return ACTIVATION_ALPHA.get(name, 0.0) if alpha is None else alpha


def activation_forward(name, x, out=None, alpha=None):
    """``y = f(x)`` elementwise for ``name`` in relu, tanh, sigmoid, leaky_relu, elu, softplus,
    silu (and the plain exp and expm1); ``out`` may be ``x``.

    These are the NumPy formulas (see ``cytorch.activations`` for each one's definition and
    derivative).  The compiled twin (``_kernels/_mathfn.h``) has no NumPy to call, so it
    computes exp itself, the classic way (Cody and Waite, 1980)::

        x = n ln2 + r,   n = round(x / ln2),   |r| <= ln2 / 2
        exp(x) = 2**n * exp(r)     2**n: integer arithmetic on the exponent bits
        exp(r) = 1 + r + r**2/2! + ... + r**13/13!      (float64; float32 uses Cephes'
                                                         degree-6 minimax polynomial)

    Reducing to a short interval is what makes a short polynomial enough: there the series'
    first omitted term, 0.35**14/14!, is below float64's rounding.  ``expm1`` keeps the
    reduction but never adds the 1 (so small x keep their digits).  tanh is then
    ``e / (e + 2)`` with ``e = expm1(2|x|)`` in float64 (exact near 0, where
    ``1 - 2/(exp(2x) + 1)`` would cancel to nothing), and in float32 Cephes' odd polynomial
    below ``|x| = 0.625``, ``1 - 2/(exp(2|x|) + 1)`` above (where the subtraction is harmless).

    >>> activation_forward("tanh", np.array([-1.0, 0.0, 20.0]))
    array([-0.76159416,  0.        ,  1.        ])
    """
    return _ACTIVATION_FORWARD[name](x, _activation_alpha(name, alpha), out)


def activation_backward(name, dout, y, alpha=None):
    """``dx = dout * f'(x)``, the derivative written through ``y = f(x)`` (silu: pass x as
    ``y``): tanh ``1 - y**2``, sigmoid ``y (1 - y)``, relu ``[y > 0]``, leaky_relu
    ``1 or alpha``, elu ``1 or y + alpha``, softplus ``1 - exp(-y)``.

    >>> activation_backward("tanh", np.ones(2), np.array([0.0, 0.5]))
    array([1.  , 0.75])
    """
    return _ACTIVATION_BACKWARD[name](dout, y, _activation_alpha(name, alpha))


# ===============================================================================================
# dense  (twin of _kernels/_activation.pyx's dense_forward/_backward: GEMM + fused epilogue)
# ===============================================================================================
def dense_forward(x, w, b=None, activation="linear", alpha=None):
    """``y = f(x @ w + b)``: x (N, n_in), w (n_in, units), b (units,) or None, y (N, units).

    >>> dense_forward(np.ones((2, 3)), np.ones((3, 2)), np.array([0.0, -3.0]), "relu")
    array([[3., 0.],
           [3., 0.]])
    """
    z = x @ w
    if b is not None:
        z += b
    if activation == "linear":
        return z
    return activation_forward(activation, z, out=z, alpha=alpha)


def dense_backward(dout, x, w, y, activation="linear", alpha=None, use_bias=True,
                   need_dx=True):
    """Gradients of ``dense_forward``, with ``dz = dout * f'(y)`` (silu: y is the
    pre-activation x @ w + b)::

        dw = x.T @ dz        db = dz.sum(axis=0)        dx = dz @ w.T

    Returns ``(dx, dw, db)``; ``db`` is None without a bias, ``dx`` None when not needed.
    """
    dz = dout if activation == "linear" else activation_backward(activation, dout, y, alpha)
    dx = dz @ w.T if need_dx else None
    return dx, x.T @ dz, dz.sum(axis=0) if use_bias else None
