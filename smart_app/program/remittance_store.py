"""The practice's claims hand-off and remittances: one small SQLite store under DATA_DIR.

Plain portable SQL (TEXT amounts as exact decimals, no vendor upserts). Tables:
  claims       one row per handed-off patient-month claim (what the app said: ready, codes, verdict id)
  remittances  one row per loaded remittance (835 transaction or FHIR resource); `key` is unique
  lines        one row per remitted service line, matched to its patient-month and code
Loading is one transaction per call: either every new remittance of the files goes in, or none.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from rules.remittance import ClaimPayment, RemitLine, Remittance, line_outcome
from smart_app.storage.sqlite import immediate, open_sqlite

FILE_NAME = "remittance.sqlite3"
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS claims (
        claim_id TEXT PRIMARY KEY, patient TEXT NOT NULL, month TEXT NOT NULL, medicare_id TEXT,
        codes TEXT NOT NULL, billed TEXT NOT NULL, verdict_id TEXT NOT NULL, verdict_status TEXT NOT NULL,
        rendering_npi TEXT, billing_npi TEXT, created TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS remittances (
        id INTEGER PRIMARY KEY, rkey TEXT NOT NULL UNIQUE, source TEXT NOT NULL, file_name TEXT,
        payer TEXT, payer_id TEXT, trace TEXT, paid_date TEXT,
        total_paid TEXT NOT NULL, loaded TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS lines (
        remittance_id INTEGER NOT NULL REFERENCES remittances(id), seq INTEGER NOT NULL,
        claim_id TEXT, claim_status TEXT, payer_claim TEXT, member_id TEXT, patient TEXT, month TEXT,
        code TEXT, units INTEGER, charge TEXT NOT NULL, paid TEXT NOT NULL, outcome TEXT NOT NULL,
        service_date TEXT, adjustments TEXT NOT NULL, remarks TEXT NOT NULL, matched TEXT NOT NULL,
        PRIMARY KEY (remittance_id, seq))""",
    "CREATE INDEX IF NOT EXISTS lines_month ON lines (month)",
)


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
    """Claims handed off and remittances loaded, in `<data dir>/remittance.sqlite3`."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._conn = open_sqlite(self.path, SCHEMA)
        self._lock = threading.RLock()

    @classmethod
    def in_dir(cls, data_dir: Path | str) -> RemittanceStore:
        return cls(Path(data_dir) / FILE_NAME)

    def close(self) -> None:
        self._conn.close()

    # ------------------------------------------------------------------ claims hand-off

    def record_claims(self, claims: Iterable[HandedOffClaim]) -> int:
        """Remember handed-off claims (a claim id already there is replaced: the latest hand-off wins)."""
        now = datetime.now(UTC).isoformat(timespec="seconds")
        n = 0
        with immediate(self._conn, self._lock) as c:
            for cl in claims:
                c.execute("DELETE FROM claims WHERE claim_id = ?", (cl.claim_id,))
                c.execute(
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
        with self._lock:
            rows = self._conn.execute(
                "SELECT claim_id, patient, month, medicare_id, codes, billed, verdict_id, verdict_status, "
                "rendering_npi, billing_npi FROM claims ORDER BY month, patient"
            ).fetchall()
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
        with self._lock:
            return (
                self._conn.execute("SELECT 1 FROM remittances WHERE rkey = ?", (key,)).fetchone() is not None
            )

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
        with immediate(self._conn, self._lock) as c:
            for file_name, remits in batches:
                new_in_file = 0
                for r in remits:
                    if (
                        r.key in seen
                        or c.execute("SELECT 1 FROM remittances WHERE rkey = ?", (r.key,)).fetchone()
                    ):
                        counts["duplicates"] += 1
                        continue
                    seen.add(r.key)
                    new_in_file += 1
                    # ids chosen here (not the database's rowid): plain SQL any back end runs
                    rid = int(c.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM remittances").fetchone()[0])
                    c.execute(
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
                            c.execute(
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
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
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
        with self._lock:
            a = self._conn.execute("SELECT COUNT(*) FROM remittances").fetchone()[0]
            b = self._conn.execute("SELECT COUNT(*) FROM lines").fetchone()[0]
        return int(a), int(b)


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
