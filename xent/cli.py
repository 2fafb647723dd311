"""The ``xent`` command line: a thin shell over ``xent.api``.

Options become config overrides; results go to stdout, progress and diagnostics to stderr;
xent's own errors become one line on stderr and an exit code (see ``XentError``):
0 ok, 1 data/model/runtime error, 2 usage or config error, 3 did not converge (--strict),
4 diverged, 130 interrupted.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import signal
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path

import click
import numpy as np

from . import __version__, api
from . import config as cfg
from .atomic import atomic_open, write_text
from .data import BUILTIN_PREFIX, data_notes, describe_builtin
from .errors import ConfigError, DivergenceError, XentError
from .processes import large_arrays_outside_the_heap
from .report import (
    CHECKPOINT_FILE,
    claimed,
    evaluation_text,
    inference_text,
    leaderboard,
    leaderboard_markdown,
    load_checkpoint,
    plot_reliability,
    read_inference,
    save_checkpoint,
    summary_text,
    to_json,
    write_inference,
    write_leaderboard,
    write_path,
    write_run,
)
from .threads import available_cores
from .train import Hooks
from .warmup import JOBS as WARM_JOBS

EXIT_NOT_CONVERGED = 3
EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE, as a shell reports a program killed by a closed pipe


class _Stderr:
    """Progress, notes and errors for the user. A stderr that closes (``2>&1 | head``) must
    never stop the work: what can no longer be shown is dropped."""

    closed = False

    @classmethod
    def write(cls, message: str, nl: bool = True) -> None:
        if cls.closed:
            return
        try:
            click.echo(message, err=True, nl=nl)
        except OSError:  # EPIPE, or a terminal that went away
            cls.closed = True
            with contextlib.suppress(OSError):  # nor may Python's flush at exit complain
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stderr.fileno())


def _err(message: str, nl: bool = True) -> None:
    _Stderr.write(message, nl)


def _note(message: str | None) -> None:
    if message:
        _err(message)


def _notes(messages: list[str]) -> None:
    for message in messages:
        _err(message)


_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def _show_warning(message, category, filename, lineno, file=None, line=None,
                  shown=warnings.showwarning):
    """xent's own warnings (a cache it could not save, say) as one line, as its errors are;
    other libraries' warnings as Python shows them."""
    if os.path.abspath(filename).startswith(_PACKAGE + os.sep):
        _err(f"xent: warning: {message}")
    else:
        shown(message, category, filename, lineno, file, line)


class _NoteHandler(logging.Handler):
    """xent's notes (its loggers' INFO records: a kernel compiled, say) as lines on stderr."""

    def emit(self, record):
        _err(f"xent: {record.getMessage()}")


_NOTES = logging.getLogger("xent")


def _show_notes(shown: bool = True) -> None:
    """xent's notes on stderr (a library's are silent unless its user asks), or, with
    ``shown`` False (-q), only its warnings."""
    if not any(isinstance(h, _NoteHandler) for h in _NOTES.handlers):
        _NOTES.addHandler(_NoteHandler())
        _NOTES.propagate = False
    _NOTES.setLevel(logging.INFO if shown else logging.WARNING)


class XentGroup(click.Group):
    """Turns xent's errors (and the operating system's, e.g. a full disk) into one line on
    stderr and an exit code, never a traceback; its warnings into one line too."""

    def invoke(self, ctx):
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning
                _show_notes()
                return super().invoke(ctx)
        except XentError as exc:
            _err(f"xent: error: {exc}")
            ctx.exit(exc.exit_code)
        except BrokenPipeError:  # stdout closed by its reader (`| head`): end quietly
            _quiet_stdout()
            ctx.exit(EXIT_CLOSED_PIPE)
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            _err(f"xent: error: {where}{exc.strerror or exc}")
            ctx.exit(1)


@click.group(cls=XentGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="xent")
def cli():
    """Sigmoid and softmax regression trained on the cross-entropy gradient X^T(Q - P).

    DATA is a CSV file (header row; label column --target, default the last), a LIBSVM file,
    or sklearn:NAME for a bundled data set (see `xent datasets`).
    """


# ---- xent train ---------------------------------------------------------------------------

def _lr_type(text):
    return text if text == "auto" else cfg.parse_value(text)


#: command-line option -> config key. Each option's help and shown default come from config.py.
TRAIN_OPTIONS = {
    "target": "data.target",
    "weight": "data.weight",
    "link": "model.link",
    "optimizer": "optim.optimizer",
    "lr": "optim.lr",
    "lr_decay": "optim.lr_decay",
    "epochs": "optim.epochs",
    "batch_size": "optim.batch_size",
    "tol": "optim.tol",
    "l2": "model.l2",
    "l1": "model.l1",
    "label_smoothing": "model.label_smoothing",
    "class_weight": "model.class_weight",
    "patience": "optim.patience",
    "val_fraction": "data.val_fraction",
    "seed": "data.seed",
    "impute": "data.impute",
    "sep": "data.sep",
    "na_values": "data.na_values",
    "thousands": "data.thousands",
    "decimal": "data.decimal",
    "encoding": "data.encoding",
    "no_header": "data.no_header",
    "ignore": "data.ignore",
    "dtype": "data.dtype",
    "lr_backoff": "optim.lr_backoff",
    "labels": "data.labels",
    "text": "data.text",
    "ngrams": "data.ngrams",
    "buckets": "data.buckets",
    "text_norm": "data.text_norm",
    "tfidf": "data.tfidf",
    "stream": "data.stream",
    "chunk_rows": "data.chunk_rows",
    "engine": "data.engine",
    "threads": "optim.threads",
    "device": "optim.device",
    "tf32": "optim.tf32",
}
#: what may change when a run is resumed: the budget, the stopping rule and the threads, not
#: the objective
RESUMABLE = {"epochs", "tol", "patience", "threads"}


#: `xent path` options -> config keys: its [path] table, and train's options less those the
#: path decides (the penalty, the optimiser) or has no use for (a validation part, mini-batches)
PATH_OPTIONS = {
    "l1_ratio": "path.l1_ratio",
    "n_lambdas": "path.n_lambdas",
    "lambda_min_ratio": "path.lambda_min_ratio",
    "folds": "path.folds",
    "select": "path.select",
    "optimizer": "path.optimizer",
} | {name: key for name, key in TRAIN_OPTIONS.items()
     if name not in ("l1", "l2", "optimizer", "patience", "val_fraction", "batch_size",
                     "engine")}


