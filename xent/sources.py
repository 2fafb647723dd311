"""The seam between data and training: a ``RowSource`` is rows of features with their target and
weights, wherever they live (in memory, a streamed cache, Dask partitions). Training asks a
source for these things, and nothing else:

- ``sums(params, link, with_grad, compute_dtype)``: the ``loss.Sums`` of the loss and gradient
  over all its rows (each source adds up its own blocks, threads or workers);
- ``gram_product(v, fit_intercept)``: (Xa^T D Xa v, total weight), for the Lipschitz bound;
- ``information(params, link)``: the Hessian of the summed cross-entropy at ``params``
  (``inference.information`` over its rows), for standard errors;
- ``minibatch_epoch(step, params, state, batch_size, rng)``: one epoch of mini-batch steps,
  taken where the rows are;
- ``shape``, ``dtype``, ``target`` and ``weights`` (None: every row weighs 1).

``ArraySource`` is the in-memory implementation (dense or CSR); ``stream.StreamData`` and
``dask_engine.DaskData`` are the others.

Before there are rows to train on there is a ``Table``: the raw data (``data.RawTable``'s
fields: schema, levels, classes, labels, sample weights, missing rows) and two things only it
can do where its data are: one pass of ``statistics`` over some rows, and ``sources``, the
training and validation rows preprocessed into RowSources. ``MemoryTable`` is the in-memory
one, ``stream.StreamTable`` and ``dask_engine.DaskTable`` the others; ``xent.api`` decides
which one a run gets, and fits the preprocessing from the statistics the same way for all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .data import EncodingPlan, RawTable, ReadOptions, Schema, with_text
from .inference import information
from .links import Link
from .loss import Sums, gram_product, sums
from .preprocess import Preprocessing, Statistics, split_in_place, table_statistics
from .targets import Target, labels_target, row_weights
from .text import TextSpec


class Step(Protocol):
    """The optimiser's mini-batch steps (``train.BatchStep``), handed to a source so that
    they run where its rows are. Each returns (params, state, number of steps)."""

    def __call__(self, params: np.ndarray, state, batches: Iterable) -> tuple[np.ndarray, Any,
                                                                               int]:
        """Steps over ``batches``, in turn: (X, Target, weights or None) each, or RowSources
        (rows kept on a device)."""

    def rows(self, params: np.ndarray, state, X, target: Target, weights, order: np.ndarray,
             batch_size: int, in_place: bool = False) -> tuple[np.ndarray, Any, int]:
        """Steps over the rows ``order`` of an array X, ``batch_size`` at a time (sparse
        rows: lazily, touching only the features present). ``in_place``: ``params`` and the
        state's arrays are the caller's own, and may be stepped where they are."""


@runtime_checkable
class RowSource(Protocol):
    """Rows that training can sum over. See the module's docstring."""

    @property
    def shape(self) -> tuple[int, int]: ...

    @property
    def dtype(self) -> np.dtype: ...

    @property
    def target(self) -> Target: ...

    @property
    def weights(self) -> np.ndarray | None: ...

    def sums(self, params: np.ndarray, link: Link, *, with_grad: bool = True,
             compute_dtype=None) -> Sums: ...

    def gram_product(self, v: np.ndarray, fit_intercept: bool) -> tuple[np.ndarray, float]: ...

    def information(self, params: np.ndarray, link: Link) -> np.ndarray: ...

    def minibatch_epoch(self, step: Step, params: np.ndarray, state, batch_size: int,
                        rng: np.random.Generator) -> tuple[np.ndarray, Any, int]: ...


def sorted_batches(order: np.ndarray, batch_size: int) -> np.ndarray:
    """``order`` (a permutation of rows, int64) with each mini-batch's rows, ``batch_size`` at
    a time (the last batch may be shorter), in increasing order: faster to gather, and the rule
    of every mini-batch path (in memory, on a device, the lazy sparse steps). One sort of the
    whole order, batch by batch, rather than one call a batch."""
    order = np.asarray(order, dtype=np.int64)
    if batch_size <= 1:
        return order
    full = len(order) // batch_size * batch_size
    return np.concatenate([np.sort(order[:full].reshape(-1, batch_size), axis=1).ravel(),
                           np.sort(order[full:])])


def batch_rows(order: np.ndarray, batch_size: int):
    """Each mini-batch's rows of ``order``, ``batch_size`` at a time, in increasing order
    (``sorted_batches``)."""
    order = sorted_batches(order, batch_size)
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def shuffled_batches(X, target: Target, weights, order: np.ndarray, batch_size: int):
    """Mini-batches (X rows, Target, weights or None) of the rows ``order`` (a permutation),
    ``batch_size`` at a time (``batch_rows``)."""
    for rows in batch_rows(order, batch_size):
        yield X[rows], target.take(rows), None if weights is None else weights[rows]


