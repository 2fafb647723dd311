"""The array-API loss and gradient (xent/device.py): on numpy and on array-api-strict it must
equal the numpy reference and the compiled kernels; training through it gives the CPU model;
--device cuda without a GPU is a one-line usage error. The GPU tests themselves are marked
``gpu`` and skipped where CuPy finds no GPU."""

import json

import numpy as np
import pytest

from xent.device import ArrayApiSource, logits, namespace
from xent.errors import ConfigError
from xent.links import get_link
from xent.loss import Objective, gram_product, sums
from xent.targets import labels_target, proba_target
from xent.train import Solver, Stopping, fit


def _gpu_available() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


gpu = pytest.mark.skipif(not _gpu_available(), reason="no CUDA GPU with CuPy here")


def _strict():
    array_api_strict = pytest.importorskip("array_api_strict")
    return array_api_strict


def _data(link, soft, seed=0, n=700, d=9):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, d)
    k = 4 if link == "softmax" else 2
    y = rng.integers(0, k, n)
    if soft:
        P = rng.dirichlet(np.ones(k), n)
        target = proba_target(P)
    else:
        target = labels_target(y, k, 0.1)
    params = rng.normal(size=(d + 1, get_link(link, k).n_outputs(k)))
    weights = rng.random(n) + 0.2
    return X, target, params, weights


@pytest.mark.parametrize("library, resident", [
    ("numpy", True), ("array_api_strict", True), ("array_api_strict", False)])
@pytest.mark.parametrize("link", ["softmax", "sigmoid"])
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("path", ["reference", "kernels"])
def test_array_api_sums_equal_the_numpy_sums(monkeypatch, library, link, soft, path, resident):
    """Loss, gradient, right predictions: the array-API code in blocks of 256 rows against
    ``loss.sums`` (the numpy reference, and the compiled kernels) at 1e-12, with X held in
    the namespace and with X left on the host, moved a block at a time (as when it does not
    fit on the GPU)."""
    monkeypatch.setenv("XENT_KERNELS", "1" if path == "kernels" else "0")
    X, target, params, weights = _data(link, soft)
    xp = namespace("cpu") if library == "numpy" else _strict()
    source = ArrayApiSource.of(X, target, weights, xp, block_rows=256, resident=resident)
    ours = source.sums(params, get_link(link, 4 if link == "softmax" else 2))
    theirs = sums(params, X, target, get_link(link, 4 if link == "softmax" else 2), weights)
    scale = np.abs(theirs.grad_coef_t).max()
    assert abs(ours.loss - theirs.loss) <= 1e-12 * abs(theirs.loss)
    assert np.abs(ours.grad_coef_t - theirs.grad_coef_t).max() <= 1e-12 * scale
    assert np.abs(ours.grad_intercept - theirs.grad_intercept).max() <= 1e-12 * scale
    assert ours.n_correct == theirs.n_correct and ours.n_rows == theirs.n_rows
    assert ours.weight == pytest.approx(theirs.weight, rel=1e-14)
    v = np.random.default_rng(1).standard_normal(X.shape[1] + 1)
    for fit_intercept in (True, False):
        product, total = source.gram_product(v, fit_intercept)
        reference, reference_total = gram_product(X, v, fit_intercept, weights)
        assert np.abs(product - reference).max() <= 1e-12 * np.abs(reference).max()
        assert total == pytest.approx(reference_total, rel=1e-14)


@pytest.mark.parametrize("optimizer, batch_size", [("lbfgs", None), ("adam", 64)])
@pytest.mark.parametrize("library, resident", [
    ("numpy", True), ("numpy", False), ("array_api_strict", True), ("array_api_strict", False)])
def test_training_through_the_array_api_gives_the_cpu_model(optimizer, batch_size, library,
                                                            resident):
    """L-BFGS driven on the host with its evaluations in the array namespace, and Adam's
    mini-batches taken from rows kept there (or on the host, moved a block at a time): the
    parameters of the CPU run. array-api-strict allows only the standard's operations (no
    numpy indices into its arrays, say), as CuPy's arrays need."""
    X, target, _, weights = _data("softmax", False, seed=1)
    objective = Objective(get_link("softmax", 4), l2=1e-3)
    solver = Solver(optimizer, "auto", batch_size, seed=3)
    stopping = Stopping(40, 1e-8)
    xp = namespace("cpu") if library == "numpy" else _strict()
    cpu = fit(ArrayApiSource.of(X, target, weights, xp, block_rows=128, resident=resident),
              objective, solver, stopping)
    from xent.sources import ArraySource

    reference = fit(ArraySource(X, target, weights), objective, solver, stopping)
    assert np.abs(cpu.params - reference.params).max() < 1e-9
    assert cpu.n_epochs == reference.n_epochs


