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
keeps one served row). ``ignore_rollout`` scores with the resolved version only.

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
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from lakecast.errors import LakecastError, SchemaError, ScoringError
from lakecast.registry.environment import check_loaded_libraries
from lakecast.scoring.batch import (
    DEFAULT_BATCH_SIZE,
    SCORE_COLUMN,
    BatchScoring,
    ModelScoring,
    new_counters,
    on_frame,
)
from lakecast.scoring.cache import ModelPayload
from lakecast.scoring.checks import check_feature_columns, nonfinite_score_counts
from lakecast.scoring.direct import ReadMode, choose_read, score_direct
from lakecast.scoring.incremental import changed_rows, last_scored_features_version
from lakecast.scoring.routed import RolloutPlan, RoutedScoring, rollout_to_follow
from lakecast.scoring.writer import (
    SERVED_COLUMN,
    VARIANT_COLUMN,
    ExperimentRows,
    ScoringRun,
    merge_predictions,
    with_run_columns,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

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


@dataclass(frozen=True)
class ScoringSummary:
    """What a run did; the job prints it as JSON."""

    run_id: str
    model_name: str
    model_version: str
    model_sha256: str
    features_table_version: int
    incremental: bool
    since_features_version: int | None
    rows_scored: int
    nonfinite_rows: int
    predictions_table_version: int | None
    # Model version -> scores that came out NaN or infinite: written as null, never as a score.
    nonfinite_scores: dict[str, int] = field(default_factory=dict)
    # The rollout that routed the rows (None: every row scored by model_version), and per
    # (variant, model version, served) how many rows were written.
    rollout: dict[str, Any] | None = None
    variants: list[dict[str, Any]] = field(default_factory=list)
    # How the features were read ("spark" or "direct") and why (a fallback names its cause).
    read: str = "spark"
    read_reason: str = ""

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
    from lakecast.lake.delta import is_delta_table, table_version
    from lakecast.registry import Registry

    if request.batch_size < 1:
        msg = f"score_batch: --batch-size must be >= 1, got {request.batch_size}"
        raise ScoringError(msg)
    registry = Registry(request.registry_root)
    record = registry.resolve(request.model)
    check_loaded_libraries(record)  # the tasks load it under the driver's libraries
    state = None
    if not request.ignore_rollout:
        state = rollout_to_follow(request.registry_root, request.model)
    plan = None if state is None else RolloutPlan.build(state, registry)
    payloads = [ModelPayload.from_version(record)] if plan is None else plan.payloads
    if not is_delta_table(spark, request.features_path):
        msg = f"score_batch: no Delta features table at {request.features_path!r}"
        raise SchemaError(msg)
    version = request.features_table_version
    if version is None:
        version = table_version(spark, request.features_path)
    frame = spark.read.format("delta").option("versionAsOf", version).load(request.features_path)
    out_columns = [*request.key_columns, *request.passthrough_columns]
    routing_columns = [] if plan is None else list(plan.required_columns)
    for payload in payloads:
        check_feature_columns(
            frame.schema,
            payload.signature,
            f"score {payload.name}:{payload.version} on {request.features_path} v{version}",
            required=[*out_columns, *routing_columns],
        )
    where = f"score {record.ref if plan is None else _rollout_name(plan)} on "
    where += f"{request.features_path} v{version}"
    rollout = None if plan is None else plan.describe()
    since = None
    if request.incremental:
        since = last_scored_features_version(
            spark,
            request.predictions_path,
            record.name,
            record.version,
            None if rollout is None else (rollout["id"], rollout["revision"]),
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
        rollout=rollout,
    )
    counters = new_counters(frame)
    scoring: BatchScoring
    if plan is None:
        scoring = ModelScoring.build(
            spark,
            payloads[0],
            out_columns=out_columns,
            batch_size=request.batch_size,
            counters=counters,
        )
    else:
        scoring = RoutedScoring.build(
            spark, plan, out_columns=out_columns, batch_size=request.batch_size, counters=counters
        )
    if read.scan is None:
        scored = on_frame(frame, scoring)
    else:
        scored = score_direct(spark, read.scan, scoring, schema)
    with _session_conf(spark, ARROW_BATCH_CONF, str(request.batch_size)):
        try:
            materialized = scored.localCheckpoint(eager=True)
        except LakecastError:
            raise
        except Exception as exc:  # a task failed: PythonException / Py4JJavaError
            msg = f"{where}: scoring failed, nothing was written: {_first_line(exc)}"
            raise ScoringError(msg) from exc
    variants = [] if plan is None else _variant_counts(materialized)
    total = materialized.count() if plan is None else sum(v["rows"] for v in variants)
    rows = total if plan is None else sum(v["rows"] for v in variants if v["served"])
    written = None
    bad_scores = (
        nonfinite_score_counts(materialized, SCORE_COLUMN, record.ref if plan is None else None)
        if total
        else {}
    )
    if bad_scores:
        log.warning(
            "%s: non-finite scores written as null, per model version: %s",
            where,
            bad_scores,
            extra={"nonfinite_scores": bad_scores},
        )
    if total:
        nonfinite = int(counters.nonfinite_rows.value)
        metadata: dict[str, Any] = {"rows": rows, "nonfinite_rows": nonfinite, "read": read.path}
        metadata["nonfinite_scores"] = bad_scores
        replace = None
        if plan is not None:
            metadata["shadow_rows"] = total - rows
            if since is None:  # a full run: the experiment's rows it did not write are stale
                names = tuple(sorted({payload.name for payload in plan.payloads}))
                replace = ExperimentRows(plan.state.spec.id, names)
        written = merge_predictions(
            with_run_columns(materialized, run),
            request.predictions_path,
            request.key_columns,
            run,
            metadata,
            replace=replace,
        )
    return ScoringSummary(
        run_id=run.run_id,
        model_name=record.name,
        model_version=record.version,
        model_sha256=record.sha256,
        features_table_version=version,
        incremental=request.incremental,
        since_features_version=since,
        rows_scored=rows,
        nonfinite_rows=int(counters.nonfinite_rows.value),
        predictions_table_version=written,
        nonfinite_scores=bad_scores,
        rollout=rollout,
        variants=variants,
        read=read.path,
        read_reason=read.reason,
    )


def _rollout_name(plan: RolloutPlan) -> str:
    spec = plan.state.spec
    return f"{plan.state.model} rollout {spec.id!r} (revision {plan.state.revision})"


def _variant_counts(scored: DataFrame) -> list[dict[str, Any]]:
    """Rows per (variant, model, served) of a routed, materialized frame."""
    groups = scored.groupBy(VARIANT_COLUMN, "model_name", "model_version", SERVED_COLUMN).count()
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
    return sorted(found, key=lambda v: (not v["served"], v["variant"], v["model_version"]))


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
