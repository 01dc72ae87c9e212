"""Strict writer for the CCM care plan (CarePlan + Goals + Provenance) and the record that it was shared.

Shapes are documented in docs/fhir-conventions.md ("Care plans"). A first save POSTs the CarePlan
conditionally on our care-plan identifier. A revision PUTs the same CarePlan with `ifMatch` = the version
the user started from, in one transaction with its Goals and Provenance, so a concurrent edit fails as a
whole (412) and nothing is half written. The server's `_history` is the audit trail.
`draft_from_resources` reads back what this module writes (for the editor).

Why over 400 lines: the strict writer for CarePlan, Goals, Provenance and the sharing
Communication, with the reader that turns them back into a draft; both halves share the mapping.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from fhir_mapping.codes import CARE_PROGRAM, EXT_CARE_PLAN_REVIEWED, UCUM
from fhir_mapping.reading import as_object
from fhir_mapping.write_provenance import WriteError, checked, for_patient, instant, provenance, token_query
from fhir_mapping.write_time import transaction
from rules.careplan_validation import (
    SECTION_LABELS,
    TEXT_SECTIONS,
    ActivityDraft,
    CarePlanDraft,
    GoalDraft,
    parse_target,
)

CARE_PLAN_ID = "https://ccm-ready.org/fhir/identifier/care-plan"
GOAL_ID = "https://ccm-ready.org/fhir/identifier/care-plan-goal"
SHARE_ID = "https://ccm-ready.org/fhir/identifier/care-plan-share"
EXT_SECTION = "https://ccm-ready.org/fhir/StructureDefinition/care-plan-section"
EXT_SOURCE = "https://ccm-ready.org/fhir/StructureDefinition/suggestion-source"
PARTICIPATION_MODE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode"
US_CORE_CAREPLAN_CATEGORY = "http://hl7.org/fhir/us/core/CodeSystem/careplan-category"
COMMUNICATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/communication-category"
# How a copy reached the patient -> v3 ParticipationMode (R4 Communication.medium's example binding).
SHARE_METHODS: dict[str, tuple[str, str, str]] = {
    "paper": ("WRITTEN", "written", "on paper"),
    "portal": ("ELECTRONIC", "electronic data", "through the patient portal"),
    "email": ("EMAILWRIT", "email", "by e-mail"),
}
_NS = uuid.UUID("6f1c2d4e-8a0b-4c55-9a77-3c1d5e2f9b10")
_REF_TYPES = (
    "Practitioner/",
    "PractitionerRole/",
    "Patient/",
    "RelatedPerson/",
    "CareTeam/",
    "Organization/",
)


def urn(kind: str, key: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NS, f'{kind}:{key}')}"


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _source_ext(source: str) -> list[dict[str, Any]]:
    return [{"url": EXT_SOURCE, "valueString": source.strip()}] if source.strip() else []


def _performer(text: str) -> dict[str, Any]:
    text = text.strip()
    if text.startswith(_REF_TYPES) and " " not in text:
        return {"reference": text}
    return {"display": text}


def goal(draft: CarePlanDraft, g: GoalDraft, key: str, start: date) -> dict[str, Any]:
    """One Goal with a measurable target (a Quantity when the target is a number, else text) and a due
    date."""
    if not g.description.strip() or not g.measure.strip() or not g.target.strip() or g.due is None:
        raise WriteError("a goal needs a description, a measure, a target and a due date")
    measure: dict[str, Any] = {"text": g.measure.strip()}
    if "|" in g.measure_code:
        system, code = g.measure_code.split("|", 1)
        measure["coding"] = [{"system": system, "code": code, "display": g.measure.strip()}]
    target: dict[str, Any] = {"measure": measure, "dueDate": g.due.isoformat()}
    parsed = parse_target(g.target)
    if parsed is not None:
        comparator, value, unit = parsed
        quantity: dict[str, Any] = {"value": _number(value)}
        if comparator:
            quantity["comparator"] = comparator
        if unit:
            quantity["unit"] = unit
            if unit == "%":
                quantity.update(system=UCUM, code="%")
        target["detailQuantity"] = quantity
    else:
        target["detailString"] = g.target.strip()
    resource: dict[str, Any] = {
        "resourceType": "Goal",
        "identifier": [{"system": GOAL_ID, "value": key}],
        "lifecycleStatus": "active",
        "description": {"text": g.description.strip()},
        "subject": {"reference": f"Patient/{draft.patient_id}"},
        "startDate": start.isoformat(),
        "target": [target],
        "addresses": [{"reference": c} for c in draft.conditions],
        "expressedBy": {"reference": draft.author},
    }
    ext = _source_ext(g.source)
    if ext:
        resource["extension"] = ext
    if g.goal_id:
        resource["id"] = g.goal_id
    return checked(resource)


def _narrative(draft: CarePlanDraft) -> str:
    """The plan as XHTML (CarePlan.text) so any EHR can show it."""
    esc = html.escape
    parts = ['<div xmlns="http://www.w3.org/1999/xhtml">', "<h2>CCM comprehensive care plan</h2>"]
    problems = [draft.problem_labels.get(c, c) for c in draft.conditions]
    parts.append(f"<h3>{SECTION_LABELS['problems']}</h3><ul>")
    parts += [f"<li>{esc(p)}</li>" for p in problems] + ["</ul>"]
    parts.append(f"<h3>{SECTION_LABELS['goals']}</h3><ul>")
    for g in draft.goals:
        due = g.due.isoformat() if g.due else ""
        parts.append(f"<li>{esc(g.description)}: {esc(g.measure)} {esc(g.target)} by {due}</li>")
    parts.append("</ul>")
    parts.append(f"<h3>{esc(SECTION_LABELS['interventions'])}</h3><ul>")
    for a in draft.activities:
        parts.append(f"<li>{esc(a.description)} (responsible: {esc(a.performer)})</li>")
    parts.append("</ul>")
    for code, label, _ in TEXT_SECTIONS:
        parts.append(f"<h3>{esc(label)}</h3><p>{esc(draft.sections.get(code, ''))}</p>")
    parts.append("</div>")
    return "".join(parts)


def care_plan(
    draft: CarePlanDraft,
    plan_key: str,
    goal_refs: Sequence[str],
    *,
    reviewed: datetime,
    created: str | None = None,
) -> dict[str, Any]:
    """The CarePlan (status active, category care-program#ccm) for `draft`, validated as R4."""
    if not draft.conditions:
        raise WriteError("a care plan must address at least one condition")
    if not draft.author.startswith(("Practitioner/", "PractitionerRole/")):
        raise WriteError("the care plan's author must be the billing practitioner")
    extensions: list[dict[str, Any]] = [{"url": EXT_CARE_PLAN_REVIEWED, "valueDateTime": instant(reviewed)}]
    for code, _label, _ in TEXT_SECTIONS:
        text = (draft.sections.get(code) or "").strip()
        if text:
            extensions.append(
                {
                    "url": EXT_SECTION,
                    "extension": [{"url": "code", "valueCode": code}, {"url": "text", "valueString": text}],
                }
            )
    activities = []
    for a in draft.activities:
        detail: dict[str, Any] = {
            "status": "in-progress",
            "description": a.description.strip(),
            "performer": [_performer(a.performer)],
        }
        ext = _source_ext(a.source)
        if ext:
            detail["extension"] = ext
        activities.append({"detail": detail})
    resource: dict[str, Any] = {
        "resourceType": "CarePlan",
        "identifier": [{"system": CARE_PLAN_ID, "value": plan_key}],
        "extension": extensions,
        "text": {"status": "generated", "div": _narrative(draft)},
        "status": "active",
        "intent": "plan",
        "category": [
            {"coding": [{"system": US_CORE_CAREPLAN_CATEGORY, "code": "assess-plan"}]},
            {"coding": [{"system": CARE_PROGRAM, "code": "ccm", "display": "Chronic care management"}]},
        ],
        "title": "CCM comprehensive care plan",
        "subject": {"reference": f"Patient/{draft.patient_id}"},
        "period": {"start": draft.period_start.isoformat()},
        "created": created or draft.period_start.isoformat(),
        "author": {"reference": draft.author},
        "addresses": [{"reference": c} for c in draft.conditions],
        "goal": [{"reference": r} for r in goal_refs],
        "activity": activities,
    }
    if draft.plan_id:
        resource["id"] = draft.plan_id
    return checked(resource)


def care_plan_transaction(
    draft: CarePlanDraft,
    *,
    plan_key: str,
    user: str,
    recorded: datetime,
    pack_id: str,
    pack_version: str,
    existing: Mapping[str, Any] | None = None,
    stored_goals: Sequence[Mapping[str, Any]] = (),
    verification: str | None = None,
) -> dict[str, Any]:
    """CarePlan + Goals + Provenance in one transaction.

    New plan: POST, conditional on our identifier (a retry never makes a second plan). Goals are PUT under
    ids derived from the plan key (Goal has no identifier search on every server), so retries are
    idempotent. Revision (`draft.plan_id` and `draft.version` set, `existing` = the stored plan,
    `stored_goals` = its Goals): PUT with ifMatch W/"version"; kept goals are PUT in place, goals no longer
    on the plan are PUT back as `cancelled`, never deleted.
    """
    revising = bool(draft.plan_id)
    if revising and not draft.version:
        raise WriteError("a revision needs the version it starts from (If-Match)")
    today = recorded.date()
    entries: list[dict[str, Any]] = []
    goal_refs: list[str] = []
    stored = {str(g.get("id")): g for g in stored_goals if isinstance(g.get("id"), str)}
    for i, g in enumerate(draft.goals):
        if g.goal_id:
            gid, key = g.goal_id, _stored_goal_key(stored.get(g.goal_id)) or g.goal_id
        else:  # a client-chosen id: PUT is idempotent, so a retried save never duplicates a goal
            key = f"{plan_key}-{recorded.strftime('%Y%m%dT%H%M%S')}-{i + 1}"
            # The patient is part of the id, so two patients' goals can never share one (same plan key,
            # same second); PatientScopedClient also reads the target before the PUT.
            gid = str(uuid.uuid5(_NS, f"goal:Patient/{draft.patient_id}:{key}"))
        res = goal(draft, replace(g, goal_id=gid), key, today)
        full = urn("goal", f"{gid}-{recorded.isoformat()}")
        entries.append({"fullUrl": full, "resource": res, "request": {"method": "PUT", "url": f"Goal/{gid}"}})
        goal_refs.append(full)
    kept = {g.goal_id for g in draft.goals if g.goal_id}
    for old in stored.values():
        old_id = old.get("id")
        if not isinstance(old_id, str) or old_id in kept:
            continue
        res = {k: v for k, v in old.items() if k not in ("meta", "text")}
        res["lifecycleStatus"] = "cancelled"
        entries.append(
            {
                "fullUrl": urn("goal-retired", f"{old_id}-{recorded.isoformat()}"),
                "resource": checked(res),
                "request": {"method": "PUT", "url": f"Goal/{old_id}"},
            }
        )
    plan_url = urn("care-plan", f"{plan_key}-{recorded.isoformat()}")
    created = existing.get("created") if isinstance(existing, Mapping) else None
    plan = care_plan(
        draft, plan_key, goal_refs, reviewed=recorded, created=created if isinstance(created, str) else None
    )
    if revising:
        request = {"method": "PUT", "url": f"CarePlan/{draft.plan_id}", "ifMatch": f'W/"{draft.version}"'}
    else:
        request = {
            "method": "POST",
            "url": "CarePlan",
            "ifNoneExist": for_patient(token_query("identifier", CARE_PLAN_ID, plan_key), draft.patient_id),
        }
    entries.append({"fullUrl": plan_url, "resource": plan, "request": request})
    prov = provenance(
        [plan_url, *goal_refs],
        user=user,
        recorded=recorded,
        pack_id=pack_id,
        pack_version=pack_version,
        activity="UPDATE" if revising else "CREATE",
        reason="CCM care plan revised" if revising else "CCM care plan established",
        revises=f"CarePlan/{draft.plan_id}/_history/{draft.version}" if revising else None,
        verification=verification,
    )
    prov_request: dict[str, Any] = {"method": "POST", "url": "Provenance"}
    if not revising:  # a create that matched this patient's plan (a retry) writes no second Provenance
        prov_request["ifNoneExist"] = for_patient(
            token_query("target:CarePlan.identifier", CARE_PLAN_ID, plan_key),
            draft.patient_id,
            "target:CarePlan.patient",
        )
    entries.append(
        {
            "fullUrl": urn("care-plan-provenance", f"{plan_key}-{recorded.isoformat()}"),
            "resource": prov,
            "request": prov_request,
        }
    )
    return transaction(entries)


def _stored_goal_key(res: Mapping[str, Any] | None) -> str | None:
    for ident in (res or {}).get("identifier") or ():
        value = ident.get("value") if isinstance(ident, dict) else None
        if isinstance(value, str) and ident.get("system") == GOAL_ID:
            return value
    return None


def share_communication(
    *,
    patient_id: str,
    plan_id: str,
    plan_version: str | None,
    method: str,
    recipient: str,
    sender: str,
    sent: datetime,
    share_key: str,
) -> dict[str, Any]:
    """A completed Communication about the CarePlan: a copy was given to `recipient` by `method`."""
    if method not in SHARE_METHODS:
        raise WriteError(f"how the copy was shared must be one of {', '.join(SHARE_METHODS)}")
    if not recipient.strip():
        raise WriteError("say who received the copy (the patient or a caregiver)")
    code, display, words = SHARE_METHODS[method]
    recipient_ref = (
        {"reference": f"Patient/{patient_id}"}
        if recipient.strip().lower() in ("patient", f"patient/{patient_id}")
        else {"display": recipient.strip()}
    )
    version = f" (version {plan_version})" if plan_version else ""
    resource = {
        "resourceType": "Communication",
        "identifier": [{"system": SHARE_ID, "value": share_key}],
        "status": "completed",
        "category": [{"coding": [{"system": COMMUNICATION_CATEGORY, "code": "notification"}]}],
        "medium": [
            {"coding": [{"system": PARTICIPATION_MODE, "code": code, "display": display}], "text": method}
        ],
        "subject": {"reference": f"Patient/{patient_id}"},
        "about": [{"reference": f"CarePlan/{plan_id}"}],
        "sent": instant(sent),
        "recipient": [recipient_ref],
        "sender": {"reference": sender},
        "payload": [{"contentString": f"Copy of the CCM care plan{version} given {words}."}],
    }
    return checked(resource)


def share_transaction(
    communication: dict[str, Any],
    *,
    user: str,
    recorded: datetime,
    pack_id: str,
    pack_version: str,
    verification: str | None = None,
) -> dict[str, Any]:
    """Communication + Provenance, conditional on the share identifier and the patient (a retry records it
    once)."""
    key = communication["identifier"][0]["value"]
    patient_id = str(communication["subject"]["reference"]).removeprefix("Patient/")
    c_url = urn("care-plan-share", f"Patient/{patient_id}:{key}")
    prov = provenance(
        [c_url],
        user=user,
        recorded=recorded,
        pack_id=pack_id,
        pack_version=pack_version,
        reason="Copy of the CCM care plan given to the patient",
        verification=verification,
    )
    return transaction(
        [
            {
                "fullUrl": c_url,
                "resource": communication,
                "request": {
                    "method": "POST",
                    "url": "Communication",
                    "ifNoneExist": for_patient(token_query("identifier", SHARE_ID, key), patient_id),
                },
            },
            {
                "fullUrl": urn("care-plan-share-provenance", f"Patient/{patient_id}:{key}"),
                "resource": prov,
                "request": {
                    "method": "POST",
                    "url": "Provenance",
                    "ifNoneExist": for_patient(
                        token_query("target:Communication.identifier", SHARE_ID, key),
                        patient_id,
                        "target:Communication.patient",
                    ),
                },
            },
        ]
    )


# --------------------------------------------------------------------------- reading back what we wrote


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def plan_key_of(plan: Mapping[str, Any]) -> str | None:
    for ident in plan.get("identifier") or ():
        value = ident.get("value") if isinstance(ident, dict) else None
        if isinstance(value, str) and ident.get("system") == CARE_PLAN_ID:
            return value
    return None


def _source_of(res: Mapping[str, Any]) -> str:
    for ext in res.get("extension") or ():
        if isinstance(ext, dict) and ext.get("url") == EXT_SOURCE:
            return _text(ext.get("valueString"))
    return ""


def goal_draft(res: Mapping[str, Any]) -> GoalDraft:
    """A stored Goal as an editable GoalDraft (lenient: missing parts become empty fields)."""
    target = next((t for t in res.get("target") or () if isinstance(t, dict)), {})
    measure = as_object(target.get("measure"))
    coding = next((c for c in measure.get("coding") or () if isinstance(c, dict)), {})
    qty = target.get("detailQuantity") if isinstance(target.get("detailQuantity"), dict) else None
    if qty is not None:
        value = qty.get("value")
        target_text = " ".join(
            str(x) for x in (qty.get("comparator"), value, qty.get("unit")) if x not in (None, "")
        )
    else:
        target_text = _text(target.get("detailString"))
    try:
        due = date.fromisoformat(_text(target.get("dueDate"))) if target.get("dueDate") else None
    except ValueError:
        due = None
    description = as_object(res.get("description"))
    return GoalDraft(
        description=_text(description.get("text")),
        measure=_text(measure.get("text")) or _text(coding.get("display")),
        target=target_text,
        due=due,
        goal_id=_text(res.get("id")) or None,
        measure_code=f"{coding['system']}|{coding['code']}"
        if coding.get("system") and coding.get("code")
        else "",
        source=_source_of(res),
    )


def draft_from_resources(
    plan: Mapping[str, Any],
    goals: Sequence[Mapping[str, Any]],
    patient_id: str,
    problem_labels: Mapping[str, str] | None = None,
) -> CarePlanDraft:
    """The stored CarePlan (and its Goals) as the draft the editor shows for a revision."""
    sections: dict[str, str] = {}
    for ext in plan.get("extension") or ():
        if isinstance(ext, dict) and ext.get("url") == EXT_SECTION:
            parts = {e.get("url"): e for e in ext.get("extension") or () if isinstance(e, dict)}
            code = _text((parts.get("code") or {}).get("valueCode"))
            if code:
                sections[code] = _text((parts.get("text") or {}).get("valueString"))
    by_id = {_text(g.get("id")): g for g in goals}
    ordered = []
    for ref in plan.get("goal") or ():
        gid = _text(ref.get("reference") if isinstance(ref, dict) else "").rsplit("/", 1)[-1]
        if gid in by_id and by_id[gid].get("lifecycleStatus") != "cancelled":
            ordered.append(goal_draft(by_id[gid]))
    activities = []
    for act in plan.get("activity") or ():
        detail = act.get("detail") if isinstance(act, dict) and isinstance(act.get("detail"), dict) else None
        if detail is None:
            continue
        performer = next((p for p in detail.get("performer") or () if isinstance(p, dict)), {})
        activities.append(
            ActivityDraft(
                description=_text(detail.get("description")),
                performer=_text(performer.get("reference")) or _text(performer.get("display")),
                source=_source_of(detail),
            )
        )
    conditions = tuple(
        _text(a.get("reference"))
        for a in plan.get("addresses") or ()
        if isinstance(a, dict) and a.get("reference")
    )
    period = as_object(plan.get("period"))
    try:
        start = date.fromisoformat(_text(period.get("start"))[:10])
    except ValueError:
        start = date.today()
    meta = as_object(plan.get("meta"))
    author = as_object(plan.get("author"))
    return CarePlanDraft(
        patient_id=patient_id,
        conditions=conditions,
        sections=sections,
        goals=tuple(ordered),
        activities=tuple(activities),
        author=_text(author.get("reference")),
        period_start=start,
        plan_id=_text(plan.get("id")) or None,
        version=_text(meta.get("versionId")) or None,
        problem_labels=dict(problem_labels or {}),
    )
