"""``model.summary()``: Keras's table plus what a student wants to know about each layer.

Beyond Keras's name/type, output shape and parameter count, each row shows

* **mult-adds** per sample: a Conv2D producing ``H_out x W_out x K`` from ``kh x kw x C``
  windows does ``H_out * W_out * K * kh * kw * C`` of them, a Dense layer ``inputs * units``
  (pooling compares or adds but multiplies no weights: 0);
* the **receptive field** of one output unit on the model input, by the jump/size recursion:
  starting from ``r = 1, j = 1`` at the input, a window ``k`` (dilation ``d``) with stride ``s``
  gives ``r <- r + (k - 1) * d * j`` and ``j <- j * s``.  A layer that mixes every position
  (Flatten, Dense after it, global pooling) sees ``all`` of the input.

Windowed layers are recognised by their attributes, not their classes (``kernel_size`` or
``pool_size``, ``strides``, ``padding``, ``dilation_rate``), so plugin layers get the same
treatment.  Where a stride skips the last rows or columns of its input (the floor in
``floor((N + 2P - F) / S) + 1``), a warning line says how many are never seen.
"""
import math

from ._shapes import as_pair, resolve_padding, unseen

ALL = "all"


def _window(layer):
    """``(k, s, d)`` pairs for a windowed layer, else None."""
    k = getattr(layer, "kernel_size", None)
    if k is None:
        k = getattr(layer, "pool_size", None)
    if k is None:
        return None
    try:
        k = as_pair(k, "kernel_size")
        s = getattr(layer, "strides", None)
        s = k if s is None else as_pair(s, "strides")
        d = getattr(layer, "dilation_rate", None)
        d = (1, 1) if d is None else as_pair(d, "dilation_rate")
    except (TypeError, ValueError):
        return None
    return k, s, d


def count_macs(layer, input_shape, output_shape):
    """Multiply-adds of one sample through ``layer`` (a ``count_macs()`` method wins)."""
    own = getattr(layer, "count_macs", None)
    if callable(own):
        return int(own())
    kernel = layer.params.get("kernel")
    if kernel is None or not output_shape:
        return 0
    positions = math.prod(output_shape[:-1])
    if kernel.ndim == 4 and len(output_shape) == 3:
        window = _window(layer)
        shared = (window is not None and tuple(kernel.shape[:2]) == window[0]
                  and isinstance(input_shape, tuple) and kernel.shape[2] == input_shape[-1])
        # a shared kernel (Conv2D) is used at every output position; an unshared one
        # (locally connected: one kernel per position) once per weight
        return int(kernel.size * positions) if shared else int(kernel.size)
    return int(kernel.size * positions)


def receptive_fields(model):
    """``{node.id: (rh, rw, jh, jw) or ALL}`` for the model's nodes."""
    fields = {n.id: (1, 1, 1, 1) for n in model._inputs}
    for node in model._order:
        ins = [fields.get(n.id, ALL) for n in node.inputs]
        if any(f == ALL for f in ins):
            fields[node.id] = ALL
            continue
        rh, rw, jh, jw = (max(f[i] for f in ins) for i in range(4))
        in_shape = node.inputs[0].shape
        window = _window(node.layer)
        if window is not None and len(in_shape) == 3:
            (kh, kw), (sh, sw), (dh, dw) = window
            fields[node.id] = (rh + (kh - 1) * dh * jh, rw + (kw - 1) * dw * jw, jh * sh, jw * sw)
        elif len(in_shape) != 3 or len(node.shape) != 3:
            fields[node.id] = ALL  # flattened or globally pooled: every input pixel counts
        else:
            fields[node.id] = (rh, rw, jh, jw)
    return fields


