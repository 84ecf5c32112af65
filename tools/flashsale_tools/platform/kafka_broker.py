"""A real Apache Kafka broker (KRaft, one combined broker+controller node) on loopback."""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import fcntl
import hashlib
import logging
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from types import TracebackType

from confluent_kafka.admin import AdminClient

from flashsale_tools.platform import processes
from flashsale_tools.platform.cache import cache_dir, free_port

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"
SLF4J_VERSION = "2.0.17"

_JVM_FLAGS = ("-Xms64m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:-UsePerfData", "-Djava.awt.headless=true")
# Quick start for tests and the demo: the first JIT tier only (less CPU while starting, slower once running).
_QUICK_START_FLAGS = ("-XX:TieredStopAtLevel=1", "-XX:CICompilerCount=1")

_POM_TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://maven.apache.org/POM/4.0.0 http://maven.apache.org/xsd/maven-4.0.0.xsd">
  <modelVersion>4.0.0</modelVersion>
  <groupId>flashsale.local</groupId>
  <artifactId>kafka-broker-libs</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <!-- pinned: a transitive slf4j-api 1.7 would otherwise win and silence log4j2 -->
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-api</artifactId>
      <version>{slf4j}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j2-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""

_LOG4J2_PROPERTIES = """status = warn
shutdownHook = disable
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = INFO
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.zk.name = org.apache.zookeeper
logger.zk.level = WARN
"""


FORMAT_TIMEOUT_S = 60


class KafkaBrokerError(RuntimeError):
    """The broker failed to build, exited, or did not become ready in time."""


