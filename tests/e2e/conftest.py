"""The whole platform as processes (real Kafka, every service, the gateway), shared by the e2e tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flashsale_tools.platform import supervisor


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[supervisor.LocalPlatform]:
    """A running local platform on SQLite with a short payment window."""
    options = supervisor.PlatformOptions(
        data_dir=Path(tmp_path_factory.mktemp("platform")),
        extra_env=(
            ("FLASHSALE_PAYMENT_WINDOW_S", "6"),
            ("FLASHSALE_EXPIRY_SCAN_S", "0.2"),
            ("FLASHSALE_GATEWAY_RATE_LIMIT_PER_S", "10000"),
            ("FLASHSALE_GATEWAY_RATE_BURST", "10000"),
        ),
    )
    with supervisor.LocalPlatform(options) as running:
        yield running
