"""The submitter's side of a waiting ``oarsub`` (``-I``, ``-r``).

A waiting ``oarsub`` listens on a TCP port of its host before it writes the job, stores
``host:port`` in ``jobs.info_type`` with the job, notifies the server and waits for one
line (docs/execution.md, "Waiting submitters"; :mod:`oar_appliance.submitter` is the
server's side):

=================  =====================================================
``GRANTED <t>``     the reservation is granted, it starts at epoch ``t``
``REJECTED <why>``  the reservation is rejected
``STARTED <host>``  the interactive job runs; its head node is ``host``
``ERROR <why>``     the interactive job could not start
``PREDICTION <t>``  not an answer: the interactive job is planned to start at
                    epoch ``t`` (the wait goes on)
=================  =====================================================

The address stored is the one of this host's interfaces that routes to
``SERVER_HOSTNAME`` (127.0.0.1 when the server is on this host, as in the lab), so the
server can always connect back.  Only connections coming from the server's own addresses
are read: another local user cannot answer in the server's name by guessing the port.
A connection that closes without a line, or sends a line that is not an answer, is
ignored and the wait goes on.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: the answers the server can give (the same words as submitter.ANSWERS)
ANSWER_WORDS = ("GRANTED", "REJECTED", "STARTED", "ERROR", "PREDICTION")
#: a connection must send its line within this many seconds
READ_TIMEOUT = 5.0
MAX_LINE = 4096


@dataclass(frozen=True)
class Answer:
    """The server's answer: one of :data:`ANSWER_WORDS` and the rest of the line."""

    word: str
    detail: str = ""


def parse_answer(line: str) -> Answer | None:
    """The answer in ``line``, or None when it is not one."""
    word, _, detail = line.strip().partition(" ")
    if word not in ANSWER_WORDS:
        return None
    return Answer(word, detail.strip())


def address_towards(server_host: str, server_port: int) -> str:
    """The address of this host's interface that routes to the server.

    A UDP ``connect`` sends nothing: it only asks the kernel which source address it would
    use.  When the server's name does not resolve, this host's name is the best guess.
    """
    try:
        family = socket.getaddrinfo(server_host, server_port, type=socket.SOCK_DGRAM)[0][0]
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((server_host, server_port))
            return probe.getsockname()[0]
    except OSError:
        return socket.gethostname()


def server_addresses(server_host: str) -> set[str]:
    """The addresses a connection from the server may come from."""
    found: set[str] = set()
    try:
        for info in socket.getaddrinfo(server_host, None):
            found.add(info[4][0])
    except OSError:
        pass
    if any(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in found):
        # a server on this host may connect from any loopback address
        found |= {"127.0.0.1", "::1"}
    return found


def _peer_allowed(peer: str, allowed: set[str] | None) -> bool:
    if allowed is None:
        return True
    if peer.startswith("::ffff:"):
        peer = peer[7:]
    return peer in allowed


class SubmitterSocket:
    """A listening socket where the server's answer for one job arrives.

    ``address`` (``host:port``) goes into ``jobs.info_type``.  Close it with
    :meth:`close` or use it as a context manager.
    """

    def __init__(self, server_host: str, server_port: int):
        host = address_towards(server_host, server_port)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._sock.bind((host, 0))
        except OSError:
            # a name that is not one of our addresses: listen everywhere, advertise the name
            self._sock.close()
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._sock.bind(("0.0.0.0", 0))
        self._sock.listen(8)
        self.host = host
        self.port = self._sock.getsockname()[1]
        self._allowed = server_addresses(server_host) or None

    @property
    def address(self) -> str:
        """``host:port``, as stored in ``jobs.info_type``."""
        return f"{self.host}:{self.port}"

    def wait(self, timeout: float | None = None, poll: float = 0.5) -> Answer | None:
        """Block until the server's answer arrives (None after ``timeout`` seconds).

        The socket is polled every ``poll`` seconds so that a signal handler runs promptly.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            self._sock.settimeout(poll if left is None else min(poll, left))
            try:
                conn, peer = self._sock.accept()
            except socket.timeout:
                continue
            answer = self._read(conn, peer[0])
            if answer is not None:
                return answer

    def _read(self, conn: socket.socket, peer: str) -> Answer | None:
        with conn:
            if not _peer_allowed(peer, self._allowed):
                log.info("ignored a connection from %s: not the OAR server", peer)
                return None
            conn.settimeout(READ_TIMEOUT)
            data = b""
            try:
                while b"\n" not in data and len(data) < MAX_LINE:
                    chunk = conn.recv(MAX_LINE)
                    if not chunk:
                        break
                    data += chunk
            except OSError as exc:
                log.info("connection from %s broken: %s", peer, exc)
            line = data.split(b"\n", 1)[0].decode("utf-8", "replace")
            answer = parse_answer(line)
            if answer is None and line.strip():
                log.info("ignored a line from %s that is not an answer: %r", peer, line[:80])
            return answer

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> "SubmitterSocket":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["ANSWER_WORDS", "Answer", "SubmitterSocket", "address_towards", "parse_answer",
           "server_addresses"]
