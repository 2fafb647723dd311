"""Compiled loss-and-gradient kernels: one pass over a run of rows, without the GIL.

For each row i of X (dense, C-ordered float64 or float32; or CSR):

    z = x_i W + b                           (n_outputs,) the logits
    loss_i = w_i (log-sum-exp(z) - p_i . z)  softmax; sigmoid: log(1 + e^z) - p z
    r = w_i (q_i - p_i)                     q = link(z), the residual
    G += r^T x_i,  g_b += r                 the gradient's sums, X^T (Q - P)

and whether the row's first largest logit is its true class. This is ``loss._accumulate``
(the numpy reference, which the tests hold these to at 1e-12) fused into one loop over blocks
of rows (``_compiled.BLOCK_ROWS``): a row is read from memory once and used twice while it is in
cache, and no temporaries are allocated. Each call sums its own rows into its own buffers;
``loss.sums`` cuts the rows into contiguous chunks, a few a thread, which the threads take in
turn, and adds the chunks' sums in the rows' order, so the result depends on the thread count
but never on timing. CSR with more features than rows per thread (hashed text) is summed in two
passes instead, R by pieces of rows, then X^T R by ranges of columns into one gradient
(``csr_by_columns``): a gradient per thread would take more memory than R, and on many cores
more time to zero and add up than the second pass takes. The kernels release the GIL
(``nogil``), so the threads run at once.

numba compiles them on first use (about 7 s for one kind of dense data and target here: each
kind has its own kernel, ``_compiled.KERNELS``) and caches the machine code on disk, in
$NUMBA_CACHE_DIR, else ``<xent's cache>/numba`` (a writable place even when xent is installed
read-only); numba itself is imported only when a kernel is first needed (``loss.sums`` uses
them for data large enough to repay the import, about 0.4 s).

Targets: hard labels (indices, optionally smoothed: p = (1 - eps) onehot + eps / K) or soft
rows of probabilities; the sigmoid's p is P(class 1). Products are taken in the dtype of
``coef`` (float32 data with float64 coefficients gives exact float64 products), sums in float64.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from .threads import items_for, on_threads

_KERNELS = None
_LOCK = threading.Lock()
_COMPILED: set[tuple] = set()  # the argument types already compiled (or loaded) here
_LOG = logging.getLogger(__name__)


def kernels():
    """The module of compiled kernels, ``_compiled`` (compiled or loaded from the disk cache on
    the first call)."""
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


#: what numba raises when it reads back a damaged file of its disk cache (cut short by a
#: crash, say): it writes each file whole, but a lost power supply can still leave one short
_DAMAGED_CACHE = (pickle.UnpicklingError, EOFError)


def compiled_call(key: tuple, call):
    """``call()``: a call of compiled kernels with the argument types ``key``. The first time
    ``key`` is seen in this process numba compiles them or loads them from its disk cache,
    with signals held meanwhile (``_signals_held``); where it compiled, a note (logger
    ``xent.kernels``, level INFO: the command line shows it) says how long that took. Where a
    file of that cache is damaged, numba cannot read it back, and every later run would fail
    the same way: the cache's files of xent's kernels are removed and ``call`` runs once more,
    compiling them anew. Where the cache cannot be written (a full disk), a warning says so
    and ``call`` runs once more with the kernels compiled in memory only. So ``call`` must
    change nothing before its first kernel call returns (numba loads or compiles, and saves,
    before a kernel runs)."""
    if key in _COMPILED:
        return _mending_the_cache(call)
    _COMPILED.add(key)
    with _signals_held():
        misses, start = _compilations(), time.perf_counter()
        result = _mending_the_cache(call)
    compiled = _compilations() - misses
    if compiled and _saving_machine_code() and _LOG.isEnabledFor(logging.INFO):
        _LOG.info(f"compiled the kernels for this kind of data in "
                  f"{time.perf_counter() - start:.1f} s, once: later runs load them from "
                  f"{machine_code_folder()} (`xent cache warm` compiles every kernel ahead)")
    return result


def _compilations() -> int:
    """How many times numba has compiled one of ``_compiled``'s functions in this process
    (its dispatchers' cache misses: a version neither in memory nor on disk)."""
    from numba.core.dispatcher import Dispatcher

    return sum(sum(value.stats.cache_misses.values()) for value in vars(kernels()).values()
               if isinstance(value, Dispatcher))


def _mending_the_cache(call):
    """``call()``, once more after the disk cache's failures that ``compiled_call`` mends."""
    try:
        return call()
    except _DAMAGED_CACHE:
        _remove_machine_code()
        return call()
    except OSError as exc:
        if not _from_numbas_cache(exc):
            raise
        # compiling worked, writing the machine code out did not (a full disk, a file size
        # limit): the kernels are compiled in memory from here on, and this run goes on
        warnings.warn(CacheNotSaved(machine_code_folder(), exc.strerror or str(exc)),
                      stacklevel=3)
        _stop_saving_machine_code()
        return call()


class CacheNotSaved(RuntimeWarning):
    """numba's disk cache of the kernels could not be written in ``folder`` (``reason``, the
    operating system's words): the kernels are compiled in memory instead."""

    def __init__(self, folder: Path, reason: str):
        super().__init__(folder, reason)
        self.folder, self.reason = folder, reason

    def __str__(self) -> str:
        return (f"the compiled kernels' cache in {self.folder} could not be used "
                f"({self.reason}); they are compiled in memory, again in each run until it can be")


def _from_numbas_cache(exc: OSError) -> bool:
    """Whether ``exc`` was raised while numba wrote or read its disk cache (a full disk, a
    file size limit, a failing drive), rather than by the call itself."""
    cache_module = os.path.join("numba", "core", "caching.py")
    return any(frame.f_code.co_filename.endswith(cache_module)
               for frame, _ in traceback.walk_tb(exc.__traceback__))


def machine_code_folder() -> Path:
    """The folder of numba's disk cache that holds ``_compiled``'s kernels (one for all of
    them: numba's cache object names it)."""
    return Path(kernels().murmur3_32._cache.cache_path)


def _saving_machine_code() -> bool:
    """Whether the kernels' machine code still goes to the disk cache
    (``_stop_saving_machine_code`` not called)."""
    from numba.core.caching import NullCache

    return not isinstance(kernels().murmur3_32._cache, NullCache)


def _stop_saving_machine_code() -> None:
    """Compile ``_compiled``'s kernels in memory only, for the rest of the process: each
    dispatcher's disk cache is numba's null cache, the one it has without ``cache=True``."""
    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    for value in vars(kernels()).values():
        if isinstance(value, Dispatcher):
            value._cache = NullCache()


def _remove_machine_code() -> None:
    """Remove the files of numba's disk cache that hold ``_compiled``'s kernels, so that they
    are compiled anew."""
    for path in machine_code_folder().glob("_compiled.*"):
        path.unlink(missing_ok=True)


def machine_code_files() -> list[Path]:
    """The files of numba's disk cache that hold ``_compiled``'s kernels, found without
    importing numba: in ``cache_folder``, those of this installation of xent and of any other
    (numba gives a module's cache a folder named ``<its package's folder>_<SHA-1 of that
    folder's path>``, so each checkout or virtual environment has its own); and beside the
    package, where numba puts them when that folder cannot be written."""
    beside = Path(__file__).parent / "__pycache__"
    return sorted([*Path(cache_folder()).glob("xent_*/_compiled.*"),
                   *beside.glob("_compiled.*.nb[ic]")])


def clear_machine_code() -> list[Path]:
    """Remove ``machine_code_files`` (and the folders they leave empty); returns them. A run
    compiles what it needs again, or ``xent cache warm`` does."""
    files = machine_code_files()
    for path in files:
        path.unlink(missing_ok=True)
    for folder in {path.parent for path in files}:
        with contextlib.suppress(OSError):  # not empty: a file numba wrote meanwhile, .pyc
            folder.rmdir()
    return files


def cache_folder() -> str:
    """Where numba's disk cache of the kernels goes: $NUMBA_CACHE_DIR, else
    ``<xent's cache>/numba`` (``stream.cache_root``)."""
    from .stream import COMPILED_DIR, cache_root

    return os.environ.get("NUMBA_CACHE_DIR") or str(cache_root() / COMPILED_DIR)


def _build():
    os.environ.setdefault("NUMBA_CACHE_DIR", cache_folder())
    if "numba" in sys.modules:
        # imported before us (by the user's code or another library): numba read its settings
        # then, so it is told the directory directly, unless it was given one of its own
        from numba.core import config

        if not config.CACHE_DIR:
            config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]
    from . import _compiled

    return _compiled


