"""Wake-up notifications to oar-server (``SERVER_HOSTNAME``:``SERVER_PORT``).

A notification is a hint, never the only carrier of a fact: the server decides from the
database.  A tag is one UTF-8 frame (``Qsub``, ``Term``, ``ChState``...) sent by a ``DEALER``
to the server's ``ROUTER`` (docs/execution.md); no reply is expected.  The send waits
at most ``timeout_ms`` for a connection to the server, so a command can say when the
server is not running instead of hanging.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def notify_server(host: str, port: int, tag: str, timeout_ms: int = 250) -> bool:
    """Send ``tag`` to the server; True if a connected server took it."""
    import zmq  # heavy: only the commands that notify pay for it

    context = zmq.Context.instance()
    sock = context.socket(zmq.DEALER)
    try:
        # a running server accepts within a few ms even on a busy site; an absent one
        # costs the submitter this long once
        sock.setsockopt(zmq.LINGER, timeout_ms)
        # queue only on a completed connection: no server, no silent drop
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.SNDTIMEO, timeout_ms)
        sock.connect(f"tcp://{host}:{int(port)}")
        sock.send_string(tag)
        return True
    except zmq.ZMQError as exc:
        log.debug("notification %s to %s:%s not delivered: %s", tag, host, port, exc)
        return False
    finally:
        sock.close()
