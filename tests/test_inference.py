"""What the model says (#18): the coefficient table against statsmodels' Logit and MNLogit, the
information matrix against finite differences of the gradient, calibration metrics against
scikit-learn and a hand count."""

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats
from sklearn.metrics import brier_score_loss

from xent import api
from xent.config import Config, with_overrides
from xent.inference import information
from xent.links import get_link
from xent.loss import labels_target, loss_and_grad
from xent.metrics import brier_score, calibration_bins, expected_calibration_error

sm = pytest.importorskip("statsmodels.api")

MLE = {"data.val_fraction": 0.0, "model.l2": 0.0, "optim.optimizer": "lbfgs",
       "optim.tol": 1e-10}


def _fit(path):
    run = api.train(with_overrides(Config(), dict(MLE, **{"data.source": str(path)})))
    dataset = api.load_for_model(path, run.model, require_labels=True)
    return api.inference(run.model, dataset)


def _close(ours, theirs, rel=1e-6):
    assert np.allclose(ours, theirs, rtol=rel, atol=0), (ours, theirs)


def test_logit_table_equals_statsmodels_on_spector(tmp_path):
    data = sm.datasets.spector.load_pandas()
    frame = data.exog.assign(GRADE=data.endog.astype(int))
    frame.to_csv(tmp_path / "spector.csv", index=False)
    theirs = sm.Logit(data.endog, sm.add_constant(data.exog, prepend=False)).fit(disp=0)
    table = _fit(tmp_path / "spector.csv")
    rows = table["coefficients"]
    assert [r["feature"] for r in rows] == ["GPA", "TUCE", "PSI", "intercept"]
    _close([r["coef"] for r in rows], theirs.params.to_numpy())
    _close([r["std_err"] for r in rows], theirs.bse.to_numpy())
    _close([r["p_value"] for r in rows], theirs.pvalues.to_numpy())
    _close([r["ci_low"] for r in rows], theirs.conf_int()[0].to_numpy())
    _close([r["odds_ratio"] for r in rows], np.exp(theirs.params.to_numpy()))
    for ours, key in (("log_likelihood", "llf"), ("null_log_likelihood", "llnull"),
                      ("lr_stat", "llr"), ("lr_pvalue", "llr_pvalue"), ("aic", "aic"),
                      ("bic", "bic"), ("pseudo_r2", "prsquared")):
        _close(table[ours], getattr(theirs, key))
    assert table["lr_df"] == theirs.df_model and not table["notes"]


def test_mnlogit_table_equals_statsmodels_on_anes96(tmp_path):
    data = sm.datasets.anes96.load_pandas().data
    data["logpopul"] = np.log(data["popul"] + 0.1)
    columns = ["logpopul", "selfLR", "age", "educ", "income"]
    data[columns].assign(PID=data["PID"].astype(int)).to_csv(tmp_path / "anes.csv",
                                                              index=False)
    theirs = sm.MNLogit(data["PID"], sm.add_constant(data[columns], prepend=False)).fit(
        disp=0, method="newton", maxiter=100)
    table = _fit(tmp_path / "anes.csv")
    assert table["form"] == "against the first class 0"
    coef = np.array([r["coef"] for r in table["coefficients"]]).reshape(6, 6).T
    std_err = np.array([r["std_err"] for r in table["coefficients"]]).reshape(6, 6).T
    _close(coef, theirs.params.to_numpy())
    _close(std_err, theirs.bse.to_numpy())
    for ours, key in (("log_likelihood", "llf"), ("lr_stat", "llr"), ("aic", "aic"),
                      ("bic", "bic")):
        _close(table[ours], getattr(theirs, key))


