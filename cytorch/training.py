"""Training: ``compile``, ``fit``, ``evaluate``, ``predict`` and Keras's ``train_on_batch``,
``test_on_batch`` and ``predict_on_batch``.

``Model`` and ``Sequential`` inherit these methods.  One training step is::

    contexts = model._contexts(logits=fused, training=True)   # the modes of this kind of call
    out = model._forward(x_batch, training=True, contexts=contexts)  # logits when fused
    loss, dout = loss._gradient(y_batch, out, sample_weight, fused)
    model._backward(dout, contexts)                         # fills every layer's grads
    optimizer.apply_gradients(model.layers)                 # in place

Input is validated once per call, not once per batch: rank, sample shape (channels-last),
length of ``y``, and NaN/inf (scanned in chunks, without converting the whole array).  The
layers then run with ``check_finite=False`` in their ``CallContext`` (no per-kernel NaN scan),
and the loop calls ``loss._gradient``, the public ``loss.gradient`` without its checks of
y_pred, y_true and the weights.  Batches are gathered and converted to the model's dtype one at
a time, so ``uint8`` images are never expanded to float all at once and ``predict`` holds one
batch of activations, whatever the size of ``x``.

Cross-entropy with a softmax (or binary cross-entropy with a sigmoid) output is *fused*: while
training and evaluating, the output layer is called with ``return_logits`` in its context and
the loss differentiates ``log softmax`` directly, giving ``dL/dz = (p - y) / N``.  ``predict``
returns probabilities, wherever it is called from: modes are arguments of a call, never
attributes of the layers, so a ``predict`` or ``evaluate`` inside a callback gives what it gives
after ``fit``.

Training steps, ``evaluate`` and ``predict`` apply the model's graph passes
(``cytorch.graph_passes``), such as ``relu_after_pooling``, which change how a run computes and
none of its numbers.

Ctrl-C during ``fit`` finishes the current batch, prints a note and returns the ``History``:
the model keeps the weights of the last completed step and stays usable.
"""
import contextlib
import math
import numbers
import signal
import sys
import threading

import numpy as np

from . import activations
from . import callbacks as cbks
from . import losses as losses_mod
from . import metrics as metrics_mod
from . import optimizers as optimizers_mod
from ._checks import as_array, check_int, check_sample_weight, require_finite
from ._config import get_num_threads, kernel_threads, single_threaded_blas
from .errors import ShapeError
from .layers.base import Workspace
from .layers.context import honours
from .random import check_seed, make_rng

__all__ = ["TrainingMixin"]



