"""Tasks: what was done during a time entry (notes, activities) and practitioner attestations."""

from __future__ import annotations

from typing import Any

from fhir_mapping.codes import ATTESTATION_KINDS, CARE_ACTIVITY, codings
from fhir_mapping.dates import parse_when
from fhir_mapping.reading import ReadContext, Unreadable
from rules.records import Attestation, Coding


def task_notes(res: dict[str, Any]) -> list[str]:
    """The non-empty `note` texts of a Task."""
    notes = res.get("note") or ()
    if not isinstance(notes, list):
        raise Unreadable("Task.note is not a list")
    out = []
    for n in notes:
        text = n.get("text")
        if isinstance(text, str) and (text := text.strip()):
            out.append(text)
    return out


def task_activities(res: dict[str, Any]) -> tuple[Coding, ...]:
    code = res.get("code")
    if code is not None and not isinstance(code, dict):
        raise Unreadable("Task.code is not a CodeableConcept")
    return codings(code)


def read_attestation(
    res: dict[str, Any], key: str, ctx: ReadContext, activities: tuple[Coding, ...]
) -> Attestation | None:
    """A completed Task with a care-activity attestation code, as an Attestation."""
    kind = None
    for c in activities:
        if c.system == CARE_ACTIVITY and c.code in ATTESTATION_KINDS:
            kind = c.code
            break
    if kind is None or res.get("status") != "completed":
        return None
    period = res.get("executionPeriod") or {}
    if not isinstance(period, dict):
        raise Unreadable("Task.executionPeriod is not a Period")
    at = parse_when(period.get("start"), ctx.tz, field="Task.executionPeriod.start")
    if at is None:
        at = parse_when(res.get("authoredOn"), ctx.tz, field="Task.authoredOn")
    if at is None:
        at = parse_when(period.get("end") or res.get("lastModified"), ctx.tz, field="Task.lastModified")
    practitioner = ctx.people.key(res.get("owner"), res) or ctx.people.key(res.get("requester"), res)
    return Attestation(id=key, kind=kind, practitioner=practitioner, at=at)
