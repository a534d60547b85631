"""Structured JSON logs."""

from __future__ import annotations

import io
import json
import logging
import warnings

import pytest

from lakecast.monitoring.logging import configure_json_logging


def test_each_record_is_one_json_line_with_extras() -> None:
    stream = io.StringIO()
    handler = configure_json_logging("monitor", stream=stream)
    try:
        log = logging.getLogger("lakecast.test")
        log.warning("anomaly on %s", "w-1/lag", extra={"offset": 42, "score": 0.97})
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("failed")
        # A second call replaces the handler: no duplicated lines.
        handler = configure_json_logging("monitor", stream=stream)
        log.info("once")
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["anomaly on w-1/lag", "failed", "once"]
    first = lines[0]
    assert first["service"] == "monitor"
    assert first["level"] == "warning"
    assert first["logger"] == "lakecast.test"
    assert first["offset"] == 42
    assert first["score"] == 0.97
    assert "RuntimeError: boom" in lines[1]["exception"]


def test_python_warnings_become_json_lines() -> None:
    # captureWarnings(True) does nothing while it believes it is on: an earlier test's call
    # outlived pytest's own restoring of warnings.showwarning.
    logging.captureWarnings(False)
    stream = io.StringIO()
    handler = configure_json_logging("worker", stream=stream)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("divide by zero encountered in log", RuntimeWarning, stacklevel=1)
    finally:
        logging.getLogger().removeHandler(handler)
        logging.captureWarnings(False)
    (line,) = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert line["logger"] == "py.warnings"
    assert "RuntimeWarning: divide by zero" in line["message"]


def test_native_lines_written_to_fd_2_become_records_at_their_level(
    capfd: pytest.CaptureFixture[str],
) -> None:
    import os

    from lakecast.monitoring.logging import native_stderr_as_logs

    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    logger = logging.getLogger("tensorflow-test")
    logger.addHandler(handler)
    try:
        with native_stderr_as_logs("tensorflow-test"):
            os.write(2, b"W0000 00:00:1733390000.1 123 cuda_executor.cc:1] no GPU\n")
            os.write(2, b"2025-12-05 08:00:00.000000: I tensorflow/core/util/port.cc:1] oneDNN\n")
            os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called\n")
            os.write(2, b'{"level":"info","message":"already json"}\n')
    finally:
        logger.removeHandler(handler)
    assert [(r.levelno, r.getMessage().split()[-1]) for r in seen] == [
        (logging.WARNING, "GPU"),
        (logging.INFO, "oneDNN"),
        (logging.WARNING, "called"),
    ]
    assert capfd.readouterr().err == '{"level":"info","message":"already json"}\n'
