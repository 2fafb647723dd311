"""Model files that never run code, and the scikit-learn estimator."""

import io
import json
import zipfile

import numpy as np
import pytest
from conftest import sklearn_optimum, standardised
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from xent import SoftmaxRegression
from xent.data import FeatureEncoder
from xent.errors import ModelFileError
from xent.model import FORMAT_VERSION, Model
from xent.preprocess import fit_standardizer


def _model():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 3)) * [1.0, 10.0, 0.1]
    return Model(
        rng.normal(size=(3, 3)), rng.normal(size=3), ["a", "b", "é"], "softmax",
        ["x", "y", "z"], fit_standardizer(X), FeatureEncoder(("x", "y", "z")),
        {"target": "label"},
    ), X


def test_save_and_load_give_the_same_predictions(tmp_path):
    model, X = _model()
    model.save(tmp_path / "m.npz")
    loaded = Model.load(tmp_path / "m.npz")
    assert loaded.classes == ["a", "b", "é"]
    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert list(loaded.predict(X)) == list(model.predict(X))
    assert loaded.metadata == {"target": "label"}
    assert np.allclose(loaded.predict_proba(X).sum(axis=1), 1.0)


def _rewrite(path, out, **changes):
    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    header = json.loads(str(arrays["header"]))
    header.update(changes)
    arrays["header"] = np.array(json.dumps(header))
    np.savez(out, **arrays)


def test_refuses_newer_version_and_other_formats(tmp_path):
    model, _ = _model()
    model.save(tmp_path / "m.npz")
    _rewrite(tmp_path / "m.npz", tmp_path / "newer.npz", version=FORMAT_VERSION + 1)
    with pytest.raises(ModelFileError, match="newer xent"):
        Model.load(tmp_path / "newer.npz")
    _rewrite(tmp_path / "m.npz", tmp_path / "other.npz", format="something-else")
    with pytest.raises(ModelFileError, match="not a xent model"):
        Model.load(tmp_path / "other.npz")


def test_refuses_pickles_corrupt_and_truncated_files(tmp_path):
    np.savez(tmp_path / "pickled.npz", header=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ModelFileError, match="pickle"):
        Model.load(tmp_path / "pickled.npz")
    model, _ = _model()
    model.save(tmp_path / "m.npz")
    data = (tmp_path / "m.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.npz").write_bytes(b"\x00\xff" * 100)
    for name in ("truncated.npz", "garbage.npz", "missing.npz"):
        with pytest.raises(ModelFileError):
            Model.load(tmp_path / name)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("coef.npy", b"not an array")
    (tmp_path / "zip.npz").write_bytes(buffer.getvalue())
    with pytest.raises(ModelFileError):
        Model.load(tmp_path / "zip.npz")


def test_estimator_passes_check_estimator():
    check_estimator(SoftmaxRegression())


@pytest.mark.parametrize("name", ["iris", "breast_cancer"])
def test_estimator_matches_logistic_regression(name):
    X, y = standardised(name)
    l2 = 1e-3
    ref_params, _ = sklearn_optimum(X, y, l2)
    model = SoftmaxRegression(l2=l2, optimizer="lbfgs", tol=1e-9).fit(X, y)
    assert model.coef_.shape == ((1,) if name == "breast_cancer" else (3,)) + (X.shape[1],)
    ref = SoftmaxRegression()
    ref.classes_, ref.link_ = model.classes_, model.link_
    ref.coef_, ref.intercept_ = ref_params[:-1].T, ref_params[-1]
    ref.n_features_in_ = X.shape[1]
    assert np.allclose(model.predict_proba(X), ref.predict_proba(X), atol=1e-5)
    assert model.n_iter_ > 0 and len(model.history_) == model.n_iter_ + 1


def test_fortran_ordered_and_dataframe_inputs_are_summed_by_the_kernels(monkeypatch):
    """pandas' ``to_numpy()`` of a frame of floats is Fortran-ordered, and the kernels read
    rows: the estimator takes such X (and a DataFrame) in C order, so that the kernels sum
    it, and the model is the one a C-ordered X gives."""
    import pandas as pd

    from xent import kernels

    monkeypatch.setenv("XENT_KERNELS", "1")  # the kernels however few the rows
    calls = []
    run_sums = kernels.run_sums

    def counted(*args, **kwargs):
        calls.append(1)
        return run_sums(*args, **kwargs)

    monkeypatch.setattr(kernels, "run_sums", counted)
    X, y = standardised("wine")
    frame = pd.DataFrame(X)
    assert frame.to_numpy().flags.f_contiguous and not frame.to_numpy().flags.c_contiguous
    models = {}
    for name, data in (("C", X), ("Fortran", np.asfortranarray(X)), ("DataFrame", frame)):
        calls.clear()
        models[name] = SoftmaxRegression(optimizer="lbfgs", max_epochs=30).fit(data, y)
        assert len(calls) >= models[name].n_iter_ > 0, name
    for name in ("Fortran", "DataFrame"):
        assert np.array_equal(models[name].coef_, models["C"].coef_)
        assert np.array_equal(models[name].intercept_, models["C"].intercept_)


def test_estimator_in_pipeline_and_grid_search():
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), SoftmaxRegression(optimizer="lbfgs"))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.mean() > 0.9
    search = GridSearchCV(pipe, {"softmaxregression__l2": [1e-4, 1e-1]}, cv=3).fit(X, y)
    assert search.best_score_ > 0.9
    assert search.predict(X).shape == y.shape


def test_estimator_keeps_string_labels_and_soft_options():
    X, y = standardised("iris")
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    model = SoftmaxRegression(optimizer="lbfgs", label_smoothing=0.1,
                              class_weight="balanced").fit(X, names)
    assert set(model.predict(X)) <= set(names)
    assert (model.predict(X) == names).mean() > 0.9
    # smoothing keeps probabilities away from 0 and 1
    assert model.predict_proba(X).max() < 0.99
