"""Schema migrations (Alembic, smart_app/storage/migrations) on SQLite and PostgreSQL: a fresh database, a
database made by the earlier in-house runner, and instances starting at once."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from smart_app.capture.ledger import Ledger
from smart_app.capture.outbox import Outbox
from smart_app.careplan.drafts import DraftStore
from smart_app.cds.replay_store import StoredReplayCache
from smart_app.program.jobs import JobStore
from smart_app.program.remittance_store import RemittanceStore
from smart_app.storage import Database, PostgresDatabase, SqliteDatabase, database_for, schema
from smart_app.storage.migrator import LEGACY_TABLE, SchemaError, main, run, scripts
from smart_app.web.sessions import SessionStore
from tests.storage.conftest import Target
from tests.support.postgres import PostgresCluster

TABLES = {
    "sessions": ("sessions",),
    "outbox": ("outbox",),
    "careplan_drafts": ("drafts",),
    "cds_replay": ("cds_replay",),
    "worklist_jobs": ("worklist_jobs",),
    "ledger": ("ledger", "write_profile"),
    "remittance": ("claims", "remittances", "lines"),
}


_opened: list[Database] = []


@pytest.fixture(autouse=True)
def _close_opened() -> Iterator[None]:
    yield
    while _opened:
        _opened.pop().close()


def _fresh(target: Target) -> Database:
    """A new Database object each call, as another process or instance would have (no shared cache)."""
    t = target()
    db: Database = PostgresDatabase(t) if "://" in t else SqliteDatabase(t)
    _opened.append(db)
    return db


def _tables(db: Database) -> set[str]:
    with db.read() as tx:
        if db.dialect == "postgresql":
            rows = tx.all("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        else:
            rows = tx.all("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {r[0] for r in rows}


def _columns(db: Database, table: str) -> set[str]:
    with db.read() as tx:
        if db.dialect == "postgresql":
            rows = tx.all("SELECT column_name FROM information_schema.columns WHERE table_name = ?", (table,))
        else:
            rows = tx.all(f"SELECT name FROM pragma_table_info('{table}')")
    return {r[0] for r in rows}


def test_head_by_file_name_agrees_with_alembics_revision_graph() -> None:
    """The fast 'already at head?' check reads heads from file names; Alembic reads the scripts."""
    script = scripts()
    assert set(schema.stores()) == set(TABLES)
    for store, head in schema.heads().items():
        rev = script.get_revision(f"{store}@head")
        assert rev is not None and rev.revision == head
    for rev in script.walk_revisions():  # every revision is named <store>_<NNNN> in a file of that name
        assert rev.revision == Path(rev.path).stem
        assert schema.store_of(rev.revision) in TABLES
    assert {schema.store_of(h) for h in script.get_heads()} == set(TABLES)  # one head per store


def test_a_fresh_database_gets_every_store_at_head_once(target: Target) -> None:
    db = _fresh(target)
    applied = schema.upgrade(db)
    assert sorted(applied) == sorted(r.revision for r in scripts().walk_revisions())
    assert schema.current(db) == set(schema.heads().values())
    assert {t for tables in TABLES.values() for t in tables} <= _tables(db)
    assert "lease_owner" in _columns(db, "outbox")  # outbox_0002
    assert schema.upgrade(_fresh(target)) == []  # a restart (or another instance) applies nothing
    with db.read() as tx:
        assert tx.one("SELECT COUNT(*) FROM alembic_version") == (len(TABLES),)


def test_each_store_migrates_its_own_branch_on_start(target: Target) -> None:
    """A store opening a database brings its own tables to head (SQLite: one file per store)."""
    Outbox(target())
    db = _fresh(target)
    assert schema.current(db) == {"outbox_0002"}
    assert "outbox" in _tables(db) and "ledger" not in _tables(db)
    for make in (SessionStore, DraftStore, StoredReplayCache, JobStore, Ledger, RemittanceStore):
        make(target())
    assert schema.current(db) == set(schema.heads().values())


# ----------------------------------------------------------------------------- the old runner's databases

# What smart_app.storage's earlier numbered runner left behind (its SQL, verbatim): each store's tables and
# `schema_migrations` rows. The outbox is at version 1 here (before the lease owner column).
LEGACY = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (component TEXT NOT NULL, version INTEGER"
    " NOT NULL, name TEXT NOT NULL, applied DOUBLE PRECISION NOT NULL, PRIMARY KEY (component, version))",
    "CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, data TEXT NOT NULL,"
    " context TEXT, oauth TEXT, touched DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS outbox (id TEXT PRIMARY KEY, kind TEXT NOT NULL,"
    ' fhir_base TEXT NOT NULL, patient_id TEXT NOT NULL, mode TEXT NOT NULL, "user" TEXT,'
    " payload TEXT NOT NULL,"
    " summary TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
    " next_attempt DOUBLE PRECISION NOT NULL, last_error TEXT, created DOUBLE PRECISION NOT NULL,"
    " saved_at DOUBLE PRECISION, result TEXT)",
    "CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt)",
    "CREATE INDEX IF NOT EXISTS outbox_patient ON outbox (fhir_base, patient_id)",
    "CREATE TABLE IF NOT EXISTS drafts (key TEXT PRIMARY KEY, payload TEXT NOT NULL, "
    "state TEXT NOT NULL, error TEXT NOT NULL DEFAULT '', updated DOUBLE PRECISION NOT NULL)",
    "INSERT INTO schema_migrations VALUES ('sessions', 1, 'sessions', 1.0)",
    "INSERT INTO schema_migrations VALUES ('outbox', 1, 'outbox', 1.0)",
    "INSERT INTO schema_migrations VALUES ('careplan_drafts', 1, 'careplan drafts', 1.0)",
    f"INSERT INTO sessions VALUES ('{hashlib.sha256(b'cookie-key').hexdigest()}', '{{\"csrf\": \"t\"}}',"
    " NULL, NULL, 1e12)",
    "INSERT INTO outbox (id, kind, fhir_base, patient_id, mode, payload, summary, state, next_attempt,"
    " created) VALUES ('e1', 'time', 'http://ehr/fhir', 'p1', 'open', '{}', '{}', 'pending', 0, 1)",
    "INSERT INTO drafts VALUES ('d1', '{\"goals\": []}', 'draft', '', 1)",
)


def _legacy(target: Target) -> Database:
    db = _fresh(target)
    with db.transaction() as tx:
        for statement in LEGACY:
            tx.run(statement)
    return db


def test_a_database_of_the_old_runner_is_adopted_and_upgraded_without_losing_data(target: Target) -> None:
    db = _legacy(target)
    outbox = Outbox(target())  # the app starts on the old database
    assert schema.current(db) == {"outbox_0002"}  # stamped at outbox_0001, then upgraded
    assert "lease_owner" in _columns(db, "outbox")
    item = outbox.get("e1")
    assert item is not None and item.state == "pending"  # the pending entry is still there, deliverable
    assert SessionStore(target(), idle_seconds=1e13).load_data("cookie-key") == {"csrf": "t"}
    got = DraftStore(target()).get("d1")
    assert got is not None and got[0] == {"goals": []}
    adopted = {"outbox", "sessions", "careplan_drafts"}
    assert set(schema.upgrade(db)) == {  # the stores the old runner never saw are created
        h for s, h in schema.heads().items() if s not in adopted
    }
    assert schema.current(db) == set(schema.heads().values())
    with db.read() as tx:  # the old table is left as history
        assert tx.one(f"SELECT COUNT(*) FROM {LEGACY_TABLE}") == (3,)


def test_a_legacy_version_newer_than_the_app_is_refused(target: Target) -> None:
    db = _legacy(target)
    with db.transaction() as tx:
        tx.run(f"INSERT INTO {LEGACY_TABLE} VALUES ('outbox', 9, 'from the future', 1.0)")
    with pytest.raises(SchemaError, match="outbox is at version 9"):
        run(db, "outbox")
    assert schema.current(db) == set()  # nothing stamped: the whole step rolled back


def test_a_pre_migration_ledger_file_is_adopted(tmp_path: Path) -> None:
    """A ledger.sqlite3 made before migrations (same tables, no version) keeps its rows."""
    path = tmp_path / "ledger.sqlite3"
    old = SqliteDatabase(path)
    with old.transaction() as tx:
        tx.run(
            "CREATE TABLE ledger (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,"
            " fhir_base TEXT NOT NULL, patient_id TEXT NOT NULL, user_ref TEXT, recorded TEXT NOT NULL,"
            " facts TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)"
        )
        tx.run(
            "CREATE TABLE write_profile (fhir_base TEXT NOT NULL, resource_type TEXT NOT NULL, profile TEXT"
            " NOT NULL, reason TEXT NOT NULL, updated REAL NOT NULL, PRIMARY KEY (fhir_base, resource_type))"
        )
        tx.run("INSERT INTO write_profile VALUES ('http://ehr/fhir', 'Encounter', 'note', 'refused', 1)")
    old.close()
    ledger = Ledger(path)
    assert ledger.refusals("http://ehr/fhir") == {"Encounter": ("note", "refused")}
    assert schema.current(ledger.db) == {"ledger_0001"}


# ----------------------------------------------------------------------------- instances starting at once

CHILD = """
import sys
from smart_app.storage import PostgresDatabase, SqliteDatabase, migrator  # imports done before the start
target = sys.argv[1]
db = PostgresDatabase(target) if "://" in target else SqliteDatabase(target)
print("ready", flush=True)
sys.stdin.readline()
print(" ".join(migrator.run(db)) or "-", flush=True)
"""


def test_instances_starting_at_once_apply_each_step_exactly_once(target: Target) -> None:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, target()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)  # two instances
    ]
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    for child in children:  # go, all together
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    results = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        results.append(out.split())
    applied = [rev for r in results for rev in r if rev != "-"]
    assert sorted(applied) == sorted(r.revision for r in scripts().walk_revisions())  # each once, in one
    assert sum(1 for r in results if r != ["-"]) == 1
    assert schema.current(_fresh(target)) == set(schema.heads().values())


def test_opening_the_shared_database_migrates_every_store(postgres: PostgresCluster) -> None:
    """database_for on PostgreSQL (DATABASE_URL) brings every store to head at the app's start (with SQLite,
    one file per store, each store migrates its own file when it opens)."""
    url = postgres.new_database()
    db = database_for({"DATABASE_URL": url}, "sessions")
    try:
        assert schema.current(db) == set(schema.heads().values())
    finally:
        db.close()


def test_migrator_command(target: Target, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["upgrade", "--database", target(), "--store", "outbox"]) == 0
    out = capsys.readouterr().out
    assert "applied: outbox_0001 outbox_0002" in out and "outbox_0002  (head)" in out
    assert main(["current", "--database", target()]) == 0
    assert capsys.readouterr().out.strip() == "outbox_0002  (head)"
    assert main(["history", "--store", "ledger"]) == 0
    assert capsys.readouterr().out.startswith("ledger_0001")
    with pytest.raises(SystemExit) as exc:
        main(["upgrade", "--database", target(), "--store", "nonesuch"])
    assert exc.value.code == 2


def test_a_database_at_head_is_checked_without_loading_alembic(tmp_path: Path) -> None:
    """Opening a store on an up-to-date database does not import Alembic or SQLAlchemy (start-up time)."""
    Outbox(tmp_path / "o.sqlite3")
    code = (
        "import sys, time\n"
        "from smart_app.capture.outbox import Outbox\n"
        f"Outbox({str(tmp_path / 'o.sqlite3')!r})\n"
        "print(any(m.split('.')[0] in ('alembic', 'sqlalchemy') for m in sys.modules))\n"
    )
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False", time.monotonic() - t0
