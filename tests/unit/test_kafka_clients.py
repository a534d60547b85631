"""The installed Kafka client is the fast one the streaming path was measured with."""

from __future__ import annotations

import pytest
from kafka.record import util as record_util

from lakecast.kafka.clients import crc32c_is_native

pytestmark = pytest.mark.unit


def test_kafka_python_checks_record_crcs_in_c() -> None:
    # The pure-Python fallback (5 ms for a 30 KB batch, holding the GIL) doubled the
    # worker's commit time; pyproject asks for kafka-python's crc32c extra.
    assert crc32c_is_native()
    # The check value of CRC-32C (Castagnoli), as Kafka's record batches use it.
    assert record_util.calc_crc32c(memoryview(b"123456789")) == 0xE3069283
