"""HTTP metrics of the gateway: requests and their duration by method, route template and status (never a raw path:
no id reaches a label), and the requests the rate limiter refused."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import prometheus_client

from flashsale.common import metrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]
UNMATCHED = "unmatched"  # the route label of a path no route matched (a 404 of any path)


class HttpMetrics:
    """http_requests_total, http_request_duration_seconds and flashsale_gateway_rate_limited_total."""

    def __init__(self, reg: metrics.Registry) -> None:
        self.registry = reg
        self._requests = prometheus_client.Counter(
            "http_requests_total",
            "HTTP requests answered by the gateway.",
            ("method", "handler", "status"),
            registry=reg,
        )
        self._seconds = prometheus_client.Histogram(
            "http_request_duration_seconds",
            "Time from a request's arrival to the end of its response (a stream: until it ends).",
            ("method", "handler"),
            buckets=metrics.LATENCY_BUCKETS,
            registry=reg,
        )
        self._limited = prometheus_client.Counter(
            "flashsale_gateway_rate_limited_total", "Requests refused by the rate limiter (429).", registry=reg
        )

    def rate_limited(self) -> None:
        """Count a request the rate limiter refused."""
        self._limited.inc()

    def middleware(self, app: Asgi) -> Asgi:
        """An ASGI middleware recording every HTTP request of `app`."""

        async def record(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            began = time.perf_counter()
            status = [500]

            async def sending(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status[0] = int(message["status"])
                await send(message)

            try:
                await app(scope, receive, sending)
            finally:
                route = scope.get("route")
                handler = getattr(route, "path", UNMATCHED)
                method = str(scope.get("method", ""))
                self._requests.labels(method, handler, str(status[0])).inc()
                self._seconds.labels(method, handler).observe(time.perf_counter() - began)

        return record

    def exposition(self) -> tuple[bytes, str]:
        """The registry in the Prometheus text format, and its content type."""
        return prometheus_client.generate_latest(self.registry), prometheus_client.CONTENT_TYPE_LATEST
