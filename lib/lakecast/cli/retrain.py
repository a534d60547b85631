"""`lakecast retrain`: the loop from monitoring evidence to a retrained, canaried version.

    lakecast retrain [--model purchase] [--dry-run] [--metrics-topic T] [--features PATH]

Reads the ``metrics`` topic (``kind=quality``, ``drift``, ``staleness``), applies the
``retrain:`` policy to the live version, and when a trigger fires trains a candidate on the
freshest labelled days, deploys it through the gates and a canary judged on outcome metrics
(see :mod:`lakecast.retrain.loop`). Prints the decision record (also sent as ``kind=retrain``
and written to the registry audit). A command, not a Spark job: it reads a few days of
features with deltalake and trains in-process, so cron or Airflow call it after the day's
``jobs/evaluate_quality.py``. Exit status 0 unless a retrain ran and was not promoted.
"""

from __future__ import annotations

import json

import typer

NOT_PROMOTED_EXIT = 1


def retrain(
    model: str = typer.Option("purchase", "--model", help="The registered model."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Decide, record, do nothing else."),
    metrics_topic: str | None = typer.Option(None, "--metrics-topic", help="Default: config."),
    features: str | None = typer.Option(None, "--features", help="Default: <lake>/features."),
    root: str | None = typer.Option(None, "--root", help="Registry root (default: config)."),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds the canary may take."),
) -> None:
    """Retrain MODEL when its quality, drift or age calls for it; gate and canary the result."""
    from lakecast.config import settings
    from lakecast.kafka.readback import read_topic
    from lakecast.quality.publish import send_metric_records
    from lakecast.retrain.loop import (
        RETRAIN_KIND,
        RetrainRequest,
        decode_records,
        run_retrain,
    )
    from lakecast.rollout.journal import KafkaMetricsSink

    cfg = settings()
    kafka = cfg.kafka
    if metrics_topic:
        kafka = kafka.model_copy(
            update={"topics": kafka.topics.model_copy(update={"metrics": metrics_topic})}
        )
    topic = kafka.topics.metrics
    records = decode_records(m.value for m in read_topic(kafka, topic, timeout_s=60.0))
    sink = KafkaMetricsSink(kafka, source="retrain")
    try:
        record = run_retrain(
            RetrainRequest(
                model=model,
                features_path=features or cfg.lake.table("features"),
                registry_root=root or cfg.registry_root,
                records=records,
                retrain=cfg.retrain,
                quality=cfg.quality,
                canary_timeout_s=timeout,
                dry_run=dry_run,
            ),
            sink,
        )
    finally:
        sink.close()
    send_metric_records(kafka, RETRAIN_KIND, "retrain", [record])
    typer.echo(json.dumps(record, sort_keys=True, default=str))
    if record["action"] == "retrained_and_canaried" and record["outcome"] != "promoted":
        raise typer.Exit(NOT_PROMOTED_EXIT)
    if record["action"] == "retrained" and record["outcome"] == "refused":
        raise typer.Exit(NOT_PROMOTED_EXIT)
