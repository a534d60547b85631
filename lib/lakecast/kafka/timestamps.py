"""The ``ts`` of the topic contracts: epoch seconds in, ISO-8601 UTC out.

Every service that reads or writes ``metrics`` records (the workers' samples, the monitor, the
autoscaler) converts with these two, so they live below all of them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from lakecast.errors import DataError


def to_epoch(ts: object) -> float:
    """Seconds since the epoch from a record's ``ts``: a number, or ISO-8601 (naive means UTC).

    Raises:
        DataError: ``ts`` is neither.
    """
    if isinstance(ts, bool):
        msg = f"ts must be epoch seconds or ISO-8601, found {ts!r}"
        raise DataError(msg)
    if isinstance(ts, int | float):
        return float(ts)
    if isinstance(ts, datetime):
        moment = ts
    elif isinstance(ts, str):
        try:
            moment = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        except ValueError as exc:
            msg = f"ts {ts!r} is not ISO-8601"
            raise DataError(msg) from exc
    else:
        msg = f"ts must be epoch seconds or ISO-8601, found {type(ts).__name__} {ts!r}"
        raise DataError(msg)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def to_iso(epoch: float) -> str:
    """ISO-8601 UTC with milliseconds, the ``ts`` format of the topic contracts."""
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="milliseconds")
