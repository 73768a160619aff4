"""Callbacks: code that ``fit`` runs at fixed points of training, Keras-style.

``fit`` calls, in this order::

    on_train_begin(logs)
      on_epoch_begin(epoch, logs)
        on_batch_end(batch, logs)        # logs: running "loss" and metrics of the epoch
      on_epoch_end(epoch, logs)          # logs: epoch "loss", metrics, "val_*"
    on_train_end(logs)

Every callback sees the model as ``self.model``; setting ``model.stop_training = True`` ends
training after the current epoch.  ``History`` and the progress bar are added by ``fit``.
"""
import collections
import csv
import inspect
import math
import numbers
import os
import sys
import time

from ._checks import check_int
from ._progress import format_logs, format_step, format_time, progress_line

__all__ = ["Callback", "History", "ProgressBar", "EarlyStopping", "ModelCheckpoint",
           "ReduceLROnPlateau", "LearningRateScheduler", "CSVLogger", "TerminateOnNaN",
           "LambdaCallback"]


class Callback:
    """Base class: override the hooks you need."""

    model = None

    def set_model(self, model):
        self.model = model

    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_batch_begin(self, batch, logs=None): pass
    def on_batch_end(self, batch, logs=None): pass


class History(Callback):
    """Per-epoch logs: ``history.history["loss"]``, ``["accuracy"]``, ``["val_loss"]``, ...
    and ``history.epoch``, the epoch numbers run."""

    def __init__(self):
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    def plot(self, **kwargs):
        """Learning curves through ``cytorch.viz.plot_history`` (needs matplotlib)."""
        from .viz import plot_history
        return plot_history(self, **kwargs)

    def __repr__(self):
        keys = ", ".join(self.history)
        return f"<History: {len(self.epoch)} epochs, {keys}>"


class ProgressBar(Callback):
    """Keras's progress line, one per epoch, on ``stream`` (stderr by default).

    ``verbose=1``: the line updates while the epoch runs (at most ``max_rate`` times a second)
    and ends as::

        Epoch  3/10 45/45 [==============================] - 0.4s 9ms/step - loss: 0.2153 - accuracy: 0.9385

    ``verbose=2``: a short line when each epoch ends, without the bar.

    In a terminal the line is redrawn in place with ``\\r``; in a Jupyter notebook (when
    ``stream`` is not given) it is one output per epoch, updated in place; in a file or a pipe
    (``cytorch train 2> log``) only the finished line is written, so a log holds one line per
    epoch.  Why each is drawn as it is: ``cytorch._progress``.
    """

    params = {}  # {"epochs": ..., "steps": ...}, set by fit

    def __init__(self, verbose=1, stream=None, width=30, max_rate=10.0):
        self.verbose = verbose
        self.stream = stream
        self.width = width
        self.min_interval = 1.0 / max_rate

    def on_train_begin(self, logs=None):
        self.epochs = self.params.get("epochs", 1)
        self.steps = self.params.get("steps", 0)
        self.line = progress_line(self.stream, self.verbose)

    def on_epoch_begin(self, epoch, logs=None):
        self.start = self.last_draw = time.perf_counter()
        self.prefix = f"Epoch {epoch + 1:{len(str(self.epochs))}d}/{self.epochs}"

    def on_batch_end(self, batch, logs=None):
        if self.verbose != 1:
            return
        now = time.perf_counter()
        # the last step is drawn by on_epoch_end, with the validation results
        if batch + 1 >= self.steps or now - self.last_draw < self.min_interval:
            return
        self.last_draw = now
        self.line.update(self._text(batch + 1, now - self.start, logs or {}, final=False))

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.perf_counter() - self.start
        if self.verbose == 1:
            self.line.end(self._text(self.steps, elapsed, logs or {}, final=True))
        elif self.verbose == 2:
            extra = format_logs(logs or {})
            self.line.end(f"{self.prefix} - {format_time(elapsed)} "
                          f"{format_step(elapsed / max(self.steps, 1))}"
                          + (f" - {extra}" if extra else ""))

    def _text(self, step, elapsed, logs, final):
        n = max(self.steps, 1)
        done = int(self.width * step / n)
        bar = "=" * done
        if step < n:
            bar = bar[:-1] + ">" if done else ">"
        bar = bar.ljust(self.width, ".")
        if final:
            timing = f"{format_time(elapsed)} {format_step(elapsed / max(step, 1))}"
        else:
            timing = f"ETA: {format_time(elapsed / step * (n - step))}"
        text = f"{self.prefix} {step:{len(str(n))}d}/{n} [{bar}] - {timing}"
        extra = format_logs(logs)
        return f"{text} - {extra}" if extra else text


