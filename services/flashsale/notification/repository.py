"""Notification tables: contacts, preferences and the record of every delivery."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from flashsale.common import database
from flashsale.notification import domain

MIGRATIONS = [
    """
CREATE TABLE contacts (
  user_id TEXT PRIMARY KEY,
  email TEXT NOT NULL,
  phone TEXT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE TABLE preferences (
  user_id TEXT PRIMARY KEY,
  email_enabled INTEGER NOT NULL,
  sms_enabled INTEGER NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE TABLE deliveries (
  notification_id TEXT NOT NULL,
  channel TEXT NOT NULL,
  user_id TEXT NOT NULL,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  last_error TEXT NOT NULL,
  updated_at BIGINT NOT NULL,
  PRIMARY KEY (notification_id, channel)
);
CREATE INDEX deliveries_user ON deliveries (user_id, updated_at)
"""
]

LIST_LIMIT = 500


def save_contact(tx: database.Tx, contact: domain.Contact, now_ms: int) -> None:
    """Store or replace where a user can be reached."""
    tx.execute(
        "INSERT INTO contacts (user_id, email, phone, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (user_id) DO UPDATE SET email = excluded.email, phone = excluded.phone, "
        "updated_at = excluded.updated_at",
        (contact.user_id, contact.email, contact.phone, now_ms),
    )


def get_contact(tx: database.Tx, user_id: str) -> domain.Contact | None:
    """Where a user can be reached, if known."""
    row = tx.fetchone("SELECT user_id, email, phone FROM contacts WHERE user_id = ?", (user_id,))
    return domain.Contact(str(row[0]), str(row[1]), str(row[2])) if row else None


def get_preferences(tx: database.Tx, user_id: str) -> domain.Preferences:
    """A user's preferences, the defaults when never set."""
    row = tx.fetchone("SELECT email_enabled, sms_enabled FROM preferences WHERE user_id = ?", (user_id,))
    if row is None:
        return domain.Preferences(user_id)
    return domain.Preferences(user_id, email_enabled=bool(row[0]), sms_enabled=bool(row[1]))


def save_preferences(tx: database.Tx, prefs: domain.Preferences, now_ms: int) -> None:
    """Store or replace a user's preferences."""
    tx.execute(
        "INSERT INTO preferences (user_id, email_enabled, sms_enabled, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (user_id) DO UPDATE SET email_enabled = excluded.email_enabled, "
        "sms_enabled = excluded.sms_enabled, updated_at = excluded.updated_at",
        (prefs.user_id, int(prefs.email_enabled), int(prefs.sms_enabled), now_ms),
    )


def record_deliveries(tx: database.Tx, deliveries: Sequence[domain.Delivery]) -> None:
    """Store how each channel delivery ended (replacing an earlier record of the same one)."""
    if not deliveries:
        return
    tx.executemany(
        "INSERT INTO deliveries (notification_id, channel, user_id, status, attempts, last_error, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (notification_id, channel) DO UPDATE SET status = excluded.status, "
        "attempts = excluded.attempts, last_error = excluded.last_error, updated_at = excluded.updated_at",
        [
            (d.notification_id, d.channel, d.user_id, d.status, d.attempts, d.last_error, d.updated_at_ms)
            for d in deliveries
        ],
    )


def list_deliveries(tx: database.Tx, user_id: str) -> list[domain.Delivery]:
    """A user's most recent deliveries, newest first."""
    rows = tx.fetchall(
        "SELECT notification_id, user_id, channel, status, attempts, last_error, updated_at FROM deliveries "
        "WHERE user_id = ? ORDER BY updated_at DESC, notification_id, channel LIMIT ?",
        (user_id, LIST_LIMIT),
    )
    return [
        domain.Delivery(
            notification_id=str(r[0]),
            user_id=str(r[1]),
            channel=cast(domain.Channel, str(r[2])),
            status=cast(domain.Status, str(r[3])),
            attempts=int(r[4]),
            last_error=str(r[5]),
            updated_at_ms=int(r[6]),
        )
        for r in rows
    ]
