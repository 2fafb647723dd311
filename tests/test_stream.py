"""Streaming from a cache: the same model as in memory, a cache that follows the file."""

import json

import numpy as np
import pandas as pd
import pytest

from xent import api, stream
from xent.config import Config, with_overrides
from xent.data import ReadOptions
from xent.errors import ConfigError, DataError
from xent.text import TextSpec


def make_csv(path, n=3000, seed=0, holes=False):
    rng = np.random.default_rng(seed)
    colour = rng.choice(["red", "green", "blue", "grün"], size=n)
    x1 = rng.normal(size=n) * 3 + 1
    x2 = rng.normal(size=n) * 0.1
    score = x1 - 20 * x2 + (colour == "red") * 2 + rng.normal(0, 1, n)
    label = np.where(score > 2, "high", np.where(score > 0, "mid", "low"))
    frame = pd.DataFrame({"x1": x1, "colour": colour, "x2": x2, "label": label})
    if holes:
        frame.loc[rng.choice(n, 40, replace=False), "x1"] = np.nan
        frame.loc[rng.choice(n, 30, replace=False), "colour"] = np.nan
    frame.to_csv(path, index=False)
    return frame


def config(source, **overrides):
    settings = {"data.source": str(source), "optim.optimizer": "lbfgs", "optim.tol": 1e-9,
                "data.val_fraction": 0.0}
    settings.update(overrides)
    return with_overrides(Config(), settings)


@pytest.mark.parametrize("holes", [False, True])
def test_streamed_training_equals_in_memory(tmp_path, holes):
    make_csv(tmp_path / "big.csv", holes=holes)
    extra = {"data.impute": "mean"} if holes else {}
    in_memory = api.train(config(tmp_path / "big.csv", **extra))
    streamed = api.train(config(tmp_path / "big.csv", **{"data.stream": True,
                                                          "data.chunk_rows": 64, **extra}))
    assert streamed.summary["objective"] == pytest.approx(in_memory.summary["objective"],
                                                          rel=1e-10)
    assert np.allclose(streamed.model.coef, in_memory.model.coef, atol=1e-7)
    assert streamed.model.feature_names == in_memory.model.feature_names
    assert np.allclose(streamed.model.standardizer.mean, in_memory.model.standardizer.mean)
    assert np.allclose(streamed.model.standardizer.scale, in_memory.model.standardizer.scale)
    if holes:
        assert streamed.model.encoder.fill == pytest.approx(in_memory.model.encoder.fill)


def test_gradient_descent_follows_the_same_path(tmp_path):
    make_csv(tmp_path / "d.csv", n=1000)
    settings = {"optim.optimizer": "nesterov", "optim.epochs": 25, "optim.tol": 0.0}
    a = api.train(config(tmp_path / "d.csv", **settings))
    b = api.train(config(tmp_path / "d.csv", **settings, **{"data.stream": True,
                                                            "data.chunk_rows": 100}))
    assert np.allclose(a.history.column("objective"), b.history.column("objective"),
                       rtol=1e-11)


def test_streamed_minibatches_and_validation(tmp_path):
    make_csv(tmp_path / "d.csv", n=4000)
    settings = {"data.stream": True, "data.chunk_rows": 500, "optim.optimizer": "adam",
                "optim.batch_size": 64, "optim.epochs": 15, "data.val_fraction": 0.25,
                "data.seed": 3}
    first = api.train(config(tmp_path / "d.csv", **settings))
    again = api.train(config(tmp_path / "d.csv", **settings))
    assert np.array_equal(first.model.coef, again.model.coef)  # same seed, same bytes
    assert 800 < first.summary["n_val"] < 1200
    assert first.summary["val_accuracy"] > 0.8
    # the split depends on row index and seed, not on the chunk size
    other = api.train(config(tmp_path / "d.csv", **dict(settings, **{"data.chunk_rows": 64})))
    assert other.summary["n_val"] == first.summary["n_val"]


