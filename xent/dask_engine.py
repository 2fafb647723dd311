"""Training on a Dask cluster with the same loss and gradient.

The data (a CSV or Parquet file, or a glob of them, read by dask.dataframe) are parsed
partition by partition on the workers by ``data.parse_block``, as a file read whole is, and the
raw partitions stay there, persisted: ``DaskTable`` is a ``sources.Table`` whose statistics are
summed partition by partition and whose sources (``DaskData``) are the partitions encoded,
split and standardised where they are. The client holds only the labels, sample weights and
missing rows (a few bytes a row), which the one split rule needs. Each evaluation sends the
parameters to the workers; every partition computes the sums of the one loss and gradient
(``loss.sums``) and the client adds them up, so the optimisers run unchanged on the client.

Without a scheduler address a LocalCluster is started on 127.0.0.1 and shut down at the end.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .data import (
    DEFAULT_READ,
    Codebook,
    EncodingPlan,
    RawBlock,
    ReadOptions,
    Schema,
    checked_header,
    class_order,
    delimiter,
    file_sha256,
    frame_schema,
    parse_block,
)
from .errors import DataError
from .files import (
    compression,
    decompression_failed,
    encoding_error,
    first_undecodable,
    open_bytes,
    read_failure,
)
from .inference import information
from .loss import Sums, gram_product, sums
from .preprocess import Preprocessing, Standardizer, Statistics, block_statistics
from .sources import SourceOptions, shuffled_batches
from .targets import Target, row_weights


def _dask():
    try:
        import dask.dataframe as dd
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise DataError("--engine dask needs dask: pip install 'xent[dask]'") from None
    return dd, Client, LocalCluster


@contextlib.contextmanager
def connect(scheduler: str | None = None, workers: int = 2, quiet: bool = False):
    """A client of the cluster at ``scheduler``, or of a LocalCluster of ``workers`` processes
    on 127.0.0.1 (one thread each) that is shut down afterwards. ``quiet``: Dask's own log
    lines (its warnings included; errors still show) are silenced, here and on the local
    workers."""
    import logging

    _, Client, LocalCluster = _dask()
    level = logging.ERROR if quiet else logging.WARNING
    for name in ("distributed", "dask"):
        logging.getLogger(name).setLevel(level)
    # the scheduler's shuffle logs each shuffle's start and end (the levels and classes are
    # gathered by one) as warnings: its workings, not the user's to act on
    logging.getLogger("distributed.shuffle").setLevel(logging.ERROR)
    if scheduler:
        try:
            _answers(scheduler)
            client = Client(scheduler, timeout="5s")
        except OSError as exc:
            raise DataError(f"cannot reach the Dask scheduler at {scheduler} ({exc}); start "
                            "one with `dask scheduler` and workers with `dask worker`") from None
        with client:
            yield client
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", processes=True,
                      silence_logs=level) as cluster, \
            Client(cluster) as client:
        client.run(_quiet_data_errors)
        yield client


#: the errors of a task that the client reports in one line (``_read_errors``, ``XentError``s)
_REPORTED = ("DataError(", "ConfigError(", "UnicodeDecodeError(", "ParserError(",
             "ValueError('Mismatched dtypes", 'ValueError("Mismatched dtypes', "EOFError(",
             "LZMAError(", "BadGzipFile(", "error('Error -3", "OSError('Invalid data stream")


class _DataErrorFilter:
    """Drops a local worker's "Compute Failed" record of a task that raised an error the
    client reports in one line (a mistake in the data or settings), and its heartbeat's
    failure while the cluster xent started is shut down after such an error (the scheduler,
    in xent's process, goes first); any other failure keeps its record (the worker's
    traceback)."""

    def filter(self, record) -> bool:
        message = str(record.msg)
        if message.startswith("Failed to communicate with scheduler during heartbeat"):
            return False
        failed = message.startswith("Compute Failed") and len(record.args) > 3
        return not (failed and str(record.args[3]).startswith(_REPORTED))


def _quiet_data_errors() -> None:
    """Run on each local worker (``Client.run``): it logs a task's failure with its
    traceback, and a data mistake needs none."""
    import logging

    logger = logging.getLogger("distributed.worker")
    if not any(isinstance(f, _DataErrorFilter) for f in logger.filters):
        logger.addFilter(_DataErrorFilter())


def _answers(scheduler: str, timeout: float = 5.0) -> None:
    """Raise the socket's error at once when a plain TCP scheduler address (``tcp://HOST:PORT``
    or ``HOST:PORT``) refuses a connection (a mistyped port, nothing started), rather than
    after Dask's own timeout and retries; other addresses are left to Dask."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(scheduler if "://" in scheduler else f"tcp://{scheduler}")
    try:
        host, port = url.hostname, url.port
    except ValueError:  # a port that is not a number: Dask says what is wrong with it
        return
    if url.scheme != "tcp" or not host or not port:
        return
    with socket.create_connection((host, port), timeout=timeout):
        pass


