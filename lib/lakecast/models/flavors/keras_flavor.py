"""Keras 3 models as ``.keras`` files, loaded with ``safe_mode=True`` (no lambda deserialising).

The backend comes from ``KERAS_BACKEND`` (TensorFlow when unset), so the same file runs on
TensorFlow, JAX or PyTorch. Keras reads only from a path, so the verified bytes are written to
a private temporary file and loaded from there: what is loaded is what was hashed.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lakecast.errors import SchemaError, UnsafeArtifactError
from lakecast.models.flavors.reproducible import canonical_keras, rewrite_zip
from lakecast.models.flavors.safe_versions import require_safe_release
from lakecast.models.predictor import MatrixPredictor, NanPolicy
from lakecast.monitoring.logging import native_stderr_as_logs
from lakecast.registry.signature import Signature

FILE_NAME = "model.keras"
DEFAULT_BACKEND = "tensorflow"
# model.predict builds a dataset pipeline per call, which costs more than a small model's
# forward pass; compiled calls on slices of this many rows keep memory bounded instead.
_SLICE_ROWS = 65_536


def import_keras() -> Any:
    """Import keras with the configured backend (env ``KERAS_BACKEND``, default TensorFlow)."""
    os.environ.setdefault("KERAS_BACKEND", DEFAULT_BACKEND)
    if "keras" in sys.modules:
        return sys.modules["keras"]
    # TensorFlow's C++ start-up lines become log records (JSON lines in a service).
    with native_stderr_as_logs("tensorflow"):
        import keras

    return keras


def save(model: Any, directory: Path) -> Path:
    """Write ``model`` as ``directory/model.keras`` (Keras 3 zip format), byte-reproducibly
    (same model, same sha256; layers and optimizer must be named, as Keras's automatic names
    count the objects made before in the process)."""
    path = directory / FILE_NAME
    model.save(path)
    rewrite_zip(path, canonical_keras)
    return path


def load(data: bytes, where: str) -> Any:
    """Build the Keras model from verified artifact bytes, in safe mode.

    Raises:
        UnsafeArtifactError: the file is not a loadable ``.keras`` archive or needs unsafe code.
        EnvironmentSetupError: the installed Keras is older than 3.12.
    """
    require_safe_release("keras")
    keras = import_keras()
    with tempfile.TemporaryDirectory(prefix="lakecast-keras-") as tmp:
        path = Path(tmp) / FILE_NAME
        path.write_bytes(data)
        try:
            # The backend finds its devices as the first model is built; TensorFlow then
            # writes C++ lines again (cuInit on a machine without a GPU).
            with native_stderr_as_logs("tensorflow"):
                return keras.saving.load_model(path, safe_mode=True, compile=False)
        except Exception as exc:  # keras raises ValueError, TypeError, zipfile errors...
            msg = (
                f"{where}: keras artifact failed to load in safe mode: {type(exc).__name__}: {exc}"
            )
            raise UnsafeArtifactError(msg) from exc


def compiled_with_xla(data: bytes) -> bool:
    """Whether the ``.keras`` archive was saved compiled with ``jit_compile=True`` (what
    ``lakecast models optimize --to xla`` writes): its forward pass is then served through
    XLA. Read from the archive's ``config.json``; ``"auto"`` or False (the training recipes
    save False) is the backend's default graph."""
    import io
    import json
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            config = json.loads(archive.read("config.json"))
    except (KeyError, ValueError, zipfile.BadZipFile):
        return False  # load() says what is wrong with the archive
    compile_config = config.get("compile_config") if isinstance(config, dict) else None
    return isinstance(compile_config, dict) and compile_config.get("jit_compile") is True


def transposed_forward(
    model: Any, *, jit_compile: bool = False
) -> Callable[[np.ndarray], np.ndarray]:
    """``model``'s inference on a (inputs, rows) matrix, compiled by the backend (through XLA
    where ``jit_compile``, on TensorFlow; JAX always compiles with XLA).

    The features arrive as Arrow columns; a column-major matrix is cheap to build from them,
    and its transpose is a C-contiguous (inputs, rows) array. Transposing inside the compiled
    graph lets the first matmul read it as it is (TensorFlow's Grappler and XLA fold the
    transpose into the product), where a row-major copy in numpy costs more than the model.
    """
    backend = import_keras().backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        forward = tf.function(
            lambda xt: model(tf.transpose(xt), training=False),
            reduce_retracing=True,
            jit_compile=True if jit_compile else None,
        )
        return lambda xt: forward(xt).numpy()
    if backend == "jax":
        import jax

        @jax.jit
        def jitted(trainable: Any, fixed: Any, xt: Any) -> Any:
            return model.stateless_call(trainable, fixed, xt.T, training=False)[0]

        # The variables' buffers are read per call: Keras's own predict donates and replaces
        # them, so a value kept from before would be a deleted array.
        return lambda xt: np.asarray(
            jitted(
                [v.value for v in model.trainable_variables],
                [v.value for v in model.non_trainable_variables],
                xt,
            )
        )
    return lambda xt: np.asarray(model.predict_on_batch(np.ascontiguousarray(xt.T)))


class KerasPredictor(MatrixPredictor):
    """A Keras model behind the Predictor protocol; a (n, 1) or (n, 2) output becomes (n,)."""

    dtype = np.float32  # Keras computes in float32: build that matrix directly
    order = "F"  # see transposed_forward

    def __init__(
        self, model: Any, signature: Signature, nan_policy: NanPolicy, *, jit_compile: bool = False
    ) -> None:
        super().__init__(model, signature, nan_policy)
        self.jit_compile = jit_compile
        self._forward = transposed_forward(model, jit_compile=jit_compile)

    def raw_scores(self, matrix: np.ndarray) -> np.ndarray:
        columns = matrix.T  # (inputs, rows), C-contiguous when matrix is column-major
        raw = [
            self._forward(columns[:, start : start + _SLICE_ROWS])
            for start in range(0, matrix.shape[0], _SLICE_ROWS)
        ]
        scores = np.concatenate(raw).astype(np.float64)
        if scores.ndim == 2 and scores.shape[1] == 2:
            return scores[:, 1]
        if scores.ndim == 2 and scores.shape[1] != 1:
            msg = f"keras model output has shape {scores.shape}; expected one score per row"
            raise SchemaError(msg)
        return scores
