"""FHIR R4 resources (plain dicts) -> PatientFacts, leniently.

A resource the reader cannot use becomes a `Skipped` entry (with a reason that never quotes the
data), never an exception. Resources about another patient are ignored. Resources of types the
rules do not need (Observation, Practitioner, ...) are ignored silently.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from fhir_mapping.dates import BadDate
from fhir_mapping.people import PERSON_TYPES, People
from fhir_mapping.reach import Reach, attestation_coded, charge_outside, outside
from fhir_mapping.read_billing import read_charge_item, read_claim_lines, read_encounter_billing
from fhir_mapping.read_clinical import (
    abatement_age,
    plan_shared_at,
    read_care_plan,
    read_condition,
    read_patient,
)
from fhir_mapping.read_consent import care_programs, read_consent
from fhir_mapping.read_encounters import TimeDraft, performer_of, read_encounter
from fhir_mapping.read_tasks import read_attestation, task_activities, task_notes
from fhir_mapping.reading import ReadContext, Unreadable
from fhir_mapping.references import References
from fhir_mapping.subject import Identifier, bind, identifiers
from rules.month import zone
from rules.records import (
    Attestation,
    BilledService,
    CarePlanRecord,
    Coding,
    ConditionRecord,
    ConsentRecord,
    InpatientStay,
    PatientFacts,
    PatientRecord,
    Skipped,
    VisitRecord,
)

# Which element names the patient a resource is about.
SUBJECT_FIELD: dict[str, str] = {
    "Condition": "subject",
    "Encounter": "subject",
    "CarePlan": "subject",
    "Consent": "patient",
    "Task": "for",
    "ChargeItem": "subject",
    "Claim": "patient",
    "ExplanationOfBenefit": "patient",
    "Communication": "subject",
    "DocumentReference": "subject",  # the app's notes (fhir_mapping.read_note); read_facts itself skips them
}
_READ = frozenset(SUBJECT_FIELD) | {"Patient", "OperationOutcome", "Bundle"}


def patient_key(patient_id: str) -> str:
    """"Patient/X" for "X", "Patient/X" or an absolute Patient URL."""
    text = patient_id.strip()
    if "/" in text:
        text = text.rstrip("/").rsplit("/", 1)[-1]
    return f"Patient/{text}"


def patient_ids(resources: Iterable[Any]) -> list[str]:
    """The distinct "Patient/id" keys of the Patient resources, in order of appearance."""
    seen: dict[str, None] = {}
    for res in resources:
        if isinstance(res, dict) and res.get("resourceType") == "Patient":
            rid = res.get("id")
            if isinstance(rid, str) and rid:
                seen[f"Patient/{rid}"] = None
    return list(seen)


def _index(resources: Iterable[Any]) -> tuple[list[Any], References]:
    items = resources if isinstance(resources, list) else list(resources)
    return items, References(items)


def group_by_patient(resources: Iterable[Any]) -> dict[str, list[Any]]:
    """Resources of a population (NDJSON export) grouped by the patient they are about.

    Practitioners and PractitionerRoles go with every patient (people referenced by role or NPI are
    resolved through them); other resources about no patient (Organization, ...) are left out.
    """
    items, refs = _index(resources)
    groups: dict[str, list[Any]] = {}
    persons: list[Any] = []
    key_of = refs.key
    for res in items:
        if not isinstance(res, dict):
            continue
        rtype = res.get("resourceType")
        if rtype in PERSON_TYPES:
            persons.append(res)
            continue
        if rtype == "Patient":
            rid = res.get("id")
            if isinstance(rid, str) and rid:
                groups.setdefault(f"Patient/{rid}", []).append(res)
            continue
        field = SUBJECT_FIELD.get(rtype)  # type: ignore[arg-type]
        if field is None:
            continue
        key = key_of(res.get(field))
        if key is not None and key.startswith("Patient/"):
            groups.setdefault(key, []).append(res)
    if persons:
        for group in groups.values():
            group.extend(persons)
    return groups


def _label(res: Any, index: int) -> str:
    if isinstance(res, dict):
        rtype, rid = res.get("resourceType"), res.get("id")
        if isinstance(rtype, str) and isinstance(rid, str) and rid:
            return f"{rtype}/{rid}"
    return f"#{index}"


def _outcome_text(res: dict[str, Any]) -> str:
    parts = []
    for issue in res.get("issue") or ():
        if not isinstance(issue, dict):
            continue
        details = issue.get("details")
        text = issue.get("diagnostics") or (details.get("text") if isinstance(details, dict) else None)
        parts.append(f"{issue.get('severity', 'issue')}: {text or issue.get('code', 'no details')}")
    summary = "; ".join(parts) or "no issues listed"
    return f"server reported: {summary}"[:300]


def read_facts(
    resources: Iterable[Any], patient_id: str | None = None, tz: str = "UTC", reach: Reach | None = None
) -> PatientFacts:
    """The facts about one patient in `resources` (any order; Bundles already flattened).

    `patient_id` ("X" or "Patient/X") picks the patient; without it the first Patient resource is
    used (or, with none, the patient most resources point at). `tz` is the zone for dates and
    dateTimes without an offset. With `reach` (a month's, `fhir_mapping.reach`), time entries, stays and
    ChargeItems outside it, and the Tasks documenting those Encounters, are not read. Never raises on odd
    data (an unknown `tz` raises BadTimezone).
    """
    items, refs = _index(resources)
    ctx = ReadContext(tz=zone(tz), refs=refs, people=People(refs, items))
    key_of = refs.key

    target = patient_key(patient_id) if patient_id else None
    if target is None:
        target = next(iter(patient_ids(items)), None) or _most_referenced_patient(items, refs)

    skipped: list[Skipped] = []
    patient: PatientRecord | None = None
    conditions: list[ConditionRecord] = []
    consents: list[ConsentRecord] = []
    plans: list[CarePlanRecord] = []
    visits: list[VisitRecord] = []
    drafts: dict[str, TimeDraft] = {}
    stays: list[InpatientStay] = []
    attestations: list[Attestation] = []
    billed: list[BilledService] = []
    tasks: list[tuple[str, dict[str, Any], tuple[Coding, ...]]] = []
    shared: dict[str, datetime] = {}
    aged: list[tuple[int, float]] = []  # conditions abated at an age: dated once the birth date is known
    persons: list[dict[str, Any]] = []  # Practitioners and roles: the only resources aliases need
    unreached: set[str] = set()  # Encounters outside the reach
    later: list[tuple[int, str, dict[str, Any]]] = []  # Tasks read once every Encounter's reach is known
    own: frozenset[Identifier] | None = None  # the patient's identifiers, found on first need

    fields = SUBJECT_FIELD
    for index, res in enumerate(items):
        if not isinstance(res, dict):
            skipped.append(Skipped(f"#{index}", "entry is not a JSON object"))
            continue
        rtype = res.get("resourceType")
        if not isinstance(rtype, str) or not rtype:
            skipped.append(Skipped(_label(res, index), "no resourceType: not a FHIR resource"))
            continue
        if rtype not in _READ:
            if rtype in PERSON_TYPES:
                persons.append(res)
            continue
        rid = res.get("id")
        key = f"{rtype}/{rid}" if isinstance(rid, str) and rid else f"{rtype}/#{index}"
        try:
            field = fields.get(rtype)
            if field is None:  # a Patient, OperationOutcome or Bundle (about no other patient)
                if rtype == "Patient":
                    if key == target and patient is None:
                        patient = read_patient(res, key, ctx)
                elif rtype == "OperationOutcome":
                    skipped.append(Skipped(_label(res, index), _outcome_text(res)))
                else:
                    skipped.append(Skipped(_label(res, index), "Bundle could not be unpacked"))
                continue
            subject = res.get(field)
            # The usual subject, {"reference": "Patient/<target id>"}, names the target as it is spelled:
            # it is not looked up (this loop runs per resource).
            if (
                subject is not None
                and target is not None
                and not (type(subject) is dict and subject.get("reference") == target)
            ):
                if own is None:
                    own = identifiers(next((r for r in items if _is_patient(r, target)), None))
                binding = bind(subject, target, refs, own, res)
                if binding != "ours":  # another patient's resource, or nothing that names this patient
                    if binding == "unbound" and rtype != "DocumentReference":
                        reason = f"{rtype}.{field} does not name this patient"
                        skipped.append(Skipped(_label(res, index), reason))
                    continue
            if rtype == "Encounter":
                if reach is not None and outside(res, reach):
                    unreached.add(key)
                    continue
                record = read_encounter(res, key, ctx)
                if type(record) is TimeDraft:
                    drafts[key] = record
                else:
                    if isinstance(record, VisitRecord):
                        visits.append(record)
                    elif isinstance(record, InpatientStay):
                        stays.append(record)
                    billed.extend(read_encounter_billing(res, key, ctx, performer_of(res, ctx)))
            elif rtype == "Task":
                if reach is not None and res.get("encounter") is not None and not attestation_coded(res):
                    later.append((index, key, res))
                else:
                    _read_task(res, key, ctx, attestations, tasks)
            elif rtype == "Condition":
                conditions.append(read_condition(res, key, ctx))
                years = abatement_age(res)
                if years is not None and conditions[-1].abatement is None:
                    aged.append((len(conditions) - 1, years))
            elif rtype == "Consent":
                programs = care_programs(res)
                if programs:
                    consents.append(read_consent(res, key, ctx, programs))
            elif rtype == "CarePlan":
                plans.append(read_care_plan(res, key, ctx))
            elif rtype == "ChargeItem":
                if reach is None or not charge_outside(res, reach):
                    billed.append(read_charge_item(res, key, ctx))
            elif rtype in ("Claim", "ExplanationOfBenefit"):
                billed.extend(read_claim_lines(res, key, ctx))
            elif rtype == "Communication":
                plan_keys, when = plan_shared_at(res, ctx)
                for plan in plan_keys:
                    if when is not None and (plan not in shared or when > shared[plan]):
                        shared[plan] = when
        except _PROBLEMS as exc:
            skipped.append(_skipped(key if rid else f"#{index}", rtype, exc))

    for index, key, res in later:
        if key_of(res.get("encounter")) not in unreached:
            try:
                _read_task(res, key, ctx, attestations, tasks)
            except _PROBLEMS as exc:
                skipped.append(_skipped(key if res.get("id") else f"#{index}", "Task", exc))
    for key, res, activities in tasks:
        entry = key_of(res.get("encounter"))
        draft = drafts.get(entry) if entry is not None else None
        if draft is not None:
            _attach_task(key, res, activities, draft, skipped)

    ctx.people.narrow(persons)
    if aged and patient is not None and patient.birth_date is not None:
        b = patient.birth_date
        born = datetime(b.year, b.month, b.day, tzinfo=ctx.tz)
        for i, years in aged:
            conditions[i] = replace(conditions[i], abatement=born + timedelta(days=365.25 * years))
    if shared:
        plans = [
            _with_shared(p, shared[p.id]) if p.id in shared else p for p in plans
        ]
    return PatientFacts(
        patient=patient or PatientRecord(id=target or "Patient/unknown"),
        conditions=_in_order(conditions, "onset"),
        consents=_in_order(consents, "obtained_at"),
        care_plans=_in_order(plans, "created"),
        visits=_in_order(visits, "start"),
        time_entries=_in_order([d.build() for d in drafts.values()], "start"),
        attestations=_in_order(attestations, "at"),
        billed=_in_order(billed, None),  # by resource: a claim's lines stay in the claim's order
        stays=_in_order(stays, "start"),
        skipped=tuple(skipped),
        aliases=ctx.people.aliases(),
    )


R = TypeVar("R")


def _in_order(records: list[R], when: str | None) -> tuple[R, ...]:
    """`records` earliest first by their `when` field (undated last), then by id (only by id without
    `when`); the source's order only among one resource's records. One history, one verdict: the evidence
    a verdict lists does not depend on the order a server or a file gave the resources in."""
    if len(records) < 2:
        return tuple(records)

    def key(r: R) -> tuple[bool, float, str]:
        at: datetime | None = getattr(r, when) if when else None
        return at is None, at.timestamp() if at is not None else 0.0, getattr(r, "id", "")

    return tuple(sorted(records, key=key))


_PROBLEMS = (
    Unreadable, BadDate, AttributeError, TypeError, KeyError, ValueError, IndexError, ArithmeticError,
)


def _skipped(label: str, rtype: str, exc: Exception) -> Skipped:
    """Why a resource was not read: the reader's own message, else its shape (never its data)."""
    if isinstance(exc, (Unreadable, BadDate)):
        return Skipped(label, str(exc))
    return Skipped(label, f"malformed {rtype} (unexpected JSON shape)")


def _read_task(
    res: dict[str, Any],
    key: str,
    ctx: ReadContext,
    attestations: list[Attestation],
    tasks: list[tuple[str, dict[str, Any], tuple[Coding, ...]]],
) -> None:
    """A Task: an attestation, and/or (completed, pointing at an Encounter) notes for a time entry."""
    activities = task_activities(res)
    attestation = read_attestation(res, key, ctx, activities)
    if attestation is not None:
        attestations.append(attestation)
    if res.get("encounter") is not None and res.get("status") == "completed":
        tasks.append((key, res, activities))


def _attach_task(
    key: str, res: dict[str, Any], activities: tuple[Coding, ...], draft: TimeDraft, skipped: list[Skipped]
) -> None:
    """Notes and activities of a completed Task go onto the time entry it points at."""
    try:
        notes = task_notes(res)
    except (Unreadable, AttributeError, TypeError) as exc:
        reason = str(exc) if isinstance(exc, Unreadable) else "malformed Task (unexpected JSON shape)"
        skipped.append(Skipped(key, reason))
        return
    draft.notes.extend(notes)
    draft.activities.extend(activities)
    draft.task_ids.append(key)


def _with_shared(plan: CarePlanRecord, when: datetime) -> CarePlanRecord:
    return replace(plan, shared_with_patient_at=when)


def _is_patient(res: Any, target: str) -> bool:
    return type(res) is dict and res.get("resourceType") == "Patient" and f"Patient/{res.get('id')}" == target


def _most_referenced_patient(items: list[Any], refs: References) -> str | None:
    counts: Counter[str] = Counter()
    for res in items:
        if isinstance(res, dict) and isinstance(res.get("resourceType"), str):
            field = SUBJECT_FIELD.get(res["resourceType"])
            if field:
                key = refs.key(res.get(field))
                if key and key.startswith("Patient/"):
                    counts[key] += 1
    return counts.most_common(1)[0][0] if counts else None
