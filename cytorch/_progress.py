"""The progress display of ``fit(verbose=1)``: one line per epoch, wherever it is shown.

The same line (epoch, steps, bar, time, loss and metrics) is drawn three ways, chosen by where
it goes:

* **a terminal** (the stream's ``isatty()`` is true): redrawn in place with ``\\r`` at most
  ``max_rate`` times a second, cut to the terminal's width while it updates -- a line that
  wraps cannot be redrawn with ``\\r``, which only returns to the start of the last screen row,
  so every frame would leave a copy behind -- and written in full when the epoch ends;
* **a Jupyter kernel** (IPython is loaded and ``get_ipython()`` has a ``kernel``): one output
  per epoch, updated in place through an IPython display handle.  Written to stderr instead,
  every ``\\r`` frame arrives in the notebook as a separate red stderr chunk, and a saved
  notebook keeps them all; a display handle leaves exactly the final line;
* **anything else** (a file, a pipe, a CI log: ``cytorch train 2> log``): the finished line
  only, once per epoch -- no ``\\r`` frames for a log to keep.

Why not ``tqdm.auto``, which makes the same choice: it is not a dependency of cytorch, and its
bar is not the Keras line the course shows.  IPython is never imported here: a kernel has
always loaded it already, so ``sys.modules`` is where to look.
"""
import os
import shutil
import sys

import numpy as np

__all__ = ["progress_line", "format_logs", "format_time", "format_step"]


def format_logs(logs):
    """``"loss: 0.2153 - accuracy: 0.9385"``: the numeric entries of ``logs``."""
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items()
                      if isinstance(v, (float, int, np.floating)))


def format_time(seconds):
    """``0.4s``, ``12s``, ``3:05``, ``1:02:03``."""
    if seconds >= 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    if seconds >= 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"


def format_step(seconds):
    """Time per step as Keras shows it: ``1.2s/step``, ``35ms/step``, ``480us/step``."""
    if seconds >= 1:
        return f"{seconds:.1f}s/step"
    return f"{1000 * seconds:.0f}ms/step" if seconds >= 1e-3 else f"{1e6 * seconds:.0f}us/step"


def kernel_display():
    """IPython's ``display`` when running in a Jupyter kernel, else None."""
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    if get_ipython is None:
        return None
    try:
        shell = get_ipython()
        # a terminal IPython has a shell but no kernel: its stderr is a real terminal
        if getattr(shell, "kernel", None) is None:
            return None
        from IPython.display import display
    except Exception:  # a half-initialised or foreign IPython: fall back to the stream
        return None
    return display


def is_terminal(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed file
        return False


def terminal_width(stream):
    """Columns of the terminal behind ``stream`` (``COLUMNS`` wins, 80 if unknown)."""
    if os.environ.get("COLUMNS", "").isdigit():
        return max(int(os.environ["COLUMNS"]), 20)
    try:
        return max(os.get_terminal_size(stream.fileno()).columns, 20)
    except (AttributeError, ValueError, OSError):
        return max(shutil.get_terminal_size((80, 24)).columns, 20)


class TerminalLine:
    """Redraw one line in place with ``\\r``."""

    def __init__(self, stream):
        self.stream = stream
        self.last = 0  # length of the frame on screen, to blank what a shorter one leaves

    def _write(self, text):
        self.stream.write(text)
        self.stream.flush()

    def update(self, line):
        line = line[:terminal_width(self.stream) - 1]  # the last column would wrap on some
        self._write("\r" + line.ljust(self.last))
        self.last = len(line)

    def end(self, line):
        self._write("\r" + line.ljust(self.last) + "\n")
        self.last = 0


class LogLine:
    """Write the finished line only (files, pipes, CI logs)."""

    def __init__(self, stream):
        self.stream = stream

    def update(self, line):
        pass

    def end(self, line):
        self.stream.write(line + "\n")
        self.stream.flush()


class NotebookLine:
    """One display per epoch in a Jupyter kernel, updated through its handle."""

    def __init__(self, display):
        self.display = display
        self.handle = None

    def _show(self, line):
        data = {"text/plain": line}
        if self.handle is None:
            self.handle = self.display(data, raw=True, display_id=True)
        else:
            self.handle.update(data, raw=True)

    def update(self, line):
        self._show(line)

    def end(self, line):
        self._show(line)
        self.handle = None  # the next epoch gets its own output


def progress_line(stream, verbose):
    """Where ``ProgressBar`` draws: a notebook output when ``stream`` is None and a kernel runs,
    else ``stream`` (default stderr) redrawn in place when it is a terminal and ``verbose`` is
    1, else finished lines only."""
    if stream is None:
        display = kernel_display()
        if display is not None:
            return NotebookLine(display)
        stream = sys.stderr
    if verbose == 1 and is_terminal(stream):
        return TerminalLine(stream)
    return LogLine(stream)
