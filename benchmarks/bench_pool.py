"""Pooling and dropout forward+backward: compiled kernels vs NumPy twins vs PyTorch CPU.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_pool.py [--quick]

Columns: time of one forward+backward pass through ``cytorch.functional`` (best of k; input
validation included, float32) for the compiled kernels on all cores and on one thread, the NumPy
twins, torch at 1 and 2 threads on the same data in its native NCHW layout; ``cy/torch`` is
compiled (all cores) over torch's better thread count (issue 2's target for pooling: <= 0.3),
``cy1/torch1`` the same at one thread each, and ``twin/cy`` how much faster the compiled kernel
is than its twin.  Torch's dropout draws its mask from its own generator; torch has no min
pooling, so its min rows time ``-max_pool2d(-x)`` (and ``-adaptive_max_pool2d(-x, 1)`` for
global min), and the global rows compare with ``adaptive_{avg,max}_pool2d(x, 1)``.

OpenMP's wait policy is cytorch's own (a short spin, printed in the header; see
``cytorch/_kernels/__init__.py``) unless the environment sets one; it applies to cytorch's and
torch's OpenMP alike.  The one-thread columns are the stable ones on a busy machine.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as h  # noqa: E402

import cytorch  # noqa: E402
from cytorch import functional as F  # noqa: E402

# name, kind, (N, H, W, C); pooling is 2x2 with stride 2 (global: the whole map), dropout has
# rate 0.5
CASES = [
    ("max pool 2x2  64x28x28x6", "max", (64, 28, 28, 6)),
    ("avg pool 2x2  64x28x28x6", "avg", (64, 28, 28, 6)),
    ("min pool 2x2  64x28x28x6", "min", (64, 28, 28, 6)),
    ("max pool 2x2  32x32x32x64", "max", (32, 32, 32, 64)),
    ("avg pool 2x2  32x32x32x64", "avg", (32, 32, 32, 64)),
    ("min pool 2x2  32x32x32x64", "min", (32, 32, 32, 64)),
    ("global max    32x8x8x64", "global_max", (32, 8, 8, 64)),
    ("global avg    32x8x8x64", "global_avg", (32, 8, 8, 64)),
    ("global min    32x8x8x64", "global_min", (32, 8, 8, 64)),
    ("dropout 0.5   64x28x28x6", "dropout", (64, 28, 28, 6)),
    ("dropout 0.5   32x32x32x64", "dropout", (32, 32, 32, 64)),
]


def cytorch_step(kind, x, dout):
    if kind == "dropout":
        def step():
            out, cache = F.dropout_forward(x, 0.5, seed=1)
            return F.dropout_backward(dout, cache)
        return step
    forward = getattr(F, f"{kind}_pool2d_forward")
    backward = getattr(F, f"{kind}_pool2d_backward")
    args = () if kind.startswith("global") else (2,)

    def step():
        out, cache = forward(x, *args)
        return backward(dout, cache)
    return step


def torch_step(kind, x, dout):
    import torch
    import torch.nn.functional as TF
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_()
    if kind.startswith("global"):                     # (N, C) -> (N, C, 1, 1)
        dt = torch.from_numpy(dout.reshape(dout.shape + (1, 1)).copy())
    else:
        dt = torch.from_numpy(dout.transpose(0, 3, 1, 2).copy())
    op = {"max": lambda t: TF.max_pool2d(t, 2),
          "avg": lambda t: TF.avg_pool2d(t, 2),
          "min": lambda t: -TF.max_pool2d(-t, 2),
          "global_max": lambda t: TF.adaptive_max_pool2d(t, 1),
          "global_avg": lambda t: TF.adaptive_avg_pool2d(t, 1),
          "global_min": lambda t: -TF.adaptive_max_pool2d(-t, 1),
          "dropout": lambda t: TF.dropout(t, 0.5, training=True)}[kind]

    def step():
        xt.grad = None
        op(xt).backward(dt)
    return step


def main():
    args = h.parser(__doc__.splitlines()[0]).parse_args()
    repeat = args.repeat or (3 if args.quick else 20)
    h.header("pooling and dropout forward+backward", threads=(1, cytorch.get_num_threads(), 2))
    print()
    table = h.Table("case", "compiled", "cy 1t", "twin", "torch 1t", "torch 2t", "cy/torch",
                    "cy1/torch1", "twin/cy")
    torch = None if args.no_torch else h.try_import_torch()
    rng = np.random.default_rng(0)
    for name, kind, (N, H, W, C) in CASES:
        if args.quick:
            N = max(1, N // 4)
        x = rng.standard_normal((N, H, W, C), dtype=np.float32)
        out_shape = (x.shape if kind == "dropout" else (N, C) if kind.startswith("global")
                     else (N, H // 2, W // 2, C))
        dout = rng.standard_normal(out_shape, dtype=np.float32)
        cy = h.timeit(cytorch_step(kind, x, dout), repeat=repeat, min_time=0.05)
        cytorch.set_num_threads(1)
        try:
            cy1 = h.timeit(cytorch_step(kind, x, dout), repeat=repeat, min_time=0.05)
        finally:
            cytorch.set_num_threads(None)
        with cytorch.backend("reference"):
            twin = h.timeit(cytorch_step(kind, x, dout), repeat=max(1, repeat // 4))
        t1 = t2 = best = None
        if torch is not None:
            results, n_best = h.torch_best(lambda: torch_step(kind, x, dout), repeat=repeat)
            t1, t2 = results[1].best, results[2].best
            best = results[n_best].best
        table.add(name, h.fmt_time(cy.best), h.fmt_time(cy1.best), h.fmt_time(twin.best),
                  h.fmt_time(t1), h.fmt_time(t2), h.fmt_ratio(cy.best, best),
                  h.fmt_ratio(cy1.best, t1), h.fmt_ratio(twin.best, cy.best))
    table.print()


if __name__ == "__main__":
    main()
