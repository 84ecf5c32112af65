"""Storage behind one interface: a SQLite adapter (the default) and a PostgreSQL adapter.

SQL is written once with `?` placeholders and portable types; migrations may use `{serial_pk}`
for an auto-increment primary key and `{blob}` for bytes, and a migration may be a script per dialect
where the engines differ (an index method, a constraint SQLite cannot alter). Work runs in a worker thread,
one transaction per call.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import contextvars
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

import psycopg
import psycopg_pool

from flashsale.common import errors, tracing
from flashsale.common.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
Row = tuple[Any, ...]
Params = Sequence[Any]
Migration = str | Mapping[str, str]  # one script, or one per dialect ("sqlite", "postgres")


class Tx(Protocol):
    """A running transaction."""

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run a statement; return the affected row count."""
        ...

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        """Run a statement once per parameter row."""
        ...

    def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        """Run a query; return its first row or None."""
        ...

    def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        """Run a query; return every row."""
        ...

    def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Params]) -> None:
        """Insert rows in bulk (COPY on PostgreSQL); Conflict when a row breaks a unique or exclusion constraint (the
        transaction is then spoiled: let it roll back)."""
        ...


_SYSTEMS = {"sqlite": "sqlite", "postgres": "postgresql"}  # OpenTelemetry's db.system.name values


class Conflict(Exception):
    """A bulk insert met a row with the same unique key."""


class Database(abc.ABC):
    """A service's database: transactions, migrations, and async execution in worker threads."""

    dialect: str
    serial_pk: str
    blob: str

    def __init__(self, workers: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="db")

    @abc.abstractmethod
    def transaction(self) -> contextlib.AbstractContextManager[Tx]:
        """Open a transaction committed on success, rolled back on error."""

    def migrate(self, migrations: Sequence[Migration]) -> None:
        """Apply the migrations not applied yet, in order, each in its own transaction."""
        with self.transaction() as tx:
            self._lock_migrations(tx)  # CREATE TABLE IF NOT EXISTS races with a concurrent one on PostgreSQL
            tx.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)")
        for version, script in enumerate(migrations, start=1):
            with self.transaction() as tx:
                self._lock_migrations(tx)
                if tx.fetchone("SELECT version FROM schema_migrations WHERE version = ?", (version,)):
                    continue
                text = script if isinstance(script, str) else script[self.dialect]
                for statement in text.format(serial_pk=self.serial_pk, blob=self.blob).split(";"):
                    if statement.strip():
                        tx.execute(statement)
                tx.execute("INSERT INTO schema_migrations (version) VALUES (?)", (version,))
                log.info("migrated", extra={"version": version})

    def _lock_migrations(self, tx: Tx) -> None:
        """Serialise concurrent migrators (a no-op where writers are already serialised)."""

    def run_sync(self, work: Callable[[Tx], T]) -> T:
        """Run work in one transaction in the calling thread (a client span around it when traces are on)."""
        if tracing.active():
            return self._traced(work)
        with self.transaction() as tx:
            return work(tx)

    def _traced(self, work: Callable[[Tx], T]) -> T:
        operation = getattr(getattr(work, "func", work), "__name__", "")  # a partial's function
        operation = operation if operation.isidentifier() else "transaction"  # not "<lambda>"
        attributes = {"db.system.name": _SYSTEMS[self.dialect], "db.operation.name": operation}
        name = f"{self.dialect} {operation}"
        with tracing.span(name, kind=tracing.CLIENT, attributes=attributes), self.transaction() as tx:
            return work(tx)

    async def run(self, work: Callable[[Tx], T]) -> T:
        """Run work in one transaction in a worker thread (in the caller's trace context when traces are on)."""
        loop = asyncio.get_running_loop()
        if tracing.active():
            context = contextvars.copy_context()
            return await loop.run_in_executor(self._executor, context.run, self.run_sync, work)
        return await loop.run_in_executor(self._executor, self.run_sync, work)

    def pool_stats(self) -> dict[str, int]:
        """The connection pool's figures (psycopg_pool's names); none without a pool."""
        return {}

    def close(self) -> None:
        """Release connections and worker threads."""
        self._executor.shutdown(wait=True)


class _SqliteTx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Params = ()) -> int:
        return self._conn.execute(sql, params).rowcount

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        self._conn.executemany(sql, rows)

    def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        row: Row | None = self._conn.execute(sql, params).fetchone()
        return row

    def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return self._conn.execute(sql, params).fetchall()

    def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Params]) -> None:
        marks = ", ".join("?" * len(columns))
        try:
            self._conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
        except sqlite3.IntegrityError as exc:
            raise Conflict(str(exc)) from exc


class SqliteDatabase(Database):
    """One SQLite file per service; writers serialised by one connection and a lock (WAL, synchronous=FULL)."""

    dialect = "sqlite"
    serial_pk = "INTEGER PRIMARY KEY AUTOINCREMENT"
    blob = "BLOB"

    def __init__(self, path: Path) -> None:
        super().__init__(workers=1)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield _SqliteTx(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        super().close()
        self._conn.close()


class _PostgresTx:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s")

    def execute(self, sql: str, params: Params = ()) -> int:
        return self._conn.execute(self._sql(sql), params).rowcount

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(self._sql(sql), rows)

    def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        row: Row | None = self._conn.execute(self._sql(sql), params).fetchone()
        return row

    def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return self._conn.execute(self._sql(sql), params).fetchall()

    def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Params]) -> None:
        try:
            with self._conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        except (psycopg.errors.UniqueViolation, psycopg.errors.ExclusionViolation) as exc:
            raise Conflict(str(exc)) from exc


class PostgresDatabase(Database):
    """PostgreSQL through a psycopg connection pool; the service's tables live in a schema of its own."""

    dialect = "postgres"
    serial_pk = "BIGSERIAL PRIMARY KEY"
    blob = "BYTEA"

    def __init__(self, dsn: str, schema: str, pool_size: int) -> None:
        super().__init__(workers=pool_size)
        self.schema = schema
        with psycopg.connect(dsn) as conn, conn.transaction():  # replicas starting at once: one creates it
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (schema,))
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        self._pool = psycopg_pool.ConnectionPool(
            dsn,
            min_size=1,
            max_size=pool_size,
            # custom plans: a plan cached while a table was nearly empty (a sale's first seconds) would keep
            # scanning it whole once it has grown; planning per execution costs far less than that
            kwargs={"options": f"-c search_path={schema} -c plan_cache_mode=force_custom_plan"},
            check=psycopg_pool.ConnectionPool.check_connection,
            open=True,
        )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        try:
            with self._pool.connection() as conn, conn.transaction():
                yield _PostgresTx(conn)
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            raise errors.TemporaryError(f"database unavailable: {exc}") from exc

    def _lock_migrations(self, tx: Tx) -> None:
        tx.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (self.schema,))

    def pool_stats(self) -> dict[str, int]:
        """The connection pool's figures: pool_size, pool_available, requests_num, requests_wait_ms, …"""
        return {key: int(value) for key, value in self._pool.get_stats().items()}

    def close(self) -> None:
        super().close()
        self._pool.close()


def open_database(settings: Settings, service: str) -> Database:
    """The database of one service, chosen by FLASHSALE_DB_BACKEND."""
    if settings.db_backend == "postgres":
        return PostgresDatabase(settings.postgres_dsn, f"{service}_svc", settings.postgres_pool_size)
    return SqliteDatabase(settings.sqlite_dir / f"{service}.db")