def test_split_masks_are_stratified_over_the_usable_rows():
    from xent.preprocess import split_masks

    labels = np.array([0] * 500 + [1] * 300 + [2] * 200)
    usable = np.ones(1000, dtype=bool)
    usable[::10] = False  # e.g. rows dropped for missing values
    train, val = split_masks(labels, usable, 0.2, seed=1)
    assert not (train & val).any() and np.array_equal(train | val, usable)
    assert np.bincount(labels[val], minlength=3).tolist() == [90, 54, 36]
    assert np.array_equal(val, split_masks(labels, usable, 0.2, seed=1)[1])
    assert not np.array_equal(val, split_masks(labels, usable, 0.2, seed=2)[1])


def test_a_changed_file_gets_a_new_cache(tmp_path, run):
    make_csv(tmp_path / "d.csv", n=500)
    table, built = stream.build_cache(tmp_path / "d.csv")
    assert built and table.n_rows == 500
    assert stream.build_cache(tmp_path / "d.csv")[1] is False  # reused
    make_csv(tmp_path / "d.csv", n=600, seed=1)
    table, built = stream.build_cache(tmp_path / "d.csv")
    assert built and table.n_rows == 600
    listed = json.loads(run("cache", "list", "--json").stdout)
    ours = [r for r in listed if r["source"] == str((tmp_path / "d.csv").resolve())]
    assert sorted(r["stale"] for r in ours) == [False, True]
    assert "removed 1" in run("cache", "clear", "--stale").stdout
    assert len([r for r in json.loads(run("cache", "list", "--json").stdout)
                if r["source"] == str((tmp_path / "d.csv").resolve())]) == 1
    run("cache", "clear")
    assert json.loads(run("cache", "list", "--json").stdout) == []


def test_caches_made_with_settings_are_not_stale_and_clear_keeps_the_kernels(tmp_path, run,
                                                                           monkeypatch):
    """A cache made with text columns, or with read options, is listed as fresh (its key
    is remade from all its settings), so `cache clear --stale` keeps it; `cache clear`
    removes the data caches but not numba's compiled kernels beside them. Only a cache with
    text has the hashed text's files."""
    monkeypatch.setenv("XENT_CACHE_DIR", str(tmp_path / "cache"))  # only this test's caches
    pd.DataFrame({"review": ["good food", "bad food", "so good"] * 30,
                  "label": ["y", "n", "y"] * 30}).to_csv(tmp_path / "r.csv", index=False)
    make_csv(tmp_path / "d.csv", n=300)
    with_text = stream.build_cache(tmp_path / "r.csv", "label",
                                   text=TextSpec(("review",), buckets=64))[0]
    plain = stream.build_cache(tmp_path / "d.csv", read=ReadOptions(sep=",", na_values=("?",)))[0]
    assert (with_text.directory / "text_data.bin").stat().st_size > 0
    assert not list(plain.directory.glob("text_*"))  # no empty text files without text
    compiled = stream.cache_root() / stream.COMPILED_DIR
    compiled.mkdir(parents=True, exist_ok=True)
    (compiled / "kernel.nbi").write_text("compiled")
    listed = json.loads(run("cache", "list", "--json").stdout)
    assert len(listed) == 2 and not any(r["stale"] for r in listed)
    assert "removed 0" in run("cache", "clear", "--stale").stdout
    assert "removed 2" in run("cache", "clear").stdout
    assert (compiled / "kernel.nbi").read_text() == "compiled"


def test_parquet_streams_by_row_groups(tmp_path):
    frame = make_csv(tmp_path / "d.csv", n=1500)
    frame.to_parquet(tmp_path / "d.parquet", row_group_size=100)
    from_csv = api.train(config(tmp_path / "d.csv", **{"data.stream": True}))
    from_parquet = api.train(config(tmp_path / "d.parquet", **{"data.stream": True,
                                                                "data.chunk_rows": 128}))
    in_memory = api.train(config(tmp_path / "d.parquet"))
    assert from_parquet.summary["objective"] == pytest.approx(from_csv.summary["objective"],
                                                              rel=1e-10)
    assert in_memory.summary["objective"] == pytest.approx(from_csv.summary["objective"],
                                                           rel=1e-10)


