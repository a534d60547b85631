"""`lakecast explain --model NAME@ALIAS EVENT.json`: one event's way to its score, as JSON.

Exit status 0 when the event was scored, 1 when it was rejected (the verdict says why, as the
worker's dead letter would) or the file is not one JSON object (the error names the file,
line and column).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer


def explain(
    event_file: Path = typer.Argument(..., help="A JSON file holding one events record."),
    model: str = typer.Option("purchase@champion", "--model", help="NAME@ALIAS or NAME:VERSION."),
    registry: str | None = typer.Option(
        None, "--registry", help="Registry root (default: the config)."
    ),
    entity_features: str | None = typer.Option(
        None, "--entity-features", help="The entity snapshot table (default: config)."
    ),
) -> None:
    """Explain one prediction: the event, its validation verdict, each transform's output,
    the entity-snapshot values (and version), the model input, the score and each feature's
    contribution to it."""
    from lakecast.explain import explain_event, read_event_file

    explained = explain_event(
        read_event_file(event_file),
        model,
        registry_root=registry,
        entity_features=entity_features,
    )
    typer.echo(json.dumps(explained, indent=2, default=str))
    if explained["validation"]["verdict"] != "accepted":
        raise typer.Exit(1)
