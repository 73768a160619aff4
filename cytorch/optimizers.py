"""Optimizers: turn the gradients backward filled in into parameter updates, in place.

Every optimizer has Keras 3's arguments, defaults and formulas (``tests/test_keras_parity.py``
compares one and five steps of each with Keras where it is installed).  It keeps its state
(velocities, moment estimates: the *slots*) per parameter, keyed by ``(layer name, parameter
name)``, in buffers allocated on the first step and reused afterwards.  Under the compiled
backend a step is one pass over each parameter in ``cytorch/_kernels/_optim.pyx`` and
allocates nothing; the ``_update`` methods below are its NumPy twin (``cytorch.backend(
"reference")``), one operation per line, with the same bits.  ``get_state``/``set_state``
expose the slots and the step count, so ``model.save`` can store them and a loaded model
resumes exactly.

``learning_rate`` is a plain attribute: callbacks such as ``ReduceLROnPlateau`` and
``LearningRateScheduler`` change it between steps.

One step, in Keras's order (``g`` the gradient, ``θ`` the parameter, ``t`` the step count from 1)
-------------------------------------------------------------------------------------------------
0. (cytorch only) ``l2=λ2`` adds the coupled L2 penalty's gradient: ``g <- g + λ2 θ``.
1. Clip the gradients (at most one of): ``clipnorm`` scales each gradient to L2 norm at most
   ``clipnorm``; ``global_clipnorm`` scales all of them together so their joint norm is at
   most ``global_clipnorm``; ``clipvalue`` clips each value to ``[-clipvalue, clipvalue]``.
2. Weight decay, *decoupled* (Loshchilov & Hutter, "Decoupled Weight Decay Regularization",
   2019) as every Keras 3 optimizer does it: ``θ <- θ - lr λ θ``, on every trainable parameter
   (biases included), before the update and independent of the gradient.  This is not an L2
   penalty added to the loss: with Adam the two differ (AdamW is Adam with ``λ = 0.004``).
3. The update::

    SGD       v <- m v - lr g;  θ <- θ + v                 (momentum m; plain SGD when m = 0)
              nesterov: θ <- θ + m v - lr g                (with the new v)
    RMSprop   s <- ρ s + (1 - ρ) g²
              centered: a <- ρ a + (1 - ρ) g;  d = s - a² + ε     (else d = s + ε)
              Δ = lr g / sqrt(d);  momentum m > 0: v <- m v + Δ; θ <- θ - v   (else θ <- θ - Δ)
    Adagrad   a <- a + g²;  θ <- θ - lr g / sqrt(a + ε)    (a starts at 0.1, Keras's default)
    Adam      m <- m + (g - m)(1 - β1);  v <- v + (g² - v)(1 - β2)
              amsgrad: v̂ <- max(v̂, v), used in place of v
              θ <- θ - lr sqrt(1 - β2^t) / (1 - β1^t) · m / (sqrt(v) + ε)
    AdamW     Adam with weight_decay = 0.004 by default

Note where ε sits: inside the square root for RMSprop and Adagrad (Keras), outside for Adam
(Keras and the paper).  PyTorch puts it outside for all three, which matters when gradients
are tiny: RMSprop's first step with lr 1e-3, g = 1e-4 is 3.2e-4 here and in Keras, 3.2e-3 in
PyTorch.

>>> import numpy as np
>>> from cytorch import layers as L
>>> dense = L.Dense(1, use_bias=False, dtype="float64"); dense.build((1,))
>>> dense.set_weights([np.array([[1.0]])])
>>> dense.grads["kernel"][...] = 1e-4
>>> RMSprop(learning_rate=1e-3).apply_gradients([dense])
>>> print(f"{1.0 - dense.params['kernel'][0, 0]:.4g}")   # lr g / sqrt(0.1 g² + 1e-7)
0.0003147
"""
import math

import numpy as np

from . import _kernels
from ._config import get_backend, get_num_threads

