"""A small lake built by the real pipeline: generated events, extracted features, a registry.

Shared by the integration tests that need real ``features`` and ``entity_features`` tables
(training, the worker/batch parity): the clickstream generator writes a run into ``events``
and the extract job computes every date's features and the snapshot of the last date.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lakecast.data.clickstream import ClickstreamRun, generate_events
from lakecast.data.events_table import write_events
from lakecast.features.extract import ExtractSummary, extract_features

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@dataclass(frozen=True)
class GeneratedLake:
    """The table paths of one generated lake (``registry`` is empty until a test trains)."""

    root: Path
    events: str
    features: str
    entity_features: str
    registry: str

    @property
    def snapshot(self) -> str:
        """The ``entity_features`` table, under the name a worker harness reads it by."""
        return self.entity_features


def generated_lake(
    spark: SparkSession, root: Path, run: ClickstreamRun
) -> tuple[GeneratedLake, ExtractSummary]:
    """Write ``run``'s events under ``root`` and extract the features of all its dates."""
    lake = GeneratedLake(
        root=root,
        events=str(root / "events"),
        features=str(root / "features"),
        entity_features=str(root / "entity_features"),
        registry=str(root / "registry"),
    )
    frame = generate_events(spark, run.rows, run.days, run.seed, run.start_date)
    write_events(frame, lake.events, run)
    summary = extract_features(
        spark,
        events_path=lake.events,
        features_path=lake.features,
        entity_features_path=lake.entity_features,
        run_date=None,
    )
    return lake, summary
