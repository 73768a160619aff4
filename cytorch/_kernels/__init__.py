"""Compiled kernels, one extension module per family (private: use ``cytorch.functional``).

cytorch never falls back to slow Python when a module is missing: ``load`` raises an
ImportError that says how to build the extensions.
"""
import importlib
import os

MODULES = ("_conv", "_pool", "_dropout")

# OpenMP's wait policy.  After each parallel region libgomp's idle threads spin for a while
# (OMP_WAIT_POLICY unset) before they sleep.  That is free on an idle machine, but when other
# processes want the cores, a spinning thread holds the core its teammate needs and every
# 2-thread region waits for the scheduler.  Measured on a 2-core machine with about three
# other busy processes, conv2d forward + backward (LeNet c1, 64 images): one thread 1.5 ms;
# two threads 16-27 ms with the default policy, 1.6-1.8 ms with PASSIVE (threads sleep at
# once and are woken by the kernel).  So cytorch asks for PASSIVE unless the user chose a
# policy.  libgomp reads the variable once, when it is loaded, which is why this runs before
# the first kernel module is imported; the price is that the variable is also in this
# process's environment for any other OpenMP runtime loaded later (torch, scikit-learn).
_USER_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY")


def _libgomp_loaded():
    """Is a libgomp already mapped into this process (then it has read its settings)?"""
    try:
        with open("/proc/self/maps") as maps:
            return any("/libgomp.so" in line for line in maps)
    except OSError:  # not Linux: unknown, assume not
        return False


_WAIT_POLICY_TOO_LATE = _USER_WAIT_POLICY is None and _libgomp_loaded()
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def openmp_wait_policy():
    """One line for ``cytorch.show_build()``: the OMP_WAIT_POLICY the kernels run with, and who
    chose it."""
    if _USER_WAIT_POLICY is not None:
        return f"{_USER_WAIT_POLICY} (OMP_WAIT_POLICY set by the user)"
    if _WAIT_POLICY_TOO_LATE:
        return ("libgomp's default (libgomp was loaded before cytorch, so cytorch's PASSIVE "
                "came too late; set OMP_WAIT_POLICY=PASSIVE before starting Python)")
    return "PASSIVE (set by cytorch: idle threads sleep instead of spinning)"

BUILD_HELP = (
    "cytorch's compiled kernels are not built (missing cytorch._kernels.{name}: {error}).\n"
    "Build them from the source checkout with one of:\n"
    "    pip install -e .                      # editable install, builds in place\n"
    "    python setup.py build_ext --inplace   # rebuild after editing a .pyx\n"
    "A C compiler (gcc or clang) and the Python headers are needed.")


def load(name):
    """Import ``cytorch._kernels.<name>`` or raise a NotBuiltError with the build command."""
    from ..errors import NotBuiltError
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ImportError as exc:
        raise NotBuiltError(BUILD_HELP.format(name=name, error=exc)) from exc


def check_built():
    """Import every kernel module (called when cytorch is imported)."""
    return {name: load(name) for name in MODULES}
