"""The app's state behind one storage layer: SQLite files under DATA_DIR (default) or PostgreSQL.

Set `CCM_READY_DATABASE_URL=postgresql://user:pass@host/db` and every stateful part (sessions, the outbox,
care-plan drafts, the CDS `jti` replay cache, worklist jobs, the capture ledger, claims and remittances)
shares that database, so several app instances behind a load balancer see the same state. Without it,
each part keeps its own SQLite file in DATA_DIR (`sessions.sqlite3`, `outbox.sqlite3`, `ledger.sqlite3`, ...).

Schemas are Alembic migrations (`migrations/versions/<store>_<NNNN>.py`, one branch per store) applied on
start: `Database.migrate(store)` when a store opens, and every store at once when `database_for` first
opens the shared PostgreSQL database; under a PostgreSQL advisory lock / a SQLite write lock, so instances
starting together apply each step once (`schema`, `migrator`). Databases of the earlier in-house runner
(`schema_migrations`) are adopted. Migrations are append-only: never edit a released one, add the next.

Adding a table (e.g. an append-only ledger): write `migrations/versions/ledger_0001.py` (revision
"ledger_0001", branch_labels ("ledger",), SQL for both engines through `op.execute`), then

    from smart_app.storage import Database, as_database, database_for

    class Ledger:
        def __init__(self, db: Database | str | Path) -> None:
            self.db = as_database(db)     # a Database, a SQLite path, or a postgresql:// URL
            self.db.migrate("ledger")     # on start; idempotent, cheap when up to date

        def append(self, entry: str) -> None:
            with self.db.transaction() as tx:      # committed at the end, rolled back on error
                # Serialise appenders across processes and instances: a SQLite write transaction is
                # already exclusive; on PostgreSQL take a transaction-scoped lock first.
                if tx.dialect == "postgresql":
                    tx.run("LOCK TABLE ledger IN EXCLUSIVE MODE")  # readers still read
                last = tx.one("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1")
                tx.run("INSERT INTO ledger (seq, entry, hash, created) VALUES (?, ?, ?, ?)", (...))

    # in the blueprint / init_app: Ledger(database_for(app.config, "ledger"))

Other tools: `tx.skip_locked` (lease rows: `SELECT ... LIMIT n` + tx.skip_locked, as the outbox does),
`db.named_lock(name)` (a lock across processes and instances outside any transaction, e.g. one token refresh
per session), `db.ping()` (readiness). Test a store on both engines with the `target` fixture of
tests/storage/conftest.py (a SQLite path or a fresh database of the throwaway PostgreSQL cluster).

SQL rules for both engines are in `smart_app.storage.database`'s docstring (placeholders `?`, `ON CONFLICT`,
`DOUBLE PRECISION`, `tx.skip_locked` for leases).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from smart_app.storage.database import (
    Database,
    PostgresDatabase,
    SqliteDatabase,
    Tx,
    is_postgres_url,
    open_database,
)

__all__ = [
    "Database",
    "PostgresDatabase",
    "SqliteDatabase",
    "Tx",
    "as_database",
    "database_for",
    "is_postgres_url",
    "open_database",
]


def as_database(target: Database | str | Path) -> Database:
    """A Database as is; a `postgresql://` URL or a SQLite file path opened."""
    return target if isinstance(target, Database) else open_database(target)


def database_for(config: Mapping[str, Any], name: str, explicit: str | Path | None = None) -> Database:
    """The database a store named `name` uses under this configuration.

    An explicit path (e.g. OUTBOX_DB, LEDGER_DB) wins; then DATABASE_URL (shared PostgreSQL: every store's
    migrations are applied the first time this process opens it); else DATA_DIR/<name>.sqlite3.
    """
    if explicit:
        return open_database(explicit if isinstance(explicit, Path) else str(explicit))
    url = config.get("DATABASE_URL")
    if url:
        db = open_database(str(url), pool_size=int(config.get("DATABASE_POOL_SIZE") or 10))
        db.migrate()
        return db
    return SqliteDatabase(Path(config.get("DATA_DIR") or ".ccm-ready") / f"{name}.sqlite3")
