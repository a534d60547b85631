"""Replay the ``events`` Delta table into the ``events`` topic.

Reads a date range with delta-rs (no JVM), in event-time order, and produces each event as
JSON keyed by user id, at a target rate or as fast as the producer goes. The producer is
idempotent with ``acks=all``, so a broker hiccup neither loses nor duplicates an event.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from lakecast.errors import DataError
from lakecast.kafka.serde import encode_json, encode_key

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
    caught up rather than lowering the average rate.
    """
    started = time.monotonic()
    sent = 0
    for key, value in payloads:
        if rate:
            delay = started + sent / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        producer.send(topic, key=key, value=value)
        sent += 1
        if on_progress is not None and sent % progress_every == 0:
            on_progress(progress_every)
    producer.flush()
    if on_progress is not None:
        on_progress(sent % progress_every)
    return ReplayResult(events=sent, seconds=time.monotonic() - started)
