"""One event through the worker's own path, every step kept: ``lakecast explain``.

The event is decoded and validated as the worker does (:func:`decode_event_record`, then the
feature gate), its per-event features computed by the transforms batch and stream share, its
entity features looked up in the latest snapshot (the table version and date named), the
model input assembled in the signature's order, scored by the registered version, and each
feature's contribution to the score computed (:mod:`lakecast.explain.contributions`). The
result is JSON-ready; a rejected event stops after the verdict, as the worker would.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from lakecast.errors import DataError
from lakecast.explain.contributions import contributions
from lakecast.features.snapshot import load_snapshot
from lakecast.features.spec import ENTITY_FEATURE_COLUMNS, EVENT_FEATURE_COLUMNS
from lakecast.features.transforms import TRANSFORM_INPUTS, event_features, validate_event_batch
from lakecast.registry import Registry
from lakecast.serving.decoding import RejectedRecord, decode_event_record, events_table


def read_event_file(path: str | Path) -> bytes:
    """The bytes of an event file, checked to be one JSON object.

    Raises:
        DataError: the file cannot be read, is not JSON (line and column named) or not an object.
    """
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        msg = f"explain: event file {file}: cannot read it ({exc.strerror or exc})"
        raise DataError(msg) from exc
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        msg = f"explain: event file {file}: not valid JSON at line {exc.lineno} column "
        msg += f"{exc.colno}: {exc.msg}"
        raise DataError(msg) from exc
    if not isinstance(value, dict):
        msg = f"explain: event file {file}: expected one JSON object, found {type(value).__name__}"
        raise DataError(msg)
    return data


def _plain(value: Any) -> Any:
    """JSON-safe: numpy scalars as Python numbers, NaN and infinities as strings."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _row(columns: dict[str, np.ndarray]) -> dict[str, Any]:
    return {name: _plain(values[0]) for name, values in columns.items()}


def explain_event(
    event: bytes | dict[str, Any],
    model: str,
    *,
    registry_root: str | None = None,
    entity_features: str | None = None,
) -> dict[str, Any]:
    """Explain the score ``model`` (``NAME@ALIAS``, ``NAME:VERSION``) gives ``event``.

    Args:
        event: the ``events`` record value (bytes as received) or its parsed object.
        model: the model reference, resolved in the registry.
        registry_root: default the config's.
        entity_features: the snapshot table; default ``serving.entity_features`` or the lake's.

    Raises:
        ModelNotFoundError: the reference does not resolve.
        SchemaError: there is no entity snapshot to look the entity features up in.
    """
    from lakecast.config import settings

    cfg = settings()
    raw = event if isinstance(event, bytes) else orjson.dumps(event)
    received: Any = orjson.loads(raw) if not isinstance(event, dict) else event
    registry = Registry(registry_root or cfg.registry_root)
    record, predictor = registry.load(model)
    explained: dict[str, Any] = {
        "model": {
            "reference": model,
            "name": record.name,
            "version": record.version,
            "flavor": record.flavor,
            "sha256": record.sha256,
        },
        "event": received,
    }
    try:
        decoded = decode_event_record(raw)
    except RejectedRecord as exc:
        explained["validation"] = {"verdict": "rejected", "kind": exc.kind, "message": str(exc)}
        return explained
    table = events_table([decoded])
    problem = validate_event_batch(table)[0]
    if problem is not None:
        verdict = {"verdict": "rejected", "kind": problem.kind, "message": problem.message}
        explained["validation"] = verdict
        return explained
    explained["validation"] = {"verdict": "accepted"}

    path = entity_features or cfg.serving.entity_features or cfg.lake.table("entity_features")
    snapshot = load_snapshot(path)
    per_event = event_features(table, snapshot.lookups)
    entity = snapshot.entity_features(table)
    explained["transforms"] = [
        {
            "name": "event_features (lakecast.features.transforms, shared by batch and stream)",
            "inputs": {name: _plain(table.column(name)[0].as_py()) for name in TRANSFORM_INPUTS},
            "output": _row({n: per_event[n] for n in EVENT_FEATURE_COLUMNS}),
        },
        {
            "name": "entity_features (the latest entity_features snapshot)",
            "inputs": {
                "user_id": decoded.user_id,
                "product_id": decoded.product_id,
                "category": decoded.category,
            },
            "output": _row({n: entity[n] for n in ENTITY_FEATURE_COLUMNS}),
        },
    ]
    explained["snapshot"] = {
        "table": path,
        "table_version": snapshot.table_version,
        "snapshot_date": None if snapshot.snapshot_date is None else str(snapshot.snapshot_date),
        "as_of": None if snapshot.as_of is None else snapshot.as_of.isoformat(),
        "user_known": decoded.user_id in snapshot.user_index,
        "product_known": decoded.product_id in snapshot.product_index,
    }
    names = list(predictor.signature.input_names)
    columns = {**per_event, **entity}
    missing = [name for name in names if name not in columns]
    if missing:
        msg = f"explain: {record.ref} reads inputs {missing} that no transform computes"
        raise DataError(msg)
    vector = np.array([[float(columns[name][0]) for name in names]], dtype=np.float64)
    explained["input"] = {name: _plain(value) for name, value in zip(names, vector[0], strict=True)}
    score = float(np.asarray(predictor.predict(vector)).reshape(-1)[0])
    explained["score"] = _plain(score)
    model_object = getattr(predictor, "model", None)
    found = contributions(record.flavor, model_object, predictor.predict, vector[0], names)
    explained["contributions"] = {
        key: _plain(value) if not isinstance(value, dict) else value
        for key, value in found.as_dict().items()
    }
    return explained
