"""The graph builder: ``Sequential`` stacks, functional ``Model`` DAGs, and the nodes between them.

A model is a directed acyclic graph of *nodes*.  A node is a symbolic tensor: it knows the layer
that produced it, the nodes that layer read, and its shape (without the batch axis).  Calling a
layer on a node makes a new node and runs the layer's shape arithmetic at once, so a net that
does not fit fails while you type it, with the layer's own ``ShapeError``::

    >>> from cytorch import layers as L, Model
    >>> i = L.Input((8, 8, 1))
    >>> x = L.Conv2D(4, 3, padding="same", activation="relu")(i)
    >>> y = L.Add()([x, L.Conv2D(4, 1)(i)])              # a skip connection
    >>> model = Model(i, L.Dense(3)(L.Flatten()(y)), seed=0)
    >>> model.predict(np.zeros((2, 8, 8, 1))).shape
    (2, 3)

``Model`` sorts the nodes topologically once.  Forward runs them in that order; backward runs
them in reverse and *sums* the gradients reaching a node from several consumers (the
multivariable chain rule: if ``x`` feeds ``f`` and ``g``, ``dL/dx = dL/df df/dx + dL/dg dg/dx``).

Each run hands every layer a ``CallContext`` (``cytorch.layers.context``): the modes of that kind
of call, made once per graph and kind and passed as an argument, never set on the layers.  So
``predict`` inside a callback runs with its own modes while ``fit`` is between two steps.  The
contexts also carry the graph passes of ``cytorch.graph_passes``, rewrites that change how a
run computes but not one number of its result.

Training (``compile``/``fit``/``evaluate``/``predict``) comes from ``cytorch.training``, the
table of ``summary()`` from ``cytorch._summary`` and ``save`` from ``cytorch.saving``.
"""
import itertools

import numpy as np

from . import graph_passes as _passes
from .errors import ShapeError
from .layers.base import Layer, _check_weight, unique_name
from .layers.context import CallContext, honours, takes_context
from .training import TrainingMixin

__all__ = ["Node", "Model", "Sequential", "call_layer"]

_node_ids = itertools.count()


class Node:
    """A symbolic tensor: ``layer`` applied to ``inputs`` gives an output of ``shape``.

    ``shape`` has no batch axis.  A source node (a model input) has no inputs; its ``layer`` is
    the ``Input`` layer it stands for, or ``None`` for the implicit input of a ``Sequential``.
    """

    __slots__ = ("layer", "inputs", "shape", "id")

    def __init__(self, layer, inputs, shape):
        self.layer = layer
        self.inputs = tuple(inputs)
        self.shape = tuple(int(s) for s in shape)
        self.id = next(_node_ids)  # creation order: makes the topological sort deterministic

    @property
    def is_source(self):
        return not self.inputs

    def __repr__(self):
        producer = "input" if self.layer is None else f"{self.layer.name}"
        return f"<Node {producer} shape=(None, {', '.join(map(str, self.shape))})>"


def _is_input_layer(obj):
    """An ``Input`` layer: a graph source that carries ``.shape`` (duck-typed, so the graph does
    not depend on how ``cytorch.layers.core`` spells it)."""
    return isinstance(obj, Layer) and type(obj).__name__ in ("Input", "InputLayer") \
        and hasattr(obj, "shape")


def _source_node(input_layer):
    """The one node an ``Input`` layer stands for (made on first use, then reused)."""
    node = input_layer.__dict__.get("_graph_node")
    if node is None:
        node = Node(input_layer, (), input_layer.shape)
        input_layer.__dict__["_graph_node"] = node
    return node


def _as_node(obj, what):
    if isinstance(obj, Node):
        return obj
    if _is_input_layer(obj):
        return _source_node(obj)
    raise TypeError(f"{what} must be a graph node (the result of calling a layer) or an Input "
                    f"layer, got {type(obj).__name__}: {obj!r}")


