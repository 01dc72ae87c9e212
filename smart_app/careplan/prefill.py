"""What the care-plan editor starts from: the chart (chronic problems, medicines, allergies, care team), the
stored CCM CarePlan when there is one, and the template suggestions for the patient's conditions.

Templates are data (careplan_templates.json). A suggestion is only offered: the editor adds it to the draft
when the user accepts it, and every suggestion carries its source.
"""

from __future__ import annotations

import calendar
import json
import logging
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

from fhir_mapping.read_chart import (
    allergies,
    care_team,
    medicines,
    newest_ccm_plan,
    person_display,
    plan_references,
    text_of,
)
from fhir_mapping.write_careplan import draft_from_resources
from rules.careplan_validation import ActivityDraft, CarePlanDraft, GoalDraft
from rules.verdict import Verdict
from smart_app.fhir.client import FhirError
from smart_app.fhir.patient_scope import PatientScopeError, belongs_to
from smart_app.readiness.options import EvaluationOptions
from smart_app.readiness.use_case import ServerSource, verdict_for

log = logging.getLogger(__name__)
TEMPLATES_PATH = Path(__file__).with_name("templates.json")
MAX_NAMES = 12


@dataclass(frozen=True, slots=True)
class Suggestion:
    """One template entry: a goal or an intervention the user may accept, with its source."""

    key: str  # "diabetes:goal:0"
    kind: str  # goal | intervention
    condition: str  # condition label
    description: str
    source: str
    measure: str = ""
    measure_code: str = ""
    target: str = ""
    due_months: int = 6
    performer: str = ""


@dataclass(frozen=True, slots=True)
class Template:
    condition_key: str
    label: str
    goals: tuple[Suggestion, ...]
    interventions: tuple[Suggestion, ...]
    symptoms: str = ""
    symptoms_source: str = ""


@dataclass
class Chart:
    """What the editor shows beside the draft."""

    verdict: Verdict
    problems: list[tuple[str, str]]  # (Condition ref, label) of the chronic conditions the rules found
    medications: list[str] = field(default_factory=list)
    allergies: list[str] = field(default_factory=list)
    team: list[tuple[str, str]] = field(default_factory=list)  # (reference, label)
    plan: dict[str, Any] | None = None  # the stored CCM CarePlan (newest active) when there is one
    goals: list[dict[str, Any]] = field(default_factory=list)  # its Goals
    problems_loading: list[str] = field(default_factory=list)  # parts of the chart that could not be read
    contacts: list[str] = field(default_factory=list)  # how to reach the care team ("Phone: 555-0100")


@dataclass(frozen=True)
class OnFile:
    """The stored plan as it is on file (what "Review" shows before anyone edits)."""

    description: str
    problems: list[str]
    goals: list[str]
    activities: list[str]
    notes: list[str]
    period: str

    @property
    def empty(self) -> bool:
        return not (self.description or self.problems or self.goals or self.activities or self.notes)


TELECOM_LABELS = {"phone": "Phone", "email": "Email", "fax": "Fax", "sms": "Text", "url": "Web"}


def telecom_lines(resource: dict[str, Any]) -> list[str]:
    """ "Phone: 555-0100 (work)" lines from a resource's ContactPoints."""
    out = []
    for cp in resource.get("telecom") or ():
        if not isinstance(cp, dict) or not isinstance(cp.get("value"), str) or not cp["value"].strip():
            continue
        label = TELECOM_LABELS.get(str(cp.get("system") or ""), "Contact")
        use = f" ({cp['use']})" if isinstance(cp.get("use"), str) and cp["use"] in ("work", "mobile") else ""
        out.append(f"{label}: {cp['value'].strip()}{use}")
    return out


