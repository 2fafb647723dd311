"""Choosing the penalty: a warm-started regularisation path and k-fold cross-validation
(glmnet's ``cv.glmnet``, scikit-learn's ``LogisticRegressionCV``).

One strength lambda and a mix alpha (``l1_ratio``; glmnet's alpha, scikit-learn's l1_ratio):

    J(W, b) = mean cross-entropy + lambda ((1 - alpha) / 2 ||W||^2 + alpha ||W||_1)

that is l2 = (1 - alpha) lambda and l1 = alpha lambda (``penalties``); scikit-learn's
``LogisticRegression(C=1 / (lambda n), l1_ratio=alpha)`` minimises the same function.

The grid (``lambda_grid``) runs geometrically from lambda_max down to ``min_ratio`` of it.
For alpha > 0, lambda_max is the smallest lambda at which every weight is zero: the largest
|dJ/dW_j| of the null model (W = 0, b fitted) divided by alpha (``largest_lambda``). Ridge
(alpha = 0) zeroes no weight at any lambda; glmnet's convention alpha = 1e-3 sets its top.

Along the grid each fit starts where the previous one ended (a warm start) and stops at an
absolute accuracy: tol relative to ||g|| at W = 0, b = 0, as a cold start's. The path's tol
(``path.tol``, 1e-3) is looser than a run's: a CV curve does not need the last digits (at
1e-3 the held-out losses are within about 1e-4 of the exact optima's, far inside their
standard errors; LogisticRegressionCV's defaults stop between 2e-4 and 3e-3 on
bench/bench_path.py's data), and the model kept is refitted to the run's tol.

Cross-validation (``cross_validate``): each of k stratified, seeded folds
(``preprocess.fold_ids``) is scored by the path fitted on the others, and the path on all rows
gives the coefficients; these k + 1 paths run in parallel processes. lambda_min minimises the
mean CV loss; lambda_1se is the largest lambda whose mean CV loss is within one standard error
of that minimum (glmnet's rule: the simplest model that is as good within noise).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from . import api
from .errors import ConfigError, DataError
from .links import Link
from .loss import Objective, lipschitz_bound
from .preprocess import fold_ids, thin_classes
from .processes import Task, run_in_processes
from .sources import MemoryTable, RowSource
from .threads import use_threads
from .train import Solver, Stopping, fit

#: for ridge (alpha = 0), the alpha that sets lambda_max (glmnet's convention)
RIDGE_ALPHA_FOR_MAX = 1e-3

#: the selection rules: the lambda of least mean CV loss, or the largest within one SE of it
RULES = ("1se", "min")


def penalties(lam: float, l1_ratio: float) -> tuple[float, float]:
    """(l2, l1) = ((1 - alpha) lambda, alpha lambda)."""
    return (1.0 - l1_ratio) * lam, l1_ratio * lam


class NullModel(NamedTuple):
    params: np.ndarray  # (n_features + 1, n_outputs): W = 0, b fitted
    grad: np.ndarray  # the unpenalised gradient there
    scale: float  # ||g|| at W = 0, b = 0: what a cold start's tol is relative to


def null_model(source: RowSource, link: Link, fit_intercept: bool) -> NullModel:
    """The model without features. With W = 0 the best b predicts the weighted mean target
    p_bar everywhere, and the gradient of b at zero is q0 - p_bar (q0 the prediction of zero
    logits), so b = ``link.null_logits(q0 - g_b)``: two passes over the rows."""
    unpenalised = Objective(link, 0.0, fit_intercept)
    zero = np.zeros(unpenalised.n_params(source.shape[1], source.target.n_classes))
    at_zero = unpenalised.evaluate(zero, source).grad
    params = zero.copy()
    if fit_intercept:
        k = zero.shape[1]
        q0 = link.proba(np.zeros((1, k)))[0, -k:]
        params[-1] = link.null_logits(q0 - at_zero[-1])
    grad = unpenalised.evaluate(params, source).grad if fit_intercept else at_zero
    return NullModel(params, grad, float(np.linalg.norm(at_zero)))


def largest_lambda(null: NullModel, l1_ratio: float) -> float:
    """lambda_max: max_j |dJ/dW_j| of the null model over alpha (``RIDGE_ALPHA_FOR_MAX`` for
    ridge). For alpha > 0 the soft-threshold keeps every weight at 0 from here up."""
    top = float(np.max(np.abs(null.grad[:-1]), initial=0.0))
    if not top > 0:
        raise DataError("no feature moves the loss (every gradient of the model without "
                        "features is 0): there is no path to fit")
    return top / max(l1_ratio, RIDGE_ALPHA_FOR_MAX)


def lambda_grid(lambda_max: float, n_lambdas: int, min_ratio: float) -> np.ndarray:
    """(n_lambdas,) decreasing, geometric from lambda_max to min_ratio * lambda_max."""
    return lambda_max * np.geomspace(1.0, min_ratio, n_lambdas)


@dataclass(frozen=True)
class PathSpec:
    """What a path fits besides the rows: the link, the intercept, the mix alpha, the grid
    (decreasing), and the solver and stopping rule of each fit."""

    link: Link
    fit_intercept: bool
    l1_ratio: float
    lambdas: np.ndarray
    solver: Solver
    stopping: Stopping


@dataclass
class PathFit:
    """One path, a row per lambda: the parameters (n_lambdas, n_features + 1, n_outputs; None
    where not kept), non-zero weights, epochs, whether each fit converged, and the loss and
    accuracy of the held-out rows (None without them)."""

    params: np.ndarray | None
    nonzero: np.ndarray
    epochs: np.ndarray
    converged: np.ndarray
    val_loss: np.ndarray | None
    val_accuracy: np.ndarray | None
    seconds: float


def _step_sizes(source: RowSource, spec: PathSpec) -> Callable[[float], float | str]:
    """lr for each l2: "auto" is 1/(L_data + l2), L_data bounded once for the whole path
    (``lipschitz_bound``: five to fifty passes, not that many per lambda); L-BFGS needs
    none."""
    if spec.solver.lr != "auto" or spec.solver.optimizer in ("lbfgs", "adam"):
        return lambda l2: spec.solver.lr
    data_part = lipschitz_bound(source, Objective(spec.link, 0.0, spec.fit_intercept))
    return lambda l2: 1.0 / (data_part + l2)


def fit_path(source: RowSource, spec: PathSpec, validation: RowSource | None = None, *,
             keep_params: bool = True) -> PathFit:
    """Fit every lambda of ``spec`` in turn, each from the previous optimum (the first from
    the null model); score each on ``validation``.

    Ridge paths (l1_ratio 0) start each fit from the line through the last two optima,
    2 w_k - w_{k-1}: on a geometric grid the optimum moves smoothly in log lambda, and this
    predictor cuts L-BFGS's evaluations by a quarter (bench/bench_path.py's data: 322 -> 239
    on one path). With L1 the active set changes between lambdas and it does not help.
    """
    started = time.perf_counter()
    null = null_model(source, spec.link, spec.fit_intercept)
    step = _step_sizes(source, spec)
    stopping = replace(spec.stopping, scale=null.scale, patience=None)
    scorer = Objective(spec.link)
    params, previous, kept, rows = null.params, None, [], []
    for lam in spec.lambdas:
        l2, l1 = penalties(float(lam), spec.l1_ratio)
        objective = Objective(spec.link, l2, spec.fit_intercept, l1)
        start = params if previous is None or spec.l1_ratio else 2.0 * params - previous
        result = fit(source, objective, replace(spec.solver, lr=step(l2)), stopping,
                     init_params=start)
        previous, params = params, result.params
        scored = scorer.evaluate(params, validation, with_grad=False) \
            if validation is not None else None
        rows.append((np.count_nonzero(params[:-1]), result.n_epochs, result.converged,
                     np.nan if scored is None else scored.data_loss,
                     np.nan if scored is None else scored.accuracy))
        if keep_params:
            kept.append(params)
    nonzero, epochs, converged, loss, accuracy = (np.array(c) for c in zip(*rows, strict=True))
    return PathFit(np.array(kept) if keep_params else None, nonzero, epochs, converged,
                   None if validation is None else loss,
                   None if validation is None else accuracy, time.perf_counter() - started)


@dataclass
class CrossValidation:
    """The CV curve over the grid: mean and standard error over the folds of the held-out loss
    (mean cross-entropy) and accuracy, and the fold-by-fold losses (n_folds, n_lambdas)."""

    lambdas: np.ndarray
    loss_mean: np.ndarray
    loss_se: np.ndarray
    accuracy_mean: np.ndarray
    accuracy_se: np.ndarray
    fold_loss: np.ndarray

    @property
    def index_min(self) -> int:
        """The lambda of least mean CV loss (the largest such, on a tie)."""
        return int(np.argmin(self.loss_mean))

    @property
    def index_1se(self) -> int:
        """The largest lambda whose mean CV loss is at most the minimum plus its SE."""
        best = self.index_min
        within = self.loss_mean <= self.loss_mean[best] + self.loss_se[best]
        return int(np.flatnonzero(within)[0])

    def index(self, rule: str) -> int:
        return self.index_1se if rule == "1se" else self.index_min


def summarise(lambdas: np.ndarray, fold_loss: np.ndarray,
              fold_accuracy: np.ndarray) -> CrossValidation:
    """Mean and standard error (sample std / sqrt(k)) over the folds (axis 0)."""
    k = fold_loss.shape[0]

    def se(values):
        return values.std(axis=0, ddof=1) / np.sqrt(k) if k > 1 else np.zeros(values.shape[1])

    return CrossValidation(lambdas, fold_loss.mean(axis=0), se(fold_loss),
                           fold_accuracy.mean(axis=0), se(fold_accuracy), fold_loss)


#: the rows of fold f: (training RowSource, held-out RowSource), each preprocessed from its
#: own training rows; called in the fold's process
FoldSources = Callable[[int], tuple[RowSource, RowSource]]


def _fold_path(sources_for: FoldSources, fold: int, spec: PathSpec) -> PathFit:
    train, held_out = sources_for(fold)
    return fit_path(train, spec, held_out, keep_params=False)


def cross_validate(full: RowSource, sources_for: FoldSources, n_folds: int, spec: PathSpec,
                   jobs: int = 1, on_event=None) -> tuple[CrossValidation, PathFit]:
    """The path on all rows (``full``) and on each fold's training rows, scored on the fold.

    ``jobs`` > 1 runs the k + 1 paths in that many processes (forked: the data are shared, not
    copied); ``on_event(name, what, fit)`` hears "started" and "done" of each. Returns the CV
    curve and the path on all rows (with its parameters)."""
    tasks = [Task("all rows", fit_path, (full, spec))] + [
        Task(f"fold {f + 1}/{n_folds}", _fold_path, (sources_for, f, spec))
        for f in range(n_folds)]
    results: dict[str, PathFit] = {}

    def hear(task, what, result):
        if what == "done":
            results[task.name] = result
        if on_event is not None:
            on_event(task.name, what, result)

    if jobs <= 1:
        for task in tasks:
            hear(task, "started", None)
            hear(task, "done", task.function(*task.args))
    else:
        run_in_processes(tasks, min(jobs, len(tasks)), hear)
    folds = [results[t.name] for t in tasks[1:]]
    cv = summarise(spec.lambdas, np.array([f.val_loss for f in folds]),
                   np.array([f.val_accuracy for f in folds]))
    return cv, results["all rows"]


# ---- xent path: a table in, a run directory's worth out --------------------------------------

@dataclass
class PathRun:
    """What ``run_path`` produced: the CV curve, the path on all rows (its coefficients), the
    index of the chosen lambda, and the run refitted on all rows there."""

    cv: CrossValidation
    full: PathFit
    l1_ratio: float
    selected: int
    run: api.Run


def run_path(config, *, jobs: int = 1, notify=None, on_event=None,
             on_table=None) -> PathRun:
    """The path of ``config`` (its [path] table) on its data, cross-validated, and the model
    refitted on all rows at the chosen lambda (``path.select``) with ``api.train``.

    Every usable row takes part (``data.val_fraction`` is set to 0: the folds are the held-out
    data). Each fold's preprocessing (fill values, scales, class weights) is fitted on its own
    training rows, as ``api.train`` fits a run's. In memory or streamed; not on Dask.
    ``on_table(table)`` sees the data once they are open; ``on_event`` is
    ``cross_validate``'s.
    """
    if config.data.engine == "dask":
        raise ConfigError("xent path runs on data in memory or streamed, not on Dask: drop "
                          "--engine dask")
    config = api.route(config, notify)
    settings = config.path
    config = replace(config, data=replace(config.data, val_fraction=0.0),
                     optim=replace(config.optim, optimizer=settings.optimizer))
    table = api.open_table(config, None, notify)
    if on_table is not None:
        on_table(table)
    usable = api.split_rows(config, table)[0]
    folds = fold_ids(table.labels, usable, settings.folds, config.data.seed)
    thin = thin_classes(table.labels, usable, settings.folds)
    if thin and notify is not None:
        listed = ", ".join(f"{table.classes[c]} ({n})" for c, n in thin.items())
        notify(f"note: fewer rows than the {settings.folds} folds in class {listed}: some folds "
               "train without it, and its rows weigh heavily in their CV loss; use fewer --folds")
    # the folds read the table without overwriting it; the refit at the end may
    shared = replace(table, owned=False) if isinstance(table, MemoryTable) else table
    options = api.source_options(config)

    def sources(train, held_out):
        prep = api.fit_table_preprocessing(config, shared, train)
        return shared.sources(train, held_out, prep, options)

    def sources_for(fold):
        return sources(usable & (folds != fold), folds == fold)

    full = sources(usable, np.zeros_like(usable))[0]
    link = api.resolved_link(config, len(table.classes))
    fit_intercept = config.model.fit_intercept
    lam_max = largest_lambda(null_model(full, link, fit_intercept), settings.l1_ratio)
    solver, stopping = api.solver_settings(config)
    stopping = replace(stopping, tol=settings.tol)
    spec = PathSpec(link, fit_intercept, settings.l1_ratio,
                    lambda_grid(lam_max, settings.n_lambdas, settings.lambda_min_ratio),
                    solver, stopping)
    with use_threads(config.optim.threads):
        cv, full_fit = cross_validate(full, sources_for, settings.folds, spec, jobs, on_event)
    del full
    selected = cv.index(settings.select)
    l2, l1 = penalties(float(spec.lambdas[selected]), settings.l1_ratio)
    run = api.train(replace(config, model=replace(config.model, l2=l2, l1=l1)), table=table)
    run.summary["path"] = path_summary(cv, full_fit, settings, selected, run.summary["n_train"])
    return PathRun(cv, full_fit, settings.l1_ratio, selected, run)


def path_summary(cv: CrossValidation, full: PathFit, settings, selected: int, n: int) -> dict:
    """The path's part of summary.json: the grid, both rules' lambdas, the choice and its CV
    scores (scikit-learn's C = 1 / (lambda n) beside each lambda)."""
    lambdas = cv.lambdas

    def at(i):
        return {"lambda": float(lambdas[i]), "C": 1.0 / (float(lambdas[i]) * n),
                "cv_loss": float(cv.loss_mean[i]), "cv_loss_se": float(cv.loss_se[i]),
                "cv_accuracy": float(cv.accuracy_mean[i]), "nonzero": int(full.nonzero[i])}

    return {"l1_ratio": settings.l1_ratio, "folds": settings.folds,
            "n_lambdas": len(lambdas), "lambda_max": float(lambdas[0]),
            "lambda_min_ratio": settings.lambda_min_ratio, "select": settings.select,
            "min": at(cv.index_min), "1se": at(cv.index_1se), "selected": at(selected),
            "all_converged": bool(full.converged.all()), "seconds": full.seconds}
