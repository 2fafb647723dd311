"""Loaders: CSV and Parquet (pandas), LIBSVM/svmlight (scikit-learn) and scikit-learn's bundled
toy data sets.

For training, every loader produces a ``RawTable``: the table as numbers before any
preprocessing (numeric columns with NaN where missing, categorical columns as level codes, class
indices, sample weights). ``parse_block`` turns one chunk of a file into those numbers, by the
same ``Schema`` rule, whether the file is read whole, streamed chunk by chunk or read by Dask
partition by partition.

CSV columns that are not numeric are one-hot encoded; the encoding (columns, levels, fill values)
is a ``FeatureEncoder`` stored in the model, and ``EncodingPlan`` applies it to raw rows, the
same for training and prediction. For eval and predict a ``Dataset`` holds the encoded features.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import scipy.sparse as sp

from .errors import DataError
from .files import (
    codec_name,
    compression,
    encoding_error,
    kind_suffix,
    open_bytes,
    open_text,
    raise_read_failure,
)
from .text import (
    FASTTEXT_BLOCK_LINES,
    FASTTEXT_TARGET,
    FeatureNames,
    TextSpec,
    fasttext_chunks,
    fasttext_spec,
    hash_fasttext,
    is_fasttext,
    several_labels_notes,
    stack_rows,
)

if TYPE_CHECKING:
    import pandas as pd

BUILTIN_PREFIX = "sklearn:"
IMPUTE_CHOICES = ("mean", "median", "drop")
LIBSVM_SUFFIXES = (".svm", ".libsvm", ".svmlight")
#: candidate CSV delimiters, in order of preference when a file fits several
DELIMITERS = (",", ";", "\t", "|")


@dataclass(frozen=True)
class ReadOptions:
    """How a data file's text becomes values: the one place for these rules, used for a file
    read whole, streamed, on Dask, and again by eval and predict (the model stores
    ``for_model``'s part, so prediction reads files as training did).

    sep: the CSV delimiter; None sniffs it (``.tsv`` is tab). na_values: strings, besides
    pandas' own (empty, NA, NaN, ...), that mean a missing value. thousands: the thousands
    separator inside numbers, or None. libsvm_base: "zero" (feature index 0 is the first
    column), "one" (index 1 is), or "auto" (zero-based if any index is 0). decimal: the
    decimal mark inside numbers ("," in files written where 3,14 is pi). ignore: columns of
    the file left out of the features (an identifier, a written row index, a leak): parsed,
    never encoded (``detect_schema``). encoding: the text encoding of the file's bytes
    (Python's codec names: "utf-8", with or without a byte-order mark, "latin-1", "cp1252",
    ...); like the delimiter, it belongs to one file, so a model does not keep it. header:
    whether the first line names the columns; without one they are named c1, c2, ... (a model
    keeps this, so predict reads later files the same way).
    """

    sep: str | None = None
    na_values: tuple[str, ...] = ()
    thousands: str | None = None
    libsvm_base: str = "auto"
    decimal: str = "."
    ignore: tuple[str, ...] = ()
    encoding: str = "utf-8"
    header: bool = True

    @property
    def first_line(self) -> int:
        """The file line of the first data row, for messages: 2 below a header, else 1."""
        return 2 if self.header else 1

    @property
    def text_encoding(self) -> str:
        """The codec a file is opened with: UTF-8 drops a byte-order mark (spreadsheets
        write one)."""
        return "utf-8-sig" if codec_name(self.encoding) == "utf-8" else self.encoding

    def pandas(self, sep: str, names: list[str]) -> dict:
        """Keyword arguments of ``pandas.read_csv`` for a file whose delimiter is ``sep`` and
        whose columns are ``names`` (``checked_header``'s)."""
        options = {"encoding": self.text_encoding, "sep": sep}
        if not self.header:
            options.update(header=None, names=names)
        if self.na_values:
            options["na_values"] = list(self.na_values)
        if self.thousands:
            options["thousands"] = self.thousands
        if self.decimal != ".":
            options["decimal"] = self.decimal
        return options

    def to_dict(self) -> dict:
        return {"sep": self.sep, "na_values": list(self.na_values), "thousands": self.thousands,
                "libsvm_base": self.libsvm_base, "decimal": self.decimal,
                "ignore": list(self.ignore), "encoding": self.encoding, "header": self.header}

    def for_model(self) -> dict:
        """What a model keeps: the meaning of values, not the delimiter or encoding of one
        file nor the columns training left out (its encoder names the columns it reads)."""
        return {k: v for k, v in self.to_dict().items()
                if k not in ("sep", "ignore", "encoding")}

    @classmethod
    def from_dict(cls, spec: dict | None) -> ReadOptions:
        spec = spec or {}
        return cls(spec.get("sep"), tuple(spec.get("na_values", ())), spec.get("thousands"),
                   spec.get("libsvm_base", "auto"), spec.get("decimal", "."),
                   tuple(spec.get("ignore", ())), spec.get("encoding", "utf-8"),
                   spec.get("header", True))


#: the default: sniffed delimiter, pandas' missing values, no thousands separator, auto base,
#: a decimal point
DEFAULT_READ = ReadOptions()


def delimiter(path: Path, options: ReadOptions) -> str:
    """The delimiter of a CSV: ``options.sep`` if given, tab for ``.tsv``, else the candidate
    (``DELIMITERS``) that splits the first lines into the same number (> 1) of fields, the most
    fields winning; a comma if none does."""
    if options.sep:
        return options.sep
    if kind_suffix(path) == ".tsv":
        return "\t"
    try:
        with open_text(path, options.text_encoding) as handle:
            lines = [line for _, line in zip(range(20), handle, strict=False) if line.strip()]
    except (OSError, EOFError, ValueError):  # undecodable, damaged, unreadable
        return ","  # the header check reports it
    best, best_fields = ",", 1
    for candidate in DELIMITERS:
        counts = {len(row) for row in csv.reader(lines, delimiter=candidate)}
        if len(counts) == 1 and (fields := counts.pop()) > best_fields:
            best, best_fields = candidate, fields
    return best


def is_data_frame(obj) -> bool:
    """Whether ``obj`` is a pandas DataFrame (pandas is imported only where it is needed: the
    streaming of a cache runs without it, in about 50 MB less memory)."""
    import sys

    return "pandas" in sys.modules and isinstance(obj, sys.modules["pandas"].DataFrame)


def _builtin_loaders():
    from sklearn import datasets

    return {
        "iris": datasets.load_iris,
        "wine": datasets.load_wine,
        "breast_cancer": datasets.load_breast_cancer,
        "digits": datasets.load_digits,
    }


BUILTIN_NAMES = ("iris", "wine", "breast_cancer", "digits")


# ---- the raw table: what every loader produces, in memory, in a cache or on workers --------

@dataclass(frozen=True)
class Schema:
    """Which columns of a table are what: the label column, the sample-weight column (or
    None), and the feature columns in file order, split into numeric (and boolean) ones and
    categorical (any other) ones. Decided once, from the first rows a source reads
    (``detect_schema``), by the same rule for a file in memory, streamed or on Dask."""

    target: str
    weight: str | None
    columns: tuple[str, ...]
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    text: tuple[str, ...] = ()  # free-text columns, hashed (``text.TextSpec``), not in columns
    ignored: tuple[str, ...] = ()  # columns of the file left out (--ignore), not in columns


def detect_schema(columns, is_numeric, target: str | None, weight: str | None,
                  source: str, text: tuple[str, ...] = (), ignore: tuple[str, ...] = ()
                  ) -> Schema:
    """The schema of a table with ``columns`` whose dtypes ``is_numeric(column)`` tells;
    ``target`` None is the last column; ``text`` the free-text columns; ``ignore`` columns
    that are none of these, left out."""
    columns = [str(c) for c in columns]
    target = target or columns[-1]
    if target not in columns:
        raise DataError(f"{source}: no target column {target!r}; the columns are "
                        f"{_names(columns)}")
    _check_ignored(ignore, columns, (target, weight, *text), source)
    absent = [c for c in text if c not in columns]
    if absent:
        raise DataError(f"{source}: no text column(s) {_names(absent)}; the columns are "
                        f"{_names(columns)}")
    if target in text or (weight and weight in text):
        raise DataError(f"{source}: column {target if target in text else weight!r} cannot be "
                        "both a text column and the target or weight; name the label column "
                        "with --target")
    if weight and weight not in columns:
        raise DataError(f"{source}: no weight column {weight!r}; the columns are "
                        f"{_names(columns)}")
    if weight == target:
        raise DataError(f"{source}: the weight column cannot be the target {target!r}")
    features = [c for c in columns if c not in (target, weight) and c not in text
                and c not in ignore]
    if not features and not text:
        hint = ""
        if target.lstrip().startswith("#"):
            hint = ("; the first line looks like a comment: the header must be the file's "
                    "first line, so remove the lines above it")
        elif any(mark in target for mark in ";\t|: "):
            hint = ("; the header reads as one column: if another character separates the "
                    "columns, pass --sep")
        raise DataError(f"{source}: there are no feature columns besides the target "
                        f"{target!r}{hint}")
    numeric = tuple(c for c in features if is_numeric(c))
    categorical = tuple(c for c in features if c not in numeric)
    return Schema(target, weight or None, tuple(features), numeric, categorical, tuple(text),
                  tuple(ignore))


def _check_ignored(ignore, columns: list[str], roles: tuple, source: str) -> None:
    """Columns to leave out must be columns, and not the label, weight or text ones."""
    absent = [c for c in ignore if c not in columns]
    if absent:
        raise DataError(f"{source}: no column(s) {_names(absent)} to ignore; the columns are "
                        f"{_names(columns)}")
    taken = [c for c in ignore if c in roles]
    if taken:
        raise DataError(f"{source}: --ignore names {_names(taken)}, the label, weight or text "
                        "column (the label is the last column unless --target names it)")


def frame_schema(frame: pd.DataFrame, target: str | None, weight: str | None,
                 source: str, text: tuple[str, ...] = (), ignore: tuple[str, ...] = ()
                 ) -> Schema:
    """``detect_schema`` of a pandas (or dask) DataFrame: numeric and boolean dtypes are
    numeric."""
    import pandas as pd

    def is_numeric(column):
        dtype = frame[column].dtype
        return pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)

    return detect_schema(frame.columns, is_numeric, target, weight, source, text, ignore)


class Codebook:
    """Values of one column -> integer codes, by first appearance across chunks (or fixed:
    ``frozen``, then a value not in the book gets code -2 and is remembered in ``unseen``).
    A missing value gets -1. Categorical levels are keyed by their text; labels (``labels``)
    by the text of their Python value, so 1, 1.0 and "1" are one class."""

    def __init__(self, values=(), *, frozen: bool = False, labels: bool = False):
        self.values: list = []
        self.index: dict = {}
        self.frozen, self.labels = frozen, labels
        self.unseen: list = []
        for value in values:
            self._add(value)

    def _key(self, value):
        return str(python_scalar(value)) if self.labels else str(value)

    def _add(self, value) -> int:
        key = self._key(value)
        if key not in self.index:
            self.index[key] = len(self.values)
            self.values.append(python_scalar(value) if self.labels else key)
        return self.index[key]

    def encode(self, values: pd.Series) -> np.ndarray:
        import pandas as pd

        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        lookup = []
        for value in uniques.tolist():
            code = self.index.get(self._key(value))
            if code is None and self.frozen:
                self.unseen.append(python_scalar(value))
                code = -2
            lookup.append(self._add(value) if code is None else code)
        return np.array(lookup + [-1], dtype=np.int64)[codes]  # code -1 picks the final -1


@dataclass
class RawBlock:
    """Rows of a table as numbers: numeric (rows, n_numeric) float64, NaN where missing;
    codes (rows, n_categorical) int32 level codes (-1 missing, -2 a level the book did not
    know); label codes (rows,) or None; sample weights (rows,) or None."""

    numeric: np.ndarray
    codes: np.ndarray
    labels: np.ndarray | None
    weights: np.ndarray | None

    @property
    def missing(self) -> np.ndarray:
        """(rows,) whether a row has a missing feature value."""
        return np.isnan(self.numeric).any(axis=1) | (self.codes == -1).any(axis=1)

    def missing_counts(self, schema: Schema) -> dict[str, int]:
        counts = dict(zip(schema.numeric, np.isnan(self.numeric).sum(axis=0).tolist(),
                          strict=True))
        counts.update(zip(schema.categorical, (self.codes == -1).sum(axis=0).tolist(),
                          strict=True))
        return counts


def parse_block(chunk: pd.DataFrame, schema: Schema, books: list[Codebook],
                label_book: Codebook | None, source: str, first_line: int = 2,
                trained: bool = False) -> RawBlock:
    """One chunk of a table (pandas) as numbers, by ``schema``; ``books`` code the categorical
    columns and ``label_book`` the labels (None: no labels wanted). ``first_line`` is the
    chunk's first line in the file, for messages; ``trained`` says the schema is a model's.
    The same function parses a file in memory, a streamed chunk and a Dask partition."""
    numeric = _numeric_block(chunk, schema.numeric, source, first_line, trained)
    codes = np.empty((len(chunk), len(schema.categorical)), dtype=np.int32)
    for j, column in enumerate(schema.categorical):
        codes[:, j] = books[j].encode(chunk[column])
    labels = None
    if label_book is not None:
        labels = label_book.encode(chunk[schema.target])
        absent = np.flatnonzero(labels == -1)
        if absent.size == len(chunk) and schema.target == chunk.columns[-1]:
            raise DataError(f"{source}: the label column {schema.target!r}, the last, is empty "
                            f"on every line: if each line ends with a delimiter, name the "
                            f"label column with --target and leave this one out with --ignore "
                            f"{schema.target!r}")
        if absent.size:
            lines = (absent[:5] + first_line).tolist()
            raise DataError(f"{source}: {absent.size} row(s) have no label in column "
                            f"{schema.target!r} (file lines {lines}); fill them in or remove "
                            "them")
    weights = None
    if schema.weight is not None:
        weights = _weight_block(chunk[schema.weight], source, first_line, schema.weight)
    return RawBlock(numeric, codes, labels, weights)


def _text_lines(values: pd.Series, first_line: int) -> str:
    """Where a column meant to hold numbers holds text: the first values and their lines
    (the chunk's rows counted from ``first_line``)."""
    import pandas as pd

    text = pd.to_numeric(values, errors="coerce").isna() & values.notna()
    at = np.flatnonzero(text.to_numpy())[:3]
    return ", ".join(f"{values.iloc[i]!r} on line {first_line + i:,}" for i in at)


def _numeric_block(chunk: pd.DataFrame, numeric, source: str, first_line: int,
                   trained: bool) -> np.ndarray:
    """The numeric columns of a chunk as float64 (n, n_numeric), NaN where missing; text in
    them and infinite values are errors that name the columns."""
    try:
        block = chunk[list(numeric)].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        for column in numeric:  # find the culprit, to name it
            try:
                chunk[column].to_numpy(dtype=np.float64, na_value=np.nan)
            except (TypeError, ValueError):
                if trained:
                    raise DataError(f"{source}: column {column!r} was numeric in training but "
                                    f"holds text here ({_text_lines(chunk[column], first_line)})"
                                    "; clean it") from None
                raise DataError(
                    f"{source}: column {column!r} is numeric in the first rows but has text "
                    f"in lines {first_line} to {first_line + len(chunk) - 1}; clean it, or "
                    "read the file without --stream") from None
        raise
    if not block.flags.writeable:  # under copy-on-write (pandas 3) a frame of one float
        block = block.copy()  # column gives its own memory, read-only; the split moves rows
    if np.isinf(block).any():
        bad = [numeric[j] for j in np.flatnonzero(np.isinf(block).any(axis=0))]
        lines = (first_line + np.flatnonzero(np.isinf(block).any(axis=1))[:5]).tolist()
        raise DataError(f"{source}: infinite values in column(s) {', '.join(map(repr, bad))} "
                        f"(lines {lines}): fix the file")
    return np.ascontiguousarray(block)


def _weight_block(values: pd.Series, source: str, first_line: int, column: str) -> np.ndarray:
    try:
        weights = values.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        raise DataError(f"{source}: the weight column {column!r} holds text "
                        f"({_text_lines(values, first_line)}); give a number on every "
                        "row") from None
    bad = np.flatnonzero(~np.isfinite(weights) | (weights < 0))
    if bad.size:
        raise DataError(f"{source}: the weight column {column!r} needs a finite non-negative "
                        f"number on every row (file lines {(bad[:5] + first_line).tolist()})")
    return weights


def finish_labels(book: Codebook) -> tuple[list, np.ndarray]:
    """(classes in ``class_order``, code -> class index) for a book filled by first
    appearance."""
    classes = class_order(book.values)
    position = {str(c): i for i, c in enumerate(classes)}
    return classes, np.array([position[str(v)] for v in book.values], dtype=np.intp)


@dataclass
class RawTable:
    """A whole table as numbers, before any preprocessing: what every loader produces.

    numeric: (n_rows, n_numeric) float64 with NaN where missing (a numpy array, a file read a
    block at a time, or CSR for LIBSVM data); codes: (n_rows, n_categorical) level codes into
    ``levels`` (-1 missing); labels: (n_rows,) class indices into ``classes``; sample_weight:
    (n_rows,) or None; missing: (n_rows,) rows with a missing feature value; missing_counts:
    per feature column over all rows; sha256: of the file's bytes (or a built-in set's
    arrays); text: the hashed text columns (n_rows, text_spec.n_features) CSR, or None."""

    name: str
    schema: Schema
    levels: list[list[str]]
    classes: list
    numeric: Any
    codes: Any
    labels: np.ndarray
    sample_weight: np.ndarray | None
    missing: np.ndarray
    missing_counts: dict[str, int]
    sha256: str | None = None
    read: ReadOptions = DEFAULT_READ
    text: Any = None
    text_spec: TextSpec | None = None
    notes: tuple[str, ...] = ()  # what reading the file found to tell (``data_notes``)

    @property
    def n_rows(self) -> int:
        return len(self.labels)

    @property
    def sparse(self) -> bool:
        return sp.issparse(self.numeric)

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def frame_table(frame: pd.DataFrame, name: str, target: str | None = None,
                weight: str | None = None, sha256: str | None = None,
                read: ReadOptions = DEFAULT_READ, text: TextSpec | None = None) -> RawTable:
    """A RawTable of a pandas DataFrame (a whole CSV or Parquet file, read by ``read``), its
    ``text`` columns hashed."""
    schema = frame_schema(frame, target, weight, name, text.columns if text else (),
                          read.ignore)
    hashed = None if text is None else text.transform(frame, name)
    return _schema_table(frame, schema, name, (sha256, read), (text, hashed))


def fasttext_table(path: Path, read: ReadOptions, text: TextSpec | None) -> RawTable:
    """A RawTable of a fastText file: its labels, and its documents hashed by ``text``'s
    settings as they are read (``text.hash_fasttext``: the strings never all in memory)."""
    import pandas as pd

    spec = fasttext_spec(text)
    labels, hashed, several = hash_fasttext(path, spec)
    schema = Schema(FASTTEXT_TARGET, None, (), (), (), spec.columns)
    table = _schema_table(pd.DataFrame({FASTTEXT_TARGET: labels}), schema, str(path),
                          (file_sha256(path), read), (spec, hashed))
    return replace(table, notes=several_labels_notes(str(path), several, len(labels)))


def _schema_table(frame: pd.DataFrame, schema: Schema, name: str, origin: tuple,
                  text: tuple) -> RawTable:
    """The RawTable of ``frame``'s columns as ``schema`` says; ``origin`` is (sha256, read
    options), ``text`` (TextSpec or None, the hashed text columns or None)."""
    books = [Codebook() for _ in schema.categorical]
    label_book = Codebook(labels=True)
    block = parse_block(frame, schema, books, label_book, name, origin[1].first_line)
    classes, remap = finish_labels(label_book)
    spec, hashed = text
    return RawTable(name, schema, [b.values for b in books], classes, block.numeric,
                    block.codes, remap[block.labels], block.weights, block.missing,
                    block.missing_counts(schema), *origin, hashed, spec)


def array_table(X, labels: np.ndarray, classes: list, feature_names: list[str], name: str,
                sha256: str | None = None, sample_weight=None,
                read: ReadOptions = DEFAULT_READ) -> RawTable:
    """A RawTable of a numeric matrix (dense or CSR) and class indices."""
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=np.float64)
    else:
        X = np.ascontiguousarray(X, dtype=feature_dtype(X))
    finite_or_raise(X, name)
    names = tuple(feature_names)
    schema = Schema("", None, names, names, ())
    n = X.shape[0]
    return RawTable(name, schema, [], list(classes), X, np.zeros((n, 0), np.int32),
                    np.asarray(labels, dtype=np.intp), sample_weight, np.zeros(n, dtype=bool),
                    dict.fromkeys(names, 0), sha256, read)


