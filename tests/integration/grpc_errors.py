"""The one check of a refused gRPC call: its status code and, when named, the bad field."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import grpc
import pytest


async def refused(call: Awaitable[Any], code: grpc.StatusCode, field: str = "") -> grpc.aio.AioRpcError:
    """Await a call that must fail with `code`; a named field must lead the message and be in the trailers."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    err = caught.value
    assert err.code() == code, err.details()
    if field:
        assert (err.details() or "").startswith(f"{field}: "), err.details()
        trailers: Any = err.trailing_metadata()  # grpc.aio.Metadata: (key, value) pairs
        assert ("field", field) in tuple(trailers or ()), trailers
    return err
