"""A small timing kit shared by the benchmark scripts (run them from the repository root).

* ``timeit(fn, repeat=5, warmup=1)`` -> ``Timing(best, median)`` in seconds, after warm-up calls;
* ``interleaved({name: fn})`` times several callables in alternating rounds (fair ratios);
* ``torch_best(make_fn)`` times a torch callable at 1 and at 2 threads and keeps the faster;
  ``with_torch_threads(n, fn)`` pins a torch callable's thread count for ``interleaved``;
* ``sgemm_gflops()`` is the machine's reference speed: a 2048x2048 float32 matmul;
* ``peak_rss_mib()`` is the process's peak resident memory so far;
* ``Table`` prints aligned rows of timings and ratios.

Timings on a shared 2-core machine are noisy: compare ratios measured in one run, never
absolute numbers from different runs.  For benchmarking, unset the OpenBLAS overrides of this
environment in that command only::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_kernels.py
"""
import argparse
import resource
import statistics
import sys
import time
from collections import namedtuple

import numpy as np

Timing = namedtuple("Timing", "best median")


def timeit(fn, repeat=5, warmup=1, min_time=0.0):
    """Call ``fn()`` ``warmup`` times untimed, then ``repeat`` times; best and median seconds.

    With ``min_time`` > 0, keep repeating until the timed calls add up to at least that long
    (useful for very fast calls, whose single timings are mostly noise).
    """
    for _ in range(warmup):
        fn()
    times = []
    while len(times) < repeat or sum(times) < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return Timing(min(times), statistics.median(times))


def cpu_timed(fn, repeat):
    """Best process CPU time of ``fn`` over ``repeat`` calls after one warm-up call: other
    processes on a busy machine do not inflate it."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def interleaved(fns, repeat=5, warmup=1, min_time=0.0, settle=0.2):
    """Time several callables in rounds (one call of each per round); ``{name: Timing}``.

    On a shared machine load comes and goes: interleaving gives every contender the same
    share of quiet and busy moments, so ratios of best times stay fair.  Each timed call
    follows an untimed call of the same contender: after a call, a library's idle OpenMP
    threads spin for a while (cytorch's and torch's alike), and a timed call started right
    after another library's call would share the cores with those spinning threads, a cost no
    user who calls one library repeatedly pays.  For the same reason the contenders first run
    in turn for ``settle`` seconds: NumPy's OpenBLAS threads (a NumPy twin, an sgemm) busy-wait
    for up to about 0.1 s after their last call.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    settled = time.perf_counter() + settle
    while time.perf_counter() < settled:
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    rounds = 0
    while rounds < repeat or min(sum(t) for t in times.values()) < min_time:
        for name, fn in fns.items():
            fn()   # untimed: the previous contender's threads go back to sleep meanwhile
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        rounds += 1
    return {name: Timing(min(t), statistics.median(t)) for name, t in times.items()}


def with_torch_threads(n, fn):
    """``fn`` wrapped to run with ``torch.set_num_threads(n)`` (restored afterwards)."""
    import torch

    def call():
        previous = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            return fn()
        finally:
            torch.set_num_threads(previous)
    return call


def try_import_torch():
    """``torch`` if it is installed, else None (it is never a dependency of cytorch)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_best(make_fn, repeat=5, warmup=1, threads=(1, 2)):
    """Time ``make_fn()`` (returns the callable) at each torch thread count; keep the fastest.

    PyTorch's CPU convolution is sometimes slower with 2 threads than with 1, so a fair
    comparison gives it whichever is better.  Returns ``{threads: Timing}`` and the best count.
    """
    torch = try_import_torch()
    if torch is None:
        return {}, None
    previous = torch.get_num_threads()
    results = {}
    try:
        for n in threads:
            torch.set_num_threads(n)
            results[n] = timeit(make_fn(), repeat=repeat, warmup=warmup)
    finally:
        torch.set_num_threads(previous)
    best = min(results, key=lambda n: results[n].best)
    return results, best


def sgemm_gflops(n=2048, repeat=5):
    """GFLOP/s of one ``n x n`` float32 matmul through NumPy's BLAS (2 n^3 flops), best of k."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    t = timeit(lambda: a @ b, repeat=repeat, warmup=1)
    return 2.0 * n ** 3 / t.best / 1e9


def peak_rss_mib():
    """Peak resident set size of this process so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 ** 2 if sys.platform == "darwin" else 1024.0)


def blas_info():
    """One line per BLAS/OpenMP library loaded: ``name (internal_api, num_threads, arch)``."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ["threadpoolctl not installed"]
    return [f"{d.get('internal_api', d.get('user_api'))} {d.get('version') or ''} "
            f"threads={d.get('num_threads')} arch={d.get('architecture', '-')} "
            f"({d.get('filepath', '').rsplit('/', 1)[-1]})" for d in threadpool_info()]


def fmt_time(seconds):
    """``12.3 ms`` style, or ``-`` for a missing timing."""
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} us"


def fmt_ratio(a, b):
    """``a / b`` as ``0.42x``, or ``-`` when either is missing."""
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}x"


class Table:
    """Collect rows of strings, print them with aligned columns (first column left-aligned)."""

    def __init__(self, *headers):
        self.headers = [str(h) for h in headers]
        self.rows = []

    def add(self, *cells):
        self.rows.append([str(c) for c in cells])

    def __str__(self):
        rows = [self.headers] + self.rows
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.headers))]

        def line(r):
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(r, widths)))
        rule = "  ".join("-" * w for w in widths)
        return "\n".join([line(self.headers), rule] + [line(r) for r in self.rows])

    def print(self):
        print(self, flush=True)


def parser(description):
    """An argparse parser with the options every benchmark script shares."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true",
                   help="fewer repetitions and smaller batches: a smoke run, not a measurement")
    p.add_argument("--repeat", type=int, default=None, help="timed calls per measurement")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch columns")
    return p


def header(title, threads=None):
    """Print what the numbers below were measured on: the thread counts timed, BLAS libraries,
    the CPU and the kernels' instruction-set variant, the load.

    ``threads``: the thread counts the script times (e.g. ``(1, 2)``: every contender on one
    thread and on two); None when it times cytorch at its default only (``get_num_threads()``,
    every core unless CYTORCH_NUM_THREADS says otherwise)."""
    import cytorch
    print(f"# {title}")
    from cytorch import _kernels
    default = cytorch.get_num_threads()
    counts = sorted(set(threads)) if threads else [default]
    print(f"threads timed: {' and '.join(map(str, counts))} (cytorch's default here: "
          f"{default}); numpy {np.__version__}")
    print(f"OpenMP wait policy: {_kernels.openmp_wait_policy()}")
    from cytorch.info import build_info
    info = build_info()
    print(f"CPU: {info['cpu']}; vector kernels: "
          + ", ".join(f"{name} {variant}" for name, variant in (info["isa"] or {}).items()))
    for line in blas_info():
        print(f"  {line}")
    torch = try_import_torch()
    print(f"torch: {torch.__version__ if torch else 'not installed'}")
    print(load_line(), flush=True)


def load_line():
    """The 1/5/15-minute load averages against the core count: above the core count, every
    2-thread timing (OpenMP or torch) is dominated by waiting for a core, not by the code."""
    import os
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "load average: unknown"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    warn = "  (busy machine: multi-threaded timings are unreliable)" if one > cores else ""
    return f"load average: {one:.1f} {five:.1f} {fifteen:.1f} on {cores} cores{warn}"
