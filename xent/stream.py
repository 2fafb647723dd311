"""Data beyond memory: a CSV or Parquet file is parsed once, chunk by chunk, into a binary cache;
every epoch then streams the cache in row blocks through the same loss and gradient.

The cache (one directory per data file and target column, keyed by the file's path, size and
modification time; its SHA-256 is recorded) holds the raw table: numeric columns as float64
(NaN where missing), categorical columns as integer codes, the labels as class indices, and a
JSON description. Encoding (one-hot), imputation and standardisation are fitted on the training
rows in one pass over the cache and applied as training reads it, so the model is the one
in-memory training would give, and eval and predict work on it unchanged.

The validation split of streamed data is drawn per row from the seed (by row index, not
stratified), so that it needs no pass over the labels first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .data import (
    FeatureEncoder,
    class_order,
    missing_values_error,
    python_scalar,
    table_chunks,
)
from .errors import DataError
from .loss import Sums, Target, available_cores, shuffled_batches, sums, thread_pool
from .preprocess import Standardizer, merge_moments

if TYPE_CHECKING:
    import pandas as pd

CACHE_VERSION = 1
SPLIT_BLOCK = 1 << 16  # rows per seeded block of the validation draw
READ_BYTES = 4 << 20  # most bytes of the cache read at once by training


def cache_root() -> Path:
    """$XENT_CACHE_DIR, else $XDG_CACHE_HOME/xent, else ~/.cache/xent."""
    if os.environ.get("XENT_CACHE_DIR"):
        return Path(os.environ["XENT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "xent"


@dataclass
class CachedTable:
    """A parsed table on disk. numeric: (n_rows, n_numeric) float64 and codes: (n_rows,
    n_categorical) int32 level indices into ``meta["levels"]`` (-1: missing), both read from
    their files a block at a time; labels: (n_rows,) class indices into ``meta["classes"]``;
    missing: (n_rows,) bool, rows with a missing value."""

    directory: Path
    meta: dict
    numeric: RowFile
    codes: RowFile
    labels: np.ndarray
    missing: np.ndarray

    @property
    def n_rows(self) -> int:
        return self.meta["n_rows"]


class RowFile:
    """A (n_rows, width) array stored row-major in a file, read a slice of rows at a time.

    Reads copy the rows into ordinary memory that is freed (or reused) with the block: unlike
    with a memory map, the pages read do not stay counted in the process's resident memory,
    which then grows with the block size, not with the file."""

    def __init__(self, path: Path, dtype, n_rows: int, width: int):
        self.path, self.dtype = path, np.dtype(dtype)
        self.shape = (n_rows, width)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop, step = rows.indices(self.shape[0])
        if step != 1:
            raise IndexError("RowFile reads contiguous rows only")
        width = self.shape[1]
        count = max(stop - start, 0) * width
        if count == 0:
            return np.zeros((max(stop - start, 0), width), dtype=self.dtype)
        values = np.fromfile(self.path, dtype=self.dtype, count=count,
                             offset=start * width * self.dtype.itemsize)
        return values.reshape(-1, width)

    def __array__(self, dtype=None, copy=None):
        whole = self[0:self.shape[0]]
        return whole if dtype is None else whole.astype(dtype)

    def read_into(self, buffer: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Rows start..stop read into ``buffer`` (reused between blocks; the read releases the
        GIL, so it can overlap computing on another block). Returns the filled rows."""
        width, itemsize = self.shape[1], self.dtype.itemsize
        out = buffer[: stop - start]
        view = memoryview(out.reshape(-1).view(np.uint8))
        offset, done = start * width * itemsize, 0
        with open(self.path, "rb", buffering=0) as handle:
            while done < len(view):
                count = os.preadv(handle.fileno(), [view[done:]], offset + done)
                if count <= 0:
                    raise DataError(f"{self.path}: the cache is truncated; clear it with "
                                    "`xent cache clear`")
                done += count
        return out


