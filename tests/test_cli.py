"""The command line through click's CliRunner: exit codes, stdout/stderr, run directories."""

import csv
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import sklearn_optimum, standardised

DATA = Path(__file__).resolve().parent.parent / "data"


def test_train_iris_then_eval(run, tmp_path):
    result = run("train", "sklearn:iris", "-o", tmp_path / "iris")
    assert result.exit_code == 0, result.output
    assert "epoch" in result.stderr and "val loss" in result.stderr
    assert "l2 0.0001" in result.stderr and "seed 0" in result.stderr
    assert result.stdout == ""
    for name in ("config.toml", "metrics.csv", "model.npz", "loss.png", "summary.json"):
        assert (tmp_path / "iris" / name).is_file()
    metrics = pd.read_csv(tmp_path / "iris" / "metrics.csv")
    summary = json.loads((tmp_path / "iris" / "summary.json").read_text())
    assert len(metrics) == summary["epochs"] + 1
    assert metrics["train_loss"].iloc[0] == pytest.approx(np.log(3))
    assert summary["baseline_loss"] == pytest.approx(np.log(3))
    evaluated = run("eval", tmp_path / "iris", "sklearn:iris", "--json")
    assert evaluated.exit_code == 0
    report = json.loads(evaluated.stdout)
    assert report["accuracy"] >= 0.95
    assert set(report) == {"n_samples", "n_left_out", "n_unseen_levels", "log_loss",
                           "accuracy", "brier", "ece", "calibration_bins", "classes",
                           "confusion_matrix", "per_class"}
    assert report["n_unseen_levels"] == {}
    assert np.sum(report["confusion_matrix"]) == 150
    text = run("eval", tmp_path / "iris" / "model.npz", "sklearn:iris")
    assert "accuracy" in text.stdout and "virginica" in text.stdout


def test_lbfgs_summary_objective_matches_sklearn(run, tmp_path):
    result = run("train", "sklearn:breast_cancer", "--l2", "1e-3", "--val-fraction", "0",
                 "--optimizer", "lbfgs", "-o", tmp_path / "bc", "--json", "-q")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    X, y = standardised("breast_cancer")
    _, reference = sklearn_optimum(X, y, 1e-3)
    assert summary["objective"] == pytest.approx(reference, rel=1e-6)
    assert summary["val_loss"] is None and summary["converged"] is True
    assert result.stderr == ""


@pytest.mark.parametrize("name, target", [("iris.csv", "species"), ("breast_cancer.csv", None),
                                          ("fruit.csv", "fruit")])
def test_every_shipped_csv_trains_evaluates_and_predicts(run, tmp_path, name, target):
    out = tmp_path / name
    args = ["train", DATA / name, "-o", out, "-q", "--optimizer", "lbfgs"]
    result = run(*args, *(["--target", target] if target else []))
    assert result.exit_code == 0, result.output
    assert json.loads((out / "summary.json").read_text())["val_accuracy"] > 0.85
    evaluated = run("eval", out, DATA / name, "--json")
    assert json.loads(evaluated.stdout)["accuracy"] > 0.85
    frame = pd.read_csv(DATA / name)
    features = frame.drop(columns=[frame.columns[-1]])
    features.to_csv(tmp_path / "unlabelled.csv", index=False)
    predicted = run("predict", out, tmp_path / "unlabelled.csv", "--proba")
    assert predicted.exit_code == 0, predicted.output
    rows = list(csv.DictReader(io.StringIO(predicted.stdout)))
    assert len(rows) == len(frame)
    truth = frame.iloc[:, -1].astype(str)
    hits = np.mean([r["prediction"] == t for r, t in zip(rows, truth, strict=True)])
    assert hits > 0.85
    probabilities = np.array([[float(v) for k, v in r.items() if k != "prediction"] for r in rows])
    assert np.allclose(probabilities.sum(axis=1), 1.0)


def test_predict_writes_a_file_and_ignores_extra_columns(run, tmp_path):
    run("train", DATA / "iris.csv", "-o", tmp_path / "m", "-q")
    frame = pd.read_csv(DATA / "iris.csv")
    frame.insert(0, "extra", 1.0)
    frame.to_csv(tmp_path / "extra.csv", index=False)
    result = run("predict", tmp_path / "m", tmp_path / "extra.csv", "-o", tmp_path / "p.csv")
    assert result.exit_code == 0 and result.stdout == ""
    assert list(pd.read_csv(tmp_path / "p.csv").columns) == ["prediction"]


def test_categorical_columns_are_one_hot_encoded(run, tmp_path):
    result = run("train", DATA / "fruit.csv", "--dry-run")
    assert result.exit_code == 0
    schema = json.loads(result.stdout[result.stdout.index("{"):])
    assert schema["categorical"]["origin"] == ["Ecuador", "España", "Italy", "Morocco"]
    assert "colour=red" in schema["features"]
    counts = pd.read_csv(DATA / "fruit.csv")["fruit"].value_counts().to_dict()
    assert schema["classes"] == counts
    assert not Path("runs").exists()  # a dry run writes nothing


def test_existing_run_directory_needs_force(run, tmp_path):
    out = tmp_path / "r"
    assert run("train", "sklearn:iris", "-o", out, "-q", "--epochs", "3").exit_code == 0
    again = run("train", "sklearn:iris", "-o", out, "-q", "--epochs", "3")
    assert again.exit_code == 1 and "--force" in again.stderr
    assert run("train", "sklearn:iris", "-o", out, "-q", "--epochs", "3",
               "--force").exit_code == 0


def test_default_run_directory(run, tmp_path):
    assert run("train", "sklearn:wine", "-q", "--epochs", "2").exit_code == 0
    (made,) = (tmp_path / "runs").iterdir()
    assert made.name.startswith("wine-")


