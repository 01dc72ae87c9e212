"""Program lead page: the practice's worklist for a month, filters, CSV, mark-as-billed, metrics and charts.

The worklist runs as a background job (one per FHIR base, Group, month, zone and policy); the page shows
its progress and refreshes itself (a meta refresh without JavaScript; static/program.js polls
`/program/status` and reloads when done). Which FHIR server: `PROGRAM_FHIR_BASE` from the config, else
`?iss=` when open mode allows that base, else the current open-mode session's server.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for

from rules.month import BadTimezone, zone
from rules.packs import UnknownPolicy
from smart_app.auth import program_access
from smart_app.fhir.client import FhirError
from smart_app.program import charts, metrics
from smart_app.program.mark_billed import BillingRefused, mark_billed, undo_billed
from smart_app.program.selection import NoServerChosen, ProgramError, chosen, program_client
from smart_app.program.worklist import (
    CLOSED_LABELS,
    FILTER_LABELS,
    FILTERS,
    WorklistRow,
    apply_filter,
    blocked_reasons,
    build_row,
    sort_rows,
    to_csv,
)
from smart_app.program.worklist_runs import Job, job_for, job_key, job_store, start_job
from smart_app.readiness.options import options_from
from smart_app.readiness.use_case import ServerSource, verdict_for
from smart_app.readiness.wording import format_money, status_label
from smart_app.web import sessions

log = logging.getLogger(__name__)
bp = Blueprint("program", __name__)
bp.before_request(program_access.guard)  # signed-in program leads only (anonymous on open servers)
def _query(base: str, p: dict[str, Any], **over: Any) -> str:
    args = {"month": str(p["month"]), "filter": p["filter"], "n": p["n"]}
    if p["group"]:
        args["group"] = p["group"]
    if p["reason"]:
        args["reason"] = p["reason"]
    if not current_app.config.get("PROGRAM_FHIR_BASE"):
        args["iss"] = base
    args.update({k: v for k, v in over.items() if v is not None})
    return urlencode({k: v for k, v in args.items() if v not in (None, "")})


def _error(err: ProgramError) -> tuple[str, int]:
    return render_template("program/error.html", message=err.message), err.status


def _back(base: str, p: dict[str, Any], **over: Any) -> Response:
    """303 back to the program page with the same parameters (and a notice or problem)."""
    return redirect(url_for("program.program") + "?" + _query(base, p, **over), code=303)


@bp.get("/program")
def program() -> Any:
    try:
        base, p = chosen()
    except NoServerChosen:
        return render_template("program/choose.html")
    except ProgramError as err:
        return _error(err)
    job = start_job(base, p)
    view: dict[str, Any] = {
        "job": job,
        "p": p,
        "base": base,
        "filters": FILTERS,
        "labels": FILTER_LABELS,
        "query": lambda **o: _query(base, p, **o),
        "notice": request.args.get("notice"),
        "problem": request.args.get("problem"),
        "undo_patient": request.args.get("undo"),
        "money": format_money,
        "status_label": status_label,
        "closed_labels": CLOSED_LABELS,
        "panel_link": lambda row: _panel_link(base, row),
        "as_of": (
            datetime.fromtimestamp(job.finished, zone(p["tz"])).strftime("%Y-%m-%d %H:%M %Z")
            if job.finished else ""
        ),
    }
    if job.result is not None:
        result = job.result
        rows = sort_rows(result.rows)
        shown = apply_filter(rows, p["filter"], n=p["n"], reason=p["reason"])
        month_m = metrics.month_metrics(result.month, rows)
        history = metrics.trend([*result.history.items(), (result.month, rows)])
        labels = [h.month for h in history]
        view.update(
            {
                "rows": shown,
                "all_count": len(rows),
                "hidden_count": max(0, result.patients - len(rows)),
                "reasons": blocked_reasons(rows),
                "m": month_m,
                "history": history,
                "formulas": metrics.FORMULAS,
                "percent": metrics.percent,
                "counts": {f: len(apply_filter(rows, f, n=p["n"])) for f in FILTERS},
                "funnel_svg": charts.bar_chart(
                    "chart-funnel",
                    f"Enrollment funnel, {result.month}",
                    "Patients eligible, consented and billed this month.",
                    month_m.funnel,
                ),
                "minutes_svg": charts.bar_chart(
                    "chart-minutes",
                    f"Monthly CCM minutes, {result.month}",
                    "Consented patients by counted CCM minutes this month.",
                    month_m.minutes_histogram,
                ),
                "revenue_svg": charts.bar_chart(
                    "chart-revenue",
                    f"Expected vs billed revenue, {result.month}",
                    "National non-facility payment in dollars.",
                    (("Expected", month_m.expected_revenue), ("Billed", month_m.billed_revenue)),
                ),
                "trend_svg": charts.line_chart(
                    "chart-trend",
                    "Month-over-month",
                    "Eligible, consented and billed patients per month.",
                    labels,
                    [
                        ("Eligible", [h.eligible for h in history]),
                        ("Consented", [h.consented for h in history]),
                        ("Billed", [h.billed for h in history]),
                    ],
                ),
            }
        )
    return render_template("program/program.html", **view)


@bp.get("/program/status")
def status() -> Any:
    try:
        base, p = chosen()
    except NoServerChosen:
        return {"error": "no FHIR server chosen"}, 400
    except ProgramError as err:
        return {"error": err.message}, err.status
    job = job_for(base, p)
    if job is None:
        return {"state": "none"}, 404
    return job.status_json()


@bp.get("/program.csv")
def program_csv() -> Any:
    try:
        base, p = chosen()
    except ProgramError as err:
        return _error(err)
    job = job_for(base, p)
    if job is None or job.result is None:
        return _error(ProgramError("The worklist is not ready yet; wait for it on the program page.", 409))
    rows = apply_filter(sort_rows(job.result.rows), p["filter"], n=p["n"], reason=p["reason"])
    name = f"ccm-worklist-{p['month']}-{p['filter']}.csv"
    return Response(
        to_csv(rows), mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


@bp.post("/program/run")
def rerun() -> Any:
    try:
        base, p = chosen()
    except ProgramError as err:
        return _error(err)
    start_job(base, p, force=True)
    return _back(base, p)


def _panel_link(base: str, row: WorklistRow) -> str:
    """The patient's readiness panel (open-server entry) from a worklist row."""
    return "/open?" + urlencode({"iss": base, "patient": row.patient.removeprefix("Patient/")})


