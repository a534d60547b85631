"""The model a Python worker scores with, loaded once per worker process and kept by sha256.

The driver resolves the version in the registry, reads the artifact's bytes and checks their
sha256 (a tampered file stops the job there, before any task runs), then broadcasts a
:class:`ModelPayload`. So executors need no access to the registry's folder, which on a real
cluster is often not mounted on them. A worker checks the hash again, fixes its accelerator
placement *before* the first framework import, builds the Predictor and keeps it: Spark reuses
Python workers across tasks (``spark.python.worker.reuse``), so later tasks skip the load.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lakecast.errors import ModelIntegrityError
from lakecast.models.predictor import NanPolicy, Predictor
from lakecast.registry.signature import Signature

if TYPE_CHECKING:
    from lakecast.registry.records import ModelVersion
    from lakecast.scoring.placement import Placement

MAX_MODELS_PER_WORKER = 4


@dataclass(frozen=True)
class ModelPayload:
    """A verified artifact and what is needed to build its Predictor, without the registry."""

    name: str
    version: str
    sha256: str
    flavor: str
    signature_json: str
    nan_policy: NanPolicy
    artifact: bytes

    @classmethod
    def from_version(cls, record: ModelVersion) -> ModelPayload:
        """Read and verify ``record``'s artifact.

        Raises:
            ModelIntegrityError: the artifact is missing or its sha256 differs from the record.
        """
        from lakecast.registry.artifacts import read_verified

        data = read_verified(Path(record.artifact_path), record.sha256, record.name, record.version)
        return cls(
            name=record.name,
            version=record.version,
            sha256=record.sha256,
            flavor=record.flavor,
            signature_json=record.signature.to_json(),
            nan_policy=record.nan_policy,
            artifact=data,
        )

    @property
    def signature(self) -> Signature:
        return Signature.from_json(self.signature_json)

    @property
    def cache_key(self) -> tuple[str, str, str]:
        # The same artifact may be registered again with another NaN policy or signature (a
        # minor or patch version): the loaded model is the same, its Predictor is not.
        return (self.sha256, self.nan_policy, self.signature_json)

    @property
    def where(self) -> str:
        return f"model {self.name!r} version {self.version}"

    @cached_property
    def feature_dtype(self) -> Any:
        """The dtype of the feature matrix this model computes in: the one place a scoring
        path decides it (the JVM's cast on the driver, the matrix in each worker).

        Keras computes in float32; an ONNX graph in the element type of its input (float32
        for a network converted from Keras, float64 for lakecast's tree ensembles), so a
        matrix of another dtype would cost a copy per batch; scikit-learn in float64.
        """
        if self.flavor == "keras":
            return np.float32
        if self.flavor == "onnx":
            from lakecast.models.flavors.onnx_flavor import input_dtype

            return input_dtype(self.artifact, self.where)
        return np.float64

    @property
    def float32_features(self) -> bool:
        """Whether float32 features lose nothing this model would see."""
        return bool(self.feature_dtype == np.float32)


_lock = threading.Lock()
_predictors: OrderedDict[tuple[str, str, str], Predictor] = OrderedDict()
_placement: Placement | None = None


def worker_placement() -> Placement:
    """Pin this worker to its task's GPU or to the CPU, once per process (frameworks read the
    device list at their first import, so a later change would not take)."""
    global _placement
    if _placement is None:
        from lakecast.scoring.placement import place_worker

        _placement = place_worker()
    return _placement


def predictor_for(payload: ModelPayload, *, keep: int = MAX_MODELS_PER_WORKER) -> Predictor:
    """The cached Predictor of ``payload``, loading it on first use in this process.

    ``keep`` raises how many models the cache holds: a run that scores with several models
    (the variants of a rollout) passes their number, so they do not evict one another.

    Raises:
        ModelIntegrityError: the payload's bytes do not hash to its sha256.
        UnsafeArtifactError: the artifact does not load safely.
    """
    key = payload.cache_key
    with _lock:
        cached = _predictors.get(key)
        if cached is not None:
            _predictors.move_to_end(key)
            return cached
        actual = hashlib.sha256(payload.artifact).hexdigest()
        if actual != payload.sha256:
            msg = (
                f"{payload.where}: broadcast artifact has sha256 {actual}, "
                f"expected {payload.sha256}"
            )
            raise ModelIntegrityError(msg)
        worker_placement()
        from lakecast.models.flavors import build_predictor

        predictor = build_predictor(
            payload.artifact,
            payload.flavor,
            payload.signature,
            payload.nan_policy,
            payload.where,
            sha256_verified=True,
        )
        _predictors[key] = predictor
        while len(_predictors) > max(MAX_MODELS_PER_WORKER, keep):
            _predictors.popitem(last=False)
        return predictor


def cached_models() -> list[str]:
    """The sha256 of every model this process holds, least recently used first."""
    with _lock:
        return [key[0] for key in _predictors]


def clear() -> None:
    """Forget every cached model (tests; a long-lived process that wants its memory back)."""
    with _lock:
        _predictors.clear()
