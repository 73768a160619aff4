"""Training speed of the presets next to the same nets in PyTorch, and predict's memory.

One epoch of ``keras_mnist()`` (28x28) and ``lenet5()`` (32x32) at batch 64 on 4,096 real
digit images (``load_digits`` resampled and tiled), Adam at 1e-3, shuffled.  PyTorch trains the
same layers with the same optimizer and batch size.  Each library runs on 1 and on 2 threads
and is compared at whichever is faster (on a 2-core machine that other processes keep busy, a
2-thread run waits for a core at every parallel region: PyTorch and cytorch alike are then
several times slower than on one thread; both thread counts are printed).  The contenders run
in alternating rounds (cytorch on 1 and 2 threads, torch on 1 and 2, cytorch with timed
kernels on 1 and 2), so a burst of load on the shared machine hits them all alike.  Printed:
images/s and the time ratio cytorch/torch (< 1: cytorch is faster), of the best epochs and of
the median ones.

Then the share of a cytorch epoch spent *outside* the compiled kernels (everything that is not
a ``cytorch.functional`` kernel call, Dense's fused GEMM + epilogue included: Python,
activations outside a fused kernel, the loss, the optimizer), measured by wrapping the kernel
functions with timers, in every round (the median round is shown), on each thread count.

Then ``keras_mnist().predict`` over 20,000 28x28 uint8 images at batch 256 against the same net
in PyTorch (``inference_mode``, each batch converted to float32 NCHW, softmax), both on 1 and 2
threads, alternating; and finally, in a fresh process, the peak RSS while
``keras_mnist().predict`` runs over 60,000 images.

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


def with_cytorch_threads(n, fn):
    """``fn`` wrapped to run with ``cytorch.set_num_threads(n)`` (the default afterwards)."""
    def call():
        cytorch.set_num_threads(n)
        try:
            return fn()
        finally:
            cytorch.set_num_threads(None)
    return call


def predict_runs(torch, n=20_000):
    """``{name: callable}``: keras_mnist's predict of n uint8 images in cytorch and torch."""
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8)
    model = models.keras_mnist(seed=0)
    fns = {}
    for t in (1, 2):
        fns[f"cytorch {t}"] = with_cytorch_threads(t, lambda: model.predict(X, batch_size=256))
    if torch:
        net = torch_net("keras_mnist").eval()

        def run_torch():
            out = np.empty((n, 10), dtype=np.float32)
            with torch.inference_mode():
                for start in range(0, n, 256):
                    xb = torch.from_numpy(X[start:start + 256]).permute(0, 3, 1, 2).float()
                    out[start:start + 256] = torch.softmax(net(xb), 1).numpy()
            return out
        for t in (1, 2):
            fns[f"torch {t}"] = with_torch_threads(t, run_torch)
    return fns


def best_of(times, prefix):
    """(thread count, Timing) of the faster of ``prefix 1`` and ``prefix 2``."""
    t = min((1, 2), key=lambda k: times[f"{prefix} {k}"].best)
    return t, times[f"{prefix} {t}"]


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
    header("training: one epoch, batch 64, 4,096 images, Adam 1e-3", threads=(1, 2))
    repeat = args.repeat or (1 if args.quick else 3)
    torch = None if args.no_torch else try_import_torch()
    table = Table("net", "cytorch", "img/s", "threads", "torch", "img/s", "threads", "ratio",
                  "median ratio")
    each = Table("net", "cytorch 1", "cytorch 2", "torch 1", "torch 2")
    shares = []
    for name, preset, size in (("keras_mnist", models.keras_mnist, 28),
                               ("lenet5", models.lenet5, 32)):
        X, y = data(size)
        _, run = cytorch_epoch(preset, X, y)
        fns, records = {}, {}
        for t in (1, 2):
            fns[f"cytorch {t}"] = with_cytorch_threads(t, run)
        if torch:
            for t in (1, 2):
                fns[f"torch {t}"] = with_torch_threads(t, torch_epoch(name, X, y))
        for t in (1, 2):
            timed_run, records[t] = kernel_share(run)
            fns[f"timed {t}"] = with_cytorch_threads(t, timed_run)
        times = interleaved(fns, repeat=repeat, warmup=1)
        for t in (1, 2):
            rounds = records[t][1:]  # the first call was the warm-up
            shares.append((name, t, *sorted(rounds, key=lambda r: 1 - r[1] / r[0])
                           [len(rounds) // 2]))
        ours_t, ours = best_of(times, "cytorch")
        theirs_t, theirs = best_of(times, "torch") if torch else (None, None)
        table.add(name, fmt_time(ours.best), f"{N_IMAGES / ours.best:,.0f}", ours_t,
                  fmt_time(theirs.best) if torch else "-",
                  f"{N_IMAGES / theirs.best:,.0f}" if torch else "-", theirs_t or "-",
                  f"{ours.best / theirs.best:.2f}" if torch else "-",
                  f"{ours.median / theirs.median:.2f}" if torch else "-")
        each.add(name, *(fmt_time(times[k].best) if k in times else "-"
                         for k in ("cytorch 1", "cytorch 2", "torch 1", "torch 2")))
    table.print()
    print(f"\nratio = cytorch time / torch time of the best of {repeat} alternating rounds, "
          "each library on its faster thread count (median ratio: of the median rounds); "
          "target <= 0.5\n")
    each.print()
    print("\nbest epoch on 1 and on 2 threads\n")
    share = Table("net", "threads", "epoch", "in kernels", "outside kernels", "share outside")
    for name, t, total, inside in shares:
        share.add(name, t, fmt_time(total), fmt_time(inside), fmt_time(total - inside),
                  f"{100 * (total - inside) / total:.0f}%")
    share.print()
    print("\n'outside' = everything but cytorch.functional kernel calls: Python, activations "
          "outside a fused kernel, loss, optimizer\n", flush=True)

    fns = predict_runs(torch)
    times = interleaved(fns, repeat=repeat, warmup=1)
    n_predict = 20_000
    pred = Table("predict", "cytorch", "img/s", "threads", "torch", "img/s", "threads",
                 "ratio", "median ratio")
    ours_t, ours = best_of(times, "cytorch")
    theirs_t, theirs = best_of(times, "torch") if torch else (None, None)
    pred.add("keras_mnist", fmt_time(ours.best), f"{n_predict / ours.best:,.0f}", ours_t,
             fmt_time(theirs.best) if torch else "-",
             f"{n_predict / theirs.best:,.0f}" if torch else "-", theirs_t or "-",
             f"{ours.best / theirs.best:.2f}" if torch else "-",
             f"{ours.median / theirs.median:.2f}" if torch else "-")
    pred.print()
    print(f"\n{n_predict:,} 28x28x1 uint8 images at batch 256; best of each: "
          + ", ".join(f"{k} {fmt_time(v.best)}" for k, v in times.items()) + "\n", flush=True)
    subprocess.run([sys.executable, os.path.abspath(__file__), "--memory-child"], check=True)


def argparse_suppress():
    import argparse
    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
