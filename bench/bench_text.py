"""Text classification (#15): xent on hashed word counts against scikit-learn's saga and
fastText, in one run.

    python bench/bench_text.py            # 200,000 training and 50,000 test documents
    python bench/bench_text.py --quick    # 20,000 and 5,000

The corpus (``xent.text.topic_corpus``, seeded): 20 classes, a 50,000-word vocabulary, 20-50
tokens a document, each token drawn with probability 0.2 from its class's own Zipf(1.1) over a
class-specific permutation of the vocabulary, else from a global Zipf(1.0). It is written in
fastText's format (one ``__label__c text`` line a document) to a temporary directory.

1. Training alone, on the same matrix (the vectorising excluded on both sides): xent's hashed
   counts (its defaults: unigrams, 2^18 buckets, no norm), xent with its text defaults (lazy
   SGD, batch 1, 5 epochs, lr 1/L decaying as 1/(1 + epoch), l2 1e-7) through ``train.fit``,
   against LogisticRegression(solver="saga", max_iter=5) at the same penalty (C = 1 / (l2 n)).
   Target: xent's time <= saga's, held-out accuracy >= 0.968.
2. End to end, as a user runs it: ``xent train train.txt --val-fraction 0`` then ``xent eval
   RUN test.txt`` as processes (reading, hashing, training, writing the run; reading and
   scoring the test file), against fastText's train_supervised(epoch=5) and test where the
   fasttext (fasttext-wheel) module is installed. Target: xent faster.
3. One evaluation (loss and gradient) of the hashed training matrix, on one thread and on every
   core, by ranges of columns (xent's layout for wide CSR) and with a buffer per thread.
   Hashing: xent's (every core) and scikit-learn's HashingVectorizer (one core) on the
   training documents, unigrams and 1-2-grams.
4. Memory: the peak resident memory of the ``xent train`` process above that of a process
   that only imported the same modules, and above one that also ran each compiled kernel once
   on ten documents (numba's runtime and machine code, the tool's whatever the data), against
   the bytes of the CSR matrix.
5. Streaming (``--stream-docs N``, e.g. 1000000): ``xent train FILE --stream`` on the training
   file and on one of N documents from the same generator; the peak resident memory of both
   (bounded: it should not grow with N) and the held-out accuracy.

Times are single runs on this machine, with its cores (training alone: the better of two runs
each, taken in turn); ratios divide by the times of the other tools in the same run. How it
scales: hashing and each epoch's full evaluation use every core; the lazy SGD steps run on one
(they are sequential); saga runs on one core, fastText on min(12, cores) threads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import sklearn
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from xent import api  # noqa: E402
from xent.config import Config, with_overrides  # noqa: E402
from xent.links import get_link  # noqa: E402
from xent.loss import KERNEL_THREAD_WORK, Objective, work_of  # noqa: E402
from xent.sources import ArraySource  # noqa: E402
from xent.targets import labels_target  # noqa: E402
from xent.text import TextSpec, topic_corpus  # noqa: E402
from xent.threads import available_cores  # noqa: E402
from xent.train import Solver, Stopping, fit  # noqa: E402

XENT = [sys.executable, "-m", "xent.cli"]
IMPORTS = ("import xent.cli, xent.api, xent.kernels, sklearn.feature_extraction.text, pandas, "
           "matplotlib.pyplot")
#: a tiny run of every compiled kernel a text run uses: numba's runtime and the machine code
#: (about 150 MB here) are the tool's, whatever the data
LOAD_KERNELS = """
import numpy as np, scipy.sparse as sp
from xent import lazy
from xent.links import get_link
from xent.loss import Objective, sums
from xent.optim import GDState
from xent.targets import labels_target
from xent.text import TextSpec
X = TextSpec(("t",)).hash_documents(["a bb cc"] * 10)
target, objective = labels_target(np.zeros(10, int), 3), Objective(get_link("softmax", 3))
sums(np.zeros((X.shape[1] + 1, 3)), X, target, objective.link)
from xent import kernels
kernels.csr_by_columns(kernels.inputs(X, np.zeros((X.shape[1], 3)), np.zeros(3), target, None,
                                      np.float64), X, True, 2)
