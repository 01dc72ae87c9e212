"""The practice's claims hand-off and remittances, in the app's storage layer.

DATA_DIR/remittance.sqlite3 by default; the shared PostgreSQL database when DATABASE_URL is set (tables:
storage/migrations/versions/remittance_*.py). Plain portable SQL (TEXT amounts as exact decimals). Tables:
  claims       one row per handed-off patient-month claim (what the app said: ready, codes, verdict id)
  remittances  one row per loaded remittance (835 transaction or FHIR resource); `key` is unique
  lines        one row per remitted service line, matched to its patient-month and code
Loading is one transaction per call: either every new remittance of the files goes in, or none. Loads are
serialised (SQLite's write lock; a table lock on PostgreSQL), so two loads of the same file at once store it
once and remittance ids never collide.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from rules.remittance import ClaimPayment, RemitLine, Remittance, line_outcome
from smart_app.config import defaults
from smart_app.storage import Database, as_database, database_for

STORE = "remittance"
FILE_NAME = f"{STORE}.sqlite3"
@dataclass(frozen=True)
class HandedOffClaim:
    claim_id: str
    patient: str  # "Patient/ID"
    month: str
    medicare_id: str
    codes: tuple[tuple[str, int], ...]
    billed: Decimal
    verdict_id: str
    verdict_status: str
    rendering_npi: str = ""
    billing_npi: str = ""


@dataclass(frozen=True)
class StoredLine:
    remittance: int
    seq: int
    source: str
    payer: str
    paid_date: str
    claim_id: str
    claim_status: str
    payer_claim: str
    patient: str | None
    month: str | None
    code: str
    units: int
    charge: Decimal
    paid: Decimal
    outcome: str
    adjustments: tuple[tuple[str, str, Decimal], ...]
    remarks: tuple[str, ...]
    matched: str  # matched | code-not-on-claim | unmatched


@dataclass(frozen=True)
class LoadCounts:
    files: int = 0
    claims: int = 0
    lines: int = 0
    paid: int = 0
    denied: int = 0
    adjusted: int = 0
    duplicates: int = 0

    def summary(self) -> str:
        return (
            f"files={self.files} claims={self.claims} lines={self.lines} paid={self.paid} "
            f"denied={self.denied} adjusted={self.adjusted} duplicates={self.duplicates}"
        )


class RemittanceStore:
    """Claims handed off and remittances loaded, on a Database (default `<data dir>/remittance.sqlite3`)."""

    def __init__(self, db: Database | Path | str) -> None:
        self.db = as_database(db)
        self.path = getattr(self.db, "path", None)
        self.db.migrate(STORE)  # tables: storage/migrations/versions/remittance_*.py

    @classmethod
    def in_dir(cls, data_dir: Path | str) -> RemittanceStore:
        """The SQLite store in `data_dir` (whatever DATABASE_URL says)."""
        return cls(Path(data_dir) / FILE_NAME)

    @classmethod
    def for_config(cls, config: Mapping[str, Any]) -> RemittanceStore:
        """The app's store: the shared database when DATABASE_URL is set, else DATA_DIR/remittance.sqlite3."""
        return cls(database_for(config, STORE))

    @classmethod
    def for_cli(cls, data_dir: str | None) -> RemittanceStore:
        """A command's store: --data-dir (SQLite) when given, else the app's configuration (environment)."""
        return cls.in_dir(data_dir) if data_dir else cls.for_config(defaults())

    def close(self) -> None:
        if self.db.dialect == "sqlite":  # a shared PostgreSQL pool outlives one store
            self.db.close()

    # ------------------------------------------------------------------ claims hand-off

    def record_claims(self, claims: Iterable[HandedOffClaim]) -> int:
        """Remember handed-off claims (a claim id already there is replaced: the latest hand-off wins)."""
        now = datetime.now(UTC).isoformat(timespec="seconds")
        n = 0
        with self.db.transaction() as tx:
            for cl in claims:
                tx.run("DELETE FROM claims WHERE claim_id = ?", (cl.claim_id,))
                tx.run(
                    "INSERT INTO claims (claim_id, patient, month, medicare_id, codes, billed, verdict_id, "
                    "verdict_status, rendering_npi, billing_npi, created) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        cl.claim_id,
                        cl.patient,
                        cl.month,
                        cl.medicare_id,
                        json.dumps(cl.codes),
                        str(cl.billed),
                        cl.verdict_id,
                        cl.verdict_status,
                        cl.rendering_npi,
                        cl.billing_npi,
                        now,
                    ),
                )
                n += 1
        return n

    def claims(self) -> list[HandedOffClaim]:
        with self.db.read() as tx:
            rows = tx.all(
                "SELECT claim_id, patient, month, medicare_id, codes, billed, verdict_id, verdict_status, "
                "rendering_npi, billing_npi FROM claims ORDER BY month, patient"
            )
        return [
            HandedOffClaim(
                r[0],
                r[1],
                r[2],
                r[3] or "",
                tuple((c, int(u)) for c, u in json.loads(r[4])),
                Decimal(r[5]),
                r[6],
                r[7],
                r[8] or "",
                r[9] or "",
            )
            for r in rows
        ]

    # ------------------------------------------------------------------ remittances

    def has(self, key: str) -> bool:
        with self.db.read() as tx:
            return tx.one("SELECT 1 FROM remittances WHERE rkey = ?", (key,)) is not None

    def load(self, batches: Sequence[tuple[str, Sequence[Remittance]]]) -> LoadCounts:
        """Store every remittance not loaded before, in one transaction. `batches` = (file name, remittances).

        A remittance whose key is already stored (or repeated in the batch) counts as a duplicate and
        changes nothing; a file all of whose remittances are duplicates is not counted in `files`."""
        known = {cl.claim_id: cl for cl in self.claims()}
        by_member: dict[tuple[str, str], HandedOffClaim] = {
            (cl.medicare_id, cl.month): cl for cl in known.values() if cl.medicare_id
        }
        counts = {"files": 0, "claims": 0, "lines": 0, "paid": 0, "denied": 0, "adjusted": 0, "duplicates": 0}
        now = datetime.now(UTC).isoformat(timespec="seconds")
        seen: set[str] = set()
        with self.db.transaction() as tx:
            if tx.dialect == "postgresql":  # one load at a time across instances; readers still read
                tx.run("LOCK TABLE remittances IN EXCLUSIVE MODE")
            for file_name, remits in batches:
                new_in_file = 0
                for r in remits:
                    if r.key in seen or tx.one("SELECT 1 FROM remittances WHERE rkey = ?", (r.key,)):
                        counts["duplicates"] += 1
                        continue
                    seen.add(r.key)
                    new_in_file += 1
                    # ids chosen here (not the database's rowid): plain SQL any back end runs
                    top = tx.one("SELECT COALESCE(MAX(id), 0) + 1 FROM remittances")
                    rid = int(top[0]) if top else 1
                    tx.run(
                        "INSERT INTO remittances (id, rkey, source, file_name, payer, payer_id, trace, "
                        "paid_date, total_paid, loaded) VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (
                            rid,
                            r.key,
                            r.source,
                            file_name,
                            r.payer,
                            r.payer_id,
                            r.trace,
                            r.paid_date.isoformat() if r.paid_date else None,
                            str(r.total_paid),
                            now,
                        ),
                    )
                    seq = 0
                    for claim in r.claims:
                        counts["claims"] += 1
                        for line in claim.lines or (_claim_level_line(claim),):
                            seq += 1
                            outcome = line_outcome(claim.status, line)
                            patient, month, matched = _match(claim, line, known, by_member)
                            tx.run(
                                "INSERT INTO lines (remittance_id, seq, claim_id, claim_status, payer_claim, "
                                "member_id, patient, month, code, units, charge, paid, outcome, "
                                "service_date, "
                                "adjustments, remarks, matched) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                                (
                                    rid,
                                    seq,
                                    claim.claim_id,
                                    claim.status,
                                    claim.payer_claim_number,
                                    claim.member_id,
                                    patient,
                                    month,
                                    line.code,
                                    line.units,
                                    str(line.charge),
                                    str(line.paid),
                                    outcome,
                                    line.service_date.isoformat() if line.service_date else None,
                                    json.dumps(
                                        [
                                            [a.group, a.reason, str(a.amount)]
                                            for a in (*claim.adjustments, *line.adjustments)
                                        ]
                                    ),
                                    json.dumps([*claim.remarks, *line.remarks]),
                                    matched,
                                ),
                            )
                            counts["lines"] += 1
                            key = "adjusted" if outcome == "reversal" else outcome
                            counts[key] += 1
                if new_in_file:
                    counts["files"] += 1
        return LoadCounts(**counts)

    def lines(self, month: str | None = None) -> list[StoredLine]:
        """Every stored line (of one service month), oldest remittance first."""
        sql = (
            "SELECT l.remittance_id, l.seq, r.source, r.payer, COALESCE(r.paid_date, ''), l.claim_id, "
            "l.claim_status, l.payer_claim, l.patient, l.month, l.code, l.units, l.charge, l.paid, "
            "l.outcome, "
            "l.adjustments, l.remarks, l.matched FROM lines l JOIN remittances r ON r.id = l.remittance_id"
        )
        args: tuple[Any, ...] = ()
        if month:
            sql += " WHERE l.month = ?"
            args = (month,)
        sql += " ORDER BY COALESCE(r.paid_date, ''), l.remittance_id, l.seq"
        with self.db.read() as tx:
            rows = tx.all(sql, args)
        return [
            StoredLine(
                r[0],
                r[1],
                r[2],
                r[3] or "",
                r[4],
                r[5] or "",
                r[6] or "",
                r[7] or "",
                r[8],
                r[9],
                r[10] or "",
                int(r[11] or 1),
                Decimal(r[12]),
                Decimal(r[13]),
                r[14],
                tuple((g, carc, Decimal(a)) for g, carc, a in json.loads(r[15])),
                tuple(json.loads(r[16])),
                r[17],
            )
            for r in rows
        ]

    def counts(self) -> tuple[int, int]:
        """(remittances, lines) stored."""
        with self.db.read() as tx:
            a = tx.one("SELECT COUNT(*) FROM remittances")
            b = tx.one("SELECT COUNT(*) FROM lines")
        return int(a[0] if a else 0), int(b[0] if b else 0)


def _claim_level_line(claim: ClaimPayment) -> RemitLine:
    """A claim answered without service lines: one line carrying the claim's amounts."""
    return RemitLine("", claim.charge, claim.paid, 1, claim.period_start, claim.adjustments, claim.remarks)


def _month_of(d: date | None) -> str | None:
    return f"{d.year:04d}-{d.month:02d}" if d else None


def _match(
    claim: ClaimPayment,
    line: RemitLine,
    known: dict[str, HandedOffClaim],
    by_member: dict[tuple[str, str], HandedOffClaim],
) -> tuple[str | None, str | None, str]:
    """(patient, month, how) for one remitted line: by our claim id, else by member id + service month."""
    month = _month_of(line.service_date or claim.period_start)
    ours = known.get(claim.claim_id)
    if ours is None and claim.member_id and month:
        ours = by_member.get((claim.member_id, month))
    if ours is None:
        return None, month, "unmatched"
    codes = {c for c, _u in ours.codes}
    return ours.patient, ours.month, ("matched" if line.code in codes else "code-not-on-claim")
