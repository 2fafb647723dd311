"""Link functions: logits -> probabilities and log-probabilities, computed stably.

Raw predictions are always 2-D, ``(n_samples, n_outputs)``: one column for the sigmoid (the
logit of the second class), ``n_classes`` columns for the softmax. ``proba`` and ``log_proba``
always return one column per class, so a sigmoid model reports ``[1 - q, q]``.

Stability: the softmax subtracts each row's maximum before ``exp`` (the probabilities are
unchanged) and the log-probabilities are ``u - max(u) - log(sum(exp(u - max(u))))``; the
sigmoid uses scipy's ``expit`` and ``log_expit``. Nothing overflows at logits of +-1e4 and no
``log(0)`` is taken.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, log_expit

from .errors import ConfigError

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


@dataclass(frozen=True)
class Link:
    """A link function by name: ``"sigmoid"`` (two classes, one logit) or ``"softmax"``."""

    name: str

    def n_outputs(self, n_classes: int) -> int:
        """Number of logit columns: 1 for the sigmoid, ``n_classes`` for the softmax."""
        return 1 if self.name == "sigmoid" else n_classes

    def proba(self, logits: np.ndarray) -> np.ndarray:
        """Class probabilities (n_samples, n_classes) from logits (n_samples, n_outputs)."""
        if self.name == "sigmoid":
            q = sigmoid(logits[:, 0])
            return np.column_stack([sigmoid(-logits[:, 0]), q])
        return softmax(logits)

    def log_proba(self, logits: np.ndarray) -> np.ndarray:
        """Class log-probabilities (n_samples, n_classes), computed from the logits."""
        if self.name == "sigmoid":
            z = logits[:, 0]
            return np.column_stack([log_sigmoid(-z), log_sigmoid(z)])
        return log_softmax(logits)

    def predict_index(self, logits: np.ndarray) -> np.ndarray:
        """Index of the most probable class for each row, (n_samples,)."""
        if self.name == "sigmoid":
            return (logits[:, 0] > 0).astype(np.intp)
        return np.argmax(logits, axis=1)


SIGMOID = Link("sigmoid")
SOFTMAX = Link("softmax")


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
