"""A real local SMTP server (aiosmtpd) and an HTTP SMS sink that keep what they receive, for dev and tests; given a
folder, they also keep it where a person can read it (a Maildir of the e-mails, one JSON file per SMS)."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import http.server
import itertools
import json
import mailbox
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from aiosmtpd import controller

from flashsale_tools.platform import cache


@dataclasses.dataclass(frozen=True)
class Mail:
    """One received e-mail."""

    sender: str
    recipients: tuple[str, ...]
    subject: str
    body: str


class Inbox(Protocol):
    """Where e-mails can be waited for: a MailCatcher, or the Maildir another process's catcher keeps."""

    def wait_for(self, recipient: str, subject_contains: str = "", timeout: float = 30.0) -> Mail:
        """The first e-mail to `recipient` whose subject contains the text."""
        ...


def _parsed(raw: bytes, sender: str, recipients: tuple[str, ...]) -> Mail:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    part = msg.get_body(preferencelist=("plain",)) if msg.is_multipart() else msg
    body = part.get_content() if part is not None else ""
    return Mail(sender=sender, recipients=recipients, subject=str(msg.get("Subject", "")), body=str(body))


class MaildirInbox:
    """The Maildir a running platform's MailCatcher keeps (`flashsale up` keeps one under its data folder), read
    by polling: what a load test against a platform it did not start reads verification e-mails from."""

    def __init__(self, folder: Path, poll_s: float = 0.1) -> None:
        if not (folder / "new").is_dir() and not (folder / "cur").is_dir():
            raise FileNotFoundError(f"no Maildir at {folder}")
        self._box = mailbox.Maildir(folder, create=False)
        self._poll_s = poll_s
        self._seen: dict[str, Mail] = {}
        self._lock = threading.Lock()  # shoppers wait from many threads; one reads the folder at a time

    def _read(self) -> list[Mail]:
        with self._lock:
            for key in self._box.iterkeys():
                if key not in self._seen:
                    raw = self._box.get_bytes(key)
                    to = email.message_from_bytes(raw, policy=email.policy.default).get("To", "")
                    self._seen[key] = _parsed(raw, "", tuple(a.strip() for a in str(to).split(",")))
            return list(self._seen.values())

    def wait_for(self, recipient: str, subject_contains: str = "", timeout: float = 30.0) -> Mail:
        """Wait for a message to a recipient whose subject contains a text."""
        deadline = time.monotonic() + timeout
        while True:
            for mail in self._read():
                if recipient in mail.recipients and subject_contains in mail.subject:
                    return mail
            if time.monotonic() > deadline:
                raise TimeoutError(f"no e-mail to {recipient} in {timeout:.0f}s")
            time.sleep(self._poll_s)


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
    def __init__(self, inbox: _Inbox, maildir: mailbox.Maildir | None) -> None:
        self._inbox = inbox
        self._maildir = maildir

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self._maildir is not None:
            self._maildir.add(envelope.content)
        self._inbox.add(_parsed(envelope.content, envelope.mail_from, tuple(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"


class MailCatcher:
    """An SMTP server (on 127.0.0.1 unless `host` says otherwise) that keeps every message it accepts (in a Maildir
    at `folder` too, when given: any mail reader opens it, e.g. `mutt -f FOLDER`)."""

    def __init__(self, port: int = 0, folder: Path | None = None, host: str = "127.0.0.1") -> None:
        self._inbox = _Inbox()
        self.port = port or cache.free_port()
        self.folder = folder
        if folder is not None:
            folder.parent.mkdir(parents=True, exist_ok=True)  # Maildir creates its folder, not the parents
        maildir = mailbox.Maildir(folder, create=True) if folder is not None else None
        self._controller = controller.Controller(_SmtpHandler(self._inbox, maildir), hostname=host, port=self.port)

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
    """An HTTP server that accepts SMS provider calls (POST JSON {to, body}) and keeps them (one JSON file each in
    `folder` too, when given)."""

    def __init__(self, port: int = 0, status: int = 200, folder: Path | None = None) -> None:
        inbox = self._inbox = _Inbox()
        self.status = status
        self.folder = folder
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        numbers = itertools.count(1)
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                payload = json.loads(self.rfile.read(length) or b"{}")
                if sink.status < 300:
                    inbox.add(payload)
                    if sink.folder is not None:
                        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{next(numbers):05d}.json"
                        (sink.folder / name).write_text(json.dumps(payload, indent=2) + "\n")
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
