"""Bad input never gives a traceback; interruptions and divergence lose nothing."""

import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import fit_arrays
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xent import atomic
from xent.config import ConfigError, load_toml
from xent.data import load_table as load
from xent.errors import DataError, ModelFileError, XentError
from xent.links import get_link
from xent.loss import Objective, labels_target
from xent.model import Model
from xent.train import Solver, Stopping, fit

ROOT = Path(__file__).resolve().parent.parent


IRIS_HEADER = "a,b,label\n"
BAD_CSVS = {
    "empty.csv": (b"", "empty"),
    "header_only.csv": (IRIS_HEADER.encode(), "no data rows"),
    "single_row.csv": ((IRIS_HEADER + "1,2,x\n").encode(), "only one class"),
    "one_class.csv": ((IRIS_HEADER + "1,2,x\n3,4,x\n5,6,x\n").encode(), "only one class"),
    "ragged.csv": ((IRIS_HEADER + "1,2,x\n3,4,y,9,9\n").encode(), "malformed CSV"),
    "garbage.csv": (bytes(range(256)) * 4, "not UTF-8 text (byte 0x80 on line 2)"),
    "nan.csv": ((IRIS_HEADER + "1,,x\n3,4,y\n").encode(), "missing values in column(s) 'b' (1)"),
    "inf.csv": ((IRIS_HEADER + "1,2,x\n1,inf,x\n3,4,y\n").encode(),
                "infinite values in column(s) 'b' (lines [3])"),
    "huge.csv": ((IRIS_HEADER + "1e308,1,x\n-1e308,2,y\n1e308,3,x\n").encode(),
                 "are too large to square"),
    "dupes.csv": (b"a,a,label\n1,2,x\n3,4,y\n", "duplicate column name(s) 'a'"),
    "no_label.csv": ((IRIS_HEADER + "1,2,x\n3,4,\n5,6,y\n").encode(), "have no label"),
    "only_label.csv": (b"label\nx\ny\n", "no feature columns"),
    "records.csv": (b'{"a": 1, "label": "x"}\n{"a": 2, "label": "y"}\n', "JSON, not a CSV (the "
                    "first line starts with '{')"),
    "commented.csv": (b"# made by a tool\na,b,label\n1,2,x\n3,4,y\n", "the first line looks like "
                      "a comment: the header must be the file's first line"),
    "trailing.csv": (b"a,b,label,\n1,2,x,\n3,4,y,\n", "the label column 'Unnamed: 3', the last, "
                     "is empty on every line: if each line ends with a delimiter"),
    "continuous.csv": ((IRIS_HEADER + "1,2,0.5\n3,4,1.25\n5,6,2\n").encode(),
                       "the labels in column 'label' are continuous numbers (0.5, 1.25; 3 "
                       "distinct values)"),
}


@pytest.mark.parametrize("name", sorted(BAD_CSVS))
def test_bad_csvs_get_one_line_errors(run, tmp_path, name):
    content, message = BAD_CSVS[name]
    (tmp_path / name).write_bytes(content)
    result = run("train", name, "-q", "-o", "out")
    assert result.exit_code == 1, result.output
    assert message in result.stderr
    assert name in result.stderr  # the error names the file
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()  # no half-written output


@pytest.mark.parametrize("name, options", [("reg.csv", ()), ("reg.csv", ("--stream",)),
                                           ("reg.svm", ())])
