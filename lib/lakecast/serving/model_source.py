"""The models and the entity snapshot a worker serves with, kept fresh in the background.

:class:`ModelSource` resolves ``NAME@ALIAS`` in the registry; a background thread resolves it
again every few seconds and, when the alias moved, loads (and sha256-verifies) the new version
before publishing it. The worker reads :meth:`ModelSource.current` once at the start of each
micro-batch, so a switch happens between two batches: no record is lost or scored twice, and
the slow part (reading the registry, loading the artifact) never runs inside a batch.

:class:`SnapshotSource` does the same for the ``entity_features`` table: it checks the table
version and reloads the latest snapshot when the version changes.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING

from lakecast.features.snapshot import EntitySnapshot, load_snapshot
from lakecast.kafka.serde import ModelRef

if TYPE_CHECKING:
    from lakecast.models.predictor import Predictor
    from lakecast.registry import Registry
    from lakecast.registry.records import ModelVersion

log = logging.getLogger(__name__)

Wrap = Callable[["ModelVersion", "Predictor"], "Predictor"]


@dataclass(frozen=True)
class ServingModel:
    """A loaded model version and the reference every prediction it makes carries."""

    version: ModelVersion
    predictor: Predictor

    @functools.cached_property
    def ref(self) -> ModelRef:  # cached: every prediction carries it
        return ModelRef(self.version.name, self.version.version, self.version.sha256)

    @property
    def key(self) -> str:
        return f"{self.version.name}:{self.version.version}"


class Poller:
    """Calls ``refresh`` every ``interval_s`` in a daemon thread; a failure is logged, not fatal."""

    def __init__(self, name: str, interval_s: float, refresh: Callable[[], object]) -> None:
        self.name = name
        self.interval_s = interval_s
        self.refresh = refresh
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.refresh()
            except Exception:
                log.warning("%s: refresh failed; keeping what is loaded", self.name, exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None


class ModelSource:
    """``NAME@ALIAS`` (or ``NAME:VERSION``) resolved now and re-resolved every ``poll_s``.

    Args:
        registry: the model registry.
        reference: what to serve by default (``purchase@champion``).
        poll_s: how often the reference is resolved again.
        wrap: applied to every loaded predictor (tests use it to inject a failing model).

    ``threads``: what a runtime sizing its pool at load (ONNX Runtime) gets; None, the
    config's ``serving.model_threads``. The worker sets it from its own config.
    """

    def __init__(
        self,
        registry: Registry,
        reference: str,
        *,
        poll_s: float = 2.0,
        wrap: Wrap | None = None,
    ) -> None:
        self.registry = registry
        self.reference = reference
        self.wrap = wrap
        self.threads: int | None = None
        self._lock = threading.Lock()
        self._loaded: dict[str, ServingModel] = {}  # "name:version" -> model
        self._current: ServingModel | None = None
        self._revision: tuple[int | None, int | None] | None = None  # registry's, at _current
        self._poller = Poller(f"model-source-{reference}", poll_s, self.refresh)
        self.switches = 0

    def start(self) -> ServingModel:
        """Resolve and load the reference now (errors propagate), then poll in the background.

        Raises:
            ModelNotFoundError: the model, version or alias does not exist.
            ModelIntegrityError: the artifact does not match its recorded sha256.
        """
        model = self.refresh()
        self._poller.start()
        return model

    def stop(self) -> None:
        self._poller.stop()

    def current(self) -> ServingModel:
        """The model the reference resolved to at the last poll."""
        model = self._current
        if model is None:
            msg = f"model source {self.reference!r}: not started"
            raise RuntimeError(msg)
        return model

    def refresh(self) -> ServingModel:
        """Resolve the reference again, unless the registry was not written since the last
        time; load and publish the version if it changed."""
        with self._lock:
            current = self._current
            revision = self.registry.revision()
            if current is not None and revision == self._revision:
                return current
            version = self.registry.resolve(self.reference)
        if current is not None and (
            current.version.version == version.version and current.version.sha256 == version.sha256
        ):
            self._revision = revision
            return current
        model = self._load(version)
        self._current = model
        self._revision = revision  # only once published: a failed load is tried again
        if current is not None:
            self.switches += 1
            log.info(
                "model %s now resolves to %s (was %s)",
                self.reference,
                model.key,
                current.key,
                extra={"model": model.key, "previous": current.key},
            )
        return model

    def is_loaded(self, reference: str) -> bool:
        """Whether the ``name:version`` is loaded (:meth:`model` returns it without I/O)."""
        return reference in self._loaded

    def model(self, reference: str) -> ServingModel:
        """A fixed ``name:version`` (a rollout variant), loaded once and kept."""
        loaded = self._loaded.get(reference)
        if loaded is not None:
            return loaded
        with self._lock:
            version = self.registry.resolve(reference)
        return self._load(version)

    def _load(self, version: ModelVersion) -> ServingModel:
        from lakecast.models import load_model

        key = f"{version.name}:{version.version}"
        cached = self._loaded.get(key)
        if cached is not None and cached.version.sha256 == version.sha256:
            return cached
        predictor = load_model(version, threads=self.threads)  # verifies the sha256
        if self.wrap is not None:
            predictor = self.wrap(version, predictor)
        model = ServingModel(version, predictor)
        self._loaded[key] = model
        return model


class SnapshotSource:
    """The latest ``entity_features`` snapshot, reloaded when the table gets a new version."""

    def __init__(self, path: str, *, poll_s: float = 30.0) -> None:
        self.path = path
        self._current: EntitySnapshot | None = None
        self._poller = Poller("snapshot-source", poll_s, self.refresh)
        self.reloads = 0

    def start(self) -> EntitySnapshot:
        """Load the latest snapshot now (errors propagate), then watch the table.

        Raises:
            SchemaError: there is no table at the path, or it has no snapshot.
        """
        snapshot = self.refresh()
        self._poller.start()
        return snapshot

    def stop(self) -> None:
        self._poller.stop()

    def current(self) -> EntitySnapshot:
        snapshot = self._current
        if snapshot is None:
            msg = f"snapshot source {self.path!r}: not started"
            raise RuntimeError(msg)
        return snapshot

    def refresh(self) -> EntitySnapshot:
        from deltalake import DeltaTable

        current = self._current
        if current is not None and DeltaTable(self.path).version() == current.table_version:
            return current
        snapshot = load_snapshot(self.path)
        self._current = snapshot
        if current is not None:
            self.reloads += 1
            log.info(
                "entity snapshot reloaded: table version %s, date %s",
                snapshot.table_version,
                snapshot.snapshot_date,
            )
        return snapshot

    def age_s(self, now: float | None = None) -> float | None:
        """Seconds since the snapshot's ``as_of`` (None before the first load)."""
        snapshot = self._current
        if snapshot is None or snapshot.as_of is None:
            return None
        as_of = snapshot.as_of
        if as_of.tzinfo is None:
            as_of = as_of.replace(tzinfo=UTC)
        return (now if now is not None else time.time()) - as_of.timestamp()
