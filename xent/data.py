"""Loaders: CSV (pandas), LIBSVM/svmlight (scikit-learn) and scikit-learn's bundled toy data sets,
each turned into a ``Dataset``: a numeric feature matrix, class indices and the class labels.

CSV columns that are not numeric are one-hot encoded; the encoding (columns, levels, fill values)
is a ``FeatureEncoder`` stored in the model, so that eval and predict apply the same.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from .errors import DataError

if TYPE_CHECKING:
    import pandas as pd

BUILTIN_PREFIX = "sklearn:"
IMPUTE_CHOICES = ("mean", "median", "drop")
LIBSVM_SUFFIXES = (".svm", ".libsvm", ".svmlight")


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


@dataclass(frozen=True)
class FeatureEncoder:
    """How a table's feature columns become numbers.

    columns: the input feature columns, in order. categories: for each non-numeric column, its
    levels (one 0/1 feature each, in this order; a level not seen in training encodes as all
    zeros). fill: the value that replaces a missing entry of each column (empty unless an
    imputation policy was chosen; imputed values are computed on the whole file).
    """

    columns: tuple[str, ...]
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)
    fill: dict[str, float | str] = field(default_factory=dict)
    impute: str | None = None

    @property
    def feature_names(self) -> list[str]:
        names = []
        for column in self.columns:
            if column in self.categories:
                names.extend(f"{column}={level}" for level in self.categories[column])
            else:
                names.append(column)
        return names

    def to_dict(self) -> dict:
        return {
            "columns": list(self.columns),
            "categories": {k: list(v) for k, v in self.categories.items()},
            "fill": dict(self.fill),
            "impute": self.impute,
        }

    @classmethod
    def from_dict(cls, spec: dict) -> FeatureEncoder:
        return cls(
            tuple(spec["columns"]),
            {k: tuple(v) for k, v in spec.get("categories", {}).items()},
            dict(spec.get("fill", {})),
            spec.get("impute"),
        )

    def transform(self, frame: pd.DataFrame, source: str = "data") -> tuple[np.ndarray, np.ndarray]:
        """Encode ``frame``'s feature columns: (X (n_kept, n_features), kept row positions).

        Rows with missing values are dropped only under the ``drop`` policy; without a policy
        they are an error that names the columns.
        """
        import pandas as pd

        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise DataError(
                f"{source}: missing column(s) {_names(missing)} that the model was trained on; "
                f"the file has {_names(frame.columns)}"
            )
        frame = frame[list(self.columns)]
        _check_finite(frame, self.categories, source)
        keep = np.arange(len(frame))
        if self.fill:
            frame = frame.fillna(self.fill)
        elif self.impute == "drop":
            keep = np.flatnonzero(frame.notna().all(axis=1).to_numpy())
            frame = frame.iloc[keep]
        counts = frame.isna().sum()
        if counts.any():
            raise missing_values_error(source, counts[counts > 0].to_dict(), "mean|median|drop")
        blocks = []
        for column in self.columns:
            values = frame[column]
            if column in self.categories:
                levels = pd.Index(self.categories[column])
                codes = levels.get_indexer(values.astype(str))
                onehot = np.zeros((len(values), len(levels)))
                seen = codes >= 0
                onehot[np.flatnonzero(seen), codes[seen]] = 1.0
                blocks.append(onehot)
            else:
                try:
                    blocks.append(values.to_numpy(dtype=np.float64)[:, None])
                except (TypeError, ValueError) as exc:
                    raise DataError(
                        f"{source}: column {column!r} was numeric in training but holds "
                        f"non-numeric values here ({exc})"
                    ) from None
        X = np.hstack(blocks) if blocks else np.zeros((len(frame), 0))
        return np.ascontiguousarray(X), keep


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


def _check_finite(frame: pd.DataFrame, categories, source: str) -> None:
    """Infinite values are never imputed: they are an error naming the columns."""
    import pandas as pd

    bad = []
    for column in frame.columns:
        if column in categories or not pd.api.types.is_numeric_dtype(frame[column]):
            continue
        values = frame[column].to_numpy(dtype=np.float64, na_value=np.nan)
        n_inf = int(np.isinf(values).sum())
        if n_inf:
            bad.append(f"{column!r} ({n_inf})")
    if bad:
        raise DataError(f"{source}: infinite values in column(s) {', '.join(bad)}: fix the file")


def fit_encoder(frame: pd.DataFrame, impute: str | None = None) -> FeatureEncoder:
    """The encoder of a table of feature columns: which are categorical, their levels (sorted),
    and, under ``impute`` mean or median, the fill value of each column (the most frequent level
    for a categorical column)."""
    import pandas as pd

    if impute is not None and impute not in IMPUTE_CHOICES:
        raise DataError(f"unknown impute policy {impute!r}: use mean, median or drop")
    categories, fill = {}, {}
    for column in frame.columns:
        values = frame[column]
        numeric = pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)
        if not numeric:
            present = values.dropna().astype(str)
            categories[column] = tuple(sorted(present.unique()))
        if impute in ("mean", "median") and values.isna().any():
            if numeric:
                stat = values.mean() if impute == "mean" else values.median()
                fill[column] = float(stat) if not pd.isna(stat) else 0.0
            else:
                modes = values.dropna().astype(str).mode()
                fill[column] = str(modes.iloc[0]) if len(modes) else ""
    return FeatureEncoder(tuple(str(c) for c in frame.columns), categories, fill, impute)


@dataclass
class Dataset:
    """Features, class indices and what they mean.

    X: (n_samples, n_features) float64, dense or scipy.sparse CSR. labels: (n_samples,) class
    indices into ``classes``, or None when the data carry no labels (prediction).
    """

    X: np.ndarray | sp.csr_matrix
    labels: np.ndarray | None
    classes: list
    feature_names: list[str]
    name: str
    encoder: FeatureEncoder | None = None
    target_column: str | None = None
    sha256: str | None = None  # of the file's bytes, or of a built-in set's arrays
    table: object = None  # a stream.CachedTable when the data are streamed (X is then None)

    @property
    def n_samples(self) -> int:
        return len(self.labels) if self.labels is not None else self.X.shape[0]

    @property
    def n_features(self) -> int:
        return len(self.feature_names) if self.X is None else self.X.shape[1]

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


def encode_labels(values, classes: list, source: str = "data") -> np.ndarray:
    """Class indices (n_samples,) of ``values`` in ``classes``. Labels that are not classes are
    an error naming them (a model cannot predict a class it never saw)."""
    lookup = {c: i for i, c in enumerate(classes)}
    by_text = {str(c): i for i, c in enumerate(classes)}
    indices = np.empty(len(values), dtype=np.intp)
    unknown = []
    for row, value in enumerate(values):
        value = python_scalar(value)
        index = lookup.get(value, by_text.get(str(value)))
        if index is None:
            unknown.append(value)
            index = -1
        indices[row] = index
    if unknown:
        shown = ", ".join(repr(v) for v in list(dict.fromkeys(unknown))[:10])
        raise DataError(
            f"{source}: label(s) {shown} are not among the model's classes {classes}"
        )
    return indices


def is_builtin(source: str) -> bool:
    return str(source).startswith(BUILTIN_PREFIX)


def load_builtin(name: str) -> Dataset:
    """One of scikit-learn's bundled toy data sets (iris, wine, breast_cancer, digits)."""
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