def call_layer(layer, inputs):
    """``layer(inputs)`` in the functional API: a new node, shape-checked now.

    ``inputs`` is one node (or ``Input`` layer), or a list of them for a layer taking several
    (``n_inputs = None``, e.g. ``Add``/``Concatenate``).  The layer is not built here: the
    ``Model`` builds every layer once it knows the whole graph, so ``Model(..., seed=)`` can seed
    the weights.  Shape errors are the layer's own ``ShapeError``, passed on unchanged.
    """
    many = isinstance(inputs, (list, tuple))
    if layer.n_inputs == 1:
        if many:
            if len(inputs) != 1:
                raise ValueError(f"{type(layer).__name__} '{layer.name}' takes 1 input, "
                                 f"got a list of {len(inputs)}")
            inputs = inputs[0]
        nodes = [_as_node(inputs, f"the input of {type(layer).__name__} '{layer.name}'")]
        input_shape = nodes[0].shape
    else:
        if not many or len(inputs) < 2:
            raise ValueError(f"{type(layer).__name__} '{layer.name}' merges several inputs: "
                             f"call it on a list of at least 2 nodes, got {inputs!r}")
        nodes = [_as_node(x, f"input {k} of {type(layer).__name__} '{layer.name}'")
                 for k, x in enumerate(inputs)]
        input_shape = [n.shape for n in nodes]
    return Node(layer, nodes, layer.compute_output_shape(input_shape))


def _topological_order(outputs):
    """Every node the outputs depend on, each after all of its inputs (ties by creation)."""
    seen, order, stack = set(), [], [(n, False) for n in sorted(outputs, key=lambda n: -n.id)]
    while stack:  # iterative DFS post-order: deep nets do not hit the recursion limit
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if node.id in seen:
            continue
        seen.add(node.id)
        stack.append((node, True))
        stack.extend((n, False) for n in sorted(node.inputs, key=lambda n: -n.id)
                     if n.id not in seen)
    return order


def layer_rngs(seed, n):
    """``n`` independent generators for the layers of a model seeded with ``seed``.

    Child ``i`` is ``SeedSequence(seed).spawn(...)[i]``, so a layer's weights depend only on the
    seed and its position, never on what other code drew from the global sequence before.
    """
    return [np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i,)))
            for i in range(n)]


