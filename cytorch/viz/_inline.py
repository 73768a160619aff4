"""The figure class of ``cytorch.viz`` (imported only once matplotlib is known to be there)."""
from matplotlib import figure

from . import _figure


class Figure(figure.Figure):
    """A matplotlib ``Figure`` that Jupyter shows as a PNG without pyplot's inline backend.

    As a cell's value it is shown once: not at all here when it is already waiting to be shown
    at the end of the cell, else now (matplotlib alone would show ``<Figure size ...>``).
    """

    def _ipython_display_(self):
        if not _figure.is_pending(self):
            _figure.publish(self)
