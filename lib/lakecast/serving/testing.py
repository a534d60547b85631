"""Test doubles and fixtures for the streaming worker, shipped with the library.

Worker tests, the benchmark and the demo need three things that would otherwise take a Spark
run: a registered model with the right signature, an ``entity_features`` snapshot, and event
payloads in the topic contract. These build them small and fast (scikit-learn on random data,
a snapshot written with delta-rs), deterministic by seed.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from time import monotonic as time_monotonic
from time import sleep as time_sleep
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa

from lakecast.features.spec import (
    FEATURE_COLUMNS,
    FEATURES_VERSION,
    PRODUCT_FEATURE_COLUMNS,
    USER_COUNT_COLUMNS,
)
from lakecast.features.vocab import CATEGORIES, COUNTRIES, DEVICES, EVENT_TYPES
from lakecast.models.predictor import Features, NanPolicy, Predictor
from lakecast.registry.records import ModelVersion
from lakecast.registry.signature import Signature

if TYPE_CHECKING:
    from kafka.consumer.fetcher import ConsumerRecord

SNAPSHOT_DATE = date(2024, 5, 1)
EVENT_DAY = SNAPSHOT_DATE + timedelta(days=1)


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


def event_payloads(count: int, start: int = 0) -> Iterator[tuple[bytes, bytes]]:
    return (event_payload(i) for i in range(start, start + count))


def snapshot_rows(
    *, users: int = 500, products: int = 200, snapshot_date: date = SNAPSHOT_DATE, seed: int = 0
) -> pa.Table:
    """An ``entity_features`` snapshot with random but plausible aggregates.

    Users ``u-0 .. u-(users-1)`` and products ``p-0 ..`` exist; every category has a mean price.
    Half the users are left out so that the worker also meets unknown entities.
    """
    from lakecast.lake.tables import ENTITY_FEATURES

    rng = np.random.default_rng(seed)
    schema = ENTITY_FEATURES.arrow_schema()
    as_of = datetime.combine(snapshot_date + timedelta(days=1), time(0), tzinfo=UTC)
    rows: list[dict[str, Any]] = []
    for u in range(0, users, 2):
        row: dict[str, Any] = {"entity_type": "user", "entity_id": f"u-{u}"}
        counts = rng.integers(0, 20, len(USER_COUNT_COLUMNS)).astype(float)
        row.update(dict(zip(USER_COUNT_COLUMNS, counts, strict=True)))
        row["user_last_event_ts"] = as_of - timedelta(seconds=int(rng.integers(1, 500_000)))
        for category in CATEGORIES:
            row[f"user_count_7d_{category}"] = float(rng.integers(0, 5))
        rows.append(row)
    for p in range(products):
        views = float(rng.integers(0, 300))
        purchases = float(rng.integers(0, 10))
        rows.append(
            {
                "entity_type": "product",
                "entity_id": f"p-{p}",
                PRODUCT_FEATURE_COLUMNS[0]: views,
                PRODUCT_FEATURE_COLUMNS[1]: purchases,
                PRODUCT_FEATURE_COLUMNS[2]: (purchases + 1.0) / (views + 20.0),
            }
        )
    for index, category in enumerate(CATEGORIES):
        rows.append(
            {
                "entity_type": "category",
                "entity_id": category,
                "category_mean_price_7d": 50.0 + 25.0 * index,
            }
        )
    for row in rows:
        row["as_of"] = as_of
        row["features_version"] = FEATURES_VERSION
        row["snapshot_date"] = snapshot_date
    return pa.Table.from_pylist(rows, schema=schema)


def write_snapshot(path: str, rows: pa.Table | None = None) -> int:
    """Append snapshot rows to the Delta table at ``path`` with delta-rs; the new version."""
    from deltalake import DeltaTable, write_deltalake

    data = rows if rows is not None else snapshot_rows()
    write_deltalake(path, data, mode="append", partition_by=["snapshot_date"])
    return int(DeltaTable(path).version())


def training_matrix(rows: int = 600) -> np.ndarray:
    """Feature rows of synthetic events against :func:`snapshot_rows`, as the worker sees them."""
    from lakecast.features.online import online_feature_matrix
    from lakecast.features.snapshot import snapshot_from_arrow
    from lakecast.features.testing import make_events

    snapshot = snapshot_from_arrow(snapshot_rows())
    values = []
    for i in range(rows):
        value = event_value(i)
        value["ts"] = datetime.fromisoformat(value["ts"])
        values.append(value)
    return online_feature_matrix(make_events(values), snapshot)


def train_model(seed: int = 0, rows: int = 600) -> Any:
    """A small scikit-learn logistic regression over ``FEATURE_COLUMNS``.

    Trained on the features of synthetic events with noisy labels from a random projection, so
    that its scores on such events spread over (0, 1) instead of saturating.
    """
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    matrix = training_matrix(rows)
    scale = matrix.std(axis=0) + 1e-9
    standard = (matrix - matrix.mean(axis=0)) / scale
    logits = standard @ rng.standard_normal(matrix.shape[1]) * 0.3
    labels = (rng.random(rows) < 1 / (1 + np.exp(-logits))).astype(int)
    labels[:2] = [0, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unscaled inputs: lbfgs stops early, which is fine here
        return LogisticRegression(C=0.1, max_iter=500).fit(matrix, labels)


def slow_twin(model: Any, copies: int) -> Any:
    """A soft-voting ensemble of ``copies`` of a fitted classifier: its scores, ``copies``
    times its predict cost. The candidate that is right but slow, for latency analyses."""
    from sklearn.ensemble import VotingClassifier
    from sklearn.preprocessing import LabelEncoder

    ensemble = VotingClassifier([(f"copy{i}", model) for i in range(copies)], voting="soft")
    # Fitted attributes set directly: every member is the already fitted model.
    ensemble.estimators_ = [model] * copies
    ensemble.le_ = LabelEncoder().fit(model.classes_)
    ensemble.classes_ = ensemble.le_.classes_
    return ensemble


def register_model(
    registry_root: str,
    name: str = "purchase",
    *,
    seed: int = 0,
    alias: str | None = "champion",
    nan_policy: NanPolicy = "error",
) -> ModelVersion:
    """Register a tiny model under ``name`` (and point ``alias`` at it); its version record."""
    from lakecast.registry import Registry

    registry = Registry(registry_root)
    record = registry.register(
        name,
        train_model(seed),
        signature=Signature.of(list(FEATURE_COLUMNS), dtype="float64"),
        metrics={"auc": 0.5},
        nan_policy=nan_policy,
        description=f"test model, seed {seed}",
    )
    if alias:
        registry.promote(name, record.version, alias, why="test fixture")
    return record


@dataclass
class WrappedPredictor:
    """A Predictor around another: the same signature and NaN policy (tests override predict)."""

    inner: Predictor

    @property
    def signature(self) -> Signature:
        return self.inner.signature

    @property
    def nan_policy(self) -> NanPolicy:
        return self.inner.nan_policy

    def predict(self, features: Features) -> np.ndarray:
        return self.inner.predict(features)


@dataclass
class FailingPredictor(WrappedPredictor):
    """Wraps a Predictor and raises for any row whose feature ``column`` equals ``value``.

    The stand-in for "the model fails on this one record" (a model that cannot handle an
    input), which a real, well-behaved model does not do on demand.
    """

    column: str
    value: float

    def predict(self, features: Features) -> np.ndarray:
        matrix = np.asarray(features)
        position = FEATURE_COLUMNS.index(self.column)
        if matrix.ndim == 2 and np.any(np.isclose(matrix[:, position], self.value)):
            msg = f"model cannot score {self.column}={self.value}"
            raise ValueError(msg)
        return self.inner.predict(features)


def failing_loader(column: str, value: float) -> Callable[[ModelVersion, Predictor], Predictor]:
    """A ``wrap`` hook for :class:`lakecast.serving.model_source.ModelSource`."""

    def wrap(version: ModelVersion, predictor: Predictor) -> Predictor:
        return FailingPredictor(predictor, column, value)

    return wrap


# ---- Kafka helpers for tests and benchmarks: produce, read back, wait for a group ---------


def produce(
    bootstrap: str, topic: str, payloads: Iterable[tuple[bytes | None, bytes | None]]
) -> int:
    """Send (key, value) pairs with an idempotent producer and wait until all are written."""
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=10,
        batch_size=256 * 1024,
        max_request_size=4 * 1024 * 1024,
    )
    count = 0
    for key, value in payloads:
        producer.send(topic, key=key, value=value)
        count += 1
    producer.flush()
    producer.close()
    return count


def read_committed(
    bootstrap: str, topic: str, *, at_least: int, timeout_s: float = 60.0, quiet_s: float = 1.0
) -> list[ConsumerRecord]:
    """Every committed record of ``topic``: read until ``at_least`` came and ``quiet_s`` passed."""
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
        max_poll_records=5_000,
        fetch_max_bytes=50 * 1024 * 1024,
    )
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        records: list[ConsumerRecord] = []
        deadline = time_monotonic() + timeout_s
        quiet_since = time_monotonic()
        while time_monotonic() < deadline:
            polled = consumer.poll(timeout_ms=200)
            for batch in polled.values():
                records.extend(batch)
            if polled:
                quiet_since = time_monotonic()
            elif len(records) >= at_least and time_monotonic() - quiet_since > quiet_s:
                break
        return records
    finally:
        consumer.close()


def committed_total(bootstrap: str, group: str, topic: str) -> int:
    """The sum of ``group``'s committed offsets on ``topic`` (0 before the first commit)."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="lakecast-test-admin")
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    except KafkaError:  # the coordinator is loading
        return 0
    finally:
        admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0)


def wait_for(
    condition: Callable[[], bool], *, timeout_s: float, what: str, every_s: float = 0.25
) -> None:
    """Poll ``condition`` until true; raise TimeoutError naming ``what`` otherwise."""
    deadline = time_monotonic() + timeout_s
    while time_monotonic() < deadline:
        if condition():
            return
        time_sleep(every_s)
    msg = f"timed out after {timeout_s} s waiting for {what}"
    raise TimeoutError(msg)