def plan_on_file(chart: Chart) -> OnFile | None:
    """What the stored CCM plan says, read straight from the resource and its Goals (None: no plan)."""
    plan = chart.plan
    if plan is None:
        return None
    labels = dict(chart.problems)
    problems = []
    for ref in plan.get("addresses") or ():
        if isinstance(ref, dict):
            value = ref.get("reference")
            text = ref.get("display") or labels.get(value or "", "") or ""
            if text or value:
                problems.append(str(text or "a condition on the problem list"))
    goals = [
        text_of(g.get("description")) for g in chart.goals if text_of(g.get("description"))
    ]
    activities = []
    for act in plan.get("activity") or ():
        detail = (act or {}).get("detail") or {} if isinstance(act, dict) else {}
        text = detail.get("description") or text_of(detail.get("code"))
        if not text and isinstance(act, dict) and isinstance(act.get("reference"), dict):
            text = act["reference"].get("display") or ""
        if text:
            activities.append(str(text))
    notes = [str(n.get("text")) for n in plan.get("note") or () if isinstance(n, dict) and n.get("text")]
    period = plan.get("period") or {}
    since = period.get("start") if isinstance(period, dict) else None
    return OnFile(
        description=str(plan.get("description") or ""),
        problems=problems,
        goals=goals,
        activities=activities,
        notes=notes,
        period=f"since {since}" if isinstance(since, str) and since else "",
    )


@cache
def templates() -> tuple[Template, ...]:
    """Every template in careplan_templates.json (loaded once)."""
    data = json.loads(TEMPLATES_PATH.read_text("utf-8"))
    out = []
    for t in data["templates"]:
        key, label = t["condition_key"], t["label"]
        goals = tuple(
            Suggestion(
                f"{key}:goal:{i}",
                "goal",
                label,
                g["description"],
                g["source"],
                g["measure"],
                g.get("measure_code", ""),
                g["target"],
                int(g.get("due_months", 6)),
            )
            for i, g in enumerate(t["goals"])
        )
        acts = tuple(
            Suggestion(
                f"{key}:intervention:{i}",
                "intervention",
                label,
                a["description"],
                a["source"],
                performer=a["performer"],
            )
            for i, a in enumerate(t["interventions"])
        )
        out.append(Template(key, label, goals, acts, t.get("symptoms", ""), t.get("symptoms_source", "")))
    return tuple(out)


def templates_for(condition_keys: list[str]) -> list[Template]:
    """Templates for the patient's conditions first, then the others (a user may still want them)."""
    everything = list(templates())
    mine = [t for t in everything if t.condition_key in condition_keys]
    return mine + [t for t in everything if t not in mine]


def suggestion(key: str) -> Suggestion | None:
    for t in templates():
        for s in (*t.goals, *t.interventions):
            if s.key == key:
                return s
    return None


