"""The end report's sender against a real zmq ROUTER in the test (standing in for the server)."""

from __future__ import annotations

import threading

import pytest
import zmq

from oar_appliance.nodeside.report import end_report, send_once, send_until_acknowledged
from tests.helpers import free_port
from tests.nodeside.conftest import ReportServer


def test_ipv6_server_address():
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.IPV6, 1)
    router.setsockopt(zmq.LINGER, 0)
    try:
        try:
            port = router.bind_to_random_port("tcp://[::1]")
        except zmq.ZMQError:
            pytest.skip("no IPv6 loopback on this machine")

        def serve():
            if router.poll(10000):
                frames = router.recv_multipart()
                router.send_multipart([frames[0], b"", b'{"ack": true}'])

        thread = threading.Thread(target=serve)
        thread.start()
        assert send_once("::1", port, end_report(1, "c", 0, 0, "h"), 5) == {"ack": True}
        thread.join(10)
    finally:
        router.close()
        context.term()


def test_unanswered_tries_back_off_until_a_server_answers():
    port = free_port()
    pauses = []
    server = None

    def sleep(seconds):  # the pauses between tries; the server comes up after the third
        nonlocal server
        pauses.append(seconds)
        if len(pauses) == 3:
            server = ReportServer(port=port)

    try:
        assert send_until_acknowledged("127.0.0.1", port, end_report(5, "c", 3, None, "h"),
                                       try_timeout=0.3, first_backoff=0.5, max_backoff=1.5,
                                       sleep=sleep)
        assert pauses == [0.5, 1.0, 1.5]
        assert server.wait_report(5)["oarexec_code"] == 3
    finally:
        if server is not None:
            server.stop()


def test_a_refusal_stops_the_tries():
    server = ReportServer(answer=lambda msg: {"ack": False, "error": "wrong challenge"})
    try:
        assert send_until_acknowledged("127.0.0.1", server.port, end_report(5, "bad", 0, 0, "h"),
                                       try_timeout=2, sleep=lambda s: pytest.fail("retried")) is False
    finally:
        server.stop()
