"""The *note* write profile: a US Core clinical-note DocumentReference per time entry and per consent.

For EHRs that accept no app-written Encounter, Task or Consent but do accept clinical notes (US Core "Writing
Clinical Notes"). Each note has two attachments: `text/plain` a person reads in the chart (minutes, performer,
activity, note; or the consent decision and disclosures), and `application/json` with the structured facts
(`NOTE_FORMAT`), which `fhir_mapping.read_note` turns back into the Encounter + Task / Consent the rules read.
The note is keyed on the same identifier as the structured write (time-entry|<id>, consent|<id>), so a note
and a structured write of the same entry are one entry to the reader.
"""

from __future__ import annotations

import base64
import json
from datetime import date, datetime
from typing import Any

from fhir_mapping.codes import LOINC, LOINC_PATIENT_CONSENT
from fhir_mapping.write_consent import CONSENT_ID, ConsentDraft
from fhir_mapping.write_provenance import WriteError, checked, instant, token_query
from fhir_mapping.write_time import PROGRAM_TEXT, TIME_ENTRY_ID, TimeEntryDraft, draft_to_json

US_CORE_DOC_CATEGORY = "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category"
LOINC_PROGRESS_NOTE = "11506-3"
NOTE_FORMAT = "https://ccm-ready.org/fhir/note-format/v1"
NOTE_KIND_TIME = "time-entry"
NOTE_KIND_CONSENT = "consent"
DECISION_TEXT = {"given": "given", "declined": "declined", "stopped": "stopped (patient asked to stop)"}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _attachments(readable: str, facts: dict[str, Any], title: str) -> list[dict[str, Any]]:
    structured = json.dumps(facts, sort_keys=True, separators=(",", ":"))
    return [
        {"attachment": {"contentType": "text/plain; charset=utf-8", "data": _b64(readable), "title": title}},
        {
            "attachment": {
                "contentType": "application/json",
                "data": _b64(structured),
                "title": "CCM Ready structured facts",
            },
            "format": {
                "system": "urn:ietf:rfc:3986",
                "code": NOTE_FORMAT,
                "display": "CCM Ready note facts v1",
            },
        },
    ]


def _note(
    *,
    identifier: tuple[str, str],
    loinc: str,
    loinc_display: str,
    patient_id: str,
    author: str,
    date: datetime,
    period: dict[str, str],
    description: str,
    content: list[dict[str, Any]],
) -> dict[str, Any]:
    if not patient_id or not author.startswith(("Practitioner/", "PractitionerRole/")):
        raise WriteError("a clinical note needs a patient and a Practitioner author")
    return checked(
        {
            "resourceType": "DocumentReference",
            "identifier": [{"system": identifier[0], "value": identifier[1]}],
            "status": "current",
            "docStatus": "final",
            "type": {
                "coding": [{"system": LOINC, "code": loinc, "display": loinc_display}],
                "text": description,
            },
            "category": [
                {
                    "coding": [
                        {"system": US_CORE_DOC_CATEGORY, "code": "clinical-note", "display": "Clinical Note"}
                    ]
                }
            ],
            "subject": {"reference": f"Patient/{patient_id}"},
            "date": instant(date),
            "author": [{"reference": author}],
            "description": description,
            "content": content,
            "context": {"period": period},
        }
    )


def time_note(draft: TimeEntryDraft, recorded: datetime) -> dict[str, Any]:
    """The note for one time entry: context.period = the interval, author = the performer."""
    label = PROGRAM_TEXT.get(draft.program, f"Care management time ({draft.program})")
    readable = "\n".join(
        [
            label,
            f"Minutes: {draft.minutes}",
            f"From {instant(draft.start)} to {instant(draft.period_end)}",
            f"Performed by: {draft.performer}",
            f"Activity: {draft.activity}",
            f"Note: {draft.note}",
            f"Entry: {draft.entry_id} (recorded by CCM Ready)",
        ]
    )
    facts = {"format": NOTE_FORMAT, "kind": NOTE_KIND_TIME, "entry": draft_to_json(draft)}
    return _note(
        identifier=(TIME_ENTRY_ID, draft.entry_id),
        loinc=LOINC_PROGRESS_NOTE,
        loinc_display="Progress note",
        patient_id=draft.patient_id,
        author=draft.performer,
        date=recorded,
        period={"start": instant(draft.start), "end": instant(draft.period_end)},
        description=f"{label}: {draft.minutes} min",
        content=_attachments(readable, facts, label),
    )


def consent_to_json(draft: ConsentDraft) -> dict[str, Any]:
    return {
        "consent_id": draft.consent_id,
        "patient_id": draft.patient_id,
        "decision": draft.decision,
        "obtained_at": draft.obtained_at.isoformat(),
        "obtained_by": draft.obtained_by,
        "billing_practitioner": draft.billing_practitioner,
        "method": draft.method,
        "disclosures": list(draft.disclosures),
        "stop_date": draft.stop_date.isoformat() if draft.stop_date else None,
    }


def consent_from_json(data: dict[str, Any]) -> ConsentDraft:
    return ConsentDraft(
        consent_id=data["consent_id"],
        patient_id=data["patient_id"],
        decision=data["decision"],
        obtained_at=datetime.fromisoformat(data["obtained_at"]),
        obtained_by=data["obtained_by"],
        billing_practitioner=data["billing_practitioner"],
        method=data["method"],
        disclosures=tuple(data.get("disclosures") or ()),
        stop_date=date.fromisoformat(data["stop_date"]) if data.get("stop_date") else None,
    )


def consent_note(draft: ConsentDraft, recorded: datetime) -> dict[str, Any]:
    """The note for one CCM consent capture (given, declined or stopped)."""
    readable = "\n".join(
        [
            "Chronic care management consent",
            f"Decision: {DECISION_TEXT.get(draft.decision, draft.decision)}",
            f"Obtained {draft.method} on {instant(draft.obtained_at)} by {draft.obtained_by}",
            f"Billing practitioner: {draft.billing_practitioner}",
            "Disclosures made: " + (", ".join(draft.disclosures) or "none"),
            *([f"Stops after: {draft.stop_date.isoformat()}"] if draft.stop_date else []),
            f"Consent: {draft.consent_id} (recorded by CCM Ready)",
        ]
    )
    facts = {"format": NOTE_FORMAT, "kind": NOTE_KIND_CONSENT, "consent": consent_to_json(draft)}
    moment = instant(draft.obtained_at)
    return _note(
        identifier=(CONSENT_ID, draft.consent_id),
        loinc=LOINC_PATIENT_CONSENT,
        loinc_display="Patient Consent",
        patient_id=draft.patient_id,
        author=draft.obtained_by,
        date=recorded,
        period={"start": moment, "end": moment},
        description=f"CCM consent {draft.decision}",
        content=_attachments(readable, facts, "CCM consent"),
    )


def note_condition(note: dict[str, Any]) -> str:
    """The conditional-create query that makes writing a note twice store it once."""
    ident = note["identifier"][0]
    return token_query("identifier", ident["system"], ident["value"])
