"""One way to reach the app's state: a SQLite file (the default) or a shared PostgreSQL database.

`Database.transaction()` gives a `Tx` whose `run` / `one` / `all` take SQL with `?` placeholders (translated
to psycopg's `%s` for PostgreSQL). Write SQL both engines understand: `ON CONFLICT ... DO NOTHING/UPDATE`,
`RETURNING`, `DOUBLE PRECISION` for epoch seconds (PostgreSQL's REAL is 4 bytes), `"user"` quoted. Where
they must differ, branch on `db.dialect` ("sqlite" | "postgresql"), e.g. `Tx.skip_locked` (appends
`FOR UPDATE SKIP LOCKED` on PostgreSQL; a SQLite write transaction is already exclusive).

Tables come from the Alembic migrations in `migrations/` (`Database.migrate(store)`, see `schema`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from smart_app.storage import schema
from smart_app.storage.sqlite import immediate, open_sqlite

log = logging.getLogger(__name__)

class Tx:
    """A transaction (or a read) on one connection; SQL uses `?` placeholders on both engines."""

    def __init__(self, cursor: Any, dialect: str) -> None:
        self._cur = cursor
        self.dialect = dialect

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute; returns the number of rows changed."""
        self._cur.execute(self._sql(sql), tuple(params))
        return int(self._cur.rowcount or 0)

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        self._cur.execute(self._sql(sql), tuple(params))
        row = self._cur.fetchone()
        return tuple(row) if row is not None else None

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self._cur.execute(self._sql(sql), tuple(params))
        return [tuple(r) for r in self._cur.fetchall()]

    @property
    def skip_locked(self) -> str:
        """Suffix for a SELECT whose rows this transaction leases (other instances skip them)."""
        return " FOR UPDATE SKIP LOCKED" if self.dialect == "postgresql" else ""


class Database:
    """A SQLite file or a PostgreSQL pool; thread-safe; subclasses provide `_transaction` and `_read`."""

    dialect = "sqlite"
    label = ""
    _migrated: set[str]
    _migrate_lock: threading.Lock

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        """A write transaction: committed on success, rolled back on any error."""
        with self._transaction() as tx:
            yield tx

    @contextlib.contextmanager
    def read(self) -> Iterator[Tx]:
        """A read (no write lock taken on SQLite)."""
        with self._read() as tx:
            yield tx

    def _transaction(self) -> contextlib.AbstractContextManager[Tx]:
        raise NotImplementedError

    def _read(self) -> contextlib.AbstractContextManager[Tx]:
        raise NotImplementedError

    def named_lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        """A lock every process and instance sharing this database respects (e.g. one token refresh at a
        time per session). Not re-entrant; keep what it guards short."""
        raise NotImplementedError

    def ping(self) -> None:
        """Raise when the database cannot be reached."""
        with self.read() as tx:
            tx.one("SELECT 1")

    def close(self) -> None:
        """Release connections (the object must not be used afterwards)."""

    def migrate(self, store: str = schema.ALL) -> list[str]:
        """Bring `store`'s tables (default: every store's) to the newest schema revision, once per object
        (concurrency-safe: see `smart_app.storage.migrator`); returns the revisions applied."""
        with self._migrate_lock:
            if store in self._migrated or schema.ALL in self._migrated:
                return []
            applied = schema.upgrade(self, store)
            self._migrated.add(store)
        return applied