def _options_for(mapping: dict[str, str]):
    """A decorator adding one option per config key of ``mapping``, its help, type, choices
    and shown default taken from config.py."""

    def decorate(func):
        defaults = cfg.Config()
        for name in reversed(mapping):
            key = mapping[name]
            meta = cfg.setting_field(key)
            default = defaults.get(key)
            if isinstance(default, bool):
                func = click.option(f"--{name.replace('_', '-')}", name, is_flag=True,
                                    help=meta.metadata["help"])(func)
                continue
            if meta.metadata["choices"]:
                kind = click.Choice(meta.metadata["choices"])
            elif key == "optim.lr":
                kind = _lr_type
            else:
                kind = type(default)
            func = click.option(
                f"--{name.replace('_', '-')}", name, type=kind, default=default,
                show_default=key != "data.target", help=meta.metadata["help"],
                metavar="NUMBER|auto" if key == "optim.lr" else None,
            )(func)
        return func

    return decorate


_config_options = _options_for(TRAIN_OPTIONS)


def _run_options(func):
    """The options every command that trains takes besides the settings: how to read DATA,
    a config file and overrides, the output directory and what to print."""
    for option in reversed((
        click.option("--standardize/--no-standardize", default=True, show_default=True,
                     help="Standardise features (mean, std) fitted on the training part."),
        click.option("--zero-based/--one-based", "zero_based", default=None,
                     help="LIBSVM feature indices start at 0 / at 1 (recorded in the model). "
                          " [default: zero-based if an index 0 appears]"),
        click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False),
                     help="TOML file of settings (see configs/)."),
        click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE",
                     help="Override one setting; repeatable."),
        click.option("-o", "--out", type=click.Path(file_okay=False),
                     help="Run directory.  [default: runs/<data>-<time>]"),
        click.option("--force", is_flag=True, help="Overwrite an existing run directory."),
        click.option("-q", "--quiet", is_flag=True, help="No progress or summary on stderr."),
        click.option("--json", "as_json", is_flag=True,
                     help="Print the summary as JSON on stdout."),
    )):
        func = option(func)
    return func


def _given(ctx: click.Context, name: str) -> bool:
    """Whether option ``name`` was typed (not just its default), so a config file's value
    is overridden only by options the user gave."""
    source = ctx.get_parameter_source(name)
    return source not in (None, click.core.ParameterSource.DEFAULT)


def _resolve_config(ctx, data, config_file, sets, standardize, zero_based,
                    options, mapping=TRAIN_OPTIONS, text_defaults=False) -> cfg.Config:
    """defaults < --config file < --set key=value < options typed < DATA; with
    ``text_defaults``, ``api.with_implied_defaults`` (text, GPU) where none of these set a key."""
    config = cfg.load_toml(config_file) if config_file else cfg.Config()
    from_file = cfg.keys_set(config)
    overrides = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: write it as section.key=value")
        overrides[key.strip()] = cfg.parse_value(value.strip())
    config = cfg.with_overrides(config, overrides, "--set")
    given = {mapping[name]: value for name, value in options.items() if _given(ctx, name)}
    if _given(ctx, "standardize"):
        given["data.standardize"] = standardize
    if zero_based is not None:
        given["data.libsvm_base"] = "zero" if zero_based else "one"
    if data is not None:
        given["data.source"] = data
    config = cfg.with_overrides(config, given, "option")
    if not config.data.source:
        raise click.UsageError("give DATA (a CSV, a LIBSVM file or sklearn:NAME) or --config")
    if text_defaults:
        config = api.with_implied_defaults(config, from_file | set(overrides) | set(given))
    return config


def _resume_settings(ctx, run_dir: Path, data, config_file, sets, options):
    """The saved settings of ``run_dir`` with a new budget or stopping rule, and its
    checkpoint."""
    changed = sorted(n for n in options if _given(ctx, n) and n not in RESUMABLE)
    if data or config_file or sets or changed or _given(ctx, "standardize") or \
            _given(ctx, "zero_based"):
        named = ", ".join(f"--{n.replace('_', '-')}" for n in changed) or "DATA/--config/--set"
        raise click.UsageError(f"--resume continues the run as it was; {named} would change "
                               "it (only --epochs, --tol and --patience may)")
    config = cfg.load_toml(run_dir / "config.toml")
    given = {TRAIN_OPTIONS[n]: options[n] for n in RESUMABLE if _given(ctx, n)}
    config = cfg.with_overrides(config, given, "option")
    return config, load_checkpoint(run_dir / CHECKPOINT_FILE)


class StoppedBeforeTraining(Exception):
    """Ctrl-C or SIGTERM before the first epoch: the run directory is cleaned up as after any
    failure (``claimed``), and the command exits with the signal's code."""

    def __init__(self, exit_code: int):
        super().__init__(exit_code)
        self.exit_code = exit_code


class StopOnSignal:
    """While active, the first SIGINT (Ctrl-C) or SIGTERM asks training to stop after the
    current epoch (it then saves everything); a second one stops at once (KeyboardInterrupt),
    and so does the first with ``at_once``. ``exit_code`` is 130 for SIGINT and 143 for
    SIGTERM, as shells report them."""

    def __init__(self, at_once: bool = False):
        self.signal_number = None
        self.at_once = at_once

    def __call__(self) -> bool:
        return self.signal_number is not None

    @property
    def exit_code(self) -> int:
        return 128 + (self.signal_number or signal.SIGINT)

    def _handle(self, number, frame):
        if self.signal_number is not None or self.at_once:
            self.signal_number = self.signal_number or number
            raise KeyboardInterrupt
        self.signal_number = number
        _err("\nxent: stopping after this epoch (again to stop now)")

    def __enter__(self):
        self.previous = {}
        for number in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
                self.previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc):
        for number, handler in self.previous.items():
            signal.signal(number, handler)
        return False


def _default_run_dir(source: str) -> Path:
    name = source[len(BUILTIN_PREFIX):] if source.startswith(BUILTIN_PREFIX) else Path(source).stem
    return Path("runs") / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


