"""Exceptions cytorch raises on purpose."""


class ShapeError(ValueError):
    """A shape does not fit: wrong rank, wrong channels, or an output smaller than 1x1.

    The message names the layer or argument and shows the arithmetic with the numbers, e.g.::

        ShapeError: Conv2D 'conv2d_3' needs at least 5x5 input, got 2x2: (2 - 5)/1 + 1 = -2
    """


class NotBuiltError(ImportError):
    """The compiled kernels are missing: cytorch never falls back to slow Python silently."""


class ExportError(ValueError):
    """A model cannot be exported (``cytorch.export``): a layer without an ONNX converter, a
    converter plugin that failed to load, or a model that is not built yet.  The message names
    the layer and the distribution that provides it."""
