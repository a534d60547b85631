"""The online inference worker: events in, predictions, dead letters and metrics out.

Per micro-batch (:meth:`InferenceWorker.process`): decode and validate each record, compute
the per-event features with the batch path's own transforms plus the entity aggregates of the
latest snapshot, route the events (champion, or the variants of a rollout), predict once per
model on its share of the batch, and return one ``predictions`` record per good event and one
dead letter per bad one. :func:`lakecast.kafka.loop.run_loop` makes each batch's outputs and
its offsets durable together (exactly once by default).

A record for which the model fails alone is dead-lettered (``model_error``); the rest of its
batch is still scored. Each prediction names its event as its source, so one the producer
cannot send (the contract's bounds leave none: a safeguard) dead-letters that event alone
(``output_too_large``, see :mod:`lakecast.kafka.poison`). The model, the routing state and
the snapshot are read once at the start of a batch, so an alias switch takes effect between
two batches.

``latency_ms`` on a prediction is the time from the event record's Kafka timestamp to the
prediction being made; the end-to-end histogram measures to the commit.

Each batch's feature matrix is checked against the spec's declared invariants (a breaking row
is served and flagged), and a sample of the served vectors goes to the ``served_features``
topic once the batch is committed, never inside its transaction: see
:mod:`lakecast.serving.feature_log`.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
from kafka.consumer.fetcher import ConsumerRecord
from threadpoolctl import threadpool_limits

from lakecast.features.online import online_feature_matrix
from lakecast.features.spec import FEATURES_VERSION
from lakecast.features.transforms import validate_event_batch
from lakecast.kafka.batch import BatchReport, BatchResult, OutputRecord
from lakecast.kafka.dlq import DeadLetter
from lakecast.kafka.loop import LoopStats, run_loop
from lakecast.kafka.serde import Event, PredictionEncoder
from lakecast.serving.decoding import MODEL_ERROR, decode_records, events_table
from lakecast.serving.feature_log import FeatureLog
from lakecast.serving.metrics import Sampler, WorkerMetrics, lag_of
from lakecast.serving.model_source import ModelSource, ServingModel, SnapshotSource
from lakecast.serving.routing import SHADOW, BatchRouter, RoutingSource, ServingGroup
from lakecast.serving.worker_config import WorkerConfig, WorkerOptions

if TYPE_CHECKING:
    from kafka import KafkaConsumer, KafkaProducer

    from lakecast.config import KafkaSettings, Settings

log = logging.getLogger(__name__)

# The cyclic collector's thresholds while serving (Python's default is 700, 10, 10): a batch
# allocates tens of thousands of short-lived objects, freed by reference counting, and the
# default ran a young collection some 50 times a second.
GC_THRESHOLDS = (50_000, 20, 20)


@dataclass
class _Pending:
    """What one call of :meth:`InferenceWorker.process` produced, for the metrics once its
    batch is committed. It travels in the batch result's notes, so a call that raised (the
    loop then processes the records one by one) or a batch that was aborted counts nothing."""

    # Per variant: the scores served, and the Kafka timestamps of the events that had one.
    scores: dict[str, list[float]] = field(default_factory=dict)
    timestamps_ms: dict[str, list[float]] = field(default_factory=dict)
    shadow: list[tuple[float, float]] = field(default_factory=list)  # (score, score - served)
    model_seconds: float = 0.0
    # Per variant: the duration of each of its predict calls, and its records the model failed.
    model_ms: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    users: dict[str, set[str]] = field(default_factory=dict)
    # Per model version ("name:version"): NaN or infinite scores, dead-lettered, never served.
    nonfinite: dict[str, int] = field(default_factory=dict)
    # The served-feature sample (key, value) and the count of broken invariants per feature.
    feature_samples: list[tuple[bytes, bytes]] = field(default_factory=list)
    violations: dict[str, int] = field(default_factory=dict)

    def add(self, other: _Pending) -> None:
        for mine, theirs in (
            (self.scores, other.scores),
            (self.timestamps_ms, other.timestamps_ms),
            (self.model_ms, other.model_ms),
        ):
            for variant, values in theirs.items():
                mine.setdefault(variant, []).extend(values)
        self.shadow.extend(other.shadow)
        self.model_seconds += other.model_seconds
        for variant, errors in other.errors.items():
            self.errors[variant] = self.errors.get(variant, 0) + errors
        for variant, users in other.users.items():
            self.users.setdefault(variant, set()).update(users)
        for key, count in other.nonfinite.items():
            self.nonfinite[key] = self.nonfinite.get(key, 0) + count
        self.feature_samples.extend(other.feature_samples)
        for feature, count in other.violations.items():
            self.violations[feature] = self.violations.get(feature, 0) + count

    @classmethod
    def of(cls, notes: tuple[object, ...]) -> _Pending:
        """The notes of a committed batch, as one (one per process call)."""
        found = [note for note in notes if isinstance(note, _Pending)]
        if len(found) == 1:
            return found[0]
        merged = cls()
        for pending in found:
            merged.add(pending)
        return merged


class InferenceWorker:
    """Scores micro-batches of ``events`` records; :meth:`run` serves a topic until stopped."""

    def __init__(
        self,
        config: WorkerConfig,
        models: ModelSource,
        snapshots: SnapshotSource,
        routing: RoutingSource | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.config = config
        self.models = models
        models.threads = config.serving.model_threads  # the ONNX session's pool, sized at load
        self.snapshots = snapshots
        self.router = BatchRouter(models, routing, background_loading=True)
        self.metrics = metrics or WorkerMetrics(config.source_id)
        self.feature_log = FeatureLog(config.drift, config.topics.served_features, config.source_id)
        self._consumer: object | None = None
        self.sampler: Sampler | None = None
        self.last_latencies_s: list[float] = []  # end to end, of the last committed batch

    # ---- one micro-batch ---------------------------------------------------------------
    def process(self, records: list[ConsumerRecord]) -> BatchResult:
        """Predictions for the good records of ``records``, dead letters for the bad ones."""
        kept, events, dead = decode_records(records, self.config.serving.max_record_bytes)
        pending = _Pending()
        result = BatchResult(dead_letters=dead, notes=[pending])
        if events:
            table = events_table(events)
            problems = validate_event_batch(table)
            good = [i for i, problem in enumerate(problems) if problem is None]
            for i, problem in enumerate(problems):
                if problem is not None:
                    result.dead_letters.append(DeadLetter(kept[i], problem.kind, problem.message))
            if len(good) < len(events):
                # Typed: take([]) on a list pyarrow infers as null-typed has no kernel.
                table = table.take(pa.array(good, type=pa.int64()))
                kept = [kept[i] for i in good]
                events = [events[i] for i in good]
            if events:
                matrix = online_feature_matrix(table, self.snapshots.current())
                broken, pending.violations = self.feature_log.violations(matrix)
                self._score(kept, events, matrix, result, pending, broken)
        return result

    def _score(
        self,
        records: list[ConsumerRecord],
        events: list[Event],
        matrix: np.ndarray,
        result: BatchResult,
        pending: _Pending,
        broken: np.ndarray,
    ) -> None:
        plan = self.router.plan(
            [event.user_id for event in events],
            lambda: [
                {"device": e.device, "country": e.country, "category": e.category} for e in events
            ],
        )
        self.metrics.set_models(
            {g.variant: _model_labels(g.model) for g in (*plan.serving, *plan.shadows)}
        )
        served: dict[int, float] | None = {} if plan.shadows else None
        for group in plan.serving:
            scores, failures = self._predict(
                group.model, matrix[group.positions], group.variant, pending
            )
            self._outputs(group, scores, failures, records, events, result, pending, served)
            pending.feature_samples += self.feature_log.sample(
                events,
                group.positions.tolist(),
                failures,
                matrix,
                broken,
                _model_labels(group.model),
                group.variant,
            )
        for group in plan.shadows:
            # A shadow's output is never served: its scores and their differences to what was
            # served go to the metrics only.
            scores, failures = self._predict(group.model, matrix[group.positions], SHADOW, pending)
            for position, score, failure in zip(group.positions, scores, failures, strict=True):
                if failure is None and served is not None and int(position) in served:
                    difference = float(score) - served[int(position)]
                    pending.shadow.append((float(score), difference))

    def _predict(
        self, model: ServingModel, matrix: np.ndarray, variant: str, pending: _Pending
    ) -> tuple[np.ndarray, list[str | None]]:
        """Scores of the rows, and per row the reason it failed (None when scored).

        The call's duration is kept per variant: the canary analysis compares the model
        latency of candidate and baseline. Per call, not per row: a canary's small share of a
        batch would otherwise carry the call's fixed cost over few rows and look slow.
        """
        started = time.perf_counter()
        try:
            scores = np.asarray(model.predictor.predict(matrix), np.float64)
            failures: list[str | None] = [None] * len(scores)
        except Exception:
            # One bad row must not sink the batch: score the rows one by one.
            scores = np.full(matrix.shape[0], np.nan)
            failures = [None] * matrix.shape[0]
            for row in range(matrix.shape[0]):
                try:
                    scores[row] = float(model.predictor.predict(matrix[row : row + 1])[0])
                except Exception as exc:
                    failures[row] = f"model {model.key}: {type(exc).__name__}: {exc}"
        elapsed = time.perf_counter() - started
        pending.model_seconds += elapsed
        pending.model_ms.setdefault(variant, []).append(elapsed * 1000)
        self.metrics.observe_model(elapsed)
        nonfinite = 0
        for row in np.flatnonzero(~np.isfinite(scores)).tolist():
            if failures[row] is None:
                failures[row] = f"model {model.key}: non-finite score {scores[row]}, not served"
                nonfinite += 1
        if nonfinite:
            pending.nonfinite[model.key] = pending.nonfinite.get(model.key, 0) + nonfinite
        return scores, failures

    def _outputs(
        self,
        group: ServingGroup,
        scores: np.ndarray,
        failures: list[str | None],
        records: list[ConsumerRecord],
        events: list[Event],
        result: BatchResult,
        pending: _Pending,
        served: dict[int, float] | None,
    ) -> None:
        """One ``predictions`` record per scored event of ``group`` (a dead letter per
        failure), and what the metrics need once the batch is committed; ``served`` gets the
        score of each position when shadows are to be compared with it."""
        variant, topic, outputs = group.variant, self.config.topics.predictions, result.outputs
        encoder = PredictionEncoder(group.model.ref, variant, group.experiment, FEATURES_VERSION)
        users: set[str] = set()
        scored: list[float] = []
        timestamps: list[float] = []
        now_ms = time.time() * 1000  # when the group's predictions were made
        for position, score, failure in zip(
            group.positions.tolist(), scores.tolist(), failures, strict=True
        ):
            record = records[position]
            if failure is not None:
                result.dead_letters.append(DeadLetter(record, MODEL_ERROR, failure))
                pending.errors[variant] = pending.errors.get(variant, 0) + 1
                continue
            event = events[position]
            timestamp = record.timestamp
            if timestamp and timestamp > 0:
                timestamps.append(timestamp)
                latency_ms = round(max(0.0, now_ms - timestamp), 3)
            else:
                latency_ms = 0.0
            value = encoder.encode(event.event_id, event.user_id, event.ts, score, latency_ms)
            # Its source: a prediction that cannot be produced dead-letters this event alone.
            outputs.append(OutputRecord(topic, value, event.user_id.encode(), (), record))
            scored.append(score)
            users.add(event.user_id)
            if served is not None:
                served[position] = score
        if scored:
            pending.scores.setdefault(variant, []).extend(scored)
            pending.timestamps_ms.setdefault(variant, []).extend(timestamps)
            pending.users.setdefault(variant, set()).update(users)

    # ---- after a commit -----------------------------------------------------------------
    def on_batch(self, report: BatchReport) -> None:
        """Called by the loop once a batch is committed: metrics, lag."""
        pending = _Pending.of(report.notes)
        now_ms = time.time() * 1000
        latency_by_variant = {
            variant: np.maximum(0.0, now_ms - np.asarray(stamps, np.float64)) / 1000
            for variant, stamps in pending.timestamps_ms.items()
        }
        latencies = (
            np.concatenate(list(latency_by_variant.values())) if latency_by_variant else np.empty(0)
        )
        self.last_latencies_s = latencies.tolist()
        self.metrics.record_batch(
            size=report.records,
            latencies_s=latencies,
            dead_kinds=list(report.dead_letter_kinds),
            variant_scores=pending.scores,
            variant_latencies_s=latency_by_variant,
            model_seconds=pending.model_seconds,
            variant_model_ms=pending.model_ms,
            variant_errors=pending.errors,
            variant_users=pending.users,
            isolated=report.isolated,
        )
        if pending.shadow:
            self.metrics.record_shadow(pending.shadow)
        if pending.nonfinite:
            self.metrics.record_nonfinite(pending.nonfinite)
        self.feature_log.committed(pending.feature_samples, pending.violations)
        if self._consumer is not None:
            self.metrics.set_lag(lag_of(self._consumer))

    # ---- serving a topic ----------------------------------------------------------------
    def _after_batch(
        self, extra: Callable[[BatchReport], None] | None
    ) -> Callable[[BatchReport], None]:
        if extra is None:
            return self.on_batch

        def both(report: BatchReport) -> None:
            self.on_batch(report)
            extra(report)

        return both

    def run(
        self,
        kafka: KafkaSettings,
        stop_event: threading.Event,
        after_batch: Callable[[BatchReport], None] | None = None,
    ) -> LoopStats:
        """Serve ``events_topic`` until ``stop_event`` is set (SIGTERM / SIGINT).

        ``after_batch`` is called after each committed batch (benchmarks count with it).

        Raises:
            FatalDeliveryError: the producer was fenced; restart the process.
            StreamError: the broker stayed away for too long.
        """
        config = self.config
        with self._sources_running(), _long_lived_heap():
            consumer, producer, samples = self._clients(kafka)
            self._consumer = consumer
            sampler = self._start_sampling(samples)
            log.info(
                "worker %s serving %s with %s (delivery %s)",
                config.source_id,
                config.topics.events,
                self.models.current().key,
                config.serving.delivery,
            )
            # OpenMP and BLAS size their pools by the cores; a scikit-learn forest then splits
            # a 5-row batch over every core, and the spinning pools of two workers on two
            # cores took the demo's p50 from 19 ms to 100-1,700 ms at 500 events/s. The OpenMP
            # limit holds for the calling thread: the loop's, which runs every predict.
            try:
                with threadpool_limits(limits=config.serving.model_threads):
                    return run_loop(
                        consumer,
                        producer,
                        self.process,
                        topics=[config.topics.events],
                        dlq_topic=config.topics.dlq,
                        stop_event=stop_event,
                        loop=config.loop,
                        on_batch=self._after_batch(after_batch),
                    )
            finally:
                self._consumer = None
                self._stop_sampling(sampler, samples)

    @contextmanager
    def _sources_running(self) -> Iterator[None]:
        """The model, the snapshot and the routing polled while serving; stopped after."""
        self.models.start()
        self.snapshots.start()
        self.router.start()
        try:
            yield
        finally:
            self.models.stop()
            self.snapshots.stop()

    def _clients(self, kafka: KafkaSettings) -> tuple[KafkaConsumer, KafkaProducer, KafkaProducer]:
        """The group's consumer, the output producer (transactional in exactly-once) and the
        plain producer of the metrics samples and served-feature samples."""
        from lakecast.kafka.clients import build_consumer, build_producer, transactional_id_for

        config, serving = self.config, self.config.serving
        consumer = build_consumer(
            kafka,
            group_id=serving.group_id,
            client_id=config.source_id,
            max_poll_records=serving.max_batch,
        )
        transactional_id = None
        if serving.delivery == "exactly_once":
            transactional_id = config.transactional_id or transactional_id_for(serving.group_id)
        producer = build_producer(
            kafka,
            mode=serving.delivery,
            transactional_id=transactional_id,
            client_id=config.source_id,
            **(
                {"transaction_timeout_ms": serving.transaction_timeout_ms}
                if transactional_id
                else {}
            ),
        )
        samples = build_producer(kafka, mode="at_least_once", client_id=f"{config.source_id}-m")
        return consumer, producer, samples

    def _start_sampling(self, samples: KafkaProducer) -> Sampler:
        config = self.config
        self.sampler = sampler = Sampler(
            self.metrics,
            lambda key, value: samples.send(config.topics.metrics, key=key, value=value),
            interval_s=config.serving.sample_interval_s,
            snapshot_age=self.snapshots.age_s,
            snapshot_version=lambda: self.snapshots.current().table_version,
        )
        sampler.start()
        self.feature_log.start(lambda topic, key, value: samples.send(topic, key=key, value=value))
        return sampler

    def _stop_sampling(self, sampler: Sampler, samples: KafkaProducer) -> None:
        try:
            sampler.stop()
            self.feature_log.stop()
            samples.flush(timeout=10)
        finally:
            samples.close(timeout=10)


@contextmanager
def _long_lived_heap() -> Iterator[None]:
    """Everything alive now (modules, the model, the snapshot) lives as long as the process:
    kept out of the cyclic collector's full passes, which scanned all of it and paused
    serving for up to 90 ms (4 times in 17 s at 3,400 events/s). The collector is left as
    found: the process may go on (tests, notebooks), and its exit then finalises objects the
    usual way."""
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _model_labels(model: ServingModel) -> dict[str, str]:
    ref = model.ref
    return {"name": ref.name, "version": ref.version, "sha256": ref.sha256}


def build_worker(
    settings: Settings,
    options: WorkerOptions | None = None,
    *,
    routing: RoutingSource | None = None,
) -> InferenceWorker:
    """A worker from the config, with the command line's ``options`` applied.

    Raises:
        ConfigError: an option makes the config invalid.
    """
    from lakecast.registry import Registry

    options = options or WorkerOptions()
    config = WorkerConfig.from_settings(settings, options)
    serving = config.serving
    registry_root = options.registry or settings.registry_root
    models = ModelSource(Registry(registry_root), serving.model, poll_s=serving.registry_poll_s)
    path = serving.entity_features or settings.lake.table("entity_features")
    snapshots = SnapshotSource(path, poll_s=serving.snapshot_poll_s)
    if routing is None:
        from lakecast.registry.references import parse_reference
        from lakecast.rollout.source import RolloutSource

        # The rollout the registry records for this model (none: everything to the alias).
        routing = RolloutSource(
            registry_root,
            parse_reference(models.reference).name,
            interval_s=serving.registry_poll_s,
        )
    return InferenceWorker(config, models, snapshots, routing)
