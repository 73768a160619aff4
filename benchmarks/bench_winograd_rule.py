"""The measurement behind conv2d's Winograd dispatch rule (``_kernels/_winograd.pyx``).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_winograd_rule.py
    CYTORCH_ISA=avx2 python benchmarks/bench_winograd_rule.py      # the AVX2 + FMA variant
    python benchmarks/bench_winograd_rule.py --tiles --sizes 32x16 8x32 32x8 32x6

With ``--tiles``: which tile, F(2x2, 3x3) or F(4x4, 3x3), for each batch N x image size H
(``--sizes NxH ...``) on one thread: per (C, K), the time of F(4x4, 3x3) over F(2x2, 3x3)
("4/2", below 1 the bigger tile wins) and the faster of the two over the path taken without
Winograd ("W/other"), three contenders timed in alternating rounds of process CPU time.

For 3x3 stride-1 "same" convs of N x H x W x C -> K, forward + backward, the time of the
Winograd path over the time of the path the rule would otherwise take (im2col + GEMM, or the
direct path for thin layers), both through ``cytorch.functional``, timed in alternating rounds
(``_harness.interleaved``); below 1 Winograd wins.  On one thread the times are the
process's CPU time (``--cpu-time``, the default there), which other processes on a busy machine
do not inflate; on all cores, wall time.
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as h  # noqa: E402

import cytorch  # noqa: E402
from cytorch import functional as F  # noqa: E402
from cytorch._kernels import load  # noqa: E402


def step(x, w, dout, mode, threads, tile="auto"):
    def run():
        old = load("_winograd")._set_mode(mode)
        old_tile = load("_winograd")._set_tile(tile)
        cytorch.set_num_threads(threads)
        try:
            out, cache = F.conv2d_forward(x, w, None, 1, "same", check_finite=False)
            F.conv2d_backward(dout, cache, check_finite=False)
        finally:
            cytorch.set_num_threads(None)
            load("_winograd")._set_mode(old)
            load("_winograd")._set_tile(old_tile)
    return run


def tiles(args, dtype, channels, repeat):
    """F(4x4, 3x3) against F(2x2, 3x3) and the other path, one thread, per batch size."""
    rng = np.random.default_rng(0)
    for size in args.sizes:
        N, H = (int(v) for v in size.split("x"))
        table = h.Table(f"{N}x{H}x{H}: C \\ K", *(f"{K} 4/2 W/o" for K in channels))
        for C in channels:
            row = []
            for K in channels:
                x = rng.standard_normal((N, H, H, C)).astype(dtype)
                w = rng.standard_normal((3, 3, C, K)).astype(dtype)
                dout = rng.standard_normal((N, H, H, K)).astype(dtype)
                fns = {2: step(x, w, dout, "always", 1, 2), 4: step(x, w, dout, "always", 1, 4),
                       "other": step(x, w, dout, "never", 1)}
                best = {k: float("inf") for k in fns}
                for f in fns.values():
                    f()
                for _ in range(repeat):
                    for k, f in fns.items():
                        t0 = time.process_time()
                        f()
                        best[k] = min(best[k], time.process_time() - t0)
                row.append(f"{best[4] / best[2]:.2f} {min(best[2], best[4]) / best['other']:.2f}")
            table.add(str(C), *row)
        table.print()
        print()


def main():
    p = h.parser(__doc__.splitlines()[0])
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--size", type=int, default=16, help="H = W of the images (default 16)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--one-thread", action="store_true", help="skip the all-cores table")
    p.add_argument("--tiles", action="store_true",
                   help="F(4x4, 3x3) vs F(2x2, 3x3) vs the other path, one thread")
    p.add_argument("--sizes", nargs="+", default=["32x16"],
                   help="with --tiles: batch x image size, e.g. 32x16 8x32 (default 32x16)")
    p.add_argument("--channels", type=int, nargs="+", help="C and K values of the grid")
    args = p.parse_args()
    repeat = args.repeat or (3 if args.quick else 7)
    if args.tiles:
        h.header("Winograd tile: F(4x4, 3x3) / F(2x2, 3x3), and the faster over the other path "
                 f"(W/o), {args.dtype}, fwd + bwd", threads=(1,))
        tiles(args, np.dtype(args.dtype), args.channels or [4, 8, 16, 32, 64, 128], repeat)
        print(h.load_line())
        return
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
