"""cytorch-locally-connected: ``LocallyConnected2D``, a convolution without weight sharing.

A third-party cytorch plugin with its own compiled kernel.  Installing the distribution
registers the layer in the ``cytorch.layers`` entry-point group, so

>>> import cytorch
>>> cytorch.layers.get("locally_connected2d").__name__
'LocallyConnected2D'

and ``Sequential.from_spec([("locally_connected2d", {"filters": 8, "kernel_size": 3}), ...])``
works like any built-in layer.  The parts, as in cytorch itself:

* ``layer``      -- the ``LocallyConnected2D`` layer, a thin class over
* ``functional`` -- the front door: validates, then runs the compiled kernel ``_lc`` or, under
  ``cytorch.backend("reference")``, its NumPy twin in
* ``reference``  -- the readable version, with the gradient formulas.
"""
from .functional import locally_connected2d_backward, locally_connected2d_forward
from .layer import LocallyConnected2D

__all__ = ["LocallyConnected2D", "locally_connected2d_forward", "locally_connected2d_backward"]
__version__ = "0.1.0"
