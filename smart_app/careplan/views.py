"""The CCM care-plan editor: build or revise the plan in place, print the patient's copy, record sharing.

GET  /care-plan          editor, pre-filled from the chart (or the stored plan, or the kept draft)
POST /care-plan          action=add (accept suggestions), save (validate, write with If-Match), discard
GET  /care-plan/print    the patient's copy (HTML; ?format=pdf prints it with headless Chromium)
POST /care-plan/share    record that a copy was given (a Communication about the CarePlan)

Whatever the user typed is stored in a server-side draft (smart_app.careplan.drafts, in
DATA_DIR/careplan_drafts.sqlite3) BEFORE the write is attempted, and removed only after the FHIR server
accepted it. A draft that failed because the server was unreachable is retried when the editor is opened
again; a conflicting revision (412) keeps the draft and shows what changed on the server, so no one's edit
is lost. Logs carry statuses only, never plan text.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import uuid
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from fhir_mapping.read_clinical import human_name
from fhir_mapping.write_careplan import (
    SHARE_METHODS,
    care_plan_transaction,
    plan_key_of,
    share_communication,
    share_transaction,
)
from fhir_mapping.write_provenance import WriteError, now_utc
from rules.careplan_validation import (
    SECTION_LABELS,
    TEXT_SECTIONS,
    ActivityDraft,
    CarePlanDraft,
    GoalDraft,
    Problem,
    validate,
)
from rules.month import BadMonth, BadTimezone, Month
from rules.packs import UnknownPolicy, load_pack
from smart_app import config
from smart_app.careplan import prefill
from smart_app.careplan.drafts import DraftStore, draft_from_form, draft_from_json, draft_to_json
from smart_app.context import LaunchContext
from smart_app.errors import AppError
from smart_app.fhir.client import FhirError, FhirUnauthorized, FhirUnavailable
from smart_app.fhir.patient_scope import PatientScopeError
from smart_app.readiness.options import options_from
from smart_app.web import sessions
from smart_app.web.printing import PdfError, print_pdf, style_csp_source
from smart_app.web.security import content_security_policy

__all__ = ["DraftStore", "bp", "conflict_with", "draft_from_form", "draft_from_json", "draft_to_json"]

bp = Blueprint("careplan", __name__)
log = logging.getLogger(__name__)
TEMPLATES = config.TEMPLATES / "careplan"
PRINT_CSS = (TEMPLATES / "print.css").read_text("utf-8")


class CarePlanError(AppError):
    """A care-plan page problem (the one application error type)."""


# --------------------------------------------------------------------------- kept drafts


def _store() -> DraftStore:
    store = current_app.extensions.get("ccm_ready_careplan_drafts")
    if store is None:
        store = DraftStore(Path(current_app.config["DATA_DIR"]) / "careplan_drafts.sqlite3")
        current_app.extensions["ccm_ready_careplan_drafts"] = store
    return store


def _draft_key(ctx: LaunchContext) -> str:
    who = ctx.user or str(getattr(session, "key", "") or "")
    return hashlib.sha256(f"{ctx.fhir_base}|{ctx.patient_id}|{who}".encode()).hexdigest()


# --------------------------------------------------------------------------- views


@dataclass(frozen=True)
class _Page:
    """What every editor page is drawn from: the launch, today, the month and the chart as read."""

    ctx: LaunchContext
    today: date
    month: Month
    chart: prefill.Chart

    def reread(self) -> _Page:
        """The same page with the chart as it is on the server now (kept as it was if it cannot be read)."""
        with contextlib.suppress(CarePlanError):
            return replace(self, chart=_chart(self.ctx, self.month, self.chart.verdict.policy))
        return self


def _context() -> tuple[LaunchContext, date, Month, str]:
    ctx = sessions.require_context()
    try:
        options = options_from(
            current_app.config, raw_month=request.args.get("month"), app_context=ctx.app_context
        )
    except AppError as err:
        raise CarePlanError(err.status, err.title, err.message) from err
    assert options.today is not None
    return ctx, options.today, options.month, options.policy


def _page() -> _Page:
    """The current launch with its chart read; raises CarePlanError."""
    ctx, today, month, policy = _context()
    return _Page(ctx, today, month, _chart(ctx, month, policy))


def _chart(ctx: LaunchContext, month: Month, policy: str) -> prefill.Chart:
    try:
        options = options_from(current_app.config, month=month, policy=policy)
        return prefill.load_chart(sessions.fhir_client(), ctx.patient_id, options)
    except PatientScopeError:
        raise
    except FhirError as exc:
        log.warning("care plan: FHIR error while reading the chart: status %s", exc.status)
        raise CarePlanError(
            502,
            "The FHIR server did not answer as expected",
            f"{exc.message.rstrip('. ')}. Try again in a moment.",
        ) from exc
    except PermissionError as exc:
        raise CarePlanError(401, "Your session has ended", "Open the app again from the EHR.") from exc
    except (BadMonth, BadTimezone, UnknownPolicy) as exc:
        raise CarePlanError(400, "This month cannot be evaluated", str(exc)) from exc


def _error(err: CarePlanError) -> tuple[str, int]:
    return render_template("error.html", title=err.title, message=err.message), err.status


def _editor(
    page: _Page,
    draft: CarePlanDraft,
    plan_key: str,
    *,
    problems: tuple[Problem, ...] = (),
    notice: str = "",
    notice_kind: str = "info",
    conflict: dict[str, Any] | None = None,
    status: int = 200,
) -> tuple[str, int]:
    ctx, chart = page.ctx, page.chart
    kept = _store().get(_draft_key(ctx))
    pending = kept is not None and kept[1] == "pending"
    keys = [c.condition_key for c in chart.verdict.chronic_conditions]
    known = dict(chart.problems)
    for ref in draft.conditions:
        known.setdefault(ref, draft.problem_labels.get(ref, ref))
    body = render_template(
        "careplan/editor.html",
        draft=draft,
        plan_key=plan_key,
        chart=chart,
        problems=problems,
        by_field={p.field: p.message for p in problems},
        notice=notice,
        notice_kind=notice_kind,
        conflict=conflict,
        sections=TEXT_SECTIONS,
        labels=SECTION_LABELS,
        templates=prefill.templates_for(keys),
        problem_options=list(known.items()),
        today=page.today,
        month=page.month,
        share_methods=SHARE_METHODS,
        problem_labels_json=json.dumps(known),
        can_write=ctx.can_write("CarePlan"),
        pending=pending,
    )
    return body, status


def _not_saved(
    page: _Page,
    draft: CarePlanDraft,
    plan_key: str,
    state: str,
    *,
    status: int,
    notice: str,
    error: str = "",
    problems: tuple[Problem, ...] = (),
    conflict: dict[str, Any] | None = None,
) -> tuple[str, int]:
    """Keep the draft (state and error) on this server and show the editor again with an error notice."""
    _store().put(_draft_key(page.ctx), draft_to_json(draft, plan_key), state, error)
    return _editor(
        page,
        draft,
        plan_key,
        problems=problems,
        conflict=conflict,
        status=status,
        notice=notice,
        notice_kind="error",
    )


def _conflict(page: _Page, draft: CarePlanDraft, plan_key: str, message: str) -> tuple[str, int]:
    """Someone else wrote the plan meanwhile: keep the draft and show theirs next to it (409)."""
    return _not_saved(
        page,
        draft,
        plan_key,
        "conflict",
        error=message,
        status=409,
        notice=message,
        conflict=conflict_with(page.chart, page.ctx),
    )


@bp.get("/care-plan")
def editor() -> tuple[str, int]:
    """The editor: the kept draft if there is one (retrying a pending save), else the stored plan, else a new
    draft pre-filled from the chart."""
    try:
        page = _page()
    except CarePlanError as err:
        return _error(err)
    ctx, today, chart = page.ctx, page.today, page.chart
    kept = _store().get(_draft_key(ctx))
    if kept is not None:
        draft, plan_key = draft_from_json(kept[0])
        if kept[1] == "pending" and _ours(draft, plan_key, chart) and not validate(draft, today):
            return _save(page, draft, plan_key, retried=True)
        when = datetime.fromtimestamp(kept[3]).strftime("%Y-%m-%d %H:%M")
        message = kept[2] or "Your unsaved changes were restored."
        return _editor(
            page,
            draft,
            plan_key,
            problems=validate(draft, today),
            notice=f"Draft kept from {when}: {message} Review it and press Save.",
            notice_kind="warning",
        )
    saved = request.args.get("saved", "")
    stored = prefill.stored_draft(chart, ctx.patient_id)
    if stored is not None:
        key = plan_key_of(chart.plan or {}) or str(uuid.uuid4())
        version = f" (version {stored.version})" if stored.version else ""
        notice = f"Saved: the care plan is in the chart{version}." if saved else ""
        return _editor(page, stored, key, notice=notice, notice_kind="success")
    return _editor(page, prefill.new_draft(chart, ctx.patient_id, today), str(uuid.uuid4()))


def _ours(draft: CarePlanDraft, plan_key: str, chart: prefill.Chart) -> bool:
    """Whether a kept draft may be sent as is: a revision, or the first plan and no other was made since."""
    return draft.plan_id is not None or chart.plan is None or plan_key_of(chart.plan) == plan_key


@bp.post("/care-plan")
def submit() -> Response | tuple[str, int]:
    """action=add: accept suggestions; action=save / overwrite: validate and write; action=discard."""
    try:
        ctx, today, month, policy = _context()
    except CarePlanError as err:
        return _error(err)
    action = request.form.get("action", "save")
    store, key = _store(), _draft_key(ctx)
    if action == "discard":
        store.delete(key)
        return redirect(url_for("careplan.editor"))
    draft, plan_key, problems = draft_from_form(request.form, ctx, today)
    store.put(key, draft_to_json(draft, plan_key), "editing")  # nothing typed is lost from here on
    try:
        page = _Page(ctx, today, month, _chart(ctx, month, policy))
    except CarePlanError as err:
        store.put(
            key, draft_to_json(draft, plan_key), "pending", "The chart could not be read; not saved yet."
        )
        return _error(err)
    if action == "add":
        draft, notice = _with_suggestions(draft, request.form.getlist("accept"), today)
        store.put(key, draft_to_json(draft, plan_key), "editing")
        return _editor(page, draft, plan_key, notice=notice)
    if action == "overwrite":
        current = request.form.get("current_version", "").strip()
        plan_id = request.form.get("current_plan_id", "").strip() or draft.plan_id
        draft = CarePlanDraft(**{**_fields(draft), "version": current or draft.version, "plan_id": plan_id})
    if draft.plan_id is None and page.chart.plan is not None:
        # Someone created the plan after this editor opened: never make a second one; show theirs.
        version = conflict_with(page.chart, ctx)["version"]
        return _conflict(
            page,
            draft,
            plan_key,
            "Someone else created this patient's care plan while you were editing (version "
            f"{version} is in the chart). Nothing was overwritten and your changes are kept "
            "below. Compare with their plan, then save yours over it or discard it.",
        )
    problems += list(validate(draft, today))
    if problems:
        return _not_saved(
            page,
            draft,
            plan_key,
            "invalid",
            problems=tuple(problems),
            status=422,
            notice="Not saved yet: please fix the items marked below. Your text is kept.",
        )
    return _save(page, draft, plan_key)


def _with_suggestions(draft: CarePlanDraft, accept: list[str], today: date) -> tuple[CarePlanDraft, str]:
    """The draft with the ticked suggestions added (goals, interventions, symptom notes) and the notice."""
    accepted = [s for s in (prefill.suggestion(k) for k in accept) if s]
    rows = [prefill.accept(s, today) for s in accepted]
    goals = [*draft.goals, *(r for r in rows if isinstance(r, GoalDraft))]
    acts = [*draft.activities, *(r for r in rows if isinstance(r, ActivityDraft))]
    sections = dict(draft.sections)
    for t in prefill.templates():
        if f"{t.condition_key}:symptoms" in accept and t.symptoms:
            current = sections.get("symptoms", "").strip()
            sections["symptoms"] = (current + "\n" if current else "") + f"{t.label}: {t.symptoms}"
    draft = CarePlanDraft(
        **{**_fields(draft), "goals": tuple(goals), "activities": tuple(acts), "sections": sections}
    )
    n = len(rows) + sum(1 for k in accept if k.endswith(":symptoms"))
    notice = (
        f"{n} suggestion{'s' if n != 1 else ''} added below. Edit them to fit this patient, then Save."
        if n
        else "Tick the suggestions you want, then press \u201cAdd selected suggestions\u201d."
    )
    return draft, notice


def _fields(d: CarePlanDraft) -> dict[str, Any]:
    return {name: getattr(d, name) for name in CarePlanDraft.__dataclass_fields__}


def _save(
    page: _Page, draft: CarePlanDraft, plan_key: str, *, retried: bool = False
) -> Response | tuple[str, int]:
    ctx, chart = page.ctx, page.chart
    store, key = _store(), _draft_key(ctx)
    store.put(key, draft_to_json(draft, plan_key), "pending")
    pack = load_pack(chart.verdict.policy)
    try:
        bundle = care_plan_transaction(
            draft,
            plan_key=plan_key,
            user=ctx.user or draft.author,
            recorded=now_utc(),
            pack_id=pack.id,
            pack_version=pack.version,
            existing=chart.plan if draft.plan_id else None,
            stored_goals=chart.goals if draft.plan_id else (),
        )
        response = sessions.fhir_client().transaction(bundle)
    except WriteError as exc:
        return _not_saved(
            page,
            draft,
            plan_key,
            "invalid",
            error=str(exc),
            status=422,
            notice=f"Not saved: {exc}. Your text is kept.",
        )
    except PatientScopeError:
        raise
    except FhirError as exc:
        return _failed(page, draft, plan_key, exc)
    except PermissionError:
        return _not_saved(
            page,
            draft,
            plan_key,
            "pending",
            error="Your session ended before the save.",
            status=401,
            notice="Not saved: your session has ended. Your draft is kept on this server; open the "
            "app again from the EHR and it will be saved.",
        )
    store.delete(key)
    version = _saved_version(response)
    log.info("care plan saved (%s)", "revision" if draft.plan_id else "new")
    if retried:
        page = replace(page, chart=_chart(ctx, page.month, chart.verdict.policy))
        stored = prefill.stored_draft(page.chart, ctx.patient_id) or draft
        return _editor(
            page,
            stored,
            plan_key,
            notice_kind="success",
            notice=f"Your kept draft has now been saved (version {version}).",
        )
    return redirect(url_for("careplan.editor", saved=version or "new"))


def _saved_version(response: dict[str, Any]) -> str:
    for entry in response.get("entry") or ():
        res = entry.get("resource") if isinstance(entry, dict) else None
        loc = str((entry.get("response") or {}).get("location") or "") if isinstance(entry, dict) else ""
        if (isinstance(res, dict) and res.get("resourceType") == "CarePlan") or "/CarePlan/" in loc:
            if isinstance(res, dict) and (res.get("meta") or {}).get("versionId"):
                return str(res["meta"]["versionId"])
            if "/_history/" in loc:
                return loc.rsplit("/_history/", 1)[1].strip("/")
    return ""


def conflict_with(chart: prefill.Chart, ctx: LaunchContext) -> dict[str, Any]:
    """What the conflict panel shows: the plan in the chart now."""
    current = chart.plan or {}
    meta = current.get("meta") or {}
    return {
        "plan_id": str(current.get("id") or ""),
        "version": str(meta.get("versionId") or ""),
        "updated": str(meta.get("lastUpdated") or ""),
        "theirs": prefill.stored_draft(chart, ctx.patient_id),
    }


def _failed(page: _Page, draft: CarePlanDraft, plan_key: str, exc: FhirError) -> tuple[str, int]:
    log.warning("care plan save failed: status %s", exc.status)
    if exc.status in (409, 412):
        page = page.reread()  # show the version that is in the chart now
        version = conflict_with(page.chart, page.ctx)["version"]
        return _conflict(
            page,
            draft,
            plan_key,
            f"Someone else saved this care plan while you were editing (you started from version "
            f"{draft.version}; the chart now has version {version}). Nothing was overwritten and "
            "your changes are kept below. Compare with their version, then save yours over it or discard it.",
        )
    transient = isinstance(exc, (FhirUnavailable, FhirUnauthorized)) or exc.status is None
    if transient:
        msg = (
            f"The FHIR server could not be reached ({exc.message.rstrip('. ')}). Your draft is kept on this "
            "server and is sent again when you open the care plan; you can also press Save to retry now."
        )
        return _not_saved(
            page, draft, plan_key, "pending", error=msg, status=503, notice=f"Not saved yet. {msg}"
        )
    msg = f"The FHIR server refused the care plan: {exc.message}"
    return _not_saved(
        page,
        draft,
        plan_key,
        "rejected",
        error=msg,
        status=422,
        notice=f"Not saved. {msg}. Your text is kept; correct it and save again.",
    )


@bp.post("/care-plan/retry")
def retry() -> Response | tuple[Response, int]:
    """Send a kept draft that failed because the server was unreachable (careplan.js calls this while the
    editor is open). JSON: {"state": none|saved|pending|conflict|invalid|rejected|editing, "version"}."""
    try:
        ctx, today, month, policy = _context()
    except CarePlanError as err:
        return jsonify({"state": "error", "message": err.message}), err.status
    store, key = _store(), _draft_key(ctx)
    kept = store.get(key)
    if kept is None:
        return jsonify({"state": "none"})
    if kept[1] != "pending":
        return jsonify({"state": kept[1], "message": kept[2]})
    try:
        page = _Page(ctx, today, month, _chart(ctx, month, policy))
    except CarePlanError as err:
        return jsonify({"state": "pending", "message": err.message})
    draft, plan_key = draft_from_json(kept[0])
    if not _ours(draft, plan_key, page.chart) or validate(draft, today):
        return jsonify({"state": "pending", "message": "Open the draft and press Save."})
    _save(page, draft, plan_key, retried=True)
    after = store.get(key)
    if after is not None:
        return jsonify({"state": after[1], "message": after[2]})
    return jsonify({"state": "saved"})


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
    if errors:
        return _share_refused(page, stored, 422, " ".join(errors))
    assert when is not None
    pack = load_pack(chart.verdict.policy)
    now = now_utc()
    sent = now if when == today else datetime(when.year, when.month, when.day, 12, tzinfo=now.tzinfo)
    user = ctx.user or (stored.author if stored else "") or "Practitioner/unknown"
    share_key = request.form.get("share_key", "").strip() or str(uuid.uuid4())
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
            share_transaction(comm, user=user, recorded=now, pack_id=pack.id, pack_version=pack.version)
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