class Linear(NamedTuple):
    """A linear model's arrays as the kernels take them: coef, W in ``coef_layout``'s layout
    (W^T (k, d) for dense X, W (d, k) for CSR), and intercept, b (k,). A gradient's sums come
    back in the same layout; an empty intercept asks a kernel for no gradient."""

    coef: np.ndarray
    intercept: np.ndarray


class RowTargets(NamedTuple):
    """Each row's target as the kernels read it (``row_targets``): labels (n,) class
    indices, smoothed by eps, or soft rows proba (n, K); weights (n,). An empty labels or
    proba is the kind not given, an empty weights every weight 1."""

    labels: np.ndarray
    proba: np.ndarray
    eps: float
    weights: np.ndarray


class CSRRows(NamedTuple):
    """A CSR matrix's three arrays, the row pointers int64 (``row_pointers``)."""

    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray


_EMPTY_LABELS = np.zeros(0, dtype=np.intp)
_EMPTY_PROBA = np.zeros((0, 0))
_EMPTY_WEIGHTS = np.zeros(0)
_NO_RESIDUALS = np.zeros((0, 0))  # ``csr`` scattering into the gradient keeps no R
#: the gradient argument that asks a kernel for none
NO_GRADIENT = Linear(np.zeros((0, 0)), np.zeros(0))


