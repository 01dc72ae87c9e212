"""Strict writer for time entries: Encounter (the time) + Task (what was done) + Provenance, and corrections.

Every resource is validated with the fhir.resources R4B models before it leaves. Idempotency rests on our
identifiers: the Encounter carries `time-entry|<entry id>`, the Task `time-entry-task|<entry id>`, and the
transaction creates each conditionally (`request.ifNoneExist`), so sending an entry twice stores it once.
Corrections never edit a finished entry's content: they mark it entered-in-error (new version, reason kept in
a Provenance and in Task.statusReason) and may add a replacement entry.
"""

from __future__ import annotations

import copy
import uuid
from datetime import datetime, timedelta
from typing import Any

from fhir_mapping.codes import CARE_ACTIVITY, CARE_PROGRAM, SNOMED, UCUM, V3_ACT_CODE
from fhir_mapping.reading import as_object
from fhir_mapping.write_provenance import WriteError, checked, for_patient, instant, provenance, token_query
from rules.record_type import record

TIME_ENTRY_ID = "https://ccm-ready.org/fhir/identifier/time-entry"
TIME_ENTRY_TASK_ID = "https://ccm-ready.org/fhir/identifier/time-entry-task"
ENTRY_FLAG = "https://ccm-ready.org/fhir/CodeSystem/entry-flag"
# US Core Encounter.type (extensible; SNOMED CT is-a 308335008 Patient encounter procedure): care-management
# time is work done for the patient without a visit, an "indirect encounter". Our care-program code is
# beside it.
INDIRECT_ENCOUNTER = "185316007"
PROGRAM_TEXT = {
    "ccm": "Chronic care management time",
    "pcm": "Principal care management time",
    "rpm": "Remote physiologic monitoring time",
    "bhi": "Behavioral health integration time",
}
_NS = uuid.UUID("5d0b7e38-3c55-4f0e-9a43-0c1b1f8d2a61")  # namespace for deterministic urn:uuid fullUrls


@record
class TimeEntryDraft:
    """A validated entry ready to write (see rules.entry_validation for the checks)."""

    entry_id: str
    patient_id: str
    performer: str  # "Practitioner/..." or "PractitionerRole/..."
    start: datetime  # aware
    minutes: int
    program: str
    activity: str
    note: str
    end: datetime | None = None  # defaults to start + minutes
    conditions: tuple[str, ...] = ()
    late: bool = False

    @property
    def period_end(self) -> datetime:
        return self.end or self.start + timedelta(minutes=self.minutes)


def draft_to_json(draft: TimeEntryDraft) -> dict[str, Any]:
    """A JSON-able copy of a draft (the outbox stores corrections' replacements this way)."""
    return {
        "entry_id": draft.entry_id,
        "patient_id": draft.patient_id,
        "performer": draft.performer,
        "start": draft.start.isoformat(),
        "minutes": draft.minutes,
        "program": draft.program,
        "activity": draft.activity,
        "note": draft.note,
        "end": draft.end.isoformat() if draft.end else None,
        "conditions": list(draft.conditions),
        "late": draft.late,
    }


def draft_from_json(data: dict[str, Any]) -> TimeEntryDraft:
    return TimeEntryDraft(
        entry_id=data["entry_id"],
        patient_id=data["patient_id"],
        performer=data["performer"],
        start=datetime.fromisoformat(data["start"]),
        minutes=int(data["minutes"]),
        program=data["program"],
        activity=data["activity"],
        note=data["note"],
        end=datetime.fromisoformat(data["end"]) if data.get("end") else None,
        conditions=tuple(data.get("conditions") or ()),
        late=bool(data.get("late")),
    )


def new_entry_id() -> str:
    return str(uuid.uuid4())


def valid_entry_id(value: str) -> bool:
    """Entry ids are canonical (lower-case) UUIDs, so a client-chosen id cannot collide by accident."""
    try:
        return str(uuid.UUID(value)) == value
    except (ValueError, AttributeError, TypeError):
        return False