lazy.epoch("gd", np.zeros((X.shape[1] + 1, 3)), GDState(0.1), X, target, None, np.arange(10), 1,
           objective)
"""


def write_fasttext(path: Path, documents, labels) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for document, label in zip(documents, labels, strict=True):
            handle.write(f"__label__c{label} {document}\n")


def text_settings() -> tuple[Solver, Stopping, float]:
    """xent's text defaults, as ``xent train`` resolves them for a text file."""
    config = with_overrides(Config(), {"data.source": "corpus.txt", "data.text": "text"})
    config = api.with_implied_defaults(config, set())
    solver, stopping = api.solver_settings(config)
    return solver, stopping, config.model.l2


def training_alone(X_train, y_train, X_test, y_test) -> dict:
    solver, stopping, l2 = text_settings()
    objective = Objective(get_link("softmax", 20), l2)
    source = ArraySource(X_train, labels_target(y_train, 20))
    # compile (or load) the kernels before timing: work enough for every core (``loss.work_of``),
    # so that the evaluation by columns (hashed text's layout) is loaded too
    per_row = work_of(X_train, 20) / X_train.shape[0]
    warm = min(X_train.shape[0], int(2 * available_cores() * KERNEL_THREAD_WORK // per_row) + 1)
    fit(ArraySource(X_train[:warm], labels_target(y_train[:warm], 20)), objective, solver,
        Stopping(1, 0.0))
    xent_seconds = saga_seconds = np.inf
    for _ in range(2):  # the better of two runs each, taken in turn (this machine is shared)
        start = time.perf_counter()
        result = fit(source, objective, solver, stopping)
        xent_seconds = min(xent_seconds, time.perf_counter() - start)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # saga "did not converge" in 5 epochs
            start = time.perf_counter()
            saga = LogisticRegression(solver="saga", max_iter=5, tol=1e-12,
                                      C=1.0 / (l2 * len(y_train))).fit(X_train, y_train)
            saga_seconds = min(saga_seconds, time.perf_counter() - start)
    W = result.params
    xent_accuracy = float(np.mean(np.argmax(X_test @ W[:-1] + W[-1], axis=1) == y_test))
    return {"xent_seconds": xent_seconds, "xent_accuracy": xent_accuracy,
            "saga_seconds": saga_seconds,
            "saga_accuracy": float(np.mean(saga.predict(X_test) == y_test)),
            "ratio": xent_seconds / saga_seconds,
            "settings": {"optimizer": solver.optimizer, "batch_size": solver.batch_size,
                         "epochs": stopping.max_epochs, "lr": solver.lr,
                         "lr_decay": solver.lr_decay, "l2": l2}}


def evaluation(X_train, y_train) -> dict:
    """One loss and gradient on the hashed training matrix (what each epoch's record costs):
    on one thread, and on every core by ranges of columns (``kernels.csr_by_columns``, what
    xent does) and with a gradient buffer per thread (the other layout, forced by patching
    ``loss._by_columns``); the best of five each."""
    from xent import loss

    params = np.zeros((X_train.shape[1] + 1, 20))
    target, link = labels_target(y_train, 20), get_link("softmax", 20)
    cores = available_cores()
    chosen = loss._by_columns

    def best(threads: int) -> float:
        loss.sums(params, X_train, target, link, n_threads=threads)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            loss.sums(params, X_train, target, link, n_threads=threads)
            times.append(time.perf_counter() - start)
        return min(times)

    out = {"one_thread": best(1), "by_columns": best(cores)}
    try:
        loss._by_columns = lambda *args: False
        out["buffers"] = best(cores)
    finally:
        loss._by_columns = chosen
    out["threads"] = cores
    return out


def peak_rss_mb(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak resident MB) of a command run as a process of its own (measured
    by a small parent, so that this process's own children do not count)."""
    probe = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
             "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
             "print(time.perf_counter() - t, "
             "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")
    out = subprocess.run([sys.executable, "-c", probe, *command], check=True,
                         capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1])


def end_to_end(directory: Path, train_path: Path, test_path: Path) -> dict:
    run_dir = directory / "run"
    train_seconds, train_mb = peak_rss_mb(XENT + ["train", str(train_path), "--val-fraction",
                                                  "0", "-q", "--force", "-o", str(run_dir)])
    start = time.perf_counter()
    evaluated = subprocess.run(XENT + ["eval", str(run_dir), str(test_path), "--json"],
                               check=True, capture_output=True, text=True).stdout
    eval_seconds = time.perf_counter() - start
    _, idle_mb = peak_rss_mb([sys.executable, "-c", IMPORTS])
    _, loaded_mb = peak_rss_mb([sys.executable, "-c", IMPORTS + "\n" + LOAD_KERNELS])
    out = {"xent_train_seconds": train_seconds, "xent_eval_seconds": eval_seconds,
           "xent_seconds": train_seconds + eval_seconds,
           "xent_accuracy": json.loads(evaluated)["accuracy"],
           "xent_peak_mb": train_mb, "idle_peak_mb": idle_mb, "kernels_peak_mb": loaded_mb}
    try:
        import fasttext
    except ImportError:
        out["fasttext"] = None
        return out
    start = time.perf_counter()
    model = fasttext.train_supervised(str(train_path), epoch=5, verbose=0)
    _, precision, _ = model.test(str(test_path))
    seconds = time.perf_counter() - start
    out["fasttext"] = {"seconds": seconds, "accuracy": precision,
                       "threads": min(12, os.cpu_count())}
    out["ratio"] = out["xent_seconds"] / seconds
    return out


def streaming(directory: Path, n_docs: int) -> dict:
    """Peak memory of ``xent train --stream`` on the training file and on ``n_docs``
    documents, each in a fresh cache; accuracy on the test file."""
    documents, labels = topic_corpus(n_docs, seed=0)  # the same topics, other documents
    big = directory / "big.txt"
    write_fasttext(big, documents, labels)
    del documents, labels
    out = {}
    for name, path in (("train", directory / "train.txt"), ("big", big)):
        env_cache = directory / f"cache-{name}"
        command = ["env", f"XENT_CACHE_DIR={env_cache}", *XENT, "train", str(path), "--stream",
                   "--val-fraction", "0", "-q", "--force", "-o", str(directory / f"s-{name}")]
        seconds, peak = peak_rss_mb(command)
        evaluated = subprocess.run(XENT + ["eval", str(directory / f"s-{name}"),
                                           str(directory / "test.txt"), "--json"],
                                   check=True, capture_output=True, text=True).stdout
        with open(path, encoding="utf-8") as handle:
            n_lines = sum(1 for _ in handle)
        out[name] = {"documents": n_lines,
                     "file_mb": path.stat().st_size / 2**20, "seconds": seconds,
                     "peak_mb": peak, "accuracy": json.loads(evaluated)["accuracy"]}
    return out


def hashing(documents) -> dict:
    out = {}
    for ngrams in [(1, 1), (1, 2)]:
        spec = TextSpec(("text",), ngrams)
        spec.hash_documents(documents[:2000])  # compile (or load) the kernel before timing
        start = time.perf_counter()
        spec.hash_documents(documents, available_cores())
        ours = time.perf_counter() - start
        start = time.perf_counter()
        HashingVectorizer(n_features=spec.buckets, ngram_range=ngrams, alternate_sign=False,
                          norm=None).transform(documents)
        theirs = time.perf_counter() - start
        out[f"{ngrams[0]}-{ngrams[1]}"] = {"xent": ours, "hashing_vectorizer": theirs,
                                           "ratio": ours / theirs}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--stream-docs", type=int, default=0,
                        help="also stream a file of this many documents (0: skip)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "text.json"))
    args = parser.parse_args()
    n_train, n_test = (20_000, 5_000) if args.quick else (200_000, 50_000)
    documents, labels = topic_corpus(n_train + n_test, seed=0)
    spec = TextSpec(("text",))
    X = spec.hash_documents(documents, available_cores())
    X_train, X_test = sp.csr_matrix(X[:n_train]), sp.csr_matrix(X[n_train:])
    y_train, y_test = labels[:n_train], labels[n_train:]
    csr_mb = (X_train.data.nbytes + X_train.indices.nbytes + X_train.indptr.nbytes) / 2**20
    results = {"machine": {"cores": available_cores(), "python": platform.python_version(),
                           "numpy": np.__version__, "scikit-learn": sklearn.__version__},
               "n_train": n_train, "n_test": n_test, "csr_mb": csr_mb}
    results["training"] = training_alone(X_train, y_train, X_test, y_test)
    results["evaluation"] = evaluation(X_train, y_train)
    results["hashing"] = hashing(documents[:n_train])
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        write_fasttext(directory / "train.txt", documents[:n_train], y_train)
        write_fasttext(directory / "test.txt", documents[n_train:], y_test)
        results["end_to_end"] = end_to_end(directory, directory / "train.txt",
                                           directory / "test.txt")
        if args.stream_docs:
            results["streaming"] = streaming(directory, args.stream_docs)
    report(results)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))