def test_a_regression_target_is_refused_however_the_data_are_read(run, tmp_path, name, options):
    """A column of measurements (here y = 2 x + noise) is no set of classes: training on it
    would fit a class for each of its 60 values."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2))
    y = np.round(2 * x[:, 0] + rng.normal(size=60), 3) + 0.0005  # no two alike, none whole
    if name.endswith(".csv"):
        pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "y": y}).to_csv(tmp_path / name, index=False)
    else:
        lines = (f"{v} 1:{a} 2:{b}\n" for v, (a, b) in zip(y, x, strict=True))
        (tmp_path / name).write_text("".join(lines))
    result = run("train", name, *options, "-q", "-o", "out")
    assert result.exit_code == 1, result.output
    assert "are continuous numbers" in result.stderr and "60 distinct values" in result.stderr
    assert result.stderr.count("\n") == 1 and not (tmp_path / "out").exists()


def test_whole_numbers_written_as_floats_are_classes(run, tmp_path):
    rows = "".join(f"{i},{i % 3 + 0.1 * i},{float(i % 3)}\n" for i in range(30))
    (tmp_path / "floats.csv").write_text(IRIS_HEADER + rows)
    result = run("train", "floats.csv", "-q", "--json", "-o", "out", "--epochs", "5")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["classes"] == [0, 1, 2]


def test_a_column_of_identifiers_is_noted_and_too_wide_for_memory_is_refused(run, tmp_path,
                                                                          monkeypatch):
    """A column with a level a row (an "id" column) is one-hot encoded into as many features
    as rows: 50,000 rows would take 20 GB dense, which a file of 1 MB did not warn of. Said as
    a note; where the encoded data pass the memory budget, refused before any is encoded,
    nothing written, and --stream (a block of rows at a time) trains."""
    rng = np.random.default_rng(2)
    n = 400
    pd.DataFrame({"id": [f"u{i:05d}" for i in range(n)], "x": rng.normal(size=n),
                  "y": rng.integers(0, 2, n)}).to_csv(tmp_path / "ids.csv", index=False)
    noted = run("train", "ids.csv", "-o", "noted", "--epochs", "2")
    assert noted.exit_code == 0, noted.output
    assert "column 'id' has 400 distinct values in 400 rows" in noted.stderr
    assert "like an identifier" in noted.stderr
    encoded = 8 * n * (n + 1)  # the levels and x, float64
    monkeypatch.setenv("XENT_MEMORY_BUDGET", str(encoded - 1))
    refused = run("train", "ids.csv", "-q", "-o", "refused", "--epochs", "2")
    assert refused.exit_code == 1, refused.output
    assert f"({n:,} rows x {n + 1:,} features)" in refused.stderr
    assert "column 'id' alone is 400 of the features" in refused.stderr
    assert "--stream" in refused.stderr and refused.stderr.count("\n") == 1
    assert not (tmp_path / "refused").exists()
    streamed = run("train", "ids.csv", "-q", "-o", "streamed", "--epochs", "2", "--stream")
    assert streamed.exit_code == 0, streamed.output
    monkeypatch.setenv("XENT_MEMORY_BUDGET", str(encoded))  # fits exactly: trains in memory
    assert run("train", "ids.csv", "-q", "-o", "fits", "--epochs", "2").exit_code == 0
    # numeric columns are used as they are, nothing new made: whatever the budget, they train
    # (a .npy of embeddings already in memory is such a table)
    monkeypatch.setenv("XENT_MEMORY_BUDGET", "1000")
    plain = run("train", "sklearn:iris", "-q", "-o", "plain", "--epochs", "2")
    assert plain.exit_code == 0, plain.output


def test_missing_target_lists_the_columns(run):
    result = run("train", ROOT / "data/iris.csv", "--target", "kind")
    assert result.exit_code == 1
    assert "no target column 'kind'" in result.stderr and "'species'" in result.stderr


def test_unreadable_and_directory_inputs(run, tmp_path):
    assert "is a directory" in run("train", tmp_path).stderr
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked.csv"
        locked.write_text("a,b\n1,2\n")
        locked.chmod(0)
        assert run("train", locked).exit_code == 1


@pytest.mark.parametrize("content, message", [
    (b"\x00\x01garbage", "not a readable xent model file"),
    (b"", "not a readable xent model file"),
])
def test_bad_model_files(run, tmp_path, content, message):
    (tmp_path / "m.npz").write_bytes(content)
    result = run("eval", tmp_path / "m.npz", "sklearn:iris")
    assert result.exit_code == 1 and message in result.stderr


def test_a_crash_while_writing_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    model = Model(np.ones((2, 1)), np.zeros(1), [0, 1], "sigmoid", ["a", "b"])
    model.save(path)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np.lib.format, "write_array", crash)
    with pytest.raises(OSError):
        Model(np.zeros((2, 1)), np.ones(1), [0, 1], "sigmoid", ["a", "b"]).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temporary left behind
    with pytest.raises(RuntimeError), atomic.atomic_open(tmp_path / "new.txt") as handle:
        handle.write("half")
        raise RuntimeError
    assert not (tmp_path / "new.txt").exists()


# ---- divergence -------------------------------------------------------------------------

def test_a_divergence_without_a_step_size_is_a_one_line_error(run, monkeypatch):
    """L-BFGS chooses its own steps, so its summary's lr is None: the divergence message
    formatted it as a number and raised a TypeError (a traceback) instead."""
    from types import SimpleNamespace

    from xent import cli

    diverged = SimpleNamespace(summary={"stop_reason": "diverged", "epochs": 4, "lr": None})
    monkeypatch.setattr(cli, "_train_into", lambda *args: (diverged, None))
    result = run("train", "sklearn:iris", "--optimizer", "lbfgs", "-q", "-o", "out")
    assert result.exit_code == 4, result.output
    assert "diverged" in result.stderr and "at epoch 5" in result.stderr
    assert "larger --l2" in result.stderr and "--lr" not in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_features_too_large_to_square_are_a_one_line_error(run, tmp_path):
    """Unstandardised values of 1e100: X^T X overflows, and the Lipschitz bound (lr auto)
    said nothing: the estimator returned a model of zeros, and the command line failed with a
    TypeError formatting the divergence."""
    (tmp_path / "huge.csv").write_text("a,b,y\n1e100,2,0\n-3e100,4,1\n5e99,6,0\n7e100,8,1\n")
    result = run("train", "huge.csv", "--no-standardize", "-q", "-o", "out")
    assert result.exit_code == 1, result.output
    assert "X^T X overflow" in result.stderr and "rescale them" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    rng = np.random.default_rng(0)
    from xent import SoftmaxRegression

    with pytest.raises(DataError, match="rescale them"):
        SoftmaxRegression().fit(rng.normal(size=(100, 3)) * 1e100, rng.integers(0, 3, 100))


def test_lr_backoff_recovers_from_divergence(run, tmp_path):
    plain = run("train", "sklearn:iris", "--lr", "1e5", "--l2", "1", "-q", "-o", "plain")
    assert plain.exit_code == 4 and "smaller --lr" in plain.stderr
    backed = run("train", "sklearn:iris", "--lr", "1e5", "--l2", "1", "--lr-backoff", "-q",
                 "--json", "-o", "backed", "--epochs", "300")
    assert backed.exit_code == 0, backed.output
    summary = json.loads(backed.stdout)
    assert summary["stop_reason"] != "diverged" and summary["lr"] < 1e5
    lrs = pd.read_csv(tmp_path / "backed/metrics.csv")["lr"]
    assert lrs.is_monotonic_decreasing and lrs.iloc[0] == 1e5
    assert np.isfinite(pd.read_csv(tmp_path / "backed/metrics.csv")["objective"]).all()


# ---- interruption and resume -----------------------------------------------------------

@pytest.mark.parametrize("optimizer, batch_size, l1", [
    ("gd", None, 0.0), ("momentum", None, 0.0), ("nesterov", None, 0.0), ("adam", None, 0.0),
    ("adam", 16, 0.0), ("gd", 32, 0.0), ("nesterov", None, 0.02), ("gd", 32, 0.02)])
def test_resume_gives_the_run_that_was_never_stopped(optimizer, batch_size, l1):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 5))
    y = rng.integers(0, 3, 120)
    target, link = labels_target(y, 3), get_link("softmax")
    settings = dict(optimizer=optimizer, batch_size=batch_size, max_epochs=60, l2=1e-2, seed=3,
                    tol=0.0, l1=l1)
    whole = fit_arrays(X, target, link, **settings)
    saved = []
    epochs_seen = []
    stopped = fit_arrays(X, target, link, **settings,
                         callback=lambda r: epochs_seen.append(r.epoch),
                         should_stop=lambda: len(epochs_seen) > 25, checkpoint=saved.append)
    assert stopped.stop_reason == "interrupted" and saved[-1].epoch == 25
    resumed = fit_arrays(X, target, link, **settings, resume=saved[-1])
    assert np.array_equal(resumed.params, whole.params)
    assert [r.objective for r in resumed.history.records] == \
        [r.objective for r in whole.history.records]


def test_checkpoints_round_trip_through_files(tmp_path):
    from xent.report import load_checkpoint, save_checkpoint

    X = np.random.default_rng(1).normal(size=(50, 3))
    target, link = labels_target(np.arange(50) % 2, 2), get_link("sigmoid")
    saved = []
    fit_arrays(X, target, link, optimizer="nesterov", max_epochs=10, checkpoint=saved.append,
        batch_size=8, tol=0.0)
    save_checkpoint(tmp_path / "c.npz", replace(saved[-1], data_sha256="abc"))
    loaded = load_checkpoint(tmp_path / "c.npz")
    sha = loaded.data_sha256
    assert sha == "abc" and loaded.epoch == saved[-1].epoch
    assert np.array_equal(loaded.params, saved[-1].params)
    assert loaded.rng_state == saved[-1].rng_state
    assert [r.objective for r in loaded.history] == [r.objective for r in saved[-1].history]
    for key, value in saved[-1].optimizer_state.items():
        assert np.array_equal(loaded.optimizer_state[key], value)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_cleanly_and_resume_finishes_the_same_run(run, tmp_path, signum, code):
    # the run that is signalled runs in a process of its own; the others in this one
    settings = ["sklearn:wine", "-q", "--tol", "0"]
    assert run("train", *settings, "--epochs", "600", "-o", "whole").exit_code == 0
    cut = tmp_path / "cut"
    process = subprocess.Popen([sys.executable, "-m", "xent.cli", "train", *settings,
                                "--epochs", "100000", "--checkpoint-every", "100", "-o",
                                str(cut)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (cut / "checkpoint.npz").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # wait until training runs
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert b"--resume" in stderr
    summary = json.loads((cut / "summary.json").read_text())
    assert summary["stop_reason"] == "interrupted" and 100 <= summary["epochs"] < 600
    metrics = pd.read_csv(cut / "metrics.csv")
    assert len(metrics) == summary["epochs"] + 1
    Model.load(cut / "model.npz")
    again = run("train", "--resume", "cut", "--epochs", "600", "-q")
    assert again.exit_code == 0, again.output
    assert (cut / "model.npz").read_bytes() == (tmp_path / "whole/model.npz").read_bytes()


def test_resume_refuses_changes_to_the_objective_and_other_data(run, tmp_path):
    frame = pd.read_csv(ROOT / "data/iris.csv")
    frame.to_csv(tmp_path / "iris.csv", index=False)
    assert run("train", "iris.csv", "--epochs", "5", "-q", "-o", "r").exit_code == 0
    changed = run("train", "--resume", "r", "--l2", "0.5")
    assert changed.exit_code == 2 and "--l2" in changed.stderr
    changed_frame = frame.copy()
    changed_frame.iloc[0, 0] += 1.0
    changed_frame.to_csv(tmp_path / "iris.csv", index=False)  # the file changes
    assert "the data changed" in run("train", "--resume", "r", "--epochs", "9").stderr
    (tmp_path / "r" / "checkpoint.npz").unlink()
    frame.to_csv(tmp_path / "iris.csv", index=False)
    assert "no checkpoint" in run("train", "--resume", "r", "--epochs", "9").stderr


# ---- property-based: any input gives a result or one of xent's errors -------------------

FIXTURE_OK = [HealthCheck.function_scoped_fixture]  # tmp_path is reused; each example rewrites it
csv_cells = st.one_of(st.integers(-5, 5).map(str), st.floats(allow_nan=True).map(repr),
                      st.sampled_from(["", "a", "b", "NA", "inf", "x,y", '"q"', "é", " "]))


@settings(max_examples=150, deadline=None, suppress_health_check=FIXTURE_OK)
@given(rows=st.lists(st.lists(csv_cells, min_size=0, max_size=4), max_size=6),
       header=st.lists(st.sampled_from(["a", "b", "c", "label", "", "é"]), min_size=0,
                       max_size=4))
def test_csv_loader_gives_a_dataset_or_a_data_error(tmp_path, rows, header):
    path = tmp_path / "h.csv"
    path.write_text("\n".join([",".join(header)] + [",".join(r) for r in rows]) + "\n",
                    encoding="utf-8")
    try:
        dataset = load(str(path))
    except DataError:
        return
    assert dataset.numeric.shape[0] == len(dataset.labels)


@settings(max_examples=100, deadline=None, suppress_health_check=FIXTURE_OK)
@given(content=st.binary(max_size=300))
def test_csv_loader_on_random_bytes(tmp_path, content):
    path = tmp_path / "b.csv"
    path.write_bytes(content)
    with contextlib.suppress(DataError):
        load(str(path))


toml_keys = st.sampled_from(["data", "model", "optim", "sweep", "extends", "lr", "x"])
toml_values = st.one_of(st.integers(-3, 10**6), st.floats(allow_nan=True),
                        st.booleans(), st.text(max_size=8),
                        st.sampled_from(['"auto"', '"gd"', "[1, 2]", "{a = 1}", "1e400"]))


@settings(max_examples=150, deadline=None, suppress_health_check=FIXTURE_OK)
@given(sections=st.dictionaries(
    toml_keys, st.dictionaries(st.sampled_from(["source", "lr", "epochs", "l2", "link",
                                                "optimizer", "seed", "tol", "zzz"]),
                               toml_values, max_size=3), max_size=3),
       noise=st.text(max_size=20))
def test_config_loader_gives_a_config_or_a_config_error(tmp_path, sections, noise):
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {_toml_literal(v)}" for k, v in values.items()]
    path = tmp_path / "c.toml"
    path.write_text("\n".join(lines) + "\n" + noise, encoding="utf-8")
    with contextlib.suppress(ConfigError):
        load_toml(path)


def _toml_literal(value) -> str:
    """Raw TOML for the sampled literals ("[1, 2]", '"auto"', ...), JSON for the rest."""
    if isinstance(value, str) and value[:1] in ('[', '{', '"', "1"):
        return value
    return json.dumps(value)


def _valid_model_bytes(tmp_path):
    model = Model(np.ones((2, 3)), np.zeros(3), ["a", "b", "c"], "softmax", ["x", "y"])
    model.save(tmp_path / "base.npz")
    return (tmp_path / "base.npz").read_bytes()


@settings(max_examples=150, deadline=None, suppress_health_check=FIXTURE_OK)
@given(position=st.integers(0, 10**6), value=st.integers(0, 255), cut=st.integers(0, 10**6))
def test_model_loader_gives_a_model_or_a_model_file_error(tmp_path, position, value, cut):
    data = bytearray(_valid_model_bytes(tmp_path))
    data[position % len(data)] = value
    data = data[: max(1, cut % (len(data) + 1))] if cut % 3 == 0 else data
    path = tmp_path / "mutated.npz"
    path.write_bytes(bytes(data))
    try:
        model = Model.load(path)
    except ModelFileError:
        return
    assert model.coef.shape[1] == 3


def test_every_error_class_is_a_xent_error():
    assert issubclass(DataError, XentError) and issubclass(ModelFileError, XentError)


def test_a_resumed_float32_run_keeps_its_float64_products(tmp_path):
    # A float32 run that switched to float64 products (to confirm its stopping rule) resumes in
    # float64: its records then equal float64 evaluations of the float32-stored data.
    from xent.loss import evaluate
    from xent.report import load_checkpoint, save_checkpoint

    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 4)).astype(np.float32)
    target, link = labels_target(rng.integers(0, 3, 300), 3), get_link("softmax")
    saved = []
    fit_arrays(X, target, link, optimizer="gd", max_epochs=5, tol=0.0, checkpoint=saved.append)
    save_checkpoint(tmp_path / "c.npz", replace(saved[-1], exact=True))
    checkpoint = load_checkpoint(tmp_path / "c.npz")
    assert checkpoint.exact
    resumed = fit_arrays(X, target, link, optimizer="gd", max_epochs=8, tol=0.0, resume=checkpoint)
    exact = evaluate(resumed.params, X.astype(np.float64), target, link)
    assert resumed.history.last.objective == exact.objective
    plain = fit_arrays(X, target, link, optimizer="gd", max_epochs=8, tol=0.0, resume=saved[-1])
    assert plain.history.last.objective != evaluate(plain.params, X.astype(np.float64),
                                                    target, link).objective


def test_a_resumed_lbfgs_run_reaches_the_optimum_of_the_run_never_stopped():
    # L-BFGS restarts its memory on resume, so the path differs; the optimum (and scikit-learn's,
    # the reference) must not.
    from conftest import sklearn_optimum, standardised

    X, y = standardised("wine")
    target, link, l2 = labels_target(y, 3), get_link("softmax"), 1e-2
    settings = dict(optimizer="lbfgs", l2=l2, tol=1e-8, max_epochs=500)
    whole = fit_arrays(X, target, link, **settings)
    saved, seen = [], []
    stopped = fit_arrays(X, target, link, **settings, callback=lambda r: seen.append(r.epoch),
                         should_stop=lambda: len(seen) > 6, checkpoint=saved.append)
    assert stopped.stop_reason == "interrupted" and saved[-1].epoch == 6
    resumed = fit_arrays(X, target, link, **settings, resume=saved[-1])
    assert whole.converged and resumed.converged
    epochs = [r.epoch for r in resumed.history.records]
    assert epochs == list(range(len(epochs)))  # the history goes on where it stopped
    assert [r.objective for r in resumed.history.records[:7]] == \
        [r.objective for r in whole.history.records[:7]]
    _, reference = sklearn_optimum(X, y, l2)
    for result in (whole, resumed):
        assert result.history.last.objective == pytest.approx(reference, rel=1e-12)
    assert np.allclose(resumed.params, whole.params, atol=1e-6)


@pytest.mark.parametrize("optimizer", ["nesterov", "lbfgs"])
def test_resuming_a_converged_run_changes_nothing(optimizer):
    X, y = np.random.default_rng(4).normal(size=(80, 3)), np.arange(80) % 2
    target, link = labels_target(y, 2), get_link("sigmoid")
    saved = []
    done = fit_arrays(X, target, link, optimizer=optimizer, l2=0.1, tol=1e-6,
                      checkpoint=saved.append)
    assert done.converged
    again = fit_arrays(X, target, link, optimizer=optimizer, l2=0.1, tol=1e-6,
                       resume=saved[-1])
    assert again.converged and np.array_equal(again.params, done.params)
    assert len(again.history) == len(done.history)


def test_a_stop_before_the_first_epoch_leaves_nothing(run, tmp_path, monkeypatch):
    """Ctrl-C during the first evaluation (a long first pass, numba compiling): fit has no
    run to return and says so by re-raising; `xent train` exits 130 and removes the directory
    it made, leaving no half-made run."""
    from xent import api
    from xent.sources import ArraySource

    class Interrupting(ArraySource):
        def sums(self, *args, **kwargs):
            raise KeyboardInterrupt

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(50, 3)), rng.integers(0, 2, 50)
    with pytest.raises(KeyboardInterrupt):
        fit(Interrupting(X, labels_target(y, 2)), Objective(get_link("sigmoid")), Solver("gd"),
            Stopping(10, 0.0))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "train", interrupted)
    result = run("train", "sklearn:iris", "-o", "r")
    assert result.exit_code == 130 and "stopped before the first epoch" in result.stderr
    assert not (tmp_path / "r").exists()


_HEAP_PROBE = """
import sys
import numpy as np
if sys.argv[1] == "1":
    from xent.processes import large_arrays_outside_the_heap
    large_arrays_outside_the_heap()