class EncodingPlan:
    """How a table's raw columns become the encoder's features: numeric columns (imputed with
    the encoder's fill values) and one-hot categorical ones, in the encoder's order. The one
    encoding, for training (every source) and prediction alike."""

    def __init__(self, schema: Schema, levels: list[list[str]], encoder: FeatureEncoder | None):
        self.n_features = len(schema.numeric) if encoder is None else len(encoder.tabular_names)
        numeric_features, numeric_sources, fills = [], [], []
        self.categorical = []  # (raw column, first feature, raw code -> level position)
        columns = schema.numeric if encoder is None else encoder.columns
        feature = 0
        for column in columns:
            if encoder is not None and column in encoder.categories:
                j = schema.categorical.index(column)
                position = {level: i for i, level in enumerate(encoder.categories[column])}
                fill = position.get(str(encoder.fill.get(column)), -1)
                # the last two entries: code -2 (a level training never saw), code -1 (missing)
                level_map = np.array([position.get(level, -1) for level in levels[j]]
                                     + [-1, fill], dtype=np.intp)
                self.categorical.append((j, feature, level_map))
                feature += len(position)
            else:
                numeric_features.append(feature)
                numeric_sources.append(schema.numeric.index(column))
                fills.append(np.nan if encoder is None else encoder.fill.get(column, np.nan))
                feature += 1
        self.numeric_features = np.array(numeric_features, dtype=np.intp)
        self.numeric_sources = np.array(numeric_sources, dtype=np.intp)
        self.fills = np.array(fills, dtype=np.float64)
        self.filled = ~np.isnan(self.fills)
        # the common case, numeric columns only, in the raw order and nothing to fill: the
        # features are the raw numeric block itself
        self.plain = not self.categorical and not self.filled.any() and np.array_equal(
            self.numeric_sources, np.arange(len(schema.numeric)))

    def encode(self, numeric, codes) -> np.ndarray:
        """The features (rows, n_features) of raw rows: ``numeric`` itself when ``plain``
        (dense or CSR), else a new array."""
        if self.plain:
            return numeric
        X = np.zeros((numeric.shape[0], self.n_features))
        X[:, self.numeric_features] = numeric[:, self.numeric_sources]
        if self.filled.any():
            columns = self.numeric_features[self.filled]
            block = X[:, columns]
            X[:, columns] = np.where(np.isnan(block), self.fills[self.filled], block)
        if self.categorical:
            rows = np.arange(len(codes))
            for j, feature, level_map in self.categorical:
                level = level_map[codes[:, j]]  # codes -1 and -2 pick the last two entries
                seen = level >= 0
                X[rows[seen], feature + level[seen]] = 1.0
        return X


