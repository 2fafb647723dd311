"""The L1 penalty (#17, first part): proximal gradient steps (ISTA, FISTA) on the same
X^T(Q - P), against scikit-learn's saga optimum of the same objective and the optimality
(KKT) conditions."""

import json
import warnings

import numpy as np
import pytest
from conftest import fit_arrays, standardised
from sklearn.linear_model import LogisticRegression

from xent.links import get_link
from xent.loss import Objective, labels_target, loss_and_grad
from xent.sources import ArraySource

L1 = 0.01


def _saga(X, y, l1):
    """scikit-learn's optimum of mean CE + l1 ||W||_1 (C = 1 / (l1 n)), as xent's params."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = LogisticRegression(l1_ratio=1.0, C=1.0 / (l1 * len(y)), solver="saga",
                                 tol=1e-8, max_iter=200_000).fit(X, y)
    return np.vstack([clf.coef_.T, clf.intercept_[None, :]])


@pytest.mark.parametrize("name, optimizer", [("breast_cancer", "nesterov"), ("iris", "nesterov"),
                                             ("iris", "gd"), ("breast_cancer", "lbfgs"),
                                             ("wine", "lbfgs")])
def test_l1_reaches_sagas_optimum_with_its_zeros(name, optimizer):
    X, y = standardised(name)
    n_classes = len(np.unique(y))
    link, target = get_link("auto", n_classes), labels_target(y, n_classes)
    objective = Objective(link, 0.0, True, L1)
    reference = _saga(X, y, L1)
    result = fit_arrays(X, target, link, l1=L1, optimizer=optimizer, tol=1e-9,
                        max_epochs=200_000)
    # L-BFGS-B (on W = U - V) may stall on rounding short of 1e-9; the optimum is checked below
    assert result.converged or (optimizer == "lbfgs" and result.stop_reason == "stalled")
    ours = objective.evaluate(result.params, ArraySource(X, target)).objective
    theirs = objective.evaluate(reference, ArraySource(X, target)).objective
    assert ours == pytest.approx(theirs, rel=1e-6) and ours <= theirs + 1e-9
    zeros = result.params[:-1] == 0  # exact zeros from the soft-threshold
    assert zeros.any() and np.array_equal(zeros, np.abs(reference[:-1]) < 1e-6)


@pytest.mark.parametrize("optimizer", ["nesterov", "lbfgs"])
def test_the_optimum_meets_the_kkt_conditions(optimizer):
    X, y = standardised("wine")
    link, target = get_link("softmax"), labels_target(y, 3)
    result = fit_arrays(X, target, link, l1=0.02, optimizer=optimizer, tol=1e-10,
                        max_epochs=200_000)
    _, grad = loss_and_grad(result.params, X, target, link)
    W, g = result.params[:-1], grad[:-1]
    assert np.all(np.abs(g[W == 0]) <= 0.02 * (1 + 1e-6))  # |g_j| <= l1 where w_j = 0
    assert np.allclose(g[W != 0], -0.02 * np.sign(W[W != 0]), atol=1e-8)
    assert np.allclose(grad[-1], 0.0, atol=1e-8)  # the bias is not penalised


@pytest.mark.parametrize("optimizer", ["nesterov", "gd", "lbfgs"])
def test_a_start_already_at_the_l1_optimum_stops_at_once(optimizer):
    """On balanced iris W = 0, b = 0 is the optimum once l1 >= max |X^T(Q - P)|_j / n: the
    subgradient there is 0, and tol must still be reachable (it is relative to the smooth
    gradient, not to that 0)."""
    X, y = standardised("iris")
    link, target = get_link("softmax"), labels_target(y, 3)
    _, grad = loss_and_grad(np.zeros((5, 3)), X, target, link)
    l1 = 1.01 * np.abs(grad[:-1]).max()
    result = fit_arrays(X, target, link, l1=l1, optimizer=optimizer, tol=1e-8)
    assert result.stop_reason == "converged" and len(result.history) <= 2
    assert np.count_nonzero(result.params[:-1]) == 0


def test_l1_from_the_command_line(run):
    result = run("train", "sklearn:breast_cancer", "--l1", str(L1), "--l2", "0",
                 "--val-fraction", "0", "--json", "-q", "-o", "r")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    X, y = standardised("breast_cancer")
    reference = _saga(X, y, L1)
    assert summary["l1"] == L1 and summary["converged"]
    assert summary["nonzero_weights"] == [int(np.count_nonzero(np.abs(reference[:-1]) > 1e-6))]
    for args, message in ((["--optimizer", "adam"], "proximal"),
                          (["--optimizer", "momentum"], "proximal"),
                          (["--batch-size", "32"], "mini-batches needs the optimizer gd")):
        refused = run("train", "sklearn:iris", "--l1", "0.01", *args, "-q", "-o", "x")
        assert refused.exit_code == 2 and message in refused.stderr, args


def test_mini_batch_l1_reaches_the_optimum_with_its_zeros():
    """SGD with the cumulative penalty, at the constant step 1/L: near the full-batch optimum
    after 200 epochs of 16-row batches, with most of its zeros exact (a subgradient step
    would leave none), and every weight that matters with the optimum's sign."""
    X, y = standardised("breast_cancer")
    link, target = get_link("sigmoid"), labels_target(y, 2)
    objective, source = Objective(link, 0.0, True, L1), ArraySource(X, target)
    reference = _saga(X, y, L1)
    result = fit_arrays(X, target, link, l1=L1, optimizer="gd", batch_size=16, max_epochs=200,
                        tol=0.0)
    ours, best = (objective.evaluate(p, source).objective for p in (result.params, reference))
    assert 0 <= (ours - best) / best < 1e-2
    W, W_ref = result.params[:-1], reference[:-1]
    zeros = np.abs(W_ref) < 1e-6
    assert np.mean(W[zeros] == 0) >= 0.8 and np.count_nonzero(W[~zeros] == 0) <= 1
    large = np.abs(W_ref) > 0.05
    assert np.array_equal(np.sign(W[large]), np.sign(W_ref[large]))


def test_the_estimator_takes_l1():
    from xent import SoftmaxRegression

    X, y = standardised("iris")
    clf = SoftmaxRegression(l1=L1, l2=0.0, tol=1e-9, max_epochs=100_000).fit(X, y)
    reference = _saga(X, y, L1)
    assert np.array_equal(clf.coef_.T == 0, np.abs(reference[:-1]) < 1e-6)
