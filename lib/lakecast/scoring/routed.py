"""Batch scoring under a model's rollout: every row routed as the streaming workers route it.

While the registry records a rollout for a model (``lakecast deploy``), one Spark run scores
with every variant. Each Arrow batch goes through the same :class:`~lakecast.rollout.router.Router`
as a worker's micro-batch (one ``route_batch`` call, keyed by ``user_id``; for a multi-model
rollout with the same device / country / category attributes), so a user gets the same
variant in batch as on the stream. Each variant's rows are then predicted together. Every
model of the rollout is verified on the driver, broadcast once with the state, and loaded once
per Python worker (:mod:`lakecast.scoring.cache`). :class:`RolloutPlan` is the run's
:class:`~lakecast.scoring.plan.ScoringPlan`; its tasks get :class:`RoutedModels`.

Shadow models score the rows the router samples for them. Workers send shadow scores to the
metrics only; the batch writes them, as variant ``shadow`` with ``served`` false, because a
table is where an analyst compares them offline. A shadow model that already serves a row is
not written twice for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from lakecast.errors import ModelNotFoundError, ScoringError
from lakecast.scoring.batch import (
    SCORE_COLUMN,
    BatchScorer,
    ScoringCounters,
    matrix_of,
    matrix_order,
    nonfinite_rows,
    predict_in_slices,
)
from lakecast.scoring.cache import ModelPayload, predictor_for
from lakecast.scoring.checks import nonfinite_score_counts, score_array
from lakecast.scoring.plan import RowCounts
from lakecast.scoring.writer import (
    EXPERIMENT_COLUMN,
    ROW_MODEL_COLUMNS,
    SERVED_COLUMN,
    VARIANT_COLUMN,
    ExperimentRows,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructField

    from lakecast.models.predictor import Predictor
    from lakecast.registry import Registry
    from lakecast.rollout.router import BatchRoutes, Router
    from lakecast.rollout.strategies import RolloutState

# What a worker routes on: the event's user id, and these attributes for multi-model rules.
ROUTING_KEY = "user_id"
ROUTING_ATTRIBUTES = ("device", "country", "category")
# The variant name workers give shadow scores (lakecast.serving.routing.SHADOW).
SHADOW_VARIANT = "shadow"
# The references that mean "what is served": they follow a rollout; a pinned version or
# another alias asks for that model only.
FOLLOWING_ALIASES = (None, "champion")


def rollout_to_follow(registry_root: str, reference: str) -> RolloutState | None:
    """The rollout state a run of ``reference`` follows, or None: score that model only.

    ``NAME`` and ``NAME@champion`` follow the rollout the registry records for ``NAME`` (in
    whatever status: a promoted or rolled-back rollout pins every row to one variant, as it
    does on the stream). ``NAME:VERSION`` and other aliases never do.
    """
    from lakecast.registry.references import parse_reference
    from lakecast.rollout.store import RolloutStore

    ref = parse_reference(reference)
    if ref.version is not None or ref.alias not in FOLLOWING_ALIASES:
        return None
    return RolloutStore(registry_root).current(ref.name)


@dataclass(frozen=True)
class RoutedModels:
    """What every task needs to route and score: the state and each model it may use.

    ``models`` is keyed by the reference the rollout names (``name:version``).
    """

    state_json: str
    models: dict[str, ModelPayload]
    key_column: str = ROUTING_KEY
    attribute_columns: tuple[str, ...] = ()

    def router(self) -> Router:
        from lakecast.rollout.router import Router
        from lakecast.rollout.strategies import RolloutState

        return Router(RolloutState.from_json(self.state_json))

    def scorer(
        self, out_columns: Sequence[str], batch_size: int, counters: ScoringCounters | None
    ) -> BatchScorer:
        """In a Python worker: a function routing and scoring one Arrow batch (models cached)."""
        return routed_scorer(self, out_columns, batch_size, counters)


@dataclass(frozen=True)
class RolloutPlan:
    """A rollout resolved on the driver: its state and the verified models it scores with."""

    state: RolloutState
    serving: dict[str, str]  # variant name -> model reference, the variants that take rows
    shadows: tuple[str, ...]
    routed: RoutedModels

    @classmethod
    def build(cls, state: RolloutState, registry: Registry) -> RolloutPlan:
        """Resolve and verify every model ``state`` can route rows to.

        Raises:
            ModelNotFoundError: a variant or shadow names a version the registry lacks.
            ModelIntegrityError: an artifact does not match its recorded sha256.
        """
        from lakecast.rollout.router import Router
        from lakecast.rollout.strategies import MultiModel

        router = Router(state)
        serving = router.serving_variants()
        shadows = tuple(dict.fromkeys(router.shadows))
        models: dict[str, ModelPayload] = {}
        for reference in dict.fromkeys([*(v.model for v in serving), *shadows]):
            try:
                record = registry.resolve(reference)
            except ModelNotFoundError as exc:
                msg = (
                    f"rollout {state.spec.id!r} of {state.model!r} (revision {state.revision}) "
                    f"routes to {reference}: {exc}"
                )
                raise ModelNotFoundError(msg) from exc
            models[reference] = ModelPayload.from_version(record)
        by_attributes = isinstance(state.spec, MultiModel) and len(serving) > 1
        routed = RoutedModels(
            state_json=state.to_json(),
            models=models,
            attribute_columns=ROUTING_ATTRIBUTES if by_attributes else (),
        )
        return cls(state, {v.name: v.model for v in serving}, shadows, routed)

    @property
    def label(self) -> str:
        spec = self.state.spec
        return f"{self.state.model} rollout {spec.id!r} (revision {self.state.revision})"

    @property
    def payloads(self) -> list[ModelPayload]:
        return list(self.routed.models.values())

    @property
    def required_columns(self) -> tuple[str, ...]:
        return (self.routed.key_column, *self.routed.attribute_columns)

    def rollout_key(self) -> tuple[str, int] | None:
        return (self.state.spec.id, self.state.revision)

    def task_models(self) -> RoutedModels:
        return self.routed

    def score_fields(self) -> list[StructField]:
        """``score``, the model of each row and the rollout tags (see the module docstring)."""
        from pyspark.sql.types import BooleanType, DoubleType, StringType, StructField

        text = [StructField(c, StringType(), True) for c in (*ROW_MODEL_COLUMNS, VARIANT_COLUMN)]
        return [
            StructField(SCORE_COLUMN, DoubleType(), True),
            *text,
            StructField(EXPERIMENT_COLUMN, StringType(), True),
            StructField(SERVED_COLUMN, BooleanType(), True),
        ]

    def count_rows(self, scored: DataFrame) -> RowCounts:
        """Rows per (variant, model, served) of ``scored``, routed and materialized."""
        columns = (VARIANT_COLUMN, "model_name", "model_version", SERVED_COLUMN)
        groups = scored.groupBy(*columns).count()
        found = [
            {
                "variant": row[VARIANT_COLUMN],
                "model_name": row["model_name"],
                "model_version": row["model_version"],
                "served": bool(row[SERVED_COLUMN]),
                "rows": int(row["count"]),
            }
            for row in groups.collect()
        ]
        variants = sorted(found, key=lambda v: (not v["served"], v["variant"], v["model_version"]))
        return RowCounts(
            written=sum(v["rows"] for v in variants),
            served=sum(v["rows"] for v in variants if v["served"]),
            variants=tuple(variants),
        )

    def nonfinite_scores(self, scored: DataFrame) -> dict[str, int]:
        return nonfinite_score_counts(scored, SCORE_COLUMN, None)

    def merge_terms(
        self, counts: RowCounts, full_run: bool
    ) -> tuple[dict[str, Any], ExperimentRows | None]:
        """The shadow rows in the metadata; a full run replaces the experiment's rows it did
        not write (stale: an event that moved to another variant keeps one served row)."""
        metadata = {"shadow_rows": counts.written - counts.served}
        if not full_run:
            return metadata, None
        names = tuple(sorted({payload.name for payload in self.payloads}))
        return metadata, ExperimentRows(self.state.spec.id, names)

    def describe(self) -> dict[str, Any]:
        """The rollout as a run records it (the commit's metadata, the job's summary)."""
        spec = self.state.spec
        return {
            "id": spec.id,
            "strategy": spec.strategy,
            "revision": self.state.revision,
            "status": self.state.status,
            "variants": dict(self.serving),
            "shadows": list(self.shadows),
        }


def routed_scorer(
    routed: RoutedModels,
    out_columns: Sequence[str],
    batch_size: int,
    counters: ScoringCounters | None,
) -> BatchScorer:
    """In a Python worker: a function routing and scoring one Arrow batch (models cached)."""
    keep = len(routed.models)
    predictors = {ref: predictor_for(p, keep=keep) for ref, p in routed.models.items()}
    scorer = _BatchScorer(
        routed, routed.router(), predictors, list(out_columns), batch_size, counters
    )
    return scorer.score


class _BatchScorer:
    """Routes one Arrow batch and scores each of its variants' rows with that variant's model."""

    def __init__(
        self,
        routed: RoutedModels,
        router: Router,
        predictors: Mapping[str, Predictor],
        passed: list[str],
        batch_size: int,
        counters: ScoringCounters | None,
    ) -> None:
        self.routed = routed
        self.router = router
        self.predictors = predictors
        self.passed = passed
        self.batch_size = batch_size
        self.counters = counters
        self.references = list(routed.models)
        payloads = list(routed.models.values())
        self.names = np.asarray([p.name for p in payloads], dtype=object)
        self.versions = np.asarray([p.version for p in payloads], dtype=object)
        self.hashes = np.asarray([p.sha256 for p in payloads], dtype=object)

    def _route(self, batch: pa.RecordBatch) -> BatchRoutes:
        routed = self.routed
        keys = batch.column(routed.key_column)
        if keys.null_count:
            msg = (
                f"rollout routing: {keys.null_count} rows have no {routed.key_column!r}, the key "
                "every row is routed by (nothing was written)"
            )
            raise ScoringError(msg)
        attributes = None
        if routed.attribute_columns:
            values = [batch.column(c).to_pylist() for c in routed.attribute_columns]
            names = routed.attribute_columns
            attributes = [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]
        return self.router.route_batch(keys.to_pylist(), attributes)

    def _scores(
        self,
        batch: pa.RecordBatch,
        reference: str,
        positions: np.ndarray,
        matrices: dict[tuple[tuple[str, ...], Any, str], np.ndarray],
    ) -> tuple[np.ndarray, int]:
        """Scores of the rows at ``positions`` by ``reference``, and how many had bad inputs."""
        payload = self.routed.models[reference]
        inputs = tuple(payload.signature.input_names)
        # The dtype the model computes in (the cast rounds as the JVM's cast does) and the
        # layout its predictor takes; variants that share both share the matrix.
        predictor = self.predictors[reference]
        dtype, order = payload.feature_dtype, matrix_order(predictor)
        key = (inputs, dtype, order)
        if key not in matrices:
            matrices[key] = matrix_of(batch, inputs, dtype, order)
        whole = matrices[key]
        # One variant taking the whole batch (a pinned state) needs no copy of its rows.
        matrix = whole if positions.size == whole.shape[0] else whole[positions]
        bad = nonfinite_rows(matrix)
        return predict_in_slices(predictor, matrix, self.batch_size), bad

    def score(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        rows = batch.num_rows
        routes = self._route(batch)
        matrices: dict[tuple[tuple[str, ...], Any, str], np.ndarray] = {}
        scores = np.empty(rows, dtype=np.float64)
        model_index = np.zeros(rows, dtype=np.int64)
        nonfinite = 0
        for index, variant in enumerate(routes.variants):
            positions = np.flatnonzero(routes.variant_index == index)
            if not positions.size:
                continue
            scores[positions], bad = self._scores(batch, variant.model, positions, matrices)
            model_index[positions] = self.references.index(variant.model)
            nonfinite += bad
        if self.counters is not None:
            self.counters.rows.add(rows)
            if nonfinite:
                self.counters.nonfinite_rows.add(nonfinite)
        variant_names = np.asarray([v.name for v in routes.variants], dtype=object)
        take = [np.arange(rows, dtype=np.int64)]
        score_parts, model_parts = [scores], [model_index]
        variant_parts = [variant_names[routes.variant_index]]
        sampled = routes.shadow_positions().astype(np.int64)
        for reference in dict.fromkeys(routes.shadows):
            shadow_index = self.references.index(reference)
            positions = sampled[model_index[sampled] != shadow_index]
            if not positions.size:
                continue
            shadow_scores, _ = self._scores(batch, reference, positions, matrices)
            take.append(positions)
            score_parts.append(shadow_scores)
            model_parts.append(np.full(positions.size, shadow_index, dtype=np.int64))
            variant_parts.append(np.full(positions.size, SHADOW_VARIANT, dtype=object))
        order = np.concatenate(take)
        models = np.concatenate(model_parts)
        size = order.size
        passed = batch.select(self.passed).take(pa.array(order, type=pa.int64()))
        return pa.RecordBatch.from_arrays(
            [
                *passed.columns,
                score_array(np.concatenate(score_parts)),  # non-finite: null
                pa.array(self.names[models], type=pa.string()),
                pa.array(self.versions[models], type=pa.string()),
                pa.array(self.hashes[models], type=pa.string()),
                pa.array(np.concatenate(variant_parts), type=pa.string()),
                pa.array([routes.experiment] * size, type=pa.string()),
                pa.array(np.arange(size) < rows, type=pa.bool_()),
            ],
            names=[
                *self.passed,
                SCORE_COLUMN,
                *ROW_MODEL_COLUMNS,
                VARIANT_COLUMN,
                EXPERIMENT_COLUMN,
                SERVED_COLUMN,
            ],
        )
