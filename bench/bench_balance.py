"""Threads taking chunks of rows in turn against one fixed share a thread, with every core free
and with another process busy on one core, in one run.

    python bench/bench_balance.py            # A and B of bench.py, dense and CSR
    python bench/bench_balance.py --quick    # their small variants

One loss and gradient (``loss.sums``) on every core this process may use: xent as it is
(``threads.CHUNKS_PER_THREAD`` chunks a thread, which the threads take in turn) against the
same code with one chunk a thread (``threads.CHUNKS_PER_THREAD`` = 1, the fixed share of the code
before), alternated, medians of --repeats. Then the same with a process spinning on the last
core (a neighbour's job, a build, a hypervisor taking that core's time), first with the threads
free to move, then with each thread kept to a core (the calling thread to the first, the
pool's to the others; as where the system cannot move a thread off a slow core). Printed: the
medians and the ratio in turn / fixed share (below 1: taking in turn is faster).

How it scales: with one core of N at half speed, fixed shares wait for that core's share, about
2x the time with all cores free, whatever N; taken in turn the others take its work, about
N / (N - 1/2) of it (16 cores: 1.03x). Whether the operating system leaves a thread on the busy
core at all varies from run to run, so the busy figures vary (often about 1x when it moves both
threads off it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import SETS, make_data  # noqa: E402
from xent import threads  # noqa: E402
from xent.links import get_link  # noqa: E402
from xent.loss import labels_target, sums  # noqa: E402
from xent.threads import available_cores, thread_pool  # noqa: E402


def pin_the_threads(workers: int, cores: list[int], pinned: bool):
    """With ``pinned``, the calling thread kept to the first of ``cores`` and each of the
    shared pool's first ``workers`` workers to one of the others, in turn, as where the
    operating system cannot move a thread off a slow core (a hypervisor's stolen time, a busy
    hyperthread sibling, a slower core); without, every thread free on all of ``cores`` again.
    The calling thread takes items beside the pool's (``threads.on_threads``), so it is
    pinned too."""
    pool, _ = thread_pool(workers)
    everyone = threading.Barrier(workers, timeout=10)
    os.sched_setaffinity(0, {cores[0]} if pinned else set(cores))
    others = cores[1:] or cores

    def pin(index):
        os.sched_setaffinity(0, {others[index % len(others)]} if pinned else set(cores))
        everyone.wait()  # each worker takes one of these tasks

    list(pool.map(pin, range(workers)))


@contextlib.contextmanager
def busy_core(core: int | None):
    """A process spinning on ``core`` while inside (None: none)."""
    if core is None:
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(spinner.pid, {core})
        time.sleep(0.3)
        yield
    finally:
        spinner.kill()
        spinner.wait()


def alternated(evaluate, repeats: int) -> dict[str, float]:
    """Median seconds of ``evaluate()`` taking chunks in turn and with one chunk a thread,
    the two alternated so that a slow spell of the machine falls on both."""
    times = {"in_turn": [], "fixed_share": []}
    chunks = threads.CHUNKS_PER_THREAD
    for _ in range(repeats):
        for name, per_thread in (("in_turn", chunks), ("fixed_share", 1)):
            threads.CHUNKS_PER_THREAD = per_thread
            try:
                start = time.perf_counter()
                evaluate()
                times[name].append(time.perf_counter() - start)
            finally:
                threads.CHUNKS_PER_THREAD = chunks
    return {name: statistics.median(seconds) for name, seconds in times.items()}


def data_sets(quick: bool):
    """(name, X, target, link, params) for A and B, dense and CSR (90% of X zeroed)."""
    for name in ("A-quick", "B-quick") if quick else ("A", "B"):
        spec = SETS[name]
        X, y = make_data(**spec)
        k = spec["n_classes"]
        link, target = get_link("auto", k), labels_target(y, k)
        params = np.random.default_rng(0).normal(scale=0.01,
                                                 size=(X.shape[1] + 1, link.n_outputs(k)))
        sparse = X.copy()
        sparse[np.random.default_rng(1).random(X.shape) < 0.9] = 0.0
        yield f"{name} dense", X, target, link, params
        yield f"{name} CSR", sp.csr_matrix(sparse), target, link, params


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", default="bench/results/balance.json")
    args = parser.parse_args()
    cores = available_cores()
    mine = sorted(os.sched_getaffinity(0))[:cores]
    last = mine[-1] if cores > 1 else None
    os.environ["XENT_KERNELS"] = "1"
    rows = []
    for name, X, target, link, params in data_sets(args.quick):
        def evaluate(X=X, target=target, link=link, params=params):
            return sums(params, X, target, link, n_threads=cores)

        evaluate()  # loads (or compiles) the kernel
        for neighbour in ("none", "busy", "busy, pinned"):
            with busy_core(last if neighbour != "none" else None):
                pin_the_threads(cores, mine, pinned=neighbour == "busy, pinned")
                medians = alternated(evaluate, args.repeats)
            pin_the_threads(cores, mine, pinned=False)
            row = {"data": name, "neighbour": neighbour, **medians,
                   "ratio": medians["in_turn"] / medians["fixed_share"]}
            rows.append(row)
            print(f"{name:8} {neighbour:12} neighbour: in turn {medians['in_turn'] * 1e3:6.1f} ms,"
                  f" fixed share {medians['fixed_share'] * 1e3:6.1f} ms, "
                  f"ratio {row['ratio']:.2f}", flush=True)
    print(f"\n{cores} cores; busy neighbour on core {last}; chunks a thread: "
          f"{threads.CHUNKS_PER_THREAD} against 1; medians of {args.repeats}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"cores": cores, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
