"""Pure list paging shared by the services: page sizes and opaque page tokens over (created_at, id) cursors."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re

from flashsale.common import errors, validation

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100

_CURSOR = re.compile(r"^([0-9]{1,15}):([A-Za-z0-9_-]{1,64})$")


@dataclasses.dataclass(frozen=True)
class Cursor:
    """Where the next page of a list ordered by (created_at, id) starts (exclusive)."""

    created_at: int
    last_id: str


def page_size(value: int) -> int:
    """The page size: 0 means the default, else 1..100."""
    if value == 0:
        return DEFAULT_PAGE_SIZE
    return validation.integer(value, "page_size", low=1, high=MAX_PAGE_SIZE)


def encode_cursor(cursor: Cursor) -> str:
    """An opaque page token for a cursor."""
    raw = f"{cursor.created_at}:{cursor.last_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> Cursor | None:
    """The cursor of a page token (None for the first page); a malformed token is INVALID_ARGUMENT."""
    if not token:
        return None
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    match = _CURSOR.match(raw)
    if match is None:
        raise errors.InvalidArgument("is not a token from a previous response", "page_token")
    return Cursor(int(match.group(1)), match.group(2))
