"""``SoftmaxRegression``: a scikit-learn classifier over xent's engine.

It trains on the data as given (no standardisation: put a ``StandardScaler`` in front of it in a
``Pipeline``), minimising

    sum_i w_i H(P_i, Q_i) / sum_i w_i + l2 / 2 ||W||^2

which is scikit-learn's ``LogisticRegression`` objective with ``C = 1 / (l2 * n_samples)``
(unweighted). Fitted attributes are shaped as in ``LogisticRegression``: ``coef_`` is
(1, n_features) for the sigmoid link and (n_classes, n_features) for the softmax.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from .config import ModelConfig, OptimConfig, PathConfig
from .dask_engine import array_data, as_dask_array, current_client, is_dask_collection
from .links import LINK_NAMES, get_link
from .loss import (
    Objective,
    class_weights,
    labels_target,
    row_weights,
)
from .model import Scores
from .optim import OPTIMIZERS
from .path import (
    RULES,
    PathSpec,
    cross_validate,
    lambda_grid,
    largest_lambda,
    null_model,
    penalties,
)
from .preprocess import fold_ids
from .sources import ArraySource
from .threads import available_cores, use_threads
from .train import Solver, Stopping, fit


def training_data(estimator, X, y):
    """X and y checked as scikit-learn checks them (``validate_data``): X CSR or dense float64
    or float32, dense X in C order. The compiled kernels read rows (``loss.use_kernels``):
    a Fortran-ordered X, which pandas' ``to_numpy()`` and a DataFrame give, would be summed by
    the numpy reference at every evaluation instead; one copy at the start is cheaper."""
    return validate_data(estimator, X, y, accept_sparse="csr", dtype=[np.float64, np.float32],
                         order="C")


class SoftmaxRegression(ClassifierMixin, BaseEstimator):
    """Sigmoid or softmax regression trained on the cross-entropy gradient X^T (Q - P).

    Parameters
    ----------
    link : "auto", "sigmoid" or "softmax"
        "auto" is the sigmoid for two classes and the softmax otherwise.
    l2 : float
        Strength of the penalty l2 / 2 ||W||^2 (the intercept is not penalised).
    l1 : float
        Strength of the penalty l1 ||W||_1 (exact zeros; scikit-learn's ``C = 1 / (l1 n)``
        with ``penalty="l1"``); full batch with ``optimizer`` "lbfgs", "nesterov" or "gd",
        mini-batch with "gd" (SGD with the cumulative penalty).
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
    n_jobs : int or None
        Threads for each loss and gradient: None is xent's default (every core the process
        may use, or $XENT_THREADS), -1 every core, -2 all but one (scikit-learn's convention).
    device : "cpu" or "cuda"
        Where each loss and gradient is computed: "cuda" keeps X on the first GPU (CuPy) and
        brings back only the sums; the fitted model is the same either way.

    Attributes
    ----------
    classes_ : (n_classes,)   coef_ : (1 or n_classes, n_features)   intercept_ : (1 or n_classes,)
    n_iter_ : int, epochs run   history_ : xent.train.History   stop_reason_ : str
    """

    _parameter_constraints: dict = {
        "link": [StrOptions({"auto", *LINK_NAMES})],
        "l2": [Interval(Real, 0, None, closed="left")],
        "l1": [Interval(Real, 0, None, closed="left")],
        "optimizer": [StrOptions(set(OPTIMIZERS))],
        "lr": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "max_epochs": [Interval(Integral, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "tol": [Interval(Real, 0, None, closed="left")],
        "label_smoothing": [Interval(Real, 0, 1, closed="left")],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "fit_intercept": ["boolean"],
        "random_state": ["random_state"],
        "n_jobs": [Integral, None],
        "device": [StrOptions({"cpu", "cuda"})],
    }

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
        l1=0.0,
        n_jobs=None,
        device="cpu",
    ):
        self.link = link
        self.l2 = l2
        self.l1 = l1
        self.optimizer = optimizer
        self.lr = lr
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.tol = tol
        self.label_smoothing = label_smoothing
        self.class_weight = class_weight
        self.fit_intercept = fit_intercept
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.device = device

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit on X (n_samples, n_features): numpy, CSR, or a dask array or DataFrame (then
        the rows stay on the workers of the current dask.distributed Client: each evaluation
        sums the loss and gradient over them there, and mini-batch steps are taken on the worker
        that holds each block of rows in turn)."""
        if is_dask_collection(X) or is_dask_collection(y):
            return self._fit_dask(X, y, sample_weight)
        X, y = training_data(self, X, y)
        indices, link, class_weight = self._classes(y)
        target = labels_target(indices, len(self.classes_), self.label_smoothing)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
        source = ArraySource(X, target, row_weights(target, sample_weight, class_weight))
        if self.device != "cpu":
            from .device import ArrayApiSource, namespace

            source = ArrayApiSource.of(X, source.target, source.weights, namespace(self.device))
        return self._fit(source, link)

    def _classes(self, y):
        """Set ``classes_``; returns (the class index of each row, the link, the class weights
        or None)."""
        check_classification_targets(y)
        self.classes_, indices = np.unique(y, return_inverse=True)
        n_classes = len(self.classes_)
        if n_classes < 2:
            raise ValueError(
                f"This solver needs samples of at least 2 classes in the data, but the data "
                f"contain only one class: {self.classes_[0]!r}"
            )
        counts = np.bincount(indices, minlength=n_classes)
        return indices, get_link(self.link, n_classes), class_weights(self._weight_spec(),
                                                                        counts)

    def _weight_spec(self):
        """``class_weight`` as ``targets.class_weights`` takes it: a dict becomes a list in
        the order of ``classes_`` (classes not named weigh 1)."""
        spec = self.class_weight
        if isinstance(spec, dict):
            spec = [spec.get(c, 1.0) for c in self.classes_.tolist()]
        return spec

    def _fit_dask(self, X, y, sample_weight):
        client = current_client()
        X, columns = as_dask_array(X)
        y, _ = as_dask_array(y)
        if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
            raise ValueError(f"X must be (n_samples, n_features) and y (n_samples,): got "
                             f"{X.shape} and {y.shape}")
        y_values = np.asarray(y.compute())
        indices, link, class_weight = self._classes(y_values)
        if is_dask_collection(sample_weight):
            sample_weight = sample_weight.compute()
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, y_values, dtype=np.float64)
        self.n_features_in_ = X.shape[1]
        if columns is not None:
            self.feature_names_in_ = np.asarray(columns, dtype=object)
        else:
            vars(self).pop("feature_names_in_", None)
        data = array_data(client, X, y, self.classes_, indices, sample_weight,
                          self.label_smoothing, class_weight)
        return self._fit(data, link)

    def _fit(self, source, link):
        seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        with use_threads(_cores(self.n_jobs)):
            result = fit(source, Objective(link, self.l2, self.fit_intercept, self.l1),
                         Solver(self.optimizer, self.lr, self.batch_size, seed),
                         Stopping(self.max_epochs, self.tol))
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

    def _linear(self, X) -> np.ndarray:
        """(n_samples, 1 or n_classes) logits X W + b, on ``device`` for dense X (sparse X,
        which a GPU fit never had, is multiplied here: the numbers are the same)."""
        from .device import linear_logits

        device = "cpu" if sp.issparse(X) else self.device
        return linear_logits(X, self.coef_.T, self.intercept_, device)

    def _output(self, X, method: str):
        """``method`` ("predict", "predict_proba", ...) of X: numpy or CSR gives numpy; a dask
        array or DataFrame gives a dask array computed block by block where the rows are."""
        check_is_fitted(self)
        if is_dask_collection(X):
            return self._dask_output(X, method)
        X = validate_data(self, X, accept_sparse="csr", reset=False,
                          dtype=[np.float64, np.float32])
        return self._from_logits(self._linear(X), method)

    _SCORES = {"predict": "labels", "predict_proba": "proba",
               "predict_log_proba": "log_proba", "decision_function": "decision"}

    def _from_logits(self, logits, method: str):
        return getattr(Scores(logits, get_link(self.link_), self.classes_), self._SCORES[method])

    def _dask_output(self, X, method: str):
        X, columns = as_dask_array(X)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has shape {X.shape}, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input")
        names = getattr(self, "feature_names_in_", None)
        if columns is not None and names is not None and list(names) != columns:
            raise ValueError(f"X has the columns {columns}, but the model was fitted on "
                             f"{list(names)}")
        X = X.rechunk({1: -1})
        one_column = method == "predict" or (method == "decision_function"
                                              and len(self.classes_) == 2)
        dtype = self.classes_.dtype if method == "predict" else np.float64
        if one_column:
            return X.map_blocks(_block_output, self, method, drop_axis=1, dtype=dtype,
                                meta=np.empty((0,), dtype))
        return X.map_blocks(_block_output, self, method, chunks=(X.chunks[0],
                            (len(self.classes_),)), dtype=dtype, meta=np.empty((0, 0), dtype))

    def decision_function(self, X):
        """(n_samples,) logits of the second class for two classes, else (n_samples, n_classes)."""
        return self._output(X, "decision_function")

    def predict_proba(self, X):
        """(n_samples, n_classes) probabilities; rows sum to 1."""
        return self._output(X, "predict_proba")

    def predict_log_proba(self, X):
        """(n_samples, n_classes) log-probabilities, computed from the logits."""
        return self._output(X, "predict_log_proba")

    def predict(self, X):
        """(n_samples,) the most probable class of each row."""
        return self._output(X, "predict")


