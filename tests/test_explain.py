"""xent ce / gradcheck / trace, soft-target logging and diagnostics."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import fit_arrays
from test_links_and_loss import SEED_VECTORS

from xent.diagnostics import diagnose
from xent.explain import compare_gradients, cross_entropy_terms
from xent.links import get_link
from xent.loss import labels_target, target_entropy


def csv_list(values):
    return ",".join(str(v) for v in values)


@pytest.mark.parametrize("target, pred, expected", SEED_VECTORS)
def test_ce_prints_every_seed_vector(run, target, pred, expected):
    result = run("ce", "--target", csv_list(target), "--pred", csv_list(pred), "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["cross_entropy"] == pytest.approx(expected, abs=1e-6)
    true = target.index(1)
    assert report["terms"][true] == pytest.approx(expected, abs=1e-6)
    assert sum(report["terms"]) == pytest.approx(expected, abs=1e-6)
    text = run("ce", "--target", csv_list(target), "--pred", csv_list(pred)).stdout
    assert f"cross-entropy = {expected:.6f}" in text


@pytest.mark.parametrize("p, q, expected", [(0, 0.26, 0.301105), (1, 0.6, 0.510826)])
def test_ce_binary(run, p, q, expected):
    result = run("ce", "--target", p, "--pred", q)
    assert f"cross-entropy = {expected:.6f}" in result.stdout
    assert "-p log q - (1-p) log(1-q)" in result.stdout
    logit = np.log(q / (1 - q))
    via_logit = json.loads(run("ce", "-p", p, f"--logits={float(logit)!r}", "--json").stdout)
    assert via_logit["cross_entropy"] == pytest.approx(expected, abs=1e-6)


def test_ce_logits_apply_the_softmax_stably():
    result = cross_entropy_terms([0, 1, 0], logits=[2.0, 1.0, 0.0])
    expected = -np.log(np.exp(1.0) / np.exp([2.0, 1.0, 0.0]).sum())
    assert result["cross_entropy"] == pytest.approx(expected, rel=1e-12)
    huge = cross_entropy_terms([0, 1, 0], logits=[1e4, 0.0, -5.0])
    assert huge["cross_entropy"] == pytest.approx(1e4)
    assert np.allclose(huge["q"].sum(), 1.0)


@pytest.mark.parametrize(
    "args, message",
    [
        (["-p", "0.5,0.6", "-q", "0.5,0.5"], "sum to 1"),
        (["-p", "1,0", "-q", "-0.5,1.5"], "[0, 1]"),
        (["-p", "1,0,0", "-q", "0.5,0.5"], "3 classes"),
        (["-p", "1,x", "-q", "0.5,0.5"], "not a comma-separated list"),
        (["-p", "1,0"], "exactly one of --pred and --logits"),
    ],
)
def test_ce_refuses_what_is_not_a_distribution(run, args, message):
    result = run("ce", *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_gradcheck_passes_on_real_data(run):
    result = run("gradcheck", "sklearn:wine", "--l2", "0.01", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and report["max_rel_error"] < 1e-6
    assert report["random_point"]["W"]["n_checked"] == 13 * 3
    binary = run("gradcheck", "sklearn:breast_cancer", "--max-params", "20")
    assert binary.exit_code == 0 and "OK" in binary.stdout
    strict = run("gradcheck", "sklearn:iris", "--tol", "1e-30")
    assert strict.exit_code == 1 and "FAILED" in strict.stdout


def test_finite_differences_catch_a_wrong_gradient():
    from xent.explain import finite_difference_grad
    from xent.loss import loss_and_grad

    rng = np.random.default_rng(0)
    X, params = rng.normal(size=(30, 3)), rng.normal(size=(4, 3))
    target, link = labels_target(np.arange(30) % 3, 3), get_link("softmax")
    _, grad = loss_and_grad(params, X, target, link, 0.5)
    wrong = grad.copy()
    wrong[:-1] += 0.5 * params[:-1]  # the l2 term counted twice
    _, numeric = finite_difference_grad(params, X, target, link, 0.5)
    assert np.allclose(grad.ravel(), numeric, rtol=1e-6, atol=1e-9)
    assert not np.allclose(wrong.ravel(), numeric, rtol=1e-3)


def test_compare_gradients_reports_w_and_b():
    X = np.random.default_rng(0).normal(size=(40, 4))
    target = labels_target(np.arange(40) % 2, 2)
    report = compare_gradients(np.ones((5, 1)), X, target, get_link("sigmoid"), 0.1)
    assert report["W"]["n_checked"] == 4 and report["b"]["n_checked"] == 1
    assert report["W"]["max_rel_error"] < 1e-7


def test_trace_shows_one_step(run, tmp_path):
    assert run("train", "sklearn:iris", "-q", "-o", "m", "--epochs", "20").exit_code == 0
    result = run("trace", "m", "sklearn:iris", "--row", "0", "--lr", "0.5", "--json")
    assert result.exit_code == 0, result.output
    t = json.loads(result.stdout)
    x, z, q, p = (np.array(t[k]) for k in ("x", "z", "q", "p"))
    assert p.tolist() == [1.0, 0.0, 0.0] and t["label"] == "setosa"
    assert np.allclose(q, np.exp(z) / np.exp(z).sum())
    assert np.allclose(t["grad_W"], np.outer(x, q - p))
    assert np.allclose(t["update_W"], -0.5 * np.outer(x, q - p))
    assert t["loss_after"] < t["loss_before"]
    text = run("trace", "m", "sklearn:iris", "--row", "0").stdout
    assert "x (q - p)^T, shape (4, 3)" in text
    # out of range is a usage error, like --row -1 (#19)
    assert run("trace", "m", "sklearn:iris", "--row", "150").exit_code == 2
    assert run("trace", "m", "sklearn:iris", "--row", "-1").exit_code == 2
    # a step size training would refuse is refused here too (it printed a NaN loss, or a
    # step uphill, before)
    for lr, message in (("nan", "must be finite"), ("-1", "must be > 0"), ("0", "must be > 0")):
        refused = run("trace", "m", "sklearn:iris", "--row", "0", "--lr", lr)
        assert refused.exit_code == 2 and message in refused.stderr, refused.output
        assert refused.stderr.count("\n") == 1


def test_trace_of_a_sigmoid_shows_the_two_class_softmax(run):
    run("train", "sklearn:breast_cancer", "-q", "-o", "b", "--epochs", "20")
    t = json.loads(run("trace", "b", "sklearn:breast_cancer", "--row", "5", "--json").stdout)
    two = t["softmax"]
    assert np.allclose(two["q"][1], t["q"][0])
    assert np.allclose(np.array(two["grad_W"])[:, 1], np.array(t["grad_W"])[:, 0])
    assert np.allclose(np.array(two["grad_W"])[:, 0], -np.array(t["grad_W"])[:, 0])
    assert two["loss"] == pytest.approx(t["loss_before"])


def test_smoothed_targets_log_entropy_and_kl(run, tmp_path):
    result = run("train", "sklearn:iris", "--label-smoothing", "0.2", "--optimizer", "lbfgs",
                 "-q", "--json", "-o", "s")
    summary = json.loads(result.stdout)
    k, eps = 3, 0.2
    top, rest = 1 - eps + eps / k, eps / k
    entropy = -top * np.log(top) - (k - 1) * rest * np.log(rest)
    assert summary["target_entropy"] == pytest.approx(entropy)
    assert summary["kl_divergence"] == pytest.approx(summary["train_loss"] - entropy)
    assert summary["kl_divergence"] > 0
    metrics = np.genfromtxt(tmp_path / "s/metrics.csv", delimiter=",", names=True)
    assert np.allclose(metrics["kl_divergence"], metrics["train_loss"] - entropy)


def test_target_entropy_of_soft_rows():
    from xent.loss import proba_target

    P = np.array([[0.5, 0.5], [1.0, 0.0]])
    assert target_entropy(proba_target(P)) == pytest.approx(np.log(2) / 2)
    assert target_entropy(labels_target([0, 1], 2)) == 0.0


def _diagnose(result, X=None, names=None, **kw):
    settings = dict(stop_reason=result.stop_reason, lr=result.lr, optimizer="gd", penalised=False,
                    tol=1e-6, full_batch=True, feature_stds=None, feature_names=names or [])
    settings.update(kw)
    return diagnose(result.history, **settings)


def test_diagnoses_separable_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 2))
    y = (X[:, 0] > 0).astype(int)
    X[:, 0] += np.where(y == 1, 0.5, -0.5)  # a margin: separable
    result = fit_arrays(X, labels_target(y, 2), get_link("sigmoid"), max_epochs=2000)
    assert result.stop_reason == "max_epochs"
    text = " ".join(_diagnose(result))
    assert "linearly separable" in text and "--l2" in text
    regularised = fit_arrays(X, labels_target(y, 2), get_link("sigmoid"), max_epochs=200, l2=0.01)
    assert "separable" not in " ".join(_diagnose(regularised, penalised=True))


def test_a_converged_run_on_separable_data_without_a_penalty_is_diagnosed(run, tmp_path):
    """L-BFGS with --l2 0 on separable rows stopped "converged" (the gradient shrinks with
    the loss) at weights of 500 and growing, with no word, and inspect printed p-values of
    0.98 for them. Any penalty, or label smoothing, gives a finite optimum and no diagnosis."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=100)
    frame = pd.DataFrame({"x": x, "z": rng.normal(size=100), "y": (x > 0).astype(int)})
    frame.to_csv(tmp_path / "sep.csv", index=False)
    base = ["train", "sep.csv", "--optimizer", "lbfgs", "--l2", "0", "--inference", "--json"]
    separated = run(*base, "-o", "sep")
    summary = json.loads(separated.stdout)
    assert summary["stop_reason"] == "converged" and summary["train_accuracy"] == 1.0
    assert "diagnosis: the data look linearly separable" in separated.stderr
    assert any("no finite optimum" in line for line in summary["diagnostics"])
    table = run("inspect", "sep", "--json")
    assert any("every row is classified right" in n for n in json.loads(table.stdout)["notes"])
    on_data = run("inspect", "sep", "sep.csv", "--json")  # the table computed from the rows
    assert any("every row is classified right" in n for n in json.loads(on_data.stdout)["notes"])
    for bounded in (["--l2", "1e-3"], ["--label-smoothing", "0.1"], ["--l1", "1e-3"]):
        fitted = run(*base[:2], *bounded, "--json", "-o", "b" + bounded[0])
        assert fitted.exit_code == 0 and "separable" not in fitted.stderr, bounded
        assert not any("classified right" in n for n in json.loads(
            run("inspect", "b" + bounded[0], "sep.csv", "--json").stdout)["notes"])


def test_diagnoses_a_learning_rate_too_large_and_extreme_scales():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 2)) * [1000.0, 0.01]
    y = (X[:, 0] / 1000 + X[:, 1] * 100 + rng.normal(0, 0.5, 200) > 0).astype(int)
    result = fit_arrays(X, labels_target(y, 2), get_link("sigmoid"), lr=1.0, max_epochs=50, l2=1e-3)
    notes = _diagnose(result, names=["big", "small"], feature_stds=X.std(axis=0),
                      penalised=True)
    text = " ".join(notes)
    assert "objective rose" in text and "--lr 0.25" in text
    assert "'big'" in text and "'small'" in text and "--standardize" in text
    assert "epoch budget" in text
    converged = fit_arrays(X / X.std(axis=0), labels_target(y, 2), get_link("sigmoid"),
                    optimizer="lbfgs", l2=1e-3)
    assert _diagnose(converged) == []


def test_diagnosis_reaches_the_summary(run):
    result = run("train", "sklearn:wine", "--no-standardize", "--epochs", "50", "-o", "w")
    assert "diagnosis: feature scales differ" in result.stderr
    with open("w/summary.json", encoding="utf-8") as handle:
        summary = json.load(handle)
    assert any("proline" in line for line in summary["diagnostics"])
