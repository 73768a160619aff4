"""``SpatialDropout2D``: dropout of whole feature maps."""
import numpy as np

from .. import functional as F
from ._common import as_grad, as_input, cached
from .context import DEFAULT
from .core import Dropout

__all__ = ["SpatialDropout2D"]


class SpatialDropout2D(Dropout):
    """Drop whole channels: in training, each feature map ``x[n, :, :, c]`` is zeroed with
    probability ``rate`` and the kept ones are scaled by ``1 / (1 - rate)`` (Keras's
    ``SpatialDropout2D``: dropout with noise shape ``(N, 1, 1, C)``).

    Neighbouring pixels of a conv map are strongly correlated, so dropping single pixels
    (``Dropout``) hardly regularises a conv layer: the neighbours carry the same signal.
    Dropping the whole map does (Tompson et al., 2015).  Inference is the identity.

    The ``(N, 1, 1, C)`` keep-mask comes from the same seeded kernel as ``Dropout``'s (a fresh
    seed drawn from the layer's generator per call); backward is ``dx = dout * mask / (1 -
    rate)``, broadcast over H and W.

    A ``Dropout`` subclass, as in Keras: the same arguments (checked there) and config.

    Parameters
    ----------
    rate : float in [0, 1)
    seed : int, optional

    >>> import numpy as np
    >>> y = SpatialDropout2D(0.5, seed=0).forward(np.ones((1, 2, 2, 6)), training=True)
    >>> y[0, 0, 0], bool((y[0] == y[0, 0, 0]).all())     # one value per map
    (array([2., 0., 2., 0., 0., 0.], dtype=float32), True)
    """

    context_modes = frozenset()   # Dropout's reuse_buffers is for its kernel's workspace

    def forward(self, x, training=False, ctx=DEFAULT):
        x = as_input(self, x, rank=4, check_finite=ctx.check_finite)
        if not training or self.rate == 0:
            self._cache = (x.shape, None)
            return x
        N, _, _, C = x.shape
        seed = int(self.rng.integers(2**63))
        mask, _ = F.dropout_forward(np.ones((N, 1, 1, C), dtype=x.dtype), self.rate, seed,
                                    check_finite=False)   # 0 or 1 / (1 - rate)
        self._cache = (x.shape, mask)
        return x * mask

    def backward(self, dout, ctx=DEFAULT):
        shape, mask = cached(self)
        dout = as_grad(self, dout, shape, ctx.check_finite)
        return dout if mask is None else dout * mask
