"""The measurement behind conv2d's dispatch of strided layers: the implicit-GEMM path of
``_kernels/_conv.pyx`` (micro-kernels of ``_strided.h`` for forward and dW, no im2col matrix)
against im2col + GEMM.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_strided_rule.py
    CYTORCH_ISA=avx2 OPENBLAS_CORETYPE=Haswell python benchmarks/bench_strided_rule.py

For each layer, the time of one forward + backward (with dx, and without it as a network's
first layer runs) through ``_conv``'s entry points with the path forced each way
(``_set_strided_mode``), on one thread: the process's CPU time, best of ``--repeat`` (other
processes on a busy machine do not inflate it).  ``strided/gemm`` below 1: the implicit-GEMM
path wins; ``auto`` is the path the rule of ``_conv.uses_strided_path`` picks.  The variant is
the one CYTORCH_ISA selects (the best this CPU runs by default).
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as h  # noqa: E402

import cytorch  # noqa: E402
from cytorch._kernels import isa_in_use, load  # noqa: E402
from cytorch._shapes import resolve_padding  # noqa: E402

# name, N, H (= W), C, K, k, stride, padding
SHAPES = [
    ("AlexNet conv1", 8, 227, 3, 96, 11, 4, "valid"),
    ("ResNet stem", 4, 112, 3, 64, 7, 2, "same"),
    ("patchify 4x4", 16, 64, 3, 48, 4, 4, "valid"),
    ("3x3 s2 32->64", 16, 32, 32, 64, 3, 2, "same"),
    ("3x3 s2 16->32", 32, 28, 16, 32, 3, 2, "same"),
    ("3x3 s2 8->16", 32, 28, 8, 16, 3, 2, "same"),
    ("3x3 s2 4->16", 32, 28, 4, 16, 3, 2, "same"),
    ("3x3 s2 3->8", 32, 28, 3, 8, 3, 2, "same"),
    ("5x5 s2 1->16", 32, 28, 1, 16, 5, 2, "same"),
    ("1x1 s2 64->128", 16, 28, 64, 128, 1, 2, "valid"),
    ("1x1 s2 16->32", 16, 28, 16, 32, 1, 2, "valid"),
]


def step(conv, x, w, stride, pads, need_dx, mode):
    N, H, W, C = x.shape
    kh, kw, _, K = w.shape
    pt, pb, pl, pr = pads
    out = np.empty((N, (H + pt + pb - kh) // stride + 1, (W + pl + pr - kw) // stride + 1, K),
                   x.dtype)
    dout = np.random.default_rng(1).standard_normal(out.shape).astype(x.dtype)
    b = np.zeros(K, x.dtype)
    dx = np.empty_like(x) if need_dx else None
    dw, db = np.empty_like(w), np.empty_like(b)

    def run():
        old = conv._set_strided_mode(mode)
        try:
            conv.conv2d_forward(x, w, b, out, stride, stride, pt, pl, 1)
            conv.conv2d_backward(dout, x, w, dx, dw, db, stride, stride, pt, pl, 1)
        finally:
            conv._set_strided_mode(old)
    return run, out.shape


def main():
    p = h.parser(__doc__.splitlines()[0])
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = p.parse_args()
    repeat = args.repeat or (3 if args.quick else 7)
    h.header(f"strided-layer dispatch rule, {args.dtype}, variants {isa_in_use()}",
             threads=(1,))
    dtype = np.dtype(args.dtype)
    conv = load("_conv")
    rng = np.random.default_rng(0)
    table = h.Table("layer", "N H C K k s", "dx", "gemm", "strided", "strided/gemm", "auto")
    for name, N, H, C, K, k, s, padding in SHAPES:
        x = rng.standard_normal((N, H, H, C)).astype(dtype)
        w = rng.standard_normal((k, k, C, K)).astype(dtype)
        pads = resolve_padding(padding, H, H, k, k, s, s)
        for need_dx in (True, False):
            t = {}
            for mode in ("always", "never"):
                fn, out_shape = step(conv, x, w, s, pads, need_dx, mode)
                t[mode] = h.cpu_timed(fn, repeat)
            auto = conv.uses_strided_path(x.shape, w.shape, out_shape, (s, s))
            table.add(name, f"{N} {H} {C} {K} {k} {s}", "yes" if need_dx else "no",
                      h.fmt_time(t["never"]), h.fmt_time(t["always"]),
                      f"{t['always'] / t['never']:.2f}", "strided" if auto else "gemm")
    table.print()
    print(h.load_line())


if __name__ == "__main__":
    cytorch.set_num_threads(1)
    main()
