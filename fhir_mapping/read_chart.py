"""What the care-plan editor shows from the chart: medicines, allergies, the care team, the plan on file.

Lenient readers over raw FHIR R4 JSON (MedicationRequest/Statement, AllergyIntolerance, CareTeam,
CarePlan, Practitioner/PractitionerRole): anything unreadable is passed over, never fatal.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fhir_mapping.codes import CARE_PROGRAM
from fhir_mapping.read_clinical import human_name

# MedicationStatement statuses that mean "still taking" (MedicationRequests are searched as active).
TAKING = ("active", "intended", "on-hold", None)


def text_of(concept: Any) -> str:
    """A CodeableConcept's text, else its first coding's display or code; "" if none."""
    if not isinstance(concept, dict):
        return ""
    if isinstance(concept.get("text"), str) and concept["text"].strip():
        return str(concept["text"]).strip()
    for c in concept.get("coding") or ():
        if isinstance(c, dict) and (c.get("display") or c.get("code")):
            return str(c.get("display") or c.get("code"))
    return ""


def medicine(res: dict[str, Any]) -> str:
    """"Metformin 500 mg (twice a day)" from a MedicationRequest or MedicationStatement."""
    name = text_of(res.get("medicationCodeableConcept")) or str(
        (res.get("medicationReference") or {}).get("display") or ""
    )
    dose = ""
    for d in res.get("dosageInstruction") or res.get("dosage") or ():
        if isinstance(d, dict) and isinstance(d.get("text"), str):
            dose = d["text"]
            break
    return f"{name} ({dose})" if name and dose else name


def medicines(resources: Iterable[dict[str, Any]]) -> list[str]:
    """Distinct medicines being taken, in chart order."""
    out: list[str] = []
    for res in resources:
        kind = res.get("resourceType")
        if kind == "MedicationRequest" or (kind == "MedicationStatement" and res.get("status") in TAKING):
            name = medicine(res)
            if name and name not in out:
                out.append(name)
    return out


def allergies(resources: Iterable[dict[str, Any]]) -> list[str]:
    """Distinct allergy names."""
    out: list[str] = []
    for res in resources:
        name = text_of(res.get("code")) if res.get("resourceType") == "AllergyIntolerance" else ""
        if name and name not in out:
            out.append(name)
    return out


def care_team(resources: Iterable[dict[str, Any]]) -> dict[str, str]:
    """{member reference: role text} from CareTeam participants."""
    team: dict[str, str] = {}
    for res in resources:
        if res.get("resourceType") != "CareTeam":
            continue
        for p in res.get("participant") or ():
            member = (p.get("member") or {}) if isinstance(p, dict) else {}
            ref = member.get("reference")
            if isinstance(ref, str):
                team.setdefault(ref, text_of((p.get("role") or [None])[0]))
    return team


def is_ccm_plan(res: dict[str, Any]) -> bool:
    """An active CarePlan in the CCM program category."""
    return (
        res.get("resourceType") == "CarePlan"
        and res.get("status") == "active"
        and any(
            isinstance(c, dict) and c.get("system") == CARE_PROGRAM and c.get("code") == "ccm"
            for cat in res.get("category") or ()
            if isinstance(cat, dict)
            for c in cat.get("coding") or ()
        )
    )


def newest_ccm_plan(resources: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The most recently updated active CCM CarePlan, if any."""
    plans = [r for r in resources if is_ccm_plan(r)]
    plans.sort(key=lambda r: str((r.get("meta") or {}).get("lastUpdated") or ""), reverse=True)
    return plans[0] if plans else None


def plan_references(plan: dict[str, Any], field: str) -> list[str]:
    """The plan's `addresses` or `goal` references, as strings."""
    out: list[str] = []
    for ref in plan.get(field) or ():
        value = ref.get("reference") if isinstance(ref, dict) else None
        if isinstance(value, str):
            out.append(value)
    return out


def person_display(res: dict[str, Any], fallback: str) -> str:
    """A Practitioner's name (with prefix), or a PractitionerRole's role or practitioner display."""
    if res.get("resourceType") == "PractitionerRole":
        return text_of((res.get("code") or [None])[0]) or str(
            (res.get("practitioner") or {}).get("display") or fallback
        )
    for name in res.get("name") or ():
        if isinstance(name, dict) and name.get("prefix") and not name.get("text"):
            prefixed = " ".join([*(name.get("prefix") or []), *(name.get("given") or []),
                                 str(name.get("family") or "")]).strip()
            if prefixed:
                return prefixed
    return human_name(res.get("name")) or fallback
