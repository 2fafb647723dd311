"""The Dask engine: partitions on a LocalCluster (127.0.0.1, 2 workers) give the in-memory
model."""

import json
import os

import numpy as np
import pandas as pd
import pytest
from test_stream import config, make_csv

from xent import api
from xent.train import Hooks

pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    from xent.dask_engine import connect

    with connect(workers=2) as c:
        yield c


@pytest.mark.parametrize("holes", [False, True])
def test_dask_training_equals_in_memory(tmp_path, client, holes):
    frame = make_csv(tmp_path / "all.csv", n=3000, holes=holes)
    for i, part in enumerate(np.array_split(np.arange(len(frame)), 3)):
        frame.iloc[part].to_csv(tmp_path / f"part{i}.csv", index=False)
    extra = {"data.impute": "mean"} if holes else {}
    in_memory = api.train(config(tmp_path / "all.csv", **extra))
    on_dask = api.train(config(str(tmp_path / "part*.csv"), **{"data.engine": "dask", **extra}),
                        client=client)
    assert on_dask.summary["objective"] == pytest.approx(in_memory.summary["objective"],
                                                         rel=1e-10)
    assert np.allclose(on_dask.model.coef, in_memory.model.coef, atol=1e-7)
    assert on_dask.model.feature_names == in_memory.model.feature_names
    assert on_dask.summary["n_samples"] == 3000


def test_dask_with_validation_and_gradient_descent(tmp_path, client):
    make_csv(tmp_path / "d.csv", n=2000)
    settings = {"data.engine": "dask", "data.val_fraction": 0.2, "optim.optimizer": "nesterov",
                "optim.epochs": 30, "optim.tol": 0.0}
    run = api.train(config(tmp_path / "d.csv", **settings), client=client)
    assert 300 < run.summary["n_val"] < 500
    streamed = api.train(config(tmp_path / "d.csv", **dict(settings, **{
        "data.engine": "local", "data.stream": True})))
    # the same per-row split as streaming: the same run
    assert np.allclose(run.history.column("objective"), streamed.history.column("objective"),
                       rtol=1e-10)


