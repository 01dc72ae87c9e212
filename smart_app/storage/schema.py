"""Schema migrations (Alembic) applied on start: which store is at which revision, and bringing it to head.

Each store is one Alembic branch labelled with its name (`sessions`, `outbox`, `careplan_drafts`,
`cds_replay`, `worklist_jobs`, `ledger`, `remittance`), its scripts in `migrations/versions/`. A SQLite
file holds its own store's branch; the shared PostgreSQL database holds every branch (`alembic_version`
then has one row per store).

`upgrade(db, "outbox")` (what `Database.migrate` calls) brings one store to its head, `upgrade(db)` every
store. A database already at head costs one query and no Alembic import (Alembic and SQLAlchemy take about
half a second to import: `smart_app.storage.migrator` is loaded only when a step must run, then applies
it in one transaction under the migration lock).

Revision ids are `<store>_<NNNN>`, one file `versions/<store>_<NNNN>.py` each, so the head of a store is
its highest number (tests/storage/test_migrations.py checks this agrees with Alembic's revision graph).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smart_app.storage.database import Database

SCRIPTS = Path(__file__).with_name("migrations")
ALL = "heads"  # every store
_REVISION_FILE = re.compile(r"^([a-z][a-z_]*)_(\d{4})\.py$")


@functools.cache
def heads() -> dict[str, str]:
    """store name -> its newest revision id (from the file names of `migrations/versions`)."""
    newest: dict[str, int] = {}
    for path in (SCRIPTS / "versions").iterdir():
        m = _REVISION_FILE.match(path.name)
        if m:
            newest[m[1]] = max(newest.get(m[1], 0), int(m[2]))
    return {store: revision_id(store, n) for store, n in sorted(newest.items())}


def revision_id(store: str, number: int) -> str:
    return f"{store}_{number:04d}"


def store_of(revision: str) -> str:
    return revision.rsplit("_", 1)[0]


def stores() -> tuple[str, ...]:
    return tuple(heads())


def head(store: str) -> str:
    """The newest revision of one store (ValueError for a store with no migrations)."""
    try:
        return heads()[store]
    except KeyError:
        known = ", ".join(stores())
        raise ValueError(f"no migrations for a store named {store!r} (known: {known})") from None


def wanted(store: str) -> tuple[str, ...]:
    """The stores `store` names: one, or every store for ALL."""
    if store == ALL:
        return stores()
    head(store)
    return (store,)


def current(db: Database) -> set[str]:
    """The revisions recorded in `db` (empty for a database never migrated with Alembic)."""
    with db.read() as tx:
        if db.dialect == "postgresql":
            found = tx.one("SELECT to_regclass('alembic_version') IS NOT NULL")
            exists = bool(found and found[0])
        else:
            exists = (
                tx.one("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'")
                is not None
            )
        return {r[0] for r in tx.all("SELECT version_num FROM alembic_version")} if exists else set()


def upgrade(db: Database, store: str = ALL) -> list[str]:
    """Bring `store` (or every store) of `db` to head; returns the revisions applied (empty: up to date)."""
    if {head(s) for s in wanted(store)} <= current(db):
        return []
    # lazy: optional heavy dependency (Alembic + SQLAlchemy, ~0.5 s) loaded only when a step must run
    from smart_app.storage import migrator

    return migrator.run(db, store)