@pytest.mark.parametrize("n_classes, sparse", [(2, False), (3, False), (4, True)])
def test_information_equals_finite_differences_of_the_gradient(n_classes, sparse):
    rng = np.random.default_rng(n_classes)
    n, d = 60, 4
    X = rng.normal(size=(n, d))
    if sparse:
        X = sp.csr_matrix(X * (rng.random((n, d)) < 0.5))
    link = get_link("auto", n_classes)
    k = link.n_outputs(n_classes)
    params = rng.normal(scale=0.5, size=(d + 1, k))
    target = labels_target(rng.integers(0, n_classes, n), n_classes)

    def summed_gradient(flat):  # class by class, [W_1k .. W_dk, b_k]
        return n * loss_and_grad(flat.reshape(d + 1, k, order="F"), X, target, link)[1] \
            .ravel(order="F")

    flat, h = params.ravel(order="F"), 1e-6
    numeric = np.column_stack([
        (summed_gradient(flat + h * e) - summed_gradient(flat - h * e)) / (2 * h)
        for e in np.eye(flat.size)])
    analytic = information(X, params, link.name, block_rows=17)  # several blocks
    assert np.allclose(analytic, numeric, rtol=1e-6, atol=1e-6)
    assert np.allclose(analytic, analytic.T)


def test_a_likelihood_below_the_class_priors_has_an_lr_p_value_of_one():
    """On rows other than its training rows a model can fit worse than the class priors: the
    LR statistic is below 0, and its p-value was NaN (chdtrc of a negative)."""
    from xent.inference import likelihood_summary

    summary = likelihood_summary(-100.0, np.array([30.0, 30.0]), 2)
    assert summary["lr_stat"] == pytest.approx(2 * (-100.0 - 60 * np.log(0.5)))
    assert summary["lr_stat"] < 0 and summary["lr_pvalue"] == 1.0
    assert likelihood_summary(-30.0, np.array([30.0, 30.0]), 2)["lr_pvalue"] == \
        pytest.approx(stats.chi2.sf(2 * (-30.0 - 60 * np.log(0.5)), 2), rel=1e-12)


def test_calibration_metrics_against_references():
    rng = np.random.default_rng(0)
    binary = rng.dirichlet([1, 1], 200)
    y2 = rng.integers(0, 2, 200)
    assert brier_score(y2, binary) == pytest.approx(brier_score_loss(y2, binary[:, 1]))
    multi = rng.dirichlet([1, 1, 1], 200)
    y3 = rng.integers(0, 3, 200)
    assert brier_score(y3, multi) == pytest.approx(brier_score_loss(y3, multi,
                                                                    labels=[0, 1, 2]))
    # by hand: confidences 0.9 (right), 0.9 (wrong), 0.6 (right), 0.55 (right); 15 bins
    proba = np.array([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4], [0.45, 0.55]])
    true = np.array([0, 0, 0, 1])
    bins = calibration_bins(true, proba)
    counts = {(b["lower"], b["upper"]): b["count"] for b in bins if b["count"]}
    assert counts == {(13 / 15, 14 / 15): 2, (8 / 15, 9 / 15): 2}
    expected = 0.5 * abs(0.5 - 0.9) + 0.5 * abs(1.0 - 0.575)
    assert expected_calibration_error(bins) == pytest.approx(expected)