def unseen_warnings(model):
    """One line per windowed layer whose stride leaves input rows or columns unseen."""
    lines = []
    for node in model._order:
        layer, in_shape = node.layer, node.inputs[0].shape
        window = _window(layer)
        if window is None or len(in_shape) != 3:
            continue
        (kh, kw), (sh, sw), (dh, dw) = window
        kh_eff, kw_eff = (kh - 1) * dh + 1, (kw - 1) * dw + 1
        H, W = in_shape[:2]
        try:
            pt, pb, pl, pr = resolve_padding(getattr(layer, "padding", "valid"), H, W,
                                             kh_eff, kw_eff, sh, sw)
        except (TypeError, ValueError):
            continue
        rows, cols = unseen(H, kh_eff, sh, pt, pb), unseen(W, kw_eff, sw, pl, pr)
        parts = []
        if rows:
            parts.append(f"the last {rows} of {H} input rows "
                         f"(floor(({H} + {pt + pb} - {kh_eff})/{sh}) + 1 = {node.shape[0]} "
                         f"windows reach row {(node.shape[0] - 1) * sh + kh_eff - pt})")
        if cols:
            parts.append(f"the last {cols} of {W} input columns "
                         f"(floor(({W} + {pl + pr} - {kw_eff})/{sw}) + 1 = {node.shape[1]} "
                         f"windows reach column {(node.shape[1] - 1) * sw + kw_eff - pl})")
        if parts:
            lines.append(f"WARNING: {layer.name} ({type(layer).__name__}) with strides "
                         f"({sh}, {sw}) never sees " + " and ".join(parts))
    return lines


def _shape_text(shape):
    return "(None, " + ", ".join(str(s) for s in shape) + ")"


def summary_table(model, line_length=None):
    """The text of ``model.summary()``."""
    from .graph import Sequential

    chain = isinstance(model, Sequential) or all(
        len(n.inputs) == 1 and (k == 0 or n.inputs[0] is model._order[k - 1])
        for k, n in enumerate(model._order))
    if not getattr(model, "built", True):
        return (f'Model: "{model.name}" (not built yet: {len(model.layers)} layers; give an '
                f'input shape or fit it on data to see shapes and parameters)')
    fields = receptive_fields(model)
    rows = []
    if not chain:
        for node in model._inputs:
            name = node.layer.name if node.layer is not None else "input"
            rows.append([f"{name} (Input)", _shape_text(node.shape), "0", "0", "1x1", ""])
    total_macs = 0
    for node in model._order:
        layer = node.layer
        in_shape = node.inputs[0].shape if layer.n_inputs == 1 else [n.shape for n in node.inputs]
        macs = count_macs(layer, in_shape, node.shape)
        total_macs += macs
        rf = fields[node.id]
        rf_text = ALL if rf == ALL else f"{rf[0]}x{rf[1]}"
        connected = ", ".join(n.layer.name if n.layer is not None else "input"
                              for n in node.inputs)
        rows.append([f"{layer.name} ({type(layer).__name__})", _shape_text(node.shape),
                     f"{layer.count_params():,}", f"{macs:,}", rf_text, connected])
    header = ["Layer (type)", "Output Shape", "Param #", "Mult-adds", "Receptive field",
              "Connected to"]
    if chain:
        header, rows = header[:-1], [r[:-1] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    right = {2, 3}  # numbers align right

    def line(cells):
        return " " + "  ".join(c.rjust(w) if i in right else c.ljust(w)
                               for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    width = line_length or max(len(line(header)), 60)
    total = model.count_params()
    # a layer's state (BatchNormalization's moving statistics) and a frozen layer's
    # parameters are non-trainable, as in Keras
    trainable = sum(layer.count_trainable_params() for layer in model.layers)
    out = [f'Model: "{model.name}"', "_" * width, line(header), "=" * width]
    out += [line(r) for r in rows]
    out += ["=" * width,
            f"Total params: {total:,}",
            f"Trainable params: {trainable:,}",
            f"Non-trainable params: {total - trainable:,}",
            f"Mult-adds per sample: {total_macs:,}",
            "_" * width]
    out += unseen_warnings(model)
    return "\n".join(out)