__all__ = ["Optimizer", "SGD", "RMSprop", "Adagrad", "Adam", "AdamW", "get"]


class Optimizer:
    """Base class: subclasses name their per-parameter buffers in ``slots()`` and implement
    ``_update(key, param, grad, scratch, lr)``.  The parameters below are shared by every
    optimizer, as in Keras.

    Parameters
    ----------
    learning_rate : float > 0
    weight_decay : float >= 0 or None
        Decoupled weight decay ``θ <- θ - lr λ θ`` (see the module docstring); None or 0: off.
    clipnorm, clipvalue, global_clipnorm : float > 0 or None
        Gradient clipping, at most one of them.
    l2 : float >= 0 or None
        cytorch's addition, not a Keras argument: the *coupled* L2 penalty ``l2/2 ||θ||²``
        added to the loss, i.e. ``g <- g + l2 θ`` before clipping (scikit-learn's ``alpha``,
        ``torch.optim``'s ``weight_decay``; Keras puts it on layers as ``kernel_regularizer``).
        ``CNNClassifier`` trains with ``l2=alpha``.
    """

    name = None

    def __new__(cls, *args, **kwargs):
        # Keras 2's names, still in many tutorials (the course's ``RMSprop(lr=0.0001)``): a
        # message that says what to type instead of Python's "unexpected keyword argument"
        if "lr" in kwargs:
            raise TypeError(f"{cls.__name__}() takes learning_rate=, not lr= (Keras 2's name, "
                            f"gone in Keras 3): {cls.__name__}(learning_rate={kwargs['lr']!r})")
        if "decay" in kwargs:
            raise TypeError(f"{cls.__name__}() has no decay= (Keras 2's learning-rate decay, "
                            f"gone in Keras 3): use callbacks.LearningRateScheduler, e.g. "
                            f"LearningRateScheduler(lambda epoch, lr: lr / (1 + decay))")
        return super().__new__(cls)

    def __init__(self, learning_rate=0.01, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, l2=None):
        self.learning_rate = _check_positive(learning_rate, "learning_rate")
        self.weight_decay = None if weight_decay is None else \
            _check_nonneg(weight_decay, "weight_decay")
        self.l2 = None if l2 is None else _check_nonneg(l2, "l2")
        clips = {"clipnorm": clipnorm, "clipvalue": clipvalue, "global_clipnorm": global_clipnorm}
        for key, value in clips.items():
            setattr(self, key, None if value is None else _check_positive(value, key))
        given = [f"{k}={v!r}" for k, v in clips.items() if v is not None]
        if len(given) > 1:
            raise ValueError(f"only one of clipnorm, clipvalue and global_clipnorm can be set, "
                             f"got {', '.join(given)}")
        self.iterations = 0
        self._state = {}
        self._scratch = {}

    # -- one step -----------------------------------------------------------------------------
    def apply_gradients(self, layers):
        """One update of every trainable parameter of ``layers`` from its ``grads``.

        Clipping (and ``l2``) rewrites ``layer.grads`` in place (the next backward overwrites
        them).  Under the compiled backend the step runs in ``_kernels/_optim.pyx``: one pass
        over each parameter, no temporary arrays, the same bits as the NumPy steps below
        (``_update``), which run under ``cytorch.backend("reference")`` and for parameters
        the kernel does not take (not C-contiguous float32/float64 with a gradient of the same
        dtype and shape), and for a subclass that defines its own ``_update``."""
        self.iterations += 1
        lr = float(self.learning_rate)
        pairs = [((layer.name, name), param, layer.grads[name])
                 for layer in layers if layer.trainable
                 for name, param in layer.params.items()]
        if get_backend() == "compiled" and _has_kernel(type(self)) \
                and all(_fits_kernel(p, g) for _, p, g in pairs):
            self._apply_compiled(pairs, lr)
        else:
            self._apply_twin(pairs, lr)

    def _apply_twin(self, pairs, lr):
        """The step in NumPy, one whole-array operation at a time (the readable twin)."""
        wd = float(self.weight_decay or 0.0)
        if self.l2:
            for _, param, grad in pairs:
                grad += param.dtype.type(self.l2) * param   # the penalty's gradient
        self._clip([g for _, _, g in pairs])
        for key, param, grad in pairs:
            scratch = self._scratch.get((param.shape, param.dtype))
            if scratch is None:
                scratch = self._scratch[(param.shape, param.dtype)] = np.empty_like(param)
            if wd:
                np.multiply(param, param.dtype.type(wd * lr), out=scratch)
                param -= scratch                   # θ <- θ - lr λ θ, before the update
            self._update(key, param, grad, scratch, lr)

    def _apply_compiled(self, pairs, lr):
        """The same step through the compiled kernel: per parameter one pass that adds the
        L2 penalty, clips, decays and updates (a clipping norm needs the whole gradient first:
        it is taken as the twin takes it, after the penalty was added)."""
        kernel = _kernels.load("_optim")
        # (asking for the thread count costs microseconds; small parameters run on one)
        threads = get_num_threads() if any(p.size >= kernel.MIN_PARALLEL_WORK
                                           for _, p, _ in pairs) else 1
        l2 = float(self.l2 or 0.0)
        if l2 and (self.clipnorm or self.global_clipnorm):
            for _, param, grad in pairs:
                kernel.add_scaled(grad, param, l2)
            l2 = 0.0
        scales = self._norm_scales([g for _, _, g in pairs])
        decay = float(self.weight_decay or 0.0) * lr
        for (key, param, grad), scale in zip(pairs, scales):
            if self.clipvalue:
                prologue = (l2, kernel.CLIP_VALUE, self.clipvalue, decay)
            elif scale is not None:
                prologue = (l2, kernel.CLIP_SCALE, scale, decay)
            else:
                prologue = (l2, kernel.CLIP_NONE, 0.0, decay)
            self._kernel_update(kernel, param, grad, self.state_buffers(key, param), lr,
                                prologue, threads)

    def _norm_scales(self, grads):
        """Per gradient, the factor ``clipnorm`` or ``global_clipnorm`` scales it by, or None
        when it is short enough (Keras's ``_clip_gradients``)."""
        if self.clipnorm:
            scales = []
            for g in grads:
                norm = math.sqrt(float(np.dot(g.ravel(), g.ravel())))
                scales.append(self.clipnorm / norm if norm > self.clipnorm else None)
            return scales
        if self.global_clipnorm:
            norm = math.sqrt(sum(float(np.dot(g.ravel(), g.ravel())) for g in grads))
            return [self.global_clipnorm / norm if norm > self.global_clipnorm else None] \
                * len(grads)
        return [None] * len(grads)

    def _clip(self, grads):
        """Keras's gradient clipping, in place."""
        for g, scale in zip(grads, self._norm_scales(grads)):
            if scale is not None:
                g *= g.dtype.type(scale)
        if self.clipvalue:
            for g in grads:
                np.clip(g, -self.clipvalue, self.clipvalue, out=g)

    def slots(self):
        """Names of the buffers kept per parameter, in the order ``_update`` receives them."""
        return ()

    def _initial(self, slot):
        """The value a slot starts at (0; Adagrad's accumulator starts at 0.1)."""
        return 0.0

    def state_buffers(self, key, param):
        """The slot buffers of ``key`` (a list in ``slots()`` order), made on first use."""
        if not self.slots():
            return []
        state = self._state.get(key)
        if state is None or state[0].shape != param.shape or state[0].dtype != param.dtype:
            state = self._state[key] = [np.full_like(param, self._initial(s))
                                        for s in self.slots()]
        return state

    def _update(self, key, param, grad, scratch, lr):
        """The twin: update ``param`` in place with NumPy (``scratch`` is free to use)."""
        raise NotImplementedError

    def _kernel_update(self, kernel, param, grad, slots, lr, prologue, threads):
        """The compiled step: the parameter, its gradient and slots, and the prologue
        ``(l2, clip mode, clip argument, lr * weight_decay)`` for ``kernel`` (``_optim``)."""
        raise NotImplementedError

    # -- state --------------------------------------------------------------------------------
    def get_state(self):
        """``{"iterations": int, "slots": {"layer/param/slot": array copy}}``: what a saved
        model needs to resume training exactly (the learning rate is in ``get_config``)."""
        names = self.slots()
        return {"iterations": int(self.iterations),
                "slots": {f"{layer}/{param}/{slot}": value.copy()
                          for (layer, param), buffers in self._state.items()
                          for slot, value in zip(names, buffers)}}

    def set_state(self, state, layers):
        """Restore ``get_state()``'s output for the parameters of ``layers``.

        Each parameter needs all its slots, shaped like it, or none (it then starts fresh, as
        for a parameter the optimizer never updated); values are copied in the parameter's
        dtype."""
        iterations = state.get("iterations", 0)
        if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) \
                or iterations < 0:
            raise ValueError(f"optimizer state: iterations must be an int >= 0, got "
                             f"{iterations!r}")
        saved = dict(state.get("slots", {}))
        names = self.slots()
        restored = {}
        for layer in layers:
            for pname, param in layer.params.items():
                keys = [f"{layer.name}/{pname}/{s}" for s in names]
                present = [k for k in keys if k in saved]
                if not present:
                    continue
                if len(present) != len(keys):
                    raise ValueError(f"optimizer state for {layer.name}/{pname} has slots "
                                     f"{present}, {type(self).__name__} needs {keys}")
                buffers = []
                for k in keys:
                    value = np.asarray(saved.pop(k))
                    if value.shape != param.shape:
                        raise ValueError(f"optimizer state {k!r} has shape {value.shape}, the "
                                         f"parameter has {param.shape}")
                    # C order: the compiled step takes C-contiguous buffers
                    buffers.append(np.array(value, dtype=param.dtype, order="C"))
                restored[(layer.name, pname)] = buffers
        if saved:
            raise ValueError(f"optimizer state holds slots no parameter or option of "
                             f"{self!r} uses: {sorted(saved)[:5]}")
        self._state = restored
        self.iterations = int(iterations)

    def reset(self):
        """Forget all state (velocities, moments, step count)."""
        self._state.clear()
        self.iterations = 0

    def get_config(self):
        config = {"learning_rate": float(self.learning_rate), "weight_decay": self.weight_decay}
        for key in ("clipnorm", "clipvalue", "global_clipnorm", "l2"):
            if getattr(self, key) is not None:
                config[key] = getattr(self, key)
        return config

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum."""

    name = "sgd"

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, l2=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, l2)
        self.momentum = _check_unit(momentum, "momentum")
        self.nesterov = bool(nesterov)

    def slots(self):
        return ("momentum",) if self.momentum else ()

    def _update(self, key, param, grad, scratch, lr):
        m = self.momentum
        np.multiply(grad, param.dtype.type(lr), out=scratch)  # lr g
        if m == 0:
            param -= scratch
            return
        (v,) = self.state_buffers(key, param)
        v *= m
        v -= scratch                          # v = m v - lr g
        if self.nesterov:
            param -= scratch
            np.multiply(v, m, out=scratch)
            param += scratch                  # θ += m v - lr g
        else:
            param += v

    def _kernel_update(self, kernel, param, grad, slots, lr, prologue, threads):
        kernel.sgd(param, grad, slots[0] if slots else None, lr, self.momentum, self.nesterov,
                   prologue, threads)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class RMSprop(Optimizer):
    """Divide the step by a running root mean square of recent gradients (Hinton's lecture 6e),
    ε inside the root as in Keras; ``centered`` divides by an estimate of the variance instead,
    ``momentum`` accumulates the steps."""

    name = "rmsprop"

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7,
                 centered=False, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, l2=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, l2)
        self.rho = _check_unit(rho, "rho")
        self.momentum = _check_unit(momentum, "momentum")
        self.epsilon = _check_positive(epsilon, "epsilon")
        self.centered = bool(centered)

    def slots(self):
        return ("velocity",) + (("momentum",) if self.momentum else ()) \
            + (("average_gradient",) if self.centered else ())

    def _update(self, key, param, grad, scratch, lr):
        buffers = self.state_buffers(key, param)
        s = buffers[0]
        rho = self.rho
        s *= rho
        np.multiply(grad, grad, out=scratch)
        scratch *= 1 - rho
        s += scratch                                   # s = ρ s + (1 - ρ) g²
        if self.centered:
            a = buffers[-1]
            a *= rho
            np.multiply(grad, 1 - rho, out=scratch)
            a += scratch                               # a = ρ a + (1 - ρ) g
            np.multiply(a, a, out=scratch)
            np.subtract(s, scratch, out=scratch)
            scratch += self.epsilon                    # s - a² + ε
        else:
            np.add(s, self.epsilon, out=scratch)       # s + ε
        np.sqrt(scratch, out=scratch)
        np.divide(grad, scratch, out=scratch)
        scratch *= lr                                  # Δ = lr g / sqrt(d)
        if self.momentum:
            v = buffers[1]
            v *= self.momentum
            v += scratch
            param -= v
        else:
            param -= scratch

    def _kernel_update(self, kernel, param, grad, slots, lr, prologue, threads):
        kernel.rmsprop(param, grad, slots[0], slots[1] if self.momentum else None,
                       slots[-1] if self.centered else None, self.rho, self.epsilon, lr,
                       self.momentum, self.centered, prologue, threads)

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}


class Adagrad(Optimizer):
    """Per-parameter steps that shrink with the sum of all past squared gradients."""

    name = "adagrad"

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None, l2=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, l2)
        self.initial_accumulator_value = _check_nonneg(initial_accumulator_value,
                                                       "initial_accumulator_value")
        self.epsilon = _check_positive(epsilon, "epsilon")

    def slots(self):
        return ("accumulator",)

    def _initial(self, slot):
        return self.initial_accumulator_value

    def _update(self, key, param, grad, scratch, lr):
        (a,) = self.state_buffers(key, param)
        np.multiply(grad, grad, out=scratch)
        a += scratch                                   # a = a + g²
        np.add(a, self.epsilon, out=scratch)
        np.sqrt(scratch, out=scratch)
        np.divide(grad, scratch, out=scratch)
        scratch *= lr                                  # lr g / sqrt(a + ε)
        param -= scratch

    def _kernel_update(self, kernel, param, grad, slots, lr, prologue, threads):
        kernel.adagrad(param, grad, slots[0], self.epsilon, lr, prologue, threads)

    def get_config(self):
        return {**super().get_config(),
                "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


class Adam(Optimizer):
    """Adaptive moment estimation (Kingma & Ba, 2015), with bias correction folded into the
    step size as in the paper's section 2 and in Keras; ``amsgrad`` (Reddi et al., 2018)
    divides by the largest second moment seen so far."""

    name = "adam"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, l2=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, l2)
        self.beta_1 = _check_unit(beta_1, "beta_1")
        self.beta_2 = _check_unit(beta_2, "beta_2")
        self.epsilon = _check_positive(epsilon, "epsilon")
        self.amsgrad = bool(amsgrad)

    def slots(self):
        return ("momentum", "velocity") + (("velocity_hat",) if self.amsgrad else ())

    def _update(self, key, param, grad, scratch, lr):
        b1, b2 = self.beta_1, self.beta_2
        buffers = self.state_buffers(key, param)
        m, v = buffers[0], buffers[1]
        np.subtract(grad, m, out=scratch)
        scratch *= 1 - b1
        m += scratch                                   # m = m + (g - m)(1 - b1)
        np.multiply(grad, grad, out=scratch)
        scratch -= v
        scratch *= 1 - b2
        v += scratch                                   # v = v + (g² - v)(1 - b2)
        if self.amsgrad:
            v = np.maximum(buffers[2], v, out=buffers[2])
        np.sqrt(v, out=scratch)
        scratch += self.epsilon
        np.divide(m, scratch, out=scratch)
        scratch *= self._step_size(lr)
        param -= scratch

    def _step_size(self, lr):
        """``lr sqrt(1 - β2^t) / (1 - β1^t)``: the bias corrections folded into the step."""
        b1, b2, t = self.beta_1, self.beta_2, self.iterations
        return lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)

    def _kernel_update(self, kernel, param, grad, slots, lr, prologue, threads):
        kernel.adam(param, grad, slots[0], slots[1], slots[2] if self.amsgrad else None,
                    self.beta_1, self.beta_2, self.epsilon, self._step_size(lr), self.amsgrad,
                    prologue, threads)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "amsgrad": self.amsgrad}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019): Keras's ``AdamW``, whose
    ``weight_decay`` defaults to 0.004."""

    name = "adamw"

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7, amsgrad=False, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, l2=None):
        if weight_decay is None:
            raise ValueError("weight_decay must be a float >= 0 for AdamW (Keras's default "
                             "is 0.004), got None; use Adam for no weight decay")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay,
                         clipnorm, clipvalue, global_clipnorm, l2)


