"""The server's answer to an ``oarsub`` that waits (``-I``, ``-r``).

The waiting ``oarsub`` listens on a TCP port and stores ``host:port`` in ``jobs.info_type``;
the server connects back and writes one line (docs/execution.md, "Waiting submitters"):
``GRANTED <start>`` / ``REJECTED <reason>`` for a reservation, ``STARTED <host>`` /
``ERROR <reason>`` for an interactive job, after ``PREDICTION <start>`` lines while it
waits (its planned start, each time it changes).  A submitter that is gone is not an error for
the server: the answer is a courtesy, the database holds the decision.
"""

from __future__ import annotations

import logging
import socket

log = logging.getLogger(__name__)

ANSWERS = ("GRANTED", "REJECTED", "STARTED", "ERROR", "PREDICTION")


def parse_address(info_type: str | None) -> tuple[str, int] | None:
    """``(host, port)`` from a ``host:port`` text, or None when there is none to answer."""
    if not info_type or ":" not in info_type:
        return None
    host, _, port = info_type.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def answer(info_type: str | None, word: str, detail: str = "", timeout: float = 2.0) -> bool:
    """Send ``word detail`` to the submitter at ``info_type``; True if it was delivered."""
    if word not in ANSWERS:
        raise ValueError(f"unknown answer {word!r}")
    address = parse_address(info_type)
    if address is None:
        return False
    line = f"{word} {detail}".rstrip().replace("\n", " ") + "\n"
    try:
        with socket.create_connection(address, timeout=timeout) as sock:
            sock.sendall(line.encode())
        return True
    except OSError as exc:
        log.info("submitter at %s:%s not answered (%s): %s", *address, word, exc)
        return False
