"""Saving a care plan: accepted suggestions, the CarePlan + Goals + Provenance transaction, conflicts."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import date
from typing import Any

from flask import (
    Response,
    redirect,
    url_for,
)

from fhir_mapping.write_careplan import (
    care_plan_transaction,
)
from fhir_mapping.write_provenance import WriteError, now_utc
from rules.careplan_validation import (
    ActivityDraft,
    CarePlanDraft,
    GoalDraft,
)
from rules.packs import load_pack
from smart_app.auth import scopes
from smart_app.auth.performer import PerformerUnverified, establish
from smart_app.careplan import prefill
from smart_app.careplan.drafts import draft_to_json
from smart_app.careplan.pages import _chart, _draft_key, _editor, _failed, _not_saved, _Page, _store
from smart_app.fhir.client import FhirError
from smart_app.fhir.patient_scope import PatientScopeError
from smart_app.web import sessions

log = logging.getLogger(__name__)

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
    refused = _foreign_ids(draft, chart) or scopes.cannot_save_message(ctx, "care-plan")
    if refused:
        return _not_saved(page, draft, plan_key, "rejected", error=refused, status=403, notice=refused)
    store.put(key, draft_to_json(draft, plan_key), "pending")
    pack = load_pack(chart.verdict.policy)
    try:
        who = establish(ctx, draft.author, sessions.fhir_client())
    except PerformerUnverified as exc:
        return _not_saved(page, draft, plan_key, "invalid", error=str(exc), status=422, notice=str(exc))
    try:
        bundle = care_plan_transaction(
            draft,
            plan_key=plan_key,
            user=who.reference,
            verification=who.how,
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


def _foreign_ids(draft: CarePlanDraft, chart: prefill.Chart) -> str:
    """Why the draft may not be written when it names a plan or goals that are not this patient's (else "").

    The plan and goal ids come back from the form; only the ones read from this patient's chart may be
    updated (PatientScopedClient also reads every PUT target before the write)."""
    plan_id = str((chart.plan or {}).get("id") or "")
    if draft.plan_id and draft.plan_id != plan_id:
        return "Not saved: this care plan is not the launch patient's plan. Reload the care plan."
    goal_ids = {str(g.get("id")) for g in chart.goals if isinstance(g, dict)} if draft.plan_id else set()
    if any(g.goal_id and g.goal_id not in goal_ids for g in draft.goals):
        return "Not saved: a goal on the form is not one of this patient's goals. Reload the care plan."
    return ""


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


