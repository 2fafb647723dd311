"""Training on the features present in the training rows.

A weight of a feature with no stored entry in the training rows gets no gradient from the
data: its row of X^T (Q - P) is zero. From a zero start it stays zero whatever the optimiser,
because every other part of a step is zero there too: the L2 term l2 W, L1's proximal step at
0, the cumulative L1 penalty of a weight at 0, and AdaGrad's and Adam's steps on a zero
gradient. So training on the present columns alone is the same problem, with the same
objective, gradient norm and records at each epoch and the same optimum. Only W, and every
array of W's size, shrinks to the present features: the last finite copy, the gradient and an
optimiser's moments. Hashed text is where that counts: 45,490 of its 2^18 buckets are present
in ``bench/bench_text.py``'s training corpus, so a W-sized array is 7 MB instead of 42.

``Narrowing.of`` decides when to narrow: in-memory CSR rows (``sources.ArraySource``) with
fewer than half their columns present, and a start that is zero outside them. ``train.fit``
then trains on the narrowed sources, writes narrowed checkpoints that name their columns
(``Checkpoint.columns``), and returns parameters widened back to every feature.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from .sources import ArraySource

#: narrow only where fewer than this share of the columns is present: below it the narrowed
#: arrays save more than the copy of X's column indices costs
PRESENT_SHARE = 0.5


@dataclass(frozen=True)
class Narrowing:
    """Training restricted to the features ``kept`` (increasing) of ``n_features``.

    Parameter arrays have a row per feature and then the intercept's, (n_features + 1, k); the
    cumulative L1 penalty's state has W's rows only, (n_features, k). ``narrow`` and ``widen``
    map either shape (a widened array is zero outside ``kept``)."""

    kept: np.ndarray
    n_features: int

    @classmethod
    def of(cls, source, validation, start: np.ndarray) -> Narrowing | None:
        """The narrowing for training on ``source`` (validated on ``validation``) from
        ``start`` (n_features + 1, k), or None where it does not apply or would not pay."""
        present = _present(source, validation)
        if present is None:
            return None
        if start[:-1].any() and start[:-1][~present].any():  # (the first test copies nothing)
            return None
        return cls(np.flatnonzero(present), source.shape[1])

    @staticmethod
    def working_features(source, validation) -> int:
        """The features training on ``source`` works on, narrowed from zeros (``of``)."""
        present = _present(source, validation)
        return source.shape[1] if present is None else int(present.sum())

    def _rows(self, length: int) -> np.ndarray:
        """The rows to keep of an array of ``length`` rows (the full parameters' or W's)."""
        if length == self.n_features + 1:
            return np.append(self.kept, self.n_features)
        if length == self.n_features:
            return self.kept
        raise ValueError(f"an array of {length} rows is not shaped like the parameters of "
                         f"{self.n_features} features")

    def narrow(self, array: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(array[self._rows(array.shape[0])])

    def widen(self, array: np.ndarray) -> np.ndarray:
        extra = array.shape[0] - len(self.kept)  # 1 with the intercept's row, else 0
        full = np.zeros((self.n_features + extra,) + array.shape[1:], array.dtype)
        full[self._rows(self.n_features + extra)] = array
        return full

    def sources(self, source: ArraySource, validation: ArraySource | None):
        """The training and validation rows on the kept columns only, renumbered."""
        return (replace(source, X=on_columns(source.X, self.kept)),
                None if validation is None else replace(validation,
                                                        X=on_columns(validation.X, self.kept)))

    def _map_state(self, state: dict, function, length: int) -> dict:
        return {name: function(value) if np.ndim(value) == 2 and len(value) in
                (length, length + 1) else value for name, value in state.items()}

    def narrow_checkpoint(self, checkpoint):
        """A checkpoint of the whole parameters (``columns`` None) for this narrowed run."""
        return replace(checkpoint, params=self.narrow(checkpoint.params),
                       best_params=None if checkpoint.best_params is None else
                       self.narrow(checkpoint.best_params),
                       optimizer_state=self._map_state(checkpoint.optimizer_state, self.narrow,
                                                       self.n_features),
                       columns=self.kept)

    def widen_checkpoint(self, checkpoint):
        """A checkpoint of this narrowed run as one of the whole parameters."""
        return replace(checkpoint, params=self.widen(checkpoint.params),
                       best_params=None if checkpoint.best_params is None else
                       self.widen(checkpoint.best_params),
                       optimizer_state=self._map_state(checkpoint.optimizer_state, self.widen,
                                                       len(self.kept)),
                       columns=None)


def on_columns(X, kept: np.ndarray):
    """CSR X on the columns ``kept`` (increasing) only, renumbered 0..len(kept) - 1; the
    entries of other columns are left out. Shares X's values and row pointers where no entry
    is left out; the column indices are a new array (of X's index dtype) either way."""
    nnz = X.indptr[-1]  # scipy allows longer arrays than that
    data, indices = X.data[:nnz], X.indices[:nnz]
    position = np.full(X.shape[1], -1, indices.dtype)
    position[kept] = np.arange(len(kept), dtype=indices.dtype)
    columns = position[indices]
    inside = columns >= 0
    if inside.all():
        return type(X)((data, columns, X.indptr), shape=(X.shape[0], len(kept)), copy=False)
    before = np.concatenate([[0], np.cumsum(inside)])  # entries kept before each position
    indptr = before[X.indptr].astype(X.indptr.dtype)
    return type(X)((data[inside], columns[inside], indptr), shape=(X.shape[0], len(kept)),
                   copy=False)


def _present(source, validation) -> np.ndarray | None:
    """(n_features,) whether each column has an entry in ``source``'s rows, where narrowing
    applies (in-memory CSR rows) and pays (fewer than ``PRESENT_SHARE`` of the columns
    present); else None."""
    sparse_in_memory = all(isinstance(s, ArraySource) and sp.issparse(s.X)
                           for s in (source, validation) if s is not None)
    if not sparse_in_memory:
        return None
    n_features = source.shape[1]
    nnz = source.X.indptr[-1]  # scipy allows longer index arrays than that
    present = np.bincount(source.X.indices[:nnz], minlength=n_features) > 0
    return None if present.sum() >= PRESENT_SHARE * n_features else present
