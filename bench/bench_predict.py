"""Memory and time of `xent predict`, `eval` and `inspect` on a CSV larger than their blocks, in
one run:

    python bench/bench_predict.py                 # 1,000,000 x 20 (a 170 MB CSV)
    python bench/bench_predict.py --rows 200000   # smaller

Each command runs as a process of its own, twice: as shipped (a block of
``api.PREDICT_BLOCK_ROWS`` rows at a time) and with one block of the whole file (the way they read
before). Peak resident memory is the process's (Python, numpy, pandas included). Baseline, in the
same run: a process that only reads the CSV with pandas (the floor of any whole-file reader).
Printed: seconds, peak MB, and each peak as a ratio to that baseline. The outputs of the two ways
must be identical (predict, eval) or within 1e-12 (inspect).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_text import peak_rss_mb  # noqa: E402

XENT = [sys.executable, "-m", "xent.cli"]
#: the same command with every CSV read as one block (as before blocks)
WHOLE = [sys.executable, "-c", "import sys; from xent import api; "
         "api.PREDICT_BLOCK_ROWS = 1 << 40; from xent.cli import main; "
         "sys.argv[0] = 'xent'; main()"]
COMMANDS = {"predict": ["predict", "{run}", "{data}", "--proba", "-o", "{out}"],
            "eval": ["eval", "{run}", "{data}", "--json"],
            "inspect": ["inspect", "{run}", "{data}", "--json"]}


def make_csv(path: Path, rows: int, features: int = 20) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, features)).round(5)
    y = (X[:, 0] + X[:, 1] + rng.normal(size=rows) > 0).astype(int)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(features)]).assign(y=y)
    frame.to_csv(path, index=False)


def run_both(name: str, fill: dict) -> dict:
    """Both ways of one command: (seconds, peak MB) and their outputs."""
    out = {}
    for way, prefix in (("blocks", XENT), ("whole", WHOLE)):
        args = [a.format(**(fill | {"out": f"{fill['out']}.{way}"})) for a in COMMANDS[name]]
        seconds, peak = peak_rss_mb(prefix + args)
        text = subprocess.run(prefix + args, check=True, capture_output=True,
                              text=True).stdout
        if name == "predict":
            text = Path(f"{fill['out']}.{way}").read_text()
        out[way] = {"seconds": seconds, "peak_mb": peak, "output": text}
    return out


def same(name: str, results: dict) -> bool:
    a, b = results["blocks"]["output"], results["whole"]["output"]
    if name != "inspect":
        return a == b
    rows_a, rows_b = json.loads(a)["coefficients"], json.loads(b)["coefficients"]
    return all(np.isclose(x[k], y[k], rtol=1e-12, atol=0)
               for x, y in zip(rows_a, rows_b, strict=True)
               for k in ("coef", "std_err", "z"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", default="bench/results/predict.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        data, run = folder / "data.csv", folder / "run"
        make_csv(data, args.rows)
        subprocess.run(XENT + ["train", str(data), "-o", str(run), "-q", "--optimizer",
                               "lbfgs", "--epochs", "30"], check=True)
        _, pandas_mb = peak_rss_mb([sys.executable, "-c",
                                    f"import pandas; pandas.read_csv({str(data)!r})"])
        fill = {"run": str(run), "data": str(data), "out": str(folder / "predictions.csv")}
        report = {"rows": args.rows, "csv_mb": data.stat().st_size / 1e6,
                  "pandas_read_peak_mb": pandas_mb}
        print(f"{args.rows:,} x 20 CSV, {report['csv_mb']:.0f} MB; a pandas read of it "
              f"peaks at {pandas_mb:.0f} MB")
        print("| command | way | seconds | peak MB | peak / pandas read | outputs agree |")
        print("|---|---|---|---|---|---|")
        for name in COMMANDS:
            results = run_both(name, fill)
            agree = same(name, results)
            for way in ("blocks", "whole"):
                r = results[way]
                print(f"| {name} | {way} | {r['seconds']:.2f} | {r['peak_mb']:.0f} | "
                      f"{r['peak_mb'] / pandas_mb:.2f}x | {'yes' if agree else 'NO'} |")
                report[f"{name}_{way}"] = {"seconds": r["seconds"], "peak_mb": r["peak_mb"]}
            report[f"{name}_outputs_agree"] = agree
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
