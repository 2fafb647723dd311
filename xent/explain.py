"""The math made visible: one cross-entropy term by term, a gradient check by central finite
differences, and one example traced through one gradient step. Pure functions; the command
line prints what they return."""

from __future__ import annotations

import numpy as np

from .errors import DataError
from .links import SIGMOID, Link, log_sigmoid, log_softmax
from .loss import Target, loss_and_grad


def _distribution(values, what: str, atol: float = 1e-6) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values)):
        raise DataError(f"{what} must be a list of finite numbers")
    if values.min() < 0 or values.max() > 1:
        raise DataError(f"{what} must be probabilities in [0, 1], got {values.tolist()}")
    if values.size > 1 and abs(values.sum() - 1.0) > atol:
        raise DataError(f"{what} must sum to 1 (a distribution), it sums to {values.sum():.6g}")
    return values


def cross_entropy_terms(target, pred=None, logits=None) -> dict:
    """H(P, Q) = -sum_k p_k log q_k, with each class's term.

    Q is ``pred`` (probabilities) or the link of ``logits``: the softmax of several values,
    the sigmoid of a single one. A single target p with a single prediction q (or logit) is the
    binary case, P = (1-p, p) and Q = (1-q, q): -p log q - (1-p) log(1-q).
    Log-probabilities from logits are computed stably (log-softmax, log-sigmoid). Classes with
    p = 0 contribute 0 whatever q is.
    Returns {"p", "q", "log_q", "terms", "cross_entropy", "binary"}.
    """
    if (pred is None) == (logits is None):
        raise DataError("give the prediction either as probabilities or as logits")
    p = _distribution(target, "the target")
    binary = p.size == 1
    if binary:
        p = np.array([1.0 - p[0], p[0]])
    if logits is not None:
        z = np.asarray(logits, dtype=np.float64)
        if z.ndim != 1 or not np.all(np.isfinite(z)):
            raise DataError("the logits must be a list of finite numbers")
        # logits ~1e308 apart overflow to -inf in the log-softmax: exactly log q = -inf, q = 0
        with np.errstate(over="ignore"):
            if z.size == 1:
                log_q = np.array([log_sigmoid(-z[0]), log_sigmoid(z[0])])
            else:
                log_q = log_softmax(z[None, :])[0]
        q = np.exp(log_q)
    else:
        q = _distribution(pred, "the prediction")
        if q.size == 1:
            q = np.array([1.0 - q[0], q[0]])
        with np.errstate(divide="ignore"):
            log_q = np.log(q)
    if q.size != p.size:
        raise DataError(f"the target has {p.size} classes but the prediction has {q.size}")
    terms = np.zeros_like(p)
    support = p > 0
    terms[support] = -p[support] * log_q[support] + 0.0  # no -0.0 shown for log 1
    return {"p": p, "q": q, "log_q": log_q, "terms": terms,
            "cross_entropy": float(terms.sum()), "binary": binary}


#: the central differences' step
FD_STEP = 1e-5


def finite_difference_grad(params, X, target, link, l2=0.0, weights=None, *,
                           coordinates=None, step: float = FD_STEP, fit_intercept=True):
    """Central differences (J(theta + h e_i) - J(theta - h e_i)) / 2h at the chosen flat
    ``coordinates`` of params (all of them by default). Returns (coordinates, values)."""
    flat = params.ravel()
    if coordinates is None:
        coordinates = np.arange(flat.size)
    values = np.empty(len(coordinates))
    for out, i in enumerate(coordinates):
        point = flat.copy()
        point[i] += step
        up = loss_and_grad(point.reshape(params.shape), X, target, link, l2, weights,
                           fit_intercept=fit_intercept)[0]
        point[i] -= 2 * step
        down = loss_and_grad(point.reshape(params.shape), X, target, link, l2, weights,
                             fit_intercept=fit_intercept)[0]
        values[out] = (up - down) / (2 * step)
    return coordinates, values


