"""Config files, overrides, sweeps, comparisons and reproducibility."""

import csv
import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from xent.config import Config, ConfigError, load_toml, to_toml, with_overrides
from xent.sweep import read_sweep

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"


def read_rows(path):
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        ("[optim]\nlearning_rate = 0.1\n", "unknown setting 'optim.learning_rate'"),
        ("[optim]\nepoch = 10\n", "did you mean 'optim.epochs'"),
        ("[optim]\nepochs = \"ten\"\n", "optim.epochs must be a whole number, got 'ten'"),
        ("[optim]\nepochs = -3\n", "optim.epochs must be >= 0"),
        ("[model]\nlink = \"relu\"\n", "model.link must be one of auto, sigmoid, softmax"),
        ("[model]\nl2 = true\n", "model.l2 must be a number, got True"),
        ("[modle]\nl2 = 1\n", "unknown section [modle]"),
        ("lr = 0.1\n", "did you mean 'optim.lr'"),
        ("[optim\nlr = 1\n", "TOML syntax error"),
        ("extends = \"nowhere.toml\"\n", "no such config file"),
    ],
)
def test_config_errors_name_the_file_and_key(tmp_path, text, message):
    path = write(tmp_path / "bad.toml", text)
    with pytest.raises(ConfigError) as info:
        load_toml(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_extends_lists_only_what_differs(tmp_path):
    write(tmp_path / "base.toml", '[data]\nsource = "sklearn:wine"\n[model]\nl2 = 0.5\n')
    write(tmp_path / "child.toml", 'extends = "base.toml"\n[optim]\noptimizer = "adam"\n')
    config = load_toml(tmp_path / "child.toml")
    assert (config.data.source, config.model.l2, config.optim.optimizer) == \
        ("sklearn:wine", 0.5, "adam")
    write(tmp_path / "a.toml", 'extends = "b.toml"\n')
    write(tmp_path / "b.toml", 'extends = "a.toml"\n')
    with pytest.raises(ConfigError, match="cycle"):
        load_toml(tmp_path / "a.toml")


def test_saved_config_round_trips(tmp_path):
    config = with_overrides(Config(), {"data.source": "sklearn:iris", "optim.lr": 0.25,
                                       "model.fit_intercept": False, "data.target": 'a "b"'})
    assert load_toml(write(tmp_path / "c.toml", to_toml(config))) == config


def test_precedence_file_then_set_then_options(run, tmp_path):
    write(tmp_path / "c.toml", '[data]\nsource = "sklearn:iris"\n[optim]\nepochs = 7\n'
                               'lr = 0.1\n')
    result = run("train", "--config", "c.toml", "--set", "optim.lr=0.2", "--set",
                 "optim.epochs=9", "--epochs", "4", "--dry-run")
    assert result.exit_code == 0
    config = load_toml(write(tmp_path / "resolved.toml", result.stdout.split("\n{")[0]))
    assert (config.optim.lr, config.optim.epochs) == (0.2, 4)


def test_rerunning_a_saved_config_gives_identical_bytes(run, tmp_path):
    first = run("train", "sklearn:wine", "--optimizer", "adam", "--batch-size", "32",
                "--epochs", "20", "--seed", "5", "-q", "-o", "one")
    assert first.exit_code == 0
    second = run("train", "--config", "one/config.toml", "-q", "-o", "two")
    assert second.exit_code == 0

    def digest(path):
        return hashlib.sha256(path.read_bytes()).hexdigest()

    assert digest(tmp_path / "one/model.npz") == digest(tmp_path / "two/model.npz")
    one, two = pd.read_csv(tmp_path / "one/metrics.csv"), pd.read_csv(tmp_path / "two/metrics.csv")
    columns = ["objective", "train_loss", "train_accuracy", "val_loss", "val_accuracy"]
    assert one[columns].equals(two[columns])
    other = run("train", "--config", "one/config.toml", "--seed", "6", "-q", "-o", "three")
    assert other.exit_code == 0
    assert digest(tmp_path / "one/model.npz") != digest(tmp_path / "three/model.npz")


def test_summary_records_data_hash_versions_and_config(run, tmp_path):
    run("train", ROOT / "data/iris.csv", "--epochs", "3", "-q", "-o", "r")
    summary = json.loads((tmp_path / "r/summary.json").read_text())
    expected = hashlib.sha256((ROOT / "data/iris.csv").read_bytes()).hexdigest()
    assert summary["data_sha256"] == expected
    assert set(summary["versions"]) == {"xent", "numpy", "scipy", "pandas", "scikit-learn"}
    assert summary["config"]["optim"]["epochs"] == 3


@pytest.mark.parametrize("name", ["iris", "wine", "breast_cancer", "digits", "fruit"])
def test_each_example_config_trains(run, name):
    result = run("train", "--config", CONFIGS / f"{name}.toml", "-q", "--json", "-o", name)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    accuracy = summary["val_accuracy"] if summary["val_accuracy"] is not None \
        else summary["train_accuracy"]
    assert accuracy >= 0.9


def test_example_sweeps_run_and_rank(run, tmp_path):
    result = run("sweep", CONFIGS / "optimizers.toml", "-o", "opt", "--jobs", "2", "-q")
    assert result.exit_code == 0, result.output
    rows = read_rows(tmp_path / "opt/leaderboard.csv")
    assert {r["optim.optimizer"] for r in rows} == {"gd", "momentum", "nesterov", "adam",
                                                     "lbfgs"}
    losses = [float(r["val_loss"]) for r in rows]
    assert losses == sorted(losses)
    assert (tmp_path / "opt/curves.png").is_file() and (tmp_path / "opt/leaderboard.md").is_file()
    lbfgs = next(r for r in rows if r["optim.optimizer"] == "lbfgs")
    assert lbfgs["converged"] == "True"
    lr = run("sweep", CONFIGS / "lr_sweep.toml", "-o", "lr", "-q")
    assert lr.exit_code == 0
    assert lr.stdout.count("\n") == 2 + 5  # header, rule, five runs


def test_sweep_grid_zip_and_resume(run, tmp_path):
    write(tmp_path / "s.toml", '[data]\nsource = "sklearn:iris"\n[optim]\nepochs = 5\n'
                               '[sweep]\n"optim.lr" = [0.1, 1.0]\n"model.l2" = [0, 0.01, 0.1]\n')
    points = read_sweep(tmp_path / "s.toml")
    assert len(points) == 6
    assert {(p.config.optim.lr, p.config.model.l2) for p in points} == \
        {(a, b) for a in (0.1, 1.0) for b in (0.0, 0.01, 0.1)}
    write(tmp_path / "z.toml", '[data]\nsource = "sklearn:iris"\n[sweep]\nmode = "zip"\n'
                               '"optim.lr" = [0.1, 1.0]\n"model.l2" = [0, 0.1]\n')
    assert [(p.config.optim.lr, p.config.model.l2) for p in read_sweep(tmp_path / "z.toml")] \
        == [(0.1, 0.0), (1.0, 0.1)]
    assert run("sweep", "s.toml", "-o", "sw").exit_code == 0
    stamp = (tmp_path / "sw" / points[0].name / "model.npz").stat().st_mtime_ns
    refused = run("sweep", "s.toml", "-o", "sw")
    assert refused.exit_code == 1 and "--resume" in refused.stderr
    resumed = run("sweep", "s.toml", "-o", "sw", "--resume")
    assert resumed.exit_code == 0 and resumed.stderr.count("skipped") == 6
    assert (tmp_path / "sw" / points[0].name / "model.npz").stat().st_mtime_ns == stamp
    (tmp_path / "sw" / points[2].name / "summary.json").unlink()  # as if it never finished
    again = run("sweep", "s.toml", "-o", "sw", "--resume")
    assert again.stderr.count("skipped") == 5 and again.stderr.count(" done ") == 1


def test_sweep_errors(run, tmp_path):
    write(tmp_path / "bad.toml", '[data]\nsource = "sklearn:iris"\n[sweep]\n"optim.lrr" = [1]\n')
    result = run("sweep", "bad.toml")
    assert result.exit_code == 2 and "did you mean 'optim.lr'" in result.stderr
    write(tmp_path / "none.toml", '[data]\nsource = "sklearn:iris"\n')
    assert "no [sweep] table" in run("sweep", "none.toml").stderr
    write(tmp_path / "zip.toml", '[data]\nsource = "sklearn:iris"\n[sweep]\nmode = "zip"\n'
                                 '"optim.lr" = [1, 2]\n"model.l2" = [0]\n')
    assert "as long" in run("sweep", "zip.toml").stderr
    # a value given twice (here 1 and 1.0) trained one run twice, ranked against itself
    write(tmp_path / "twice.toml", '[data]\nsource = "sklearn:iris"\n[sweep]\n'
                                   '"model.l2" = [1, 0.5, 1.0]\n')
    twice = run("sweep", "twice.toml", "-o", "sw")
    assert twice.exit_code == 2 and "points 000-l2=1 and 002-l2=1.0 are the same settings" \
        in twice.stderr and not (tmp_path / "sw").exists()


def test_every_sweep_point_is_checked_before_any_trains(run, tmp_path):
    """A missing file or settings that do not go together in a later point were found only
    when that point's turn came, after the points before it had trained."""
    for name, sweep, code, words in [
            ("missing", '"data.source" = ["sklearn:iris", "nofile.csv"]', 1,
             "sweep point 001-source=nofile.csv: "),
            ("clash", 'mode = "zip"\n"optim.patience" = [0, 5]\n"data.val_fraction" = [0.2, 0]',
             2, "sweep point 001-patience=5-val_fraction=0: optim.patience")]:
        write(tmp_path / f"{name}.toml", f'[data]\nsource = "sklearn:iris"\n[sweep]\n{sweep}\n')
        result = run("sweep", f"{name}.toml", "-o", name, "-q")
        assert result.exit_code == code and words in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1
        assert not (tmp_path / name).exists()  # point 000 did not train


def test_compare_any_runs(run, tmp_path):
    for lr in ("0.05", "0.5"):
        run("train", "sklearn:iris", "--lr", lr, "--epochs", "50", "-q", "-o", f"lr{lr}")
    result = run("compare", "lr0.05", "lr0.5", "-o", "cmp")
    assert result.exit_code == 0
    rows = read_rows(tmp_path / "cmp/leaderboard.csv")
    assert [r["optim.lr"] for r in rows] == ["0.5", "0.05"]  # the larger step got further
    assert (tmp_path / "cmp/curves.png").is_file()
    assert "note:" not in result.stderr  # one data set, one split: the ranking compares
    # a ranking of runs on other data or other validation rows was given with no word
    run("train", "sklearn:wine", "--epochs", "50", "-q", "-o", "wine")
    run("train", "sklearn:iris", "--epochs", "50", "--seed", "7", "-q", "-o", "seed7")
    other_data = run("compare", "lr0.5", "wine", "-o", "cmp2")
    assert "note: the runs were trained on 2 different data sets" in other_data.stderr
    other_rows = run("compare", "lr0.5", "seed7", "-o", "cmp3")
    assert "note: the runs hold out different validation rows (data.seed differs)" in \
        other_rows.stderr
