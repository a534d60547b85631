"""scikit-learn models saved with skops (never pickle) and loaded against our trusted list.

Loading asks skops which types the artifact needs, refuses any that is neither trusted by
skops nor on lakecast's list (UnsafeArtifactError names them), and bounds-checks tree
ensembles (anywhere in the model's object graph, against the signature's width) before the
first predict. Classifiers score ``predict_proba[:, 1]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lakecast.errors import UnsafeArtifactError
from lakecast.models.flavors.reproducible import canonical_skops, rewrite_zip
from lakecast.models.flavors.safe_versions import require_safe_release
from lakecast.models.flavors.tree_bounds import check_estimator_trees
from lakecast.models.predictor import MatrixPredictor, NanPolicy
from lakecast.models.trusted_types import TRUSTED_TYPES, VERIFIED_ONLY_TYPES
from lakecast.registry.signature import Signature

FILE_NAME = "model.skops"


def save(model: Any, directory: Path) -> Path:
    """Write ``model`` as ``directory/model.skops``, byte-reproducibly (same model, same
    sha256)."""
    import skops.io

    path = directory / FILE_NAME
    skops.io.dump(model, path)
    rewrite_zip(path, canonical_skops)
    return path


def load(data: bytes, where: str, *, sha256_verified: bool, width: int) -> Any:
    """Build the estimator from verified artifact bytes.

    Args:
        data: the artifact's bytes, already checked against the registry's sha256.
        where: ``model 'x' version 1.0.0``, for messages.
        sha256_verified: whether ``data`` matched a recorded sha256; tree predictors are
            trusted only then.
        width: the registered signature's number of inputs: no tree may index past it.

    Raises:
        UnsafeArtifactError: the artifact needs a type we do not trust, or a tree is malformed.
        EnvironmentSetupError: the installed skops is older than 0.13.
    """
    import skops.io

    require_safe_release("skops")
    allowed = TRUSTED_TYPES | (VERIFIED_ONLY_TYPES if sha256_verified else frozenset())
    try:
        asked = set(skops.io.get_untrusted_types(data=data))
    except Exception as exc:  # a malformed archive; skops raises many kinds
        msg = f"{where}: skops artifact cannot be read: {type(exc).__name__}: {exc}"
        raise UnsafeArtifactError(msg) from exc
    refused = sorted(asked - allowed)
    if refused:
        msg = f"{where}: skops artifact asks for types that are not trusted: {refused}"
        raise UnsafeArtifactError(msg)
    try:
        model = skops.io.loads(data, trusted=sorted(asked))
    except Exception as exc:
        msg = f"{where}: skops artifact failed to load: {type(exc).__name__}: {exc}"
        raise UnsafeArtifactError(msg) from exc
    check_estimator_trees(model, where, width=width)
    return model


class SklearnPredictor(MatrixPredictor):
    """A scikit-learn estimator behind the Predictor protocol."""

    def __init__(self, model: Any, signature: Signature, nan_policy: NanPolicy) -> None:
        super().__init__(model, signature, nan_policy)
        self._proba = hasattr(model, "predict_proba") and hasattr(model, "classes_")

    def raw_scores(self, matrix: np.ndarray) -> np.ndarray:
        if self._proba:
            return np.asarray(self.model.predict_proba(matrix)[:, 1])
        return np.asarray(self.model.predict(matrix))
