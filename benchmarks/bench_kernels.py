"""conv2d (and depthwise conv2d) forward+backward: compiled kernel vs its NumPy twin vs PyTorch
CPU, in one process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_kernels.py [--quick]
        [--case TEXT] [--depthwise-variants]

Columns: time of one forward+backward pass (best of k) for the compiled kernel (all cores), the
NumPy twin, torch at 1 and 2 threads; ``cy/torch`` is compiled over torch's better thread count
(issue 2's targets: <= 0.5 for the LeNet cases, <= 1.0 for VGG-ish and AlexNet), ``twin/cy``
how much faster the compiled kernel is than the twin (target >= 5), and the compiled kernel's
GFLOP/s (``3 * 2 * N * H_out * W_out * K * kh * kw * C`` flops: forward, dW and dX are one
GEMM each; 2 * ... for a first layer, whose backward has no dX in either library: keras_mnist
c1) as a share of a 2048x2048 sgemm measured in the same run.  The last two columns
compare both libraries on one thread (``cytorch.set_num_threads(1)``), which stays meaningful
when other processes keep the cores busy and every 2-thread timing waits for a free core;
``twin/cy 1t`` is the twin on one BLAS thread (``cytorch.single_threaded_blas()``) over the
compiled kernel on one thread: the steady form of ``twin/cy``.  The twin's big matmuls on
NumPy's two OpenBLAS threads vary from run to run on a 2-vCPU virtual machine (the VGG-ish
twin took 57 to 207 ms within one hour on an AMD EPYC, 2026-12-03; on one thread 85-90 ms).
``path`` is the kernel's algorithm for the case: ``direct`` (thin stride-1 layers),
``winograd`` (F(2x2, 3x3) for 3x3 stride-1 layers with 16 or more input channels), ``blocked``
(register-blocked small GEMMs, other stride-1 layers such as LeNet's second), ``strided``
(implicit GEMM for forward and dW of wide strided layers such as AlexNet's first, dx by GEMM +
col2im) or ``gemm`` (im2col + GEMM); GFLOP/s always count the direct convolution's multiply-adds, so Winograd,
which does fewer, can pass 100 % of sgemm.  The depthwise rows (``path`` depthwise:
``_depthwise.pyx``) compare with torch's ``conv2d(..., groups=C)`` and count
``3 * 2 * N * H_out * W_out * C * dm * kh * kw`` flops.
cytorch runs OpenMP with the wait policy printed in the header (a short
spin, GOMP_SPINCOUNT=10000, unless OMP_WAIT_POLICY or GOMP_SPINCOUNT was set before the run).
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as h  # noqa: E402

import cytorch  # noqa: E402
from cytorch import activations, functional as F  # noqa: E402
from cytorch._kernels import load  # noqa: E402

# name, N, H, W, C, K, k, stride, padding
CASES = [
    ("LeNet c1  64x28x28x1->6 k5", 64, 28, 28, 1, 6, 5, 1, "valid"),
    ("LeNet c2  64x14x14x6->16 k5", 64, 14, 14, 6, 16, 5, 1, "valid"),
    ("VGG-ish   32x32x32x32->64 k3 same", 32, 32, 32, 32, 64, 3, 1, "same"),
    ("AlexNet   8x227x227x3->96 k11 s4", 8, 227, 227, 3, 96, 11, 4, "valid"),
    ("keras_mnist c1 64x28x28x1->10 k5", 64, 28, 28, 1, 10, 5, 1, "valid"),
    ("keras_mnist c2 64x12x12x10->20 k5", 64, 12, 12, 10, 20, 5, 1, "valid"),
]
# A network's first layer: its backward computes no dx (neither library does, a net's input
# needs no gradient), so forward, dW and db only; two products, not three, in the GFLOP/s.
FIRST_LAYERS = {"keras_mnist c1 64x28x28x1->10 k5"}
# name, N, H, W, C, depth multiplier, k, stride, padding (MobileNet's 3x3 depthwise layers)
DEPTHWISE_CASES = [
    ("Depthwise 32x56x56x32 k3 same", 32, 56, 56, 32, 1, 3, 1, "same"),
    ("Depthwise 32x28x28x64 k3 s2 same", 32, 28, 28, 64, 1, 3, 2, "same"),
]


def depthwise_step(x, w, b, stride, padding, dout, activation=None):
    """depthwise conv2d (+ its activation, applied by the kernel) forward+backward."""
    def step():
        out, cache = F.depthwise_conv2d_forward(x, w, b, stride, padding, activation=activation)
        return F.depthwise_conv2d_backward(dout, cache)
    return step


def torch_activation(activation):
    """torch's function for one of cytorch's activation names (Keras's parameters), or None."""
    import torch
    import torch.nn.functional as TF
    if activation is None:
        return None
    return {"elu": lambda v: TF.elu(v, 1.0), "leaky_relu": lambda v: TF.leaky_relu(v, 0.2),
            "softplus": TF.softplus}.get(activation) or getattr(torch, activation)


def torch_depthwise_step(x, w, b, stride, padding, dout, activation=None):
    import torch
    import torch.nn.functional as TF
    C, dm = w.shape[2:]
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_()
    # (kh, kw, C, dm) -> (C * dm, 1, kh, kw): output channel c * dm + m, as cytorch and Keras
    wt = torch.from_numpy(w.transpose(2, 3, 0, 1).reshape(C * dm, 1, *w.shape[:2]).copy())
    wt.requires_grad_()
    bt = torch.from_numpy(b.copy()).requires_grad_()
    dt = torch.from_numpy(dout.transpose(0, 3, 1, 2).copy())
    pad = w.shape[0] // 2 if padding == "same" else 0   # odd kernels: symmetric
    f = torch_activation(activation)

    def step():
        xt.grad = wt.grad = bt.grad = None
        out = TF.conv2d(xt, wt, bt, stride=stride, padding=pad, groups=C)
        (f(out) if f is not None else out).backward(dt)
    return step


def with_depthwise_variant(variant, step):
    """``step`` with the depthwise kernel's ``variant`` of its inner loops (then the best)."""
    def run():
        load("_depthwise")._select_isa(variant)
        try:
            return step()
        finally:
            load("_depthwise")._select_isa("best")
    return run


def cytorch_step(x, w, b, stride, padding, dout, activation=None, need_dx=True):
    """conv2d (+ its activation, applied by the kernel: the fused epilogue) forward+backward."""
    def step():
        out, cache = F.conv2d_forward(x, w, b, stride, padding, activation=activation)
        return F.conv2d_backward(dout, cache, need_dx=need_dx)
    return step


def unfused_step(x, w, b, stride, padding, dout, activation, need_dx=True, kind="conv"):
    """The same with the activation in passes of its own (``cytorch.activations`` on the
    conv's output and on dout), as a layer did before the epilogue."""
    act = activations.get(activation)
    forward = F.conv2d_forward if kind == "conv" else F.depthwise_conv2d_forward

    def step():
        z, cache = forward(x, w, b, stride, padding)
        y = act.forward(z, out=z)
        if kind == "conv":
            return F.conv2d_backward(act.backward(dout, y), cache, need_dx=need_dx)
        return F.depthwise_conv2d_backward(act.backward(dout, y), cache)
    return step


def torch_step(x, w, b, stride, padding, dout, activation=None, need_dx=True):
    import torch
    import torch.nn.functional as TF
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_(need_dx)
    wt = torch.from_numpy(w.transpose(3, 2, 0, 1).copy()).requires_grad_()
    bt = torch.from_numpy(b.copy()).requires_grad_()
    dt = torch.from_numpy(dout.transpose(0, 3, 1, 2).copy())
    pad = w.shape[0] // 2 if padding == "same" else 0  # odd kernels, stride 1: symmetric

    def step():
        xt.grad = wt.grad = bt.grad = None
        out = TF.conv2d(xt, wt, bt, stride=stride, padding=pad)
        if activation is not None:   # with the parameters of Keras's strings
            out = torch_activation(activation)(out)
        out.backward(dt)
    return step


def main():
    p = h.parser(__doc__.splitlines()[0])
    p.add_argument("--activation", choices=[a for a in F.CONV2D_ACTIVATIONS if a != "linear"],
                   help="conv2d + this activation, applied by the kernel (the fused epilogue); "
                        "adds the column 'unfused' (the activation in passes of its own)")
    p.add_argument("--case", default="", help="only the cases whose name contains this text")
    p.add_argument("--depthwise-variants", action="store_true",
                   help="a depthwise row for every instruction-set variant of its kernel this "
                        "CPU runs (avx512, avx2, default), against the same torch timings")
    args = p.parse_args()
    act = args.activation
    repeat = args.repeat or (2 if args.quick else 10)
    h.header(f"conv2d forward+backward with {act}" if act
             else "conv2d and depthwise conv2d forward+backward",
             threads=(1, cytorch.get_num_threads(), 2))
    peak = h.sgemm_gflops(repeat=3)
    torch = None if args.no_torch else h.try_import_torch()
    rng = np.random.default_rng(0)
    rows = []
    cases = [("conv",) + case for case in CASES] \
        + [("depthwise",) + case for case in DEPTHWISE_CASES]
    for kind, name, N, H, W, C, K, k, s, pad in cases:
        if args.case not in name:
            continue
        if args.quick:
            N = max(1, N // 4)
        # (K is the depth multiplier of a depthwise case)
        x = rng.standard_normal((N, H, W, C), dtype=np.float32)
        w = rng.standard_normal((k, k, C, K), dtype=np.float32) * 0.1
        forward = F.conv2d_forward if kind == "conv" else F.depthwise_conv2d_forward
        b = rng.standard_normal(K if kind == "conv" else C * K, dtype=np.float32)
        out, _ = forward(x, w, b, s, pad)
        dout = rng.standard_normal(out.shape, dtype=np.float32)
        need_dx = name not in FIRST_LAYERS
        step = (cytorch_step(x, w, b, s, pad, dout, act, need_dx) if kind == "conv"
                else depthwise_step(x, w, b, s, pad, dout, act))
        variants = {"": step}
        if kind == "depthwise" and args.depthwise_variants:
            variants = {f" [{v}]": with_depthwise_variant(v, step)
                        for v in load("_depthwise").isa_variants()}

        def twin(step=step):
            with cytorch.backend("reference"):
                step()

        def twin_one_thread(step=step):
            with cytorch.backend("reference"), cytorch.single_threaded_blas():
                step()
        def one_thread(step):
            def run():
                cytorch.set_num_threads(1)
                try:
                    step()
                finally:
                    cytorch.set_num_threads(None)
            return run
        # The twin runs on its own first: its matmuls use NumPy's OpenBLAS threads, which
        # busy-wait after each call and would slow whatever ran next in an interleaved round.
        twin_time = h.timeit(twin, repeat=max(2, repeat // 4)).best
        twin_1t = h.timeit(twin_one_thread, repeat=max(2, repeat // 4)).best
        fns = {}
        for v, v_step in variants.items():
            fns["compiled" + v], fns["compiled 1t" + v] = v_step, one_thread(v_step)
        if act:
            fns["unfused"] = unfused_step(x, w, b, s, pad, dout, act, need_dx, kind)

            def unfused_one_thread(step=fns["unfused"]):
                cytorch.set_num_threads(1)
                try:
                    step()
                finally:
                    cytorch.set_num_threads(None)
            fns["unfused 1t"] = unfused_one_thread
        if torch is not None:
            t_step = (torch_step(x, w, b, s, pad, dout, act, need_dx) if kind == "conv"
                      else torch_depthwise_step(x, w, b, s, pad, dout, act))
            fns["torch 1t"] = h.with_torch_threads(1, t_step)
            fns["torch 2t"] = h.with_torch_threads(2, t_step)
        times = {name: t.best for name, t in h.interleaved(fns, repeat=repeat).items()}
        times["twin"], times["twin 1t"] = twin_time, twin_1t
        peak = max(peak, h.sgemm_gflops(repeat=2))  # the best seen: load comes and goes
        _, H_out, W_out, _ = out.shape
        flops = (3 if need_dx else 2) * 2.0 * N * H_out * W_out * K * k * k * C
        if kind == "depthwise":
            path = "depthwise"
        else:
            path = {"_direct": "direct", "_winograd": "winograd", "_blocked": "blocked",
                    None: "gemm"}[F._conv_fast_path(x, w, out, (s, s), (1, 1))]
            if path == "gemm" and load("_conv").uses_strided_path(
                    x.shape, w.shape, out.shape, (s, s), num_threads=cytorch.get_num_threads()):
                path = "strided"
        for v in variants:
            t = {**times, "compiled": times["compiled" + v],
                 "compiled 1t": times["compiled 1t" + v]}
            rows.append((name + v, path, t, flops / t["compiled"] / 1e9))
        print(f"  measured {name}", flush=True)

    table = h.Table("case", "path", "compiled", "twin", "torch 1t", "torch 2t", "cy/torch",
                    "twin/cy", "GFLOP/s", "% sgemm", "cy 1t", "1t/1t", "twin/cy 1t")
    for name, path, t, gflops in rows:
        best = min(t["torch 1t"], t["torch 2t"]) if torch is not None else None
        table.add(name, path, h.fmt_time(t["compiled"]), h.fmt_time(t["twin"]),
                  h.fmt_time(t.get("torch 1t")), h.fmt_time(t.get("torch 2t")),
                  h.fmt_ratio(t["compiled"], best), h.fmt_ratio(t["twin"], t["compiled"]),
                  f"{gflops:.1f}", f"{100 * gflops / peak:.0f}%",
                  h.fmt_time(t["compiled 1t"]), h.fmt_ratio(t["compiled 1t"], t.get("torch 1t")),
                  h.fmt_ratio(t["twin 1t"], t["compiled 1t"]))
    print()
    table.print()
    if act:
        fused = h.Table("case", f"fused {act}", "unfused", "fused/unfused", "fused 1t",
                        "unfused 1t", "1t/1t")
        for name, path, t, gflops in rows:
            fused.add(name, h.fmt_time(t["compiled"]), h.fmt_time(t["unfused"]),
                      h.fmt_ratio(t["compiled"], t["unfused"]), h.fmt_time(t["compiled 1t"]),
                      h.fmt_time(t["unfused 1t"]),
                      h.fmt_ratio(t["compiled 1t"], t["unfused 1t"]))
        print()
        fused.print()
    print(f"\nsgemm 2048x2048 float32 (best seen in this run): {peak:.1f} GFLOP/s")
    print(f"peak RSS: {h.peak_rss_mib():.0f} MiB")
    print(h.load_line())

if __name__ == "__main__":
    main()
