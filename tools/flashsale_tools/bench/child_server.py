"""A benchmark's server in a child process of its own: started, its port read from its first line, stopped."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator

from flashsale_tools.bench import core


@contextlib.asynccontextmanager
async def serving(module: str, timeout_s: float = 30.0) -> AsyncIterator[int]:
    """Run `python -m module` (which prints `PORT <n>` once serving and stops on SIGTERM); yield the port."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout_s)
        except TimeoutError:
            raise core.BenchError(f"{module} did not start in {timeout_s}s") from None
        if not line.startswith(b"PORT "):
            raise core.BenchError(f"{module} exited (code {await proc.wait()}) before serving")
        yield int(line.split()[1])
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
