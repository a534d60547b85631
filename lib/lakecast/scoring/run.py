"""One batch-scoring run: resolve the model, check the input, score, MERGE into ``predictions``.

Everything that can be refused is refused before a task runs: an unknown model, alias or
version, an artifact whose sha256 differs from the registry's, missing or mistyped feature
columns. Scoring then runs once into a local checkpoint (so a model that refuses a batch fails
the job before anything is written, and the NaN counter counts each row once), and the scores
go into ``predictions`` in a single MERGE commit. No outcome leaves a partial write.

``NAME`` and ``NAME@champion`` follow the rollout the registry records for the model, as the
streaming workers do (:mod:`lakecast.scoring.routed`): every variant scores the rows routed to
it in the same run, each row tagged with its variant and experiment. A full run under a
rollout replaces that experiment's earlier rows (an event that moved to another variant since
keeps one served row). ``ignore_rollout`` scores with the resolved version only. Either way
the run has one path: a single model is the plan with one serving variant and no rollout
(:mod:`lakecast.scoring.plan`), and the plan answers what differs.

The features are read in one of two ways (``read``, ``--read``): by Spark, which ships every
feature column to the Python workers, or directly by the Python workers from the table's
Parquet files (:mod:`lakecast.scoring.direct`), which is faster and gives the same rows.
``auto`` reads directly unless the run reads the change data feed or the table needs what the
direct read does not implement (deletion vectors, column mapping, a non-local path); the
summary says which read ran and why.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from lakecast.errors import LakecastError, SchemaError, ScoringError
from lakecast.registry.environment import check_loaded_libraries
from lakecast.scoring.batch import DEFAULT_BATCH_SIZE, new_counters, on_frame
from lakecast.scoring.checks import check_feature_columns
from lakecast.scoring.direct import ReadMode, choose_read, score_direct
from lakecast.scoring.incremental import changed_rows, last_scored_features_version
from lakecast.scoring.plan import PlanScoring, RowCounts, ScoringPlan, SingleModel
from lakecast.scoring.routed import RolloutPlan, rollout_to_follow
from lakecast.scoring.writer import ScoringRun, merge_predictions, with_run_columns

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from lakecast.registry import Registry
    from lakecast.registry.records import ModelVersion

log = logging.getLogger(__name__)

ARROW_BATCH_CONF = "spark.sql.execution.arrow.maxRecordsPerBatch"


@dataclass(frozen=True)
class ScoringRequest:
    """What ``jobs/score_batch.py`` asks for."""

    model: str  # NAME@ALIAS, NAME:VERSION or NAME (the latest)
    features_path: str
    predictions_path: str
    registry_root: str
    features_table_version: int | None = None
    incremental: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE
    run_id: str | None = None
    key_columns: tuple[str, ...] = ("event_id",)
    passthrough_columns: tuple[str, ...] = ("user_id", "ts")
    ignore_rollout: bool = False  # score with --model's version only, even during a rollout
    read: ReadMode = "auto"  # how the features are read: auto, spark or direct


@dataclass(frozen=True, kw_only=True)
class ScoringSummary(ScoringRun):
    """What a run did (its :class:`~lakecast.scoring.writer.ScoringRun` and the outcome); the
    job prints it as JSON."""

    rows_scored: int  # served rows: shadow scores are not counted
    nonfinite_rows: int
    predictions_table_version: int | None
    # Model version -> scores that came out NaN or infinite: written as null, never as a score.
    nonfinite_scores: dict[str, int] = field(default_factory=dict)
    # Under a rollout (``rollout`` set): per (variant, model version, served) the rows written.
    variants: list[dict[str, Any]] = field(default_factory=list)
    # How the features were read ("spark" or "direct") and why (a fallback names its cause).
    read: str = "spark"
    read_reason: str = ""

    @classmethod
    def of(cls, run: ScoringRun, **outcome: Any) -> ScoringSummary:
        return cls(**{f.name: getattr(run, f.name) for f in fields(run)}, **outcome)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextmanager
def _session_conf(spark: SparkSession, key: str, value: str) -> Iterator[None]:
    previous = spark.conf.get(key, None)
    spark.conf.set(key, value)
    try:
        yield
    finally:
        if previous is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, previous)


def score_batch(spark: SparkSession, request: ScoringRequest) -> ScoringSummary:
    """Score the features table with a registered model and MERGE into ``predictions``.

    Raises:
        ModelNotFoundError: unknown model, alias or version (or one a rollout routes to).
        ModelIntegrityError: the artifact does not match its recorded sha256.
        SchemaError: no features table, or feature columns missing or mistyped.
        ScoringError: a task failed (e.g. the NaN policy ``error`` refused a batch), the
            change data feed cannot be read for an incremental run, or ``read`` is
            ``direct`` where the direct read cannot be used.
    """
    from lakecast.registry import Registry

    if request.batch_size < 1:
        msg = f"score_batch: --batch-size must be >= 1, got {request.batch_size}"
        raise ScoringError(msg)
    registry = Registry(request.registry_root)
    record = registry.resolve(request.model)
    check_loaded_libraries(record)  # the tasks load it under the driver's libraries
    plan = _plan(request, registry, record)
    frame, version = _checked_features(spark, request, plan)
    where = f"score {plan.label} on {request.features_path} v{version}"
    since = None
    if request.incremental:
        since = last_scored_features_version(
            spark, request.predictions_path, record.name, record.version, plan.rollout_key()
        )
    # A first incremental run (no earlier run to start after) reads the whole table.
    read = choose_read(
        spark, request.read, request.features_path, version, change_feed=since is not None
    )
    log.info("%s: %s read (%s)", where, read.path, read.reason)
    schema = frame.schema
    if since is not None:
        frame = changed_rows(spark, request.features_path, since, version, request.key_columns)
    run = ScoringRun(
        run_id=request.run_id or uuid.uuid4().hex,
        model_name=record.name,
        model_version=record.version,
        model_sha256=record.sha256,
        features_path=request.features_path,
        features_table_version=version,
        incremental=request.incremental,
        since_features_version=since,
        rollout=plan.describe(),
    )
    counters = new_counters(frame)
    scoring = PlanScoring.build(
        spark,
        plan,
        out_columns=_out_columns(request),
        batch_size=request.batch_size,
        counters=counters,
    )
    scored = (
        on_frame(frame, scoring)
        if read.scan is None
        else score_direct(spark, read.scan, scoring, schema)
    )
    materialized = _materialize(spark, scored, request.batch_size, where)
    counts = plan.count_rows(materialized)
    nonfinite = int(counters.nonfinite_rows.value)
    bad_scores, written = _write_predictions(
        materialized, plan, counts, run, request, read.path, nonfinite, where
    )
    return ScoringSummary.of(
        run,
        rows_scored=counts.served,
        nonfinite_rows=nonfinite,
        predictions_table_version=written,
        nonfinite_scores=bad_scores,
        variants=[dict(v) for v in counts.variants],
        read=read.path,
        read_reason=read.reason,
    )


def _write_predictions(
    materialized: DataFrame,
    plan: ScoringPlan,
    counts: RowCounts,
    run: ScoringRun,
    request: ScoringRequest,
    read_path: str,
    nonfinite: int,
    where: str,
) -> tuple[dict[str, int], int | None]:
    """MERGE the scored rows in one commit; the non-finite scores per model version (written
    as null) and the new ``predictions`` version (None when there was nothing to write)."""
    if not counts.written:
        return {}, None
    bad_scores = plan.nonfinite_scores(materialized)
    if bad_scores:
        log.warning(
            "%s: non-finite scores written as null, per model version: %s",
            where,
            bad_scores,
            extra={"nonfinite_scores": bad_scores},
        )
    # A full run under a rollout replaces its experiment's rows it did not write.
    extra, replace = plan.merge_terms(counts, full_run=run.since_features_version is None)
    metadata: dict[str, Any] = {
        "rows": counts.served,
        "nonfinite_rows": nonfinite,
        "read": read_path,
        "nonfinite_scores": bad_scores,
        **extra,
    }
    written = merge_predictions(
        with_run_columns(materialized, run),
        request.predictions_path,
        request.key_columns,
        run,
        metadata,
        replace=replace,
    )
    return bad_scores, written


def _out_columns(request: ScoringRequest) -> list[str]:
    return [*request.key_columns, *request.passthrough_columns]


def _checked_features(
    spark: SparkSession, request: ScoringRequest, plan: ScoringPlan
) -> tuple[DataFrame, int]:
    """The features table at the requested (else latest) version, its columns checked against
    every model of the plan before any task runs."""
    from lakecast.lake.delta import is_delta_table, table_version

    if not is_delta_table(spark, request.features_path):
        msg = f"score_batch: no Delta features table at {request.features_path!r}"
        raise SchemaError(msg)
    version = request.features_table_version
    if version is None:
        version = table_version(spark, request.features_path)
    frame = spark.read.format("delta").option("versionAsOf", version).load(request.features_path)
    for payload in plan.payloads:
        check_feature_columns(
            frame.schema,
            payload.signature,
            f"score {payload.name}:{payload.version} on {request.features_path} v{version}",
            required=[*_out_columns(request), *plan.required_columns],
        )
    return frame, version


def _materialize(spark: SparkSession, scored: DataFrame, batch_size: int, where: str) -> DataFrame:
    """Run the scoring once into a local checkpoint: a task's failure fails the run here,
    before anything is written."""
    with _session_conf(spark, ARROW_BATCH_CONF, str(batch_size)):
        try:
            return scored.localCheckpoint(eager=True)
        except LakecastError:
            raise
        except Exception as exc:  # a task failed: PythonException / Py4JJavaError
            msg = f"{where}: scoring failed, nothing was written: {_first_line(exc)}"
            raise ScoringError(msg) from exc


def _plan(request: ScoringRequest, registry: Registry, record: ModelVersion) -> ScoringPlan:
    """The rollout the run follows (see the module docstring), else ``record`` alone."""
    state = None
    if not request.ignore_rollout:
        state = rollout_to_follow(request.registry_root, request.model)
    if state is None:
        return SingleModel.of(record)
    return RolloutPlan.build(state, registry)


def _first_line(exc: BaseException) -> str:
    """The worker's own error line out of Spark's long wrapped message, when there is one."""
    text = str(exc)
    for line in text.splitlines():
        if "Error:" in line and "lakecast" in line:
            return line.strip()
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("lakecast.errors.", "DataError", "SchemaError")):
            return stripped
    return text.splitlines()[0] if text else type(exc).__name__
