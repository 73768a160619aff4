"""Process-wide switches: which twin runs (compiled or NumPy reference) and how many threads.

>>> import cytorch
>>> with cytorch.backend("reference"):
...     cytorch.get_backend()
'reference'
>>> cytorch.get_backend()
'compiled'
"""
import os
import threading

_BACKENDS = ("compiled", "reference")
_state = {"backend": "compiled", "num_threads": None, "default_threads": None}


class _ThreadSetting(threading.local):
    """This thread's own kernel thread count, over the process-wide one (``kernel_threads``).
    None (the class attribute, so that reading it raises and catches no AttributeError, which
    took ~0.6 us of every kernel call) means "not set in this thread"."""
    num_threads = None


_local = _ThreadSetting()


def get_backend():
    """The backend every layer and ``cytorch.functional`` call uses now."""
    return _state["backend"]


class backend:
    """Switch every kernel between the compiled modules and their NumPy twins.

    Works as a setter, ``cytorch.backend("reference")``, and as a context manager that
    restores the previous backend on exit, ``with cytorch.backend("reference"): ...``.
    """

    def __init__(self, name):
        if name not in _BACKENDS:
            raise ValueError(f"backend must be one of {_BACKENDS}, got {name!r}")
        self.previous = _state["backend"]
        self.name = name
        _state["backend"] = name

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _state["backend"] = self.previous
        return False

    def __repr__(self):
        return f"cytorch.backend({self.name!r})"


def get_num_threads():
    """Threads the compiled kernels may use: ``set_num_threads``, else CYTORCH_NUM_THREADS,
    else OMP_NUM_THREADS, else every core this process may run on.

    Every kernel call asks, so the environment and the CPU affinity are read once, at the first
    call (reading them took ~3.5 us a call, ~3 % of a LeNet-5 epoch); ``set_num_threads(None)``
    reads them again.  Inside ``kernel_threads(n)``, n in that thread."""
    n = _local.num_threads
    if n is not None:
        return n
    n = _state["num_threads"]
    if n is not None:
        return n
    n = _state["default_threads"]
    if n is None:
        n = _state["default_threads"] = _default_threads()
    return n


class kernel_threads:
    """Within this block, the kernels called from this thread use ``n`` threads (the other
    threads keep theirs): ``predict`` runs its batches on worker threads whose kernels run on
    one thread each."""

    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.previous = _local.num_threads
        _local.num_threads = self.n
        return self

    def __exit__(self, *exc):
        _local.num_threads = self.previous
        return False


def _default_threads():
    for var in ("CYTORCH_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_num_threads(n):
    """Set how many threads the compiled kernels use (``None`` restores the default, read
    again from the environment)."""
    if n is not None:
        if int(n) != n or n < 1:
            raise ValueError(f"num_threads must be a positive int or None, got {n!r}")
        n = int(n)
    _state["num_threads"] = n
    _state["default_threads"] = None   # read the environment again at the next call


class single_threaded_blas:
    """Context manager: every BLAS library in the process (NumPy's and SciPy's) runs on one
    thread inside it; each gets its own setting back on exit.  The one BLAS-thread policy of
    cytorch: the conv kernels, the training loop and the estimator all use it, and so should a
    plugin's compiled kernel that calls GEMM from its own OpenMP threads::

        with cytorch.single_threaded_blas():
            out = my_kernel.forward(x, w, num_threads=cytorch.get_num_threads())

    Why one thread.  cytorch's compiled kernels parallelise over images with OpenMP and call
    small single-threaded GEMMs from every thread; a threaded BLAS inside each of them
    oversubscribes the cores, and OpenMP's idle threads spin for a while after each parallel
    region and steal the cores OpenBLAS's threads need (im2col then one big threaded GEMM was
    2-6x slower on 2 cores).  A mini-batch's Dense products (64 x 320 @ 320 x 100) are too
    small to gain from threads, and threads that spin-wait are ruinous when the cores are busy:
    two epochs of the estimator on 1200 digits took 8.6 s with OpenBLAS on two threads on a
    loaded 2-core machine, 0.4 s on one (inside ``GridSearchCV`` workers, say).  scikit-learn's
    KMeans does the same.

    Cost.  threadpoolctl finds the libraries once, on first use (``import cytorch`` has loaded
    both NumPy's and, through the kernels, SciPy's BLAS by then); entering and leaving then
    costs two ctypes calls per library, where ``threadpool_limits`` takes ~10 us per call, too
    much for the small LeNet layers.  Nested use is free: a context opened inside another one of
    the same thread only counts (``fit`` holds one around its loop, and every Dense call of a
    step enters one).  Without threadpoolctl (it
    comes with scikit-learn) BLAS keeps its setting.
    """

    _libraries = None
    _open = threading.local()   # .depth: contexts open in this thread

    def __enter__(self):
        depth = getattr(self._open, "depth", 0)
        # only a thread's outermost context reads and sets the libraries (and gives the
        # setting back: OpenBLAS ignores a raise of its thread count from another thread)
        self._saved = self._limit() if depth == 0 else []
        self._open.depth = depth + 1
        return self

    def __exit__(self, *exc):
        self._open.depth -= 1
        for lib, n in self._saved:
            lib.set_num_threads(n)
        return False

    @staticmethod
    def _limit():
        """Set every BLAS library to one thread; ``[(library, its previous count)]``."""
        if single_threaded_blas._libraries is None:
            try:
                from threadpoolctl import ThreadpoolController
                found = ThreadpoolController().select(user_api="blas").lib_controllers
            except ImportError:
                found = []
            single_threaded_blas._libraries = found
        saved = []
        for lib in single_threaded_blas._libraries:
            n = lib.get_num_threads()
            if n is not None and n != 1:
                lib.set_num_threads(1)
                saved.append((lib, n))
        return saved
