"""Link functions as objects: logits -> probabilities, log-probabilities, predictions, and the
loss and residual of one block of rows.

Raw predictions are always 2-D, ``(n_samples, n_outputs)``: one column for the sigmoid (the
logit of the second class), ``n_classes`` columns for the softmax. ``proba`` and ``log_proba``
always return one column per class, so a sigmoid model reports ``[1 - q, q]``.

Stability: the softmax subtracts each row's maximum before ``exp`` (the probabilities are
unchanged) and the log-probabilities are ``u - max(u) - log(sum(exp(u - max(u))))``; the
sigmoid uses scipy's ``expit`` and ``log_expit``. Nothing overflows at logits of +-1e4 and no
``log(0)`` is taken.

Each link also carries ``block``, the training loss of one block of rows from its logits, which
turns the logits into the residual Q - P in place (``loss.sums`` calls it), and ``curvature``,
the bound on its Hessian that the Lipschitz estimate needs.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, log_expit

from .errors import ConfigError
from .targets import Target

LINK_NAMES = ("sigmoid", "softmax")


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """q = 1 / (1 + exp(-z)), elementwise, without overflow."""
    return expit(logits)


def log_sigmoid(logits: np.ndarray) -> np.ndarray:
    """log q = -log(1 + exp(-z)), elementwise, exact for large |z|."""
    return log_expit(logits)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``logits`` (n_samples, n_classes); rows sum to 1."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax: ``u - max(u) - log(sum(exp(u - max(u))))``, never log(0)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    shifted -= np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return shifted


class Link:
    """What a link must provide. Instances are stateless: ``SIGMOID`` and ``SOFTMAX``."""

    name: str = ""
    #: a bound on the largest eigenvalue of the loss's Hessian in one row's logits
    curvature: float = 0.0
    #: the rule of the compiled kernels (``_compiled.links_of``): the softmax's or the sigmoid's
    kernel_softmax: bool = False

    def __eq__(self, other) -> bool:
        return isinstance(other, Link) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"Link({self.name!r})"

    def n_outputs(self, n_classes: int) -> int:
        """Number of logit columns for ``n_classes`` classes."""
        raise NotImplementedError

    def proba(self, logits: np.ndarray) -> np.ndarray:
        """Class probabilities (n_samples, n_classes) from logits (n_samples, n_outputs)."""
        raise NotImplementedError

    def log_proba(self, logits: np.ndarray) -> np.ndarray:
        """Class log-probabilities (n_samples, n_classes), computed from the logits."""
        raise NotImplementedError

    def predict_index(self, logits: np.ndarray) -> np.ndarray:
        """Index of the most probable class of each row, (n_samples,); a tie goes to the
        first of the tied classes. Training's accuracy counts by this same rule."""
        raise NotImplementedError

    def null_logits(self, mean: np.ndarray) -> np.ndarray:
        """(n_outputs,) the constant logits whose prediction is ``mean``, the weighted mean
        target in the logits' space (n_outputs,): the intercept of the model without features,
        the null model. Means of 0 or 1 are clipped to 1e-12 from them (finite logits)."""
        raise NotImplementedError

    def block(self, logits: np.ndarray, target: Target, weights) -> tuple[float, int]:
        """Loss and residual of one block: ``logits`` (n_outputs, m), classes by rows, is
        overwritten by the (weighted) residual Q - P. Returns (sum of weighted losses, number
        of rows predicted right)."""
        raise NotImplementedError


class Sigmoid(Link):
    """Two classes, one logit z: q = P(class 1) = sigmoid(z)."""

    name = "sigmoid"
    curvature = 0.25  # q (1 - q) <= 1/4

    def n_outputs(self, n_classes: int) -> int:
        return 1

    def proba(self, logits):
        z = logits[:, 0]
        return np.column_stack([sigmoid(-z), sigmoid(z)])

    def log_proba(self, logits):
        z = logits[:, 0]
        return np.column_stack([log_sigmoid(-z), log_sigmoid(z)])

    def predict_index(self, logits):
        return (logits[:, 0] > 0).astype(np.intp)

    def null_logits(self, mean):
        """z = log(p / (1 - p)), p the mean of the class-1 target."""
        p = np.clip(mean, 1e-12, 1.0 - 1e-12)
        return np.log(p) - np.log1p(-p)

    def block(self, logits, target, weights):
        """Per row ``-p log q - (1-p) log(1-q) = log(1 + e^z) - p z`` (from the logit, no
        log(0)); the residual is q - p."""
        z = logits[0]
        if target.labels is not None:
            truth = target.labels
            p = truth.astype(np.float64)
            if target.smoothing:
                p = p * (1.0 - target.smoothing) + target.smoothing / 2.0
        else:
            p = target.proba[:, 1]
            truth = target.hard_labels()
        n_correct = int(np.count_nonzero((z > 0) == (truth == 1)))
        losses = np.logaddexp(0.0, z)
        losses -= p * z
        expit(z, out=z)
        z -= p
        if weights is not None:
            losses *= weights
            z *= weights
        return float(losses.sum()), n_correct


