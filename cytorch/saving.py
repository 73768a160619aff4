"""``model.save(path)`` and ``cytorch.load_model(path)``: one ``.npz`` file, nothing pickled.

The file is a plain NumPy archive (``np.savez``) holding

* ``__architecture__``: the JSON text of the architecture, as a uint8 array.  Each layer is
  stored by its *entry-point name* in the ``cytorch.layers`` group (``"conv2d"``, or a plugin's
  ``"locally_connected2d"``) with its ``get_config()`` and the distribution that provided it
  (``"provided_by": {"distribution": "cytorch-locally-connected", "version": "0.1.0"}``, so
  that loading where that plugin is missing can say what to install; files written before
  this was recorded load all the same); a functional ``Model`` also stores which layers feed
  which.  The training configuration (loss, optimizer, metrics) is stored too, so a
  loaded model is compiled again;
* ``"{layer}/{param}"``: one array per parameter, e.g. ``conv2d/kernel``, and per state array
  (``batch_normalization/moving_mean``);
* ``"__optimizer__/iterations"`` and ``"__optimizer__/{layer}/{param}/{slot}"``: the optimizer's
  step count and its per-parameter buffers (``momentum``, ``velocity``, ...), as a Keras
  ``.keras`` file holds them.  With the learning rate in the stored optimizer config, a loaded
  model resumes training exactly where the saved one stopped: 2 epochs, save, load, 2 more
  epochs give the weights of 4 epochs in a row (without shuffling).

``load_model`` reads it with ``np.load(..., allow_pickle=False)``: a file can hold arrays and
text, never code.  Layer names are resolved through ``cytorch.layers.get``, so a model saved
with a plugin layer loads wherever that plugin is installed, and fails with a message naming the
layer, the entry-point group and the distribution to install where it is not.

The file is written next to its destination and renamed into place (atomic), with the mode
the umask gives a new file (0644 under the usual umask 022), like any file the user writes.
"""
import json
import os
import secrets

import numpy as np

__all__ = ["save_model", "load_model", "model_config", "model_from_config"]

FORMAT = "cytorch.model"
VERSION = 1
ARCH_KEY = "__architecture__"
GROUP = "cytorch.layers"
OPT_PREFIX = "__optimizer__/"


def _layer_entry(layer):
    from . import registry
    cls = type(layer)
    name = registry.name_of(cls)   # RegistryError if two distributions claim its name
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
    entry = {"registered_name": name, "class_name": cls.__name__, "config": config}
    provider = _provider(cls, name)
    if provider is not None:
        entry["provided_by"] = provider
    return entry


def _provider(cls, name):
    """``{"distribution": ..., "version": ...}`` that registers ``cls`` as ``name`` (what to
    install to load the file again), or None for an entry point without a distribution."""
    from . import registry
    for entry in registry.discover():
        if entry.name == name and entry.cls is cls \
                and entry.distribution != registry.UNKNOWN_DISTRIBUTION:
            return {"distribution": entry.distribution, "version": entry.version}
    return None


def model_config(model):
    """The JSON-able architecture of ``model`` (Sequential or functional Model)."""
    from .graph import Sequential
    config = {"format": FORMAT, "version": VERSION, "name": model.name}
    if isinstance(model, Sequential):
        config["class_name"] = "Sequential"
        config["input_shape"] = list(model.input_shape) if model.input_shape else None
        stack = ([model._input_layer] if model._input_layer is not None else []) + model._stack
        config["layers"] = [_layer_entry(layer) for layer in stack]
    else:
        config["class_name"] = "Model"
        entries = []
        for node in model._inputs:
            entry = _layer_entry(node.layer)
            entry["inbound"] = []
            entries.append(entry)
        for node in model._order:
            entry = _layer_entry(node.layer)
            entry["inbound"] = [n.layer.name for n in node.inputs]
            entries.append(entry)
        config["layers"] = entries
        config["inputs"] = [n.layer.name for n in model._inputs]
        config["outputs"] = [n.layer.name for n in model._outputs]
    if model.loss is not None:
        config["compile"] = {
            "loss": model.loss.name,
            "loss_config": model.loss.get_config() if hasattr(model.loss, "get_config") else {},
            "optimizer": {"class_name": model.optimizer.name,
                          "config": model.optimizer.get_config()},
            "metrics": list(model.metrics),
            "weighted_metrics": list(model.weighted_metrics),
        }
    return config


