"""The contract every layer, built-in or third-party, fulfils.

A layer is a pair of maps with the batch axis first (channels-last images ``(N, H, W, C)``):

* ``forward(x, training=False) -> y`` computes the output and caches what backward needs;
  Keep that cache in ``self._cache`` (it is dropped when the layer is pickled);
* ``backward(dout) -> dx`` takes dL/dy (same shape as y), returns dL/dx (same shape as x) and
  fills ``self.grads[name]`` with dL/dparam for every ``self.params[name]`` (same shapes).

``build(input_shape)`` receives the shape *without* the batch axis, e.g. ``(28, 28, 1)``, and
creates the parameters; ``compute_output_shape`` does the shape arithmetic without data.
``get_config()`` returns JSON-able keyword arguments that recreate the layer: that is what
``model.save`` stores, together with the parameters by name.

Arrays a layer keeps but no optimizer may touch (``BatchNormalization``'s moving mean and
variance) go in ``self.state`` instead of ``self.params``: they are saved, loaded, copied by
``get_weights``/``set_weights`` and counted by ``count_params`` (as Keras's non-trainable
weights), but have no gradient and are never optimized; the layer updates them itself in
``forward(x, training=True)``.

A minimal plugin layer (a learnable per-channel scale)::

    class Scale(Layer):
        def build(self, input_shape):
            self.params["gamma"] = np.ones(input_shape[-1], dtype=self.dtype)
            super().build(input_shape)
        def forward(self, x, training=False):
            self._x = x
            return x * self.params["gamma"]
        def backward(self, dout):
            self.grads["gamma"] = (dout * self._x).reshape(-1, self._x.shape[-1]).sum(0)
            return dout * self.params["gamma"]

That is all a layer needs.  A model also hands its layers a ``CallContext``
(``cytorch.layers.context``) when their ``forward``/``backward`` take a ``ctx`` argument: the
modes of one call, decided by the caller and never stored on the layer, so a ``predict``
inside a callback cannot see the training loop's modes.
"""
import itertools
import re
import threading

import numpy as np

from ..random import make_rng
from ..errors import ShapeError
from ..functional import as_float_array
from ._common import check_bool, sample_shape

_name_counters = {}


