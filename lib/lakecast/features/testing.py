"""Test doubles for feature code: hand-written events with known values.

Shipped with the library so that any test (features, scoring, the streaming worker) can state a
few events in a line each and get an Arrow table with the ``events`` schema.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

EVENT_DEFAULTS: Mapping[str, Any] = {
    "session_id": "s",
    "product_id": "p",
    "category": "books",
    "event_type": "view",
    "price": 10.0,
    "device": "desktop",
    "country": "US",
}


def make_events(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """An Arrow table with the ``events`` schema from partial rows.

    Each row needs ``event_id``, ``user_id`` and ``ts`` (an aware datetime); the other columns
    default to ``EVENT_DEFAULTS`` and ``date`` to the UTC date of ``ts``.
    """
    from lakecast.lake.tables import EVENTS

    full = []
    for row in rows:
        ts: datetime = row["ts"]
        full.append({**EVENT_DEFAULTS, "date": ts.astimezone(UTC).date(), **row})
    return pa.Table.from_pylist(full, schema=EVENTS.arrow_schema())