class Progress:
    """The progress table on stderr: rows at epochs 0, 1, 2, 5, 10, 20, 50, ... and at least
    every few seconds, plus the last; on a terminal, a progress bar between rows."""

    HEADER = (f"{'epoch':>7} {'train loss':>11} {'val loss':>11} {'val acc':>8} "
              f"{'|g|/|g0|':>10} {'lr':>9} {'elapsed':>8}")

    def __init__(self, max_epochs: int, every_seconds: float = 5.0):
        self.max_epochs = max_epochs
        self.every = every_seconds
        self.tty = sys.stderr.isatty()
        self.last_row = self.last_bar = -1e9
        self.last = None
        self.marks = {0} | {m * 10**e for e in range(12) for m in (1, 2, 5)}
        _err(self.HEADER)

    def row(self, r) -> str:
        def f(v, spec):
            return "-" if v != v else format(v, spec)
        return (f"{r.epoch:>7} {f(r.train_loss, '11.6f')} {f(r.val_loss, '11.6f')} "
                f"{f(r.val_accuracy, '8.4f')} {f(r.grad_norm_rel, '10.2e')} {f(r.lr, '9.3g')} "
                f"{r.seconds:7.2f}s")

    def __call__(self, record):
        now = time.monotonic()
        self.last = record
        if record.epoch in self.marks or now - self.last_row > self.every:
            self._clear()
            _err(self.row(record))
            self.last_row = now
        elif self.tty and now - self.last_bar > 0.1:
            done = min(1.0, record.epoch / max(self.max_epochs, 1))
            bar = "#" * int(30 * done) + "." * (30 - int(30 * done))
            _err(f"\r[{bar}] {record.epoch}/{self.max_epochs}", nl=False)
            self.last_bar = now

    def _clear(self):
        if self.tty and self.last_bar > 0:
            _err("\r\033[K", nl=False)

    def finish(self):
        self._clear()
        if self.last is not None and self.last_row >= 0 and self.last.epoch not in self.marks:
            _err(self.row(self.last))


def _where(scheduler, workers, config) -> str | None:
    if scheduler:
        return f"on the Dask cluster at {scheduler}"
    if config.data.engine == "dask":
        return f"on Dask: a local cluster of {workers} workers on 127.0.0.1"
    return None


def _train_into(run_dir: Path, config, table, client, progress, checkpoint, checkpoint_every,
                inference):
    """Train (stopping after the epoch on Ctrl-C or SIGTERM) and write the run directory
    (with the coefficient table, if asked for); returns (the run, the signal watcher)."""

    def save_checkpoint_file(state):
        save_checkpoint(run_dir / CHECKPOINT_FILE, state)

    with StopOnSignal() as stop:
        try:
            hooks = Hooks(progress, stop, save_checkpoint_file, checkpoint_every)
            run = api.train(config, hooks, table=table, resume=checkpoint, client=client,
                            inference=inference)
        except KeyboardInterrupt:  # before the first epoch's record: nothing to keep
            raise StoppedBeforeTraining(stop.exit_code) from None
        if progress is not None:
            progress.finish()
        write_run(run_dir, run)
        if run.inference is not None:
            write_inference(run_dir, run.inference)
    return run, stop


def _header(config: cfg.Config, table, masks) -> str:
    m, o, d = config.model, config.optim, config.data
    n_train, n_val = (int(np.count_nonzero(mask)) for mask in masks)
    if m.l2 == 0:
        penalty = "unregularised"
    else:
        penalty = f"l2 {m.l2:g} (scikit-learn C = {1.0 / (m.l2 * n_train):.4g})"
    n_classes = len(table.classes)
    classes = ", ".join(str(c) for c in table.classes[:10])
    if n_classes > 10:
        classes += ", ..."
    batch = "full batch" if not o.batch_size else f"batch {o.batch_size}"
    return (
        f"data {table.name}: n={n_train + n_val} (train {n_train}, val {n_val}), "
        f"d={api.n_encoded_features(table)}, K={n_classes} [{classes}]\n"
        f"link {api.resolved_link(config, n_classes).name}, optimizer {o.optimizer}, "
        f"lr {o.lr}, {batch}, {penalty}, epochs <= {o.epochs}, tol {o.tol:g}, seed {d.seed}, "
        f"{'standardised' if d.standardize else 'not standardised'}"
    )


def _schema(table) -> dict:
    counts = np.bincount(table.labels, minlength=len(table.classes))
    schema = table.schema
    return {
        "data": table.name,
        "n_samples": table.n_rows,
        "n_features": api.n_encoded_features(table),
        "sparse": table.sparse,
        "target": schema.target or None,
        "weight": schema.weight,
        "classes": {str(c): int(n) for c, n in zip(table.classes, counts, strict=True)},
        "categorical": {c: sorted(table.levels[j]) for j, c in enumerate(schema.categorical)},
        "missing": {c: n for c, n in table.missing_counts.items() if n},
        "features": api.encoded_feature_names(table),
        "text": None if table.text_spec is None else table.text_spec.to_dict(),
        "notes": data_notes(table),
    }


@cli.command()
@click.argument("data", required=False)
@_config_options
@_run_options
@click.option("--dry-run", is_flag=True,
              help="Print the resolved settings and the data's schema; train nothing.")
@click.option("--strict", is_flag=True, help="Exit 3 if training did not converge.")
@click.option("--inference", is_flag=True,
              help="Also write the coefficient table (standard errors, z, p, intervals; "
                   "see `xent inspect`) of the training rows: coefficients.csv, "
                   "inference.json.")
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=100, show_default=True,
              help="Write checkpoint.npz every N epochs (and always when training stops).")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False, exists=True),
              help="Go on from the checkpoint of this run directory (--epochs, --tol and "
                   "--patience may change).")
