"""The ledger of a fuzzing run: where each input was written, and what became of it.

:func:`send_records` notes the (partition, offset) of every input from the producer's send
futures; :func:`account` maps each prediction (by its ``event_id``) and each dead letter (by
its ``source``) back to that input, so that a lost, duplicated or unexplained output names
the input it concerns, with the kind of mutation :mod:`lakecast.testing.fuzz` made.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lakecast.config import KafkaSettings
from lakecast.errors import InvalidRecordError
from lakecast.kafka.clients import build_producer
from lakecast.kafka.dlq import MAX_PAYLOAD_BYTES, decode_dead_letter
from lakecast.kafka.serde import decode_prediction
from lakecast.testing.fuzz import CONTROL, FuzzRecord
from lakecast.testing.kafka import kafka_settings

if TYPE_CHECKING:
    from kafka.consumer.fetcher import ConsumerRecord


@dataclass(frozen=True, slots=True)
class Placed:
    """Where the broker wrote a record, or why it refused it."""

    partition: int = -1
    offset: int = -1
    error: str | None = None


def send_records(
    cluster: KafkaSettings | str, topic: str, records: Sequence[FuzzRecord]
) -> list[Placed]:
    """Produce ``records`` in order, idempotently; per record where it landed (send futures)."""
    producer = build_producer(
        kafka_settings(cluster),
        mode="at_least_once",
        client_id="lakecast-fuzz-producer",
        linger_ms=10,
        batch_size=512 * 1024,
        max_request_size=2 * 1024 * 1024,
    )
    try:
        futures = [producer.send(topic, key=r.key, value=r.value) for r in records]
        producer.flush()
        placed = []
        for future in futures:
            try:
                meta = future.get(timeout=60)
            except Exception as exc:  # the broker refused this record: it is no input
                placed.append(Placed(error=repr(exc)))
            else:
                placed.append(Placed(meta.partition, meta.offset))
        return placed
    finally:
        producer.close()


@dataclass
class Ledger:
    """Every input and what became of it: predictions, dead letters, and what is wrong."""

    records: dict[tuple[int, int], FuzzRecord]
    refused: list[tuple[FuzzRecord, str]] = field(default_factory=list)
    outcomes: dict[int, list[str]] = field(default_factory=dict)
    predictions: int = 0
    dead_letters: int = 0
    dead_letter_kinds: Counter[str] = field(default_factory=Counter)
    # The first input of each dead-letter kind, and the dead letter's message.
    kind_examples: dict[str, tuple[FuzzRecord, str]] = field(default_factory=dict)
    out_of_range: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    payload_mismatch: list[str] = field(default_factory=list)

    @property
    def by_index(self) -> dict[int, FuzzRecord]:
        return {r.index: r for r in self.records.values()}

    @property
    def lost(self) -> list[FuzzRecord]:
        return [r for r in self.records.values() if not self.outcomes.get(r.index)]

    @property
    def duplicated(self) -> list[FuzzRecord]:
        return [r for r in self.records.values() if len(self.outcomes.get(r.index, ())) > 1]

    @property
    def controls_dead_lettered(self) -> list[FuzzRecord]:
        return [
            r
            for r in self.records.values()
            if r.kind == CONTROL and any(o != "prediction" for o in self.outcomes.get(r.index, ()))
        ]

    def by_family(self) -> dict[str, Counter[str]]:
        """Per family of input: inputs, predictions, dead letters, lost, duplicated."""
        table: dict[str, Counter[str]] = {}
        for record in self.records.values():
            row = table.setdefault(record.family, Counter())
            outcomes = self.outcomes.get(record.index, [])
            row["inputs"] += 1
            row["predictions"] += outcomes.count("prediction")
            row["dead letters"] += sum(o != "prediction" for o in outcomes)
            row["lost"] += not outcomes
            row["duplicated"] += len(outcomes) > 1
        return table

    def violations(self, limit: int = 20) -> list[str]:
        """One line per broken promise (at most ``limit`` of each sort), naming the input."""
        lines: list[str] = []

        def add(what: str, items: Sequence[str]) -> None:
            lines.extend(f"{what}: {item}" for item in items[:limit])
            if len(items) > limit:
                lines.append(f"{what}: ... and {len(items) - limit} more")

        add("lost", [r.describe() for r in self.lost])
        add(
            "duplicated",
            [f"{r.describe()} -> {self.outcomes[r.index]}" for r in self.duplicated],
        )
        add("score out of [0, 1]", self.out_of_range)
        add("output of no input", self.unexpected)
        add(
            "control dead-lettered",
            [f"{r.describe()} -> {self.outcomes[r.index]}" for r in self.controls_dead_lettered],
        )
        add("dead letter payload differs from its input", self.payload_mismatch)
        return lines


def account(
    records: Sequence[FuzzRecord],
    placed: Sequence[Placed],
    predictions: Iterable[ConsumerRecord],
    dead_letters: Iterable[ConsumerRecord],
    events_topic: str,
) -> Ledger:
    """Map every output back to its input: a prediction by its ``event_id``, a dead letter by
    its ``source``; the ledger lists what was lost, duplicated, out of range or unexplained."""
    ledger = Ledger(records={})
    by_event_id: dict[str, FuzzRecord] = {}
    for record, where in zip(records, placed, strict=True):
        if where.error is not None:
            ledger.refused.append((record, where.error))
            continue
        ledger.records[(where.partition, where.offset)] = record
        if record.event_id is not None:
            if record.event_id in by_event_id:
                first = by_event_id[record.event_id].index
                msg = (
                    f"account: inputs #{first} and #{record.index} share the event_id "
                    f"{record.event_id[:80]!r}: their predictions cannot be told apart"
                )
                raise ValueError(msg)
            by_event_id[record.event_id] = record
    for output in predictions:
        ledger.predictions += 1
        try:
            prediction = decode_prediction(output.value)
        except InvalidRecordError as exc:
            ledger.unexpected.append(f"undecodable prediction at {output.offset}: {exc}")
            continue
        source = by_event_id.get(prediction.event_id)
        if source is None:
            ledger.unexpected.append(f"prediction for event_id {prediction.event_id[:80]!r}")
        else:
            ledger.outcomes.setdefault(source.index, []).append("prediction")
        score = prediction.score
        if not (math.isfinite(score) and 0.0 <= score <= 1.0):
            origin = source.describe() if source else repr(prediction.event_id[:80])
            ledger.out_of_range.append(f"score {score!r} for {origin}")
    for output in dead_letters:
        ledger.dead_letters += 1
        try:
            letter = decode_dead_letter(output.value)
        except InvalidRecordError as exc:
            ledger.unexpected.append(f"undecodable dead letter at {output.offset}: {exc}")
            continue
        ledger.dead_letter_kinds[letter.kind] += 1
        found = ledger.records.get((letter.partition, letter.offset))
        if letter.topic != events_topic or found is None:
            ledger.unexpected.append(
                f"dead letter of {letter.topic}:{letter.partition}@{letter.offset} ({letter.kind})"
            )
            continue
        ledger.outcomes.setdefault(found.index, []).append(f"dead_letter:{letter.kind}")
        ledger.kind_examples.setdefault(letter.kind, (found, letter.message))
        if letter.payload != (found.value or b"")[:MAX_PAYLOAD_BYTES]:
            ledger.payload_mismatch.append(found.describe())
    return ledger