def tabular_feature_names(columns: Sequence[str], categories: dict) -> list[str]:
    """The features' names of ``columns`` (text columns aside): a numeric column's own name,
    and "column=level" for each level of a categorical one (``categories``: its levels, in
    order). Where a level's name is also another feature's (a column named "color=red" beside
    column "color" with level "red"), the level's is written "color='red'", so that every
    feature has a name of its own in the tables that show them."""
    def names(clashes: set) -> list[str]:
        out = []
        for column in columns:
            if column not in categories:
                out.append(column)
                continue
            out.extend(f"{column}={level!r}" if f"{column}={level}" in clashes
                       else f"{column}={level}" for level in categories[column])
        return out

    plain = names(set())
    clashes = {name for name, count in Counter(plain).items() if count > 1}
    return names(clashes) if clashes else plain


@dataclass(frozen=True)
class FeatureEncoder:
    """How a table's feature columns become numbers (stored in the model).

    columns: the input feature columns, in order. categories: for each non-numeric column, its
    levels (one 0/1 feature each, in this order; a level not seen in training encodes as all
    zeros). fill: the value that replaces a missing entry of each column (empty unless an
    imputation policy was chosen; fitted on the training rows). text: how the free-text
    columns are hashed (their features follow the others'), or None.
    """

    columns: tuple[str, ...]
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)
    fill: dict[str, float | str] = field(default_factory=dict)
    impute: str | None = None
    text: TextSpec | None = None

    @property
    def tabular_names(self) -> list[str]:
        """The names of the features of the columns other than text."""
        return tabular_feature_names(self.columns, self.categories)

    @property
    def feature_names(self) -> Sequence[str]:
        if self.text is None:
            return self.tabular_names
        return FeatureNames(self.tabular_names, self.text.columns, self.text.buckets)

    @property
    def schema(self) -> Schema:
        """The raw columns a table must have for this encoder."""
        return Schema("", None, self.columns,
                      tuple(c for c in self.columns if c not in self.categories),
                      tuple(c for c in self.columns if c in self.categories),
                      () if self.text is None else self.text.columns)

    def to_dict(self) -> dict:
        return {
            "columns": list(self.columns),
            "categories": {k: list(v) for k, v in self.categories.items()},
            "fill": dict(self.fill),
            "impute": self.impute,
            "text": None if self.text is None else self.text.to_dict(),
        }

    @classmethod
    def from_dict(cls, spec: dict) -> FeatureEncoder:
        text = spec.get("text")
        return cls(
            tuple(spec["columns"]),
            {k: tuple(v) for k, v in spec.get("categories", {}).items()},
            dict(spec.get("fill", {})),
            spec.get("impute"),
            None if text is None else TextSpec.from_dict(text),
        )

    def transform(self, frame: pd.DataFrame, source: str = "data",
                  first_line: int = 2) -> Encoded:
        """Encode ``frame``'s feature columns as training did (``parse_block`` and
        ``EncodingPlan``): X (n_kept, n_features), the kept row positions, and the levels
        training never saw (encoded as no level: all zeros), by column.

        Rows with missing values that the model has no fill for are dropped only under the
        ``drop`` policy; otherwise they are an error that names the columns and lines (the
        file's first data row is line ``first_line``: ``ReadOptions.first_line``).
        """
        missing = [c for c in self.schema.columns + self.schema.text if c not in frame.columns]
        if missing:
            raise DataError(
                f"{source}: missing column(s) {_names(missing)} that the model was trained on; "
                f"the file has {_names(frame.columns)}"
            )
        schema = self.schema
        books = [Codebook(self.categories[c], frozen=True) for c in schema.categorical]
        first_line = _first_line(frame, first_line)
        block = parse_block(frame, schema, books, None, source, first_line, trained=True)
        unfilled = {c: n for c, n in block.missing_counts(schema).items()
                    if n and c not in self.fill}
        keep = np.arange(len(frame))
        unusable = _missing_in(block, schema, set(unfilled))
        if unfilled and self.impute == "drop":
            keep = np.flatnonzero(~unusable)
            block = RawBlock(block.numeric[keep], block.codes[keep], None, None)
        elif unfilled:
            listed = ", ".join(f"{c!r} ({n})" for c, n in unfilled.items())
            lines = (first_line + np.flatnonzero(unusable)[:5]).tolist()
            raise DataError(f"{source}: missing values in column(s) {listed} (lines {lines}), "
                            "and the model has no fill value for them: fill them in, or train "
                            "the model with --impute mean|median|drop")
        X = EncodingPlan(schema, [list(self.categories[c]) for c in schema.categorical],
                         self).encode(block.numeric, block.codes)
        unseen = {c: Unseen(int(np.count_nonzero(block.codes[:, j] == -2)),
                            [str(v) for v in books[j].unseen])
                  for j, c in enumerate(schema.categorical) if books[j].unseen}
        if self.text is not None:
            X = with_text(X, self.text.transform(frame.iloc[keep], source))
        else:
            X = np.ascontiguousarray(X)
        return Encoded(X, keep, {c: u for c, u in unseen.items() if u.rows})


