"""A real Jaeger v2 (in-memory storage, OTLP in, query API out) on loopback for tests and ``flashsale up --observe``."""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import signal
import subprocess
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import httpx
import yaml

from flashsale_tools.platform import cache, observability_tools, processes

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0
"""Upper bound for Jaeger to answer its query API after its start."""

STOP_TIMEOUT_S = 30.0
"""How long a SIGTERM may take before the process group is killed."""

HTTP_TIMEOUT_S = 10.0
"""Timeout of one query API call."""

STORE = "memstore"
"""The name of the in-memory trace storage in the config."""


class JaegerServerError(RuntimeError):
    """Jaeger could not be started or exited; the message carries its log's tail."""


class JaegerApiError(RuntimeError):
    """The query API answered with an error (an unknown trace id, a bad parameter)."""


@dataclasses.dataclass(frozen=True)
class JaegerPorts:
    """Every TCP port the Jaeger process listens on, all on 127.0.0.1."""

    otlp_grpc: int
    otlp_http: int
    query_http: int
    query_grpc: int
    health_http: int
    metrics: int

    @classmethod
    def free(cls) -> JaegerPorts:
        """Distinct ports that are free now."""
        count = len(dataclasses.fields(cls))
        ports: list[int] = []
        while len(ports) < count:
            port = cache.free_port()
            if port not in ports:
                ports.append(port)
        return cls(*ports)


