"""Sending over the real channels (SMTP, the SMS provider's HTTP API) with retries and backoff."""

from __future__ import annotations

import contextlib
import email.message
import logging
import smtplib
import threading
import time
import typing
from collections.abc import Callable

import httpx
import prometheus_client

from flashsale.common import metrics, timeutil
from flashsale.notification import domain

log = logging.getLogger(__name__)


class DeliveryError(Exception):
    """One attempt to deliver failed; another attempt may succeed."""


class EmailSender:
    """Sends plain-text e-mail through an SMTP server (plain SMTP, no TLS: a local relay) over one session kept open
    between messages (a connect and greeting per message cost more than the message); a session the server closed
    meanwhile is replaced at once, without counting as a failed attempt. Thread-safe."""

    def __init__(self, host: str, port: int, sender: str, timeout_s: float = 10.0) -> None:
        self._host = host
        self._port = port
        self._sender = sender
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._session: smtplib.SMTP | None = None

    def send(self, to: str, subject: str, body: str) -> None:
        """Send one message, raising DeliveryError when the server cannot be reached or refuses it."""
        message = email.message.EmailMessage()
        message["From"] = self._sender
        message["To"] = to
        message["Subject"] = subject
        message.set_content(body)
        with self._lock:
            try:
                self._send(message)
            except (OSError, smtplib.SMTPException) as exc:
                self._drop()
                raise DeliveryError(f"smtp {self._host}:{self._port}: {exc!r}") from exc

    def _send(self, message: email.message.EmailMessage) -> None:
        if self._session is not None:
            try:
                self._session.send_message(message)
                return
            except (smtplib.SMTPServerDisconnected, ConnectionError):
                self._drop()  # the server closed the kept session (idle timeout, restart): a new one, once
        self._session = smtplib.SMTP(self._host, self._port, timeout=self._timeout_s)
        self._session.send_message(message)

    def _drop(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                session.close()

    def close(self) -> None:
        """End the kept session (QUIT), if any."""
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                session.quit()


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


class Channels:
    """The e-mail sender and, when configured, the SMS sender, with the retry schedule of every delivery."""

    def __init__(
        self,
        email: EmailSender,
        sms: SmsSender | None,
        attempts: int,
        first_backoff_s: float,
        sleep: Callable[[float], None] = time.sleep,
        registry: metrics.Registry | None = None,
    ) -> None:
        self._delivered = prometheus_client.Counter(
            "flashsale_notification_deliveries_total",
            "Notification deliveries ended, by channel and result (sent, failed after every attempt).",
            ("channel", "result"),
            registry=registry if registry is not None else metrics.Registry(),
        )
        for channel in typing.get_args(domain.Channel):  # every series exists from the start, at 0
            for result in typing.get_args(domain.Status):
                self._delivered.labels(channel, result)
        self._email = email
        self._sms = sms
        self._attempts = attempts
        self._first_backoff_s = first_backoff_s
        self._sleep = sleep

    @property
    def sms_configured(self) -> bool:
        """Whether SMS can be sent (an SMS provider is configured)."""
        return self._sms is not None

    def send(
        self, channel: domain.Channel, note: domain.Notification, contact: domain.Contact | None
    ) -> domain.Delivery:
        """Send a notification on one channel, retrying with backoff (blocking); the record of how it ended."""
        assert contact is not None  # channels() chose none without a contact
        if channel == "email":

            def send() -> None:
                self._email.send(contact.email, note.title, note.body)

        else:
            sms = self._sms
            assert sms is not None  # channels() chose no SMS without a provider

            def send() -> None:
                sms.send(contact.phone, domain.sms_text(note))

        outcome = deliver(send, self._attempts, self._first_backoff_s, self._sleep)
        self._delivered.labels(channel, outcome.status).inc()
        fields = {"notification_id": note.notification_id, "channel": channel, "kind": note.kind}
        if outcome.status == "sent":
            log.info("notification sent", extra={**fields, "attempts": outcome.attempts})
        else:
            log.warning(
                "notification failed", extra={**fields, "attempts": outcome.attempts, "error": outcome.last_error}
            )
        return domain.Delivery(
            notification_id=note.notification_id,
            user_id=note.user_id,
            channel=channel,
            status=outcome.status,
            attempts=outcome.attempts,
            last_error=outcome.last_error,
            updated_at_ms=timeutil.now_ms(),
        )
