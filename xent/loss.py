"""Cross-entropy and THE gradient.

For logits ``Z = X W + b`` (n_samples, n_outputs), predictions ``Q = link(Z)`` and targets ``P``,
the training objective is

    J(W, b) = sum_i w_i * H(P_i, Q_i) / sum_i w_i  +  l2 / 2 * ||W||^2

and its gradient, for both links, is

    dJ/dW = X^T (w * (Q - P)) / sum_i w_i + l2 * W        dJ/db = sum_i w_i (Q_i - P_i) / sum_i w_i

(the bias is not penalised). With no weights, ``sum_i w_i = n_samples``: the mean
cross-entropy. ``sums`` (the sums of one array's rows) and ``finish`` (divide, add the penalty)
are the one place this is computed: every row source (in memory, streamed, Dask; see
``xent.sources``) adds up its rows with ``sums``, and every optimiser, full batch or mini-batch,
calls ``Objective.evaluate``.

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
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import scipy.sparse as sp

from . import kernels
from .errors import DataError
from .links import Link
from .targets import (  # noqa: F401  (the math's public names, importable from here)
    Target,
    class_weights,
    labels_target,
    proba_target,
    row_weights,
    target_entropy,
)
from .threads import items_for, on_threads, thread_count

if TYPE_CHECKING:
    from .sources import RowSource

#: Bytes of X per row block: a few MiB, so a block stays in the L2/L3 cache between the two
#: matrix products.
BLOCK_BYTES = 4 << 20


class LossGrad(NamedTuple):
    """One evaluation: the objective J (penalty included), its gradient (n_features + 1,
    n_outputs), the data cross-entropy alone, and the fraction of rows whose most probable class
    is the target's."""

    objective: float
    grad: np.ndarray
    data_loss: float
    accuracy: float
    #: with an L1 penalty, the minimum-norm subgradient of the whole objective (zero exactly at
    #: the optimum, where ``grad``, the smooth part's gradient, is not); else None
    stationarity: np.ndarray | None = None


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


