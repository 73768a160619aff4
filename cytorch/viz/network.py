"""Pictures of inside a network: filters, activation maps, saliency maps, Grad-CAM."""
import math

import numpy as np

from .. import explain
from ._figure import check_show, finish, new_figure
from .._checks import check_int
from .results import bare

__all__ = ["plot_filters", "plot_activations", "plot_saliency", "plot_grad_cam"]

# A figure that fits a slide: 10 x 7.5 inches (1000 x 750 pixels at 100 dpi).
SLIDE_WIDTH, SLIDE_HEIGHT = 10.0, 7.5


def _cells(rows, cols, cell=1.2, extra_width=0.0, extra_height=0.6):
    """(width, height) of a grid of square cells, shrunk to fit a slide."""
    scale = min(1.0, (SLIDE_WIDTH - extra_width) / (cell * cols),
                (SLIDE_HEIGHT - extra_height) / (cell * rows))
    return (min(cell * scale * cols + extra_width, SLIDE_WIDTH),
            min(cell * scale * rows + extra_height, SLIDE_HEIGHT))


def _grid(n):
    """(rows, cols) of a near-square grid holding n cells, wider than tall."""
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def _image(x):
    """One image ``(H, W, C)`` or ``(1, H, W, C)`` as a batch of one."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or len(x) != 1:
        raise ValueError(f"x must be one image (H, W, C) or a batch of one (1, H, W, C), "
                         f"got shape {x.shape}")
    return x


# -- filters ------------------------------------------------------------------------------------
def _conv_with_kernel(model, layer):
    explain._check_model(model)
    if layer is None:
        for candidate in model.layers:
            kernel = candidate.params.get("kernel")
            if kernel is not None and kernel.ndim == 4:
                return candidate
        raise ValueError(f"model '{model.name}' has no layer with a (kh, kw, C, K) kernel "
                         f"(a Conv2D) whose filters could be drawn")
    return explain.find_layer(model, layer)


def plot_filters(model, layer=None, path=None, max_filters=64, show=None):
    """Draw the filters of a convolution layer as a grid of small images, with a colour bar.

    Each filter ``w[:, :, :, k]`` is one ``kh x kw`` picture (one per input channel, up to 8
    rows, or one colour picture when the layer reads 3 channels).  All filters share one grey
    scale symmetric around 0: **mid grey is a weight of 0**, light is positive, dark negative,
    so filters can be compared with one another.  The first layer's filters are the only ones
    that look at pixels directly, so they are the ones that show edge and blob detectors after
    training.  The figure is sized to fit a slide (at most 10 x 7.5 inches).

    Parameters
    ----------
    model : a built Model or Sequential
    layer : Layer, str (its name), int (its index in ``model.layers``) or None
        None picks the first layer that has a ``(kh, kw, C, K)`` kernel.
    path : str or path-like, optional
        Where to write the PNG.
    max_filters : int
        Draw at most this many filters (the title says "16 of 120 filters" when it shows part).
    show : bool or None
        As in ``plot_history``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    check_show(show)
    max_filters = check_int(max_filters, "max_filters", 1)
    target = _conv_with_kernel(model, layer)
    kernel = target.params.get("kernel")
    if kernel is None or kernel.ndim != 4:
        shape = None if kernel is None else kernel.shape
        raise ValueError(f"{type(target).__name__} '{target.name}' has no (kh, kw, C, K) "
                         f"kernel to draw (kernel shape: {shape})")
    kh, kw, C, K_all = kernel.shape
    w = np.asarray(kernel, dtype=np.float64)[..., :max_filters]
    K = w.shape[3]
    m = float(np.abs(w).max()) or 1.0  # one symmetric scale: 0 is mid grey everywhere
    colour = C == 3
    channels = 1 if colour else min(C, 8)
    rows, cols = _grid(K) if channels == 1 else (channels, K)
    width, height = _cells(rows, cols, extra_width=1.0, extra_height=0.8)
    fig = new_figure(width, height, path, show)
    image = None
    axes = []
    for k in range(K):
        for c in range(channels):
            index = k + 1 if channels == 1 else c * K + k + 1
            ax = fig.add_subplot(rows, cols, index)
            axes.append(ax)
            if colour:  # each channel mapped with the shared scale: 0 -> 0.5 (grey)
                ax.imshow(0.5 + 0.5 * w[..., k] / m, interpolation="nearest")
            else:
                image = ax.imshow(w[:, :, c, k], cmap="gray", vmin=-m, vmax=m,
                                  interpolation="nearest")
            bare(ax)
            if c == 0:
                ax.set_title(str(k), fontsize=8)
            if channels > 1 and k == 0:
                ax.set_ylabel(f"in {c}", fontsize=8)
    fig.subplots_adjust(left=0.05, right=1 - 1.0 / width, bottom=0.03,
                        top=1 - 0.7 / height, wspace=0.15, hspace=0.3)
    if image is None:  # colour filters: a grey bar for the shared per-channel scale
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize
        image = ScalarMappable(Normalize(-m, m), cmap="gray")
    bar = fig.colorbar(image, ax=axes, fraction=0.04, pad=0.02)
    bar.set_label("weight (mid grey = 0)", fontsize=8)
    shown = f"{K} of {K_all}" if K < K_all else f"{K}"
    more = f", first {channels} of {C} input channels" if channels < C and not colour else ""
    fig.suptitle(f"{type(target).__name__} '{target.name}': {shown} filters of "
                 f"{kh}x{kw}x{C}{more}", fontsize=10)
    return finish(fig, path, show, "filters")


