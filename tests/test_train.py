"""Training reaches scikit-learn's optimum of the same objective (the correctness oracle)."""

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import fit_arrays, sklearn_optimum, standardised

from xent.errors import ConfigError
from xent.links import get_link
from xent.loss import labels_target, proba_target

L2 = 1e-3


def _setup(name, optimum_cache):
    X, y = standardised(name)
    if name not in optimum_cache:
        optimum_cache[name] = sklearn_optimum(X, y, L2)
    n_classes = len(np.unique(y))
    return X, labels_target(y, n_classes), get_link("auto", n_classes), optimum_cache[name]


@pytest.mark.parametrize("name", ["iris", "wine", "breast_cancer", "digits"])
def test_lbfgs_reaches_sklearn_optimum(name, optimum_cache):
    X, target, link, (ref_params, ref_value) = _setup(name, optimum_cache)
    result = fit_arrays(X, target, link, optimizer="lbfgs", l2=L2, tol=1e-8, max_epochs=2000)
    assert result.converged
    assert abs(result.history.last.objective - ref_value) <= 1e-6 * ref_value
    if link.name == "sigmoid":  # the softmax's parameters are only unique up to a shift
        assert np.allclose(result.params, ref_params, atol=1e-3)


@pytest.mark.parametrize("optimizer", ["gd", "nesterov"])
def test_first_order_defaults_reach_the_optimum_on_iris(optimizer, optimum_cache):
    X, target, link, (_, ref_value) = _setup("iris", optimum_cache)
    result = fit_arrays(X, target, link, optimizer=optimizer, l2=L2)  # lr="auto", default epochs
    assert abs(result.history.last.objective - ref_value) <= 1e-4 * ref_value


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_other_optimizers_get_close(optimizer, optimum_cache):
    X, target, link, (_, ref_value) = _setup("breast_cancer", optimum_cache)
    result = fit_arrays(X, target, link, optimizer=optimizer, l2=L2)
    assert abs(result.history.last.objective - ref_value) <= 1e-4 * ref_value


def test_gd_objective_decreases_every_step_at_lr_auto(optimum_cache):
    X, target, link, _ = _setup("wine", optimum_cache)
    result = fit_arrays(X, target, link, optimizer="gd", l2=L2, max_epochs=300)
    objective = result.history.column("objective")
    assert np.all(np.diff(objective) <= 1e-15)


@pytest.mark.parametrize("optimizer, lr", [("gd", 0.5), ("nesterov", 0.05), ("adam", "auto")])
def test_minibatches_approach_the_optimum(optimizer, lr, optimum_cache):
    X, target, link, (_, ref_value) = _setup("breast_cancer", optimum_cache)
    settings = dict(optimizer=optimizer, l2=L2, batch_size=64, max_epochs=200, lr=lr, seed=3)
    result = fit_arrays(X, target, link, **settings)
    assert result.history.last.objective < ref_value * 1.01
    again = fit_arrays(X, target, link, **settings)
    assert np.array_equal(result.params, again.params)  # same seed, same bytes
    other = fit_arrays(X, target, link, **dict(settings, seed=4))
    assert not np.array_equal(result.params, other.params)


def test_sparse_training_equals_dense():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 30)) * (rng.random((200, 30)) < 0.1)
    y = (X.sum(axis=1) + rng.normal(0, 0.5, 200) > 0).astype(int)
    target, link = labels_target(y, 2), get_link("sigmoid")
    dense = fit_arrays(X, target, link, optimizer="lbfgs", l2=1e-2, tol=1e-10)
    sparse = fit_arrays(sp.csr_matrix(X), target, link, optimizer="lbfgs", l2=1e-2, tol=1e-10)
    assert np.allclose(dense.params, sparse.params, atol=1e-8)


def test_float32_data_reach_the_float64_optimum(optimum_cache):
    X, target, link, (_, ref_value) = _setup("breast_cancer", optimum_cache)
    result = fit_arrays(X.astype(np.float32), target, link, optimizer="lbfgs", l2=L2, tol=1e-7)
    assert abs(result.history.last.objective - ref_value) <= 1e-6 * ref_value


def test_soft_targets_train_towards_them():
    # With soft targets from a known model, the optimum of the unregularised objective is that
    # model: P = softmax(X W*) is matched exactly.
    rng = np.random.default_rng(1)
    X = rng.normal(size=(500, 3))
    true = rng.normal(size=(4, 3))
    logits = X @ true[:-1] + true[-1]
    P = np.exp(logits - logits.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    result = fit_arrays(X, proba_target(P), get_link("softmax"), optimizer="lbfgs", tol=1e-10)
    fitted = result.params - result.params.mean(axis=1, keepdims=True)
    assert np.allclose(fitted, true - true.mean(axis=1, keepdims=True), atol=1e-4)


def test_early_stopping_keeps_the_best_validation_params():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 40))
    y = (X[:, 0] + rng.normal(0, 2, 60) > 0).astype(int)  # few rows, many features: overfits
    Xv = rng.normal(size=(200, 40))
    yv = (Xv[:, 0] + rng.normal(0, 2, 200) > 0).astype(int)
    validation = (Xv, labels_target(yv, 2))
    result = fit_arrays(X, labels_target(y, 2), get_link("sigmoid"), optimizer="gd",
                        max_epochs=3000, lr=0.05, validation=validation, patience=20)
    assert result.stop_reason == "early_stop"
    val = result.history.column("val_loss")
    best = int(np.argmin(val))
    assert result.n_epochs == best + 20
    assert best > 0
    refit = fit_arrays(X, labels_target(y, 2), get_link("sigmoid"), optimizer="gd", max_epochs=best,
                lr=0.05)
    assert np.allclose(result.params, refit.params)


