"""Cross-entropy and THE gradient.

For logits ``Z = X W + b`` (n_samples, n_outputs), predictions ``Q = link(Z)`` and targets ``P``,
the training objective is

    J(W, b) = sum_i w_i * H(P_i, Q_i) / sum_i w_i  +  l2 / 2 * ||W||^2

and its gradient, for both links, is

    dJ/dW = X^T (w * (Q - P)) / sum_i w_i + l2 * W        dJ/db = sum_i w_i (Q_i - P_i) / sum_i w_i

(the bias is not penalised). With no weights, ``sum_i w_i = n_samples``: the mean
cross-entropy. ``loss_and_grad`` is the one place this is computed; every optimiser, full batch
or mini-batch, calls it.

Parameters live in one float64 array ``params`` of shape (n_features + 1, n_outputs): rows
``0..d-1`` are W, the last row is b. ``params.ravel()`` is then the flat vector that scipy's
L-BFGS wants, with no copy.

X is read once per evaluation: it is walked in row blocks small enough to stay in cache, and each
block is used for ``Z_b = X_b W`` and then, while still cached, for ``X_b^T R_b``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.special import expit

from .errors import DataError
from .links import Link

#: Bytes of X per row block: a few MiB, so a block stays in the L2/L3 cache between the two
#: matrix products.
BLOCK_BYTES = 4 << 20


@dataclass(frozen=True)
class Target:
    """What the model should predict for each row.

    Either hard labels (``labels``: (n_samples,) class indices in ``[0, n_classes)``), optionally
    smoothed towards the uniform distribution by ``smoothing`` (label smoothing: P = (1 - eps)
    onehot + eps / n_classes, never built as a matrix), or soft labels (``proba``:
    (n_samples, n_classes) rows of probabilities that sum to 1).
    """

    n_classes: int
    labels: np.ndarray | None = None
    proba: np.ndarray | None = None
    smoothing: float = 0.0

    @property
    def n_samples(self) -> int:
        return len(self.labels) if self.labels is not None else len(self.proba)

    def take(self, rows) -> Target:
        """The target of a subset of rows (a slice or an index array)."""
        return Target(
            self.n_classes,
            None if self.labels is None else self.labels[rows],
            None if self.proba is None else self.proba[rows],
            self.smoothing,
        )

    def hard_labels(self) -> np.ndarray:
        """Class indices (n_samples,): the labels, or the most probable class of each soft row."""
        return self.labels if self.labels is not None else np.argmax(self.proba, axis=1)

    def dense(self) -> np.ndarray:
        """The target distribution P as a matrix (n_samples, n_classes). For display and tests."""
        if self.proba is not None:
            return self.proba
        eps = self.smoothing
        dense = np.full((self.n_samples, self.n_classes), eps / self.n_classes)
        dense[np.arange(self.n_samples), self.labels] += 1.0 - eps
        return dense


def labels_target(labels, n_classes: int, smoothing: float = 0.0) -> Target:
    """A hard-label target from class indices (n_samples,), checked."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError("labels must be a 1-D array of class indices")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(f"class indices must lie in [0, {n_classes})")
    if not 0.0 <= smoothing < 1.0:
        raise DataError(f"label smoothing must be in [0, 1), got {smoothing}")
    return Target(n_classes, labels=labels.astype(np.intp, copy=False), smoothing=float(smoothing))


def proba_target(proba, atol: float = 1e-6) -> Target:
    """A soft target from rows of probabilities (n_samples, n_classes).

    A 1-D array is read as the probability of the second class of a binary problem.
    """
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim == 1:
        proba = np.column_stack([1.0 - proba, proba])
    if proba.ndim != 2 or proba.shape[1] < 2:
        raise DataError("soft targets must be (n_samples, n_classes) with at least 2 classes")
    if not np.all(np.isfinite(proba)) or proba.min() < 0 or proba.max() > 1:
        raise DataError("soft targets must be probabilities in [0, 1]")
    sums = proba.sum(axis=1)
    if np.any(np.abs(sums - 1.0) > atol):
        bad = int(np.argmax(np.abs(sums - 1.0)))
        raise DataError(f"soft target rows must sum to 1: row {bad} sums to {sums[bad]:.6g}")
    return Target(proba.shape[1], proba=proba)


def class_weighted(target: Target, sample_weight=None, class_weight=None) -> np.ndarray | None:
    """Per-sample weights w_i = sample_weight_i * class_weight[class of i].

    For soft targets the class weight of row i is the P_i-weighted mean sum_k P_ik c_k.
    Returns None when neither is given (the unweighted mean).
    """
    if sample_weight is None and class_weight is None:
        return None
    n = target.n_samples
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n,):
        raise DataError(f"sample weights must have shape ({n},), got {w.shape}")
    if not np.all(np.isfinite(w)) or w.min() < 0 or w.sum() <= 0:
        raise DataError("sample weights must be finite, non-negative and not all zero")
    if class_weight is not None:
        c = np.asarray(class_weight, dtype=np.float64)
        per_row = c[target.labels] if target.labels is not None else target.proba @ c
        w = w * per_row
    return w


