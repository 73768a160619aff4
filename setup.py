"""Build the compiled kernels of cytorch.

Every ``cytorch/_kernels/*.pyx`` becomes one extension module.  The metadata lives in
``pyproject.toml``; this file only describes the extensions.

Environment switches
--------------------
CYTORCH_DEBUG_CYTHON=1   bounds checks, wraparound and initialisation checks back on, -O1 -g.
CYTORCH_NO_OPENMP=1      build without OpenMP even when the compiler has it.
CYTORCH_BUILD_ONLY=a,b   build only these modules (e.g. ``_conv,_pool``), for quick iteration.
CYTORCH_BUILD_JOBS=N     compile N modules at once (default: one per CPU; ``build_ext -j N``
                         given on the command line wins).
CYTORCH_OPT_LEVEL=N      GCC/Clang optimisation level 0-3 (default 3).  The AddressSanitizer
                         build of CI uses 1: ASan checks every access the source makes at any
                         level, and -O1 halves the instrumented compile (96 -> 47 s for
                         ``_blocked``).  Never for speed measurements.
"""
import glob
import os
import shlex
import sys
import tempfile

import Cython
import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# 3.1 brought the shared utility module (SHARED_UTILITY below); pyproject.toml asks for it, but
# a build without isolation uses whatever Cython is installed
if tuple(int(p) for p in Cython.__version__.split(".")[:2] if p.isdigit()) < (3, 1):
    sys.exit(f"building cytorch needs Cython >= 3.1, found {Cython.__version__}: "
             "python -m pip install 'Cython>=3.1'")

DEBUG = os.environ.get("CYTORCH_DEBUG_CYTHON", "") not in ("", "0")

OPENMP_TEST = """
#include <omp.h>
int main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }
"""


def openmp_flags(compiler_type):
    if compiler_type == "msvc":
        return ["/openmp"], []
    return ["-fopenmp"], ["-fopenmp"]


def build_jobs():
    jobs = os.environ.get("CYTORCH_BUILD_JOBS", "")
    if jobs:
        if not jobs.isdigit() or int(jobs) < 1:
            sys.exit(f"CYTORCH_BUILD_JOBS must be a positive whole number, got {jobs!r}")
        return int(jobs)
    if hasattr(os, "sched_getaffinity"):   # the CPUs this process may run on
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class BuildExt(build_ext):
    """build_ext that adds OpenMP when a test program with it compiles and links."""

    def _has_openmp(self):
        if os.environ.get("CYTORCH_NO_OPENMP", "") not in ("", "0"):
            return False
        cflags, lflags = openmp_flags(self.compiler.compiler_type)
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "omp_test.c")
            with open(src, "w") as f:
                f.write(OPENMP_TEST)
            try:
                objects = self.compiler.compile([src], output_dir=tmp, extra_postargs=cflags)
                # LDFLAGS too: the shared modules get them, a test program does not by itself
                # (with CFLAGS=-fsanitize=address alone its link fails, and OpenMP was lost)
                self.compiler.link_executable(
                    objects, os.path.join(tmp, "omp_test"),
                    extra_postargs=lflags + shlex.split(os.environ.get("LDFLAGS", "")))
            except Exception:  # any compile or link failure means: no OpenMP here
                return False
        return True

    def finalize_options(self):
        super().finalize_options()
        # one module per core at once: the kernels are a dozen independent, slow compiles
        # (each .pyx in three instruction-set variants), and pip gives no -j of its own
        if not self.parallel:
            self.parallel = build_jobs()

    def build_extensions(self):
        openmp = self._has_openmp()
        cflags, lflags = openmp_flags(self.compiler.compiler_type)
        for ext in self.extensions:
            if openmp:
                ext.extra_compile_args += cflags
                ext.extra_link_args += lflags
        print("cytorch: OpenMP " + ("enabled" if openmp else
              "not found: the kernels are built single-threaded (BLAS may still use threads)"))
        super().build_extensions()


# Flags of single modules.  ``_optim`` must round every operation as its NumPy twin does, so
# that both give the same bits: no fused multiply-add (GCC contracts ``a * b + c`` by default),
# and sqrt without errno, so that it compiles to the (correctly rounded) vector instruction.
MODULE_FLAGS = {"_optim": ["-ffp-contract=off", "-fno-math-errno"]}


SHARED_UTILITY = "cytorch._kernels._cyutility"


def opt_level():
    level = os.environ.get("CYTORCH_OPT_LEVEL", "3")
    if level not in ("0", "1", "2", "3"):
        sys.exit(f"CYTORCH_OPT_LEVEL must be 0, 1, 2 or 3, got {level!r}")
    return level


def extensions():
    only = [m.strip() for m in os.environ.get("CYTORCH_BUILD_ONLY", "").split(",") if m.strip()]
    if sys.platform == "win32":
        opt = ["/O2"]
    else:
        opt = ["-O1", "-g"] if DEBUG else [f"-O{opt_level()}"]
    exts = []
    for path in sorted(glob.glob(os.path.join("cytorch", "_kernels", "*.pyx"))):
        name = os.path.splitext(os.path.basename(path))[0]
        if only and name not in only:
            continue
        exts.append(Extension(
            f"cytorch._kernels.{name}",
            [path],
            # the C helpers beside the .pyx (vector code, instruction-set variants): a change
            # to one rebuilds the modules
            depends=sorted(glob.glob(os.path.join("cytorch", "_kernels", "*.h"))),
            include_dirs=[np.get_include()],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            extra_compile_args=list(opt) + (MODULE_FLAGS.get(name, [])
                                             if sys.platform != "win32" else []),
            extra_link_args=[],
        ))
    for ext in exts:
        # a C file generated before the shared module existed carries its own copy of the
        # helpers; cythonize would keep it (its .pyx is unchanged): generate it again
        c_file = ext.sources[0][:-len(".pyx")] + ".c"
        if os.path.exists(c_file):
            with open(c_file, encoding="utf-8", errors="replace") as f:
                if SHARED_UTILITY not in f.read():
                    os.remove(c_file)
    if exts:
        # Cython's own helpers (typed memoryviews, error handling: some 30,000 lines of C) are
        # compiled once, into this module, instead of into every kernel module
        exts.append(Extension(SHARED_UTILITY, [SHARED_UTILITY.replace(".", os.sep) + ".c"],
                              extra_compile_args=list(opt)))
    return exts


directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "embedsignature": True,
}

setup(
    ext_modules=cythonize(extensions(), compiler_directives=directives,
                          # a debug build must not reuse C files generated without checks
                          force=DEBUG, nthreads=build_jobs(),
                          shared_utility_qualified_name=SHARED_UTILITY),
    cmdclass={"build_ext": BuildExt},
)