#: the bytes of a CSV each partition reads
BLOCK_BYTES = 64_000_000
#: ``files.compression``'s names, as dask (fsspec) names them
_DASK_COMPRESSION = {"gzip": "gzip", "bzip2": "bz2", "xz": "xz", "zip": "zip"}


def read_frame(source: str, read: ReadOptions = DEFAULT_READ):
    """(a dask DataFrame of a CSV or Parquet file, or of a glob of them; ``read`` resolved:
    the delimiter sniffed from the first file this machine can see)."""
    dd, _, _ = _dask()
    try:
        if source.lower().endswith((".parquet", ".pq")):
            return dd.read_parquet(source), read
        paths = sorted(glob.glob(source)) if "://" not in source else []
        if not paths and "://" not in source:
            raise DataError(f"{source}: no such file, nor files matching it as a pattern; give "
                            "a CSV or Parquet file, or a pattern such as 'parts/*.csv'")
        read = replace(read, sep=delimiter(Path(paths[0]), read) if paths else read.sep or ",")
        # a compressed file cannot be cut into blocks: one partition a file
        kind = compression(paths[0]) if paths else None
        blocks = {"compression": _DASK_COMPRESSION[kind], "blocksize": None} if kind else \
            {"blocksize": BLOCK_BYTES}
        with _read_errors(source, read):  # dask reads the first block here
            # a column of whole numbers with a missing value past the rows dask samples
            # would not fit the integer type the sample chose: read such columns as floats
            names = checked_header(Path(paths[0]), read.sep, read) if paths else None
            return dd.read_csv(source, assume_missing=True, **blocks,
                               **read.pandas(read.sep, names)), read
    except (OSError, ValueError) as exc:
        raise DataError(f"{source}: cannot read it with dask ({_dask_message(exc)})") from None


@contextlib.contextmanager
def _read_errors(source: str, read: ReadOptions):
    """The errors of reading CSV text on the workers (past the first block, which
    ``read_frame`` reads) as one-line DataErrors: the first file of ``source`` that does not
    decode or decompress, the line pandas could not split, the columns whose type the rows
    dask sampled chose wrongly."""
    try:
        yield
    except UnicodeDecodeError:
        for path in sorted(glob.glob(source)):
            if first_undecodable(Path(path), read.encoding):
                raise encoding_error(Path(path), read.encoding) from None
        raise DataError(f"{source}: not {read.encoding} text: name its encoding with "
                        "--encoding") from None
    except pd.errors.ParserError as exc:
        paths = glob.glob(source)
        within = "" if len(paths) == 1 and os.path.getsize(paths[0]) <= BLOCK_BYTES else \
            "; the line is counted from the start of one of its files' 64 MB blocks"
        raise DataError(f"{source}: malformed CSV ({_dask_message(exc)}{within})") from None
    except ValueError as exc:
        if not str(exc).startswith("Mismatched dtypes"):
            raise
        raise _text_past_the_sample(source, str(exc)) from None
    except Exception as exc:
        if not decompression_failed(exc):
            raise
        raise _damaged_file(source, exc) from None


