"""`lakecast stream ...`: the streaming services and the events replayer."""

from __future__ import annotations

from datetime import date

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from lakecast.config import settings

app = typer.Typer(help="Streaming services: replay, worker, monitor, autoscaler.", no_args_is_help=True)


def _parse_date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{option} must be YYYY-MM-DD, found {value!r}") from exc


@app.command()
def replay(
    start: str | None = typer.Option(None, "--start", help="First date (YYYY-MM-DD), inclusive."),
    end: str | None = typer.Option(None, "--end", help="Last date (YYYY-MM-DD), inclusive."),
    rate: float | None = typer.Option(None, "--rate", help="Events per second; default: max."),
    table: str | None = typer.Option(None, "--table", help="Events table (default: the lake's)."),
    topic: str | None = typer.Option(None, "--topic", help="Target topic (default: events)."),
    limit: int | None = typer.Option(None, "--limit", help="Replay at most this many events."),
) -> None:
    """Replay the events table (a date range) into the events topic, keyed by user."""
    from itertools import islice

    from lakecast.data.replay import event_payloads, read_events, replay as produce
    from lakecast.kafka.clients import build_admin, build_producer, ensure_topics, standard_topics

    cfg = settings()
    events = read_events(
        table or cfg.lake.table("events"), _parse_date(start, "--start"), _parse_date(end, "--end")
    )
    total = events.num_rows if limit is None else min(limit, events.num_rows)
    admin = build_admin(cfg.kafka)
    ensure_topics(admin, standard_topics(cfg.kafka))
    admin.close()
    producer = build_producer(cfg.kafka, mode="at_least_once", client_id="lakecast-replay")
    target = topic or cfg.kafka.topics.events
    columns = (TextColumn("replay"), BarColumn(), TextColumn("{task.completed}/{task.total}"))
    with Progress(*columns, TimeElapsedColumn(), transient=False) as progress:
        task = progress.add_task("replay", total=total)
        result = produce(
            producer,
            target,
            islice(event_payloads(events), total),
            rate=rate,
            on_progress=lambda n: progress.advance(task, n),
        )
    producer.close()
    typer.echo(f"replayed {result.events} events to {target} in {result.seconds:.1f} s "
               f"({result.rate:,.0f} events/s)")
