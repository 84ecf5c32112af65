"""Sending over the real channels (SMTP, the SMS provider's HTTP API) with retries and backoff."""

from __future__ import annotations

import email.message
import smtplib
from collections.abc import Callable

import httpx

from flashsale.notification import domain


class DeliveryError(Exception):
    """One attempt to deliver failed; another attempt may succeed."""


class EmailSender:
    """Sends plain-text e-mail through an SMTP server (plain SMTP, no TLS: a local relay)."""

    def __init__(self, host: str, port: int, sender: str, timeout_s: float = 10.0) -> None:
        self._host = host
        self._port = port
        self._sender = sender
        self._timeout_s = timeout_s

    def send(self, to: str, subject: str, body: str) -> None:
        """Send one message, raising DeliveryError when the server cannot be reached or refuses it."""
        message = email.message.EmailMessage()
        message["From"] = self._sender
        message["To"] = to
        message["Subject"] = subject
        message.set_content(body)
        try:
            with smtplib.SMTP(self._host, self._port, timeout=self._timeout_s) as smtp:
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"smtp {self._host}:{self._port}: {exc!r}") from exc


class SmsSender:
    """Sends SMS through the provider's HTTP API: POST {"to", "body"} as JSON; any 2xx means sent."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self._url = url
        self._timeout_s = timeout_s

    def send(self, to: str, body: str) -> None:
        """Send one text, raising DeliveryError on a transport error or a non-2xx answer."""
        try:
            response = httpx.post(self._url, json={"to": to, "body": body}, timeout=self._timeout_s)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"sms provider: {exc!r}") from exc
        if not response.is_success:
            raise DeliveryError(f"sms provider answered HTTP {response.status_code}")


def deliver(
    send: Callable[[], None], attempts: int, first_backoff_s: float, sleep: Callable[[float], None]
) -> domain.Outcome:
    """Try send up to `attempts` times with exponential backoff; report how it ended, never raise."""
    delays = domain.backoff_delays(attempts, first_backoff_s)
    last_error = ""
    for attempt in range(1, attempts + 1):
        try:
            send()
        except DeliveryError as exc:
            last_error = domain.short_error(str(exc))
        else:
            return domain.Outcome("sent", attempt, last_error)
        if attempt < attempts:
            sleep(delays[attempt - 1])
    return domain.Outcome("failed", attempts, last_error)
