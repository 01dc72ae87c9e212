"""The CCM care-plan editor: build or revise the plan in place, print the patient's copy, record sharing.

GET  /care-plan          editor, pre-filled from the chart (or the stored plan, or the kept draft)
POST /care-plan          action=add (accept suggestions), save (validate, write with If-Match), discard
GET  /care-plan/print    the patient's copy (HTML; ?format=pdf prints it with headless Chromium)
POST /care-plan/share    record that a copy was given (a Communication about the CarePlan)

Whatever the user typed is stored in a server-side draft (SQLite, DATA_DIR/careplan_drafts.sqlite3) BEFORE the
write is attempted, and removed only after the FHIR server accepted it. A draft that failed because the server
was unreachable is retried when the editor is opened again; a conflicting revision (412) keeps the draft and
shows what changed on the server, so no one's edit is lost. Logs carry statuses only, never plan text.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Iterator
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
from smart_app import careplan_prefill as prefill
from smart_app import panel, sessions
from smart_app.context import LaunchContext
from smart_app.fhir_client import FhirError, FhirUnauthorized, FhirUnavailable
from smart_app.packet_render import PdfError, print_pdf, style_csp_source
from smart_app.patient_scope import PatientScopeError
from smart_app.security import content_security_policy

bp = Blueprint("careplan", __name__)
log = logging.getLogger(__name__)
MAX_ROWS = 30
TEMPLATES = Path(__file__).with_name("templates") / "careplan"
PRINT_CSS = (TEMPLATES / "print.css").read_text("utf-8")


class CarePlanError(Exception):
    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


# --------------------------------------------------------------------------- draft store


class DraftStore:
    """One kept draft per (FHIR server, patient, user or browser session); JSON in SQLite."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._tx() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS drafts (key TEXT PRIMARY KEY, payload TEXT NOT NULL, "
                "state TEXT NOT NULL, error TEXT NOT NULL DEFAULT '', updated REAL NOT NULL)"
            )

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=10)
        try:
            with db:
                yield db
        finally:
            db.close()

    def put(self, key: str, payload: dict[str, Any], state: str, error: str = "") -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO drafts (key, payload, state, error, updated) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET payload=excluded.payload, state=excluded.state, "
                "error=excluded.error, updated=excluded.updated",
                (key, json.dumps(payload), state, error, time.time()),
            )

    def get(self, key: str) -> tuple[dict[str, Any], str, str, float] | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT payload, state, error, updated FROM drafts WHERE key=?", (key,)
            ).fetchone()
        return (json.loads(row[0]), row[1], row[2], row[3]) if row else None

    def delete(self, key: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM drafts WHERE key=?", (key,))


def _store() -> DraftStore:
    store = current_app.extensions.get("ccm_ready_careplan_drafts")
    if store is None:
        store = DraftStore(Path(current_app.config["DATA_DIR"]) / "careplan_drafts.sqlite3")
        current_app.extensions["ccm_ready_careplan_drafts"] = store
    return store


def _draft_key(ctx: LaunchContext) -> str:
    who = ctx.user or str(getattr(session, "key", "") or "")
    return hashlib.sha256(f"{ctx.fhir_base}|{ctx.patient_id}|{who}".encode()).hexdigest()


def draft_to_json(d: CarePlanDraft, plan_key: str) -> dict[str, Any]:
    return {
        "plan_key": plan_key,
        "patient_id": d.patient_id,
        "conditions": list(d.conditions),
        "sections": d.sections,
        "author": d.author,
        "period_start": d.period_start.isoformat(),
        "plan_id": d.plan_id,
        "version": d.version,
        "problem_labels": d.problem_labels,
        "goals": [
            {
                "description": g.description,
                "measure": g.measure,
                "target": g.target,
                "due": g.due.isoformat() if g.due else None,
                "goal_id": g.goal_id,
                "measure_code": g.measure_code,
                "source": g.source,
            }
            for g in d.goals
        ],
        "activities": [
            {"description": a.description, "performer": a.performer, "source": a.source} for a in d.activities
        ],
    }


def draft_from_json(data: dict[str, Any]) -> tuple[CarePlanDraft, str]:
    goals = tuple(
        GoalDraft(
            g["description"],
            g["measure"],
            g["target"],
            date.fromisoformat(g["due"]) if g.get("due") else None,
            g.get("goal_id"),
            g.get("measure_code", ""),
            g.get("source", ""),
        )
        for g in data["goals"]
    )
    acts = tuple(
        ActivityDraft(a["description"], a["performer"], a.get("source", "")) for a in data["activities"]
    )
    draft = CarePlanDraft(
        patient_id=data["patient_id"],
        conditions=tuple(data["conditions"]),
        sections=dict(data["sections"]),
        goals=goals,
        activities=acts,
        author=data["author"],
        period_start=date.fromisoformat(data["period_start"]),
        plan_id=data.get("plan_id"),
        version=data.get("version"),
        problem_labels=dict(data.get("problem_labels") or {}),
    )
    return draft, data["plan_key"]


# --------------------------------------------------------------------------- form parsing


def _date(raw: str, field: str, label: str, problems: list[Problem]) -> date | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        problems.append(Problem(field, f"{label}: \u201c{raw[:20]}\u201d is not a date (use YYYY-MM-DD)."))
        return None


def _row_count(form: Any, field: str) -> int:
    """How many goal/intervention rows the form says it has (0..MAX_ROWS; junk counts as 0)."""
    raw = str(form.get(field, "") or "").strip()
    return min(int(raw), MAX_ROWS) if raw.isdigit() else 0


def draft_from_form(form: Any, ctx: LaunchContext, today: date) -> tuple[CarePlanDraft, str, list[Problem]]:
    """The draft exactly as typed (empty goal/intervention rows dropped) and any unreadable-input problems."""
    problems: list[Problem] = []
    goals: list[GoalDraft] = []
    for i in range(1, _row_count(form, "goal_count") + 1):
        get = lambda name, i=i: str(form.get(f"goal-{i}-{name}", "")).strip()  # noqa: E731
        if get("remove"):
            continue
        due = _date(get("due"), f"goal-{len(goals) + 1}-due", f"Goal {len(goals) + 1}", problems)
        if not any((get("description"), get("measure"), get("target"), get("due"))):
            continue
        goals.append(
            GoalDraft(
                get("description"),
                get("measure"),
                get("target"),
                due,
                get("id") or None,
                get("measure_code"),
                get("source"),
            )
        )
    acts: list[ActivityDraft] = []
    for i in range(1, _row_count(form, "activity_count") + 1):
        get = lambda name, i=i: str(form.get(f"activity-{i}-{name}", "")).strip()  # noqa: E731
        if get("remove") or not (get("description") or get("performer")):
            continue
        acts.append(ActivityDraft(get("description"), get("performer"), get("source")))
    start = _date(str(form.get("period_start", "")), "period_start", "Plan start", problems) or today
    labels = {}
    with contextlib.suppress(ValueError):
        labels = json.loads(str(form.get("problem_labels", "{}")))
    draft = CarePlanDraft(
        patient_id=ctx.patient_id,
        conditions=tuple(
            dict.fromkeys(str(c) for c in form.getlist("problems") if str(c).startswith("Condition/"))
        ),
        sections={
            code: str(form.get(f"sec-{code}", "")).replace("\r\n", "\n") for code, _, _ in TEXT_SECTIONS
        },
        goals=tuple(goals),
        activities=tuple(acts),
        author=str(form.get("author", "")).strip(),
        period_start=start,
        plan_id=str(form.get("plan_id", "")).strip() or None,
        version=str(form.get("version", "")).strip() or None,
        problem_labels=labels if isinstance(labels, dict) else {},
    )
    plan_key = str(form.get("plan_key", "")).strip() or str(uuid.uuid4())
    return draft, plan_key, problems


# --------------------------------------------------------------------------- views


def _context() -> tuple[LaunchContext, date, Month, str]:
    ctx = sessions.require_context()
    try:
        today = panel._today()
        month = panel.requested_month(ctx, today)
        policy = panel.policy_for(month, current_app.config.get("POLICY"))
    except panel.PanelError as err:
        raise CarePlanError(err.status, err.title, err.message) from err
    return ctx, today, month, policy


def _chart(ctx: LaunchContext, month: Month, policy: str) -> prefill.Chart:
    cfg = current_app.config
    try:
        return prefill.load_chart(
            sessions.fhir_client(),
            ctx.patient_id,
            month,
            tz=cfg.get("TIMEZONE", "UTC"),
            policy=policy,
            billing_practitioner=cfg.get("BILLING_PRACTITIONER"),
        )
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
    return render_template("panel/error.html", title=err.title, message=err.message), err.status


def _editor(
    ctx: LaunchContext,
    today: date,
    month: Month,
    chart: prefill.Chart,
    draft: CarePlanDraft,
    plan_key: str,
    *,
    problems: tuple[Problem, ...] = (),
    notice: str = "",
    notice_kind: str = "info",
    conflict: dict[str, Any] | None = None,
    status: int = 200,
) -> tuple[str, int]:
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
        today=today,
        month=month,
        share_methods=SHARE_METHODS,
        problem_labels_json=json.dumps(known),
        can_write=ctx.can_write("CarePlan"),
        pending=pending,
    )
    return body, status


