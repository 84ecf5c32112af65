"""The notification service's e-mail sender against a real SMTP server (aiosmtpd): one session for many messages, a
session the server dropped replaced at once, an unreachable server refused as a failed attempt."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd import controller as smtp_controller

from flashsale.notification import delivery
from flashsale_tools.platform import cache

pytestmark = pytest.mark.integration


class Counting:
    """An aiosmtpd handler counting sessions (EHLO greetings) and keeping the recipients of each message."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.greetings = 0
        self.recipients: list[str] = []

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        with self.lock:
            self.greetings += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.recipients.extend(envelope.rcpt_tos)
        return "250 Message accepted for delivery"


@pytest.fixture
def port() -> int:
    return cache.free_port()  # below the ephemeral range: nobody's outgoing connection takes it between servers


@pytest.fixture
def served(port: int) -> Iterator[tuple[Counting, smtp_controller.Controller]]:
    handler = Counting()
    server = smtp_controller.Controller(handler, hostname="127.0.0.1", port=port)
    server.start()
    try:
        yield handler, server
    finally:
        server.stop()


def test_many_messages_travel_over_one_session(served: tuple[Counting, smtp_controller.Controller], port: int) -> None:
    handler, _ = served
    sender = delivery.EmailSender("127.0.0.1", port, "shop@example.test")
    for n in range(5):
        sender.send(f"u{n}@example.test", "Your order", "Pay within 15 minutes.")
    sender.close()
    assert handler.recipients == [f"u{n}@example.test" for n in range(5)]
    assert handler.greetings == 1


def test_a_session_the_server_dropped_is_replaced_within_the_same_attempt(port: int) -> None:
    first, second = Counting(), Counting()
    server = smtp_controller.Controller(first, hostname="127.0.0.1", port=port)
    server.start()
    sender = delivery.EmailSender("127.0.0.1", port, "shop@example.test")
    try:
        sender.send("a@example.test", "One", "first")
    finally:
        server.stop()  # the kept session dies with the server
    server = smtp_controller.Controller(second, hostname="127.0.0.1", port=port)
    server.start()
    try:
        sender.send("b@example.test", "Two", "second")  # no DeliveryError: the dead session is not an attempt
        sender.close()
    finally:
        server.stop()
    assert first.recipients == ["a@example.test"]
    assert (second.recipients, second.greetings) == (["b@example.test"], 1)


def test_an_unreachable_server_is_a_failed_attempt(port: int) -> None:
    sender = delivery.EmailSender("127.0.0.1", port, "shop@example.test", timeout_s=2.0)
    with pytest.raises(delivery.DeliveryError, match=f"127.0.0.1:{port}"):
        sender.send("a@example.test", "One", "nobody listens")
