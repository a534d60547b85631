"""`lakecast demo ...`: the streaming steps of `make demo`, on the local broker."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import typer

from lakecast.config import settings

app = typer.Typer(help="The streaming steps of `make demo`.", no_args_is_help=True)


def _day(value: str | None) -> date | None:
    return None if value is None else date.fromisoformat(value)


def _log_dir() -> Path:
    """``.state/demo``, made (with ``.state`` itself) 0700: the demos' logs are private."""
    from lakecast.local.state import private_dir

    cfg = settings()
    return private_dir(cfg.project_path(cfg.local.state_dir) / "demo")


@app.command()
def stream(
    day: str | None = typer.Option(None, "--day", help="The date to replay (YYYY-MM-DD)."),
    workers: int = typer.Option(2, "--workers", min=1, help="Worker processes."),
    limit: int | None = typer.Option(None, "--limit", help="Replay at most this many events."),
    rate: float | None = typer.Option(
        500.0, "--rate", help="Events per second (latency is only meaningful below capacity)."
    ),
) -> None:
    """Two workers serve a replayed day; print predictions, dead letters, samples, p99."""
    from lakecast.demo.stream import run_stream_demo

    summary = run_stream_demo(
        settings(), day=_day(day), workers=workers, limit=limit, rate=rate, log_dir=_log_dir()
    )
    for line in summary.lines():
        typer.echo(f"  {line}")


@app.command()
def canary(
    model: str = typer.Option("purchase", "--model", help="The model name."),
    day: str | None = typer.Option(None, "--day", help="The date whose events feed it."),
    rate: float = typer.Option(100.0, "--rate", help="Events per second during the canary."),
    steps: str = typer.Option("25,50,100", "--steps", help="Canary steps (percent)."),
    step_seconds: float = typer.Option(20.0, "--step-seconds", help="Each step's window."),
) -> None:
    """A canary of NAME@challenger against the champion, verdict by verdict."""
    from lakecast.demo.canary import run_canary_demo

    status = run_canary_demo(
        settings(), model=model, day=_day(day), rate=rate, steps=steps,
        step_seconds=step_seconds, log_dir=_log_dir(),
    )  # fmt: skip
    raise typer.Exit(status)


@app.command()
def loop(
    day: str | None = typer.Option(None, "--day", help="The date whose events feed it."),
) -> None:
    """Monitor and autoscaler during a replay with a spike: anomalies and scaling decisions."""
    from lakecast.demo.loop import run_loop_demo

    found = run_loop_demo(settings(), day=_day(day), log_dir=_log_dir())
    typer.echo(f"  anomalies found: {len(found['anomaly'])}")
    for record in found["anomaly"]:
        typer.echo(
            f"    {record.get('ts', '')[:19]}  {record.get('source')}/{record.get('metric')}"
            f" = {record.get('value')}  score {record.get('score', 0):.2f}"
        )
    changes = [r for r in found["scaling"] if r.get("current") != r.get("desired")]
    typer.echo(f"  scaling decisions: {len(found['scaling'])} ({len(changes)} changed replicas)")
    for record in changes:
        typer.echo(
            f"    {record.get('ts', '')[:19]}  {record.get('current')} -> {record.get('desired')}"
            f"  ({record.get('reason')})"
        )
