"""Throughput of the streaming path: events/s through consume -> produce, raw and via lakecast.

Every pipe reads the same pre-filled topic with its own consumer group and writes its own
output topic, so the lines of the table are measured in one run against one broker and can be
compared. The raw pipes use kafka-python directly and do no work; they are the ceiling that
the lakecast loop and the inference worker are measured against. Then the worker runs again
at half its maximum rate, fed by a paced producer in another process (Kafka's Java client by
default, see :func:`paced_load`), for its end-to-end latency.

    .venv/bin/python benchmarks/streaming.py                            # local broker, 200k events
    .venv/bin/python benchmarks/streaming.py --bootstrap host:9092 --events 50000 --partitions 6

To add a pipe (the inference worker), write ``def pipe(ctx: PipeContext) -> int`` that drains
``ctx.source`` into ``ctx.sink`` and returns the events it consumed, and append it to ``PIPES``.
"""

from __future__ import annotations

import argparse
import uuid

from streaming_latency import WINDOW_S, worker_latency_at
from streaming_models import model_batch_times
from streaming_pipes import MAX_POLL, PIPES, WORKER_PIPE, PipeContext, broker, fill

from lakecast.config import KafkaSettings, settings
from lakecast.kafka.clients import TopicSpec, build_admin, ensure_topics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-times-only",
        action="store_true",
        help="print only the per-batch model times (before/after optimisation); no broker",
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--bootstrap", help="an existing cluster; default: a local broker")
    parser.add_argument("--only", action="append", help="run only pipes whose name has this")
    parser.add_argument("--latency-seconds", type=float, default=60.0, help="half-rate run, s")
    parser.add_argument(
        "--latency-warmup", type=float, default=60.0, help="half-rate run, s before measuring"
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        default=settings().serving.max_batch,
        help="lakecast's records per micro-batch (default: conf/lakecast.yaml's serving.max_batch)",
    )
    parser.add_argument(
        "--generator",
        choices=("jvm", "python"),
        default="jvm",
        help="half-rate run's event producer: Kafka's Java client (default) or kafka-python",
    )
    args = parser.parse_args()
    if args.model_times_only:
        model_batch_times()
        return

    with broker(args.bootstrap) as bootstrap:
        run = uuid.uuid4().hex[:8]
        source = f"bench-events-{run}"
        pipes = [(n, p) for n, p in PIPES if not args.only or any(o in n for o in args.only)]
        admin = build_admin(KafkaSettings(bootstrap_servers=bootstrap))
        sinks = [f"bench-out-{i}-{run}" for i in range(len(pipes))]
        ensure_topics(
            admin,
            [TopicSpec(source, args.partitions)]
            + [TopicSpec(s, args.partitions) for s in sinks]
            + [TopicSpec(f"{s}.dlq") for s in sinks],
        )
        admin.close()
        fill_rate = fill(bootstrap, source, args.events)
        print(
            f"broker {bootstrap}; filled {source} ({args.partitions} partitions) with "
            f"{args.events:,} events at {fill_rate:,.0f} events/s; lakecast max batch "
            f"{args.max_batch}, raw pipes poll {MAX_POLL}"
        )

        rows = []
        for (name, pipe), sink in zip(pipes, sinks, strict=True):
            group = f"bench-{run}-{sink}"
            ctx = PipeContext(bootstrap, source, sink, args.events, group, args.max_batch)
            moved = pipe(ctx)
            elapsed = ctx.finished - ctx.started
            rows.append((name, moved, elapsed, moved / elapsed))

        worker_rate = next((rate for name, _, _, rate in rows if name == WORKER_PIPE), None)
        latency = None
        if worker_rate:
            latency = worker_latency_at(
                bootstrap,
                worker_rate / 2,
                seconds=args.latency_seconds,
                warmup_s=args.latency_warmup,
                partitions=args.partitions,
                max_batch=args.max_batch,
                generator=args.generator,
            )

    base = rows[0][3] if rows else 1.0
    print(f"\n{'pipe':<44}{'events':>10}{'seconds':>10}{'events/s':>12}{'vs first':>10}")
    for name, moved, elapsed, rate in rows:
        print(f"{name:<44}{moved:>10,}{elapsed:>10.2f}{rate:>12,.0f}{rate / base:>10.2f}")
    if worker_rate:
        print(f"\nworker / raw pipe throughput: {worker_rate / base:.2f} (target >= 0.6)")
    if latency:
        print(
            f"worker at half its max rate ({latency.rate:,.0f} events/s, {latency.measured:,} "
            f"events in the last {args.latency_seconds:.0f} s of "
            f"{args.latency_warmup + args.latency_seconds:.0f}): end-to-end p50 "
            f"{latency.p50_ms:.1f} ms, p99 {latency.p99_ms:.1f} ms (target p99 <= 100 ms)"
        )
        windows = " ".join(f"{p99:.0f}" for p99 in latency.window_p99_ms)
        print(f"  p99 of each {WINDOW_S:.0f} s of that run, warm-up first (ms): {windows}")
    model_batch_times()


if __name__ == "__main__":
    main()
