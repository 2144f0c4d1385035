"""Small helpers shared by the test directories (processes, ports)."""

from __future__ import annotations

import socket
from dataclasses import dataclass


def free_port() -> int:
    """A TCP port of 127.0.0.1 free at the time of the call."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Result:
    """What a command run by a test gave: exit code, stdout, stderr."""
    rc: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()
