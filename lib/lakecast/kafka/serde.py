"""JSON encoding and decoding of the topic contracts in DESIGN.md (orjson, UTF-8).

Decoding is where untrusted bytes enter the streaming path, so it checks the size first,
then the JSON, then every field of the contract, and raises :class:`InvalidRecordError`
naming the field; the loop sends such records to the dead-letter topic. Unknown extra
fields are ignored so that producers can add fields without breaking older workers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa

from lakecast.errors import InvalidRecordError
from lakecast.lake.events import EVENT_FIELDS, EVENT_TYPES

METRIC_KINDS = (
    "sample",
    "anomaly",
    "scaling",
    "rollout",
    "quality",
    "drift",
    "staleness",
    "retrain",
)
# Kafka's default max.message.bytes is 1 MiB; a record near that is a bug or an attack.
MAX_RECORD_BYTES = 1_000_000

# The bounds of an event's fields. Unbounded, one event could make an output no producer can
# send: a 1 MB user id made a 2 MB prediction (key and value both carry it), its transaction
# aborted on every retry, and the partition stalled (issue 13).
# Every string field of an event, ids included: UUIDs are 36 characters, the demo's ids
# under 16, namespaced ids ("tenant:region:uuid") under 100. At 128 a prediction, which
# repeats the event and user ids, stays under 2 KB even with every character escaped.
MAX_STRING_CHARS = 128
# The record key (the user id, UTF-8): 128 characters of up to 4 bytes each.
MAX_KEY_BYTES = 4 * MAX_STRING_CHARS
# A price in any currency's minor-free unit: a billion is more than any one product costs
# (a car is 1e9 in the weakest currencies); above it, a price is a unit or overflow bug.
MAX_PRICE = 1e9
# Timestamps: no clickstream event predates 2000 (epoch 0 or year 1 is a default value, not a
# time); up to a day ahead of the worker's clock allows for skewed producer clocks and local
# times sent as UTC (at most 14 h off).
EARLIEST_TS = datetime(2000, 1, 1, tzinfo=UTC)
MAX_TS_AHEAD = timedelta(days=1)

_DUMP_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NAIVE_UTC
# The free-text fields (event_type is one of EVENT_TYPES).
_EVENT_STRINGS = tuple(
    field.name
    for field in EVENT_FIELDS
    if pa.types.is_string(field.type) and field.name != "event_type"
)


@dataclass(slots=True)  # not frozen: a frozen __init__ costs 1.5 us, 3x, for every event
class Event:
    """One record of the ``events`` topic, validated: the fields of
    :data:`lakecast.lake.events.EVENT_FIELDS`, in order (tests/unit/test_event_contract.py)."""

    event_id: str
    user_id: str
    session_id: str
    product_id: str
    category: str
    event_type: str
    price: float
    device: str
    country: str
    ts: datetime

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def encode_key(key: str | None) -> bytes | None:
    """Keys are UTF-8 strings (the user id on ``events`` and ``predictions``)."""
    return None if key is None else key.encode("utf-8")


def decode_key(key: bytes | None) -> str | None:
    if key is None:
        return None
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = f"decode key: not UTF-8 at byte {exc.start}"
        raise InvalidRecordError(msg, field="<key>") from exc


def encode_json(value: Mapping[str, Any], *, max_bytes: int = MAX_RECORD_BYTES) -> bytes:
    """Serialise a record value; datetimes become ISO-8601 UTC with ``Z``.

    Raises:
        InvalidRecordError: the value cannot be serialised or is larger than ``max_bytes``.
    """
    try:
        data = orjson.dumps(value, option=_DUMP_OPTIONS)
    except orjson.JSONEncodeError as exc:
        msg = f"encode record: {exc}"
        raise InvalidRecordError(msg, field="<value>") from exc
    if len(data) > max_bytes:
        msg = f"encode record: {len(data)} bytes is over the limit of {max_bytes}"
        raise InvalidRecordError(msg, field="<value>")
    return data


def decode_json(value: bytes | None, *, max_bytes: int = MAX_RECORD_BYTES) -> dict[str, Any]:
    """Parse a record value that must be one JSON object of at most ``max_bytes``."""
    if value is None:
        msg = "decode record: value is null (a tombstone), expected a JSON object"
        raise InvalidRecordError(msg, field="<value>")
    if len(value) > max_bytes:
        msg = f"decode record: {len(value)} bytes is over the limit of {max_bytes}"
        raise InvalidRecordError(msg, field="<value>")
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        msg = f"decode record: not valid UTF-8 JSON ({exc})"
        raise InvalidRecordError(msg, field="<value>") from exc
    if not isinstance(parsed, dict):
        msg = f"decode record: expected a JSON object, found {type(parsed).__name__}"
        raise InvalidRecordError(msg, field="<value>")
    return parsed


def _required(data: Mapping[str, Any], name: str, where: str) -> Any:
    if name not in data or data[name] is None:
        msg = f"{where}: field {name!r} is missing"
        raise InvalidRecordError(msg, field=name)
    return data[name]


def _string(data: Mapping[str, Any], name: str, where: str) -> str:
    value = _required(data, name, where)
    if not isinstance(value, str):
        msg = f"{where}: field {name!r} must be a string, found {type(value).__name__}"
        raise InvalidRecordError(msg, field=name)
    if not value:
        msg = f"{where}: field {name!r} is empty"
        raise InvalidRecordError(msg, field=name)
    return value


def _bounded_string(data: Mapping[str, Any], name: str, where: str) -> str:
    value = _string(data, name, where)
    if len(value) > MAX_STRING_CHARS:
        msg = (
            f"{where}: field {name!r} is {len(value)} characters, over the limit of "
            f"{MAX_STRING_CHARS}"
        )
        raise InvalidRecordError(msg, field=name)
    return value


def _number(data: Mapping[str, Any], name: str, where: str) -> float:
    value = _required(data, name, where)
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{where}: field {name!r} must be a number, found {type(value).__name__}"
        raise InvalidRecordError(msg, field=name)
    number = float(value)
    if not math.isfinite(number):
        msg = f"{where}: field {name!r} must be finite, found {value!r}"
        raise InvalidRecordError(msg, field=name)
    return number


def parse_utc(value: Any, name: str = "ts", where: str = "decode record") -> datetime:
    """An ISO-8601 timestamp with an offset (``Z`` or ``+00:00``), returned in UTC."""
    if not isinstance(value, str):
        msg = f"{where}: field {name!r} must be an ISO-8601 string, found {type(value).__name__}"
        raise InvalidRecordError(msg, field=name)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        msg = f"{where}: field {name!r} is not ISO-8601: {value[:64]!r}"
        raise InvalidRecordError(msg, field=name) from exc
    if parsed.tzinfo is None:
        msg = f"{where}: field {name!r} has no UTC offset: {value[:64]!r}"
        raise InvalidRecordError(msg, field=name)
    try:
        return parsed.astimezone(UTC)
    except OverflowError as exc:  # 9999-12-31T23:59-01:00 is past datetime.max in UTC
        msg = f"{where}: field {name!r} is out of range in UTC: {value[:64]!r}"
        raise InvalidRecordError(msg, field=name) from exc


def latest_event_ts(now: datetime | None = None) -> datetime:
    """The latest ``ts`` an event may carry: :data:`MAX_TS_AHEAD` past ``now`` (the clock)."""
    return (now or datetime.now(UTC)) + MAX_TS_AHEAD


def _well_formed_event(data: Mapping[str, Any], latest: datetime) -> Event | None:
    """The event when every field is present, of its exact type and in range (the common
    case, checked in one pass); None when :func:`event_from_dict` must find what is wrong."""
    get = data.get
    event_id: Any = get("event_id")
    user_id: Any = get("user_id")
    session_id: Any = get("session_id")
    product_id: Any = get("product_id")
    category: Any = get("category")
    device: Any = get("device")
    country: Any = get("country")
    event_type: Any = get("event_type")
    price: Any = get("price")
    ts: Any = get("ts")
    most = MAX_STRING_CHARS
    # Unrolled: the same checks over a list in a generator cost twice as much (0.5 us).
    if not (
        type(event_id) is str
        and type(user_id) is str
        and type(session_id) is str
        and type(product_id) is str
        and type(category) is str
        and type(device) is str
        and type(country) is str
        and 0 < len(event_id) <= most
        and 0 < len(user_id) <= most
        and 0 < len(session_id) <= most
        and 0 < len(product_id) <= most
        and 0 < len(category) <= most
        and 0 < len(device) <= most
        and 0 < len(country) <= most
        and event_type in EVENT_TYPES
        and type(price) in (float, int)
        and 0 <= price <= MAX_PRICE
        and type(ts) is str
    ):
        return None
    try:
        parsed = parse_utc(ts)
    except InvalidRecordError:
        return None
    if not EARLIEST_TS <= parsed <= latest:
        return None
    return Event(
        event_id=event_id,
        user_id=user_id,
        session_id=session_id,
        product_id=product_id,
        category=category,
        event_type=event_type,
        price=float(price),
        device=device,
        country=country,
        ts=parsed,
    )


def event_from_dict(data: Mapping[str, Any], *, latest: datetime | None = None) -> Event:
    """Validate the fields, types and bounds of an ``events`` value already parsed from JSON.

    ``latest`` is the latest ``ts`` accepted (:func:`latest_event_ts`); a caller checking a
    batch passes one for all its events, read from the clock once.
    """
    latest = latest or latest_event_ts()
    event = _well_formed_event(data, latest)
    if event is not None:
        return event
    # The checks one by one, for an error that names the field.
    where = "decode event"
    strings = {name: _bounded_string(data, name, where) for name in _EVENT_STRINGS}
    event_type = _string(data, "event_type", where)
    if event_type not in EVENT_TYPES:
        msg = f"{where}: field 'event_type' must be one of {EVENT_TYPES}, found {event_type!r}"
        raise InvalidRecordError(msg, field="event_type")
    price = _number(data, "price", where)
    if not 0 <= price <= MAX_PRICE:
        msg = f"{where}: field 'price' must be in [0, {MAX_PRICE:g}], found {price}"
        raise InvalidRecordError(msg, field="price")
    ts = parse_utc(_required(data, "ts", where), "ts", where)
    if not EARLIEST_TS <= ts <= latest:
        msg = (
            f"{where}: field 'ts' must be in [{EARLIEST_TS.isoformat()}, {latest.isoformat()}] "
            f"(not before 2000, at most {MAX_TS_AHEAD} ahead of the clock), found {ts.isoformat()}"
        )
        raise InvalidRecordError(msg, field="ts")
    return Event(event_type=event_type, price=price, ts=ts, **strings)


def decode_event(value: bytes | None, *, max_bytes: int = MAX_RECORD_BYTES) -> Event:
    """Decode and validate one ``events`` record value.

    Raises:
        InvalidRecordError: the value is too large, not a JSON object, or a field is missing,
            of the wrong type or out of range; ``field`` names it.
    """
    return event_from_dict(decode_json(value, max_bytes=max_bytes))


def encode_event(event: Event | Mapping[str, Any]) -> bytes:
    """Encode an ``events`` value (validating a mapping first, so we never emit a bad one)."""
    checked = event if isinstance(event, Event) else event_from_dict(event)
    return encode_json(checked.to_dict())


@dataclass(frozen=True, slots=True)
class ModelRef:
    """The exact model version a prediction was made by (its registry name, version and
    artifact sha256); a reference to resolve is :class:`lakecast.registry.ModelReference`."""

    name: str
    version: str
    sha256: str


@dataclass(frozen=True, slots=True)
class Prediction:
    """One record of the ``predictions`` topic."""

    event_id: str
    user_id: str
    ts: datetime
    score: float
    model: ModelRef
    variant: str
    experiment: str | None
    latency_ms: float
    features_version: str | int | None
    # Always true on the topic: a shadow model's scores stay in ``metrics`` (the contract
    # names the field so that the topic's rows and the ``predictions`` table's line up).
    served: bool = True

    def to_dict(self) -> dict[str, Any]:
        encoder = PredictionEncoder(
            self.model, self.variant, self.experiment, self.features_version
        )
        return encoder.as_dict(self.event_id, self.user_id, self.ts, self.score, self.latency_ms)


class PredictionEncoder:
    """Encodes the predictions of one model version and variant (the worker's hot path: the
    parts they share are built once, no :class:`Prediction` per record)."""

    def __init__(
        self,
        model: ModelRef,
        variant: str,
        experiment: str | None,
        features_version: str | int | None,
    ) -> None:
        self.model = {"name": model.name, "version": model.version, "sha256": model.sha256}
        self.variant = variant
        self.experiment = experiment
        self.features_version = features_version

    def as_dict(
        self, event_id: str, user_id: str, ts: datetime, score: float, latency_ms: float
    ) -> dict[str, Any]:
        return {
            "event_id": event_id,
            "user_id": user_id,
            "ts": ts,
            "score": score,
            "model": self.model,
            "variant": self.variant,
            "experiment": self.experiment,
            "served": True,
            "latency_ms": latency_ms,
            "features_version": self.features_version,
        }

    def encode(
        self, event_id: str, user_id: str, ts: datetime, score: float, latency_ms: float
    ) -> bytes:
        if not math.isfinite(score):
            msg = f"encode prediction {event_id!r}: score {score} is not finite"
            raise InvalidRecordError(msg, field="score")
        return encode_json(self.as_dict(event_id, user_id, ts, score, latency_ms))


def encode_prediction(prediction: Prediction) -> bytes:
    encoder = PredictionEncoder(
        prediction.model, prediction.variant, prediction.experiment, prediction.features_version
    )
    return encoder.encode(
        prediction.event_id,
        prediction.user_id,
        prediction.ts,
        prediction.score,
        prediction.latency_ms,
    )


def decode_prediction(value: bytes | None) -> Prediction:
    """Decode a ``predictions`` value (for consumers of our output and for tests)."""
    where = "decode prediction"
    data = decode_json(value)
    model = _required(data, "model", where)
    if not isinstance(model, dict):
        msg = f"{where}: field 'model' must be an object, found {type(model).__name__}"
        raise InvalidRecordError(msg, field="model")
    experiment = data.get("experiment")
    if experiment is not None and not isinstance(experiment, str):
        msg = f"{where}: field 'experiment' must be a string or null"
        raise InvalidRecordError(msg, field="experiment")
    served = data.get("served", True)  # records written before the field existed were served
    if not isinstance(served, bool):
        msg = f"{where}: field 'served' must be true or false"
        raise InvalidRecordError(msg, field="served")
    features_version = data.get("features_version")
    if features_version is not None and not isinstance(features_version, str | int):
        msg = f"{where}: field 'features_version' must be a string, an integer or null"
        raise InvalidRecordError(msg, field="features_version")
    return Prediction(
        event_id=_string(data, "event_id", where),
        user_id=_string(data, "user_id", where),
        ts=parse_utc(_required(data, "ts", where), "ts", where),
        score=_number(data, "score", where),
        model=ModelRef(
            name=_string(model, "name", f"{where} model"),
            version=_string(model, "version", f"{where} model"),
            sha256=_string(model, "sha256", f"{where} model"),
        ),
        variant=_string(data, "variant", where),
        experiment=experiment,
        latency_ms=_number(data, "latency_ms", where),
        features_version=features_version,
        served=served,
    )


def encode_metric(kind: str, source: str, ts: datetime, fields: Mapping[str, Any]) -> bytes:
    """Encode a ``metrics`` value: ``kind``, ``source``, ``ts`` and that kind's fields."""
    if kind not in METRIC_KINDS:
        msg = f"encode metric: kind must be one of {METRIC_KINDS}, found {kind!r}"
        raise InvalidRecordError(msg, field="kind")
    clash = {"kind", "source", "ts"} & set(fields)
    if clash:
        msg = f"encode metric: fields {sorted(clash)} clash with the envelope"
        raise InvalidRecordError(msg, field=sorted(clash)[0])
    return encode_json({"kind": kind, "source": source, "ts": ts, **fields})


def decode_metric(value: bytes | None) -> dict[str, Any]:
    """Decode a ``metrics`` value; the envelope is checked and ``ts`` becomes a datetime."""
    where = "decode metric"
    data = decode_json(value)
    kind = _string(data, "kind", where)
    if kind not in METRIC_KINDS:
        msg = f"{where}: field 'kind' must be one of {METRIC_KINDS}, found {kind!r}"
        raise InvalidRecordError(msg, field="kind")
    _string(data, "source", where)
    data["ts"] = parse_utc(_required(data, "ts", where), "ts", where)
    return data
