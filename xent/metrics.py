"""Classification metrics as pure functions of class indices and log-probabilities."""

from __future__ import annotations

import numpy as np


def accuracy(true: np.ndarray, predicted: np.ndarray) -> float:
    """Fraction of rows where the predicted class index equals the true one."""
    return float(np.mean(np.asarray(true) == np.asarray(predicted))) if len(true) else float("nan")


def log_loss(true: np.ndarray, log_proba: np.ndarray) -> float:
    """Mean of -log q(true class), from log-probabilities (n_samples, n_classes): no log(0)."""
    if not len(true):
        return float("nan")
    return float(-np.mean(log_proba[np.arange(len(true)), true]))


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts: row = true class, column = predicted class."""
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(true), np.asarray(predicted)), 1)
    return counts


def per_class_scores(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support of each class from a confusion matrix.

    A ratio with a zero denominator (a class never predicted, or never present) is 0, as in
    scikit-learn's ``zero_division=0``.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    hits = np.diag(confusion)
    predicted = confusion.sum(axis=0)
    support = confusion.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(hits), where=both > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(int)}


def prior_log_loss(train_labels: np.ndarray, eval_labels: np.ndarray, n_classes: int) -> float:
    """Log-loss on ``eval_labels`` of always predicting the class frequencies of the training
    labels: the baseline any trained model should beat. Classes absent from training get the
    smallest positive frequency so that the loss stays finite."""
    counts = np.bincount(train_labels, minlength=n_classes).astype(np.float64)
    counts[counts == 0] = 0.5
    log_priors = np.log(counts / counts.sum())
    return float(-np.mean(log_priors[eval_labels])) if len(eval_labels) else float("nan")


def brier_score(true: np.ndarray, proba: np.ndarray) -> float:
    """The Brier score. Two classes: mean (q_1 - y)^2, the probability of the second class
    against its 0/1 label (scikit-learn's ``brier_score_loss``). More: mean over rows of
    sum_k (q_k - p_k)^2 with p one-hot."""
    true = np.asarray(true)
    if proba.shape[1] == 2:
        return float(np.mean((proba[:, 1] - (true == 1)) ** 2))
    onehot = np.zeros_like(proba)
    onehot[np.arange(len(true)), true] = 1.0
    return float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))


def calibration_bins(true: np.ndarray, proba: np.ndarray, n_bins: int = 15) -> list[dict]:
    """The top label's confidence (the largest probability of each row) in ``n_bins``
    equal-width bins of [0, 1] (a bin holds lower < confidence <= upper; the first also 0):
    each bin's bounds, count, accuracy (the top label's hit rate) and mean confidence."""
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == np.asarray(true)
    which = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        inside = which == b
        count = int(inside.sum())
        bins.append({"lower": b / n_bins, "upper": (b + 1) / n_bins, "count": count,
                     "accuracy": float(correct[inside].mean()) if count else None,
                     "confidence": float(confidence[inside].mean()) if count else None})
    return bins


def expected_calibration_error(bins: list[dict]) -> float:
    """ECE = sum over bins of (rows in the bin / n) |accuracy - mean confidence|, over
    ``calibration_bins`` (of the top label)."""
    n = sum(b["count"] for b in bins)
    return float(sum(b["count"] / n * abs(b["accuracy"] - b["confidence"])
                     for b in bins if b["count"]))
