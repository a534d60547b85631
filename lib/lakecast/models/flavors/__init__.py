"""Model flavors: how each kind of model is saved to, and safely loaded from, an artifact.

``onnx`` is the flavor of optimised versions (:mod:`lakecast.models.optimize`): its files are
made by the converters there and registered as artifacts, never saved from a model object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lakecast.errors import RegistryError
from lakecast.models.predictor import NanPolicy, Predictor
from lakecast.registry.records import Flavor
from lakecast.registry.signature import Signature


def detect_flavor(model: Any) -> Flavor:
    """``keras`` or ``sklearn`` from the model object's class, without importing keras."""
    modules = [cls.__module__ for cls in type(model).__mro__]
    if any(m.startswith(("keras", "tf_keras", "tensorflow")) for m in modules):
        return "keras"
    if any(m.startswith("sklearn") for m in modules):
        return "sklearn"
    msg = f"cannot tell the flavor of a {type(model).__module__}.{type(model).__name__}"
    raise RegistryError(msg)


def save_model(model: Any, flavor: str, directory: Path) -> Path:
    """Save ``model`` in its flavor's format into ``directory``; the file's path."""
    if flavor == "keras":
        from lakecast.models.flavors import keras_flavor

        return keras_flavor.save(model, directory)
    if flavor == "sklearn":
        from lakecast.models.flavors import sklearn_flavor

        return sklearn_flavor.save(model, directory)
    msg = f"unknown flavor {flavor!r}; known are keras, sklearn"
    raise RegistryError(msg)


def build_predictor(
    data: bytes,
    flavor: str,
    signature: Signature,
    nan_policy: NanPolicy,
    where: str,
    *,
    sha256_verified: bool,
    threads: int | None = None,
) -> Predictor:
    """A Predictor from an artifact's bytes (which the caller has checked).

    ``threads``: the threads of a runtime that sizes its own pool at load (ONNX Runtime);
    default the serving setting ``model_threads``. Other flavors obey threadpoolctl's limit
    around their calls.
    """
    if flavor == "keras":
        from lakecast.models.flavors import keras_flavor

        return keras_flavor.KerasPredictor(
            keras_flavor.load(data, where),
            signature,
            nan_policy,
            jit_compile=keras_flavor.compiled_with_xla(data),
        )
    if flavor == "sklearn":
        from lakecast.models.flavors import sklearn_flavor

        model = sklearn_flavor.load(
            data, where, sha256_verified=sha256_verified, width=len(signature.inputs)
        )
        return sklearn_flavor.SklearnPredictor(model, signature, nan_policy)
    if flavor == "onnx":
        from lakecast.models.flavors import onnx_flavor

        session = onnx_flavor.load(data, where, threads=threads)
        return onnx_flavor.OnnxPredictor(session, signature, nan_policy)
    msg = f"{where}: unknown flavor {flavor!r}; known are keras, sklearn, onnx"
    raise RegistryError(msg)


__all__ = ["build_predictor", "detect_flavor", "save_model"]
