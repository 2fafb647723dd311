"""First-order optimisers in optax's shape: (init, update) pairs with explicit state.

``init(params, lr) -> state`` and ``update(grad, state, params) -> (updates, new_state)`` are
pure: they never modify their arguments. ``params`` is the point where the caller evaluated
``grad``; the new point is ``apply_updates(params, updates) = params + updates``.

The learning rate lives in the state (its ``lr`` field), as optax's ``inject_hyperparams``
does: a back-off halves it with ``with_lr`` and keeps the momentum, and a checkpoint of the
state holds everything needed to go on. Every state is a NamedTuple of numbers and arrays.

L-BFGS is not an (init, update) pair: scipy drives its own line search, so ``train.py`` calls
scipy on the same objective and records the same history.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from .errors import ConfigError

FIRST_ORDER = ("gd", "momentum", "nesterov", "adagrad", "adam")
OPTIMIZERS = FIRST_ORDER + ("lbfgs",)


class Optimizer(NamedTuple):
    init: Callable[[np.ndarray, float], Any]
    update: Callable[[np.ndarray, Any, np.ndarray], tuple[np.ndarray, Any]]


def apply_updates(params: np.ndarray, updates: np.ndarray) -> np.ndarray:
    """The new point: params + updates."""
    return params + updates


def with_lr(state, lr: float):
    """``state`` with its learning rate replaced (everything else, momentum included, kept)."""
    return state._replace(lr=float(lr))


class GDState(NamedTuple):
    lr: float


def soft_threshold(params: np.ndarray, threshold: float) -> np.ndarray:
    """The proximal map of threshold ||W||_1: each weight moved threshold towards 0, and set to
    exactly 0 within it; the bias row (last) untouched."""
    out = params.copy()
    out[:-1] = np.sign(params[:-1]) * np.maximum(np.abs(params[:-1]) - threshold, 0.0)
    return out


def gd(prox: Callable | None = None) -> Optimizer:
    """Plain gradient descent: theta <- theta - lr * g; with ``prox(x, lr)`` (L1) the proximal
    gradient step theta <- prox(theta - lr g, lr) (ISTA)."""

    def init(params, lr):
        return GDState(float(lr))

    def update(grad, state, params):
        if prox is None:
            return -state.lr * grad, state
        return prox(params - state.lr * grad, state.lr) - params, state

    return Optimizer(init, update)


class MomentumState(NamedTuple):
    lr: float
    velocity: np.ndarray


def momentum(beta: float = 0.9) -> Optimizer:
    """Heavy-ball momentum: v <- beta v + g; theta <- theta - lr v."""

    def init(params, lr):
        return MomentumState(float(lr), np.zeros_like(params))

    def update(grad, state, params):
        velocity = beta * state.velocity + grad
        return -state.lr * velocity, MomentumState(state.lr, velocity)

    return Optimizer(init, update)


class NesterovState(NamedTuple):
    lr: float
    previous: np.ndarray  # x_k, the last gradient-step point
    t: float  # the momentum sequence t_k (FISTA); 1 after a restart
    restarts: int


def nesterov(beta: float | None = None, restart: bool = True,
             prox: Callable | None = None) -> Optimizer:
    """Nesterov's accelerated gradient, evaluated at the extrapolated point y.

        x_{k+1} = y_k - lr g(y_k)
        y_{k+1} = x_{k+1} + beta_k (x_{k+1} - x_k)

    With ``beta=None`` beta_k = (t_k - 1) / t_{k+1}, t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2 (the
    optimal schedule for full-batch convex problems); else a constant beta (for mini-batches).
    With ``restart`` the momentum is reset whenever g(y_k) . (x_{k+1} - x_k) > 0, i.e. the step
    goes uphill (O'Donoghue & Candes' gradient restart), which recovers linear convergence on
    strongly convex problems such as l2-regularised logistic regression. With ``prox(x, lr)``
    (L1) the gradient step is a proximal one, x_{k+1} = prox(y_k - lr g(y_k)) (FISTA), and the
    restart tests the gradient mapping (y_k - x_{k+1}) / lr in place of g.
    """

    def init(params, lr):
        return NesterovState(float(lr), params.copy(), 1.0, 0)

    def update(grad, state, params):
        x = params - state.lr * grad
        direction = grad
        if prox is not None:
            x = prox(x, state.lr)
            direction = params - x
        step = x - state.previous
        if restart and float(np.vdot(direction, step)) > 0.0:
            return x - params, NesterovState(state.lr, x, 1.0, state.restarts + 1)
        if beta is None:
            t_next = (1.0 + math.sqrt(1.0 + 4.0 * state.t * state.t)) / 2.0
            coefficient = (state.t - 1.0) / t_next
        else:
            t_next, coefficient = state.t, beta
        new = x + coefficient * step
        return new - params, NesterovState(state.lr, x, t_next, state.restarts)

    return Optimizer(init, update)


class AdagradState(NamedTuple):
    lr: float
    sum_sq: np.ndarray


#: AdaGrad's and Adam's guard against division by zero (PyTorch's Adagrad uses 1e-10 too)
ADAGRAD_EPS = 1e-10


def adagrad(eps: float = ADAGRAD_EPS) -> Optimizer:
    """AdaGrad (Duchi, Hazan and Singer): each coordinate's step divided by the root of its
    summed squared gradients, so rare features (a word seen in few documents) keep large
    steps while frequent ones settle.

    A <- A + g^2;  theta <- theta - lr g / (sqrt(A) + eps)

    A coordinate whose gradient is 0 does not move and its A does not change, so on sparse
    data the lazy update (``lazy.py``) is this same step."""

    def init(params, lr):
        return AdagradState(float(lr), np.zeros_like(params))

    def update(grad, state, params):
        sum_sq = state.sum_sq + grad * grad
        return -state.lr * grad / (np.sqrt(sum_sq) + eps), AdagradState(state.lr, sum_sq)

    return Optimizer(init, update)


class AdamState(NamedTuple):
    lr: float
    m: np.ndarray
    v: np.ndarray
    count: int


#: Adam's moment decays and its guard against division by zero (Kingma & Ba's defaults)
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8


def adam(b1: float = ADAM_B1, b2: float = ADAM_B2, eps: float = ADAM_EPS) -> Optimizer:
    """Adam (Kingma & Ba): moment estimates with bias correction.

    m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;  theta <- theta - lr m_hat / (sqrt(v_hat) + eps)
    """

    def init(params, lr):
        return AdamState(float(lr), np.zeros_like(params), np.zeros_like(params), 0)

    def update(grad, state, params):
        count = state.count + 1
        m = b1 * state.m + (1.0 - b1) * grad
        v = b2 * state.v + (1.0 - b2) * grad * grad
        m_hat = m / (1.0 - b1**count)
        v_hat = v / (1.0 - b2**count)
        return -state.lr * m_hat / (np.sqrt(v_hat) + eps), AdamState(state.lr, m, v, count)

    return Optimizer(init, update)


def state_to_arrays(state: NamedTuple) -> dict:
    """An optimiser state as named arrays and numbers (for a checkpoint file)."""
    return dict(state._asdict())


def state_from_arrays(template: NamedTuple, values: dict):
    """The inverse of ``state_to_arrays``, shaped like ``template`` (an ``init`` result).
    A checkpoint written before the learning rate moved into the state gives it as ``lr``."""
    restored = {}
    for name in template._fields:
        value = np.asarray(values[name])
        restored[name] = value.item() if value.ndim == 0 else np.array(value)
    return type(template)(**restored)


class CumulativeL1State(NamedTuple):
    lr: float
    total: float  # u: the L1 penalty a weight could have received so far, sum of lr * l1
    applied: np.ndarray  # q: the penalty each weight has received (signed), shaped like W


def cumulative_l1_sgd(l1: float) -> Optimizer:
    """Mini-batch SGD with an L1 penalty by the cumulative penalty (Tsuruoka, Tsujii and
    Ananiadou, 2009; scikit-learn's SGDClassifier does the same). After the step on the smooth
    gradient, z = theta - lr g, each weight is pulled towards 0 by what it is still owed:

        u <- u + lr l1
        w > 0:  w <- max(0, w - (u + q))        w < 0:  w <- min(0, w + (u - q))
        q <- q + (w_after - w_before)

    and clipped at 0 rather than pushed across it, so weights that the batches' noise keeps
    near zero become exactly zero (a plain subgradient step l1 sign(w) would make them
    oscillate around it). The bias row (last) is never penalised.
    """

    def init(params, lr):
        return CumulativeL1State(float(lr), 0.0, np.zeros_like(params[:-1]))

    def update(grad, state, params):
        new = params - state.lr * grad
        total = state.total + state.lr * l1
        before = new[:-1].copy()
        owed_down = np.maximum(before - (total + state.applied), 0.0)
        owed_up = np.minimum(before + (total - state.applied), 0.0)
        new[:-1] = np.where(before > 0, owed_down, np.where(before < 0, owed_up, 0.0))
        applied = state.applied + (new[:-1] - before)
        return new - params, CumulativeL1State(state.lr, total, applied)

    return Optimizer(init, update)


def make_optimizer(name: str, full_batch: bool, l1: float = 0.0) -> Optimizer:
    """The first-order optimiser called ``name``; with ``l1`` > 0 its proximal form (gd and
    nesterov, full batch: ISTA and FISTA) or, for gd on mini-batches, SGD with the cumulative
    L1 penalty.

    Nesterov uses the FISTA schedule with restart on full batches and a constant 0.9 on
    mini-batches (where the schedule's momentum -> 1 would amplify the sampling noise).
    """
    prox = None
    if l1:
        if not full_batch and name == "gd":
            return cumulative_l1_sgd(l1)
        if not full_batch:
            raise ConfigError(f"an L1 penalty (l1 = {l1:g}) on mini-batches needs the "
                              "optimizer gd (SGD with the cumulative penalty); or train "
                              "full batch (--batch-size 0) with lbfgs, nesterov or gd")
        if name not in ("gd", "nesterov"):
            raise ConfigError(f"an L1 penalty (l1 = {l1:g}) needs a proximal step or bounds: "
                              "use the optimizer lbfgs, nesterov or gd")

        def prox(x, lr):
            return soft_threshold(x, lr * l1)
    if name == "gd":
        return gd(prox)
    if name == "momentum":
        return momentum()
    if name == "nesterov":
        return nesterov(beta=None if full_batch else 0.9, restart=full_batch, prox=prox)
    if name == "adagrad":
        return adagrad()
    if name == "adam":
        return adam()
    raise ConfigError(f"unknown optimizer {name!r}: use one of {', '.join(OPTIMIZERS)}")
