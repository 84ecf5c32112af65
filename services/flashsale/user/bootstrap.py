"""Wiring of the user service process."""

from __future__ import annotations

from flashsale.common import grpc_server, process, runtime
from flashsale.common import settings as settings_mod
from flashsale.user import grpc_api, passwords, repository, service, tokens
from flashsale_api.v1 import user_pb2_grpc

NAME = "user"


def build(settings: settings_mod.Settings) -> grpc_server.GrpcService:
    """Build the user service (inside the running event loop); fails fast without FLASHSALE_JWT_SECRET."""
    secret = settings_mod.require_secret(settings.jwt_secret, "jwt_secret")
    rt = runtime.build_runtime(NAME, settings, settings.user_addr, [grpc_api.SERVICE_NAME], repository.MIGRATIONS)
    users = service.UserService(
        rt.db,
        rt.relay,
        tokens.TokenIssuer(secret, settings.jwt_ttl_s),
        passwords.PasswordHasher(),
        settings.verification_ttl_s,
    )
    servicer = grpc_api.UserServicer(users)
    rt.server.register(lambda server: user_pb2_grpc.add_UserServiceServicer_to_server(servicer, server))
    return rt.server


async def serve(settings: settings_mod.Settings) -> None:
    """Run the user service until SIGTERM or SIGINT."""
    await build(settings).run_until_signalled()


def main() -> None:
    """Run the user service until SIGTERM or SIGINT (exit 2 naming the variable on a bad setting)."""
    process.main(NAME, settings_mod.load_settings, serve)
