"""Optimizers: turn the gradients backward filled in into parameter updates, in place.

Every optimizer has Keras's defaults and keeps its state (velocities, moment estimates) per
parameter, keyed by ``(layer name, parameter name)``, in buffers allocated on the first step and
reused afterwards: a step allocates nothing but one scratch array per parameter shape.

``learning_rate`` is a plain attribute: callbacks such as ``ReduceLROnPlateau`` change it
between steps.

Weight decay
------------
``weight_decay=λ`` adds the L2 penalty ``λ/2 ||θ||²`` to the loss, i.e. ``g <- g + λ θ``
before the update -- the classic coupled form, which is also what ``torch.optim``'s
``weight_decay`` does for these four optimizers (Keras 3's ``weight_decay`` is the decoupled
AdamW form instead).  It applies to every trainable parameter, biases included, as in PyTorch.

Update rules (``g`` the gradient, ``t`` the step count)::

    SGD       v <- m v - lr g;  θ <- θ + v                (momentum m; plain SGD when m = 0)
              Nesterov: θ <- θ + m v - lr g               (after updating v)
    RMSprop   s <- ρ s + (1 - ρ) g²;  θ <- θ - lr g / (sqrt(s) + ε)
    Adagrad   a <- a + g²;  θ <- θ - lr g / (sqrt(a) + ε)  (a starts at 0.1, Keras's default)
    Adam      m <- β1 m + (1 - β1) g;  v <- β2 v + (1 - β2) g²
              θ <- θ - lr sqrt(1 - β2^t) / (1 - β1^t) · m / (sqrt(v) + ε)
"""
import math

import numpy as np

__all__ = ["Optimizer", "SGD", "RMSprop", "Adagrad", "Adam", "get"]


class Optimizer:
    """Base class: subclasses implement ``_update(key, param, grad, scratch)``."""

    name = None

    def __init__(self, learning_rate=0.01, weight_decay=0.0):
        self.learning_rate = _check_positive(learning_rate, "learning_rate")
        self.weight_decay = _check_nonneg(weight_decay, "weight_decay")
        self.iterations = 0
        self._state = {}
        self._scratch = {}

    def apply_gradients(self, layers):
        """One update of every trainable parameter of ``layers`` from its ``grads``."""
        self.iterations += 1
        lr = float(self.learning_rate)
        wd = float(self.weight_decay)
        for layer in layers:
            if not layer.trainable:
                continue
            for name, param in layer.params.items():
                grad = layer.grads[name]
                scratch = self._scratch.get((param.shape, param.dtype))
                if scratch is None:
                    scratch = self._scratch[(param.shape, param.dtype)] = np.empty_like(param)
                if wd:
                    np.multiply(param, wd, out=scratch)
                    grad += scratch  # the layer's grads are rewritten by the next backward
                self._update((layer.name, name), param, grad, scratch, lr)

    def state_buffers(self, key, param, n):
        """``n`` zero buffers shaped like ``param`` for ``key``, made on first use."""
        state = self._state.get(key)
        if state is None or state[0].shape != param.shape or state[0].dtype != param.dtype:
            state = self._state[key] = [np.zeros_like(param) for _ in range(n)]
        return state

    def reset(self):
        """Forget all state (velocities, moments, step count)."""
        self._state.clear()
        self.iterations = 0

    def get_config(self):
        return {"learning_rate": float(self.learning_rate),
                "weight_decay": float(self.weight_decay)}

    def _update(self, key, param, grad, scratch, lr):
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum."""

    name = "sgd"

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(learning_rate, weight_decay)
        self.momentum = _check_unit(momentum, "momentum")
        self.nesterov = bool(nesterov)

    def _update(self, key, param, grad, scratch, lr):
        m = self.momentum
        np.multiply(grad, lr, out=scratch)  # lr g
        if m == 0:
            param -= scratch
            return
        (v,) = self.state_buffers(key, param, 1)
        v *= m
        v -= scratch                          # v = m v - lr g
        if self.nesterov:
            param -= scratch
            np.multiply(v, m, out=scratch)
            param += scratch                  # θ += m v - lr g
        else:
            param += v

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class RMSprop(Optimizer):
    """Divide the step by a running root mean square of recent gradients."""

    name = "rmsprop"

    def __init__(self, learning_rate=0.001, rho=0.9, epsilon=1e-7, weight_decay=0.0):
        super().__init__(learning_rate, weight_decay)
        self.rho = _check_unit(rho, "rho")
        self.epsilon = _check_positive(epsilon, "epsilon")

    def _update(self, key, param, grad, scratch, lr):
        (s,) = self.state_buffers(key, param, 1)
        s *= self.rho
        np.multiply(grad, grad, out=scratch)
        scratch *= 1 - self.rho
        s += scratch
        np.sqrt(s, out=scratch)
        scratch += self.epsilon
        np.divide(grad, scratch, out=scratch)
        scratch *= lr
        param -= scratch

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}


class Adagrad(Optimizer):
    """Per-parameter steps that shrink with the sum of all past squared gradients."""

    name = "adagrad"

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7,
                 weight_decay=0.0):
        super().__init__(learning_rate, weight_decay)
        self.initial_accumulator_value = _check_nonneg(initial_accumulator_value,
                                                       "initial_accumulator_value")
        self.epsilon = _check_positive(epsilon, "epsilon")

    def _update(self, key, param, grad, scratch, lr):
        state = self._state.get(key)
        if state is None or state[0].shape != param.shape:
            state = self._state[key] = [np.full_like(param, self.initial_accumulator_value)]
        (a,) = state
        np.multiply(grad, grad, out=scratch)
        a += scratch
        np.sqrt(a, out=scratch)
        scratch += self.epsilon
        np.divide(grad, scratch, out=scratch)
        scratch *= lr
        param -= scratch

    def get_config(self):
        return {**super().get_config(),
                "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


class Adam(Optimizer):
    """Adaptive moment estimation (Kingma & Ba, 2015), with bias correction folded into the
    step size as in the paper's section 2 and in Keras."""

    name = "adam"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 weight_decay=0.0):
        super().__init__(learning_rate, weight_decay)
        self.beta_1 = _check_unit(beta_1, "beta_1")
        self.beta_2 = _check_unit(beta_2, "beta_2")
        self.epsilon = _check_positive(epsilon, "epsilon")

    def _update(self, key, param, grad, scratch, lr):
        b1, b2, t = self.beta_1, self.beta_2, self.iterations
        m, v = self.state_buffers(key, param, 2)
        m *= b1
        np.multiply(grad, 1 - b1, out=scratch)
        m += scratch                                   # m = b1 m + (1 - b1) g
        v *= b2
        np.multiply(grad, grad, out=scratch)
        scratch *= 1 - b2
        v += scratch                                   # v = b2 v + (1 - b2) g^2
        step = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        np.sqrt(v, out=scratch)
        scratch += self.epsilon
        np.divide(m, scratch, out=scratch)
        scratch *= step
        param -= scratch

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


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


_OPTIMIZERS = {"sgd": SGD, "rmsprop": RMSprop, "adagrad": Adagrad, "adam": Adam}


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
