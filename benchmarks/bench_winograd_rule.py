"""The measurement behind conv2d's Winograd dispatch rule (``_kernels/_winograd.pyx``).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_winograd_rule.py
    CYTORCH_ISA=avx2 python benchmarks/bench_winograd_rule.py      # the AVX2 + FMA variant
    python benchmarks/bench_winograd_rule.py --tiles --sizes 32x16 8x32 32x8 32x6
    python benchmarks/bench_winograd_rule.py --outputs [--layers 4x7x64x64 ...]

With ``--tiles``: which tile, F(2x2, 3x3) or F(4x4, 3x3), for each batch N x image size H
(``--sizes NxH ...``) on one thread: per (C, K), the time of F(4x4, 3x3) over F(2x2, 3x3)
("4/2", below 1 the bigger tile wins) and the faster of the two over the path taken without
Winograd ("W/other"), three contenders timed in alternating rounds of process CPU time.

With ``--outputs``: the rule for small batches.  Per layer N x H x H x C -> K (``--layers
NxHxCxK ...``, default: vgg_small's and alexnet_small's 3x3 layers at 1-32 images and shapes
between), "same", relu, one thread, the forward pass and forward + backward of every path that
could run it, called on the kernels directly (``_winograd`` with either tile, ``_blocked``,
``_conv``'s im2col + GEMM) in alternating rounds of process CPU time; then the path and tile
``cytorch.functional`` takes, and its time over the fastest ("rule/best", 1.00 when the rule
picks the fastest).

Without either: for 3x3 stride-1 "same" convs of N x H x W x C -> K, forward + backward, the time of the
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


# vgg_small's and alexnet_small's 3x3 stride-1 layers (H, C, K), and shapes between
PRESET_LAYERS = [(32, 16, 16), (16, 16, 32), (16, 32, 32), (8, 32, 64), (8, 64, 64),
                 (15, 24, 48), (7, 48, 64), (7, 64, 64), (7, 64, 48)]
DEFAULT_LAYERS = [(N, H, C, K) for N in (1, 2, 4, 8, 32) for H, C, K in PRESET_LAYERS] + [
    (5, 8, 64, 64), (6, 8, 32, 64), (6, 7, 64, 64), (16, 4, 64, 64), (3, 16, 16, 32),
    (3, 16, 32, 16), (2, 24, 16, 16), (4, 8, 128, 128), (8, 8, 128, 128), (32, 8, 128, 128)]


def path_calls(N, H, C, K, dtype):
    """{path: (forward, backward)} callables on one thread for the layer, each writing into
    arrays of its own call (the kernels' entry points, as ``cytorch.functional`` calls them)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, H, H, C)).astype(dtype)
    w = (rng.standard_normal((3, 3, C, K)) * 0.1).astype(dtype)
    b = np.zeros(K, dtype)
    out = np.empty((N, H, H, K), dtype)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty(K, dtype)
    wino, blocked, gemm = load("_winograd"), load("_blocked"), load("_conv")
    calls = {f"W{m}": (lambda m=m: wino.conv2d_forward(x, w, b, out, 1, 1, 1, "relu", m),
                       lambda m=m: wino.conv2d_backward(dout, x, w, dx, dw, db, 1, 1, 1, "relu",
                                                        out, m))
             for m in (2, 4)}
    calls["blocked"] = (lambda: blocked.conv2d_forward(x, w, b, out, 1, 1, 1, "relu"),
                        lambda: blocked.conv2d_backward(dout, x, w, dx, dw, db, 1, 1, 1, "relu",
                                                        out))
    calls["GEMM"] = (lambda: gemm.conv2d_forward(x, w, b, out, 1, 1, 1, 1, 1, 1, 1, "relu"),
                     lambda: gemm.conv2d_backward(dout, x, w, dx, dw, db, 1, 1, 1, 1, 1, 1, 1,
                                                  "relu", out))
    return calls, x, w, out


def best_cpu_times(fns, repeat, min_time=0.2):
    """Best process CPU time of each callable, in alternating rounds (at least ``repeat``
    rounds and ``min_time`` seconds)."""
    best = {k: float("inf") for k in fns}
    for f in fns.values():
        f()
    end, rounds = time.perf_counter() + min_time, 0
    while rounds < repeat or time.perf_counter() < end:
        for k, f in fns.items():
            t0 = time.process_time()
            f()
            best[k] = min(best[k], time.process_time() - t0)
        rounds += 1
    return best


def rule_path(x, w, out):
    """The path (and tile) ``cytorch.functional`` runs this layer on."""
    path = F._conv_fast_path(x, w, out, (1, 1), (1, 1))
    if path == "_winograd":
        return f"W{load('_winograd').winograd_tile(x.shape, w.shape, out.shape, x.dtype)}"
    return {"_blocked": "blocked", None: "GEMM"}.get(path, path)


def outputs(args, dtype, repeat):
    """Every path's forward and forward + backward time per layer, and the rule's pick."""
    layers = [tuple(int(v) for v in s.split("x")) for s in args.layers] if args.layers \
        else DEFAULT_LAYERS
    names = ("W2", "W4", "blocked", "GEMM")
    table = h.Table("layer (N HxH C->K)", "outputs", *(f"fwd {n}" for n in names),
                    *(f"f+b {n}" for n in names), "rule", "rule/best fwd", "f+b")
    cytorch.set_num_threads(1)
    try:
        with cytorch.single_threaded_blas():
            for N, H, C, K in layers:
                calls, x, w, out = path_calls(N, H, C, K, dtype)
                fwd = best_cpu_times({n: c[0] for n, c in calls.items()}, repeat)
                both = best_cpu_times({n: (lambda c=c: (c[0](), c[1]())) for n, c in
                                       calls.items()}, repeat)
                pick = rule_path(x, w, out)
                table.add(f"{N} {H}x{H} {C}->{K}", N * H * H,
                          *(f"{fwd[n] * 1e3:.3f}" for n in names),
                          *(f"{both[n] * 1e3:.3f}" for n in names), pick,
                          f"{fwd[pick] / min(fwd.values()):.2f}",
                          f"{both[pick] / min(both.values()):.2f}")
    finally:
        cytorch.set_num_threads(None)
    table.print()


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
    p.add_argument("--outputs", action="store_true",
                   help="every path on small batches (ms, one thread) and the rule's pick")
    p.add_argument("--layers", nargs="+",
                   help="with --outputs: layers NxHxCxK, e.g. 4x7x64x64 (default: the presets')")
    args = p.parse_args()
    repeat = args.repeat or (3 if args.quick else 7)
    if args.outputs:
        h.header(f"Winograd on small batches: every path, ms of process CPU time, {args.dtype}, "
                 "3x3 'same' + relu, forward and forward + backward (f+b)", threads=(1,))
        outputs(args, np.dtype(args.dtype), repeat)
        print(h.load_line())
        return
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
