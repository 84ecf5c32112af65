"""A throwaway real PostgreSQL 15 cluster (initdb + postgres) on 127.0.0.1 for development and tests."""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import os
import pathlib
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from types import TracebackType

import psycopg
from psycopg import sql

from flashsale_tools.platform import processes
from flashsale_tools.platform.cache import cache_dir, free_port

log = logging.getLogger(__name__)

PG_MAJOR = 15
PG_BIN_DIR = pathlib.Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin")

_OS_USER = "postgres"
_DB_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes; leave room for "/.s.PGSQL.NNNNN"


class PostgresServerError(RuntimeError):
    """The PostgreSQL cluster could not be installed, initialised or started."""


def ensure_postgres() -> pathlib.Path:
    """Return the PostgreSQL 15 bin dir, installing the Debian package with apt-get only if it is missing."""
    if (PG_BIN_DIR / "initdb").exists():
        return PG_BIN_DIR
    lock_path = cache_dir() / "postgres-install.lock"
    with lock_path.open("a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        if (PG_BIN_DIR / "initdb").exists():
            return PG_BIN_DIR
        if os.geteuid() != 0:
            raise PostgresServerError(
                f"PostgreSQL {PG_MAJOR} is not installed ({PG_BIN_DIR} missing); run as root: "
                "apt-get update && apt-get install -y postgresql"
            )
        log.info("installing PostgreSQL %s with apt-get", PG_MAJOR)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "postgresql"]):
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise PostgresServerError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    if not (PG_BIN_DIR / "initdb").exists():
        raise PostgresServerError(f"apt-get installed postgresql but {PG_BIN_DIR / 'initdb'} is missing")
    return PG_BIN_DIR