class Model(TrainingMixin):
    """A network as a DAG from ``inputs`` to ``outputs`` (nodes or ``Input`` layers).

    Parameters
    ----------
    inputs : node, Input layer, or list of them
    outputs : node or list of nodes
    name : str, optional
    seed : int, optional
        Seeds the weights: every layer gets its own child generator, in layer order, before it
        is built (layers given their own ``seed=`` keep it).  Same seed, same weights, bit for
        bit.  Without it, layers draw from ``cytorch.set_seed``'s global sequence.

    Attributes
    ----------
    layers : list of Layer
        The layers in topological order (``Input`` layers not included).
    input_shape, output_shape : tuple (or list of tuples for several inputs/outputs)
    graph_passes : tuple of str
        The passes of ``cytorch.graph_passes`` that ``fit``, ``evaluate`` and ``predict``
        apply (default: all of them, ``("relu_after_pooling", "conv_max_pool")``, the second
        in ``predict`` and ``evaluate`` only); each changes no number, only the work.  Set it
        to ``()`` on a model to step through the plain graph.
    """

    graph_passes = tuple(_passes.PASSES)

    def __init__(self, inputs, outputs, name=None, seed=None):
        self.name = name or unique_name("model" if type(self) is Model else "sequential")
        self.seed = seed
        self._init_training()
        self._set_graph(inputs, outputs)

    # -- the graph ----------------------------------------------------------------------------
    def _set_graph(self, inputs, outputs):
        self._multi_in = isinstance(inputs, (list, tuple))
        self._multi_out = isinstance(outputs, (list, tuple))
        ins = [_as_node(x, "inputs") for x in (inputs if self._multi_in else [inputs])]
        outs = [_as_node(x, "outputs") for x in (outputs if self._multi_out else [outputs])]
        if not ins or not outs:
            raise ValueError("a Model needs at least one input and one output")
        if self._multi_out and len(outs) > 1:
            raise NotImplementedError("models with several outputs are not supported: "
                                      "one loss is computed on one output")
        order = _topological_order(outs)
        in_ids = {n.id for n in ins}
        for node in order:
            if node.is_source and node.id not in in_ids:
                raise ValueError(f"the outputs depend on the input {node!r}, which is not in "
                                 f"inputs: pass it in Model(inputs=[...])")
        reached = {n.id for n in order}
        for k, node in enumerate(ins):
            if node.id not in reached:
                raise ValueError(f"input {k} ({node!r}) is not connected to the outputs")
        self._inputs, self._outputs = ins, outs
        self._order = [n for n in order if not n.is_source]
        # which layers take a CallContext: a plugin may have the plain forward(x, training)
        self._ctx_args = [(takes_context(type(n.layer).forward),
                           takes_context(type(n.layer).backward)) for n in self._order]
        self._context_cache = {}
        self.layers = [n.layer for n in self._order]
        self.input_layers = [n.layer for n in ins if n.layer is not None]
        _check_unique(self.layers + self.input_layers)
        self._build_layers()
        # For each node, the position of the last node that reads it: forward drops every
        # activation as soon as nothing downstream needs it (memory stays at one batch).
        position = {n.id: k for k, n in enumerate(self._order)}
        self._free_after = {}
        for node in self._order:
            for inp in node.inputs:
                self._free_after[inp.id] = position[node.id]
        for node in outs:
            self._free_after[node.id] = len(self._order)

    def _build_layers(self):
        """Seed (if asked) and build every layer that is not built yet, in topological order."""
        rngs = layer_rngs(self.seed, len(self.layers)) if self.seed is not None else None
        for k, node in enumerate(self._order):
            layer = node.layer
            shapes = [n.shape for n in node.inputs]
            input_shape = shapes[0] if layer.n_inputs == 1 else shapes
            if layer.built:
                expected = _shape_key(layer.input_shape, layer.n_inputs)
                if expected != _shape_key(input_shape, layer.n_inputs):
                    raise ShapeError(f"{type(layer).__name__} '{layer.name}' was built for "
                                     f"input shape {expected}, but here it gets {input_shape}")
                continue
            if rngs is not None and getattr(layer, "seed", None) is None:
                layer.set_rng(rngs[k])
            layer.build(input_shape)
            if tuple(layer.output_shape) != node.shape:
                raise ShapeError(f"{type(layer).__name__} '{layer.name}': build gave output "
                                 f"shape {layer.output_shape}, compute_output_shape gave "
                                 f"{node.shape}")

    @property
    def input_shape(self):
        shapes = [n.shape for n in self._inputs]
        return shapes if self._multi_in else shapes[0]

    @property
    def output_shape(self):
        return self._outputs[0].shape

    @property
    def dtype(self):
        """The parameters' dtype (that of the first layer): inputs are converted to it."""
        return self.layers[0].dtype if self.layers else np.dtype(np.float32)

    def get_layer(self, name):
        """The layer called ``name``."""
        for layer in self.input_layers + self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer named {name!r} in model '{self.name}'; layers: "
                       f"{[layer.name for layer in self.layers]}")

    # -- forward and backward -----------------------------------------------------------------
    def _contexts(self, logits=False, training=False, inference=False, reuse_buffers=False):
        """The ``CallContext`` of every node of ``_order`` for one kind of call, made once.

        Every run skips the layers' NaN scans (the model checks its input once) and gets the
        modes of the passes named in ``graph_passes`` (they change no number, so ``predict``
        and ``evaluate`` save the work too: Keras-MNIST's ReLUs run on the pooled maps).
        ``logits``: the output layer returns its pre-activation (for a loss that fuses it).
        ``training`` (a gradient step): layers reading only model inputs skip dL/dx and every
        layer may reuse its buffers (nothing of a step outlives it).  ``inference``
        (``predict``, ``evaluate``): no backward follows, layers need keep nothing for it, and
        the passes marked ``inference_only`` (``conv_max_pool``) apply too.
        ``reuse_buffers``: every layer may reuse its buffers (``predict``, which copies each
        batch's output into its result).  A layer is asked only for the modes it honours
        (lists in ``context_modes``, with a forward and backward that take ``ctx``)."""
        passes = tuple(self.graph_passes)
        key = (bool(logits), bool(training), bool(inference), bool(reuse_buffers), passes)
        contexts = self._context_cache.get(key)
        if contexts is None:
            modes = {n.id: {} for n in self._order}
            if logits:
                modes[self._outputs[0].id]["return_logits"] = True
            if inference:
                for node in self._order:
                    modes[node.id]["inference"] = True
            if training or reuse_buffers:
                for node in self._order:
                    modes[node.id]["reuse_buffers"] = True
            if training:
                for node in self._order:
                    if all(i.is_source for i in node.inputs):
                        modes[node.id]["input_grad"] = False
            for name in passes:
                graph_pass = _passes.get(name)
                if getattr(graph_pass, "inference_only", False) and not inference:
                    continue
                for node_id, changes in graph_pass(self._order, self._outputs).items():
                    modes[node_id].update(changes)
            contexts = self._context_cache[key] = tuple(
                CallContext(check_finite=False, **{k: v for k, v in modes[n.id].items()
                                                   if honours(n.layer, k)})
                for n in self._order)
        return contexts

    def _forward(self, xs, training=False, contexts=None):
        """Run the graph on a list of input batches (one per model input); returns the output.

        ``contexts`` (from ``_contexts``) gives each layer the modes of this call; without it,
        every layer runs as if called on its own.  Activations are released as soon as their
        last consumer has run."""
        values = {n.id: x for n, x in zip(self._inputs, xs)}
        free_after = self._free_after
        for k, node in enumerate(self._order):
            layer = node.layer
            if layer.n_inputs == 1:
                x = values[node.inputs[0].id]
            else:
                x = [values[n.id] for n in node.inputs]
            if contexts is not None and self._ctx_args[k][0]:
                out = layer.forward(x, training, ctx=contexts[k])
            else:
                out = layer.forward(x, training)
            for inp in node.inputs:
                if free_after.get(inp.id) == k:
                    values.pop(inp.id, None)
            values[node.id] = out
        return values[self._outputs[0].id]

    def _backward(self, dout, contexts=None):
        """Backpropagate dL/d(output) through the graph; fills every layer's ``grads``.

        ``contexts``: those of the forward pass just run.  A node read by several layers
        receives the sum of their gradients.  The gradient with respect to the model inputs is
        not needed: a training step's contexts let a layer fed only by them skip it."""
        grads = {self._outputs[0].id: dout}
        for k in range(len(self._order) - 1, -1, -1):
            node = self._order[k]
            g = grads.pop(node.id, None)
            if g is None:  # this node does not influence the output
                continue
            layer = node.layer
            if contexts is not None and self._ctx_args[k][1]:
                dx = layer.backward(g, ctx=contexts[k])
            else:
                dx = layer.backward(g)
            if layer.n_inputs == 1:
                dx = (dx,)
            for inp, d in zip(node.inputs, dx):
                if inp.is_source:
                    continue
                if inp.id in grads:
                    # a fresh array: ``d`` may be owned by the layer (Add passes dout through)
                    grads[inp.id] = grads[inp.id] + d
                else:
                    grads[inp.id] = d

    def _ensure_built(self, x):
        """A functional Model is built when it is made; Sequential overrides this."""

    # -- parameters ---------------------------------------------------------------------------
    def count_params(self):
        """Number of parameters (trainable or not)."""
        return sum(layer.count_params() for layer in self.layers)

    def get_weights(self):
        """Copies of every layer's weights, as Keras's ``model.get_weights()``: one flat list,
        layer by layer in ``model.layers`` order, each layer's in its own order (``kernel``,
        ``bias``; BatchNormalization's ``gamma, beta, moving_mean, moving_variance``)."""
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights):
        """Copy ``weights`` -- a list in ``get_weights()``'s order, or a dict keyed
        ``"layer/param"`` -- into the layers.  Count and shapes must match and values be real
        and finite; every value is checked before any is copied."""
        targets = [(f"{layer.name}/{name}", w) for layer in self.layers
                   for name, w in layer.weight_items()]
        if isinstance(weights, dict):
            missing = [key for key, _ in targets if key not in weights]
            if missing:
                raise KeyError(f"set_weights: no value for {missing[0]!r}")
            values = [weights[key] for key, _ in targets]
        elif isinstance(weights, (list, tuple)):
            if len(weights) != len(targets):
                raise ValueError(f"set_weights on model '{self.name}' got a list of "
                                 f"{len(weights)} arrays, the model has {len(targets)} (as "
                                 f"get_weights() returns them)")
            values = weights
        else:
            raise TypeError(f"set_weights takes a list of arrays (as get_weights() returns), "
                            f"got {type(weights).__name__}")
        checked = [_check_weight(v, w, key) for v, (key, w) in zip(values, targets)]
        for (_, target), value in zip(targets, checked):
            target[...] = value

    def summary(self, print_fn=print, line_length=None):
        """Print the layer table: name and type, output shape, parameters, multiply-adds per
        sample, receptive field on the input; totals; and a warning where a stride leaves
        input rows or columns unseen.

        Parameters
        ----------
        print_fn : callable or None, default print
            Called with the whole table as one string.  With ``None`` nothing is printed and
            the table is returned instead.
        line_length : int, optional
            Width of the table; by default it keeps to 80 columns, wrapping long layer names
            and inputs inside their cells.

        Returns
        -------
        str or None
            The table when ``print_fn`` is None; else None, as in Keras (so a notebook cell
            ending in ``model.summary()`` shows the table once, not its string as well).
        """
        if print_fn is not None and not callable(print_fn):
            raise TypeError(f"print_fn must be callable or None, got {print_fn!r}")
        from ._summary import summary_table
        text = summary_table(self, line_length)
        if print_fn is None:
            return text
        print_fn(text)
        return None

    def save(self, path):
        """Write the architecture and weights to one ``.npz`` file (see ``cytorch.saving``)."""
        from .saving import save_model
        return save_model(self, path)

    def get_config(self):
        """The architecture as JSON-able data (what ``save`` stores)."""
        from .saving import model_config
        return model_config(self)

    def __repr__(self):
        return f"<{type(self).__name__} '{self.name}': {len(self.layers)} layers, " \
               f"{self.count_params():,} params>"