@click.pass_context
@click.option("--scheduler", metavar="ADDRESS",
              help="With --engine dask: a running scheduler (tcp://host:8786); without it a "
                   "LocalCluster on 127.0.0.1 is started and stopped.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="With --engine dask and no --scheduler: worker processes to start.")
def train(ctx, data, standardize, zero_based, config_file, sets, out, force, quiet, as_json,
          dry_run, strict, inference, checkpoint_every, resume_dir, scheduler, workers,
          **options):
    """Train a model on DATA and write a run directory.

    The run directory holds config.toml (the resolved settings: pass it to --config to run
    again), metrics.csv (one row per epoch), model.npz, loss.png, summary.json and
    checkpoint.npz. Ctrl-C or SIGTERM stops after the current epoch and saves all of them;
    --resume goes on from there.
    """
    _show_notes(not quiet)
    resume = None
    if resume_dir:
        run_dir = Path(resume_dir)
        config, resume = _resume_settings(ctx, run_dir, data, config_file, sets, options)
    else:
        config = _resolve_config(ctx, data, config_file, sets, standardize, zero_based, options,
                                 text_defaults=True)
    config = api.route(config, notify=_err)
    cluster = contextlib.nullcontext(None)
    if config.data.engine == "dask":
        from .dask_engine import connect

        cluster = connect(scheduler, workers, quiet)
    with cluster as client:
        table = api.open_table(config, client, notify=None if quiet else _err)
        if dry_run:
            click.echo(cfg.to_toml(config))
            click.echo(to_json(_schema(table)))
            return
        api.check_parameter_size(table, config)  # before the run directory is made
        if inference:  # before training, not after it: a run is never lost to this
            api.check_inference_size(api.n_encoded_features(table), len(table.classes), config)
        if resume is None:
            run_dir = Path(out) if out else _default_run_dir(config.data.source)
        existing = "resume" if resume is not None else "replace" if force else "refuse"
        announce = None if quiet else [
            _header(config, table, api.split_rows(config, table)),
            _where(scheduler, workers, config),
            None if resume is None else f"resuming {run_dir} from epoch {resume.epoch}"]
        run, stop = _claimed_run(run_dir, existing, config, table, client, resume, announce,
                                 (checkpoint_every, inference))
    summary = run.summary
    if not quiet:
        _err(summary_text(summary))
        _err(f"run directory: {run_dir}")
    if as_json:
        click.echo(to_json(dict(summary, run_dir=str(run_dir))))
    _end_of_run(summary, run_dir, stop, strict)


def _claimed_run(run_dir: Path, existing: str, config, table, client, checkpoint,
                 announce: list | None, saving: tuple):
    """Train into ``run_dir``, claimed (``existing``: refuse, replace or resume it), its
    config.toml written first; ``announce``: the lines said once it is claimed (those that
    are None left out), and progress shown; None: quiet. ``saving``: (checkpoint_every,
    inference). Returns (the run, the stop request). An error writing says what of the run
    was kept."""
    try:
        with claimed(run_dir, existing):
            # what --resume needs, written before the first epoch
            write_text(run_dir / "config.toml", cfg.to_toml(config))
            progress = None
            if announce is not None:
                for line in announce:
                    _note(line)
                progress = Progress(config.optim.epochs)
            return _train_into(run_dir, config, table, client, progress, checkpoint, *saving)
    except StoppedBeforeTraining as stopped:
        _err("\nxent: stopped before the first epoch; nothing of the run was written")
        sys.exit(stopped.exit_code)
    except OSError as exc:
        kept = (f"the checkpoint is kept: make room, then go on with `xent train --resume "
                f"{run_dir}`") if (run_dir / CHECKPOINT_FILE).exists() else \
            "nothing of the run was kept"
        raise XentError(f"{exc.filename or run_dir}: {exc.strerror or exc}; {kept}") from None


def _end_of_run(summary: dict, run_dir: Path, stop, strict: bool) -> None:
    """A run that diverged, was interrupted or (with --strict) did not converge: its
    message and exit code."""
    reason = summary["stop_reason"]
    if reason == "diverged":
        # L-BFGS chooses its own steps (its lr is None): no --lr to make smaller
        advice = "standardised features or a larger --l2" if summary["lr"] is None else \
            f"a smaller --lr (this run used {summary['lr']:.3g}) or standardised features"
        raise DivergenceError(
            f"training diverged (a non-finite loss or weight) at epoch {summary['epochs'] + 1}; "
            f"the last finite model is saved in {run_dir}. Try {advice}"
        )
    if reason == "interrupted":
        _err(f"xent: interrupted; the model so far is saved in {run_dir}; go on with "
             f"`xent train --resume {run_dir}`")
        sys.exit(stop.exit_code)
    if strict and not summary["converged"]:
        _err(f"xent: did not converge ({reason}); exit {EXIT_NOT_CONVERGED} (--strict)")
        sys.exit(EXIT_NOT_CONVERGED)


# ---- xent path ----------------------------------------------------------------------------

def _path_header(config: cfg.Config, table, jobs: int) -> str:
    p, d = config.path, config.data
    n_classes = len(table.classes)
    kind = "lasso" if p.l1_ratio == 1 else "ridge" if p.l1_ratio == 0 else "elastic net"
    return (
        f"data {table.name}: n={table.n_rows}, d={api.n_encoded_features(table)}, "
        f"K={n_classes}; link "
        f"{api.resolved_link(config, n_classes).name}\n"
        f"path: {kind} (alpha = l1_ratio {p.l1_ratio:g}), {p.n_lambdas} lambdas down to "
        f"{p.lambda_min_ratio:g} lambda_max, warm-started {p.optimizer} to tol {p.tol:g};"
        f" {p.folds}-fold CV (stratified, seed {d.seed}) in {jobs} process"
        f"{'es' if jobs > 1 else ''}; refit at lambda_{p.select} to tol {config.optim.tol:g}"
    )


def _path_text(path_summary: dict) -> str:
    lines = []
    for rule in ("min", "1se"):
        point = path_summary[rule]
        lines.append(f"lambda_{rule:<3} {point['lambda']:.4g} (C {point['C']:.4g}): CV loss "
                     f"{point['cv_loss']:.4f} +- {point['cv_loss_se']:.4f}, accuracy "
                     f"{point['cv_accuracy']:.4f}, {point['nonzero']} non-zero weights")
    if not path_summary["all_converged"]:
        lines.append("note: some fits on the path stopped before tol (path.csv, column "
                     "converged); raise --epochs")
    return "\n".join(lines)


@cli.command("path")
@click.argument("data", required=False)
@_options_for(PATH_OPTIONS)
@_run_options
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Paths fitted at once (one for all rows, one per fold; separate "
                   "processes).  [default: min(cores, folds + 1)]")
@click.pass_context
def path_command(ctx, data, standardize, zero_based, config_file, sets, out, force, quiet,
                 as_json, jobs, **options):
    """Choose the penalty: a warm-started path of lambdas with k-fold cross-validation, and the
    model refitted on all rows at the chosen lambda.

    The penalty is lambda ((1 - alpha)/2 ||W||^2 + alpha ||W||_1), alpha = --l1-ratio; the
    grid runs geometrically from lambda_max (for alpha > 0 the least lambda that zeroes every
    weight) down to --lambda-min-ratio of it. Writes path.csv (per lambda: C, the CV loss and
    accuracy with their standard errors, non-zero weights), cv.png, coef_path.png, and the
    refitted model's run directory files (model.npz, summary.json with a "path" entry, ...).
    """
    _show_notes(not quiet)
    from .path import run_path

    config = _resolve_config(ctx, data, config_file, sets, standardize, zero_based, options,
                             PATH_OPTIONS)
    jobs = jobs or min(available_cores(), config.path.folds + 1)
    run_dir = Path(out) if out else _default_run_dir(config.data.source)
    events = {"done": 0}

    def on_event(name, what, fit):
        if quiet or what != "done":
            return
        events["done"] += 1
        _err(f"[{events['done']}/{config.path.folds + 1}] {name}: {len(fit.epochs)} lambdas, "
             f"{int(fit.epochs.sum())} epochs, {fit.seconds:.2f} s")

    def header(table):
        if not quiet:
            _err(_path_header(config, table, jobs))

    with claimed(run_dir, "replace" if force else "refuse"), \
            StopOnSignal(at_once=True) as stop:
        try:
            result = run_path(config, jobs=jobs, notify=None if quiet else _err,
                              on_event=on_event, on_table=header)
        except KeyboardInterrupt:
            _err(f"xent: path interrupted; nothing was written to {run_dir}")
            sys.exit(stop.exit_code)
        try:
            write_path(run_dir, result)
        except OSError as exc:
            raise XentError(f"{exc.filename or run_dir}: {exc.strerror or exc}") from None
    summary = result.run.summary
    if not quiet:
        _err(_path_text(summary["path"]))
        _err(summary_text(summary))
        _err(f"run directory: {run_dir}")
    if as_json:
        click.echo(to_json(dict(summary, run_dir=str(run_dir))))


# ---- xent eval / predict / datasets -------------------------------------------------------

def _model_data_options(func):
    """MODEL and DATA, and how to read DATA: as the model's training data were read, with
    this file's own delimiter (sniffed unless --sep), text encoding and LIBSVM index base (if
    given)."""
    func = click.option("--zero-based/--one-based", "zero_based", default=None,
                        help="LIBSVM feature indices of DATA.  [default: the model's]")(func)
    func = _encoding_option(func)
    func = click.option("--sep", default="", metavar="CHAR",
                        help="CSV delimiter of DATA.  [default: sniffed]")(func)
    func = click.argument("data")(func)
    return click.argument("model_path", metavar="MODEL")(func)


def _target_option(func):
    """--target of DATA for eval, inspect and trace: its label column, if not the model's."""
    return click.option("--target", default="", metavar="COLUMN",
                        help="Label column of DATA.  [default: the model's]")(func)


def _encoding_option(func):
    """--encoding of DATA for eval, predict, inspect and trace: a file's own, as its
    delimiter is (the model does not keep the training file's)."""
    return click.option("--encoding", default="utf-8", show_default=True, metavar="NAME",
                        help="Text encoding of DATA (cp1252, latin-1, ...).")(func)


def _device_option(func):
    """--device for eval and predict: where the logits X W + b are computed."""
    from .device import DEVICES

    return click.option("--device", type=click.Choice(DEVICES), default="cpu",
                        show_default=True,
                        help="Where the logits are computed: cpu, or cuda (CuPy on the first "
                             "GPU, the rows moved a block at a time; the same numbers to "
                             "rounding).")(func)


def _device_ready(device: str) -> None:
    """A GPU and CuPy for --device cuda, else the one-line error, before any data are read."""
    if device != "cpu":
        from .device import namespace

        namespace(device)


def _model_and_read(model_path, sep, zero_based, encoding):
    """The model, and how to read data for it: as its training data were, with the
    delimiter, text encoding and LIBSVM base given here."""
    model = api.load_model(model_path)
    base = None if zero_based is None else ("zero" if zero_based else "one")
    return model, api.model_read_options(model, api.delimiter_option(sep), base, encoding)


@cli.command("eval")
@_model_data_options
@_target_option
@_device_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--plot", type=click.Path(dir_okay=False), metavar="FILE.png",
              help="Draw a reliability diagram with the histogram of confidences.")
