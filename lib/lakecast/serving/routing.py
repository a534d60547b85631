"""Which model serves each event of a micro-batch: the champion, or what a rollout says.

A :class:`RoutingSource` answers the current :class:`RolloutState` (or None). The default,
:class:`ChampionRouting`, always answers None: every event goes to the model the worker's
``NAME@ALIAS`` resolves to, as variant ``champion``. Rollout storage plugs in here later (a
source that reads the state the deploy CLI writes); the worker needs nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from lakecast.rollout.router import Router
from lakecast.rollout.strategies import RolloutState
from lakecast.serving.model_source import ModelSource, ServingModel

CHAMPION = "champion"
SHADOW = "shadow"


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


class BatchRouter:
    """Turns a routing state into per-model groups of a batch; keeps one Router per revision."""

    def __init__(self, models: ModelSource, source: RoutingSource | None = None) -> None:
        self.models = models
        self.source = source or ChampionRouting()
        self._router: Router | None = None
        self._state: RolloutState | None = None

    def plan(
        self,
        user_ids: Sequence[str],
        attributes: Sequence[Mapping[str, Any]] | None = None,
    ) -> BatchPlan:
        """The groups of a batch whose targeting keys are ``user_ids``.

        ``attributes`` (one mapping per event: device, country, ...) feed multi-model rules.
        """
        size = len(user_ids)
        state = self.source.current()
        if state is None:
            everyone = np.arange(size, dtype=np.int64)
            return BatchPlan([ServingGroup(CHAMPION, None, self.models.current(), everyone)])
        if self._router is None or state is not self._state:
            self._router, self._state = Router(state), state
        routes = self._router.route_batch(list(user_ids), attributes)
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
