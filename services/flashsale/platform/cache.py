"""Shared cache directory and free-port helpers for the local platform backends."""

from __future__ import annotations

import os
import pathlib
import socket


def cache_dir() -> pathlib.Path:
    """Return $FLASHSALE_CACHE_DIR or ~/.cache/flashsale, creating it if needed."""
    env = os.environ.get("FLASHSALE_CACHE_DIR")
    path = pathlib.Path(env) if env else pathlib.Path.home() / ".cache" / "flashsale"
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free at the time of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