def coef_layout(X, W: np.ndarray, dtype) -> np.ndarray:
    """W (d, k) as X's kernel reads it, in the compute dtype: W^T (k, d) for dense X (a row of
    it per dot product), W itself for CSR (a row of W per stored entry). Made once per
    evaluation, not once per thread: with hashed text d x k can be large."""
    return np.ascontiguousarray(W if sp.issparse(X) else W.T, dtype=dtype)


def as_grad_coef_t(X, grad: np.ndarray) -> np.ndarray:
    """A gradient summed in ``coef_layout``'s layout as (k, d), ``Sums.grad_coef_t``: for CSR
    a transposed view, not a copy (``loss.finish`` transposes it back, then a plain copy)."""
    return grad.T if sp.issparse(X) else grad


def csr_by_columns(given: Inputs, X, softmax: bool, threads: int, out=None):
    """The sums of CSR X in two passes on ``threads`` threads, with one gradient rather than
    one per thread, a block of rows at a time (``residual_block_rows``): pieces of the block's
    rows give their R = w (Q - P) (the CSR kernel keeping R), then ranges of columns of about
    equal stored entries, one a thread, each add X_block^T R into their columns of the
    gradient (``csr_columns``). The threads take the pieces in turn (``threads.on_threads``,
    a few a thread: ``threads.items_for``). For hashed text d x k is tens of
    MB: this keeps memory flat in the thread count (and skips adding the threads' gradients),
    and R to one block's rows, flat in n. Every gradient entry adds its rows in order, so the
    result does not depend on the block size. Returns (loss_sum, n_correct, grad in
    ``coef_layout``'s layout, grad_b), the pieces' numbers added in order: ``out``'s (grad,
    grad_b), added into, when given (``kernel_layout``), else the rows of one new array."""
    compiled = kernels()
    kernel, key = kernel_for(given, X, softmax)
    n, k = X.shape[0], given.params.coef.shape[1]
    block_rows = residual_block_rows(n, k, threads)
    # W's sums over b's in one (d + 1, k) array: ``loss.finish`` scales it where it is
    if out is None:
        stacked = np.zeros((given.params.coef.shape[0] + 1, k))
        out = stacked[:-1], stacked[-1]
    grad, grad_b_total = out
    # one range of columns a thread, not a few: each range reads at least a row's first
    # entries to find its own (all of them where a row's columns are not in order), so more
    # ranges cost more reading (four a thread, reading all: 15% slower on text)
    spans = column_spans(X, threads)
    sorted_rows = bool(X.has_sorted_indices)  # scipy checks once, then remembers
    most_pieces = items_for(threads, n)

    def passes():
        """Both passes over every block. ``grad`` is first added into by the first block's
        second pass, after both kernels have been loaded: where ``compiled_call`` mends the
        disk cache and calls this again, nothing has been added into it."""
        R = np.empty((min(block_rows, n), k))
        compiled.csr_columns(given.rows, R, 0, 0, 0, 0, grad, sorted_rows)  # no rows: loaded
        grad_bs = [np.zeros(k) for _ in range(most_pieces)]  # piece p's b sums, block by block
        loss_sum, n_correct = 0.0, 0
        for first in range(0, n, block_rows):
            stop = min(first + block_rows, n)
            pieces = items_for(threads, max(threads, (stop - first) // MIN_PIECE_ROWS))
            bounds = [first + (stop - first) * p // pieces for p in range(pieces + 1)]

            def rows(p, first=first, bounds=bounds):
                # R's rows bounds[p]..bounds[p + 1], and b's sums: no scatter into W's
                kept = R[bounds[p] - first:bounds[p + 1] - first]
                return kernel(given.rows, given.params, given.target, bounds[p], bounds[p + 1],
                              Linear(NO_GRADIENT.coef, grad_bs[p]), kept)

            def columns(span, first=first, stop=stop):
                compiled.csr_columns(given.rows, R, first, stop, span[0], span[1], grad,
                                     sorted_rows)

            for loss, right in on_threads(rows, range(pieces), threads):
                loss_sum, n_correct = loss_sum + loss, n_correct + right
            on_threads(columns, spans, threads)
        return loss_sum, n_correct, grad_bs

    # on this (the calling) thread, while the pool's threads run; its own key, for csr_columns
    loss_sum, n_correct, grad_bs = compiled_call(key + ("columns",), passes)
    for grad_b in grad_bs:  # in order
        grad_b_total += grad_b
    return loss_sum, n_correct, grad, grad_b_total


#: the fewest rows of a block ``csr_by_columns`` gives one piece of its first pass, beyond one
#: piece a thread (each piece is a call and a hand-over)
MIN_PIECE_ROWS = 256
#: the bytes of R that ``csr_by_columns`` holds at once (a block of rows' residuals)
RESIDUAL_BLOCK_BYTES = 4 << 20


def residual_block_rows(n: int, k: int, threads: int) -> int:
    """Rows per block of ``csr_by_columns``: R (rows x k float64) within
    ``RESIDUAL_BLOCK_BYTES``, and at least ``MIN_PIECE_ROWS`` rows a thread (each block costs
    the threads two hand-overs)."""
    least = MIN_PIECE_ROWS * threads
    return max(1, min(n, max(RESIDUAL_BLOCK_BYTES // (8 * max(k, 1)), least)))


def column_spans(X, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous ranges of CSR X's columns holding about equal numbers of stored
    entries (counted on every 64th entry: the balance needs no exact count)."""
    d = X.shape[1]
    counts = np.cumsum(np.bincount(X.indices[::64], minlength=d))
    if not counts.size or counts[-1] == 0:
        bounds = np.linspace(0, d, parts + 1).astype(int)
    else:
        cuts = np.searchsorted(counts, counts[-1] * np.arange(1, parts) / parts) + 1
        bounds = np.concatenate([[0], np.minimum(cuts, d), [d]])
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def row_pointers(X) -> np.ndarray:
    """X's row pointers as int64 (scipy makes int32 or int64 ones): one compiled kernel for
    both, rather than two (each costs seconds to compile)."""
    return X.indptr.astype(np.int64, copy=False)


def row_targets(target, weights) -> RowTargets:
    """``target`` (``targets.Target``) and the rows' ``weights`` (or None) as the kernels read
    them: an empty array for what is not there (soft targets have no labels, hard ones no
    proba; no weights: every row 1)."""
    labels = target.labels if target.labels is not None else _EMPTY_LABELS
    proba = np.ascontiguousarray(target.proba, dtype=np.float64) \
        if target.proba is not None else _EMPTY_PROBA
    weights = np.ascontiguousarray(weights, dtype=np.float64) \
        if weights is not None else _EMPTY_WEIGHTS
    return RowTargets(labels, proba, float(target.smoothing), weights)


def csr_arrays(X) -> CSRRows:
    """CSR X's arrays as the kernels take them (``_compiled.csr_rows`` is the kernel's loop
    over them)."""
    return CSRRows(X.data, X.indices, row_pointers(X))


@dataclass(frozen=True)
class Inputs:
    """What every chunk of rows reads in one evaluation, laid out for the kernels once
    (not once per chunk): the model (``Linear``, W in ``coef_layout``'s layout), the rows'
    targets (``row_targets``), and CSR X's arrays (``csr_arrays``; None for dense X)."""

    params: Linear
    target: RowTargets
    rows: CSRRows | None


def inputs(X, W: np.ndarray, b: np.ndarray, target, weights, dtype) -> Inputs:
    """``Inputs`` of one evaluation at W (d, k), b (k,) over X's rows."""
    params = Linear(coef_layout(X, W, dtype), np.ascontiguousarray(b, dtype=np.float64))
    return Inputs(params, row_targets(target, weights), csr_arrays(X) if sp.issparse(X) else None)


def kernel_layout(X, totals) -> tuple[np.ndarray, np.ndarray] | None:
    """The arrays of ``totals`` (``loss.Sums``) as ``run_sums`` adds into them (the gradient
    in ``coef_layout``'s layout), or None when they are not laid out that way."""
    grad = totals.grad_coef_t.T if sp.issparse(X) else totals.grad_coef_t
    if grad.dtype != np.float64 or not grad.flags.c_contiguous:
        return None
    return grad, totals.grad_intercept


def run_sums(given: Inputs, X, softmax: bool, start: int, stop: int, with_grad: bool,
             grad: np.ndarray | None = None, grad_b: np.ndarray | None = None):
    """Rows start..stop of X through the compiled kernel: (loss_sum, n_correct, gradient of
    W in ``coef_layout``'s layout, grad_intercept (k,)), the gradients added into ``grad``
    and ``grad_b`` when given, else into new zeros (zeros without ``with_grad``). X C-ordered
    dense or CSR."""
    kernel, key = kernel_for(given, X, softmax)
    grad = np.zeros(given.params.coef.shape) if grad is None else grad
    grad_b = np.zeros(len(given.params.intercept)) if grad_b is None else grad_b
    into = Linear(grad, grad_b) if with_grad else NO_GRADIENT
    if given.rows is None:
        loss, right = compiled_call(key, lambda: kernel(X, given.params, given.target, start,
                                                        stop, into))
    else:
        loss, right = compiled_call(key, lambda: kernel(given.rows, given.params, given.target,
                                                        start, stop, into, _NO_RESIDUALS))
    return loss, right, grad, grad_b


def kernel_for(given: Inputs, X, softmax: bool):
    """The compiled kernel for X's layout, the link and the kind of target
    (``_compiled.KERNELS``: each compiles only its own link loop), and the key of its
    argument types for ``compiled_call``."""
    soft = given.target.proba.shape[0] > 0
    dense, csr = kernels().KERNELS[softmax, soft]
    dtypes = (given.params.coef.dtype.str,) + \
        ((X.dtype.str,) if given.rows is None else (X.data.dtype.str, X.indices.dtype.str))
    return (dense if given.rows is None else csr), (softmax, soft, given.rows is None) + dtypes
