"""Use case: a practice's worklist for one month (and, optionally, the months before it for trends).

export ($export or paged searches) -> NDJSON files -> population (bucketed, one patient at a time)
-> read_facts -> evaluate (the single-patient path) -> worklist rows. Only the rows are kept.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from rules.month import Month, zone
from rules.packs import resolve_pack
from smart_app.fhir.bulk_export import ExportRequest, ExportResult, export_population
from smart_app.program.population import PatientResult, map_population, warm_up
from smart_app.program.worklist import WorklistRow, build_row
from smart_app.readiness.options import practice_now

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
) -> WorklistResult:
    """Export the population, evaluate every patient, return the worklist rows (and trend months).

    `workers` > 1 evaluates buckets in forked processes (only from a single-threaded caller such as
    the CLI). `workdir` keeps the export (and its resume state) between runs; without it a temporary folder
    is used and removed afterwards.
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
