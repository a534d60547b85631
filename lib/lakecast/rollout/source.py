"""The routing source a streaming worker polls: a model's current :class:`RolloutState`.

A worker asks on every micro-batch; the source answers from memory and looks at the Delta
table only every ``interval_s``. Looking is cheap when nothing changed: the table handle is
brought up to date incrementally (only new commit files are read) and the rows are read
only when the table version moved. A failed look keeps the last known state, so a slow or
unreachable store never stops serving.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from lakecast.lake.deltars import WatchedTable
from lakecast.rollout.store import ROLLOUTS_TABLE, RolloutStore
from lakecast.rollout.strategies import RolloutState

log = logging.getLogger(__name__)


class RolloutSource:
    """The current rollout of one model, refreshed from the store at most every ``interval_s``.

    Args:
        root: the registry root the rollout store lives under.
        model: the model name whose rollout is followed.
        interval_s: how stale an answer may be.
        storage_options: passed to delta-rs.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        root: str,
        model: str,
        *,
        interval_s: float = 2.0,
        storage_options: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval_s < 0:
            msg = f"rollout source: interval_s must not be negative, found {interval_s}"
            raise ValueError(msg)
        self.store = RolloutStore(root, storage_options)
        self.model = model
        self.interval_s = interval_s
        self._clock = clock
        self._watched = WatchedTable(self.store.uri(ROLLOUTS_TABLE), self.store.storage_options)
        self._table_version: int | None = None
        self._state: RolloutState | None = None
        self._checked_at: float | None = None
        self.reads = 0  # times rows were read (the table had moved); for tests and metrics
        self.failures = 0

    @property
    def table_version(self) -> int | None:
        """The Delta version the current answer was read at."""
        return self._table_version

    def current(self) -> RolloutState | None:
        """The model's rollout state (None: no rollout, serve the champion)."""
        now = self._clock()
        if self._checked_at is None or now - self._checked_at >= self.interval_s:
            self._checked_at = now
            try:
                self.refresh()
            except Exception as exc:  # keep serving the last known state
                self.failures += 1
                log.warning(
                    "rollout source %s: refresh of %s failed, keeping revision %s: %r",
                    self.model,
                    self.store.uri(),
                    None if self._state is None else self._state.revision,
                    exc,
                )
        return self._state

    __call__ = current

    def refresh(self) -> RolloutState | None:
        """Look at the table now; read its rows only if its version moved."""
        table = self._watched.poll()
        if table is None:
            return self._state
        version = table.version()
        if version == self._table_version:
            return self._state
        found = self.store.record(self.model, table)
        self.reads += 1
        self._table_version = version
        state = None if found is None else found.state
        if state is not None and self._state is not None and state.revision < self._state.revision:
            # Never step back to an older revision (a lagging replica of the store).
            return self._state
        self._state = state
        return self._state