def _row(base: str, p: dict[str, Any], patient: str) -> tuple[Job | None, WorklistRow | None]:
    job = job_for(base, p)
    if job is None or job.result is None:
        return job, None
    return job, next((r for r in job.result.rows if r.patient == f"Patient/{patient}"), None)


def _replace_rows(
    base: str, p: dict[str, Any], job: Job | None, rows: list[WorklistRow], as_of: float | None = None
) -> None:
    """Store a finished worklist with `rows` in place of its own (no rebuild when a few patients changed).

    The "as of" time stays when its data was read (`as_of` after a refresh of the changed patients); it moves
    by a microsecond so every instance sees the new rows."""
    if job is None or job.result is None or job.finished is None:
        return
    when = max(as_of or 0.0, job.finished + 1e-6)
    job_store().replace_result(job_key(base, p), replace(job.result, rows=rows), when)


def _replace_row(
    base: str, p: dict[str, Any], job: Job | None, row: WorklistRow | None, **changes: Any
) -> None:
    """Update one row of a finished worklist (the rest is kept as it was read)."""
    if job is None or job.result is None or row is None:
        return
    new = replace(row, **changes)
    _replace_rows(base, p, job, [new if r.patient == row.patient else r for r in job.result.rows])


def _patient_param() -> str:
    patient = (request.form.get("patient") or "").strip().removeprefix("Patient/")
    if not patient or "/" in patient:
        raise ProgramError("patient must be Patient/ID.")
    return patient


def _user() -> str | None:
    ctx = sessions.current_context()
    return ctx.user if ctx is not None and ctx.user else None


@bp.post("/program/mark-billed")
def mark() -> Any:
    """Step 1 shows a confirmation naming the patient, codes and amount; step 2 (confirm=yes) writes."""
    try:
        base, p = chosen()
        patient = _patient_param()
    except ProgramError as err:
        return _error(err)
    job, row = _row(base, p, patient)
    if request.form.get("confirm") != "yes":
        if row is None:
            return _back(base, p, problem="That patient is not on the worklist; refresh it first.")
        return render_template(
            "program/confirm.html", row=row, p=p, query=lambda **o: _query(base, p, **o), money=format_money,
        )
    try:
        result = mark_billed(
            program_client(base),
            patient,
            p["month"],
            tz=p["tz"],
            policy=p["policy"],
            billing_practitioner=p["billing_practitioner"],
            user=_user(),
        )
    except BillingRefused as exc:
        return _back(base, p, problem=exc.message)
    except (FhirError, BadTimezone, UnknownPolicy) as exc:
        return _back(base, p, problem=str(exc))
    codes = " + ".join(f"{c} ×{u}" if u > 1 else c for c, u in result.codes)
    who = row.name if row is not None and row.name else f"Patient/{patient}"
    amount = f" ({format_money(row.payment)})" if row is not None else ""
    note = (
        f"Marked as billed for {who}: {codes}{amount}."
        if result.created
        else f"{who} was already marked as billed ({codes}); nothing written again."
    )
    if row is not None:
        billed_payment = row.payment if not row.billed else row.billed_payment
        _replace_row(base, p, job, row, billed_codes=tuple(result.codes), billed_payment=billed_payment)
    return _back(base, p, notice=note, undo=patient)