class PostgresServer:
    """A PostgreSQL cluster under ``data_dir`` run as a child process, with trust auth on 127.0.0.1 (and on
    ``host`` for the ``clients`` network)."""

    def __init__(
        self, data_dir: pathlib.Path, port: int | None = None, host: str = "127.0.0.1", clients: str = "127.0.0.1/32"
    ):
        """Configure a cluster at ``data_dir`` (cluster in ``pgdata/``, log in ``postgres.log``).

        ``host`` is the address it listens on besides loopback and ``clients`` the network trusted there: the local
        node's pod network is private to this machine; never give it a network others reach."""
        self.host = host
        self.clients = ipaddress.ip_network(clients)
        self.data_dir = pathlib.Path(data_dir).resolve()
        self.port = port if port is not None else free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._owner: pwd.struct_passwd | None = pwd.getpwnam(_OS_USER) if os.geteuid() == 0 else None
        self._socket_dir: pathlib.Path | None = None

    @property
    def pgdata(self) -> pathlib.Path:
        """The cluster directory (PGDATA)."""
        return self.data_dir / "pgdata"

    @property
    def log_file(self) -> pathlib.Path:
        """The server's stdout/stderr log."""
        return self.data_dir / "postgres.log"

    @property
    def dsn(self) -> str:
        """Connection string for the ``flashsale`` database."""
        return self.dsn_for("flashsale")

    def dsn_for(self, database: str) -> str:
        """Connection string for ``database`` on this server."""
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    @property
    def pid(self) -> int | None:
        """The process id of what was started (the postmaster, or the wrapper running it as postgres) while it runs."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the postmaster process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def _chown(self, path: pathlib.Path) -> None:
        """Give ``path`` to the postgres OS user when running as root."""
        if self._owner is not None:
            os.chown(path, self._owner.pw_uid, self._owner.pw_gid)

    def _make_reachable(self, path: pathlib.Path) -> None:
        """As root, add o+x to ancestors of ``path`` so the postgres user can traverse to it."""
        if self._owner is None:
            return
        for parent in path.parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                log.info("adding o+x to %s so the postgres user can reach %s", parent, path)
                os.chmod(parent, stat.S_IMODE(mode) | stat.S_IXOTH)

    def _prepare_dirs(self) -> pathlib.Path:
        """Create data_dir and a socket dir owned by the server user; return the socket dir."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._make_reachable(self.data_dir)
        self._chown(self.data_dir)
        os.chmod(self.data_dir, 0o700)
        socket_dir = self.data_dir / "run"
        if len(str(socket_dir)) > _MAX_SOCKET_PATH - len("/.s.PGSQL.65535"):
            if self._socket_dir is None:
                self._socket_dir = pathlib.Path(tempfile.mkdtemp(prefix="flashsale-pg-"))
            socket_dir = self._socket_dir
        socket_dir.mkdir(exist_ok=True)
        self._chown(socket_dir)
        os.chmod(socket_dir, 0o700)
        return socket_dir

    def _env(self) -> dict[str, str]:
        """Environment for server processes: C.UTF-8 locale and, when root, the postgres user's HOME."""
        env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        if self._owner is not None:
            env.update(HOME=self._owner.pw_dir, USER=_OS_USER, LOGNAME=_OS_USER)
        return env

    def _run_as_owner(self, cmd: list[str]) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` as the postgres OS user (when root) and capture its output."""
        return subprocess.run(
            self._as_owner(cmd), capture_output=True, text=True, check=False, env=self._env(), cwd=self.data_dir
        )

    def _as_owner(self, cmd: list[str]) -> list[str]:
        """Prefix ``cmd`` with setpriv to drop to the postgres OS user when root.

        Switching users with Popen(user=...) forces a real fork() of this process, which can crash in a
        process with gRPC threads; setpriv lets subprocess spawn without forking the interpreter's state.
        """
        owner = self._owner
        if owner is None:
            return cmd
        return ["setpriv", f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--clear-groups", "--", *cmd]

    def _initdb(self, bin_dir: pathlib.Path) -> None:
        """Initialise the cluster (trust auth, UTF8, C locale) unless it already exists."""
        if (self.pgdata / "PG_VERSION").exists():
            return
        if self.pgdata.exists():
            shutil.rmtree(self.pgdata)  # a half-initialised cluster from an interrupted initdb
        proc = self._run_as_owner(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(self.pgdata),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ]
        )
        if proc.returncode != 0:
            raise PostgresServerError(f"initdb failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# flashsale throwaway cluster\n"
                f"listen_addresses = '{self._listen_addresses}'\n"
                "fsync = on\n"
                "max_connections = 200\n"
                "logging_collector = off\n"
            )
        if self.clients != ipaddress.ip_network("127.0.0.1/32"):
            with (self.pgdata / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {self.clients} trust\n")

    @property
    def _listen_addresses(self) -> str:
        return "127.0.0.1" if self.host == "127.0.0.1" else f"127.0.0.1,{self.host}"

    def start(self, timeout: float = 60) -> None:
        """Initialise on first start, launch postgres, wait until it accepts connections, create ``flashsale``."""
        if self.running:
            return
        bin_dir = ensure_postgres()
        socket_dir = self._prepare_dirs()
        self._initdb(bin_dir)
        started = time.monotonic()
        with self.log_file.open("ab") as out:
            self._proc = subprocess.Popen(
                self._as_owner(
                    [
                        str(bin_dir / "postgres"),
                        "-D",
                        str(self.pgdata),
                        "-p",
                        str(self.port),
                        "-h",
                        self._listen_addresses,
                        "-k",
                        str(socket_dir),
                    ]
                ),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self._env(),
                cwd=self.data_dir,
            )
        try:
            self._wait_ready(started + timeout)
            self._create_database_if_missing("flashsale")
        except BaseException:
            self.stop()
            raise
        log.info("PostgreSQL ready at %s:%d in %.1fs", self.host, self.port, time.monotonic() - started)

    def _wait_ready(self, deadline: float) -> None:
        """Retry a psycopg connection until it succeeds, the server dies, or time runs out."""
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                raise PostgresServerError(
                    f"postgres exited with code {code}; tail of {self.log_file}:\n{processes.tail(self.log_file)}"
                )
            try:
                with psycopg.connect(self.dsn_for("postgres"), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                last_error = exc
            time.sleep(0.1)
        raise PostgresServerError(
            f"postgres not ready on port {self.port} (last error: {last_error}); "
            f"tail of {self.log_file}:\n{processes.tail(self.log_file)}"
        )

    def _create_database_if_missing(self, name: str) -> None:
        """Create database ``name`` unless it exists."""
        if not _DB_NAME_RE.match(name):
            raise ValueError(f"invalid database name {name!r}: use lowercase letters, digits and _")
        with psycopg.connect(self.dsn_for("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if exists is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def checkpoint(self) -> None:
        """Write every dirty page out now (CHECKPOINT), so what was written so far is not flushed during what
        comes next."""
        with psycopg.connect(self.dsn_for("postgres"), autocommit=True) as conn:
            conn.execute("CHECKPOINT")

    def create_database(self, name: str) -> str:
        """Create a fresh, empty database ``name`` (dropping any existing one) and return its DSN."""
        if not _DB_NAME_RE.match(name):
            raise ValueError(f"invalid database name {name!r}: use lowercase letters, digits and _")
        with psycopg.connect(self.dsn_for("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.dsn_for(name)

    def stop(self, timeout: float = 30) -> None:
        """Stop the server with a fast shutdown (SIGINT), then SIGKILL its process group after ``timeout``."""
        proc = self._proc
        self._proc = None
        if proc is None:
            return
        processes.stop(proc, signal.SIGINT, timeout, "postgres")

    def restart(self, timeout: float = 60) -> None:
        """Stop and start the server again on the same port, keeping its data."""
        self.stop()
        self.start(timeout=timeout)

    def __enter__(self) -> PostgresServer:
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
