"""Fuzzing the inference worker: however strange, one record becomes one output.

Records from :func:`lakecast.testing.fuzz.generate` (hypothesis mutations of every field of
the ``events`` contract and of whole records, interleaved with valid controls) go through a
real worker in a thread against the session broker. Each input is traced by where it was
written: a prediction by its ``event_id``, a dead letter by its ``source``. The invariant:
every input offset appears exactly once across ``predictions`` and ``events.dlq``, every
score is finite and in [0, 1], every control is scored, and the worker is still alive and
scores one more event at the end.

The records are drawn once with a fixed seed, not one hypothesis example per broker round
trip: a worker run per example (and shrinking) would take minutes, and the ledger
(:mod:`lakecast.testing.ledger`) names each failing input with its kind of mutation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import orjson
import pytest

from lakecast.testing.clock import wait_for
from lakecast.testing.events import event_value
from lakecast.testing.fuzz import CONTROL, generate
from lakecast.testing.kafka import committed_total, produce, read_committed
from lakecast.testing.ledger import account, send_records
from tests.integration.worker_fixtures import Lake, ThreadedWorker, served_lake, worker_topics

RECORDS = 800
SEED = 13
# The worker's own default: records up to 1,000,000 bytes reach decoding, so ids of up to
# that size are scored or dead-lettered by what they contain, not only by their size.
MAX_RECORD_BYTES = 1_000_000
DRAIN_S = 45.0


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    return served_lake(tmp_path_factory.mktemp("fuzz"))


def test_every_fuzzed_record_becomes_exactly_one_prediction_or_dead_letter(
    bootstrap: str, lake: Lake, topic_factory: Callable[..., str], consumer_group: str
) -> None:
    # Up to 12 records over 64 KB per family: among them every field at 600 KB. Before
    # a1d3092 bounded the contract's strings, a 600 KB user id broke the invariant: its
    # prediction carried the id as key and in the value (1.2 MB, over the producer's 1 MiB
    # max_request_size), the transaction aborted 8 times in a row and the worker died
    # (StreamError) with 633 of these 800 records unread.
    records = generate(RECORDS, seed_value=SEED, large_budget=12)
    assert {r.family for r in records} >= {CONTROL, "huge", "unicode", "raw_bytes", "tombstone"}
    topics = worker_topics(topic_factory)
    placed = send_records(bootstrap, topics["events"], records)
    refused = [(r.describe(), p.error) for r, p in zip(records, placed, strict=True) if p.error]
    assert not refused, f"the broker refused inputs: {refused}"

    worker = ThreadedWorker(
        bootstrap, lake, topics, consumer_group, max_record_bytes=MAX_RECORD_BYTES
    )
    try:
        # Until every offset is committed, or the worker died, or it stalled: then the ledger
        # below says which inputs were not accounted for.
        with contextlib.suppress(TimeoutError):
            wait_for(
                lambda: (
                    worker.error is not None
                    or committed_total(bootstrap, consumer_group, topics["events"]) >= len(records)
                ),
                timeout_s=DRAIN_S,
                what=f"the worker to commit {len(records)} fuzzed records",
            )
        alive = worker.thread.is_alive() and worker.error is None
        # Alive means still serving: one more valid event is scored.
        final = event_value(10**9, event_id="fz-final")
        if alive:
            produce(bootstrap, topics["events"], [(final["user_id"].encode(), orjson.dumps(final))])
            wait_for(
                lambda: (
                    committed_total(bootstrap, consumer_group, topics["events"]) >= len(records) + 1
                ),
                timeout_s=DRAIN_S,
                what="the worker to score one more event after the fuzzed ones",
            )
    finally:
        worker.stop_event.set()
        worker.thread.join(60)
    predictions = read_committed(bootstrap, topics["predictions"], at_least=0, quiet_s=1.0)
    dead_letters = read_committed(bootstrap, topics["dlq"], at_least=0, quiet_s=1.0)
    final_scored = [p for p in predictions if b'"event_id":"fz-final"' in (p.value or b"")]
    ledger = account(
        records,
        placed,
        [p for p in predictions if p not in final_scored],
        dead_letters,
        topics["events"],
    )

    problems = ledger.violations()
    assert not problems, (
        f"{len(ledger.lost)} lost, {len(ledger.duplicated)} duplicated of {len(records)} "
        f"inputs (worker alive: {alive}, error: {worker.error!r}):\n" + "\n".join(problems)
    )
    assert alive, f"the worker died: {worker.error!r}"
    assert len(final_scored) == 1
    assert ledger.predictions + ledger.dead_letters == len(records)
    # Both paths were taken, so the ledger checked something on each.
    by_family = ledger.by_family()
    assert by_family[CONTROL]["predictions"] == by_family[CONTROL]["inputs"]
    assert ledger.dead_letters > len(records) // 4
