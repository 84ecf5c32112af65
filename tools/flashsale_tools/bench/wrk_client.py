"""The closed loops of (h) and (i) driven by wrk (C, keep-alive connections, one per request in flight), so the client
costs little of the machine both servers share with it: purchase POSTs of the gateway's shape, each with its own
request id (under a prefix new to every run: LuaJIT's unseeded random gave every run the same ids, so later runs
were answered as retries of earlier ones) and the next shopper's bearer token, every answer's status counted."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

from flashsale_tools.bench import core

SCRIPT = r"""
local tokens, path, prefix, counter = {}, "/", "w", 0
decided, other = 0, 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  path = args[1]
  for line in io.lines(args[2]) do tokens[#tokens + 1] = line end
  prefix = args[3]
end

function request()
  counter = counter + 1
  local body = '{"quantity":1,"request_id":"' .. prefix .. "-" .. counter .. '"}'
  local headers = {["Authorization"] = "Bearer " .. tokens[(counter % #tokens) + 1],
                   ["Content-Type"] = "application/json"}
  return wrk.format("POST", path, headers, body)
end

function response(status, headers, body)
  if status == 201 or status == 409 then decided = decided + 1 else other = other + 1 end
end

function done(summary, latency, requests)
  local d, o = 0, 0
  for _, thread in ipairs(threads) do
    d = d + thread:get("decided")
    o = o + thread:get("other")
  end
  local e = summary.errors
  io.write(string.format(
    'WRK {"requests":%d,"duration_us":%d,"p99_us":%d,"decided":%d,"other":%d,"socket_errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(99), d, o,
    e.connect + e.read + e.write + e.timeout))
end
"""


@dataclasses.dataclass(frozen=True)
class WrkRun:
    """What one wrk run measured."""

    seconds: float
    requests: int
    decided: int
    other: int
    socket_errors: int
    p99_ms: float

    @property
    def decided_per_s(self) -> float:
        """Decisions (201 and 409 answers) per second."""
        return self.decided / self.seconds if self.seconds > 0 else 0.0


def binary() -> str:
    """The wrk executable (scripts/bench.sh installs Debian's)."""
    found = shutil.which("wrk")
    if found is None:
        raise core.BenchError("wrk is not installed (scripts/bench.sh installs Debian's wrk)")
    return found


async def run(url: str, path: str, tokens: Sequence[str], connections: int, seconds: float) -> WrkRun:
    """POST purchases to url+path for `seconds` with `connections` in flight (one wrk thread)."""
    with tempfile.TemporaryDirectory(prefix="wrk-") as folder:
        script, token_file = Path(folder) / "purchase.lua", Path(folder) / "tokens"
        script.write_text(SCRIPT)
        token_file.write_text("\n".join(tokens) + "\n")
        proc = await asyncio.create_subprocess_exec(
            binary(), "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "30s", "-s", str(script),
            url, "--", path, str(token_file), f"w{uuid.uuid4().hex[:12]}",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
    lines = [line for line in out.decode().splitlines() if line.startswith("WRK ")]
    if proc.returncode != 0 or not lines:
        raise core.BenchError(f"wrk failed ({proc.returncode}): {err.decode()[-500:]} {out.decode()[-500:]}")
    got = json.loads(lines[-1].removeprefix("WRK "))
    return WrkRun(
        seconds=got["duration_us"] / 1e6,
        requests=got["requests"],
        decided=got["decided"],
        other=got["other"],
        socket_errors=got["socket_errors"],
        p99_ms=got["p99_us"] / 1000,
    )
