"""The worker's served-feature sample and its data-invariant flags.

A share (``drift.sample_rate``) of the served events, chosen by a murmur3 hash of the event id
(so every worker, and a rerun, picks the same events), is logged to the ``served_features``
topic with the model-input vector by feature name: the drift job compares it with the serving
version's training set, the skew check with the batch job's features for the same events.

Never blocking serving: the records are built on the loop's thread but handed over only after
their batch is committed (an aborted batch logs nothing, so the sample holds served vectors
only), into a bounded queue that a background thread drains into a plain (non-transactional)
producer. A full queue drops the sample and counts it; a send that fails is counted and
logged; neither reaches the stream. Outside the transaction on purpose: inside it a sample
would add to every commit's size and a sample the producer refused would split the batch and
dead-letter its event, which a monitoring record must never do.

Invariants (:data:`lakecast.features.spec.FEATURE_INVARIANTS`): a served row that breaks one is
flagged, not dead-lettered. Its event passed validation and its features come from our own
transforms and the snapshot: a value out of range there is a data-quality signal about the
snapshot or the code, and dead-lettering would turn it into missing predictions for real
users. Each broken feature is counted (``lakecast_feature_invariant_violations_total``), a
sampled row carries the names, and the worker logs the first offending value at most once a
minute.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import mmh3
import numpy as np
from prometheus_client import Counter

from lakecast.config import DriftSettings
from lakecast.features.invariants import InvariantCheck
from lakecast.features.spec import FEATURE_COLUMNS, FEATURES_VERSION
from lakecast.kafka.serde import Event, encode_json

log = logging.getLogger(__name__)

SAMPLE_BUCKETS = 1_000_000
VIOLATION_LOG_INTERVAL_S = 60.0

SERVED_FEATURE_SAMPLES = Counter(
    "lakecast_worker_served_feature_samples_total",
    "Served feature vectors sampled for drift and skew, by outcome (sent, dropped, failed).",
    ["outcome"],
)
INVARIANT_VIOLATIONS = Counter(
    "lakecast_feature_invariant_violations_total",
    "Served rows whose feature broke the spec's declared range or values, by feature.",
    ["feature"],
)

Send = Callable[[str, bytes, bytes], Any]
"""``send(topic, key, value)``: returns a kafka-python future (or raises)."""


def sampled(event_ids: Sequence[str], rate: float) -> np.ndarray:
    """Which events are in the sample: the same ids whatever the worker or the run."""
    if rate <= 0:
        return np.zeros(len(event_ids), bool)
    cut = rate * SAMPLE_BUCKETS
    return np.array(
        [mmh3.hash(f"served:{e}", seed=0, signed=False) % SAMPLE_BUCKETS < cut for e in event_ids],
        bool,
    )


def served_feature_record(
    event: Event,
    model: Mapping[str, str],
    variant: str,
    vector: np.ndarray,
    violations: Sequence[str],
    source: str,
) -> dict[str, Any]:
    """The ``served_features`` record of one served event."""
    return {
        "event_id": event.event_id,
        "user_id": event.user_id,
        "event_ts": event.ts,
        "model": dict(model),
        "variant": variant,
        "features_version": FEATURES_VERSION,
        "features": dict(zip(FEATURE_COLUMNS, vector.tolist(), strict=True)),
        "invariant_violations": list(violations),
        "source": source,
        "ts": datetime.now(UTC),
    }


class FeatureLog:
    """Samples served vectors, flags broken invariants, sends the samples in the background."""

    def __init__(self, settings: DriftSettings, topic: str, source: str) -> None:
        self.rate = settings.sample_rate
        self.topic = topic
        self.source = source
        self.check = InvariantCheck()
        self._queue: queue.Queue[tuple[bytes, bytes]] = queue.Queue(settings.sample_queue)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_warning = 0.0
        self.sent = self.dropped = self.failed = 0

    # ---- on the loop's thread ----------------------------------------------------------
    def sample(
        self,
        events: Sequence[Event],
        positions: Sequence[int],
        failures: Sequence[str | None],
        matrix: np.ndarray,
        broken: np.ndarray,
        model: Mapping[str, str],
        variant: str,
    ) -> list[tuple[bytes, bytes]]:
        """(key, value) of the sampled, scored events of one served group."""
        chosen = sampled([events[p].event_id for p in positions], self.rate)
        out = []
        for position, failure, keep in zip(positions, failures, chosen.tolist(), strict=True):
            if not keep or failure is not None:
                continue
            names = [FEATURE_COLUMNS[i] for i in np.flatnonzero(broken[position]).tolist()]
            event = events[position]
            value = served_feature_record(
                event, model, variant, matrix[position], names, self.source
            )
            out.append((event.user_id.encode(), encode_json(value)))
        return out

    def violations(self, matrix: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
        """The (rows, features) mask of broken invariants and the count per broken feature."""
        broken = self.check.broken(matrix)
        counts = broken.sum(axis=0)
        found = {FEATURE_COLUMNS[i]: int(counts[i]) for i in np.flatnonzero(counts).tolist()}
        if found and time.monotonic() - self._last_warning > VIOLATION_LOG_INTERVAL_S:
            self._last_warning = time.monotonic()
            first = self.check.violations(matrix)[0]
            log.warning(
                "served rows break the feature spec's invariants (flagged, still served): %s",
                first.message(),
                extra={"violations": found},
            )
        return broken, found

    def committed(
        self, samples: Sequence[tuple[bytes, bytes]], violations: Mapping[str, int]
    ) -> None:
        """After a commit: count the violations, queue the samples (dropped if full)."""
        for feature, count in violations.items():
            INVARIANT_VIOLATIONS.labels(feature=feature).inc(count)
        for item in samples:
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                self.dropped += 1
                SERVED_FEATURE_SAMPLES.labels(outcome="dropped").inc()

    # ---- the sender --------------------------------------------------------------------
    def start(self, send: Send) -> None:
        """Drain the queue into ``send`` on a daemon thread until :meth:`stop`."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._drain, args=(send,), name="feature-log", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Send what is queued (for at most ``timeout_s``), then end the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def pending(self) -> list[tuple[bytes, bytes]]:
        """Take what is queued and not sent (a worker never started, tests)."""
        taken = []
        while True:
            try:
                taken.append(self._queue.get_nowait())
            except queue.Empty:
                return taken

    def _drain(self, send: Send) -> None:
        while True:
            try:
                key, value = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            try:
                future = send(self.topic, key, value)
                future.add_callback(self._on_sent)
                future.add_errback(self._on_failed)
            except Exception as exc:  # a full buffer, an unknown topic: never the stream's problem
                self._on_failed(exc)

    def _on_sent(self, _metadata: object) -> None:
        self.sent += 1
        SERVED_FEATURE_SAMPLES.labels(outcome="sent").inc()

    def _on_failed(self, error: BaseException) -> None:
        self.failed += 1
        SERVED_FEATURE_SAMPLES.labels(outcome="failed").inc()
        if self.failed in (1, 10, 100) or self.failed % 1000 == 0:
            log.warning("served-feature sample not sent (%d so far): %r", self.failed, error)
