"""Training speed of the presets next to the same nets in PyTorch, and predict's memory.

One epoch of ``keras_mnist()`` (28x28) and ``lenet5()`` (32x32) at batch 64 on 4,096 real
digit images (``load_digits`` resampled and tiled), Adam at 1e-3, shuffled.  PyTorch trains the
same layers with the same optimizer and batch size at whichever of 1 or 2 threads is faster;
cytorch uses both cores.  The contenders run in alternating rounds (cytorch, torch on 1 thread,
torch on 2 threads, cytorch with timed kernels), so a burst of load on the shared machine hits
them all alike.  Printed: images/s and the time ratio cytorch/torch (< 1: cytorch is faster),
of the best epochs and of the median ones.

Then the share of a cytorch epoch spent *outside* the compiled kernels (everything that is not
a ``cytorch.functional`` kernel call, Dense's fused GEMM + epilogue included: Python,
activations outside a fused kernel, the loss, the optimizer), measured by wrapping the kernel functions with timers, in every round
(the median round is shown).

Finally, in a fresh process, the peak RSS while ``keras_mnist().predict`` runs over 60,000
28x28 uint8 images at batch 256.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_training.py
"""
import os
import subprocess
import sys
import time

if "--omp-passive" in sys.argv:
    # OpenMP threads that sleep instead of spinning between parallel regions: on a machine
    # busier than its cores, spinning threads steal the time the working ones need.  Read by
    # libgomp when it loads, so it is set before anything imports it.
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import (Table, fmt_time, header, interleaved, parser,  # noqa: E402
                      peak_rss_mib, try_import_torch, with_torch_threads)

import cytorch  # noqa: E402
from cytorch import functional as F, models  # noqa: E402
from cytorch.datasets import load_digits  # noqa: E402

N_IMAGES = 4096
BATCH = 64

KERNELS = ["conv2d_forward", "conv2d_backward", "max_pool2d_forward", "max_pool2d_backward",
           "avg_pool2d_forward", "avg_pool2d_backward", "dropout_forward", "dropout_backward",
           "dense_forward", "dense_backward"]


def data(size, n=N_IMAGES):
    X, y = load_digits(size)
    reps = -(-n // len(X))
    return np.tile(X, (reps, 1, 1, 1))[:n], np.tile(y, reps)[:n]


def cytorch_epoch(preset, X, y):
    model = preset(seed=0).compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(X[:256], y[:256], batch_size=BATCH, epochs=1, verbose=0, seed=0)  # warm-up

    def run():
        model.fit(X, y, batch_size=BATCH, epochs=1, verbose=0, seed=0)
    return model, run


def torch_net(name, num_classes=10):
    import torch.nn as nn
    if name == "keras_mnist":
        layers = [nn.Conv2d(1, 10, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(10, 20, 5),
                  nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(320, 100), nn.ReLU(),
                  nn.Linear(100, num_classes)]
    else:
        layers = [nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5),
                  nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.Tanh(),
                  nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, num_classes)]
    net = nn.Sequential(*layers)
    for m in net.modules():  # the same initialisation scheme as cytorch: Glorot uniform, 0 bias
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return net


