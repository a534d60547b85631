"""kafka.replication: the replicas and min ISR of the topics lakecast creates, per cluster size."""

from __future__ import annotations

import pytest

from lakecast.config import DEFAULT_CONFIG, KafkaSettings, TopicReplication, load_settings


@pytest.mark.parametrize(
    ("brokers", "expected"), [(1, (1, 1)), (2, (2, 2)), (3, (3, 2)), (5, (3, 2))]
)
def test_replication_is_capped_at_the_cluster(brokers: int, expected: tuple[int, int]) -> None:
    assert TopicReplication(factor=3, min_insync_replicas=2).on_cluster(brokers) == expected


def test_a_min_isr_above_the_factor_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"min_insync_replicas \(3\) must not exceed factor \(2\)"):
        KafkaSettings.model_validate({"replication": {"factor": 2, "min_insync_replicas": 3}})


def test_the_shipped_config_asks_for_three_replicas_and_two_in_sync() -> None:
    replication = load_settings(DEFAULT_CONFIG, environ={}).kafka.replication
    assert (replication.factor, replication.min_insync_replicas) == (3, 2)
