"""Build the compiled kernel of the locally-connected plugin (``cytorch_locally_connected._lc``).

The metadata lives in ``pyproject.toml``; this file only describes the extension.  It follows
the main cytorch ``setup.py`` (a separate distribution cannot import it):

CYTORCH_DEBUG_CYTHON=1   bounds checks, wraparound and initialisation checks back on, -O1 -g.
CYTORCH_NO_OPENMP=1      build without OpenMP even when the compiler has it.
"""
import os
import shlex
import sys
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DEBUG = os.environ.get("CYTORCH_DEBUG_CYTHON", "") not in ("", "0")

OPENMP_TEST = """
#include <omp.h>
int main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }
"""


def openmp_flags(compiler_type):
    if compiler_type == "msvc":
        return ["/openmp"], []
    return ["-fopenmp"], ["-fopenmp"]


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

    def build_extensions(self):
        openmp = self._has_openmp()
        cflags, lflags = openmp_flags(self.compiler.compiler_type)
        for ext in self.extensions:
            if openmp:
                ext.extra_compile_args += cflags
                ext.extra_link_args += lflags
        print("cytorch-locally-connected: OpenMP " + ("enabled" if openmp else
              "not found: the kernel is built single-threaded (BLAS may still use threads)"))
        super().build_extensions()


if sys.platform == "win32":
    opt = ["/O2"]
else:
    opt = ["-O1", "-g"] if DEBUG else ["-O3"]

extension = Extension(
    "cytorch_locally_connected._lc",
    [os.path.join("cytorch_locally_connected", "_lc.pyx")],
    include_dirs=[np.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=list(opt),
)

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "embedsignature": True,
}

setup(
    # force: re-generating this one C file takes two seconds, and it keeps a normal build from
    # reusing a C file that a CYTORCH_DEBUG_CYTHON=1 build generated with checks (or vice versa)
    ext_modules=cythonize([extension], compiler_directives=directives, force=True),
    cmdclass={"build_ext": BuildExt},
)
