"""A real Prometheus server on 127.0.0.1 for tests and ``flashsale up --observe``, with small typed API helpers."""

from __future__ import annotations

import logging
import pathlib
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx
import yaml

from flashsale_tools.platform import cache, observability_tools, processes

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0
"""Upper bound for Prometheus to answer ``/-/ready`` after its start (it replays the WAL of an earlier run)."""

STOP_TIMEOUT_S = 30.0
"""How long a SIGTERM may take before the process group is killed."""

HTTP_TIMEOUT_S = 10.0
"""Timeout of one API call."""


class PrometheusServerError(RuntimeError):
    """Prometheus could not be started, exited, or refused its configuration; the message carries its log's tail."""


class PrometheusApiError(RuntimeError):
    """An API call answered ``status: error`` (a bad expression, a bad parameter): retrying will not help."""

    def __init__(self, path: str, error_type: str, message: str) -> None:
        super().__init__(f"{path}: {error_type}: {message}")
        self.path = path
        self.error_type = error_type
        self.message = message


def _duration(seconds: float) -> str:
    """Render ``seconds`` as a Prometheus duration in whole milliseconds (``1500ms``)."""
    millis = round(seconds * 1000)
    if millis <= 0:
        raise ValueError(f"a Prometheus interval must be at least 1 ms, not {seconds!r} s")
    return f"{millis}ms"


