"""Seeded (stratified) splits and standardisation fitted on the training part only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .errors import DataError


def train_val_split(
    labels: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, val), stratified by ``labels`` (class indices), drawn from ``seed``.

    Each class sends round(val_fraction * its count) rows to validation, but always keeps at
    least one in training. Both index arrays are sorted, so the rows keep the file's order.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    labels = np.asarray(labels)
    if val_fraction == 0.0:
        return np.arange(len(labels)), np.arange(0)
    rng = np.random.default_rng(seed)
    val_parts = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        n_val = min(int(np.floor(val_fraction * len(members) + 0.5)), len(members) - 1)
        val_parts.append(rng.permutation(members)[:n_val])
    val = np.sort(np.concatenate(val_parts)) if val_parts else np.arange(0)
    train = np.setdiff1d(np.arange(len(labels)), val, assume_unique=True)
    return train, val


def split_in_place(X: np.ndarray, train_rows: np.ndarray, val_rows: np.ndarray):
    """(X[train_rows], X[val_rows]) for a dense X that may be overwritten: the validation rows
    are copied out, then the training rows are moved to the top of X in place, so the training
    part is a view and memory grows by the validation part only. ``train_rows`` must be sorted.

    Moving in increasing order is safe: row train_rows[i] >= i is read before any write reaches
    it, since the writes of a chunk go to rows below every row a later chunk reads.
    """
    X_val = X[val_rows]
    chunk = max(1, (1 << 22) // max(1, X.shape[1] * X.itemsize))
    for start in range(0, len(train_rows), chunk):
        rows = train_rows[start:start + chunk]
        if rows[0] != start or rows[-1] != start + len(rows) - 1:
            X[start:start + len(rows)] = X[rows]
    return X[:len(train_rows)], X_val


@dataclass(frozen=True)
class Standardizer:
    """x -> (x - mean) / scale per feature. ``mean`` is None for sparse data (no centring,
    which would make the matrix dense); ``scale`` is the standard deviation (ddof=0), or 1 for
    a constant column, which is left unscaled."""

    mean: np.ndarray | None
    scale: np.ndarray

    def transform(self, X, copy: bool = True):
        """Standardised X (n_samples, n_features); sparse X stays sparse. ``copy=False``
        overwrites a dense float X in place (for arrays the caller owns)."""
        if sp.issparse(X):
            return sp.csr_matrix(X @ sp.diags(1.0 / self.scale).astype(X.dtype))
        dtype = X.dtype if X.dtype == np.float32 else np.float64
        out = np.array(X, dtype=dtype) if copy or X.dtype != dtype else X
        if self.mean is not None:
            out -= self.mean.astype(out.dtype)
        out /= self.scale.astype(out.dtype)
        return out


def fit_standardizer(X, names: list[str] | None = None, source: str = "data") -> Standardizer:
    """Mean and standard deviation (ddof=0) of each column of the training data.

    Sums are taken in float64 whatever X's dtype. Sparse X is scaled but not centred.
    ``names`` and ``source`` only make the error for overflowing columns name them.
    """
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=np.float64)
        mean = np.asarray(X.mean(axis=0)).ravel()
        sq_mean = np.asarray(X.multiply(X).mean(axis=0)).ravel()
        std = np.sqrt(np.maximum(sq_mean - mean * mean, 0.0))
        center = None
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            center = np.mean(X, axis=0, dtype=np.float64)
            std = np.std(X, axis=0, dtype=np.float64)
        if not (np.all(np.isfinite(center)) and np.all(np.isfinite(std))):
            bad = np.flatnonzero(~(np.isfinite(center) & np.isfinite(std)))[:10]
            shown = [names[i] for i in bad] if names is not None else bad.tolist()
            raise DataError(
                f"{source}: standardisation overflows for feature column(s) {shown}: their "
                "values are too large to square; rescale them (divide by a power of 10)"
            )
    scale = np.where(std > 0, std, 1.0)
    return Standardizer(center, scale)


def merge_moments(first: tuple, second: tuple) -> tuple:
    """Two parts' (count, mean, centred sum of squares) merged into those of both (Chan, Golub
    and LeVeque's update: no large sums of squares, so no cancellation). Works per column on
    arrays, where a count may be 0."""
    count_a, mean_a, m2_a = first
    count_b, mean_b, m2_b = second
    total = count_a + count_b
    share = np.divide(count_b, total, out=np.zeros_like(np.asarray(total, dtype=float)),
                      where=np.asarray(total) > 0)
    delta = mean_b - mean_a
    return total, mean_a + delta * share, m2_a + m2_b + delta**2 * count_a * share
