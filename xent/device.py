"""The same loss and gradient on an accelerator: written once against the array API standard
(through array-api-compat), so numpy, CuPy and array-api-strict run one code.

For rows X (n, d) in the array library ``xp``, parameters W (d, k) and b (k,) moved there:

    Z = X W + b                      the logits, in X's dtype (float32 products on a GPU)
    loss_i = lse(z_i) - p_i . z_i    softmax (sigmoid: log(1 + e^z) - p z), from the logits
    R = w (Q - P),  G = X^T R        the residual and the gradient's sums

each row block's sums come back to the host as float64 numbers and arrays (``loss.Sums``), so
the optimisers, the stopping rule and the model are the ones every other source gets, and a
model trained on the GPU is an ordinary model file. ``ArrayApiSource`` is the ``RowSource``:
X is moved to the device once (a block at a time at every evaluation when it does not fit
there); every evaluation sends W and b and gets back the sums. ``logits`` is prediction's
Z = X W + b on the device.

``namespace("cuda")`` is CuPy on the first GPU (a one-line error naming what is missing when
there is none); ``namespace("cpu")`` numpy through array-api-compat (what the tests run, with
array-api-strict too).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ConfigError
from .links import Link
from .loss import Sums
from .sources import batch_rows
from .targets import Target

DEVICES = ("cpu", "cuda")
#: rows per device block: Z and R are block x k, so memory stays bounded for a 1000-class probe
BLOCK_ROWS = 1 << 16


def namespace(device: str, tf32: bool = False):
    """The array namespace for ``device``: "cpu" is numpy, "cuda" CuPy (needs CuPy and a GPU;
    ``tf32`` lets its float32 products use TF32)."""
    import array_api_compat

    if device == "cpu":
        return array_api_compat.array_namespace(np.zeros(1))
    if device != "cuda":
        raise ConfigError(f"unknown device {device!r}: use one of {', '.join(DEVICES)}")
    if tf32:
        os.environ.setdefault("CUPY_TF32", "1")  # read when CuPy is first imported
    try:
        import cupy
    except ImportError:
        raise ConfigError("--device cuda needs CuPy: pip install 'xent[cuda]' (or cupy-cudaXX "
                          "for your CUDA), or use --device cpu") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception:  # CuPy raises its own CUDA errors when there is no driver
        count = 0
    if count < 1:
        raise ConfigError("--device cuda: no CUDA GPU is visible to this process; use "
                          "--device cpu")
    return array_api_compat.array_namespace(cupy.zeros(1))


def block_sums(xp, X, W, b, labels, proba, smoothing: float, weights, softmax: bool,
               with_grad: bool):
    """(loss_sum, n_correct, G^T (k, d), g_b (k,)) of the rows X (n, d) in namespace ``xp``:
    labels (n,) integer classes or None with proba (n, K) soft targets; weights (n,) or None.
    The loss and the residual are taken in float64 whatever X's dtype; the product X^T R in
    X's dtype. Returns device arrays."""
    n = X.shape[0]
    Z = xp.astype(X @ W + b, xp.float64)
    k = Z.shape[1]
    if softmax:
        top = xp.max(Z, axis=1, keepdims=True)
        shifted = Z - top
        E = xp.exp(shifted)
        total = xp.sum(E, axis=1, keepdims=True)
        if proba is None:
            onehot = xp.astype(xp.arange(k)[None, :] == labels[:, None], xp.float64)
            P = (1.0 - smoothing) * onehot + smoothing / k
        else:
            P = proba
        loss = xp.log(total[:, 0]) - xp.sum(P * shifted, axis=1)
        R = E / total - P
        truth = labels if proba is None else xp.argmax(P, axis=1)
        right = xp.argmax(Z, axis=1) == truth
    else:
        z = Z[:, 0]
        if proba is None:
            p = xp.astype(labels, xp.float64) * (1.0 - smoothing) + smoothing / 2.0
            truth = labels == 1
        else:
            p = proba[:, 1]
            truth = proba[:, 1] > proba[:, 0]
        e = xp.exp(-xp.abs(z))  # log(1 + e^z) = max(z, 0) + log1p(e^-|z|): no overflow
        loss = xp.where(z > 0, z, 0.0) + xp.log1p(e) - p * z
        q = xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        R = (q - p)[:, None]
        right = (z > 0) == truth
    if weights is not None:
        loss = loss * weights
        R = R * weights[:, None]
    loss_sum = xp.sum(loss)
    n_right = xp.sum(xp.astype(right, xp.int64))
    if not with_grad:
        return loss_sum, n_right, None, None
    grad_t = xp.matrix_transpose(xp.astype(R, X.dtype)) @ X  # (k, d): R^T X = (X^T R)^T
    return loss_sum, n_right, grad_t, xp.sum(R, axis=0) if n else xp.zeros(k)