@pytest.mark.parametrize("library", ["numpy", "array_api_strict"])
def test_device_logits_equal_the_model_s(library):
    """Prediction's logits X W + b taken a block at a time in the namespace (what eval and
    predict --device cuda do) against the numpy product, at 1e-12; sparse X is refused."""
    X, _, params, _ = _data("softmax", False, seed=2, n=1000)
    xp = namespace("cpu") if library == "numpy" else _strict()
    ours = logits(X, params[:-1], params[-1], xp, block_rows=300)
    reference = X @ params[:-1] + params[-1]
    assert ours.shape == reference.shape and ours.dtype == np.float64
    assert np.abs(ours - reference).max() <= 1e-12 * np.abs(reference).max()
    import scipy.sparse as sp

    with pytest.raises(ConfigError, match="--device cuda takes dense features"):
        logits(sp.csr_matrix(X), params[:-1], params[-1], xp)


def test_device_cuda_without_a_gpu_is_a_usage_error(run):
    if _gpu_available():
        pytest.skip("this machine has a GPU")
    result = run("train", "sklearn:iris", "--device", "cuda", "-o", "runs/gpu")
    assert result.exit_code == 2
    line = result.stderr.strip().splitlines()
    assert len(line) == 1 and "--device cuda" in line[0] and "--device cpu" in line[0]
    assert run("train", "sklearn:iris", "-q", "-o", "runs/cpu").exit_code == 0
    for command in (["eval", "runs/cpu", "sklearn:iris"], ["predict", "runs/cpu", "iris.csv"]):
        result = run(*command, "--device", "cuda")  # refused before any data are read
        assert result.exit_code == 2
        line = result.stderr.strip().splitlines()
        assert len(line) == 1 and "--device cuda" in line[0] and "--device cpu" in line[0]


@gpu
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cuda_training_equals_the_cpu_optimum(run, tmp_path, dtype):
    """On a GPU: the L-BFGS optimum of digits within 1e-6 of the CPU's; the model file is an
    ordinary one (evaluated on the CPU)."""
    common = ["train", "sklearn:digits", "--optimizer", "lbfgs", "--l2", "1e-3", "--tol",
              "1e-9", "--val-fraction", "0", "--dtype", dtype, "-q", "--json"]
    cpu = json.loads(run(*common, "-o", "runs/cpu").stdout)
    gpu_run = run(*common, "--device", "cuda", "-o", "runs/gpu")
    assert gpu_run.exit_code == 0, gpu_run.output
    cuda = json.loads(gpu_run.stdout)
    assert abs(cuda["objective"] - cpu["objective"]) <= 1e-6 * abs(cpu["objective"])
    assert run("eval", "runs/gpu", "sklearn:digits").exit_code == 0
    on_cpu = json.loads(run("eval", "runs/gpu", "sklearn:digits", "--json").stdout)
    on_gpu = json.loads(run("eval", "runs/gpu", "sklearn:digits", "--json", "--device",
                            "cuda").stdout)
    assert on_gpu["accuracy"] == on_cpu["accuracy"]
    assert abs(on_gpu["log_loss"] - on_cpu["log_loss"]) <= 1e-12 * on_cpu["log_loss"]


@gpu
def test_cuda_sums_equal_the_cpu_sums():
    import cupy  # noqa: F401

    X, target, params, weights = _data("softmax", False, seed=4, n=5000, d=30)
    link = get_link("softmax", 4)
    ours = ArrayApiSource.of(X, target, weights, namespace("cuda")).sums(params, link)
    theirs = sums(params, X, target, link, weights)
    assert np.abs(ours.grad_coef_t - theirs.grad_coef_t).max() <= 1e-10 * np.abs(
        theirs.grad_coef_t).max()