def eval_command(model_path, data, sep, encoding, zero_based, target, device, as_json, plot):
    """Evaluate MODEL (a run directory or model file) on labelled DATA: log-loss, accuracy,
    the Brier score, the expected calibration error (15 equal-width bins of the top label's
    confidence), the confusion matrix and per-class precision, recall and F1."""
    _device_ready(device)
    if plot and not Path(plot).resolve().parent.is_dir():  # before the data are read
        raise ConfigError(f"--plot {plot}: no folder {Path(plot).resolve().parent} to write "
                          "it in")
    model, read = _model_and_read(model_path, sep, zero_based, encoding)
    blocks = api.data_for_model(data, model, True, read, api.PREDICT_BLOCK_ROWS, target)
    left = api.LeftOut(name=str(data), first_line=read.first_line)
    result = api.evaluate(model, blocks, device, left_out=left)
    _notes(left.notes())
    click.echo(to_json(result) if as_json else evaluation_text(result))  # kept, come what may
    if plot:
        plot_reliability(result["calibration_bins"], plot, title=f"{data}")


@cli.command()
@_model_data_options
@click.option("-o", "--out", type=click.Path(dir_okay=False), help="Write the CSV here.")
@click.option("--proba", is_flag=True, help="Add one probability column per class.")
@_device_option
def predict(model_path, data, sep, encoding, zero_based, out, proba, device):
    """Predict a class for each row of DATA with MODEL; CSV to stdout or --out.

    The label column is not needed. Columns: prediction (the class by its original label)
    and, with --proba, proba_<class> for each class; one row per row of DATA, in order. A row
    the model cannot encode (missing values in a model trained with --impute drop) gets
    empty fields. A CSV or Parquet file is read, predicted and written a block of rows at a
    time, so it need not fit in memory; --out is written whole or not at all.
    """
    _device_ready(device)
    model, read = _model_and_read(model_path, sep, zero_based, encoding)
    left = api.LeftOut(name=str(data), first_line=read.first_line)
    pending = []  # rows before the first one the model can encode: no output until there is
    with atomic_open(out, "w") if out else \
            contextlib.nullcontext(click.get_text_stream("stdout")) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        for dataset in left.tally(api.data_for_model(data, model, False, read,
                                                     api.PREDICT_BLOCK_ROWS)):
            pending += _prediction_rows(model, dataset, proba, device)
            if left.count < left.n_read:  # something to predict: write what has waited
                if len(pending) == left.n_read:
                    writer.writerow(["prediction"] +
                                    ([f"proba_{c}" for c in model.classes] if proba else []))
                writer.writerows(pending)
                pending = []
    _notes(left.notes())