def _damaged_file(source: str, exc: Exception) -> DataError:
    """The error for a compressed file of ``source`` that does not decompress to its end:
    the first such file, found by reading each to its end."""
    for path in sorted(glob.glob(source)):
        try:
            with open_bytes(path) as handle:
                while handle.read(1 << 20):
                    pass
        except Exception as found:
            failure = read_failure(path, found)
            if failure is not None:
                return failure
    return DataError(f"{source}: a compressed file is cut short or damaged ({exc})")


def _text_past_the_sample(source: str, message: str) -> DataError:
    """Dask's error for columns whose values past the rows it sampled (to choose each
    column's type) do not fit that type: in one line, naming the columns (from the
    ``dtype={'b': 'str'}`` dask's message suggests)."""
    import re

    suggested = message.split("dtype={", 1)[-1].split("}", 1)[0]
    columns = re.findall(r"'([^']*)':", suggested)
    named = f"column(s) {', '.join(repr(c) for c in columns)}" if columns else "a column"
    return DataError(f"{source}: {named} are numbers in the rows dask samples to choose the "
                     "columns' types, and hold text further down: if the text marks a missing "
                     "value (such as '?'), pass --na-values; else clean it, or train without "
                     "--engine dask, which reads every row before choosing")


def _dask_message(exc: Exception) -> str:
    """The cause in one of Dask's errors, on one line: Dask wraps a backend's error in
    "An error occurred while calling ...\nOriginal Message: <the cause>"."""
    text = str(exc)
    return " ".join(text.split("Original Message:")[-1].split())


# ---- what runs on the workers (plain functions of numpy/pandas data) ----------------------

def _parse_partition(frame: pd.DataFrame, schema: Schema, levels, classes, source: str,
                     first_line: int | None):
    """A partition's raw rows (``data.parse_block``), coded by the levels and classes of the
    whole data (fixed books: every partition gives the same codes). ``first_line``: the file
    line of its first row, known for the first partition only (Dask does not say where the
    others start: their errors count lines from the partition's start, and say so)."""
    books = [Codebook(lv, frozen=True) for lv in levels]
    try:
        return parse_block(frame, schema, books, Codebook(classes, frozen=True, labels=True),
                           source, first_line or 1)
    except DataError as exc:
        if first_line is not None:
            raise
        raise DataError(f"{exc} (lines counted from the start of one of the 64 MB blocks "
                        "Dask reads the data in)") from None


def _raw_summary(block: RawBlock, schema: Schema):
    """What the client keeps of a partition: labels, sample weights, missing rows and the
    missing values of each column."""
    return block.labels, block.weights, block.missing, block.missing_counts(schema)


def _partition_statistics(block: RawBlock, keep, n_classes, n_levels):
    return block_statistics(block.numeric[keep], block.codes[keep], block.labels[keep],
                            n_classes, n_levels)


def _prepared(block: RawBlock, keep, plan: EncodingPlan, standardizer: Standardizer | None,
              dtype):
    """The kept rows of a raw partition, encoded, standardised and stored in ``dtype``:
    (X, labels[, sample weights])."""
    X = plan.encode(block.numeric[keep], block.codes[keep])
    if standardizer is not None:
        X = standardizer.transform(X, copy=False)  # encode gave a new array
    X = np.ascontiguousarray(X, dtype=dtype)
    part = (X, block.labels[keep].astype(np.intp))
    return part if block.weights is None else (*part, block.weights[keep])


def _partition_digest(frame: pd.DataFrame) -> bytes:
    """A partition's rows, hashed (for data that only the workers can read)."""
    return hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy()).digest()


def aligned(part):
    """A partition whose array is aligned in memory. Arrays that arrive over the network can
    start at an odd address inside the message's buffer, and numpy and BLAS run about ten times
    slower on them; ``scatter`` partitions through this once (client.submit(aligned, future))."""
    X, *rest = part
    return (X if X.flags.aligned else np.array(X), *rest)


