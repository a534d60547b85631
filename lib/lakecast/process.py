"""How a lakecast process ends: every entry point (the `lakecast` CLI, the spark-submit jobs,
the streaming services) runs its ``main`` through :func:`run_main`.

Two promises. A failure is one line on stderr, ``error: ...``, naming what was wrong, and exit
status 1; never a traceback for a mistake of the user or of the environment. And the process
ends with :func:`exit_process`: the Python part of a normal exit (non-daemon threads joined,
``atexit`` handlers, logging and the standard streams flushed), then ``os._exit``, skipping
the interpreter's teardown.

Why skip it: on CPython before 3.14 a thread that asks for the GIL while the interpreter is
finalizing is ended with ``pthread_exit`` (CPython gh-87135). delta-rs reads a table through a
pyarrow dataset on a Python filesystem (``PyFileSystem``); when ``to_pyarrow_table()`` returns,
Arrow's CPU pool may still be releasing the scan's state, whose last reference drops that
filesystem: ``OwnedRefNoGIL``'s destructor takes the GIL. If the main thread has begun
finalizing by then, ``pthread_exit`` unwinds through that (noexcept) destructor, C++ calls
``std::terminate``: "terminate called without an active exception", SIGABRT, exit status 134.
A short command that fails right after reading the registry hit that race one run in three.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import NoReturn

from lakecast.errors import LakecastError

TRACEBACK_ENV = "LAKECAST_TRACEBACK"
"""Set to 1 to have an unexpected exception print its traceback after the one-line error."""
SUBMITTED_ENV = "LAKECAST_SUBMITTED"
"""Set to 1 by spark-submit.sh: this process is a job's Python driver (or its executors)."""

_json_errors = False  # a submitted job reports its error as a JSON record, not a plain line


def exit_process(code: int) -> NoReturn:
    """End the process with ``code`` as a normal exit would, less the interpreter's teardown.

    Non-daemon threads are joined and ``atexit`` handlers run (kafka-python closes producers,
    pyspark stops a gateway it started, logging flushes), all before any native thread pool
    can meet a finalizing interpreter; the standard streams are flushed, then ``os._exit``.
    """
    # What Py_FinalizeEx does first: threading's exit hooks (concurrent.futures stops its
    # workers), then every non-daemon thread joined, then the atexit handlers.
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()  # reports a failing handler itself, as the interpreter's exit does
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        # A closed pipe (`lakecast models list | head -1`) is no failure of the command.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def run_main(main: Callable[[], int | None], *, prog: str | None = None) -> NoReturn:
    """Run an entry point's ``main`` and end the process with its exit status.

    ``main`` returns a status (None is 0) or raises ``SystemExit``. An exception becomes one
    line on stderr, ``error: ...`` (``PROG: error: ...`` where ``prog`` is given), and status 1;
    Ctrl-C is status 130. A spark-submit job (:data:`SUBMITTED_ENV`) logs JSON lines tagged
    ``prog``, as the services do, and its error line is such a record too.
    """
    if prog and os.environ.get(SUBMITTED_ENV) == "1":
        _log_as_json(prog)
    code = 1
    try:
        code = _status(main())
    except SystemExit as exc:
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)  # as the interpreter prints sys.exit("message")
        code = _status(exc.code)
    except KeyboardInterrupt:
        code = 130
    except BaseException as exc:
        report_error(exc, prog=prog)
    exit_process(code)


def report_error(exc: BaseException, *, prog: str | None = None) -> None:
    """Write ``exc`` to stderr as one ``error: ...`` line (and its traceback where asked for)."""
    if _json_errors:
        with_traceback = os.environ.get(TRACEBACK_ENV) == "1"
        logging.getLogger(prog or "lakecast").error(
            "error: %s",
            one_line(describe_error(exc)),
            exc_info=exc if with_traceback else None,
        )
        return
    prefix = f"{prog}: error: " if prog else "error: "
    line = prefix + one_line(describe_error(exc))
    if sys.stderr.isatty():
        line = f"\x1b[31m{line}\x1b[0m"
    print(line, file=sys.stderr)
    if os.environ.get(TRACEBACK_ENV) == "1":
        import traceback

        traceback.print_exception(exc, file=sys.stderr)


def describe_error(exc: BaseException) -> str:
    """What went wrong, for a user: our errors as they are, a library's named by its kind."""
    if isinstance(exc, LakecastError):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    # A library's first line says what happened; the rest is detail (py4j adds a Java trace).
    first = next((line for line in str(exc).splitlines() if line.strip()), "")
    module = type(exc).__module__.split(".")[0]
    if module == "kafka":
        return f"Kafka: {type(exc).__name__}: {first}"
    if module == "deltalake":
        return f"Delta table: {type(exc).__name__}: {first}"
    detail = f": {first}" if first else ""
    hint = "" if os.environ.get(TRACEBACK_ENV) == "1" else f" ({TRACEBACK_ENV}=1 for the traceback)"
    return f"unexpected {type(exc).__name__}{detail}{hint}"


def one_line(message: str) -> str:
    """``message`` on one line: a library's multi-line text (YAML, delta-rs) joined by spaces."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def _log_as_json(job: str) -> None:
    global _json_errors
    from lakecast.monitoring.logging import configure_job_logging

    configure_job_logging(job)
    _json_errors = True


def _status(code: object) -> int:
    if code is None:
        return 0
    return code if isinstance(code, int) else 1