def _prediction_rows(model, dataset, proba: bool, device: str) -> list[list[str]]:
    """One CSV row per input row of ``dataset``: its predicted class (and with ``proba`` the
    class probabilities), empty fields for a row the model could not encode."""
    lines = [[""] * (1 + (model.n_classes if proba else 0)) for _ in range(dataset.n_read)]
    if dataset.n_samples:
        labels, probabilities = api.predict(model, dataset, device)
        for i, row in enumerate(dataset.positions):
            lines[row] = [labels[i]] + ([repr(float(p)) for p in probabilities[i]]
                                        if proba else [])
    return lines


@cli.command()
@click.argument("model_path", metavar="MODEL")
@click.argument("data", required=False)
@click.option("--sep", default="", metavar="CHAR", help="CSV delimiter of DATA.  [default: "
              "sniffed]")
@_encoding_option
@_target_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def inspect(model_path, data, sep, encoding, target, as_json):
    """What MODEL says, as statsmodels' Logit/MNLogit summary: each coefficient in the data's
    own units with its standard error, z, p-value and 95% interval (odds ratios for a
    sigmoid), then n, the log-likelihood and the intercept-only model's, the likelihood-ratio
    test, AIC, BIC and McFadden's pseudo-R^2.

    With DATA (the rows the model was trained on) the table is computed from the observed
    information at the optimum; without it, the table `xent train --inference` saved in the
    run directory MODEL is shown. An unpenalised softmax is shown against its first class;
    with l2 > 0 the standard errors are those of the penalised fit.
    """
    if data is None:
        table = read_inference(Path(model_path))
    else:
        model, read = _model_and_read(model_path, sep, None, encoding)
        left = api.LeftOut(name=str(data), first_line=read.first_line)
        table = api.inference(model, api.data_for_model(data, model, True, read,
                                                        api.PREDICT_BLOCK_ROWS, target), left)
        _notes(left.notes())
    click.echo(to_json(table) if as_json else inference_text(table))


@cli.command()
@click.argument("model_path", metavar="MODEL")
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx",
              show_default=True, help="The file format.")
@click.option("-o", "--out", type=click.Path(dir_okay=False), required=True,
              help="The file to write.")
