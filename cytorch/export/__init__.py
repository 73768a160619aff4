"""Export a trained model to ONNX, the exchange format of ONNX Runtime, Netron and most
deployment tools.

>>> import cytorch                                                    # doctest: +SKIP
>>> cytorch.export.to_onnx(model, "model.onnx")                       # doctest: +SKIP
'model.onnx'

The file is a standard ONNX graph (default operator set ``DEFAULT_OPSET`` = 17) that takes
what cytorch takes, a float32 batch ``(batch, H, W, C)`` channels-last with a dynamic batch
size, and returns what ``model.predict`` returns (class probabilities after a softmax output).
Its input is called ``"input"`` (with several inputs: the ``Input`` layers' names), its output
``"output"``.  Inside, the graph transposes to ONNX's channels-first layout where ``Conv`` and
the pooling operators need it and back before ``Flatten``, so the ``Dense`` weights keep their
order.  Dropout layers vanish (they are the identity at inference) and batch normalization
uses its moving statistics.

Every layer is converted by a function found, like the layers themselves, through an
entry-point group: ``cytorch.onnx``, under the layer's own name (``conv2d``, ...).  cytorch
registers its built-ins there and a plugin registers its own (see ``cytorch.export.graph`` for
the converter's signature and ``cytorch.export.converters`` for examples).  A layer without a
converter stops the export with an ``ExportError`` that names it and its distribution.

This module imports without the ``onnx`` package; exporting needs it
(``pip install "cytorch-edu[onnx]"``).  Running the file needs ``onnxruntime``.
"""
import copy
import importlib.metadata
import os

import numpy as np

from .. import registry as _layer_registry
from ..errors import ExportError
from .graph import OnnxGraph

__all__ = ["to_onnx", "to_onnx_model", "available", "refresh", "OnnxGraph", "ExportError",
           "GROUP", "DEFAULT_OPSET", "MIN_OPSET", "INPUT_NAME", "OUTPUT_NAME"]

#: the entry-point group of ONNX converters, keyed by layer name as ``cytorch.layers``
GROUP = "cytorch.onnx"
#: supported by every onnxruntime since 1.13 (2022), and what ``to_onnx`` writes by default
DEFAULT_OPSET = 17
#: the oldest operator set the converters write correctly (opset 13: ``Softmax`` over one
#: axis, ``Resize`` and ``Pad`` with their inputs as today)
MIN_OPSET = 13
INPUT_NAME = "input"
OUTPUT_NAME = "output"

INSTALL_HINT = 'pip install "cytorch-edu[onnx]"'


def _entry_points():
    """The group's entry points from the installed metadata (tests replace this function)."""
    return importlib.metadata.entry_points(group=GROUP)


def _check_converter(ep, obj):
    if not callable(obj):
        return (f"{ep.value} is not callable (got {type(obj).__name__}); entry points of "
                f"{GROUP!r} must name functions converter(layer, inputs, graph)")
    return None


_registry = _layer_registry.Registry(lambda: _entry_points(), group=GROUP,
                                     check=_check_converter)


def available():
    """``{layer name: (converter, distribution)}`` of every converter that loaded, sorted
    (as ``cytorch.layers.available()`` lists the layers).

    >>> from cytorch import export
    >>> export.available()["conv2d"][0].__name__                   # doctest: +SKIP
    'conv2d'
    """
    return {e.name: (e.cls, e.distribution) for e in _registry.discover()
            if e.cls is not None and not e.conflict}


def refresh():
    """Look for converters again on next use (after installing a plugin)."""
    _registry.refresh()


def _import_onnx():
    try:
        import onnx
        import onnx.checker
        import onnx.helper
    except ImportError as exc:
        raise ImportError(f"exporting to ONNX needs the onnx package: {INSTALL_HINT} "
                          f"(or pip install onnx); {exc}") from exc
    return onnx


# -- finding a layer's converter ----------------------------------------------------------------
def _layer_origin(cls):
    """``(entry-point name, distribution)`` of a layer class, or ``(None, None)``."""
    for entry in _layer_registry.discover():
        if entry.cls is cls:
            return entry.name, entry.distribution
    return None, None


