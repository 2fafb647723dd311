"""Every core against one thread across data sizes, in one run: does an evaluation ever get
slower with more threads (#14's "never slower with more threads")?

    python bench/bench_sizes.py            # a sigmoid and ten classes, 50 features
    python bench/bench_sizes.py --quick    # fewer sizes and repeats

For each size, one loss and gradient (``loss.sums``, the compiled kernels, dense float64) on one
thread; on every core this process may use as xent shares it out (a thread for each
``loss.KERNEL_THREAD_WORK`` multiply-adds of work, ``loss.threads_for``, four chunks a thread,
the calling thread taking chunks beside the pool's: ``threads.on_threads``); on every core as
before stop 34 (a thread for each 2,048 rows whatever their work, and the calling thread
waiting while the pool's threads take every chunk); and with each of those two undone alone.
The five are taken in turn, from a
different one each round, each run twice and the second run timed; medians of --repeats.
Printed: the medians and each all-core time over the one-thread time (above 1: more threads
were slower).

Why small data lost: work handed to another thread costs that thread's wake-up and hand-offs
of the GIL, tens to hundreds of microseconds on a virtual machine, against chunks of 1,024 rows
worth 20-200 us. How it scales: the hand-offs cost a chunk, and the old rule cut 2,048 rows a
thread into four chunks on any number of cores (64 chunks of 512 rows on 16 cores); the work
rule gives a core a thread only where there is a thread's work for it, so on 16 cores data of
less than 16 threads' work use fewer. Bare metal wakes a thread faster than this virtual
machine, so there the break-even is lower than ``KERNEL_THREAD_WORK`` (not measured).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from concurrent.futures import wait
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import medians_in_turn  # noqa: E402
from xent import loss  # noqa: E402
from xent.links import get_link  # noqa: E402
from xent.loss import labels_target, sums  # noqa: E402
from xent.threads import available_cores, thread_pool  # noqa: E402

#: the rule before stop 34: rows a thread below which the rows were not shared out
OLD_MIN_ROWS_PER_THREAD = 2048
OLD_CHUNKS_PER_THREAD = 4


def rows_rule(X, threads: int, n_outputs: int, buffers: bool):
    """``loss._kernel_chunks`` as it was before stop 34, for dense X (its buffers always fit
    here): threads with 2,048 rows each, four chunks a thread."""
    n = X.shape[0]
    threads = max(1, min(threads, n // OLD_MIN_ROWS_PER_THREAD))
    chunks = 1 if threads == 1 else threads * OLD_CHUNKS_PER_THREAD
    bounds = [n * c // chunks for c in range(chunks + 1)]
    return threads, list(zip(bounds[:-1], bounds[1:], strict=True))


def waiting_caller(work, items, threads: int) -> list:
    """``threads.on_threads`` as it was before stop 34, for these runs (no errors, no nesting):
    ``threads`` of the pool's threads take the items in turn while the calling thread waits."""
    if threads <= 1 or len(items) <= 1:
        return [work(item) for item in items]
    results, untaken, lock = [None] * len(items), iter(range(len(items))), threading.Lock()

    def take_in_turn():
        while True:
            with lock:
                index = next(untaken, None)
            if index is None:
                return
            results[index] = work(items[index])

    pool, single_blas = thread_pool(threads)
    with single_blas:
        wait([pool.submit(take_in_turn) for _ in range(min(threads, len(items)))])
    return results


def timed_five_ways(evaluate, cores: int, repeats: int) -> dict[str, float]:
    """Median seconds of ``evaluate(threads)`` on one thread, on ``cores`` threads as xent
    shares the rows out, as it did before, and with each of the two changes alone undone
    (the rows rule; the caller waiting), taken in turn (``bench.medians_in_turn``)."""
    now = (loss._kernel_chunks, loss.on_threads)

    def way(threads, rule, share):
        def run():
            loss._kernel_chunks, loss.on_threads = rule, share
            try:
                evaluate(threads)
            finally:
                loss._kernel_chunks, loss.on_threads = now
        return run

    return medians_in_turn({"one": way(1, *now), "all": way(cores, *now),
                            "rows_rule": way(cores, rows_rule, now[1]),
                            "caller_waiting": way(cores, now[0], waiting_caller),
                            "before": way(cores, rows_rule, waiting_caller)}, repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", default="bench/results/sizes.json")
    args = parser.parse_args()
    repeats = args.repeats or (7 if args.quick else 31)
    cores = available_cores()
    os.environ["XENT_KERNELS"] = "1"
    d = 50
    cases = [(2, [4096, 16_384, 65_536] if args.quick else
              [4096, 8192, 16_384, 32_768, 65_536, 131_072, 262_144]),
             (10, [2048, 8192, 32_768] if args.quick else
              [2048, 4096, 8192, 16_384, 32_768, 65_536])]
    rng = np.random.default_rng(0)
    rows, worst = [], {}
    for n_classes, sizes in cases:
        link = get_link("auto", n_classes)
        for n in sizes:
            X = rng.normal(size=(n, d))
            target = labels_target(rng.integers(0, n_classes, n), n_classes)
            params = rng.normal(scale=0.01, size=(d + 1, link.n_outputs(n_classes)))

            def evaluate(threads, X=X, target=target, link=link, params=params):
                return sums(params, X, target, link, n_threads=threads)

            evaluate(1)  # loads (or compiles) the kernel
            medians = timed_five_ways(evaluate, cores, repeats)
            used = loss._kernel_chunks(X, cores, params.shape[1], True)[0]
            row = {"classes": n_classes, "rows": n, "threads_used": used, **medians}
            for way in ("all", "before", "rows_rule", "caller_waiting"):
                row[f"ratio_{way}"] = medians[way] / medians["one"]
                worst[way] = max(worst.get(way, 0.0), row[f"ratio_{way}"])
            if used > 1:  # with one thread used, "all" runs the one-thread code: noise
                worst["shared"] = max(worst.get("shared", 0.0), row["ratio_all"])
            rows.append(row)
            print(f"{n_classes:2} classes {n:7} rows: one thread {medians['one'] * 1e3:6.2f} ms;"
                  f" {cores} cores {medians['all'] * 1e3:6.2f} ms ({used} used, ratio "
                  f"{row['ratio_all']:.2f}); before {row['ratio_before']:.2f}; one change "
                  f"undone: rows rule {row['ratio_rows_rule']:.2f}, caller waiting "
                  f"{row['ratio_caller_waiting']:.2f}", flush=True)
    shared = worst.get("shared", 0.0)
    print(f"\n{cores} cores, {d} features, medians of {repeats}. Worst all-core / one-thread "
          f"ratio: {worst['all']:.2f} (before: {worst['before']:.2f}; rows rule "
          f"{worst['rows_rule']:.2f}, caller waiting {worst['caller_waiting']:.2f}); where more "
          f"than one thread ran: {shared:.2f} (target <= 1: "
          f"{'met' if shared <= 1.0 else 'MISSED'}). Where one ran, the two times are of the "
          f"same code: their ratio is the machine's noise.")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"cores": cores, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
