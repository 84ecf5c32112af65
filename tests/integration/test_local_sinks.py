"""The local platform's mail and SMS sinks keep what they catch where a person can read it: a Maildir of the
e-mails, one JSON file per SMS (real SMTP and HTTP on loopback)."""

from __future__ import annotations

import email.message
import json
import mailbox
import smtplib
from pathlib import Path

import httpx
import pytest

from flashsale_tools.platform import mailcatcher

pytestmark = pytest.mark.integration


def test_caught_mail_lands_in_a_maildir_and_sms_in_files(tmp_path: Path) -> None:
    mail = mailcatcher.MailCatcher(folder=tmp_path / "mail")
    sms = mailcatcher.SmsSink(folder=tmp_path / "sms")
    mail.start()
    sms.start()
    try:
        message = email.message.EmailMessage()
        message["From"], message["To"], message["Subject"] = "noreply@flashsale.local", "ann@example.com", "Verify"
        message.set_content("your token: abc123")
        with smtplib.SMTP("127.0.0.1", mail.port) as smtp:
            smtp.send_message(message)
        mail.wait_for("ann@example.com", "Verify", timeout=10)
        assert httpx.post(sms.url, json={"to": "+15550100", "body": "sold out"}).status_code == 200
    finally:
        mail.stop()
        sms.stop()
    kept = list(mailbox.Maildir(tmp_path / "mail", create=False))
    assert [m["Subject"] for m in kept] == ["Verify"]
    assert "your token: abc123" in kept[0].get_payload()
    (sent,) = sorted((tmp_path / "sms").glob("*.json"))
    assert json.loads(sent.read_text()) == {"to": "+15550100", "body": "sold out"}