def resident_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
big = np.ones(16 * 2**20 // 8); del big  # glibc raises its mmap threshold to 16 MB here
before = resident_mb()
arrays = [np.ones(2 * 2**20 // 8) for _ in range(30)]
kept = np.ones(2 * 2**20 // 8)  # allocated after them and kept: the heap cannot shrink past it
del arrays
print(resident_mb() - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or not Path("/proc/self/statm").exists(),
                    reason="glibc's allocator and Linux's /proc")
def test_the_command_gives_freed_arrays_back_to_the_system():
    """``xent``'s process gives freed arrays of 1 MB and more back to the operating system
    (``processes.large_arrays_outside_the_heap``): 60 MB of freed 2 MB arrays stay resident in
    a process without it, not in one with it."""
    # glibc keeps its threshold fixed where any MALLOC_ variable is set (Dask's client sets
    # MALLOC_TRIM_THRESHOLD_ for its workers): the probe runs without them
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("MALLOC_") and name != "GLIBC_TUNABLES"}

    def retained_mb(setting):
        out = subprocess.run([sys.executable, "-c", _HEAP_PROBE, setting], check=True,
                             capture_output=True, text=True, env=env).stdout
        return float(out)

    assert retained_mb("0") > 40
    assert retained_mb("1") < 10


_FORKED_AFTER_THREADS = """
import time
import numpy as np
from xent import loss, targets, links
from xent.processes import Task, run_in_processes

rng = np.random.default_rng(0)
X = rng.standard_normal((200_000, 5))
y = (X[:, 0] > 0).astype(int)
target, link, params = targets.labels_target(y, 2), links.get_link("sigmoid", 2), np.zeros((6, 1))
assert loss.threads_for(loss.work_of(X, 1), 2) == 2  # work enough: the parent's pool is used


def total():
    return loss.sums(params, X, target, link, block_rows=1000, n_threads=2).loss


parent = total()
time.sleep(0.2)  # the pool's threads idle, as between two evaluations
results = []
run_in_processes([Task("child", total)], 1,
                 lambda task, what, result: results.append(result) if what == "done" else None)
assert results == [parent], (results, parent)
print("same loss in the child")
"""


def test_a_process_forked_after_threaded_sums_makes_its_own_threads():
    """A sweep's or a path's processes are forked. Where the parent had already summed on
    several threads (an earlier fit, a path's first gradient), the child inherited the thread
    pool but not its threads, and waited for ever on work they would never take. The child's
    evaluation must finish, with the parent's numbers."""
    env = {**os.environ, "XENT_KERNELS": "0"}  # the numpy reference: the same pool, no compile
    done = subprocess.run([sys.executable, "-c", _FORKED_AFTER_THREADS], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "same loss in the child" in done.stdout
