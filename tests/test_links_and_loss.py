"""The math of SEEDS.md: cross-entropy values, the gradient X^T(Q - P), stability."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from xent.errors import DataError
from xent.links import SIGMOID, SOFTMAX, get_link, log_softmax, softmax
from xent.loss import (
    Objective,
    binary_cross_entropy,
    cross_entropy,
    evaluate,
    labels_target,
    lipschitz_bound,
    loss_and_grad,
    proba_target,
    row_weights,
)

# SEEDS.md, "Worked examples": (target P, prediction Q, cross-entropy)
SEED_VECTORS = [
    ([1, 0, 0, 0, 0], [0.1, 0.5, 0.1, 0.1, 0.2], 2.302585),
    ([1, 0, 0, 0, 0], [0.1, 0.6, 0.1, 0.1, 0.1], 2.302585),
    ([0, 1, 0], [0.1, 0.8, 0.1], 0.223144),
    ([0, 1, 0], [0.7, 0.1, 0.2], 2.302585),
    ([0, 1, 0], [0.25, 0.67, 0.08], 0.400478),
    ([1, 0], [0.74, 0.26], 0.301105),
]


@pytest.mark.parametrize("target, pred, expected", SEED_VECTORS)
def test_seed_vectors(target, pred, expected):
    assert cross_entropy(target, pred) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("target, pred, expected", SEED_VECTORS)
def test_seed_vectors_through_the_training_loss(target, pred, expected):
    # The same numbers via logits = log Q, the softmax link and the blocked training loss.
    logits = np.log(np.asarray(pred, dtype=float))[None, :]
    k = logits.shape[1]
    X = np.zeros((1, 1))
    params = np.vstack([np.zeros((1, k)), logits])  # W = 0, b = log Q
    label = labels_target([int(np.argmax(target))], k)
    assert evaluate(params, X, label, SOFTMAX).data_loss == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("p, q, expected", [(0, 0.26, 0.301105), (1, 0.6, 0.510826)])
def test_binary_seed_vectors(p, q, expected):
    assert binary_cross_entropy(p, q) == pytest.approx(expected, abs=1e-6)
    # and through the sigmoid link, with logit log(q / (1 - q))
    params = np.array([[0.0], [np.log(q / (1 - q))]])
    loss = evaluate(params, np.zeros((1, 1)), labels_target([p], 2), SIGMOID).data_loss
    assert loss == pytest.approx(expected, abs=1e-6)


def test_one_hot_loss_ignores_how_wrong_classes_share():
    assert cross_entropy([1, 0, 0, 0, 0], [0.1, 0.5, 0.1, 0.1, 0.2]) == pytest.approx(
        cross_entropy([1, 0, 0, 0, 0], [0.1, 0.6, 0.1, 0.1, 0.1]), abs=1e-12
    )


def test_zero_prediction_outside_the_target_is_not_log_zero():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cross_entropy([0, 1], [0.0, 1.0]) == 0.0
        assert cross_entropy([1, 0], [0.0, 1.0]) == np.inf


@pytest.mark.parametrize("scale", [1.0, 1e2, 1e4])
def test_links_are_stable_at_huge_logits(scale):
    logits = scale * np.array([[1.0, -1.0, 0.5], [-1.0, -1.0, -1.0], [0.0, 1.0, -1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any overflow / divide warning fails the test
        q = softmax(logits)
        log_q = log_softmax(logits)
        for link in (SIGMOID, SOFTMAX):
            z = logits[:, :1] if link is SIGMOID else logits
            proba = link.proba(z)
            assert np.allclose(proba.sum(axis=1), 1.0)
            assert np.all((proba >= 0) & (proba <= 1))
            assert np.all(np.isfinite(link.log_proba(z)))
    assert np.allclose(q.sum(axis=1), 1.0)
    assert np.all(np.isfinite(log_q))
    # log-softmax equals log(softmax) where the latter is representable
    assert np.allclose(log_q[q > 1e-300], np.log(q[q > 1e-300]))


def test_training_loss_is_finite_at_huge_logits():
    X = np.array([[1.0], [-1.0]])
    for link, k in ((SIGMOID, 1), (SOFTMAX, 2)):
        params = np.vstack([np.full((1, k), 1e4) * np.arange(1, k + 1), np.zeros((1, k))])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            result = evaluate(params, X, labels_target([0, 0], 2), link)
        # row 1 is confidently right (loss ~0), row 0 confidently wrong (loss ~1e4)
        assert np.isfinite(result.objective)
        assert result.data_loss == pytest.approx(1e4 / 2, rel=1e-9)


def test_softmax_of_two_equals_sigmoid_of_the_difference():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 2)) * 5
    diff = (logits[:, 1] - logits[:, 0])[:, None]
    assert np.allclose(SOFTMAX.proba(logits), SIGMOID.proba(diff), atol=1e-14)
    X = rng.normal(size=(50, 3))
    labels = labels_target(rng.integers(0, 2, 50), 2)
    w2 = rng.normal(size=(4, 2))
    w1 = (w2[:, 1] - w2[:, 0])[:, None]
    assert evaluate(w2, X, labels, SOFTMAX).data_loss == pytest.approx(
        evaluate(w1, X, labels, SIGMOID).data_loss, rel=1e-12
    )


def _problem(link_name, soft, weighted, smoothing, seed=0, n=40, d=5, k=3):
    rng = np.random.default_rng(seed)
    n_classes = 2 if link_name == "sigmoid" else k
    link = get_link(link_name, n_classes)
    X = rng.normal(size=(n, d))
    if soft:
        P = rng.dirichlet(np.ones(n_classes), size=n)
        target = proba_target(P)
    else:
        target = labels_target(rng.integers(0, n_classes, n), n_classes, smoothing)
    weights = rng.uniform(0.1, 3.0, n) if weighted else None
    params = rng.normal(size=(d + 1, link.n_outputs(n_classes)))
    return X, target, link, weights, params


def _numeric_grad(params, X, target, link, l2, weights, fit_intercept=True, h=1e-6):
    grad = np.zeros_like(params)
    for index in np.ndindex(params.shape):
        if not fit_intercept and index[0] == params.shape[0] - 1:
            continue
        up, down = params.copy(), params.copy()
        up[index] += h
        down[index] -= h
        f_up = loss_and_grad(up, X, target, link, l2, weights, fit_intercept=fit_intercept)[0]
        f_down = loss_and_grad(down, X, target, link, l2, weights, fit_intercept=fit_intercept)[0]
        grad[index] = (f_up - f_down) / (2 * h)
    return grad


@pytest.mark.parametrize("link_name", ["sigmoid", "softmax"])
@pytest.mark.parametrize("l2", [0.0, 0.3])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("kind", ["hard", "soft", "smoothed"])
def test_gradient_matches_finite_differences(link_name, l2, weighted, kind):
    X, target, link, weights, params = _problem(
        link_name, kind == "soft", weighted, 0.1 if kind == "smoothed" else 0.0
    )
    _, grad = loss_and_grad(params, X, target, link, l2, weights)
    numeric = _numeric_grad(params, X, target, link, l2, weights)
    assert np.allclose(grad, numeric, rtol=1e-6, atol=1e-8)


def test_gradient_without_intercept_has_no_bias_component():
    X, target, link, _, params = _problem("softmax", False, False, 0.0)
    _, grad = loss_and_grad(params, X, target, link, 0.1, None, fit_intercept=False)
    assert np.all(grad[-1] == 0)
    numeric = _numeric_grad(params, X, target, link, 0.1, None, fit_intercept=False)
    assert np.allclose(grad, numeric, rtol=1e-6, atol=1e-8)


def test_gradient_is_x_transpose_q_minus_p_written_out():
    # The formula of SEEDS.md with the dense P, computed the obvious way.
    X, target, link, weights, params = _problem("softmax", False, True, 0.1)
    l2 = 0.2
    Z = X @ params[:-1] + params[-1]
    Q = softmax(Z)
    P = target.dense()
    R = weights[:, None] * (Q - P) / weights.sum()
    expected_W = X.T @ R + l2 * params[:-1]
    expected_b = R.sum(axis=0)
    _, grad = loss_and_grad(params, X, target, link, l2, weights)
    assert np.allclose(grad[:-1], expected_W, atol=1e-13)
    assert np.allclose(grad[-1], expected_b, atol=1e-13)
    expected_loss = -np.sum(weights[:, None] * P * np.log(Q)) / weights.sum()
    expected_loss += l2 / 2 * np.sum(params[:-1] ** 2)
    assert loss_and_grad(params, X, target, link, l2, weights)[0] == pytest.approx(expected_loss)


@pytest.mark.parametrize("link_name", ["sigmoid", "softmax"])
def test_blocks_sparse_and_float32_agree_with_one_dense_pass(link_name):
    X, target, link, weights, params = _problem(link_name, False, True, 0.0, n=1000, d=20)
    X[X < 0.5] = 0.0  # make it sparse-ish
    whole = evaluate(params, X, target, link, 0.01, weights, block_rows=10**6)
    for kwargs in ({"block_rows": 7}, {"block_rows": 64}):
        part = evaluate(params, X, target, link, 0.01, weights, **kwargs)
        assert part.objective == pytest.approx(whole.objective, rel=1e-12)
        assert np.allclose(part.grad, whole.grad, rtol=1e-11, atol=1e-14)
    sparse = evaluate(params, sp.csr_matrix(X), target, link, 0.01, weights, block_rows=33)
    assert sparse.objective == pytest.approx(whole.objective, rel=1e-12)
    assert np.allclose(sparse.grad, whole.grad, rtol=1e-11, atol=1e-14)
    single = evaluate(params, X.astype(np.float32), target, link, 0.01, weights)
    assert single.grad.dtype == np.float64
    assert single.objective == pytest.approx(whole.objective, rel=1e-5)
    assert np.allclose(single.grad, whole.grad, rtol=1e-4, atol=1e-6)


def test_accuracy_counts_rows_predicted_right():
    X = np.array([[1.0], [2.0], [-1.0], [-3.0]])
    params = np.array([[1.0], [0.0]])
    target = labels_target([1, 0, 0, 0], 2)
    assert evaluate(params, X, target, SIGMOID).accuracy == 0.75


def test_class_weights_equal_sample_weights_of_their_class():
    target = labels_target([0, 1, 1, 2], 3)
    assert np.allclose(row_weights(target, None, [2.0, 1.0, 5.0]), [2, 1, 1, 5])
    assert np.allclose(row_weights(target, [1, 2, 3, 4], [2.0, 1.0, 5.0]), [2, 2, 3, 20])
    assert row_weights(target) is None


def test_integer_weights_equal_repeated_rows():
    X, target, link, _, params = _problem("softmax", False, False, 0.0, n=30)
    counts = np.random.default_rng(1).integers(0, 4, 30)
    counts[0] = 1
    repeated = np.repeat(np.arange(30), counts)
    weighted = loss_and_grad(params, X, target, link, 0.1, counts.astype(float))
    copied = loss_and_grad(params, X[repeated], target.take(repeated), link, 0.1, None)
    assert weighted[0] == pytest.approx(copied[0], rel=1e-12)
    assert np.allclose(weighted[1], copied[1], rtol=1e-10)


@pytest.mark.parametrize(
    "bad", [[[0.5, 0.6]], [[-0.1, 1.1]], [[np.nan, 1.0]], [[1.0]]]
)
def test_soft_targets_must_be_distributions(bad):
    with pytest.raises(DataError):
        proba_target(bad)


def test_bad_labels_are_refused():
    with pytest.raises(DataError):
        labels_target([0, 3], 3)
    with pytest.raises(DataError):
        labels_target([0.5, 1.0], 2)
    with pytest.raises(DataError):
        labels_target([0, 1], 2, smoothing=1.0)


@pytest.mark.parametrize("link_name", ["sigmoid", "softmax"])
def test_lipschitz_bound_bounds_the_hessian(link_name):
    # Largest eigenvalue of the exact Hessian (by finite differences of the gradient) at a few
    # random points stays below the bound, and the bound is not loose by more than ~4x.
    X, target, link, weights, params = _problem(link_name, False, True, 0.0, n=60, d=3, k=3)
    from xent.sources import ArraySource

    bound = lipschitz_bound(ArraySource(X, target, weights), Objective(link, 0.05))
    rng = np.random.default_rng(3)
    size = params.size
    largest = 0.0
    for scale in (0.0, 0.5, 2.0):
        point = rng.normal(size=params.shape) * scale
        hessian = np.zeros((size, size))
        for i in range(size):
            e = np.zeros(size)
            e[i] = 1e-6
            up = loss_and_grad(point + e.reshape(point.shape), X, target, link, 0.05, weights)[1]
            down = loss_and_grad(point - e.reshape(point.shape), X, target, link, 0.05, weights)[1]
            hessian[:, i] = (up - down).ravel() / 2e-6
        largest = max(largest, np.linalg.eigvalsh((hessian + hessian.T) / 2).max())
    assert largest <= bound
    assert bound < 4 * largest


def test_a_flat_objective_has_a_finite_step():
    """Every feature 0, no intercept, no penalty: the gradient is constant (L = 0), and 1/L
    divided by zero; any bound is a bound, so training takes steps of 1 and keeps W = 0."""
    from xent import SoftmaxRegression

    model = SoftmaxRegression(fit_intercept=False, l2=0.0).fit(np.zeros((20, 3)),
                                                                np.arange(20) % 3)
    assert np.array_equal(model.coef_, np.zeros((3, 3)))
    np.testing.assert_allclose(model.predict_proba(np.zeros((2, 3))), 1 / 3, rtol=1e-15)


def _gram(X):
    return X.T @ X / X.shape[0]


_RNG = np.random.default_rng(11)
_GAUSS = _RNG.normal(size=(5000, 50))
EIGEN_CASES = {  # symmetric PSD matrices whose largest eigenvalue numpy gives exactly
    # uncorrelated features: fifty eigenvalues between 0.8 and 1.2 (power iteration: 161)
    "close together": _gram(_GAUSS),
    # one common factor: a wide gap (power iteration: 5)
    "one factor": _gram(_GAUSS[:, :20] + 3 * _RNG.normal(size=(5000, 1))),
    # columns repeated and columns of zeros: a rank of 10 in 25
    "rank deficient": _gram(np.c_[_GAUSS[:, :10], _GAUSS[:, :10], np.zeros((5000, 5))]),
    # 1..100 evenly spaced (power iteration: 248, and 5e-5 short)
    "evenly spaced": np.diag(np.arange(1.0, 101.0)),
}


@pytest.mark.parametrize("case", sorted(EIGEN_CASES))
def test_lanczos_finds_the_largest_eigenvalue_in_few_products(case):
    """``largest_eigenvalue`` (the Lipschitz bound's) against numpy's eigvalsh: within its
    1e-4 and never above, in at most 40 products (each a pass over the data), where power
    iteration to a change of 1e-6 took 5 to 248."""
    from xent.loss import largest_eigenvalue

    A = EIGEN_CASES[case]
    products = []

    def product(v):
        products.append(v)
        return A @ v

    theta = largest_eigenvalue(product, np.random.default_rng(0).standard_normal(len(A)))
    exact = np.linalg.eigvalsh(A)[-1]
    assert exact * (1 - 1e-4) <= theta <= exact * (1 + 1e-12)
    assert len(products) <= 40
    assert largest_eigenvalue(lambda v: 0.0 * v, np.ones(4)) == 0.0  # A = 0: one product


def test_the_l2_penalty_added_in_blocks_equals_the_formula(monkeypatch):
    """The penalty l2/2 ||W||^2 and its gradient l2 W, added a block of rows of W at a time
    (no W-sized temporaries), equal the formula at 1e-12, with a last block shorter."""
    from xent import loss

    rng = np.random.default_rng(5)
    X = rng.normal(size=(60, 23))
    y = rng.integers(0, 3, 60)
    params = rng.normal(size=(24, 3))
    link, target = get_link("softmax", 3), labels_target(y, 3)
    plain = evaluate(params, X, target, link)
    monkeypatch.setattr(loss, "PENALTY_BLOCK_VALUES", 15)  # 5 rows of W a block
    penalised = evaluate(params, X, target, link, l2=0.3)
    W = params[:-1]
    assert penalised.objective == pytest.approx(plain.objective + 0.15 * np.sum(W * W),
                                                rel=1e-12)
    expected = plain.grad.copy()
    expected[:-1] += 0.3 * W
    np.testing.assert_allclose(penalised.grad, expected, rtol=1e-12, atol=1e-14)
