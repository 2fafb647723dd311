"""What a fitted model says, as a statistician reads it: coefficients in the data's own units
with standard errors, z, p-values and intervals, and the likelihood-based summary
(log-likelihood, the intercept-only model's, the likelihood-ratio test, AIC, BIC, McFadden's
pseudo-R^2).

Cross-entropy minimisation is maximum likelihood, so the standard errors come from the observed
information at the optimum: the Hessian of the summed cross-entropy,

    sigmoid:  I = Xa^T diag(q (1 - q)) Xa                          ((d + 1) x (d + 1))
    softmax:  I_kl = Xa^T diag(q_k (delta_kl - q_l)) Xa            (block k, l of K x K blocks)

with Xa = [X, 1] in the data's own units (the standardisation undone), plus the penalty's
curvature n l2 diag(sd^2) on the weights when l2 > 0 (the penalty acts on standardised
weights). An unpenalised softmax is not identifiable (adding one vector to every class changes
nothing; with a penalty, the intercepts still are), so it is reported as statsmodels' MNLogit
reports it: each class against the first, beta_k - beta_0.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from scipy.special import chdtrc, ndtri

from .errors import DataError
from .links import get_link
from .loss import penalised as penalised_fit

#: largest number of parameters whose information matrix is formed (its size is the square)
MAX_PARAMETERS = 5000
_Z95 = float(ndtri(0.975))  # the normal's 97.5% point: 95% intervals


def _two_sided_p(z: float) -> float:
    """P(|N(0, 1)| > |z|) = erfc(|z| / sqrt 2); NaN for a NaN z. (scipy.special and math
    rather than scipy.stats, whose import took half a second of every command's start.)"""
    return math.erfc(abs(z) / math.sqrt(2.0)) if math.isfinite(z) else math.nan


def raw_params(model) -> np.ndarray:
    """The model's parameters (n_features + 1, n_outputs) in the units of its (encoded, not
    standardised) features: W / sd, and b - sum_j mean_j W_j / sd_j."""
    coef, intercept = np.array(model.coef, dtype=np.float64), np.array(model.intercept, float)
    scaler = model.standardizer
    if scaler is not None:
        coef = coef / scaler.scale[:, None]
        if scaler.mean is not None:
            intercept = intercept - scaler.mean @ coef
    return np.vstack([coef, intercept[None, :]])


def information(X, params: np.ndarray, link_name: str, weights=None, *,
                block_rows: int = 4096) -> np.ndarray:
    """The observed information (Hessian of the summed, ``weights``-weighted cross-entropy) at
    ``params`` ((d + 1, n_outputs), bias last), in the parameter order class by class,
    [W_1k .. W_dk, b_k]: (n_outputs (d + 1)) squared. X (n_samples, d), dense or CSR, float64
    or float32 (taken in float64), summed in row blocks. Every ``RowSource`` sums it over its
    own rows with this function."""
    n, d = X.shape
    link = get_link(link_name, max(params.shape[1], 2))
    k, p = params.shape[1], d + 1
    total = np.zeros((k * p, k * p))
    for start in range(0, n, block_rows):
        block = X[start:start + block_rows]
        block = block.toarray() if sp.issparse(block) else np.asarray(block, dtype=np.float64)
        Xa = np.hstack([block, np.ones((block.shape[0], 1))])
        q = link.proba(Xa @ params)
        w = None if weights is None else np.asarray(weights[start:start + block_rows], float)
        if k == 1:  # the sigmoid: q is the probability of the second class
            weight = q[:, 1] * (1.0 - q[:, 1]) * (1.0 if w is None else w)
            total += Xa.T @ (Xa * weight[:, None])
            continue
        if w is not None:
            Xa = Xa * np.sqrt(w)[:, None]  # Xa^T diag(w q ...) Xa, w split between the sides
        for a in range(k):
            scaled = Xa * q[:, a:a + 1]
            total[a * p:(a + 1) * p, a * p:(a + 1) * p] += Xa.T @ scaled
            for b in range(k):
                total[a * p:(a + 1) * p, b * p:(b + 1) * p] -= scaled.T @ (Xa * q[:, b:b + 1])
    return total


def to_raw_units(standardizer, n_features: int) -> np.ndarray:
    """A ((d + 1) x (d + 1)): one class's parameters in the data's own units are A theta of
    its standardised ones [W; b]: W_j / sd_j, and b - sum_j mean_j W_j / sd_j."""
    A = np.eye(n_features + 1)
    if standardizer is not None:
        A[:n_features, :n_features] = np.diag(1.0 / standardizer.scale)
        if standardizer.mean is not None:
            A[n_features, :n_features] = -standardizer.mean / standardizer.scale
    return A


def coefficient_table(model, info: np.ndarray, likelihood: dict, l2: float | None,
                      all_right: bool = False) -> dict:
    """The inference table of ``model`` from ``info``, the summed information of its training
    rows at its own (standardised) parameters (``information``, summed by any RowSource), and
    ``likelihood`` (``likelihood_summary`` of the same rows). ``l2`` is the penalty it was
    trained with (None: unknown, taken as 0). ``all_right``: every one of the rows is
    classified right (without a penalty, the rows are separable and the table means nothing:
    ``_SEPARATED``). Returns {"coefficients": [{class, feature,
    coef, std_err, z, p_value, ci_low, ci_high[, odds_ratio]}], "penalised", "form",
    "notes"} and the likelihood figures: "n", "log_likelihood", "null_log_likelihood",
    "lr_stat", "lr_df", "lr_pvalue", "aic", "bic", "pseudo_r2"."""
    d = model.n_features
    p = d + 1
    params = raw_params(model)
    k = params.shape[1]
    classes = list(model.classes)
    notes = []
    penalised = bool(l2)
    if penalised:  # l2/2 ||W||^2 of the mean is n l2/2 ||W||^2 of the sum: curvature n l2
        info = info + np.diag(np.tile(np.append(np.full(d, likelihood["n"] * l2), 0.0), k))
    # A softmax is identified only up to a vector added to every class (all of it without a
    # penalty; the common intercept shift with one), so it is reported as classes against
    # the first, contrasts C theta whose covariance C I^+ C^T is the same for any
    # generalised inverse of the information; I^+ leaves out that known null space.
    null = 0 if k == 1 else 1 if penalised else p
    covariance, singular = _inverse(info, null)
    if k > 1:
        contrasts = np.kron(np.hstack([-np.ones((k - 1, 1)), np.eye(k - 1)]), np.eye(p))
        covariance = contrasts @ covariance @ contrasts.T
        params = params[:, 1:] - params[:, :1]
    A = np.kron(np.eye(params.shape[1]), to_raw_units(model.standardizer, d))
    covariance = A @ covariance @ A.T
    if singular:
        notes.append("the information matrix is singular (separated classes, or features that "
                     "are constant or collinear): standard errors are not defined; train with "
                     "l2 > 0 or drop the features")
    std_err = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    shown = classes[1:]
    names = list(model.feature_names) + ["intercept"]
    rows = []
    for c, cls in enumerate(shown):
        for j, feature in enumerate(names):
            coef, se = float(params[j, c]), float(std_err[c * p + j])
            z = coef / se if se > 0 else math.nan
            row = {"class": cls, "feature": feature, "coef": coef, "std_err": se, "z": z,
                   "p_value": _two_sided_p(z),
                   "ci_low": coef - _Z95 * se, "ci_high": coef + _Z95 * se}
            if k == 1:
                row["odds_ratio"] = math.exp(coef) if coef < 700 else math.inf
            rows.append(row)
    if l2 is None:
        notes.append("the model does not record its l2 (an older model file): the standard "
                     "errors are those of the unpenalised likelihood")
    elif penalised:
        notes.append(f"l2 = {l2:g}: standard errors of the penalised fit (the penalty's "
                     "curvature added to the information)")
    l1 = model.metadata.get("l1") or 0.0
    if all_right and not penalised_fit(l2 or 0.0, l1, model.metadata.get("label_smoothing")):
        notes.insert(0, _SEPARATED)
    if l1:
        notes.append(f"l1 = {l1:g}: the penalty chose which weights are zero, and these "
                     "standard errors, z and p take that choice as given: they overstate the "
                     "certainty about the weights kept, and a zero weight's interval is no "
                     "test of its feature")
    return dict(likelihood, coefficients=rows, penalised=penalised,
                form=("against the first class " + repr(classes[0])) if k > 1
                else f"log-odds of {classes[1]!r}", notes=notes)


#: the note of a table whose rows are separable and whose fit has no penalty
_SEPARATED = ("every row is classified right and the fit has no penalty: the classes are "
              "separable, the likelihood has no maximum (it grows as the weights do, without "
              "end), and these coefficients, standard errors, z and p-values mean nothing "
              "(statsmodels refuses such data); train with --l2 > 0")


def table_of_rows(model, blocks, l2: float | None) -> dict:
    """``coefficient_table`` of ``model`` on the rows of ``blocks``, pairs (X (rows,
    n_features; encoded, not standardised), their class indices): the rows it was trained
    on, for the standard errors to mean what they say. The information and log-likelihood are
    summed block by block, so the rows need not all be in memory."""
    d = model.n_features
    k = model.params.shape[1]
    if k * (d + 1) > MAX_PARAMETERS:
        raise DataError(f"{k * (d + 1)} parameters: an information matrix of that size "
                        f"(over {MAX_PARAMETERS}) is not formed; inspect a model with fewer "
                        "features or classes")
    info, ll, wrong = 0.0, 0.0, 0
    totals = np.zeros(model.n_classes)
    for X, labels in blocks:
        info = info + information(model.features(X), model.params, model.link)
        log_proba = model.scores(X).log_proba
        ll += float(log_proba[np.arange(X.shape[0]), labels].sum())
        wrong += int(np.count_nonzero(log_proba.argmax(axis=1) != labels))
        totals += np.bincount(labels, minlength=model.n_classes)
    return coefficient_table(model, info, likelihood_summary(ll, totals, d), l2,
                             all_right=wrong == 0)


def _inverse(matrix: np.ndarray, null: int = 0) -> tuple[np.ndarray, bool]:
    """(the (pseudo-)inverse of a symmetric positive semi-definite matrix whose ``null``
    smallest eigenvalues are known to be zero, whether it is singular beyond them: its next
    eigenvalue below 1e-10 of its largest)."""
    values, vectors = np.linalg.eigh(matrix)
    values, vectors = values[null:], vectors[:, null:]
    if values.size == 0 or values[0] <= 1e-10 * max(values[-1], 1e-300):
        return np.full_like(matrix, np.nan), True
    return (vectors / values) @ vectors.T, False


def likelihood_summary(log_likelihood: float, class_totals: np.ndarray,
                       n_features: int) -> dict:
    """n (the rows' total weight), the log-likelihood, the intercept-only (class priors)
    model's sum_k n_k log(n_k / n), the likelihood-ratio statistic 2 (LL - LL0) on d (K - 1)
    degrees of freedom and its p-value, AIC = 2 p - 2 LL and BIC = p log n - 2 LL with
    p = (d + 1)(K - 1) identifiable parameters, and McFadden's pseudo-R^2 = 1 - LL / LL0.
    ``class_totals``: the rows (or their weights) of each class."""
    totals = np.asarray(class_totals, dtype=np.float64)
    n = float(totals.sum())
    present = totals > 0
    ll0 = float((totals[present] * np.log(totals[present] / n)).sum())
    n_classes = len(totals)
    df, n_parameters = n_features * (n_classes - 1), (n_features + 1) * (n_classes - 1)
    lr = 2.0 * (log_likelihood - ll0)
    return {"n": int(n) if n.is_integer() else n, "log_likelihood": log_likelihood,
            "null_log_likelihood": ll0, "lr_stat": lr, "lr_df": df,
            # the chi-square's upper tail; a statistic below 0 (rows the model fits worse
            # than the class priors: not its training rows) is no evidence at all
            "lr_pvalue": float(chdtrc(df, max(lr, 0.0))),
            "aic": 2.0 * n_parameters - 2.0 * log_likelihood,
            "bic": n_parameters * math.log(n) - 2.0 * log_likelihood,
            "pseudo_r2": 1.0 - log_likelihood / ll0 if ll0 else math.nan}
