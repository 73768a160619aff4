"""What a training step allocates: NumPy memory per batch (tracemalloc) and peak RSS, with the
layers' buffer reuse (``cytorch.layers.base.Workspace``) and without it.

    python benchmarks/profile_memory.py [keras_mnist|lenet5] [--threads 1]

One epoch of ``bench_training.py`` (4,096 images, batch 64, Adam, shuffled) per setting, in a
fresh process each (peak RSS is per process).  Columns, per batch after the first (whose
allocations make the buffers): ``transient`` is the most NumPy memory the step held above what
was held when it began (tracemalloc's peak: every array a step allocates and frees shows up
here), ``buffers`` what the layers' workspaces hold.  ``peak RSS`` is the whole process's,
tracemalloc off.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

PRESETS = {"keras_mnist": 28, "lenet5": 32}


def run(net, reuse, trace, threads):
    """One epoch in this process; returns the measurements as a dict."""
    import _harness as h
    import cytorch
    from cytorch import callbacks, models
    from cytorch.layers.base import Layer

    if not reuse:   # every call allocates its arrays, as before the workspaces
        Layer._buffers = lambda self, ctx: None

        class Fresh:
            def get(self, name, shape, dtype):
                return np.empty(shape, dtype)
        cytorch.training.Workspace = Fresh
    cytorch.set_num_threads(threads)
    cytorch.set_seed(0)
    size = PRESETS[net]
    rng = np.random.default_rng(0)
    x = rng.random((4096, size, size, 1), dtype=np.float32)
    y = rng.integers(0, 10, len(x))
    model = getattr(models, net)()
    model.compile(cytorch.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    transient, held = [], []

    class Probe(callbacks.Callback):
        def on_batch_begin(self, batch, logs=None):
            if trace:
                self.base = tracemalloc.get_traced_memory()[0]
                tracemalloc.reset_peak()

        def on_batch_end(self, batch, logs=None):
            if trace:
                transient.append(tracemalloc.get_traced_memory()[1] - self.base)
            held.append(sum(layer._workspace.nbytes for layer in self.model.layers
                            if getattr(layer, "_workspace", None) is not None))

    if trace:
        tracemalloc.start()
    model.fit(x, y, batch_size=64, epochs=1, verbose=0, callbacks=[Probe()])
    return {"transient": statistics.median(transient[1:]) if trace else None,
            "held": held[1], "rss": h.peak_rss_mib()}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("nets", nargs="*", default=sorted(PRESETS), help=" ".join(sorted(PRESETS)))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        net, reuse, trace = args.child
        print(json.dumps(run(net, reuse == "1", trace == "1", args.threads)))
        return
    unknown = set(args.nets) - set(PRESETS)
    if unknown:
        p.error(f"unknown nets {sorted(unknown)}; choose from {sorted(PRESETS)}")
    import _harness as h
    h.header(f"memory of a training step (batch 64, {args.threads} thread(s))",
             threads=(args.threads,))
    table = h.Table("net", "reuse", "transient / batch", "buffers held", "peak RSS")
    for net in args.nets:
        for reuse in ("0", "1"):
            child = [sys.executable, __file__, "--threads", str(args.threads), "--child", net,
                     reuse]
            traced = json.loads(subprocess.run(child + ["1"], capture_output=True, text=True,
                                               check=True).stdout)
            plain = json.loads(subprocess.run(child + ["0"], capture_output=True, text=True,
                                              check=True).stdout)
            table.add(net, "yes" if reuse == "1" else "no",
                      f"{traced['transient'] / 1024:.0f} KiB", f"{traced['held'] / 1024:.0f} KiB",
                      f"{plain['rss']:.0f} MiB")
    table.print()


if __name__ == "__main__":
    main()
