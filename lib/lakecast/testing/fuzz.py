"""Fuzzed ``events`` records: every way an input of the streaming path can be strange.

The invariant they check: one record, however strange, becomes exactly one prediction or
exactly one dead letter, no score lies outside [0, 1], and the worker stays alive.
:func:`generate` makes the records: it renders the cases of :mod:`lakecast.testing.fuzz_cases`
into bytes and interleaves plain valid events, the controls. Every record is tagged
``fz-<index>``: its ``event_id`` where it can have one; :mod:`lakecast.testing.ledger` adds
where it was written.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson

from lakecast.testing.events import event_value
from lakecast.testing.fuzz_cases import (
    CONTROL,
    LARGE_BYTES,
    MAX_RECORD,
    SMALL_SIZE,
    Big,
    Case,
    Digits,
    Raw,
    Tag,
    draw_cases,
)


@dataclass(frozen=True, slots=True)
class FuzzRecord:
    """A tagged input: ``event_id`` is what a prediction of it carries (None: none can)."""

    index: int
    kind: str
    key: bytes | None
    value: bytes | None
    event_id: str | None

    @property
    def family(self) -> str:
        return self.kind.split(":", 1)[0]

    def describe(self, limit: int = 160) -> str:
        """The kind, the key and the value, cut to ``limit`` bytes each with their sizes."""

        def cut(data: bytes | None) -> str:
            if data is None:
                return "None"
            more = f"...({len(data):,} bytes)" if len(data) > limit else ""
            return f"{data[:limit]!r}{more}"

        return f"#{self.index} {self.kind} key={cut(self.key)} value={cut(self.value)}"


# ---- rendering ----------------------------------------------------------------------------


def _sized(unit: str, size: int) -> str:
    return unit * max(1, size // len(unit.encode("utf-8", "surrogatepass")))


def _encode(value: Any, tag: str, large: bool) -> tuple[bytes, str | None]:
    """The JSON of one field value, and the event id it makes when it is the tag."""
    if isinstance(value, Raw):
        return value.text.encode(), None
    if isinstance(value, Digits):
        return b"1" * (value.size if large else min(value.size, SMALL_SIZE)), None
    if isinstance(value, Big):
        size = value.size if large else min(value.size, SMALL_SIZE)
        return orjson.dumps(_sized(value.unit, size)), None
    if isinstance(value, Tag):
        size = value.size if large else min(value.size, SMALL_SIZE)
        # "|" ends the tag: "fz-1" + "0" would be "fz-10", another record's event id.
        text = f"{tag}|{value.suffix}" if value.suffix or value.raw_suffix or size else tag
        if size:
            text += _sized(value.suffix or "x", size - len(text.encode()))
        if value.raw_suffix:
            return orjson.dumps(text)[:-1] + value.raw_suffix.encode() + b'"', None
        return orjson.dumps(text), text
    try:
        return orjson.dumps(value), None
    except TypeError:  # an integer beyond 64 bits, which orjson does not write
        return json.dumps(value, ensure_ascii=False).encode(), None


def _event_id_of(value: bytes) -> Any:
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return parsed.get("event_id") if isinstance(parsed, dict) else None


def _apply_wrap(data: bytes, wrap: str, cut: int) -> bytes:
    if wrap == "truncated":
        return data[: max(1, len(data) - 1 - cut % len(data))]
    if wrap == "trailing":
        return data + (b"x", b"}", b"\x00", b" {}", b"\n\n")[cut % 5]
    if wrap == "pretty":
        return orjson.dumps(orjson.loads(data), option=orjson.OPT_INDENT_2)
    if wrap == "array":
        return b"[" + data + b"]"
    if wrap == "utf16":
        return data.decode().encode("utf-16")
    if wrap == "bom":
        return b"\xef\xbb\xbf" + data
    if wrap == "latin1":
        return data.replace(b'"device":"', b'"device":"caf\xe9 ', 1)
    if wrap == "invalid_utf8":
        position = cut % len(data)
        return (
            data[:position]
            + (b"\xc0\xaf", b"\xed\xa0\x80", b"\xff", b"\xe2\x82")[cut % 4]
            + data[position:]
        )
    msg = f"unknown wrap {wrap!r}"
    raise ValueError(msg)


def render(case: Case, index: int, *, large: bool = True) -> FuzzRecord:
    """The case as a record tagged ``fz-<index>``; ``large=False`` shrinks huge parts."""
    tag = f"fz-{index}"
    event_id = None
    if case.pairs is None:
        value = case.raw if large or case.raw is None else case.raw[:SMALL_SIZE]
    else:
        parts = []
        for name, item in case.pairs:
            encoded, made = _encode(item, tag, large)
            if name == "event_id":
                event_id = made  # the last one wins, as in orjson
            parts.append(orjson.dumps(name) + b":" + encoded)
        value = b"{" + b",".join(parts) + b"}"
        if case.wrap:
            value = _apply_wrap(value, case.wrap, case.cut)
            if event_id is not None and _event_id_of(value) != event_id:
                event_id = None  # unreadable, or not an object: no prediction can carry it
    key: bytes | None
    if case.key == "user":
        user = dict(case.pairs or ()).get("user_id")
        key = user.encode("utf-8", "surrogatepass") if isinstance(user, str) else b"u-fuzz"
    elif isinstance(case.key, Big):
        key = _sized(case.key.unit, case.key.size if large else SMALL_SIZE).encode()
    else:
        key = case.key
    if (len(key or b"") + len(value or b"")) > MAX_RECORD:
        key = (key or b"")[:SMALL_SIZE]
    if key is None and value is None:
        key = b"u-fuzz"  # a producer sends no record without either
    return FuzzRecord(index, case.kind, key, value, event_id)


def control(index: int) -> FuzzRecord:
    """A plain valid event, tagged: it must become a prediction."""
    value = event_value(index, event_id=f"fz-{index}")
    return FuzzRecord(
        index, CONTROL, value["user_id"].encode(), orjson.dumps(value), value["event_id"]
    )


def generate(
    count: int,
    *,
    seed_value: int = 0,
    control_every: int = 2,
    large_budget: int = 8,
    distinct: int | None = None,
) -> list[FuzzRecord]:
    """``count`` records: every ``control_every``-th a control, the rest fuzzed cases (about
    ``distinct`` different ones, repeated, when given); at most ``large_budget`` records over
    :data:`LARGE_BYTES` per family, and as many with a huge key (the others' huge parts
    shrink)."""
    if count < 0 or control_every < 1:
        msg = f"generate: need count >= 0 and control_every >= 1, got {count}, {control_every}"
        raise ValueError(msg)
    controls = {i for i in range(count) if i % control_every == 0}
    cases = iter(draw_cases(count - len(controls), seed_value=seed_value, distinct=distinct))
    records: list[FuzzRecord] = []
    large_used: Counter[str] = Counter()
    for index in range(count):
        if index in controls:
            records.append(control(index))
            continue
        case = next(cases)
        record = render(case, index)
        size = len(record.key or b"") + len(record.value or b"")
        if size > LARGE_BYTES:
            spent_on = "key" if len(record.key or b"") > LARGE_BYTES else record.family
            if large_used[spent_on] < large_budget:
                large_used[spent_on] += 1
            else:
                record = render(case, index, large=False)
        records.append(record)
    return records


__all__ = ["CONTROL", "LARGE_BYTES", "FuzzRecord", "control", "generate", "render"]
