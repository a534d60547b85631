"""Dead-letter records: a bad input goes to ``events.dlq`` with the reason and where it came from.

The value follows the contract in DESIGN.md: ``error`` {``kind``, ``message``}, ``source``
{``topic``, ``partition``, ``offset``}, ``payload_b64`` (the original bytes) and ``ts``. The
key is the input's key, as received, so a dead letter lands next to its entity's other ones.

A dead letter must itself be producible whatever the input was: the payload is cut at
:data:`MAX_PAYLOAD_BYTES` and a key over :data:`MAX_KEY_BYTES` is left off (both flagged, with
their full sizes), so a dead letter stays under the producer's 1 MiB ``max_request_size``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from lakecast.errors import DataError, InvalidRecordError
from lakecast.kafka.serde import decode_json, encode_json, parse_utc

# A DLQ value must fit the producer's max_request_size (1 MiB) after base64 (x 4/3) and the
# envelope; a larger payload is cut and flagged, its full size recorded.
MAX_PAYLOAD_BYTES = 512 * 1024
MAX_MESSAGE_CHARS = 2_000
# With the payload's ~700 KB of base64, a key up to this still leaves room under 1 MiB.
MAX_KEY_BYTES = 64 * 1024

# The kinds of the dead letters the loop makes for an input whose output cannot be produced:
# over the producer's max_request_size or the topic's max.message.bytes; or refused otherwise
# (not bytes, failing the broker's record validation).
OUTPUT_TOO_LARGE = "output_too_large"
OUTPUT_REJECTED = "output_rejected"

T = TypeVar("T")


class SourceRecord(Protocol):
    """What a dead letter needs of a consumed record (kafka-python's ConsumerRecord has it)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A consumed record that could not be processed, with the reason."""

    record: SourceRecord
    kind: str
    message: str

    @classmethod
    def from_exception(cls, record: SourceRecord, exc: BaseException) -> DeadLetter:
        """The kind is the exception's class name; an InvalidRecordError adds its field."""
        message = str(exc) or repr(exc)
        field = getattr(exc, "field", None)
        if isinstance(exc, InvalidRecordError) and field and field not in message:
            message = f"{message} (field {field!r})"
        return cls(record=record, kind=type(exc).__name__, message=message)


def dead_letter_key(letter: DeadLetter) -> bytes | None:
    """The key of ``letter``'s record: the input's key, or None if over :data:`MAX_KEY_BYTES`."""
    key = letter.record.key
    return None if key is not None and len(key) > MAX_KEY_BYTES else key


def dead_letter_value(
    letter: DeadLetter, *, now: datetime | None = None, with_payload: bool = True
) -> bytes:
    """The JSON value of a dead-letter record for ``letter``.

    ``with_payload=False`` leaves the payload out (``payload_omitted``, with its size): the
    last resort for a dead-letter topic that refused the full one.
    """
    payload = letter.record.value or b""
    kept = payload[:MAX_PAYLOAD_BYTES] if with_payload else b""
    value: dict[str, Any] = {
        "error": {"kind": letter.kind, "message": letter.message[:MAX_MESSAGE_CHARS]},
        "source": {
            "topic": letter.record.topic,
            "partition": letter.record.partition,
            "offset": letter.record.offset,
        },
        "payload_b64": base64.b64encode(kept).decode("ascii"),
        "ts": now or datetime.now(UTC),
    }
    if letter.record.value is None:
        value["payload_null"] = True
    if len(payload) > len(kept):
        value["payload_truncated" if with_payload else "payload_omitted"] = True
        value["payload_size"] = len(payload)
    key = letter.record.key
    if key is not None and len(key) > MAX_KEY_BYTES:
        value["key_omitted"] = True
        value["key_size"] = len(key)
    return encode_json(value)


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """A decoded dead-letter value (for tools that replay or inspect ``events.dlq``)."""

    kind: str
    message: str
    topic: str
    partition: int
    offset: int
    payload: bytes
    ts: datetime
    truncated: bool


def decode_dead_letter(value: bytes | None) -> DeadLetterRecord:
    """Parse a dead-letter value; raises InvalidRecordError naming a missing field."""
    data = decode_json(value)
    try:
        error, source = data["error"], data["source"]
        return DeadLetterRecord(
            kind=str(error["kind"]),
            message=str(error["message"]),
            topic=str(source["topic"]),
            partition=int(source["partition"]),
            offset=int(source["offset"]),
            payload=base64.b64decode(data["payload_b64"], validate=True),
            ts=parse_utc(data["ts"], "ts", "decode dead letter"),
            truncated=bool(data.get("payload_truncated") or data.get("payload_omitted")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        msg = f"decode dead letter: missing or invalid field ({exc!r})"
        raise InvalidRecordError(msg, field=str(exc.args[0]) if exc.args else None) from exc


def decode_each(
    records: Iterable[SourceRecord], decode: Callable[[bytes | None], T]
) -> tuple[list[tuple[SourceRecord, T]], list[DeadLetter]]:
    """Decode every record's value; the ones that fail become dead letters, the rest go on.

    Only :class:`DataError` (a bad record) is caught; anything else is a bug and propagates.
    """
    good: list[tuple[SourceRecord, T]] = []
    bad: list[DeadLetter] = []
    for record in records:
        try:
            good.append((record, decode(record.value)))
        except DataError as exc:
            bad.append(DeadLetter.from_exception(record, exc))
    return good, bad