def is_libsvm(path: Path) -> bool:
    if path.suffix.lower() in LIBSVM_SUFFIXES:
        return True
    if path.suffix.lower() in (".csv", ".tsv") or is_parquet(path):
        return False
    with open(path, "rb") as handle:
        first = handle.readline(4096).decode("utf-8", errors="replace").split("#")[0].split()
    return len(first) >= 2 and all(":" in token for token in first[1:])


def load_libsvm(path: str | os.PathLike, n_features: int | None = None) -> Dataset:
    """A LIBSVM/svmlight file, kept sparse (CSR). Feature i of the file is column i-1.

    With ``n_features`` (a model's), columns beyond it are dropped and missing ones are zero.
    """
    from sklearn.datasets import load_svmlight_file

    try:
        X, y = load_svmlight_file(str(path), dtype=np.float64)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a valid LIBSVM file ({exc})") from None
    if X.shape[0] == 0:
        raise DataError(f"{path}: the file has no rows")
    if n_features is not None and X.shape[1] != n_features:
        X = X[:, :n_features] if X.shape[1] > n_features else sp.csr_matrix(
            (X.data, X.indices, X.indptr), shape=(X.shape[0], n_features)
        )
    classes = class_order(y)
    labels = encode_labels(y, classes, str(path))
    names = [f"f{i + 1}" for i in range(X.shape[1])]
    return Dataset(sp.csr_matrix(X), labels, classes, names, str(path))


def _check_header(path: Path) -> list[str]:
    """The header row of a CSV, checked: readable, UTF-8, not empty, no duplicate names."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle), None)
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file (is it a CSV?)") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror})") from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV header ({exc})") from None
    if not header:
        raise DataError(f"{path}: the file is empty; a CSV needs a header row and data rows")
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise DataError(f"{path}: duplicate column name(s) {_names(duplicated)}; rename them")
    return header


def _parse_errors(path: Path):
    """pandas' parse errors as DataErrors naming the file."""
    import pandas as pd

    try:
        yield
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: malformed CSV ({str(exc).strip()})") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: cannot parse the file as CSV ({exc})") from None