def _how_to_add(cls, name, distribution):
    write = ("write a function converter(layer, inputs, graph) -> output name (see "
             "cytorch.export.graph)")
    one_export = f"to_onnx(model, path, converters={{{cls.__name__}: converter}})"
    guide = "the plugin guide's section 'ONNX export' shows one"
    if name is None:
        return (f"to export it, {write} and pass it for this export: {one_export}; or "
                f"publish the layer in the 'cytorch.layers' group and its converter under the "
                f"same name in the {GROUP!r} group ({guide})")
    return (f"to export it, {write} and register it under the layer's name in "
            f"{distribution}'s pyproject.toml or your own:\n"
            f'    [project.entry-points."cytorch.onnx"]\n'
            f'    {name} = "your_module:converter"\n'
            f"or pass it for one export: {one_export} ({guide})")


def _converter_for(layer, extra):
    """The converter of ``layer``: from ``extra`` (``to_onnx(converters=)``), else from the
    ``cytorch.onnx`` group under the layer's registered name."""
    cls = type(layer)
    for key in (cls, cls.__name__):
        if key in extra:
            return extra[key]
    name, distribution = _layer_origin(cls)
    if name is not None and name in extra:
        return extra[name]
    what = f"{cls.__name__} '{layer.name}'"
    if name is None:
        raise ExportError(f"no ONNX converter for {what}: {cls.__module__}.{cls.__name__} is "
                          f"not registered in the 'cytorch.layers' entry-point group, so no "
                          f"converter of the {GROUP!r} group can name it; "
                          + _how_to_add(cls, None, None))
    matches = [e for e in _registry.discover() if e.name == name]
    if not matches:
        raise ExportError(f"no ONNX converter for {what}, the layer {name!r} of the "
                          f"distribution {distribution}: nothing in the {GROUP!r} "
                          f"entry-point group is registered as {name!r}; "
                          + _how_to_add(cls, name, distribution))
    entry = matches[0]
    if entry.conflict:
        labels = [entry.label] + [f"{d}[{name}]" for d in entry.conflict]
        raise ExportError(f"the ONNX converter for {what} is claimed by two distributions: "
                          f"{' and '.join(labels)}; uninstall one of them")
    if entry.cls is None:
        raise ExportError(f"the ONNX converter for {what} is provided by {entry.label}, "
                          f"which failed to load: {entry.error}")
    return entry.cls


def _check_extra(converters):
    if converters is None:
        return {}
    if not isinstance(converters, dict):
        raise TypeError(f"converters must be a dict {{layer class or name: function}}, got "
                        f"{type(converters).__name__}")
    for key, fn in converters.items():
        if not callable(fn):
            raise TypeError(f"converters[{key!r}] must be a function converter(layer, inputs, "
                            f"graph), got {type(fn).__name__}")
    return converters


# -- what can be exported -----------------------------------------------------------------------
def _as_model(model):
    """The cytorch ``Model`` to export: ``model`` itself, or a fitted ``CNNClassifier``'s
    ``model_``; built, or an ``ExportError`` saying what to do."""
    from ..estimator import CNNClassifier
    from ..graph import Model
    if isinstance(model, CNNClassifier):
        fitted = getattr(model, "model_", None)
        if fitted is None:
            raise ExportError("this CNNClassifier is not fitted yet: call fit(X, y) before "
                              "exporting it (the export writes its model_)")
        model = fitted
    if not isinstance(model, Model):
        raise TypeError(f"model must be a cytorch Sequential or Model (or a fitted "
                        f"CNNClassifier), got {type(model).__name__}")
    if getattr(model, "built", True) is False:
        raise ExportError(f"model '{model.name}' is not built yet, so it has no weights to "
                          f"export: give it an input shape (an Input layer, input_shape=, or "
                          f"build(input_shape)) and train it before exporting")
    return model


def _check_opset(opset, onnx):
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) \
            or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset must be an int from {MIN_OPSET} to {newest} (the newest "
                         f"operator set of the installed onnx {onnx.__version__}); default "
                         f"{DEFAULT_OPSET}; got {opset!r}")
    return int(opset)