def test_divergence_stops_and_keeps_the_last_finite_params():
    X, y = standardised("breast_cancer")
    result = fit_arrays(X * 1e3, labels_target(y, 2), get_link("sigmoid"), optimizer="gd", lr=1e300,
                 l2=1e-3, max_epochs=500)
    assert result.stop_reason == "diverged"
    assert np.all(np.isfinite(result.params))


def test_history_columns_and_epoch_zero():
    X, y = standardised("iris")
    result = fit_arrays(X, labels_target(y, 3), get_link("softmax"), max_epochs=7)
    assert list(result.history.column("epoch")) == list(range(8))
    assert result.history.records[0].train_loss == pytest.approx(np.log(3))
    assert result.stop_reason == "max_epochs"
    assert result.history.records[0].grad_norm_rel == 1.0


def test_bad_settings_are_config_errors():
    X, y = standardised("iris")
    target, link = labels_target(y, 3), get_link("softmax")
    for kwargs in ({"optimizer": "sgdx"}, {"lr": -1.0}, {"lr": "fast"}, {"batch_size": 0},
                   {"max_epochs": -1}):
        with pytest.raises(ConfigError):
            fit_arrays(X, target, link, **kwargs)


def test_split_in_place_equals_fancy_indexing():
    from xent.preprocess import split_in_place, train_val_split

    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 7))
    labels = rng.integers(0, 3, 1000)
    train_rows, val_rows = train_val_split(labels, 0.3, seed=2)
    expected_train, expected_val = X[train_rows], X[val_rows]
    work = X.copy()
    got_train, got_val = split_in_place(work, train_rows, val_rows)
    assert np.array_equal(got_train, expected_train) and np.array_equal(got_val, expected_val)
    assert np.shares_memory(got_train, work)  # a view: no copy of the training part


def test_stratified_split_is_seeded_and_keeps_every_class():
    from xent.preprocess import train_val_split

    labels = np.array([0] * 50 + [1] * 30 + [2] * 1)
    train, val = train_val_split(labels, 0.2, seed=1)
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(81))
    assert np.bincount(labels[val], minlength=3).tolist() == [10, 6, 0]
    assert 2 in labels[train]
    again = train_val_split(labels, 0.2, seed=1)
    assert np.array_equal(val, again[1])
    assert not np.array_equal(val, train_val_split(labels, 0.2, seed=2)[1])


def test_float32_training_is_confirmed_in_float64(optimum_cache):
    X, target, link, (_, ref_value) = _setup("digits", optimum_cache)
    result = fit_arrays(X.astype(np.float32), target, link, optimizer="lbfgs", l2=L2, tol=1e-6)
    assert result.converged
    # the last record was computed with float64 products: it matches a float64 evaluation
    from xent.loss import evaluate

    exact = evaluate(result.params, X.astype(np.float32).astype(np.float64), target, link, L2)
    assert result.history.last.objective == pytest.approx(exact.objective, rel=1e-12)
    assert abs(exact.objective - ref_value) <= 1e-6 * ref_value


def test_merged_moments_equal_the_whole_columns():
    from xent.preprocess import merge_moments

    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 3)) * [1.0, 1e3, 1e-3] + [5.0, -1e6, 0.0]
    state = (0, np.zeros(3), np.zeros(3))
    for part in np.array_split(X, 7):
        mean = part.mean(axis=0)
        state = merge_moments(state, (len(part), mean, ((part - mean) ** 2).sum(axis=0)))
    count, mean, m2 = state
    assert count == 1000
    assert np.allclose(mean, X.mean(axis=0), rtol=1e-13)
    assert np.allclose(np.sqrt(m2 / count), X.std(axis=0), rtol=1e-10)


def test_each_minibatch_takes_its_rows_in_increasing_order():
    """``sources.sorted_batches``, the one rule of every mini-batch path: the same batches of
    the order, each sorted; the last batch shorter; batches of one row left as they are."""
    from xent.sources import sorted_batches

    order = np.array([3, 1, 2, 0, 5, 4, 6])
    assert sorted_batches(order, 3).tolist() == [1, 2, 3, 0, 4, 5, 6]
    assert sorted_batches(order, 1).tolist() == order.tolist()
    assert sorted_batches(order, 10).tolist() == sorted(order.tolist())
    permutation = np.random.default_rng(0).permutation(1000)
    batches = sorted_batches(permutation, 64)
    for start in range(0, 1000, 64):
        assert batches[start:start + 64].tolist() == sorted(permutation[start:start + 64])
