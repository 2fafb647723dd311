"""Compiling ahead: ``xent cache warm`` puts the compiled kernels into numba's disk cache
before a run needs them, so that no run pays for compiling (7-9 s for each kind of data a
first run meets here; a first text run spent about 16 of its 19 s compiling).

Each job compiles one of ``_compiled``'s kernels by running it the way training does
(``loss.sums``, ``lazy.epoch``, ``TextSpec.hash_documents``) on a few rows made up for the
purpose, once for each dtype asked for, so that the argument types, and so the machine code,
are those of a real run. The jobs run in processes of their own, as many at once as there
are cores; one job per kernel, because numba rewrites a kernel's index of compiled versions
whole, and two processes adding versions of the same kernel at once could lose one.

numba's machine code is for this CPU (its cache is keyed by the CPU's name and features):
warm on the machine that trains, or one with the same CPU.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .errors import XentError

#: the dtypes of data a warm-up can compile for, each as the (data, products) dtype pairs a
#: run meets: float32 data are summed in float32 products, then in float64 ones once a run
#: nears its optimum (``train``'s ``exact``)
DTYPE_CASES = {
    "float64": ((np.float64, np.float64),),
    "float32": ((np.float32, np.float32), (np.float32, np.float64)),
}


@dataclass(frozen=True)
class WarmJob:
    """One kernel compiled: ``compile(cases)`` runs it once for each (data dtype, products
    dtype) pair of ``cases``."""

    name: str
    compile: Callable[[tuple], None]


def _target(softmax: bool, soft: bool, n: int):
    from .targets import labels_target, proba_target

    n_classes = 3 if softmax else 2
    labels = np.arange(n) % n_classes
    if soft:
        return proba_target(np.eye(n_classes)[labels] * 0.8 + 0.2 / n_classes)
    return labels_target(labels, n_classes)


def _rows(csr: bool, n: int, d: int, dtype) -> np.ndarray | sp.csr_matrix:
    """n rows of d features in ``dtype``: CSR (one stored entry a row, int32 indices as scipy
    makes them) or dense, C-ordered."""
    if csr:
        return sp.csr_matrix((np.ones(n, dtype), np.arange(n) % d, np.arange(n + 1)),
                             shape=(n, d))
    return np.ones((n, d), dtype=dtype)


def _sums(csr: bool, softmax: bool, soft: bool, by_columns: bool = False):
    """A job that sums a loss and gradient with the kernel of X's layout, the link and the
    kind of target (``kernels.kernel_for``); with ``by_columns``, CSR wide enough and two
    threads, so that the second pass's kernel (``csr_columns``) is compiled too."""

    def compile_sums(cases):
        from .links import SIGMOID, SOFTMAX
        from .loss import KERNEL_THREAD_WORK, sums, work_of

        link = SOFTMAX if softmax else SIGMOID
        n_outputs = link.n_outputs(_target(softmax, soft, 1).n_classes)
        # (rows, features, threads): by rows; by columns (``loss._by_columns``) takes two
        # threads with work enough for both (``loss.work_of``), and more features than rows
        per_row = work_of(_rows(True, 1, 1, np.float64), n_outputs)
        wide = int(2 * KERNEL_THREAD_WORK // per_row) + 1
        shapes = [(8, 5, 1)] + ([(wide, wide + 3, 2)] if by_columns else [])
        for data_dtype, products in cases:
            for n, d, threads in shapes:
                target = _target(softmax, soft, n)
                params = np.zeros((d + 1, n_outputs))
                sums(params, _rows(csr, n, d, data_dtype), target, link, n_threads=threads,
                     compute_dtype=products)

    return compile_sums


def _lazy(cases):
    """The lazy sparse steps (``lazy.epoch``), whose method and link are run-time flags: one
    version for each dtype of data."""
    from .lazy import epoch
    from .links import SOFTMAX
    from .loss import Objective
    from .optim import GDState

    target = _target(True, False, 8)
    for data_dtype, _ in cases:
        epoch("gd", np.zeros((6, 3)), GDState(0.1), _rows(True, 8, 5, data_dtype), target,
              None, np.arange(8), 4, Objective(SOFTMAX))


def _hashing(cases):
    """The n-gram hashing of ASCII text (``_compiled.hash_ascii``): one version, whatever the
    dtype."""
    from .text import TextSpec

    TextSpec(("text",), ngrams=(1, 2), buckets=16).hash_documents(["a few words", "and more"])


def _jobs() -> list[WarmJob]:
    jobs = []
    for layout in ("dense", "csr"):
        for softmax in (False, True):
            for soft in (False, True):
                name = f"{layout}-{'soft-' if soft else ''}{'softmax' if softmax else 'sigmoid'}"
                # the CSR hard softmax's job also compiles the second pass (hashed text's)
                columns = layout == "csr" and softmax and not soft
                jobs.append(WarmJob(name, _sums(layout == "csr", softmax, soft, columns)))
    return jobs + [WarmJob("lazy", _lazy), WarmJob("hashing", _hashing)]


#: every job, by name: a kernel each (``_compiled.KERNELS``, the lazy steps, the hashing)
JOBS = {job.name: job for job in _jobs()}


def run_job(job: WarmJob, dtypes: tuple[str, ...]) -> tuple[float, str]:
    """``job`` for ``dtypes`` (keys of ``DTYPE_CASES``), in this process (one of ``warm``'s),
    with the kernels forced on however few the rows ($XENT_KERNELS set to 1 for the rest of
    the process); the seconds it took and the folder numba wrote the machine code to (where
    the one asked for cannot be written, numba writes beside the package if it can). A disk
    cache that cannot be written at all is an error here (a run would go on, compiling in
    memory; a warm-up would be for nothing)."""
    from .kernels import CacheNotSaved, machine_code_folder

    os.environ["XENT_KERNELS"] = "1"
    cases = tuple(case for dtype in dtypes for case in DTYPE_CASES[dtype])
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheNotSaved)
        try:
            job.compile(cases)
        except CacheNotSaved as exc:
            raise XentError(f"the compiled kernels' cache in {exc.folder} could not be written "
                            f"({exc.reason}): set XENT_CACHE_DIR (or NUMBA_CACHE_DIR) to a "
                            "writable folder with room, then warm again") from None
    return time.perf_counter() - start, str(machine_code_folder())


def _run_named(name: str, dtypes: tuple[str, ...]) -> tuple[float, str]:
    """``run_job`` of ``JOBS[name]``: a task's arguments are a name and dtypes, which pickle
    where processes are spawned rather than forked (a job's function is a closure)."""
    return run_job(JOBS[name], dtypes)


def warm(names: list[str], dtypes: tuple[str, ...], jobs: int,
         on_done: Callable[[str, float], None]) -> list[str]:
    """Compile the kernels of the jobs ``names`` (keys of ``JOBS``) for ``dtypes``, each job
    in a process of its own, ``jobs`` processes at a time; ``on_done(name, seconds)`` as each
    finishes. Returns the folders the machine code went to (one, unless the cache's settings
    changed meanwhile)."""
    from .processes import Task, run_in_processes

    tasks = [Task(name, _run_named, (name, dtypes)) for name in names]
    folders = set()

    def on_event(task, what, result):
        if what == "done":
            seconds, folder = result
            folders.add(folder)
            on_done(task.name, seconds)

    run_in_processes(tasks, max(1, jobs), on_event)
    return sorted(folders)
