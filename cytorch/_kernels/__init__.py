"""Compiled kernels, one extension module per family (private: use ``cytorch.functional``).

cytorch never falls back to slow Python when a module is missing: ``load`` raises an
ImportError that says how to build the extensions.
"""
import importlib
import os

MODULES = ("_conv", "_direct", "_winograd", "_blocked", "_depthwise", "_pool", "_dropout",
           "_batchnorm", "_optim", "_activation", "_arrays")

# OpenMP's wait policy.  After each parallel region libgomp's idle threads spin (by default
# for 300,000 rounds, about a millisecond) before they sleep.  On an idle machine that makes
# the next region start at once; when other processes want the cores, a spinning thread holds
# the core its teammate needs and every 2-thread region waits for the scheduler.  Measured on
# a 2-core Intel Xeon with AVX-512 (a virtual machine), conv2d forward + backward on 64 images, LeNet c1 / c2, median of 60 calls
# (three runs on the idle machine, one with three other busy processes):
#
#     policy                     idle machine                         3 other busy processes
#     libgomp default            0.90-0.98 ms / 0.95-1.02 ms          3.4 ms / 11.0 ms
#     OMP_WAIT_POLICY=PASSIVE    1.20-1.28 ms / 1.16-1.23 ms          1.7 ms / 2.9 ms
#     GOMP_SPINCOUNT=10000       1.01-1.10 ms / 0.94-1.00 ms          2.6 ms / 2.8 ms
#
# (An earlier measurement with the default policy on a loaded machine saw single calls stall
# for 16-27 ms.)
# A short spin (10,000 rounds, some tens of microseconds) keeps most of the default's speed
# when the machine is idle and PASSIVE's robustness when it is not, so cytorch asks libgomp
# for it unless the user chose a policy or a spin count.
#
# Measured again on a 2-vCPU AMD EPYC (Zen 5, AVX-512) on 2026-12-03, idle machine, one
# training epoch of keras_mnist / lenet5 (benchmarks/bench_training.py, best of 3):
#
#     policy                     1 thread            2 threads
#     GOMP_SPINCOUNT=10000       121-127 / 121 ms    76-114 / 76-77 ms
#     OMP_WAIT_POLICY=PASSIVE    126 / 122 ms        113 / 114 ms
#
# so two threads with the short spin stay the default.  (The 2-thread times are bimodal on
# this virtual machine: the same process gives ~80 ms in some minutes and ~110 ms in others.)
# On the same machine under load 6-11 the 2-thread runs of both cytorch and PyTorch were 2-7x
# slower than one thread: with other processes on the cores, set_num_threads(1) is faster.  libgomp reads these variables once,
# when it is loaded, which is why this runs before the first kernel module is imported; the
# price is that the variable is also in this process's environment for any other OpenMP
# runtime loaded later (torch, scikit-learn).  Other OpenMP runtimes ignore GOMP_SPINCOUNT.
#
# How long is the short spin?  A round is one PAUSE instruction, whose length depends on the CPU.
# Measured on the 2-vCPU AMD EPYC Zen 3 (AVX2) on 2026-12-04 (load 2-5), a C program timing when
# the second thread of a 2-thread region starts after the first has busy-waited a given gap since
# the region before (median of 400): with 10,000 rounds the idle thread still spins after
# 240 us (it starts 0.2 us after the first) and sleeps after 300 us (it then starts 21 us late,
# 34 us after a 1 ms gap: the wake-up of a sleeping vCPU); 30,000 rounds spin for 600-800 us.
# So on this CPU a region that follows the one before within ~250 us -- a training step's
# layers, back to back -- finds its second thread awake; only a longer pause costs a wake-up.
SPIN_COUNT = "10000"
_USER_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY")
_USER_SPIN_COUNT = os.environ.get("GOMP_SPINCOUNT")


def _libgomp_loaded():
    """Is a libgomp already mapped into this process (then it has read its settings)?"""
    try:
        with open("/proc/self/maps") as maps:
            return any("/libgomp.so" in line for line in maps)
    except OSError:  # not Linux: unknown, assume not
        return False


_USER_CHOSE = _USER_WAIT_POLICY is not None or _USER_SPIN_COUNT is not None
_TOO_LATE = not _USER_CHOSE and _libgomp_loaded()
if not _USER_CHOSE:
    os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT


def openmp_wait_policy():
    """One line for ``cytorch.show_build()``: how idle OpenMP threads wait, and who chose it."""
    if _USER_WAIT_POLICY is not None:
        return f"{_USER_WAIT_POLICY} (OMP_WAIT_POLICY set by the user)"
    if _USER_SPIN_COUNT is not None:
        return f"spin {_USER_SPIN_COUNT} rounds, then sleep (GOMP_SPINCOUNT set by the user)"
    if _TOO_LATE:
        return ("libgomp's default (libgomp was loaded before cytorch, so cytorch's "
                f"GOMP_SPINCOUNT={SPIN_COUNT} came too late; set it before starting Python)")
    return f"spin {SPIN_COUNT} rounds, then sleep (GOMP_SPINCOUNT set by cytorch)"


