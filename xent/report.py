"""Run directories: history -> metrics.csv, the loss-curve PNG, summary.json, config.toml and the
model, each written atomically; and the plain-text renderings the command line prints."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .atomic import atomic_open, write_npz, write_text
from .config import to_toml
from .errors import XentError
from .train import HISTORY_COLUMNS, Checkpoint, EpochRecord, History

RUN_FILES = ("config.toml", "metrics.csv", "model.npz", "loss.png", "summary.json")
CHECKPOINT_FILE = "checkpoint.npz"
CHECKPOINT_FORMAT = "xent-checkpoint"
LOCK_FILE = ".xent-run.lock"
#: a lock file still empty after this long was left by a process killed as it made it
_EMPTY_LOCK_SECONDS = 10.0


def _jsonable(value):
    """NaN and infinities become null (JSON has neither); numpy scalars become Python ones."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_json(value, indent: int | None = 2) -> str:
    return json.dumps(_jsonable(value), indent=indent, ensure_ascii=False)


def history_csv(history: History) -> str:
    """One row per epoch, the history columns; floats written exactly (repr)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HISTORY_COLUMNS)
    for row in history.rows():
        writer.writerow(repr(row[c]) if isinstance(row[c], float) else row[c]
                        for c in HISTORY_COLUMNS)
    return out.getvalue()


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save_png(figure, path: str | Path) -> None:
    figure.tight_layout()
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format="png")


def plot_history(history: History, path: str | Path, title: str = "") -> None:
    """Loss and accuracy curves, training and validation, as a PNG (matplotlib, Agg)."""
    figure = _figure(10, 4)
    loss_ax, acc_ax = figure.subplots(1, 2)
    epochs = history.column("epoch")
    for ax, name, label in ((loss_ax, "loss", "cross-entropy"), (acc_ax, "accuracy", "accuracy")):
        ax.plot(epochs, history.column(f"train_{name}"), label="training")
        val = history.column(f"val_{name}")
        if np.any(np.isfinite(val)):
            ax.plot(epochs, val, label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    loss_ax.set_title("loss")
    acc_ax.set_title("accuracy")
    if title:
        figure.suptitle(title)
    _save_png(figure, path)


def plot_reliability(bins: list[dict], path: str | Path, title: str = "") -> None:
    """A reliability diagram (each bin's accuracy against its mean confidence, the diagonal
    for perfect calibration) over the histogram of confidences, as a PNG."""
    figure = _figure(5, 6)
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    filled = [b for b in bins if b["count"]]
    width = bins[0]["upper"] - bins[0]["lower"]
    top.bar([b["lower"] for b in filled], [b["accuracy"] for b in filled], width=width,
            align="edge", edgecolor="black", alpha=0.7, label="accuracy in the bin")
    top.plot([b["confidence"] for b in filled], [b["accuracy"] for b in filled], "o",
             color="black", label="(mean confidence, accuracy)")
    top.plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    top.set_ylabel("accuracy")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.legend(loc="upper left")
    top.set_title(title or "reliability of the top label")
    bottom.bar([b["lower"] for b in bins], [b["count"] for b in bins], width=width,
               align="edge", edgecolor="black")
    bottom.set_xlabel("confidence (largest probability)")
    bottom.set_ylabel("rows")
    _save_png(figure, path)


PATH_FILES = ("path.csv", "cv.png", "coef_path.png")
PATH_COLUMNS = ("lambda", "C", "l2", "l1", "cv_loss", "cv_loss_se", "cv_accuracy",
                "cv_accuracy_se", "nonzero", "epochs", "converged")


def path_csv(path_run, n_rows: int) -> str:
    """path.csv: one row per lambda (largest first): scikit-learn's C = 1 / (lambda n), the
    penalties, the CV loss and accuracy (mean, SE), the non-zero weights and the epochs of the
    fit on all rows."""
    from .path import penalties

    cv, full = path_run.cv, path_run.full
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(PATH_COLUMNS)
    for i, lam in enumerate(cv.lambdas):
        l2, l1 = penalties(float(lam), path_run.l1_ratio)
        writer.writerow([repr(float(lam)), repr(1.0 / (float(lam) * n_rows)), repr(l2),
                         repr(l1), repr(float(cv.loss_mean[i])), repr(float(cv.loss_se[i])),
                         repr(float(cv.accuracy_mean[i])), repr(float(cv.accuracy_se[i])),
                         int(full.nonzero[i]), int(full.epochs[i]), bool(full.converged[i])])
    return out.getvalue()


def plot_cv(path_run, path: str | Path, title: str = "") -> None:
    """The CV loss (mean +- SE over the folds) against log10 lambda, lambda_min and
    lambda_1se marked, the non-zero weights along the top."""
    cv, full = path_run.cv, path_run.full
    x = np.log10(cv.lambdas)
    figure = _figure(8, 5)
    ax = figure.subplots()
    ax.errorbar(x, cv.loss_mean, yerr=cv.loss_se, fmt="o", markersize=3, capsize=2,
                color="tab:red", ecolor="grey", label="CV cross-entropy (mean +- SE)")
    for index, style, name in ((cv.index_min, "--", "lambda_min"), (cv.index_1se, ":",
                                                                    "lambda_1se")):
        ax.axvline(x[index], linestyle=style, color="black",
                   label=f"{name} = {cv.lambdas[index]:.3g}")
    top = ax.secondary_xaxis("top")
    ticks = np.linspace(0, len(x) - 1, min(len(x), 8)).round().astype(int)
    top.set_xticks(x[ticks], [str(int(full.nonzero[i])) for i in ticks])
    top.set_xlabel("non-zero weights")
    ax.set_xlabel("log10(lambda)")
    ax.set_ylabel("held-out cross-entropy")
    ax.invert_xaxis()  # from the simplest model to the least penalised, as glmnet reads
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title, pad=30)
    _save_png(figure, path)


def plot_coef_path(path_run, feature_names: list[str], class_names: list[str],
                   path: str | Path) -> None:
    """Each weight (standardised features, as trained) against log10 lambda: a panel per
    output (up to 6; beyond, one panel of each feature's norm over the classes); the ten
    largest at the smallest lambda named."""
    params = path_run.full.params[:, :-1, :]  # (n_lambdas, n_features, n_outputs)
    x = np.log10(path_run.cv.lambdas)
    if params.shape[2] > 6:
        params = np.linalg.norm(params, axis=2, keepdims=True)
        class_names = ["norm over the classes"]
    n_panels = params.shape[2]
    figure = _figure(8, 3 + 2.5 * n_panels)
    axes = np.atleast_1d(figure.subplots(n_panels, 1, sharex=True, squeeze=False)[:, 0])
    for k, ax in enumerate(axes):
        final = np.abs(params[-1, :, k])
        named = {int(j) for j in np.argsort(final)[::-1][:10] if final[j] > 0}
        for j in range(params.shape[1]):
            ax.plot(x, params[:, j, k], linewidth=1,
                    label=feature_names[j] if j in named else None)
        ax.axvline(x[path_run.selected], linestyle=":", color="black")
        ax.set_ylabel(f"weight: {class_names[k]}" if n_panels > 1 else "weight")
        ax.grid(alpha=0.3)
        if named:
            ax.legend(fontsize="x-small", loc="upper left")
    axes[-1].set_xlabel("log10(lambda)  (dotted: the chosen lambda)")
    axes[-1].invert_xaxis()
    _save_png(figure, path)


def write_path(run_dir: str | Path, path_run) -> None:
    """The files of a path's directory: path.csv, cv.png, coef_path.png, then the refitted
    run's files (``write_run``; summary.json last)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    run = path_run.run
    write_text(run_dir / "path.csv", path_csv(path_run, run.summary["n_train"]))
    plot_cv(path_run, run_dir / "cv.png", title=str(run.config.data.source))
    model = run.model
    classes = [str(c) for c in model.classes]
    outputs = classes if len(path_run.full.params[0, 0]) == len(classes) else [classes[-1]]
    plot_coef_path(path_run, list(model.feature_names), outputs, run_dir / "coef_path.png")
    write_run(run_dir, run)


def write_run(run_dir: str | Path, run) -> None:
    """Write the files of a run directory: config.toml, metrics.csv, model.npz, loss.png and
    summary.json (the last, so that a run with a summary is complete)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.toml", to_toml(run.config))
    write_text(run_dir / "metrics.csv", history_csv(run.history))
    run.model.save(run_dir / "model.npz")
    if len(run.history):
        plot_history(run.history, run_dir / "loss.png", title=str(run.config.data.source))
    write_text(run_dir / "summary.json", to_json(run.summary) + "\n")


@contextlib.contextmanager
def claimed(run_dir: str | Path, existing: str = "refuse") -> Iterator[Path]:
    """The run directory, held by this process while the block runs: made if need be, and
    claimed by creating its lock file atomically (O_EXCL), so that of several runs started on
    one directory exactly one goes on and the others fail naming it. A lock whose process no
    longer runs is taken over. ``existing`` says what a run found there means: "refuse" (an
    error), "replace" (--force: its files are set aside, removed when the block ends well and
    put back if it fails) or "resume" (they stay).

    If the block fails, a new run's files are removed (none of a half-made run is left), but
    config.toml and the checkpoint stay where there is a checkpoint (``--resume`` goes on
    from them); a resumed run keeps its files unless the operating system failed (a full
    disk), when its finished-run files are removed, since they would not belong together. A
    directory this made and left empty is removed."""
    run_dir = Path(run_dir)
    made = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / LOCK_FILE
    _take_lock(lock)
    aside = run_dir / f".replaced-{os.getpid()}"
    try:
        found = [name for name in (*RUN_FILES, CHECKPOINT_FILE) if (run_dir / name).exists()]
        if existing == "refuse" and set(found) & set(RUN_FILES):
            again = " or --resume to go on" if CHECKPOINT_FILE in found else ""
            raise XentError(f"{run_dir}: a run directory exists there; pass --force to "
                            f"overwrite it{again}, or -o to choose another")
        if existing == "replace" and found:
            aside.mkdir()
            for name in found:
                os.replace(run_dir / name, aside / name)
        try:
            yield run_dir
        except Exception as exc:
            if existing != "resume" or isinstance(exc, OSError):
                resumable = (run_dir / CHECKPOINT_FILE).exists() and existing != "replace"
                kept = ("config.toml", CHECKPOINT_FILE) if resumable else ()
                for name in (*RUN_FILES, CHECKPOINT_FILE):
                    if name not in kept:
                        (run_dir / name).unlink(missing_ok=True)
            if aside.exists():
                for previous in aside.iterdir():
                    os.replace(previous, run_dir / previous.name)
            raise
    finally:
        if aside.exists():
            shutil.rmtree(aside, ignore_errors=True)
        lock.unlink(missing_ok=True)
        if made and not any(run_dir.iterdir()):
            run_dir.rmdir()


def _take_lock(lock: Path) -> None:
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _lock_owner(lock)
            if owner is not None:
                raise XentError(f"{lock.parent}: another xent run (process {owner}) is "
                                "writing there; wait for it to end, or choose another -o (if "
                                f"no xent runs there, remove {lock})") from None
            stale = lock.with_name(f"{lock.name}.{os.getpid()}.stale")
            with contextlib.suppress(FileNotFoundError):  # one taker wins the rename
                os.rename(lock, stale)
                stale.unlink()
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(str(os.getpid()))
        return
    raise XentError(f"{lock.parent}: cannot claim the run directory (its lock file "
                    f"{LOCK_FILE} keeps changing); choose another -o")


def _lock_owner(lock: Path) -> int | str | None:
    """The live process holding ``lock`` (its pid, or "unknown" while it is being written),
    or None when the lock is stale."""
    try:
        text = lock.read_text(encoding="ascii").strip()
        age = time.time() - lock.stat().st_mtime
    except (OSError, UnicodeDecodeError):
        return None
    if not text.isdigit():
        return "unknown" if age < _EMPTY_LOCK_SECONDS else None
    pid = int(text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    return pid


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> None:
    """The training state, to go on from with ``xent train --resume``: arrays for the params
    and optimiser state (its learning rate included) and, for a narrowed run, the features
    they cover (``Checkpoint.columns``); a JSON header for the rest (history, counters,
    generator state, the hash of the data it was trained on)."""
    arrays = {"params": checkpoint.params}
    if checkpoint.best_params is not None:
        arrays["best_params"] = checkpoint.best_params
    arrays.update({f"opt_{k}": np.asarray(v) for k, v in checkpoint.optimizer_state.items()})
    if checkpoint.columns is not None:
        arrays["columns"] = checkpoint.columns
    header = {
        "format": CHECKPOINT_FORMAT, "version": 1, "epoch": checkpoint.epoch,
        "grad_norm0": checkpoint.grad_norm0,
        "best_val": checkpoint.best_val if math.isfinite(checkpoint.best_val) else None,
        "epochs_since_best": checkpoint.epochs_since_best, "rng_state": checkpoint.rng_state,
        "elapsed": checkpoint.elapsed, "exact": checkpoint.exact,
        "data_sha256": checkpoint.data_sha256,
        "history": [[getattr(r, c) for c in HISTORY_COLUMNS] for r in checkpoint.history],
    }
    arrays["header"] = np.array(json.dumps(header))
    write_npz(path, arrays)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """A checkpoint written by ``save_checkpoint``, with the hash of the data it was trained
    on."""
    path = Path(path)
    if not path.is_file():
        raise XentError(f"{path}: no checkpoint to resume from (was the run started with "
                        "checkpoints, by this version of xent?)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
        header = json.loads(str(arrays["header"]))
        if header.get("format") != CHECKPOINT_FORMAT or header.get("version") != 1:
            raise ValueError("not a xent checkpoint of version 1")
        history = [EpochRecord(*row) for row in header["history"]]
        state = {k[4:]: v for k, v in arrays.items() if k.startswith("opt_")}
        if state and "lr" not in state and header.get("lr") is not None:
            state["lr"] = np.asarray(header["lr"])  # written before lr moved into the state
        checkpoint = Checkpoint(
            int(header["epoch"]), arrays["params"], state, history, header["grad_norm0"],
            math.inf if header["best_val"] is None else header["best_val"],
            arrays.get("best_params"), int(header["epochs_since_best"]), header["rng_state"],
            float(header["elapsed"]), bool(header.get("exact", False)),
            header.get("data_sha256"), arrays.get("columns"))
    except MemoryError:
        raise
    except Exception as exc:  # damaged bytes fail in many ways inside zipfile and numpy
        raise XentError(f"{path}: the checkpoint cannot be read ({exc})") from None
    return checkpoint


def _fmt(value, spec=".4f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        width = spec.split(".")[0]
        return "-".rjust(int(width) if width.isdigit() else 0)
    return format(value, spec)


def summary_text(summary: dict) -> str:
    """The end-of-training summary, for people."""
    verdict = "converged" if summary["converged"] else "did NOT converge"
    lines = [
        f"stopped: {summary['stop_reason']} after {summary['epochs']} epochs "
        f"({verdict}; |g|/|g0| = {_fmt(summary.get('grad_norm_rel'), '.2e')}), "
        f"{summary['seconds']:.2f} s",
        f"objective {_fmt(summary['objective'], '.6f')}   "
        f"train loss {_fmt(summary['train_loss'])}  accuracy {_fmt(summary['train_accuracy'])}",
        f"val loss {_fmt(summary['val_loss'])}  accuracy {_fmt(summary['val_accuracy'])}   "
        f"(class-prior baseline loss {_fmt(summary['baseline_loss'])})",
    ]
    if summary.get("target_entropy"):
        lines.append(
            f"soft targets: train loss = H(P) {summary['target_entropy']:.4f} (the floor) "
            f"+ KL(P||Q) {summary['kl_divergence']:.4f}"
        )
    lines += [f"diagnosis: {line}" for line in summary.get("diagnostics") or []]
    return "\n".join(lines)


def evaluation_text(result: dict) -> str:
    """``xent eval``'s report: n, log-loss, accuracy, confusion matrix, per-class scores."""
    classes = [str(c) for c in result["classes"]]
    width = max(9, *(len(c) for c in classes)) + 1
    lines = [
        f"n_samples  {result['n_samples']}",
        f"log_loss   {result['log_loss']:.6f}",
        f"accuracy   {result['accuracy']:.4f}",
        f"brier      {result['brier']:.6f}",
        f"ece        {result['ece']:.6f}   (15 bins of the top label's confidence)",
        "",
        "confusion matrix (rows: true class, columns: predicted)",
        " " * width + "".join(c.rjust(width) for c in classes),
    ]
    for cls, row in zip(classes, result["confusion_matrix"], strict=True):
        lines.append(cls.rjust(width) + "".join(str(v).rjust(width) for v in row))
    lines += ["", "class".rjust(width) + "precision".rjust(11) + "recall".rjust(9)
              + "f1".rjust(9) + "support".rjust(9)]
    for row in result["per_class"]:
        lines.append(
            str(row["class"]).rjust(width) + f"{row['precision']:11.4f}{row['recall']:9.4f}"
            f"{row['f1']:9.4f}{row['support']:9d}"
        )
    return "\n".join(lines)


# ---- what the model says: the inference table ----------------------------------------------

INFERENCE_FILE = "inference.json"
COEFFICIENTS_FILE = "coefficients.csv"
_COEFFICIENT_COLUMNS = ("class", "feature", "coef", "std_err", "z", "p_value", "ci_low",
                        "ci_high", "odds_ratio")


def coefficients_csv(table: dict) -> str:
    """The coefficient rows of an inference table as CSV (floats exactly, empty for NaN)."""
    columns = [c for c in _COEFFICIENT_COLUMNS if c in table["coefficients"][0]]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in table["coefficients"]:
        writer.writerow("" if isinstance(row[c], float) and math.isnan(row[c]) else
                        repr(row[c]) if isinstance(row[c], float) else row[c] for c in columns)
    return out.getvalue()


def write_inference(run_dir: str | Path, table: dict) -> None:
    write_text(Path(run_dir) / COEFFICIENTS_FILE, coefficients_csv(table))
    write_text(Path(run_dir) / INFERENCE_FILE, to_json(table) + "\n")


def read_inference(run_dir: str | Path) -> dict:
    path = Path(run_dir) / INFERENCE_FILE
    if not Path(run_dir).is_dir():
        raise XentError(f"{run_dir}: no such run directory (without DATA, inspect shows the "
                        "table a run directory holds)")
    if not path.is_file():
        raise XentError(f"{run_dir}: no inference table; give DATA (the training data) to "
                        "compute one, or train with --inference")
    return json.loads(path.read_text(encoding="utf-8"))


def inference_text(table: dict) -> str:
    """The table as statsmodels prints a Logit/MNLogit summary: coefficients, then the
    likelihood figures."""
    odds = "odds_ratio" in table["coefficients"][0]
    width = max(12, *(len(str(r["feature"])) for r in table["coefficients"])) + 1
    header = (f"{'feature':<{width}}{'coef':>12}{'std err':>11}{'z':>9}{'P>|z|':>9}"
              f"{'[0.025':>12}{'0.975]':>12}" + (f"{'odds ratio':>12}" if odds else ""))
    lines = [f"coefficients ({table['form']}; in the data's own units)"]
    current = object()
    for row in table["coefficients"]:
        if row["class"] != current:
            current = row["class"]
            lines += ["", f"class {current!r}", header]
        lines.append(f"{str(row['feature']):<{width}}{_fmt(row['coef'], '12.5g')}"
                     f"{_fmt(row['std_err'], '11.4g')}{_fmt(row['z'], '9.3f')}"
                     f"{_fmt(row['p_value'], '9.4f')}{_fmt(row['ci_low'], '12.5g')}"
                     f"{_fmt(row['ci_high'], '12.5g')}"
                     + (_fmt(row["odds_ratio"], "12.5g") if odds else ""))
    lines += [
        "",
        f"n {table['n']}   log-likelihood {table['log_likelihood']:.6f}   "
        f"null (class priors) {table['null_log_likelihood']:.6f}",
        f"likelihood-ratio {table['lr_stat']:.4f} on {table['lr_df']} df, "
        f"p = {table['lr_pvalue']:.4g}   AIC {table['aic']:.4f}   BIC {table['bic']:.4f}   "
        f"pseudo-R^2 (McFadden) {table['pseudo_r2']:.4f}",
    ]
    lines += [f"note: {note}" for note in table.get("notes") or []]
    return "\n".join(lines)


# ---- comparing runs: leaderboard and overlay plot -----------------------------------------

def read_summary(run_dir: str | Path) -> dict:
    """A run directory's summary.json (ValueError if it is not valid JSON)."""
    return json.loads((Path(run_dir) / "summary.json").read_text(encoding="utf-8"))


def read_metrics(run_dir: str | Path) -> dict[str, np.ndarray]:
    """A run directory's metrics.csv as columns of floats."""
    with open(Path(run_dir) / "metrics.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {c: np.array([float(r[c]) for r in rows]) for c in HISTORY_COLUMNS}


def _flat_config(summary: dict) -> dict:
    return {f"{section}.{key}": value
            for section, values in (summary.get("config") or {}).items()
            for key, value in values.items()}


def leaderboard(run_dirs: list[str | Path],
                strict: bool = False) -> tuple[list[dict], list[str], list[str]]:
    """One row per finished run, best first, the settings that differ between runs, and what
    a reader of the ranking should know (``comparison_notes``).

    Rows: run, the differing settings, best and final validation loss and accuracy (a path's
    CV loss at its chosen lambda, where one is listed), epochs, seconds, converged. Sorted by
    final validation loss or CV loss (runs with neither last, by training loss). A directory
    that is not a finished run is passed over (a sweep's unfinished points), or with
    ``strict`` is an error that names it.
    """
    loaded = []
    for run_dir in run_dirs:
        try:
            loaded.append((Path(run_dir), read_summary(run_dir), read_metrics(run_dir)))
        except (OSError, ValueError, KeyError):
            if strict:
                raise XentError(f"{run_dir}: not a finished run directory (no readable "
                                "summary.json and metrics.csv); give directories that "
                                "`xent train` finished") from None
    configs = [_flat_config(summary) for _, summary, _ in loaded]
    keys = sorted({k for c in configs for k in c})
    varied = [k for k in keys if len({repr(c.get(k)) for c in configs}) > 1]
    rows = []
    for (run_dir, summary, metrics), config in zip(loaded, configs, strict=True):
        val_loss, val_acc = metrics["val_loss"], metrics["val_accuracy"]
        has_val = bool(np.any(np.isfinite(val_loss)))
        row = {"run": run_dir.name}
        row.update({k: config.get(k) for k in varied})
        row.update({
            "best_val_loss": float(np.nanmin(val_loss)) if has_val else None,
            "val_loss": summary.get("val_loss"),
            "best_val_accuracy": float(np.nanmax(val_acc)) if has_val else None,
            "val_accuracy": summary.get("val_accuracy"),
            "cv_loss": (summary.get("path") or {}).get("selected", {}).get("cv_loss"),
            "train_loss": summary.get("train_loss"),
            "objective": summary.get("objective"),
            "epochs": summary.get("epochs"),
            "seconds": summary.get("seconds"),
            "converged": summary.get("converged"),
            "stop_reason": summary.get("stop_reason"),
        })
        rows.append(row)
    rows.sort(key=_held_out_loss)
    if all(r["cv_loss"] is None for r in rows):
        for row in rows:
            del row["cv_loss"]
    return rows, varied, comparison_notes([summary for _, summary, _ in loaded], varied)


#: the settings that choose a run's validation rows, given its data
SPLIT_SETTINGS = ("data.val_fraction", "data.seed", "data.impute")


def comparison_notes(summaries: list[dict], varied: list[str]) -> list[str]:
    """Runs whose held-out losses are not over the same rows: trained on different data (by
    the data's SHA-256, or another label column), or holding out other validation rows (the
    split's settings differ)."""
    data = {(s.get("data_sha256"), _flat_config(s).get("data.target")) for s in summaries}
    if len(data) > 1:
        return [f"the runs were trained on {len(data)} different data sets (by their SHA-256 "
                "and label column): their losses are over different rows, and the ranking "
                "compares them as if they were not"]
    split = [k for k in SPLIT_SETTINGS if k in varied]
    if split:
        verb = "differs" if len(split) == 1 else "differ"
        return [f"the runs hold out different validation rows ({', '.join(split)} {verb}): "
                "their validation losses compare only roughly, not row for row"]
    return []


def _held_out_loss(row: dict) -> tuple:
    """Sorting key: runs by validation loss, paths by their CV loss at the chosen lambda,
    then runs with neither by training loss."""
    held_out = row["val_loss"] if row["val_loss"] is not None else row["cv_loss"]
    return held_out is None, held_out if held_out is not None else row["train_loss"]


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def leaderboard_markdown(rows: list[dict]) -> str:
    if not rows:
        return "(no finished runs)\n"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_leaderboard(rows: list[dict], run_dirs: dict[str, Path], out_dir: str | Path) -> None:
    """leaderboard.csv, leaderboard.md and curves.png (every run's validation loss, or
    training loss where there is no validation part) in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in r.items()} for r in rows)
    write_text(out_dir / "leaderboard.csv", buffer.getvalue())
    write_text(out_dir / "leaderboard.md", leaderboard_markdown(rows))
    _plot_overlay([(r["run"], read_metrics(run_dirs[r["run"]])) for r in rows],
                  out_dir / "curves.png")


def _plot_overlay(curves, path: Path) -> None:
    figure = _figure(8, 5)
    ax = figure.subplots()
    for name, metrics in curves:
        use_val = np.any(np.isfinite(metrics["val_loss"]))
        values = metrics["val_loss"] if use_val else metrics["train_loss"]
        ax.plot(metrics["epoch"], values, label=name + ("" if use_val else " (train)"))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation cross-entropy")
    ax.set_xscale("symlog", linthresh=10)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize="small")
    _save_png(figure, path)