class _Monitor(Callback):
    """Shared by the callbacks that watch a logged quantity and compare it with its best."""

    def __init__(self, monitor, mode, min_delta):
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a str such as 'val_loss', got "
                            f"{type(monitor).__name__}: {monitor!r}")
        if not _is_real(min_delta):
            raise ValueError(f"min_delta must be a float (not NaN or inf), got {min_delta!r}")
        if not isinstance(mode, str) or mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        self.monitor = monitor
        if mode == "auto":
            mode = "max" if any(word in monitor for word in ("acc", "auc")) else "min"
        self.mode = mode
        self.min_delta = abs(min_delta)
        self.best = math.inf if mode == "min" else -math.inf

    def improved(self, value):
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def current(self, logs):
        value = (logs or {}).get(self.monitor)
        if value is None:
            import warnings
            warnings.warn(f"{type(self).__name__} monitors {self.monitor!r}, which is not in the "
                          f"logs {sorted(logs or {})}; pass validation data for val_* keys",
                          stacklevel=3)
        return value


class EarlyStopping(_Monitor):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience``
    epochs; with ``restore_best_weights``, stopping puts the weights of the best epoch back
    (as in Keras 2: a run that ends without stopping keeps its last weights)."""

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, mode="auto",
                 restore_best_weights=False):
        super().__init__(monitor, mode, min_delta)
        self.patience = check_int(patience, "patience", 0)
        self.restore_best_weights = bool(restore_best_weights)

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = None
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = None
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        value = self.current(logs)
        if value is None:
            return
        if self.improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait > self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None \
                and self.stopped_epoch is not None:
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(_Monitor):
    """Save the model (``model.save``) after every epoch, or only when ``monitor`` improves.

    ``filepath`` may contain format fields filled from the epoch and logs, e.g.
    ``"ckpt-{epoch:02d}-{val_loss:.3f}.npz"`` (``epoch`` counts from 1)."""

    def __init__(self, filepath, monitor="val_loss", save_best_only=False, mode="auto",
                 verbose=0):
        super().__init__(monitor, mode, 0.0)
        path = os.fspath(filepath) if isinstance(filepath, (str, os.PathLike)) else None
        if not isinstance(path, str):
            raise TypeError(f"filepath must be a str or path-like such as 'model.npz', got "
                            f"{type(filepath).__name__}: {filepath!r}")
        self.filepath = path
        self.save_best_only = bool(save_best_only)
        self.verbose = verbose

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            value = self.current(logs)
            if value is None or not self.improved(value):
                return
            if self.verbose:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to "
                      f"{value:.5f}, saving model to {path}", file=sys.stderr)
            self.best = value
        self.model.save(path)


class ReduceLROnPlateau(_Monitor):
    """Multiply the optimizer's ``learning_rate`` by ``factor`` after ``patience`` epochs
    without improvement of ``monitor``, then wait ``cooldown`` epochs; never below ``min_lr``."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0, verbose=0):
        if not _is_real(factor) or not 0 < factor < 1:
            raise ValueError(f"factor must be in (0, 1), got {factor!r}")
        super().__init__(monitor, mode, min_delta)
        self.factor = float(factor)
        self.patience = check_int(patience, "patience", 0)
        self.cooldown = check_int(cooldown, "cooldown", 0)
        if not _is_real(min_lr) or min_lr < 0:
            raise ValueError(f"min_lr must be a float >= 0, got {min_lr!r}")
        self.min_lr = float(min_lr)
        self.verbose = verbose

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.cooldown_left = 0

    def on_epoch_end(self, epoch, logs=None):
        value = self.current(logs)
        if value is None:
            return
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        if self.improved(value):
            self.best, self.wait = value, 0
            return
        if self.cooldown_left > 0:
            return
        self.wait += 1
        if self.wait >= self.patience:
            optimizer = self.model.optimizer
            old = float(optimizer.learning_rate)
            new = max(old * self.factor, self.min_lr)
            if new < old:
                optimizer.learning_rate = new
                if self.verbose:
                    print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate from "
                          f"{old:.3g} to {new:.3g}", file=sys.stderr)
            self.cooldown_left = self.cooldown
            self.wait = 0


