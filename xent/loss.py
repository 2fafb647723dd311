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
block is used for ``Z_b = X_b W`` and then, while still cached, for ``X_b^T R_b``. Inside a block
the logits are held classes-by-rows, (n_outputs, rows), so that the softmax's reductions over
the classes run along long contiguous rows; blocks are shared among threads.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.special import expit
from threadpoolctl import ThreadpoolController

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


def shuffled_batches(X, target: Target, weights, order: np.ndarray, batch_size: int):
    """Mini-batches (X rows, Target, weights or None) of the rows ``order`` (a permutation),
    ``batch_size`` at a time; each batch's rows in increasing order (faster to gather)."""
    for start in range(0, len(order), batch_size):
        rows = np.sort(order[start:start + batch_size])
        yield X[rows], target.take(rows), None if weights is None else weights[rows]


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


def balanced_class_weight(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Class weights n / (K * count of the class), as scikit-learn's "balanced" (0 for a class
    with no rows)."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    return np.divide(len(labels), n_classes * counts, out=np.zeros(n_classes), where=counts > 0)


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

    logits: (1, m), the block's logits as a row, overwritten by the residual q - p. Per row the
    loss is ``-p log q - (1-p) log(1-q) = log(1 + e^z) - p z`` (from the logit, no log(0)).
    Returns (sum of weighted losses, number of rows predicted right).
    """
    z = logits[0]
    if target.labels is not None:
        truth = target.labels
        p = truth.astype(np.float64)
        if target.smoothing:
            p = p * (1.0 - target.smoothing) + target.smoothing / 2.0
    else:
        p = target.proba[:, 1]
        truth = target.hard_labels()
    n_correct = int(np.count_nonzero((z > 0) == (truth == 1)))
    losses = np.logaddexp(0.0, z)
    losses -= p * z
    expit(z, out=z)
    z -= p
    if weights is not None:
        losses *= weights
        z *= weights
    return float(losses.sum()), n_correct


def _softmax_block(logits, target: Target, weights) -> tuple[float, int]:
    """Loss and residual of one block for the softmax link.

    logits: (K, m), classes by rows (so that every reduction over the classes runs along whole
    rows of length m, which numpy vectorises), overwritten by the residual Q - P. Per row of the
    data the loss is ``log sum_k e^{u_k} - sum_k p_k u_k`` with u the logits less their maximum
    (log-sum-exp: no overflow, no log(0)). Hard labels index the true class; no one-hot matrix is
    built. Returns (sum of weighted losses, number of rows predicted right).

    A row is predicted right when its true class's logit is strictly the largest: after the
    shift that logit is 0 and it is the only 0 (a tie counts as wrong; np.argmax along the
    short class axis would cost more than the rest of the block).
    """
    k, m = logits.shape
    logits -= logits.max(axis=0)
    truth = target.labels if target.labels is not None else target.hard_labels()
    true_entries = truth * m + np.arange(m)  # flat positions of (truth_i, i): faster than 2-D
    flat = logits.reshape(-1)
    true_logit = flat[true_entries]
    at_max = np.count_nonzero(logits == 0.0, axis=0)
    n_correct = int(np.count_nonzero((true_logit == 0.0) & (at_max == 1)))
    if target.labels is not None:
        eps = target.smoothing
        target_term = (1.0 - eps) * true_logit
        if eps:
            target_term += eps * logits.mean(axis=0)
    else:
        target_term = np.einsum("ij,ji->i", target.proba, logits)
    np.exp(logits, out=logits)
    sums = logits.sum(axis=0)
    logits *= 1.0 / sums
    losses = np.log(sums)
    losses -= target_term
    if target.labels is not None:
        flat[true_entries] -= 1.0 - target.smoothing
        if target.smoothing:
            logits -= target.smoothing / k
    else:
        logits -= target.proba.T
    if weights is not None:
        losses *= weights
        logits *= weights
    return float(losses.sum()), n_correct


def block_rows_for(X, n_threads: int = 1) -> int:
    """Rows per block: about ``BLOCK_BYTES`` of X, and at least two blocks per thread when the
    data are large enough, so that every thread has work."""
    n, d = X.shape
    if sp.issparse(X):
        row_bytes = max(1.0, X.nnz / max(n, 1)) * (X.dtype.itemsize + 4)
    else:
        row_bytes = max(d, 1) * X.dtype.itemsize
    rows = int(BLOCK_BYTES // row_bytes)
    if n_threads > 1:
        rows = min(rows, -(-n // (2 * n_threads)))
    return max(64, rows)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


_POOL: ThreadPoolExecutor | None = None
_BLAS: ThreadpoolController | None = None


def single_threaded_blas():
    """A context in which every BLAS library of the process uses one thread (numpy's and
    scipy's each bring an OpenBLAS pool; on few cores the two pools slow each other down)."""
    global _BLAS
    if _BLAS is None:
        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


def thread_pool(n_threads: int):
    """The shared worker pool, and a context that keeps BLAS single-threaded while our threads
    run (two pools of threads on the same cores slow each other down)."""
    global _POOL
    if _POOL is None or _POOL._max_workers < n_threads:
        _POOL = ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="xent")
    return _POOL, single_threaded_blas()