def report(r: dict) -> None:
    t, e = r["training"], r["end_to_end"]
    print(f"corpus: {r['n_train']:,} training, {r['n_test']:,} test documents; "
          f"{r['machine']['cores']} cores; CSR {r['csr_mb']:.0f} MB")
    print(f"training alone  xent {t['xent_seconds']:.2f} s (acc {t['xent_accuracy']:.4f})  "
          f"saga 5 epochs {t['saga_seconds']:.2f} s (acc {t['saga_accuracy']:.4f})  "
          f"ratio {t['ratio']:.2f}x")
    line = (f"end to end      xent {e['xent_seconds']:.2f} s (train {e['xent_train_seconds']:.2f}"
            f" + eval {e['xent_eval_seconds']:.2f}; acc {e['xent_accuracy']:.4f})")
    if e["fasttext"]:
        f = e["fasttext"]
        line += (f"  fastText {f['seconds']:.2f} s (acc {f['accuracy']:.4f})  ratio "
                 f"{e['ratio']:.2f}x")
    else:
        line += "  fastText not installed"
    print(line)
    v = r["evaluation"]
    print(f"one evaluation  1 thread {v['one_thread'] * 1e3:.0f} ms; {v['threads']} threads by "
          f"columns {v['by_columns'] * 1e3:.0f} ms ({v['by_columns'] / v['one_thread']:.2f}x), "
          f"with a buffer per thread {v['buffers'] * 1e3:.0f} ms "
          f"({v['buffers'] / v['one_thread']:.2f}x)")
    for ngrams, h in r["hashing"].items():
        print(f"hashing {ngrams}     xent {h['xent']:.2f} s  HashingVectorizer (1 core) "
              f"{h['hashing_vectorizer']:.2f} s  ratio {h['ratio']:.2f}x")
    added = e["xent_peak_mb"] - e["idle_peak_mb"]
    beyond = e["xent_peak_mb"] - e["kernels_peak_mb"]
    print(f"memory          xent train peak {e['xent_peak_mb']:.0f} MB: {added:.0f} MB above a "
          f"process that imported the same modules = {added / r['csr_mb']:.1f}x the CSR matrix; "
          f"{beyond:.0f} MB above one that also ran the compiled kernels = "
          f"{beyond / r['csr_mb']:.1f}x")
    for name, s in r.get("streaming", {}).items():
        print(f"streamed {name:6s} {s['documents']:,} documents ({s['file_mb']:.0f} MB): "
              f"{s['seconds']:.1f} s, peak {s['peak_mb']:.0f} MB, acc {s['accuracy']:.4f}")


if __name__ == "__main__":
    main()
