"""First-order optimisers as (init, update) pairs with explicit state (the shape of optax).

``init(params) -> state`` and ``update(grad, state, params) -> (new_params, new_state)`` are pure:
they never modify their arguments. ``params`` is the point where the caller evaluated ``grad``.
L-BFGS is not an (init, update) pair: scipy drives its own line search, so ``train.py`` calls
scipy with our ``loss_and_grad`` and records the same history.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from .errors import ConfigError

FIRST_ORDER = ("gd", "momentum", "nesterov", "adam")
OPTIMIZERS = FIRST_ORDER + ("lbfgs",)


class Optimizer(NamedTuple):
    init: Callable[[np.ndarray], Any]
    update: Callable[[np.ndarray, Any, np.ndarray], tuple[np.ndarray, Any]]


def gd(lr: float) -> Optimizer:
    """Plain gradient descent: theta <- theta - lr * g."""

    def init(params):
        return ()

    def update(grad, state, params):
        return params - lr * grad, state

    return Optimizer(init, update)


def momentum(lr: float, beta: float = 0.9) -> Optimizer:
    """Heavy-ball momentum: v <- beta v + g; theta <- theta - lr v."""

    def init(params):
        return np.zeros_like(params)

    def update(grad, velocity, params):
        velocity = beta * velocity + grad
        return params - lr * velocity, velocity

    return Optimizer(init, update)


class NesterovState(NamedTuple):
    previous: np.ndarray  # x_k, the last gradient-step point
    t: float  # the momentum sequence t_k (FISTA); 1 after a restart
    restarts: int


def nesterov(lr: float, beta: float | None = None, restart: bool = True) -> Optimizer:
    """Nesterov's accelerated gradient, evaluated at the extrapolated point y.

        x_{k+1} = y_k - lr g(y_k)
        y_{k+1} = x_{k+1} + beta_k (x_{k+1} - x_k)

    With ``beta=None`` beta_k = (t_k - 1) / t_{k+1}, t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2 (the
    optimal schedule for full-batch convex problems); else a constant beta (for mini-batches).
    With ``restart`` the momentum is reset whenever g(y_k) . (x_{k+1} - x_k) > 0, i.e. the step
    goes uphill (O'Donoghue & Candes' gradient restart), which recovers linear convergence on
    strongly convex problems such as l2-regularised logistic regression.
    """

    def init(params):
        return NesterovState(params.copy(), 1.0, 0)

    def update(grad, state, params):
        x = params - lr * grad
        step = x - state.previous
        if restart and float(np.vdot(grad, step)) > 0.0:
            return x, NesterovState(x, 1.0, state.restarts + 1)
        if beta is None:
            t_next = (1.0 + math.sqrt(1.0 + 4.0 * state.t * state.t)) / 2.0
            coefficient = (state.t - 1.0) / t_next
        else:
            t_next, coefficient = state.t, beta
        return x + coefficient * step, NesterovState(x, t_next, state.restarts)

    return Optimizer(init, update)


class AdamState(NamedTuple):
    m: np.ndarray
    v: np.ndarray
    count: int


def adam(lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Optimizer:
    """Adam (Kingma & Ba): moment estimates with bias correction.

    m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;  theta <- theta - lr m_hat / (sqrt(v_hat) + eps)
    """

    def init(params):
        return AdamState(np.zeros_like(params), np.zeros_like(params), 0)

    def update(grad, state, params):
        count = state.count + 1
        m = b1 * state.m + (1.0 - b1) * grad
        v = b2 * state.v + (1.0 - b2) * grad * grad
        m_hat = m / (1.0 - b1**count)
        v_hat = v / (1.0 - b2**count)
        return params - lr * m_hat / (np.sqrt(v_hat) + eps), AdamState(m, v, count)

    return Optimizer(init, update)


def state_to_arrays(state) -> dict:
    """An optimiser state as named arrays and numbers (for a checkpoint file)."""
    if isinstance(state, np.ndarray):
        return {"array": state}
    if hasattr(state, "_asdict"):
        return dict(state._asdict())
    return {}


def state_from_arrays(template, values: dict):
    """The inverse of ``state_to_arrays``, shaped like ``template`` (an ``init`` result)."""
    if isinstance(template, np.ndarray):
        return np.array(values["array"], dtype=np.float64)
    if hasattr(template, "_replace"):
        restored = {}
        for name in template._fields:
            value = np.asarray(values[name])
            restored[name] = value.item() if value.ndim == 0 else np.array(value)
        return type(template)(**restored)
    return template


def make_optimizer(name: str, lr: float, full_batch: bool) -> Optimizer:
    """The first-order optimiser called ``name`` with step size ``lr``.

    Nesterov uses the FISTA schedule with restart on full batches and a constant 0.9 on
    mini-batches (where the schedule's momentum -> 1 would amplify the sampling noise).
    """
    if name == "gd":
        return gd(lr)
    if name == "momentum":
        return momentum(lr)
    if name == "nesterov":
        return nesterov(lr, beta=None if full_batch else 0.9, restart=full_batch)
    if name == "adam":
        return adam(lr)
    raise ConfigError(f"unknown optimizer {name!r}: use one of {', '.join(OPTIMIZERS)}")
