"""The registered benchmark modes, in the order they run. Add a mode with one line: `core.Mode("c", module.run)`."""

from __future__ import annotations

from flashsale_tools.bench import (
    conditional_update,
    core,
    front_door,
    grpc_echo,
    metrics_cost,
    naive_for_update,
    pipeline_decide,
    redis_lua,
    sales_ingress,
)

MODES: list[core.Mode] = [
    core.Mode("a", naive_for_update.run),
    core.Mode("b", conditional_update.run),
    core.Mode("g", redis_lua.run),
    core.Mode("c", pipeline_decide.run),
    core.Mode("d", grpc_echo.run),
    core.Mode("e", sales_ingress.run_unary),
    core.Mode("f", sales_ingress.run_batched),
    core.Mode("m", metrics_cost.run_pipeline),
    core.Mode("n", metrics_cost.run_ingress),
    core.Mode("i", front_door.run_bare),
    core.Mode("h", front_door.run_gateway),
]
