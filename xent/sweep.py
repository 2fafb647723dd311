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
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from . import api
from .config import Config, load_toml, to_toml, with_overrides
from .errors import ConfigError
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
    base = load_toml(path)
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
    points = []
    for index, values in enumerate(combos):
        overrides = dict(zip(keys, values, strict=True))
        config = with_overrides(base, overrides, f"{path} [sweep]")
        points.append(SweepPoint(index, overrides, config))
    return points


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


def _single_threaded_blas():
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # --jobs processes share the cores: one BLAS thread each


def run_sweep(
    points: list[SweepPoint],
    sweep_dir: str | Path,
    jobs: int = 1,
    resume: bool = False,
    on_event: Callable[[SweepPoint, str, dict | None], None] | None = None,
) -> list[Path]:
    """Run the points (``jobs`` at a time), skipping finished ones under ``resume``.

    ``on_event(point, what, summary)`` hears "skipped", "started" and "done". Ctrl-C stops
    the sweep: finished runs are kept, and ``resume`` picks up the rest. Returns the run
    directories of all points.
    """
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    notify = on_event or (lambda *args: None)
    todo = []
    for point in points:
        if resume and is_finished(sweep_dir / point.name, point.config):
            notify(point, "skipped", read_summary(sweep_dir / point.name))
        else:
            todo.append(point)
    if jobs <= 1:
        for point in todo:
            notify(point, "started", None)
            notify(point, "done", run_point(point.config, str(sweep_dir / point.name)))
    else:
        with ProcessPoolExecutor(max_workers=jobs, initializer=_single_threaded_blas) as pool:
            try:
                futures = {}
                for point in todo:
                    futures[pool.submit(run_point, point.config, str(sweep_dir / point.name))] \
                        = point
                    notify(point, "started", None)
                pending = set(futures)
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        notify(futures[future], "done", future.result())
            except KeyboardInterrupt:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    return [sweep_dir / p.name for p in points]