class TrainingMixin:
    """The training API shared by ``Model`` and ``Sequential`` (see the module docstring)."""

    def _init_training(self):
        self.optimizer = None
        self.loss = None
        self.metrics = []
        self.weighted_metrics = []
        self._metric_specs = []
        self.stop_training = False
        self._shuffle_rng = None

    # -- configuration ------------------------------------------------------------------------
    def compile(self, optimizer="adam", loss="sparse_categorical_crossentropy", metrics=None,
                weighted_metrics=None):
        """Choose the optimizer (a name or an instance), the loss and the metrics.

        ``metrics`` and ``weighted_metrics`` are lists of Keras metric names (``"accuracy"``,
        ``"acc"``, ``"sparse_categorical_accuracy"``, ``"mse"``, ... see ``cytorch.metrics``);
        a single name is taken as a list of one.  As in Keras, ``metrics`` ignore
        ``sample_weight`` and ``class_weight``; ``weighted_metrics`` are weighted by them."""
        specs = metrics_mod.compile_specs(metrics, weighted_metrics)  # checked before any change
        opt = optimizers_mod.get(optimizer)
        self.optimizer = opt() if isinstance(opt, type) else opt
        self.loss = losses_mod.get(loss)
        losses_mod.check_output_activation(self.loss, self.layers[-1] if self.layers else None)
        self.metrics = [name for _, name, weighted in specs if not weighted]
        self.weighted_metrics = [name for _, name, weighted in specs if weighted]
        self._metric_specs = specs
        return self

    def _require_compiled(self, what):
        if self.loss is None:
            raise RuntimeError(f"call model.compile(optimizer=..., loss=...) before {what}()")

    @property
    def _output_layer(self):
        return self._outputs[0].layer

    def _fused(self):
        """True when the output layer can hand the loss its logits: the loss fuses the output
        layer's activation and the layer honours ``return_logits``."""
        layer = self._output_layer
        wanted = getattr(self.loss, "fused_activation", None)
        return wanted is not None and getattr(layer, "activation", None) == wanted \
            and honours(layer, "return_logits")

    @contextlib.contextmanager
    def _running(self):
        """While the model runs: NumPy's BLAS on one thread; afterwards the layers drop the
        last batch's cached activations and the buffers they reused between training steps
        (nothing the caller receives may share memory with a buffer written again).  (The
        modes of the run travel in the contexts.)"""
        with single_threaded_blas():
            try:
                yield
            finally:
                for layer in self.layers:
                    layer._cache = None
                    if getattr(layer, "_workspace", None) is not None:
                        layer._workspace = None

    # -- validation ---------------------------------------------------------------------------
    def _check_x(self, x, name="x"):
        """The model input as a list of arrays (one per input), validated, not converted."""
        n_in = len(self._inputs) if getattr(self, "built", True) else 1
        xs = list(x) if isinstance(x, (list, tuple)) and n_in > 1 else [x]
        if len(xs) != n_in:
            raise ValueError(f"{name} must be a list of {n_in} arrays (one per model input), "
                             f"got {len(xs)}")
        xs = [as_array(a, name if n_in == 1 else f"{name}[{k}]") for k, a in enumerate(xs)]
        self._ensure_built(xs[0])
        shapes = [n.shape for n in self._inputs]
        n = None
        for k, (a, shape) in enumerate(zip(xs, shapes)):
            label = name if n_in == 1 else f"{name}[{k}]"
            if a.dtype.kind not in "biuf":
                raise TypeError(f"{label} must hold real numbers, got dtype {a.dtype}")
            _check_sample_shape(a, shape, label)
            if len(a) == 0:
                raise ShapeError(f"{label} must not be empty, got shape {a.shape}")
            if n is not None and len(a) != n:
                raise ValueError(f"{label} has {len(a)} samples, {name}[0] has {n}")
            n = len(a)
            if a.dtype.kind == "f":
                require_finite(a, label)
        return xs

    def _check_y(self, y, n, name="y", x_name="x"):
        y = as_array(y, name)
        if y.ndim == 0 or len(y) != n:
            raise ValueError(f"{x_name} has {n} samples but {name} has "
                             f"{'a scalar' if y.ndim == 0 else len(y)}: they must match")
        if y.dtype.kind == "f":
            require_finite(y, name)
        probe = np.broadcast_to(np.zeros((), self.dtype), (n,) + tuple(self.output_shape))
        try:
            return self.loss.check_targets(y, probe)
        except (ValueError, TypeError) as exc:
            msg = str(exc)
            if name != "y":
                msg = msg.replace("y ", f"{name} ", 1)
            raise type(exc)(msg) from None


    def _take(self, xs, idx, workspace=None):
        """Batch ``idx`` (a slice or indices) of every input, contiguous, in the model dtype.

        With a ``Workspace`` (the training loop's, predict's), a batch that needs a copy is
        gathered or converted into the buffer the previous batch of its size used: a view of a
        slice of a contiguous input in the model dtype needs no copy at all."""
        dtype = self.dtype
        if workspace is None:
            return [np.ascontiguousarray(a[idx], dtype=dtype) for a in xs]
        batch = []
        for k, a in enumerate(xs):
            if isinstance(idx, slice):
                view = a[idx]
                if view.dtype == dtype and view.flags.c_contiguous:
                    batch.append(view)
                    continue
                buf = workspace.get(f"x{k}", view.shape, dtype)
                buf[...] = view    # uint8 images, float64 input: converted into the buffer
            elif a.dtype == dtype:
                buf = workspace.get(f"x{k}", (len(idx),) + a.shape[1:], dtype)
                # mode="clip": with the default "raise", np.take gathers into a temporary
                np.take(a, idx, axis=0, out=buf, mode="clip")
            else:   # uint8 images, float64 input: gathered, then converted in place
                buf = workspace.get(f"x{k}", (len(idx),) + a.shape[1:], dtype)
                buf[...] = a[idx]
            batch.append(buf)
        return batch

    # -- one step -----------------------------------------------------------------------------
    def _step(self, xb, yb, wb, fused, contexts):
        """One gradient step on a checked batch; ``contexts`` are the model's training-step
        contexts (``_contexts(logits=fused, training=True)``).  Returns (loss, output)."""
        out = self._forward(xb, training=True, contexts=contexts)
        loss, dout = self.loss._gradient(yb, out, wb, fused)  # checked once, by the caller
        self._backward(dout, contexts)
        self.optimizer.apply_gradients(self.layers)
        return loss, out

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None,
                       return_dict=False):
        """One gradient step on the batch ``(x, y)``, as Keras 3's ``train_on_batch``.

        The whole of ``x`` is one batch.  Returns what ``evaluate`` returns, measured on this
        batch in the forward pass that computed the step's gradient (so with the weights from
        *before* the step): the loss -- a float -- when the model was compiled without
        metrics, else ``[loss, *metrics]`` (``metrics`` first, then ``weighted_metrics``), or
        ``{"loss": ..., name: ...}`` with ``return_dict=True``.  As in Keras 3 the metrics
        start afresh at every call: nothing carries over from ``fit``, ``evaluate`` or an
        earlier call.

        Parameters
        ----------
        x : array (N, H, W, C) (or a list of arrays for several inputs)
        y : labels (N,) for the sparse cross-entropy, or targets shaped like the output;
            required (Keras's ``None`` is for losses without targets, which cytorch has not).
        sample_weight : (N,) weights; the loss is ``sum(w_i l_i) / N``.
        class_weight : dict ``{class index: weight}``, as in ``fit`` (classes not listed
            weigh 1); not with ``sample_weight``.  A key must be a class of the model's
            output: ``0 .. K - 1`` for K output units, 0 and 1 for a single one.
        return_dict : bool

        Examples
        --------
        >>> model.compile(optimizer="sgd", metrics=["accuracy"])    # doctest: +SKIP
        >>> loss, accuracy = model.train_on_batch(x[:32], y[:32])     # doctest: +SKIP
        """
        self._require_compiled("train_on_batch")
        xs, y, w = self._batch_data(x, y, sample_weight, class_weight)
        fused = self._fused()
        metrics = self._build_metrics(y)
        with self._running():
            loss, out = self._step(self._take(xs, slice(None)), y, w, fused,
                                   self._contexts(logits=fused, training=True))
            logs = {"loss": float(loss), **self._update_metrics(metrics, y, out, w, fused)}
        return _keras_result(logs, return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        """The loss and metrics of the batch ``(x, y)`` in inference mode, as Keras 3's
        ``test_on_batch``: ``evaluate(x, y, batch_size=len(x), sample_weight=sample_weight,
        return_dict=return_dict)`` -- a float without metrics, else ``[loss, *metrics]``, or
        a dict with ``return_dict=True``.  Nothing is trained."""
        self._require_compiled("test_on_batch")
        xs, y, w = self._batch_data(x, y, sample_weight, None)
        fused = self._fused()
        with self._running():
            logs = self._evaluate(xs, y, w, len(y), fused)
        return _keras_result(logs, return_dict)

    def predict_on_batch(self, x):
        """Model outputs for ``x`` computed as one batch, as Keras 3's ``predict_on_batch``:
        ``predict(x, batch_size=len(x))``, a NumPy array."""
        xs = self._check_x(x)
        with self._running():
            batch = self._take(xs, slice(None))   # x itself when already contiguous float32
            out = self._forward(batch, training=False, contexts=self._contexts(inference=True))
        # (a model of reshapes only can return a view of x: the caller gets its own array)
        return out.copy() if any(np.shares_memory(out, a) for a in batch) else out

    def _batch_data(self, x, y, sample_weight, class_weight):
        """The checked ``(xs, y, w)`` of a ``*_on_batch`` call; class weights become sample
        weights as in ``fit``."""
        if y is None:
            raise ValueError("y is required: the targets of the batch x (cytorch's losses all "
                             "compare the output with targets)")
        xs, y, w = self._checked_samples(x, y, sample_weight, class_weight)
        if class_weight is not None:
            w = _class_weights_to_sample_weights(class_weight, y, self._n_classes())
        return xs, y, w

    def _checked_samples(self, x, y, sample_weight, class_weight):
        """``(xs, y, w)``: the inputs, targets and sample weights checked against each other
        (class weights are the caller's: ``fit`` applies them to its training split only)."""
        if class_weight is not None and sample_weight is not None:
            raise ValueError("class_weight and sample_weight cannot be given together (as in "
                             "Keras): multiply the class weights into sample_weight instead")
        xs = self._check_x(x)
        n = len(xs[0])
        return xs, self._check_y(y, n), check_sample_weight(sample_weight, n)

    def _n_classes(self):
        """The classes the output can name: its units, or 2 for a single unit (binary)."""
        units = int(self.output_shape[-1]) if len(self.output_shape) else 1
        return units if units > 1 else 2

    # -- fit ----------------------------------------------------------------------------------
    def fit(self, x, y, batch_size=32, epochs=1, verbose=1, callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, seed=None):
        """Train for ``epochs`` passes over ``(x, y)`` in mini-batches; returns a ``History``.

        The arguments are Keras's, in Keras's order (``seed`` is cytorch's own).

        Parameters
        ----------
        x : array (N, H, W, C) (or a list of arrays for several inputs); uint8, int and float64
            input is converted batch by batch to the model dtype.
        y : labels (N,) for the sparse cross-entropy, or targets shaped like the output.
        batch_size, epochs : int
            ``epochs`` is the index of the last epoch: training runs epochs
            ``initial_epoch .. epochs - 1``.
        verbose : 0 silent, 1 a progress line per epoch that updates while the epoch runs
            (stderr; in a Jupyter notebook an output updated in place; in a file or pipe only
            the finished line), 2 a short line when each epoch ends.
        callbacks : list of ``cytorch.callbacks.Callback``
        validation_split : float in [0, 1)
            As in Keras, training uses the first ``floor(N * (1 - validation_split))`` samples
            (before shuffling) and the rest is evaluated after every epoch (N=10, 0.25: 7 and 3).
        validation_data : ``(x_val, y_val)`` or ``(x_val, y_val, w_val)``; overrides the split.
        shuffle : bool, reshuffle the training samples every epoch.
        class_weight : dict, optional
            ``{class index: weight}``: each training sample's loss is weighted by its class's
            weight (classes not listed: 1), as a ``sample_weight`` would; not with
            ``sample_weight`` (as in Keras), not applied to the validation data.  A key must
            be a class of the output (``0 .. K - 1`` for K units, 0 and 1 for a single one):
            Keras ignores other keys, cytorch names them.
        sample_weight : (N,) weights; the loss is ``sum(w_i l_i) / batch size``.  They weigh
            the loss and ``weighted_metrics``, not ``metrics``.
        initial_epoch : int, the epoch to start from (to resume an earlier ``fit``).
        seed : int, optional; the shuffling order (default: the model's own generator,
            seeded from ``Model(seed=)`` when given).
        """
        self._require_compiled("fit")
        batch_size = check_int(batch_size, "batch_size", 1)
        epochs = check_int(epochs, "epochs", 0)
        initial_epoch = check_int(initial_epoch, "initial_epoch", 0)
        seed = check_seed(seed, "seed")
        callbacks = _check_callbacks(callbacks)
        train, val = self._fit_data(x, y, sample_weight, class_weight, validation_split,
                                    validation_data)
        rng = make_rng(seed) if seed is not None else self._model_rng()
        return self._fit_loop(train, val, batch_size, range(initial_epoch, epochs), epochs,
                              verbose, callbacks, rng if shuffle else None)

    def _fit_data(self, x, y, sample_weight, class_weight, validation_split, validation_data):
        """The checked training and validation data, each ``(xs, y, w)`` (val may be None)."""
        xs, y, w = self._checked_samples(x, y, sample_weight, class_weight)
        train, val = self._split_validation(xs, y, w, validation_split, validation_data)
        if class_weight is not None:   # the training samples only, as in Keras
            train = (train[0], train[1], _class_weights_to_sample_weights(
                class_weight, train[1], self._n_classes()))
        return train, val

    def _split_validation(self, xs, y, w, validation_split, validation_data):
        """``(train, val)`` from checked data: all of it and ``validation_data`` (checked),
        or the split of it that ``validation_split`` asks for, or all of it and None."""
        n = len(y)
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ValueError("validation_data must be a tuple (x_val, y_val) or "
                                 "(x_val, y_val, sample_weight_val)")
            x_val, y_val, w_val = tuple(validation_data) + (None,) * (3 - len(validation_data))
            x_val = self._check_x(x_val, "x_val")
            n_val = len(x_val[0])
            return (xs, y, w), (x_val, self._check_y(y_val, n_val, "y_val", "x_val"),
                                check_sample_weight(w_val, n_val, "sample_weight_val"))
        if validation_split is not None and not (
                isinstance(validation_split, numbers.Real)
                and not isinstance(validation_split, bool) and 0 <= validation_split < 1):
            raise ValueError(f"validation_split must be in [0, 1), got {validation_split!r}")
        if not validation_split:
            return (xs, y, w), None
        n_train = math.floor(n * (1.0 - validation_split))   # Keras's rule, to the sample
        if n_train in (0, n):
            raise ValueError(f"validation_split={validation_split} of {n} samples leaves "
                             f"floor({n} * (1 - {validation_split})) = {n_train} for training "
                             f"and {n - n_train} for validation; both need at least 1")
        return (([a[:n_train] for a in xs], y[:n_train], None if w is None else w[:n_train]),
                ([a[n_train:] for a in xs], y[n_train:], None if w is None else w[n_train:]))

    def _fit_loop(self, train, val, batch_size, epoch_range, epochs, verbose, callbacks, rng):
        """The epochs ``epoch_range`` of ``fit`` on checked data; ``rng`` shuffles (None: in
        order).  Each epoch's logs: the running mean of the batch losses (weighted by batch
        size) and metrics, then ``val_*`` from an evaluation of ``val``."""
        xs, y, w = train
        n = len(y)
        steps = -(-n // batch_size)
        history = cbks.History()
        # History and the bar come last, so they see what other callbacks add to the logs
        callback_list = callbacks + [history]
        if verbose:
            callback_list.append(cbks.ProgressBar(verbose=verbose))
        for cb in callback_list:
            cb.set_model(self)
            cb.params = {"epochs": epochs, "steps": steps, "samples": n,
                         "batch_size": batch_size, "verbose": verbose}
        fused = self._fused()
        contexts = self._contexts(logits=fused, training=True)
        metrics = self._build_metrics(y)
        batches = Workspace()   # the shuffled batches' buffers (the layers keep their own)
        self.stop_training = False
        with _Interrupt() as interrupted, self._running():
            try:
                _call(callback_list, "on_train_begin", {})
                for epoch in epoch_range:
                    interrupted.epoch = epoch
                    _call(callback_list, "on_epoch_begin", epoch, {})
                    order = rng.permutation(n) if rng is not None else None
                    loss_sum = 0.0
                    logs = {}
                    for metric in metrics:
                        metric.reset()
                    for batch in range(steps):
                        interrupted.batch = batch
                        _call(callback_list, "on_batch_begin", batch, {})
                        start, stop = batch * batch_size, min((batch + 1) * batch_size, n)
                        idx = order[start:stop] if order is not None else slice(start, stop)
                        yb = y[idx]
                        wb = None if w is None else w[idx]
                        loss, out = self._step(self._take(xs, idx, batches), yb, wb, fused,
                                               contexts)
                        loss_sum += loss * (stop - start)
                        logs = {"loss": loss_sum / stop,
                                **self._update_metrics(metrics, yb, out, wb, fused)}
                        _call(callback_list, "on_batch_end", batch, logs)
                        if interrupted.flag:
                            raise KeyboardInterrupt
                        if self.stop_training:   # as Keras: e.g. TerminateOnNaN, mid-epoch
                            break
                    if val is not None:
                        logs.update({f"val_{k}": v for k, v in self._evaluate(
                            *val, 256, fused).items()})
                    _call(callback_list, "on_epoch_end", epoch, logs)
                    if self.stop_training:
                        break
            except KeyboardInterrupt:
                sys.stderr.write(f"\nTraining interrupted during epoch {interrupted.epoch + 1}, "
                                 f"after batch {interrupted.batch + 1}: the model keeps the "
                                 f"weights of the last completed step.\n")
                sys.stderr.flush()
            _call(callback_list, "on_train_end", {})
        return history

    def _build_metrics(self, y):
        """Fresh ``Metric`` objects for the compiled metrics, for targets like ``y``."""
        return metrics_mod.build(self._metric_specs, np.shape(y),
                                 (len(y),) + tuple(self.output_shape))

    def _update_metrics(self, metrics, y, out, w, fused):
        """Add a batch to every metric; returns their results by log name.  Metrics see
        probabilities: a fused output's logits go through its activation first."""
        if metrics and fused:
            out = activations.get(self._output_layer.activation).forward(out)
        for metric in metrics:
            metric.update(y, out, w)
        return {metric.name: metric.result() for metric in metrics}

    def _model_rng(self):
        if self._shuffle_rng is None:
            seed = getattr(self, "seed", None)
            self._shuffle_rng = make_rng(None) if seed is None else np.random.default_rng(
                np.random.SeedSequence(seed, spawn_key=(1 << 30,)))
        return self._shuffle_rng

    # -- evaluate and predict -----------------------------------------------------------------
    def evaluate(self, x, y, batch_size=256, verbose=0, sample_weight=None,
                 return_dict=False):
        """The loss on ``(x, y)`` -- a float -- or, as in Keras, ``[loss, *metrics]`` when the
        model was compiled with metrics (``metrics`` first, then ``weighted_metrics``), or
        ``{"loss": ..., name: ...}`` with ``return_dict=True``.

        ``sample_weight`` weighs the loss and the ``weighted_metrics``; the mean loss is
        ``sum(w_i l_i) / N`` over the whole of ``x``, whatever ``batch_size``."""
        self._require_compiled("evaluate")
        xs = self._check_x(x)
        n = len(xs[0])
        y = self._check_y(y, n)
        w = check_sample_weight(sample_weight, n)
        fused = self._fused()
        with self._running():
            logs = self._evaluate(xs, y, w, check_int(batch_size, "batch_size", 1), fused)
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()), file=sys.stderr)
        return _keras_result(logs, return_dict)

    def _evaluate(self, xs, y, w, batch_size, fused):
        """``{"loss": ..., metric log name: ...}`` on checked data."""
        n = len(xs[0])
        contexts = self._contexts(logits=fused, inference=True)
        metrics = self._build_metrics(y)
        loss_sum = 0.0
        logs = {}
        for start in range(0, n, batch_size):
            idx = slice(start, min(start + batch_size, n))
            out = self._forward(self._take(xs, idx), training=False, contexts=contexts)
            wb = None if w is None else w[idx]
            loss_sum += self.loss._gradient(y[idx], out, wb, fused)[0] * len(out)
            logs = self._update_metrics(metrics, y[idx], out, wb, fused)
        return {"loss": loss_sum / n, **logs}

    def predict(self, x, batch_size=256, verbose=0):
        """Model outputs for ``x`` (probabilities for a softmax output), computed
        ``batch_size`` samples at a time: memory holds one batch of activations per thread
        (and one more when the last batch is smaller).

        It runs the model's graph passes, the same numbers with less work: ``conv_max_pool``,
        which only inference can use, runs each ``Conv2D`` on the blocked path together with
        the 2x2 ``MaxPooling2D`` that alone reads it, as one call
        (``cytorch.functional.conv2d_max_pool2d_forward``) that pools every image's conv
        output while it is in cache instead of writing the whole map to memory and reading it
        back (keras_mnist: 7 % less CPU time on the AVX2 AMD EPYC, Zen 3).

        With several kernel threads (``cytorch.get_num_threads()``) and a model of built-in
        layers, whole batches run side by side, one per thread, each with one-thread kernels:
        every batch is computed exactly as on one thread, so the result is the same to the
        bit, and nothing waits at a kernel's end for the other thread or runs alone (the Dense
        layers' BLAS, Python).  keras_mnist, 20,000 uint8 images at batch 256 on the 2-vCPU
        AMD EPYC (Zen 5) while other jobs kept it at a load of 5: 545 ms this way, 926 ms with
        two threads inside each kernel (each waiting for the other at every kernel's end),
        453 ms on one thread.  A worker takes the next batch when it is free, so one that
        other processes slow takes fewer.  On the 2-vCPU AMD EPYC (Zen 3, AVX2) two workers
        each run for half of one thread's CPU time and wait a few ms in all for the GIL: they
        scale to 2x on a quiet machine (202 against 400 ms) and only as far as other
        processes leave them a CPU on a busy one."""
        xs = self._check_x(x)
        batch_size = check_int(batch_size, "batch_size", 1)
        n = len(xs[0])
        starts = range(0, n, batch_size)
        # each batch's output is copied into the result: the layers may write every batch
        # into the buffers of the one before (no allocation, no page faults: measured ~10 %
        # of keras_mnist's predict on the AMD EPYC (Zen 5), one thread)
        contexts = self._contexts(inference=True, reuse_buffers=True)
        workers = min(get_num_threads(), len(starts) - 1)
        if not all(type(layer).__module__.startswith("cytorch.layers.")
                   for layer in self.layers):
            workers = 1     # a plugin's layer may keep state in forward: one batch at a time
        with self._running():
            # the first batch tells the output's shape and dtype
            out = self._forward(self._take(xs, slice(0, min(batch_size, n))), training=False,
                                contexts=contexts)
            result = np.empty((n,) + out.shape[1:], dtype=out.dtype)
            result[:len(out)] = out
            if workers <= 1:
                self._predict_batches(xs, starts[1:], batch_size, contexts, result)
            else:
                stop, errors = threading.Event(), []
                pending, taking = iter(starts[1:]), threading.Lock()

                def next_starts():
                    # the batches go to whichever worker is free, one at a time: a worker
                    # that another process slows takes fewer (in fixed shares the other waited
                    # for it at the end: up to 96 ms of keras_mnist's 390 on the loaded Zen 3)
                    while True:
                        with taking:
                            start = next(pending, None)
                        if start is None:
                            return
                        yield start

                def work():
                    try:
                        with kernel_threads(1):
                            self._predict_batches(xs, next_starts(), batch_size, contexts,
                                                  result, stop)
                    except BaseException as exc:   # (Ctrl-C too) raised in this thread below
                        errors.append(exc)
                        stop.set()                 # the others stop after their batch
                helpers = [threading.Thread(target=work, daemon=True)
                           for _ in range(1, workers)]
                for thread in helpers:
                    thread.start()
                try:
                    work()
                finally:
                    for thread in helpers:
                        thread.join()
                if errors:
                    raise errors[0]
        return result

    def _predict_batches(self, xs, starts, batch_size, contexts, result, stop=None):
        """Write the outputs of the batches starting at ``starts`` into ``result``."""
        n = len(result)
        batches = Workspace()   # the converted input batches (uint8 images, say)
        for start in starts:
            if stop is not None and stop.is_set():
                return
            idx = slice(start, min(start + batch_size, n))
            result[idx] = self._forward(self._take(xs, idx, batches), training=False,
                                        contexts=contexts)




