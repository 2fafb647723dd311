"""The Dask engine against training in process, and against dask-ml (where installed).

    python bench/bench_dask.py --quick        # 200,000 x 50, binary
    python bench/bench_dask.py                # 1,000,000 x 50, binary

A LocalCluster of 2 worker processes on 127.0.0.1 holds the data in --partitions partitions.
Measured in one run: one loss+gradient evaluation in process and over the partitions (the
difference is the engine's overhead per evaluation), and a whole L-BFGS fit to tol 1e-8 both
ways; one epoch of mini-batch Adam both ways; dask-ml's LogisticRegression (lbfgs) on the same
dask array, with its objective's gap to ours. Medians over --repeats.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import fit_rows, median_time  # noqa: E402  (bench/bench.py, beside this script)
from xent.dask_engine import DaskData, aligned, connect  # noqa: E402
from xent.links import get_link  # noqa: E402
from xent.loss import Objective, evaluate, labels_target  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="bench/results/dask.json")
    args = parser.parse_args()
    from sklearn.datasets import make_classification

    rows = 200_000 if args.quick else args.rows
    X, y = make_classification(rows, 50, n_informative=25, random_state=0)
    X = np.ascontiguousarray((X - X.mean(axis=0)) / X.std(axis=0))
    l2 = 1.0 / rows
    link, target = get_link("sigmoid"), labels_target(y, 2)
    params = np.random.default_rng(0).normal(scale=0.01, size=(51, 1))
    results = {}
    with connect(workers=2) as client:
        bounds = np.linspace(0, rows, args.partitions + 1).astype(int)
        parts = [client.submit(aligned, part) for part in client.scatter(
            [(X[a:b], y[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)])]
        data = DaskData(client, parts, 50, y, 2)
        local, _ = median_time(lambda: evaluate(params, X, target, link, l2), 7)
        remote, _ = median_time(lambda: Objective(link, l2).evaluate(params, data), 7)
        overhead = remote - local
        results["evaluation"] = {"in_process": local, "dask": remote, "overhead": overhead,
                                 "partitions": args.partitions,
                                 "allowed_overhead": 0.030 + 0.002 * args.partitions}
        lbfgs = dict(optimizer="lbfgs", l2=l2, tol=1e-8)
        fit_local, here = median_time(lambda: fit_rows(X, target, link, **lbfgs), args.repeats)
        fit_dask, there = median_time(lambda: fit_rows(data, None, link, **lbfgs), args.repeats)
        gap = abs(there.history.last.objective - here.history.last.objective) / \
            here.history.last.objective
        results["fit"] = {"in_process": fit_local, "dask": fit_dask,
                          "ratio": fit_dask / fit_local, "objective_gap": gap}
        # one epoch of Adam on mini-batches of 1024 rows: over Dask the steps run partition
        # by partition on the worker that holds it (SGD is sequential: one worker at a time)
        sgd = dict(optimizer="adam", batch_size=1024, max_epochs=1, tol=0.0, l2=l2, seed=0)
        sgd_local, _ = median_time(lambda: fit_rows(X, target, link, **sgd), args.repeats)
        sgd_dask, _ = median_time(lambda: fit_rows(data, None, link, **sgd), args.repeats)
        results["minibatch_epoch"] = {"in_process": sgd_local, "dask": sgd_dask,
                                      "ratio": sgd_dask / sgd_local}
        try:
            import dask.array as da
            from dask_ml.linear_model import LogisticRegression
        except ImportError:
            print("dask-ml not installed: no comparison", file=sys.stderr)
        else:
            Xd = da.from_array(X, chunks=(rows // args.partitions, 50)).persist()
            yd = da.from_array(y, chunks=rows // args.partitions).persist()
            t, model = median_time(lambda: LogisticRegression(
                solver="lbfgs", C=1.0, penalty="l2", max_iter=1000, tol=1e-8).fit(Xd, yd), 1)
            theirs = np.vstack([np.asarray(model.coef_).reshape(-1, 1),
                                np.asarray(model.intercept_).reshape(1, 1)])
            objective = evaluate(theirs, X, target, link, l2).objective
            results["dask_ml_lbfgs"] = {"seconds": t, "per_xent_dask": t / fit_dask,
                                        "objective_gap": (objective - there.history.last.objective)
                                        / there.history.last.objective}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    e, f = results["evaluation"], results["fit"]
    print(f"{rows} x 50 on a LocalCluster of 2 workers, {args.partitions} partitions")
    print(f"loss+gradient: in process {e['in_process'] * 1e3:.1f} ms, over Dask "
          f"{e['dask'] * 1e3:.1f} ms: overhead {e['overhead'] * 1e3:.1f} ms (allowed "
          f"{e['allowed_overhead'] * 1e3:.0f} ms)")
    print(f"L-BFGS fit: in process {f['in_process']:.2f} s, over Dask {f['dask']:.2f} s "
          f"({f['ratio']:.2f}x), objective gap {f['objective_gap']:.1e}")
    m = results["minibatch_epoch"]
    print(f"Adam, one epoch of 1024-row batches: in process {m['in_process']:.2f} s, over Dask "
          f"{m['dask']:.2f} s ({m['ratio']:.2f}x)")
    if "dask_ml_lbfgs" in results:
        r = results["dask_ml_lbfgs"]
        print(f"dask-ml LogisticRegression(lbfgs): {r['seconds']:.2f} s = "
              f"{r['per_xent_dask']:.1f}x xent on Dask; its objective is "
              f"{r['objective_gap']:.1e} above ours")


if __name__ == "__main__":
    main()
