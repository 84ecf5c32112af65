"""(d)'s server: a bare grpc.aio unary echo (bytes in, bytes out) in a process of its own.

Run as `python -m flashsale_tools.bench.echo_server`; it prints `PORT <n>` once serving and stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import grpc

SERVICE = "flashsale_tools.bench.Echo"
METHOD = f"/{SERVICE}/Echo"


async def echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    """Answer the request's bytes."""
    return request


async def serve(host: str = "127.0.0.1") -> None:
    """Serve the echo on a free port until SIGTERM or SIGINT."""
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(echo)})
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(f"{host}:0")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()
    await stop.wait()
    await server.stop(grace=1.0)


def main() -> None:
    """Entry point of the child process."""
    asyncio.run(serve())


if __name__ == "__main__":
    main()
