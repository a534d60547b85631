"""What a batch-scoring run scores with: a plan of serving variants, resolved on the driver.

A single model is the plan with one serving variant and no rollout (:class:`SingleModel`); a
rollout's variants and shadows are :class:`~lakecast.scoring.routed.RolloutPlan`. The run
(:func:`lakecast.scoring.run.score_batch`) asks its plan every question whose answer differs
between the two (the columns rows are routed by, the models to check, the rows per variant,
what a full run replaces) and so has one path for both. Each plan ships the tasks only what
they need (:meth:`ScoringPlan.task_models`): a single model's scorer never routes a row.
:class:`PlanScoring` is the one :class:`~lakecast.scoring.batch.BatchScoring` of every plan,
for Spark's read and the direct read alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from lakecast.scoring.batch import (
    DEFAULT_BATCH_SIZE,
    SCORE_COLUMN,
    BatchScorer,
    ScoringCounters,
    check_batch_size,
    model_scorer,
    on_frame,
)
from lakecast.scoring.cache import ModelPayload
from lakecast.scoring.checks import nonfinite_score_counts

if TYPE_CHECKING:
    from pyspark.broadcast import Broadcast
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructField, StructType

    from lakecast.registry.records import ModelVersion
    from lakecast.scoring.writer import ExperimentRows


class TaskModels(Protocol):
    """The part of a plan every task needs (broadcast once, picklable)."""

    def scorer(
        self, out_columns: Sequence[str], batch_size: int, counters: ScoringCounters | None
    ) -> BatchScorer:
        """In a Python worker: load the models (cached per worker) and return the scorer.

        Its batches hold ``out_columns``, the plan's required columns and the models' inputs;
        its results hold ``out_columns`` (as they came) and the plan's :meth:`score_fields`.
        """
        ...


@dataclass(frozen=True)
class RowCounts:
    """The rows a run scored: ``written`` in all, ``served`` of them (the rest are shadows'),
    and per (variant, model version, served) under a rollout."""

    written: int
    served: int
    variants: tuple[dict[str, Any], ...] = ()


class ScoringPlan(Protocol):
    """One run's models and how rows reach them; see the module docstring."""

    @property
    def label(self) -> str:
        """The plan as errors and logs name it."""
        ...

    @property
    def payloads(self) -> list[ModelPayload]:
        """Every verified model the run may score with."""
        ...

    @property
    def required_columns(self) -> tuple[str, ...]:
        """The columns rows are routed by, besides the models' inputs."""
        ...

    def describe(self) -> dict[str, Any] | None:
        """The rollout as the run records it (commit metadata, summary); None: no rollout."""
        ...

    def rollout_key(self) -> tuple[str, int] | None:
        """The (rollout id, revision) an incremental run starts after; None: no rollout."""
        ...

    def task_models(self) -> TaskModels:
        """What the tasks need to score, to broadcast."""
        ...

    def score_fields(self) -> list[StructField]:
        """The fields each scored row has after the passed columns (``score`` first)."""
        ...

    def count_rows(self, scored: DataFrame) -> RowCounts:
        """The rows of ``scored`` (materialized), per variant where the plan has variants."""
        ...

    def nonfinite_scores(self, scored: DataFrame) -> dict[str, int]:
        """``name:version`` -> rows of ``scored`` whose score is null (non-finite)."""
        ...

    def merge_terms(
        self, counts: RowCounts, full_run: bool
    ) -> tuple[dict[str, Any], ExperimentRows | None]:
        """Extra commit metadata, and the rows a run replaces (None: it replaces nothing)."""
        ...


@dataclass(frozen=True)
class SingleModel:
    """The plan with one serving variant and no rollout: ``payload`` scores every row.

    Its rows carry only ``score``: the run's model, no variant, no experiment and ``served``
    are added to every row when they are written
    (:func:`~lakecast.scoring.writer.with_run_columns`).
    It is its own :class:`TaskModels`: the payload is all a task needs.
    """

    payload: ModelPayload

    @classmethod
    def of(cls, record: ModelVersion) -> SingleModel:
        """``record``'s verified model (see :meth:`ModelPayload.from_version`)."""
        return cls(ModelPayload.from_version(record))

    @property
    def label(self) -> str:
        return f"{self.payload.name}:{self.payload.version}"

    @property
    def payloads(self) -> list[ModelPayload]:
        return [self.payload]

    @property
    def required_columns(self) -> tuple[str, ...]:
        return ()

    def describe(self) -> dict[str, Any] | None:
        return None

    def rollout_key(self) -> tuple[str, int] | None:
        return None

    def task_models(self) -> SingleModel:
        return self

    def scorer(
        self, out_columns: Sequence[str], batch_size: int, counters: ScoringCounters | None
    ) -> BatchScorer:
        return model_scorer(self.payload, out_columns, batch_size, counters)

    def score_fields(self) -> list[StructField]:
        from pyspark.sql.types import DoubleType, StructField

        return [StructField(SCORE_COLUMN, DoubleType(), True)]

    def count_rows(self, scored: DataFrame) -> RowCounts:
        rows = scored.count()
        return RowCounts(written=rows, served=rows)

    def nonfinite_scores(self, scored: DataFrame) -> dict[str, int]:
        return nonfinite_score_counts(scored, SCORE_COLUMN, self.label)

    def merge_terms(
        self, counts: RowCounts, full_run: bool
    ) -> tuple[dict[str, Any], ExperimentRows | None]:
        return {}, None


@dataclass(frozen=True)
class PlanScoring:
    """:class:`~lakecast.scoring.batch.BatchScoring` of a plan: ``out_columns`` plus the plan's
    :meth:`~ScoringPlan.score_fields` per scored row."""

    shared: Broadcast[TaskModels]
    out_columns: tuple[str, ...]
    routing_columns: tuple[str, ...]  # required by the plan, not among out_columns
    feature_columns: tuple[str, ...]
    float32_features: bool
    batch_size: int
    score_fields: tuple[StructField, ...]
    counters: ScoringCounters | None = None

    @classmethod
    def build(
        cls,
        spark: SparkSession,
        plan: ScoringPlan,
        *,
        out_columns: Sequence[str],
        batch_size: int,
        counters: ScoringCounters | None = None,
    ) -> PlanScoring:
        """Broadcast the plan's task models (once; each Python worker loads them once).

        Raises:
            ScoringError: ``batch_size`` is below 1.
        """
        check_batch_size(batch_size)
        payloads = plan.payloads
        routing = tuple(c for c in plan.required_columns if c not in out_columns)
        passed = (*out_columns, *routing)
        inputs = dict.fromkeys(name for p in payloads for name in p.signature.input_names)
        return cls(
            shared=spark.sparkContext.broadcast(plan.task_models()),
            out_columns=tuple(out_columns),
            routing_columns=routing,
            feature_columns=tuple(c for c in inputs if c not in passed),
            # With float32 models only: the same float32 values, half the bytes shipped.
            float32_features=all(p.float32_features for p in payloads),
            batch_size=batch_size,
            score_fields=tuple(plan.score_fields()),
            counters=counters,
        )

    @property
    def passed_columns(self) -> tuple[str, ...]:
        return (*self.out_columns, *self.routing_columns)

    def output_schema(self, source: StructType) -> StructType:
        from pyspark.sql.types import StructType

        by_name = {f.name: f for f in source.fields}
        return StructType([by_name[name] for name in self.out_columns] + list(self.score_fields))

    def scorer(self) -> BatchScorer:
        return self.shared.value.scorer(self.out_columns, self.batch_size, self.counters)


def score_frame(
    frame: DataFrame,
    plan: ScoringPlan,
    *,
    out_columns: Sequence[str] = ("event_id",),
    batch_size: int = DEFAULT_BATCH_SIZE,
    counters: ScoringCounters | None = None,
) -> DataFrame:
    """``frame``'s ``out_columns`` plus ``plan``'s score fields (:class:`SingleModel`: ``score``).

    Only ``out_columns``, the plan's required columns and the models' inputs cross into
    Python. The task models are broadcast once and loaded once per Python worker. Nothing runs
    until an action.
    """
    scoring = PlanScoring.build(
        frame.sparkSession, plan, out_columns=out_columns, batch_size=batch_size, counters=counters
    )
    return on_frame(frame, scoring)