# -- activation maps ----------------------------------------------------------------------------
def plot_activations(model, x, path=None, max_maps=8, label=None, show=None):
    """Activation maps of one image through every layer that outputs an image.

    Row 0 is the input; then one row per layer with a spatial output (convolutions, pooling,
    activations; dropout is skipped as it is the identity at inference), showing its first
    ``max_maps`` channels, each numbered.  Each map is scaled to its own range, so the picture
    shows *where* a filter responds; the row label gives the layer, its output shape, how many
    of its channels are shown ("8 of 16 channels") and the value range.  The title gives the
    true label (when ``label`` is given) and the predicted one.

    Parameters
    ----------
    model : a built Model or Sequential with one input
    x : array ``(H, W, C)`` -- one image -- or ``(1, H, W, C)``
    path : str or path-like, optional
        Where to write the PNG.
    max_maps : int
        Channels drawn per layer.
    label : optional
        The image's true label, for the title.
    show : bool or None
        As in ``plot_history``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    check_show(show)
    max_maps = check_int(max_maps, "max_maps", 1)
    x = _image(x)
    outputs = explain.layer_outputs(model, x)
    rows = [("input", x[0])]
    for layer, out in outputs:
        if out.ndim == 4 and type(layer).__name__ != "Dropout":
            rows.append((f"{layer.name}\n{'x'.join(map(str, out.shape[1:]))}", out[0]))
    if len(rows) == 1:
        raise ValueError(f"model '{model.name}' has no layer with an image output "
                         f"(N, H, W, C) to draw")
    cols = max(min(a.shape[-1], max_maps) for _, a in rows)
    width, height = _cells(len(rows), cols, cell=1.1, extra_width=1.6, extra_height=0.6)
    fig = new_figure(width, height, path, show)
    for r, (name, a) in enumerate(rows):
        n = a.shape[-1]
        drawn = min(n, max_maps)
        for c in range(drawn):
            ax = fig.add_subplot(len(rows), cols, r * cols + c + 1)
            ax.imshow(a[:, :, c], cmap="viridis", interpolation="nearest")
            bare(ax)
            ax.set_title(f"ch {c}", fontsize=6, pad=2)
            if c == 0:
                part = f"\n{drawn} of {n} channels" if drawn < n else ""
                ax.set_ylabel(f"{name}{part}\n[{a.min():.2g}, {a.max():.2g}]", fontsize=7,
                              rotation=0, ha="right", va="center")
    output = outputs[-1][1]
    title = f"predicted {int(np.argmax(output[0]))}" if output.ndim == 2 else ""
    if label is not None:
        title = f"true {label}, {title}" if title else f"true {label}"
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=1.6 / width, right=0.98, bottom=0.02,
                        top=1 - (0.5 if title else 0.25) / height, wspace=0.1, hspace=0.35)
    return finish(fig, path, show, "activations")


# -- what the network looks at ------------------------------------------------------------------
def _batch(images):
    """A batch ``(N, H, W, C)``; one image ``(H, W, C)`` becomes a batch of one."""
    images = np.asarray(images)
    return images[None] if images.ndim == 3 else images


def _heat_figure(images, maps, labels, predicted, classes, title, what, path, show, cmap):
    """Row 0 the images, row 1 the maps over them (faded image underneath)."""
    N = len(images)
    width, height = _cells(2, N, cell=1.6, extra_height=0.7)
    fig = new_figure(width, height, path, show)
    for k in range(N):
        picture = images[k, :, :, 0] if images.shape[-1] == 1 else images[k]
        top = fig.add_subplot(2, N, k + 1)
        top.imshow(picture, cmap="gray_r" if picture.ndim == 2 else None,
                   interpolation="nearest")
        head = f"pred {predicted[k]}"
        if labels is not None:
            head = f"true {labels[k]}, {head}"
        top.set_title(head, fontsize=8)
        bare(top)
        bottom = fig.add_subplot(2, N, N + k + 1)
        bottom.imshow(picture, cmap="gray_r" if picture.ndim == 2 else None, alpha=0.35,
                      interpolation="nearest")
        bottom.imshow(maps[k], cmap=cmap, alpha=0.75, interpolation="nearest")
        bottom.set_title(f"class {classes[k]}", fontsize=8)
        bare(bottom)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return finish(fig, path, show, what)


def _check_labels(labels, N):
    if labels is None:
        return None
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != N:
        raise ValueError(f"labels must hold one label per image ({N}), got {len(labels)}")
    return labels


def _explained_classes(model, images, class_index):
    scores = explain.class_scores(model, images)
    predicted = scores.argmax(axis=1)
    classes = explain._check_classes(class_index, scores, model)
    return predicted, classes


def plot_saliency(model, images, labels=None, class_index=None, path=None, show=None):
    """Saliency maps: which pixels move the class score most (``cytorch.explain.saliency``).

    Top row the images (titled with the true label when given and the predicted one), bottom
    row ``max_channels |dS_c/dx|`` over a faded copy: bright pixels are those whose change
    would change the score of class ``c`` most.

    Parameters
    ----------
    model : a Model or Sequential with one input and one score per class
    images : array ``(N, H, W, C)``, or one image ``(H, W, C)``
    labels : optional, N true labels for the titles
    class_index : None (each image's predicted class), an int or N ints
    path, show : as in ``plot_history``

    Returns
    -------
    matplotlib.figure.Figure with 2 axes per image (top: image, bottom: map)
    """
    check_show(show)
    images = _batch(images)
    labels = _check_labels(labels, len(images))
    predicted, classes = _explained_classes(model, images, class_index)
    maps = explain.saliency(model, images, classes)
    return _heat_figure(images, maps, labels, predicted, classes,
                        "saliency: |d score / d pixel|", "saliency", path, show, "hot")


def plot_grad_cam(model, images, labels=None, class_index=None, layer=None, path=None,
                  show=None):
    """Grad-CAM heat maps (``cytorch.explain.grad_cam``): where, for the last convolution
    (or ``layer``), the evidence for class ``c`` lies.

    Same layout and arguments as ``plot_saliency``; ``layer`` picks the convolution (a Layer,
    its name or its index; default: the last layer with a kernel and an image output).

    Returns
    -------
    matplotlib.figure.Figure with 2 axes per image, titled "Grad-CAM on '<layer>'"
    """
    check_show(show)
    images = _batch(images)
    labels = _check_labels(labels, len(images))
    predicted, classes = _explained_classes(model, images, class_index)
    target = explain.last_conv(model) if layer is None else explain.find_layer(model, layer)
    maps = explain.grad_cam(model, images, classes, layer=target)
    return _heat_figure(images, maps, labels, predicted, classes,
                        f"Grad-CAM on '{target.name}'", "grad_cam", path, show, "jet")
