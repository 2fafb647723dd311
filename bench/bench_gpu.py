"""The GPU (#16): xent's array-API loss and gradient on CuPy against xent on the host's CPU
cores and torch on the GPU, in one run. Run it on a machine with a CUDA GPU, CuPy and torch:

    python bench/bench_gpu.py              # the probe, 10M x 100 x 10, A and B
    python bench/bench_gpu.py --quick      # a tenth of the rows
    python bench/bench_gpu.py --no-gpu     # the same code with numpy as the "device" (a check
                                           # that the script runs; its figures mean nothing)

Data (float32, seeded, labels from a random linear model with noise):
- probe: 1,280,000 x 768, 1000 classes (ImageNet-sized linear probe on embeddings, 3.9 GB);
- big: 10,000,000 x 100, 10 classes;  A: 200,000 x 100, 10 classes;  B: 1,000,000 x 50, 2.

For each: one loss+gradient (median of 5 after a warm-up) by xent on the GPU in float32, with
TF32 products (a process of its own: CuPy reads CUPY_TF32 when imported), by torch on the GPU
(float32, TF32) and by xent on the host's cores; the GPU read limit (summing X twice, what one
evaluation must read); then whole L-BFGS fits (l2 = 1/n, tol 1e-6): xent on the GPU, torch
LBFGS (strong Wolfe) on the GPU, and xent on the CPU (for the probe the CPU fit is estimated as
the GPU fit's evaluations times one CPU evaluation, the same iterates; elsewhere run). Targets:
the probe's evaluation no slower than torch's (float32 and TF32); big's at most 4 ms on an H100
(1.5x the two-read limit); the probe's fit at least 50x faster than the CPU and no slower than
torch LBFGS, reaching the CPU optimum within 1e-6.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from xent.device import ArrayApiSource, namespace  # noqa: E402
from xent.links import get_link  # noqa: E402
from xent.loss import Objective  # noqa: E402
from xent.sources import ArraySource  # noqa: E402
from xent.targets import labels_target  # noqa: E402
from xent.threads import available_cores  # noqa: E402
from xent.train import Solver, Stopping, fit  # noqa: E402

SIZES = {"probe": (1_280_000, 768, 1000), "big": (10_000_000, 100, 10),
         "A": (200_000, 100, 10), "B": (1_000_000, 50, 2)}


def make(n, d, k, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d), dtype=np.float32)
    W = rng.standard_normal((d, k), dtype=np.float32) / np.sqrt(d)
    logits = X @ W + rng.gumbel(size=(n, k)).astype(np.float32)
    return X, np.argmax(logits, axis=1)


def median_time(function, repeats=5, sync=lambda: None):
    function()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        sync()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def torch_eval_and_fit(X, y, k, l2, tf32):
    """(one evaluation's seconds, a whole LBFGS fit's seconds, its objective) with torch on
    the GPU, or None without torch or a GPU."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    torch.backends.cuda.matmul.allow_tf32 = tf32
    Xt = torch.from_numpy(X).cuda()
    yt = torch.from_numpy(y).cuda()
    n, d = X.shape
    outputs = 1 if k == 2 else k
    W = torch.zeros(d, outputs, device="cuda", requires_grad=True)
    b = torch.zeros(outputs, device="cuda", requires_grad=True)

    def objective():
        z = Xt @ W + b
        if outputs == 1:
            data = torch.nn.functional.binary_cross_entropy_with_logits(z[:, 0], yt.float())
        else:
            data = torch.nn.functional.cross_entropy(z, yt)
        return data + 0.5 * l2 * (W * W).sum()

    def evaluate():
        W.grad = b.grad = None
        objective().backward()

    seconds = median_time(evaluate, sync=torch.cuda.synchronize)
    with torch.no_grad():
        W.zero_()
        b.zero_()
    optimizer = torch.optim.LBFGS([W, b], lr=1, max_iter=500, history_size=20,
                                  tolerance_grad=0, tolerance_change=0,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        value = objective()
        value.backward()
        return value

    torch.cuda.synchronize()
    start = time.perf_counter()
    optimizer.step(closure)
    torch.cuda.synchronize()
    fit_seconds = time.perf_counter() - start
    return seconds, fit_seconds, float(objective())


def xent_evaluation(source, params, link, sync):
    return median_time(lambda: source.sums(params, link), sync=sync)


def run_size(name, n, d, k, device, tf32_only=False):
    X, y = make(n, d, k)
    link = get_link("auto", k)
    l2 = 1.0 / n
    objective = Objective(link, l2)
    target = labels_target(y, k)
    xp = namespace(device, tf32=tf32_only)
    sync = (lambda: __import__("cupy").cuda.Device().synchronize()) if device == "cuda" \
        else (lambda: None)
    gpu = ArrayApiSource.of(X, target, None, xp)
    params = np.zeros((d + 1, link.n_outputs(k)))
    out = {"shape": [n, d, k], "tf32": tf32_only}
    out["xent_gpu_eval"] = xent_evaluation(gpu, params, link, sync)
    if tf32_only:
        return out
    out["two_reads"] = median_time(lambda: (float(xp.sum(gpu.X)), float(xp.sum(gpu.X))),
                                   sync=sync)
    cpu = ArraySource(X, target)
    out["xent_cpu_eval"] = xent_evaluation(cpu, params, link, lambda: None)
    solver, stopping = Solver("lbfgs"), Stopping(1000, 1e-6)
    start = time.perf_counter()
    fitted = fit(gpu, objective, solver, stopping)
    out["xent_gpu_fit"] = time.perf_counter() - start
    out["xent_gpu_objective"] = fitted.history.last.objective
    out["xent_gpu_evaluations"] = fitted.n_evaluations
    if name == "probe":
        out["xent_cpu_fit_estimated"] = fitted.n_evaluations * out["xent_cpu_eval"]
    else:
        start = time.perf_counter()
        cpu_fit = fit(cpu, objective, solver, stopping)
        out["xent_cpu_fit"] = time.perf_counter() - start
        out["xent_cpu_objective"] = cpu_fit.history.last.objective
    for tf32 in (False, True):
        result = torch_eval_and_fit(X, y, k, l2, tf32)
        if result is not None:
            key = "torch_tf32" if tf32 else "torch"
            out[f"{key}_eval"], out[f"{key}_fit"], out[f"{key}_objective"] = result
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-gpu", action="store_true")
    parser.add_argument("--only", help="one size (probe, big, A, B)")
    parser.add_argument("--tf32-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "gpu.json"))
    args = parser.parse_args()
    device = "cpu" if args.no_gpu else "cuda"
    scale = 0.1 if args.quick else 1.0
    names = [args.only] if args.only else list(SIZES)
    results = {"machine": {"cores": available_cores(), "python": platform.python_version(),
                           "device": device}}
    for name in names:
        n, d, k = SIZES[name]
        n = max(1000, int(n * scale))
        if args.tf32_only:
            print(json.dumps(run_size(name, n, d, k, device, tf32_only=True)))
            return
        results[name] = run_size(name, n, d, k, device)
        if device == "cuda":  # TF32 in a process of its own: CuPy reads CUPY_TF32 once
            command = [sys.executable, __file__, "--only", name, "--tf32-only"] + \
                (["--quick"] if args.quick else [])
            line = subprocess.run(command, check=True, capture_output=True,
                                  text=True).stdout.strip().splitlines()[-1]
            results[name]["xent_gpu_tf32_eval"] = json.loads(line)["xent_gpu_eval"]
        report(name, results[name])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))


def report(name, r) -> None:
    ms = {key: value * 1000 for key, value in r.items() if key.endswith("_eval")}
    print(f"{name} {r['shape']}: evaluation (ms) " +
          ", ".join(f"{key[:-5]} {value:.2f}" for key, value in ms.items()) +
          f"; two reads {r['two_reads'] * 1000:.2f}")
    cpu_fit = r.get("xent_cpu_fit", r.get("xent_cpu_fit_estimated"))
    line = (f"  L-BFGS fit: xent GPU {r['xent_gpu_fit']:.2f} s ({r['xent_gpu_evaluations']} "
            f"evaluations), xent CPU {cpu_fit:.2f} s"
            f"{' (estimated)' if 'xent_cpu_fit_estimated' in r else ''} = "
            f"{cpu_fit / r['xent_gpu_fit']:.1f}x")
    if "torch_fit" in r:
        line += f", torch LBFGS {r['torch_fit']:.2f} s"
    if "xent_cpu_objective" in r:
        gap = abs(r["xent_gpu_objective"] - r["xent_cpu_objective"]) / r["xent_cpu_objective"]
        line += f"; objective gap to the CPU {gap:.1e}"
    print(line)


if __name__ == "__main__":
    main()
