"""Which model serves each event of a micro-batch: the champion, or what a rollout says.

A :class:`RoutingSource` answers the current :class:`RolloutState` (or None). The default,
:class:`ChampionRouting`, always answers None: every event goes to the model the worker's
``NAME@ALIAS`` resolves to, as variant ``champion``. Rollout storage plugs in here later (a
source that reads the state the deploy CLI writes); the worker needs nothing else.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from lakecast.rollout.router import Router
from lakecast.rollout.strategies import RolloutState
from lakecast.serving.model_source import ModelSource, ServingModel

log = logging.getLogger(__name__)

CHAMPION = "champion"
SHADOW = "shadow"
PRELOAD_RETRY_S = 5.0


class RoutingSource(Protocol):
    """Where the worker learns of rollouts; polled at the start of every micro-batch."""

    def current(self) -> RolloutState | None: ...


class ChampionRouting:
    """No rollout: everything to the default model."""

    def current(self) -> RolloutState | None:
        return None


@dataclass
class StaticRouting:
    """A fixed rollout state (tests, or a state file read once at start)."""

    state: RolloutState | None

    def current(self) -> RolloutState | None:
        return self.state


@dataclass(frozen=True)
class ServingGroup:
    """Events of a batch (``positions``) that one model scores, and the variant they record."""

    variant: str
    experiment: str | None
    model: ServingModel
    positions: npt.NDArray[np.int64]


@dataclass
class BatchPlan:
    serving: list[ServingGroup] = field(default_factory=list)
    shadows: list[ServingGroup] = field(default_factory=list)


def models_of(state: RolloutState) -> list[str]:
    """Every ``name:version`` a rollout state can route to or shadow with."""
    spec = state.spec
    return list(dict.fromkeys([*(v.model for v in spec.variants()), *spec.shadows]))


class BatchRouter:
    """Turns a routing state into per-model groups of a batch; keeps one Router per revision.

    With ``background_loading`` (the worker's setting), a state that names a model not loaded
    yet is followed only once a background thread has loaded it: until then batches are
    routed by the previous state. Loading a model (a Keras one takes seconds) then never runs
    inside a batch, where it would stall the partition and count as the candidate's latency
    in the canary analysis. Without it, models load on first use (simple callers, tests).
    """

    def __init__(
        self,
        models: ModelSource,
        source: RoutingSource | None = None,
        *,
        background_loading: bool = False,
    ) -> None:
        self.models = models
        self.source = source or ChampionRouting()
        self.background_loading = background_loading
        self._router: Router | None = None
        self._state: RolloutState | None = None  # the state batches are routed by
        self._loader: threading.Thread | None = None
        self._failed_at: float | None = None

    def start(self) -> None:
        """Load the models of the current state now (a worker does this before consuming)."""
        state = self.source.current()
        if state is not None:
            self._load(models_of(state))
            self._follow(state)

    def _follow(self, wanted: RolloutState | None) -> RolloutState | None:
        """``wanted`` if all its models are loaded, else the state followed so far."""
        if wanted is None or wanted is self._state or not self.background_loading:
            self._state = wanted
            return wanted
        missing = [ref for ref in models_of(wanted) if not self.models.is_loaded(ref)]
        if not missing:
            self._state = wanted
            return wanted
        self._preload(missing)
        return self._state

    def _preload(self, references: list[str]) -> None:
        if self._loader is not None and self._loader.is_alive():
            return
        if self._failed_at is not None and time.monotonic() - self._failed_at < PRELOAD_RETRY_S:
            return
        self._loader = threading.Thread(
            target=self._load, args=(references,), name="model-preload", daemon=True
        )
        self._loader.start()

    def _load(self, references: list[str]) -> None:
        try:
            for reference in references:
                self.models.model(reference)
            self._failed_at = None
        except Exception:
            self._failed_at = time.monotonic()
            log.warning("preloading %s failed; routing as before", references, exc_info=True)

    def plan(
        self,
        user_ids: Sequence[str],
        attributes: Callable[[], Sequence[Mapping[str, Any]]] | None = None,
    ) -> BatchPlan:
        """The groups of a batch whose targeting keys are ``user_ids``.

        ``attributes`` makes one mapping per event (device, country, ...) for multi-model
        rules; it is called only while a rollout is on.
        """
        size = len(user_ids)
        state = self._follow(self.source.current())
        if state is None:
            everyone = np.arange(size, dtype=np.int64)
            return BatchPlan([ServingGroup(CHAMPION, None, self.models.current(), everyone)])
        if self._router is None or self._router.state is not state:
            self._router = Router(state)
        routes = self._router.route_batch(list(user_ids), attributes() if attributes else None)
        plan = BatchPlan()
        for variant in routes.variants:
            positions = np.flatnonzero(
                routes.variant_index == routes.variants.index(variant)
            ).astype(np.int64)
            if positions.size:
                model = self.models.model(variant.model)
                plan.serving.append(ServingGroup(variant.name, routes.experiment, model, positions))
        shadow_positions = routes.shadow_positions().astype(np.int64)
        if shadow_positions.size:
            for reference in routes.shadows:
                model = self.models.model(reference)
                plan.shadows.append(
                    ServingGroup(SHADOW, routes.experiment, model, shadow_positions)
                )
        return plan
