"""The Python API: ``train(config) -> Run``, ``evaluate(model, data)``, ``predict(model, data)``.

This is the orchestration the command line and the config files sit on: load, split,
standardise, fit, package the model. Nothing here prints or parses options.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from . import data as data_mod
from . import stream
from .config import Config
from .data import Dataset, FeatureEncoder
from .diagnostics import diagnose
from .errors import DataError
from .links import get_link
from .loss import balanced_class_weight, class_weighted, labels_target
from .loss import evaluate as evaluate_objective
from .metrics import (
    accuracy,
    confusion_matrix,
    log_loss,
    per_class_scores,
    prior_log_loss,
)
from .model import Model
from .preprocess import fit_standardizer, split_in_place, train_val_split
from .train import Checkpoint, FitResult, History, Validation, fit


@dataclass
class Run:
    """What one training run produced."""

    config: Config
    model: Model
    history: History
    summary: dict
    fit: FitResult = field(repr=False)


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


def with_absolute_paths(config: Config) -> Config:
    """``config`` with a data file named by its absolute path, so that the config.toml saved
    in a run directory finds the data from wherever it is read."""
    source = config.data.source
    if not source or data_mod.is_builtin(source) or "*" in source or "://" in source:
        return config  # built in, a glob of files, or a remote address: left as given
    return replace(config, data=replace(config.data, source=str(Path(source).resolve())))


def load_training_data(config: Config) -> Dataset:
    """The data named by ``config.data``, checked to be trainable (two classes at least).

    With ``data.stream`` the file is parsed into (or found in) the cache instead, and the
    dataset has no X: its ``table`` is the cache, read block by block by ``train``.
    """
    cfg = config.data
    if not cfg.source:
        raise DataError("no data given: name a CSV, a LIBSVM file or sklearn:NAME")
    if cfg.stream:
        dataset = _streamed_dataset(config)
    else:
        dataset = data_mod.load(
            cfg.source,
            target=cfg.target or None,
            impute=None if cfg.impute == "none" else cfg.impute,
        )
        data_mod.finite_or_raise(dataset.X, dataset.name)
        if dataset.encoder is None and not sp.issparse(dataset.X):
            dataset.encoder = FeatureEncoder(tuple(dataset.feature_names))
    counts = np.bincount(dataset.labels, minlength=dataset.n_classes)
    if dataset.n_classes < 2 or np.count_nonzero(counts) < 2:
        raise DataError(
            f"{dataset.name}: only one class ({dataset.classes[0]!r}) in the labels; "
            "a classifier needs at least two"
        )
    if len(dataset.labels) < 2:
        raise DataError(f"{dataset.name}: a single row is not enough to train on")
    return dataset


def _streamed_dataset(config: Config) -> Dataset:
    source = config.data.source
    if data_mod.is_builtin(source):
        raise DataError(f"{source} is small and built in: train it without --stream")
    path = Path(source)
    data_mod.check_file(path)
    if data_mod.is_libsvm(path):
        raise DataError(f"{source}: LIBSVM files are read whole (they stay sparse); drop "
                        "--stream")
    table, _ = stream.build_cache(path, config.data.target or None, config.data.chunk_rows)
    meta = table.meta
    levels = {c: tuple(sorted(meta["levels"][j])) for j, c in enumerate(meta["categorical"])}
    names = FeatureEncoder(tuple(meta["columns"]), levels).feature_names
    return Dataset(None, table.labels, list(meta["classes"]), names, str(path),
                   target_column=meta["target"], sha256=meta["sha256"], table=table)


def memory_budget() -> int:
    """Bytes a data set may take in memory before training streams it: $XENT_MEMORY_BUDGET,
    else half of the memory available now."""
    if os.environ.get("XENT_MEMORY_BUDGET"):
        return int(float(os.environ["XENT_MEMORY_BUDGET"]))
    with contextlib.suppress(OSError, ValueError, IndexError), \
            open("/proc/meminfo", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 // 2
    return 4 << 30


def needs_streaming(config: Config) -> bool:
    """Whether a data file is too big to train on in memory: parsed, a CSV takes several times
    its size (float64 values, pandas' objects, the standardised copy); 4x is the estimate."""
    source = config.data.source
    if config.data.stream or not source or data_mod.is_builtin(source):
        return False
    path = Path(source)
    if not path.is_file() or data_mod.is_libsvm(path):
        return False
    return 4 * path.stat().st_size > memory_budget()


def n_validation(config: Config, dataset: Dataset) -> int:
    """How many rows the split of ``config`` holds out."""
    if dataset.table is not None:
        return int(np.count_nonzero(stream.validation_mask(
            len(dataset.labels), config.data.val_fraction, config.data.seed)))
    return len(train_val_split(dataset.labels, config.data.val_fraction, config.data.seed)[1])


def resolved_link(config: Config, dataset: Dataset) -> str:
    return get_link(config.model.link, dataset.n_classes).name


def _as_dtype(X, dtype: str):
    target = np.float32 if dtype == "float32" else np.float64
    return X.astype(target, copy=False)


@dataclass
class _Prepared:
    """Training and validation data ready for ``fit``, and the preprocessing they went
    through."""

    X_train: object
    X_val: object
    target: object
    val_target: object
    weights: np.ndarray | None
    standardizer: object
    encoder: FeatureEncoder | None
    raw_stds: np.ndarray | None
    feature_names: list[str]


def _prepare_in_memory(config: Config, dataset: Dataset, owned: bool) -> _Prepared:
    cfg_d, cfg_m = config.data, config.model
    train_rows, val_rows = train_val_split(dataset.labels, cfg_d.val_fraction, cfg_d.seed)
    if owned and isinstance(dataset.X, np.ndarray) and dataset.X.dtype == np.float64:
        X_train, X_val = split_in_place(dataset.X, train_rows, val_rows)
        dataset.X = None  # its rows are now the training part, standardised below
    else:
        X_train, X_val = dataset.X[train_rows], dataset.X[val_rows]
    standardizer = fit_standardizer(X_train, dataset.feature_names, dataset.name) \
        if cfg_d.standardize else None
    raw_stds = None if cfg_d.standardize else fit_standardizer(X_train).scale
    if standardizer is not None:  # X_train and X_val are ours here: standardise in place
        X_train = standardizer.transform(X_train, copy=False)
        X_val = standardizer.transform(X_val, copy=False)
    n_classes = dataset.n_classes
    target = labels_target(dataset.labels[train_rows], n_classes, cfg_m.label_smoothing)
    weights = None
    if cfg_m.class_weight == "balanced":
        weights = class_weighted(target, None, balanced_class_weight(target.labels, n_classes))
    return _Prepared(_as_dtype(X_train, cfg_d.dtype), _as_dtype(X_val, cfg_d.dtype), target,
                     labels_target(dataset.labels[val_rows], n_classes), weights, standardizer,
                     dataset.encoder, raw_stds, dataset.feature_names)


def _prepare_streamed(config: Config, dataset: Dataset) -> _Prepared:
    cfg_d, cfg_m = config.data, config.model
    table = dataset.table
    val = stream.validation_mask(table.n_rows, cfg_d.val_fraction, cfg_d.seed)
    train_rows = ~val
    impute = None if cfg_d.impute == "none" else cfg_d.impute
    if impute == "drop":
        train_rows &= ~table.missing
        val &= ~table.missing
    # one pass gives the statistics either way; unstandardised, they feed the diagnostics
    encoder, standardizer = stream.fit_streamed(table, train_rows, impute, True,
                                                cfg_d.chunk_rows)
    raw_stds = None
    if not cfg_d.standardize:
        standardizer, raw_stds = None, standardizer.scale
    class_weight = balanced_class_weight(table.labels[train_rows], dataset.n_classes) \
        if cfg_m.class_weight == "balanced" else None
    dtype = np.float32 if cfg_d.dtype == "float32" else np.float64

    def view(rows, smoothing):
        return stream.StreamData(table, rows, encoder, standardizer, cfg_d.chunk_rows, dtype,
                                 smoothing, class_weight)

    X_train, X_val = view(train_rows, cfg_m.label_smoothing), view(val, 0.0)
    return _Prepared(X_train, X_val, X_train.target, X_val.target, None, standardizer, encoder,
                     raw_stds, encoder.feature_names)


def _prepare_dask(config: Config, client) -> tuple[_Prepared, Dataset]:
    from . import dask_engine

    cfg_d, cfg_m = config.data, config.model
    train_data, val_data, encoder, standardizer, classes, target_column = dask_engine.prepare(
        client, cfg_d.source, cfg_d.target or None,
        None if cfg_d.impute == "none" else cfg_d.impute, cfg_d.val_fraction, cfg_d.seed,
        cfg_d.standardize, cfg_m.label_smoothing, cfg_m.class_weight == "balanced")
    dataset = Dataset(None, np.concatenate([train_data.labels, val_data.labels]), classes,
                      encoder.feature_names, cfg_d.source, encoder, target_column)
    prepared = _Prepared(train_data, val_data, train_data.target, val_data.target, None,
                         standardizer, encoder, None, encoder.feature_names)
    return prepared, dataset


def train(config: Config, callback=None, dataset: Dataset | None = None, *,
          should_stop=None, checkpoint=None, checkpoint_every: int = 0,
          resume: Checkpoint | None = None, consume_dataset: bool = False,
          client=None) -> Run:
    """Train the model that ``config`` describes. ``callback(record)`` sees each epoch.

    The validation part is a stratified split of ``val_fraction`` of the rows, drawn from
    ``config.data.seed`` (for streamed data: a draw per row, see ``xent.stream``);
    standardisation is fitted on the training part only. ``should_stop``, ``checkpoint``,
    ``checkpoint_every`` and ``resume`` are passed to ``train.fit``.

    Memory: a dataset loaded here (or passed with ``consume_dataset=True``) is split and
    standardised in place, so training holds X plus its validation part; a dataset passed
    without it is left untouched and copied. Streamed data are read block by block.
    """
    if config.data.engine == "dask" and client is None:
        from .dask_engine import connect

        with connect() as local_client:
            return train(config, callback, dataset, should_stop=should_stop,
                         checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                         resume=resume, client=local_client)
    started = time.perf_counter()
    config = with_absolute_paths(config)
    cfg_d, cfg_m, cfg_o = config.data, config.model, config.optim
    if cfg_d.engine == "dask":
        prepared, dataset = _prepare_dask(config, client)
    else:
        owned = consume_dataset or dataset is None
        dataset = dataset or load_training_data(config)
        if dataset.table is not None:
            prepared = _prepare_streamed(config, dataset)
        else:
            prepared = _prepare_in_memory(config, dataset, owned)
    X_train, X_val = prepared.X_train, prepared.X_val
    target, val_target, weights = prepared.target, prepared.val_target, prepared.weights
    standardizer, raw_stds = prepared.standardizer, prepared.raw_stds
    n_classes = dataset.n_classes
    link = get_link(cfg_m.link, n_classes)
    n_train, n_val = target.n_samples, val_target.n_samples
    result = fit(
        X_train,
        target,
        link,
        optimizer=cfg_o.optimizer,
        lr=cfg_o.lr,
        max_epochs=cfg_o.epochs,
        batch_size=cfg_o.batch_size or None,
        tol=cfg_o.tol,
        l2=cfg_m.l2,
        weights=weights,
        fit_intercept=cfg_m.fit_intercept,
        validation=Validation(X_val, val_target) if n_val else None,
        patience=cfg_o.patience or None,
        seed=cfg_d.seed,
        callback=callback,
        should_stop=should_stop,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        resume=resume,
        lr_backoff=cfg_o.lr_backoff,
    )
    model = Model.from_params(
        result.params,
        classes=dataset.classes,
        link=link.name,
        feature_names=prepared.feature_names,
        standardizer=standardizer,
        encoder=prepared.encoder,
        metadata={"target": dataset.target_column, "data": dataset.name,
                  "lr": None if np.isnan(result.lr) else result.lr},
    )
    # The summary describes the returned parameters (which early stopping may have taken from
    # an earlier epoch than the last record), so evaluate them once more.
    final = evaluate_objective(result.params, X_train, target, link, cfg_m.l2, weights,
                               fit_intercept=cfg_m.fit_intercept, with_grad=False)
    val = evaluate_objective(result.params, X_val, val_target, link, 0.0,
                             with_grad=False) if n_val else None
    baseline_labels = val_target.labels if n_val else target.labels
    summary = {
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
        "seconds": time.perf_counter() - started,
        "n_samples": len(dataset.labels),
        "n_train": n_train,
        "n_val": n_val,
        "n_features": X_train.shape[1],
        "n_classes": n_classes,
        "classes": dataset.classes,
        "link": link.name,
        "optimizer": cfg_o.optimizer,
        "l2": cfg_m.l2,
        "baseline_loss": prior_log_loss(target.labels, baseline_labels, n_classes),
        "target_entropy": result.target_entropy,
        "kl_divergence": final.data_loss - result.target_entropy,
        "diagnostics": diagnose(
            result.history, stop_reason=result.stop_reason, lr=result.lr,
            optimizer=cfg_o.optimizer, l2=cfg_m.l2, tol=cfg_o.tol,
            full_batch=not cfg_o.batch_size or cfg_o.batch_size >= n_train,
            feature_stds=raw_stds, feature_names=prepared.feature_names),
        "data_sha256": dataset.sha256,
        "versions": versions(),
        "config": config.to_dict(),
    }
    return Run(config, model, result.history, summary, result)


def gradcheck(config: Config, max_coordinates: int = 400, steps: int = 5) -> dict:
    """The analytic gradient against central differences on the data of ``config``
    (standardised as training would, all rows), at a random point drawn from the seed and
    after ``steps`` epochs of gradient descent from zero. Returns both reports."""
    from .explain import compare_gradients

    dataset = load_training_data(config)
    X = dataset.X
    if config.data.standardize:
        X = fit_standardizer(X).transform(X)
    link = get_link(config.model.link, dataset.n_classes)
    target = labels_target(dataset.labels, dataset.n_classes, config.model.label_smoothing)
    l2 = config.model.l2
    rng = np.random.default_rng(config.data.seed)
    shape = (dataset.n_features + 1, link.n_outputs(dataset.n_classes))
    random_point = rng.normal(scale=1.0 / np.sqrt(shape[0]), size=shape)
    trained = fit(X, target, link, optimizer="gd", l2=l2, max_epochs=steps, tol=0.0).params
    return {
        "data": dataset.name, "link": link.name, "l2": l2, "shape": list(shape),
        "random_point": compare_gradients(random_point, X, target, link, l2,
                                          max_coordinates=max_coordinates, seed=config.data.seed),
        f"after_{steps}_steps": compare_gradients(trained, X, target, link, l2,
                                                  max_coordinates=max_coordinates,
                                                  seed=config.data.seed),
    }


def trace(model: Model, dataset: Dataset, row: int, lr: float | None = None) -> dict:
    """Row ``row`` of ``dataset`` through one gradient step of ``model`` (see
    ``explain.trace_step``); ``lr`` defaults to the learning rate the model was trained with."""
    from .explain import trace_step

    if not 0 <= row < dataset.n_samples:
        raise DataError(f"--row {row} is out of range: the data have rows 0 to "
                        f"{dataset.n_samples - 1}")
    x = model.features(dataset.X[row:row + 1])
    x = np.asarray(x.todense() if sp.issparse(x) else x)[0]
    step = lr if lr is not None else model.metadata.get("lr") or 1.0
    result = trace_step(x, int(dataset.labels[row]), model.coef, model.intercept,
                        get_link(model.link), model.n_classes, step)
    result.update(row=row, label=model.classes[int(dataset.labels[row])],
                  classes=list(model.classes), feature_names=list(model.feature_names),
                  link=model.link)
    return result


def load_model(path: str | Path) -> Model:
    """A model from a model file, or from a run directory (its model.npz)."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.npz"
    return Model.load(path)


def load_for_model(source: str, model: Model, require_labels: bool) -> Dataset:
    """Data to evaluate or predict with ``model``: encoded as in training, labels (when
    present) mapped to the model's classes. Extra columns are ignored; missing ones are an
    error."""
    source = str(source)
    if data_mod.is_builtin(source):
        dataset = data_mod.load_builtin(source[len(data_mod.BUILTIN_PREFIX):])
    else:
        path = Path(source)
        data_mod.check_file(path)
        if data_mod.is_libsvm(path):
            dataset = data_mod.load_libsvm(path, n_features=model.n_features)
        elif model.encoder is None:
            raise DataError(f"{source}: the model was trained on LIBSVM data; give LIBSVM data")
        else:
            dataset = data_mod.frame_dataset(
                data_mod.read_csv(path), source, target=model.metadata.get("target"),
                encoder=model.encoder, classes=model.classes, require_target=require_labels,
            )
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


def evaluate(model: Model, dataset: Dataset) -> dict:
    """Log-loss, accuracy, confusion matrix and per-class precision/recall/F1/support of
    ``model`` on ``dataset`` (whose labels index ``model.classes``)."""
    logits = model.decision_function(dataset.X)
    link = get_link(model.link)
    predicted = link.predict_index(logits)
    true = dataset.labels
    confusion = confusion_matrix(true, predicted, model.n_classes)
    scores = per_class_scores(confusion)
    return {
        "n_samples": int(len(true)),
        "log_loss": log_loss(true, link.log_proba(logits)),
        "accuracy": accuracy(true, predicted),
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


def predict(model: Model, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(predicted labels (n_samples,), class probabilities (n_samples, n_classes))."""
    logits = model.decision_function(dataset.X)
    link = get_link(model.link)
    labels = np.asarray(model.classes, dtype=object)[link.predict_index(logits)]
    return labels, link.proba(logits)