def _check_config(config):
    """Raise ValueError unless ``config`` has the structure ``model_config`` writes (a file
    edited by hand, or written by something else, then fails with a message, not a KeyError)."""
    def require(ok, what):
        if not ok:
            raise ValueError(f"not a cytorch model architecture: {what}")

    require(isinstance(config, dict), f"expected a JSON object, got {type(config).__name__}")
    require(config.get("format") == FORMAT, f"format={config.get('format')!r}, expected "
                                            f"{FORMAT!r}")
    version = config.get("version", 0)
    require(isinstance(version, int) and not isinstance(version, bool),
            f"version must be an int, got {version!r}")
    if version > VERSION:
        raise ValueError(f"this file was written by a newer cytorch (format version "
                         f"{version}, this one reads up to {VERSION})")
    kind = config.get("class_name")
    require(kind in ("Sequential", "Model"),
            f"class_name must be 'Sequential' or 'Model', got {kind!r}")
    layers = config.get("layers")
    require(isinstance(layers, list) and layers, "'layers' must be a non-empty list")
    for k, entry in enumerate(layers):
        require(isinstance(entry, dict) and isinstance(entry.get("registered_name"), str)
                and isinstance(entry.get("config"), dict),
                f"layer {k} must be an object with a 'registered_name' string and a 'config' "
                f"object, got {entry!r}")
        provider = entry.get("provided_by")   # absent in files from before it was recorded
        require(provider is None or (
                    isinstance(provider, dict)
                    and isinstance(provider.get("distribution"), str)
                    and isinstance(provider.get("version"), (str, type(None)))),
                f"layer {k}: 'provided_by' must be an object with a 'distribution' string and "
                f"a 'version' string or null, got {provider!r}")
    if kind == "Model":
        names = [entry["config"].get("name") for entry in layers]
        for k, entry in enumerate(layers):
            inbound = entry.get("inbound")
            require(isinstance(inbound, list) and all(n in names[:k] for n in inbound),
                    f"layer {k} ({names[k]!r}) must list its inputs in 'inbound', each one a "
                    f"layer before it, got {inbound!r}")
        for key in ("inputs", "outputs"):
            value = config.get(key)
            require(isinstance(value, list) and value and all(n in names for n in value),
                    f"{key!r} must be a non-empty list of layer names, got {value!r}")


def _resolve(entry):
    from . import layers as registry
    name = entry["registered_name"]
    try:
        return registry.get(name)
    except KeyError:
        provider = entry.get("provided_by")
        if provider:
            version = provider.get("version")
            origin = (f", provided by {provider['distribution']}"
                      f"{' ' + version if version else ''} when it was saved")
            install = f"pip install {provider['distribution']}"
        else:  # a file written before the distribution was recorded
            origin, install = "", "pip install <its distribution>"
        raise ValueError(
            f"the saved model uses layer {name!r} ({entry.get('class_name', '?')} "
            f"'{entry['config'].get('name', '?')}'{origin}), but no installed package provides "
            f"{name!r} in the '{GROUP}' entry-point group; install the plugin that defines it "
            f"({install}) and load again") from None


