"""Choosing the penalty (#17): folds, lambda_max, warm-started paths, cross-validation, the
1se rule, `xent path` and SoftmaxRegressionCV, against hand counts, cold fits and
scikit-learn's LogisticRegression(CV) on the same objective."""

import json
import warnings

import numpy as np
import pytest
from conftest import fit_arrays, standardised
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import log_loss

from xent.links import get_link
from xent.loss import Objective, labels_target
from xent.path import (
    CrossValidation,
    PathSpec,
    cross_validate,
    fit_path,
    lambda_grid,
    largest_lambda,
    null_model,
    penalties,
)
from xent.preprocess import fold_ids
from xent.sources import ArraySource
from xent.train import Solver, Stopping


def test_folds_are_stratified_seeded_and_cover_every_usable_row():
    labels = np.repeat([0, 1, 2], [50, 30, 7])
    usable = np.ones(len(labels), dtype=bool)
    usable[[3, 40, 85]] = False
    folds = fold_ids(labels, usable, 5, seed=1)
    assert np.all(folds[~usable] == -1) and np.all((folds[usable] >= 0) & (folds[usable] < 5))
    sizes = np.bincount(folds[usable], minlength=5)
    assert sizes.max() - sizes.min() <= 1 and sizes.sum() == usable.sum()
    for cls in range(3):
        per_fold = np.bincount(folds[usable & (labels == cls)], minlength=5)
        assert per_fold.max() - per_fold.min() <= 1  # each fold has its share of the class
    assert np.array_equal(folds, fold_ids(labels, usable, 5, seed=1))
    assert not np.array_equal(folds, fold_ids(labels, usable, 5, seed=2))
    with pytest.raises(Exception, match="cannot make 100 folds"):
        fold_ids(labels, usable, 100, seed=0)


@pytest.mark.parametrize("name", ["breast_cancer", "wine"])
def test_lambda_max_is_where_the_first_weight_leaves_zero(name):
    X, y = standardised(name)
    k = len(np.unique(y))
    link, target = get_link("auto", k), labels_target(y, k)
    null = null_model(ArraySource(X, target), link, True)
    counts = np.bincount(y)
    # the null model predicts the class shares: its logits are the log-priors
    logits = null.params[-1]
    if k == 2:
        assert logits[0] == pytest.approx(np.log(counts[1] / counts[0]), rel=1e-12)
    else:
        assert np.allclose(logits - logits[0], np.log(counts / counts[0]), atol=1e-12)
    lam_max = largest_lambda(null, 1.0)
    at_max = fit_arrays(X, target, link, l1=lam_max * (1 + 1e-9), optimizer="lbfgs", tol=1e-8)
    below = fit_arrays(X, target, link, l1=lam_max * 0.97, optimizer="lbfgs", tol=1e-8)
    assert np.count_nonzero(at_max.params[:-1]) == 0
    assert np.count_nonzero(below.params[:-1]) >= 1
    assert largest_lambda(null, 0.5) == pytest.approx(2 * lam_max)


def _spec(link, lambdas, l1_ratio, optimizer="lbfgs", tol=1e-8):
    return PathSpec(link, True, l1_ratio, lambdas, Solver(optimizer), Stopping(100_000, tol))


@pytest.mark.parametrize("l1_ratio, optimizer", [(1.0, "lbfgs"), (0.5, "nesterov"),
                                                 (0.0, "lbfgs")])
def test_the_warm_path_reaches_each_cold_optimum(l1_ratio, optimizer):
    X, y = standardised("iris")
    link, target = get_link("softmax"), labels_target(y, 3)
    source = ArraySource(X, target)
    lambdas = lambda_grid(largest_lambda(null_model(source, link, True), l1_ratio), 6, 1e-3)
    path = fit_path(source, _spec(link, lambdas, l1_ratio, optimizer, tol=1e-6))
    assert path.converged.all() and path.nonzero[0] == (0 if l1_ratio else 12)
    for lam, params in zip(lambdas, path.params, strict=True):
        l2, l1 = penalties(lam, l1_ratio)
        objective = Objective(link, l2, True, l1)
        cold = fit_arrays(X, target, link, l2=l2, l1=l1, optimizer=optimizer, tol=1e-9,
                          max_epochs=100_000)
        ours, reference = (objective.evaluate(p, source).objective
                           for p in (params, cold.params))
        assert ours == pytest.approx(reference, rel=1e-8)