def test_cli_trains_on_a_local_cluster(run, tmp_path, client):
    # in a process of its own, for -q to be seen to silence Dask's log lines (from the client,
    # the scheduler and the local workers): stderr stays empty
    import subprocess
    import sys

    make_csv(tmp_path / "d.csv", n=1000)
    result = subprocess.run([sys.executable, "-m", "xent.cli", "train", "d.csv", "--engine",
                             "dask", "--workers", "2", "--optimizer", "lbfgs", "-o", "r",
                             "--json", "-q"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    summary = json.loads(result.stdout)
    assert summary["val_accuracy"] > 0.8
    assert json.loads(run("eval", "r", "d.csv", "--json").stdout)["accuracy"] > 0.8
    batched = run("train", "d.csv", "--engine", "dask", "--batch-size", "32", "--epochs", "3",
                  "-o", "b", "--json", "--scheduler", client.scheduler.address)
    assert batched.exit_code == 0, batched.output
    assert "on the Dask cluster at tcp://127.0.0.1" in batched.stderr
    assert json.loads(batched.stdout)["val_accuracy"] > 0.8


def test_unreachable_scheduler_is_a_clear_error(run, tmp_path):
    pd.DataFrame({"x": [1.0, 2.0], "y": [0, 1]}).to_csv(tmp_path / "d.csv", index=False)
    result = run("train", "d.csv", "--engine", "dask", "--scheduler", "tcp://127.0.0.1:9",
                 "-o", "r")
    assert result.exit_code == 1 and "cannot reach the Dask scheduler" in result.stderr


def test_mistakes_in_partitions_are_one_line_errors(tmp_path):
    """A mistake dask meets past the first block it samples (a byte that is not UTF-8, a row
    with no label) ended in a traceback, or in the right line under a worker's "Compute
    Failed" log with its traceback; a missing file in two lines of Dask's wrapping."""
    import subprocess
    import sys

    rows = ["a,drink,y"] + [f"{i % 7},{'tea' if i % 2 else 'milk'},{i % 2}"
                            for i in range(60_000)]
    (tmp_path / "win.csv").write_bytes(("\n".join(rows[:50_001] + ["3,café,1"] + rows[50_001:])
                                        + "\n").encode("cp1252"))
    (tmp_path / "holes.csv").write_text("\n".join(rows[:50_001] + ["3,tea,"] + rows[50_001:])
                                        + "\n")
    import gzip

    packed = gzip.compress(("\n".join(rows) + "\n").encode())
    (tmp_path / "cut.csv.gz").write_bytes(packed[:len(packed) // 2])
    (tmp_path / "marker.csv").write_text("\n".join(rows[:50_001] + ["?,tea,1"] + rows[50_001:])
                                         + "\n")
    for data, words in [("win.csv", "not UTF-8 text (byte 0xe9 on line 50,002)"),
                        ("holes.csv", "1 row(s) have no label in column 'y' (file lines "
                                      "[50002])"),
                        ("marker.csv", "column(s) 'a' are numbers in the rows dask samples"),
                        ("cut.csv.gz", "cut.csv.gz: the gzip data are cut short or damaged"),
                        ("none*.csv", "no such file, nor files matching it as a pattern")]:
        result = subprocess.run([sys.executable, "-m", "xent.cli", "train", data, "--engine",
                                 "dask", "--workers", "2", "-o", "r"], cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 1 and words in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr


def test_encoding_and_late_holes_read_a_file_on_dask_as_in_memory(tmp_path, client):
    """A cp1252 file with --encoding; and a whole-number column with a missing value past
    the rows dask samples, which failed with dask's "Mismatched dtypes" (int64 sampled,
    float64 found), as a traceback."""
    rows = [f"{i % 7},{('tea', 'café')[i % 2]},{i % 3}" for i in range(60_000)]
    text = "a,drink,y\n" + "\n".join(rows[:50_000] + [",tea,1"] + rows[50_000:]) + "\n"
    (tmp_path / "win.csv").write_bytes(text.encode("cp1252"))
    (tmp_path / "utf8.csv").write_text(text, encoding="utf-8")
    settings = {"data.impute": "mean", "optim.optimizer": "lbfgs"}
    in_memory = api.train(config(tmp_path / "utf8.csv", **settings))
    on_dask = api.train(config(tmp_path / "win.csv", **settings, **{
        "data.engine": "dask", "data.encoding": "cp1252"}), client=client)
    assert on_dask.model.feature_names == in_memory.model.feature_names
    assert "drink=café" in on_dask.model.feature_names
    assert list(on_dask.model.classes) == list(in_memory.model.classes) == [0, 1, 2]
    np.testing.assert_allclose(on_dask.model.params, in_memory.model.params, rtol=1e-8,
                               atol=1e-10)
    import bz2

    # a row with no label in a later partition: Dask does not say where it starts, and the
    # message had called the partition's line numbers file lines
    parts = tmp_path / "parts"
    parts.mkdir()
    (parts / "a.csv").write_text(text, encoding="utf-8")
    (parts / "b.csv").write_text(text.replace("\n3,tea,0\n", "\n3,tea,\n", 1),
                                 encoding="utf-8")
    from xent.errors import DataError

    with pytest.raises(DataError, match=r"have no label .* \(lines counted from the start of "
                                        "one of the 64 MB blocks"):
        api.train(config(str(parts / "*.csv"), **{"data.engine": "dask"}), client=client)
    (tmp_path / "bare.csv").write_text(text.split("\n", 1)[1])  # no header: c1, c2, c3
    bare = api.train(config(tmp_path / "bare.csv", **settings, **{
        "data.engine": "dask", "data.no_header": True}), client=client)
    assert bare.model.feature_names[0] == "c1"
    np.testing.assert_allclose(bare.model.params, in_memory.model.params, rtol=1e-8,
                               atol=1e-10)
    import zipfile

    (tmp_path / "utf8.csv.bz2").write_bytes(bz2.compress(text.encode()))  # a partition a file
    with zipfile.ZipFile(tmp_path / "utf8.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("utf8.csv", text)
    for name in ("utf8.csv.bz2", "utf8.zip"):
        packed = api.train(config(tmp_path / name, **settings, **{"data.engine": "dask"}),
                           client=client)
        np.testing.assert_allclose(packed.model.params, in_memory.model.params, rtol=1e-8,
                                   atol=1e-10)


def _classes_data(n_classes, n=2400, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4)) * [1.0, 2.0, 0.5, 3.0]
    scores = X @ rng.standard_normal((4, n_classes)) + rng.gumbel(size=(n, n_classes))
    y = np.array(["ant", "bee", "cat", "dog"])[scores.argmax(axis=1)]
    return X, y, rng.uniform(0.2, 3.0, n)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_estimator_on_dask_arrays_equals_numpy(client, n_classes):
    import dask.array as da

    from xent.estimator import SoftmaxRegression

    X, y, weights = _classes_data(n_classes)
    settings = dict(optimizer="lbfgs", l2=1e-3, tol=1e-9, class_weight="balanced")
    in_memory = SoftmaxRegression(**settings).fit(X, y, sample_weight=weights)
    # uneven row blocks, labels chunked differently from X, weights as a dask array
    dX = da.from_array(X, chunks=((500, 900, 1000), (2, 2)))
    on_dask = SoftmaxRegression(**settings).fit(dX, da.from_array(y, chunks=800),
                                                sample_weight=da.from_array(weights, chunks=600))
    assert on_dask.history_.column("objective")[-1] == pytest.approx(
        in_memory.history_.column("objective")[-1], rel=1e-10)
    assert np.allclose(on_dask.coef_, in_memory.coef_, atol=1e-6)
    assert list(on_dask.classes_) == list(in_memory.classes_)
    proba = on_dask.predict_proba(dX)
    assert isinstance(proba, da.Array)
    assert np.allclose(proba.compute(), in_memory.predict_proba(X), atol=1e-8)
    assert np.array_equal(on_dask.predict(dX).compute(), in_memory.predict(X))
    assert on_dask.decision_function(dX).compute().shape == \
        in_memory.decision_function(X).shape


def test_estimator_on_a_dask_dataframe(client):
    import dask.dataframe as dd

    from xent.estimator import SoftmaxRegression

    X, y, _ = _classes_data(3, n=900, seed=1)
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    model = SoftmaxRegression(optimizer="lbfgs").fit(dd.from_pandas(frame, npartitions=3),
                                                     dd.from_pandas(pd.Series(y), npartitions=3))
    reference = SoftmaxRegression(optimizer="lbfgs").fit(frame, y)
    assert list(model.feature_names_in_) == ["a", "b", "c", "d"]
    assert np.allclose(model.coef_, reference.coef_, atol=1e-6)
    assert np.array_equal(model.predict(dd.from_pandas(frame, npartitions=2)).compute(),
                          reference.predict(frame))
    with pytest.raises(ValueError, match="columns"):
        model.predict(dd.from_pandas(frame[["d", "c", "b", "a"]], npartitions=2))


def test_estimator_refuses_bad_dask_input(client):
    import dask.array as da

    from xent.estimator import SoftmaxRegression

    X, y, _ = _classes_data(2, n=300)
    X[7, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        SoftmaxRegression().fit(da.from_array(X, chunks=100), da.from_array(y, chunks=100))


def test_minibatches_on_dask_follow_the_streamed_run(tmp_path, client):
    # one partition per file and one streamed block per 1,000 rows: the same blocks, so the
    # same shuffles (blocks in a shuffled order, rows shuffled within each) and the same run
    frame = make_csv(tmp_path / "all.csv", n=3000)
    for i in range(3):
        frame.iloc[i * 1000:(i + 1) * 1000].to_csv(tmp_path / f"part{i}.csv", index=False)
    settings = {"optim.optimizer": "adam", "optim.batch_size": 64, "optim.epochs": 4,
                "optim.tol": 0.0, "data.seed": 7}
    on_dask = api.train(config(str(tmp_path / "part*.csv"), **settings, **{
        "data.engine": "dask"}), client=client)
    streamed = api.train(config(tmp_path / "all.csv", **settings, **{
        "data.stream": True, "data.chunk_rows": 1000}))
    assert len(on_dask.history) == 5
    assert np.allclose(on_dask.history.column("objective"),
                       streamed.history.column("objective"), rtol=1e-10)
    assert np.allclose(on_dask.model.coef, streamed.model.coef, rtol=1e-8, atol=1e-10)
    assert on_dask.fit.n_evaluations == streamed.fit.n_evaluations


def test_estimator_minibatches_on_dask_arrays(client):
    import dask.array as da

    from xent.estimator import SoftmaxRegression
    from xent.links import get_link
    from xent.loss import evaluate, labels_target

    X, y, _ = _classes_data(3, n=1200, seed=2)
    dX, dy = da.from_array(X, chunks=(300, 4)), da.from_array(y, chunks=300)
    settings = dict(optimizer="adam", lr=0.01, batch_size=32, max_epochs=40, tol=0.0, l2=1e-3,
                    random_state=0)
    model = SoftmaxRegression(**settings).fit(dX, dy)
    again = SoftmaxRegression(**settings).fit(dX, dy)
    assert np.array_equal(model.coef_, again.coef_)  # seeded: the same shuffles
    optimum = SoftmaxRegression(optimizer="lbfgs", l2=1e-3, tol=1e-10).fit(X, y)
    labels = labels_target(np.searchsorted(model.classes_, y), 3)

    def objective(m):
        params = np.vstack([m.coef_.T, m.intercept_])
        return evaluate(params, X, labels, get_link("softmax"), 1e-3).objective

    assert objective(model) - objective(optimum) < 2e-3
    assert objective(model) < 0.9 * evaluate(np.zeros((5, 3)), X, labels,
                                             get_link("softmax"), 1e-3).objective


def test_a_worker_lost_during_training_is_recovered(tmp_path):
    # the scheduler recomputes the lost partitions elsewhere and the evaluations run there
    import signal

    from xent.dask_engine import connect

    frame = make_csv(tmp_path / "all.csv", n=4000)
    for i in range(4):
        frame.iloc[i * 1000:(i + 1) * 1000].to_csv(tmp_path / f"part{i}.csv", index=False)
    in_memory = api.train(config(tmp_path / "all.csv"))
    with connect(workers=2) as own_client:
        killed = []

        def kill_a_worker(record):
            if record.epoch == 2 and not killed:
                worker = sorted(own_client.scheduler_info()["workers"])[0]
                pid = own_client.run(os.getpid, workers=[worker])[worker]
                os.kill(pid, signal.SIGKILL)
                killed.append(worker)

        on_dask = api.train(config(str(tmp_path / "part*.csv"), **{"data.engine": "dask"}),
                            Hooks(callback=kill_a_worker), client=own_client)
    assert killed
    assert on_dask.summary["objective"] == pytest.approx(in_memory.summary["objective"],
                                                         rel=1e-10)


CASES = {
    "val-impute-mean": ({"data.impute": "mean"}, True),
    "balanced": ({"model.class_weight": "balanced"}, False),
    "smoothing": ({"model.label_smoothing": 0.1}, False),
    "sample-weights": ({"data.weight": "w"}, False),
    "float32": ({"data.dtype": "float32"}, False),
    "no-intercept": ({"model.fit_intercept": False}, False),
    # the step from the Lipschitz bound: Lanczos over each source's gram_product (weighted by
    # the class weights, over imputed rows), on threads in memory and streamed
    "lr-auto": ({"optim.lr": "auto", "data.impute": "mean", "model.class_weight": "balanced"},
                True),
    # how a file is read: a column of identifiers left out, and numbers with a decimal comma
    # in a ';'-separated file (each reader parses its own chunks or partitions)
    "ignore-decimal": ({"data.ignore": "id", "data.decimal": ",", "data.impute": "mean",
                       "model.class_weight": "balanced"}, True),
    # files written gzip-compressed, in Windows-1252 ('grün'), without a header: each reader
    # decompresses, decodes and names the columns c1, c2, ... (Dask: a partition a file)
    "packed-encoded-bare": ({"data.encoding": "cp1252", "data.no_header": True,
                             "data.impute": "mean", "model.class_weight": "balanced"}, True),
}


def _set_kernels(value: str | None) -> bool:
    """Set $XENT_KERNELS in this process (a Dask worker's; None: unset it); whether the
    kernels now take a small array. (``os.environ``'s own methods, sent to a worker, would
    travel as a copy of this process's environment and set that copy instead.)"""
    import os

    import numpy as np

    from xent import loss

    if value is None:
        os.environ.pop("XENT_KERNELS", None)
    else:
        os.environ["XENT_KERNELS"] = value
    return loss.use_kernels(np.zeros((2, 2)))


def _thread_work(work: float) -> float:
    """Set ``loss.KERNEL_THREAD_WORK`` in this process (a Dask worker's); the old value."""
    from xent import loss

    old, loss.KERNEL_THREAD_WORK = loss.KERNEL_THREAD_WORK, work
    return old


def _gram_threads(record: bool) -> list:
    """In this process (a Dask worker's): with ``record``, have ``dask_engine.gram_product``
    note the ``n_threads`` of each call; without, put it back. The threads noted so far."""
    from xent import dask_engine, loss

    seen = getattr(dask_engine, "_gram_threads_seen", [])
    if record:
        def noting(*args, n_threads=None, **options):
            seen.append(n_threads)
            return loss.gram_product(*args, n_threads=n_threads, **options)

        dask_engine.gram_product, dask_engine._gram_threads_seen = noting, seen
    else:
        dask_engine.gram_product = loss.gram_product
    return list(seen)


def test_the_lipschitz_bound_s_products_take_a_worker_s_threads(tmp_path, client):
    """``loss.gram_product`` takes every core of the machine unless told: on a worker it is
    told the worker's threads (``_on_worker``), as the sums are, so that workers sharing a
    machine do not each start a thread a core."""
    make_csv(tmp_path / "d.csv", n=1000)
    client.run(_gram_threads, True)
    try:
        api.train(config(tmp_path / "d.csv", **{"data.engine": "dask", "optim.epochs": 2,
                                                 "optim.optimizer": "nesterov"}), client=client)
        seen = client.run(_gram_threads, False)
    finally:
        client.run(_gram_threads, False)
    workers = client.scheduler_info()["workers"]
    assert sum(len(threads) for threads in seen.values()) > 0
    for worker, threads in seen.items():
        assert set(threads) <= {workers[worker]["nthreads"]}, threads


#: the work of about 200 of these rows (``loss.work_of``: three classes, a few features)
SMALL_THREAD_WORK = 50_000


@pytest.fixture()
def kernels_everywhere(request, client, monkeypatch):
    """The loss and gradient through the numpy reference or the compiled kernels, here and on
    the Dask workers ($XENT_KERNELS; this data is below the size that picks the kernels). The
    kernels share the rows out from about 200 rows a thread (``loss.KERNEL_THREAD_WORK``), so
    that even these few rows are cut into chunks that the threads take in turn (in memory,
    and the streamed runs of blocks; a worker has one thread)."""
    value = "1" if request.param == "kernels" else "0"
    monkeypatch.setenv("XENT_KERNELS", value)
    assert set(client.run(_set_kernels, value).values()) == {request.param == "kernels"}
    if request.param == "kernels":
        old = _thread_work(SMALL_THREAD_WORK)
        client.run(_thread_work, SMALL_THREAD_WORK)
    yield request.param
    client.run(_set_kernels, None)
    if request.param == "kernels":
        _thread_work(old)
        client.run(_thread_work, old)


# every case with the numpy sums; with the kernels (test_kernels.py holds them to the numpy
# sums case by case) the cases whose sums differ most: weights and float32
@pytest.mark.parametrize("case, kernels_everywhere",
                         [(case, "numpy") for case in sorted(CASES)]
                         + [("sample-weights", "kernels"), ("float32", "kernels"),
                            ("lr-auto", "kernels")],
                         indirect=["kernels_everywhere"])
def test_every_source_trains_the_same_model(tmp_path, client, case, kernels_everywhere):
    # The same data and settings give the same model in memory, streamed and on Dask: the same
    # stratified split, preprocessing fitted on the same training rows, the same objective.
    settings, holes = CASES[case]
    frame = make_csv(tmp_path / "all.csv", n=3000, holes=holes)
    frame["w"] = np.random.default_rng(5).uniform(0.2, 3.0, len(frame))
    frame["id"] = [f"r{i}" for i in range(len(frame))]
    frame = frame[["x1", "colour", "id", "w", "x2", "label"]]
    if "data.weight" not in settings:
        frame = frame.drop(columns="w")
    if "data.ignore" not in settings:
        frame = frame.drop(columns="id")
    written = {"sep": ";", "decimal": ","} if "data.decimal" in settings else {}
    packed = "data.no_header" in settings

    def write(rows, name):
        if not packed:
            return rows.to_csv(tmp_path / name, index=False, **written)
        import gzip

        text = rows.to_csv(index=False, header=False, **written)
        (tmp_path / name).write_bytes(gzip.compress(text.encode("cp1252")))

    write(frame, "all.csv")
    for i, part in enumerate(np.array_split(np.arange(len(frame)), 3)):
        write(frame.iloc[part], f"part{i}.csv")
    common = {"data.val_fraction": 0.2, "optim.optimizer": "nesterov", "optim.lr": 0.5,
              "optim.epochs": 40, "optim.tol": 0.0, **settings}
    memory = api.train(config(tmp_path / "all.csv", **common))
    streamed = api.train(config(tmp_path / "all.csv", **common, **{"data.stream": True,
                                                                   "data.chunk_rows": 256}))
    on_dask = api.train(config(str(tmp_path / "part*.csv"), **common,
                               **{"data.engine": "dask"}), client=client)
    rtol = 1e-6 if case == "float32" else 1e-10
    reference = memory.model.params
    numbers = ("c1", "c3") if packed else ("x1", "x2")
    for run in (memory, streamed, on_dask):  # the numbers read as numbers, the ids left out
        names = list(run.model.feature_names)
        assert all(n in names for n in numbers) and not any(n.startswith("id") for n in names)
        assert not packed or "c2=grün" in names
    for other in (streamed, on_dask):
        assert other.summary["n_train"] == memory.summary["n_train"]
        assert other.summary["dtype"] == memory.summary["dtype"]
        assert np.allclose(other.model.params, reference, rtol=rtol,
                           atol=rtol * np.abs(reference).max())
        fills, reference_fills = other.model.encoder.fill, memory.model.encoder.fill
        assert fills.keys() == reference_fills.keys()
        for column, value in reference_fills.items():  # numbers (means) and levels
            assert fills[column] == (value if isinstance(value, str) else
                                     pytest.approx(value, rel=1e-12)), column
        assert other.summary["val_loss"] == pytest.approx(memory.summary["val_loss"], rel=rtol)
        assert other.summary["data_sha256"] is not None


def test_a_dask_run_resumes_to_the_run_never_stopped(tmp_path, client):
    # checkpoints carry the Dask data's hash; gd resumed on Dask gives the uninterrupted run
    from dataclasses import replace

    make_csv(tmp_path / "d.csv", n=1500)
    settings = config(tmp_path / "d.csv", **{"data.engine": "dask", "data.val_fraction": 0.2,
                                             "optim.optimizer": "nesterov", "optim.epochs": 30,
                                             "optim.tol": 0.0})
    whole = api.train(settings, client=client)
    saved, seen = [], []
    stopped = api.train(settings, Hooks(lambda r: seen.append(r.epoch), lambda: len(seen) > 12,
                                        saved.append), client=client)
    assert stopped.summary["stop_reason"] == "interrupted" and saved[-1].epoch == 12
    assert saved[-1].data_sha256 == whole.summary["data_sha256"] is not None
    resumed = api.train(settings, client=client, resume=saved[-1])
    assert np.array_equal(resumed.fit.params, whole.fit.params)
    assert list(resumed.history.column("objective")) == list(whole.history.column("objective"))
    other = replace(saved[-1], data_sha256="0" * 64)
    with pytest.raises(api.DataError, match="the data changed"):
        api.train(settings, client=client, resume=other)


def test_the_coefficient_table_is_the_same_from_every_source(tmp_path, client):
    # the information and the likelihood summed by each RowSource where its rows are, against
    # the table computed from the rows in memory by `xent inspect`'s path
    make_csv(tmp_path / "all.csv", n=1500)
    frame = pd.read_csv(tmp_path / "all.csv")
    for i, part in enumerate(np.array_split(np.arange(len(frame)), 3)):
        frame.iloc[part].to_csv(tmp_path / f"part{i}.csv", index=False)
    common = {"model.l2": 1e-3, "optim.tol": 1e-10}
    runs = [api.train(config(tmp_path / "all.csv", **common), inference=True),
            api.train(config(tmp_path / "all.csv", **common, **{"data.stream": True,
                                                                 "data.chunk_rows": 256}),
                      inference=True),
            api.train(config(str(tmp_path / "part*.csv"), **common, **{"data.engine": "dask"}),
                      client=client, inference=True)]
    dataset = api.load_for_model(tmp_path / "all.csv", runs[0].model, require_labels=True)
    reference = api.inference(runs[0].model, dataset)

    def column(table, key):
        return np.array([row[key] for row in table["coefficients"]])

    for run in runs:
        table = run.inference
        assert table["penalised"] and table["n"] == 1500
        for key in ("coef", "std_err"):
            assert np.allclose(column(table, key), column(reference, key), rtol=1e-6), key
        for key in ("log_likelihood", "aic", "bic", "lr_stat"):
            assert table[key] == pytest.approx(reference[key], rel=1e-9), key
