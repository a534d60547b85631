"""The replayer's records follow the ``events`` topic contract."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import orjson
import pyarrow as pa

from lakecast.data.replay import event_payloads

ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


def test_timestamps_are_iso_8601_utc_with_microseconds() -> None:
    stamps = [datetime(2026, 1, 1, 0, 0, 5, 123456, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)]
    names = ("event_id", "user_id", "product_id", "category", "event_type", "device", "country")
    strings = {name: ["x", "y"] for name in (*names, "session_id")}
    table = pa.table(
        {**strings, "price": [1.5, 2.0], "ts": pa.array(stamps, pa.timestamp("us", "UTC"))}
    )
    values = [orjson.loads(value) for _, value in event_payloads(table)]
    assert [v["ts"] for v in values] == [
        "2026-01-01T00:00:05.123456Z",
        "2026-01-01T00:00:00.000000Z",
    ]
    assert all(ISO_UTC.match(v["ts"]) for v in values)
    assert [datetime.fromisoformat(v["ts"]) for v in values] == stamps
