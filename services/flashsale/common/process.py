"""The entry point every Flashsale process shares: its settings are read once, a bad value ends the process with
exit status 2 and a message naming the variable, the garbage collector is tuned (collector), then it serves until
SIGTERM / SIGINT."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from flashsale.common import collector, settings

T = TypeVar("T")
CONFIG_ERROR_STATUS = 2


def main(
    name: str,
    load: Callable[[], T],
    serve: Callable[[T], Coroutine[Any, Any, None]],
    run: Callable[[Coroutine[Any, Any, None]], None] = asyncio.run,
) -> None:
    """Load the settings, then run `serve(settings)` in an event loop (`run`: asyncio.run or uvloop.run).

    A ConfigError, while loading or while wiring the process, exits with status 2 naming the variable."""
    try:
        config = load()
        collector.tune()
        run(serve(config))
    except settings.ConfigError as exc:
        print(f"flashsale {name}: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(CONFIG_ERROR_STATUS) from None
