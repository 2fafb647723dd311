"""Speed and memory of xent against scikit-learn (and torch, where installed), in one run.

    python bench/bench.py --quick            # small variants, well under a minute
    python bench/bench.py                    # A: 200,000 x 100, 10 classes; B: 1,000,000 x 50, 2

Data: make_classification, standardised; l2 = 1 / (C n) with C = 1, the objective of
scikit-learn's LogisticRegression. The target is the objective scikit-learn lbfgs reaches
(default settings); "time to 1e-8" is how long a solver takes to get within 1e-8 relative of it
(1e-6 for the first-order methods). scikit-learn lbfgs runs with tol=1e-10, so that it stops at
its optimum (at its default tol=1e-4 it stops 1e-6 or more above it). Times of scikit-learn
lbfgs and xent lbfgs are medians over --repeats runs, the rest single runs; ratios are to
scikit-learn lbfgs's time in the same run. A table goes to stdout, everything to --out (JSON).

Thread scaling: one loss and gradient at 1, 2, 4, ... all cores, through xent's compiled kernels
(dense, and CSR with 90% of X zeroed), the numpy reference and torch CPU, beside a compiled
all-core read of X measured in the same run. Targets: dense at all cores <= 2x that read; never
slower with more threads; CSR on 2 threads <= 0.6x its 1-thread time; and xent lbfgs at least as
fast as torch LBFGS (CPU) where torch is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import platform
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import sklearn
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression, SGDClassifier

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from xent.links import get_link  # noqa: E402
from xent.loss import Objective, evaluate, labels_target  # noqa: E402
from xent.sources import ArraySource, RowSource  # noqa: E402
from xent.threads import single_threaded_blas  # noqa: E402
from xent.train import Hooks, Solver, Stopping, fit  # noqa: E402


def fit_rows(data, target, link, *, optimizer, l2, max_epochs=5000, tol=0.0, batch_size=None,
             seed=0, callback=None, should_stop=None):
    """``train.fit`` on arrays (X, target) or on any RowSource (``data``; its own target)."""
    source = data if isinstance(data, RowSource) else ArraySource(data, target)
    return fit(source, Objective(link, l2), Solver(optimizer, "auto", batch_size, seed),
               Stopping(max_epochs, tol), hooks=Hooks(callback, should_stop))

SETS = {
    "A": dict(n_samples=200_000, n_features=100, n_classes=10),
    "B": dict(n_samples=1_000_000, n_features=50, n_classes=2),
    "A-quick": dict(n_samples=20_000, n_features=100, n_classes=10),
    "B-quick": dict(n_samples=100_000, n_features=50, n_classes=2),
}


def make_data(n_samples, n_features, n_classes, seed=0):
    X, y = make_classification(n_samples, n_features, n_informative=n_features // 2,
                               n_classes=n_classes, n_clusters_per_class=1, random_state=seed)
    X -= X.mean(axis=0)
    X /= X.std(axis=0)
    return np.ascontiguousarray(X), y


def median_time(function, repeats):
    """(median seconds, last result) over ``repeats`` calls."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def medians_in_turn(ways: dict, repeats: int) -> dict:
    """Median seconds of each of ``ways`` (name: function), taken in turn from a different one
    each round, each called twice and the second call timed (evaluations one after another,
    as in training). A many-thread run timed right after a one-thread run finds the other
    cores idle a while and slower to wake; taken this way, no way always follows the same
    one."""
    names = list(ways)
    times = {name: [] for name in names}
    for repeat in range(repeats):
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:
            ways[name]()
            start = time.perf_counter()
            ways[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(seconds) for name, seconds in times.items()}


def objective_of(coef, intercept, X, target, link, l2):
    params = np.vstack([np.asarray(coef).T, np.asarray(intercept)[None, :]])
    with single_threaded_blas():
        return evaluate(params, X, target, link, l2).objective


def xent_to_target(X, target, link, l2, optimizer, goal, max_epochs, tol=0.0):
    """xent from zeros until the objective is <= goal (or the budget runs out)."""
    state = {}

    def reached():
        return state.get("objective", np.inf) <= goal

    def remember(record):
        state["objective"] = record.objective

    result = fit_rows(X, target, link, optimizer=optimizer, l2=l2, max_epochs=max_epochs,
                      tol=tol, callback=remember,
                      should_stop=reached if goal is not None else None)
    return result


class _Reached(Exception):
    pass


