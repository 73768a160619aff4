"""Pictures of what a network learned: learning curves, first-layer filters, activation maps.

Needs matplotlib (the optional extra: ``pip install "cytorch-edu[plot]"``).  Every function
returns a ``matplotlib.figure.Figure`` drawn on the non-interactive Agg canvas -- pyplot is
never imported, so nothing here changes your backend or opens a window -- and writes a PNG
when ``path`` is given.  In a notebook, the returned figure displays itself.

>>> from cytorch import viz                                        # doctest: +SKIP
>>> history = model.fit(X, y, epochs=5, validation_split=0.2)      # doctest: +SKIP
>>> viz.plot_history(history, "curves.png")                        # doctest: +SKIP
>>> viz.plot_filters(model, path="filters.png")                    # doctest: +SKIP
>>> viz.plot_activations(model, X[0], path="activations.png")      # doctest: +SKIP
"""
import math
import numbers

import numpy as np

__all__ = ["plot_history", "plot_filters", "plot_activations", "layer_outputs"]

INSTALL_HINT = 'pip install "cytorch-edu[plot]"'
DPI = 100


def _new_figure(width, height):
    """An empty ``width x height``-inch Figure on an Agg canvas (no pyplot, no global state)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(f"cytorch.viz draws with matplotlib, which is not installed "
                          f"({exc}); install the plot extra: {INSTALL_HINT}") from exc
    # A whole number of pixels, plus a hair: matplotlib < 3.11 truncates width * dpi (1.2 * 3
    # inches gave 359 pixels, not 360) where later versions round; both agree on this size.
    width, height = ((round(inches * DPI) + 0.01) / DPI for inches in (width, height))
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _check_model(model):
    from .graph import Model
    if not isinstance(model, Model):
        raise TypeError(f"model must be a cytorch Model or Sequential, got "
                        f"{type(model).__name__}")


def _check_count(value, name):
    """``value`` as a positive int (how many filters or maps to draw)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _finish(fig, path):
    """Save ``fig`` as a PNG at ``path`` (when given) and return it."""
    if path is not None:
        fig.savefig(path, format="png", dpi=DPI)
    return fig


# -- learning curves ----------------------------------------------------------------------------
def plot_history(history, path=None):
    """Loss and metric curves per epoch, training solid and validation dashed.

    Parameters
    ----------
    history : ``History`` (what ``fit`` returns) or a dict ``{"loss": [...], ...}``
        One panel per quantity: ``loss`` first, then each metric such as ``accuracy``; the
        matching ``val_*`` series is drawn in the same panel.
    path : str or path-like, optional
        Where to write the PNG.

    Returns
    -------
    matplotlib.figure.Figure
    """
    logs = getattr(history, "history", history)
    if not isinstance(logs, dict) or not logs:
        raise ValueError(f"history must be a History returned by fit() or a non-empty dict of "
                         f"per-epoch lists, got {history!r}")
    for key, values in logs.items():
        if isinstance(values, str) or np.ndim(values) != 1 \
                or np.asarray(values).dtype.kind not in "biuf":
            raise ValueError(f"history[{key!r}] must be a list of per-epoch numbers, got "
                             f"{values!r}")
    names = [k for k in logs if not k.startswith("val_") and k != "lr"]
    names += [k[4:] for k in logs if k.startswith("val_") and k[4:] not in names]
    names.sort(key=lambda k: (k != "loss", k))
    fig = _new_figure(4.5 * len(names), 3.5)
    from matplotlib.ticker import MaxNLocator
    for k, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), k + 1)
        for key, style, label in ((name, "-", "training"), (f"val_{name}", "--", "validation")):
            values = logs.get(key)
            if values:
                epochs = np.arange(1, len(values) + 1)
                ax.plot(epochs, values, style, marker="o", markersize=3, label=label)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return _finish(fig, path)


