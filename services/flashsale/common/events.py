"""Building and reading event envelopes."""

from __future__ import annotations

import uuid

from google.protobuf import any_pb2, message, timestamp_pb2

from flashsale.common import errors, timeutil, tracing
from flashsale_api.v1 import events_pb2


def envelope(
    event_type: str,
    key: str,
    payload: message.Message,
    source: str,
    event_id: str = "",
    occurred_at: timestamp_pb2.Timestamp | None = None,
) -> events_pb2.EventEnvelope:
    """Wrap a payload in a new envelope: a fresh event id and the current time unless given (a caller building
    many envelopes at once may pass one timestamp for all and ids of its own), and the current trace context."""
    packed = any_pb2.Any()
    packed.Pack(payload)
    env = events_pb2.EventEnvelope(
        event_id=event_id or uuid.uuid4().hex,
        type=event_type,
        occurred_at=occurred_at if occurred_at is not None else timeutil.to_timestamp(timeutil.now_ms()),
        key=key,
        source=source,
        payload=packed,
    )
    tracing.inject(env.trace_context)  # the span it is made in, when traces are on (relayed later, too)
    return env


def decode(raw: bytes | None) -> events_pb2.EventEnvelope:
    """Parse an envelope, raising PermanentEventError when it is malformed."""
    if not raw:
        raise errors.PermanentEventError("empty message")
    env = events_pb2.EventEnvelope()
    try:
        env.ParseFromString(raw)
    except Exception as exc:
        raise errors.PermanentEventError(f"not an EventEnvelope: {exc}") from None
    if not env.event_id or not env.type or not env.HasField("payload"):
        raise errors.PermanentEventError("envelope lacks event_id, type or payload")
    return env


def unpack(env: events_pb2.EventEnvelope, into: message.Message) -> None:
    """Unpack the payload into a message of the expected type, or raise PermanentEventError."""
    if not env.payload.Unpack(into):
        raise errors.PermanentEventError(
            f"{env.type}: payload is {env.payload.type_url}, expected {into.DESCRIPTOR.full_name}"
        )
