"""Preprocessing, fitted once: the validation split (one stratified rule for every source),
the statistics of the training rows (one pass, mergeable across blocks, files and workers), and
``fit_preprocessing``, the one function that turns those statistics into the encoding,
imputation, standardisation and class weights, whatever the source.

Fill values, scales and class weights come from the training rows only, everywhere; the
categorical levels (which features exist) come from all rows, so that every source has the
same features.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .data import FeatureEncoder, RawTable, Schema, missing_values_error
from .errors import DataError
from .targets import class_weights
from .text import TextSpec


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


def split_masks(labels: np.ndarray, usable: np.ndarray, val_fraction: float,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) boolean masks over all rows: the usable rows (those not dropped for
    missing values) split by ``train_val_split``'s stratified rule. Every source applies these
    masks row by row, so every source trains on the same rows: the rule needs only the
    labels, which every source holds (one small integer a row)."""
    val = np.zeros(len(labels), dtype=bool)
    usable_rows = np.flatnonzero(usable)
    val[usable_rows[train_val_split(labels[usable_rows], val_fraction, seed)[1]]] = True
    return usable & ~val, val


def fold_ids(labels: np.ndarray, usable: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """The fold (0 .. n_folds - 1) of every row, -1 for rows not used: stratified k-fold over
    the usable rows, drawn from ``seed``. Each class's rows are shuffled and dealt to the folds
    in turn, starting where the previous class stopped, so every fold has each class's share
    and the folds' sizes differ by at most one."""
    if n_folds < 2:
        raise DataError(f"cross-validation needs at least 2 folds, got {n_folds}")
    rows = np.flatnonzero(usable)
    if len(rows) < n_folds:
        raise DataError(f"{len(rows)} rows cannot make {n_folds} folds: use fewer folds")
    rng = np.random.default_rng(seed)
    folds = np.full(len(labels), -1, dtype=np.intp)
    start = 0
    for cls in np.unique(labels[rows]):
        members = rng.permutation(rows[labels[rows] == cls])
        folds[members] = (start + np.arange(len(members))) % n_folds
        start = (start + len(members)) % n_folds
    return folds


def thin_classes(labels: np.ndarray, usable: np.ndarray, n_folds: int) -> dict[int, int]:
    """{class index: usable rows} for each class with fewer usable rows than folds: some folds'
    training rows lack it, and their held-out loss on its rows is large."""
    counts = np.bincount(labels[usable])
    return {int(c): int(counts[c]) for c in np.flatnonzero((counts > 0) & (counts < n_folds))}


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
        overwrites a float X (dense, or CSR's values) in place (for arrays the caller owns)."""
        if sp.issparse(X):
            if copy or X.format != "csr" or X.dtype not in (np.float32, np.float64):
                return sp.csr_matrix(X @ sp.diags(1.0 / self.scale).astype(X.dtype))
            X.data *= (1.0 / self.scale).astype(X.dtype)[X.indices]
            return X
        dtype = X.dtype if X.dtype == np.float32 else np.float64
        out = np.array(X, dtype=dtype) if copy or X.dtype != dtype else X
        if self.mean is not None:
            out -= self.mean.astype(out.dtype)
        out /= self.scale.astype(out.dtype)
        return out


def too_large_to_square(source: str, columns: list) -> DataError:
    """The error for feature columns whose spread overflows float64: every run needs it (to
    standardise, and for the step size's X^T X), with --no-standardize too."""
    return DataError(f"{source}: the values of feature column(s) {columns} are too large to "
                     "square (about 1e154 or more), as their spread and the step size need: "
                     "rescale them (divide by a power of 10)")


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
            raise too_large_to_square(source, shown)
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
    # values near 1e308 overflow here; the caller reports such columns in one line
    with np.errstate(over="ignore", invalid="ignore"):
        return total, mean_a + delta * share, m2_a + m2_b + delta**2 * count_a * share


# ---- statistics of the training rows ------------------------------------------------------

@dataclass
class Statistics:
    """What one pass over some raw rows adds up, mergeable (``+``) across blocks, files and
    workers: rows and their classes; per numeric column the count, mean and centred sum of
    squares of the values present (Chan et al.'s merge: no cancellation); per categorical
    column the rows of each level code and the missing ones. ``medians`` (per numeric column)
    needs whole columns: only an in-memory table computes it, when asked."""

    n_rows: int
    class_counts: np.ndarray
    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    level_counts: list[np.ndarray]
    missing_levels: np.ndarray
    medians: np.ndarray | None = None
    text_df: np.ndarray | None = None  # per hashed text feature, the rows where it occurs

    def __add__(self, other: Statistics) -> Statistics:
        count, mean, m2 = merge_moments((self.count, self.mean, self.m2),
                                        (other.count, other.mean, other.m2))
        text_df = other.text_df if self.text_df is None else \
            self.text_df if other.text_df is None else self.text_df + other.text_df
        return Statistics(self.n_rows + other.n_rows, self.class_counts + other.class_counts,
                          count, mean, m2,
                          [a + b for a, b in zip(self.level_counts, other.level_counts,
                                                 strict=True)],
                          self.missing_levels + other.missing_levels, text_df=text_df)


def block_statistics(numeric, codes: np.ndarray, labels: np.ndarray, n_classes: int,
                     n_levels: list[int]) -> Statistics:
    """The statistics of one block of raw rows: numeric (rows, n_numeric) float64 (or float32,
    summed in float64) with NaN where missing (or CSR: nothing missing), codes (rows,
    n_categorical) level codes (-1 missing), labels (rows,) class indices; ``n_levels`` the
    codes of each categorical column."""
    rows = numeric.shape[0]
    if sp.issparse(numeric):
        count = np.full(numeric.shape[1], float(rows))
        mean = np.asarray(numeric.sum(axis=0)).ravel() / max(rows, 1)
        squares = np.asarray(numeric.multiply(numeric).sum(axis=0)).ravel()
        m2 = np.maximum(squares - rows * mean * mean, 0.0)
    else:
        numeric = np.asarray(numeric, dtype=np.float64)  # float32 features: float64 sums
        present = ~np.isnan(numeric)
        count = present.sum(axis=0).astype(np.float64)
        safe = np.where(present, numeric, 0.0)
        with np.errstate(over="ignore", invalid="ignore"):
            mean = safe.sum(axis=0) / np.maximum(count, 1.0)
            m2 = np.where(present, (numeric - mean) ** 2, 0.0).sum(axis=0)
    level_counts, missing = [], np.zeros(len(n_levels), dtype=np.int64)
    for j, size in enumerate(n_levels):
        counted = np.bincount(codes[:, j] + 1, minlength=size + 1)  # code -1 -> place 0
        level_counts.append(counted[1:size + 1].astype(np.int64))
        missing[j] = counted[0]
    return Statistics(rows, np.bincount(labels, minlength=n_classes).astype(np.int64),
                      count, mean, m2, level_counts, missing)


#: values per block of ``table_statistics`` (its float64 temporaries: 32 MB each)
STATISTICS_BLOCK_VALUES = 1 << 22
#: stored entries of hashed text counted at a time by ``document_frequency`` (12 bytes each)
DF_BLOCK_ENTRIES = 1 << 20


def table_statistics(table: RawTable, selection: np.ndarray, block_rows: int | None = None,
                     medians: bool = False) -> Statistics:
    """The statistics of the selected rows of ``table`` (in memory or a streamed cache), one
    block of ``block_rows`` at a time (default: ``STATISTICS_BLOCK_VALUES`` values), so that
    the temporaries stay small however wide the rows are."""
    if block_rows is None:
        block_rows = max(1, STATISTICS_BLOCK_VALUES // max(table.numeric.shape[1], 1))
    n_levels = [len(levels) for levels in table.levels]
    total = block_statistics(table.numeric[0:0], np.zeros((0, len(n_levels)), np.int32),
                             np.zeros(0, np.intp), len(table.classes), n_levels)
    for start in range(0, table.n_rows, block_rows):
        stop = min(start + block_rows, table.n_rows)
        keep = selection[start:stop]
        if not keep.any():
            continue
        numeric, codes = table.numeric[start:stop], table.codes[start:stop]
        if not keep.all():
            numeric, codes = numeric[keep], codes[keep]
        total = total + block_statistics(numeric, codes, table.labels[start:stop][keep],
                                         len(table.classes), n_levels)
    if table.text is not None:
        total.text_df = document_frequency(table.text, selection)
    if medians and not sp.issparse(table.numeric):
        values = np.asarray(table.numeric)[selection]
        with np.errstate(all="ignore"):
            total.medians = np.array([np.nanmedian(values[:, j]) if total.count[j] else np.nan
                                      for j in range(values.shape[1])])
    return total


def document_frequency(hashed, selection: np.ndarray) -> np.ndarray:
    """Per column of hashed text (CSR in memory or a ``stream.CsrFile``), the selected rows
    where it occurs (a row's columns are unique), counted in blocks of rows holding at most
    ``DF_BLOCK_ENTRIES`` entries: a block of all rows would copy the whole matrix."""
    df = np.zeros(hashed.shape[1], np.int64)
    indptr, n = hashed.indptr, hashed.shape[0]
    start = 0
    while start < n:
        stop = int(np.searchsorted(indptr, indptr[start] + DF_BLOCK_ENTRIES, "right")) - 1
        stop = min(max(stop, start + 1), n)
        keep = selection[start:stop]
        if keep.any():
            block = hashed[start:stop]
            df += np.bincount((block if keep.all() else block[keep]).indices,
                              minlength=hashed.shape[1])
        start = stop
    return df


# ---- the one fit of the preprocessing ----------------------------------------------------

@dataclass(frozen=True)
class Preprocessing:
    """What training applies to the raw rows: the encoder (columns, levels, fill values; None
    for LIBSVM data, whose features are the file's), the standardiser (None when off), the
    class weights (None when off), and the raw features' standard deviations (for the
    diagnosis of extreme scales when the features are not standardised)."""

    encoder: FeatureEncoder | None
    standardizer: Standardizer | None
    class_weight: np.ndarray | None
    raw_scale: np.ndarray = field(repr=False)
    feature_names: list[str] = field(repr=False)


def _most_frequent(levels: list[str], counts: np.ndarray) -> str:
    """The most frequent level; a tie goes to the first in sorted order."""
    order = sorted(range(len(levels)), key=lambda i: levels[i])
    return levels[max(order, key=lambda i: counts[i])]


def fit_preprocessing(stats: Statistics, schema: Schema, levels: list[list[str]], *,
                      impute: str | None, standardize: bool, class_weight=None,
                      sparse: bool = False, text: TextSpec | None = None,
                      source: str = "data") -> Preprocessing:
    """The preprocessing of the training rows whose statistics are ``stats``: the encoder
    (categorical levels sorted; under ``impute`` mean or median each numeric column's fill is
    its mean or median over the training rows, each categorical column's its most frequent
    level; ``text`` the hashed text columns), the standardiser (each encoded feature's mean
    and standard deviation over the training rows after the fill; no centring for sparse data
    or with text, whose features are sparse and left unscaled: their norm is the text's own)
    and the class weights (``targets.class_weights`` of the training rows' classes)."""
    n = stats.n_rows
    fill: dict[str, float | str] = {}
    if impute in ("mean", "median"):
        empty = [c for j, c in enumerate(schema.numeric) if stats.count[j] == 0]
        empty += [c for j, c in enumerate(schema.categorical)
                  if stats.missing_levels[j] == n and n]
        if empty:
            raise DataError(f"{source}: column(s) {empty} have no values in the training rows, "
                            "so there is nothing to fill them with: drop those columns")
        for j, column in enumerate(schema.numeric):
            if stats.count[j] < n:
                fill[column] = float(stats.mean[j] if impute == "mean" else stats.medians[j])
        for j, column in enumerate(schema.categorical):
            if stats.missing_levels[j]:
                fill[column] = _most_frequent(levels[j], stats.level_counts[j])
    categories = {column: tuple(sorted(levels[j])) for j, column in
                  enumerate(schema.categorical)}
    encoder = None if sparse else FeatureEncoder(schema.columns, categories, fill, impute, text)
    means, stds = _feature_moments(stats, schema, levels, fill, source)
    standardizer = None
    if standardize:
        centred = not (sparse or text is not None)  # centring would make the rows dense
        standardizer = Standardizer(means if centred else None, np.where(stds > 0, stds, 1.0))
    if text is not None:  # hashed text is not standardised: its scale is its own, or idf
        text_scale = 1.0 / text_idf(stats) if text.tfidf else np.ones(text.n_features)
        stds = np.concatenate([stds, np.ones(text.n_features)])
        if standardizer is not None or text.tfidf:
            scale = np.ones(len(means)) if standardizer is None else standardizer.scale
            standardizer = Standardizer(None, np.concatenate([scale, text_scale]))
    names = encoder.feature_names if encoder is not None else list(schema.numeric)
    return Preprocessing(encoder, standardizer, class_weights(class_weight, stats.class_counts),
                         stds, names)


def text_idf(stats: Statistics) -> np.ndarray:
    """Each hashed text feature's inverse document frequency over the training rows,
    log((1 + n) / (1 + df)) + 1 (scikit-learn's smoothed idf): counts times idf are tf-idf."""
    return np.log((1.0 + stats.n_rows) / (1.0 + stats.text_df)) + 1.0


def _feature_moments(stats: Statistics, schema: Schema, levels, fill, source):
    """(mean, standard deviation) of each encoded feature over the training rows, in the
    encoder's order: a numeric column with its missing entries filled (a constant group merged
    in), a one-hot level from its count (p and sqrt(p (1 - p)))."""
    n = max(stats.n_rows, 1)
    numeric_index = {c: j for j, c in enumerate(schema.numeric)}
    categorical_index = {c: j for j, c in enumerate(schema.categorical)}
    means, stds = [], []
    for column in schema.columns:
        if column in categorical_index:
            j = categorical_index[column]
            counts = dict(zip(levels[j], stats.level_counts[j].tolist(), strict=True))
            if column in fill:
                counts[fill[column]] += int(stats.missing_levels[j])
            for level in sorted(levels[j]):
                p = counts[level] / n
                means.append(p)
                stds.append(np.sqrt(max(p * (1.0 - p), 0.0)))
        else:
            j = numeric_index[column]
            count, mean, m2 = stats.count[j], stats.mean[j], stats.m2[j]
            if column in fill:
                count, mean, m2 = merge_moments((count, mean, m2),
                                                (n - count, fill[column], 0.0))
            means.append(mean)
            stds.append(np.sqrt(m2 / n))
    means, stds = np.array(means, dtype=np.float64), np.array(stds, dtype=np.float64)
    if not (np.all(np.isfinite(means)) and np.all(np.isfinite(stds))):
        bad = [c for j, c in enumerate(schema.numeric)
               if not (np.isfinite(stats.mean[j]) and np.isfinite(stats.m2[j]))]
        raise too_large_to_square(source, bad)
    return means, stds


def check_missing(table: RawTable, impute: str | None) -> None:
    """Missing feature values without an imputation policy are an error that names each
    column with its count over all rows (training and validation alike)."""
    if impute is None and table.missing.any():
        counts = {c: n for c, n in table.missing_counts.items() if n}
        raise missing_values_error(table.name, counts, "mean|median|drop")
