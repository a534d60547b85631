"""stop_processes on a process that exits but stays a zombie: its parent is another process
that never reaps it (a Kafka node restarted by a test process still alive, stopped by
``lakecast local down`` run from elsewhere)."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from lakecast.local.stopping import stop_processes

# A parent that starts a child sleeping 60 s, prints its pid, and never waits for it.
_PARENT = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(60)\n"
)


def test_a_process_left_a_zombie_by_its_parent_counts_as_stopped() -> None:
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = psutil.Process(int(parent.stdout.readline()))
        assert child.ppid() == parent.pid  # not ours: we cannot reap it
        began = time.monotonic()
        statuses = stop_processes([child], timeout_s=5.0)
        took = time.monotonic() - began
        # SIGTERM ended it; its parent sleeps on, so it stays a zombie, and that is stopped.
        assert child.status() == psutil.STATUS_ZOMBIE
        assert statuses == [None]
        assert took < 3.0, f"waited {took:.1f} s for a zombie"
    finally:
        parent.kill()
        parent.wait()


def test_our_own_child_is_reaped_with_its_status() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    statuses = stop_processes([psutil.Process(child.pid)], timeout_s=5.0)
    assert statuses == [-15]  # SIGTERM, reaped by psutil's wait
    assert not psutil.pid_exists(child.pid)