def test_inference_from_the_command_line(run, tmp_path):
    data = sm.datasets.spector.load_pandas()
    data.exog.assign(GRADE=data.endog.astype(int)).to_csv(tmp_path / "s.csv", index=False)
    trained = run("train", "s.csv", "--l2", "0", "--optimizer", "lbfgs", "--val-fraction",
                  "0", "--tol", "1e-10", "--inference", "-q", "-o", "r")
    assert trained.exit_code == 0, trained.output
    table = pd.read_csv(tmp_path / "r/coefficients.csv")
    theirs = sm.Logit(data.endog, sm.add_constant(data.exog, prepend=False)).fit(disp=0)
    _close(table["std_err"].to_numpy(), theirs.bse.to_numpy())
    shown = run("inspect", "r")
    assert shown.exit_code == 0 and "odds ratio" in shown.stdout and "AIC" in shown.stdout
    again = json.loads(run("inspect", "r", "s.csv", "--json").stdout)
    _close(again["aic"], theirs.aic)
    # inspect sums the information a block of rows at a time (32 rows here, 5 a block)
    from xent import api

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(api, "PREDICT_BLOCK_ROWS", 5)
        in_blocks = json.loads(run("inspect", "r", "s.csv", "--json").stdout)
    _close([c["std_err"] for c in in_blocks["coefficients"]], theirs.bse.to_numpy(), 1e-6)
    _close([c["std_err"] for c in in_blocks["coefficients"]],
           [c["std_err"] for c in again["coefficients"]], 1e-12)
    _close(in_blocks["log_likelihood"], again["log_likelihood"], 1e-14)
    penalised = run("train", "s.csv", "--l2", "0.01", "--val-fraction", "0", "-q", "-o", "p")
    assert penalised.exit_code == 0
    note = json.loads(run("inspect", "p", "s.csv", "--json").stdout)["notes"]
    assert any("penalised" in n for n in note)
    assert not any("l1 =" in n for n in note)
    # after an L1 fit the table takes the penalty's zeros as given, and says so
    lasso = run("train", "s.csv", "--l1", "0.05", "--val-fraction", "0", "-q", "-o", "lasso")
    assert lasso.exit_code == 0
    note = json.loads(run("inspect", "lasso", "s.csv", "--json").stdout)["notes"]
    assert any("l1 = 0.05: the penalty chose which weights are zero" in n for n in note), note
    assert "no inference table" in run("inspect", "p").stderr
    evaluated = json.loads(run("eval", "r", "s.csv", "--json", "--plot", "rel.png").stdout)
    assert {"brier", "ece"} <= set(evaluated)
    assert (tmp_path / "rel.png").read_bytes()[:4] == b"\x89PNG"
    # a plot that cannot be written was found after the data were read, and the results lost
    nowhere = run("eval", "r", "s.csv", "--plot", "no/such/rel.png")
    assert nowhere.exit_code == 2 and "--plot no/such/rel.png: no folder" in nowhere.stderr
    assert nowhere.stdout == ""