# -- the conversion -----------------------------------------------------------------------------
def to_onnx_model(model, opset=DEFAULT_OPSET, converters=None, fold_batchnorm=False):
    """The ONNX ``ModelProto`` of ``model`` (see ``to_onnx``), checked by
    ``onnx.checker.check_model``, without writing a file."""
    onnx = _import_onnx()
    from onnx import TensorProto, helper
    model = _as_model(model)
    opset = _check_opset(opset, onnx)
    extra = _check_extra(converters)
    if not isinstance(fold_batchnorm, (bool, np.bool_)):
        raise TypeError(f"fold_batchnorm must be True or False, got {fold_batchnorm!r}")
    folds = _foldable_batchnorms(model) if fold_batchnorm else {}
    folded_into = {source.id: node.layer for node, source in folds.values()}
    graph = OnnxGraph(opset, np.float32)
    values, graph_inputs = {}, []
    for node in model._inputs:
        name = INPUT_NAME if len(model._inputs) == 1 else node.layer.name
        values[node.id] = graph.reserve(name)
        graph_inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                          ["batch", *node.shape]))
    for node in model._order:
        layer = node.layer
        if node.id in folds:        # its transform is in the weights of the layer before it
            values[node.id] = values[node.inputs[0].id]
            continue
        if node.id in folded_into:
            layer = _with_batchnorm_folded_in(layer, folded_into[node.id])
        convert = _converter_for(layer, extra)
        graph.scope = layer.name
        inputs = [values[n.id] for n in node.inputs]
        try:
            out = convert(layer, inputs, graph)
        except (ExportError, ImportError):
            raise
        except Exception as exc:
            raise ExportError(f"the ONNX converter {getattr(convert, '__qualname__', convert)}"
                              f" failed on {type(layer).__name__} '{layer.name}': "
                              f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(out, str) or out not in graph._taken:
            raise ExportError(f"the ONNX converter {getattr(convert, '__qualname__', convert)}"
                              f" of {type(layer).__name__} '{layer.name}' returned {out!r}; "
                              f"it must return the name of the value holding the output")
        values[node.id] = out
    graph.scope = ""
    _name_output(graph, values[model._outputs[0].id], {v.name for v in graph_inputs})
    nodes, initializers = graph.used_parts([OUTPUT_NAME])
    outputs = [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT,
                                             ["batch", *model._outputs[0].shape])]
    onnx_graph = helper.make_graph(nodes, model.name, graph_inputs, outputs, initializers)
    opsets = [helper.make_opsetid("", opset)]
    from .. import __version__
    proto = helper.make_model(
        onnx_graph, opset_imports=opsets, producer_name="cytorch",
        producer_version=__version__,
        # the oldest IR version that carries this opset: what older runtimes can read
        ir_version=helper.find_min_ir_version_for(opsets),
        doc_string=(f"cytorch model '{model.name}': input (batch, "
                    f"{', '.join(map(str, model._inputs[0].shape))}) float32 channels-last, as "
                    f"cytorch takes it; output as model.predict returns it"))
    helper.set_model_props(proto, {"input_layout": "channels-last (batch, H, W, C)"})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _foldable_batchnorms(model):
    """``{BatchNormalization node id: (that node, the Conv2D or Dense node it reads)}`` for
    every batch normalization that can be folded into the layer before it: that layer has no
    activation (``"linear"``) and nothing else reads its output, which is not a model output
    either."""
    from .. import activations
    from ..layers.conv import Conv2D
    from ..layers.core import Dense
    from ..layers.normalization import BatchNormalization
    readers = {}
    for node in model._order:
        for source in node.inputs:
            readers.setdefault(source.id, []).append(node)
    outputs = {node.id for node in model._outputs}
    folds = {}
    for node in model._order:
        if type(node.layer) is not BatchNormalization or len(node.inputs) != 1:
            continue
        source = node.inputs[0]
        if type(source.layer) not in (Conv2D, Dense) or source.id in outputs \
                or readers.get(source.id) != [node] \
                or activations.get(source.layer.activation).name != "linear":
            continue
        folds[node.id] = (node, source)
    return folds


def _with_batchnorm_folded_in(layer, bn):
    """A shallow copy of the Conv2D or Dense ``layer`` whose weights also do ``bn``'s
    inference transform ``(z - moving_mean) * a + beta``, ``a = gamma / sqrt(moving_variance
    + epsilon)``: ``kernel * a`` (``a`` along the last axis, the output channels) and bias
    ``(bias - moving_mean) * a + beta``, computed in float64 (the graph stores them in
    float32).  ``layer`` itself is not modified."""
    mean = bn.state["moving_mean"].astype(np.float64)
    a = 1.0 / np.sqrt(bn.state["moving_variance"].astype(np.float64) + bn.epsilon)
    if "gamma" in bn.params:
        a = a * bn.params["gamma"].astype(np.float64)
    shift = bn.params["beta"].astype(np.float64) if "beta" in bn.params else 0.0
    bias = layer.params["bias"].astype(np.float64) if layer.use_bias else 0.0
    folded = copy.copy(layer)
    folded.params = {"kernel": layer.params["kernel"].astype(np.float64) * a,
                     "bias": (bias - mean) * a + shift}
    folded.use_bias = True
    return folded


