"""Elementwise activations: the compiled element functions (``_mathfn.h``) vs NumPy vs PyTorch.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_activation.py [--quick]
    CYTORCH_ISA=avx2 python benchmarks/bench_activation.py    # the AVX2 + FMA variant

Columns: one call of ``cytorch.functional.activation_forward`` (fwd) or ``_backward`` (bwd, the
derivative read from y) on a LeNet c1 output, 64x28x28x6 (301,056 values), compiled on two
threads and on one, the NumPy twin (``cytorch.backend("reference")``: for tanh that is
``np.tanh`` itself; single-threaded like NumPy), torch at its better thread count
(``torch.tanh``, ``torch.sigmoid``, ... on a tensor of the same shape; backward through the
same formula written in torch); ``twin/cy1`` is the twin over one compiled thread (> 1: the
kernel is faster), ``cy/torch`` cytorch's better time over torch's (< 1: cytorch is faster).
Best times; on a machine busier than its cores the 2-thread column mostly measures waiting.
The header names the CPU and the instruction-set variant each kernel runs (CYTORCH_ISA forces
one; NumPy picks its own SIMD code, NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL" makes it
behave as on an AVX2-only CPU).

Then the accuracy of the float32 functions over a strided sample of every float32 bit pattern
(every 97th; ``--quick``: every 9973rd) against float64 NumPy, in every variant this CPU can run:
max absolute error (tanh, sigmoid) and max error in float32 ulps.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as h  # noqa: E402

import cytorch  # noqa: E402
from cytorch import functional as F  # noqa: E402

SHAPE = (64, 28, 28, 6)
NAMES = ["tanh", "sigmoid", "relu", "elu", "softplus", "silu"]


def torch_ops(torch):
    TF = torch.nn.functional
    forward = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu,
               "elu": TF.elu, "softplus": TF.softplus, "silu": TF.silu}
    backward = {"tanh": lambda d, y: d * (1 - y * y), "sigmoid": lambda d, y: d * y * (1 - y),
                "relu": lambda d, y: d * (y > 0), "elu": lambda d, y: torch.where(y > 0, d, d * (y + 1)),
                "softplus": lambda d, y: d * -torch.expm1(-y),
                "silu": None}
    return forward, backward


def speed_table(args, repeat):
    torch = None if args.no_torch else h.try_import_torch()
    table = h.Table("case", "cy 2t", "cy 1t", "twin", "torch", "twin/cy1", "cy/torch")
    rng = np.random.default_rng(0)
    N = SHAPE[0] // 4 if args.quick else SHAPE[0]
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((N, *SHAPE[1:])).astype(dtype)
        dout = rng.standard_normal(x.shape).astype(dtype)
        for name in NAMES if dtype == np.float32 else ["tanh", "sigmoid"]:
            y = F.activation_forward(name, x)
            arg = x if name == "silu" else y
            calls = {"fwd": lambda: F.activation_forward(name, x, check_finite=False),
                     "bwd": lambda: F.activation_backward(name, dout, arg, check_finite=False)}
            for what, call in calls.items():
                cy = h.timeit(call, repeat=repeat, min_time=0.05)
                cytorch.set_num_threads(1)
                try:
                    cy1 = h.timeit(call, repeat=repeat, min_time=0.05)
                finally:
                    cytorch.set_num_threads(None)
                with cytorch.backend("reference"):
                    twin = h.timeit(call, repeat=repeat, min_time=0.05)
                best = None
                if torch is not None:
                    fwd, bwd = torch_ops(torch)
                    xt, dt = torch.from_numpy(x), torch.from_numpy(dout)
                    yt = torch.from_numpy(arg)
                    op = (lambda: fwd[name](xt)) if what == "fwd" else (
                        (lambda: bwd[name](dt, yt)) if bwd[name] else None)
                    if op is not None:
                        results, n_best = h.torch_best(lambda: op, repeat=repeat)
                        best = results[n_best].best
                label = f"{name} {what} {np.dtype(dtype).name} {'x'.join(map(str, x.shape))}"
                table.add(label, h.fmt_time(cy.best), h.fmt_time(cy1.best),
                          h.fmt_time(twin.best), h.fmt_time(best),
                          h.fmt_ratio(twin.best, cy1.best),
                          h.fmt_ratio(min(cy.best, cy1.best), best))
    table.print()


def accuracy_table(stride):
    from cytorch._kernels import load   # private: the variants are switched for this table
    kernel = load("_activation")
    table = h.Table("variant", "tanh max abs", "tanh ulp", "sigmoid max abs", "sigmoid ulp",
                    "exp ulp")
    chunk = 1 << 22
    for variant in kernel.isa_variants():
        kernel._select_isa(variant)
        worst = {}
        for start in range(0, 2**32, chunk * stride):
            bits = np.arange(start, min(2**32, start + chunk * stride), stride, dtype=np.uint64)
            x = bits.astype(np.uint32).view(np.float32)
            x64 = x.astype(np.float64)
            with np.errstate(all="ignore"):
                e = np.exp(-np.abs(x64))
                truths = {"tanh": np.tanh(x64), "exp": np.exp(x64),
                          "sigmoid": np.where(x64 >= 0, 1, e) / (1 + e)}
                for name, truth in truths.items():
                    y = np.empty_like(x)
                    kernel.forward(name, x, y)
                    ok = np.isfinite(truth) & np.isfinite(truth.astype(np.float32))
                    err = np.abs(y[ok].astype(np.float64) - truth[ok])
                    ulp = err / np.spacing(np.abs(truth[ok]).astype(np.float32))
                    a, u = worst.get(name, (0.0, 0.0))
                    worst[name] = (max(a, err.max(initial=0)), max(u, ulp.max(initial=0)))
        table.add(variant, f"{worst['tanh'][0]:.2e}", f"{worst['tanh'][1]:.2f}",
                  f"{worst['sigmoid'][0]:.2e}", f"{worst['sigmoid'][1]:.2f}",
                  f"{worst['exp'][1]:.2f}")
    kernel._select_isa("best")
    table.print()


def main():
    args = h.parser(__doc__.splitlines()[0]).parse_args()
    repeat = args.repeat or (3 if args.quick else 20)
    h.header("elementwise activations, forward and backward", threads=(1, cytorch.get_num_threads()))
    print()
    speed_table(args, repeat)
    stride = 9973 if args.quick else 97
    print(f"\nfloat32 accuracy against float64 NumPy, every {stride}th float32 bit pattern:")
    accuracy_table(stride)


if __name__ == "__main__":
    main()