def _first_line(frame: pd.DataFrame, first_data_line: int) -> int:
    """The file line of ``frame``'s first row, the file's first data row being line
    ``first_data_line``: a chunk pandas read from a file numbers its rows on from the chunks
    before."""
    import pandas as pd

    counted = len(frame) and isinstance(frame.index, pd.RangeIndex)
    return first_data_line + (int(frame.index[0]) if counted else 0)


def _missing_in(block: RawBlock, schema: Schema, columns: set) -> np.ndarray:
    """(rows,) whether a row of ``block`` misses a value in one of ``columns``."""
    missing = np.zeros(len(block.numeric), dtype=bool)
    for j, c in enumerate(schema.numeric):
        missing |= (c in columns) & np.isnan(block.numeric[:, j])
    for j, c in enumerate(schema.categorical):
        missing |= (c in columns) & (block.codes[:, j] == -1)
    return missing


class Unseen(NamedTuple):
    """Rows of one column whose level training never saw, and those levels."""

    rows: int
    levels: list


class Encoded(NamedTuple):
    """``FeatureEncoder.transform``'s result."""

    X: np.ndarray | sp.csr_matrix
    kept: np.ndarray
    unseen: dict  # column -> Unseen, for the columns with such rows


def with_text(X: np.ndarray, hashed: sp.csr_matrix) -> sp.csr_matrix:
    """The table's other features (dense) followed by its hashed text: one CSR matrix."""
    if X.shape[1] == 0:
        return hashed
    return sp.hstack([sp.csr_matrix(X), hashed], format="csr")


