"""A Prometheus scrape, imitated: a thread that collects and renders a registry (or GETs a /metrics URL) every
second, so a benchmark with metrics on pays what a scraped process pays."""

from __future__ import annotations

import threading

import httpx
import prometheus_client

from flashsale.common import metrics

INTERVAL_S = 1.0  # more often than a production scrape (15 s to 30 s): an upper bound of its cost


class Scraper:
    """Scrapes a registry in this process, or a URL of another one, until stopped."""

    def __init__(self, registry: metrics.Registry | None = None, url: str = "") -> None:
        self._registry = registry
        self._url = url
        self.scrapes = 0
        self._stop = threading.Event()
        # only for a URL: building a client (its TLS context) costs more CPU than a run's scrapes of a registry
        self._client = httpx.Client(timeout=5.0, trust_env=False) if url else None
        self._scrape()  # once now: a run shorter than the interval is scraped too
        self._thread = threading.Thread(target=self._run, name="bench-scraper", daemon=True)
        self._thread.start()

    def _scrape(self) -> None:
        if self._client is not None:
            self._client.get(self._url).raise_for_status()
        elif self._registry is not None:
            prometheus_client.generate_latest(self._registry)
        self.scrapes += 1

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL_S):
            self._scrape()

    def stop(self) -> None:
        """Stop scraping."""
        self._stop.set()
        self._thread.join()
        if self._client is not None:
            self._client.close()
