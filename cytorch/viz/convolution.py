"""The convolution worked example, drawn step by step: window, products, sum."""
import numbers

import numpy as np

from .._checks import check_int
from ._figure import check_show, finish, new_figure
from .results import bare

__all__ = ["convolve_by_hand", "plot_convolution_steps"]


def _matrix(a, name):
    a = np.asarray(a)
    if a.ndim != 2 or a.size == 0 or a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a non-empty 2-D array of numbers, got "
                         f"{a.dtype} of shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def convolve_by_hand(image, kernel, stride=1):
    """The 2-D "convolution" of deep learning (no kernel flip: a cross-correlation), as on the
    slides: slide the ``F x F`` kernel over the ``N x N`` image, ``stride`` cells at a time, and
    at each position add up the products of the window and the kernel.

    ``out[i, j] = sum_ab image[i*S + a, j*S + b] * kernel[a, b]``, of size
    ``floor((N - F) / S) + 1`` per axis.

    >>> image = [[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0],
    ...          [0, 1, 1, 0, 0]]
    >>> convolve_by_hand(image, [[1, 0, 1], [0, 1, 0], [1, 0, 1]]).tolist()
    [[4, 3, 4], [2, 4, 3], [2, 3, 4]]
    """
    image, kernel = _matrix(image, "image"), _matrix(kernel, "kernel")
    stride = check_int(stride, "stride", 1)
    (H, W), (kh, kw) = image.shape, kernel.shape
    if kh > H or kw > W:
        raise ValueError(f"the {kh}x{kw} kernel does not fit in the {H}x{W} image")
    H_out, W_out = (H - kh) // stride + 1, (W - kw) // stride + 1
    out = np.zeros((H_out, W_out), dtype=np.result_type(image, kernel))
    for i in range(H_out):
        for j in range(W_out):
            window = image[i * stride:i * stride + kh, j * stride:j * stride + kw]
            out[i, j] = (window * kernel).sum()
    return out


def _number(v):
    return f"{v:g}" if isinstance(v, (float, np.floating)) else str(v)


def _table(ax, values, highlight=None, cmap="Greys", vmin=None, vmax=None, blank=None):
    """A matrix drawn as a grid of cells, each with its number; ``highlight`` is a
    ``(row, col, height, width)`` window outlined in red; ``blank`` masks cells not yet
    computed."""
    from matplotlib.patches import Rectangle
    values = np.asarray(values)
    shown = np.where(blank, np.nan, values) if blank is not None else values
    ax.imshow(np.zeros_like(values, dtype=float) if vmin is None else shown, cmap=cmap,
              vmin=vmin if vmin is not None else 0, vmax=vmax if vmax is not None else 1,
              alpha=0.35)
    for (r, c), v in np.ndenumerate(values):
        if blank is None or not blank[r, c]:
            ax.text(c, r, _number(v), ha="center", va="center", fontsize=9)
    ax.set_xticks(np.arange(-0.5, values.shape[1], 1), minor=True)
    ax.set_yticks(np.arange(-0.5, values.shape[0], 1), minor=True)
    ax.grid(which="minor", color="0.6", linewidth=0.8)
    ax.tick_params(which="both", length=0)
    bare(ax)
    if highlight is not None:
        r, c, h, w = highlight
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), w, h, fill=False, edgecolor="red",
                               linewidth=2.5))


def plot_convolution_steps(image, kernel, stride=1, steps=None, path=None, show=None):
    """Draw the convolution of ``image`` by ``kernel`` step by step, as on the slides.

    One row per step (output position ``(i, j)``), four panels: the image with the window
    outlined, the kernel, the products ``window * kernel`` with their sum in the title, and
    the output filled in up to that position.  With the course's example::

        plot_convolution_steps([[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1],
                                [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]],
                               [[1, 0, 1], [0, 1, 0], [1, 0, 1]])

    the first step's products sum to 4, the top-left of ``[[4, 3, 4], [2, 4, 3], [2, 3, 4]]``.

    Parameters
    ----------
    image, kernel : 2-D arrays of numbers
    stride : int
    steps : None, int, or list of ``(i, j)`` output positions
        None: the first two positions and the last one (whose output panel is complete);
        an int ``n``: the first ``n`` positions in reading order.
    path, show : as in ``plot_history``

    Returns
    -------
    matplotlib.figure.Figure with 4 axes per step.
    """
    check_show(show)
    out = convolve_by_hand(image, kernel, stride)
    image, kernel = np.asarray(image), np.asarray(kernel)
    H_out, W_out = out.shape
    positions = [(i, j) for i in range(H_out) for j in range(W_out)]
    if steps is None:
        chosen = positions[:2] + positions[-1:] if len(positions) > 3 else positions
    elif isinstance(steps, numbers.Integral) and not isinstance(steps, bool):
        if steps < 1:
            raise ValueError(f"steps must be a positive int or a list of (i, j), got {steps}")
        chosen = positions[:steps]
    else:
        chosen = [tuple(int(v) for v in p) for p in steps]
        bad = [p for p in chosen if p not in positions]
        if bad or not chosen:
            raise ValueError(f"steps must be output positions (i, j) with 0 <= i < {H_out} "
                             f"and 0 <= j < {W_out}, got {steps!r}")
    kh, kw = kernel.shape
    cell = 0.28
    widths = [image.shape[1], kw, kw, W_out]
    width = min(10.0, cell * sum(widths) + 2.4)
    height = min(7.5 * max(1, len(chosen)) / 3, (cell * max(image.shape[0], 3) + 0.9)
                 * len(chosen) + 0.5)
    fig = new_figure(width, height, path, show)
    grid = fig.add_gridspec(len(chosen), 4, width_ratios=widths)
    lo = min(out.min(), 0)
    hi = max(out.max(), 1)
    for r, (i, j) in enumerate(chosen):
        window = image[i * stride:i * stride + kh, j * stride:j * stride + kw]
        products = window * kernel
        done = np.ones_like(out, dtype=bool)
        for k, p in enumerate(positions):
            done[p] = k <= positions.index((i, j))
        ax = fig.add_subplot(grid[r, 0])
        _table(ax, image, highlight=(i * stride, j * stride, kh, kw))
        ax.set_title(f"step {positions.index((i, j)) + 1}: window at ({i * stride}, "
                     f"{j * stride})", fontsize=9)
        ax = fig.add_subplot(grid[r, 1])
        _table(ax, kernel)
        ax.set_title("kernel", fontsize=9)
        ax = fig.add_subplot(grid[r, 2])
        _table(ax, products)
        ax.set_title(f"products, sum = {_number(products.sum())}", fontsize=9)
        ax = fig.add_subplot(grid[r, 3])
        _table(ax, out, highlight=(i, j, 1, 1), cmap="Blues", vmin=lo, vmax=hi, blank=~done)
        ax.set_title(f"output[{i}, {j}] = {_number(out[i, j])}", fontsize=9)
    fig.suptitle(f"{image.shape[0]}x{image.shape[1]} image * {kh}x{kw} kernel, stride "
                 f"{stride} -> {H_out}x{W_out} output", fontsize=10)
    fig.tight_layout()
    return finish(fig, path, show, "convolution_steps")