def _host(values, dtype) -> np.ndarray | None:
    return None if values is None else np.asarray(values, dtype=dtype)


def to_host(array) -> np.ndarray:
    """A device array as a float64 numpy array (a CuPy array copied from the GPU)."""
    import array_api_compat

    if array_api_compat.is_cupy_array(array):
        return array.get().astype(np.float64)
    return np.asarray(array, dtype=np.float64)


def fits_on_device(X, xp) -> bool:
    """Whether X can be held on ``xp``'s device with room to spare for a block's temporaries
    (always on the CPU)."""
    import array_api_compat

    if not array_api_compat.is_cupy_namespace(xp):
        return True
    import cupy

    free, _ = cupy.cuda.runtime.memGetInfo()
    return X.nbytes <= 0.8 * free


def logits(X, coef: np.ndarray, intercept: np.ndarray, xp,
           block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """Z = X W + b (n, k) as float64 on the host, computed in ``xp`` (on its device) a block
    of rows at a time: each block of X (dense, n x d) is moved there, multiplied in float64
    and its logits brought back, so prediction reads X once and never holds it all on the
    device. The model file's W (d, k) and b (k,) are moved once."""
    import scipy.sparse as sp

    if sp.issparse(X):
        raise ConfigError(_SPARSE_MESSAGE)
    W = xp.asarray(np.ascontiguousarray(coef, dtype=np.float64))
    b = xp.asarray(np.ascontiguousarray(intercept, dtype=np.float64))
    out = np.empty((X.shape[0], W.shape[1]))
    for start in range(0, X.shape[0], block_rows):
        block = np.ascontiguousarray(X[start:start + block_rows], dtype=np.float64)
        out[start:start + len(block)] = to_host(xp.asarray(block) @ W + b)
    return out


def linear_logits(X, coef: np.ndarray, intercept: np.ndarray, device: str) -> np.ndarray:
    """Z = X W + b (n, k) float64 on the host, the product taken on ``device``: "cpu" here
    (dense or CSR X), else a block of rows at a time there (``logits``)."""
    if device == "cpu":
        return np.asarray(X @ coef) + intercept
    return logits(X, coef, intercept, namespace(device))


_SPARSE_MESSAGE = ("--device cuda takes dense features; this data is sparse (LIBSVM or text): "
                   "use --device cpu")


@dataclass(frozen=True)
class DeviceRows:
    """Rows held in an array namespace: features X (n, d), and per row the class (int64) or
    the soft target (n, K), and the weight; None where the rows have none."""

    X: Any
    labels: Any = None
    proba: Any = None
    weights: Any = None

    def slice(self, start: int, stop: int) -> DeviceRows:
        return DeviceRows(*(None if a is None else a[start:stop, ...] for a in self._arrays()))

    def take(self, index, xp) -> DeviceRows:
        return DeviceRows(*(None if a is None else xp.take(a, index, axis=0)
                            for a in self._arrays()))

    def moved(self, xp) -> DeviceRows:
        """These rows (numpy arrays on the host) copied into ``xp``."""
        return DeviceRows(*(None if a is None else xp.asarray(a) for a in self._arrays()))

    def _arrays(self):
        return self.X, self.labels, self.proba, self.weights


@dataclass
class ArrayApiSource:
    """Rows on a device: a ``sources.RowSource`` whose sums run in the array namespace
    ``xp``. ``rows`` are there (X in its dtype; the target and weights too), or, when X does
    not fit in the device's memory (``resident`` False), they stay on the host and each block
    is moved for each evaluation (reading X over the bus every time: slower, but any size
    trains). ``target`` and ``weights`` stay on the host as well, for what training reads."""

    rows: DeviceRows
    target: Target
    weights: np.ndarray | None
    xp: Any
    block_rows: int = BLOCK_ROWS
    resident: bool = True

    @classmethod
    def of(cls, X: np.ndarray, target: Target, weights, xp, block_rows: int = BLOCK_ROWS,
           resident: bool | None = None):
        """Rows moved from the host into ``xp`` (dense X only); ``resident`` None: moved
        once if X fits in the device's free memory (``fits_on_device``), else a block at a
        time at every evaluation."""
        import scipy.sparse as sp

        if sp.issparse(X):
            raise ConfigError(_SPARSE_MESSAGE)
        rows = DeviceRows(np.ascontiguousarray(X), _host(target.labels, np.int64),
                          _host(target.proba, np.float64), _host(weights, np.float64))
        if resident is None:
            resident = fits_on_device(X, xp)
        return cls(rows.moved(xp) if resident else rows, target, weights, xp, block_rows,
                   resident)

    def _block(self, start: int, stop: int) -> DeviceRows:
        """Rows start..stop, on the device."""
        block = self.rows.slice(start, stop)
        return block if self.resident else block.moved(self.xp)

    @property
    def X(self):
        return self.rows.X

    @property
    def total_weight(self) -> float:
        return float(self.shape[0] if self.weights is None else np.sum(self.weights))

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.X.shape)

    @property
    def dtype(self) -> np.dtype:
        """X's dtype as numpy's (float32 or float64), wherever X is."""
        if not self.resident:
            return self.X.dtype
        return np.dtype(np.float32 if self.X.dtype == self.xp.float32 else np.float64)

    def sums(self, params, link: Link, *, with_grad=True, compute_dtype=None) -> Sums:
        xp = self.xp
        d = params.shape[0] - 1
        dtype = xp.float32 if compute_dtype is None and self.dtype == np.float32 else xp.float64
        W = xp.asarray(np.ascontiguousarray(params[:d]), dtype=dtype)
        b = xp.asarray(np.ascontiguousarray(params[d]), dtype=dtype)
        n = self.shape[0]
        loss, right = 0.0, 0
        grad_t, grad_b = np.zeros((params.shape[1], d)), np.zeros(params.shape[1])
        for start in range(0, n, self.block_rows):
            block = self._block(start, min(start + self.block_rows, n))
            X = block.X if compute_dtype is None else xp.astype(block.X, xp.float64)
            part = block_sums(xp, X, W, b, block.labels, block.proba, self.target.smoothing,
                              block.weights, link.kernel_softmax, with_grad)
            loss += float(part[0])
            right += int(part[1])
            if with_grad:
                grad_t += to_host(part[2])
                grad_b += to_host(part[3])
        return Sums(loss, right, grad_t, grad_b, n, self.total_weight)

    def gram_product(self, v, fit_intercept):
        """(Xa^T D Xa v, total weight) as ``loss.gram_product``, in row blocks on the device
        (X in float64 there for the bound)."""
        xp, d = self.xp, self.shape[1]
        w = xp.asarray(np.ascontiguousarray(v[:d]), dtype=xp.float64)
        out, bias = np.zeros(d), 0.0
        for start in range(0, self.shape[0], self.block_rows):
            block = self._block(start, min(start + self.block_rows, self.shape[0]))
            X = xp.astype(block.X, xp.float64)
            u = X @ w + (float(v[d]) if fit_intercept else 0.0)
            if block.weights is not None:
                u = u * block.weights
            out += to_host(xp.matrix_transpose(X) @ u)
            bias += float(xp.sum(u)) if fit_intercept else 0.0
        return np.append(out, bias), self.total_weight

    def information(self, params, link):
        from .inference import information

        return information(to_host(self.X), params, link.name, self.weights)

    def take(self, rows: np.ndarray) -> ArrayApiSource:
        """The rows ``rows`` (host indices), where these rows are (the device or the host)."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.resident:
            taken = self.rows.take(self.xp.asarray(rows), self.xp)
        else:
            taken = self.rows.take(rows, np)
        return ArrayApiSource(taken, self.target.take(rows),
                              None if self.weights is None else self.weights[rows], self.xp,
                              self.block_rows, self.resident)

    def minibatch_epoch(self, step, params, state, batch_size, rng):
        """The rows in one shuffled order, ``batch_size`` at a time, each batch's sums on
        the device and the step on the host."""
        batches = (self.take(rows)
                   for rows in batch_rows(rng.permutation(self.shape[0]), batch_size))
        return step(params, state, batches)
