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
nothing), so it is reported as statsmodels' MNLogit reports it: each class against the first,
beta_k - beta_0, whose information is the blocks k, l >= 1.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from scipy import stats

from .errors import DataError
from .links import get_link

#: largest number of parameters whose information matrix is formed (its size is the square)
MAX_PARAMETERS = 5000
_Z95 = stats.norm.ppf(0.975)


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


def information(X, params: np.ndarray, link_name: str, *, block_rows: int = 4096) -> np.ndarray:
    """The observed information (Hessian of the summed cross-entropy) at ``params`` ((d + 1,
    n_outputs), bias last), in the parameter order class by class, [W_1k .. W_dk, b_k]:
    (n_outputs (d + 1)) squared. X (n_samples, d), dense or CSR, summed in row blocks."""
    n, d = X.shape
    link = get_link(link_name, max(params.shape[1], 2))
    k, p = params.shape[1], d + 1
    total = np.zeros((k * p, k * p))
    for start in range(0, n, block_rows):
        block = X[start:start + block_rows]
        block = block.toarray() if sp.issparse(block) else np.asarray(block, dtype=np.float64)
        Xa = np.hstack([block, np.ones((block.shape[0], 1))])
        q = link.proba(Xa @ params)
        if k == 1:  # the sigmoid: q is the probability of the second class
            weight = q[:, 1] * (1.0 - q[:, 1])
            total += Xa.T @ (Xa * weight[:, None])
            continue
        for a in range(k):
            scaled = Xa * q[:, a:a + 1]
            total[a * p:(a + 1) * p, a * p:(a + 1) * p] += Xa.T @ scaled
            for b in range(k):
                total[a * p:(a + 1) * p, b * p:(b + 1) * p] -= scaled.T @ (Xa * q[:, b:b + 1])
    return total


def coefficient_table(model, X, labels: np.ndarray, l2: float | None) -> dict:
    """The inference table of ``model`` on the rows X (n_samples, n_features; encoded, not
    standardised) with their class indices ``labels``: the rows it was trained on, for the
    standard errors to mean what they say. ``l2`` is the penalty it was trained with (None:
    unknown, taken as 0). Returns {"coefficients": [{class, feature, coef, std_err, z,
    p_value, ci_low, ci_high[, odds_ratio]}], "n", "log_likelihood", "null_log_likelihood",
    "lr_stat", "lr_df", "lr_pvalue", "aic", "bic", "pseudo_r2", "penalised", "form",
    "notes"}."""
    n, d = X.shape
    params = raw_params(model)
    k = params.shape[1]
    n_classes = model.n_classes
    notes = []
    penalised = bool(l2)
    reference = k > 1 and not penalised  # the identifiable form of an unpenalised softmax
    if (k * (d + 1)) > MAX_PARAMETERS:
        raise DataError(f"{k * (d + 1)} parameters: an information matrix of that size "
                        f"(over {MAX_PARAMETERS}) is not formed; inspect a model with fewer "
                        "features or classes")
    full = information(X, params, model.link)
    if reference:
        keep = slice(d + 1, None)
        full, params = full[keep, keep], params[:, 1:] - params[:, :1]
    if penalised:
        scale = model.standardizer.scale if model.standardizer is not None else np.ones(d)
        curvature = np.tile(np.append(n * l2 * scale ** 2, 0.0), params.shape[1])
        full = full + np.diag(curvature)
    covariance, singular = _inverse(full)
    if singular:
        notes.append("the information matrix is singular (separated classes, or features that "
                     "are constant or collinear): standard errors are not defined; train with "
                     "l2 > 0 or drop the features")
    std_err = np.sqrt(np.clip(np.diag(covariance), 0.0, None)) if not singular else \
        np.full(full.shape[0], np.nan)
    classes = list(model.classes)
    shown = classes[1:] if (reference or k == 1) else classes
    names = list(model.feature_names) + ["intercept"]
    rows = []
    for c, cls in enumerate(shown):
        for j, feature in enumerate(names):
            coef = float(params[j, c])
            se = float(std_err[c * (d + 1) + j])
            z = coef / se if se > 0 else math.nan
            row = {"class": cls, "feature": feature, "coef": coef, "std_err": se, "z": z,
                   "p_value": float(2 * stats.norm.sf(abs(z))) if math.isfinite(z) else math.nan,
                   "ci_low": coef - _Z95 * se, "ci_high": coef + _Z95 * se}
            if k == 1:
                row["odds_ratio"] = math.exp(coef) if coef < 700 else math.inf
            rows.append(row)
    # the identifiable parameters: K - 1 classes against one (the sigmoid's single column)
    summary = likelihood_summary(model, X, labels, n_parameters=(d + 1) * (n_classes - 1),
                                 df=d * (n_classes - 1))
    if l2 is None:
        notes.append("the model does not record its l2 (an older model file): the standard "
                     "errors are those of the unpenalised likelihood")
    elif penalised:
        notes.append(f"l2 = {l2:g}: standard errors of the penalised fit (the penalty's "
                     "curvature added to the information); each class in full, not against "
                     "a reference")
    return dict(summary, coefficients=rows, penalised=penalised,
                form=("against the first class " + repr(classes[0])) if reference
                else "per class" if k > 1 else f"log-odds of {classes[1]!r}",
                notes=notes)


def _inverse(matrix: np.ndarray) -> tuple[np.ndarray, bool]:
    """(the inverse of a symmetric positive semi-definite matrix, whether it is singular: its
    smallest eigenvalue below 1e-10 of its largest)."""
    values, vectors = np.linalg.eigh(matrix)
    if values.size == 0 or values[0] <= 1e-10 * max(values[-1], 1e-300):
        return np.full_like(matrix, np.nan), True
    return (vectors / values) @ vectors.T, False


def likelihood_summary(model, X, labels: np.ndarray, n_parameters: int, df: int) -> dict:
    """n, the log-likelihood sum_i log q_i(y_i), the intercept-only (class priors) model's,
    the likelihood-ratio statistic 2 (LL - LL0) with ``df`` degrees of freedom and its
    p-value, AIC = 2 p - 2 LL and BIC = p log n - 2 LL with p = ``n_parameters``, and
    McFadden's pseudo-R^2 = 1 - LL / LL0."""
    n = len(labels)
    log_proba = model.scores(X).log_proba
    ll = float(log_proba[np.arange(n), labels].sum())
    counts = np.bincount(labels, minlength=model.n_classes).astype(float)
    present = counts > 0
    ll0 = float((counts[present] * np.log(counts[present] / n)).sum())
    lr = 2.0 * (ll - ll0)
    return {"n": n, "log_likelihood": ll, "null_log_likelihood": ll0, "lr_stat": lr,
            "lr_df": df, "lr_pvalue": float(stats.chi2.sf(lr, df)),
            "aic": 2.0 * n_parameters - 2.0 * ll, "bic": n_parameters * math.log(n) - 2.0 * ll,
            "pseudo_r2": 1.0 - ll / ll0 if ll0 else math.nan}
