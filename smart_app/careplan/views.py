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

import logging
import uuid
from datetime import datetime

from flask import (
    Response,
    jsonify,
    redirect,
    request,
    url_for,
)

from fhir_mapping.write_careplan import (
    plan_key_of,
)
from rules.careplan_validation import (
    CarePlanDraft,
    validate,
)
from smart_app.auth import scopes
from smart_app.careplan import prefill
from smart_app.careplan.drafts import DraftStore, draft_from_form, draft_from_json, draft_to_json
from smart_app.careplan.pages import (
    CarePlanError,
    _chart,
    _conflict,
    _context,
    _draft_key,
    _editor,
    _error,
    _not_saved,
    _Page,
    _page,
    _store,
    bp,
    conflict_with,
)
from smart_app.careplan.saving import _fields, _save, _with_suggestions

__all__ = ["DraftStore", "bp", "conflict_with", "draft_from_form", "draft_from_json", "draft_to_json"]

log = logging.getLogger(__name__)

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
        writable = not scopes.missing(ctx, "care-plan")  # never "Saved" beside "not permitted"
        notice = f"Saved: the care plan is in the chart{version}." if saved and writable else ""
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
    cannot = scopes.cannot_save_message(ctx, "care-plan")
    if cannot:  # said on the editor before typing; refused here before anything is sent
        return _not_saved(page, draft, plan_key, "rejected", error=cannot, status=403, notice=cannot)
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


