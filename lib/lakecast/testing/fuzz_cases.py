"""Fuzz cases: hypothesis strategies that mutate every field of the ``events`` contract.

:func:`fuzz_cases` draws one :class:`Case` of a family: a field missing, null, of the wrong
type, empty, huge, with unicode edge cases, NaN and infinity spellings, nesting; or the
record as a whole (far and malformed dates, price edges, duplicate keys, extra fields, random
bytes, empty, tombstone, other encodings, truncated, deeply nested JSON), with keys that are
often not UTF-8, empty or huge. :mod:`lakecast.testing.fuzz` renders cases into records.

Hypothesis draws the cases without a test around them: one ``@given`` run per slot (a family,
and for a family of one field each field, see :data:`SLOTS`), seeded, generate phase only,
each example appended to a list. That is deterministic for a seed, covers every slot however
few records are drawn, and makes about 2,000 cases a second; a broker round trip per example
(hypothesis's own loop, with shrinking) would take minutes, and ``.example()`` has no seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from lakecast.testing.events import event_value

FIELDS = (
    "event_id",
    "user_id",
    "session_id",
    "product_id",
    "category",
    "event_type",
    "price",
    "device",
    "country",
    "ts",
)
STRING_FIELDS = tuple(name for name in FIELDS if name != "price")
CONTROL = "control"
LARGE_BYTES = 64_000  # a record over this counts against the large budget
# Ids of these many bytes: around the producer's 1 MiB max_request_size once an id is both
# the key and part of the value of a prediction, and around the worker's 1,000,000-byte limit.
# Hypothesis draws the first first: 600,000 bytes, twice that in a prediction of its user id.
HUGE_SIZES = (600_000, 70_000, 300_000, 530_000, 990_000, 1_000_500)
SMALL_SIZE = 1_000  # what a huge value shrinks to once the large budget is spent
MAX_RECORD = 1_040_000  # key + value: the broker's default message.max.bytes, less headroom
ODD_TEXTS = (
    "\u0000",
    "a\u0000b",
    "\u202e",  # right-to-left override
    "\u200f\u05d0\u05d1",  # right-to-left mark, Hebrew
    "\u200b",
    "\ufeff",
    "e\u0301\u0301\u0301\u0301",  # combining accents
    "\U0001f469\u200d\U0001f469\u200d\U0001f467",  # a family emoji (ZWJ sequence)
    "\U0001f1eb\U0001f1f7",  # a flag
    "\U0010ffff",
    "\ufffd",
    " ",
    "\t\r\n",
    "\\",
    '"',
    "\u2028\u0085",
    "İß",
    "null",
    "NaN",
    "-1",
    "' OR 1=1 --",
    "%s%n{0}",
)
LONE_SURROGATES = (r"\ud800", r"\udfff", r"\udc00\ud800", r"\ud83d", r"\ud800x")
NON_FINITE = (
    "NaN",
    "-NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "-1e999",
    "1E400",
    "nan",
    "inf",
    '"NaN"',
    '"Infinity"',
    '"-inf"',
)
TIMESTAMPS = (
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+01:00",  # year 0 in UTC: out of range
    "0001-01-01T00:00:00-01:00",
    "9999-12-31T23:59:59.999999Z",
    "9999-12-31T23:59:59-01:00",  # year 10000 in UTC: out of range
    "1970-01-01T00:00:00Z",
    "1969-12-31T23:59:59.999999Z",
    "2024-05-02T10:00:00+14:00",
    "2024-05-02T10:00:00-12:00",
    "2024-05-02T10:00:00+05:45",
    "2024-05-02T10:00:00+23:59:59.999999",
    "2024-05-02T10:00:00",  # no offset
    "2024-05-02",
    "2024-05-02 10:00:00Z",
    "2024-05-02T10:00:00z",
    "20240502T100000Z",
    "2024-W18-4T10:00:00Z",
    "2024-02-30T00:00:00Z",
    "2024-05-02T24:00:00Z",
    "2024-05-02T23:59:60Z",
    "2024-05-02T10:00:00.123456789123Z",
    "+002024-05-02T10:00:00Z",
    "-0001-01-01T00:00:00Z",
    "2024-05-02T10:00:00+24:00",
    "yesterday",
    "NaT",
    "",
    " 2024-05-02T10:00:00Z ",
)
PRICE_EDGES: tuple[Any, ...] = (
    0,
    -0.0,
    0.0,
    5e-324,
    1e308,
    -1,
    -1e-300,
    10**20,
    2**63,
    2**64 + 1,
    666.0,
)
WHOLE_VALUES: tuple[bytes, ...] = (
    b"null",
    b"[]",
    b"{}",
    b"42",
    b'"an event"',
    b"true",
    b" ",
    b"\x00",
    b"{",
    b"}",
    b"\xef\xbb\xbf",
    b'{"event_id": }',
)


@dataclass(frozen=True, slots=True)
class Raw:
    """A JSON fragment written as is: NaN, an escaped lone surrogate, a huge number."""

    text: str


@dataclass(frozen=True, slots=True)
class Digits:
    """A number literal of ``size`` digits (a huge price)."""

    size: int


@dataclass(frozen=True, slots=True)
class Big:
    """A string of about ``size`` UTF-8 bytes, ``unit`` repeated (a huge id)."""

    unit: str
    size: int


@dataclass(frozen=True, slots=True)
class Tag:
    """The record's tag as its ``event_id``, then (after a ``|``) ``suffix``, an escaped JSON
    fragment ``raw_suffix`` and padding up to ``size`` bytes."""

    suffix: str = ""
    raw_suffix: str = ""
    size: int = 0


@dataclass(frozen=True, slots=True)
class Case:
    """One fuzzed input before it is tagged: its event fields in order (repeats allowed) or its
    whole value, a change to the rendered bytes (``wrap``), and its key."""

    kind: str
    pairs: tuple[tuple[str, Any], ...] | None
    raw: bytes | None = None
    wrap: str | None = None
    cut: int = 0
    key: Any = "user"  # "user" (the user id), None, bytes or Big


# ---- strategies ---------------------------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_odd_text = st.one_of(st.sampled_from(ODD_TEXTS), st.text(min_size=1, max_size=24))
_wrong: dict[str, st.SearchStrategy[Any]] = {
    "number": st.one_of(
        st.integers(-(2**63), 2**63), st.floats(allow_nan=False, allow_infinity=False)
    ),
    "string": st.one_of(st.sampled_from(("cheap", "1.5", "NaN", "")), st.text(max_size=8)),
    "bool": st.booleans(),
    "list": st.lists(_scalars, max_size=3),
    "object": st.dictionaries(st.text(max_size=6), _scalars, max_size=3),
}


def _aware_datetimes() -> st.SearchStrategy[str]:
    offsets = st.timedeltas(
        min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
    )
    zones = st.one_of(st.none(), st.just(UTC), st.builds(timezone, offsets))
    return st.datetimes(timezones=zones).map(datetime.isoformat)


def _base(draw: st.DrawFn) -> list[tuple[str, Any]]:
    value = event_value(draw(st.integers(0, 9_999)))
    return [(name, Tag() if name == "event_id" else value[name]) for name in FIELDS]


def _replace(pairs: list[tuple[str, Any]], name: str, new: Any) -> list[tuple[str, Any]]:
    return [(n, new if n == name else v) for n, v in pairs]


def _field_case(draw: st.DrawFn, family: str, name: str) -> tuple[str, list[tuple[str, Any]]]:
    pairs = _base(draw)
    kind = f"{family}:{name}"
    is_id = name == "event_id"
    if family == "missing":
        return kind, [(n, v) for n, v in pairs if n != name]
    if family == "null":
        return kind, _replace(pairs, name, None)
    if family == "wrong_type":
        options = [t for t in _wrong if (t == "string") == (name == "price")] + [
            "bool",
            "list",
            "object",
        ]
        wrong = draw(st.sampled_from(sorted(set(options))))
        return f"{kind}:{wrong}", _replace(pairs, name, draw(_wrong[wrong]))
    if family == "empty":
        return kind, _replace(pairs, name, "")
    if family == "huge":
        size = draw(st.sampled_from(HUGE_SIZES))
        unit = draw(st.sampled_from(("x", "\u00e9", "\U0001f600", "\u0000", "\u202e")))
        if name == "price":
            return f"{kind}:{size}", _replace(pairs, name, Digits(size))
        new: Any = Tag(suffix=unit, size=size) if is_id else Big(unit, size)
        return f"{kind}:{size}", _replace(pairs, name, new)
    if family == "unicode":
        if draw(st.booleans()):
            lone = draw(st.sampled_from(LONE_SURROGATES))
            new = Tag(raw_suffix=lone) if is_id else Raw(f'"x{lone}"')
            return f"{kind}:lone_surrogate", _replace(pairs, name, new)
        odd = draw(_odd_text)
        base = dict(pairs).get(name)
        new = Tag(suffix=odd) if is_id else (f"{base}{odd}" if isinstance(base, str) else odd)
        return f"{kind}:text", _replace(pairs, name, new)
    if family == "non_finite":
        token = draw(st.sampled_from(NON_FINITE))
        quoted = token.startswith('"')
        # A quoted spelling is a valid id: tagged, so that its prediction can be traced.
        new = Tag(suffix=":" + token.strip('"')) if is_id and quoted else Raw(token)
        return f"{kind}:{token}", _replace(pairs, name, new)
    if family == "nested":
        depth = draw(st.sampled_from((2, 50, 1_000, 5_000)))
        shape = draw(st.sampled_from(("list", "object")))
        opened, closed = (
            ("[" * depth, "]" * depth) if shape == "list" else ('{"a":' * depth, "}" * depth)
        )
        return f"{kind}:{shape}{depth}", _replace(pairs, name, Raw(f"{opened}1{closed}"))
    msg = f"unknown field family {family!r}"
    raise ValueError(msg)


FIELD_FAMILIES = (
    "missing",
    "null",
    "wrong_type",
    "empty",
    "huge",
    "unicode",
    "non_finite",
    "nested",
)
RECORD_FAMILIES = (
    "ts",
    "price_edge",
    "extra_fields",
    "duplicate_key",
    "valid_odd",
    "raw_bytes",
    "whole_value",
    "empty_value",
    "tombstone",
    "deep_json",
    "wrapped",
)
WRAPS = ("truncated", "trailing", "pretty", "array", "utf16", "bom", "latin1", "invalid_utf8")


def _record_case(
    draw: st.DrawFn, family: str
) -> tuple[str, list[tuple[str, Any]] | None, dict[str, Any]]:
    pairs = _base(draw)
    if family == "ts":
        ts = draw(st.one_of(st.sampled_from(TIMESTAMPS), _aware_datetimes()))
        return f"ts:{ts[:40]}", _replace(pairs, "ts", ts), {}
    if family == "price_edge":
        price = draw(st.sampled_from(PRICE_EDGES))
        return f"price_edge:{price!r}", _replace(pairs, "price", price), {}
    if family == "extra_fields":
        extra = draw(
            st.dictionaries(
                st.one_of(_odd_text, st.sampled_from(FIELDS[1:])), _json, min_size=1, max_size=4
            )
        )
        # A key that repeats a field of the contract is a duplicate key: the last one wins (not
        # event_id, which stays the tag that traces the record).
        return "extra_fields", pairs + list(extra.items()), {}
    if family == "duplicate_key":
        name = draw(st.sampled_from(FIELDS[1:]))
        other = draw(st.one_of(_scalars, st.sampled_from(("", "spaceships"))))
        first = draw(st.booleans())
        where = "before" if first else "after"
        added = [(name, other)]
        return f"duplicate_key:{name}:{where}", (added + pairs if first else pairs + added), {}
    if family == "valid_odd":
        new = dict(pairs)
        new["user_id"] = draw(_odd_text)
        new["session_id"] = draw(_odd_text)
        new["product_id"] = f"p-{draw(st.integers(-5, 10**9))}"
        new["device"] = draw(_odd_text)
        new["country"] = draw(_odd_text)
        new["event_id"] = Tag(suffix=draw(_odd_text))
        return "valid_odd", list(new.items()), {}
    if family == "raw_bytes":
        return "raw_bytes", None, {"raw": draw(st.binary(max_size=256))}
    if family == "whole_value":
        return "whole_value", None, {"raw": draw(st.sampled_from(WHOLE_VALUES))}
    if family == "empty_value":
        return "empty_value", None, {"raw": b""}
    if family == "tombstone":
        return "tombstone", None, {"raw": None}
    if family == "deep_json":
        depth = draw(st.sampled_from((100, 1_000, 10_000, 100_000)))
        shape = draw(st.sampled_from(("list", "object")))
        opened, closed = (
            (b"[" * depth, b"]" * depth) if shape == "list" else (b'{"a":' * depth, b"}" * depth)
        )
        return f"deep_json:{shape}{depth}", None, {"raw": opened + b"1" + closed}
    if family == "wrapped":
        wrap = draw(st.sampled_from(WRAPS))
        return f"wrapped:{wrap}", pairs, {"wrap": wrap, "cut": draw(st.integers(0, 400))}
    msg = f"unknown record family {family!r}"
    raise ValueError(msg)


_keys = st.one_of(
    st.just("user"),
    st.just("user"),
    st.just("user"),
    st.none(),
    st.binary(max_size=16).map(lambda b: b"\xff" + b),  # never UTF-8
    st.just(b""),
    st.builds(Big, st.just("k"), st.sampled_from((100_000, 400_000))),
)


# Every family of mutation, and for those of one field every field: the generator goes round
# them in turn, so that each is covered however few records are drawn.
SLOTS: tuple[tuple[str, str | None], ...] = (
    *((family, name) for family in FIELD_FAMILIES for name in FIELDS),
    # A record family is one slot where a field family is ten: four turns each, to even it.
    *((family, None) for _ in range(4) for family in RECORD_FAMILIES),
)


@st.composite
def fuzz_cases(draw: st.DrawFn, family: str, name: str | None = None) -> Case:
    """One fuzzed input of ``family`` (of field ``name``), with a key mostly the user id."""
    key = draw(_keys)
    if family in FIELD_FAMILIES:
        if name is None:
            name = draw(st.sampled_from(FIELDS))
        kind, pairs = _field_case(draw, family, name)
        return Case(kind, tuple(pairs), key=key)
    kind, record_pairs, extra = _record_case(draw, family)
    return Case(kind, None if record_pairs is None else tuple(record_pairs), key=key, **extra)


def _draw(strategy: st.SearchStrategy[Case], count: int, seed_value: int) -> list[Case]:
    """``count`` examples of ``strategy``, the same for the same seed: hypothesis's generate
    phase with no test around it (a run may stop short when it finds no new examples)."""
    cases: list[Case] = []
    round_ = 0
    while len(cases) < count:

        @settings(
            max_examples=count - len(cases),
            database=None,
            phases=[Phase.generate],
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @seed(seed_value * 1_000_003 + round_)
        @given(strategy)
        def collect(case: Case) -> None:
            if len(cases) < count:
                cases.append(case)

        collect()
        round_ += 1
    return cases


def draw_cases(count: int, *, seed_value: int = 0, distinct: int | None = None) -> list[Case]:
    """``count`` cases going round :data:`SLOTS` in turn, the same for the same seed; with
    ``distinct``, about that many are drawn and repeated (each record still has its own tag)."""
    per_slot = -(-min(count, distinct or count) // len(SLOTS))
    drawn = [
        _draw(fuzz_cases(family, name), per_slot, seed_value * 7_919 + i)
        for i, (family, name) in enumerate(SLOTS)
    ]
    slots = len(SLOTS)
    return [drawn[i % slots][(i // slots) % per_slot] for i in range(count)]