class JaegerServer:
    """One Jaeger v2 process on loopback with in-memory storage, its config and log under ``folder``."""

    def __init__(
        self,
        folder: pathlib.Path,
        *,
        max_traces: int = 100_000,
        ports: JaegerPorts | None = None,
        binary: pathlib.Path | None = None,
    ) -> None:
        """Configure a server keeping at most ``max_traces`` traces; ports default to free ones.

        ``binary`` defaults to the Jaeger that ``observability_tools.ensure_built()`` builds, on start.
        """
        self.folder = pathlib.Path(folder).resolve()
        self.ports = ports if ports is not None else JaegerPorts.free()
        self.max_traces = max_traces
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def otlp_grpc_endpoint(self) -> str:
        """The OTLP/gRPC receiver, ``http://127.0.0.1:PORT`` (an OTLP gRPC exporter's ``endpoint``)."""
        return f"http://127.0.0.1:{self.ports.otlp_grpc}"

    @property
    def otlp_http_endpoint(self) -> str:
        """The OTLP/HTTP receiver's base URL; traces are posted to ``/v1/traces`` under it."""
        return f"http://127.0.0.1:{self.ports.otlp_http}"

    @property
    def query_url(self) -> str:
        """The query service's HTTP API and UI, ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.ports.query_http}"

    @property
    def metrics_target(self) -> str:
        """Jaeger's own Prometheus metrics, ``127.0.0.1:PORT`` (scrape path ``/metrics``)."""
        return f"127.0.0.1:{self.ports.metrics}"

    @property
    def config_file(self) -> pathlib.Path:
        """The config YAML this server reads."""
        return self.folder / "jaeger.yaml"

    @property
    def log_file(self) -> pathlib.Path:
        """The server's stdout and stderr."""
        return self.folder / "jaeger.log"

    @property
    def running(self) -> bool:
        """Whether the Jaeger process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The Jaeger process id while it runs."""
        return self._proc.pid if self.running and self._proc is not None else None

    def config(self) -> dict[str, Any]:
        """The Jaeger v2 (OpenTelemetry Collector) configuration: every listener on 127.0.0.1, nothing else on."""
        loopback = "127.0.0.1"
        ports = self.ports
        return {
            "service": {
                "extensions": ["jaeger_storage", "jaeger_query", "healthcheckv2"],
                "pipelines": {
                    "traces": {
                        "receivers": ["otlp"],
                        "processors": ["batch"],
                        "exporters": ["jaeger_storage_exporter"],
                    }
                },
                "telemetry": {
                    "resource": {"service.name": "jaeger"},
                    "metrics": {
                        "level": "normal",
                        "readers": [{"pull": {"exporter": {"prometheus": {"host": loopback, "port": ports.metrics}}}}],
                    },
                    "logs": {"level": "info"},
                },
            },
            "extensions": {
                "healthcheckv2": {"use_v2": True, "http": {"endpoint": f"{loopback}:{ports.health_http}"}},
                "jaeger_storage": {"backends": {STORE: {"memory": {"max_traces": self.max_traces}}}},
                "jaeger_query": {
                    "storage": {"traces": STORE},
                    # On, the query service traces itself to OTEL_EXPORTER_OTLP_ENDPOINT (default localhost:4317).
                    "enable_tracing": False,
                    "http": {"endpoint": f"{loopback}:{ports.query_http}"},
                    "grpc": {"endpoint": f"{loopback}:{ports.query_grpc}"},
                },
            },
            "receivers": {
                "otlp": {
                    "protocols": {
                        "grpc": {"endpoint": f"{loopback}:{ports.otlp_grpc}"},
                        "http": {"endpoint": f"{loopback}:{ports.otlp_http}"},
                    }
                }
            },
            "processors": {"batch": {}},
            "exporters": {"jaeger_storage_exporter": {"trace_storage": STORE}},
        }

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Write the config, start Jaeger and wait until its query API answers."""
        if self.running:
            return
        binary = self._binary if self._binary is not None else observability_tools.ensure_built().jaeger
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        started = time.monotonic()
        self._proc = processes.spawn([str(binary), f"--config={self.config_file}"], self.log_file, self.folder)
        try:
            failed = processes.wait_http_ready(
                self._proc, f"{self.query_url}/api/services", started + timeout, "jaeger", self.log_file
            )
        except BaseException:  # interrupted while waiting: leave nothing running
            self.stop()
            raise
        if failed:
            self.stop()
            raise JaegerServerError(failed)
        log.info("Jaeger ready at %s in %.1fs", self.query_url, time.monotonic() - started)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop Jaeger with SIGTERM, then SIGKILL its process group after ``timeout``."""
        proc = self._proc
        self._proc = None
        if proc is not None:
            processes.stop(proc, signal.SIGTERM, timeout, "jaeger")

    def __enter__(self) -> JaegerServer:
        """Start the server."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    def _api(self, path: str, params: Mapping[str, str | int] | None = None) -> Any:
        """GET a query API endpoint and return its ``data``; raise JaegerApiError on an error answer."""
        response = httpx.get(f"{self.query_url}{path}", params=params, timeout=HTTP_TIMEOUT_S, trust_env=False)
        try:
            body = response.json()
        except ValueError:
            raise JaegerApiError(f"{path}: HTTP {response.status_code}: {response.text.strip()}") from None
        errors = body.get("errors") if isinstance(body, dict) else None
        if response.status_code != 200 or errors or not isinstance(body, dict):
            raise JaegerApiError(f"{path}: HTTP {response.status_code}: {errors or body}")
        return body.get("data")

    def services(self) -> list[str]:
        """The names of the services that sent spans."""
        return sorted(self._api("/api/services") or [])

    def traces(
        self, service: str, limit: int = 20, operation: str = "", start_us: int = 0, end_us: int = 0
    ) -> list[dict[str, Any]]:
        """The latest traces of ``service`` in Jaeger JSON (``traceID``, ``spans`` with ``references``,
        ``processes``), of one operation and between two times (µs since the epoch) when given."""
        params: dict[str, str | int] = {"service": service, "limit": limit}
        if operation:
            params["operation"] = operation
        if start_us:
            params["start"] = start_us
        if end_us:
            params["end"] = end_us
        return list(self._api("/api/traces", params) or [])

    def trace(self, trace_id: str) -> dict[str, Any]:
        """One trace by its hex id; raise JaegerApiError when it is unknown."""
        found = self._api(f"/api/traces/{trace_id}") or []
        if not found:
            raise JaegerApiError(f"/api/traces/{trace_id}: no such trace")
        trace: dict[str, Any] = found[0]
        return trace