@gpu
def test_cuda_estimator_predicts_as_on_the_cpu():
    """SoftmaxRegression(device="cuda"): fitted on the GPU, its probabilities taken there
    equal those the same coefficients give on the CPU."""
    from sklearn.datasets import load_digits

    from xent.estimator import SoftmaxRegression

    X, y = load_digits(return_X_y=True)
    model = SoftmaxRegression(device="cuda", max_epochs=50).fit(X, y)
    on_gpu = model.predict_proba(X)
    on_cpu = model.set_params(device="cpu").predict_proba(X)
    assert np.abs(on_gpu - on_cpu).max() <= 1e-12


def test_embeddings_from_numpy_files(run, tmp_path):
    """.npz (X, y), .npy with --labels, .npy with the labels as its last column: each trains
    the model of the same data given as sklearn:wine; eval and predict read them too."""
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True)
    np.savez(tmp_path / "wine.npz", X=X, y=y)
    np.save(tmp_path / "features.npy", X.astype(np.float32))
    np.save(tmp_path / "labels.npy", y)
    np.save(tmp_path / "both.npy", np.hstack([X, y[:, None]]))
    common = ["--optimizer", "lbfgs", "--l2", "1e-3", "-q", "--json"]
    reference = json.loads(run("train", "sklearn:wine", *common, "-o", "runs/ref").stdout)
    for name, extra in (("wine.npz", []), ("both.npy", []),
                        ("features.npy", ["--labels", "labels.npy"])):
        result = run("train", name, *common, *extra, "-o", f"runs/{name}")
        assert result.exit_code == 0, result.output
        objective = json.loads(result.stdout)["objective"]
        # features.npy is float32 on disk: its values are rounded, so the optimum moves a little
        tol = 1e-5 if name == "features.npy" else 1e-10
        assert objective == pytest.approx(reference["objective"], rel=tol)
    result = run("eval", "runs/wine.npz", "wine.npz", "--json")
    assert json.loads(result.stdout)["n_samples"] == len(y)
    result = run("predict", "runs/both.npy", "features.npy")
    assert result.exit_code == 0 and len(result.stdout.strip().splitlines()) == len(y) + 1


def test_float32_embeddings_stay_float32_until_the_run_s_dtype(run, tmp_path):
    """A float32 .npy is held as float32 (half the memory), not widened when read; a float64
    run on it is the run on the same values widened first (statistics summed in float64),
    to 1e-12."""
    from xent.data import load_table

    rng = np.random.default_rng(5)
    X = (rng.normal(size=(3000, 12)) * rng.uniform(0.5, 4, 12) + 3).astype(np.float32)
    y = (X[:, :3] @ rng.normal(size=(3, 3))).argmax(axis=1)
    np.save(tmp_path / "x32.npy", X)
    np.save(tmp_path / "x64.npy", X.astype(np.float64))
    np.save(tmp_path / "y.npy", y)
    assert load_table(str(tmp_path / "x32.npy"), labels=str(tmp_path / "y.npy")).numeric.dtype \
        == np.float32
    common = ["--labels", "y.npy", "--optimizer", "lbfgs", "--l2", "1e-3", "-q", "--json"]
    wide = json.loads(run("train", "x64.npy", *common, "-o", "runs/64").stdout)
    narrow = json.loads(run("train", "x32.npy", *common, "-o", "runs/32").stdout)
    assert narrow["objective"] == pytest.approx(wide["objective"], rel=1e-12)
    single = run("train", "x32.npy", *common, "--dtype", "float32", "-o", "runs/f32")
    assert single.exit_code == 0
    assert json.loads(single.stdout)["objective"] == pytest.approx(wide["objective"], rel=1e-6)


@pytest.mark.parametrize("args, code, message", [
    (["noise.npy"], 1, "the last column is not labels"),
    (["noise.npy", "--stream"], 2, "numpy files are memory-mapped and read whole"),
    (["sklearn:iris", "--labels", "noise.npy"], 2, "--labels: for a .npy of features"),
])
def test_numpy_mistakes_are_one_line_errors(run, tmp_path, args, code, message):
    np.save(tmp_path / "noise.npy", np.random.default_rng(0).normal(size=(50, 4)))
    result = run("train", *args, "-o", "runs/x")
    assert result.exit_code == code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
