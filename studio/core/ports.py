"""The one port finder: the studio's port, or the next one this computer can still listen on."""

from __future__ import annotations

import errno
import socket

PORT_TRIES = 50


class NoFreePort(OSError):
    """Every port of the range is taken; the message names the range and what to do."""


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on `host`:`port` now (a port in TIME_WAIT counts as free)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def find_port(host: str, start: int, tries: int = PORT_TRIES) -> int:
    """`start`, or the next free port after it (0 lets the system choose when listening)."""
    if start == 0:
        return 0
    for port in range(start, min(start + tries, 65536)):
        if port_is_free(host, port):
            return port
    raise NoFreePort(f"No free port from {start} to {start + tries - 1} on {host}; pass --port.")