def test_options_reach_the_config(run, tmp_path):
    result = run("train", "sklearn:digits", "-o", tmp_path / "d", "-q", "--optimizer", "adam",
                 "--lr", "0.02", "--epochs", "3", "--batch-size", "100", "--seed", "4",
                 "--no-standardize", "--l2", "0", "--label-smoothing", "0.1", "--dtype",
                 "float32", "--link", "softmax", "--class-weight", "balanced", "--patience", "5",
                 "--tol", "1e-3")
    assert result.exit_code == 0, result.output
    saved = (tmp_path / "d" / "config.toml").read_text()
    for line in ('optimizer = "adam"', "lr = 0.02", "epochs = 3", "batch_size = 100",
                 "seed = 4", "standardize = false", "l2 = 0", "label_smoothing = 0.1",
                 'dtype = "float32"', 'class_weight = "balanced"', "patience = 5"):
        assert line in saved
    metrics = pd.read_csv(tmp_path / "d" / "metrics.csv")
    assert list(metrics["lr"].unique()) == [0.02]


def test_unregularised_is_said_and_sigmoid_needs_two_classes(run):
    result = run("train", "sklearn:breast_cancer", "--l2", "0", "--epochs", "1", "-o", "x")
    assert "unregularised" in result.stderr
    bad = run("train", "sklearn:iris", "--link", "sigmoid", "-o", "y")
    assert bad.exit_code == 2 and "2 classes" in bad.stderr


def test_strict_exit_code_when_not_converged(run):
    result = run("train", "sklearn:iris", "--epochs", "2", "--strict", "-q", "-o", "s")
    assert result.exit_code == 3


def test_divergence_exit_code(run, tmp_path):
    result = run("train", "sklearn:breast_cancer", "--lr", "1e300", "--l2", "1e-3", "-q",
                 "-o", tmp_path / "dv", "--no-standardize")
    assert result.exit_code == 4
    assert "smaller --lr" in result.stderr
    assert (tmp_path / "dv" / "model.npz").is_file()


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["train", "nope.csv"], 1, "no such file"),
        (["train", "sklearn:nope"], 1, "unknown built-in"),
        (["train", "sklearn:iris", "--lr", "fast"], 2, "optim.lr"),
        (["train", "sklearn:iris", "--epochs", "-1"], 2, "optim.epochs"),
        (["train", "sklearn:iris", "--optimizer", "sgd"], 2, "Invalid value"),
        (["train", "sklearn:iris", "--set", "optim.lrr=1"], 2, "did you mean 'optim.lr'"),
        (["train"], 2, "give DATA"),
        (["eval", "missing-model", "sklearn:iris"], 1, "no such model file"),
    ],
)
def test_errors_are_one_line_with_exit_codes(run, args, code, message):
    result = run(*args)
    assert result.exit_code == code
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_eval_errors_name_columns_and_labels(run, tmp_path):
    run("train", DATA / "iris.csv", "-o", tmp_path / "m", "-q", "--epochs", "5")
    frame = pd.read_csv(DATA / "iris.csv")
    frame.drop(columns=["petal width (cm)"]).to_csv(tmp_path / "missing.csv", index=False)
    missing = run("eval", tmp_path / "m", tmp_path / "missing.csv")
    assert missing.exit_code == 1 and "petal width (cm)" in missing.stderr
    frame.loc[0, "species"] = "rose"
    frame.to_csv(tmp_path / "rose.csv", index=False)
    unseen = run("eval", tmp_path / "m", tmp_path / "rose.csv")
    assert unseen.exit_code == 1 and "'rose'" in unseen.stderr


def test_missing_values_need_an_impute_policy(run, tmp_path):
    frame = pd.read_csv(DATA / "iris.csv")
    frame.iloc[3, 0] = np.nan
    frame.iloc[7, 2] = np.nan
    frame.to_csv(tmp_path / "holes.csv", index=False)
    refused = run("train", tmp_path / "holes.csv", "-q", "-o", "h")
    assert refused.exit_code == 1
    assert "sepal length (cm)' (1)" in refused.stderr and "--impute" in refused.stderr
    for policy, n in (("mean", 150), ("drop", 148)):
        ok = run("train", tmp_path / "holes.csv", "-q", "--json", "--impute", policy,
                 "-o", f"h-{policy}", "--epochs", "5")
        assert ok.exit_code == 0, ok.output
        assert json.loads(ok.stdout)["n_samples"] == n


def test_libsvm_data_stay_sparse(run, tmp_path):
    from sklearn.datasets import dump_svmlight_file

    X, y = standardised("breast_cancer")
    X[np.abs(X) < 1] = 0
    dump_svmlight_file(X, y, str(tmp_path / "bc.svm"))
    result = run("train", tmp_path / "bc.svm", "-q", "--json", "-o", tmp_path / "svm",
                 "--optimizer", "lbfgs")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["val_accuracy"] > 0.85
    schema = json.loads(run("train", tmp_path / "bc.svm", "--dry-run").stdout.split("\n\n")[-1])
    assert schema["sparse"] is True
    assert run("eval", tmp_path / "svm", tmp_path / "bc.svm").exit_code == 0


def test_datasets_lists_the_builtin_sets(run):
    result = run("datasets", "--json")
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["sklearn:iris"]["n_samples"] == 150 and rows["sklearn:digits"]["n_classes"] == 10
    assert "breast_cancer" in run("datasets").stdout


def test_help_shows_defaults(run):
    text = run("train", "--help").stdout
    assert "[default: nesterov]" in text and "[default: auto]" in text and "[default: 5000]" in text
