"""Structured JSON logs for every lakecast service: one JSON object per line on stderr.

A log shipper (Vector, Fluent Bit, Promtail) then needs no parsing rules: each line carries
``ts``, ``level``, ``service``, ``logger`` and ``message``, plus whatever the call passed in
``extra={...}`` (an offset, a topic, a decision), so a log line alone is enough to act on.
The spark-submit jobs log the same way (:func:`configure_job_logging`); their JVM side writes
Spark's own JSON lines (conf/log4j2-spark.properties).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator
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


def configure_job_logging(job: str) -> None:
    """A spark-submit job's Python driver logs as the services do: JSON lines tagged ``job``.

    Everything else written to file descriptor 2 until the process ends becomes records of
    the ``stderr`` logger (:func:`stderr_as_logs`): TensorFlow's C++ lines while a model
    trains (the Keras flavor wraps only the import and the load), argparse's usage error, a
    library's print. py4j's INFO records (one per gateway connection closed) are kept out.
    stdout is left alone: it carries the job's JSON summary.
    """
    sys.stderr.flush()
    # The handler writes to the real stderr, not to fd 2: a record would come back through
    # the pipe. It is in place before the pipe is, so a line never meets a logger without it.
    real = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="backslashreplace")
    configure_json_logging(job, stream=real)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    stderr_as_logs("stderr", real)


def stderr_as_logs(logger_name: str, real: IO[str]) -> None:
    """From now until the process ends, lines written to file descriptor 2 become records of
    ``logger_name`` (JSON lines go to ``real`` unchanged), as :func:`native_stderr_as_logs`
    does for a block. ``real``: a stream on a duplicate of the original fd 2, which the
    loggers' handlers write to. At exit fd 2 is restored and the lines still in the pipe are
    emitted.
    """
    real_fd = real.fileno()
    logger = logging.getLogger(logger_name)
    read_end, write_end = os.pipe()

    def forward() -> None:
        rest = b""
        while chunk := os.read(read_end, 65536):
            *lines, rest = (rest + chunk).split(b"\n")
            _emit(logger, b"\n".join(lines).decode(errors="replace"), real)
        _emit(logger, rest.decode(errors="replace"), real)
        os.close(read_end)

    reader = threading.Thread(target=forward, name="stderr-as-logs", daemon=True)
    reader.start()
    os.dup2(write_end, 2)
    os.close(write_end)

    def restore() -> None:
        sys.stderr.flush()
        os.dup2(real_fd, 2)  # closes the pipe's last write end: the reader sees its end
        reader.join(timeout=5)

    atexit.register(restore)


# The severity letter of a C++ log line: absl's "W0000 00:00:..." and TensorFlow's own
# "2025-01-01 12:00:00.000000: I tensorflow/...".
_NATIVE_LEVEL = re.compile(r"^(?:([IWEF])\d{4} |\S+ \S+: ([IWEF]) )")
_NATIVE_LEVELS = {
    "I": logging.INFO,
    "W": logging.WARNING,
    "E": logging.ERROR,
    "F": logging.CRITICAL,
}


@contextlib.contextmanager
def native_stderr_as_logs(logger_name: str) -> Iterator[None]:
    """Lines written to file descriptor 2 inside the block become records of ``logger_name``.

    TensorFlow 2.21 writes C++ lines (oneDNN, cudart_stub, "All log messages before
    absl::InitializeLog() is called ...") straight to fd 2 when it is imported, even with
    ``TF_CPP_MIN_LOG_LEVEL=3``: with this around the import, every line a service writes is
    JSON. A line's level comes from its severity letter (WARNING when it has none); a line
    that is already JSON (our own logs, written meanwhile) goes out unchanged. The lines are
    re-emitted when the block ends, after fd 2 is restored.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    chunks: list[bytes] = []

    def drain() -> None:  # the pipe must not fill up while the block writes to it
        while chunk := os.read(read_end, 65536):
            chunks.append(chunk)

    reader = threading.Thread(target=drain, name="native-stderr", daemon=True)
    reader.start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the reader sees its end
        os.close(saved)
        reader.join(timeout=5)
        os.close(read_end)
        _emit(logging.getLogger(logger_name), b"".join(chunks).decode(errors="replace"))


def _emit(logger: logging.Logger, text: str, passthrough: IO[str] | None = None) -> None:
    """Each line of ``text`` as a record of ``logger``; a JSON line goes to ``passthrough``
    (stderr) unchanged."""
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                json.loads(line)
                (passthrough or sys.stderr).write(line + "\n")
                continue
        found = _NATIVE_LEVEL.match(line)
        letter = (found.group(1) or found.group(2)) if found else None
        logger.log(_NATIVE_LEVELS.get(letter or "", logging.WARNING), line.rstrip())
