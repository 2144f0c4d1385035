"""The server's answer to waiting submitters, played by a test thread.

:class:`Answerer` stands in for the part of ``oar-server`` that answers a waiting
``oarsub`` (``-I``, ``-r``): it watches the database for jobs that carry an ``info_type``
and answers each once through :func:`oar_appliance.submitter.answer`, the server's own
function, over a real TCP connection.  ``reply(job_id, info_type)`` chooses the answer:
``(word, detail)``, or None to stay silent (the job is still recorded in ``seen``).
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from oar_appliance import submitter
from tests.sqlutil import run_sql

Reply = Callable[[int, str], "tuple[str, str] | None"]


class Answerer(threading.Thread):
    def __init__(self, db_url: str, reply: Reply, timeout: float = 30.0):
        super().__init__(daemon=True)
        self.db_url = db_url
        self.reply = reply
        self.timeout = timeout
        self.seen: dict[int, str] = {}
        self.delivered: dict[int, bool] = {}
        self._stop_event = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        try:
            while not self._stop_event.is_set() and time.monotonic() < deadline:
                rows = run_sql(self.db_url, "SELECT job_id, info_type FROM jobs WHERE info_type IS NOT NULL")
                for job_id, info_type in rows:
                    if job_id in self.seen:
                        continue
                    self.seen[job_id] = info_type
                    choice = self.reply(job_id, info_type)
                    if choice is not None:
                        self.delivered[job_id] = submitter.answer(info_type, *choice)
                self._stop_event.wait(0.05)
        except BaseException as exc:  # reported by stop(), never lost in the thread
            self.error = exc

    def wait_seen(self, count: int = 1, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.seen) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"no waiting job appeared within {timeout} s")
            if self.error is not None:
                raise self.error
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)
        if self.error is not None:
            raise self.error

    def __enter__(self) -> "Answerer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def always(word: str, detail: str = "") -> Reply:
    """Answer every job the same."""
    return lambda job_id, info_type: (word, detail)


class NotificationSink(threading.Thread):
    """Takes the server's notifications (``notify.notify_server``) on a free loopback port,
    so that commands see a server that listens; ``tags`` lists what arrived."""

    def __init__(self):
        super().__init__(daemon=True)
        import zmq

        self._zmq = zmq
        self._context = zmq.Context()
        # notify_server sends from a DEALER, as to the server's ROUTER
        self._sock = self._context.socket(zmq.ROUTER)
        self.port = self._sock.bind_to_random_port("tcp://127.0.0.1")
        self.tags: list[str] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        poller = self._zmq.Poller()
        poller.register(self._sock, self._zmq.POLLIN)
        while not self._stop_event.is_set():
            if poller.poll(50):
                self.tags.append(self._sock.recv_multipart()[-1].decode())

    def wait_tag(self, tag: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while tag not in self.tags:
            if time.monotonic() > deadline:
                raise AssertionError(f"the server got no {tag} notification within {timeout} s ({self.tags})")
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)
        self._sock.close(linger=0)
        self._context.term()

    def __enter__(self) -> "NotificationSink":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
