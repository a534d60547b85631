"""One bad record never stalls its partition: how a batch is committed in spite of it.

:func:`run_splitting` processes a batch and commits it as one transaction (see
:mod:`lakecast.kafka.delivery`). ``process`` reports records it cannot handle as dead
letters, and if ``process`` raises for a whole batch, each record is processed alone so
that only the one that fails goes to the dead-letter topic (:func:`process_isolating`). The
same holds for an output that cannot be produced (too large, not bytes, refused by the
broker for what it holds): one over the producer's ``max_request_size`` whose
:attr:`~lakecast.kafka.batch.OutputRecord.source` is known is dead-lettered before the
transaction begins (:func:`unproducible`); any other makes the commit fail with
:class:`~lakecast.kafka.delivery.OutputRejectedError`, and the batch is split in halves, each
processed and committed as its own transaction, until the one input is found and
dead-lettered (``output_too_large`` / ``output_rejected``). What is not about one record (a
broker away, a fenced producer) is raised for the loop to retry or end on, as is a
dead-letter topic that refuses even a dead letter without its payload.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from kafka import KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError
from kafka.producer.future import FutureRecordMetadata

from lakecast.errors import StreamError
from lakecast.kafka.batch import BatchReport, BatchResult, OutputRecord, Process, next_offsets
from lakecast.kafka.delivery import RECORD_ERRORS, Delivery, OutputRejectedError, rejected
from lakecast.kafka.dlq import (
    OUTPUT_REJECTED,
    OUTPUT_TOO_LARGE,
    DeadLetter,
    SourceRecord,
    dead_letter_key,
    dead_letter_value,
)

log = logging.getLogger(__name__)

# What a record adds to its key, value and headers in a request (kafka-python's estimate for
# one record: a 61-byte batch header and up to ~25 bytes of lengths and deltas), rounded up.
RECORD_OVERHEAD_BYTES = 128


def process_isolating(process: Process, records: list[ConsumerRecord]) -> tuple[BatchResult, bool]:
    """Run ``process`` on the batch; if it raises, run it on each record alone.

    Returns:
        The result, and whether the batch had to be split. A record for which ``process``
        raises on its own becomes a dead letter carrying the exception's class and message.
    """
    try:
        return process(records), False
    except Exception:
        log.warning("process failed for a batch of %d records; isolating", len(records))
    result = BatchResult()
    for record in records:
        try:
            result.extend(process([record]))
        except Exception as exc:
            result.dead_letters.append(DeadLetter.from_exception(record, exc))
    return result, True


def _send(
    producer: KafkaProducer, result: BatchResult, dlq_topic: str, *, with_payload: bool = True
) -> list[FutureRecordMetadata]:
    """Send ``result``'s outputs and dead letters; a record refused for what it is (see
    :data:`~lakecast.kafka.delivery.RECORD_ERRORS`) raises :class:`OutputRejectedError`."""
    try:
        sent = [
            producer.send(
                out.topic,
                value=out.value,
                key=out.key,
                headers=list(out.headers) if out.headers else None,
            )
            for out in result.outputs
        ]
        for letter in result.dead_letters:
            value = dead_letter_value(letter, with_payload=with_payload)
            key = dead_letter_key(letter) if with_payload else None
            sent.append(producer.send(dlq_topic, value=value, key=key))
    except RECORD_ERRORS as exc:  # over max_request_size: kafka-python checks in send
        raise rejected(exc) from exc
    except (TypeError, ValueError) as exc:  # a key or value that is not bytes, or both None
        msg = f"output record refused: {exc!r}"
        raise OutputRejectedError(msg, too_large=False) from exc
    except KafkaError as exc:
        # The broker refused an earlier record of this transaction while we were still
        # sending: kafka-python then refuses every send with a plain KafkaError carrying that
        # refusal, which is about one record, not about the broker.
        cause = exc.args[1] if len(exc.args) > 1 else None
        if isinstance(cause, RECORD_ERRORS):
            raise rejected(cause, by_broker=True) from exc
        if isinstance(cause, type) and issubclass(cause, RECORD_ERRORS):
            raise rejected(cause(), by_broker=True) from exc
        raise
    return sent


def unproducible(result: BatchResult, max_request_size: int) -> list[tuple[SourceRecord, str, str]]:
    """Inputs of ``result`` with an output that cannot be produced: ``(source, kind,
    message)`` for each, found before anything is sent. Outputs without a ``source`` are not
    looked at (their send fails instead)."""
    room = max_request_size - RECORD_OVERHEAD_BYTES
    # One pass over every output (the common case finds none); the exact reason only for those.
    suspects = [
        out
        for out in result.outputs
        if type(out.value) is not bytes
        or (out.key is not None and type(out.key) is not bytes)
        or out.headers
        or len(out.value) + (len(out.key) if out.key else 0) > room
    ]
    found: dict[int, tuple[SourceRecord, str, str]] = {}
    for out in suspects:
        if out.source is None or id(out.source) in found:
            continue
        reason = _refusal(out, room, max_request_size)
        if reason is not None:
            found[id(out.source)] = (out.source, *reason)
    return list(found.values())


def _refusal(out: OutputRecord, room: int, max_request_size: int) -> tuple[str, str] | None:
    where = f"output to {out.topic!r}"
    if not isinstance(out.value, bytes | bytearray | memoryview):
        return OUTPUT_REJECTED, f"{where}: value is {type(out.value).__name__}, not bytes"
    if out.key is not None and not isinstance(out.key, bytes | bytearray | memoryview):
        return OUTPUT_REJECTED, f"{where}: key is {type(out.key).__name__}, not bytes"
    try:
        headers = sum(len(name.encode()) + len(value) for name, value in out.headers)
    except (AttributeError, TypeError, ValueError):
        return OUTPUT_REJECTED, f"{where}: headers must be (str, bytes) pairs"
    size = len(out.value) + len(out.key or b"") + headers
    if size > room:
        message = (
            f"{where} is {size} bytes (key {len(out.key or b'')}, value {len(out.value)}, "
            f"headers {headers}), over the producer's max_request_size of {max_request_size}"
        )
        return OUTPUT_TOO_LARGE, message
    return None


def _dead_letter_unproducible(result: BatchResult, max_request_size: int) -> None:
    """Replace the outputs of each input with an unproducible output by a dead letter."""
    found = unproducible(result, max_request_size)
    if not found:
        return
    gone = {id(source) for source, _, _ in found}
    result.outputs = [out for out in result.outputs if id(out.source) not in gone]
    for source, kind, message in found:
        log.warning(
            "dead-lettering %s[%d]@%d: %s", source.topic, source.partition, source.offset, message
        )
        result.dead_letters.append(DeadLetter(source, kind, message))


def _run_batch(
    delivery: Delivery,
    process: Process,
    batch: list[ConsumerRecord],
    dlq_topic: str,
    max_request_size: int | None = None,
) -> BatchReport:
    """Process ``batch`` and commit it as one transaction.

    Raises:
        OutputRejectedError: an output cannot be produced (the transaction is left open:
            the caller aborts).
    """
    started = time.perf_counter()
    result, isolated = process_isolating(process, batch)
    if max_request_size is not None:
        _dead_letter_unproducible(result, max_request_size)
    processed = time.perf_counter()
    _deliver(delivery, result, batch, dlq_topic)
    return BatchReport(
        records=len(batch),
        outputs=len(result.outputs),
        dead_letters=len(result.dead_letters),
        isolated=isolated,
        process_s=processed - started,
        commit_s=time.perf_counter() - processed,
        notes=tuple(result.notes),
        dead_letter_kinds=tuple(letter.kind for letter in result.dead_letters),
    )


def _deliver(
    delivery: Delivery,
    result: BatchResult,
    batch: list[ConsumerRecord],
    dlq_topic: str,
    *,
    with_payload: bool = True,
) -> None:
    delivery.begin()
    sent = _send(delivery.producer, result, dlq_topic, with_payload=with_payload)
    delivery.commit(next_offsets(batch), sent)


def run_splitting(
    delivery: Delivery,
    process: Process,
    batch: list[ConsumerRecord],
    dlq_topic: str,
    max_request_size: int | None,
    committed: list[BatchReport],
) -> None:
    """Process and commit ``batch``; if an output cannot be produced, split the batch in
    halves, each processed and committed as its own transaction, recursively, until the one
    input is found and dead-lettered (as :func:`process_isolating` does for ``process``).

    A report is appended to ``committed`` for each transaction committed. They commit the
    batch's records in order, so what they hold is a prefix of ``batch`` (per partition too,
    since a batch holds each partition's records in offset order): after a broker failure
    the rest of the batch is what must be read again.

    Raises:
        KafkaError: the broker failed (``committed`` says what was committed before).
        StreamError: the dead-letter topic refuses even a dead letter without its payload.
    """
    try:
        committed.append(_run_batch(delivery, process, batch, dlq_topic, max_request_size))
        return
    except OutputRejectedError as exc:
        delivery.abort()
        if exc.by_broker:
            delivery.recover()
        if len(batch) == 1:
            committed.append(_dead_letter_alone(delivery, batch[0], exc, dlq_topic))
            return
        log.warning("batch of %d: %s; splitting it to find the input", len(batch), exc)
    half = len(batch) // 2
    for part in (batch[:half], batch[half:]):
        before = len(committed)
        run_splitting(delivery, process, part, dlq_topic, max_request_size, committed)
        for i in range(before, len(committed)):
            committed[i] = replace(committed[i], split=True)


def _dead_letter_alone(
    delivery: Delivery, record: ConsumerRecord, cause: OutputRejectedError, dlq_topic: str
) -> BatchReport:
    """Commit a dead letter for ``record``, whose output was refused, with its offset."""
    started = time.perf_counter()
    kind = OUTPUT_TOO_LARGE if cause.too_large else OUTPUT_REJECTED
    letter = DeadLetter(record, kind, f"an output of this record cannot be produced: {cause}")
    log.warning(
        "dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, cause
    )
    result = BatchResult(dead_letters=[letter])
    try:
        _deliver(delivery, result, [record], dlq_topic)
    except OutputRejectedError as exc:
        # Only the dead letter was sent: the dead-letter topic refused it (a smaller
        # max.message.bytes). Once more, without the payload.
        delivery.abort()
        if exc.by_broker:
            delivery.recover()
        log.warning("dead letter refused (%s); sending it without its payload", exc)
        try:
            _deliver(delivery, result, [record], dlq_topic, with_payload=False)
        except OutputRejectedError as again:
            delivery.abort()
            msg = (
                f"dead-letter topic {dlq_topic!r} refuses even a dead letter without its "
                f"payload ({again}); input {record.topic}[{record.partition}]@{record.offset}"
            )
            raise StreamError(msg) from again
    return BatchReport(
        records=1,
        outputs=0,
        dead_letters=1,
        isolated=False,
        process_s=0.0,
        commit_s=time.perf_counter() - started,
        dead_letter_kinds=(kind,),
    )
