"""The training loop, top to bottom: epochs, batches, evaluation, stopping, history.

Nothing here prints: progress goes to an optional ``callback(record)`` called once per epoch.

Epoch 0 is the starting point. For full-batch optimisers the gradient evaluated for epoch e's
record is the one used for the step to e + 1, so the history costs nothing extra and the final
record describes exactly the returned parameters. Mini-batch optimisers take their steps on
shuffled batches and then evaluate the full training objective once per epoch.

Stopping, checked after each epoch's record:
  converged   ||g|| / ||g_0|| < tol (the gradient of the full objective, bias included; with
              L1, g is the minimum-norm subgradient and g_0 the smooth part's gradient at the
              start, so that a start already at the L1 optimum stops at once)
  early_stop  the validation loss has not improved for ``patience`` epochs (best params kept)
  max_epochs  the epoch budget is spent
  diverged    the objective or the parameters became non-finite (last finite params kept)
  stalled     L-BFGS could make no further progress before reaching tol
  interrupted Ctrl-C (KeyboardInterrupt) during training (the params so far are kept)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import scipy.sparse as sp

from . import lazy
from .config import OptimConfig
from .errors import ConfigError, DataError
from .loss import Objective, lipschitz_bound, target_entropy
from .memory import check_parameters
from .narrowing import Narrowing
from .optim import (
    OPTIMIZERS,
    Optimizer,
    apply_updates,
    make_optimizer,
    state_from_arrays,
    state_to_arrays,
    with_lr,
)
from .sources import ArraySource, RowSource, shuffled_batches
from .threads import single_threaded_blas, thread_count

#: AdaGrad's and Adam's steps are distances in parameter space (the gradient's scale divides
#: out), not fractions of 1/L: these are their "auto".
AUTO_LR = {"adagrad": 0.1, "adam": 0.01}


@dataclass
class EpochRecord:
    """One row of the history: the state after ``epoch`` epochs."""

    epoch: int
    objective: float  # training objective, l2 penalty included
    train_loss: float  # mean cross-entropy on the training data
    train_accuracy: float
    val_loss: float  # NaN without validation data
    val_accuracy: float
    grad_norm: float  # ||g|| of the full training objective
    grad_norm_rel: float  # ||g|| / ||g_0||
    weight_norm: float  # ||W||, the bias excluded
    kl_divergence: float  # train_loss - H(P): the part of the loss a model can remove
    lr: float
    seconds: float  # elapsed since training began


HISTORY_COLUMNS = tuple(EpochRecord.__dataclass_fields__)


@dataclass
class History:
    records: list[EpochRecord] = field(default_factory=list)

    def column(self, name: str) -> np.ndarray:
        return np.array([getattr(r, name) for r in self.records])

    def rows(self) -> list[dict]:
        return [asdict(r) for r in self.records]

    @property
    def last(self) -> EpochRecord:
        return self.records[-1]

    def __len__(self) -> int:
        return len(self.records)


@dataclass
class FitResult:
    params: np.ndarray  # (n_features + 1, n_outputs), W over b
    history: History
    stop_reason: str
    lr: float
    n_evaluations: int
    target_entropy: float = 0.0

    @property
    def converged(self) -> bool:
        return self.stop_reason == "converged"

    @property
    def n_epochs(self) -> int:
        return self.history.last.epoch


@dataclass(frozen=True)
class Solver:
    """How to minimise: the optimiser, its step size ("auto": see ``resolve_lr``), mini-batch
    rows (None: full batch), the seed of the shuffles, and whether a divergence halves the
    step and goes on (``lr_backoff``, first-order optimisers, at most 30 times)."""

    optimizer: str = OptimConfig.optimizer
    lr: float | str = OptimConfig.lr
    batch_size: int | None = None
    seed: int = 0
    lr_backoff: bool = False
    lr_decay: float = 0.0  # mini-batch epoch e steps at lr / (1 + lr_decay e)


@dataclass(frozen=True)
class Stopping:
    """When to stop: the epoch budget, ||g|| / ||g_0|| < tol, and early stopping after
    ``patience`` epochs without a better validation loss (None: off). ``scale`` is the
    ||g_0|| that tol is relative to; None: the starting point's. A warm start (a path) passes
    the cold start's, so that it stops at the same absolute accuracy."""

    max_epochs: int = OptimConfig.epochs
    tol: float = OptimConfig.tol
    patience: int | None = None
    scale: float | None = None