def _row_weights(labels, rest, class_weight):
    """A partition's per-row weights (``targets.row_weights``): its sample weights (an
    optional third element) times the class weights of its rows; None when it has neither."""
    return row_weights(Target(0, labels=labels), rest[0] if rest else None, class_weight)


def _partition_sums(part, params, link, n_classes, smoothing, class_weight, **options):
    X, labels, *rest = aligned(part)
    if len(labels) == 0:
        return Sums.zero(params.shape[1], X.shape[1])
    target = Target(n_classes, labels=labels, smoothing=smoothing)
    return sums(params, X, target, link, _row_weights(labels, rest, class_weight), **options)


def _partition_gram(part, v, fit_intercept, class_weight, n_threads=None):
    """(Xa^T D Xa v, sum of the weights) over one partition: D the weights of its rows; on
    ``n_threads`` threads (the worker's, ``_on_worker``)."""
    X, labels, *rest = aligned(part)
    return gram_product(X, v, fit_intercept, _row_weights(labels, rest, class_weight),
                        n_threads=n_threads)


def _partition_information(part, params, link_name, class_weight):
    X, labels, *rest = aligned(part)
    return information(X, params, link_name, _row_weights(labels, rest, class_weight))


def _on_worker(parts, function, *args, **options):
    """``function(part, *args, **options)`` for each partition one worker holds, in turn.

    A worker is given ``nthreads`` threads for its tasks; ``sums`` and ``gram_product`` would
    otherwise start one thread per core of the machine in every worker process on it."""
    if "n_threads" in options and options["n_threads"] is None:
        from dask.distributed import get_worker

        options = dict(options, n_threads=get_worker().state.nthreads)
    return [function(part, *args, **options) for part in parts]


def _partition_steps(part, step, params, state, order, batch_size, n_classes, smoothing,
                     class_weight):
    """``step(params, state, batches)`` over one partition's rows in the order ``order``."""
    X, labels, *rest = aligned(part)
    target = Target(n_classes, labels=labels, smoothing=smoothing)
    batches = shuffled_batches(X, target, _row_weights(labels, rest, class_weight), order,
                               batch_size)
    return step(params, state, batches)


def _row_count(part):
    return len(part[1])


def _moved(part):
    return part


# ---- the client side ----------------------------------------------------------------------