class PrometheusServer:
    """One Prometheus process on 127.0.0.1 scraping static targets, with its config, data and log under ``folder``."""

    def __init__(
        self,
        folder: pathlib.Path,
        targets: Mapping[str, Sequence[str]],
        rule_files: Sequence[pathlib.Path] = (),
        scrape_interval_s: float = 1.0,
        evaluation_interval_s: float = 1.0,
        port: int = 0,
        *,
        binary: pathlib.Path | None = None,
        scrape_configs: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """Configure a server scraping ``targets`` (job name -> ``host:port`` list); port 0 picks a free one.

        ``binary`` defaults to the Prometheus that ``observability_tools.ensure_built()`` installs, on start.
        ``scrape_configs`` are further jobs as Prometheus reads them (service discovery, relabelling).
        """
        self._scrape_configs = tuple(dict(job) for job in scrape_configs)
        self.folder = pathlib.Path(folder).resolve()
        self.port = port if port else cache.free_port()
        self._targets = _copy_targets(targets)
        self._rule_files = tuple(pathlib.Path(path).resolve() for path in rule_files)
        self._scrape_interval = _duration(scrape_interval_s)
        self._evaluation_interval = _duration(evaluation_interval_s)
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's base URL, ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_file(self) -> pathlib.Path:
        """The ``prometheus.yml`` this server reads."""
        return self.folder / "prometheus.yml"

    @property
    def log_file(self) -> pathlib.Path:
        """The server's stdout and stderr."""
        return self.folder / "prometheus.log"

    @property
    def running(self) -> bool:
        """Whether the Prometheus process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The Prometheus process id while it runs."""
        return self._proc.pid if self.running and self._proc is not None else None

    def config(self) -> dict[str, Any]:
        """The configuration this server is given: global intervals, rule files, one static scrape job per target
        and the further jobs it was given."""
        return {
            "global": {
                "scrape_interval": self._scrape_interval,
                "scrape_timeout": self._scrape_interval,
                "evaluation_interval": self._evaluation_interval,
            },
            "rule_files": [str(path) for path in self._rule_files],
            "scrape_configs": [
                *(
                    {"job_name": job, "static_configs": [{"targets": list(addresses)}]}
                    for job, addresses in self._targets.items()
                ),
                *self._scrape_configs,
            ],
        }

    def _write_config(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        staged = self.config_file.with_suffix(".yml.tmp")
        staged.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        staged.replace(self.config_file)

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Write the config, start Prometheus and wait until it answers ``/-/ready``."""
        if self.running:
            return
        binary = self._binary if self._binary is not None else observability_tools.ensure_built().prometheus
        self._write_config()
        started = time.monotonic()
        self._proc = processes.spawn(
            [
                str(binary),
                f"--config.file={self.config_file}",
                f"--storage.tsdb.path={self.folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
            ],
            self.log_file,
            self.folder,
        )
        try:
            failed = processes.wait_http_ready(
                self._proc, f"{self.url}/-/ready", started + timeout, "prometheus", self.log_file
            )
        except BaseException:  # interrupted while waiting: leave nothing running
            self.stop()
            raise
        if failed:
            self.stop()
            raise PrometheusServerError(failed)
        log.info("Prometheus ready at %s in %.1fs", self.url, time.monotonic() - started)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop Prometheus with SIGTERM, then SIGKILL its process group after ``timeout``."""
        proc = self._proc
        self._proc = None
        if proc is not None:
            processes.stop(proc, signal.SIGTERM, timeout, "prometheus")

    def __enter__(self) -> PrometheusServer:
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

    def set_targets(self, targets: Mapping[str, Sequence[str]]) -> None:
        """Replace the scrape jobs and make the running server reload its config."""
        self._targets = _copy_targets(targets)
        self._write_config()
        if self.running:
            self.reload()

    def reload(self) -> None:
        """Ask the server to re-read its config and rule files (``POST /-/reload``); raise if it refuses them."""
        response = httpx.post(f"{self.url}/-/reload", timeout=HTTP_TIMEOUT_S, trust_env=False)
        if response.status_code != 200:
            raise PrometheusServerError(f"prometheus refused to reload {self.config_file}: {response.text.strip()}")

    def _api(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """GET an ``/api/v1`` endpoint and return its ``data``; raise PrometheusApiError unless it succeeded."""
        response = httpx.get(f"{self.url}{path}", params=params, timeout=HTTP_TIMEOUT_S, trust_env=False)
        try:
            body = response.json()
        except ValueError:
            raise PrometheusApiError(path, f"HTTP {response.status_code}", response.text.strip()) from None
        if not isinstance(body, dict) or body.get("status") != "success":
            error_type = body.get("errorType", f"HTTP {response.status_code}") if isinstance(body, dict) else "?"
            message = body.get("error", "") if isinstance(body, dict) else str(body)
            raise PrometheusApiError(path, str(error_type), str(message))
        return body.get("data")

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Evaluate ``expr`` now (or at unix time ``at``): one ``{"metric": {...}, "value": [ts, "v"]}`` per series.

        A scalar or string result comes back as one entry with an empty ``metric``.
        """
        params = {"query": expr} if at is None else {"query": expr, "time": str(at)}
        data = self._api("/api/v1/query", params)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[dict[str, Any]]:
        """Evaluate ``expr`` from ``start`` to ``end`` (unix times): one ``{"metric", "values"}`` per series."""
        params = {"query": expr, "start": str(start), "end": str(end), "step": str(step_s)}
        return list(self._api("/api/v1/query_range", params)["result"])

    def targets(self) -> list[dict[str, Any]]:
        """The active targets with ``scrapePool``, ``scrapeUrl``, ``labels``, ``health`` and ``lastError``."""
        return list(self._api("/api/v1/targets", {"state": "active"})["activeTargets"])

    def alerts(self) -> list[dict[str, Any]]:
        """The pending and firing alerts, each with ``labels``, ``annotations``, ``state`` and ``value``."""
        return list(self._api("/api/v1/alerts")["alerts"])

    def rules(self) -> list[dict[str, Any]]:
        """Every loaded rule of every group, with ``name``, ``type``, ``health``, ``lastError`` and its ``group``.

        Prometheus leaves ``lastError`` out while a rule has none; here it is then ``""``.
        """
        groups = self._api("/api/v1/rules")["groups"]
        return [{"lastError": "", **rule, "group": group["name"]} for group in groups for rule in group["rules"]]


def _copy_targets(targets: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    """Freeze the caller's targets; a bare string instead of a list of addresses is a mistake worth naming."""
    copied: dict[str, tuple[str, ...]] = {}
    for job, addresses in targets.items():
        if isinstance(addresses, str):
            raise TypeError(f"targets of job {job!r} must be a list of 'host:port' strings, not {addresses!r}")
        copied[job] = tuple(addresses)
    return copied