def urn(kind: str, entry_id: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NS, f'{kind}:{entry_id}')}"


def encounter_type(program: str) -> dict[str, Any]:
    """Encounter.type: a standard SNOMED CT code and text (US Core) beside our care-program coding."""
    return {
        "coding": [
            {"system": CARE_PROGRAM, "code": program},
            {"system": SNOMED, "code": INDIRECT_ENCOUNTER, "display": "Indirect encounter"},
        ],
        "text": PROGRAM_TEXT.get(program, f"Care management time ({program})"),
    }


def encounter(draft: TimeEntryDraft) -> dict[str, Any]:
    """The Encounter that records the time (status finished, period start AND end, length in UCUM min)."""
    if not draft.patient_id or not draft.performer:
        raise WriteError("a time entry needs a patient and a performer")
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "identifier": [{"system": TIME_ENTRY_ID, "value": draft.entry_id}],
        "status": "finished",
        "class": {"system": V3_ACT_CODE, "code": "VR", "display": "virtual"},
        "type": [encounter_type(draft.program)],
        "subject": {"reference": f"Patient/{draft.patient_id}"},
        "participant": [{"individual": {"reference": draft.performer}}],
        "period": {"start": instant(draft.start), "end": instant(draft.period_end)},
        "length": {"value": draft.minutes, "unit": "min", "system": UCUM, "code": "min"},
    }
    if draft.conditions:
        resource["reasonReference"] = [{"reference": ref} for ref in draft.conditions]
    if draft.late:
        resource["meta"] = {"tag": [{"system": ENTRY_FLAG, "code": "late", "display": "late entry"}]}
    return checked(resource)


def task(draft: TimeEntryDraft, encounter_ref: str, recorded: datetime) -> dict[str, Any]:
    """The completed Task saying what was done, with the note, pointing at the time entry."""
    resource: dict[str, Any] = {
        "resourceType": "Task",
        "identifier": [{"system": TIME_ENTRY_TASK_ID, "value": draft.entry_id}],
        "status": "completed",
        "intent": "order",
        "code": {"coding": [{"system": CARE_ACTIVITY, "code": draft.activity}]},
        "for": {"reference": f"Patient/{draft.patient_id}"},
        "encounter": {"reference": encounter_ref},
        "owner": {"reference": draft.performer},
        "authoredOn": instant(recorded),
        "executionPeriod": {"start": instant(draft.start), "end": instant(draft.period_end)},
        "note": [
            {"text": draft.note, "authorReference": {"reference": draft.performer}, "time": instant(recorded)}
        ],
    }
    return checked(resource)


def entry_requests(
    draft: TimeEntryDraft,
    *,
    user: str,
    recorded: datetime,
    pack_id: str,
    pack_version: str,
    revises: str | None = None,
    verification: str | None = None,
) -> list[dict[str, Any]]:
    """The three transaction entries of one time entry (conditional creates keyed on our identifiers and
    the patient, so another patient's entry with the same id never matches)."""
    enc_url, task_url, prov_url = (urn(k, draft.entry_id) for k in ("encounter", "task", "provenance"))
    prov = provenance(
        [enc_url, task_url],
        user=user,
        recorded=recorded,
        pack_id=pack_id,
        pack_version=pack_version,
        revises=revises,
        verification=verification,
    )
    pid = draft.patient_id
    return [
        {
            "fullUrl": enc_url,
            "resource": encounter(draft),
            "request": {
                "method": "POST",
                "url": "Encounter",
                "ifNoneExist": for_patient(token_query("identifier", TIME_ENTRY_ID, draft.entry_id), pid),
            },
        },
        {
            "fullUrl": task_url,
            "resource": task(draft, enc_url, recorded),
            "request": {
                "method": "POST",
                "url": "Task",
                "ifNoneExist": for_patient(
                    token_query("identifier", TIME_ENTRY_TASK_ID, draft.entry_id), pid
                ),
            },
        },
        {
            "fullUrl": prov_url,
            "resource": prov,
            "request": {
                "method": "POST",
                "url": "Provenance",
                "ifNoneExist": for_patient(
                    token_query("target:Encounter.identifier", TIME_ENTRY_ID, draft.entry_id),
                    pid,
                    "target:Encounter.patient",
                ),
            },
        },
    ]


