"""The event contract is defined once: the topic's record, the tables and the worker's batch."""

from __future__ import annotations

import dataclasses

from lakecast.features import vocab
from lakecast.kafka import serde
from lakecast.lake.events import EVENT_FIELDS, EVENT_TYPES
from lakecast.lake.tables import EVENTS, FEATURES
from lakecast.serving.decoding import EVENT_SCHEMA


def test_the_topic_record_has_the_contracts_fields_in_order() -> None:
    assert tuple(f.name for f in dataclasses.fields(serde.Event)) == tuple(EVENT_FIELDS.names)


def test_the_tables_and_the_worker_batch_take_their_event_columns_from_the_contract() -> None:
    width = len(EVENT_FIELDS)
    assert pa_fields(EVENTS.schema)[:width] == pa_fields(EVENT_FIELDS)
    assert pa_fields(FEATURES.schema)[:width] == pa_fields(EVENT_FIELDS)
    assert EVENT_SCHEMA.names == EVENT_FIELDS.names
    assert EVENT_SCHEMA.types == EVENT_FIELDS.types
    assert serde.EVENT_TYPES is EVENT_TYPES
    assert vocab.EVENT_TYPES is EVENT_TYPES


def pa_fields(schema: object) -> list[object]:
    return list(schema)  # type: ignore[call-overload]
