"""What was built and what it runs on: compiled modules, BLAS, threads, OpenMP.

>>> import cytorch
>>> cytorch.show_build()          # doctest: +SKIP
cytorch 0.1.0  backend: compiled  threads: 2 (cytorch.get_num_threads())
OpenMP: enabled (omp_get_max_threads() = 2), wait policy spin 10000 rounds, then sleep (...)
compiled modules:
  _conv     loaded  .../cytorch/_kernels/_conv.cpython-311-x86_64-linux-gnu.so
  ...
CPU: AMD EPYC
vector kernels (instruction-set variant in use): _direct avx512, _winograd avx512, _pool avx512, ...
BLAS (threadpoolctl):
  openblas 0.3.30  2 threads  pthreads  Haswell  .../libscipy_openblas-....so

``cytorch info`` on the command line prints the same.
"""
import importlib
import sys

from . import _kernels
from ._config import get_backend, get_num_threads

# the kernel families plus the shared helper module (OpenMP probe; the GEMM wrapper is a .pxd)
MODULES = tuple(_kernels.MODULES) + ("_blas",)


def _module_info(name):
    try:
        module = importlib.import_module(f"{_kernels.__name__}.{name}")
    except ImportError as exc:
        return {"name": name, "loaded": False, "path": None, "error": str(exc)}
    return {"name": name, "loaded": True, "path": getattr(module, "__file__", None),
            "error": None}


def _blas_info():
    """threadpoolctl's view of the BLAS libraries loaded in this process (None without it)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    import scipy.linalg.cython_blas  # noqa: F401  (the BLAS the kernels call: load it first)
    keys = ("internal_api", "version", "num_threads", "threading_layer", "architecture",
            "filepath")
    return [{k: lib.get(k) for k in keys} for lib in threadpool_info()
            if lib.get("user_api") == "blas"]


def cpu_model():
    """The CPU's name as the operating system reports it (``/proc/cpuinfo`` on Linux), with
    its family and model numbers: a virtual machine may call every generation "AMD EPYC"."""
    import platform
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if not key.strip():
                    break                      # the first processor is enough
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name")
    if name is None:
        return platform.processor() or platform.machine() or "unknown"
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def _isa_info():
    """``{module: variant}`` of the vector kernels this process runs (None if not built)."""
    try:
        return _kernels.isa_in_use()
    except ImportError:
        return None


def build_info():
    """The build as a dict: ``version``, ``backend``, ``num_threads``, ``openmp``,
    ``openmp_max_threads``, ``openmp_wait_policy`` (a sentence), ``modules`` (name, loaded,
    path, error), ``blas`` (one dict per BLAS library threadpoolctl finds, or None when
    threadpoolctl is missing), ``cpu`` (the CPU's name) and ``isa`` (which instruction-set
    variant each vector kernel runs, e.g. ``{"_direct": "avx512", "_winograd": "avx512",
    "_pool": "avx512", "_optim": "avx512"}``)."""
    from . import __version__
    modules = [_module_info(name) for name in MODULES]
    openmp = openmp_threads = None
    if sys.modules.get(f"{_kernels.__name__}._blas") is not None:
        blas_module = sys.modules[f"{_kernels.__name__}._blas"]
        openmp = blas_module.openmp_enabled()
        openmp_threads = blas_module.openmp_max_threads()
    return {
        "version": __version__,
        "backend": get_backend(),
        "num_threads": get_num_threads(),
        "openmp": openmp,
        "openmp_max_threads": openmp_threads,
        "openmp_wait_policy": _kernels.openmp_wait_policy(),
        "modules": modules,
        "blas": _blas_info(),
        "cpu": cpu_model(),
        "isa": _isa_info(),
    }


def show_build(file=None):
    """Print ``build_info()`` for a person: which compiled modules load, from where, the BLAS
    library and its threads, OpenMP on/off (to ``file``, default stdout)."""
    info = build_info()
    out = file if file is not None else sys.stdout

    def say(text=""):
        print(text, file=out)

    say(f"cytorch {info['version']}  backend: {info['backend']}  "
        f"threads: {info['num_threads']} (cytorch.get_num_threads())")
    if info["openmp"] is None:
        say("OpenMP: unknown (cytorch._kernels._blas is not built)")
    elif info["openmp"]:
        say(f"OpenMP: enabled (omp_get_max_threads() = {info['openmp_max_threads']}), "
            f"wait policy {info['openmp_wait_policy']}")
    else:
        say("OpenMP: not compiled in: the kernels run single-threaded (BLAS may still thread)")
    say("compiled modules:")
    width = max(len(m["name"]) for m in info["modules"])
    for m in info["modules"]:
        if m["loaded"]:
            say(f"  {m['name']:<{width}}  loaded   {m['path']}")
        else:
            say(f"  {m['name']:<{width}}  MISSING  {m['error']}")
    if any(not m["loaded"] for m in info["modules"]):
        say("  build them with:  pip install -e .   (or python setup.py build_ext --inplace)")
    say(f"CPU: {info['cpu']}")
    if info["isa"]:
        say("vector kernels (instruction-set variant in use): "
            + ", ".join(f"{name} {variant}" for name, variant in info["isa"].items()))
    if info["blas"] is None:
        say("BLAS: unknown (install threadpoolctl to see which library runs and its threads)")
    else:
        say("BLAS (threadpoolctl):")
        for lib in info["blas"]:
            say(f"  {lib['internal_api']} {lib['version']}  {lib['num_threads']} threads  "
                f"{lib['threading_layer']}  {lib['architecture']}  {lib['filepath']}")
