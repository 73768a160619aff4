"""The compiled code is what runs: extension modules, a loud error when they are missing,
``show_build``/``build_info``, and the backend switch."""
import importlib
import importlib.machinery
import io
import subprocess
import sys

import numpy as np
import pytest

import cytorch
from cytorch import _kernels, functional as F
from cytorch.errors import NotBuiltError
from cytorch.info import MODULES, build_info, show_build


@pytest.mark.parametrize("name", MODULES)
def test_kernel_modules_are_extension_modules(name):
    module = importlib.import_module(f"cytorch._kernels.{name}")
    assert module.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), \
        module.__file__


def test_cython_helpers_are_shared_by_the_kernel_modules():
    # setup.py compiles Cython's memoryview and error helpers once, into _cyutility (a third
    # less C to compile); every kernel module imports them from there
    code = ("import sys; import cytorch._kernels._pool; "
            "print(sys.modules['cytorch._kernels._cyutility'].__file__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), out
    assert "_cyutility" not in MODULES   # a helper, not a kernel


def test_missing_module_raises_not_built_error_with_the_build_command():
    with pytest.raises(NotBuiltError, match=r"pip install -e \.") as info:
        _kernels.load("_no_such_kernel")
    assert isinstance(info.value, ImportError)
    assert "cytorch._kernels._no_such_kernel" in str(info.value)


def test_no_silent_fallback_when_a_kernel_is_missing(monkeypatch):
    def missing(name):
        raise NotBuiltError(_kernels.BUILD_HELP.format(name=name, error="gone"))
    monkeypatch.setattr(_kernels, "load", missing)
    x, w = np.ones((1, 4, 4, 1)), np.ones((2, 2, 1, 1))
    with pytest.raises(NotBuiltError, match=r"missing cytorch\._kernels\._(conv|direct)"):
        F.conv2d_forward(x, w)
    with cytorch.backend("reference"):  # the twin is only used when asked for
        assert F.conv2d_forward(x, w)[0].shape == (1, 3, 3, 1)


def test_show_build_names_every_module_and_the_blas():
    out = io.StringIO()
    show_build(file=out)
    text = out.getvalue()
    for name in MODULES:
        assert f"  {name} " in text
    assert "OpenMP: " in text and "BLAS" in text
    assert f"threads: {cytorch.get_num_threads()}" in text
    assert "MISSING" not in text, text


def test_show_build_is_public_and_prints_to_stdout(capsys):
    cytorch.show_build()
    assert "_conv" in capsys.readouterr().out


def test_build_info_reports_modules_openmp_and_threads():
    info = build_info()
    assert [m["name"] for m in info["modules"]] == list(MODULES)
    for m in info["modules"]:
        assert m["loaded"] and m["error"] is None
        assert m["path"].endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    assert isinstance(info["openmp"], bool)
    assert info["openmp_max_threads"] >= 1
    assert info["num_threads"] == cytorch.get_num_threads()
    assert info["backend"] == "compiled"
    assert info["blas"] is None or all("num_threads" in lib for lib in info["blas"])


def test_backend_setter_and_context_manager():
    assert cytorch.get_backend() == "compiled"
    with cytorch.backend("reference") as b:
        assert cytorch.get_backend() == "reference"
        assert repr(b) == "cytorch.backend('reference')"
        with cytorch.backend("compiled"):
            assert cytorch.get_backend() == "compiled"
        assert cytorch.get_backend() == "reference"
    assert cytorch.get_backend() == "compiled"
    try:
        cytorch.backend("reference")
        assert cytorch.get_backend() == "reference"
    finally:
        cytorch.backend("compiled")
    assert cytorch.get_backend() == "compiled"


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match=r"backend must be one of \('compiled', 'reference'\), "
                                         r"got 'cuda'"):
        cytorch.backend("cuda")
    assert cytorch.get_backend() == "compiled"


def test_num_threads_environment_is_read_once_and_again_after_set_num_threads_none(monkeypatch):
    # every kernel call asks get_num_threads(): the environment is read at the first call and
    # after set_num_threads(None), not at every call
    try:
        monkeypatch.setenv("CYTORCH_NUM_THREADS", "3")
        cytorch.set_num_threads(None)
        assert cytorch.get_num_threads() == 3
        monkeypatch.setenv("CYTORCH_NUM_THREADS", "5")
        assert cytorch.get_num_threads() == 3   # cached
        cytorch.set_num_threads(None)
        assert cytorch.get_num_threads() == 5
        monkeypatch.delenv("CYTORCH_NUM_THREADS")
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        cytorch.set_num_threads(None)
        assert cytorch.get_num_threads() == 2
    finally:
        monkeypatch.undo()
        cytorch.set_num_threads(None)


