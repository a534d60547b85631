"""Score a ``timestamp,value`` CSV causally, row by row, into ``timestamp,value,anomaly_score``.

The offline twin of the monitor: the same detector objects, fed one row at a time in file
order, so a score never depends on a later row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lakecast.errors import DataError, SchemaError
from lakecast.monitoring.detectors import DEFAULT_DETECTOR, make_detector


def score_csv(
    source: str | Path,
    target: str | Path,
    detector: str = DEFAULT_DETECTOR,
    **params: Any,
) -> int:
    """Write ``target`` with an ``anomaly_score`` column; return the number of rows scored.

    Raises:
        SchemaError: the input lacks a ``timestamp`` or ``value`` column.
        DataError: a timestamp cannot be parsed.
    """
    import pandas as pd

    frame = pd.read_csv(source)
    missing = {"timestamp", "value"} - set(frame.columns)
    if missing:
        msg = f"anomaly scoring of {source}: missing column(s) {sorted(missing)}"
        raise SchemaError(msg)
    try:
        stamps = pd.to_datetime(frame["timestamp"])
    except (ValueError, TypeError) as exc:
        msg = f"anomaly scoring of {source}: unparseable timestamp ({exc})"
        raise DataError(msg) from exc
    epoch = (stamps - pd.Timestamp(0, tz=stamps.dt.tz)).dt.total_seconds().to_numpy()
    values = pd.to_numeric(frame["value"], errors="coerce").to_numpy(dtype=float)
    scores = make_detector(detector, **params).score_series(epoch, values)
    out = frame[["timestamp", "value"]].copy()
    out["anomaly_score"] = scores
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(target, index=False, float_format="%.6f")
    return len(out)
