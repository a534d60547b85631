"""What a consumer group's coordinator says about it: its state and its members.

How a supervisor (the demo, a test, an operator's script) knows that the workers it started
have joined and own partitions, before it sends them traffic.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

STABLE = "Stable"


@dataclass(frozen=True)
class GroupView:
    """A consumer group as its coordinator describes it."""

    state: str
    client_ids: tuple[str, ...]

    @property
    def members(self) -> int:
        return len(self.client_ids)


def describe_group(bootstrap: str, group: str) -> GroupView:
    """The group's state and the client ids of its members, from the coordinator.

    While no coordinator answers for the group yet (a fresh broker creates its offsets topic
    on the first group), the state is ``"Unavailable"``.
    """
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="lakecast-group-view")
    try:
        info = admin.describe_groups([group]).get(group) or {}
    except KafkaError as exc:
        if not exc.retriable:
            raise
        return GroupView("Unavailable", ())
    finally:
        admin.close()
    members = info.get("members") or []
    return GroupView(
        state=str(info.get("group_state", info.get("state"))),
        client_ids=tuple(sorted(str(member.get("client_id")) for member in members)),
    )


def stable_members(bootstrap: str, group: str) -> int:
    """Members of a group that has settled (Stable); 0 while it rebalances."""
    view = describe_group(bootstrap, group)
    return view.members if view.state == STABLE else 0


def wait_for_stable_members(
    bootstrap: str, group: str, count: int, *, timeout_s: float = 120.0, every_s: float = 0.5
) -> GroupView:
    """Wait until ``group`` is Stable with at least ``count`` members; its last view.

    Raises:
        TimeoutError: not so after ``timeout_s`` (the message says what was seen).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        view = describe_group(bootstrap, group)
        if view.state == STABLE and view.members >= count:
            return view
        if time.monotonic() >= deadline:
            msg = f"group {group!r}: {view.members} member(s), {view.state}, after {timeout_s:g} s"
            raise TimeoutError(msg)
        time.sleep(every_s)


def leave_on_close(consumer: KafkaConsumer) -> None:
    """Make ``consumer.close()`` leave its group at once, static member or not.

    A static member (``group_instance_id``, set per worker slot so that a process killed and
    restarted takes its partitions back without a rebalance) never sends LeaveGroup: its
    partitions wait out the session timeout. A clean stop (SIGTERM: a scale-down, a stop of
    the fleet) means the member is not coming back, so it leaves, as Kafka's
    ``CloseOptions.GroupMembershipOperation.LEAVE_GROUP`` (KIP-1092) does for Java clients.
    """
    coordinator = consumer._coordinator  # kafka-python has no public option for this
    # kafka-python leaves only when the member is dynamic; the request it then sends names
    # the member's group_instance_id, which is what the broker needs to remove a static one.
    coordinator.is_dynamic_member = lambda: True