def torch_epoch(name, X, y, seed=0):
    import torch
    torch.manual_seed(seed)
    net = torch_net(name)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = torch.nn.CrossEntropyLoss()
    Xt = torch.from_numpy(np.ascontiguousarray(X.transpose(0, 3, 1, 2)))
    yt = torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)

    def run():
        order = torch.randperm(len(Xt), generator=gen)
        for start in range(0, len(Xt), BATCH):
            idx = order[start:start + BATCH]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(Xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    return run


def kernel_share(run):
    """``run`` with the ``cytorch.functional`` kernels timed, and the list it appends
    ``(epoch seconds, seconds inside the kernels)`` to at every call."""
    records = []

    def timed_run():
        spent = [0.0]
        originals = {}
        for name in KERNELS:
            fn = getattr(F, name, None)
            if fn is None:
                continue
            originals[name] = fn

            def timed(*args, _fn=fn, **kwargs):
                t0 = time.perf_counter()
                try:
                    return _fn(*args, **kwargs)
                finally:
                    spent[0] += time.perf_counter() - t0
            setattr(F, name, timed)
        try:
            t0 = time.perf_counter()
            run()
            records.append((time.perf_counter() - t0, spent[0]))
        finally:
            for name, fn in originals.items():
                setattr(F, name, fn)
    return timed_run, records


def memory_child():
    """Run in a fresh process: peak RSS of predicting 60,000 28x28 images."""
    rng = np.random.default_rng(0)
    X = np.empty((60_000, 28, 28, 1), dtype=np.uint8)
    for start in range(0, len(X), 1000):  # in chunks: the peak must not come from here
        X[start:start + 1000] = rng.integers(0, 256, (1000, 28, 28, 1), dtype=np.uint8)
    model = models.keras_mnist(seed=0)
    model.predict(X[:256])  # loads the kernels
    before = peak_rss_mib()
    t0 = time.perf_counter()
    out = model.predict(X, batch_size=256)
    seconds = time.perf_counter() - t0
    after = peak_rss_mib()
    # one batch of float32 activations of keras_mnist: input + every layer's output
    per_image = 28 * 28 + 24 * 24 * 10 * 2 + 12 * 12 * 10 + 8 * 8 * 20 * 2 + 4 * 4 * 20 + 320 \
        + 100 + 10
    print(f"predict 60,000 x 28x28x1 uint8 (input {X.nbytes / 2**20:.0f} MiB, output "
          f"{out.nbytes / 2**20:.1f} MiB) at batch 256: {seconds:.2f} s, "
          f"{60_000 / seconds:,.0f} images/s")
    print(f"peak RSS before predict {before:.0f} MiB, after {after:.0f} MiB "
          f"(+{after - before:.0f} MiB; one batch of float32 activations is "
          f"{256 * per_image * 4 / 2**20:.1f} MiB, the whole set as float32 would be "
          f"{60_000 * 784 * 4 / 2**20:.0f} MiB)")


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--memory-child", action="store_true", help=argparse_suppress())
    p.add_argument("--omp-passive", action="store_true",
                   help="run with OMP_WAIT_POLICY=PASSIVE instead of cytorch's short spin "
                        "(compare on a busy machine)")
    args = p.parse_args()
    if args.memory_child:
        memory_child()
        return
    header("training: one epoch, batch 64, 4,096 images, Adam 1e-3")
    repeat = args.repeat or (1 if args.quick else 3)
    torch = None if args.no_torch else try_import_torch()
    table = Table("net", "cytorch", "img/s", "torch", "img/s", "threads", "ratio",
                  "median ratio")
    shares = []
    for name, preset, size in (("keras_mnist", models.keras_mnist, 28),
                               ("lenet5", models.lenet5, 32)):
        X, y = data(size)
        _, run = cytorch_epoch(preset, X, y)
        timed_run, records = kernel_share(run)
        fns = {"cytorch": run}
        if torch:
            for n in (1, 2):
                fns[n] = with_torch_threads(n, torch_epoch(name, X, y))
        fns["timed"] = timed_run
        times = interleaved(fns, repeat=repeat, warmup=1)
        ours = times["cytorch"]
        rounds = records[1:]  # the first call was the warm-up
        shares.append((name, *sorted(rounds, key=lambda r: 1 - r[1] / r[0])[len(rounds) // 2]))
        threads = min((1, 2), key=lambda n: times[n].best) if torch else None
        best = times[threads].best if threads else None
        median = times[threads].median if threads else None
        table.add(name, fmt_time(ours.best), f"{N_IMAGES / ours.best:,.0f}", fmt_time(best),
                  f"{N_IMAGES / best:,.0f}" if best else "-", threads or "-",
                  f"{ours.best / best:.2f}" if best else "-",
                  f"{ours.median / median:.2f}" if median else "-")
    table.print()
    print(f"\nratio = cytorch time / torch time of the best of {repeat} alternating rounds "
          "(median ratio: of the median rounds); target <= 0.7, stretch 0.5\n")
    share = Table("net", "epoch", "in kernels", "outside kernels", "share outside")
    for name, total, inside in shares:
        share.add(name, fmt_time(total), fmt_time(inside), fmt_time(total - inside),
                  f"{100 * (total - inside) / total:.0f}%")
    share.print()
    print("\n'outside' = everything but cytorch.functional kernel calls: Python, Dense matmuls,"
          " activations, loss, optimizer\n", flush=True)
    subprocess.run([sys.executable, os.path.abspath(__file__), "--memory-child"], check=True)


def argparse_suppress():
    import argparse
    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