def _accumulate(coef_t, intercept, X, target, link, weights, spans, with_grad, compute_dtype):
    """Sum over the row blocks ``spans`` of the weighted losses, the right predictions and (if
    ``with_grad``) the residuals' products: returns (loss_sum, n_correct, grad_coef_t (k, d),
    grad_intercept (k,)), all sums in float64.

    Each block is used twice while it is in cache: Z^T = W^T X_b^T, then R^T X_b.
    """
    block = _sigmoid_block if link.name == "sigmoid" else _softmax_block
    k, d = coef_t.shape
    grad_coef_t = np.zeros((k, d))
    grad_intercept = np.zeros(k)
    loss_sum, n_correct = 0.0, 0
    sparse = sp.issparse(X)
    for start, stop in spans:
        X_block = X[start:stop]
        if X_block.dtype != compute_dtype:
            X_block = X_block.astype(compute_dtype)  # one block at a time: float32 storage
        if sparse:
            logits = np.ascontiguousarray((X_block @ coef_t.T).T, dtype=np.float64)
        else:
            logits = np.asarray(coef_t @ X_block.T, dtype=np.float64)
        logits += intercept[:, None]
        w_block = None if weights is None else weights[start:stop]
        block_loss, block_correct = block(logits, target.take(slice(start, stop)), w_block)
        loss_sum += block_loss
        n_correct += block_correct
        if with_grad:
            residual = logits if compute_dtype == np.float64 else logits.astype(compute_dtype)
            if sparse:
                grad_coef_t += (X_block.T @ residual.T).T
            else:
                grad_coef_t += residual @ X_block
            grad_intercept += logits.sum(axis=1)
    return loss_sum, n_correct, grad_coef_t, grad_intercept


class Sums(NamedTuple):
    """What a pass over some rows adds up: weighted losses, right predictions, the gradient's
    sums X^T R (as R^T X: (n_outputs, n_features)) and sum R, the rows and their weight."""

    loss: float
    n_correct: int
    grad_coef_t: np.ndarray
    grad_intercept: np.ndarray
    n_rows: int
    weight: float

    def __add__(self, other: Sums) -> Sums:
        return Sums(self.loss + other.loss, self.n_correct + other.n_correct,
                    self.grad_coef_t + other.grad_coef_t,
                    self.grad_intercept + other.grad_intercept,
                    self.n_rows + other.n_rows, self.weight + other.weight)


