"""Graceful stop of a streaming service: SIGTERM and SIGINT set an Event the loop watches.

The loop then finishes (or aborts) its open batch, commits, and leaves the consumer group,
so the partitions move to another worker at once instead of after the session timeout.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def install_stop_handlers(
    stop_event: threading.Event, signals: Iterable[signal.Signals] = STOP_SIGNALS
) -> Callable[[], None]:
    """Make ``signals`` set ``stop_event``; a second signal while stopping exits at once.

    Must be called from the main thread (Python delivers signals there only).

    Returns:
        A function that puts the previous handlers back.
    """
    previous: dict[signal.Signals, Callable[[int, FrameType | None], object] | int | None] = {}

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop_event.is_set():
            log.warning("signal %s again while stopping: exiting now", signum)
            raise SystemExit(128 + signum)
        log.info("signal %s: stopping after the current batch", signum)
        stop_event.set()

    for sig in signals:
        previous[sig] = signal.signal(sig, handle)

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
