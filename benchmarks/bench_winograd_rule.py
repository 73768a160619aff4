"""The measurement behind conv2d's Winograd dispatch rule (``_kernels/_winograd.pyx``).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_winograd_rule.py
    CYTORCH_ISA=avx2 python benchmarks/bench_winograd_rule.py      # the AVX2 + FMA variant

For 3x3 stride-1 "same" convs of N x H x W x C -> K, forward + backward, the time of the
Winograd path over the time of the path the rule would otherwise take (im2col + GEMM, or the
direct path for thin layers), both through ``cytorch.functional``, timed in alternating rounds
(``_harness.interleaved``); below 1 Winograd wins.  On one thread the times are the
process's CPU time (``--cpu-time``, the default there), which other processes on a busy machine
do not inflate; on all cores, wall time.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as h  # noqa: E402

import cytorch  # noqa: E402
from cytorch import functional as F  # noqa: E402
from cytorch._kernels import load  # noqa: E402


def step(x, w, dout, mode, threads):
    def run():
        old = load("_winograd")._set_mode(mode)
        cytorch.set_num_threads(threads)
        try:
            out, cache = F.conv2d_forward(x, w, None, 1, "same", check_finite=False)
            F.conv2d_backward(dout, cache, check_finite=False)
        finally:
            cytorch.set_num_threads(None)
            load("_winograd")._set_mode(old)
    return run


def main():
    p = h.parser(__doc__.splitlines()[0])
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--size", type=int, default=16, help="H = W of the images (default 16)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--one-thread", action="store_true", help="skip the all-cores table")
    args = p.parse_args()
    repeat = args.repeat or (3 if args.quick else 7)
    h.header(f"Winograd dispatch rule, {args.dtype}, {args.batch}x{args.size}x{args.size}",
             threads=(1,) if args.one_thread else (1, cytorch.get_num_threads()))
    dtype = np.dtype(args.dtype)
    channels = [2, 4, 8, 16, 32, 64, 128] if not args.quick else [4, 16, 64]
    rng = np.random.default_rng(0)
    table = h.Table("C \\ K", *map(str, channels))
    for threads in (1,) if args.one_thread else (1, None):
        rows = []
        for C in channels:
            row = []
            for K in channels:
                x = rng.standard_normal((args.batch, args.size, args.size, C)).astype(dtype)
                w = rng.standard_normal((3, 3, C, K)).astype(dtype)
                dout = rng.standard_normal((args.batch, args.size, args.size, K)).astype(dtype)
                nt = threads or cytorch.get_num_threads()
                fns = {m: step(x, w, dout, m, nt) for m in ("always", "never")}
                if threads == 1:
                    t = {m: min(h.cpu_timed(f, repeat), h.cpu_timed(f, repeat))
                         for m, f in fns.items()}
                else:
                    t = {m: v.best for m, v in h.interleaved(fns, repeat=repeat).items()}
                row.append(f"{t['always'] / t['never']:.2f}")
            rows.append((str(C), *row))
        table = h.Table(f"C \\ K ({threads or cytorch.get_num_threads()} thr)",
                        *map(str, channels))
        for r in rows:
            table.add(*r)
        table.print()
        print()
    print(h.load_line())


if __name__ == "__main__":
    main()