def compare_gradients(params, X, target, link, l2=0.0, *, max_coordinates=400, seed=0,
                      atol=1e-7) -> dict:
    """The analytic gradient X^T(Q-P)/n + l2 W against central differences at ``params``.

    At most ``max_coordinates`` entries are checked (drawn with ``seed``; all when fewer).
    Relative error per entry: |analytic - numeric| / max(||grad||_inf, floor), the error
    relative to the gradient's scale (its largest entry). Relative to the entry itself, a
    near-zero entry would turn the finite differences' rounding (~1e-11) into a large
    "relative" error on a correct gradient. The floor is atol, or where larger the gradient
    whose 1e-6 (a tenth of gradcheck's default tolerance) is that rounding, eps max(1, |J|) / h:
    at an optimum the whole gradient is near zero, and a correct one failed (|g| 1e-7, error
    5e-12).
    Returns the largest absolute and relative errors for W and for b.
    """
    value, grad = loss_and_grad(params, X, target, link, l2)
    size, d = params.size, params.shape[0] - 1
    rng = np.random.default_rng(seed)
    chosen = np.arange(size) if size <= max_coordinates else np.sort(
        rng.choice(size, max_coordinates, replace=False))
    coords, numeric = finite_difference_grad(params, X, target, link, l2, coordinates=chosen)
    analytic = grad.ravel()[coords]
    abs_err = np.abs(analytic - numeric)
    rounding = np.finfo(np.float64).eps * max(1.0, abs(float(value))) / FD_STEP
    rel_err = abs_err / max(float(np.abs(grad).max()), atol, rounding / 1e-6)
    is_bias = coords // params.shape[1] == d
    report = {"n_checked": int(len(coords)), "n_params": int(size)}
    for name, mask in (("W", ~is_bias), ("b", is_bias)):
        report[name] = {
            "max_abs_error": float(abs_err[mask].max()) if mask.any() else 0.0,
            "max_rel_error": float(rel_err[mask].max()) if mask.any() else 0.0,
            "n_checked": int(mask.sum()),
        }
    return report


def trace_step(x: np.ndarray, label: int, coef: np.ndarray, intercept: np.ndarray, link: Link,
               n_classes: int, lr: float) -> dict:
    """One example through one gradient step of its own loss (no l2, no averaging).

    x: (n_features,) the model's input (after encoding and standardisation); label: class
    index. Returns z = x W + b (n_outputs,), q = link(z), p, q - p, the gradient
    x (q - p)^T (n_features, n_outputs), the bias gradient q - p, the update -lr x (q - p)^T,
    and the loss before and after the step. For the sigmoid, the same quantities of the
    equivalent two-class softmax with logits (0, z) are under "softmax".
    """
    target = Target(n_classes, labels=np.array([label]))
    z = x @ coef + intercept
    q = link.proba(z[None, :])[0][-link.n_outputs(n_classes):]  # sigmoid: q of class 1 only
    p = np.array([float(label)]) if link is SIGMOID else target.dense()[0]
    residual = q - p
    grad = np.outer(x, residual)
    params = np.vstack([coef, intercept[None, :]])
    new_params = params - lr * np.vstack([grad, residual[None, :]])
    X = x[None, :]
    result = {"x": x, "z": z, "q": q, "p": p, "residual": residual, "grad_W": grad,
              "grad_b": residual, "update_W": -lr * grad, "update_b": -lr * residual,
              "loss_before": loss_and_grad(params, X, target, link)[0],
              "loss_after": loss_and_grad(new_params, X, target, link)[0], "lr": lr}
    if link is SIGMOID:
        z2 = np.array([0.0, z[0]])
        log_q2 = log_softmax(z2[None, :])[0]
        p2 = target.dense()[0]
        result["softmax"] = {"z": z2, "q": np.exp(log_q2), "p": p2,
                             "residual": np.exp(log_q2) - p2,
                             "grad_W": np.outer(x, np.exp(log_q2) - p2),
                             "loss": float(-log_q2[label])}
    return result