@bp.get("/care-plan")
def editor() -> tuple[str, int]:
    """The editor: the kept draft if there is one (retrying a pending save), else the stored plan, else a new
    draft pre-filled from the chart."""
    try:
        ctx, today, month, policy = _context()
        chart = _chart(ctx, month, policy)
    except CarePlanError as err:
        return _error(err)
    kept = _store().get(_draft_key(ctx))
    if kept is not None:
        draft, plan_key = draft_from_json(kept[0])
        ours = draft.plan_id is not None or chart.plan is None or plan_key_of(chart.plan) == plan_key
        if kept[1] == "pending" and ours and not validate(draft, today):
            return _save(ctx, today, month, chart, draft, plan_key, retried=True)
        when = datetime.fromtimestamp(kept[3]).strftime("%Y-%m-%d %H:%M")
        message = kept[2] or "Your unsaved changes were restored."
        return _editor(
            ctx,
            today,
            month,
            chart,
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
        return _editor(ctx, today, month, chart, stored, key, notice=notice, notice_kind="success")
    return _editor(
        ctx, today, month, chart, prefill.new_draft(chart, ctx.patient_id, today), str(uuid.uuid4())
    )


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
        chart = _chart(ctx, month, policy)
    except CarePlanError as err:
        store.put(
            key, draft_to_json(draft, plan_key), "pending", "The chart could not be read; not saved yet."
        )
        return _error(err)
    if action == "add":
        accepted = [s for s in (prefill.suggestion(k) for k in request.form.getlist("accept")) if s]
        rows = [prefill.accept(s, today) for s in accepted]
        goals = [*draft.goals, *(r for r in rows if isinstance(r, GoalDraft))]
        acts = [*draft.activities, *(r for r in rows if isinstance(r, ActivityDraft))]
        sections = dict(draft.sections)
        for t in prefill.templates():
            if f"{t.condition_key}:symptoms" in request.form.getlist("accept") and t.symptoms:
                current = sections.get("symptoms", "").strip()
                sections["symptoms"] = (current + "\n" if current else "") + f"{t.label}: {t.symptoms}"
        draft = CarePlanDraft(
            **{**_fields(draft), "goals": tuple(goals), "activities": tuple(acts), "sections": sections}
        )
        store.put(key, draft_to_json(draft, plan_key), "editing")
        n = len(rows) + sum(1 for k in request.form.getlist("accept") if k.endswith(":symptoms"))
        notice = (
            f"{n} suggestion{'s' if n != 1 else ''} added below. Edit them to fit this patient, then Save."
            if n
            else "Tick the suggestions you want, then press \u201cAdd selected suggestions\u201d."
        )
        return _editor(ctx, today, month, chart, draft, plan_key, notice=notice)
    if action == "overwrite":
        current = request.form.get("current_version", "").strip()
        plan_id = request.form.get("current_plan_id", "").strip() or draft.plan_id
        draft = CarePlanDraft(**{**_fields(draft), "version": current or draft.version, "plan_id": plan_id})
    if draft.plan_id is None and chart.plan is not None:
        # Someone created the plan after this editor opened: never make a second one; show theirs.
        conflict = conflict_with(chart, ctx)
        msg = (
            "Someone else created this patient's care plan while you were editing (version "
            f"{conflict['version']} is in the chart). Nothing was overwritten and your changes are kept "
            "below. Compare with their plan, then save yours over it or discard it."
        )
        store.put(key, draft_to_json(draft, plan_key), "conflict", msg)
        return _editor(
            ctx,
            today,
            month,
            chart,
            draft,
            plan_key,
            conflict=conflict,
            status=409,
            notice=msg,
            notice_kind="error",
        )
    problems += list(validate(draft, today))
    if problems:
        store.put(key, draft_to_json(draft, plan_key), "invalid")
        return _editor(
            ctx,
            today,
            month,
            chart,
            draft,
            plan_key,
            problems=tuple(problems),
            status=422,
            notice="Not saved yet: please fix the items marked below. Your text is kept.",
            notice_kind="error",
        )
    return _save(ctx, today, month, chart, draft, plan_key)


def _fields(d: CarePlanDraft) -> dict[str, Any]:
    return {name: getattr(d, name) for name in CarePlanDraft.__dataclass_fields__}


def _save(
    ctx: LaunchContext,
    today: date,
    month: Month,
    chart: prefill.Chart,
    draft: CarePlanDraft,
    plan_key: str,
    *,
    retried: bool = False,
) -> Response | tuple[str, int]:  # type: ignore[return]
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
        store.put(key, draft_to_json(draft, plan_key), "invalid", str(exc))
        return _editor(
            ctx,
            today,
            month,
            chart,
            draft,
            plan_key,
            status=422,
            notice_kind="error",
            notice=f"Not saved: {exc}. Your text is kept.",
        )
    except PatientScopeError:
        raise
    except FhirError as exc:
        return _failed(ctx, today, month, chart, draft, plan_key, exc)
    except PermissionError:
        store.put(key, draft_to_json(draft, plan_key), "pending", "Your session ended before the save.")
        return _editor(
            ctx,
            today,
            month,
            chart,
            draft,
            plan_key,
            status=401,
            notice_kind="error",
            notice="Not saved: your session has ended. Your draft is kept on this server; open the "
            "app again from the EHR and it will be saved.",
        )
    store.delete(key)
    version = _saved_version(response)
    log.info("care plan saved (%s)", "revision" if draft.plan_id else "new")
    if retried:
        chart = _chart(ctx, month, chart.verdict.policy)
        stored = prefill.stored_draft(chart, ctx.patient_id) or draft
        return _editor(
            ctx,
            today,
            month,
            chart,
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


def _failed(
    ctx: LaunchContext,
    today: date,
    month: Month,
    chart: prefill.Chart,
    draft: CarePlanDraft,
    plan_key: str,
    exc: FhirError,
) -> tuple[str, int]:
    store, key = _store(), _draft_key(ctx)
    log.warning("care plan save failed: status %s", exc.status)
    if exc.status in (409, 412):
        with contextlib.suppress(CarePlanError):  # show the version that is in the chart now
            chart = _chart(ctx, month, chart.verdict.policy)
        conflict = conflict_with(chart, ctx)
        msg = (
            f"Someone else saved this care plan while you were editing (you started from version "
            f"{draft.version}; the chart now has version {conflict['version']}). Nothing was overwritten and "
            "your changes are kept below. Compare with their version, then save yours over it or discard it."
        )
        store.put(key, draft_to_json(draft, plan_key), "conflict", msg)
        return _editor(
            ctx,
            today,
            month,
            chart,
            draft,
            plan_key,
            conflict=conflict,
            status=409,
            notice=msg,
            notice_kind="error",
        )
    transient = isinstance(exc, (FhirUnavailable, FhirUnauthorized)) or exc.status is None
    if transient:
        msg = (
            f"The FHIR server could not be reached ({exc.message.rstrip('. ')}). Your draft is kept on this "
            "server and is sent again when you open the care plan; you can also press Save to retry now."
        )
        store.put(key, draft_to_json(draft, plan_key), "pending", msg)
        return _editor(
            ctx,
            today,
            month,
            chart,
            draft,
            plan_key,
            status=503,
            notice=f"Not saved yet. {msg}",
            notice_kind="error",
        )
    msg = f"The FHIR server refused the care plan: {exc.message}"
    store.put(key, draft_to_json(draft, plan_key), "rejected", msg)
    return _editor(
        ctx,
        today,
        month,
        chart,
        draft,
        plan_key,
        status=422,
        notice_kind="error",
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
        chart = _chart(ctx, month, policy)
    except CarePlanError as err:
        return jsonify({"state": "pending", "message": err.message})
    draft, plan_key = draft_from_json(kept[0])
    ours = draft.plan_id is not None or chart.plan is None or plan_key_of(chart.plan) == plan_key
    if not ours or validate(draft, today):
        return jsonify({"state": "pending", "message": "Open the draft and press Save."})
    _save(ctx, today, month, chart, draft, plan_key, retried=True)
    after = store.get(key)
    if after is not None:
        return jsonify({"state": after[1], "message": after[2]})
    return jsonify({"state": "saved"})


@bp.get("/care-plan/print")
def print_copy() -> Response | tuple[str, int]:
    """The patient's copy in plain language and large type; ?format=pdf for a PDF."""
    try:
        ctx, today, month, policy = _context()
        chart = _chart(ctx, month, policy)
    except CarePlanError as err:
        return _error(err)
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
        ctx, today, month, policy = _context()
        chart = _chart(ctx, month, policy)
    except CarePlanError as err:
        return _error(err)
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
        return _editor(
            ctx,
            today,
            month,
            chart,
            stored or prefill.new_draft(chart, ctx.patient_id, today),
            plan_key_of(chart.plan) or "",
            status=422,
            notice_kind="error",
            notice="Sharing not recorded: " + " ".join(errors),
        )
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
        return _editor(
            ctx,
            today,
            month,
            chart,
            stored or prefill.new_draft(chart, ctx.patient_id, today),
            plan_key_of(chart.plan) or "",
            status=422,
            notice_kind="error",
            notice=f"Sharing not recorded: {exc}.",
        )
    except FhirError as exc:
        log.warning("care plan share failed: status %s", exc.status)
        return _editor(
            ctx,
            today,
            month,
            chart,
            stored or prefill.new_draft(chart, ctx.patient_id, today),
            plan_key_of(chart.plan) or "",
            status=502,
            notice_kind="error",
            notice=f"Sharing not recorded: {exc.message}. Press the button again to retry.",
        )
    return redirect(url_for("careplan.editor", shared=method))
