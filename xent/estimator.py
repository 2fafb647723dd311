"""``SoftmaxRegression``: a scikit-learn classifier over xent's engine.

It trains on the data as given (no standardisation: put a ``StandardScaler`` in front of it in a
``Pipeline``), minimising

    sum_i w_i H(P_i, Q_i) / sum_i w_i + l2 / 2 ||W||^2

which is scikit-learn's ``LogisticRegression`` objective with ``C = 1 / (l2 * n_samples)``
(unweighted). Fitted attributes are shaped as in ``LogisticRegression``: ``coef_`` is
(1, n_features) for the sigmoid link and (n_classes, n_features) for the softmax.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from .config import ModelConfig, OptimConfig
from .links import get_link
from .loss import class_weighted, labels_target
from .train import fit


class SoftmaxRegression(ClassifierMixin, BaseEstimator):
    """Sigmoid or softmax regression trained on the cross-entropy gradient X^T (Q - P).

    Parameters
    ----------
    link : "auto", "sigmoid" or "softmax"
        "auto" is the sigmoid for two classes and the softmax otherwise.
    l2 : float
        Strength of the penalty l2 / 2 ||W||^2 (the intercept is not penalised).
    optimizer : "gd", "momentum", "nesterov", "adam" or "lbfgs"
    lr : float or "auto"
        Step size; "auto" is 1 / L for the gradient methods (L bounds the gradient's Lipschitz
        constant) and 0.01 for Adam. Ignored by L-BFGS.
    max_epochs : int
        Passes over the data (iterations for full-batch methods and L-BFGS).
    batch_size : int or None
        Mini-batch size for the first-order methods; None is full batch.
    tol : float
        Stop when ||gradient|| / ||initial gradient|| < tol.
    label_smoothing : float in [0, 1)
        Train against (1 - eps) onehot + eps / n_classes instead of the one-hot labels.
    class_weight : dict, "balanced" or None
        Weights per class, multiplied into the sample weights.
    fit_intercept : bool
    random_state : int, RandomState or None
        Seeds the mini-batch shuffles.

    Attributes
    ----------
    classes_ : (n_classes,)   coef_ : (1 or n_classes, n_features)   intercept_ : (1 or n_classes,)
    n_iter_ : int, epochs run   history_ : xent.train.History   stop_reason_ : str
    """

    def __init__(
        self,
        link="auto",
        l2=ModelConfig.l2,
        optimizer=OptimConfig.optimizer,
        lr=OptimConfig.lr,
        max_epochs=OptimConfig.epochs,
        batch_size=None,
        tol=OptimConfig.tol,
        label_smoothing=0.0,
        class_weight=None,
        fit_intercept=True,
        random_state=None,
    ):
        self.link = link
        self.l2 = l2
        self.optimizer = optimizer
        self.lr = lr
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.tol = tol
        self.label_smoothing = label_smoothing
        self.class_weight = class_weight
        self.fit_intercept = fit_intercept
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None):
        X, y = validate_data(self, X, y, accept_sparse="csr", dtype=[np.float64, np.float32])
        check_classification_targets(y)
        self.classes_, indices = np.unique(y, return_inverse=True)
        n_classes = len(self.classes_)
        if n_classes < 2:
            raise ValueError(
                f"This solver needs samples of at least 2 classes in the data, but the data "
                f"contain only one class: {self.classes_[0]!r}"
            )
        link = get_link(self.link, n_classes)
        target = labels_target(indices, n_classes, self.label_smoothing)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
        class_weight = None
        if self.class_weight is not None:
            class_weight = compute_class_weight(
                self.class_weight, classes=self.classes_, y=y
            )
        weights = class_weighted(target, sample_weight, class_weight)
        seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        result = fit(
            X,
            target,
            link,
            optimizer=self.optimizer,
            lr=self.lr,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            tol=self.tol,
            l2=self.l2,
            weights=weights,
            fit_intercept=self.fit_intercept,
            seed=seed,
        )
        self.link_ = link.name
        self.coef_ = np.ascontiguousarray(result.params[:-1].T)
        self.intercept_ = result.params[-1].copy()
        self.n_iter_ = result.n_epochs
        self.history_ = result.history
        self.stop_reason_ = result.stop_reason
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # CSR input is used as is, never densified
        return tags

    def _logits(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", reset=False,
                          dtype=[np.float64, np.float32])
        return np.asarray(X @ self.coef_.T) + self.intercept_

    def decision_function(self, X):
        """(n_samples,) logits of the second class for two classes, else (n_samples, n_classes)."""
        logits = self._logits(X)
        if logits.shape[1] == 1:
            return logits[:, 0]
        if len(self.classes_) == 2:
            return logits[:, 1] - logits[:, 0]
        return logits

    def predict_proba(self, X):
        """(n_samples, n_classes) probabilities; rows sum to 1."""
        logits = self._logits(X)
        return get_link(self.link_).proba(logits)

    def predict_log_proba(self, X):
        """(n_samples, n_classes) log-probabilities, computed from the logits."""
        logits = self._logits(X)
        return get_link(self.link_).log_proba(logits)

    def predict(self, X):
        """(n_samples,) the most probable class of each row."""
        logits = self._logits(X)
        return self.classes_[get_link(self.link_).predict_index(logits)]
