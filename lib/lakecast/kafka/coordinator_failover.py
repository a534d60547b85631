"""Let a kafka-python transactional producer find its new coordinator when the old one dies.

kafka-python 3.0.12 (the newest release) loses a transactional request when its coordinator's
broker is gone: ``Sender._maybe_send_pending_request`` sets ``target_node`` to the coordinator,
``await_ready`` raises ``KafkaConnectionError`` (it never returns False), and the ``except``
branch looks the coordinator up again but, ``target_node`` being set, never re-enqueues the
request. ``commit_transaction`` (or ``send_offsets_to_transaction``) then waits forever, even
after the broker comes back. Seen on ``lakecast local up --brokers 3``: kill -9 the node that
coordinates a worker's transactions and the worker stalls for good; a bare producer doing
begin/send/commit in a loop stops at its next commit.

The fix is the branch the library meant to take: the sender's own ``elif not await_ready(...)``
looks the coordinator up and retries the request. :func:`recover_lost_coordinator` gives the
producer's sender a view of its client whose ``await_ready`` answers False instead of raising,
on that producer alone. Measured with the fix: the same loop carried on through the kill
(7 transactions before, 360 more in the next 50 s). Remove this once kafka-python retries the
request itself.
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaConnectionError


class _ReadyOrNot:
    """The sender's network client, whose ``await_ready`` says False where it would raise."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def await_ready(self, node_id: Any, timeout_ms: int = 30_000) -> bool:
        try:
            return bool(self._client.await_ready(node_id, timeout_ms=timeout_ms))
        except KafkaConnectionError:
            return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def recover_lost_coordinator(producer: KafkaProducer) -> None:
    """Make ``producer``'s sender retry a transactional request whose coordinator is gone.

    Does nothing for a kafka-python whose producer has no sender client where 3.0 keeps it.
    """
    sender = getattr(producer, "_sender", None)
    client = getattr(sender, "_client", None)
    if sender is None or client is None or isinstance(client, _ReadyOrNot):
        return
    sender._client = _ReadyOrNot(client)
