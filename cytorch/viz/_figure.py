"""Where a cytorch figure goes: inline in Jupyter, a window or a PNG file in a script.

Every ``cytorch.viz`` function draws on a matplotlib ``Figure`` and hands it to ``finish``:

* In a Jupyter kernel (anything run by ipykernel: JupyterLab, Notebook, VS Code, Colab) the
  figure is shown inline when the cell ends -- as matplotlib's own inline backend does, so a
  figure changed after the call shows its final state -- with no ``%matplotlib inline`` and
  without importing pyplot.  If the figure is also the cell's last expression it is shown once,
  not twice.
* In a script or a terminal, with no ``path=``: a window when matplotlib has an interactive
  backend (a display and a GUI toolkit), else the figure is written to a PNG in the temporary
  folder and one line on stderr says where.
* ``path=`` writes the PNG there in every case; ``show=False`` only returns the figure (for
  code that saves or changes it itself, and for tests).

Only the window case imports pyplot, so a figure never changes your matplotlib backend, and
figures made in a loop are freed like any object (pyplot keeps its figures until closed).
"""
import os
import sys
import tempfile

INSTALL_HINT = 'pip install "cytorch-edu[plot]"'
DPI = 100

_pending = []        # figures made during the running notebook cell, shown when it ends
_hooked = set()      # ids of the IPython shells whose post_execute event we listen to


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(f"cytorch.viz draws with matplotlib, which is not installed "
                          f"({exc}); install the plot extra: {INSTALL_HINT}") from exc
    return Figure, FigureCanvasAgg


def jupyter_shell():
    """The running IPython shell when it is a Jupyter kernel (it has a ``kernel``), else None.
    A terminal IPython has no kernel: it gets windows, like a script."""
    if "IPython" not in sys.modules:  # never import IPython just to ask
        return None
    shell = sys.modules["IPython"].get_ipython()
    return shell if getattr(shell, "kernel", None) is not None else None


def check_show(show):
    if show is not None and not isinstance(show, bool):
        raise TypeError(f"show must be True, False or None (automatic), got {show!r}")
    return show


def wants_window(path, show):
    """Whether the figure will go to a pyplot window: outside Jupyter, when asked to show
    (``show=True``, or by default when there is no ``path``) and a GUI backend is there."""
    if show is False or (show is None and path is not None) or jupyter_shell() is not None:
        return False
    try:
        import matplotlib.pyplot as plt
    except ImportError:  # the error that names the extra comes from new_figure
        return False
    return _interactive(plt.get_backend())


def _interactive(backend):
    try:
        from matplotlib.backends.registry import backend_registry
    except ImportError:  # matplotlib < 3.9
        from matplotlib import rcsetup
        return backend.lower() in [b.lower() for b in rcsetup.interactive_bk]
    try:
        gui = backend_registry.resolve_backend(backend)[1]
    except Exception:  # an unknown module:// backend: assume it cannot show windows
        return False
    return gui not in (None, "headless")


def new_figure(width, height, path=None, show=None):
    """An empty ``width x height``-inch figure.  It belongs to pyplot only when it will be
    shown in a window; otherwise it sits on its own Agg canvas and no global state knows it."""
    Figure, FigureCanvasAgg = _matplotlib()
    # A whole number of pixels, plus a hair: matplotlib < 3.11 truncates width * dpi (1.2 * 3
    # inches gave 359 pixels, not 360) where later versions round; both agree on this size.
    width, height = ((round(inches * DPI) + 0.01) / DPI for inches in (width, height))
    if wants_window(path, show):
        import matplotlib.pyplot as plt
        return plt.figure(figsize=(width, height), dpi=DPI)
    from ._inline import Figure as InlineFigure
    fig = InlineFigure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def finish(fig, path=None, show=None, what="figure"):
    """Save ``fig`` to ``path`` (when given), show it as the module docstring says, return it.

    ``what`` names the picture in the message that says where a PNG went."""
    if path is not None:
        fig.savefig(os.fspath(path), format="png", dpi=DPI)
    if show is False or (show is None and path is not None and jupyter_shell() is None):
        return fig
    shell = jupyter_shell()
    if shell is not None:
        _show_when_cell_ends(shell, fig)
        return fig
    if getattr(fig.canvas, "manager", None) is not None:  # made for a window by new_figure
        import matplotlib.pyplot as plt
        # A script stops here until the window is closed (as plt.show() does); an interactive
        # session (python -i, IPython in a terminal) carries on with the window open.
        interactive = bool(getattr(sys, "ps1", None)) or sys.flags.interactive
        plt.show(block=not interactive)
        return fig
    if path is None:
        folder = os.path.join(tempfile.gettempdir(), "cytorch-figures")
        os.makedirs(folder, exist_ok=True)
        handle, saved = tempfile.mkstemp(prefix=f"{what}-", suffix=".png", dir=folder)
        os.close(handle)
        fig.savefig(saved, format="png", dpi=DPI)
        print(f"cytorch.viz: no display to show the {what} on (matplotlib backend "
              f"{_backend_name()!r}); wrote it to {saved} (pass path= to choose the file, "
              f"show=False to only get the Figure)", file=sys.stderr)
    return fig


def _backend_name():
    import matplotlib
    return matplotlib.get_backend()


# -- Jupyter ------------------------------------------------------------------------------------
def _png(fig):
    import io
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def is_pending(fig):
    return any(f is fig for f in _pending)


def publish(fig):
    from IPython.display import display
    display({"image/png": _png(fig), "text/plain": repr(fig)}, raw=True)


def _show_when_cell_ends(shell, fig):
    if id(shell) not in _hooked:
        shell.events.register("post_execute", _flush)
        _hooked.add(id(shell))
    if not is_pending(fig):
        _pending.append(fig)


def _flush():
    """IPython's post_execute hook: show the figures of the cell that just ended, in order."""
    figures = list(_pending)
    _pending.clear()
    for fig in figures:
        publish(fig)
