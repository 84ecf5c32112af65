"""(i)'s server: a bare FastAPI + uvicorn POST endpoint of the gateway's purchase shape, in a process of its own.

It reads the bearer header and the JSON body (quantity, request_id) and answers a decision-shaped JSON body with 201,
deciding nothing. Run as `python -m flashsale_tools.bench.bare_http_server`; it prints `PORT <n>` once serving and
stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import datetime
import socket
import sys
from typing import Annotated

import fastapi
import pydantic
import uvicorn
from fastapi import responses


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
    """Serve on a free port until SIGTERM or SIGINT (uvicorn's own signal handling)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(2048)  # connections wait in the backlog until uvicorn accepts them
    config = uvicorn.Config(build_app(), log_config=None, access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    sys.stdout.write(f"PORT {sock.getsockname()[1]}\n")
    sys.stdout.flush()
    await server.serve(sockets=[sock])


def main() -> None:
    """Entry point of the child process."""
    asyncio.run(serve())


if __name__ == "__main__":
    main()