def target_entropy(target: Target, weights: np.ndarray | None = None) -> float:
    """Mean entropy H(P_i) = -sum_k p_ik log p_ik of the targets (weighted like the loss).

    No model gets below it: CE(P, Q) = H(P) + KL(P || Q) and KL >= 0. It is 0 for one-hot
    targets.
    """
    if target.proba is not None:
        P = target.proba
        logs = np.log(P, out=np.zeros_like(P), where=P > 0)
        per_row = -np.sum(P * logs, axis=1)
    else:
        eps, k = target.smoothing, target.n_classes
        if not eps:
            return 0.0
        top, rest = 1.0 - eps + eps / k, eps / k
        per_row = np.full(target.n_samples, -top * np.log(top) - (k - 1) * rest * np.log(rest))
    if weights is None:
        return float(per_row.mean())
    return float(np.sum(weights * per_row) / np.sum(weights))


class LossGrad(NamedTuple):
    """One evaluation: the objective J (penalty included), its gradient (n_features + 1,
    n_outputs), the data cross-entropy alone, and the fraction of rows whose most probable class
    is the target's."""

    objective: float
    grad: np.ndarray
    data_loss: float
    accuracy: float


def _sigmoid_block(logits, target: Target, weights) -> tuple[float, int]:
    """Loss and residual of one block for the sigmoid link.

    logits: (m, 1), overwritten by the residual q - p. Per row the loss is
    ``-p log q - (1-p) log(1-q) = log(1 + e^z) - p z`` (from the logit, no log(0)).
    Returns (sum of weighted losses, number of rows predicted right).
    """
    z = logits[:, 0]
    if target.labels is not None:
        truth = target.labels
        p = truth.astype(np.float64)
        if target.smoothing:
            p = p * (1.0 - target.smoothing) + target.smoothing / 2.0
    else:
        p = target.proba[:, 1]
        truth = target.hard_labels()
    n_correct = int(np.count_nonzero((z > 0) == (truth == 1)))
    losses = np.logaddexp(0.0, z) - p * z
    expit(z, out=z)
    z -= p
    if weights is not None:
        losses *= weights
        z *= weights
    return float(losses.sum()), n_correct


def _softmax_block(logits, target: Target, weights) -> tuple[float, int]:
    """Loss and residual of one block for the softmax link.

    logits: (m, K), overwritten by the residual Q - P. Per row the loss is
    ``log sum_k e^{u_k} - sum_k p_k u_k`` with u the logits less their row maximum (log-sum-exp:
    no overflow, no log(0)). Hard labels index the true column; no one-hot matrix is built.
    Returns (sum of weighted losses, number of rows predicted right).
    """
    m, k = logits.shape
    predicted = np.argmax(logits, axis=1)
    logits -= logits.max(axis=1, keepdims=True)
    rows = np.arange(m)
    if target.labels is not None:
        truth = target.labels
        eps = target.smoothing
        target_term = (1.0 - eps) * logits[rows, truth]
        if eps:
            target_term += eps * logits.mean(axis=1)
    else:
        truth = target.hard_labels()
        target_term = np.einsum("ij,ij->i", target.proba, logits)
    np.exp(logits, out=logits)
    sums = logits.sum(axis=1)
    logits /= sums[:, None]
    losses = np.log(sums)
    losses -= target_term
    if target.labels is not None:
        logits[rows, truth] -= 1.0 - target.smoothing
        if target.smoothing:
            logits -= target.smoothing / k
    else:
        logits -= target.proba
    if weights is not None:
        losses *= weights
        logits *= weights[:, None]
    return float(losses.sum()), int(np.count_nonzero(predicted == truth))


