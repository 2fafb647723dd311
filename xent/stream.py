"""Data beyond memory: a CSV or Parquet file is parsed once, chunk by chunk, into a binary cache;
every epoch then streams the cache in row blocks through the same loss and gradient.

The cache (one directory per data file, target and weight column, keyed by the file's path,
size and modification time; its SHA-256 is recorded) holds the raw table, parsed by
``data.parse_block`` as a file read whole is: numeric columns as float64 (NaN where missing),
categorical columns as integer codes, the labels as class indices, the sample weights, and a
JSON description. ``StreamTable`` is that cache as a ``sources.Table``: its statistics come from
one pass over the cache, and its sources (``StreamData``) encode, impute and standardise each
block as training reads it, so the model is the one in-memory training gives, and eval and
predict work on it unchanged.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import queue
import shutil
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .data import (
    DEFAULT_READ,
    Codebook,
    EncodingPlan,
    RawTable,
    ReadOptions,
    Schema,
    delimiter,
    finish_labels,
    frame_schema,
    is_parquet,
    parse_block,
    table_chunks,
    with_text,
)
from .errors import DataError
from .inference import information
from .loss import Sums, gram_product, rows_work, sums, threads_for
from .preprocess import Preprocessing, Standardizer, Statistics, table_statistics
from .sources import SourceOptions, masked_target
from .targets import Target
from .text import (
    FASTTEXT_TARGET,
    SEVERAL_LABELS,
    TextSpec,
    fasttext_chunks,
    fasttext_spec,
    is_fasttext,
    several_labels_notes,
)
from .threads import items_for, on_threads, thread_count

CACHE_VERSION = 2
READ_BYTES = 4 << 20  # most bytes of the cache read at once by training
DEFAULT_OPTIONS = SourceOptions()


#: the folder in the cache root that holds numba's compiled kernels (``kernels``), not data:
#: ``xent cache`` neither lists nor clears it
COMPILED_DIR = "numba"


def cache_root() -> Path:
    """$XENT_CACHE_DIR, else $XDG_CACHE_HOME/xent, else ~/.cache/xent."""
    if os.environ.get("XENT_CACHE_DIR"):
        return Path(os.environ["XENT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "xent"


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


class CsrFile:
    """A CSR matrix whose values and column indices are in two files, its row pointers
    (8 bytes a row) in memory; ``rows(start, stop)`` reads one block of rows."""

    def __init__(self, directory: Path, n_columns: int):
        self.indptr = np.load(directory / "text_indptr.npy")
        self.data_path, self.indices_path = directory / "text_data.bin", \
            directory / "text_indices.bin"
        self.shape = (len(self.indptr) - 1, n_columns)

    def __getitem__(self, rows: slice) -> sp.csr_matrix:
        start, stop, _ = rows.indices(self.shape[0])
        return self.rows(start, stop)

    def rows(self, start: int, stop: int) -> sp.csr_matrix:
        first, last = int(self.indptr[start]), int(self.indptr[stop])
        data = np.fromfile(self.data_path, dtype=np.float64, count=last - first,
                           offset=8 * first)
        indices = np.fromfile(self.indices_path, dtype=np.int32, count=last - first,
                              offset=4 * first)
        if len(data) != last - first or len(indices) != last - first:
            raise DataError(f"{self.data_path}: the cache is truncated; clear it with "
                            "`xent cache clear`")
        return sp.csr_matrix((data, indices, self.indptr[start:stop + 1] - first),
                             shape=(stop - start, self.shape[1]))


@dataclass
class StreamTable(RawTable):
    """A parsed table in its cache: numeric and codes are ``RowFile``s, read a block at a
    time; labels, sample weights and the missing rows are in memory (a few bytes a row)."""

    directory: Path | None = None
    meta: dict | None = None

    def statistics(self, selection, medians=False) -> Statistics:
        if medians:
            raise DataError(f"{self.name}: --impute median needs the whole column in memory; "
                            "use mean or drop when streaming")
        return table_statistics(self, selection, read_rows(self, 1 << 16))

    def sources(self, train, validation, prep, options):
        def view(rows, smoothing, class_weight):
            return StreamData(self, rows, prep, options, smoothing, class_weight)

        val = view(validation, 0.0, None) if validation.any() else None
        return view(train, options.smoothing, prep.class_weight), val


def open_cache(directory: Path) -> StreamTable:
    meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
    n = meta["n_rows"]
    schema = Schema(meta["target"], meta["weight"], tuple(meta["columns"]),
                    tuple(meta["numeric"]), tuple(meta["categorical"]))
    weights = np.load(directory / "weights.npy") if meta["weight"] else None
    text = None if meta.get("text") is None else TextSpec.from_dict(meta["text"])
    return StreamTable(
        meta["source"], schema, meta["levels"], meta["classes"],
        RowFile(directory / "numeric.bin", np.float64, n, len(schema.numeric)),
        RowFile(directory / "codes.bin", np.int32, n, len(schema.categorical)),
        np.load(directory / "labels.npy"), weights, np.load(directory / "missing.npy"),
        meta["missing_counts"], meta["sha256"], ReadOptions.from_dict(meta.get("read")),
        None if text is None else CsrFile(directory, text.n_features), text,
        tuple(meta.get("notes", ())), directory=directory, meta=meta)


def cache_key(path: Path, target: str | None, weight: str | None = None,
              read: ReadOptions = DEFAULT_READ, text: TextSpec | None = None) -> str:
    """The cache directory's name: the file (its absolute path, size and modification time)
    and the parsing settings. A file that changes gets a new key, so a stale cache is never
    read; the content's SHA-256, computed while parsing, is recorded in the cache."""
    status = path.stat()
    identity = [CACHE_VERSION, str(path.resolve()), status.st_size, status.st_mtime_ns, target,
                weight]
    if read != DEFAULT_READ:
        identity.append([read.sep, list(read.na_values), read.thousands, read.decimal,
                         list(read.ignore), read.encoding, read.header])
    if text is not None:
        identity.append(text.to_dict())
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:32]


