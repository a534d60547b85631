"""Wait for a condition by polling it, with a deadline that names what was awaited."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(
    condition: Callable[[], bool], *, timeout_s: float, what: str, every_s: float = 0.25
) -> None:
    """Poll ``condition`` until true.

    Raises:
        TimeoutError: ``condition`` was still false after ``timeout_s``; the message names
            ``what`` was awaited.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every_s)
    msg = f"timed out after {timeout_s} s waiting for {what}"
    raise TimeoutError(msg)