@dataclass(frozen=True)
class Hooks:
    """What training tells and asks the caller: ``callback(record)`` after every epoch,
    ``should_stop()`` (a signal handler sets it), and ``checkpoint(c)`` every
    ``checkpoint_every`` epochs and when training stops."""

    callback: Callable[[EpochRecord], None] | None = None
    should_stop: Callable[[], bool] | None = None
    checkpoint: Callable[[Checkpoint], None] | None = None
    checkpoint_every: int = 0


def resolve_lr(solver: Solver, source: RowSource, objective: Objective) -> float:
    """A number stays; "auto" is 1/L for gd, momentum and nesterov (L from ``lipschitz_bound``)
    and ``AUTO_LR`` for AdaGrad and Adam. L-BFGS chooses its own steps (reported as NaN)."""
    lr, optimizer = solver.lr, solver.optimizer
    if optimizer == "lbfgs":
        return float("nan")
    if lr == "auto":
        if optimizer in AUTO_LR:
            return AUTO_LR[optimizer]
        return 1.0 / lipschitz_bound(source, objective)
    try:
        value = float(lr)
    except (TypeError, ValueError):
        raise ConfigError(f"lr must be a positive number or 'auto', got {lr!r}") from None
    if not value > 0 or not math.isfinite(value):
        raise ConfigError(f"lr must be a positive number or 'auto', got {lr!r}")
    return value


@dataclass
class Checkpoint:
    """Everything needed to go on from the end of ``epoch`` as if never stopped: the params
    there, the optimiser's state before its next update (its learning rate included; empty
    for L-BFGS), the history so far, the stopping rule's memory, the shuffling generator's
    state, and the hash of the data it was trained on (set by the caller)."""

    epoch: int
    params: np.ndarray
    optimizer_state: dict
    history: list[EpochRecord]
    grad_norm0: float
    best_val: float
    best_params: np.ndarray | None
    epochs_since_best: int
    rng_state: dict
    elapsed: float
    exact: bool = False  # float32 data already switched to float64 products (see `record`)
    data_sha256: str | None = None
    #: the features its arrays cover, where training was narrowed to those present
    #: (``narrowing``); None: every feature
    columns: np.ndarray | None = None


def _check_settings(solver: Solver, stopping: Stopping) -> None:
    if solver.optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {solver.optimizer!r}: use one of "
                          f"{', '.join(OPTIMIZERS)}")
    if stopping.max_epochs < 0:
        raise ConfigError(f"max_epochs must be >= 0, got {stopping.max_epochs}")
    if not stopping.tol >= 0:
        raise ConfigError(f"tol must be >= 0, got {stopping.tol}")
    if solver.batch_size is not None and solver.batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {solver.batch_size}")


def fit(
    source: RowSource,
    objective: Objective,
    solver: Solver = Solver(),
    stopping: Stopping = Stopping(),
    *,
    validation: RowSource | None = None,
    hooks: Hooks = Hooks(),
    resume: Checkpoint | None = None,
    init_params: np.ndarray | None = None,
) -> FitResult:
    """Minimise ``objective`` over the rows of ``source`` from ``init_params`` (zeros).

    source: any ``RowSource`` (in memory, streamed, Dask), with its target and weights.
    Returns the parameters (n_features + 1, n_outputs), the per-epoch history and why
    training stopped. ``resume`` goes on from a checkpoint, and for the first-order optimisers
    gives exactly the run that was never stopped (L-BFGS restarts its memory). In-memory CSR
    rows with few of their columns present are trained on those columns alone (``narrowing``):
    the same problem, with W and its kin that much smaller.
    """
    if not isinstance(source, RowSource):
        raise TypeError(f"fit needs a RowSource (see xent.sources), got {type(source).__name__}")
    _check_settings(solver, stopping)
    n_rows, n_outputs = objective.n_params(source.shape[1], source.target.n_classes)
    check_parameters(n_rows, n_outputs, Narrowing.working_features(source, validation) + 1,
                     solver.optimizer, thread_count())
    params, resume = _starting_point(source, objective, resume, init_params)
    narrowing = Narrowing.of(source, validation, params)
    if narrowing is None:
        return _minimise(source, validation, objective, solver, stopping, hooks, resume, params)
    if resume is not None:
        resume = narrowing.narrow_checkpoint(resume)
    if hooks.checkpoint is not None:
        save = hooks.checkpoint
        hooks = replace(hooks, checkpoint=lambda c: save(replace(c, columns=narrowing.kept)))
    start = narrowing.narrow(params)
    del params
    # the narrowed rows live only as long as _minimise runs: gone before W is widened
    result = _minimise(*narrowing.sources(source, validation), objective, solver, stopping,
                       hooks, resume, start)
    return replace(result, params=narrowing.widen(result.params))


