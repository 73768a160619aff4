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
import textwrap

from ._shapes import as_pair, dilated_extent, resolve_padding, unseen

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
        kernel_size, (sh, sw), dilation = window
        kh_eff, kw_eff = dilated_extent(kernel_size, dilation)
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


#: ``summary()`` keeps to a terminal's 80 columns: long layer names and several inputs wrap
#: inside their cells instead of widening the table (a wrapped table is unreadable)
WIDTH = 80


def _layout(header, rows, right, budget):
    """The header lines, the body lines and the width of the table, narrowed step by step
    until it fits ``budget`` columns.

    ``rows`` hold ``(name, type)`` as their first cell and, in a DAG, the list of input names
    as their last.  Each step is taken only if the table is still too wide: the inputs one per
    line (as Keras prints them); then ``name`` and ``(Type)`` on two lines in the rows where
    they do not fit the room the other columns leave; then the same with two-line headers."""
    dag = len(header) == 6

    def cells_for(one_per_line, room):
        cells = []
        for (name, kind), *middle in rows:
            inputs = middle.pop() if dag else None
            first = [f"{name} ({kind})"]
            if len(first[0]) > room:
                first = [name, f"({kind})"]
            cells.append([first] + [[c] for c in middle]
                         + ([inputs if one_per_line else [", ".join(inputs)]] if dag else []))
        return cells

    def widths_of(head, cells):
        return [max(len(text) for row in [head] + cells for text in row[i])
                for i in range(len(header))]

    def total(widths):
        return 1 + sum(widths) + 2 * (len(widths) - 1)

    for step in range(4):
        one_per_line = dag and step >= 1
        head = [h.rsplit(" ", 1) if step >= 3 and " " in h else [h] for h in header]
        cells = cells_for(one_per_line, room=budget)
        widths = widths_of(head, cells)
        if step >= 2:  # the first column gets what the others leave
            room = budget - (total(widths) - widths[0])
            cells = cells_for(one_per_line, room)
            widths = widths_of(head, cells)
        if total(widths) <= budget:
            break

    def lines(row):
        out = []
        for k in range(max(len(cell) for cell in row)):
            texts = [cell[k] if k < len(cell) else "" for cell in row]
            out.append(" " + "  ".join(t.rjust(w) if i in right else t.ljust(w)
                                       for i, (t, w) in enumerate(zip(texts, widths))).rstrip())
        return out

    return lines(head), [line for row in cells for line in lines(row)], total(widths)


def summary_table(model, line_length=None):
    """The text of ``model.summary()``, at most ``line_length`` columns wide (default 80)
    where the layer names allow."""
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
            rows.append([(name, "Input"), _shape_text(node.shape), "0", "0", "1x1", []])
    total_macs = 0
    for node in model._order:
        layer = node.layer
        in_shape = node.inputs[0].shape if layer.n_inputs == 1 else [n.shape for n in node.inputs]
        macs = count_macs(layer, in_shape, node.shape)
        total_macs += macs
        rf = fields[node.id]
        rf_text = ALL if rf == ALL else f"{rf[0]}x{rf[1]}"
        connected = [n.layer.name if n.layer is not None else "input" for n in node.inputs]
        rows.append([(layer.name, type(layer).__name__), _shape_text(node.shape),
                     f"{layer.count_params():,}", f"{macs:,}", rf_text, connected])
    header = ["Layer (type)", "Output Shape", "Param #", "Mult-adds", "Receptive field",
              "Connected to"]
    if chain:
        header, rows = header[:-1], [r[:-1] for r in rows]
    budget = line_length or WIDTH
    head, body, table_width = _layout(header, rows, {2, 3}, budget)  # numbers align right
    width = line_length or max(table_width, 60)
    total = model.count_params()
    # a layer's state (BatchNormalization's moving statistics) and a frozen layer's
    # parameters are non-trainable, as in Keras
    trainable = sum(layer.count_trainable_params() for layer in model.layers)
    out = [f'Model: "{model.name}"', "_" * width, *head, "=" * width]
    out += body
    out += ["=" * width,
            f"Total params: {total:,}",
            f"Trainable params: {trainable:,}",
            f"Non-trainable params: {total - trainable:,}",
            f"Mult-adds per sample: {total_macs:,}",
            "_" * width]
    # the warnings are sentences: wrapped to the table's width, continued with an indent
    out += [textwrap.fill(warning, max(width, budget), subsequent_indent="    ",
                          break_on_hyphens=False) for warning in unseen_warnings(model)]
    return "\n".join(out)
