"""Events for tests: synthetic ``events`` records in the topic contract, and hand-written rows.

:func:`event_value` makes event ``e-<i>``, varied over the vocabularies and deterministic by
``i``; :func:`event_payload` and :func:`synthetic_payloads` are the (key, value) bytes a
producer sends (not to be confused with :func:`lakecast.data.replay.event_payloads`, which
encodes rows of a real ``events`` table). :func:`make_events` states a few events in a line
each and gives an Arrow table with the ``events`` schema.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import orjson
import pyarrow as pa

from lakecast.features.vocab import CATEGORIES, COUNTRIES, DEVICES, EVENT_TYPES

SNAPSHOT_DATE = date(2024, 5, 1)
EVENT_DAY = SNAPSHOT_DATE + timedelta(days=1)

EVENT_DEFAULTS: Mapping[str, Any] = {
    "session_id": "s",
    "product_id": "p",
    "category": "books",
    "event_type": "view",
    "price": 10.0,
    "device": "desktop",
    "country": "US",
}


def event_value(
    i: int, *, users: int = 500, products: int = 200, **overrides: Any
) -> dict[str, Any]:
    """The ``events`` value of synthetic event ``i`` (``e-<i>``), varied over the vocabularies."""
    ts = datetime.combine(EVENT_DAY, time(0), tzinfo=UTC) + timedelta(seconds=(i * 7) % 86_400)
    value: dict[str, Any] = {
        "event_id": f"e-{i}",
        "user_id": f"u-{i % users}",
        "session_id": f"s-{i // 5}",
        "product_id": f"p-{(i * 31) % products}",
        "category": CATEGORIES[i % len(CATEGORIES)],
        "event_type": EVENT_TYPES[i % len(EVENT_TYPES)],
        "price": round(1.0 + (i * 13 % 997) * 0.5, 2),
        "device": (*DEVICES, "smart-tv")[i % (len(DEVICES) + 1)],
        "country": COUNTRIES[i % len(COUNTRIES)],
        "ts": ts.isoformat().replace("+00:00", "Z"),
    }
    value.update(overrides)
    return value


def event_payload(i: int, **overrides: Any) -> tuple[bytes, bytes]:
    """(key, value) bytes of synthetic event ``i`` as a producer would send them."""
    value = event_value(i, **overrides)
    return str(value["user_id"]).encode(), orjson.dumps(value)


def synthetic_payloads(count: int, start: int = 0) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) bytes of synthetic events ``start .. start + count - 1``."""
    return (event_payload(i) for i in range(start, start + count))


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
