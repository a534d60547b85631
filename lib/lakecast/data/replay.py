"""Replay the ``events`` Delta table into the ``events`` topic.

Reads a date range with delta-rs (no JVM), in event-time order, and produces each event as
JSON keyed by user id, at a target rate or as fast as the producer goes. The producer is
idempotent with ``acks=all``, so a broker hiccup neither loses nor duplicates an event; a
record the broker refuses (an ACL, a record over the topic's ``max.message.bytes``) is never
counted as sent: the replay stops and raises, naming the topic and how many were refused.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from kafka.errors import (
    AuthorizationError,
    CorruptRecordError,
    InvalidRecordError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    UnknownError,
)

from lakecast.errors import DataError, KafkaAccessError, LakecastError, StreamError
from lakecast.kafka.clients import access_error
from lakecast.kafka.serde import encode_json, encode_key

# Refusals of the record itself: sending it again meets the same answer.
_RECORD_REFUSALS = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    InvalidRecordError,
    CorruptRecordError,
)
# Flushes a replay may need: kafka-python splits a batch the broker found too large in halves,
# round after round, and each split makes one flush give up early (see _settle).
_MAX_FLUSHES = 64
_STRING_FIELDS = (
    "event_id", "user_id", "session_id", "product_id",
    "category", "event_type", "device", "country",
)  # fmt: skip


@dataclass(frozen=True)
class ReplayResult:
    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / max(self.seconds, 1e-9)


def read_events(path: str, start: date | None = None, end: date | None = None) -> pa.Table:
    """The events of ``[start, end]`` (inclusive dates), sorted by event time."""
    from deltalake import DeltaTable

    filters: list[tuple[str, str, Any]] = []
    if start is not None:
        filters.append(("date", ">=", start))
    if end is not None:
        filters.append(("date", "<=", end))
    try:
        table = DeltaTable(path).to_pyarrow_table(filters=filters or None)
    except Exception as exc:  # delta-rs raises several unrelated types for a missing table
        msg = f"replay: cannot read the events table at {path}: {exc}"
        raise DataError(msg) from exc
    return table.sort_by([("ts", "ascending"), ("event_id", "ascending")])


def event_payloads(table: pa.Table) -> Iterator[tuple[bytes | None, bytes]]:
    """(key, value) pairs in the ``events`` topic contract, one per row."""
    # Arrow's %S already carries the fraction of a second (microseconds here).
    ts = pc.strftime(table.column("ts"), format="%Y-%m-%dT%H:%M:%SZ").to_pylist()
    columns = {name: table.column(name).to_pylist() for name in _STRING_FIELDS}
    prices = table.column("price").to_pylist()
    for row in range(table.num_rows):
        value = {name: columns[name][row] for name in _STRING_FIELDS}
        value["price"] = prices[row]
        value["ts"] = ts[row]
        yield encode_key(value["user_id"]), encode_json(value)


def replay(
    producer: Any,
    topic: str,
    payloads: Iterator[tuple[bytes | None, bytes]],
    *,
    rate: float | None = None,
    on_progress: Callable[[int], None] | None = None,
    progress_every: int = 1_000,
) -> ReplayResult:
    """Produce every payload to ``topic``; ``rate`` events/s, or unthrottled when None.

    Pacing is by a schedule (event i is due at ``i / rate`` seconds), so short stalls are
    caught up rather than lowering the average rate. Every send's result is checked: the
    replay stops at the first refusal it sees, flushes what is in flight, and raises.

    Raises:
        KafkaAccessError: the broker refused the principal (an ACL); names the topic.
        DataError: it refused records themselves (over ``max.message.bytes``, invalid).
        StreamError: it refused them for another reason (e.g. the delivery timed out).
        Each names the topic, how many of the events sent were refused and how many written.
    """
    started = time.monotonic()
    sent = 0
    deliveries = _Deliveries()
    for key, value in payloads:
        if deliveries.refused:
            break
        if rate:
            delay = started + sent / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        future = producer.send(topic, key=key, value=value)
        future.add_callback(deliveries.ack).add_errback(deliveries.refused.append)
        sent += 1
        if on_progress is not None and sent % progress_every == 0:
            on_progress(progress_every)
    _settle(producer, deliveries, sent, topic)
    if deliveries.refused:
        raise _refusal_error(producer, topic, deliveries.refused, sent)
    if on_progress is not None:
        on_progress(sent % progress_every)
    return ReplayResult(events=sent, seconds=time.monotonic() - started)


@dataclass
class _Deliveries:
    """The sends' results, filled by the producer's I/O thread as they come back."""

    acked: int = 0
    refused: list[BaseException] = field(default_factory=list)

    def ack(self, _metadata: Any) -> None:
        self.acked += 1  # only the producer's I/O thread acks


def _settle(producer: Any, deliveries: _Deliveries, sent: int, topic: str) -> None:
    """Flush until every send has its result: written + refused == sent.

    kafka-python 3.0.12 wakes a flush when it splits a batch the broker refused as too large
    (the old batch's latch is set, its records move to new batches), and that flush raises
    ``UnknownError('Future not done')``: flushing again waits on the new batches.
    """
    for _ in range(_MAX_FLUSHES):
        try:
            producer.flush()
        except UnknownError:
            continue
        if deliveries.acked + len(deliveries.refused) >= sent:
            return
    unresolved = sent - deliveries.acked - len(deliveries.refused)
    msg = f"replay to {topic!r}: {unresolved:,} of {sent:,} sends have no result after flushing"
    raise StreamError(msg)


def _refusal_error(
    producer: Any, topic: str, refused: list[BaseException], sent: int
) -> LakecastError:
    """One error for the refused sends of a replay: which topic, how many, why."""
    count, first = len(refused), refused[0]
    kinds = ", ".join(
        f"{name} x{n}" for name, n in Counter(type(e).__name__ for e in refused).items()
    )
    what = f"write {count:,} of {sent:,} events to {topic!r}"
    tally = f"{sent - count:,} written, the replay stopped at the first refusal"
    if isinstance(first, AuthorizationError):
        settings = getattr(producer, "lakecast_settings", None)
        if settings is not None:
            error = access_error(settings, what, first)
            return KafkaAccessError(f"replay: {error} ({tally})")
        return KafkaAccessError(f"replay: {what}: not authorized ({kinds}; {tally})")
    msg = f"replay: the broker refused to {what} ({kinds}; first: {first}); {tally}"
    if isinstance(first, _RECORD_REFUSALS):
        return DataError(msg)
    return StreamError(msg)