#: how a column read as text may be numbers written another way: (what, a pattern each of its
#: values fits, the options that read it as numbers). A leading group of 0 separates no
#: thousands (0,126 has a decimal comma); every value the decimal comma's pattern meets, the
#: last one's meets too, so the last is named only where there are points between thousands
_WRITINGS = (
    ("thousands separators", r"^[+-]?([1-9]\d{0,2}(,\d{3})+|\d+)(\.\d+)?$", "--thousands ','"),
    ("a decimal comma", r"^[+-]?\d+(,\d+)?$", "--decimal ','"),
    ("points between thousands and a decimal comma",
     r"^[+-]?([1-9]\d{0,2}(\.\d{3})+|\d+)(,\d+)?$", "--thousands '.' --decimal ','"),
)


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _number_writing(text: list[str]) -> tuple[str, str] | None:
    """(how the numbers are written, what to pass) where every one of a column's values
    ``text`` fits one of the ``_WRITINGS``; a comma that could be either (1,234) gets both
    readings, for only the user knows which the file means."""
    import re

    fits = [i for i, (_, pattern, _) in enumerate(_WRITINGS)
            if all(re.match(pattern, t) for t in text)]
    if 1 in fits and 0 in fits:
        return ("a comma between thousands or before the decimals",
                "pass --thousands ',' if it separates thousands, or --decimal ',' if it is "
                "the decimal mark")
    if not fits:
        return None
    what, _, advice = _WRITINGS[fits[0]]
    return what, f"pass {advice} to read them as numbers"


#: a categorical column with more levels than this and than half the rows reads as an
#: identifier (``data_notes``)
IDENTIFIER_LEVELS = 100


def data_notes(table) -> list[str]:
    """What a careful reader of the data should be told, though nothing is wrong enough to
    stop: what reading the file found (``table.notes``: a fastText file's lines with several
    labels), the delimiter when it is not a comma, a categorical column that is numbers but for a
    few values (a missing-value marker such as '?'), numbers written with thousands
    separators or a decimal comma, a column without a name (a written row index), a column of
    identifiers (nearly a level a row), labels that differ only in surrounding spaces or in
    how they write a number, classes too small to learn (a count named as the label), a feature
    column named as label columns are (an MNIST-style file: labels first, not last), a header
    of numbers (a file without one, whose first row became the names). The same
    for every kind of table (it reads the schema, levels, classes, labels and row count
    alone)."""
    notes = list(table.notes)
    if table.read.sep not in (None, ","):
        notes.append(f"{table.name}: read with the delimiter {table.read.sep!r}")
    numbers, numbers_as_text = _number_notes(table)
    return (notes + numbers + _unnamed_notes(table) + _identifier_notes(table, numbers_as_text)
            + _label_notes(table) + _class_size_notes(table) + _label_name_notes(table)
            + _header_notes(table))


# Fewer rows a class than this on average, over at least SMALL_CLASSES_MIN classes, is noted:
# a class learnt from one or two rows is a guess, and many such classes usually mean the label
# column holds counts or measurements (an age, a price in whole units), not classes.
SMALL_CLASSES_ROWS = 3
SMALL_CLASSES_MIN = 10


def _class_size_notes(table) -> list[str]:
    """Many classes with few rows each: too few to learn a class from."""
    n_classes = len(table.classes)
    if n_classes < SMALL_CLASSES_MIN or table.n_rows >= SMALL_CLASSES_ROWS * n_classes:
        return []
    counts = np.bincount(table.labels, minlength=n_classes)
    column = f" in column {table.schema.target!r}" if table.schema.target else ""
    numbers = all(_number(str(c)) for c in table.classes)
    hint = ("; if they are counts or measurements rather than classes, name the column of "
            "class labels with --target, or bin the values into classes" if numbers else
            "; merge rare classes, or gather more rows")
    return [f"{table.name}: the labels{column} make {n_classes:,} classes of "
            f"{table.n_rows:,} rows ({table.n_rows / n_classes:.1f} a class; "
            f"{np.count_nonzero(counts == 1):,} with a single row): too few rows to learn a "
            f"class from{hint}"]


#: names a label column goes by; a feature column so named is noted
LABEL_NAMES = ("label", "labels", "target", "class", "classes")


def _label_name_notes(table) -> list[str]:
    """A feature column named as label columns are, while the labels come from a column not
    so named: by default the last column, and MNIST-style files put the labels first (the
    last pixel then trains as 17 classes, and the labels as a feature)."""
    target = table.schema.target
    if not target or target.strip().lower() in LABEL_NAMES:
        return []
    return [f"{table.name}: column {column!r} is named as a label column is, but the labels "
            f"are read from {target!r} (the last column unless --target names another): if "
            f"{column!r} holds the classes, pass --target {column!r}"
            for column in table.schema.columns if column.strip().lower() in LABEL_NAMES]


def _header_notes(table) -> list[str]:
    """Feature columns named by numbers, all of them (two or more): the first row of a file
    without a header (UCI's iris.data) read as the column names, and lost from the data. Not
    0, 1, 2, ... or 1, 2, 3, ...: the names pandas gives the columns of an array."""
    names = [str(c).strip() for c in table.schema.columns]
    if len(names) < 2 or not all(_number(name) for name in names):
        return []
    if [float(name) - float(names[0]) for name in names] == list(range(len(names))) and \
            float(names[0]) in (0.0, 1.0):
        return []
    shown = ", ".join(repr(name) for name in names[:4]) + (", ..." if len(names) > 4 else "")
    return [f"{table.name}: the column names are numbers ({shown}): if the first line is a row "
            "of data, the file has no header, and that row was read as the names and is "
            "missing from the data: pass --no-header (its columns are then c1, c2, ...), or add "
            "a header line"]


def _number_notes(table) -> tuple[list[str], set]:
    """Notes on categorical columns that are numbers written another way, or numbers but for
    a few values; and the columns of the first kind."""
    notes, numbers_as_text = [], set()
    for column, levels in zip(table.schema.categorical, table.levels, strict=True):
        text = [str(level).strip() for level in levels]
        numbers = [t for t in text if _number(t)]
        others = [t for t in text if not _number(t)]
        writing = _number_writing(text)
        if writing and others:
            numbers_as_text.add(column)
            notes.append(f"{table.name}: column {column!r} holds numbers written with "
                         f"{writing[0]} (like {others[0]!r}) and is read as {len(text)} "
                         f"categories; {writing[1]}")
        elif len(numbers) >= 2 and len(others) <= 3 and 4 * len(others) <= len(numbers):
            shown = ", ".join(repr(o) for o in others)
            notes.append(f"{table.name}: column {column!r} is numbers but for {shown}, so "
                         f"it is read as {len(text)} categories; where such a value marks "
                         f"a missing one, pass --na-values {','.join(others)!r}")
    return notes, numbers_as_text


def _unnamed_notes(table) -> list[str]:
    """A feature column with no name in the header: pandas calls it 'Unnamed: i', and
    DataFrame.to_csv writes its row index so."""
    import re

    return [f"{table.name}: column {column!r} has no name in the header, as the row index "
            "pandas' to_csv writes: if it numbers the rows, the model learns where a row sits "
            "in the file (in a file sorted by class, its class); leave it out with --ignore "
            f"{column!r}, or write the file with to_csv(..., index=False)"
            for column in table.schema.columns if re.fullmatch(r"Unnamed: \d+", column)]


