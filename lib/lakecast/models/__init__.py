"""Models: the Predictor protocol and the flavors (Keras 3 ``.keras``, scikit-learn via skops).

``load_model(version)`` verifies the artifact's sha256 against the registry record and returns
a Predictor; nothing is ever unpickled.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lakecast.models.predictor import NAN_POLICIES, NanPolicy, Predictor

if TYPE_CHECKING:
    from lakecast.registry.records import ModelVersion


def load_model(version: ModelVersion, *, threads: int | None = None) -> Predictor:
    """Verify the artifact of ``version`` (sha256) and load it as a Predictor.

    ``threads``: see :func:`~lakecast.models.flavors.build_predictor`.

    Raises:
        ModelIntegrityError: the artifact is missing or does not hash to the recorded sha256.
        UnsafeArtifactError: the artifact needs untrusted types or holds a malformed tree.
    """
    from lakecast.models.flavors import build_predictor
    from lakecast.registry.artifacts import read_verified
    from lakecast.registry.environment import check_loaded_libraries

    check_loaded_libraries(version)
    where = f"model {version.name!r} version {version.version}"
    data = read_verified(Path(version.artifact_path), version.sha256, version.name, version.version)
    return build_predictor(
        data,
        version.flavor,
        version.signature,
        version.nan_policy,
        where,
        sha256_verified=True,
        threads=threads,
    )


__all__ = ["NAN_POLICIES", "NanPolicy", "Predictor", "load_model"]