def test_cli_streams_and_evaluates(run, tmp_path):
    make_csv(tmp_path / "d.csv", n=2000)
    result = run("train", "d.csv", "--stream", "--chunk-rows", "256", "--optimizer", "lbfgs",
                 "-o", "r")
    assert result.exit_code == 0, result.output
    building = "reading the data into the cache (once per file)"
    assert building in result.stderr and "d=6" in result.stderr
    evaluated = json.loads(run("eval", "r", "d.csv", "--json").stdout)
    assert evaluated["accuracy"] > 0.8 and evaluated["n_samples"] == 2000
    # said when the cache is built, not when it is there, nor before a missing file's error
    again = run("train", "d.csv", "--stream", "--chunk-rows", "256", "-o", "r2")
    assert again.exit_code == 0 and building not in again.stderr
    missing = run("train", "none.csv", "--stream", "-o", "r3")
    assert missing.exit_code == 1 and missing.stderr.count("\n") == 1, missing.stderr


def test_too_big_for_memory_streams_by_itself(run, tmp_path, monkeypatch):
    make_csv(tmp_path / "d.csv", n=500)
    monkeypatch.setenv("XENT_MEMORY_BUDGET", "1000")
    result = run("train", "d.csv", "-o", "r", "--epochs", "3")
    assert result.exit_code == 0, result.output
    assert "too big to train on in memory" in result.stderr
    assert "stream = true" in (tmp_path / "r/config.toml").read_text()
    # a compressed file by its text, not its bytes on disk: 4 x its compressed size fits
    # the budget, 4 x its text does not (it had been read whole)
    import gzip

    from xent.files import text_size

    text = (tmp_path / "d.csv").read_bytes()
    (tmp_path / "d.csv.gz").write_bytes(gzip.compress(text))
    assert text_size(tmp_path / "d.csv.gz") == len(text)
    packed = (tmp_path / "d.csv.gz").stat().st_size
    monkeypatch.setenv("XENT_MEMORY_BUDGET", str(4 * packed + 1))
    assert 4 * packed < 4 * len(text) // 2  # (it compresses more than twice)
    result = run("train", "d.csv.gz", "-o", "r2", "--epochs", "3")
    assert result.exit_code == 0 and "too big to train on in memory" in result.stderr


@pytest.mark.parametrize("rows, message", [
    ("x,label\n" + "1,a\n" * 100 + "oops,b\n", "numeric in the first rows"),
    ("x,label\n1,a\n2,\n", "no label"),
    ("x,label\n1,a\n,b\n", "missing values in column(s) 'x' (1)"),
    ("label\na\nb\n", "no feature columns"),
])
def test_streaming_errors(tmp_path, rows, message):
    (tmp_path / "bad.csv").write_text(rows)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        api.train(config(tmp_path / "bad.csv", **{"data.stream": True, "data.chunk_rows": 64}))


def test_median_is_refused_when_streaming(tmp_path):
    make_csv(tmp_path / "d.csv", n=200, holes=True)
    with pytest.raises(ConfigError, match="median"):  # a usage error, before any caching
        api.train(config(tmp_path / "d.csv", **{"data.stream": True, "data.impute": "median"}))


def test_unstandardised_streaming_equals_in_memory(tmp_path):
    make_csv(tmp_path / "d.csv", n=800)
    settings = {"data.standardize": False, "optim.optimizer": "nesterov", "optim.epochs": 20,
                "optim.tol": 0.0}
    a = api.train(config(tmp_path / "d.csv", **settings))
    b = api.train(config(tmp_path / "d.csv", **settings, **{"data.stream": True,
                                                            "data.chunk_rows": 100}))
    assert b.model.standardizer is None
    assert np.allclose(a.history.column("objective"), b.history.column("objective"),
                       rtol=1e-11)


