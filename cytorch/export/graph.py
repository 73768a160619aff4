"""``OnnxGraph``: what a layer's ONNX converter writes into.

A converter turns one cytorch layer into ONNX nodes.  It is called as::

    converter(layer, inputs, graph) -> output

* ``layer``: the built layer (its ``params``, ``state`` and configuration);
* ``inputs``: the names of the ONNX values the layer reads, one per input (a merge layer has
  several), each in **cytorch's layout**: channels-last ``(N, H, W, C)`` for images, with the
  batch axis first and dynamic;
* ``graph``: this object, to add nodes and weights;
* ``output``: the name of the value holding the layer's output, in cytorch's layout too.

ONNX's ``Conv``, ``MaxPool``, ``Resize`` ... work on channels-first ``(N, C, H, W)`` tensors.
``graph.channels_first(x)`` gives the channels-first twin of a channels-last image (adding a
``Transpose`` only when none exists yet) and ``graph.channels_last(y)`` turns a channels-first
result back.  Because the twins are remembered, a stack of conv, activation and pooling layers
stays channels-first: the exported graph transposes once after the input and once before
``Flatten``, and every ``Transpose`` nobody reads is dropped when the graph is finished.

A converter for a learnable per-channel scale (the README's ``Scale`` plugin layer)::

    def scale_to_onnx(layer, inputs, graph):
        gamma = graph.constant(layer.params["gamma"], "gamma")   # broadcasts over the last axis
        return graph.node("Mul", [inputs[0], gamma])

Everything here is plain Python over ``onnx.helper``; ``onnx`` is imported on first use, so
``import cytorch.export`` works without it.
"""
import numpy as np

__all__ = ["OnnxGraph"]

#: channels-last (N, H, W, C) -> channels-first (N, C, H, W), and back
TO_CHANNELS_FIRST = (0, 3, 1, 2)
TO_CHANNELS_LAST = (0, 2, 3, 1)


class OnnxGraph:
    """Collects the nodes and weights (initializers) of one exported model.

    Parameters
    ----------
    opset : int
        The ONNX operator set the graph is written for (``graph.opset``: a converter may
        choose its nodes by it).
    dtype : numpy dtype, default float32
        The float type of the values; ``constant`` converts float arrays to it.
    """

    def __init__(self, opset, dtype=np.float32):
        import onnx.helper   # noqa: F401  (fails here, with ImportError, if onnx is missing)
        self.opset = int(opset)
        self.dtype = np.dtype(dtype)
        self.nodes = []
        self.initializers = []
        self.scope = ""             # the layer being converted: prefixes the names it makes
        self._taken = set()
        self._first = {}            # channels-last name -> channels-first twin
        self._last = {}             # channels-first name -> channels-last twin

    # -- names and weights ----------------------------------------------------------------------
    def reserve(self, name):
        """Mark ``name`` (a graph input) as taken; returns it."""
        self._taken.add(name)
        return name

    def fresh(self, hint):
        """A value or node name not used yet: ``scope/hint``, then ``scope/hint_1`` ..."""
        base = f"{self.scope}/{hint}" if self.scope else hint
        name, k = base, 0
        while name in self._taken:
            k += 1
            name = f"{base}_{k}"
        self._taken.add(name)
        return name

    def constant(self, value, hint="const"):
        """Add ``value`` as a weight of the graph (an initializer) and return its name.

        Float arrays are stored in ``graph.dtype`` (float32), integer arrays as int64 (what
        ``Reshape``, ``Pad`` ... take).  The array is copied; the layer's own is not touched."""
        from onnx import numpy_helper
        array = np.asarray(value)
        if array.dtype.kind == "f":
            array = array.astype(self.dtype)
        elif array.dtype.kind in "iub":
            array = array.astype(np.int64)
        else:
            raise TypeError(f"graph.constant({hint!r}): expected a real or integer array, got "
                            f"dtype {array.dtype}")
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op_type, inputs, outputs=1, hint=None, **attributes):
        """Add one ONNX node; returns the name of its output (a list if ``outputs > 1``).

        ``inputs`` are value names ("" for an omitted optional input); ``attributes`` are the
        node's attributes as Python values, e.g.
        ``graph.node("Conv", [x, w, b], strides=[1, 1], pads=[0, 0, 0, 0])``."""
        from onnx import helper
        hint = hint or op_type.lower()
        names = [self.fresh(hint if outputs == 1 else f"{hint}_out{k}")
                 for k in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names,
                                           name=self.fresh(f"{hint}_node"), **attributes))
        return names[0] if outputs == 1 else names

    # -- layouts ----------------------------------------------------------------------------------
    def channels_first(self, x):
        """The ``(N, C, H, W)`` twin of the channels-last image ``x`` (a ``Transpose``, made
        once and shared by every reader)."""
        twin = self._first.get(x)
        if twin is None:
            twin = self.node("Transpose", [x], hint="to_nchw", perm=list(TO_CHANNELS_FIRST))
            self._pair(x, twin)
        return twin

    def channels_last(self, y):
        """The channels-last value of the ``(N, C, H, W)`` result ``y``: what a converter
        returns after computing in channels-first layout."""
        twin = self._last.get(y)
        if twin is None:
            twin = self.node("Transpose", [y], hint="to_nhwc", perm=list(TO_CHANNELS_LAST))
            self._pair(twin, y)
        return twin

    def has_channels_first(self, x):
        """True if ``x`` already has a channels-first twin (it came from a channels-first
        result): an elementwise or per-channel converter can then stay channels-first."""
        return x in self._first

    def _pair(self, last, first):
        self._first[last] = first
        self._last[first] = last

    def per_channel(self, x, compute):
        """Apply a per-channel or elementwise computation in whichever layout ``x`` has.

        ``compute(value, channel_axis)`` adds the nodes and returns the result's name; it gets
        the channels-first twin and ``channel_axis=1`` when ``x`` has one (so a run of
        conv, batch normalization and activation layers needs no ``Transpose``), else ``x``
        itself and ``channel_axis=-1``."""
        if self.has_channels_first(x):
            return self.channels_last(compute(self._first[x], 1))
        return compute(x, -1)

    def channel_constant(self, vector, channel_axis, hint):
        """A per-channel vector ``(C,)`` as a constant that broadcasts along
        ``channel_axis`` (-1: shape ``(C,)``; 1 of a 4-D tensor: ``(C, 1, 1)``)."""
        vector = np.asarray(vector)
        return self.constant(vector if channel_axis == -1 else vector.reshape(-1, 1, 1), hint)

    def activation(self, x, name, channel_axis=-1):
        """Apply the activation called ``name`` (a name of ``cytorch.activations.names()``)
        to ``x``, whose channels are on ``channel_axis`` (softmax normalises over them).
        Returns the result's name."""
        from . import converters
        return converters.activation(self, x, name, channel_axis)

    # -- the finished graph -------------------------------------------------------------------
    def used_parts(self, outputs):
        """``(nodes, initializers)`` that the ``outputs`` depend on, nodes in order: the
        ``Transpose`` twins nobody read are left out."""
        needed = set(outputs)
        keep = []
        for node in reversed(self.nodes):
            if any(o in needed for o in node.output):
                keep.append(node)
                needed.update(i for i in node.input if i)
        keep.reverse()
        return keep, [t for t in self.initializers if t.name in needed]