def test_cross_validation_equals_scikit_learn_fold_by_fold():
    """Each fold's held-out loss is scikit-learn's log_loss of LogisticRegression fitted on
    the other folds at the same objective; the curve is their mean and standard error."""
    X, y = standardised("iris")
    link = get_link("softmax")
    lambdas = np.array([0.3, 0.03, 0.003])
    folds = fold_ids(y, np.ones(len(y), dtype=bool), 3, seed=0)

    def sources_for(fold):
        train, held = folds != fold, folds == fold
        return (ArraySource(X[train], labels_target(y[train], 3)),
                ArraySource(X[held], labels_target(y[held], 3)))

    full = ArraySource(X, labels_target(y, 3))
    cv, path = cross_validate(full, sources_for, 3, _spec(link, lambdas, 0.0, tol=1e-10))
    expected = np.zeros((3, len(lambdas)))
    for fold in range(3):
        train, held = folds != fold, folds == fold
        for i, lam in enumerate(lambdas):
            clf = LogisticRegression(C=1.0 / (lam * train.sum()), tol=1e-12,
                                     max_iter=100_000).fit(X[train], y[train])
            expected[fold, i] = log_loss(y[held], clf.predict_proba(X[held]))
    assert np.allclose(cv.fold_loss, expected, rtol=1e-6)
    assert np.allclose(cv.loss_mean, expected.mean(axis=0), rtol=1e-6)
    assert np.allclose(cv.loss_se, expected.std(axis=0, ddof=1) / np.sqrt(3), rtol=1e-4)
    assert path.params.shape == (3, 5, 3)


def test_lambda_min_and_the_one_standard_error_rule():
    lambdas = np.geomspace(1.0, 1e-3, 6)
    cv = CrossValidation(lambdas, loss_mean=np.array([0.9, 0.5, 0.31, 0.30, 0.32, 0.4]),
                         loss_se=np.array([0.01, 0.01, 0.02, 0.02, 0.02, 0.03]),
                         accuracy_mean=np.zeros(6), accuracy_se=np.zeros(6),
                         fold_loss=np.zeros((2, 6)))
    assert cv.index_min == 3
    assert cv.index_1se == 2  # 0.31 <= 0.30 + 0.02; 0.5 is not
    assert cv.index("min") == 3 and cv.index("1se") == 2


def test_paths_in_processes_equal_the_sequential_ones():
    X, y = standardised("wine")
    link = get_link("softmax")
    folds = fold_ids(y, np.ones(len(y), dtype=bool), 3, seed=0)

    def sources_for(fold):
        return (ArraySource(X[folds != fold], labels_target(y[folds != fold], 3)),
                ArraySource(X[folds == fold], labels_target(y[folds == fold], 3)))

    full = ArraySource(X, labels_target(y, 3))
    spec = _spec(link, np.geomspace(0.5, 0.005, 5), 1.0)
    one = cross_validate(full, sources_for, 3, spec, jobs=1)
    heard = []
    two = cross_validate(full, sources_for, 3, spec, jobs=2,
                         on_event=lambda name, what, fit: heard.append((name, what)))
    assert np.allclose(one[0].fold_loss, two[0].fold_loss, rtol=1e-9)
    assert np.allclose(one[1].params, two[1].params, atol=1e-9)
    assert sorted(n for n, w in heard if w == "done") == \
        ["all rows", "fold 1/3", "fold 2/3", "fold 3/3"]


def test_xent_path_writes_the_curve_and_the_refitted_run(run, tmp_path):
    result = run("path", "sklearn:breast_cancer", "--folds", "3", "--n-lambdas", "8",
                 "--jobs", "2", "--json", "-o", "p")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    chosen = summary["path"]["selected"]
    assert summary["path"]["select"] == "1se" and chosen == summary["path"]["1se"]
    for name in ("path.csv", "cv.png", "coef_path.png", "model.npz", "summary.json",
                 "config.toml"):
        assert (tmp_path / "p" / name).exists(), name
    rows = (tmp_path / "p" / "path.csv").read_text().splitlines()
    assert len(rows) == 9 and rows[1].split(",")[8] == "0"  # nothing non-zero at lambda_max
    assert "lambda_1se" in result.stderr and "[4/4]" in result.stderr
    # the refit is the run `xent train` gives at the chosen lambda, on all rows
    assert summary["l1"] == pytest.approx(chosen["lambda"]) and summary["l2"] == 0
    assert summary["n_val"] == 0 and summary["converged"]
    again = run("train", "sklearn:breast_cancer", "--l1", repr(chosen["lambda"]), "--l2", "0",
                "--optimizer", "lbfgs", "--val-fraction", "0", "--json", "-q", "-o", "t")
    assert json.loads(again.stdout)["objective"] == pytest.approx(summary["objective"],
                                                                  rel=1e-9)
    evaluated = run("eval", "p", "sklearn:breast_cancer", "--json")
    assert evaluated.exit_code == 0 and json.loads(evaluated.stdout)["accuracy"] > 0.9
    listed = run("compare", "p", "t", "-o", "cmp")
    assert listed.exit_code == 0 and "cv_loss" in listed.stdout