def add_months(day: date, months: int) -> date:
    """`day` plus whole months (the last day of a shorter month when needed)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def accept(s: Suggestion, today: date) -> GoalDraft | ActivityDraft:
    """An accepted suggestion as an editable draft row that keeps its source."""
    source = f"Template \u201c{s.condition}\u201d: {s.source}"
    if s.kind == "goal":
        return GoalDraft(
            s.description,
            s.measure,
            s.target,
            add_months(today, s.due_months),
            measure_code=s.measure_code,
            source=source,
        )
    return ActivityDraft(s.description, s.performer, source=source)


def _practitioner_name(client: Any, ref: str) -> str:
    rtype, _, rid = ref.partition("/")
    if rtype not in ("Practitioner", "PractitionerRole") or not rid:
        return ref
    try:
        res = client.read(rtype, rid)
    except (FhirError, PermissionError):
        return ref
    return person_display(res, ref)


def read_goals(client: Any, plan: dict[str, Any], patient_id: str) -> list[dict[str, Any]]:
    """The plan's Goals. Goal has no patient search on every server, so each is read by id; the
    session's patient-scoped client refuses a Goal that is not the launch patient's."""
    read_owned = getattr(client, "read_owned", None)
    out = []
    for value in plan_references(plan, "goal"):
        if not value.startswith("Goal/"):
            continue
        goal_id = value.split("/", 1)[1]
        try:
            res = read_owned("Goal", goal_id) if read_owned else client.read("Goal", goal_id)
        except PatientScopeError:
            log.warning("care plan goal skipped: it belongs to another patient")
            continue
        except FhirError as exc:
            log.info("care plan goal could not be read: status %s", exc.status)
            continue
        if belongs_to(res, patient_id):
            out.append(res)
    return out


def load_chart(client: Any, patient_id: str, options: EvaluationOptions) -> Chart:
    """Everything the editor needs, in three batches: readiness data, medicines/allergies/team, goals."""
    result = verdict_for(ServerSource(client), patient_id, options)
    verdict, facts = result.verdict, result.facts
    problems: dict[str, str] = {}
    for c in verdict.chronic_conditions:
        for ev in c.evidence:
            problems.setdefault(ev, f"{c.display or c.condition_label} ({c.code})")
    chart = Chart(verdict, list(problems.items()))
    plan = newest_ccm_plan(result.resources)
    if plan is not None:
        chart.plan = plan
        chart.goals = read_goals(client, plan, patient_id)
        for value in plan_references(plan, "addresses"):  # conditions the plan addresses, chronic or not
            if value not in problems:
                chart.problems.append((value, value))
    urls = [
        f"MedicationRequest?patient={patient_id}&status=active",
        f"MedicationStatement?patient={patient_id}",
        f"AllergyIntolerance?patient={patient_id}",
        f"CareTeam?patient={patient_id}",
    ]
    try:
        results = client.batch(urls)
    except FhirError as exc:
        chart.problems_loading.append(f"medicines, allergies and care team ({exc.message})")
        results = []
    loaded: list[dict[str, Any]] = []
    for url, got in zip(urls, results, strict=False):
        if not got.ok:
            chart.problems_loading.append(f"{url.split('?', 1)[0]} ({got.message})")
            continue
        loaded.extend(r for r in got.resources if isinstance(r, dict))
    chart.medications.extend(medicines(loaded))
    chart.allergies.extend(allergies(loaded))
    team = care_team(loaded)
    orgs: list[str] = []
    for res in loaded:  # how to reach the care team: its own telecom, else its organization's
        if res.get("resourceType") != "CareTeam":
            continue
        chart.contacts.extend(x for x in telecom_lines(res) if x not in chart.contacts)
        org = ((res.get("managingOrganization") or [None])[0] or {}).get("reference")
        if isinstance(org, str) and org.startswith("Organization/") and org not in orgs:
            orgs.append(org)
    if not chart.contacts and orgs:
        try:
            for got in client.batch(orgs[:3]):
                for res in got.resources if got.ok else ():
                    chart.contacts.extend(x for x in telecom_lines(res) if x not in chart.contacts)
        except FhirError as exc:
            log.info("care team organization unavailable: status %s", exc.status)
    refs = list(
        dict.fromkeys(
            [*(x for x in [verdict.billing_practitioner] if x), *team, *facts.patient.general_practitioners]
        )
    )
    for ref in refs[:MAX_NAMES]:
        name = (
            _practitioner_name(client, ref) if ref.startswith("Practitioner") else str(team.get(ref) or ref)
        )
        role = team.get(ref, "")
        if ref == verdict.billing_practitioner:
            role = "billing practitioner" + (f", {role}" if role else "")
        chart.team.append((ref, f"{name} ({role})" if role else name))
    return chart


def medication_text(chart: Chart) -> str:
    """The medication-management section as the chart gives it (the user edits it)."""
    lines = []
    if chart.medications:
        lines.append("Current medicines: " + "; ".join(chart.medications) + ".")
    if chart.allergies:
        lines.append("Allergies: " + "; ".join(chart.allergies) + ".")
    elif chart.medications:
        lines.append("Allergies: none recorded.")
    return "\n".join(lines)


def new_draft(chart: Chart, patient_id: str, today: date) -> CarePlanDraft:
    """A first draft from the chart: the problem list and the medicines; goals and interventions are empty
    until the user writes or accepts them."""
    return CarePlanDraft(
        patient_id=patient_id,
        conditions=tuple(ref for ref, _ in chart.problems),
        sections={"medications": medication_text(chart)},
        goals=(),
        activities=(),
        author=chart.verdict.billing_practitioner or "",
        period_start=today,
        problem_labels=dict(chart.problems),
    )


def stored_draft(chart: Chart, patient_id: str) -> CarePlanDraft | None:
    """The stored CCM CarePlan as a draft for revision (None when there is none)."""
    if chart.plan is None:
        return None
    return draft_from_resources(chart.plan, chart.goals, patient_id, dict(chart.problems))
