"""Training on the features present in the training rows (``xent.narrowing``): the same
problem as training on every feature, held to a run on the present columns sliced out by
scipy, and to the dense formula."""

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import fit_arrays

from xent.errors import ConfigError
from xent.links import get_link
from xent.loss import Objective, labels_target
from xent.narrowing import Narrowing, on_columns
from xent.report import load_checkpoint, save_checkpoint
from xent.sources import ArraySource


def _sparse_problem(seed=0, n=300, d=2000, present=150, k=3):
    """CSR rows whose entries fall in ``present`` of ``d`` columns (hashed text's shape)."""
    rng = np.random.default_rng(seed)
    columns = np.sort(rng.choice(d, present, replace=False))
    dense = np.zeros((n, d))
    for i in range(n):
        chosen = rng.choice(columns, 8, replace=False)
        dense[i, chosen] = rng.poisson(2.0, 8) + 1.0
    y = rng.integers(0, k, n)
    return sp.csr_matrix(dense), y, columns


@pytest.mark.parametrize("optimizer, batch_size, l1", [
    ("gd", None, 0.0), ("lbfgs", None, 0.0), ("nesterov", None, 0.01), ("adam", 16, 0.0),
    ("adagrad", 16, 0.0), ("gd", 16, 0.0), ("gd", 16, 0.01)])
def test_a_narrowed_run_is_the_run_on_the_present_columns(optimizer, batch_size, l1):
    """Narrowed to the 150 present of 2000 features, every optimiser gives the parameters and
    records of a run on scipy's slice of those columns (to 1e-12), zeros elsewhere."""
    X, y, present = _sparse_problem()
    link = get_link("softmax", 3)
    target = labels_target(y, 3)
    settings = dict(optimizer=optimizer, batch_size=batch_size, l2=1e-3, l1=l1, max_epochs=15,
                    tol=0.0, seed=1)
    assert Narrowing.of(ArraySource(X, target), None, np.zeros((2001, 3))) is not None
    whole = fit_arrays(X, target, link, **settings)
    sliced = fit_arrays(X[:, present], target, link, **settings)
    absent = np.setdiff1d(np.arange(2000), present)
    assert whole.params.shape == (2001, 3)
    assert np.all(whole.params[absent] == 0.0)
    assert np.allclose(whole.params[present], sliced.params[:-1], rtol=0, atol=1e-12)
    assert np.allclose(whole.params[-1], sliced.params[-1], rtol=0, atol=1e-12)
    ours = [(r.objective, r.grad_norm) for r in whole.history.records]
    theirs = [(r.objective, r.grad_norm) for r in sliced.history.records]
    assert np.allclose(ours, theirs, rtol=1e-12, atol=0)


def test_the_validation_rows_keep_their_features_absent_from_training():
    """Validation rows with features no training row has: their weights are zero, so the
    validation loss of the narrowed run is the loss of the widened parameters on the whole
    validation rows."""
    X, y, present = _sparse_problem(seed=2)
    rng = np.random.default_rng(3)
    X_val = sp.random(60, 2000, density=0.01, format="csr", random_state=4) * 3.0
    y_val = rng.integers(0, 3, 60)
    link = get_link("softmax", 3)
    result = fit_arrays(X, labels_target(y, 3), link, optimizer="gd", l2=1e-3, max_epochs=5,
                        tol=0.0, validation=(X_val, labels_target(y_val, 3)))
    expected = Objective(link).evaluate(result.params,
                                        ArraySource(X_val, labels_target(y_val, 3)))
    assert result.history.last.val_loss == pytest.approx(expected.data_loss, rel=1e-12)


def test_a_start_that_is_not_zero_outside_the_present_features_is_not_narrowed():
    """A weight of an absent feature that starts away from zero decays under L2: such a start
    is trained on every feature, as the dense rows are."""
    X, y, present = _sparse_problem(seed=5)
    link, target = get_link("softmax", 3), labels_target(y, 3)
    start = np.random.default_rng(6).normal(size=(2001, 3))
    settings = dict(optimizer="gd", l2=0.1, max_epochs=4, tol=0.0, init_params=start)
    assert Narrowing.of(ArraySource(X, target), None, start) is None
    sparse_run = fit_arrays(X, target, link, **settings)
    dense_run = fit_arrays(X.toarray(), target, link, **settings)
    assert np.allclose(sparse_run.params, dense_run.params, rtol=0, atol=1e-12)


