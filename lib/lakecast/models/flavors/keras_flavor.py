"""Keras 3 models as ``.keras`` files, loaded with ``safe_mode=True`` (no lambda deserialising).

The backend comes from ``KERAS_BACKEND`` (TensorFlow when unset), so the same file runs on
TensorFlow, JAX or PyTorch. Keras reads only from a path, so the verified bytes are written to
a private temporary file and loaded from there: what is loaded is what was hashed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from lakecast.errors import SchemaError, UnsafeArtifactError
from lakecast.models.predictor import MatrixPredictor

FILE_NAME = "model.keras"
DEFAULT_BACKEND = "tensorflow"
# model.predict builds a dataset pipeline per call, which costs more than a small model's
# forward pass; direct calls on slices of this many rows keep memory bounded instead.
_SLICE_ROWS = 65_536


def import_keras() -> Any:
    """Import keras with the configured backend (env ``KERAS_BACKEND``, default TensorFlow)."""
    os.environ.setdefault("KERAS_BACKEND", DEFAULT_BACKEND)
    import keras

    return keras


def save(model: Any, directory: Path) -> Path:
    """Write ``model`` as ``directory/model.keras`` (Keras 3 zip format)."""
    path = directory / FILE_NAME
    model.save(path)
    return path


def load(data: bytes, where: str) -> Any:
    """Build the Keras model from verified artifact bytes, in safe mode.

    Raises:
        UnsafeArtifactError: the file is not a loadable ``.keras`` archive or needs unsafe code.
    """
    keras = import_keras()
    with tempfile.TemporaryDirectory(prefix="lakecast-keras-") as tmp:
        path = Path(tmp) / FILE_NAME
        path.write_bytes(data)
        try:
            return keras.saving.load_model(path, safe_mode=True, compile=False)
        except Exception as exc:  # keras raises ValueError, TypeError, zipfile errors...
            msg = (
                f"{where}: keras artifact failed to load in safe mode: {type(exc).__name__}: {exc}"
            )
            raise UnsafeArtifactError(msg) from exc


class KerasPredictor(MatrixPredictor):
    """A Keras model behind the Predictor protocol; a (n, 1) or (n, 2) output becomes (n,)."""

    dtype = np.float32  # Keras computes in float32: build that matrix directly

    def raw_scores(self, matrix: np.ndarray) -> np.ndarray:
        raw = [
            np.asarray(self.model.predict_on_batch(matrix[start : start + _SLICE_ROWS]))
            for start in range(0, matrix.shape[0], _SLICE_ROWS)
        ]
        scores = np.concatenate(raw).astype(np.float64)
        if scores.ndim == 2 and scores.shape[1] == 2:
            return scores[:, 1]
        if scores.ndim == 2 and scores.shape[1] != 1:
            msg = f"keras model output has shape {scores.shape}; expected one score per row"
            raise SchemaError(msg)
        return scores
