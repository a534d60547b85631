"""Predictors for tests: wrappers around a real model that fail on demand.

A real, well-behaved model does not fail on one record when asked; :class:`FailingPredictor`
stands in for one that cannot handle an input, so the worker's dead-letter path can be tested.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lakecast.features.spec import FEATURE_COLUMNS
from lakecast.models.predictor import Features, NanPolicy, Predictor
from lakecast.registry.records import ModelVersion
from lakecast.registry.signature import Signature


@dataclass
class WrappedPredictor:
    """A Predictor around another: the same signature and NaN policy (tests override predict)."""

    inner: Predictor

    @property
    def signature(self) -> Signature:
        return self.inner.signature

    @property
    def nan_policy(self) -> NanPolicy:
        return self.inner.nan_policy

    def predict(self, features: Features) -> np.ndarray:
        return self.inner.predict(features)


@dataclass
class FailingPredictor(WrappedPredictor):
    """Wraps a Predictor and raises for any row whose feature ``column`` equals ``value``.

    The stand-in for "the model fails on this one record" (a model that cannot handle an
    input), which a real, well-behaved model does not do on demand.
    """

    column: str
    value: float

    def predict(self, features: Features) -> np.ndarray:
        matrix = np.asarray(features)
        position = FEATURE_COLUMNS.index(self.column)
        if matrix.ndim == 2 and np.any(np.isclose(matrix[:, position], self.value)):
            msg = f"model cannot score {self.column}={self.value}"
            raise ValueError(msg)
        return self.inner.predict(features)


def failing_loader(column: str, value: float) -> Callable[[ModelVersion, Predictor], Predictor]:
    """A ``wrap`` hook for :class:`lakecast.serving.model_source.ModelSource`."""

    def wrap(version: ModelVersion, predictor: Predictor) -> Predictor:
        return FailingPredictor(predictor, column, value)

    return wrap