def _snake(name):
    """Keras's layer-name rule: ``Conv2D -> conv2d``, ``MaxPooling2D -> max_pooling2d``."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def unique_name(prefix):
    """``conv2d``, ``conv2d_1``, ``conv2d_2``, ... (Keras's naming)."""
    counter = _name_counters.setdefault(prefix, itertools.count())
    n = next(counter)
    return prefix if n == 0 else f"{prefix}_{n}"


class Layer:
    """Base class of every cytorch layer (see the module docstring for the contract).

    Parameters
    ----------
    name : str, optional
        Unique name shown by ``summary()`` and used to key saved weights; by default the
        snake-cased class name with a counter (``conv2d``, ``conv2d_1``, ...).
    dtype : {"float32", "float64"}
        Dtype of the parameters; ``float64`` is what gradient checks use.
    trainable : bool
        Whether optimizers update this layer's parameters.
    input_shape : tuple of int, optional
        Keras's way of giving the first layer of a ``Sequential`` its sample shape (no batch
        axis), as in ``Conv2D(10, 5, input_shape=(28, 28, 1))``; kept in
        ``declared_input_shape`` and used by ``Sequential`` when it has no other input shape.
    """

    #: number of inputs the layer takes when called on graph nodes (``None``: any number >= 2)
    n_inputs = 1

    #: the ``CallContext`` modes beyond ``check_finite`` this layer acts on when its forward and
    #: backward take ``ctx`` (e.g. ``{"return_logits"}``); a model asks a layer for no other
    context_modes = frozenset()

    #: the ``input_shape=`` given to the constructor (Keras style), or None
    declared_input_shape = None

    def __init__(self, name=None, dtype="float32", trainable=True, input_shape=None):
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        self.name = name or unique_name(_snake(type(self).__name__))
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
        self.trainable = check_bool(trainable, "trainable")
        self.declared_input_shape = None
        if input_shape is not None:
            try:
                self.declared_input_shape = tuple(int(d) for d in input_shape)
            except (TypeError, ValueError):
                raise TypeError(f"input_shape must be a tuple of ints such as (28, 28, 1), "
                                f"got {input_shape!r}") from None
        self.params = {}
        self.grads = {}
        self.state = {}   # non-trainable arrays (moving statistics): saved, never optimized
        self.built = False
        self.input_shape = None
        self.output_shape = None
        self._rng = None
        self._cache = None  # whatever forward keeps for backward; never pickled
        self._workspace = None  # buffers reused between training steps (``_buffers``)

    @property
    def rng(self):
        """The layer's ``numpy.random.Generator`` (initializers, dropout masks).

        Made on first use from ``self.seed`` when the layer has one (layers with randomness take
        ``seed=``), else from the global sequence of ``cytorch.set_seed``.  A model built with
        ``seed=`` hands each layer its own child generator through ``set_rng``.
        """
        if self._rng is None:
            self._rng = make_rng(getattr(self, "seed", None))
        return self._rng

    def set_rng(self, rng):
        """Give the layer a generator (used by models seeded as a whole); returns self."""
        self._rng = rng
        return self

    # -- the contract -------------------------------------------------------------------------
    def build(self, input_shape):
        """Create parameters for inputs of ``input_shape`` (no batch axis). Subclasses that
        create parameters do so first and then call ``super().build(input_shape)``."""
        self.input_shape = tuple(input_shape) if self.n_inputs == 1 else input_shape
        self.output_shape = self.compute_output_shape(input_shape)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.built = True

    def compute_output_shape(self, input_shape):
        """Output shape (no batch axis) for ``input_shape``; identity by default."""
        if self.n_inputs == 1:
            return sample_shape(self, input_shape)
        return tuple(input_shape)

    def forward(self, x, training=False):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward()")

    def backward(self, grad_output):
        raise NotImplementedError(f"{type(self).__name__} does not implement backward()")

    def get_config(self):
        """JSON-able keyword arguments that recreate this layer (weights not included)."""
        config = {"name": self.name}
        if self.dtype != np.float32:
            config["dtype"] = self.dtype.name
        if not self.trainable:
            config["trainable"] = False
        if self.declared_input_shape is not None:
            config["input_shape"] = list(self.declared_input_shape)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    # -- conveniences shared by every layer ---------------------------------------------------
    def count_params(self):
        """Number of values in ``params`` and ``state`` (Keras counts non-trainable weights
        too; ``count_trainable_params`` counts what an optimizer updates)."""
        return int(sum(p.size for p in self.params.values())
                   + sum(s.size for s in getattr(self, "state", {}).values()))

    def count_trainable_params(self):
        """Number of values an optimizer updates: ``params``, if the layer is trainable."""
        return int(sum(p.size for p in self.params.values())) if self.trainable else 0

    def weight_items(self):
        """``(name, array)`` for every parameter, then every state array, in Keras's order
        (``BatchNormalization``: gamma, beta, moving_mean, moving_variance).  The arrays are
        the layer's own, not copies."""
        return list(self.params.items()) + list(getattr(self, "state", {}).items())

    @property
    def weights(self):
        """The layer's arrays in Keras's order (``weight_items``'s arrays): the parameters
        (``kernel``, ``bias``, ...), then the state (BatchNormalization's moving statistics)."""
        return [w for _, w in self.weight_items()]

    def get_weights(self):
        """Copies of ``weights``, as Keras's ``layer.get_weights()``: ``[kernel, bias]`` for
        Conv2D and Dense, ``[]`` for a layer without parameters."""
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        """Copy a list of arrays, in ``get_weights()``'s order, into the layer.

        Every value is checked (count, shape, real and finite) before any is copied, and
        converted to the layer's dtype; the list is not modified."""
        own = self.weight_items()
        if isinstance(weights, (str, bytes, dict)) or not hasattr(weights, "__len__"):
            raise TypeError(f"set_weights on {type(self).__name__} '{self.name}' takes a list "
                            f"of {len(own)} arrays (as get_weights() returns), got "
                            f"{type(weights).__name__}")
        if len(weights) != len(own):
            names = ", ".join(name for name, _ in own) or "none"
            raise ValueError(f"set_weights on {type(self).__name__} '{self.name}' got a list of "
                             f"{len(weights)} arrays, the layer has {len(own)} ({names})")
        checked = [_check_weight(value, target, f"{self.name}/{name}")
                   for value, (name, target) in zip(weights, own)]
        for (_, target), value in zip(own, checked):
            target[...] = value

    def set_dtype(self, dtype):
        """Cast the parameters (and future ones) to ``dtype``; returns self."""
        self.dtype = np.dtype(dtype)
        for k in list(self.params):
            self.params[k] = self.params[k].astype(self.dtype)
        for k in list(getattr(self, "state", {})):
            self.state[k] = self.state[k].astype(self.dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        return self

    def _buffers(self, ctx):
        """The layer's ``Workspace`` when ``ctx.reuse_buffers`` (a training step), else None;
        passed as ``workspace=`` to the ``cytorch.functional`` calls that make large arrays."""
        if not ctx.reuse_buffers:
            return None
        workspace = getattr(self, "_workspace", None)   # (a plugin may skip Layer.__init__)
        if workspace is None:
            workspace = self._workspace = Workspace()
        return workspace

    def zero_grads(self):
        for g in self.grads.values():
            g.fill(0)

    def __getstate__(self):
        # Pickles carry configuration and weights only: no cached batch, no gradients.
        state = self.__dict__.copy()
        state["_cache"] = None
        state["_workspace"] = None
        state["grads"] = {}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def __call__(self, *inputs):
        """Functional API: ``y = Conv2D(6, 5)(x)`` where ``x`` is a graph node."""
        from ..graph import call_layer
        return call_layer(self, inputs[0] if len(inputs) == 1 else list(inputs))

    def __repr__(self):
        return f"<{type(self).__name__} '{self.name}'>"


class Workspace:
    """Buffers a layer reuses from one training step to the next: ``get(name, shape, dtype)``
    returns the same array for the same arguments until ``clear()``.

    During ``fit`` the built-in convolution, pooling and dropout layers write their outputs, the
    max-pooling winners, the dropout masks and dL/dx into these instead of new arrays, so a steady-state batch
    allocates none of its large arrays (``tests/test_memory.py``).  A batch of another size
    (an epoch's last, smaller one) gets buffers of its own, and so does every thread
    (``predict`` runs batches on several).  The model clears every layer's workspace when the
    call that used it returns (``fit``, ``train_on_batch``, ``predict``), so nothing a user
    receives afterwards shares memory with a buffer that will be written again."""

    def __init__(self):
        self._arrays = {}

    def get(self, name, shape, dtype):
        key = (name, tuple(shape), np.dtype(dtype), threading.get_ident())
        array = self._arrays.get(key)
        if array is None:
            array = self._arrays[key] = np.empty(key[1], dtype=key[2])
        return array

    def clear(self):
        self._arrays.clear()

    @property
    def nbytes(self):
        """Bytes held."""
        return sum(a.nbytes for a in self._arrays.values())


def _check_weight(value, target, name):
    """``value`` as an array of ``target``'s dtype, after checking it can replace ``target``."""
    value = as_float_array(value, f"set_weights: {name!r}", dtype=target.dtype)
    if value.shape != target.shape:
        raise ShapeError(f"set_weights: {name!r} has shape {target.shape}, got {value.shape}")
    return value