@pytest.mark.parametrize("n_threads", [1, 3])
def test_streamed_sums_and_gram_product_over_a_selection_equal_numpy(tmp_path, n_threads,
                                                                    monkeypatch):
    # numeric columns only: the blocks are the cache's rows as read, a selection cuts them
    rng = np.random.default_rng(3)
    X = rng.normal(size=(1000, 4)) * [1.0, 5.0, 0.1, 2.0] + 3.0
    score = X @ [1.0, -0.2, 4.0, 0.5] + rng.logistic(size=1000)
    y = (score > np.median(score)).astype(int)
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"]).assign(y=y)
    frame.to_csv(tmp_path / "n.csv", index=False)
    table, _ = stream.build_cache(tmp_path / "n.csv", None, 64)
    selection = rng.random(1000) < 0.7
    from xent.links import get_link
    from xent.loss import Objective, evaluate, labels_target
    from xent.preprocess import fit_preprocessing
    from xent.sources import SourceOptions

    prep = fit_preprocessing(table.statistics(selection), table.schema, table.levels,
                             impute=None, standardize=True)
    standardizer = prep.standardizer
    data = stream.StreamData(table, selection, prep, SourceOptions(chunk_rows=64))

    rows = X[selection]  # the CSV holds every digit: the cache must give these values back
    assert np.allclose(standardizer.mean, rows.mean(axis=0), rtol=1e-13)
    assert np.allclose(standardizer.scale, rows.std(axis=0), rtol=1e-13)
    link = get_link("sigmoid")
    params = rng.normal(size=(5, 1))
    monkeypatch.setattr(stream, "thread_count", lambda: n_threads)
    shared, on_threads = [], stream.on_threads
    monkeypatch.setattr(stream, "on_threads", lambda work, runs, threads:
                        shared.append(threads) or on_threads(work, runs, threads))
    streamed = Objective(link, 0.1).evaluate(params, data)
    assert shared == [1]  # 700 rows: too little work for a second thread
    from xent import loss

    monkeypatch.setattr(loss, "KERNEL_THREAD_WORK", 1000)  # shared out as a large file's
    again = Objective(link, 0.1).evaluate(params, data)
    assert shared == [1, n_threads]
    assert again.objective == pytest.approx(streamed.objective, rel=1e-14)
    reference = evaluate(params, (rows - rows.mean(axis=0)) / rows.std(axis=0),
                         labels_target(y[selection], 2), link, 0.1)
    assert streamed.objective == pytest.approx(reference.objective, rel=1e-12)
    assert np.allclose(streamed.grad, reference.grad, rtol=1e-10, atol=1e-13)
    # the Lipschitz bound's product, Za^T Za v over the standardised rows, on the same threads
    standardised = np.c_[(rows - rows.mean(axis=0)) / rows.std(axis=0), np.ones(len(rows))]
    v = rng.normal(size=5)
    shared.clear()
    product, total = data.gram_product(v, True)
    assert shared == [n_threads] and total == np.count_nonzero(selection)
    exact = standardised.T @ (standardised @ v)
    np.testing.assert_allclose(product, exact, rtol=1e-12, atol=1e-12 * np.abs(exact).max())


def test_blocks_of_rows_encoding_wide_are_read_fewer_at_a_time(tmp_path):
    """A row of two raw columns can encode to thousands of features (a level each): the
    rows a block reads are cut by the encoded width, so that a block stays near
    ``READ_BYTES``, not that times the levels."""
    n = 3000
    pd.DataFrame({"id": [f"u{i}" for i in range(n)], "x": np.arange(n) % 7,
                  "y": np.arange(n) % 2}).to_csv(tmp_path / "w.csv", index=False)
    table, _ = stream.build_cache(tmp_path / "w.csv", None, 1 << 16)
    from xent.preprocess import fit_preprocessing

    everything = np.ones(n, dtype=bool)
    prep = fit_preprocessing(table.statistics(everything), table.schema, table.levels,
                             impute=None, standardize=True)
    wide = stream.StreamData(table, everything, prep)
    assert wide.shape == (n, n + 1)
    assert wide.chunk_rows == max(256, stream.READ_BYTES // (8 * (n + 1)))  # 256, not 65,536
    assert stream.read_rows(table, 1 << 16) == 1 << 16  # by the raw columns alone


def test_training_from_the_cache_does_not_import_pandas(tmp_path):
    # pandas and scikit-learn cost ~100 MB of memory; the cache is read without them
    import subprocess
    import sys

    make_csv(tmp_path / "d.csv", n=500)
    stream.build_cache(tmp_path / "d.csv", None, 128)
    script = ("import sys; from xent import api; from xent.config import Config, with_overrides;"
              f"api.train(with_overrides(Config(), {{'data.source': {str(tmp_path / 'd.csv')!r},"
              "'data.stream': True, 'optim.epochs': 3}));"
              "print(sorted(m for m in ('pandas', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
