"""Entry point of the `lakecast` console script.

Groups are registered here and live in their own modules. Heavy libraries (pyspark,
tensorflow) are imported inside the commands that need them, so `lakecast --help` is quick.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import typer

from lakecast.config import CONFIG_ENV
from lakecast.process import run_main

app = typer.Typer(
    name="lakecast",
    help="Batch and streaming ML deployment on Spark, Delta Lake and Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _global_options(
    config: Path | None = typer.Option(
        None, "--config", help="The config file (default: conf/lakecast.yaml or $LAKECAST_CONFIG)."
    ),
) -> None:
    if config is not None:
        os.environ[CONFIG_ENV] = str(config)


def _register() -> None:
    from lakecast.cli import (
        anomaly,
        demo,
        deploy,
        explain,
        jars,
        local,
        models,
        retrain,
        run,
        stream,
    )

    app.command("jars")(jars.jars)
    app.add_typer(local.app, name="local")
    app.add_typer(models.app, name="models")
    app.add_typer(stream.app, name="stream")
    app.add_typer(deploy.app, name="deploy")
    app.add_typer(anomaly.app, name="anomaly")
    app.add_typer(demo.app, name="demo")
    app.add_typer(run.app, name="run")
    app.command("retrain")(retrain.retrain)
    app.command("explain")(explain.explain)


_register()


def main() -> NoReturn:
    """Run the CLI and end the process (see lakecast.process): a failure is one line on
    stderr, ``error: ...``, and exit status 1; a usage error is Typer's, status 2."""
    run_main(lambda: app(standalone_mode=True))


if __name__ == "__main__":
    main()