def torch_lbfgs(X, y, n_classes, l2, goal, max_iter=1000):
    """torch.optim.LBFGS (strong Wolfe line search, memory 20) on the same objective, stopped
    the moment an evaluation reaches ``goal``."""
    import torch

    Xt = torch.from_numpy(X)
    yt = torch.from_numpy(y.astype(np.int64))
    k = 1 if n_classes == 2 else n_classes
    W = torch.zeros(X.shape[1], k, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], max_iter=max_iter, history_size=20, tolerance_grad=0,
                            tolerance_change=0, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        z = Xt @ W + b
        if k == 1:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z[:, 0], yt.double())
        else:
            loss = torch.nn.functional.cross_entropy(z, yt)
        loss = loss + 0.5 * l2 * (W * W).sum()
        if loss.item() <= goal:
            raise _Reached
        loss.backward()
        return loss

    with contextlib.suppress(_Reached):  # the goal was reached inside the step
        opt.step(closure)
    return W.detach().numpy().T.copy(), b.detach().numpy().copy()


def run_set(name, repeats, gd_budget, log):
    spec = SETS[name]
    X, y = make_data(**spec)
    n, k = len(y), spec["n_classes"]
    l2 = 1.0 / n  # C = 1
    link = get_link("auto", k)
    target = labels_target(y, k)
    rows = {}
    log(f"[{name}] n={n} d={X.shape[1]} K={k}, X {X.nbytes / 1e6:.0f} MB")

    read, _ = median_time(lambda: np.add.reduce(X, axis=None), max(repeats, 5))
    params = np.random.default_rng(0).normal(scale=0.01, size=(X.shape[1] + 1, link.n_outputs(k)))
    ev, _ = median_time(lambda: evaluate(params, X, target, link, l2), max(repeats, 5))
    rows["read X once (1 thread)"] = dict(seconds=read)
    rows["xent loss+gradient"] = dict(seconds=ev, per_read=ev / read)
    log(f"  read {read * 1e3:.1f} ms, xent loss+gradient {ev * 1e3:.1f} ms = {ev / read:.2f}x")

    sk_time, sk = median_time(
        lambda: LogisticRegression(C=1.0, solver="lbfgs", tol=1e-10, max_iter=10_000).fit(X, y),
        repeats)
    f_sk = objective_of(sk.coef_, sk.intercept_, X, target, link, l2)
    goal8, goal6 = f_sk * (1 + 1e-8), f_sk * (1 + 1e-6)
    rows["sklearn lbfgs"] = dict(seconds=sk_time, iterations=int(np.max(sk.n_iter_)), gap=0.0)
    log(f"  sklearn lbfgs {sk_time:.2f} s ({int(np.max(sk.n_iter_))} iterations), "
        f"objective {f_sk:.10f}")

    def gap(value):
        return (value - f_sk) / abs(f_sk)

    t, nc = median_time(lambda: LogisticRegression(C=1.0, solver="newton-cholesky",
                                                   max_iter=10_000).fit(X, y), 1)
    rows["sklearn newton-cholesky"] = dict(
        seconds=t, gap=gap(objective_of(nc.coef_, nc.intercept_, X, target, link, l2)))
    t, sgd = median_time(lambda: SGDClassifier(loss="log_loss", alpha=l2,
                                               random_state=0).fit(X, y), 1)
    rows["sklearn SGDClassifier" + (" (one-vs-rest)" if k > 2 else "")] = dict(
        seconds=t, gap=gap(objective_of(sgd.coef_, sgd.intercept_, X, target, link, l2)))

    for dtype in (np.float64, np.float32):
        data = X if dtype == np.float64 else X.astype(np.float32)
        label = "" if dtype == np.float64 else " float32"
        t, res = median_time(lambda d=data: xent_to_target(d, target, link, l2, "lbfgs", goal8,
                                                           10_000), repeats)
        final = objective_of(res.params[:-1].T, res.params[-1], X, target, link, l2)
        rows[f"xent lbfgs{label}"] = dict(seconds=t, iterations=res.n_epochs, gap=gap(final))
        log(f"  xent lbfgs{label} {t:.2f} s, gap {gap(final):.1e}")

    for optimizer in ("nesterov", "gd"):
        t, res = median_time(lambda o=optimizer: xent_to_target(X, target, link, l2, o, goal6,
                                                                gd_budget), 1)
        rows[f"xent {optimizer} (to 1e-6)"] = dict(
            seconds=t, iterations=res.n_epochs, gap=gap(res.history.last.objective),
            reached=bool(res.history.last.objective <= goal6))
        log(f"  xent {optimizer} {t:.2f} s, {res.n_epochs} iterations")

    try:
        import torch  # noqa: F401
    except ImportError:
        log("  torch not installed: no torch LBFGS")
    else:
        t, (W, b) = median_time(lambda: torch_lbfgs(X, y, k, l2, goal8), repeats)
        rows["torch LBFGS"] = dict(seconds=t, gap=gap(objective_of(W, b, X, target, link, l2)))
        log(f"  torch LBFGS {t:.2f} s")

    tracemalloc.start()
    fit_rows(X, target, link, optimizer="lbfgs", l2=l2, max_epochs=30, tol=0.0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rows["xent lbfgs memory"] = dict(peak_extra_bytes=peak, per_X=peak / X.nbytes)
    log(f"  memory while training: X + {100 * peak / X.nbytes:.1f}%")
    for row in rows.values():
        if "seconds" in row:
            row["per_sklearn_lbfgs"] = row["seconds"] / sk_time
    return rows


def read_seconds(X, threads):
    """Seconds for one read of X by ``threads`` threads (a compiled parallel sum of its values;
    for CSR X of its stored values and their column indices, the arrays the kernels stream):
    the floor of any pass over X on that many threads."""
    import numba
    import scipy.sparse as sp

    @numba.njit(parallel=True, fastmath=True)
    def dense_total(A):
        s = 0.0
        for i in numba.prange(A.shape[0]):
            row = A[i]
            for j in range(A.shape[1]):
                s += row[j]
        return s

    @numba.njit(parallel=True, fastmath=True)
    def csr_total(data, indices, indptr):
        s = 0.0
        for i in numba.prange(indptr.shape[0] - 1):
            for j in range(indptr[i], indptr[i + 1]):
                s += data[j] + indices[j]
        return s

    numba.set_num_threads(threads)
    read = (lambda: csr_total(X.data, X.indices, X.indptr)) if sp.issparse(X) \
        else (lambda: dense_total(X))
    seconds, _ = median_time(read, 7)
    return seconds


def torch_evaluation(X, y, params, threads):
    """Seconds for torch (CPU) to compute the same loss and gradient, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    W = torch.tensor(params, requires_grad=True)

    def once():
        W.grad = None
        logits = Xt @ W[:-1] + W[-1]
        if W.shape[1] == 1:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logits[:, 0], yt.to(logits.dtype))
        else:
            loss = torch.nn.functional.cross_entropy(logits, yt)
        loss.backward()

    seconds, _ = median_time(once, 7)
    return seconds


def thread_scaling(name, log):
    """One loss and gradient against the thread count (1, 2, 4, ... all cores): xent's compiled
    kernels on dense X and on CSR (X with 90% of its entries zeroed), the numpy reference, torch
    CPU, beside the all-core read of X (and, for CSR, the read of its arrays on 1 and 2
    threads), in one run."""
    import os

    import scipy.sparse as sp

    from xent.loss import sums

    spec = SETS[name]
    X, y = make_data(**spec)
    k = spec["n_classes"]
    link, target = get_link("auto", k), labels_target(y, k)
    params = np.random.default_rng(0).normal(scale=0.01, size=(X.shape[1] + 1, link.n_outputs(k)))
    cores = len(os.sched_getaffinity(0))
    counts = sorted({1, cores} | {2 ** i for i in range(1, 8) if 2 ** i < cores})
    sparse_X = X.copy()
    sparse_X[np.random.default_rng(1).random(X.shape) < 0.9] = 0.0
    sparse_X = sp.csr_matrix(sparse_X)
    read = read_seconds(X, cores)
    log(f"[{name} threads] all-core read of X ({cores} threads): {read * 1e3:.2f} ms")
    # the CSR arrays' read on 1 and 2 threads: how well a mere pass over them scales on this
    # machine, printed beside the kernels' 2 / 1 ratio (on the 2-core VM of stop 35 a bare
    # numba pass over 120 MB took 0.56 of its one-thread time on 2 threads, and one that also
    # gathered w[index] 0.65: memory here does not give two cores twice one core's reads)
    csr_reads = {threads: read_seconds(sparse_X, threads) for threads in counts[:2]}
    log(f"[{name} threads] read of the CSR arrays: " + ", ".join(
        f"{seconds * 1e3:.2f} ms ({threads} threads)" for threads, seconds in csr_reads.items()))

    def evaluation(data, threads, kernels):
        def evaluate():
            os.environ["XENT_KERNELS"] = kernels
            try:
                sums(params, data, target, link, n_threads=threads)
            finally:
                del os.environ["XENT_KERNELS"]
        return evaluate

    kinds = {"dense": (X, "1"), "numpy": (X, "0"), "csr": (sparse_X, "1")}
    medians = {kind: medians_in_turn({threads: evaluation(data, threads, kernels)
                                      for threads in counts}, 7)  # thread counts in turn
               for kind, (data, kernels) in kinds.items()}
    rows = []
    for threads in counts:
        row = {"threads": threads, **{kind: medians[kind][threads] for kind in kinds},
               "torch": torch_evaluation(X, y, params, threads)}
        rows.append(row)
        log(f"  {threads} threads: dense {row['dense'] * 1e3:.1f} ms, numpy "
            f"{row['numpy'] * 1e3:.1f} ms, CSR {row['csr'] * 1e3:.1f} ms")
    dense = [r["dense"] for r in rows]
    return {"all_core_read": read, "cores": cores, "rows": rows,
            "targets": {"dense_per_read": dense[-1] / read,
                        "never_slower": all(b <= a for a, b in itertools.pairwise(dense)),
                        "csr_2_over_1": rows[1]["csr"] / rows[0]["csr"] if len(rows) > 1
                        else None,
                        "csr_read_2_over_1": csr_reads[2] / csr_reads[1] if len(rows) > 1
                        else None}}


def scaling_table(scaling) -> str:
    lines = ["| data | threads | xent dense (ms) | x all-core read | numpy reference (ms) | "
             "xent CSR (ms) | torch CPU (ms) |", "|---|---|---|---|---|---|---|"]
    for name, result in scaling.items():
        for row in result["rows"]:
            torch_ms = "" if row["torch"] is None else f"{row['torch'] * 1e3:.1f}"
            lines.append(f"| {name} | {row['threads']} | {row['dense'] * 1e3:.1f} | "
                         f"{row['dense'] / result['all_core_read']:.2f} | "
                         f"{row['numpy'] * 1e3:.1f} | {row['csr'] * 1e3:.1f} | {torch_ms} |")
    for name, result in scaling.items():
        t = result["targets"]
        csr = "n/a (1 core)" if t["csr_2_over_1"] is None else \
            f"{t['csr_2_over_1']:.2f}x (target <= 0.6x: " \
            f"{'met' if t['csr_2_over_1'] <= 0.6 else 'MISSED'}; a read of its arrays alone: " \
            f"{t['csr_read_2_over_1']:.2f}x)"
        lines.append(f"\n{name}: dense at all cores {t['dense_per_read']:.2f}x the all-core read "
                     f"(target <= 2x: {'met' if t['dense_per_read'] <= 2 else 'MISSED'}); never "
                     f"slower with more threads: {'yes' if t['never_slower'] else 'NO'}; CSR 2 "
                     f"threads / 1: {csr}")
    return "\n".join(lines)


def table(results) -> str:
    lines = ["| data | solver | seconds | x sklearn lbfgs | iterations | gap to sklearn |",
             "|---|---|---|---|---|---|"]
    for name, rows in results.items():
        for solver, row in rows.items():
            if "seconds" not in row:
                lines.append(f"| {name} | {solver} | X + {100 * row['per_X']:.1f}% | | | |")
                continue
            extra = f" ({row['per_read']:.2f}x read)" if "per_read" in row else ""
            gap = f"{row['gap']:.1e}" if "gap" in row else ""
            lines.append(f"| {name} | {solver} | {row['seconds']:.3f}{extra} | "
                         f"{row['per_sklearn_lbfgs']:.2f} | {row.get('iterations', '')} | {gap} |")
    lines += [torch_target(name, rows) for name, rows in results.items()]
    return "\n".join(lines)


def torch_target(name, rows) -> str:
    """The line for the target against torch: xent lbfgs at least as fast as torch LBFGS (CPU)
    in the same run."""
    if "torch LBFGS" not in rows:
        return f"\n{name}: xent lbfgs against torch LBFGS: n/a (torch not installed)"
    ratio = rows["xent lbfgs"]["seconds"] / rows["torch LBFGS"]["seconds"]
    return (f"\n{name}: xent lbfgs {ratio:.2f}x torch LBFGS's time (target <= 1x: "
            f"{'met' if ratio <= 1 else 'MISSED'})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small variants of A and B")
    parser.add_argument("--sets", help="comma-separated: A, B, A-quick, B-quick")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gd-budget", type=int, default=5000,
                        help="most iterations for gd and nesterov")
    parser.add_argument("--threads-only", action="store_true",
                        help="only the thread-scaling table")
    parser.add_argument("--out", default="bench/results/latest.json")
    args = parser.parse_args()
    names = args.sets.split(",") if args.sets else (
        ["A-quick", "B-quick"] if args.quick else ["A", "B"])
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    scaling = {name: thread_scaling(name, log) for name in names}
    results = {} if args.threads_only else \
        {name: run_set(name, args.repeats, args.gd_budget, log) for name in names}
    machine = {"python": platform.python_version(), "numpy": np.__version__,
               "scikit-learn": sklearn.__version__, "processor": platform.processor(),
               "cores": len(__import__("os").sched_getaffinity(0))}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "results": results, "threads": scaling},
                              indent=2))
    if results:
        print(table(results) + "\n")
    print(scaling_table(scaling))
    print(f"\nmachine: {machine}")


if __name__ == "__main__":
    main()
