"""GET /ledger/summary: the launch patient's month as the app's ledger holds it, printable.

For EHRs that accept nothing from the app (write profile *none*) this page is what the practice files in the
chart by hand: every time entry of the month (when, minutes, who, activity, note, where it was written) and
every consent and initiating visit captured, with the ledger's chain status. People by name.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, render_template, request

from rules.month import zone
from smart_app.capture.blueprint import bp, delivery_for
from smart_app.errors import AppError
from smart_app.readiness.captured import CapturedSource
from smart_app.readiness.options import options_from
from smart_app.readiness.use_case import ResourceSource, verdict_for
from smart_app.web import people, sessions


@bp.get("/ledger/summary")
def ledger_summary() -> Any:
    ctx = sessions.require_context()
    ledger = delivery_for(current_app).ledger
    try:
        options = options_from(
            current_app.config, raw_month=request.args.get("month"), app_context=ctx.app_context
        )
    except ValueError as exc:
        raise AppError(400, "This month cannot be shown", str(exc)) from exc
    source = CapturedSource(ResourceSource([]), ledger, ctx.fhir_base)
    result = verdict_for(source, ctx.patient_id, options)
    tz = zone(options.tz)
    deliveries = ledger.deliveries(ctx.fhir_base, ctx.patient_id)
    entries = [
        {
            "start": e.start.astimezone(tz),
            "end": e.end.astimezone(tz),
            "minutes": e.minutes,
            "program": e.program,
            "performer": e.performer or "",
            "activities": ", ".join(a.code for a in e.activities),
            "note": " ".join(e.notes),
            "status": e.status,
            "where": _where(deliveries.get(e.id.removeprefix("Encounter/cr-"))),
        }
        for e in sorted(result.facts.time_entries, key=lambda t: t.start)
        if options.month.contains(e.start, tz)
    ]
    visits = [
        {
            "day": v.start.astimezone(tz).date().isoformat() if v.start else "",
            "codes": ", ".join(c.code for c in v.codings),
            "who": list(v.participants),
            "where": _where(deliveries.get(v.id.removeprefix("Encounter/cr-"))),
        }
        for v in result.facts.visits
    ]
    # every name the page shows, in one batch (never an id on a page filed in the chart)
    consent_people = (x for c in result.facts.consents for x in (c.obtained_by, c.billing_practitioner) if x)
    visit_people = (w for v in visits for w in v["who"])
    people.preload([*(e["performer"] for e in entries), *visit_people, *consent_people])
    total = sum(e["minutes"] for e in entries if e["status"] == "finished")
    check = ledger.verify()
    return render_template(
        "timelog/ledger_summary.html",
        month=options.month,
        patient=ctx.patient_id,
        entries=entries,
        total=total,
        consents=result.facts.consents,
        visits=visits,
        chain=check,
    )


def _where(delivery: Any) -> str:
    if delivery is None:
        return "not yet written"
    written = [w for w in delivery.facts.get("written") or [] if w]
    profile = delivery.facts.get("profile")
    if profile == "none" or not written:
        return "ledger only"
    return f"EHR ({profile}): {', '.join(written)}"
