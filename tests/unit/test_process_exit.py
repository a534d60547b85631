"""lakecast.process: how an entry point ends, checked on small scripts run as processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

PRELUDE = """
import atexit, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from lakecast.errors import ModelNotFoundError
from lakecast.process import run_main

pool = ThreadPoolExecutor(2)
pool.submit(time.sleep, 0.05)
threading.Thread(target=lambda: (time.sleep(0.2), print("thread joined"))).start()
atexit.register(lambda: print("atexit ran"))
"""


def _run(body: str, **env: str) -> subprocess.CompletedProcess[str]:
    script = PRELUDE + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", **env},
    )


@pytest.mark.parametrize(
    ("body", "status", "stderr"),
    [
        ("run_main(lambda: None)", 0, ""),
        ("run_main(lambda: 3)", 3, ""),
        ("run_main(lambda: sys.exit(2))", 2, ""),
        ("run_main(lambda: sys.exit('stopped: no input'))", 1, "stopped: no input\n"),
        (
            "def main():\n    raise ModelNotFoundError(\"model 'x' is not registered\")\n"
            "run_main(main, prog='score_batch')",
            1,
            "score_batch: error: model 'x' is not registered\n",
        ),
        (
            "def main():\n    raise FileNotFoundError(2, 'No such file or directory', 'in.csv')\n"
            "run_main(main)",
            1,
            "error: in.csv: No such file or directory\n",
        ),
        (
            "def main():\n    raise ValueError('first line\\n  detail')\nrun_main(main)",
            1,
            "error: unexpected ValueError: first line (LAKECAST_TRACEBACK=1 for the traceback)\n",
        ),
        ("def main():\n    raise KeyboardInterrupt\nrun_main(main)", 130, ""),
    ],
    ids=["none", "int", "exit-int", "exit-text", "ours", "os-error", "unexpected", "ctrl-c"],
)
def test_run_main_ends_with_the_status_and_one_line_after_a_normal_exits_python_part(
    body: str, status: int, stderr: str
) -> None:
    done = _run(body)
    assert (done.returncode, done.stderr) == (status, stderr)
    # Threads joined, then atexit handlers, then the streams flushed: as the interpreter does.
    assert done.stdout == "thread joined\natexit ran\n"


def test_a_multi_line_error_of_ours_is_one_line() -> None:
    done = _run(
        "def main():\n    raise ModelNotFoundError('not valid YAML: at\\n  line 2\\n')\n"
        "run_main(main)"
    )
    assert (done.returncode, done.stderr) == (1, "error: not valid YAML: at line 2\n")


def test_the_traceback_is_there_when_asked_for() -> None:
    done = _run("def main():\n    raise ValueError('boom')\nrun_main(main)", LAKECAST_TRACEBACK="1")
    first, *rest = done.stderr.splitlines()
    assert (done.returncode, first) == (1, "error: unexpected ValueError: boom")
    assert rest[0] == "Traceback (most recent call last):"


def test_a_submitted_job_writes_its_warnings_stray_lines_and_error_as_json() -> None:
    import json

    body = """
    import argparse, os, warnings
    def main():
        warnings.warn("divide by zero encountered in log", RuntimeWarning, stacklevel=1)
        print("a library's own line", file=sys.stderr)
        try:
            argparse.ArgumentParser(prog="score_batch").parse_args(["--bogus"])
        except SystemExit:
            pass
        os.write(2, b"E0000 00:00:1.0 123 node_def_util.cc:682] NodeDef mentions attribute\\n")
        raise ModelNotFoundError("model 'x' is not registered")
    run_main(main, prog="score_batch")
    """
    done = _run(body, LAKECAST_SUBMITTED="1", LAKECAST_TRACEBACK="1")
    # Lines written to fd 2 come through a pipe: after the records logged meanwhile.
    records = sorted(
        (json.loads(line) for line in done.stderr.splitlines()),
        key=lambda r: r["logger"] == "score_batch",
    )
    assert done.returncode == 1
    assert sorted(r["logger"] for r in records) == [
        "py.warnings",
        "score_batch",
        "stderr",
        "stderr",
        "stderr",
        "stderr",
    ]
    native = next(r for r in records if "NodeDef" in r["message"])
    assert native["level"] == "error"
    assert {r["service"] for r in records} == {"score_batch"}
    error = records[-1]
    assert (error["level"], error["message"]) == ("error", "error: model 'x' is not registered")
    assert "ModelNotFoundError" in error["exception"]
    assert done.stdout == "thread joined\natexit ran\n"