@dataclass(frozen=True)
class ArraySource:
    """Rows in memory: X (n_samples, n_features), dense or CSR, float64 or float32; the
    target; per-row weights (n_samples,) or None."""

    X: Any
    target: Target
    weights: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.X.shape

    @property
    def dtype(self) -> np.dtype:
        return self.X.dtype

    def sums(self, params, link, *, with_grad=True, compute_dtype=None) -> Sums:
        return sums(params, self.X, self.target, link, self.weights, with_grad=with_grad,
                    compute_dtype=compute_dtype)

    def gram_product(self, v, fit_intercept):
        return gram_product(self.X, v, fit_intercept, self.weights)

    def information(self, params, link):
        return information(self.X, params, link.name, self.weights)

    def minibatch_epoch(self, step, params, state, batch_size, rng):
        """The rows in one shuffled order, ``batch_size`` at a time."""
        order = rng.permutation(self.shape[0])
        return step.rows(params, state, self.X, self.target, self.weights, order, batch_size)


@dataclass(frozen=True)
class SourceOptions:
    """How the rows are held for training: the features' dtype (float32 keeps X in single
    precision; sums stay float64), label smoothing of the training target, and the rows of a
    block read at once (streamed data)."""

    dtype: Any = np.float64
    smoothing: float = 0.0
    chunk_rows: int = 65536


@runtime_checkable
class Table(Protocol):
    """Raw training data, wherever they are. See the module's docstring."""

    name: str
    schema: Schema
    levels: list[list[str]]
    classes: list
    labels: np.ndarray
    sample_weight: np.ndarray | None
    missing: np.ndarray
    missing_counts: dict[str, int]
    sha256: str | None
    read: ReadOptions  # resolved: the delimiter used, the LIBSVM index base found
    text_spec: TextSpec | None  # how its text columns were hashed; None: no text
    notes: tuple[str, ...]  # what reading the file found to tell (``data.data_notes``)

    @property
    def n_rows(self) -> int: ...

    @property
    def sparse(self) -> bool: ...

    def statistics(self, selection: np.ndarray, medians: bool = False) -> Statistics: ...

    def sources(self, train: np.ndarray, validation: np.ndarray, prep: Preprocessing,
                options: SourceOptions) -> tuple[RowSource, RowSource | None]: ...


def masked_target(table, selection: np.ndarray, smoothing: float, class_weight):
    """(Target, row weights or None) of the selected rows: class weights (training only) times
    the table's sample weights."""
    target = labels_target(table.labels[selection], len(table.classes), smoothing)
    sample = None if table.sample_weight is None else table.sample_weight[selection]
    return target, row_weights(target, sample, class_weight)


@dataclass
class MemoryTable(RawTable):
    """A ``RawTable`` held in memory; its sources are ``ArraySource``s.

    ``owned``: the arrays may be overwritten, so the training rows are encoded, split and
    standardised in place where they can be (memory grows by the validation part only)."""

    owned: bool = True

    @classmethod
    def of(cls, raw: RawTable, owned: bool = True) -> MemoryTable:
        return cls(**vars(raw), owned=owned)

    def statistics(self, selection, medians=False) -> Statistics:
        return table_statistics(self, selection, medians=medians)

    def sources(self, train, validation, prep, options):
        plan = EncodingPlan(self.schema, self.levels, prep.encoder)
        X = plan.encode(self.numeric, self.codes)
        if self.text is not None:
            X = with_text(X, self.text)
        # X may be overwritten: a new array, or the table's own
        own = self.owned or (X is not self.numeric and X is not self.text)
        dense = isinstance(X, np.ndarray)
        X_val = X[validation] if validation.any() else None
        if dense and X.dtype in (np.float32, np.float64) and own:
            X_train = split_in_place(X, np.flatnonzero(train), np.arange(0))[0]
            self.numeric = None  # its rows are the training part now
        else:
            X_train = X if train.all() else X[train]  # all rows: no copy (text is large)
        sources = []
        for rows, X_part, smoothing, class_weight in (
                (train, X_train, options.smoothing, prep.class_weight),
                (validation, X_val, 0.0, None)):
            if X_part is None:
                sources.append(None)
                continue
            if np.dtype(options.dtype).itemsize > X_part.dtype.itemsize:
                X_part = X_part.astype(options.dtype)  # widen before standardising, narrow after
            if prep.standardizer is not None:
                X_part = prep.standardizer.transform(X_part, copy=X_part is X and not own)
            target, weights = masked_target(self, rows, smoothing, class_weight)
            sources.append(ArraySource(X_part.astype(options.dtype, copy=False), target,
                                       weights))
        return sources[0], sources[1]
