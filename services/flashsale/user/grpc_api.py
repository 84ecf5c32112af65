"""gRPC servicer of the user service: protobuf in, domain calls, protobuf out."""

from __future__ import annotations

import json
from typing import Any

import grpc

from flashsale.common import timeutil
from flashsale.user import messages, service
from flashsale_api.v1 import user_pb2, user_pb2_grpc

SERVICE_NAME = user_pb2.DESCRIPTOR.services_by_name["UserService"].full_name

Context = grpc.aio.ServicerContext[Any, Any]


class UserServicer(user_pb2_grpc.UserServiceServicer):
    """Translates UserService calls to the application service."""

    def __init__(self, users: service.UserService) -> None:
        self._users = users

    async def Register(self, request: user_pb2.RegisterRequest, context: Context) -> user_pb2.User:
        """Create an unverified account."""
        registered = await self._users.register(request.email, request.password, request.phone)
        return messages.user(registered.user)

    async def VerifyEmail(self, request: user_pb2.VerifyEmailRequest, context: Context) -> user_pb2.User:
        """Mark an account verified with its token."""
        return messages.user(await self._users.verify_email(request.token))

    async def Login(self, request: user_pb2.LoginRequest, context: Context) -> user_pb2.LoginResponse:
        """Check a password and return an access token."""
        session = await self._users.login(request.email, request.password)
        return user_pb2.LoginResponse(
            access_token=session.access_token,
            expires_at=timeutil.to_timestamp(session.expires_at_ms),
            user=messages.user(session.user),
        )

    async def GetUser(self, request: user_pb2.GetUserRequest, context: Context) -> user_pb2.User:
        """An account by id."""
        return messages.user(await self._users.get_user(request.user_id))

    async def ValidateToken(
        self, request: user_pb2.ValidateTokenRequest, context: Context
    ) -> user_pb2.ValidateTokenResponse:
        """Whose an access token is, with the current verified flag."""
        identity = await self._users.validate_token(request.token)
        return user_pb2.ValidateTokenResponse(
            user_id=identity.user_id, email=identity.email, verified=identity.verified
        )

    async def GetSigningKeys(self, request: user_pb2.GetSigningKeysRequest, context: Context) -> user_pb2.SigningKeys:
        """The public keys of access tokens, as a JWKS."""
        return user_pb2.SigningKeys(jwks_json=json.dumps(self._users.signing_keys()))
