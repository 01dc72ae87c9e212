"""The patient's copy: GET /care-plan/print (HTML or PDF) and POST /care-plan/share (a Communication)."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from flask import (
    Response,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)

from fhir_mapping.read_clinical import human_name
from fhir_mapping.write_careplan import (
    SHARE_METHODS,
    plan_key_of,
    share_communication,
    share_transaction,
)
from fhir_mapping.write_provenance import WriteError, now_utc
from rules.careplan_validation import (
    SECTION_LABELS,
    TEXT_SECTIONS,
    CarePlanDraft,
)
from rules.packs import load_pack
from smart_app.auth import scopes
from smart_app.auth.performer import PerformerUnverified, establish
from smart_app.careplan import prefill
from smart_app.careplan.pages import PRINT_CSS, CarePlanError, _editor, _error, _Page, _page, bp
from smart_app.fhir.client import FhirError
from smart_app.web import sessions
from smart_app.web.printing import PdfError, print_pdf, style_csp_source
from smart_app.web.security import content_security_policy

log = logging.getLogger(__name__)

@bp.get("/care-plan/print")
def print_copy() -> Response | tuple[str, int]:
    """The patient's copy in plain language and large type; ?format=pdf for a PDF."""
    try:
        page = _page()
    except CarePlanError as err:
        return _error(err)
    ctx, today, chart = page.ctx, page.today, page.chart
    draft = prefill.stored_draft(chart, ctx.patient_id)
    if draft is None:
        return _error(
            CarePlanError(
                404,
                "No care plan to print yet",
                "Build and save the care plan first; then print the patient's copy.",
            )
        )
    try:
        patient = sessions.fhir_client().read("Patient", ctx.patient_id)
    except FhirError:
        patient = {}  # the copy is still useful without the name
    team = dict(chart.team)
    html = render_template(
        "careplan/print.html",
        draft=draft,
        css=PRINT_CSS,
        labels=SECTION_LABELS,
        sections=TEXT_SECTIONS,
        patient_name=human_name(patient.get("name")),
        team=team,
        today=today,
        problems=[draft.problem_labels.get(c, c) for c in draft.conditions],
        contacts=chart.contacts,
        on_file=prefill.plan_on_file(chart),
    )
    if request.args.get("format") == "pdf":
        try:
            data = print_pdf(html)
        except PdfError as exc:
            return _error(CarePlanError(503, "The PDF could not be printed", str(exc)))
        resp = Response(data, mimetype="application/pdf")
        resp.headers["Content-Disposition"] = 'inline; filename="care-plan.pdf"'
        return resp
    resp = Response(html, mimetype="text/html")
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    # The app's policy (frame-ancestors included) plus exactly the print stylesheet.
    resp.headers["Content-Security-Policy"] = content_security_policy(app, style_csp_source(PRINT_CSS))
    return resp


@bp.post("/care-plan/share")
def share() -> Response | tuple[str, int]:
    """Record that a copy went to the patient (or a caregiver): when, how and with whom."""
    try:
        page = _page()
    except CarePlanError as err:
        return _error(err)
    ctx, today, chart = page.ctx, page.today, page.chart
    if chart.plan is None:
        return _error(CarePlanError(404, "No care plan to share yet", "Save the care plan first."))
    method = request.form.get("method", "")
    who = request.form.get("recipient", "patient").strip()
    if who == "caregiver":
        who = request.form.get("caregiver_name", "").strip()
        who = f"Caregiver: {who}" if who else ""
    raw_when = request.form.get("sent", "").strip()
    try:
        when = datetime.fromisoformat(raw_when).date() if raw_when else today
    except ValueError:
        when = None
    errors = []
    if method not in SHARE_METHODS:
        errors.append("Choose how the copy was given: paper, patient portal or e-mail.")
    if not who:
        errors.append("Say who received the copy: the patient, or the caregiver's name.")
    if when is None or when > today:
        errors.append("The date the copy was given must be a date (YYYY-MM-DD), today or earlier.")
    stored = prefill.stored_draft(chart, ctx.patient_id)
    if scopes.missing(ctx, "care-plan-share"):
        return _share_refused(page, stored, 403, scopes.cannot_save_message(ctx, "care-plan-share"))
    if errors:
        return _share_refused(page, stored, 422, " ".join(errors))
    assert when is not None
    pack = load_pack(chart.verdict.policy)
    now = now_utc()
    sent = now if when == today else datetime(when.year, when.month, when.day, 12, tzinfo=now.tzinfo)
    share_key = request.form.get("share_key", "").strip() or str(uuid.uuid4())
    try:
        sender = establish(ctx, stored.author if stored else None, sessions.fhir_client())
    except PerformerUnverified as exc:
        return _share_refused(page, stored, 422, str(exc))
    user = sender.reference
    try:
        comm = share_communication(
            patient_id=ctx.patient_id,
            plan_id=str(chart.plan["id"]),
            plan_version=str((chart.plan.get("meta") or {}).get("versionId") or "") or None,
            method=method,
            recipient=who,
            sender=user,
            sent=sent,
            share_key=share_key,
        )
        sessions.fhir_client().transaction(
            share_transaction(
                comm,
                user=user,
                recorded=now,
                pack_id=pack.id,
                pack_version=pack.version,
                verification=sender.how,
            )
        )
    except WriteError as exc:
        return _share_refused(page, stored, 422, f"{exc}.")
    except FhirError as exc:
        log.warning("care plan share failed: status %s", exc.status)
        return _share_refused(page, stored, 502, f"{exc.message}. Press the button again to retry.")
    return redirect(url_for("careplan.editor", shared=method))


def _share_refused(page: _Page, stored: CarePlanDraft | None, status: int, reason: str) -> tuple[str, int]:
    """The editor again (the stored plan, else a new draft) saying why the sharing was not recorded."""
    chart = page.chart
    draft = stored or prefill.new_draft(chart, page.ctx.patient_id, page.today)
    notice = f"Sharing not recorded: {reason}"
    return _editor(
        page, draft, plan_key_of(chart.plan or {}) or "", status=status, notice=notice, notice_kind="error"
    )
