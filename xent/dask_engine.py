"""Training on a Dask cluster with the same loss and gradient.

The data (a CSV or Parquet file, or a glob of them, read by dask.dataframe) are encoded,
split and standardised partition by partition on the workers, and the partitions stay there,
persisted. Each evaluation sends the parameters to the workers; every partition computes the
sums of the one loss and gradient (``loss.sums``) and the client adds them up, so the optimisers
run unchanged on the client. Encoding, imputation and standardisation are fitted across all
partitions first, so the model is the one in-memory training gives.

Without a scheduler address a LocalCluster is started on 127.0.0.1 and shut down at the end.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .data import FeatureEncoder, class_order, encode_labels, missing_values_error
from .errors import DataError
from .links import get_link
from .loss import Sums, Target, balanced_class_weight, shuffled_batches, sums
from .preprocess import Standardizer, merge_moments
from .stream import validation_mask


def _dask():
    try:
        import dask.dataframe as dd
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise DataError("--engine dask needs dask: pip install 'xent[dask]'") from None
    return dd, Client, LocalCluster


@contextlib.contextmanager
def connect(scheduler: str | None = None, workers: int = 2):
    """A client of the cluster at ``scheduler``, or of a LocalCluster of ``workers`` processes
    on 127.0.0.1 (one thread each) that is shut down afterwards."""
    _, Client, LocalCluster = _dask()
    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except OSError as exc:
            raise DataError(f"cannot reach the Dask scheduler at {scheduler} ({exc}); start "
                            "one with `dask scheduler` and workers with `dask worker`") from None
        with client:
            yield client
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", processes=True) as cluster, \
            Client(cluster) as client:
        yield client


def read_frame(source: str):
    """A dask DataFrame of a CSV or Parquet file, or of a glob of them."""
    dd, _, _ = _dask()
    try:
        if source.lower().endswith((".parquet", ".pq")):
            return dd.read_parquet(source)
        return dd.read_csv(source, encoding="utf-8-sig", blocksize="64MB")
    except (OSError, ValueError) as exc:
        raise DataError(f"{source}: cannot read it with dask ({exc})") from None


# ---- what runs on the workers (plain functions of numpy/pandas data) ----------------------

def _encode(frame: pd.DataFrame, encoder: FeatureEncoder, target: str, classes: list):
    X, kept = encoder.transform(frame, "partition")
    labels = encode_labels(frame[target].iloc[kept].to_numpy(), classes, "partition")
    return X, labels


def _labels_of(part):
    return part[1]


def _take(part, mask: np.ndarray):
    X, labels = part
    return np.ascontiguousarray(X[mask]), labels[mask]


def _moments(part):
    X, _ = part
    n = len(X)
    mean = X.mean(axis=0) if n else np.zeros(X.shape[1])
    return n, mean, ((X - mean) ** 2).sum(axis=0)


def _standardise(part, standardizer: Standardizer):
    X, labels = part
    return standardizer.transform(X), labels


def aligned(part):
    """A partition whose array is aligned in memory. Arrays that arrive over the network can
    start at an odd address inside the message's buffer, and numpy and BLAS run about ten times
    slower on them; ``scatter`` partitions through this once (client.submit(aligned, future))."""
    X, *rest = part
    return (X if X.flags.aligned else np.array(X), *rest)


def _row_weights(labels, rest, class_weight):
    """A partition's per-row weights: its sample weights (an optional third element) times
    the class weights of its rows; None when it has neither."""
    weights = rest[0] if rest else None
    if class_weight is not None:
        weights = class_weight[labels] if weights is None else weights * class_weight[labels]
    return weights


def _partition_sums(part, params, link_name, n_classes, smoothing, class_weight, **options):
    X, labels, *rest = aligned(part)
    target = Target(n_classes, labels=labels, smoothing=smoothing)
    weights = _row_weights(labels, rest, class_weight)
    if len(labels) == 0:
        k = params.shape[1]
        return Sums(0.0, 0, np.zeros((k, X.shape[1])), np.zeros(k), 0, 0.0)
    return sums(params, X, target, get_link(link_name, n_classes), weights, **options)


def _partition_gram(part, v, fit_intercept, class_weight):
    """(Xa^T D Xa v, sum of the weights) over one partition: D the weights of its rows."""
    X, labels, *rest = aligned(part)
    weights = _row_weights(labels, rest, class_weight)
    d = X.shape[1]
    u = X @ v[:d] + (v[d] if fit_intercept else 0.0)
    if weights is not None:
        u *= weights
    out = np.empty(d + 1)
    out[:d] = X.T @ u
    out[d] = u.sum() if fit_intercept else 0.0
    return out, float(len(X) if weights is None else weights.sum())


def _on_worker(parts, function, *args, **options):
    """``function(part, *args, **options)`` for each partition one worker holds, in turn.

    A worker is given ``nthreads`` threads for its tasks; ``sums`` would otherwise start one
    thread per core of the machine in every worker process on it."""
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
    """Persisted partitions (X, labels[, sample weights]) on the workers, as a source for
    ``loss.evaluate``. ``labels`` and ``sample_weight`` are also kept here, in the partitions'
    order (n_samples,): the client needs them for the target and its entropy."""

    client: object
    parts: list
    n_features: int
    labels: np.ndarray
    n_classes: int
    smoothing: float = 0.0
    class_weight: np.ndarray | None = None
    sample_weight: np.ndarray | None = None
    dtype = np.dtype(np.float64)  # the partitions' dtype
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

    def steps(self, step, params, state, batch_size: int, rng: np.random.Generator):
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

    def sums(self, params, link, **options) -> Sums:
        parts = self._map(_partition_sums, params, link.name, self.n_classes, self.smoothing,
                          self.class_weight, **options)
        totals = parts[0]
        for part in parts[1:]:  # added in the partitions' order: the same wherever they are
            totals = totals + part
        return totals

    def gram_product(self, v, fit_intercept):
        """(Xa^T D Xa v, total weight) summed over the partitions, for the Lipschitz bound."""
        results = self._map(_partition_gram, v, fit_intercept, self.class_weight)
        return sum(r[0] for r in results), sum(r[1] for r in results)


def prepare(client, source: str, target: str | None, impute: str | None, val_fraction: float,
            seed: int, standardize: bool, smoothing: float, balanced: bool):
    """Read, encode, split and standardise the data on the workers. Returns (train DaskData,
    val DaskData, encoder, standardizer, classes, target column)."""
    frame = read_frame(source)
    columns = [str(c) for c in frame.columns]
    target = target or columns[-1]
    if target not in columns:
        raise DataError(f"{source}: no target column {target!r}; the columns are {columns}")
    features = [c for c in columns if c != target]
    categorical = [c for c in features if not (pd.api.types.is_numeric_dtype(frame[c].dtype)
                                               or pd.api.types.is_bool_dtype(frame[c].dtype))]
    dd, _, _ = _dask()
    import dask

    levels, raw_classes, missing, means = dask.compute(
        [frame[c].dropna().astype(str).unique() for c in categorical],
        frame[target].dropna().unique(), frame.isna().sum(),
        frame[[c for c in features if c not in categorical]].mean())
    classes = class_order(list(raw_classes))
    if len(classes) < 2:
        raise DataError(f"{source}: only one class in the labels; a classifier needs two")
    missing = {c: int(n) for c, n in missing.items() if n and c != target}
    fill = {}
    if missing and impute is None:
        raise missing_values_error(source, missing, "mean|drop")
    if impute == "median":
        raise DataError("--impute median is not available with --engine dask: use mean or drop")
    if impute == "mean":
        fill = {c: float(means[c]) for c in missing if c not in categorical}
        fill.update({c: frame[c].mode().compute().astype(str).iloc[0]
                     for c in missing if c in categorical})
    encoder = FeatureEncoder(tuple(features),
                             {c: tuple(sorted(lv)) for c, lv in zip(categorical, levels,
                                                                   strict=True)},
                             fill, impute)
    parts = [client.compute(part) for part in frame.to_delayed()]
    encoded = [client.submit(_encode, part, encoder, target, classes) for part in parts]
    labels = client.gather([client.submit(_labels_of, part) for part in encoded])
    offsets = np.cumsum([0] + [len(lab) for lab in labels])
    val = validation_mask(int(offsets[-1]), val_fraction, seed)
    train_parts, val_parts = [], []
    for i, part in enumerate(encoded):
        mask = val[offsets[i]:offsets[i + 1]]
        train_parts.append(client.submit(_take, part, ~mask))
        val_parts.append(client.submit(_take, part, mask))
    del encoded, parts
    all_labels = np.concatenate(labels)
    standardizer = None
    if standardize:
        moments = client.gather([client.submit(_moments, part) for part in train_parts])
        count, mean, m2 = 0, 0.0, 0.0
        for moment in moments:
            count, mean, m2 = merge_moments((count, mean, m2), moment)
        std = np.sqrt(m2 / count)
        standardizer = Standardizer(mean, np.where(std > 0, std, 1.0))
        train_parts = [client.submit(_standardise, p, standardizer) for p in train_parts]
        val_parts = [client.submit(_standardise, p, standardizer) for p in val_parts]
    train_labels, val_labels = all_labels[~val], all_labels[val]
    class_weight = balanced_class_weight(train_labels, len(classes)) if balanced else None
    n_features = len(encoder.feature_names)
    # the futures keep the partitions in the workers' memory for as long as they are held
    train = DaskData(client, train_parts, n_features, train_labels, len(classes), smoothing,
                     class_weight)
    validation = DaskData(client, val_parts, n_features, val_labels, len(classes))
    return train, validation, encoder, standardizer, classes, target


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


def as_dask_array(obj):
    """(dask array, column names or None) of a dask array, DataFrame or Series (anything else,
    numpy for one, becomes a one-block dask array); chunk sizes known, so that rows can be
    matched to the labels."""
    columns = None
    if not is_dask_collection(obj):
        import dask.array as da

        obj = da.from_array(np.asarray(obj))
    elif hasattr(obj, "to_dask_array"):  # a dask DataFrame or Series
        if getattr(obj, "ndim", 1) == 2:
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