def test_a_path_table_in_a_config_file_and_select_min(run, tmp_path):
    (tmp_path / "p.toml").write_text('[data]\nsource = "sklearn:iris"\n'
                                     '[path]\nl1_ratio = 0.5\nn_lambdas = 6\nfolds = 3\n'
                                     'select = "min"\n')
    result = run("path", "-c", "p.toml", "--json", "-q", "-o", "p")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["path"]["selected"] == summary["path"]["min"]
    assert summary["path"]["l1_ratio"] == 0.5 and summary["path"]["n_lambdas"] == 6
    lam = summary["path"]["min"]["lambda"]
    assert summary["l1"] == pytest.approx(lam / 2) and summary["l2"] == pytest.approx(lam / 2)
    assert len((tmp_path / "p" / "path.csv").read_text().splitlines()) == 7


@pytest.mark.parametrize("args, code, message", [
    (["--folds", "1"], 2, "path.folds must be >= 2"),
    (["--folds", "200"], 1, "150 rows cannot make 200 folds"),
    (["--l1-ratio", "1.5"], 2, "l1_ratio"),
    (["--set", "data.engine=dask"], 2, "not on Dask"),
    (["--l1", "0.1"], 2, "No such option"),
])
def test_path_refuses_what_it_cannot_do(run, args, code, message):
    result = run("path", "sklearn:iris", *args, "-q", "-o", "p")
    assert result.exit_code == code and message in result.stderr, result.output
    assert "Traceback" not in result.output


def test_a_class_thinner_than_the_folds_gets_a_note(run, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    y = np.where(X[:, 0] > 0, "up", "down")
    y[:2] = "rare"
    rows = (f"{a},{b},{c},{label}\n" for (a, b, c), label in zip(X, y, strict=True))
    (tmp_path / "d.csv").write_text("a,b,c,y\n" + "".join(rows))
    result = run("path", "d.csv", "--n-lambdas", "4", "-o", "p")
    assert result.exit_code == 0, result.output
    assert "fewer rows than the 5 folds in class rare (2)" in result.stderr
    assert "fewer rows" not in run("path", "d.csv", "--n-lambdas", "4", "--folds", "2",
                                   "-o", "q").stderr


def test_softmax_regression_cv_chooses_scikit_learns_c_on_the_same_folds():
    from xent import SoftmaxRegressionCV

    X, y = standardised("iris")
    n_folds = 5
    ours = SoftmaxRegressionCV(lambdas=8, cv=n_folds, random_state=0, path_tol=1e-10,
                               tol=1e-10).fit(X, y)
    seed = np.random.RandomState(0).randint(np.iinfo(np.int32).max)
    folds = fold_ids(y, np.ones(len(y), dtype=bool), n_folds, seed)
    splits = [(np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in range(n_folds)]
    n_train = len(splits[0][0])
    assert all(len(train) == n_train for train, _ in splits)  # so one C is one lambda
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = LogisticRegressionCV(Cs=1.0 / (ours.lambdas_ * n_train), cv=splits,
                                      scoring="neg_log_loss", tol=1e-12,
                                      max_iter=100_000).fit(X, y)
    their_loss = -next(iter(theirs.scores_.values())).mean(axis=0)
    assert np.allclose(ours.cv_loss_, their_loss, rtol=1e-6)
    assert ours.lambda_ == pytest.approx(1.0 / (theirs.C_[0] * n_train))
    assert pytest.approx(1.0 / (ours.lambda_ * len(y))) == ours.C_
    # the kept model is the optimum on all rows at lambda_
    reference = LogisticRegression(C=ours.C_, tol=1e-12, max_iter=100_000).fit(X, y)
    assert np.allclose(ours.predict_proba(X), reference.predict_proba(X), atol=1e-6)
    assert ours.coef_path_.shape == (8, 3, 4) and ours.nonzero_[0] == 12