def _starting_point(source: RowSource, objective: Objective, resume: Checkpoint | None,
                    init_params) -> tuple[np.ndarray, Checkpoint | None]:
    """The parameters to start from, of every feature (zeros, ``init_params`` or the
    checkpoint's), and the checkpoint as one of every feature."""
    d = source.shape[1]
    shape = objective.n_params(d, source.target.n_classes)
    if resume is not None and resume.columns is not None:  # a narrowed run's checkpoint
        columns = np.asarray(resume.columns)
        if len(resume.params) != len(columns) + 1 or (columns.size and columns.max() >= d):
            raise ConfigError(f"the checkpoint's parameters cover {len(columns)} of its "
                              f"features, not a part of these data's {d}")
        resume = Narrowing(columns, d).widen_checkpoint(resume)
    params = np.zeros(shape) if init_params is None else np.array(init_params, np.float64)
    if resume is not None:
        params = np.array(resume.params, np.float64)
    if params.shape != shape:
        raise ConfigError(f"the parameters must have shape {shape}, got {params.shape}")
    return params, resume


def _minimise(source: RowSource, validation: RowSource | None, objective: Objective,
              solver: Solver, stopping: Stopping, hooks: Hooks, resume: Checkpoint | None,
              params: np.ndarray) -> FitResult:
    """``fit``'s work, from ``params`` (or ``resume``, whose arrays are shaped alike)."""
    lr = float("nan") if resume is not None else resolve_lr(solver, source, objective)
    loop = _Loop(source, objective, stopping, hooks, validation, lr, params)
    if resume is not None:
        loop.restore(resume)
    del params  # the loop holds the start (as ``last_finite``) only until it moves on
    # Overflow can only come from a diverging run, which `record` detects and reports.
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            if loop.converged_at_restore():
                reason = "converged"  # a finished run resumed: nothing more to do
            elif solver.optimizer == "lbfgs":
                reason = loop.run_lbfgs(loop.last_finite)
            else:
                reason = loop.run_first_order(loop.last_finite, solver, resume)
        except KeyboardInterrupt:
            if not len(loop.history):
                raise  # stopped before the first record: there is no run to keep
            reason = "interrupted"
    params = loop.last_finite
    if reason == "early_stop" and loop.best_params is not None:
        params = loop.best_params
    return FitResult(params, loop.history, reason, loop.lr, loop.n_evaluations, loop.entropy)


def batch_steps(params, state, batches, *, opt, objective: Objective, compute_dtype=None):
    """The optimiser's steps over ``batches`` from ``params``: one loss and gradient per
    batch, each step from the last; a batch is (X, Target, weights or None) or a RowSource.
    Returns (params, state, number of steps). A plain function, so that it can run where the
    rows are."""
    n_steps = 0
    for batch in batches:
        source = ArraySource(*batch) if isinstance(batch, tuple) else batch
        grad = objective.evaluate(params, source, compute_dtype=compute_dtype).grad
        updates, state = opt.update(grad, state, params)
        params = apply_updates(params, updates)
        n_steps += 1
    return params, state, n_steps


@dataclass(frozen=True)
class BatchStep:
    """``sources.Step``: the optimiser's steps over a source's mini-batches. Called with
    batches, it is ``batch_steps``; ``rows`` steps over an array's rows in a given order,
    lazily (``lazy.epoch``) where the rows are sparse and the optimiser allows it."""

    optimizer: str
    opt: Optimizer
    objective: Objective
    compute_dtype: object = None

    def __call__(self, params, state, batches):
        return batch_steps(params, state, batches, opt=self.opt, objective=self.objective,
                           compute_dtype=self.compute_dtype)

    def rows(self, params, state, X, target, weights, order, batch_size, in_place=False):
        if sp.issparse(X) and lazy.supports(self.optimizer, self.objective):
            return lazy.epoch(self.optimizer, params, state, X, target, weights, order,
                              batch_size, self.objective, in_place)
        return self(params, state, shuffled_batches(X, target, weights, order, batch_size))


