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
