"""The optimizer step: the compiled kernel (``_kernels/_optim.pyx``) against its NumPy twin.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_optim.py [--quick]

One ``apply_gradients`` over every parameter of ``keras_mnist()`` (38,390 parameters in 8
arrays) and ``lenet5()`` (61,706 in 10), float32, per optimizer: the twin (the ``_update``
methods, one NumPy operation at a time, as under ``cytorch.backend("reference")``), the
compiled step, and the compiled step on one thread.  Both produce the same bits
(``tests/test_optim_kernel.py``); ``twin/cy`` is how much faster the kernel is.  Per epoch of
``bench_training.py`` (4,096 images, batch 64) the step runs 64 times: the last column is the
time the kernel saves per epoch.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as h  # noqa: E402

import cytorch  # noqa: E402
from cytorch import models, optimizers as O  # noqa: E402

PRESETS = {"keras_mnist": models.keras_mnist, "lenet5": models.lenet5}
OPTIMIZERS = {
    "Adam": lambda: O.Adam(1e-3),
    "AdamW amsgrad": lambda: O.AdamW(1e-3, amsgrad=True),
    "SGD momentum": lambda: O.SGD(0.01, momentum=0.9),
    "RMSprop centered": lambda: O.RMSprop(centered=True, momentum=0.9),
    "Adagrad clipnorm": lambda: O.Adagrad(clipnorm=1.0),
}
STEPS_PER_EPOCH = 4096 // 64


def stepper(preset, make, backend, threads):
    """A callable doing one optimizer step on the preset's layers with fixed gradients."""
    cytorch.set_seed(0)
    model = preset()
    rng = np.random.default_rng(0)
    for layer in model.layers:
        for name, g in layer.grads.items():
            g[...] = rng.standard_normal(g.shape) * 1e-3
    opt = make()

    def step():
        with cytorch.backend(backend):
            cytorch.set_num_threads(threads)
            try:
                opt.apply_gradients(model.layers)
            finally:
                cytorch.set_num_threads(None)
    return step


def main():
    args = h.parser(__doc__.splitlines()[0]).parse_args()
    repeat = args.repeat or (5 if args.quick else 50)
    h.header("the optimizer step, compiled vs NumPy twin (float32)",
             threads=(1, cytorch.get_num_threads()))
    threads = cytorch.get_num_threads()
    table = h.Table("preset / optimizer", "twin", f"cy ({threads} thr)", "cy (1 thr)",
                    "twin/cy", "saved / epoch")
    for pname, preset in PRESETS.items():
        for oname, make in OPTIMIZERS.items():
            t = h.interleaved({
                "twin": stepper(preset, make, "reference", threads),
                "cy": stepper(preset, make, "compiled", threads),
                "cy1": stepper(preset, make, "compiled", 1)}, repeat=repeat, min_time=0.05)
            table.add(f"{pname} {oname}", h.fmt_time(t["twin"].best), h.fmt_time(t["cy"].best),
                      h.fmt_time(t["cy1"].best), h.fmt_ratio(t["twin"].best, t["cy"].best),
                      h.fmt_time((t["twin"].best - t["cy"].best) * STEPS_PER_EPOCH))
    table.print()


if __name__ == "__main__":
    main()
