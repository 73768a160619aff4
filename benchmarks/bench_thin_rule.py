"""The measurement behind conv2d's dispatch of thin stride-1 layers: the direct path
(``_kernels/_direct.pyx``) against the blocked path (``_kernels/_blocked.pyx``) and im2col +
GEMM (``_kernels/_conv.pyx``).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_thin_rule.py
    CYTORCH_ISA=avx2 OPENBLAS_CORETYPE=Haswell python benchmarks/bench_thin_rule.py

For layers of a few channels and filters (LeNet's and keras_mnist's first layers among them),
the time of one forward + backward (with dx, and without it as a network's first layer runs)
of each path's kernel, called directly whatever the dispatch rule says, on one thread: the
process's CPU time, best of ``--repeat`` (other processes on a busy machine do not inflate
it).  ``blocked/direct`` below 1: the blocked path wins.  The variant is the one CYTORCH_ISA
selects (the best this CPU runs by default), for every kernel.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as h  # noqa: E402

import cytorch  # noqa: E402
from cytorch._kernels import isa_in_use, load  # noqa: E402
from cytorch._shapes import resolve_padding  # noqa: E402

# C, K, k, padding (28x28 images)
SHAPES = [(1, 2, 5, "same"), (1, 4, 5, "same"), (1, 6, 5, "valid"), (1, 6, 3, "same"),
          (1, 8, 5, "same"), (1, 10, 5, "valid"), (2, 2, 3, "same"), (2, 8, 3, "same"),
          (3, 6, 5, "same"), (4, 4, 3, "same"), (3, 3, 3, "same")]


def steps(x, w, pads, need_dx):
    """forward + backward of each path's kernel on one thread: {path: step}."""
    N, H, W, C = x.shape
    kh, kw, _, K = w.shape
    pt, pb, pl, pr = pads
    out = np.empty((N, H + pt + pb - kh + 1, W + pl + pr - kw + 1, K), x.dtype)
    dout = np.random.default_rng(1).standard_normal(out.shape).astype(x.dtype)
    b = np.zeros(K, x.dtype)
    dx = np.empty_like(x) if need_dx else None
    dw, db = np.empty_like(w), np.empty_like(b)

    def fast(name):
        module = load(name)
        return lambda: (module.conv2d_forward(x, w, b, out, pt, pl, 1),
                        module.conv2d_backward(dout, x, w, dx, dw, db, pt, pl, 1))
    gemm = load("_conv")
    return {"direct": fast("_direct"), "blocked": fast("_blocked"),
            "gemm": lambda: (gemm.conv2d_forward(x, w, b, out, 1, 1, pt, pl, 1),
                             gemm.conv2d_backward(dout, x, w, dx, dw, db, 1, 1, pt, pl, 1))}


def main():
    p = h.parser(__doc__.splitlines()[0])
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--batch", type=int, default=32)
    args = p.parse_args()
    repeat = args.repeat or (3 if args.quick else 9)
    h.header(f"thin-layer dispatch rule, {args.dtype}, {args.batch}x28x28, variants "
             f"{isa_in_use()}", threads=(1,))
    dtype = np.dtype(args.dtype)
    rng = np.random.default_rng(0)
    table = h.Table("C K k padding", "dx", "direct", "blocked", "gemm", "blocked/direct",
                    "blocked/gemm")
    for C, K, k, padding in SHAPES:
        x = rng.standard_normal((args.batch, 28, 28, C)).astype(dtype)
        w = rng.standard_normal((k, k, C, K)).astype(dtype)
        pads = resolve_padding(padding, 28, 28, k, k, 1, 1)
        for need_dx in (True, False):
            t = {name: h.cpu_timed(fn, repeat) for name, fn in steps(x, w, pads, need_dx).items()}
            table.add(f"{C} {K} {k} {padding}", "yes" if need_dx else "no",
                      h.fmt_time(t["direct"]), h.fmt_time(t["blocked"]), h.fmt_time(t["gemm"]),
                      f"{t['blocked'] / t['direct']:.2f}", f"{t['blocked'] / t['gemm']:.2f}")
    table.print()
    print(h.load_line())


if __name__ == "__main__":
    cytorch.set_num_threads(1)
    main()