# -- filters ------------------------------------------------------------------------------------
def _find_layer(model, layer):
    """``layer`` as a Layer of ``model``: a Layer, a name, an index, or None for the first one
    with a ``(kh, kw, C, K)`` kernel."""
    layers = list(model.layers)
    if layer is None:
        for candidate in layers:
            kernel = candidate.params.get("kernel")
            if kernel is not None and kernel.ndim == 4:
                return candidate
        raise ValueError(f"model '{model.name}' has no layer with a (kh, kw, C, K) kernel "
                         f"(a Conv2D) whose filters could be drawn")
    if isinstance(layer, str):
        return model.get_layer(layer)
    if isinstance(layer, int) and not isinstance(layer, bool):
        try:
            return layers[layer]
        except IndexError:
            raise IndexError(f"layer index {layer} is out of range: model '{model.name}' has "
                             f"{len(layers)} layers") from None
    if layer in layers:
        return layer
    raise ValueError(f"layer must be a layer of model '{model.name}', its name or its index, "
                     f"got {layer!r}")


def _grid(n):
    """(rows, cols) of a near-square grid holding n cells, wider than tall."""
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def _bare(ax):
    ax.set_xticks([])
    ax.set_yticks([])


def plot_filters(model, layer=None, path=None, max_filters=64):
    """Draw the filters of a convolution layer as a grid of small images.

    Each filter ``w[:, :, :, k]`` is one ``kh x kw`` picture (in colour when the layer reads 3
    channels, else one picture per input channel, up to 8), grey-scaled symmetrically around 0
    so that a weight of 0 is mid grey, positive weights light and negative ones dark.  The
    first layer's filters are the only ones that look at pixels directly, so they are the ones
    that show edge and blob detectors after training.

    Parameters
    ----------
    model : a built Model or Sequential
    layer : Layer, str (its name), int (its index in ``model.layers``) or None
        None picks the first layer that has a ``(kh, kw, C, K)`` kernel.
    path : str or path-like, optional
        Where to write the PNG.
    max_filters : int
        Draw at most this many filters.

    Returns
    -------
    matplotlib.figure.Figure
    """
    _check_model(model)
    max_filters = _check_count(max_filters, "max_filters")
    target = _find_layer(model, layer)
    kernel = target.params.get("kernel")
    if kernel is None or kernel.ndim != 4:
        shape = None if kernel is None else kernel.shape
        raise ValueError(f"{type(target).__name__} '{target.name}' has no (kh, kw, C, K) "
                         f"kernel to draw (kernel shape: {shape})")
    kh, kw, C, K = kernel.shape
    w = np.asarray(kernel, dtype=np.float64)[..., :max_filters]
    K = w.shape[3]
    if C == 3:  # one colour picture per filter, each stretched to [0, 1]
        pictures = [w[..., k] for k in range(K)]
        rows, cols = _grid(K)
        fig = _new_figure(1.2 * cols, 1.2 * rows + 0.5)
        for k, pic in enumerate(pictures):
            ax = fig.add_subplot(rows, cols, k + 1)
            lo, hi = pic.min(), pic.max()
            ax.imshow((pic - lo) / (hi - lo) if hi > lo else np.zeros_like(pic),
                      interpolation="nearest")
            ax.set_title(str(k), fontsize=8)
            _bare(ax)
    else:
        channels = min(C, 8)
        if channels == 1:
            rows, cols = _grid(K)
        else:
            rows, cols = channels, K
        fig = _new_figure(1.2 * cols, 1.2 * rows + 0.5)
        for k in range(K):
            m = np.abs(w[..., k]).max() or 1.0
            for c in range(channels):
                index = k + 1 if channels == 1 else c * K + k + 1
                ax = fig.add_subplot(rows, cols, index)
                ax.imshow(w[:, :, c, k], cmap="gray", vmin=-m, vmax=m, interpolation="nearest")
                _bare(ax)
                if c == 0:
                    ax.set_title(str(k), fontsize=8)
                if channels > 1 and k == 0:
                    ax.set_ylabel(f"in {c}", fontsize=8)
    fig.suptitle(f"{type(target).__name__} '{target.name}': {K} filters of "
                 f"{kh}x{kw}x{C}", fontsize=10)
    return _finish(fig, path)


