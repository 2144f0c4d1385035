"""oarexec's end-of-job report to the server: a fact, so it is retried until acknowledged.

One JSON frame on a zmq ``REQ`` socket to ``SERVER_HOSTNAME``:``SERVER_PORT``; the server
answers ``{"ack": true}``, or ``{"ack": false, "error": "..."}`` when it refuses the report
(wrong challenge): retrying would not change its mind, so the sender stops there.  A REQ
socket that got no answer is unusable, so every try uses a fresh socket with a bounded
wait; the pause between tries doubles up to ``max_backoff``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable

log = logging.getLogger(__name__)

__all__ = ["end_report", "send_until_acknowledged"]


def end_report(job_id: int, challenge: str, oarexec_code: int, user_status: int | None,
               host: str) -> dict[str, Any]:
    """The report as docs/execution.md defines it."""
    return {
        "kind": "oarexec_end",
        "job_id": int(job_id),
        "challenge": challenge,
        "oarexec_code": int(oarexec_code),
        "user_status": user_status,
        "host": host,
    }


def send_once(host: str, port: int, message: dict[str, Any], timeout: float) -> dict[str, Any] | None:
    """One try: the server's answer as a dict, or None when none came within ``timeout``."""
    import zmq

    context = zmq.Context.instance()
    sock = context.socket(zmq.REQ)
    try:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDTIMEO, int(timeout * 1000))
        sock.setsockopt(zmq.RCVTIMEO, int(timeout * 1000))
        sock.connect(f"tcp://{host}:{int(port)}")
        sock.send(json.dumps(message).encode())
        raw = sock.recv()
    except zmq.ZMQError as exc:
        log.info("no answer from %s:%s: %s", host, port, exc)
        return None
    finally:
        sock.close()
    try:
        answer = json.loads(raw)
    except ValueError:
        log.warning("unreadable answer from the server: %r", raw[:200])
        return None
    return answer if isinstance(answer, dict) else None


def send_until_acknowledged(
    host: str,
    port: int,
    message: dict[str, Any],
    try_timeout: float = 5.0,
    first_backoff: float = 0.5,
    max_backoff: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Send ``message`` until the server answers; True for ``{"ack": true}``, False for a
    refusal.  Never gives up otherwise: the job's end is only known through this report."""
    backoff = first_backoff
    attempt = 0
    while True:
        attempt += 1
        answer = send_once(host, port, message, try_timeout)
        if answer is not None:
            if answer.get("ack") is True:
                log.info("report acknowledged after %d attempt(s)", attempt)
                return True
            if answer.get("ack") is False:
                log.error("the server refused the report: %s", answer.get("error", "no reason given"))
                return False
            log.warning("unexpected answer from the server: %r", answer)
        sleep(backoff)
        backoff = min(backoff * 2, max_backoff)
