"""A real Jaeger and a real Prometheus around a local platform: every process exports its traces to Jaeger (the
standard OTEL_* variables) and is scraped by Prometheus, which evaluates the project's alert rules."""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Sequence
from types import TracebackType

from flashsale_tools.platform import jaeger_server, observability_tools, prometheus_server, supervisor

RULES_DIR = pathlib.Path("observability") / "prometheus" / "rules"


def rule_files(repo: pathlib.Path | None = None) -> list[pathlib.Path]:
    """The alert rule files of the checkout, in name order."""
    root = repo if repo is not None else observability_tools.repo_root()
    return sorted((root / RULES_DIR).glob("*.yaml"))


class Observed:
    """Jaeger and Prometheus in ``folder``; `env()` is what the platform's processes need, `watch()` points
    Prometheus at a started platform."""

    def __init__(
        self, folder: pathlib.Path, rules: Sequence[pathlib.Path] | None = None, scrape_interval_s: float = 1.0
    ) -> None:
        paths = observability_tools.ensure_built()
        self.jaeger = jaeger_server.JaegerServer(folder / "jaeger", binary=paths.jaeger)
        self.prometheus = prometheus_server.PrometheusServer(
            folder / "prometheus",
            {},
            rule_files(None) if rules is None else rules,
            scrape_interval_s=scrape_interval_s,
            evaluation_interval_s=scrape_interval_s,
            binary=paths.prometheus,
        )

    def env(self) -> dict[str, str]:
        """The OTEL_* variables of every process: OTLP to Jaeger, every trace sampled, spans sent within 0.5 s."""
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.jaeger.otlp_grpc_endpoint,
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_TRACES_SAMPLER": "parentbased_always_on",
            "OTEL_BSP_SCHEDULE_DELAY": "500",
        }

    def watch(self, platform: supervisor.LocalPlatform) -> None:
        """Scrape every process of a started platform (and Jaeger's own metrics)."""
        self.prometheus.set_targets({**platform.scrape_targets(), "jaeger": [self.jaeger.metrics_target]})

    def start(self) -> None:
        """Start Jaeger, then Prometheus (with no targets until `watch`)."""
        self.jaeger.start()
        try:
            self.prometheus.start()
        except BaseException:
            self.jaeger.stop()
            raise

    def stop(self) -> None:
        """Stop both."""
        with contextlib.suppress(Exception):
            self.prometheus.stop()
        self.jaeger.stop()

    def __enter__(self) -> Observed:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
