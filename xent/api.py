"""The Python API: ``train(config) -> Run``, ``evaluate(model, data)``, ``predict(model, data)``.

This is the orchestration the command line and the config files sit on, one route for every
kind of data:

    open_table (in memory, streamed or Dask: decided here, once)
      -> split_rows (one stratified rule)  -> statistics of the training rows (one pass)
      -> fit_preprocessing (one function)  -> the table's RowSources  -> train.fit
      -> the model

Nothing here prints or parses options; notes for the user go to a ``notify`` callback.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from . import data as data_mod
from .config import TEXT_DEFAULTS, Config, DataConfig
from .data import Dataset, ReadOptions
from .diagnostics import diagnose
from .errors import ConfigError, DataError, ModelFileError
from .files import codec_name, text_size
from .links import get_link
from .loss import Objective, penalised
from .memory import memory_budget
from .metrics import (
    accuracy,
    brier_score,
    calibration_bins,
    confusion_matrix,
    expected_calibration_error,
    log_loss,
    per_class_scores,
    prior_log_loss,
)
from .model import Model
from .preprocess import Preprocessing, check_missing, fit_preprocessing, split_masks
from .sources import MemoryTable, SourceOptions, Table
from .text import (
    FASTTEXT_TEXT,
    TextSpec,
    is_fasttext,
    parse_ngrams,
)
from .threads import use_threads
from .train import Checkpoint, FitResult, History, Hooks, Solver, Stopping, fit


@dataclass
class Run:
    """What one training run produced."""

    config: Config
    model: Model
    history: History
    summary: dict
    fit: FitResult = field(repr=False)
    inference: dict | None = None  # the coefficient table, when asked for


def versions() -> dict[str, str]:
    """Versions of xent and the libraries that decide its numbers (read from the installed
    packages' metadata: importing pandas and scikit-learn only to ask would cost ~100 MB)."""
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    def installed(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {"xent": __version__, "numpy": np.__version__, "scipy": installed("scipy"),
            "pandas": installed("pandas"), "scikit-learn": installed("scikit-learn")}


def data_file(config: Config) -> Path | None:
    """The local data file ``config`` names, by its absolute path; None for none, built-in
    data, a glob of files or a remote address (Dask's)."""
    source = config.data.source
    if not source or data_mod.is_builtin(source) or "*" in source or "://" in source:
        return None
    return Path(source).resolve()


def with_absolute_paths(config: Config) -> Config:
    """``config`` with a data file named by its absolute path, so that the config.toml saved
    in a run directory finds the data from wherever it is read."""
    path = data_file(config)
    if path is None:
        return config  # left as given
    return replace(config, data=replace(config.data, source=str(path)))


def needs_streaming(config: Config) -> bool:
    """Whether a data file is too big to train on in memory: parsed, a CSV takes several times
    its text's size (float64 values, pandas' objects, the standardised copy); 4x is the
    estimate. A compressed file's text is estimated (``files.text_size``)."""
    source = config.data.source
    if config.data.stream or not source or data_mod.is_builtin(source):
        return False
    path = Path(source)
    if not path.is_file() or data_mod.is_libsvm(path) or data_mod.is_numpy_file(path):
        return False  # read whole (sparse) or memory-mapped
    return 4 * text_size(path) > memory_budget()


def route(config: Config, notify=None) -> Config:
    """``config`` resolved for a run: its data file named by its absolute path (so that the
    model and config.toml are the same from any directory) and the choice of in-memory or
    streamed training made: a file too big to train on in memory streams (``notify`` hears
    why). Dask data stay on Dask."""
    config = with_absolute_paths(config)
    check_settings(config)
    if config.data.engine != "dask" and needs_streaming(config):
        config = replace(config, data=replace(config.data, stream=True))
        if notify is not None:
            notify(f"note: {config.data.source} is too big to train on in memory (budget "
                   f"{memory_budget() / 1e9:.1f} GB): streaming it (--stream)")
    return config


def check_encoded_size(table: Table, prep: Preprocessing) -> None:
    """Dense data encoded in memory (each level of a categorical column a feature) must fit in
    ``memory_budget``: ``route`` judged the file by its size, and a column of identifiers,
    one level a row, makes n rows n features wide (50,000 rows: 20 GB). Else a ``DataError``
    naming the widest column, and --stream, which encodes a block of rows at a time. Numeric
    columns alone with nothing to fill are used as they are (``EncodingPlan.plain``: a
    float32 .npy of embeddings, say), and make nothing new."""
    plan = data_mod.EncodingPlan(table.schema, table.levels, prep.encoder)
    if plan.plain:
        return
    n_features = plan.n_features
    encoded = 8 * table.n_rows * n_features  # float64, before any narrowing
    budget = memory_budget()
    if encoded <= budget:
        return
    message = (f"{table.name}: encoded, the data would take {encoded / 1e9:.3g} GB in memory "
               f"({table.n_rows:,} rows x {n_features:,} features), more than the "
               f"{budget / 1e9:.3g} GB at hand")
    if table.schema.categorical:
        widest = max(range(len(table.levels)), key=lambda j: len(table.levels[j]))
        levels = len(table.levels[widest])
        message += (f"; column {table.schema.categorical[widest]!r} alone is {levels:,} of "
                    "the features (one a level)")
        if levels > table.n_rows // 2:
            message += (": nearly a level a row, like an identifier: if it is one, leave it "
                        f"out with --ignore {table.schema.categorical[widest]!r}")
    raise DataError(message + "; or train with --stream, which encodes a block of rows at a time")


def check_settings(config: Config) -> None:
    """Settings that are each valid but do not go together are a ``ConfigError`` (exit 2)
    naming both, before any data are read or cached."""
    d, o = config.data, config.optim
    read_options(d)  # its own checks: the thousands separator, the encoding, ...
    if o.patience and d.val_fraction == 0:
        raise ConfigError("optim.patience (early stopping) watches the validation loss, and "
                          "data.val_fraction is 0: give --val-fraction > 0 or drop --patience")
    out_of_memory = "--stream" if d.stream else "--engine dask" if d.engine == "dask" else None
    if out_of_memory and d.impute == "median":
        raise ConfigError(f"--impute median needs each whole column in memory; with "
                          f"{out_of_memory} use --impute mean or drop")
    if config.optim.device != "cpu":
        if out_of_memory:
            raise ConfigError(f"--device {config.optim.device} trains on rows held in memory; "
                              f"drop {out_of_memory}")
        from .device import namespace

        namespace(config.optim.device, config.optim.tf32)  # a GPU and CuPy, or the error
    if d.engine == "dask" and text_spec(d) is not None:
        raise ConfigError("text columns are hashed in memory or streamed (--stream); drop "
                          "--engine dask")
    if d.stream and d.engine == "dask":
        raise ConfigError("--stream and --engine dask are two ways to train on large data: "
                          "choose one")
    if d.stream and data_mod.is_builtin(d.source):
        raise ConfigError(f"{d.source} is small and built in: train it without --stream")
    path = Path(d.source)
    if data_mod.is_numpy_file(path) and (out_of_memory or text_spec(d) is not None):
        raise ConfigError(f"{d.source}: numpy files are memory-mapped and read whole; drop "
                          f"{out_of_memory or '--text'}")
    if d.labels and not data_mod.is_numpy_file(path):
        raise ConfigError(f"--labels: for a .npy of features, and {d.source} is not one")
    libsvm = path.is_file() and data_mod.is_libsvm(path)
    if d.stream and libsvm:
        raise ConfigError(f"{d.source}: LIBSVM files are read whole (they stay sparse); drop "
                          "--stream")
    _check_table_options(d, path, libsvm)
    if d.libsvm_base != "auto" and path.is_file() and not libsvm:
        raise ConfigError(f"--zero-based/--one-based: for LIBSVM files, and {d.source} is not "
                          "one")


def _check_table_options(d: DataConfig, path: Path, libsvm: bool) -> None:
    """Options of a table's columns and text, with data that are no such table: a usage
    error. A Parquet file's columns may be ignored, but it stores typed values, not text."""
    text_options = [name for name, value in (("--sep", d.sep), ("--na-values", d.na_values),
                                             ("--thousands", d.thousands),
                                             ("--decimal", d.decimal != "."),
                                             ("--encoding", codec_name(d.encoding) != "utf-8"),
                                             ("--no-header", d.no_header))
                    if value]
    named = text_options + (["--ignore"] if d.ignore else [])
    not_a_table = libsvm or data_mod.is_builtin(d.source) or data_mod.is_numpy_file(path) or \
        (path.is_file() and is_fasttext(path))
    if named and not_a_table:
        raise ConfigError(f"{', '.join(named)}: for CSV files, and {d.source} is not one")
    if text_options and data_mod.is_parquet(path):
        raise ConfigError(f"{', '.join(text_options)}: for CSV files; a Parquet file stores "
                          "typed values, not text to read")


def delimiter_option(text: str) -> str | None:
    """A CSV delimiter as typed: one character, "tab" or a backslash-t (as a shell passes
    it) for a tab; empty for none given (sniffed)."""
    sep = "\t" if text in ("tab", "\\t") else text
    if len(sep) > 1:
        raise ConfigError(f"the delimiter (data.sep, --sep) must be one character, got {text!r}")
    return sep or None


def read_options(data: DataConfig) -> ReadOptions:
    """How data files are read (``data.ReadOptions``) from the data settings; a thousands
    separator is one character other than the decimal mark, missing-value strings and the
    columns to ignore comma-separated lists."""
    if len(data.thousands) > 1:
        raise ConfigError(f"data.thousands must be one character, got {data.thousands!r}")
    if data.thousands == data.decimal:  # pandas would read 5.1 as 51 without a word
        raise ConfigError(f"--thousands {data.thousands!r}: {data.decimal!r} is the decimal "
                          "mark (--decimal), so it cannot also separate thousands")
    na_values = tuple(v.strip() for v in data.na_values.split(",") if v.strip())
    ignore = tuple(c.strip() for c in data.ignore.split(",") if c.strip())
    return ReadOptions(delimiter_option(data.sep), na_values, data.thousands or None,
                       data.libsvm_base, data.decimal, ignore, encoding_option(data.encoding),
                       not data.no_header)


def encoding_option(name: str) -> str:
    """A text encoding as typed (data.encoding, --encoding), checked: one Python knows."""
    if codec_name(name) is None:
        raise ConfigError(f"--encoding {name!r}: no such text encoding; give one of Python's "
                          "codec names, such as utf-8, cp1252, latin-1 or shift_jis")
    return name


def text_spec(data: DataConfig) -> TextSpec | None:
    """How the text columns of ``data.text`` (comma-separated) are hashed; None for no text
    (a fastText file still gets its ``text`` column hashed by the same settings)."""
    columns = tuple(c.strip() for c in data.text.split(",") if c.strip())
    path = Path(data.source)
    if not columns and not (path.is_file() and is_fasttext(path)):
        if data.tfidf:
            raise ConfigError("--tfidf weights the counts of text columns: name them with "
                              "--text (or give a fastText file)")
        return None
    if data.tfidf and data.text_norm != "none":
        raise ConfigError("--tfidf weights each n-gram's count by its idf, kept in the model as "
                          "a feature scale, which a row norm taken before it would undo: use "
                          "--tfidf with --text-norm none")
    return TextSpec(columns or (FASTTEXT_TEXT,), parse_ngrams(data.ngrams), data.buckets,
                    data.text_norm, data.tfidf)


#: what a GPU run gets unless set otherwise: float32 features (float64 sums)
DEVICE_DEFAULTS = {"data.dtype": "float32"}


def with_implied_defaults(config: Config, explicit: set[str]) -> Config:
    """``config`` with ``TEXT_DEFAULTS`` for the keys not in ``explicit`` (those a file,
    --set or an option gave) when its data are text (``text_spec``), and ``DEVICE_DEFAULTS``
    when it trains on a GPU; else unchanged."""
    from .config import with_overrides

    defaults = dict(TEXT_DEFAULTS) if text_spec(config.data) is not None else {}
    if config.optim.device != "cpu":
        defaults.update(DEVICE_DEFAULTS)
    chosen = {k: v for k, v in defaults.items() if k not in explicit}
    return with_overrides(config, chosen, "defaults") if chosen else config


def _impute(config: Config) -> str | None:
    return None if config.data.impute == "none" else config.data.impute


def open_table(config: Config, client=None, notify=None) -> Table:
    """The training data of ``config`` as a ``sources.Table``: on a Dask cluster
    (``client``) with ``engine = "dask"``, in a streamed cache with ``stream``, else in
    memory. Checked to be trainable (two classes, two rows); ``notify`` hears what a reader
    of the data should know (``data.data_notes``)."""
    cfg = config.data
    source, target, weight = cfg.source, cfg.target or None, cfg.weight or None
    if not source:
        raise DataError("no data given: name a CSV, a LIBSVM file or sklearn:NAME")
    read = read_options(cfg)
    if cfg.engine == "dask":
        from . import dask_engine

        table = dask_engine.open_table(client, source, target, weight, read)
    elif cfg.stream:
        table = _streamed_table(source, target, weight, cfg.chunk_rows, read, text_spec(cfg),
                                notify)
    else:
        table = MemoryTable.of(data_mod.load_table(source, target, weight, read,
                                                   text_spec(cfg), cfg.labels or None))
    counts = np.bincount(table.labels, minlength=len(table.classes))
    if len(table.classes) < 2 or np.count_nonzero(counts) < 2:
        raise DataError(
            f"{table.name}: only one class ({table.classes[0]!r}) in the labels; "
            "a classifier needs at least two"
        )
    if table.n_rows < 2:
        raise DataError(f"{table.name}: a single row is not enough to train on")
    _check_discrete(table)
    for note in data_mod.data_notes(table) if notify is not None else ():
        notify(f"note: {note}")
    return table


def _check_discrete(table: Table) -> None:
    """A label column of numbers with fractions (``data.continuous_labels``) is an error:
    a regression target (or a feature named by mistake) would train a class for each of its
    distinct values."""
    fractions = data_mod.continuous_labels(table.classes)
    if fractions:
        column = f" in column {table.schema.target!r}" if table.schema.target else ""
        instead = "name a column of class labels with --target, or " if column else ""
        shown = ", ".join(f"{value:g}" for value in fractions[:3]) + \
            (", ..." if len(fractions) > 3 else "")
        raise DataError(
            f"{table.name}: the labels{column} are continuous numbers ({shown}; "
            f"{len(table.classes)} distinct values): xent classifies: {instead}turn the values "
            "into classes first (round or bin them)")


def _streamed_table(source: str, target, weight, chunk_rows: int, read: ReadOptions,
                    text: TextSpec | None, notify=None) -> Table:
    """The streamed cache of ``source``, said to ``notify`` when it is to be built (a pass
    over the whole file before the first epoch)."""
    from . import stream

    path = Path(source)
    data_mod.check_file(path)
    building = None if notify is None else \
        (lambda: notify("reading the data into the cache (once per file) ..."))
    return stream.build_cache(path, target, chunk_rows, weight, read, text, building)[0]


def split_rows(config: Config, table: Table) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) row masks: rows with missing values are an error without an
    imputation policy and left out under ``drop``; the rest split by
    ``preprocess.split_masks`` (stratified, seeded), the same for every kind of table."""
    impute = _impute(config)
    check_missing(table, impute)
    usable = ~table.missing if impute == "drop" else np.ones(table.n_rows, dtype=bool)
    if not usable.any():
        raise DataError(f"{table.name}: no rows left after dropping rows with missing values")
    return split_masks(table.labels, usable, config.data.val_fraction, config.data.seed)


def fit_table_preprocessing(config: Config, table: Table, train_rows) -> Preprocessing:
    """The preprocessing of ``config`` fitted on the training rows of ``table``: one pass of
    statistics, then ``preprocess.fit_preprocessing`` (the same for every kind of table)."""
    impute = _impute(config)
    stats = table.statistics(train_rows, medians=impute == "median")
    return fit_preprocessing(stats, table.schema, table.levels, impute=impute,
                             standardize=config.data.standardize,
                             class_weight=config.model.class_weight, sparse=table.sparse,
                             text=table.text_spec,
                             source=table.name)


def on_device(config: Config, source):
    """``source`` (in memory) moved to ``optim.device``; unchanged on the CPU."""
    if source is None or config.optim.device == "cpu":
        return source
    from .device import ArrayApiSource, namespace

    xp = namespace(config.optim.device, config.optim.tf32)
    return ArrayApiSource.of(source.X, source.target, source.weights, xp)


def resolved_link(config: Config, n_classes: int):
    return get_link(config.model.link, n_classes)


def source_options(config: Config) -> SourceOptions:
    cfg_d = config.data
    return SourceOptions(np.float32 if cfg_d.dtype == "float32" else np.float64,
                         config.model.label_smoothing, cfg_d.chunk_rows)


def solver_settings(config: Config) -> tuple[Solver, Stopping]:
    o = config.optim
    solver = Solver(o.optimizer, o.lr, o.batch_size or None, config.data.seed, o.lr_backoff,
                    o.lr_decay)
    return solver, Stopping(o.epochs, o.tol, o.patience or None)


def train(config: Config, hooks: Hooks | None = None, *, table: Table | None = None,
          resume: Checkpoint | None = None, client=None, notify=None,
          inference: bool = False) -> Run:
    """Train the model that ``config`` describes. ``hooks`` (``train.Hooks``): a callback
    that sees each epoch, a stop request, and checkpoints every so many epochs (each carrying
    the data's hash).

    The data are opened here unless ``table`` is given (``open_table``): in memory, streamed
    (``data.stream``, or by itself for a file too big for memory: see ``route``) or on Dask
    (``data.engine``; a LocalCluster is started unless ``client`` is given). Then one route for
    all: the stratified split of ``val_fraction`` of the rows drawn from ``data.seed``, the
    preprocessing fitted on the training rows, ``train.fit``. ``hooks`` and ``resume`` are
    passed to ``train.fit``; a resume on data that changed is refused. ``inference``: the run also
    carries the coefficient table of its training rows (``training_inference``).

    Memory: a table opened here is encoded, split and standardised in place where it can be,
    so training holds X plus its validation part. Streamed data are read block by block.
    """
    if config.data.engine == "dask" and client is None:
        from .dask_engine import connect

        with connect() as local_client:
            return train(config, hooks, table=table, resume=resume, client=local_client,
                         notify=notify, inference=inference)
    started = time.perf_counter()
    config = route(config, notify)
    cfg_d, cfg_m = config.data, config.model
    table = table if table is not None else open_table(config, client, notify)
    if resume is not None and resume.data_sha256 and table.sha256 and \
            resume.data_sha256 != table.sha256:
        raise DataError(f"{cfg_d.source}: the data changed since the run was trained; "
                        "resuming on other data would not continue that run")
    train_rows, val_rows = split_rows(config, table)
    prep = fit_table_preprocessing(config, table, train_rows)
    if not cfg_d.stream and cfg_d.engine != "dask" and not table.sparse:
        check_encoded_size(table, prep)
    train_source, val_source = table.sources(train_rows, val_rows, prep, source_options(config))
    train_source, val_source = (on_device(config, s) for s in (train_source, val_source))
    n_classes = len(table.classes)
    objective = Objective(get_link(cfg_m.link, n_classes), cfg_m.l2, cfg_m.fit_intercept,
                          cfg_m.l1)
    solver, stopping = solver_settings(config)
    hooks = _with_data_hash(hooks or Hooks(), table.sha256)
    with use_threads(config.optim.threads):
        result = fit(train_source, objective, solver, stopping, validation=val_source,
                     hooks=hooks, resume=resume)
    model = Model.from_params(
        result.params, classes=table.classes, link=objective.link.name,
        feature_names=prep.feature_names, standardizer=prep.standardizer,
        encoder=prep.encoder,
        metadata={"target": table.schema.target or None, "data": table.name,
                  "lr": None if np.isnan(result.lr) else result.lr,
                  "l2": objective.l2, "l1": objective.l1,
                  "label_smoothing": config.model.label_smoothing,
                  "read": table.read.for_model()},
    )
    summary = _summary(config, table, prep, objective, result, train_source, val_source)
    summary["seconds"] = time.perf_counter() - started
    with use_threads(config.optim.threads):
        table = training_inference(model, train_source, objective) if inference else None
    return Run(config, model, result.history, summary, result, table)


def _with_data_hash(hooks: Hooks, sha256: str | None) -> Hooks:
    """``hooks`` whose checkpoints carry the data's hash (a resume checks it)."""
    if hooks.checkpoint is None:
        return hooks
    save = hooks.checkpoint
    return replace(hooks, checkpoint=lambda state: save(replace(state, data_sha256=sha256)))


def _summary(config: Config, table: Table, prep: Preprocessing, objective: Objective,
             result: FitResult, train_source, val_source) -> dict:
    """summary.json: the returned parameters evaluated once more (early stopping may have
    taken them from an earlier epoch than the last record), the run's settings and data."""
    cfg_o = config.optim
    final = objective.evaluate(result.params, train_source, with_grad=False)
    val = objective.evaluate(result.params, val_source, with_grad=False) \
        if val_source is not None else None
    n_train = train_source.shape[0]
    n_val = 0 if val_source is None else val_source.shape[0]
    n_classes = len(table.classes)
    train_labels = train_source.target.labels
    baseline_labels = val_source.target.labels if val_source is not None else train_labels
    standardized = prep.standardizer is not None
    return {
        "objective": final.objective,
        "train_loss": final.data_loss,
        "train_accuracy": final.accuracy,
        "val_loss": val.data_loss if val else None,
        "val_accuracy": val.accuracy if val else None,
        "epochs": result.n_epochs,
        "converged": result.converged,
        "stop_reason": result.stop_reason,
        "grad_norm_rel": result.history.last.grad_norm_rel if len(result.history) else None,
        "lr": None if np.isnan(result.lr) else result.lr,
        "seconds": None,
        "n_samples": n_train + n_val,
        "n_train": n_train,
        "n_val": n_val,
        "n_features": train_source.shape[1],
        "n_classes": n_classes,
        "classes": table.classes,
        "link": objective.link.name,
        "optimizer": cfg_o.optimizer,
        "l2": objective.l2,
        "l1": objective.l1,
        "nonzero_weights": np.count_nonzero(result.params[:-1], axis=0).tolist(),
        "dtype": str(np.dtype(train_source.dtype)),
        "baseline_loss": prior_log_loss(train_labels, baseline_labels, n_classes),
        "target_entropy": result.target_entropy,
        "kl_divergence": final.data_loss - result.target_entropy,
        "diagnostics": diagnose(
            result.history, stop_reason=result.stop_reason, lr=result.lr,
            optimizer=cfg_o.optimizer, tol=cfg_o.tol,
            # soft targets (entropy > 0) bound the loss away from 0 as smoothing does
            penalised=penalised(objective.l2, objective.l1, config.model.label_smoothing)
            or result.target_entropy > 0,
            full_batch=not cfg_o.batch_size or cfg_o.batch_size >= n_train,
            feature_stds=None if standardized else prep.raw_scale,
            feature_names=prep.feature_names),
        "data_sha256": table.sha256,
        "versions": versions(),
        "config": config.to_dict(),
    }


def gradcheck(config: Config, max_coordinates: int = 400, steps: int = 5) -> dict:
    """The analytic gradient against central differences on the data of ``config``
    (preprocessed as training would, all rows), at a random point drawn from the seed and
    after ``steps`` epochs of gradient descent from zero. Returns both reports."""
    from .explain import compare_gradients

    config = replace(config, data=replace(config.data, val_fraction=0.0, engine="local",
                                          stream=False))
    table = open_table(config)
    train_rows, val_rows = split_rows(config, table)
    prep = fit_table_preprocessing(config, table, train_rows)
    source = table.sources(train_rows, val_rows, prep,
                           SourceOptions(smoothing=config.model.label_smoothing))[0]
    link = get_link(config.model.link, len(table.classes))
    l2 = config.model.l2
    rng = np.random.default_rng(config.data.seed)
    shape = Objective(link, l2).n_params(source.shape[1], len(table.classes))
    random_point = rng.normal(scale=1.0 / np.sqrt(shape[0]), size=shape)
    trained = fit(source, Objective(link, l2), Solver("gd"), Stopping(steps, 0.0)).params
    X, target = source.X, source.target
    return {
        "data": table.name, "link": link.name, "l2": l2, "shape": list(shape),
        "random_point": compare_gradients(random_point, X, target, link, l2,
                                          max_coordinates=max_coordinates, seed=config.data.seed),
        f"after_{steps}_steps": compare_gradients(trained, X, target, link, l2,
                                                  max_coordinates=max_coordinates,
                                                  seed=config.data.seed),
    }


def trace(model: Model, data: Dataset | Iterable[Dataset], row: int,
          lr: float | None = None) -> dict:
    """Row ``row`` of ``data`` (one Dataset, or blocks of one, ``data_for_model``: read only
    up to the block that holds the row) through one gradient step of ``model`` (see
    ``explain.trace_step``); ``lr`` defaults to the learning rate the model was trained with."""
    offset = 0
    for dataset in [data] if isinstance(data, Dataset) else data:
        if 0 <= row < offset + dataset.n_read:
            return _trace_row(model, dataset, row, row - offset, lr)
        offset += dataset.n_read
    raise ConfigError(f"--row {row} is out of range: the data have rows 0 to {offset - 1}")


def _trace_row(model: Model, dataset: Dataset, row: int, local: int, lr: float | None) -> dict:
    """``trace`` of row ``local`` of the block ``dataset`` (row ``row`` of the data)."""
    from .explain import trace_step

    at = int(np.searchsorted(dataset.positions, local))
    if at == dataset.n_samples or dataset.positions[at] != local:
        raise DataError(f"{dataset.name}: row {row} has missing values the model has no "
                        "fill value for; choose another row")
    x = model.features(dataset.X[at:at + 1])
    x = np.asarray(x.todense() if sp.issparse(x) else x)[0]
    step = lr if lr is not None else model.metadata.get("lr") or 1.0
    result = trace_step(x, int(dataset.labels[at]), model.coef, model.intercept,
                        get_link(model.link), model.n_classes, step)
    result.update(row=row, label=model.classes[int(dataset.labels[at])],
                  classes=list(model.classes), feature_names=list(model.feature_names),
                  link=model.link)
    return result


def load_model(path: str | Path) -> Model:
    """A model from a model file, or from a run directory (its model.npz)."""
    path = Path(path)
    if path.is_dir():
        if not (path / "model.npz").exists() and (path / "checkpoint.npz").exists():
            raise ModelFileError(f"{path}: the run has no model yet (it was stopped before it "
                                 f"wrote one); finish it with `xent train --resume {path}`")
        path = path / "model.npz"
    return Model.load(path)


def model_read_options(model: Model, sep: str | None = None,
                       libsvm_base: str | None = None, encoding: str = "utf-8") -> ReadOptions:
    """How to read data for ``model``: as its training data were read (missing-value
    strings, thousands separator, decimal mark, LIBSVM index base), with a file's own
    delimiter (``sep``, else sniffed) and text encoding and, if given, another LIBSVM
    base."""
    read = data_mod.ReadOptions.from_dict(model.metadata.get("read"))
    return replace(read, sep=sep or None, libsvm_base=libsvm_base or read.libsvm_base,
                   encoding=encoding_option(encoding))


def load_for_model(source: str, model: Model, require_labels: bool,
                   read: ReadOptions | None = None) -> Dataset:
    """Data to evaluate or predict with ``model``, read by ``read`` (default: as the model's
    training data were, ``model_read_options``): encoded as in training, labels (when
    present) mapped to the model's classes. Extra columns are ignored; missing ones are an
    error. Rows the model cannot encode (missing values it has no fill for, under ``drop``)
    are left out of X; ``Dataset.rows`` says which rows X holds."""
    dataset = next(data_for_model(source, model, require_labels, read))
    if dataset.n_samples == 0:
        raise nothing_to_predict(str(source), dataset.n_read)
    return dataset


#: rows of a CSV or Parquet file that ``xent predict`` reads, encodes and writes at a time,
#: so that a file too big for memory is predicted as it trains, streamed
PREDICT_BLOCK_ROWS = 65536
#: and at most about this many bytes of those rows encoded: a column of many levels makes each
#: row as many features wide (3,000 levels: 65,536 rows were 1.6 GB, and predict peaked at
#: 3.3 GB on a 200,000-row file of three columns)
PREDICT_BLOCK_BYTES = 64 << 20


def _model_block_rows(model: Model, block_rows: int) -> int:
    """``block_rows``, fewer where the model's dense features (one-hot levels included;
    hashed text is sparse) would make the encoded block pass ``PREDICT_BLOCK_BYTES``."""
    width = len(model.encoder.tabular_names) if model.encoder is not None else model.n_features
    return max(1, min(block_rows, PREDICT_BLOCK_BYTES // (8 * max(width, 1))))


def data_for_model(source: str, model: Model, require_labels: bool,
                   read: ReadOptions | None = None, block_rows: int | None = None,
                   target: str | None = None) -> Iterator[Dataset]:
    """``load_for_model``'s data as Datasets: a CSV or Parquet file ``block_rows`` rows at
    a time (None: whole; fewer rows where they would encode wide, ``_model_block_rows``),
    other data whole; its labels in column ``target`` (default: the model's). A block's
    ``rows`` index its own rows, and a block may hold no row the model can encode."""
    source = str(source)
    read = read if read is not None else model_read_options(model)
    if data_mod.is_builtin(source):
        blocks = [data_mod.load_builtin(source[len(data_mod.BUILTIN_PREFIX):])]
    else:
        path = Path(source)
        data_mod.check_file(path)
        if data_mod.is_numpy_file(path):
            blocks = [data_mod.load_numpy(path, None, model.n_features)]
        elif data_mod.is_libsvm(path):
            blocks = [data_mod.load_libsvm(path, model.n_features, read.libsvm_base)[0]]
        elif model.encoder is None:
            raise DataError(f"{source}: the model was trained on LIBSVM data; give LIBSVM data")
        elif is_fasttext(path):
            blocks = [data_mod.fasttext_dataset(path, model.encoder, model.classes,
                                                require_labels)]
        else:
            frames = [data_mod.read_csv(path, read)] if block_rows is None else \
                data_mod.table_chunks(path, _model_block_rows(model, block_rows), None, read)
            label = target or model.metadata.get("target")
            blocks = (data_mod.model_dataset(frame, source, model.encoder, label, model.classes,
                                             require_labels, read.first_line)
                      for frame in frames)
    for dataset in blocks:
        yield _checked_for_model(dataset, model, source, require_labels)


def _checked_for_model(dataset: Dataset, model: Model, source: str,
                       require_labels: bool) -> Dataset:
    """``dataset`` with its labels mapped to the model's classes, checked to have the
    model's features, finite values and (where asked) labels."""
    if dataset.labels is not None and dataset.classes != list(model.classes):
        own_labels = [dataset.classes[i] for i in dataset.labels]
        dataset.labels = data_mod.encode_labels(own_labels, model.classes, source)
        dataset.classes = list(model.classes)
    if dataset.n_features != model.n_features:
        raise DataError(
            f"{source}: {dataset.n_features} features, but the model was trained on "
            f"{model.n_features}"
        )
    data_mod.finite_or_raise(dataset.X, source)
    if require_labels and dataset.labels is None:
        raise DataError(f"{source}: no label column to evaluate against")
    return dataset


def nothing_to_predict(source: str, n_read: int) -> DataError:
    """The error for data with no row a model can use."""
    if n_read == 0:
        return DataError(f"{source}: the header has no data rows below it")
    return DataError(f"{source}: every row has missing values the model has no fill value "
                     "for (it was trained with --impute drop); nothing to predict")


def inference(model: Model, data: Dataset | Iterable[Dataset],
              left_out: LeftOut | None = None) -> dict:
    """``inference.table_of_rows`` of ``model`` on ``data``, a Dataset or blocks of one
    (``data_for_model``; their labels indexing the model's classes): the coefficient table,
    for the rows the model was trained on. ``left_out``, if given, tallies the rows the model
    could not encode."""
    from .inference import table_of_rows

    left = left_out if left_out is not None else LeftOut()
    rows = ((dataset.X, dataset.labels) for dataset in left.tally(data))
    return table_of_rows(model, rows, model.metadata.get("l2"))


def encoded_feature_names(table: Table) -> list[str]:
    """The names of the features the table's columns other than text encode to (every
    categorical level one)."""
    categories = {column: sorted(levels) for column, levels
                  in zip(table.schema.categorical, table.levels, strict=True)}
    return data_mod.tabular_feature_names(table.schema.columns, categories)


def n_encoded_features(table: Table) -> int:
    """The features the table encodes to, its hashed text buckets included."""
    text = table.text_spec
    return len(encoded_feature_names(table)) + (0 if text is None else text.n_features)


def check_parameter_size(table: Table, config: Config) -> None:
    """``memory.check_parameters`` before a run starts (its directory made, its header
    said): in full for dense rows; for sparse ones (which ``fit`` may narrow to the columns
    present, and checks in full) the parameters' two full copies alone."""
    from .memory import check_parameters
    from .threads import thread_count

    n_classes = len(table.classes)
    n_rows = n_encoded_features(table) + 1
    with use_threads(config.optim.threads):
        threads = thread_count()
    working = 0 if table.sparse or table.text_spec is not None else n_rows
    check_parameters(n_rows, resolved_link(config, n_classes).n_outputs(n_classes),
                     working, config.optim.optimizer, threads if working else 0)


def check_inference_size(n_features: int, n_classes: int, config: Config | None = None, *,
                         link=None) -> None:
    """A coefficient table needs an information matrix of (n_outputs (d + 1))^2 numbers:
    beyond ``inference.MAX_PARAMETERS`` parameters it is a ``ConfigError``."""
    from .inference import MAX_PARAMETERS

    link = link or resolved_link(config, n_classes)
    size = (n_features + 1) * link.n_outputs(n_classes)
    if size > MAX_PARAMETERS:
        raise ConfigError(f"--inference: {size} parameters, more than the {MAX_PARAMETERS} "
                          "an information matrix is formed for; drop --inference, or train on "
                          "fewer features")


def training_inference(model: Model, source, objective: Objective) -> dict:
    """The coefficient table of a trained ``model`` from its training ``source`` (any
    RowSource: in memory, streamed or on Dask), which sums the information and the
    log-likelihood over its own rows, weighted as training weighed them."""
    from .inference import coefficient_table, likelihood_summary

    params = model.params
    check_inference_size(model.n_features, model.n_classes, link=objective.link)
    totals = source.sums(params, objective.link, with_grad=False)
    target = source.target
    class_totals = np.bincount(target.labels, weights=source.weights,
                               minlength=len(model.classes))
    table = coefficient_table(model, source.information(params, objective.link),
                              likelihood_summary(-totals.loss, class_totals, model.n_features),
                              objective.l2, all_right=totals.n_correct == totals.n_rows)
    if source.weights is not None:
        table["notes"].append("trained with class or sample weights: the likelihood and the "
                              "standard errors are the weighted ones")
    return table


def evaluate(model: Model, data: Dataset | Iterable[Dataset], device: str = "cpu",
             left_out: LeftOut | None = None) -> dict:
    """Log-loss, accuracy, the Brier score, the expected calibration error (15 bins of the top
    label's confidence, with the bins), confusion matrix and per-class precision/recall/F1/
    support of ``model`` on ``data``, a Dataset or blocks of one (``data_for_model``; their
    labels index ``model.classes``): only the blocks' labels and probabilities are kept, the
    rows are let go. The logits are taken on ``device``; ``left_out``, if given, tallies the
    rows the model could not encode."""
    left = left_out if left_out is not None else LeftOut()
    true, predicted, proba, log_proba = [], [], [], []
    for dataset in left.tally(data):
        said = model.scores(dataset.X, device)
        true.append(dataset.labels)
        predicted.append(said.index)
        proba.append(said.proba)
        log_proba.append(said.log_proba)
    true, predicted = np.concatenate(true), np.concatenate(predicted)
    proba, log_proba = np.concatenate(proba), np.concatenate(log_proba)
    confusion = confusion_matrix(true, predicted, model.n_classes)
    scores = per_class_scores(confusion)
    bins = calibration_bins(true, proba)
    return {
        "n_samples": int(len(true)),
        "n_left_out": left.count,
        # rows, by column, whose level the model never saw (counted as no level)
        "n_unseen_levels": {column: rows for column, (rows, _, _) in left.unseen.items()},
        "log_loss": log_loss(true, log_proba),
        "accuracy": accuracy(true, predicted),
        "brier": brier_score(true, proba),
        "ece": expected_calibration_error(bins),
        "calibration_bins": bins,
        "classes": list(model.classes),
        "confusion_matrix": confusion.tolist(),
        "per_class": [
            {
                "class": cls,
                "precision": float(scores["precision"][i]),
                "recall": float(scores["recall"][i]),
                "f1": float(scores["f1"][i]),
                "support": int(scores["support"][i]),
            }
            for i, cls in enumerate(model.classes)
        ],
    }


def predict(model: Model, dataset: Dataset, device: str = "cpu") -> tuple[np.ndarray,
                                                                         np.ndarray]:
    """(predicted labels (n_samples,), class probabilities (n_samples, n_classes)), one row
    per row of X; ``dataset.rows`` says which input rows they are; the logits taken on
    ``device``."""
    scores = model.scores(dataset.X, device)
    return scores.labels, scores.proba


@dataclass
class LeftOut:
    """What of the data a model could not use, over one or more blocks read in order (``add``
    each ``Dataset``): the input rows it could not encode (missing values it has no fill
    for), and, by column, the rows whose level training never saw (encoded as no level)."""

    name: str = ""
    first_line: int = 2  # the file line of the first data row (``ReadOptions.first_line``)
    n_read: int = 0
    count: int = 0
    first: list = field(default_factory=list)  # the first five of them, numbered from 0
    unseen: dict = field(default_factory=dict)  # column -> (rows, the first levels, more?)

    def add(self, dataset: Dataset) -> None:
        kept = np.zeros(dataset.n_read, dtype=bool)
        kept[dataset.positions] = True
        rows = np.flatnonzero(~kept) + self.n_read
        self.first += rows[:max(0, 5 - len(self.first))].tolist()
        self.name, self.count = dataset.name, self.count + len(rows)
        self.n_read += dataset.n_read
        for column, (n, levels) in dataset.unseen.items():
            counted, shown, more = self.unseen.get(column, (0, [], False))
            new = [level for level in levels if level not in shown]
            room = 3 - len(shown)
            self.unseen[column] = (counted + n, shown + new[:room], more or len(new) > room)

    def tally(self, data: Dataset | Iterable[Dataset]) -> Iterator[Dataset]:
        """The blocks of ``data`` (one Dataset, or blocks of one, ``data_for_model``), each
        added here as it is handed on; after the last, a ``DataError`` if none of their rows
        could be used (before any result is formed from none)."""
        for dataset in [data] if isinstance(data, Dataset) else data:
            self.add(dataset)
            yield dataset
        if self.count == self.n_read:
            raise nothing_to_predict(self.name, self.n_read)

    def notes(self) -> list[str]:
        """What to tell a user whose rows the model could not encode, or whose levels it
        never saw."""
        notes = []
        if self.count:
            lines = [row + self.first_line for row in self.first]
            notes.append(f"note: {self.count} of {self.n_read} rows of {self.name} have missing "
                         f"values the model has no fill value for (trained with --impute drop; "
                         f"file lines {lines}): they are not predicted")
        for column, (n, levels, more) in self.unseen.items():
            shown = ", ".join(repr(level) for level in levels) + (", ..." if more else "")
            notes.append(f"note: {n} of {self.n_read} rows of {self.name} have a level of "
                         f"column {column!r} the model never saw ({shown}): it counts as no "
                         "level (all its features 0); if such a level is a trained one "
                         "written another way ('Red' for 'red', a space), fix the file")
        return notes
