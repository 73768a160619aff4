"""Output-size arithmetic shared by the kernels' front door, the layers and ``summary()``.

One spatial axis of a convolution or pooling window (course notation):

    out = floor((N + P_before + P_after - F) / S) + 1

``padding`` may be

* ``"valid"`` -- no padding, P = 0;
* ``"same"``  -- out = ceil(N / S); the total padding ``max((out - 1) * S + F - N, 0)`` is
  split like TensorFlow: the smaller half before, the larger half after;
* ``"full"``  -- P = F - 1 on both sides (every partial overlap is seen);
* an int ``p`` -- p on all four sides;
* a pair ``(ph, pw)`` -- ph top and bottom, pw left and right;
* a pair of pairs ``((top, bottom), (left, right))``.
"""
import numbers

from .errors import ShapeError


#: Largest window, stride or padding: the compiled kernels and BLAS take 32-bit ints.
LIMIT = 2 ** 31 - 1


def is_int(value):
    """True for a Python or NumPy integer; False for a bool (``True`` is no layer size).

    cytorch's one test of "is this an int", here at the very bottom because ``as_pair`` needs
    it; ``cytorch._checks`` (and ``cytorch.checks``) export it with ``check_int``.
    """
    if type(value) is int:   # the common case, without the ABC check (~0.5 us a call)
        return True
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def as_pair(value, name):
    """Return ``value`` as a pair of positive ints; accepts an int or a sequence of two."""
    if type(value) is tuple and len(value) == 2 and type(value[0]) is int \
            and type(value[1]) is int and 0 < value[0] <= LIMIT and 0 < value[1] <= LIMIT:
        return value   # what a layer passes on every call: already a valid pair
    if type(value) is int and 0 < value <= LIMIT:
        return value, value    # the default strides=1, dilation_rate=1 of functional
    if is_int(value):
        pair = (int(value), int(value))
    else:
        try:
            items = tuple(value)
        except TypeError:
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}") from None
        if isinstance(value, str) or len(items) != 2 or not all(is_int(v) for v in items):
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        pair = (int(items[0]), int(items[1]))
    if pair[0] < 1 or pair[1] < 1:
        raise ValueError(f"{name} must be positive, got {value!r}")
    if max(pair) > LIMIT:
        raise ValueError(f"{name} must be at most 2**31 - 1 = {LIMIT}, got {value!r}")
    return pair


def _axis_padding(padding, n, f, s):
    """(before, after) padding for one axis of size n, window f, stride s."""
    if padding == "valid":
        return 0, 0
    if padding == "full":
        return f - 1, f - 1
    if padding == "same":
        out = -(-n // s)  # ceil(n / s)
        total = max((out - 1) * s + f - n, 0)
        return total // 2, total - total // 2
    raise AssertionError(padding)


def _pads_from_pairs(padding):
    """``(top, bottom, left, right)`` from ``(ph, pw)`` or ``((top, bottom), (left, right))``
    of ints; None for anything else."""
    try:
        a, b = padding
    except (TypeError, ValueError):
        return None
    if is_int(a) and is_int(b):
        return int(a), int(a), int(b), int(b)
    try:
        (pt, pb), (pl, pr) = a, b
    except (TypeError, ValueError):
        return None
    if not all(is_int(v) for v in (pt, pb, pl, pr)):
        return None
    return int(pt), int(pb), int(pl), int(pr)


def resolve_padding(padding, H, W, kh, kw, sh, sw):
    """Return ``(pad_top, pad_bottom, pad_left, pad_right)`` for an H x W input."""
    expected = "'valid', 'same', 'full', an int or a pair"
    if isinstance(padding, str):
        mode = padding.lower()
        if mode not in ("valid", "same", "full"):
            raise ValueError(f"padding must be {expected}, got {padding!r}")
        return _axis_padding(mode, H, kh, sh) + _axis_padding(mode, W, kw, sw)
    pads = (int(padding),) * 4 if is_int(padding) else _pads_from_pairs(padding)
    if pads is None:
        error = ValueError if hasattr(padding, "__iter__") else TypeError
        raise error(f"padding must be {expected} (ph, pw) or ((top, bottom), (left, right)) "
                    f"of ints, got {padding!r}")
    if min(pads) < 0:
        raise ValueError(f"padding must be >= 0, got {padding!r}")
    if max(pads) > LIMIT:
        raise ValueError(f"padding must be at most 2**31 - 1 = {LIMIT}, got {padding!r}")
    return pads


def dilated_extent(kernel_size, dilation_rate):
    """``(kh, kw)`` of a kernel dilated by ``(dh, dw)``: ``(k - 1) * d + 1`` input cells per
    axis, which take the kernel size's place in the output size and the padding.

    >>> dilated_extent((3, 3), (2, 1))
    (5, 3)
    """
    (kh, kw), (dh, dw) = kernel_size, dilation_rate
    return (kh - 1) * dh + 1, (kw - 1) * dw + 1


def output_size(n, f, s, p_before, p_after):
    """floor((n + p_before + p_after - f) / s) + 1 (may be < 1: callers check)."""
    return (n + p_before + p_after - f) // s + 1


def window_output_shape(H, W, kh, kw, sh, sw, padding, what="input"):
    """Return ``(H_out, W_out, pads)`` or raise ShapeError showing the formula.

    ``what`` names the layer or argument in the message, e.g. ``"Conv2D 'conv2d_3'"``.
    """
    pads = resolve_padding(padding, H, W, kh, kw, sh, sw)
    pt, pb, pl, pr = pads
    H_out = output_size(H, kh, sh, pt, pb)
    W_out = output_size(W, kw, sw, pl, pr)
    if H_out < 1 or W_out < 1:
        raise ShapeError(
            f"{what} needs at least {kh}x{kw} input (after padding), got {H}x{W}: "
            f"{_formula(H, kh, sh, pt, pb, H_out)} rows, "
            f"{_formula(W, kw, sw, pl, pr, W_out)} columns")
    return H_out, W_out, pads


def _formula(n, f, s, pa, pb, out):
    pad = f" + {pa + pb}" if pa + pb else ""
    return f"floor(({n}{pad} - {f})/{s}) + 1 = {out}"


def unseen(n, f, s, p_before, p_after):
    """How many input rows (or columns) no window ever covers, because the stride skips them."""
    out = output_size(n, f, s, p_before, p_after)
    covered = (out - 1) * s + f  # extent of the padded input the windows touch
    return max(n + p_before + p_after - covered - p_after, 0)
