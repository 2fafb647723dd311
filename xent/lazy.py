"""Mini-batch steps on sparse (CSR) rows that touch only the features present in a batch.

A batch of hashed text touches a few thousand of W's rows; a dense step would rewrite all of
them (and Adam's two moment arrays) every time. ``epoch`` runs the compiled kernel
``_compiled.lazy_epoch`` instead:

- SGD (``gd``): W is held as s V, so the L2 shrinkage (1 - lr l2) W of every step is one
  multiplication of s, and the data part of the step, lr X_B^T R_B / n_B, is written into the
  touched rows of V only. The weights are those of the dense step exactly (the tests hold the
  two to 1e-10).
- AdaGrad: a coordinate without gradient neither moves nor changes its sum of squares, so
  without L2 the lazy step is the dense one; L2 is the same shrinkage as SGD's (decoupled from
  the adaptive scaling, as AdamW decouples it).
- Adam: only the touched rows' moments are updated, the bias correction taken at the global
  step (PyTorch's SparseAdam, TensorFlow's LazyAdam): a different algorithm from dense Adam,
  whose moments decay every step; L2 as for AdaGrad.

The bias row is dense and stepped by the optimiser's own rule. The kernel runs on one thread
(the steps are sequential); the epoch's full evaluation that follows uses every core.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .loss import Objective
from .optim import (
    ADAGRAD_EPS,
    ADAM_B1,
    ADAM_B2,
    ADAM_EPS,
    AdagradState,
    AdamState,
    GDState,
)
from .sources import sorted_batches
from .targets import Target

#: optimiser name -> the kernel's method number
LAZY_METHODS = {"gd": 0, "adagrad": 1, "adam": 2}


class LazyStep(NamedTuple):
    """What ``_compiled.lazy_epoch`` steps by: the method (``LAZY_METHODS``), the learning
    rate, the L2 penalty, whether b moves, Adam's b1 and b2 and the tiny number added to the
    denominator (the dense optimisers' own constants: ``step_constants``)."""

    method: int
    lr: float
    l2: float
    fit_intercept: bool
    b1: float
    b2: float
    tiny: float


class LazyState(NamedTuple):
    """The adaptive methods' state as ``_compiled.lazy_epoch`` updates it in place: AdaGrad's
    sum of squares or Adam's first moment (slow) and second (fast), each (d + 1, k) with b's
    row last, and Adam's step count (1,); arrays a method does not use are (1, k) zeros."""

    slow: np.ndarray
    fast: np.ndarray
    count: np.ndarray


def step_constants(method: int) -> tuple[float, float, float]:
    """(b1, b2, tiny) of a method: Adam's, or AdaGrad's epsilon (SGD uses none)."""
    if method == 1:
        return 0.0, 0.0, ADAGRAD_EPS
    return ADAM_B1, ADAM_B2, ADAM_EPS


def supports(optimizer: str, objective: Objective) -> bool:
    """Whether ``optimizer``'s mini-batch steps on sparse rows can be lazy: SGD, AdaGrad and
    Adam without L1 (SGD's cumulative L1 penalty is dense)."""
    return optimizer in LAZY_METHODS and not objective.l1


def epoch(optimizer: str, params: np.ndarray, state, X, target: Target, weights,
          order: np.ndarray, batch_size: int, objective: Objective, in_place: bool = False):
    """The optimiser's steps over the CSR rows ``order`` of X, ``batch_size`` at a time, from
    ``params`` (n_features + 1, n_outputs) and ``state`` (the dense optimiser's, so that a
    checkpoint is the same either way). Returns (params, state, number of steps); the
    arguments are not modified, unless ``in_place``: then ``params`` and the state's arrays
    (the caller's own copies, float64 and C-ordered) are stepped where they are, so that a
    streamed epoch's blocks do not copy W-sized arrays for each block."""
    from . import kernels

    def own(array):
        return array if in_place and array.dtype == np.float64 and array.flags.c_contiguous \
            else np.array(array, dtype=np.float64, order="C")

    params = own(params)
    k = params.shape[1]
    method = LAZY_METHODS[optimizer]
    unused = np.zeros((1, k))
    if method == 1:
        moments = LazyState(own(state.sum_sq), unused, np.zeros(1, np.int64))
    elif method == 2:
        moments = LazyState(own(state.m), own(state.v), np.array([state.count], np.int64))
    else:
        moments = LazyState(unused, unused, np.zeros(1, np.int64))
    step = LazyStep(method, float(state.lr), float(objective.l2),
                    bool(objective.fit_intercept), *step_constants(method))
    arguments = (kernels.csr_arrays(X), sorted_batches(order, batch_size), int(batch_size),
                 kernels.Linear(params[:-1], params[-1]), kernels.row_targets(target, weights),
                 objective.link.kernel_softmax, step, moments)
    n_steps = kernels.compiled_call(("lazy", X.data.dtype.str, X.indices.dtype.str),
                                    lambda: kernels.kernels().lazy_epoch(*arguments))
    if method == 1:
        state = AdagradState(state.lr, moments.slow)
    elif method == 2:
        state = AdamState(state.lr, moments.slow, moments.fast, int(moments.count[0]))
    else:
        state = GDState(state.lr)
    return params, state, int(n_steps)
