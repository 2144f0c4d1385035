"""A real SMTP server for notification tests (aiosmtpd on a free loopback port)."""

from __future__ import annotations

import email

import pytest

from tests.helpers import free_port


@pytest.fixture
def smtp_server():
    """A real SMTP server on a free loopback port; ``.messages`` it received as
    ``(mail_from, rcpt_tos, message)``, ``.address`` its ``host:port``."""
    from aiosmtpd.controller import Controller

    class Keep:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                                  email.message_from_bytes(envelope.content)))
            return "250 OK"

    handler = Keep()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    handler.address = f"127.0.0.1:{controller.port}"
    yield handler
    controller.stop()
