"""`lakecast jars`: resolve the pinned JVM artifacts into the local cache and verify them.

Every jar is checked against the sha256 recorded when Maven resolved it; a jar that was
modified, is missing, or was dropped in by hand is an error naming the file (exit status 1).
"""

from __future__ import annotations

import typer
from rich.console import Console

from lakecast.config import settings
from lakecast.local.jars import resolve_jars


def jars(
    spark_list: bool = typer.Option(
        False, "--spark-list", help="Print only the comma-separated Spark jars (for scripts)."
    ),
    offline: bool = typer.Option(False, "--offline", help="Fail instead of calling Maven."),
) -> None:
    """Resolve jvm/pom.xml with Maven (once; offline afterwards), verify every jar's sha256."""
    resolved = resolve_jars(settings(), offline_only=offline)
    if spark_list:
        typer.echo(resolved.spark_jars)
        return
    console = Console()
    console.print(f"jars under [bold]{resolved.root}[/bold]")
    console.print(f"  spark: {len(resolved.spark)} jars in {resolved.root / 'spark'}")
    console.print(f"  kafka: {len(resolved.kafka)} jars in {resolved.root / 'kafka'}")
    console.print(
        f"verified: {len(resolved.spark) + len(resolved.kafka)} jars match the sha256s "
        "recorded when Maven resolved them"
    )
