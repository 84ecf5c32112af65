"""Shared cache directory and free-port helpers for the local platform backends."""

from __future__ import annotations

import os
import pathlib
import random
import socket


def cache_dir() -> pathlib.Path:
    """Return $FLASHSALE_CACHE_DIR or ~/.cache/flashsale, creating it if needed."""
    env = os.environ.get("FLASHSALE_CACHE_DIR")
    path = pathlib.Path(env) if env else pathlib.Path.home() / ".cache" / "flashsale"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _ephemeral_start() -> int:
    try:
        return int(pathlib.Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free at the time of the call.

    It is drawn below the kernel's ephemeral range, so the outgoing connections of the processes started
    meanwhile (Kafka, the services) cannot take it before its listener binds it.
    """
    high = _ephemeral_start()
    for _ in range(200):
        port = random.randrange(10_000, high)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free TCP port found between 10000 and {high}")
