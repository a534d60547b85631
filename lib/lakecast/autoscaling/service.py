"""The autoscaler service: the ``metrics`` topic and the broker in, decisions and workers out.

It reads the workers' ``kind=sample`` and the monitor's ``kind=anomaly`` records into the
:class:`~lakecast.autoscaling.controller.ScalingController`, and at every evaluation interval
measures the consumer group's total lag from the broker itself (committed offsets against end
offsets, as KEDA's Kafka scaler does, so the lag is known even with no worker running), asks
the controller for a decision, writes it as a ``kind=scaling`` record and, locally, makes the
:class:`~lakecast.autoscaling.pool.WorkerPool` follow it. A record that breaks the contract is
logged with its offset, counted and skipped.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError
from kafka.structs import TopicPartition

from lakecast.autoscaling.controller import ScalingController
from lakecast.autoscaling.decision import ScalingDecision
from lakecast.autoscaling.policy import AutoscalePolicy
from lakecast.autoscaling.pool import WorkerPool
from lakecast.config import KafkaSettings
from lakecast.errors import DataError, InvalidRecordError, StreamError
from lakecast.kafka.clients import build_admin
from lakecast.kafka.serde import encode_json, encode_key
from lakecast.monitoring.metrics_topic import (
    MetricsTopicService,
    read_metric_record,
    report_bad_record,
)
from lakecast.monitoring.prometheus import CURRENT_REPLICAS, GROUP_LAG, SCALING_DECISIONS
from lakecast.monitoring.series import parse_sample

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GroupLag:
    """A consumer group's lag on its topics, measured from the broker."""

    total: int
    partitions: int
    by_partition: dict[str, int]


class GroupLagProbe:
    """Measures a consumer group's lag: end offsets minus the group's committed offsets.

    A partition the group never committed counts from its beginning (the workers start at
    the earliest offset), so the lag of a group that has not started yet is all its input.
    """

    def __init__(self, kafka: KafkaSettings, group: str, topics: Sequence[str]) -> None:
        if not topics:
            msg = f"lag probe for group {group!r}: no topics to measure"
            raise ValueError(msg)
        self.group = group
        self.topics = tuple(topics)
        self._admin = build_admin(kafka, client_id="lakecast-autoscaler-lag")
        try:
            self._consumer = KafkaConsumer(
                **kafka.client_options(),
                group_id=None,
                enable_auto_commit=False,
                client_id="lakecast-autoscaler-lag",
                request_timeout_ms=kafka.request_timeout_ms,
            )
        except KafkaError as exc:
            self._admin.close()
            msg = f"lag probe for group {group!r}: build consumer: {exc!r}"
            raise StreamError(msg) from exc

    def measure(self) -> GroupLag:
        """The group's lag now.

        Raises:
            StreamError: the broker did not answer or a topic does not exist.
        """
        try:
            # kafka-python 3 renamed list_consumer_group_offsets to list_group_offsets.
            committed = self._admin.list_group_offsets({self.group: None}).get(self.group, {})
            partitions: list[TopicPartition] = []
            for topic in self.topics:
                ids = self._consumer.partitions_for_topic(topic)
                if not ids:
                    msg = f"lag probe for group {self.group!r}: topic {topic!r} has no partitions"
                    raise StreamError(msg)
                partitions += [TopicPartition(topic, p) for p in sorted(ids)]
            ends = self._consumer.end_offsets(partitions)
            starts = self._consumer.beginning_offsets(partitions)
        except KafkaError as exc:
            msg = f"lag probe for group {self.group!r} on {list(self.topics)}: {exc!r}"
            raise StreamError(msg) from exc
        by_partition = {}
        for tp in partitions:
            meta = committed.get(tp)
            position = meta.offset if meta is not None and meta.offset >= 0 else starts[tp]
            by_partition[f"{tp.topic}:{tp.partition}"] = max(int(ends[tp]) - int(position), 0)
        return GroupLag(sum(by_partition.values()), len(partitions), by_partition)

    def close(self) -> None:
        self._consumer.close()
        self._admin.close()


