"""Runs the Alembic migrations of `migrations/` on a Database, under the migration lock.

Every step of one call runs in ONE transaction whose first statement takes the lock: a transaction-scoped
advisory lock (`pg_advisory_xact_lock`) on PostgreSQL, `BEGIN IMMEDIATE` on SQLite. Instances (and gunicorn
workers) starting together therefore wait for each other, and the later ones find the work done; a failed
step rolls back everything of that call (PostgreSQL and SQLite both have transactional DDL).

Databases made by the earlier in-house runner (table `schema_migrations(component, version, name,
applied)`) are adopted in the same transaction: a store without an Alembic revision but with legacy rows
is stamped at `<store>_<NNNN>` of its highest legacy version, then upgraded as usual. The legacy table is
left in place as history (nothing writes it any more).

From a shell (same code path, lock included):

    python -m smart_app.storage.migrator upgrade [--database URL_OR_SQLITE_FILE] [--store NAME]
    python -m smart_app.storage.migrator current|history [...]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, event, text
from sqlalchemy.pool import NullPool

from smart_app.config import defaults
from smart_app.storage.database import Database, open_database
from smart_app.storage.schema import ALL, SCRIPTS, current, head, revision_id, store_of, wanted

log = logging.getLogger(__name__)

LEGACY_TABLE = "schema_migrations"
# pg_advisory_xact_lock key serialising schema migrations across instances ("ccmready" in ASCII, truncated).
MIGRATION_LOCK_KEY = 0x63636D7265616479 & 0x7FFFFFFFFFFFFFFF


class SchemaError(RuntimeError):
    """The database cannot be brought to this app's schema (e.g. a newer version of the app migrated it)."""


def scripts() -> ScriptDirectory:
    return ScriptDirectory(str(SCRIPTS))


def run(db: Database, store: str = ALL) -> list[str]:
    """Adopt legacy versions, then upgrade `store` (or every store) to head; returns the revisions applied."""
    stores = wanted(store)
    applied: list[str] = []

    def on_apply(*, step: Any, **_kw: Any) -> None:
        if step.is_upgrade:
            applied.extend(step.up_revision_ids)

    with _locked_connection(db) as conn:
        script = scripts()
        adopted = _adopt_legacy(conn, script, stores)
        cfg = Config()
        cfg.set_main_option("script_location", str(SCRIPTS))
        cfg.attributes["connection"] = conn
        cfg.attributes["on_version_apply"] = (on_apply,)
        command.upgrade(cfg, ALL if store == ALL else f"{store}@head")
    if adopted or applied:
        log.info("schema on %s: adopted %s, applied %s", db.label or db.dialect, adopted, applied)
    return applied


@contextlib.contextmanager
def _locked_connection(db: Database) -> Iterator[Connection]:
    """A SQLAlchemy connection to `db` in one transaction holding the migration lock: committed at the
    end, rolled back on error."""
    if db.dialect == "postgresql":
        url = str(getattr(db, "url", ""))
        engine = create_engine(
            "postgresql+psycopg://" + url.split("://", 1)[1],
            poolclass=NullPool,
            connect_args={"connect_timeout": 10},
        )
    else:
        path = Path(getattr(db, "path", "")).resolve()
        engine = create_engine(f"sqlite:///{path}", poolclass=NullPool, connect_args={"timeout": 60})

        # Transactional DDL on SQLite (the recipe in SQLAlchemy's pysqlite docs): the driver stays in
        # autocommit and SQLAlchemy's BEGIN becomes BEGIN IMMEDIATE, the write lock other processes wait on.
        @event.listens_for(engine, "connect")
        def _driver_autocommit(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    try:
        with engine.connect() as conn, conn.begin():
            if db.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            yield conn
    finally:
        engine.dispose()


def _adopt_legacy(conn: Connection, script: ScriptDirectory, stores: Sequence[str]) -> list[str]:
    """Stamp each store that has rows in the old runner's table but no Alembic revision yet."""
    if not conn.dialect.has_table(conn, LEGACY_TABLE):
        return []
    ctx = MigrationContext.configure(conn)
    have = {store_of(rev) for rev in ctx.get_current_heads()}
    adopted = []
    for store in stores:
        if store in have:
            continue
        version = conn.execute(
            text(f"SELECT MAX(version) FROM {LEGACY_TABLE} WHERE component = :store"), {"store": store}
        ).scalar()
        if version is None:
            continue
        revision = revision_id(store, int(version))
        if revision not in {r.revision for r in script.walk_revisions()}:
            raise SchemaError(f"store {store} is at version {version}, newer than this app knows")
        ctx.stamp(script, revision)
        adopted.append(revision)
    return adopted


# ----------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """Apply or show CCM Ready's schema migrations (the app applies them on start)."""
    p = argparse.ArgumentParser(prog="python -m smart_app.storage.migrator", description=main.__doc__)
    p.add_argument("action", choices=("upgrade", "current", "history"))
    p.add_argument(
        "--database",
        default=defaults().get("DATABASE_URL"),
        help="a postgresql:// URL or a SQLite file (default: the app's CCM_READY_DATABASE_URL)",
    )
    p.add_argument("--store", default=ALL, help="one store's branch (default: every store)")
    args = p.parse_args(argv)
    try:
        stores = wanted(args.store)
    except ValueError as exc:
        p.error(str(exc))
    if args.action == "history":
        for rev in scripts().walk_revisions():
            if store_of(rev.revision) in stores:
                sys.stdout.write(f"{rev.revision:<22} {(rev.doc or '').splitlines()[0]}\n")
        return 0
    if not args.database:
        p.error("give --database (a postgresql:// URL or a SQLite file) or set CCM_READY_DATABASE_URL")
    try:
        db = open_database(args.database)
    except ValueError as exc:
        p.error(str(exc))
    try:
        if args.action == "upgrade":
            applied = run(db, args.store)
            sys.stdout.write(f"applied: {' '.join(applied) or 'nothing (up to date)'}\n")
        for rev in sorted(current(db)):
            if store_of(rev) in stores:
                sys.stdout.write(f"{rev}{'  (head)' if rev == head(store_of(rev)) else ''}\n")
    finally:
        db.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