@contextlib.contextmanager
def _lock(path: pathlib.Path) -> Iterator[None]:
    """Hold an exclusive fcntl lock on ``path`` (created if missing) for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def ensure_kafka_jars(version: str = KAFKA_VERSION) -> pathlib.Path:
    """Resolve the Kafka broker jars (plus a log4j2 backend) into the cache; return the libs dir."""
    root = cache_dir() / "kafka" / version
    libs = root / "libs"
    pom_text = _POM_TEMPLATE.format(kafka=version, log4j=LOG4J_VERSION, slf4j=SLF4J_VERSION)
    marker = root / f".complete-{hashlib.sha256(pom_text.encode()).hexdigest()[:12]}"
    if marker.exists():
        return libs
    with _lock(cache_dir() / "kafka" / f"{version}.lock"):
        if marker.exists():
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaBrokerError("Maven ('mvn') is required to fetch the Kafka jars; install it first")
        root.mkdir(parents=True, exist_ok=True)
        if libs.exists():
            shutil.rmtree(libs)
        pom = root / "pom.xml"
        pom.write_text(pom_text)
        cmd = [
            mvn,
            "-q",
            "-B",
            f"-Dmaven.repo.local={cache_dir() / 'm2'}",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
        ]
        log.info("resolving Kafka %s jars with Maven into %s", version, libs)
        started = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise KafkaBrokerError(
                f"mvn failed ({proc.returncode}) resolving Kafka {version}:\n"
                f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            )
        marker.write_text(f"{time.time()}\n")
        log.info("Kafka %s jars resolved in %.1fs", version, time.monotonic() - started)
    return libs


def new_cluster_id() -> str:
    """Return a random Kafka cluster id (URL-safe base64 of a UUID, 22 chars) that does not start with "-": the
    storage tool would read such an id as an option and fail (as Kafka's own Uuid.randomUuid avoids too)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


@dataclasses.dataclass(frozen=True)
class SecuredListener:
    """A SASL_SSL listener beside the plain one, as a Strimzi KafkaUser meets it on the TLS listener: the broker's
    key and certificate chain in one PEM file, and the SCRAM-SHA-512 users it knows (name → password)."""

    keystore_pem: pathlib.Path
    users: Mapping[str, str]
    port: int = dataclasses.field(default_factory=lambda: free_port())


class KafkaBroker:
    """One Kafka 4.x KRaft node (broker+controller), run as a child process; clients meet it on ``host``."""

    def __init__(
        self,
        data_dir: pathlib.Path,
        port: int | None = None,
        controller_port: int | None = None,
        quick_start: bool = True,
        secured: SecuredListener | None = None,
        host: str = "127.0.0.1",
    ):
        """Configure a broker storing its logs and config under ``data_dir``; ports default to free ones.

        ``quick_start`` runs the JVM with its first JIT tier only (fast to start, for tests and the demo); a
        benchmark turns it off for the broker's full speed once warm. ``secured`` adds a SASL_SSL listener. ``host``
        is the address of the client listener (another interface's, for pods of the local node); the controller's
        stays on loopback."""
        self.host = host
        self.data_dir = pathlib.Path(data_dir).resolve()
        self._jvm_flags = (*_JVM_FLAGS, *(_QUICK_START_FLAGS if quick_start else ()))
        self.port = port if port is not None else free_port()
        self.controller_port = controller_port if controller_port is not None else free_port()
        self.secured = secured
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """Client bootstrap address, ``HOST:PORT``."""
        return f"{self.host}:{self.port}"

    @property
    def secured_bootstrap_servers(self) -> str:
        """The SASL_SSL listener's address (a broker started with ``secured``)."""
        if self.secured is None:
            raise KafkaBrokerError("this broker has no secured listener")
        return f"127.0.0.1:{self.secured.port}"

    @property
    def log_file(self) -> pathlib.Path:
        """The broker's combined stdout/stderr and log4j output."""
        return self.data_dir / "broker.log"

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return self._proc.pid if self.running and self._proc is not None else None

    def _write_config(self) -> pathlib.Path:
        """Write server.properties and log4j2.properties; return the server config path."""
        logs = self.data_dir / "kraft-logs"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "log.dirs": str(logs),
            "num.partitions": "8",
            "default.replication.factor": "1",
            "auto.create.topics.enable": "true",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "8",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "background.threads": "2",
            "num.recovery.threads.per.data.dir": "1",
            "log.retention.check.interval.ms": "300000",
        }
        if self.secured is not None:
            props.update(self._secured_props(self.secured))
        config = self.data_dir / "server.properties"
        config.write_text("".join(f"{key}={value}\n" for key, value in props.items()))
        (self.data_dir / "log4j2.properties").write_text(_LOG4J2_PROPERTIES)
        return config

    def _secured_props(self, secured: SecuredListener) -> dict[str, str]:
        """The SASL_SSL listener's settings: SCRAM-SHA-512 over TLS with a PEM keystore."""
        listener = f"SASL_SSL://127.0.0.1:{secured.port}"
        return {
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://127.0.0.1:{self.controller_port},{listener}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port},{listener}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
            "listener.name.sasl_ssl.ssl.keystore.location": str(secured.keystore_pem),
        }

    def _java(self, libs: pathlib.Path, main_class: str, *args: str) -> list[str]:
        """Build a java command line for ``main_class`` with the cached classpath."""
        java = shutil.which("java")
        if java is None:
            raise KafkaBrokerError("a Java 17+ runtime ('java') is required to run Kafka")
        return [
            java,
            *self._jvm_flags,
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.data_dir}",
            "-cp",
            f"{libs}/*",
            main_class,
            *args,
        ]

    def _format_storage(self, libs: pathlib.Path, config: pathlib.Path) -> None:
        """Format the KRaft storage directory unless it already holds meta.properties."""
        if (self.data_dir / "kraft-logs" / "meta.properties").exists():
            return
        cmd = self._java(
            libs,
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            new_cluster_id(),
            "--standalone",
            "--config",
            str(config),
            *(
                arg
                for name, password in (self.secured.users.items() if self.secured else ())
                for arg in ("--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]")
            ),
        )
        for attempt in (1, 2):  # a CI run once saw this JVM never return; a bounded wait and one retry
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=FORMAT_TIMEOUT_S)
                break
            except subprocess.TimeoutExpired:
                log.warning("kafka storage format did not finish in %ss (attempt %d)", FORMAT_TIMEOUT_S, attempt)
                shutil.rmtree(self.data_dir / "kraft-logs", ignore_errors=True)
        else:
            raise KafkaBrokerError(f"kafka storage format did not finish in {FORMAT_TIMEOUT_S}s, twice")
        if proc.returncode != 0:
            raise KafkaBrokerError(f"kafka storage format failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")

    def start(self, timeout: float = 60) -> None:
        """Format storage on first start, launch the broker and wait until it answers metadata requests."""
        if self.running:
            return
        libs = ensure_kafka_jars()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        self._format_storage(libs, config)
        started = time.monotonic()
        with self.log_file.open("ab") as out:
            self._proc = subprocess.Popen(
                self._java(libs, "kafka.Kafka", str(config)),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
            )
        try:
            self._wait_ready(started + timeout)
        except BaseException:
            self.stop()
            raise
        log.info("Kafka broker ready at %s in %.1fs", self.bootstrap_servers, time.monotonic() - started)

    def _wait_ready(self, deadline: float) -> None:
        """Poll an AdminClient metadata request until it answers, the process dies, or time runs out."""
        admin = AdminClient(
            {
                "bootstrap.servers": self.bootstrap_servers,
                "socket.connection.setup.timeout.ms": 2000,
                "reconnect.backoff.ms": 100,
                "reconnect.backoff.max.ms": 500,
                "log_level": 0,  # silence "connection refused" noise while the broker boots
            }
        )
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                raise KafkaBrokerError(
                    f"Kafka broker exited with code {code}; tail of {self.log_file}:\n{processes.tail(self.log_file)}"
                )
            try:
                metadata = admin.list_topics(timeout=1.0)
                if metadata.brokers:
                    return
            except Exception as exc:  # KafkaException while the listener is not up yet
                last_error = exc
            time.sleep(0.2)
        raise KafkaBrokerError(
            f"Kafka broker not ready at {self.bootstrap_servers} (last error: {last_error}); "
            f"tail of {self.log_file}:\n{processes.tail(self.log_file)}"
        )

    def stop(self, timeout: float = 30) -> None:
        """Stop the broker: SIGTERM its process group, then SIGKILL after ``timeout`` seconds."""
        proc = self._proc
        self._proc = None
        if proc is None:
            return
        processes.stop(proc, signal.SIGTERM, timeout, "Kafka broker")

    def restart(self, timeout: float = 60) -> None:
        """Stop and start the broker again on the same ports, keeping its data."""
        self.stop()
        self.start(timeout=timeout)

    def __enter__(self) -> KafkaBroker:
        """Start the broker."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the broker."""
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """Run one broker in a directory until SIGTERM or SIGINT (``python -m flashsale_tools.platform.kafka_broker``)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("data_dir", type=pathlib.Path, help="directory for the broker's config, logs and data")
    parser.add_argument("--port", type=int, default=None, help="client port (default: a free one)")
    parser.add_argument("--controller-port", type=int, default=None, help="controller port (default: free)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with KafkaBroker(args.data_dir, port=args.port, controller_port=args.controller_port) as broker:
        log.info("Kafka broker running: bootstrap.servers=%s (Ctrl-C to stop)", broker.bootstrap_servers)
        while not stop.wait(1.0):
            if not broker.running:
                log.error("Kafka broker exited; tail of log:\n%s", processes.tail(broker.log_file))
                sys.exit(1)


if __name__ == "__main__":
    main()