def sums(params, X, target: Target, link: Link, weights=None, *, block_rows=None,
         with_grad=True, n_threads=None, compute_dtype=None) -> Sums:
    """The sums of the objective over the rows of X (dense or CSR), in row blocks.

    Dense X of several blocks is shared out among ``n_threads`` threads (default: the cores
    this process may use), each summing its own contiguous run of blocks; the partial sums are
    added in a fixed order, so the result does not depend on timing. Products are taken in
    ``compute_dtype`` (default X's dtype), sums in float64.
    """
    n, d = X.shape
    compute_dtype = np.dtype(compute_dtype or X.dtype)
    coef_t = np.ascontiguousarray(params[:d].T, dtype=compute_dtype)
    threads = available_cores() if n_threads is None else max(1, n_threads)
    if sp.issparse(X):
        threads = 1  # scipy's sparse products hold the GIL: threads would only queue
    step = block_rows or block_rows_for(X, threads)
    spans = [(start, min(start + step, n)) for start in range(0, n, step)]
    threads = min(threads, len(spans) // 2) if len(spans) >= 4 else 1
    args = (coef_t, params[d], X, target, link, weights)
    if threads > 1:
        pool, single_blas = thread_pool(threads)
        groups = np.array_split(np.arange(len(spans)), threads)
        with single_blas:
            parts = list(pool.map(
                lambda group: _accumulate(*args, [spans[i] for i in group], with_grad,
                                          compute_dtype),
                groups))
    else:
        parts = [_accumulate(*args, spans, with_grad, compute_dtype)]
    weight = float(n) if weights is None else float(np.sum(weights))
    return Sums(sum(p[0] for p in parts), sum(p[1] for p in parts), sum(p[2] for p in parts),
                sum(p[3] for p in parts), n, weight)


def finish(params, totals: Sums, l2: float = 0.0, *, fit_intercept=True,
           with_grad=True) -> LossGrad:
    """The objective and gradient from the sums over all rows: divide by the total weight and
    add the penalty l2/2 ||W||^2 (and l2 W)."""
    d = params.shape[0] - 1
    coef = params[:d]
    grad = np.zeros_like(params, dtype=np.float64)
    grad[:d] = totals.grad_coef_t.T
    grad[d] = totals.grad_intercept
    grad /= totals.weight
    if not fit_intercept:
        grad[d] = 0.0
    data_loss = totals.loss / totals.weight
    objective = data_loss
    if l2:
        objective += 0.5 * l2 * float(np.sum(coef * coef))
        if with_grad:
            grad[:d] += l2 * coef
    return LossGrad(objective, grad, data_loss, totals.n_correct / max(totals.n_rows, 1))


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
    n_threads: int | None = None,
    compute_dtype=None,
) -> LossGrad:
    """Objective, gradient, data loss and accuracy at ``params`` in one pass over X.

    params: (n_features + 1, n_outputs) float64, W stacked over b.
    X: (n_samples, n_features), dense or scipy.sparse CSR, float64 or float32. Products are
    taken in X's dtype, the loss and gradient summed in float64. X may also be a source that
    adds up its own parts (an object with ``sums(params, link, **options)``: streamed or Dask
    data, see ``xent.stream`` and ``xent.dask_engine``); ``target`` and ``weights`` are then
    its own.
    weights: (n_samples,) or None. The mean divides by their sum (n_samples when None).
    With ``with_grad=False`` (validation) the second product is skipped and ``grad`` is zero.
    ``compute_dtype`` float64 with float32 X converts each block to float64 before its products:
    the exact objective of the stored data, at float64 cost (for a final check).
    """
    options = dict(block_rows=block_rows, with_grad=with_grad, n_threads=n_threads,
                   compute_dtype=compute_dtype)
    if hasattr(X, "sums"):  # a source that adds up its own parts
        totals = X.sums(params, link, **options)
    else:
        totals = sums(params, X, target, link, weights, **options)
    return finish(params, totals, l2, fit_intercept=fit_intercept, with_grad=with_grad)


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
    X may be a streamed source (``chunks()``), whose weights are then its own.
    """
    d = X.shape[1]
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(d + 1)
    if not fit_intercept:
        v[d] = 0.0
    eigenvalue = 0.0
    for _ in range(n_iter):
        v /= np.linalg.norm(v)
        new_v = np.zeros(d + 1)
        total_weight = 0.0
        if hasattr(X, "gram_product"):  # a source that multiplies where its data are
            new_v, total_weight = X.gram_product(v, fit_intercept)
            parts = []
        else:
            parts = X.chunks() if hasattr(X, "chunks") else [(X, None, weights)]
        for X_part, _target, w_part in parts:  # Xa^T D Xa v, one part of the rows at a time
            u = np.asarray(X_part @ v[:d]).ravel() + (v[d] if fit_intercept else 0.0)
            if w_part is not None:
                u *= w_part
            new_v[:d] += np.asarray(X_part.T @ u).ravel()
            new_v[d] += u.sum() if fit_intercept else 0.0
            total_weight += X_part.shape[0] if w_part is None else float(w_part.sum())
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