def read_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV with a header row (UTF-8, with or without BOM), or a Parquet file. Every
    problem a file can have becomes a ``DataError`` that names it."""
    import pandas as pd

    path = Path(path)
    if is_parquet(path):
        frame = _read_parquet(path)
    else:
        _check_header(path)
        with contextlib.contextmanager(_parse_errors)(path):
            frame = pd.read_csv(path, encoding="utf-8-sig")
    if len(frame) == 0:
        raise DataError(f"{path}: the header has no data rows below it")
    frame.columns = [str(c) for c in frame.columns]
    return frame


class _HashingReader(io.RawIOBase):
    """A binary file that adds every byte read to a hash (so a file is parsed and hashed in
    one read)."""

    def __init__(self, handle, digest):
        self.handle, self.digest = handle, digest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self.handle.readinto(buffer)
        if count:
            self.digest.update(memoryview(buffer)[:count])
        return count


def table_chunks(path: str | os.PathLike, chunk_rows: int, digest=None):
    """A CSV or Parquet file as DataFrames of at most ``chunk_rows`` rows (Parquet by record
    batches), so that no more than a chunk is in memory; errors name the file. ``digest`` (a
    hashlib object), if given, sees every byte of the file."""
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
    _check_header(path)
    parse = contextlib.contextmanager(_parse_errors)
    with open(path, "rb") as raw:
        source = raw if digest is None else io.BufferedReader(_HashingReader(raw, digest))
        with parse(path):
            reader = pd.read_csv(source, encoding="utf-8-sig", chunksize=chunk_rows)
        while True:
            with parse(path):
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


def frame_dataset(
    frame: pd.DataFrame,
    name: str,
    target: str | None = None,
    impute: str | None = None,
    encoder: FeatureEncoder | None = None,
    classes: list | None = None,
    require_target: bool = True,
) -> Dataset:
    """A ``Dataset`` from a table. ``target`` is the label column (default: the last one).

    With a fitted ``encoder`` and ``classes`` (a model's) the features are encoded as the model
    was, and the label column is optional unless ``require_target``.
    """
    if target is None:
        target = frame.columns[-1] if encoder is None else None
    if target is not None and target not in frame.columns:
        if require_target:
            raise DataError(
                f"{name}: no target column {target!r}; the columns are {_names(frame.columns)}"
            )
        target = None
    if encoder is None:
        features = frame.drop(columns=[target])
        if features.shape[1] == 0:
            raise DataError(f"{name}: there are no feature columns besides the target {target!r}")
        encoder = fit_encoder(features, impute)
    X, kept = encoder.transform(frame, name)
    labels = None
    if target is not None:
        values = frame[target].iloc[kept]
        n_missing = int(values.isna().sum())
        if n_missing:
            rows = (np.flatnonzero(values.isna().to_numpy())[:5] + 2).tolist()
            raise DataError(
                f"{name}: {n_missing} row(s) have no label in column {target!r} "
                f"(file lines {rows}); fill them in or remove them"
            )
        if classes is None:
            classes = class_order(values)
        labels = encode_labels(values.to_numpy(), classes, name)
    if X.shape[0] == 0:
        raise DataError(f"{name}: no rows left after dropping rows with missing values")
    return Dataset(X, labels, list(classes or []), encoder.feature_names, name, encoder, target)


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load(
    source: str,
    target: str | None = None,
    impute: str | None = None,
) -> Dataset:
    """Load training data: ``sklearn:NAME``, a LIBSVM file, or a CSV (label column ``target``,
    default the last). ``sha256`` identifies the data that were read."""
    source = str(source)
    if is_builtin(source):
        dataset = load_builtin(source[len(BUILTIN_PREFIX) :])
        digest = hashlib.sha256(np.ascontiguousarray(dataset.X).tobytes())
        digest.update(dataset.labels.astype(np.int64).tobytes())
        dataset.sha256 = digest.hexdigest()
        return dataset
    path = Path(source)
    check_file(path)
    if is_libsvm(path):
        dataset = load_libsvm(path)
    else:
        dataset = frame_dataset(read_csv(path), str(path), target=target, impute=impute)
    dataset.sha256 = file_sha256(path)
    return dataset


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


def finite_or_raise(X, name: str) -> None:
    """Non-finite feature values (which can come only from a LIBSVM file or an array) are an
    error."""
    values = X.data if sp.issparse(X) else X
    if values.size and not np.all(np.isfinite(values)):
        raise DataError(f"{name}: the features contain NaN or infinite values")
