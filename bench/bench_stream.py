"""Streaming a CSV from the cache against parsing it and against training in memory.

    python bench/bench_stream.py --quick       # 200,000 rows: about a minute
    python bench/bench_stream.py               # 1,000,000 x 50, binary (a ~0.5 GB CSV)

Each measurement runs in a fresh Python process, so that its peak memory (max RSS, which
includes the interpreter and the imported libraries, also reported alone) is its own. Ratios:
the first epoch (parsing into the cache) to a plain pandas chunked parse of the file; a later
epoch (one loss+gradient streamed from the cache) to the same evaluation in memory. And the
streamed L-BFGS optimum against the in-memory one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def peak_memory() -> int:
    """This process's peak resident memory in bytes (VmHWM: unlike ru_maxrss, it is not
    inherited from the parent across exec)."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def child(task: str, path: str, chunk_rows: int) -> dict:
    """One measurement, in this (fresh) process."""
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from xent import api, stream
    from xent.config import Config, with_overrides
    from xent.links import get_link
    from xent.loss import Objective
    from xent.sources import SourceOptions

    seconds = None
    if task == "imports":
        pass
    elif task == "pandas-parse":
        import pandas as pd  # only here: xent streams its cache without pandas

        start = time.perf_counter()
        for _ in pd.read_csv(path, chunksize=chunk_rows):
            pass
        seconds = time.perf_counter() - start
    elif task == "parse-into-cache":
        start = time.perf_counter()
        stream.build_cache(path, None, chunk_rows)
        seconds = time.perf_counter() - start
    elif task in ("epoch-from-cache", "epoch-in-memory"):
        config = with_overrides(Config(), {"data.source": path, "data.stream": True,
                                           "data.chunk_rows": chunk_rows,
                                           "data.val_fraction": 0.0})
        table = api.open_table(config)
        selection = np.ones(table.n_rows, dtype=bool)
        none = np.zeros(table.n_rows, dtype=bool)
        prep = api.fit_table_preprocessing(config, table, selection)
        options = SourceOptions(chunk_rows=chunk_rows)
        if task == "epoch-in-memory":  # the same rows, read whole into memory
            from xent.sources import MemoryTable

            table = MemoryTable(**{k: v for k, v in vars(table).items()
                                   if k not in ("directory", "meta")})
            table.numeric = np.array(table.numeric)
        source = table.sources(selection, none, prep, options)[0]
        objective = Objective(get_link("sigmoid"), 1.0 / source.shape[0])
        params = np.zeros((source.shape[1] + 1, 1))
        times = []
        for _ in range(3):
            start = time.perf_counter()
            objective.evaluate(params, source)
            times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
    elif task in ("optimum-stream", "optimum-memory"):
        config = with_overrides(Config(), {
            "data.source": path, "data.stream": task == "optimum-stream",
            "data.chunk_rows": chunk_rows, "data.val_fraction": 0.0,
            "optim.optimizer": "lbfgs", "optim.tol": 1e-8, "model.l2": 1e-6})
        start = time.perf_counter()
        run = api.train(config)
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "objective": run.summary["objective"],
                "max_rss": peak_memory()}
    return {"seconds": seconds, "max_rss": peak_memory()}


def measure(task, path, chunk_rows, cache_dir) -> dict:
    env = dict(os.environ, XENT_CACHE_DIR=str(cache_dir))
    out = subprocess.run([sys.executable, __file__, "--child", task, str(path),
                          str(chunk_rows)], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def make_csv(path: Path, rows: int) -> None:
    import numpy as np
    import pandas as pd
    from sklearn.datasets import make_classification

    X, y = make_classification(rows, 50, n_informative=25, random_state=0)
    frame = pd.DataFrame(X.astype(np.float32), columns=[f"x{i}" for i in range(50)])
    frame["label"] = y
    frame.to_csv(path, index=False, float_format="%.6g")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="200,000 rows")
    parser.add_argument("--chunk-rows", type=int, default=65536)
    parser.add_argument("--out", default="bench/results/stream.json")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        task, path, chunk_rows = args.child
        print(json.dumps(child(task, path, int(chunk_rows))))
        return
    rows = 200_000 if args.quick else args.rows
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        csv_path = work / "data.csv"
        make_csv(csv_path, rows)
        size = csv_path.stat().st_size
        print(f"{rows} x 50 CSV, {size / 1e6:.0f} MB", file=sys.stderr)
        cache = work / "cache"
        results = {}
        for task in ("imports", "pandas-parse", "parse-into-cache", "epoch-from-cache",
                     "epoch-in-memory", "optimum-stream", "optimum-memory"):
            results[task] = measure(task, csv_path, args.chunk_rows, cache)
            print(f"  {task}: {results[task]}", file=sys.stderr)
    r = results
    gap = abs(r["optimum-stream"]["objective"] - r["optimum-memory"]["objective"]) / \
        abs(r["optimum-memory"]["objective"])
    summary = {
        "rows": rows, "csv_bytes": size, "chunk_rows": args.chunk_rows,
        "first_epoch_per_pandas_parse": r["parse-into-cache"]["seconds"]
        / r["pandas-parse"]["seconds"],
        "later_epoch_per_in_memory": r["epoch-from-cache"]["seconds"]
        / r["epoch-in-memory"]["seconds"],
        "optimum_relative_gap": gap,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "results": results}, indent=2))
    mb = 1e6
    print("| measurement | seconds | peak memory (MB) |\n|---|---|---|")
    for task, row in results.items():
        seconds = "" if row["seconds"] is None else f"{row['seconds']:.3f}"
        print(f"| {task} | {seconds} | {row['max_rss'] / mb:.0f} |")
    print(f"\nfirst epoch / pandas chunked parse: {summary['first_epoch_per_pandas_parse']:.2f}x"
          f"\nlater epoch / in-memory loss+gradient: {summary['later_epoch_per_in_memory']:.2f}x"
          f"\nstreamed vs in-memory optimum: relative gap {gap:.1e}")


if __name__ == "__main__":
    main()
