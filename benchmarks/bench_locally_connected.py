"""locally_connected2d forward+backward: compiled plugin kernel vs its NumPy twin vs PyTorch.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_locally_connected.py

Needs the plugin installed (``pip install -e ./plugins/cytorch-locally-connected``).  Columns:
one forward+backward pass (best of k, float32) for the compiled kernel at 1 thread and at
``cytorch.get_num_threads()``, the NumPy twin, and PyTorch's usual locally-connected recipe
(``F.unfold`` + ``einsum`` over per-position weights, autograd for the backward) at its better
thread count; ``twin/cy`` and ``torch/cy`` are how many times slower those are than the compiled
kernel at its better thread count (as torch gets its better one: on a busy machine a 2-thread
call waits for the scheduler to run both threads, and can lose to 1 thread).  ``GFLOP/s`` counts ``3 * 2 * N * H_out * W_out * K * kh * kw * C``
(forward, dW and dX are one GEMM per position each), against a 2048x2048 sgemm.

There is no weight sharing to exploit: every position is its own small ``(N, P) @ (P, K)``
product, so all three implementations are bound by many small GEMMs, and the compiled kernel
gains by not materialising im2col, writing results in place, and using the cores.
"""
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as h  # noqa: E402

import cytorch  # noqa: E402
from cytorch._shapes import window_output_shape  # noqa: E402
from cytorch_locally_connected import functional as LF  # noqa: E402

# name, N, H, W, C, K, k, padding (stride 1)
CASES = [
    ("32x16x16x8->16 k3 same", 32, 16, 16, 8, 16, 3, "same"),
    ("64x28x28x1->6 k5 valid", 64, 28, 28, 1, 6, 5, "valid"),
    ("16x32x32x3->30 k5 same (lecture)", 16, 32, 32, 3, 30, 5, "same"),
]


def make_case(N, H, W, C, K, k, padding, rng):
    H_out, W_out, _ = window_output_shape(H, W, k, k, 1, 1, padding)
    x = rng.standard_normal((N, H, W, C), dtype=np.float32)
    w = rng.standard_normal((H_out, W_out, k * k * C, K), dtype=np.float32)
    w /= math.sqrt(k * k * C)
    b = rng.standard_normal((H_out, W_out, K), dtype=np.float32)
    dout = rng.standard_normal((N, H_out, W_out, K), dtype=np.float32)
    return x, w, b, dout


def cytorch_step(x, w, b, k, padding, dout, backend):
    def step():
        with cytorch.backend(backend):
            out, cache = LF.locally_connected2d_forward(x, w, b, k, 1, padding)
            LF.locally_connected2d_backward(dout, cache)
        return out
    return step


def torch_step(x, w, b, k, padding, dout):
    """unfold + einsum, the usual PyTorch locally-connected layer; weights converted once."""
    import torch
    import torch.nn.functional as TF
    N, H, W, C = x.shape
    H_out, W_out, P, K = w.shape
    pad = k // 2 if padding == "same" else 0          # odd kernels, stride 1: symmetric
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_()
    # our rows are ordered (kh, kw, C); unfold's are (C, kh, kw)
    wt = w.reshape(H_out * W_out, k, k, C, K).transpose(0, 3, 1, 2, 4).reshape(-1, P, K)
    wt = torch.from_numpy(np.ascontiguousarray(wt)).requires_grad_()
    bt = torch.from_numpy(b.reshape(-1, K).copy()).requires_grad_()
    dt = torch.from_numpy(dout.reshape(N, -1, K).copy())

    def forward():
        cols = TF.unfold(xt, (k, k), padding=pad)                 # (N, P, L)
        return torch.einsum("npl,lpk->nlk", cols, wt) + bt        # (N, L, K)

    def step():
        xt.grad = wt.grad = bt.grad = None
        out = forward()
        out.backward(dt)
        return out
    return step, forward


def main():
    args = h.parser(__doc__.splitlines()[0]).parse_args()
    repeat = args.repeat or (2 if args.quick else 7)
    h.header("locally_connected2d forward+backward", threads=(1, cytorch.get_num_threads()))
    peak = h.sgemm_gflops(repeat=repeat)
    print(f"sgemm 2048x2048 float32: {peak:.1f} GFLOP/s\n", flush=True)
    threads = cytorch.get_num_threads()
    table = h.Table("case", "cy 1 thread", f"cy {threads} threads", "twin", "torch",
                    "twin/cy", "torch/cy", "GFLOP/s", "% sgemm")
    rng = np.random.default_rng(0)
    for name, N, H, W, C, K, k, padding in CASES:
        if args.quick:
            N = max(2, N // 4)
        x, w, b, dout = make_case(N, H, W, C, K, k, padding, rng)
        compiled = cytorch_step(x, w, b, k, padding, dout, "compiled")
        twin = cytorch_step(x, w, b, k, padding, dout, "reference")
        np.testing.assert_allclose(compiled(), twin(), rtol=1e-4, atol=1e-4)
        cytorch.set_num_threads(1)
        t1 = h.timeit(compiled, repeat=repeat)
        cytorch.set_num_threads(None)
        tn = h.timeit(compiled, repeat=repeat)
        tt = h.timeit(twin, repeat=repeat)
        t_torch = None
        if not args.no_torch and h.try_import_torch() is not None:
            step, forward = torch_step(x, w, b, k, padding, dout)
            np.testing.assert_allclose(forward().detach().numpy().reshape(compiled().shape),
                                       compiled(), rtol=1e-4, atol=1e-4)
            results, best = h.torch_best(lambda: step, repeat=repeat)
            t_torch = results[best].best
        H_out, W_out = w.shape[:2]
        flops = 3 * 2 * N * H_out * W_out * K * k * k * C
        t_cy = min(t1.best, tn.best)
        gflops = flops / t_cy / 1e9
        table.add(name, h.fmt_time(t1.best), h.fmt_time(tn.best), h.fmt_time(tt.best),
                  h.fmt_time(t_torch), h.fmt_ratio(tt.best, t_cy), h.fmt_ratio(t_torch, t_cy),
                  f"{gflops:.1f}", f"{100 * gflops / peak:.0f}%")
    table.print()


if __name__ == "__main__":
    main()