class _Interrupt:
    """While training, the first Ctrl-C only raises a flag the loop checks after each batch
    (a second one interrupts at once).  Only the main thread can install signal handlers;
    elsewhere a KeyboardInterrupt is simply caught by ``fit``.  ``epoch`` and ``batch`` are
    where the loop is, for the message."""

    def __init__(self):
        self.flag = False
        self.previous = None
        self.epoch = self.batch = 0

    def _handler(self, signum, frame):
        if self.flag:
            raise KeyboardInterrupt
        self.flag = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            try:
                self.previous = signal.signal(signal.SIGINT, self._handler)
            except ValueError:
                self.previous = None
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


def _call(callbacks, hook, *args):
    for cb in callbacks:
        getattr(cb, hook)(*args)


def _keras_result(logs, return_dict):
    """What Keras's ``evaluate`` and ``*_on_batch`` return for ``{"loss": ..., name: ...}``:
    the dict, or the loss alone when there is no metric, or the list of values."""
    if return_dict:
        return logs
    return list(logs.values()) if len(logs) > 1 else logs["loss"]


def _class_weights_to_sample_weights(class_weight, y, n_classes):
    """One weight per sample from ``{class index: weight}`` (Keras's rule): the label is ``y``
    itself, or the arg-max of a one-hot row, rounded to an int; unlisted classes weigh 1.
    Keys must be classes ``0 .. n_classes - 1`` of the model's output (Keras ignores others,
    which hides a typo or a key from another data set)."""
    if not isinstance(class_weight, dict):
        raise TypeError(f"class_weight must be a dict {{class index: weight}}, got "
                        f"{type(class_weight).__name__}: {class_weight!r}")
    for k, v in class_weight.items():
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"class_weight keys must be class indices (ints), got {k!r}")
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(v) \
                or v < 0:
            raise ValueError(f"class_weight[{k}] must be a finite number >= 0, got {v!r}")
    unknown = sorted(int(k) for k in class_weight if not 0 <= k < n_classes)
    if unknown:
        raise ValueError(f"class_weight has key(s) {', '.join(map(str, unknown))} for classes "
                         f"the model does not output: its output has {n_classes} classes, "
                         f"keys must be in [0, {n_classes - 1}]")
    labels = np.asarray(y)
    if labels.ndim > 1:
        labels = labels.argmax(axis=-1) if labels.shape[-1] != 1 else labels[..., 0]
    if labels.ndim != 1:
        raise ValueError(f"class_weight needs one class per sample, but the targets have "
                         f"shape {np.shape(y)}; pass sample_weight instead")
    labels = np.round(labels).astype(np.int64)
    classes, inverse = np.unique(labels, return_inverse=True)
    per_class = np.array([float(class_weight.get(int(c), 1.0)) for c in classes])
    return per_class[inverse.reshape(-1)]


