"""The registered benchmark modes, in the order they run. Add a mode with one line: `core.Mode("c", module.run)`."""

from __future__ import annotations

from flashsale.bench import conditional_update, core, grpc_echo, naive_for_update, redis_lua

MODES: list[core.Mode] = [
    core.Mode("a", naive_for_update.run),
    core.Mode("b", conditional_update.run),
    core.Mode("g", redis_lua.run),
    core.Mode("d", grpc_echo.run),
]
