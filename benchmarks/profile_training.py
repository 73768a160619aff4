"""Where a cytorch training epoch goes: kernels, activations, layer glue, loss, optimizer.

One epoch of ``keras_mnist()`` or ``lenet5()`` (as in ``bench_training.py``: batch 64, 4,096
images, Adam 1e-3) with timers around every ``cytorch.functional`` kernel call, every
layer's ``forward``/``backward``, every activation function, the loss, the optimizer step and
the gathering of each batch.  Printed per epoch (median of the timed epochs), largest first:

* ``kernel``: a ``cytorch.functional`` kernel call (its Python checks included);
* ``activation``: an activation function's forward (``relu``) or derivative (``relu'``),
  over every layer that has it;
* ``glue``: a layer's own time without the kernels and activations it called (NumPy matmuls
  of Dense, reshapes, checks);
* ``loss``, ``optimizer``, ``batch``: the loss and its gradient, ``apply_gradients``, the
  gathering and conversion of one batch;
* ``loop``: the rest (graph traversal, callbacks, the training loop itself).

    python benchmarks/profile_training.py lenet5 --repeat 5
    python benchmarks/profile_training.py lenet5 --twin-optimizer   # the step in NumPy
"""
import argparse
import collections
import contextlib
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_training import BATCH, KERNELS, N_IMAGES, cytorch_epoch, data  # noqa: E402
from _harness import Table, fmt_time, header  # noqa: E402

import cytorch  # noqa: E402
from cytorch import activations, functional as F, models  # noqa: E402
from cytorch.activations import ActivationFunction  # noqa: E402
from cytorch.layers import Conv2D  # noqa: E402

PRESETS = {"keras_mnist": (models.keras_mnist, 28), "lenet5": (models.lenet5, 32)}


class Timers:
    """Exclusive wall time per label: a timed call nested in another (a kernel inside a layer's
    backward) is subtracted from the outer one, so the labels add up to the epoch."""

    def __init__(self):
        self.spent = collections.defaultdict(float)
        self.stack = []

    def wrap(self, fn, label):
        def timed(*args, **kwargs):
            self.stack.append(0.0)  # time spent in nested timed calls
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - t0
                self.spent[label] += elapsed - self.stack.pop()
                if self.stack:
                    self.stack[-1] += elapsed
        return timed


def instrument(model, timers, twin_optimizer=False):
    """Wrap the kernels, layers, activations, loss, optimizer and batch gathering of ``model``
    (with ``twin_optimizer``, the optimizer step runs its NumPy twin)."""
    for name in KERNELS:
        if hasattr(F, name):
            setattr(F, name, timers.wrap(getattr(F, name), f"kernel   {name}"))
    for layer in model.layers:
        for method in ("forward", "backward"):
            setattr(layer, method, timers.wrap(getattr(layer, method),
                                               f"glue     {layer.name}.{method}"))
    # One timed twin per activation function, shared by the layers that apply it themselves.
    # A Conv2D whose kernel applies its activation (``F.CONV2D_ACTIVATIONS``, the fused
    # epilogue) keeps the library's function: that time is inside ``kernel conv2d_*``.
    timed = {}
    for name in activations.names():
        act = activations.get(name)
        timed[name] = ActivationFunction(name, timers.wrap(act.forward, f"activation {name}"),
                                         timers.wrap(act.backward, f"activation {name}'"))
    for layer in model.layers:
        act = getattr(layer, "_activation", None)
        fused = isinstance(layer, Conv2D) and act is not None \
            and act.name in F.CONV2D_ACTIVATIONS and act is activations.get(act.name)
        if act is not None and not fused:
            # (a layer knows ReLU by identity when it defers it past pooling: a timed ReLU is
            # applied instead, which changes no number; no preset has such a layer)
            layer._activation = timed[act.name]
    model.loss.gradient = timers.wrap(model.loss.gradient, "loss")
    apply_gradients = model.optimizer.apply_gradients

    def step(layers):
        with cytorch.backend("reference") if twin_optimizer else contextlib.nullcontext():
            apply_gradients(layers)
    model.optimizer.apply_gradients = timers.wrap(step, "optimizer")
    model._take = timers.wrap(model._take, "batch")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("net", choices=sorted(PRESETS))
    p.add_argument("--repeat", type=int, default=5, help="timed epochs (median shown)")
    p.add_argument("--twin-optimizer", action="store_true",
                   help="run the optimizer step through its NumPy twin (the compiled step's "
                        "before)")
    args = p.parse_args()
    header(f"where one epoch of {args.net} goes (batch 64, 4,096 images, Adam 1e-3"
           + (", the optimizer step in NumPy)" if args.twin_optimizer else ")"))
    preset, size = PRESETS[args.net]
    X, y = data(size)
    model, run = cytorch_epoch(preset, X, y)
    timers = Timers()
    instrument(model, timers, args.twin_optimizer)
    run()  # warm-up with the timers in place
    epochs = collections.defaultdict(list)
    for _ in range(args.repeat):
        timers.spent.clear()
        t0 = time.perf_counter()
        run()
        total = time.perf_counter() - t0
        epochs["epoch"].append(total)
        epochs["loop"].append(total - sum(timers.spent.values()))
        for label, seconds in timers.spent.items():
            epochs[label].append(seconds)
    median = {label: statistics.median(v) for label, v in epochs.items()}
    epoch = median.pop("epoch")
    steps = -(-N_IMAGES // BATCH)
    table = Table("where", "per epoch", "per batch", "share")
    for label in sorted(median, key=median.get, reverse=True):
        table.add(label, fmt_time(median[label]), fmt_time(median[label] / steps),
                  f"{100 * median[label] / epoch:.1f}%")
    table.print()
    kernels = sum(v for k, v in median.items() if k.startswith("kernel"))
    print(f"\nepoch {fmt_time(epoch)} (median of {args.repeat}); kernels {fmt_time(kernels)}, "
          f"outside them {fmt_time(epoch - kernels)} ({100 * (epoch - kernels) / epoch:.0f}%)")


if __name__ == "__main__":
    main()