def _check_callbacks(callbacks):
    """``callbacks`` as a new list of ``Callback`` instances."""
    if callbacks is None:
        return []
    if not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"callbacks must be a list of cytorch.callbacks.Callback instances, "
                        f"got {type(callbacks).__name__}")
    for k, cb in enumerate(callbacks):
        if not isinstance(cb, cbks.Callback):
            raise TypeError(f"callbacks[{k}] must be a cytorch.callbacks.Callback (subclass it "
                            f"or use LambdaCallback), got {type(cb).__name__}")
    return list(callbacks)


def _check_sample_shape(a, shape, name):
    want = (None,) + tuple(shape)
    if a.ndim != len(want):
        hint = ""
        if len(want) == 4 and a.ndim == 3 and tuple(a.shape[1:]) == tuple(shape[:2]):
            hint = "; add a channel axis with x[..., None] for grayscale images"
        layout = " (N, H, W, C) channels-last" if len(want) == 4 else ""
        raise ShapeError(f"{name} must be a {len(want)}-D array{layout} with samples of shape "
                         f"{tuple(shape)}, got shape {a.shape}{hint}")
    if tuple(a.shape[1:]) != tuple(shape):
        if len(want) == 4 and tuple(a.shape[1:3]) == tuple(shape[:2]):
            raise ShapeError(f"{name} has {a.shape[-1]} channels (shape {a.shape}), but the "
                             f"model expects {shape[-1]}: input shape {tuple(shape)}")
        if len(want) == 4 and a.shape[1] == shape[2] and tuple(a.shape[2:]) == tuple(shape[:2]):
            raise ShapeError(f"{name} looks channels-first {a.shape}: cytorch is channels-last, "
                             f"use x.transpose(0, 2, 3, 1) to get samples of shape "
                             f"{tuple(shape)}")
        raise ShapeError(f"{name} must have samples of shape {tuple(shape)} (the model's "
                         f"input shape), got shape {a.shape}")