def block_rows_for(X) -> int:
    """Rows per block so that a block of X takes about ``BLOCK_BYTES``."""
    n, d = X.shape
    if sp.issparse(X):
        row_bytes = max(1.0, X.nnz / max(n, 1)) * (X.dtype.itemsize + 4)
    else:
        row_bytes = max(d, 1) * X.dtype.itemsize
    return int(max(64, BLOCK_BYTES // row_bytes))


def evaluate(
    params: np.ndarray,
    X,
    target: Target,
    link: Link,
    l2: float = 0.0,
    weights: np.ndarray | None = None,
    *,
    fit_intercept: bool = True,
    block_rows: int | None = None,
    with_grad: bool = True,
) -> LossGrad:
    """Objective, gradient, data loss and accuracy at ``params`` in one pass over X.

    With ``with_grad=False`` (validation) the second product X^T R is skipped and ``grad`` is
    zero.

    params: (n_features + 1, n_outputs) float64, W stacked over b.
    X: (n_samples, n_features), dense or scipy.sparse CSR, float64 or float32. Products are
    taken in X's dtype, the loss and gradient summed in float64.
    weights: (n_samples,) or None. The mean divides by their sum (n_samples when None).
    """
    n, d = X.shape
    coef, intercept = params[:d], params[d]
    coef_x = coef if X.dtype == np.float64 else coef.astype(X.dtype)
    block = _sigmoid_block if link.name == "sigmoid" else _softmax_block
    grad = np.zeros_like(params, dtype=np.float64)
    grad_coef = grad[:d]
    loss_sum = 0.0
    n_correct = 0
    step = block_rows or block_rows_for(X)
    for start in range(0, n, step):
        stop = min(start + step, n)
        X_block = X[start:stop]
        logits = np.asarray(X_block @ coef_x, dtype=np.float64)
        logits += intercept
        w_block = None if weights is None else weights[start:stop]
        block_loss, block_correct = block(logits, target.take(slice(start, stop)), w_block)
        loss_sum += block_loss
        n_correct += block_correct
        if with_grad:
            residual = logits if X.dtype == np.float64 else logits.astype(X.dtype)
            grad_coef += X_block.T @ residual
            grad[d] += logits.sum(axis=0)
    total_weight = float(n) if weights is None else float(weights.sum())
    grad /= total_weight
    if not fit_intercept:
        grad[d] = 0.0
    data_loss = loss_sum / total_weight
    objective = data_loss
    if l2:
        objective += 0.5 * l2 * float(np.sum(coef * coef))
        if with_grad:
            grad_coef += l2 * coef
    return LossGrad(objective, grad, data_loss, n_correct / max(n, 1))


def loss_and_grad(params, X, target, link, l2=0.0, weights=None, **kwargs):
    """(objective, gradient) at ``params``: the function every optimiser calls.

    See ``evaluate`` for the shapes; this drops the extra statistics.
    """
    result = evaluate(params, X, target, link, l2, weights, **kwargs)
    return result.objective, result.grad


def lipschitz_bound(
    X,
    link: Link,
    l2: float = 0.0,
    weights: np.ndarray | None = None,
    *,
    fit_intercept: bool = True,
    n_iter: int = 100,
    seed: int = 0,
) -> float:
    """An estimate of the Lipschitz constant L of the objective's gradient.

    The Hessian of the cross-entropy with respect to one row's logits is diag(q) - q q^T, whose
    largest eigenvalue is at most 1/2 (at most 1/4 for the sigmoid's single logit). So
    ``L <= c * lambda_max(Xa^T D Xa / sum w) + l2``, with Xa = [X, 1] (the bias column, when
    fitted), D = diag(w) and c = 1/4 (sigmoid) or 1/2 (softmax). lambda_max comes from power
    iteration; since power iteration approaches it from below, the estimate is raised by 2%.
    A step of 1/L then decreases the objective at every iteration of gradient descent.
    """
    n, d = X.shape
    total_weight = float(n) if weights is None else float(weights.sum())
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(d + 1)
    if not fit_intercept:
        v[d] = 0.0
    eigenvalue = 0.0
    for _ in range(n_iter):
        v /= np.linalg.norm(v)
        u = np.asarray(X @ v[:d]).ravel() + (v[d] if fit_intercept else 0.0)
        if weights is not None:
            u *= weights
        new_v = np.empty(d + 1)
        new_v[:d] = np.asarray(X.T @ u).ravel()
        new_v[d] = u.sum() if fit_intercept else 0.0
        new_v /= total_weight
        new_eigenvalue = float(v @ new_v)
        v = new_v
        if abs(new_eigenvalue - eigenvalue) <= 1e-6 * abs(new_eigenvalue):
            eigenvalue = new_eigenvalue
            break
        eigenvalue = new_eigenvalue
    curvature = 0.25 if link.name == "sigmoid" else 0.5
    return curvature * eigenvalue * 1.02 + l2


def cross_entropy(target, pred) -> float:
    """H(P, Q) = -sum_x P(x) log Q(x) for one target distribution and one prediction.

    Terms with P(x) = 0 contribute 0 (the limit p log q -> 0), so a zero prediction for a class
    that is not the target is fine; a zero prediction for a class the target gives weight to is
    an infinite loss, as it should be.
    """
    p = np.asarray(target, dtype=np.float64)
    q = np.asarray(pred, dtype=np.float64)
    support = p > 0
    with np.errstate(divide="ignore"):
        return float(-np.sum(p[support] * np.log(q[support])))


def binary_cross_entropy(p: float, q: float) -> float:
    """-p log q - (1-p) log(1-q): the cross-entropy of (p, 1-p) against (q, 1-q)."""
    return cross_entropy([p, 1.0 - p], [q, 1.0 - q])
