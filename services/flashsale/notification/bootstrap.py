"""Wiring of the notification service process."""

from __future__ import annotations

import asyncio
import uuid

from flashsale.common import grpc_server, process, runtime, topics
from flashsale.common import settings as settings_mod
from flashsale.notification import consumers, delivery, grpc_api, live, repository, service
from flashsale_api.v1 import notification_pb2_grpc

NAME = "notification"
GROUP = "flashsale-notification"
SUBSCRIPTIONS = (topics.USERS, topics.ORDERS, topics.SALES)


def build(settings: settings_mod.Settings) -> grpc_server.GrpcService:
    """Build the notification service (inside the running event loop)."""
    rt = runtime.build_runtime(
        NAME, settings, settings.notification_addr, [grpc_api.SERVICE_NAME], repository.MIGRATIONS
    )
    hub = live.Hub(asyncio.get_running_loop())
    rt.server.add_background(hub.run)
    sms = delivery.SmsSender(settings.sms_url) if settings.sms_url else None
    email = delivery.EmailSender(settings.smtp_host, settings.smtp_port, settings.smtp_sender)
    channels = delivery.Channels(
        email, sms, settings.delivery_attempts, settings.delivery_backoff_s, registry=rt.registry
    )
    notifications = service.NotificationService(rt.db, hub, channels)
    rt.consume(SUBSCRIPTIONS, consumers.deliveries(notifications), group=GROUP)
    rt.consume(
        SUBSCRIPTIONS,
        consumers.LiveHandler(notifications.publish_live, hub),
        group=f"{GROUP}-live-{uuid.uuid4().hex}",
        offset_reset="latest",
    )

    async def close_mail() -> None:
        await asyncio.to_thread(email.close)

    rt.server.on_shutdown(close_mail)  # after the consumers, which send
    servicer = grpc_api.NotificationServicer(notifications)
    rt.server.register(lambda server: notification_pb2_grpc.add_NotificationServiceServicer_to_server(servicer, server))
    return rt.server


async def serve(settings: settings_mod.Settings) -> None:
    """Run the notification service until SIGTERM or SIGINT."""
    await build(settings).run_until_signalled()


def main() -> None:
    """Run the notification service until SIGTERM or SIGINT (exit 2 naming the variable on a bad setting)."""
    process.main(NAME, settings_mod.load_settings, serve)