def transaction(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return checked({"resourceType": "Bundle", "type": "transaction", "entry": entries})


def entry_transaction(
    draft: TimeEntryDraft,
    *,
    user: str,
    recorded: datetime,
    pack_id: str,
    pack_version: str,
    verification: str | None = None,
) -> dict[str, Any]:
    """One transaction Bundle writing the entry's Encounter, Task and Provenance."""
    return transaction(
        entry_requests(
            draft,
            user=user,
            recorded=recorded,
            pack_id=pack_id,
            pack_version=pack_version,
            verification=verification,
        )
    )


def _version(resource: dict[str, Any]) -> str | None:
    meta = as_object(resource.get("meta"))
    vid = meta.get("versionId")
    return f'W/"{vid}"' if isinstance(vid, str) and vid else None


def entered_in_error(current: dict[str, Any], reason: str) -> dict[str, Any]:
    """A copy of the stored Encounter or Task with status entered-in-error (content otherwise unchanged)."""
    if not reason.strip():
        raise WriteError("a correction needs a reason")
    res = copy.deepcopy(current)
    rtype = res.get("resourceType")
    previous = res.get("status")
    res["status"] = "entered-in-error"
    if rtype == "Encounter":
        period = res.get("period") if isinstance(res.get("period"), dict) else None
        history = list(res.get("statusHistory") or [])
        if period and previous:
            history.append({"status": previous, "period": period})
        if history:
            res["statusHistory"] = history
    elif rtype == "Task":
        res["statusReason"] = {"text": reason.strip()}
    else:
        raise WriteError(f"cannot mark a {rtype} entered-in-error here")
    return checked(res)


def correction_transaction(
    base: str,
    current_encounter: dict[str, Any],
    current_tasks: list[dict[str, Any]],
    reason: str,
    *,
    user: str,
    recorded: datetime,
    pack_id: str,
    pack_version: str,
    replacement: TimeEntryDraft | None = None,
    verification: str | None = None,
) -> dict[str, Any]:
    """Mark a stored entry entered-in-error (PUT with If-Match, so a concurrent change fails) and optionally
    add its replacement, atomically. Already-marked resources are left alone (a retry changes nothing)."""
    base = base.rstrip("/")
    entries: list[dict[str, Any]] = []
    targets: list[str] = []
    for res in [current_encounter, *current_tasks]:
        if res.get("status") == "entered-in-error":
            continue
        rtype, rid = res.get("resourceType"), res.get("id")
        if not isinstance(rid, str) or not rid:
            raise WriteError("the entry to correct has no server id")
        full = f"{base}/{rtype}/{rid}"
        request: dict[str, Any] = {"method": "PUT", "url": f"{rtype}/{rid}"}
        if (etag := _version(res)) is not None:
            request["ifMatch"] = etag
        entries.append({"fullUrl": full, "resource": entered_in_error(res, reason), "request": request})
        targets.append(full)
    if targets:
        prov = provenance(
            targets,
            user=user,
            recorded=recorded,
            pack_id=pack_id,
            pack_version=pack_version,
            activity="UPDATE",
            reason=reason.strip(),
            verification=verification,
        )
        entries.append(
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": prov,
                "request": {"method": "POST", "url": "Provenance"},
            }
        )
    if replacement is not None:
        old_ref = f"Encounter/{current_encounter.get('id')}"
        entries.extend(
            entry_requests(
                replacement,
                user=user,
                recorded=recorded,
                pack_id=pack_id,
                pack_version=pack_version,
                revises=old_ref,
                verification=verification,
            )
        )
    if not entries:
        raise WriteError("nothing to write: the entry is already marked entered-in-error")
    return transaction(entries)