def _layer_from_entry(k, entry):
    """The layer that ``entry`` (layer ``k`` of an architecture) describes; a config its class
    rejects fails naming the layer."""
    cls = _resolve(entry)
    try:
        return cls.from_config(dict(entry["config"]))
    except (TypeError, ValueError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise ValueError(f"layer {k} of the architecture ({entry['registered_name']} "
                         f"{entry['config'].get('name', '?')!r}) has a config its class "
                         f"{cls.__name__} rejects: {message}") from exc


def model_from_config(config):
    """Rebuild an (untrained) model from ``model_config``'s output."""
    from .graph import Model, Sequential
    _check_config(config)
    layers = [_layer_from_entry(k, e) for k, e in enumerate(config["layers"])]
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
        from . import losses
        loss = compiled["loss"]
        if compiled.get("loss_config"):
            loss = type(losses.get(loss))(**compiled["loss_config"])
        model.compile(optimizer=opt, loss=loss, metrics=compiled["metrics"],
                      weighted_metrics=compiled.get("weighted_metrics"))
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
        for k, v in layer.weight_items():   # parameters and state (moving statistics)
            arrays[f"{layer.name}/{k}"] = v
    if model.optimizer is not None:
        state = model.optimizer.get_state()
        arrays[OPT_PREFIX + "iterations"] = np.array(state["iterations"], dtype=np.int64)
        for key, value in state["slots"].items():
            arrays[OPT_PREFIX + key] = value
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot save model '{model.name}' to {path!r}: the directory "
                                f"{folder!r} does not exist")
    fd, tmp = _create_beside(folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _create_beside(folder, suffix=".npz.tmp"):
    """A new, empty temporary file in ``folder``: ``(fd, path)`` (``cytorch.export`` writes
    its ``.onnx`` files through it too).

    Unlike ``tempfile.mkstemp`` (always 0600), it is created with mode 0666 and the umask
    applied by the system, so the renamed model file gets the mode any new file of the user
    gets (0644 under umask 022: readable by a class on a shared server).  ``O_EXCL`` keeps the
    creation safe against a file of the same name appearing."""
    for _ in range(100):
        tmp = os.path.join(folder, f".cytorch-{secrets.token_hex(8)}{suffix}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                           | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file in {folder!r}")


def _weights(data, key, path):
    """The array stored under ``key``: real numbers, all finite (a model that diverged to NaN
    is refused here rather than predicting NaN later)."""
    try:
        value = data[key]
    except ValueError:  # an object array: it would need unpickling
        raise ValueError(f"{path!r}: {key!r} is an object array; weights must be real "
                         f"numbers") from None
    if value.dtype.kind not in "biuf":
        raise ValueError(f"{path!r}: {key!r} must hold real numbers, got dtype {value.dtype}")
    bad = value.size - np.count_nonzero(np.isfinite(value))
    if bad:
        raise ValueError(f"{path!r}: {key!r} contains {bad} NaN or infinite value(s) of "
                         f"{value.size}")
    return value


def load_model(path):
    """Rebuild a model saved by ``model.save(path)``: architecture, weights, compile settings.

    >>> # model.save("lenet.npz"); model2 = cytorch.load_model("lenet.npz")
    """
    try:
        data = np.load(os.fspath(path), allow_pickle=False)
    except ValueError:  # neither .npy nor .npz: NumPy would have to unpickle it
        raise ValueError(f"{path!r} is not a cytorch model file: not a NumPy .npz archive") \
            from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{path!r} is not a cytorch model file: a single .npy array, not an "
                         f".npz archive")
    with data:
        if ARCH_KEY not in data.files:
            raise ValueError(f"{path!r} is not a cytorch model file: no {ARCH_KEY!r} entry "
                             f"(it holds {data.files[:5]}...)")
        try:
            config = json.loads(data[ARCH_KEY].tobytes().decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path!r}: the {ARCH_KEY!r} entry is not JSON text ({exc})") \
                from None
        model = model_from_config(config)
        stored = set(data.files) - {ARCH_KEY}
        opt_keys = {k for k in stored if k.startswith(OPT_PREFIX)}
        stored -= opt_keys
        for layer in model.layers:
            for k, p in layer.weight_items():
                key = f"{layer.name}/{k}"
                if key not in stored:
                    raise ValueError(f"{path!r} has no weights for {key!r}")
                value = _weights(data, key, path)
                if value.shape != p.shape:
                    raise ValueError(f"{path!r}: {key!r} has shape {value.shape}, the layer "
                                     f"expects {p.shape}")
                p[...] = value
                stored.discard(key)
        if stored:
            raise ValueError(f"{path!r} holds weights no layer uses: {sorted(stored)[:5]}")
        if opt_keys and model.optimizer is not None:
            _restore_optimizer(model, data, opt_keys, path)
    return model


def _restore_optimizer(model, data, keys, path):
    """Put the saved step count and slot buffers back into the loaded model's optimizer."""
    iterations = OPT_PREFIX + "iterations"
    if iterations not in keys:
        raise ValueError(f"{path!r} has optimizer buffers but no {iterations!r}")
    count = data[iterations]
    if count.shape != () or count.dtype.kind not in "iu":
        raise ValueError(f"{path!r}: {iterations!r} must be one integer, got "
                         f"{count.dtype} array of shape {count.shape}")
    slots = {k[len(OPT_PREFIX):]: _weights(data, k, path) for k in keys if k != iterations}
    try:
        model.optimizer.set_state({"iterations": int(count), "slots": slots}, model.layers)
    except ValueError as exc:
        raise ValueError(f"{path!r}: {exc}") from None
