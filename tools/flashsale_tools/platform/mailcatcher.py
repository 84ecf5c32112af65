"""A real local SMTP server (aiosmtpd) and an HTTP SMS sink that keep what they receive, for dev and tests."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import http.server
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from aiosmtpd import controller

from flashsale_tools.platform import cache


@dataclasses.dataclass(frozen=True)
class Mail:
    """One received e-mail."""

    sender: str
    recipients: tuple[str, ...]
    subject: str
    body: str


class _Inbox:
    def __init__(self) -> None:
        self.items: list[Any] = []
        self.cond = threading.Condition()

    def add(self, item: Any) -> None:
        with self.cond:
            self.items.append(item)
            self.cond.notify_all()

    def wait_for(self, match: Callable[[Any], bool], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for item in self.items:
                    if match(item):
                        return item
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("nothing matching arrived in time")
                self.cond.wait(left)


class _SmtpHandler:
    def __init__(self, inbox: _Inbox) -> None:
        self._inbox = inbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        part = msg.get_body(preferencelist=("plain",)) if msg.is_multipart() else msg
        body = part.get_content() if part is not None else ""
        self._inbox.add(
            Mail(
                sender=envelope.mail_from,
                recipients=tuple(envelope.rcpt_tos),
                subject=str(msg.get("Subject", "")),
                body=str(body),
            )
        )
        return "250 Message accepted for delivery"


class MailCatcher:
    """An SMTP server on 127.0.0.1 that keeps every message it accepts."""

    def __init__(self, port: int = 0) -> None:
        self._inbox = _Inbox()
        self.port = port or cache.free_port()
        self._controller = controller.Controller(_SmtpHandler(self._inbox), hostname="127.0.0.1", port=self.port)

    def start(self) -> None:
        """Start accepting mail."""
        self._controller.start()

    def stop(self) -> None:
        """Stop the server."""
        self._controller.stop()

    @property
    def messages(self) -> list[Mail]:
        """Every message received so far."""
        with self._inbox.cond:
            return list(self._inbox.items)

    def wait_for(self, recipient: str, subject_contains: str = "", timeout: float = 30.0) -> Mail:
        """Wait for a message to a recipient whose subject contains a text."""
        found: Mail = self._inbox.wait_for(
            lambda m: recipient in m.recipients and subject_contains in m.subject, timeout
        )
        return found


class SmsSink:
    """An HTTP server that accepts SMS provider calls (POST JSON {to, body}) and keeps them."""

    def __init__(self, port: int = 0, status: int = 200) -> None:
        inbox = self._inbox = _Inbox()
        self.status = status
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                payload = json.loads(self.rfile.read(length) or b"{}")
                if sink.status < 300:
                    inbox.add(payload)
                self.send_response(sink.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}')

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="sms-sink", daemon=True)

    @property
    def url(self) -> str:
        """The endpoint to configure as FLASHSALE_SMS_URL."""
        return f"http://127.0.0.1:{self.port}/sms"

    def start(self) -> None:
        """Start accepting requests."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the server."""
        self._server.shutdown()
        self._server.server_close()

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Every SMS received so far."""
        with self._inbox.cond:
            return list(self._inbox.items)
