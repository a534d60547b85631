"""Events records in, validated events or a classified reason out.

Every record either decodes into an :class:`Event` or becomes a dead letter whose ``kind``
says what was wrong in a word a dashboard can group by: ``oversized``, ``malformed_json``,
``missing_field``, ``invalid_field`` (wrong type, or outside the contract's bounds: a string
over :data:`~lakecast.kafka.serde.MAX_STRING_CHARS`, a price, a timestamp, a key over
:data:`~lakecast.kafka.serde.MAX_KEY_BYTES`), ``non_finite`` (NaN or infinity, which strict
JSON cannot even carry, so such a record is re-read leniently to say so), ``too_deep`` (JSON
nested deeper than orjson's 1,024 levels: rejected on the fast path, never re-read, since the
lenient reader recurses and a record that raises sends its whole batch to be processed one
record at a time). The contract checks themselves are
:func:`lakecast.kafka.serde.event_from_dict`'s.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa

from lakecast.errors import InvalidRecordError
from lakecast.kafka.dlq import DeadLetter, SourceRecord
from lakecast.kafka.serde import (
    MAX_KEY_BYTES,
    MAX_RECORD_BYTES,
    Event,
    event_from_dict,
    latest_event_ts,
)
from lakecast.lake.events import EVENT_FIELDS

OVERSIZED = "oversized"
MALFORMED_JSON = "malformed_json"
MISSING_FIELD = "missing_field"
INVALID_FIELD = "invalid_field"
NON_FINITE = "non_finite"
TOO_DEEP = "too_deep"
MODEL_ERROR = "model_error"

# The event contract's fields, nullable as the Arrow batch the transforms read is built.
EVENT_SCHEMA = pa.schema([field.with_nullable(True) for field in EVENT_FIELDS])


class RejectedRecord(Exception):
    """A record that cannot be scored; ``kind`` classifies it for the dead-letter topic."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


# The tokens of the non-finite numbers Python's json reads (and writes, unless told not to).
_NON_FINITE_TOKENS = (b"NaN", b"Infinity")


def _lenient_json(value: bytes) -> Any:
    """The value as Python's json reads it (NaN and Infinity, which orjson, strict JSON,
    refuses), or None. Run only on a value that holds such a token, never on one orjson
    found too deep: json recurses once per level and raises RecursionError."""
    if not any(token in value for token in _NON_FINITE_TOKENS):
        return None
    try:
        return json.loads(value)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def _has_non_finite(data: dict[str, Any]) -> str | None:
    for name, item in data.items():
        if isinstance(item, float) and not math.isfinite(item):
            return name
    return None


def decode_event_record(
    value: bytes | None, max_bytes: int = MAX_RECORD_BYTES, *, latest: datetime | None = None
) -> Event:
    """Decode and validate one ``events`` value (``latest``: the latest ``ts`` accepted,
    see :func:`lakecast.kafka.serde.latest_event_ts`).

    Raises:
        RejectedRecord: with the kind and a message naming the field and what was found.
    """
    if value is None:
        raise RejectedRecord(MALFORMED_JSON, "decode event: value is null (a tombstone)")
    if len(value) > max_bytes:
        msg = f"decode event: {len(value)} bytes is over the limit of {max_bytes}"
        raise RejectedRecord(OVERSIZED, msg)
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        # orjson's words for > 1,024 levels. (A short, unclosed deep prefix may instead read
        # "failed to allocate memory": malformed_json, and no lenient parse without a token.)
        if str(exc).startswith("depth limit exceeded"):
            msg = f"decode event: JSON nested deeper than 1024 levels ({exc})"
            raise RejectedRecord(TOO_DEEP, msg) from exc
        data = _lenient_json(value)
        field = _has_non_finite(data) if isinstance(data, dict) else None
        if field is None:
            msg = f"decode event: not valid UTF-8 JSON ({exc})"
            raise RejectedRecord(MALFORMED_JSON, msg) from exc
        msg = f"decode event: field {field!r} must be finite, found {data[field]!r}"
        raise RejectedRecord(NON_FINITE, msg) from exc
    if not isinstance(data, dict):
        msg = f"decode event: expected a JSON object, found {type(data).__name__}"
        raise RejectedRecord(MALFORMED_JSON, msg)
    try:
        return event_from_dict(data, latest=latest)
    except InvalidRecordError as exc:
        found = data.get(exc.field) if exc.field else None
        kind = MISSING_FIELD if found is None else INVALID_FIELD
        raise RejectedRecord(kind, str(exc)) from exc


def decode_records(
    records: Iterable[SourceRecord], max_bytes: int = MAX_RECORD_BYTES
) -> tuple[list[SourceRecord], list[Event], list[DeadLetter]]:
    """Decode a batch: the records that decoded, their events, and dead letters for the rest.

    A record's key is bounded too (:data:`~lakecast.kafka.serde.MAX_KEY_BYTES`): a dead
    letter carries it as received, and the producer must be able to send that.
    """
    kept: list[SourceRecord] = []
    events: list[Event] = []
    dead: list[DeadLetter] = []
    latest = latest_event_ts()  # one clock read for the batch
    for record in records:
        key = record.key
        if key is not None and len(key) > MAX_KEY_BYTES:
            msg = (
                f"decode event: field '<key>' (the record key) is {len(key)} bytes, "
                f"over the limit of {MAX_KEY_BYTES}"
            )
            dead.append(DeadLetter(record, INVALID_FIELD, msg))
            continue
        try:
            events.append(decode_event_record(record.value, max_bytes, latest=latest))
        except RejectedRecord as exc:
            dead.append(DeadLetter(record, exc.kind, str(exc)))
        else:
            kept.append(record)
    return kept, events, dead


def events_table(events: Sequence[Event]) -> pa.Table:
    """The events as an Arrow table with the columns the feature transforms read."""
    arrays = [
        pa.array(list(map(operator.attrgetter(field.name), events)), type=field.type)
        for field in EVENT_SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)
