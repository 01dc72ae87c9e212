"""Use case: a practice's worklist for one month (and, optionally, the months before it for trends).

export ($export or paged searches) -> NDJSON files -> population (bucketed, one patient at a time)
-> read_facts -> evaluate (the single-patient path) -> worklist rows. Only the rows are kept.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from rules.month import Month, zone
from rules.packs import resolve_pack
from smart_app.fhir.bulk_export import ExportRequest, ExportResult, export_population
from smart_app.program.population import PatientResult, map_population, warm_up
from smart_app.program.worklist import Blocker, WorklistRow, build_row
from smart_app.readiness.options import practice_now
from smart_app.storage import Database, as_database

StageFn = Callable[[str], None]
CountFn = Callable[[int, int], None]


@dataclass
class WorklistResult:
    month: str
    rows: list[WorklistRow]  # the month's rows on the worklist
    history: dict[str, list[WorklistRow]] = field(default_factory=dict)  # earlier months (trend)
    method: str = "bulk"
    patients: int = 0
    export_seconds: float = 0.0
    evaluate_seconds: float = 0.0


def today_in(tz: str) -> date:
    return practice_now(tz).date()


def build_worklist(
    base: str,
    month: Month | str,
    *,
    group: str | None = None,
    system_level: bool = False,
    tz: str = "UTC",
    policy: str | None = None,
    billing_practitioner: str | None = None,
    token_provider: Callable[[], str | None] | None = None,
    history_months: int = 0,
    workdir: Path | None = None,
    prefer_bulk: bool = True,
    keep_verdict: bool = True,
    today: date | None = None,
    workers: int = 1,
    on_stage: StageFn | None = None,
    on_patient: CountFn | None = None,
    captured: Mapping[str, Sequence[tuple[str, dict[str, Any]]]] | None = None,
) -> WorklistResult:
    """Export the population, evaluate every patient, return the worklist rows (and trend months).

    `workers` > 1 evaluates buckets in forked processes (only from a single-threaded caller such as
    the CLI). `captured`: the app's ledger entries by bare patient id (readiness.captured), counted with
    what the server holds, each entry once. `workdir` keeps the export (and its resume state) between runs;
    without it a temporary folder is used and removed afterwards.
    """
    m = month if isinstance(month, Month) else Month.parse(month)
    zone(tz)
    if policy is not None:
        resolve_pack(policy, m)  # UnknownPolicy early
    level = "group" if group else ("system" if system_level else "patient")
    req = ExportRequest(level=level, group=group)
    own = workdir is None
    folder = Path(tempfile.mkdtemp(prefix="ccm-worklist-")) if own else Path(workdir)  # type: ignore[arg-type]
    # Load the value sets and the pack while the server works on the export (it mostly waits).
    warming = threading.Thread(target=warm_up, args=(m, policy), name="worklist-warm-up", daemon=True)
    warming.start()
    try:
        t0 = time.perf_counter()
        exported: ExportResult = export_population(
            base,
            req,
            folder / "export",
            token_provider=token_provider,
            progress=on_stage,
            prefer_bulk=prefer_bulk,
        )
        t1 = time.perf_counter()
        warming.join()  # before any fork: no thread may be running then
        months = [m.shift(-i) for i in range(history_months, 0, -1)] + [m]
        day = today or today_in(tz)
        rows: list[WorklistRow] = []
        history: dict[str, list[WorklistRow]] = {str(x): [] for x in months[:-1]}
        if on_stage:
            on_stage("evaluating patients")
        files = [path for _rtype, path in exported.files]
        count = 0
        fn = functools.partial(_rows_of, today=day, keep_verdict=keep_verdict)
        for row, earlier in map_population(
            files,
            months,
            fn,
            tz=tz,
            policy=policy,
            billing_practitioner=billing_practitioner,
            patients=exported.count("Patient"),
            workdir=folder,
            progress=on_patient,
            workers=workers,
            captured=captured,
        ):
            count += 1
            if row is not None:
                rows.append(row)
            for old in earlier:
                history[old.month].append(old)
        t2 = time.perf_counter()
        if not own:  # finished: a later run must export afresh, not resume this one
            shutil.rmtree(folder / "export", ignore_errors=True)
        return WorklistResult(str(m), rows, history, exported.method, count, t1 - t0, t2 - t1)
    finally:
        if own:
            shutil.rmtree(folder, ignore_errors=True)


def _rows_of(
    result: PatientResult, *, today: date, keep_verdict: bool
) -> tuple[WorklistRow | None, list[WorklistRow]]:
    """The month's row (None when not on the worklist) and the earlier months' rows of one patient."""
    *earlier, current = result.verdicts
    row = build_row(result.facts, current, today=today, keep_verdict=keep_verdict)
    old = [build_row(result.facts, v, today=today, keep_verdict=False) for v in earlier]
    return (row if row.on_worklist else None), [r for r in old if r.on_worklist]


# ---------------------------------------------------------------------- jobs kept in the app's database

HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 60.0  # a running job not heard from this long died with its instance: run it again


@dataclass
class JobState:
    """A worklist job as stored: progress while running, then its result or error."""

    key: str
    stage: str = "starting"
    done: int = 0
    total: int = 0
    error: str | None = None
    result: WorklistResult | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    heartbeat: float = field(default_factory=time.time)

    @property
    def state(self) -> str:
        return "error" if self.error else ("done" if self.result is not None else "running")

    def status_json(self) -> dict[str, object]:
        return {
            "state": self.state,
            "stage": self.stage,
            "done": self.done,
            "total": self.total,
            "error": self.error,
        }


def _blocker_json(b: Blocker) -> dict[str, str]:
    return {"category": b.category, "rule": b.rule, "message": b.message}


def row_to_json(row: WorklistRow) -> dict[str, Any]:
    """A worklist row as JSON (Decimals as strings, tuples as lists)."""
    data: dict[str, Any] = {}
    for f in dataclasses.fields(row):
        value = getattr(row, f.name)
        if isinstance(value, Decimal):
            value = str(value)
        elif f.name in ("blockers", "warnings"):
            value = [_blocker_json(b) for b in value]
        elif f.name in ("codes", "billed_codes"):
            value = [[c, u] for c, u in value]
        data[f.name] = value
    return data


def row_from_json(data: dict[str, Any]) -> WorklistRow:
    values = dict(data)
    values["payment"] = Decimal(values["payment"])
    values["billed_payment"] = Decimal(values["billed_payment"])
    values["blockers"] = tuple(Blocker(**b) for b in values["blockers"])
    values["warnings"] = tuple(Blocker(**b) for b in values.get("warnings") or ())
    values["codes"] = tuple((c, int(u)) for c, u in values["codes"])
    values["billed_codes"] = tuple((c, int(u)) for c, u in values["billed_codes"])
    return WorklistRow(**values)


def result_to_json(result: WorklistResult) -> str:
    return json.dumps(
        {
            "month": result.month,
            "rows": [row_to_json(r) for r in result.rows],
            "history": {m: [row_to_json(r) for r in rows] for m, rows in result.history.items()},
            "method": result.method,
            "patients": result.patients,
            "export_seconds": result.export_seconds,
            "evaluate_seconds": result.evaluate_seconds,
        }
    )


def result_from_json(text: str) -> WorklistResult:
    d = json.loads(text)
    return WorklistResult(
        d["month"],
        [row_from_json(r) for r in d["rows"]],
        {m: [row_from_json(r) for r in rows] for m, rows in d["history"].items()},
        d["method"],
        d["patients"],
        d["export_seconds"],
        d["evaluate_seconds"],
    )


class JobStore:
    """Worklist jobs and their results in the app's database, so every instance shows the same job.

    The instance that starts a job runs it in a thread and writes its progress; others read it. A running
    job whose heartbeat stopped (its instance died) is started again by the next request for it.
    """

    def __init__(self, db: Database | Path | str, *, keep: int = 8) -> None:
        self.db = as_database(db)
        self.keep = keep
        self.db.migrate("worklist_jobs")  # tables: storage/migrations/versions/worklist_jobs_*.py
        self._decoded: dict[tuple[str, float], WorklistResult] = {}
        self._lock = threading.Lock()

    def _job(self, row: tuple[Any, ...]) -> JobState:
        key, stage, done, total, error, result, started, finished, heartbeat = row
        decoded = None
        if result is not None:
            with self._lock:
                decoded = self._decoded.get((key, finished))
            if decoded is None:
                decoded = result_from_json(result)
                with self._lock:
                    if len(self._decoded) >= self.keep:
                        self._decoded.pop(next(iter(self._decoded)))
                    self._decoded[(key, finished)] = decoded
        return JobState(key, stage, done, total, error, decoded, started, finished, heartbeat)

    _COLS = "key, stage, done, total, error, result, started, finished, heartbeat"

    def get(self, key: str) -> JobState | None:
        with self.db.read() as tx:
            row = tx.one(f"SELECT {self._COLS} FROM worklist_jobs WHERE key = ?", (key,))
        return self._job(row) if row else None

    def begin(self, key: str, *, force: bool = False, owner: str = "") -> tuple[JobState, bool]:
        """The job for `key`, and True when the caller must run it now (new, forced, failed or orphaned)."""
        now = time.time()
        with self.db.transaction() as tx:
            if tx.dialect == "postgresql":  # one starter per key across instances
                tx.one("SELECT pg_advisory_xact_lock(hashtext(?))", (key,))
            row = tx.one(f"SELECT {self._COLS} FROM worklist_jobs WHERE key = ?", (key,))
            if row is not None:
                error, result, heartbeat = row[4], row[5], row[8]
                running = error is None and result is None
                alive = running and now - heartbeat < STALE_SECONDS
                if alive or (not force and error is None and result is not None):
                    return self._job(row), False
            tx.run(
                "INSERT INTO worklist_jobs (key, stage, done, total, error, result, started, finished, owner,"
                " heartbeat) VALUES (?, 'starting', 0, 0, NULL, NULL, ?, NULL, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET stage = excluded.stage, done = 0, total = 0, error = NULL,"
                " result = NULL,"
                " started = excluded.started, finished = NULL, owner = excluded.owner,"
                " heartbeat = excluded.heartbeat",
                (key, now, owner, now),
            )
            tx.run(
                "DELETE FROM worklist_jobs WHERE finished IS NOT NULL AND key NOT IN (SELECT key FROM"
                " worklist_jobs WHERE finished IS NOT NULL ORDER BY finished DESC LIMIT ?)",
                (self.keep,),
            )
        return JobState(key, started=now, heartbeat=now), True

    def progress(
        self, key: str, *, stage: str | None = None, done: int | None = None, total: int | None = None
    ) -> None:
        with self.db.transaction() as tx:
            tx.run(
                "UPDATE worklist_jobs SET stage = COALESCE(?, stage), done = COALESCE(?, done),"
                " total = COALESCE(?, total), heartbeat = ? WHERE key = ? AND finished IS NULL",
                (stage, done, total, time.time(), key),
            )

    def replace_result(self, key: str, result: WorklistResult, as_of: float) -> None:
        """Store a finished job's rows again (a few patients re-read); `as_of`: when its data was read."""
        with self.db.transaction() as tx:
            tx.run(
                "UPDATE worklist_jobs SET result = ?, finished = ? WHERE key = ? AND finished IS NOT NULL",
                (result_to_json(result), as_of, key),
            )

    def finish(self, key: str, *, result: WorklistResult | None = None, error: str | None = None) -> None:
        with self.db.transaction() as tx:
            tx.run(
                "UPDATE worklist_jobs SET stage = ?, error = ?, result = ?, finished = ?, heartbeat = ?"
                " WHERE key = ?",
                (
                    "done" if error is None else "failed",
                    error,
                    None if result is None else result_to_json(result),
                    time.time(),
                    time.time(),
                    key,
                ),
            )