def open_cache(directory: Path) -> CachedTable:
    meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
    n = meta["n_rows"]
    return CachedTable(
        directory, meta,
        RowFile(directory / "numeric.bin", np.float64, n, len(meta["numeric"])),
        RowFile(directory / "codes.bin", np.int32, n, len(meta["categorical"])),
        np.load(directory / "labels.npy"), np.load(directory / "missing.npy"))


def cache_key(path: Path, target: str | None) -> str:
    """The cache directory's name: the file (its absolute path, size and modification time)
    and the parsing settings. A file that changes gets a new key, so a stale cache is never
    read; the content's SHA-256, computed while parsing, is recorded in the cache."""
    status = path.stat()
    identity = [CACHE_VERSION, str(path.resolve()), status.st_size, status.st_mtime_ns, target]
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:32]


def build_cache(path: str | os.PathLike, target: str | None = None,
                chunk_rows: int = 65536) -> tuple[CachedTable, bool]:
    """The cache of a CSV or Parquet file, made by one chunked pass unless it exists.
    Returns (the table, whether it was built now)."""
    path = Path(path)
    key = cache_key(path, target)
    final = cache_root() / key
    if (final / "meta.json").is_file():
        return open_cache(final), False
    final.parent.mkdir(parents=True, exist_ok=True)
    work = final.parent / f".{key}.{os.getpid()}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        _parse_into(path, target, chunk_rows, work)
        try:
            os.replace(work, final)
        except OSError:  # another process made it meanwhile: use theirs
            shutil.rmtree(work, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return open_cache(final), True


class _BackgroundWriter:
    """Writes arrays to files on a thread of its own, so that the disk works while pandas
    parses the next chunk; at most two blocks wait, which bounds the memory used."""

    def __init__(self):
        self.queue: queue.Queue = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while (item := self.queue.get()) is not None:
            if self.error is None:
                try:
                    item[0].tofile(item[1])
                except BaseException as exc:  # reported to the parsing thread
                    self.error = exc

    def __call__(self, array: np.ndarray, handle) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((array, handle))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.queue.put(None)
        self.thread.join()
        if self.error is not None and exc_info[0] is None:
            raise self.error
        return False


def _codes(values: pd.Series, index: dict, as_text: bool) -> np.ndarray:
    """Integer codes of ``values`` by first appearance across chunks (``index`` grows as new
    values appear); -1 for a missing value."""
    import pandas as pd

    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    keys = [str(u) if as_text else u for u in uniques.tolist()]
    lookup = np.array([index.setdefault(k, len(index)) for k in keys] + [-1], dtype=np.int64)
    return lookup[codes]  # code -1 picks the final -1


def _parse_into(path: Path, target, chunk_rows, work: Path) -> None:
    import pandas as pd

    requested_target = target  # part of the cache's key
    columns = numeric = categorical = None
    level_index: list[dict] = []
    label_index: dict = {}
    labels, missing = [], []
    nan_counts = None
    n_rows = 0
    digest = hashlib.sha256()
    with open(work / "numeric.bin", "wb") as numeric_file, \
            open(work / "codes.bin", "wb") as codes_file, _BackgroundWriter() as write:
        for chunk in table_chunks(path, chunk_rows, digest):
            if columns is None:
                target = target or chunk.columns[-1]
                if target not in chunk.columns:
                    raise DataError(f"{path}: no target column {target!r}; the columns are "
                                    f"{list(chunk.columns)}")
                columns = [c for c in chunk.columns if c != target]
                if not columns:
                    raise DataError(f"{path}: there are no feature columns besides {target!r}")
                numeric = [c for c in columns if pd.api.types.is_numeric_dtype(chunk[c])
                           or pd.api.types.is_bool_dtype(chunk[c])]
                categorical = [c for c in columns if c not in numeric]
                level_index = [{} for _ in categorical]
                nan_counts = np.zeros(len(numeric), dtype=np.int64)
            elif set(chunk.columns) != set(columns) | {target}:
                raise DataError(f"{path}: the columns change at row {n_rows + 2}")
            label_codes = _codes(chunk[target], label_index, as_text=False)
            if (label_codes < 0).any():
                line = n_rows + 2 + int(np.flatnonzero(label_codes < 0)[0])
                raise DataError(f"{path}: no label in column {target!r} at line {line}; fill "
                                "it in or remove the row")
            labels.append(label_codes)
            block = _numeric_block(chunk, numeric, path, n_rows)
            nan_rows = np.isnan(block)
            nan_counts += nan_rows.sum(axis=0)
            write(block, numeric_file)
            codes = np.empty((len(chunk), len(categorical)), dtype=np.int32)
            for j, column in enumerate(categorical):
                codes[:, j] = _codes(chunk[column], level_index[j], as_text=True)
            write(codes, codes_file)
            missing.append(nan_rows.any(axis=1) | (codes < 0).any(axis=1))
            n_rows += len(chunk)
    if columns is None or n_rows == 0:
        raise DataError(f"{path}: the file has no data rows")
    raw_classes = list(label_index)
    classes = class_order(raw_classes)
    by_text = {str(c): i for i, c in enumerate(classes)}
    remap = np.array([by_text[str(python_scalar(c))] for c in raw_classes], dtype=np.intp)
    np.save(work / "labels.npy", remap[np.concatenate(labels)])
    np.save(work / "missing.npy", np.concatenate(missing))
    status = path.stat()
    meta = {
        "version": CACHE_VERSION, "source": str(path.resolve()), "sha256": digest.hexdigest(),
        "size": status.st_size, "mtime_ns": status.st_mtime_ns,
        "n_rows": n_rows, "target": target, "requested_target": requested_target,
        "columns": columns, "numeric": numeric,
        "categorical": categorical, "levels": [list(index) for index in level_index],
        "classes": classes, "nan_counts": dict(zip(numeric, nan_counts.tolist(), strict=True)),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    (work / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")


def _numeric_block(chunk: pd.DataFrame, numeric: list[str], path: Path, offset: int):
    """The numeric columns of a chunk as float64 (n, n_numeric), NaN where missing."""
    try:
        block = chunk[numeric].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        for column in numeric:  # find the culprit, to name it
            try:
                chunk[column].to_numpy(dtype=np.float64, na_value=np.nan)
            except (TypeError, ValueError):
                raise DataError(
                    f"{path}: column {column!r} is numeric in the first rows but has text in "
                    f"rows {offset + 2} to {offset + len(chunk) + 1}; clean it, or read the "
                    "file without --stream") from None
        raise
    if np.isinf(block).any():
        bad = [numeric[j] for j in np.flatnonzero(np.isinf(block).any(axis=0))]
        raise DataError(f"{path}: infinite values in column(s) {bad}: fix the file")
    return block


def read_rows(table: CachedTable, chunk_rows: int) -> int:
    """Rows per block read from the cache: at most ``chunk_rows`` and about ``READ_BYTES``
    (4 MB), so that the block each thread reads, and its temporaries, stay in the L3 cache
    while they are used (8 and 16 MB blocks measured 20% and 50% slower an epoch)."""
    width = max(1, len(table.meta["numeric"]) + len(table.meta["categorical"]))
    return max(256, min(chunk_rows, READ_BYTES // (8 * width)))


def validation_mask(n_rows: int, val_fraction: float, seed: int) -> np.ndarray:
    """Which rows are validation rows: each row by a uniform draw from a generator seeded by
    (seed, block of the row), so the split depends on the row index and seed only."""
    mask = np.zeros(n_rows, dtype=bool)
    if val_fraction <= 0:
        return mask
    for block, start in enumerate(range(0, n_rows, SPLIT_BLOCK)):
        stop = min(start + SPLIT_BLOCK, n_rows)
        mask[start:stop] = np.random.default_rng([seed, block]).random(stop - start) < \
            val_fraction
    return mask


class StreamData:
    """The rows of a cached table chosen by ``selection``, encoded, imputed and standardised
    block by block: what ``loss.evaluate`` and ``train.fit`` accept in place of a matrix.

    ``chunks()`` yields (X block (rows, n_features), Target, weights or None) in row order;
    ``batches(size, rng)`` yields the same for mini-batches: the blocks in a shuffled order and
    the rows shuffled within each block."""

    def __init__(self, table: CachedTable, selection: np.ndarray, encoder: FeatureEncoder,
                 standardizer: Standardizer | None, chunk_rows: int, dtype=np.float64,
                 smoothing: float = 0.0, class_weight: np.ndarray | None = None):
        self.table, self.selection = table, selection
        self.encoder, self.standardizer = encoder, standardizer
        self.chunk_rows = read_rows(table, chunk_rows)
        self.dtype = np.dtype(dtype)
        self.labels = table.labels[selection]
        self.target = Target(len(table.meta["classes"]), labels=self.labels,
                             smoothing=smoothing)
        self.weights = None if class_weight is None else class_weight[self.labels]
        self.n_features = len(encoder.feature_names)
        self._plan = _EncodingPlan(table, encoder)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.labels), self.n_features

    def _spans(self):
        offset = 0
        for start in range(0, self.table.n_rows, self.chunk_rows):
            stop = min(start + self.chunk_rows, self.table.n_rows)
            keep = self.selection[start:stop]
            count = int(np.count_nonzero(keep))
            if count:
                yield start, stop, keep, slice(offset, offset + count)
            offset += count

    def block(self, start, stop, keep) -> np.ndarray:
        X = self._plan.encode(start, stop, keep)
        if self.standardizer is not None:
            X = self.standardizer.transform(X, copy=False)
        return X.astype(self.dtype, copy=False)

    def sums(self, params, link, **options) -> Sums:
        """The objective's sums over all rows, for ``loss.evaluate``.

        Standardisation is folded into the parameters instead of applied to every block:
        ((x - mu) / sd) W + b = x (W / sd) + (b - mu . W / sd), and the gradient's sums in
        standardised terms are (R^T X - (sum R) mu^T) / sd. So the blocks are used as cached,
        with no pass to standardise them (exact algebra; rounding differs from standardising
        first by about |mu| / sd times the machine precision).
        """
        d = self.n_features
        raw = np.array(params, dtype=np.float64)
        if self.standardizer is not None:
            mean = self.standardizer.mean
            scale = self.standardizer.scale
            raw[:d] = params[:d] / scale[:, None]
            raw[d] = params[d] - mean @ raw[:d]
        spans = list(self._spans())
        threads = options.pop("n_threads", None) or available_cores()
        threads = max(1, min(threads, len(spans)))
        plain = self._plan.plain and not self._plan.fills_any and self.dtype == np.float64
        rows = max((stop - start for start, stop, _, _ in spans), default=0)

        def run(group) -> Sums | None:
            """The sums over a contiguous run of blocks, each read (or encoded) and then used
            while it is in cache; one buffer per thread, whatever the file's size."""
            buffer = np.empty((rows, d)) if plain else None
            totals = None
            for start, stop, keep, selected in (spans[i] for i in group):
                if plain:  # the cached rows as they are
                    X = self.table.numeric.read_into(buffer, start, stop)
                    X = X if keep.all() else X[keep]
                else:
                    X = self._plan.encode(start, stop, keep).astype(self.dtype, copy=False)
                part = sums(raw, X, self.target.take(selected), link, self._weights(selected),
                            n_threads=1, **options)
                totals = part if totals is None else totals + part
            return totals

        # Each thread reads and computes its own run of blocks: reading (which releases the
        # GIL) on one thread overlaps computing on another, and no core waits for a reader.
        groups = np.array_split(np.arange(len(spans)), threads)
        if threads == 1:
            parts = [run(groups[0])]
        else:
            pool, single_blas = thread_pool(threads)
            with single_blas:
                parts = list(pool.map(run, groups))
        totals = None
        for part in parts:  # added in the blocks' order: the result does not depend on timing
            if part is not None:
                totals = part if totals is None else totals + part
        if self.standardizer is not None:
            corrected = (totals.grad_coef_t - np.outer(totals.grad_intercept, mean)) / scale
            totals = totals._replace(grad_coef_t=corrected)
        return totals

    def _weights(self, rows):
        return None if self.weights is None else self.weights[rows]

    def chunks(self):
        for start, stop, keep, rows in self._spans():
            yield self.block(start, stop, keep), self.target.take(rows), self._weights(rows)

    def batches(self, batch_size: int, rng: np.random.Generator):
        spans = list(self._spans())
        for index in rng.permutation(len(spans)):
            start, stop, keep, rows = spans[index]
            X = self.block(start, stop, keep)
            yield from shuffled_batches(X, self.target.take(rows), self._weights(rows),
                                        rng.permutation(len(X)), batch_size)


class _EncodingPlan:
    """How the cached columns become the encoder's features: numeric columns (imputed with the
    encoder's fill values) and one-hot categorical ones, in the encoder's order."""

    def __init__(self, table: CachedTable, encoder: FeatureEncoder):
        meta = table.meta
        self.table = table
        self.n_features = len(encoder.feature_names)
        numeric_features, numeric_sources, fills = [], [], []
        self.categorical = []  # (cached column, first feature, cached code -> level position)
        feature = 0
        for column in encoder.columns:
            if column in encoder.categories:
                j = meta["categorical"].index(column)
                levels = encoder.categories[column]
                position = {level: i for i, level in enumerate(levels)}
                level_map = np.array([position.get(level, -1) for level in meta["levels"][j]]
                                     + [position.get(str(encoder.fill.get(column)), -1)],
                                     dtype=np.intp)  # the last entry: a missing value
                self.categorical.append((j, feature, level_map))
                feature += len(levels)
            else:
                numeric_features.append(feature)
                numeric_sources.append(meta["numeric"].index(column))
                fills.append(encoder.fill.get(column, np.nan))
                feature += 1
        self.numeric_features = np.array(numeric_features, dtype=np.intp)
        self.numeric_sources = np.array(numeric_sources, dtype=np.intp)
        self.fills = np.array(fills)
        self.fills_any = bool((~np.isnan(self.fills)).any())
        # the common case, numeric columns only and in cached order: the block is the cache's
        self.plain = not self.categorical and np.array_equal(
            self.numeric_sources, np.arange(len(meta["numeric"])))

    def encode(self, start, stop, keep) -> np.ndarray:
        """The features of the kept rows of start..stop, (rows kept, n_features), a new
        array."""
        numeric = self.table.numeric[start:stop]
        numeric = numeric if keep.all() else numeric[keep]
        if self.plain:
            X = numeric
        else:
            X = np.zeros((len(numeric), self.n_features))
            X[:, self.numeric_features] = numeric[:, self.numeric_sources]
        filled = ~np.isnan(self.fills)
        if filled.any():
            columns = self.numeric_features[filled]
            block = X[:, columns]
            X[:, columns] = np.where(np.isnan(block), self.fills[filled], block)
        if self.categorical:
            codes = self.table.codes[start:stop][keep]
            rows = np.arange(len(codes))
            for j, feature, level_map in self.categorical:
                level = level_map[codes[:, j]]  # code -1 picks the last entry: the fill level
                seen = level >= 0
                X[rows[seen], feature + level[seen]] = 1.0
        return X


def fit_streamed(table: CachedTable, selection: np.ndarray, impute: str | None,
                 standardize: bool, chunk_rows: int) -> tuple[FeatureEncoder, Standardizer | None]:
    """The encoder and standardiser of the selected (training) rows, from one pass over the
    cache: per numeric column the count, mean and centred sum of squares of the values present
    (merged chunk by chunk, Chan et al.), per categorical column the count of each level.

    Missing values: an error naming the columns without a policy; ``mean`` fills numeric
    columns with their mean and categorical ones with their most frequent level; ``drop``
    leaves the rows out (the caller removes them from ``selection``); ``median`` needs the
    whole column and is not available when streaming.
    """
    meta = table.meta
    if impute == "median":
        raise DataError(f"{meta['source']}: --impute median needs the whole column in memory; "
                        "use mean or drop when streaming")
    n_numeric, n_cat = len(meta["numeric"]), len(meta["categorical"])
    count = np.zeros(n_numeric)
    mean = np.zeros(n_numeric)
    m2 = np.zeros(n_numeric)
    level_counts = [np.zeros(len(levels) + 1, dtype=np.int64) for levels in meta["levels"]]
    step = read_rows(table, chunk_rows)
    for start in range(0, table.n_rows, step):
        stop = min(start + step, table.n_rows)
        keep = selection[start:stop]
        block = table.numeric[start:stop]
        if not keep.all():
            block = block[keep]
        present = ~np.isnan(block)
        c = present.sum(axis=0).astype(np.float64)
        safe = np.where(present, block, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            m = np.where(c > 0, safe.sum(axis=0) / np.maximum(c, 1), 0.0)
        q = np.where(present, (block - m) ** 2, 0.0).sum(axis=0)
        count, mean, m2 = merge_moments((count, mean, m2), (c, m, q))
        codes = table.codes[start:stop]
        codes = codes if keep.all() else codes[keep]
        for j in range(n_cat):  # code -1 (missing) is counted in the last place
            counts = np.bincount(codes[:, j] + 1, minlength=len(level_counts[j]))
            level_counts[j][:-1] += counts[1:]
            level_counts[j][-1] += counts[0]
    n = int(np.count_nonzero(selection))
    missing = {c: n - int(count[j]) for j, c in enumerate(meta["numeric"]) if count[j] < n}
    missing.update({c: int(level_counts[j][-1]) for j, c in enumerate(meta["categorical"])
                    if level_counts[j][-1]})
    fill = {}
    if missing and impute is None:
        raise missing_values_error(meta["source"], missing, "mean|drop")
    if impute == "mean":
        for j, column in enumerate(meta["numeric"]):
            if column in missing:
                fill[column] = float(mean[j])
        for j, column in enumerate(meta["categorical"]):
            if column in missing:
                fill[column] = str(meta["levels"][j][int(np.argmax(level_counts[j][:-1]))])
    categories = {column: tuple(sorted(meta["levels"][j]))
                  for j, column in enumerate(meta["categorical"])}
    encoder = FeatureEncoder(tuple(meta["columns"]), categories, fill, impute)
    if not standardize:
        return encoder, None
    means, stds = [], []
    for column in encoder.columns:
        if column in encoder.categories:
            j = meta["categorical"].index(column)
            counts = dict(zip(meta["levels"][j], level_counts[j][:-1].tolist(), strict=True))
            if column in fill:
                counts[fill[column]] += int(level_counts[j][-1])
            for level in encoder.categories[column]:
                p = counts.get(level, 0) / n
                means.append(p)
                stds.append(np.sqrt(max(p * (1 - p), 0.0)))
        else:
            j = meta["numeric"].index(column)
            means.append(mean[j])
            stds.append(np.sqrt(m2[j] / n))
    std = np.array(stds)
    return encoder, Standardizer(np.array(means), np.where(std > 0, std, 1.0))


def list_caches() -> list[dict]:
    """The caches on this machine: key, source, rows, size, when made."""
    root = cache_root()
    rows = []
    for directory in sorted(root.glob("*")) if root.is_dir() else []:
        meta_path = directory / "meta.json"
        if directory.name.startswith(".") or not meta_path.is_file():
            continue
        with contextlib.suppress(ValueError, OSError):
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            size = sum(f.stat().st_size for f in directory.iterdir())
            source = Path(meta["source"])
            stale = not source.is_file() or \
                cache_key(source, meta["requested_target"]) != directory.name
            rows.append({"key": directory.name, "source": meta["source"],
                         "n_rows": meta["n_rows"], "bytes": size, "created": meta["created"],
                         "stale": stale})
    return rows


def clear_caches(keys: list[str] | None = None) -> int:
    """Remove the named caches (all of them without names); returns how many were removed."""
    root = cache_root()
    removed = 0
    for directory in list(root.glob("*")) if root.is_dir() else []:
        if keys is None or directory.name in keys:
            shutil.rmtree(directory, ignore_errors=True)
            removed += not directory.name.startswith(".")
    return removed
