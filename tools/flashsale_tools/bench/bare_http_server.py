"""(i)'s server: a bare FastAPI + uvicorn POST endpoint of the gateway's purchase shape, in a process of its own.

It reads the bearer header and the JSON body (quantity, request_id) and answers a decision-shaped JSON body with 201,
deciding nothing. Run as `python -m flashsale_tools.bench.bare_http_server`; it prints `PORT <n>` once serving and
stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import datetime
import sys
from typing import Annotated

import fastapi
import pydantic
import uvicorn
from fastapi import responses

from flashsale_tools.platform import cache


class PurchaseIn(pydantic.BaseModel):
    """The gateway's purchase body."""

    quantity: int = pydantic.Field(default=1, ge=1)
    request_id: str = pydantic.Field(default="", max_length=64)


def build_app() -> fastapi.FastAPI:
    """The app: one POST route of the gateway's purchase shape."""
    app = fastapi.FastAPI()

    @app.post("/v1/sales/{sale_id}/purchases", status_code=201)
    async def purchase(
        sale_id: str, body: PurchaseIn, authorization: Annotated[str, fastapi.Header()]
    ) -> responses.JSONResponse:
        if not authorization.startswith("Bearer "):
            raise fastapi.HTTPException(401, "a bearer token is required")
        decided = datetime.datetime.now(datetime.UTC).isoformat()
        answer = {
            "request_id": body.request_id,
            "sale_id": sale_id,
            "quantity": body.quantity,
            "outcome": "ACCEPTED",
            "reservation_id": "r",
            "decided_at": decided,
        }
        return responses.JSONResponse(answer, status_code=201)

    return app


async def serve(host: str = "127.0.0.1") -> None:
    """Serve on a free port until SIGTERM or SIGINT (uvicorn's own signal handling), binding it the way the gateway
    does (uvicorn's own listening socket)."""
    port = cache.free_port()
    config = uvicorn.Config(build_app(), host=host, port=port, log_config=None, access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started and not serving.done():  # noqa: ASYNC110 (uvicorn offers a flag, no event)
        await asyncio.sleep(0.05)
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()
    await serving


def main() -> None:
    """Entry point of the child process."""
    asyncio.run(serve())


if __name__ == "__main__":
    main()