@dataclass
class DaskData:
    """Persisted partitions (X, labels[, sample weights]) on the workers: a
    ``sources.RowSource``. ``labels`` and ``sample_weight`` are also kept here, in the
    partitions' order (n_samples,): the client needs them for the target and its entropy."""

    client: object
    parts: list
    n_features: int
    labels: np.ndarray
    n_classes: int
    smoothing: float = 0.0
    class_weight: np.ndarray | None = None
    sample_weight: np.ndarray | None = None
    dtype: np.dtype = field(default=np.dtype(np.float64))  # the partitions' dtype
    _by_worker: list | None = field(default=None, init=False, repr=False)
    _part_rows: list | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        self.parts = list(self.parts)  # the balancing in `_groups` replaces moved partitions

    @property
    def shape(self):
        return len(self.labels), self.n_features

    @property
    def target(self) -> Target:
        return Target(self.n_classes, labels=self.labels, smoothing=self.smoothing)

    @property
    def weights(self) -> np.ndarray | None:
        """(n_samples,) the weight of each row: sample weight times class weight, or None."""
        return _row_weights(self.labels, [] if self.sample_weight is None
                            else [self.sample_weight], self.class_weight)

    def _groups(self) -> list[tuple[str, list[int]]]:
        """The partitions (their indices) by the worker that holds them, asked once: one task
        per worker per evaluation costs far less scheduling than one per partition.

        Partitions are first spread so that every worker holds about the same number of bytes
        (each evaluation waits for the slowest worker): a partition stays where it is unless
        its holder already has its share, and is otherwise moved, once, to the worker that
        holds the least."""
        if self._by_worker is None:
            from dask.distributed import wait

            wait(self.parts)  # a partition still being made has no holder yet
            workers = sorted(self.client.scheduler_info()["workers"])
            holders = self.client.who_has(self.parts)
            sizes = self.client.nbytes([part.key for part in self.parts], summary=False)
            share = sum(sizes.values()) / len(workers)
            load = dict.fromkeys(workers, 0)
            by_worker: dict[str, list[int]] = {w: [] for w in workers}
            order = sorted(range(len(self.parts)), key=lambda i: -sizes[self.parts[i].key])
            for i in order:
                part, size = self.parts[i], sizes[self.parts[i].key]
                holder = min(holders[part.key], key=load.__getitem__, default=None)
                if holder is None or load[holder] + size > 1.05 * share:
                    least = min(workers, key=load.__getitem__)
                    if holder is None or load[least] < load[holder]:
                        holder = least
                        self.parts[i] = self.client.submit(_moved, part, workers=[holder],
                                                           allow_other_workers=True,
                                                           pure=False)
                load[holder] += size
                by_worker[holder].append(i)
            wait(self.parts)
            self._by_worker = [(w, sorted(ix)) for w, ix in by_worker.items() if ix]
        return self._by_worker

    def _map(self, function, *args, **options) -> list:
        """``function(partition, *args, **options)`` for every partition, where it is held;
        the results in the partitions' order. The placement is a preference: should a worker
        leave, the scheduler recomputes its partitions elsewhere and runs the task there."""
        groups = self._groups()
        futures = [self.client.submit(_on_worker, [self.parts[i] for i in indices], function,
                                      *args, **options, workers=[worker],
                                      allow_other_workers=True, pure=False)
                   for worker, indices in groups]
        results = [None] * len(self.parts)
        for (_, indices), outputs in zip(groups, self.client.gather(futures), strict=True):
            for i, output in zip(indices, outputs, strict=True):
                results[i] = output
        return results

    def minibatch_epoch(self, step, params, state, batch_size: int, rng: np.random.Generator):
        """One epoch of mini-batch steps, ``step(params, state, batches)`` (``train.batch_steps``)
        run on the worker that holds each partition in turn: the partitions in a shuffled
        order, the rows shuffled within each, as streamed blocks are. Only the parameters and
        the optimiser's state travel. Returns (params, state, number of steps)."""
        if self._part_rows is None:  # asked once, where the partitions are
            self._part_rows = self._map(_row_count)
        holder = {i: worker for worker, indices in self._groups() for i in indices}
        nonempty = [i for i, rows in enumerate(self._part_rows) if rows]
        n_steps = 0
        for i in (nonempty[j] for j in rng.permutation(len(nonempty))):
            order = rng.permutation(self._part_rows[i])
            future = self.client.submit(_partition_steps, self.parts[i], step, params, state,
                                        order, batch_size, self.n_classes, self.smoothing,
                                        self.class_weight, workers=[holder[i]],
                                        allow_other_workers=True, pure=False)
            params, state, count = future.result()
            n_steps += count
        return params, state, n_steps

    def sums(self, params, link, *, with_grad=True, compute_dtype=None) -> Sums:
        parts = self._map(_partition_sums, params, link, self.n_classes, self.smoothing,
                          self.class_weight, with_grad=with_grad, compute_dtype=compute_dtype,
                          n_threads=None)
        totals = parts[0]
        for part in parts[1:]:  # added in the partitions' order: the same wherever they are
            totals = totals + part  # (not in place: gathered arrays may be read-only)
        return totals

    def information(self, params, link):
        """The information summed over the partitions, where they are."""
        return sum(self._map(_partition_information, params, link.name, self.class_weight))

    def gram_product(self, v, fit_intercept):
        """(Xa^T D Xa v, total weight) summed over the partitions, for the Lipschitz bound."""
        results = self._map(_partition_gram, v, fit_intercept, self.class_weight,
                            n_threads=None)
        return sum(r[0] for r in results), sum(r[1] for r in results)


