"""Runs the whole platform on one machine: Kafka, optionally PostgreSQL, mail and SMS sinks, every service."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from flashsale.common.settings import ENV_PREFIX, Settings
from flashsale_tools.platform import cache, kafka_broker, mailcatcher, postgres_server

log = logging.getLogger(__name__)

SERVICES = ("user", "product", "sales", "order", "notification")


@dataclasses.dataclass(frozen=True)
class PlatformOptions:
    """How to run the local platform."""

    data_dir: Path
    backend: str = "sqlite"
    gateway_port: int = 0
    extra_env: tuple[tuple[str, str], ...] = ()
    sales_workers: int = 0  # 0: the sales process decides too; N: it only takes requests, N sales-worker-K decide


class LocalPlatform:
    """Starts every part as a process, waits until each is healthy, and stops all of them."""

    def __init__(self, options: PlatformOptions) -> None:
        self.options = options
        self.data_dir = options.data_dir
        self.kafka = kafka_broker.KafkaBroker(self.data_dir / "kafka")
        self.postgres: postgres_server.PostgresServer | None = None
        self.mail = mailcatcher.MailCatcher(folder=self.data_dir / "mail")  # a Maildir a person can read
        self.sms = mailcatcher.SmsSink(folder=self.data_dir / "sms")
        self.admin_key = secrets.token_urlsafe(24)
        self._jwt_secret = secrets.token_urlsafe(32)
        self.workers = tuple(f"sales-worker-{k}" for k in range(1, options.sales_workers + 1))
        self.ports = {name: cache.free_port() for name in (*SERVICES, *self.workers)}
        self.metrics_ports = {name: cache.free_port() for name in self.ports}  # the gateway serves /metrics itself
        self.gateway_port = options.gateway_port or cache.free_port()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def pids(self) -> dict[str, int]:
        """The process id of every running part: each service, the Kafka broker as "kafka" and PostgreSQL, when
        it stores, as "postgres"."""
        found = {name: proc.pid for name, proc in self._procs.items() if proc.poll() is None}
        if self.kafka.pid is not None:
            found["kafka"] = self.kafka.pid
        if self.postgres is not None and self.postgres.pid is not None:
            found["postgres"] = self.postgres.pid
        return found

    @property
    def gateway_url(self) -> str:
        """Base URL of the REST gateway."""
        return f"http://127.0.0.1:{self.gateway_port}"

    def env(self) -> dict[str, str]:
        """The FLASHSALE_* environment every service process gets."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLASHSALE_")}
        env.update(
            {
                "FLASHSALE_KAFKA_BOOTSTRAP": self.kafka.bootstrap_servers,
                "FLASHSALE_DB_BACKEND": self.options.backend,
                "FLASHSALE_SQLITE_DIR": str(self.data_dir / "db"),
                "FLASHSALE_JWT_SECRET": self._jwt_secret,
                "FLASHSALE_ADMIN_API_KEY": self.admin_key,
                "FLASHSALE_SMTP_HOST": "127.0.0.1",
                "FLASHSALE_SMTP_PORT": str(self.mail.port),
                "FLASHSALE_SMS_URL": self.sms.url,
                "FLASHSALE_GATEWAY_HOST": "127.0.0.1",
                "FLASHSALE_GATEWAY_PORT": str(self.gateway_port),
            }
        )
        if self.postgres is not None:
            env["FLASHSALE_POSTGRES_DSN"] = self.postgres.dsn
        for name in SERVICES:
            env[f"FLASHSALE_{name.upper()}_ADDR"] = f"127.0.0.1:{self.ports[name]}"
        if self.workers:
            env["FLASHSALE_SALES_WORKER"] = "false"
        env.update(dict(self.options.extra_env))
        return env

    def settings(self) -> Settings:
        """The shared settings the services run with (for tools such as the invariant checker)."""
        env = self.env()
        fields = {k.removeprefix(ENV_PREFIX).lower(): v for k, v in env.items() if k.startswith(ENV_PREFIX)}
        return Settings.model_validate(fields)

    def start(self) -> None:
        """Start everything and wait until every service answers its health check."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "logs").mkdir(exist_ok=True)
        try:
            self.kafka.start()
            if self.options.backend == "postgres":
                self.postgres = postgres_server.PostgresServer(self._postgres_dir())
                self.postgres.start()
            self.mail.start()
            self.sms.start()
            env = self.env()
            for name in (*SERVICES, *self.workers):
                self._spawn(name, env)
            for name in (*SERVICES, *self.workers):
                self._wait_healthy(name)
            self._spawn("gateway", env)
            self._wait_gateway()
        except BaseException:
            self.stop()
            raise

    def _postgres_dir(self) -> Path:
        path = Path("/tmp") / f"flashsale-pg-{os.getpid()}"
        path.mkdir(exist_ok=True)
        return path

    def scrape_targets(self) -> dict[str, list[str]]:
        """What a Prometheus scrapes (/metrics), by job: flashsale-<process>, the gateway included."""
        targets = {f"flashsale-{name}": [f"127.0.0.1:{port}"] for name, port in self.metrics_ports.items()}
        targets["flashsale-gateway"] = [f"127.0.0.1:{self.gateway_port}"]
        return targets

    def _spawn(self, name: str, env: dict[str, str]) -> None:
        logfile = (self.data_dir / "logs" / f"{name}.log").open("ab")
        own = {"FLASHSALE_METRICS_PORT": str(self.metrics_ports[name])} if name in self.metrics_ports else {}
        if name in self.workers:  # a sales process of its own that only decides
            own |= {"FLASHSALE_SALES_ADDR": f"127.0.0.1:{self.ports[name]}", "FLASHSALE_SALES_WORKER": "true"}
        if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") and "OTEL_SERVICE_NAME" not in env:
            own["OTEL_SERVICE_NAME"] = f"flashsale-{name}"
        self._procs[name] = subprocess.Popen(
            [sys.executable, "-m", "flashsale_tools.cli", "run", "sales" if name in self.workers else name],
            env={**env, **own},
            stdout=logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        logfile.close()

    def _check_alive(self, name: str) -> None:
        proc = self._procs[name]
        if proc.poll() is not None:
            tail = (self.data_dir / "logs" / f"{name}.log").read_text(errors="replace").splitlines()[-30:]
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n" + "\n".join(tail))

    def _wait_healthy(self, name: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        target = f"127.0.0.1:{self.ports[name]}"
        with grpc.insecure_channel(target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                self._check_alive(name)
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        log.info("healthy", extra={"service": name, "address": target})
                        return
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} not healthy within {timeout}s")
                time.sleep(0.2)

    def _wait_gateway(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive("gateway")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.gateway_url}/readyz", timeout=2.0).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"gateway not ready within {timeout}s")
            time.sleep(0.2)

    def terminate(self, name: str, timeout: float = 20.0) -> int:
        """Stop one process (SIGTERM, then SIGKILL) and return its exit code; the others keep running."""
        proc = self._procs[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait()

    def running(self) -> dict[str, bool]:
        """Which processes are still running."""
        return {name: proc.poll() is None for name, proc in self._procs.items()}

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the gateway, then the services (SIGTERM, then SIGKILL), then the backends."""
        for name in ["gateway", *reversed(self.workers), *reversed(SERVICES)]:
            proc = self._procs.get(name)
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name, proc in self._procs.items():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("killing", extra={"service": name})
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._procs.clear()
        with contextlib.suppress(Exception):
            self.mail.stop()
        with contextlib.suppress(Exception):
            self.sms.stop()
        if self.postgres is not None:
            self.postgres.stop()
        self.kafka.stop()

    def __enter__(self) -> LocalPlatform:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
