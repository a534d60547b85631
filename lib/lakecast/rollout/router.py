"""Which variant serves an event, and which shadow models also score it.

Given a :class:`RolloutState` and an event's targeting key (the user id) and attributes, the
router answers the serving variant, its model reference, the experiment id and the shadow
models. Splits are sticky (see :mod:`lakecast.rollout.bucketing`), salted with the rollout
id; shadow sampling uses its own salt so it does not follow the serving split.
:meth:`Router.route_batch` routes a whole micro-batch with one array of buckets.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lakecast.errors import RolloutError
from lakecast.rollout.bucketing import allocate, bucket, buckets, percent_to_buckets, split_edges
from lakecast.rollout.flags import matches_all
from lakecast.rollout.strategies import (
    ABTest,
    Bandit,
    BlueGreen,
    Canary,
    MultiModel,
    RolloutState,
    Shadow,
    Variant,
)


@dataclass(frozen=True)
class Route:
    """The decision for one event."""

    variant: str
    model: str
    experiment: str | None
    shadows: tuple[str, ...] = ()


@dataclass(frozen=True)
class BatchRoutes:
    """The decisions for a micro-batch, as arrays a worker can group by model.

    ``variant_index[i]`` indexes ``variants``; ``shadow_mask[i]`` says whether event ``i``
    is also scored by every model in ``shadows``.
    """

    variants: tuple[Variant, ...]
    variant_index: npt.NDArray[np.int64]
    shadows: tuple[str, ...]
    shadow_mask: npt.NDArray[np.bool_]
    experiment: str | None

    def __len__(self) -> int:
        return int(self.variant_index.size)

    def __getitem__(self, i: int) -> Route:
        variant = self.variants[int(self.variant_index[i])]
        shadows = self.shadows if bool(self.shadow_mask[i]) else ()
        return Route(variant.name, variant.model, self.experiment, shadows)

    def __iter__(self) -> Iterator[Route]:
        return (self[i] for i in range(len(self)))

    def by_variant(self) -> dict[str, npt.NDArray[np.int64]]:
        """Variant name -> positions in the batch (variants with no events are left out)."""
        groups: dict[str, npt.NDArray[np.int64]] = {}
        for index, variant in enumerate(self.variants):
            positions = np.flatnonzero(self.variant_index == index)
            if positions.size:
                groups[variant.name] = positions
        return groups

    def by_model(self) -> dict[str, npt.NDArray[np.int64]]:
        """Model reference -> positions served by it (two variants may share a model)."""
        groups: dict[str, list[npt.NDArray[np.int64]]] = {}
        for name, positions in self.by_variant().items():
            model = next(v.model for v in self.variants if v.name == name)
            groups.setdefault(model, []).append(positions)
        return {model: np.sort(np.concatenate(parts)) for model, parts in groups.items()}

    def shadow_positions(self) -> npt.NDArray[np.int64]:
        return np.flatnonzero(self.shadow_mask)


class Router:
    """Routes events under one rollout state (build a new one when the state changes)."""

    def __init__(self, state: RolloutState) -> None:
        self.state = state
        spec = state.spec
        self._variants: tuple[Variant, ...] = tuple(spec.variants())
        self._experiment: str | None = spec.id
        self._pinned: int | None = self._pinned_index()
        self._edges = self._split_edges()
        self._shadow_salt = f"{spec.id}:shadow"
        shadows_on = state.status in ("running", "paused")
        self._shadows: tuple[str, ...] = tuple(spec.shadows) if shadows_on else ()
        self._shadow_buckets = percent_to_buckets(spec.shadow_percent)

    @property
    def variants(self) -> tuple[Variant, ...]:
        return self._variants

    def serving_variants(self) -> tuple[Variant, ...]:
        """The variants this state can send events to: the one it pins everything to, or all.

        A batch scorer loads only these models (and :attr:`shadows`) before routing rows.
        """
        if self._pinned is not None:
            return (self._variants[self._pinned],)
        return self._variants

    @property
    def shadows(self) -> tuple[str, ...]:
        """The shadow models that score sampled events (none once the rollout has ended)."""
        return self._shadows

    def _index_of(self, variant: Variant) -> int:
        return next(i for i, v in enumerate(self._variants) if v.name == variant.name)

    def _pinned_index(self) -> int | None:
        """The one variant that takes everything, if the state leaves no split to make."""
        state, spec = self.state, self.state.spec
        if state.status == "rolled_back":
            return self._index_of(spec.baseline())
        if state.status == "promoted":
            winner = state.promoted_variant()
            return None if winner is None else self._index_of(winner)
        if isinstance(spec, BlueGreen):
            return self._index_of(spec.variant(spec.active))
        if isinstance(spec, Shadow):
            return 0
        return None

    def _split_edges(self) -> npt.NDArray[np.int64] | None:
        spec = self.state.spec
        if isinstance(spec, Canary):
            # Champion above the edge, candidate below it: raising the step only adds keys.
            return split_edges([spec.percent])
        if isinstance(spec, ABTest):
            return split_edges([v.weight for v in spec.split])
        if isinstance(spec, Bandit):
            return split_edges(list(spec.current_weights().values()))
        return None

    def _split(self) -> npt.NDArray[np.int64]:
        if self._edges is None:
            spec = self.state.spec
            msg = f"rollout {spec.id!r}: strategy {spec.strategy!r} has no traffic split"
            raise RolloutError(msg)
        return self._edges

    def _split_index(self, allocation: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        spec = self.state.spec
        if isinstance(spec, Canary):
            # allocation 0: inside the candidate's share; 1: the rest, served by the champion.
            return np.where(allocation == 0, 1, 0).astype(np.int64)
        # Rounding can leave the last bucket past every edge; it belongs to the last variant.
        return np.minimum(allocation, len(self._variants) - 1)

    def route(self, key: str, attributes: Mapping[str, Any] | None = None) -> Route:
        """The serving variant, experiment and shadow models for one event."""
        index = self._index_for(key, attributes)
        variant = self._variants[index]
        shadows = self._shadows
        if shadows and bucket(self._shadow_salt, key) >= self._shadow_buckets:
            shadows = ()
        return Route(variant.name, variant.model, self._experiment, shadows)

    def _index_for(self, key: str, attributes: Mapping[str, Any] | None) -> int:
        if self._pinned is not None:
            return self._pinned
        spec = self.state.spec
        if isinstance(spec, MultiModel):
            return self._segment_index(spec, attributes)
        allocation = allocate(np.asarray([bucket(spec.id, key)], dtype=np.int64), self._split())
        return int(self._split_index(allocation)[0])

    def _segment_index(self, spec: MultiModel, attributes: Mapping[str, Any] | None) -> int:
        for rule in spec.rules:
            if matches_all(rule.when, attributes):
                return self._index_of(rule.variant)
        return self._index_of(spec.default)

    def route_batch(
        self,
        keys: Sequence[str],
        attributes: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> BatchRoutes:
        """Route a micro-batch: one bucket array, one search over the split's edges.

        Raises:
            ValueError: ``attributes`` is given with a length other than ``keys``'.
        """
        if attributes is not None and len(attributes) != len(keys):
            msg = f"route_batch: {len(keys)} keys but {len(attributes)} attribute rows"
            raise ValueError(msg)
        spec = self.state.spec
        size = len(keys)
        if self._pinned is not None:
            index = np.full(size, self._pinned, dtype=np.int64)
        elif isinstance(spec, MultiModel):
            rows = attributes if attributes is not None else [None] * size
            index = np.fromiter(
                (self._segment_index(spec, row) for row in rows), dtype=np.int64, count=size
            )
        else:
            index = self._split_index(allocate(buckets(spec.id, keys), self._split()))
        if self._shadows:
            mask = buckets(self._shadow_salt, keys) < self._shadow_buckets
        else:
            mask = np.zeros(size, dtype=np.bool_)
        return BatchRoutes(self._variants, index, self._shadows, mask, self._experiment)
