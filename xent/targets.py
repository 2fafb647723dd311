"""What the model should predict, and how much each row counts.

A ``Target`` holds hard labels (class indices, optionally smoothed) or soft labels (rows of
probabilities); it never builds an n x K one-hot matrix. Row weights are the product of sample
weights and class weights, built here and nowhere else (``row_weights``, ``class_weights``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DataError


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
        """The target of a subset of rows (a slice, an index array or a boolean mask)."""
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


def class_weights(spec, class_counts: np.ndarray) -> np.ndarray | None:
    """The weight of each class, (n_classes,), from ``spec``: None (no class weights),
    "balanced" (n / (K * count), scikit-learn's rule; 0 for a class with no rows) or a
    sequence of K numbers. ``class_counts`` are the training rows of each class."""
    if spec is None or spec == "none":
        return None
    counts = np.asarray(class_counts, dtype=np.float64)
    k = len(counts)
    if isinstance(spec, str):
        if spec != "balanced":
            raise DataError(f"unknown class weight {spec!r}: use none or balanced")
        return np.divide(counts.sum(), k * counts, out=np.zeros(k), where=counts > 0)
    weights = np.asarray(spec, dtype=np.float64)
    if weights.shape != (k,) or not np.all(np.isfinite(weights)) or weights.min() < 0:
        raise DataError(f"class weights must be {k} finite non-negative numbers")
    return weights


def check_sample_weight(weights, n: int, name: str = "sample weights") -> np.ndarray:
    """Sample weights (n,) as float64, checked: finite, non-negative, not all zero."""
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise DataError(f"{name} must have shape ({n},), got {w.shape}")
    if not np.all(np.isfinite(w)) or (n and (w.min() < 0 or not w.any())):
        raise DataError(f"{name} must be finite, non-negative and not all zero")
    return w


def row_weights(target: Target, sample_weight=None, class_weight=None) -> np.ndarray | None:
    """Per-row weights w_i = sample_weight_i * class_weight[class of i], (n_samples,).

    For soft targets the class weight of row i is the P_i-weighted mean sum_k P_ik c_k.
    Returns None when neither is given (the unweighted mean).
    """
    if sample_weight is None and class_weight is None:
        return None
    n = target.n_samples
    w = np.ones(n) if sample_weight is None else check_sample_weight(sample_weight, n)
    if class_weight is not None:
        c = np.asarray(class_weight, dtype=np.float64)
        per_row = c[target.labels] if target.labels is not None else target.proba @ c
        w = w * per_row
    with np.errstate(over="ignore"):
        total = w.sum()
    if not np.isfinite(total):  # the loss divides by it: a model of NaN, blamed on X before
        raise DataError("the sample weights add up to more than float64 holds (1.8e308): "
                        "divide them by a power of 10 (a model depends only on their ratios)")
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
        if not eps or target.n_samples == 0:
            return 0.0
        top, rest = 1.0 - eps + eps / k, eps / k
        per_row = np.full(target.n_samples, -top * np.log(top) - (k - 1) * rest * np.log(rest))
    if weights is None:
        return float(per_row.mean())
    return float(np.sum(weights * per_row) / np.sum(weights))