@bp.post("/program/undo-billed")
def undo() -> Any:
    """Withdraw a "marked as billed": our ChargeItems become entered-in-error, with a Provenance."""
    try:
        base, p = chosen()
        patient = _patient_param()
    except ProgramError as err:
        return _error(err)
    job, row = _row(base, p, patient)
    user = _user() or (row.billing_practitioner if row is not None else None)
    try:
        client = program_client(base)
        result = undo_billed(client, patient, p["month"], tz=p["tz"], policy=p["policy"], user=user)
    except BillingRefused as exc:
        return _back(base, p, problem=exc.message)
    except (FhirError, BadTimezone, UnknownPolicy) as exc:
        return _back(base, p, problem=str(exc))
    if row is not None:
        _replace_row(base, p, job, row, billed_codes=(), billed_payment=Decimal(0))
    who = row.name if row is not None and row.name else f"Patient/{patient}"
    codes = " + ".join(c for c, _u in result.codes)
    return _back(base, p, notice=f"Undone: {who} is no longer marked as billed ({codes}).")


# What can change a patient's month, and the search parameter naming the patient on each type.
CHANGE_SEARCHES: tuple[tuple[str, str], ...] = (
    ("Encounter", "subject"), ("Task", "for"), ("Consent", "patient"), ("CarePlan", "subject"),
    ("ChargeItem", "subject"), ("Condition", "subject"), ("Provenance", "target"),
)
MAX_CHANGED = 100  # more than this: a full refresh is quicker


def changed_patients(client: Any, since: datetime) -> set[str] | None:
    """Bare ids of patients with resources updated after `since` (None: too many, refresh everyone)."""
    stamp = since.astimezone(zone("UTC")).strftime("%Y-%m-%dT%H:%M:%SZ")
    found: set[str] = set()
    for rtype, param in CHANGE_SEARCHES:
        for res in client.search(rtype, [("_lastUpdated", f"gt{stamp}"), ("_count", "200")]):
            refs = [res.get(param)] if param != "target" else list(res.get("target") or ())
            for ref in refs:
                value = ref.get("reference") if isinstance(ref, dict) else None
                if isinstance(value, str) and value.startswith("Patient/"):
                    found.add(value.split("/", 1)[1])
        if len(found) > MAX_CHANGED:
            return None
    return found


@bp.post("/program/refresh-changed")
def refresh_changed() -> Any:
    """Re-evaluate only the patients whose data changed since the worklist's "as of" time."""
    try:
        base, p = chosen()
    except ProgramError as err:
        return _error(err)
    job = job_for(base, p)
    if job is None or job.result is None or job.finished is None:
        start_job(base, p, force=True)
        return _back(base, p)
    started = time.time()
    client = program_client(base)
    try:
        changed = changed_patients(client, datetime.fromtimestamp(job.finished, zone("UTC")))
    except FhirError as exc:
        return _back(base, p, problem=f"Changes could not be read ({exc}); use the full refresh.")
    if changed is None:
        start_job(base, p, force=True)
        return _back(base, p, notice="Many patients changed: the whole worklist is being rebuilt.")
    known = {r.patient.removeprefix("Patient/") for r in job.result.rows}
    if p["group"]:
        changed &= known  # group membership is the export's; a new member needs the full refresh
    options = options_from(
        current_app.config, month=p["month"], tz=p["tz"], policy=p["policy"] or None,
        billing_practitioner=p["billing_practitioner"],
    )
    updated: dict[str, WorklistRow] = {}
    for pid in sorted(changed):
        try:
            pm = verdict_for(ServerSource(client), pid, options)
        except FhirError:
            continue
        row = build_row(pm.facts, pm.verdict, today=options.today or datetime.now(zone(p["tz"])).date())
        updated[row.patient] = row
    rows = [updated.pop(r.patient, r) for r in job.result.rows]
    rows += [r for r in updated.values() if r.on_worklist]
    _replace_rows(base, p, job, [r for r in rows if r.on_worklist], as_of=started)
    word = "patient" if len(changed) == 1 else "patients"
    return _back(base, p, notice=f"Refreshed {len(changed)} changed {word}; the rest were up to date.")
