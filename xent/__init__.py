"""xent: sigmoid and softmax regression from first principles.

One gradient, X^T (Q - P) / n + l2 W, trains both links (``xent.loss.loss_and_grad``).
"""

from .errors import XentError
from .estimator import SoftmaxRegression
from .model import Model

__version__ = "0.1.0"
__all__ = ["Model", "SoftmaxRegression", "XentError", "__version__"]
