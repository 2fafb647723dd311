"""A trained model: W (n_features, n_outputs), b (n_outputs,), the link, the classes, the
feature names and the preprocessing to apply (categorical encoding, standardisation).

A model file is a numpy ``.npz`` holding only numeric arrays and one JSON header (format name,
version, link, classes, names, encoding). It is read with ``allow_pickle=False``, so loading a
model can never run code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .atomic import write_npz
from .data import FeatureEncoder, is_data_frame
from .errors import DataError, ModelFileError
from .links import Link, get_link
from .preprocess import Standardizer

FORMAT_NAME = "xent-model"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Scores:
    """What a linear model says about some rows, from their logits (n_samples, n_outputs):
    the one prediction path, for ``Model``, the estimator and ``xent eval``/``predict``."""

    logits: np.ndarray
    link: Link
    classes: np.ndarray

    @property
    def index(self) -> np.ndarray:
        """(n_samples,) index of the most probable class (a tie: the first)."""
        return self.link.predict_index(self.logits)

    @property
    def labels(self) -> np.ndarray:
        """(n_samples,) the most probable class by its original label."""
        return self.classes[self.index]

    @property
    def proba(self) -> np.ndarray:
        """(n_samples, n_classes) probabilities; each row sums to 1."""
        return self.link.proba(self.logits)

    @property
    def log_proba(self) -> np.ndarray:
        """(n_samples, n_classes) log-probabilities, from the logits."""
        return self.link.log_proba(self.logits)

    @property
    def decision(self) -> np.ndarray:
        """scikit-learn's decision_function: (n_samples,) the second class's log-odds for two
        classes, else the logits (n_samples, n_classes)."""
        if self.logits.shape[1] == 1:
            return self.logits[:, 0]
        if len(self.classes) == 2:
            return self.logits[:, 1] - self.logits[:, 0]
        return self.logits


@dataclass
class Model:
    """A linear classifier: logits = standardise(encode(data)) @ coef + intercept."""

    coef: np.ndarray
    intercept: np.ndarray
    classes: list
    link: str
    feature_names: list[str]
    standardizer: Standardizer | None = None
    encoder: FeatureEncoder | None = None
    metadata: dict = field(default_factory=dict)

    @classmethod
    def from_params(cls, params: np.ndarray, **kwargs) -> Model:
        """From the stacked parameters (n_features + 1, n_outputs) that training works on: W and
        b are views of ``params``, not copies (hashed text's W is tens of MB), so ``params`` is
        the model's from then on."""
        return cls(params[:-1], params[-1], **kwargs)

    @property
    def params(self) -> np.ndarray:
        return np.vstack([self.coef, self.intercept[None, :]])

    @property
    def n_features(self) -> int:
        return self.coef.shape[0]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def features(self, data):
        """The model's input matrix from raw data: a DataFrame (encoded with the stored
        encoder), a dense array or a sparse matrix; then standardised as in training."""
        if is_data_frame(data):
            if self.encoder is None:
                X = data.to_numpy(dtype=np.float64)
            else:
                X = self.encoder.transform(data).X
        elif sp.issparse(data):
            X = sp.csr_matrix(data, dtype=np.float64)
        else:
            X = np.asarray(data, dtype=np.float64)
            if X.ndim == 1:
                X = X[None, :]
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise DataError(
                f"the model expects {self.n_features} features, the data have {X.shape[-1]}"
            )
        return X if self.standardizer is None else self.standardizer.transform(X)

    def decision_function(self, data, device: str = "cpu") -> np.ndarray:
        """Logits (n_samples, n_outputs): 1 column for the sigmoid, n_classes for the softmax;
        the product X W taken on ``device`` ("cuda": in blocks on the GPU, ``device.logits``)."""
        from .device import linear_logits

        return linear_logits(self.features(data), self.coef, self.intercept, device)

    def scores(self, data, device: str = "cpu") -> Scores:
        """The model's ``Scores`` of raw data (see ``features``), its logits taken on
        ``device``."""
        return Scores(self.decision_function(data, device), get_link(self.link),
                      np.asarray(self.classes, dtype=object))

    def predict_proba(self, data) -> np.ndarray:
        """Class probabilities (n_samples, n_classes); each row sums to 1."""
        return self.scores(data).proba

    def predict_log_proba(self, data) -> np.ndarray:
        """Class log-probabilities (n_samples, n_classes), from the logits."""
        return self.scores(data).log_proba

    def predict_index(self, data) -> np.ndarray:
        """Index into ``classes`` of the most probable class, (n_samples,)."""
        return self.scores(data).index

    def predict(self, data) -> np.ndarray:
        """The most probable class of each row, by its original label (n_samples,)."""
        return self.scores(data).labels

    # ---- files -----------------------------------------------------------------------------

    def header(self) -> dict:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "link": self.link,
            "classes": list(self.classes),
            # hashed text features are named by the encoder, not listed one by one
            "feature_names": list(self.feature_names) if self.encoder is None or
            self.encoder.text is None else self.encoder.tabular_names,
            "standardize": None
            if self.standardizer is None
            else {"centered": self.standardizer.mean is not None},
            "encoder": None if self.encoder is None else self.encoder.to_dict(),
            "metadata": self.metadata,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the model to ``path`` (.npz) atomically: a crash leaves the old file or none."""
        arrays = {
            "header": np.array(json.dumps(self.header(), ensure_ascii=False)),
            "coef": self.coef,
            "intercept": self.intercept,
        }
        if self.standardizer is not None:
            arrays["scale"] = self.standardizer.scale
            if self.standardizer.mean is not None:
                arrays["mean"] = self.standardizer.mean
        write_npz(path, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Model:
        """Read a model file written by ``save``. Anything else is a ``ModelFileError``."""
        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f"{path}: no such model file")
        with open(path, "rb") as handle:
            magic = handle.read(4)
        if magic[:1] == b"\x80":
            raise ModelFileError(f"{path}: the file is a Python pickle, which xent never loads "
                                 "(it could run code); a xent model is an .npz archive")
        if magic != b"PK\x03\x04":
            raise ModelFileError(f"{path}: not a readable xent model file (not an .npz "
                                 "archive; corrupt or truncated?)")
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
        except MemoryError:
            raise
        except ValueError as exc:
            if "pickle" in str(exc):
                raise ModelFileError(
                    f"{path}: the file holds pickled objects, which xent never loads"
                ) from None
            raise ModelFileError(f"{path}: not a xent model file ({exc})") from None
        except Exception as exc:  # zipfile, zlib and numpy fail in many ways on damaged bytes
            raise ModelFileError(
                f"{path}: not a readable xent model file (corrupt or truncated: {exc})"
            ) from None
        return cls._from_arrays(arrays, path)

    @classmethod
    def _from_arrays(cls, arrays: dict, path: Path) -> Model:
        if "header" not in arrays:
            raise ModelFileError(f"{path}: not a xent model file (no header)")
        try:
            header = json.loads(str(arrays["header"]))
        except json.JSONDecodeError:
            raise ModelFileError(f"{path}: the model header is not valid JSON") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
            raise ModelFileError(f"{path}: not a xent model file (format is not {FORMAT_NAME!r})")
        version = header.get("version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ModelFileError(
                f"{path}: written by a newer xent (model format version {version}; this xent "
                f"reads up to {FORMAT_VERSION}): upgrade xent"
            )
        try:
            coef = np.asarray(arrays["coef"], dtype=np.float64)
            intercept = np.asarray(arrays["intercept"], dtype=np.float64)
            link = get_link(header["link"], len(header["classes"]))
            standardizer = None
            if header.get("standardize") is not None:
                mean = arrays.get("mean")
                standardizer = Standardizer(
                    None if mean is None else np.asarray(mean, np.float64),
                    np.asarray(arrays["scale"], np.float64),
                )
            encoder = header.get("encoder")
            encoder = None if encoder is None else FeatureEncoder.from_dict(encoder)
            names = list(header["feature_names"])
            if encoder is not None and encoder.text is not None:
                names = encoder.feature_names
            model = cls(coef, intercept, list(header["classes"]), link.name, names,
                        standardizer, encoder, dict(header.get("metadata") or {}))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelFileError(
                f"{path}: the model file is incomplete or inconsistent ({exc})"
            ) from None
        k = link.n_outputs(model.n_classes)
        if coef.ndim != 2 or coef.shape[1] != k or intercept.shape != (k,):
            raise ModelFileError(f"{path}: the model's weights do not match its classes and link")
        if not (np.all(np.isfinite(coef)) and np.all(np.isfinite(intercept))):
            raise ModelFileError(f"{path}: the model's weights are not finite")
        return model
