"""`lakecast anomaly ...`: run the monitoring loop's anomaly detectors on files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lakecast.monitoring.detectors import DEFAULT_DETECTOR, DETECTORS

app = typer.Typer(help="Anomaly detection on metric series.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Anomaly detection on metric series (a group, even with one command)."""


@app.command("score")
def score(
    input_csv: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="timestamp,value CSV")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="where to write timestamp,value,anomaly_score")
    ],
    detector: Annotated[
        str, typer.Option("--detector", help=f"one of: {', '.join(sorted(DETECTORS))}")
    ] = DEFAULT_DETECTOR,
) -> None:
    """Score every row causally (each score uses that row and the ones before it only)."""
    from lakecast.monitoring.offline import score_csv

    rows = score_csv(input_csv, out, detector=detector)
    typer.echo(f"scored {rows} rows with {detector!r} -> {out}")