class LearningRateScheduler(Callback):
    """Set the optimizer's ``learning_rate`` at the start of every epoch to
    ``schedule(epoch, lr)`` (``epoch`` counts from 0, ``lr`` is the current rate), Keras's
    signature; a ``schedule(epoch)`` of one argument works too.  The rate used is logged as
    ``logs["learning_rate"]`` at the end of the epoch.

    >>> def schedule(epoch, lr):           # keep the rate for 10 epochs, then decay it
    ...     return lr if epoch < 10 else lr * math.exp(-0.1)
    >>> callback = LearningRateScheduler(schedule)
    """

    def __init__(self, schedule, verbose=0):
        if not callable(schedule):
            raise TypeError(f"schedule must be a function of (epoch, lr) returning the "
                            f"learning rate, got {type(schedule).__name__}: {schedule!r}")
        self.schedule = schedule
        self.verbose = verbose
        self._takes_lr = _accepts_two_arguments(schedule)

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        lr = float(optimizer.learning_rate)
        new = self.schedule(epoch, lr) if self._takes_lr else self.schedule(epoch)
        if not _is_real(new) or new <= 0:
            raise ValueError(f"LearningRateScheduler: schedule({epoch}"
                             f"{', ' + repr(lr) if self._takes_lr else ''}) must return a "
                             f"positive float learning rate, got {new!r}")
        optimizer.learning_rate = float(new)
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to "
                  f"{float(new)}.", file=sys.stderr)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


def _accepts_two_arguments(fn):
    """Whether ``fn(epoch, lr)`` is a valid call (else Keras's old ``fn(epoch)``)."""
    try:
        inspect.signature(fn).bind(0, 0.1)
        return True
    except TypeError:
        return False
    except ValueError:   # no signature (some builtins): assume Keras's current form
        return True


class CSVLogger(Callback):
    """Write each epoch's logs as a row of a CSV file, Keras's format::

        epoch,accuracy,loss,val_accuracy,val_loss
        0,0.8125,0.5231...,0.84,0.4712...

    Columns are ``epoch`` (from 0) and the keys of the first epoch's logs, sorted; without
    validation data Keras still adds ``val_`` columns, filled with ``NA``.  ``append=True``
    continues an existing file (its header is kept).
    """

    def __init__(self, filename, separator=",", append=False):
        path = os.fspath(filename) if isinstance(filename, (str, os.PathLike)) else None
        if not isinstance(path, str):
            raise TypeError(f"filename must be a str or path-like such as 'log.csv', got "
                            f"{type(filename).__name__}: {filename!r}")
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"separator must be one character such as ',', got "
                             f"{separator!r}")
        self.filename = path
        self.sep = separator
        self.append = bool(append)
        self.keys = None
        self.csv_file = None
        self._writer = None

    def on_train_begin(self, logs=None):
        header = True
        if self.append and os.path.exists(self.filename):
            with open(self.filename, newline="") as f:
                header = not f.readline()
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.csv_file = open(self.filename, "a" if self.append else "w", newline="")
        self._header = header
        self.keys = None
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if self.keys and not any(k.startswith("val_") for k in self.keys):
                self.keys += [f"val_{k}" for k in self.keys]
        if self._writer is None:
            self._writer = csv.writer(self.csv_file, delimiter=self.sep)
            if self._header:
                self._writer.writerow(["epoch"] + self.keys)
        row = collections.OrderedDict(epoch=epoch)
        row.update((k, logs.get(k, "NA")) for k in self.keys)
        self._writer.writerow(list(row.values()))
        self.csv_file.flush()

    def on_train_end(self, logs=None):
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self._writer = None


class TerminateOnNaN(Callback):
    """Stop training as soon as the loss is NaN or infinite: ``fit`` ends after that batch
    (the epoch's end-of-epoch callbacks still run), or, with ``raise_error=True``, raises
    ``RuntimeError`` at once, as in Keras."""

    def __init__(self, raise_error=False):
        self.raise_error = bool(raise_error)

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            if self.raise_error:
                raise RuntimeError(f"NaN or Inf loss encountered at batch {batch}. Loss value: "
                                   f"{loss}. Terminating training immediately.")
            print(f"Batch {batch}: Invalid loss, terminating training", file=sys.stderr)
            self.model.stop_training = True


class LambdaCallback(Callback):
    """A callback from plain functions, e.g.
    ``LambdaCallback(on_epoch_end=lambda epoch, logs: print(epoch, logs["loss"]))``."""

    def __init__(self, on_train_begin=None, on_train_end=None, on_epoch_begin=None,
                 on_epoch_end=None, on_batch_begin=None, on_batch_end=None):
        for hook, fn in (("on_train_begin", on_train_begin), ("on_train_end", on_train_end),
                         ("on_epoch_begin", on_epoch_begin), ("on_epoch_end", on_epoch_end),
                         ("on_batch_begin", on_batch_begin), ("on_batch_end", on_batch_end)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{hook} must be callable (a function of {_HOOK_ARGS[hook]}), "
                                f"got {type(fn).__name__}: {fn!r}")
            if fn is not None:
                setattr(self, hook, fn)


_HOOK_ARGS = {"on_train_begin": "logs", "on_train_end": "logs",
              "on_epoch_begin": "epoch, logs", "on_epoch_end": "epoch, logs",
              "on_batch_begin": "batch, logs", "on_batch_end": "batch, logs"}


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) \
        and math.isfinite(value)