# Instruction sets.  The vector loops of ``_direct`` (``_lanes.h``), ``_winograd``
# (``_winograd.h``), ``_blocked`` (``_blocked.h``), ``_depthwise`` (``_depthwise.h``), ``_pool``
# (``_pool2x2.h``), ``_optim`` (``_optim.h``), ``_conv``'s strided path (``_strided.h``) and
# ``_activation`` (``_mathfn.h``) exist in three
# variants, indexed as the CY_ISA_* values of ``_isa.h``; each
# module runs the best its CPU has.  The private environment variable CYTORCH_ISA (read when
# the modules are imported) forces one, so that the tests can compare every variant present:
#     CYTORCH_ISA=default|avx2|avx512 python -m pytest tests/test_isa.py
ISA_NAMES = ("default", "avx2", "avx512")
ISA_MODULES = ("_direct", "_winograd", "_blocked", "_depthwise", "_pool", "_optim",
               "_activation", "_conv")


def requested_isa():
    """The variant CYTORCH_ISA asks for, or "best"."""
    return os.environ.get("CYTORCH_ISA", "").strip().lower() or "best"


def variants_up_to(best):
    """The variant names up to index ``best`` (what a CPU can run), best first."""
    return [ISA_NAMES[i] for i in range(best, -1, -1)]


def isa_index(name, best):
    """The index of variant ``name`` ("best" for ``best``); ValueError when the CPU cannot run
    it (an illegal instruction would kill the process instead)."""
    if name == "best":
        return best
    if name not in variants_up_to(best):
        raise ValueError(f"CYTORCH_ISA={name!r} is not a variant this CPU can run; choose one "
                         f"of {variants_up_to(best)} (or unset it)")
    return ISA_NAMES.index(name)


def isa_functions(what, best, select):
    """The three functions every module with variants exports, for ``what`` (its vector code,
    as their docstrings name it): ``isa_variants()``, ``_select_isa(name)`` and ``isa()``.
    ``best`` is the index of the best variant the CPU runs (``cy_isa_best()``); ``select(i)``
    switches the module's function tables to variant ``i`` and returns the index it then runs.
    The variant CYTORCH_ISA asks for (else the best) is selected here, once, at import."""
    current = []

    def isa_variants():
        return variants_up_to(best)

    def _select_isa(name):
        current[:] = [ISA_NAMES[select(isa_index(name, best))]]
        return current[0]

    def isa():
        return current[0]

    isa_variants.__doc__ = f"The variants of {what} this CPU can run, best first."
    _select_isa.__doc__ = ('Run variant ``name`` ("avx512", "avx2", "default" or "best") from '
                           f'now on in {what} and return it.  Private: for the tests and '
                           'CYTORCH_ISA.')
    isa.__doc__ = f'The variant of {what} this process runs: "avx512", "avx2" or "default".'
    _select_isa(requested_isa())
    return isa_variants, _select_isa, isa


# The activations the conv kernels apply in their epilogue (``_epilogue.pxd``: in the pass that
# writes the output, and their derivative in the first pass of backward), by code: the index
# of the name, which is its CY_ACT_* code in ``_mathfn.h``.  ``cytorch._checks.CONV_ACTIVATIONS``
# lists the same names for the front door.
EPILOGUES = ("linear", "relu", "tanh", "sigmoid", "elu", "leaky_relu", "softplus")


def isa_in_use():
    """``{module: variant}`` for the modules with instruction-set variants (loaded ones)."""
    return {name: load(name).isa() for name in ISA_MODULES}


BUILD_HELP = (
    "cytorch's compiled kernels are not built (missing cytorch._kernels.{name}: {error}).\n"
    "Build them from the source checkout with one of:\n"
    "    pip install -e .                      # editable install, builds in place\n"
    "    python setup.py build_ext --inplace   # rebuild after editing a .pyx\n"
    "A C compiler (gcc or clang) and the Python headers are needed.")


_loaded = {}


def load(name):
    """Import ``cytorch._kernels.<name>`` or raise a NotBuiltError with the build command.

    A loaded module is remembered: ``cytorch.functional`` asks on every call, and a dict
    lookup costs 0.06 us where ``importlib.import_module`` costs about 3 us."""
    module = _loaded.get(name)
    if module is None:
        from ..errors import NotBuiltError
        try:
            module = _loaded[name] = importlib.import_module(f"{__name__}.{name}")
        except ImportError as exc:
            raise NotBuiltError(BUILD_HELP.format(name=name, error=exc)) from exc
    return module


def check_built():
    """Import every kernel module (called when cytorch is imported)."""
    return {name: load(name) for name in MODULES}
