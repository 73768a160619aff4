"""Accuracy targets on the embedded digits, cytorch next to the same nets trained by PyTorch.

``load_digits`` with a stratified 80/20 split (``random_state=0``), Adam at 1e-3, batch 32,
Glorot-uniform weights and zero biases on both sides, 5 seeds each:

* a small CNN on 8x8 images, 15 epochs      (target: >= 0.98 test accuracy)
* ``keras_mnist()`` on 28x28, 20 epochs      (target: >= 0.97)
* ``lenet5()`` on 32x32, 20 epochs           (target: >= 0.97)
* ``alexnet_small()`` and ``vgg_small()`` on 32x32, without and with BatchNormalization,
  20 epochs (alexnet_small without BatchNormalization 30) (target: >= 0.98); alexnet_small
  with the cosine learning-rate decay its docstring recommends (``cosine_decay``, the same on
  both sides)

Printed per setting: mean +- std of the final test accuracy, the worst seed, the mean best
epoch accuracy, and the first epoch at which the mean over seeds reaches the target; cytorch
and torch must agree within one percentage point on average.

    python benchmarks/bench_accuracy.py [--seeds 5] [--no-torch] [--only vgg_small ...]
"""
import math
import os
import sys
import time

if "--omp-passive" in sys.argv:  # see bench_training.py
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import numpy as np  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import Table, header, parser, try_import_torch  # noqa: E402

from cytorch import Sequential, callbacks, models  # noqa: E402
from cytorch.datasets import load_digits  # noqa: E402

SMALL_CNN = [  # 8x8 -> 8x8x32 -> 8x8x64 -> 4x4x64 -> 128 -> 10: 165,514 parameters
    ("conv2d", {"filters": 32, "kernel_size": 3, "padding": "same", "activation": "relu"}),
    ("conv2d", {"filters": 64, "kernel_size": 3, "padding": "same", "activation": "relu"}),
    ("max_pool2d", {"pool_size": 2}),
    ("flatten", {}),
    ("dense", {"units": 128, "activation": "relu"}),
    ("dense", {"units": 10, "activation": "softmax"}),
]

SETTINGS = [  # name, image size, epochs, target, cytorch builder, cosine learning-rate decay
    ("small CNN", 8, 15, 0.98, lambda seed: Sequential.from_spec(SMALL_CNN, (8, 8, 1), seed),
     False),
    ("keras_mnist", 28, 20, 0.97, lambda seed: models.keras_mnist(seed=seed), False),
    ("lenet5", 32, 20, 0.97, lambda seed: models.lenet5(seed=seed), False),
    ("alexnet_small", 32, 30, 0.98, lambda seed: models.alexnet_small(seed=seed), True),
    ("alexnet_small+bn", 32, 20, 0.98,
     lambda seed: models.alexnet_small(seed=seed, batch_norm=True), True),
    ("vgg_small", 32, 20, 0.98, lambda seed: models.vgg_small(seed=seed), False),
    ("vgg_small+bn", 32, 20, 0.98, lambda seed: models.vgg_small(seed=seed, batch_norm=True),
     False),
]
LEARNING_RATE = 1e-3


def cosine_decay(epochs):
    """The learning rate of each epoch (from 0): 1e-3 decayed to 0 along half a cosine."""
    return lambda epoch: LEARNING_RATE * 0.5 * (1 + math.cos(math.pi * epoch / epochs))


def split(size):
    X, y = load_digits(size)
    return train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)


def cytorch_curve(build, data, epochs, seed, cosine=False):
    """Test accuracy after every epoch."""
    X_tr, X_te, y_tr, y_te = data
    model = build(seed).compile(optimizer="adam", metrics=["accuracy"])
    curve = []
    track = [callbacks.LambdaCallback(on_epoch_end=lambda e, logs: curve.append(
        float((model.predict(X_te).argmax(1) == y_te).mean())))]
    if cosine:
        track.append(callbacks.LearningRateScheduler(cosine_decay(epochs)))
    model.fit(X_tr, y_tr, batch_size=32, epochs=epochs, verbose=0, seed=seed,
              callbacks=track)
    return curve


def torch_model(name):
    import torch.nn as nn
    if name == "small CNN":
        layers = [nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1),
                  nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1024, 128), nn.ReLU(),
                  nn.Linear(128, 10)]
        net = nn.Sequential(*layers)
    elif name.startswith(("alexnet_small", "vgg_small")):
        net = torch_preset(name)
    else:
        from bench_training import torch_net
        net = torch_net(name)
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return net