class Softmax(Link):
    """K classes, K logits: Q = softmax(u)."""

    name = "softmax"
    curvature = 0.5  # lambda_max(diag(q) - q q^T) <= 1/2
    kernel_softmax = True

    def n_outputs(self, n_classes: int) -> int:
        return n_classes

    def proba(self, logits):
        return softmax(logits)

    def log_proba(self, logits):
        return log_softmax(logits)

    def predict_index(self, logits):
        return np.argmax(logits, axis=1)

    def null_logits(self, mean):
        """u_k = log p_k, centred (softmax is blind to a constant)."""
        log_p = np.log(np.clip(mean, 1e-12, 1.0))
        return log_p - log_p.mean()

    def block(self, logits, target, weights):
        """Per row ``log sum_k e^{u_k} - sum_k p_k u_k``, u the logits less their maximum
        (log-sum-exp: no overflow, no log(0)). The block is classes by rows, (K, m), so that
        every reduction over the classes runs along whole rows of length m, which numpy
        vectorises. Hard labels index the true class; no one-hot matrix is built.

        A row is right when its true class is the first of the classes whose logit is the
        largest (``predict_index``'s rule): after the shift those logits are 0. Only rows with
        a tie need a search along the short class axis.
        """
        k, m = logits.shape
        logits -= logits.max(axis=0)
        truth = target.labels if target.labels is not None else target.hard_labels()
        true_entries = truth * m + np.arange(m)  # flat positions of (truth_i, i): faster than 2-D
        flat = logits.reshape(-1)
        true_logit = flat[true_entries]
        at_max = np.count_nonzero(logits == 0.0, axis=0)
        right = (true_logit == 0.0) & (at_max == 1)
        tied = np.flatnonzero(at_max > 1)
        if tied.size:
            first = np.argmax(logits[:, tied] == 0.0, axis=0)
            right[tied] = first == truth[tied]
        n_correct = int(np.count_nonzero(right))
        if target.labels is not None:
            eps = target.smoothing
            target_term = (1.0 - eps) * true_logit
            if eps:
                target_term += eps * logits.mean(axis=0)
        else:
            target_term = np.einsum("ij,ji->i", target.proba, logits)
        np.exp(logits, out=logits)
        sums = logits.sum(axis=0)
        logits *= 1.0 / sums
        losses = np.log(sums)
        losses -= target_term
        if target.labels is not None:
            flat[true_entries] -= 1.0 - target.smoothing
            if target.smoothing:
                logits -= target.smoothing / k
        else:
            logits -= target.proba.T
        if weights is not None:
            losses *= weights
            logits *= weights
        return float(losses.sum()), n_correct


SIGMOID = Sigmoid()
SOFTMAX = Softmax()


def get_link(name: str | Link, n_classes: int | None = None) -> Link:
    """Resolve a link name. ``"auto"`` is the sigmoid for two classes, else the softmax."""
    if isinstance(name, Link):
        return name
    if name == "auto":
        if n_classes is None:
            raise ConfigError("link 'auto' needs the number of classes")
        return SIGMOID if n_classes == 2 else SOFTMAX
    if name not in LINK_NAMES:
        raise ConfigError(f"unknown link {name!r}: use auto, sigmoid or softmax")
    link = SIGMOID if name == "sigmoid" else SOFTMAX
    if link is SIGMOID and n_classes is not None and n_classes != 2:
        raise ConfigError(
            f"the sigmoid link needs exactly 2 classes, the data have {n_classes}: "
            "use --link softmax (or auto)"
        )
    return link
