"""Pictures of how training went: learning curves, the confusion matrix, the digits it got wrong."""
import numpy as np

from .._checks import check_int
from ._figure import check_show, finish, new_figure

__all__ = ["plot_history", "plot_confusion_matrix", "plot_misclassified"]


def bare(ax):
    ax.set_xticks([])
    ax.set_yticks([])


# -- learning curves ----------------------------------------------------------------------------
def plot_history(history, path=None, show=None):
    """Loss and metric curves per epoch, training solid and validation dashed.

    Parameters
    ----------
    history : ``History`` (what ``fit`` returns) or a dict ``{"loss": [...], ...}``
        One panel per quantity: ``loss`` first, then each metric such as ``accuracy``; the
        matching ``val_*`` series is drawn in the same panel.
    path : str or path-like, optional
        Where to write the PNG.
    show : bool or None
        None (default): inline in Jupyter; in a script a window, or a PNG in the temporary
        folder (and a line saying where) when there is no display and no ``path``.  False:
        only return the figure.  See ``cytorch.viz``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    check_show(show)
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
    fig = new_figure(min(4.5 * len(names), 10.0), 3.5, path, show)
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
    return finish(fig, path, show, "history")


# -- confusion matrix ---------------------------------------------------------------------------
def _labels(y, name):
    y = np.asarray(y)
    if y.ndim == 2:  # probabilities or one-hot rows: the class is the largest column
        y = y.argmax(axis=1)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of labels (or 2-D rows of "
                         f"class probabilities), got shape {y.shape}")
    return y


def plot_confusion_matrix(y_true, y_pred, labels=None, normalize=None, path=None, show=None):
    """The confusion matrix: row = true class, column = predicted class, drawn by
    scikit-learn's ``ConfusionMatrixDisplay``.

    The diagonal counts the right answers; every other cell is one kind of mistake (row 4,
    column 9: a 4 taken for a 9).

    Parameters
    ----------
    y_true : array (N,)
        The true labels.
    y_pred : array (N,) of labels, or (N, K) of class probabilities (``model.predict(X)``)
    labels : list, optional
        The classes in the order of the rows (default: every label seen, sorted).
    normalize : {None, "true", "pred", "all"}
        As in ``sklearn.metrics.confusion_matrix``: "true" shows each row as fractions.
    path, show : as in ``plot_history``

    Returns
    -------
    matplotlib.figure.Figure; its title gives the accuracy.
    """
    check_show(show)
    from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix
    y_true, y_pred = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true and y_pred must have the same length, got {len(y_true)} "
                         f"and {len(y_pred)}")
    if normalize not in (None, "true", "pred", "all"):
        raise ValueError(f"normalize must be None, 'true', 'pred' or 'all', got {normalize!r}")
    if labels is None:
        labels = np.unique(np.concatenate([y_true, y_pred]))
    matrix = confusion_matrix(y_true, y_pred, labels=labels, normalize=normalize)
    n = len(labels)
    side = min(2.0 + 0.45 * n, 7.5)
    fig = new_figure(side + 1.0, side, path, show)
    ax = fig.add_subplot(1, 1, 1)
    ConfusionMatrixDisplay(matrix, display_labels=labels).plot(
        ax=ax, cmap="Blues", colorbar=True, values_format=".2f" if normalize else "d")
    accuracy = float(np.mean(y_true == y_pred))
    ax.set_title(f"accuracy {accuracy:.3f} on {len(y_true)} samples")
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    fig.tight_layout()
    return finish(fig, path, show, "confusion_matrix")


# -- the mistakes -------------------------------------------------------------------------------
def plot_misclassified(images, y_true, y_pred, max_images=16, path=None, show=None):
    """A gallery of the images the model got wrong, each titled with its true and predicted
    label (and the predicted probability when ``y_pred`` holds probabilities).

    Parameters
    ----------
    images : array (N, H, W) or (N, H, W, C) with C = 1 or 3
    y_true : array (N,) of labels
    y_pred : array (N,) of labels, or (N, K) class probabilities (``model.predict(X)``;
        the label of column k is k)
    max_images : int
        Draw the first ``max_images`` mistakes; the title says how many there are in all.
    path, show : as in ``plot_history``

    Returns
    -------
    matplotlib.figure.Figure (one axes per image drawn)
    """
    check_show(show)
    max_images = check_int(max_images, "max_images", 1)
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
        raise ValueError(f"images must be (N, H, W), (N, H, W, 1) or (N, H, W, 3), got shape "
                         f"{images.shape}")
    probabilities = np.asarray(y_pred) if np.ndim(y_pred) == 2 else None
    y_true, y_pred = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if not len(images) == len(y_true) == len(y_pred):
        raise ValueError(f"images, y_true and y_pred must have the same length, got "
                         f"{len(images)}, {len(y_true)} and {len(y_pred)}")
    wrong = np.flatnonzero(y_true != y_pred)
    shown = wrong[:max_images]
    cols = min(max(len(shown), 1), 8)
    rows = max(1, -(-len(shown) // cols))
    fig = new_figure(min(1.25 * cols, 10.0), 1.5 * rows + 0.5, path, show)
    for k, i in enumerate(shown):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(images[i], cmap="gray_r" if images.ndim == 3 else None,
                  interpolation="nearest")
        title = f"true {y_true[i]}\npred {y_pred[i]}"
        if probabilities is not None:
            title += f" ({probabilities[i, y_pred[i]]:.2f})"
        ax.set_title(title, fontsize=8, color="firebrick")
        bare(ax)
    if len(wrong) == 0:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no mistakes", ha="center", va="center")
        ax.axis("off")
    fig.suptitle(f"{len(wrong)} of {len(y_true)} misclassified"
                 + (f" (first {len(shown)} shown)" if len(shown) < len(wrong) else ""),
                 fontsize=10)
    fig.tight_layout()
    return finish(fig, path, show, "misclassified")
