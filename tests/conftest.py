"""Shared test setup, and a throwaway virtual environment for the plugin-install tests
(``test_plugins.py``, ``test_new_plugin.py``)."""
import importlib.util
import os
import site
import subprocess
import sys

import numpy as np
import pytest

# Figures never open a window during the tests, even on a desktop: cytorch.viz shows a figure
# in a window only when matplotlib has an interactive backend.
os.environ["MPLBACKEND"] = "Agg"


def keras_on_torch():
    """``(keras, torch)``: Keras 3 on its torch backend, the optional oracle of the
    ``test_keras_*`` modules (never a dependency; CI does not have it).  Call it at module
    level: it skips the whole calling module when either cannot be imported, or when Keras was
    already loaded with another backend (``KERAS_BACKEND`` chosen before Keras's import)."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
        import torch
    except Exception as exc:   # not installed, or a backend that cannot load here
        pytest.skip(f"Keras 3 with the torch backend is not available ({exc})",
                    allow_module_level=True)
    if keras.backend.backend() != "torch":
        pytest.skip(f"these comparisons use Keras's torch backend, not "
                    f"{keras.backend.backend()!r}", allow_module_level=True)
    return keras, torch


def site_dirs():
    """The site-packages folders of the environment running the tests, in ``sys.path`` order:
    the venv's own when pytest runs in a venv, the interpreter's otherwise (plus the user site
    when it is on the path)."""
    dirs = list(site.getsitepackages())
    user = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    if user and user in sys.path:
        dirs.append(user)
    return [d for d in dirs if os.path.isdir(d)]


class Venv:
    """A virtual environment layered on top of the environment running the tests (what it
    installs stays in it), with pip helpers.

    ``venv --system-site-packages`` is not enough: from inside a venv it inherits the *base*
    interpreter's site-packages, not the venv's, and cytorch's plugins installed there would be
    invisible.  Instead a ``.pth`` file adds each of our site folders with ``site.addsitedir``,
    which also runs *their* ``.pth`` files (editable installs such as ``pip install -e .``
    work through those)."""

    def __init__(self, root):
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
        self.python = str(root / ("Scripts" if os.name == "nt" else "bin") / "python")
        self.env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1",
                        PIP_ROOT_USER_ACTION="ignore", PYTHONDONTWRITEBYTECODE="1")
        for key in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
            self.env.pop(key, None)
        purelib = self.run("-c", "import sysconfig; print(sysconfig.get_path('purelib'))")
        line = "import site; " + "; ".join(f"site.addsitedir({d!r})" for d in site_dirs())
        with open(os.path.join(purelib.strip(), "_cytorch_test_parent.pth"), "w") as f:
            f.write(line + "\n")   # a .pth line that starts with "import" is executed

    def run(self, *args):
        result = subprocess.run([self.python, *args], capture_output=True, text=True,
                                env=self.env, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def pip(self, *args):
        # pip comes from the environment running the tests; it installs into this venv
        return self.run("-m", "pip", *args, "-q")


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A ``Venv`` for the tests of one module (they install into it and uninstall again)."""
    for tool in ("pip", "setuptools"):      # the offline install builds with what is here
        if importlib.util.find_spec(tool) is None:
            pytest.skip(f"{tool} is not installed in this environment")
    return Venv(tmp_path_factory.mktemp("venv") / "env")


# -- fused epilogues: which results may differ in the last bit ----------------------------------
# The element functions of ``_mathfn.h`` round a few multiply-adds differently in a loop's
# vector body and in its remainder (GCC contracts them into FMAs in one and not the other), so
# where a block of the epilogue ends changes the last bit of some values -- measured on an AMD
# EPYC (AVX-512), splitting a 1,000-value call in two at 6 places: tanh' 39 (float32) and 22
# (float64) values, sigmoid and softplus forward 3 and 7 (float64 only), none for the others.
# The direct path's epilogue runs over lanes of 2 filters, whose blocks end elsewhere again:
# there sigmoid forward differs in float32 too (14 of 14,112 values, 9x28x28x3 -> 2 "same"),
# and elu forward in float64 between the avx2 and avx512 variants (1 of 858).  Those compare
# to a few ulp; everything else bit for bit (test_epilogue.py, test_depthwise_kernel.py,
# test_isa.py).
POSITION_DEPENDENT = {("tanh", np.float32), ("tanh", np.float64), ("sigmoid", np.float32),
                      ("sigmoid", np.float64), ("softplus", np.float64), ("elu", np.float64)}


def assert_same(got, want, exact, what):
    """Bit for bit if ``exact``, else to a few ulp (norm-wise, far below the twins' tolerance)."""
    from cytorch._gradcheck import relative_error
    if exact:
        np.testing.assert_array_equal(got, want, err_msg=what)
    else:
        tol = 1e-6 if got.dtype == np.float32 else 1e-14
        assert relative_error(got, want) < tol, what
