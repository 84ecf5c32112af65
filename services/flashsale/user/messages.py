"""The user service's protobuf mapping: the gRPC account and the events it emits."""

from __future__ import annotations

from flashsale.common import events, timeutil, topics
from flashsale.user import domain
from flashsale_api.v1 import events_pb2, user_pb2

SOURCE = "user"


def user(value: domain.User) -> user_pb2.User:
    """An account as its gRPC message."""
    return user_pb2.User(
        user_id=value.user_id,
        email=value.email,
        phone=value.phone,
        verified=value.verified,
        created_at=timeutil.to_timestamp(value.created_at_ms),
    )


def user_registered(value: domain.User, verification_token: str) -> events_pb2.EventEnvelope:
    """The user.registered event of a new account, with the plain verification token to send it."""
    payload = events_pb2.UserRegistered(
        user_id=value.user_id, email=value.email, phone=value.phone, verification_token=verification_token
    )
    return events.envelope(topics.USER_REGISTERED, value.user_id, payload, SOURCE)


def user_verified(value: domain.User) -> events_pb2.EventEnvelope:
    """The user.verified event of an account whose e-mail address was just verified."""
    payload = events_pb2.UserVerified(user_id=value.user_id, email=value.email)
    return events.envelope(topics.USER_VERIFIED, value.user_id, payload, SOURCE)
