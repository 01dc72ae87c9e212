"""Payer page (`/program/payer`): claim hand-off, remittance upload, denial analytics, verdict vs outcome,
and the revenue what-if with the practice's own figures.

A Blueprint of its own (registered in app.py). The month's ready patient-months come from the program
page's worklist job (same server, month, group and zone); remittances and hand-offs live in the
remittance store under DATA_DIR.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for

from rules.denials import AREAS, CAUSES, TABLE, area_label, cause_label
from rules.revenue import BadFigure, gpci_from, locality_payment, national_payment, what_if
from smart_app.auth import program_access
from smart_app.errors import AppError
from smart_app.program import charts, claims, denials, selection, worklist_runs
from smart_app.program.remit_load import load_files
from smart_app.program.remittance import RemittanceError
from smart_app.program.remittance_store import RemittanceStore
from smart_app.readiness.wording import format_money

bp = Blueprint("payer", __name__)
bp.before_request(program_access.guard)  # signed-in program leads only (anonymous on open servers)
MAX_UPLOAD_FILES = 20
ARTICLE_DENIAL_RATE = Decimal(18)  # Health Prime: 18 % (used only when no remittance is loaded)
FORMULAS: dict[str, str] = {
    "denial_rate": "denial rate = denied lines / remitted lines in effect (service month)",
    "denied_revenue": "denied revenue = Σ billed charge of the denied lines",
    "false_ready": "false-ready rate = remitted patient-months the app called ready that the payer denied "
    "for a cause the rules check / remitted patient-months the app called ready",
    "average_payment": "average payment = Σ paid of the lines in effect / patient-months with a payment",
    "what_if": "monthly gain = patients × payment × (denial rate − target rate); "
    "yearly gain = 12 × monthly gain",
}


def _store() -> RemittanceStore:
    return RemittanceStore.for_config(current_app.config)


def _context() -> tuple[str | None, dict[str, Any]]:
    """(FHIR base or None, the program page's parameters)."""
    try:
        return selection.chosen()
    except selection.NoServerChosen:
        return None, selection.page_params()
    except selection.ProgramError as err:
        raise AppError(err.status, "Payer page", err.message) from None


def _rows(base: str | None, p: dict[str, Any]) -> list[Any] | None:
    """The month's worklist rows when the program page's job has finished (None otherwise)."""
    if base is None:
        return None
    job = worklist_runs.job_for(base, p)
    return job.result.rows if job is not None and job.result is not None else None


def _query(base: str | None, p: dict[str, Any], **over: Any) -> str:
    args = {"month": str(p["month"])}
    if p.get("group"):
        args["group"] = p["group"]
    if base and not current_app.config.get("PROGRAM_FHIR_BASE"):
        args["iss"] = base
    args.update({k: str(v) for k, v in over.items() if v not in (None, "")})
    return urlencode(args)


def _payment_fallback(rows: list[Any] | None) -> tuple[Decimal, str]:
    """Average payment from the pack (ready rows' codes, else 99490), locality-adjusted when configured."""
    try:
        gpci = gpci_from(current_app.config.get("GPCI_LOCALITY"))
    except BadFigure as exc:
        raise AppError(500, "Configuration", str(exc)) from None
    ready = [r for r in rows or [] if r.status == "ready" and r.codes]
    code_sets = [r.codes for r in ready] or [(("99490", 1),)]
    total = Decimal(0)
    for codes in code_sets:
        for code, units in codes:
            amount = locality_payment(code, gpci) if gpci else None
            if amount is None:
                amount = national_payment(code) or Decimal(0)
            total += amount * units
    avg = (total / len(code_sets)).quantize(Decimal("0.01"))
    where = f"locality {gpci.locality}" if gpci else "national"
    what = "the month's ready patients' codes" if ready else "99490"
    return avg, f"the fee schedule ({where} non-facility amount of {what})"


@bp.get("/program/payer")
def payer() -> Any:
    base, p = _context()
    month = str(p["month"])
    rows = _rows(base, p)
    store = _store()
    try:
        lines = store.lines()
        handed = store.claims()
    finally:
        store.close()
    months = denials.by_month(lines)
    this = next((m for m in months if m.month == month), None)
    statuses = {(r.patient, r.month): r.status for r in rows or []}
    vo = denials.verdict_vs_outcome(lines, handed, statuses)
    ready_drafts = [r for r in rows or [] if r.status == "ready"]
    # what-if with the practice's own figures
    avg = denials.average_payment(lines)
    payment, payment_source = (
        (avg, "the practice's remittances") if avg is not None else _payment_fallback(rows)
    )
    kept, _ = denials.effective_lines(lines)
    denied_all = sum(1 for ln in kept if ln.outcome == "denied")
    current_rate = (
        (Decimal(denied_all) * 100 / len(kept)).quantize(Decimal("0.1")) if kept else ARTICLE_DENIAL_RATE
    )
    rate_source = "the practice's remittances" if kept else "the Health Prime article (no remittances loaded)"
    target = request.args.get("target") or str(current_app.config.get("DENIAL_TARGET_RATE", "5"))
    consented = sum(1 for r in rows or [] if r.on_worklist and r.consented) if rows is not None else None
    patients = request.args.get("patients") or (str(consented) if consented else "90")
    try:
        w = what_if(patients, payment, current_rate, target)
        what_if_error = None
    except BadFigure as exc:
        w = what_if(90, payment, current_rate, 5)
        what_if_error = str(exc)
    view: dict[str, Any] = {
        "p": p,
        "month": month,
        "base": base,
        "query": lambda **o: _query(base, p, **o),
        "notice": request.args.get("notice"),
        "problem": request.args.get("problem"),
        "rows_ready": rows is not None,
        "ready_count": len(ready_drafts),
        "handed_count": sum(1 for c in handed if c.month == month),
        "months": months,
        "this": this,
        "vo": vo,
        "w": w,
        "what_if_error": what_if_error,
        "payment_source": payment_source,
        "rate_source": rate_source,
        "patients_source": "entered"
        if request.args.get("patients")
        else ("consented patients this month" if consented else "the article's 90 patients"),
        "money": format_money,
        "pct": _pct,
        "formulas": FORMULAS,
        "table": TABLE,
        "areas": AREAS,
        "area_label": area_label,
        "cause_label": cause_label,
        "cause_area": lambda cause: CAUSES.get(cause, ("other", ""))[0],
        "stored_lines": len(lines),
    }
    if this is not None:
        view["outcomes_svg"] = charts.bar_chart(
            "chart-outcomes",
            f"Remitted lines, {month}",
            "Paid, adjusted and denied service lines.",
            this.outcomes,
        )
        view["areas_svg"] = charts.bar_chart(
            "chart-causes",
            f"Denials by failure area, {month}",
            "Denied lines grouped by the seed article's four failure areas (and other).",
            [(area_label(a).split(" ")[0], n) for a, n in this.areas],
        )
    if months:
        view["trend_svg"] = charts.line_chart(
            "chart-denial-trend",
            "Denial rate by service month",
            "Denied lines per 100 remitted lines, per service month.",
            [m.month for m in months],
            [("Denial rate %", [float((m.denial_rate or 0) * 100) for m in months])],
        )
    view["gain_svg"] = charts.bar_chart(
        "chart-what-if",
        "Monthly revenue lost to denials",
        "At the current denial rate and at the target rate.",
        [("Now", w.monthly_lost_now), ("Target", w.monthly_lost_target)],
    )
    return render_template("program/payer.html", **view)


def _pct(value: Decimal | None) -> str:
    return "n/a" if value is None else f"{(value * 100).quantize(Decimal('0.1'))} %"


@bp.post("/program/payer/claims")
def claims_handoff() -> Any:
    """The hand-off for the month's ready patient-months: CSV (format=csv) or draft FHIR Claims (fhir)."""
    base, p = _context()
    rows = _rows(base, p)
    if rows is None:
        raise AppError(
            409, "Claims hand-off", "The worklist is not ready yet; wait for it on the program page."
        )
    fmt = request.form.get("format", "csv")
    if fmt not in ("csv", "fhir"):
        raise AppError(400, "Claims hand-off", "format must be csv or fhir.")
    directory: claims.Directory = claims.NoDirectory()
    if base:
        directory = claims.FhirDirectory(selection.program_client(base))
    try:
        practice = claims.Practice.from_config(current_app.config)
    except (ArithmeticError, ValueError):
        raise AppError(500, "Configuration", "CLAIMS_CHARGES must map codes to amounts.") from None
    drafts = claims.drafts(claims.ready_items(rows), directory, practice)
    store = _store()
    try:
        store.record_claims(claims.handed_off(drafts))
    finally:
        store.close()
    month = str(p["month"])
    if fmt == "fhir":
        bundle = claims.to_bundle(drafts, datetime.now(UTC).replace(microsecond=0))
        return Response(
            json.dumps(bundle, indent=2),
            mimetype="application/fhir+json",
            headers={"Content-Disposition": f'attachment; filename="ccm-claims-{month}.json"'},
        )
    return Response(
        claims.to_csv(drafts),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="ccm-claims-{month}.csv"'},
    )


@bp.post("/program/payer/remit")
def remit_upload() -> Any:
    base, p = _context()
    uploads = [f for f in request.files.getlist("files") if f and f.filename]
    back = url_for("payer.payer")
    if not uploads:
        return redirect(f"{back}?{_query(base, p, problem='Choose one or more remittance files.')}", code=303)
    if len(uploads) > MAX_UPLOAD_FILES:
        raise AppError(400, "Remittance upload", f"At most {MAX_UPLOAD_FILES} files at a time.")
    files = [(f.filename or "file", f.read()) for f in uploads]
    store = _store()
    try:
        counts = load_files(store, files)
    except RemittanceError as exc:
        return redirect(f"{back}?{_query(base, p, problem=f'{exc} Nothing was loaded.')}", code=303)
    finally:
        store.close()
    return redirect(f"{back}?{_query(base, p, notice='Loaded: ' + counts.summary())}", code=303)
