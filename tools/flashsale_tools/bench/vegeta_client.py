"""The open loops of (h) driven by vegeta (Go, built by scripts/bench.sh): purchases sent at a constant rate whatever
the answers do, each with its own body and bearer token, every answer kept with the time its request was sent (what
first come, first served is judged by), so the client costs little of the machine it shares with the platform."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from flashsale_tools.bench import core

ENV = "FLASHSALE_BENCH_VEGETA"  # the vegeta executable (scripts/bench.sh sets it)
_FRACTION = re.compile(r"(\.\d{6})\d+")


@dataclasses.dataclass(frozen=True)
class Answer:
    """One request's answer: when it was sent (epoch ms), its HTTP status (0: no answer), its JSON body's outcome
    and its latency from send to answer."""

    sent_ms: float
    status: int
    outcome: str
    latency_ms: float


Request = tuple[str, dict[str, Any], dict[str, str]]
"""(path, JSON body, headers) of one POST."""


def binary() -> str:
    """The vegeta executable: $FLASHSALE_BENCH_VEGETA, else one on PATH."""
    found = os.environ.get(ENV) or shutil.which("vegeta")
    if not found or not Path(found).is_file():
        raise core.BenchError(f"vegeta is not built (scripts/bench.sh builds it and sets {ENV})")
    return found


def targets(url: str, requests: Iterable[Request]) -> str:
    """vegeta's JSON target lines for POSTs of `requests` to url."""
    lines = []
    for path, body, headers in requests:
        header = {name: [value] for name, value in headers.items()}
        header["Content-Type"] = ["application/json"]
        encoded = base64.b64encode(json.dumps(body).encode()).decode()
        lines.append(json.dumps({"method": "POST", "url": url + path, "body": encoded, "header": header}))
    return "\n".join(lines) + "\n"


def _epoch_ms(stamp: str) -> float:
    when = datetime.datetime.fromisoformat(_FRACTION.sub(r"\1", stamp))
    return when.timestamp() * 1000


def parse(lines: Iterable[str]) -> list[Answer]:
    """Answers from `vegeta encode --to json` lines, in the order they were sent (results of no request left out)."""
    answers = []
    for line in lines:
        if not line.strip():
            continue
        got = json.loads(line)
        if not got.get("url"):
            continue  # no request behind it: a worker that found the targets at their end
        outcome = ""
        try:
            body = json.loads(base64.b64decode(got.get("body") or ""))
            if isinstance(body, dict):
                outcome = str(body.get("outcome", ""))
        except ValueError:
            pass
        answers.append(Answer(_epoch_ms(got["timestamp"]), int(got["code"]), outcome, int(got["latency"]) / 1e6))
    return sorted(answers, key=lambda a: a.sent_ms)


async def _run(*args: str, stdin: bytes | None = None) -> bytes:
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else None,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin)
    if proc.returncode != 0:
        raise core.BenchError(f"vegeta failed ({proc.returncode}): {err.decode()[-500:]}")
    return out


async def attack(url: str, requests: Sequence[Request], rate_per_s: float) -> list[Answer]:
    """Send every request once, in order, at `rate_per_s` (open loop); their answers."""
    exe = binary()
    with tempfile.TemporaryDirectory(prefix="vegeta-") as folder:
        target_file, results = Path(folder) / "targets.json", Path(folder) / "results.bin"
        target_file.write_text(targets(url, requests))
        await _run(
            # read lazily with no duration, the attack ends when the targets do: each one sent exactly once, the
            # late ones at once when the client fell behind the schedule (it shares the machine)
            exe, "attack", "-lazy", "-duration=0", "-format=json", f"-targets={target_file}",
            f"-rate={rate_per_s:g}/1s", "-timeout=60s", "-max-body=4096", f"-output={results}",
        )  # fmt: skip
        encoded = await _run(exe, "encode", "--to", "json", str(results))
    return parse(encoded.decode().splitlines())
