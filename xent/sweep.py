"""Sweeps: a config file with a ``[sweep]`` table of lists expands into runs, one run directory
each, inside one sweep directory; then a leaderboard and an overlay plot compare them.

    [sweep]
    mode = "grid"                 # every combination (the default); "zip": i-th with i-th
    "optim.lr" = [0.01, 0.1, 1.0]
    "model.l2" = [0, 1e-3]
"""

from __future__ import annotations

import itertools
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import api
from . import data as data_mod
from .config import Config, keys_set, load_toml, to_toml, with_overrides
from .errors import ConfigError, DataError
from .processes import Task, run_in_processes
from .report import read_summary, write_run


@dataclass(frozen=True)
class SweepPoint:
    index: int
    overrides: dict
    config: Config

    @property
    def name(self) -> str:
        parts = [f"{key.split('.', 1)[1]}={value}" for key, value in self.overrides.items()]
        return re.sub(r"[^A-Za-z0-9_.=+-]", "_", f"{self.index:03d}-" + "-".join(parts))


def read_sweep(path: str | Path) -> list[SweepPoint]:
    """The points of a sweep file: its settings (with ``extends``) varied by ``[sweep]``."""
    path = Path(path)
    base = load_toml(path, sweep=True)
    table = tomllib.loads(path.read_text(encoding="utf-8")).get("sweep")
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"{path}: no [sweep] table of settings to vary")
    table = dict(table)
    mode = table.pop("mode", "grid")
    if mode not in ("grid", "zip"):
        raise ConfigError(f"{path}: [sweep] mode must be grid or zip, got {mode!r}")
    keys = list(table)
    lists = [v if isinstance(v, list) else [v] for v in table.values()]
    if any(len(v) == 0 for v in lists):
        raise ConfigError(f"{path}: every [sweep] list needs at least one value")
    if mode == "zip":
        if len({len(v) for v in lists}) != 1:
            raise ConfigError(f"{path}: with mode = \"zip\" all [sweep] lists must be as long")
        combos = list(zip(*lists, strict=True))
    else:
        combos = list(itertools.product(*lists))
    from .api import with_implied_defaults

    in_file = keys_set(base)
    points = []
    for index, values in enumerate(combos):
        overrides = dict(zip(keys, values, strict=True))
        config = with_overrides(base, overrides, f"{path} [sweep]")
        # text (or a GPU) implies defaults for what neither the file nor the sweep sets
        config = with_implied_defaults(config, in_file | set(overrides))
        points.append(SweepPoint(index, overrides, config))
    _check_distinct(points, path)
    return points


def _check_distinct(points: list[SweepPoint], path: Path) -> None:
    """Two points of the same settings (a value listed twice; 1 and 1.0) would train one run
    twice, and a leaderboard would rank it against itself: an error naming both."""
    seen: dict[str, SweepPoint] = {}
    for point in points:
        settings = to_toml(point.config)
        if settings in seen:
            raise ConfigError(f"{path}: [sweep] points {seen[settings].name} and {point.name} "
                              "are the same settings; remove the repeated value")
        seen[settings] = point


def check_points(points: list[SweepPoint]) -> None:
    """Each point's settings go together and its data file is there, before any point
    trains: a mistake in the last of twenty points was found after nineteen runs. The error
    names the point."""
    for point in points:
        try:
            api.check_settings(point.config)
            path = api.data_file(point.config)
            if path is not None:
                data_mod.check_file(path)
        except (ConfigError, DataError) as error:
            raise type(error)(f"sweep point {point.name}: {error}") from None


def is_finished(run_dir: Path, config: Config) -> bool:
    """A point is done when its run directory has a summary of an uninterrupted run of the
    same settings."""
    try:
        summary = read_summary(run_dir)
        same = (run_dir / "config.toml").read_text(encoding="utf-8") == to_toml(config)
    except (OSError, ValueError):
        return False
    return same and summary.get("stop_reason") != "interrupted"


def run_point(config: Config, run_dir: str) -> dict:
    """Train one point and write its run directory; returns its summary."""
    run = api.train(config)
    write_run(run_dir, run)
    return run.summary


def run_sweep(
    points: list[SweepPoint],
    sweep_dir: str | Path,
    jobs: int = 1,
    resume: bool = False,
    on_event: Callable[[SweepPoint, str, dict | None], None] | None = None,
) -> list[Path]:
    """Run the points (``jobs`` at a time, each in a process of its own), skipping finished
    ones under ``resume``.

    ``on_event(point, what, summary)`` hears "skipped", "started" and "done". A
    KeyboardInterrupt (Ctrl-C, or SIGTERM as the command line maps it) stops the sweep at
    once: no point starts after it, running ones are ended within a couple of seconds, and
    finished runs are kept for ``resume``. Returns the run directories of all points.
    """
    check_points(points)
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    notify = on_event or (lambda *args: None)
    todo = []
    for point in points:
        if resume and is_finished(sweep_dir / point.name, point.config):
            notify(point, "skipped", read_summary(sweep_dir / point.name))
        else:
            todo.append(point)
    by_name = {point.name: point for point in todo}
    if jobs <= 1:
        for point in todo:
            notify(point, "started", None)
            summary = run_point(point.config, str(sweep_dir / point.name))
            notify(point, "done", summary)
            if summary["stop_reason"] == "interrupted":  # training took the Ctrl-C
                raise KeyboardInterrupt
    else:
        run_in_processes([Task(point.name, run_point, (point.config, str(sweep_dir / point.name)))
                          for point in todo], jobs,
                         lambda task, what, summary: notify(by_name[task.name], what, summary))
    return [sweep_dir / p.name for p in points]
