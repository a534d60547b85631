"""Where every rollout decision is written: the ``metrics`` topic and the registry's audit log.

A decision (started, refused, verdict, advanced, held, promoted, rolled back, switched,
weights) becomes one ``kind=rollout`` record on the metrics topic, for dashboards and the
archive, and one row of the registry's ``audit`` table whose ``reason`` is the decision as
JSON (the verdict with every metric's reason), for whoever asks later why a version went live.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from lakecast.registry import Registry
from lakecast.rollout.strategies import Canary, RolloutState, parse_model_ref

log = logging.getLogger(__name__)

ROLLOUT_KIND = "rollout"
AUDIT_PREFIX = "rollout_"


class MetricsSink(Protocol):
    """Anything that takes a ``kind=rollout`` record's fields (a producer, a list in tests)."""

    def send(self, fields: Mapping[str, Any]) -> None: ...


class KafkaMetricsSink:
    """Sends ``kind=rollout`` records to the metrics topic with an idempotent producer."""

    def __init__(self, settings: Any, topic: str | None = None, source: str = "rollout") -> None:
        from lakecast.kafka.clients import build_producer

        self.topic = topic or settings.topics.metrics
        self.source = source
        self._producer = build_producer(
            settings, mode="at_least_once", client_id="lakecast-rollout"
        )

    def send(self, fields: Mapping[str, Any]) -> None:
        from lakecast.kafka.serde import encode_key, encode_metric

        value = encode_metric(ROLLOUT_KIND, self.source, datetime.now(UTC), fields)
        future = self._producer.send(self.topic, key=encode_key(self.source), value=value)
        future.get(timeout=30)  # a decision that is not recorded must not pass silently

    def close(self) -> None:
        self._producer.close(timeout=10)


def _versions(state: RolloutState) -> tuple[str, str | None]:
    """(the version under test, the baseline's version) of a rollout, for the audit row."""
    spec = state.spec
    variants = spec.variants()
    baseline = spec.baseline()
    others = [v.model for v in variants if v.name != baseline.name]
    if isinstance(spec, Canary):
        tested_ref = spec.candidate
    elif others:
        tested_ref = others[0]
    else:
        tested_ref = spec.shadows[0] if spec.shadows else baseline.model
    return parse_model_ref(tested_ref)[1], parse_model_ref(baseline.model)[1]


class RolloutJournal:
    """Records rollout decisions; either destination may be absent (then it is skipped)."""

    def __init__(
        self, registry: Registry | None, sink: MetricsSink | None, who: str = "rollout"
    ) -> None:
        self.registry = registry
        self.sink = sink
        self.who = who

    def record(
        self,
        event: str,
        state: RolloutState,
        *,
        reasons: list[str] | None = None,
        details: Mapping[str, Any] | None = None,
        who: str | None = None,
    ) -> dict[str, Any]:
        """Write one decision; returns the fields that were written."""
        spec = state.spec
        fields: dict[str, Any] = {
            "event": event,
            "model": state.model,
            "rollout_id": spec.id,
            "strategy": spec.strategy,
            "revision": state.revision,
            "status": state.status,
            "reasons": list(reasons or []),
            "who": who or self.who,
        }
        if isinstance(spec, Canary):
            fields |= {"step_index": spec.step_index, "percent": spec.percent}
        fields |= dict(details or {})
        if self.sink is not None:
            self.sink.send(fields)
        if self.registry is not None:
            self._audit(fields, state, who or self.who)
        return fields

    def _audit(self, fields: Mapping[str, Any], state: RolloutState, who: str) -> None:
        from lakecast.registry.store import utc_now

        version, baseline = _versions(state)
        reason = orjson.dumps(
            {k: v for k, v in fields.items() if k not in ("who",)},
            option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY,
            default=str,
        ).decode()
        assert self.registry is not None  # noqa: S101 - checked by the caller
        self.registry.tables.append(
            "audit",
            [
                {
                    "at": utc_now(),
                    "who": who,
                    "action": f"{AUDIT_PREFIX}{fields['event']}",
                    "name": state.model,
                    "version": version,
                    "alias": None,
                    "previous_version": baseline,
                    "seq": state.revision,
                    "reason": reason,
                }
            ],
        )


def audit_decisions(registry: Registry, model: str) -> list[dict[str, Any]]:
    """The rollout decisions in ``model``'s audit log, oldest first, each as its JSON fields."""
    decisions = []
    for entry in registry.audit(model):
        if entry.action.startswith(AUDIT_PREFIX):
            try:
                data = orjson.loads(entry.reason)
            except orjson.JSONDecodeError:
                data = {"reasons": [entry.reason]}
            decisions.append(data | {"at": entry.at, "who": entry.who, "action": entry.action})
    return decisions
