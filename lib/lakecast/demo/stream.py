"""Two workers serve a replayed day of events; print predictions, dead letters, samples, p99."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date
from itertools import chain
from pathlib import Path

import numpy as np

from lakecast.config import Settings
from lakecast.data.replay import event_payloads, read_events, replay
from lakecast.demo.fleet import DemoTopics, WorkerFleet, decode_values
from lakecast.kafka.clients import build_producer
from lakecast.kafka.readback import read_topic
from lakecast.polling import wait_for

# One of each kind of bad input the worker must dead-letter without stalling.
BAD_RECORDS: tuple[tuple[bytes | None, bytes], ...] = (
    (b"u-bad", b"{not json"),
    (b"u-bad", b'{"event_id": "bad-1"}'),
    (
        b"u-bad",
        b'{"event_id": "bad-2", "user_id": "u-bad", "session_id": "s", "product_id": "p",'
        b' "category": "spaceships", "event_type": "view", "price": 10.0, "device": "mobile",'
        b' "country": "US", "ts": "2026-01-01T00:00:00Z"}',
    ),
    (
        b"u-bad",
        b'{"event_id": "bad-3", "user_id": "u-bad", "session_id": "s", "product_id": "p",'
        b' "category": "books", "event_type": "view", "price": "ten", "device": "mobile",'
        b' "country": "US", "ts": "2026-01-01T00:00:00Z"}',
    ),
)


@dataclass(frozen=True)
class StreamSummary:
    events: int
    predictions: int
    dead_letters: int
    dead_letter_kinds: dict[str, int]
    samples: int
    p50_ms: float
    p99_ms: float
    seconds: float

    def lines(self) -> list[str]:
        kinds = ", ".join(f"{k}={v}" for k, v in sorted(self.dead_letter_kinds.items()))
        return [
            f"events replayed        {self.events:>10,}",
            f"predictions            {self.predictions:>10,}  (read_committed)",
            f"dead letters           {self.dead_letters:>10,}  ({kinds})",
            f"metric samples         {self.samples:>10,}",
            f"end-to-end p50 / p99   {self.p50_ms:>7.0f} ms / {self.p99_ms:.0f} ms",
            f"wall time              {self.seconds:>9.1f} s",
        ]


def run_stream_demo(
    settings: Settings,
    *,
    day: date | None,
    workers: int = 2,
    limit: int | None = None,
    rate: float | None = None,
    log_dir: Path,
) -> StreamSummary:
    """Start ``workers`` processes, replay ``day`` (plus a few bad records), count outputs."""
    events = read_events(settings.lake.table("events"), day, day)
    if limit is not None:
        events = events.slice(0, limit)
    topics = DemoTopics()
    topics.create(settings)
    fleet = WorkerFleet(topics, workers, log_dir)
    started = time.monotonic()
    fleet.start()
    try:
        fleet.wait_ready(settings.kafka.bootstrap_servers)
        producer = build_producer(settings.kafka, mode="at_least_once", client_id="demo-replay")
        payloads = chain(BAD_RECORDS[:2], event_payloads(events), BAD_RECORDS[2:])
        sent = replay(producer, topics.events, payloads, rate=rate).events
        producer.close()
        outputs: dict[str, list[object]] = {}

        def all_served() -> bool:
            outputs["predictions"] = read_topic(settings.kafka, topics.predictions)
            outputs["dlq"] = read_topic(settings.kafka, topics.dlq)
            return len(outputs["predictions"]) + len(outputs["dlq"]) >= sent

        wait_for(
            all_served, timeout_s=600, what="every event predicted or dead-lettered", every_s=2
        )
        time.sleep(3)  # one more sample interval, so the last samples are in
        samples = read_topic(settings.kafka, topics.metrics)
    finally:
        fleet.stop()
    predictions = decode_values(outputs["predictions"])
    dead = decode_values(outputs["dlq"])
    kinds: dict[str, int] = {}
    for letter in dead:
        kind = str(letter["error"]["kind"])  # type: ignore[index]
        kinds[kind] = kinds.get(kind, 0) + 1
    latencies = np.asarray([float(p["latency_ms"]) for p in predictions])  # type: ignore[arg-type]
    return StreamSummary(
        events=sent,
        predictions=len(predictions),
        dead_letters=len(dead),
        dead_letter_kinds=kinds,
        samples=sum(1 for s in decode_values(samples) if s.get("kind") == "sample"),
        p50_ms=float(np.percentile(latencies, 50)) if latencies.size else float("nan"),
        p99_ms=float(np.percentile(latencies, 99)) if latencies.size else float("nan"),
        seconds=time.monotonic() - started,
    )