def block_runs(n: int, step: int, threads: int) -> tuple[int, list[list[tuple[int, int]]]]:
    """Rows 0..n in blocks of ``step`` (start, stop), as contiguous runs of blocks, one a
    thread: (the threads used, the runs). Two blocks a thread at least, and one thread for
    fewer than four blocks."""
    spans = [(start, min(start + step, n)) for start in range(0, n, step)]
    threads = min(threads, len(spans) // 2) if len(spans) >= 4 else 1
    runs = [[spans[i] for i in group] for group in np.array_split(np.arange(len(spans)), threads)]
    return threads, runs


def _accumulate(coef_t, intercept, X, target, link, weights, spans, with_grad, compute_dtype):
    """Sum over the row blocks ``spans`` of the weighted losses, the right predictions and (if
    ``with_grad``) the residuals' products: returns (loss_sum, n_correct, grad_coef_t (k, d),
    grad_intercept (k,)), all sums in float64.

    Each block is used twice while it is in cache: Z^T = W^T X_b^T, then R^T X_b.
    """
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
        block_loss, block_correct = link.block(logits, target.take(slice(start, stop)), w_block)
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

    @classmethod
    def zero(cls, n_outputs: int, n_features: int) -> Sums:
        """The sums over no rows."""
        return cls(0.0, 0, np.zeros((n_outputs, n_features)), np.zeros(n_outputs), 0, 0.0)

    def __add__(self, other: Sums) -> Sums:
        return Sums(self.loss + other.loss, self.n_correct + other.n_correct,
                    self.grad_coef_t + other.grad_coef_t,
                    self.grad_intercept + other.grad_intercept,
                    self.n_rows + other.n_rows, self.weight + other.weight)

    def accumulate(self, other: Sums) -> Sums:
        """``self + other`` with ``other``'s arrays added into ``self``'s in place, for sums
        whose arrays are their own: a W-sized gradient (hashed text: tens of MB) is not
        allocated again for every block or partition added."""
        np.add(self.grad_coef_t, other.grad_coef_t, out=self.grad_coef_t)
        np.add(self.grad_intercept, other.grad_intercept, out=self.grad_intercept)
        return self._replace(loss=self.loss + other.loss,
                             n_correct=self.n_correct + other.n_correct,
                             n_rows=self.n_rows + other.n_rows,
                             weight=self.weight + other.weight)


#: the compiled kernels (``kernels.py``) take data of at least this many stored values; below
#: it numba's import and the kernels' load (about 0.4 s, once) cost more than they save, and
#: the numpy reference (``_accumulate``) runs. $XENT_KERNELS = 1 or 0 forces them on or off.
KERNEL_MIN_VALUES = 100_000
#: the least work a thread takes (``work_of``, in multiply-adds): data with less work for each
#: thread run on fewer threads. A thread handed work costs its wake-up and hand-offs of the GIL,
#: tens to hundreds of microseconds on a virtual machine: 4,096 rows of 50 features took 3
#: times as long on 2 threads as on one, 8,192 rows twice (a sigmoid; the rule before was
#: 2,048 rows a thread, whatever their work). On 2 threads here (``bench/bench_sizes.py``), a
#: sigmoid's 16,384 rows (2.7 million) took 1.01-1.05 times one thread's time and 32,768 rows
#: (5.4 million) 0.79-0.80; ten classes' 4,096 rows (6.7 million) 0.89-1.12, 8,192 rows (13
#: million) 0.81-0.96. A second thread from 8.4 million errs towards fewer. This is about
#: 0.6 ms of one core for a sigmoid, 0.3 ms for ten classes
KERNEL_THREAD_WORK = 1 << 22
#: a row's link (its exps, log and residual) counted as this many multiply-adds an output
#: (``work_of``): ten classes cost about 57 ns a row beside 0.15 ns a stored value an output
LINK_WORK = 64
#: the most memory the kernels' gradient buffers (one a chunk of rows) may take (CSR with many
#: features)
KERNEL_BUFFER_BYTES = 256 << 20


def use_kernels(X) -> bool:
    """Whether ``sums`` runs the compiled kernels on X: C-ordered dense or CSR data of at least
    ``KERNEL_MIN_VALUES`` values, float32 or float64, unless $XENT_KERNELS says otherwise."""
    forced = os.environ.get("XENT_KERNELS", "")
    if forced == "0":
        return False
    if sp.issparse(X):
        fits = X.format == "csr" and X.dtype in (np.float32, np.float64)
        size = X.nnz
    else:
        fits = isinstance(X, np.ndarray) and X.flags.c_contiguous and \
            X.dtype in (np.float32, np.float64)
        size = X.size
    return fits and (forced == "1" or size >= KERNEL_MIN_VALUES)


def work_of(X, n_outputs: int) -> float:
    """The work of one evaluation of X's rows (``rows_work``)."""
    sparse = sp.issparse(X)
    return rows_work(X.shape[0], X.nnz if sparse else X.shape[0] * X.shape[1], sparse, n_outputs)


def rows_work(n_rows: int, stored: int, sparse: bool, n_outputs: int) -> float:
    """The work of one evaluation of ``n_rows`` rows holding ``stored`` values, in
    multiply-adds, roughly: each stored value twice an output (its logit's product and its
    gradient's; a CSR value twice again: an index to read and an add scattered), and
    ``LINK_WORK`` a row an output for the links."""
    return n_outputs * (2.0 * stored * (2 if sparse else 1) + LINK_WORK * n_rows)


def threads_for(work: float, threads: int) -> int:
    """How many of ``threads`` threads an evaluation of ``work`` multiply-adds (``work_of``)
    repays: at most one a ``KERNEL_THREAD_WORK`` of it, at least one."""
    return max(1, min(threads, int(work // KERNEL_THREAD_WORK)))


def _kernel_threads(X, threads: int, n_outputs: int) -> int:
    """How many of ``threads`` threads the kernels use on X: those its work repays
    (``threads_for``), and no more than its rows (a few rows of hashed text can be work for
    many threads, each of which needs a row of its own)."""
    return max(1, min(threads_for(work_of(X, n_outputs), threads), X.shape[0]))


def _kernel_chunks(X, threads: int, n_outputs: int, buffers: bool
                   ) -> tuple[int, list[tuple[int, int]]]:
    """The threads the kernels use on X (``_kernel_threads``), and the contiguous runs of rows
    (chunks) those threads take in turn (``threads.on_threads``): a few chunks a thread
    (``threads.items_for``) where there is more than one, so that a thread on a busy core takes
    fewer, and no more chunks than rows. With a gradient buffer per chunk (``buffers``), the
    chunks' buffers fit in ``KERNEL_BUFFER_BYTES`` (one a thread at least)."""
    n, d = X.shape
    fit = KERNEL_BUFFER_BYTES // max(8 * n_outputs * (d + 1) if buffers else 0, 1)
    threads = max(1, min(_kernel_threads(X, threads, n_outputs), fit))
    chunks = 1 if threads == 1 else items_for(threads, min(fit, n))  # both >= threads
    bounds = [n * c // chunks for c in range(chunks + 1)]
    return threads, list(zip(bounds[:-1], bounds[1:], strict=True))


def _by_columns(X, threads: int, n_outputs: int, with_grad: bool) -> bool:
    """Whether the CSR kernels sum X^T R by ranges of columns (``kernels.csr_by_columns``: R
    and one gradient) rather than with a gradient per thread: when a gradient per thread
    would take more than R does, i.e. the threads the kernels use (``_kernel_threads``, more
    than one) times the features exceed the rows (hashed text)."""
    if not (sp.issparse(X) and with_grad):
        return False
    threads = _kernel_threads(X, threads, n_outputs)
    return threads > 1 and threads * X.shape[1] > X.shape[0]


def sums(params, X, target: Target, link: Link, weights=None, *, block_rows=None,
         with_grad=True, n_threads=None, compute_dtype=None, into: Sums | None = None) -> Sums:
    """The sums of the objective over the rows of X (dense or CSR), added to ``into`` (its
    arrays updated in place: a source's blocks summed one after another share one gradient)
    when given.

    X's rows are cut into contiguous chunks, which ``n_threads`` threads (default: the cores
    this process may use; fewer where the work would not repay them, ``threads_for``) take in
    turn (``threads.on_threads``); the chunks' sums are added in the rows' order, so the
    result does not depend on timing (wide CSR: ``_by_columns``). Large data go through the
    compiled kernels (``use_kernels``), which release the GIL; otherwise numpy sums dense X in
    row blocks (``block_rows``), CSR on one thread (scipy's sparse products hold the GIL).
    Products are taken in ``compute_dtype`` (default X's dtype), sums in float64.
    """
    n, d = X.shape
    compute_dtype = np.dtype(compute_dtype or X.dtype)
    threads = thread_count() if n_threads is None else max(1, n_threads)
    intercept = params[d]
    weight = float(n) if weights is None else float(np.sum(weights))
    kernel = use_kernels(X)
    if kernel:
        given = kernels.inputs(X, params[:d], intercept, target, weights, compute_dtype)
        parts, added_in = _kernel_parts(given, X, link.kernel_softmax, threads, with_grad, into)
        if added_in:
            ((loss, right, _, _),) = parts
            return into._replace(loss=into.loss + loss, n_correct=into.n_correct + right,
                                 n_rows=into.n_rows + n, weight=into.weight + weight)
    else:
        coef_t = np.ascontiguousarray(params[:d].T, dtype=compute_dtype)
        if sp.issparse(X):
            threads = 1  # scipy's sparse products hold the GIL: threads would only queue
        threads = threads_for(work_of(X, params.shape[1]), threads)
        threads, runs = block_runs(n, block_rows or block_rows_for(X, threads), threads)

        def work(run):
            return _accumulate(coef_t, intercept, X, target, link, weights, run, with_grad,
                               compute_dtype)

        parts = on_threads(work, runs, threads)
    grad_coef = parts[0][2]
    for part in parts[1:] if with_grad else ():  # in place, in a fixed order: each sum is
        grad_coef += part[2]  # W-sized (text: tens of MB); without a gradient all are zeros
    if kernel:
        grad_coef = kernels.as_grad_coef_t(X, grad_coef)
    grad_intercept = parts[0][3] if len(parts) == 1 else sum(p[3] for p in parts)
    result = Sums(sum(p[0] for p in parts), sum(p[1] for p in parts), grad_coef,
                  grad_intercept, n, weight)
    return result if into is None else into.accumulate(result)


def _kernel_parts(given: kernels.Inputs, X, softmax: bool, threads: int, with_grad: bool,
                  into: Sums | None) -> tuple[list[tuple], bool]:
    """The compiled kernels' sums of X's rows, as ``kernels.run_sums``'s (loss, right, grad,
    grad_b), one part a chunk of rows in the rows' order (``_kernel_chunks``, taken in turn by
    the threads); wide CSR in one part, by columns (``_by_columns``). Where the rows are one
    part and ``into``'s arrays are in the kernels' layout, the kernels add the gradient into
    them (True: the one part's loss and count are still to be added)."""
    n_outputs = given.params.intercept.shape[0]  # coef is (k, d) for dense X, (d, k) for CSR
    by_columns = _by_columns(X, threads, n_outputs, with_grad)
    threads, chunks = _kernel_chunks(X, threads, n_outputs, buffers=with_grad and not by_columns)
    if by_columns or len(chunks) == 1:
        out = None if into is None else kernels.kernel_layout(X, into)
        if by_columns:
            return [kernels.csr_by_columns(given, X, softmax, threads, out=out)], out is not None
        return [kernels.run_sums(given, X, softmax, 0, X.shape[0], with_grad, *(out or ()))], \
            out is not None

    def chunk_sums(chunk):
        return kernels.run_sums(given, X, softmax, chunk[0], chunk[1], with_grad)

    return on_threads(chunk_sums, chunks, threads), False


def penalised(l2: float, l1: float = 0.0, smoothing: float = 0.0) -> bool:
    """Whether the objective has a finite minimiser whatever the data: an l2 or l1 penalty,
    or smoothed targets (every class some mass). Without any, separable rows have none: the
    loss falls towards 0 as W grows along a separating direction."""
    return bool(l2 or l1 or smoothing)


@dataclass(frozen=True)
class Objective:
    """What training minimises, apart from the data:

        J(W, b) = sum_i w_i H(P_i, Q_i) / sum_i w_i + l2 / 2 ||W||^2 + l1 ||W||_1,
        Q = link(X W + b)

    ``fit_intercept`` False fixes b at its starting value (its gradient is zeroed)."""

    link: Link
    l2: float = 0.0
    fit_intercept: bool = True
    l1: float = 0.0  # + l1 ||W||_1: proximal steps (gd, nesterov) handle it, not the gradient

    def n_params(self, n_features: int, n_classes: int) -> tuple[int, int]:
        """The shape of ``params``: (n_features + 1, n_outputs), W stacked over b."""
        return n_features + 1, self.link.n_outputs(n_classes)

    def evaluate(self, params, source: RowSource, *, with_grad: bool = True,
                 compute_dtype=None) -> LossGrad:
        """The objective, gradient, data loss and accuracy of ``source``'s rows at ``params``:
        the source adds up its rows' ``Sums`` wherever they are, ``finish`` does the rest."""
        totals = source.sums(params, self.link, with_grad=with_grad,
                             compute_dtype=compute_dtype)
        return finish(params, totals, self, with_grad=with_grad)


def finish(params, totals: Sums, objective: Objective, *, with_grad=True) -> LossGrad:
    """The objective and gradient from the sums over all rows: divide by the total weight and
    add the penalty l2/2 ||W||^2 (and l2 W). Without ``with_grad`` the gradient is zero, a
    read-only view taking no memory. ``totals`` is the caller's to drop: where its sums are the
    rows of one array (``summed_as_params``) the gradient is made there, not copied."""
    d = params.shape[0] - 1
    coef = params[:d]
    weight = totals.weight if totals.weight > 0 else 1.0
    if with_grad:
        grad = summed_as_params(totals, params.shape)
        if grad is None:
            grad = np.empty(params.shape)
            np.divide(totals.grad_coef_t.T, weight, out=grad[:d])
            np.divide(totals.grad_intercept, weight, out=grad[d])
        else:
            grad /= weight
        if not objective.fit_intercept:
            grad[d] = 0.0
    else:  # zero, read-only, and no memory: with hashed text W-sized arrays are tens of MB
        grad = np.broadcast_to(np.zeros(()), params.shape)
    data_loss = totals.loss / weight
    value = data_loss
    l2 = objective.l2
    if l2:
        value += 0.5 * l2 * _add_l2(coef, l2, grad[:d] if with_grad else None)
    stationarity = None
    if objective.l1:
        value += objective.l1 * float(np.sum(np.abs(coef)))
        if with_grad:
            stationarity = min_norm_subgradient(grad, coef, objective.l1)
    return LossGrad(value, grad, data_loss, totals.n_correct / max(totals.n_rows, 1),
                    stationarity)


def summed_as_params(totals: Sums, shape: tuple[int, int]) -> np.ndarray | None:
    """The writable float64 array of ``shape`` (d + 1, k) whose first d rows are
    ``totals.grad_coef_t.T`` and whose last is ``totals.grad_intercept``, when the sums were
    made that way (``kernels.csr_by_columns``), else None. The views are checked against it,
    so sums replaced or added up since are never mistaken for it."""
    coef, base = totals.grad_coef_t.T, totals.grad_coef_t.base
    if not isinstance(base, np.ndarray) or base.shape != shape or base.dtype != np.float64 \
            or not (base.flags.c_contiguous and base.flags.writeable):
        return None

    def address(array):
        return array.__array_interface__["data"][0]

    start, row = address(base), base.strides[0]
    laid_out = (coef.shape == (shape[0] - 1, shape[1]) and coef.strides == base.strides
                and address(coef) == start and totals.grad_intercept.shape == (shape[1],)
                and address(totals.grad_intercept) == start + row * (shape[0] - 1)
                and totals.grad_intercept.strides == base.strides[1:])
    return base if laid_out else None


#: values of W taken at a time by ``_add_l2``: its temporaries stay this small
PENALTY_BLOCK_VALUES = 1 << 16


def _add_l2(coef: np.ndarray, l2: float, grad_coef: np.ndarray | None) -> float:
    """||W||^2, adding l2 W into ``grad_coef`` (when given) on the way, a block of rows at a
    time: with hashed text W is tens of MB, and ``coef * coef`` whole would be one more W."""
    step = max(1, PENALTY_BLOCK_VALUES // max(coef.shape[1], 1))
    total = 0.0
    for start in range(0, coef.shape[0], step):
        block = coef[start:start + step]
        total += float(np.sum(block * block))
        if grad_coef is not None:
            grad_coef[start:start + step] += l2 * block
    return total


def min_norm_subgradient(grad: np.ndarray, coef: np.ndarray, l1: float) -> np.ndarray:
    """The smallest element of the subdifferential of smooth + l1 ||W||_1 (bias row last, not
    penalised): g + l1 sign(w) where w != 0, the soft-threshold sign(g) max(|g| - l1, 0)
    where w = 0. Zero exactly at the optimum: the stopping rule's measure with L1."""
    out = grad.copy()
    d = coef.shape[0]
    g = grad[:d]
    out[:d] = np.where(coef != 0, g + l1 * np.sign(coef),
                       np.sign(g) * np.maximum(np.abs(g) - l1, 0.0))
    return out


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
    """Objective, gradient, data loss and accuracy at ``params`` in one pass over an array X.

    params: (n_features + 1, n_outputs) float64, W stacked over b.
    X: (n_samples, n_features), dense or scipy.sparse CSR, float64 or float32. Products are
    taken in X's dtype, the loss and gradient summed in float64.
    weights: (n_samples,) or None. The mean divides by their sum (n_samples when None).
    With ``with_grad=False`` (validation) the second product is skipped and ``grad`` is zero.
    ``compute_dtype`` float64 with float32 X converts each block to float64 before its products:
    the exact objective of the stored data, at float64 cost (for a final check).
    Training calls ``Objective.evaluate`` on a row source, which comes here for arrays.
    """
    totals = sums(params, X, target, link, weights, block_rows=block_rows, with_grad=with_grad,
                  n_threads=n_threads, compute_dtype=compute_dtype)
    return finish(params, totals, Objective(link, l2, fit_intercept), with_grad=with_grad)


def loss_and_grad(params, X, target, link, l2=0.0, weights=None, **kwargs):
    """(objective, gradient) at ``params``.

    See ``evaluate`` for the shapes; this drops the extra statistics.
    """
    result = evaluate(params, X, target, link, l2, weights, **kwargs)
    return result.objective, result.grad


#: rows per block of a dense ``gram_product``: about this many bytes, so that a block read for
#: X_b v is still in cache for X_b^T u. On 2 threads here a pass over A took 10-11 ms in 1 MB
#: blocks, 10-12 in 2 MB, 14-15 in 0.5 MB and 20 in 4 MB (B: 21-25, 22-23, 22-27, 37-39 ms)
GRAM_BLOCK_BYTES = 1 << 20


def gram_product(X, v: np.ndarray, fit_intercept: bool, weights=None, *,
                 n_threads: int | None = None) -> tuple[np.ndarray, float]:
    """(Xa^T D Xa v, sum of the weights) for one array of rows: Xa = [X, 1] (the bias column,
    when fitted), D = diag(weights) (the identity when None). v: (n_features + 1,).

    Dense X goes a block of rows at a time (``GRAM_BLOCK_BYTES``), each block used twice
    while in cache (u_b = D_b Xa_b v, then Xa_b^T u_b): X is read from memory once, not
    twice. The runs of blocks are shared among ``n_threads`` threads (default: every core;
    fewer where the work would not repay them, ``threads_for``) as ``sums``' numpy path
    shares them (``block_runs``), the runs' parts added in order. CSR X is one product, on
    one thread (scipy's sparse products hold the GIL). On 2 cores a pass over bench.py's A
    (200,000 x 100) took 21 ms as two whole products and 10-11 ms in blocks on 2 threads; B
    (1,000,000 x 50) 56 ms and 21-25 ms (medians, taken in turn)."""
    total = float(X.shape[0] if weights is None else np.sum(weights))
    if sp.issparse(X):
        return _gram_rows(X, v, fit_intercept, weights), total
    threads = thread_count() if n_threads is None else max(1, n_threads)
    threads = threads_for(work_of(X, 1), threads)
    row_bytes = max(X.shape[1], 1) * X.dtype.itemsize
    step = max(64, GRAM_BLOCK_BYTES // row_bytes)
    threads, runs = block_runs(X.shape[0], step, threads)

    def run_product(run):
        part = np.zeros(len(v))
        for start, stop in run:
            part += _gram_rows(X[start:stop], v, fit_intercept,
                               None if weights is None else weights[start:stop])
        return part

    parts = on_threads(run_product, runs, threads)
    product = parts[0]
    for part in parts[1:]:  # in the rows' order: the same bytes for the same thread count
        product += part
    return product, total


def _gram_rows(X, v: np.ndarray, fit_intercept: bool, weights) -> np.ndarray:
    """Xa^T D Xa v for rows X (dense or CSR) and their weights (or None). Overflow gives inf
    silently: ``lipschitz_bound`` says so in words."""
    d = X.shape[1]
    with np.errstate(over="ignore", invalid="ignore"):
        u = np.asarray(X @ v[:d]).ravel() + (v[d] if fit_intercept else 0.0)
        if weights is not None:
            u = u * weights
        out = np.empty(d + 1)
        out[:d] = np.asarray(X.T @ u).ravel()
        out[d] = u.sum() if fit_intercept else 0.0
    return out


def lipschitz_bound(source: RowSource, objective: Objective, *, n_iter: int = 100,
                    seed: int = 0) -> float:
    """An estimate of the Lipschitz constant L of the objective's gradient.

    The Hessian of the cross-entropy with respect to one row's logits is diag(q) - q q^T, whose
    largest eigenvalue is at most 1/2 (at most 1/4 for the sigmoid's single logit: the link's
    ``curvature``). So ``L <= c * lambda_max(Xa^T D Xa / sum w) + l2``, with Xa = [X, 1] (the
    bias column, when fitted) and D = diag(w). lambda_max comes from the Lanczos iteration
    over the source's ``gram_product`` (``largest_eigenvalue``); its estimate approaches
    lambda_max from below, so it is raised by 2%. A step of 1/L then decreases the objective
    at every iteration of gradient descent.
    """
    d = source.shape[1]
    fit_intercept = objective.fit_intercept
    start = np.random.default_rng(seed).standard_normal(d + 1)
    if not fit_intercept:
        start[d] = 0.0

    def gram(v):
        product, total_weight = source.gram_product(v, fit_intercept)
        return product / total_weight

    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is said in words below
        eigenvalue = largest_eigenvalue(gram, start, n_iter=n_iter)
    if not np.isfinite(eigenvalue):
        raise DataError("the features' products X^T X overflow (values of about 1e77 or more): "
                        "rescale them, for instance standardise them or divide them by a "
                        "power of 10")
    bound = objective.link.curvature * eigenvalue * 1.02 + objective.l2
    # 0: the gradient is constant (every feature 0, no intercept, no penalty), and any number
    # bounds it; 1, not 0, so that a step of 1/L is a number
    return bound if bound > 0 else 1.0


def largest_eigenvalue(product, start: np.ndarray, *, n_iter: int = 100,
                       rtol: float = 1e-4) -> float:
    """The largest eigenvalue of a symmetric positive semi-definite matrix A, known only by
    ``product(v)`` = A v, by the Lanczos iteration from ``start``: after j products,
    A V_j = V_j T_j + beta_j v_(j+1) e_j^T with T_j tridiagonal (alphas on its diagonal,
    betas beside it), and T_j's largest eigenvalue theta (a Ritz value) rises towards
    lambda_max. It stops when |beta_j s_j| <= ``rtol`` theta (s_j: the last entry of theta's
    eigenvector of T_j), a bound on theta's distance to an eigenvalue of A; or after
    ``n_iter`` products. Each product is a pass over the data: where power iteration took 62
    (bench.py's A, 100 features) this takes 13, and 10 where it took 18 (B); for 200,000 rows
    of 50 uncorrelated Gaussian features (their eigenvalues close together) power iteration's
    100 left it 0.3% short, this took 21 and came within 1e-6. Three vectors are kept, not all
    of V_j (text has a million features), so orthogonality is not restored: that repeats
    converged Ritz values but does not raise theta above lambda_max. NaN where a product is
    not finite (A's entries overflow)."""
    from scipy.linalg import eigh_tridiagonal

    v = start / np.linalg.norm(start)
    v_before, beta = np.zeros_like(v), 0.0
    alphas, betas = [], []
    theta = 0.0
    for j in range(n_iter):
        w = product(v)
        alphas.append(float(v @ w))
        w = w - alphas[-1] * v - beta * v_before
        beta = float(np.linalg.norm(w))
        if not (np.isfinite(alphas[-1]) and np.isfinite(beta)):
            return float("nan")
        values, vectors = eigh_tridiagonal(np.array(alphas), np.array(betas), select="i",
                                           select_range=(j, j))
        theta = float(values[0])
        if beta * abs(vectors[-1, 0]) <= rtol * abs(theta):  # beta 0: A's invariant space
            break
        betas.append(beta)
        v_before, v = v, w / beta
    return theta


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