def _name_output(graph, value, graph_inputs):
    """Call the model's output value ``OUTPUT_NAME``: rename it where it is made and read, or
    copy it with ``Identity`` when it is a graph input or a weight (a model of Dropouts)."""
    producers = [n for n in graph.nodes if value in n.output]
    if not producers or value in graph_inputs:
        graph.nodes.append(_identity(value))
        return
    for node in graph.nodes:
        for seq in (node.input, node.output):
            for k, name in enumerate(seq):
                if name == value:
                    seq[k] = OUTPUT_NAME


def _identity(value):
    from onnx import helper
    return helper.make_node("Identity", [value], [OUTPUT_NAME], name="output_identity")


# -- writing ------------------------------------------------------------------------------------
def to_onnx(model, path, opset=DEFAULT_OPSET, converters=None, fold_batchnorm=False):
    """Write ``model`` to ``path`` as an ONNX file; returns ``path``.

    Parameters
    ----------
    model : Sequential, Model or fitted CNNClassifier
        Built (it has weights); a ``CNNClassifier`` exports its ``model_``: the file takes
        ``(batch, *clf.input_shape_)`` images (reshape flat rows as the estimator does,
        ``X.reshape(-1, *clf.input_shape_)``) and returns ``predict_proba``, its columns in
        ``clf.classes_`` order.
    path : str or path-like
        The file to write (``.onnx`` by convention).  It is written next to its destination
        and renamed into place: a failed export leaves no file behind, not even a partial one.
    opset : int, default ``DEFAULT_OPSET`` (17)
        The ONNX operator set, from ``MIN_OPSET`` (13) to the newest the installed ``onnx``
        knows.
    converters : dict, optional
        ``{layer class, class name or layer name: converter}`` for this export only, before
        the ``cytorch.onnx`` entry-point group (a layer defined in a script, say).
    fold_batchnorm : bool, default False
        Opt-in.  Fold every ``BatchNormalization`` that directly follows a ``Conv2D`` or
        ``Dense`` without activation (and is the only reader of its output) into that layer's
        weights, as deployment tools do: at inference batch normalization is
        ``(z - moving_mean) * a + beta`` with ``a = gamma / sqrt(moving_variance +
        epsilon)``, so the layer's kernel becomes ``kernel * a`` (per output channel) and its
        bias ``(bias - moving_mean) * a + beta``, computed in float64.  The file then has no
        batch-normalization nodes and one multiply-add less per value.  Its outputs differ
        from ``model.predict`` by float32 rounding (the folded weights are rounded once, and
        the sums run in another order), which is why the default keeps batch normalization
        as nodes of its own that compute cytorch's numbers in cytorch's order.
        Other batch normalizations (after an activation, a pooling, a merge ...) stay as
        they are.

    The graph takes a float32 ``(batch, H, W, C)`` input called ``"input"`` (channels-last,
    the batch size free) and returns ``"output"``, what ``model.predict`` returns; a float64
    model is written in float32.  The model is not modified.

    Raises ``ExportError`` for a model that is not built or a layer without a converter,
    ``ValueError`` for a bad ``opset``, ``FileNotFoundError`` / ``PermissionError`` /
    ``IsADirectoryError`` / ``NotADirectoryError`` when ``path`` cannot be written, and ``ImportError`` when the
    ``onnx`` package is missing.

    Open the file in Netron (https://netron.app) to see the graph; run it with onnxruntime::

        import onnxruntime as ort
        session = ort.InferenceSession("model.onnx")
        probabilities = session.run(None, {"input": X.astype("float32")})[0]
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file name (str or path-like), got "
                        f"{type(path).__name__}: {path!r}")
    path = os.fspath(path)
    _check_destination(path)
    data = to_onnx_model(model, opset, converters, fold_batchnorm).SerializeToString()
    from ..saving import _create_beside
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = _create_beside(folder, suffix=".onnx.tmp")
    except PermissionError as exc:
        raise PermissionError(f"cannot write {path!r}: the directory {folder!r} is not "
                              f"writable ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _check_destination(path):
    """Clear errors, before any work, for a path that cannot be written."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot write {path!r}: it is a directory; give a file name "
                                f"such as {os.path.join(path, 'model.onnx')!r}")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise NotADirectoryError(f"cannot write {path!r}: {folder!r} is a file, not a "
                                 f"directory")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path!r}: the directory {folder!r} does not "
                                f"exist")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"cannot write {path!r}: the directory {folder!r} is not "
                              f"writable")
