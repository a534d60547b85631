"""TCP ports for the local stack: pick a free one, or say who holds a taken one.

A port is checked before a process is launched, because a JVM that fails to bind says so
deep in its log, seconds later; a :class:`PortInUseError` names the port and its holder now.
"""

from __future__ import annotations

import contextlib
import errno
import socket

import psutil

from lakecast.errors import PortInUseError


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS considers free on ``host`` right now (it may be taken again later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``host:port`` now.

    SO_REUSEADDR is set, as the JVM sets it, so sockets of a stopped process lingering in
    TIME_WAIT do not count as taken; ``listen`` also conflicts with a bound, idle socket.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(1)
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def port_holder(port: int) -> str | None:
    """A short description of the process bound to ``port``, where the OS lets us see it."""
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if not conn.laddr or conn.laddr.port != port or conn.pid is None:
                continue
            try:
                process = psutil.Process(conn.pid)
                command = " ".join(process.cmdline()[:3]) or process.name()
            except psutil.Error:
                return f"pid {conn.pid}"
            if len(command) > 120:
                command = command[:117] + "..."
            return f"pid {conn.pid} ({command})"
    return None


def require_free_ports(host: str, ports: dict[str, int]) -> None:
    """Check every named port before launching anything.

    Args:
        host: the address the ports will be bound on.
        ports: what each port is for (``{"Kafka broker": 9092}``), for the message.

    Raises:
        PortInUseError: a port is taken; the message names it, its use and its holder.
    """
    for purpose, port in ports.items():
        if port_is_free(host, port):
            continue
        holder = port_holder(port)
        held_by = f"held by {holder}" if holder else "held by a process we cannot see"
        msg = f"port {port} on {host} for the {purpose} is already in use ({held_by})"
        raise PortInUseError(msg)
