"""Small validators for request fields; each raises InvalidArgument naming the field."""

from __future__ import annotations

import re

from flashsale.common import errors

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
_PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")


def identifier(value: str, field: str) -> str:
    """An id of 1..64 characters of [A-Za-z0-9_-]."""
    if not value:
        raise errors.InvalidArgument("is required", field)
    if not _ID.match(value):
        raise errors.InvalidArgument("must be 1..64 characters of A-Z, a-z, 0-9, '_' or '-'", field)
    return value


def email(value: str, field: str = "email") -> str:
    """A plausible e-mail address, lower-cased."""
    value = value.strip()
    if not value:
        raise errors.InvalidArgument("is required", field)
    if len(value) > 254 or not _EMAIL.match(value):
        raise errors.InvalidArgument("must be a valid e-mail address", field)
    return value.lower()


def phone(value: str, field: str = "phone") -> str:
    """An optional E.164 phone number."""
    if value and not _PHONE.match(value):
        raise errors.InvalidArgument("must be an E.164 number such as +15551234567", field)
    return value


def text(value: str, field: str, *, min_len: int = 1, max_len: int = 200) -> str:
    """A trimmed text of bounded length."""
    value = value.strip()
    if len(value) < min_len:
        raise errors.InvalidArgument("is required" if min_len else "is too short", field)
    if len(value) > max_len:
        raise errors.InvalidArgument(f"must be at most {max_len} characters", field)
    return value


def integer(value: int, field: str, *, low: int, high: int) -> int:
    """An integer within [low, high]."""
    if not low <= value <= high:
        raise errors.InvalidArgument(f"must be between {low} and {high}", field)
    return value
