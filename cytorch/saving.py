"""``model.save(path)`` and ``cytorch.load_model(path)``: one ``.npz`` file, nothing pickled.

The file is a plain NumPy archive (``np.savez``) holding

* ``__architecture__``: the JSON text of the architecture, as a uint8 array.  Each layer is
  stored by its *entry-point name* in the ``cytorch.layers`` group (``"conv2d"``, or a plugin's
  ``"locally_connected2d"``) with its ``get_config()``; a functional ``Model`` also stores which
  layers feed which.  The training configuration (loss, optimizer, metrics) is stored too, so a
  loaded model is compiled again;
* ``"{layer}/{param}"``: one array per parameter, e.g. ``conv2d/kernel``.

``load_model`` reads it with ``np.load(..., allow_pickle=False)``: a file can hold arrays and
text, never code.  Layer names are resolved through ``cytorch.layers.get``, so a model saved
with a plugin layer loads wherever that plugin is installed, and fails with a message naming the
layer and the entry-point group where it is not.

The optimizer's *state* (momentum buffers, Adam's moments) is not saved: a loaded model resumes
training with fresh optimizer state, as after ``compile``.
"""
import json
import os
import tempfile

import numpy as np

__all__ = ["save_model", "load_model", "model_config", "model_from_config"]

FORMAT = "cytorch.model"
VERSION = 1
ARCH_KEY = "__architecture__"
GROUP = "cytorch.layers"


def _registry_names():
    """``{layer class: entry-point name}`` for every discovered layer (first name wins)."""
    from . import layers as registry
    names = {}
    for name, entry in sorted(registry.available().items()):
        cls = entry[0] if isinstance(entry, tuple) else entry
        names.setdefault(cls, name)
    return names


def _layer_entry(layer, names):
    cls = type(layer)
    name = names.get(cls)
    if name is None:
        raise ValueError(
            f"cannot save {cls.__name__} '{layer.name}': its class {cls.__module__}."
            f"{cls.__qualname__} is not registered in the '{GROUP}' entry-point group, so "
            f"load_model could not find it again; register it in your package's "
            f"pyproject.toml under [project.entry-points.\"{GROUP}\"]")
    config = layer.get_config()
    try:
        json.dumps(config)
    except TypeError as exc:
        raise TypeError(f"{cls.__name__} '{layer.name}'.get_config() must return JSON-able "
                        f"values: {exc}") from None
    return {"registered_name": name, "class_name": cls.__name__, "config": config}


def model_config(model):
    """The JSON-able architecture of ``model`` (Sequential or functional Model)."""
    from .graph import Sequential
    names = _registry_names()
    config = {"format": FORMAT, "version": VERSION, "name": model.name}
    if isinstance(model, Sequential):
        config["class_name"] = "Sequential"
        config["input_shape"] = list(model.input_shape) if model.input_shape else None
        stack = ([model._input_layer] if model._input_layer is not None else []) + model._stack
        config["layers"] = [_layer_entry(layer, names) for layer in stack]
    else:
        config["class_name"] = "Model"
        entries = []
        for node in model._inputs:
            entry = _layer_entry(node.layer, names)
            entry["inbound"] = []
            entries.append(entry)
        for node in model._order:
            entry = _layer_entry(node.layer, names)
            entry["inbound"] = [n.layer.name for n in node.inputs]
            entries.append(entry)
        config["layers"] = entries
        config["inputs"] = [n.layer.name for n in model._inputs]
        config["outputs"] = [n.layer.name for n in model._outputs]
    if model.loss is not None:
        config["compile"] = {
            "loss": model.loss.name,
            "optimizer": {"class_name": model.optimizer.name,
                          "config": model.optimizer.get_config()},
            "metrics": list(model.metrics),
        }
    return config


def _resolve(entry):
    from . import layers as registry
    name = entry["registered_name"]
    try:
        return registry.get(name)
    except KeyError:
        raise ValueError(
            f"the saved model uses layer {name!r} ({entry.get('class_name', '?')} "
            f"'{entry['config'].get('name', '?')}'), but no installed package provides "
            f"{name!r} in the '{GROUP}' entry-point group; install the plugin that defines it "
            f"(pip install <its distribution>) and load again") from None


def model_from_config(config):
    """Rebuild an (untrained) model from ``model_config``'s output."""
    from .graph import Model, Sequential
    if config.get("format") != FORMAT:
        raise ValueError(f"not a cytorch model architecture (format={config.get('format')!r})")
    if config.get("version", 0) > VERSION:
        raise ValueError(f"this file was written by a newer cytorch (format version "
                         f"{config['version']}, this one reads up to {VERSION})")
    layers = [_resolve(e).from_config(dict(e["config"])) for e in config["layers"]]
    if config["class_name"] == "Sequential":
        shape = config.get("input_shape")
        model = Sequential(layers, name=config["name"],
                           input_shape=None if shape is None else tuple(shape))
    else:
        nodes = {}
        for entry, layer in zip(config["layers"], layers):
            inbound = entry["inbound"]
            if not inbound:
                nodes[layer.name] = layer  # an Input layer is its own source node
            else:
                args = [nodes[n] for n in inbound]
                nodes[layer.name] = layer(*args) if layer.n_inputs != 1 else layer(args[0])
        ins = [nodes[n] for n in config["inputs"]]
        outs = [nodes[n] for n in config["outputs"]]
        model = Model(ins if len(ins) > 1 else ins[0], outs[0], name=config["name"])
    compiled = config.get("compile")
    if compiled:
        from . import optimizers
        opt = optimizers.get(compiled["optimizer"]["class_name"])(
            **compiled["optimizer"]["config"])
        model.compile(optimizer=opt, loss=compiled["loss"], metrics=compiled["metrics"])
    return model


def save_model(model, path):
    """Write ``model`` to ``path`` (exactly that name; ``.npz`` is the convention).

    The file is written next to its destination and renamed into place, so an interrupted
    save never leaves a truncated file behind.  Returns the path."""
    if getattr(model, "built", True) is False:
        raise ValueError(f"model '{model.name}' is not built yet: give it an input shape (or "
                         f"fit it) before saving")
    arrays = {ARCH_KEY: np.frombuffer(json.dumps(model_config(model)).encode(), np.uint8)}
    for layer in model.layers:
        for k, v in layer.params.items():
            arrays[f"{layer.name}/{k}"] = v
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".cytorch-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_model(path):
    """Rebuild a model saved by ``model.save(path)``: architecture, weights, compile settings.

    >>> # model.save("lenet.npz"); model2 = cytorch.load_model("lenet.npz")
    """
    with np.load(os.fspath(path), allow_pickle=False) as data:
        if ARCH_KEY not in data.files:
            raise ValueError(f"{path!r} is not a cytorch model file: no {ARCH_KEY!r} entry "
                             f"(it holds {data.files[:5]}...)")
        config = json.loads(data[ARCH_KEY].tobytes().decode())
        model = model_from_config(config)
        stored = set(data.files) - {ARCH_KEY}
        for layer in model.layers:
            for k, p in layer.params.items():
                key = f"{layer.name}/{k}"
                if key not in stored:
                    raise ValueError(f"{path!r} has no weights for {key!r}")
                value = data[key]
                if value.shape != p.shape:
                    raise ValueError(f"{path!r}: {key!r} has shape {value.shape}, the layer "
                                     f"expects {p.shape}")
                p[...] = value
                stored.discard(key)
        if stored:
            raise ValueError(f"{path!r} holds weights no layer uses: {sorted(stored)[:5]}")
    return model