def _has_kernel(cls):
    """Does ``cls`` step through the kernel: do its ``_update`` (the twin) and
    ``_kernel_update`` come from the same class?  A subclass that writes its own ``_update``
    runs it, under either backend."""
    known = _HAS_KERNEL.get(cls)
    if known is None:
        owner = next(k for k in cls.__mro__ if "_update" in vars(k))
        known = _HAS_KERNEL[cls] = "_kernel_update" in vars(owner) and owner is not Optimizer
    return known


_HAS_KERNEL = {}   # class -> _has_kernel(class)


def _fits_kernel(param, grad):
    """Can the compiled step take this parameter: float32/float64, C-contiguous, writable,
    with a gradient of the same dtype and shape?  (The twin takes anything NumPy does.)"""
    return param.dtype in _KERNEL_DTYPES and grad.dtype == param.dtype \
        and grad.shape == param.shape and param.flags.c_contiguous \
        and grad.flags.c_contiguous and param.flags.writeable and grad.flags.writeable


_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _is_real(value):
    return isinstance(value, (int, float, np.floating, np.integer)) \
        and not isinstance(value, bool) and math.isfinite(value)


def _check_positive(value, name):
    if not _is_real(value) or value <= 0:
        raise ValueError(f"{name} must be a positive float, got {value!r}")
    return float(value)


def _check_nonneg(value, name):
    if not _is_real(value) or value < 0:
        raise ValueError(f"{name} must be a float >= 0, got {value!r}")
    return float(value)


def _check_unit(value, name):
    """A decay rate or momentum: a float in [0, 1)."""
    if not _is_real(value) or not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


_OPTIMIZERS = {"sgd": SGD, "rmsprop": RMSprop, "adagrad": Adagrad, "adam": Adam,
               "adamw": AdamW}


def get(identifier):
    """An optimizer instance (returned as is), or the class for a name: ``get("adam")`` is
    ``Adam``, so ``get("adam")(learning_rate=3e-4)`` makes one."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _OPTIMIZERS:
        return _OPTIMIZERS[identifier.lower()]
    import difflib
    close = difflib.get_close_matches(str(identifier).lower(), _OPTIMIZERS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise KeyError(f"unknown optimizer {identifier!r}; known optimizers: "
                   f"{sorted(_OPTIMIZERS)}{hint}")
