"""gRPC servicer of the notification service: protobuf in, domain calls, protobuf out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from flashsale.notification import messages, service
from flashsale_api.v1 import notification_pb2, notification_pb2_grpc

SERVICE_NAME = notification_pb2.DESCRIPTOR.services_by_name["NotificationService"].full_name

Context = grpc.aio.ServicerContext[Any, Any]


class NotificationServicer(notification_pb2_grpc.NotificationServiceServicer):
    """Translates NotificationService calls to the application service."""

    def __init__(self, notifications: service.NotificationService) -> None:
        self._notifications = notifications

    async def Subscribe(
        self, request: notification_pb2.SubscribeRequest, context: Context
    ) -> AsyncIterator[notification_pb2.Notification]:
        """Stream a user's notifications; initial metadata is sent once the subscription is registered."""
        sub = self._notifications.open_subscription(request.user_id)
        try:
            await context.send_initial_metadata(())
            async for note in self._notifications.stream(sub):
                yield messages.notification(note)
        finally:
            self._notifications.close_subscription(sub)

    async def GetPreferences(
        self, request: notification_pb2.GetPreferencesRequest, context: Context
    ) -> notification_pb2.Preferences:
        """A user's channel preferences."""
        return messages.preferences(await self._notifications.get_preferences(request.user_id))

    async def SetPreferences(
        self, request: notification_pb2.Preferences, context: Context
    ) -> notification_pb2.Preferences:
        """Replace a user's channel preferences."""
        prefs = await self._notifications.set_preferences(request.user_id, request.email_enabled, request.sms_enabled)
        return messages.preferences(prefs)

    async def ListDeliveries(
        self, request: notification_pb2.ListDeliveriesRequest, context: Context
    ) -> notification_pb2.ListDeliveriesResponse:
        """Every delivery of a user, failed ones included."""
        items = await self._notifications.list_deliveries(request.user_id)
        return notification_pb2.ListDeliveriesResponse(deliveries=[messages.delivery(i) for i in items])
