"""gRPC servicer of the notification service: protobuf in, domain calls, protobuf out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from flashsale.common import timeutil
from flashsale.notification import domain, service
from flashsale_api.v1 import notification_pb2, notification_pb2_grpc

SERVICE_NAME = notification_pb2.DESCRIPTOR.services_by_name["NotificationService"].full_name

Context = grpc.aio.ServicerContext[Any, Any]


def notification_message(note: domain.Notification) -> notification_pb2.Notification:
    """A notification as protobuf."""
    return notification_pb2.Notification(
        notification_id=note.notification_id,
        user_id=note.user_id,
        kind=note.kind,
        title=note.title,
        body=note.body,
        data=dict(note.data),
        created_at=timeutil.to_timestamp(note.created_at_ms),
    )


def preferences_message(prefs: domain.Preferences) -> notification_pb2.Preferences:
    """Preferences as protobuf."""
    return notification_pb2.Preferences(
        user_id=prefs.user_id, email_enabled=prefs.email_enabled, sms_enabled=prefs.sms_enabled
    )


def delivery_message(item: domain.Delivery) -> notification_pb2.Delivery:
    """A delivery record as protobuf."""
    return notification_pb2.Delivery(
        notification_id=item.notification_id,
        channel=item.channel,
        status=item.status,
        attempts=item.attempts,
        last_error=item.last_error,
        updated_at=timeutil.to_timestamp(item.updated_at_ms),
    )


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
                yield notification_message(note)
        finally:
            self._notifications.close_subscription(sub)

    async def GetPreferences(
        self, request: notification_pb2.GetPreferencesRequest, context: Context
    ) -> notification_pb2.Preferences:
        """A user's channel preferences."""
        return preferences_message(await self._notifications.get_preferences(request.user_id))

    async def SetPreferences(
        self, request: notification_pb2.Preferences, context: Context
    ) -> notification_pb2.Preferences:
        """Replace a user's channel preferences."""
        prefs = await self._notifications.set_preferences(request.user_id, request.email_enabled, request.sms_enabled)
        return preferences_message(prefs)

    async def ListDeliveries(
        self, request: notification_pb2.ListDeliveriesRequest, context: Context
    ) -> notification_pb2.ListDeliveriesResponse:
        """Every delivery of a user, failed ones included."""
        items = await self._notifications.list_deliveries(request.user_id)
        return notification_pb2.ListDeliveriesResponse(deliveries=[delivery_message(i) for i in items])
