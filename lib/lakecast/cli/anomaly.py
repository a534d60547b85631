"""`lakecast anomaly ...`: run the monitoring loop's anomaly detectors on files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lakecast.errors import DataError
from lakecast.monitoring.detectors import DEFAULT_DETECTOR, DETECTORS

app = typer.Typer(help="Anomaly detection on metric series.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Anomaly detection on metric series (a group, even with one command)."""


@app.command("score")
def score(
    input_csv: Annotated[Path, typer.Argument(help="timestamp,value CSV")],
    out: Annotated[
        Path, typer.Option("--out", help="where to write timestamp,value,anomaly_score")
    ],
    detector: Annotated[
        str, typer.Option("--detector", help=f"one of: {', '.join(sorted(DETECTORS))}")
    ] = DEFAULT_DETECTOR,
) -> None:
    """Score every row causally (each score uses that row and the ones before it only)."""
    import pandas as pd

    from lakecast.monitoring.offline import score_csv

    # Checked here rather than by Typer, so that a bad input is one `error:` line, status 1.
    if not input_csv.is_file():
        found = "is not a file" if input_csv.exists() else "does not exist"
        msg = f"anomaly score: input {input_csv} {found}"
        raise DataError(msg)
    try:
        rows = score_csv(input_csv, out, detector=detector)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        msg = f"anomaly score: input {input_csv} is not a readable CSV ({exc})"
        raise DataError(msg) from exc
    typer.echo(f"scored {rows} rows with {detector!r} -> {out}")