def _shape_key(shape, n_inputs):
    return tuple(shape) if n_inputs == 1 else tuple(tuple(s) for s in shape)


def _check_unique(layers):
    seen = {}
    for layer in layers:
        other = seen.get(layer.name)
        if other is layer:
            raise ValueError(f"layer '{layer.name}' appears twice in the graph: a layer can be "
                             f"called once (shared layers are not supported); make a new one")
        if other is not None:
            raise ValueError(f"two layers are named '{layer.name}' ({type(other).__name__} and "
                             f"{type(layer).__name__}): layer names must be unique in a model")
        seen[layer.name] = layer


class Sequential(Model):
    """A plain stack of layers, each feeding the next.

    The input shape comes from a leading ``Input`` layer, from ``input_shape=`` (here or in
    ``from_spec``), from ``build(input_shape)``, or from the first batch of data.

    >>> from cytorch import layers as L
    >>> model = Sequential([L.Conv2D(10, 5, padding=2)], input_shape=(32, 32, 3))
    >>> model.output_shape, model.count_params()
    ((32, 32, 10), 760)
    """

    def __init__(self, layers=None, name=None, seed=None, input_shape=None):
        self.name = name or unique_name("sequential")
        self.seed = seed
        self._init_training()
        self._stack = []
        self._input_layer = None
        self._input_shape = tuple(input_shape) if input_shape is not None else None
        self.layers = []
        self.input_layers = []
        self.built = False
        for layer in layers or ():
            self.add(layer)
        self._maybe_build()

    @classmethod
    def from_spec(cls, spec, input_shape=None, seed=None, name=None):
        """Build from ``[(registry_name, kwargs), ...]``, names resolved by
        ``cytorch.layers.get`` (built-ins and installed plugins alike).

        >>> model = Sequential.from_spec([("conv2d", {"filters": 6, "kernel_size": 5}),
        ...                               ("avg_pool2d", {}), ("flatten", {}),
        ...                               ("dense", {"units": 10})], input_shape=(32, 32, 1))
        >>> model.output_shape
        (10,)
        """
        from . import layers as registry
        stack = []
        for k, item in enumerate(spec):
            try:
                layer_name, kwargs = item
            except (TypeError, ValueError):
                raise TypeError(f"spec item {k} must be a pair (layer_name, kwargs), "
                                f"got {item!r}") from None
            layer_cls = registry.get(layer_name)
            try:
                stack.append(layer_cls(**dict(kwargs)))
            except TypeError as exc:
                raise TypeError(f"spec item {k} ({layer_name!r}): {exc}") from None
        return cls(stack, name=name, seed=seed, input_shape=input_shape)

    def add(self, layer):
        """Append a layer (an ``Input`` layer only as the first one)."""
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expects a Layer, got {type(layer).__name__}: "
                            f"{layer!r}")
        if _is_input_layer(layer):
            if self._stack or self._input_layer is not None:
                raise ValueError(f"an Input layer can only come first in a Sequential, "
                                 f"got {layer!r} after {len(self._stack)} layer(s)")
            self._input_layer = layer
            self._input_shape = tuple(layer.shape)
        else:
            if layer.n_inputs != 1:
                raise ValueError(f"{type(layer).__name__} '{layer.name}' merges several inputs "
                                 f"and cannot sit in a Sequential: use the functional Model")
            declared = getattr(layer, "declared_input_shape", None)  # Keras's input_shape=
            if declared is not None and not self._stack and self._input_shape is None:
                self._input_shape = tuple(declared)
            self._stack.append(layer)
        if self.built or self._input_shape is not None:  # Keras builds as soon as it can
            try:
                self._rebuild()
            except Exception:  # a layer that does not fit is not kept
                if self._stack and self._stack[-1] is layer:
                    self._stack.pop()
                    self._rebuild()
                raise
        return self

    def pop(self):
        """Remove and return the last layer."""
        if not self._stack:
            raise IndexError("pop from an empty Sequential")
        layer = self._stack.pop()
        self._rebuild()
        return layer

    def build(self, input_shape=None):
        """Build every layer for samples of ``input_shape`` (no batch axis)."""
        if input_shape is not None:
            input_shape = tuple(int(s) for s in input_shape)
            if self._input_shape is not None and input_shape != self._input_shape:
                raise ShapeError(f"Sequential '{self.name}' has input shape "
                                 f"{self._input_shape}, build() got {input_shape}")
            self._input_shape = input_shape
        if self._input_shape is None:
            raise ValueError(f"Sequential '{self.name}' needs an input shape: start with an "
                             f"Input layer, pass input_shape=, or call build(input_shape)")
        self._rebuild()
        return self

    def _maybe_build(self):
        if self._input_shape is not None and self._stack:
            self.build()

    def _rebuild(self):
        if self._input_shape is None or not self._stack:
            self.built = False
            self.layers = list(self._stack)
            return
        source = _source_node(self._input_layer) if self._input_layer is not None \
            else Node(None, (), self._input_shape)
        node = source
        for layer in self._stack:
            node = Node(layer, [node], layer.compute_output_shape(node.shape))
        self._set_graph(source, node)
        self.built = True

    def _ensure_built(self, x):
        """Lazy build from the first data: ``x`` is ``(N, *input_shape)``."""
        if not self.built:
            if not self._stack:
                raise ValueError(f"Sequential '{self.name}' has no layers: add some first")
            shape = np.shape(x[0] if isinstance(x, (list, tuple)) else x)
            if len(shape) < 2:
                raise ShapeError(f"x must be a batch (N, H, W, C) of samples, got shape {shape}")
            self.build(shape[1:])

    @property
    def input_shape(self):
        return self._input_shape

    @property
    def output_shape(self):
        if not self.built:
            return None
        return self._outputs[0].shape

    @property
    def dtype(self):
        return self._stack[0].dtype if self._stack else np.dtype(np.float32)