def torch_preset(name):
    """The same nets as ``cytorch.models.alexnet_small``/``vgg_small`` in PyTorch (NCHW).
    BatchNorm2d with the presets' numbers: momentum 1 - 0.9 (PyTorch weighs the new value) and
    eps 1e-3; "same" padding of the stride-1 convolutions is k // 2 on every side."""
    import torch.nn as nn
    bn = name.endswith("+bn")

    def conv(c_in, c_out, k):
        layers = [nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=not bn)]
        if bn:
            layers.append(nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.1))
        return layers + [nn.ReLU()]

    if name.startswith("alexnet_small"):
        layers = conv(1, 24, 5) + [nn.MaxPool2d(3, 2)] + conv(24, 48, 3) + \
            [nn.MaxPool2d(3, 2)] + conv(48, 64, 3) + conv(64, 64, 3) + conv(64, 48, 3) + \
            [nn.MaxPool2d(3, 2), nn.Flatten(), nn.Linear(432, 128), nn.ReLU(), nn.Dropout(0.5),
             nn.Linear(128, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10)]
    else:
        layers = []
        for c_in, c_out in ((1, 16), (16, 32), (32, 64)):
            layers += conv(c_in, c_out, 3) + conv(c_out, c_out, 3) + [nn.MaxPool2d(2)]
        layers += [nn.Flatten(), nn.Linear(1024, 128), nn.ReLU(), nn.Dropout(0.5),
                   nn.Linear(128, 10)]
    return nn.Sequential(*layers)


def torch_curve(name, data, epochs, seed, cosine=False):
    import torch
    torch.manual_seed(seed)
    X_tr, X_te, y_tr, y_te = data
    net = torch_model(name)
    opt = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE, eps=1e-7)
    schedule = cosine_decay(epochs) if cosine else (lambda epoch: LEARNING_RATE)
    loss_fn = torch.nn.CrossEntropyLoss()
    Xt = torch.from_numpy(np.ascontiguousarray(X_tr.transpose(0, 3, 1, 2)))
    Xe = torch.from_numpy(np.ascontiguousarray(X_te.transpose(0, 3, 1, 2)))
    yt = torch.from_numpy(y_tr)
    gen = torch.Generator().manual_seed(seed)
    curve = []
    for epoch in range(epochs):
        for group in opt.param_groups:
            group["lr"] = schedule(epoch)
        net.train()
        order = torch.randperm(len(Xt), generator=gen)
        for start in range(0, len(Xt), 32):
            idx = order[start:start + 32]
            opt.zero_grad(set_to_none=True)
            loss_fn(net(Xt[idx]), yt[idx]).backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            curve.append(float((net(Xe).argmax(1).numpy() == y_te).mean()))
    return curve


def describe(curves, target):
    curves = np.array(curves)
    final = curves[:, -1]
    mean_curve = curves.mean(axis=0)
    reached = np.flatnonzero(mean_curve >= target)
    return [f"{final.mean():.4f} +- {final.std():.4f}", f"{final.min():.4f}",
            f"{curves.max(axis=1).mean():.4f}",
            str(reached[0] + 1) if len(reached) else "never"]


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--only", nargs="+", metavar="SETTING",
                   help="run only these settings (e.g. vgg_small alexnet_small+bn)")
    p.add_argument("--omp-passive", action="store_true",
                   help="run with OMP_WAIT_POLICY=PASSIVE (faster on a busy machine)")
    args = p.parse_args()
    header("accuracy on load_digits (stratified 80/20, Adam 1e-3, batch 32)")
    seeds = range(1 if args.quick else args.seeds)
    torch = None if args.no_torch else try_import_torch()
    if torch is not None:
        torch.set_num_threads(1)
    table = Table("setting", "framework", "final acc (mean +- std)", "worst", "best-epoch acc",
                  "epoch mean >= target", "time")
    for name, size, epochs, target, build, cosine in SETTINGS:
        if args.only and name not in args.only:
            continue
        data = split(size)
        t0 = time.perf_counter()
        ours = [cytorch_curve(build, data, epochs, s, cosine) for s in seeds]
        label = f"{name} {size}x{size}, {epochs} ep{', cosine' if cosine else ''}"
        table.add(f"{label}, target {target}", "cytorch",
                  *describe(ours, target), f"{time.perf_counter() - t0:.0f} s")
        if torch is not None:
            t0 = time.perf_counter()
            theirs = [torch_curve(name, data, epochs, s, cosine) for s in seeds]
            table.add("", "torch", *describe(theirs, target), f"{time.perf_counter() - t0:.0f} s")
            diff = 100 * (np.mean([c[-1] for c in ours]) - np.mean([c[-1] for c in theirs]))
            table.add("", "difference", f"{diff:+.2f} points", "", "", "", "")
        print(f"done: {name}", file=sys.stderr, flush=True)
    table.print()


if __name__ == "__main__":
    main()