# -- activation maps ----------------------------------------------------------------------------
def layer_outputs(model, x):
    """Run one batch through ``model`` and return ``[(layer, output), ...]`` for every layer,
    in the order they run (inference mode: dropout is the identity).

    ``x`` is a batch ``(N, *model.input_shape)``; only single-input models are supported.
    """
    from .errors import ShapeError
    from .functional import as_float_array
    _check_model(model)
    model._ensure_built(x)
    if len(model._inputs) != 1:
        raise ValueError(f"model '{model.name}' has {len(model._inputs)} inputs; activation "
                         f"maps are drawn for single-input models")
    x = as_float_array(x, "x", dtype=model.dtype)
    if x.size == 0:
        raise ShapeError(f"x must not be empty, got shape {x.shape}")
    expected = tuple(model._inputs[0].shape)
    if x.shape[1:] != expected:
        raise ValueError(f"x must have shape (N, {', '.join(map(str, expected))}) for model "
                         f"'{model.name}', got {x.shape}")
    # The same walk as Model._forward, keeping every node's value instead of freeing it.
    values = {model._inputs[0].id: x}
    result = []
    for node in model._order:
        layer = node.layer
        if layer.n_inputs == 1:
            out = layer.forward(values[node.inputs[0].id], False)
        else:
            out = layer.forward([values[n.id] for n in node.inputs], False)
        layer._cache = None  # nothing will be differentiated
        values[node.id] = out
        result.append((layer, out))
    return result


def plot_activations(model, x, path=None, max_maps=8):
    """Activation maps of one image through every layer that outputs an image.

    Row 0 is the input; then one row per layer with a spatial output (convolutions, pooling,
    activations; dropout is skipped as it is the identity at inference), showing its first
    ``max_maps`` channels.  Each map is scaled to its own range, so the picture shows *where*
    a filter responds; the row label gives the layer, its output shape and the value range.

    Parameters
    ----------
    model : a built Model or Sequential with one input
    x : array ``(H, W, C)`` -- one image -- or ``(1, H, W, C)``
    path : str or path-like, optional
        Where to write the PNG.
    max_maps : int
        Channels drawn per layer.

    Returns
    -------
    matplotlib.figure.Figure
    """
    _check_model(model)
    max_maps = _check_count(max_maps, "max_maps")
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or len(x) != 1:
        raise ValueError(f"x must be one image (H, W, C) or a batch of one (1, H, W, C), "
                         f"got shape {x.shape}")
    rows = [("input", x[0])]
    for layer, out in layer_outputs(model, x):
        if out.ndim == 4 and type(layer).__name__ != "Dropout":
            rows.append((f"{layer.name}\n{'x'.join(map(str, out.shape[1:]))}", out[0]))
    if len(rows) == 1:
        raise ValueError(f"model '{model.name}' has no layer with an image output "
                         f"(N, H, W, C) to draw")
    cols = max(min(a.shape[-1], max_maps) for _, a in rows)
    fig = _new_figure(1.3 * cols + 1.4, 1.3 * len(rows) + 0.3)
    for r, (label, a) in enumerate(rows):
        for c in range(min(a.shape[-1], max_maps)):
            ax = fig.add_subplot(len(rows), cols, r * cols + c + 1)
            ax.imshow(a[:, :, c], cmap="viridis", interpolation="nearest")
            _bare(ax)
            if c == 0:
                ax.set_ylabel(f"{label}\n[{a.min():.2g}, {a.max():.2g}]", fontsize=7,
                              rotation=0, ha="right", va="center")
    fig.subplots_adjust(left=1.4 / (1.3 * cols + 1.4), right=0.98, bottom=0.02, top=0.98,
                        wspace=0.1, hspace=0.15)
    return _finish(fig, path)
