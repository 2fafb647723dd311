"""Why training did not converge, and what to try: pure rules over the history.

Each rule returns a sentence a user can act on, or nothing."""

from __future__ import annotations

import numpy as np

from .train import History


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def diverged(history: History, lr: float) -> list[str]:
    epoch = history.last.epoch + 1 if len(history) else 0
    return [f"the objective or the weights became non-finite at epoch {epoch}: the learning "
            f"rate {_fmt(lr)} is too large; try --lr {_fmt(lr / 10)} (or auto), and standardised "
            "features"]


def loss_rose(history: History, lr: float, optimizer: str, full_batch: bool) -> list[str]:
    """Gradient descent at a step below 2/L never raises the full-batch objective; if it rose,
    the step is too large. For other methods only a loss that ends above its start counts."""
    objective = history.column("objective")
    if len(objective) < 2:
        return []
    rises = np.flatnonzero(np.diff(objective) > 1e-12 * np.maximum(1.0, np.abs(objective[:-1])))
    if optimizer == "gd" and full_batch and len(rises):
        return [f"the objective rose at {len(rises)} of {len(objective) - 1} epochs (first at "
                f"epoch {rises[0] + 1}): the learning rate {_fmt(lr)} is too large; try "
                f"--lr {_fmt(lr / 4)} or --lr auto"]
    if objective[-1] > objective[0]:
        return [f"the objective ended higher ({_fmt(objective[-1])}) than it started "
                f"({_fmt(objective[0])}): lower the learning rate (now {_fmt(lr)})"]
    return []


def extreme_scales(stds: np.ndarray | None, names: list[str]) -> list[str]:
    """Unstandardised features whose spreads differ by more than 1e3 make the problem
    ill-conditioned: gradient methods crawl along the small-scale directions."""
    if stds is None or len(stds) < 2:
        return []
    live = np.flatnonzero(stds > 0)
    if len(live) < 2:
        return []
    big, small = live[np.argmax(stds[live])], live[np.argmin(stds[live])]
    ratio = stds[big] / stds[small]
    if ratio <= 1e3:
        return []
    return [f"feature scales differ by a factor {_fmt(ratio)} ({names[big]!r} has standard "
            f"deviation {_fmt(stds[big])}, {names[small]!r} {_fmt(stds[small])}): standardise "
            "them (--standardize)"]


def looks_separable(history: History, penalised: bool) -> list[str]:
    """Unpenalised (no l2, no l1, hard targets), a linear model that classifies every training
    row right has found a separating hyperplane: scaling W up then lowers the loss forever,
    so there is no finite optimum (the loss heads to 0 while ||W|| grows). A run that
    "converged" there stopped where the gradient, which shrinks with the loss, fell below
    --tol."""
    if penalised or len(history) < 2 or history.last.train_accuracy < 1.0:
        return []
    norms = history.column("weight_norm")
    half = norms[len(norms) // 2]
    return [f"the data look linearly separable: every training row is classified right, the "
            f"loss falls towards 0 ({_fmt(history.last.train_loss)}) and ||W|| keeps growing "
            f"({_fmt(half)} at epoch {history.records[len(norms) // 2].epoch} -> "
            f"{_fmt(norms[-1])}), so there is no finite optimum (a run stops where the "
            "gradient, shrinking with the loss, passes --tol) and the weights' size means "
            "nothing; add a penalty (--l2 1e-4) or stop early (--patience)"]


def budget_spent(history: History, stop_reason: str, optimizer: str, tol: float) -> list[str]:
    if stop_reason == "max_epochs":
        faster = "" if optimizer == "lbfgs" else ", or a faster method (--optimizer lbfgs " \
            "or nesterov)"
        return [f"the epoch budget ran out at |g|/|g0| = {_fmt(history.last.grad_norm_rel)}, "
                f"above --tol {_fmt(tol)}: give more --epochs{faster}"]
    if stop_reason == "stalled":
        return [f"L-BFGS could not improve further at |g|/|g0| = "
                f"{_fmt(history.last.grad_norm_rel)}: the tolerance {_fmt(tol)} is below what "
                "float64 can resolve here; use a larger --tol"]
    return []


def diagnose(history: History, *, stop_reason: str, lr: float, optimizer: str,
             penalised: bool, tol: float, full_batch: bool, feature_stds: np.ndarray | None,
             feature_names: list[str]) -> list[str]:
    """All that applies, for a run that stopped without converging; for one that converged,
    only that it converged towards no optimum (separable data, no penalty). ``penalised``:
    l2 > 0, l1 > 0 or label smoothing, any of which gives the objective a finite optimum."""
    if stop_reason == "early_stop":
        return []
    if stop_reason == "converged":
        return looks_separable(history, penalised)
    if stop_reason == "diverged":
        return diverged(history, lr) + extreme_scales(feature_stds, feature_names)
    return (loss_rose(history, lr, optimizer, full_batch)
            + extreme_scales(feature_stds, feature_names)
            + looks_separable(history, penalised)
            + budget_spent(history, stop_reason, optimizer, tol))