def test_a_singular_information_matrix_gets_a_note_not_silent_nans(run, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    y = (x + rng.normal(size=200) > 0).astype(int)
    pd.DataFrame({"x": x, "twice_x": 2 * x, "y": y}).to_csv(tmp_path / "c.csv", index=False)
    assert run("train", "c.csv", "--l2", "0", "--val-fraction", "0", "-q",
               "-o", "r").exit_code == 0
    table = json.loads(run("inspect", "r", "c.csv", "--json").stdout)
    assert any("singular" in n for n in table["notes"])
    assert all(r["std_err"] is None for r in table["coefficients"])  # NaN -> null, said why
    text = run("inspect", "r", "c.csv").stdout
    assert "note: the information matrix is singular" in text


# ---- export ---------------------------------------------------------------------------------

def _xent_proba(run, model_dir, data):
    predicted = run("predict", model_dir, data, "--proba")
    assert predicted.exit_code == 0, predicted.output
    return pd.read_csv(io.StringIO(predicted.stdout)).iloc[:, 1:].to_numpy()


@pytest.mark.parametrize("name", ["iris", "breast_cancer"])  # softmax, sigmoid
def test_onnx_gives_xents_probabilities_on_the_built_in_sets(run, tmp_path, name):
    ort = pytest.importorskip("onnxruntime")
    from xent.data import load_builtin

    assert run("train", f"sklearn:{name}", "-q", "-o", "m", "--epochs", "100").exit_code == 0
    assert run("export", "m", "-o", "m.onnx").exit_code == 0
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    probabilities, index = session.run(None, {"X": load_builtin(name).X})
    reference = _xent_proba(run, "m", f"sklearn:{name}")
    assert np.allclose(probabilities, reference, rtol=0, atol=1e-6)
    assert np.array_equal(index, reference.argmax(axis=1))


def test_onnx_of_a_csv_with_categorical_columns_and_fill_values(run, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    frame = pd.read_csv(Path(__file__).resolve().parent.parent / "data/fruit.csv")
    frame.loc[[3, 17], "weight_g"] = np.nan  # filled with the training mean
    frame.to_csv(tmp_path / "f.csv", index=False)
    assert run("train", "f.csv", "--target", "fruit", "--impute", "mean", "-q", "-o", "m",
               "--epochs", "200").exit_code == 0
    assert run("export", "m", "-o", "m.onnx").exit_code == 0
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    feeds = {}
    for given in session.get_inputs():
        column = frame[given.name]
        feeds[given.name] = (column.astype(str).to_numpy(dtype=object)
                             if given.type == "tensor(string)"
                             else column.to_numpy(np.float64)).reshape(-1, 1)
    assert set(feeds) == {"weight_g", "length_cm", "colour", "origin"}
    probabilities = session.run(["probabilities"], feeds)[0]
    assert np.allclose(probabilities, _xent_proba(run, "m", "f.csv"), rtol=0, atol=1e-6)


def test_penalised_standard_errors_equal_the_inverse_of_the_penalised_objectives_hessian(
        run, tmp_path):
    # reference: central differences of n * gradient of (mean cross-entropy + l2/2 ||W||^2)
    # in the standardised parameters, inverted and mapped to the data's units by hand
    data = sm.datasets.spector.load_pandas()
    data.exog.assign(GRADE=data.endog.astype(int)).to_csv(tmp_path / "s.csv", index=False)
    l2 = 0.05
    assert run("train", "s.csv", "--l2", str(l2), "--val-fraction", "0", "--optimizer",
               "lbfgs", "--tol", "1e-10", "-q", "-o", "p").exit_code == 0
    table = json.loads(run("inspect", "p", "s.csv", "--json").stdout)
    model = api.load_model(tmp_path / "p")
    X = model.standardizer.transform(data.exog.to_numpy(np.float64))
    n, target, link = len(X), labels_target(data.endog.astype(int).to_numpy(), 2), \
        get_link("sigmoid")
    theta, h = model.params.ravel(), 1e-6

    def gradient(flat):
        return n * loss_and_grad(flat.reshape(-1, 1), X, target, link, l2)[1].ravel()

    hessian = np.column_stack([(gradient(theta + h * e) - gradient(theta - h * e)) / (2 * h)
                               for e in np.eye(theta.size)])
    scale, mean = model.standardizer.scale, model.standardizer.mean
    A = np.eye(4)
    A[:3, :3] = np.diag(1 / scale)
    A[3, :3] = -mean / scale
    expected = np.sqrt(np.diag(A @ np.linalg.inv(hessian) @ A.T))
    _close([r["std_err"] for r in table["coefficients"]], expected, rel=1e-5)


def test_export_and_inference_refuse_cleanly_what_they_cannot_do(run, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"logits": rng.normal(size=60), "coef": rng.choice(["a", "b"], 60),
                          "y": rng.choice(["u", "v", "w"], 60)})
    frame.to_csv(tmp_path / "odd.csv", index=False)  # columns named like the graph's insides
    assert run("train", "odd.csv", "-q", "-o", "m", "--epochs", "50").exit_code == 0
    assert run("export", "m", "-o", "m.onnx").exit_code == 0
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    probabilities = session.run(["probabilities"], {
        "logits": frame[["logits"]].to_numpy(np.float64),
        "coef": frame[["coef"]].to_numpy(dtype=object)})[0]
    assert np.allclose(probabilities, _xent_proba(run, "m", "odd.csv"), atol=1e-6)
    frame.rename(columns={"logits": "probabilities"}).to_csv(tmp_path / "clash.csv",
                                                              index=False)
    assert run("train", "clash.csv", "-q", "-o", "c", "--epochs", "5").exit_code == 0
    clash = run("export", "c", "-o", "c.onnx")
    assert clash.exit_code == 1 and "'probabilities'" in clash.stderr
    assert not (tmp_path / "c.onnx").exists()
    wide = pd.DataFrame(rng.normal(size=(30, 1000)), columns=[f"x{i}" for i in range(1000)])
    wide["y"] = rng.choice(list("abcdef"), 30)
    wide.to_csv(tmp_path / "wide.csv", index=False)
    refused = run("train", "wide.csv", "--inference", "-q", "-o", "w")
    assert refused.exit_code == 2 and "--inference" in refused.stderr
    assert not (tmp_path / "w").exists()  # refused before training, nothing written