def build_cache(path: str | os.PathLike, target: str | None = None,
                chunk_rows: int = 65536, weight: str | None = None,
                read: ReadOptions = DEFAULT_READ,
                text: TextSpec | None = None, building=None) -> tuple[StreamTable, bool]:
    """The cache of a CSV, Parquet or fastText file (read by ``read``; ``text``'s columns
    hashed as they are read), made by one chunked pass unless it exists (``building``, if
    given, is called before that pass). Returns (the table, whether it was built now)."""
    path = Path(path)
    if is_fasttext(path):
        target, weight, text = FASTTEXT_TARGET, None, fasttext_spec(text)
    key = cache_key(path, target, weight, read, text)
    final = cache_root() / key
    if (final / "meta.json").is_file():
        return open_cache(final), False
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # "File exists" alone named no setting
        raise DataError(f"{cache_root()}: the cache's folder cannot be made, a file is in its "
                        "path; point $XENT_CACHE_DIR at a folder (or unset it for "
                        "~/.cache/xent)") from None
    if building is not None:
        building()
    work = final.parent / f".{key}.{os.getpid()}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        _parse_into(path, target, weight, chunk_rows, work, read, text)
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


def _parse_into(path: Path, target, weight, chunk_rows, work: Path, read: ReadOptions,
                text: TextSpec | None = None) -> None:
    """Parse the file chunk by chunk (``data.parse_block``, the schema from the first chunk;
    ``text``'s columns hashed, chunk by chunk) into the cache's files in ``work``."""
    fasttext = is_fasttext(path)
    asked = read  # what the cache's key was made of, before the delimiter is sniffed
    if not (is_parquet(path) or fasttext):
        read = replace(read, sep=delimiter(path, read))
    parsed = _Parsed(path, target, weight, read, text)
    digest = hashlib.sha256()
    chunks = fasttext_chunks(path, chunk_rows, digest) if fasttext else \
        table_chunks(path, chunk_rows, digest, read)
    with contextlib.ExitStack() as files, _BackgroundWriter() as write:  # written, then closed
        names = ("numeric", "codes") + (("text_data", "text_indices") if text else ())
        out = {name: files.enter_context(open(work / f"{name}.bin", "wb")) for name in names}
        for chunk in chunks:
            parsed.add(chunk, write, out)
    meta = parsed.save(work, digest.hexdigest(), asked)
    (work / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")


class _Parsed:
    """What one pass over a file's chunks gathers besides the rows it writes: the schema
    (from the first chunk), the levels and classes met, the labels, missing rows and weights,
    missing values per column, the hashed text's row lengths, and the counts of rows and of
    fastText lines with several labels."""

    def __init__(self, path: Path, target, weight, read: ReadOptions, text: TextSpec | None):
        self.path, self.source = path, str(path)
        self.requested = (target, weight)  # part of the cache's key
        self.read, self.text = read, text
        self.text_columns = () if text is None else text.columns
        self.schema: Schema | None = None
        self.books, self.label_book = [], Codebook(labels=True)
        self.labels, self.missing, self.weights, self.row_nnz = [], [], [], []
        self.missing_counts: dict[str, int] = {}
        self.n_rows = self.several = 0

    def _check_columns(self, chunk) -> Schema:
        """The schema, from the first chunk; a later chunk must have the same columns."""
        schema = self.schema
        if schema is None:
            schema = self.schema = frame_schema(chunk, *self.requested, self.source,
                                                self.text_columns, self.read.ignore)
            self.books = [Codebook() for _ in schema.categorical]
            self.missing_counts = dict.fromkeys(schema.columns, 0)
        elif set(chunk.columns) != set(schema.columns) | {schema.target} | \
                ({schema.weight} - {None}) | set(self.text_columns) | set(schema.ignored):
            raise DataError(f"{self.path}: the columns change at line "
                            f"{self.n_rows + self.read.first_line}")
        return schema

    def add(self, chunk, write, out: dict) -> None:
        """Parse ``chunk`` and write its rows (``write``, a ``_BackgroundWriter``) to the
        open files ``out`` (numeric, codes, and text_data and text_indices with text)."""
        schema = self._check_columns(chunk)
        if self.text is not None:
            hashed = self.text.transform(chunk, self.source)
            write(hashed.data.astype(np.float64, copy=False), out["text_data"])
            write(hashed.indices.astype(np.int32, copy=False), out["text_indices"])
            self.row_nnz.append(np.diff(hashed.indptr))
        block = parse_block(chunk, schema, self.books, self.label_book, self.source,
                            self.n_rows + self.read.first_line)
        self.labels.append(block.labels)
        self.missing.append(block.missing)
        if block.weights is not None:
            self.weights.append(block.weights)
        for column, count in block.missing_counts(schema).items():
            self.missing_counts[column] += count
        write(block.numeric, out["numeric"])
        write(block.codes, out["codes"])
        self.n_rows += len(chunk)
        self.several += chunk.attrs.get(SEVERAL_LABELS, 0)

    def save(self, work: Path, sha256: str, asked: ReadOptions) -> dict:
        """Write the gathered arrays into ``work``; return the cache's meta.json (``asked``:
        the read options the cache's key was made of)."""
        schema = self.schema
        if schema is None or self.n_rows == 0:
            raise DataError(f"{self.path}: the file has no data rows")
        classes, remap = finish_labels(self.label_book)
        np.save(work / "labels.npy", remap[np.concatenate(self.labels)])
        np.save(work / "missing.npy", np.concatenate(self.missing))
        if self.text is not None:
            np.save(work / "text_indptr.npy", np.concatenate(
                [[0], np.cumsum(np.concatenate(self.row_nnz))]).astype(np.int64))
        if schema.weight:
            np.save(work / "weights.npy", np.concatenate(self.weights))
        status = self.path.stat()
        return {
            "version": CACHE_VERSION, "source": str(self.path.resolve()), "sha256": sha256,
            "size": status.st_size, "mtime_ns": status.st_mtime_ns, "n_rows": self.n_rows,
            "target": schema.target, "weight": schema.weight,
            "requested": list(self.requested), "columns": list(schema.columns),
            "numeric": list(schema.numeric), "categorical": list(schema.categorical),
            "levels": [b.values for b in self.books], "classes": classes,
            "missing_counts": self.missing_counts, "read": self.read.to_dict(),
            "requested_read": asked.to_dict(),
            "text": None if self.text is None else self.text.to_dict(),
            "notes": list(several_labels_notes(self.source, self.several, self.n_rows)),
            "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        }


def read_rows(table: RawTable, chunk_rows: int, encoded_width: int = 0) -> int:
    """Rows per block read from the cache: at most ``chunk_rows`` and about ``READ_BYTES``
    (4 MB), so that the block each thread reads, and its temporaries, stay in the L3 cache
    while they are used (8 and 16 MB blocks measured 20% and 50% slower an epoch). The width
    is the raw columns', or the dense features' they encode to (``encoded_width``) where that
    is more: a column of identifiers makes a row as many features wide as it has levels."""
    width = max(1, len(table.schema.numeric) + len(table.schema.categorical), encoded_width)
    return max(256, min(chunk_rows, READ_BYTES // (8 * width)))


class StreamData:
    """The rows of a cached table chosen by ``selection``, encoded, imputed and standardised
    block by block: a ``sources.RowSource``.

    ``chunks()`` yields (X block (rows, n_features), Target, weights or None) in row order;
    mini-batch epochs take the blocks in a shuffled order and the rows shuffled within each
    block."""

    def __init__(self, table: StreamTable, selection: np.ndarray, prep: Preprocessing,
                 options: SourceOptions = DEFAULT_OPTIONS, smoothing: float = 0.0,
                 class_weight: np.ndarray | None = None):
        self.table, self.selection = table, selection
        self.standardizer: Standardizer | None = prep.standardizer
        self._plan = EncodingPlan(table.schema, table.levels, prep.encoder)
        self.chunk_rows = read_rows(table, options.chunk_rows, self._plan.n_features)
        self._dtype = np.dtype(options.dtype)
        self._target, self._weights = masked_target(table, selection, smoothing, class_weight)
        self.n_features = len(prep.feature_names)

    @property
    def shape(self) -> tuple[int, int]:
        return self._target.n_samples, self.n_features

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def target(self) -> Target:
        return self._target

    @property
    def weights(self) -> np.ndarray | None:
        return self._weights

    def _spans(self):
        offset = 0
        for start in range(0, self.table.n_rows, self.chunk_rows):
            stop = min(start + self.chunk_rows, self.table.n_rows)
            keep = self.selection[start:stop]
            count = int(np.count_nonzero(keep))
            if count:
                yield start, stop, keep, slice(offset, offset + count)
            offset += count

    def _raw(self, start, stop, keep, buffer=None) -> np.ndarray:
        """The encoded, unstandardised features of the kept rows of start..stop (float64;
        CSR with text); the cached rows as they are, read into ``buffer``, when the encoding
        is plain."""
        if self.table.text is not None:
            numeric, codes = self.table.numeric[start:stop], self.table.codes[start:stop]
            X = with_text(self._plan.encode(numeric, codes), self.table.text.rows(start, stop))
            return X if keep.all() else X[keep]
        if self._plan.plain and buffer is not None:
            X = self.table.numeric.read_into(buffer, start, stop)
            return X if keep.all() else X[keep]
        numeric, codes = self.table.numeric[start:stop], self.table.codes[start:stop]
        if not keep.all():
            numeric, codes = numeric[keep], codes[keep]
        return self._plan.encode(numeric, codes)

    def block(self, start, stop, keep) -> np.ndarray:
        """The training features of the kept rows of start..stop: encoded, standardised (in
        float64) and then stored in the source's dtype."""
        X = self._raw(start, stop, keep)
        if self.standardizer is not None:
            X = self.standardizer.transform(X, copy=False)  # a new array either way
        return X.astype(self._dtype, copy=False)

    def sums(self, params, link, *, with_grad=True, compute_dtype=None) -> Sums:
        """The objective's sums over all rows, for ``loss.evaluate``.

        For float64 data standardisation is folded into the parameters instead of applied to
        every block: ((x - mu) / sd) W + b = x (W / sd) + (b - mu . W / sd), and the gradient's
        sums in standardised terms are (R^T X - (sum R) mu^T) / sd. So the blocks are used as
        cached, with no pass to standardise them (exact algebra; rounding differs from
        standardising first by about |mu| / sd times the machine precision). float32 blocks
        are standardised in float64 first and then rounded, as in memory.
        """
        d = self.n_features
        fold = self.standardizer is not None and self._dtype == np.float64
        raw = np.array(params, dtype=np.float64)
        if fold:
            scale = self.standardizer.scale
            mean = np.zeros(d) if self.standardizer.mean is None else self.standardizer.mean
            raw[:d] = params[:d] / scale[:, None]
            raw[d] = params[d] - mean @ raw[:d]
        spans = list(self._spans())
        rows = max((stop - start for start, stop, _, _ in spans), default=0)
        # A thread per run of blocks needs a gradient per thread: with hashed text W-sized,
        # tens of MB each. There the blocks go one after another instead, each summed by every
        # core into one gradient (``loss.sums``: by ranges of columns).
        one_gradient = self.table.text is not None and with_grad
        threads = 1 if one_gradient else self._threads(spans, params.shape[1])
        options = dict(with_grad=with_grad, compute_dtype=compute_dtype,
                       n_threads=None if one_gradient else 1)

        def run(blocks) -> Sums | None:
            """The sums over a contiguous run of blocks, each read (or encoded) and then used
            while it is in cache; one buffer per thread, whatever the file's size."""
            as_cached = fold or self.standardizer is None
            plain = as_cached and self._plan.plain and self.table.text is None
            buffer = np.empty((rows, d)) if plain else None
            totals = None
            for start, stop, keep, selected in blocks:
                if as_cached:
                    X = self._raw(start, stop, keep, buffer).astype(self._dtype, copy=False)
                else:
                    X = self.block(start, stop, keep)
                totals = sums(raw if fold else params, X, self._target.take(selected), link,
                              self._take_weights(selected), into=totals, **options)
            return totals

        parts = [part for part in self._on_runs(run, spans, threads) if part is not None]
        totals = parts[0] if parts else Sums.zero(params.shape[1], d)
        for part in parts[1:]:  # added in the blocks' order: the result does not depend on timing
            totals = totals.accumulate(part)
        if fold:
            corrected = (totals.grad_coef_t - np.outer(totals.grad_intercept, mean)) / scale
            totals = totals._replace(grad_coef_t=corrected)
        return totals

    def _threads(self, spans, n_outputs: int) -> int:
        """The threads a pass over the blocks ``spans`` repays (``loss.threads_for`` of its
        work, counted as dense rows with ``n_outputs`` outputs), at most one a block."""
        n_rows = spans[-1][3].stop if spans else 0  # the kept rows: the last block's end
        work = rows_work(n_rows, n_rows * self.n_features, False, n_outputs)
        return max(1, min(threads_for(work, thread_count()), len(spans)))

    @staticmethod
    def _on_runs(run, spans, threads: int) -> list:
        """``run(blocks)`` for contiguous runs of the blocks ``spans``, a few a thread
        (``threads.items_for``), taken in turn by ``threads`` threads; the results in the
        blocks' order, so that what is added from them does not depend on timing. Each thread
        reads and computes a run, then takes the next run not yet taken: reading (which
        releases the GIL) on one thread overlaps computing on another, no core waits for a
        reader, and a thread on a busy core takes fewer runs."""
        runs = 1 if threads == 1 else items_for(threads, len(spans))
        groups = np.array_split(np.arange(len(spans)), runs)
        return on_threads(lambda group: run([spans[i] for i in group]), groups, threads)

    def _take_weights(self, rows):
        return None if self._weights is None else self._weights[rows]

    def chunks(self):
        for start, stop, keep, rows in self._spans():
            yield self.block(start, stop, keep), self._target.take(rows), self._take_weights(rows)

    def gram_product(self, v, fit_intercept):
        """(Xa^T D Xa v, total weight) over the blocks (``loss.gram_product`` of each,
        standardised), runs of blocks on threads as ``sums`` takes them, the runs' parts
        added in the blocks' order."""
        spans = list(self._spans())

        def run(blocks) -> np.ndarray:
            product = np.zeros(len(v))
            for start, stop, keep, selected in blocks:
                product += gram_product(self.block(start, stop, keep), v, fit_intercept,
                                        self._take_weights(selected), n_threads=1)[0]
            return product

        # hashed text's blocks are CSR, whose products hold the GIL: threads would only queue,
        # each holding a product of a million features per run
        threads = 1 if self.table.text is not None else self._threads(spans, 1)
        product = np.zeros(len(v))
        for part in self._on_runs(run, spans, threads):
            product += part
        total = float(self.shape[0] if self._weights is None else np.sum(self._weights))
        return product, total

    def information(self, params, link):
        total = 0.0
        for X, _, weights in self.chunks():
            total = total + information(X, params, link.name, weights)
        return total

    def minibatch_epoch(self, step, params, state, batch_size, rng):
        """The blocks in a shuffled order, the rows shuffled within each block. The epoch
        copies the parameters and the optimiser's state once, and the blocks step the copies
        in place (hashed text: W is tens of MB, a block a few)."""
        spans, n_steps = list(self._spans()), 0
        params, state = np.array(params, dtype=np.float64, order="C"), copy.deepcopy(state)
        for index in rng.permutation(len(spans)):
            start, stop, keep, rows = spans[index]
            X = self.block(start, stop, keep)
            params, state, count = step.rows(params, state, X, self._target.take(rows),
                                             self._take_weights(rows), rng.permutation(X.shape[0]),
                                             batch_size, in_place=True)
            n_steps += count
        return params, state, n_steps


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
            stale = not source.is_file() or _meta_key(source, meta) != directory.name
            rows.append({"key": directory.name, "source": meta["source"],
                         "n_rows": meta["n_rows"], "bytes": size, "created": meta["created"],
                         "stale": stale})
    return rows


def _meta_key(source: Path, meta: dict) -> str:
    """The key the cache described by ``meta`` would have for ``source`` as it is now: the
    same settings (target, weight, read options, text) as when it was made."""
    text = meta.get("text")
    return cache_key(source, *meta["requested"],
                     ReadOptions.from_dict(meta.get("requested_read")),
                     None if text is None else TextSpec.from_dict(text))


def clear_caches(keys: list[str] | None = None) -> int:
    """Remove the named caches (all of them without names); returns how many were removed.
    The compiled kernels (``COMPILED_DIR``) stay: they are code, not data."""
    root = cache_root()
    removed = 0
    for directory in list(root.glob("*")) if root.is_dir() else []:
        if directory.name == COMPILED_DIR:
            continue
        if keys is None or directory.name in keys:
            shutil.rmtree(directory, ignore_errors=True)
            removed += not directory.name.startswith(".")
    return removed
