"""Structured JSON logs for every lakecast service: one JSON object per line on stderr.

A log shipper (Vector, Fluent Bit, Promtail) then needs no parsing rules: each line carries
``ts``, ``level``, ``service``, ``logger`` and ``message``, plus whatever the call passed in
``extra={...}`` (an offset, a topic, a decision), so a log line alone is enough to act on.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
    | {"message", "asctime", "taskName"}
)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object; values JSON cannot carry become strings."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


class _JsonHandler(logging.StreamHandler):
    """Marks the handler this module installed, so a second call replaces it."""


def configure_json_logging(
    service: str, level: int | str = logging.INFO, stream: IO[str] | None = None
) -> logging.Handler:
    """Send the root logger's records to ``stream`` (stderr) as JSON lines tagged ``service``.

    Calling it again replaces the handler installed before (no duplicated lines); handlers
    installed by others (pytest's capture, for one) are left alone. kafka-python's chatty
    loggers are kept at WARNING. Python warnings (numpy's RuntimeWarnings) become records of
    the ``py.warnings`` logger, so they are JSON lines too.

    Returns:
        The installed handler.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _JsonHandler):
            root.removeHandler(handler)
    handler = _JsonHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    logging.captureWarnings(True)
    return handler