def test_num_threads_setting():
    default = cytorch.get_num_threads()
    try:
        cytorch.set_num_threads(1)
        assert cytorch.get_num_threads() == 1
        assert build_info()["num_threads"] == 1
    finally:
        cytorch.set_num_threads(None)
    assert cytorch.get_num_threads() == default
    with pytest.raises(ValueError, match="num_threads must be a positive int"):
        cytorch.set_num_threads(0)


def test_single_threaded_blas_is_public_and_restores_each_library():
    # the one BLAS-thread policy, for plugins too (the locally-connected plugin uses it)
    threadpoolctl = pytest.importorskip("threadpoolctl")
    controller = threadpoolctl.ThreadpoolController().select(user_api="blas")
    if not controller.lib_controllers:
        pytest.skip("no BLAS library found by threadpoolctl")
    assert "single_threaded_blas" in cytorch.__all__
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        before = [lib.get_num_threads() for lib in controller.lib_controllers]
        with cytorch.single_threaded_blas():
            assert [lib.get_num_threads() for lib in controller.lib_controllers] == \
                [1] * len(before)
            with cytorch.single_threaded_blas():   # nested: still one, and no change on exit
                pass
            assert all(lib.get_num_threads() == 1 for lib in controller.lib_controllers)
        assert [lib.get_num_threads() for lib in controller.lib_controllers] == before


def test_single_threaded_blas_nested_in_the_same_thread_costs_no_library_call():
    # fit holds one context around its loop and every Dense call opens another: an inner
    # context of the same thread neither reads nor sets the libraries; another thread's
    # outermost context still does (and restores what it set, in its own thread)
    import threading
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from cytorch._config import single_threaded_blas
    with single_threaded_blas():
        pass                              # finds the libraries
    libraries = single_threaded_blas._libraries
    if not libraries:
        pytest.skip("no BLAS library found by threadpoolctl")
    calls = []
    for lib in libraries:
        lib.get_num_threads = lambda _f=lib.get_num_threads: calls.append(1) or _f()
    try:
        with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
            with cytorch.single_threaded_blas():
                outer = len(calls)
                assert outer == len(libraries)
                for _ in range(3):
                    with cytorch.single_threaded_blas():
                        assert [lib.get_num_threads() for lib in libraries] == \
                            [1] * len(libraries)
                assert len(calls) == outer + 3 * len(libraries)   # only the asserts' reads
                seen = []

                def other():
                    with cytorch.single_threaded_blas():
                        seen.append(len(calls))
                worker = threading.Thread(target=other)
                worker.start()
                worker.join(10)
                assert seen == [outer + 4 * len(libraries)]   # the worker's outermost read them
            assert [lib.get_num_threads() for lib in libraries] == [2] * len(libraries)
    finally:
        for lib in libraries:
            del lib.get_num_threads


def test_import_fails_loudly_without_the_compiled_kernels():
    # a fresh interpreter where the _conv extension cannot be imported (None in sys.modules
    # makes ``import`` raise ImportError, as a missing .so would)
    import subprocess
    import sys
    code = ("import sys; sys.modules['cytorch._kernels._conv'] = None\n"
            "import cytorch\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0
    assert "NotBuiltError" in proc.stderr
    assert "missing cytorch._kernels._conv" in proc.stderr
    assert "pip install -e ." in proc.stderr


@pytest.mark.parametrize("user_env, spin, shown", [
    ({}, "10000", "spin 10000 rounds, then sleep (GOMP_SPINCOUNT set by cytorch)"),
    ({"OMP_WAIT_POLICY": "ACTIVE"}, None, "ACTIVE (OMP_WAIT_POLICY set by the user)"),
    ({"GOMP_SPINCOUNT": "0"}, "0", "spin 0 rounds, then sleep (GOMP_SPINCOUNT set by the user)")])
def test_openmp_short_spin_unless_the_user_chose_a_policy(user_env, spin, shown):
    # a fresh interpreter: libgomp reads its variables once, when the kernels load it
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(user_env)
    code = ("import os, cytorch; print(os.environ.get('GOMP_SPINCOUNT')); "
            "cytorch.show_build()")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert out.splitlines()[0] == str(spin)
    if build_info()["openmp"]:
        assert "wait policy " + shown in out, out