class _Loop:
    """The state shared by one training run: the data, the history, and the stopping rules.

    ``last_finite`` is always the parameters of the last record (the ones to return), or the
    starting point before the first; ``finite_state`` the optimiser's state there.
    """

    def __init__(self, source: RowSource, objective: Objective, stopping: Stopping,
                 hooks: Hooks, validation: RowSource | None, lr: float, start_params):
        self.source, self.objective, self.stopping, self.hooks = source, objective, stopping, \
            hooks
        self.validation = validation if validation is not None and validation.shape[0] else None
        self.lr = lr
        self.should_stop = hooks.should_stop or (lambda: False)
        self.history = History()
        self.start = time.perf_counter()
        self.grad_norm0: float | None = stopping.scale
        self.best_val = math.inf
        self.best_params: np.ndarray | None = None
        self.epochs_since_best = 0
        self.n_evaluations = 0
        self.last_finite: np.ndarray = start_params
        self.finite_state = None
        self.entropy = target_entropy(source.target, source.weights)
        self.exact = False  # products in float64 even for float32 data (see `record`)
        self.current = None

    def restore(self, c: Checkpoint) -> None:
        self.history.records = list(c.history)
        if c.history:
            self.lr = c.history[-1].lr  # the optimiser's state says it again when it runs
        self.grad_norm0, self.best_val = c.grad_norm0, c.best_val
        self.best_params, self.epochs_since_best = c.best_params, c.epochs_since_best
        self.start -= c.elapsed
        self.last_finite = np.array(c.params, np.float64)  # the run starts here: its own copy
        self.exact = c.exact

    def converged_at_restore(self) -> bool:
        """Whether the restored history's last record already met the stopping rule (its
        gradient norm was confirmed in float64 where the data are float32)."""
        return bool(len(self.history)) and self.history.last.grad_norm_rel < self.stopping.tol

    def save(self, epoch, params, state, rng) -> None:
        if self.hooks.checkpoint is None:
            return
        self.hooks.checkpoint(Checkpoint(
            epoch, params, {} if state is None else state_to_arrays(state),
            list(self.history.records), self.grad_norm0, self.best_val, self.best_params,
            self.epochs_since_best, rng.bit_generator.state if rng is not None else {},
            time.perf_counter() - self.start, self.exact))

    @property
    def compute_dtype(self):
        return np.float64 if self.exact else None

    def evaluate(self, params, source: RowSource | None = None, with_grad=True):
        self.n_evaluations += with_grad
        return self.objective.evaluate(params, source or self.source, with_grad=with_grad,
                                       compute_dtype=self.compute_dtype)

    def _relative_norm(self, result) -> tuple[float, float]:
        grad = result.grad if result.stationarity is None else result.stationarity
        grad_norm = float(np.linalg.norm(grad))
        if self.grad_norm0 is None:
            # the smooth gradient, not the subgradient: at a start where every weight is
            # held at zero by L1 the subgradient is ~0 and would make tol unreachable
            self.grad_norm0 = float(np.linalg.norm(result.grad))
        return grad_norm, grad_norm / self.grad_norm0 if self.grad_norm0 > 0 else 0.0

    def record(self, epoch: int, params, result) -> str | None:
        """Append epoch ``epoch``'s record for ``params`` (evaluated as ``result``) and return a
        stop reason, or None to go on.

        With float32 data the stopping rule is confirmed in float64: the first time the float32
        gradient meets it, the point is evaluated again with float64 products, and from then on
        every evaluation is (a float32 objective is off by 1e-8 to 3e-7, too coarse to confirm
        an optimum). ``self.current`` is the evaluation the record used; the caller steps with
        its gradient.
        """
        self.current = result
        if not (math.isfinite(result.objective) and np.all(np.isfinite(params))
                and np.all(np.isfinite(result.grad))):
            if not self.history.records:  # no step taken: nothing diverged, and no point to
                raise DataError(  # go back to; a run of no epochs has nothing to report
                    "the objective is not finite at the starting point (NaN or infinite "
                    "values, or sums too large for float64, in the data or weights): check "
                    "and rescale them")
            return "diverged"
        grad_norm, rel = self._relative_norm(result)
        tol = self.stopping.tol
        if rel < tol and not self.exact and self.source.dtype != np.float64:
            self.exact = True
            result = self.current = self.evaluate(params)
            grad_norm, rel = self._relative_norm(result)
        val_loss = val_acc = float("nan")
        if self.validation is not None:
            v = self.evaluate(params, self.validation, with_grad=False)
            val_loss, val_acc = v.data_loss, v.accuracy
        record = EpochRecord(epoch, result.objective, result.data_loss, result.accuracy,
                             val_loss, val_acc, grad_norm, rel,
                             float(np.linalg.norm(params[:-1])), result.data_loss - self.entropy,
                             self.lr, time.perf_counter() - self.start)
        self.history.records.append(record)
        self.last_finite = params
        if self.hooks.callback is not None:
            self.hooks.callback(record)
        if rel < tol:
            return "converged"
        if self.stopping.patience and math.isfinite(val_loss):
            margin = 1e-9 * max(1.0, abs(self.best_val)) if self.best_val < math.inf else 0.0
            if val_loss < self.best_val - margin:
                self.best_val, self.best_params, self.epochs_since_best = val_loss, params, 0
            else:
                self.epochs_since_best += 1
                if self.epochs_since_best >= self.stopping.patience:
                    return "early_stop"
        if self.should_stop():
            return "interrupted"
        return None

    def minibatch_epoch(self, optimizer: str, opt, params, state, batch_size: int, rng):
        """One epoch of mini-batch steps from ``params``, taken by the source where its rows
        are; returns (params, state)."""
        step = BatchStep(optimizer, opt, self.objective, self.compute_dtype)
        params, state, n_steps = self.source.minibatch_epoch(step, params, state, batch_size,
                                                             rng)
        self.n_evaluations += n_steps
        return params, state

    def run_first_order(self, params, solver: Solver, resume: Checkpoint | None) -> str:
        n = self.source.shape[0]
        batch_size = solver.batch_size
        full_batch = batch_size is None or batch_size >= n
        opt = make_optimizer(solver.optimizer, full_batch, self.objective.l1)
        state = opt.init(params, self.lr)
        rng = np.random.default_rng(solver.seed)
        epoch, recorded = 0, False
        if resume is not None:
            epoch, recorded = resume.epoch, True  # its record is in the restored history
            state = state_from_arrays(state, resume.optimizer_state)
            if resume.rng_state:
                rng.bit_generator.state = resume.rng_state
        self.lr, self.finite_state = state.lr, state
        backoffs = 0
        result = self.evaluate(params)
        while True:
            reason = None
            if not recorded:
                self.lr = state.lr
                reason = self.record(epoch, params, result)
                result = self.current
            recorded = False
            if reason == "diverged" and solver.lr_backoff and backoffs < 30 and \
                    len(self.history):
                # go on from the last finite point at half the step, its momentum kept
                backoffs += 1
                state = with_lr(self.finite_state, self.finite_state.lr / 2.0)
                params = self.last_finite
                epoch, recorded = self.history.last.epoch, True
                self.lr = state.lr
                result = self.evaluate(params)
                continue
            if reason is None and epoch >= self.stopping.max_epochs:
                reason = "max_epochs"
            every = self.hooks.checkpoint_every
            due = every and epoch and epoch % every == 0
            if reason != "diverged" and (reason is not None or due):
                self.save(epoch, params, state, rng)
            if reason is not None:
                return reason
            self.finite_state = state
            if full_batch:
                updates, state = opt.update(result.grad, state, params)
                params = apply_updates(params, updates)
                del updates
            else:
                decayed = with_lr(state, state.lr / (1.0 + solver.lr_decay * epoch))
                params, stepped = self.minibatch_epoch(solver.optimizer, opt, params, decayed,
                                                       batch_size, rng)
                state = with_lr(stepped, state.lr)
            # the last evaluation (a W-sized gradient: hashed text, tens of MB) is let go
            # before the next one is made, not held beside it
            result = self.current = None
            epoch += 1
            result = self.evaluate(params)

    def run_lbfgs(self, params) -> str:
        """scipy's L-BFGS-B on our objective; the history gets one record per iteration.

        scipy's own stopping rules are switched off (gtol=0, ftol at machine precision) so that
        ours, ||g|| / ||g_0|| < tol, decides; the callback raises StopIteration to stop. After a
        resume L-BFGS starts with an empty memory from the checkpoint's params. With float32
        data, a line search that fails on float32 rounding before the tolerance is reached
        switches to float64 products and L-BFGS goes on from where it was. With an L1 penalty
        it works on the split W = U - V, U, V >= 0 (``LbfgsVariables``).
        """
        from scipy.optimize import minimize  # here: its import is a fifth of a second of
        # every command's start, and most runs never call it

        variables = LbfgsVariables(params.shape, self.objective.l1)
        max_epochs = self.stopping.max_epochs
        cache = {}

        def fun(x):
            if not np.array_equal(cache.get("x"), x):  # scipy's first call: the record's point
                cache["x"], cache["result"] = x.copy(), self.evaluate(variables.params(x))
            return variables.value_and_grad(x, cache["result"])

        reasons = []

        def on_iteration(intermediate_result):
            x = intermediate_result.x
            result = cache["result"] if np.array_equal(cache.get("x"), x) else \
                self.evaluate(variables.params(x))
            epoch = self.history.last.epoch + 1
            reason = self.record(epoch, variables.params(x), result)
            every = self.hooks.checkpoint_every
            if reason is None and every and epoch % every == 0:
                self.save(epoch, self.last_finite, None, None)
            if reason is not None:
                reasons.append(reason)
                raise StopIteration

        if not len(self.history):
            first = self.evaluate(params)
            reason = self.record(0, params, first)
            if reason is not None:
                return reason
            cache["x"], cache["result"] = variables.start(params), first
        while not reasons:
            done = self.history.last.epoch
            if done >= max_epochs:
                reasons.append("max_epochs")
                break
            with single_threaded_blas():  # L-BFGS-B's own BLAS calls must not spin a pool
                outcome = minimize(
                    fun, variables.start(self.last_finite), jac=True, method="L-BFGS-B",
                    bounds=variables.bounds, callback=on_iteration,
                    options={"maxiter": max_epochs - done, "gtol": 0.0, "ftol": 1e-15,
                             "maxcor": 20},
                )
            if reasons:
                break
            if outcome.nit >= max_epochs - done:
                reasons.append("max_epochs")
            elif not self.exact and self.source.dtype != np.float64:
                self.exact = True  # stalled on float32 rounding: go on in float64
                cache.clear()  # its float32 evaluation of the restart point is now too coarse
            else:
                reasons.append("stalled")
        if reasons[0] != "diverged":
            self.save(self.history.last.epoch, self.last_finite, None, None)
        return reasons[0]