def _identifier_notes(table, skip: set) -> list[str]:
    """A categorical column (not in ``skip``) with nearly a level a row."""
    return [f"{table.name}: column {column!r} has {len(levels):,} distinct values in "
            f"{table.n_rows:,} rows, each a feature of its own: like an identifier, it can "
            f"only tell the training rows apart; if it is one, leave it out with --ignore "
            f"{column!r}"
            for column, levels in zip(table.schema.categorical, table.levels, strict=True)
            if column not in skip and len(levels) > max(IDENTIFIER_LEVELS, table.n_rows // 2)]


def _label_notes(table) -> list[str]:
    """Classes that are one label written two ways: with surrounding spaces, or one number
    ('1' and '1.0' in a label column that also holds text, so read as text)."""
    groups: dict = {}
    for cls in table.classes:  # by the text without spaces, or the number it writes
        text = str(cls).strip()
        groups.setdefault(float(text) if _number(text) else text, []).append(cls)
    notes = []
    for same in groups.values():
        if len(same) > 1:
            how = "only in surrounding spaces" if len({str(c).strip() for c in same}) == 1 \
                else "only in how they write one number"
            notes.append(f"{table.name}: the labels {', '.join(repr(str(c)) for c in same)} "
                         f"differ {how} and are different classes; fix the file if they "
                         "are one")
    return notes


def missing_values_error(source: str, counts: dict, policies: str) -> DataError:
    """The error for missing values without an imputation policy: each column with its count,
    and the policies that would fill or drop them."""
    listed = ", ".join(f"{c!r} ({n})" for c, n in counts.items())
    return DataError(f"{source}: missing values in column(s) {listed}: fill them in, or pass "
                     f"--impute {policies}")


def _names(columns) -> str:
    columns = [str(c) for c in columns]
    shown = ", ".join(repr(c) for c in columns[:20])
    return shown + (f" and {len(columns) - 20} more" if len(columns) > 20 else "")


@dataclass
class Dataset:
    """Data to evaluate or predict with a model: features encoded as the model was trained.

    X: (n_samples, n_features) float64, dense or scipy.sparse CSR. labels: (n_samples,) class
    indices into ``classes``, or None when the data carry no labels (prediction). rows:
    (n_samples,) the position of each row of X among the ``n_input`` rows read (a row the
    model cannot encode is left out of X, and its prediction must be left empty, not shift
    the others); None when every row was kept.
    """

    X: np.ndarray | sp.csr_matrix
    labels: np.ndarray | None
    classes: list
    feature_names: list[str]
    name: str
    rows: np.ndarray | None = None
    n_input: int | None = None
    unseen: dict = field(default_factory=dict)  # column -> Unseen (FeatureEncoder.transform)

    @property
    def n_read(self) -> int:
        """The rows read, those the model could not encode included."""
        return self.n_samples if self.rows is None else self.n_input

    @property
    def positions(self) -> np.ndarray:
        """(n_samples,) each row of X's position among the ``n_read`` rows."""
        return np.arange(self.n_samples) if self.rows is None else self.rows

    @property
    def n_left_out(self) -> int:
        return self.n_read - self.n_samples

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def python_scalar(value):
    """numpy scalars -> Python ones, integral floats -> int, so classes are JSON-ready."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def class_order(values) -> list:
    """The classes of a label column, in a stable order: sorted numerically if all numbers,
    else sorted as text."""
    import pandas as pd

    unique = [python_scalar(v) for v in pd.unique(pd.Series(values))]
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in unique):
        return sorted(unique)
    return sorted({str(v) for v in unique})


def continuous_labels(classes: list) -> list[float]:
    """The classes (``class_order``'s) that are numbers with a fraction (0.31; 1.0 is the
    class 1, ``python_scalar``): the labels of a regression target, which would be read as
    a class for each distinct value (scikit-learn's classifiers refuse this "continuous"
    target type too)."""
    return [c for c in classes if isinstance(c, float)]


def encode_labels(values, classes: list, source: str = "data", first_line: int = 2,
                  ) -> np.ndarray:
    """Class indices (n_samples,) of ``values`` in ``classes``. Labels that are not classes are
    an error naming them (a model cannot predict a class it never saw); so are missing ones,
    by file line (``values[0]`` on line ``first_line``)."""
    import pandas as pd

    book = Codebook(classes, frozen=True, labels=True)
    codes = book.encode(pd.Series(values))
    if book.unseen:
        shown = ", ".join(repr(v) for v in list(dict.fromkeys(book.unseen))[:10])
        raise DataError(
            f"{source}: label(s) {shown} are not among the model's classes {classes}"
        )
    if (codes == -1).any():
        lines = (np.flatnonzero(codes == -1)[:5] + first_line).tolist()
        raise DataError(f"{source}: rows without a label (file lines {lines}); fill them in")
    return codes.astype(np.intp)


def is_builtin(source: str) -> bool:
    return str(source).startswith(BUILTIN_PREFIX)


def load_builtin(name: str) -> Dataset:
    """One of scikit-learn's bundled toy data sets (iris, wine, breast_cancer, digits), raw."""
    loaders = _builtin_loaders()
    if name not in loaders:
        raise DataError(
            f"unknown built-in data set {name!r}: use one of "
            + ", ".join(BUILTIN_PREFIX + n for n in BUILTIN_NAMES)
        )
    bunch = loaders[name]()
    classes = [python_scalar(c) for c in bunch.target_names]
    names = [str(n) for n in getattr(bunch, "feature_names", [])] or [
        f"x{i}" for i in range(bunch.data.shape[1])
    ]
    return Dataset(
        np.ascontiguousarray(bunch.data, dtype=np.float64),
        np.asarray(bunch.target, dtype=np.intp),
        classes,
        names,
        BUILTIN_PREFIX + name,
    )


NUMPY_SUFFIXES = (".npy", ".npz")


def is_numpy_file(path: Path) -> bool:
    return Path(path).suffix.lower() in NUMPY_SUFFIXES


def load_numpy(path: Path, labels_path: str | None = None,
               n_features: int | None = None) -> Dataset:
    """Features and labels from numpy files: a ``.npz`` holding arrays ``X`` (n, d) and ``y``
    (n,), or a ``.npy`` matrix (memory-mapped while it is read) whose labels are in
    ``labels_path`` (a .npy of n labels) or else its last column. With ``n_features`` (a
    model's), a .npy of exactly that many columns has no labels (prediction)."""
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                if "X" not in archive.files:
                    raise DataError(f"{path}: an .npz needs an array named X (and y); it has "
                                    f"{_names(archive.files)}")
                X, y = archive["X"], archive["y"] if "y" in archive.files else None
        else:
            X = np.load(path, mmap_mode="r", allow_pickle=False)
            y = None
            if labels_path:
                y = np.load(labels_path, allow_pickle=False)
            if labels_path or X.ndim != 2 or X.shape[1] == n_features:
                # all of it is features: read straight into memory (a copy from the map
                # would hold the file's pages as well, twice the memory at the peak)
                X = np.load(path, allow_pickle=False)
            else:
                X, y = X[:, :-1], np.asarray(X[:, -1])
                if not np.all(np.isfinite(y) & (y == np.round(y))):
                    raise DataError(f"{path}: no --labels given, and the last column is not "
                                    "labels (it holds values that are not whole numbers): "
                                    "give --labels FILE.npy")
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable numpy file ({exc})") from None
    if X.ndim != 2 or X.dtype.kind not in "fiub":
        raise DataError(f"{path}: the features must be a 2-d numeric array, got shape "
                        f"{X.shape} of {X.dtype}")
    if y is not None and (y.ndim != 1 or len(y) != X.shape[0]):
        raise DataError(f"{path}: {X.shape[0]} rows of features but labels of shape {y.shape}")
    X = np.ascontiguousarray(X, dtype=feature_dtype(X))  # a mapped slice: read in now
    finite_or_raise(X, str(path))
    names = [f"x{i}" for i in range(X.shape[1])]
    if y is None:
        return Dataset(X, None, [], names, str(path))
    classes = class_order(y)
    return Dataset(X, encode_labels(y, classes, str(path)), classes, names, str(path))


def is_libsvm_file(source: str) -> bool:
    """Whether ``source`` names an existing LIBSVM file."""
    path = Path(source)
    return path.is_file() and is_libsvm(path)


def is_libsvm(path: Path) -> bool:
    """By its name (``LIBSVM_SUFFIXES``, past a compression suffix), else by its first line:
    a label, then index:value items."""
    if kind_suffix(path) in LIBSVM_SUFFIXES:
        return True
    if kind_suffix(path) in (".csv", ".tsv") or is_parquet(path) or is_numpy_file(path):
        return False
    try:
        with open_bytes(path) as handle:
            first = handle.readline(4096).decode("utf-8", errors="replace")
    except Exception as exc:
        raise_read_failure(path, exc)
    first = first.split("#")[0].split()
    return len(first) >= 2 and all(":" in token for token in first[1:])


def libsvm_problem(path: Path) -> str | None:
    """The first line of a LIBSVM file that breaks the format, as "line N: what and what
    to do"; None if none does. LIBSVM's own reader refuses such a line by number too."""
    with open_text(path, "utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            tokens = line.split("#", 1)[0].split()
            problem = _libsvm_line_problem(tokens[1:]) if tokens else None
            if problem:
                return f"line {number:,}: {problem}"
    return None


def _libsvm_line_problem(items: list[str]) -> str | None:
    """What is wrong with one line's ``index:value`` items (after the label), if anything."""
    previous = -1
    for item in items:
        index, colon, value = item.partition(":")
        if index == "qid":
            continue
        if not colon or not index.isdigit() or not _number(value):
            return (f"{item!r} is not index:value with an index of 0 or more and a number; "
                    "fix the line")
        if not np.isfinite(float(value)):
            return (f"feature {int(index)} is {value}; features must be finite numbers: fix "
                    "or drop the line")
        if int(index) <= previous:
            how = "twice" if int(index) == previous else "after a larger index"
            return (f"feature index {int(index)} comes {how}; LIBSVM lists each row's "
                    "features once, by increasing index: sort them and merge repeats")
        previous = int(index)
    return None


def load_libsvm(path: str | os.PathLike, n_features: int | None = None,
                base: str = "auto") -> tuple[Dataset, str]:
    """A LIBSVM/svmlight file, kept sparse (CSR), and its index base ("zero" or "one"): feature
    index i of the file is column i - 1 of a one-based file, column i of a zero-based one.
    ``base`` "auto" takes a file with an index 0 as zero-based (a model records the base it
    was trained with, so prediction does not guess again). With ``n_features`` (a model's),
    columns beyond it are dropped and missing ones are zero."""
    from sklearn.datasets import load_svmlight_file

    try:
        with open_bytes(path) as handle:
            X, y = load_svmlight_file(handle, dtype=np.float64, zero_based=True)
    except UnicodeDecodeError:
        raise encoding_error(path, "utf-8") from None
    except ValueError as exc:
        found = libsvm_problem(path)
        raise DataError(f"{path}: not a valid LIBSVM file ({found or exc})") from None
    except Exception as exc:
        raise_read_failure(path, exc)
    if not np.all(np.isfinite(X.data)):
        raise DataError(f"{path}: {libsvm_problem(path) or 'a feature is not finite'}")
    if X.shape[0] == 0:
        raise DataError(f"{path}: the file has no rows")
    X = sp.csr_matrix(X)
    has_zero = bool(X.nnz) and int(X.indices.min()) == 0
    if base == "auto":
        base = "zero" if has_zero else "one"
    offset = 1 if base == "one" else 0
    if offset and has_zero:
        raise DataError(f"{path}: feature index 0 in a file read as one-based; pass "
                        "--zero-based if its indices start at 0")
    X = X[:, offset:] if X.shape[1] > offset else sp.csr_matrix((X.shape[0], 0))
    if n_features is not None and X.shape[1] != n_features:
        X = X[:, :n_features] if X.shape[1] > n_features else sp.csr_matrix(
            (X.data, X.indices, X.indptr), shape=(X.shape[0], n_features)
        )
    classes = class_order(y)
    labels = encode_labels(y, classes, str(path))
    names = [f"f{i + offset}" for i in range(X.shape[1])]
    return Dataset(sp.csr_matrix(X), labels, classes, names, str(path)), base


def checked_header(path: Path, sep: str, read: ReadOptions) -> list[str]:
    """The column names of a CSV: its header row, checked (readable, text in
    ``read.encoding``, not empty, no duplicate names), or c1, c2, ... as many as the first
    row's fields for a file without one (``read.header`` False)."""
    try:
        with open_text(path, read.text_encoding) as handle:
            header = next(csv.reader(handle, delimiter=sep), None)
    except UnicodeDecodeError:
        raise encoding_error(path, read.encoding) from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV header ({exc})") from None
    except Exception as exc:
        raise_read_failure(path, exc)
    if not header:
        raise DataError(f"{path}: the file is empty; a CSV needs a header row and data rows")
    if header[0].lstrip().startswith(("{", "[")):  # its commas split JSON, not columns
        raise DataError(f"{path}: JSON, not a CSV (the first line starts with "
                        f"{header[0].lstrip()[0]!r}): xent reads CSV, Parquet, LIBSVM, fastText "
                        "and numpy files; convert it, e.g. with pandas.read_json(path, "
                        "lines=True).to_csv('data.csv', index=False)")
    if not read.header:
        return [f"c{i}" for i in range(1, len(header) + 1)]
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise DataError(f"{path}: duplicate column name(s) {_names(duplicated)}; rename them")
    return header


def _parse_errors(path: Path, read: ReadOptions):
    """pandas' parse errors, and failures to read or decompress, as DataErrors naming the
    file."""
    import pandas as pd

    try:
        yield
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: malformed CSV ({str(exc).strip()})") from None
    except UnicodeDecodeError:
        raise encoding_error(path, read.encoding) from None
    except ValueError as exc:
        raise DataError(f"{path}: cannot parse the file as CSV ({exc})") from None
    except Exception as exc:
        raise_read_failure(path, exc)


def read_csv(path: str | os.PathLike, read: ReadOptions = DEFAULT_READ) -> pd.DataFrame:
    """Read a CSV with a header row (UTF-8, with or without BOM; its delimiter sniffed unless
    ``read.sep`` names it), or a Parquet file. Every problem a file can have becomes a
    ``DataError`` that names it."""
    import pandas as pd

    path = Path(path)
    if is_parquet(path):
        frame = _read_parquet(path)
    else:
        sep = delimiter(path, read)
        names = checked_header(path, sep, read)
        # pandas reads a path it opens itself twice as fast as a Python file object
        source = open_bytes(path) if compression(path) else contextlib.nullcontext(path)
        with contextlib.contextmanager(_parse_errors)(path, read), source as handle:
            frame = pd.read_csv(handle, **read.pandas(sep, names))
    if len(frame) == 0:
        raise DataError(f"{path}: the header has no data rows below it")
    frame.columns = [str(c) for c in frame.columns]
    return frame


def table_chunks(path: str | os.PathLike, chunk_rows: int, digest=None,
                 read: ReadOptions = DEFAULT_READ):
    """A CSV (read by ``read``) or Parquet file as DataFrames of at most ``chunk_rows`` rows
    (Parquet by record batches), so that no more than a chunk is in memory; errors name the
    file. ``digest`` (a hashlib object), if given, sees every byte of the file."""
    import pandas as pd

    path = Path(path)
    if is_parquet(path):
        if digest is not None:
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        parquet = _pyarrow_parquet()
        try:
            reader = parquet.ParquetFile(path)
            for batch in reader.iter_batches(batch_size=chunk_rows):
                yield batch.to_pandas()
        except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
            raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
        return
    sep = delimiter(path, read)
    names = checked_header(path, sep, read)
    parse = contextlib.contextmanager(_parse_errors)
    with open_bytes(path, digest) as source:
        with parse(path, read):
            reader = pd.read_csv(source, chunksize=chunk_rows, **read.pandas(sep, names))
        while True:
            with parse(path, read):
                chunk = next(reader, None)
            if chunk is None:
                return
            chunk.columns = [str(c) for c in chunk.columns]
            yield chunk


PARQUET_SUFFIXES = (".parquet", ".pq")


def is_parquet(path: Path) -> bool:
    return Path(path).suffix.lower() in PARQUET_SUFFIXES


def _pyarrow_parquet():
    try:
        import pyarrow.parquet as parquet
    except ImportError:
        raise DataError("reading Parquet needs pyarrow: pip install 'xent[parquet]'") from None
    return parquet


def _read_parquet(path: Path) -> pd.DataFrame:
    parquet = _pyarrow_parquet()
    try:
        return parquet.read_table(path).to_pandas()
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None


def model_dataset(frame: pd.DataFrame, name: str, encoder: FeatureEncoder, target: str | None,
                  classes: list, require_labels: bool, first_line: int = 2) -> Dataset:
    """A table encoded by a model's ``encoder``; its label column ``target`` (when present,
    and always when ``require_labels``) mapped to the model's ``classes``. Messages name file
    lines, the file's first data row being line ``first_line``."""
    if target is not None and target not in frame.columns:
        if require_labels:
            raise DataError(f"{name}: no target column {target!r}; the columns are "
                            f"{_names(frame.columns)}: name the label column with --target")
        target = None
    X, kept, unseen = encoder.transform(frame, name, first_line)
    labels = None
    if target is not None:
        labels = encode_labels(frame[target].iloc[kept].to_numpy(), list(classes), name,
                               _first_line(frame, first_line))
    rows = None if len(kept) == len(frame) else kept
    return Dataset(X, labels, list(classes), encoder.feature_names, name, rows, len(frame),
                   unseen)


def fasttext_dataset(path: Path, encoder: FeatureEncoder, classes: list,
                     require_labels: bool) -> Dataset:
    """A fastText file encoded by a model's ``encoder``, ``FASTTEXT_BLOCK_LINES`` lines at a
    time (``model_dataset`` on each block, the blocks' CSR stacked): as training reads one
    (``fasttext_table``), only one block's strings are in memory, never the file's."""
    parts, labels = [], []
    for frame in fasttext_chunks(path, FASTTEXT_BLOCK_LINES):
        block = model_dataset(frame, str(path), encoder, FASTTEXT_TARGET, classes,
                              require_labels)
        parts.append(block.X)
        labels.append(block.labels)
    if not parts:
        raise DataError(f"{path}: the file has no documents")
    X = stack_rows(parts)
    return Dataset(X, np.concatenate(labels), list(classes), encoder.feature_names, str(path),
                   None, X.shape[0])


def builtin_sha256(dataset: Dataset) -> str:
    """The hash of a built-in set's arrays (its features, then its labels)."""
    digest = hashlib.sha256(np.ascontiguousarray(dataset.X).tobytes())
    digest.update(dataset.labels.astype(np.int64).tobytes())
    return digest.hexdigest()


def load_table(source: str, target: str | None = None, weight: str | None = None,
               read: ReadOptions = DEFAULT_READ, text: TextSpec | None = None,
               labels: str | None = None) -> RawTable:
    """Training data in memory as a ``RawTable``: ``sklearn:NAME``, a LIBSVM file, a fastText
    file (``fasttext_table``: its ``text`` column hashed by ``text``'s settings), or a CSV
    or Parquet file (label column ``target``, default the last; sample weights from the column
    ``weight``, if given; ``text``'s columns hashed), read by ``read``, or numpy files
    (``load_numpy``; ``labels`` a .npy of labels); the table's ``read`` is resolved (the
    delimiter used, the LIBSVM index base found). ``sha256`` identifies the data that were
    read."""
    source = str(source)
    if text is not None and (is_builtin(source) or is_libsvm_file(source)):
        raise DataError(f"{source}: text columns (--text) are for CSV, Parquet and fastText "
                        "files")
    if is_builtin(source):
        data = load_builtin(source[len(BUILTIN_PREFIX):])
        return array_table(data.X, data.labels, data.classes, data.feature_names, data.name,
                           builtin_sha256(data))
    path = Path(source)
    check_file(path)
    if is_numpy_file(path):
        data = load_numpy(path, labels)
        if data.labels is None:
            raise DataError(f"{path}: no labels: an .npz needs an array y beside X")
        sha256 = file_sha256(path)
        if labels:  # the features' and the labels' hashes, hashed together
            sha256 = hashlib.sha256((sha256 + file_sha256(labels)).encode()).hexdigest()
        return array_table(data.X, data.labels, data.classes, data.feature_names, data.name,
                           sha256)
    if is_libsvm(path):
        if weight:
            raise DataError(f"{source}: a LIBSVM file has no weight column; drop --weight")
        data, base = load_libsvm(path, base=read.libsvm_base)
        return array_table(data.X, data.labels, data.classes, data.feature_names, data.name,
                           file_sha256(path), read=replace(read, libsvm_base=base))
    if is_fasttext(path):
        return fasttext_table(path, read, text)
    resolved = read if is_parquet(path) else replace(read, sep=delimiter(path, read))
    return frame_table(read_csv(path, resolved), str(path), target, weight, file_sha256(path),
                       resolved, text)


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_file(path: Path) -> None:
    if not path.exists():
        raise DataError(
            f"{path}: no such file; give a CSV, a LIBSVM file or sklearn:NAME "
            f"({', '.join(BUILTIN_NAMES)})"
        )
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a data file")


def describe_builtin() -> list[dict]:
    """Name, shape and classes of each built-in data set, for ``xent datasets``."""
    rows = []
    for name in BUILTIN_NAMES:
        data = load_builtin(name)
        rows.append(
            {
                "name": BUILTIN_PREFIX + name,
                "n_samples": data.n_samples,
                "n_features": data.n_features,
                "n_classes": data.n_classes,
                "classes": data.classes,
            }
        )
    return rows


def feature_dtype(X) -> np.dtype:
    """The dtype a matrix of features is held in: float32 stays float32 (embeddings: half the
    memory, and what a GPU run takes), anything else becomes float64. Training casts to the
    run's dtype (``--dtype``) once, where the rows are laid out."""
    return np.dtype(np.float32 if X.dtype == np.float32 else np.float64)


def finite_or_raise(X, name: str) -> None:
    """Non-finite feature values (which can come only from a LIBSVM file or an array) are an
    error naming the first one's row and column (counted from 0)."""
    values = X.data if sp.issparse(X) else X
    if not values.size or np.all(np.isfinite(values)):
        return
    first = int(np.flatnonzero(~np.isfinite(values.ravel()))[0])
    if sp.issparse(X):
        row, column = int(np.searchsorted(X.indptr, first, side="right")) - 1, X.indices[first]
    else:
        row, column = divmod(first, X.shape[1])
    raise DataError(f"{name}: the features hold {values.ravel()[first]} at row {row:,}, column "
                    f"{column} (counting from 0), and must be finite numbers: fix or drop "
                    "that row")