@pytest.mark.parametrize("optimizer, batch_size", [("adam", 16), ("nesterov", None)])
def test_a_narrowed_run_resumes_from_its_checkpoint_file(tmp_path, optimizer, batch_size):
    """A narrowed run's checkpoint holds its narrowed arrays and names their features; it goes
    through a file, and a resume from it, or from it widened to every feature (a checkpoint
    of a run that was not narrowed), is the run never stopped."""
    X, y, _ = _sparse_problem(seed=7)
    link, target = get_link("softmax", 3), labels_target(y, 3)
    settings = dict(optimizer=optimizer, batch_size=batch_size, l2=1e-3, max_epochs=12,
                    tol=0.0, seed=2)
    whole = fit_arrays(X, target, link, **settings)
    saved = []
    fit_arrays(X, target, link, **{**settings, "max_epochs": 5}, checkpoint=saved.append)
    assert saved[-1].columns is not None and saved[-1].params.shape == (151, 3)
    save_checkpoint(tmp_path / "c.npz", saved[-1])
    loaded = load_checkpoint(tmp_path / "c.npz")
    assert np.array_equal(loaded.columns, saved[-1].columns)
    widened = Narrowing(loaded.columns, 2000).widen_checkpoint(loaded)
    assert widened.columns is None and widened.params.shape == (2001, 3)
    for checkpoint in (loaded, widened):
        resumed = fit_arrays(X, target, link, **settings, resume=checkpoint)
        assert np.array_equal(resumed.params, whole.params)
    with pytest.raises(ConfigError, match="cover 150 of its features"):
        fit_arrays(X[:, :100], target, link, **settings, resume=loaded)


def test_on_columns_is_scipys_slice():
    """Rows on some columns, renumbered: entries of the others left out, empty rows (last
    ones too) kept; the values and row pointers shared where nothing is left out."""
    X = sp.vstack([sp.random(40, 30, density=0.2, format="csr", random_state=8),
                   sp.csr_matrix((3, 30))]).tocsr()
    kept = np.array([0, 2, 3, 11, 17, 29])
    assert np.array_equal(on_columns(X, kept).toarray(), X.toarray()[:, kept])
    present = np.flatnonzero(np.bincount(X.indices, minlength=30))
    narrowed = on_columns(X, present)
    assert np.array_equal(narrowed.toarray(), X.toarray()[:, present])
    assert np.shares_memory(narrowed.data, X.data) and narrowed.indices.dtype == X.indices.dtype
    assert isinstance(on_columns(sp.csr_array(X), kept), sp.csr_array)
    longer = sp.csr_matrix((np.append(X.data, 7.0), np.append(X.indices, 99), X.indptr),
                           shape=X.shape)  # arrays past indptr[-1], which scipy allows
    assert np.array_equal(on_columns(longer, kept).toarray(), X.toarray()[:, kept])


def test_a_narrowing_maps_both_shapes_of_the_optimisers_arrays():
    narrowing = Narrowing(np.array([1, 4]), 6)
    params = np.arange(14.0).reshape(7, 2)
    assert np.array_equal(narrowing.narrow(params), params[[1, 4, 6]])
    assert np.array_equal(narrowing.narrow(params[:-1]), params[[1, 4]])
    widened = narrowing.widen(narrowing.narrow(params))
    assert np.array_equal(widened[[1, 4, 6]], params[[1, 4, 6]])
    assert not widened[[0, 2, 3, 5]].any()
    with pytest.raises(ValueError, match="not shaped like the parameters"):
        narrowing.narrow(np.zeros((3, 2)))
    checkpoint_state = {"m": params, "applied": params[:-1], "lr": 0.5}
    mapped = narrowing._map_state(checkpoint_state, narrowing.narrow, 6)
    assert mapped["m"].shape == (3, 2) and mapped["applied"].shape == (2, 2)
    assert mapped["lr"] == 0.5
