"""The ledger: the app's own system of record of what it captured, append-only and hash-chained.

Every time entry, consent capture and correction is appended here BEFORE any write to the EHR, with who
(`user`), when (`recorded`, UTC), what (`facts`: the entry as JSON) and about whom (`fhir_base`,
`patient_id`).
Where it was written is appended later as a `delivery` record naming the entry (`facts.of`), the write profile
used (structured | note | none) and the references the EHR returned, so rows are never updated. The outbox
item with the same id is the entry's delivery state (pending / saved / rejected).

Each row carries `hash` = SHA-256 over its canonical content and the previous row's hash; `verify()`
recomputes the chain and names the first record whose content or link does not match.

The tables (the ledger plus a small table of per-server write profiles) live in the app's storage layer:
DATA_DIR/ledger.sqlite3 by default, the shared PostgreSQL database when DATABASE_URL is set (migrations:
storage/migrations/versions/ledger_*.py). Appends are serialised across processes and instances (SQLite's
write lock; on PostgreSQL a table lock taken by the appending transaction), so the chain stays one line.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from smart_app.storage import Database, as_database, database_for

ENTRY_KINDS = ("time", "consent", "consent-stop", "correction", "visit")
KINDS = (*ENTRY_KINDS, "delivery")
GENESIS = "0" * 64

_COLUMNS = "seq, id, kind, fhir_base, patient_id, user_ref, recorded, facts, prev_hash, hash"


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    seq: int
    id: str
    kind: str
    fhir_base: str
    patient_id: str
    user: str | None
    recorded: str
    facts: dict[str, Any]
    prev_hash: str
    hash: str
    facts_text: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "id": self.id,
            "kind": self.kind,
            "fhir_base": self.fhir_base,
            "patient_id": self.patient_id,
            "user": self.user,
            "recorded": self.recorded,
            "facts": self.facts,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True, slots=True)
class Broken:
    """A record the chain check rejects, and why."""

    seq: int
    id: str
    reason: str


@dataclass(frozen=True, slots=True)
class ChainCheck:
    count: int
    broken: tuple[Broken, ...]
    head: str

    @property
    def ok(self) -> bool:
        return not self.broken


def canonical(facts: dict[str, Any]) -> str:
    return json.dumps(facts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_hash(
    seq: int,
    record_id: str,
    kind: str,
    fhir_base: str,
    patient_id: str,
    user: str | None,
    recorded: str,
    facts_text: str,
    prev_hash: str,
) -> str:
    body = json.dumps(
        [seq, record_id, kind, fhir_base, patient_id, user, recorded, facts_text, prev_hash],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _row(row: tuple[Any, ...]) -> LedgerRecord:
    try:
        facts = json.loads(row[7])
    except (TypeError, ValueError):
        facts = {}
    return LedgerRecord(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        facts if isinstance(facts, dict) else {},
        row[8],
        row[9],
        row[7],
    )


class Ledger:
    """The ledger store on a Database (a SQLite file by default). Thread-safe; appends are serialised."""

    def __init__(self, db: Database | Path | str, *, clock: Callable[[], float] = time.time) -> None:
        self.db = as_database(db)
        self.path = getattr(self.db, "path", None)
        self.clock = clock
        self.db.migrate("ledger")  # tables: storage/migrations/versions/ledger_*.py

    @classmethod
    def for_config(cls, config: Mapping[str, Any], explicit: Path | str | None = None) -> Ledger:
        """The app's ledger: `explicit` or LEDGER_DB (a file) wins, then DATABASE_URL, then DATA_DIR."""
        return cls(database_for(config, "ledger", explicit or config.get("LEDGER_DB")))

    def close(self) -> None:
        if self.db.dialect == "sqlite":  # a shared PostgreSQL pool outlives one store
            self.db.close()

    # ------------------------------------------------------------------ appends

    def append(
        self,
        record_id: str,
        kind: str,
        *,
        fhir_base: str,
        patient_id: str,
        user: str | None,
        facts: dict[str, Any],
    ) -> LedgerRecord:
        """Append a record (a repeat of an id returns the first record unchanged: idempotent submits)."""
        if kind not in KINDS:
            raise ValueError(f"unknown ledger kind {kind!r}")
        recorded = datetime.fromtimestamp(self.clock(), UTC).isoformat(timespec="seconds")
        facts_text = canonical(facts)
        base = fhir_base.rstrip("/")
        with self.db.transaction() as tx:
            if tx.dialect == "postgresql":  # one appender at a time across instances; readers still read
                tx.run("LOCK TABLE ledger IN EXCLUSIVE MODE")
            if tx.one("SELECT 1 FROM ledger WHERE id = ?", (record_id,)) is None:
                last = tx.one("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1")
                seq, prev = (int(last[0]) + 1, last[1]) if last else (1, GENESIS)
                digest = record_hash(seq, record_id, kind, base, patient_id, user, recorded, facts_text, prev)
                tx.run(
                    f"INSERT INTO ledger ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (seq, record_id, kind, base, patient_id, user, recorded, facts_text, prev, digest),
                )
        found = self.get(record_id)
        assert found is not None
        return found

    def record_delivery(
        self, entry: LedgerRecord, profile: str, written: list[str], message: str = ""
    ) -> LedgerRecord:
        """Append where `entry` was written: profile, the EHR's references (empty: in the ledger only)."""
        return self.append(
            str(uuid.uuid4()),
            "delivery",
            fhir_base=entry.fhir_base,
            patient_id=entry.patient_id,
            user=entry.user,
            facts={"of": entry.id, "profile": profile, "written": list(written), "message": message},
        )

    # ------------------------------------------------------------------ reads

    def get(self, record_id: str) -> LedgerRecord | None:
        with self.db.read() as tx:
            row = tx.one(f"SELECT {_COLUMNS} FROM ledger WHERE id = ?", (record_id,))
        return _row(row) if row else None

    def records(self, fhir_base: str | None = None, patient_id: str | None = None) -> list[LedgerRecord]:
        """Records in chain order, optionally of one server and patient."""
        sql, args = f"SELECT {_COLUMNS} FROM ledger", []
        if fhir_base is not None and patient_id is not None:
            sql += " WHERE fhir_base = ? AND patient_id = ?"
            args = [fhir_base.rstrip("/"), patient_id]
        with self.db.read() as tx:
            rows = tx.all(sql + " ORDER BY seq", args)
        return [_row(r) for r in rows]

    def deliveries(self, fhir_base: str, patient_id: str) -> dict[str, LedgerRecord]:
        """The latest delivery record of each entry of one patient (entry id -> delivery)."""
        out: dict[str, LedgerRecord] = {}
        for rec in self.records(fhir_base, patient_id):
            if rec.kind == "delivery" and isinstance(rec.facts.get("of"), str):
                out[rec.facts["of"]] = rec
        return out

    def verify(self) -> ChainCheck:
        """Recompute the whole chain; every record whose content or link does not match is named."""
        with self.db.read() as tx:
            rows = tx.all(f"SELECT {_COLUMNS} FROM ledger ORDER BY seq")
        broken: list[Broken] = []
        prev, expected_seq = GENESIS, 1
        for row in rows:
            seq, rid, kind, base, patient, user, recorded, facts_text, prev_hash, digest = row
            if seq != expected_seq:
                broken.append(
                    Broken(seq, rid, f"record(s) before #{seq} are missing (expected #{expected_seq})")
                )
            if prev_hash != prev:
                broken.append(Broken(seq, rid, "its link to the previous record does not match"))
            again = record_hash(seq, rid, kind, base, patient, user, recorded, facts_text, prev_hash)
            if again != digest:
                broken.append(
                    Broken(seq, rid, "its content does not match its hash (altered after the fact)")
                )
            prev, expected_seq = digest, seq + 1
        return ChainCheck(len(rows), tuple(broken), prev)

    # ------------------------------------------------------------------ write profiles (run-time refusals)

    def set_profile(self, fhir_base: str, resource_type: str, profile: str, reason: str) -> None:
        """Remember that `fhir_base` refused `resource_type` at run time: use `profile` for it from now on."""
        with self.db.transaction() as tx:
            tx.run(
                "DELETE FROM write_profile WHERE fhir_base = ? AND resource_type = ?",
                (fhir_base.rstrip("/"), resource_type),
            )
            tx.run(
                "INSERT INTO write_profile (fhir_base, resource_type, profile, reason, updated)"
                " VALUES (?,?,?,?,?)",
                (fhir_base.rstrip("/"), resource_type, profile, reason[:300], self.clock()),
            )

    def refusals(self, fhir_base: str) -> dict[str, tuple[str, str]]:
        """resource type -> (profile, reason) for the types this server refused at run time."""
        with self.db.read() as tx:
            rows = tx.all(
                "SELECT resource_type, profile, reason FROM write_profile WHERE fhir_base = ?",
                (fhir_base.rstrip("/"),),
            )
        return {r[0]: (r[1], r[2]) for r in rows}
