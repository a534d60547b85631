"""The loop's pure parts: isolating a failing record, offsets to commit, collecting a batch,
stop signals."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any, NamedTuple

import orjson
import pytest
from kafka.errors import InvalidRecordError as BrokerInvalidRecordError
from kafka.errors import KafkaError, KafkaTimeoutError, MessageSizeTooLargeError
from kafka.structs import MemberState, OffsetAndMetadata, TopicPartition

from lakecast.errors import StreamError
from lakecast.kafka.batch import BatchResult, OutputRecord, first_offsets, next_offsets
from lakecast.kafka.delivery import OutputRejectedError, check_sent, rejected
from lakecast.kafka.dlq import OUTPUT_REJECTED, OUTPUT_TOO_LARGE, DeadLetter
from lakecast.kafka.loop import BatchLimit, _Buffer, _collect
from lakecast.kafka.poison import _run_batch, process_isolating, run_splitting, unproducible
from lakecast.kafka.shutdown import install_stop_handlers


class Record(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def _records() -> list[Any]:
    return [Record("t", i % 2, 10 + i, None, f"v{i}".encode()) for i in range(6)]


def echo_unless_poisoned(records: list[Any]) -> BatchResult:
    if any(r.value == b"v3" for r in records):
        msg = "model failed on v3"
        raise ValueError(msg)
    return BatchResult([OutputRecord("out", r.value) for r in records])


def test_a_batch_that_works_is_processed_once() -> None:
    calls: list[int] = []

    def process(records: list[Any]) -> BatchResult:
        calls.append(len(records))
        return echo_unless_poisoned([r for r in records if r.value != b"v3"])

    result, isolated = process_isolating(process, _records())
    assert not isolated
    assert calls == [6]
    assert [o.value for o in result.outputs] == [b"v0", b"v1", b"v2", b"v4", b"v5"]


def test_a_failing_batch_is_split_and_only_the_bad_record_is_dead() -> None:
    result, isolated = process_isolating(echo_unless_poisoned, _records())
    assert isolated
    assert [o.value for o in result.outputs] == [b"v0", b"v1", b"v2", b"v4", b"v5"]
    assert [(d.record.offset, d.kind, d.message) for d in result.dead_letters] == [
        (13, "ValueError", "model failed on v3")
    ]


def test_notes_of_a_split_batch_come_from_the_calls_that_returned() -> None:
    # The worker's metrics travel as notes: the call that raised for the whole batch left
    # none, so each record is counted once, by its own call.
    def noting(records: list[Any]) -> BatchResult:
        result = echo_unless_poisoned(records)
        result.notes.append([r.offset for r in records])
        return result

    result, isolated = process_isolating(noting, _records())
    assert isolated
    assert result.notes == [[10], [11], [12], [14], [15]]


class _Delivery:
    """The producer side of a batch, kept in memory: what was sent, nothing committed."""

    def __init__(self) -> None:
        self.producer = self
        self.sent: list[str] = []

    def send(self, topic: str, **_: Any) -> None:
        self.sent.append(topic)

    def begin(self) -> None: ...

    def commit(self, offsets: Any, sent: Any) -> None: ...


def test_a_report_names_the_kind_of_every_dead_letter_of_a_split_batch() -> None:
    # The worker counts dead letters by kind from the report: those made by
    # process_isolating for a record that raised alone must be there too.
    def process(records: list[Any]) -> BatchResult:
        result = echo_unless_poisoned(records)  # raises for v3 ...
        for record in records:
            if record.value == b"v5":  # ... and dead-letters v5 itself
                result.dead_letters.append(DeadLetter(record, "invalid_field", "bad v5"))
        return result

    delivery = _Delivery()
    report = _run_batch(delivery, process, _records(), "t.dlq")  # type: ignore[arg-type]
    assert report.isolated
    assert sorted(report.dead_letter_kinds) == ["ValueError", "invalid_field"]
    assert report.dead_letters == 2
    assert sorted(delivery.sent) == ["out"] * 5 + ["t.dlq"] * 2


def test_next_offsets_are_one_past_the_last_record_of_each_partition() -> None:
    assert next_offsets(_records()) == {
        TopicPartition("t", 0): OffsetAndMetadata(15, "", -1),
        TopicPartition("t", 1): OffsetAndMetadata(16, "", -1),
    }
    assert first_offsets(_records()) == {TopicPartition("t", 0): 10, TopicPartition("t", 1): 11}


class ScriptedConsumer:
    """Answers each ``poll`` with the next scripted batch, and notes the timeouts asked for."""

    def __init__(self, *polls: list[Any]) -> None:
        self.polls = list(polls)
        self.timeouts: list[int] = []

    def poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
        self.timeouts.append(timeout_ms)
        records = self.polls.pop(0)[:max_records] if self.polls else []
        return {TopicPartition("t", 0): records} if records else {}

    def group_metadata(self) -> Any:
        return type("Metadata", (), {"state": MemberState.STABLE})()

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition("t", 0)}


def _collected(consumer: ScriptedConsumer, max_batch: int, top_up_ms: int = 3) -> list[int]:
    buffer = _Buffer()
    batch = _collect(consumer, buffer, max_batch, 50, top_up_ms, threading.Event())  # type: ignore[arg-type]
    return [record.offset for record in batch]


def test_a_batch_is_topped_up_once_by_a_short_fetch() -> None:
    records = [Record("t", 0, i, None, b"v") for i in range(4)]
    consumer = ScriptedConsumer(records[:2], records[2:3], records[3:])
    assert _collected(consumer, max_batch=10) == [0, 1, 2]
    assert consumer.timeouts[1:] == [3]  # the first waited up to max_wait_ms
    assert 0 < consumer.timeouts[0] <= 50


def test_a_full_batch_is_not_topped_up_and_no_top_up_means_no_wait() -> None:
    records = [Record("t", 0, i, None, b"v") for i in range(4)]
    consumer = ScriptedConsumer(records[:2], records[2:])
    assert _collected(consumer, max_batch=2) == [0, 1]
    assert len(consumer.timeouts) == 1
    consumer = ScriptedConsumer(records[:2], records[2:])
    assert _collected(consumer, max_batch=10, top_up_ms=0) == [0, 1, 2, 3]
    assert consumer.timeouts[1:] == [0]


def test_an_idle_wait_ends_empty_at_max_wait() -> None:
    consumer = ScriptedConsumer()
    assert _collected(consumer, max_batch=10) == []
    assert consumer.timeouts[-1] == 0


def test_a_backlog_is_taken_in_batches_that_double_up_to_the_most() -> None:
    limit = BatchLimit(most=2000)
    sizes = []
    for _ in range(5):  # a lasting backlog: every batch comes full
        sizes.append(limit.current)
        limit.taken(limit.current)
    assert sizes == [500, 1000, 2000, 2000, 2000]
    limit.taken(120)  # caught up
    assert limit.current == 500
    small = BatchLimit(most=64)
    small.taken(64)
    assert (small.start, small.current) == (64, 64)


def test_sigterm_sets_the_stop_event_and_handlers_are_restored() -> None:
    stop = threading.Event()
    before = signal.getsignal(signal.SIGTERM)
    restore = install_stop_handlers(stop)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(2.0)
        with pytest.raises(SystemExit) as caught:
            os.kill(os.getpid(), signal.SIGTERM)  # a second signal while stopping
        assert caught.value.code == 128 + signal.SIGTERM
    finally:
        restore()
    assert signal.getsignal(signal.SIGTERM) == before


# ---- an output that cannot be produced dead-letters its one input (issue 13) -------------


class _Transactions:
    """A delivery whose producer refuses records as kafka-python and the broker do.

    ``send`` raises MessageSizeTooLargeError for a record over ``max_request_size`` (as
    kafka-python does, before sending); ``commit`` fails with OutputRejectedError if the
    transaction holds a value in ``refused`` (as a broker's record-level error would), with
    KafkaTimeoutError from the ``fail_commit``-th commit on, with OutputRejectedError for a
    dead letter over ``dlq_limit`` bytes; what commits is kept.
    """

    def __init__(
        self,
        *,
        max_request_size: int = 1_000,
        refused: frozenset[bytes] = frozenset(),
        fail_commit: int | None = None,
        dlq_limit: int = 1_000_000,
    ) -> None:
        self.producer = self
        self.dlq_limit = dlq_limit
        self.max_request_size = max_request_size
        self.refused = refused
        self.fail_commit = fail_commit
        self.open: list[tuple[str, bytes | None]] | None = None
        self.committed: list[list[tuple[str, bytes | None]]] = []
        self.offsets: list[dict[TopicPartition, OffsetAndMetadata]] = []
        self.aborts = 0
        self.recovered = 0  # after each refusal by the broker (not by the client)

    def send(self, topic: str, *, value: Any, key: Any = None, headers: Any = None) -> None:
        assert self.open is not None, "send outside a transaction"
        if len(value) + len(key or b"") > self.max_request_size:
            raise MessageSizeTooLargeError("record over max_request_size")
        self.open.append((topic, value))

    def begin(self) -> None:
        assert self.open is None, "a transaction is already open"
        self.open = []

    def commit(self, offsets: Any, sent: Any) -> None:
        assert self.open is not None
        if self.fail_commit is not None and len(self.committed) + 1 >= self.fail_commit:
            raise KafkaTimeoutError("broker away")
        if any(topic != "t.dlq" and value in self.refused for topic, value in self.open):
            raise rejected(BrokerInvalidRecordError("refused by the broker"), by_broker=True)
        if any(
            topic == "t.dlq" and len(value or b"") > self.dlq_limit for topic, value in self.open
        ):
            raise rejected(MessageSizeTooLargeError("over the topic's limit"), by_broker=True)
        self.committed.append(self.open)
        self.offsets.append(dict(offsets))
        self.open = None

    def abort(self) -> None:
        self.aborts += int(self.open is not None)
        self.open = None

    def recover(self) -> None:
        assert self.open is None, "recover inside a transaction"
        self.recovered += 1

    def outputs(self) -> list[bytes | None]:
        return [v for txn in self.committed for topic, v in txn if topic == "out"]

    def letters(self) -> list[dict[str, Any]]:
        return [
            orjson.loads(v or b"") for t in self.committed for topic, v in t if topic == "t.dlq"
        ]


def _batch(count: int = 8) -> list[Any]:
    return [Record("t", i % 2, 10 + i, b"k", f"v{i}".encode()) for i in range(count)]


def _echo(*, sourced: bool = True, big: bytes = b"", size: int = 2_000) -> Any:
    """One output per record, its value the record's; the one of value ``big`` is ``size``
    bytes; with ``sourced`` each output names its record."""

    def process(records: list[Any]) -> BatchResult:
        calls.append([r.offset for r in records])
        return BatchResult(
            [
                OutputRecord(
                    "out",
                    b"x" * size if r.value == big else r.value,
                    None,
                    (),
                    r if sourced else None,
                )
                for r in records
            ]
        )

    calls: list[list[int]] = []
    process.calls = calls  # type: ignore[attr-defined]
    return process


def _split(delivery: _Transactions, process: Any, batch: list[Any]) -> list[Any]:
    committed: list[Any] = []
    run_splitting(delivery, process, batch, "t.dlq", delivery.max_request_size, committed)  # type: ignore[arg-type]
    return committed


def test_an_output_over_max_request_size_dead_letters_its_input_before_the_transaction() -> None:
    delivery = _Transactions()
    process = _echo(big=b"v5")
    reports = _split(delivery, process, _batch())
    assert process.calls == [[10, 11, 12, 13, 14, 15, 16, 17]]  # no split, no second pass
    assert delivery.aborts == 0
    assert len(reports) == 1
    assert not reports[0].split
    assert reports[0].dead_letter_kinds == (OUTPUT_TOO_LARGE,)
    assert delivery.outputs() == [f"v{i}".encode() for i in range(8) if i != 5]
    [letter] = delivery.letters()
    assert letter["source"]["offset"] == 15
    assert "2000 bytes" in letter["error"]["message"]
    assert "max_request_size of 1000" in letter["error"]["message"]


def test_every_output_of_an_input_goes_when_one_of_them_cannot_be_produced() -> None:
    def process(records: list[Any]) -> BatchResult:
        outputs = [OutputRecord("out", r.value, None, (), r) for r in records]
        outputs.append(OutputRecord("out", 5_000 * b"y", None, (), records[1]))
        return BatchResult(outputs)

    found = unproducible(process(_batch(3)), 1_000)
    assert [(source.offset, kind) for source, kind, _ in found] == [(11, OUTPUT_TOO_LARGE)]
    delivery = _Transactions()
    _split(delivery, process, _batch(3))
    assert delivery.outputs() == [b"v0", b"v2"]


def test_an_output_that_is_not_bytes_is_rejected_by_its_input() -> None:
    def process(records: list[Any]) -> BatchResult:
        return BatchResult([OutputRecord("out", r.offset, None, (), r) for r in records[:1]])

    [(source, kind, message)] = unproducible(process(_batch(2)), 1_000)
    assert (source.offset, kind) == (10, OUTPUT_REJECTED)
    assert "int, not bytes" in message


def test_a_refused_output_without_a_source_is_found_by_splitting_the_batch() -> None:
    delivery = _Transactions()
    process = _echo(sourced=False, big=b"v5")
    reports = _split(delivery, process, _batch())
    # Halves: [0-3] commits; [4-7] fails; [4,5] fails; [4] commits; [5] is the one.
    assert delivery.outputs() == [f"v{i}".encode() for i in range(8) if i != 5]
    assert [letter["error"]["kind"] for letter in delivery.letters()] == [OUTPUT_TOO_LARGE]
    assert delivery.letters()[0]["source"]["offset"] == 15
    assert all(report.split for report in reports)
    assert sum(report.records for report in reports) == 8
    assert delivery.aborts == 4  # the batch, [4-7], [4, 5], then [5] alone
    assert delivery.recovered == 0  # kafka-python refused it before sending


def test_a_record_the_broker_refuses_is_found_and_only_it_is_dead_lettered() -> None:
    batch = _batch(16)
    delivery = _Transactions(refused=frozenset({b"v3", b"v12"}))
    reports = _split(delivery, _echo(), batch)
    outputs = delivery.outputs()
    assert sorted(outputs) == sorted(f"v{i}".encode() for i in range(16) if i not in (3, 12))
    assert len(outputs) == len(set(outputs))
    letters = delivery.letters()
    assert [(x["error"]["kind"], x["source"]["offset"]) for x in letters] == [
        (OUTPUT_REJECTED, 13),
        (OUTPUT_REJECTED, 22),
    ]
    assert "refused by the broker" in letters[0]["error"]["message"]
    assert delivery.recovered == delivery.aborts > 0
    # The transactions commit the batch in order: each partition's offsets only move on.
    position: dict[TopicPartition, int] = {}
    for offsets in delivery.offsets:
        for tp, meta in offsets.items():
            assert meta.offset > position.get(tp, 0)
            position[tp] = meta.offset
    assert position == {tp: meta.offset for tp, meta in next_offsets(batch).items()}
    assert sum(r.records for r in reports) == 16


def test_a_broker_failure_while_split_leaves_a_committed_prefix() -> None:
    delivery = _Transactions(refused=frozenset({b"v6"}), fail_commit=2)
    committed: list[Any] = []
    with pytest.raises(KafkaTimeoutError):
        run_splitting(delivery, _echo(), _batch(), "t.dlq", 1_000, committed)  # type: ignore[arg-type]
    assert [r.records for r in committed] == [4]  # [0-3]; then the broker went away
    assert delivery.outputs() == [b"v0", b"v1", b"v2", b"v3"]


def test_a_dead_letter_the_dlq_refuses_goes_again_without_its_payload() -> None:
    value = b"v" * 600  # its dead letter holds 800 bytes of base64, the topic takes 600
    delivery = _Transactions(max_request_size=5_000, refused=frozenset({value}), dlq_limit=600)
    [report] = _split(delivery, _echo(), [Record("t", 0, 7, b"k", value)])
    assert report.dead_letter_kinds == (OUTPUT_REJECTED,)
    [letter] = delivery.letters()
    assert letter["payload_b64"] == ""
    assert letter["payload_omitted"] is True
    assert letter["payload_size"] == 600
    assert letter["source"]["offset"] == 7


def test_a_dlq_that_refuses_even_a_bare_dead_letter_stops_the_loop() -> None:
    class Refusing(_Transactions):
        def commit(self, offsets: Any, sent: Any) -> None:
            raise rejected(MessageSizeTooLargeError("the dead-letter topic takes nothing"))

    with pytest.raises(StreamError, match="refuses even a dead letter without its payload"):
        _split(Refusing(), _echo(), _batch(1))


def test_check_sent_names_the_refused_record_not_its_batch_neighbours() -> None:
    class Future:
        def __init__(self, exc: BaseException | None) -> None:
            self.is_done = True
            self.exception = exc

        def failed(self) -> bool:
            return self.exception is not None

    neighbour = KafkaError("part of a batch which had invalid records")
    with pytest.raises(OutputRejectedError) as caught:
        check_sent([Future(None), Future(neighbour), Future(MessageSizeTooLargeError("big"))])
    assert caught.value.too_large
    with pytest.raises(KafkaError) as other:
        check_sent([Future(None), Future(KafkaTimeoutError("slow"))])
    assert not isinstance(other.value, OutputRejectedError)


def test_outputs_with_bad_or_large_headers_are_judged_with_them() -> None:
    [first, second, third] = _batch(3)
    result = BatchResult(
        [
            OutputRecord("out", b"v", None, (("h", b"x" * 2_000),), first),
            OutputRecord("out", b"v", None, ((1, b"x"),), second),  # type: ignore[arg-type]
            OutputRecord("out", b"v", b"k", (("h", b"small"),), third),
        ]
    )
    found = {
        source.offset: (kind, message) for source, kind, message in unproducible(result, 1_000)
    }
    assert found[10][0] == OUTPUT_TOO_LARGE
    assert "headers 2001" in found[10][1]
    assert found[11] == (OUTPUT_REJECTED, "output to 'out': headers must be (str, bytes) pairs")
    assert 12 not in found


class _RefusingProducer:
    """kafka-python after the broker refused a record of the open transaction: every later
    send raises a plain KafkaError that carries the refusal."""

    def __init__(self, cause: object) -> None:
        self.cause = cause

    def send(self, *args: Any, **kwargs: Any) -> None:
        msg = "Cannot perform send because at least one previous transactional request failed"
        raise KafkaError(msg, self.cause)


@pytest.mark.parametrize("cause", [MessageSizeTooLargeError("too big"), MessageSizeTooLargeError])
def test_a_send_refused_for_an_earlier_refusal_is_about_a_record(cause: object) -> None:
    from lakecast.kafka.poison import _send

    result = BatchResult(outputs=[OutputRecord("out", b"v")])
    with pytest.raises(OutputRejectedError) as info:
        _send(_RefusingProducer(cause), result, "dlq")  # type: ignore[arg-type]
    assert info.value.by_broker
    assert info.value.too_large


def test_a_send_refused_for_a_broker_fault_stays_a_broker_fault() -> None:
    from lakecast.kafka.poison import _send

    result = BatchResult(outputs=[OutputRecord("out", b"v")])
    with pytest.raises(KafkaError) as info:
        _send(_RefusingProducer(KafkaTimeoutError("late")), result, "dlq")  # type: ignore[arg-type]
    assert not isinstance(info.value, OutputRejectedError)


class _Manager:
    def __init__(self, state: object, epoch: int) -> None:
        from kafka.producer.transaction_manager import ProducerIdAndEpoch

        self._current_state = state
        self.producer_id_and_epoch = ProducerIdAndEpoch(7, epoch)

    def is_bumping_epoch(self) -> bool:
        return False


class _TransactionalProducer:
    """What ExactlyOnce reads of kafka-python's transactional producer, after an error."""

    def __init__(self) -> None:
        from kafka.producer.transaction_manager import TransactionState

        self.config = {"transactional_id": "t-1", "request_timeout_ms": 1000}
        self._transaction_manager = _Manager(TransactionState.IN_TRANSACTION, epoch=3)
        self.aborted = 0
        self.undrained_aborted = 0
        outer = self

        class _Accumulator:
            def abort_undrained_batches(self, error: BaseException) -> None:
                outer.undrained_aborted += 1

        self._accumulator = _Accumulator()

    def begin_transaction(self) -> None:
        return None

    def abort_transaction(self) -> None:
        self.aborted += 1

    def end_as(self, state_name: str, epoch: int) -> None:
        from kafka.producer.transaction_manager import TransactionState

        self._transaction_manager = _Manager(getattr(TransactionState, state_name), epoch)


def _delivery(producer: _TransactionalProducer) -> Any:
    from lakecast.kafka.delivery import ExactlyOnce

    delivery = ExactlyOnce(producer, consumer=None)  # type: ignore[arg-type]
    delivery.begin()
    return delivery


def test_an_open_transaction_is_aborted() -> None:
    producer = _TransactionalProducer()
    _delivery(producer).abort()
    assert producer.aborted == 1


def test_a_transaction_an_epoch_bump_ended_is_not_aborted_again() -> None:
    producer = _TransactionalProducer()
    delivery = _delivery(producer)
    producer.end_as("READY", epoch=4)  # kafka-python bumped the epoch: the broker aborted it
    delivery.abort()
    assert (producer.aborted, producer.undrained_aborted) == (0, 1)


def test_a_transaction_that_committed_after_its_commit_raised_is_never_redone() -> None:
    from lakecast.kafka.delivery import FatalDeliveryError

    producer = _TransactionalProducer()
    delivery = _delivery(producer)
    producer.end_as("READY", epoch=3)  # same epoch, no transaction open: it was committed
    with pytest.raises(FatalDeliveryError, match="committed after its commit raised"):
        delivery.abort()
    assert producer.aborted == 0