def export(model_path, fmt, out):
    """Write MODEL for other runtimes: ONNX, with the column encoding, the standardisation,
    the linear layer and the link, so that onnxruntime gives xent's probabilities (outputs
    `probabilities` and `class_index`; see README)."""
    from .export import save_onnx

    save_onnx(api.load_model(model_path), out)
    _err(f"written to {out}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def datasets(as_json):
    """List the built-in data sets (use them as sklearn:NAME)."""
    rows = describe_builtin()
    if as_json:
        click.echo(to_json(rows))
        return
    click.echo(f"{'name':<22}{'n':>6}{'d':>5}{'K':>4}  classes")
    for r in rows:
        classes = ", ".join(str(c) for c in r["classes"])
        click.echo(f"{r['name']:<22}{r['n_samples']:>6}{r['n_features']:>5}"
                   f"{r['n_classes']:>4}  {classes}")


# ---- the math, visible: xent ce / gradcheck / trace ---------------------------------------

def _numbers(ctx, param, text):
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers") from None


@cli.command()
@click.option("--target", "-p", required=True, callback=_numbers, metavar="P1,P2,...",
              help="Target distribution P (or one probability p for the binary case).")
@click.option("--pred", "-q", callback=_numbers, metavar="Q1,Q2,...",
              help="Predicted distribution Q (or one probability q).")
@click.option("--logits", "-z", callback=_numbers, metavar="Z1,Z2,...",
              help="Logits instead of Q: softmax of several values, sigmoid of one.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def ce(target, pred, logits, as_json):
    """Cross-entropy H(P, Q) = -sum_k p_k log q_k, term by term.

    \b
    xent ce --target 1,0,0,0,0 --pred 0.1,0.5,0.1,0.1,0.2     # 2.302585
    xent ce --target 1 --pred 0.6                              # -p log q - (1-p) log(1-q)
    xent ce --target 0,1,0 --logits 2,1,0
    """
    from .explain import cross_entropy_terms

    if (pred is None) == (logits is None):
        raise click.UsageError("give exactly one of --pred and --logits")
    try:
        result = cross_entropy_terms(target, pred=pred, logits=logits)
    except XentError as exc:
        raise click.BadParameter(str(exc)) from None
    if as_json:
        click.echo(to_json({k: v.tolist() if isinstance(v, np.ndarray) else v
                            for k, v in result.items()}))
        return
    if result["binary"]:
        click.echo("binary: H = -p log q - (1-p) log(1-q), with P = (1-p, p), Q = (1-q, q)")
    else:
        click.echo("H(P, Q) = -sum_k p_k log q_k")
    click.echo(f"{'class':>7} {'p':>10} {'q':>12} {'log q':>14} {'-p log q':>14}")
    for k, (p, q, log_q, term) in enumerate(zip(result["p"], result["q"], result["log_q"],
                                                result["terms"], strict=True)):
        click.echo(f"{k:>7} {p:>10.4g} {q:>12.6g} {log_q:>14.6f} {term:>14.6f}")
    click.echo(f"cross-entropy = {result['cross_entropy']:.6f}")


@cli.command()
@click.argument("data")
@click.option("--target", help="Label column of a CSV (default: the last).")
@click.option("--link", type=click.Choice(["auto", "sigmoid", "softmax"]), default="auto",
              show_default=True)
@click.option("--l2", type=float, default=cfg.ModelConfig.l2, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random point.")
@click.option("--max-params", type=click.IntRange(min=1), default=400, show_default=True,
              help="Check at most this many parameters (drawn at random).")
@click.option("--tol", type=click.FloatRange(min=0.0), default=1e-5, show_default=True,
              help="Largest relative error accepted; above it the exit code is 1.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def gradcheck(data, target, link, l2, seed, max_params, tol, as_json):
    """Check the analytic gradient X^T(Q-P)/n + l2 W against central finite differences
    (J(w + h) - J(w - h)) / 2h, at a random point and after a few steps of training."""
    overrides = {"data.source": data, "model.link": link, "model.l2": l2, "data.seed": seed}
    if target:
        overrides["data.target"] = target
    report = api.gradcheck(cfg.with_overrides(cfg.Config(), overrides, "option"), max_params)
    points = [k for k in report if k == "random_point" or k.startswith("after_")]
    worst = max(report[p][part]["max_rel_error"] for p in points for part in ("W", "b"))
    if as_json:
        click.echo(to_json(dict(report, max_rel_error=worst, tol=tol, ok=worst <= tol)))
    else:
        click.echo(f"data {report['data']}, link {report['link']}, l2 {report['l2']:g}, "
                   f"parameters {report['shape'][0]} x {report['shape'][1]} (W over b)")
        click.echo(f"{'point':<16}{'part':>5}{'checked':>9}{'max abs err':>14}{'max rel err':>14}")
        for p in points:
            for part in ("W", "b"):
                r = report[p][part]
                click.echo(f"{p:<16}{part:>5}{r['n_checked']:>9}{r['max_abs_error']:>14.3e}"
                           f"{r['max_rel_error']:>14.3e}")
        verdict = "OK" if worst <= tol else "FAILED"
        click.echo(f"{verdict}: largest relative error {worst:.3e} (tolerance {tol:g})")
    if worst > tol:
        sys.exit(1)


def _vector(values, names=None, limit=12) -> str:
    values = np.atleast_1d(values)
    shown = [f"{v:.4g}" for v in values[:limit]]
    more = f", ... ({len(values)} in all)" if len(values) > limit else ""
    return "[" + ", ".join(shown) + more + "]"


@cli.command()
@_model_data_options
@_target_option
@click.option("--row", type=click.IntRange(min=0), required=True,
              help="Data row to trace (0 is the first row below the header).")
@click.option("--lr", type=float, help="Step size.  [default: the model's training lr]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def trace(model_path, data, sep, encoding, zero_based, target, row, lr, as_json):
    """One example through one gradient step: x, z = xW + b, q = link(z), p, q - p, the
    gradient x (q - p)^T and the update -lr x (q - p)^T."""
    if lr is not None:
        cfg.check_value("optim.lr", lr, "option --lr")  # training's rule: a finite lr > 0
    model, read = _model_and_read(model_path, sep, zero_based, encoding)
    t = api.trace(model, api.data_for_model(data, model, True, read, api.PREDICT_BLOCK_ROWS,
                                            target), row, lr)
    if as_json:
        click.echo(to_json({k: v.tolist() if isinstance(v, np.ndarray) else
                            ({a: b.tolist() if isinstance(b, np.ndarray) else b
                              for a, b in v.items()} if isinstance(v, dict) else v)
                            for k, v in t.items()}))
        return
    d, k = t["grad_W"].shape
    sig = t["link"] == "sigmoid"
    lines = [
        f"row {row}: label {t['label']!r} (class {t['classes'].index(t['label'])} of "
        f"{t['classes']})",
        f"x (standardised, {d} features)  = {_vector(t['x'])}",
        f"z = x W + b  ({k} logit{'s' if k > 1 else ''}) = {_vector(t['z'])}",
        f"q = {'sigmoid' if sig else 'softmax'}(z)  = {_vector(t['q'])}"
        + ("   (probability of class 1)" if sig else ""),
        f"p (target)            = {_vector(t['p'])}",
        f"q - p                 = {_vector(t['residual'])}",
        f"dE/dW = x (q - p)^T, shape ({d}, {k}); first rows:",
    ]
    for i in range(min(d, 8)):
        lines.append(f"  {t['feature_names'][i][:24]:<24} {_vector(t['grad_W'][i])}")
    lines += [
        f"dE/db = q - p         = {_vector(t['grad_b'])}",
        f"update with lr {t['lr']:.4g}: W -= lr x (q - p)^T, b -= lr (q - p)",
        f"loss of this example: {t['loss_before']:.6f} -> {t['loss_after']:.6f}",
    ]
    if sig:
        s2 = t["softmax"]
        lines += [
            "the same as a two-class softmax with logits (0, z):",
            f"  q = softmax(0, z) = {_vector(s2['q'])},  p = {_vector(s2['p'])},  "
            f"q - p = {_vector(s2['residual'])}",
            f"  loss {s2['loss']:.6f}; its gradient columns are -x(q1 - p1) and x(q1 - p1): "
            "the sigmoid's single column, twice",
        ]
    click.echo("\n".join(lines))


# ---- xent sweep / compare ----------------------------------------------------------------

def _leaderboard(run_dirs, out_dir, strict=False) -> str:
    rows, _, notes = leaderboard(run_dirs, strict)
    write_leaderboard(rows, {Path(d).name: Path(d) for d in run_dirs}, out_dir)
    _notes([f"note: {note}" for note in notes])
    return leaderboard_markdown(rows)


@cli.command()
@click.argument("sweep_file", metavar="FILE.toml", type=click.Path(dir_okay=False))
@click.option("-o", "--out", type=click.Path(file_okay=False),
              help="Sweep directory.  [default: runs/sweep-<file name>]")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Points trained at once (separate processes).")
@click.option("--resume", is_flag=True, help="Skip points already finished in the directory.")
@click.option("--force", is_flag=True, help="Rerun every point in an existing directory.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
def sweep(sweep_file, out, jobs, resume, force, quiet):
    """Train every point of the [sweep] table in FILE.toml; write a leaderboard.

    Each point is a run directory inside the sweep directory. The sweep writes
    leaderboard.csv, leaderboard.md (also printed) and curves.png, an overlay of the runs'
    validation-loss curves. Ctrl-C stops it and keeps the finished runs; --resume goes on.
    """
    _show_notes(not quiet)
    from .sweep import read_sweep, run_sweep

    points = read_sweep(sweep_file)
    sweep_dir = Path(out) if out else Path("runs") / f"sweep-{Path(sweep_file).stem}"
    started = [p for p in points if (sweep_dir / p.name).exists()]
    if started and not (resume or force):
        raise XentError(f"{sweep_dir}: the sweep has run there before; pass --resume to go on, "
                        "--force to run it again, or -o for another directory")
    done = [0]

    def on_event(point, what, summary):
        if quiet or what == "started":
            return
        done[0] += 1
        val = summary.get("val_loss")
        _err(f"[{done[0]}/{len(points)}] {what} {point.name}: "
                   f"val loss {'-' if val is None else format(val, '.6f')}, "
                   f"{summary['stop_reason']}, {summary['seconds']:.2f} s")

    with claimed(sweep_dir, "resume"), StopOnSignal(at_once=True) as stop:  # one sweep there
        try:
            run_dirs = run_sweep(points, sweep_dir, jobs=jobs, resume=resume, on_event=on_event)
        except KeyboardInterrupt:
            _leaderboard([sweep_dir / p.name for p in points], sweep_dir)
            _err(f"xent: sweep interrupted; finished runs are kept in {sweep_dir}: "
                 "run it again with --resume to go on")
            sys.exit(stop.exit_code)
    click.echo(_leaderboard(run_dirs, sweep_dir), nl=False)
    if not quiet:
        _err(f"sweep directory: {sweep_dir}")


@cli.command()
@click.argument("run_dirs", metavar="RUN_DIR...", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--out", type=click.Path(file_okay=False),
              help="Where to write the leaderboard and plot.  [default: runs/compare-<time>]")
def compare(run_dirs, out):
    """Compare finished runs: a leaderboard (printed, and written as CSV and Markdown) and an
    overlay plot of their validation-loss curves."""
    names = [Path(d).name for d in run_dirs]
    if len(set(names)) != len(names):
        raise XentError("the run directories must have different names to be compared")
    out_dir = Path(out) if out else Path("runs") / f"compare-{datetime.now():%Y%m%d-%H%M%S}"
    click.echo(_leaderboard(list(run_dirs), out_dir, strict=True), nl=False)
    _err(f"written to {out_dir}")


@cli.group()
def cache():
    """The cache (in $XENT_CACHE_DIR, else ~/.cache/xent): the parsed data files that --stream
    reads, and the compiled kernels (warm)."""


@cache.command("warm", help=(
    "Compile the kernels ahead into the cache, so that no run waits for them: those named, "
    f"else all ({', '.join(WARM_JOBS)}). The machine code is for this CPU: warm where the runs "
    "will be."))
@click.argument("kernels", nargs=-1, type=click.Choice(list(WARM_JOBS)), metavar="[KERNEL]...")
@click.option("--float32", "with_float32", is_flag=True,
              help="Also the versions for float32 data (--dtype float32, float32 .npy).")
@click.option("--jobs", type=click.IntRange(min=0), default=0, show_default=True,
              help="Kernels compiled at once, each in a process; 0 is every core.")
def cache_warm(kernels, with_float32, jobs):
    """``warmup.warm`` for the command line."""
    from .kernels import cache_folder
    from .warmup import warm

    _show_notes(False)  # its processes' "compiled" notes: it says what it compiled itself
    names = list(dict.fromkeys(kernels)) or list(WARM_JOBS)
    dtypes = ("float64", "float32") if with_float32 else ("float64",)
    jobs = jobs or available_cores()
    start = time.perf_counter()
    with StopOnSignal(at_once=True) as stop:
        try:
            _err(f"compiling {len(names)} kernel(s) for {' and '.join(dtypes)} data, "
                 f"{min(jobs, len(names))} at a time ...")
            folders = warm(names, dtypes, jobs,
                           lambda name, seconds: _err(f"  {name}: {seconds:.1f} s"))
        except KeyboardInterrupt:
            _err(f"xent: warm-up interrupted; the kernels listed above are kept in "
                 f"{cache_folder()}: run it again for the rest")
            sys.exit(stop.exit_code)
    click.echo(f"compiled {len(names)} kernel(s) in {time.perf_counter() - start:.1f} s into "
               f"{', '.join(folders)}")


@cache.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def cache_list(as_json):
    """List the cached data files, and the compiled kernels' files."""
    from .kernels import machine_code_files
    from .stream import cache_root, list_caches

    rows = list_caches()
    if as_json:
        click.echo(to_json(rows))
        return
    click.echo(f"cache directory: {cache_root()}")
    for r in rows:
        stale = "  (stale: the file changed or is gone)" if r["stale"] else ""
        click.echo(f"{r['key']}  {r['n_rows']:>10} rows  {r['bytes'] / 1e6:>9.1f} MB  "
                   f"{r['created']}  {r['source']}{stale}")
    if not rows:
        click.echo("(empty)")
    files = machine_code_files()
    click.echo(f"compiled kernels: {len(files)} file(s), "
               f"{sum(f.stat().st_size for f in files) / 1e6:.1f} MB in {_folders(files)}")


def _folders(files) -> str:
    """The folders that hold ``files`` (the compiled kernels': one per installation of xent),
    else the kernels' cache folder."""
    from .kernels import cache_folder

    return ", ".join(sorted({str(f.parent) for f in files})) or cache_folder()


@cache.command("clear")
@click.argument("keys", nargs=-1)
@click.option("--stale", is_flag=True, help="Only caches whose file changed or is gone.")
@click.option("--kernels", "compiled", is_flag=True,
              help="The compiled kernels instead (compiled again when needed, or by warm).")
def cache_clear(keys, stale, compiled):
    """Remove cached data files: those named by KEY, the stale ones, or all; or, with
    --kernels, the compiled kernels."""
    from .kernels import clear_machine_code
    from .stream import clear_caches, list_caches

    if compiled:
        if keys or stale:
            raise click.UsageError("--kernels removes the compiled kernels only: give it "
                                   "without KEY or --stale")
        removed = clear_machine_code()
        click.echo(f"removed {len(removed)} compiled kernel file(s) from {_folders(removed)}")
        return
    if stale:
        keys = [r["key"] for r in list_caches() if r["stale"]]
    removed = clear_caches(list(keys) if keys or stale else None)
    click.echo(f"removed {removed} cache(s)")


def main():
    large_arrays_outside_the_heap()  # freed arrays leave this process's memory
    cli(prog_name="xent")


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that Python's flush at exit finds no closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    main()
