"""Port checks of the local stack, against real sockets of this process."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from lakecast.errors import PortInUseError
from lakecast.local.ports import free_port, port_holder, port_is_free, require_free_ports


@pytest.fixture
def listening() -> Iterator[int]:
    """A port this test process listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


def test_free_port_can_be_listened_on() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    assert port_is_free("127.0.0.1", port)


def test_a_listening_port_is_not_free(listening: int) -> None:
    assert not port_is_free("127.0.0.1", listening)


def test_a_bound_idle_port_is_not_free() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        assert not port_is_free("127.0.0.1", sock.getsockname()[1])


def test_port_holder_names_this_process(listening: int) -> None:
    holder = port_holder(listening)
    if holder is None:
        pytest.fail("psutil could not see the holder of a port this process listens on")
    assert f"pid {os.getpid()}" in holder


def test_require_free_ports_names_the_port_its_use_and_holder(listening: int) -> None:
    spare = free_port()
    with pytest.raises(PortInUseError) as raised:
        require_free_ports("127.0.0.1", {"Kafka controller": spare, "Kafka broker": listening})
    message = str(raised.value)
    assert f"port {listening} on 127.0.0.1" in message
    assert "Kafka broker" in message
    assert f"pid {os.getpid()}" in message


def test_require_free_ports_accepts_free_ports() -> None:
    require_free_ports("127.0.0.1", {"a": free_port(), "b": free_port()})
