"""xent: sigmoid and softmax regression from first principles.

One gradient, X^T (Q - P) / n + l2 W, trains both links (``xent.loss.loss_and_grad``).
"""

from .errors import XentError
from .model import Model

__version__ = "0.1.0"
__all__ = ["Model", "SoftmaxRegression", "SoftmaxRegressionCV", "XentError", "__version__"]


def __getattr__(name):
    # scikit-learn is imported only by whoever uses the estimator (it costs ~45 MB of memory)
    if name in ("SoftmaxRegression", "SoftmaxRegressionCV"):
        from . import estimator

        return getattr(estimator, name)
    raise AttributeError(f"module 'xent' has no attribute {name!r}")
