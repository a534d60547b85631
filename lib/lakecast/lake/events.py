"""The event contract: the fields of one clickstream event, defined once.

The ``events`` topic's records (:class:`lakecast.kafka.serde.Event`), the ``events`` and
``features`` Delta tables (:mod:`lakecast.lake.tables`, which add their own columns) and the
worker's Arrow batch (:mod:`lakecast.serving.decoding`) all take their event columns from
:data:`EVENT_FIELDS`.
"""

from __future__ import annotations

import pyarrow as pa

EVENT_TYPES = ("view", "cart", "purchase")

# In record order. Every field is required: a record without one is dead-lettered.
EVENT_FIELDS = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("session_id", pa.string(), nullable=False),
        pa.field("product_id", pa.string(), nullable=False),
        pa.field("category", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("price", pa.float64(), nullable=False),
        pa.field("device", pa.string(), nullable=False),
        pa.field("country", pa.string(), nullable=False),
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)