def _block_output(block, estimator: SoftmaxRegression, method: str):
    """``method`` of one block of rows of a dask array (numpy, whole rows)."""
    return estimator._from_logits(estimator._linear(np.asarray(block, np.float64)), method)



class SoftmaxRegressionCV(SoftmaxRegression):
    """``SoftmaxRegression`` with the penalty chosen by k-fold cross-validation over a
    warm-started path (``xent.path``; scikit-learn's ``LogisticRegressionCV``, glmnet's
    ``cv.glmnet``).

    The penalty is lambda ((1 - l1_ratio) / 2 ||W||^2 + l1_ratio ||W||_1) on the mean
    cross-entropy, scikit-learn's ``C = 1 / (lambda n_samples)``.

    Parameters
    ----------
    lambdas : int or array of float
        A number of lambdas on a geometric grid from lambda_max (computed from the data; for
        l1_ratio > 0 the least lambda that zeroes every weight) down to
        ``lambda_min_ratio`` of it, or the lambdas themselves.
    Cs : int, array of float or None
        scikit-learn's way to give the grid: C values (lambda = 1 / (C n_samples)); an int is
        ``numpy.logspace(-4, 4, Cs)``, as ``LogisticRegressionCV`` takes it. Overrides
        ``lambdas``.
    l1_ratio : float in [0, 1]
        0 ridge (the default, as ``LogisticRegressionCV``), 1 lasso, between: elastic net.
    cv : int
        Stratified folds, drawn from ``random_state``.
    select : "min" or "1se"
        The lambda of least mean CV loss (scikit-learn's choice), or the largest within one
        standard error of it (glmnet's ``lambda.1se``).
    n_jobs : int or None
        Processes for the k + 1 paths (None: one; -1: one per core, -2: all cores but one,
        as in scikit-learn).
    path_tol : float
        ||g|| / ||g0|| at which each fit on the path stops; the chosen lambda's fit on all
        rows then goes on to ``tol``.
    The rest are ``SoftmaxRegression``'s (``optimizer`` "lbfgs", "nesterov" or "gd").

    Attributes
    ----------
    lambda_, C_ : the chosen penalty (C_ = 1 / (lambda_ n_samples))
    lambdas_ : (n_lambdas,) the grid, decreasing
    cv_loss_, cv_loss_se_, cv_accuracy_ : (n_lambdas,) mean CV loss, its SE, mean CV accuracy
    coef_path_ : (n_lambdas, n_outputs, n_features)   nonzero_ : (n_lambdas,) non-zero weights
    coef_, intercept_ : fitted on all rows at ``lambda_`` (from the path's point, to ``tol``)
    """

    #: the path and its folds run on the CPU, and so do the predictions
    device = "cpu"

    _parameter_constraints: dict = {
        **{k: v for k, v in SoftmaxRegression._parameter_constraints.items()
           if k not in ("l1", "l2", "batch_size", "optimizer", "device")},
        "lambdas": [Interval(Integral, 2, None, closed="left"), "array-like"],
        "Cs": [Interval(Integral, 2, None, closed="left"), "array-like", None],
        "l1_ratio": [Interval(Real, 0, 1, closed="both")],
        "lambda_min_ratio": [Interval(Real, 0, 1, closed="neither")],
        "cv": [Interval(Integral, 2, None, closed="left")],
        "select": [StrOptions(set(RULES))],
        "n_jobs": [Integral, None],
        "optimizer": [StrOptions({"lbfgs", "nesterov", "gd"})],
        "path_tol": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(self, lambdas=50, Cs=None, l1_ratio=0.0, cv=5, select="min",
                 lambda_min_ratio=1e-4, link="auto", optimizer="lbfgs", lr=OptimConfig.lr,
                 max_epochs=OptimConfig.epochs, tol=OptimConfig.tol, label_smoothing=0.0,
                 class_weight=None, fit_intercept=True, random_state=None, n_jobs=None,
                 path_tol=PathConfig.tol):
        self.lambdas = lambdas
        self.Cs = Cs
        self.l1_ratio = l1_ratio
        self.cv = cv
        self.select = select
        self.lambda_min_ratio = lambda_min_ratio
        self.link = link
        self.optimizer = optimizer
        self.lr = lr
        self.max_epochs = max_epochs
        self.tol = tol
        self.label_smoothing = label_smoothing
        self.class_weight = class_weight
        self.fit_intercept = fit_intercept
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.path_tol = path_tol

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Cross-validate the path on X (n_samples, n_features; numpy or CSR), then keep the
        path on all rows at the chosen lambda."""
        X, y = training_data(self, X, y)
        indices, link, class_weight = self._classes(y)
        n_classes = len(self.classes_)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)

        def rows(selection, train):
            target = labels_target(indices[selection], n_classes,
                                   self.label_smoothing if train else 0.0)
            weight = None if sample_weight is None else sample_weight[selection]
            counts = np.bincount(target.labels, minlength=n_classes)
            classes = class_weights(self._weight_spec(), counts) if train else None
            return ArraySource(X[selection], target, row_weights(target, weight, classes))

        seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        folds = fold_ids(indices, np.ones(len(indices), dtype=bool), self.cv, seed)
        full = ArraySource(X, labels_target(indices, n_classes, self.label_smoothing),
                           row_weights(labels_target(indices, n_classes), sample_weight,
                                       class_weight))
        null = null_model(full, link, self.fit_intercept)
        solver = Solver(self.optimizer, self.lr, None, seed)
        spec = PathSpec(link, self.fit_intercept, self.l1_ratio, self._grid(full, null),
                        solver, Stopping(self.max_epochs, self.path_tol))
        cv, path = cross_validate(
            full, lambda f: (rows(folds != f, True), rows(folds == f, False)), self.cv, spec,
            _process_count(self.n_jobs, self.cv + 1))
        chosen = cv.index(self.select)
        l2, l1 = penalties(float(spec.lambdas[chosen]), self.l1_ratio)
        final = fit(full, Objective(link, l2, self.fit_intercept, l1), solver,
                    Stopping(self.max_epochs, self.tol, scale=null.scale),
                    init_params=path.params[chosen])
        n = X.shape[0]
        self.link_ = link.name
        self.lambdas_ = spec.lambdas
        self.lambda_ = float(spec.lambdas[chosen])
        self.C_ = 1.0 / (self.lambda_ * n)
        self.cv_loss_, self.cv_loss_se_ = cv.loss_mean, cv.loss_se
        self.cv_accuracy_ = cv.accuracy_mean
        self.coef_path_ = np.ascontiguousarray(path.params[:, :-1].transpose(0, 2, 1))
        self.nonzero_ = path.nonzero
        self.coef_ = np.ascontiguousarray(final.params[:-1].T)
        self.intercept_ = final.params[-1].copy()
        self.n_iter_ = final.n_epochs
        self.history_ = final.history
        self.stop_reason_ = final.stop_reason
        return self

    def _grid(self, full, null) -> np.ndarray:
        """The lambdas, decreasing: from ``Cs``, a list, or a grid down from lambda_max."""
        n = full.shape[0]
        if self.Cs is not None:
            Cs = np.logspace(-4, 4, self.Cs) if isinstance(self.Cs, Integral) else \
                np.asarray(self.Cs, dtype=np.float64)
            return np.sort(1.0 / (Cs * n))[::-1]
        if not isinstance(self.lambdas, Integral):
            return np.sort(np.asarray(self.lambdas, dtype=np.float64))[::-1]
        return lambda_grid(largest_lambda(null, self.l1_ratio), self.lambdas, self.lambda_min_ratio)


def _cores(n_jobs: int | None) -> int | None:
    """scikit-learn's n_jobs as a number of cores: a negative n is cores + 1 + n; None (and
    0) stay None, the caller's default."""
    if n_jobs is not None and n_jobs < 0:
        return max(1, available_cores() + 1 + n_jobs)
    return n_jobs or None


def _process_count(n_jobs: int | None, tasks: int) -> int:
    """n_jobs as a number of processes: None is 1; never more than there are tasks."""
    return min(_cores(n_jobs) or 1, tasks)
