"""The caller's notifications: live SSE stream, channel preferences, delivery log."""

from __future__ import annotations

import asyncio

import fastapi
from fastapi import responses

from flashsale.gateway import deps, mappers, schemas, sse
from flashsale_api.v1 import notification_pb2

_ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": schemas.ErrorBody} for status in (400, 401, 429, 503, 504)
}


def _render(msg: notification_pb2.Notification) -> tuple[str, schemas.Notification]:
    return msg.kind or "message", mappers.notification(msg)


def router() -> fastapi.APIRouter:
    """Routes of the notification service."""
    r = fastapi.APIRouter(tags=["notifications"], responses=_ERRORS)

    @r.get(
        "/v1/notifications/stream",
        response_class=responses.StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}, "description": "event: <kind>, data: Notification"}},
    )
    async def stream(request: fastapi.Request, token: deps.Bearer, ctx: deps.Ctx) -> responses.StreamingResponse:
        """Server-Sent Events: one `event: <kind>` + `data: <Notification JSON>` per notification.

        The stream opens with the comment `: connected` once the subscription is live, and carries
        `: keep-alive` comments every 15 s.
        """
        caller = await ctx.authenticate(request, token)
        call = ctx.clients.notifications.Subscribe(
            notification_pb2.SubscribeRequest(user_id=caller.user_id), timeout=ctx.gateway.stream_max_s
        )
        try:
            # The notification service sends initial metadata once the subscription is registered.
            await asyncio.wait_for(call.wait_for_connection(), timeout=ctx.timeout)
        except BaseException:
            call.cancel()
            raise
        events = sse.stream(call, _render, ctx.gateway.sse_keepalive_s, ctx.stopping)
        return responses.StreamingResponse(
            events,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @r.get("/v1/notifications/preferences")
    async def get_preferences(request: fastapi.Request, token: deps.Bearer, ctx: deps.Ctx) -> schemas.Preferences:
        """The caller's notification channels."""
        caller = await ctx.authenticate(request, token)
        rpc = notification_pb2.GetPreferencesRequest(user_id=caller.user_id)
        return mappers.preferences(await ctx.clients.notifications.GetPreferences(rpc, timeout=ctx.timeout))

    @r.put("/v1/notifications/preferences")
    async def set_preferences(
        request: fastapi.Request, body: schemas.PreferencesIn, token: deps.Bearer, ctx: deps.Ctx
    ) -> schemas.Preferences:
        """Choose the caller's notification channels."""
        caller = await ctx.authenticate(request, token)
        rpc = notification_pb2.Preferences(
            user_id=caller.user_id, email_enabled=body.email_enabled, sms_enabled=body.sms_enabled
        )
        return mappers.preferences(await ctx.clients.notifications.SetPreferences(rpc, timeout=ctx.timeout))

    @r.get("/v1/notifications/deliveries")
    async def list_deliveries(request: fastapi.Request, token: deps.Bearer, ctx: deps.Ctx) -> schemas.DeliveryList:
        """Every delivery attempt for the caller, failed ones included."""
        caller = await ctx.authenticate(request, token)
        rpc = notification_pb2.ListDeliveriesRequest(user_id=caller.user_id)
        return mappers.deliveries(await ctx.clients.notifications.ListDeliveries(rpc, timeout=ctx.timeout))

    return r