class LbfgsVariables:
    """What L-BFGS-B works on: the params flattened; with an L1 penalty, the split
    W = U - V with U, V >= 0 and b free, on which l1 ||W||_1 becomes the smooth
    l1 sum(U + V) and the non-smooth problem a bound-constrained one (its gradient
    [g_W + l1, l1 - g_W, g_b]). Bounds reached are exact, so are the zeros of W.

    Why this and not OWL-QN: scipy's L-BFGS-B is a maintained, well-tested quasi-Newton
    method with bounds, and the split costs only twice the weights' memory; OWL-QN would need
    a line search of our own with orthant projections."""

    def __init__(self, shape: tuple[int, int], l1: float):
        self.shape, self.l1 = shape, l1
        self.n_weights = (shape[0] - 1) * shape[1]
        free = (None, None)
        self.bounds = None if not l1 else \
            [(0.0, None)] * (2 * self.n_weights) + [free] * shape[1]

    def start(self, params: np.ndarray) -> np.ndarray:
        if not self.l1:
            return params.ravel().copy()
        W = params[:-1].ravel()
        return np.concatenate([np.maximum(W, 0.0), np.maximum(-W, 0.0), params[-1]])

    def params(self, x: np.ndarray) -> np.ndarray:
        """The params at ``x``, a new array (a record keeps it; scipy may reuse ``x``)."""
        if not self.l1:
            return x.reshape(self.shape).copy()
        m = self.n_weights
        W = (x[:m] - x[m:2 * m]).reshape(self.shape[0] - 1, self.shape[1])
        return np.vstack([W, x[2 * m:][None, :]])

    def value_and_grad(self, x: np.ndarray, result) -> tuple[float, np.ndarray]:
        """The objective and gradient in these variables, from ``result`` at ``params(x)``."""
        if not self.l1:
            return result.objective, result.grad.ravel()
        m = self.n_weights
        g_W = result.grad[:-1].ravel()
        W = x[:m] - x[m:2 * m]
        value = result.objective + self.l1 * (float(np.sum(x[:2 * m])) - float(np.sum(np.abs(W))))
        return value, np.concatenate([g_W + self.l1, self.l1 - g_W, result.grad[-1]])
