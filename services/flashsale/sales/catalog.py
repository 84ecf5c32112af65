"""The port through which the sales service asks whether a product exists, and its gRPC adapter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import grpc

from flashsale.common import errors
from flashsale_api.v1 import product_pb2, product_pb2_grpc

_TEMPORARY = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
}


class ProductCatalog(Protocol):
    """Knows which products exist."""

    async def exists(self, product_id: str) -> bool:
        """True when the product exists; raise errors.TemporaryError when that cannot be told now."""
        ...


class GrpcProductCatalog:
    """ProductCatalog backed by ProductService.GetProduct."""

    def __init__(self, address: str, timeout_s: float = 5.0, interceptors: Sequence[Any] = ()) -> None:
        self._channel = grpc.aio.insecure_channel(address, interceptors=list(interceptors))
        self._stub = product_pb2_grpc.ProductServiceStub(self._channel)
        self._timeout = timeout_s

    async def exists(self, product_id: str) -> bool:
        """Ask the product service; NOT_FOUND (or a malformed id) → False, unreachable → TemporaryError."""
        try:
            await self._stub.GetProduct(product_pb2.GetProductRequest(product_id=product_id), timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return False
            if exc.code() in _TEMPORARY:
                raise errors.TemporaryError(f"product service: {exc.code().name}: {exc.details()}") from exc
            raise
        return True

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close(None)
