"""Compiled loss-and-gradient kernels: one pass over a run of rows, without the GIL.

For each row i of X (dense, C-ordered float64 or float32; or CSR):

    z = x_i W + b                           (n_outputs,) the logits
    loss_i = w_i (log-sum-exp(z) - p_i . z)  softmax; sigmoid: log(1 + e^z) - p z
    r = w_i (q_i - p_i)                     q = link(z), the residual
    G += r^T x_i,  g_b += r                 the gradient's sums, X^T (Q - P)

and whether the row's first largest logit is its true class. This is ``loss._accumulate``
(the numpy reference, which the tests hold these to at 1e-12) fused into one loop: a row is read
from memory once and used twice while it is in cache, and no temporaries are allocated. Each
call sums its own rows into its own buffers; ``loss.sums`` gives each thread a contiguous run of
rows and adds the runs' sums in a fixed order, so the result depends on the thread count but
never on timing. The kernels release the GIL (``nogil``), so the threads run at once.

numba compiles them on first use (a few seconds) and caches the machine code on disk, in
$NUMBA_CACHE_DIR, else ``<xent's cache>/numba`` (a writable place even when xent is installed
read-only); numba itself is imported only when a kernel is first needed (``loss.sums`` uses
them for data large enough to repay the import, about 0.4 s).

Targets: hard labels (indices, optionally smoothed: p = (1 - eps) onehot + eps / K) or soft
rows of probabilities; the sigmoid's p is P(class 1). Products are taken in the dtype of
``coef`` (float32 data with float64 coefficients gives exact float64 products), sums in float64.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

import numpy as np
import scipy.sparse as sp

_KERNELS = None
_LOCK = threading.Lock()
_COMPILED: set[tuple] = set()  # the argument types already compiled (or loaded) here

#: fastmath flags: reassociation lets the dot products vectorise; nothing that assumes finite
#: values (a logit of -inf must still give an exact loss)
_FAST = {"reassoc", "contract"}


def kernels():
    """The compiled kernels (compiled or loaded from the disk cache on the first call)."""
    global _KERNELS
    if _KERNELS is None:
        with _LOCK, _signals_held():
            if _KERNELS is None:
                _KERNELS = _build()
    return _KERNELS


@contextlib.contextmanager
def _signals_held():
    """Ctrl-C and SIGTERM wait until the block ends (on the main thread, where Python runs its
    handlers): an exception raised inside numba's import or compiler leaves it broken for the
    rest of the process, and training must stop cleanly instead."""
    if threading.current_thread() is not threading.main_thread() or os.name != "posix":
        yield  # signals reach only the main thread; masks are POSIX
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _compiling(key: tuple):
    """A context for a kernel call: signals held the first time ``key`` (its argument types)
    is seen in this process, when numba compiles or loads it."""
    if key in _COMPILED:
        return contextlib.nullcontext()
    _COMPILED.add(key)
    return _signals_held()


def _cache_dir() -> str:
    from .stream import cache_root

    return str(cache_root() / "numba")


def _build():
    os.environ.setdefault("NUMBA_CACHE_DIR", _cache_dir())
    import numba

    jit = numba.njit(nogil=True, cache=True, fastmath=_FAST)

    @numba.njit(nogil=True, cache=True, fastmath=_FAST, inline="always")
    def row_link(z, r, t, label, proba, row, eps, soft, softmax):
        """The loss of one row from its logits ``z[t]``; writes q - p into ``r[t]``; returns
        (loss, 1 if the first largest logit is the true class else 0). ``proba[row]`` is the
        row's soft target (``soft``), else ``label`` its class, smoothed by ``eps``."""
        k = z.shape[1]
        if not softmax:
            zi = z[t, 0]
            if soft:
                p = proba[row, 1]
                truth = 1 if proba[row, 1] > proba[row, 0] else 0
            else:
                truth = label
                p = truth * (1.0 - eps) + eps / 2.0
            e = np.exp(-abs(zi))  # log(1 + e^z) = max(z, 0) + log1p(e^-|z|): no overflow
            loss = max(zi, 0.0) + np.log1p(e) - p * zi
            q = 1.0 / (1.0 + e) if zi >= 0.0 else e / (1.0 + e)
            r[t, 0] = q - p
            right = 1 if (zi > 0.0) == (truth == 1) else 0
            return loss, right
        top = z[t, 0]
        first = 0
        for c in range(1, k):
            if z[t, c] > top:
                top = z[t, c]
                first = c
        total = 0.0
        for c in range(k):
            r[t, c] = np.exp(z[t, c] - top)
            total += r[t, c]
        inverse = 1.0 / total
        target_term = 0.0
        if soft:
            truth = 0
            best = proba[row, 0]
            for c in range(k):
                target_term += proba[row, c] * (z[t, c] - top)
                if proba[row, c] > best:
                    best = proba[row, c]
                    truth = c
            for c in range(k):
                r[t, c] = r[t, c] * inverse - proba[row, c]
        else:
            truth = label
            mean = 0.0
            for c in range(k):
                mean += z[t, c] - top
            target_term = (1.0 - eps) * (z[t, truth] - top) + eps * mean / k
            for c in range(k):
                r[t, c] = r[t, c] * inverse - eps / k
            r[t, truth] -= 1.0 - eps
        right = 1 if first == truth else 0
        return np.log(total) - target_term, right

    @numba.njit(nogil=True, cache=True, fastmath=_FAST, inline="always")
    def weighted_row(z, r, t, labels, proba, row, eps, weights, softmax):
        """``row_link`` for row ``row`` (its logits in z[t]), loss and residual r[t] times the
        row's weight (an empty ``weights``: 1); an empty ``proba`` means hard labels."""
        soft = proba.shape[0] > 0
        label = 0 if soft else labels[row]
        loss, right = row_link(z, r, t, label, proba, row, eps, soft, softmax)
        if weights.shape[0] > 0:
            loss *= weights[row]
            for c in range(z.shape[1]):
                r[t, c] *= weights[row]
        return loss, right

    @jit
    def dense_logits(X, i, m, coef_t, intercept, z):
        """z[t] = X[i + t] W + b for the m (1 to 4) rows from i. Four rows at once share each
        load of W (register blocking), as a matrix product's kernel does."""
        k, d = coef_t.shape
        if m == 4:
            x0, x1, x2, x3 = X[i], X[i + 1], X[i + 2], X[i + 3]
            for c in range(k):
                w_c = coef_t[c]
                a0 = a1 = a2 = a3 = 0.0
                for j in range(d):
                    w = w_c[j]
                    a0 += x0[j] * w
                    a1 += x1[j] * w
                    a2 += x2[j] * w
                    a3 += x3[j] * w
                z[0, c] = a0 + intercept[c]
                z[1, c] = a1 + intercept[c]
                z[2, c] = a2 + intercept[c]
                z[3, c] = a3 + intercept[c]
            return
        for t in range(m):
            row = X[i + t]
            for c in range(k):
                w_c = coef_t[c]
                acc = 0.0
                for j in range(d):
                    acc += row[j] * w_c[j]
                z[t, c] = acc + intercept[c]

    @jit
    def dense_gradient(X, i, m, r, grad_t):
        """grad_t[c] += sum_t r[t, c] X[i + t] for the m rows from i: each load and store of
        the gradient serves four rows."""
        k, d = grad_t.shape
        if m == 4:
            x0, x1, x2, x3 = X[i], X[i + 1], X[i + 2], X[i + 3]
            for c in range(k):
                r0, r1, r2, r3 = r[0, c], r[1, c], r[2, c], r[3, c]
                g_c = grad_t[c]
                for j in range(d):
                    g_c[j] += r0 * x0[j] + r1 * x1[j] + r2 * x2[j] + r3 * x3[j]
            return
        for t in range(m):
            row = X[i + t]
            for c in range(k):
                rc = r[t, c]
                g_c = grad_t[c]
                for j in range(d):
                    g_c[j] += rc * row[j]

    @jit
    def dense(X, coef_t, intercept, labels, proba, eps, weights, start, stop, softmax,
              with_grad, grad_t, grad_b):
        """Rows start..stop of dense X, four at a time; coef_t (k, d); adds into grad_t (k, d)
        and grad_b (k,); returns (sum of weighted losses, rows right)."""
        k = coef_t.shape[0]
        z = np.empty((4, k))
        r = np.empty((4, k))
        loss_sum = 0.0
        n_right = 0
        i = start
        while i < stop:
            m = min(4, stop - i)
            dense_logits(X, i, m, coef_t, intercept, z)
            for t in range(m):
                loss, right = weighted_row(z, r, t, labels, proba, i + t, eps, weights, softmax)
                loss_sum += loss
                n_right += right
            if with_grad:
                for t in range(m):
                    for c in range(k):
                        grad_b[c] += r[t, c]
                dense_gradient(X, i, m, r, grad_t)
            i += m
        return loss_sum, n_right

    @jit
    def csr(data, indices, indptr, coef, intercept, labels, proba, eps, weights, start, stop,
            softmax, with_grad, grad, grad_b):
        """Rows start..stop of a CSR matrix; coef (d, k) (a row of W per stored entry); adds
        into grad (d, k) and grad_b (k,)."""
        k = coef.shape[1]
        z = np.empty((1, k))
        r = np.empty((1, k))
        loss_sum = 0.0
        n_right = 0
        for i in range(start, stop):
            for c in range(k):
                z[0, c] = intercept[c]
            for s in range(indptr[i], indptr[i + 1]):
                v = data[s]
                w_j = coef[indices[s]]
                for c in range(k):
                    z[0, c] += v * w_j[c]
            loss, right = weighted_row(z, r, 0, labels, proba, i, eps, weights, softmax)
            loss_sum += loss
            n_right += right
            if with_grad:
                for c in range(k):
                    grad_b[c] += r[0, c]
                for s in range(indptr[i], indptr[i + 1]):
                    v = data[s]
                    g_j = grad[indices[s]]
                    for c in range(k):
                        g_j[c] += v * r[0, c]
        return loss_sum, n_right

    return dense, csr