def data_sha256(source: str, client, frame) -> str:
    """The data's SHA-256: of the file's bytes for one file this machine can read (the hash
    in-memory training records), of the files' hashes in name order for a glob of them, and
    of the partitions' row hashes, computed on the workers, for data only they can read."""
    paths = sorted(glob.glob(source)) if "://" not in source else []
    if paths and all(Path(p).is_file() for p in paths):
        if len(paths) == 1:
            return file_sha256(paths[0])
        digest = hashlib.sha256()
        for path in paths:
            digest.update(file_sha256(path).encode())
        return digest.hexdigest()
    digest = hashlib.sha256()
    for part in client.gather([client.submit(_partition_digest, p)
                               for p in client.compute(frame.to_delayed())]):
        digest.update(part)
    return digest.hexdigest()


@dataclass
class DaskTable:
    """Raw partitions (``data.RawBlock``s) persisted on the workers: a ``sources.Table``.
    The labels, sample weights and missing rows are gathered to the client, in the
    partitions' order; ``offsets`` are where each partition's rows start."""

    client: object
    parts: list
    offsets: np.ndarray
    name: str
    schema: Schema
    levels: list[list[str]]
    classes: list
    labels: np.ndarray
    sample_weight: np.ndarray | None
    missing: np.ndarray
    missing_counts: dict[str, int]
    sha256: str | None
    read: ReadOptions = DEFAULT_READ
    sparse: bool = False
    text_spec: None = None  # text columns are read in memory only (api.check_settings)
    notes: tuple[str, ...] = ()

    @property
    def n_rows(self) -> int:
        return len(self.labels)

    def _masks(self, selection: np.ndarray) -> list[np.ndarray]:
        return [selection[a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:], strict=True)]

    def statistics(self, selection, medians=False) -> Statistics:
        if medians:
            raise DataError("--impute median is not available with --engine dask: use mean "
                            "or drop")
        n_levels = [len(levels) for levels in self.levels]
        futures = [self.client.submit(_partition_statistics, part, keep, len(self.classes),
                                      n_levels)
                   for part, keep in zip(self.parts, self._masks(selection), strict=True)]
        parts = self.client.gather(futures)
        total = parts[0]
        for part in parts[1:]:  # merged in the partitions' order: the same wherever they are
            total = total + part
        return total

    def sources(self, train, validation, prep: Preprocessing, options: SourceOptions):
        plan = EncodingPlan(self.schema, self.levels, prep.encoder)
        dtype = np.dtype(options.dtype)
        n_features = len(prep.feature_names)

        def view(selection, smoothing, class_weight):
            parts = [self.client.submit(_prepared, part, keep, plan, prep.standardizer, dtype)
                     for part, keep in zip(self.parts, self._masks(selection), strict=True)]
            weights = None if self.sample_weight is None else self.sample_weight[selection]
            # the futures keep the partitions in the workers' memory while they are held
            return DaskData(self.client, parts, n_features, self.labels[selection],
                            len(self.classes), smoothing, class_weight, weights, dtype)

        val = view(validation, 0.0, None) if validation.any() else None
        return view(train, options.smoothing, prep.class_weight), val


def open_table(client, source: str, target: str | None, weight: str | None,
               read: ReadOptions = DEFAULT_READ) -> DaskTable:
    """Read the data on the workers (by ``read``): the schema from the frame's dtypes, the
    levels and classes of the whole data, then every partition parsed where it is and
    persisted."""
    import dask

    frame, read = read_frame(source, read)
    schema = frame_schema(frame, target, weight, source, ignore=read.ignore)
    with _read_errors(source, read):  # the first pass over every row
        levels, raw_classes = dask.compute(
            [frame[c].dropna().astype(str).unique() for c in schema.categorical],
            frame[schema.target].dropna().unique())
    levels = [sorted(set(lv)) for lv in levels]
    classes = class_order(list(raw_classes))
    parts = [client.submit(_parse_partition, part, schema, levels, classes, source,
                           None if i else read.first_line)
             for i, part in enumerate(client.compute(frame.to_delayed()))]
    summaries = client.gather([client.submit(_raw_summary, part, schema) for part in parts])
    labels = [s[0] for s in summaries]
    offsets = np.cumsum([0] + [len(lab) for lab in labels])
    weights = np.concatenate([s[1] for s in summaries]) if schema.weight else None
    counts = dict.fromkeys(schema.columns, 0)
    for summary in summaries:
        for column, n in summary[3].items():
            counts[column] += n
    return DaskTable(client, parts, offsets, source, schema, levels, classes,
                     np.concatenate(labels).astype(np.intp), weights,
                     np.concatenate([s[2] for s in summaries]), counts,
                     data_sha256(source, client, frame), read)




