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


def test_a_full_transaction_fits_one_producer_batch_per_partition() -> None:
    # kafka-python wakes its sender thread (a socket write) on every send while a partition
    # has a second batch queued. A max_batch transaction of prediction-sized records over
    # the predictions topic must not start one, or nearly every send pays a wake-up.
    from kafka.producer.record_accumulator import RecordAccumulator
    from kafka.structs import TopicPartition

    from lakecast.config import KafkaSettings, settings
    from lakecast.kafka.clients import producer_options

    options = producer_options(KafkaSettings(), mode="at_least_once")
    assert options["batch_size"] <= 1_048_576 - 1024  # Kafka's default max.message.bytes
    accumulator = RecordAccumulator(batch_size=options["batch_size"], linger_ms=5)
    value = b"p" * 320  # a prediction record is about 300 bytes
    wake_ups = 0
    for i in range(settings().serving.max_batch):
        tp = TopicPartition("predictions", i % 2)  # spread over as few as two partitions
        _, full, new_batch, _ = accumulator.append(tp, 0, f"u-{i}".encode(), value, [])
        wake_ups += full or new_batch
    assert wake_ups == 2  # one new batch per partition, none full


def test_group_members_take_their_liveness_and_static_id_from_the_config() -> None:
    from lakecast.config import KafkaSettings
    from lakecast.kafka.clients import consumer_options, producer_options

    dynamic = consumer_options(
        KafkaSettings(session_timeout_ms=12_000, heartbeat_interval_ms=2_000), group_id="g"
    )
    assert (dynamic["session_timeout_ms"], dynamic["heartbeat_interval_ms"]) == (12_000, 2_000)
    assert "group_instance_id" not in dynamic
    static = consumer_options(KafkaSettings(group_instance_id="g-host-0"), group_id="g")
    assert static["group_instance_id"] == "g-host-0"
    producer = producer_options(KafkaSettings(reconnect_backoff_max_ms=700), mode="at_least_once")
    assert producer["reconnect_backoff_max_ms"] == 700
    assert "group_instance_id" not in producer