class SqliteDatabase(Database):
    """One SQLite file (WAL), one connection shared by the process's threads under a lock."""

    dialect = "sqlite"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.label = f"sqlite:{self.path.name}"
        self._lock = threading.RLock()
        self._migrated, self._migrate_lock = set(), threading.Lock()
        self._conn = open_sqlite(self.path, ())

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Tx]:
        with immediate(self._conn, self._lock) as conn:
            yield Tx(conn.cursor(), "sqlite")

    @contextlib.contextmanager
    def _read(self) -> Iterator[Tx]:
        with self._lock:
            yield Tx(self._conn.cursor(), "sqlite")

    @contextlib.contextmanager
    def named_lock(self, name: str) -> Iterator[None]:
        """One byte of `<file>.locks`, locked with `lockf` (processes) under a thread lock (threads)."""
        offset = _lock_key(name) % (1 << 30)
        with self._named_lock(offset), open(f"{self.path}.locks", "a+b") as fh:
            fcntl.lockf(fh.fileno(), fcntl.LOCK_EX, 1, offset)
            try:
                yield
            finally:
                fcntl.lockf(fh.fileno(), fcntl.LOCK_UN, 1, offset)

    def _named_lock(self, offset: int) -> threading.Lock:
        """The thread half, shared by every SqliteDatabase of this file here (POSIX locks are per process)."""
        with _shared_lock:
            return _thread_locks.setdefault((str(self.path.resolve()), offset), threading.Lock())

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._conn.close()


class PostgresDatabase(Database):
    """A psycopg 3 connection pool, opened lazily in each process (safe across gunicorn's fork)."""

    dialect = "postgresql"

    def __init__(self, url: str, *, pool_size: int = 10, connect_timeout: float = 10.0) -> None:
        self.url = url
        self.label = "postgresql"
        self.pool_size = max(2, pool_size)
        self.connect_timeout = connect_timeout
        self._pool: Any = None
        self._pid = 0
        self._lock = threading.Lock()
        self._migrated, self._migrate_lock = set(), threading.Lock()

    def _get_pool(self) -> Any:
        if self._pool is None or self._pid != os.getpid():
            with self._lock:
                if self._pool is None or self._pid != os.getpid():
                    # lazy: optional heavy dependency (psycopg_pool, PostgreSQL only)
                    from psycopg_pool import ConnectionPool

                    self._pool = ConnectionPool(
                        self.url,
                        min_size=1,
                        max_size=self.pool_size,
                        kwargs={"autocommit": True, "connect_timeout": int(self.connect_timeout)},
                        check=ConnectionPool.check_connection,
                        timeout=self.connect_timeout,
                        name="ccm-ready",
                        open=True,
                    )
                    self._pid = os.getpid()
        return self._pool

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Tx]:
        with self._get_pool().connection() as conn, conn.transaction(), conn.cursor() as cur:
            yield Tx(cur, "postgresql")

    def _read(self) -> contextlib.AbstractContextManager[Tx]:
        return self._transaction()

    @contextlib.contextmanager
    def named_lock(self, name: str) -> Iterator[None]:
        """A session-level advisory lock held on one pooled connection for the block."""
        key = _lock_key(name)
        with self._get_pool().connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    def close(self) -> None:
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.close()
            self._pool = None


def _lock_key(name: str) -> int:
    """A stable signed 63-bit number for a lock name (PostgreSQL advisory keys are bigint)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big") & 0x7FFFFFFFFFFFFFFF


_shared: dict[tuple[str, int], PostgresDatabase] = {}
_shared_lock = threading.Lock()
_thread_locks: dict[tuple[str, int], threading.Lock] = {}


def is_postgres_url(url: str | None) -> bool:
    return bool(url) and str(url).startswith(("postgresql://", "postgres://"))


def open_database(target: str | Path, *, pool_size: int = 10) -> Database:
    """`postgresql://...` -> the process's shared pool for that URL; anything else -> a SQLite file path."""
    if isinstance(target, str) and is_postgres_url(target):
        with _shared_lock:
            key = (target, os.getpid())
            db = _shared.get(key)
            if db is None:
                db = _shared[key] = PostgresDatabase(target, pool_size=pool_size)
            return db
    if isinstance(target, str) and "://" in target:
        raise ValueError("CCM_READY_DATABASE_URL must start with postgresql:// (or be unset for SQLite)")
    return SqliteDatabase(target)