# ---- dask arrays (the estimator) ----------------------------------------------------------

def current_client():
    """The dask.distributed Client this process made last (``Client(...)``), or a ValueError
    that says to make one."""
    try:
        from dask.distributed import default_client
    except ImportError:
        raise ImportError("dask arrays need dask.distributed: pip install 'xent[dask]'") from None
    try:
        return default_client()
    except ValueError:
        raise ValueError("training on dask arrays needs a dask.distributed Client: create one "
                         "first, e.g. Client() for a local cluster or "
                         "Client('tcp://scheduler:8786')") from None


def is_dask_collection(obj) -> bool:
    """Whether ``obj`` is a dask array, DataFrame or Series (without importing dask)."""
    import sys

    return "dask" in sys.modules and sys.modules["dask"].is_dask_collection(obj)


def _frame_types() -> tuple[type, ...]:
    import dask.dataframe as dd

    return dd.DataFrame, dd.Series


def as_dask_array(obj):
    """(dask array, column names or None) of a dask array, DataFrame or Series (anything else,
    numpy for one, becomes a one-block dask array); chunk sizes known, so that rows can be
    matched to the labels."""
    columns = None
    if not is_dask_collection(obj):
        import dask.array as da

        obj = da.from_array(np.asarray(obj))
    elif isinstance(obj, _frame_types()):
        if obj.ndim == 2:
            columns = [str(c) for c in obj.columns]
        with warnings.catch_warnings():  # string labels become an object array: expected
            warnings.filterwarnings("ignore", "Dask currently has limited support")
            obj = obj.to_dask_array(lengths=True)
    elif any(np.isnan(size) for sizes in obj.chunks for size in sizes):
        obj = obj.compute_chunk_sizes()
    return obj, columns


def _array_part(X, labels, sample_weight=None):
    X = np.ascontiguousarray(X, dtype=np.float64)
    if not np.isfinite(X).all():
        raise ValueError("Input X contains NaN or infinity: impute or drop those rows first")
    part = (X, np.asarray(labels, dtype=np.intp))
    return part if sample_weight is None else (*part, np.asarray(sample_weight, np.float64))


def array_data(client, X, y, classes: np.ndarray, labels: np.ndarray, sample_weight=None,
               smoothing: float = 0.0, class_weight: np.ndarray | None = None) -> DaskData:
    """Persist the dask array X (n_samples, n_features) with its labels on the workers, one
    partition per block of rows.

    y (n_samples,) is a dask array of the class values; ``labels`` are their indices in the
    sorted ``classes`` (computed on the client: the target needs them). ``sample_weight`` is
    None or (n_samples,), numpy; it travels with the rows."""
    import dask
    import dask.array as da
    from dask.distributed import wait

    X = X.rechunk({1: -1})  # whole rows in every block
    row_chunks = X.chunks[0]
    label_blocks = y.rechunk((row_chunks,)).map_blocks(_indices, classes, dtype=np.intp)
    columns = [X.to_delayed().ravel(), label_blocks.to_delayed().ravel()]
    if sample_weight is not None:
        columns.append(da.from_array(sample_weight, chunks=(row_chunks,)).to_delayed().ravel())
    parts = client.compute([dask.delayed(_array_part)(*blocks)
                            for blocks in zip(*columns, strict=True)])
    wait(parts)
    for part in parts:
        if part.status == "error":
            part.result()  # raises the worker's error here
    return DaskData(client, parts, X.shape[1], labels, len(classes), smoothing, class_weight,
                    sample_weight)


def _indices(values, classes):
    return np.searchsorted(classes, values)
