"""Fixtures for observability tests on a running platform: a real Jaeger and a real Prometheus (with the project's
alert rules), the whole platform on PostgreSQL with its sales worker as a process of its own, every process
exporting traces and scraped each second, and shoppers buying through the gateway for the whole module."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from observed_shop import Crowd, Shop, shop_once

from flashsale_tools.platform import observed, supervisor


@pytest.fixture(scope="module")
def observe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[observed.Observed]:
    """Jaeger and Prometheus, built or installed when missing."""
    with observed.Observed(tmp_path_factory.mktemp("observe")) as backends:
        yield backends


@pytest.fixture(scope="module")
def platform(
    observe: observed.Observed, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[supervisor.LocalPlatform]:
    """Every service, the gateway and one sales worker process, on PostgreSQL, traced and scraped."""
    options = supervisor.PlatformOptions(
        data_dir=tmp_path_factory.mktemp("platform"),
        backend="postgres",
        extra_env=tuple(observe.env().items()),
        sales_workers=1,  # its name: WORKER
    )
    with supervisor.LocalPlatform(options) as running:
        observe.watch(running)
        yield running


@pytest.fixture(scope="module")
def shop(platform: supervisor.LocalPlatform) -> Iterator[Shop]:
    """The module's shopping: a small sale sold out (one purchase traced by the test), an order paid, a bad
    request, and a crowd buying from an open sale until the module ends."""
    done = asyncio.run(shop_once(platform))
    crowd = Crowd(done)
    crowd.start()
    try:
        yield done
    finally:
        crowd.stop()
    assert crowd.sent > 0


@pytest.fixture(scope="module")
def repo() -> Path:
    """The checkout's root."""
    return Path(__file__).resolve().parents[2]
