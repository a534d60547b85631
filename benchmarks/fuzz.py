"""Fuzzing the inference worker at volume: fuzzed and valid events through one real worker.

The records are lakecast.testing.fuzz's (the generator tests/integration/test_worker_fuzz.py
uses): hypothesis mutations of every field of the ``events`` contract and of whole records,
every ``--control-every``-th record a valid event. They are written to a fresh topic, one
worker (exactly once, the default config) drains it, and the ledger maps every prediction and
dead letter back to the input it came from. Printed: inputs, predictions, dead letters, lost,
duplicated, scores out of range, whether the worker is alive (it must then score one more
event), the dead letters by kind and the outcome per family of input, and the wall time. The
numbers are printed whatever they are; the exit status is 1 when the invariant broke.

    .venv/bin/python benchmarks/fuzz.py                       # local broker, 100,000 records
    .venv/bin/python benchmarks/fuzz.py --records 20000 --bootstrap host:9092
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid

import orjson
from streaming_pipes import PipeContext, broker, build_inference_worker  # benchmarks/

from lakecast.config import KafkaSettings, settings
from lakecast.kafka.batch import BatchReport
from lakecast.kafka.clients import TopicSpec, build_admin, ensure_topics
from lakecast.testing.events import event_value
from lakecast.testing.fuzz import CONTROL, generate
from lakecast.testing.kafka import produce, read_committed
from lakecast.testing.ledger import account, send_records

STALL_S = 60.0  # no commit for this long, with records left: the worker is stuck


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--control-every", type=int, default=2, help="every n-th is valid")
    parser.add_argument(
        "--large", type=int, default=8, help="records over 64 KB allowed per family of input"
    )
    parser.add_argument(
        "--distinct",
        type=int,
        default=20_000,
        help="fuzzed cases drawn (hypothesis makes ~2,000/s); more records repeat them, retagged",
    )
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--bootstrap", help="an existing cluster; default: a local broker")
    parser.add_argument("--max-batch", type=int, default=settings().serving.max_batch)
    args = parser.parse_args()

    began = time.perf_counter()
    records = generate(
        args.records,
        seed_value=args.seed,
        control_every=args.control_every,
        large_budget=args.large,
        distinct=args.distinct,
    )
    generated_s = time.perf_counter() - began
    families = {r.family for r in records} - {CONTROL}
    controls = sum(r.kind == CONTROL for r in records)
    print(
        f"{len(records):,} records ({controls:,} valid controls, {len(records) - controls:,} "
        f"fuzzed in {len(families)} families, at most {args.distinct:,} distinct), "
        f"seed {args.seed}: generated in {generated_s:.1f} s"
    )

    with broker(args.bootstrap) as bootstrap:
        run = uuid.uuid4().hex[:8]
        source, sink = f"fuzz-events-{run}", f"fuzz-predictions-{run}"
        admin = build_admin(KafkaSettings(bootstrap_servers=bootstrap))
        ensure_topics(
            admin,
            [
                TopicSpec(source, args.partitions),
                TopicSpec(sink, args.partitions),
                TopicSpec(f"{sink}.dlq"),
                TopicSpec(f"{sink}.metrics"),
            ],
        )
        admin.close()
        began = time.perf_counter()
        placed = send_records(bootstrap, source, records)
        inputs = sum(p.error is None for p in placed)
        print(
            f"broker {bootstrap}: {inputs:,} records written to {source} ({args.partitions} "
            f"partitions) in {time.perf_counter() - began:.1f} s, "
            f"{len(records) - inputs:,} refused by the broker"
        )

        ctx = PipeContext(bootstrap, source, sink, inputs, f"fuzz-{run}", args.max_batch)
        worker = build_inference_worker(ctx, source)
        stop = threading.Event()
        committed = 0
        isolated = 0
        last_commit = time.perf_counter()
        first_batch: float | None = None
        errors: list[BaseException] = []

        def count(report: BatchReport) -> None:
            nonlocal committed, last_commit, first_batch, isolated
            isolated += report.isolated
            last_commit = time.perf_counter()
            if first_batch is None:
                first_batch = last_commit - report.process_s - report.commit_s
            committed += report.records

        def serve() -> None:
            try:
                worker.run(KafkaSettings(bootstrap_servers=bootstrap), stop, count)  # type: ignore[attr-defined]
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=serve, daemon=True)
        started = time.perf_counter()
        thread.start()
        while committed < inputs and thread.is_alive():
            if time.perf_counter() - max(last_commit, started) > STALL_S:
                break
            time.sleep(0.2)
        drained_at = last_commit
        alive = thread.is_alive()
        scored_after = False
        if alive:
            final = event_value(10**9, event_id="fz-final")
            produce(bootstrap, source, [(final["user_id"].encode(), orjson.dumps(final))])
            deadline = time.perf_counter() + STALL_S
            while committed < inputs + 1 and thread.is_alive() and time.perf_counter() < deadline:
                time.sleep(0.2)
            scored_after = committed >= inputs + 1
        stop.set()
        thread.join(60)

        predictions = read_committed(bootstrap, sink, at_least=0, quiet_s=2.0)
        final_id = b'"event_id":"fz-final"'
        finals = [p for p in predictions if final_id in (p.value or b"")]
        predictions = [p for p in predictions if final_id not in (p.value or b"")]
        dead_letters = read_committed(bootstrap, f"{sink}.dlq", at_least=0, quiet_s=2.0)

    ledger = account(records, placed, predictions, dead_letters, source)
    worked_s = drained_at - (first_batch or started)
    alive_after = alive and scored_after and len(finals) == 1
    problems = ledger.violations()
    rows = [
        ("inputs", f"{len(ledger.records):,}"),
        ("predictions", f"{ledger.predictions:,}"),
        ("dead letters", f"{ledger.dead_letters:,}"),
        ("lost", f"{len(ledger.lost):,}"),
        ("duplicated", f"{len(ledger.duplicated):,}"),
        ("scores out of range", f"{len(ledger.out_of_range):,}"),
        ("outputs of no input", f"{len(ledger.unexpected):,}"),
        ("controls dead-lettered", f"{len(ledger.controls_dead_lettered):,}"),
        ("dead letter payload differs", f"{len(ledger.payload_mismatch):,}"),
        (
            "worker alive",
            ("yes, and scored one more event" if alive_after else f"NO ({errors[:1]!r})")
            if alive
            else f"NO, it died: {errors[:1]!r}",
        ),
        ("batches processed record by record", f"{isolated:,}"),
        ("wall time (first batch to last commit)", f"{worked_s:.1f} s"),
        ("records/s", f"{committed / worked_s:,.0f}" if worked_s > 0 else "-"),
    ]
    print()
    for name, value in rows:
        print(f"{name:<40}{value:>14}")
    print("\ndead letters by kind, with the first input of each and its message")
    for kind, n in ledger.dead_letter_kinds.most_common():
        print(f"  {kind:<38}{n:>14,}")
        if kind in ledger.kind_examples:
            record, message = ledger.kind_examples[kind]
            print(f"      {record.describe(100)}\n      -> {message[:200]}")
    print(f"\n{'family of input':<24}" + "".join(f"{c:>13}" for c in COLUMNS))
    for family, row in sorted(ledger.by_family().items()):
        print(f"{family:<24}" + "".join(f"{row[c]:>13,}" for c in COLUMNS))
    if ledger.refused:
        print(f"\nrefused by the broker (not inputs): {len(ledger.refused):,}")
        for record, error in ledger.refused[:5]:
            print(f"  {record.describe(80)}: {error}")
    broken = bool(problems) or not alive_after
    if problems:
        print("\nviolations")
        for line in problems:
            print(f"  {line}")
    print(f"\ninvariant: {'BROKEN' if broken else 'holds'}")
    return 1 if broken else 0


COLUMNS = ("inputs", "predictions", "dead letters", "lost", "duplicated")


if __name__ == "__main__":
    sys.exit(main())