_EMPTY_LABELS = np.zeros(0, dtype=np.intp)
_EMPTY_PROBA = np.zeros((0, 0))
_EMPTY_WEIGHTS = np.zeros(0)


def coef_layout(X, W: np.ndarray, dtype) -> np.ndarray:
    """W (d, k) as X's kernel reads it, in the compute dtype: W^T (k, d) for dense X (a row of
    it per dot product), W itself for CSR (a row of W per stored entry). Made once per
    evaluation, not once per thread: with hashed text d x k can be large."""
    return np.ascontiguousarray(W if sp.issparse(X) else W.T, dtype=dtype)


def as_grad_coef_t(X, grad: np.ndarray) -> np.ndarray:
    """A gradient summed in ``coef_layout``'s layout as (k, d), ``Sums.grad_coef_t``."""
    return np.ascontiguousarray(grad.T) if sp.issparse(X) else grad


def run_sums(coef, intercept, X, target, softmax: bool, weights, start: int, stop: int,
             with_grad: bool):
    """Rows start..stop of X through the compiled kernel: (loss_sum, n_correct, gradient of
    W in ``coef_layout``'s layout, grad_intercept (k,)). ``coef`` from ``coef_layout``; X
    C-ordered dense or CSR; the target and weights cover all of X's rows."""
    dense, csr = kernels()
    labels = target.labels if target.labels is not None else _EMPTY_LABELS
    proba = np.ascontiguousarray(target.proba, dtype=np.float64) \
        if target.proba is not None else _EMPTY_PROBA
    weights = np.ascontiguousarray(weights, dtype=np.float64) \
        if weights is not None else _EMPTY_WEIGHTS
    intercept = np.ascontiguousarray(intercept, dtype=np.float64)
    grad = np.zeros(coef.shape)
    grad_b = np.zeros(len(intercept))
    if not sp.issparse(X):
        with _compiling(("dense", X.dtype.str, coef.dtype.str)):
            loss, right = dense(X, coef, intercept, labels, proba, target.smoothing, weights,
                                start, stop, softmax, with_grad, grad, grad_b)
        return loss, right, grad, grad_b
    key = ("csr", X.data.dtype.str, X.indices.dtype.str, X.indptr.dtype.str, coef.dtype.str)
    with _compiling(key):
        loss, right = csr(X.data, X.indices, X.indptr, coef, intercept, labels, proba,
                          target.smoothing, weights, start, stop, softmax, with_grad, grad,
                          grad_b)
    return loss, right, grad, grad_b