class AutoscalerService(MetricsTopicService):
    """The autoscaler on the ``metrics`` topic, acting through a local worker pool.

    Args:
        kafka: bootstrap and security (topics are explicit).
        metrics_topic: samples and anomalies come from it; decisions go to it.
        policy: the validated policy (:func:`lakecast.autoscaling.load_policy`).
        group: the workers' consumer group (the lag probe's group, the gauges' label).
        input_topics: the topics the workers consume; with them the lag is measured from the
            broker, without them it is the lag the workers report in their samples.
        pool: the local workers to scale; None only decides and writes records.
        partitions: the input's partition count (caps the lag rule) if no probe measures it.
        initial_replicas: workers started when the service starts (default: ``min_replicas``).
        group_id: the autoscaler's own consumer group on the metrics topic.
        from_beginning: with no committed offset, read the metrics topic from its start.
        poll_timeout_ms: the longest one poll waits (the stop event is checked after each).
        source: the id written in decisions (their record key).
        clock: seconds since the epoch (tests may pass a fake one).
    """

    name = "autoscaler"

    def __init__(
        self,
        kafka: KafkaSettings,
        metrics_topic: str,
        policy: AutoscalePolicy,
        *,
        group: str = "lakecast-inference",
        input_topics: Sequence[str] = (),
        pool: WorkerPool | None = None,
        partitions: int | None = None,
        initial_replicas: int | None = None,
        group_id: str = "lakecast-autoscaler",
        from_beginning: bool = False,
        poll_timeout_ms: int = 500,
        source: str = "autoscaler",
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            kafka,
            metrics_topic,
            group_id=group_id,
            client_id=f"lakecast-{source}",
            from_beginning=from_beginning,
            poll_timeout_ms=poll_timeout_ms,
        )
        self.policy = policy
        self.group = group
        self.input_topics = tuple(input_topics)
        self.pool = pool
        self.partitions = partitions
        self.initial_replicas = (
            policy.min_replicas if initial_replicas is None else initial_replicas
        )
        self.source = source
        self.clock = clock
        self.controller = ScalingController(policy, group=group, source=source)
        self.decisions: deque[ScalingDecision] = deque(maxlen=1000)
        self._probe: GroupLagProbe | None = None

    def poll_wait_ms(self) -> int:
        """At most until the next evaluation is due."""
        interval_ms = int(self.policy.windows.evaluation_interval_s * 1000)
        return max(min(self.poll_timeout_ms, interval_ms), 1)

    def on_start(self) -> None:
        """Open the lag probe (a StreamError closes the clients) and start the first workers."""
        self._probe = (
            GroupLagProbe(self.kafka, self.group, self.input_topics) if self.input_topics else None
        )
        if self.pool is not None and self.initial_replicas:
            self.pool.scale_to(self.initial_replicas)
        log.info(
            "autoscaler started on %s for group %s",
            self.topic,
            self.group,
            extra={"topic": self.topic, "group": self.group, "inputs": list(self.input_topics)},
        )

    def on_message(self, message: ConsumerRecord) -> None:
        self.handle(message)

    def after_commit(self, producer: KafkaProducer) -> None:
        """Decide when an evaluation is due (after the commit, as it may start workers)."""
        now = self.clock()
        if self.controller.due(now):
            self.decide(now, self._probe, producer)

    def on_stop(self) -> None:
        if self.pool is not None:
            self.pool.stop_all()

    def on_closed(self) -> None:
        if self._probe is not None:
            self._probe.close()
            self._probe = None

    def handle(self, message: ConsumerRecord) -> None:
        """Feed one metrics record to the controller; skip (log, count) a bad one."""
        record = read_metric_record(message, self.name, self.stats)
        if record is None:
            return
        try:
            if record["kind"] == "sample":
                parse_sample(record)  # the same contract check as the monitor's
                self.controller.observe_sample(record)
                self.stats.samples += 1
            elif record["kind"] == "anomaly":
                self.controller.observe_anomaly(record)
        except (InvalidRecordError, DataError) as exc:
            report_bad_record(message, self.name, self.stats, exc)

    def decide(
        self, now: float, probe: GroupLagProbe | None = None, producer: KafkaProducer | None = None
    ) -> ScalingDecision:
        """One evaluation: measure, decide, write the record, make the pool follow."""
        lag = None
        if probe is not None:
            try:
                lag = probe.measure()
                GROUP_LAG.labels(group=self.group).set(lag.total)
            except StreamError as exc:
                # The samples' lag stands in for one interval; the next one measures again.
                log.warning("group lag not measured: %s", exc, extra={"group": self.group})
        current = self.pool.live() if self.pool is not None else None
        decision = self.controller.evaluate(
            now,
            current,
            partitions=lag.partitions if lag else self.partitions,
            group_lag=float(lag.total) if lag else None,
        )
        self.decisions.append(decision)
        SCALING_DECISIONS.labels(group=self.group, direction=decision.direction).inc()
        if producer is not None:
            producer.send(
                self.topic, key=encode_key(decision.source), value=encode_json(decision.to_record())
            )
            producer.flush(timeout=10)
            self.stats.written += 1
        level = logging.INFO if decision.changed else logging.DEBUG
        log.log(
            level,
            "decision %s: %d -> %d (%s)",
            decision.direction,
            decision.current,
            decision.desired,
            decision.metric,
            extra={"decision": decision.to_record(), "group": self.group},
        )
        if self.pool is not None:
            result = self.pool.scale_to(decision.desired)
            CURRENT_REPLICAS.labels(group=self.group).set(result.after)
        elif current is None:
            CURRENT_REPLICAS.labels(group=self.group).set(decision.desired)
        return decision
