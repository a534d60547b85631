"""Outcome evidence for a retraining canary: the latest settled days' traffic, replayed.

When ``lakecast retrain`` runs, the newest labelled days are already past the label horizon:
their outcomes are known. :class:`ReplayOutcomes` routes those days' labelled events by the
canary's current split (the workers' sticky user buckets, :class:`~lakecast.rollout.router.Router`),
scores each variant's share with that variant's model from the registry, and hands the
controller each variant's per-prediction log loss and squared error
(:func:`~lakecast.rollout.analysis.outcome_samples`). The rollout is then judged on outcomes
as a live one is once it has lasted the horizon; ``lasted_s`` is the span of the replayed days.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakecast.errors import DataError
from lakecast.features.spec import FEATURE_COLUMNS, LABEL_COLUMN
from lakecast.registry import Registry
from lakecast.rollout.analysis import OutcomeEvidence, outcome_samples
from lakecast.rollout.router import Router
from lakecast.rollout.strategies import Canary, RolloutState

DAY_S = 86_400.0


def settled_rows(features_path: str, days: int, last_day: date | None = None) -> pa.Table:
    """The labelled ``features`` rows of the last ``days`` dates (up to ``last_day``).

    Raises:
        DataError: there are none.
    """
    from deltalake import DeltaTable

    columns = ["user_id", "date", *FEATURE_COLUMNS, LABEL_COLUMN]
    table = DeltaTable(features_path).to_pyarrow_table(columns=columns)
    table = table.filter(pc.is_valid(table[LABEL_COLUMN]))
    if last_day is not None:
        table = table.filter(pc.less_equal(table["date"], pa.scalar(last_day)))
    if table.num_rows == 0:
        msg = f"retrain canary: no labelled rows in {features_path} up to {last_day or 'now'}"
        raise DataError(msg)
    newest = pc.max(table["date"]).as_py()
    first = newest - timedelta(days=days - 1)
    return table.filter(pc.greater_equal(table["date"], pa.scalar(first)))


class ReplayOutcomes:
    """An :class:`~lakecast.rollout.controller.OutcomeSource` over settled, replayed days."""

    def __init__(self, registry: Registry, model: str, rows: pa.Table, days: int) -> None:
        self.registry = registry
        self.model = model
        self.rows = rows
        self.days = days
        self.scored: dict[str, int] = {}  # variant -> rows scored at the last call (reports)

    def evidence(self, spec: Canary, since: datetime, until: datetime) -> OutcomeEvidence:
        routes = Router(RolloutState(model=self.model, spec=spec)).route_batch(
            self.rows.column("user_id").to_pylist()
        )
        labels = np.asarray(self.rows.column(LABEL_COLUMN).to_numpy(), dtype=np.float64)
        samples: dict[str, dict[str, np.ndarray]] = {}
        by_model = {v.name: v.model for v in routes.variants}
        self.scored = {}
        for variant, positions in routes.by_variant().items():
            _, predictor = self.registry.load(by_model[variant])
            scores = predictor.predict(self.rows.take(pa.array(positions)))
            finite = np.isfinite(scores)
            samples[variant] = outcome_samples(labels[positions][finite], scores[finite])
            self.scored[variant] = int(finite.sum())
        return OutcomeEvidence(samples=samples, lasted_s=self.days * DAY_S)
